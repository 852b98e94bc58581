"""An independent OPTICAM night simulator, used as a test oracle for opticam_like.

It writes raw frames as OPTICAM records them (uint16 ADU, OPTICAM headers, three cameras g, r,
i) from a known truth: star positions and exposure-integrated fluxes per frame, a sinusoidal
variable with phase lags between the bands, the detector (bias, flat, dark, hot and dead pixels),
pointing drift and jitter, seeing, sky, cosmic rays. ``preset='realistic'`` adds what real
nights have (elliptical Moffat PSFs, per-camera pixel scales and flips, detector defects,
satellite trails, close pairs, clouds, scintillation, no ``CAMERA`` keyword); the default
``'clean'`` preset keeps the idealised night. It never imports ``opticam_like``.

Main entry points: :func:`generate_observations`, :func:`generate_biases`,
:func:`generate_darks`, :func:`generate_flats`, :func:`generate_realistic_night` and
:func:`load_truth`.
"""

from .calibrations import generate_biases, generate_darks, generate_flats
from .detector import Detector
from .files import GeneratedFrames
from .observations import generate_observations
from .atmosphere import scintillation_sigma
from .parameters import PRESETS, SimulationParameters
from .realistic import generate_realistic_night
from .truth import Truth, load_truth

__all__ = [
    "generate_observations",
    "generate_biases",
    "generate_darks",
    "generate_flats",
    "generate_realistic_night",
    "scintillation_sigma",
    "PRESETS",
    "load_truth",
    "Truth",
    "SimulationParameters",
    "GeneratedFrames",
    "Detector",
]
