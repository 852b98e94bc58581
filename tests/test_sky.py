"""Night-wide catalogue: one ID per star across cameras with flips, rotations and scales."""

import numpy as np
import pytest
from astropy.table import Table

from opticam_like.alignment import AlignmentError, Transform
from opticam_like.errors import ReductionError
from opticam_like.sky import camera_transform, match_catalogs

SHAPE = (512, 512)


def _camera_matrix(flip_x, flip_y, angle_deg, scale, shift):
    """Sky (reference camera px) -> camera px."""
    a = np.radians(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    flip = np.diag([-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0])
    linear = flip @ rot
    centre = np.array([256.0, 256.0])
    offset = centre - linear @ centre + np.asarray(shift)
    return np.vstack([np.column_stack([linear, offset]), [0, 0, 1]])


def _field(seed=3, n=80):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-40, 552, size=(n, 2))
    flux = 10 ** rng.uniform(3, 6, n)
    colour = rng.normal(0, 0.3, n)
    return xy, flux, colour


CAMERAS = {"g": (False, False, 0.0, 1.0, (0, 0)),
           "r": (True, False, 1.3, 0.9936, (6.0, -4.0)),       # mirror image, 0.1397/0.1406
           "i": (False, True, -0.8, 0.8411, (-9.0, 3.5))}      # 0.1397/0.1661 arcsec/px


def _catalogs(seed=3, missing_faint=True):
    xy, flux, colour = _field(seed)
    rng = np.random.default_rng(seed + 1)
    catalogs, truth = {}, {}
    for k, (band, geometry) in enumerate(CAMERAS.items()):
        m = _camera_matrix(*geometry)
        cam = (m[:2, :2] @ xy.T).T + m[:2, 2] + rng.normal(0, 0.05, xy.shape)
        band_flux = flux * 10 ** (-0.4 * colour * (k - 1))
        inside = ((cam >= 0) & (cam < 511)).all(axis=1)
        detected = inside & (band_flux > (3e3 if missing_faint and band == "i" else 1e3))
        order = np.argsort(-band_flux[detected])
        index = np.flatnonzero(detected)[order]
        catalogs[band] = Table({"id": np.arange(1, len(index) + 1), "x": cam[index, 0],
                                "y": cam[index, 1], "flux": band_flux[index]})
        truth[band] = (m, index)
    return catalogs, truth, xy


@pytest.fixture(scope="module")
def matched():
    catalogs, truth, xy = _catalogs()
    night = match_catalogs(catalogs, {b: SHAPE for b in catalogs}, reference="g")
    return catalogs, truth, xy, night


def test_one_id_per_star_in_every_camera(matched):
    catalogs, truth, xy, night = matched
    table = night.table
    # every detection of every camera is one night star, and one star is one sky position
    star_of = {}
    for band, (matrix, index) in truth.items():
        ids = table["id"][table[f"id_{band}"] > 0]
        cam_ids = table[f"id_{band}"][table[f"id_{band}"] > 0]
        assert len(ids) == len(catalogs[band])
        for night_id, cam_id in zip(ids, cam_ids):
            sky_index = index[cam_id - 1]
            assert star_of.setdefault(int(night_id), sky_index) == sky_index
    # IDs rank the reference band's brightness first
    ref_ids = table["id"][table["id_g"] > 0]
    assert list(ref_ids) == list(range(1, len(catalogs["g"]) + 1))
    # transforms recovered to 0.1 px over the frame
    for band, (matrix, _) in truth.items():
        corners = np.array([[0, 0], [511, 0], [0, 511], [511, 511]], float)
        got = np.column_stack(night.transforms[band].apply(corners[:, 0], corners[:, 1]))
        want = (matrix[:2, :2] @ corners.T).T + matrix[:2, 2]
        assert np.abs(got - want).max() < 0.1, band


def test_undetected_star_has_predicted_position_and_coverage(matched):
    catalogs, truth, xy, night = matched
    table = night.table
    faint = (table["id_g"] > 0) & (table["id_i"] == 0) & table["in_i"]
    assert faint.sum() > 3
    matrix_i = truth["i"][0]
    for row in table[faint]:
        sky = xy[truth["g"][1][row["id_g"] - 1]]
        want = matrix_i[:2, :2] @ sky + matrix_i[:2, 2]
        assert np.hypot(row["x_i"] - want[0], row["y_i"] - want[1]) < 0.3
    cat_i = night.camera_catalog("i")
    # every night star, in ID order, in every camera
    assert list(cat_i["id"]) == list(table["id"])
    assert cat_i["inside"].sum() == int(table["in_i"].sum())
    assert cat_i["detected"].sum() == len(catalogs["i"])
    undetected = ~np.asarray(cat_i["detected"])
    assert np.all(cat_i["flags"][undetected] == 8) and np.all(np.isnan(cat_i["flux"][undetected]))
    detected_rows = cat_i[cat_i["detected"]]
    own = catalogs["i"]
    np.testing.assert_array_equal(detected_rows["flux"], own["flux"][detected_rows["camera_id"] - 1])


def test_find_by_position_in_any_camera(matched):
    night = matched[3]
    row = night.table[4]
    assert night.find(row["x_r"] + 0.7, row["y_r"] - 0.5, band="r") == row["id"]
    assert night.find(row["x_g"], row["y_g"]) == row["id"]
    with pytest.raises(ReductionError, match="no star within"):
        night.find(-300.0, -300.0, band="i")


def test_unrelated_fields_do_not_match():
    rng = np.random.default_rng(9)
    a = rng.uniform(0, 512, (30, 2))
    b = rng.uniform(0, 512, (30, 2))
    with pytest.raises(AlignmentError):
        camera_transform(a, b)
