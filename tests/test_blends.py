"""Blends: the ``BLENDED`` flag and PSF photometry of a target fitted with its neighbour.

The frames are built here: Moffat stars (beta 2.5, FWHM 3.5 px, slightly elliptical) drawn
with ``data_generator.psf`` plus Poisson and read noise; a sinusoidally variable target with a
constant companion 1.5 FWHM away and 2 mag fainter, and isolated stars that set the PSF.
"""

import math

import numpy as np
import pytest
from photutils.aperture import CircularAperture, aperture_photometry

from data_generator.psf import psf_stamp
from opticam_like.flags import PhotFlag
from opticam_like.photometry.blends import BLEND_LIMIT, neighbour_fraction
from opticam_like.photometry.moffat import MoffatProfile, measure_psf
from opticam_like.photometry.optimal import OptimalPhotometer
from opticam_like.photometry.photometers import AperturePhotometer, MeasureInput
from opticam_like.photometry.psf import PSFPhotometer

SKY, READ_NOISE = 200.0, 5.0
FWHM, BETA, ELLIPTICITY = 3.5, 2.5, 0.1
SHAPE = (120, 120)


def _image(rng, x, y, flux):
    model = np.full(SHAPE, SKY)
    for xk, yk, fk in zip(x, y, flux):
        rows, cols, stamp = psf_stamp(xk, yk, FWHM, SHAPE, "moffat", BETA, ELLIPTICITY)
        model[rows, cols] += fk * stamp
    return (rng.poisson(model) + rng.normal(0.0, READ_NOISE, SHAPE) - SKY).astype(np.float32)


def _measure_input(data, x, y, catalog_flux, guide):
    psf, _ = measure_psf(data, x, y, 1.4 * FWHM, candidates=guide)
    n = len(x)
    return MeasureInput(
        data=data, pixel_flags=np.zeros(SHAPE, np.uint16), x=x, y=y, sky=np.full(n, SKY),
        sky_rms=np.full(n, math.hypot(math.sqrt(SKY), READ_NOISE)), fwhm=psf.fwhm,
        read_noise=READ_NOISE, bias_subtracted=True, position_flags=np.zeros(n, np.int32),
        guide=guide, psf=psf, catalog_flux=catalog_flux)


# target, companion (1.5 FWHM east, 2 mag fainter), four isolated guide stars
X = np.array([60.3, 60.3 + 1.5 * FWHM, 25.4, 95.7, 24.8, 94.6])
Y = np.array([60.6, 60.6, 25.2, 24.3, 95.5, 96.1])
FLUX = np.array([1e5, 1e5 * 10 ** (-0.8), 2e5, 2e5, 1.5e5, 1.5e5])
GUIDE = np.array([2, 3, 4, 5])


def test_neighbour_fraction_matches_a_rendered_neighbour():
    """The predicted light of the companion in the target's aperture against photutils'
    exact aperture sum of the companion alone, drawn by the simulator."""
    profile = MoffatProfile(FWHM, BETA, ELLIPTICITY, 0.0)
    for radius in (1.0 * FWHM, 1.5 * FWHM, 2.5 * FWHM):
        model = np.zeros(SHAPE)
        rows, cols, stamp = psf_stamp(X[1], Y[1], FWHM, SHAPE, "moffat", BETA, ELLIPTICITY)
        model[rows, cols] += FLUX[1] * stamp
        neighbour = aperture_photometry(model, CircularAperture((X[0], Y[0]), radius))
        model[:] = 0.0
        rows, cols, stamp = psf_stamp(X[0], Y[0], FWHM, SHAPE, "moffat", BETA, ELLIPTICITY)
        model[rows, cols] += FLUX[0] * stamp
        own = aperture_photometry(model, CircularAperture((X[0], Y[0]), radius))
        truth = float(neighbour["aperture_sum"][0] / own["aperture_sum"][0])
        fraction = neighbour_fraction(profile, X[:2], Y[:2], FLUX[:2], radius)
        assert fraction[0] == pytest.approx(truth, rel=0.03)
        # the target is 6.3x brighter: its light in the companion's aperture is that much more
        assert fraction[1] > 5 * fraction[0]


def test_blended_flag_in_every_photometer():
    rng = np.random.default_rng(1)
    frame = _measure_input(_image(rng, X, Y, FLUX), X, Y, FLUX, GUIDE)
    fraction = neighbour_fraction(frame.psf, X, Y, FLUX, 1.5 * frame.fwhm)
    assert fraction[0] > 5 * BLEND_LIMIT and np.all(fraction[2:] < BLEND_LIMIT / 10)
    for photometer in (AperturePhotometer(), AperturePhotometer(elliptical=True),
                       OptimalPhotometer(), PSFPhotometer(model="moffat", method="weighted")):
        flags = photometer.measure(frame)["flags"]
        blended = (flags & PhotFlag.BLENDED) != 0
        assert blended.tolist() == [True, True, False, False, False, False], photometer.name
    # fitted jointly, the pair is not contaminated by anything left out of the fit
    flags = PSFPhotometer(model="moffat").measure(frame)["flags"]
    assert not np.any(flags & PhotFlag.BLENDED)
    # without catalogue fluxes nothing is flagged
    plain = AperturePhotometer().measure(_measure_input(frame.data, X, Y, None, GUIDE))
    assert not np.any(plain["flags"] & PhotFlag.BLENDED)


def _amplitude(t, flux, period):
    """Fractional amplitude of a sinusoid of known period (linear least squares)."""
    design = np.column_stack([np.ones_like(t), np.sin(2 * np.pi * t / period),
                              np.cos(2 * np.pi * t / period)])
    coef = np.linalg.lstsq(design, flux, rcond=None)[0]
    return math.hypot(coef[1], coef[2]) / coef[0]


def test_psf_photometry_recovers_a_blended_variable():
    """30 frames: target 1e5 e- +-10%, companion constant. PSF photometry (target and
    companion fitted together, positions free from catalogue positions 0.3 px off) recovers the
    amplitude within 5% and the position within 0.2 px; a 1.5 FWHM aperture is diluted."""
    rng = np.random.default_rng(7)
    n_frames, period, amplitude = 30, 10.0, 0.10
    t = np.arange(n_frames, dtype=float)
    catalog_x, catalog_y = X + np.array([0.3, -0.3, 0, 0, 0, 0]), Y - 0.3
    psf_flux, aperture_flux, x_fit, y_fit = [], [], [], []
    psf = PSFPhotometer(model="moffat", max_shift=1.0)
    aperture = AperturePhotometer()
    for k in range(n_frames):
        flux = FLUX.copy()
        flux[0] *= 1 + amplitude * math.sin(2 * math.pi * t[k] / period)
        frame = _measure_input(_image(rng, X, Y, flux), catalog_x, catalog_y, FLUX, GUIDE)
        fitted = psf.measure(frame)
        psf_flux.append(fitted["flux"][:2] / fitted["flux"][2:].sum())
        x_fit.append(fitted["meta"]["x_fit"][:2])
        y_fit.append(fitted["meta"]["y_fit"][:2])
        measured = aperture.measure(frame)
        aperture_flux.append(measured["flux"][0] / measured["flux"][2:].sum())
    psf_flux, x_fit, y_fit = map(np.array, (psf_flux, x_fit, y_fit))
    recovered = _amplitude(t, psf_flux[:, 0], period)
    assert recovered == pytest.approx(amplitude, rel=0.05)
    # the companion stays constant in the joint fit: no amplitude beyond its noise (4 sigma)
    companion = psf_flux[:, 1] / np.mean(psf_flux[:, 1])
    assert _amplitude(t, companion, period) < 4 * np.std(companion) * math.sqrt(2 / n_frames)
    assert np.all(np.abs(np.median(x_fit, axis=0) - X[:2]) < 0.2)
    assert np.all(np.abs(np.median(y_fit, axis=0) - Y[:2]) < 0.2)
    # for the record: the aperture holds part of the companion, which dilutes the variation
    diluted = _amplitude(t, np.array(aperture_flux), period)
    assert diluted < 0.95 * amplitude
