"""PSF models of a frame and PSF photometry.

A frame's PSF is measured on its guide stars (bright, clean catalogue stars) and represented by a
*profile*: an object whose ``render(dx, dy)`` gives the fraction of a unit flux that falls in
the pixel whose centre lies at offset ``(dx, dy)`` from the source (pixel-integrated, as a CCD
records it). Three profiles are provided: :class:`MoffatProfile` (elliptical, fitted to the
brightest clean stars by :func:`~opticam_like.photometry.moffat.measure_psf`),
:class:`GaussianProfile` (elliptical, with the fitted Moffat's half-maximum ellipse) and
:class:`EPSFProfile` (an effective PSF built by photutils' ``EPSFBuilder``).

:class:`PSFPhotometer` measures fluxes with a profile, either by fitting it with photutils'
``PSFPhotometry`` (close neighbours fitted jointly) or by the PSF-weighted sum. The helpers
:func:`source_stamps` and :func:`weighted_flux` are shared with
:class:`~opticam_like.photometry.optimal.OptimalPhotometer`; every flux error comes from the CCD
equation of :mod:`opticam_like.photometry.noise` propagated through the estimator's weights.

References
----------
Anderson, J. & King, I. R. 2000, PASP 112, 1360 (effective PSF).
Moffat, A. F. J. 1969, A&A 3, 455.
Naylor, T. 1998, MNRAS 296, 339 (profile-weighted photometry).
Stetson, P. B. 1987, PASP 99, 191 (PSF fitting, grouping of neighbours).
"""

import itertools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from astropy.modeling import Fittable2DModel, Parameter
from astropy.table import Table
from scipy.special import erf

from ..background.local import AnnulusBackground
from ..detection import FWHM_PER_SIGMA, covariance_to_ellipse
from ..flags import PhotFlag
from .blends import blend_flags
from .kernels import circular_aperture_sums, cutouts
from .moffat import MoffatProfile, measure_psf, pixel_integral
from .noise import add_scintillation, level_variance

__all__ = ["PSF_MODELS", "GaussianProfile", "MoffatProfile", "EPSFProfile", "ProfilePRF",
           "SourceStamps", "source_stamps", "weighted_flux", "usable_guides",
           "aperture_correction", "frame_shape", "frame_profile", "PSFPhotometer"]

PSF_MODELS = ("gaussian", "moffat", "epsf")
"""Profiles :func:`frame_profile` can build."""

_MODEL_SERIAL = itertools.count()
"""Serial numbers of the per-call model classes (see ``PSFPhotometer._fit``)."""

_EPSF_RADIUS = 3.0
"""Half-size of the ePSF star cut-outs, in frame FWHM: the ePSF holds the flux of this box."""
_EPSF_MIN_STARS = 3
"""Fewer usable guide stars than this: the ePSF falls back to the Gaussian."""
_EPSF_OVERSAMPLING = 1
"""ePSF oversampling. ~10 guide stars leave a quarter of a 2x grid empty, and photutils fills
the holes by scattered-data interpolation at ~0.5 s an iteration (2.3 s a frame against 0.1 s)."""
_EPSF_MAXITERS = 5
"""ePSF build iterations (~20 ms each with 10 stars at oversampling 1)."""


@dataclass(frozen=True)
class GaussianProfile:
    """Pixel-integrated elliptical Gaussian of unit flux.

    Parameters
    ----------
    cxx, cyy, cxy : float
        Covariance of the Gaussian (px^2), e.g. second moments corrected for pixelisation.

    Raises
    ------
    ValueError
        The covariance is not positive definite.

    Notes
    -----
    With ``cxy == 0`` the integral over a pixel is the product of differences of error
    functions (exact, as photutils' ``CircularGaussianPRF``). Otherwise, when the minor-axis
    sigma is at least 1 px, the Edgeworth expansion of the Gaussian convolved with the pixel
    (covariance ``C + I/12``, fourth cumulants ``-1/120`` along x and y; error < 1e-4 of the
    peak pixel, 3e-5 at FWHM 3 px) costs one exponential per pixel; a sharper Gaussian is
    integrated with a 3 x 3 Gauss-Legendre rule.
    """

    cxx: float
    cyy: float
    cxy: float = 0.0

    def __post_init__(self):
        if not (self.cxx > 0 and self.cyy > 0 and self.cxx * self.cyy > self.cxy**2):
            raise ValueError(f"the covariance ({self.cxx}, {self.cyy}, {self.cxy}) is not "
                             "positive definite")

    @classmethod
    def from_fwhm(cls, fwhm):
        """Circular Gaussian of the given FWHM (px)."""
        if not fwhm > 0:
            raise ValueError(f"fwhm must be positive, got {fwhm}")
        variance = (fwhm / FWHM_PER_SIGMA) ** 2
        return cls(variance, variance, 0.0)

    @classmethod
    def from_shape(cls, shape):
        """Gaussian with the half-maximum ellipse of a fitted PSF (e.g. :class:`MoffatProfile`).

        Parameters
        ----------
        shape : MoffatProfile
            Anything with ``fwhm_major``, ``fwhm_minor`` and ``theta``.
        """
        major = (shape.fwhm_major / FWHM_PER_SIGMA) ** 2
        minor = (shape.fwhm_minor / FWHM_PER_SIGMA) ** 2
        cos, sin = math.cos(shape.theta), math.sin(shape.theta)
        return cls(major * cos * cos + minor * sin * sin, major * sin * sin + minor * cos * cos,
                   (major - minor) * sin * cos)

    @property
    def fwhm(self):
        """Geometric-mean FWHM (px)."""
        return FWHM_PER_SIGMA * (self.cxx * self.cyy - self.cxy**2) ** 0.25

    @property
    def ellipticity(self):
        """``1 - b/a`` of the covariance ellipse."""
        a, b, _ = covariance_to_ellipse(self.cxx, self.cyy, self.cxy)
        return 1.0 - b / a

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
        if self.cxy == 0:
            scale_x = math.sqrt(2.0 * self.cxx)
            scale_y = math.sqrt(2.0 * self.cyy)
            fx = 0.5 * (erf((dx + 0.5) / scale_x) - erf((dx - 0.5) / scale_x))
            fy = 0.5 * (erf((dy + 0.5) / scale_y) - erf((dy - 0.5) / scale_y))
            return fx * fy
        a, b, _ = covariance_to_ellipse(self.cxx, self.cyy, self.cxy)
        if b < 1.0:
            det = self.cxx * self.cyy - self.cxy**2
            ixx, iyy, ixy = self.cyy / det, self.cxx / det, -self.cxy / det
            norm = 1.0 / (2.0 * math.pi * math.sqrt(det))
            return pixel_integral(
                lambda u, v: norm * np.exp(-0.5 * (ixx * u * u + 2.0 * ixy * u * v
                                                   + iyy * v * v)), dx, dy)
        cxx, cyy = self.cxx + 1.0 / 12.0, self.cyy + 1.0 / 12.0
        det = cxx * cyy - self.cxy**2
        sxx, syy, sxy = cyy / det, cxx / det, -self.cxy / det
        ux = sxx * dx + sxy * dy
        uy = sxy * dx + syy * dy
        hermite = (ux**2 * (ux**2 - 6.0 * sxx) + 3.0 * sxx**2
                   + uy**2 * (uy**2 - 6.0 * syy) + 3.0 * syy**2)
        return (np.exp(-0.5 * (dx * ux + dy * uy)) / (2.0 * math.pi * math.sqrt(det))
                * (1.0 - hermite / 2880.0))


@dataclass(frozen=True, eq=False)
class EPSFProfile:
    """An effective PSF (Anderson & King 2000) built from the guide stars of a frame.

    Parameters
    ----------
    psf : photutils.psf.ImagePSF
        The ePSF from photutils' ``EPSFBuilder``, normalised to unit flux over its grid.
    fwhm : float
        FWHM of the frame (px), for the metadata.

    Notes
    -----
    An ePSF already is pixel-integrated: its value at an offset is the fraction of the flux in
    a pixel centred there. It covers the box of the star cut-outs (``+-3`` FWHM), so fluxes
    measured with it are the fluxes within that box.
    """

    psf: object
    fwhm: float

    @property
    def ellipticity(self):
        """NaN: not measured for an ePSF."""
        return math.nan

    def render(self, dx, dy):
        """Fraction of the flux in each pixel (see :meth:`GaussianProfile.render`); 0 off
        the ePSF grid."""
        dx, dy = np.broadcast_arrays(np.asarray(dx, dtype=float), np.asarray(dy, dtype=float))
        return self.psf.evaluate(dx, dy, 1.0, 0.0, 0.0)


class ProfilePRF(Fittable2DModel):
    """Astropy model of a profile for photutils' ``PSFPhotometry``: ``flux * render(x - x_0,
    y - y_0)``.

    Parameters
    ----------
    profile : GaussianProfile, MoffatProfile or EPSFProfile
        Any object with ``render(dx, dy)``.
    flux, x_0, y_0 : float
        Initial parameters.
    """

    flux = Parameter(default=1.0)
    x_0 = Parameter(default=0.0)
    y_0 = Parameter(default=0.0)

    def __init__(self, profile, flux=flux.default, x_0=x_0.default, y_0=y_0.default,
                 **kwargs):
        self.profile = profile
        super().__init__(flux=flux, x_0=x_0, y_0=y_0, **kwargs)

    def evaluate(self, x, y, flux, x_0, y_0):
        """Model values at ``(x, y)``."""
        return flux * self.profile.render(x - x_0, y - y_0)


# --------------------------------------------------------------------------- shared helpers


@dataclass(frozen=True)
class SourceStamps:
    """Square cut-outs around N sources with the pixels that may be used.

    Attributes
    ----------
    values : ndarray, shape (N, k, k), float64
        Image values; 0 where ``good`` is False.
    good : ndarray of bool, shape (N, k, k)
        Pixel inside the image, inside the region (disc or box), not flagged and finite.
    dx : ndarray, shape (N, 1, k)
        Offset of each column's pixel centres from the source, ``column - x`` (px).
    dy : ndarray, shape (N, k, 1)
        Offset of each row's pixel centres, ``row - y`` (px).
    ix0, iy0 : ndarray of intp, shape (N,)
        Image indices of the cut-outs' pixel ``[0, 0]``.
    flags : ndarray of int32, shape (N,)
        Bitwise OR of the pixel flags in the region, and ``EDGE`` where it leaves the image.
    """

    values: np.ndarray
    good: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    ix0: np.ndarray
    iy0: np.ndarray
    flags: np.ndarray


def source_stamps(data, pixel_flags, x, y, half, radius=None):
    """Cut-outs of ``2 half + 1`` pixels around N sources (no full-frame array per source).

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Image (e-).
    pixel_flags : ndarray of int, shape (ny, nx)
        Per-pixel flags (0 = good).
    x, y : ndarray, shape (N,)
        Positions (0-based px).
    half : int
        Half-size of the cut-outs (px).
    radius : float, optional
        Region used: the pixels whose centres lie within ``radius`` of the source; the whole
        box when None.

    Returns
    -------
    SourceStamps
    """
    values, ix0, iy0 = cutouts(data, x, y, half)
    offsets = np.arange(2 * half + 1)
    cols = ix0[:, None] + offsets
    rows = iy0[:, None] + offsets
    ny, nx = data.shape
    col_in = (cols >= 0) & (cols < nx)
    row_in = (rows >= 0) & (rows < ny)
    inside = row_in[:, :, None] & col_in[:, None, :]
    flags = pixel_flags[np.clip(rows, 0, ny - 1)[:, :, None], np.clip(cols, 0, nx - 1)[:, None, :]]
    dx = (cols - np.asarray(x, dtype=float)[:, None])[:, None, :]
    dy = (rows - np.asarray(y, dtype=float)[:, None])[:, :, None]
    if radius is None:
        region = np.ones_like(inside)
    else:
        region = dx * dx + dy * dy <= radius * radius
    used = region & inside
    flags = np.where(used, flags, 0)
    good = used & (flags == 0) & np.isfinite(values)
    out = np.bitwise_or.reduce(flags.reshape(len(flags), -1), axis=1).astype(np.int32)
    edge = np.any(region & ~inside, axis=(1, 2))
    out |= np.where(edge, PhotFlag.EDGE, 0).astype(np.int32)
    return SourceStamps(values=np.where(good, values, 0.0).astype(np.float64), good=good,
                        dx=dx, dy=dy, ix0=ix0, iy0=iy0, flags=out)


def _weighted_variance(weights, profile, flux, sigma2, level_var):
    """``sum(W^2 V) + (sum W)^2 level_var`` with ``V = sigma2 + F P`` (arrays (N, k, k))."""
    pixel_var = (np.asarray(sigma2, dtype=float)[:, None, None]
                 + np.clip(np.nan_to_num(flux), 0, None)[:, None, None] * profile)
    return (np.sum(weights * weights * pixel_var, axis=(1, 2))
            + np.sum(weights, axis=(1, 2)) ** 2 * level_var)


def weighted_flux(stamps, profile, level, sigma2, n_sky, median=True, optimal=True):
    """Profile-weighted fluxes and their CCD-equation variances.

    With ``P`` the profile on the usable pixels, ``D`` the data minus the local level and
    ``V = sigma2 + F P`` the variance of a pixel (sky, dark, read noise and the source's own
    photons), the flux is ``F = sum(W D)`` with

    * ``optimal=True`` (Naylor 1998): ``W = (P / V) / sum(P^2 / V)``, ``V`` evaluated with a
      first estimate of ``F`` (the ``optimal=False`` one);
    * ``optimal=False`` (PSF-weighted sum, the least-squares amplitude of ``P``):
      ``W = P / sum(P^2)``.

    Both give ``F`` for data ``F P``: masked pixels are dropped from every sum, so they change
    the noise and not the scale. The variance is
    ``sum(W^2 V) + (sum W)^2 sigma2 k / n_sky``, the second term being the error of the local
    level (``k = pi/2`` for a median); for a top-hat profile it is exactly
    :func:`~opticam_like.photometry.noise.flux_variance`.

    Parameters
    ----------
    stamps : SourceStamps
        Cut-outs (N sources, k x k pixels).
    profile : ndarray, shape (N, k, k)
        Profile of each source on its cut-out (fraction of the flux per pixel).
    level : ndarray, shape (N,)
        Local residual sky level (e-/px), subtracted from the data.
    sigma2 : ndarray, shape (N,)
        Variance of one background pixel (e-^2), from
        :func:`~opticam_like.photometry.noise.pixel_variance`.
    n_sky : ndarray, shape (N,)
        Pixels behind the level.
    median : bool
        The level is a median.
    optimal : bool
        Naylor's variance weights (True) or plain profile weights (False).

    Returns
    -------
    flux, variance : ndarray, shape (N,)
        e- and e-^2; NaN for a source without a usable pixel.
    area : ndarray, shape (N,)
        ``sum(W^2)``: the effective number of sky pixels (``1 / sum(P^2)`` for profile weights).
    """
    good = stamps.good
    p = np.where(good, profile, 0.0)
    data = stamps.values - level[:, None, None] * good
    s2 = np.asarray(sigma2, dtype=float)[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        weights = p / np.sum(p * p, axis=(1, 2))[:, None, None]
        flux = np.sum(weights * data, axis=(1, 2))
        if optimal:
            ratio = p / (s2 + np.clip(flux, 0, None)[:, None, None] * p)
            weights = ratio / np.sum(ratio * p, axis=(1, 2))[:, None, None]
            flux = np.sum(weights * data, axis=(1, 2))
        variance = _weighted_variance(weights, p, flux, sigma2,
                                      level_variance(sigma2, n_sky, median))
    return flux, variance, np.sum(weights * weights, axis=(1, 2))


def aperture_correction(frame, flux, level, flags, radius):
    """Scale from profile fluxes to aperture fluxes, measured on the frame's guide stars.

    The median over the clean guide stars of ``aperture flux / flux``, the aperture flux being
    the exact circular sum within ``radius`` minus the local level (Naylor 1998's
    normalisation of profile-weighted fluxes; an aperture correction).

    Parameters
    ----------
    frame : MeasureInput
    flux : ndarray, shape (N,)
        Profile fluxes (e-).
    level : ndarray, shape (N,)
        Local residual sky level (e-/px).
    flags : ndarray of int, shape (N,)
        Flags of the sources so far; flagged guide stars are not used.
    radius : float
        Aperture radius (px).

    Returns
    -------
    correction : float
        The median ratio; 1.0 without a usable guide star.
    error : float
        ``1.2533 std / sqrt(n)`` (the error of a median); NaN with fewer than 2 stars.
    n_stars : int
        Guide stars used.
    """
    guide = usable_guides(frame, flags)
    guide = guide[flux[guide] > 0]
    if not len(guide):
        return 1.0, math.nan, 0
    sums = circular_aperture_sums(frame.data, frame.x[guide], frame.y[guide], radius,
                                  mask=frame.mask, pixel_flags=frame.pixel_flags)
    aperture = sums.sum - level[guide] * sums.area
    ok = (sums.flags == 0) & ~sums.edge & (aperture > 0)
    if not np.any(ok):
        return 1.0, math.nan, 0
    ratio = aperture[ok] / flux[guide][ok]
    n = len(ratio)
    error = 1.2533 * float(np.std(ratio, ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return float(np.median(ratio)), error, n


# --------------------------------------------------------------------------- frame PSF


def usable_guides(frame, flags=None):
    """Indices of the guide stars of a frame that may be used.

    Parameters
    ----------
    frame : MeasureInput
    flags : ndarray of int, shape (N,), optional
        Flags of every source so far (e.g. ``BAD_BACKGROUND``); flagged guides are dropped.

    Returns
    -------
    ndarray of intp
        Sorted unique indices of ``frame.guide`` within range, without position flags or
        ``flags`` (empty when the frame has no guide stars).
    """
    if frame.guide is None:
        return np.zeros(0, dtype=np.intp)
    guide = np.unique(np.asarray(frame.guide, dtype=np.intp))
    guide = guide[(guide >= 0) & (guide < frame.n_sources)]
    if frame.position_flags is not None:
        guide = guide[np.asarray(frame.position_flags)[guide] == 0]
    if flags is not None:
        guide = guide[np.asarray(flags)[guide] == 0]
    return guide


def _guide_stamps(frame, level, flags, half):
    """Level-subtracted cut-outs of the clean guide stars (no flagged pixel, not at the edge).

    Returns the stamps (n, k, k), the positions within them (n,), (n,) and their origins."""
    guide = usable_guides(frame, flags)
    if not len(guide):
        empty = np.zeros(0)
        return np.zeros((0, 2 * half + 1, 2 * half + 1)), empty, empty, guide, guide
    stamps = source_stamps(frame.data, frame.pixel_flags, frame.x[guide], frame.y[guide], half)
    clean = (stamps.flags == 0) & np.all(stamps.good, axis=(1, 2))
    sel = guide[clean]
    values = stamps.values[clean] - level[sel, None, None]
    ix0, iy0 = stamps.ix0[clean], stamps.iy0[clean]
    return values, frame.x[sel] - ix0, frame.y[sel] - iy0, ix0, iy0


def _epsf(frame, level, flags):
    """ePSF from the guide stars (photutils EPSFBuilder), or None with fewer than 3 stars."""
    from photutils.psf import EPSFBuilder, EPSFStar, EPSFStars

    half = math.ceil(_EPSF_RADIUS * frame.fwhm)
    values, xs, ys, ix0, iy0 = _guide_stamps(frame, level, flags, half)
    if len(values) < _EPSF_MIN_STARS:
        return None, len(values)
    stars = EPSFStars([EPSFStar(v, cutout_center=(x, y), origin=(i, j))
                       for v, x, y, i, j in zip(values, xs, ys, ix0, iy0)])
    builder = EPSFBuilder(oversampling=_EPSF_OVERSAMPLING, maxiters=_EPSF_MAXITERS,
                          progress_bar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            psf = builder(stars).epsf
        except ValueError:
            return None, len(values)
    return EPSFProfile(psf, frame.fwhm), len(values)


def frame_shape(frame, flags=None):
    """The frame's fitted PSF: ``frame.psf`` when given, else fitted on its guide stars.

    Parameters
    ----------
    frame : MeasureInput
    flags : ndarray of int, shape (N,), optional
        Flags of every source so far; flagged guide stars are not used.

    Returns
    -------
    shape : MoffatProfile or None
        Elliptical Moffat (:func:`~opticam_like.photometry.moffat.measure_psf`); None when
        no guide star could be fitted.
    n_stars : int
        Stars behind it (-1 when it came with the frame).
    """
    if frame.psf is not None:
        return frame.psf, -1
    guide = usable_guides(frame, flags)
    if not len(guide) or not frame.fwhm > 0:
        return None, 0
    return measure_psf(frame.data, frame.x, frame.y, frame.fwhm, mask=frame.mask,
                       candidates=guide)


def frame_profile(frame, model="gaussian", beta=2.5, level=None, flags=None):
    """The PSF of a frame, measured on its guide stars.

    The shape comes from the elliptical Moffat fitted to the frame's brightest clean stars
    (``frame.psf`` from the photometry stage, or :func:`frame_shape` on the guide stars):

    * ``'gaussian'``: the elliptical Gaussian with the fitted half-maximum ellipse
      (:meth:`GaussianProfile.from_shape`): the core of the stars, whatever their wings.
    * ``'moffat'``: the fitted elliptical Moffat itself, with its fitted ``beta``.
    * ``'epsf'``: photutils' ``EPSFBuilder`` on the guide stars (cut-outs of +-3 FWHM,
      oversampling 1, 5 iterations). Its cubic-spline interpolation between pixels broadens
      it slightly (fluxes +0.8% at FWHM 3 px on Gaussian stars, the same for every star of
      the frame); an aperture correction (``correction_radius``) removes that scale.

    Without a fitted shape the Gaussian and the Moffat (index ``beta``) are round with the frame
    FWHM; an ePSF needs 3 clean guide stars and otherwise falls back to the Gaussian
    (``info['psf_fallback']``).

    Parameters
    ----------
    frame : MeasureInput
    model : {'gaussian', 'moffat', 'epsf'}
    beta : float
        Moffat index when the frame's PSF could not be fitted.
    level : ndarray, shape (N,), optional
        Local residual sky level of every source (e-/px), subtracted from the ePSF stars.
    flags : ndarray of int, shape (N,), optional
        Flags of every source so far; flagged guide stars are not used.

    Returns
    -------
    profile : GaussianProfile, MoffatProfile or EPSFProfile
    info : dict
        ``psf_model`` (the model used), ``psf_fwhm`` (px), ``psf_ellipticity``,
        ``psf_source`` (``'frame'`` for a shape measured by the stage, ``'guides'`` or
        ``'frame_fwhm'``), ``n_psf_stars``, ``psf_beta`` for the Moffat, and ``psf_fallback``
        when an ePSF could not be built.

    Raises
    ------
    ValueError
        Unknown model or a frame FWHM that is not positive.
    """
    if model not in PSF_MODELS:
        raise ValueError(f"model must be one of {PSF_MODELS}, not {model!r}")
    if not frame.fwhm > 0:
        raise ValueError(f"the frame FWHM must be positive, got {frame.fwhm}")
    level = np.zeros(frame.n_sources) if level is None else np.asarray(level, dtype=float)
    info = {}
    if model == "epsf":
        profile, n_stars = _epsf(frame, level, flags)
        if profile is not None:
            info.update(psf_model="epsf", psf_fwhm=frame.fwhm, psf_ellipticity=math.nan,
                        psf_source="guides", n_psf_stars=n_stars)
            return profile, info
        info["psf_fallback"] = (f"ePSF needs {_EPSF_MIN_STARS} clean guide stars, "
                                f"{n_stars} usable: Gaussian used")
        model = "gaussian"
    shape, n_stars = frame_shape(frame, flags)
    if shape is None:
        profile = (GaussianProfile.from_fwhm(frame.fwhm) if model == "gaussian"
                   else MoffatProfile(frame.fwhm, beta))
        source = "frame_fwhm"
    else:
        profile = GaussianProfile.from_shape(shape) if model == "gaussian" else shape
        source = "frame" if n_stars < 0 else "guides"
    info.update(psf_model=model, psf_fwhm=float(profile.fwhm),
                psf_ellipticity=float(profile.ellipticity), psf_source=source,
                n_psf_stars=max(n_stars, 0))
    if model == "moffat":
        info["psf_beta"] = float(profile.beta)
    return profile, info


# --------------------------------------------------------------------------- photometer


def _group_variances(groups, stamps, profile, flux, x_fit, y_fit, level_var, sigma2):
    """Flux variances of sources fitted jointly (linear least squares, uniform weights).

    photutils fits a group on the concatenated pixels of its members' fit boxes, so a pixel in
    two boxes enters twice. With ``A`` the members' profiles on those entries, the fluxes are
    ``R D`` with ``R = (A^T A)^-1 A^T``; summing the columns of ``R`` that belong to the same
    image pixel gives ``R_u``, and ``cov = R_u diag(V) R_u^T`` with ``V = sigma2 + sum_j F_j
    A_j`` per pixel, plus the error of each member's local level (subtracted from the entries
    of its box) propagated through the rows of ``R``.

    Returns
    -------
    dict of int to float
        Variance of each member (e-^2).
    """
    variance = {}
    for members in groups:
        rows, cols, owner = [], [], []
        for m in members:
            jj, ii = np.nonzero(stamps.good[m])
            rows.append(stamps.iy0[m] + jj)
            cols.append(stamps.ix0[m] + ii)
            owner.append(np.full(len(jj), m))
        rows, cols, owner = map(np.concatenate, (rows, cols, owner))
        design = np.stack([profile.render(cols - x_fit[m], rows - y_fit[m])
                           for m in members], axis=1)
        try:
            resolve = np.linalg.solve(design.T @ design, design.T)
        except np.linalg.LinAlgError:
            continue
        pixels, first, inverse = np.unique(rows * (cols.max() + 1) + cols, return_index=True,
                                           return_inverse=True)
        merged = np.stack([np.bincount(inverse, weights=r, minlength=len(pixels))
                           for r in resolve])
        fluxes = np.where(np.isfinite(flux[members]), np.clip(flux[members], 0, None), 0.0)
        pixel_var = sigma2[owner[first]] + design[first] @ fluxes
        cov = (merged * pixel_var) @ merged.T
        for j, m in enumerate(members):
            level_term = sum(np.sum(resolve[j, owner == o]) ** 2 * level_var[o] for o in members)
            variance[m] = cov[j, j] + level_term
    return variance


@dataclass(frozen=True)
class PSFPhotometer:
    """PSF photometry: a profile of the frame's PSF fitted to, or weighting, every source.

    Parameters
    ----------
    model : {'gaussian', 'moffat', 'epsf'}
        The PSF profile, measured on the frame's guide stars by :func:`frame_profile`.
        ``'moffat'`` is the fitted elliptical Moffat (its ``beta`` fitted too; a Gaussian star
        fits a large ``beta``), the model for close pairs: a Gaussian core leaves the wings of
        the brighter star to its neighbour (on Moffat stars, beta 2.5, a companion 1.5 FWHM
        away and 2 mag fainter is then fitted 0.56 px off and takes up 3% of the target's
        variation, against < 0.01 px and noise with ``'moffat'``; ``tests/test_blends.py``).
    method : {'fit', 'weighted'}
        ``'fit'``: photutils ``PSFPhotometry`` fits the profile's amplitude (and, with
        ``max_shift``, the position) to the pixels of a ``fit_shape`` box around each source;
        sources closer than ``grouping_radius`` FWHM are fitted jointly (photutils
        ``SourceGrouper``). ``'weighted'``: the PSF-weighted sum
        ``F = sum(p_i D_i) / sum(p_i^2)`` over the same box (the classic lab estimator; each
        source alone).
    fit_shape : int, optional
        Side of the fit box (odd, px); default ``2 ceil(1.5 FWHM) + 1``.
    grouping_radius : float
        Sources closer than this many frame FWHM are fitted together (``'fit'`` only; 0
        fits every source alone). The default 3 FWHM is the box half-size plus 1.5 FWHM, so a
        neighbour outside a group puts < 1e-3 of its flux into the box (Gaussian).
    max_shift : float, optional
        None: forced photometry, the positions stay at ``frame.x, frame.y`` (they come from the
        alignment of the whole frame, more precise than a fit of a faint star). A value lets
        the fit move each position by up to ``max_shift`` px (photutils ``xy_bounds``).
    beta : float
        Moffat index (``model='moffat'``) when the frame's PSF could not be fitted, > 1.
    correction_radius : float, optional
        When given, the fluxes are scaled to the aperture flux within this many frame FWHM
        (the median ratio on the guide stars, :func:`aperture_correction`), as
        :class:`~opticam_like.photometry.optimal.OptimalPhotometer` does; useful with an ePSF.
        None keeps the profile's flux.
    local_background : AnnulusBackground or None
        Local sky estimator; None uses the global background alone.
    name : str, optional
        Label of the output table (default ``psf_{model}_{method}``).

    Raises
    ------
    ValueError
        An unknown model or method, or a parameter out of range.

    Notes
    -----
    The flux is that of the profile: the total flux for the Gaussian and the Moffat (their
    analytic integral over the plane), the flux within +-3 FWHM for an ePSF; or the aperture
    flux with ``correction_radius``. A local annulus close to a bright star holds the star's
    own wings (3-5 FWHM: ~10 e-/px for 3e5 e- in a Moffat of beta 2.5 and FWHM 3 px), which
    lowers its flux by ~1.5%; the bias is a fixed fraction of the flux for every star of a
    frame, so it cancels in differential photometry. The flux error is
    the CCD equation (:func:`~opticam_like.photometry.noise.pixel_variance`) propagated through
    the estimator: ``sum(p^2 V) / (sum p^2)^2`` with ``V = sigma^2 + F p`` (a least-squares fit
    with uniform weights is this linear estimator), plus the local-level error; for a group, the
    full least-squares covariance of the group (:func:`_group_variances`). photutils' own
    ``flux_err`` (scaled by the residuals) is kept in ``meta['photutils_flux_err']`` and its
    flags in ``meta['photutils_flags']``. With catalogue fluxes (``MeasureInput.catalog_flux``)
    a source whose fit box (the disc inscribed in it, PSF-weighted) is predicted to take more than 1% of its flux from neighbours that
    are *not* fitted with it (further than ``grouping_radius`` FWHM for ``'fit'``; any for
    ``'weighted'``) is flagged ``BLENDED`` (:func:`~opticam_like.photometry.blends.blend_flags`). ``area`` is the PSF's effective area
    ``1 / sum(p^2)``. photutils extracts a ``fit_shape`` cut-out per source, never a full-frame
    array per source.
    """

    model: str = "gaussian"
    method: str = "fit"
    fit_shape: int | None = None
    grouping_radius: float = 3.0
    max_shift: float | None = None
    beta: float = 2.5
    correction_radius: float | None = None
    local_background: AnnulusBackground | None = field(default_factory=AnnulusBackground)
    name: str | None = None

    def __post_init__(self):
        if self.model not in PSF_MODELS:
            raise ValueError(f"model must be one of {PSF_MODELS}, not {self.model!r}")
        if self.method not in ("fit", "weighted"):
            raise ValueError(f"method must be 'fit' or 'weighted', not {self.method!r}")
        if self.fit_shape is not None and (int(self.fit_shape) != self.fit_shape
                                           or self.fit_shape < 3 or self.fit_shape % 2 == 0):
            raise ValueError(f"fit_shape must be an odd integer >= 3, got {self.fit_shape}")
        if not self.grouping_radius >= 0:
            raise ValueError(f"grouping_radius must be >= 0, got {self.grouping_radius}")
        if self.max_shift is not None and not self.max_shift > 0:
            raise ValueError(f"max_shift must be positive or None, got {self.max_shift}")
        if not self.beta > 1:
            raise ValueError(f"beta must be > 1, got {self.beta}")
        if self.correction_radius is not None and not self.correction_radius > 0:
            raise ValueError(f"correction_radius must be positive or None, got "
                             f"{self.correction_radius}")
        if self.name is None:
            object.__setattr__(self, "name", f"psf_{self.model}_{self.method}")

    def half_size(self, fwhm):
        """Half-size of the fit box (px) for a frame of the given FWHM."""
        if self.fit_shape is not None:
            return int(self.fit_shape) // 2
        return max(1, math.ceil(1.5 * fwhm))

    def params(self):
        """Parameters for the tables' metadata and the echoed configuration."""
        return {"type": "psf", "name": self.name, "model": self.model, "method": self.method,
                "fit_shape": self.fit_shape, "grouping_radius": self.grouping_radius,
                "max_shift": self.max_shift, "beta": self.beta,
                "correction_radius": self.correction_radius,
                "local_background": (None if self.local_background is None
                                     else self.local_background.params())}

    def measure(self, frame):
        """Measure every source.

        Parameters
        ----------
        frame : MeasureInput

        Returns
        -------
        dict of ndarray, each shape (N,)
            ``flux``, ``flux_err`` (e-), ``background`` (sky per pixel, e-), ``area`` (the
            PSF's effective area, px), ``flags`` (int32), and ``meta``: ``noise_method``,
            the :func:`frame_profile` information, ``fit_shape``, the aperture correction
            (with ``correction_radius``) and, for ``'fit'``, ``n_groups`` (joint fits) and the
            arrays (N,) ``x_fit``, ``y_fit``, ``photutils_flux_err``, ``photutils_flags``.

        Raises
        ------
        ValueError
            The frame FWHM is not positive.
        """
        level, n_sky, median, flags, sigma2, method = frame.local_sky(self.local_background)
        flags = flags.copy()
        profile, info = frame_profile(frame, self.model, self.beta, level, flags)
        half = self.half_size(frame.fwhm)
        meta = {"noise_method": method, "fit_shape": 2 * half + 1, **info}
        n = frame.n_sources
        if n == 0:
            empty = np.zeros(0)
            return {"flux": empty, "flux_err": empty, "background": empty, "area": empty,
                    "flags": np.zeros(0, dtype=np.int32), "meta": meta}
        stamps = source_stamps(frame.data, frame.pixel_flags, frame.x, frame.y, half)
        p = np.where(stamps.good, profile.render(stamps.dx, stamps.dy), 0.0)
        flux, variance, area = weighted_flux(stamps, p, level, sigma2, n_sky, median,
                                             optimal=False)
        if self.method == "fit":
            flux, variance, fit_meta = self._fit(frame, profile, stamps, p, level, flux,
                                                 sigma2, level_variance(sigma2, n_sky, median))
            meta.update(fit_meta)
        flags |= stamps.flags
        joint = self.method == "fit" and self.grouping_radius > 0
        flags |= blend_flags(frame, profile, half, weighted=True,
                             exclude=self.grouping_radius * frame.fwhm if joint else 0.0)
        if frame.position_flags is not None:
            flags |= frame.position_flags
        if self.correction_radius is not None:
            correction, error, n_used = aperture_correction(
                frame, flux, level, flags, self.correction_radius * frame.fwhm)
            meta.update(aperture_correction=correction, aperture_correction_err=error,
                        n_correction_stars=n_used)
            flux = correction * flux
            variance, area = correction**2 * variance, correction**2 * area
        variance, meta["noise_method"] = add_scintillation(flux, variance, frame.scintillation,
                                                           method)
        flags |= np.where(~(flux > 0), PhotFlag.NON_POSITIVE, 0).astype(np.int32)
        return {"flux": flux, "flux_err": np.sqrt(variance), "background": frame.sky + level,
                "area": area, "flags": flags, "meta": meta}

    def _fit(self, frame, profile, stamps, p, level, flux_init, sigma2, level_var):
        """photutils PSFPhotometry with the profile; fluxes, variances and metadata.

        ``p`` is the profile on the stamps at the catalogue positions, ``level_var`` the
        variance of each local level.
        """
        from photutils.psf import PSFPhotometry, SourceGrouper

        # photutils 3.0 caches the class of a group's model by (group size, model class name),
        # with the fixed flags and the base model (here: the profile) of its first use; a class
        # per call keeps every frame's own profile
        model_class = type(f"ProfilePRF{next(_MODEL_SERIAL)}", (ProfilePRF,),
                           {"__module__": __name__})
        model = model_class(profile)
        if self.max_shift is None:
            model.x_0.fixed = True
            model.y_0.fixed = True
        n = frame.n_sources
        grouper = None
        if self.grouping_radius > 0 and n > 1:
            grouper = SourceGrouper(min_separation=self.grouping_radius * frame.fwhm)
        photometry = PSFPhotometry(model, stamps.good.shape[1], grouper=grouper,
                                   xy_bounds=self.max_shift)
        init = Table({"id": np.arange(1, n + 1), "x_init": frame.x, "y_init": frame.y,
                      "flux_init": flux_init, "local_bkg": level})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = photometry(frame.data, mask=frame.mask, init_params=init)
        result.sort("id")
        flux = np.asarray(result["flux_fit"], dtype=float)
        if self.max_shift is None:
            # photutils 3.0 reports x_fit = y_fit = 0 for the fixed positions of a group
            x_fit, y_fit = frame.x.copy(), frame.y.copy()
        else:
            x_fit = np.asarray(result["x_fit"], dtype=float)
            y_fit = np.asarray(result["y_fit"], dtype=float)
            x_fit = np.where(np.isfinite(x_fit), x_fit, frame.x)
            y_fit = np.where(np.isfinite(y_fit), y_fit, frame.y)
            p = np.where(stamps.good, profile.render(stamps.dx - (x_fit - frame.x)[:, None, None],
                                                     stamps.dy - (y_fit - frame.y)[:, None, None]),
                         0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            weights = p / np.sum(p * p, axis=(1, 2))[:, None, None]
            variance = _weighted_variance(weights, p, flux, sigma2, level_var)
        group_id = np.asarray(result["group_id"])
        ids, counts = np.unique(group_id, return_counts=True)
        groups = [np.flatnonzero(group_id == g) for g in ids[counts > 1]]
        for m, value in _group_variances(groups, stamps, profile, flux, x_fit, y_fit,
                                         level_var, sigma2).items():
            variance[m] = value
        variance = np.where(np.isfinite(flux), variance, np.nan)
        meta = {"x_fit": x_fit, "y_fit": y_fit,
                "photutils_flux_err": np.asarray(result["flux_err"], dtype=float),
                "photutils_flags": np.asarray(result["flags"], dtype=np.int32),
                "n_groups": len(groups)}
        return flux, variance, meta
