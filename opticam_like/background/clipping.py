"""Sigma-clipped SExtractor statistics of every box of an image.

This computes, for each box of a grid laid over the image, exactly what
photutils' ``Background2D`` computes with its defaults: the box pixels less
the masked and non-finite ones are sigma clipped as ``astropy.stats.SigmaClip``
does (centre = median, scale = population standard deviation, the bounds of
the last iteration applied to all pixels, at most ``maxiters`` iterations,
stop when no pixel is removed), then the background is
``2.5 * median - 1.5 * mean`` (the mean when the standard deviation is zero,
the median when ``|mean - median| / std >= 0.3``, as photutils'
``SExtractorBackground``), the rms is the standard deviation of the clipped
pixels, and boxes with ``n_good <= (1 - exclude_percentile / 100) * box
pixels`` are excluded (NaN).

The clipped set of a box is always the box values inside ``[L, H]``, so
every iteration needs only the count, sum and sum of squares of the pixels
inside the bounds and the values at two ranks (the median). Sorting every box
would give all of them but costs too much; instead, after a sub-sample gives
a rough median ``m`` and sigma ``s`` of each box, a few passes over the
pixels (in cache-sized groups of boxes) split each box into

* the *core* ``(m - 2.4 s, m + 2.4 s)``, which lies inside every clipping
  interval: only its count and float32 sums of ``x - m`` are kept;
* the *tails*, all other pixels (a few per cent, plus the masked ones as
  +inf), extracted, sorted, with float64 running sums;
* a *band* of core values whose ranks cover every rank the median can take
  (clipping the tails moves it by at most half their number), placed from
  the exact number of pixels below the winsorised mean and the density
  near the median; extracted and sorted.

The iterations then run on these small arrays, for all boxes at once. A box
whose clipping interval would cut into the core, whose median would leave the
band, whose tails are too many, or where a bound falls within 1e-5 std of a
pixel value (where float32 sums might decide differently) is recomputed from
its fully sorted values in float64. The result is thus the exact
computation's in every case; only the speed depends on the data.

References
----------
Bertin, E. & Arnouts, S. 1996, A&AS 117, 393 (SExtractor background).
photutils ``Background2D``, ``SExtractorBackground``, ``StdBackgroundRMS``;
astropy ``SigmaClip``.
"""

import warnings
from dataclasses import dataclass

import numpy as np
from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["BoxGrid", "BoxStatistics", "box_statistics"]

#: Half width of the core, in units of the rough sigma of the box.
_CORE_HALF_WIDTH = 2.4
#: Safety factor on the rank distances that set the band.
_BAND_MARGIN = 1.25
#: Relative distance (in std) below which a clipping bound is too close to
#: a pixel value to trust the float32 sums of the core.
_SUM_TOLERANCE = 1e-5
#: At most this many sub-sampled pixels per box side.
_SUBSAMPLE_SIDE = 22
#: A box with more extracted pixels than this fraction is sorted instead.
_MAX_EXTRACTED_FRACTION = 0.35
#: Rows processed together in the passes over the pixels (cache-sized).
_CHUNK_BYTES = 1 << 20

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
    def full_shape(self):
        """Number of complete boxes along each axis."""
        return tuple(n // b for n, b in zip(self.shape, self.box_size))

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
        (NaN for excluded boxes), in the data type of the mesh (``float32``
        unless the data are ``float64``).
    n_good : ndarray of int, shape ``mesh_shape``
        Pixels left after masking and clipping.
    n_sorted : int
        Boxes that had to be fully sorted (diagnostic).
    """

    background: np.ndarray
    rms: np.ndarray
    n_good: np.ndarray
    n_sorted: int


def _subsample_steps(box_size):
    """Steps of the regular sub-sample of a box (at most 22 per side)."""
    return tuple(-(-b // _SUBSAMPLE_SIDE) for b in box_size)


class _BoxRows:
    """The boxes of an image, each to be copied into one row of pixels.

    Complete boxes come first (C order), then the partial boxes of the last
    row, of the last column and the corner, when they have more real pixels
    than ``min_valid`` (the others are always excluded and are skipped).

    Parameters
    ----------
    grid : BoxGrid
        The boxes.
    min_valid : float
        Partial boxes with at most this many real pixels are skipped.
    """

    def __init__(self, grid, min_valid):
        (ny, nx), (by, bx) = grid.shape, grid.box_size
        (fy, fx), mx = grid.full_shape, grid.mesh_shape[1]
        y1, x1 = fy * by, fx * bx
        h, w = ny - y1, nx - x1
        self.grid = grid
        self.groups = []             # (flat mesh cells, image region, (a, hh, b, ww))
        if fy and fx:
            self.groups.append(((np.arange(fy)[:, None] * mx + np.arange(fx)).ravel(),
                                (slice(0, y1), slice(0, x1)), (fy, by, fx, bx)))
        if h and fx and h * bx > min_valid:
            self.groups.append((fy * mx + np.arange(fx), (slice(y1, ny), slice(0, x1)),
                                (1, h, fx, bx)))
        if w and fy and by * w > min_valid:
            self.groups.append((np.arange(fy) * mx + fx, (slice(0, y1), slice(x1, nx)),
                                (fy, by, 1, w)))
        if h and w and h * w > min_valid:
            self.groups.append((np.array([fy * mx + fx]), (slice(y1, ny), slice(x1, nx)),
                                (1, h, 1, w)))
        self.cells = (np.concatenate([g[0] for g in self.groups]) if self.groups
                      else np.zeros(0, np.int64))
        iy, ix = np.divmod(self.cells, mx)
        self.real_pixels = (np.minimum(by, ny - iy * by) * np.minimum(bx, nx - ix * bx))

    def _fill(self, out, source, invalid, step=(1, 1), offset=None):
        """Copy ``source`` (or a regular sub-grid of it) into rows of ``out``.

        Rows are ``out[i].reshape(ky, kx)`` for box ``i``; missing and
        invalid pixels are +inf; ``offset`` (one value per row) is
        subtracted on the way.
        """
        (by, bx), (sy, sx) = self.grid.box_size, step
        ky, kx = len(range(sy // 2, by, sy)), len(range(sx // 2, bx, sx))
        start = 0
        for cells, region, (a, hh, b, ww) in self.groups:
            n = len(cells)
            block = out[start:start + n].reshape(a, b, ky, kx)
            jy, jx = len(range(sy // 2, hh, sy)), len(range(sx // 2, ww, sx))
            if (jy, jx) != (ky, kx):
                block[...] = np.inf
            target = block[:, :, :jy, :jx].transpose(0, 2, 1, 3)
            view = source[region].reshape(a, hh, b, ww)[:, sy // 2::sy, :, sx // 2::sx]
            if offset is None:
                np.copyto(target, view, casting="unsafe")
            else:
                shift = offset[start:start + n].reshape(a, 1, b, 1).astype(out.dtype)
                np.subtract(view, shift, out=target, casting="unsafe")
            if invalid is not None:
                np.copyto(target, np.inf, where=invalid[region].reshape(
                    a, hh, b, ww)[:, sy // 2::sy, :, sx // 2::sx])
            start += n

    def subsample(self, data, invalid, dtype):
        """At most 22 x 22 regularly spaced pixels of every box.

        Returns
        -------
        ndarray, shape (n_boxes, k)
            The sampled pixels (invalid or missing ones = +inf).
        """
        by, bx = self.grid.box_size
        step = _subsample_steps(self.grid.box_size)
        k = len(range(step[0] // 2, by, step[0])) * len(range(step[1] // 2, bx, step[1]))
        out = np.empty((len(self.cells), k), dtype=dtype)
        self._fill(out, data, invalid, step)
        return out

    def gather(self, data, invalid, offset, dtype):
        """All pixels of every box, less ``offset``.

        Parameters
        ----------
        data : ndarray
            The image.
        invalid : ndarray of bool or None
            Pixels to ignore.
        offset : ndarray, shape (n_boxes,)
            Value subtracted from each box (a data value, so that the
            difference is exact near it).
        dtype : numpy dtype
            ``float32`` or ``float64``.

        Returns
        -------
        ndarray, shape (n_boxes, by * bx)
            The boxes as rows; invalid and missing pixels = +inf.
        """
        out = np.empty((len(self.cells), self.grid.box_npixels), dtype=dtype)
        if data.dtype.kind == "f" or data.dtype.itemsize <= 2:
            self._fill(out, data, invalid, offset=offset)
        else:
            # Wide integers are rounded to float32 first, as photutils does.
            self._fill(out, data, invalid)
            out -= offset.astype(dtype)[:, None]
        return out


def _row_counts(flags):
    """Number of True values in each row of a 2-D boolean array."""
    if flags.shape[1] % 8 == 0 and flags.flags.c_contiguous:
        return np.bitwise_count(flags.view(np.uint64)).sum(axis=1, dtype=np.int64)
    return np.count_nonzero(flags, axis=1)


def _subsample_quantiles(sub, npix):
    """Rough median, spread and density of every row from a sub-sample.

    Parameters
    ----------
    sub : ndarray, shape (n_rows, k)
        Sub-sampled pixels of each box (invalid ones = +inf); sorted in place.
    npix : int
        Pixels per box.

    Returns
    -------
    centre : ndarray, shape (n_rows,)
        Sub-sample median (a data value); NaN where fewer than 8 values are
        finite, the lowest is -inf or the spread is zero.
    half : ndarray, shape (n_rows,)
        Half width of the core: 2.4 x half the 15.9-84.1 percentile range.
    density : ndarray, shape (n_rows,)
        Pixels per unit value near the median, from the interquartile range
        (a slight underestimate for a normal distribution).
    step : ndarray, shape (n_rows,)
        Smallest gap between distinct sampled values in the interquartile
        range (the quantisation of integer-valued data, else tiny).
    """
    sub.sort(axis=1)
    n_sub = sub.shape[1]
    n_fin = np.count_nonzero(sub < np.inf, axis=1)
    last = np.maximum(n_fin - 1, 0)
    probs = np.array([0.5, 0.1587, 0.8413, 0.25, 0.75])
    q = np.take_along_axis(sub, np.floor(probs * last[:, None]).astype(np.intp),
                           axis=1).astype(np.float64)
    centre = q[:, 0]
    half = _CORE_HALF_WIDTH * 0.5 * (q[:, 2] - q[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        density = npix * (n_fin / n_sub) * 0.5 / (q[:, 4] - q[:, 3])
    bad = (n_fin < 8) | (sub[:, 0] == -np.inf) | ~(half > 0) | ~(density < np.inf)
    centre[bad] = np.nan
    with np.errstate(invalid="ignore"):
        gaps = np.diff(sub, axis=1)
    inner = (sub[:, :-1] >= q[:, 3:4]) & (sub[:, 1:] <= q[:, 4:5]) & (gaps > 0)
    step = np.where(inner, gaps, np.inf).min(axis=1, initial=np.inf)
    step = np.where(np.isfinite(step), step, 0.0)
    return centre, half, density, step


def _split_chunk(y, half, density, step, n_inf, max_extracted):
    """Passes over the pixels of a few rows: core sums, tails and band.

    Parameters
    ----------
    y : ndarray, shape (k, npix)
        Boxes as rows, relative to their rough median (invalid = +inf).
    half, density, step : ndarray, shape (k,)
        Core half width, density near the median and value quantisation.
    n_inf : ndarray of int, shape (k,)
        Number of +inf values per row, when known (else zeros).
    max_extracted : int
        Largest number of finite extracted pixels accepted per row.

    Returns
    -------
    dict
        ``tails`` (values outside the core) and ``band`` (extracted core
        values), each sorted per row and +inf padded; per row: ``n_tails``
        and ``n_band`` (their lengths, +inf values included),
        ``anchor`` and ``below`` (a value near the median and the exact number
        of pixels below it), ``s1, s2`` (sums of the values clipped to the
        core), ``ok`` (row usable).
    """
    npix = y.shape[1]
    dtype = y.dtype
    h = half.astype(dtype)
    work = np.clip(y, -h[:, None], h[:, None])
    s1 = work.sum(axis=1).astype(np.float64)
    s2 = np.einsum("ij,ij->i", work, work).astype(np.float64)
    np.abs(y, out=work)
    selected = work >= h[:, None]
    n_tails = _row_counts(selected) - n_inf
    n_valid = npix - n_inf

    # The band must hold every rank the median can take: clipping the tails
    # moves it by at most half their number from the middle. Anchor it on
    # the winsorised mean, count the pixels below the anchor, and convert
    # rank distances to values with the (underestimated) density.
    anchor = ((s1 - n_inf * h) / np.maximum(n_valid, 1)).astype(dtype)
    below = _row_counts(y < anchor[:, None])
    r_min = np.floor((n_valid - n_tails - 1) / 2)
    r_max = np.floor((n_valid + n_tails) / 2)
    pad = np.maximum(2.0 / density, 0.51 * step)      # ties of quantised data
    band_lo = anchor - (np.maximum(below - r_min, 0) * _BAND_MARGIN / density
                        + pad).astype(dtype)
    band_hi = anchor + (np.maximum(r_max + 1 - below, 0) * _BAND_MARGIN / density
                        + pad).astype(dtype)
    selected |= (y >= band_lo[:, None]) & (y <= band_hi[:, None])
    counts = _row_counts(selected)
    ok = np.isfinite(s1) & (counts <= max_extracted + n_inf)
    if not ok.all():
        selected &= ok[:, None]
        counts = np.where(ok, counts, 0)
    # Split the extracted values into band (core) and tails, each sorted.
    values = y[selected]
    row = np.repeat(np.arange(len(y)), counts)
    in_band = np.abs(values) < h[row]
    n_band = np.bincount(row[in_band], minlength=len(y))
    return {"tails": _sorted_ragged(values[~in_band], counts - n_band),
            "band": _sorted_ragged(values[in_band], n_band), "n_band": n_band,
            "n_tails": counts - n_band,
            "anchor": anchor, "below": below, "s1": s1, "s2": s2, "ok": ok}


def _stack_padded(arrays):
    """Stack 2-D arrays of different widths, padding with +inf."""
    if len(arrays) == 1:
        return arrays[0]
    out = np.full((sum(len(a) for a in arrays), max(a.shape[1] for a in arrays)),
                  np.inf, dtype=arrays[0].dtype)
    start = 0
    for a in arrays:
        out[start:start + len(a), :a.shape[1]] = a
        start += len(a)
    return out


def _summarise_split(y, centre, half, density, step, n_inf):
    """Summary of rows split into core, tails and band (fast path).

    Parameters
    ----------
    y : ndarray, shape (n_rows, npix)
        Boxes as rows, less ``centre`` (invalid pixels = +inf).
    centre, half, density, step : ndarray, shape (n_rows,)
        From `_subsample_quantiles` (rows with NaN ``centre`` are not split).
    n_inf : ndarray of int, shape (n_rows,)
        Number of +inf values in each row if known (else zeros: unmasked
        +inf data are then found among the tails).

    Returns
    -------
    rows : ndarray of int
        The rows that could be split (the others must be sorted).
    summary : _Summary
        Their summary.
    nonfinite : ndarray of bool, shape (n_rows,)
        Rows found to hold NaN or -inf values.
    n_inf : ndarray of int, shape (n_rows,)
        Number of +inf values found in each row.
    """
    n_rows, npix = y.shape
    usable = np.isfinite(centre)
    half = np.where(usable, half, 1.0)
    density = np.where(usable, density, 1.0)
    chunk = max(1, _CHUNK_BYTES // (npix * y.itemsize))
    starts = range(0, n_rows, chunk)
    parts = [_split_chunk(y[i:i + chunk], half[i:i + chunk], density[i:i + chunk],
                          step[i:i + chunk], n_inf[i:i + chunk],
                          int(_MAX_EXTRACTED_FRACTION * npix))
             for i in starts]
    tails = _stack_padded([p["tails"] for p in parts])
    band = _stack_padded([p["band"] for p in parts])
    n_mid, n_out, anchor, below, s1, s2, ok = (
        np.concatenate([p[key] for p in parts]) if parts else np.zeros(0)
        for key in ("n_band", "n_tails", "anchor", "below", "s1", "s2", "ok"))
    nonfinite = usable & (~np.isfinite(s1) | (tails[:, 0] == -np.inf))
    ok = usable & ~nonfinite & ok.astype(bool)

    h = half.astype(y.dtype)
    n_low = _row_counts(tails <= -h[:, None])
    n_fin = _row_counts(tails < np.inf)
    n_high = n_fin - n_low
    n_inf_found = n_out.astype(np.int64) - n_fin
    core_n = npix - n_inf_found - n_fin
    # Core sums: the clipped sums less the tails clipped to -h and +h (+inf
    # pixels were clipped to +h too).
    h64 = h.astype(np.float64)
    n_clipped_high = n_high + n_inf_found
    core_s1 = s1 + (n_low - n_clipped_high) * h64
    core_s2 = s2 - (n_low + n_clipped_high) * h64 * h64
    # Core pixels between -h and the band are not extracted: the band starts
    # at global rank n_low + gap_low.
    gap_low = below.astype(np.int64) - n_low - _row_counts(band < anchor[:, None])

    rows = np.flatnonzero(ok)
    kept = tails[rows].astype(np.float64)
    summary = _make_summary(
        centre[rows], kept, n_fin[rows],
        (core_n[rows], core_s1[rows], core_s2[rows]), (-h64[rows], h64[rows]),
        band[rows], (n_low + gap_low)[rows], n_mid[rows].astype(np.int64),
        _SUM_TOLERANCE if y.dtype == np.float32 else 0.0)
    return rows, summary, nonfinite, n_inf_found


@dataclass
class _Summary:
    """What the clipping iterations need to know about a set of rows.

    Values are relative to ``centre`` (float64). The *core* pixels lie in
    ``(core_lo, core_hi)``, inside every clipping interval, and enter only
    through ``core_n, core_s1, core_s2``. The other pixels (*tails*) are
    tested one by one against the bounds: ``tails`` holds them sorted (+inf
    padded to a multiple of 8 columns, ``n_tails`` per row) and ``cum1,
    cum2`` their running sums of ``t`` and ``t**2`` (leading zero,
    flattened: row ``i`` starts at ``cum_base[i]``). The median is read in
    the *band*: ``band[band_base[i] + k]`` is the valid pixel of global rank
    ``band_rank0[i] + k`` for ``0 <= k < band_n[i]``. A clipping bound closer
    than ``tolerance * std`` to a pixel value cannot be trusted (the core
    sums carry rounding errors of that order).
    """

    centre: np.ndarray
    tails: np.ndarray
    n_tails: np.ndarray
    cum1: np.ndarray
    cum2: np.ndarray
    cum_base: np.ndarray
    core_n: np.ndarray
    core_s1: np.ndarray
    core_s2: np.ndarray
    core_lo: np.ndarray
    core_hi: np.ndarray
    band: np.ndarray
    band_base: np.ndarray
    band_rank0: np.ndarray
    band_n: np.ndarray
    tolerance: float

    def __post_init__(self):
        self.core_n_int = self.core_n.astype(np.int64)
        self.band_last = np.maximum(self.band_n, 1) - 1
        self.halves = np.array([1, 0])          # (n - 1) // 2 and n // 2


def _count_below(tails, limits):
    """``(#tails < limits[:, 0], #tails < limits[:, 1])`` per row (width % 8 == 0)."""
    flags = tails[:, None, :] < limits[:, :, None]
    return np.bitwise_count(flags.view(np.uint64)).sum(axis=2, dtype=np.int64)


def _make_summary(centre, tails, n_tails, core, core_edges, band, band_rank0, band_n,
                  tolerance):
    """Assemble a `_Summary` (running sums and flat offsets included).

    ``tails`` and ``band`` are 2-D, sorted per row, +inf padded; ``core`` is
    ``(n, s1, s2)`` and ``core_edges`` ``(lo, hi)``.
    """
    n_rows, width = tails.shape
    if width % 8:
        tails = np.concatenate([tails, np.full((n_rows, 8 - width % 8), np.inf)], axis=1)
        width = tails.shape[1]
    t = np.where(tails < np.inf, tails, 0.0)
    cum1 = np.zeros((n_rows, width + 1))
    cum2 = np.zeros((n_rows, width + 1))
    np.cumsum(t, axis=1, out=cum1[:, 1:])
    np.cumsum(t * t, axis=1, out=cum2[:, 1:])
    return _Summary(centre=centre, tails=tails, n_tails=n_tails, cum1=cum1.ravel(),
                    cum2=cum2.ravel(), cum_base=np.arange(n_rows) * (width + 1),
                    core_n=core[0].astype(np.float64), core_s1=core[1], core_s2=core[2],
                    core_lo=core_edges[0], core_hi=core_edges[1], band=band.ravel(),
                    band_base=np.arange(n_rows) * band.shape[1],
                    band_rank0=band_rank0, band_n=band_n, tolerance=tolerance)


def _summarise_sorted(rows):
    """Summary of rows whose valid values are all kept and sorted (exact path).

    Non-finite values are treated as masked.
    """
    rows = np.where(np.isfinite(rows), rows, np.inf).astype(np.float64)
    rows.sort(axis=1)
    n = len(rows)
    n_valid = np.count_nonzero(rows < np.inf, axis=1)
    centre = np.take_along_axis(rows, np.maximum((n_valid - 1) // 2, 0)[:, None],
                                axis=1)[:, 0]
    centre[n_valid == 0] = 0.0
    rows -= centre[:, None]
    zeros = np.zeros(n)
    return _make_summary(centre, rows, n_valid, (zeros, zeros, zeros),
                         (np.full(n, np.inf), np.full(n, -np.inf)), rows,
                         np.zeros(n, np.int64), n_valid, 0.0)


def _sorted_ragged(values, counts):
    """Rows of different lengths, each sorted, padded with +inf.

    Parameters
    ----------
    values : ndarray, shape (counts.sum(),)
        The values of row 0, then row 1, ...
    counts : ndarray of int, shape (n_rows,)
        Length of each row.

    Returns
    -------
    ndarray, shape (n_rows, counts.max())
        Sorted rows. The longest tenth is sorted apart, since the cost of a
        sort grows quickly with the padded width.
    """
    n_rows = len(counts)
    width = max(int(counts.max(initial=0)), 1)
    out = np.full((n_rows, width), np.inf, dtype=values.dtype)
    starts = np.cumsum(counts) - counts
    out.ravel()[np.arange(values.size)
                + np.repeat(np.arange(n_rows) * width - starts, counts)] = values
    k = (9 * n_rows) // 10
    narrow = max(int(np.partition(counts, k)[k]), 1) if n_rows else 1
    if narrow * 2 > width:
        out.sort(axis=1)
        return out
    short = counts <= narrow
    part = out[short, :narrow]
    part.sort(axis=1)
    out[short, :narrow] = part
    part = out[~short]
    part.sort(axis=1)
    out[~short] = part
    return out


@dataclass
class _SetStats:
    """Count, mean, std and median of the clipped set of each row."""

    n: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    median: np.ndarray


def _set_stats(s, lower, upper):
    """Statistics of the valid pixels inside ``[lower, upper]`` (relative values).

    Returns
    -------
    stats : _SetStats
    index : ndarray of int, shape (n, 2)
        Number of tails below ``lower`` and not above ``upper``.
    band_pos : ndarray of int, shape (n, 2)
        Band positions of the two middle pixels (valid within ``[0, band_n)``).
    """
    limits = np.empty((len(lower), 2))
    limits[:, 0] = lower
    np.nextafter(upper, np.inf, out=limits[:, 1])
    index = _count_below(s.tails, limits)
    np.minimum(index, s.n_tails[:, None], out=index)
    flat = index + s.cum_base[:, None]
    c1, c2 = s.cum1[flat], s.cum2[flat]
    count = s.core_n_int + (index[:, 1] - index[:, 0])
    n = count.astype(np.float64)
    mean = (s.core_s1 + (c1[:, 1] - c1[:, 0])) / n
    std = np.sqrt(np.maximum((s.core_s2 + (c2[:, 1] - c2[:, 0])) / n - mean * mean, 0.0))
    band_pos = (index[:, :1] - s.band_rank0[:, None]) + ((count[:, None] - s.halves) >> 1)
    take = np.clip(band_pos, 0, s.band_last[:, None]) + s.band_base[:, None]
    median = 0.5 * (s.band[take[:, 0]].astype(np.float64) + s.band[take[:, 1]])
    return _SetStats(n=n, mean=mean, std=std, median=median), index, band_pos


def _near_bounds(s, bounds, index, std):
    """Rows where a pixel or a core edge lies within tolerance of a bound.

    Parameters
    ----------
    s : _Summary
        The rows.
    bounds : ndarray, shape (n, k)
        Bounds used (relative to the centre).
    index : ndarray of int, shape (n, k)
        Position of each bound among the sorted tails.
    std : ndarray, shape (n, k)
        Standard deviation the bound was derived from.
    """
    rows = np.arange(len(bounds))[:, None]
    width = s.tails.shape[1]
    after = np.where(index < width, s.tails[rows, np.minimum(index, width - 1)], np.inf)
    before = np.where(index > 0, s.tails[rows, np.maximum(index - 1, 0)], -np.inf)
    gap = np.minimum(after - bounds, bounds - before)
    gap = np.minimum(gap, np.abs(bounds - s.core_lo[:, None]))
    gap = np.minimum(gap, np.abs(bounds - s.core_hi[:, None]))
    return (gap <= s.tolerance * std).any(axis=1)


def _clip(s, sigma, maxiters):
    """Sigma-clip every row of a summary as astropy's ``SigmaClip`` does.

    Each iteration clips the current set at ``median -+ sigma * std``;
    iterations stop when no pixel is removed or after ``maxiters``; the
    bounds of the last iteration are then applied to all valid pixels.

    Returns
    -------
    stats : _SetStats
        Statistics of the final clipped set.
    ok : ndarray of bool
        False for rows whose summary could not resolve some step (a median
        outside the band, a bound inside the core or too close to a pixel):
        they must be sorted.
    """
    n_rows = len(s.centre)
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = np.full(n_rows, -np.inf)
        upper = np.full(n_rows, np.inf)
        current, index, pos = _set_stats(s, lower, upper)
        pos_min, pos_max = pos[:, 0], pos[:, 1]
        history = []
        for _ in range(maxiters):
            last_lo = current.median - sigma * current.std
            last_hi = current.median + sigma * current.std
            lower = np.maximum(lower, last_lo)
            upper = np.minimum(upper, last_hi)
            new, index, pos = _set_stats(s, lower, upper)
            pos_min, pos_max = np.minimum(pos_min, pos[:, 0]), np.maximum(pos_max, pos[:, 1])
            history.append((lower, upper, index, current.std))
            converged = np.array_equal(new.n, current.n)
            current = new
            if converged:
                break
        ok = (lower <= s.core_lo) & (upper >= s.core_hi)
        if history and (np.any(last_lo < lower) or np.any(last_hi > upper)):
            current, index, pos = _set_stats(s, last_lo, last_hi)
            pos_min, pos_max = np.minimum(pos_min, pos[:, 0]), np.maximum(pos_max, pos[:, 1])
            history.append((last_lo, last_hi, index, history[-1][3]))
            ok &= (last_lo <= s.core_lo) & (last_hi >= s.core_hi)
        ok &= (pos_min >= 0) & (pos_max < s.band_n) & (current.n > 0)
        if s.tolerance and history:
            bounds = np.concatenate([np.stack(h[:2], axis=1) for h in history], axis=1)
            index = np.concatenate([h[2] for h in history], axis=1)
            std = np.repeat(np.stack([h[3] for h in history], axis=1), 2, axis=1)
            ok &= ~_near_bounds(s, bounds, index, std)
    return current, ok


def _sextractor(stats):
    """photutils' SExtractorBackground from the clipped-set statistics."""
    with np.errstate(invalid="ignore", divide="ignore"):
        bkg = 2.5 * stats.median - 1.5 * stats.mean
        use_median = np.abs(stats.mean - stats.median) / stats.std >= 0.3
    bkg = np.where(use_median, stats.median, bkg)
    return np.where(stats.std == 0, stats.mean, bkg)


def box_statistics(data, invalid, grid, *, sigma=3.0, maxiters=10,
                   exclude_percentile=10.0):
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

    Returns
    -------
    BoxStatistics
        Mesh-shaped background, rms (NaN where excluded) and pixel counts.
        Partial edge boxes too small ever to pass the threshold are not
        computed (their ``n_good`` is 0).
    """
    dtype = np.float64 if data.dtype == np.float64 else np.float32
    npix = grid.box_npixels
    threshold = (1.0 - exclude_percentile / 100.0) * npix
    boxes = _BoxRows(grid, threshold)
    n_rows = len(boxes.cells)
    centre, half, density, step = _subsample_quantiles(
        boxes.subsample(data, invalid, dtype), npix)
    offset = np.where(np.isfinite(centre), centre, 0.0)
    rows = boxes.gather(data, invalid, offset, dtype)
    n_masked = 0 if invalid is None else int(sum(
        np.count_nonzero(invalid[region]) for _, region, _ in boxes.groups))
    missing = int(n_rows * npix - boxes.real_pixels.sum())
    if invalid is not None or missing:
        n_inf = _row_counts(rows == np.inf)
    else:
        n_inf = np.zeros(n_rows, np.int64)

    results = (np.full(n_rows, np.nan), np.full(n_rows, np.nan), np.zeros(n_rows, np.int64))
    done, nonfinite, n_nonfinite = _split_and_clip(
        rows, np.arange(n_rows), offset, np.isfinite(centre), (half, density, step),
        n_inf, results, sigma, maxiters)
    todo = np.ones(n_rows, bool)
    todo[done] = False
    if nonfinite.any():
        # NaN or -inf data: treat them as masked (+inf) and split again.
        redo = np.flatnonzero(nonfinite)
        sub = rows[redo]
        np.copyto(sub, np.inf, where=~np.isfinite(sub))
        (sy, sx), (by, bx) = _subsample_steps(grid.box_size), grid.box_size
        c, *shape_info = _subsample_quantiles(sub.reshape(len(redo), by, bx)[
            :, sy // 2::sy, sx // 2::sx].reshape(len(redo), -1), npix)
        usable = np.isfinite(c)
        c = np.where(usable, c, 0.0)
        sub -= c.astype(dtype)[:, None]
        done, _, found = _split_and_clip(sub, redo, offset[redo] + c, usable, shape_info,
                                         _row_counts(sub == np.inf), results, sigma,
                                         maxiters)
        n_nonfinite += found
        todo[done] = False
    n_sorted = int(todo.sum())
    n_nonfinite += _sort_and_clip(rows, np.flatnonzero(todo), offset, results,
                                  sigma, maxiters)
    if n_nonfinite > n_masked + missing:
        warnings.warn(_NONFINITE_MESSAGE, AstropyUserWarning)

    bkg, rms, n_good = results
    excluded = n_good <= threshold
    size = grid.mesh_shape[0] * grid.mesh_shape[1]
    out_bkg = np.full(size, np.nan, dtype=dtype)
    out_rms = np.full(size, np.nan, dtype=dtype)
    out_n = np.zeros(size, np.int64)
    out_bkg[boxes.cells] = np.where(excluded, np.nan, bkg)
    out_rms[boxes.cells] = np.where(excluded, np.nan, rms)
    out_n[boxes.cells] = n_good
    shape = grid.mesh_shape
    return BoxStatistics(background=out_bkg.reshape(shape), rms=out_rms.reshape(shape),
                         n_good=out_n.reshape(shape), n_sorted=n_sorted)


def _split_and_clip(y, index, offset, usable, shape_info, n_inf, results, sigma,
                    maxiters):
    """Fast path on rows ``y`` (boxes ``index``, less ``offset``).

    ``shape_info`` is ``(half, density, step)`` from `_subsample_quantiles`.

    Returns
    -------
    done : ndarray of int
        Boxes whose results were stored.
    nonfinite : ndarray of bool, shape (len(index),)
        Rows found to hold NaN or -inf.
    n_inf : int
        Number of +inf values in the stored rows.
    """
    rows, summary, nonfinite, found_inf = _summarise_split(
        y, np.where(usable, 0.0, np.nan), *shape_info, n_inf)
    stats, ok = _clip(summary, sigma, maxiters)
    done = rows[ok]
    _store(results, index[done], offset[done], summary, stats, ok)
    return index[done], nonfinite, int(found_inf[done].sum())


def _store(results, index, offset, summary, stats, keep):
    """Write background, rms and count of the kept rows into ``results``."""
    bkg, rms, n_good = results
    bkg[index] = offset + (summary.centre + _sextractor(stats))[keep]
    rms[index] = stats.std[keep]
    n_good[index] = stats.n[keep]


def _sort_and_clip(rows, index, offset, results, sigma, maxiters):
    """Exact path: sort the given rows fully and clip them.

    Returns
    -------
    int
        Number of non-finite values found in those rows.
    """
    n_nonfinite = 0
    step = max(1, _CHUNK_BYTES // (8 * rows.shape[1]))
    for start in range(0, len(index), step):
        chunk = index[start:start + step]
        summary = _summarise_sorted(rows[chunk])
        stats, _ = _clip(summary, sigma, maxiters)
        _store(results, chunk, offset[chunk], summary, stats, slice(None))
        n_nonfinite += int(chunk.size * rows.shape[1] - summary.n_tails.sum())
    return n_nonfinite
