"""Forced-photometry kernels: exact aperture sums and annulus statistics at many positions.

Every function works on all sources at once with NumPy (no Python loop over sources): it
gathers the pixels of every source's box by fancy indexing and computes the exact pixel/aperture
overlaps in closed form (see :mod:`opticam_like.photometry._geometry`). Sources are grouped by
box size (per-source radii are allowed) and processed in chunks of about 10^5 pixels, so memory
stays bounded and no full-frame array is ever made per source. Work arrays are reused between
chunks and calls (a per-thread scratch of about 15 MB); only their memory is cached, never
geometry, since every source has its own sub-pixel offset.

Conventions are photutils': positions are 0-based ``(x, y)`` with the centre of pixel
``data[0, 0]`` at ``(0.0, 0.0)``; pixel ``(i, j)`` covers ``[i - 0.5, i + 0.5) x [j - 0.5,
j + 0.5)``; ``mask`` is True for pixels to leave out. Sums are accumulated in float64.
Results equal photutils' (``aperture_photometry(method="exact")``, ``ApertureStats``) to
floating-point rounding (tested to 1e-10 relative).
"""

from dataclasses import dataclass

import numpy as np

from ._geometry import circle_overlap, ellipse_extents, ellipse_overlap, thread_scratch

__all__ = ["ApertureSums", "AnnulusStatistics", "STATISTICS", "cutouts",
           "circular_aperture_sums", "elliptical_aperture_sums", "annulus_statistics"]

STATISTICS = ("median", "mean", "sigma_clipped_mean", "sigma_clipped_median", "mode")
"""Statistics of :func:`annulus_statistics`."""

_CHUNK_ELEMENTS = 1 << 17
"""Pixels per chunk of work arrays (1 MB of float64: cache-friendly, bounded memory)."""


@dataclass(frozen=True)
class ApertureSums:
    """Exact aperture sums at N positions.

    Attributes
    ----------
    sum : ndarray, shape (N,), float64
        Sum of ``data`` weighted by the exact pixel/aperture overlap over the good pixels
        (in the image and not masked). NaN when the aperture touches no pixel of the image,
        or when a good pixel it touches is NaN (as photutils: mask NaNs).
    area : ndarray, shape (N,), float64
        Exact area (pixels) of the aperture on the good pixels, i.e. the sum of the weights.
    sum_weights_sq : ndarray, shape (N,), float64
        Sum of the squared weights over the good pixels: the "noise area" that multiplies a
        per-pixel variance in the variance of the sum (smaller than ``area`` because of the
        partial pixels on the rim).
    full_area : ndarray, shape (N,), float64
        Geometric area of the aperture, ``pi r^2`` or ``pi a b``.
    variance_sum : ndarray, shape (N,), float64, or None
        ``sum(weight * variance)`` over the good pixels, so that ``sqrt(variance_sum)`` is
        photutils' ``aperture_sum_err`` for ``error = sqrt(variance)``; None when no
        ``variance`` was given.
    edge : ndarray, shape (N,), bool
        The aperture extends beyond the image (touches pixels outside it).
    n_masked : ndarray, shape (N,), int64
        Masked pixels of the image that the aperture touches.
    flags : ndarray, shape (N,), int64
        Bitwise OR of ``pixel_flags`` over the pixels of the image the aperture touches
        (masked ones included); 0 when no ``pixel_flags`` was given.
    """

    sum: np.ndarray
    area: np.ndarray
    sum_weights_sq: np.ndarray
    full_area: np.ndarray
    variance_sum: np.ndarray | None
    edge: np.ndarray
    n_masked: np.ndarray
    flags: np.ndarray


@dataclass(frozen=True)
class AnnulusStatistics:
    """Statistics of the pixels of annuli at N positions.

    Attributes
    ----------
    value : ndarray, shape (N,), float64
        The requested statistic; NaN when no pixel is used.
    std : ndarray, shape (N,), float64
        Standard deviation (``ddof=0``) of the pixels used (after clipping for the clipped
        statistics); NaN when no pixel is used.
    npix : ndarray, shape (N,), int64
        Number of pixels used (after clipping for the clipped statistics).
    edge : ndarray, shape (N,), bool
        Some pixels of the annulus lie outside the image.
    """

    value: np.ndarray
    std: np.ndarray
    npix: np.ndarray
    edge: np.ndarray


# --------------------------------------------------------------------------- validation


def _image(data):
    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"data must be a 2-D array, got shape {data.shape}")
    if data.dtype.kind not in "fiu":
        raise TypeError(f"data must be real numbers, got dtype {data.dtype}")
    if data.dtype.kind != "f":
        data = data.astype(np.float64)
    return np.ascontiguousarray(data)


def _plane(array, shape, name, kinds):
    """An auxiliary image (mask, variance, flags) of the data's shape, or None."""
    if array is None:
        return None
    array = np.asarray(array)
    if array.shape != shape:
        raise ValueError(f"{name} must have the shape of data {shape}, got {array.shape}")
    if array.dtype.kind not in kinds:
        raise TypeError(f"{name} has dtype {array.dtype}, expected kind {kinds!r}")
    return np.ascontiguousarray(array)


def _positions(x, y):
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {x.shape}, {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("positions x, y must be finite")
    return x, y


def _per_source(value, n, name, minimum=None, strict=True):
    value = np.asarray(value, dtype=np.float64)
    if value.ndim > 1 or (value.ndim == 1 and value.shape != (n,)):
        raise ValueError(f"{name} must be a scalar or of shape ({n},), got {value.shape}")
    value = np.broadcast_to(value, (n,))
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} must be finite")
    if minimum is not None:
        bad = value <= minimum if strict else value < minimum
        if np.any(bad):
            relation = ">" if strict else ">="
            raise ValueError(f"{name} must be {relation} {minimum}, got {value[bad][0]}")
    return value


# --------------------------------------------------------------------------- gathering


def _flat_index(shape, rows, cols, out=None):
    """Flat indices of pixels ``(rows, cols)`` (broadcast), clipped into the image.

    ``out``, if given, receives the indices (intp, the broadcast shape).

    Returns
    -------
    index : ndarray of intp
        Indices into ``data.ravel()``; pixels outside the image point at the nearest edge.
    inside : ndarray of bool or None
        Which pixels lie in the image; None when all do.
    """
    ny, nx = shape
    row_in = (rows >= 0) & (rows < ny)
    col_in = (cols >= 0) & (cols < nx)
    if row_in.all() and col_in.all():
        return np.add(rows * nx, cols, out=out), None
    index = np.add(np.clip(rows, 0, ny - 1) * nx, np.clip(cols, 0, nx - 1), out=out)
    return index, row_in & col_in


def cutouts(data, x, y, half_size, fill_value=np.nan):
    """Square cut-outs centred on the pixels containing N positions.

    Parameters
    ----------
    data : array_like, shape (ny, nx)
        Image (integer images are converted to float64).
    x, y : array_like, shape (N,)
        Positions (0-based pixels, photutils convention).
    half_size : int
        The cut-outs are ``(2 half_size + 1)`` pixels square, centred on pixel
        ``(floor(x + 0.5), floor(y + 0.5))``.
    fill_value : scalar
        Value of cut-out pixels outside the image.

    Returns
    -------
    stamps : ndarray, shape (N, 2 half_size + 1, 2 half_size + 1)
        ``stamps[k, j, i] = data[iy0[k] + j, ix0[k] + i]``; the dtype is that of ``data``
        promoted to hold ``fill_value``.
    ix0, iy0 : ndarray of intp, shape (N,)
        Image indices of each cut-out's pixel ``[0, 0]``: the position within cut-out ``k``
        is ``(x[k] - ix0[k], y[k] - iy0[k])``.

    Raises
    ------
    ValueError
        ``data`` not 2-D, positions not finite or ``half_size`` negative.
    """
    data = _image(data)
    x, y = _positions(x, y)
    half = int(half_size)
    if half != half_size or half < 0:
        raise ValueError(f"half_size must be a non-negative integer, got {half_size}")
    ix0 = np.floor(x + 0.5).astype(np.intp) - half
    iy0 = np.floor(y + 0.5).astype(np.intp) - half
    offsets = np.arange(2 * half + 1)
    index, inside = _flat_index(data.shape, (iy0[:, None] + offsets)[:, :, None],
                                (ix0[:, None] + offsets)[:, None, :])
    dtype = np.result_type(data.dtype, np.min_scalar_type(fill_value))
    stamps = np.take(data.ravel(), index).astype(dtype, copy=False)
    if inside is not None:
        stamps[~inside] = fill_value
    return stamps, ix0, iy0


# --------------------------------------------------------------------------- aperture sums


def _aperture_sums(data, x, y, extents, overlap, params, full_area, mask, variance,
                   pixel_flags):
    """Shared driver of the circular and elliptical sums (see their docstrings).

    ``extents`` are the half-widths (x, y) of the apertures, ``overlap(x_edges, y_edges,
    *params_chunk, scratch)`` the geometry function and ``params`` its per-source arrays.
    """
    n = len(x)
    total = np.full(n, np.nan)
    area = np.zeros(n)
    area_sq = np.zeros(n)
    var_total = None if variance is None else np.full(n, np.nan)
    edge = np.zeros(n, dtype=bool)
    n_masked = np.zeros(n, dtype=np.int64)
    flags = np.zeros(n, dtype=np.int64)
    flat = data.ravel()
    flat_mask = None if mask is None else mask.ravel()
    flat_var = None if variance is None else variance.ravel()
    flat_flags = None if pixel_flags is None else pixel_flags.ravel()

    half_x = np.ceil(extents[0]).astype(np.intp)
    half_y = np.ceil(extents[1]).astype(np.intp)
    scratch = thread_scratch()
    for members in _groups(half_x, half_y):
        hx, hy = half_x[members[0]], half_y[members[0]]
        kx, ky = 2 * hx + 1, 2 * hy + 1
        chunk = max(1, _CHUNK_ELEMENTS // ((kx + 1) * (ky + 1)))
        cols_off, rows_off = np.arange(kx)[:, None], np.arange(ky)[:, None]
        for start in range(0, len(members), chunk):
            sel = members[start:start + chunk]
            xs, ys = x[sel], y[sel]
            ix0 = np.floor(xs + 0.5).astype(np.intp) - hx
            iy0 = np.floor(ys + 0.5).astype(np.intp) - hy
            x_edges = (ix0 - 0.5 - xs) + np.arange(kx + 1.0)[:, None]
            y_edges = (iy0 - 0.5 - ys) + np.arange(ky + 1.0)[:, None]
            weights, touched = overlap(x_edges, y_edges, *(p[sel] for p in params), scratch)
            shape = touched.shape

            index, inside = _flat_index(data.shape, (iy0 + rows_off)[:, None],
                                        (ix0 + cols_off)[None],
                                        out=scratch("index", shape, np.intp))
            empty = None
            if inside is not None:
                edge[sel] = np.any(touched > inside, axis=(0, 1))
                touched &= inside
                weights *= inside
                empty = ~np.any(touched, axis=(0, 1))
            if flat_flags is not None:
                values = np.take(flat_flags, index, out=scratch("flags", shape, flat_flags.dtype))
                values *= touched
                flags[sel] = np.bitwise_or.reduce(values, axis=(0, 1))
            good = touched
            if flat_mask is not None:
                bad = np.take(flat_mask, index, out=scratch("mask", shape, bool))
                bad &= touched
                n_masked[sel] = np.count_nonzero(bad, axis=(0, 1))
                good = np.greater(touched, bad, out=scratch("good", shape, bool))
                weights *= good
            product = scratch("product", shape)
            values = np.take(flat, index, out=scratch("values", shape, flat.dtype))
            total[sel] = _weighted_sum(weights, values, good, product)
            area[sel] = weights.sum(axis=(0, 1))
            area_sq[sel] = np.einsum("ijk,ijk->k", weights, weights)
            if flat_var is not None:
                values = np.take(flat_var, index, out=scratch("var", shape, flat_var.dtype))
                var_total[sel] = _weighted_sum(weights, values, good, product)
            if empty is not None:
                total[sel[empty]] = np.nan
                if var_total is not None:
                    var_total[sel[empty]] = np.nan
    return ApertureSums(sum=total, area=area, sum_weights_sq=area_sq, full_area=full_area,
                        variance_sum=var_total,
                        edge=edge, n_masked=n_masked, flags=flags)


def _groups(first, second):
    """Indices of the sources sharing each distinct pair of non-negative integer keys."""
    if len(first) == 0:
        return []
    key = first * (int(second.max()) + 1) + second
    if np.all(key == key[0]):
        return [np.arange(len(key))]
    order = np.argsort(key, kind="stable")
    starts = np.flatnonzero(np.diff(key[order])) + 1
    return np.split(order, starts)


def _weighted_sum(weights, values, good, product):
    """``sum(weights * values)`` over axes (0, 1), ignoring values where ``good`` is False.

    ``weights`` is already zero off ``good``; a non-finite value there would still poison
    the product (``0 * nan``), so the few sources holding one are summed with ``np.where``.
    """
    with np.errstate(invalid="ignore"):         # inf * 0
        np.multiply(weights, values, out=product)
    result = product.sum(axis=(0, 1))
    poisoned = ~np.isfinite(result)
    if np.any(poisoned):
        cols = np.flatnonzero(poisoned)
        with np.errstate(invalid="ignore"):
            sub = np.where(good[..., cols], weights[..., cols] * values[..., cols], 0.0)
        result[cols] = sub.sum(axis=(0, 1))
    return result


def circular_aperture_sums(data, x, y, r, *, mask=None, variance=None, pixel_flags=None):
    """Exact circular aperture sums at N positions.

    Parameters
    ----------
    data : array_like, shape (ny, nx)
        Image (float32 or float64; integers are converted to float64).
    x, y : array_like, shape (N,)
        Aperture centres (0-based pixels; the centre of ``data[0, 0]`` is ``(0, 0)``).
    r : float or array_like, shape (N,)
        Radii (pixels, > 0); may differ per source.
    mask : array_like of bool, shape (ny, nx), optional
        True for pixels to leave out (they contribute nothing, as photutils' ``mask``).
    variance : array_like, shape (ny, nx), optional
        Per-pixel variance (``error**2``) for :attr:`ApertureSums.variance_sum`.
    pixel_flags : array_like of int, shape (ny, nx), optional
        Per-pixel bit flags, ORed over the pixels each aperture touches.

    Returns
    -------
    ApertureSums
        ``sum``, ``area``, ``full_area``, ``variance_sum``, ``edge``, ``n_masked``,
        ``flags``, each of shape (N,).

    Raises
    ------
    ValueError
        Wrong shapes, non-finite positions or radii not positive.
    TypeError
        Non-numeric data, non-boolean mask or non-integer flags.

    Notes
    -----
    The weight of a pixel is the exact area of its intersection with the circle (the
    ``method="exact"`` of photutils; Robitaille's circular overlap), computed in closed form
    from the areas of the circle in the four quadrants at the pixel's corners. Pixels wholly
    inside (outside) the circle get exactly 1 (0). Two differences from
    ``photutils.aperture.aperture_photometry``: an aperture touching no pixel of the image
    gives NaN even when its bounding box overlaps the image (photutils gives 0 then), and
    ``edge``, ``n_masked``, ``flags`` and ``area`` are returned with the sums.
    """
    data = _image(data)
    x, y = _positions(x, y)
    r = _per_source(r, len(x), "r", minimum=0.0)
    mask = _plane(mask, data.shape, "mask", "b")
    variance = _plane(variance, data.shape, "variance", "fiu")
    pixel_flags = _plane(pixel_flags, data.shape, "pixel_flags", "iub")
    return _aperture_sums(data, x, y, (r, r), circle_overlap, (r,), np.pi * r * r, mask,
                          variance, pixel_flags)


def elliptical_aperture_sums(data, x, y, a, b, theta, *, mask=None, variance=None,
                             pixel_flags=None):
    """Exact elliptical aperture sums at N positions.

    Parameters
    ----------
    data : array_like, shape (ny, nx)
        Image (float32 or float64; integers are converted to float64).
    x, y : array_like, shape (N,)
        Aperture centres (0-based pixels; the centre of ``data[0, 0]`` is ``(0, 0)``).
    a, b : float or array_like, shape (N,)
        Semi-axes (pixels, > 0); ``a`` lies along ``theta``.
    theta : float or array_like, shape (N,)
        Angle of the ``a`` axis, radians counter-clockwise from +x (photutils'
        ``EllipticalAperture(theta=)``).
    mask, variance, pixel_flags : array_like, shape (ny, nx), optional
        As in :func:`circular_aperture_sums`.

    Returns
    -------
    ApertureSums
        As :func:`circular_aperture_sums`, with ``full_area = pi a b``.

    Raises
    ------
    ValueError
        Wrong shapes, non-finite positions or angles, semi-axes not positive.
    TypeError
        Non-numeric data, non-boolean mask or non-integer flags.

    Notes
    -----
    photutils computes the exact overlap by mapping each pixel to the frame where the
    ellipse is the unit circle and clipping two triangles against it; the overlap is an
    affine invariant ratio, so the closed form used here (areas of the ellipse in the
    quadrants at the pixel corners, see :mod:`opticam_like.photometry._geometry`) is the same
    quantity, equal to rounding.
    """
    data = _image(data)
    x, y = _positions(x, y)
    n = len(x)
    a = _per_source(a, n, "a", minimum=0.0)
    b = _per_source(b, n, "b", minimum=0.0)
    theta = _per_source(theta, n, "theta")
    mask = _plane(mask, data.shape, "mask", "b")
    variance = _plane(variance, data.shape, "variance", "fiu")
    pixel_flags = _plane(pixel_flags, data.shape, "pixel_flags", "iub")
    return _aperture_sums(data, x, y, ellipse_extents(a, b, theta), ellipse_overlap,
                          (a, b, theta), np.pi * a * b, mask, variance, pixel_flags)


# --------------------------------------------------------------------------- annuli


def _annulus_offsets(r_in, r_out):
    """Pixel offsets from the centre pixel that may hold a used annulus pixel.

    A source lies within half a pixel of its centre pixel in x and y, so the pixel at offset
    ``(di, dj)`` can have its centre in ``r_in <= d < r_out`` only if its nearest distance
    to that square is below ``max(r_out)`` and its farthest reaches ``min(r_in)``; it is in
    the annulus of every source whose radii lie in the given ranges when its farthest
    distance is below ``min(r_out)`` and its nearest reaches ``max(r_in)``.

    Parameters
    ----------
    r_in, r_out : ndarray
        Radii of the sources of a group.

    Returns
    -------
    di, dj : ndarray of intp, shape (P,)
        Offsets, those needing a distance test first.
    n_test : int
        Number of offsets needing a distance test.
    """
    half = int(np.ceil(r_out.max() + 0.5))
    dj, di = np.mgrid[-half:half + 1, -half:half + 1]
    near = np.maximum(np.abs(di) - 0.5, 0) ** 2 + np.maximum(np.abs(dj) - 0.5, 0) ** 2
    far = (np.abs(di) + 0.5) ** 2 + (np.abs(dj) + 0.5) ** 2
    keep = (near < r_out.max() ** 2) & (far >= r_in.min() ** 2)
    sure = (far < r_out.min() ** 2) & (near >= r_in.max() ** 2)
    test, always = keep & ~sure, keep & sure
    return (np.concatenate([di[test], di[always]]), np.concatenate([dj[test], dj[always]]),
            int(test.sum()))


def annulus_statistics(data, x, y, r_in, r_out, *, mask=None, statistic="median", sigma=3.0,
                       maxiters=10):
    """Statistics of the pixels of circular annuli at N positions.

    The pixels used are those whose *centre* lies in the annulus, ``r_in <= d < r_out``
    (``d`` the distance of the pixel centre from the position), inside the image, not masked
    and finite: exactly the pixels of photutils ``ApertureStats`` for a ``CircularAnnulus``,
    whose statistics (all but ``sum``) use the ``"center"`` aperture-mask method whatever
    ``sum_method`` is.

    Parameters
    ----------
    data : array_like, shape (ny, nx)
        Image (float32 or float64; integers are converted to float64).
    x, y : array_like, shape (N,)
        Annulus centres (0-based pixels).
    r_in, r_out : float or array_like, shape (N,)
        Inner and outer radii (pixels), ``0 <= r_in < r_out``; may differ per source.
    mask : array_like of bool, shape (ny, nx), optional
        True for pixels to leave out.
    statistic : {'median', 'mean', 'sigma_clipped_mean', 'sigma_clipped_median', 'mode'}
        ``'median'`` and ``'mean'`` use every pixel. The others use the pixels kept by
        astropy's ``SigmaClip(sigma=sigma, maxiters=maxiters)`` (centre the median, scale
        the standard deviation; the kept pixels are those within the last bounds, as
        astropy returns them). ``'mode'`` is SExtractor's estimate on the clipped pixels,
        ``2.5 median - 1.5 mean``, replaced by the median when
        ``|mean - median| / std >= 0.3`` (a crowded annulus) and by the mean when ``std``
        is 0, as photutils' ``SExtractorBackground`` (Bertin & Arnouts 1996). It is not
        photutils' ``ApertureStats.mode`` (``3 median - 2 mean``, Pearson).
    sigma : float
        Clipping threshold in standard deviations (both sides).
    maxiters : int or None
        Maximum clipping iterations; None iterates to convergence.

    Returns
    -------
    AnnulusStatistics
        ``value``, ``std``, ``npix`` and ``edge``, each of shape (N,).

    Raises
    ------
    ValueError
        Wrong shapes, non-finite positions, bad radii, unknown statistic, ``sigma`` not
        positive or ``maxiters`` below 1.

    Notes
    -----
    Each annulus's candidate pixels are gathered into a row, the unused ones set to ``+inf``
    and the row sorted; the median is read at the middle of the sorted row. Sigma clipping
    keeps a contiguous range of a sorted row, so each iteration only moves its two ends
    (found by a search near the previous ends): the centre is the middle of the range and
    the standard deviation comes from prefix sums. The final mean and standard deviation
    are computed directly (two-pass) on the kept pixels. ``maxiters=10`` is photutils'
    background default (astropy's ``SigmaClip`` default is 5). A pixel centre on the boundary ``d = r_in`` or ``d = r_out`` is decided by the
    rounded ``dx * dx + dy * dy``, as photutils does; positions exactly representable in
    binary (integers, halves) give the same ties.
    """
    data = _image(data)
    x, y = _positions(x, y)
    n = len(x)
    r_in = _per_source(r_in, n, "r_in", minimum=0.0, strict=False)
    r_out = _per_source(r_out, n, "r_out", minimum=0.0)
    if np.any(r_out <= r_in):
        raise ValueError("annulus radii must satisfy r_in < r_out")
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, not {statistic!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if maxiters is not None and maxiters < 1:
        raise ValueError(f"maxiters must be >= 1 or None, got {maxiters}")
    mask = _plane(mask, data.shape, "mask", "b")

    value = np.full(n, np.nan)
    std = np.full(n, np.nan)
    npix = np.zeros(n, dtype=np.int64)
    edge = np.zeros(n, dtype=bool)
    ny, nx = data.shape
    flat = data.ravel()
    flat_mask = None if mask is None else mask.ravel()
    scratch = thread_scratch()
    for members in _groups(np.ceil(r_out).astype(np.intp), np.floor(r_in).astype(np.intp)):
        di, dj, n_test = _annulus_offsets(r_in[members], r_out[members])
        half = int(np.max(np.abs(di)))
        offsets = dj * nx + di
        chunk = max(1, _CHUNK_ELEMENTS // len(di))
        for start in range(0, len(members), chunk):
            sel = members[start:start + chunk]
            shape = (len(sel), len(di))
            cx = np.floor(x[sel] + 0.5).astype(np.intp)
            cy = np.floor(y[sel] + 0.5).astype(np.intp)
            index = np.add((cy * nx + cx)[:, None], offsets,
                           out=scratch("index", shape, np.intp))
            # distance test of the uncertain offsets; pixel - position as photutils
            test_shape = (len(sel), n_test)
            d2 = np.add(di[:n_test], (cx - x[sel])[:, None], out=scratch("d2", test_shape))
            d2 *= d2
            dy = np.add(dj[:n_test], (cy - y[sel])[:, None], out=scratch("dy", test_shape))
            dy *= dy
            d2 += dy
            used = scratch("used", shape, bool)
            np.greater_equal(d2, (r_in[sel] ** 2)[:, None], out=used[:, :n_test])
            used[:, :n_test] &= np.less(d2, (r_out[sel] ** 2)[:, None],
                                        out=scratch("test", test_shape, bool))
            used[:, n_test:] = True
            rim = np.flatnonzero((cx < half) | (cx >= nx - half) | (cy < half)
                                 | (cy >= ny - half))
            if rim.size:
                index[rim], inside = _flat_index(data.shape, cy[rim, None] + dj,
                                                 cx[rim, None] + di)
                if inside is not None:
                    edge[sel[rim]] = np.any(used[rim] > inside, axis=1)
                    used[rim] &= inside
            values = np.take(flat, index, out=scratch("values", shape, flat.dtype))
            flag = scratch("flag", shape, bool)
            used &= np.isfinite(values, out=flag)
            if flat_mask is not None:
                np.greater(used, np.take(flat_mask, index, out=flag), out=used)
            np.putmask(values, np.logical_not(used, out=flag), np.inf)
            values.sort(axis=1)
            count = np.count_nonzero(used, axis=1)
            value[sel], std[sel], npix[sel] = _row_statistics(values, count, statistic,
                                                              sigma, maxiters, scratch)
    return AnnulusStatistics(value=value, std=std, npix=npix, edge=edge)


def _take(rows, index):
    """``rows[k, index[k]]`` as float64 (indices clipped to the row)."""
    index = np.minimum(index, rows.shape[1] - 1)[:, None]
    return np.take_along_axis(rows, index, axis=1)[:, 0].astype(np.float64)


def _range_median(ordered, lo, hi):
    """Median of ``ordered[k, lo[k]:hi[k]]`` (NumPy's: mean of the two middle values)."""
    size = np.maximum(hi - lo, 1)
    return 0.5 * (_take(ordered, lo + (size - 1) // 2) + _take(ordered, lo + size // 2))


def _outside_range(width, lo, hi, scratch):
    """Bool (len(lo), width): True outside ``[lo[k], hi[k])`` on row ``k``."""
    position = np.arange(width)
    drop = np.greater_equal(position, hi[:, None], out=scratch("drop", (len(lo), width), bool))
    if np.any(lo):
        drop |= np.less(position, lo[:, None], out=scratch("drop_lo", drop.shape, bool))
    return drop


def _range_mean_std(ordered, lo, hi, scratch):
    """Two-pass mean and standard deviation (ddof=0) of ``ordered[k, lo[k]:hi[k]]``."""
    drop = _outside_range(ordered.shape[1], lo, hi, scratch)
    size = np.maximum(hi - lo, 1)
    rows = scratch("rows", ordered.shape)
    np.copyto(rows, ordered)
    np.putmask(rows, drop, 0.0)
    mean = rows.sum(axis=1) / size
    rows -= mean[:, None]
    np.putmask(rows, drop, 0.0)
    return mean, np.sqrt(np.einsum("ij,ij->i", rows, rows) / size)


def _searchsorted_rows(ordered, rows, values, right):
    """``np.searchsorted(ordered[rows[k]], values[k], side)`` for every ``k`` (binary search
    vectorised over the rows; ``side`` is ``'right'`` where the bool array ``right`` is)."""
    width = ordered.shape[1]
    lo = np.zeros(len(rows), dtype=np.intp)
    hi = np.full(len(rows), width, dtype=np.intp)
    for _ in range(width.bit_length()):
        mid = (lo + hi) >> 1
        probe = ordered[rows, np.minimum(mid, width - 1)]
        below = (probe < values) | (right & (probe == values))
        open_ = lo < hi
        lo = np.where(open_ & below, mid + 1, lo)
        hi = np.where(open_ & ~below, mid, hi)
    return lo


def _count_sorted(ordered, rows, values, guess, right, window=16):
    """``np.searchsorted(ordered[rows[k]], values[k], side)`` for every ``k`` (``side`` as in
    :func:`_searchsorted_rows`), looked up in a window of ``2 * window`` entries around
    ``guess[k]`` (the answer moves little from one
    clipping iteration to the next) with a binary search where the window misses it."""
    width = ordered.shape[1]
    start = guess - window
    position = start[:, None] + np.arange(2 * window)
    probe = ordered.ravel()[rows[:, None] * width + np.clip(position, 0, width - 1)]
    below = (probe < values[:, None]) | (right[:, None] & (probe == values[:, None]))
    below &= position < width
    below |= position < 0
    result = start + np.count_nonzero(below, axis=1)
    missed = np.flatnonzero(~below[:, 0] | below[:, -1])
    if missed.size:
        result[missed] = _searchsorted_rows(ordered, rows[missed], values[missed],
                                            right[missed])
    return result


def _sigma_clip_range(ordered, count, sigma, maxiters, scratch):
    """Sorted-index range ``[lo, hi)`` of the pixels astropy's ``SigmaClip`` keeps.

    Astropy iterates: bounds ``median -+ sigma * std`` of the current pixels, keep the
    current pixels inside, until nothing changes or ``maxiters``; it then returns all the
    input pixels inside the last bounds. On a sorted row each set is an index range, the
    median is read at its middle and the standard deviation comes from prefix sums of the
    values shifted by the row's median (which keeps the sums well conditioned).
    """
    n, width = ordered.shape
    everything = np.zeros(n, dtype=np.intp)
    shift = np.where(count > 0, _range_median(ordered, everything, count), 0.0)
    shifted = scratch("rows", ordered.shape)
    np.subtract(ordered, shift[:, None], out=shifted)
    np.putmask(shifted, _outside_range(width, everything, count, scratch), 0.0)
    sums = scratch("sums", (n, width + 1))
    squares = scratch("squares", (n, width + 1))
    sums[:, 0] = squares[:, 0] = 0.0
    np.cumsum(shifted, axis=1, out=sums[:, 1:])
    np.cumsum(np.square(shifted, out=shifted), axis=1, out=squares[:, 1:])

    lo, hi = everything.copy(), count.astype(np.intp)
    keep_lo, keep_hi = lo.copy(), hi.copy()
    active = np.flatnonzero(count > 0)
    iteration = 0
    while active.size and (maxiters is None or iteration < maxiters):
        iteration += 1
        a_lo, a_hi = lo[active], hi[active]
        size = a_hi - a_lo
        centre = _range_median(ordered[active], a_lo, a_hi)
        mean = (sums[active, a_hi] - sums[active, a_lo]) / size
        mean_square = (squares[active, a_hi] - squares[active, a_lo]) / size
        spread = sigma * np.sqrt(np.maximum(mean_square - mean * mean, 0.0))
        # entries below the lower bound and up to the upper bound, in one lookup
        m = len(active)
        found = _count_sorted(ordered, np.concatenate([active, active]),
                              np.concatenate([centre - spread, centre + spread]),
                              np.concatenate([a_lo, a_hi]),
                              np.repeat([False, True], m))
        keep_lo[active], keep_hi[active] = found[:m], found[m:]
        new_lo = np.maximum(a_lo, found[:m])
        new_hi = np.minimum(a_hi, found[m:])
        changed = ((new_lo != a_lo) | (new_hi != a_hi)) & (new_hi > new_lo)
        lo[active], hi[active] = new_lo, new_hi
        active = active[changed]
    keep_hi = np.minimum(keep_hi, count)
    return keep_lo, np.maximum(keep_hi, keep_lo)


def _row_statistics(ordered, count, statistic, sigma, maxiters, scratch):
    """Statistic, std and pixel count of each sorted row (valid entries first)."""
    if statistic in ("median", "mean"):
        lo, hi = np.zeros_like(count), count
    else:
        lo, hi = _sigma_clip_range(ordered, count, sigma, maxiters, scratch)
    size = hi - lo
    median = _range_median(ordered, lo, hi)
    mean, std = _range_mean_std(ordered, lo, hi, scratch)
    if statistic in ("median", "sigma_clipped_median"):
        value = median
    elif statistic in ("mean", "sigma_clipped_mean"):
        value = mean
    else:
        value = 2.5 * median - 1.5 * mean
        with np.errstate(divide="ignore", invalid="ignore"):
            crowded = np.abs(mean - median) / std >= 0.3
        value = np.where(std == 0, mean, np.where(crowded, median, value))
    empty = size == 0
    value[empty] = np.nan
    std[empty] = np.nan
    return value, std, size
