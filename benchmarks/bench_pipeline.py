"""End-to-end throughput: create_catalogs + one photometry pass on a generated night.

Run ``python benchmarks/bench_pipeline.py`` (default 3 x 300 frames of 512 x 512, 2 workers).
The night is generated once into a temporary folder (not timed, in another process); the
peak memory is that of this process (the Reducer) and of its largest worker.
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table  # noqa: E402

OPTICAM_SECONDS_PER_300 = 60.0
"""opticam: ~300 frames through catalogues plus one photometry pass in ~60 s on 2 workers."""


def _peak_memory_mib():
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return own / 1024, children / 1024


def run(n_images=300, n_workers=2, repeats=3):
    """Time the reduction of a 3-camera night.

    Returns
    -------
    list of tuple
        One row per stage: stage, frames, median seconds, frames/s, ratio to opticam.
    """
    import opticam_like as ol

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        # generated in another process, so that the peak memory below is the reduction's
        subprocess.run([sys.executable, "-c", "import sys, data_generator; "
                        "data_generator.generate_observations(sys.argv[1], n_images=int("
                        "sys.argv[2]), progress=False)", str(data), str(n_images)], check=True)
        n_frames = 3 * n_images
        catalogs, photometry = [], []
        for repeat in range(repeats):
            out = Path(tmp) / f"out{repeat}"
            start = time.perf_counter()
            reducer = ol.Reducer(out, data_directory=data, n_workers=n_workers,
                                 progress=False)
            reducer.create_catalogs()
            middle = time.perf_counter()
            reducer.photometry()
            end = time.perf_counter()
            reducer.close()
            catalogs.append(middle - start)
            photometry.append(end - middle)
    median = sorted(catalogs)[len(catalogs) // 2], sorted(photometry)[len(photometry) // 2]
    total = sum(median)
    opticam_rate = 300 / OPTICAM_SECONDS_PER_300
    own, children = _peak_memory_mib()
    rows = [("scan + create_catalogs", n_frames, median[0], n_frames / median[0], ""),
            ("photometry (1 photometer)", n_frames, median[1], n_frames / median[1], ""),
            ("catalogues + photometry", n_frames, total, n_frames / total,
             f"{n_frames / total / opticam_rate:.0f}x opticam")]
    return rows, (own, children)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-images", type=int, default=300)
    parser.add_argument("--n-workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows, (own, children) = run(args.n_images, args.n_workers, args.repeats)
    print(format_table(rows, ["stage", "frames", "median s", "frames/s", "vs opticam"]))
    print(f"peak memory (max RSS): the reducing process {own:.0f} MiB; largest child process "
          f"(a worker, or the night generator) {children:.0f} MiB")


if __name__ == "__main__":
    main()
