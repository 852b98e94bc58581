"""Optimal (Naylor 1998) and PSF photometers on synthetic frames.

Stars are rendered by the independent simulator's ``psf_stamp`` (erf-integrated Gaussians,
supersampled Moffats), with Poisson and read noise, and the known sky subtracted (the global
background is then exact). Fluxes are checked against the truth, against exact apertures and
photutils, and errors against the scatter over noise realisations.
"""

from dataclasses import replace
import json
import math

import numpy as np
import pytest
from astropy.table import Table
from photutils.aperture import CircularAperture, aperture_photometry
from photutils.psf import CircularGaussianPRF, PSFPhotometry

from data_generator.psf import psf_stamp
from opticam_like.flags import PhotFlag
from opticam_like.photometry.noise import flux_variance
from opticam_like.photometry.optimal import OptimalPhotometer
from opticam_like.photometry.photometers import AperturePhotometer, MeasureInput
from opticam_like.photometry.psf import (GaussianProfile, MoffatProfile, PSFPhotometer,
                                         frame_profile, source_stamps, weighted_flux)

SKY = 200.0
READ_NOISE = 5.0


def _frame(x, y, flux, psf="gaussian", fwhm=3.0, beta=2.5, shape=(160, 160), seed=0,
           guide=None, ellipticity=0.0):
    """A noisy frame (sky subtracted) and the electrons of every star that fall in it."""
    rng = np.random.default_rng(seed)
    model = np.full(shape, SKY)
    truth = np.empty(len(x))
    for k, (xk, yk, fk) in enumerate(zip(x, y, flux)):
        rows, cols, stamp = psf_stamp(xk, yk, fwhm, shape, psf, beta, ellipticity)
        model[rows, cols] += fk * stamp
        truth[k] = fk * stamp.sum()
    image = rng.poisson(model) + rng.normal(0.0, READ_NOISE, shape)
    n = len(x)
    frame = MeasureInput(
        data=(image - SKY).astype(np.float32), pixel_flags=np.zeros(shape, np.uint16),
        x=np.asarray(x, float), y=np.asarray(y, float), sky=np.full(n, SKY),
        sky_rms=np.full(n, math.sqrt(SKY + READ_NOISE**2)), fwhm=fwhm, read_noise=READ_NOISE,
        bias_subtracted=True, position_flags=np.zeros(n, np.int32), guide=guide)
    return frame, truth


def _grid(size, step, seed=1):
    """Positions on a grid (isolated stars) with random sub-pixel offsets."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(step / 2, size, step), np.arange(step / 2, size, step))
    return (gx.ravel() + rng.uniform(-0.5, 0.5, gx.size),
            gy.ravel() + rng.uniform(-0.5, 0.5, gx.size))


def _fine_gaussian(cov, dx, dy, m=40):
    """Pixel integral of a Gaussian by m x m midpoint sub-samples (reference)."""
    inverse = np.linalg.inv(np.array(cov))
    offsets = (np.arange(m) + 0.5) / m - 0.5
    total = 0.0
    for a in offsets:
        for b in offsets:
            u, v = dx + a, dy + b
            total = total + np.exp(-0.5 * (inverse[0, 0] * u * u + 2 * inverse[0, 1] * u * v
                                           + inverse[1, 1] * v * v))
    return total / m**2 / (2 * np.pi * math.sqrt(np.linalg.det(cov)))


# --------------------------------------------------------------------------- profiles


@pytest.mark.parametrize("fwhm", [1.5, 3.0])
def test_gaussian_profile_pixel_integrals(fwhm):
    x0, y0 = 12.0 - 0.27, 12.0 + 0.41
    rows, cols, stamp = psf_stamp(x0, y0, fwhm, (25, 25))
    yy, xx = np.mgrid[rows, cols]
    circular = GaussianProfile.from_fwhm(fwhm).render(xx - x0, yy - y0)
    np.testing.assert_allclose(circular, stamp, rtol=0, atol=1e-12)
    d = np.arange(-12, 13.0)
    dx, dy = (d + 0.27)[None, :], (d - 0.41)[:, None]
    s2 = (fwhm / 2.3548200450309493) ** 2
    cov = [[1.6 * s2, 0.4 * s2], [0.4 * s2, 0.7 * s2]]     # rotated: Edgeworth or quadrature
    rotated = GaussianProfile(cov[0][0], cov[1][1], cov[0][1]).render(dx, dy)
    reference = _fine_gaussian(cov, dx, dy)
    assert np.abs(rotated - reference).max() < 8e-4 * reference.max()
    assert rotated.sum() == pytest.approx(1.0, abs=2e-4)


@pytest.mark.parametrize("beta", [1.8, 2.5, 4.0])
def test_moffat_profile_matches_generator(beta):
    x0, y0 = 20.3, 19.8
    rows, cols, stamp = psf_stamp(x0, y0, 3.0, (41, 41), "moffat", beta)
    yy, xx = np.mgrid[rows, cols]
    ours = MoffatProfile(3.0, beta).render(xx - x0, yy - y0)
    # the simulator samples the core 7 x 7 at midpoints: ~1e-3 of the peak
    assert np.abs(ours - stamp).max() < 2e-3 * stamp.max()
    alpha = MoffatProfile(3.0, beta).alpha
    radius = 20.0                       # enclosed fraction of a disc ~ of the box
    assert abs(ours.sum() - stamp.sum()) < 2e-3
    assert ours.sum() < 1.0 and ours.sum() > 1 - (1 + radius**2 / alpha**2) ** (1 - beta) - 0.01


def test_weighted_flux_top_hat_is_the_ccd_equation():
    """With a flat profile both estimators are the plain sum, with flux_variance's error."""
    x, y = _grid(160, 40)
    frame, _ = _frame(x, y, np.full(len(x), 2e4))
    radius = 6.0
    stamps = source_stamps(frame.data, frame.pixel_flags, frame.x, frame.y, 6, radius)
    flat = np.ones(stamps.good.shape) / stamps.good.sum(axis=(1, 2))[:, None, None]
    level = np.full(len(x), 0.7)
    sigma2 = np.full(len(x), SKY + READ_NOISE**2)
    n_sky = np.full(len(x), 300)
    reference = aperture_photometry(frame.data, CircularAperture(np.column_stack([x, y]),
                                                                 radius), method="center")
    area = stamps.good.sum(axis=(1, 2))
    for optimal in (False, True):
        flux, variance, eff_area = weighted_flux(stamps, flat, level, sigma2, n_sky,
                                                 median=False, optimal=optimal)
        np.testing.assert_allclose(flux, np.asarray(reference["aperture_sum"]) - 0.7 * area,
                                   rtol=1e-9)
        np.testing.assert_allclose(eff_area, area, rtol=1e-12)
        np.testing.assert_allclose(variance, flux_variance(flux, area, sigma2, n_sky,
                                                           median=False), rtol=1e-12)


def test_frame_profile_from_guide_stars():
    x, y = _grid(160, 32)
    flux = np.full(len(x), 2e5)
    frame, _ = _frame(x, y, flux, ellipticity=0.2, guide=np.arange(10))
    profile, info = frame_profile(frame, "gaussian")
    sigma = 3.0 / 2.3548200450309493
    q = 0.8
    assert math.sqrt(profile.cxx) == pytest.approx(sigma / math.sqrt(q), rel=0.01)
    assert math.sqrt(profile.cyy) == pytest.approx(sigma * math.sqrt(q), rel=0.01)
    assert abs(profile.cxy) < 0.01 * profile.cxx
    assert info["psf_source"] == "guides" and info["n_psf_stars"] == 10
    assert info["psf_ellipticity"] == pytest.approx(1 - q, abs=0.01)

    frame, _ = _frame(x, y, flux, psf="moffat", guide=np.arange(10))
    profile, info = frame_profile(frame, "moffat")
    assert profile.fwhm == pytest.approx(3.0, rel=0.01)   # fitted, not from the moments
    assert info["psf_beta"] == pytest.approx(2.5, rel=0.1)
    # the Gaussian of a Moffat frame has the stars' half-maximum ellipse (their core)
    assert frame_profile(frame, "gaussian")[0].fwhm == pytest.approx(3.0, rel=0.01)

    no_guides = replace(frame, guide=None, fwhm=3.3)
    profile, info = frame_profile(no_guides, "moffat")
    assert info["psf_source"] == "frame_fwhm" and profile.fwhm == 3.3
    few = replace(frame, guide=np.array([0, 1]))
    profile, info = frame_profile(few, "epsf")
    assert info["psf_model"] == "gaussian" and "psf_fallback" in info


# --------------------------------------------------------------------------- optimal


@pytest.mark.parametrize("psf", ["gaussian", "moffat"])
def test_optimal_flux_is_the_aperture_flux(psf):
    x, y = _grid(192, 24)
    n = len(x)
    rng = np.random.default_rng(2)
    flux = np.where(np.arange(n) < 10, 3e5, 10 ** rng.uniform(5.3, 6.0, n))
    frame, truth = _frame(x, y, flux, psf=psf, shape=(192, 192), guide=np.arange(10))
    optimal = OptimalPhotometer(psf=psf).measure(frame)
    aperture = AperturePhotometer(fwhm_scale=3.0).measure(frame)
    bright = np.arange(10, n)
    ratio = optimal["flux"][bright] / aperture["flux"][bright]
    assert np.all(np.abs(ratio - 1) < 0.005), ratio
    meta = optimal["meta"]
    assert meta["correction_source"] == "guides" and meta["n_correction_stars"] == 10
    assert meta["radius"] == pytest.approx(9.0)
    if psf == "gaussian":
        # the 3 FWHM aperture holds all of a Gaussian: optimal flux = true flux (not 1/12.6)
        pull = (optimal["flux"][10:] - truth[10:]) / optimal["flux_err"][10:]
        assert abs(np.mean(pull)) < 3 / math.sqrt(n - 10) + 0.1
        assert np.median(optimal["flux"][10:] / truth[10:]) == pytest.approx(1.0, abs=0.003)
        assert meta["aperture_correction"] == pytest.approx(1.0, abs=0.003)
    else:
        # a Moffat of beta 2.5 has ~2.3% of its light beyond 3 FWHM
        assert meta["aperture_correction"] == pytest.approx(0.977, abs=0.01)


def test_optimal_gains_signal_to_noise_and_errors_match_scatter():
    """Naylor (1998): profile weights beat the best aperture; errors equal the scatter."""
    x, y = _grid(240, 24)
    n = len(x)
    faint = np.arange(10, n)
    flux = np.where(np.arange(n) < 10, 3e5, np.where(np.arange(n) % 2, 1000.0, 1e4))
    radii = np.arange(0.5, 2.01, 0.1)          # in FWHM
    apertures = [AperturePhotometer(fwhm_scale=r, local_background=None) for r in radii]
    optimal = OptimalPhotometer(local_background=None)
    weighted = PSFPhotometer(method="weighted", local_background=None)
    runs = {"optimal": [], "weighted": [], "exact": [], "center": []}
    errors = {"optimal": [], "weighted": []}
    for seed in range(24):
        frame, _ = _frame(x, y, flux, shape=(240, 240), seed=seed, guide=np.arange(10))
        for key, photometer in (("optimal", optimal), ("weighted", weighted)):
            result = photometer.measure(frame)
            runs[key].append(result["flux"])
            errors[key].append(result["flux_err"])
        runs["exact"].append([a.measure(frame)["flux"] for a in apertures])
        xy = np.column_stack([x, y])
        runs["center"].append([np.asarray(aperture_photometry(
            frame.data, CircularAperture(xy, r * 3.0), method="center")["aperture_sum"])
            for r in radii])
    runs = {k: np.array(v) for k, v in runs.items()}

    def snr(values, stars):
        values = values[..., stars]
        return np.sqrt(np.mean(values.mean(0) ** 2) / np.mean(values.var(0, ddof=1)))

    low = faint[flux[faint] == 1000.0]                       # S/N ~ 12
    gain_exact = snr(runs["optimal"], low) / max(snr(runs["exact"][:, i], low)
                                                 for i in range(len(radii)))
    gain_center = snr(runs["optimal"], low) / max(snr(runs["center"][:, i], low)
                                                  for i in range(len(radii)))
    # hard-edged apertures: Naylor's ~10% for a Gaussian; exact-overlap apertures down-weight
    # their rim pixels and already get part of it (theory at FWHM 3 px: 4%)
    assert 1.05 < gain_center < 1.18, gain_center
    assert gain_exact > 0.995, gain_exact
    for key in ("optimal", "weighted"):
        for level in (1000.0, 1e4):
            stars = faint[flux[faint] == level]
            ratio = np.sqrt(np.mean(np.array(errors[key])[:, stars] ** 2)
                            / np.mean(runs[key][:, stars].var(0, ddof=1)))
            assert ratio == pytest.approx(1.0, abs=0.1), (key, level, ratio)


def test_masked_pixels_are_dropped_and_flagged():
    x, y = _grid(160, 32)
    x[3], y[3] = 1.2, 80.3                       # half off the image
    flux = np.full(len(x), 5e4)
    frame, truth = _frame(x, y, flux, guide=np.arange(5, 15))
    data = frame.data.copy()
    flags = frame.pixel_flags.copy()
    cx, cy = int(round(x[0])), int(round(y[0]))
    data[cy, cx] += 1e6                          # a cosmic ray on the peak, flagged
    flags[cy, cx] = PhotFlag.COSMIC_RAY
    hit = replace(frame, data=data, pixel_flags=flags)
    for photometer in (OptimalPhotometer(), PSFPhotometer(method="weighted")):
        clean = photometer.measure(frame)
        result = photometer.measure(hit)
        assert result["flags"][0] & PhotFlag.COSMIC_RAY
        assert result["flux_err"][0] > clean["flux_err"][0]
        assert abs(result["flux"][0] - truth[0]) < 4 * result["flux_err"][0]
        assert result["flags"][3] & PhotFlag.EDGE
        # the pixels off the image are dropped from the weights: the flux is the total flux
        assert truth[3] < 0.95 * flux[3]
        assert abs(result["flux"][3] - flux[3]) < 4 * result["flux_err"][3]
        assert not result["flags"][1]


# --------------------------------------------------------------------------- PSF


@pytest.mark.parametrize("psf", ["gaussian", "moffat"])
def test_psf_photometry_recovers_true_fluxes(psf):
    x, y = _grid(160, 32)
    n = len(x)
    flux = np.where(np.arange(n) < 8, 1e6, 3e5)
    frame, truth = _frame(x, y, flux, psf=psf, guide=np.arange(8))
    fit = PSFPhotometer(psf, "fit", local_background=None).measure(frame)
    weighted = PSFPhotometer(psf, "weighted", local_background=None).measure(frame)
    ratio = fit["flux"][8:] / truth[8:]
    assert np.all(np.abs(ratio - 1) < 0.01), ratio        # 1% is ~4 sigma here
    # with fixed positions the fit is the linear least-squares amplitude: the weighted sum
    np.testing.assert_allclose(fit["flux"], weighted["flux"], rtol=1e-5)
    assert fit["meta"]["n_groups"] == 0
    if psf == "gaussian":
        reference = PSFPhotometry(CircularGaussianPRF(fwhm=3.0, fixed={"fwhm": True}), 7,
                                  aperture_radius=4.0)
        table = reference(frame.data, init_params=Table({"x": frame.x, "y": frame.y}))
        np.testing.assert_allclose(fit["flux"][8:], table["flux_fit"][8:], rtol=0.004)


def test_psf_fit_moves_positions_within_bounds():
    x, y = _grid(160, 32)
    n = len(x)
    frame, truth = _frame(x, y, np.full(n, 1e5), guide=np.arange(8))
    shifted = replace(frame, x=frame.x + 0.25, y=frame.y - 0.2)
    result = PSFPhotometer(max_shift=0.5, local_background=None).measure(shifted)
    np.testing.assert_allclose(result["meta"]["x_fit"], x, atol=0.05)
    np.testing.assert_allclose(result["meta"]["y_fit"], y, atol=0.05)
    assert np.all(np.abs(result["flux"] / truth - 1) < 0.01)


def test_close_pairs_are_fitted_jointly():
    """Pairs 1.5 FWHM apart: the joint fit separates them; errors match the scatter."""
    x, y = _grid(200, 40)
    guide = np.arange(10)
    first = np.arange(10, len(x))
    second_x, second_y = x[first] + 4.5, y[first] + 0.3
    xs, ys = np.concatenate([x, second_x]), np.concatenate([y, second_y])
    second = np.arange(len(x), len(xs))
    flux = np.concatenate([np.full(10, 3e5), np.full(len(first), 6e4),
                           np.full(len(first), 3e4)])
    fit = PSFPhotometer(local_background=None)
    weighted = PSFPhotometer(method="weighted", local_background=None)
    values, errors, naive = [], [], []
    for seed in range(12):
        frame, truth = _frame(xs, ys, flux, shape=(200, 200), seed=seed, guide=guide)
        result = fit.measure(frame)
        assert result["meta"]["n_groups"] == len(first)
        values.append(result["flux"] / truth)
        errors.append(result["flux_err"] / truth)
        naive.append(weighted.measure(frame)["flux"] / truth)
    values, errors, naive = np.array(values), np.array(errors), np.array(naive)
    for members in (first, second):
        assert np.mean(values[:, members]) == pytest.approx(1.0, abs=0.01)
        assert np.all(np.abs(values[:, members].mean(0) - 1) < 0.03)
        ratio = np.sqrt(np.mean(errors[:, members] ** 2) / np.mean(values[:, members].var(0,
                                                                                   ddof=1)))
        assert ratio == pytest.approx(1.0, abs=0.15), ratio
    assert np.mean(naive[:, second]) > 1.1        # each alone: the neighbour's light


def test_each_frame_keeps_its_own_profile():
    """photutils caches group models by class; two frames of different seeing must differ."""
    x = np.array([30.0, 34.5, 90.0, 60.0, 120.0, 30.0, 90.0])
    y = np.array([30.0, 30.0, 30.0, 90.0, 90.0, 120.0, 120.0])
    flux = np.array([6e4, 3e4, 3e5, 3e5, 3e5, 3e5, 3e5])
    photometer = PSFPhotometer(local_background=None)
    for fwhm in (2.5, 4.0):
        frame, truth = _frame(x, y, flux, fwhm=fwhm, guide=np.arange(2, 7), seed=3)
        result = photometer.measure(frame)
        assert result["meta"]["n_groups"] == 1
        assert np.all(np.abs(result["flux"][:2] / truth[:2] - 1) < 0.02)


def test_epsf_model():
    x, y = _grid(160, 32)
    n = len(x)
    frame, truth = _frame(x, y, np.where(np.arange(n) < 10, 3e5, 1e5), guide=np.arange(10))
    result = PSFPhotometer("epsf", "weighted", correction_radius=3.0).measure(frame)
    aperture = AperturePhotometer(fwhm_scale=3.0).measure(frame)
    assert result["meta"]["psf_model"] == "epsf"
    assert np.all(np.abs(result["flux"][10:] / aperture["flux"][10:] - 1) < 0.01)
    fit = PSFPhotometer("epsf", local_background=None).measure(frame)
    assert np.all(np.abs(fit["flux"][10:] / truth[10:] - 1) < 0.02)


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("photometer", [OptimalPhotometer(), OptimalPhotometer(psf="moffat"),
                                        OptimalPhotometer(psf="epsf"), PSFPhotometer(),
                                        PSFPhotometer(method="weighted")])
def test_contract(photometer):
    x, y = _grid(96, 32)
    flux = np.full(len(x), 1e4)
    flux[4] = 0.0
    frame, _ = _frame(x, y, flux, shape=(96, 96), guide=np.arange(3))
    frame = replace(frame, position_flags=np.where(np.arange(len(x)) == 2,
                                                       PhotFlag.RECENTRE_FAILED, 0))
    result = photometer.measure(frame)
    for key in ("flux", "flux_err", "background", "area", "flags"):
        assert result[key].shape == (len(x),)
    assert result["flags"].dtype == np.int32
    assert result["flags"][2] & PhotFlag.RECENTRE_FAILED
    np.testing.assert_allclose(result["background"], SKY, atol=2.0)
    assert np.all(result["flux_err"] > 0) and np.all(result["area"] > 0)
    assert result["meta"]["noise_method"] == "ccd"
    params = json.loads(json.dumps(photometer.params()))
    assert params["type"] in ("optimal", "psf") and params["name"] == photometer.name
    empty = replace(frame, x=np.zeros(0), y=np.zeros(0),
                            sky=np.zeros(0), sky_rms=np.zeros(0),
                            position_flags=np.zeros(0, np.int32), guide=None)
    assert photometer.measure(empty)["flux"].shape == (0,)


def test_names_and_validation():
    assert OptimalPhotometer().name == "optimal_gaussian"
    assert PSFPhotometer("moffat", "weighted").name == "psf_moffat_weighted"
    assert PSFPhotometer(name="mine").name == "mine"
    for bad in ({"fwhm_scale": 0}, {"psf": "airy"}, {"beta": 1.0}, {"correction_radius": -1}):
        with pytest.raises(ValueError):
            OptimalPhotometer(**bad)
    for bad in ({"model": "airy"}, {"method": "lsq"}, {"fit_shape": 4}, {"max_shift": 0},
                {"grouping_radius": -1}):
        with pytest.raises(ValueError):
            PSFPhotometer(**bad)
    with pytest.raises(ValueError):
        GaussianProfile(1.0, 1.0, 1.0)


def test_no_guides_uses_the_model_normalisation():
    x, y = _grid(128, 32)
    frame, truth = _frame(x, y, np.full(len(x), 1e5), shape=(128, 128))
    result = OptimalPhotometer(local_background=None).measure(frame)
    assert result["meta"]["correction_source"] == "model"
    assert result["meta"]["psf_source"] == "frame_fwhm"
    assert np.all(np.abs(result["flux"] / truth - 1) < 0.01)
