"""Diagnostic PDFs of a reduction: header times, backgrounds, alignment, catalogues, light curves.

Figures are built with :class:`matplotlib.figure.Figure` (no pyplot state, no screen) and
written atomically. They use fixed margins rather than constrained layout, which would draw
every figure twice (a third of the plotting time of a reduction).
"""

import numpy as np
from astropy.visualization import ImageNormalize, ZScaleInterval, AsinhStretch
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from ..outputs import atomic_path

__all__ = ["plot_header_times", "plot_background", "plot_alignment", "plot_catalogs",
           "plot_relative_light_curve"]


def _figure(width, height, bottom=0.1):
    """A figure with fixed margins."""
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.11, right=0.97, bottom=bottom, top=0.92, hspace=0.3)
    return fig


def _save(figures, path):
    with atomic_path(path) as tmp:
        with PdfPages(tmp) as pdf:
            for fig in figures:
                pdf.savefig(fig)


def plot_header_times(times, path):
    """Time stamps and their steps per filter.

    Parameters
    ----------
    times : dict of str to ndarray
        Per filter, mid-exposure times in seconds since the first frame of the night.
    path : str or Path
        Output PDF.
    """
    fig = _figure(8, 6)
    ax_t, ax_dt = fig.subplots(2, 1)
    for name, t in times.items():
        t = np.asarray(t)
        ax_t.plot(np.arange(len(t)), t, ".", ms=2, label=name)
        if len(t) > 1:
            ax_dt.plot(np.arange(1, len(t)), np.diff(t), ".", ms=2, label=name)
    ax_t.set(xlabel="frame (sorted by time)", ylabel="mid-exposure time - start (s)")
    ax_dt.set(xlabel="frame", ylabel="time step (s)", yscale="symlog")
    ax_t.legend(title="filter")
    fig.suptitle("Header times")
    _save([fig], path)


def plot_background(stats, path):
    """Global background median and rms against time, per filter.

    Parameters
    ----------
    stats : dict of str to (ndarray, ndarray, ndarray)
        Per filter: times (s since the night start), background median (e-/pixel), background
        rms (e-/pixel).
    path : str or Path
        Output PDF.
    """
    fig = _figure(8, 6)
    ax_b, ax_r = fig.subplots(2, 1, sharex=True)
    for name, (t, median, rms) in stats.items():
        ax_b.plot(t, median, ".", ms=2, label=name)
        ax_r.plot(t, rms, ".", ms=2, label=name)
    ax_b.set(ylabel="background median (e-/pixel)")
    ax_r.set(xlabel="time since start (s)", ylabel="background rms (e-/pixel)")
    ax_b.legend(title="filter")
    fig.suptitle("Global background")
    _save([fig], path)


def plot_alignment(drifts, path):
    """Frame shifts relative to the reference, per filter.

    Parameters
    ----------
    drifts : dict of str to (ndarray, ndarray, ndarray, ndarray)
        Per filter: times (s), dx, dy (pixels; NaN where a frame could not be aligned) and
        FWHM (pixels).
    path : str or Path
        Output PDF.
    """
    fig = _figure(8, 8, bottom=0.07)
    ax_x, ax_y, ax_f = fig.subplots(3, 1, sharex=True)
    for name, (t, dx, dy, fwhm) in drifts.items():
        ax_x.plot(t, dx, ".", ms=2, label=name)
        ax_y.plot(t, dy, ".", ms=2, label=name)
        ax_f.plot(t, fwhm, ".", ms=2, label=name)
    ax_x.set(ylabel="x shift (pixels)")
    ax_y.set(ylabel="y shift (pixels)")
    ax_f.set(xlabel="time since start (s)", ylabel="FWHM (pixels)")
    ax_x.legend(title="filter")
    fig.suptitle("Alignment to the reference frame")
    _save([fig], path)


def plot_catalogs(stacks, catalogs, path, radius=None):
    """Stacked image of each filter with its catalogue sources circled and numbered.

    Parameters
    ----------
    stacks : dict of str to ndarray
        Per filter, the aligned stack (background subtracted, e-).
    catalogs : dict of str to astropy.table.Table
        Per filter, the catalogue (``id``, ``x``, ``y``, ``fwhm``).
    path : str or Path
        Output PDF.
    radius : float, optional
        Circle radius (pixels); default twice the median FWHM.
    """
    figures = []
    for name, stack in stacks.items():
        catalog = catalogs[name]
        fig = _figure(8, 8, bottom=0.07)
        ax = fig.subplots()
        finite = np.isfinite(stack)
        norm = ImageNormalize(stack[finite] if finite.any() else stack,
                              interval=ZScaleInterval(), stretch=AsinhStretch())
        ax.imshow(stack, origin="lower", cmap="Greys_r", norm=norm)
        r = radius or 2 * float(np.nanmedian(catalog["fwhm"])) if len(catalog) else 5.0
        for row in catalog:
            ax.add_patch(Circle((row["x"], row["y"]), r, fill=False, color="tab:red", lw=0.8))
            ax.annotate(str(row["id"]), (row["x"] + r, row["y"] + r), color="tab:red",
                        fontsize=7)
        ax.set(title=f"{name}: {len(catalog)} sources", xlabel="x (pixels)",
               ylabel="y (pixels)")
        figures.append(fig)
    _save(figures, path)


def plot_relative_light_curve(table, path):
    """A relative light curve with its error bars; flagged points in grey.

    Parameters
    ----------
    table : astropy.table.Table
        Output of ``DifferentialPhotometer.get_relative_light_curve``.
    path : str or Path
        Output PDF.
    """
    tcol = table.meta["time_scale"]
    t = table[tcol]
    seconds = (t - t[0]).sec
    good = np.asarray(table["flags"]) == 0
    fig = _figure(10, 4, bottom=0.13)
    ax = fig.subplots()
    ax.errorbar(seconds[good], table["relative_flux"][good], table["relative_flux_err"][good],
                fmt=".", ms=2, lw=0.5, label="unflagged")
    if (~good).any():
        ax.plot(seconds[~good], table["relative_flux"][~good], "x", color="0.6", ms=3,
                label="flagged")
    ax.set(xlabel=f"time since {t[0].isot} ({tcol}) (s)", ylabel="relative flux",
           title=f"{table.meta['filter']}: source {table.meta['target']} / comparisons "
                 f"{table.meta['comparisons']}")
    ax.legend()
    _save([fig], path)
