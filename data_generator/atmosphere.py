"""The atmosphere above the telescope: airmass, scintillation and passing clouds.

* Airmass: ``X = sec z`` (plane-parallel atmosphere) of the target at mid-exposure, from the
  mean sidereal time (IAU 1982 GMST, Meeus 1998, *Astronomical Algorithms*, eq. 12.4; no
  UT1-UTC or precession: a few arcminutes, irrelevant to the airmass of a simulation).
* Scintillation: :func:`scintillation_sigma`, Young (1967) with the Osborn et al. (2015)
  empirical correction. The simulator multiplies each star's flux in each frame by
  ``1 + sigma N(0, 1)``, drawn independently per star, camera and frame. Scintillation is
  correlated between stars closer than the isoplanatic angle (a few arcsec) and, in the
  geometric regime of a 2 m telescope, between bands; drawing it independently is the
  conservative choice for tests of a noise model (no fluctuation cancels in a differential
  light curve).
* Clouds: the transparency is 1 except over a stretch of ``cloud_duration`` of the run (start
  drawn from the seed), where it falls with cosine edges (each 20 % of the stretch) to a floor
  that wanders between ``cloud_transparency`` and twice that (patchy cloud), reaching
  ``cloud_transparency`` in at least one frame when the stretch spans a few frames. It is grey
  and common to all cameras.
"""

import math

import numpy as np

__all__ = ["scintillation_sigma", "airmass", "cloud_transparency", "OSBORN_C_Y"]

OSBORN_C_Y = 1.5
"""Default ``C_Y``: Osborn et al. (2015) find that Young's formula underestimates the median
scintillation at the major observatories; their empirical coefficients (Table 1) scatter
around 1.5."""

_SCALE_HEIGHT = 8000.0
_CLOUD_EDGE = 0.2


def scintillation_sigma(diameter, exposure, airmass, altitude, c_y=OSBORN_C_Y,
                        scale_height=_SCALE_HEIGHT):
    """Relative RMS of a star's flux due to scintillation (Young 1967, Osborn et al. 2015).

    ``sigma^2 = 10e-6 C_Y^2 D^(-4/3) t^(-1) X^3 exp(-2 h / H)``

    Parameters
    ----------
    diameter : float
        Telescope diameter ``D`` in metres (2.1 for the SPM telescope of OPTICAM).
    exposure : float or ndarray
        Exposure time ``t`` in seconds.
    airmass : float or ndarray
        Airmass ``X``.
    altitude : float
        Site altitude ``h`` in metres (about 2800 for San Pedro Martir).
    c_y : float
        Empirical coefficient ``C_Y`` of Osborn et al. (2015) (default :data:`OSBORN_C_Y`,
        1.5; ``C_Y = 1`` is Young's original formula).
    scale_height : float
        Scale height ``H`` of the turbulence in metres (default 8000).

    Returns
    -------
    float or ndarray
        ``sigma`` (fractional, e.g. 0.002 = 0.2 %), broadcast over ``exposure`` and ``airmass``.

    Raises
    ------
    ValueError
        If the diameter, an exposure or an airmass is not positive.

    Notes
    -----
    ``10e-6`` (= 1e-5) is Young's constant 0.09 cm^(2/3) squared, converted to metres, for
    an exposure of ``2 t``. Valid for exposures longer than the crossing time of the
    turbulence over the aperture (about ``D / 10 m/s``) and long-exposure, non-saturated
    scintillation (airmass below ~3).

    References
    ----------
    Young, A. T. 1967, AJ 72, 747; Osborn, J., Föhring, D., Dhillon, V. S., Wilson, R. W.
    2015, MNRAS 452, 1707, eq. 7.

    Examples
    --------
    >>> round(float(scintillation_sigma(2.1, 1.0, 1.0, 2800.0)), 5)
    0.00204
    """
    exposure = np.asarray(exposure, float)
    airmass = np.asarray(airmass, float)
    if diameter <= 0 or np.any(exposure <= 0) or np.any(airmass <= 0):
        raise ValueError("scintillation_sigma: diameter, exposure and airmass must be > 0")
    variance = (10e-6 * c_y ** 2 * diameter ** (-4.0 / 3.0) / exposure * airmass ** 3
                * math.exp(-2.0 * altitude / scale_height))
    return np.sqrt(variance)


def airmass(t_utc, ra_deg, dec_deg, longitude_deg, latitude_deg):
    """Plane-parallel airmass ``sec z`` of a target.

    Parameters
    ----------
    t_utc : astropy.time.Time
        Times (array).
    ra_deg, dec_deg : float
        Target coordinates in degrees.
    longitude_deg, latitude_deg : float
        Site, longitude east positive.

    Returns
    -------
    ndarray
        Airmass, shape of ``t_utc``; NaN while the target is below the horizon.
    """
    gmst = 280.46061837 + 360.98564736629 * (np.asarray(t_utc.utc.jd, float) - 2451545.0)
    hour_angle = np.deg2rad(gmst + longitude_deg - ra_deg)
    lat, dec = np.deg2rad(latitude_deg), np.deg2rad(dec_deg)
    sin_alt = np.sin(lat) * np.sin(dec) + np.cos(lat) * np.cos(dec) * np.cos(hour_angle)
    return np.where(sin_alt > 0, 1.0 / np.where(sin_alt > 0, sin_alt, 1.0), np.nan)


def cloud_transparency(progress, depth_floor, duration, rng):
    """Transparency of each frame with one passing cloud.

    Parameters
    ----------
    progress : ndarray (n_images,)
        Fraction of the run (0 to 1).
    depth_floor : float
        Lowest transparency (1: no cloud, all ones returned).
    duration : float
        Fraction of the run the cloud covers.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray (n_images,)
        Transparency in ``[depth_floor, 1]``.
    """
    transparency = np.ones(len(progress))
    if depth_floor >= 1.0:
        return transparency
    start = rng.uniform(0.1, max(0.9 - duration, 0.1))
    u = (progress - start) / duration
    inside = (u >= 0) & (u <= 1)
    edge = np.clip(np.minimum(u, 1 - u) / _CLOUD_EDGE, 0.0, 1.0)
    depth = 0.5 - 0.5 * np.cos(np.pi * edge)
    walk = np.cumsum(rng.standard_normal(len(progress)))
    core = inside & (edge >= 1.0)
    floor = np.full(len(progress), depth_floor)
    if core.any():
        patch = np.clip(walk - walk[core].min(), 0.0, None)
        patch /= max(patch[inside].max(), 1e-12)
        floor = depth_floor * (1.0 + patch)
    transparency[inside] = 1.0 - depth[inside] * (1.0 - floor[inside])
    return transparency
