"""One command for the whole benchmark table: ``python benchmarks/run_all.py``.

Each operation is timed against photutils, sep and astroalign in this process on the same data
(medians of repeats; the machine may be shared, so compare ratios), then the end-to-end
throughput of ``create_catalogs`` + ``photometry`` on a generated night of 3 x 300 frames of
512 x 512 with 2 workers. Needs the ``bench`` extra (sep).
"""

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_alignment  # noqa: E402
import bench_background  # noqa: E402
import bench_photometry  # noqa: E402
from common import format_table  # noqa: E402


def machine():
    """A one-line description of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"load average {load}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and a 3 x 100 frame night (a rough look)")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 7
    print(f"Machine: {machine()}\n")
    print("Background (box 64, filter 3, background + rms maps, float32)\n")
    print(format_table(bench_background.run(repeats=repeats * 2), bench_background.HEADERS))
    print("\nForced photometry kernels (exact overlap)\n")
    print(format_table(bench_photometry.run(repeats=repeats), bench_photometry.HEADERS))
    results = bench_alignment.run(repeats=repeats)
    print("\nDetection\n")
    print(format_table(results["detection"], ["frame", "method", "sources", "ms"]))
    print("\nAlignment (star lists shifted by (12.3, -7.6) px)\n")
    print(format_table(results["alignment"], ["method", "matches", "dx", "dy", "ms"]))
    print("\nEnd to end: 3 cameras, 512 x 512, 2 workers (opticam: ~300 frames in ~60 s)\n",
          flush=True)
    # in a fresh process, so that its time and peak memory are its own
    subprocess.run([sys.executable, str(Path(__file__).with_name("bench_pipeline.py")),
                    "--n-images", "100" if args.quick else "300",
                    "--repeats", "1" if args.quick else "3"], check=True)


if __name__ == "__main__":
    main()
