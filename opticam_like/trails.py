"""Linear features in a frame: satellite and aircraft trails, meteors.

A trail is a line of faint excess across part of a frame, present in one frame (or a few) and
absent from the others, so it neither looks like a star to the finder nor like a defect to the
defect map. :func:`find_trails` finds straight lines with the Hough transform (Hough 1962;
Duda & Hart 1972) of the pixels above a low threshold, once the stars are masked, and accepts a
line only when the mean excess along it is significant against parallel strips beside it. This
is the approach of the trail finders of survey pipelines (e.g. the LSST ``maskStreaks`` task
and ``acstools.satdet``), reduced to what a fast-cadence frame needs.
"""

from dataclasses import dataclass
import math
import warnings

import numpy as np
from scipy import ndimage

__all__ = ["Trail", "find_trails", "trail_mask"]


@dataclass(frozen=True)
class Trail:
    """One straight trail segment (0-based pixel coordinates).

    Attributes
    ----------
    x0, y0, x1, y1 : float
        End points of the segment (px).
    width : float
        Full width (px) masked around the line: 3 FWHM, which holds all but ~0.1% of the
        light of a trail as sharp as the stars.
    significance : float
        Median excess along the segment over its standard error (sigma).
    surface_brightness : float
        Mean excess per pixel along the line centre (e-).
    """

    x0: float
    y0: float
    x1: float
    y1: float
    width: float
    significance: float
    surface_brightness: float

    def as_tuple(self):
        """The seven attributes as a tuple of floats (compact form for transfer)."""
        return (self.x0, self.y0, self.x1, self.y1, self.width, self.significance,
                self.surface_brightness)


def trail_mask(shape, trails):
    """Boolean mask of the pixels within half a trail's width of its segment.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)``.
    trails : sequence of Trail or of 7-tuples (:meth:`Trail.as_tuple`)

    Returns
    -------
    ndarray of bool, shape ``shape``
    """
    mask = np.zeros(shape, dtype=bool)
    ny, nx = shape
    for trail in trails or ():
        x0, y0, x1, y1, width = tuple(trail.as_tuple() if isinstance(trail, Trail)
                                      else trail)[:5]
        half = width / 2
        xa, xb = max(0, int(math.floor(min(x0, x1) - half))), min(nx, int(max(x0, x1) + half) + 2)
        ya, yb = max(0, int(math.floor(min(y0, y1) - half))), min(ny, int(max(y0, y1) + half) + 2)
        if xb <= xa or yb <= ya:
            continue
        yy, xx = np.mgrid[ya:yb, xa:xb].astype(float)
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(length2, 1e-12), 0.0, 1.0)
        distance = np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy))
        mask[ya:yb, xa:xb] |= distance <= half
    return mask


def _star_mask(shape, sources, fwhm):
    """Disks around the compact sources (elongated ones may be the trail itself)."""
    mask = np.zeros(shape, dtype=bool)
    if sources is None or len(sources) == 0:
        return mask
    x = np.asarray(sources["x"], dtype=float)
    y = np.asarray(sources["y"], dtype=float)
    npix = np.asarray(sources["npix"], dtype=float)
    radius = 2.0 * np.sqrt(npix / math.pi) + fwhm
    compact = np.ones(len(x), dtype=bool)
    if "a" in sources.colnames and "b" in sources.colnames:
        a = np.asarray(sources["a"], dtype=float)
        b = np.asarray(sources["b"], dtype=float)
        # a long, thin detection is a piece of trail; a blended pair is short
        compact = ~((a > 3 * np.maximum(b, 1e-3)) & (a > 4 * fwhm))
        radius = np.maximum(radius, 2.0 * a + fwhm)
    # the isophote of the finder (~5 rms) grown to the ~0.3 rms the votes reach: a factor
    # (5 / 0.3)^(1/5) ~ 1.8 in radius on a Moffat beta = 2.5 wing
    ny, nx = shape
    for xi, yi, ri in zip(x[compact], y[compact], radius[compact]):
        r = int(math.ceil(ri))
        x0, x1 = max(0, int(xi) - r), min(nx, int(xi) + r + 2)
        y0, y1 = max(0, int(yi) - r), min(ny, int(yi) + r + 2)
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        mask[y0:y1, x0:x1] |= (xx - xi) ** 2 + (yy - yi) ** 2 <= ri * ri
    return mask


def _line_profile(data, good, theta, rho, half_length_step=1.0, offsets=(0.0,)):
    """Samples of ``data`` along the line ``x cos(theta) + y sin(theta) = rho``.

    Returns the along-line coordinate, the values and validity for each offset (px,
    perpendicular to the line), nearest-pixel sampled.
    """
    ny, nx = data.shape
    c, s = math.cos(theta), math.sin(theta)
    length = math.hypot(nx, ny)
    t = np.arange(-length, length, half_length_step)
    rows = []
    for offset in offsets:
        x = (rho + offset) * c - t * s
        y = (rho + offset) * s + t * c
        xi, yi = np.rint(x).astype(int), np.rint(y).astype(int)
        inside = (xi >= 0) & (xi < nx) & (yi >= 0) & (yi < ny)
        values = np.zeros_like(t)
        valid = np.zeros(t.shape, dtype=bool)
        values[inside] = data[yi[inside], xi[inside]]
        valid[inside] = good[yi[inside], xi[inside]]
        rows.append((values, valid))
    return t, rows


def find_trails(data, rms, mask=None, sources=None, fwhm=3.0, threshold=2.0, min_length=40,
                min_significance=8.0, max_trails=3):
    """Find the trails of one frame.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Background-subtracted image (e-).
    rms : float
        Background rms (e-) of one pixel.
    mask : ndarray of bool, shape (ny, nx), optional
        Pixels to ignore (bad pixels, defects, saturation).
    sources : astropy.table.Table, optional
        Detected sources (``x``, ``y``, ``npix``, optionally ``a``, ``b``) to mask; elongated
        detections are not masked, since they may be pieces of the trail.
    fwhm : float
        Stellar FWHM (px): sets the smoothing, the star masks and the trail width.
    threshold : float
        Blocks of the binned image above ``threshold`` times its robust rms vote in the Hough
        transform.
    min_length : float
        Shortest trail segment (px).
    min_significance : float
        Lowest accepted median excess along the segment, in units of its standard error
        (after subtracting the median of parallel strips 3-6 FWHM away). The median, not the
        mean: a trail is uniform along its length, a star's wing is one bump.
    max_trails : int
        Most trails returned per frame.

    Returns
    -------
    list of Trail
        Strongest first; empty when the frame has none.

    Raises
    ------
    ValueError
        If ``data`` is not 2-D or ``rms`` is not positive.

    Notes
    -----
    The stars are masked and the image is binned into blocks of about one FWHM (which raises
    the S/N per element of a line that wide by about the block size and makes the search
    cost independent of the pixel scale); blocks above ``threshold`` times their robust rms
    are accumulated in the Hough space (``skimage.transform.hough_line``, 1 deg steps). Each
    peak is a candidate line; it is refined on the full-resolution image (centroids of the
    cross profile along it), then the mean excess of a strip along it is compared with strips
    beside it, and the part of the line where the excess is significant gives the segment's
    ends. The found trail's pixels are removed before the next search.
    """
    from skimage.transform import hough_line

    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"data must be 2-D, got shape {data.shape}")
    if not rms > 0:
        raise ValueError(f"rms must be positive, got {rms}")
    good = np.isfinite(data)
    if mask is not None:
        good &= ~np.asarray(mask, dtype=bool)
    usable = good & ~_star_mask(data.shape, sources, fwhm)
    factor = max(2, int(round(fwhm)))
    values = np.where(usable, data, np.float32(0.0))
    counts = _bin(usable, factor)
    with np.errstate(invalid="ignore", divide="ignore"):
        binned = np.where(counts > 0.5, _bin(values, factor) / counts, np.float32(0.0))
    binned_rms = _robust_std(binned[counts > 0.5])
    if not binned_rms > 0:
        return []
    votes = (counts > 0.5) & (binned > threshold * binned_rms)
    min_votes_line = min_length / factor
    if votes.sum() < min_votes_line:
        return []
    angles = np.deg2rad(np.arange(-90.0, 90.0, 1.0))
    trails = []
    width = max(3.0, 3.0 * fwhm)
    offsets = (-6 * fwhm, -4.5 * fwhm, -3 * fwhm, 0.0, 3 * fwhm, 4.5 * fwhm, 6 * fwhm)
    for _ in range(max_trails):
        space, theta, rho = hough_line(votes, theta=angles)
        expected = votes.mean() * min(votes.shape)
        min_votes = max(min_votes_line * 0.5, expected + 6 * math.sqrt(max(expected, 1.0)))
        found = None
        for angle, distance in _hough_peaks(space, theta, rho, min_votes, n_peaks=6):
            # block (i, j) is centred on pixel (factor j + (factor - 1) / 2, ...)
            distance = factor * distance + (factor - 1) / 2 * (math.cos(angle) + math.sin(angle))
            refined = _refine_line(data, usable, angle, distance, fwhm, rms)
            if refined is None:
                continue
            found = _verify(data, usable, *refined, offsets, rms, fwhm, width, min_length,
                            min_significance)
            if found is not None:
                break
        if found is None:
            break
        trails = _merge_collinear(trails, found, fwhm)
        usable &= ~trail_mask(data.shape, [found])
        votes &= _bin(usable, factor) > 0.5
    return trails


def _bin(image, factor):
    """Block means of ``factor`` x ``factor`` pixels (the edge remainder dropped)."""
    if factor == 1:
        return np.asarray(image, dtype=np.float32)
    ny, nx = (n // factor * factor for n in image.shape)
    blocks = np.asarray(image[:ny, :nx], dtype=np.float32)
    return blocks.reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3))


def _robust_std(values, max_samples=100_000):
    """1.4826 times the median absolute deviation (of an even subsample when large)."""
    values = np.asarray(values).ravel()
    if len(values) > max_samples:
        values = values[::len(values) // max_samples + 1]
    if len(values) == 0:
        return math.nan
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _hough_peaks(space, theta, rho, min_votes, n_peaks=5, size=(9, 21)):
    """The strongest local maxima of a Hough accumulator above ``min_votes``.

    Returns up to ``n_peaks`` ``(theta, rho)`` pairs, strongest first; local maxima are taken
    over ``size`` (rho bins, theta bins) neighbourhoods (9 px, 10 deg).
    """
    peaks = (space == ndimage.maximum_filter(space, size=size, mode="nearest"))
    peaks &= space >= min_votes
    i_rho, i_theta = np.nonzero(peaks)
    order = np.argsort(-space[i_rho, i_theta], kind="stable")[:n_peaks]
    return [(float(theta[i_theta[k]]), float(rho[i_rho[k]])) for k in order]


def _merge_collinear(trails, new, fwhm):
    """Append ``new``, or join it to an earlier trail on the same line (a gap of noise)."""
    for k, old in enumerate(trails):
        d_old = np.array([old.x1 - old.x0, old.y1 - old.y0])
        d_new = np.array([new.x1 - new.x0, new.y1 - new.y0])
        cosine = abs(d_old @ d_new) / (np.hypot(*d_old) * np.hypot(*d_new) + 1e-12)
        unit = d_old / (np.hypot(*d_old) + 1e-12)
        offsets = [abs(unit[0] * (y - old.y0) - unit[1] * (x - old.x0))
                   for x, y in ((new.x0, new.y0), (new.x1, new.y1))]
        if cosine > math.cos(math.radians(2.0)) and max(offsets) < fwhm:
            points = np.array([[new.x0, new.y0], [new.x1, new.y1]])
            along = np.concatenate([[0.0, np.hypot(*d_old)],
                                    (points - [old.x0, old.y0]) @ unit])
            start = np.array([old.x0, old.y0])
            (x0, y0), (x1, y1) = start + along.min() * unit, start + along.max() * unit
            trails[k] = Trail(float(x0), float(y0), float(x1), float(y1), old.width,
                              math.hypot(old.significance, new.significance),
                              (old.surface_brightness + new.surface_brightness) / 2)
            return trails
    return trails + [new]


def _refine_line(data, usable, theta, rho, fwhm, rms, iterations=3):
    """Line through the trail's centre near a Hough peak.

    The Hough grid (1 deg, one block) leaves the line a few pixels off at the ends of a long
    trail, more than the trail's half width. The image is sampled across the line in pieces
    of 8 FWHM along it; where a piece's mean cross profile is significant, its centroid is the
    trail's centre there, and a straight line fitted to the centres (with 3-sigma clipping)
    replaces the Hough line. None when fewer than 3 pieces (overlapping by half) show a significant profile (not a
    trail).
    """
    ny, nx = data.shape
    length = math.hypot(nx, ny)
    piece = 8.0 * fwhm
    t = np.arange(-length, length, 0.5 * fwhm)
    u = np.arange(-2.5 * fwhm, 2.5 * fwhm + 0.25, 0.5)
    per_piece = max(2, int(round(piece / (0.5 * fwhm))))
    clean = np.where(usable, data, np.nan)
    for _ in range(iterations):
        c, s = math.cos(theta), math.sin(theta)
        x = (rho + u[None, :]) * c - t[:, None] * s
        y = (rho + u[None, :]) * s + t[:, None] * c
        xi, yi = np.rint(x).astype(int), np.rint(y).astype(int)
        inside = (xi >= 0) & (xi < nx) & (yi >= 0) & (yi < ny)
        values = np.full(x.shape, np.nan)
        values[inside] = clean[yi[inside], xi[inside]]
        # pieces of per_piece samples along the line, overlapping by half
        starts = np.arange(0, len(t) - per_piece + 1, max(1, per_piece // 2))
        blocks = np.stack([values[k:k + per_piece] for k in starts])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            profile = np.nanmean(blocks, axis=1)
            n_used = np.median(np.isfinite(blocks).sum(axis=1), axis=1)
            profile -= np.nanmedian(profile, axis=1, keepdims=True)
            peak = np.nanmax(np.where(np.isfinite(profile), profile, -np.inf), axis=1)
        noise = rms / np.sqrt(np.maximum(n_used, 1))
        strong = (n_used >= per_piece // 2) & (peak > 3.5 * noise)
        if strong.sum() < 3:
            return None
        weights = np.clip(np.nan_to_num(profile[strong]), 0.0, None)
        centre = (weights * u).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-12)
        # sharper than the PSF across (the half-maximum width of the pieces' cross profiles,
        # each moved to its centroid and averaged): a detector column or row, not light from
        # the sky
        step = u[1] - u[0]
        clear = (peak[strong] > 6 * noise[strong])
        if clear.sum() >= 3:   # pieces bright enough for a width of their own
            width = np.median([_half_width(p) for p in profile[strong][clear]])
        else:
            aligned = [np.roll(np.nan_to_num(p), -int(round(c / step)))
                       for p, c in zip(profile[strong], centre)]
            width = _half_width(np.mean(aligned, axis=0))
        if width * step < 0.6 * fwhm:
            return None
        along = (t[starts] + 0.5 * (per_piece - 1) * (t[1] - t[0]))[strong]
        keep = np.ones(len(centre), dtype=bool)
        for _ in range(3):
            slope, offset = np.polyfit(along[keep], centre[keep], 1)
            residual = centre - (offset + slope * along)
            scatter = 1.4826 * np.median(np.abs(residual[keep])) + 1e-3
            keep = np.abs(residual) < 3 * scatter
        # the fitted centre line, back in (theta, rho) form
        angle = math.atan(slope)
        theta, rho = theta - angle, (rho + offset) * math.cos(angle)
    return theta, rho


def _half_width(profile):
    """Samples in the run above half the maximum that contains the maximum."""
    values = np.nan_to_num(profile, nan=-np.inf)
    peak = int(np.argmax(values))
    above = values > 0.5 * values[peak]
    left = peak
    while left > 0 and above[left - 1]:
        left -= 1
    right = peak
    while right < len(values) - 1 and above[right + 1]:
        right += 1
    return right - left + 1


def _verify(data, usable, theta, rho, offsets, rms, fwhm, width, min_length,
            min_significance):
    """The significant segment of a candidate line, or None."""
    t, rows = _line_profile(data, usable, theta, rho, offsets=offsets)
    centre = len(offsets) // 2
    # the line's excess: the centre strip (3 samples one pixel apart) minus the side strips
    strip = [_line_profile(data, usable, theta, rho + d, offsets=(0.0,))[1][0]
             for d in (-1.0, 0.0, 1.0)]
    values = np.stack([v for v, _ in strip])
    valid = np.stack([m for _, m in strip])
    centre_mean = np.where(valid.any(axis=0),
                           (values * valid).sum(axis=0) / np.maximum(valid.sum(axis=0), 1),
                           np.nan)
    sides = np.stack([np.where(m, v, np.nan) for i, (v, m) in enumerate(rows) if i != centre])
    with warnings.catch_warnings():  # all-NaN columns (outside the frame) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        side = np.nanmedian(sides, axis=0)
    excess = centre_mean - np.where(np.isfinite(side), side, 0.0)
    ok = np.isfinite(excess) & valid.any(axis=0)
    if ok.sum() < min_length:
        return None
    # the segment: where a running mean over ~2 min_length samples stays significant
    window = int(max(min_length // 2, 10))
    filled = np.where(ok, excess, 0.0)
    counts = np.convolve(ok.astype(float), np.ones(window), mode="same")
    run = np.convolve(filled, np.ones(window), mode="same") / np.maximum(counts, 1)
    noise = rms / math.sqrt(3) * math.sqrt(1 + 1 / (len(offsets) - 1))
    run_sig = run / (noise / np.sqrt(np.maximum(counts, 1)))
    on = ok & (run_sig > 3.0) & (counts >= window / 2)
    if not on.any():
        return None
    # masked stretches (stars, defects) and short quiet gaps (noise on a faint trail) do not
    # break a trail: only a quiet stretch longer than the running window does
    joined = ndimage.binary_closing(on | ~ok, structure=np.ones(window, dtype=bool))
    labels, n = ndimage.label(joined | on)
    sizes = ndimage.sum(on, labels, index=np.arange(1, n + 1))
    best = int(np.argmax(sizes)) + 1
    index = np.flatnonzero((labels == best) & on)
    seg = slice(index[0], index[-1] + 1)
    samples = excess[seg][ok[seg]]
    if len(samples) < min_length:
        return None
    # the median along the segment: a trail is uniform, the wing of a star is one bump
    significance = float(np.median(samples) / (1.2533 * noise / math.sqrt(len(samples))))
    if significance < min_significance:
        return None
    c, s = math.cos(theta), math.sin(theta)
    ny, nx = data.shape
    x_t, y_t = rho * c - t * s, rho * s + t * c
    inside = np.flatnonzero((x_t >= -0.5) & (x_t <= nx - 0.5) & (y_t >= -0.5)
                            & (y_t <= ny - 0.5))
    t0 = max(t[index[0]] - window / 2, t[inside[0]])
    t1 = min(t[index[-1]] + window / 2, t[inside[-1]])
    (x0, y0), (x1, y1) = [(rho * c - tt * s, rho * s + tt * c) for tt in (t0, t1)]
    return Trail(float(x0), float(y0), float(x1), float(y1), float(width), significance,
                 float(samples.mean()))
