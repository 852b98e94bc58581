"""The settings of a reduction: one frozen, validated object from arguments or a TOML file.

:class:`Settings` merges the keyword arguments of :class:`~opticam_like.reducer.Reducer`, a
configuration file (:mod:`opticam_like.config`: its schema and checks) and the defaults, in
that order of precedence, and checks every value once. Its :meth:`Settings.to_toml` is the
effective configuration echoed into ``misc/config.toml``; reading that file back gives the same
settings::

    settings = Settings.from_arguments(config="reduce.toml", n_workers=2)
    Settings.from_toml(out / "misc" / "config.toml") == settings      # True

Equality compares the effective configurations (:meth:`Settings.to_dict`): two settings are
equal when they describe the same reduction. A user-supplied background estimator or finder
that is not one of the package's classes is echoed by name only (``custom`` keys); reading
such a file back needs that object again as an argument.
"""

from dataclasses import dataclass, field, fields, replace
import functools
from pathlib import Path
import types

from .background import DefaultBackground, PhotutilsBackground, SExtractorExactBackground
from .config import dump_config, load_config, photometers_from_config, validate_config
from .detection import DefaultFinder, check_finder
from .errors import ConfigError
from .instruments import InstrumentProfile, load_profile, profile_from_mapping

__all__ = ["Settings", "background_from_config", "describe"]

ALIGNMENTS = ("auto", "translation", "astroalign")
RECENTRE_MODES = ("transform", "each", "none")
START_METHODS = ("fork", "forkserver", "spawn")

_BACKGROUNDS = {"default": DefaultBackground, "photutils": PhotutilsBackground,
                "sextractor": SExtractorExactBackground}
#: Constructor arguments echoed for each background class (those the config file accepts).
_BACKGROUND_KEYS = {
    "default": ("box_size", "filter_size", "sigma", "maxiters", "exclude_percentile",
                "filter_threshold", "fill_value"),
    "photutils": ("box_size", "filter_size"),
    "sextractor": ("box_size", "filter_size", "filter_threshold", "fill_value"),
}
_FINDER_KEYS = ("threshold", "npixels", "fwhm")


def background_from_config(section, source="<config>"):
    """A global background estimator from a ``[background]`` table.

    Parameters
    ----------
    section : dict
        ``estimator`` (``'default'``, ``'photutils'`` or ``'sextractor'``; default
        ``'default'``) and the keyword arguments of that class.
    source : str
        File name used in messages.

    Returns
    -------
    DefaultBackground, PhotutilsBackground or SExtractorExactBackground

    Raises
    ------
    ConfigError
        Unknown estimator, a keyword that class does not take, or an invalid value.
    """
    kwargs = {k: v for k, v in section.items() if k != "custom"}
    estimator = kwargs.pop("estimator", "default")
    if estimator not in _BACKGROUNDS:
        raise ConfigError(f"{source}: [background] estimator must be one of "
                          f"{sorted(_BACKGROUNDS)}, not {estimator!r}")
    extra = sorted(set(kwargs) - set(_BACKGROUND_KEYS[estimator]))
    if extra:
        raise ConfigError(f"{source}: [background] {extra[0]} is not a keyword of the "
                          f"{estimator!r} estimator; it takes "
                          f"{', '.join(_BACKGROUND_KEYS[estimator])}")
    try:
        return _BACKGROUNDS[estimator](**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: [background] {exc}") from None


def describe(obj):
    """A one-line description of a user-supplied callable: class and simple public attributes.

    Returns
    -------
    str
        E.g. ``"mymodule.MyBackground(box=32)"`` or
        ``"functools.partial(photutils.background.background_2d.Background2D(), box_size=32)"``.
    """
    if isinstance(obj, functools.partial):
        arguments = [repr(a) for a in obj.args] + [f"{k}={v!r}" for k, v in obj.keywords.items()]
        return f"functools.partial({', '.join([describe(obj.func), *arguments])})"
    params = []
    for key, value in getattr(obj, "__dict__", {}).items():
        if key.startswith("_"):
            continue
        if isinstance(value, (int, float, str, bool)) or value is None:
            params.append(f"{key}={value!r}")
        elif isinstance(value, (tuple, list)) and all(isinstance(v, (int, float)) for v in value):
            params.append(f"{key}={list(value)!r}")
    named = obj if isinstance(obj, (types.FunctionType, type)) else type(obj)
    return f"{named.__module__}.{named.__qualname__}({', '.join(params)})"


def _plain(value):
    """TOML-friendly copy: tuples become lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _background_record(background):
    for estimator, cls in _BACKGROUNDS.items():
        if type(background) is cls and not getattr(background, "kwargs", None) and \
                getattr(background, "bkg_estimator", None) is None and \
                getattr(background, "bkgrms_estimator", None) is None:
            return {"estimator": estimator, **{k: _plain(getattr(background, k))
                                               for k in _BACKGROUND_KEYS[estimator]}}
    return {"custom": describe(background)}


def _finders_record(finder, catalog_finder):
    defaults = DefaultFinder()
    simple = all(type(f) is DefaultFinder and all(
        getattr(f, k) == getattr(defaults, k) for k in ("border", "max_sources", "nlevels",
                                                         "contrast"))
        for f in (finder, catalog_finder))
    if simple and not finder.deblend and all(
            getattr(finder, k) == getattr(catalog_finder, k) for k in _FINDER_KEYS):
        return {**{k: getattr(finder, k) for k in _FINDER_KEYS},
                "deblend": catalog_finder.deblend}
    return {"finder": describe(finder), "catalog_finder": describe(catalog_finder)}


def _photometer_record(photometer):
    record = dict(photometer.params())
    local = record.get("local_background")
    if local is None:
        record["local_background"] = False
    else:
        record["local_background"] = {k: v for k, v in local.items() if k != "type"}
    return _plain(record)


def _profile_record(profile):
    record = {f.name: _plain(getattr(profile, f.name)) for f in fields(InstrumentProfile)}
    site = profile.site
    if isinstance(site, (tuple, list)):
        record["site"] = {"lon": site[0], "lat": site[1], "height": site[2]}
    return record


def _site_record(site):
    if site is None:
        return {}
    if isinstance(site, str):
        return {"name": site}
    if hasattr(site, "geodetic"):
        lon, lat, height = site.geodetic
        return {"lon": float(lon.deg), "lat": float(lat.deg),
                "height": float(height.to_value("m"))}
    return {"lon": site[0], "lat": site[1], "height": site[2]}


def _absolute(value):
    """Absolute path(s) as str (a list stays a list); None stays None. No I/O."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [str(Path(v).absolute()) for v in value]
    return str(Path(value).absolute())


@dataclass(frozen=True, eq=False)
class Settings:
    """Everything a reduction depends on besides the frames, validated.

    Build it with :meth:`from_arguments` (the Reducer's keywords and an optional
    configuration) or :meth:`from_toml`; the constructor itself only validates.

    Attributes
    ----------
    profile : InstrumentProfile
        How headers are read.
    background : callable
        Global background estimator ``bkg(data, mask=None) -> Background2D``-like.
    finder, catalog_finder : callable
        Source finders of the per-frame alignment and of the stack's catalogue.
    photometers : tuple
        Default photometers of :meth:`Reducer.photometry` (from ``[[photometry]]``).
    remove_cosmic_rays : bool
    find_defects : bool
        Find detector defects in the science frames (:mod:`opticam_like.calibration.defects`).
    reference_frame : int or 'auto'
    alignment : {'auto', 'translation', 'astroalign'}
    recentre : {'transform', 'each', 'none'}
    max_sources : int or None
    n_workers : int or None
        Worker processes (None: the number of CPUs).
    start_method : {'fork', 'forkserver', 'spawn'} or None
        Start method of the worker processes (None: Python's default).
    progress : bool
    site : str, tuple (lon_deg, lat_deg, height_m), EarthLocation or None
    target : tuple (ra, dec) or None
        Target position for the barycentric correction (deg or sexagesimal strings).
    bias, dark, flat : str or list of str or None
        Calibration frames (directories or files), made absolute.
    data_directories : tuple of str
        Where the frames are, made absolute (the Reducer's arguments, else the file's
        ``[data] directories``).
    light_curve : dict
        ``target``, ``comparisons``, ``photometer`` of the ``[light_curve]`` table (used by
        the command line).
    source : str
        Where the settings came from (a file name or ``'<arguments>'``); not compared.

    Raises
    ------
    ConfigError
        Any invalid value; the message names ``source`` and the keyword.
    """

    profile: InstrumentProfile
    background: object
    finder: object
    catalog_finder: object
    photometers: tuple = ()
    remove_cosmic_rays: bool = False
    find_defects: bool = True
    reference_frame: object = "auto"
    alignment: str = "auto"
    recentre: str = "transform"
    max_sources: int | None = None
    n_workers: int | None = None
    start_method: str | None = None
    progress: bool = True
    site: object = None
    target: tuple | None = None
    bias: object = None
    dark: object = None
    flat: object = None
    data_directories: tuple = ()
    light_curve: dict = field(default_factory=dict)
    source: str = "<arguments>"

    def __post_init__(self):
        where = self.source

        def fail(keyword, message):
            raise ConfigError(f"{where}: {keyword} {message}")

        if self.alignment not in ALIGNMENTS:
            fail("alignment", f"must be one of {', '.join(map(repr, ALIGNMENTS))}, not "
                              f"{self.alignment!r}")
        if self.recentre not in RECENTRE_MODES:
            fail("recentre", f"must be one of {', '.join(map(repr, RECENTRE_MODES))}, not "
                             f"{self.recentre!r}")
        ref = self.reference_frame
        if not (ref == "auto" or (isinstance(ref, int) and not isinstance(ref, bool)
                                  and ref >= 0)):
            fail("reference_frame", f"must be 'auto' or a frame index >= 0, not {ref!r}")
        for name in ("max_sources", "n_workers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                fail(name, f"must be a positive integer, not {value!r}")
        if self.start_method not in (None, *START_METHODS):
            fail("start_method", f"must be one of {', '.join(map(repr, START_METHODS))}, not "
                                 f"{self.start_method!r}")
        for name in ("background", "finder", "catalog_finder"):
            if not callable(getattr(self, name)):
                fail(name, f"must be callable, got {getattr(self, name)!r}")
        for name in ("finder", "catalog_finder"):
            if not isinstance(getattr(self, name), DefaultFinder):
                try:
                    check_finder(getattr(self, name), name)
                except TypeError as exc:
                    raise ConfigError(f"{where}: {exc}") from exc
        names = [p.name for p in self.photometers]
        if len(set(names)) != len(names):
            fail("photometry", f"photometer names must differ, got {names}")
        if self.target is not None and len(self.target) != 2:
            fail("target", f"must be (ra, dec), got {self.target!r}")
        object.__setattr__(self, "photometers", tuple(self.photometers))
        object.__setattr__(self, "remove_cosmic_rays", bool(self.remove_cosmic_rays))
        object.__setattr__(self, "find_defects", bool(self.find_defects))
        object.__setattr__(self, "progress", bool(self.progress))
        object.__setattr__(self, "data_directories",
                           tuple(str(Path(d).absolute()) for d in self.data_directories))
        for kind in ("bias", "dark", "flat"):  # absolute, so that the echo reads back anywhere
            object.__setattr__(self, kind, _absolute(getattr(self, kind)))

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_arguments(cls, config=None, *, instrument=None, background=None, finder=None,
                       catalog_finder=None, remove_cosmic_rays=None, find_defects=None,
                       site=None, target=None,
                       reference_frame=None, alignment=None, recentre=None, max_sources=None,
                       n_workers=None, start_method=None, progress=None, bias=None, dark=None,
                       flat=None,
                       data_directories=None, photometers=None):
        """Settings from explicit arguments, a configuration and the defaults.

        Parameters
        ----------
        config : str, Path, dict or None
            A TOML file (:func:`opticam_like.config.load_config`) or an already parsed
            mapping. Explicit (non-None) arguments take precedence over it.
        **arguments
            As :class:`~opticam_like.reducer.Reducer` (``instrument`` may be a name, a
            ``.toml`` path, a profile table or an :class:`InstrumentProfile`).

        Returns
        -------
        Settings

        Raises
        ------
        ConfigError
            An invalid file, keyword or value (named), or a ``custom`` estimator in the file
            that no argument supplies.
        """
        if config is None:
            cfg, source = {}, "<arguments>"
        elif isinstance(config, dict):
            cfg, source = validate_config(config), "<config>"
        else:
            cfg, source = load_config(config), str(config)

        def pick(value, section, key, default):
            if value is not None:
                return value
            return cfg.get(section, {}).get(key, default)

        if instrument is None:
            instrument = cfg.get("instrument", "opticam")
        if isinstance(instrument, InstrumentProfile):
            profile = instrument
        elif isinstance(instrument, dict):
            profile = profile_from_mapping(instrument, source=f"{source}: [instrument]")
        else:
            profile = load_profile(instrument)
        section = cfg.get("background", {})
        if background is None:
            _refuse_custom(section, "custom", "background", source)
            background = background_from_config(section, source)
        det = cfg.get("detection", {})
        det_kwargs = {"threshold": det.get("threshold", 5.0), "npixels": det.get("npixels", 5),
                      "fwhm": det.get("fwhm")}
        try:
            if finder is None:
                _refuse_custom(det, "finder", "detection", source)
                finder = DefaultFinder(**det_kwargs)
            if catalog_finder is None:
                _refuse_custom(det, "catalog_finder", "detection", source)
                catalog_finder = DefaultFinder(deblend=det.get("deblend", True), **det_kwargs)
        except ValueError as exc:
            raise ConfigError(f"{source}: [detection] {exc}") from None
        if site is None and "site" in cfg:
            s = cfg["site"]
            site = s.get("name") or (s.get("lon"), s.get("lat"), s.get("height", 0.0))
        if site is None:
            site = profile.site
        if target is None and cfg.get("target"):
            target = (cfg["target"].get("ra"), cfg["target"].get("dec"))
        if photometers is None:
            photometers = photometers_from_config(cfg.get("photometry", []), source)
        cal = cfg.get("calibration", {})
        return cls(
            profile=profile, background=background, finder=finder,
            catalog_finder=catalog_finder, photometers=tuple(photometers),
            find_defects=pick(find_defects, "calibration", "find_defects", True),
            remove_cosmic_rays=pick(remove_cosmic_rays, "calibration", "remove_cosmic_rays",
                                    False),
            reference_frame=pick(reference_frame, "alignment", "reference_frame", "auto"),
            alignment=pick(alignment, "alignment", "method", "auto"),
            recentre=pick(recentre, "alignment", "recentre", "transform"),
            max_sources=pick(max_sources, "reduction", "max_sources", None),
            n_workers=pick(n_workers, "reduction", "n_workers", None),
            start_method=pick(start_method, "reduction", "start_method", None),
            progress=pick(progress, "reduction", "progress", True),
            site=site, target=tuple(target) if target is not None else None,
            bias=bias or cal.get("bias"), dark=dark or cal.get("dark"),
            flat=flat or cal.get("flat"),
            data_directories=(data_directories if data_directories is not None
                              else cfg.get("data", {}).get("directories", ())),
            light_curve=dict(cfg.get("light_curve", {})), source=source)

    @classmethod
    def from_toml(cls, path, **arguments):
        """Settings from a TOML file (e.g. a run's ``misc/config.toml``).

        ``arguments`` are those of :meth:`from_arguments` and take precedence (needed for
        the user-supplied objects a file names as ``custom``).
        """
        return cls.from_arguments(config=path, **arguments)

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    # ---------------------------------------------------------------- echo
    def to_dict(self):
        """The effective configuration, in the schema of :mod:`opticam_like.config`.

        Returns
        -------
        dict
            Sections ``instrument`` (the whole profile), ``site``, ``target``,
            ``calibration``, ``background``, ``detection``, ``alignment``, ``photometry``,
            ``reduction``, ``data``, ``light_curve``; None values are left out by
            :meth:`to_toml`.
        """
        return {
            "instrument": _profile_record(self.profile),
            "site": _site_record(self.site),
            "target": ({"ra": self.target[0], "dec": self.target[1]} if self.target
                       else {}),
            "calibration": {"bias": self.bias, "dark": self.dark, "flat": self.flat,
                            "remove_cosmic_rays": self.remove_cosmic_rays,
                            "find_defects": self.find_defects},
            "background": _background_record(self.background),
            "detection": _finders_record(self.finder, self.catalog_finder),
            "alignment": {"method": self.alignment, "reference_frame": self.reference_frame,
                          "recentre": self.recentre},
            "photometry": [_photometer_record(p) for p in self.photometers],
            "reduction": {"n_workers": self.n_workers, "start_method": self.start_method,
                          "max_sources": self.max_sources, "progress": self.progress},
            "data": {"directories": list(self.data_directories)},
            "light_curve": _plain(self.light_curve),
        }

    def to_toml(self):
        """:meth:`to_dict` as TOML text (what ``misc/config.toml`` holds)."""
        return dump_config(self.to_dict())

    def __eq__(self, other):
        if not isinstance(other, Settings):
            return NotImplemented
        return dump_config(self.to_dict()) == dump_config(other.to_dict())

    __hash__ = None


def _refuse_custom(section, key, name, source):
    if key in section:
        raise ConfigError(f"{source}: [{name}] {key} = {section[key]!r} names a user-supplied "
                          f"object, which cannot be rebuilt from a file; pass "
                          f"{'background' if key == 'custom' else key}= to the Reducer")

