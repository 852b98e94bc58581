"""Real frames: 98 calibrated OGLE-IV frames of a crowded LMC field, reduced through the generic
profile with the site and target from a config file. The Cepheid must show P = 3.78 +/- 0.01 d
and a 0.6-0.8 mag peak-to-peak amplitude; a constant check star an RMS <= 0.015 mag."""

import numpy as np
import pytest
from astropy.table import Table
from astropy.timeseries import LombScargle

import opticam_like as ol
from opticam_like.flags import PhotFlag
from conftest import OGLE, require_shared
from opticam_like.alignment import Transform

# positions in o4201193.10.fts (0-based), from ../shared/realdata/.../PROVENANCE.md
CEPHEID = (214.5, 238.8)
CHECK_C1 = (181.1, 267.7)
COMP_C2 = (194.6, 146.3)


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    frames = require_shared(OGLE / "frames")
    out = tmp_path_factory.mktemp("ogle")
    config = out / "ogle.toml"
    config.write_text('instrument = "generic"\n[site]\nname = "lco"\n'
                      '[reduction]\nn_workers = 2\nprogress = false\n')
    with ol.Reducer(out / "reduced", data_directory=frames, config=config) as reducer:
        reducer.create_catalogs()
        reducer.photometry()
    return out / "reduced", reducer


def _catalog_id(reduced, xy):
    catalog = Table.read(reduced / "cat" / "I_catalog.ecsv")
    transforms = Table.read(reduced / "cat" / "transforms_I.ecsv")
    row = transforms[transforms["file"] == "o4201193.10.fts"][0]
    to_reference = Transform(np.vstack([np.reshape(row["matrix"], (2, 3)), [0, 0, 1]])).inverse()
    x, y = to_reference.apply(*xy)
    distance = np.hypot(catalog["x"] - x, catalog["y"] - y)
    assert distance.min() < 0.5
    return int(catalog["id"][np.argmin(distance)])


def test_every_frame_reduced(reduced):
    out, reducer = reduced
    assert len(reducer.rejected) == 0
    table = Table.read(out / "lcs" / "I_aperture_1.5fwhm.fits", astropy_native=True)
    assert len(table) == 98 and np.all(table["frame_flags"] == 0)
    assert table["bjd_tdb"].scale == "tdb"
    assert len(reducer.catalogs["I"]) > 200  # crowded field


def test_cepheid_period_and_amplitude(reduced):
    out, _ = reduced
    lc = ol.DifferentialPhotometer(out).get_relative_light_curve("I", _catalog_id(out, CEPHEID))
    # in this crowded field most stars hold a little of a neighbour's light in some frames:
    # BLENDED informs, it does not spoil a point
    good = (lc["flags"] & ~PhotFlag.BLENDED) == 0
    assert good.sum() >= 90   # 98 frames; a few touch warm pixels of the defect map
    t, mag = lc["bjd_tdb"].jd[good], np.asarray(lc["delta_mag"][good])
    frequency, power = LombScargle(t, mag).autopower(minimum_frequency=0.05,
                                                     maximum_frequency=2.0,
                                                     samples_per_peak=50)
    period = 1 / frequency[np.argmax(power)]
    assert period == pytest.approx(3.78, abs=0.01)
    four = LombScargle(t, mag, nterms=4)
    grid = np.linspace(0.99, 1.01, 801) / period
    best = grid[np.argmax(four.power(grid))]
    model = four.model(np.linspace(t[0], t[0] + 1 / best, 2000), best)
    assert 0.6 <= model.max() - model.min() <= 0.8


def test_check_star_rms(reduced):
    out, _ = reduced
    lc = ol.DifferentialPhotometer(out, save=False).get_relative_light_curve(
        "I", _catalog_id(out, CHECK_C1), [_catalog_id(out, COMP_C2)])
    assert np.std(lc["delta_mag"][lc["flags"] == 0]) <= 0.015


def test_analyzer_period_and_barycentric_times(reduced):
    """The Analyzer gives the Cepheid's period from the Reducer's light curve, and the Reducer's
    BJD_TDB sits TT-UTC plus the barycentric-minus-heliocentric light time (66.0-66.3 s) after
    the header's HELJD for every frame."""
    from astropy.io import fits
    out, _ = reduced
    lc = ol.DifferentialPhotometer(out, save=False).get_relative_light_curve(
        "I", _catalog_id(out, CEPHEID))
    frequency, error = ol.Analyzer({"I": lc}).best_frequency("I", 0.05, 2.0)
    assert 1 / frequency.to_value("1/d") == pytest.approx(3.78, abs=0.01)
    table = Table.read(out / "lcs" / "I_aperture_1.5fwhm.fits", astropy_native=True)
    heljd = np.array([fits.getheader(OGLE / "frames" / name)["HELJD"] for name in table["file"]])
    difference = (table["bjd_tdb"].jd - heljd) * 86400
    assert np.all((difference > 65.9) & (difference < 66.35))
