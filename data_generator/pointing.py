"""Where the field falls on each camera in each frame.

Star positions are drawn in *field* coordinates (pixels of an ideal camera, same scale). Frame
``i`` of camera ``k`` sees the field through the affine map

``pos = c + R(phi_i) M_k (xf + p_i - c) + o_k + j_ki``

* ``c = ((nx - 1) / 2, (ny - 1) / 2)``: the frame centre;
* ``M_k = s_k R(theta_k) F_k``: the fixed orientation of the camera, a small rotation
  ``theta_k`` and a flip ``F_k`` (none for C1, ``diag(-1, 1)`` for C2, ``diag(1, -1)`` for C3):
  the three OPTICAM cameras see the same sky through dichroics, not pixel-identical; ``s_k =
  pixel_scales[0] / pixel_scales[k]`` (1 without ``pixel_scales``);
* ``o_k``: the fixed camera offset;
* ``p_i``: the common pointing drift, a smooth arc of end-to-end length ``drift`` in direction
  ``drift_angle`` (so each camera drifts in its own pixel direction);
* ``phi_i = field_rotation * u_i``: the field rotation (``u_i`` from 0 to 1 over the run);
* ``j_ki``: the independent per-camera jitter.

Relative to the camera's frame 0 this is, for every source,

``pos_i = c + R(phi_i) (pos_0 - c) + (dx_i, dy_i)``

with ``dx_0 = dy_0 = 0`` and ``phi_0 = 0``; with no field rotation simply
``pos_i = pos_0 + (dx_i, dy_i)``.
"""

from dataclasses import dataclass

import numpy as np

from .streams import Stream, random_stream

__all__ = ["CameraPointing", "camera_pointings"]

_CAMERA_OFFSET = 5.0
"""Half-range in pixels of the fixed camera offsets."""
_CAMERA_ROTATION = 1.5
"""Half-range in degrees of the fixed camera rotations."""
_FLIPS = (np.eye(2), np.diag([-1.0, 1.0]), np.diag([1.0, -1.0]))
"""Fixed flips of cameras 1, 2, 3 (then repeating): none, x, y."""
_DRIFT_BOW = 0.15
"""Sagitta of the drift arc as a fraction of its chord."""


def _rotation(angle_deg):
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


@dataclass(frozen=True)
class CameraPointing:
    """Per-frame affine maps from field coordinates to one camera's pixel coordinates.

    Attributes
    ----------
    matrices : ndarray (n_images, 2, 2)
    offsets : ndarray (n_images, 2)
        ``pos = matrices[i] @ xf + offsets[i]`` (``(x, y)`` order).
    rotation : ndarray (n_images,)
        Field rotation ``phi_i`` in degrees relative to frame 0.
    centre : ndarray (2,)
        Frame centre ``c`` (x, y).
    """

    matrices: np.ndarray
    offsets: np.ndarray
    rotation: np.ndarray
    centre: np.ndarray

    def positions(self, xy):
        """Pixel positions of field points in every frame.

        Parameters
        ----------
        xy : ndarray (n, 2)
            Field coordinates (x, y).

        Returns
        -------
        ndarray (n_images, n, 2)
        """
        return np.einsum("fij,nj->fni", self.matrices, xy) + self.offsets[:, None, :]

    @property
    def shifts(self):
        """ndarray (n_images, 2): ``(dx_i, dy_i)``, the shift relative to frame 0
        (see the module docstring)."""
        rotations = _rotation(self.rotation)
        return (self.offsets - self.centre
                + np.einsum("fij,j->fi", rotations, self.centre - self.offsets[0]))


def camera_pointings(parameters, progress):
    """The pointing of every camera over the run.

    Parameters
    ----------
    parameters : SimulationParameters
    progress : ndarray (n_images,)
        Fraction of the run at each frame (0 to 1).

    Returns
    -------
    list of CameraPointing
        One per camera.
    """
    p = parameters
    n_images = len(progress)
    centre = (np.array(p.shape[::-1], float) - 1.0) / 2.0
    angle = np.deg2rad(p.drift_angle)
    along = np.array([np.cos(angle), np.sin(angle)])
    across = np.array([-along[1], along[0]])
    drift = p.drift * (progress[:, None] * along
                       + _DRIFT_BOW * np.sin(np.pi * progress)[:, None] * across)
    phi = p.field_rotation * progress
    field_rotations = _rotation(phi)
    pointings = []
    for k in range(p.n_cameras):
        if p.camera_geometry:
            rng = random_stream(p.seed, Stream.GEOMETRY, 1 + k)
            offset = rng.uniform(-_CAMERA_OFFSET, _CAMERA_OFFSET, 2)
            orientation = _rotation(rng.uniform(-_CAMERA_ROTATION, _CAMERA_ROTATION))
            orientation = orientation @ _FLIPS[k % len(_FLIPS)]
        else:
            offset, orientation = np.zeros(2), np.eye(2)
        if p.pixel_scales is not None:
            orientation = p.camera_scale(k) * orientation
        jitter = p.jitter * random_stream(p.seed, Stream.JITTER, k).standard_normal((n_images, 2))
        matrices = field_rotations @ orientation
        offsets = (centre + np.einsum("fij,fj->fi", matrices, drift - centre)
                   + offset + jitter)
        pointings.append(CameraPointing(matrices=matrices, offsets=offsets, rotation=phi,
                                        centre=centre))
    return pointings
