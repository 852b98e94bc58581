"""Bit flags of photometry points and frames.

Every photometry point carries an ``int32`` column ``flags`` that is the bitwise OR of the
conditions below, so that no point is silently dropped: a point that is doubtful is kept and
flagged. Use :func:`decode_flags` to turn a value into names.
"""

from enum import IntFlag

import numpy as np

__all__ = ["PhotFlag", "decode_flags", "ADVISORY"]


class PhotFlag(IntFlag):
    """Conditions of one photometry point (one source in one frame)."""

    SATURATED = 1
    """A pixel of the aperture reached the saturation level."""
    BAD_PIXEL = 2
    """A pixel of the aperture is a hot, dead or otherwise bad pixel (from the masters)."""
    COSMIC_RAY = 4
    """A pixel of the aperture was hit by a cosmic ray."""
    EDGE = 8
    """The aperture (or its annulus) extends beyond the image."""
    NOT_ALIGNED = 16
    """No transform could be found for the frame; the position is an interpolation."""
    BAD_BACKGROUND = 32
    """Too few good pixels in the annulus for a local background."""
    MASKED = 64
    """A pixel of the aperture is masked for another reason (NaN, user mask)."""
    RECENTRE_FAILED = 128
    """Re-centring failed or moved too far; the predicted position was used."""
    FRAME_REJECTED = 256
    """The frame could not be read or calibrated; the values are NaN."""
    BAD_TIME = 512
    """The frame's time stamp goes backwards, repeats or jumps."""
    NON_POSITIVE = 1024
    """The measured flux is zero or negative."""
    BLENDED = 2048
    """More than 1% of the aperture's flux is predicted to come from catalogued neighbours
    (their catalogue flux spread by the frame's PSF, :mod:`opticam_like.photometry.blends`)."""
    TRAIL = 4096
    """A pixel of the aperture lies on a satellite, aircraft or meteor trail found in the frame
    (:func:`opticam_like.trails.find_trails`)."""


#: Flags that inform but do not make a point unusable: ``BLENDED`` says a neighbour adds more
#: than 1% of light, which is constant for constant neighbours and cancels in relative
#: photometry; drop such points only when the neighbour may vary.
ADVISORY = PhotFlag.BLENDED


def decode_flags(value):
    """Names of the flags set in ``value``.

    Parameters
    ----------
    value : int
        A flag value as stored in a ``flags`` column.

    Returns
    -------
    list of str
        The names of the set flags, lowest bit first.
    """
    value = int(np.asarray(value))
    return [flag.name for flag in PhotFlag if value & flag]
