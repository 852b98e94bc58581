"""Live reduction (opticam_like.follow): a generator thread writes a night's frames into a
directory while the follower runs; each frame is aligned and measured once, and the final
outputs are byte for byte those of a batch run with the same catalogue frames."""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import opticam_like as ol
from opticam_like.follow import follow

from test_cache import _assert_same_products

N_IMAGES = 14
N_FIRST = 8


@pytest.mark.slow
def test_follower_reduces_each_new_frame_once(tmp_path):
    night = tmp_path / "night"
    ol.generate_observations(night, n_images=N_IMAGES, shape=(128, 128), filters=("g", "r"),
                             progress=False)
    watch = tmp_path / "watch"
    watch.mkdir()
    steps = [sorted(night.glob(f"C*_*_{k:06d}.fits")) for k in range(N_IMAGES)]
    assert all(len(step) == 2 for step in steps)
    written = threading.Event()

    def observe():  # one exposure per camera every 0.25 s, each file written atomically
        for step in steps:
            for frame in step:
                part = watch / (frame.name + ".part")
                shutil.copy2(frame, part)
                os.replace(part, watch / frame.name)
            time.sleep(0.25)
        written.set()

    stats = []
    camera = threading.Thread(target=observe)
    camera.start()
    out = tmp_path / "live"
    try:
        runs = follow(out, watch, catalog_frames=N_FIRST, poll=0.1, stop=written.is_set,
                      on_run=lambda reducer: stats.append(dict(reducer.cache.stats)),
                      n_workers=1, progress=False)
    finally:
        camera.join()
    assert runs == len(stats) >= 2
    for name in ("g", "r"):
        for kind in ("catalogue", "photometry"):
            assert sum(s[(kind, name)][1] for s in stats) == N_IMAGES  # each frame once
        assert stats[-1][("photometry", name)] == (
            sum(s[("photometry", name)][1] for s in stats[:-1]),
            stats[-1][("photometry", name)][1])
    batch = tmp_path / "batch"
    with ol.Reducer(batch, data_directory=watch, catalog_frames=N_FIRST, n_workers=1,
                    progress=False) as reducer:
        reducer.create_catalogs()
        reducer.photometry()
        assert {v for (kind, _), v in reducer.cache.stats.items()
                if kind in ("catalogue", "photometry")} == {(0, N_IMAGES)}
    _assert_same_products(batch, out)


@pytest.mark.slow
def test_ctrl_c_leaves_consistent_outputs_and_a_rerun_completes(tmp_path):
    data = tmp_path / "data"
    ol.generate_observations(data, n_images=10, shape=(128, 128), filters=("g",),
                             progress=False)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "opticam_like.cli", "reduce", str(data), str(out),
               "--n-workers", "1", "--no-progress", "--catalog-frames", "5"]
    live = subprocess.Popen(command + ["--follow", "--poll", "0.2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and live.poll() is None:
        if len(list((out / "cache" / "photometry").glob("g/*.pkl"))) >= 3:
            break
        time.sleep(0.02)
    live.send_signal(signal.SIGINT)  # in the middle of the first photometry pass
    stdout, stderr = live.communicate(timeout=60)
    assert live.returncode == 0, stderr
    assert "stopped" in stdout and "Traceback" not in stderr
    assert not list(out.rglob(".*.tmp")) and not list(out.rglob(".*.ecsv"))
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    log = (out / "info.log").read_text().split("reducing")[-1]
    assert "catalogue pass g: 10 of 10 frames from the cache" in log
    computed = int(re.search(r"photometry pass g: (\d+) of 10 frames from the cache",
                             log).group(1))
    assert 3 <= computed < 10
    batch = tmp_path / "batch"
    with ol.Reducer(batch, data_directory=data, catalog_frames=5, n_workers=1,
                    progress=False) as reducer:
        reducer.create_catalogs()
        reducer.photometry()
    _assert_same_products(batch, out)
