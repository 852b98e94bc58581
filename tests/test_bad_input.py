"""A generated night with a truncated file, a frame without FILTER, an all-NaN frame and a frame
of pure noise: each is listed with its reason, the run finishes, and every other frame's
results are bit-for-bit those of the clean night."""

import hashlib
import logging
import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
import astropy.units as u

import opticam_like as ol
from opticam_like.flags import PhotFlag

SHAPE = (256, 256)


def _reduce(data, out):
    with ol.Reducer(out, data_directory=data, n_workers=2, progress=False) as reducer:
        reducer.create_catalogs()
        reducer.photometry()
    return reducer


def _shifted_header(path, seconds):
    header = fits.getheader(path)
    start = Time(header["GPSTIME"].replace(" ", "T"), scale="utc") + seconds * u.s
    header["GPSTIME"] = header["UT"] = start.iso.replace("T", " ")
    header["DATE-OBS"] = start.isot
    return header


def _digests(folder):
    """SHA-256 of every file under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


nights_before_reduction = {}
"""Digests of the input folders, taken by the fixture before it reduces them."""


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    clean = base / "clean"
    ol.generate_observations(clean, n_images=30, shape=SHAPE, n_sources=10, filters=("g", "r"),
                             progress=False)
    dirty = base / "dirty"
    shutil.copytree(clean, dirty, ignore=shutil.ignore_patterns("truth"))
    frame = dirty / "C1_g_000015.fits"
    data = fits.getdata(frame)
    header = _shifted_header(frame, 0.3)
    fits.PrimaryHDU(data, header).writeto(dirty / "C1_g_truncated.fits")
    raw = (dirty / "C1_g_truncated.fits").read_bytes()
    (dirty / "C1_g_truncated.fits").write_bytes(raw[:len(raw) // 2])
    header = _shifted_header(frame, 0.4)
    del header["FILTER"]
    fits.PrimaryHDU(data, header).writeto(dirty / "C1_nofilter.fits")
    fits.PrimaryHDU(np.full(SHAPE, np.nan, np.float32),
                    _shifted_header(frame, 0.5)).writeto(dirty / "C1_g_allnan.fits")
    noise = np.random.default_rng(3).poisson(500.0, SHAPE).astype(np.uint16)
    fits.PrimaryHDU(noise, _shifted_header(frame, 0.6)).writeto(dirty / "C1_g_noise.fits")
    nights_before_reduction[clean] = _digests(clean)
    nights_before_reduction[dirty] = _digests(dirty)
    return (clean, _reduce(clean, base / "clean_out"), base / "clean_out",
            dirty, _reduce(dirty, base / "dirty_out"), base / "dirty_out")


def test_rejected_table_in_memory_equals_the_file(nights):
    *_, reducer, out = nights
    on_disk = Table.read(out / "diag" / "rejected_frames.ecsv")
    in_memory = reducer.rejected_table
    assert sorted(zip(in_memory["file"], in_memory["stage"], in_memory["reason"])) == sorted(
        zip(on_disk["file"], on_disk["stage"], on_disk["reason"]))
    assert len(in_memory) == 4


def test_each_bad_frame_listed_with_its_reason(nights):
    *_, out = nights
    rejected = Table.read(out / "diag" / "rejected_frames.ecsv")
    reasons = {row["file"]: (row["stage"], row["reason"]) for row in rejected}
    assert set(reasons) == {"C1_g_truncated.fits", "C1_nofilter.fits", "C1_g_allnan.fits",
                            "C1_g_noise.fits"}
    assert reasons["C1_nofilter.fits"][0] == "scan" and "FILTER" in reasons["C1_nofilter.fits"][1]
    assert reasons["C1_g_truncated.fits"][0] == "read"
    assert "truncated" in reasons["C1_g_truncated.fits"][1]
    assert "no finite pixel" in reasons["C1_g_allnan.fits"][1]
    assert reasons["C1_g_noise.fits"][0] == "alignment"


def test_bad_frames_are_flagged_rows(nights):
    *_, out = nights
    table = Table.read(out / "lcs" / "g_aperture_1.5fwhm.fits")
    assert len(table) == 33  # 30 good + truncated + all-NaN + noise (no FILTER: not g)
    flags = dict(zip(table["file"], table["frame_flags"]))
    assert flags["C1_g_truncated.fits"] & PhotFlag.FRAME_REJECTED
    assert flags["C1_g_allnan.fits"] & PhotFlag.FRAME_REJECTED
    assert flags["C1_g_noise.fits"] & PhotFlag.NOT_ALIGNED
    rejected = table["frame_flags"] & PhotFlag.FRAME_REJECTED != 0
    assert np.all(np.isnan(np.ma.filled(table["flux"][rejected], np.nan)))


def test_other_frames_unchanged(nights):
    """The bad frames change nothing else beyond the catalogue stack's time blocks: the robust
    stack splits the night's frame list (bad frames included) into blocks, so the catalogue
    positions move by a few hundredths of a pixel and fluxes by a hundredth of their errors
    (at most 0.2 of them where a defect pixel enters one run's annulus); flags other than BLENDED and BAD_PIXEL are identical (those two in 95% of points)."""
    _, _, clean_out, _, _, dirty_out = nights
    for band in ("g", "r"):
        clean = Table.read(clean_out / "lcs" / f"{band}_aperture_1.5fwhm.fits")
        dirty = Table.read(dirty_out / "lcs" / f"{band}_aperture_1.5fwhm.fits")
        dirty = dirty[np.isin(dirty["file"], clean["file"])]
        assert list(dirty["file"]) == list(clean["file"])
        # BLENDED is a 1% prediction that may flip with the catalogue flux, and the defect maps
        # sample 30 frames of each night (bad frames included), so a marginal warm pixel may
        # differ: those two bits may differ in a few points, no other bit in any
        loose = int(PhotFlag.BLENDED | PhotFlag.BAD_PIXEL)
        dirty_flags, clean_flags = np.asarray(dirty["flags"]), np.asarray(clean["flags"])
        np.testing.assert_array_equal(dirty_flags & ~loose, clean_flags & ~loose)
        assert np.mean(dirty_flags != clean_flags) < 0.05
        same = dirty_flags == clean_flags   # a masked defect pixel changes the flux it flags
        error = np.asarray(clean["flux_err"])[same]
        delta = np.asarray(dirty["flux"])[same] - np.asarray(clean["flux"])[same]
        assert np.max(np.abs(delta) / error) < 0.2   # a defect pixel in one run's annulus
        assert np.median(np.abs(delta) / error) < 0.01
        np.testing.assert_allclose(np.asarray(dirty["flux_err"])[same], error, rtol=0.01)
        for column in ("x", "y"):
            assert np.max(np.abs(dirty[column] - clean[column])) < 0.05
        clean_cat = Table.read(clean_out / "cat" / f"{band}_catalog.ecsv")
        dirty_cat = Table.read(dirty_out / "cat" / f"{band}_catalog.ecsv")
        assert np.max(np.abs(clean_cat["x"] - dirty_cat["x"])) < 0.05


def test_inputs_untouched_and_nothing_written_there(nights):
    clean, _, _, dirty, _, _ = nights
    assert _digests(dirty) == nights_before_reduction[dirty]
    assert _digests(clean) == nights_before_reduction[clean]


def test_whole_night_errors_stop_at_once(nights, tmp_path, caplog):
    """Bad paths or settings stop the constructor; what needs the frames stops the first
    stage, before anything is measured. Messages reach the ``opticam_like`` logger hierarchy
    (propagating, so caplog's root handler sees them) and the run's info.log."""
    clean = nights[0]
    (tmp_path / "empty").mkdir()
    package_logger = logging.getLogger("opticam_like")
    handlers_before = list(package_logger.handlers)
    reducer = ol.Reducer(tmp_path / "out1", data_directory=tmp_path / "empty", n_workers=1)
    assert not (tmp_path / "out1").exists()  # the constructor writes nothing
    with caplog.at_level(logging.INFO, logger="opticam_like"):
        with pytest.raises(ol.ReductionError, match="no FITS frames"):
            reducer.create_catalogs()
    assert any(r.name == "opticam_like.reducer" and "reducing" in r.getMessage()
               for r in caplog.records)
    reducer.close()
    assert "reducing" in (tmp_path / "out1" / "info.log").read_text()
    assert package_logger.handlers == handlers_before
    with pytest.raises(ol.ReductionError, match="does not exist"):
        ol.Reducer(tmp_path / "out1", data_directory=tmp_path / "missing", n_workers=1)
    mixed = tmp_path / "mixed"
    shutil.copytree(clean, mixed, ignore=shutil.ignore_patterns("truth"))
    header = fits.getheader(mixed / "C1_g_000000.fits")
    header["BINNING"] = "2x2"
    fits.PrimaryHDU(fits.getdata(mixed / "C1_g_000000.fits"), header).writeto(mixed / "odd.fits")
    with pytest.raises(ol.ReductionError, match="mix binnings"):
        with ol.Reducer(tmp_path / "out2", data_directory=mixed, n_workers=1) as reducer:
            reducer.create_catalogs()
    with pytest.raises(ol.ReductionError, match="inside the data directory"):
        ol.Reducer(clean / "reduced", data_directory=clean, n_workers=1)
    with pytest.raises(ol.ConfigError, match="alignment"):
        ol.Reducer(tmp_path / "out3", data_directory=clean, alignment="magic")
    assert issubclass(ol.ReductionError, ol.OpticamLikeError)
    assert issubclass(ol.ConfigError, ol.OpticamLikeError)


def test_config_echo_of_a_run_reads_back(nights):
    """misc/config.toml of a real run is a valid configuration that gives the run's settings."""
    from opticam_like.config import load_config
    from opticam_like.settings import Settings
    _, reducer, out, *_ = nights
    echo = out / "misc" / "config.toml"
    assert load_config(echo)["background"]["estimator"] == "default"
    back = Settings.from_toml(echo)
    assert back == reducer.settings
    assert back.to_toml() == echo.read_text()


def test_run_logs_overlap_and_restore_the_package_logger(tmp_path):
    """Two runs open at once each get the package's records while open; the logger's level
    and handlers are as before once both are closed."""
    from opticam_like.outputs import RunLog
    package = logging.getLogger("opticam_like")
    before = (package.level, list(package.handlers))
    first, second = RunLog(tmp_path / "a" / "info.log"), RunLog(tmp_path / "b" / "info.log")
    logging.getLogger("opticam_like.somewhere").info("both runs")
    first.close()
    logging.getLogger("opticam_like.somewhere").info("second run only")
    second.close()
    first.close()
    assert (tmp_path / "a" / "info.log").read_text().count("run") == 1
    assert "second run only" in (tmp_path / "b" / "info.log").read_text()
    assert (package.level, package.handlers) == before
