"""Peak memory of the parent process over a night of 10^5 frames, without 10^5 files.

Run ``python benchmarks/bench_memory.py`` (default 10^5 frames of 512 x 512, 2 workers;
``--frames``, ``--shape``, ``--workers`` change them).

A few real frames are generated and reduced once (one process) to record one real result of
each per-frame function. Then a Reducer gets a frame list of ``--frames`` entries (the real
frames first, then copies of their headers under new names, hard links to the real files,
and later times) and runs
``create_catalogs`` and ``photometry`` through its worker pool as usual, with the per-frame
functions replaced: the real frames are processed for real (they make the stack and the
catalogue), every other frame returns a fresh copy of a recorded result (unpickled in the
worker, pickled back to the parent, as a real result travels). So everything the parent keeps
per frame (frame descriptions, results, carried backgrounds, transforms, light-curve tables,
plots) is there at full size; only the reading and measuring of pixels is skipped.

Reports the parent's peak resident memory (``ru_maxrss``) and its peak traced Python/numpy
allocation (:mod:`tracemalloc`) per stage, and what one frame's results weigh.
"""

import argparse
import dataclasses
import os
import pickle
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from astropy.table import Table
from astropy.time import TimeDelta

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table  # noqa: E402

N_REAL = 6
"""Real frames generated and reduced."""


def _rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _record(reducer_module, data, out):
    """Reduce the real frames in this process; return per function the pickled results."""
    import opticam_like as ol

    recorded = {}
    originals = {name: getattr(reducer_module, name)
                 for name in ("detect_frame", "catalog_frame", "photometry_frame")}

    def recorder(name):
        real = originals[name]

        def record(item, *args):
            result = real(item, *args)
            recorded.setdefault(name, {})[item.index] = pickle.dumps(result)
            return result
        return record

    try:
        for name in originals:
            setattr(reducer_module, name, recorder(name))
        with ol.Reducer(out, data_directory=data, n_workers=1, progress=False) as reducer:
            reducer.create_catalogs()
            reducer.photometry()
    finally:
        for name, func in originals.items():
            setattr(reducer_module, name, func)
    return originals, recorded


def _replay(real, recorded):
    """Per-frame function: the real one on the real frames, a recorded result elsewhere."""
    def replay(item, *args):
        if item.index < N_REAL:
            return real(item, *args)
        row = pickle.loads(recorded[item.index % len(recorded)])
        return dataclasses.replace(row, index=item.index)
    return replay


def _synthetic_night(infos, n_frames):
    """``n_frames`` frame headers: the real ones, then renamed, later copies (each name a
    hard link to its real frame, for the steps that look at a sample of the files)."""
    step = infos[1].time - infos[0].time
    out = list(infos)
    for n in range(len(infos), n_frames):
        info = infos[n % len(infos)]
        path = Path(info.path).with_name(f"synthetic_{n:06d}.fits")
        os.link(info.path, path)
        out.append(dataclasses.replace(
            info, path=str(path),
            time=infos[0].time + TimeDelta(n * step.to_value("s"), format="sec")))
    return out


def run(n_frames=100_000, shape=(512, 512), n_workers=2):
    """Reduce a synthetic night of ``n_frames`` frames of one filter; measure the parent.

    Returns
    -------
    rows : list of tuple
        Per stage: stage, seconds, parent peak RSS (MiB), peak traced allocation (MiB).
    sizes : dict
        Pickled bytes of one frame's catalogue-pass and photometry-pass results.
    """
    import opticam_like as ol
    from opticam_like import reducer as reducer_module

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        ol.generate_observations(data, n_images=N_REAL, shape=shape, n_sources=20,
                                 filters=("g",), progress=False)
        originals, recorded = _record(reducer_module, data, Path(tmp) / "real")
        sizes = {name: int(np.median([len(b) for b in rec.values()]))
                 for name, rec in recorded.items()}
        rows = []
        tracemalloc.start()
        start = time.perf_counter()
        try:
            for name, func in originals.items():
                setattr(reducer_module, name, _replay(func, recorded[name]))
            with ol.Reducer(Path(tmp) / "out", data_directory=data, n_workers=n_workers,
                            progress=False) as reducer:
                reducer._groups = {"g": _synthetic_night(reducer.groups["g"], n_frames)}
                rows.append(("frame list", time.perf_counter() - start, _rss_mib(),
                             tracemalloc.get_traced_memory()[1] / 2**20))
                for stage in ("create_catalogs", "photometry"):
                    start = time.perf_counter()
                    getattr(reducer, stage)()
                    rows.append((stage, time.perf_counter() - start, _rss_mib(),
                                 tracemalloc.get_traced_memory()[1] / 2**20))
        finally:
            tracemalloc.stop()
            for name, func in originals.items():
                setattr(reducer_module, name, func)
        flux = np.asarray(Table.read(Path(tmp) / "out" / "lcs" / "g_aperture_1.5fwhm.fits")["flux"])
        if flux.shape[0] != n_frames or not np.isfinite(flux[:, 0]).all():
            raise RuntimeError(f"the light curve has {flux.shape[0]} rows, "
                               f"{np.isfinite(flux[:, 0]).sum()} measured, not {n_frames}")
    return rows, sizes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--shape", type=int, default=512, help="frame side (pixels)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    rows, sizes = run(args.frames, (args.shape, args.shape), args.workers)
    print(f"{args.frames} frames of {args.shape} x {args.shape}, {args.workers} workers; "
          "parent process (cumulative peaks)")
    print(format_table(rows, ["stage", "seconds", "peak RSS (MiB)", "peak traced (MiB)"]))
    print("pickled result per frame (bytes): " + ", ".join(
        f"{name} {size}" for name, size in sizes.items()))


if __name__ == "__main__":
    main()
