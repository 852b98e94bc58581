"""Cameras never mixed: OPTICAM calibration frames whose headers carry no CAMERA keyword (as
OPTICAM's real headers) give one master per camera, found from the filter or from a c1/c2/c3
directory, each equal to that camera's truth; one camera's hot column is never flagged in
another camera's frames."""

import shutil

import numpy as np
import pytest
from astropy.io import fits

from data_generator import generate_biases, generate_darks, load_truth
from opticam_like.calibration import (CalibrationSet, CalibrationWarning, build_masters,
                                      calibrate)
from opticam_like.flags import PhotFlag
from opticam_like.frames import read_frame, read_header
from opticam_like.instruments import load_profile

SHAPE = (64, 64)
N_FRAMES = 8
DARK_EXPOSURE = 20.0
#: Column (x) of the hot column added to each camera's dark frames, and its excess (ADU).
HOT_COLUMNS = {"C1": 11, "C2": 29, "C3": 47}
HOT_EXCESS = 300.0
CAMERAS = tuple(HOT_COLUMNS)


def _copy_without(source, target, keywords, hot_column=None):
    """Copy a generated frame without some header keywords, optionally adding a hot column."""
    with fits.open(source) as hdul:
        header = hdul[0].header.copy()
        data = hdul[0].data.astype(np.float64)
    for keyword in keywords:
        del header[keyword]
    if hot_column is not None:
        data[:, hot_column] += HOT_EXCESS
    target.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.round(data).astype(np.uint16), header).writeto(target)
    return target


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """Generated bias and dark frames of three cameras, copied (1) without CAMERA into one
    directory per kind and (2) without CAMERA and FILTER into c1/Cam2/CAMERA3 directories."""
    base = tmp_path_factory.mktemp("cameras")
    options = dict(shape=SHAPE, hot_pixels=15, seed=3, progress=False)
    generated = {"bias": generate_biases(base / "gen" / "bias", N_FRAMES, **options),
                 "dark": generate_darks(base / "gen" / "dark", N_FRAMES,
                                        exposure=DARK_EXPOSURE, **options)}
    folders = {"C1": "c1", "C2": "Cam2", "C3": "CAMERA3"}
    for kind, frames in generated.items():
        for path in frames.files:
            camera = fits.getval(path, "CAMERA")
            hot = HOT_COLUMNS[camera] if kind == "dark" else None
            _copy_without(path, base / "flat_layout" / kind / path.name, ["CAMERA"], hot)
            _copy_without(path, base / "camera_dirs" / kind / folders[camera] / path.name,
                          ["CAMERA", "FILTER"], hot)
    return base, load_truth(base / "gen" / "bias"), generated["dark"].parameters.gain


def _check_bias_masters(masters, truth):
    assert sorted(masters["bias"]) == [(camera, "4x4") for camera in CAMERAS]
    for camera in CAMERAS:
        with fits.open(masters["bias"][camera, "4x4"]) as hdul:
            master, n_combined = hdul[0].data, hdul[0].header["NCOMBINE"]
        residual = master - truth.detector(camera)["bias"]
        assert n_combined == N_FRAMES, camera  # no frame of another camera
        assert abs(np.median(residual)) < 1.0, camera  # bias level within 1 ADU
        # the camera's own column pattern: a master of all cameras is off by ~1.5 ADU rms
        assert np.std(residual.mean(axis=0)) < 0.5, camera


def test_truth_cameras_differ(night):
    """The test can fail: the cameras' bias levels and column patterns differ by several ADU,
    so that a master combining cameras is far from each camera's truth."""
    _, truth, _ = night
    levels = [np.median(truth.detector(c)["bias"]) for c in CAMERAS]
    assert min(abs(a - b) for i, a in enumerate(levels) for b in levels[i + 1:]) > 2.0
    mixed = np.mean([truth.detector(c)["bias"] for c in CAMERAS], axis=0)
    for camera in CAMERAS:
        residual = mixed - truth.detector(camera)["bias"]
        assert abs(np.median(residual)) > 1.0 or np.std(residual.mean(axis=0)) > 0.5


def test_masters_per_camera_from_the_filter(night, tmp_path):
    base, truth, gain = night
    layout = base / "flat_layout"
    assert "CAMERA" not in fits.getheader(next((layout / "bias").iterdir()))
    masters = build_masters(bias=layout / "bias", dark=layout / "dark", profile="opticam",
                            cache_directory=tmp_path / "cal")
    _check_bias_masters(masters, truth)
    assert sorted(masters["dark"]) == [(camera, "4x4") for camera in CAMERAS]
    excess = HOT_EXCESS * gain / DARK_EXPOSURE  # e-/s of the hot column
    for camera in CAMERAS:
        master = fits.getdata(masters["dark"][camera, "4x4"])
        residual = master - truth.detector(camera)["dark"]
        for other, column in HOT_COLUMNS.items():
            expected = excess if other == camera else 0.0
            assert np.median(residual[:, column]) == pytest.approx(expected, abs=0.5)


def test_each_camera_flags_only_its_own_defects(night, tmp_path):
    base, truth, gain = night
    layout = base / "flat_layout"
    calibration = CalibrationSet.from_directories(bias=layout / "bias", dark=layout / "dark",
                                                  profile="opticam",
                                                  cache_directory=tmp_path / "cal")
    frames = {}
    for path in sorted((layout / "dark").glob("*.fits")):
        info = read_header(path, "opticam")
        frames.setdefault(info.camera, path)
        assert info.camera_source == "filter"
    assert sorted(frames) == list(CAMERAS)
    hot = {camera: truth.detector(camera)["hot"] for camera in CAMERAS}
    for camera, path in frames.items():
        bad = (calibrate(read_frame(path, "opticam"), calibration).pixel_flags
               & PhotFlag.BAD_PIXEL) != 0
        for other, column in HOT_COLUMNS.items():
            if other == camera:
                assert bad[:, column].all(), camera
            else:
                assert bad[:, column].mean() < 0.1, (camera, other)
        assert bad[hot[camera]].mean() > 0.9, camera
        for other in CAMERAS:
            if other != camera:
                elsewhere = hot[other] & ~hot[camera]
                elsewhere[:, list(HOT_COLUMNS.values())] = False
                assert bad[elsewhere].mean() < 0.1, (camera, other)


def test_masters_per_camera_from_directories(night, tmp_path):
    base, truth, gain = night
    bias = base / "camera_dirs" / "bias"
    no_filter = load_profile("opticam").with_overrides(required=("binning", "gain", "camera"))
    infos = [read_header(p, no_filter) for p in sorted(bias.glob("*/*.fits"))]
    assert {i.camera_source for i in infos} == {"directory"}
    assert sorted({i.camera for i in infos}) == list(CAMERAS)
    masters = build_masters(bias=bias, profile="opticam", cache_directory=tmp_path / "cal")
    _check_bias_masters(masters, truth)


def test_frame_of_unknown_camera_is_skipped_with_the_reason(night, tmp_path):
    base, _, _ = night
    folder = tmp_path / "bias"
    folder.mkdir()
    sources = sorted((base / "camera_dirs" / "bias" / "c1").glob("*.fits"))
    for source in sources:
        shutil.copy(source, folder / source.name)
    (folder / "c2").mkdir()
    shutil.copy(sorted((base / "camera_dirs" / "bias" / "Cam2").glob("*.fits"))[0],
                folder / "c2" / "one.fits")
    with pytest.warns(CalibrationWarning, match="cannot tell which camera") as record:
        masters = build_masters(bias=folder, profile="opticam", cache_directory=tmp_path / "cal")
    assert sum("cannot tell which camera" in str(w.message) for w in record) == N_FRAMES
    assert list(masters["bias"]) == [("C2", "4x4")]
