"""opticam_like: reduce multi-camera high-speed CCD time series (OPTICAM, or any CCD) into
calibrated differential light curves and timing products.

Quick start::

    import opticam_like as ol
    ol.generate_observations(out_directory="night/data", n_images=100)
    red = ol.Reducer(out_directory="night/reduced", data_directory="night/data")
    red.create_catalogs()
    red.photometry(ol.AperturePhotometer(local_background=ol.AnnulusBackground()))
    lc = ol.DifferentialPhotometer("night/reduced").get_relative_light_curve(
        "g", target=2, comparisons=[1, 3])

Importing the package is fast and has no side effect: the public names below are loaded
from their modules on first use (PEP 562, as scientific Python's SPEC 1), astropy's
configuration is left alone (the IERS tables are set inside the functions that need them,
:func:`opticam_like.timing.offline_iers`), and matplotlib, astroalign and the simulator
(``generate_*``, from the separate ``data_generator`` package) are imported only when used.
Log messages go to the ``opticam_like`` logger hierarchy
(``logging.getLogger("opticam_like").setLevel(...)``).
"""

import importlib

from ._version import __version__
from .errors import (AlignmentError, ConfigError, FrameError, MissingOutputError,
                     OpticamLikeError, ReductionError)

_LAZY = {
    "Reducer": "opticam_like.reducer",
    "Settings": "opticam_like.settings",
    "InstrumentProfile": "opticam_like.instruments",
    "load_profile": "opticam_like.instruments",
    "FrameInfo": "opticam_like.frames",
    "read_frame": "opticam_like.frames",
    "read_header": "opticam_like.frames",
    "PhotFlag": "opticam_like.flags",
    "decode_flags": "opticam_like.flags",
    "DefaultBackground": "opticam_like.background",
    "PhotutilsBackground": "opticam_like.background",
    "SExtractorExactBackground": "opticam_like.background",
    "AnnulusBackground": "opticam_like.background.local",
    "DefaultFinder": "opticam_like.detection",
    "AperturePhotometer": "opticam_like.photometry.photometers",
    "OptimalPhotometer": "opticam_like.photometry.optimal",
    "PSFPhotometer": "opticam_like.photometry.psf",
    "CalibrationSet": "opticam_like.calibration",
    "calibrate": "opticam_like.calibration",
    "DifferentialPhotometer": "opticam_like.lightcurves",
    "Analyzer": "opticam_like.analysis",
    "generate_observations": "data_generator",
    "generate_biases": "data_generator",
    "generate_darks": "data_generator",
    "generate_flats": "data_generator",
}
"""Public name -> module it is loaded from on first use."""

__all__ = [*_LAZY, "OpticamLikeError", "ConfigError", "ReductionError", "FrameError",
           "AlignmentError", "MissingOutputError", "__version__"]


def __getattr__(name):
    """Load a public name from its module on first use (and keep it)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
