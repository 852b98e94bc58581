"""Cosmic-ray hits: sharp points and short straight tracks of high charge.

A hit is not PSF-shaped: it is one or two pixels (a particle arriving nearly along the line of
sight) or a straight track 2 to 10 pixels long (an oblique particle), each pixel receiving
300 to 30000 electrons (log-uniform), deposited after the flat field and without Poisson noise.
"""

from dataclasses import dataclass

import numpy as np
from astropy.table import Table

__all__ = ["CosmicRays", "draw_cosmic_rays", "cosmic_ray_table", "cosmic_ray_mean"]

_ELECTRONS = (300.0, 30000.0)
_TRACK_LENGTH = (2.0, 10.0)
_TRACK_FRACTION = 0.6


@dataclass(frozen=True)
class CosmicRays:
    """The pixels hit in one frame (one entry per pixel, pixels of a ray are unique).

    Attributes
    ----------
    x, y : ndarray of int
        0-based pixel column and row.
    electrons : ndarray of float
        Deposited charge in electrons.
    ray : ndarray of int
        Index of the ray (0-based within the frame) each pixel belongs to.
    """

    x: np.ndarray
    y: np.ndarray
    electrons: np.ndarray
    ray: np.ndarray

    @property
    def n_rays(self):
        """Number of rays that hit the frame."""
        return int(self.ray.max()) + 1 if len(self.ray) else 0


def cosmic_ray_mean(parameters, exposure=None):
    """Mean number of cosmic rays in a frame.

    ``cosmic_rays`` per science exposure (scaled to ``exposure``) plus ``cosmic_ray_rate``
    events / cm^2 / min over the frame's detector area (``shape * binning * pixel_size``).

    Parameters
    ----------
    parameters : SimulationParameters
    exposure : float, optional
        Exposure in seconds; ``None`` for a science frame.

    Returns
    -------
    float
    """
    p = parameters
    per_frame = p.cosmic_rays if exposure is None else p.cosmic_rays * exposure / p.exposure
    if p.cosmic_ray_rate == 0:
        return per_frame
    side_cm = p.binning * p.pixel_size * 1e-4
    area = p.shape[0] * p.shape[1] * side_cm * side_cm
    seconds = p.exposure if exposure is None else exposure
    return per_frame + p.cosmic_ray_rate * area * seconds / 60.0


def draw_cosmic_rays(rng, mean, shape):
    """Draw the cosmic rays of one frame.

    Parameters
    ----------
    rng : numpy.random.Generator
        The frame's random stream.
    mean : float
        Mean number of rays (the number is Poisson distributed).
    shape : (int, int)
        Frame shape ``(ny, nx)``.

    Returns
    -------
    CosmicRays
    """
    ny, nx = shape
    xs, ys, rays = [], [], []
    for ray in range(rng.poisson(mean) if mean > 0 else 0):
        x0, y0 = rng.uniform(0, nx - 1), rng.uniform(0, ny - 1)
        is_track = rng.random() < _TRACK_FRACTION
        length = rng.uniform(*_TRACK_LENGTH) if is_track else rng.uniform(0.0, 1.0)
        angle = rng.uniform(0, np.pi)
        steps = np.linspace(0.0, length, int(np.ceil(length * 3)) + 1)
        x = np.rint(x0 + steps * np.cos(angle)).astype(int)
        y = np.rint(y0 + steps * np.sin(angle)).astype(int)
        inside = (x >= 0) & (x < nx) & (y >= 0) & (y < ny)
        pixels = np.unique(np.stack([y[inside], x[inside]], axis=1), axis=0)
        ys.append(pixels[:, 0])
        xs.append(pixels[:, 1])
        rays.append(np.full(len(pixels), ray))
    if not rays:
        empty = np.zeros(0, int)
        return CosmicRays(empty, empty, np.zeros(0), empty)
    x, y = np.concatenate(xs), np.concatenate(ys)
    electrons = np.exp(rng.uniform(*np.log(_ELECTRONS), len(x)))
    return CosmicRays(x, y, electrons, np.concatenate(rays))


def cosmic_ray_table(hits):
    """The truth table of the cosmic rays of a series of frames.

    Parameters
    ----------
    hits : list of CosmicRays
        One per frame, in frame order.

    Returns
    -------
    astropy.table.Table
        One row per pixel hit: ``frame, ray, x, y`` (int) and ``electrons`` (float).
    """
    frame = np.concatenate([np.full(len(h.x), i, int) for i, h in enumerate(hits)] or [[]])
    return Table({
        "frame": frame.astype(int),
        "ray": np.concatenate([h.ray for h in hits] or [[]]).astype(int),
        "x": np.concatenate([h.x for h in hits] or [[]]).astype(int),
        "y": np.concatenate([h.y for h in hits] or [[]]).astype(int),
        "electrons": np.concatenate([h.electrons for h in hits] or [[]]).astype(float),
    })
