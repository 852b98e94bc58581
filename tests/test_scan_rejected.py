"""Frames rejected at the scan keep a FRAME_REJECTED row in the photometry tables when their
header tells their filter and time (an odd image shape); frames whose header does not are
listed in diag/rejected_frames.ecsv only."""

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
import astropy.units as u

import opticam_like as ol
from opticam_like.flags import PhotFlag


def test_odd_shape_frame_keeps_a_rejected_row(tmp_path):
    data = tmp_path / "data"
    ol.generate_observations(data, n_images=8, shape=(128, 128), filters=("g",),
                             progress=False)
    source = data / "C1_g_000003.fits"
    header = fits.getheader(source)
    start = Time(header["GPSTIME"].replace(" ", "T"), scale="utc") + 0.3 * u.s
    header["GPSTIME"] = header["UT"] = start.iso.replace("T", " ")
    header["DATE-OBS"] = start.isot
    fits.PrimaryHDU(np.zeros((64, 64), np.uint16), header).writeto(data / "C1_g_odd.fits")
    del header["GPSTIME"], header["UT"], header["DATE-OBS"]
    fits.PrimaryHDU(fits.getdata(source), header).writeto(data / "C1_g_notime.fits")
    out = tmp_path / "out"
    with ol.Reducer(out, data_directory=data, n_workers=1, progress=False) as reducer:
        reducer.create_catalogs()
        reducer.photometry()
    rejected = Table.read(out / "diag" / "rejected_frames.ecsv")
    assert sorted(zip(rejected["file"], rejected["stage"])) == [
        ("C1_g_notime.fits", "scan"), ("C1_g_odd.fits", "scan")]
    table = Table.read(out / "lcs" / "g_aperture_1.5fwhm.fits", astropy_native=True)
    assert len(table) == 9
    assert list(table["file"][3:6]) == ["C1_g_000003.fits", "C1_g_odd.fits",
                                        "C1_g_000004.fits"]
    flags = np.asarray(table["frame_flags"])
    assert flags[4] & PhotFlag.FRAME_REJECTED
    assert np.all(flags[np.arange(9) != 4] & PhotFlag.FRAME_REJECTED == 0)
    assert np.all(np.isnan(np.asarray(table["flux"][4])))
    assert np.all(np.diff(table["bjd_tdb"].jd if "bjd_tdb" in table.colnames
                          else table["mjd_utc"].mjd) > 0)
    assert np.isfinite(np.asarray(table["flux"])[np.arange(9) != 4]).all()
