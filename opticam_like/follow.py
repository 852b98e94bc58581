"""Live reduction: follow a night while it is being observed.

:func:`follow` waits until every filter has ``catalog_frames`` frames, builds the catalogues
from those first frames, then, whenever frames are added to the data directory, runs the
reduction again. Every run is resumable (:mod:`opticam_like.cache`) and the catalogue, built
from the same first frames, does not change, so a run computes only the frames that are new
since the last: they are aligned and measured, and the photometry tables are written again
with their rows appended. Every output is written atomically, so stopping the follower
(Ctrl-C) at any moment leaves consistent outputs, and a re-run (follower or not, with the same
``catalog_frames``) completes them.

Each run scans the headers and rewrites the tables and plots, so its time grows with the night
(a few seconds per thousand frames); a frame's pixels are read only while it is new.
"""

import logging
import os
from pathlib import Path
import time

from .errors import ReductionError
from .lock import OutputLock
from .reducer import Reducer

__all__ = ["follow"]

log = logging.getLogger(__name__)

_NOTHING_YET = ("no FITS frames", "none of the")
"""Starts of the scan's messages for a directory without a usable frame (yet)."""


def _listing(directories):
    """Names, sizes and modification times of the files of the data directories (and their
    sub-directories one level down, as OPTICAM's c1, c2, c3)."""
    state = []
    for directory in directories:
        for root, dirs, files in os.walk(directory):
            if Path(root) != Path(directory) and Path(root).parent != Path(directory):
                dirs[:] = []
                continue
            for name in files:
                try:
                    stat = os.stat(os.path.join(root, name))
                except OSError:
                    continue
                state.append((root, name, stat.st_size, stat.st_mtime_ns))
    return sorted(state)


def follow(out_directory, data_directory, catalog_frames=10, poll=1.0, stop=None,
           on_run=None, **options):
    """Reduce a night as its frames arrive, until ``stop()`` is true (or Ctrl-C).

    Parameters
    ----------
    out_directory : str or Path
        Output directory (locked for the follower's whole life).
    data_directory : str or Path
        Where the frames arrive.
    catalog_frames : int
        Frames per filter the catalogues are built from (the follower waits for them).
    poll : float
        Seconds between looks at the data directory.
    stop : callable, optional
        Checked after every look; when it returns True, the follower runs once more if
        frames arrived since its last run, and returns. Default: run until interrupted.
    on_run : callable, optional
        Called with the :class:`~opticam_like.reducer.Reducer` after each run (e.g. to write
        light curves or a report).
    **options
        Further :class:`~opticam_like.reducer.Reducer` arguments (``n_workers``,
        ``instrument``, ``config``...); ``fresh`` applies to the first run only.

    Returns
    -------
    int
        Number of runs.

    Raises
    ------
    ReductionError
        Another run holds the output directory, or a reduction error other than "not enough
        frames yet".
    """
    lock = OutputLock(out_directory)
    runs = 0
    fresh = options.pop("fresh", False)
    try:
        seen = None
        while True:
            stopping = stop is not None and stop()
            listing = _listing([data_directory])
            if listing != seen:
                if _run(out_directory, data_directory, catalog_frames, on_run,
                        dict(options, fresh=fresh and runs == 0)):
                    runs += 1
                    seen = listing
            if stopping:
                return runs
            time.sleep(poll)
    finally:
        lock.release()


def _run(out_directory, data_directory, catalog_frames, on_run, options):
    """One resumable run; False while a filter has fewer than ``catalog_frames`` frames."""
    start = time.perf_counter()
    with Reducer(out_directory, data_directory=data_directory, catalog_frames=catalog_frames,
                 **options) as reducer:
        try:
            groups = reducer.groups
        except ReductionError as exc:
            if not str(exc).startswith(_NOTHING_YET):
                raise
            return False
        if min(len(g) for g in groups.values()) < catalog_frames:
            return False
        reducer.create_catalogs()
        reducer.photometry()
        if on_run is not None:
            on_run(reducer)
        computed = sum(n for (kind, _), (_, n) in reducer.cache.stats.items()
                       if kind == "photometry")
    log.info("follow: %d frames, %d new, reduced in %.1f s",
             sum(len(g) for g in groups.values()), computed, time.perf_counter() - start)
    return True
