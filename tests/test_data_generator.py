"""Tests of data_generator: the written frames against the physics and the truth."""

import ast
import math
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time
from astropy.timeseries import LombScargle
from scipy.integrate import quad
from scipy.optimize import curve_fit
from scipy.stats import norm

from data_generator import (SimulationParameters, generate_biases, generate_darks,
                            generate_flats, generate_observations, load_truth)
from data_generator.parameters import resolve_parameters
from data_generator.psf import moffat_alpha, psf_stamp

SMALL = dict(shape=(128, 128), n_sources=6, seed=7)
ARTEFACTS = dict(SMALL, cosmic_rays=3.0, hot_pixels=30, dead_pixels=30)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    directory = tmp_path_factory.mktemp("night")
    generate_observations(directory, n_images=20, progress=False, **SMALL)
    return directory


@pytest.fixture(scope="module")
def artefact_night(tmp_path_factory):
    directory = tmp_path_factory.mktemp("artefacts")
    generate_observations(directory, n_images=20, progress=False, **ARTEFACTS)
    return directory


@pytest.fixture(scope="module")
def light_curve_night(tmp_path_factory):
    """Long, tiny night for the variable: 300 frames, exposure shorter than the cadence."""
    directory = tmp_path_factory.mktemp("lc")
    generate_observations(directory, n_images=300, progress=False, shape=(48, 48), n_sources=2,
                          flux_range=(2e4, 5e4), variable_index=1, drift=1.0, jitter=0.1,
                          margin=8, min_separation=10, exposure=0.8, seed=3)
    return directory


@pytest.fixture(scope="module")
def calibrations(tmp_path_factory, artefact_night):
    base = load_truth(artefact_night).parameters
    root = tmp_path_factory.mktemp("calibration")
    generate_biases(root / "bias", n_images=8, parameters=base, progress=False)
    generate_darks(root / "dark", n_images=6, exposure=20.0, parameters=base, progress=False)
    generate_flats(root / "flat", n_images=6, parameters=base, progress=False)
    return root


def _frame(directory, truth, band, index):
    row = truth.frames[(truth.frames["filter"] == band) & (truth.frames["index"] == index)][0]
    with fits.open(Path(directory) / row["file"]) as hdulist:
        return hdulist[0].data.astype(float), hdulist[0].header, row


def _background(truth, camera, row):
    """Expected ADU and ADU variance of each pixel without stars or cosmic rays."""
    p = truth.parameters
    detector = truth.detector(camera)
    electrons = row["sky_e"] * detector["flat"] + detector["dark"] * row["exposure"]
    mean = electrons / p["gain"] + detector["bias"]
    variance = (electrons + p["read_noise"] ** 2) / p["gain"] ** 2 + 1.0 / 12.0
    return mean, variance, detector


def _blank(truth, band, index, shape, radius):
    """Pixels farther than ``radius`` from every star."""
    yy, xx = np.indices(shape)
    blank = np.ones(shape, bool)
    for x, y in truth.positions(band, index):
        blank &= np.hypot(xx - x, yy - y) > radius
    return blank


def _clean_blank(truth, camera, band, index, shape, radius):
    detector = truth.detector(camera)
    blank = _blank(truth, band, index, shape, radius) & ~detector["hot"] & ~detector["dead"]
    hits = truth.cosmic_rays(band)
    hits = hits[hits["frame"] == index]
    blank[hits["y"], hits["x"]] = False
    return blank


# -- files and headers -------------------------------------------------------------------------

def test_files_and_truth_formats(night):
    truth = load_truth(night)
    p = truth.parameters
    assert sorted(f.name for f in Path(night).glob("*.fits"))[:2] == ["C1_g_000000.fits",
                                                                      "C1_g_000001.fits"]
    assert len(list(Path(night).glob("*.fits"))) == 60
    assert len(truth.frames) == 60 and p["n_images"] == 20
    assert set(truth.frames.colnames) == {
        "file", "camera", "filter", "index", "t_start", "t_mid", "exposure", "dx", "dy",
        "rotation", "fwhm", "sky_e", "n_cosmic_rays"}
    assert list(truth.sources["id"]) == list(range(6))
    assert truth.sources["is_variable"].sum() == 1 and truth.sources["is_variable"][2]
    for band in "gri":
        fluxes = truth.fluxes(band)
        for name in ("x", "y", "flux", "saturated"):
            assert fluxes[name].shape == (20, 6)
        assert fluxes["frame"].tolist() == list(range(20))
        assert fluxes["file"][3] == f"{dict(g='C1', r='C2', i='C3')[band]}_{band}_000003.fits"
        # sorted by brightness in the first filter
    assert np.all(np.diff(truth.sources["flux_g"]) <= 0)
    detector = truth.detector("C2")
    assert detector["flat"].shape == (128, 128) and detector["hot"].dtype == bool


def test_headers(night):
    truth = load_truth(night)
    start = Time("2024-01-01T00:00:00", scale="utc")
    pattern = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")
    for k, (camera, band) in enumerate(zip(("C1", "C2", "C3"), "gri")):
        for index in (0, 13):
            path = Path(night) / f"{camera}_{band}_{index:06d}.fits"
            with fits.open(path, do_not_scale_image_data=True) as hdulist:
                header = hdulist[0].header
                assert header["BITPIX"] == 16 and header["BZERO"] == 32768
            assert fits.getdata(path).dtype == np.uint16
            assert header["FILTER"] == band and header["CAMERA"] == camera
            assert header["BINNING"] == "4x4" and header["INSTRUME"] == "OPTICAM"
            assert header["GAIN"] == 1.6 and header["RDNOISE"] == 5.0
            assert header["EXPOSURE"] == 1.0 and header["DARKCURR"] == 0.5
            assert header["IMAGETYP"] == "object" and header["OBSERVAT"] == "SPM"
            assert header["OBJECT"] and header["RA"] == "01:00:00.00"
            assert header["DEC"] == "+25:00:00.0"
            assert pattern.match(header["GPSTIME"]) and header["UT"] == header["GPSTIME"]
            assert header["DATE-OBS"] == header["GPSTIME"].replace(" ", "T")
            offset = (Time(header["DATE-OBS"], scale="utc") - start).sec
            assert offset == pytest.approx(index * 1.0 + k * 0.0025, abs=1e-6)
            row = truth.frames[truth.frames["file"] == path.name][0]
            assert row["t_start"] == header["DATE-OBS"]
            assert row["t_mid"] == pytest.approx(offset + 0.5, abs=1e-6)
    assert truth.parameters["readout_offsets"] == {"C1": 0.0, "C2": 0.0025, "C3": 0.005}


# -- detector physics --------------------------------------------------------------------------

def test_mean_sky_and_noise(night):
    truth = load_truth(night)
    p = truth.parameters
    for camera, band in zip(("C1", "C2", "C3"), "gri"):
        for index in (0, 19):
            data, _, row = _frame(night, truth, band, index)
            mean, variance, _ = _background(truth, camera, row)
            blank = _blank(truth, band, index, data.shape, 4 * row["fwhm"] + 4)
            residual = (data - mean)[blank]
            n = blank.sum()
            assert n > 5000
            expected_sigma = np.sqrt(variance[blank].mean())
            # mean level: (sky * flat + dark * t) / gain + bias, to 5 sigma of the mean
            assert abs(residual.mean()) < 5 * expected_sigma / np.sqrt(n)
            # per-pixel noise: sqrt(sky + dark + RN^2) / gain (+ rounding), to 4 %
            assert residual.std() == pytest.approx(expected_sigma, rel=0.04)
            # a gain of 1 would put the sky 60 % higher: far outside the tolerance
            sky_adu = (data - truth.detector(camera)["bias"])[blank].mean()
            assert sky_adu == pytest.approx(
                (row["sky_e"] + p["dark_current"]) / p["gain"], rel=0.03)


def _box_fraction(x, y, fwhm, box):
    """Fraction of a pixel-integrated Gaussian centred at (x, y) that falls in ``box``."""
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
    rows, cols = box
    fx = norm.cdf(cols.stop - 0.5, x, sigma) - norm.cdf(cols.start - 0.5, x, sigma)
    fy = norm.cdf(rows.stop - 0.5, y, sigma) - norm.cdf(rows.start - 0.5, y, sigma)
    return fx * fy


def test_star_fluxes_match_truth(night):
    truth = load_truth(night)
    p = truth.parameters
    z = []
    for camera, band in zip(("C1", "C2", "C3"), "gri"):
        fluxes = truth.fluxes(band)
        for index in range(0, 20, 4):
            data, _, row = _frame(night, truth, band, index)
            _, _, detector = _background(truth, camera, row)
            flat = detector["flat"]
            # bias-subtracted, times the gain, dark- and flat-corrected, sky-subtracted
            star = ((data - detector["bias"]) * p["gain"]
                    - detector["dark"] * row["exposure"]) / flat - row["sky_e"]
            half = int(math.ceil(3 * row["fwhm"]))
            xs, ys, truths = fluxes["x"][index], fluxes["y"][index], fluxes["flux"][index]
            for s in range(6):
                box = (slice(int(round(ys[s])) - half, int(round(ys[s])) + half + 1),
                       slice(int(round(xs[s])) - half, int(round(xs[s])) + half + 1))
                # the box holds all of the star and a little of its neighbours' wings
                expected = sum(truths[o] * _box_fraction(xs[o], ys[o], row["fwhm"], box)
                               for o in range(6))
                assert _box_fraction(xs[s], ys[s], row["fwhm"], box) > 1 - 1e-9
                variance = ((np.clip(star[box], 0, None) * flat[box] + row["sky_e"] * flat[box]
                             + detector["dark"][box] * row["exposure"] + p["read_noise"] ** 2
                             + p["gain"] ** 2 / 12) / flat[box] ** 2).sum()
                z.append((star[box].sum() - expected) / np.sqrt(variance))
    z = np.array(z)
    assert len(z) == 90
    assert np.all(np.abs(z) < 5)
    assert 0.6 < np.mean(z ** 2) < 1.5


def _gaussian_pixels(x, y, sigma, xx, yy):
    """Pixel-integrated unit Gaussian (independent of the generator's code)."""
    return (np.diff(norm.cdf([xx - 0.5, xx + 0.5], x, sigma), axis=0)[0]
            * np.diff(norm.cdf([yy - 0.5, yy + 0.5], y, sigma), axis=0)[0])


def test_fwhm_matches_truth(night):
    truth = load_truth(night)
    fluxes = truth.fluxes("r")
    for index in (0, 7, 15):
        data, _, row = _frame(night, truth, "r", index)
        mean, variance, detector = _background(truth, "C2", row)
        s = int(np.argmax(fluxes["flux"][index]))
        x, y = fluxes["x"][index, s], fluxes["y"][index, s]
        half = 8
        yy, xx = np.mgrid[int(y) - half:int(y) + half + 1, int(x) - half:int(x) + half + 1]
        image = (data - mean)[yy, xx] * truth.parameters["gain"] / detector["flat"][yy, xx]
        # remove the wings of the neighbours (truth fluxes and FWHM)
        sigma = row["fwhm"] / (2 * np.sqrt(2 * np.log(2)))
        for o in set(range(6)) - {s}:
            image -= fluxes["flux"][index, o] * _gaussian_pixels(
                fluxes["x"][index, o], fluxes["y"][index, o], sigma, xx, yy)
        model = lambda _, xc, yc, width, flux: (flux * _gaussian_pixels(xc, yc, width, xx, yy)
                                                ).ravel()
        (xc, yc, width, _), _ = curve_fit(model, None, image.ravel(),
                                          p0=(x, y, 1.0, image.sum()))
        assert np.hypot(xc - x, yc - y) < 0.05
        assert width * 2 * np.sqrt(2 * np.log(2)) == pytest.approx(row["fwhm"], rel=0.02)
    scatter = np.std(truth.frames["fwhm"]) / np.mean(truth.frames["fwhm"])
    assert 0.03 < scatter < 0.25


def test_bands_and_frames_have_independent_noise(night):
    truth = load_truth(night)
    residuals, masks = [], []
    for camera, band, index in (("C1", "g", 5), ("C2", "r", 5), ("C3", "i", 5), ("C1", "g", 6)):
        data, _, row = _frame(night, truth, band, index)
        mean, variance, _ = _background(truth, camera, row)
        residuals.append((data - mean) / np.sqrt(variance))
        masks.append(_blank(truth, band, index, data.shape, 4 * row["fwhm"] + 4))
    common = np.logical_and.reduce(masks)
    assert common.sum() > 3000
    for a in range(4):
        for b in range(a + 1, 4):
            r = np.corrcoef(residuals[a][common], residuals[b][common])[0, 1]
            assert abs(r) < 5 / np.sqrt(common.sum())


# -- pointing ----------------------------------------------------------------------------------

def test_drift_and_positions(night):
    truth = load_truth(night)
    p = truth.parameters
    directions, wiggles = [], []
    for band in "gri":
        frames = truth.frames[truth.frames["filter"] == band]
        fluxes = truth.fluxes(band)
        assert frames["dx"][0] == 0 and frames["dy"][0] == 0
        drift = np.hypot(frames["dx"][-1], frames["dy"][-1])
        assert drift >= 20
        directions.append(np.arctan2(frames["dy"][-1], frames["dx"][-1]))
        # pos_i = pos_0 + (dx_i, dy_i) without field rotation
        np.testing.assert_allclose(fluxes["x"] - fluxes["x"][0], np.tile(frames["dx"], (6, 1)).T,
                                   atol=1e-9)
        np.testing.assert_allclose(fluxes["y"] - fluxes["y"][0], np.tile(frames["dy"], (6, 1)).T,
                                   atol=1e-9)
        np.testing.assert_allclose(truth.sources[f"x_{band}"], fluxes["x"][0])
        margin = p["margin"]
        assert fluxes["x"].min() >= margin and fluxes["x"].max() <= 127 - margin
        assert fluxes["y"].min() >= margin and fluxes["y"].max() <= 127 - margin
        wiggles += [np.diff(frames["dx"], 2), np.diff(frames["dy"], 2)]
    # jitter of 0.4 px about the smooth path: second differences have an RMS of sqrt(6) * 0.4
    assert np.std(wiggles) / np.sqrt(6) == pytest.approx(0.4, rel=0.25)
    for a in range(3):
        for b in range(a + 1, 3):
            angle = abs((directions[a] - directions[b] + np.pi) % (2 * np.pi) - np.pi)
            assert angle > np.deg2rad(30)
    # each camera sees the field with its own geometry: separations are preserved
    xy = {band: np.stack([truth.sources[f"x_{band}"], truth.sources[f"y_{band}"]], 1)
          for band in "gri"}
    separation = {band: np.hypot(*(v[0] - v[1])) for band, v in xy.items()}
    assert separation["g"] == pytest.approx(separation["r"], rel=1e-9)
    assert separation["g"] == pytest.approx(separation["i"], rel=1e-9)
    sources = truth.sources
    assert separation["g"] >= p["min_separation"]
    assert not np.allclose(sources["x_g"], sources["x_r"])


def test_field_rotation_mapping(tmp_path):
    generate_observations(tmp_path, n_images=5, progress=False, shape=(96, 96), n_sources=3,
                          drift=6.0, field_rotation=3.0, margin=8, seed=2)
    truth = load_truth(tmp_path)
    frames = truth.frames[truth.frames["filter"] == "r"]
    fluxes = truth.fluxes("r")
    centre = np.array([47.5, 47.5])
    assert frames["rotation"][-1] == pytest.approx(3.0)
    for i in range(5):
        phi = np.deg2rad(frames["rotation"][i])
        rotation = np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
        pos0 = np.stack([fluxes["x"][0], fluxes["y"][0]], 1)
        predicted = centre + (pos0 - centre) @ rotation.T + [frames["dx"][i], frames["dy"][i]]
        np.testing.assert_allclose(predicted, np.stack([fluxes["x"][i], fluxes["y"][i]], 1),
                                   atol=1e-9)


# -- the variable ------------------------------------------------------------------------------

def test_variable_light_curve(light_curve_night):
    truth = load_truth(light_curve_night)
    p = truth.parameters
    rms, frequency, exposure = 0.02, 0.135, 0.8
    smearing = np.sin(np.pi * frequency * exposure) / (np.pi * frequency * exposure)
    assert p["variable_observed_rms"] == pytest.approx(rms * smearing)
    lags = {}
    for band in "gri":
        fluxes = truth.fluxes(band)
        t = fluxes["t_mid"]
        flux = fluxes["flux"][:, 1]
        f0 = truth.sources[f"flux_{band}"][1]
        design = np.stack([np.ones_like(t), np.sin(2 * np.pi * frequency * t),
                           np.cos(2 * np.pi * frequency * t)], 1)
        (c, a, b), *_ = np.linalg.lstsq(design, flux / f0, rcond=None)
        assert c == pytest.approx(1.0, abs=1e-9)
        # fractional RMS of the exposure-integrated light curve: rms * sinc(f T)
        assert np.hypot(a, b) / np.sqrt(2) == pytest.approx(rms * smearing, rel=1e-7)
        lags[band] = np.arctan2(-b, a) % (2 * np.pi)
        power = LombScargle(t, flux).power(np.linspace(0.05, 0.45, 4001))
        assert np.linspace(0.05, 0.45, 4001)[np.argmax(power)] == pytest.approx(frequency,
                                                                                abs=0.001)
        # the constant star is constant
        assert np.ptp(fluxes["flux"][:, 0]) / fluxes["flux"][0, 0] < 1e-6
        # an independent integration of F(t) over one exposure
        t0 = t[17] - exposure / 2
        lag = p["variable_lags"][band]
        integral = quad(lambda u: f0 * (1 + np.sqrt(2) * rms * np.sin(
            2 * np.pi * frequency * u - lag)), t0, t0 + exposure)[0] / exposure
        assert flux[17] == pytest.approx(integral, rel=1e-9)
    for band, lag in zip("gri", (0.0, np.pi / 2, np.pi)):
        assert abs((lags[band] - lag + np.pi) % (2 * np.pi) - np.pi) < 1e-6


# -- artefacts and calibration frames ----------------------------------------------------------

def test_cosmic_rays_where_the_truth_says(artefact_night):
    truth = load_truth(artefact_night)
    p = truth.parameters
    n_rays = 0
    for camera, band in zip(("C1", "C2", "C3"), "gri"):
        hits = truth.cosmic_rays(band)
        frames = truth.frames[truth.frames["filter"] == band]
        for index in range(20):
            in_frame = hits[hits["frame"] == index]
            assert frames["n_cosmic_rays"][index] == len(np.unique(in_frame["ray"]))
            n_rays += len(np.unique(in_frame["ray"]))
            if not len(in_frame):
                continue
            data, _, row = _frame(artefact_night, truth, band, index)
            mean, variance, detector = _background(truth, camera, row)
            deposit = np.zeros(data.shape)
            np.add.at(deposit, (in_frame["y"], in_frame["x"]), in_frame["electrons"])
            hit = deposit > 0
            blank = (_blank(truth, band, index, data.shape, 4 * row["fwhm"] + 4)
                     & ~detector["hot"] & ~detector["dead"])
            # every hit pixel holds its charge (stars only add to it)
            z = (data - mean - deposit / p["gain"]) / np.sqrt(variance)
            assert np.all(z[hit] > -6)
            assert np.all(np.abs(z[hit & blank]) < 6)
            # sharp: the unlisted neighbours of a hit are plain sky
            grown = np.zeros_like(hit)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    grown |= np.roll(np.roll(hit, dy, 0), dx, 1)
            ring = grown & ~hit & blank
            assert np.all(np.abs(z[ring]) < 6)
            assert deposit[hit].min() >= 300
    # Poisson with mean 3 per frame over 60 frames: 180 +- 13
    assert abs(n_rays - 180) < 5 * np.sqrt(180)


def test_hot_and_dead_pixels_in_science_frames(artefact_night):
    truth = load_truth(artefact_night)
    p = truth.parameters
    data, _, row = _frame(artefact_night, truth, "g", 3)
    mean, variance, detector = _background(truth, "C1", row)
    assert detector["hot"].sum() == 30 and detector["dead"].sum() == 30
    assert not np.any(detector["hot"] & detector["dead"])
    hits = truth.cosmic_rays("g")
    hits = hits[hits["frame"] == 3]
    clean = np.ones(data.shape, bool)
    clean[hits["y"], hits["x"]] = False
    clean &= _blank(truth, "g", 3, data.shape, 4 * row["fwhm"] + 4)
    hot = detector["hot"] & clean
    excess = (data - mean + (detector["dark"] - p["dark_current"]) * row["exposure"] / p["gain"])
    expected = (detector["dark"][hot] - p["dark_current"]) * row["exposure"] / p["gain"]
    assert np.sum(excess[hot]) == pytest.approx(expected.sum(),
                                                abs=5 * np.sqrt(variance[hot].sum()))
    assert np.all(np.abs((data - mean)[hot] / np.sqrt(variance[hot])) < 6)
    dead = detector["dead"] & clean
    assert np.all(detector["flat"][detector["dead"]] < 0.05)
    sky_adu = row["sky_e"] / p["gain"]
    assert np.all((data - detector["bias"])[dead] < 0.05 * sky_adu + 6 * np.sqrt(
        (p["dark_current"] + 0.05 * row["sky_e"] + p["read_noise"] ** 2)) / p["gain"])


def test_calibration_frames_match_detector_truth(artefact_night, calibrations):
    night = load_truth(artefact_night)
    p = night.parameters
    for kind in ("bias", "dark", "flat"):
        for camera in ("C1", "C2", "C3"):
            cal = load_truth(calibrations / kind).detector(camera)
            for name, values in night.detector(camera).items():
                np.testing.assert_array_equal(cal[name], values)
    detector = night.detector("C2")
    stack = lambda kind: np.array([fits.getdata(calibrations / kind / f"C2_r_{kind}_{i:06d}.fits")
                                   .astype(float) for i in range(8 if kind == "bias" else 6)])

    biases = stack("bias")
    header = fits.getheader(calibrations / "bias" / "C2_r_bias_000000.fits")
    assert header["IMAGETYP"] == "bias" and header["EXPOSURE"] == 0.0
    master_bias = biases.mean(0)
    sigma = np.sqrt((p["read_noise"] / p["gain"]) ** 2 + 1 / 12) / np.sqrt(8)
    residual = master_bias - detector["bias"]
    assert abs(residual.mean()) < 5 * sigma / 128
    assert residual.std() == pytest.approx(sigma, rel=0.04)
    columns = np.corrcoef(master_bias.mean(0), detector["bias"].mean(0))[0, 1]
    assert columns > 0.99

    darks = stack("dark")
    assert fits.getheader(calibrations / "dark" / "C2_r_dark_000000.fits")["EXPOSURE"] == 20.0
    hits = load_truth(calibrations / "dark").cosmic_rays("r", kind="dark")
    n_rays = len(np.unique(np.stack([hits["frame"], hits["ray"]]), axis=1).T)
    assert abs(n_rays - 6 * 60) < 5 * np.sqrt(6 * 60)  # 3 per second, 20 s, 6 darks
    darks[hits["frame"], hits["y"], hits["x"]] = np.nan
    rate = (np.nanmean(darks, 0) - detector["bias"]) * p["gain"] / 20.0
    hot = detector["hot"]
    np.testing.assert_allclose(rate[hot], detector["dark"][hot], rtol=0.1)
    assert set(np.argsort(rate.ravel())[-30:]) == set(np.flatnonzero(hot))
    assert rate[~hot].mean() == pytest.approx(p["dark_current"], abs=0.05)

    flats = stack("flat")
    levels = load_truth(calibrations / "flat").calibration_frames("flat")
    assert levels["level_e"][0] == pytest.approx(25000 * p["gain"])
    assert levels["level_e"][1] / levels["level_e"][0] == pytest.approx(0.95)
    normalised = np.array([(f - detector["bias"]) / np.median(f - detector["bias"])
                           for f in flats])
    master_flat = np.median(normalised, 0)
    hits = load_truth(calibrations / "flat").cosmic_rays("r", kind="flat")
    normalised[hits["frame"], hits["y"], hits["x"]] = np.nan
    good = ~detector["dead"] & ~detector["hot"]
    mean_flat = np.nanmean(normalised, 0)
    ratio = mean_flat[good] / detector["flat"][good]
    expected = np.sqrt(np.mean(1 / (levels["level_e"][levels["camera"] == "C2"]))) / np.sqrt(6)
    assert ratio.std() == pytest.approx(expected, rel=0.15)
    assert set(np.flatnonzero(master_flat < 0.2)) == set(np.flatnonzero(detector["dead"]))
    # the flat carries the vignetting: corners ~20 % below the centre
    assert master_flat[:8, :8].mean() < 0.9 * master_flat[60:68, 60:68].mean()


def test_calibration_frames_are_consistent_by_seed(tmp_path):
    kwargs = dict(shape=(32, 32), hot_pixels=3, seed=11, progress=False)
    generate_biases(tmp_path / "a", n_images=1, **kwargs)
    generate_flats(tmp_path / "b", n_images=1, **kwargs)
    np.testing.assert_array_equal(load_truth(tmp_path / "a").detector("C3")["flat"],
                                  load_truth(tmp_path / "b").detector("C3")["flat"])
    generate_darks(tmp_path / "c", n_images=1, **dict(kwargs, seed=12))
    assert not np.array_equal(load_truth(tmp_path / "a").detector("C3")["flat"],
                              load_truth(tmp_path / "c").detector("C3")["flat"])
    # a different detector cannot be written into a folder that holds another
    with pytest.raises(FileExistsError, match="different detector"):
        generate_darks(tmp_path / "a", n_images=1, **dict(kwargs, seed=12))


def test_saturation(tmp_path, night):
    generate_observations(tmp_path, n_images=3, progress=False, shape=(64, 64), n_sources=2,
                          n_saturated=1, drift=2, margin=10, seed=5)
    truth = load_truth(tmp_path)
    fluxes = truth.fluxes("i")
    assert fluxes["saturated"][:, 0].all() and not fluxes["saturated"][:, 1].any()
    assert fits.getdata(tmp_path / "C3_i_000001.fits").max() == 65535
    clean = load_truth(night)
    assert not any(clean.fluxes(band)["saturated"].any() for band in "gri")
    assert max(fits.getdata(night / f).max() for f in clean.frames["file"]) < 0.8 * 65535


# -- PSF ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("ellipticity", [0.0, 0.2])
def test_gaussian_stamp_is_exact(ellipticity):
    fwhm = 6.0
    rows, cols, stamp = psf_stamp(40.3, 37.8, fwhm, (80, 80), "gaussian", ellipticity=ellipticity)
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
    assert stamp.sum() == pytest.approx(1.0, abs=1e-12)
    yy, xx = np.mgrid[rows, cols]
    assert (stamp * xx).sum() == pytest.approx(40.3, abs=1e-9)
    assert (stamp * yy).sum() == pytest.approx(37.8, abs=1e-9)
    q = 1 - ellipticity
    assert (stamp * (xx - 40.3) ** 2).sum() == pytest.approx(sigma ** 2 / q + 1 / 12, rel=1e-7)
    assert (stamp * (yy - 37.8) ** 2).sum() == pytest.approx(sigma ** 2 * q + 1 / 12, rel=1e-7)


@pytest.mark.parametrize("beta", [1.8, 2.5, 4.0])
def test_moffat_stamp_against_brute_force(beta):
    x, y, fwhm = 40.3, 41.7, 3.0
    rows, cols, stamp = psf_stamp(x, y, fwhm, (128, 128), "moffat", beta)
    alpha = moffat_alpha(fwhm, beta)
    n = 31
    offsets = (np.arange(n) + 0.5) / n - 0.5
    fx = (np.arange(cols.start, cols.stop)[:, None] + offsets).ravel() - x
    fy = (np.arange(rows.start, rows.stop)[:, None] + offsets).ravel() - y
    r2 = (fx[None, :] ** 2 + fy[:, None] ** 2) / alpha ** 2
    fine = (beta - 1) / (np.pi * alpha ** 2) * (1 + r2) ** -beta
    reference = fine.reshape(len(fy) // n, n, len(fx) // n, n).mean((1, 3))
    assert np.abs(stamp - reference).max() < 1.5e-3 * stamp.max()
    # the flux beyond the stamp is that of the analytic profile (square stamp, so below the
    # fraction outside the inscribed circle)
    assert stamp.sum() == pytest.approx(reference.sum(), abs=2e-4)
    radius = (cols.stop - cols.start) / 2
    assert 0 < 1 - reference.sum() < (1 + (radius / alpha) ** 2) ** (1 - beta)


def test_moffat_night_truth_flux_is_the_injected_flux(tmp_path):
    generate_observations(tmp_path, n_images=2, progress=False, shape=(96, 96), n_sources=3,
                          psf="moffat", beta=2.5, drift=3, seed=4)
    truth = load_truth(tmp_path)
    constant = ~truth.sources["is_variable"]
    ratio = truth.fluxes("g")["flux"][:, constant] / truth.sources["flux_g"][constant]
    assert np.all((ratio > 0.995) & (ratio < 1.0))


# -- API ---------------------------------------------------------------------------------------

TINY = dict(shape=(32, 32), n_sources=1, drift=0.0, margin=5, progress=False)


def test_reproducible_and_compressed(tmp_path):
    generate_observations(tmp_path / "a", n_images=2, seed=9, **TINY)
    generate_observations(tmp_path / "b", n_images=2, seed=9, compress=True, **TINY)
    generate_observations(tmp_path / "c", n_images=2, seed=10, **TINY)
    a = fits.getdata(tmp_path / "a" / "C2_r_000001.fits")
    assert (tmp_path / "b" / "C2_r_000001.fits.gz").exists()
    np.testing.assert_array_equal(a, fits.getdata(tmp_path / "b" / "C2_r_000001.fits.gz"))
    assert not np.array_equal(a, fits.getdata(tmp_path / "c" / "C2_r_000001.fits"))
    assert load_truth(tmp_path / "b").frames["file"][0] == "C1_g_000000.fits.gz"


def test_calibrations_beside_the_night(tmp_path):
    generate_observations(tmp_path, n_images=2, seed=9, **TINY)
    generate_biases(tmp_path, n_images=2, parameters=load_truth(tmp_path).parameters,
                    progress=False)
    truth = load_truth(tmp_path)
    assert len(truth.frames) == 6 and len(truth.calibration_frames("bias")) == 6
    assert fits.getheader(tmp_path / "C1_g_bias_000001.fits")["IMAGETYP"] == "bias"
    with pytest.raises(FileExistsError, match="different detector"):
        generate_flats(tmp_path, n_images=1, seed=10, **TINY)


def test_overwrite(tmp_path):
    result = generate_observations(tmp_path, n_images=3, **TINY)
    assert len(result.files) == 9 and result.truth_directory == tmp_path / "truth"
    assert result.parameters.shape == (32, 32)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_observations(tmp_path, n_images=3, **TINY)
    with pytest.raises(FileExistsError):
        generate_observations(tmp_path, n_images=1, **TINY)
    generate_observations(tmp_path, n_images=2, overwrite=True, **TINY)
    assert sorted(f.name for f in tmp_path.glob("C1_*")) == ["C1_g_000000.fits",
                                                             "C1_g_000001.fits"]
    assert len(load_truth(tmp_path).frames) == 6


def test_any_filters_and_cameras(tmp_path):
    generate_observations(tmp_path, n_images=2, filters=("u", "z"), cameras=("A", "B"),
                          binning=2, detector_shape=(64, 64), n_sources=1, drift=0.0,
                          margin=5, progress=False)
    header = fits.getheader(tmp_path / "B_z_000001.fits")
    assert header["BINNING"] == "2x2" and header["CAMERA"] == "B"
    assert fits.getdata(tmp_path / "B_z_000001.fits").shape == (32, 32)
    assert load_truth(tmp_path).parameters["variable_lags"] == {"u": 0.0, "z": np.pi / 2}


@pytest.mark.parametrize("kwargs, error", [
    (dict(gain=0), "gain"),
    (dict(exposure=2.0), "exposure"),
    (dict(filters=("g", "g")), "unique"),
    (dict(psf="airy"), "psf"),
    (dict(variable_index=6), "variable_index"),
    (dict(n_sources=200, shape=(64, 64)), "could place"),
    (dict(flux_range=(1e8, 1e9)), "flux_range"),
])
def test_invalid_parameters(tmp_path, kwargs, error):
    with pytest.raises(ValueError, match=error):
        generate_observations(tmp_path, n_images=2, progress=False,
                              **dict(dict(SMALL, drift=0.0), **kwargs))


def test_invalid_calls(tmp_path):
    with pytest.raises(TypeError, match="unknown simulation parameter"):
        generate_observations(tmp_path, n_images=2, gian=2.0)
    with pytest.raises(ValueError, match="n_images"):
        generate_observations(tmp_path, n_images=0)
    with pytest.raises(FileNotFoundError):
        load_truth(tmp_path / "nothing")
    assert SimulationParameters().shape == (512, 512)
    base = SimulationParameters(shape=(64, 64), cadence=2.0).to_dict()
    derived = resolve_parameters(base, binning=8, cadence=0.5, seed=3)
    assert derived.shape == (256, 256) and derived.exposure == 0.5
    assert resolve_parameters(base, seed=3).shape == (64, 64)


def test_truth_helpers(night):
    truth = load_truth(night)
    assert truth.frame_position("i", "/elsewhere/C3_i_000012.fits.gz") == 12
    x, y = truth.variable_position("i", 12)
    assert (x, y) == (truth.fluxes("i")["x"][12, 2], truth.fluxes("i")["y"][12, 2])
    with pytest.raises(KeyError):
        truth.frame_position("g", "C3_i_000012.fits")


def test_never_imports_opticam_like():
    package = Path(__file__).resolve().parents[1] / "data_generator"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("opticam_like") for a in node.names), path
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("opticam_like"), path
