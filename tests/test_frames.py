import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time
import astropy.units as u

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


def _generic_frame(path, **cards):
    hdu = fits.PrimaryHDU(np.zeros((8, 8), np.uint16))
    hdu.header.update({"FILTER": "V", "GAIN": 2.0, "EXPTIME": 150.0, **cards})
    hdu.writeto(path)
    return path


@pytest.mark.parametrize("time_keyword", ["UT", "TIME-OBS", "TIME-BEG"])
def test_date_only_date_obs_joined_to_the_time_of_day(tmp_path, time_keyword):
    """As a real SAAO header: DATE-OBS holds the date, UT the start (was read as midnight,
    00:01:15 at mid-exposure instead of 00:58:48)."""
    path = _generic_frame(tmp_path / "saao.fits", **{"DATE-OBS": "2019-06-01",
                                                     time_keyword: "00:57:33.25"})
    info = read_header(path, "generic")
    expected = Time("2019-06-01T00:57:33.25", scale="utc") + 75.0 * u.s
    assert abs((info.time - expected).sec) < 1e-6
    assert info.time_keyword == f"DATE-OBS+{time_keyword}"


def test_full_date_obs_still_wins_and_date_only_alone_is_named(tmp_path):
    full = _generic_frame(tmp_path / "full.fits", **{"DATE-OBS": "2019-06-01T00:57:33.5",
                                                     "UT": "23:00:00"})
    info = read_header(full, "generic")
    assert abs((info.time - Time("2019-06-01T00:58:48.5", scale="utc")).sec) < 1e-6
    alone = _generic_frame(tmp_path / "alone.fits", **{"DATE-OBS": "2019-06-01"})
    with pytest.raises(FrameError, match="DATE-OBS = '2019-06-01' holds a date only"):
        read_header(alone, "generic")


def test_opticam_camera_from_keyword_filter_or_directory(tmp_path):
    assert read_header(write_opticam_frame(tmp_path / "k.fits", CAMERA="1"), "opticam"
                       ).camera == "C1"
    for band, camera in (("g'", "C1"), ("u", "C1"), ("r", "C2"), ("i-band", "C3"), ("z", "C3")):
        info = read_header(write_opticam_frame(tmp_path / "f.fits", CAMERA=None, FILTER=band),
                           "opticam")
        assert (info.camera, info.camera_source) == (camera, "filter"), band
    (tmp_path / "Camera2").mkdir()
    path = write_opticam_frame(tmp_path / "Camera2" / "d.fits", CAMERA=None, FILTER="Halpha")
    info = read_header(path, "opticam")
    assert (info.camera, info.camera_source) == ("C2", "directory")
    with pytest.raises(FrameError, match="cannot tell which camera") as error:
        read_header(write_opticam_frame(tmp_path / "x.fits", CAMERA=None, FILTER="Halpha"),
                    "opticam")
    assert error.value.keyword == "CAMERA" and "'Halpha'" in str(error.value)
    generic = read_header(write_opticam_frame(tmp_path / "g.fits", CAMERA=None,
                                              **{"DATE-OBS": "2024-01-01T00:00:00"}), "generic")
    assert generic.camera == "OPTICAM"  # INSTRUME; generic cameras are not renamed
