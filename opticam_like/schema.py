"""On-disk layout of a reduction: file names and column names, in one place.

Every writer and every reader of a reduction folder takes its paths and column names from
here, so a file written by one part of the package is always found by another.

Layout of ``out_directory``::

    cat/{filter}_catalog.ecsv          catalog_path        catalogue of a filter
    cat/{filter}_stack.fits            stack_path          aligned mean stack
    cat/transforms_{filter}.ecsv       transforms_path     per-frame transforms (TRANSFORM_COLUMNS)
    cat/catalogs.pdf                   CATALOGS_PLOT
    diag/frames.ecsv                   FRAMES_TABLE        the scanned frames
    diag/rejected_frames.ecsv          REJECTED_TABLE      REJECTED_COLUMNS
    diag/header_times.pdf              HEADER_TIMES_PLOT
    diag/background.pdf                BACKGROUND_PLOT
    diag/alignment.pdf                 ALIGNMENT_PLOT
    lcs/{filter}_{photometer}.fits     photometry_path     per-frame photometry
    relative_light_curves/{filter}_{target}_{photometer}.ecsv (and .pdf)   light_curve_path
    misc/config.toml                   CONFIG_ECHO         effective configuration (Settings)
    misc/provenance.json               PROVENANCE
    info.log                           LOG_FILE
"""

from pathlib import Path

__all__ = ["CAT", "DIAG", "LCS", "MISC", "RELATIVE", "FRAMES_TABLE", "REJECTED_TABLE",
           "REJECTED_COLUMNS", "DEFAULT_PHOTOMETER_KEY", "CONFIG_ECHO", "CATALOGS_PLOT",
           "HEADER_TIMES_PLOT",
           "BACKGROUND_PLOT", "ALIGNMENT_PLOT", "PROVENANCE", "LOG_FILE", "TIME_COLUMNS",
           "TRANSFORM_COLUMNS", "catalog_path", "stack_path", "transforms_path",
           "photometry_path", "photometer_names", "light_curve_name", "light_curve_path",
           "light_curve_paths", "time_column"]

CAT, DIAG, LCS, MISC, RELATIVE = "cat", "diag", "lcs", "misc", "relative_light_curves"
"""Sub-folders of an output directory."""

FRAMES_TABLE = f"{DIAG}/frames.ecsv"
REJECTED_TABLE = f"{DIAG}/rejected_frames.ecsv"
CONFIG_ECHO = f"{MISC}/config.toml"
PROVENANCE = f"{MISC}/provenance.json"
LOG_FILE = "info.log"
CATALOGS_PLOT = f"{CAT}/catalogs.pdf"
HEADER_TIMES_PLOT = f"{DIAG}/header_times.pdf"
BACKGROUND_PLOT = f"{DIAG}/background.pdf"
ALIGNMENT_PLOT = f"{DIAG}/alignment.pdf"
NIGHT_CATALOG = f"{CAT}/night_catalog.ecsv"
REPORT_HTML = "report.html"
REPORT_PDF = "report.pdf"

DEFAULT_PHOTOMETER_KEY = "PHOTDFLT"
"""Metadata key of a photometry table naming the default photometer of its pass (the first
given to ``Reducer.photometry``)."""

REJECTED_COLUMNS = ("file", "path", "stage", "reason")
"""Columns of the rejected-frames table: file name, full path, pass, reason."""

TIME_COLUMNS = {"bjd_tdb": ("jd", "tdb"), "bmjd_tdb": ("mjd", "tdb"), "mjd_utc": ("mjd", "utc")}
"""Time columns of photometry tables and light curves (mid-exposure; the scale is in the
name): name -> (format, scale) of a plain-number column."""

TRANSFORM_COLUMNS = ("frame", "file", "matrix", "dx", "dy", "method", "n_matches", "rms",
                     "fwhm", "n_trails", "background_median", "background_rms", "aligned",
                     "reason")
"""Columns of ``cat/transforms_{filter}.ecsv``; ``matrix``, ``method``, ``n_matches`` and
``rms`` are :meth:`opticam_like.alignment.Transform.to_dict` records."""

_PHOTOMETRY_SUFFIX = ".fits"
_LIGHT_CURVE_SUFFIX = ".ecsv"


def catalog_path(out_directory, filter):
    """``cat/{filter}_catalog.ecsv``."""
    return Path(out_directory) / CAT / f"{filter}_catalog.ecsv"


def stack_path(out_directory, filter):
    """``cat/{filter}_stack.fits``."""
    return Path(out_directory) / CAT / f"{filter}_stack.fits"


def transforms_path(out_directory, filter):
    """``cat/transforms_{filter}.ecsv``."""
    return Path(out_directory) / CAT / f"transforms_{filter}.ecsv"


def photometry_path(out_directory, filter, photometer):
    """``lcs/{filter}_{photometer}.fits``."""
    return Path(out_directory) / LCS / f"{filter}_{photometer}{_PHOTOMETRY_SUFFIX}"


def photometry_filters(out_directory):
    """Filters with a photometry table under ``lcs/``: u g r i z first (by wavelength), then
    the others by name."""
    names = {p.name.split("_", 1)[0]
             for p in (Path(out_directory) / LCS).glob(f"*_*{_PHOTOMETRY_SUFFIX}")}
    order = "ugriz"
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def photometer_names(out_directory, filter):
    """Names of the photometers with a table for ``filter`` under ``lcs/``, sorted."""
    prefix = f"{filter}_"
    return sorted(p.name[len(prefix):-len(_PHOTOMETRY_SUFFIX)]
                  for p in (Path(out_directory) / LCS).glob(f"{prefix}*{_PHOTOMETRY_SUFFIX}"))


def light_curve_name(filter, target, photometer, suffix=_LIGHT_CURVE_SUFFIX):
    """File name of a relative light curve: ``{filter}_{target}_{photometer}{suffix}``.

    Parameters
    ----------
    filter : str
    target : int or str
        Catalogue ID of the target.
    photometer : str
        Photometer name.
    suffix : str
        ``'.ecsv'`` (the table) or ``'.pdf'`` (its plot).
    """
    return f"{filter}_{target}_{photometer}{suffix}"


def light_curve_path(out_directory, filter, target, photometer, suffix=_LIGHT_CURVE_SUFFIX):
    """``relative_light_curves/`` + :func:`light_curve_name`."""
    return Path(out_directory) / RELATIVE / light_curve_name(filter, target, photometer, suffix)


def light_curve_paths(out_directory, target=None, photometer=None, filter=None):
    """Relative light curves of a reduction, optionally of one target, photometer, filter.

    Returns
    -------
    list of Path
        Sorted; matches of :func:`light_curve_name` with ``*`` for what is not given.
    """
    pattern = light_curve_name("*" if filter is None else filter,
                               "*" if target is None else target,
                               "*" if photometer is None else photometer)
    return sorted((Path(out_directory) / RELATIVE).glob(pattern))


def time_column(table):
    """Name of the time column of a photometry table or light curve.

    Raises
    ------
    KeyError
        When the table has none of :data:`TIME_COLUMNS`.
    """
    for name in TIME_COLUMNS:
        if name in table.colnames:
            return name
    raise KeyError(f"table has no time column (one of {', '.join(TIME_COLUMNS)})")
