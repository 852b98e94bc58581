"""Resume (opticam_like.cache): per-frame results kept in out/cache, keyed by frame content and
settings. A re-run computes only what is missing and writes outputs identical, byte for byte,
to an uninterrupted run; a changed frame or setting is recomputed; nothing stale is reused."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

import opticam_like as ol
from opticam_like.cache import fingerprint, frame_key
from opticam_like.photometry.photometers import AperturePhotometer

N_IMAGES = 12


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("cache_night")
    ol.generate_observations(base / "data", n_images=N_IMAGES, shape=(128, 128),
                             filters=("g", "r"), progress=False)
    return base / "data"


def _reduce(data, out, photometers=(), **options):
    with ol.Reducer(out, data_directory=data, n_workers=1, progress=False,
                    **options) as reducer:
        reducer.create_catalogs()
        reducer.photometry(*photometers)
        return {k: v for k, v in reducer.cache.stats.items()
                if k[0] in ("catalogue", "photometry")}


def _products(out):
    """Bytes of every catalogue, transform, stack and photometry table of a reduction."""
    return {str(p.relative_to(out)): p.read_bytes()
            for folder in ("cat", "lcs") for p in sorted((out / folder).glob("*"))
            if p.suffix in (".ecsv", ".fits")}


def _assert_same_products(a, b):
    """Every product of ``a`` is in ``b`` with the same bytes (``b`` may hold the tables of
    other photometers)."""
    pa, pb = _products(a), _products(b)
    assert len(pa) >= 4 and set(pa) <= set(pb)
    differ = [name for name in pa if pa[name] != pb[name]]
    assert differ == []


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted reduction and the cache statistics of its first run."""
    out = tmp_path_factory.mktemp("reference") / "out"
    return out, _reduce(data, out)


def test_first_run_computes_everything_and_rerun_nothing(data, reference, tmp_path):
    out, stats = reference
    assert stats == {(p, f): (0, N_IMAGES) for p in ("catalogue", "photometry")
                     for f in ("g", "r")}
    again = tmp_path / "again"
    shutil.copytree(out, again)
    stats = _reduce(data, again)
    assert stats == {(p, f): (N_IMAGES, 0) for p in ("catalogue", "photometry")
                     for f in ("g", "r")}
    _assert_same_products(out, again)


def test_missing_frames_are_computed_and_outputs_identical(data, reference, tmp_path):
    out, _ = reference
    crashed = tmp_path / "crashed"
    shutil.copytree(out, crashed)
    shutil.rmtree(crashed / "lcs")
    shutil.rmtree(crashed / "cat")
    lost = {}
    for pass_name, count in (("catalogue", 4), ("photometry", 7)):
        files = sorted((crashed / "cache" / pass_name / "g").glob("[0-9a-f]*.pkl"))
        for path in files[:count]:
            path.unlink()
        lost[pass_name] = count
    for path in (crashed / "cache" / "catalogue" / "g").glob("stack_*.pkl"):
        path.unlink()
    stats = _reduce(data, crashed)
    # the catalogue rows of 4 frames are computed again (the other 8 are restacked only);
    # the stack is then identical, so is the catalogue, so only 7 photometry rows are missing
    assert stats[("catalogue", "g")] == (N_IMAGES - 4, 4)
    assert stats[("photometry", "g")] == (N_IMAGES - 7, 7)
    assert stats[("catalogue", "r")] == stats[("photometry", "r")] == (N_IMAGES, 0)
    _assert_same_products(out, crashed)


def test_changed_photometer_recomputes_only_the_photometry(data, reference, tmp_path):
    out, _ = reference
    changed = tmp_path / "changed"
    shutil.copytree(out, changed)
    stats = _reduce(data, changed, photometers=(AperturePhotometer(radius=2.0),))
    assert stats[("catalogue", "g")] == (N_IMAGES, 0)
    assert stats[("photometry", "g")] == (0, N_IMAGES)
    fresh = tmp_path / "fresh"
    _reduce(data, fresh, photometers=(AperturePhotometer(radius=2.0),), fresh=True)
    _assert_same_products(fresh, changed)


def test_changed_setting_recomputes_both_passes(data, reference, tmp_path):
    out, _ = reference
    changed = tmp_path / "changed"
    shutil.copytree(out, changed)
    stats = _reduce(data, changed, alignment="translation")
    assert stats[("catalogue", "g")] == (0, N_IMAGES)
    assert stats[("photometry", "g")] == (0, N_IMAGES)


def test_fresh_ignores_the_cache(data, reference, tmp_path):
    out, _ = reference
    again = tmp_path / "again"
    shutil.copytree(out, again)
    stats = _reduce(data, again, fresh=True)
    assert set(stats.values()) == {(0, N_IMAGES)}
    _assert_same_products(out, again)


def test_changed_frame_is_recomputed(data, reference, tmp_path):
    out, _ = reference
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    moved = tmp_path / "reduced"
    _reduce(copy, moved)
    frame = sorted(copy.glob("*C1*.fits*"))[-1]
    stat = os.stat(frame)
    with fits.open(frame, mode="update") as hdus:  # same size, same mtime: only the hash sees it
        hdus[0].data[60:64, 60:64] += 500
    os.utime(frame, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(frame).st_size == stat.st_size
    stats = _reduce(copy, moved)
    assert stats[("catalogue", "g")] == (N_IMAGES - 1, 1)
    assert stats[("catalogue", "r")] == (N_IMAGES, 0)
    fresh = tmp_path / "fresh"
    _reduce(copy, fresh, fresh=True)
    _assert_same_products(fresh, moved)


def test_damaged_cache_file_is_recomputed(data, reference, tmp_path, caplog):
    out, _ = reference
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    victim = sorted((damaged / "cache" / "photometry" / "r").glob("*.pkl"))[2]
    victim.write_bytes(victim.read_bytes()[:40])
    stats = _reduce(data, damaged)
    assert stats[("photometry", "r")] == (N_IMAGES - 1, 1)
    assert "unreadable" in caplog.text and victim.name in caplog.text
    _assert_same_products(out, damaged)


def test_frame_key_sees_content_size_and_mtime(tmp_path):
    path = tmp_path / "frame.bin"
    path.write_bytes(bytes(3 << 20))
    os.utime(path, ns=(10**18, 10**18))
    key = frame_key(path)
    with open(path, "r+b") as handle:  # last MiB
        handle.seek((3 << 20) - 10)
        handle.write(b"x")
    os.utime(path, ns=(10**18, 10**18))
    assert frame_key(path) != key
    second = frame_key(path)
    os.utime(path, ns=(10**18, 10**18 + 1))
    assert frame_key(path) != second


SNIPPET = """
import numpy as np
from astropy.time import Time
from opticam_like.cache import fingerprint
from opticam_like.photometry.photometers import AperturePhotometer
print(fingerprint({"b": {3, "x", 1.5}, "a": (np.arange(4.0), Time(60000.5, format="mjd"),
                   AperturePhotometer(radius=2.5), np.median, None)}))
"""


def test_fingerprint_is_the_same_in_another_process_and_sees_values():
    value = {"b": {3, "x", 1.5}, "a": (np.arange(4.0), Time(60000.5, format="mjd"),
                                       AperturePhotometer(radius=2.5), np.median, None)}
    env = dict(os.environ, PYTHONHASHSEED="12345")
    other = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True,
                           env=env, check=True).stdout.strip()
    assert other == fingerprint(value)
    assert fingerprint(AperturePhotometer(radius=2.5)) != fingerprint(
        AperturePhotometer(radius=2.6))
    assert fingerprint(np.arange(4.0)) != fingerprint(np.arange(4))
    assert fingerprint(Time(60000.5, format="mjd")) != fingerprint(
        Time(60000.5 + 1e-9, format="mjd"))
    assert fingerprint(lambda x: x + 1) != fingerprint(lambda x: x + 2)


# ------------------------------------------------------------------ kill -9 and resume
def _cli(data, out):
    return [sys.executable, "-m", "opticam_like.cli", "reduce", str(data), str(out),
            "--n-workers", "2", "--no-progress"]


def _last_counts(log_text, pass_name):
    """Per filter, (from the cache, to compute) of the last run in info.log."""
    found = re.findall(rf"{pass_name} pass (\w+): (\d+) of \d+ frames from the cache, "
                       rf"(\d+) to compute", log_text)
    return {f: (int(a), int(b)) for f, a, b in found}


@pytest.mark.slow
def test_kill_during_photometry_then_resume(tmp_path):
    data = tmp_path / "data"
    ol.generate_observations(data, n_images=30, shape=(128, 128), progress=False)
    reference = tmp_path / "reference"
    subprocess.run(_cli(data, reference), check=True, capture_output=True)

    out = tmp_path / "out"
    run = subprocess.Popen(_cli(data, out), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    cached = out / "cache" / "photometry"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None:
        if len(list(cached.glob("g/*.pkl"))) >= 10:
            break
        time.sleep(0.05)
    assert run.poll() is None, "the reduction ended before it could be killed"
    run.send_signal(signal.SIGKILL)
    run.wait()
    done = {f: len(list(cached.glob(f"{f}/[0-9a-f]*.pkl"))) for f in "gri"}
    assert done["g"] >= 10 and sum(done.values()) < 90
    assert not (out / "lcs" / "i_aperture_1.5fwhm.fits").exists()

    rerun = subprocess.run(_cli(data, out), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "taking over the lock" in rerun.stderr
    log_text = (out / "info.log").read_text().split("reducing")[-1]
    assert _last_counts(log_text, "catalogue") == {f: (30, 0) for f in "gri"}
    assert _last_counts(log_text, "photometry") == {f: (done[f], 30 - done[f]) for f in "gri"}
    _assert_same_products(reference, out)
