"""Per-pixel bit flags: saturation, non-finite values, bad pixels, cosmic rays.

Flags are ``uint16`` images whose bits are those of :class:`~opticam_like.flags.PhotFlag`
(``SATURATED``, ``BAD_PIXEL``, ``COSMIC_RAY``, ``MASKED``), so that a photometer can OR the
flags of the pixels of an aperture straight into the flags of its measurement.

Thresholds (all parameters):

* saturated: raw value (ADU) ``>=`` the frame's saturation level;
* hot: master dark rate ``> median + hot_nsigma * sigma`` with ``sigma`` the MAD-based standard
  deviation of the master dark (default 5 sigma);
* dead or over-responsive: master flat ``< flat_low`` or ``> flat_high`` times its local median
  (block medians over ``flat_box`` pixels, bilinearly interpolated, so that vignetting is not
  flagged; defaults 0.5, 1.5 and 16 pixels);
* cosmic rays: L.A.Cosmic (van Dokkum 2001, PASP 113, 1420) as implemented by astroscrappy.
"""

import os
import sys
import warnings

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..flags import PhotFlag

__all__ = ["raw_flags", "hot_pixels", "local_median", "flat_bad_pixels", "detect_cosmic_rays"]


def raw_flags(raw, saturation):
    """Flags measured on a raw frame: saturation and non-finite values.

    Parameters
    ----------
    raw : ndarray, shape (ny, nx)
        Raw pixel values (ADU).
    saturation : float
        Saturation level (ADU); pixels at or above it are flagged ``SATURATED``.

    Returns
    -------
    ndarray, shape (ny, nx), uint16
        ``SATURATED`` and ``MASKED`` (NaN or infinite pixel) bits.
    """
    flags = np.zeros(raw.shape, dtype=np.uint16)
    with np.errstate(invalid="ignore"):
        flags[raw >= saturation] |= np.uint16(PhotFlag.SATURATED)
    flags[~np.isfinite(raw)] |= np.uint16(PhotFlag.MASKED)
    return flags


def hot_pixels(dark_rate, nsigma=5.0):
    """Hot pixels of a master dark.

    Parameters
    ----------
    dark_rate : ndarray, shape (ny, nx)
        Master dark rate (any unit; e-/s/pixel in this package).
    nsigma : float
        A pixel is hot when its rate exceeds the median by more than ``nsigma`` times the
        robust standard deviation ``1.4826 * MAD`` of the finite pixels.

    Returns
    -------
    ndarray, shape (ny, nx), bool
        True for hot pixels.
    """
    finite = dark_rate[np.isfinite(dark_rate)]
    if finite.size == 0:
        return np.zeros(dark_rate.shape, dtype=bool)
    median = np.median(finite)
    sigma = 1.4826 * np.median(np.abs(finite - median))
    with np.errstate(invalid="ignore"):
        return dark_rate > median + nsigma * sigma


def _interpolation_matrix(edges):
    """Weights (n, n_blocks) of linear interpolation between block centres, extrapolated."""
    n, n_blocks = edges[-1], len(edges) - 1
    weights = np.zeros((n, n_blocks), dtype=np.float32)
    if n_blocks == 1:
        weights[:, 0] = 1.0
        return weights
    centres = (edges[:-1] + edges[1:] - 1) / 2
    pixels = np.arange(n)
    left = np.clip(np.searchsorted(centres, pixels) - 1, 0, n_blocks - 2)
    t = (pixels - centres[left]) / (centres[left + 1] - centres[left])
    weights[pixels, left] = 1 - t
    weights[pixels, left + 1] = t
    return weights


def local_median(image, box=16):
    """Smooth local median of an image: block medians interpolated bilinearly.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Image; NaN values are ignored.
    box : int
        Approximate block size in pixels. Each axis is cut into ``round(n / box)`` (at least
        one) nearly equal blocks; the NaN-ignoring median of each block is placed at the block
        centre and interpolated bilinearly to every pixel, linearly extrapolated beyond the
        outer centres (a mesh as in SExtractor's background, Bertin & Arnouts 1996).

    Returns
    -------
    ndarray, shape (ny, nx), float32
        The local median; blocks without a finite pixel take the global median.
    """
    edges = [np.linspace(0, n, max(1, round(n / int(box))) + 1).astype(int)
             for n in image.shape]
    medians = np.empty((len(edges[0]) - 1, len(edges[1]) - 1), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for j, (y0, y1) in enumerate(zip(edges[0][:-1], edges[0][1:])):
            for i, (x0, x1) in enumerate(zip(edges[1][:-1], edges[1][1:])):
                medians[j, i] = np.nanmedian(image[y0:y1, x0:x1])
        fill = np.nanmedian(image)
    medians[~np.isfinite(medians)] = fill if np.isfinite(fill) else 1.0
    return _interpolation_matrix(edges[0]) @ medians @ _interpolation_matrix(edges[1]).T


def flat_bad_pixels(flat, low=0.5, high=1.5, box=16):
    """Dead and over-responsive pixels of a master flat.

    Parameters
    ----------
    flat : ndarray, shape (ny, nx)
        Master flat (normalised response).
    low, high : float
        A pixel is bad when ``flat < low * local`` or ``flat > high * local``, with ``local``
        the :func:`local_median` of the flat, or when it is not finite.
    box : int
        Block size of the local median (pixels).

    Returns
    -------
    ndarray, shape (ny, nx), bool
        True for bad pixels.
    """
    if not 0 <= low < 1 < high:
        raise ValueError(f"flat thresholds need 0 <= low < 1 < high, got {low}, {high}")
    local = local_median(flat, box)
    with np.errstate(invalid="ignore"):
        return ~((flat >= low * local) & (flat <= high * local))


def _astroscrappy():
    """The astroscrappy module, imported with OpenMP limited to one thread.

    GNU OpenMP reads ``OMP_NUM_THREADS`` once, when astroscrappy's bundled runtime is loaded:
    it is set to 1 for that import only, so that process-pool workers neither oversubscribe
    the cores nor hang in a thread pool inherited through ``fork``. If astroscrappy was
    imported elsewhere first, the setting in force at that time applies.
    """
    if "astroscrappy" not in sys.modules:
        previous = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            import astroscrappy  # noqa: F401
        finally:
            if previous is None:
                del os.environ["OMP_NUM_THREADS"]
            else:
                os.environ["OMP_NUM_THREADS"] = previous
    return sys.modules["astroscrappy"]


def _fill_local_median(data, fill, valid, size=5):
    """Replace ``data[fill]`` in place by the median of the valid pixels of a window."""
    half = size // 2
    padded = np.pad(np.where(valid, data, np.nan), half, constant_values=np.nan)
    ys, xs = np.nonzero(fill)
    windows = sliding_window_view(padded, (size, size))[ys, xs].reshape(len(ys), -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        values = np.nanmedian(windows, axis=1)
    if not np.isfinite(values).all():
        values[~np.isfinite(values)] = np.median(data[valid]) if valid.any() else 0.0
    data[ys, xs] = values


def detect_cosmic_rays(image, mask=None, read_noise=6.5, saturation=np.inf, **options):
    """Cosmic-ray hits in a calibrated image (L.A.Cosmic via astroscrappy).

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Calibrated image in electrons, sky included (not background-subtracted), so that the
        Poisson noise model of L.A.Cosmic holds with ``gain=1``.
    mask : ndarray of bool, shape (ny, nx), optional
        Pixels to ignore (saturated, bad, non-finite). Masked pixels below ``saturation`` are
        replaced by the median of the good pixels of their 5 x 5 neighbourhood, so that a
        noisy dead pixel does not make its neighbours look like cosmic rays; saturated pixels
        keep their values, from which astroscrappy finds and protects saturated stars.
    read_noise : float
        Read noise (e-).
    saturation : float
        Level (e-) at which pixels of this image saturate; astroscrappy protects saturated
        stars with it. ``inf`` when nothing saturates.
    **options
        Passed to ``astroscrappy.detect_cosmics`` (``sigclip``, ``sigfrac``, ``objlim``,
        ``niter``, ...).

    Returns
    -------
    ndarray, shape (ny, nx), bool
        True for pixels hit by a cosmic ray.

    References
    ----------
    van Dokkum, P. G. 2001, PASP 113, 1420; McCully, C. et al., astroscrappy (Zenodo 1482019).
    """
    detect_cosmics = _astroscrappy().detect_cosmics
    data = np.array(image, dtype=np.float32)
    nonfinite = ~np.isfinite(data)
    bad = nonfinite if mask is None else (np.asarray(mask, dtype=bool) | nonfinite)
    with np.errstate(invalid="ignore"):
        fill = bad & ~(data >= saturation)
    if fill.any():
        _fill_local_median(data, fill, ~bad)
    crmask, _ = detect_cosmics(data, inmask=bad, gain=1.0, readnoise=float(read_noise),
                               satlevel=float(saturation), **options)
    return np.asarray(crmask, dtype=bool) & ~bad
