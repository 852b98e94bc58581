"""Photometers: measure every catalogue source in one calibrated frame.

A photometer never reads files: the per-frame stage hands it a :class:`MeasureInput` (the
calibrated, globally background-subtracted image, its pixel flags and the source positions in
the frame) and it returns flux, flux error, background, area and flags per source. Several
photometers share one :class:`MeasureInput`, so a frame is read, calibrated and its background
computed once whatever the number of photometers.
"""

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..background.local import AnnulusBackground
from ..flags import PhotFlag
from .kernels import circular_aperture_sums, elliptical_aperture_sums
from .noise import add_scintillation, flux_variance, pixel_variance
from .blends import blend_flags
from .psf import frame_profile, frame_shape

__all__ = ["MeasureInput", "LocalSky", "AperturePhotometer"]


class LocalSky(NamedTuple):
    """Sky around every source of a frame, as every photometer needs it.

    Attributes
    ----------
    level : ndarray, shape (N,)
        Local residual level per pixel over the global background (e-); 0 where unmeasured.
    n_sky : ndarray, shape (N,)
        Pixels behind the level.
    median : bool
        Whether the level is a median (its variance then carries the factor pi/2).
    flags : ndarray of int32, shape (N,)
        ``BAD_BACKGROUND`` where fewer than ``min_pixels`` annulus pixels were usable.
    sigma2 : ndarray, shape (N,)
        Per-pixel background variance (e-^2) from the noise model.
    noise_method : str
        ``'ccd'`` or ``'measured_rms'`` (see
        :func:`~opticam_like.photometry.noise.pixel_variance`).
    """

    level: np.ndarray
    n_sky: np.ndarray
    median: bool
    flags: np.ndarray
    sigma2: np.ndarray
    noise_method: str


@dataclass(frozen=True)
class MeasureInput:
    """Everything a photometer may use for one frame.

    Attributes
    ----------
    data : ndarray, shape (ny, nx), float32
        Calibrated image (e-) with the global background subtracted.
    pixel_flags : ndarray, shape (ny, nx), uint16
        Per-pixel :class:`~opticam_like.flags.PhotFlag` bits (0 = good).
    x, y : ndarray, shape (N,)
        Source positions in this frame (0-based pixels).
    sky, sky_rms : ndarray, shape (N,)
        Global background level and rms at each source (e-).
    fwhm : float
        Frame FWHM (pixels).
    read_noise : float
        Read noise (e-), NaN if unknown.
    dark : float
        Dark electrons per pixel in this exposure.
    bias_subtracted : bool
        Whether the bias level has been removed (selects the noise method).
    n_sky_global : int
        Pixels behind one global-background mesh value (the error of the global level).
    position_flags : ndarray of int32, shape (N,)
        Flags inherited from positioning (NOT_ALIGNED, RECENTRE_FAILED).
    guide : ndarray of int, optional
        Indices of bright, isolated, unsaturated catalogue stars (for PSF models).
    gain : float
        Gain (e-/ADU) of the frame, for photometers that need ADU.
    psf : MoffatProfile, optional
        The frame's PSF fitted by the stage (:func:`~opticam_like.photometry.moffat.
        measure_psf`); when None the photometers fit it on the guide stars.
    catalog_flux : ndarray, shape (N,), optional
        Catalogue (stack) flux of every source, any common scale: with the PSF it predicts
        how much of each neighbour's light falls in a source's aperture (``BLENDED``). None
        leaves ``BLENDED`` unset.
    scintillation : float
        Relative scintillation RMS of the frame's fluxes
        (:func:`~opticam_like.photometry.noise.scintillation_sigma`; 0: not included). Added
        to every flux variance as ``(scintillation * flux)^2``.
    """

    data: np.ndarray
    pixel_flags: np.ndarray
    x: np.ndarray
    y: np.ndarray
    sky: np.ndarray
    sky_rms: np.ndarray
    fwhm: float
    read_noise: float = np.nan
    dark: float = 0.0
    bias_subtracted: bool = False
    n_sky_global: int = 4096
    position_flags: np.ndarray = None
    guide: np.ndarray = None
    gain: float = 1.0
    psf: object = None
    catalog_flux: np.ndarray = None
    scintillation: float = 0.0
    _levels: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def mask(self):
        """Boolean mask of unusable pixels."""
        return self.pixel_flags != 0

    @property
    def n_sources(self):
        """Number of sources."""
        return len(self.x)

    def local_sky(self, estimator):
        """Local sky level and per-pixel noise around every source (once per estimator).

        Photometers of one pass that use the same local-background estimator share one
        annulus measurement.

        Parameters
        ----------
        estimator : AnnulusBackground or None
            None uses the global background alone (level 0, known from ``n_sky_global``
            pixels).

        Returns
        -------
        LocalSky
        """
        if estimator not in self._levels:
            if estimator is None:
                level = np.zeros(self.n_sources)
                n_sky = np.full(self.n_sources, self.n_sky_global)
                median, flags = True, np.zeros(self.n_sources, dtype=np.int32)
            else:
                level, _, n_sky = estimator.measure(self.data, self.x, self.y, self.fwhm,
                                                    mask=self.mask)
                bad = ~(n_sky >= estimator.min_pixels) | ~np.isfinite(level)
                flags = np.where(bad, PhotFlag.BAD_BACKGROUND, 0).astype(np.int32)
                level = np.where(np.isfinite(level), level, 0.0)
                median = estimator.median_based
            sigma2, method = pixel_variance(self.sky + level, self.sky_rms, self.dark,
                                            self.read_noise, self.bias_subtracted)
            self._levels[estimator] = LocalSky(level, n_sky, median, flags, sigma2, method)
        return self._levels[estimator]


@dataclass(frozen=True)
class AperturePhotometer:
    """Exact circular or elliptical aperture photometry with a local annulus background.

    Parameters
    ----------
    radius : float, optional
        Fixed aperture radius (pixels). When None, the radius is ``fwhm_scale`` times each
        frame's FWHM (hipercam's variable apertures), which keeps the enclosed fraction of the
        PSF the same for every star of a frame, so it cancels in differential photometry.
    fwhm_scale : float
        Radius in units of the frame FWHM when ``radius`` is None.
    elliptical : bool
        Use ellipses shaped like the frame's PSF (axis ratio and angle of the elliptical Moffat
        fitted to its brightest stars, :func:`~opticam_like.photometry.psf.frame_shape`;
        round when it could not be fitted) with the area of
        the circle of ``radius``: ``a = r / sqrt(q)``, ``b = r sqrt(q)``. For elongated PSFs
        (tracking errors, astigmatism) this holds the same flux fraction with less sky.
    local_background : AnnulusBackground or None
        Local sky estimator; None uses the global background alone.
    name : str, optional
        Label of the output table (default: derived from the radius).

    Notes
    -----
    Sums use the exact pixel/circle overlap (as photutils ``method='exact'``). The flux error
    is the CCD equation of :mod:`opticam_like.photometry.noise`. With catalogue fluxes
    (``MeasureInput.catalog_flux``) a source whose aperture is predicted to hold more than 1%
    of light from its neighbours is flagged ``BLENDED``
    (:func:`~opticam_like.photometry.blends.blend_flags`, with the frame's fitted PSF).
    """

    radius: float | None = None
    fwhm_scale: float = 1.5
    local_background: AnnulusBackground | None = field(default_factory=AnnulusBackground)
    name: str | None = None
    elliptical: bool = False

    def __post_init__(self):
        if self.radius is not None and not self.radius > 0:
            raise ValueError(f"radius must be positive, got {self.radius}")
        if not self.fwhm_scale > 0:
            raise ValueError(f"fwhm_scale must be positive, got {self.fwhm_scale}")
        if self.name is None:
            label = (f"aperture_r{self.radius:g}" if self.radius is not None
                     else f"aperture_{self.fwhm_scale:g}fwhm")
            if self.elliptical:
                label += "_ellipse"
            object.__setattr__(self, "name", label)

    def aperture_radius(self, fwhm):
        """Radius in pixels for a frame of the given FWHM."""
        return self.radius if self.radius is not None else self.fwhm_scale * fwhm

    def params(self):
        """Parameters for the tables' metadata and the echoed configuration."""
        return {"type": "aperture", "name": self.name, "radius": self.radius,
                "fwhm_scale": self.fwhm_scale, "elliptical": self.elliptical,
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
            ``flux``, ``flux_err`` (e-), ``background`` (sky per pixel, e-), ``area``
            (pixels), ``flags`` (int32), and in ``meta`` the per-frame ``radius`` (pixels;
            the circle of equal area for ellipses, with ``axis_ratio`` and ``theta``) and
            ``noise_method``.
        """
        mask = frame.mask
        radius = self.aperture_radius(frame.fwhm)
        meta = {"radius": radius}
        semi_major, semi_minor, theta = radius, radius, 0.0
        if self.elliptical:
            shape, _ = frame_shape(frame)
            ratio, theta = (1.0, 0.0) if shape is None else (1.0 - shape.ellipticity,
                                                             shape.theta)
            meta.update(axis_ratio=ratio, theta=theta)
            semi_major, semi_minor = radius / ratio**0.5, radius * ratio**0.5
            sums = elliptical_aperture_sums(frame.data, frame.x, frame.y, semi_major,
                                            semi_minor, theta, mask=mask,
                                            pixel_flags=frame.pixel_flags)
        else:
            sums = circular_aperture_sums(frame.data, frame.x, frame.y, radius, mask=mask,
                                          pixel_flags=frame.pixel_flags)
        flags = np.asarray(sums.flags, dtype=np.int32)
        if frame.catalog_flux is not None:
            profile, _ = frame_profile(frame, "moffat")
            flags |= blend_flags(frame, profile, semi_major, semi_minor, theta)
        flags |= np.where(sums.edge, PhotFlag.EDGE, 0).astype(np.int32)
        if frame.position_flags is not None:
            flags |= frame.position_flags
        sky = frame.local_sky(self.local_background)
        flags |= sky.flags
        flux = sums.sum - sky.level * sums.area
        variance = flux_variance(flux, sums.area, sky.sigma2, sky.n_sky, median=sky.median,
                                 noise_area=sums.sum_weights_sq)
        variance, method = add_scintillation(flux, variance, frame.scintillation,
                                             sky.noise_method)
        flags |= np.where(~(flux > 0), PhotFlag.NON_POSITIVE, 0).astype(np.int32)
        return {
            "flux": flux,
            "flux_err": np.sqrt(variance),
            "background": frame.sky + sky.level,
            "area": sums.area,
            "flags": flags,
            "meta": {**meta, "noise_method": method},
        }
