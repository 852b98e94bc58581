import functools
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import psutil
import pytest

from opticam_like.frames import FrameError
from opticam_like.parallel import FrameFailure, WorkerPool

START_METHODS = [m for m in ("fork", "forkserver", "spawn")
                 if m in multiprocessing.get_all_start_methods()]


def _square(item, context, timer):
    timer.step("square")
    if item == 3:
        raise FrameError(f"frame{item}.fits", "broken on purpose")
    if item == 5:
        raise ZeroDivisionError("division by zero")
    return item * item + context


class _Sum:
    def __init__(self):
        self.total = 0

    def merge(self, other):
        self.total += other.total


def _add(item, context, timer, acc):
    acc.total += item
    return os.getpid()


def _call_context(item, context, timer):
    return context(item)


def _crash_on(item, context, timer, acc):
    """Kill the worker on the items named in ``context`` (``'exit'``: os._exit(3); ``'kill'``:
    SIGKILL to itself), otherwise add the item."""
    how = context.get(item)
    if how == "exit":
        os._exit(3)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    acc.total += item
    return 2 * item


def _python(code, *args, timeout=180):
    """Run ``code`` as ``python -c`` (like a notebook: ``__main__`` has no file to re-import)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("n_workers", [1, 2])
def test_map_isolates_failures_and_keeps_order(n_workers):
    with WorkerPool(n_workers, progress=False) as pool:
        results, timings, _ = pool.map(_square, range(8), 10)
    assert [r for r in results if not isinstance(r, FrameFailure)] == [10, 11, 14, 26, 46, 59]
    assert results[3] == FrameFailure("frame3.fits", "square", "broken on purpose")
    assert results[5].reason == "ZeroDivisionError: division by zero"
    assert set(timings) == {"square"}


def test_accumulator_merges_over_workers():
    with WorkerPool(2, progress=False) as pool:
        results, _, acc = pool.map(_add, range(100), None, accumulator=_Sum, chunksize=7)
    assert acc.total == sum(range(100))
    assert all(pid != os.getpid() for pid in results)


NOTEBOOK = """
    import json, os, sys
    from opticam_like.parallel import WorkerPool

    OFFSET = 100

    def notebook_function(item, context, timer):
        timer.step("notebook")
        return context(item) + OFFSET, os.getpid()

    class Scale:
        def __init__(self, k):
            self.k = k

        def __call__(self, x):
            return self.k * x

    def make_closure(k):
        return lambda item, context, timer: (item * k + context, os.getpid())

    with WorkerPool(2, start_method=sys.argv[1], progress=False) as pool:
        a, timings, _ = pool.map(notebook_function, range(6), Scale(2), chunksize=1)
        b, _, _ = pool.map(make_closure(3), range(6), 1, chunksize=1)
        c, _, _ = pool.map(lambda item, context, timer: (context(item), os.getpid()),
                           range(4), lambda x: -x, chunksize=1)
    print(json.dumps({"parent": os.getpid(), "a": a, "b": b, "c": c,
                      "timed": sorted(timings), "method": pool.mp_context.get_start_method()}))
"""


@pytest.mark.parametrize("method", START_METHODS)
def test_notebook_callables_lambdas_and_closures_under_each_start_method(method):
    done = _python(NOTEBOOK, method)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["method"] == method
    assert [v for v, _ in out["a"]] == [2 * i + 100 for i in range(6)]
    assert [v for v, _ in out["b"]] == [3 * i + 1 for i in range(6)]
    assert [v for v, _ in out["c"]] == [-i for i in range(4)]
    assert out["timed"] == ["notebook"]
    pids = {pid for key in "abc" for _, pid in out[key]}
    assert out["parent"] not in pids and len(pids) >= 1


REASONS = {"exit": "worker process died: exit code 3",
           "kill": "worker process died: killed by SIGKILL"}


@pytest.mark.parametrize("method, crashes", [("fork", {7: "exit", 12: "kill"}),
                                             ("spawn", {10: "kill"})])
def test_a_dead_worker_costs_only_its_frames(method, crashes):
    with WorkerPool(2, progress=False, start_method=method) as pool:
        results, _, acc = pool.map(_crash_on, range(20), crashes, chunksize=3,
                                   accumulator=_Sum)
        assert pool.map(_call_context, [4], functools.partial(pow, 2))[0] == [16]
    for item, how in crashes.items():
        assert results[item] == FrameFailure(str(item), "worker", REASONS[how])
    assert [r for i, r in enumerate(results) if i not in crashes] == [
        2 * i for i in range(20) if i not in crashes]
    assert acc.total == sum(range(20)) - sum(crashes)


HANG = """
    import os, sys, time
    from opticam_like.parallel import WorkerPool

    def hang(item, context, timer):
        open(os.path.join(context, f"{os.getpid()}.pid"), "w").close()
        time.sleep(300)

    WorkerPool(2, start_method=sys.argv[1], progress=False).map(hang, range(2), sys.argv[2],
                                                                chunksize=1)
"""


def _gone(process):
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
@pytest.mark.parametrize("method", START_METHODS)
def test_kill_9_of_the_parent_leaves_no_worker(method, tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HANG), method,
                               str(tmp_path)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("*.pid"))) < 2:
            assert parent.poll() is None, parent.stderr.read().decode()
            assert time.monotonic() < deadline, "workers never started"
            time.sleep(0.1)
        workers = [psutil.Process(int(p.stem)) for p in tmp_path.glob("*.pid")]
        descendants = psutil.Process(parent.pid).children(recursive=True)
        assert {w.pid for w in workers} <= {d.pid for d in descendants}
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while not all(_gone(d) for d in descendants) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [d.pid for d in descendants if not _gone(d)] == []


class _Locked:
    def __init__(self):
        self.lock = threading.Lock()

    def __call__(self, x):
        with self.lock:
            return x + 1


def test_thread_executor_runs_lambdas_and_locks():
    with ThreadPoolExecutor(2) as ex:
        pool = WorkerPool(executor=ex, progress=False)
        assert not pool.process_workers
        results, _, _ = pool.map(lambda item, context, timer: context(item), [1, 2], _Locked())
        squares, _, _ = pool.map(_square, [1, 2], 0)
    assert results == [2, 3]
    assert squares == [1, 4]
    with pytest.raises(ValueError):
        WorkerPool(0)
    with pytest.raises(ValueError, match="start_method must be one of"):
        WorkerPool(2, start_method="vfork")


def test_an_external_process_pool_gets_lambdas_by_value():
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as ex:
        pool = WorkerPool(executor=ex, progress=False)
        assert pool.process_workers
        results, _, _ = pool.map(lambda item, context, timer: (context * item, os.getpid()),
                                 range(5), 3)
    assert [r for r, _ in results] == [0, 3, 6, 9, 12]
    assert os.getpid() not in {pid for _, pid in results}


def test_partial_context_reaches_the_workers():
    with WorkerPool(2, progress=False) as pool:
        results, _, _ = pool.map(_call_context, [2, 3], functools.partial(pow, 3))
    assert results == [9, 27]


def test_unpicklable_objects_are_named(tmp_path):
    assert isinstance(WorkerPool.check_picklable(lambda x: x + 1, "the background"), bytes)
    with pytest.raises(TypeError, match=r"the background cannot be pickled for the worker "
                                        r"processes: <.*_Locked.*> in attribute 'lock' "
                                        r"\(<unlocked _thread.lock.*\): TypeError: .*lock"):
        WorkerPool.check_picklable(_Locked(), "the background")
    with WorkerPool(2, progress=False) as pool:
        with pytest.raises(TypeError, match="the context .* attribute 'lock'"):
            pool.map(_call_context, [1], _Locked())
        with open(tmp_path / "log.txt", "w") as handle:
            def write(item, context, timer):
                handle.write(str(item))
            with pytest.raises(TypeError, match=r"the per-frame function cannot be pickled "
                                                r"for the worker processes: <function .*write.*> "
                                                r"in closure variable 'handle' \(<_io.Text"):
                pool.map(write, [1], None)


REDUCE = """
    import json, multiprocessing, sys
    import numpy as np
    from astropy.table import Table
    from photutils.background import Background2D
    import opticam_like as ol

    multiprocessing.set_start_method("spawn")
    base = sys.argv[1]
    ol.generate_observations(base + "/data", n_images=6, shape=(128, 128), n_sources=6,
                             filters=("g",), progress=False)
    fluxes = {}
    for n_workers in (1, 2):
        out = f"{base}/out{n_workers}"
        with ol.Reducer(out, data_directory=base + "/data", n_workers=n_workers,
                        background=lambda data, mask=None: Background2D(data, 32),
                        progress=False) as reducer:
            n_sources = len(reducer.create_catalogs()["g"])
            reducer.photometry()
        fluxes[n_workers] = Table.read(out + "/lcs/g_aperture_1.5fwhm.fits")["flux"].tolist()
    print(json.dumps({"n_sources": n_sources, "fluxes": fluxes,
                      "method": multiprocessing.get_start_method()}))
"""


def test_lambda_background_reduces_a_night_under_spawn(tmp_path):
    done = _python(REDUCE, tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["method"] == "spawn"
    assert out["n_sources"] >= 4
    serial, parallel = out["fluxes"]["1"], out["fluxes"]["2"]
    assert len(parallel) == 6
    assert parallel == serial
