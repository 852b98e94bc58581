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

Importing the package has no side effect: astropy's configuration is left alone (the IERS
tables are set inside the functions that need them, :func:`opticam_like.timing.offline_iers`),
and matplotlib, astroalign and the simulator (``generate_*``, from the separate
``data_generator`` package) are imported only when used. Log messages go to the
``opticam_like`` logger hierarchy (``logging.getLogger("opticam_like").setLevel(...)``).
"""

from ._version import __version__
from .errors import OpticamLikeError, ConfigError, FrameError, ReductionError, AlignmentError
from .instruments import InstrumentProfile, load_profile
from .frames import FrameInfo, read_frame, read_header
from .flags import PhotFlag, decode_flags
from .background import DefaultBackground, PhotutilsBackground, SExtractorExactBackground
from .background.local import AnnulusBackground
from .detection import DefaultFinder
from .photometry.photometers import AperturePhotometer
from .photometry.optimal import OptimalPhotometer
from .photometry.psf import PSFPhotometer
from .calibration import CalibrationSet, calibrate
from .settings import Settings
from .lightcurves import DifferentialPhotometer
from .reducer import Reducer
from .analysis import Analyzer

_SIMULATOR = ("generate_observations", "generate_biases", "generate_darks", "generate_flats")

__all__ = ["Reducer", "Settings", "DefaultBackground", "PhotutilsBackground",
           "SExtractorExactBackground", "AnnulusBackground", "DefaultFinder",
           "AperturePhotometer", "OptimalPhotometer", "PSFPhotometer", "CalibrationSet",
           "calibrate", "DifferentialPhotometer", "Analyzer", "InstrumentProfile",
           "OpticamLikeError", "ConfigError", "ReductionError", "FrameError", "AlignmentError",
           "FrameInfo", "PhotFlag", "decode_flags", "load_profile", "read_frame", "read_header",
           *_SIMULATOR, "__version__"]


def __getattr__(name):
    """The simulator's functions, imported from ``data_generator`` on first use."""
    if name in _SIMULATOR:
        import data_generator
        return getattr(data_generator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
