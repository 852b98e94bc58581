"""Assemble the per-frame photometry of one filter and photometer into a table."""

import numpy as np
from astropy import units as u
from astropy.table import Table

from ..flags import PhotFlag

__all__ = ["photometry_table"]

VECTOR_COLUMNS = ("flux", "flux_err", "background", "area", "flags")
PSF_COLUMNS = {"fwhm_major": "fwhm_major", "fwhm_minor": "fwhm_minor", "psf_theta": "theta",
               "psf_beta": "beta"}
"""Per-frame columns of the fitted PSF and the attribute of the profile they come from."""

ELECTRON_PER_PIXEL = u.electron / u.pix**2
"""Unit of sky levels: electrons per pixel (a pixel's area is ``pix2``)."""

UNITS = {"exposure": u.s, "fwhm": u.pix, "fwhm_major": u.pix, "fwhm_minor": u.pix,
         "psf_theta": u.rad, "psf_beta": u.dimensionless_unscaled, "aperture_radius": u.pix,
         "background_median": ELECTRON_PER_PIXEL, "x": u.pix, "y": u.pix, "flux": u.electron,
         "flux_err": u.electron, "background": ELECTRON_PER_PIXEL, "area": u.pix**2}
"""Units of the columns of a photometry table (the others, ``frame``, ``file``, the flags and
the time, have none)."""


def photometry_table(name, files, times, time_name, exposures, rows, frame_flags, n_sources):
    """One row per frame (rejected frames included, with NaN values and a flag).

    Parameters
    ----------
    name : str
        Photometer name.
    files : list of str
        Frame file names, in time order.
    times : astropy.time.Time, shape (n_frames,)
        Mid-exposure times (the column is called ``time_name``).
    time_name : str
        ``'bjd_tdb'`` or ``'mjd_utc'``.
    exposures : ndarray, shape (n_frames,)
        Exposure times (s).
    rows : list of PhotometryRow or FrameFailure
        Photometry-pass results per frame.
    frame_flags : ndarray of int, shape (n_frames,)
        Flags of whole frames (``NOT_ALIGNED``, ``BAD_TIME``); ``FRAME_REJECTED`` is added
        here for failed frames.
    n_sources : int
        Catalogue length.

    Returns
    -------
    astropy.table.Table
        Columns ``frame``, ``file``, the time, ``exposure``, ``fwhm`` (geometric mean of the
        fitted PSF's axes), ``fwhm_major``, ``fwhm_minor``, ``psf_theta`` (radians from +x),
        ``psf_beta`` (NaN where the PSF could not be fitted), ``aperture_radius``,
        ``background_median``, ``frame_flags`` and per-source vectors of length ``n_sources``:
        ``x``, ``y``, ``flux``, ``flux_err``, ``background``, ``area``, ``flags``. Every
        measured column has its unit (:data:`UNITS`: ``pix``, ``s``, ``rad``, ``electron``,
        ``electron / pix2``, ``pix2``), so ``QTable.read`` of the written file gives
        Quantities; the time column keeps the ``location`` of ``times``. (FITS has no
        electron unit: :func:`~opticam_like.outputs.write_table` writes the table as a
        ``QTable``, whose units astropy keeps in the header's serialized-columns block.)
    """
    n_frames = len(files)
    vectors = {c: np.full((n_frames, n_sources), np.nan) for c in VECTOR_COLUMNS}
    vectors["flags"] = np.zeros((n_frames, n_sources), dtype=np.int32)
    x = np.full((n_frames, n_sources), np.nan)
    y = np.full((n_frames, n_sources), np.nan)
    fwhm = np.full(n_frames, np.nan)
    shape = {c: np.full(n_frames, np.nan) for c in PSF_COLUMNS}
    radius = np.full(n_frames, np.nan)
    bkg = np.full(n_frames, np.nan)
    frame_flags = np.array(frame_flags, dtype=np.int32)
    noise_methods = set()
    for i, row in enumerate(rows):
        if not hasattr(row, "results"):
            frame_flags[i] |= PhotFlag.FRAME_REJECTED
            continue
        result = row.results[name]
        for column in VECTOR_COLUMNS:
            vectors[column][i] = result[column]
        x[i], y[i] = row.x, row.y
        fwhm[i], bkg[i] = row.fwhm, row.background_median
        psf = getattr(row, "psf", None)
        if psf is not None:
            for column, attribute in PSF_COLUMNS.items():
                shape[column][i] = getattr(psf, attribute)
        radius[i] = result["meta"].get("radius", np.nan)
        noise_methods.add(result["meta"].get("noise_method", ""))
    vectors["flags"] |= frame_flags[:, None]
    table = Table()
    table["frame"] = np.arange(n_frames)
    table["file"] = files
    table[time_name] = times
    table["exposure"] = np.asarray(exposures, dtype=float)
    table["fwhm"] = fwhm
    for column, values in shape.items():
        table[column] = values
    table["aperture_radius"] = radius
    table["background_median"] = bkg
    table["frame_flags"] = frame_flags
    table["x"], table["y"] = x, y
    for column in VECTOR_COLUMNS:
        table[column] = vectors[column]
    for column, unit in UNITS.items():
        table[column].unit = unit
    table.meta["NOISE"] = ",".join(sorted(m for m in noise_methods if m))
    return table
