"""Differential photometry: a target over a weighted ensemble of comparison stars.

The ensemble is the inverse-variance weighted mean of the comparison light curves, each first
normalised by its median, with weights fixed per star (from its median fractional error), so
the ensemble is one fixed linear combination of the comparisons and its error propagates
exactly (Broeg, Fernandez & Neuhaeuser 2005, AN 326, 134, give the iterative weighting idea;
we keep weights constant in time). The relative flux is ``target / ensemble`` normalised to a
median of 1; its error combines the target's and the ensemble's in quadrature.
"""

import logging
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from . import schema
from .errors import ConfigError, MissingOutputError
from .flags import PhotFlag
from .outputs import write_table
from .schema import time_column

__all__ = ["DifferentialPhotometer", "relative_flux", "select_comparisons", "time_column"]

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
                                 max_comparisons=5):
        """The relative light curve of a target.

        Parameters
        ----------
        filter : str
            Filter name (as in ``cat/{filter}_catalog.ecsv``).
        target : int
            Catalogue ID of the target (1-based, brightest = 1).
        comparisons : sequence of int, optional
            Catalogue IDs of the comparison stars; chosen automatically when None
            (:func:`select_comparisons`).
        photometer : str, optional
            Photometer table to use.
        max_comparisons : int
            Limit for the automatic choice.

        Returns
        -------
        astropy.table.Table
            Columns: the time (``bjd_tdb`` or ``mjd_utc``, mid-exposure), ``relative_flux``,
            ``relative_flux_err``, ``delta_mag``, ``delta_mag_err``, ``flags``, ``frame``;
            metadata: filter, target, comparisons, weights, photometer, time scale.
        """
        table = self.load(filter, photometer)
        flux = np.asarray(table["flux"], dtype=float)
        flux_err = np.asarray(table["flux_err"], dtype=float)
        flags = np.asarray(table["flags"], dtype=np.int32) | np.asarray(
            table["frame_flags"], dtype=np.int32)[:, None]
        if comparisons is None:
            comp_index = select_comparisons(flux, flux_err, flags, target - 1, max_comparisons)
        else:
            comp_index = [int(c) - 1 for c in comparisons]
        rel, rel_err, rel_flags, weights = relative_flux(flux, flux_err, flags, target - 1,
                                                         comp_index)
        tcol = time_column(table)
        out = Table()
        out[tcol] = table[tcol]
        out["relative_flux"] = rel
        out["relative_flux_err"] = rel_err
        with np.errstate(invalid="ignore", divide="ignore"):
            out["delta_mag"] = -2.5 * np.log10(rel)
            out["delta_mag_err"] = 2.5 / np.log(10) * rel_err / rel
        out["flags"] = rel_flags
        out["frame"] = table["frame"]
        name = table.meta.get("PHOTNAME", photometer or self.photometer)
        out.meta.update({
            "filter": filter, "target": int(target),
            "comparisons": [int(c) + 1 for c in comp_index],
            "weights": [float(w) for w in weights],
            "photometer": name, "time_scale": tcol,
            "normalisation": "median of unflagged frames = 1",
        })
        if self.save:
            from .plots.reduction import plot_relative_light_curve
            write_table(out, schema.light_curve_path(self.out_directory, filter, target, name))
            plot_relative_light_curve(out, schema.light_curve_path(
                self.out_directory, filter, target, name, suffix=".pdf"))
        return out
