"""Optimal photometry: Naylor's (1998) profile-weighted extraction, aperture-calibrated.

Each pixel of a source gets the weight ``W_i = (P_i / V_i) / sum(P_i^2 / V_i)``, with ``P`` the
frame's PSF profile (fitted to its guide stars, :func:`~opticam_like.photometry.psf.
frame_profile`) and ``V_i`` the variance of the pixel (the CCD equation's sky, dark and read
noise plus the source's own photons, from a first flux estimate). For data ``F P`` the weighted
sum is ``F``, the flux of the profile; since no model matches a real PSF exactly, the fluxes are
then scaled by the ratio, measured on the frame's guide stars, of a large aperture's flux to the
weighted flux (Naylor's normalisation, an aperture correction), so an isolated star's optimal
flux equals its aperture flux.

References
----------
Naylor, T. 1998, MNRAS 296, 339, "An optimal extraction algorithm for imaging photometry".
Horne, K. 1986, PASP 98, 609 (optimal extraction of spectra, the same weights).
"""

import math
from dataclasses import dataclass, field

import numpy as np

from ..background.local import AnnulusBackground
from ..flags import PhotFlag
from .blends import blend_flags
from .noise import add_scintillation
from .psf import (PSF_MODELS, aperture_correction, frame_profile, source_stamps,
                  weighted_flux)

__all__ = ["OptimalPhotometer"]


@dataclass(frozen=True)
class OptimalPhotometer:
    """Optimal (variance-weighted PSF) photometry, Naylor (1998).

    Parameters
    ----------
    fwhm_scale : float
        Radius of the extraction mask in units of the frame FWHM: the pixels whose centres lie
        within it are weighted (the weights beyond ~2 FWHM are negligible).
    psf : {'gaussian', 'moffat', 'epsf'}
        Profile of the weights, measured on the frame's guide stars (see
        :func:`~opticam_like.photometry.psf.frame_profile`): the elliptical Gaussian with the
        half-maximum ellipse of the fitted PSF (default), the fitted elliptical Moffat, or an
        ePSF.
    beta : float
        Moffat index when the frame's PSF could not be fitted, > 1.
    correction_radius : float
        Radius, in frame FWHM, of the aperture that calibrates the fluxes on the guide stars;
        the default 3 FWHM (the inner radius of the default annulus) holds all of a Gaussian's
        flux and ~98% of a Moffat's with beta = 2.5.
    local_background : AnnulusBackground or None
        Local sky estimator; None uses the global background alone.
    name : str, optional
        Label of the output table (default ``optimal_{psf}``).

    Raises
    ------
    ValueError
        A parameter out of range or an unknown profile.

    Notes
    -----
    Masked pixels (any pixel flag) and pixels off the image are dropped from the weights and
    their normalisation, so they cost signal-to-noise but do not bias the flux; the source is
    flagged with their flags (and ``EDGE``). The variance is ``C^2 [sum(W_i^2 V_i) +
    (sum W_i)^2 sigma^2 k / n_sky]`` (the CCD equation with weights, the last term the error of
    the local level), where ``C`` is the aperture correction; ``C``'s own error, common to all
    stars of the frame, cancels in differential photometry and is reported in
    ``meta['aperture_correction_err']``. Without usable guide stars the profile takes the frame
    FWHM and ``C = 1`` (the flux is the profile's total flux; ``meta['correction_source']``
    says ``'model'``). With catalogue fluxes (``MeasureInput.catalog_flux``) a source whose
    weighted sum is predicted to take more than 1% of its flux from neighbours is flagged
    ``BLENDED`` (:func:`~opticam_like.photometry.blends.blend_flags`, profile-weighted over the
    extraction mask).
    """

    fwhm_scale: float = 3.0
    psf: str = "gaussian"
    beta: float = 2.5
    correction_radius: float = 3.0
    local_background: AnnulusBackground | None = field(default_factory=AnnulusBackground)
    name: str | None = None

    def __post_init__(self):
        if not self.fwhm_scale > 0:
            raise ValueError(f"fwhm_scale must be positive, got {self.fwhm_scale}")
        if self.psf not in PSF_MODELS:
            raise ValueError(f"psf must be one of {PSF_MODELS}, not {self.psf!r}")
        if not self.beta > 1:
            raise ValueError(f"beta must be > 1, got {self.beta}")
        if not self.correction_radius > 0:
            raise ValueError(f"correction_radius must be positive, got "
                             f"{self.correction_radius}")
        if self.name is None:
            object.__setattr__(self, "name", f"optimal_{self.psf}")

    def params(self):
        """Parameters for the tables' metadata and the echoed configuration."""
        return {"type": "optimal", "name": self.name, "fwhm_scale": self.fwhm_scale,
                "psf": self.psf, "beta": self.beta, "correction_radius": self.correction_radius,
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
            (effective pixels, ``C^2 sum(W^2)``), ``flags`` (int32), and ``meta``:
            ``noise_method``, ``radius`` (the calibrating aperture, px), ``mask_radius`` (px),
            ``aperture_correction``, ``aperture_correction_err``, ``n_correction_stars``,
            ``correction_source`` and the profile information of
            :func:`~opticam_like.photometry.psf.frame_profile`.

        Raises
        ------
        ValueError
            The frame FWHM is not positive.
        """
        level, n_sky, median, flags, sigma2, method = frame.local_sky(self.local_background)
        flags = flags.copy()
        profile, info = frame_profile(frame, self.psf, self.beta, level, flags)
        radius = self.fwhm_scale * frame.fwhm
        meta = {"noise_method": method, "radius": self.correction_radius * frame.fwhm,
                "mask_radius": radius, **info}
        if frame.n_sources == 0:
            empty = np.zeros(0)
            meta.update(aperture_correction=1.0, aperture_correction_err=math.nan,
                        n_correction_stars=0, correction_source="model")
            return {"flux": empty, "flux_err": empty, "background": empty, "area": empty,
                    "flags": np.zeros(0, dtype=np.int32), "meta": meta}
        stamps = source_stamps(frame.data, frame.pixel_flags, frame.x, frame.y,
                               math.ceil(radius), radius)
        flux, variance, area = weighted_flux(stamps, profile.render(stamps.dx, stamps.dy),
                                             level, sigma2, n_sky, median, optimal=True)
        flags |= stamps.flags
        flags |= blend_flags(frame, profile, radius, weighted=True)
        if frame.position_flags is not None:
            flags |= frame.position_flags
        correction, error, n_used = aperture_correction(frame, flux, level, flags,
                                                        self.correction_radius * frame.fwhm)
        meta.update(aperture_correction=correction, aperture_correction_err=error,
                    n_correction_stars=n_used, correction_source="guides" if n_used else "model")
        flux = correction * flux
        variance, meta["noise_method"] = add_scintillation(flux, correction**2 * variance,
                                                           frame.scintillation, method)
        flags |= np.where(~(flux > 0), PhotFlag.NON_POSITIVE, 0).astype(np.int32)
        return {"flux": flux, "flux_err": np.sqrt(variance),
                "background": frame.sky + level, "area": correction**2 * area,
                "flags": flags, "meta": meta}
