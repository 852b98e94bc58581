"""The reduction on a Dask ``LocalCluster`` of worker processes: outputs identical, bit for
bit, to the built-in process pool's, and a worker killed in the middle of a pass costs at most
the frames it was working on (a retry elsewhere, or FrameFailure rows), never the pass."""

import os

import numpy as np
import psutil
import pytest
from astropy.table import Table

import opticam_like as ol
from opticam_like.background import DefaultBackground
from opticam_like.parallel import FrameFailure, WorkerPool

distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed "
                                  "(pip install -e '.[test]')")
dask = pytest.importorskip("dask")

SHAPE = (128, 128)
N_FRAMES = 20


@pytest.fixture(scope="module")
def client():
    """One cluster for the module: 2 worker processes of one thread. Dask gives up on a task
    (``KilledWorker``) at the first death of its worker, so that WorkerPool's own retries are
    tested with as few (slow) worker restarts as possible."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster:
            with distributed.Client(cluster) as dask_client:
                yield dask_client


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """20 frames of 128 x 128 per camera (g, r, i) reduced by the built-in pool of 2 workers."""
    base = tmp_path_factory.mktemp("dask")
    ol.generate_observations(base / "data", n_images=N_FRAMES, shape=SHAPE, n_sources=8,
                             progress=False)
    with ol.Reducer(base / "pool", data_directory=base / "data", n_workers=2,
                    progress=False) as reducer:
        reducer.create_catalogs()
        reducer.photometry()
    return base


def _tables(out):
    """Every catalogue, transform and light-curve table of an output directory, by name."""
    paths = sorted([*(out / "cat").glob("*.ecsv"), *(out / "lcs").glob("*.fits")])
    return {p.relative_to(out).as_posix(): Table.read(p) for p in paths}


def _assert_identical(out, reference):
    """Same tables, same columns, every value equal bit for bit (NaN where NaN)."""
    ours, theirs = _tables(out), _tables(reference)
    assert set(ours) == set(theirs)
    assert {"cat/g_catalog.ecsv", "cat/transforms_i.ecsv", "lcs/r_aperture_1.5fwhm.fits"} <= set(
        ours)
    for name, table in theirs.items():
        assert ours[name].colnames == table.colnames, name
        for column in table.colnames:
            a, b = np.asarray(ours[name][column]), np.asarray(table[column])
            assert a.dtype == b.dtype, (name, column)
            if a.dtype.kind == "f":
                assert np.array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}")), (
                    name, column)
            else:
                assert np.array_equal(a, b), (name, column)


class _KillOnce(DefaultBackground):
    """The default background estimator, except that its ``at``-th call of the night (counted
    over every worker through files in ``directory``) kills its worker process, once."""

    def __init__(self, directory, at):
        super().__init__()
        self.directory = str(directory)
        self.at = at

    def __call__(self, data, mask=None):
        call = 0
        while True:  # claim the next call number; O_EXCL makes each number go to one call
            try:
                os.close(os.open(os.path.join(self.directory, f"call{call}"),
                                 os.O_CREAT | os.O_EXCL))
                break
            except FileExistsError:
                call += 1
        if call == self.at:
            with open(os.path.join(self.directory, "killed"), "w") as marker:
                marker.write(str(os.getpid()))
            os._exit(9)
        return super().__call__(data, mask=mask)


def test_local_cluster_gives_the_pool_outputs_bit_for_bit(night, client, tmp_path):
    with ol.Reducer(tmp_path / "dask", data_directory=night / "data", executor=client,
                    progress=False) as reducer:
        assert reducer.pool.parallel and not reducer.pool.process_workers
        reducer.create_catalogs()
        reducer.photometry()
    _assert_identical(tmp_path / "dask", night / "pool")
    flux = np.asarray(Table.read(tmp_path / "dask" / "lcs" / "g_aperture_1.5fwhm.fits")["flux"])
    assert flux.shape[0] == N_FRAMES and np.isfinite(flux[:, 0]).all()
    assert not (tmp_path / "dask" / "diag" / "rejected_frames.ecsv").exists() or len(
        Table.read(tmp_path / "dask" / "diag" / "rejected_frames.ecsv")) == 0


def test_a_worker_killed_in_the_catalogue_pass_costs_nothing(night, client, tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()
    # the reference choice of g makes up to 10 calls: call 14 is in g's catalogue pass
    background = _KillOnce(calls, at=14)
    with ol.Reducer(tmp_path / "dask", data_directory=night / "data", executor=client,
                    background=background, progress=False) as reducer:
        reducer.create_catalogs()
        reducer.photometry()
    killed = int((calls / "killed").read_text())
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == "zombie"
    _assert_identical(tmp_path / "dask", night / "pool")


def _kill_on(item, context, timer, acc):
    """Kill the worker (exit code 3) on the items in ``context``; otherwise add the item."""
    if item in context:
        os._exit(3)
    acc.total += item
    return 2 * item


class _Sum:
    def __init__(self):
        self.total = 0

    def merge(self, other):
        self.total += other.total


def test_a_frame_that_always_kills_its_worker_is_the_only_failure(client):
    pool = WorkerPool(executor=client, progress=False)
    results, _, acc = pool.map(_kill_on, range(24), {9}, chunksize=4, accumulator=_Sum)
    failure = results[9]
    assert isinstance(failure, FrameFailure) and failure.path == "9"
    assert failure.stage == "worker"
    assert failure.reason.startswith("worker process died: KilledWorker")
    assert [r for i, r in enumerate(results) if i != 9] == [2 * i for i in range(24) if i != 9]
    assert acc.total == sum(range(24)) - 9
    assert pool.map(_kill_on, range(6), set(), chunksize=2, accumulator=_Sum)[0] == [
        0, 2, 4, 6, 8, 10]
