"""Satellite trails: a point source crossing the field at constant speed.

Pass ``j`` moves in field coordinates along ``Q(t) = P + d n + v (t - t_c) u`` (unit
direction ``u`` at a random angle, ``n`` its normal): it comes closest to the point ``P`` at
``t_c``, at distance ``d``. It crosses the field diagonal in 3 to 5 cadences, so it shows in a
few consecutive frames of every camera (the cameras expose simultaneously). The first pass has
``P`` = the variable star (or the brightest star), ``d`` between 0.3 and 1 ``fwhm`` and ``t_c``
at the middle of the night; later passes have a random ``P`` and ``t_c``.

In frame ``i`` of camera ``k`` the satellite draws the segment ``Q(t_start) -> Q(t_start +
exposure)`` mapped to pixels by the frame's pointing. Its light is a line of ``flux_per_length``
electrons per pixel of length (``trail_brightness`` per field pixel, times the transparency)
convolved with a circular Gaussian of the frame's FWHM:

``I(a, b) = lambda [Phi((L - a) / s) - Phi(-a / s)] exp(-b^2 / 2 s^2) / (s sqrt(2 pi))``

with ``lambda = flux_per_length``, ``a`` the coordinate along the segment from its start,
``b`` the distance across, ``L`` the segment length, ``s = fwhm / 2.355``; sampled at the
pixel centres. The peak surface
brightness on the line is ``flux_per_length / (s sqrt(2 pi))``.
"""

import math

import numpy as np
from astropy.table import Table
from scipy.special import ndtr

from .streams import Stream, random_stream

__all__ = ["trail_table", "render_trail"]

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
_CROSSING_CADENCES = (3.0, 5.0)
_REACH = 5.0
"""Half-width in sigma of the rendered band around a trail."""


def _segment_distance(point, start, end):
    """Distance in pixels from ``point`` (2,) to the segment ``start -> end``."""
    along = end - start
    length2 = float(along @ along)
    t = 0.0 if length2 == 0 else float(np.clip((point - start) @ along / length2, 0.0, 1.0))
    return float(np.hypot(*(point - start - t * along)))


def trail_table(parameters, conditions, pointings, field, n_images):
    """Where every satellite pass falls in every frame.

    Parameters
    ----------
    parameters : SimulationParameters
    conditions : NightConditions
    pointings : list of CameraPointing
    field : StarField
    n_images : int

    Returns
    -------
    astropy.table.Table
        One row per (pass, camera, frame) whose segment comes within reach of the frame:
        ``trail, camera, filter, frame`` and ``x0, y0, x1, y1`` (pixel end points at the start
        and end of the exposure, not clipped to the frame), ``fwhm`` (px, across the trail),
        ``flux_per_length`` (e- per pixel of length, before the flat), ``peak`` (e-/px on the
        line) and ``variable_distance`` (px, from the variable star, or the brightest star,
        to the segment).
    """
    p = parameters
    ny, nx = p.shape
    diagonal = math.hypot(nx, ny)
    target_id = field.variable_index if field.variable_index is not None else 0
    rows = []
    for j in range(p.satellite_trails):
        rng = random_stream(p.seed, Stream.TRAIL, j)
        angle = rng.uniform(0.0, 2.0 * math.pi)
        u = np.array([math.cos(angle), math.sin(angle)])
        normal = np.array([-u[1], u[0]])
        speed = diagonal / (rng.uniform(*_CROSSING_CADENCES) * p.cadence)
        if j == 0:
            point = field.xy[target_id]
            distance = rng.uniform(0.3, 1.0) * p.fwhm
            t_c = conditions.t_start[0, n_images // 2] + p.exposure / 2.0
        else:
            point = rng.uniform((0.0, 0.0), (nx - 1.0, ny - 1.0))
            distance = 0.0
            t_c = conditions.t_start[0, rng.integers(n_images)] + p.exposure / 2.0
        for k, pointing in enumerate(pointings):
            for i in range(n_images):
                t0 = conditions.t_start[k, i]
                ends = np.array([point + distance * normal + speed * (t - t_c) * u
                                 for t in (t0, t0 + p.exposure)])
                start, end = (pointing.matrices[i] @ ends.T).T + pointing.offsets[i]
                fwhm = conditions.fwhm[k, i]
                reach = _REACH * fwhm * _FWHM_TO_SIGMA
                low, high = np.minimum(start, end) - reach, np.maximum(start, end) + reach
                if high[0] < 0 or high[1] < 0 or low[0] > nx - 1 or low[1] > ny - 1:
                    continue
                sigma = fwhm * _FWHM_TO_SIGMA
                flux_per_length = (p.trail_brightness * conditions.transparency[i]
                                   / p.camera_scale(k))
                target = pointing.matrices[i] @ field.xy[target_id] + pointing.offsets[i]
                rows.append((j, p.cameras[k], p.filters[k], i, *start, *end, fwhm,
                             flux_per_length, flux_per_length / (sigma * math.sqrt(2 * math.pi)),
                             _segment_distance(target, start, end)))
    names = ("trail", "camera", "filter", "frame", "x0", "y0", "x1", "y1", "fwhm",
             "flux_per_length", "peak", "variable_distance")
    if not rows:
        return Table(names=names, dtype=(int, str, str, int) + (float,) * 8)
    return Table(rows=rows, names=names)


def render_trail(light, row):
    """Add one trail segment to a frame of expected electrons (in place).

    Parameters
    ----------
    light : ndarray (ny, nx)
        Electrons per pixel before the flat field.
    row : astropy.table.Row
        A row of :func:`trail_table`.
    """
    ny, nx = light.shape
    start = np.array([row["x0"], row["y0"]])
    end = np.array([row["x1"], row["y1"]])
    sigma = row["fwhm"] * _FWHM_TO_SIGMA
    reach = _REACH * sigma
    x0 = max(int(math.floor(min(start[0], end[0]) - reach)), 0)
    x1 = min(int(math.ceil(max(start[0], end[0]) + reach)) + 1, nx)
    y0 = max(int(math.floor(min(start[1], end[1]) - reach)), 0)
    y1 = min(int(math.ceil(max(start[1], end[1]) + reach)) + 1, ny)
    if x1 <= x0 or y1 <= y0:
        return
    length = float(np.hypot(*(end - start)))
    u = (end - start) / length if length > 0 else np.array([1.0, 0.0])
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dx, dy = xx - start[0], yy - start[1]
    a = dx * u[0] + dy * u[1]
    b = -dx * u[1] + dy * u[0]
    near = np.abs(b) <= reach
    values = np.where(near, row["flux_per_length"] * (ndtr((length - a) / sigma)
                                                      - ndtr(-a / sigma))
                      * np.exp(-0.5 * (b / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi)), 0.0)
    light[y0:y1, x0:x1] += values.astype(light.dtype)
