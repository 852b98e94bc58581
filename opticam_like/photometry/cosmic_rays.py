"""Cosmic rays on stars, found against the frame's measured PSF.

L.A.Cosmic (astroscrappy, run in calibration) protects stars with its fine-structure test, so a
hit on a star's core is often left unflagged. In forced photometry we know where every star is
and the frame's PSF (the elliptical Moffat fitted per frame,
:func:`~opticam_like.photometry.moffat.measure_psf`), so each star's cut-out is fitted by
weighted linear least squares with that PSF, its derivatives in x and y (the centre is refined
by a few Gauss-Newton steps) and a constant (a residual background). Each pixel is examined in
the stamp of its nearest star only, so that a neighbour does not spoil the fit. A pixel is a
hit when its residual stands above the median residual of its 8 neighbours by ``sigma`` times
the pixel noise (background variance, the star's Poisson noise and a PSF-mismatch term) *and*
is sharper than a star: after the best-fitting PSF centred near the pixel is taken from the
residuals of the 5 x 5 pixels around it (with a constant), the pixel still stands ``sigma`` times its noise above
it (an uncatalogued companion, a neighbouring star's profile or a PSF mismatch fails this; a
one-pixel hit or a track passes). Neighbours of hits whose residual exceeds ``grow_sigma`` join
them (the faint ends of tracks).

Pixels that L.A.Cosmic flagged on a star are judged the same way: confirmed when the PSF fit
(made without them) leaves a residual above ``grow_sigma`` times the noise, cleared otherwise.
At a FWHM of 2-3 px L.A.Cosmic takes the sharp cores of faint stars for hits (its
fine-structure test sees an undersampled core as structure), which flagged 2-3 % of the points
of realistic nights on its own.

A circular Gaussian of the frame FWHM in place of the measured PSF leaves the wings and the
ellipticity of a Moffat star as residuals many sigma high on bright cores: on realistic nights
that flagged 5-18 % of all points.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.spatial import cKDTree

from ..flags import PhotFlag
from .kernels import cutouts
from .psf import GaussianProfile

__all__ = ["star_cosmic_rays"]

_SHIFT = 0.05
"""Step (px) of the centred differences that give the PSF's derivatives."""
_CENTRING_STEPS = 3
"""Gauss-Newton steps on each star's centre per fit (a blended catalogue position can be off by
more than a pixel, where one linear step is not enough)."""
_MAX_SHIFT = 2.0
"""Largest correction to a star's position (px)."""


def star_cosmic_rays(data, pixel_flags, x, y, fwhm, sky_variance, *, psf=None, sigma=5.0,
                     mismatch=0.02, grow_sigma=2.5, radius=2.0, iterations=3):
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
        Frame FWHM (pixels): the size of the examined region and, without ``psf``, the PSF
        (a pixel-integrated circular Gaussian of that FWHM).
    sky_variance : ndarray, shape (N,)
        Per-pixel background variance at each star (e-^2).
    psf : profile with a ``render(dx, dy)`` method, optional
        The frame's measured PSF (a :class:`~opticam_like.photometry.moffat.MoffatProfile`).
    sigma : float
        Detection threshold in units of the pixel noise.
    mismatch : float
        Fractional PSF-model error added to the noise (``(mismatch * model)^2``): the star's
        own shape differs a little from the frame's median PSF.
    grow_sigma : float
        Threshold for the neighbours of hits.
    radius : float
        Half-size of the examined region, in FWHM.
    iterations : int
        Fits, each without the hits found so far.

    Returns
    -------
    hits : ndarray of intp
        Flat indices (into ``data.ravel()``) of the hit pixels (unique, sorted): new hits and
        the pixels flagged ``COSMIC_RAY`` (by L.A.Cosmic) whose residual exceeds
        ``grow_sigma`` times the noise (confirmed).
    cleared : ndarray of intp
        Pixels flagged ``COSMIC_RAY`` alone near a star that the PSF explains (residual below
        ``grow_sigma`` times the noise): an undersampled star core that L.A.Cosmic took for a
        hit. Their flag should be removed so that they count in the sums.

    Stars with a saturated pixel in their cut-out are skipped (their points are flagged
    ``SATURATED`` and a clipped core does not follow the PSF).

    References
    ----------
    van Dokkum, P. G. 2001, PASP 113, 1420 (the fine-structure idea of L.A.Cosmic).
    """
    if len(x) == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    profile_model = GaussianProfile.from_fwhm(fwhm) if psf is None else psf
    half = max(2, int(np.ceil(radius * fwhm)))
    stamps, ix0, iy0 = cutouts(data, x, y, half)
    flags, _, _ = cutouts(pixel_flags, x, y, half, fill_value=int(PhotFlag.MASKED))
    flags = flags.astype(np.int64)  # cut-outs of integer images come back as float
    offsets = np.arange(-half, half + 1, dtype=float)
    dx = offsets[None, None, :] + (ix0 + half - x)[:, None, None]
    dy = offsets[None, :, None] + (iy0 + half - y)[:, None, None]
    render = profile_model.render
    window = np.meshgrid(np.arange(-2.0, 3.0), np.arange(-2.0, 3.0))
    bump = np.stack([render(*window), render(window[0] - _SHIFT, window[1])
                     - render(window[0] + _SHIFT, window[1]),
                     render(window[0], window[1] - _SHIFT)
                     - render(window[0], window[1] + _SHIFT), np.ones((5, 5))])  # (4, 5, 5)
    saturated = np.any(flags & PhotFlag.SATURATED, axis=(1, 2))
    nearest = cKDTree(np.column_stack([x, y])).query(
        np.stack(np.broadcast_arrays(dx + x[:, None, None], dy + y[:, None, None]), axis=-1))[1]
    own = nearest == np.arange(len(x))[:, None, None]
    valid = (flags == 0) & np.isfinite(stamps) & ~saturated[:, None, None] & own
    candidate = ((flags == PhotFlag.COSMIC_RAY) & np.isfinite(stamps)
                 & ~saturated[:, None, None] & own)
    values = np.where(valid | candidate, stamps, 0.0)
    variance0 = np.asarray(sky_variance, dtype=float)[:, None, None]
    hits = np.zeros(stamps.shape, dtype=bool)
    model = np.zeros(stamps.shape)
    shift = np.zeros((2, len(x), 1, 1))
    for _ in range(iterations):
        weight = (valid & ~hits) / (variance0 + np.clip(model, 0, None))
        for _ in range(_CENTRING_STEPS):
            coefficients, model, profile = _linear_fit(render, dx - shift[0], dy - shift[1],
                                                       values, weight)
            step = coefficients[:, 1:3] / np.where(coefficients[:, :1] > 0, coefficients[:, :1],
                                                   np.inf)
            shift = np.clip(shift + step.T[:, :, None, None], -_MAX_SHIFT, _MAX_SHIFT)
        star = np.clip(coefficients[:, 0], 0, None)[:, None, None] * profile
        noise = np.sqrt(variance0 + np.clip(model, 0, None) + (mismatch * star) ** 2)
        residual = np.where(valid | candidate, values - model, 0.0)
        neighbours = _neighbour_median(residual)
        new = valid & (residual - neighbours > sigma * noise)
        new[new] = _sharper_than_psf(residual, noise, bump, np.nonzero(new), sigma)
        if not (new & ~hits).any():
            break
        hits |= new
    grown = _dilate(hits) & valid & (residual > grow_sigma * noise)
    hits |= grown
    confirmed = candidate & (residual > grow_sigma * noise)
    examined = _flat_indices(candidate, ix0, iy0, data.shape)
    hits = _flat_indices(hits | confirmed, ix0, iy0, data.shape)
    return hits, np.setdiff1d(examined, hits)


def _linear_fit(render, dx, dy, values, weight):
    """Weighted least squares of each (N, k, k) stamp on the PSF at offsets ``(dx, dy)``, its
    derivatives along the star's x and y, and a constant.

    Returns the coefficients (N, 4), the model (N, k, k) and the unit-flux profile (N, k, k).
    """
    profile = render(dx, dy)
    basis = np.stack([profile,
                      (render(dx - _SHIFT, dy) - render(dx + _SHIFT, dy)) / (2 * _SHIFT),
                      (render(dx, dy - _SHIFT) - render(dx, dy + _SHIFT)) / (2 * _SHIFT),
                      np.ones_like(profile)], axis=1)
    normal = np.einsum("npij,nqij,nij->npq", basis, basis, weight)
    rhs = np.einsum("npij,nij,nij->np", basis, values, weight)
    ridge = 1e-12 * np.trace(normal, axis1=1, axis2=2) + 1e-30  # empty stamps stay solvable
    normal += ridge[:, None, None] * np.eye(4)
    coefficients = np.linalg.solve(normal, rhs[..., None])[..., 0]
    return coefficients, np.einsum("np,npij->nij", coefficients, basis), profile


def _sharper_than_psf(residual, noise, bump, seeds, sigma):
    """Whether each seed pixel stands ``sigma`` noise above the PSF fitted around it.

    ``bump`` (4, 5, 5) holds the PSF centred on a pixel, its x and y derivatives and a
    constant (the smooth part of a misfit star's residual); it is
    fitted by weighted linear least squares to the residuals of the 5 x 5 pixels around each
    seed ``(star, row, col)`` and the seed's residual after it is compared with its noise.
    """
    star, row, col = seeds
    res = np.pad(residual, ((0, 0), (2, 2), (2, 2)))
    sig = np.pad(noise, ((0, 0), (2, 2), (2, 2)), mode="edge")
    rows = row[:, None, None] + np.arange(5)[None, :, None]
    cols = col[:, None, None] + np.arange(5)[None, None, :]
    r = res[star[:, None, None], rows, cols]
    w = 1.0 / sig[star[:, None, None], rows, cols] ** 2
    normal = np.einsum("pij,qij,nij->npq", bump, bump, w) + 1e-30 * np.eye(len(bump))
    coefficients = np.linalg.solve(normal, np.einsum("pij,nij,nij->np", bump, r, w)[..., None])
    fitted = np.einsum("np,p->n", coefficients[..., 0], bump[:, 2, 2])
    return r[:, 2, 2] - fitted > sigma * np.sqrt(1.0 / w[:, 2, 2])


def _flat_indices(mask, ix0, iy0, shape):
    """Unique flat indices into an image of ``shape`` of the True pixels of (N, k, k) stamps."""
    star, row, col = np.nonzero(mask)
    ny, nx = shape
    iy, ix = iy0[star] + row, ix0[star] + col
    inside = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    return np.unique(iy[inside] * nx + ix[inside]).astype(np.intp)


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

