"""Forced-photometry kernels against photutils, astropy and closed forms."""

import warnings

import numpy as np
import pytest
from astropy.stats import SigmaClip, sigma_clipped_stats
from photutils.aperture import (ApertureStats, CircularAnnulus, CircularAperture,
                                EllipticalAperture, aperture_photometry)
from photutils.background import SExtractorBackground

from opticam_like.photometry.kernels import (STATISTICS, annulus_statistics,
                                             circular_aperture_sums, cutouts,
                                             elliptical_aperture_sums)

RTOL = 1e-10


def _frame(dtype, shape=(60, 70), seed=0):
    """Sky with stars, masked pixels (some NaN) and a variance map."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    data = rng.normal(1000.0, 30.0, shape)
    yy, xx = np.mgrid[0:ny, 0:nx]
    for x0, y0, flux in zip(rng.uniform(0, nx, 12), rng.uniform(0, ny, 12),
                            10 ** rng.uniform(4, 6, 12)):
        data += flux / (2 * np.pi * 2.0**2) * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 8.0)
    mask = rng.random(shape) < 0.03
    data[rng.random(shape) < 0.01] = np.nan
    mask |= ~np.isfinite(data)
    variance = rng.uniform(1.0, 5.0, shape)
    return data.astype(dtype), mask, variance


def _positions(shape, n, seed=1, margin=4.0):
    """Random positions on and just off the image, a third integer and a third half-integer."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    x = rng.uniform(-margin, nx - 1 + margin, n)
    y = rng.uniform(-margin, ny - 1 + margin, n)
    third = n // 3
    x[:third], y[:third] = np.round(x[:third]), np.round(y[:third])
    x[third:2 * third] = np.round(x[third:2 * third]) + 0.5
    y[third:2 * third] = np.round(y[third:2 * third]) + 0.5
    return x, y


def _check_sums(ours, reference, what):
    """Equal to 1e-10 where photutils has a value; NaN where it has none.

    photutils returns 0 (not NaN) for an aperture touching no image pixel while its bounding
    box overlaps the image; we return NaN there (area 0), documented.
    """
    finite = np.isfinite(ours)
    assert not finite[np.isnan(reference)].any(), what
    corner = ~finite & np.isfinite(reference)
    assert np.all(reference[corner] == 0), what
    np.testing.assert_allclose(ours[finite], reference[finite], rtol=RTOL, atol=0, err_msg=what)


def _check_against_photutils(result, apertures, data, mask, variance):
    """Compare sums and errors with photutils' exact method; return photutils' areas."""
    ref_sum, ref_err, ref_area = [], [], []
    for aperture in apertures:
        table = aperture_photometry(data, aperture, mask=mask, error=np.sqrt(variance),
                                    method="exact")
        ref_sum.append(table["aperture_sum"][0])
        ref_err.append(table["aperture_sum_err"][0])
        ref_area.append(aperture.area_overlap(data, mask=mask))
    _check_sums(result.sum, np.array(ref_sum), "sum")
    _check_sums(np.sqrt(result.variance_sum), np.array(ref_err), "variance")
    return np.array(ref_area)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_circular_sums_match_photutils(dtype):
    data, mask, variance = _frame(dtype)
    x, y = _positions(data.shape, 240)
    r = np.random.default_rng(2).uniform(0.3, 20.0, len(x))
    result = circular_aperture_sums(data, x, y, r, mask=mask, variance=variance)
    ref_area = _check_against_photutils(
        result, [CircularAperture((xi, yi), ri) for xi, yi, ri in zip(x, y, r)],
        data, mask, variance)
    has_area = np.isfinite(ref_area)
    np.testing.assert_allclose(result.area[has_area], ref_area[has_area], rtol=RTOL)
    assert np.all(result.area[~has_area] == 0)
    np.testing.assert_allclose(result.full_area, np.pi * r * r, rtol=1e-15)
    ny, nx = data.shape
    off = (x - r < -0.5) | (x + r > nx - 0.5) | (y - r < -0.5) | (y + r > ny - 0.5)
    assert np.array_equal(result.edge, off)
    assert 0 < off.sum() < len(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elliptical_sums_match_photutils(dtype):
    data, mask, variance = _frame(dtype, seed=3)
    x, y = _positions(data.shape, 200, seed=4)
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0.3, 15.0, len(x)), rng.uniform(0.3, 15.0, len(x))
    theta = rng.uniform(-2 * np.pi, 2 * np.pi, len(x))
    theta[::5] = 0.0
    theta[1::5] = np.pi / 2
    result = elliptical_aperture_sums(data, x, y, a, b, theta, mask=mask, variance=variance)
    ref_area = _check_against_photutils(
        result, [EllipticalAperture((xi, yi), ai, bi, theta=ti)
                 for xi, yi, ai, bi, ti in zip(x, y, a, b, theta)], data, mask, variance)
    has_area = np.isfinite(ref_area)
    np.testing.assert_allclose(result.area[has_area], ref_area[has_area], rtol=RTOL)
    np.testing.assert_allclose(result.full_area, np.pi * a * b, rtol=1e-15)


def test_constant_image_gives_exact_area():
    """Sum over a constant image is the aperture area, pi r^2 and pi a b, to rounding."""
    rng = np.random.default_rng(6)
    data = np.full((100, 100), 2.5, dtype=np.float32)
    n = 300
    x, y = rng.uniform(45, 55, n), rng.uniform(45, 55, n)
    r = rng.uniform(0.3, 20.0, n)
    result = circular_aperture_sums(data, x, y, r)
    np.testing.assert_allclose(result.sum, 2.5 * np.pi * r * r, rtol=1e-12)
    np.testing.assert_allclose(result.area, np.pi * r * r, rtol=1e-12)
    assert not result.edge.any()
    a, b, theta = rng.uniform(0.3, 20, n), rng.uniform(0.3, 20, n), rng.uniform(-4, 4, n)
    result = elliptical_aperture_sums(data, x, y, a, b, theta)
    np.testing.assert_allclose(result.sum, 2.5 * np.pi * a * b, rtol=1e-12)


def test_flags_and_masks_count_touched_pixels_only():
    """Pixel (23, 20) is 2.5 px (nearest point) from (20, 20), pixel (24, 20) 3.5 px."""
    data = np.ones((40, 40))
    flags = np.zeros((40, 40), dtype=np.uint16)
    mask = np.zeros((40, 40), dtype=bool)
    flags[20, 23], flags[20, 24], flags[10, 10] = 4, 8, 16
    mask[20, 23] = mask[20, 24] = True
    result = circular_aperture_sums(data, [20.0], [20.0], 3.2, mask=mask, pixel_flags=flags)
    assert result.flags[0] == 4 and result.n_masked[0] == 1
    aperture = CircularAperture((20.0, 20.0), 3.2)
    ref = aperture_photometry(data, aperture, mask=mask, method="exact")["aperture_sum"][0]
    np.testing.assert_allclose(result.sum[0], ref, rtol=RTOL)
    np.testing.assert_allclose(result.area[0], aperture.area_overlap(data, mask=mask),
                               rtol=RTOL)
    radii = [2.5, 2.6, 3.5, 3.6]  # touching a pixel at one point is not touching it
    result = circular_aperture_sums(data, [20.0] * 4, [20.0] * 4, radii, pixel_flags=flags)
    assert result.flags.tolist() == [0, 4, 4, 12]
    assert result.n_masked.tolist() == [0, 0, 0, 0]


def test_nan_in_touched_pixel_propagates_but_not_outside():
    data = np.ones((30, 30))
    data[15, 19] = np.nan        # nearest point 3.5 px from (15, 15)
    assert np.isfinite(circular_aperture_sums(data, [15.0], [15.0], 3.5).sum[0])
    assert np.isnan(circular_aperture_sums(data, [15.0], [15.0], 3.6).sum[0])
    masked = circular_aperture_sums(data, [15.0], [15.0], 3.6, mask=np.isnan(data))
    assert np.isfinite(masked.sum[0]) and masked.n_masked[0] == 1


def test_apertures_off_the_image():
    data = np.ones((20, 20))
    result = circular_aperture_sums(data, [-10.0, -3.0, 4.5, 25.0], [5.0, -3.0, 4.5, 5.0],
                                    [3.0, 3.0, 5.0, 2.0])
    # wholly outside (photutils: NaN), box overlapping but circle not (photutils: 0), edge
    assert np.isnan(result.sum[0]) and np.isnan(result.sum[1]) and np.isnan(result.sum[3])
    assert np.all(result.area[[0, 1, 3]] == 0)
    assert result.edge.tolist() == [True, True, False, True]
    # touching the image edge exactly is not beyond it
    assert not circular_aperture_sums(data, [4.5], [10.0], 5.0).edge[0]
    assert circular_aperture_sums(data, [4.5], [10.0], 5.0 + 1e-9).edge[0]


def test_per_source_radii_equal_separate_calls():
    data, mask, _ = _frame(np.float32, seed=7)
    x, y = _positions(data.shape, 60, seed=8)
    r = np.random.default_rng(9).choice([1.5, 4.0, 7.3], len(x))
    together = circular_aperture_sums(data, x, y, r, mask=mask).sum
    for radius in np.unique(r):
        alone = circular_aperture_sums(data, x[r == radius], y[r == radius], radius,
                                       mask=mask).sum
        np.testing.assert_array_equal(together[r == radius], alone)


def _annulus_reference(data, mask, x, y, r_in, r_out, statistic, maxiters):
    """photutils ApertureStats (center-method pixels), SExtractorBackground for the mode."""
    clip = SigmaClip(sigma=3.0, maxiters=maxiters)
    clipped = statistic not in ("median", "mean")
    value, std, npix = [], [], []
    for xi, yi, ri, ro in zip(x, y, r_in, r_out):
        annulus = CircularAnnulus((xi, yi), ri, ro)
        stats = ApertureStats(data, annulus, mask=mask, sigma_clip=clip if clipped else None)
        if statistic.endswith("median"):
            value.append(float(stats.median))
        elif statistic.endswith("mean"):
            value.append(float(stats.mean))
        else:
            pixels = ApertureStats(data, annulus, mask=mask).data_cutout.compressed()
            value.append(float(SExtractorBackground(sigma_clip=clip).calc_background(
                pixels.astype(np.float64))) if pixels.size else np.nan)
        std.append(float(stats.std))
        npix.append(float(stats.center_aper_area.value))
    return np.array(value), np.array(std), np.array(npix)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("statistic", STATISTICS)
def test_annulus_statistics_match_photutils(dtype, statistic):
    data, mask, _ = _frame(dtype, seed=10)
    x, y = _positions(data.shape, 45, seed=11, margin=6.0)
    rng = np.random.default_rng(12)
    r_in = rng.uniform(0.0, 9.0, len(x))
    r_in[:5] = 9.0             # integer radii: pixel centres exactly on the circles
    r_out = r_in + rng.uniform(1.5, 8.0, len(x))
    r_out[:5] = 15.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_value, ref_std, ref_npix = _annulus_reference(data, mask, x, y, r_in, r_out,
                                                          statistic, maxiters=10)
        result = annulus_statistics(data, x, y, r_in, r_out, mask=mask, statistic=statistic)
    assert np.array_equal(np.isnan(result.value), np.isnan(ref_value))
    ok = np.isfinite(ref_value)
    np.testing.assert_allclose(result.value[ok], ref_value[ok], rtol=RTOL, atol=0)
    np.testing.assert_allclose(result.std[ok], ref_std[ok], rtol=RTOL, atol=0)
    np.testing.assert_array_equal(result.npix[ok], ref_npix[ok])
    assert result.edge.any() and not result.edge.all()


def test_sigma_clipped_annulus_matches_sigma_clipped_stats():
    """Heavy contamination (a star in most annuli) and maxiters=None (to convergence)."""
    data, mask, _ = _frame(np.float32, shape=(80, 80), seed=13)
    yy, xx = np.mgrid[0:80, 0:80]
    x, y = _positions(data.shape, 30, seed=14, margin=-15.0)
    for xi, yi in zip(x[::2], y[::2]):
        data += (2e5 * np.exp(-((xx - xi - 11) ** 2 + (yy - yi) ** 2) / 4.0)).astype(np.float32)
    result_mean = annulus_statistics(data, x, y, 8.0, 14.0, mask=mask,
                                     statistic="sigma_clipped_mean", maxiters=None)
    result_median = annulus_statistics(data, x, y, 8.0, 14.0, mask=mask,
                                       statistic="sigma_clipped_median", maxiters=None)
    for k, (xi, yi) in enumerate(zip(x, y)):
        cutout = ApertureStats(data, CircularAnnulus((xi, yi), 8.0, 14.0),
                               mask=mask).data_cutout
        pixels = cutout.compressed().astype(np.float64)
        mean, median, std = sigma_clipped_stats(pixels, sigma=3.0, maxiters=None)
        np.testing.assert_allclose(result_mean.value[k], mean, rtol=RTOL)
        np.testing.assert_allclose(result_median.value[k], median, rtol=RTOL)
        np.testing.assert_allclose(result_mean.std[k], std, rtol=RTOL)


def test_annulus_without_pixels_is_nan():
    data = np.ones((30, 30))
    result = annulus_statistics(data, [15.0, -50.0], [15.0, 15.0], 3.0, 6.0)
    assert result.value[0] == 1.0 and np.isnan(result.value[1])
    assert result.npix[1] == 0 and result.edge.tolist() == [False, True]
    result = annulus_statistics(data, [15.0], [15.0], 3.0, 6.0, mask=np.ones((30, 30), bool),
                                statistic="mode")
    assert np.isnan(result.value[0]) and np.isnan(result.std[0]) and result.npix[0] == 0


def test_aperture_larger_than_the_image():
    data = np.full((30, 40), 2.0)
    result = circular_aperture_sums(data, [20.0], [15.0], 300.0)
    np.testing.assert_allclose(result.sum[0], 2.0 * data.size, rtol=1e-12)
    assert result.edge[0] and result.area[0] == pytest.approx(data.size, rel=1e-12)


def test_no_sources():
    data = np.ones((10, 10))
    assert circular_aperture_sums(data, [], [], 2.0).sum.shape == (0,)
    assert elliptical_aperture_sums(data, [], [], 2.0, 1.0, 0.0).flags.shape == (0,)
    assert annulus_statistics(data, [], [], 2.0, 4.0).npix.shape == (0,)
    assert cutouts(data, [], [], 2)[0].shape == (0, 5, 5)


def test_cutouts_slices_and_fills():
    data = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    stamps, ix0, iy0 = cutouts(data, [10.4, 0.2, 29.6], [5.5, 0.0, 19.0], 2)
    assert stamps.shape == (3, 5, 5) and stamps.dtype == np.float32
    assert (ix0.tolist(), iy0.tolist()) == ([8, -2, 28], [4, -2, 17])
    np.testing.assert_array_equal(stamps[0], data[4:9, 8:13])
    np.testing.assert_array_equal(stamps[1, 2:, 2:], data[0:3, 0:3])
    assert np.isnan(stamps[1, :2]).all() and np.isnan(stamps[1, :, :2]).all()
    np.testing.assert_array_equal(stamps[2, :3, :2], data[17:20, 28:30])
    assert np.isnan(stamps[2, 3:]).all() and np.isnan(stamps[2, :, 2:]).all()
    filled, _, _ = cutouts(data, [0.0], [0.0], 1, fill_value=-1.0)
    assert filled[0, 0, 0] == -1.0 and filled[0, 1, 1] == data[0, 0]


@pytest.mark.parametrize("call, message", [
    (lambda d: circular_aperture_sums(d, [1.0], [1.0], 0.0), "r must be > 0"),
    (lambda d: circular_aperture_sums(d, [1.0, 2.0], [1.0], 1.0), "equal length"),
    (lambda d: circular_aperture_sums(d, [np.nan], [1.0], 1.0), "finite"),
    (lambda d: circular_aperture_sums(d, [1.0], [1.0], 1.0, mask=np.zeros((2, 2), bool)),
     "shape of data"),
    (lambda d: circular_aperture_sums(d[0], [1.0], [1.0], 1.0), "2-D"),
    (lambda d: elliptical_aperture_sums(d, [1.0], [1.0], 2.0, -1.0, 0.0), "b must be > 0"),
    (lambda d: annulus_statistics(d, [1.0], [1.0], 5.0, 5.0), "r_in < r_out"),
    (lambda d: annulus_statistics(d, [1.0], [1.0], 2.0, 5.0, statistic="mad"),
     "statistic must be one of"),
    (lambda d: annulus_statistics(d, [1.0], [1.0], 2.0, 5.0, maxiters=0), "maxiters"),
    (lambda d: cutouts(d, [1.0], [1.0], 1.5), "half_size"),
])
def test_invalid_input_is_rejected(call, message):
    with pytest.raises(ValueError, match=message):
        call(np.ones((10, 10)))


def test_mask_type_is_checked():
    with pytest.raises(TypeError, match="mask"):
        circular_aperture_sums(np.ones((5, 5)), [2.0], [2.0], 1.0, mask=np.ones((5, 5)))
