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

The work is done by the C kernel ``opticam_like.background._boxstats``, in
one pass over the pixels of each box for most boxes: it histograms them (512
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

import warnings
from dataclasses import dataclass

import numpy as np
from astropy.utils.exceptions import AstropyUserWarning

from opticam_like.background import _boxstats

__all__ = ["BoxGrid", "BoxStatistics", "box_statistics"]

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
        Boxes computed without a core, from all their values (a diagnostic
        of the kernel's fast path; the results are the same).
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
    """
    data, invalid = _kernel_inputs(data, invalid)
    size = grid.mesh_shape[0] * grid.mesh_shape[1]
    bkg = np.empty(size)
    rms = np.empty(size)
    n_good = np.empty(size, dtype=np.int64)
    n_nonfinite, n_coreless = _boxstats.box_statistics(
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
