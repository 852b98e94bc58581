"""Detector defects found from the science frames themselves: no dark or flat needed.

A defect stays at the same detector pixel while the stars drift across the detector. A sample of
(by default 30, evenly spaced in time) calibrated, background-subtracted frames of one camera is
therefore combined **in detector coordinates** (never aligned), robustly, and the combination is
searched for features sharper than any star:

1. **Combination** (:class:`DefectAccumulator`). The frames of the night are cut into
   ``n_blocks`` consecutive time blocks; each block keeps the running sum of its frames' excess
   rates ``(calibrated - background) / exposure`` (e-/s/pixel), and the combination is the
   per-pixel median of the block means. A drifting star, a cosmic ray or a satellite trail
   touches a pixel in a minority of the blocks and is rejected by the median; a defect is in
   every block. Memory: ``n_blocks`` float32 images, whatever the number of frames
   (7 x 16 MB at 2048 x 2048). Accumulators of several workers are merged by adding their
   blocks, so the result does not depend on how frames were shared out.
2. **Bad columns and rows** (:func:`find_defects`). Each pixel is compared with the median of
   the six pixels beside it in its row (``x +- 1, 2, 3``); the medians of that difference over
   segments of ``segment`` pixels along each column are thresholded at ``nsigma`` times their
   robust (MAD) scatter over the whole image. A segment counts only when the column stands out
   from the local level (:func:`~opticam_like.calibration.masks.local_median` of the
   combination) by no more than twice its difference from its neighbours (a star's wings
   stand out much more), when that difference is at least twice its pixel noise and its
   robust scatter along the segment at most three times that noise: a bad column is even
   along its length, while stars that stay on a column on a night without drift make it
   peak and fall. Runs of flagged segments are whole or partial columns; the ends of a
   partial column are placed at the most likely change point of its pixel values (the split
   that maximises the likelihood of a step between the background and the column's level).
   Rows: the same on the transposed image.
3. **Pixels.** Fixed column and row offsets (bias structure) are removed (median over each
   line), then for every pixel outside the bad lines its excess ``e`` over the interquartile
   mean of its 8 neighbours (the 4 middle values, so that up to two neighbouring defects do
   not hide it) is compared with ``nsigma`` times the local robust scatter of ``e`` (MAD in
   ``box_size`` boxes). A star cannot be as sharp as a defect: for a pixel-integrated circular
   Gaussian of FWHM ``min_fwhm`` (1.5 px by default) the brightest pixel is at most ``R``
   times that mean (``R = 4.38`` at 1.5 px, computed by :func:`star_sharpness_limit`
   over all sub-pixel centres; broader or Moffat profiles give less), so a star has
   ``e <= (1 - 1/R) v`` where ``v`` is the pixel's excess over the local level. A pixel is a
   defect when ``|e|`` and ``|v|`` both exceed ``nsigma * sigma_e``, ``e`` and ``v`` have the
   same sign and ``|e| > (1 - 1/R) |v|`` (a pixel on the steep edge of a star is below its
   neighbours but not below the local level). Positive defects are **hot** (excess >=
   ``hot_rate`` e-/s) or **warm**; negative ones are **dead** (or cold) pixels. On a night
   without drift a star stays in the combination and is rejected by this test alone; a
   defect on such a star is found only when it is sharper than the star.

The combination of a night with frames of ``sigma`` e- of sky noise per pixel has a noise of
about ``1.25 sigma / sqrt(n_sample)``, so warm pixels are found down to about ``nsigma`` times
that (the map records the measured value in ``meta['detection_limit']``, e-/s).

Maps are written as FITS files into a cache directory (like the master frames of
:mod:`~opticam_like.calibration.masters`) with a fingerprint of the sampled frames (path, size,
modification time), the calibration, the background estimator, the instrument profile, the
options and the software version: an unchanged fingerprint reuses the file.

References
----------
The sharpness test follows the idea of the ``sharpness`` statistic of DAOFIND (Stetson 1987,
PASP 99, 191), which rejects hot pixels because no star is that sharp; here the limit is
computed for the smallest FWHM to be rejected. The ends of partial lines use the maximum
likelihood change point of a step (Hinkley 1970, Biometrika 57, 1). The combination (median
of time-block means, in detector coordinates) is our own.
"""

from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
import functools
import hashlib
import json
import math
import os
from pathlib import Path
import re
import warnings

import numpy as np
from astropy.io import fits
from astropy.table import Table
from scipy.ndimage import median_filter
from scipy.special import erf

from .. import __version__
from ..detection import FWHM_PER_SIGMA
from ..flags import PhotFlag
from ..frames import FrameError
from ..outputs import atomic_path
from ..parallel import FrameFailure
from .masks import local_median
from .masters import _file_name, format_key, master_key

__all__ = ["DEFECT_KINDS", "DefectOptions", "DefectAccumulator", "DefectMap", "DefectBits",
           "find_defects",
           "accumulate_defects", "build_defect_maps", "defect_key", "sample_indices",
           "star_sharpness_limit", "read_defect_flags", "defects_fingerprint"]

#: Kinds of the rows of :attr:`DefectMap.table`.
DEFECT_KINDS = ("hot", "warm", "dead", "hot_column", "dead_column", "hot_row", "dead_row")

_ROW_OFFSETS = ((0, -3), (0, -2), (0, -1), (0, 1), (0, 2), (0, 3))
_EIGHT = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
_MAD_TO_SIGMA = 1.4826
_LINE_SHARPNESS = 0.5   # a bad column's difference from its neighbours is >= half its excess
_LINE_CONTRAST = 2.0    # ... and >= twice the pixel noise of that difference
_LINE_SMOOTHNESS = 3.0  # ... and scatters along the line by <= 3 times that noise
_CHUNK_VALUES = 1 << 22  # values per temporary stack of neighbours (16 MB of float32)


class DefectBits:
    """Bits of the FITS image of a :class:`DefectMap` (one ``uint8`` per pixel)."""

    HOT = 1
    WARM = 2
    DEAD = 4
    COLUMN = 8
    ROW = 16


@dataclass(frozen=True)
class DefectOptions:
    """Options of the defect search (all part of the cache fingerprint).

    Parameters
    ----------
    n_sample : int
        Frames combined per camera, evenly spaced in time over the night (default 30; every
        frame when the night has fewer).
    n_blocks : int
        Time blocks whose means are median-combined (default 7, at most ``n_sample``; at least
        3 are needed). More blocks reject stars on slowly drifting nights better and cost one
        image of memory each.
    nsigma : float
        Detection threshold in robust standard deviations (default 5).
    min_fwhm : float
        Smallest stellar FWHM (pixels, along the narrowest axis) the sharpness test must reject
        (default 1.5).
    hot_rate : float
        Excess rate (e-/s) from which a positive defect is ``hot`` rather than ``warm``
        (default 50; the split is a convention, both are masked).
    segment : int
        Length (pixels) of the column and row segments tested for bad lines (default 32).
    box_size : int
        Box (pixels) of the local level and of the local noise (default 32).

    Raises
    ------
    ValueError
        An option out of range.
    """

    n_sample: int = 30
    n_blocks: int = 7
    nsigma: float = 5.0
    min_fwhm: float = 1.5
    hot_rate: float = 50.0
    segment: int = 32
    box_size: int = 32

    def __post_init__(self):
        checks = {"n_sample": self.n_sample >= 3, "n_blocks": self.n_blocks >= 3,
                  "nsigma": self.nsigma > 0, "min_fwhm": self.min_fwhm > 0,
                  "hot_rate": self.hot_rate > 0, "segment": self.segment >= 4,
                  "box_size": self.box_size >= 4}
        for name, good in checks.items():
            if not good:
                raise ValueError(f"DefectOptions.{name} out of range: {getattr(self, name)!r}")


def sample_indices(n_frames, n_sample):
    """Indices of ``n_sample`` frames evenly spaced over ``n_frames`` (all when fewer).

    Returns
    -------
    ndarray of int
        Sorted, unique, first and last frame included.
    """
    if n_frames <= n_sample:
        return np.arange(n_frames)
    return np.unique(np.round(np.linspace(0, n_frames - 1, n_sample)).astype(int))


def defect_key(info):
    """Key of a frame's defect map: ``(camera, binning)``, as a master dark."""
    return master_key("dark", info)


class DefectAccumulator:
    """Bounded-memory robust combination of frames in detector coordinates.

    Frame ``index`` (0-based position in the time-ordered night of ``n_frames`` frames) goes
    into time block ``index * n_blocks // n_frames``; each block keeps the sum of its frames
    and their number. :meth:`combined` is the per-pixel median of the block means.

    Parameters
    ----------
    n_frames : int
        Frames of the night (the whole night, not the sample), which fixes the blocks.
    n_blocks : int
        Number of time blocks (memory: that many float32 images).

    Notes
    -----
    The arrays are allocated at the first :meth:`add` (the frame shape after trimming is
    known only then) and never grow. Non-finite pixels count as 0 (the background level).
    Instances pickle (they travel back from worker processes) and :meth:`merge` adds another
    accumulator's blocks, so any split of the frames between workers gives the same result.
    """

    def __init__(self, n_frames, n_blocks=7):
        if int(n_frames) < 1 or int(n_blocks) < 1:
            raise ValueError(f"need n_frames >= 1 and n_blocks >= 1, got {n_frames}, "
                             f"{n_blocks}")
        self.n_frames = int(n_frames)
        self.n_blocks = min(int(n_blocks), self.n_frames)
        self.shape = None
        self._sums = None
        self.counts = np.zeros(self.n_blocks, dtype=np.int64)

    def block(self, index):
        """Time block of frame ``index``."""
        if not 0 <= index < self.n_frames:
            raise ValueError(f"frame index {index} outside the night of {self.n_frames} frames")
        return int(index) * self.n_blocks // self.n_frames

    def _allocate(self, shape):
        self.shape = tuple(int(n) for n in shape)
        self._sums = np.zeros((self.n_blocks,) + self.shape, dtype=np.float32)

    def add(self, data, index, exposure=1.0):
        """Add one frame.

        Parameters
        ----------
        data : ndarray, shape (ny, nx)
            Calibrated, background-subtracted frame (e-).
        index : int
            Position of the frame in the night.
        exposure : float
            Exposure time (s); the frame is added as a rate, ``data / exposure``.

        Raises
        ------
        ValueError
            A shape different from the earlier frames', an index outside the night, or a
            non-positive exposure.
        """
        data = np.asarray(data)
        if not exposure > 0:
            raise ValueError(f"exposure must be positive, got {exposure}")
        if self.shape is None:
            self._allocate(data.shape)
        elif data.shape != self.shape:
            raise ValueError(f"frame shape {data.shape} differs from the accumulator's "
                             f"{self.shape}")
        block = self.block(index)
        rate = np.multiply(data, np.float32(1.0 / exposure), dtype=np.float32)
        np.add(self._sums[block], rate, out=self._sums[block], where=np.isfinite(rate))
        self.counts[block] += 1

    def merge(self, other):
        """Add the frames of another accumulator of the same night.

        Raises
        ------
        ValueError
            Different nights (``n_frames``, ``n_blocks``) or frame shapes.
        """
        if (other.n_frames, other.n_blocks) != (self.n_frames, self.n_blocks):
            raise ValueError(f"cannot merge an accumulator of {other.n_frames} frames in "
                             f"{other.n_blocks} blocks into one of {self.n_frames} in "
                             f"{self.n_blocks}")
        if other.shape is None:
            return
        if self.shape is None:
            self._allocate(other.shape)
        elif other.shape != self.shape:
            raise ValueError(f"cannot merge frames of shape {other.shape} into {self.shape}")
        self._sums += other._sums
        self.counts += other.counts

    @property
    def n_added(self):
        """Number of frames added."""
        return int(self.counts.sum())

    @property
    def nbytes(self):
        """Bytes held by the accumulator's arrays."""
        return self.counts.nbytes + (0 if self._sums is None else self._sums.nbytes)

    def steady(self, mask, fraction=0.3):
        """Which of the pixels in ``mask`` stand out in (almost) every time block.

        A defect is fixed on the detector: its excess over its four side neighbours is there
        in every block with the same sign. What is left of a drifting star in the median of
        the blocks is not: the star crossed the pixel in some blocks only.

        Parameters
        ----------
        mask : ndarray of bool, shape ``shape``
            Candidate pixels.
        fraction : float
            Smallest excess, as a fraction of the excess in the combination, counted in a
            block.

        Returns
        -------
        ndarray of bool, shape ``shape``
            ``mask`` less the pixels that stand out in fewer than all but one of the blocks.
        """
        used = np.flatnonzero(self.counts)
        means = self._sums[used] / self.counts[used][:, None, None].astype(np.float32)
        ny, nx = self.shape
        keep = np.zeros(self.shape, dtype=bool)
        for y, x in zip(*np.nonzero(mask)):
            sides = [means[:, yy, xx] for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1),
                                                     (y, x + 1)) if 0 <= yy < ny and 0 <= xx < nx]
            excess = means[:, y, x] - np.median(np.stack(sides), axis=0)
            total = np.median(excess)
            agree = (np.sign(excess) == np.sign(total)) & (np.abs(excess) >= fraction
                                                           * np.abs(total))
            keep[y, x] = agree.sum() >= len(used) - 1
        return keep

    def combined(self):
        """Per-pixel median of the means of the blocks that received frames.

        Returns
        -------
        ndarray, shape (ny, nx), float32
            Excess rate over the background (e-/s/pixel).

        Raises
        ------
        ValueError
            Fewer than 3 blocks received frames: a median of fewer values does not reject
            cosmic rays.
        """
        used = np.flatnonzero(self.counts)
        if len(used) < 3:
            raise ValueError(f"{self.n_added} frame(s) in {len(used)} time block(s): a defect "
                             "map needs frames in at least 3 blocks")
        scale = (1.0 / self.counts[used]).astype(np.float32)[:, None, None]
        result = np.empty(self.shape, dtype=np.float32)
        rows = max(1, _CHUNK_VALUES // (len(used) * self.shape[1]))
        for y0 in range(0, self.shape[0], rows):
            means = self._sums[used, y0:y0 + rows] * scale
            result[y0:y0 + rows] = np.median(means, axis=0)
        return result


def star_sharpness_limit(fwhm):
    """Largest ratio of a star's brightest pixel to the interquartile mean of its 8 neighbours.

    The interquartile mean is that of the 4 middle values of the 8 neighbours (so that up to
    two neighbouring defects do not hide a defect). The star is a circular Gaussian of FWHM
    ``fwhm`` integrated over square pixels; the ratio is maximised over the sub-pixel position
    of its centre. A profile with broader wings (Moffat) or a larger FWHM gives a smaller
    ratio.

    Parameters
    ----------
    fwhm : float
        FWHM in pixels.

    Returns
    -------
    float
        4.38 at 1.5 px, 2.49 at 2 px, 1.55 at 3 px.
    """
    sigma = fwhm / FWHM_PER_SIGMA
    offsets = np.linspace(0.0, 0.5, 21)
    edges = np.array([-1.5, -0.5, 0.5, 1.5])
    profile = np.diff(erf((edges[None, :] - offsets[:, None]) / (math.sqrt(2) * sigma)),
                      axis=1) / 2
    best = 0.0
    for fy in profile:
        for fx in profile:
            pixels = np.outer(fy, fx).ravel()
            neighbours = np.sort(np.delete(pixels, 4))
            best = max(best, pixels[4] / neighbours[2:6].mean())
    return float(best)


def _nanmedian_first_axis(stack):
    """Median over the first axis ignoring NaN (NaN where all are), by one sort: much faster
    than ``np.nanmedian`` along a short first axis."""
    stack = np.sort(stack, axis=0)  # NaN last
    n = np.isfinite(stack).sum(axis=0)
    low = np.take_along_axis(stack, np.maximum((n - 1) // 2, 0)[None], 0)[0]
    high = np.take_along_axis(stack, np.minimum(n // 2, len(stack) - 1)[None], 0)[0]
    median = 0.5 * (low + high)
    median[n == 0] = np.nan
    return median


def _neighbour_statistic(image, offsets, statistic):
    """Per-pixel statistic of the finite values at ``(dy, dx)`` offsets (none outside the
    image): their ``'median'``, or their ``'interquartile'`` mean (of the ``n - 2 (n // 4)``
    middle values: the 4 middle ones of 8). NaN without any value."""
    ny, nx = image.shape
    pad = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    padded = np.pad(image.astype(np.float32, copy=False), pad, constant_values=np.nan)
    result = np.empty((ny, nx), dtype=np.float32)
    rows = max(1, _CHUNK_VALUES // (len(offsets) * nx))
    for y0 in range(0, ny, rows):
        y1 = min(ny, y0 + rows)
        stack = np.stack([padded[pad + y0 + dy:pad + y1 + dy, pad + dx:pad + dx + nx]
                          for dy, dx in offsets])
        if statistic == "median":
            result[y0:y1] = _nanmedian_first_axis(stack)
            continue
        stack.sort(axis=0)  # NaN last
        n = np.isfinite(stack).sum(axis=0)
        cut = n // 4
        total = np.concatenate([np.zeros((1,) + n.shape, np.float32),
                                np.cumsum(np.nan_to_num(stack), axis=0)])
        upper = np.take_along_axis(total, (n - cut)[None], 0)[0]
        lower = np.take_along_axis(total, cut[None], 0)[0]
        with np.errstate(invalid="ignore", divide="ignore"):
            value = (upper - lower) / (n - 2 * cut)
        value[n == 0] = np.nan
        result[y0:y1] = value
    return result


def _robust_sigma(values):
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan
    return _MAD_TO_SIGMA * float(np.median(np.abs(values - np.median(values))))


def _segment_edges(n, segment):
    return np.linspace(0, n, max(1, round(n / segment)) + 1).astype(int)


def _segment_medians(image, edges):
    return np.stack([_nanmedian_first_axis(image[a:b]) for a, b in zip(edges[:-1], edges[1:])])


def _runs(flags):
    """(start, stop) index pairs (stop exclusive) of runs of True; single gaps are filled."""
    filled = flags.copy()
    filled[1:-1] |= flags[:-2] & flags[2:]
    changes = np.flatnonzero(np.diff(np.concatenate([[0], filled.astype(np.int8), [0]])))
    return list(zip(changes[::2], changes[1::2]))


def _change_point(values, level, rising):
    """Index where a step between 0 and ``level`` most likely happens in ``values``.

    For a rising step (0 then ``level``) the start of the high part, for a falling step the
    index after the last high value; Gaussian noise of equal variance (Hinkley 1970).
    """
    gain = np.nan_to_num(np.sign(level) * (values - level / 2))
    if rising:
        score = np.cumsum(gain[::-1])[::-1]
        return int(np.argmax(score))
    score = np.cumsum(gain)
    return int(np.argmax(score)) + 1


def _local_sigma(values, window):
    """Robust standard deviation of ``values`` (segments x lines) over a sliding window of 3
    segments and ``window`` lines (MAD about the overall median)."""
    deviation = np.abs(values - np.nanmedian(values))
    deviation[~np.isfinite(deviation)] = np.nanmedian(deviation)
    return _MAD_TO_SIGMA * median_filter(deviation, size=(3, window), mode="mirror")


def _line_defects(combined, level, nsigma, segment, window):
    """Bad columns of ``combined`` (rows: call with the transposes).

    Returns
    -------
    list of (x, y0, y1, sign, excess, significance)
        ``y1`` exclusive; ``sign`` +1 hot, -1 dead.
    ndarray of bool
        Their pixels.
    """
    ny, nx = combined.shape
    difference = combined - _neighbour_statistic(combined, _ROW_OFFSETS, "median")
    excess = combined - level
    edges = _segment_edges(ny, segment)
    seg_difference = _segment_medians(difference, edges)
    seg_excess = _segment_medians(excess, edges)
    sigma = _local_sigma(seg_difference, window)
    pixel_sigma = _robust_sigma(difference)
    spread = _MAD_TO_SIGMA * np.stack([
        _nanmedian_first_axis(np.abs(difference[a:b] - seg_difference[j]))
        for j, (a, b) in enumerate(zip(edges[:-1], edges[1:]))])
    lines, mask = [], np.zeros((ny, nx), dtype=bool)
    with np.errstate(invalid="ignore"):
        flagged = ((np.abs(seg_difference) > np.maximum(nsigma * sigma,
                                                        _LINE_CONTRAST * pixel_sigma))
                   & (seg_difference * seg_excess > 0)
                   & (np.abs(seg_difference) >= _LINE_SHARPNESS * np.abs(seg_excess))
                   & (spread <= _LINE_SMOOTHNESS * pixel_sigma))
    sign = np.sign(seg_difference)
    for x in np.flatnonzero(flagged.any(axis=0)):
        for polarity in (1.0, -1.0):
            for first, last in _runs(flagged[:, x] & (sign[:, x] == polarity)):
                run = slice(edges[first], edges[last])
                value = float(np.nanmedian(difference[run, x]))
                start, stop = edges[first], edges[last]
                if first > 0:
                    lo = edges[first - 1]
                    start = lo + _change_point(difference[lo:edges[first + 1], x], value, True)
                if last < len(edges) - 1:
                    lo = edges[last - 1]
                    stop = lo + _change_point(difference[lo:edges[min(last + 1, len(edges) - 1)],
                                                         x], value, False)
                if stop <= start:
                    continue
                lines.append((int(x), int(start), int(stop), polarity, value,
                              float(np.median(np.abs(seg_difference[first:last, x])
                                              / sigma[first:last, x]))))
                mask[start:stop, x] = True
    return lines, mask


def _fill_lines(image, columns, rows):
    """``image`` with the pixels of bad columns (rows) replaced by the mean of their left and
    right (lower and upper) neighbours that are not on a bad line, so that the pixels beside
    a bad line keep 8 neighbours and a star across the line keeps its profile; NaN where no
    such neighbour exists."""
    clean = np.where(columns | rows, np.nan, image)
    padded = np.pad(clean, 1, constant_values=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no neighbour: NaN
        across = {"columns": np.nanmean([padded[1:-1, :-2], padded[1:-1, 2:]], axis=0),
                  "rows": np.nanmean([padded[:-2, 1:-1], padded[2:, 1:-1]], axis=0)}
    clean[columns] = across["columns"][columns]
    only_rows = rows & ~columns
    clean[only_rows] = across["rows"][only_rows]
    return clean


@dataclass
class DefectMap:
    """Defects of one detector.

    Attributes
    ----------
    hot, warm, dead : ndarray of bool, shape (ny, nx)
        Single hot, warm and dead (or cold) pixels, outside bad columns and rows.
    columns, rows : ndarray of bool, shape (ny, nx)
        Pixels of bad (hot or dead, whole or partial) columns and rows.
    table : astropy.table.Table
        One row per defect: ``kind`` (one of :data:`DEFECT_KINDS`), ``x0, x1, y0, y1``
        (inclusive pixel ranges; ``x0 == x1`` for a column, one pixel for pixel defects),
        ``n_pixels``, ``excess`` (e-/s/pixel over the neighbours' median; negative for dead
        pixels) and ``significance`` (excess over its robust standard deviation).
    combined : ndarray, shape (ny, nx), float32, optional
        The combination the defects were found in (e-/s/pixel over the background).
    meta : dict
        ``n_frames`` (combined), ``n_blocks``, ``noise`` (median robust standard deviation of
        the pixel excess, e-/s), ``detection_limit`` (``nsigma * noise``, e-/s),
        ``star_ratio`` (see :func:`star_sharpness_limit`), the options, and when cached the
        ``key`` and ``fingerprint``.
    """

    hot: np.ndarray
    warm: np.ndarray
    dead: np.ndarray
    columns: np.ndarray
    rows: np.ndarray
    table: Table
    combined: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def shape(self):
        """Image shape ``(ny, nx)``."""
        return self.hot.shape

    @property
    def mask(self):
        """ndarray of bool, shape (ny, nx): every defect pixel."""
        return self.hot | self.warm | self.dead | self.columns | self.rows

    def bits(self):
        """ndarray of uint8, shape (ny, nx): the :class:`DefectBits` of every pixel."""
        bits = np.zeros(self.shape, dtype=np.uint8)
        for name in ("hot", "warm", "dead", "columns", "rows"):
            bit = getattr(DefectBits, {"columns": "COLUMN", "rows": "ROW"}.get(name,
                                                                               name.upper()))
            bits[getattr(self, name)] |= np.uint8(bit)
        return bits

    def write(self, path):
        """Write the map as FITS (atomically).

        The primary HDU is the ``uint8`` image of :class:`DefectBits` with the options and
        metadata in the header (``DEFECTS = 'MAP'``, ``OLHASH`` the fingerprint); extension
        ``COMBINED`` holds the combination (when known) and ``DEFECTS`` the table.
        """
        header = fits.Header()
        header["DEFECTS"] = ("MAP", "opticam_like detector defect map")
        for bit in ("HOT", "WARM", "DEAD", "COLUMN", "ROW"):
            header[f"BIT{bit}"[:8]] = (getattr(DefectBits, bit), f"bit of {bit.lower()} pixels")
        header["SOFTVER"] = (__version__, "opticam_like version")
        header["DATE"] = (datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          "build date")
        header["METAJSON"] = json.dumps(self.meta, sort_keys=True)
        if "fingerprint" in self.meta:
            header["OLHASH"] = self.meta["fingerprint"]
        hdus = [fits.PrimaryHDU(self.bits(), header)]
        if self.combined is not None:
            hdus.append(fits.ImageHDU(self.combined.astype(np.float32, copy=False),
                                      name="COMBINED"))
        table = fits.table_to_hdu(self.table)
        table.name = "DEFECTS"
        hdus.append(table)
        with atomic_path(path) as temporary:
            fits.HDUList(hdus).writeto(temporary)

    @classmethod
    def read(cls, path):
        """Read a map written by :meth:`write`.

        Raises
        ------
        ValueError
            The file is not a defect map.
        """
        with fits.open(path) as hdulist:
            header = hdulist[0].header
            if str(header.get("DEFECTS", "")).strip() != "MAP":
                raise ValueError(f"{path}: not a defect map (no DEFECTS = 'MAP' keyword)")
            bits = np.asarray(hdulist[0].data)
            combined = (np.asarray(hdulist["COMBINED"].data, dtype=np.float32)
                        if "COMBINED" in hdulist else None)
            table = Table.read(hdulist["DEFECTS"], character_as_bytes=False)
            meta = json.loads(header.get("METAJSON", "{}"))
        masks = {name: (bits & np.uint8(getattr(DefectBits, bit))) != 0
                 for name, bit in (("hot", "HOT"), ("warm", "WARM"), ("dead", "DEAD"),
                                   ("columns", "COLUMN"), ("rows", "ROW"))}
        return cls(table=table, combined=combined, meta=meta, **masks)


def find_defects(combined, options=None, n_frames=0):
    """Find hot, warm and dead pixels and bad columns and rows in a combination.

    Parameters
    ----------
    combined : ndarray, shape (ny, nx)
        Robust combination in detector coordinates of background-subtracted frames (e-/s),
        e.g. :meth:`DefectAccumulator.combined`; NaN where no frame had data.
    options : DefectOptions, optional
        Thresholds (``nsigma``, ``min_fwhm``, ``hot_rate``, ``segment``, ``box_size``).
    n_frames : int
        Number of frames combined (recorded in ``meta``).

    Returns
    -------
    DefectMap

    Notes
    -----
    The algorithm is described in the module docstring. Cost: 0.8 s at 512 x 512, 6-9 s at
    2048 x 2048 (once per camera and night).
    """
    options = options or DefectOptions()
    image = np.asarray(combined, dtype=np.float32)
    ny, nx = image.shape
    level = local_median(image, options.box_size)
    lines = {}
    line_masks = {}
    window = 2 * options.box_size + 1
    columns, line_masks["columns"] = _line_defects(image, level, options.nsigma,
                                                   options.segment, window)
    rows, row_mask = _line_defects(image.T, level.T, options.nsigma, options.segment, window)
    line_masks["rows"] = np.ascontiguousarray(row_mask.T)
    lines["column"], lines["row"] = columns, rows

    on_line = line_masks["columns"] | line_masks["rows"]
    clean = _fill_lines(image, line_masks["columns"], line_masks["rows"])
    level = local_median(np.where(on_line, np.nan, clean), options.box_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN lines
        clean -= np.nan_to_num(np.nanmedian(clean - level, axis=0))[None, :]
        clean -= np.nan_to_num(np.nanmedian(clean - level, axis=1))[:, None]
    sharp = clean - _neighbour_statistic(clean, _EIGHT, "interquartile")
    sharp[on_line] = np.nan
    excess = clean - level
    sigma = _MAD_TO_SIGMA * local_median(np.abs(sharp), options.box_size)
    ratio = star_sharpness_limit(options.min_fwhm)
    with np.errstate(invalid="ignore"):
        defect = ((np.abs(sharp) > options.nsigma * sigma) & (sharp * excess > 0)
                  & (np.abs(excess) > options.nsigma * sigma)
                  & (np.abs(sharp) > (1 - 1 / ratio) * np.abs(excess)))
        positive = defect & (sharp > 0)
        hot = positive & (sharp >= options.hot_rate)
    masks = {"hot": hot, "warm": positive & ~hot, "dead": defect & (sharp < 0)}

    records = []
    for kind in ("hot", "warm", "dead"):
        y, x = np.nonzero(masks[kind])
        for xi, yi in zip(x, y):
            records.append((kind, xi, xi, yi, yi, 1, float(sharp[yi, xi]),
                            float(abs(sharp[yi, xi]) / sigma[yi, xi])))
    for name, found in lines.items():
        for index, start, stop, polarity, value, significance in found:
            kind = f"{'hot' if polarity > 0 else 'dead'}_{name}"
            if name == "column":
                records.append((kind, index, index, start, stop - 1, stop - start, value,
                                significance))
            else:
                records.append((kind, start, stop - 1, index, index, stop - start, value,
                                significance))
    names = ("kind", "x0", "x1", "y0", "y1", "n_pixels", "excess", "significance")
    table = Table(rows=records or None, names=names,
                  dtype=("U11", int, int, int, int, int, float, float))
    noise = float(np.nanmedian(sigma)) if np.isfinite(sigma).any() else math.nan
    meta = {"n_frames": int(n_frames), "noise": noise,
            "detection_limit": options.nsigma * noise, "star_ratio": ratio,
            "options": asdict(options)}
    return DefectMap(combined=image, table=table, meta=meta, **masks, **line_masks)


def accumulate_defects(item, ctx, timer, accumulator):
    """Per-frame work of the defect pass: read, calibrate, subtract the background, add.

    Parameters
    ----------
    item : opticam_like.stages.FrameItem
        The frame; ``item.index`` is its position in the time-ordered frames of its camera.
    ctx : opticam_like.stages.PassContext
        ``profile``, ``calibration`` and ``background`` are used (cosmic-ray removal is not
        needed: the median rejects hits).
    timer : opticam_like.parallel.StepTimer
    accumulator : DefectAccumulator

    Returns
    -------
    int
        ``item.index``.

    Raises
    ------
    FrameError
        Unreadable frame or a non-positive exposure time.
    """
    from ..stages import prepare_frame  # stages imports this package: import at call time

    calibrated, _, data = prepare_frame(item, ctx, timer)
    timer.step("defects")
    exposure = calibrated.info.exposure
    if not exposure > 0:
        raise FrameError(item.path, f"exposure time {exposure} s: a defect map combines rates")
    accumulator.add(data, item.index, exposure)
    return item.index


def _stable_repr(obj):
    """A description of ``obj`` that does not change between processes (no addresses)."""
    if callable(obj) and hasattr(obj, "__qualname__"):
        return f"{getattr(obj, '__module__', '')}.{obj.__qualname__}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))


def _calibration_items(calibration):
    if calibration is None:
        return None
    items = {}
    for item in fields(calibration):
        value = getattr(calibration, item.name)
        if item.name == "defects":
            continue
        if isinstance(value, dict) and item.name in ("bias", "dark", "flat"):
            entries = []
            for key, path in sorted(value.items()):
                stat = os.stat(path)
                entries.append([list(key), str(path), stat.st_size, stat.st_mtime_ns])
            value = entries
        items[item.name] = _stable_repr(value) if not isinstance(value, list) else value
    return items


def defects_fingerprint(key, infos, context, options):
    """Fingerprint of a defect map: what it is built from.

    Parameters
    ----------
    key : tuple of str
        ``(camera, binning)``.
    infos : sequence of FrameInfo
        The sampled frames (path, size and modification time enter the fingerprint).
    context : PassContext
        Its profile, calibration (masters with sizes and modification times, options) and
        background estimator enter the fingerprint.
    options : DefectOptions

    Returns
    -------
    str
        SHA-256 hex digest.
    """
    frames = []
    for info in infos:
        stat = os.stat(info.path)
        frames.append([str(Path(info.path).resolve()), stat.st_size, stat.st_mtime_ns])
    payload = {"kind": "defects", "key": list(key), "frames": frames,
               "calibration": _calibration_items(context.calibration),
               "background": _stable_repr(context.background),
               "profile": repr(context.profile), "options": asdict(options),
               "version": __version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class _AccumulatorFactory:
    """Picklable factory of the per-task accumulators of one camera."""

    def __init__(self, n_frames, n_blocks):
        self.n_frames, self.n_blocks = n_frames, n_blocks

    def __call__(self):
        return DefectAccumulator(self.n_frames, self.n_blocks)


def build_defect_maps(infos, context, pool, *, cache_directory, options=None, log=None):
    """Build (or reuse) the defect map of every camera of a night.

    Parameters
    ----------
    infos : iterable of FrameInfo
        Every science frame of the night (any cameras and filters); they are grouped by
        :func:`defect_key` and sorted by time, and ``options.n_sample`` evenly spaced frames of
        each camera are combined.
    context : opticam_like.stages.PassContext
        Profile, calibration (masters, without the defect maps being built) and background
        estimator of the reduction; cosmic-ray removal is switched off for this pass.
    pool : opticam_like.parallel.WorkerPool
        Runs :func:`accumulate_defects` over the sample.
    cache_directory : str or Path
        Where the maps are written (``defects_{camera}_{binning}.fits``) and reused when
        their fingerprint (:func:`defects_fingerprint`) is unchanged.
    options : DefectOptions, optional
    log : logging.Logger, optional
        Receives one line per camera (reused or built, number of defects).

    Returns
    -------
    maps : dict of tuple to str
        Path of the map of every ``(camera, binning)`` key that could be built.
    failures : list of FrameFailure
        Frames the pass could not use; a camera with too few usable frames has no map and
        is listed with stage ``'defects'``.
    """
    from ..stages import FrameItem  # stages imports this package: import at call time

    options = options or DefectOptions()
    context = replace(context, remove_cosmic_rays=False)
    cache = Path(cache_directory)
    cache.mkdir(parents=True, exist_ok=True)
    groups = {}
    for info in infos:
        groups.setdefault(defect_key(info), []).append(info)
    maps, failures = {}, []
    for key, group in sorted(groups.items()):
        group = sorted(group, key=lambda info: info.time)
        chosen = sample_indices(len(group), options.n_sample)
        sample = [group[i] for i in chosen]
        fingerprint = defects_fingerprint(key, sample, context, options)
        path = cache / _file_name("defects", key)
        if path.is_file():
            try:
                if fits.getval(path, "OLHASH") == fingerprint:
                    maps[key] = str(path)
                    if log is not None:
                        log.info("reused defect map %s: %s", format_key(key), path)
                    continue
            except (OSError, KeyError):
                pass
        items = [FrameItem(group[i].path, group[i], int(i)) for i in chosen]
        results, _, accumulator = pool.map(
            accumulate_defects, items, context, desc=f"defects {format_key(key)}",
            chunksize=math.ceil(len(items) / max(1, getattr(pool, "n_workers", 1))),
            accumulator=_AccumulatorFactory(len(group), min(options.n_blocks, len(items))))
        failures += [r for r in results if isinstance(r, FrameFailure)]
        try:
            if accumulator is None or accumulator.shape is None:
                raise ValueError("no usable frame")
            defect_map = find_defects(accumulator.combined(), options,
                                      n_frames=accumulator.n_added)
            defect_map = _steady_only(defect_map, accumulator)
        except ValueError as exc:
            failures.append(FrameFailure(group[0].path, "defects",
                                         f"no defect map for {format_key(key)}: {exc}"))
            continue
        defect_map.meta.update(key=list(key), fingerprint=fingerprint,
                               n_blocks=accumulator.n_blocks)
        defect_map.write(path)
        maps[key] = str(path)
        if log is not None:
            log.info("built defect map %s from %d frames: %d defect pixels (%s), detection "
                     "limit %.1f e-/s: %s", format_key(key), accumulator.n_added,
                     int(defect_map.mask.sum()), _summary(defect_map.table),
                     defect_map.meta["detection_limit"], path)
    return maps, failures


def _steady_only(defect_map, accumulator):
    """The map without the single pixels that do not stand out in every time block."""
    singles = defect_map.hot | defect_map.warm | defect_map.dead
    steady = accumulator.steady(singles)
    dropped = singles & ~steady
    if not dropped.any():
        return defect_map
    for name in ("hot", "warm", "dead"):
        setattr(defect_map, name, getattr(defect_map, name) & steady)
    table = defect_map.table
    pixel = np.isin(np.asarray(table["kind"], dtype=str), ("hot", "warm", "dead"))
    gone = pixel & dropped[np.asarray(table["y0"]), np.asarray(table["x0"])]
    defect_map.table = table[~gone]
    defect_map.meta["n_unsteady_dropped"] = int(dropped.sum())
    return defect_map


def _summary(table):
    kinds, counts = np.unique(np.asarray(table["kind"], dtype=str), return_counts=True)
    return ", ".join(f"{n} {k}" for k, n in zip(kinds, counts)) or "none"


@functools.lru_cache(maxsize=32)
def _load_flags(path, stamp, warm):
    bits = fits.getdata(path, 0)
    if not warm:
        bits = bits & ~np.uint8(DefectBits.WARM)
    flags = np.where(bits != 0, np.uint16(PhotFlag.BAD_PIXEL), np.uint16(0)).astype(np.uint16)
    flags.setflags(write=False)
    return flags


def read_defect_flags(path, warm=True):
    """The ``BAD_PIXEL`` pixel flags of a defect map file, loaded once per process.

    Parameters
    ----------
    path : str or Path
        A map written by :meth:`DefectMap.write`.
    warm : bool
        Include the warm pixels. A frame calibrated with a master dark has its warm pixels'
        dark current removed; the map's warm pixels are then mostly the few false detections
        at 5-10 sigma that its noise floor allows, so they are left out.

    Returns
    -------
    ndarray, shape (ny, nx), uint16, read-only
        :attr:`~opticam_like.flags.PhotFlag.BAD_PIXEL` on every defect pixel, 0 elsewhere
        (reloaded when the file's modification time or size changes).
    """
    stat = os.stat(path)
    return _load_flags(str(path), (stat.st_mtime_ns, stat.st_size), bool(warm))
