"""Forced photometry: exact aperture kernels, the CCD-equation noise model and photometers.

The photometers live in :mod:`opticam_like.photometry.photometers` (exported at the top level,
``opticam_like.AperturePhotometer``); this package's namespace holds the kernels only, so that
:mod:`opticam_like.background.local` can use them without an import cycle.
"""

from .kernels import (STATISTICS, AnnulusStatistics, ApertureSums, annulus_statistics,
                      circular_aperture_sums, cutouts, elliptical_aperture_sums)
from .noise import flux_variance, pixel_variance

__all__ = ["ApertureSums", "AnnulusStatistics", "STATISTICS", "annulus_statistics",
           "circular_aperture_sums", "cutouts", "elliptical_aperture_sums", "flux_variance",
           "pixel_variance"]
