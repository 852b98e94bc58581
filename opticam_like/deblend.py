"""Close pairs in the catalogue stack: companions found in the residuals of a PSF fit.

Isophotal detection with multi-threshold deblending (SExtractor's, photutils'
``deblend_sources``) splits a pair only when the fainter star makes a saddle in the light
distribution: a star 1.5 FWHM from a brighter one and 2 mag fainter makes none, so the pair is
one source, its position is pulled towards the companion and the companion's light dilutes the
brighter star's variability. :func:`resolve_blends` fits the stack's own PSF (the elliptical
Moffat of :func:`~opticam_like.photometry.moffat.measure_psf`) to every detected source,
grouping neighbours that overlap, looks for significant peaks in the residual image and fits
the groups again with the new sources (photutils ``IterativePSFPhotometry``; the
DAOPHOT/ALLSTAR approach, Stetson 1987). The fitted positions replace the isophotal centroids
of sources with a neighbour, and the fitted total fluxes the isophotal ones.
Sources without a neighbour within 2.5 FWHM keep their centroid, which a saturated (flat)
core does not bias.

A residual peak becomes a source only when it is significant (``snr``), away from the
uncovered edges of the stack, and fitted well by the PSF (photutils' ``qfit``, the absolute
residual summed over the fit box relative to the fitted flux): what a PSF mismatch leaves
around a bright star is a ring, fitted badly by a point source. A last fit of the detections
and the accepted companions alone gives the positions, so that a rejected residual peak does
not pull its neighbour.

References
----------
Stetson, P. B. 1987, PASP 99, 191 (DAOPHOT).
"""

import logging
import warnings

import numpy as np
from astropy.table import QTable, Table
from scipy import ndimage

from .detection import SourceFlag

__all__ = ["resolve_blends"]

log = logging.getLogger(__name__)


def resolve_blends(image, rms, sources, mask=None, snr=5.0, max_qfit=1.0, max_iter=2):
    """Split close pairs: PSF-fit the sources of an image and add companions from residuals.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Background-subtracted image (e-), e.g. the catalogue stack.
    rms : float
        Background rms of one pixel (e-).
    sources : astropy.table.Table
        Detections (``x``, ``y``, ``flux``, ``peak``, ``fwhm``, ``npix``, ``flags``), brightest
        first, as a finder returns them.
    mask : ndarray of bool, shape (ny, nx), optional
        Pixels without data (e.g. not covered by the stack).
    snr : float
        Lowest fitted flux over its error for a new source.
    max_qfit : float
        Largest photutils ``qfit`` of a new source.
    max_iter : int
        Fit-and-search iterations.

    Returns
    -------
    astropy.table.Table
        The same columns, brightest (by fitted flux) first: every source at its PSF-fitted
        position with its fitted total flux, plus the companions found, which have
        ``npix = 0`` and ``SourceFlag.BLENDED`` set (as have the sources they were split from).
        The input table, unchanged, when the PSF cannot be measured (fewer than 3 clean
        stars) or the fit fails; the reason is logged.
    """
    from photutils.detection import DAOStarFinder
    from photutils.psf import IterativePSFPhotometry, PSFPhotometry, SourceGrouper

    from .photometry.moffat import measure_psf
    from .photometry.psf import ProfilePRF

    if len(sources) < 3:
        return sources
    good = np.isfinite(image)
    if mask is not None:
        good &= ~np.asarray(mask, dtype=bool)
    data = np.where(good, image, 0.0)
    x, y = np.asarray(sources["x"], dtype=float), np.asarray(sources["y"], dtype=float)
    guess = float(np.nanmedian(np.asarray(sources["fwhm"], dtype=float)[:20]))
    profile, n_stars = measure_psf(data, x, y, guess, mask=~good)
    if profile is None or n_stars < 3:
        log.info("blends not resolved: the stack's PSF could not be measured")
        return sources
    fwhm = float(np.sqrt(profile.fwhm_major * profile.fwhm_minor))
    size = int(2 * round(1.5 * fwhm) + 1)
    sub = int(8 * fwhm) | 1
    common = dict(grouper=SourceGrouper(2.5 * fwhm), aperture_radius=fwhm,
                  xy_bounds=(2.0, 2.0))
    error = np.full(data.shape, float(rms))
    init = QTable({"x": x, "y": y, "flux": np.asarray(sources["flux"], dtype=float)})
    search = IterativePSFPhotometry(
        ProfilePRF(profile), (size, size), DAOStarFinder(threshold=snr * rms, fwhm=fwhm),
        mode="all", maxiters=max_iter, sub_shape=(sub, sub), **common)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = search(data, mask=~good, error=error, init_params=init)
            companions = _companions(found, good, x, y, fwhm, snr, max_qfit)
            # the final fit: the detections and the accepted companions only, so that a
            # rejected residual peak does not pull its neighbour
            final = PSFPhotometry(ProfilePRF(profile), (size, size), **common)(
                data, mask=~good, error=error,
                init_params=QTable({"x": np.concatenate([x, companions["x"]]),
                                    "y": np.concatenate([y, companions["y"]]),
                                    "flux": np.concatenate([init["flux"],
                                                            companions["flux"]])}))
    except (ValueError, RuntimeError) as exc:
        log.warning("blends not resolved: the PSF fit of the stack failed (%s)", exc)
        return sources
    return _merge(sources, final, len(companions["x"]), fwhm)


def _companions(fit, good, x, y, fwhm, snr, max_qfit):
    """Positions and fluxes of the residual peaks accepted as sources.

    A peak within 0.6 FWHM of a detection is the detection's own PSF mismatch (a pair that
    close cannot be resolved), not a companion."""
    fx, fy = np.asarray(fit["x_fit"], float), np.asarray(fit["y_fit"], float)
    flux, error = np.asarray(fit["flux_fit"], float), np.asarray(fit["flux_err"], float)
    ny, nx = good.shape
    edge = ndimage.distance_transform_edt(good)
    xi = np.clip(np.rint(np.nan_to_num(fx)).astype(int), 0, nx - 1)
    yi = np.clip(np.rint(np.nan_to_num(fy)).astype(int), 0, ny - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accepted = ((np.asarray(fit["iter_detected"]) > 1) & (flux / error > snr)
                    & (edge[yi, xi] > 2 * fwhm) & (np.asarray(fit["qfit"], float) < max_qfit))
    gap = np.hypot(fx[:, None] - x[None, :], fy[:, None] - y[None, :]).min(axis=1)
    accepted &= gap > 0.6 * fwhm
    return {"x": fx[accepted], "y": fy[accepted], "flux": flux[accepted]}


def _merge(sources, fit, n_added, fwhm):
    """The detections at their fitted positions, plus the companions."""
    fit = fit[np.argsort(np.asarray(fit["id"]), kind="stable")]   # init_params order
    fx, fy = np.asarray(fit["x_fit"], float), np.asarray(fit["y_fit"], float)
    flux = np.asarray(fit["flux_fit"], float)
    n = len(sources)
    out = Table(sources, copy=True)
    ok = np.isfinite(fx[:n]) & np.isfinite(fy[:n]) & (flux[:n] > 0)
    out["flux"][ok] = flux[:n][ok]
    # positions: the fit's where a neighbour overlaps (the centroid is pulled there); an
    # isolated source keeps its centroid, which a saturated core does not bias
    x0, y0 = np.asarray(sources["x"], float), np.asarray(sources["y"], float)
    distance = np.hypot(x0[:, None] - fx[None, :], y0[:, None] - fy[None, :])
    distance[np.arange(n), np.arange(n)] = np.inf
    crowded = ok & (np.nanmin(distance, axis=1) < 2.5 * fwhm)
    out["x"][crowded] = fx[:n][crowded]
    out["y"][crowded] = fy[:n][crowded]
    if n_added:
        extra = Table({name: np.zeros(n_added, dtype=out[name].dtype)
                       for name in out.colnames})
        extra["x"], extra["y"], extra["flux"] = fx[n:], fy[n:], flux[n:]
        if "fwhm" in extra.colnames:
            extra["fwhm"] = fwhm
        if "peak" in extra.colnames:
            extra["peak"] = np.nan
        extra["flags"] = int(SourceFlag.BLENDED)
        near = np.hypot(np.asarray(out["x"])[:, None] - fx[None, n:],
                        np.asarray(out["y"])[:, None] - fy[None, n:]).min(axis=1)
        out["flags"][near < 2.5 * fwhm] |= int(SourceFlag.BLENDED)
        out = Table(np.concatenate([out.as_array(), extra.as_array()]))
    log.info("PSF fit of the stack (FWHM %.2f px): %d companions split from blends",
             fwhm, n_added)
    order = np.argsort(-np.asarray(out["flux"], dtype=float), kind="stable")
    return out[order]
