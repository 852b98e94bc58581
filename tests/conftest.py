"""Shared fixtures: paths to ../shared and small FITS frame writers."""

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

SHARED = Path(__file__).resolve().parents[2] / "shared"
REALDATA = SHARED / "realdata"
OGLE = REALDATA / "ogle4_lmc_cepheid_timeseries"


def require_shared(path):
    """Skip the calling test when ``path`` (under ../shared) is absent."""
    if not Path(path).exists():
        pytest.skip(f"{path} is absent: the real-data tests need ../shared beside the repo")
    return Path(path)


def write_opticam_frame(path, data=None, shape=(64, 64), **header):
    """Write a small OPTICAM-like frame (uint16) with a complete header."""
    if data is None:
        rng = np.random.default_rng(abs(hash(str(path))) % 2**32)
        data = rng.poisson(200.0, size=shape).astype(np.uint16)
    cards = {"FILTER": "g", "BINNING": "4x4", "GAIN": 1.6, "RDNOISE": 4.0, "EXPOSURE": 1.0,
             "DARKCURR": 0.01, "INSTRUME": "OPTICAM", "CAMERA": "C1",
             "GPSTIME": "2024-01-01 00:00:00.250000", "RA": "05:34:31.9", "DEC": "+22:00:52",
             "IMAGETYP": "object"}
    cards.update(header)
    hdu = fits.PrimaryHDU(np.asarray(data))
    for key, value in cards.items():
        if value is None:
            continue
        hdu.header[key] = value
    hdu.writeto(path, overwrite=True)
    return Path(path)


@pytest.fixture
def frames(tmp_path):
    """A data directory of three small g frames one second apart."""
    data = tmp_path / "data"
    data.mkdir()
    for n in range(3):
        write_opticam_frame(data / f"g_{n}.fits", GPSTIME=f"2024-01-01 00:00:0{n}.250000")
    return data
