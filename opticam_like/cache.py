"""Resume: the per-frame results of each pass, kept in the output directory.

A reduction killed half-way (``kill -9``, a power cut, a full disk) loses nothing it finished:
every frame's result of the catalogue and photometry passes is written by the worker that
computed it to ``out/cache/{pass}/{filter}/{key}.pkl`` (cloudpickle, written to a temporary
name and renamed, so a file is whole or absent). A re-run computes only the frames without a
file and gives outputs identical to an uninterrupted run.

The key of a frame's result is a BLAKE2b digest of

* the frame's content: its size, modification time and a hash of its first and last MiB
  (:func:`frame_key`);
* what the frame is told by the pass (:class:`~opticam_like.stages.FrameItem`: its header as
  scanned, its position in the night, and for the photometry pass its transform, FWHM, flags,
  cosmic rays, background and trails from the catalogue pass);
* everything the pass's frames share (:class:`~opticam_like.stages.PassContext`: instrument,
  calibration masters and defect maps, background estimator, finder, alignment, reference
  stars; for the photometry pass also the catalogue and the photometers with their
  parameters), the per-frame function and the package's code (a digest of its source files,
  :func:`code_digest`; see :func:`fingerprint`).

So a changed frame or setting gives new keys and is recomputed: nothing stale is reused, and a
setting recomputes only the passes whose inputs it changes (a photometer's aperture recomputes
the photometry pass, not the catalogue pass). A user callable imported from a module (a custom
background or finder) is known by its name and attributes, not its code: after editing its code,
run with ``fresh=True`` (``--fresh``). Results no longer keyed by the current run are
removed at the end of each pass. A failed frame is never cached (it is tried again).

The catalogue pass also sums the aligned frames into the stack
(:class:`~opticam_like.stacking.RobustStack`). The stack of a finished pass is cached whole
(image and coverage, :class:`FinishedStack`); when a pass resumes, the frames whose rows come
from the cache are added to the stack again from their cached transform, background, cosmic
rays and trails (:func:`restack_frame`: read, calibrate, add; no detection, trail search or
alignment), so the stack is that of an uninterrupted run with memory bounded as before.
"""

import copy
from dataclasses import dataclass, fields, is_dataclass, replace
import functools
import hashlib
import logging
import math
import os
from pathlib import Path
import struct

import cloudpickle
import numpy as np

from ._version import __version__
from .outputs import atomic_path
from .parallel import FrameFailure, merge_accumulators
from .stages import prepare_frame, stack_frame

__all__ = ["CACHE_DIRECTORY", "ResultCache", "FinishedStack", "code_digest", "frame_key",
           "fingerprint", "restack_frame"]

log = logging.getLogger(__name__)

CACHE_DIRECTORY = "cache"
"""Folder of the output directory holding the per-frame results (``cache/{pass}/{filter}``)."""

_CONTENT_KEYS = {}  # file status -> frame_key, for this process

HASHED_BYTES = 1 << 20
"""Bytes hashed at each end of a frame's file for its content key."""


def frame_key(path):
    """Content key of a frame's file: its size, mtime and a hash of its first and last MiB.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    str
        32 hexadecimal digits (BLAKE2b, 16 bytes).

    Raises
    ------
    OSError
        The file cannot be read.
    """
    stat = os.stat(path)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(struct.pack("<qq", stat.st_size, stat.st_mtime_ns))
    with open(path, "rb") as handle:
        digest.update(handle.read(HASHED_BYTES))
        if stat.st_size > HASHED_BYTES:
            handle.seek(max(HASHED_BYTES, stat.st_size - HASHED_BYTES))
            digest.update(handle.read())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def code_digest():
    """Digest of the source files of ``opticam_like`` (and the version): results computed by
    other code are never reused.

    Returns
    -------
    str
        32 hexadecimal digits (BLAKE2b, 16 bytes).
    """
    digest = hashlib.blake2b(__version__.encode(), digest_size=16)
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def fingerprint(obj):
    """Digest of an object's value, the same in every process and session.

    Arrays by dtype, shape and bytes; floats exactly; dicts and sets in sorted order;
    dataclasses and plain objects by class and attributes; importable functions and classes
    by module and name; lambdas, closures and ``__main__`` objects by their cloudpickle bytes.
    Values of ``functools.cached_property`` attributes are left out (computed on demand, they
    add nothing to the value). Anything whose value cannot be told (no attributes, not
    picklable) digests its ``repr``, which at worst makes the cache miss; it never makes two
    different values equal.

    Parameters
    ----------
    obj : object

    Returns
    -------
    str
        32 hexadecimal digits (BLAKE2b, 16 bytes).
    """
    digest = hashlib.blake2b(digest_size=16)
    _feed(digest, obj, set())
    return digest.hexdigest()


def _feed(digest, obj, active):
    def tag(text):
        digest.update(text.encode() + b"\0")

    if obj is None or isinstance(obj, (bool, int, str)):
        tag(f"{type(obj).__name__}:{obj!r}")
    elif isinstance(obj, float):
        tag(f"float:{obj.hex() if math.isfinite(obj) else obj!r}")
    elif isinstance(obj, bytes):
        tag(f"bytes:{len(obj)}")
        digest.update(obj)
    elif isinstance(obj, (np.ndarray, np.generic)):
        array = np.ascontiguousarray(obj)
        if array.dtype.hasobject:
            tag(f"objects:{array.shape}")
            for value in array.ravel():
                _feed(digest, value, active)
        else:
            tag(f"array:{array.dtype.str}:{array.shape}")
            digest.update(array.tobytes())
    elif isinstance(obj, Path):
        tag(f"path:{obj}")
    elif id(obj) in active:
        tag("cycle")
    elif isinstance(obj, (list, tuple)):
        active.add(id(obj))
        tag(f"{type(obj).__name__}:{len(obj)}")
        for value in obj:
            _feed(digest, value, active)
        active.discard(id(obj))
    elif isinstance(obj, dict):
        active.add(id(obj))
        tag(f"dict:{len(obj)}")
        for key in sorted(obj, key=fingerprint):
            _feed(digest, key, active)
            _feed(digest, obj[key], active)
        active.discard(id(obj))
    elif isinstance(obj, (set, frozenset)):
        tag(f"set:{sorted(fingerprint(v) for v in obj)}")
    elif callable(obj) and hasattr(obj, "__func__") and hasattr(obj, "__self__"):
        _feed(digest, ("method", obj.__func__, obj.__self__), active)
    elif callable(obj) and not _has_state(obj):
        tag(f"callable:{_callable_name(obj)}")
    else:
        active.add(id(obj))
        _feed_object(digest, obj, active, tag)
        active.discard(id(obj))


def _has_state(obj):
    if isinstance(obj, type):
        return False
    return is_dataclass(obj) or bool(getattr(obj, "__dict__", None))


def _callable_name(obj):
    """Module and qualified name of an importable function or class; else its pickle's
    digest (lambdas, closures, ``__main__``)."""
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None)
    importable = (module not in (None, "__main__") and name is not None and "<" not in name
                  and not getattr(obj, "__closure__", None))
    if importable:
        return f"{module}.{name}"
    try:
        return hashlib.blake2b(cloudpickle.dumps(obj), digest_size=16).hexdigest()
    except Exception:
        return repr(obj)


def _feed_object(digest, obj, active, tag):
    cls = type(obj)
    tag(f"object:{cls.__module__}.{cls.__qualname__}")
    if hasattr(obj, "jd1") and hasattr(obj, "scale"):  # astropy Time: exact two-double value
        _feed(digest, (obj.scale, np.asarray(obj.jd1), np.asarray(obj.jd2)), active)
        return
    if is_dataclass(obj):
        state = {f.name: getattr(obj, f.name) for f in fields(obj)}
    else:
        lazy = {name for klass in cls.__mro__ for name, value in vars(klass).items()
                if isinstance(value, functools.cached_property)}
        state = {k: v for k, v in getattr(obj, "__dict__", {}).items() if k not in lazy}
        for name in getattr(cls, "__slots__", ()):
            if hasattr(obj, name):
                state[name] = getattr(obj, name)
    if state:
        _feed(digest, state, active)
        return
    try:
        digest.update(cloudpickle.dumps(obj))
    except Exception:
        tag(repr(obj))


MASTER_FIELDS = ("bias", "dark", "flat", "defects")
"""Fields of a CalibrationSet naming files (by ``(camera, binning)``)."""


def _by_content(context):
    """The context with its calibration's master and defect-map files named by content
    (:func:`frame_key`) instead of path: a master rebuilt at the same path is a new master,
    and a moved output directory keeps its cache."""
    calibration = getattr(context, "calibration", None)
    if calibration is None:
        return context
    files = {name: {key: frame_key(path) for key, path in getattr(calibration, name).items()}
             for name in MASTER_FIELDS if isinstance(getattr(calibration, name, None), dict)}
    return replace(context, calibration=replace(calibration, **files))


@dataclass(frozen=True)
class FinishedStack:
    """The result of a catalogue pass's stack: what the catalogue is built from.

    Attributes
    ----------
    image : ndarray, shape (ny, nx)
        :attr:`RobustStack.image <opticam_like.stacking.RobustStack.image>` (e- per frame).
    count : ndarray of int32, shape (ny, nx)
        Frames behind each pixel.
    n_frames : int
        Frames stacked.
    n_blocks : int
        Time blocks of the robust combination.
    """

    image: np.ndarray
    count: np.ndarray
    n_frames: int
    n_blocks: int

    @classmethod
    def of(cls, stack, factory):
        """Finish the stack made by ``factory`` (a RobustStack, or None when no frame was
        stacked)."""
        if stack is None:
            stack = factory()
        return cls(stack.image, stack.count, stack.n_frames, stack.n_blocks)


@dataclass(frozen=True)
class _Keyed:
    """A frame item with the key of its cached result (and, to restack, its cached row)."""

    path: str
    item: object
    key: str
    row: object = None


class _Discard:
    """An accumulator that keeps nothing (frames beyond the stacked ones)."""

    def add_frame(self, *args, **kwargs):
        """Ignore the frame."""


class _CachingFunction:
    """``func`` that also writes each result (not failures) to ``directory/{key}.pkl``.

    A result that cannot be written (a full disk) is still returned: the frame is only not
    resumable; the run's next output stops it with the error."""

    def __init__(self, func, directory, stack_frames=None):
        self.func = func
        self.directory = directory
        self.stack_frames = stack_frames

    def __call__(self, keyed, context, timer, *accumulator):
        if accumulator and self.stack_frames is not None \
                and keyed.item.index >= self.stack_frames:
            accumulator = (_Discard(),)
        result = self.func(keyed.item, context, timer, *accumulator)
        timer.step("cache")
        try:
            _write_atomic(Path(self.directory) / f"{keyed.key}.pkl", cloudpickle.dumps(result))
        except OSError:
            pass
        return result


def restack_frame(keyed, ctx, timer, stack):
    """Add a frame whose catalogue row came from the cache to the stack, as
    :func:`~opticam_like.stages.catalog_frame` did: read, calibrate (with the row's cosmic
    rays), subtract the row's background, leave out flagged and trail pixels, add with the
    row's transform. A frame that was not aligned adds nothing."""
    row = keyed.row
    if row.transform is None:
        return None
    # a copy: the maps the background builds on access stay out of the cached row
    item = replace(keyed.item, cosmic_rays=row.cosmic_rays,
                   background=copy.copy(row.background))
    calibrated, _, data = prepare_frame(item, ctx, timer)
    timer.step("stack")
    stack_frame(stack, calibrated, data, row.transform, row.trails, ctx, item.index)
    return None


def _write_atomic(path, payload):
    """Write ``payload`` to ``path`` through a temporary file (OSErrors name ``path``)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)


def _read(path):
    """The cached object at ``path``, or None when absent or unreadable."""
    try:
        return cloudpickle.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged file is recomputed, never trusted
        log.warning("cache file %s is unreadable (%s): recomputing", path, exc)
        return None


class ResultCache:
    """Per-frame results of the Reducer's passes, kept under ``out/cache``.

    Parameters
    ----------
    directory : str or Path
        The cache folder (``out/cache``).
    fresh : bool
        Ignore what is cached (every frame is computed and its result written again).

    Attributes
    ----------
    stats : dict of (str, str) to tuple of int
        Per ``(pass, filter)``: frames taken from the cache and frames computed by the last
        :meth:`map`.
    """

    def __init__(self, directory, fresh=False):
        self.directory = Path(directory)
        self.fresh = bool(fresh)
        self.stats = {}

    @staticmethod
    def _frame_key(path):
        """:func:`frame_key`, hashed once per process for a file whose status (inode, size,
        modification and change times) is unchanged (a follower re-runs every few seconds)."""
        stat = os.stat(path)
        status = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        if status not in _CONTENT_KEYS:
            _CONTENT_KEYS[status] = frame_key(path)
        return _CONTENT_KEYS[status]

    def map(self, pool, pass_name, group, func, items, context, desc=None, stack=None,
            stack_frames=None):
        """``pool.map(func, items, context)`` computing only the items without a cached result.

        Parameters
        ----------
        pool : WorkerPool
        pass_name : str
            ``'catalogue'`` or ``'photometry'`` (the cache's sub-folder).
        group : str
            The filter (sub-sub-folder).
        func : callable
            The per-frame function (:mod:`opticam_like.stages`).
        items : list of FrameItem
        context : PassContext
        desc : str, optional
            Progress-bar label.
        stack : StackFactory, optional
            Accumulator factory of the catalogue pass (``func`` then takes it as a fourth
            argument); the pass's stack is then returned as a :class:`FinishedStack`.
        stack_frames : int, optional
            Stack only the items of ``index < stack_frames`` (the factory must be made for
            that many frames); default all.

        Returns
        -------
        results : list
            One result or FrameFailure per item, in order.
        timings : dict
            Seconds per step of the frames computed (and restacked) now.
        stack : FinishedStack or None
            With ``stack``: the stack of every aligned frame.

        Raises
        ------
        OSError
            The cache folder cannot be written (the message names it).
        """
        folder = self.directory / pass_name / group
        folder.mkdir(parents=True, exist_ok=True)
        base = fingerprint((code_digest(), pass_name, func, _by_content(context)))
        keys = [fingerprint((base, self._frame_key(i.path), i)) for i in items]
        results = [None if self.fresh else _read(folder / f"{k}.pkl") for k in keys]
        missing = [n for n, r in enumerate(results) if r is None]
        self.stats[(pass_name, group)] = (len(items) - len(missing), len(missing))
        log.info("%s pass %s: %d of %d frames from the cache, %d to compute", pass_name, group,
                 len(items) - len(missing), len(items), len(missing))
        stacked = [k for i, k in zip(items, keys)
                   if stack_frames is None or i.index < stack_frames]
        stack_file = folder / f"stack_{fingerprint((base, stacked))}.pkl"
        finished = None if stack is None or missing or self.fresh else _read(stack_file)
        todo = [_Keyed(items[n].path, items[n], keys[n]) for n in missing]
        computed, timings, partial = pool.map(_CachingFunction(func, folder, stack_frames),
                                              todo, context, desc=desc, accumulator=stack)
        for n, result in zip(missing, computed):
            results[n] = result
        if stack is not None and finished is None:
            computed_now = set(missing)
            again = [_Keyed(items[n].path, items[n], keys[n], results[n])
                     for n in range(len(items)) if n not in computed_now
                     and not isinstance(results[n], FrameFailure)
                     and (stack_frames is None or items[n].index < stack_frames)]
            if again:
                _, restack_timings, restacked = pool.map(restack_frame, again, context,
                                                         desc=f"{desc} (restack)",
                                                         accumulator=stack)
                partial = merge_accumulators(partial, restacked)
                timings = {k: timings.get(k, 0.0) + restack_timings.get(k, 0.0)
                           for k in set(timings) | set(restack_timings)}
            finished = FinishedStack.of(partial, stack)
            _write_atomic(stack_file, cloudpickle.dumps(finished))
        self._prune(folder, set(keys) | ({stack_file.stem[len("stack_"):]} if stack else set()))
        return results, timings, finished

    @staticmethod
    def _prune(folder, current):
        """Remove results not keyed by the current run (and leftovers of killed writes)."""
        for path in folder.iterdir():
            name = path.stem.removeprefix("stack_")
            if path.suffix != ".pkl" or name not in current:
                path.unlink(missing_ok=True)


