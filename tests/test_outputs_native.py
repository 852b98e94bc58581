"""astropy-native outputs (issue 10): units on every measured column, so ``QTable.read`` gives
Quantities; ``Time`` columns with the site's location; ``TimeSeries.read`` of light curves and
photometry tables; the package's own readers still work on them."""

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import EarthLocation
from astropy.table import QTable, Table
from astropy.time import Time, TimeDelta
from astropy.timeseries import TimeSeries

import data_generator as dg
from opticam_like import schema
from opticam_like.analysis import Analyzer
from opticam_like.lightcurves import DifferentialPhotometer
from opticam_like.outputs import write_table
from opticam_like.parallel import FrameFailure
from opticam_like.photometry.tables import photometry_table
from opticam_like.reducer import Reducer
from opticam_like.timing import frame_times, get_site

E_PER_PIX = u.electron / u.pix**2


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    """Three cameras, 8 frames of 128 x 128, reduced, with the relative light curves of
    night ID 2 written."""
    root = tmp_path_factory.mktemp("native")
    dg.generate_observations(root / "data", 8, shape=(128, 128), n_sources=8, progress=False)
    with Reducer(root / "red", data_directory=root / "data", n_workers=1,
                 progress=False) as reducer:
        reducer.create_catalogs()
        tables = reducer.photometry()
        name = reducer.default_photometer
    diff = DifferentialPhotometer(root / "red", photometer=name)
    curves = {band: diff.get_relative_light_curve(band, 2) for band in ("g", "r", "i")}
    return root / "red", tables, name, curves


def test_photometry_tables_read_as_quantities(reduced):
    out, tables, name, _ = reduced
    written = tables[("g", name)]
    table = QTable.read(schema.photometry_path(out, "g", name), astropy_native=True)
    expected = {"x": u.pix, "y": u.pix, "flux": u.electron, "flux_err": u.electron,
                "background": E_PER_PIX, "area": u.pix**2, "exposure": u.s, "fwhm": u.pix,
                "fwhm_major": u.pix, "fwhm_minor": u.pix, "psf_theta": u.rad,
                "aperture_radius": u.pix, "background_median": E_PER_PIX}
    for column, unit in expected.items():
        assert isinstance(table[column], u.Quantity), column
        assert table[column].unit == unit, column
    np.testing.assert_array_equal(table["flux"].to_value(u.electron),
                                  np.asarray(written["flux"]))
    assert table["exposure"][0] == written["exposure"][0] * u.s
    assert isinstance(table["bjd_tdb"], Time) and table["bjd_tdb"].scale == "tdb"
    assert np.all(table["bjd_tdb"] == written["bjd_tdb"])
    assert "UNITS" not in table.meta  # no duplicate of the units in the metadata
    # plain Table.read keeps the units on the columns
    assert Table.read(schema.photometry_path(out, "g", name))["flux"].unit == u.electron


def test_photometry_table_reads_as_timeseries(reduced):
    out, tables, name, _ = reduced
    series = TimeSeries.read(schema.photometry_path(out, "r", name), format="fits",
                             time_column="bjd_tdb", astropy_native=True)
    assert len(series) == 8
    assert np.all(series.time == tables[("r", name)]["bjd_tdb"])
    assert series["flux"].unit == u.electron and series["flux"].shape[1] >= 8


def test_catalogues_and_transforms_carry_units(reduced):
    out = reduced[0]
    catalog = QTable.read(schema.catalog_path(out, "i"))
    for column, unit in {"x": u.pix, "y": u.pix, "flux": u.electron, "peak": u.electron,
                         "fwhm": u.pix, "npix": u.pix**2}.items():
        assert catalog[column].unit == unit, column
    assert catalog["flux"][0] > 0 * u.electron
    night = QTable.read(out / schema.NIGHT_CATALOG)
    for band in ("g", "r", "i"):
        assert night[f"x_{band}"].unit == u.pix and night[f"flux_{band}"].unit == u.electron
    frames = QTable.read(out / schema.FRAMES_TABLE)
    assert frames["exposure"].unit == u.s and frames["mjd_mid"].unit == u.day
    assert frames["gain"].unit == u.electron / u.adu
    transforms = QTable.read(schema.transforms_path(out, "g"))
    for column, unit in {"dx": u.pix, "dy": u.pix, "rms": u.pix, "fwhm": u.pix,
                         "background_median": E_PER_PIX, "background_rms": E_PER_PIX}.items():
        assert transforms[column].unit == unit, column


def test_relative_light_curve_reads_as_timeseries(reduced):
    out, _, name, curves = reduced
    path = schema.light_curve_path(out, "g", 2, name)
    series = TimeSeries.read(path, format="ascii.ecsv", time_column="bjd_tdb")
    assert np.all(series.time == curves["g"]["bjd_tdb"])
    assert series["delta_mag"].unit == u.mag
    assert series["relative_flux"].unit == u.dimensionless_unscaled
    np.testing.assert_allclose(series["relative_flux"].value, curves["g"]["relative_flux"])
    assert series.meta["target"] == 2
    qtable = QTable.read(path)
    good = qtable["flags"] == 0
    # delta_mag = -2.5 log10(relative flux), in magnitudes
    np.testing.assert_allclose(qtable["delta_mag"][good].to_value(u.mag),
                               -2.5 * np.log10(qtable["relative_flux"][good].value))


def test_readers_work_on_unit_columns(reduced):
    out, _, name, _ = reduced
    analyzer = Analyzer.from_directory(out, target=2, photometer=name)
    assert sorted(analyzer.bands) == ["g", "i", "r"]
    # the same light curves read as QTables (Quantity columns) give the same periodogram
    tables = {band: QTable.read(schema.light_curve_path(out, band, 2, name))
              for band in ("g", "r", "i")}
    from_qtables = Analyzer(tables)
    one, two = analyzer.lomb_scargle("g"), from_qtables.lomb_scargle("g")
    assert np.all(one["power"] == two["power"]) and len(one) > 10


def test_time_column_carries_the_site_location(tmp_path):
    class Info:
        def __init__(self, time):
            self.time, self.ra, self.dec, self.observatory = time, np.nan, np.nan, "spm"

    start = Time("2024-03-01T02:00:00", scale="utc")
    infos = [Info(start + TimeDelta(10.0 * i, format="sec")) for i in range(3)]
    times, name = frame_times(infos)
    assert name == "mjd_utc"
    site = get_site("spm")
    assert isinstance(times.location, EarthLocation)
    np.testing.assert_allclose(u.Quantity(times.location.geocentric).to_value(u.m),
                               u.Quantity(site.geocentric).to_value(u.m))
    rows = [FrameFailure(f"f{i}.fits", "read", "unreadable") for i in range(3)]
    table = photometry_table("aperture", ["f0", "f1", "f2"], times, name, [10.0] * 3, rows,
                             np.zeros(3, int), 2)
    write_table(table, tmp_path / "lcs.fits")
    write_table(table, tmp_path / "lcs.ecsv")
    for path in (tmp_path / "lcs.fits", tmp_path / "lcs.ecsv"):
        native = {"astropy_native": True} if path.suffix == ".fits" else {}
        back = QTable.read(path, **native)
        assert back["mjd_utc"].location is not None, path
        np.testing.assert_allclose(u.Quantity(back["mjd_utc"].location.geocentric).to_value(u.m),
                                   u.Quantity(site.geocentric).to_value(u.m), atol=1e-6)
        assert np.all(np.abs((back["mjd_utc"] - times).to_value(u.us)) < 1)
