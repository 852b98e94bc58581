import functools
import os

import pytest

from opticam_like.frames import FrameError
from opticam_like.parallel import FrameFailure, WorkerPool


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


def test_unpicklable_context_is_explained():
    with WorkerPool(2, progress=False) as pool:
        with pytest.raises(TypeError, match="cannot be pickled.*module level"):
            pool.map(_square, [1], lambda x: x)
    with WorkerPool(1, progress=False) as pool:
        results, _, _ = pool.map(_square, [2], functools.partial(int, "3")())
    assert results == [7]


def test_external_executor():
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as ex:
        pool = WorkerPool(executor=ex, progress=False)
        results, _, _ = pool.map(_square, [1, 2], 0)
    assert results == [1, 4]
    with pytest.raises(ValueError):
        WorkerPool(0)
