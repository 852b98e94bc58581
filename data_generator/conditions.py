"""Observing conditions of the night, per camera and frame: start times, seeing and sky.

* Start times: frame ``i`` of camera ``k`` starts ``i * cadence + k * readout_offset`` seconds
  after the night start, rounded to the microsecond (the precision of the headers), so the header
  times and the truth agree exactly.
* Seeing: the FWHM is common to all cameras (same atmosphere) up to a band factor (bluer filters
  slightly larger, +-5 % across the filters) and a small independent term per camera:
  ``fwhm * band * (1 + scatter * (0.6 * walk + 0.8 * noise) + 0.2 * scatter * own)`` where
  ``walk`` is a standardised random walk (the slow trend) and ``noise``, ``own`` are white.
  With ``pixel_scales`` the FWHM of camera ``k`` (in its pixels) is further multiplied by
  ``pixel_scales[0] / pixel_scales[k]``.
* Sky: ``sky[filter] * (1 + sky_trend * u)`` with ``u`` going from 0 to 1 over the run.
* PSF shape: ``beta`` drawn once per night uniformly in ``beta_range`` (else ``beta``); the
  ellipticity is a slow random walk mapped into ``ellipticity_range`` (else ``ellipticity``);
  the position angle of the major axis in field coordinates goes linearly from ``psf_angle``
  to ``psf_angle + psf_angle_rotation``. All common to the cameras (same atmosphere and
  telescope).
* Transparency, airmass and scintillation: see :mod:`data_generator.atmosphere`.
"""

from dataclasses import dataclass

import numpy as np
from astropy.coordinates import Angle
from astropy.time import TimeDelta

from .atmosphere import airmass, cloud_transparency, scintillation_sigma
from .streams import Stream, random_stream

__all__ = ["NightConditions", "night_conditions", "frame_offsets"]

_MIN_FWHM_FRACTION = 0.3
_MAX_AIRMASS = 1.0 / np.sin(np.radians(10.0))
"""Largest airmass (10 deg altitude) for which the scintillation formula is used."""


def frame_offsets(parameters, n_images, camera_index):
    """Start of each frame of a camera in seconds since the night start.

    Parameters
    ----------
    parameters : SimulationParameters
    n_images : int
    camera_index : int

    Returns
    -------
    ndarray (n_images,)
        Rounded to the microsecond.
    """
    t = np.arange(n_images) * parameters.cadence + camera_index * parameters.readout_offset
    return np.round(t * 1e6) / 1e6


def _standardised(values):
    values = values - values.mean()
    std = values.std()
    return values / std if std > 0 else values


@dataclass(frozen=True)
class NightConditions:
    """Per-camera, per-frame conditions (arrays of shape ``(n_cameras, n_images)``).

    Attributes
    ----------
    t_start : ndarray
        Exposure starts, seconds since the night start.
    fwhm : ndarray
        Geometric-mean PSF FWHM in pixels.
    sky : ndarray
        Sky electrons per pixel before the flat field.
    progress : ndarray (n_images,)
        Fraction of the run, 0 at the first frame and 1 at the last.
    beta : float
        Moffat index of the night.
    ellipticity : ndarray (n_images,)
        ``1 - b/a`` of the PSF.
    psf_angle : ndarray (n_images,)
        Position angle of the PSF major axis in field coordinates, degrees.
    transparency : ndarray (n_images,)
        Fraction of the stars' light that reaches the telescope (clouds).
    airmass : ndarray
        Airmass of the target at mid-exposure.
    scintillation : ndarray
        Relative RMS of the scintillation (0 when ``scintillation`` is off).
    """

    t_start: np.ndarray
    fwhm: np.ndarray
    sky: np.ndarray
    progress: np.ndarray
    beta: float
    ellipticity: np.ndarray
    psf_angle: np.ndarray
    transparency: np.ndarray
    airmass: np.ndarray
    scintillation: np.ndarray


def night_conditions(parameters, n_images):
    """Draw the conditions of a night.

    Parameters
    ----------
    parameters : SimulationParameters
    n_images : int

    Returns
    -------
    NightConditions
    """
    p = parameters
    n_cameras = p.n_cameras
    progress = np.arange(n_images) / max(n_images - 1, 1)
    rng = random_stream(p.seed, Stream.SEEING, 0)
    walk = _standardised(np.cumsum(rng.standard_normal(n_images)))
    common = p.fwhm_scatter * (0.6 * walk + 0.8 * rng.standard_normal(n_images))
    fwhm = np.empty((n_cameras, n_images))
    sky = np.empty((n_cameras, n_images))
    t_start = np.empty((n_cameras, n_images))
    for k, band in enumerate(p.filters):
        band_factor = 1.0 + 0.1 * (0.5 - k / (n_cameras - 1)) if n_cameras > 1 else 1.0
        own = 0.2 * p.fwhm_scatter * random_stream(
            p.seed, Stream.SEEING, 1 + k).standard_normal(n_images)
        fwhm[k] = np.maximum(p.fwhm * band_factor * (1.0 + common + own),
                             _MIN_FWHM_FRACTION * p.fwhm)
        if p.pixel_scales is not None:
            fwhm[k] *= p.camera_scale(k)
        sky[k] = p.sky[band] * (1.0 + p.sky_trend * progress)
        t_start[k] = frame_offsets(p, n_images, k)
    return NightConditions(t_start=t_start, fwhm=fwhm, sky=sky, progress=progress,
                           **_atmosphere(p, t_start, progress))


def _atmosphere(parameters, t_start, progress):
    """PSF shape, transparency, airmass and scintillation (own random streams)."""
    p = parameters
    n_images = len(progress)
    beta = (random_stream(p.seed, Stream.ATMOSPHERE, 0).uniform(*p.beta_range)
            if p.beta_range is not None else p.beta)
    if p.ellipticity_range is not None:
        walk = np.cumsum(random_stream(p.seed, Stream.ATMOSPHERE, 1).standard_normal(n_images))
        span = walk.max() - walk.min()
        level = (walk - walk.min()) / span if span > 0 else np.full(n_images, 0.5)
        low, high = p.ellipticity_range
        ellipticity = low + (high - low) * level
    else:
        ellipticity = np.full(n_images, float(p.ellipticity))
    psf_angle = p.psf_angle + p.psf_angle_rotation * progress
    transparency = cloud_transparency(progress, p.cloud_transparency, p.cloud_duration,
                                      random_stream(p.seed, Stream.ATMOSPHERE, 2))
    ra, dec = Angle(p.ra, unit="hourangle").deg, Angle(p.dec, unit="deg").deg
    times = p.start + TimeDelta(t_start + p.exposure / 2.0, format="sec")
    x = airmass(times, ra, dec, p.site[0], p.site[1])
    if p.scintillation and not np.all(x <= _MAX_AIRMASS):
        raise ValueError(f"scintillation: the target is below 10 deg of altitude (airmass > "
                         f"{_MAX_AIRMASS:.2f}) during the night; change start_time, ra or dec")
    scintillation = (scintillation_sigma(p.telescope_diameter, p.exposure, x, p.site[2],
                                         p.scintillation_coefficient)
                     if p.scintillation else np.zeros_like(x))
    return dict(beta=float(beta), ellipticity=ellipticity, psf_angle=psf_angle,
                transparency=transparency, airmass=x, scintillation=scintillation)
