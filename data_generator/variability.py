"""The variable star: a sinusoid integrated over each exposure.

``F(t) = F0 * (1 + sqrt(2) * rms * sin(2 pi f t - lag))``, ``t`` in seconds since the night start.
Its mean over an exposure ``[t0, t0 + T]`` is exactly

``F0 * (1 + sqrt(2) * rms * sinc(f T) * sin(2 pi f (t0 + T/2) - lag))``, with
``sinc(u) = sin(pi u) / (pi u)``,

so the fractional RMS seen in the frames is ``rms * sinc(f T)`` (0.972 * rms for the default
0.135 Hz and 1 s).
"""

import math

import numpy as np

__all__ = ["exposure_mean_factor", "smearing_factor"]


def smearing_factor(frequency, exposure):
    """Amplitude kept by integrating a sinusoid over an exposure: ``sinc(f T)``.

    Parameters
    ----------
    frequency : float
        Hz.
    exposure : float
        Seconds.

    Returns
    -------
    float
    """
    return float(np.sinc(frequency * exposure))


def exposure_mean_factor(t_start, exposure, rms, frequency, lag):
    """Mean of ``1 + sqrt(2) rms sin(2 pi f t - lag)`` over each exposure.

    Parameters
    ----------
    t_start : ndarray
        Exposure starts in seconds since the night start.
    exposure : float
        Exposure time in seconds.
    rms : float
        Fractional RMS of the (instantaneous) sinusoid.
    frequency : float
        Hz.
    lag : float
        Phase lag in radians.

    Returns
    -------
    ndarray
        The factor multiplying ``F0``, shape of ``t_start``.
    """
    t_mid = np.asarray(t_start, float) + exposure / 2.0
    return 1.0 + math.sqrt(2.0) * rms * smearing_factor(frequency, exposure) * np.sin(
        2.0 * np.pi * frequency * t_mid - lag)
