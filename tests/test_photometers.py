"""AperturePhotometer against photutils and against truth on synthetic frames."""

import numpy as np
import pytest
from photutils.aperture import (ApertureStats, CircularAnnulus, CircularAperture,
                                EllipticalAperture, aperture_photometry)
from scipy.special import erf

from opticam_like import AnnulusBackground, AperturePhotometer
from opticam_like.flags import PhotFlag
from opticam_like.photometry.photometers import MeasureInput

SKY_VAR = 200.0


def _frame(ellipticity=0.0, seed=0, n=12, shape=(128, 128), sigma=1.4):
    """Stars on a grid (30 px apart), erf-integrated elliptical Gaussians, Poisson + sky noise;
    the positions and fluxes depend on ``n`` only, the noise on ``seed``."""
    grid = np.array([(x, y) for y in range(19, shape[0] - 15, 30)
                     for x in range(19, shape[1] - 15, 30)], dtype=float)[:n]
    x = grid[:, 0] + 0.37
    y = grid[:, 1] - 0.21
    flux = np.geomspace(2e5, 3e3, n)
    sx, sy = sigma / np.sqrt(1 - ellipticity), sigma * np.sqrt(1 - ellipticity)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    image = np.zeros(shape)
    for xi, yi, fi in zip(x, y, flux):
        fx = 0.5 * (erf((xx - xi + 0.5) / (np.sqrt(2) * sx))
                    - erf((xx - xi - 0.5) / (np.sqrt(2) * sx)))
        fy = 0.5 * (erf((yy - yi + 0.5) / (np.sqrt(2) * sy))
                    - erf((yy - yi - 0.5) / (np.sqrt(2) * sy)))
        image += fi * fx * fy
    rng = np.random.default_rng(seed)
    noisy = rng.poisson(image) + rng.normal(0, np.sqrt(SKY_VAR), shape)
    frame = MeasureInput(data=noisy.astype(np.float32), pixel_flags=np.zeros(shape, np.uint16),
                         x=x, y=y, sky=np.full(n, 100.0), sky_rms=np.full(n, np.sqrt(SKY_VAR)),
                         fwhm=2.3548 * sigma, guide=np.arange(4))
    return frame, flux


def test_matches_photutils_exact_apertures():
    frame, _ = _frame()
    photometer = AperturePhotometer(radius=5.0, local_background=AnnulusBackground(
        r_in=9, r_out=15, fwhm_scaled=False, statistic="median"))
    result = photometer.measure(frame)
    positions = np.column_stack([frame.x, frame.y])
    aperture = CircularAperture(positions, r=5.0)
    annulus = ApertureStats(frame.data.astype(float), CircularAnnulus(positions, 9, 15))
    ref = aperture_photometry(frame.data.astype(float), aperture, method="exact")
    expected = ref["aperture_sum"] - annulus.median * aperture.area
    np.testing.assert_allclose(result["flux"], expected, rtol=1e-9)
    assert result["meta"]["noise_method"] == "measured_rms"


def test_elliptical_apertures_follow_the_psf():
    frame, flux = _frame(ellipticity=0.4, seed=3)
    circle = AperturePhotometer(fwhm_scale=1.2, local_background=None).measure(frame)
    ellipse_photometer = AperturePhotometer(fwhm_scale=1.2, elliptical=True,
                                            local_background=None)
    assert ellipse_photometer.name == "aperture_1.2fwhm_ellipse"
    ellipse = ellipse_photometer.measure(frame)
    assert ellipse["meta"]["axis_ratio"] == pytest.approx(0.6, abs=0.05)
    r = ellipse["meta"]["radius"]
    q, theta = ellipse["meta"]["axis_ratio"], ellipse["meta"]["theta"]
    ref = aperture_photometry(frame.data.astype(float),
                              EllipticalAperture(np.column_stack([frame.x, frame.y]),
                                                 r / np.sqrt(q), r * np.sqrt(q), theta=theta),
                              method="exact")
    np.testing.assert_allclose(ellipse["flux"], ref["aperture_sum"], rtol=1e-9)
    np.testing.assert_allclose(ellipse["area"], np.pi * r**2, rtol=1e-9)
    # same area, more of the elongated star's flux
    bright = slice(0, 4)
    assert np.all(ellipse["flux"][bright] / flux[bright] > circle["flux"][bright] / flux[bright])


def test_errors_match_scatter_over_realisations():
    photometer = AperturePhotometer(radius=3.0, local_background=AnnulusBackground(
        r_in=8, r_out=14, fwhm_scaled=False))
    fluxes, errors = [], []
    for seed in range(60):
        frame, _ = _frame(seed=100 + seed, n=6)
        result = photometer.measure(frame)
        fluxes.append(result["flux"])
        errors.append(result["flux_err"])
    scatter = np.std(fluxes, axis=0)
    assert np.median(np.mean(errors, axis=0) / scatter) == pytest.approx(1.0, abs=0.12)


def test_flags_of_pixels_edges_and_non_positive():
    frame, _ = _frame(n=4)
    flags = frame.pixel_flags.copy()
    flags[int(round(frame.y[0])), int(round(frame.x[0]))] = PhotFlag.COSMIC_RAY
    x = frame.x.copy()
    x[1] = 1.0
    data = frame.data.copy()
    data[int(round(frame.y[2])) - 6:int(round(frame.y[2])) + 7,
         int(round(frame.x[2])) - 6:int(round(frame.x[2])) + 7] = -50
    frame = MeasureInput(data=data, pixel_flags=flags, x=x, y=frame.y, sky=frame.sky,
                         sky_rms=frame.sky_rms, fwhm=frame.fwhm,
                         position_flags=np.array([0, 0, 0, PhotFlag.NOT_ALIGNED], np.int32))
    result = AperturePhotometer(radius=4.0, local_background=None).measure(frame)
    assert result["flags"][0] & PhotFlag.COSMIC_RAY
    assert result["flags"][1] & PhotFlag.EDGE
    assert result["flags"][2] & PhotFlag.NON_POSITIVE
    assert result["flags"][3] & PhotFlag.NOT_ALIGNED
