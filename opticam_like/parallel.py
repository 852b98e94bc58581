"""The one place that maps per-frame work over frames: serially, on a process pool, or on any
:class:`concurrent.futures.Executor` (a Dask ``Client.get_executor()``, for instance).

Work is sent in chunks of frame descriptions (paths and small metadata, never pixel arrays) with
one small frozen *context*; each chunk returns one result per frame. A failure of one frame is
caught where it happens and comes back as a :class:`FrameFailure`, so it never stops a run.

For worker processes the function, the context and the accumulator factory are serialised by
value with cloudpickle (as Dask and loky do), so callables defined in a notebook or in
``__main__``, lambdas and closures reach the workers under the ``fork``, ``forkserver`` and
``spawn`` start methods alike. A worker that dies (segmentation fault, out-of-memory kill,
``os._exit``) costs only the frames it was working on: they come back as :class:`FrameFailure`
rows, and a fresh pool carries on with the rest. Workers die with their parent.
"""

from collections import deque
from concurrent.futures import BrokenExecutor, FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
import ctypes
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import uuid

import cloudpickle
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
        Dask ``Client`` itself is accepted). It is not shut down by the pool. Thread pools run
        anything; Dask serialises the work itself; a ``ProcessPoolExecutor`` gets the work
        serialised by value, like the pool's own processes.
    progress : bool
        Show tqdm progress bars.
    start_method : {'fork', 'forkserver', 'spawn'} or multiprocessing context, optional
        How worker processes start. Default: Python's default start method
        (:func:`multiprocessing.get_start_method`).

    Raises
    ------
    ValueError
        ``n_workers < 1`` or an unknown ``start_method``.

    Notes
    -----
    The function, context and accumulator factory are serialised with cloudpickle (functions
    and classes of ``__main__``, lambdas and closures by value; importable ones by reference),
    so notebook functions, lambdas and closures work under every start method; only objects
    that cannot be serialised at all (an open file, a lock) are refused, with a message naming
    them (:meth:`check_picklable`). Results come back the same way.

    A worker process that dies while working does not end :meth:`map`: the tasks that were in
    flight are run again, one frame at a time and then one frame per pool, on fresh pools, so
    that only the frames that kill a worker on their own become :class:`FrameFailure` rows
    (stage ``'worker'``, reason ``'worker process died: ...'``).

    Workers die with the process that made the pool, also when it is killed with ``SIGKILL``:
    on Linux, with ``fork`` and ``spawn``, each worker asks the kernel for ``SIGKILL`` when its
    parent ends (``prctl(PR_SET_PDEATHSIG)``; the kernel's "parent" is the thread that started
    the worker, so a pool started from a thread that then ends is restarted by the next
    :meth:`map`); with ``forkserver`` and on other POSIX systems a watcher thread in each
    worker exits it within a second of the parent's end.
    """

    def __init__(self, n_workers=None, executor=None, progress=True, start_method=None):
        if executor is not None and hasattr(executor, "get_executor"):
            executor = executor.get_executor(pure=False)  # a Dask Client: never reuse results
        if n_workers is None:
            n_workers = os.cpu_count() or 1
        if int(n_workers) < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        self.n_workers = int(n_workers)
        self.progress = progress
        self.mp_context = _mp_context(start_method)
        self._external = executor
        self._pool = None

    @property
    def parallel(self):
        """True when work leaves this process."""
        return self._external is not None or self.n_workers > 1

    @property
    def process_workers(self):
        """True when work is serialised to worker processes by this pool (its own processes or
        an external ``ProcessPoolExecutor``); only then must callables pass
        :meth:`check_picklable`. Thread pools and Dask (which serialises by itself) do not."""
        if self._external is not None:
            return isinstance(self._external, ProcessPoolExecutor)
        return self.n_workers > 1

    def _executor(self):
        """The pool's own process pool, started (and checked with one probe task) if needed."""
        if self._pool is None:
            pool = ProcessPoolExecutor(self.n_workers, mp_context=self.mp_context,
                                       initializer=_worker_init, initargs=(os.getpid(),))
            try:
                pool.submit(_probe).result()
            except BrokenProcessPool as exc:
                pool.shutdown(wait=True)
                raise RuntimeError(
                    f"worker processes ({self.mp_context.get_start_method()} start method) "
                    f"die before running any work ({exc}); with 'spawn' or 'forkserver', a "
                    "script must start the reduction under `if __name__ == '__main__':`"
                ) from exc
            self._pool = pool
        return self._pool

    def _discard_pool(self):
        """Shut down a broken pool; return what killed its workers, in words."""
        pool, self._pool = self._pool, None
        if pool is None:
            return "the process pool broke"
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=True)
        return _death_note(p.exitcode for p in processes)

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
        """Serialise ``context`` by value (cloudpickle) as it will be sent to worker processes.

        Functions and classes defined in a notebook or ``__main__``, lambdas and closures pass;
        objects holding an open file, a lock, a socket or the like do not.

        Parameters
        ----------
        context : object
            What will be sent (a background, a finder, a per-frame context...).
        what : str
            Its name in the error message.

        Returns
        -------
        bytes
            The serialised object.

        Raises
        ------
        TypeError
            ``context`` cannot be serialised; the message names ``what``, the object, the
            attribute or closure variable at fault when there is one, and the reason.
        """
        try:
            return cloudpickle.dumps(context)
        except Exception as exc:
            culprit = _unpicklable_part(context)
            where = f" in {culprit}" if culprit else ""
            raise TypeError(
                f"{what} cannot be pickled for the worker processes: {_short_repr(context)}"
                f"{where}: {type(exc).__name__}: {exc}. Objects holding an "
                "open file, a lock or a connection cannot be sent: open them inside the "
                "callable, or use n_workers=1 or a thread executor.") from None

    def map(self, func, items, context, desc=None, chunksize=None, accumulator=None):
        """Apply ``func(item, context, timer)`` to every item.

        Parameters
        ----------
        func : callable
            Per-frame function (any callable: module-level, notebook, lambda, closure); it
            may raise, and the exception becomes a :class:`FrameFailure` of that item.
        items : sequence
            Small picklable descriptions of frames (with a ``path`` attribute).
        context : object
            Small object shared by every call.
        desc : str, optional
            Progress-bar label.
        chunksize : int, optional
            Items per task (default: about 4 tasks per worker, at most 8 so that the last
            tasks of a pass finish close together, or 32 with an accumulator, which each task
            sends back whole).
        accumulator : callable, optional
            Factory of an object with a ``merge(other)`` method. Each task makes one
            and passes it to ``func`` as a fourth argument (e.g. a running sum of aligned
            frames); the parent merges them, so memory stays bounded.

        Returns
        -------
        results : list
            One result (or :class:`FrameFailure`) per item, in the order of ``items``. A frame
            whose worker process died is a :class:`FrameFailure` with stage ``'worker'``.
        timings : dict
            Seconds spent per step, summed over frames.
        accumulated : object or None
            The merged accumulator (frames whose worker died are not in it).

        Raises
        ------
        TypeError
            The function, context or accumulator cannot be serialised for worker processes.
        RuntimeError
            Worker processes cannot start at all.
        """
        items = list(items)
        run = _Run(items, len(items), desc, self.progress)
        try:
            if not self.parallel:
                for i, item in enumerate(items):
                    run.collect((i, 1), _run_chunk(func, [item], context, accumulator))
                return run.finish()
            if chunksize is None:
                cap = 8 if accumulator is None else 32
                chunksize = max(1, min(cap, math.ceil(len(items) / (4 * self.n_workers))))
            tasks = [(start, min(chunksize, len(items) - start))
                     for start in range(0, len(items), chunksize)]
            if self._external is not None:
                self._map_external(run, tasks, func, context, accumulator)
            else:
                self._map_own(run, tasks, func, context, accumulator)
            return run.finish()
        finally:
            run.bar.close()

    def _map_external(self, run, tasks, func, context, accumulator):
        """Run the tasks on the external executor.

        Tasks lost with their Dask workers (``KilledWorker``) are run again one frame per task,
        and frames lost again are run one at a time (nothing else of this map in flight), so
        that only the frames that kill a worker on their own fail; Dask also blames the tasks
        queued on a worker that died. Tasks of a broken executor (``BrokenExecutor``) fail.
        """
        executor = self._external
        by_value = self.process_workers
        if by_value:
            payload = _serialise(func, context, accumulator)
            token = uuid.uuid4().hex

        def submit(task):
            start, size = task
            chunk = run.items[start:start + size]
            if by_value:
                return executor.submit(_run_serialised, payload, token, chunk)
            return executor.submit(_run_chunk, func, chunk, context, accumulator)

        load = cloudpickle.loads if by_value else None
        crashed = _run_external(run, tasks, submit, load, math.inf)
        singles = [(i, 1) for (start, size), _ in crashed for i in range(start, start + size)]
        crashed = _run_external(run, singles, submit, load, math.inf)
        crashed = _run_external(run, [task for task, _ in crashed], submit, load, 1)
        for task, note in crashed:
            run.fail(task, note)

    def _map_own(self, run, tasks, func, context, accumulator):
        payload = _serialise(func, context, accumulator)
        token = uuid.uuid4().hex
        crashed = self._run_tasks(run, tasks, 2 * self.n_workers, payload, token)
        singles = [(i, 1) for (start, size), _ in crashed for i in range(start, start + size)]
        crashed = self._run_tasks(run, singles, self.n_workers, payload, token)
        crashed = self._run_tasks(run, [task for task, _ in crashed], 1, payload, token)
        for task, note in crashed:
            run.fail(task, f"worker process died: {note}")

    def _run_tasks(self, run, tasks, window, payload, token):
        """Run tasks with at most ``window`` in flight; restart the pool when a worker dies.

        Returns the tasks that were in flight when a worker died, each with what killed it.
        """
        pending = deque(tasks)
        crashed = []
        inflight = {}
        while pending or inflight:
            pool = self._executor()
            broken = False
            while pending and len(inflight) < window and not broken:
                start, size = pending[0]
                try:
                    future = pool.submit(_run_serialised, payload, token,
                                         run.items[start:start + size])
                except BrokenProcessPool:
                    broken = True
                    continue
                inflight[future] = pending.popleft()
            done, _ = wait(inflight, return_when=FIRST_COMPLETED) if inflight else ((), ())
            lost = _settle(run, inflight, done)
            if lost or broken:
                lost += _settle(run, inflight, list(inflight))
                note = self._discard_pool()
                crashed.extend((task, note) for task in lost)
        return crashed


class _Run:
    """Results, timings and accumulator of one :meth:`WorkerPool.map` call, filled as tasks end."""

    def __init__(self, items, total, desc, progress):
        self.items = items
        self.results = [None] * total
        self.timings = {}
        self.accumulated = None
        self.bar = tqdm(total=total, desc=desc, unit="frame", disable=not progress, leave=False)

    def collect(self, task, outcome):
        start, size = task
        chunk_results, chunk_timings, part = outcome
        self.results[start:start + size] = chunk_results
        _merge(self.timings, chunk_timings)
        self.accumulated = merge_accumulators(self.accumulated, part)
        self.bar.update(size)

    def fail(self, task, reason):
        start, size = task
        for i in range(start, start + size):
            item = self.items[i]
            self.results[i] = FrameFailure(str(getattr(item, "path", item)), "worker", reason)
        self.bar.update(size)

    def finish(self):
        return self.results, self.timings, self.accumulated


def _settle(run, inflight, futures):
    """Wait for ``futures`` and take them out of ``inflight``; collect the results; return the
    tasks lost to a dead worker."""
    lost = []
    for future in futures:
        task = inflight.pop(future)
        if isinstance(future.exception(), BrokenProcessPool):
            lost.append(task)
        else:
            run.collect(task, cloudpickle.loads(future.result()))
    return lost


def _run_external(run, tasks, submit, load, window):
    """Run tasks on an external executor with at most ``window`` in flight; collect results
    (``load`` decodes them, if given) and fail the tasks of a broken executor.

    Returns the tasks lost with their Dask workers (``KilledWorker``), each with the reason.
    """
    pending = deque(tasks)
    inflight = {}
    crashed = []
    crash_types = _crash_types()
    while pending or inflight:
        while pending and len(inflight) < window:
            task = pending.popleft()
            inflight[submit(task)] = task
        done, _ = wait(inflight, return_when=FIRST_COMPLETED)
        for future in done:
            task = inflight.pop(future)
            try:
                outcome = future.result()
            except crash_types as exc:
                note = f"worker process died: {type(exc).__name__}: {exc}"
                if isinstance(exc, BrokenExecutor):
                    run.fail(task, note)
                else:
                    crashed.append((task, note))
                continue
            run.collect(task, load(outcome) if load is not None else outcome)
    return crashed


def _mp_context(start_method):
    if start_method is None:
        return multiprocessing.get_context()
    if isinstance(start_method, str):
        methods = multiprocessing.get_all_start_methods()
        if start_method not in methods:
            raise ValueError(f"start_method must be one of {methods}, got {start_method!r}")
        return multiprocessing.get_context(start_method)
    if hasattr(start_method, "get_start_method") and hasattr(start_method, "Process"):
        return start_method
    raise ValueError(f"start_method must be a name or a multiprocessing context, "
                     f"got {start_method!r}")


def _serialise(func, context, accumulator):
    """cloudpickle ``(func, context, accumulator)``, naming the part that cannot be."""
    try:
        return cloudpickle.dumps((func, context, accumulator))
    except Exception:
        WorkerPool.check_picklable(func, "the per-frame function")
        WorkerPool.check_picklable(context, "the context")
        WorkerPool.check_picklable(accumulator, "the accumulator factory")
        raise


def _short_repr(obj, limit=80):
    text = repr(obj)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _unpicklable_part(obj):
    """Name of the closure variable, global, argument, item or attribute of ``obj`` that cannot
    be pickled (one level deep), or None."""
    parts = []
    if getattr(obj, "__closure__", None):
        names = obj.__code__.co_freevars
        parts += [(f"closure variable {n!r}", c.cell_contents)
                  for n, c in zip(names, obj.__closure__)]
    if hasattr(obj, "__code__") and hasattr(obj, "__globals__"):
        parts += [(f"global {n!r}", obj.__globals__[n]) for n in obj.__code__.co_names
                  if n in obj.__globals__]
    if hasattr(obj, "func") and hasattr(obj, "args") and hasattr(obj, "keywords"):
        parts += [("the partial's function", obj.func)]
        parts += [(f"partial argument {i}", a) for i, a in enumerate(obj.args)]
        parts += [(f"partial keyword {k!r}", v) for k, v in obj.keywords.items()]
    if isinstance(obj, (tuple, list)):
        parts += [(f"item {i}", v) for i, v in enumerate(obj)]
    parts += [(f"attribute {k!r}", v) for k, v in getattr(obj, "__dict__", {}).items()]
    for name, value in parts:
        try:
            cloudpickle.dumps(value)
        except Exception:
            return f"{name} ({_short_repr(value, 60)})"
    return None


def _crash_types():
    """Exceptions of an external executor meaning that a worker died on the task."""
    types = [BrokenExecutor]
    if "distributed" in sys.modules:
        from distributed import KilledWorker
        types.append(KilledWorker)
    return tuple(types)


def _death_note(exitcodes):
    """Describe how workers died from their exit codes (the pool's own SIGTERMs left out)."""
    notes = []
    for code in exitcodes:
        if code is None or code == -signal.SIGTERM or code in notes:
            continue
        notes.append(code)
    if not notes:
        return "a process of the pool was terminated abruptly"
    words = []
    for code in notes:
        if code < 0:
            try:
                words.append(f"killed by {signal.Signals(-code).name}")
            except ValueError:
                words.append(f"killed by signal {-code}")
        else:
            words.append(f"exit code {code}")
    return "; ".join(words)


def _merge(total, part):
    for name, seconds in part.items():
        total[name] = total.get(name, 0.0) + seconds


def merge_accumulators(total, part):
    """``total`` with ``part`` merged in (either may be None, e.g. a chunk with no frames)."""
    if part is None:
        return total
    if total is None:
        return part
    total.merge(part)
    return total


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_loaded = {}  # in a worker: the payload of the current map, by token


def _run_serialised(payload, token, items):
    """Worker side of :meth:`WorkerPool.map`: load the payload once per map, run, serialise."""
    if token not in _loaded:
        _loaded.clear()
        _loaded[token] = cloudpickle.loads(payload)
    func, context, accumulator = _loaded[token]
    return cloudpickle.dumps(_run_chunk(func, items, context, accumulator))


def _probe():
    return os.getpid()


def _worker_init(parent_pid):
    """Tie the worker's life to its parent; keep it single-threaded (BLAS, OpenMP): the pool is
    the parallelism."""
    _die_with_parent(parent_pid)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    threadpool_limits(1)


def _die_with_parent(parent_pid):
    """Make this worker end when the process that made the pool (``parent_pid``) does.

    When that process is the worker's parent (``fork``, ``spawn``) on Linux:
    ``prctl(PR_SET_PDEATHSIG, SIGKILL)``. Otherwise (the ``forkserver`` start method, whose
    server lives as long as any worker; other POSIX systems): a daemon thread that exits the
    process within a second of ``parent_pid`` ending. In all cases: exit now if it already
    ended while this worker was starting.
    """
    if os.name != "posix":
        return
    armed = False
    if sys.platform.startswith("linux") and os.getppid() == parent_pid:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if not _alive(parent_pid):
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                         name="opticam-like-parent-watch").start()


def _watch_parent(parent_pid, interval=1.0):
    while _alive(parent_pid):
        time.sleep(interval)
    os._exit(1)


def _alive(pid):
    """True while process ``pid`` runs (POSIX: ``kill(pid, 0)`` sends nothing; on Linux a
    zombie, dead but not yet reaped, counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return True
