"""Independent, reproducible random streams.

Every random quantity of the simulation (the detector of each camera, the star field, the
noise of each frame of each camera, ...) is drawn from its own generator, keyed by the user's
seed and by integers that name the quantity. Two streams with different keys are statistically
independent (``numpy.random.SeedSequence`` hashes the whole key), so that changing, say, the
number of frames never changes the detector, and the noise of the g, r and i frames taken at the
same time is never the same draw.
"""

import numpy as np

__all__ = ["Stream", "random_stream"]


class Stream:
    """Names of the random streams (the second element of every key)."""

    DETECTOR = 1
    FIELD = 2
    GEOMETRY = 3
    SEEING = 4
    JITTER = 5
    ATMOSPHERE = 6
    TRAIL = 7
    COMPANIONS = 8
    SCINTILLATION = 14
    SCIENCE = 10
    BIAS = 11
    DARK = 12
    FLAT = 13


def random_stream(seed, stream, *keys):
    """A generator for one named quantity.

    Parameters
    ----------
    seed : int
        The simulation seed (non-negative).
    stream : int
        One of the :class:`Stream` constants.
    *keys : int
        Further non-negative integers that identify the quantity (camera index, frame index,
        sub-quantity).

    Returns
    -------
    numpy.random.Generator
        A PCG64 generator seeded with ``SeedSequence([seed, stream, *keys])``.
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), *map(int, keys)]))
