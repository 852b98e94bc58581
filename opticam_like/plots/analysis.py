"""Figures of the variability analysis (:mod:`opticam_like.analysis`); they compute nothing.

Every ``plot_*`` function takes the tables returned by :class:`opticam_like.analysis.Analyzer`
(one table, or a dict ``{label: table}`` drawn together), returns a matplotlib ``Figure`` and,
when ``path`` is given, writes it as a PDF. Figures are made without pyplot (no screen, no
global state); :func:`save_analysis_report` writes several of them into one multi-page PDF.
"""

from astropy import units as u
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

__all__ = [
    "plot_periodogram",
    "plot_power_spectrum",
    "plot_fold",
    "plot_lags",
    "plot_cross_correlation",
    "save_analysis_report",
]


def _labelled(results):
    return results if isinstance(results, dict) else {None: results}


def _save(figure, path):
    if path is not None:
        figure.savefig(path, format="pdf")
    return figure


def _frequency_label(column):
    return f"Frequency [{column.unit.to_string()}]"


def plot_periodogram(periodograms, best_frequency=None, path=None):
    """Lomb-Scargle periodograms.

    Parameters
    ----------
    periodograms : `~astropy.table.QTable` or dict of them
        Results of :meth:`Analyzer.lomb_scargle`.
    best_frequency : dict or tuple or None
        ``{label: (frequency, error)}`` (or one tuple): marked with a vertical line.
    path : str or Path or None
        PDF to write.

    Returns
    -------
    `~matplotlib.figure.Figure`
    """
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.add_subplot()
    best = _labelled(best_frequency) if best_frequency is not None else {}
    for label, table in _labelled(periodograms).items():
        name = label or table.meta.get("band")
        line, = axes.plot(table["frequency"].value, table["power"], lw=0.8, label=name)
        if label in best:
            frequency, error = best[label]
            value = frequency.to_value(table["frequency"].unit)
            axes.axvline(value, color=line.get_color(), ls="--", lw=0.8,
                         label=f"{name}: f = {value:.6g} +/- "
                               f"{error.to_value(table['frequency'].unit):.2g}")
    axes.set_xlabel(_frequency_label(table["frequency"]))
    axes.set_ylabel("Lomb-Scargle power")
    axes.legend(fontsize="small")
    return _save(figure, path)


def plot_power_spectrum(spectra, path=None):
    """Averaged power spectra with errors and the white-noise level.

    Parameters
    ----------
    spectra : `~astropy.table.QTable` or dict of them
        Results of :meth:`Analyzer.power_spectrum`.
    path : str or Path or None

    Returns
    -------
    `~matplotlib.figure.Figure`
    """
    figure = Figure(figsize=(8, 5), layout="constrained")
    axes = figure.add_subplot()
    for label, table in _labelled(spectra).items():
        name = label or table.meta.get("band")
        bars = axes.errorbar(table["frequency"].value, table["power"].value,
                             yerr=table["power_err"].value, fmt=".", ms=3, lw=0.6,
                             label=f"{name} ({table.meta['n_segments']} segments)")
        axes.axhline(table.meta["noise_level"].to_value(table["power"].unit),
                     color=bars[0].get_color(), ls=":", lw=0.8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel(_frequency_label(table["frequency"]))
    norm = "(rms/mean)$^2$" if table.meta["norm"] == "frac" else "rms$^2$"
    axes.set_ylabel(f"Power [{norm} / {table['frequency'].unit.to_string()}]")
    axes.set_title("Power spectra (dotted: noise level from the errors)", fontsize="medium")
    axes.legend(fontsize="small")
    return _save(figure, path)


def plot_fold(folds, path=None):
    """Folded light curves (points and phase bins), shown over two cycles.

    Parameters
    ----------
    folds : tuple or dict of tuples
        ``(points, bins)`` as returned by :meth:`Analyzer.fold`.
    path : str or Path or None

    Returns
    -------
    `~matplotlib.figure.Figure`
    """
    folds = _labelled(folds)
    figure = Figure(figsize=(8, 3 * len(folds)), layout="constrained")
    for number, (label, (points, bins)) in enumerate(folds.items()):
        axes = figure.add_subplot(len(folds), 1, number + 1)
        for shift in (0, 1):
            axes.errorbar(points["phase"] + shift, points["relative_flux"],
                          yerr=points["relative_flux_err"], fmt=".", ms=2, lw=0.3,
                          color="0.6", zorder=1, rasterized=True)
            axes.errorbar(bins["phase"] + shift, bins["relative_flux"],
                          yerr=bins["relative_flux_err"], fmt="o", ms=4, color="C3", zorder=2)
        period = points.meta["period"]
        axes.set_title(f"{label or points.meta.get('band')}: P = {period.to_value(u.s):.6g} s "
                       f"({period.to_value(u.day):.6g} d), {len(points)} points",
                       fontsize="medium")
        axes.set_xlim(0, 2)
        axes.set_ylabel("Relative flux")
    axes.set_xlabel("Phase")
    return _save(figure, path)


def plot_lags(cross_spectra, lag=None, path=None):
    """Phase lag, time lag and coherence against frequency.

    Parameters
    ----------
    cross_spectra : `~astropy.table.QTable` or dict of them
        Results of :meth:`Analyzer.cross_spectrum`.
    lag : `~astropy.table.QTable` or dict of them, or None
        Results of :meth:`Analyzer.lag`, drawn as a box over their frequency range.
    path : str or Path or None

    Returns
    -------
    `~matplotlib.figure.Figure`
    """
    figure = Figure(figsize=(8, 8), layout="constrained")
    phase_axes, time_axes, coherence_axes = figure.subplots(3, 1, sharex=True)
    for label, table in _labelled(cross_spectra).items():
        name = label or f"{table.meta['band2']} vs {table.meta['band1']}"
        frequency = table["frequency"].value
        phase_axes.errorbar(frequency, table["phase_lag"].to_value(u.rad),
                            yerr=table["phase_lag_err"].to_value(u.rad), fmt=".", ms=3,
                            lw=0.6, label=name)
        time_axes.errorbar(frequency, table["time_lag"].to_value(u.s),
                           yerr=table["time_lag_err"].to_value(u.s), fmt=".", ms=3, lw=0.6)
        coherence_axes.plot(frequency, table["coherence"], ".", ms=3)
    for label, row in (_labelled(lag).items() if lag is not None else []):
        low = row.meta["minimum_frequency"].to_value(table["frequency"].unit)
        high = row.meta["maximum_frequency"].to_value(table["frequency"].unit)
        phase = row["phase_lag"][0].to_value(u.rad)
        error = row["phase_lag_err"][0].to_value(u.rad)
        phase_axes.fill_between([low, high], phase - error, phase + error, alpha=0.3,
                                label=f"{label or row.meta['band2']}: {phase:.3f} +/- "
                                      f"{error:.3f} rad")
    phase_axes.axhline(0, color="0.5", lw=0.5)
    time_axes.axhline(0, color="0.5", lw=0.5)
    phase_axes.set_ylabel("Phase lag [rad]")
    time_axes.set_ylabel("Time lag [s]")
    coherence_axes.set_ylabel("Coherence")
    coherence_axes.set_xlabel(_frequency_label(table["frequency"]))
    coherence_axes.set_xscale("log")
    phase_axes.set_title("Positive lag: the second band lags the first", fontsize="medium")
    phase_axes.legend(fontsize="small")
    return _save(figure, path)


def plot_cross_correlation(correlations, path=None):
    """Cross-correlation functions against lag.

    Parameters
    ----------
    correlations : `~astropy.table.QTable` or dict of them
        Results of :meth:`Analyzer.cross_correlation`.
    path : str or Path or None

    Returns
    -------
    `~matplotlib.figure.Figure`
    """
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for label, table in _labelled(correlations).items():
        axes.plot(table["lag"].to_value(u.s), table["correlation"], lw=0.8,
                  label=label or f"{table.meta['band2']} vs {table.meta['band1']}")
    axes.axvline(0, color="0.5", lw=0.5)
    axes.set_xlabel("Lag [s] (positive: the second band lags the first)")
    axes.set_ylabel("Correlation")
    axes.legend(fontsize="small")
    return _save(figure, path)


_PAGES = {
    "periodogram": lambda results: plot_periodogram(results["periodogram"],
                                                    results.get("best_frequency")),
    "power_spectrum": lambda results: plot_power_spectrum(results["power_spectrum"]),
    "fold": lambda results: plot_fold(results["fold"]),
    "cross_spectrum": lambda results: plot_lags(results["cross_spectrum"], results.get("lag")),
    "cross_correlation": lambda results: plot_cross_correlation(results["cross_correlation"]),
}


def save_analysis_report(results, path):
    """Write the analysis results into one multi-page PDF.

    Parameters
    ----------
    results : dict
        Any of the keys ``"periodogram"`` (with optional ``"best_frequency"``),
        ``"power_spectrum"``, ``"fold"``, ``"cross_spectrum"`` (with optional ``"lag"``) and
        ``"cross_correlation"``, each holding what the matching ``plot_*`` function takes
        (e.g. :meth:`Analyzer.summary`). Empty entries are skipped.
    path : str or Path
        The PDF to write.

    Returns
    -------
    int
        Number of pages written.

    Raises
    ------
    ValueError
        If ``results`` has an unknown key or nothing to plot.
    """
    unknown = set(results) - set(_PAGES) - {"best_frequency", "lag"}
    if unknown:
        raise ValueError(f"unknown result kinds {sorted(unknown)}; known: {sorted(_PAGES)}")
    pages = [key for key in _PAGES if key in results and _has_content(results[key])]
    if not pages:
        raise ValueError("nothing to plot")
    with PdfPages(path) as pdf:
        for key in pages:
            pdf.savefig(_PAGES[key](results))
    return len(pages)


def _has_content(result):
    return bool(result) if isinstance(result, dict) else result is not None
