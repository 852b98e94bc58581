"""Oracle tests of opticam_like.analysis on synthetic OPTICAM-like nights and real OGLE data.

The injected signal follows the simulator's convention: the flux in band ``b`` is
``1 + sqrt(2) * rms * sin(2 pi f t - lag_b)`` (averaged over the exposure, which multiplies the
amplitude by ``sinc(f T)``), so ``r`` (lag pi/2) lags ``g`` (lag 0) by +pi/2.
"""

import json
from pathlib import Path
import re
import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table
from astropy.time import Time, TimeDelta

from opticam_like import schema
from opticam_like.analysis import Analyzer, phase_bin
from opticam_like.plots.analysis import (
    plot_cross_correlation,
    plot_fold,
    plot_lags,
    plot_periodogram,
    plot_power_spectrum,
    save_analysis_report,
)

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*numba")  # stingray without numba is fine here
    from stingray import AveragedPowerspectrum, Lightcurve

SHARED = Path(__file__).resolve().parents[2] / "shared"
OGLE_LC = (SHARED / "realdata" / "ogle4_lmc_cepheid_timeseries"
           / "reference_lightcurve_sep_quicklook.txt")

FREQUENCY = 0.135  # Hz
RMS = 0.02
LAGS = {"g": 0.0, "r": np.pi / 2, "i": np.pi}
START = Time("2024-05-06T03:00:00", scale="tdb")


def night(n_points=3000, noise=0.008, exposure=0.9, gaps=(), seed=1):
    """Relative light curves of g, r, i at 1 s cadence (timestamps jittered by 2 ms)."""
    rng = np.random.default_rng(seed)
    seconds = np.arange(n_points) + rng.normal(0, 0.002, n_points)
    keep = np.ones(n_points, bool)
    for first, last in gaps:
        keep[first:last] = False
    smear = np.sinc(FREQUENCY * exposure) if exposure else 1.0
    tables = {}
    for band, lag in LAGS.items():
        flux = 1 + np.sqrt(2) * RMS * smear * np.sin(2 * np.pi * FREQUENCY * seconds - lag)
        flux += rng.normal(0, noise, n_points)
        tables[band] = Table(
            {"bjd_tdb": START + TimeDelta(seconds, format="sec"), "relative_flux": flux,
             "relative_flux_err": np.full(n_points, noise),
             "flags": np.zeros(n_points, np.int32)},
            meta={"filter": band})[keep]
    return tables


def wrapped(angle):
    return (angle + np.pi) % (2 * np.pi) - np.pi


GAPS = ((400, 520), (1300, 1330), (2100, 2350))


@pytest.fixture(scope="module", params=[(0.9, ()), (None, GAPS)],
            ids=["exposure-0.9s", "gaps"])
def analyzer(request):
    exposure, gaps = request.param
    return Analyzer(night(exposure=exposure, gaps=gaps)), exposure or 0.0


# --- the sinusoid: frequency, rms, lags ----------------------------------------------------

def test_best_frequency_recovers_the_injection(analyzer):
    an, _ = analyzer
    assert an.frequency_unit == u.Hz
    for band in "gri":
        frequency, error = an.best_frequency(band)
        assert frequency.unit == u.Hz
        assert abs(frequency.value / FREQUENCY - 1) < 0.005
        # Montgomery & O'Donoghue: about 1.5e-6 Hz here; the estimate must be consistent.
        assert 3e-7 < error.value < 5e-6
        assert abs(frequency.value - FREQUENCY) < 5 * error.value


def test_periodogram_table(analyzer):
    an, _ = analyzer
    periodogram = an.lomb_scargle("g", minimum_frequency=0.01, maximum_frequency=0.3 * u.Hz)
    assert periodogram["frequency"].unit == u.Hz
    assert periodogram["frequency"].min() >= 0.01 * u.Hz
    assert periodogram["frequency"].max() <= 0.3 * u.Hz
    peak = periodogram["frequency"][np.argmax(periodogram["power"])]
    assert abs(peak.value - FREQUENCY) < 1 / 3000  # within the peak width 1 / span
    assert periodogram.meta["band"] == "g"


def test_fractional_rms_of_the_sinusoid(analyzer):
    an, exposure = analyzer
    expected = RMS * np.sinc(FREQUENCY * exposure)
    for band in "gri":
        rms, error = an.fractional_rms(band, 0.05, 0.25)
        assert rms.unit == u.dimensionless_unscaled
        assert abs(rms.value / expected - 1) < 0.1
        assert 0 < error.value < 0.2 * expected
    noise_only, _ = an.fractional_rms("g", 0.3, 0.5)
    assert noise_only.value < 0.2 * expected


def test_phase_and_time_lags_match_the_injection(analyzer):
    an, _ = analyzer
    for band in "ri":
        lag = an.lag("g", band, 0.12, 0.15)
        assert len(lag) == 1
        phase = lag["phase_lag"][0].to_value(u.rad)
        error = lag["phase_lag_err"][0].to_value(u.rad)
        assert abs(wrapped(phase - LAGS[band])) < 0.1
        assert 0 < error < 0.05
        assert lag["coherence"][0] > 0.9
        if band == "r":  # r lags g: positive; the time lag is a quarter period
            assert phase > 0
            assert lag["time_lag"][0].to_value(u.s) == pytest.approx(0.25 / FREQUENCY, rel=0.05)
    reverse = an.lag("r", "g", 0.12 * u.Hz, 0.15 * u.Hz)
    assert reverse["phase_lag"][0].to_value(u.rad) == pytest.approx(-np.pi / 2, abs=0.1)


def test_cross_spectrum_table(analyzer):
    an, _ = analyzer
    cross = an.cross_spectrum("g", "r", log_rebin=0.1)
    assert cross.meta["sign"].startswith("positive lag: band2 lags band1")
    assert cross["phase_lag"].unit == u.rad and cross["time_lag"].unit == u.s
    frequency = cross["frequency"].to_value(u.Hz)
    assert np.all(np.diff(frequency) > 0)
    at_signal = np.argmin(np.abs(frequency - FREQUENCY))
    assert abs(wrapped(cross["phase_lag"][at_signal].value - np.pi / 2)) < 0.1
    n_bins = (cross.meta["segment_length"] / cross.meta["dt"]).to_value(u.one).round()
    # Fourier frequencies 0 < j < n / 2: stingray leaves out the Nyquist frequency
    assert cross["n_averaged"].sum() == cross.meta["n_segments"] * ((n_bins - 1) // 2)


def test_power_spectrum_segments_stay_inside_good_time_intervals():
    an = Analyzer(night(gaps=GAPS))
    spectrum = an.power_spectrum("g", segment_length=200 * u.s)
    # GTIs: 400, 780, 770 and 650 s long -> 2 + 3 + 3 + 3 segments of 200 s.
    assert spectrum.meta["n_segments"] == 11
    assert spectrum.meta["n_skipped"] == 0
    with pytest.raises(ValueError, match="no good time interval is as long"):
        an.power_spectrum("g", segment_length=1000 * u.s)


def test_power_spectrum_normalisation_and_noise_level():
    """Pure white noise: the periodogram sums to the fractional variance (Parseval) and its
    mean is the noise level from the errors."""
    rng = np.random.default_rng(7)
    n_points, noise = 4096, 0.01
    flux = 1 + rng.normal(0, noise, n_points)
    table = Table({"bjd_tdb": START + TimeDelta(np.arange(n_points) * 1.0, format="sec"),
                   "relative_flux": flux, "relative_flux_err": np.full(n_points, noise)})
    an = Analyzer({"g": table})
    one = an.power_spectrum(segment_length=255 * u.s)  # odd length: no Nyquist bin
    assert one.meta["n_segments"] == 16
    segment = flux[:255]
    df = one.meta["frequency_resolution"]
    first_only = Analyzer({"g": table[:255]}).power_spectrum(segment_length=255 * u.s)
    assert (np.sum(first_only["power"]) * df).to_value(u.one) == pytest.approx(
        np.var(segment) / np.mean(segment) ** 2, rel=1e-10)
    spectrum = an.power_spectrum(segment_length=256)
    expected_noise = 2 * 1.0 * noise**2 / np.mean(flux) ** 2
    assert spectrum.meta["noise_level"].to_value(1 / u.Hz) == pytest.approx(expected_noise,
                                                                          rel=1e-3)
    mean_power = np.mean(spectrum["power"]).to_value(1 / u.Hz)
    assert mean_power == pytest.approx(expected_noise, rel=4 / np.sqrt(n_points / 2))
    np.testing.assert_allclose(spectrum["power_err"] / spectrum["power"], 1 / 4)
    rebinned = an.power_spectrum(segment_length=256, log_rebin=0.2)
    assert len(rebinned) < len(spectrum)
    assert rebinned["n_averaged"].sum() == spectrum["n_averaged"].sum()
    np.testing.assert_allclose(rebinned["power_err"] / rebinned["power"],
                               1 / np.sqrt(rebinned["n_averaged"]))
    absolute = an.power_spectrum(segment_length=256, norm="abs")
    assert absolute.meta["noise_level"].to_value(1 / u.Hz) == pytest.approx(2 * noise**2)
    with pytest.raises(ValueError, match="norm"):
        an.power_spectrum(norm="leahy")


def delayed_night(delay=5):
    """g and r at 1 s cadence, r = g delayed by ``delay`` s (a white common signal), with one
    100 s gap."""
    rng = np.random.default_rng(0)
    n_points = 4000
    common = 1 + 0.02 * rng.normal(0, 1, n_points + 200)
    seconds = np.arange(n_points) * 1.0
    tables = {}
    for band, shift in (("g", 0), ("r", delay)):
        flux = common[200 - shift:200 - shift + n_points] + rng.normal(0, 0.004, n_points)
        tables[band] = Table({"bjd_tdb": START + TimeDelta(seconds, format="sec"),
                              "relative_flux": flux,
                              "relative_flux_err": np.full(n_points, 0.004)})
    keep = np.ones(n_points, bool)
    keep[1000:1100] = False
    return {band: table[keep] for band, table in tables.items()}


def test_time_lag_of_a_delayed_broad_band_signal():
    """Broad-band check of the sign: band2 = band1 delayed by 5 s (white common signal, so
    that red-noise leakage does not bias the phases)."""
    delay = 5
    an = Analyzer(delayed_night(delay))
    lag = an.lag("g", "r", 0.01, 0.03, segment_length=256)
    error = lag["time_lag_err"][0].to_value(u.s)
    assert 0.05 < error < 0.3
    assert lag["time_lag"][0].to_value(u.s) == pytest.approx(delay, abs=3 * error)
    spectrum = an.cross_spectrum("g", "r", segment_length=256, log_rebin=0.3)
    low = spectrum["frequency"] < 0.09 * u.Hz  # phase below pi
    time_lags = spectrum["time_lag"][low].to_value(u.s)
    errors = spectrum["time_lag_err"][low].to_value(u.s)
    assert np.all(np.abs(time_lags - delay) < 4 * errors)
    correlation = an.cross_correlation("g", "r", max_lag=50)
    assert correlation["lag"][np.nanargmax(correlation["correlation"])].to_value(
        u.s) == pytest.approx(delay)
    assert correlation["correlation"].max() > 0.9


def test_cross_correlation_of_the_sinusoids(analyzer):
    an, _ = analyzer
    correlation = an.cross_correlation("g", "r", max_lag=20 * u.s)
    lags = correlation["lag"].to_value(u.s)
    assert lags[0] == pytest.approx(-20, abs=0.01) and lags[-1] == pytest.approx(20, abs=0.01)
    within_half_period = np.abs(lags) < 0.5 / FREQUENCY
    best = lags[within_half_period][np.argmax(correlation["correlation"][within_half_period])]
    assert best == pytest.approx(0.25 / FREQUENCY, abs=0.6)  # 1.85 s on a 1 s grid


# --- stingray: agreement with the hand-written spectra, to_stingray ------------------------

REFERENCE = json.loads((Path(__file__).parent / "data" / "analysis_reference.json").read_text())
"""Spectra, rms and lags of the hand-written implementation (commit 4b2ef9a) on the fixtures."""


@pytest.mark.parametrize("case", ["exposure-0.9s", "gaps", "delayed"])
def test_stingray_spectra_agree_with_the_hand_written_ones(case):
    """Same segments, same numbers: stingray only leaves out the Nyquist frequency, which
    changes the last log-rebinned group and a range that ends at the Nyquist frequency."""
    if case == "delayed":
        an, segment, pairs, lag_range, rebin = (Analyzer(delayed_night()), 256, [("g", "r")],
                                                (0.01, 0.03), 0.3)
    else:
        exposure, gaps = (0.9, ()) if case == "exposure-0.9s" else (None, GAPS)
        an, segment, pairs, lag_range, rebin = (Analyzer(night(exposure=exposure, gaps=gaps)),
                                                None, [("g", "r"), ("g", "i")], (0.12, 0.15),
                                                0.1)
    for band, expected in REFERENCE[case]["power"].items():
        spectrum = an.power_spectrum(band, segment_length=segment)
        n = len(spectrum)
        assert n == len(expected["frequency"]) - 1
        np.testing.assert_allclose(spectrum["frequency"].to_value(u.Hz),
                                   expected["frequency"][:n], rtol=1e-12)
        for column in ("power", "power_err"):
            np.testing.assert_allclose(spectrum[column].to_value(1 / u.Hz),
                                       expected[column][:n], rtol=1e-9)
        assert spectrum.meta["noise_level"].to_value(1 / u.Hz) == pytest.approx(
            expected["noise_level"], rel=1e-12)
        assert spectrum.meta["n_segments"] == expected["n_segments"]
        assert spectrum.meta["n_skipped"] == expected["n_skipped"]
        rms, error = an.fractional_rms(band, 0.05, 0.25)
        assert [rms.value, error.value] == pytest.approx(expected["rms"], rel=1e-9)
        rms, error = an.fractional_rms(band, 0.3, 0.5)
        assert abs(rms.value - expected["rms_noise"][0]) < expected["rms_noise"][1]
    for band1, band2 in pairs:
        expected = REFERENCE[case]["cross"][f"{band2} vs {band1}"]
        lag = an.lag(band1, band2, *lag_range, segment_length=segment)
        for column, value in expected["lag"].items():
            assert u.Quantity(lag[column][0]).value == pytest.approx(value, rel=1e-9), column
        cross = an.cross_spectrum(band1, band2, segment_length=segment, log_rebin=rebin)
        reference = expected["cross"]
        assert len(cross) == len(reference["frequency"])
        for column in ("frequency", "phase_lag", "phase_lag_err", "coherence", "n_averaged"):
            np.testing.assert_allclose(u.Quantity(cross[column][:-1]).value,
                                       reference[column][:-1], rtol=1e-9, atol=1e-12)
        last = cross["phase_lag"][-1].to_value(u.rad) - reference["phase_lag"][-1]
        assert abs(last) < 2 * reference["phase_lag_err"][-1]


def test_to_stingray_light_curves():
    tables = night(gaps=GAPS)
    an = Analyzer(tables)
    curve = an.to_stingray("g")
    assert isinstance(curve, Lightcurve) and curve.err_dist == "gauss"
    # one point per cadence bin; the GTIs are the band's (400, 780, 770 and 650 frames)
    assert curve.n == len(tables["g"]) == 2600
    np.testing.assert_allclose(np.diff(curve.gti).ravel(), [400, 780, 770, 650], rtol=1e-5)
    seconds = (tables["g"]["bjd_tdb"] - an.reference_time).to_value(u.s)
    assert np.max(np.abs(curve.time - seconds)) < 0.02  # bin centres; stamps jitter by 2 ms
    np.testing.assert_allclose(curve.countrate, tables["g"]["relative_flux"])
    np.testing.assert_allclose(curve.countrate_err, 0.008)
    assert curve.mjdref == pytest.approx(an.reference_time.mjd, abs=1e-12)
    # stingray's own analysis of the curve finds the injected rms
    spectrum = AveragedPowerspectrum.from_lightcurve(curve, 200, norm="frac", silent=True)
    assert spectrum.m == 11
    noise = an.power_spectrum("g", 200).meta["noise_level"].to_value(1 / u.Hz)
    with pytest.warns(UserWarning, match="M<30"):
        rms, error = spectrum.compute_rms(0.05, 0.25, poisson_noise_level=noise)
    assert rms == pytest.approx(RMS, abs=3 * error)
    # coarser bins average 10 points; finer bins leave empty bins out and split the GTIs
    coarse = an.to_stingray("g", dt=10 * u.s)
    assert coarse.countrate[0] == pytest.approx(np.mean(tables["g"]["relative_flux"][:10]))
    np.testing.assert_allclose(coarse.countrate_err, 0.008 / np.sqrt(10))
    fine = an.to_stingray("g", dt=0.5)
    assert fine.n == 2600
    lengths = np.diff(fine.gti).ravel() / 0.5
    np.testing.assert_allclose(lengths, np.round(lengths), atol=1e-6)
    assert np.sum(np.round(lengths)) == fine.n
    assert np.all(fine.gti[1:, 0] - fine.gti[:-1, 1] > 0.5 - 1e-6)  # at least one empty bin
    with pytest.raises(ValueError, match="dt must be > 0"):
        an.to_stingray("g", dt=0)
    with pytest.raises(ValueError, match="longer than every good time interval"):
        an.to_stingray("g", dt=1000)


# --- folding and rebinning -----------------------------------------------------------------

def test_fold_keeps_every_point(analyzer):
    an, _ = analyzer
    n_points = len(an.light_curves["g"])
    for n_bins in (7, 10, 32):
        points, bins = an.fold("g", FREQUENCY * u.Hz, n_bins=n_bins)
        assert len(points) == n_points
        assert bins["n_points"].sum() == n_points
        assert np.all((points["phase"] >= 0) & (points["phase"] < 1))
        assert bins["phase_min"][0] == 0 and bins["phase_max"][-1] == 1
        np.testing.assert_array_equal(bins["phase_min"][1:], bins["phase_max"][:-1])
    # Binned folded sinusoid: amplitude sqrt(2) * rms (smeared by the bin width).
    amplitude = (np.max(bins["relative_flux"]) - np.min(bins["relative_flux"])) / 2
    assert amplitude == pytest.approx(np.sqrt(2) * RMS, rel=0.1)


def test_fold_with_period_and_epoch():
    seconds = np.arange(0.0, 100.0, 0.5)
    table = Table({"bjd_tdb": START + TimeDelta(seconds, format="sec"),
                   "relative_flux": np.ones(seconds.size),
                   "relative_flux_err": np.full(seconds.size, 0.01)})
    an = Analyzer({"v": table})
    epoch = START + TimeDelta(37.25, format="sec")
    points, bins = an.fold("v", 10 * u.s, n_bins=20, epoch=epoch)
    expected = ((seconds - 37.25) / 10.0) % 1.0
    np.testing.assert_allclose(points["phase"], expected, atol=1e-9)
    np.testing.assert_array_equal(bins["n_points"], np.full(20, 10))
    np.testing.assert_array_equal(points["cycle"][:3], [-4, -4, -4])
    # Points on cycle boundaries: phase ~0 or ~1 - 1e-13, never 1; each counted once.
    points, bins = an.fold("v", 10 * u.s, n_bins=20, epoch=START + TimeDelta(37.5, format="sec"))
    offset = points["phase"] - ((seconds - 37.5) / 10.0) % 1.0
    np.testing.assert_allclose(np.minimum(np.abs(offset), 1 - np.abs(offset)), 0, atol=1e-9)
    assert np.all(points["phase"] < 1) and bins["n_points"].sum() == seconds.size
    with pytest.raises(TypeError, match="Quantity"):
        an.fold("v", 10.0)
    with pytest.raises(ValueError, match="period or a frequency"):
        an.fold("v", 10 * u.m)


def test_phase_bin_edges_are_exact():
    phase = np.concatenate([np.arange(100) / 100, [np.nextafter(1.0, 0), 0.3, 0.7]])
    bins = phase_bin(phase, np.ones(phase.size), np.full(phase.size, 0.1), 10)
    inside = ((phase[:, None] >= bins["phase_min"][None, :])
              & (phase[:, None] < bins["phase_max"][None, :]))
    np.testing.assert_array_equal(inside.sum(axis=1), 1)
    np.testing.assert_array_equal(bins["n_points"], inside.sum(axis=0))
    assert bins["n_points"].sum() == phase.size
    np.testing.assert_allclose(bins["relative_flux_err"], 0.1 / np.sqrt(bins["n_points"]))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        phase_bin([0.2, 1.0], [1, 1], [1, 1], 4)
    empty = phase_bin([0.05], [2.0], [0.1], 4)
    np.testing.assert_array_equal(empty["n_points"], [1, 0, 0, 0])
    assert np.isnan(empty["relative_flux"][1])


def test_rebin_propagates_errors():
    tables = night(n_points=1000)
    an = Analyzer(tables)
    rebinned = an.rebin("g", 10 * u.s)
    assert rebinned["n_points"].sum() == 1000
    assert isinstance(rebinned["bjd_tdb"], Time) and rebinned["bjd_tdb"].scale == "tdb"
    first = tables["g"][:rebinned["n_points"][0]]
    assert rebinned["relative_flux"][0] == pytest.approx(np.mean(first["relative_flux"]))
    np.testing.assert_allclose(rebinned["relative_flux_err"],
                               0.008 / np.sqrt(rebinned["n_points"]))
    mean_time = (first["bjd_tdb"] - START).to_value(u.s).mean()
    assert (rebinned["bjd_tdb"][0] - START).to_value(u.s) == pytest.approx(mean_time, abs=1e-6)
    with pytest.raises(ValueError, match="dt"):
        an.rebin("g", 0)


# --- input handling ------------------------------------------------------------------------

def test_flagged_and_invalid_points_are_excluded_and_counted(caplog):
    tables = night(n_points=500)
    tables["g"]["flags"][10:47] = 512
    tables["g"]["relative_flux"][100:103] = np.nan
    with caplog.at_level("INFO", logger="opticam_like.analysis"):
        an = Analyzer(tables)
    assert an.n_excluded == {"g": 40, "r": 0, "i": 0}
    assert "40 of 500 points excluded" in caplog.text
    assert Analyzer(tables, include_flagged=True).n_excluded["g"] == 3
    points, _ = an.fold("g", FREQUENCY * u.Hz)
    assert len(points) == 460


def test_analyzer_input_errors():
    tables = night(n_points=200)
    an = Analyzer(list(tables.values()))
    assert an.bands == ["g", "r", "i"]
    assert an.time_column == "bjd_tdb"
    with pytest.raises(ValueError, match="several bands"):
        an.lomb_scargle()
    with pytest.raises(ValueError, match="unknown band 'z'"):
        an.lomb_scargle("z")
    with pytest.raises(ValueError, match="must differ"):
        an.lag("g", "g", 0.1, 0.2)
    del tables["r"].meta["filter"]
    with pytest.raises(ValueError, match="meta\\['filter'\\]"):
        Analyzer(list(tables.values()))
    with pytest.raises(ValueError, match="two light curves"):
        Analyzer([tables["g"], tables["g"]])
    other = tables["i"].copy()
    other.rename_column("bjd_tdb", "mjd_utc")
    with pytest.raises(ValueError, match="different time columns"):
        Analyzer({"g": tables["g"], "i": other})
    with pytest.raises(ValueError, match="relative_flux_err"):
        Analyzer({"g": tables["g"]["bjd_tdb", "relative_flux"]})


def test_plain_number_time_columns():
    seconds = np.arange(600.0)
    flux = 1 + 0.03 * np.sin(2 * np.pi * 0.05 * seconds)
    table = Table({"mjd_utc": 60000.0 + seconds / 86400.0, "relative_flux": flux,
                   "relative_flux_err": np.full(600, 0.001)})
    an = Analyzer({"g": table})
    assert an.reference_time.scale == "utc"
    frequency, _ = an.best_frequency()
    assert frequency.to_value(u.Hz) == pytest.approx(0.05, rel=1e-4)


def test_from_directory(tmp_path):
    folder = tmp_path / "relative_light_curves"
    folder.mkdir()
    tables = night(n_points=300)
    for band, table in tables.items():
        table.write(folder / schema.light_curve_name(band, 2, "aperture_1.5fwhm"),
                    serialize_method="jd1_jd2")
    an = Analyzer.from_directory(tmp_path)
    assert sorted(an.bands) == ["g", "i", "r"]
    np.testing.assert_allclose(an.light_curves["g"]["relative_flux"],
                               tables["g"]["relative_flux"])
    tables["g"].write(folder / schema.light_curve_name("g", 5, "aperture_1.5fwhm"))
    with pytest.raises(ValueError, match="pass target="):
        Analyzer.from_directory(tmp_path)
    assert Analyzer.from_directory(tmp_path, target=2).bands
    with pytest.raises(FileNotFoundError):
        Analyzer.from_directory(tmp_path / "nowhere")


# --- real data: the OGLE-IV Cepheid ---------------------------------------------------------

def test_ogle_cepheid_period():
    if not OGLE_LC.is_file():
        pytest.skip(f"OGLE reference light curve not found at {OGLE_LC} (needs ../shared)")
    data = np.loadtxt(OGLE_LC)
    flux = 10 ** (-0.4 * data[:, 1])
    flux /= np.median(flux)
    table = Table({"hjd_utc": Time(data[:, 0], format="jd", scale="utc"),
                   "relative_flux": flux,
                   "relative_flux_err": 0.4 * np.log(10) * 0.009 * flux},  # check-star rms
                  meta={"filter": "I"})
    an = Analyzer([table])
    assert an.frequency_unit == 1 / u.day
    frequency, error = an.best_frequency(minimum_frequency=0.05, maximum_frequency=2 / u.day)
    period = (1 / frequency).to(u.day)
    assert period.value == pytest.approx(3.78, abs=0.01)
    assert (error / frequency**2).to_value(u.day) < 0.01
    _, bins = an.fold(None, period, n_bins=10)
    assert bins["n_points"].sum() == 98


# --- figures -------------------------------------------------------------------------------

def pdf_pages(path):
    """Number of pages of a PDF written by matplotlib (one ``/Type /Page`` object each)."""
    return len(re.findall(rb"/Type\s*/Page\b", path.read_bytes()))


def test_plots_draw_the_tables_and_write_pdfs(tmp_path):
    an = Analyzer(night(n_points=1200, gaps=((500, 560),)))
    periodograms = {band: an.lomb_scargle(band) for band in an.bands}
    best = {band: an.best_frequency(band) for band in an.bands}
    spectra = {band: an.power_spectrum(band, log_rebin=0.1) for band in an.bands}
    folds = {band: an.fold(band, best[band][0]) for band in an.bands}
    cross = {b: an.cross_spectrum("g", b, log_rebin=0.1) for b in ("r", "i")}
    lags = {b: an.lag("g", b, 0.12, 0.15) for b in ("r", "i")}
    correlation = an.cross_correlation("g", "r", max_lag=20)

    figure = plot_periodogram(periodograms, best, path=tmp_path / "p.pdf")
    axes, = figure.axes
    curves = [line for line in axes.lines if len(line.get_xdata()) > 2]
    for line, band in zip(curves, an.bands, strict=True):
        np.testing.assert_array_equal(line.get_xdata(), periodograms[band]["frequency"].value)
        np.testing.assert_array_equal(line.get_ydata(), periodograms[band]["power"])
    marks = [line.get_xdata()[0] for line in axes.lines if len(line.get_xdata()) == 2]
    np.testing.assert_allclose(marks, [best[band][0].value for band in an.bands])

    figure = plot_power_spectrum(spectra, path=tmp_path / "s.pdf")
    axes, = figure.axes
    for container, band in zip(axes.containers, an.bands, strict=True):
        points = container.lines[0]
        np.testing.assert_array_equal(points.get_xdata(), spectra[band]["frequency"].value)
        np.testing.assert_array_equal(points.get_ydata(), spectra[band]["power"].value)
    noise = [line.get_ydata()[0] for line in axes.lines if line.get_linestyle() == ":"]
    np.testing.assert_allclose(noise, [spectra[b].meta["noise_level"].value for b in an.bands])
    assert axes.get_xscale() == axes.get_yscale() == "log"

    figure = plot_fold(folds, path=tmp_path / "f.pdf")
    assert len(figure.axes) == 3
    for axes, band in zip(figure.axes, an.bands):
        assert axes.get_title().startswith(f"{band}: P = ")
        assert f"{len(folds[band][0])} points" in axes.get_title()
        assert axes.get_xlim() == (0, 2)

    figure = plot_lags(cross, lags, path=tmp_path / "l.pdf")
    phase_axes, time_axes, coherence_axes = figure.axes
    for container, band in zip(phase_axes.containers, ("r", "i"), strict=True):
        np.testing.assert_array_equal(container.lines[0].get_ydata(),
                                      cross[band]["phase_lag"].value)
    np.testing.assert_array_equal(coherence_axes.lines[0].get_ydata(), cross["r"]["coherence"])
    legend = [text.get_text() for text in phase_axes.get_legend().get_texts()]
    phase = lags["r"]["phase_lag"][0].value
    assert f"r: {phase:.3f} +/- " in " ".join(legend) and phase == pytest.approx(np.pi / 2,
                                                                              abs=0.1)

    figure = plot_cross_correlation(correlation, path=tmp_path / "c.pdf")
    line = figure.axes[0].lines[0]
    np.testing.assert_array_equal(line.get_xdata(), correlation["lag"].value)
    np.testing.assert_array_equal(line.get_ydata(), correlation["correlation"])

    for name in ("p.pdf", "s.pdf", "f.pdf", "l.pdf", "c.pdf"):
        assert pdf_pages(tmp_path / name) == 1, name
    results = an.summary()
    results["cross_correlation"] = correlation
    assert save_analysis_report(results, tmp_path / "report.pdf") == 5
    assert pdf_pages(tmp_path / "report.pdf") == 5
    del results["cross_correlation"], results["fold"]
    assert save_analysis_report(results, tmp_path / "short.pdf") == 3
    assert pdf_pages(tmp_path / "short.pdf") == 3
    with pytest.raises(ValueError, match="unknown result kinds"):
        save_analysis_report({"spectrogram": {}}, tmp_path / "x.pdf")


def test_save_report(tmp_path):
    an = Analyzer(night(n_points=800))
    written = an.save_report(tmp_path / "analysis", period=1 / FREQUENCY, n_bins=12)
    assert [path.name for path in written] == ["analysis_report.pdf", "best_frequencies.ecsv"]
    assert pdf_pages(written[0]) == 4  # periodogram, power spectra, folds, lags
    table = Table.read(written[1])
    assert list(table["band"]) == ["g", "r", "i"]
    np.testing.assert_allclose(table["period"], 1 / FREQUENCY, rtol=0.005)
