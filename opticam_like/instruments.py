"""Instrument profiles: how to read a camera's FITS headers.

An :class:`InstrumentProfile` maps the logical quantities the pipeline needs (filter, binning,
gain, exposure, time, ...) to header keywords, says what the time stamp means (start, middle or
end of the exposure), and carries defaults for what a header may lack (read noise, saturation
level, the observing site). Two profiles are built in: ``"opticam"`` and ``"generic"``; users
pass their own profile object or a TOML file (see :func:`load_profile`).

Cameras. A multi-camera instrument must never mix its cameras' frames (each has its own bias,
dark, flat, defects and orientation). The camera of a frame is, in order: the profile's camera
keyword; else the camera that owns the frame's filter (``camera_filters``: OPTICAM's camera 1
takes u and g, camera 2 r, camera 3 i and z, as in the OPTICAM pipeline's ``OPTICAM_MX`` and
its pixel-scale table); else a parent directory named ``c1``, ``cam2``, ``camera3``, ... (any
case, when ``camera_directories`` is set); else the ``camera`` default. Profiles that map
cameras (``camera_filters`` or ``camera_directories``) name them ``C1``, ``C2``, ...: a
``CAMERA`` value ``1``, ``c1``, ``cam1`` or ``Camera 1`` becomes ``C1``, so frames whose camera
comes from the header and frames whose camera comes from the filter share their masters.
"""

from dataclasses import dataclass, field, fields, replace
import math
from pathlib import Path
import re
import tomllib

from astropy.time import Time
from astropy.time.formats import TimeNumeric

from .errors import ConfigError

__all__ = ["InstrumentProfile", "load_profile", "profile_from_mapping",
           "read_toml", "BUILTIN_PROFILES", "camera_directory_name", "camera_from_directory",
           "normalise_filter"]

#: Logical header quantities a profile can map, with what each holds.
LOGICAL_KEYWORDS = {
    "filter": "filter name",
    "binning": "binning, e.g. '4x4', '2 2' or 2",
    "gain": "gain (e-/ADU)",
    "read_noise": "read noise (e-)",
    "exposure": "exposure time (s)",
    "dark_current": "dark current (e-/s/pixel)",
    "camera": "camera identifier",
    "ra": "target right ascension (sexagesimal hours or degrees)",
    "dec": "target declination (sexagesimal or degrees)",
    "saturation": "saturation level (ADU)",
    "observatory": "observatory name (resolved through opticam_like.timing.SITES)",
    "image_type": "frame type (object, bias, dark, flat)",
    "object": "object name",
}

TIME_REFERENCES = ("start", "mid", "end")

#: Quantities whose ``defaults`` must be numbers.
NUMERIC_QUANTITIES = ("gain", "read_noise", "exposure", "dark_current", "saturation")

#: astropy formats a numeric time keyword may use (``"MJD-OBS:mjd"``).
NUMERIC_TIME_FORMATS = tuple(name for name, cls in Time.FORMATS.items()
                             if issubclass(cls, TimeNumeric))

_CAMERA_DIRECTORY = re.compile(r"(?:c|cam|camera)[ _-]?(\d+)", re.IGNORECASE)
_CAMERA_VALUE = re.compile(r"(?:c|cam|camera)?[ _-]?(\d+)", re.IGNORECASE)


def camera_directory_name(name):
    """Camera named by a directory name ``c1``, ``cam2``, ``camera3``, ... (any case), or None.

    Parameters
    ----------
    name : str
        A directory name (not a path).

    Returns
    -------
    str or None
        ``'C1'``, ``'C2'``, ... : ``c``, ``cam`` or ``camera`` followed by a number, with an
        optional space, ``_`` or ``-``.
    """
    match = _CAMERA_DIRECTORY.fullmatch(name)
    return f"C{int(match.group(1))}" if match else None


def camera_from_directory(path):
    """Camera named by the nearest parent directory of a frame (see
    :func:`camera_directory_name`), or None.

    Parameters
    ----------
    path : str or Path
        A frame's file.

    Returns
    -------
    str or None
    """
    for parent in Path(path).absolute().parents:
        camera = camera_directory_name(parent.name)
        if camera is not None:
            return camera
    return None


def normalise_filter(name):
    """A filter name reduced for matching: lower case, without a prime or a 'band' suffix.

    ``"g'"``, ``"G"``, ``"g-band"`` and ``"g'-band"`` all give ``"g"``.
    """
    text = str(name).strip().lower()
    text = re.sub(r"[\s_-]*band$", "", text)
    return text.rstrip("'").strip()


@dataclass(frozen=True)
class InstrumentProfile:
    """How to read one instrument's headers.

    Parameters
    ----------
    name : str
        Profile name, written into every output table.
    keywords : dict of str to tuple of str
        For each logical quantity (see ``LOGICAL_KEYWORDS``: ``filter``, ``binning``, ``gain``,
        ``read_noise``, ``exposure``, ``dark_current``, ``camera``, ``ra``, ``dec``,
        ``saturation``, ``observatory``, ``image_type``, ``object``) the header keywords to try,
        in order.
    time_keywords : tuple of str
        Header keywords holding the time stamp, tried in order. An entry ``"DATE-OBS+UT"`` joins
        the date of a date keyword and a time keyword; a suffix naming a numeric astropy format
        (``":mjd"``, ``":jd"``, ...) marks a numeric keyword (``"MJD-OBS:mjd"``). A single
        keyword that holds a date only (``DATE-OBS = '2019-06-01'``) is passed over, so that a
        later entry such as ``"DATE-OBS+UT"`` gives the time of day. Strings keep their full
        sub-second precision.
    time_reference : {'start', 'mid', 'end'}
        Which instant of the exposure the time stamp marks.
    time_scale : str
        astropy time scale of the stamps (``'utc'`` for nearly every camera).
    defaults : dict
        Values used when a header lacks a keyword (e.g. ``read_noise``, ``saturation``,
        ``binning``, ``camera``). Quantities without a keyword match and without a default
        are missing; if they are in ``required`` the frame is rejected, naming the keyword.
    required : tuple of str
        Logical quantities a frame must provide (from the header or ``defaults``).
    filters : tuple of str or None
        Filters this instrument has; other values are reported as unknown (not rejected).
        None accepts any filter.
    site : tuple of float or str or None
        Observing site as ``(lon_deg, lat_deg, height_m)`` or a name known to
        :data:`opticam_like.timing.SITES`. Overridden by the reduction config.
    camera_filters : dict of str to tuple of str
        For headers without a camera keyword: the filters each camera takes, e.g.
        ``{"C1": ("u", "g"), "C2": ("r",), "C3": ("i", "z")}``. Filters are matched after
        :func:`normalise_filter` (``"g'"`` and ``"g-band"`` are ``"g"``).
    camera_directories : bool
        Take the camera from a parent directory ``c1``, ``cam2``, ``camera3``, ... when
        neither the header nor the filter tells it (see :func:`camera_from_directory`).
    telescope_diameter : float or None
        Aperture diameter of the telescope (m), for the scintillation noise.
    scintillation : bool
        Add scintillation (Young 1967 with the Osborn et al. 2015 correction,
        :func:`~opticam_like.photometry.noise.scintillation_sigma`) to the flux errors; needs
        ``telescope_diameter``, a site (for its altitude and the airmass) and the target's
        RA/Dec.

    Raises
    ------
    ConfigError
        A field of the wrong type or value (the message names the field).
    """

    name: str
    keywords: dict = field(default_factory=dict)
    time_keywords: tuple = ("DATE-OBS",)
    time_reference: str = "start"
    time_scale: str = "utc"
    defaults: dict = field(default_factory=dict)
    required: tuple = ("filter", "exposure", "gain")
    filters: tuple | None = None
    site: tuple | str | None = None
    camera_filters: dict = field(default_factory=dict)
    camera_directories: bool = False
    telescope_diameter: float | None = None
    scintillation: bool = False

    def __post_init__(self):
        validate_profile(self)

    def header_keywords(self, quantity):
        """Header keywords tried for a logical quantity.

        Parameters
        ----------
        quantity : str
            A key of ``LOGICAL_KEYWORDS``.

        Returns
        -------
        tuple of str
        """
        return tuple(self.keywords.get(quantity, ()))

    @property
    def maps_cameras(self):
        """True when the profile tells cameras apart by filter or directory (names ``C<n>``)."""
        return bool(self.camera_filters) or self.camera_directories

    def camera_name(self, value):
        """A camera keyword's value in the profile's naming (``'1'`` -> ``'C1'`` when
        :attr:`maps_cameras`; unchanged otherwise)."""
        text = str(value).strip()
        if self.maps_cameras:
            match = _CAMERA_VALUE.fullmatch(text)
            if match:
                return f"C{int(match.group(1))}"
        return text

    def camera_of_filter(self, name):
        """The camera that takes a filter (per ``camera_filters``), or None."""
        wanted = normalise_filter(name)
        for camera, names in self.camera_filters.items():
            if wanted in (normalise_filter(n) for n in names):
                return camera
        return None

    def with_overrides(self, **changes):
        """A copy of the profile with some fields replaced (``defaults`` are merged)."""
        if "defaults" in changes:
            changes["defaults"] = {**self.defaults, **changes["defaults"]}
        return replace(self, **changes)


def _is_strings(value):
    """True for a list or tuple of strings."""
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_profile(profile, source="<profile>"):
    """Check every field of a profile.

    Parameters
    ----------
    profile : InstrumentProfile
    source : str
        File (or table) the profile came from, for the messages.

    Raises
    ------
    ConfigError
        A field of the wrong type or value; the message names ``source`` and the field (and
        the entry within it).
    """
    def fail(message):
        raise ConfigError(f"{source}: {message}")

    if not isinstance(profile.name, str) or not profile.name.strip():
        fail(f"'name' must be a non-empty string, not {profile.name!r}")
    if not isinstance(profile.keywords, dict):
        fail(f"'keywords' must be a table of quantity = [header keywords], not "
             f"{profile.keywords!r}")
    unknown = set(profile.keywords) - set(LOGICAL_KEYWORDS)
    if unknown:
        fail(f"unknown quantity {sorted(unknown)[0]!r} in 'keywords'; known: "
             f"{', '.join(LOGICAL_KEYWORDS)}")
    for quantity, keys in profile.keywords.items():
        if not _is_strings(keys):
            fail(f"keywords.{quantity} must be a list of header keywords, not {keys!r}")
    if not isinstance(profile.time_reference, str) or \
            profile.time_reference not in TIME_REFERENCES:
        fail(f"'time_reference' must be one of {TIME_REFERENCES}, not "
             f"{profile.time_reference!r}")
    if not isinstance(profile.time_scale, str) or profile.time_scale not in Time.SCALES:
        fail(f"'time_scale' must be an astropy time scale ({', '.join(Time.SCALES)}), not "
             f"{profile.time_scale!r}")
    if not _is_strings(profile.time_keywords) or not profile.time_keywords:
        fail("'time_keywords' must list at least one header keyword, not "
             f"{profile.time_keywords!r}")
    for entry in profile.time_keywords:
        keys, _, fmt = entry.partition(":")
        if not all(k.strip() for k in keys.split("+")):
            fail(f"time_keywords entry {entry!r} has an empty keyword")
        if fmt and fmt not in NUMERIC_TIME_FORMATS:
            fail(f"time_keywords entry {entry!r}: format {fmt!r} is not a numeric astropy "
                 f"time format ({', '.join(NUMERIC_TIME_FORMATS)})")
        if fmt and "+" in keys:
            fail(f"time_keywords entry {entry!r}: a numeric keyword cannot be joined to another")
    if not _is_strings(profile.required):
        fail(f"'required' must be a list of quantities, not {profile.required!r}")
    unknown = set(profile.required) - set(LOGICAL_KEYWORDS)
    if unknown:
        fail(f"unknown quantity {sorted(unknown)[0]!r} in 'required'")
    if not isinstance(profile.defaults, dict):
        fail(f"'defaults' must be a table of quantity = value, not {profile.defaults!r}")
    unknown = set(profile.defaults) - set(LOGICAL_KEYWORDS)
    if unknown:
        fail(f"unknown quantity {sorted(unknown)[0]!r} in 'defaults'")
    for quantity, value in profile.defaults.items():
        if quantity in NUMERIC_QUANTITIES:
            if not _is_number(value):
                fail(f"defaults.{quantity} must be a number, not {value!r}")
        elif not isinstance(value, (str, int)) or isinstance(value, bool):
            fail(f"defaults.{quantity} must be a string, not {value!r}")
    if profile.filters is not None and not _is_strings(profile.filters):
        fail(f"'filters' must be a list of filter names, not {profile.filters!r}")
    site = profile.site
    if site is not None and not isinstance(site, str):
        if not isinstance(site, (list, tuple)) or len(site) != 3 or \
                not all(_is_number(v) for v in site):
            fail("'site' must be a name or (lon_deg, lat_deg, height_m)")
    if not isinstance(profile.camera_filters, dict):
        fail(f"'camera_filters' must be a table of camera = [filters], not "
             f"{profile.camera_filters!r}")
    owner = {}
    for camera, names in profile.camera_filters.items():
        if not _is_strings(names):
            fail(f"camera_filters.{camera} must be a list of filter names, not {names!r}")
        for name in names:
            other = owner.setdefault(normalise_filter(name), camera)
            if other != camera:
                fail(f"camera_filters: filter {name!r} is given to cameras {other} and {camera}")
    if not isinstance(profile.camera_directories, bool):
        fail(f"'camera_directories' must be true or false, not {profile.camera_directories!r}")
    if profile.telescope_diameter is not None and not (
            _is_number(profile.telescope_diameter) and profile.telescope_diameter > 0):
        fail(f"'telescope_diameter' must be a positive number (m), not "
             f"{profile.telescope_diameter!r}")
    if not isinstance(profile.scintillation, bool):
        fail(f"'scintillation' must be true or false, not {profile.scintillation!r}")
    if profile.scintillation and profile.telescope_diameter is None:
        fail("'scintillation' needs 'telescope_diameter'")


OPTICAM = InstrumentProfile(
    name="opticam",
    keywords={
        "filter": ("FILTER",),
        "binning": ("BINNING",),
        "gain": ("GAIN",),
        "read_noise": ("RDNOISE", "READNOIS"),
        "exposure": ("EXPOSURE", "EXPTIME"),
        "dark_current": ("DARKCURR",),
        "camera": ("CAMERA",),
        "ra": ("RA",),
        "dec": ("DEC",),
        "observatory": ("OBSERVAT",),
        "image_type": ("IMAGETYP",),
        "object": ("OBJECT",),
    },
    time_keywords=("GPSTIME", "UT", "DATE-OBS"),
    time_reference="start",
    defaults={"saturation": 65535.0, "dark_current": 0.0},
    required=("filter", "binning", "exposure", "gain", "camera"),
    filters=("u", "g", "r", "i", "z"),
    site=(-115.4636, 31.0442, 2790.0),
    camera_filters={"C1": ("u", "g"), "C2": ("r",), "C3": ("i", "z")},
    camera_directories=True,
    telescope_diameter=2.1,
    scintillation=True,
)

GENERIC = InstrumentProfile(
    name="generic",
    keywords={
        "filter": ("FILTER", "FILTER1", "FILTNAME"),
        "binning": ("BINNING", "CCDSUM", "XBINNING"),
        "gain": ("GAIN", "EGAIN", "CCDGAIN"),
        "read_noise": ("RDNOISE", "READNOIS", "RON"),
        "exposure": ("EXPTIME", "EXPOSURE", "ITIME"),
        "dark_current": ("DARKCURR",),
        "camera": ("CAMERA", "INSTRUME"),
        "ra": ("RA", "OBJCTRA"),
        "dec": ("DEC", "OBJCTDEC"),
        "saturation": ("SATURATE", "SATLEVEL"),
        "observatory": ("OBSERVAT", "TELESCOP"),
        "image_type": ("IMAGETYP", "OBSTYPE"),
        "object": ("OBJECT",),
    },
    time_keywords=("DATE-OBS", "DATE-OBS+TIME-OBS", "DATE-OBS+UT", "DATE-OBS+TIME-BEG",
                   "MJD-OBS:mjd"),
    time_reference="start",
    defaults={"binning": "1x1", "camera": "1", "saturation": 65535.0, "dark_current": 0.0},
    required=("filter", "exposure", "gain"),
)

BUILTIN_PROFILES = {"opticam": OPTICAM, "generic": GENERIC}

_PROFILE_FIELDS = {f.name for f in fields(InstrumentProfile)}


def profile_from_mapping(mapping, source="<profile>", base=None):
    """Build a profile from a mapping (a parsed TOML table).

    Parameters
    ----------
    mapping : dict
        Fields of :class:`InstrumentProfile`. ``base`` names a built-in profile to start from
        (``keywords`` and ``defaults`` are merged into it); ``site`` may be a table with
        ``lon``, ``lat`` (degrees) and ``height`` (m).
    source : str
        File name used in error messages.
    base : InstrumentProfile, optional
        Profile to start from when the mapping has no ``base`` key.

    Returns
    -------
    InstrumentProfile

    Raises
    ------
    ConfigError
        On an unknown field, an unknown base profile or an invalid value; the message names
        ``source`` and the keyword.
    """
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: the instrument must be a table of keywords, not "
                          f"{mapping!r}")
    mapping = dict(mapping)
    base_name = mapping.pop("base", None)
    if base_name is not None:
        if not isinstance(base_name, str) or base_name not in BUILTIN_PROFILES:
            raise ConfigError(f"{source}: 'base' must be one of {sorted(BUILTIN_PROFILES)}, "
                              f"not {base_name!r}")
        base = BUILTIN_PROFILES[base_name]
    unknown = set(mapping) - _PROFILE_FIELDS
    if unknown:
        raise ConfigError(f"{source}: unknown instrument keyword {sorted(unknown)[0]!r}; "
                          f"known: {', '.join(sorted(_PROFILE_FIELDS))}")
    for key in ("keywords", "defaults", "camera_filters"):
        if key in mapping and not isinstance(mapping[key], dict):
            raise ConfigError(f"{source}: {key!r} must be a table ([instrument.{key}]), not "
                              f"{mapping[key]!r}")
    for key in ("keywords", "camera_filters"):
        if key in mapping:
            mapping[key] = {name: (value,) if isinstance(value, str) else
                            tuple(value) if isinstance(value, list) else value
                            for name, value in mapping[key].items()}
    site = mapping.get("site")
    if isinstance(site, dict):
        try:
            mapping["site"] = (float(site["lon"]), float(site["lat"]), float(site["height"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: 'site' needs numeric lon, lat (deg) and height (m)"
                              ) from exc
    elif isinstance(site, list):
        mapping["site"] = tuple(site)
    for key in ("time_keywords", "required", "filters"):
        if key in mapping and mapping[key] is not None:
            if not isinstance(mapping[key], list):
                raise ConfigError(f"{source}: {key!r} must be a list of strings, not "
                                  f"{mapping[key]!r}")
            mapping[key] = tuple(mapping[key])
    try:
        if base is None:
            if "name" not in mapping:
                raise ConfigError(f"{source}: an instrument needs a 'name' (or a 'base')")
            profile = InstrumentProfile(**mapping)
        else:
            merged = dict(mapping)
            merged["keywords"] = {**base.keywords, **mapping.get("keywords", {})}
            merged["defaults"] = {**base.defaults, **mapping.get("defaults", {})}
            merged.setdefault("name", base.name)
            profile = replace(base, **merged)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("<profile>", source)) from None
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return profile


def load_profile(instrument):
    """Return an instrument profile.

    Parameters
    ----------
    instrument : str, path-like or InstrumentProfile
        A built-in name (``"opticam"``, ``"generic"``), a TOML file (its ``[instrument]``
        table, or the whole file when there is none) or a profile object (returned as is).

    Returns
    -------
    InstrumentProfile

    Raises
    ------
    ConfigError
        Unknown name, unreadable or invalid file (the message names the file and keyword).
    """
    if isinstance(instrument, InstrumentProfile):
        return instrument
    text = str(instrument)
    if text.lower() in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[text.lower()]
    path = Path(text)
    if path.suffix.lower() != ".toml":
        raise ConfigError(f"unknown instrument {text!r}: use one of {sorted(BUILTIN_PROFILES)}, "
                          "a profile object or a .toml file")
    table = read_toml(path, "instrument file")
    return profile_from_mapping(table.get("instrument", table), source=str(path))


def read_toml(path, what="file"):
    """Parse a TOML file.

    Parameters
    ----------
    path : Path
    what : str
        What the file is, for the message when it is missing.

    Returns
    -------
    dict

    Raises
    ------
    ConfigError
        The file is missing or not valid TOML (the message names the file).
    """
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
