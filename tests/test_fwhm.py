"""Frame FWHM and PSF shape from the elliptical Moffat fit, against truth and photutils.

Stars are drawn here with an independent renderer: the Gaussian or Moffat surface density,
rotated and elongated, averaged over 5 x 5 sub-pixels (pixel integration), with Poisson and
read noise; three stars are saturated (clipped and masked, as calibration flags them).
"""

import math
import time

import numpy as np
import pytest

from opticam_like.detection import DefaultFinder
from opticam_like.photometry.moffat import MoffatProfile, fit_moffat, measure_psf
from opticam_like.stages import frame_fwhm

SHAPE = (512, 512)
SKY, READ_NOISE, SATURATION = 200.0, 5.0, 6e4


def star_density(dx, dy, fwhm, beta, ellipticity, theta):
    """Unit-flux density; ``beta=None`` for a Gaussian; ``fwhm`` the geometric mean."""
    q = 1.0 - ellipticity
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    if beta is None:
        sa, sb = fwhm / 2.3548 / np.sqrt(q), fwhm / 2.3548 * np.sqrt(q)
        return np.exp(-0.5 * ((u / sa) ** 2 + (v / sb) ** 2)) / (2 * np.pi * sa * sb)
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    aa, ab = alpha / np.sqrt(q), alpha * np.sqrt(q)
    return (beta - 1) / (np.pi * aa * ab) * (1 + (u / aa) ** 2 + (v / ab) ** 2) ** -beta


def render(x, y, flux, fwhm, beta, ellipticity, theta, shape=SHAPE, oversample=5):
    """Noise-free image of the stars (pixel-integrated by sub-sampling)."""
    image = np.zeros(shape)
    half = int(10 * fwhm)
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    for xi, yi, fi in zip(x, y, flux):
        ix, iy = int(round(xi)), int(round(yi))
        cols = np.arange(max(ix - half, 0), min(ix + half + 1, shape[1]))
        rows = np.arange(max(iy - half, 0), min(iy + half + 1, shape[0]))
        fx = (cols[:, None] + sub).ravel() - xi
        fy = (rows[:, None] + sub).ravel() - yi
        values = star_density(fx[None, :], fy[:, None], fwhm, beta, ellipticity, theta)
        values = values.reshape(len(rows), oversample, len(cols), oversample).mean(axis=(1, 3))
        image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] += fi * values
    return image


def star_field(rng, fwhm, beta, ellipticity, theta, n=40, n_saturated=3):
    """A 512 x 512 field: ``n`` stars at S/N ~ 20-2000, ``n_saturated`` brighter ones clipped.

    Returns the background-subtracted image, the mask, positions and fluxes (brightest first).
    """
    x = rng.uniform(40, SHAPE[1] - 40, n)
    y = rng.uniform(40, SHAPE[0] - 40, n)
    flux = 10 ** rng.uniform(3.3, 5.3, n) * (fwhm / 3.0) ** 2
    flux[:n_saturated] = 3e6 * (fwhm / 3.0) ** 2
    order = np.argsort(-flux)
    x, y, flux = x[order], y[order], flux[order]
    image = rng.poisson(render(x, y, flux, fwhm, beta, ellipticity, theta) + SKY).astype(float)
    image += rng.normal(0, READ_NOISE, SHAPE)
    mask = image >= SATURATION
    image = np.minimum(image, SATURATION) - SKY
    return image, mask, x, y, flux


CASES = [(beta, fwhm, ellipticity, theta)
         for beta in (None, 2.0, 2.5, 3.0, 5.0)
         for fwhm, ellipticity, theta in ((2.0, 0.0, 0.0), (3.5, 0.2, 0.7), (5.0, 0.1, -1.2),
                                          (8.0, 0.2, 2.0))]


@pytest.mark.parametrize("beta,fwhm,ellipticity,theta", CASES)
def test_frame_psf_matches_the_stars(beta, fwhm, ellipticity, theta):
    rng = np.random.default_rng(int(fwhm * 10 + (beta or 9) * 100))
    image, mask, x, y, _ = star_field(rng, fwhm, beta, ellipticity, theta)
    # the guess is off by 40%, as a moment FWHM on Moffat stars
    psf, n_stars = measure_psf(image, x, y, 1.4 * fwhm, mask=mask)
    assert n_stars >= 5
    assert psf.fwhm == pytest.approx(fwhm, rel=0.05)
    assert psf.ellipticity == pytest.approx(ellipticity, abs=0.03)
    if ellipticity > 0:
        difference = (psf.theta - theta + np.pi / 2) % np.pi - np.pi / 2
        assert abs(difference) < 0.1
    if beta is not None:
        assert psf.beta == pytest.approx(beta, rel=0.2)
    else:
        assert psf.beta > 10


def test_saturated_stars_are_excluded():
    rng = np.random.default_rng(5)
    image, mask, x, y, _ = star_field(rng, 3.0, 2.5, 0.0, 0.0, n_saturated=3)
    # only the saturated stars offered: none is usable
    assert measure_psf(image, x, y, 3.0, mask=mask, candidates=np.arange(3)) == (None, 0)
    # without the mask their flat tops would widen the fit
    flat = fit_moffat(image, x[:3], y[:3], 3.0)
    assert np.all(np.sqrt(flat.fwhm_major * flat.fwhm_minor) > 1.2 * 3.0)


def test_frame_fwhm_from_finder_detections_on_moffat_stars():
    rng = np.random.default_rng(11)
    image, mask, *_ = star_field(rng, 3.0, 2.5, 0.1, 0.4)
    sources = DefaultFinder(threshold=5.0, fwhm=3.0)(image, np.hypot(np.sqrt(SKY), READ_NOISE),
                                                     mask=mask)
    moments = float(np.median(sources["fwhm"][sources["flags"] == 0][:10]))
    assert moments > 1.25 * 3.0  # the second moments the wings inflate
    assert frame_fwhm(image, sources, mask) == pytest.approx(3.0, rel=0.05)


@pytest.mark.parametrize("beta", [2.5, 4.0])
def test_fit_agrees_with_astropy_moffat2d(beta):
    """Round bright stars: our FWHM against astropy's Moffat2D fitted with LevMarLSQFitter
    (pixel-centre sampling, so a large FWHM where pixel integration is negligible)."""
    from astropy.modeling.fitting import LevMarLSQFitter
    from astropy.modeling.functional_models import Const2D, Moffat2D

    rng = np.random.default_rng(3)
    fwhm = 6.0
    x, y = np.array([40.3, 90.7]), np.array([50.6, 80.2])
    image = rng.poisson(render(x, y, [3e5, 2e5], fwhm, beta, 0.0, 0.0, shape=(128, 128))
                        + SKY).astype(float) - SKY
    ours = fit_moffat(image, x, y, fwhm)
    yy, xx = np.mgrid[0:128, 0:128]
    for k in range(2):
        box = (np.abs(xx - x[k]) <= 15) & (np.abs(yy - y[k]) <= 15)
        alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
        model = Moffat2D(image[box].max(), x[k], y[k], alpha, 3.0) + Const2D(0.0)
        fitted = LevMarLSQFitter()(model, xx[box], yy[box], image[box], maxiter=500)
        reference = fitted[0].fwhm
        assert reference == pytest.approx(fwhm, rel=0.03)
        assert np.sqrt(ours.fwhm_major[k] * ours.fwhm_minor[k]) == pytest.approx(reference,
                                                                                  rel=0.02)
        assert ours.beta[k] == pytest.approx(fitted[0].alpha.value, rel=0.1)


def test_fit_agrees_with_photutils_fit_fwhm_on_gaussian_stars():
    """photutils' ``fit_fwhm`` (a circular Gaussian PRF) on round Gaussian stars."""
    from photutils.psf import fit_fwhm

    rng = np.random.default_rng(4)
    image, mask, x, y, _ = star_field(rng, 3.0, None, 0.0, 0.0, n=20, n_saturated=0)
    xy = np.column_stack([x[:8], y[:8]])
    reference = fit_fwhm(image, xypos=xy, fwhm=3.0, fit_shape=13)
    ours = fit_moffat(image, x[:8], y[:8], 3.0)
    np.testing.assert_allclose(reference, 3.0, rtol=0.02)
    np.testing.assert_allclose(np.sqrt(ours.fwhm_major * ours.fwhm_minor), reference,
                               rtol=0.02)


def test_moffat_profile_is_the_rendered_truth():
    """The fitted model's renderer against the test's own sub-sampled star."""
    profile = MoffatProfile(3.0, 2.5, 0.2, 0.6)
    yy, xx = np.mgrid[0:41, 0:41]
    truth = render([20.3], [19.8], [1.0], 3.0, 2.5, 0.2, 0.6, shape=(41, 41), oversample=9)
    ours = profile.render(xx - 20.3, yy - 19.8)
    assert np.max(np.abs(ours - truth)) < 2e-3 * truth.max()
    assert profile.fwhm_major * profile.fwhm_minor == pytest.approx(9.0)


def test_cost_per_frame():
    """The PSF of a 512 x 512 frame with 40 stars (10 fitted) in well under 0.1 s."""
    rng = np.random.default_rng(8)
    image, mask, x, y, _ = star_field(rng, 3.5, 3.0, 0.1, 0.3)
    measure_psf(image, x, y, 4.5, mask=mask)
    start = time.perf_counter()
    for _ in range(5):
        measure_psf(image, x, y, 4.5, mask=mask)
    per_frame = (time.perf_counter() - start) / 5
    assert per_frame < 0.1, f"{per_frame * 1e3:.0f} ms per frame"


def test_reduced_night_fwhm_matches_the_simulated_seeing(tmp_path):
    """End to end on a small elliptical Moffat night: the per-frame FWHM and shape in the
    photometry table against the simulator's truth."""
    import opticam_like as ol
    from data_generator.truth import load_truth

    ol.generate_observations(tmp_path / "data", n_images=10, shape=(256, 256), psf="moffat",
                             beta=2.7, ellipticity=0.15, filters=("g",), n_sources=25,
                             progress=False, seed=3)
    truth = load_truth(tmp_path / "data").frames
    reducer = ol.Reducer(tmp_path / "reduced", data_directory=tmp_path / "data", n_workers=1,
                         progress=False)
    reducer.create_catalogs()
    table = reducer.photometry()[("g", "aperture_1.5fwhm")]
    reducer.close()
    np.testing.assert_allclose(table["fwhm"], truth["fwhm"], rtol=0.05)
    np.testing.assert_allclose(table["fwhm_major"] / table["fwhm_minor"], 1 / 0.85, rtol=0.03)
    np.testing.assert_allclose(table["psf_beta"], 2.7, rtol=0.15)
    # the radius follows the measured FWHM, not the wing-inflated moments
    np.testing.assert_allclose(table["aperture_radius"], 1.5 * truth["fwhm"], rtol=0.05)


def test_stars_off_the_image_or_empty_do_not_stop_the_fit():
    rng = np.random.default_rng(6)
    image, mask, x, y, _ = star_field(rng, 3.0, 3.0, 0.0, 0.0, n_saturated=0)
    # a candidate drifted off the frame and one at the edge come first
    x = np.concatenate([[-20.0, 1.0], x])
    y = np.concatenate([[100.0, 200.0], y])
    psf, n_stars = measure_psf(image, x, y, 3.0)
    assert n_stars == 10 and psf.fwhm == pytest.approx(3.0, rel=0.05)
    # a star on a fully masked patch has no usable pixel: the others are still fitted
    blank = mask.copy()
    blank[int(y[2]) - 10:int(y[2]) + 11, int(x[2]) - 10:int(x[2]) + 11] = True
    fits = fit_moffat(image, x[2:6], y[2:6], 3.0, mask=blank)
    assert not fits.ok[0]
    np.testing.assert_allclose(np.sqrt(fits.fwhm_major * fits.fwhm_minor)[1:], 3.0, rtol=0.05)
