"""The parent's memory over a long frame list stays bounded: WorkerPool.map keeps one small
result per frame, and merges the per-task accumulators as they arrive instead of holding them
(see benchmarks/bench_memory.py for a whole Reducer over 10^5 frames)."""

import tracemalloc

import numpy as np

from opticam_like.parallel import WorkerPool

FRAME = (128, 128)  # float32: 64 KiB per "frame" made in the worker


class _Stack:
    """A running sum of frames (64 KiB) and a count, merged in the parent."""

    def __init__(self):
        self.total = np.zeros(FRAME, dtype=np.float32)
        self.n = 0

    def merge(self, other):
        self.total += other.total
        self.n += other.n


def _frame(item, context, timer, stack):
    data = np.full(FRAME, item % 7, dtype=np.float32)
    stack.total += data
    stack.n += 1
    return float(data[0, 0])


def _parent_peak(pool, n):
    tracemalloc.start()
    try:
        results, _, stack = pool.map(_frame, range(n), None, accumulator=_Stack)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert results == [float(i % 7) for i in range(n)]
    assert stack.n == n and stack.total[0, 0] == sum(i % 7 for i in range(n))
    return peak


def test_parent_memory_is_bounded_over_20000_frames():
    with WorkerPool(2, progress=False) as pool:
        small = _parent_peak(pool, 2_000)
        large = _parent_peak(pool, 20_000)
    # 20000 frames of 64 KiB are 1.2 GiB and the 625 accumulators 39 MiB: neither is held
    assert large < 12 * 2**20, large
    # what grows is the result list: well under 1 KiB per frame
    assert (large - small) / 18_000 < 1024, (small, large)
