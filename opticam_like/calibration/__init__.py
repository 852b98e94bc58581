"""Calibration of raw frames: master bias, dark and flat, sections, masks, cosmic rays.

Raw frames (ADU) become float32 images in electrons with ``uint16`` per-pixel flags::

    cal = CalibrationSet.from_directories(bias="cal/bias", dark="cal/dark", flat="cal/flat",
                                          profile="opticam", cache_directory="reduced/cal")
    result = calibrate(read_frame(path, "opticam"), cal)    # CalibratedFrame

Modules: :mod:`.combine` (sigma-clipped combination in bounded memory), :mod:`.sections`
(overscan and trim), :mod:`.masters` (building, caching and reading masters), :mod:`.masks`
(saturation, bad pixels, cosmic rays) and :mod:`.core` (:class:`CalibrationSet`,
:func:`calibrate`).
"""

from .combine import DEFAULT_MEMORY_LIMIT, chunked_combine, sigma_clipped_combine
from .core import CalibratedFrame, CalibrationSet, calibrate
from .masks import detect_cosmic_rays, flat_bad_pixels, hot_pixels, local_median, raw_flags
from .masters import (MASTER_KINDS, MASTER_UNITS, CalibrationError, CalibrationWarning,
                      build_masters, master_key, read_master)
from .sections import header_sections, overscan_level, parse_section

__all__ = ["CalibrationSet", "CalibratedFrame", "calibrate", "CalibrationError",
           "CalibrationWarning", "build_masters", "read_master", "master_key", "MASTER_KINDS",
           "MASTER_UNITS", "sigma_clipped_combine", "chunked_combine", "DEFAULT_MEMORY_LIMIT",
           "parse_section", "header_sections", "overscan_level", "raw_flags", "hot_pixels",
           "local_median", "flat_bad_pixels", "detect_cosmic_rays"]
