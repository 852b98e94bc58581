"""FITS headers of OPTICAM-like frames (primary HDU) and their time stamps.

Times are UTC starts of the exposure with microsecond precision: ``GPSTIME`` and ``UT`` as
``'YYYY-MM-DD HH:MM:SS.ffffff'``, ``DATE-OBS`` as ``'YYYY-MM-DDTHH:MM:SS.ffffff'``. ``RA`` and
``DEC`` are sexagesimal strings as written by a telescope control system.
"""

import numpy as np
from astropy.io import fits
from astropy.time import TimeDelta

__all__ = ["start_times", "frame_header"]


def start_times(parameters, offsets):
    """ISO strings of exposure starts.

    Parameters
    ----------
    parameters : SimulationParameters
    offsets : ndarray
        Seconds since the night start (microsecond-rounded).

    Returns
    -------
    (ndarray of str, ndarray of str)
        ``'YYYY-MM-DD HH:MM:SS.ffffff'`` and ``'YYYY-MM-DDTHH:MM:SS.ffffff'``.
    """
    times = parameters.start + TimeDelta(np.asarray(offsets, float), format="sec")
    times.precision = 6
    return np.atleast_1d(times.iso), np.atleast_1d(times.isot)


def frame_header(parameters, camera_index, image_type, exposure, iso, isot, object_name):
    """The primary header of one frame.

    Parameters
    ----------
    parameters : SimulationParameters
    camera_index : int
    image_type : {'object', 'bias', 'dark', 'flat'}
        ``IMAGETYP``.
    exposure : float
        ``EXPOSURE`` in seconds.
    iso, isot : str
        Exposure start as from :func:`start_times`.
    object_name : str
        ``OBJECT``.

    Returns
    -------
    astropy.io.fits.Header
        Without ``CAMERA`` when ``parameters.camera_keyword`` is False.
    """
    p = parameters
    camera = [("CAMERA", p.cameras[camera_index], "camera")] if p.camera_keyword else []
    return fits.Header([
        ("INSTRUME", "OPTICAM", "instrument"),
        ("OBSERVAT", p.observatory, "observatory"),
        *camera,
        ("FILTER", p.filters[camera_index], "filter"),
        ("BINNING", f"{p.binning}x{p.binning}", "binning"),
        ("IMAGETYP", image_type, "image type"),
        ("OBJECT", object_name, "object name"),
        ("RA", p.ra, "target right ascension (hh:mm:ss)"),
        ("DEC", p.dec, "target declination (dd:mm:ss)"),
        ("EXPOSURE", float(exposure), "[s] exposure time"),
        ("GAIN", p.gain, "[e-/ADU] gain"),
        ("RDNOISE", p.read_noise, "[e-] read noise"),
        ("DARKCURR", p.dark_current, "[e-/s/px] dark current"),
        ("GPSTIME", str(iso), "UTC start of exposure (GPS)"),
        ("UT", str(iso), "UTC start of exposure"),
        ("DATE-OBS", str(isot), "UTC start of exposure"),
    ])
