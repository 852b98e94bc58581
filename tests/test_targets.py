"""Targets and comparisons by night ID, by position and by RA/Dec; hand-chosen comparisons
checked; a user's callable's own error reported (issue 10)."""

from dataclasses import dataclass
import warnings

import numpy as np
import pytest
from astropy.table import Table

import data_generator as dg
from opticam_like.flags import ADVISORY
from opticam_like import schema
from opticam_like.errors import ConfigError, ReductionError
from opticam_like.lightcurves import (ComparisonWarning, DifferentialPhotometer, parse_source,
                                      source_id)
from opticam_like.photometry.photometers import AperturePhotometer
from opticam_like.reducer import Reducer

BANDS = ("g", "r", "i")


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """A realistic three-camera night (drift, clouds, cosmic rays, trail), 20 frames of
    256 x 256, reduced."""
    root = tmp_path_factory.mktemp("targets")
    dg.generate_observations(root / "data", 20, preset="realistic", shape=(256, 256),
                             progress=False)
    with Reducer(root / "red", data_directory=root / "data", n_workers=1,
                 progress=False) as reducer:
        reducer.create_catalogs()
        reducer.photometry()
    return root / "red", dg.load_truth(root / "data")


def _variable_xy(out, truth, band):
    """The simulated variable's true position in a camera's reference frame (what a user reads
    off the stack)."""
    catalog = Table.read(schema.catalog_path(out, band))
    frame = truth.frame_position(band, catalog.meta["reference_frame"])
    return truth.variable_position(band, frame)


def test_target_by_position_finds_the_variable_with_one_id_in_every_camera(night):
    out, truth = night
    diff = DifferentialPhotometer(out, save=False)
    ids = {}
    for band in BANDS:
        x, y = _variable_xy(out, truth, band)
        lc = diff.get_relative_light_curve(band, (x, y))
        ids[band] = lc.meta["target"]
        catalog = Table.read(schema.catalog_path(out, band))
        star = catalog[catalog["id"] == ids[band]][0]
        assert np.hypot(star["x"] - x, star["y"] - y) < 1.0
        # the variable (rms 3-4 % here) against its propagated error (0.3 %)
        good = (lc["flags"] & ~ADVISORY) == 0   # the variable's companion makes it BLENDED
        assert np.std(lc["relative_flux"][good]) > 5 * np.median(lc["relative_flux_err"][good])
    assert len(set(ids.values())) == 1, ids
    # a position in another camera's frame names the same star
    x, y = _variable_xy(out, truth, "g")
    for band in BANDS:
        assert source_id(out, band, {"x": x, "y": y, "frame": "g"}) == ids["g"]
    assert source_id(out, "r", parse_source(f"{x},{y}@g")) == ids["g"]


def test_position_errors(night):
    out, _ = night
    with pytest.raises(ReductionError, match=r"no star within 3.0 px of \(-50.0, -50.0\)"):
        source_id(out, "g", (-50.0, -50.0))
    with pytest.raises(ConfigError, match="carries no WCS"):
        source_id(out, "g", {"ra": 150.0, "dec": -20.0})
    with pytest.raises(ConfigError, match="catalogue ID, \\(x, y\\)"):
        source_id(out, "g", "the variable")
    assert source_id(out, "g", 7) == 7


def test_parse_source():
    assert parse_source("3") == 3
    assert parse_source("10.5,20") == (10.5, 20.0)
    assert parse_source("10.5,20@r") == {"x": 10.5, "y": 20.0, "frame": "r"}
    assert parse_source("150.1,-20.5@sky") == {"ra": 150.1, "dec": -20.5}
    with pytest.raises(ValueError, match="expected an ID"):
        parse_source("ten")


def test_variable_comparison_is_named_with_its_reason(night):
    out, truth = night
    diff = DifferentialPhotometer(out, save=False)
    x, y = _variable_xy(out, truth, "g")
    variable = source_id(out, "g", (x, y))
    automatic = diff.get_relative_light_curve("g", 1)
    assert variable not in automatic.meta["comparisons"]
    table = diff.load("g")
    flags = np.asarray(table["flags"]) | np.asarray(table["frame_flags"])[:, None]
    constant = [c for c in automatic.meta["comparisons"] if not flags[:, c - 1].any()][:3]
    assert len(constant) >= 2
    with pytest.warns(ComparisonWarning) as caught:
        lc = diff.get_relative_light_curve("g", 1, comparisons=[variable] + constant)
    messages = [str(w.message) for w in caught]
    assert any(f"comparison star {variable} of target 1" in m and "variable (scatter" in m
               for m in messages), messages
    assert not any("variable" in m for m in messages
                   if f"comparison star {variable} " not in m), messages
    assert "variable" in lc.meta["comparison_warnings"][variable]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ComparisonWarning)
        quiet = diff.get_relative_light_curve("g", 1, comparisons=constant)
    assert quiet.meta["comparison_warnings"] == {}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One camera, four frames of 96 x 96 with six stars."""
    root = tmp_path_factory.mktemp("tiny")
    dg.generate_observations(root / "data", 4, shape=(96, 96), n_sources=6, filters=("g",),
                             progress=False)
    return root / "data"


def test_user_background_error_reaches_rejected_frames_and_final_error(tiny, tmp_path):
    def failing_background(data, mask=None):
        raise ValueError("boom")

    with Reducer(tmp_path / "red", data_directory=tiny, n_workers=1,
                 background=failing_background, progress=False,
                 find_defects=False) as reducer:
        with pytest.raises(ReductionError, match="ValueError: boom") as error:
            reducer.create_catalogs()
    assert "background: ValueError: boom" in str(error.value)
    rejected = Table.read(tmp_path / "red" / schema.REJECTED_TABLE)
    assert len(rejected) == 4
    assert set(rejected["reason"]) == {"ValueError: boom"}
    assert set(rejected["stage"]) == {"background"}
    assert "ValueError: boom" in (tmp_path / "red" / schema.LOG_FILE).read_text()


@dataclass(frozen=True)
class FailingPhotometer(AperturePhotometer):
    def measure(self, frame):
        raise ValueError("boom")


def test_user_photometer_error_reaches_rejected_frames_and_final_error(tiny, tmp_path):
    with Reducer(tmp_path / "red", data_directory=tiny, n_workers=1, progress=False,
                 find_defects=False) as reducer:
        reducer.create_catalogs()
        with pytest.raises(ReductionError, match="no g frame could be measured; first at "
                                                 r"\w+: ValueError: boom"):
            reducer.photometry(FailingPhotometer())
    rejected = Table.read(tmp_path / "red" / schema.REJECTED_TABLE)
    assert list(rejected["reason"]) == ["ValueError: boom"] * 4


def test_finder_contract_checked_at_construction(tmp_path):
    from astropy.table import Table as T

    def no_flags(data, rms, mask=None):
        return T({"x": [1.0], "y": [1.0], "flux": [1.0], "peak": [1.0], "npix": [1],
                  "fwhm": [2.0]})

    def raising(data, rms, mask=None):
        raise RuntimeError("bad finder")

    (tmp_path / "data").mkdir()
    with pytest.raises(ConfigError, match="finder .* without flags: a finder's table needs"):
        Reducer(tmp_path / "red", data_directory=tmp_path / "data", finder=no_flags)
    with pytest.raises(ConfigError, match="catalog_finder .*RuntimeError: bad finder"):
        Reducer(tmp_path / "red", data_directory=tmp_path / "data", catalog_finder=raising)


def test_config_names_stars_by_position(night, tmp_path):
    from opticam_like.config import load_config
    from opticam_like.settings import Settings

    out, truth = night
    x, y = _variable_xy(out, truth, "g")
    path = tmp_path / "night.toml"
    path.write_text(f'[light_curve]\ntarget = {{x = {x}, y = {y}, frame = "g"}}\n'
                    'comparisons = [[10.0, 20.0], 5]\n')
    config = load_config(path)
    assert config["light_curve"]["target"] == {"x": x, "y": y, "frame": "g"}
    settings = Settings.from_arguments(str(path), data_directories=[str(tmp_path)])
    echo = tmp_path / "echo.toml"
    echo.write_text(settings.to_toml())
    assert load_config(echo)["light_curve"] == config["light_curve"]
    diff = DifferentialPhotometer(out, save=False)
    target = source_id(out, "i", config["light_curve"]["target"])
    assert diff.get_relative_light_curve("i", config["light_curve"]["target"]).meta[
        "target"] == target


def test_target_by_ra_dec_through_the_stack_wcs(tmp_path):
    from astropy.io import fits
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, -20.0]
    wcs.wcs.crpix = [51.0, 51.0]                       # FITS 1-based: pixel (50, 50)
    wcs.wcs.cdelt = [-0.5 / 3600, 0.5 / 3600]           # 0.5 arcsec / px, east to the left
    stack = fits.PrimaryHDU(np.zeros((100, 100), np.float32), header=wcs.to_header())
    (tmp_path / "cat").mkdir()
    stack.writeto(schema.stack_path(tmp_path, "g"))
    Table({"id": [1, 2], "x": [50.0, 70.0], "y": [50.0, 30.0]}).write(
        schema.catalog_path(tmp_path, "g"))
    ra, dec = wcs.pixel_to_world_values(70.0, 30.0)
    assert source_id(tmp_path, "g", {"ra": float(ra), "dec": float(dec)}) == 2
    from astropy.coordinates import SkyCoord
    assert source_id(tmp_path, "g", SkyCoord(150.0, -20.0, unit="deg")) == 1
    assert source_id(tmp_path, "g", parse_source(f"{ra},{dec}@sky")) == 2
