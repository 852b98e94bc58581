"""Per-frame transforms to the reference frame, resampling and stacking.

A :class:`Transform` is an affine map **from reference-frame pixel coordinates to this frame's
pixel coordinates** (``docs/DESIGN.md``, "Alignment"): forced photometry applies it to the
catalogue positions, and :func:`warp_to_reference` samples each frame at ``T(x_ref, y_ref)``
to build the reference stack (:class:`StackAccumulator`).

:func:`find_transform` works on the star lists of the two frames (brightest first). It tries
`astroalign` (asterism matching, Beroiz et al. 2020) and, when that fails or its solution is
poor, a translation found by voting over pairwise offsets. Either way the solution is refined
by least squares over all matched stars with outlier rejection, and accepted only if enough of
the brightest stars match.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .errors import AlignmentError

__all__ = [
    "StackAccumulator",
    "Transform",
    "find_transform",
    "warp_to_reference",
]

METHODS = ("offset_vote", "astroalign", "translation", "identity", "interpolated")
"""Values of :attr:`Transform.method` (``'interpolated'``: between the transforms of the
neighbouring aligned frames, for a frame that could not be aligned)."""

_RAYLEIGH_MEDIAN = math.sqrt(2.0 * math.log(2.0))
"""Median of the length of a 2-D Gaussian error vector, in units of the per-axis sigma."""


@dataclass(frozen=True, eq=False)
class Transform:
    """Affine map from reference-frame pixel coordinates to a frame's pixel coordinates.

    ``(x_frame, y_frame, 1) = matrix @ (x_ref, y_ref, 1)`` with 0-based pixel coordinates.

    Parameters
    ----------
    matrix : array_like, shape (3, 3) or (2, 3)
        Affine matrix; a (2, 3) matrix gets the row ``(0, 0, 1)`` appended. Stored read-only.
    method : str
        How it was found: one of :data:`METHODS`.
    n_matches : int
        Number of stars used in the final fit.
    rms : float
        Root-mean-square residual of those stars (px).

    Raises
    ------
    ValueError
        If the matrix is not an invertible, finite affine matrix or ``method`` is unknown.
    """

    matrix: np.ndarray
    method: str = "identity"
    n_matches: int = 0
    rms: float = 0.0

    def __post_init__(self):
        matrix = np.array(self.matrix, dtype=float)
        if matrix.shape == (2, 3):
            matrix = np.vstack([matrix, [0.0, 0.0, 1.0]])
        if matrix.shape != (3, 3):
            raise ValueError(f"matrix must have shape (3, 3) or (2, 3), got {matrix.shape}")
        if not np.all(np.isfinite(matrix)) or not np.allclose(matrix[2], [0.0, 0.0, 1.0],
                                                              rtol=0.0, atol=1e-12):
            raise ValueError(f"matrix must be a finite affine matrix (last row 0 0 1), got "
                             f"{matrix.tolist()}")
        matrix[2] = [0.0, 0.0, 1.0]
        if np.linalg.det(matrix[:2, :2]) == 0:
            raise ValueError("matrix is singular")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        matrix.setflags(write=False)
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "n_matches", int(self.n_matches))
        object.__setattr__(self, "rms", float(self.rms))

    @classmethod
    def identity(cls):
        """The identity transform (the reference frame itself)."""
        return cls(np.eye(3), method="identity")

    @classmethod
    def from_translation(cls, dx, dy, **kwargs):
        """A pure translation: ``x_frame = x_ref + dx``, ``y_frame = y_ref + dy``.

        ``kwargs`` (``method``, ``n_matches``, ``rms``) are passed to the constructor;
        ``method`` defaults to ``'translation'``.
        """
        kwargs.setdefault("method", "translation")
        return cls(np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]]), **kwargs)

    def apply(self, x, y):
        """Map reference-frame positions to this frame.

        Parameters
        ----------
        x, y : float or array_like
            Positions in the reference frame (px), broadcastable.

        Returns
        -------
        x_frame, y_frame : ndarray
            Positions in this frame (px), of the broadcast shape.
        """
        x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        m = self.matrix
        return m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2]

    def inverse(self):
        """The transform from this frame to the reference frame (same method and statistics)."""
        linear = np.linalg.inv(self.matrix[:2, :2])
        matrix = np.column_stack([linear, -linear @ self.matrix[:2, 2]])
        return Transform(matrix, self.method, self.n_matches, self.rms)

    @property
    def dx(self):
        """Translation along x (px): where the reference origin lands in this frame."""
        return float(self.matrix[0, 2])

    @property
    def dy(self):
        """Translation along y (px)."""
        return float(self.matrix[1, 2])

    @property
    def rotation(self):
        """Rotation angle (deg, counter-clockwise from +x) of the closest similarity."""
        m = self.matrix
        return math.degrees(math.atan2(m[1, 0] - m[0, 1], m[0, 0] + m[1, 1]))

    @property
    def scale(self):
        """Scale factor, ``sqrt(|det|)`` of the linear part."""
        return math.sqrt(abs(np.linalg.det(self.matrix[:2, :2])))

    @property
    def is_integer_shift(self):
        """True when the map is an exact translation by whole pixels."""
        m = self.matrix
        return (np.array_equal(m[:2, :2], np.eye(2))
                and float(m[0, 2]).is_integer() and float(m[1, 2]).is_integer())

    def to_dict(self):
        """Record of a transforms table (``cat/transforms_{filter}.ecsv``, see
        :data:`opticam_like.schema.TRANSFORM_COLUMNS`).

        Returns
        -------
        dict
            ``matrix`` (the first two rows, flattened: 6 floats ``a, b, c, d, e, f`` with
            ``x' = a x + b y + c``, ``y' = d x + e y + f``), ``method``, ``n_matches``, ``rms``.
        """
        return {"matrix": self.matrix[:2].ravel().tolist(), "method": self.method,
                "n_matches": self.n_matches, "rms": self.rms}

    @classmethod
    def from_dict(cls, row):
        """Inverse of :meth:`to_dict`; ``matrix`` may hold 6 or 9 values or be (2, 3)/(3, 3).

        Parameters
        ----------
        row : mapping
            With keys ``matrix`` and optionally ``method``, ``n_matches``, ``rms`` (e.g. a row
            of an astropy Table).

        Returns
        -------
        Transform
        """
        matrix = np.asarray(row["matrix"], dtype=float)
        if matrix.size in (6, 9):
            matrix = matrix.reshape(-1, 3)
        keys = ("method", "n_matches", "rms")
        return cls(matrix, **{k: row[k] for k in keys if k in _keys(row)})


def _keys(row):
    """Keys of a dict or column names of an astropy Row."""
    return row.colnames if hasattr(row, "colnames") else row.keys()


def _as_points(points, name):
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"{name} contains non-finite positions")
    return points


def _apply(matrix, points):
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def _fit(model, src, dst):
    """Least-squares affine matrix of ``model`` mapping ``src`` onto ``dst`` (both (N, 2))."""
    matrix = np.eye(3)
    mean_src, mean_dst = src.mean(axis=0), dst.mean(axis=0)
    if model == "similarity":
        s, d = src - mean_src, dst - mean_dst
        norm = np.sum(s * s)
        a = np.sum(s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1]) / norm
        b = np.sum(s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]) / norm
        matrix[:2, :2] = [[a, -b], [b, a]]
    matrix[:2, 2] = mean_dst - matrix[:2, :2] @ mean_src
    return matrix


def _match(predicted, tree, tolerance):
    """One-to-one nearest-neighbour pairs (ref index, frame index) closer than ``tolerance``."""
    dist, j = tree.query(predicted, distance_upper_bound=tolerance)
    i = np.flatnonzero(np.isfinite(dist))
    j, dist = j[i], dist[i]
    order = np.lexsort((dist, j))
    first = np.ones(len(order), dtype=bool)
    first[1:] = j[order][1:] != j[order][:-1]
    keep = np.sort(order[first])
    return i[keep], j[keep]


class _Solver:
    """Refinement and acceptance of a candidate transform for one pair of star lists."""

    def __init__(self, frame_xy, ref_xy, n_control, min_matches, tolerance, min_fraction):
        self.frame_xy = frame_xy
        self.ref_xy = ref_xy
        self.n_control_frame = min(n_control, len(frame_xy))
        self.n_control_ref = min(n_control, len(ref_xy))
        self.min_matches = min_matches
        self.tolerance = tolerance
        self.min_fraction = min_fraction
        self.tree = cKDTree(frame_xy)

    def _clipped_fit(self, model, src, dst):
        """Fit with iterative rejection of pairs beyond 4 sigma; returns matrix and kept mask."""
        keep = np.ones(len(src), dtype=bool)
        floor = 0.01 * self.tolerance
        for _ in range(10):
            matrix = _fit(model, src[keep], dst[keep])
            resid = np.hypot(*(_apply(matrix, src) - dst).T)
            sigma = max(np.median(resid[keep]) / _RAYLEIGH_MEDIAN, floor)
            new_keep = resid < 4.0 * sigma
            if new_keep.sum() < 2 or np.array_equal(new_keep, keep):
                break
            keep = new_keep
        return matrix, keep

    def solve(self, initial, model, method):
        """Refine ``initial`` (3x3) by matching all stars; raise AlignmentError if unreliable."""
        needed = max(self.min_matches, 2 if model == "similarity" else 1)
        matrix = initial
        for _ in range(3):
            i, j = _match(_apply(matrix, self.ref_xy), self.tree, self.tolerance)
            if len(i) < needed:
                raise AlignmentError(f"only {len(i)} stars matched within {self.tolerance} px "
                                     f"(need {needed})")
            matrix, keep = self._clipped_fit(model, self.ref_xy[i], self.frame_xy[j])
            if not np.all(np.isfinite(matrix)) or np.linalg.det(matrix[:2, :2]) == 0:
                raise AlignmentError("degenerate fit (the matched stars coincide)")
        i, j = i[keep], j[keep]
        control = np.count_nonzero((i < self.n_control_ref) & (j < self.n_control_frame))
        fraction_needed = math.ceil(
            self.min_fraction * min(self.n_control_ref, self.n_control_frame))
        if control < max(self.min_matches, fraction_needed):
            raise AlignmentError(
                f"only {control} of the {self.n_control_ref} brightest reference stars matched "
                f"(need {max(self.min_matches, fraction_needed)})")
        resid = _apply(matrix, self.ref_xy[i]) - self.frame_xy[j]
        rms = math.sqrt(np.mean(np.sum(resid**2, axis=1)))
        return Transform(matrix, method=method, n_matches=len(i), rms=rms)


def _astroalign_matrix(frame_ctrl, ref_ctrl):
    """Similarity matrix from astroalign (reference -> frame); AlignmentError on failure."""
    import astroalign

    if min(len(frame_ctrl), len(ref_ctrl)) < 3:
        raise AlignmentError("fewer than 3 stars for asterisms")
    try:
        tform, _ = astroalign.find_transform(ref_ctrl, frame_ctrl,
                                             max_control_points=len(ref_ctrl))
    except astroalign.MaxIterError:
        raise AlignmentError("no matching asterisms") from None
    except (ValueError, IndexError, np.linalg.LinAlgError) as err:
        raise AlignmentError(f"failed ({err})") from None
    matrix = np.asarray(tform.params, dtype=float)
    if not np.all(np.isfinite(matrix)) or np.linalg.det(matrix[:2, :2]) == 0:
        raise AlignmentError("degenerate solution")
    return matrix


def _vote_translation(frame_ctrl, ref_ctrl, tolerance):
    """The offset (frame - ref) shared by the most pairs of control stars."""
    offsets = (frame_ctrl[None, :, :] - ref_ctrl[:, None, :]).reshape(-1, 2)
    tree = cKDTree(offsets)
    counts = tree.query_ball_point(offsets, r=tolerance, return_length=True)
    members = tree.query_ball_point(offsets[np.argmax(counts)], r=tolerance)
    dx, dy = offsets[members].mean(axis=0)
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def find_transform(frame_xy, ref_xy, *, method="auto", max_control_points=50, min_matches=3,
                   tolerance=2.0, min_fraction=0.2):
    """Transform from the reference frame to a frame, from their star lists.

    Parameters
    ----------
    frame_xy : array_like, shape (N, 2)
        Star positions ``(x, y)`` detected in the frame (px), brightest first.
    ref_xy : array_like, shape (M, 2)
        Star positions in the reference frame (px), brightest first.
    method : {'auto', 'astroalign', 'translation'}
        ``'auto'``: first the offset vote (the shift shared by the most pairs of the brightest
        stars of both lists, within ``tolerance``) refined as a similarity transform (rotation,
        scale, shift) over all matched stars (``method='offset_vote'`` in the result); when
        that is rejected, astroalign's asterism matching on the brightest
        ``max_control_points`` stars (reference as source, frame as target), refined the same
        way. The vote costs about 3 ms and handles the drifts and small rotations of a time
        series; astroalign (65-130 ms, it rebuilds the reference asterisms on every call)
        handles large rotations and flips. ``'astroalign'``: only astroalign.
        ``'translation'``: the vote refined as a pure shift (mean offset of the matched stars).
    max_control_points : int
        Number of brightest stars of each list used to find the candidate transform.
    min_matches : int
        Minimum number of matched stars.
    tolerance : float
        Matching radius (px).
    min_fraction : float
        Minimum fraction of the brightest ``max_control_points`` stars (of the shorter list)
        that must match; this rejects the chance coincidences of unrelated star lists.

    Returns
    -------
    Transform
        With ``method`` the method that succeeded, ``n_matches`` and ``rms`` from the final
        fit over all matched stars (matched one-to-one within ``tolerance``, with pairs beyond
        4 sigma rejected).

    Raises
    ------
    AlignmentError
        If no reliable transform is found; the message gives the reason of each method.
    ValueError
        If the inputs do not have shape (N, 2), contain non-finite values, or a parameter is
        out of range.

    References
    ----------
    Beroiz, M., Cabral, J. B. & Sanchez, B. 2020, Astronomy and Computing 32, 100384
    (astroalign).
    """
    frame_xy = _as_points(frame_xy, "frame_xy")
    ref_xy = _as_points(ref_xy, "ref_xy")
    if method not in ("auto", "astroalign", "translation"):
        raise ValueError(f"method must be 'auto', 'astroalign' or 'translation', got {method!r}")
    if int(min_matches) != min_matches or min_matches < 1:
        raise ValueError(f"min_matches must be a positive integer, got {min_matches}")
    if int(max_control_points) != max_control_points or max_control_points < 3:
        raise ValueError(f"max_control_points must be an integer >= 3, got {max_control_points}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be positive, got {tolerance}")
    if not 0 <= min_fraction <= 1:
        raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction}")
    for points, where in ((frame_xy, "frame"), (ref_xy, "reference")):
        if len(points) < min_matches:
            raise AlignmentError(f"only {len(points)} stars detected in the {where} "
                                 f"(need {min_matches})")

    solver = _Solver(frame_xy, ref_xy, int(max_control_points), int(min_matches),
                     float(tolerance), float(min_fraction))
    frame_ctrl = frame_xy[:solver.n_control_frame]
    ref_ctrl = ref_xy[:solver.n_control_ref]
    reasons = []
    if method in ("auto", "translation"):
        model, label = (("similarity", "offset_vote") if method == "auto"
                        else ("translation", "translation"))
        try:
            initial = _vote_translation(frame_ctrl, ref_ctrl, tolerance)
            return solver.solve(initial, model, label)
        except AlignmentError as err:
            reasons.append(f"offset vote: {err.reason}")
    if method in ("auto", "astroalign"):
        try:
            initial = _astroalign_matrix(frame_ctrl, ref_ctrl)
            return solver.solve(initial, "similarity", "astroalign")
        except AlignmentError as err:
            reasons.append(f"astroalign: {err.reason}")
    raise AlignmentError("; ".join(reasons))


def warp_to_reference(data, transform, output_shape, order=1, fill_value=np.nan):
    """Resample a frame onto the reference grid.

    Output pixel ``(x, y)`` takes the value of the frame at ``transform.apply(x, y)``
    (`scipy.ndimage.affine_transform`, spline interpolation of ``order``). An exact
    whole-pixel shift is a slice copy instead (exact and faster). Non-finite pixels of the
    frame are set to zero for the interpolation, and every output pixel whose bilinear
    footprint touches one is NaN (so NaNs stay local, whatever the order; with ``order > 1``
    the zero-filled hole still perturbs the spline slightly a few pixels further out).

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        The frame.
    transform : Transform
        Reference -> frame transform.
    output_shape : tuple of int
        Shape of the reference grid ``(ny_ref, nx_ref)``.
    order : int
        Spline order 0-5 (1: bilinear).
    fill_value : float
        Value of output pixels that sample outside the frame.

    Returns
    -------
    ndarray, shape ``output_shape``
        The warped frame, float32 for integer or float32 input, else float64.

    Raises
    ------
    ValueError
        If ``data`` is not 2-D, ``output_shape`` is not two positive integers, or ``order`` is
        not in 0-5.
    """
    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"data must be a 2-D image, got shape {data.shape}")
    output_shape = tuple(int(n) for n in output_shape)
    if len(output_shape) != 2 or min(output_shape) < 1:
        raise ValueError(f"output_shape must be two positive integers, got {output_shape}")
    if order not in range(6):
        raise ValueError(f"order must be an integer in 0-5, got {order}")
    dtype = np.result_type(data.dtype, np.float32)
    if transform.is_integer_shift:
        return _shift_copy(data, int(transform.dx), int(transform.dy), output_shape, dtype,
                           fill_value)
    m = transform.matrix
    matrix_yx = np.array([[m[1, 1], m[1, 0]], [m[0, 1], m[0, 0]]])
    offset_yx = np.array([m[1, 2], m[0, 2]])
    bad = ~np.isfinite(data)
    if bad.any():
        clean = np.where(bad, 0.0, data).astype(dtype)
    else:
        bad, clean = None, data.astype(dtype, copy=False)
    out = ndimage.affine_transform(clean, matrix_yx, offset_yx, output_shape=output_shape,
                                   order=order, mode="constant", cval=fill_value,
                                   output=dtype)
    if bad is not None:
        spread = ndimage.affine_transform(bad.astype(np.float32), matrix_yx, offset_yx,
                                          output_shape=output_shape, order=1,
                                          mode="constant", cval=0.0)
        out[spread > 1e-6] = np.nan
    return out


def _shift_copy(data, dx, dy, output_shape, dtype, fill_value):
    """``out[y, x] = data[y + dy, x + dx]`` where defined, ``fill_value`` elsewhere."""
    out = np.full(output_shape, fill_value, dtype=dtype)
    ny, nx = data.shape
    y0, y1 = max(0, -dy), min(output_shape[0], ny - dy)
    x0, x1 = max(0, -dx), min(output_shape[1], nx - dx)
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = data[y0 + dy:y1 + dy, x0 + dx:x1 + dx]
    return out


class StackAccumulator:
    """NaN-aware running sum and count of warped frames (memory: two images, whatever N).

    Parameters
    ----------
    shape : tuple of int
        Shape of the reference grid.

    Examples
    --------
    >>> acc = StackAccumulator((2, 2))
    >>> acc.add(np.array([[1.0, np.nan], [3.0, 4.0]]))
    >>> acc.add(np.array([[3.0, 2.0], [np.nan, 4.0]]))
    >>> acc.mean.tolist()
    [[2.0, 2.0], [3.0, 4.0]]
    """

    def __init__(self, shape):
        self.shape = tuple(int(n) for n in shape)
        self._sum = np.zeros(self.shape, dtype=np.float64)
        self._count = np.zeros(self.shape, dtype=np.int32)
        self.n_frames = 0

    def add(self, warped):
        """Add one warped frame; its non-finite pixels are skipped.

        Parameters
        ----------
        warped : ndarray, shape ``shape``
            A frame on the reference grid (e.g. from :func:`warp_to_reference`).

        Raises
        ------
        ValueError
            If the shape differs from the accumulator's.
        """
        warped = np.asarray(warped)
        if warped.shape != self.shape:
            raise ValueError(f"frame shape {warped.shape} differs from the stack {self.shape}")
        good = np.isfinite(warped)
        self._sum += np.where(good, warped, 0.0)
        self._count += good
        self.n_frames += 1

    def add_frame(self, data, transform, bad=None):
        """Add a frame given in its own pixels, mapped onto the reference grid.

        A whole-pixel shift is added in place over the overlapping region (no full-frame
        temporary); any other transform goes through :func:`warp_to_reference`.

        Parameters
        ----------
        data : ndarray, shape (ny, nx)
            The frame.
        transform : Transform
            Reference -> frame transform.
        bad : ndarray of bool, shape (ny, nx), optional
            Pixels to leave out (non-finite pixels are always left out).
        """
        if not transform.is_integer_shift:
            if bad is not None:
                data = np.where(bad, np.nan, data)
            self.add(warp_to_reference(data, transform, self.shape))
            return
        dx, dy = int(transform.dx), int(transform.dy)
        ny, nx = data.shape
        y0, y1 = max(0, -dy), min(self.shape[0], ny - dy)
        x0, x1 = max(0, -dx), min(self.shape[1], nx - dx)
        if y1 > y0 and x1 > x0:
            values = data[y0 + dy:y1 + dy, x0 + dx:x1 + dx]
            good = np.isfinite(values)
            if bad is not None:
                good &= ~bad[y0 + dy:y1 + dy, x0 + dx:x1 + dx]
            np.add(self._sum[y0:y1, x0:x1], values, out=self._sum[y0:y1, x0:x1], where=good)
            self._count[y0:y1, x0:x1] += good
        self.n_frames += 1

    def merge(self, other):
        """Add the frames of another accumulator (e.g. one per worker).

        Raises
        ------
        ValueError
            If the shapes differ.
        """
        if other.shape != self.shape:
            raise ValueError(f"cannot merge a stack of shape {other.shape} into {self.shape}")
        self._sum += other._sum
        self._count += other._count
        self.n_frames += other.n_frames

    @property
    def count(self):
        """Number of frames that contributed to each pixel (int32 array, read-only view)."""
        view = self._count.view()
        view.setflags(write=False)
        return view

    @property
    def sum(self):
        """Sum of the contributing values per pixel; NaN where no frame contributed."""
        return np.where(self._count > 0, self._sum, np.nan)

    @property
    def mean(self):
        """Mean of the contributing values per pixel; NaN where no frame contributed."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self._count > 0, self._sum / self._count, np.nan)
