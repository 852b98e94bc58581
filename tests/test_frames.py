import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from conftest import OGLE, require_shared, write_opticam_frame
from opticam_like.frames import FrameError, is_fits_file, parse_binning, read_frame, read_header


def test_opticam_header_mid_exposure_keeps_microseconds(tmp_path):
    path = write_opticam_frame(tmp_path / "a.fits", EXPOSURE=0.5,
                               GPSTIME="2024-01-01 00:00:01.123456")
    info = read_header(path, "opticam")
    expected = Time("2024-01-01T00:00:01.373456", scale="utc")
    assert abs((info.time - expected).sec) < 1e-9
    assert info.filter == "g" and info.binning == "4x4" and info.camera == "C1"
    assert info.gain == 1.6 and info.read_noise == 4.0 and info.saturation == 65535.0
    assert info.ra == pytest.approx(83.6329, abs=1e-3) and info.dec == pytest.approx(22.0144, abs=1e-3)


def test_read_frame_values(tmp_path):
    data = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) + 60000
    frame = read_frame(write_opticam_frame(tmp_path / "a.fits", data=data), "opticam")
    assert frame.data.dtype == np.float32
    np.testing.assert_array_equal(frame.data, data.astype(np.float32))


def test_missing_keyword_names_it(tmp_path):
    path = write_opticam_frame(tmp_path / "a.fits", FILTER=None)
    with pytest.raises(FrameError) as info:
        read_header(path, "opticam")
    assert info.value.keyword == "FILTER" and "a.fits" in str(info.value)


def test_truncated_and_nan_frames(tmp_path):
    path = write_opticam_frame(tmp_path / "a.fits", shape=(200, 200))
    raw = path.read_bytes()
    (tmp_path / "t.fits").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(FrameError, match="truncated"):
        read_frame(tmp_path / "t.fits", "opticam")
    nan = write_opticam_frame(tmp_path / "n.fits", data=np.full((8, 8), np.nan, np.float32))
    with pytest.raises(FrameError, match="no finite pixel"):
        read_frame(nan, "opticam")


def test_bad_values(tmp_path):
    with pytest.raises(FrameError, match="GAIN"):
        read_header(write_opticam_frame(tmp_path / "g.fits", GAIN="fast"), "opticam")
    with pytest.raises(FrameError, match="gain must be positive"):
        read_header(write_opticam_frame(tmp_path / "z.fits", GAIN=0.0), "opticam")
    with pytest.raises(FrameError, match="GPSTIME"):
        read_header(write_opticam_frame(tmp_path / "t.fits", GPSTIME="yesterday", UT=None),
                    "opticam")


def test_parse_binning_and_suffixes():
    assert parse_binning("4x4") == "4x4" and parse_binning("2 2") == "2x2"
    assert parse_binning(3) == "3x3"
    with pytest.raises(ValueError):
        parse_binning("fast")
    assert is_fits_file("a.fts") and is_fits_file("b.fits.gz") and not is_fits_file("c.ecsv")


def test_ogle_generic_profile_matches_juldat():
    folder = require_shared(OGLE / "frames")
    for path in sorted(folder.glob("*.fts"))[:10]:
        info = read_header(path, "generic")
        juldat = fits.getheader(path)["JULDAT"]
        assert abs((info.time.jd - juldat) * 86400) < 0.2
        assert info.gain == 1.8 and info.read_noise == 5.1 and info.filter == "I"
