"""Exact overlap of ellipses (and circles) with a pixel grid, vectorised over sources.

The overlap of a pixel ``[x0, x1] x [y0, y1]`` with an ellipse centred on the origin is the
inclusion-exclusion of four *corner areas*

    w = F(x1, y1) - F(x0, y1) - F(x1, y0) + F(x0, y0),

where ``F(x, y)`` is the area of the ellipse inside the quadrant ``{X < x, Y < y}``. ``F`` has a
closed form (below) whose transcendental part depends on the row (``y``) or on the column
(``x``) only, so a source costs ``O(k)`` ``arcsin``/``sqrt`` evaluations and ``O(k^2)``
additions, multiplications and comparisons for a ``k x k`` box. This is exact geometry (the
same quantity photutils' ``method="exact"`` computes by polygon/circle clipping), differing
only by floating-point rounding, about ``1e-16 * a * b`` per pixel.

Derivation. Write the ellipse (semi-axes ``a``, ``b``, major axis at angle ``theta``
counter-clockwise from +x) as ``A X^2 + 2 B X Y + C Y^2 <= 1``. The vertical chord at ``X`` is
``lo(X) <= Y <= hi(X)`` with ``lo, hi = m X -/+ h(X)``, ``m = -B / C`` and
``h(X) = kappa sqrt(Xm^2 - X^2)``, ``kappa = 1 / (a b C)``, ``Xm`` the half-width of the ellipse
in x. The length of that chord below ``y`` is
``clip(y - lo, 0, 2h) = max(y - lo, 0) - max(y - hi, 0)``. Because ``lo`` is convex and ``hi``
concave, ``{lo < y}`` is one interval ``(p1, p2)`` and ``{hi > y}`` one interval ``[q1, q2]``,
whose ends are ``+-Xm`` or the abscissae where the line ``Y = y`` meets the ellipse. Integrating
in ``X`` with ``G(X) = int_{-Xm}^{X} h`` (a circular-segment area) gives

    F(x, y) = P(clip(x, p1, p2)) - P(p1) - Q(min(x, q1)) + Q(-Xm) - Q(max(x, q2)) + Q(q2),
    P(X) = y X - m X^2 / 2 + G(X),    Q(X) = y X - m X^2 / 2 - G(X),

and since ``G`` is increasing, ``G(clip(x, p1, p2)) = clip(G(x), G(p1), G(p2))`` etc.

Which pixels the aperture *touches* (non-zero overlap) is decided exactly, without the area:
in the row band ``[y0, y1]`` the ellipse spans the open interval ``(Xlo, Xhi)`` in x (its extreme
points or its crossings of the band edges), and a pixel of that band is touched when its
x-interval meets ``(Xlo, Xhi)``.
"""

import numpy as np

__all__ = ["EllipseGeometry", "overlap_fractions", "center_distance2"]


class EllipseGeometry:
    """Per-source constants of ellipses centred on the origin.

    Parameters
    ----------
    a, b : ndarray, shape (N,)
        Semi-axes (pixels, > 0); ``a`` lies along ``theta``.
    theta : ndarray, shape (N,)
        Angle of the ``a`` axis, radians counter-clockwise from +x.

    Attributes
    ----------
    x_extent, y_extent : ndarray, shape (N,)
        Half-widths of the ellipse along x and y (``Xm`` and ``Ym``).
    """

    def __init__(self, a, b, theta):
        cos, sin = np.cos(theta), np.sin(theta)
        inv_a2, inv_b2 = 1.0 / (a * a), 1.0 / (b * b)
        coef_a = cos * cos * inv_a2 + sin * sin * inv_b2
        coef_b = cos * sin * (inv_a2 - inv_b2)
        coef_c = sin * sin * inv_a2 + cos * cos * inv_b2
        self.x_extent = np.sqrt((a * cos) ** 2 + (b * sin) ** 2)
        self.y_extent = np.sqrt((a * sin) ** 2 + (b * cos) ** 2)
        # vertical chords: centre m X, half-length kappa sqrt(Xm^2 - X^2)
        self.slope = -coef_b / coef_c
        self.kappa = 1.0 / (a * b * coef_c)
        # horizontal chords: centre mu y, half-length lam sqrt(Ym^2 - y^2)
        self.mu = -coef_b / coef_a
        self.lam = 1.0 / (a * b * coef_a)
        # heights of the rightmost and leftmost points of the ellipse
        self.y_right = self.slope * self.x_extent
        self.area = np.pi * a * b

    def segment_area(self, x):
        """``G(x)``: area of the ellipse left of the vertical line ``X = x`` (x clipped to the
        ellipse). ``x`` has shape (n, N).

        Written with the angle ``phi = atan2(sqrt((Xm - x)(Xm + x)), x)`` of the chord end,
        ``G = kappa (Xm^2 (pi - phi) + x sqrt(...)) / 2``, which stays accurate to a few ulp
        of ``a b`` up to the tangent lines (an ``arcsin(x / Xm)`` form loses ~1e-11 there).
        """
        xm = self.x_extent
        x = np.clip(x, -xm, xm)
        root = np.sqrt((xm - x) * (xm + x))
        phi = np.arctan2(root, x)
        return 0.5 * self.kappa * (xm * xm * (np.pi - phi) + x * root)

    def crossings(self, y):
        """Abscissae ``X1 <= X2`` where the lines ``Y = y`` meet the ellipse, clipped to
        ``[-Xm, Xm]``, and whether they do (``|y| < Ym``). ``y`` has shape (n, N)."""
        ym = self.y_extent
        xm = self.x_extent
        ay = np.minimum(np.abs(y), ym)
        half = self.lam * np.sqrt((ym - ay) * (ym + ay))
        mid = self.mu * y
        x1 = np.clip(mid - half, -xm, xm)
        x2 = np.clip(mid + half, -xm, xm)
        return x1, x2, np.abs(y) < ym


def _corner_areas(geom, x_edges, y_edges):
    """``F(x, y)`` on the grid of pixel corners, shape (ky + 1, kx + 1, N)."""
    xm = geom.x_extent
    y_right = geom.y_right
    half_slope = 0.5 * geom.slope
    x1, x2, _ = geom.crossings(y_edges)
    above_left = y_edges > -y_right       # the leftmost point lies below the line
    above_right = y_edges > y_right       # the rightmost point lies below the line
    p1 = np.where(above_left, -xm, x1)
    p2 = np.where(above_right, xm, x2)
    q1 = np.where(above_left, x1, -xm)
    q2 = np.where(above_right, x2, xm)
    g_p1, g_p2 = geom.segment_area(p1), geom.segment_area(p2)
    g_q1, g_q2 = geom.segment_area(q1), geom.segment_area(q2)

    def poly(x, y):
        return x * (y - half_slope * x)

    row_const = (poly(-xm, y_edges) + poly(q2, y_edges) - poly(p1, y_edges)
                 - g_p1 - g_q2)

    x = np.clip(x_edges, -xm, xm)
    g_x = geom.segment_area(x)[None]
    x = x[None]
    y = y_edges[:, None]
    p1, p2, q1, q2 = p1[:, None], p2[:, None], q1[:, None], q2[:, None]
    clipped = np.minimum(np.maximum(x, p1), p2)
    left = np.minimum(x, q1)
    right = np.maximum(x, q2)
    area = poly(clipped, y)
    area -= poly(left, y)
    area -= poly(right, y)
    area += np.minimum(np.maximum(g_x, g_p1[:, None]), g_p2[:, None])
    area += np.minimum(g_x, g_q1[:, None])
    area += np.maximum(g_x, g_q2[:, None])
    area += row_const[:, None]
    return area


def _classify(geom, x_edges, y_edges):
    """Exact tests of pixels touching (non-zero overlap) and lying inside the ellipse.

    Returns two bool arrays of shape (ky, kx, N): ``touched`` and ``inside``.
    """
    x1, x2, valid = geom.crossings(y_edges)
    # touched: the x-span (Xlo, Xhi) of the ellipse within each row band
    lo_edge = np.where(valid, x1, np.inf)
    hi_edge = np.where(valid, x2, -np.inf)
    x_lo = np.minimum(lo_edge[:-1], lo_edge[1:])
    x_hi = np.maximum(hi_edge[:-1], hi_edge[1:])
    y_right = geom.y_right
    xm = geom.x_extent
    y0, y1 = y_edges[:-1], y_edges[1:]
    x_lo = np.where((y0 <= -y_right) & (-y_right <= y1), -xm, x_lo)
    x_hi = np.where((y0 <= y_right) & (y_right <= y1), xm, x_hi)
    left, right = x_edges[None, :-1], x_edges[None, 1:]
    touched = (left < x_hi[:, None]) & (right > x_lo[:, None])
    # inside: both band edges are chords of the ellipse over the pixel's x-span (convexity)
    both = valid[:-1] & valid[1:]
    in_lo = np.where(both, np.maximum(x1[:-1], x1[1:]), np.inf)
    in_hi = np.where(both, np.minimum(x2[:-1], x2[1:]), -np.inf)
    inside = (left >= in_lo[:, None]) & (right <= in_hi[:, None])
    return touched, inside


def overlap_fractions(x_edges, y_edges, a, b, theta):
    """Exact overlap of each pixel of a box with an ellipse.

    Arrays put the source axis last, so that every operation runs over long contiguous
    rows whatever the box size.

    Parameters
    ----------
    x_edges : ndarray, shape (kx + 1, N)
        Pixel edges along x relative to each ellipse centre, increasing.
    y_edges : ndarray, shape (ky + 1, N)
        Pixel edges along y relative to each ellipse centre, increasing.
    a, b, theta : ndarray, shape (N,)
        Semi-axes (pixels, > 0) and angle of ``a`` (radians, counter-clockwise from +x).
        A circle is ``a = b = r``, ``theta = 0``.

    Returns
    -------
    weights : ndarray, shape (ky, kx, N), float64
        Overlap area of each pixel (pixel area 1): exactly 0 where ``touched`` is False and
        exactly 1 for pixels wholly inside the ellipse.
    touched : ndarray, shape (ky, kx, N), bool
        Pixels whose overlap with the ellipse has non-zero area (decided exactly).
    """
    geom = EllipseGeometry(a, b, theta)
    corner = _corner_areas(geom, x_edges, y_edges)
    strip = corner[:, 1:] - corner[:, :-1]
    weights = strip[1:] - strip[:-1]
    touched, inside = _classify(geom, x_edges, y_edges)
    weights *= touched
    np.putmask(weights, inside, 1.0)
    return weights, touched


def center_distance2(x_offsets, y_offsets):
    """Squared distance of pixel centres from the source, ``dx * dx + dy * dy``.

    The arithmetic is that of photutils' ``method="center"`` masks (pixel centre minus
    position, squared and summed in this order), so the strict test ``d2 < r**2`` selects
    the same pixels, ties included, for positions exactly representable in binary.

    Parameters
    ----------
    x_offsets, y_offsets : ndarray
        ``x_pixel - x_source`` and ``y_pixel - y_source``, broadcastable.

    Returns
    -------
    ndarray
        The squared distances.
    """
    return x_offsets * x_offsets + y_offsets * y_offsets
