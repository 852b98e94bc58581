"""Times of frames: mid-exposure, UTC to TDB, barycentric correction, time checks, GTIs.

Everything here works offline: the functions that need Earth-orientation data run inside
:func:`offline_iers`, which makes astropy use the IERS and leap-second tables of the installed
``astropy-iers-data`` package and never download (a time outside those tables degrades with a
warning), and restores astropy's configuration on exit.

Precision of the times produced here
------------------------------------
* **Time representation**: astropy ``Time`` keeps two doubles (``jd1 + jd2``), i.e. better than
  a nanosecond; header strings are parsed with all their digits (OPTICAM writes microseconds).
  Only floats written to disk lose precision: an MJD as float64 resolves 0.6 microseconds, a JD
  40 microseconds; tables therefore store ``Time`` columns as ``jd1`` and ``jd2`` (ECSV:
  ``write(..., serialize_method="jd1_jd2")``; ECSV's default, the formatted value, loses
  milliseconds).
* **UTC -> TT**: leap seconds from the bundled table (exact until the table expires; after the
  expiry date astropy warns that a new leap second may be missing, an error of whole seconds).
* **TT -> TDB**: ERFA ``dtdb`` (Fairhead & Bretagnon 1990 series, with the topocentric term):
  nanoseconds. TDB needs no UT1.
* **Barycentric correction** (Roemer delay, astropy ``Time.light_travel_time`` with the builtin
  ephemeris, i.e. ERFA ``epv00``): compared with JPL DE421 over 2000-2030 (measured with the
  ``de421`` ephemeris package, not a dependency), the Earth's barycentric position differs by
  4.5 km rms, 11.4 km at most, i.e. **9 microseconds rms and 38 microseconds at most** in the
  light travel time for any direction (6 rms and 20 microseconds at most towards the LMC). The
  ERFA documentation gives 4.6 km rms and 13.4 km max against DE405 over 1900-2100. The
  observer's geocentric position needs UT1 and polar motion: from the bundled IERS-A table,
  held at its last values outside it (an error < 0.9 s of rotation, i.e. < 1.5 microseconds).
  Many time stamps of one target are interpolated between 10-minute nodes (~1 ns).
* **Not included**: the Shapiro delay (< 20 microseconds more than 30 deg from the Sun, 0.1 ms
  at its limb) and the target's proper motion and parallax. The target position matters more
  than all of the above: an error of 1 arcsec in RA/Dec moves BJD by up to
  500 s x 4.85e-6 = 2.4 ms.

See Eastman, Siverd & Gaudi (2010, PASP 122, 935) for the definitions of BJD_TDB and HJD.
"""

import bisect
from contextlib import contextmanager
import functools
import logging
import math
import unicodedata

import numpy as np
from astropy import units as u
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.time import Time, TimeDelta
from astropy.utils import iers
from scipy.interpolate import CubicSpline

from .flags import PhotFlag

log = logging.getLogger(__name__)

__all__ = [
    "SITES",
    "offline_iers",
    "frame_times",
    "frame_time_flags",
    "header_target",
    "get_site",
    "mid_exposure",
    "parse_times",
    "barycentric_times",
    "bmjd_tdb",
    "heliocentric_times",
    "time_flags",
    "good_time_intervals",
    "intersect_gtis",
]

SITES = {
    "san pedro martir": (-115.4636, 31.0442, 2790.0),
    "las campanas": (-70.7025, -29.0083, 2280.0),
}
"""Observing sites known offline: name -> ``(lon_deg, lat_deg, height_m)`` (WGS84, east positive).

* ``"san pedro martir"``: the 2.1 m telescope of OAN-SPM that carries OPTICAM.
* ``"las campanas"``: the 1.3 m Warsaw telescope (OGLE). Its longitude reproduces the
  apparent sidereal times (``ST``, whole seconds) written in the OGLE-IV headers: mean
  LST - ST = -0.04 +/- 0.03 s over 98 frames, so the longitude is right to 0.002 deg whether
  ``ST`` was rounded or truncated. The latitude and height are not checked that way, but an
  error of 1 km in the position changes barycentric times by less than 3.4 microseconds.

More names are accepted by :func:`get_site` (``"spm"``, ``"oan-spm"``, ``"lco"``,
``"lco-warsaw-1.3m"``, ...); see ``SITE_ALIASES``.
"""

SITE_ALIASES = {
    "spm": "san pedro martir",
    "oan-spm": "san pedro martir",
    "oan spm": "san pedro martir",
    "oanspm": "san pedro martir",
    "san pedro martir observatory": "san pedro martir",
    "observatorio astronomico nacional san pedro martir": "san pedro martir",
    "opticam": "san pedro martir",
    "lco": "las campanas",
    "las campanas observatory": "las campanas",
    "lco-warsaw-1.3m": "las campanas",
    "warsaw": "las campanas",
    "ogle": "las campanas",
}
"""Header values (``OBSERVAT``, ``TELESCOP``) and short names mapped to a key of :data:`SITES`."""

_REFERENCE_OFFSETS = {"start": 0.5, "mid": 0.0, "end": -0.5}
_NODE_SPACING_S = 600.0


@functools.cache
def _bundled_iers_a():
    """The IERS-A table of the installed ``astropy-iers-data`` package (read once, ~0.3 s)."""
    return iers.IERS_A.open(iers.IERS_A_FILE)


@contextmanager
def offline_iers():
    """Context in which astropy uses its bundled Earth-orientation tables, never the network.

    Inside the ``with`` block, ``astropy.utils.iers.conf.auto_download`` is False (no IERS-A or
    leap-second download), ``iers_degraded_accuracy`` is ``"warn"``, and the IERS-A table of
    the installed ``astropy-iers-data`` package (combined with its IERS-B values) is
    ``astropy.utils.iers.earth_orientation_table``. A time outside that table (before 1973 or
    more than about a year after the package was built) then gives an
    ``IERSDegradedAccuracyWarning`` and UT1-UTC and polar motion are held at the table's last
    values, instead of raising an error or downloading. Leap seconds come from ERFA and the
    bundled ``Leap_Second.dat``; once it has expired, astropy warns (``IERSStaleWarning``).
    Everything is restored on exit: importing or using opticam_like never changes astropy's
    global configuration.

    Yields
    ------
    astropy.utils.iers.IERS_A
        The installed Earth-orientation table (read once per process).
    """
    table = _bundled_iers_a()
    with iers.conf.set_temp("auto_download", False), \
            iers.conf.set_temp("iers_degraded_accuracy", "warn"), \
            iers.earth_orientation_table.set(table):
        yield table


def _normalise_name(name):
    text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    return " ".join(text.strip().lower().split())


def get_site(site):
    """Observing site as an `~astropy.coordinates.EarthLocation`, without the network.

    Parameters
    ----------
    site : str, tuple or `~astropy.coordinates.EarthLocation`
        A name from :data:`SITES` or ``SITE_ALIASES`` (case, accents and extra spaces
        ignored), a tuple ``(lon_deg, lat_deg, height_m)`` (numbers or Quantities), or an
        ``EarthLocation`` (returned as is).

    Returns
    -------
    `~astropy.coordinates.EarthLocation`

    Raises
    ------
    ValueError
        If the name is unknown (the message lists the known names) or the tuple is malformed.
    """
    if isinstance(site, EarthLocation):
        return site
    if isinstance(site, str):
        key = _normalise_name(site)
        key = SITE_ALIASES.get(key, key)
        if key not in SITES:
            known = sorted(set(SITES) | set(SITE_ALIASES))
            raise ValueError(f"unknown site {site!r}; known names: {', '.join(known)}, "
                             "or give (lon_deg, lat_deg, height_m)")
        site = SITES[key]
    try:
        lon, lat, height = site
    except (TypeError, ValueError):
        raise ValueError(f"site must be a name, an EarthLocation or (lon_deg, lat_deg, "
                         f"height_m), got {site!r}") from None
    return EarthLocation.from_geodetic(u.Quantity(lon, u.deg), u.Quantity(lat, u.deg),
                                       u.Quantity(height, u.m))


def mid_exposure(time, exposure, reference="start"):
    """Mid-exposure times from header times that mark the start, middle or end of exposures.

    Parameters
    ----------
    time : `~astropy.time.Time`
        Header times, scalar or shape ``(n,)``.
    exposure : float, array or `~astropy.units.Quantity`
        Exposure times (seconds if a plain number), broadcastable to ``time``.
    reference : {"start", "mid", "end"}
        What ``time`` marks.

    Returns
    -------
    `~astropy.time.Time`
        Mid-exposure times, in the scale of ``time``. For UTC the addition is done in TAI, so
        an exposure across a leap second is handled.

    Raises
    ------
    ValueError
        If ``reference`` is not one of the three values or an exposure is negative or not finite.
    """
    if reference not in _REFERENCE_OFFSETS:
        raise ValueError(f"reference must be one of {sorted(_REFERENCE_OFFSETS)}, "
                         f"got {reference!r}")
    exposure = u.Quantity(exposure, u.s).to_value(u.s)
    if not np.all(np.isfinite(exposure)) or np.any(exposure < 0):
        raise ValueError("exposure times must be finite and >= 0 s")
    return time + TimeDelta(_REFERENCE_OFFSETS[reference] * exposure, format="sec")


def parse_times(values, fmt=None, scale="utc"):
    """Parse header time strings with their full sub-second precision.

    Parameters
    ----------
    values : str or sequence of str
        Either ``'YYYY-MM-DD HH:MM:SS[.ffffff]'`` (OPTICAM ``GPSTIME``/``UT``) or ISO with a
        ``T`` (``DATE-OBS``), any number of decimals, an optional trailing ``Z``; both forms
        may be mixed.
    fmt : str or None
        An astropy time format (``"isot"``, ``"mjd"``, ``"unix"``, ...) to use instead of the
        detection above.
    scale : str
        Time scale of the values.

    Returns
    -------
    `~astropy.time.Time`
        Scalar for a string, else shape ``(n,)``; format ``"isot"`` with microsecond display
        precision when parsed from ISO strings.

    Raises
    ------
    ValueError
        Naming the first value that cannot be parsed.
    """
    scalar = isinstance(values, str)
    items = [values] if scalar else list(values)
    if fmt is None:
        texts = [str(v).strip().removesuffix("Z").replace("T", " ", 1) for v in items]
        fmt = "iso"
    else:
        texts = items
    try:
        times = Time(texts, format=fmt, scale=scale)
    except ValueError:
        for value, text in zip(items, texts):
            try:
                Time(text, format=fmt, scale=scale)
            except ValueError as err:
                raise ValueError(f"cannot parse time {value!r} as {fmt!r}: {err}") from None
        raise
    if fmt == "iso":
        times.format = "isot"
        times.precision = 6
    return times[0] if scalar else times


def _light_travel_time(t_mid, ra_deg, dec_deg, location, kind):
    """Time at the site and ``n . r / c`` in seconds (array of the shape of ``t_mid``).

    For many time stamps of one target the delay is computed at nodes every 10 minutes and
    interpolated with a cubic spline in elapsed time: its fastest term, the daily rotation of
    the observer (21 ms amplitude), is then reproduced to about a nanosecond
    (``5/384 h^4 max|d^4/dt^4|``), and 10^5 frames take about 1 s in all (mostly the
    TT -> TDB series) instead of 20 s.
    """
    time = Time(t_mid, location=get_site(location))
    target = SkyCoord(u.Quantity(ra_deg, u.deg), u.Quantity(dec_deg, u.deg), frame="icrs")
    if target.isscalar and time.size > 1:
        start = time.min()
        seconds = (time - start).to_value(u.s)
        n_nodes = max(4, int(np.ceil(seconds.max() / _NODE_SPACING_S)) + 1)
        if 4 * n_nodes < time.size:
            nodes = np.linspace(0.0, seconds.max(), n_nodes)
            node_times = start + TimeDelta(nodes, format="sec")
            delays = node_times.light_travel_time(target, kind=kind, ephemeris="builtin")
            return time, CubicSpline(nodes, delays.to_value(u.s))(seconds)
    delays = time.light_travel_time(target, kind=kind, ephemeris="builtin")
    return time, delays.to_value(u.s)


def barycentric_times(t_mid, ra_deg, dec_deg, location):
    """Barycentric Julian dates in TDB (BJD_TDB) of mid-exposure times, in one vectorised call.

    ``BJD_TDB = t_mid(TDB) + n . r_obs / c`` with ``r_obs`` the observer's barycentric
    position (Eastman et al. 2010), from `astropy.time.Time.light_travel_time`. See the
    module notes for the precision (about 10 microseconds; ERFA ``epv00`` ephemeris). For
    more than a few time stamps of one target, the delay is evaluated every 10 minutes and
    interpolated (cubic spline, error ~1 ns).

    Parameters
    ----------
    t_mid : `~astropy.time.Time`
        Mid-exposure times (any scale, usually UTC), shape ``(n,)`` or scalar.
    ra_deg, dec_deg : float, array or `~astropy.units.Quantity`
        ICRS coordinates of the target (degrees if plain numbers), scalars or broadcastable to
        ``t_mid``.
    location : str, tuple or `~astropy.coordinates.EarthLocation`
        Observing site, see :func:`get_site`.

    Returns
    -------
    `~astropy.time.Time`
        BJD in the TDB scale, format ``"jd"``, shape of ``t_mid``.
    """
    with offline_iers():
        time, delay = _light_travel_time(t_mid, ra_deg, dec_deg, location, "barycentric")
        result = time.tdb + TimeDelta(delay, format="sec")
    result.format = "jd"
    return result


def bmjd_tdb(t_mid, ra_deg, dec_deg, location):
    """Barycentric modified Julian dates in TDB (BMJD_TDB = BJD_TDB - 2400000.5).

    Parameters are those of :func:`barycentric_times`.

    Returns
    -------
    `~astropy.time.Time`
        Format ``"mjd"``, scale TDB; ``.value`` gives float64 days (0.6 microsecond resolution).
    """
    result = barycentric_times(t_mid, ra_deg, dec_deg, location)
    result.format = "mjd"
    return result


def heliocentric_times(t_mid, ra_deg, dec_deg, location):
    """Heliocentric Julian dates in the UTC scale (HJD_UTC), the convention of older surveys.

    ``HJD = t_mid(UTC) + n . r_obs,sun / c``; for comparison with e.g. OGLE's ``HELJD``. Not a
    uniform time scale (it follows UTC leap seconds and the Sun's motion around the barycentre,
    up to 4 s): use :func:`barycentric_times` for timing work.

    Parameters are those of :func:`barycentric_times`.

    Returns
    -------
    `~astropy.time.Time`
        HJD in the UTC scale, format ``"jd"``.
    """
    with offline_iers():
        time, delay = _light_travel_time(t_mid, ra_deg, dec_deg, location, "heliocentric")
        result = time.utc + TimeDelta(delay, format="sec")
    result.format = "jd"
    return result


def _as_values(times):
    """Times as a float array, with a function mapping results back to the input's type."""
    if isinstance(times, Time):
        origin = times.ravel()[0]
        values = (times - origin).to_value(u.s)
        return np.atleast_1d(values), lambda x: origin + TimeDelta(x, format="sec"), u.s
    if isinstance(times, u.Quantity):
        unit = times.unit
        return np.atleast_1d(times.value).astype(float), lambda x: x * unit, unit
    return np.atleast_1d(np.asarray(times, dtype=float)), lambda x: x, None


def _cadence_value(cadence, unit, values):
    if cadence is None:
        steps = np.diff(values)
        steps = steps[steps > 0]
        if steps.size == 0:
            raise ValueError("the cadence cannot be inferred from fewer than two increasing "
                             "times; give cadence=")
        return float(np.median(steps))
    if isinstance(cadence, u.Quantity):
        if unit is None:
            raise ValueError("cadence is a Quantity but the times are plain numbers")
        cadence = cadence.to_value(unit)
    cadence = float(cadence)
    if not cadence > 0:
        raise ValueError(f"cadence must be > 0, got {cadence}")
    return cadence


def _increasing_subset(values, tolerance):
    """Indices of the longest subsequence increasing by more than ``tolerance`` at each step.

    Patience sorting (O(n log n)) run backwards in time on ``-values``, so that among
    subsequences of equal length the one with the earliest time stamps is kept (the first of
    repeated stamps, not the stamp that steps back).
    """
    tails, tail_index = [], []
    parent = np.full(values.size, -1)
    for i in range(values.size - 1, -1, -1):
        if not np.isfinite(values[i]):
            continue
        pile = bisect.bisect_left(tails, -values[i] - tolerance)
        if pile == len(tails):
            tails.append(-values[i])
            tail_index.append(i)
        else:
            tails[pile] = -values[i]
            tail_index[pile] = i
        parent[i] = tail_index[pile - 1] if pile > 0 else -1
    keep = []
    i = tail_index[-1] if tail_index else -1
    while i >= 0:
        keep.append(i)
        i = parent[i]
    return np.array(keep, dtype=int)


def time_flags(times, cadence=None):
    """Flag time stamps that go backwards or repeat.

    The longest sequence of time stamps that increases at every step by more than
    ``1e-3 * cadence`` is taken as the true clock; every other time stamp (a repeat, a step
    back, an isolated stamp far in the future, or a non-finite value) gets
    ``PhotFlag.BAD_TIME``. Forward jumps are not errors: they are gaps between good time
    intervals, see :func:`good_time_intervals`.

    Parameters
    ----------
    times : `~astropy.time.Time`, `~astropy.units.Quantity` or array
        Time stamps in acquisition order, shape ``(n,)``.
    cadence : float, `~astropy.units.Quantity` or None
        Nominal time between frames (seconds for ``Time`` input, else the unit of ``times``);
        ``None`` uses the median positive step.

    Returns
    -------
    ndarray of int32, shape ``(n,)``
        ``PhotFlag.BAD_TIME`` or 0.
    """
    values, _, unit = _as_values(times)
    flags = np.full(values.size, int(PhotFlag.BAD_TIME), dtype=np.int32)
    if values.size < 2:
        flags[np.isfinite(values)] = 0
        return flags
    step = _cadence_value(cadence, unit, values[np.isfinite(values)])
    flags[_increasing_subset(values, 1e-3 * step)] = 0
    return flags


def good_time_intervals(times, cadence=None, gap_factor=1.5):
    """Good time intervals inferred from the cadence.

    Time stamps flagged by :func:`time_flags` are ignored. A new interval starts wherever the
    step between consecutive good time stamps exceeds ``gap_factor * cadence``. Each time
    stamp stands for one cadence centred on it, so an interval is
    ``[first - cadence / 2, last + cadence / 2]``: its length is the number of frames times the
    cadence.

    Parameters
    ----------
    times : `~astropy.time.Time`, `~astropy.units.Quantity` or array
        Time stamps (e.g. mid-exposure), shape ``(n,)``.
    cadence : float, `~astropy.units.Quantity` or None
        Time between frames (seconds for ``Time`` input, else the unit of ``times``); ``None``
        uses the median positive step of the good time stamps.
    gap_factor : float
        A step longer than ``gap_factor * cadence`` is a gap; must be > 1.

    Returns
    -------
    ndarray, `~astropy.units.Quantity` or `~astropy.time.Time`, shape ``(n_gti, 2)``
        ``[start, stop]`` of each interval, in the type and unit of ``times``.

    Raises
    ------
    ValueError
        If ``gap_factor <= 1`` or the cadence cannot be inferred.
    """
    if not gap_factor > 1:
        raise ValueError(f"gap_factor must be > 1, got {gap_factor}")
    values, back, unit = _as_values(times)
    given = None if cadence is None else _cadence_value(cadence, unit, values)
    good = values[time_flags(values, given) == 0]
    step = _cadence_value(given, None, good)
    breaks = np.flatnonzero(np.diff(good) > gap_factor * step)
    starts = good[np.concatenate([[0], breaks + 1])] - step / 2
    stops = good[np.concatenate([breaks, [good.size - 1]])] + step / 2
    return back(np.column_stack([starts, stops]))


def intersect_gtis(first, second):
    """Intersection of two sets of good time intervals.

    Parameters
    ----------
    first, second : array, shape ``(n, 2)`` and ``(m, 2)``
        ``[start, stop]`` rows in the same unit (plain arrays or Quantities).

    Returns
    -------
    ndarray or `~astropy.units.Quantity`, shape ``(k, 2)``
        The non-empty overlaps, sorted by start.
    """
    unit = first.unit if isinstance(first, u.Quantity) else None
    a = np.asarray(first.to_value(unit) if unit else first, float).reshape(-1, 2)
    b = np.asarray(second.to_value(unit) if unit else second, float).reshape(-1, 2)
    starts = np.maximum(a[:, None, 0], b[None, :, 0]).ravel()
    stops = np.minimum(a[:, None, 1], b[None, :, 1]).ravel()
    keep = stops > starts
    order = np.argsort(starts[keep])
    result = np.column_stack([starts[keep][order], stops[keep][order]])
    return result * unit if unit else result


def header_target(infos):
    """The first finite (RA, Dec) of the frames' headers, in degrees; ``(None, None)`` if none.

    Parameters
    ----------
    infos : sequence of FrameInfo
    """
    for info in infos:
        if math.isfinite(info.ra) and math.isfinite(info.dec):
            return info.ra, info.dec
    return None, None


def frame_times(infos, site=None, target=None):
    """Mid-exposure times of frames: BJD_TDB when target and site are known, else MJD_UTC.

    Parameters
    ----------
    infos : sequence of FrameInfo
        Parsed headers (``time`` is the mid-exposure UTC time).
    site : str, tuple or EarthLocation, optional
        See :func:`get_site`; default: the first header's observatory. An unknown site is
        logged and the times stay in MJD_UTC.
    target : tuple (ra, dec), optional
        Default: the headers' RA/Dec (:func:`header_target`).

    Returns
    -------
    times : `~astropy.time.Time`, shape ``(n,)``
        BJD (format ``jd``, scale TDB; referred to the barycentre, so without a
        ``location``: astropy's FITS writer calls a topocentric location incompatible with
        TDB) or MJD (UTC, with the site as ``location`` when it is known).
    name : {'bjd_tdb', 'mjd_utc'}
        The time column's name (:data:`opticam_like.schema.TIME_COLUMNS`).
    """
    utc = Time([i.time for i in infos]).utc
    ra, dec = target if target else header_target(infos)
    if site is None:
        site = next((i.observatory for i in infos if i.observatory), None)
    try:
        location = get_site(site) if site is not None else None
    except (KeyError, ValueError) as exc:
        log.warning("site %r unknown (%s); times stay in MJD_UTC", site, exc)
        location = None
    if location is None or ra is None or dec is None:
        log.info("no %s: times are mid-exposure MJD_UTC",
                 "site" if location is None else "target RA/Dec")
        return Time(utc, format="mjd", location=location), "mjd_utc"
    bjd = barycentric_times(utc, ra, dec, location)
    return Time(bjd.jd1, bjd.jd2, format="jd", scale="tdb"), "bjd_tdb"


def frame_time_flags(infos, order):
    """``BAD_TIME`` flags of frames whose stamps go backwards or repeat in acquisition order.

    Parameters
    ----------
    infos : sequence of FrameInfo
        Frames in time order.
    order : sequence of int
        Indices of ``infos`` in acquisition order
        (:func:`opticam_like.scan.acquisition_order`).

    Returns
    -------
    ndarray of int32, shape ``(n,)``
        In the order of ``infos``.
    """
    order = np.asarray(order, dtype=int)
    flags = np.zeros(len(infos), dtype=np.int32)
    flags[order] = time_flags(Time([infos[i].time for i in order]))
    return flags
