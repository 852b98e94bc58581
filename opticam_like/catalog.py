"""From per-frame results to a catalogue: the reference frame, the stack's sources, the
transforms of frames that could not be aligned, and the guide stars of the photometry pass."""

from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.stats import sigma_clipped_stats
from astropy.table import Table

from .deblend import resolve_blends

from .alignment import Transform
from .errors import ReductionError
from .parallel import FrameFailure

__all__ = ["choose_reference", "catalog_from_stack", "interpolate_matrices", "guide_stars",
           "transforms_table", "transforms_from_table", "CATALOG_UNITS", "TRANSFORM_UNITS",
           "set_units"]

CATALOG_UNITS = {"x": u.pix, "y": u.pix, "flux": u.electron, "peak": u.electron,
                 "fwhm": u.pix, "npix": u.pix**2}
"""Units of the catalogue columns (``flux`` is e- per frame, ``peak`` e- in the brightest
pixel); ``id``, ``coverage`` and ``flags`` have none."""

TRANSFORM_UNITS = {"dx": u.pix, "dy": u.pix, "rms": u.pix, "fwhm": u.pix,
                   "background_median": u.electron / u.pix**2,
                   "background_rms": u.electron / u.pix**2}
"""Units of the transforms-table columns (the matrix mixes pixels and plain numbers: none)."""


def set_units(table, units):
    """Give the columns of ``table`` named in ``units`` their unit (in place; returns it).

    The columns stay plain ``Column`` objects, so arithmetic on them is unchanged; the units
    are written to the file (ECSV ``unit``, FITS ``TUNIT``) and ``QTable.read`` gives
    Quantities.
    """
    for name, unit in units.items():
        if name in table.colnames:
            table[name].unit = unit
    return table


def choose_reference(rows):
    """Index of the best reference among candidate frames.

    The frame with the most detected stars wins; ties go to the smaller FWHM.

    Parameters
    ----------
    rows : list of CatalogRow or FrameFailure
        Results of :func:`opticam_like.stages.detect_frame` on the candidates.

    Returns
    -------
    int or None
        Position in ``rows`` of the chosen frame; None when no frame has 3 or more stars.
    """
    best, key = None, None
    for position, row in enumerate(rows):
        if not hasattr(row, "n_detected") or row.n_detected < 3:
            continue
        fwhm = row.fwhm if np.isfinite(row.fwhm) else np.inf
        candidate = (row.n_detected, -fwhm)
        if key is None or candidate > key:
            best, key = position, candidate
    return best


def catalog_from_stack(stack, finder, max_sources=None):
    """Detect the catalogue sources on the aligned stack.

    Parameters
    ----------
    stack : RobustStack
        The aligned, background-subtracted frames (e-), combined robustly
        (:class:`~opticam_like.stacking.RobustStack`).
    finder : callable
        Source finder (``finder(data, rms, mask=None) -> Table``).
    max_sources : int, optional
        Keep the brightest ``max_sources``.

    Returns
    -------
    catalog : astropy.table.Table
        ``id`` (1-based, by decreasing flux), ``x``, ``y`` (reference frame, pixels), ``flux``
        (mean e- per frame), ``peak``, ``fwhm``, ``npix``, ``coverage`` (fraction of the
        stacked frames that cover the source), ``flags`` (finder flags); units in
        :data:`CATALOG_UNITS`.
    image : ndarray, shape (ny, nx)
        The stacked image (e- per frame; NaN where no frame contributed).

    Notes
    -----
    The rms of the stack is the sigma-clipped standard deviation of the fully covered
    pixels, scaled by ``sqrt(n_max / count)`` where fewer frames contributed. The finder's
    sources are then fitted with the stack's PSF and close pairs split
    (:func:`~opticam_like.deblend.resolve_blends`): positions are PSF-fitted and ``flux`` is
    the fitted total flux.
    """
    image = stack.image
    count = np.asarray(stack.count)
    n_max = max(int(count.max()), 1)
    full = (count == n_max) & np.isfinite(image)
    _, _, std = sigma_clipped_stats(image[full], sigma=3.0, maxiters=10)
    with np.errstate(divide="ignore"):
        rms = np.where(count > 0, std * np.sqrt(n_max / np.maximum(count, 1)), np.inf)
    uncovered = count == 0
    sources = finder(np.where(uncovered, 0.0, image), rms, mask=uncovered)
    sources = resolve_blends(image, float(std), sources, mask=uncovered)
    if max_sources is not None:
        sources = sources[:max_sources]
    catalog = Table()
    catalog["id"] = np.arange(1, len(sources) + 1)
    for name in ("x", "y", "flux", "peak", "fwhm", "npix"):
        catalog[name] = sources[name]
    xi = np.clip(np.rint(sources["x"]).astype(int), 0, image.shape[1] - 1)
    yi = np.clip(np.rint(sources["y"]).astype(int), 0, image.shape[0] - 1)
    catalog["coverage"] = count[yi, xi] / n_max
    catalog["flags"] = sources["flags"]
    set_units(catalog, CATALOG_UNITS)
    catalog.meta["stack_rms"] = float(std)
    catalog.meta["n_stacked"] = int(stack.n_frames)
    catalog.meta["stack_blocks"] = int(stack.n_blocks)
    return catalog, image


def guide_stars(catalog, n=10, min_coverage=0.9):
    """Indices (0-based) of the bright, clean, well covered sources used as guides.

    Parameters
    ----------
    catalog : astropy.table.Table
        From :func:`catalog_from_stack`.
    n : int
        At most this many.
    min_coverage : float
        Minimum coverage fraction.

    Returns
    -------
    ndarray of int
        Brightest first; the brightest sources whatever their flags when none is clean.
    """
    clean = (np.asarray(catalog["flags"]) == 0) & (np.asarray(catalog["coverage"])
                                                   >= min_coverage)
    index = np.flatnonzero(clean)[:n]
    if len(index) == 0:
        index = np.arange(min(n, len(catalog)))
    return index


def interpolate_matrices(matrices, aligned):
    """Transforms for every frame, interpolated where a frame could not be aligned.

    Parameters
    ----------
    matrices : ndarray, shape (n_frames, 3, 3)
        Reference -> frame matrices (anything where ``aligned`` is False).
    aligned : ndarray of bool, shape (n_frames,)
        Which frames have a measured transform.

    Returns
    -------
    ndarray, shape (n_frames, 3, 3)
        Each element linearly interpolated in frame order from the aligned frames (held
        constant beyond the first and last).

    Raises
    ------
    ValueError
        When no frame is aligned.
    """
    if not np.any(aligned):
        raise ValueError("no frame could be aligned")
    out = np.array(matrices, dtype=float)
    index = np.arange(len(out))
    for i in range(2):
        for j in range(3):
            out[~aligned, i, j] = np.interp(index[~aligned], index[aligned],
                                            out[aligned, i, j])
    out[:, 2] = [0.0, 0.0, 1.0]
    return out


def transforms_table(paths, rows):
    """The per-frame transforms of a filter (``cat/transforms_{filter}.ecsv``) and the frames
    that could not be aligned.

    Frames without a measured transform get one interpolated in frame order from the aligned
    frames (:func:`interpolate_matrices`), recorded with ``method = 'interpolated'``.

    Parameters
    ----------
    paths : list of str
        Frame files, in the order of ``rows``.
    rows : list of CatalogRow or FrameFailure
        Catalogue-pass results (:func:`opticam_like.stages.catalog_frame`).

    Returns
    -------
    table : astropy.table.Table
        Columns :data:`opticam_like.schema.TRANSFORM_COLUMNS`; each row's ``matrix``,
        ``method``, ``n_matches`` and ``rms`` are a :meth:`Transform.to_dict` record, read
        back with :func:`transforms_from_table`. ``aligned`` is False and ``reason`` says why
        where the transform is interpolated. Units in :data:`TRANSFORM_UNITS`.
    failures : list of FrameFailure
        The frames that failed or could not be aligned.

    Raises
    ------
    ReductionError
        When no frame is aligned.
    """
    n = len(rows)
    matrices = np.tile(np.eye(3), (n, 1, 1))
    aligned = np.zeros(n, dtype=bool)
    reasons = [""] * n
    failures = []
    for i, row in enumerate(rows):
        if isinstance(row, FrameFailure):
            reasons[i] = f"{row.stage}: {row.reason}"
            failures.append(row)
        elif row.transform is None:
            reasons[i] = f"alignment: {row.align_error}"
            failures.append(FrameFailure(paths[i], "alignment", row.align_error))
        else:
            matrices[i] = row.transform.matrix
            aligned[i] = True
    if not aligned.any():
        raise ReductionError(f"no frame could be aligned to the reference (first reason: "
                             f"{next((r for r in reasons if r), 'none')})")
    matrices = interpolate_matrices(matrices, aligned)
    records = [row.transform.to_dict() if ok else
               Transform(matrix, method="interpolated").to_dict()
               for row, matrix, ok in zip(rows, matrices, aligned)]
    table = Table()
    table["frame"] = np.arange(n)
    table["file"] = [Path(path).name for path in paths]
    table["matrix"] = np.array([r["matrix"] for r in records], dtype=float).reshape(-1, 6)
    table["dx"] = table["matrix"][:, 2]
    table["dy"] = table["matrix"][:, 5]
    for key in ("method", "n_matches", "rms"):
        table[key] = [r[key] for r in records]
    table["fwhm"] = [getattr(r, "fwhm", np.nan) for r in rows]
    table["n_trails"] = [len(getattr(r, "trails", ())) for r in rows]
    table["background_median"] = [getattr(r, "background_median", np.nan) for r in rows]
    table["background_rms"] = [getattr(r, "background_rms_median", np.nan) for r in rows]
    table["aligned"] = aligned
    table["reason"] = reasons
    return set_units(table, TRANSFORM_UNITS), failures


def transforms_from_table(table):
    """The transforms of a transforms table, one per frame (inverse of
    :func:`transforms_table`).

    Returns
    -------
    list of Transform
    """
    return [Transform.from_dict(row) for row in table]
