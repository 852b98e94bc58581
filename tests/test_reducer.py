"""End to end on a generated OPTICAM night (3 cameras, g r i, >= 20 px drift) with bias, dark
and flat frames: every number is checked against the simulator's truth tables."""

import json

import numpy as np
import pytest
from astropy.table import Table
from astropy.timeseries import LombScargle

import opticam_like as ol
from data_generator import load_truth
from opticam_like.flags import PhotFlag

N_IMAGES = 200
FREQUENCY = 0.135


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    base = tmp_path_factory.mktemp("night")
    ol.generate_observations(base / "data", n_images=N_IMAGES, progress=False)
    truth = load_truth(base / "data")
    for kind, make in (("bias", ol.generate_biases), ("dark", ol.generate_darks),
                       ("flat", ol.generate_flats)):
        make(base / kind, parameters=truth.parameters, progress=False)
    # the clean night has no scintillation: errors are the CCD equation alone
    profile = ol.load_profile("opticam").with_overrides(scintillation=False)
    reducer = ol.Reducer(base / "reduced", data_directory=base / "data", bias=base / "bias",
                         dark=base / "dark", flat=base / "flat", n_workers=2, progress=False,
                         instrument=profile)
    reducer.create_catalogs()
    reducer.photometry()
    reducer.close()
    return base, truth, reducer


def _match(catalog, truth, band):
    """Truth source index of every catalogue source (nearest in the reference frame)."""
    frame = truth.frame_position(band, catalog.meta["reference_frame"])
    xy = truth.positions(band, frame)
    distance = np.hypot(catalog["x"][:, None] - xy[None, :, 0],
                        catalog["y"][:, None] - xy[None, :, 1])
    return distance.argmin(axis=1), distance.min(axis=1)


def test_drift_is_at_least_20_pixels(night):
    _, truth, _ = night
    frames = truth.frames
    for band in "gri":
        rows = frames[frames["filter"] == band]
        assert np.hypot(rows["dx"], rows["dy"]).max() >= 20


def test_no_frame_lost_and_every_star_found(night):
    base, truth, reducer = night
    assert len(reducer.rejected) == 0
    for band in "gri":
        table = Table.read(base / "reduced" / "lcs" / f"{band}_aperture_1.5fwhm.fits")
        assert len(table) == N_IMAGES
        assert np.all(table["frame_flags"] == 0)
        assert np.isfinite(table["flux"]).all()
        catalog = reducer.catalogs[band]
        index, distance = _match(catalog, truth, band)
        assert sorted(index) == list(range(len(truth.sources)))  # every star, once
        assert distance.max() < 0.2


def test_transforms_follow_the_true_drift(night):
    _, truth, reducer = night
    for band in "gri":
        transforms = reducer.transforms[band]
        rows = truth.frames[truth.frames["filter"] == band]
        ref = truth.frame_position(band, reducer.catalogs[band].meta["reference_frame"])
        # true shift of each frame relative to the reference frame, at the frame centre
        xy0, xyr = truth.positions(band, 0), truth.positions(band, ref)
        for i in range(0, N_IMAGES, 37):
            xyi = truth.positions(band, i)
            x, y = ol.alignment.Transform(np.vstack([transforms["matrix"][i].reshape(2, 3),
                                                     [0, 0, 1]])).apply(xyr[:, 0], xyr[:, 1])
            assert np.abs(x - xyi[:, 0]).max() < 0.15 and np.abs(y - xyi[:, 1]).max() < 0.15
        assert rows["dx"][0] == 0 and xy0.shape == xyr.shape


def test_fluxes_match_truth(night):
    base, truth, reducer = night
    for band in "gri":
        table = Table.read(base / "reduced" / "lcs" / f"{band}_aperture_1.5fwhm.fits")
        index, _ = _match(reducer.catalogs[band], truth, band)
        true = np.asarray(truth.fluxes(band)["flux"])[:, index]
        # flagged points (e.g. a bad pixel masked in the aperture) are not measurements to trust
        good = np.asarray(table["flags"]) == 0
        n_good = good.sum(axis=0)
        ratio = np.where(good, table["flux"] / true, 0.0).sum(axis=0) / n_good
        error = np.sqrt(np.where(good, (table["flux_err"] / true) ** 2, 0.0).sum(axis=0)
                        / n_good / n_good)
        # a 1.5 FWHM aperture of a Gaussian holds 99.8% of the flux
        assert np.all(np.abs(ratio - 0.998) < 0.003 + 4 * error), (ratio, error)


def _light_curves(base, truth, reducer, band):
    index, _ = _match(reducer.catalogs[band], truth, band)
    variable = int(np.flatnonzero(truth.sources["is_variable"])[0])
    ids = reducer.catalogs[band]["id"]
    var_id = int(ids[np.flatnonzero(index == variable)[0]])
    constants = [int(i) for i, t in zip(ids, index) if t != variable]
    return var_id, constants


def test_constant_stars_scatter_matches_errors(night):
    base, truth, reducer = night
    diff = ol.DifferentialPhotometer(base / "reduced", save=False)
    for band in "gri":
        _, constants = _light_curves(base, truth, reducer, band)
        comparisons = constants[:5]
        ratios = []
        for target in constants[5:15]:
            lc = diff.get_relative_light_curve(band, target, comparisons)
            ratios.append(np.std(lc["relative_flux"]) / np.sqrt(np.mean(lc["relative_flux_err"]**2)))
        assert np.all(np.abs(np.array(ratios) - 1) < 0.2), (band, ratios)


def test_variable_rms_frequency_and_lags(night):
    base, truth, reducer = night
    diff = ol.DifferentialPhotometer(base / "reduced")
    injected = json.loads((base / "data" / "truth" / "parameters.json").read_text())
    phases = {}
    for band in "gri":
        var_id, constants = _light_curves(base, truth, reducer, band)
        lc = diff.get_relative_light_curve(band, var_id, constants[:5])
        assert (base / "reduced" / "relative_light_curves"
                / f"{band}_{var_id}_aperture_1.5fwhm.pdf").is_file()
        t = (lc["bjd_tdb"] - lc["bjd_tdb"][0]).sec
        flux = np.asarray(lc["relative_flux"])
        noise = np.sqrt(np.mean(lc["relative_flux_err"]**2))
        rms = np.sqrt(np.var(flux / flux.mean()) - noise**2)
        assert float(np.asarray(rms)) == pytest.approx(injected["variable_observed_rms"], rel=0.1)
        frequency, power = LombScargle(t, flux).autopower(minimum_frequency=0.02,
                                                          maximum_frequency=0.5,
                                                          samples_per_peak=20)
        assert frequency[np.argmax(power)] == pytest.approx(FREQUENCY, rel=0.01)
        design = np.column_stack([np.sin(2 * np.pi * FREQUENCY * t),
                                  np.cos(2 * np.pi * FREQUENCY * t), np.ones_like(t)])
        coeffs = np.linalg.lstsq(design, flux, rcond=None)[0]
        phases[band] = np.arctan2(coeffs[1], coeffs[0])
    lag_r = np.angle(np.exp(1j * (phases["g"] - phases["r"])))
    lag_i = np.angle(np.exp(1j * (phases["g"] - phases["i"])))
    assert lag_r == pytest.approx(np.pi / 2, abs=0.1)
    assert abs(abs(lag_i) - np.pi) < 0.1


def test_outputs_and_provenance(night):
    base, _, reducer = night
    out = base / "reduced"
    for name in ("cat/catalogs.pdf", "diag/background.pdf", "diag/header_times.pdf",
                 "diag/alignment.pdf", "diag/rejected_frames.ecsv", "misc/config.toml",
                 "misc/provenance.json", "info.log", "cal"):
        assert (out / name).exists(), name
    table = Table.read(out / "lcs" / "g_aperture_1.5fwhm.fits")
    assert json.loads(table.meta["PHOTPARS"])["fwhm_scale"] == 1.5
    assert json.loads(table.meta["CONFIG"])["calibration"]["flat"].endswith("flat")
    assert table.meta["NOISE"] == "ccd"  # bias removed: the CCD equation with sky+dark+RN^2
    log = (out / "info.log").read_text()
    assert "catalogue pass g" in log and "background" in log
    assert not any(p.name.startswith(".") for p in (base / "data").iterdir())
    assert ol.decode_flags(PhotFlag.EDGE | PhotFlag.SATURATED) == ["SATURATED", "EDGE"]


def test_scatter_reaches_the_ccd_equation_photon_limit(night):
    """Constant stars: the scatter about the true flux equals the CCD-equation prediction
    from the simulator's true sky, dark, read noise and flat (within 10%), and the reported
    errors equal the scatter (within 10%) — medians over the stars of each band."""
    from opticam_like.photometry.kernels import circular_aperture_sums
    base, truth, reducer = night
    p = truth.parameters
    for camera, band in zip(p["cameras"], p["filters"]):
        table = Table.read(base / "reduced" / "lcs" / f"{band}_aperture_1.5fwhm.fits")
        index, _ = _match(reducer.catalogs[band], truth, band)
        fluxes = truth.fluxes(band)
        flat = truth.detector(camera)["flat"]
        sky = np.asarray(truth.frames[truth.frames["filter"] == band]["sky_e"])
        variable = int(np.flatnonzero(truth.sources["is_variable"])[0])
        ratios_limit, ratios_error = [], []
        for column, source in enumerate(index):
            flags = np.asarray(table["flags"][:, column])
            if source == variable or np.any(flags):
                continue
            x, y = np.asarray(table["x"][:, column]), np.asarray(table["y"][:, column])
            radius = np.asarray(table["aperture_radius"])
            ones = circular_aperture_sums(np.ones_like(flat), x, y, radius)
            f = flat[np.rint(y).astype(int), np.rint(x).astype(int)]
            pixel = (sky * f + p["dark_current"] * p["exposure"] + p["read_noise"] ** 2) / f**2
            true = np.asarray(fluxes["flux"][:, source])
            n_sky = np.pi * (5**2 - 3**2) * np.asarray(table["fwhm"]) ** 2
            limit = np.sqrt(true / f + ones.sum_weights_sq * pixel
                            + ones.area**2 * pixel / n_sky)
            residual = np.asarray(table["flux"][:, column]) - 0.998 * true
            scatter = np.std(residual)
            ratios_limit.append(scatter / np.sqrt(np.mean(limit**2)))
            ratios_error.append(np.sqrt(np.mean(np.asarray(table["flux_err"][:, column]) ** 2))
                                / scatter)
        assert len(ratios_limit) >= 10
        assert abs(np.median(ratios_limit) - 1) < 0.1, (band, ratios_limit)
        assert abs(np.median(ratios_error) - 1) < 0.1, (band, ratios_error)


@pytest.mark.parametrize("gaps", [False, True])
def test_analyzer_recovers_the_injected_signal(night, gaps):
    """The Analyzer on the Reducer's relative light curves: frequency within 0.5%, fractional
    rms within 10%, g-r and g-i phase lags within 0.1 rad; also with two gaps."""
    base, truth, reducer = night
    diff = ol.DifferentialPhotometer(base / "reduced", save=False)
    curves = {}
    for band in "gri":
        var_id, constants = _light_curves(base, truth, reducer, band)
        lc = diff.get_relative_light_curve(band, var_id, constants[:5])
        if gaps:
            keep = np.ones(len(lc), dtype=bool)
            keep[40:70] = keep[120:135] = False
            lc = lc[keep]
        curves[band] = lc
    analyzer = ol.Analyzer(curves)
    injected = json.loads((base / "data" / "truth" / "parameters.json").read_text())
    for band in "gri":
        frequency, _ = analyzer.best_frequency(band, 0.02, 0.5)
        assert frequency.to_value("Hz") == pytest.approx(FREQUENCY, rel=0.005)
        segment = 40 if gaps else None
        rms, _ = analyzer.fractional_rms(band, 0.08, 0.2, segment_length=segment)
        assert float(np.asarray(rms)) == pytest.approx(injected["variable_observed_rms"], rel=0.1)
    segment = 40 if gaps else None
    lag_r = analyzer.lag("g", "r", 0.12, 0.15, segment_length=segment)["phase_lag"][0]
    lag_i = analyzer.lag("g", "i", 0.12, 0.15, segment_length=segment)["phase_lag"][0]
    assert float(np.asarray(lag_r)) == pytest.approx(np.pi / 2, abs=0.1)
    assert abs(abs(float(np.asarray(lag_i))) - np.pi) < 0.1
