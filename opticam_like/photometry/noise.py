"""The CCD equation: the variance of an aperture flux in electrons.

References
----------
Merline, W. J. & Howell, S. B. 1995, Experimental Astronomy 6, 163, "A realistic model for
point-sources imaged on array detectors: the model and initial results".
Howell, S. B. 2006, Handbook of CCD Astronomy, 2nd ed., section 4.4.
Young, A. T. 1967, AJ 72, 747 (scintillation).
Osborn, J., Föhring, D., Dhillon, V. S., Wilson, R. W. 2015, MNRAS 452, 1707, eq. 7.
"""

import math

import numpy as np

__all__ = ["pixel_variance", "flux_variance", "level_variance", "MEDIAN_FACTOR",
           "scintillation_sigma", "add_scintillation", "frame_airmass", "OSBORN_C_Y"]

OSBORN_C_Y = 1.5
"""Default empirical coefficient ``C_Y`` of Osborn et al. (2015): Young's formula underestimates
the median scintillation at the major observatories; their coefficients scatter around 1.5."""
_SCALE_HEIGHT = 8000.0
"""Scale height of the turbulence (m)."""

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


def scintillation_sigma(diameter, exposure, airmass, altitude, c_y=OSBORN_C_Y,
                        scale_height=_SCALE_HEIGHT):
    """Relative RMS of a star's flux due to scintillation (Young 1967, Osborn et al. 2015).

    ``sigma^2 = 10e-6 C_Y^2 D^(-4/3) t^(-1) X^3 exp(-2 h / H)``

    Parameters
    ----------
    diameter : float
        Telescope aperture diameter ``D`` (m).
    exposure : float or ndarray
        Exposure time ``t`` (s).
    airmass : float or ndarray
        Airmass ``X``.
    altitude : float
        Site altitude ``h`` (m).
    c_y : float
        Empirical coefficient ``C_Y`` (default 1.5; 1 is Young's original formula).
    scale_height : float
        Scale height ``H`` of the turbulence (m, default 8000).

    Returns
    -------
    float or ndarray
        Fractional ``sigma``, broadcast over ``exposure`` and ``airmass``.

    Raises
    ------
    ValueError
        If the diameter, an exposure or an airmass is not positive.

    Notes
    -----
    ``10e-6`` is Young's constant 0.09 cm^(2/3) squared in metres for an exposure of ``2 t``.
    Valid for exposures longer than the crossing time of the turbulence over the aperture and
    airmass below ~3 (unsaturated scintillation).

    Examples
    --------
    >>> round(float(scintillation_sigma(2.1, 1.0, 1.0, 2800.0)), 5)
    0.00204
    """
    exposure = np.asarray(exposure, float)
    airmass = np.asarray(airmass, float)
    if not diameter > 0 or np.any(~(exposure > 0)) or np.any(~(airmass > 0)):
        raise ValueError(f"scintillation_sigma: diameter ({diameter}), exposure and airmass "
                         "must be > 0")
    variance = (10e-6 * c_y**2 * diameter ** (-4.0 / 3.0) / exposure * airmass**3
                * math.exp(-2.0 * altitude / scale_height))
    return np.sqrt(variance)


def frame_airmass(time, location, ra, dec):
    """Airmass ``sec z`` of a target (astropy ``AltAz``, offline Earth-orientation tables).

    Parameters
    ----------
    time : astropy.time.Time
        Mid-exposure time(s).
    location : astropy.coordinates.EarthLocation
    ra, dec : float
        Target coordinates (deg, ICRS).

    Returns
    -------
    float or ndarray
        ``1 / sin(altitude)``; NaN while the target is below the horizon.
    """
    from astropy import units as u
    from astropy.coordinates import AltAz, SkyCoord

    from ..timing import offline_iers

    with offline_iers():
        altaz = SkyCoord(ra * u.deg, dec * u.deg).transform_to(
            AltAz(obstime=time, location=location))
    sin_alt = np.sin(altaz.alt.radian)
    return np.where(sin_alt > 0, 1.0 / np.where(sin_alt > 0, sin_alt, 1.0), np.nan)[()]


def add_scintillation(flux, variance, sigma, method):
    """Add the scintillation variance ``(sigma F)^2`` to flux variances.

    Parameters
    ----------
    flux, variance : ndarray, shape (N,)
        Fluxes (e-; negative ones get no scintillation) and their variances (e-^2).
    sigma : float
        Relative scintillation RMS of the frame (:func:`scintillation_sigma`; 0: none).
    method : str
        The noise method recorded so far (``'ccd'`` or ``'measured_rms'``).

    Returns
    -------
    variance : ndarray, shape (N,)
    method : str
        ``method + '+scintillation'`` when ``sigma > 0``.
    """
    if not sigma > 0:
        return variance, method
    return variance + (sigma * np.clip(flux, 0, None)) ** 2, f"{method}+scintillation"
