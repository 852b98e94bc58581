"""The CCD equation: the variance of an aperture flux in electrons.

References
----------
Merline, W. J. & Howell, S. B. 1995, Experimental Astronomy 6, 163, "A realistic model for
point-sources imaged on array detectors: the model and initial results".
Howell, S. B. 2006, Handbook of CCD Astronomy, 2nd ed., section 4.4.
"""

import numpy as np

__all__ = ["pixel_variance", "flux_variance", "level_variance", "MEDIAN_FACTOR"]

#: Variance of a sample median relative to the mean's, for Gaussian noise (pi / 2).
MEDIAN_FACTOR = np.pi / 2


def pixel_variance(sky, sky_rms, dark, read_noise, bias_subtracted):
    """Variance of one background pixel (e-^2).

    Parameters
    ----------
    sky : ndarray, shape (N,)
        Sky level per pixel at each source (e-), bias removed when ``bias_subtracted``.
    sky_rms : ndarray, shape (N,)
        Measured rms of the background at each source (e-).
    dark : float
        Dark electrons per pixel accumulated in the exposure.
    read_noise : float
        Read noise (e-); NaN when unknown.
    bias_subtracted : bool
        When True, the CCD equation's ``S + D + RN^2`` is used (the sky level is a photon count);
        otherwise the level still holds the bias, so the measured ``sky_rms^2`` (which contains
        exactly the sky, dark and read-noise terms) is used.

    Returns
    -------
    variance : ndarray, shape (N,)
    method : str
        ``'ccd'`` or ``'measured_rms'``, recorded in the table metadata.
    """
    sky = np.asarray(sky, dtype=float)
    if bias_subtracted and np.isfinite(read_noise):
        return np.clip(sky, 0, None) + max(dark, 0.0) + read_noise**2, "ccd"
    return np.asarray(sky_rms, dtype=float) ** 2, "measured_rms"


def level_variance(sigma_pixel2, n_sky, median=True):
    """Variance of a sky level estimated from ``n_sky`` pixels (e-^2 per pixel^2).

    ``sigma^2 k / n_sky`` with ``k = pi/2`` for a median (Gaussian noise), 1 for a mean;
    NaN where ``n_sky`` is 0.
    """
    k = MEDIAN_FACTOR if median else 1.0
    n_sky = np.where(np.asarray(n_sky) > 0, n_sky, np.nan)
    return np.asarray(sigma_pixel2, dtype=float) * k / n_sky


def flux_variance(flux, area, sigma_pixel2, n_sky, median=True, noise_area=None):
    """Variance of a sky-subtracted aperture flux (the CCD equation).

    ``var = F + A_n sigma^2 + A^2 sigma^2 k / n_sky``: source Poisson noise, the sky, dark and
    read noise of the aperture pixels, and the error of the sky level (``k = pi/2`` for a
    median). ``A`` is the aperture area; ``A_n = sum(w^2)`` its noise area for exact-overlap
    weights ``w`` (``A`` for whole pixels).

    Parameters
    ----------
    flux : ndarray, shape (N,)
        Source electrons (negative values contribute no Poisson variance).
    area : ndarray, shape (N,)
        Aperture area in pixels (sum of the exact overlap weights).
    sigma_pixel2 : ndarray, shape (N,)
        Per-pixel background variance (e-^2), from :func:`pixel_variance`.
    n_sky : ndarray, shape (N,)
        Number of pixels the sky level was estimated from.
    median : bool
        Whether the sky level is a median (adds the factor pi/2 to its error).
    noise_area : ndarray, shape (N,), optional
        Sum of the squared weights; default ``area``.

    Returns
    -------
    ndarray, shape (N,)
        Variance in e-^2.
    """
    noise_area = area if noise_area is None else noise_area
    return (np.clip(flux, 0, None) + noise_area * sigma_pixel2
            + area**2 * level_variance(sigma_pixel2, n_sky, median))
