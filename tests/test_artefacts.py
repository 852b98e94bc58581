"""A raw night with cosmic rays, hot and dead pixels, a saturated star, a vignetted flat and a
dark current, reduced through the CLI with bias, dark and flat frames and cosmic-ray removal:
masters are built, and no point touched by a significant cosmic ray or a saturated pixel goes
unflagged."""

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import opticam_like as ol
from data_generator import load_truth
from opticam_like.cli import main
from opticam_like.flags import PhotFlag

N_IMAGES = 30


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    base = tmp_path_factory.mktemp("artefacts")
    ol.generate_observations(base / "data", n_images=N_IMAGES, cosmic_rays=6, hot_pixels=50,
                             dead_pixels=50, n_saturated=1, progress=False)
    parameters = load_truth(base / "data").parameters
    for kind, make in (("bias", ol.generate_biases), ("dark", ol.generate_darks),
                       ("flat", ol.generate_flats)):
        make(base / "cal" / kind, parameters=parameters, progress=False)
    assert main(["reduce", str(base / "data"), str(base / "out"), "--bias",
                 str(base / "cal" / "bias"), "--dark", str(base / "cal" / "dark"), "--flat",
                 str(base / "cal" / "flat"), "--remove-cosmic-rays", "--n-workers", "2",
                 "--no-progress"]) == 0
    return base, load_truth(base / "data")


def test_masters_built_with_provenance(night):
    base, truth = night
    masters = sorted(p for p in (base / "out" / "cal").glob("*.fits")
                     if not p.name.startswith("defects"))
    assert len(masters) == 9  # bias and dark per camera, flat per camera and filter
    flat = next(p for p in masters if "flat" in p.name and "C1" in p.name)
    with fits.open(flat) as hdul:
        assert "INPUTS" in hdul
        true_flat = truth.detector("C1")["flat"]
        ratio = hdul[0].data / true_flat
        good = ~truth.detector("C1")["dead"]
        assert np.std(ratio[good]) < 0.01  # the vignetting and pixel response are recovered
    provenance = json.loads((base / "out" / "misc" / "provenance.json").read_text())
    assert provenance["calibration"] is not None


def test_every_significant_cosmic_ray_is_flagged(night):
    base, truth = night
    n_significant = n_false = n_points = 0
    for band in "gri":
        table = Table.read(base / "out" / "lcs" / f"{band}_aperture_1.5fwhm.fits")
        flags = np.asarray(table["flags"])
        deposit = np.zeros(flags.shape)
        for hit in truth.cosmic_rays(band):
            f = hit["frame"]
            dx = np.maximum(np.abs(table["x"][f] - hit["x"]) - 0.5, 0)
            dy = np.maximum(np.abs(table["y"][f] - hit["y"]) - 0.5, 0)
            deposit[f, np.hypot(dx, dy) < table["aperture_radius"][f]] += hit["electrons"]
        significant = deposit > np.asarray(table["flux_err"])  # changes the flux by > 1 sigma
        flagged = (flags & PhotFlag.COSMIC_RAY) != 0
        assert np.all(flagged[significant]), band
        n_significant += significant.sum()
        n_false += (flagged & (deposit == 0)).sum()
        n_points += flags.size
    assert n_significant >= 5
    assert n_false <= 0.01 * n_points


def test_saturated_and_bad_pixels_are_flagged(night):
    base, truth = night
    for camera, band in zip(truth.parameters["cameras"], truth.parameters["filters"]):
        table = Table.read(base / "out" / "lcs" / f"{band}_aperture_1.5fwhm.fits")
        catalog = Table.read(base / "out" / "cat" / f"{band}_catalog.ecsv")
        frame = truth.frame_position(band, catalog.meta["reference_frame"])
        xy = truth.positions(band, frame)
        index = np.hypot(catalog["x"][:, None] - xy[None, :, 0],
                         catalog["y"][:, None] - xy[None, :, 1]).argmin(axis=1)
        saturated = np.asarray(truth.fluxes(band)["saturated"])
        flags = np.asarray(table["flags"])
        assert saturated.any()
        for column, source in enumerate(index):
            assert np.all(flags[saturated[:, source], column] & PhotFlag.SATURATED)
        assert len(set(index[np.any(saturated, axis=0)[index]])) == len(
            np.flatnonzero(np.any(saturated, axis=0)[index]))  # a saturated star is one source
        bad = truth.detector(camera)["hot"] | truth.detector(camera)["dead"]
        for f in range(0, N_IMAGES, 7):
            x, y, r = table["x"][f], table["y"][f], table["aperture_radius"][f]
            for yb, xb in zip(*np.nonzero(bad)):
                inside = np.hypot(x - xb, y - yb) < r - 0.71
                assert np.all(flags[f, inside] & PhotFlag.BAD_PIXEL)
