"""Sigma-clipped SExtractor statistics of every box of an image.

This computes, for each box of a grid laid over the image, exactly what
photutils' ``Background2D`` computes with its defaults: the box pixels less
the masked and non-finite ones are sigma clipped as ``astropy.stats.SigmaClip``
does (centre = median, scale = population standard deviation, at most
``maxiters`` iterations, stop when no pixel is removed, the bounds of the last
iteration applied to all pixels -- except for the corner box, which photutils
clips with ``axis=None`` and so keeps the set left by the iterations), then
the background is ``2.5 * median - 1.5 * mean`` (the mean when the standard
deviation is zero, the median when ``|mean - median| / std >= 0.3``, as
photutils' ``SExtractorBackground``), the rms is the standard deviation of
the clipped pixels, and boxes with ``n_good <= (1 - exclude_percentile / 100)
* box pixels`` are excluded (NaN).

Two implementations compute the same numbers (to float64 rounding; the
tests check 1e-6 of the rms). The C kernel ``opticam_like.background._boxstats``
is used when it was built (``pip install`` builds it when a C compiler is
present; it is optional); otherwise a NumPy implementation, several times
slower, is used. The choice is made at import and logged (logger
``opticam_like.background.clipping``, level DEBUG for the C kernel, INFO for
NumPy); `BACKEND` holds it.

The NumPy implementation sorts the valid values of every box; each clipped
set is then a slice of the sorted row, found by counting, whose median is
read at its middle and whose sums come from cumulative sums (of the values
less the box median, accumulated outwards from the median so that no clipped
outlier enters the sums of a kept set).

The C kernel works in one pass over the pixels of each box for most boxes: it histograms them (512
bins framed by a sub-sample), sums them, and keeps the pixels far from the
sub-sample's median and those near it. The histogram then locates a *core*
of values that no clipping interval cuts and the narrow *band* of values where
the median can fall; the kept pixels supply the values outside the core and
those of the band (a second pass does when they do not), and the clipping
iterations run on these small arrays and on the core's sums. Where the guess
of the core fails, the kernel narrows the core or does without one, so the
result is the direct computation's (in float64) in every case; see the
source for details.

References
----------
Bertin, E. & Arnouts, S. 1996, A&AS 117, 393 (SExtractor background).
photutils ``Background2D``, ``SExtractorBackground``, ``StdBackgroundRMS``;
astropy ``SigmaClip``.
"""

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["BACKEND", "BACKENDS", "BoxGrid", "BoxStatistics", "box_statistics"]

logger = logging.getLogger(__name__)

try:
    from opticam_like.background._boxstats import box_statistics as _c_kernel
except ImportError as error:        # not built (no C compiler) or not loadable
    _c_kernel = None
    logger.info("opticam_like.background: C kernel _boxstats unavailable (%s); box "
                "statistics use the NumPy implementation", error)
else:
    logger.debug("opticam_like.background: box statistics use the C kernel _boxstats")

#: Implementations available in this installation.
BACKENDS = ("c", "numpy") if _c_kernel is not None else ("numpy",)
#: Implementation `box_statistics` uses by default: ``"c"`` when built, else ``"numpy"``.
BACKEND = BACKENDS[0]

#: Box values the NumPy implementation sorts at a time (bounds its memory).
_NUMPY_CHUNK = 1 << 20

_NONFINITE_MESSAGE = ("Input data contains non-finite (NaN or infinity) values, "
                      "which were automatically masked.")


@dataclass(frozen=True)
class BoxGrid:
    """The grid of boxes laid over an image, as in photutils.

    Boxes start at pixel ``(0, 0)``; when the image is not a multiple of the
    box size the last row and column of boxes are partial (they extend past
    the image edge, the missing part counting as masked).

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(ny, nx)``.
    box_size : tuple of int
        Box size ``(by, bx)`` in pixels.
    """

    shape: tuple
    box_size: tuple

    @property
    def mesh_shape(self):
        """Number of boxes ``(my, mx)``, partial ones included."""
        return tuple(-(-n // b) for n, b in zip(self.shape, self.box_size))

    @property
    def box_npixels(self):
        """Pixels in one (complete) box."""
        return self.box_size[0] * self.box_size[1]

    def centers(self):
        """Box centres as photutils defines them.

        Returns
        -------
        yc, xc : ndarray, shapes (my,) and (mx,)
            ``index * box + (box - 1) / 2`` along each axis (pixels).
        """
        return tuple(np.arange(m) * b + (b - 1) / 2.0
                     for m, b in zip(self.mesh_shape, self.box_size))


@dataclass(frozen=True)
class BoxStatistics:
    """Per-box results.

    Attributes
    ----------
    background, rms : ndarray, shape ``mesh_shape``
        SExtractor background and standard deviation of the clipped pixels
        (NaN for excluded boxes), ``float64`` for ``float64`` data, else
        ``float32``.
    n_good : ndarray of int64, shape ``mesh_shape``
        Pixels left after masking and clipping.
    n_coreless : int
        Boxes the C kernel computed without a core, from all their values (a
        diagnostic of its fast path; the results are the same); 0 with the
        NumPy implementation.
    """

    background: np.ndarray
    rms: np.ndarray
    n_good: np.ndarray
    n_coreless: int


def _kernel_inputs(data, invalid):
    """``data`` as native float32/float64 with contiguous rows, ``invalid`` likewise."""
    dtype = np.dtype(np.float64 if data.dtype == np.float64 else np.float32)
    if data.dtype != dtype:                 # integers are rounded to float32, as photutils
        data = data.astype(dtype)
    if data.strides[1] != data.itemsize:
        data = np.ascontiguousarray(data)
    if invalid is not None and invalid.strides[1] != 1:
        invalid = np.ascontiguousarray(invalid)
    return data, invalid


def _sum_between(cum_up, cum_down, i0, i1):
    """Sums of the slices ``[i0, i1)`` of the sorted rows from two cumulative sums.

    ``cum_up[:, i]`` sums the non-negative values before column ``i``;
    ``cum_down[:, i]`` the negative values from column ``i`` on.
    """
    take = lambda a, i: np.take_along_axis(a, i[:, None], axis=1)[:, 0]  # noqa: E731
    return (take(cum_up, i1) - take(cum_up, i0)) + (take(cum_down, i0) - take(cum_down, i1))


def _clip_sorted_rows(d, n_valid, sigma, maxiters, intersect_last):
    """Sigma clipping and SExtractor statistics of sorted rows (NumPy backend).

    Parameters
    ----------
    d : ndarray of float64, shape (n_boxes, n_pixels)
        The valid values of each box less a pivot, sorted, NaN after them.
    n_valid : ndarray of int, shape (n_boxes,)
        Valid values in each row.
    sigma, maxiters
        As `box_statistics`.
    intersect_last : bool
        The last row is photutils' corner box: it keeps the set left by the
        iterations instead of applying the last bounds to all its values.

    Returns
    -------
    value, std : ndarray of float64, shape (n_boxes,)
        SExtractor background (less the pivot) and rms (NaN where no value
        is left).
    n : ndarray of int, shape (n_boxes,)
        Values in the clipped set.
    """
    n_boxes, n_pixels = d.shape
    rows = np.arange(n_boxes)
    # Accumulated outwards from the pivot: the non-negative values from the
    # left, the negative ones from the right (fmax, fmin: NaN counts as 0).
    up1, up2, down1, down2 = np.zeros((4, n_boxes, n_pixels + 1))
    part = np.fmax(d, 0.0)
    np.cumsum(part, axis=1, out=up1[:, 1:])
    np.cumsum(np.square(part, out=part), axis=1, out=up2[:, 1:])
    part = np.fmin(d, 0.0)[:, ::-1]
    np.cumsum(part, axis=1, out=down1[:, -2::-1])
    np.cumsum(np.square(part, out=part), axis=1, out=down2[:, -2::-1])
    del part
    flat = d.ravel()
    last = n_pixels - 1

    def stats(i0, i1):
        n = i1 - i0
        s1 = _sum_between(up1, down1, i0, i1)
        s2 = _sum_between(up2, down2, i0, i1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s1 / n
            std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
        lo = rows * n_pixels + np.clip(i0 + (n - 1) // 2, 0, last)
        hi = rows * n_pixels + np.clip(i0 + n // 2, 0, last)
        return n, mean, std, 0.5 * (flat[lo] + flat[hi])

    def count(bound, upper):
        with np.errstate(invalid="ignore"):
            inside = d <= bound[:, None] if upper else d < bound[:, None]
        return np.count_nonzero(inside, axis=1)

    i0, i1 = np.zeros(n_boxes, np.intp), n_valid.astype(np.intp)
    n, mean, std, median = stats(i0, i1)
    lo, hi = np.full(n_boxes, -np.inf), np.full(n_boxes, np.inf)
    last_lo, last_hi = lo.copy(), hi.copy()
    active = n > 0
    for _ in range(maxiters):
        if not active.any():
            break
        last_lo = np.where(active, median - sigma * std, last_lo)
        last_hi = np.where(active, median + sigma * std, last_hi)
        lo, hi = np.maximum(lo, last_lo), np.minimum(hi, last_hi)
        i0, i1 = count(lo, False), count(hi, True)
        n_next, mean, std, median = stats(i0, i1)
        active &= (n_next != n) & (n_next != 0)
        n = n_next
    f0, f1 = count(last_lo, False), count(last_hi, True)
    if intersect_last:
        f0[-1], f1[-1] = i0[-1], i1[-1]
    n, mean, std, median = stats(f0, f1)
    with np.errstate(invalid="ignore", divide="ignore"):
        skewed = np.abs(mean - median) / std >= 0.3
    value = np.where(std == 0, mean, np.where(skewed, median, 2.5 * median - 1.5 * mean))
    empty = n == 0
    value[empty] = np.nan
    std[empty] = np.nan
    return value, std, n


def _numpy_kernel(data, invalid, box_y, box_x, sigma, maxiters, background, rms, n_good):
    """The C kernel's computation in NumPy; same arguments, outputs and return value.

    The boxes are processed a few rows of boxes at a time (about
    ``_NUMPY_CHUNK`` values): their valid values are sorted, NaN after them,
    and clipped by `_clip_sorted_rows`.
    """
    ny, nx = data.shape
    my, mx = -(-ny // box_y), -(-nx // box_x)
    valid = np.isfinite(data)
    n_nonfinite = int(np.count_nonzero(~valid if invalid is None else ~(valid | invalid)))
    if invalid is not None:
        valid &= ~invalid
    corner = bool(ny % box_y and nx % box_x)
    step = max(1, _NUMPY_CHUNK // (box_y * box_x * mx))
    for iy0 in range(0, my, step):
        iy1 = min(my, iy0 + step)
        y0, y1 = iy0 * box_y, min(ny, iy1 * box_y)
        block = np.full(((iy1 - iy0) * box_y, mx * box_x), np.nan)
        block[:y1 - y0, :nx] = np.where(valid[y0:y1], data[y0:y1], np.nan)
        rows = block.reshape(iy1 - iy0, box_y, mx, box_x).swapaxes(1, 2).reshape(
            -1, box_y * box_x)
        rows.sort(axis=1)
        n_valid = np.count_nonzero(~np.isnan(rows), axis=1)
        pivot = rows[np.arange(len(rows)), np.maximum(n_valid - 1, 0) // 2]
        value, std, n = _clip_sorted_rows(rows - pivot[:, None], n_valid, sigma, maxiters,
                                          corner and iy1 == my)
        cells = slice(iy0 * mx, iy1 * mx)
        background.reshape(-1)[cells] = pivot + value
        rms.reshape(-1)[cells] = std
        n_good.reshape(-1)[cells] = n
    return n_nonfinite, 0


#: The entry point of each implementation in `BACKENDS`.
_KERNELS = {"c": _c_kernel, "numpy": _numpy_kernel}


def box_statistics(data, invalid, grid, *, sigma=3.0, maxiters=10,
                   exclude_percentile=10.0, backend=None):
    """Sigma-clipped SExtractor background and rms of every box.

    Parameters
    ----------
    data : ndarray, shape ``grid.shape``
        Image, any real dtype (integers are processed as ``float32``).
        Non-finite values are ignored, with an ``AstropyUserWarning`` when
        they are not in ``invalid`` (as photutils).
    invalid : ndarray of bool or None
        Pixels to ignore (True = masked).
    grid : BoxGrid
        The boxes.
    sigma : float
        Clipping limit in standard deviations (both sides).
    maxiters : int
        Maximum clipping iterations.
    exclude_percentile : float
        Boxes with more than this percentage of pixels masked, missing
        (partial boxes) or clipped are excluded.
    backend : {"c", "numpy"} or None
        Implementation; None uses `BACKEND` (the C kernel when built).

    Returns
    -------
    BoxStatistics
        Mesh-shaped background, rms (NaN where excluded) and pixel counts.

    Raises
    ------
    ValueError
        If ``backend`` is not one of `BACKENDS`.
    """
    backend = BACKEND if backend is None else backend
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} in this installation, "
                         f"got {backend!r}")
    kernel = _KERNELS[backend]
    data, invalid = _kernel_inputs(data, invalid)
    size = grid.mesh_shape[0] * grid.mesh_shape[1]
    bkg = np.empty(size)
    rms = np.empty(size)
    n_good = np.empty(size, dtype=np.int64)
    n_nonfinite, n_coreless = kernel(
        data, invalid, *grid.box_size, float(sigma), int(maxiters), bkg, rms, n_good)
    if n_nonfinite:
        warnings.warn(_NONFINITE_MESSAGE, AstropyUserWarning)
    excluded = n_good <= (1.0 - exclude_percentile / 100.0) * grid.box_npixels
    bkg[excluded] = np.nan
    rms[excluded] = np.nan
    shape = grid.mesh_shape
    return BoxStatistics(background=bkg.astype(data.dtype, copy=False).reshape(shape),
                         rms=rms.astype(data.dtype, copy=False).reshape(shape),
                         n_good=n_good.reshape(shape), n_coreless=int(n_coreless))
