"""Tests of opticam_like.calibration on synthetic frames with a known truth.

A small detector (48 x 64 pixels, gain 2 e-/ADU, read noise 6 e-) has a structured bias, a dark
rate with hot pixels, a vignetted flat with dead and weak pixels; bias, dark, flat and science
frames are drawn from it with Poisson and read noise and written as uint16 OPTICAM-like files.
Masters and calibrated frames are compared with the truth within the expected statistical
errors.
"""

from concurrent.futures import ProcessPoolExecutor
import dataclasses
import os
from pathlib import Path
import pickle
import subprocess
import sys
import tracemalloc

import ccdproc
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.stats import sigma_clip
from scipy import ndimage

from conftest import write_opticam_frame
from data_generator import generate_biases, load_truth
from opticam_like.calibration import (CalibrationError, CalibrationSet, CalibrationWarning,
                                      build_masters, calibrate, chunked_combine,
                                      flat_bad_pixels, hot_pixels, local_median,
                                      parse_section, sigma_clipped_combine)
from opticam_like.flags import PhotFlag
from opticam_like.frames import FrameError, read_frame

SHAPE = (48, 64)
GAIN = 2.0            # e-/ADU
READ_NOISE = 6.0      # e-
DARK = 0.5            # e-/s/pixel
HOT = [(5, 7), (20, 40), (33, 3), (40, 60), (10, 30), (44, 12)]      # (y, x), 200 e-/s
DEAD = [(3, 50), (25, 25), (45, 45), (12, 5)]                         # response 0.05
WEAK = [(24, 20), (22, 44)]                                           # 0.6 x local response
N_BIAS, DARK_EXPOSURES, FLAT_LEVELS = 25, [30.0] * 8 + [60.0] * 8, np.linspace(15e3, 25e3, 12)
SKY, SCIENCE_EXPOSURE = 300.0, 10.0
BAD = PhotFlag.BAD_PIXEL


def _truth():
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]].astype(float)
    rng = np.random.default_rng(1)
    bias = 500 + 5 * np.sin(x / 3) + 0.05 * y                                   # ADU
    dark = np.full(SHAPE, DARK)
    dark[tuple(np.transpose(HOT))] = 200.0
    r2 = ((x - 31.5) ** 2 + (y - 23.5) ** 2) / (31.5 ** 2 + 23.5 ** 2)
    flat = (1 - 0.35 * r2) * (1 + 0.01 * rng.standard_normal(SHAPE))
    flat[tuple(np.transpose(WEAK))] *= 0.6
    flat[tuple(np.transpose(DEAD))] = 0.05
    flat /= np.median(flat)
    incident = np.full(SHAPE, SKY)
    for (x0, y0, peak) in [(15, 12, 4000), (45, 30, 9000), (30, 36, 2500)]:
        incident += peak * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * 1.5 ** 2))
    incident[8, 56] = 2e5                                   # saturates the ADC
    return {"bias": bias, "dark": dark, "flat": flat, "incident": incident}


def _adu(electrons, bias, rng):
    """Raw uint16 ADU of an expected electron image: Poisson + read noise, gain, bias."""
    detected = rng.poisson(electrons) + rng.normal(0, READ_NOISE, SHAPE)
    return np.clip(np.round(bias + detected / GAIN), 0, 65535).astype(np.uint16)


def _write_night(root, truth, offset=0.0, seed=2):
    """Calibration and science frames of the truth; ``offset`` ADU is added to every bias."""
    rng = np.random.default_rng(seed)
    bias = truth["bias"] + offset
    dirs = {k: root / k for k in ("bias", "dark", "flat", "science")}
    for d in dirs.values():
        d.mkdir(parents=True)
    for i in range(N_BIAS):
        write_opticam_frame(dirs["bias"] / f"b{i:03d}.fits", _adu(np.zeros(SHAPE), bias, rng),
                            IMAGETYP="bias", EXPOSURE=0.0, GAIN=GAIN, RDNOISE=READ_NOISE)
    for i, t in enumerate(DARK_EXPOSURES):
        write_opticam_frame(dirs["dark"] / f"d{i:03d}.fits", _adu(truth["dark"] * t, bias, rng),
                            IMAGETYP="dark", EXPOSURE=t, GAIN=GAIN, RDNOISE=READ_NOISE)
    for i, level in enumerate(FLAT_LEVELS):
        electrons = level * truth["flat"] + truth["dark"] * 5.0
        write_opticam_frame(dirs["flat"] / f"f{i:03d}.fits", _adu(electrons, bias, rng),
                            IMAGETYP="flat", EXPOSURE=5.0, GAIN=GAIN, RDNOISE=READ_NOISE)
    electrons = truth["incident"] * truth["flat"] + truth["dark"] * SCIENCE_EXPOSURE
    for name, band in (("g1", "g"), ("g2", "g"), ("r1", "r")):
        write_opticam_frame(dirs["science"] / f"{name}.fits", _adu(electrons, bias, rng),
                            FILTER=band, EXPOSURE=SCIENCE_EXPOSURE, GAIN=GAIN,
                            RDNOISE=READ_NOISE, DARKCURR=DARK)
    return dirs


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    root = tmp_path_factory.mktemp("night")
    truth = _truth()
    dirs = _write_night(root / "a", truth)
    shifted = _write_night(root / "b", truth, offset=137.0)
    cal = CalibrationSet.from_directories(dirs["bias"], dirs["dark"], dirs["flat"],
                                          profile="opticam", cache_directory=root / "cal_a")
    cal_shifted = CalibrationSet.from_directories(
        shifted["bias"], shifted["dark"], shifted["flat"], profile="opticam",
        cache_directory=root / "cal_b")
    return {"root": root, "truth": truth, "dirs": dirs, "shifted": shifted, "cal": cal,
            "cal_shifted": cal_shifted}


def _master(cal, kind):
    (path,) = getattr(cal, kind).values()
    return fits.getdata(path), fits.getheader(path)


def _bias_error():
    """Standard error (ADU) of the master bias: read noise and rounding over N frames."""
    return np.sqrt((READ_NOISE / GAIN) ** 2 + 1 / 12) / np.sqrt(N_BIAS)


# ---------------------------------------------------------------- combination

def test_sigma_clipped_combine_rejects_outliers_exactly():
    stack = np.full((21, 3, 4), 5.0, dtype=np.float32)
    stack[:, 0, 0] = np.arange(21)                 # mean 10, nothing to clip
    stack[4, 1, 1] = 1000.0                        # one outlier
    stack[:, 2, 2] = np.nan                        # no value at all
    stack[3, 2, 3] = np.nan                        # one value missing
    result = sigma_clipped_combine(stack.copy())
    assert result.dtype == np.float32
    assert result[0, 0] == pytest.approx(10.0)
    assert result[1, 1] == 5.0 and result[2, 3] == 5.0
    assert np.isnan(result[2, 2])
    assert sigma_clipped_combine(stack.copy(), sigma=None)[1, 1] == pytest.approx(
        (20 * 5 + 1000) / 21)
    assert sigma_clipped_combine(stack.copy(), method="median")[0, 0] == 10.0
    with pytest.raises(ValueError, match="method"):
        sigma_clipped_combine(stack, method="mode")


def test_chunked_combine_is_identical_in_bounded_memory():
    rng = np.random.default_rng(3)
    n, shape = 200, (64, 96)
    frames = rng.normal(100, 5, (n,) + shape).astype(np.float32)
    hits = rng.random(frames.shape) < 0.02
    frames[hits] += 2000                            # cosmic-ray-like outliers
    reference = np.nanmean(sigma_clip(frames.copy(), sigma=3, maxiters=5, cenfunc="median",
                                      stdfunc="std", axis=0, masked=False), axis=0)
    in_memory = sigma_clipped_combine(frames.copy())
    limit = 1_000_000                               # bytes; the stack is 4.9 MB
    calls = []

    def read_rows(i, y0, y1):
        calls.append((y0, y1))
        return frames[i, y0:y1]

    tracemalloc.start()
    try:
        chunked = chunked_combine(read_rows, n, shape, memory_limit=limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len({c for c in calls}) >= 5             # several blocks of rows
    assert np.array_equal(chunked, in_memory)
    np.testing.assert_allclose(chunked, reference, rtol=1e-6)
    assert abs(np.mean(chunked) - 100) < 0.05      # outliers rejected
    assert peak < 1.3 * limit < frames.nbytes


def test_combination_equals_ccdproc_combine():
    """ccdproc.combine clips once (sigma about the median, std), then averages: with
    ``maxiters=1`` ours gives the same frame, mean and median."""
    rng = np.random.default_rng(4)
    frames = rng.normal(100, 5, (15, 32, 40)).astype(np.float32)
    frames[rng.random(frames.shape) < 0.005] += 2000      # cosmic-ray-like outliers
    ccds = [CCDData(frame, unit="adu") for frame in frames]
    for method, name in (("mean", "average"), ("median", "median")):
        theirs = ccdproc.combine(ccds, method=name, sigma_clip=True, sigma_clip_low_thresh=3,
                                 sigma_clip_high_thresh=3, sigma_clip_func=np.ma.median,
                                 sigma_clip_dev_func=np.ma.std, dtype=np.float32)
        ours = sigma_clipped_combine(frames.copy(), method=method, maxiters=1)
        np.testing.assert_allclose(ours, theirs.data, rtol=1e-6)
        assert np.sum(np.abs(ours - 100) > 10) <= 3      # pixels hit twice out of 15


@pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")  # ccdproc reading DATE-OBS
def test_master_bias_of_each_camera_matches_truth_and_ccdproc(tmp_path):
    """Generated biases of the three cameras (each its own level and pattern): the masters
    recover each camera's truth bias within the read noise over N frames, and equal
    ccdproc.combine of the same files with the same (single-pass) clipping."""
    n_images = 9
    generated = generate_biases(tmp_path / "bias", n_images=n_images, shape=(40, 48), seed=11,
                                progress=False)
    truth = load_truth(tmp_path / "bias")
    p = generated.parameters
    error = np.sqrt((p.read_noise / p.gain) ** 2 + 1 / 12) / np.sqrt(n_images)
    for method, name in (("mean", "average"), ("median", "median")):
        masters = build_masters(tmp_path / "bias", cache_directory=tmp_path / method,
                                method=method, maxiters=1)["bias"]
        assert sorted(camera for camera, _ in masters) == ["C1", "C2", "C3"]
        levels = []
        for (camera, _), path in masters.items():
            master = fits.getdata(path)
            bias = truth.detector(camera)["bias"]
            residual = master - bias
            # the median of N values scatters sqrt(pi / 2) times more than their mean
            scale = error * (1.0 if method == "mean" else np.sqrt(np.pi / 2))
            assert abs(np.mean(residual)) < 5 * scale / np.sqrt(residual.size)
            assert np.std(residual) == pytest.approx(scale, rel=0.25)
            levels.append(np.mean(master))
            files = list(fits.getdata(path, "INPUTS")["path"])
            assert len(files) == n_images
            theirs = ccdproc.combine(files, method=name, sigma_clip=True,
                                     sigma_clip_func=np.ma.median,
                                     sigma_clip_dev_func=np.ma.std, dtype=np.float32,
                                     unit="adu")
            np.testing.assert_allclose(master, theirs.data, rtol=1e-6)
        assert np.ptp(levels) > 10 * error           # the cameras' levels are told apart


# ---------------------------------------------------------------- sections

def test_parse_section():
    assert parse_section("[1:48,1:40]") == (slice(0, 40), slice(0, 48))
    assert parse_section(" [ 3:5 , 2:2 ] ", shape=(2, 5)) == (slice(1, 2), slice(2, 5))
    for bad in ("[0:5,1:2]", "[5:1,1:2]", "1:5,1:2", "[1:5]"):
        with pytest.raises(ValueError):
            parse_section(bad)
    with pytest.raises(ValueError, match="leaves the image"):
        parse_section("[1:65,1:10]", shape=(48, 64))


def test_overscan_and_trim(tmp_path):
    """Frames with a 6-column overscan whose level drifts from frame to frame."""
    rng = np.random.default_rng(5)
    ny, nx = 40, 56
    structure = np.zeros((ny, nx))
    structure[:, :48] = 3 * np.cos(np.arange(48) / 5)          # residual bias structure (ADU)
    sections = {"BIASSEC": "[51:56,1:40]", "TRIMSEC": "[1:48,1:40]"}
    incident = np.full((ny, 48), 400.0)

    def raw(level, electrons):
        detected = np.zeros((ny, nx))
        detected[:, :48] = rng.poisson(electrons) + rng.normal(0, READ_NOISE, (ny, 48))
        detected[:, 48:] = rng.normal(0, READ_NOISE, (ny, nx - 48))
        return np.round(level + structure + detected / GAIN).astype(np.uint16)

    (tmp_path / "bias").mkdir()
    for i in range(20):
        write_opticam_frame(tmp_path / "bias" / f"b{i}.fits", raw(480 + 3 * i, 0.0),
                            IMAGETYP="bias", GAIN=GAIN, **sections)
    science = write_opticam_frame(tmp_path / "s.fits", raw(530.0, incident), GAIN=GAIN,
                                  DARKCURR=0.0, **sections)
    cal = CalibrationSet.from_directories(bias=tmp_path / "bias",
                                          cache_directory=tmp_path / "cal")
    bias, _ = _master(cal, "bias")
    assert bias.shape == (ny, 48)
    error = np.sqrt((READ_NOISE / GAIN) ** 2 + 1 / 12) / np.sqrt(20)
    assert np.std(bias - structure[:, :48]) < 1.3 * error
    assert abs(np.mean(bias - structure[:, :48])) < 0.3          # overscan level removed
    result = calibrate(read_frame(science), cal)
    assert result.steps[:3] == ("overscan", "trim", "bias")
    assert result.data.shape == result.pixel_flags.shape == result.info.shape == (ny, 48)
    assert result.bias_subtracted
    z = (result.data - incident) / np.sqrt(400 + READ_NOISE ** 2 + (GAIN * error) ** 2)
    assert abs(np.mean(z)) < 0.15 and 0.85 < np.std(z) < 1.15
    overscan_only = calibrate(read_frame(science), CalibrationSet())
    assert overscan_only.steps == ("overscan", "trim", "gain")
    assert overscan_only.bias_subtracted
    np.testing.assert_allclose(np.mean(overscan_only.data - GAIN * structure[:, :48]), 400,
                               atol=3)
    bad = write_opticam_frame(tmp_path / "x.fits", raw(530.0, incident), BIASSEC="[50:60,1:40]")
    with pytest.raises(FrameError, match="BIASSEC"):
        calibrate(read_frame(bad), cal)


# ---------------------------------------------------------------- masters

def test_master_bias_recovers_structure(night):
    bias, header = _master(night["cal"], "bias")
    assert header["BITPIX"] == -32 and header["BUNIT"] == "adu"
    assert header["NCOMBINE"] == N_BIAS and header["MASTER"] == "BIAS"
    residual = bias - night["truth"]["bias"]
    assert 0.92 < np.std(residual) / _bias_error() < 1.10
    assert abs(np.mean(residual)) < 5 * _bias_error() / np.sqrt(residual.size)
    table = fits.getdata(night["cal"].bias[("C1", "4x4")], "INPUTS")
    assert len(table) == N_BIAS and np.all(table["size"] > 0)


def test_master_dark_is_a_rate_in_electrons(night):
    dark, header = _master(night["cal"], "dark")
    assert header["BUNIT"] == "electron / (pixel s)" and header["NCOMBINE"] == 16
    t = np.asarray(DARK_EXPOSURES)
    variance = np.mean((DARK * t + READ_NOISE ** 2 + GAIN ** 2 / 12) / t ** 2) / len(t)
    variance += (GAIN * _bias_error() * np.mean(1 / t)) ** 2      # common master-bias error
    good = np.ones(SHAPE, bool)
    good[tuple(np.transpose(HOT))] = False
    residual = (dark - night["truth"]["dark"])[good]
    assert 0.9 < np.std(residual) / np.sqrt(variance) < 1.1
    assert abs(np.mean(residual)) < 5 * np.sqrt(variance / good.sum()) + 0.01
    np.testing.assert_allclose(dark[~good], 200.0, rtol=0.03)


def test_master_flat_recovers_vignetting_and_dead_pixels(night):
    flat, header = _master(night["cal"], "flat")
    assert header["FILTER"] == "g" and header["NCOMBINE"] == len(FLAT_LEVELS)
    truth = night["truth"]["flat"]
    assert np.median(flat) == pytest.approx(1.0, abs=1e-6)
    good = np.ones(SHAPE, bool)
    good[tuple(np.transpose(DEAD + WEAK))] = False
    signal = FLAT_LEVELS[:, None] * truth[good][None, :]
    expected = np.sqrt(np.sum((signal + READ_NOISE ** 2) / signal ** 2, axis=0)) / len(signal)
    z = (flat[good] / truth[good] - 1) / expected
    assert abs(np.mean(z)) < 0.2 and 0.9 < np.std(z) < 1.1
    corners = (0, -1), (0, -1)
    np.testing.assert_allclose(flat[np.ix_(*corners)], truth[np.ix_(*corners)], rtol=0.02)
    dead = tuple(np.transpose(DEAD))
    np.testing.assert_allclose(flat[dead], truth[dead], rtol=0.05)


def test_masks_from_masters(night):
    dark, _ = _master(night["cal"], "dark")
    flat, _ = _master(night["cal"], "flat")
    assert set(zip(*np.nonzero(hot_pixels(dark)))) == set(HOT)
    assert set(zip(*np.nonzero(flat_bad_pixels(flat)))) == set(DEAD)
    assert set(zip(*np.nonzero(flat_bad_pixels(flat, low=0.7)))) == set(DEAD + WEAK)
    vignetted = np.fromfunction(lambda y, x: 1 - 0.3 * ((x - 40) ** 2 + (y - 30) ** 2) / 2500,
                                (60, 80))
    relative = local_median(vignetted, 16) / vignetted - 1         # 30 % fall-off, 4x5 blocks
    assert np.abs(relative).max() < 0.06 and np.sqrt(np.mean(relative ** 2)) < 0.015


# ---------------------------------------------------------------- calibrate

def test_calibrated_frame_equals_truth_within_noise(night):
    truth = night["truth"]
    result = calibrate(read_frame(night["dirs"]["science"] / "g1.fits"), night["cal"])
    assert result.steps == ("bias", "gain", "dark", "flat")
    assert result.data.dtype == np.float32 and result.pixel_flags.dtype == np.uint16
    assert result.bias_subtracted
    assert result.dark_electrons == pytest.approx(DARK * SCIENCE_EXPOSURE, rel=0.02)
    flat, t = truth["flat"], SCIENCE_EXPOSURE
    dark_error = 0.06                                                   # e-/s, see the dark test
    variance = ((truth["incident"] * flat + DARK * t + READ_NOISE ** 2 + GAIN ** 2 / 12
                 + (GAIN * _bias_error()) ** 2 + (dark_error * t) ** 2) / flat ** 2
                + (truth["incident"] * 0.003) ** 2)
    good = ~result.mask
    z = ((result.data - truth["incident"]) / np.sqrt(variance))[good]
    assert abs(np.mean(z)) < 0.06 and 0.92 < np.std(z) < 1.08


def test_calibration_does_not_depend_on_the_bias_level(night):
    a = calibrate(read_frame(night["dirs"]["science"] / "g1.fits"), night["cal"])
    b = calibrate(read_frame(night["shifted"]["science"] / "g1.fits"), night["cal_shifted"])
    unsaturated = (a.pixel_flags & PhotFlag.SATURATED) == 0
    np.testing.assert_allclose(a.data[unsaturated], b.data[unsaturated], atol=0.05)
    assert np.array_equal(a.pixel_flags, b.pixel_flags)


def test_pixel_flags(night):
    path = night["dirs"]["science"] / "g1.fits"
    frame = read_frame(path)
    frame = dataclasses.replace(frame, data=frame.data.copy())
    frame.data[30, 10] = np.nan
    result = calibrate(frame, night["cal"])
    bad = set(zip(*np.nonzero(result.pixel_flags & BAD)))
    assert bad == set(HOT + DEAD)
    saturated = result.pixel_flags & PhotFlag.SATURATED
    assert np.array_equal(saturated != 0, frame.data >= 65535) and saturated.sum() > 0
    assert result.pixel_flags[30, 10] == PhotFlag.MASKED
    assert result.mask.sum() == len(HOT + DEAD) + 1 + np.count_nonzero(saturated)
    strict = dataclasses.replace(night["cal"], flat_low=0.7, hot_nsigma=1e6)
    assert set(zip(*np.nonzero(calibrate(frame, strict).pixel_flags & BAD))) == set(DEAD + WEAK)


def test_without_calibration_set(night):
    frame = read_frame(night["dirs"]["science"] / "g1.fits")
    result = calibrate(frame)
    assert np.array_equal(result.data, frame.data * np.float32(GAIN))
    assert not result.bias_subtracted and result.steps == ("gain",)
    assert set(np.unique(result.pixel_flags)) == {0, PhotFlag.SATURATED}
    assert result.dark_electrons == pytest.approx(DARK * SCIENCE_EXPOSURE)


def test_missing_master_warns_or_raises(night):
    frame = read_frame(night["dirs"]["science"] / "r1.fits")
    with pytest.warns(CalibrationWarning, match="no master flat for C1/r/4x4"):
        result = calibrate(frame, night["cal"])
    assert result.steps == ("bias", "gain", "dark")
    with pytest.raises(CalibrationError, match="r1.fits: no master flat for C1/r/4x4"):
        calibrate(frame, dataclasses.replace(night["cal"], strict=True))
    no_dark = CalibrationSet.from_masters(bias=night["cal"].bias[("C1", "4x4")])
    result = calibrate(frame, no_dark)
    assert result.steps == ("bias", "gain", "header_dark")
    assert np.median(result.data) == pytest.approx(SKY * np.median(night["truth"]["flat"]),
                                                   rel=0.03)


def test_shape_mismatch_names_both_files(night, tmp_path):
    path = write_opticam_frame(tmp_path / "small.fits", shape=(32, 32))
    with pytest.raises(FrameError) as info:
        calibrate(read_frame(path), night["cal"])
    message = str(info.value)
    assert "small.fits" in message and night["cal"].bias[("C1", "4x4")] in message


def _calibrated_sum(path, cal):
    return float(np.sum(calibrate(read_frame(path), cal).data, dtype=np.float64))


def test_calibration_set_pickles_and_runs_in_workers(night):
    cal = night["cal"]
    blob = pickle.dumps(cal)
    assert len(blob) < 4000                          # paths, not pixels
    assert pickle.loads(blob) == cal
    paths = [night["dirs"]["science"] / f"g{i}.fits" for i in (1, 2)]
    with ProcessPoolExecutor(max_workers=1) as pool:
        remote = list(pool.map(_calibrated_sum, paths, [cal] * 2))
    assert remote == [_calibrated_sum(p, cal) for p in paths]


def test_describe(night):
    described = night["cal"].describe()
    (bias,) = described["masters"]["bias"]
    assert bias["key"] == "C1/4x4" and bias["n_frames"] == N_BIAS and bias["method"] == "mean"
    assert described["masters"]["flat"][0]["key"] == "C1/g/4x4"
    assert described["options"]["flat_low"] == 0.5


def test_from_masters_round_trip(night):
    cal = night["cal"]
    again = CalibrationSet.from_masters(bias=list(cal.bias.values()), dark=cal.dark,
                                        flat=list(cal.flat.values()))
    assert again == cal
    with pytest.raises(CalibrationError, match="not a master flat"):
        CalibrationSet.from_masters(flat=list(cal.bias.values()))
    with pytest.raises(CalibrationError, match="not found"):
        CalibrationSet.from_masters(bias="/nonexistent/bias.fits")


# ---------------------------------------------------------------- cache and inputs

def _mtimes(directory):
    return {p.name: p.stat().st_mtime_ns for p in Path(directory).iterdir()}


def _versions(directory):
    """File identities: a rewritten master is a new inode (atomic rename)."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in Path(directory).iterdir()}


def test_masters_are_reused_and_rebuilt_when_inputs_change(tmp_path, night):
    truth = night["truth"]
    dirs = {k: tmp_path / k for k in ("bias", "dark")}
    for kind, count in (("bias", 5), ("dark", 4)):
        dirs[kind].mkdir()
        for i in range(count):
            source = night["dirs"][kind] / f"{kind[0]}{i:03d}.fits"
            (dirs[kind] / source.name).write_bytes(source.read_bytes())
    inputs_before = {k: _mtimes(d) for k, d in dirs.items()}
    cache = tmp_path / "cache"
    first = build_masters(dirs["bias"], dirs["dark"], cache_directory=cache)
    built = _versions(cache)
    old_hash = fits.getval(cache / "bias_C1_4x4.fits", "OLHASH")
    assert sorted(built) == ["bias_C1_4x4.fits", "dark_C1_4x4.fits"]
    assert build_masters(dirs["bias"], dirs["dark"], cache_directory=cache) == first
    assert _versions(cache) == built                                 # nothing recomputed
    changed = dirs["bias"] / "b000.fits"
    write_opticam_frame(changed, _adu(np.zeros(SHAPE), truth["bias"] + 50,
                                      np.random.default_rng(9)), IMAGETYP="bias", GAIN=GAIN)
    os.utime(changed, ns=(10**18, 10**18))
    build_masters(dirs["bias"], dirs["dark"], cache_directory=cache)
    rebuilt = _versions(cache)
    assert all(rebuilt[name] != built[name] for name in built)        # dark follows its bias
    assert fits.getval(cache / "bias_C1_4x4.fits", "OLHASH") != old_hash
    (dirs["dark"] / "d003.fits").unlink()
    build_masters(dirs["bias"], dirs["dark"], cache_directory=cache)
    assert _versions(cache)["bias_C1_4x4.fits"] == rebuilt["bias_C1_4x4.fits"]
    assert fits.getval(cache / "dark_C1_4x4.fits", "NCOMBINE") == 3
    inputs_before["bias"]["b000.fits"] = 10**18
    del inputs_before["dark"]["d003.fits"]
    assert {k: _mtimes(d) for k, d in dirs.items()} == inputs_before  # nothing written there
    with pytest.raises(CalibrationError, match="inside the input directory"):
        build_masters(dirs["bias"], cache_directory=dirs["bias"] / "cal")


def test_memory_limit_does_not_change_the_master(tmp_path, night):
    small = build_masters(night["dirs"]["bias"], cache_directory=tmp_path,
                          memory_limit=20_000)          # blocks of 12 rows
    a = fits.getdata(small["bias"][("C1", "4x4")])
    b, _ = _master(night["cal"], "bias")
    assert np.array_equal(a, b)


def test_mixed_directory_and_bad_inputs(tmp_path, night):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for source in sorted(night["dirs"]["bias"].iterdir())[:6]:
        (mixed / source.name).write_bytes(source.read_bytes())
    write_opticam_frame(mixed / "object.fits", shape=SHAPE)
    (mixed / "broken.fits").write_bytes(b"SIMPLE  =                    T")
    with pytest.warns(CalibrationWarning) as record:
        masters = build_masters(bias=mixed, cache_directory=tmp_path / "cal")
    messages = " ".join(str(w.message) for w in record)
    assert "broken.fits" in messages and "another image type" in messages
    assert fits.getval(masters["bias"][("C1", "4x4")], "NCOMBINE") == 6
    with pytest.raises(CalibrationError, match="no master bias"):
        build_masters(dark=night["dirs"]["dark"], cache_directory=tmp_path / "empty")
    with pytest.raises(CalibrationError, match="no FITS file"):
        build_masters(bias=tmp_path / "empty", cache_directory=tmp_path / "cal")


# ---------------------------------------------------------------- cosmic rays

_OPENMP_PROBE = """
import ctypes, importlib.util, pathlib, sys
libs = pathlib.Path(importlib.util.find_spec("astroscrappy").origin).parents[1]
found = sorted((libs / "astroscrappy.libs").glob("libgomp*"))
if not found:
    sys.exit(3)
from opticam_like.calibration.masks import detect_cosmic_rays
import numpy as np
detect_cosmic_rays(np.random.default_rng(0).normal(100, 10, (32, 32)).astype(np.float32))
print(ctypes.CDLL(str(found[0])).omp_get_max_threads())
"""


def test_astroscrappy_runs_on_one_openmp_thread(tmp_path):
    pytest.importorskip("astroscrappy")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", _OPENMP_PROBE], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    if done.returncode == 3:
        pytest.skip("astroscrappy does not bundle GNU OpenMP here")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]


def test_cosmic_rays_found_and_stars_spared(tmp_path):
    pytest.importorskip("astroscrappy")
    rng = np.random.default_rng(11)
    shape = (128, 128)
    y, x = np.mgrid[: shape[0], : shape[1]]
    sky = np.full(shape, 200.0)
    stars = rng.uniform(8, 120, (15, 2))
    sigma = 3.5 / 2.355
    stars[-1] = (64.3, 64.7)                        # 4e5 e- peak: saturated core (raw 65535)
    for (x0, y0), peak in zip(stars, np.append(np.geomspace(300, 20000, 14), 4e5)):
        sky += peak * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma ** 2))
    detected = rng.poisson(sky) + rng.normal(0, READ_NOISE, shape)
    hits = np.zeros(shape, bool)
    for _ in range(40):
        cx, cy = rng.integers(3, 125, 2)
        length, direction = rng.integers(1, 4), rng.integers(0, 2)
        for k in range(length):
            hits[cy + k * direction, cx + k * (1 - direction)] = True
    detected[hits] += rng.uniform(1500, 5000, hits.sum())
    raw = np.clip(np.round(500 + detected / GAIN), 0, 65535).astype(np.uint16)
    path = write_opticam_frame(tmp_path / "cr.fits", raw, GAIN=GAIN, RDNOISE=READ_NOISE,
                               DARKCURR=0.0)
    bias = tmp_path / "bias.fits"
    fits.writeto(bias, np.full(shape, 500, np.float32))
    cal = CalibrationSet.from_masters(bias={("C1", "4x4"): bias})
    assert calibrate(read_frame(path), cal).steps == ("bias", "gain")
    result = calibrate(read_frame(path), cal, remove_cosmic_rays=True)
    assert result.steps[-1] == "cosmic_rays"
    flagged = (result.pixel_flags & PhotFlag.COSMIC_RAY) != 0
    assert np.count_nonzero(result.pixel_flags & PhotFlag.SATURATED) >= 9
    assert flagged[hits].mean() >= 0.95
    # L.A.Cosmic grows detections into neighbours (sigfrac): only pixels further than 2 px
    # from every hit are false positives, and no star may be hit away from cosmic rays.
    beyond = ~ndimage.binary_dilation(hits, np.ones((3, 3), bool), iterations=2)
    near_stars = np.zeros(shape, bool)
    for x0, y0 in stars:
        near_stars |= (x - x0) ** 2 + (y - y0) ** 2 < 5 ** 2
    assert np.count_nonzero(near_stars & beyond) > 1000
    assert np.count_nonzero(flagged & near_stars & beyond) == 0
    assert np.count_nonzero(flagged & beyond) <= 2
