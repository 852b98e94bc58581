"""An independent OPTICAM night simulator, used as a test oracle for opticam_like.

It writes raw frames as OPTICAM records them (uint16 ADU, OPTICAM headers, three cameras g, r,
i) from a known truth: star positions and exposure-integrated fluxes per frame, a sinusoidal
variable with phase lags between the bands, the detector (bias, flat, dark, hot and dead pixels),
pointing drift and jitter, seeing, sky, cosmic rays. It never imports ``opticam_like``.

Main entry points: :func:`generate_observations`, :func:`generate_biases`,
:func:`generate_darks`, :func:`generate_flats` and :func:`load_truth`.
"""

from .calibrations import generate_biases, generate_darks, generate_flats
from .detector import Detector
from .files import GeneratedFrames
from .observations import generate_observations
from .parameters import SimulationParameters
from .truth import Truth, load_truth

__all__ = [
    "generate_observations",
    "generate_biases",
    "generate_darks",
    "generate_flats",
    "load_truth",
    "Truth",
    "SimulationParameters",
    "GeneratedFrames",
    "Detector",
]
