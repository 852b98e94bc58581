"""Sigma-clipped combination of many frames in bounded memory.

A stack of ``n`` frames is combined pixel by pixel: values further than ``sigma`` standard
deviations from the median of the pixel's values are rejected, iteratively (astropy
:func:`~astropy.stats.sigma_clip`), and the survivors are averaged (mean or median). NaN values
are ignored. :func:`chunked_combine` does the same on blocks of rows read on demand, so that
hundreds of frames never sit in memory at once: since each output pixel depends only on its own
stack of values, the result is identical to the in-memory combination.

The result equals ccdproc's (``ccdproc.combine`` or ``Combiner.sigma_clipping`` with
``func="median", dev_func="std"``, then ``average_combine`` / ``median_combine``; the tests compare
them), but the combination is not built on ccdproc: ccdproc 2.5 clips only once (its
``sigma_clipping(maxiters=...)`` raises a TypeError) and is 1.5 to 4 times slower on typical
masters; the measurements are in docs/DESIGN.md.
"""

import warnings

import numpy as np
from astropy.stats import sigma_clip
from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["sigma_clipped_combine", "chunked_combine", "DEFAULT_MEMORY_LIMIT", "COMBINE_METHODS"]

#: Default memory budget of :func:`chunked_combine` (bytes).
DEFAULT_MEMORY_LIMIT = 256 * 2**20

#: Combination statistics of the clipped values.
COMBINE_METHODS = ("mean", "median")

# Peak memory of sigma_clip + nanmean measured at ~3.3x the stack (tracemalloc); keep a margin.
_WORK_FACTOR = 4


def _check_options(method, sigma, maxiters):
    if method not in COMBINE_METHODS:
        raise ValueError(f"method must be one of {COMBINE_METHODS}, not {method!r}")
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma must be positive or None, not {sigma!r}")
    if int(maxiters) < 1:
        raise ValueError(f"maxiters must be >= 1, not {maxiters!r}")


def sigma_clipped_combine(stack, *, method="mean", sigma=3.0, maxiters=5):
    """Combine a stack of frames pixel by pixel with iterative sigma clipping.

    Parameters
    ----------
    stack : array_like, shape (n, ...)
        ``n`` frames (float32 recommended; NaN values are ignored). Modified in place when it
        is a float32 array (clipped values become NaN).
    method : {'mean', 'median'}
        Statistic of the values that survive clipping.
    sigma : float or None
        Clipping threshold in standard deviations about the median (astropy
        ``sigma_clip(cenfunc='median', stdfunc='std')``); None disables clipping.
    maxiters : int
        Maximum number of clipping iterations.

    Returns
    -------
    ndarray, shape (...), float32
        The combined frame; NaN where every value of a pixel is NaN.

    Raises
    ------
    ValueError
        Unknown method, non-positive sigma or maxiters, or an empty stack.
    """
    _check_options(method, sigma, maxiters)
    stack = np.asarray(stack, dtype=np.float32)
    if stack.ndim < 1 or stack.shape[0] == 0:
        raise ValueError("cannot combine an empty stack")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        if sigma is not None:
            stack = sigma_clip(stack, sigma=sigma, maxiters=int(maxiters), cenfunc="median",
                               stdfunc="std", axis=0, masked=False, copy=False)
        statistic = np.nanmean if method == "mean" else np.nanmedian
        return statistic(stack, axis=0).astype(np.float32, copy=False)


def chunked_combine(read_rows, n_frames, shape, *, memory_limit=DEFAULT_MEMORY_LIMIT,
                    method="mean", sigma=3.0, maxiters=5):
    """Combine ``n_frames`` frames block of rows by block of rows.

    Parameters
    ----------
    read_rows : callable
        ``read_rows(i, y0, y1)`` returns rows ``y0:y1`` of frame ``i`` as an array of shape
        ``(y1 - y0, nx)``.
    n_frames : int
        Number of frames.
    shape : tuple of int
        Frame shape ``(ny, nx)``.
    memory_limit : int
        Memory budget in bytes for the stack and the clipping work arrays; the number of rows
        per block is ``memory_limit // (4 * n_frames * nx * 4 bytes)`` (at least one).
    method, sigma, maxiters
        As in :func:`sigma_clipped_combine`.

    Returns
    -------
    ndarray, shape (ny, nx), float32
        Identical to ``sigma_clipped_combine`` of the full stack.

    Raises
    ------
    ValueError
        Invalid options, no frame, or a block of the wrong shape.
    """
    _check_options(method, sigma, maxiters)
    if n_frames < 1:
        raise ValueError("cannot combine zero frames")
    ny, nx = (int(n) for n in shape)
    bytes_per_row = n_frames * nx * np.dtype(np.float32).itemsize * _WORK_FACTOR
    rows = int(max(1, min(ny, memory_limit // bytes_per_row)))
    result = np.empty((ny, nx), dtype=np.float32)
    stack = np.empty((n_frames, rows, nx), dtype=np.float32)
    for y0 in range(0, ny, rows):
        y1 = min(ny, y0 + rows)
        block = stack[:, : y1 - y0]
        for i in range(n_frames):
            values = read_rows(i, y0, y1)
            if np.shape(values) != (y1 - y0, nx):
                raise ValueError(f"frame {i}: rows {y0}:{y1} have shape {np.shape(values)}, "
                                 f"expected {(y1 - y0, nx)}")
            block[i] = values
        result[y0:y1] = sigma_clipped_combine(block, method=method, sigma=sigma,
                                              maxiters=maxiters)
    return result
