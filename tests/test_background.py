"""Tests of the global background estimators (opticam_like.background)."""

import importlib.util
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.utils.exceptions import AstropyUserWarning
from photutils.background import (Background2D, BiweightLocationBackground,
                                  BiweightScaleBackgroundRMS)
from scipy.ndimage import zoom

from opticam_like.background import (DefaultBackground, MeshBackground,
                                     PhotutilsBackground, SExtractorExactBackground)
from opticam_like.background import clipping
from opticam_like.background.clipping import BoxGrid, _kernel_inputs, box_statistics
from opticam_like.background.upsample import SplineUpsampler

NTT = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "sep_ntt_emmi_sextractor_ref"
NO_C_KERNEL = ("the C kernel opticam_like.background._boxstats is not built (installed "
               "without a C compiler): only the NumPy implementation is tested")
needs_c_kernel = pytest.mark.skipif("c" not in clipping.BACKENDS, reason=NO_C_KERNEL)


@pytest.fixture(params=["c", "numpy"])
def backend(request, monkeypatch):
    """Each implementation of the box statistics in turn, as the default."""
    if request.param not in clipping.BACKENDS:
        pytest.skip(NO_C_KERNEL)
    monkeypatch.setattr(clipping, "BACKEND", request.param)
    return request.param


def _star_field(rng, shape, sky=1000.0, noise=None, n_stars=30, poisson=True):
    """Sloped sky, Gaussian stars and noise."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    model = sky * (1 + 0.15 * xx / nx - 0.1 * yy / ny)
    for _ in range(n_stars):
        x, y = rng.uniform(0, nx), rng.uniform(0, ny)
        flux, s = 10 ** rng.uniform(3, 5.5), rng.uniform(1.0, 2.5)
        model += flux / (2 * np.pi * s**2) * np.exp(-((xx - x)**2 + (yy - y)**2) / (2 * s**2))
    if poisson:
        return rng.poisson(model).astype(float)
    return model + rng.normal(0, noise, shape)


def _config(seed):
    """A random but reproducible configuration of image, masks and parameters."""
    rng = np.random.default_rng(seed)
    ny, nx = (int(v) for v in rng.integers(90, 330, 2))
    box = int(rng.integers(12, 70)) if rng.random() < 0.6 else (
        int(rng.integers(12, 70)), int(rng.integers(12, 70)))
    box_pair = np.broadcast_to(box, 2)
    if box_pair[0] > ny or box_pair[1] > nx:
        box = (min(box_pair[0], ny), min(box_pair[1], nx))
    filter_size = [1, 3, 5, (3, 1), (1, 5), (3, 5)][seed % 6]
    kind = ["float32", "float64", "uint16", "int32"][seed % 4]
    low_counts = seed % 11 == 5
    data = (rng.poisson(3.0, (ny, nx)).astype(float) if low_counts
            else _star_field(rng, (ny, nx), sky=rng.uniform(50, 3000),
                             poisson=kind != "float64", noise=rng.uniform(1, 30)))
    data = data.astype(kind) if kind != "int32" else (data - 40).astype(np.int32)
    mask = rng.random((ny, nx)) < rng.uniform(0, 0.08) if seed % 3 == 0 else None
    coverage = None
    if seed % 5 == 1:
        coverage = np.zeros((ny, nx), bool)
        coverage[: ny // 5, : nx // 3] = True
    if seed % 7 == 2 and kind.startswith("float"):
        data[rng.random((ny, nx)) < 0.01] = np.nan
    params = dict(filter_size=filter_size,
                  exclude_percentile=[10.0, 25.0, 60.0][seed % 3],
                  filter_threshold=None)
    if seed % 8 == 3:
        params["filter_threshold"] = float(np.nanmedian(data))
    return data, box, mask, coverage, params


@pytest.mark.parametrize("seed", range(36))
def test_matches_photutils(seed, backend):
    """Maps, meshes and medians agree with Background2D to 1e-3 of the rms."""
    data, box, mask, coverage, params = _config(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        ref = Background2D(data, box, mask=mask, coverage_mask=coverage, fill_value=-1.0,
                           **params)
        ref_excluded = np.isnan(ref._bkg_stats)
        ref_maps = ref.background, ref.background_rms
        ours = DefaultBackground(box, fill_value=-1.0, **params)(
            data, mask=mask, coverage_mask=coverage)
    tol = 1e-3 * float(ref.background_rms_median)
    assert ours.background.dtype == ref_maps[0].dtype
    assert ours.background.shape == data.shape
    np.testing.assert_allclose(ours.background, ref_maps[0], rtol=0, atol=tol)
    np.testing.assert_allclose(ours.background_rms, ref_maps[1], rtol=0, atol=tol)
    np.testing.assert_allclose(ours.background_mesh, ref.background_mesh, rtol=0, atol=tol)
    np.testing.assert_allclose(ours.background_rms_mesh, ref.background_rms_mesh,
                               rtol=0, atol=tol)
    assert abs(ours.background_median - ref.background_median) <= tol
    assert abs(ours.background_rms_median - ref.background_rms_median) <= tol
    np.testing.assert_array_equal(ours.n_pixels_mesh, ref.n_pixels_mesh)
    np.testing.assert_array_equal(ours.mesh_nan_mask, ref_excluded)


def _reference_box(values, sigma, maxiters, keep_iterated):
    """One box as photutils computes it, the obvious way (float64).

    astropy ``SigmaClip`` (median centre, population std, ``median -+ sigma
    std``, stop when nothing is removed); the last bounds are applied to all
    valid values, except for photutils' corner box (``keep_iterated``), which
    keeps the set left by the iterations; then ``SExtractorBackground``.
    """
    valid = values[np.isfinite(values)].astype(np.float64)
    if valid.size == 0:
        return np.nan, np.nan, 0
    current = valid
    for _ in range(maxiters):
        centre, std = np.median(current), current.std()
        lower, upper = centre - sigma * std, centre + sigma * std
        kept = current[(current >= lower) & (current <= upper)]
        done = kept.size in (current.size, 0)
        current = kept
        if done:
            break
    final = current if keep_iterated else valid[(valid >= lower) & (valid <= upper)]
    if final.size == 0:
        return np.nan, np.nan, 0
    median, mean, std = np.median(final), final.mean(), final.std()
    if std == 0:
        return mean, std, final.size
    if abs(mean - median) / std >= 0.3:
        return median, std, final.size
    return 2.5 * median - 1.5 * mean, std, final.size


def _reference_statistics(data, invalid, box, sigma=3.0, maxiters=10):
    """Background, rms and pixel count of every box with `_reference_box`."""
    values = data.astype(np.float64 if data.dtype == np.float64 else np.float32)
    values = values.astype(np.float64)
    if invalid is not None:
        values[invalid] = np.nan
    (ny, nx), (by, bx) = data.shape, box
    my, mx = -(-ny // by), -(-nx // bx)
    corner = bool(ny % by and nx % bx)
    out = np.zeros((3, my, mx))
    for iy in range(my):
        for ix in range(mx):
            cell = values[iy * by:(iy + 1) * by, ix * bx:(ix + 1) * bx].ravel()
            out[:, iy, ix] = _reference_box(cell, sigma, maxiters,
                                            corner and iy == my - 1 and ix == mx - 1)
    return out


def _kernel_case(name, rng):
    """Image, mask and box size of one kernel test case."""
    shape, box, invalid = (150, 190), (32, 40), None
    if name == "gaussian":
        data = rng.normal(1000, 20, shape).astype(np.float32)
    elif name == "stars":
        data = _star_field(rng, shape, n_stars=60).astype(np.float32)
    elif name == "low_counts":
        data = rng.poisson(3.0, shape).astype(np.uint16)
    elif name == "sparse_counts":             # most pixels 0: no core
        data = rng.poisson(0.05, shape).astype(np.float32)
    elif name == "cauchy":
        data = 100 + 5 * rng.standard_cauchy(shape)
    elif name == "bimodal":
        data = (np.where(rng.random(shape) < 0.4, 0.0, 80.0)
                + rng.normal(0, 3, shape)).astype(np.float32)
    elif name == "constant":
        data = np.full(shape, 7.25, np.float32)
        data[rng.random(shape) < 0.003] = 1e4
    elif name == "steep_gradient":            # the median far from the sub-sample's
        yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
        data = (50 * xx + rng.normal(0, 5, shape)).astype(np.float32)
    elif name == "masked":
        data = _star_field(rng, shape, n_stars=20).astype(np.float32)
        invalid = rng.random(shape) < 0.6
        invalid[:32, :40] = True              # a box with no valid pixel
        invalid[40:64, 45:80] = True
    elif name == "nonfinite":
        data = rng.normal(-5, 2, shape)
        data[rng.random(shape) < 0.05] = np.nan
        data[rng.random(shape) < 0.01] = -np.inf
        data[rng.random(shape) < 0.01] = np.inf
    elif name == "float64_offset":            # noise 1e-9 of the level
        data = 1e6 + rng.normal(0, 1e-3, shape)
    else:
        raise ValueError(name)
    return data, invalid, box


KERNEL_CASES = ["gaussian", "stars", "low_counts", "sparse_counts", "cauchy", "bimodal",
                "constant", "steep_gradient", "masked", "nonfinite", "float64_offset"]


def _run_kernel(backend, data, invalid, box):
    """Background, rms and pixel counts of every box from one implementation."""
    size = BoxGrid(data.shape, box).mesh_shape
    bkg, rms, n_good = np.empty(size), np.empty(size), np.empty(size, np.int64)
    clipping._KERNELS[backend](*_kernel_inputs(data, invalid), *box, 3.0, 10, bkg, rms,
                               n_good)
    return bkg, rms, n_good


@pytest.mark.parametrize("name", KERNEL_CASES)
def test_box_statistics_equal_direct_computation(name, backend):
    """Each implementation gives the obvious float64 computation's numbers (to 1e-9 rms)."""
    data, invalid, box = _kernel_case(name, np.random.default_rng(KERNEL_CASES.index(name)))
    bkg, rms, n_good = _run_kernel(backend, data, invalid, box)
    ref_bkg, ref_rms, ref_n = _reference_statistics(data, invalid, box)
    np.testing.assert_array_equal(n_good, ref_n)
    # 1e-9 of the rms, or a few float64 ulps of the level (float64_offset).
    atol = 1e-9 * float(np.nanmedian(ref_rms)) + 8 * np.spacing(np.nanmax(np.abs(ref_bkg)))
    np.testing.assert_allclose(bkg, ref_bkg, rtol=0, atol=atol)
    np.testing.assert_allclose(rms, ref_rms, rtol=0, atol=atol)


def _underflow_case(kind):
    """float64 boxes of 32 x 32 whose spread underflows (steps of 1e-310).

    ``"constant"``: a constant plus subnormal steps, so that the standard
    deviation underflows to 0 as well. ``"subsample"``: unit noise, except on
    the kernel's 8 x 8 sub-sample of each box (every 4th pixel from the 3rd),
    which holds subnormal steps around 0: the C kernel's rough sigma
    underflows and the inverse of its bin width would overflow.
    """
    rng = np.random.default_rng(12)
    shape = (96, 96)
    if kind == "constant":
        data = np.full(shape, 1e-300)
        steps = rng.random(shape) < 0.3
    else:
        data = rng.normal(0.0, 1.0, shape)
        steps = np.zeros(shape, bool)
        steps[2::4, 2::4] = True
        data[steps] = 0.0
    data[steps] += rng.integers(-3, 4, int(steps.sum())) * 1e-310
    return data


@pytest.mark.parametrize("kind", ["constant", "subsample"])
def test_box_statistics_underflowing_spread(kind, backend):
    """Boxes whose spread is below the float64 normal range: the direct computation's numbers."""
    data = _underflow_case(kind)
    bkg, rms, n_good = _run_kernel(backend, data, None, (32, 32))
    ref_bkg, ref_rms, ref_n = _reference_statistics(data, None, (32, 32))
    np.testing.assert_array_equal(n_good, ref_n)
    assert (n_good > 700).all()
    np.testing.assert_allclose(bkg, ref_bkg, rtol=0, atol=1e-9 * float(np.median(ref_rms))
                               + 8 * np.spacing(1e-300))
    np.testing.assert_allclose(rms, ref_rms, rtol=0, atol=1e-9 * float(np.median(ref_rms)))
    if kind == "constant":
        assert (rms == 0).all() and (bkg == 1e-300).all()
    else:
        assert np.all((rms > 0.85) & (rms < 1.0))     # unit noise, 1 in 16 pixels at 0


@needs_c_kernel
@pytest.mark.parametrize("seed", range(36))
def test_backends_agree(seed):
    """C kernel and NumPy implementation agree to 1e-6 of the rms, pixel counts exactly."""
    data, box, mask, coverage, _ = _config(seed)
    invalid = mask if coverage is None else (coverage if mask is None else mask | coverage)
    grid = BoxGrid(data.shape, tuple(np.broadcast_to(box, 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        c, ours = (box_statistics(data, invalid, grid, backend=b) for b in ("c", "numpy"))
    tol = 1e-6 * float(np.nanmedian(c.rms))
    np.testing.assert_array_equal(ours.n_good, c.n_good)
    np.testing.assert_allclose(ours.background, c.background, rtol=0, atol=tol)
    np.testing.assert_allclose(ours.rms, c.rms, rtol=0, atol=tol)
    assert ours.background.dtype == c.background.dtype


def test_numpy_fallback_when_kernel_missing(caplog, monkeypatch):
    """Without the built extension clipping imports, logs it and uses NumPy."""
    spec = importlib.util.spec_from_file_location("clipping_without_kernel", clipping.__file__)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "opticam_like.background._boxstats", None)  # not built
    with caplog.at_level(logging.INFO, logger="clipping_without_kernel"):
        spec.loader.exec_module(module)
    assert module.BACKEND == "numpy" and module.BACKENDS == ("numpy",)
    assert any("NumPy implementation" in r.getMessage() and r.levelno == logging.INFO
               for r in caplog.records)
    rng = np.random.default_rng(13)
    data = rng.normal(100.0, 2.0, (64, 96)).astype(np.float32)
    stats = module.box_statistics(data, None, module.BoxGrid(data.shape, (32, 32)))
    assert stats.n_coreless == 0 and np.all(np.abs(stats.background - 100) < 0.5)
    with pytest.raises(ValueError, match="backend"):
        module.box_statistics(data, None, module.BoxGrid(data.shape, (32, 32)), backend="c")


@needs_c_kernel
def test_box_statistics_paths():
    """Ordinary sky takes the fast path; sparse counts the path without a core."""
    rng = np.random.default_rng(3)
    sky = _star_field(rng, (256, 256)).astype(np.float32)
    assert box_statistics(sky, None, BoxGrid(sky.shape, (32, 32))).n_coreless == 0
    sparse = rng.poisson(0.05, (128, 128)).astype(np.float32)
    assert box_statistics(sparse, None, BoxGrid(sparse.shape, (32, 32))).n_coreless == 16


def test_box_statistics_exclusion_and_dtype(backend):
    """Boxes at or below the threshold are NaN; float32 in, float32 out."""
    rng = np.random.default_rng(8)
    data = rng.normal(10, 1, (64, 64)).astype(np.float32)
    invalid = np.zeros(data.shape, bool)
    invalid[:32, :32] = rng.random((32, 32)) < 0.5
    stats = box_statistics(data, invalid, BoxGrid(data.shape, (32, 32)),
                           exclude_percentile=25.0)
    assert stats.background.dtype == np.float32 and stats.rms.dtype == np.float32
    assert np.isnan(stats.background[0, 0]) and np.isnan(stats.rms[0, 0])
    assert 0 < stats.n_good[0, 0] <= 0.75 * 32 * 32
    assert np.isfinite(stats.background[1:, 1:]).all()
    assert box_statistics(data.astype(np.float64), None,
                          BoxGrid(data.shape, (32, 32))).background.dtype == np.float64


def test_box_statistics_any_layout(backend):
    """Strided, reversed, Fortran-ordered, big-endian and integer inputs."""
    rng = np.random.default_rng(9)
    base = _star_field(rng, (120, 260), n_stars=15).astype(np.float32)
    mask = rng.random(base.shape) < 0.05
    grid = BoxGrid((120, 130), (24, 26))
    ref = box_statistics(np.ascontiguousarray(base[:, ::2]),
                         np.ascontiguousarray(mask[:, ::2]), grid)
    for data, invalid in [(base[:, ::2], mask[:, ::2]),
                          (np.asfortranarray(base[:, ::2]), np.asfortranarray(mask[:, ::2])),
                          (base[:, ::2].astype(">f4"), mask[:, ::2])]:
        out = box_statistics(data, invalid, grid)
        np.testing.assert_array_equal(out.background, ref.background)
        np.testing.assert_array_equal(out.n_good, ref.n_good)
    flipped = box_statistics(base[::-1, ::-1][:120, :120], None, BoxGrid((120, 120), (24, 24)))
    direct = box_statistics(np.ascontiguousarray(base[::-1, ::-1][:120, :120]), None,
                            BoxGrid((120, 120), (24, 24)))
    np.testing.assert_array_equal(flipped.background, direct.background)
    counts = rng.poisson(400, (96, 96))
    for kind in (np.uint16, np.int32, np.int64):
        out = box_statistics(counts.astype(kind), None, BoxGrid(counts.shape, (32, 32)))
        np.testing.assert_array_equal(out.background, box_statistics(
            counts.astype(np.float32), None, BoxGrid(counts.shape, (32, 32))).background)


@needs_c_kernel
def test_kernel_rejects_bad_arguments():
    """The C entry point checks what it is given."""
    from opticam_like.background import _boxstats

    out = [np.empty(4), np.empty(4), np.empty(4, np.int64)]
    with pytest.raises(ValueError, match="float32 or float64"):
        _boxstats.box_statistics(np.zeros((8, 8), np.int32), None, 4, 4, 3.0, 10, *out)
    with pytest.raises(ValueError, match="boolean"):
        _boxstats.box_statistics(np.zeros((8, 8)), np.zeros((8, 4), bool), 4, 4, 3.0, 10,
                                 *out)
    with pytest.raises(ValueError, match="background"):
        _boxstats.box_statistics(np.zeros((8, 8)), None, 4, 4, 3.0, 10, np.empty(3),
                                 *out[1:])
    with pytest.raises(ValueError, match="positive"):
        _boxstats.box_statistics(np.zeros((8, 8)), None, 4, 4, 3.0, 0, *out)


def test_upsampler_equals_zoom():
    """The banded spline expansion is scipy's zoom (grid mode, reflect), clipped."""
    rng = np.random.default_rng(0)
    for _ in range(40):
        (by, bx), (my, mx) = rng.integers(1, 40, 2), rng.integers(1, 9, 2)
        ny = int(rng.integers((my - 1) * by + 1, my * by + 1))
        nx = int(rng.integers((mx - 1) * bx + 1, mx * bx + 1))
        mesh = rng.normal(100, 5, (my, mx))
        ref = zoom(mesh, (by, bx), order=3, mode="reflect", grid_mode=True)[:ny, :nx]
        ref = np.clip(ref, mesh.min(), mesh.max()) if np.ptp(mesh) else np.full_like(
            ref, mesh.min())
        upsampler = SplineUpsampler((ny, nx), (by, bx), (my, mx))
        np.testing.assert_allclose(upsampler(mesh, dtype=np.float64), ref, rtol=0, atol=1e-9)
        out32 = upsampler(mesh, dtype=np.float32)           # within the range, always
        assert out32.min() >= np.float32(mesh.min()) and out32.max() <= np.float32(mesh.max())
        np.testing.assert_allclose(out32, ref, rtol=0, atol=1e-4)


def test_constant_sky_with_masked_blob():
    """A masked blob leaves a flat sky exactly flat; rms equals the noise."""
    rng = np.random.default_rng(1)
    data = (500 + rng.normal(0, 5, (256, 256))).astype(np.float32)
    data[100:140, 60:120] += 5000
    mask = np.zeros(data.shape, bool)
    mask[95:145, 55:125] = True
    bkg = DefaultBackground(64, filter_size=1)(data, mask=mask)
    assert np.all(np.abs(bkg.background - 500) < 1.0)
    assert np.all(np.abs(bkg.background_rms - 5) < 0.5)
    unmasked = DefaultBackground(64, filter_size=1)(data)
    assert unmasked.background[120, 90] > bkg.background[120, 90] + 1


def test_coverage_mask_and_fill_value():
    rng = np.random.default_rng(2)
    data = (100 + rng.normal(0, 3, (200, 300))).astype(np.float32)
    coverage = np.zeros(data.shape, bool)
    coverage[:, 250:] = True
    bkg = DefaultBackground(50, fill_value=-7.0)(data, coverage_mask=coverage)
    assert np.all(bkg.background[coverage] == -7.0)
    assert np.all(bkg.background_rms[coverage] == -7.0)
    assert np.all(np.abs(bkg.background[~coverage] - 100) < 1.0)


def test_lazy_attributes_and_plot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(4)
    data = _star_field(rng, (256, 192)).astype(np.float32)
    bkg = DefaultBackground((64, 48), filter_size=(3, 1))(data)
    assert isinstance(bkg, MeshBackground)
    for name in ("background", "background_rms", "background_mesh", "background_rms_mesh"):
        assert name not in bkg.__dict__
    rms_map = bkg.background_rms
    assert "background" not in bkg.__dict__           # rms does not compute the background
    assert bkg.background_rms is rms_map               # computed once
    assert bkg.background_mesh.shape == (4, 4)
    assert bkg.n_pixels_mesh.shape == (4, 4)
    assert np.array_equal(bkg.npixels_mesh, bkg.n_pixels_mesh)
    assert bkg.background.flags.c_contiguous and bkg.background.dtype == np.float32
    assert np.isscalar(bkg.background_median) and np.isscalar(bkg.background_rms_median)
    fig, ax = plt.subplots()
    assert bkg.plot_meshes(ax=ax, outlines=True) is ax
    assert len(ax.collections) == 1 and len(ax.patches) == 16
    plt.close(fig)


def test_nonfinite_values_are_masked_with_warning(backend):
    rng = np.random.default_rng(5)
    data = _star_field(rng, (192, 192)).astype(np.float32)
    bad = rng.random(data.shape) < 0.02
    noisy = data.copy()
    noisy[bad] = np.nan
    noisy[0, 0] = np.inf
    bad[0, 0] = True
    with pytest.warns(AstropyUserWarning, match="non-finite"):
        ours = DefaultBackground(48)(noisy)
    ref = DefaultBackground(48)(data, mask=bad)
    np.testing.assert_array_equal(ours.background, ref.background)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DefaultBackground(48)(noisy, mask=bad)      # all non-finite are masked: silent


@pytest.mark.parametrize("call, message", [
    (lambda: DefaultBackground(16)(np.zeros(100)), "2-D"),
    (lambda: DefaultBackground(64)(np.zeros((50, 100))), "larger than the image"),
    (lambda: DefaultBackground(16)(np.zeros((64, 64)), mask=np.ones((64, 64), bool)),
     "masked"),
    (lambda: DefaultBackground(16)(np.full((64, 64), np.nan)), "non-finite"),
    (lambda: DefaultBackground(16)(np.zeros((64, 64)), mask=np.zeros((32, 32), bool)),
     "shape"),
    (lambda: DefaultBackground(16)(np.zeros((64, 64), complex)), "real"),
    (lambda: DefaultBackground(16, filter_size=2), "odd"),
    (lambda: DefaultBackground(0), "positive"),
    (lambda: DefaultBackground(16, exclude_percentile=120), "exclude_percentile"),
    (lambda: DefaultBackground(16, sigma=0), "sigma"),
    (lambda: DefaultBackground((16, 16, 16)), "pair"),
])
def test_errors(call, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        with pytest.raises(ValueError, match=message):
            call()


def test_all_boxes_excluded_error():
    data = np.ones((64, 64), np.float32)
    mask = np.zeros(data.shape, bool)
    mask[::2] = True                         # 50 % of every box masked
    with pytest.raises(ValueError, match="exclude_percentile"):
        DefaultBackground(16)(data, mask=mask)


def test_photutils_background_with_biweight():
    rng = np.random.default_rng(6)
    data = _star_field(rng, (200, 200)).astype(np.float32)
    bkg = PhotutilsBackground(50, 3, BiweightLocationBackground(),
                              BiweightScaleBackgroundRMS())(data)
    ref = Background2D(data, 50, filter_size=3, bkg_estimator=BiweightLocationBackground(),
                       bkg_rms_estimator=BiweightScaleBackgroundRMS())
    assert isinstance(bkg, Background2D)
    np.testing.assert_array_equal(bkg.background, ref.background)
    np.testing.assert_array_equal(bkg.background_rms, ref.background_rms)


def test_sextractor_exact_needs_sep(monkeypatch):
    monkeypatch.setitem(sys.modules, "sep", None)
    with pytest.raises(ImportError, match="pip install sep"):
        SExtractorExactBackground()(np.zeros((64, 64), np.float32))


def test_sextractor_exact_coverage_and_byte_order():
    pytest.importorskip("sep")
    rng = np.random.default_rng(7)
    data = (200 + rng.normal(0, 4, (128, 128))).astype(">f4")
    coverage = np.zeros(data.shape, bool)
    coverage[:10] = True
    bkg = SExtractorExactBackground(32, 3, fill_value=-1.0)(data, coverage_mask=coverage)
    assert np.all(bkg.background[coverage] == -1.0)
    assert abs(bkg.background_median - 200) < 1.0
    assert abs(bkg.background_rms_median - 4) < 0.5


def _load_ntt():
    if not NTT.is_dir():
        pytest.skip(f"shared real data not found at {NTT} (../shared is absent)")
    pytest.importorskip("sep")
    from astropy.io import fits
    from astropy.io.fits.verify import VerifyWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        warnings.simplefilter("ignore", AstropyUserWarning)      # ESO-LOG header cards
        return tuple(fits.getdata(NTT / name) for name in ("image.fits", "back.fits",
                                                             "rms.fits"))


def test_sextractor_exact_reproduces_sextractor_check_images():
    """NTT/EMMI image: SExtractor's own back.fits and rms.fits (mesh 64, filter 3)."""
    image, back, rms = _load_ntt()
    bkg = SExtractorExactBackground(64, 3)(image)
    np.testing.assert_allclose(bkg.background, back, rtol=0, atol=1e-3)
    np.testing.assert_allclose(bkg.background_rms, rms, rtol=0, atol=1e-3)
    assert bkg.background_median == pytest.approx(6852.05, abs=0.01)
    assert bkg.background_rms_median == pytest.approx(65.46, abs=0.01)


def test_default_background_on_ntt_image_report():
    """Report (not assert) how far the photutils-style maps are from SExtractor's."""
    image, back, rms = _load_ntt()
    bkg = DefaultBackground(64, 3)(image)
    d_back = np.abs(bkg.background - back)
    d_rms = np.abs(bkg.background_rms - rms)
    print(f"\nNTT/EMMI, DefaultBackground vs SExtractor: background max {d_back.max():.2f} "
          f"median {np.median(d_back):.2f} ADU; rms max {d_rms.max():.2f} median "
          f"{np.median(d_rms):.2f} ADU (global rms {float(np.median(rms)):.2f} ADU)")
    assert np.isfinite(d_back).all() and np.isfinite(d_rms).all()


def test_compact_copy_rebuilds_identical_maps():
    """The photometry pass reuses ``compact()`` from the catalogue pass: same maps, exactly."""
    import pickle
    rng = np.random.default_rng(11)
    data = rng.normal(500.0, 20.0, (200, 300)).astype(np.float32)
    data[50:60, 70:80] += 5000.0
    full = DefaultBackground(box_size=32)(data)
    compact = pickle.loads(pickle.dumps(full.compact()))
    assert len(pickle.dumps(full.compact())) < 10_000
    np.testing.assert_array_equal(compact.background, full.background)
    np.testing.assert_array_equal(compact.background_rms, full.background_rms)
    assert compact.background_median == full.background_median
