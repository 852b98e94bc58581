"""Detector defects found from the science frames (no darks): the realistic preset's hot,
saturated hot, warm and dead pixels and hot and dead columns against the truth, stars on a
night without drift, the accumulator's merge and memory, lines and partial lines on synthetic
combinations, the cache, and the OGLE frames."""

import logging
import os
import pickle

import numpy as np
import pytest
from scipy.special import erf

import data_generator as dg
from astropy.io import fits
from conftest import OGLE, require_shared
from opticam_like.background import DefaultBackground
from opticam_like.calibration.defects import (DefectAccumulator, DefectMap, DefectOptions,
                                              build_defect_maps, find_defects,
                                              read_defect_flags, sample_indices,
                                              star_sharpness_limit)
from opticam_like.flags import PhotFlag
from opticam_like.instruments import load_profile
from opticam_like.parallel import WorkerPool
from opticam_like.scan import scan_frames
from opticam_like.stages import PassContext

CAMERAS = ("C1", "C2", "C3")


def _build(directory, cache, profile="opticam", log=None, n_workers=1):
    profile = load_profile(profile)
    scan = scan_frames([directory], profile)
    infos = [info for group in scan.groups.values() for info in group]
    context = PassContext(profile=profile, background=DefaultBackground())
    with WorkerPool(n_workers, progress=False) as pool:
        maps, failures = build_defect_maps(infos, context, pool, cache_directory=cache,
                                           log=log)
    assert failures == []
    return {key[0]: DefectMap.read(path) for key, path in maps.items()}, maps, infos


@pytest.fixture(scope="module")
def drifting(tmp_path_factory):
    """The realistic preset (50 px drift, cosmic rays, trail, clouds), 60 frames, no darks."""
    root = tmp_path_factory.mktemp("defects")
    dg.generate_observations(root / "night", 60, preset="realistic", shape=(256, 256),
                             progress=False)
    maps, paths, infos = _build(root / "night", root / "cal")
    return dg.load_truth(root / "night"), maps, paths, infos, root


@pytest.fixture(scope="module")
def still(tmp_path_factory):
    """The same preset without drift or field rotation: the stars stay on their pixels."""
    root = tmp_path_factory.mktemp("nodrift")
    dg.generate_observations(root / "night", 40, preset="realistic", shape=(256, 256),
                             drift=0.0, field_rotation=0.0, seed=7, progress=False)
    maps, _, _ = _build(root / "night", root / "cal")
    return dg.load_truth(root / "night"), maps


def _truth_mask(truth, camera, shape):
    defects = truth.defects(camera)
    mask = np.zeros(shape, bool)
    mask[defects["y"], defects["x"]] = True
    return mask


@pytest.mark.parametrize("camera", CAMERAS)
def test_hot_dead_pixels_and_columns_all_found(drifting, camera):
    truth, maps, _, _, _ = drifting
    defects, found = truth.defects(camera), maps[camera]
    for kind in ("hot", "saturated_hot", "dead", "hot_column", "dead_column"):
        rows = defects[defects["kind"] == kind]
        assert len(rows) and found.mask[rows["y"], rows["x"]].all(), kind
    for kind, expected in (("hot_column", "hot"), ("dead_column", "dead")):
        column = defects[defects["kind"] == kind]["x"][0]
        line = found.table[found.table["kind"] == kind]
        assert len(line) == 1 and line["x0"][0] == column and line["y0"][0] == 0
        assert line["y1"][0] == found.shape[0] - 1
    saturated = defects[defects["kind"] == "saturated_hot"]
    assert found.hot[saturated["y"], saturated["x"]].all()


@pytest.mark.parametrize("camera", CAMERAS)
def test_warm_pixels_above_the_detection_limit(drifting, camera):
    """Measured 5-sigma limits (256 x 256, 30 of 60 frames of 1 s, no bias, dark or flat
    subtracted): C1 19, C2 23, C3 26 e-/s; every warm pixel above 1.5 times the limit is
    found except one (C3, in the residual light of a bright star's track)."""
    truth, maps, _, _, _ = drifting
    found = maps[camera]
    limit = found.meta["detection_limit"]
    assert 10 < limit < 30
    warm = truth.defects(camera)
    warm = warm[(warm["kind"] == "warm") & (warm["dark"] > 1.5 * limit)]
    assert len(warm) >= 10
    assert found.mask[warm["y"], warm["x"]].mean() >= 0.95


@pytest.mark.parametrize("camera", CAMERAS)
def test_few_false_defects(drifting, camera):
    truth, maps, _, _, _ = drifting
    found = maps[camera]
    false = found.mask & ~_truth_mask(truth, camera, found.shape)
    assert false.sum() < 0.01 * found.mask.sum()  # measured: 0 of 622-663 in each camera
    assert not found.rows.any()


@pytest.mark.parametrize("camera", CAMERAS)
def test_no_star_becomes_a_defect_without_drift(still, camera):
    truth, maps = still
    found = maps[camera]
    band = dg.load_truth(truth.directory).parameters["filters"][CAMERAS.index(camera)]
    xy = truth.positions(band, 0)
    false = found.mask & ~_truth_mask(truth, camera, found.shape)
    fy, fx = np.nonzero(false)
    distance = np.hypot(fx[:, None] - xy[None, :, 0], fy[:, None] - xy[None, :, 1])
    assert not (distance < 4 * truth.parameters["fwhm"]).any()
    assert false.sum() < 0.01 * found.mask.sum()
    columns = truth.defects(camera)
    columns = columns[np.isin(columns["kind"], ("hot_column", "dead_column"))]
    assert found.mask[columns["y"], columns["x"]].all()


def test_cache_reused_and_rebuilt(drifting, caplog):
    truth, _, paths, infos, root = drifting
    stamps = {key: os.stat(path).st_mtime_ns for key, path in paths.items()}
    with caplog.at_level(logging.INFO):
        _, again, _ = _build(root / "night", root / "cal", log=logging.getLogger("defects"))
    assert again == paths and "reused defect map C1/4x4" in caplog.text
    assert {key: os.stat(path).st_mtime_ns for key, path in paths.items()} == stamps
    first = sorted((i for i in infos if i.camera == "C2"), key=lambda i: i.time)[0]
    os.utime(first.path, ns=(os.stat(first.path).st_atime_ns,
                             os.stat(first.path).st_mtime_ns + 10**9))
    _build(root / "night", root / "cal")
    changed = [key for key, path in paths.items() if os.stat(path).st_mtime_ns != stamps[key]]
    assert changed == [("C2", "4x4")]
    flags = read_defect_flags(paths[("C1", "4x4")])
    defect_map = DefectMap.read(paths[("C1", "4x4")])
    assert flags.dtype == np.uint16 and not flags.flags.writeable
    assert np.array_equal(flags == PhotFlag.BAD_PIXEL, defect_map.mask)
    assert np.array_equal(flags == 0, ~defect_map.mask)


def test_process_pool_gives_the_same_maps(drifting, tmp_path):
    _, serial, _, _, root = drifting
    parallel, _, _ = _build(root / "night", tmp_path / "cal", n_workers=2)
    for camera, found in serial.items():
        assert np.array_equal(parallel[camera].mask, found.mask)
        np.testing.assert_allclose(parallel[camera].combined, found.combined, atol=0.05)


def _frames(n, shape, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 10, shape).astype(np.float32) for _ in range(n)]


def test_merge_equals_one_accumulator_and_pickles():
    frames = _frames(23, (40, 50))
    frames[5][10, 10] = np.nan
    single = DefectAccumulator(23, 5)
    for i, frame in enumerate(frames):
        single.add(frame, i, exposure=2.0)
    parts = [DefectAccumulator(23, 5) for _ in range(3)]
    for i, frame in enumerate(frames):
        parts[i % 3].add(frame, i, exposure=2.0)
    merged = pickle.loads(pickle.dumps(parts[0]))
    merged.merge(pickle.loads(pickle.dumps(parts[1])))
    merged.merge(parts[2])
    merged.merge(DefectAccumulator(23, 5))  # an empty worker
    assert merged.n_added == single.n_added == 23
    np.testing.assert_allclose(merged.combined(), single.combined(), rtol=1e-6, atol=1e-5)
    blocks = [np.mean([frames[i] / 2 for i in range(23) if i * 5 // 23 == b], axis=0)
              for b in range(5)]
    blocks[1][10, 10] = np.mean([frames[i][10, 10] / 2 for i in range(23)
                                 if i * 5 // 23 == 1 and i != 5] + [0.0])
    np.testing.assert_allclose(single.combined(), np.median(blocks, axis=0), rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(ValueError, match="cannot merge"):
        merged.merge(DefectAccumulator(24, 5))


def test_memory_does_not_grow_with_frames():
    sizes = []
    for n in (10, 200):
        accumulator = DefectAccumulator(n, 7)
        for i, frame in enumerate(_frames(n, (32, 48))):
            accumulator.add(frame, i)
        sizes.append(accumulator.nbytes)
    assert sizes[0] == sizes[1] == 7 * 32 * 48 * 4 + 7 * 8


def test_too_few_blocks_and_bad_input():
    accumulator = DefectAccumulator(10, 7)
    for i in (0, 1):
        accumulator.add(np.zeros((8, 8)), i)
    with pytest.raises(ValueError, match="at least 3 blocks"):
        accumulator.combined()
    with pytest.raises(ValueError, match="shape"):
        accumulator.add(np.zeros((8, 9)), 3)
    with pytest.raises(ValueError, match="exposure"):
        accumulator.add(np.zeros((8, 8)), 3, exposure=0.0)
    with pytest.raises(ValueError, match="outside the night"):
        accumulator.add(np.zeros((8, 8)), 10)
    assert sample_indices(100, 30).tolist()[:3] == [0, 3, 7] and len(sample_indices(100, 30)) == 30
    assert sample_indices(12, 30).tolist() == list(range(12))


def _gaussian_star(shape, x, y, flux, fwhm):
    sigma = fwhm / 2.3548
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    fx = erf((xx - x + 0.5) / (np.sqrt(2) * sigma)) - erf((xx - x - 0.5) / (np.sqrt(2) * sigma))
    fy = erf((yy - y + 0.5) / (np.sqrt(2) * sigma)) - erf((yy - y - 0.5) / (np.sqrt(2) * sigma))
    return flux * fx * fy / 4


def test_sharpness_limit_of_stars():
    assert star_sharpness_limit(1.5) == pytest.approx(4.38, abs=0.01)
    assert star_sharpness_limit(3.0) == pytest.approx(1.55, abs=0.01)
    assert star_sharpness_limit(1.5) > star_sharpness_limit(2.0) > star_sharpness_limit(3.0)


def test_lines_partial_lines_pixels_and_stars_on_a_synthetic_combination():
    """Noise of 2 e-/s, a partial hot column, a whole dead row, a partial hot row, hot, warm
    and dead pixels, and 40 bright stars of FWHM 1.6 px at random sub-pixel positions that
    stay in the combination (a night without drift)."""
    rng = np.random.default_rng(3)
    shape = (200, 240)
    image = rng.normal(0, 2.0, shape)
    for x, y in rng.uniform(10, 190, (40, 2)):
        image += _gaussian_star(shape, x, y, rng.uniform(2e3, 1e5), 1.6)
    image[57:161, 100] += 30.0            # partial hot column, rows 57-160
    image[120, :] -= 150.0                # whole dead row
    image[30, 20:121] += 25.0             # partial hot row, columns 20-120
    truth = {"hot": [(5, 190), (200, 12)], "warm": [(70, 80), (150, 170)],
             "dead": [(33, 44), (222, 180)]}
    for x, y in truth["hot"]:
        image[y, x] += 400.0
    for x, y in truth["warm"]:
        image[y, x] += 20.0
    for x, y in truth["dead"]:
        image[y, x] -= 120.0
    found = find_defects(image.astype(np.float32), DefectOptions(min_fwhm=1.5))
    table = found.table
    column = table[table["kind"] == "hot_column"]
    assert len(column) == 1 and column["x0"][0] == 100
    assert abs(column["y0"][0] - 57) <= 2 and abs(column["y1"][0] - 160) <= 2
    assert column["excess"][0] == pytest.approx(30, abs=2)
    rows = table[table["kind"] == "dead_row"]
    assert len(rows) == 1 and rows["y0"][0] == 120
    assert (rows["x0"][0], rows["x1"][0]) == (0, shape[1] - 1)
    rows = table[table["kind"] == "hot_row"]
    assert len(rows) == 1 and rows["y0"][0] == 30
    assert abs(rows["x0"][0] - 20) <= 2 and abs(rows["x1"][0] - 120) <= 2
    for kind, pixels in truth.items():
        mask = getattr(found, kind)
        assert all(mask[y, x] for x, y in pixels), kind
    expected = np.zeros(shape, bool)
    expected[57:161, 100] = expected[120, :] = expected[30, 20:121] = True
    for pixels in truth.values():
        for x, y in pixels:
            expected[y, x] = True
    false = found.mask & ~expected
    assert false.sum() <= 6  # only at the partial lines' ends (+- 2 px)
    assert not (false & ~np.isin(np.arange(shape[1]), [100])[None, :]
                & ~np.isin(np.arange(shape[0]), [30])[:, None]).any()


def test_write_read_round_trip(tmp_path):
    image = np.random.default_rng(0).normal(0, 1, (64, 64)).astype(np.float32)
    image[10, 20] += 100
    image[:, 40] -= 50
    found = find_defects(image, n_frames=12)
    path = tmp_path / "map.fits"
    found.write(path)
    back = DefectMap.read(path)
    for name in ("hot", "warm", "dead", "columns", "rows"):
        assert np.array_equal(getattr(back, name), getattr(found, name)), name
    assert back.hot[10, 20] and back.columns[:, 40].all() and back.mask.sum() == 65
    assert list(back.table["kind"]) == list(found.table["kind"])
    assert back.meta["n_frames"] == 12 and np.array_equal(back.combined, image)
    fits.writeto(tmp_path / "other.fits", image)
    with pytest.raises(ValueError, match="not a defect map"):
        DefectMap.read(tmp_path / "other.fits")


def test_ogle_frames_have_few_defects(tmp_path):
    """98 calibrated OGLE-IV frames (461 x 461, drifting up to +-50 px, crowded field):
    measured 18 defect pixels (all warm, 0.3-2 e-/s at 5-27 sigma), no bad line."""
    frames = require_shared(OGLE / "frames")
    maps, _, infos = _build(frames, tmp_path / "cal", profile="generic")
    (found,) = maps.values()
    assert len(infos) == 98
    assert found.mask.sum() < 50
    assert not found.columns.any() and not found.rows.any()
