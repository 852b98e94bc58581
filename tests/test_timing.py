"""Tests of opticam_like.timing: against analytic values, astropy, and real OGLE-IV headers."""

from pathlib import Path

import numpy as np
import pytest
from astropy import constants as const
from astropy import units as u
from astropy.coordinates import EarthLocation, Longitude, SkyCoord
from astropy.table import Table
from astropy.time import Time, TimeDelta
from astropy.utils import iers
from astropy.utils.data import conf as data_conf

from opticam_like.flags import PhotFlag
from opticam_like.timing import (
    SITES,
    barycentric_times,
    bmjd_tdb,
    get_site,
    good_time_intervals,
    heliocentric_times,
    intersect_gtis,
    mid_exposure,
    offline_iers,
    parse_times,
    time_flags,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
OGLE = SHARED / "realdata" / "ogle4_lmc_cepheid_timeseries"
BAD = int(PhotFlag.BAD_TIME)


@pytest.fixture
def offline():
    """Forbid any download while the test runs."""
    with data_conf.set_temp("allow_internet", False):
        yield


# --- offline configuration and sites -------------------------------------------------------

def test_offline_iers_is_scoped_and_restores_astropy_configuration():
    before = (iers.conf.auto_download, iers.conf.iers_degraded_accuracy,
              iers.earth_orientation_table.get())
    with offline_iers() as table:
        assert iers.conf.auto_download is False
        assert iers.conf.iers_degraded_accuracy == "warn"
        assert iers.earth_orientation_table.get() is table
        assert isinstance(table, iers.IERS_A)
    with offline_iers() as again:
        assert again is table
    assert (iers.conf.auto_download, iers.conf.iers_degraded_accuracy,
            iers.earth_orientation_table.get()) == before


@pytest.mark.filterwarnings("ignore::erfa.ErfaWarning", "ignore:Tried to get polar motions")
def test_time_outside_iers_table_warns_instead_of_failing(offline):
    future = Time(["2045-06-01T00:00:00"], scale="utc")
    with pytest.warns(iers.IERSDegradedAccuracyWarning):
        bjd = barycentric_times(future, 80.0, -69.0, "spm")
    # Still a sensible BJD: the Roemer delay is at most ~1 au / c.
    assert abs((bjd - future.tdb).to_value(u.s)[0]) < 510


@pytest.mark.parametrize("name, key", [
    ("spm", "san pedro martir"), ("San Pedro Mártir", "san pedro martir"),
    ("OAN-SPM", "san pedro martir"), ("LCO", "las campanas"),
    ("  Las  Campanas ", "las campanas"), ("LCO-Warsaw-1.3m   ", "las campanas"),
])
def test_get_site_names(name, key, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the site registry must not be used")

    monkeypatch.setattr(EarthLocation, "of_site", no_network)
    lon, lat, height = SITES[key]
    site = get_site(name)
    assert site.lon.deg == pytest.approx(lon, abs=1e-12)
    assert site.lat.deg == pytest.approx(lat, abs=1e-12)
    assert site.height.to_value(u.m) == pytest.approx(height, abs=1e-6)


def test_get_site_tuple_location_and_errors():
    site = get_site((-115.4636, 31.0442, 2790.0))
    assert site.lon.deg == pytest.approx(-115.4636)
    assert get_site(site) is site
    quantities = get_site((10 * u.deg, 20 * u.deg, 1 * u.km))
    assert quantities.height.to_value(u.m) == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="unknown site 'atlantis'.*las campanas"):
        get_site("atlantis")
    with pytest.raises(ValueError, match="lon_deg, lat_deg, height_m"):
        get_site((1.0, 2.0))


# --- parsing and mid-exposure --------------------------------------------------------------

def test_parse_times_keeps_microseconds():
    values = ["2024-05-06 01:02:03.123456", "2024-05-06T01:02:04.000001Z",
              "2024-05-06 01:02:05.9999995"]
    times = parse_times(values)
    assert times.scale == "utc"
    assert times.shape == (3,)
    elapsed = (times - times[0]).to_value(u.us)
    np.testing.assert_allclose(elapsed, [0.0, 876545.0, 2876543.5], atol=1e-3)
    assert times[0].isot == "2024-05-06T01:02:03.123456"
    scalar = parse_times("2024-05-06 01:02:03.5")
    assert scalar.shape == ()
    assert scalar.isot == "2024-05-06T01:02:03.500000"


def test_parse_times_other_format_and_errors():
    times = parse_times(["60000.5", "60001.25"], fmt="mjd", scale="tdb")
    np.testing.assert_allclose(times.mjd, [60000.5, 60001.25])
    assert times.scale == "tdb"
    with pytest.raises(ValueError, match="cannot parse time '27/12/11'"):
        parse_times(["2024-05-06 01:02:03", "27/12/11"])


def test_mid_exposure_references_round_trip_to_the_microsecond():
    start = parse_times(["2024-05-06 01:02:03.123456", "2024-05-06 01:02:04.123457"])
    exposure = np.array([0.9, 1.2])
    mid = mid_exposure(start, exposure, "start")
    np.testing.assert_allclose((mid - start).to_value(u.us), [450000.0, 600000.0], atol=1e-3)
    end = start + TimeDelta(exposure, format="sec")
    np.testing.assert_allclose((mid_exposure(end, exposure, "end") - mid).to_value(u.us), 0,
                               atol=1e-3)
    np.testing.assert_allclose((mid_exposure(mid, exposure * u.s, "mid") - mid).to_value(u.us),
                               0, atol=1e-3)
    assert mid[0].isot == "2024-05-06T01:02:03.573456"


def test_mid_exposure_across_a_leap_second_and_errors():
    start = Time("2016-12-31T23:59:59.500", scale="utc")
    mid = mid_exposure(start, 2.0)
    assert mid.iso == "2016-12-31 23:59:60.500"
    with pytest.raises(ValueError, match="reference"):
        mid_exposure(start, 1.0, "centre")
    with pytest.raises(ValueError, match="exposure"):
        mid_exposure(start, -1.0)


# --- barycentric and heliocentric times ----------------------------------------------------

def test_barycentric_vectorised_equals_per_frame(offline):
    times = Time("2024-03-01T03:00:00", scale="utc") + TimeDelta(np.linspace(0, 3e7, 7),
                                                                 format="sec")
    ra, dec = 202.4696, -11.1614
    together = barycentric_times(times, ra, dec, "spm")
    one_by_one = [barycentric_times(t, ra, dec, "spm") for t in times]
    diff = [(a - b).to_value(u.ns) for a, b in zip(one_by_one, together)]
    np.testing.assert_allclose(diff, 0.0, atol=1.0)
    assert together.scale == "tdb"
    bmjd = bmjd_tdb(times, ra, dec, "spm")
    assert bmjd.format == "mjd"
    np.testing.assert_allclose((bmjd - together).to_value(u.ns), 0.0, atol=1e-3)


def test_interpolated_delay_matches_astropy_for_a_long_night(offline):
    """Many frames of one target: the spline between 10-minute nodes is exact to ~1 ns."""
    site = get_site("spm")
    times = Time("2024-03-01T02:00:00", scale="utc", location=site) + TimeDelta(
        np.arange(0, 10 * 3600, 7.3), format="sec")
    target = SkyCoord(202.4696 * u.deg, -11.1614 * u.deg)
    bjd = barycentric_times(times, target.ra, target.dec, site)
    with offline_iers():
        direct = times.tdb + times.light_travel_time(target, ephemeris="builtin")
    np.testing.assert_allclose((bjd - direct).to_value(u.ns), 0.0, atol=5.0)
    hjd = heliocentric_times(times, target.ra, target.dec, site)
    with offline_iers():
        direct = times.light_travel_time(target, kind="heliocentric", ephemeris="builtin")
    np.testing.assert_allclose((hjd - times.utc).to_value(u.ns) - direct.to_value(u.ns), 0.0,
                               atol=5.0)


def test_roemer_delay_has_the_size_of_the_earth_orbit(offline):
    """Over a year, the delay for an ecliptic target swings by +/- 1 au/c; at the pole ~0."""
    times = Time("2023-01-01", scale="utc") + TimeDelta(np.arange(0, 366, 3) * 86400.0,
                                                        format="sec")
    au_light = (1 * u.au / const.c).to_value(u.s)
    ecliptic = SkyCoord(0 * u.deg, 0 * u.deg, frame="barycentrictrueecliptic").icrs
    pole = SkyCoord(0 * u.deg, 90 * u.deg, frame="barycentrictrueecliptic").icrs
    in_plane = (barycentric_times(times, ecliptic.ra, ecliptic.dec, "lco")
                - times.tdb).to_value(u.s)
    at_pole = (barycentric_times(times, pole.ra, pole.dec, "lco") - times.tdb).to_value(u.s)
    # Earth's distance 0.983-1.017 au, plus the Sun's offset from the barycentre (< 2.5 s);
    # out of the ecliptic plane only that offset remains (Jupiter, Saturn: < 0.2 s).
    assert 0.983 * au_light - 2.5 < in_plane.max() < 1.017 * au_light + 2.5
    assert -1.017 * au_light - 2.5 < in_plane.min() < -0.983 * au_light + 2.5
    assert np.abs(at_pole).max() < 0.2


def test_time_column_survives_ecsv_round_trip(tmp_path):
    """Lossless only with ``serialize_method="jd1_jd2"`` (ECSV's default is the formatted JD)."""
    bjd = barycentric_times(parse_times(["2024-05-06 01:02:03.123456"] * 2), 10.0, 20.0, "spm")
    Table({"bjd_tdb": bjd}).write(tmp_path / "lc.ecsv", serialize_method="jd1_jd2")
    back = Table.read(tmp_path / "lc.ecsv")["bjd_tdb"]
    assert back.scale == "tdb"
    np.testing.assert_allclose((back - bjd).to_value(u.ns), 0.0, atol=1e-3)


# --- time checks and good time intervals ---------------------------------------------------

def test_time_flags_backwards_repeat_spike_nan():
    times = np.array([0.0, 1, 2, 100, 4, 5, 5, 6, 5.5, 7, np.nan, 8, 20, 21])
    expected = np.zeros(times.size, int)
    expected[[3, 6, 8, 10]] = BAD  # spike, repeat, step back, NaN; the jump 8 -> 20 is fine
    np.testing.assert_array_equal(time_flags(times), expected)
    assert time_flags(times).dtype == np.int32


def test_time_flags_on_time_objects_and_near_repeats():
    start = Time("2024-05-06T01:00:00", scale="utc")
    seconds = np.array([0.0, 1.0, 1.0000004, 2.0, 1.5, 3.0])
    flags = time_flags(start + TimeDelta(seconds, format="sec"))
    np.testing.assert_array_equal(flags, [0, 0, BAD, 0, BAD, 0])
    np.testing.assert_array_equal(time_flags(seconds * 1000.0 * u.ms, cadence=1 * u.s),
                                  [0, 0, BAD, 0, BAD, 0])
    np.testing.assert_array_equal(time_flags(np.array([3.0])), [0])


def test_good_time_intervals_with_gaps_and_bad_times():
    seconds = np.concatenate([np.arange(0, 100.0), np.arange(130, 200.0), np.arange(200.5, 201)])
    seconds = np.insert(seconds, 50, 10.0)  # a stamp that steps back: ignored
    gtis = good_time_intervals(seconds)
    np.testing.assert_allclose(gtis, [[-0.5, 99.5], [129.5, 201.0]])
    np.testing.assert_allclose(good_time_intervals(seconds, gap_factor=40.0), [[-0.5, 201.0]])
    np.testing.assert_allclose(good_time_intervals(seconds, cadence=2.0, gap_factor=10.0),
                               [[-1.0, 100.0], [129.0, 201.5]])
    with pytest.raises(ValueError, match="gap_factor"):
        good_time_intervals(seconds, gap_factor=1.0)
    with pytest.raises(ValueError, match="cadence"):
        good_time_intervals(np.array([5.0]))


def test_good_time_intervals_keep_the_input_type():
    start = Time("2024-05-06T01:00:00", scale="tdb")
    seconds = np.concatenate([np.arange(0, 10.0), np.arange(20, 25.0)])
    gtis = good_time_intervals(start + TimeDelta(seconds, format="sec"))
    assert isinstance(gtis, Time) and gtis.shape == (2, 2)
    np.testing.assert_allclose((gtis - start).to_value(u.s), [[-0.5, 9.5], [19.5, 24.5]],
                               atol=1e-6)
    in_ms = good_time_intervals(seconds * 1000 * u.ms, cadence=1 * u.s)
    assert in_ms.unit == u.ms
    np.testing.assert_allclose(in_ms.value, [[-500, 9500], [19500, 24500]])


def test_intersect_gtis():
    first = np.array([[0.0, 10.0], [20.0, 30.0]])
    second = np.array([[5.0, 22.0], [25.0, 40.0], [50.0, 60.0]])
    np.testing.assert_allclose(intersect_gtis(first, second),
                               [[5.0, 10.0], [20.0, 22.0], [25.0, 30.0]])
    assert intersect_gtis(first * u.s, second * u.s).unit == u.s
    assert intersect_gtis(first, np.array([[11.0, 19.0]])).shape == (0, 2)


# --- real OGLE-IV headers ------------------------------------------------------------------

@pytest.fixture(scope="module")
def ogle_headers():
    if not OGLE.is_dir():
        pytest.skip(f"real OGLE-IV frames not found at {OGLE} (needs ../shared)")
    from astropy.io import fits

    return [fits.getheader(path) for path in sorted((OGLE / "frames").glob("*.fts"))]


@pytest.fixture(scope="module")
def ogle_times(ogle_headers):
    start = parse_times([h["DATE-OBS"] for h in ogle_headers])
    mid = mid_exposure(start, [h["EXPTIME"] for h in ogle_headers], "start")
    coords = SkyCoord([h["RA"] for h in ogle_headers], [h["DEC"] for h in ogle_headers],
                      unit=(u.hourangle, u.deg))
    return mid, coords


def _seconds_from_jd(time, jd):
    return ((time.jd1 - np.floor(jd)) + (time.jd2 - (jd - np.floor(jd)))) * 86400.0


def test_ogle_mid_exposure_matches_juldat(ogle_headers, ogle_times):
    mid, _ = ogle_times
    assert len(ogle_headers) == 98
    juldat = np.array([h["JULDAT"] for h in ogle_headers])
    assert np.abs(_seconds_from_jd(mid, juldat)).max() <= 0.2


def test_ogle_site_longitude_matches_sidereal_times(ogle_headers):
    juldat = Time([h["JULDAT"] for h in ogle_headers], format="jd", scale="utc",
                  location=get_site(ogle_headers[0]["OBSERVAT"]))
    header_st = Longitude([h["ST"] for h in ogle_headers], unit=u.hourangle)
    diff = (juldat.sidereal_time("apparent") - header_st).wrap_at(180 * u.deg)
    # ST is given in whole seconds: the mean lies within [-0.5, 0.5] s whether rounded or cut.
    assert abs(diff.to_value(u.hourangle).mean() * 3600) < 0.6


def test_ogle_heliocentric_matches_heljd(offline, ogle_headers, ogle_times):
    mid, coords = ogle_times
    heljd = np.array([h["HELJD"] for h in ogle_headers])
    hjd = heliocentric_times(mid, coords.ra, coords.dec, "lco")
    assert hjd.scale == "utc"
    assert np.abs(_seconds_from_jd(hjd, heljd)).max() <= 0.3


def test_ogle_bjd_tdb_minus_heljd(offline, ogle_headers, ogle_times):
    """BJD_TDB - HJD_UTC = (TT - UTC = 66.184 s in 2012) + TDB - TT + barycentric - heliocentric."""
    mid, coords = ogle_times
    heljd = np.array([h["HELJD"] for h in ogle_headers])
    bjd = barycentric_times(mid, coords.ra, coords.dec, "lco")
    difference = _seconds_from_jd(bjd, heljd)
    assert difference.min() >= 65.9 and difference.max() <= 66.3
    hjd = heliocentric_times(mid, coords.ra, coords.dec, "lco")
    # Numerical difference of the two dates (not the interval, which has no TT - UTC in it).
    expected = ((bjd.jd1 - hjd.jd1) + (bjd.jd2 - hjd.jd2)) * 86400.0
    light_times = expected - 66.184
    assert np.all(np.abs(light_times) < 2.5)
    np.testing.assert_allclose(difference, expected, atol=0.3)


# --- per-frame helpers of the Reducer ------------------------------------------------------

class _Info:
    """The FrameInfo fields the frame helpers read."""

    def __init__(self, time, ra=float("nan"), dec=float("nan"), observatory=None):
        self.time, self.ra, self.dec, self.observatory = time, ra, dec, observatory


def test_frame_time_flags_follow_acquisition_order():
    """Frames in time order; the acquisition order (e.g. file numbers) puts the stamp of 2.5 s
    after 3 s: that frame went backwards, and a repeated stamp is flagged once."""
    from opticam_like.timing import frame_time_flags
    start = Time("2024-01-01T00:00:00", scale="utc")
    seconds = [0.0, 1.0, 2.0, 2.5, 3.0, 5.0, 5.0]
    infos = [_Info(start + TimeDelta(s, format="sec")) for s in seconds]
    order = [0, 1, 2, 4, 3, 5, 6]  # acquisition: 0 1 2 3.0 2.5 5 5
    flags = frame_time_flags(infos, order)
    assert flags[3] == BAD and flags[4] == 0
    assert (flags[5] == BAD) != (flags[6] == BAD)
    assert int(np.count_nonzero(flags)) == 2


def test_frame_times_bjd_when_site_and_target_else_mjd_utc(caplog):
    from opticam_like.timing import frame_times, header_target
    start = Time("2024-03-01T02:00:00", scale="utc")
    infos = [_Info(start + TimeDelta(10.0 * i, format="sec"), ra=202.47, dec=-11.16,
                   observatory="spm") for i in range(3)]
    assert header_target([_Info(start)] + infos) == (202.47, -11.16)
    times, name = frame_times(infos)
    assert name == "bjd_tdb" and times.scale == "tdb" and times.format == "jd"
    expected = barycentric_times(Time([i.time for i in infos]), 202.47, -11.16, "spm")
    np.testing.assert_allclose((times - expected).to_value(u.ns), 0.0, atol=1e-3)
    with caplog.at_level("INFO", logger="opticam_like"):
        times, name = frame_times([_Info(i.time) for i in infos])
    assert name == "mjd_utc" and times.format == "mjd"
    np.testing.assert_allclose(times.mjd, Time([i.time for i in infos]).mjd, rtol=0, atol=0)
    assert any(r.name == "opticam_like.timing" and "MJD_UTC" in r.getMessage()
               for r in caplog.records)
