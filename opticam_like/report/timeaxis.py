"""Time axes in units that suit the span of the data: the one rule of every report figure."""

import numpy as np
from astropy.time import Time

__all__ = ["time_axis", "time_unit", "axis_label"]

# (unit, seconds per unit, largest span in seconds shown in that unit)
_UNITS = (("s", 1.0, 120.0), ("min", 60.0, 7200.0), ("h", 3600.0, 172800.0),
          ("d", 86400.0, np.inf))
_SECONDS = {unit: seconds for unit, seconds, _ in _UNITS}


def time_unit(span):
    """The unit for a span: seconds up to 2 min, minutes up to 2 h, hours up to 2 d, else days.

    Parameters
    ----------
    span : float
        Duration in seconds.

    Returns
    -------
    str
        ``'s'``, ``'min'``, ``'h'`` or ``'d'``.
    """
    return next(unit for unit, _, limit in _UNITS if span <= limit)


def time_axis(times, start=None, unit=None):
    """Elapsed times in the unit that suits their span.

    Parameters
    ----------
    times : astropy.time.Time or sequence of Time, shape (n,)
        Time stamps; a sequence (e.g. one array per filter) shares one origin and unit.
    start : astropy.time.Time, optional
        Origin of the axis; default the earliest time.
    unit : str, optional
        Force ``'s'``, ``'min'``, ``'h'`` or ``'d'``; default :func:`time_unit` of the span
        from ``start`` to the latest time.

    Returns
    -------
    values : ndarray or list of ndarray
        Time since ``start`` in ``unit`` (one array per input array for a sequence).
    unit : str
    start : astropy.time.Time
        The origin (scalar).
    """
    single = isinstance(times, Time)
    arrays = [Time(times)] if single else [Time(t) for t in times]
    if start is None:
        start = min((t.min() for t in arrays), key=lambda s: s.jd)
    seconds = [np.atleast_1d((t - start).sec) for t in arrays]
    if unit is None:
        finite = np.concatenate([s[np.isfinite(s)] for s in seconds] + [np.zeros(1)])
        unit = time_unit(float(finite.max() - min(finite.min(), 0.0)))
    values = [s / _SECONDS[unit] for s in seconds]
    return (values[0] if single else values), unit, start


def axis_label(unit, start, scale_name):
    """Axis label such as ``time since 2024-01-01T00:00:00.500 (bjd_tdb) (min)``."""
    return f"time since {start.isot} ({scale_name}) ({unit})"
