"""Variability analysis of relative light curves: periodograms, power spectra, folding, lags.

:class:`Analyzer` takes the relative light curves of any number of bands (astropy Tables with a
``Time`` column ``bjd_tdb``, ``bmjd_tdb`` or ``mjd_utc``, and ``relative_flux``,
``relative_flux_err``, ``flags``) and returns astropy ``QTable`` objects with units. Plots of the
results are made by :mod:`opticam_like.plots.analysis`.

Conventions
-----------
* Times are seconds since :attr:`Analyzer.reference_time` (the earliest time of all bands).
* Frequencies are in :attr:`Analyzer.frequency_unit`: Hz for data with a cadence shorter than
  an hour (high-speed photometry), else 1/d. Plain numbers given as frequencies are read in
  that unit; Quantities are converted.
* Flagged points (``flags != 0``) and points with a non-finite flux or a non-positive error are
  excluded unless ``include_flagged=True`` (the advisory ``BLENDED`` does not exclude; non-finite
  values are always excluded); how many is
  logged and kept in :attr:`Analyzer.n_excluded`.
* Power and cross spectra are averaged over segments of equal length that lie inside good time
  intervals (:func:`opticam_like.timing.good_time_intervals`), on a regular grid of the
  (coarsest) cadence; nothing is interpolated across gaps. The gridded bands are stingray
  light curves whose GTIs are the segments, and the averaging is stingray's
  (`~stingray.AveragedPowerspectrum`, `~stingray.AveragedCrossspectrum`);
  :meth:`Analyzer.to_stingray` gives a band as a `stingray.Lightcurve`. stingray is imported
  on first use (its import takes seconds).
* **Lag sign**: a positive phase or time lag of ``band2`` with respect to ``band1`` means that
  ``band2`` lags (varies later than) ``band1``. For ``flux_b = 1 + A sin(2 pi f t - lag_b)``
  the measured phase lag is ``lag_band2 - lag_band1``.
"""

from contextlib import contextmanager
import logging
from dataclasses import dataclass
from pathlib import Path
import warnings

import numpy as np
from astropy import units as u
from astropy.table import QTable, Table
from astropy.time import Time, TimeDelta
from astropy.timeseries import LombScargle
from scipy.optimize import minimize_scalar

from .errors import ConfigError, MissingOutputError
from .flags import ADVISORY
from .schema import TIME_COLUMNS, light_curve_paths
from .timing import good_time_intervals, intersect_gtis

__all__ = ["Analyzer", "TIME_COLUMNS", "phase_bin"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Band:
    """The usable points of one band, sorted by time."""

    name: str
    seconds: np.ndarray
    flux: np.ndarray
    error: np.ndarray
    cadence: float

    @property
    def gtis(self):
        return good_time_intervals(self.seconds, cadence=self.cadence)


def _time_column(table):
    """Name of the time column of a light curve and its values as a `Time`."""
    for name, (fmt, scale) in TIME_COLUMNS.items():
        if name in table.colnames:
            column = table[name]
            return name, column if isinstance(column, Time) else Time(
                np.asarray(column, float), format=fmt, scale=scale)
    others = [name for name in table.colnames if isinstance(table[name], Time)]
    if len(others) == 1:
        return others[0], table[others[0]]
    raise ValueError("a light curve needs one Time column (bjd_tdb, bmjd_tdb or mjd_utc); "
                     f"columns are {table.colnames}")


def _as_quantity(value, unit, name):
    if isinstance(value, u.Quantity):
        try:
            return value.to(unit)
        except u.UnitConversionError:
            raise ValueError(f"{name} must be in units of {unit}, got {value.unit}") from None
    return u.Quantity(value, unit)


def _period_seconds(period_or_frequency):
    if not isinstance(period_or_frequency, u.Quantity):
        raise TypeError("give the period or frequency as a Quantity (e.g. 7.4 * u.s or "
                        "0.135 * u.Hz)")
    value = period_or_frequency
    if value.unit.physical_type == "time":
        period = value.to_value(u.s)
    elif value.unit.physical_type == "frequency":
        period = 1.0 / value.to_value(u.Hz)
    else:
        raise ValueError(f"a period or a frequency is needed, got unit {value.unit}")
    if not np.isfinite(period) or period <= 0:
        raise ValueError(f"the period must be finite and > 0, got {value}")
    return float(period)


def phase_bin(phase, flux, flux_err, n_bins):
    """Mean light curve in phase bins that cover [0, 1) exactly and keep every point.

    Bin ``k`` is the half-open interval ``[k / n_bins, (k + 1) / n_bins)``; a point belongs to
    exactly one bin, so the counts add up to the number of points.

    Parameters
    ----------
    phase : array, shape ``(n,)``
        Phases in [0, 1).
    flux, flux_err : array, shape ``(n,)``
        Values and their errors.
    n_bins : int
        Number of bins (>= 1).

    Returns
    -------
    `~astropy.table.QTable`, ``n_bins`` rows
        ``phase`` (bin centre), ``phase_min``, ``phase_max``, ``relative_flux`` (mean),
        ``relative_flux_err`` (propagated: ``sqrt(sum err^2) / k``), ``scatter_err``
        (``std / sqrt(k)``, NaN for ``k < 2``) and ``n_points`` (``k``). Empty bins have NaN
        values and ``n_points = 0``.

    Raises
    ------
    ValueError
        If a phase is outside [0, 1) or ``n_bins < 1``.
    """
    phase = np.asarray(phase, float)
    flux = np.asarray(flux, float)
    flux_err = np.asarray(flux_err, float)
    n_bins = int(n_bins)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if np.any(~(phase >= 0) | ~(phase < 1)):
        raise ValueError("phases must lie in [0, 1)")
    edges = np.arange(n_bins + 1) / n_bins
    index = np.searchsorted(edges, phase, side="right") - 1
    counts = np.bincount(index, minlength=n_bins)
    sums = np.bincount(index, flux, minlength=n_bins)
    squares = np.bincount(index, flux**2, minlength=n_bins)
    variances = np.bincount(index, flux_err**2, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts
        scatter = np.sqrt(np.maximum(squares / counts - mean**2, 0) * counts / (counts - 1))
        scatter_err = np.where(counts > 1, scatter / np.sqrt(counts), np.nan)
        propagated = np.sqrt(variances) / counts
    return QTable({
        "phase": 0.5 * (edges[:-1] + edges[1:]),
        "phase_min": edges[:-1],
        "phase_max": edges[1:],
        "relative_flux": mean,
        "relative_flux_err": propagated,
        "scatter_err": scatter_err,
        "n_points": counts,
    })


def _log_groups(n_frequencies, log_rebin):
    """Group index of each Fourier frequency ``j = 1..n`` for logarithmic rebinning.

    Each group is ``1 + log_rebin`` times wider than the previous one (at least one frequency).
    """
    if log_rebin is None:
        return np.arange(n_frequencies)
    if not log_rebin > 0:
        raise ValueError(f"log_rebin must be > 0, got {log_rebin}")
    groups = np.empty(n_frequencies, int)
    start, width, group = 0, 1.0, 0
    while start < n_frequencies:
        stop = max(start + 1, int(round(start + width)))
        groups[start:stop] = group
        start, width, group = stop, width * (1 + log_rebin), group + 1
    return groups


def _group_mean(values, groups):
    """Mean of ``values`` (shape ``(n,)``, real or complex) in each group, and the group sizes."""
    counts = np.bincount(groups)
    total = np.bincount(groups, values.real)
    if np.iscomplexobj(values):
        total = total + 1j * np.bincount(groups, values.imag)
    return total / counts, counts


@contextmanager
def _stingray_quiet():
    """Silence stingray's warnings: at import about numba, then that it assumes Poisson errors,
    and about the Poisson-based lag errors that `AveragedCrossspectrum` computes on creation
    (NaN for relative fluxes; :meth:`Analyzer.cross_spectrum` computes its own errors)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="stingray")
        yield


def _segment_starts(gtis, dt, n_bins):
    """Start times of segments of ``n_bins`` bins of width ``dt``, laid end to end from the start
    of each good time interval (shape ``(n_gti, 2)``); the ones that fit, sorted."""
    lengths = np.floor((gtis[:, 1] - gtis[:, 0]) / dt + 1e-6).astype(int) // n_bins
    return np.concatenate([np.empty(0)] + [start + np.arange(n) * n_bins * dt
                                           for start, n in zip(gtis[:, 0], lengths)])


def _grid(data, starts, dt, n_bins):
    """Mean flux, its variance and the number of points of a band in the bins
    ``[start + k dt, start + (k + 1) dt)``, ``k < n_bins``, of each of the sorted,
    non-overlapping segment ``starts``; arrays of shape ``(n_starts, n_bins)`` (NaN when empty)."""
    segment = np.searchsorted(starts, data.seconds, side="right") - 1
    offset = data.seconds - starts[np.maximum(segment, 0)]
    inside = (segment >= 0) & (offset < n_bins * dt)
    index = (segment[inside] * n_bins
             + np.minimum((offset[inside] / dt).astype(int), n_bins - 1))
    size = starts.size * n_bins
    counts = np.bincount(index, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = np.bincount(index, data.flux[inside], minlength=size) / counts
        variance = np.bincount(index, data.error[inside] ** 2, minlength=size) / counts**2
    shape = (starts.size, n_bins)
    return flux.reshape(shape), variance.reshape(shape), counts.reshape(shape)


class Analyzer:
    """Variability analysis of the relative light curves of one or more bands.

    Parameters
    ----------
    light_curves : dict or list of `~astropy.table.Table`
        ``{band: table}``, or tables whose ``meta["filter"]`` names the band. Each table has a
        time column (``bjd_tdb``, ``bmjd_tdb`` or ``mjd_utc``, a ``Time`` or plain JD/MJD
        numbers; the same for all bands), ``relative_flux``, ``relative_flux_err`` and
        optionally ``flags`` (int, nonzero = flagged).
    include_flagged : bool
        Keep flagged points (default: exclude them).
    frequency_unit : `~astropy.units.Unit` or None
        Unit of the frequencies of all results; ``None`` chooses Hz when the median cadence is
        shorter than one hour, else 1/d.

    Attributes
    ----------
    bands : list of str
    reference_time : `~astropy.time.Time`
        Time zero of the analysis (earliest point of all bands).
    time_column : str
        Name of the time column (and so the time scale).
    n_excluded : dict
        ``{band: number of points excluded}``.

    Raises
    ------
    ValueError
        If a band is missing, duplicated, lacks a column, or has fewer than 3 usable points.
    """

    def __init__(self, light_curves, include_flagged=False, frequency_unit=None):
        if isinstance(light_curves, dict):
            tables = dict(light_curves)
        else:
            tables = {}
            for number, table in enumerate(light_curves):
                band = table.meta.get("filter")
                if band is None:
                    raise ValueError(f"light curve {number} has no meta['filter']; pass a dict "
                                     "{band: table}")
                if band in tables:
                    raise ValueError(f"two light curves for band {band!r}")
                tables[band] = table
        if not tables:
            raise ValueError("no light curve given")
        self.light_curves = tables
        times = {}
        for band, table in tables.items():
            for column in ("relative_flux", "relative_flux_err"):
                if column not in table.colnames:
                    raise ValueError(f"light curve of band {band!r} has no column {column!r}")
            times[band] = _time_column(table)
        names = {name for name, _ in times.values()}
        if len(names) > 1:
            raise ValueError(f"the bands have different time columns: {sorted(names)}")
        self.time_column = names.pop()
        self.bands = list(tables)
        self.reference_time = min((t.min() for _, t in times.values()), key=lambda t: t.jd)
        self.n_excluded = {}
        self._data = {}
        for band, table in tables.items():
            self._data[band] = self._prepare(band, table, times[band][1], include_flagged)
        if frequency_unit is None:
            cadence = np.median([data.cadence for data in self._data.values()])
            frequency_unit = u.Hz if cadence < 3600 else 1 / u.day
        self.frequency_unit = u.Unit(frequency_unit)

    @classmethod
    def from_directory(cls, reduced_dir, target=None, photometer=None, **kwargs):
        """Read the relative light curves of a reduction folder.

        Parameters
        ----------
        reduced_dir : str or Path
            The reduction's output folder.
        target : int or str or None
            Read only the light curves of this target (files named by
            :func:`opticam_like.schema.light_curve_name`,
            ``relative_light_curves/{band}_{target}_{photometer}.ecsv``); needed when a band
            has several targets.
        photometer : str or None
            Read only the light curves of this photometer; needed when a band has light curves
            of several photometers.
        **kwargs
            Passed to :class:`Analyzer`.

        Raises
        ------
        MissingOutputError
            If no light curve is found (a ``FileNotFoundError``).
        ConfigError
            If a band has more than one light curve (give ``target`` or ``photometer``; a
            ``ValueError``).
        """
        paths = light_curve_paths(reduced_dir, target, photometer)
        if not paths:
            raise MissingOutputError(f"no light curve of target {target or 'any'} and "
                                    f"photometer {photometer or 'any'} in "
                                    f"{Path(reduced_dir) / 'relative_light_curves'}")
        tables, sources = {}, {}
        for path in paths:
            table = Table.read(path)
            band = table.meta.get("filter", path.stem.split("_")[0])
            if band in tables:
                raise ConfigError(f"band {band!r} has several light curves ({sources[band].name}, "
                                 f"{path.name}); pass target= or photometer=")
            tables[band], sources[band] = table, path
        return cls(tables, **kwargs)

    def _prepare(self, band, table, times, include_flagged):
        seconds = (times - self.reference_time).to_value(u.s)
        flux = np.ma.filled(np.ma.asarray(table["relative_flux"], float), np.nan)
        error = np.ma.filled(np.ma.asarray(table["relative_flux_err"], float), np.nan)
        usable = np.isfinite(seconds) & np.isfinite(flux) & np.isfinite(error) & (error > 0)
        if not include_flagged and "flags" in table.colnames:
            flags = np.ma.filled(np.ma.asarray(table["flags"]), 1).astype(np.int64)
            usable &= (flags & ~int(ADVISORY)) == 0
        self.n_excluded[band] = int(usable.size - usable.sum())
        log.info("band %s: %d of %d points excluded (flagged or not finite)", band,
                 self.n_excluded[band], usable.size)
        if usable.sum() < 3:
            raise ValueError(f"band {band!r} has {usable.sum()} usable points; 3 are needed")
        order = np.argsort(seconds[usable], kind="stable")
        seconds = seconds[usable][order]
        steps = np.diff(seconds)
        if not np.all(steps > 0):
            raise ValueError(f"band {band!r} has repeated times; flag them "
                             "(opticam_like.timing.time_flags)")
        return _Band(band, seconds, flux[usable][order], error[usable][order],
                     float(np.median(steps)))

    def _band(self, band):
        if band is None:
            if len(self.bands) > 1:
                raise ValueError(f"several bands ({', '.join(self.bands)}): give band=")
            band = self.bands[0]
        if band not in self._data:
            raise ValueError(f"unknown band {band!r}; bands are {', '.join(self.bands)}")
        return self._data[band]

    def _times(self, seconds):
        fmt = TIME_COLUMNS.get(self.time_column, ("jd", None))[0]
        times = self.reference_time + TimeDelta(seconds, format="sec")
        times.format = fmt
        return times

    # --- periodograms ------------------------------------------------------------------------

    def _lomb_scargle(self, data, minimum_frequency, maximum_frequency, samples_per_peak,
                      nterms):
        model = LombScargle(data.seconds * u.s, data.flux, data.error, nterms=nterms)
        span = data.seconds[-1] - data.seconds[0]
        fmin = (1 / (span * u.s) if minimum_frequency is None else
                _as_quantity(minimum_frequency, self.frequency_unit, "minimum_frequency"))
        fmax = (0.5 / (data.cadence * u.s) if maximum_frequency is None else
                _as_quantity(maximum_frequency, self.frequency_unit, "maximum_frequency"))
        if not fmax > fmin:
            raise ValueError(f"maximum_frequency {fmax} must exceed minimum_frequency {fmin}")
        frequency = model.autofrequency(samples_per_peak=samples_per_peak,
                                        minimum_frequency=fmin.to(u.Hz),
                                        maximum_frequency=fmax.to(u.Hz))
        return model, frequency, model.power(frequency)

    def lomb_scargle(self, band=None, minimum_frequency=None, maximum_frequency=None,
                     samples_per_peak=10, nterms=1):
        """Generalised Lomb-Scargle periodogram with the flux errors (Zechmeister & Kuerster 2009).

        Uses `astropy.timeseries.LombScargle` (standard normalisation: 1 = perfect fit).

        Parameters
        ----------
        band : str or None
            Band (may be omitted when there is only one).
        minimum_frequency, maximum_frequency : float or Quantity or None
            Frequency range (plain numbers in :attr:`frequency_unit`). Default: 1 / time span
            to the pseudo-Nyquist frequency 0.5 / median cadence.
        samples_per_peak : int
            Frequencies per peak width 1 / span.
        nterms : int
            Number of harmonics of the model (1 = sinusoid).

        Returns
        -------
        `~astropy.table.QTable`
            ``frequency`` (in :attr:`frequency_unit`) and ``power``; meta ``band``,
            ``nterms``, ``n_points``.
        """
        data = self._band(band)
        _, frequency, power = self._lomb_scargle(data, minimum_frequency, maximum_frequency,
                                                 samples_per_peak, nterms)
        return QTable({"frequency": frequency.to(self.frequency_unit), "power": power},
                      meta={"band": data.name, "nterms": nterms, "normalization": "standard",
                            "n_points": data.seconds.size})

    def best_frequency(self, band=None, minimum_frequency=None, maximum_frequency=None,
                       samples_per_peak=10, nterms=1):
        """Frequency of the highest periodogram peak and its uncertainty.

        The peak of :meth:`lomb_scargle` is refined between its neighbouring grid points. The
        uncertainty is that of a least-squares sinusoid fit (Montgomery & O'Donoghue 1999):
        ``sigma_f = sqrt(6 / N) * sigma_res / (pi * T * A)`` with ``N`` points over ``T``,
        ``A`` the semi-amplitude of the fundamental and ``sigma_res`` the rms of the residuals
        of the ``nterms`` model. It assumes white residuals (no red noise, no aliasing).

        Parameters are those of :meth:`lomb_scargle`.

        Returns
        -------
        frequency, uncertainty : `~astropy.units.Quantity`
            In :attr:`frequency_unit`.
        """
        data = self._band(band)
        model, frequency, power = self._lomb_scargle(data, minimum_frequency, maximum_frequency,
                                                     samples_per_peak, nterms)
        grid = frequency.to_value(u.Hz)
        peak = int(np.argmax(power))
        low, high = grid[max(peak - 1, 0)], grid[min(peak + 1, grid.size - 1)]
        refined = minimize_scalar(lambda f: -float(model.power(f * u.Hz)), bounds=(low, high),
                                  method="bounded",
                                  options={"xatol": (high - low) * 1e-6}).x
        if model.power(refined * u.Hz) < power[peak]:
            refined = grid[peak]
        theta = model.model_parameters(refined * u.Hz, units=False)
        amplitude = np.hypot(theta[1], theta[2])
        residuals = data.flux - model.model(data.seconds * u.s, refined * u.Hz)
        span = data.seconds[-1] - data.seconds[0]
        sigma = (np.sqrt(6.0 / data.seconds.size) * np.std(residuals)
                 / (np.pi * span * amplitude))
        return ((refined * u.Hz).to(self.frequency_unit),
                (sigma * u.Hz).to(self.frequency_unit))

    # --- regular segments: stingray light curves ---------------------------------------------

    def to_stingray(self, band=None, dt=None):
        """The band as a `stingray.Lightcurve` on a regular grid inside its good time intervals.

        The points are averaged in bins ``[start + k dt, start + (k + 1) dt)`` counted from the
        start of each good time interval (:func:`opticam_like.timing.good_time_intervals`).
        Empty bins are left out and split the intervals, so that every GTI of the result is
        evenly sampled, as stingray's segment averaging requires; nothing is interpolated.

        Parameters
        ----------
        band : str or None
            Band (may be omitted when there is only one).
        dt : float or Quantity or None
            Bin width (seconds if a plain number); default the band's median cadence.

        Returns
        -------
        `stingray.Lightcurve`
            ``time``: bin centres in seconds since :attr:`reference_time` (``mjdref`` is its MJD
            in the scale of :attr:`time_column`); ``countrate``: mean relative flux of the bin;
            ``countrate_err``: ``sqrt(sum err^2) / k`` of its ``k`` points;
            ``counts = countrate * dt``; ``err_dist = "gauss"``; ``gti``: shape ``(n_gti, 2)``,
            seconds.

        Raises
        ------
        ValueError
            If ``dt`` is not positive or longer than every good time interval.
        """
        data = self._band(band)
        dt = data.cadence if dt is None else float(_as_quantity(dt, u.s, "dt").value)
        if not dt > 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        starts = _segment_starts(data.gtis, dt, 1)
        if not starts.size:
            raise ValueError(f"dt = {dt:g} s is longer than every good time interval of band "
                             f"{data.name!r}")
        flux, variance, counts = _grid(data, starts, dt, 1)
        full = counts[:, 0] > 0
        starts = starts[full]
        breaks = np.flatnonzero(np.abs(np.diff(starts) - dt) > 1e-6 * dt)
        gti = np.column_stack([starts[np.r_[0, breaks + 1]],
                               starts[np.r_[breaks, starts.size - 1]] + dt])
        return self._lightcurve(starts + dt / 2, flux[full, 0], variance[full, 0], gti, dt)

    def _lightcurve(self, time, flux, variance, gti, dt):
        """A stingray light curve of a relative flux (a rate: counts are ``flux * dt``)."""
        with _stingray_quiet():
            from stingray import Lightcurve

            return Lightcurve(time, flux * dt, err=np.sqrt(variance) * dt, gti=gti, dt=dt,
                              err_dist="gauss", mjdref=self.reference_time.mjd,
                              skip_checks=True)

    def _segments(self, datas, segment_length):
        """Cut the bands into simultaneous segments of equal length on a regular grid.

        The grid step is the coarsest cadence; segments of ``n_bins`` steps are laid end to end
        from the start of each common good time interval; a segment with an empty grid bin in
        any band is left out.

        Returns (curves, fluxes, variances, n_bins, n_skipped): for each band a
        `stingray.Lightcurve` whose GTIs are the segments, and its mean flux and variance per
        bin, arrays of shape (n_segments, n_bins); then the bins per segment and the number of
        segments left out.
        """
        dt = max(data.cadence for data in datas)
        gtis = datas[0].gtis
        for data in datas[1:]:
            gtis = intersect_gtis(gtis, data.gtis)
        lengths = np.floor((gtis[:, 1] - gtis[:, 0]) / dt + 1e-6).astype(int)
        if segment_length is None:
            n_bins = self._default_segment_bins(lengths)
        else:
            n_bins = int(round(_as_quantity(segment_length, u.s, "segment_length").value / dt))
            if n_bins < 4:
                raise ValueError(f"segment_length {segment_length} is shorter than 4 cadences "
                                 f"({dt:g} s)")
        starts = _segment_starts(gtis, dt, n_bins)
        if not starts.size:
            raise ValueError(f"no good time interval is as long as one segment of {n_bins} x "
                             f"{dt:g} s; the longest is {lengths.max(initial=0) * dt:g} s")
        binned = [_grid(data, starts, dt, n_bins) for data in datas]
        full = np.logical_and.reduce([counts.min(axis=1) > 0 for _, _, counts in binned])
        if not full.any():
            raise ValueError("every segment has an empty grid bin: the cadence is irregular")
        gti = np.column_stack([starts[full], starts[full] + n_bins * dt])
        times = (starts[full, None] + (np.arange(n_bins) + 0.5) * dt).ravel()
        curves = [self._lightcurve(times, flux[full].ravel(), variance[full].ravel(), gti, dt)
                  for flux, variance, _ in binned]
        return (curves, [flux[full] for flux, _, _ in binned],
                [variance[full] for _, variance, _ in binned], n_bins, int(np.sum(~full)))

    @staticmethod
    def _default_segment_bins(lengths):
        """Largest power of two (>= 8) giving at least 8 segments, else at least one."""
        candidates = 2 ** np.arange(3, 31)
        totals = np.array([np.sum(lengths // n) for n in candidates])
        for minimum in (8, 1):
            good = candidates[totals >= minimum]
            if good.size:
                return int(good.max())
        raise ValueError("no good time interval is 8 cadences long (longest: "
                         f"{lengths.max(initial=0)})")

    # --- power spectra -----------------------------------------------------------------------

    def power_spectrum(self, band=None, segment_length=None, norm="frac", log_rebin=None):
        """Averaged periodogram (power spectral density) with noise level and errors.

        Computed by `stingray.AveragedPowerspectrum` on :meth:`to_stingray`-like light curves
        whose GTIs are the segments (each normalised by its own mean, ``use_common_mean=False``).
        Each segment's periodogram is ``P_j = 2 dt |X_j|^2 / (n mean^2)`` (``norm="frac"``,
        (rms/mean)^2 per Hz, Miyamoto et al. 1991; Vaughan et al. 2003), so that the integral
        over frequency is the fractional variance; ``norm="abs"`` omits ``1 / mean^2``. The
        Fourier frequencies are ``j / (n dt)`` for ``0 < j < n / 2`` (no zero or Nyquist
        frequency). The white-noise level expected from the flux errors is
        ``2 dt <err^2> / mean^2``. The spectra of the ``M`` segments are averaged, and ``K``
        adjacent frequencies when ``log_rebin`` is set; the error of each average is
        ``P / sqrt(M K)``.

        Parameters
        ----------
        band : str or None
            Band (may be omitted when there is only one).
        segment_length : float or Quantity or None
            Segment length (seconds if a plain number). Default: the longest power of two of
            cadences that still gives at least 8 segments (or at least one).
        norm : {"frac", "abs"}
            Normalisation.
        log_rebin : float or None
            Each frequency bin ``1 + log_rebin`` times wider than the previous one.

        Returns
        -------
        `~astropy.table.QTable`
            ``frequency``, ``power`` (1 / :attr:`frequency_unit`), ``power_err``,
            ``n_averaged`` (``M K``). Meta: ``band``, ``norm``, ``noise_level`` (Quantity,
            same unit as power), ``n_segments``, ``segment_length`` (s), ``dt`` (s),
            ``n_skipped`` (segments with an empty grid bin), ``frequency_resolution``.

        Raises
        ------
        ValueError
            If ``norm`` is unknown or no good time interval holds one segment.
        """
        if norm not in ("frac", "abs"):
            raise ValueError(f"norm must be 'frac' or 'abs', got {norm!r}")
        data = self._band(band)
        (curve,), (fluxes,), (variances,), n_bins, skipped = self._segments([data],
                                                                           segment_length)
        dt = curve.dt
        with _stingray_quiet():
            from stingray import AveragedPowerspectrum

            spectrum = AveragedPowerspectrum.from_lightcurve(
                curve, n_bins * dt, norm=norm, use_common_mean=False, silent=True)
        mean = fluxes.mean(axis=1) if norm == "frac" else 1.0
        noise = np.mean(2.0 * dt * variances.mean(axis=1) / mean**2)
        groups = _log_groups(spectrum.freq.size, log_rebin)
        power, counts = _group_mean(spectrum.power, groups)
        frequency, _ = _group_mean(spectrum.freq, groups)
        counts = counts * spectrum.m
        power_unit = u.s.to(1 / self.frequency_unit) / self.frequency_unit
        return QTable(
            {"frequency": (frequency * u.Hz).to(self.frequency_unit),
             "power": power * power_unit,
             "power_err": power / np.sqrt(counts) * power_unit,
             "n_averaged": counts},
            meta={"band": data.name, "norm": norm, "noise_level": noise * power_unit,
                  "n_segments": spectrum.m, "segment_length": n_bins * dt * u.s,
                  "dt": dt * u.s, "n_skipped": skipped,
                  "frequency_resolution": (spectrum.df * u.Hz).to(self.frequency_unit)})

    def fractional_rms(self, band=None, minimum_frequency=None, maximum_frequency=None,
                       segment_length=None):
        """Fractional rms in a frequency range from the noise-subtracted power spectrum.

        ``rms^2 = sum_j (P_j - P_noise) df`` over the Fourier frequencies in
        ``[minimum_frequency, maximum_frequency)`` of the unbinned ``"frac"`` spectrum of
        :meth:`power_spectrum`; ``sigma(rms^2) = df sqrt(sum_j sigma_j^2)`` and
        ``sigma(rms) = sigma(rms^2) / (2 rms)``. A negative ``rms^2`` (noise only) gives
        ``rms = 0`` and ``sigma = sqrt(sigma(rms^2))``.

        Parameters
        ----------
        band : str or None
        minimum_frequency, maximum_frequency : float or Quantity or None
            Range (default: the whole spectrum).
        segment_length : float or Quantity or None
            See :meth:`power_spectrum`.

        Returns
        -------
        rms, rms_err : `~astropy.units.Quantity`
            Dimensionless fractions (0.02 = 2 %).
        """
        spectrum = self.power_spectrum(band, segment_length=segment_length, norm="frac")
        frequency = spectrum["frequency"]
        select = np.ones(len(spectrum), bool)
        if minimum_frequency is not None:
            select &= frequency >= _as_quantity(minimum_frequency, self.frequency_unit,
                                                "minimum_frequency")
        if maximum_frequency is not None:
            select &= frequency < _as_quantity(maximum_frequency, self.frequency_unit,
                                               "maximum_frequency")
        if not select.any():
            raise ValueError("no Fourier frequency in the range")
        df = spectrum.meta["frequency_resolution"]
        excess = (np.sum(spectrum["power"][select] - spectrum.meta["noise_level"]) * df).to_value(
            u.dimensionless_unscaled)
        error = (np.sqrt(np.sum(spectrum["power_err"][select] ** 2)) * df).to_value(
            u.dimensionless_unscaled)
        if excess <= 0:
            return 0.0 * u.dimensionless_unscaled, np.sqrt(error) * u.dimensionless_unscaled
        rms = np.sqrt(excess)
        return rms * u.dimensionless_unscaled, error / (2 * rms) * u.dimensionless_unscaled

    # --- cross spectra and lags --------------------------------------------------------------

    def _cross(self, band1, band2, segment_length, groups_of):
        """Cross-spectral averages per frequency group (Nowak et al. 1999)."""
        first, second = self._band(band1), self._band(band2)
        if first.name == second.name:
            raise ValueError("band1 and band2 must differ")
        (curve1, curve2), _, _, n_bins, skipped = self._segments([first, second],
                                                                 segment_length)
        dt = curve1.dt
        with _stingray_quiet():
            from stingray import AveragedCrossspectrum

            # stingray averages conj(F(band2)) F(band1) = X conj(Y)
            spectrum = AveragedCrossspectrum.from_lightcurve(
                curve2, curve1, n_bins * dt, norm="none", silent=True)
        groups = groups_of(spectrum.freq)
        keep = groups >= 0
        groups, frequency = groups[keep], spectrum.freq[keep]
        products = spectrum.unnorm_power[keep]
        cross, counts = _group_mean(products, groups)
        power1, _ = _group_mean(spectrum.pds2.unnorm_power[keep], groups)
        power2, _ = _group_mean(spectrum.pds1.unnorm_power[keep], groups)
        counts = counts * spectrum.m
        weight = np.abs(products)
        mean_frequency = np.bincount(groups, weight * frequency) / np.bincount(groups, weight)
        coherence = np.abs(cross) ** 2 / (power1 * power2)
        phase = np.angle(cross)
        phase_err = np.sqrt((1 - np.minimum(coherence, 1)) / (2 * coherence * counts))
        omega = 2 * np.pi * mean_frequency
        return QTable(
            {"frequency": (mean_frequency * u.Hz).to(self.frequency_unit),
             "phase_lag": phase * u.rad, "phase_lag_err": phase_err * u.rad,
             "time_lag": phase / omega * u.s, "time_lag_err": phase_err / omega * u.s,
             "coherence": coherence, "n_averaged": counts},
            meta={"band1": first.name, "band2": second.name, "n_segments": spectrum.m,
                  "segment_length": n_bins * dt * u.s, "dt": dt * u.s, "n_skipped": skipped,
                  "sign": "positive lag: band2 lags band1"})

    def cross_spectrum(self, band1, band2, segment_length=None, log_rebin=None):
        """Phase and time lags of ``band2`` with respect to ``band1`` against frequency.

        The cross spectrum ``C_j = X_j conj(Y_j)`` (``X``: ``band1``, ``Y``: ``band2``) is
        averaged over ``M`` simultaneous segments by `stingray.AveragedCrossspectrum` (Fourier
        frequencies ``0 < j < n / 2``), then over ``K`` frequencies with ``log_rebin``;
        the phase lag is ``arg <C>`` (positive: ``band2`` lags), the time lag
        ``phase / (2 pi f)`` with ``f`` the mean of the averaged frequencies weighted by
        ``|<C_j>|`` (exact to first order for a constant delay). The raw coherence is
        ``|<C>|^2 / (<|X|^2> <|Y|^2>)`` and the phase error
        ``sqrt((1 - coherence) / (2 coherence M K))`` (Bendat & Piersol 1986; Nowak et al.
        1999, ApJ 510, 874, eq. 16); they are computed here from stingray's averaged spectra,
        because stingray's own coherence and lag errors assume Poisson noise from the counts,
        which relative fluxes are not. Phase lags are in (-pi, pi]. Averaging over frequencies
        whose phase lags differ lowers the coherence (and so raises the error).

        Parameters
        ----------
        band1, band2 : str
            Reference band and the band whose lag is measured.
        segment_length : float or Quantity or None
            See :meth:`power_spectrum`.
        log_rebin : float or None
            See :meth:`power_spectrum`.

        Returns
        -------
        `~astropy.table.QTable`
            ``frequency``, ``phase_lag`` (rad), ``phase_lag_err``, ``time_lag`` (s),
            ``time_lag_err``, ``coherence``, ``n_averaged``; meta ``band1``, ``band2``,
            ``n_segments``, ``segment_length``, ``dt``, ``n_skipped``, ``sign``.
        """
        return self._cross(band1, band2, segment_length,
                           lambda frequency: _log_groups(frequency.size, log_rebin))

    def lag(self, band1, band2, minimum_frequency, maximum_frequency, segment_length=None):
        """Phase and time lag of ``band2`` with respect to ``band1`` in one frequency range.

        The cross spectrum is averaged over all Fourier frequencies in
        ``[minimum_frequency, maximum_frequency)`` and all segments; see
        :meth:`cross_spectrum` for the definitions, the sign and the errors. Over a broad range of
        a red-noise spectrum the average is dominated by the lowest frequencies; the weighted
        frequency of :meth:`cross_spectrum` accounts for that for a constant delay, but keep
        the range narrow where the lag changes with frequency.

        Returns
        -------
        `~astropy.table.QTable`
            One row with the columns of :meth:`cross_spectrum`; meta also ``minimum_frequency``
            and ``maximum_frequency``.

        Raises
        ------
        ValueError
            If no Fourier frequency lies in the range.
        """
        low = _as_quantity(minimum_frequency, self.frequency_unit, "minimum_frequency")
        high = _as_quantity(maximum_frequency, self.frequency_unit, "maximum_frequency")

        def one_group(frequency):
            inside = (frequency >= low.to_value(u.Hz)) & (frequency < high.to_value(u.Hz))
            if not inside.any():
                raise ValueError(f"no Fourier frequency in [{low}, {high})")
            return np.where(inside, 0, -1)

        result = self._cross(band1, band2, segment_length, one_group)
        result.meta.update(minimum_frequency=low, maximum_frequency=high)
        return result

    def cross_correlation(self, band1, band2, max_lag=None):
        """Cross-correlation of two bands against lag, on the common grid, gaps left out.

        Both bands are averaged onto a regular grid of the coarser cadence; with ``x``, ``y``
        the standardised fluxes, ``r(k) = sum_i x_i y_{i+k} / N_k`` over the ``N_k`` pairs of
        grid bins that both hold data (the discrete correlation function of Edelson & Krolik
        1988 on a regular grid). A peak at a positive lag means that ``band2`` lags ``band1``.

        Parameters
        ----------
        band1, band2 : str
        max_lag : float or Quantity or None
            Largest lag (seconds if a plain number); default a quarter of the time span.

        Returns
        -------
        `~astropy.table.QTable`
            ``lag`` (s), ``correlation``, ``n_pairs``; meta ``band1``, ``band2``, ``dt``.
        """
        first, second = self._band(band1), self._band(band2)
        dt = max(first.cadence, second.cadence)
        start = min(first.seconds[0], second.seconds[0])
        size = int(round((max(first.seconds[-1], second.seconds[-1]) - start) / dt)) + 1
        standard = []
        for data in (first, second):
            index = np.rint((data.seconds - start) / dt).astype(int)
            counts = np.bincount(index, minlength=size)
            with np.errstate(invalid="ignore", divide="ignore"):
                flux = np.bincount(index, data.flux, minlength=size) / counts
            present = counts > 0
            values = np.zeros(size)
            values[present] = (flux[present] - flux[present].mean()) / flux[present].std()
            standard.append((values, present.astype(float)))
        max_bins = size // 4 if max_lag is None else int(
            _as_quantity(max_lag, u.s, "max_lag").value / dt)
        max_bins = min(max_bins, size - 1)
        length = 1 << int(np.ceil(np.log2(2 * size)))

        def correlate(a, b):
            full = np.fft.irfft(np.conj(np.fft.rfft(a, length)) * np.fft.rfft(b, length), length)
            return np.concatenate([full[length - max_bins:], full[:max_bins + 1]])

        (x, has_x), (y, has_y) = standard
        pairs = np.rint(correlate(has_x, has_y)).astype(int)
        with np.errstate(invalid="ignore", divide="ignore"):
            correlation = np.where(pairs > 0, correlate(x, y) / pairs, np.nan)
        return QTable({"lag": np.arange(-max_bins, max_bins + 1) * dt * u.s,
                       "correlation": correlation, "n_pairs": pairs},
                      meta={"band1": first.name, "band2": second.name, "dt": dt * u.s,
                            "sign": "positive lag: band2 lags band1"})

    # --- time domain -------------------------------------------------------------------------

    def rebin(self, band, dt):
        """Light curve averaged in time bins of width ``dt``, errors propagated.

        Bins start at the band's first point; empty bins are left out. Each bin's time is the
        mean of its points' times, its flux the mean flux, its error
        ``sqrt(sum err^2) / k``.

        Parameters
        ----------
        band : str or None
        dt : float or Quantity
            Bin width (seconds if a plain number).

        Returns
        -------
        `~astropy.table.Table`
            The time column (same name and scale as the input), ``relative_flux``,
            ``relative_flux_err``, ``n_points``, ``flags`` (0); meta ``filter``, ``dt``.
        """
        data = self._band(band)
        width = _as_quantity(dt, u.s, "dt").value
        if not width > 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        index = ((data.seconds - data.seconds[0]) / width).astype(int)
        _, index = np.unique(index, return_inverse=True)
        counts = np.bincount(index)
        return Table({
            self.time_column: self._times(np.bincount(index, data.seconds) / counts),
            "relative_flux": np.bincount(index, data.flux) / counts,
            "relative_flux_err": np.sqrt(np.bincount(index, data.error**2)) / counts,
            "n_points": counts,
            "flags": np.zeros(counts.size, np.int32),
        }, meta={"filter": data.name, "dt": width * u.s})

    def fold(self, band, period_or_frequency, n_bins=None, epoch=None):
        """Fold a light curve on a period and bin it in phase, keeping every point.

        ``phase = (t - epoch) / period - cycle`` with ``cycle = floor((t - epoch) / period)``,
        so every phase lies in [0, 1) (a value that rounds to 1 is moved to 0 of the next
        cycle); the bins of :func:`phase_bin` then count every point once.

        Parameters
        ----------
        band : str or None
        period_or_frequency : `~astropy.units.Quantity`
            A period (time unit) or a frequency.
        n_bins : int or None
            Number of phase bins; default ``clip(sqrt(N), 5, 50)``.
        epoch : `~astropy.time.Time` or None
            Time of phase zero; default :attr:`reference_time`.

        Returns
        -------
        points : `~astropy.table.QTable`
            Per point: the time column, ``cycle``, ``phase``, ``relative_flux``,
            ``relative_flux_err``; meta ``band``, ``period`` (s), ``epoch``.
        bins : `~astropy.table.QTable`
            See :func:`phase_bin`; same meta.
        """
        data = self._band(band)
        period = _period_seconds(period_or_frequency)
        epoch = self.reference_time if epoch is None else epoch
        cycles = (data.seconds - (epoch - self.reference_time).to_value(u.s)) / period
        cycle = np.floor(cycles)
        phase = cycles - cycle
        wrapped = phase >= 1.0
        phase[wrapped] = 0.0
        cycle[wrapped] += 1
        n_bins = int(np.clip(np.sqrt(data.seconds.size), 5, 50)) if n_bins is None else n_bins
        meta = {"band": data.name, "period": period * u.s, "epoch": epoch}
        points = QTable({self.time_column: self._times(data.seconds),
                         "cycle": cycle.astype(int), "phase": phase,
                         "relative_flux": data.flux, "relative_flux_err": data.error},
                        meta=meta)
        bins = phase_bin(phase, data.flux, data.error, n_bins)
        bins.meta.update(meta)
        return points, bins

    # --- everything at once ------------------------------------------------------------------

    def summary(self, minimum_frequency=None, maximum_frequency=None, segment_length=None):
        """The standard results for every band, ready for
        :func:`opticam_like.plots.analysis.save_analysis_report`.

        For each band: the periodogram, the best frequency and the light curve folded on it;
        where the cadence allows, the power spectrum; for each further band, the cross
        spectrum against the first band. A result that cannot be computed (e.g. no segment fits
        in the gaps) is left out with a log message.

        Returns
        -------
        dict
            ``{"periodogram": {band: QTable}, "best_frequency": {band: (f, err)},
            "fold": {band: (points, bins)}, "power_spectrum": {band: QTable},
            "cross_spectrum": {"band2 vs band1": QTable}}``.
        """
        results = {key: {} for key in ("periodogram", "best_frequency", "fold",
                                       "power_spectrum", "cross_spectrum")}
        limits = {"minimum_frequency": minimum_frequency, "maximum_frequency": maximum_frequency}
        for band in self.bands:
            results["periodogram"][band] = self.lomb_scargle(band, **limits)
            best = self.best_frequency(band, **limits)
            results["best_frequency"][band] = best
            results["fold"][band] = self.fold(band, best[0])
            try:
                results["power_spectrum"][band] = self.power_spectrum(
                    band, segment_length=segment_length, log_rebin=0.05)
            except ValueError as err:
                log.info("band %s: no power spectrum (%s)", band, err)
        for band in self.bands[1:]:
            try:
                results["cross_spectrum"][f"{band} vs {self.bands[0]}"] = self.cross_spectrum(
                    self.bands[0], band, segment_length=segment_length, log_rebin=0.1)
            except ValueError as err:
                log.info("bands %s, %s: no cross spectrum (%s)", self.bands[0], band, err)
        return results

    def save_report(self, out_dir, period=None, n_bins=None, minimum_frequency=None,
                    maximum_frequency=None, segment_length=None):
        """Compute :meth:`summary`, write its figures into one PDF and the best frequencies.

        Parameters
        ----------
        out_dir : str or Path
            Folder to write into (created if needed).
        period : float or Quantity or None
            Fold every band at this period (seconds if a plain number) instead of at its
            best frequency.
        n_bins : int or None
            Phase bins of the folded curves (see :meth:`fold`).
        minimum_frequency, maximum_frequency, segment_length
            Passed to :meth:`summary`.

        Returns
        -------
        list of Path
            ``analysis_report.pdf`` (see
            :func:`opticam_like.plots.analysis.save_analysis_report`) and
            ``best_frequencies.ecsv`` (``band, frequency, frequency_err, period, period_err``).
        """
        from .plots.analysis import save_analysis_report

        results = self.summary(minimum_frequency, maximum_frequency, segment_length)
        best = results["best_frequency"]
        fold_on = {band: best[band][0] if period is None else _as_quantity(period, u.s, "period")
                   for band in self.bands}
        results["fold"] = {band: self.fold(band, fold_on[band], n_bins=n_bins)
                           for band in self.bands}
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        report = folder / "analysis_report.pdf"
        save_analysis_report(results, report)
        frequency = u.Quantity([best[band][0] for band in self.bands])
        error = u.Quantity([best[band][1] for band in self.bands])
        table = QTable({"band": self.bands, "frequency": frequency, "frequency_err": error,
                        "period": (1 / frequency).to(u.s),
                        "period_err": (error / frequency**2).to(u.s)},
                       meta={"time_column": self.time_column, "n_excluded": self.n_excluded})
        frequencies = folder / "best_frequencies.ecsv"
        table.write(frequencies, overwrite=True)
        return [report, frequencies]
