"""Reduction configuration files (TOML): the schema and its checks.

A reduction is described by a readable TOML file (as hipercam's ``reduce.red``);
:class:`opticam_like.settings.Settings` merges it with the Reducer's arguments, and the
effective configuration, defaults included, is echoed into ``misc/config.toml`` (a valid file
of this schema, which reads back to the same settings) and into the metadata of every table,
so each light curve says how it was made. Every key is checked when the file is
read: a typo or a wrong type stops the run at once with a message that names the file and the
keyword.

Example
-------
.. code-block:: toml

    [instrument]
    base = "generic"            # or name = "opticam"; or a full profile table
    [site]
    lon = -70.70                # deg (east positive)
    lat = -29.01                # deg
    height = 2280.0             # m
    [background]
    box_size = 64
    filter_size = 3
    [detection]
    threshold = 5.0
    [[photometry]]
    type = "aperture"
    fwhm_scale = 2.0
"""

from pathlib import Path

import tomli_w

from .background.local import AnnulusBackground
from .errors import ConfigError
from .instruments import read_toml
from .photometry.optimal import OptimalPhotometer
from .photometry.photometers import AperturePhotometer
from .photometry.psf import PSFPhotometer

__all__ = ["load_config", "dump_config", "photometers_from_config", "SCHEMA", "ConfigError"]

_NUMBER = (int, float)

#: Section -> key -> (accepted types, meaning). ``photometry`` is a list of tables, each with a
#: ``type`` and the keyword arguments of that photometer class.
SCHEMA = {
    "instrument": None,  # validated by instruments.profile_from_mapping
    "site": {
        "name": (str, "site name known to opticam_like.timing.SITES"),
        "lon": (_NUMBER, "longitude (deg, east positive)"),
        "lat": (_NUMBER, "latitude (deg)"),
        "height": (_NUMBER, "height above sea level (m)"),
    },
    "target": {
        "ra": (_NUMBER + (str,), "target right ascension (deg or sexagesimal hours)"),
        "dec": (_NUMBER + (str,), "target declination (deg or sexagesimal)"),
    },
    "calibration": {
        "bias": ((str, list), "bias frames: directory or list of files"),
        "dark": ((str, list), "dark frames: directory or list of files"),
        "flat": ((str, list), "flat frames: directory or list of files"),
        "remove_cosmic_rays": (bool, "detect cosmic rays with astroscrappy"),
        "find_defects": (bool, "find hot/dead pixels, columns and rows in the science frames"),
    },
    "background": {
        "estimator": (str, "'default', 'photutils' or 'sextractor'"),
        "box_size": (_NUMBER + (list,), "mesh box size (pixels)"),
        "filter_size": (_NUMBER + (list,), "median filter size (meshes)"),
        "sigma": (_NUMBER, "clipping threshold (default estimator)"),
        "maxiters": (int, "clipping iterations (default estimator)"),
        "exclude_percentile": (_NUMBER, "percentage of masked pixels that excludes a mesh"),
        "filter_threshold": (_NUMBER, "only filter meshes above this level"),
        "fill_value": (_NUMBER, "value where no mesh is usable"),
        "custom": (str, "a user-supplied estimator (echo only: pass background=)"),
    },
    "detection": {
        "threshold": (_NUMBER, "detection threshold (x background rms)"),
        "npixels": (int, "minimum connected pixels"),
        "fwhm": (_NUMBER, "smoothing kernel FWHM (pixels)"),
        "deblend": (bool, "deblend the catalogue sources on the stack"),
        "finder": (str, "a user-supplied frame finder (echo only: pass finder=)"),
        "catalog_finder": (str, "a user-supplied catalogue finder (echo only: pass "
                                "catalog_finder=)"),
    },
    "alignment": {
        "method": (str, "'auto' (astroalign, translation fallback), 'astroalign' or "
                        "'translation'"),
        "reference_frame": ((int, str), "index of the reference frame or 'auto'"),
        "recentre": (str, "'transform', 'each' or 'none'"),
    },
    "reduction": {
        "n_workers": (int, "worker processes"),
        "start_method": (str, "multiprocessing start method: 'fork', 'forkserver' or 'spawn'"),
        "progress": (bool, "show progress bars"),
        "max_sources": (int, "keep at most this many catalogue sources per filter"),
    },
    "photometry": list,
    "data": {
        "directories": (list, "directories of the frames (echo of the run)"),
    },
    "light_curve": {
        "target": ((int, list, dict), "the target: its night ID, [x, y] (px in each "
                                      "filter's frame), {x, y, frame} or {ra, dec} (deg)"),
        "comparisons": (list, "the comparison stars, each given like target"),
        "photometer": (str, "name of the photometer whose table to use"),
    },
}


def _check_section(section, table, source):
    spec = SCHEMA[section]
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{section}] must be a table")
    for key, value in table.items():
        if key not in spec:
            raise ConfigError(f"{source}: unknown keyword {key!r} in [{section}]; "
                              f"known: {', '.join(spec)}")
        types, meaning = spec[key]
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple)
                                                     else (types,)):
            raise ConfigError(f"{source}: [{section}] {key} must be {meaning}, not a boolean")
        if not isinstance(value, types):
            raise ConfigError(f"{source}: [{section}] {key} must be {meaning}, "
                              f"got {value!r}")


def validate_config(config, source="<config>"):
    """Check a configuration mapping against :data:`SCHEMA`.

    Parameters
    ----------
    config : dict
        Parsed configuration.
    source : str
        File name used in messages.

    Returns
    -------
    dict
        The same mapping.

    Raises
    ------
    ConfigError
        Unknown section or keyword, or a value of the wrong type (named).
    """
    for section, table in config.items():
        if section not in SCHEMA:
            raise ConfigError(f"{source}: unknown section [{section}]; "
                              f"known: {', '.join(SCHEMA)}")
        if section == "instrument":
            if not isinstance(table, (str, dict)):
                raise ConfigError(f"{source}: 'instrument' must be a name, a .toml path "
                                  "or a table")
        elif section == "photometry":
            if not isinstance(table, list) or not all(isinstance(t, dict) for t in table):
                raise ConfigError(f"{source}: photometers are given as [[photometry]] tables")
            for number, entry in enumerate(table, 1):
                if "type" not in entry:
                    raise ConfigError(f"{source}: [[photometry]] number {number} has no "
                                      "'type' keyword ('aperture', 'optimal' or 'psf')")
        else:
            _check_section(section, table, source)
    return config


def load_config(path):
    """Read and validate a reduction configuration file.

    Parameters
    ----------
    path : str or Path
        TOML file.

    Returns
    -------
    dict
        The validated configuration. Relative paths in it (calibration frames, an instrument
        ``.toml``) are taken relative to the configuration file's folder, so a configuration
        works from any working directory.

    Raises
    ------
    ConfigError
        Missing file, invalid TOML, or an invalid section/keyword (the message names the file
        and the keyword).
    """
    path = Path(path)
    config = validate_config(read_toml(path, "configuration file"), source=str(path))
    return _resolve_paths(config, path.parent)


def _resolve_paths(config, folder):
    """Relative paths of a configuration made relative to ``folder``."""
    def resolve(value):
        if isinstance(value, list):
            return [resolve(v) for v in value]
        value = Path(value)
        return str(value if value.is_absolute() else folder / value)

    for kind in ("bias", "dark", "flat"):
        if kind in config.get("calibration", {}):
            config["calibration"][kind] = resolve(config["calibration"][kind])
    instrument = config.get("instrument")
    if isinstance(instrument, str) and instrument.lower().endswith(".toml"):
        config["instrument"] = resolve(instrument)
    return config


def dump_config(config):
    """The configuration as TOML text (None values are left out)."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value if v is not None]
        if isinstance(value, Path):
            return str(value)
        return value
    return tomli_w.dumps(clean(config))


def photometers_from_config(entries, source="<config>"):
    """Photometer objects from ``[[photometry]]`` tables.

    Each table has a ``type`` (``'aperture'``, ``'optimal'`` or ``'psf'``) and the keyword
    arguments of that class; a ``local_background`` sub-table holds the arguments of
    :class:`~opticam_like.background.local.AnnulusBackground` (or ``false`` for none).

    Parameters
    ----------
    entries : list of dict
        The parsed ``[[photometry]]`` tables.
    source : str
        File name used in messages.

    Returns
    -------
    list of photometers

    Raises
    ------
    ConfigError
        Unknown type or keyword, or an invalid value (the message names the file, the table
        number and the keyword).
    """
    classes = {"aperture": AperturePhotometer, "optimal": OptimalPhotometer,
               "psf": PSFPhotometer}
    photometers = []
    for number, entry in enumerate(entries, 1):
        kwargs = dict(entry)
        kind = kwargs.pop("type")
        where = f"{source}: [[photometry]] number {number}"
        if kind not in classes:
            raise ConfigError(f"{where}: type must be one of {sorted(classes)}, not {kind!r}")
        local = kwargs.pop("local_background", None)
        try:
            if local is False:
                kwargs["local_background"] = None
            elif isinstance(local, dict):
                kwargs["local_background"] = AnnulusBackground(**local)
            elif local is not None:
                raise ConfigError(f"{where}: local_background must be a table or false")
            photometers.append(classes[kind](**kwargs))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return photometers
