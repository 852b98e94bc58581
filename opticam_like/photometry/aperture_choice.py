"""The night's aperture radius, chosen from the data.

A fixed radius in FWHM units (1.5 FWHM is a common default) is a guess: the radius that gives
the best differential light curves depends on the PSF's wings (a Moffat star holds less light
inside 1 FWHM than a Gaussian), the sky, the brightness of the stars and the seeing. Several
aperture photometers in FWHM units share one pass at little cost (the sums are exact and
vectorised, the annulus is measured once), so the pipeline measures a grid of radii and keeps
the one whose differential light curves of the comparison stars scatter least: for each
candidate star, its flux divided by the summed flux of the other candidates, normalised, and
its robust fractional scatter (1.4826 times the median absolute deviation of the
frame-to-frame ratios, which cancels slow trends); the score of a radius is the median over
the stars of the inverse scatter, i.e. the typical differential signal-to-noise per frame.

This is the curve-of-growth S/N optimisation of Howell (1989) measured on the light curves
themselves instead of predicted from a noise model, so that it also accounts for what the
model lacks (scintillation, flat-field errors, seeing-dependent aperture losses).

References
----------
Howell, S. B. 1989, PASP 101, 616.
"""

import numpy as np
from astropy.table import Table

__all__ = ["differential_snr", "choose_aperture", "candidate_photometers", "select_aperture",
           "DEFAULT_SCALES"]

#: Radii (in units of the frame FWHM) measured when the aperture is chosen from the data.
DEFAULT_SCALES = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5)


def differential_snr(flux, good):
    """Typical per-frame S/N of the stars' differential light curves against each other.

    Parameters
    ----------
    flux : ndarray, shape (n_frames, n_stars)
        Fluxes (e-) of the candidate comparison stars.
    good : ndarray of bool, shape (n_frames, n_stars)
        Usable points (unflagged, finite, positive).

    Returns
    -------
    snr : float
        Median over the stars of ``1 / sigma``, where ``sigma`` is the robust scatter of the
        point-to-point ratios of the star's normalised differential light curve divided by
        sqrt(2). NaN with fewer than 2 stars or 5 usable frames.
    per_star : ndarray, shape (n_stars,)
        ``1 / sigma`` of each star (NaN where it cannot be measured).
    """
    flux = np.asarray(flux, dtype=float)
    good = np.asarray(good, dtype=bool) & np.isfinite(flux) & (flux > 0)
    n_frames, n_stars = flux.shape
    per_star = np.full(n_stars, np.nan)
    if n_stars < 2:
        return np.nan, per_star
    frames = good.all(axis=1)
    if frames.sum() < 5:
        return np.nan, per_star
    f = flux[frames]
    total = f.sum(axis=1, keepdims=True)
    relative = f / (total - f)
    relative /= np.median(relative, axis=0)
    ratio = relative[1:] / relative[:-1]
    mad = np.median(np.abs(ratio - np.median(ratio, axis=0)), axis=0)
    sigma = 1.4826 * mad / np.sqrt(2.0)
    with np.errstate(divide="ignore"):
        per_star = np.where(sigma > 0, 1.0 / sigma, np.nan)
    return float(np.nanmedian(per_star)), per_star


def choose_aperture(candidates, stars):
    """The aperture (of several measured in one pass) with the best differential S/N.

    Parameters
    ----------
    candidates : dict
        Maps a label (e.g. the radius in FWHM units) to ``(flux, flags)``, each an ndarray of
        shape (n_frames, n_sources) from one photometer of the pass.
    stars : array_like of int
        Column indices of the candidate comparison stars (bright, isolated, unsaturated
        catalogue sources; at least 2).

    Returns
    -------
    best : key of ``candidates``
        The label with the highest :func:`differential_snr`.
    scores : astropy.table.Table
        One row per candidate: ``label``, ``snr`` (median per-frame differential S/N of the
        stars) and ``n_frames`` (frames where every star was usable).

    Raises
    ------
    ValueError
        With fewer than 2 stars, or when no candidate gives a finite S/N (too few usable
        frames).
    """
    stars = np.asarray(stars, dtype=int)
    if len(stars) < 2:
        raise ValueError(f"choosing an aperture needs at least 2 comparison stars, got "
                         f"{len(stars)}")
    labels, snrs, counts = [], [], []
    for label, (flux, flags) in candidates.items():
        flux = np.asarray(flux, dtype=float)[:, stars]
        good = np.asarray(flags)[:, stars] == 0
        snr, _ = differential_snr(flux, good)
        labels.append(label)
        snrs.append(snr)
        counts.append(int((good & np.isfinite(flux) & (flux > 0)).all(axis=1).sum()))
    snrs = np.asarray(snrs, dtype=float)
    if not np.isfinite(snrs).any():
        raise ValueError("no aperture gives a measurable differential S/N (too few frames "
                         "where every comparison star is unflagged)")
    best = labels[int(np.nanargmax(snrs))]
    return best, Table({"label": labels, "snr": snrs, "n_frames": counts})


def candidate_photometers(scales=DEFAULT_SCALES, local_background=None):
    """Aperture photometers at radii of ``scales`` times the frame FWHM (one pass).

    Parameters
    ----------
    scales : sequence of float
        Radii in units of the frame FWHM.
    local_background : AnnulusBackground, optional
        Shared by all (default: :class:`~opticam_like.background.local.AnnulusBackground`).

    Returns
    -------
    tuple of AperturePhotometer
    """
    from ..background.local import AnnulusBackground
    from .photometers import AperturePhotometer

    local = AnnulusBackground() if local_background is None else local_background
    return tuple(AperturePhotometer(fwhm_scale=float(s), local_background=local)
                 for s in scales)


def select_aperture(rows, photometers, catalog, n_stars=8):
    """The photometer of a pass whose comparison stars have the best differential S/N.

    Parameters
    ----------
    rows : list of PhotometryRow or FrameFailure
        Results of the photometry pass (failed frames are skipped).
    photometers : sequence of AperturePhotometer
        The candidates measured in the pass.
    catalog : astropy.table.Table
        The filter's catalogue (``flux``, ``flags`` and, with several cameras, ``detected``).
    n_stars : int
        Candidate comparison stars: the brightest clean catalogue sources unflagged in at
        least 90% of the frames at the middle radius.

    Returns
    -------
    best : AperturePhotometer
    scores : astropy.table.Table
        :func:`choose_aperture`'s table, with the ``fwhm_scale`` of each candidate.

    Raises
    ------
    ValueError
        With fewer than 2 usable comparison stars or no usable frame.
    """
    rows = [r for r in rows if hasattr(r, "results")]
    if not rows:
        raise ValueError("no frame was measured")
    middle = photometers[len(photometers) // 2].name
    flags = np.stack([np.asarray(r.results[middle]["flags"]) for r in rows])
    clean = np.asarray(catalog["flags"]) == 0
    if "detected" in catalog.colnames:
        clean &= np.asarray(catalog["detected"], dtype=bool)
    usable = clean & ((flags == 0).mean(axis=0) >= 0.9)
    order = np.argsort(-np.nan_to_num(np.asarray(catalog["flux"], dtype=float), nan=-np.inf))
    stars = [i for i in order if usable[i]][:n_stars]
    candidates = {p.name: (np.stack([np.asarray(r.results[p.name]["flux"]) for r in rows]),
                           np.stack([np.asarray(r.results[p.name]["flags"]) for r in rows]))
                  for p in photometers}
    best, scores = choose_aperture(candidates, stars)
    scores["fwhm_scale"] = [p.fwhm_scale for p in photometers]
    return next(p for p in photometers if p.name == best), scores
