"""Instrument profiles: how to read a camera's FITS headers.

An :class:`InstrumentProfile` maps the logical quantities the pipeline needs (filter, binning,
gain, exposure, time, ...) to header keywords, says what the time stamp means (start, middle or
end of the exposure), and carries defaults for what a header may lack (read noise, saturation
level, the observing site). Two profiles are built in: ``"opticam"`` and ``"generic"``; users
pass their own profile object or a TOML file (see :func:`load_profile`).
"""

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
import tomllib

from .errors import ConfigError

__all__ = ["InstrumentProfile", "ConfigError", "load_profile", "profile_from_mapping",
           "read_toml", "BUILTIN_PROFILES"]

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
        a date keyword and a time keyword; a suffix ``":mjd"`` or ``":jd"`` marks a numeric
        keyword (``"MJD-OBS:mjd"``). Strings keep their full sub-second precision.
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

    def with_overrides(self, **changes):
        """A copy of the profile with some fields replaced (``defaults`` are merged)."""
        if "defaults" in changes:
            changes["defaults"] = {**self.defaults, **changes["defaults"]}
        return replace(self, **changes)


def validate_profile(profile, source="<profile>"):
    """Check a profile's fields; raise :class:`ConfigError` naming ``source`` and the field."""
    unknown = set(profile.keywords) - set(LOGICAL_KEYWORDS)
    if unknown:
        raise ConfigError(f"{source}: unknown quantity {sorted(unknown)[0]!r} in 'keywords'; "
                          f"known: {', '.join(LOGICAL_KEYWORDS)}")
    for quantity, keys in profile.keywords.items():
        if isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
            raise ConfigError(f"{source}: keywords.{quantity} must be a list of header keywords")
    if profile.time_reference not in TIME_REFERENCES:
        raise ConfigError(f"{source}: 'time_reference' must be one of {TIME_REFERENCES}, "
                          f"not {profile.time_reference!r}")
    if not profile.time_keywords:
        raise ConfigError(f"{source}: 'time_keywords' must list at least one header keyword")
    unknown = set(profile.required) - set(LOGICAL_KEYWORDS)
    if unknown:
        raise ConfigError(f"{source}: unknown quantity {sorted(unknown)[0]!r} in 'required'")
    unknown = set(profile.defaults) - set(LOGICAL_KEYWORDS)
    if unknown:
        raise ConfigError(f"{source}: unknown quantity {sorted(unknown)[0]!r} in 'defaults'")
    site = profile.site
    if site is not None and not isinstance(site, str):
        if len(site) != 3 or not all(isinstance(v, (int, float)) for v in site):
            raise ConfigError(f"{source}: 'site' must be a name or (lon_deg, lat_deg, height_m)")


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
    required=("filter", "binning", "exposure", "gain"),
    filters=("u", "g", "r", "i", "z"),
    site=(-115.4636, 31.0442, 2790.0),
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
    time_keywords=("DATE-OBS", "DATE-OBS+TIME-OBS", "DATE-OBS+UT", "MJD-OBS:mjd"),
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
    mapping = dict(mapping)
    base_name = mapping.pop("base", None)
    if base_name is not None:
        if base_name not in BUILTIN_PROFILES:
            raise ConfigError(f"{source}: 'base' must be one of {sorted(BUILTIN_PROFILES)}, "
                              f"not {base_name!r}")
        base = BUILTIN_PROFILES[base_name]
    unknown = set(mapping) - _PROFILE_FIELDS
    if unknown:
        raise ConfigError(f"{source}: unknown instrument keyword {sorted(unknown)[0]!r}; "
                          f"known: {', '.join(sorted(_PROFILE_FIELDS))}")
    if "keywords" in mapping:
        keywords = {}
        for quantity, keys in mapping["keywords"].items():
            keywords[quantity] = (keys,) if isinstance(keys, str) else tuple(keys)
        mapping["keywords"] = keywords
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
            if isinstance(mapping[key], str):
                raise ConfigError(f"{source}: {key!r} must be a list of strings")
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
