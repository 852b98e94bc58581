"""End to end on the simulator's realistic preset, with no calibration frames: Moffat stars with
elliptical, rotating PSFs, cosmic rays, hot pixels and a hot and a dead column per camera, a
satellite trail, close pairs (the variable has a companion 1.5 FWHM away, 2 mag fainter),
clouds, 50 px drift with rotation, mirror flips between cameras and no CAMERA keyword. Every
number is checked against the simulator's truth tables."""

import json

import numpy as np
import pytest
from astropy.table import Table

import opticam_like as ol
from data_generator import generate_realistic_night, load_truth
from opticam_like.flags import PhotFlag

pytestmark = pytest.mark.slow

N_IMAGES = 150
BANDS = "gri"


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    base = tmp_path_factory.mktemp("realistic")
    generate_realistic_night(base, n_images=N_IMAGES, n_calibration=3, progress=False)
    data = base / "night"
    with ol.Reducer(base / "reduced", data_directory=data, n_workers=2,
                    progress=False) as reducer:
        reducer.create_catalogs()
        reducer.photometry(ol.AperturePhotometer(), ol.PSFPhotometer(model="moffat"))
    return base / "reduced", load_truth(data), reducer


def _truth_xy(truth, band, catalog):
    frame = truth.frame_position(band, catalog.meta["reference_frame"])
    return truth.positions(band, frame)


def _variable(truth):
    return int(np.flatnonzero(truth.sources["is_variable"])[0])


def test_catalogue_has_real_stars_only_and_finds_the_pairs(night):
    out, truth, reducer = night
    variable_ids, variable_errors = set(), []
    for band in BANDS:
        catalog = Table.read(out / "cat" / f"{band}_catalog.ecsv")
        inside = catalog[catalog["inside"]]
        xy = _truth_xy(truth, band, catalog)
        distance = np.hypot(np.asarray(inside["x"])[:, None] - xy[None, :, 0],
                            np.asarray(inside["y"])[:, None] - xy[None, :, 1])
        spurious = distance.min(axis=1) > 1.5
        assert spurious.mean() <= 0.02, (band, inside[spurious])
        # every star of at least 2000 e- per frame is found (>10 sigma in the stack)
        flux = np.median(np.asarray(truth.fluxes(band)["flux"]), axis=0)
        in_frame = ((xy[:, 0] > 3) & (xy[:, 0] < 508) & (xy[:, 1] > 3) & (xy[:, 1] < 508))
        found = distance.min(axis=0) < 1.0
        assert np.all(found[in_frame & (flux > 2000)]), (band, np.flatnonzero(
            in_frame & (flux > 2000) & ~found))
        # the blended variable and its companion are two sources
        v = _variable(truth)
        companion = int(truth.pairs[truth.pairs["primary"] == v]["id"][0])
        row = int(np.argmin(distance[:, v]))
        variable_errors.append(distance[row, v])
        assert distance[:, companion].min() < 0.6
        assert np.argmin(distance[:, companion]) != row
        variable_ids.add(int(inside["id"][row]))
    assert len(variable_ids) == 1          # one ID in every camera
    # the variable's position: within 0.2 px in g and r (measured 0.02-0.03 px); in i, where
    # the PSF is sharpest (2.4 px), 0.52 px (issue 8 stays open on this)
    assert sorted(variable_errors)[1] < 0.2 and max(variable_errors) < 0.6, variable_errors


def test_frame_fwhm_matches_the_truth(night):
    out, truth, _ = night
    conditions = truth.conditions
    for band in BANDS:
        table = Table.read(out / "lcs" / f"{band}_aperture_1.5fwhm.fits")
        true = np.asarray(conditions[conditions["filter"] == band]["fwhm"])
        ratio = np.asarray(table["fwhm"]) / true
        assert np.nanmedian(np.abs(ratio - 1)) < 0.05, band
        assert np.mean(np.abs(ratio - 1) < 0.05) > 0.9, band


def test_defects_and_trails_are_flagged_with_no_darks(night):
    """Every point whose aperture touches a hot pixel or a hot column, or whose aperture the
    trail's core crosses, is flagged."""
    out, truth, _ = night
    params = truth.parameters
    for camera, band in zip(params["cameras"], params["filters"]):
        table = Table.read(out / "lcs" / f"{band}_aperture_1.5fwhm.fits")
        x, y = np.asarray(table["x"]), np.asarray(table["y"])
        radius = np.asarray(table["aperture_radius"])[:, None]
        flags = np.asarray(table["flags"])
        defects = truth.defects(camera)
        hot = defects[np.isin(defects["kind"], ["hot", "saturated_hot", "hot_column"])]
        touched = np.zeros(flags.shape, dtype=bool)
        for d in hot:
            if d["kind"] == "hot_column":
                touched |= np.abs(x - d["x"]) < radius + 0.5
            else:
                touched |= np.hypot(x - d["x"], y - d["y"]) < radius + 0.5
        touched &= np.isfinite(x)
        assert touched.any()
        assert np.all(flags[touched] & PhotFlag.BAD_PIXEL), band
        trails = truth.trails[truth.trails["filter"] == band]
        for t in trails:
            p0, p1 = np.array([t["x0"], t["y0"]]), np.array([t["x1"], t["y1"]])
            d = p1 - p0
            px, py = x[t["frame"]], y[t["frame"]]
            s = np.clip(((px - p0[0]) * d[0] + (py - p0[1]) * d[1]) / (d @ d), 0, 1)
            gap = np.hypot(px - p0[0] - s * d[0], py - p0[1] - s * d[1])
            # the trail's core (half maximum) crosses the aperture
            near = gap < radius[t["frame"], 0] + 0.5 * t["fwhm"]
            assert np.all(flags[t["frame"]][near] & (PhotFlag.TRAIL | PhotFlag.EDGE)), band


def _variable_curves(night):
    out, truth, _ = night
    diff = ol.DifferentialPhotometer(out, save=False)
    catalog = Table.read(out / "cat" / "g_catalog.ecsv")
    xy = _truth_xy(truth, "g", catalog)
    v = _variable(truth)
    target = int(catalog["id"][np.argmin(np.hypot(catalog["x"] - xy[v, 0],
                                                  catalog["y"] - xy[v, 1]))])
    return {band: diff.get_relative_light_curve(band, target, photometer="psf_moffat_fit")
            for band in BANDS}


def test_blended_variable_frequency_and_amplitude_in_g_and_r(night):
    """PSF photometry fitting the variable with its companion: in g and r the frequency is
    within 0.5% and the fractional rms within 10% of the injection (measured: 0.02%-0.06%,
    rms +8.7% in g and -3.5% in r)."""
    out, truth, _ = night
    injected = json.loads((out.parent / "night" / "truth" / "parameters.json").read_text())
    analyzer = ol.Analyzer({band: lc for band, lc in _variable_curves(night).items()
                            if band in "gr"})
    for band in "gr":
        assert analyzer.n_excluded[band] < 0.3 * N_IMAGES
        frequency, _ = analyzer.best_frequency(band, 0.02, 0.5)
        assert frequency.to_value("Hz") == pytest.approx(injected["variable_frequency"],
                                                         rel=0.005)
        rms, _ = analyzer.fractional_rms(band, 0.08, 0.2, segment_length=20)
        assert float(np.asarray(rms)) == pytest.approx(injected["variable_observed_rms"],
                                                      rel=0.10), band


@pytest.mark.xfail(strict=True, reason="issue 8 open: on this night the i-band fractional rms "
                   "of the blended variable is ~50% high and the g-r / g-i lags ~0.3 rad off")
def test_blended_variable_meets_the_issue_targets_in_every_band(night):
    """The issue's targets: frequency within 0.5%, fractional rms within 5% and g-r / g-i
    phase lags within 0.1 rad, in every band."""
    out, truth, _ = night
    injected = json.loads((out.parent / "night" / "truth" / "parameters.json").read_text())
    analyzer = ol.Analyzer(_variable_curves(night))
    for band in BANDS:
        frequency, _ = analyzer.best_frequency(band, 0.02, 0.5)
        assert frequency.to_value("Hz") == pytest.approx(injected["variable_frequency"],
                                                         rel=0.005)
        rms, _ = analyzer.fractional_rms(band, 0.08, 0.2, segment_length=20)
        assert float(np.asarray(rms)) == pytest.approx(injected["variable_observed_rms"],
                                                      rel=0.05), band
    lag_r = analyzer.lag("g", "r", 0.12, 0.15, segment_length=20)["phase_lag"][0]
    lag_i = analyzer.lag("g", "i", 0.12, 0.15, segment_length=20)["phase_lag"][0]
    assert float(np.asarray(lag_r)) == pytest.approx(np.pi / 2, abs=0.1)
    assert abs(abs(float(np.asarray(lag_i))) - np.pi) < 0.1
