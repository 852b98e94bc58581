"""Source detection, peaks, centroids and moments.

The pipeline runs a finder on every frame (for the alignment) and on the reference stack (for the
catalogue), so :class:`DefaultFinder` is a fast, vectorised threshold-and-label detector built on
`scipy.ndimage` alone. The functions next to it are the small tools the later stages need: local
maxima (:func:`find_peaks`), centroids in a box (:func:`centroid`), windowed re-centring of many
sources at once (:func:`recentre`), second moments of a cut-out (:func:`second_moments`,
:func:`moment_covariance`, :func:`covariance_to_ellipse`) and the removal of close pairs
(:func:`remove_duplicates`).

Coordinates are 0-based ``(x, y)`` with the centre of ``image[0, 0]`` at ``(0.0, 0.0)``; arrays
are indexed ``image[y, x]``. Images are background-subtracted and in electrons.
"""

import math
from enum import IntFlag

import numpy as np
from astropy.table import Table
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = [
    "DefaultFinder",
    "FINDER_COLUMNS",
    "SourceFlag",
    "check_finder",
    "centroid",
    "covariance_to_ellipse",
    "find_peaks",
    "moment_covariance",
    "recentre",
    "remove_duplicates",
    "second_moments",
]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
"""FWHM of a Gaussian in units of its standard deviation (2.3548)."""

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


class SourceFlag(IntFlag):
    """Conditions of a detected source (the ``flags`` column of a :class:`DefaultFinder` table)."""

    EDGE = 1
    """The segment touches the image edge or the excluded ``border``."""
    MASKED = 2
    """The segment touches a masked or non-finite pixel."""
    BLENDED = 4
    """The segment was split from a larger one by the deblender."""
    UNDETECTED = 8
    """Not detected in this camera's stack: a star of the night-wide catalogue found in
    another camera, measured at its position mapped into this camera
    (:mod:`opticam_like.sky`)."""


FINDER_COLUMNS = ("x", "y", "flux", "peak", "npix", "fwhm", "flags")
"""Columns every finder's table must have: ``x``, ``y`` (px, 0-based), ``flux`` (e-, sum over
the source), ``peak`` (e-, brightest pixel), ``npix`` (pixels in the source), ``fwhm`` (px;
NaN where unknown) and ``flags`` (int, :class:`SourceFlag` bits; 0 for a clean source)."""


def check_finder(finder, name="finder"):
    """Check that a source finder honours the finder contract, on a small synthetic image.

    A finder is any callable ``finder(data, rms, mask=None) -> Table``: ``data`` a
    background-subtracted image (e-), ``rms`` a scalar or a map of its noise, ``mask`` a
    boolean map of bad pixels or None. The table is sorted by decreasing ``flux`` and has the
    columns :data:`FINDER_COLUMNS`. The finder is called once on a 48 x 48 image holding three
    Gaussian stars (FWHM 3 px, peaks 200, 400 and 800 e-, noise rms 1 e-).

    Parameters
    ----------
    finder : callable
    name : str
        What the finder is (``'finder'``, ``'catalog_finder'``), for the messages.

    Raises
    ------
    TypeError
        When the call raises (the message gives the original exception's type and message),
        returns no table, or the table lacks columns (named).
    """
    yy, xx = np.mgrid[:48, :48]
    sigma = 3.0 / FWHM_PER_SIGMA
    data = np.random.default_rng(0).normal(0.0, 1.0, (48, 48))
    for x0, y0, peak in ((12.0, 14.0, 800.0), (33.0, 20.0, 400.0), (22.0, 36.0, 200.0)):
        data += peak * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))
    try:
        sources = finder(data, 1.0, mask=np.zeros(data.shape, dtype=bool))
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        raise TypeError(f"the {name} {finder!r} failed on a test image of three stars "
                        f"(called as {name}(data, rms, mask=mask)): {detail}") from exc
    columns = getattr(sources, "colnames", None)
    if columns is None:
        raise TypeError(f"the {name} {finder!r} returned {type(sources).__name__}, not a "
                        f"table with columns {', '.join(FINDER_COLUMNS)}")
    missing = [c for c in FINDER_COLUMNS if c not in columns]
    if missing:
        raise TypeError(f"the {name} {finder!r} returned a table without "
                        f"{', '.join(missing)}: a finder's table needs "
                        f"{', '.join(FINDER_COLUMNS)} (flags: int SourceFlag bits, 0 when "
                        "clean)")


def _as_image(data, name="data"):
    """``data`` as a 2-D float array (no copy when it already is one)."""
    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"{name} must be a 2-D image, got an array of shape {data.shape}")
    if not np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float64)
    return data


def _as_mask(mask, shape):
    """``mask`` as a boolean array of ``shape``, or None."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"mask has shape {mask.shape}, but the image has shape {shape}")
    return mask.astype(bool, copy=False)


def _as_positions(x, y):
    """Positions as two 1-D float arrays, and whether the input was scalar."""
    scalar = np.ndim(x) == 0 and np.ndim(y) == 0
    x = np.atleast_1d(np.asarray(x, dtype=float))
    y = np.atleast_1d(np.asarray(y, dtype=float))
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be scalars or 1-D arrays of one length, got shapes "
                         f"{x.shape} and {y.shape}")
    return x, y, scalar


def _gaussian_kernel_1d(fwhm):
    """Normalised 1-D Gaussian of ``fwhm`` pixels, truncated at 3 sigma (at least 3 taps)."""
    sigma = fwhm / FWHM_PER_SIGMA
    half = max(1, math.ceil(3.0 * sigma))
    u = np.arange(-half, half + 1, dtype=float)
    kernel = np.exp(-0.5 * (u / sigma) ** 2)
    return kernel / kernel.sum()


def covariance_to_ellipse(cxx, cyy, cxy):
    """Semi-axes and orientation of the ellipse of a second-moment (covariance) matrix.

    The formulas are SExtractor's (Bertin & Arnouts 1996; SExtractor manual, sect. "Basic shape
    parameters"): ``a`` and ``b`` are the square roots of the eigenvalues of
    ``[[cxx, cxy], [cxy, cyy]]`` and ``theta`` the angle of the major axis.

    Parameters
    ----------
    cxx, cyy, cxy : float or ndarray
        Second central moments (px^2), broadcastable against each other.

    Returns
    -------
    a, b : float or ndarray
        Semi-major and semi-minor axes (px), ``a >= b >= 0``.
    theta : float or ndarray
        Angle of the major axis in radians, counter-clockwise from +x, in ``(-pi/2, pi/2]``.
    """
    cxx, cyy, cxy = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (cxx, cyy, cxy)))
    mean = 0.5 * (cxx + cyy)
    root = np.hypot(0.5 * (cxx - cyy), cxy)
    a = np.sqrt(np.maximum(mean + root, 0.0))
    b = np.sqrt(np.maximum(mean - root, 0.0))
    theta = 0.5 * np.arctan2(2.0 * cxy, cxx - cyy)
    if a.ndim == 0:
        return float(a), float(b), float(theta)
    return a, b, theta


class DefaultFinder:
    """Threshold-and-label source finder (SExtractor-like isophotal detection).

    A pixel is detected when its value (after the optional Gaussian filtering) exceeds
    ``threshold * rms``; 8-connected groups of at least ``npixels`` detected pixels are sources.
    Each source is measured on the **unfiltered** data over its pixels (the isophotal footprint):
    flux, peak, intensity-weighted centroid and second moments. Everything is vectorised over
    the labelled pixels (`scipy.ndimage.label` and `numpy.bincount`), so a 512 x 512 frame takes
    a few milliseconds.

    Filtering follows SExtractor's ``FILTER`` with a ``CONV NORM`` kernel: the image is convolved
    with a Gaussian of FWHM ``fwhm`` pixels normalised to unit sum, and the threshold is still
    ``threshold`` times the rms of the **unfiltered** image. The noise of the filtered image is
    ``rms * noise_factor`` with ``noise_factor = sqrt(sum(kernel**2))`` (about
    ``1 / (2 sqrt(pi) sigma_kernel)``, i.e. 0.22 for ``fwhm=3``), so in units of the filtered
    noise the threshold is ``threshold / noise_factor``; on a star of the same FWHM the filtered
    peak is about half the unfiltered one, so filtering gains about a factor 2 in
    signal-to-noise on point sources. Masked and non-finite pixels are set to zero before
    filtering and are never detected.

    Parameters
    ----------
    threshold : float
        Detection threshold in units of ``rms``.
    npixels : int
        Minimum number of connected pixels of a source.
    fwhm : float or None
        FWHM (px) of the Gaussian filter; None for no filtering.
    deblend : bool
        Split blended segments with `photutils.segmentation.deblend_sources` (multi-threshold
        plus watershed; ``nlevels``, ``contrast``). Slower; off by default.
    border : int
        Width (px) of a frame along the image edges where nothing is detected.
    max_sources : int or None
        Keep only the brightest ``max_sources`` sources.
    nlevels : int
        Number of deblending thresholds (only with ``deblend=True``).
    contrast : float
        Minimum flux fraction of a deblended component (only with ``deblend=True``).

    Raises
    ------
    ValueError
        If a parameter is out of range.

    Notes
    -----
    The finder is a callable ``finder(data, rms, mask=None) -> Table`` (the detection contract
    of ``docs/DESIGN.md``). Table columns, sorted by ``flux`` descending:

    * ``x``, ``y``: intensity-weighted centroid (px, 0-based), negative pixels given zero weight;
    * ``flux``: sum of the pixel values over the segment (e-);
    * ``peak``: maximum pixel value (e-); ``npix``: number of pixels;
    * ``a``, ``b``, ``theta``: semi-axes (px) and angle (rad, counter-clockwise from +x) of the
      second moments, as SExtractor's ``A_IMAGE``, ``B_IMAGE`` and ``THETA_IMAGE`` (no pixel
      correction; 1/12 px^2 is added to both moments of a segment whose moment matrix is
      singular, as SExtractor does);
    * ``fwhm``: ``2.3548 * sqrt((a^2 + b^2) / 2)``, the FWHM of a Gaussian with these moments:
      a quick size, not a FWHM. The isophote truncates the profile, so it underestimates
      faint Gaussian sources (by ~1-2% at a peak of 200 rms), and the wings of Moffat stars
      inflate it (1.3-1.7x for beta 2.5-3). The pipeline uses it only as the starting guess of
      the elliptical Moffat fit that gives the frame FWHM
      (:func:`~opticam_like.stages.frame_fwhm`, :mod:`~opticam_like.photometry.moffat`);
    * ``flags``: :class:`SourceFlag` bits.

    References
    ----------
    Bertin, E. & Arnouts, S. 1996, A&AS 117, 393 (SExtractor).
    """

    def __init__(self, threshold=5.0, npixels=5, fwhm=None, deblend=False, border=0,
                 max_sources=None, nlevels=32, contrast=0.001):
        if not threshold > 0:
            raise ValueError(f"threshold must be positive, got {threshold}")
        if int(npixels) != npixels or npixels < 1:
            raise ValueError(f"npixels must be a positive integer, got {npixels}")
        if fwhm is not None and not fwhm > 0:
            raise ValueError(f"fwhm must be positive or None, got {fwhm}")
        if int(border) != border or border < 0:
            raise ValueError(f"border must be a non-negative integer, got {border}")
        if max_sources is not None and (int(max_sources) != max_sources or max_sources < 1):
            raise ValueError(f"max_sources must be a positive integer or None, got {max_sources}")
        self.threshold = float(threshold)
        self.npixels = int(npixels)
        self.fwhm = None if fwhm is None else float(fwhm)
        self.deblend = bool(deblend)
        self.border = int(border)
        self.max_sources = None if max_sources is None else int(max_sources)
        self.nlevels = int(nlevels)
        self.contrast = float(contrast)
        self._kernel = None if fwhm is None else _gaussian_kernel_1d(self.fwhm)

    def __repr__(self):
        return (f"DefaultFinder(threshold={self.threshold}, npixels={self.npixels}, "
                f"fwhm={self.fwhm}, deblend={self.deblend}, border={self.border}, "
                f"max_sources={self.max_sources})")

    @property
    def noise_factor(self):
        """Rms of the filtered image per unit rms of the unfiltered one (1 without filter)."""
        if self._kernel is None:
            return 1.0
        return float(np.sum(self._kernel**2))

    def _detection_image(self, data, bad):
        """The image the threshold is applied to: bad pixels zeroed, optionally filtered."""
        image = np.where(bad, 0.0, data).astype(np.float32) if bad is not None else data
        if self._kernel is not None:
            image = ndimage.correlate1d(image, self._kernel, axis=0, mode="constant")
            image = ndimage.correlate1d(image, self._kernel, axis=1, mode="constant")
        return image

    def _validate_rms(self, rms, shape):
        rms = np.asarray(rms, dtype=float)
        if rms.ndim == 0:
            if not (np.isfinite(rms) and rms > 0):
                raise ValueError(f"rms must be a positive finite number, got {float(rms)}")
            return float(rms)
        if rms.shape != shape:
            raise ValueError(f"rms map has shape {rms.shape}, but the image has shape {shape}")
        return rms

    def _empty_table(self):
        names = ("x", "y", "flux", "peak", "npix", "a", "b", "theta", "fwhm", "flags")
        dtypes = (float, float, float, float, np.int64, float, float, float, float, np.int32)
        return Table(names=names, dtype=dtypes)

    def _deblend(self, image, labels, nlabels):
        """Deblended labels and the ids of the labels that were split."""
        from photutils.segmentation import SegmentationImage, deblend_sources

        segm = deblend_sources(image, SegmentationImage(labels), self.npixels,
                               n_levels=self.nlevels, contrast=self.contrast,
                               progress_bar=False)
        new = segm.data
        detected = new > 0
        pairs = np.unique(np.stack([labels[detected], new[detected]]), axis=1)
        children = np.bincount(pairs[0], minlength=nlabels + 1)
        blended_parent = children > 1
        blended = np.zeros(segm.max_label + 1, dtype=bool)
        blended[pairs[1]] = blended_parent[pairs[0]]
        return new, segm.max_label, blended

    def __call__(self, data, rms, mask=None):
        """Detect and measure the sources of a background-subtracted image.

        Parameters
        ----------
        data : ndarray, shape (ny, nx)
            Background-subtracted image (e-).
        rms : float or ndarray, shape (ny, nx)
            Rms of the background (e-), a scalar or a map.
        mask : ndarray of bool, shape (ny, nx), optional
            True for bad pixels; they are never detected nor measured.

        Returns
        -------
        `~astropy.table.Table`
            One row per source, sorted by ``flux`` descending (see the class notes for the
            columns). Empty (with the columns) when nothing is detected.

        Raises
        ------
        ValueError
            If ``data`` is not 2-D, or ``rms`` or ``mask`` do not match its shape, or ``rms``
            is not positive.
        """
        data = _as_image(data)
        shape = data.shape
        rms = self._validate_rms(rms, shape)
        mask = _as_mask(mask, shape)
        bad = ~np.isfinite(data)
        if mask is not None:
            bad |= mask
        bad = bad if bad.any() else None

        image = self._detection_image(data, bad)
        detected = image > self.threshold * rms
        if bad is not None:
            detected &= ~bad
        if self.border:
            b = self.border
            detected[:b] = detected[-b:] = False
            detected[:, :b] = detected[:, -b:] = False
        labels, nlabels = ndimage.label(detected, structure=_EIGHT_CONNECTED)
        if nlabels == 0:
            return self._empty_table()

        flat = np.flatnonzero(labels)
        lab = labels.ravel()[flat]
        npix = np.bincount(lab, minlength=nlabels + 1)
        small = npix < self.npixels
        small[0] = False
        if small.any():
            keep = ~small[lab]
            labels.ravel()[flat[~keep]] = 0
            flat, lab = flat[keep], lab[keep]
            lookup = np.cumsum(~small) - 1
            lab = lookup[lab]
            labels.ravel()[flat] = lab
            nlabels = int(lookup[-1])
            if nlabels == 0:
                return self._empty_table()
        blended = np.zeros(nlabels + 1, dtype=bool)
        if self.deblend:
            labels, nlabels, blended = self._deblend(image, labels, nlabels)
            flat = np.flatnonzero(labels)
            lab = labels.ravel()[flat]

        columns = self._measure(data, shape, flat, lab, nlabels, bad)
        columns["flags"][blended[1:]] |= SourceFlag.BLENDED
        order = np.argsort(-columns["flux"], kind="stable")
        if self.max_sources is not None:
            order = order[:self.max_sources]
        return Table({name: values[order] for name, values in columns.items()})

    def _measure(self, data, shape, flat, lab, nlabels, bad):
        """Isophotal measurements of the labelled segments (labels 1..nlabels): dict of columns."""
        ny, nx = shape
        ypix, xpix = np.divmod(flat, nx)
        values = data.ravel()[flat].astype(float)
        n = nlabels + 1

        def per_label(weights):
            return np.bincount(lab, weights=weights, minlength=n)[1:]

        npix = np.bincount(lab, minlength=n)[1:]
        flux = per_label(values)
        weights = np.maximum(values, 0.0)
        wsum = per_label(weights)
        no_weight = wsum <= 0
        if no_weight.any():
            weights = np.where(no_weight[lab - 1], 1.0, weights)
            wsum = per_label(weights)
        xc = per_label(weights * xpix) / wsum
        yc = per_label(weights * ypix) / wsum
        dx = xpix - xc[lab - 1]
        dy = ypix - yc[lab - 1]
        cxx = per_label(weights * dx * dx) / wsum
        cyy = per_label(weights * dy * dy) / wsum
        cxy = per_label(weights * dx * dy) / wsum
        singular = cxx * cyy - cxy * cxy < 1.0 / 144.0
        cxx[singular] += 1.0 / 12.0
        cyy[singular] += 1.0 / 12.0
        a, b, theta = covariance_to_ellipse(cxx, cyy, cxy)

        order = np.argsort(lab, kind="stable")
        starts = np.searchsorted(lab[order], np.arange(1, n))
        peak = np.maximum.reduceat(values[order], starts)

        b0 = self.border
        at_edge = (xpix <= b0) | (ypix <= b0) | (xpix >= nx - 1 - b0) | (ypix >= ny - 1 - b0)
        flags = np.where(per_label(at_edge) > 0, int(SourceFlag.EDGE), 0).astype(np.int32)
        if bad is not None:
            near_bad = ndimage.binary_dilation(bad, structure=_EIGHT_CONNECTED)
            flags[per_label(near_bad.ravel()[flat]) > 0] |= SourceFlag.MASKED

        return {
            "x": xc, "y": yc, "flux": flux, "peak": peak, "npix": npix.astype(np.int64),
            "a": a, "b": b, "theta": theta,
            "fwhm": FWHM_PER_SIGMA * np.sqrt(0.5 * (a * a + b * b)),
            "flags": flags,
        }


def find_peaks(image, threshold, box_size=3, reject_hot_pixels=False, mask=None, border=0):
    """Local maxima above a threshold.

    A pixel is a peak when it is the maximum of the ``box_size`` x ``box_size`` box centred on
    it (`scipy.ndimage.maximum_filter`; pixels beyond the image count as -inf), strictly above
    ``threshold``, unmasked and at least ``border`` pixels from the edges. Equal neighbouring
    maxima (plateaus) all count as peaks; use :func:`remove_duplicates` to thin them.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Background-subtracted image.
    threshold : float or ndarray, shape (ny, nx)
        Minimum peak value (same units as ``image``).
    box_size : int
        Side of the box (px, odd, >= 3).
    reject_hot_pixels : bool
        Keep only peaks with at least 4 of their 8 neighbours above half the peak value; this
        removes single hot pixels and most cosmic-ray hits, which have no wings. Neighbours off
        the image or masked count as not above.
    mask : ndarray of bool, shape (ny, nx), optional
        True for bad pixels: they are neither peaks nor neighbours in the maximum filter.
    border : int
        Peaks closer than ``border`` pixels to an edge are dropped.

    Returns
    -------
    `~astropy.table.Table`
        Columns ``x``, ``y`` (int, pixel indices) and ``peak`` (value), sorted by ``peak``
        descending.

    Raises
    ------
    ValueError
        If ``image`` is not 2-D, ``box_size`` is not an odd integer >= 3, or ``mask`` or
        ``threshold`` do not match the image.
    """
    image = _as_image(image, "image")
    mask = _as_mask(mask, image.shape)
    if int(box_size) != box_size or box_size < 3 or box_size % 2 == 0:
        raise ValueError(f"box_size must be an odd integer >= 3, got {box_size}")
    threshold = np.asarray(threshold, dtype=float)
    if threshold.ndim and threshold.shape != image.shape:
        raise ValueError(f"threshold map has shape {threshold.shape}, image {image.shape}")
    work = np.where(np.isfinite(image), image, -np.inf)
    if mask is not None:
        work[mask] = -np.inf
    local_max = ndimage.maximum_filter(work, size=int(box_size), mode="constant", cval=-np.inf)
    peaks = (work == local_max) & (work > threshold)
    if border:
        b = int(border)
        peaks[:b] = peaks[-b:] = False
        peaks[:, :b] = peaks[:, -b:] = False
    y, x = np.nonzero(peaks)
    values = work[y, x]
    if reject_hot_pixels and len(x):
        padded = np.pad(work, 1, constant_values=-np.inf)
        above = np.zeros(len(x), dtype=int)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dx or dy:
                    above += padded[y + 1 + dy, x + 1 + dx] > 0.5 * values
        keep = above >= 4
        x, y, values = x[keep], y[keep], values[keep]
    order = np.argsort(-values, kind="stable")
    return Table({"x": x[order].astype(np.int64), "y": y[order].astype(np.int64),
                  "peak": values[order]})


def _box_indices(x, y, half, shape):
    """Row and column indices of (N, 2*half+1, 2*half+1) boxes centred on the nearest pixels.

    Returns the index arrays and a boolean array, True where the box lies inside the image.
    """
    ix = np.floor(x + 0.5).astype(np.int64)
    iy = np.floor(y + 0.5).astype(np.int64)
    inside = (ix - half >= 0) & (iy - half >= 0) & (ix + half < shape[1]) & (iy + half < shape[0])
    offsets = np.arange(-half, half + 1)
    rows = iy[:, None, None] + offsets[None, :, None]
    cols = ix[:, None, None] + offsets[None, None, :]
    return rows, cols, inside


def centroid(image, x, y, window):
    """Light-weighted mean position in square windows (vectorised over positions).

    For each position, the window is the ``window`` x ``window`` box centred on the pixel
    nearest to ``(x, y)``, and the centroid is ``sum(I * x) / sum(I)`` over it (the first image
    moments, as `photutils.centroids.centroid_com` on the same cut-out). Pixel values are used
    as they are: subtract the background first.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Background-subtracted image.
    x, y : float or ndarray, shape (N,)
        Starting positions (px, 0-based).
    window : int
        Side of the box (px, odd, >= 1).

    Returns
    -------
    xc, yc : float or ndarray, shape (N,)
        Centroids (px); scalars for scalar input. NaN where the window sum is zero or the
        window holds a NaN.

    Raises
    ------
    ValueError
        If ``image`` is not 2-D, ``window`` is not an odd positive integer, or a window
        extends beyond the image (the message names the first such position).
    """
    image = _as_image(image, "image")
    x, y, scalar = _as_positions(x, y)
    if int(window) != window or window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd positive integer, got {window}")
    half = int(window) // 2
    rows, cols, inside = _box_indices(x, y, half, image.shape)
    if not inside.all():
        i = int(np.flatnonzero(~inside)[0])
        raise ValueError(f"the {window}x{window} window around ({x[i]:.2f}, {y[i]:.2f}) "
                         f"extends beyond the image of shape {image.shape}")
    cut = image[rows, cols].astype(float)
    total = cut.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        xc = (cut * cols).sum(axis=(1, 2)) / total
        yc = (cut * rows).sum(axis=(1, 2)) / total
    if scalar:
        return float(xc[0]), float(yc[0])
    return xc, yc


def moment_covariance(cutout, x, y):
    """Intensity-weighted second central moments of a cut-out about a given centre.

    ``cxx = sum(I (x_i - x)^2) / sum(I) - 1/12`` and likewise ``cyy``, ``cxy = sum(I (x_i - x)
    (y_i - y)) / sum(I)``, with ``I`` the (background-subtracted) pixel values of the whole
    cut-out. The ``1/12`` px^2 removes the variance that integration over square pixels adds
    (a pixel-integrated Gaussian of standard deviation ``s`` has moments ``s^2 + 1/12``), so
    for a Gaussian the result is its ``s^2``. The cut-out should reach about 4 ``s`` from the
    centre (the truncation bias there is < 0.1%) and contain one source: noise and neighbours
    enter with their sign.

    Parameters
    ----------
    cutout : ndarray, shape (ny, nx)
        Background-subtracted cut-out.
    x, y : float
        Centre (px, in the cut-out's 0-based coordinates).

    Returns
    -------
    cxx, cyy, cxy : float
        Second moments (px^2), pixel-corrected.

    Raises
    ------
    ValueError
        If ``cutout`` is not 2-D or its sum is not positive.
    """
    cutout = _as_image(cutout, "cutout")
    total = float(np.sum(cutout))
    if not total > 0:
        raise ValueError(f"the cut-out sum is {total}; moments need a positive total")
    dy = np.arange(cutout.shape[0]) - float(y)
    dx = np.arange(cutout.shape[1]) - float(x)
    px = cutout.sum(axis=0)
    py = cutout.sum(axis=1)
    cxx = float(px @ (dx * dx)) / total - 1.0 / 12.0
    cyy = float(py @ (dy * dy)) / total - 1.0 / 12.0
    cxy = float(dy @ cutout @ dx) / total
    return cxx, cyy, cxy


def second_moments(cutout, x, y):
    """Standard deviations of a source along x and y from its second moments.

    The background-subtracted, intensity-weighted second central moments of the cut-out about
    ``(x, y)``, corrected for pixel integration (see :func:`moment_covariance`). For a
    pixel-integrated Gaussian with standard deviations ``(sx, sy)`` this returns ``(sx, sy)``
    (to < 1% for ``s >= 1`` px when the cut-out spans +-4 ``s``).

    Parameters
    ----------
    cutout : ndarray, shape (ny, nx)
        Background-subtracted cut-out containing one source.
    x, y : float
        Centre (px, in the cut-out's 0-based coordinates), e.g. from :func:`centroid`.

    Returns
    -------
    sigma_x, sigma_y : float
        Standard deviations (px); 0 when the corrected moment is negative.

    Raises
    ------
    ValueError
        If ``cutout`` is not 2-D or its sum is not positive.
    """
    cxx, cyy, _ = moment_covariance(cutout, x, y)
    return math.sqrt(max(cxx, 0.0)), math.sqrt(max(cyy, 0.0))


def remove_duplicates(x, y, min_separation, order=None):
    """Indices of the positions kept after removing close pairs.

    Greedy non-maximum suppression: positions are visited by priority (``order``, best first;
    the input order when None) and a position is dropped when a kept one of higher priority
    lies within ``min_separation`` (distance <= ``min_separation``). Pairs are found with a
    KD-tree, so this is fast for thousands of positions.

    Parameters
    ----------
    x, y : ndarray, shape (N,)
        Positions (px).
    min_separation : float
        Minimum distance between kept positions (px).
    order : ndarray of int, shape (N,), optional
        Priority order, e.g. ``np.argsort(-flux)`` to keep the brighter of each pair.

    Returns
    -------
    ndarray of int
        Indices of the kept positions, ascending (so ``x[keep]`` preserves the input order).

    Raises
    ------
    ValueError
        If ``x`` and ``y`` differ in shape, ``min_separation`` is negative, or ``order`` is not
        a permutation of ``range(N)``.
    """
    x, y, _ = _as_positions(x, y)
    n = len(x)
    if not min_separation >= 0:
        raise ValueError(f"min_separation must be non-negative, got {min_separation}")
    rank = np.arange(n)
    if order is not None:
        order = np.asarray(order)
        if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
            raise ValueError("order must be a permutation of range(len(x))")
        rank[order] = np.arange(n)
    keep = np.ones(n, dtype=bool)
    if n < 2:
        return np.flatnonzero(keep)
    pairs = cKDTree(np.column_stack([x, y])).query_pairs(min_separation, output_type="ndarray")
    if len(pairs):
        first = np.where(rank[pairs[:, 0]] < rank[pairs[:, 1]], pairs[:, 0], pairs[:, 1])
        second = pairs[:, 0] + pairs[:, 1] - first
        by_priority = np.argsort(rank[first], kind="stable")
        for better, worse in zip(first[by_priority], second[by_priority]):
            if keep[better]:
                keep[worse] = False
    return np.flatnonzero(keep)


def recentre(data, x, y, fwhm, max_shift=None, mask=None, max_iter=16, tol=1e-4):
    """Windowed (Gaussian-weighted) re-centring of many sources at once.

    The iterative windowed centroid of SExtractor's ``XWIN_IMAGE`` and `sep.winpos`: with
    ``sigma = fwhm / 2.3548`` and the pixels within ``4 sigma`` of the current position,
    ``w = exp(-r^2 / (2 sigma^2))`` and each step moves the position by
    ``2 * sum(w I dx) / sum(w I)`` (the factor 2 makes the step exact for a Gaussian), until the
    step is below ``tol`` or after ``max_iter`` steps. Each iteration works on
    ``(N, n, n)`` cut-outs around the current positions, never on a full-frame array per source.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Background-subtracted image.
    x, y : float or ndarray, shape (N,)
        Starting positions (px).
    fwhm : float
        FWHM of the sources (px), which sets the window.
    max_shift : float, optional
        Largest accepted move from the starting position (px); default ``fwhm``.
    mask : ndarray of bool, shape (ny, nx), optional
        True for bad pixels; they get zero weight.
    max_iter : int
        Maximum number of iterations.
    tol : float
        Convergence tolerance on the step (px).

    Returns
    -------
    x_new, y_new : ndarray, shape (N,)
        Re-centred positions; the starting position where re-centring failed.
    failed : ndarray of bool, shape (N,)
        True where the result was not finite or the weighted sum not positive, the position
        moved more than ``max_shift``, or the window left the image.

    Raises
    ------
    ValueError
        If ``data`` is not 2-D, ``fwhm`` is not positive or ``mask`` does not match.

    References
    ----------
    Bertin, E., SExtractor user manual, "Windowed positional parameters";
    Barbary, K. 2016, JOSS 1, 58 (SEP).
    """
    data = _as_image(data)
    mask = _as_mask(mask, data.shape)
    x0, y0, _ = _as_positions(x, y)
    if not fwhm > 0:
        raise ValueError(f"fwhm must be positive, got {fwhm}")
    max_shift = float(fwhm if max_shift is None else max_shift)
    sigma = fwhm / FWHM_PER_SIGMA
    radius2 = (4.0 * sigma) ** 2
    half = math.ceil(4.0 * sigma + 0.5)
    xc, yc = x0.copy(), y0.copy()
    failed = ~(np.isfinite(xc) & np.isfinite(yc))
    active = ~failed
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if not len(idx):
            break
        rows, cols, inside = _box_indices(xc[idx], yc[idx], half, data.shape)
        failed[idx[~inside]] = True
        idx, rows, cols = idx[inside], rows[inside], cols[inside]
        dx = cols - xc[idx, None, None]
        dy = rows - yc[idx, None, None]
        r2 = dx * dx + dy * dy
        weighted = np.where(r2 < radius2, np.exp(-0.5 * r2 / sigma**2), 0.0) * data[rows, cols]
        if mask is not None:
            weighted[mask[rows, cols]] = 0.0
        total = weighted.sum(axis=(1, 2))
        good = total > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            step_x = 2.0 * (weighted * dx).sum(axis=(1, 2)) / total
            step_y = 2.0 * (weighted * dy).sum(axis=(1, 2)) / total
        good &= np.isfinite(step_x) & np.isfinite(step_y)
        failed[idx[~good]] = True
        idx, step_x, step_y = idx[good], step_x[good], step_y[good]
        xc[idx] += step_x
        yc[idx] += step_y
        active[:] = False
        active[idx[step_x**2 + step_y**2 >= tol**2]] = True
        active &= ~failed
    failed |= np.hypot(xc - x0, yc - y0) > max_shift
    failed |= ~(np.isfinite(xc) & np.isfinite(yc))
    xc[failed] = x0[failed]
    yc[failed] = y0[failed]
    return xc, yc, failed
