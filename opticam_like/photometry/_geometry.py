"""Exact overlap of circles and ellipses with a pixel grid, vectorised over sources.

Arrays put the source axis **last**: a box of ``ky x kx`` pixels for ``n`` sources is an array
of shape ``(ky, kx, n)``, so every NumPy operation runs over long contiguous rows whatever the
box size (with the source axis first, inner loops would be ``kx`` long and NumPy's per-loop
overhead would dominate). Large temporaries are taken from a :class:`Scratch` and written with
``out=``: fresh multi-megabyte temporaries are page-faulted in by the kernel on every call,
which costs as much as the arithmetic.

The overlap of a pixel ``[x0, x1] x [y0, y1]`` with a shape centred on the origin is the
inclusion-exclusion of four *corner areas*,

    w = F(x1, y1) - F(x0, y1) - F(x1, y0) + F(x0, y0),

``F(x, y)`` being an area of the shape bounded by the lines ``X = x`` and ``Y = y``. ``F`` has a
closed form whose transcendental part depends on the row (``y``) or on the column (``x``) only,
so a source costs ``O(k)`` ``atan2``/``sqrt`` evaluations and ``O(k^2)`` additions,
multiplications and comparisons. This is exact geometry, the quantity photutils'
``method="exact"`` computes by polygon/circle clipping, to floating-point rounding (a few ulp of
the aperture area per pixel). Which pixels are touched (non-zero overlap) is decided exactly
from the geometry, not from the rounded areas, and the others get exactly 0.

Circle (radius ``r``). ``F(x, y)`` is the *signed* area of the disc inside the rectangle
``[0, x] x [0, y]``, odd in ``x`` and in ``y``. With ``|a| = min(|x|, r)``, ``|b| = min(|y|, r)``,
``c = sqrt(r^2 - b^2)`` (the half-chord at height ``b``) and
``I(t) = int_0^t sqrt(r^2 - u^2) du``, the area is the full-height part ``[0, min(|a|, c)]``
plus the circular part beyond ``c``:
``F = sign(x) sign(y) (|b| min(|a|, c) + I(max(|a|, c)) - I(c))``, and ``I`` being increasing,
``I(max(|a|, c)) = max(I(|a|), I(c))``.

Ellipse (semi-axes ``a``, ``b``, ``a`` at angle ``theta``). ``F(x, y)`` is the area inside the
quadrant ``{X < x, Y < y}``. Write the ellipse ``A X^2 + 2 B X Y + C Y^2 <= 1``; its vertical
chord at ``X`` is ``lo(X) <= Y <= hi(X)``, ``lo, hi = m X -/+ h(X)``, ``m = -B / C``,
``h(X) = kappa sqrt(Xm^2 - X^2)``, ``kappa = 1 / (a b C)``, ``Xm`` its half-width in x. The
chord's length below ``y`` is ``clip(y - lo, 0, 2h) = max(y - lo, 0) - max(y - hi, 0)``; as
``lo`` is convex and ``hi`` concave, ``{lo < y} = (p1, p2)`` and ``{hi > y} = [q1, q2]`` are
intervals whose ends are ``+-Xm`` or where the line ``Y = y`` crosses the ellipse. Integrating
in ``X`` with ``G(X) = int_{-Xm}^X h`` (a segment area):

    F(x, y) = P(clip(x, p1, p2)) - P(p1) - Q(min(x, q1)) + Q(-Xm) - Q(max(x, q2)) + Q(q2),
    P(X) = y X - m X^2 / 2 + G(X),    Q(X) = y X - m X^2 / 2 - G(X),

and, ``G`` being increasing, ``G(clip(x, p1, p2)) = clip(G(x), G(p1), G(p2))`` and so on.

Segment areas use the chord-end angle ``atan2(sqrt((R - t)(R + t)), t)``, accurate to a few
ulp up to the tangent lines (an ``arcsin(t / R)`` form loses ~1e-11 of a pixel there).
"""

import math
import threading

import numpy as np

__all__ = ["Scratch", "thread_scratch", "circle_overlap", "ellipse_overlap", "ellipse_extents"]


class Scratch:
    """Reusable work arrays, keyed by name and dtype.

    ``scratch(name, shape, dtype)`` returns a C-contiguous array of that shape, a view of a
    buffer kept under ``(name, dtype)`` that grows when needed, so a loop over chunks (and
    successive calls) reuses the same memory. The contents are garbage until written; an
    array is valid until the next request of the same name and dtype.

    Parameters
    ----------
    max_size : int
        Requests of more elements get a fresh array that is not kept (huge apertures must
        not pin memory).
    """

    def __init__(self, max_size=1 << 18):
        self.max_size = max_size
        self._buffers = {}

    def __call__(self, name, shape, dtype=np.float64):
        dtype = np.dtype(dtype)
        size = math.prod(shape)
        if size > self.max_size:
            return np.empty(shape, dtype)
        buffer = self._buffers.get((name, dtype))
        if buffer is None or buffer.size < size:
            buffer = self._buffers[(name, dtype)] = np.empty(size, dtype)
        return buffer[:size].reshape(shape)


_LOCAL = threading.local()


def thread_scratch():
    """The :class:`Scratch` of the calling thread (created on first use).

    Kept between calls, so that per-frame calls do not page-fault fresh memory in: about
    15 MB per thread once every kernel has run, bounded by the kernels' chunk size.
    """
    scratch = getattr(_LOCAL, "scratch", None)
    if scratch is None:
        scratch = _LOCAL.scratch = Scratch()
    return scratch


def _select(condition, if_true, if_false):
    """``where(condition, if_true, if_false)`` for small finite operands, exact, branch-free.

    ``np.where`` costs ~10 ns per element when the condition is irregular (as here, from one
    source to the next); multiplying by booleans runs at vector speed and, the operands being
    finite, selects exactly.
    """
    return if_true * condition + if_false * ~condition


def _weights(corner, touched, scratch):
    """Pixel weights from corner areas (ky + 1, kx + 1, n), exactly 0 off ``touched``."""
    ky, kx, n = corner.shape[0] - 1, corner.shape[1] - 1, corner.shape[2]
    strip = np.subtract(corner[:, 1:], corner[:, :-1], out=scratch("strip", (ky + 1, kx, n)))
    weights = np.subtract(strip[1:], strip[:-1], out=scratch("weights", (ky, kx, n)))
    weights *= touched
    return weights


def circle_overlap(x_edges, y_edges, r, scratch):
    """Exact overlap of each pixel of a box with a circle.

    Parameters
    ----------
    x_edges : ndarray, shape (kx + 1, n)
        Pixel edges along x relative to each circle centre, increasing.
    y_edges : ndarray, shape (ky + 1, n)
        Pixel edges along y relative to each circle centre, increasing.
    r : ndarray, shape (n,)
        Radii (pixels, > 0).
    scratch : Scratch
        Work arrays; the returned arrays live in it.

    Returns
    -------
    weights : ndarray, shape (ky, kx, n), float64
        Overlap area of each pixel (pixel area 1), exactly 0 for pixels not touched.
    touched : ndarray, shape (ky, kx, n), bool
        Pixels whose overlap with the circle has non-zero area.
    """
    r2 = r * r
    abs_a = np.minimum(np.abs(x_edges), r)
    abs_b = np.minimum(np.abs(y_edges), r)
    int_a = _quarter_integral(abs_a, r)
    c = np.sqrt((r - abs_b) * (r + abs_b))
    int_c = _quarter_integral(c, r, abs_b)

    # F = sign(a) sign(b) (|b| min(|a|, c) + max(I(|a|), I(c)) - I(c))
    shape = (len(y_edges), len(x_edges), len(r))
    corner = np.minimum(abs_a[None], c[:, None], out=scratch("corner", shape))
    corner *= (np.sign(y_edges) * abs_b)[:, None]
    work = np.maximum(int_a[None], int_c[:, None], out=scratch("work", shape))
    work -= int_c[:, None]
    work *= np.sign(y_edges)[:, None]
    corner += work
    corner *= np.sign(x_edges)[None]

    # touched: the nearest point of the pixel lies strictly inside the circle
    near_x = np.maximum(np.maximum(x_edges[:-1], -x_edges[1:]), 0.0)
    near_y = np.maximum(np.maximum(y_edges[:-1], -y_edges[1:]), 0.0)
    box = (shape[0] - 1, shape[1] - 1, shape[2])
    near = np.add((near_x * near_x)[None], (near_y * near_y)[:, None],
                  out=scratch("near", box))
    touched = np.less(near, r2, out=scratch("touched", box, bool))
    return _weights(corner, touched, scratch), touched


def _quarter_integral(t, r, root=None):
    """``I(t) = int_0^t sqrt(r^2 - u^2) du`` for ``0 <= t <= r``; ``root`` is
    ``sqrt(r^2 - t^2)`` when known. Written with ``atan2``, accurate up to ``t = r``."""
    if root is None:
        root = np.sqrt((r - t) * (r + t))
    return 0.5 * (t * root + r * r * np.arctan2(t, root))


def ellipse_extents(a, b, theta):
    """Half-widths of ellipses along x and y.

    Parameters
    ----------
    a, b : ndarray
        Semi-axes (pixels); ``a`` lies at angle ``theta``.
    theta : ndarray
        Radians, counter-clockwise from +x.

    Returns
    -------
    x_extent, y_extent : ndarray
        ``sqrt(a^2 cos^2 + b^2 sin^2)`` and ``sqrt(a^2 sin^2 + b^2 cos^2)``.
    """
    cos, sin = np.cos(theta), np.sin(theta)
    return np.hypot(a * cos, b * sin), np.hypot(a * sin, b * cos)


class _Ellipse:
    """Per-source constants of ellipses centred on the origin (arrays of shape (n,))."""

    def __init__(self, a, b, theta):
        cos, sin = np.cos(theta), np.sin(theta)
        inv_a2, inv_b2 = 1.0 / (a * a), 1.0 / (b * b)
        coef_a = cos * cos * inv_a2 + sin * sin * inv_b2
        coef_b = cos * sin * (inv_a2 - inv_b2)
        coef_c = sin * sin * inv_a2 + cos * cos * inv_b2
        self.x_extent, self.y_extent = ellipse_extents(a, b, theta)
        # vertical chords: centre m X, half-length kappa sqrt(Xm^2 - X^2)
        self.half_slope = -0.5 * coef_b / coef_c
        self.kappa = 1.0 / (a * b * coef_c)
        # horizontal chords: centre mu y, half-length lam sqrt(Ym^2 - y^2)
        self.mu = -coef_b / coef_a
        self.lam = 1.0 / (a * b * coef_a)
        # height of the rightmost point (the leftmost one is at minus this)
        self.y_right = 2.0 * self.half_slope * self.x_extent
        self.area = np.pi * a * b

    def segment_area(self, x):
        """``G(x)``, the area left of the line ``X = x``, for ``x`` in ``[-Xm, Xm]``."""
        xm = self.x_extent
        root = np.sqrt((xm - x) * (xm + x))
        return 0.5 * self.kappa * (xm * xm * (np.pi - np.arctan2(root, x)) + x * root)

    def crossings(self, y):
        """Abscissae ``X1 <= X2`` (clipped to ``[-Xm, Xm]``) where the lines ``Y = y`` meet
        the ellipse, and whether they do (``|y| < Ym``)."""
        ym, xm = self.y_extent, self.x_extent
        abs_y = np.minimum(np.abs(y), ym)
        half = self.lam * np.sqrt((ym - abs_y) * (ym + abs_y))
        mid = self.mu * y
        return np.clip(mid - half, -xm, xm), np.clip(mid + half, -xm, xm), np.abs(y) < ym


def _ellipse_corners(ell, x_edges, y_edges, scratch):
    """``F(x, y)`` on the grid of pixel corners, shape (ky + 1, kx + 1, n)."""
    xm, hs = ell.x_extent, ell.half_slope
    x1, x2, _ = ell.crossings(y_edges)
    g_x1, g_x2 = ell.segment_area(x1), ell.segment_area(x2)
    above_left = y_edges > -ell.y_right      # the leftmost point lies below the line
    above_right = y_edges > ell.y_right      # the rightmost point lies below the line
    p1 = _select(above_left, -xm, x1)
    p2 = _select(above_right, xm, x2)
    q1 = _select(above_left, x1, -xm)
    q2 = _select(above_right, x2, xm)
    g_p1 = g_x1 * ~above_left
    g_p2 = _select(above_right, ell.area, g_x2)
    g_q1 = g_x1 * above_left
    g_q2 = _select(above_right, g_x2, ell.area)

    def poly(x, y):
        return x * (y - hs * x)

    row_const = poly(-xm, y_edges) + poly(q2, y_edges) - poly(p1, y_edges) - g_p1 - g_q2

    x = np.clip(x_edges, -xm, xm)
    g_x = ell.segment_area(x)[None]
    x, y, hs_box = x[None], y_edges[:, None], hs[None, None]
    shape = (len(y_edges), x.shape[1], len(xm))
    corner = scratch("corner", shape)
    work = scratch("work", shape)
    poly_work = scratch("poly", shape)

    def poly_of(bounded):
        # bounded * (y - hs * bounded), in poly_work
        np.multiply(hs_box, bounded, out=poly_work)
        np.subtract(y, poly_work, out=poly_work)
        return np.multiply(poly_work, bounded, out=poly_work)

    np.maximum(x, p1[:, None], out=work)
    np.minimum(work, p2[:, None], out=work)
    corner[...] = poly_of(work)
    np.minimum(x, q1[:, None], out=work)
    corner -= poly_of(work)
    np.maximum(x, q2[:, None], out=work)
    corner -= poly_of(work)
    np.maximum(g_x, g_p1[:, None], out=work)
    np.minimum(work, g_p2[:, None], out=work)
    corner += work
    np.minimum(g_x, g_q1[:, None], out=work)
    corner += work
    np.maximum(g_x, g_q2[:, None], out=work)
    corner += work
    corner += row_const[:, None]
    return corner


def _ellipse_touched(ell, x_edges, y_edges, scratch):
    """Exact test of pixels touching the ellipse (non-zero overlap), (ky, kx, n) bool.

    In the row band ``[y0, y1]`` the ellipse spans the open interval ``(Xlo, Xhi)`` in x (its
    extreme points or its crossings of the band edges): a pixel of the band is touched when
    its x-interval meets ``(Xlo, Xhi)``.
    """
    x1, x2, valid = ell.crossings(y_edges)
    xm, y_right = ell.x_extent, ell.y_right
    far = 2 * xm + 1                                   # finite stand-in for infinity
    lo_edge = _select(valid, x1, far)
    hi_edge = _select(valid, x2, -far)
    x_lo = np.minimum(lo_edge[:-1], lo_edge[1:])
    x_hi = np.maximum(hi_edge[:-1], hi_edge[1:])
    y0, y1 = y_edges[:-1], y_edges[1:]
    x_lo = _select((y0 <= -y_right) & (-y_right <= y1), -xm, x_lo)
    x_hi = _select((y0 <= y_right) & (y_right <= y1), xm, x_hi)

    left, right = x_edges[None, :-1], x_edges[None, 1:]
    shape = (len(y0), left.shape[1], len(xm))
    touched = np.less(left, x_hi[:, None], out=scratch("touched", shape, bool))
    touched &= np.greater(right, x_lo[:, None], out=scratch("test", shape, bool))
    return touched


def ellipse_overlap(x_edges, y_edges, a, b, theta, scratch):
    """Exact overlap of each pixel of a box with an ellipse.

    Parameters
    ----------
    x_edges : ndarray, shape (kx + 1, n)
        Pixel edges along x relative to each ellipse centre, increasing.
    y_edges : ndarray, shape (ky + 1, n)
        Pixel edges along y relative to each ellipse centre, increasing.
    a, b, theta : ndarray, shape (n,)
        Semi-axes (pixels, > 0) and angle of ``a`` (radians, counter-clockwise from +x).
    scratch : Scratch
        Work arrays; the returned arrays live in it.

    Returns
    -------
    weights : ndarray, shape (ky, kx, n), float64
        Overlap area of each pixel (pixel area 1), exactly 0 for pixels not touched.
    touched : ndarray, shape (ky, kx, n), bool
        Pixels whose overlap with the ellipse has non-zero area.
    """
    ell = _Ellipse(a, b, theta)
    touched = _ellipse_touched(ell, x_edges, y_edges, scratch)
    corner = _ellipse_corners(ell, x_edges, y_edges, scratch)
    return _weights(corner, touched, scratch), touched
