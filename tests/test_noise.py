import numpy as np

from opticam_like.photometry.noise import flux_variance, pixel_variance


def test_ccd_equation_terms():
    var, method = pixel_variance(np.array([100.0]), np.array([99.0]), dark=5.0, read_noise=4.0,
                                 bias_subtracted=True)
    assert method == "ccd" and var[0] == 100 + 5 + 16
    var, method = pixel_variance(np.array([1000.0]), np.array([11.0]), 5.0, 4.0, False)
    assert method == "measured_rms" and var[0] == 121.0
    v = flux_variance(np.array([1e4]), np.array([50.0]), np.array([121.0]), np.array([400]))
    assert np.isclose(v[0], 1e4 + 50 * 121 * (1 + np.pi / 2 * 50 / 400))
    v = flux_variance(np.array([-5.0]), np.array([50.0]), np.array([121.0]), np.array([400]),
                      median=False)
    assert np.isclose(v[0], 50 * 121 * (1 + 50 / 400))


def test_flux_error_matches_monte_carlo_scatter():
    """Sum of a Poisson source plus Gaussian sky minus a median sky: predicted vs measured."""
    rng = np.random.default_rng(1)
    area, n_sky, sky, rn, flux = 40, 300, 50.0, 5.0, 2000.0
    sigma2 = sky + rn**2
    trials = 20000
    src = rng.poisson(flux, trials) + rng.normal(0, np.sqrt(sigma2), (trials, area)).sum(1)
    sky_px = rng.normal(0, np.sqrt(sigma2), (trials, n_sky))
    measured = src - area * np.median(sky_px, axis=1)
    predicted = np.sqrt(flux_variance(np.array([flux]), np.array([area]), np.array([sigma2]),
                                      np.array([n_sky])))[0]
    assert abs(np.std(measured) / predicted - 1) < 0.03
