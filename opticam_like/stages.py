"""Per-frame work of each pass of the Reducer.

Each function here is a pure function of a small frame description (:class:`FrameItem`: a path
and a few numbers) and a small frozen context, so the same code runs serially, on a process
pool or on a Dask cluster (:mod:`opticam_like.parallel`). A frame is read and calibrated once
per pass, and its global background is computed once and shared by every photometer of the
pass. Results are small rows; the parent process writes the tables.
"""

from dataclasses import dataclass
import inspect
import math
import warnings

import numpy as np

from .alignment import AlignmentError, Transform, find_transform
from .calibration import calibrate
from .detection import recentre
from .flags import PhotFlag
from .frames import FrameError, read_frame
from .photometry.cosmic_rays import star_cosmic_rays
from .photometry.moffat import measure_psf
from .photometry.noise import frame_airmass, scintillation_sigma
from .photometry.photometers import MeasureInput
from .timing import get_site
from .trails import find_trails, trail_mask

__all__ = ["FrameItem", "PassContext", "CatalogRow", "PhotometryRow", "apply_background",
           "prepare_frame", "detect_frame", "catalog_frame", "photometry_frame",
           "frame_fwhm", "stack_frame", "frame_scintillation", "stacking_transform"]


@dataclass(frozen=True)
class FrameItem:
    """What a worker is told about one frame.

    Attributes
    ----------
    path : str
        The frame's file.
    info : FrameInfo
        The frame's header as parsed by the scan (not parsed again).
    index : int
        Position of the frame in its filter's time-ordered list.
    matrix : tuple of float, optional
        Reference -> frame affine matrix (9 floats, row-major), for the photometry pass.
    fwhm : float
        FWHM measured in the catalogue pass (pixels; NaN if unknown).
    position_flags : int
        Flags every source of the frame inherits (e.g. ``NOT_ALIGNED``).
    cosmic_rays : ndarray of int, optional
        Flat indices of the pixels L.A.Cosmic flagged in the catalogue pass (not searched
        again).
    background : object, optional
        The frame's global background from the catalogue pass, when the estimator's result
        can travel in compact form (``compact()``, as :class:`MeshBackground`): the
        photometry pass reuses it instead of computing it again from the same calibrated
        pixels.
    trails : tuple of tuple
        Trails found in the catalogue pass (:meth:`opticam_like.trails.Trail.as_tuple`); their
        pixels are flagged ``TRAIL`` in the photometry pass.
    """

    path: str
    info: object
    index: int
    matrix: tuple | None = None
    fwhm: float = math.nan
    position_flags: int = 0
    cosmic_rays: np.ndarray | None = None
    background: object = None
    trails: tuple = ()


@dataclass(frozen=True)
class PassContext:
    """What every frame of a pass shares (small and picklable).

    Attributes
    ----------
    profile : InstrumentProfile
    calibration : CalibrationSet or None
    remove_cosmic_rays : bool
    background : callable
        Global background estimator (see the contract in ``docs/DESIGN.md``).
    finder : callable
        Source finder.
    reference_xy : ndarray, shape (N, 2), optional
        Star positions in the reference frame, brightest first (catalogue pass).
    reference_shape : tuple of int, optional
        Shape of the reference grid (catalogue pass).
    alignment : str
        ``find_transform`` method.
    catalog_xy : ndarray, shape (M, 2), optional
        Catalogue positions in the reference frame (photometry pass).
    guide : ndarray of int, optional
        Indices of the catalogue stars used to refine positions and measure the frame's PSF
        (elliptical Moffat, :func:`~opticam_like.photometry.moffat.measure_psf`), brightest
        first.
    catalog_flux : ndarray, shape (M,), optional
        Catalogue flux of every source (photometry pass), for the ``BLENDED`` flag.
    photometers : tuple
        Photometers of the pass.
    recentre : {'transform', 'each', 'none'}
        How positions are refined: one common offset measured on the guide stars, every
        source on its own, or not at all.
    fwhm_guess : float
        FWHM (pixels) used when a frame has none.
    n_sky_global : int
        Pixels behind one value of the global background (its error).
    site : str, tuple or EarthLocation, optional
        Observing site for the airmass of the scintillation noise (default: the profile's
        site, else the frame's observatory).
    target : tuple of float, optional
        Target (RA, Dec) in degrees for the airmass (default: the frame header's).
    """

    profile: object
    calibration: object = None
    remove_cosmic_rays: bool = False
    background: object = None
    finder: object = None
    reference_xy: np.ndarray | None = None
    reference_shape: tuple | None = None
    alignment: str = "auto"
    catalog_xy: np.ndarray | None = None
    guide: np.ndarray | None = None
    photometers: tuple = ()
    recentre: str = "transform"
    fwhm_guess: float = 3.0
    n_sky_global: int = 4096
    catalog_flux: np.ndarray | None = None
    site: object = None
    target: tuple | None = None


@dataclass(frozen=True)
class CatalogRow:
    """Result of the catalogue pass for one frame."""

    index: int
    background_median: float
    background_rms_median: float
    fwhm: float
    n_detected: int
    transform: Transform | None
    align_error: str | None
    xy: np.ndarray | None = None
    cosmic_rays: np.ndarray | None = None
    background: object = None
    trails: tuple = ()


@dataclass(frozen=True)
class PhotometryRow:
    """Result of the photometry pass for one frame (``psf``: the fitted elliptical Moffat,
    :class:`~opticam_like.photometry.moffat.MoffatProfile`, or None)."""

    index: int
    x: np.ndarray
    y: np.ndarray
    fwhm: float
    background_median: float
    position_flags: np.ndarray
    results: dict
    psf: object = None


def _accepts_mask(func):
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return "mask" in parameters or any(p.kind == p.VAR_KEYWORD for p in parameters.values())


def apply_background(background, data, mask):
    """Run a global background estimator under the pipeline's contract.

    Parameters
    ----------
    background : callable
        ``background(data, mask=None)`` (or ``background(data)``, which then gets the masked
        pixels as NaN) returning an object with ``background``, ``background_rms``,
        ``background_median`` and ``background_rms_median`` (a photutils ``Background2D``
        qualifies).
    data : ndarray, shape (ny, nx)
        Calibrated image (e-).
    mask : ndarray of bool, shape (ny, nx)
        Bad pixels.

    Returns
    -------
    object
        The estimator's result.

    Raises
    ------
    TypeError
        When the result lacks one of the attributes or its background map has the wrong
        shape. (The rms map is checked for presence only: results such as ``Background2D``
        build it lazily, and a pass that does not need it should not pay for it.)
    """
    if _accepts_mask(background):
        result = background(data, mask=mask if mask.any() else None)
    else:
        with warnings.catch_warnings():  # the NaNs are ours: the masked pixels
            warnings.filterwarnings("ignore", message=".*non-finite.*")
            result = background(np.where(mask, np.nan, data))
    for name in ("background_rms", "background_median", "background_rms_median"):
        if not (hasattr(type(result), name) or name in vars(result)):
            raise TypeError(f"the background estimator returned {type(result).__name__} "
                            f"without {name}")
    if np.shape(getattr(result, "background", None)) != data.shape:
        raise TypeError(f"the background estimator returned {type(result).__name__} "
                        f"without a background map of shape {data.shape}")
    return result


def prepare_frame(item, ctx, timer):
    """Read, calibrate and background-subtract one frame.

    Returns
    -------
    calibrated : CalibratedFrame
    background : object
        The background estimator's result.
    data : ndarray, shape (ny, nx), float32
        Calibrated image minus the global background (e-); masked pixels keep their value
        (the mask travels with ``calibrated``).
    """
    timer.step("read")
    frame = read_frame(item.path, ctx.profile, info=item.info)
    timer.step("calibrate")
    calibrated = calibrate(frame, ctx.calibration, remove_cosmic_rays=ctx.remove_cosmic_rays,
                           cosmic_ray_pixels=item.cosmic_rays)
    timer.step("background")
    if item.background is not None:
        background = item.background
    else:
        background = apply_background(ctx.background, calibrated.data, calibrated.mask)
    data = (calibrated.data - np.asarray(background.background, dtype=np.float32))
    return calibrated, background, data.astype(np.float32, copy=False)


def frame_fwhm(data, sources, mask=None, default=math.nan, n_brightest=10):
    """Frame FWHM (pixels) from the elliptical Moffat fitted to its brightest clean detections.

    The finder's ``fwhm`` (second moments over the isophote) is only the starting guess: the
    moments of a Moffat star are inflated by its wings (see
    :mod:`~opticam_like.photometry.moffat`). The fit uses the ``n_brightest`` brightest
    unflagged detections with no masked (e.g. saturated) pixel near their centre.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Background-subtracted frame.
    sources : astropy.table.Table
        Finder output, brightest first (``x``, ``y``, ``fwhm``, ``flags``).
    mask : ndarray of bool, shape (ny, nx), optional
        Unusable pixels.
    default : float
        Returned when no star can be fitted.
    n_brightest : int
        Stars fitted at most.

    Returns
    -------
    float
        Geometric-mean FWHM (px).
    """
    if len(sources) == 0:
        return default
    clean = np.flatnonzero(np.asarray(sources["flags"]) == 0)
    if len(clean) == 0:
        return default
    guess = float(np.median(np.asarray(sources["fwhm"])[clean[:n_brightest]]))
    shape, _ = measure_psf(data, np.asarray(sources["x"], dtype=float),
                           np.asarray(sources["y"], dtype=float), guess, mask=mask,
                           candidates=clean, max_stars=n_brightest)
    return default if shape is None else float(shape.fwhm)


def detect_frame(item, ctx, timer):
    """Detect the stars of one frame (used to choose the reference frame).

    Detection in a frame only serves the alignment, so the threshold uses the frame's median
    background rms (a scalar): the rms map is not built in this pass.

    Returns
    -------
    CatalogRow
        With ``transform`` None and ``xy`` the detected positions, brightest first.
    """
    calibrated, background, data = prepare_frame(item, ctx, timer)
    timer.step("detect")
    sources = ctx.finder(data, background.background_rms_median, mask=calibrated.mask)
    return CatalogRow(item.index, float(background.background_median),
                      float(background.background_rms_median),
                      frame_fwhm(data, sources, calibrated.mask),
                      len(sources), None, None,
                      np.column_stack([sources["x"], sources["y"]]).astype(float))


def catalog_frame(item, ctx, timer, stack):
    """Catalogue pass for one frame: detect, find trails, align, add to the stack.

    A frame that cannot be aligned is not stacked; its row says why (``align_error``). Trail
    pixels (:func:`~opticam_like.trails.find_trails`) never enter the stack; the trails travel
    to the photometry pass in the row.
    """
    calibrated, background, data = prepare_frame(item, ctx, timer)
    timer.step("detect")
    sources = ctx.finder(data, background.background_rms_median, mask=calibrated.mask)
    xy = np.column_stack([sources["x"], sources["y"]]).astype(float)
    fwhm = frame_fwhm(data, sources, calibrated.mask)
    timer.step("trails")
    trails = find_trails(data, float(background.background_rms_median), mask=calibrated.mask,
                         sources=sources, fwhm=fwhm if np.isfinite(fwhm) else ctx.fwhm_guess)
    timer.step("align")
    try:
        transform = find_transform(xy, ctx.reference_xy, method=ctx.alignment)
        error = None
    except AlignmentError as exc:
        transform, error = None, exc.reason
    if transform is not None:
        timer.step("stack")
        # saturated pixels keep their (clipped) values: a saturated star stays one source
        stack_frame(stack, calibrated, data, transform, trails, ctx, item.index)
    cosmic_rays = None
    if ctx.remove_cosmic_rays:
        hit = (calibrated.pixel_flags & np.uint16(PhotFlag.COSMIC_RAY)) != 0
        cosmic_rays = np.flatnonzero(hit).astype(np.int32)
    compact = getattr(background, "compact", None)
    return CatalogRow(item.index, float(background.background_median),
                      float(background.background_rms_median), fwhm,
                      len(sources), transform, error, cosmic_rays=cosmic_rays,
                      background=compact() if compact is not None else None,
                      trails=tuple(t.as_tuple() for t in trails))


def stack_frame(stack, calibrated, data, transform, trails, ctx, index):
    """Add a background-subtracted frame to the catalogue stack.

    Bad pixels (but not saturated ones: a saturated star stays one source) and trail pixels
    are left out.

    Parameters
    ----------
    stack : RobustStack
    calibrated : CalibratedFrame
        The frame's pixel flags.
    data : ndarray, shape (ny, nx)
        Calibrated, background-subtracted frame (e-).
    transform : Transform
        Reference -> frame transform.
    trails : sequence of Trail or 7-tuples
        Trails of the frame.
    ctx : PassContext
        Gives the reference grid's shape.
    index : int
        Position of the frame in the night.
    """
    unusable = (calibrated.pixel_flags & ~np.uint16(PhotFlag.SATURATED)) != 0
    unusable |= trail_mask(data.shape, trails)
    stack.add_frame(data, stacking_transform(transform, ctx.reference_shape), bad=unusable,
                    index=index)


def stacking_transform(transform, shape, tolerance=0.5):
    """The transform used to add a frame to the stack.

    When the transform is a pure shift to within ``tolerance`` pixels over the whole frame, the
    shift is rounded to whole pixels: the frame is then added by a slice copy (0.06 ms instead
    of ~7 ms for an interpolated 512 x 512 warp). Rounding moves every star of the frame by the
    same sub-pixel amount (at most half a pixel, hence the default tolerance), so relative
    positions in the stack are unchanged; the common offset averages out over the frames and
    the photometry pass re-centres on the guide stars anyway.

    Parameters
    ----------
    transform : Transform
        Reference -> frame transform.
    shape : tuple of int
        Reference grid ``(ny, nx)``.
    tolerance : float
        Largest departure (pixels) of the linear part from the identity over the frame.

    Returns
    -------
    Transform
    """
    linear = transform.matrix[:2, :2] - np.eye(2)
    if np.abs(linear).sum(axis=1).max() * max(shape) > tolerance:
        return transform
    return Transform.from_translation(round(transform.dx), round(transform.dy))


def _sample(image, x, y):
    ny, nx = image.shape
    xi = np.clip(np.rint(np.nan_to_num(x)).astype(int), 0, nx - 1)
    yi = np.clip(np.rint(np.nan_to_num(y)).astype(int), 0, ny - 1)
    return np.asarray(image, dtype=float)[yi, xi]


def _refine_positions(data, mask, x, y, guide, fwhm, mode):
    """Refined positions and per-source flags (see ``PassContext.recentre``)."""
    flags = np.zeros(len(x), dtype=np.int32)
    if mode == "none" or len(x) == 0:
        return x, y, flags
    if mode == "each":
        xr, yr, failed = recentre(data, x, y, fwhm, mask=mask)
        flags[failed] |= PhotFlag.RECENTRE_FAILED
        return xr, yr, flags
    xr, yr, failed = recentre(data, x[guide], y[guide], fwhm, mask=mask)
    ok = ~failed
    if not ok.any():
        flags |= PhotFlag.RECENTRE_FAILED
        return x, y, flags
    dx = float(np.median(xr[ok] - x[guide][ok]))
    dy = float(np.median(yr[ok] - y[guide][ok]))
    return x + dx, y + dy, flags


def frame_scintillation(ctx, info):
    """Relative scintillation RMS of a frame's fluxes, 0 when off or not computable.

    From the profile's ``telescope_diameter``, the site's altitude, the exposure and the
    airmass of the target at the frame's mid-exposure time
    (:func:`~opticam_like.photometry.noise.scintillation_sigma`). It is 0 when the profile's
    ``scintillation`` is off, or the site or the target is unknown, or the target is below
    the horizon.

    Parameters
    ----------
    ctx : PassContext
    info : FrameInfo

    Returns
    -------
    float
    """
    profile = ctx.profile
    if not profile.scintillation:
        return 0.0
    site = ctx.site or profile.site or info.observatory
    ra, dec = ctx.target if ctx.target else (info.ra, info.dec)
    if not site or not (math.isfinite(ra) and math.isfinite(dec)) or not info.exposure > 0:
        return 0.0
    try:
        location = get_site(site)
    except ValueError:
        return 0.0
    airmass = frame_airmass(info.time, location, ra, dec)
    if not np.isfinite(airmass):
        return 0.0
    return float(scintillation_sigma(profile.telescope_diameter, info.exposure, airmass,
                                     location.height.to_value("m")))


def photometry_frame(item, ctx, timer):
    """Photometry pass for one frame: positions from the transform, every photometer.

    Returns
    -------
    PhotometryRow
    """
    calibrated, background, data = prepare_frame(item, ctx, timer)
    info = calibrated.info
    timer.step("positions")
    if item.matrix is None:
        raise FrameError(item.path, "no transform (neither measured nor interpolated)")
    transform = Transform(np.reshape(item.matrix, (3, 3)))
    x, y = transform.apply(ctx.catalog_xy[:, 0], ctx.catalog_xy[:, 1])
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    fwhm = item.fwhm if np.isfinite(item.fwhm) else ctx.fwhm_guess
    x, y, flags = _refine_positions(data, calibrated.mask, x, y, ctx.guide, fwhm, ctx.recentre)
    psf, _ = measure_psf(data, x, y, fwhm, mask=calibrated.mask, candidates=ctx.guide)
    if psf is not None:
        fwhm = psf.fwhm
    flags |= item.position_flags
    sky_rms = _sample(background.background_rms, x, y)
    pixel_flags = calibrated.pixel_flags
    if item.trails:  # trail pixels are left out of apertures and annuli, and flag the points
        on_trail = trail_mask(data.shape, item.trails)
        pixel_flags = np.where(on_trail, pixel_flags | np.uint16(PhotFlag.TRAIL), pixel_flags)
    if ctx.remove_cosmic_rays:
        timer.step("cosmic rays")
        hits, cleared = star_cosmic_rays(data, pixel_flags, x, y, fwhm, sky_rms**2, psf=psf)
        pixel_flags = pixel_flags.copy()
        pixel_flags.ravel()[hits] |= np.uint16(PhotFlag.COSMIC_RAY)
        pixel_flags.ravel()[cleared] &= ~np.uint16(PhotFlag.COSMIC_RAY)
    timer.step("photometry")
    read_noise = info.read_noise
    measure_input = MeasureInput(
        data=data, pixel_flags=pixel_flags, x=x, y=y,
        sky=_sample(background.background, x, y), sky_rms=sky_rms,
        fwhm=fwhm, read_noise=read_noise, dark=calibrated.dark_electrons,
        bias_subtracted=calibrated.bias_subtracted, n_sky_global=ctx.n_sky_global,
        position_flags=flags, guide=ctx.guide, gain=info.gain, psf=psf,
        catalog_flux=ctx.catalog_flux, scintillation=frame_scintillation(ctx, info))
    results = {p.name: p.measure(measure_input) for p in ctx.photometers}
    return PhotometryRow(item.index, x, y, fwhm, float(background.background_median), flags,
                         results, psf)
