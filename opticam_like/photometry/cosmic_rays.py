"""Cosmic rays on stars, found against the frame's PSF.

L.A.Cosmic (astroscrappy, run in calibration) protects stars with its fine-structure test, so a
hit on a star's core is often left unflagged. In forced photometry we know where every star is
and the frame's FWHM, so each star's cut-out can be fitted with the PSF and its sharp positive
residuals flagged: a pixel is a hit when its residual exceeds ``sigma`` times the noise (sky,
the star's Poisson noise and a PSF-mismatch term) *and* is sharp, i.e. at least ``sharpness``
of it stands above the median residual of its 8 neighbours (a neighbouring star's profile is
smooth and fails this; a one-pixel hit or a track passes). Neighbours of hits whose residual
exceeds ``grow_sigma`` join them (the faint ends of tracks).
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..flags import PhotFlag
from .kernels import cutouts
from .psf import GaussianProfile

__all__ = ["star_cosmic_rays"]


def star_cosmic_rays(data, pixel_flags, x, y, fwhm, sky_variance, *, sigma=5.0, mismatch=0.15,
                     sharpness=0.5, grow_sigma=2.5, radius=2.0, iterations=3):
    """Pixels hit by cosmic rays within ``radius`` FWHM of the given stars.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Background-subtracted image (e-).
    pixel_flags : ndarray of uint16, shape (ny, nx)
        Existing flags; flagged pixels are left out of the fits.
    x, y : ndarray, shape (N,)
        Star positions (pixels).
    fwhm : float
        Frame FWHM (pixels); the PSF is a pixel-integrated circular Gaussian of that FWHM.
    sky_variance : ndarray, shape (N,)
        Per-pixel background variance at each star (e-^2).
    sigma : float
        Detection threshold in units of the pixel noise.
    mismatch : float
        Fractional PSF-model error added to the noise (``(mismatch * model)^2``), so that
        seeing and shape differences on bright cores are not taken for hits.
    sharpness : float
        Minimum fraction of the residual above the median of its 8 neighbours.
    grow_sigma : float
        Threshold for the neighbours of hits.
    radius : float
        Half-size of the examined region, in FWHM.
    iterations : int
        Fits, each without the hits found so far.

    Returns
    -------
    ndarray of intp
        Flat indices (into ``data.ravel()``) of the hit pixels (unique, sorted). Stars with a
        saturated pixel in their cut-out are skipped (their points are flagged ``SATURATED``
        and a clipped core does not follow the PSF).

    References
    ----------
    van Dokkum, P. G. 2001, PASP 113, 1420 (the fine-structure idea of L.A.Cosmic).
    """
    if len(x) == 0:
        return np.zeros(0, dtype=np.intp)
    half = max(2, int(np.ceil(radius * fwhm)))
    stamps, ix0, iy0 = cutouts(data, x, y, half)
    flags, _, _ = cutouts(pixel_flags, x, y, half, fill_value=int(PhotFlag.MASKED))
    flags = flags.astype(np.int64)  # cut-outs of integer images come back as float
    offsets = np.arange(-half, half + 1, dtype=float)
    dx = offsets[None, None, :] + (ix0 + half - x)[:, None, None]
    dy = offsets[None, :, None] + (iy0 + half - y)[:, None, None]
    profile = GaussianProfile.from_fwhm(fwhm).render(dx, dy)
    saturated = np.any(flags & PhotFlag.SATURATED, axis=(1, 2))
    valid = (flags == 0) & np.isfinite(stamps) & ~saturated[:, None, None]
    values = np.where(valid, stamps, 0.0)
    variance0 = np.asarray(sky_variance, dtype=float)[:, None, None]
    hits = np.zeros(stamps.shape, dtype=bool)
    for _ in range(iterations):
        use = valid & ~hits
        amplitude = (np.sum(use * profile * values, axis=(1, 2))
                     / np.maximum(np.sum(use * profile**2, axis=(1, 2)), 1e-30))
        model = np.clip(amplitude, 0, None)[:, None, None] * profile
        noise = np.sqrt(variance0 + model + (mismatch * model) ** 2)
        residual = np.where(valid, values - model, 0.0)
        neighbours = _neighbour_median(residual)
        new = (valid & (residual > sigma * noise)
               & (residual - neighbours > sharpness * residual))
        if not (new & ~hits).any():
            break
        hits |= new
    grown = _dilate(hits) & valid & (residual > grow_sigma * noise)
    hits |= grown
    star, row, col = np.nonzero(hits)
    ny, nx = data.shape
    iy, ix = iy0[star] + row, ix0[star] + col
    inside = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    return np.unique(iy[inside] * nx + ix[inside])


def _neighbour_median(residual):
    """Median of the 8 neighbours of every pixel of each (N, k, k) stamp (edges padded)."""
    padded = np.pad(residual, ((0, 0), (1, 1), (1, 1)), mode="edge")
    windows = sliding_window_view(padded, (3, 3), axis=(1, 2)).reshape(*residual.shape, 9)
    return np.median(np.delete(windows, 4, axis=-1), axis=-1)


def _dilate(mask):
    """8-neighbour dilation of each (N, k, k) stamp."""
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    windows = sliding_window_view(padded, (3, 3), axis=(1, 2))
    return windows.any(axis=(-2, -1))

