"""Light of catalogued neighbours inside each source's aperture: the ``BLENDED`` flag.

For a source ``t`` measured with weights ``w`` over a region ``A`` around it (``w = 1`` in an
aperture; the PSF profile for optimal and PSF photometry), the light of a neighbour ``n`` of
flux ``F_n`` at offset ``D`` is predicted from the frame's PSF ``P``::

    c_t = sum_n F_n  int_A w(r) P(r + D_tn) dr  /  (F_t int_A w(r) P(r) dr)

the fraction of the source's measured flux that comes from its neighbours. The integrals use a
polar Gauss-Legendre rule on the region (8 radii x 24 angles, exact for the smooth PSF to far
better than the 1% threshold), on all pairs at once. Fluxes are the catalogue's (the stack's):
only their ratios enter.
"""

import math

import numpy as np
from scipy.spatial import cKDTree

from ..flags import PhotFlag

__all__ = ["BLEND_LIMIT", "neighbour_fraction", "blend_flags"]

BLEND_LIMIT = 0.01
"""A source is ``BLENDED`` when its neighbours are predicted to add more than this fraction."""
_REACH = 8.0
"""Neighbours further than this many PSF FWHM beyond the region are not considered (a Moffat of
beta 2.5 puts < 3e-4 of its flux in a 1.5 FWHM aperture 8 FWHM away)."""
_RADII, _RADIAL_WEIGHTS = np.polynomial.legendre.leggauss(8)
_ANGLES = 24


def _disc_rule():
    """Nodes (u, v) and area weights of a quadrature on the unit disc."""
    r = 0.5 * (_RADII + 1.0)
    wr = 0.5 * _RADIAL_WEIGHTS * r
    phi = 2.0 * math.pi * np.arange(_ANGLES) / _ANGLES
    u = (r[:, None] * np.cos(phi)).ravel()
    v = (r[:, None] * np.sin(phi)).ravel()
    w = np.repeat(wr * 2.0 * math.pi / _ANGLES, _ANGLES)
    return u, v, w


def neighbour_fraction(profile, x, y, flux, a, b=None, theta=0.0, weighted=False,
                       exclude=0.0):
    """Fraction of each source's measured flux predicted to come from its neighbours.

    Parameters
    ----------
    profile : object
        The frame's PSF: ``render(dx, dy)`` gives the unit-flux PSF per pixel at offsets
        ``(dx, dy)`` (any profile of :mod:`opticam_like.photometry.psf`), and ``fwhm`` (px).
    x, y : ndarray, shape (N,)
        Positions in the frame (px).
    flux : ndarray, shape (N,)
        Catalogue fluxes (any common scale); non-finite or negative ones count as 0.
    a : float
        Semi-major axis of the region (px; its radius for a circle).
    b : float, optional
        Semi-minor axis (default ``a``).
    theta : float
        Angle of the major axis (radians counter-clockwise from +x).
    weighted : bool
        Weight the region by the PSF (optimal and PSF photometry) instead of uniformly.
    exclude : float
        Neighbours closer than this (px) are not counted (e.g. fitted jointly).

    Returns
    -------
    ndarray, shape (N,)
        ``c_t`` of the module docstring; 0 without neighbours, inf for a source of zero flux
        with a contributing neighbour.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    flux = np.asarray(flux, dtype=float)
    flux = np.where(np.isfinite(flux) & (flux > 0), flux, 0.0)
    b = a if b is None else b
    n = len(x)
    fraction = np.zeros(n)
    finite = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    if len(finite) < 2:
        return fraction
    u, v, w = _disc_rule()
    cos, sin = math.cos(theta), math.sin(theta)
    px = a * u * cos - b * v * sin
    py = a * u * sin + b * v * cos
    area = w * a * b
    weight = area * profile.render(px, py) if weighted else area
    own = float(np.sum(weight * profile.render(px, py)))
    tree = cKDTree(np.column_stack([x[finite], y[finite]]))
    pairs = tree.query_pairs(max(a, b) + _REACH * profile.fwhm, output_type="ndarray")
    if not len(pairs):
        return fraction
    pairs = finite[np.concatenate([pairs, pairs[:, ::-1]])]
    target, other = pairs[:, 0], pairs[:, 1]
    dx, dy = x[target] - x[other], y[target] - y[other]
    keep = np.hypot(dx, dy) >= exclude
    target, other, dx, dy = target[keep], other[keep], dx[keep], dy[keep]
    if not len(target):
        return fraction
    shared = profile.render(px[None, :] + dx[:, None], py[None, :] + dy[:, None]) @ weight
    light = np.bincount(target, weights=flux[other] * shared, minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(light > 0, light / (flux * own), 0.0)
    return fraction


def blend_flags(frame, profile, a, b=None, theta=0.0, weighted=False, exclude=0.0):
    """``BLENDED`` where :func:`neighbour_fraction` exceeds :data:`BLEND_LIMIT`.

    Parameters
    ----------
    frame : MeasureInput
        Without ``catalog_flux`` nothing is flagged.
    profile, a, b, theta, weighted, exclude
        As in :func:`neighbour_fraction`.

    Returns
    -------
    ndarray of int32, shape (N,)
    """
    if frame.catalog_flux is None:
        return np.zeros(frame.n_sources, dtype=np.int32)
    fraction = neighbour_fraction(profile, frame.x, frame.y, frame.catalog_flux, a, b, theta,
                                  weighted, exclude)
    return np.where(fraction > BLEND_LIMIT, PhotFlag.BLENDED, 0).astype(np.int32)
