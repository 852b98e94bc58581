"""Tests of opticam_like.detection against analytic results, photutils and sep."""

from pathlib import Path

import numpy as np
import pytest
from scipy.special import erf

from opticam_like.detection import (
    DefaultFinder, SourceFlag, centroid, covariance_to_ellipse, find_peaks, moment_covariance,
    recentre, remove_duplicates, second_moments,
)

SHARED = Path(__file__).parents[2] / "shared"
NTT = SHARED / "realdata" / "sep_ntt_emmi_sextractor_ref"
OGLE = SHARED / "realdata" / "ogle4_lmc_cepheid_timeseries"


def add_gaussian(image, x, y, flux, sigma_x, sigma_y=None, half=None):
    """Add a pixel-integrated (erf) Gaussian star in place."""
    sigma_y = sigma_x if sigma_y is None else sigma_y
    half = half or int(np.ceil(6 * max(sigma_x, sigma_y))) + 1
    ix, iy = int(round(x)), int(round(y))
    xs = np.arange(max(ix - half, 0), min(ix + half + 1, image.shape[1]))
    ys = np.arange(max(iy - half, 0), min(iy + half + 1, image.shape[0]))

    def integrated(edges_from, centre, sigma):
        u = (np.append(edges_from - 0.5, edges_from[-1] + 0.5) - centre) / (np.sqrt(2) * sigma)
        return 0.5 * np.diff(erf(u))

    px = integrated(xs, x, sigma_x)
    py = integrated(ys, y, sigma_y)
    image[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1] += flux * np.outer(py, px)


def star_field(n=60, shape=(256, 256), sigma=1.4, noise=10.0, seed=1, min_sep=16.0, edge=12):
    """Well separated stars with fluxes from 1e3 to 1e6 e- on Gaussian noise."""
    rng = np.random.default_rng(seed)
    xy = []
    while len(xy) < n:
        p = rng.uniform(edge, np.array(shape[::-1]) - edge)
        if all(np.hypot(*(p - q)) > min_sep for q in xy):
            xy.append(p)
    xy = np.array(xy)
    flux = 10 ** rng.uniform(3, 6, n)
    image = np.zeros(shape)
    for (x, y), f in zip(xy, flux):
        add_gaussian(image, x, y, f, sigma)
    image += rng.normal(0, noise, shape)
    return image, xy, flux


# ---------------------------------------------------------------- centroid


def test_centroid_matches_photutils_centroid_com():
    from photutils.centroids import centroid_com

    image, xy, _ = star_field(n=20, seed=3)
    window = 9
    xc, yc = centroid(image, xy[:, 0], xy[:, 1], window)
    for (x, y), a, b in zip(xy, xc, yc):
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        cut = image[iy - 4:iy + 5, ix - 4:ix + 5]
        ex, ey = centroid_com(cut)
        assert a == pytest.approx(ex + ix - 4, abs=1e-10)
        assert b == pytest.approx(ey + iy - 4, abs=1e-10)
    x1, y1 = centroid(image, xy[0, 0], xy[0, 1], window)
    assert isinstance(x1, float) and x1 == pytest.approx(xc[0], abs=1e-12)
    assert y1 == pytest.approx(yc[0], abs=1e-12)


def test_centroid_errors():
    image = np.ones((20, 20))
    with pytest.raises(ValueError, match="extends beyond the image"):
        centroid(image, [10.0, 2.0], [10.0, 10.0], 7)
    with pytest.raises(ValueError, match="odd positive integer"):
        centroid(image, 10.0, 10.0, 4)
    with pytest.raises(ValueError, match="2-D"):
        centroid(np.ones((2, 20, 20)), 10.0, 10.0, 3)


# ---------------------------------------------------------------- moments


@pytest.mark.parametrize("sigma_x, sigma_y", [(1.5, 1.5), (1.5, 2.5), (3.0, 2.0), (4.0, 4.0)])
@pytest.mark.parametrize("phase", [(0.0, 0.0), (0.37, -0.21)])
def test_second_moments_of_pixel_integrated_gaussians(sigma_x, sigma_y, phase):
    half = int(np.ceil(4.5 * max(sigma_x, sigma_y)))
    size = 2 * half + 1
    x, y = half + phase[0], half + phase[1]
    cut = np.zeros((size, size))
    add_gaussian(cut, x, y, 1e5, sigma_x, sigma_y, half=half)
    sx, sy = second_moments(cut, x, y)
    assert sx == pytest.approx(sigma_x, rel=0.01)
    assert sy == pytest.approx(sigma_y, rel=0.01)
    # without the 1/12 px^2 pixel correction sigma=1.5 would be 1.8% too large
    assert abs(sx - sigma_x) < 0.3 * (np.sqrt(sigma_x**2 + 1 / 12) - sigma_x) + 1e-3


def test_moment_covariance_ellipse_of_rotated_gaussian():
    a_true, b_true, theta_true = 3.0, 1.8, np.radians(30.0)
    sub = 11
    half = 16
    fine = (np.arange((2 * half + 1) * sub) + 0.5) / sub - 0.5
    yy, xx = np.meshgrid(fine, fine, indexing="ij")
    x0, y0 = half + 0.2, half - 0.3
    u = (xx - x0) * np.cos(theta_true) + (yy - y0) * np.sin(theta_true)
    v = -(xx - x0) * np.sin(theta_true) + (yy - y0) * np.cos(theta_true)
    model = np.exp(-0.5 * ((u / a_true) ** 2 + (v / b_true) ** 2))
    cut = model.reshape(2 * half + 1, sub, 2 * half + 1, sub).mean(axis=(1, 3))
    a, b, theta = covariance_to_ellipse(*moment_covariance(cut, x0, y0))
    assert a == pytest.approx(a_true, rel=0.01)
    assert b == pytest.approx(b_true, rel=0.01)
    assert theta == pytest.approx(theta_true, abs=0.01)


def test_moments_need_positive_sum():
    with pytest.raises(ValueError, match="positive total"):
        second_moments(-np.ones((5, 5)), 2.0, 2.0)


# ---------------------------------------------------------------- find_peaks


def test_find_peaks_with_and_without_hot_pixel_rejection():
    image, xy, flux = star_field(n=15, seed=5, noise=1.0)
    hot = np.array([[40, 30], [200, 100], [120, 220]])
    image[hot[:, 1], hot[:, 0]] = 5e4
    bright = flux > 3e3  # peak > ~240 e-, far above the threshold
    threshold = 50.0

    def found(table, positions):
        return [np.any((table["x"] == round(x)) & (table["y"] == round(y))) or
                np.any(np.hypot(table["x"] - x, table["y"] - y) < 1.0) for x, y in positions]

    plain = find_peaks(image, threshold)
    assert np.all(np.diff(plain["peak"]) <= 0)
    assert all(found(plain, hot))
    assert all(found(plain, xy[bright]))
    clean = find_peaks(image, threshold, reject_hot_pixels=True)
    assert not any(found(clean, hot))
    assert all(found(clean, xy[bright]))
    assert len(plain) == len(clean) + len(hot)


def test_find_peaks_mask_border_and_box():
    image = np.zeros((50, 50))
    image[10, 10] = 5.0
    image[10, 12] = 4.0
    image[1, 25] = 9.0
    image[30, 30] = 7.0
    assert len(find_peaks(image, 1.0)) == 4
    assert len(find_peaks(image, 1.0, box_size=5)) == 3
    table = find_peaks(image, 1.0, border=3)
    assert (1, 25) not in zip(table["y"], table["x"])
    mask = np.zeros_like(image, dtype=bool)
    mask[30, 30] = True
    table = find_peaks(image, 1.0, mask=mask)
    assert list(table["peak"]) == [9.0, 5.0, 4.0]
    with pytest.raises(ValueError, match="odd integer"):
        find_peaks(image, 1.0, box_size=4)


# ---------------------------------------------------------------- remove_duplicates


def test_remove_duplicates_keeps_brighter_and_matches_brute_force():
    x = np.array([0.0, 1.0, 10.0, 10.5, 30.0])
    y = np.zeros(5)
    flux = np.array([1.0, 5.0, 3.0, 2.0, 1.0])
    assert remove_duplicates(x, y, 2.0, order=np.argsort(-flux)).tolist() == [1, 2, 4]
    assert remove_duplicates(x, y, 2.0).tolist() == [0, 2, 4]

    rng = np.random.default_rng(2)
    x, y = rng.uniform(0, 100, (2, 400))
    order = rng.permutation(400)
    keep = remove_duplicates(x, y, 4.0, order=order)
    kept = []
    for i in order:
        if all(np.hypot(x[i] - x[j], y[i] - y[j]) > 4.0 for j in kept):
            kept.append(i)
    assert keep.tolist() == sorted(kept)
    with pytest.raises(ValueError, match="permutation"):
        remove_duplicates(x, y, 4.0, order=np.zeros(400, dtype=int))


# ---------------------------------------------------------------- recentre


def test_recentre_accuracy_and_sep_winpos():
    sep = pytest.importorskip("sep")
    rng = np.random.default_rng(7)
    sigma = 1.5
    n = 30
    truth = np.column_stack([rng.uniform(20, 236, n), rng.uniform(20, 236, n)])
    truth = truth[remove_duplicates(truth[:, 0], truth[:, 1], 20.0)]
    image = np.zeros((256, 256))
    flux = 2e5
    for x, y in truth:
        add_gaussian(image, x, y, flux, sigma)
    noise = 10.0
    image += rng.normal(0, noise, image.shape)  # S/N ~ 600 per star
    start = truth + rng.uniform(-1, 1, truth.shape)
    fwhm = 2.3548 * sigma
    x, y, failed = recentre(image, start[:, 0], start[:, 1], fwhm)
    assert not failed.any()
    assert np.max(np.hypot(x - truth[:, 0], y - truth[:, 1])) < 0.02
    xs, ys, flag = sep.winpos(image.astype(np.float64), start[:, 0], start[:, 1], sigma)
    assert np.all(flag == 0)
    assert np.max(np.hypot(x - xs, y - ys)) < 0.01


def test_recentre_failures_return_the_input_position():
    image = np.zeros((64, 64))
    add_gaussian(image, 30.2, 30.7, 1e4, 1.5)
    add_gaussian(image, 3.0, 32.0, 1e4, 1.5)
    x0 = np.array([30.0, 27.0, 3.0, np.nan, 50.0])
    y0 = np.array([31.0, 30.7, 32.0, 10.0, 50.0])
    x, y, failed = recentre(image, x0, y0, fwhm=3.5, max_shift=2.0)
    assert failed.tolist() == [False, True, True, True, True]
    assert x[0] == pytest.approx(30.2, abs=0.01) and y[0] == pytest.approx(30.7, abs=0.01)
    np.testing.assert_array_equal(x[1:3], x0[1:3])
    assert np.isnan(x[3])
    # masking the star leaves no positive weight
    mask = np.zeros(image.shape, dtype=bool)
    mask[20:40, 20:40] = True
    _, _, failed = recentre(image, [30.0], [31.0], 3.5, mask=mask)
    assert failed[0]


# ---------------------------------------------------------------- DefaultFinder


def test_default_finder_recovers_injected_stars():
    image, xy, flux = star_field(n=60, seed=11, noise=10.0)
    rms = 10.0
    table = DefaultFinder(threshold=5.0, npixels=5)(image.astype(np.float32), rms)
    assert table.colnames == ["x", "y", "flux", "peak", "npix", "a", "b", "theta", "fwhm",
                              "flags"]
    assert np.all(np.diff(table["flux"]) <= 0)
    peak = flux / (2 * np.pi * 1.4**2)
    detectable = peak > 3 * 5.0 * rms
    found = np.column_stack([table["x"], table["y"]])
    dist = np.hypot(*(found[None, :, :] - xy[:, None, :]).transpose(2, 0, 1)).min(axis=1)
    assert np.all(dist[detectable] < 0.5)
    bright = flux > 1e5
    assert bright.sum() >= 10
    assert np.all(dist[bright] < 0.05)
    assert len(table) <= len(xy) + 2  # no spurious detections to speak of
    nearest = np.argmin(np.hypot(table["x"][:, None] - xy[None, :, 0],
                                 table["y"][:, None] - xy[None, :, 1]), axis=1)
    brightest = table[: bright.sum()]
    assert np.allclose(brightest["flux"], flux[nearest[: bright.sum()]], rtol=0.02)
    assert np.allclose(brightest["fwhm"], 2.3548 * 1.4, rtol=0.1)
    assert np.all(brightest["a"] / brightest["b"] < 1.1)


def test_default_finder_threshold_relation_with_filter():
    """With filtering the threshold is in unfiltered rms; the filtered noise is noise_factor."""
    rng = np.random.default_rng(4)
    noise = rng.normal(0, 1.0, (512, 512))
    finder = DefaultFinder(threshold=1.0, npixels=1, fwhm=3.0)
    assert finder.noise_factor == pytest.approx(1 / (2 * np.sqrt(np.pi) * 3.0 / 2.3548), rel=0.02)
    z = 2.0
    # detect above 2 sigma of the *filtered* noise: threshold = 2 * noise_factor rms
    table = DefaultFinder(threshold=z * finder.noise_factor, npixels=1, fwhm=3.0)(noise, 1.0)
    fraction = table["npix"].sum() / noise.size
    assert fraction == pytest.approx(0.5 * (1 - erf(z / np.sqrt(2))), rel=0.1)
    table = DefaultFinder(threshold=z, npixels=1)(noise, 1.0)
    assert table["npix"].sum() / noise.size == pytest.approx(0.02275, rel=0.05)


def test_default_finder_mask_border_flags_and_limits():
    image = np.zeros((100, 100))
    add_gaussian(image, 50.0, 50.0, 1e4, 1.5)
    add_gaussian(image, 20.0, 70.0, 2e4, 1.5)
    add_gaussian(image, 1.0, 30.0, 3e4, 1.5)
    add_gaussian(image, 75.0, 20.0, 4e4, 1.5)
    mask = np.zeros(image.shape, dtype=bool)
    mask[70, 22] = True
    mask[12:29, 67:84] = True
    table = DefaultFinder()(image, 1.0, mask=mask)
    assert len(table) == 3  # the fully masked star is gone
    assert not np.any(np.hypot(table["x"] - 75, table["y"] - 20) < 10)
    by_x = {round(x): f for x, f in zip(table["x"], table["flags"])}
    assert by_x[50] == 0
    assert by_x[20] == SourceFlag.MASKED
    assert by_x[1] == SourceFlag.EDGE
    with_border = DefaultFinder(border=5)(image, 1.0, mask=mask)
    assert len(with_border) == 3 and with_border["flags"][np.argmin(with_border["x"])] == 1
    assert len(DefaultFinder(max_sources=2)(image, 1.0, mask=mask)) == 2
    nan_image = image.copy()
    nan_image[50, 50] = np.nan
    table = DefaultFinder()(nan_image, 1.0)
    assert table["flags"][np.argmin(np.hypot(table["x"] - 50, table["y"] - 50))] == 2
    empty = DefaultFinder()(np.zeros((30, 30)), 1.0)
    assert len(empty) == 0 and "fwhm" in empty.colnames


def test_default_finder_deblending():
    image = np.zeros((80, 80))
    add_gaussian(image, 35.0, 40.0, 5e4, 1.5)
    add_gaussian(image, 41.0, 40.0, 3e4, 1.5)
    image += np.random.default_rng(0).normal(0, 1.0, image.shape)
    assert len(DefaultFinder()(image, 1.0)) == 1
    table = DefaultFinder(deblend=True)(image, 1.0)
    assert len(table) == 2
    assert np.all(table["flags"] & SourceFlag.BLENDED)
    np.testing.assert_allclose(np.sort(table["x"]), [35.0, 41.0], atol=0.3)


def test_default_finder_validation():
    finder = DefaultFinder()
    with pytest.raises(ValueError, match="2-D"):
        finder(np.zeros((3, 10, 10)), 1.0)
    with pytest.raises(ValueError, match="rms map has shape"):
        finder(np.zeros((10, 10)), np.ones((5, 5)))
    with pytest.raises(ValueError, match="positive finite"):
        finder(np.zeros((10, 10)), -1.0)
    with pytest.raises(ValueError, match="mask has shape"):
        finder(np.zeros((10, 10)), 1.0, mask=np.zeros((5, 5), dtype=bool))
    with pytest.raises(ValueError, match="npixels"):
        DefaultFinder(npixels=0)
    with pytest.raises(ValueError, match="threshold"):
        DefaultFinder(threshold=-1)


# ---------------------------------------------------------------- real data


@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning")
def test_default_finder_vs_sextractor_on_ntt_image():
    """SExtractor found 65 objects (1.5 x globalrms, minarea 5, default.conv, no deblending).

    default.conv is the 3x3 approximation of a FWHM = 2 px Gaussian, so we filter with
    fwhm=2. SExtractor also CLEANs spurious detections near bright objects, which we do not.
    """
    if not NTT.exists():
        pytest.skip(f"shared real data not found at {NTT}")
    sep = pytest.importorskip("sep")
    from astropy.io import fits

    image = fits.getdata(NTT / "image.fits").astype(np.float32)
    bkg = sep.Background(image, bw=64, bh=64, fw=3, fh=3)
    assert bkg.globalrms == pytest.approx(65.46, abs=0.01)
    table = DefaultFinder(threshold=1.5, npixels=5, fwhm=2.0)(image - bkg.back(), bkg.globalrms)
    assert abs(len(table) - 65) <= 0.1 * 65
    catalog = np.loadtxt(NTT / "image.cat")
    ref = np.column_stack([catalog[:, 1] - 1, catalog[:, 2] - 1])  # X_IMAGE is 1-based
    dist = np.hypot(ref[:, None, 0] - table["x"][None, :],
                    ref[:, None, 1] - table["y"][None, :]).min(axis=1)
    assert np.count_nonzero(dist < 1.0) >= 0.9 * 65
    assert np.median(dist[dist < 1.0]) < 0.1


def test_default_finder_vs_sep_on_ogle_frame():
    frame = OGLE / "frames" / "o4201193.10.fts"
    if not frame.exists():
        pytest.skip(f"shared real data not found at {frame}")
    sep = pytest.importorskip("sep")
    from astropy.io import fits

    image = fits.getdata(frame).astype(np.float32)
    bkg = sep.Background(image)
    sub = image - bkg.back()
    ours = DefaultFinder(threshold=5.0, npixels=5)(sub, bkg.rms(), mask=image >= 65000)
    theirs = sep.extract(sub, 5.0, err=bkg.rms(), filter_kernel=None)
    assert abs(len(ours) - len(theirs)) <= 0.15 * len(theirs)
    assert 150 < len(ours) < 320
