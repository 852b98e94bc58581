"""The one place that maps per-frame work over frames: serially, on a process pool, or on any
:class:`concurrent.futures.Executor` (a Dask ``Client.get_executor()``, for instance).

Work is sent in chunks of frame descriptions (paths and small metadata, never pixel arrays) with
one small frozen *context*; each chunk returns one result per frame. A failure of one frame is
caught where it happens and comes back as a :class:`FrameFailure`, so it never stops a run.
"""

from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
import math
import multiprocessing
import os
import pickle
import time
import traceback

from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .frames import FrameError

__all__ = ["FrameFailure", "WorkerPool", "StepTimer"]


@dataclass(frozen=True)
class FrameFailure:
    """A frame that a stage could not process.

    Attributes
    ----------
    path : str
        The frame's file.
    stage : str
        The step that rejected it (``'read'``, ``'calibrate'``, ``'alignment'``, ...).
    reason : str
        Why, in words.
    """

    path: str
    stage: str
    reason: str


class StepTimer:
    """Accumulates the wall time of named steps (reported per stage in ``info.log``)."""

    def __init__(self):
        self.seconds = {}
        self._step = None
        self._start = None

    def step(self, name):
        """Start timing ``name`` (and stop the previous step). Returns ``name``."""
        now = time.perf_counter()
        if self._step is not None:
            self.seconds[self._step] = self.seconds.get(self._step, 0.0) + now - self._start
        self._step, self._start = name, now
        return name

    def stop(self):
        """Stop the running step; return the accumulated seconds per step."""
        self.step(None)
        self._step = None
        return dict(self.seconds)

    @property
    def current(self):
        """Name of the running step (the one to blame if the frame fails)."""
        return self._step


def _run_chunk(func, items, context, make_accumulator):
    """Apply ``func(item, context, timer[, accumulator])`` to each item, isolating failures."""
    results = []
    timings = {}
    accumulator = make_accumulator() if make_accumulator is not None else None
    extra = () if accumulator is None else (accumulator,)
    for item in items:
        timer = StepTimer()
        try:
            result = func(item, context, timer, *extra)
        except FrameError as exc:
            result = FrameFailure(exc.path, timer.current or "read", exc.reason)
        except Exception as exc:  # one bad frame must never stop the run
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            result = FrameFailure(str(getattr(item, "path", item)), timer.current or "unknown",
                                  detail)
        for name, seconds in timer.stop().items():
            timings[name] = timings.get(name, 0.0) + seconds
        results.append(result)
    return results, timings, accumulator


class WorkerPool:
    """Runs per-frame functions on ``n_workers`` processes or on a given executor.

    Parameters
    ----------
    n_workers : int, optional
        Number of worker processes; 1 runs in this process. Default: the number of CPUs.
    executor : concurrent.futures.Executor, optional
        Use this executor instead (e.g. ``dask.distributed.Client(...).get_executor()``; a
        Dask ``Client`` itself is accepted). It is not shut down by the pool.
    progress : bool
        Show tqdm progress bars.

    Notes
    -----
    On POSIX the pool forks, so a background function defined in a notebook or script still
    reaches the workers; everything sent must nevertheless be picklable (checked up front by
    :meth:`check_picklable`, with a clear message).
    """

    def __init__(self, n_workers=None, executor=None, progress=True):
        if executor is not None and hasattr(executor, "get_executor"):
            executor = executor.get_executor()
        if n_workers is None:
            n_workers = os.cpu_count() or 1
        if int(n_workers) < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        self.n_workers = int(n_workers)
        self.progress = progress
        self._external = executor
        self._pool = None

    @property
    def parallel(self):
        """True when work leaves this process."""
        return self._external is not None or self.n_workers > 1

    def _executor(self):
        if self._external is not None:
            return self._external
        if self._pool is None:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
            ctx = multiprocessing.get_context(method)
            self._pool = ProcessPoolExecutor(self.n_workers, mp_context=ctx,
                                             initializer=_worker_init)
        return self._pool

    def close(self):
        """Shut down the process pool (an external executor is left running)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def check_picklable(context, what="the reduction context"):
        """Raise a clear TypeError when ``context`` cannot be sent to worker processes."""
        try:
            pickle.dumps(context)
        except Exception as exc:
            raise TypeError(
                f"{what} cannot be pickled for the worker processes ({exc}). Define custom "
                "background/finder callables at module level (or as a class instance or "
                "functools.partial of a module-level function), or use n_workers=1.") from None

    def map(self, func, items, context, desc=None, chunksize=None, accumulator=None):
        """Apply ``func(item, context, timer)`` to every item.

        Parameters
        ----------
        func : callable
            Module-level function; it may raise, and the exception becomes a
            :class:`FrameFailure` of that item.
        items : sequence
            Small picklable descriptions of frames (with a ``path`` attribute).
        context : object
            Small picklable object shared by every call.
        desc : str, optional
            Progress-bar label.
        chunksize : int, optional
            Items per task (default: about 4 tasks per worker, at most 8 so that the last
            tasks of a pass finish close together, or 32 with an accumulator, which each task
            sends back whole).
        accumulator : callable, optional
            Picklable factory of an object with a ``merge(other)`` method. Each task makes one
            and passes it to ``func`` as a fourth argument (e.g. a running sum of aligned
            frames); the parent merges them, so memory stays bounded.

        Returns
        -------
        results : list
            One result (or :class:`FrameFailure`) per item, in the order of ``items``.
        timings : dict
            Seconds spent per step, summed over frames.
        accumulated : object or None
            The merged accumulator.
        """
        items = list(items)
        timings = {}
        total = None
        results = [None] * len(items)
        bar = tqdm(total=len(items), desc=desc, unit="frame", disable=not self.progress,
                   leave=False)
        try:
            if not self.parallel:
                for i, item in enumerate(items):
                    (result,), chunk_timings, part = _run_chunk(func, [item], context,
                                                                accumulator)
                    results[i] = result
                    _merge(timings, chunk_timings)
                    total = _merge_accumulators(total, part)
                    bar.update(1)
                return results, timings, total
            self.check_picklable(context)
            if chunksize is None:
                cap = 8 if accumulator is None else 32
                chunksize = max(1, min(cap, math.ceil(len(items) / (4 * self.n_workers))))
            executor = self._executor()
            futures = {}
            for start in range(0, len(items), chunksize):
                chunk = items[start:start + chunksize]
                future = executor.submit(_run_chunk, func, chunk, context, accumulator)
                futures[future] = (start, len(chunk))
            for future in as_completed(futures):
                start, size = futures[future]
                chunk_results, chunk_timings, part = future.result()
                results[start:start + size] = chunk_results
                _merge(timings, chunk_timings)
                total = _merge_accumulators(total, part)
                bar.update(size)
            return results, timings, total
        finally:
            bar.close()


def _merge(total, part):
    for name, seconds in part.items():
        total[name] = total.get(name, 0.0) + seconds


def _merge_accumulators(total, part):
    if part is None:
        return total
    if total is None:
        return part
    total.merge(part)
    return total


def _worker_init():
    """Keep each worker single-threaded (BLAS, OpenMP): the pool is the parallelism."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    threadpool_limits(1)
