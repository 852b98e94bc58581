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
* Companions (``variable_companion``, then ``n_pairs``) follow with ids ``n_sources,
  n_sources + 1, ...``: each at ``separation * fwhm`` field pixels from its primary (random
  position angle, inside every frame, and farther than twice that separation from every other
  star) with the primary's flux times ``10**(-0.4 delta_mag)`` in every filter. The primaries of
  ``n_pairs`` are drawn among the stars other than the variable; separations and magnitude
  differences are uniform in ``pair_separation`` and ``pair_delta_mag``.
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
    primary : ndarray of int (n_sources,)
        Id of the star a companion belongs to; -1 for the primary stars.
    separation : ndarray (n_sources,)
        Distance of a companion to its primary in units of ``fwhm`` (0 for the primaries).
    delta_mag : ndarray (n_sources,)
        Magnitude difference companion - primary (0 for the primaries).
    """

    xy: np.ndarray
    flux: np.ndarray
    variable_index: int | None
    primary: np.ndarray
    separation: np.ndarray
    delta_mag: np.ndarray


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
        peak = peak_fraction(conditions.fwhm[k].min(), p.psf, conditions.beta, p.ellipticity)
        caps.append(room / (peak * flat_max))
        flat_low = float(np.percentile(detector.flat, 1))
        floors.append(_SATURATE_FACTOR * p.saturation * p.gain / (
            peak_fraction(conditions.fwhm[k].max(), p.psf, conditions.beta, p.ellipticity)
            * flat_low))
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
    return _add_companions(p, pointings, xy[ranks], flux[ranks])


def _add_companions(parameters, pointings, xy, flux):
    p = parameters
    rng = random_stream(p.seed, Stream.COMPANIONS, 0)
    requests = []
    if p.variable_companion is not None:
        requests.append((p.variable_index, *p.variable_companion))
    others = [s for s in range(p.n_sources) if s != p.variable_index]
    for primary in np.sort(rng.choice(others, p.n_pairs, replace=False)):
        requests.append((int(primary), rng.uniform(*p.pair_separation),
                         rng.uniform(*p.pair_delta_mag)))
    primary_ids = np.full(p.n_sources, -1)
    separations = np.zeros(p.n_sources)
    delta_mags = np.zeros(p.n_sources)
    for primary, separation, delta_mag in requests:
        distance = separation * p.fwhm
        for _ in range(200):
            angle = rng.uniform(0.0, 2.0 * np.pi)
            candidate = xy[primary] + distance * np.array([np.cos(angle), np.sin(angle)])
            others_distance = np.delete(np.hypot(*(xy - candidate).T), primary)
            if (np.all(others_distance >= 2 * distance)
                    and _inside_everywhere(candidate[None, :], pointings, p.shape, p.margin)[0]):
                break
        else:
            raise ValueError(
                f"could not place a companion at {separation:g} fwhm from star {primary} inside "
                f"every frame and away from the other stars; use fewer n_pairs or sources, or a "
                f"larger shape")
        xy = np.vstack([xy, candidate])
        flux = np.vstack([flux, flux[primary] * 10.0 ** (-0.4 * delta_mag)])
        primary_ids = np.append(primary_ids, primary)
        separations = np.append(separations, separation)
        delta_mags = np.append(delta_mags, delta_mag)
    return StarField(xy=xy, flux=flux, variable_index=p.variable_index, primary=primary_ids,
                     separation=separations, delta_mag=delta_mags)
