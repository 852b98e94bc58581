"""Forced photometry: exact aperture kernels, the CCD-equation noise model and photometers."""

from .kernels import (STATISTICS, AnnulusStatistics, ApertureSums, annulus_statistics,
                      circular_aperture_sums, cutouts, elliptical_aperture_sums)
from .noise import flux_variance, pixel_variance
from .photometers import AperturePhotometer, MeasureInput

__all__ = ["AperturePhotometer", "MeasureInput", "ApertureSums", "AnnulusStatistics",
           "STATISTICS", "annulus_statistics", "circular_aperture_sums", "cutouts",
           "elliptical_aperture_sums", "flux_variance", "pixel_variance"]
