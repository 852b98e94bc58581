"""Bicubic-spline upsampling of a background mesh to the image size.

The operator is the one photutils' ``Background2D`` applies by default:
``scipy.ndimage.zoom(mesh, box_size, order=3, mode='reflect',
grid_mode=True)``, cropped to the image shape and clipped to the mesh range.
Zoom is separable and linear. Along one axis, the mesh line ``m`` is turned
into spline coefficients ``P m`` (scipy's cubic prefilter, reflect mode), the
coefficients are extended by reflection beyond both ends, and output pixel
``j``, at mesh coordinate ``x = (j + 0.5) / box - 0.5``, is the sum of four
coefficients weighted by the cubic B-spline at ``x - floor(x)``. The zoom
factor is an integer, so every mesh cell of ``box`` output pixels uses the
same weights on a window of five consecutive coefficients: the whole
expansion is a small coefficient grid followed by two banded products, the
second one ``(n_mesh_x * rows, 6) @ (6, box)`` matrix products over blocks of
image rows, made by one batched ``matmul`` (the sixth column adds back an
offset that keeps float32 rounding at the output's ulp). The B-spline weights
are non-negative, so only the image rows whose coefficients leave the mesh
range need the final clipping. The matrices depend only on ``(mesh length,
box)`` and are cached.

References
----------
Unser, M. 1999, IEEE Signal Processing Magazine 16, 22, "Splines: a perfect
fit for signal and image processing" (B-spline interpolation and prefilter).
"""

from functools import lru_cache

import numpy as np
from scipy.ndimage import spline_filter1d

__all__ = ["SplineUpsampler"]

#: OpenBLAS runs a matrix product on one thread below m * n * k = 4 * 65536.
_SINGLE_THREAD_GEMM = 200_000


def _bspline_weights(t):
    """Cubic B-spline weights of the taps ``floor(x) - 1 .. floor(x) + 2``.

    Parameters
    ----------
    t : ndarray
        Fractional coordinates ``x - floor(x)`` in ``[0, 1)``.

    Returns
    -------
    ndarray, shape ``t.shape + (4,)``
        The four weights (they sum to one).
    """
    s = 1.0 - t
    return np.stack([s**3 / 6.0,
                     (3.0 * t**3 - 6.0 * t**2 + 4.0) / 6.0,
                     (-3.0 * t**3 + 3.0 * t**2 + 3.0 * t + 1.0) / 6.0,
                     t**3 / 6.0], axis=-1)


@lru_cache(maxsize=64)
def _axis_operator(n_mesh, box):
    """Matrices that upsample one axis by the integer factor ``box``.

    Parameters
    ----------
    n_mesh : int
        Number of mesh cells along the axis.
    box : int
        Box size (zoom factor) along the axis.

    Returns
    -------
    extend : ndarray, shape (n_mesh + 4, n_mesh)
        Mesh values -> spline coefficients, extended by two reflected
        coefficients on each side.
    taps : ndarray, shape (5, box)
        Weight of coefficient ``c - 2 + k`` (row ``k``) for pixel ``r``
        (column) of mesh cell ``c``; the same for every cell.
    """
    prefilter = spline_filter1d(np.eye(n_mesh), order=3, axis=0, mode="reflect")
    index = np.arange(-2, n_mesh + 2)
    index = np.where(index < 0, -index - 1, index)
    index = np.where(index >= n_mesh, 2 * n_mesh - index - 1, index)
    extend = prefilter[np.clip(index, 0, n_mesh - 1)]

    x = (np.arange(box) + 0.5) / box - 0.5          # coordinate relative to the cell
    base = np.floor(x).astype(int)                  # -1 or 0
    weights = _bspline_weights(x - base)
    taps = np.zeros((5, box))
    for k in range(4):
        taps[base + k + 1, np.arange(box)] = weights[:, k]
    return extend, taps


class SplineUpsampler:
    """Resize a background mesh to the image shape with bicubic splines.

    Equivalent (to ~1e-13 relative in float64, one ulp in float32) to
    photutils' default interpolator: ``scipy.ndimage.zoom(mesh, box_size,
    order=3, mode='reflect', grid_mode=True)`` cropped to ``shape`` and clipped
    to ``[mesh.min(), mesh.max()]``; a constant mesh gives a constant image.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(ny, nx)``.
    box_size : tuple of int
        Box size ``(by, bx)`` in pixels.
    mesh_shape : tuple of int
        Mesh shape ``(ceil(ny / by), ceil(nx / bx))``.
    """

    def __init__(self, shape, box_size, mesh_shape):
        self.shape = tuple(int(v) for v in shape)
        self.box_size = tuple(int(v) for v in box_size)
        self.mesh_shape = tuple(int(v) for v in mesh_shape)
        self._extend_y, taps_y = _axis_operator(self.mesh_shape[0], self.box_size[0])
        self._taps_y_t = np.ascontiguousarray(taps_y.T)         # (by, 5)
        self._extend_x, self._taps_x = _axis_operator(self.mesh_shape[1], self.box_size[1])

    def __call__(self, mesh, dtype=np.float32):
        """Upsample ``mesh``.

        Parameters
        ----------
        mesh : ndarray, shape ``mesh_shape``
            Mesh values (finite).
        dtype : numpy dtype
            Output type. In ``float32`` the last product is taken relative to
            the mesh median, so the rounding error stays at the output's ulp.

        Returns
        -------
        ndarray, shape ``shape``, C-contiguous
            The upsampled image.
        """
        lo, hi = np.min(mesh).astype(dtype), np.max(mesh).astype(dtype)
        if lo == hi:
            return np.full(self.shape, lo, dtype=dtype)
        mesh = np.asarray(mesh, dtype=np.float64)
        (ny, nx), (by, bx), (my, mx) = self.shape, self.box_size, self.mesh_shape
        offset = float(np.median(mesh)) if np.dtype(dtype) == np.float32 else 0.0
        coeffs = self._extend_y @ mesh @ self._extend_x.T          # (my + 4, mx + 4)
        window_y = np.lib.stride_tricks.sliding_window_view(coeffs, 5, axis=0)
        rows = np.matmul(self._taps_y_t, window_y.transpose(0, 2, 1)).reshape(my * by, mx + 4)
        rows = rows[:ny]
        # Every output pixel is a convex combination (B-spline weights) of
        # coefficients of its row: rows within the mesh range (with a margin
        # for the float rounding of the products) need no clipping.
        margin = 8 * np.finfo(dtype).eps * (max(abs(lo), abs(hi)) + (hi - lo))
        by_column = np.asfortranarray(rows)       # fast reductions along rows
        to_clip = (by_column.min(axis=1) < lo + margin) | (by_column.max(axis=1) > hi - margin)
        rows = (rows - offset).astype(dtype)
        # windows[k, y, c] = rows[y, c + k]: as a (ny * mx, 6) matrix (Fortran
        # order) it holds the six factors of every output cell of a row.
        windows = np.empty((6, ny, mx), dtype=dtype)
        for k in range(5):
            windows[k] = rows[:, k:k + mx]
        windows[5] = 1.0
        windows = windows.reshape(6, ny * mx).T
        taps = np.empty((6, bx), dtype=dtype)
        taps[:5] = self._taps_x
        taps[5] = offset
        image = np.empty((ny, mx * bx), dtype=dtype)
        cells = image.reshape(ny * mx, bx)
        # Products small enough that BLAS stays on one thread (cheap and safe
        # on a loaded machine or inside worker processes), in one batch.
        block = max(1, _SINGLE_THREAD_GEMM // (6 * bx))
        n_full = (ny * mx) // block * block
        if n_full:
            np.matmul(windows[:n_full].reshape(-1, block, 6), taps,
                      out=cells[:n_full].reshape(-1, block, bx))
        if n_full < ny * mx:
            np.matmul(windows[n_full:], taps, out=cells[n_full:])
        if mx * bx != nx:
            image = np.ascontiguousarray(image[:, :nx])
        runs = np.flatnonzero(np.diff(to_clip, prepend=False, append=False))
        for start, stop in runs.reshape(-1, 2):     # runs of rows to clip
            np.clip(image[start:stop], lo, hi, out=image[start:stop])
        return image
