"""Differential photometry: a target over a weighted ensemble of comparison stars.

The ensemble is the inverse-variance weighted mean of the comparison light curves, each first
normalised by its median, with weights fixed per star (from its median fractional error), so
the ensemble is one fixed linear combination of the comparisons and its error propagates
exactly (Broeg, Fernandez & Neuhaeuser 2005, AN 326, 134, give the iterative weighting idea;
we keep weights constant in time). The relative flux is ``target / ensemble`` normalised to a
median of 1; its error combines the target's and the ensemble's in quadrature.

Stars are named by their catalogue ID (the night-wide ID: the same star has the same ID in
every camera), by a position in a camera's reference frame, or by RA/Dec where the stacks carry
a WCS (:func:`source_id`). Comparison stars chosen by hand are checked
(:func:`check_comparisons`): a variable, saturated, blended or heavily flagged one is named in
a warning with the reason.
"""

import logging
from numbers import Integral, Real
from pathlib import Path
import warnings

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from . import schema
from .errors import ConfigError, MissingOutputError, ReductionError
from .flags import ADVISORY, PhotFlag
from .outputs import write_table
from .schema import time_column

__all__ = ["DifferentialPhotometer", "relative_flux", "select_comparisons", "time_column",
           "source_id", "parse_source", "check_comparisons", "ComparisonWarning"]

log = logging.getLogger(__name__)


def relative_flux(flux, flux_err, flags, target, comparisons):
    """Target flux over a weighted ensemble of comparisons.

    Parameters
    ----------
    flux, flux_err : ndarray, shape (n_frames, n_sources)
        Fluxes and errors (e-).
    flags : ndarray of int, shape (n_frames, n_sources)
        Per-point flags.
    target : int
        Column index (0-based) of the target.
    comparisons : sequence of int
        Column indices (0-based) of the comparison stars.

    Returns
    -------
    rel, rel_err : ndarray, shape (n_frames,)
        Relative flux normalised to a median of 1 over unflagged frames, and its error.
    rel_flags : ndarray of int32, shape (n_frames,)
        OR of the target's and comparisons' flags.
    weights : ndarray, shape (n_comparisons,)
        Normalised ensemble weights.

    Raises
    ------
    ValueError
        No comparison, the target among the comparisons, or an index out of range.
    """
    comparisons = list(comparisons)
    n_sources = flux.shape[1]
    if not comparisons:
        raise ValueError("at least one comparison star is needed")
    if target in comparisons:
        raise ValueError("the target cannot be one of its comparison stars")
    for index in [target] + comparisons:
        if not 0 <= index < n_sources:
            raise ValueError(f"source index {index + 1} is not in the catalogue "
                             f"(IDs 1 to {n_sources})")
    comp = flux[:, comparisons]
    comp_err = flux_err[:, comparisons]
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.nanmedian(comp, axis=0)
        norm = comp / scale
        norm_err = comp_err / scale
        weights = 1.0 / np.nanmedian(norm_err**2, axis=0)
        weights /= weights.sum()
        ensemble = norm @ weights
        ensemble_err = np.sqrt((norm_err**2) @ weights**2)
        rel = flux[:, target] / ensemble
        rel_err = np.abs(rel) * np.sqrt((flux_err[:, target] / flux[:, target]) ** 2
                                        + (ensemble_err / ensemble) ** 2)
    rel_flags = np.bitwise_or.reduce(flags[:, [target] + comparisons], axis=1).astype(np.int32)
    rel_flags |= np.where(np.isfinite(rel), 0, PhotFlag.FRAME_REJECTED).astype(np.int32)
    good = (rel_flags == 0) & np.isfinite(rel)
    reference = np.median(rel[good]) if good.any() else np.nanmedian(rel)
    return rel / reference, rel_err / reference, rel_flags, weights


def select_comparisons(flux, flux_err, flags, target, max_comparisons=5, min_good=0.9):
    """Choose comparison stars automatically.

    Candidates are the sources other than the target that are unflagged in at least
    ``min_good`` of the frames, ranked by median S/N; candidates whose scatter about the
    ensemble of the others exceeds three times its propagated error (variables) are dropped.

    Parameters
    ----------
    flux, flux_err : ndarray, shape (n_frames, n_sources)
    flags : ndarray of int, shape (n_frames, n_sources)
    target : int
        Column index (0-based) of the target.
    max_comparisons : int
        At most this many stars.
    min_good : float
        Minimum fraction of unflagged frames.

    Returns
    -------
    list of int
        Column indices (0-based).

    Raises
    ------
    ValueError
        When fewer than one usable comparison exists.
    """
    n_frames, n_sources = flux.shape
    good_fraction = np.mean(flags == 0, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.nanmedian(flux / flux_err, axis=0)
    candidates = [i for i in np.argsort(-np.nan_to_num(snr, nan=-1.0))
                  if i != target and good_fraction[i] >= min_good and snr[i] > 0]
    chosen = candidates[:max_comparisons + 3]
    while len(chosen) > 1:
        ratios = []
        for j in chosen:
            others = [k for k in chosen if k != j]
            rel, rel_err, rel_flags, _ = relative_flux(flux, flux_err, flags, j, others)
            ok = (rel_flags == 0) & np.isfinite(rel)
            ratios.append(np.std(rel[ok]) / np.median(rel_err[ok]) if ok.sum() > 2 else np.inf)
        worst = int(np.argmax(ratios))
        if ratios[worst] <= 3.0 and len(chosen) <= max_comparisons:
            break
        chosen.pop(worst)
    if not chosen:
        raise ValueError("no usable comparison star: every other source is flagged in more "
                         f"than {100 * (1 - min_good):.0f}% of the frames")
    return [int(c) for c in chosen]


class ComparisonWarning(UserWarning):
    """A comparison star chosen by hand looks unsuitable (variable, saturated, blended or
    often flagged); the message names it and says why."""


SCATTER_LIMIT = 3.0
"""A comparison whose scatter about the others exceeds this many times its propagated error
is called variable (as in :func:`select_comparisons`)."""
FLAGGED_LIMIT = 0.1
"""A comparison flagged (any bit) in more than this fraction of the frames is heavily
flagged."""
SATURATED_BLENDED_LIMIT = 0.01
"""A comparison flagged ``SATURATED`` or ``BLENDED`` in more than this fraction of the frames
is called saturated or blended."""


def check_comparisons(flux, flux_err, flags, target, comparisons):
    """Reasons why comparison stars chosen by hand are unsuitable.

    Parameters
    ----------
    flux, flux_err : ndarray, shape (n_frames, n_sources)
        Fluxes and errors (e-).
    flags : ndarray of int, shape (n_frames, n_sources)
        Per-point :class:`~opticam_like.flags.PhotFlag` bits (frame flags included).
    target : int
        Column index (0-based) of the target.
    comparisons : sequence of int
        Column indices (0-based) of the comparisons.

    Returns
    -------
    dict of int to list of str
        Per column index of an unsuitable comparison, the reasons: ``'variable (scatter
        x.x times its error about stars ...)'``, ``'saturated in n% of the frames'``,
        ``'blended in n% of the frames'``, ``'flagged in n% of the frames'``. Empty when all
        are fine.

    Notes
    -----
    The scatter of a comparison is measured about an ensemble of up to five constant, clean
    stars of the field other than the target and itself (:func:`select_comparisons`, which
    drops variables; the other comparisons when the field has none): the standard deviation of
    its relative flux over unflagged frames divided by the median propagated error.
    """
    comparisons = [int(c) for c in comparisons]
    reasons = {}
    n_frames = flux.shape[0]
    try:  # the reference ensemble: clean, constant stars of the field (variables dropped)
        field = select_comparisons(flux, flux_err, flags, target,
                                   max_comparisons=5 + len(comparisons))
    except ValueError:
        field = []
    for c in comparisons:
        found = []
        others = [k for k in field if k != c][:5] or [k for k in comparisons if k != c]
        if others:
            rel, rel_err, rel_flags, _ = relative_flux(flux, flux_err, flags, c, others)
            ok = ((rel_flags & ~int(ADVISORY)) == 0) & np.isfinite(rel) & np.isfinite(rel_err)
            if ok.sum() > 2:
                ratio = np.std(rel[ok]) / np.median(rel_err[ok])
                if ratio > SCATTER_LIMIT:
                    found.append(f"variable (scatter {ratio:.1f} times its error about "
                                 f"stars {', '.join(str(k + 1) for k in others)})")
        star = np.asarray(flags[:, c], dtype=np.int64)
        for flag, word in ((PhotFlag.SATURATED, "saturated"), (PhotFlag.BLENDED, "blended")):
            fraction = np.mean((star & flag) != 0)
            if fraction > SATURATED_BLENDED_LIMIT:
                found.append(f"{word} in {100 * fraction:.0f}% of the frames")
        fraction = np.mean(star != 0) if n_frames else 0.0
        if fraction > FLAGGED_LIMIT:
            found.append(f"flagged in {100 * fraction:.0f}% of the frames")
        if found:
            reasons[c] = found
    return reasons


def parse_source(text):
    """A star as given on the command line: an ID, ``X,Y`` or ``X,Y@FRAME`` (px in a
    camera's reference frame), or ``RA,DEC@sky`` (deg, ICRS).

    Parameters
    ----------
    text : str

    Returns
    -------
    int, tuple (x, y) or dict
        As accepted by :func:`source_id`.

    Raises
    ------
    ValueError
        When ``text`` is none of these (argparse reports it with the option name).
    """
    text = str(text).strip()
    if text.lstrip("+").isdigit():
        return int(text)
    position, _, frame = text.partition("@")
    try:
        a, b = (float(v) for v in position.split(","))
    except ValueError:
        raise ValueError(f"{text!r}: expected an ID, X,Y, X,Y@FRAME or RA,DEC@sky") from None
    if frame.lower() == "sky":
        return {"ra": a, "dec": b}
    return {"x": a, "y": b, "frame": frame} if frame else (a, b)


def _sky_position(out_directory, frame, ra, dec):
    """Pixel position of RA/Dec (deg) in a camera's stack, through the stack's WCS."""
    from astropy.coordinates import SkyCoord
    from astropy.wcs import WCS

    path = schema.stack_path(out_directory, frame)
    if not path.is_file():
        raise MissingOutputError(f"{path} does not exist: run Reducer.create_catalogs() first")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcs = WCS(fits.getheader(path))
    if not wcs.has_celestial:
        raise ConfigError(f"a star was given by RA/Dec, but the {frame} stack ({path}) carries "
                          "no WCS (the frames have no celestial WCS): give its catalogue ID "
                          "or its (x, y) position instead")
    x, y = wcs.celestial.world_to_pixel(SkyCoord(ra, dec, unit="deg"))
    return float(x), float(y)


def source_id(out_directory, filter, source, tolerance=3.0):
    """Catalogue ID of a star given by ID, by position or by RA/Dec.

    Parameters
    ----------
    out_directory : str or Path
        The Reducer's output directory (reads ``cat/{frame}_catalog.ecsv``).
    filter : str
        The filter being measured (the default frame of a position).
    source : int, tuple (x, y), dict or SkyCoord
        A catalogue ID (the night-wide ID with several cameras); ``(x, y)`` (px, 0-based) in
        the reference frame of ``filter``; ``{"x": ..., "y": ..., "frame": "g"}`` in the
        reference frame of camera ``"g"``; ``{"ra": ..., "dec": ...}`` (deg) or a
        ``SkyCoord`` when the stacks carry a celestial WCS.
    tolerance : float
        Largest distance (px) between the position and the star.

    Returns
    -------
    int
        The star's catalogue ID, valid in ``filter``.

    Raises
    ------
    ConfigError
        An unrecognised ``source``; a position in another camera's frame while the cameras
        have their own IDs (not matched into one night catalogue); RA/Dec without a WCS.
    ReductionError
        No star within ``tolerance`` of the position.
    MissingOutputError
        The catalogue (or stack) of the frame does not exist.
    """
    if isinstance(source, Integral) and not isinstance(source, bool):
        return int(source)
    frame, position = filter, None
    if hasattr(source, "icrs"):
        source = {"ra": source.icrs.ra.deg, "dec": source.icrs.dec.deg}
    if isinstance(source, dict):
        unknown = set(source) - {"x", "y", "ra", "dec", "frame", "id"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)} in star {source!r}: give id, "
                              "x and y (with frame), or ra and dec")
        frame = source.get("frame") or filter
        if "id" in source:
            return int(source["id"])
        if {"x", "y"} <= set(source):
            position = (float(source["x"]), float(source["y"]))
        elif {"ra", "dec"} <= set(source):
            position = _sky_position(out_directory, frame, float(source["ra"]),
                                     float(source["dec"]))
    elif (isinstance(source, (tuple, list)) and len(source) == 2
          and all(isinstance(v, Real) for v in source)):
        position = (float(source[0]), float(source[1]))
    if position is None:
        raise ConfigError(f"a star must be a catalogue ID, (x, y), {{'x', 'y', 'frame'}} or "
                          f"{{'ra', 'dec'}}; got {source!r}")
    path = schema.catalog_path(out_directory, frame)
    if not path.is_file():
        raise MissingOutputError(f"{path} does not exist (frame {frame!r}): run "
                                 "Reducer.create_catalogs() first")
    catalog = Table.read(path)
    if frame != filter and not catalog.meta.get("night_ids", False):
        raise ConfigError(f"a position in the {frame} frame cannot name a {filter} star: the "
                          "cameras were not matched into one night catalogue, so their IDs "
                          f"differ; give the position in the {filter} frame")
    from .sky import nearest_source
    star = nearest_source(catalog, *position, tolerance=tolerance, frame=frame)
    log.info("%s: the star at (%.1f, %.1f) in the %s frame is ID %d", filter, *position, frame,
             star)
    return star


class DifferentialPhotometer:
    """Relative light curves from a reduced night (the ``lcs/`` tables of a Reducer).

    Parameters
    ----------
    out_directory : str or Path
        The Reducer's output directory.
    photometer : str, optional
        Name of the photometer table to use. Default: the only one; with several, the default
        of the run that wrote them (the first photometer given to ``Reducer.photometry``,
        recorded in each table's ``PHOTDFLT`` keyword), which is logged; when the tables
        disagree (written by different runs), it must be given.
    save : bool
        Write the light curve (ECSV) and its plot (PDF) under ``relative_light_curves/``.

    Examples
    --------
    >>> lc = DifferentialPhotometer("night/reduced").get_relative_light_curve(
    ...     "g", target=2, comparisons=[1, 3])                        # doctest: +SKIP
    """

    def __init__(self, out_directory, photometer=None, save=True):
        self.out_directory = Path(out_directory)
        if not (self.out_directory / schema.LCS).is_dir():
            raise MissingOutputError(f"{self.out_directory / schema.LCS} does not exist: run "
                                     "Reducer.photometry() first")
        self.photometer = photometer
        self.save = save

    def photometers(self, filter):
        """Names of the photometer tables available for a filter."""
        return schema.photometer_names(self.out_directory, filter)

    def load(self, filter, photometer=None):
        """The per-frame photometry table of a filter and photometer.

        Raises
        ------
        MissingOutputError
            When there is no table for that filter/photometer (the message lists what exists;
            a ``FileNotFoundError``).
        ConfigError
            When no photometer is named and the filter's tables name different defaults.
        """
        available = self.photometers(filter)
        name = photometer or self.photometer
        if name is None and len(available) > 1:
            name = self._run_default(filter, available)
        if name is None and available:
            name = available[0]
        path = schema.photometry_path(self.out_directory, filter, name)
        if name is None or not path.is_file():
            raise MissingOutputError(f"no photometry for filter {filter!r} and photometer "
                                     f"{name!r} in {self.out_directory / schema.LCS}; "
                                     f"available: {available or 'none'}")
        log.info("filter %s: photometer %s", filter, name)
        return Table.read(path, astropy_native=True)

    def _run_default(self, filter, available):
        """The default photometer recorded by the run that wrote the tables of a filter."""
        defaults = {fits.getheader(schema.photometry_path(self.out_directory, filter, name),
                                   1).get(schema.DEFAULT_PHOTOMETER_KEY) for name in available}
        if len(defaults) != 1 or None in defaults or not defaults <= set(available):
            raise ConfigError(f"filter {filter!r} has tables of several photometers "
                              f"({', '.join(available)}) from different runs; give "
                              "photometer=")
        name = defaults.pop()
        log.info("filter %s: photometers %s; using %s, the run's default (give photometer= "
                 "to choose)", filter, ", ".join(available), name)
        return name

    def get_relative_light_curve(self, filter, target, comparisons=None, photometer=None,
                                 max_comparisons=5, tolerance=3.0):
        """The relative light curve of a target.

        Parameters
        ----------
        filter : str
            Filter name (as in ``cat/{filter}_catalog.ecsv``).
        target : int, tuple (x, y), dict or SkyCoord
            The target: its catalogue ID (1-based, brightest = 1; with several cameras the
            night-wide ID, the same in every camera), its ``(x, y)`` (px) in this filter's
            reference frame, ``{"x": ..., "y": ..., "frame": "g"}`` in another camera's frame,
            or RA/Dec when the stacks carry a WCS (see :func:`source_id`).
        comparisons : sequence, optional
            The comparison stars, each given like ``target``; chosen automatically when None
            (:func:`select_comparisons`). Stars chosen by hand are checked
            (:func:`check_comparisons`): each unsuitable one gets a :class:`ComparisonWarning`
            (also logged) that names it and the reason.
        photometer : str, optional
            Photometer table to use.
        max_comparisons : int
            Limit for the automatic choice.
        tolerance : float
            Largest distance (px) between a position and its star.

        Returns
        -------
        astropy.table.Table
            Columns: the time (``bjd_tdb`` or ``mjd_utc``, mid-exposure, a ``Time``;
            ``mjd_utc`` carries the site as ``location`` when it is known, ``bjd_tdb`` is
            barycentric), ``relative_flux``, ``relative_flux_err``
            (dimensionless), ``delta_mag``, ``delta_mag_err`` (mag), ``flags``, ``frame``;
            metadata: filter, target (ID), comparisons (IDs), weights, photometer, time scale,
            ``comparison_warnings``. The written ECSV reads back with
            ``TimeSeries.read(path, format="ascii.ecsv", time_column=...)``.

        Raises
        ------
        ConfigError
            The target among its comparisons, an ID beyond the catalogue, or no usable
            comparison (a ``ValueError``); a position or RA/Dec that cannot be used (see
            :func:`source_id`, which also raises ``ReductionError`` when no star is near).
        """
        target = source_id(self.out_directory, filter, target, tolerance)
        if comparisons is not None:
            comparisons = [source_id(self.out_directory, filter, c, tolerance)
                           for c in comparisons]
        table = self.load(filter, photometer)
        flux = np.asarray(table["flux"], dtype=float)
        flux_err = np.asarray(table["flux_err"], dtype=float)
        flags = np.asarray(table["flags"], dtype=np.int32) | np.asarray(
            table["frame_flags"], dtype=np.int32)[:, None]
        try:
            if comparisons is None:
                comp_index = select_comparisons(flux, flux_err, flags, target - 1,
                                                max_comparisons)
            else:
                comp_index = [int(c) - 1 for c in comparisons]
            rel, rel_err, rel_flags, weights = relative_flux(flux, flux_err, flags, target - 1,
                                                             comp_index)
        except ValueError as exc:
            raise ConfigError(f"{filter}, target {target}: {exc}") from exc
        notes = {}
        if comparisons is not None:
            for index, reasons in check_comparisons(flux, flux_err, flags, target - 1,
                                                    comp_index).items():
                notes[index + 1] = "; ".join(reasons)
                message = (f"{filter}: comparison star {index + 1} of target {target} looks "
                           f"unsuitable: {notes[index + 1]}")
                log.warning(message)
                warnings.warn(message, ComparisonWarning, stacklevel=2)
        tcol = time_column(table)
        out = Table()
        out[tcol] = table[tcol]
        out["relative_flux"] = rel * u.dimensionless_unscaled
        out["relative_flux_err"] = rel_err * u.dimensionless_unscaled
        with np.errstate(invalid="ignore", divide="ignore"):
            out["delta_mag"] = -2.5 * np.log10(rel) * u.mag
            out["delta_mag_err"] = 2.5 / np.log(10) * rel_err / rel * u.mag
        out["flags"] = rel_flags
        out["frame"] = table["frame"]
        name = table.meta.get("PHOTNAME", photometer or self.photometer)
        out.meta.update({
            "filter": filter, "target": int(target),
            "comparisons": [int(c) + 1 for c in comp_index],
            "weights": [float(w) for w in weights],
            "photometer": name, "time_scale": tcol,
            "normalisation": "median of unflagged frames = 1",
            "comparison_warnings": {int(k): v for k, v in notes.items()},
        })
        if self.save:
            from .plots.reduction import plot_relative_light_curve
            write_table(out, schema.light_curve_path(self.out_directory, filter, target, name))
            plot_relative_light_curve(out, schema.light_curve_path(
                self.out_directory, filter, target, name, suffix=".pdf"))
        return out
