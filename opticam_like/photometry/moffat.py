"""The frame PSF as an elliptical Moffat profile, fitted to its brightest clean stars.

Why a fit and not moments: the second moments of a Moffat star are dominated by its power-law
wings (a Moffat of index ``beta`` has a finite variance only for ``beta > 2``, and a moment
measured in a finite box grows with the box), so a FWHM from moments (``2.3548 sqrt(cxx)``) is
1.3-1.7 times the true FWHM for ``beta`` 2.5-3. A half-maximum radius from the azimuthal
profile is unbiased only for round stars, and photutils' ``fit_fwhm`` fits a circular Gaussian,
which on a Moffat star lands between the core and the wings. An elliptical Moffat (Moffat 1969)
has the Gaussian as its limit ``beta -> inf``, so one model fits Gaussian and Moffat stars, round
or elongated, and gives the FWHM along both axes, the orientation and ``beta`` (Trujillo et
al. 2001 give the Moffat as the best analytic description of seeing-limited stars; IRAF's
``imexamine`` and ``psfmeasure`` fit it for the same reason).

The model is written with the half-maximum ellipse ``q(d) = d^T W d = 1`` and ``u = 1 / beta``::

    I(d) = F (1/u - 1) k sqrt(det W) / pi * (1 + k q(d))^(-1/u),   k = 2^u - 1,

which is the Moffat ``(beta - 1) / (pi alpha_x alpha_y) (1 + r^2)^-beta`` with its FWHM along
each axis ``2 / sqrt(eigenvalue of W)`` and tends to the Gaussian ``exp(-ln 2 q)`` as ``u -> 0``
(no singular parameter there, unlike ``alpha`` and ``beta``). ``W`` is kept positive definite by
its Cholesky factor ``[[a, 0], [b, c]]`` (``q = (a dx + b dy)^2 + (c dy)^2``, ``a, c > 0``).
Every star is fitted with its own flux, centre, residual background and shape, by a
Levenberg-Marquardt loop (analytic derivatives) run on all stars at once with NumPy (no Python
loop over stars), on
the model integrated over the pixels (3 x 3 Gauss-Legendre rule); the frame's PSF is then the
median over the stars, which rejects the odd star spoiled by an undetected neighbour, a cosmic
ray or an unflagged saturated core.

References
----------
Moffat, A. F. J. 1969, A&A 3, 455.
Trujillo, I., Aguerri, J. A. L., Cepa, J. & Gutierrez, C. M. 2001, MNRAS 328, 977.
Marquardt, D. W. 1963, J. SIAM 11, 431.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .kernels import cutouts

__all__ = ["MoffatProfile", "MoffatFits", "fit_moffat", "measure_psf", "pixel_integral"]

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(3)
_NODES, _WEIGHTS = _NODES / 2.0, _WEIGHTS / 2.0
"""3-point Gauss-Legendre rule on a pixel, [-0.5, 0.5]."""
_NODE_U = np.repeat(_NODES, 3)
_NODE_V = np.tile(_NODES, 3)
_NODE_W = np.outer(_WEIGHTS, _WEIGHTS).ravel()
_GAUSS_LEGENDRE = (_NODE_U, _NODE_V, _NODE_W)
_CENTRES = (np.zeros(1), np.zeros(1), np.ones(1))

_U_MIN = 1e-3
"""``u = 1 / beta`` is fitted as ``_U_MIN + t^2``: beta <= 1000 (a Gaussian to 0.1%) with no
bound in the way of the Gaussian limit."""
_T_MAX = math.sqrt(0.8 - _U_MIN)
"""``|t|`` at most this: beta >= 1.25."""
_FIT_HALF = 2.0
"""Half-size of the fit boxes, in guessed FWHM: the core and enough wing to fix ``beta``."""
_CENTRE_RULE_FWHM = 8.0
"""From this guessed FWHM on, the model is sampled at the pixel centres instead of being
integrated over the pixels (9 evaluations a pixel fewer on the largest boxes): the pixel widens
the profile, and the fitted FWHM is high by ~0.5% at 8 px (1.3% at 5 px).
When the stars turn out smaller, the fit is refined with the integrated model."""
_CLEAN_RADIUS = 2.0
"""A star with a masked pixel within this many guessed FWHM is not fitted (saturated core)."""
_ISOLATION = 3.0
"""A star with another catalogued source within this many guessed FWHM is not isolated."""


def pixel_integral(density, dx, dy):
    """Integral of ``density(u, v)`` over the unit pixels centred on ``(dx, dy)``.

    A 3 x 3 Gauss-Legendre rule: for a Moffat of FWHM >= 1.5 px the error is below 4e-4 of
    the peak pixel (2e-5 at FWHM 3 px); a Gaussian is smoother still.
    """
    total = 0.0
    for u, v, w in zip(_NODE_U, _NODE_V, _NODE_W):
        total = total + w * density(dx + u, dy + v)
    return total


@dataclass(frozen=True)
class MoffatProfile:
    """Pixel-integrated elliptical Moffat profile of unit flux (Moffat 1969).

    ``I = (beta - 1) / (pi alpha_a alpha_b) (1 + (u / alpha_a)^2 + (v / alpha_b)^2)^-beta``
    with ``(u, v)`` the offsets along the major and minor axes, ``alpha_a = alpha / sqrt(1 - e)``,
    ``alpha_b = alpha sqrt(1 - e)`` and ``alpha = fwhm / (2 sqrt(2^(1/beta) - 1))``
    (photutils' ``MoffatPSF`` for ``e = 0``), integrated over the pixels with a 3 x 3
    Gauss-Legendre rule.

    Parameters
    ----------
    fwhm : float
        Geometric mean of the FWHMs along the axes (px).
    beta : float
        Power-law index of the wings, > 1 (large values tend to a Gaussian).
    ellipticity : float
        ``1 - b/a`` of the half-maximum ellipse, in [0, 1).
    theta : float
        Angle of the major axis, radians counter-clockwise from +x.

    Raises
    ------
    ValueError
        ``fwhm`` not positive, ``beta <= 1`` or ``ellipticity`` outside [0, 1).
    """

    fwhm: float
    beta: float = 2.5
    ellipticity: float = 0.0
    theta: float = 0.0

    def __post_init__(self):
        if not self.fwhm > 0:
            raise ValueError(f"fwhm must be positive, got {self.fwhm}")
        if not self.beta > 1:
            raise ValueError(f"beta must be > 1, got {self.beta}")
        if not 0 <= self.ellipticity < 1:
            raise ValueError(f"ellipticity must be in [0, 1), got {self.ellipticity}")

    @property
    def alpha(self):
        """Geometric-mean core radius (px)."""
        return self.fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / self.beta) - 1.0))

    @property
    def fwhm_major(self):
        """FWHM along the major axis (px)."""
        return self.fwhm / math.sqrt(1.0 - self.ellipticity)

    @property
    def fwhm_minor(self):
        """FWHM along the minor axis (px)."""
        return self.fwhm * math.sqrt(1.0 - self.ellipticity)

    def density(self, dx, dy):
        """Unit-flux surface density at offsets ``(dx, dy)`` from the centre (px^-2)."""
        q = 1.0 - self.ellipticity
        alpha_a, alpha_b = self.alpha / math.sqrt(q), self.alpha * math.sqrt(q)
        cos, sin = math.cos(self.theta), math.sin(self.theta)
        u = (dx * cos + dy * sin) / alpha_a
        v = (dy * cos - dx * sin) / alpha_b
        norm = (self.beta - 1.0) / (math.pi * alpha_a * alpha_b)
        return norm * np.exp(-self.beta * np.log1p(u * u + v * v))

    def render(self, dx, dy):
        """Fraction of the flux in each pixel.

        Parameters
        ----------
        dx, dy : array_like, broadcastable
            Offsets of the pixel centres from the source (px).

        Returns
        -------
        ndarray, the broadcast shape
        """
        return pixel_integral(self.density, dx, dy)


@dataclass(frozen=True)
class MoffatFits:
    """Elliptical Moffat fits of N stars (arrays of shape (N,)).

    Attributes
    ----------
    flux, x, y, background : ndarray
        Total flux, centre (image pixels) and residual background per pixel of each star.
    fwhm_major, fwhm_minor, theta, beta : ndarray
        Shape of each star (px, px, radians counter-clockwise from +x, index).
    ok : ndarray of bool
        The fit converged to a finite shape with positive flux inside its box.
    """

    flux: np.ndarray
    x: np.ndarray
    y: np.ndarray
    background: np.ndarray
    fwhm_major: np.ndarray
    fwhm_minor: np.ndarray
    theta: np.ndarray
    beta: np.ndarray
    ok: np.ndarray


def _model(params, grid, nodes):
    """Pixel-integrated Moffat plus background of every star, shape (N, k, k); ``grid`` is the
    pixel offsets, ``nodes`` the integration rule (u, v, weights)."""
    flux, x0, y0, bg, a, b, c, t = (params[:, j, None, None, None] for j in range(8))
    u = _U_MIN + t * t
    node_u, node_v, node_w = nodes
    dx = grid[None, None, :, None] + node_u - x0
    dy = grid[None, :, None, None] + node_v - y0
    q = (a * dx + b * dy) ** 2 + (c * dy) ** 2
    k = np.expm1(u * math.log(2.0))
    norm = (1.0 / u - 1.0) * k * a * c / math.pi
    profile = (norm * np.exp(-np.log1p(k * q) / u)) @ node_w
    return flux[..., 0] * profile + bg[..., 0]


def _model_jacobian(params, grid, nodes):
    """Analytic derivatives of :func:`_model`, shape (N, 8, k, k), with respect to the
    parameters ``(flux, x0, y0, background, a, b, c, t)``."""
    flux, x0, y0, _, a, b, c, t = (params[:, j, None, None, None] for j in range(8))
    u = _U_MIN + t * t
    node_u, node_v, node_w = nodes
    dx = grid[None, None, :, None] + node_u - x0
    dy = grid[None, :, None, None] + node_v - y0
    s1, s2 = a * dx + b * dy, c * dy
    q = s1 * s1 + s2 * s2
    k = np.expm1(u * math.log(2.0))
    kq1 = 1.0 + k * q
    log_term = np.log1p(k * q)
    g = (1.0 / u - 1.0) * k * a * c / math.pi * np.exp(-log_term / u)
    # d g / d q = -g k / (u (1 + k q))
    slope = g * k / (u * kq1)
    dlog_u = (-1.0 / (u * (1.0 - u)) + math.log(2.0) * (k + 1.0) / k
              - q * math.log(2.0) * (k + 1.0) / (u * kq1) + log_term / (u * u))
    parts = (2.0 * a * slope * s1,                        # x0
             2.0 * slope * (b * s1 + c * s2),             # y0
             g / a - 2.0 * slope * s1 * dx,               # a
             -2.0 * slope * s1 * dy,                      # b
             g / c - 2.0 * slope * s2 * dy,               # c
             2.0 * t * g * dlog_u)                        # t
    profile = g @ node_w
    jac = np.empty((len(params), 8) + profile.shape[1:])
    jac[:, 0] = profile
    jac[:, 3] = 1.0
    for j, part in zip((1, 2, 4, 5, 6, 7), parts):
        jac[:, j] = flux[..., 0] * (part @ node_w)
    return jac


def _clip(params, scale):
    params[:, 4] = np.maximum(params[:, 4], 0.05 * scale)
    params[:, 6] = np.maximum(params[:, 6], 0.05 * scale)
    params[:, 7] = np.clip(params[:, 7], -_T_MAX, _T_MAX)
    return params


def _geometric_fwhm(params):
    """Geometric-mean FWHM of fitted parameters: ``2 / det(W)^(1/4) = 2 / sqrt(a c)``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return 2.0 / np.sqrt(params[:, 4] * params[:, 6])


def _levenberg_marquardt(params, values, weight, grid, nodes, scale, max_iter):
    """Levenberg-Marquardt on every star at once (each with its own damping); returns the
    parameters (N, 8). A star stops when a step lowers its cost by < 1e-7, moves its centre and
    half-maximum ellipse by < 1e-4 (px, and relative), or cannot lower it; the stars still
    running are the only ones computed."""
    params = params.copy()
    residual = (values - _model(params, grid, nodes)) * weight
    cost = np.sum(residual**2, axis=(1, 2))
    damping = np.full(len(params), 1e-3)
    active = np.arange(len(params))
    for _ in range(max_iter):
        if not len(active):
            break
        p, w = params[active], weight[active]
        jac = _model_jacobian(p, grid, nodes)
        jac = (jac * w[:, None]).reshape(len(active), 8, -1)
        hessian = jac @ jac.transpose(0, 2, 1)
        gradient = jac @ residual[active].reshape(len(active), -1, 1)
        diagonal = np.einsum("nii->ni", hessian)
        # the floor keeps a star without usable pixels (a zero matrix) from stopping the others
        damped = hessian + (damping[active, None] * diagonal + 1e-300)[:, :, None] * np.eye(8)
        delta = np.linalg.solve(damped, gradient)[..., 0]
        trial = _clip(p + delta, scale)
        trial_residual = (values[active] - _model(trial, grid, nodes)) * w
        trial_cost = np.sum(trial_residual**2, axis=(1, 2))
        better = trial_cost < cost[active]
        gain = np.where(better, (cost[active] - trial_cost) / np.maximum(cost[active], 1e-300),
                        0.0)
        moved = active[better]
        params[moved], cost[moved] = trial[better], trial_cost[better]
        residual[moved] = trial_residual[better]
        # the core no longer moves under a nearly Gauss-Newton step: in the Gaussian limit
        # u = t^2 creeps towards 0 for many more iterations without changing the FWHM
        settled = ((np.max(np.abs(delta[:, [1, 2]]), axis=1)
                    + np.max(np.abs(delta[:, 4:7]), axis=1) / scale) < 1e-4) & (
                        damping[active] <= 1e-2)
        damping[active] = np.where(better, damping[active] * 0.3, damping[active] * 10.0)
        done = (better & ((gain < 1e-7) | settled)) | (damping[active] > 1e6)
        active = active[~done]
    return params


def fit_moffat(data, x, y, fwhm_guess, mask=None, max_iter=20):
    """Fit an elliptical Moffat to each of N stars (all stars at once).

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Background-subtracted image.
    x, y : ndarray, shape (N,)
        Approximate centres (0-based px).
    fwhm_guess : float
        Rough FWHM (px, within a factor ~2); sets the ``2 ceil(2 fwhm_guess) + 1`` boxes.
    mask : ndarray of bool, shape (ny, nx), optional
        Pixels left out of the fits.
    max_iter : int
        Levenberg-Marquardt iterations at most.

    Returns
    -------
    MoffatFits

    Raises
    ------
    ValueError
        ``fwhm_guess`` not positive.

    Notes
    -----
    Uniform weights (the bright stars this is meant for are photon-noise dominated in the
    core, which fixes the FWHM). The derivatives are analytic (:func:`_model_jacobian`).
    """
    if not fwhm_guess > 0:
        raise ValueError(f"fwhm_guess must be positive, got {fwhm_guess}")
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    half = max(3, math.ceil(_FIT_HALF * fwhm_guess))
    stamps, ix0, iy0 = cutouts(data, x, y, half)
    good = np.isfinite(stamps)
    if mask is not None:
        flagged, _, _ = cutouts(mask.astype(np.float32), x, y, half, fill_value=1.0)
        good &= flagged == 0
    values = np.where(good, stamps, 0.0).astype(float)
    weight = good.astype(float)
    grid = np.arange(2 * half + 1, dtype=float)
    nodes = _GAUSS_LEGENDRE if fwhm_guess < _CENTRE_RULE_FWHM else _CENTRES
    scale = 2.0 / fwhm_guess
    n = len(x)
    border = np.ones_like(good)
    border[:, 1:-1, 1:-1] = False
    border &= good
    bg0 = np.array([np.median(v[b]) if b.any() else 0.0 for v, b in zip(values, border)])
    params = np.column_stack([np.sum((values - bg0[:, None, None]) * weight, axis=(1, 2)),
                              x - ix0, y - iy0, bg0, np.full(n, scale), np.zeros(n),
                              np.full(n, scale), np.full(n, math.sqrt(1.0 / 3.0 - _U_MIN))])
    params = _levenberg_marquardt(params, values, weight, grid, nodes, scale, max_iter)
    if len(nodes[0]) == 1 and np.nanmedian(_geometric_fwhm(params)) < _CENTRE_RULE_FWHM:
        params = _levenberg_marquardt(params, values, weight, grid, _GAUSS_LEGENDRE, scale,
                                      max_iter)
    flux, xc, yc, bg, a, b, c, t = params.T
    u = _U_MIN + t * t
    # W = [[a^2, ab], [ab, b^2 + c^2]]; the FWHM along an axis is 2 / sqrt(eigenvalue)
    wxx, wxy, wyy = a * a, a * b, b * b + c * c
    mean, root = 0.5 * (wxx + wyy), np.hypot(0.5 * (wxx - wyy), wxy)
    small, large = mean - root, mean + root
    with np.errstate(invalid="ignore", divide="ignore"):
        major, minor = 2.0 / np.sqrt(small), 2.0 / np.sqrt(large)
    # the major axis is the eigenvector of the smaller eigenvalue
    theta = 0.5 * np.arctan2(-2.0 * wxy, wyy - wxx)
    xc, yc = xc + ix0, yc + iy0
    inside = (np.abs(xc - x) < half) & (np.abs(yc - y) < half)
    ok = (np.isfinite(major) & np.isfinite(minor) & (small > 0) & (flux > 0) & inside
          & (major < 2 * half))
    return MoffatFits(flux=flux, x=xc, y=yc, background=bg, fwhm_major=major,
                      fwhm_minor=minor, theta=theta, beta=1.0 / u, ok=ok)


def measure_psf(data, x, y, fwhm_guess, mask=None, candidates=None, max_stars=10):
    """The frame's PSF: median elliptical Moffat of its brightest clean, isolated stars.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Background-subtracted image.
    x, y : ndarray, shape (N,)
        Positions of all known sources (px), used to judge isolation.
    fwhm_guess : float
        Rough FWHM (px).
    mask : ndarray of bool, shape (ny, nx), optional
        Unusable pixels (saturated, bad, cosmic rays): a star with one within 2 guessed FWHM
        of its centre is not used, and masked pixels further out are left out of its fit.
        Stars within 2 guessed FWHM of the image edge are not used either.
    candidates : ndarray of int, optional
        Indices of the stars that may be used, brightest first (default: all, in order).
    max_stars : int
        The first ``max_stars`` usable candidates are fitted.

    Returns
    -------
    profile : MoffatProfile or None
        The median over the stars of the geometric-mean FWHM, of the ellipticity vector
        ``e (cos 2 theta, sin 2 theta)`` and of ``1 / beta``; None when no star could be fitted.
    n_stars : int
        Stars behind the median.

    Notes
    -----
    Candidates with another source within 3 guessed FWHM are skipped while at least three
    isolated ones remain; in a crowded field the median over all candidates copes with the
    few that a neighbour spoils.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    order = np.arange(len(x)) if candidates is None else np.asarray(candidates, dtype=np.intp)
    if not fwhm_guess > 0:
        return None, 0
    margin = _CLEAN_RADIUS * fwhm_guess
    ny, nx = np.shape(data)
    order = order[(x[order] >= margin) & (x[order] <= nx - 1 - margin)
                  & (y[order] >= margin) & (y[order] <= ny - 1 - margin)]
    if not len(order):
        return None, 0
    if mask is not None and np.any(mask):
        half = math.ceil(_CLEAN_RADIUS * fwhm_guess)
        flagged, ix0, iy0 = cutouts(mask.astype(np.float32), x[order], y[order], half,
                                    fill_value=1.0)
        offsets = np.arange(2 * half + 1)
        dx = offsets[None, None, :] + ix0[:, None, None] - x[order][:, None, None]
        dy = offsets[None, :, None] + iy0[:, None, None] - y[order][:, None, None]
        near = dx * dx + dy * dy <= (_CLEAN_RADIUS * fwhm_guess) ** 2
        order = order[~np.any((flagged != 0) & near, axis=(1, 2))]
    if len(x) > 1 and len(order):
        tree = cKDTree(np.column_stack([x, y])[np.isfinite(x) & np.isfinite(y)])
        crowded = np.array([len(found) > 1 for found in tree.query_ball_point(
            np.column_stack([x[order], y[order]]), _ISOLATION * fwhm_guess)])
        if np.count_nonzero(~crowded) >= 3:
            order = order[~crowded]
    order = order[:max_stars]
    if not len(order):
        return None, 0
    fits = fit_moffat(data, x[order], y[order], fwhm_guess, mask=mask)
    ok = fits.ok
    if not ok.any():
        return None, 0
    fwhm = np.sqrt(fits.fwhm_major[ok] * fits.fwhm_minor[ok])
    ell = 1.0 - fits.fwhm_minor[ok] / fits.fwhm_major[ok]
    e1 = float(np.median(ell * np.cos(2 * fits.theta[ok])))
    e2 = float(np.median(ell * np.sin(2 * fits.theta[ok])))
    beta = 1.0 / float(np.median(1.0 / fits.beta[ok]))
    profile = MoffatProfile(float(np.median(fwhm)), beta, min(math.hypot(e1, e2), 0.95),
                            0.5 * math.atan2(e2, e1))
    return profile, int(np.count_nonzero(ok))
