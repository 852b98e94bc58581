"""Pixel-integrated point-spread functions rendered in small stamps.

Pixel ``(i, j)`` (row, column) covers ``[j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]`` (photutils
convention: the centre of pixel ``[0, 0]`` is ``(0, 0)``). A stamp holds the fraction of a unit
flux that falls in each pixel:

* Gaussian: exact, the product of differences of the error function at the pixel edges (the
  elliptical Gaussian is separable because its axes are the pixel axes).
* Moffat (Moffat 1969, A&A 3, 455; ``I(r) = (beta - 1) / (pi alpha^2) (1 + r^2/alpha^2)^-beta``):
  the mean of ``oversample x oversample`` (default 7 x 7) sub-pixel samples within ``2 FWHM``
  of the centre, where the profile is curved, of 3 x 3 samples within ``4 FWHM`` and the
  pixel-centre value beyond (error below 0.1 % of the peak pixel and, for ``beta >= 1.5``,
  2e-4 of the flux).

In both models ``fwhm`` is the geometric mean of the FWHMs along the axes; with ellipticity
``e = 1 - b/a`` the major axis is along x, or for the Moffat at the position angle ``theta``
(degrees from +x towards +y). A Moffat's FWHM along an axis of core width ``alpha_a`` is
``2 alpha_a sqrt(2^(1/beta) - 1)``.
"""

import math

import numpy as np
from scipy.special import erf

__all__ = ["psf_stamp", "stamp_radius", "peak_fraction", "moffat_alpha", "moffat_fwhm_axes"]

_GAUSSIAN_RADIUS = 4.0
"""Stamp half-size of a Gaussian, in FWHM along the major axis (9.4 sigma)."""
_MOFFAT_RADIUS = 8.0
"""Stamp half-size of a Moffat, in FWHM along the major axis."""
_MOFFAT_CORE = 2.0
"""Half-size of the supersampled core of a Moffat, in FWHM."""
_MOFFAT_WING = 4.0
"""Half-size of the 3 x 3 supersampled zone of a Moffat, in FWHM; pixel centres beyond."""
_MOFFAT_WING_OVERSAMPLE = 3
"""Sub-samples per axis of a Moffat between its core and ``_MOFFAT_WING``."""
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def moffat_alpha(fwhm, beta):
    """Moffat core width ``alpha`` for a FWHM: ``fwhm / (2 sqrt(2^(1/beta) - 1))``."""
    return fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def _axis_scales(ellipticity):
    q = 1.0 - ellipticity
    return 1.0 / math.sqrt(q), math.sqrt(q)


def stamp_radius(fwhm, psf, ellipticity=0.0):
    """Half-size in pixels of the square stamp of a PSF.

    Parameters
    ----------
    fwhm : float
        Geometric-mean FWHM in pixels.
    psf : {'gaussian', 'moffat'}
        The model.
    ellipticity : float
        ``1 - b/a``.

    Returns
    -------
    int
        The stamp spans ``2 * radius + 1`` pixels on each axis.
    """
    factor = _GAUSSIAN_RADIUS if psf == "gaussian" else _MOFFAT_RADIUS
    return int(math.ceil(factor * fwhm * _axis_scales(ellipticity)[0]))


def peak_fraction(fwhm, psf, beta=2.5, ellipticity=0.0):
    """Largest fraction of the flux that one pixel can receive (source at a pixel centre).

    Parameters
    ----------
    fwhm, psf, beta, ellipticity
        As in :func:`psf_stamp`.

    Returns
    -------
    float
        Exact for the Gaussian; the central intensity (an upper bound) for the Moffat.
    """
    sx, sy = _axis_scales(ellipticity)
    if psf == "gaussian":
        sigma = fwhm * _FWHM_TO_SIGMA
        return float(erf(0.5 / (math.sqrt(2.0) * sigma * sx))
                     * erf(0.5 / (math.sqrt(2.0) * sigma * sy)))
    alpha = moffat_alpha(fwhm, beta)
    return (beta - 1.0) / (math.pi * alpha * alpha * sx * sy)


def _gaussian(dx, dy, fwhm, ellipticity):
    sx, sy = _axis_scales(ellipticity)
    sigma = fwhm * _FWHM_TO_SIGMA

    def axis(d, scale):
        edges = erf((np.append(d - 0.5, d[-1] + 0.5)) / (math.sqrt(2.0) * sigma * scale))
        return 0.5 * np.diff(edges)

    return np.outer(axis(dy, sy), axis(dx, sx))


def _moffat_values(dx, dy, alpha_x, alpha_y, beta, theta=0.0):
    if theta == 0.0:
        r2 = (dx / alpha_x) ** 2 + (dy[:, None] / alpha_y) ** 2
    else:
        c, s = math.cos(math.radians(theta)), math.sin(math.radians(theta))
        dy = dy[:, None]
        r2 = ((c * dx + s * dy) / alpha_x) ** 2 + ((c * dy - s * dx) / alpha_y) ** 2
    return (beta - 1.0) / (math.pi * alpha_x * alpha_y) * (1.0 + r2) ** (-beta)


def _supersampled(dx, dy, ax, ay, beta, oversample, theta=0.0):
    offsets = (np.arange(oversample) + 0.5) / oversample - 0.5
    fine_x = (dx[:, None] + offsets).ravel()
    fine_y = (dy[:, None] + offsets).ravel()
    fine = _moffat_values(fine_x[None, :], fine_y, ax, ay, beta, theta)
    return fine.reshape(len(dy), oversample, len(dx), oversample).sum(axis=3).sum(axis=1) / (
        oversample * oversample)


def _moffat(dx, dy, fwhm, beta, ellipticity, oversample, theta=0.0):
    sx, sy = _axis_scales(ellipticity)
    alpha = moffat_alpha(fwhm, beta)
    ax, ay = alpha * sx, alpha * sy
    zone_sx, zone_sy = (sx, sy) if theta == 0.0 else (sx, sx)
    stamp = _moffat_values(dx[None, :], dy, ax, ay, beta, theta)
    for half_size, samples in ((_MOFFAT_WING, _MOFFAT_WING_OVERSAMPLE), (_MOFFAT_CORE, oversample)):
        zone_x = np.abs(dx) <= half_size * fwhm * zone_sx
        zone_y = np.abs(dy) <= half_size * fwhm * zone_sy
        stamp[np.ix_(zone_y, zone_x)] = _supersampled(dx[zone_x], dy[zone_y], ax, ay, beta,
                                                      samples, theta)
    return stamp


def moffat_fwhm_axes(fwhm, ellipticity):
    """FWHM along the major and minor axes of an elliptical PSF.

    Parameters
    ----------
    fwhm : float or ndarray
        Geometric-mean FWHM ``sqrt(major * minor)``.
    ellipticity : float or ndarray
        ``1 - minor / major``.

    Returns
    -------
    (float or ndarray, float or ndarray)
        ``fwhm / sqrt(1 - e)`` and ``fwhm * sqrt(1 - e)``.
    """
    q = 1.0 - np.asarray(ellipticity, float)
    return fwhm / np.sqrt(q), fwhm * np.sqrt(q)


def psf_stamp(x, y, fwhm, shape, psf="gaussian", beta=2.5, ellipticity=0.0, oversample=7,
              theta=0.0):
    """Pixel-integrated PSF of unit flux around ``(x, y)``, cut to the frame.

    Parameters
    ----------
    x, y : float
        Centre in 0-based pixel coordinates.
    fwhm : float
        Geometric-mean FWHM in pixels.
    shape : (int, int)
        Frame shape ``(ny, nx)``.
    psf : {'gaussian', 'moffat'}
        The model.
    beta : float
        Moffat index (> 1); ignored for the Gaussian.
    ellipticity : float
        ``1 - b/a``, major axis along x unless ``theta`` is given.
    oversample : int
        Sub-samples per axis in the Moffat core.
    theta : float
        Position angle of the major axis in degrees from +x towards +y (Moffat only; default
        0, the major axis along x).

    Returns
    -------
    (slice, slice, ndarray)
        Row and column slices of the frame and the stamp (float64, shape of the slices): the
        fraction of the flux in each pixel. Empty slices when the stamp misses the frame.
    """
    radius = stamp_radius(fwhm, psf, ellipticity)
    ix, iy = int(round(x)), int(round(y))
    x0, x1 = max(ix - radius, 0), min(ix + radius + 1, shape[1])
    y0, y1 = max(iy - radius, 0), min(iy + radius + 1, shape[0])
    if x1 <= x0 or y1 <= y0:
        return slice(0, 0), slice(0, 0), np.zeros((0, 0))
    dx = np.arange(x0, x1) - x
    dy = np.arange(y0, y1) - y
    if psf == "gaussian":
        stamp = _gaussian(dx, dy, fwhm, ellipticity)
    else:
        stamp = _moffat(dx, dy, fwhm, beta, ellipticity, oversample, theta)
    return slice(y0, y1), slice(x0, x1), stamp
