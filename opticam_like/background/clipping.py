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
only three kinds of information are needed at every iteration: the count,
sum and sum of squares of the pixels inside the bounds, and the values at two
ranks (the median). Sorting every box would give all of them but costs too
much; instead each box is split, with a few passes over the data, into

* a *core* ``(A, B)`` around a rough median (from a sub-sample), wide enough
  to lie inside every clipping interval: only its count and sums are kept;
* the *tails* ``<= A`` and ``>= B`` (a few per cent of the pixels, plus the
  masked ones), extracted and kept as values;
* a narrow *band* of values around the median whose ranks cover every rank
  the median can take, extracted and sorted.

The iterations then run on these small arrays. A box whose clipping
interval would cut into the core, whose median would leave the band, or
whose tails are too many is recomputed from its fully sorted values, so the
result is the same as the brute-force computation in every case; only the
speed depends on the data.

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
_CORE_HALF_WIDTH = 2.5
#: Safety factor on the band half width (in ranks) derived from the density.
_BAND_MARGIN = 1.25
#: Ratio of the true density at the centre of a normal distribution to the
#: estimate made from its 15.9-84.1 percentile range.
_DENSITY_BIAS = 0.3989 / (0.6827 / 2.0)
#: Relative distance (in std) below which a bound is too close to a pixel
#: value to trust float32 sums.
_SUM_TOLERANCE = 1e-5
#: At most this many sub-sampled pixels per box side.
_SUBSAMPLE_SIDE = 16
#: A box with more extracted pixels than this fraction is sorted instead.
_MAX_EXTRACTED_FRACTION = 0.35
#: Fully sorted boxes are processed in chunks of this many rows.
_SORTED_CHUNK = 64

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


def _row_counts(flags):
    """Number of True values in each row of a 2-D boolean array."""
    if flags.shape[1] % 8 == 0 and flags.flags.c_contiguous:
        return np.bitwise_count(flags.view(np.uint64)).sum(axis=1, dtype=np.int64)
    return np.count_nonzero(flags, axis=1)


def _gather_boxes(data, invalid, grid, work_dtype, min_valid):
    """Copy the boxes into rows, invalid pixels set to +inf.

    Parameters
    ----------
    data : ndarray, shape ``grid.shape``
        Image (any real dtype).
    invalid : ndarray of bool or None
        Pixels to ignore (mask and coverage mask).
    grid : BoxGrid
        The box grid.
    work_dtype : numpy dtype
        ``float32`` or ``float64``.
    min_valid : float
        Partial boxes with no more real pixels than this are skipped (they
        are always excluded).

    Returns
    -------
    rows : ndarray, shape (n_boxes, by * bx)
        One box per row (complete boxes in C order, then the used partial
        ones), invalid and missing pixels = +inf.
    cells : ndarray of int, shape (n_boxes,)
        Flat mesh index of each row.
    n_masked : int
        Number of ``invalid`` pixels inside the rows.
    """
    (ny, nx), (by, bx) = grid.shape, grid.box_size
    (fy, fx), (my, mx) = grid.full_shape, grid.mesh_shape
    y1, x1 = fy * by, fx * bx
    h, w = ny - y1, nx - x1
    groups = []                                   # (cells, image slice, layout)
    if fy and fx:
        groups.append(((np.arange(fy)[:, None] * mx + np.arange(fx)).ravel(),
                       (slice(0, y1), slice(0, x1)), (fy, by, fx, bx)))
    if h and fx and h * bx > min_valid:
        groups.append((fy * mx + np.arange(fx), (slice(y1, ny), slice(0, x1)),
                       (1, h, fx, bx)))
    if w and fy and by * w > min_valid:
        groups.append((np.arange(fy) * mx + fx, (slice(0, y1), slice(x1, nx)),
                       (fy, by, 1, w)))
    if h and w and h * w > min_valid:
        groups.append((np.array([fy * mx + fx]), (slice(y1, ny), slice(x1, nx)),
                       (1, h, 1, w)))
    n_rows = sum(len(g[0]) for g in groups)
    rows = np.empty((n_rows, by * bx), dtype=work_dtype)
    start = n_masked = 0
    for cells, region, (a, hh, b, ww) in groups:
        block = rows[start:start + len(cells)].reshape(a, b, by, bx)
        if (hh, ww) != (by, bx):
            block[...] = np.inf
        target = block[:, :, :hh, :ww].transpose(0, 2, 1, 3)
        np.copyto(target, data[region].reshape(a, hh, b, ww), casting="unsafe")
        if invalid is not None:
            np.copyto(target, np.inf, where=invalid[region].reshape(a, hh, b, ww))
            n_masked += int(np.count_nonzero(invalid[region]))
        start += len(cells)
    cells = np.concatenate([g[0] for g in groups]) if groups else np.zeros(0, int)
    return rows, cells, n_masked


def _subsample_quantiles(rows, grid):
    """Rough median and sigma of every row from a regular sub-sample.

    Parameters
    ----------
    rows : ndarray, shape (n_rows, by * bx)
        Boxes as rows (invalid pixels = +inf).
    grid : BoxGrid
        The boxes.

    Returns
    -------
    centre, sigma : ndarray, shape (n_rows,)
        Sub-sample median (a data value) and half the 15.9-84.1 percentile
        range; NaN where fewer than 8 sub-sampled values are finite, the
        lowest one is -inf or the range is zero.
    density : ndarray, shape (n_rows,)
        Rough number of pixels per unit value near the median (a lower
        estimate for a normal distribution).
    n_low, n_high : ndarray, shape (n_rows,)
        Upper estimates of the number of finite pixels of the box below and
        above the core ``centre -+ 2.5 sigma``.
    """
    by, bx = grid.box_size
    sy, sx = -(-by // _SUBSAMPLE_SIDE), -(-bx // _SUBSAMPLE_SIDE)
    boxes = rows.reshape(len(rows), by, bx)
    sub = np.sort(boxes[:, sy // 2::sy, sx // 2::sx].reshape(len(rows), -1), axis=1)
    n_sub = sub.shape[1]
    n_fin = np.count_nonzero(np.isfinite(sub), axis=1)
    last = np.maximum(n_fin - 1, 0)

    def quantile(p):
        return np.take_along_axis(sub, np.floor(p * last).astype(np.intp)[:, None],
                                  axis=1)[:, 0].astype(np.float64)

    centre = quantile(0.5)
    sigma = 0.5 * (quantile(0.8413) - quantile(0.1587))
    bad = (n_fin < 8) | (sub[:, 0] == -np.inf) | ~(sigma > 0)
    centre[bad] = np.nan
    sigma[bad] = np.nan
    half = _CORE_HALF_WIDTH * sigma
    scale = grid.box_npixels / n_sub

    def upper_estimate(count):
        return (count + 3.0 * np.sqrt(count + 1.0)) * scale

    n_low = upper_estimate(np.count_nonzero(sub <= (centre - half)[:, None], axis=1))
    n_high = upper_estimate(np.count_nonzero(
        (sub >= (centre + half)[:, None]) & np.isfinite(sub), axis=1))
    density = grid.box_npixels * (n_fin / n_sub) * 0.6827 / (2.0 * sigma)
    return centre, sigma, density, n_low, n_high


@dataclass
class _Summary:
    """What the clipping iterations need to know about a set of rows.

    All values are relative to ``centre`` (float64). ``tails`` holds the
    pixels that are individually tested against the bounds (NaN padded) and
    ``moments`` their ``(1, t, t**2)``; the core pixels enter only through
    ``core_n, core_s1, core_s2`` and lie in ``(core_lo, core_hi)``. ``band``
    holds sorted values whose global ranks (among the valid pixels of the
    row) start at ``band_start``. A clipping bound closer than
    ``tolerance * std`` to a pixel value cannot be trusted (the sums carry
    rounding errors of that order) and sends the row to the exact path.
    """

    centre: np.ndarray
    n_valid: np.ndarray
    tails: np.ndarray
    moments: np.ndarray
    core_n: np.ndarray
    core_s1: np.ndarray
    core_s2: np.ndarray
    core_lo: np.ndarray
    core_hi: np.ndarray
    band: np.ndarray
    band_start: np.ndarray
    band_n: np.ndarray
    tolerance: float


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
        Sorted rows. Rows are sorted in groups of similar length, since
        sorting cost grows quickly with the padded width.
    """
    n_rows = len(counts)
    width = max(int(counts.max(initial=0)), 1)
    out = np.full((n_rows, width), np.inf, dtype=values.dtype)
    starts = np.cumsum(counts) - counts
    out.ravel()[np.arange(values.size)
                + np.repeat(np.arange(n_rows) * width - starts, counts)] = values
    narrow = max(int(np.quantile(counts, 0.9)) if n_rows else 1, 1)
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


def _moments(values):
    """``(1, t, t**2)`` of a NaN-padded array, zero where NaN."""
    finite = ~np.isnan(values)
    t = np.where(finite, values, 0.0)
    return np.stack([finite.astype(np.float64), t, t * t], axis=-1)


def _summarise_sorted(rows):
    """Summary of rows whose values are all kept and sorted (exact path)."""
    rows = np.where(np.isfinite(rows), rows, np.inf)
    rows.sort(axis=1)
    n_valid = np.count_nonzero(rows < np.inf, axis=1)
    centre = np.take_along_axis(rows, np.maximum((n_valid - 1) // 2, 0)[:, None],
                                axis=1)[:, 0].astype(np.float64)
    values = rows.astype(np.float64) - centre[:, None]
    values[~np.isfinite(values)] = np.nan
    zeros = np.zeros(len(rows))
    return _Summary(centre=centre, n_valid=n_valid, tails=values,
                    moments=_moments(values), core_n=zeros, core_s1=zeros,
                    core_s2=zeros, core_lo=np.full(len(rows), np.inf),
                    core_hi=np.full(len(rows), -np.inf), band=values,
                    band_start=np.zeros(len(rows), np.int64), band_n=n_valid,
                    tolerance=0.0)


def _summarise_split(rows, n_inf, max_extracted, grid):
    """Summary of rows split into core, tails and band (fast path).

    Parameters
    ----------
    rows : ndarray, shape (n_rows, by * bx)
        Boxes as rows (invalid pixels = +inf).
    n_inf : ndarray of int, shape (n_rows,)
        Number of +inf values in each row (an exact count, or zeros when
        there are none but possibly unmasked +inf data).
    max_extracted : int
        Rows with more finite tail and band pixels than this are not split.
    grid : BoxGrid
        The boxes.

    Returns
    -------
    summary : _Summary
        For the rows that could be split.
    split : ndarray of bool, shape (n_rows,)
        Rows described by ``summary``; the others must be sorted.
    nonfinite : ndarray of bool, shape (n_rows,)
        Rows found to hold NaN or -inf values.
    n_inf : ndarray of int, shape (n_rows,)
        Number of +inf values in each split row (masked or missing pixels
        and +inf data).
    """
    n_rows, npix = rows.shape
    dtype = rows.dtype
    centre, sigma, density, est_low, est_high = _subsample_quantiles(rows, grid)
    m = centre.astype(dtype)
    lo = (centre - _CORE_HALF_WIDTH * sigma).astype(dtype)
    hi = (centre + _CORE_HALF_WIDTH * sigma).astype(dtype)
    usable = np.isfinite(centre) & (lo < m) & (m < hi)

    # The band must hold every rank the median can take: the tails move it
    # by half their size around the middle of the valid pixels. Count the
    # rank of a value near the median and extend the band from there by the
    # rank distances converted with the (underestimated) density.
    n_valid = npix - n_inf
    r_min = np.floor((n_valid - est_high - 1) / 2)
    r_max = np.floor((n_valid + est_low) / 2)
    below_m = _row_counts(rows < m[:, None])
    target = 0.5 * (r_min + r_max)
    anchor = (centre + (target - below_m) * _DENSITY_BIAS / density).astype(dtype)
    anchor = np.where(usable, anchor, m)
    below = _row_counts(rows < anchor[:, None])
    band_lo = anchor - (np.maximum(below - r_min, 0) * _BAND_MARGIN + 2) / density
    band_hi = anchor + (np.maximum(r_max + 1 - below, 0) * _BAND_MARGIN + 2) / density
    band_lo, band_hi = band_lo.astype(dtype), band_hi.astype(dtype)

    # Core sums over (lo, hi): clip, then remove the clipped ends. Values are
    # relative to m, so float32 sums keep ~1e-7 of the core spread.
    clipped = np.clip(rows, lo[:, None], hi[:, None])
    clipped -= m[:, None]
    s1 = clipped.sum(axis=1).astype(np.float64)
    s2 = np.matmul(clipped[:, None, :], clipped[:, :, None])[:, 0, 0].astype(np.float64)
    del clipped

    selected = rows <= lo[:, None]
    selected |= rows >= hi[:, None]
    selected |= (rows >= band_lo[:, None]) & (rows <= band_hi[:, None])
    counts = _row_counts(selected)
    nonfinite = usable & ~np.isfinite(s1)
    split = usable & ~nonfinite & (counts <= max_extracted + n_inf)
    if not split.all():
        selected &= split[:, None]
    counts = np.where(split, counts, 0)
    ext = _sorted_ragged(rows[selected], counts)
    width = ext.shape[1]
    nonfinite |= ext[:, 0] == -np.inf
    split &= ~nonfinite

    n_low = _row_counts(ext <= lo[:, None])
    n_finite = _row_counts(ext < np.inf)
    n_mid = _row_counts((ext > lo[:, None]) & (ext < hi[:, None]))
    n_high = n_finite - n_low - n_mid
    n_inf = counts - n_finite
    n_valid = npix - n_inf
    core_n = n_valid - n_low - n_high

    # Sums of the core: the clipped sums less the clipped tails (+inf pixels
    # were clipped to hi too).
    lo_r = (lo - m).astype(np.float64)          # the values the clipped sums hold
    hi_r = (hi - m).astype(np.float64)
    n_hi_all = n_high + n_inf
    core_s1 = s1 - n_low * lo_r - n_hi_all * hi_r
    core_s2 = s2 - n_low * lo_r**2 - n_hi_all * hi_r**2
    centre64 = m.astype(np.float64)
    lo_c = lo.astype(np.float64) - centre64     # exact core edges
    hi_c = hi.astype(np.float64) - centre64

    # Band: ext[n_low : n_low + n_mid], preceded by the core pixels between
    # lo and the band, which are not extracted.
    ext64 = ext.astype(np.float64) - centre64[:, None]
    ext64[~np.isfinite(ext64)] = np.nan
    cols = np.arange(width)
    in_mid = (cols >= n_low[:, None]) & (cols < (n_low + n_mid)[:, None])
    gap_low = below - n_low - _row_counts(in_mid & (ext < anchor[:, None]))
    band_width = max(int(n_mid.max(initial=0)), 1)
    take = np.minimum(n_low[:, None] + np.arange(band_width), width - 1)
    band = np.take_along_axis(ext64, take, axis=1)

    tail_width = max(int((n_low + n_high).max(initial=0)), 1)
    j = np.arange(tail_width)
    tail_pos = np.where(j < n_low[:, None], j, j + n_mid[:, None])
    tails = np.take_along_axis(ext64, np.minimum(tail_pos, width - 1), axis=1)
    tails[j >= (n_low + n_high)[:, None]] = np.nan

    keep = np.flatnonzero(split)
    tolerance = _SUM_TOLERANCE if dtype == np.float32 else 0.0
    summary = _Summary(centre=centre64[keep], n_valid=n_valid[keep],
                       tails=tails[keep], moments=_moments(tails[keep]),
                       core_n=core_n[keep].astype(np.float64), core_s1=core_s1[keep],
                       core_s2=core_s2[keep], core_lo=lo_c[keep], core_hi=hi_c[keep],
                       band=band[keep], band_start=(n_low + gap_low)[keep],
                       band_n=n_mid[keep], tolerance=tolerance)
    return summary, split, nonfinite, n_inf


@dataclass
class _SetStats:
    n: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    median: np.ndarray
    ok: np.ndarray


def _set_stats(s, lower, upper):
    """Count, mean, std and median of the valid pixels in ``[lower, upper]``."""
    outside_low = s.tails < lower[:, None]
    outside = outside_low | (s.tails > upper[:, None])
    inside = np.matmul((~outside)[:, None, :].astype(np.float64), s.moments)[:, 0, :]
    n = s.core_n + inside[:, 0]
    s1 = s.core_s1 + inside[:, 1]
    s2 = s.core_s2 + inside[:, 2]
    first = np.count_nonzero(outside_low, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
    n_int = n.astype(np.int64)
    ranks = np.stack([first + (n_int - 1) // 2, first + n_int // 2], axis=1)
    pos = ranks - s.band_start[:, None]
    ok = (pos[:, 0] >= 0) & (pos[:, 1] < s.band_n) & (n_int > 0)
    pos = np.clip(pos, 0, s.band.shape[1] - 1)
    median = np.take_along_axis(s.band, pos, axis=1).mean(axis=1)
    ok &= (lower <= s.core_lo) & (upper >= s.core_hi)
    return _SetStats(n=n_int, mean=mean, std=std, median=median, ok=ok)


def _near(s, bound, std):
    """Rows where a pixel value or the core edge lies within tolerance of ``bound``."""
    tol = (s.tolerance * std)[:, None]
    near = (np.abs(s.tails - bound[:, None]) <= tol).any(axis=1)
    edges = np.stack([s.core_lo, s.core_hi], axis=1)
    return near | (np.abs(edges - bound[:, None]) <= tol).any(axis=1)


def _clip(s, sigma, maxiters):
    """Sigma-clip every row of a summary as astropy's ``SigmaClip`` does.

    Returns
    -------
    _SetStats
        Statistics of the final clipped set; ``ok`` is False for rows whose
        summary could not resolve some step (they must be sorted).
    """
    n_rows = len(s.centre)
    lower = np.full(n_rows, -np.inf)
    upper = np.full(n_rows, np.inf)
    current = _set_stats(s, lower, upper)
    ok = current.ok.copy()
    last_lo, last_hi = lower, upper
    for _ in range(maxiters):
        last_lo = current.median - sigma * current.std
        last_hi = current.median + sigma * current.std
        if s.tolerance:
            ok &= ~(_near(s, last_lo, current.std) | _near(s, last_hi, current.std))
        lower = np.maximum(lower, last_lo)
        upper = np.minimum(upper, last_hi)
        new = _set_stats(s, lower, upper)
        ok &= new.ok
        done = np.all(new.n == current.n)
        current = new
        if done:
            break
    if np.any(last_lo < lower) or np.any(last_hi > upper):
        current = _set_stats(s, last_lo, last_hi)
    current.ok &= ok
    return current


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
        computed (``n_good = 0``).
    """
    work_dtype = np.float64 if data.dtype == np.float64 else np.float32
    npix = grid.box_npixels
    threshold = (1.0 - exclude_percentile / 100.0) * npix
    rows, cells, n_masked = _gather_boxes(data, invalid, grid, work_dtype, threshold)
    n_rows = len(rows)
    missing = n_rows * npix - _real_pixels(grid, cells)
    if invalid is not None or missing:
        n_inf = _row_counts(rows == np.inf)
    else:
        n_inf = np.zeros(n_rows, np.int64)
    results = (np.full(n_rows, np.nan), np.full(n_rows, np.nan),
               np.zeros(n_rows, np.int64))
    todo = np.arange(n_rows)
    n_nonfinite = n_sorted = 0
    for attempt in range(2):
        if not todo.size:
            break
        summary, split, nonfinite, todo_inf = _summarise_split(
            rows[todo], n_inf[todo], int(_MAX_EXTRACTED_FRACTION * npix), grid)
        stats = _clip(summary, sigma, maxiters)
        done = todo[split][stats.ok]
        _store(results, done, summary, stats, stats.ok)
        n_nonfinite += int(todo_inf[split][stats.ok].sum())
        failed = np.ones(n_rows, bool)
        failed[done] = False
        if attempt == 0 and nonfinite.any():
            # NaN or -inf data: treat them as +inf (masked) and try again.
            redo = todo[nonfinite]
            sub = rows[redo]
            np.copyto(sub, np.inf, where=~np.isfinite(sub))
            rows[redo] = sub
            n_inf[redo] = _row_counts(sub == np.inf)
            sorted_now = todo[~nonfinite & ~np.isin(todo, done)]
            todo = redo
        else:
            sorted_now = todo[~np.isin(todo, done)]
            todo = np.zeros(0, np.int64)
        n_nonfinite += _sort_and_clip(rows, sorted_now, results, sigma, maxiters)
        n_sorted += sorted_now.size
    bkg, rms, n_good = results
    if n_nonfinite > n_masked + missing:
        warnings.warn(_NONFINITE_MESSAGE, AstropyUserWarning)

    excluded = n_good <= threshold
    shape = grid.mesh_shape
    out_bkg = np.full(shape[0] * shape[1], np.nan, dtype=work_dtype)
    out_rms = np.full(shape[0] * shape[1], np.nan, dtype=work_dtype)
    out_n = np.zeros(shape[0] * shape[1], np.int64)
    out_bkg[cells] = np.where(excluded, np.nan, bkg)
    out_rms[cells] = np.where(excluded, np.nan, rms)
    out_n[cells] = n_good
    return BoxStatistics(background=out_bkg.reshape(shape), rms=out_rms.reshape(shape),
                         n_good=out_n.reshape(shape), n_sorted=n_sorted)


def _store(results, index, summary, stats, keep):
    """Write the background, rms and count of the kept rows into ``results``."""
    bkg, rms, n_good = results
    bkg[index] = (summary.centre + _sextractor(stats))[keep]
    rms[index] = stats.std[keep]
    n_good[index] = stats.n[keep]


def _sort_and_clip(rows, index, results, sigma, maxiters):
    """Exact path: sort the given rows fully and clip them.

    Returns
    -------
    int
        Number of non-finite values found in those rows.
    """
    n_nonfinite = 0
    for start in range(0, len(index), _SORTED_CHUNK):
        chunk = index[start:start + _SORTED_CHUNK]
        summary = _summarise_sorted(rows[chunk])
        stats = _clip(summary, sigma, maxiters)
        _store(results, chunk, summary, stats, slice(None))
        n_nonfinite += int(chunk.size * rows.shape[1] - summary.n_valid.sum())
    return n_nonfinite


def _real_pixels(grid, cells):
    """Number of image pixels covered by the boxes ``cells``."""
    (ny, nx), (by, bx) = grid.shape, grid.box_size
    iy, ix = np.divmod(cells, grid.mesh_shape[1])
    h = np.minimum(by, ny - iy * by)
    w = np.minimum(bx, nx - ix * bx)
    return int((h * w).sum())
