"""The star field: positions, fluxes per filter and the variable star.

* Positions are uniform in field coordinates, kept only where the star stays at least ``margin``
  pixels inside every frame of every camera (drift, jitter, rotation and camera geometry
  included) and at least ``min_separation`` pixels from every other star.
* The geometric-mean flux over the filters is log-uniform in ``flux_range``; each star has a
  colour ``c ~ N(0.5, 0.5)`` and its flux in filter ``k`` of ``n`` is
  ``F * 10**(0.4 * c * (k / (n - 1) - 0.5))`` (redder stars brighter in later filters).
* No star's peak pixel exceeds ``peak_limit * saturation`` ADU at the smallest FWHM of the run on
  the most responsive pixel: a star drawn above that is drawn again below it (the range is
  truncated per star), except the ``n_saturated`` brightest, made to saturate in every frame.
* Stars are sorted by decreasing flux in the first filter: the id of the truth is that rank
  (0-based).
"""

from dataclasses import dataclass

import numpy as np

from .psf import peak_fraction
from .streams import Stream, random_stream

__all__ = ["StarField", "draw_field"]

_BATCH = 2048
_MAX_BATCHES = 50
_FRAME_CHUNK = 256
_SATURATE_FACTOR = 4.0
"""A saturated star's peak (pixel-centred, smallest flat, largest FWHM) in units of saturation."""


@dataclass(frozen=True)
class StarField:
    """The stars, in truth-id order.

    Attributes
    ----------
    xy : ndarray (n_sources, 2)
        Field coordinates (x, y).
    flux : ndarray (n_sources, n_filters)
        Mean electrons per frame in each filter (``F0`` for the variable star).
    variable_index : int or None
        Id of the variable star.
    """

    xy: np.ndarray
    flux: np.ndarray
    variable_index: int | None


def _inside_everywhere(xy, pointings, shape, margin):
    ny, nx = shape
    keep = np.ones(len(xy), bool)
    for pointing in pointings:
        for start in range(0, len(pointing.offsets), _FRAME_CHUNK):
            chunk = slice(start, start + _FRAME_CHUNK)
            pos = (np.einsum("fij,nj->fni", pointing.matrices[chunk], xy)
                   + pointing.offsets[chunk, None, :])
            keep &= np.all((pos[..., 0] >= margin) & (pos[..., 0] <= nx - 1 - margin)
                           & (pos[..., 1] >= margin) & (pos[..., 1] <= ny - 1 - margin), axis=0)
    return keep


def _draw_positions(parameters, pointings, rng):
    p = parameters
    ny, nx = p.shape
    accepted = np.empty((0, 2))
    for _ in range(_MAX_BATCHES):
        candidates = rng.uniform((0, 0), (nx - 1, ny - 1), (_BATCH, 2))
        candidates = candidates[_inside_everywhere(candidates, pointings, p.shape, p.margin)]
        for xy in candidates:
            if len(accepted) == p.n_sources:
                return accepted
            if not len(accepted) or np.min(np.hypot(*(accepted - xy).T)) >= p.min_separation:
                accepted = np.vstack([accepted, xy])
    if len(accepted) == p.n_sources:
        return accepted
    raise ValueError(
        f"could place only {len(accepted)} of n_sources={p.n_sources} stars at least "
        f"min_separation={p.min_separation:g} px apart and margin={p.margin:g} px inside every "
        f"frame (shape={p.shape}, drift={p.drift:g} px); use fewer sources, a larger shape, or a "
        f"smaller drift, min_separation or margin")


def _flux_caps(parameters, conditions, detectors):
    """Largest flux per filter whose peak pixel stays below ``peak_limit * saturation``."""
    p = parameters
    caps, floors = [], []
    for k, detector in enumerate(detectors):
        flat_max = float(detector.flat.max())
        room = ((p.peak_limit * p.saturation - float(detector.bias.max())) * p.gain
                - conditions.sky[k].max() * flat_max - p.dark_current * p.exposure)
        peak = peak_fraction(conditions.fwhm[k].min(), p.psf, p.beta, p.ellipticity)
        caps.append(room / (peak * flat_max))
        flat_low = float(np.percentile(detector.flat, 1))
        floors.append(_SATURATE_FACTOR * p.saturation * p.gain / (
            peak_fraction(conditions.fwhm[k].max(), p.psf, p.beta, p.ellipticity) * flat_low))
    return np.array(caps), np.array(floors)


def draw_field(parameters, pointings, conditions, detectors):
    """Draw the star field.

    Parameters
    ----------
    parameters : SimulationParameters
    pointings : list of CameraPointing
    conditions : NightConditions
    detectors : list of Detector

    Returns
    -------
    StarField

    Raises
    ------
    ValueError
        If the stars do not fit in the frame, or if even the faintest flux of ``flux_range``
        would exceed ``peak_limit``.
    """
    p = parameters
    rng = random_stream(p.seed, Stream.FIELD, 0)
    xy = _draw_positions(p, pointings, rng)
    n_filters = p.n_cameras
    slopes = (np.arange(n_filters) / (n_filters - 1) - 0.5) if n_filters > 1 else np.zeros(1)
    colours = rng.normal(0.5, 0.5, p.n_sources)
    factors = 10.0 ** (0.4 * colours[:, None] * slopes[None, :])
    caps, floors = _flux_caps(p, conditions, detectors)
    low, high = p.flux_range
    top = np.minimum(high, np.min(caps[None, :] / factors, axis=1))
    if np.any(top < low):
        raise ValueError(
            f"flux_range: the faintest flux {low:g} e- already peaks above peak_limit="
            f"{p.peak_limit:g} of saturation; lower flux_range or raise the sky/bias headroom")
    mean_flux = low * (top / low) ** rng.uniform(0.0, 1.0, p.n_sources)
    order = np.argsort(-mean_flux)
    brightest = order[:p.n_saturated]
    mean_flux[brightest] = np.max(floors[None, :] / factors[brightest], axis=1)
    flux = mean_flux[:, None] * factors
    ranks = np.argsort(-flux[:, 0], kind="stable")
    return StarField(xy=xy[ranks], flux=flux[ranks], variable_index=p.variable_index)
