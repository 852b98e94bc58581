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
"""

__version__ = "0.1.0"

from .timing import configure_offline_iers

configure_offline_iers()

from .instruments import InstrumentProfile, ConfigError, load_profile  # noqa: E402
from .frames import FrameInfo, FrameError, read_frame, read_header  # noqa: E402
from .flags import PhotFlag, decode_flags  # noqa: E402
from .background import (DefaultBackground, PhotutilsBackground,  # noqa: E402
                         SExtractorExactBackground)
from .background.local import AnnulusBackground  # noqa: E402
from .detection import DefaultFinder  # noqa: E402
from .photometry.photometers import AperturePhotometer  # noqa: E402
from .photometry.optimal import OptimalPhotometer  # noqa: E402
from .photometry.psf import PSFPhotometer  # noqa: E402
from .calibration import CalibrationSet, calibrate  # noqa: E402
from .lightcurves import DifferentialPhotometer  # noqa: E402
from .scan import ReductionError  # noqa: E402
from .reducer import Reducer  # noqa: E402
from .analysis import Analyzer  # noqa: E402
from data_generator import (generate_observations, generate_biases, generate_darks,  # noqa: E402
                            generate_flats)

__all__ = ["Reducer", "DefaultBackground", "PhotutilsBackground", "SExtractorExactBackground",
           "AnnulusBackground", "DefaultFinder", "AperturePhotometer", "OptimalPhotometer",
           "PSFPhotometer", "CalibrationSet", "calibrate", "DifferentialPhotometer", "Analyzer", "InstrumentProfile",
           "ConfigError", "ReductionError", "FrameError", "FrameInfo", "PhotFlag",
           "decode_flags", "load_profile", "read_frame", "read_header",
           "generate_observations", "generate_biases", "generate_darks", "generate_flats",
           "__version__"]
