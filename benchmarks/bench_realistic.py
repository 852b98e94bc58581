"""Costs and gains of the real-sky measures on the simulator's realistic preset.

Run ``python benchmarks/bench_realistic.py`` (default 3 x 150 frames of 512 x 512, 2 workers).

* The catalogue pass with the robust stack (median of time-block means) against a plain mean
  of the same frames (``n_blocks=1``), in frames per second (median of ``repeats`` runs).
* The S/N of faint stars' differential light curves with the aperture chosen from the data
  (``photometry(choose_aperture=True)``) against the fixed 1.5 FWHM aperture: median over
  the stars below ``faint`` e- per frame of the ratio of their robust per-frame S/N.
"""

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table  # noqa: E402


def _catalogue_seconds(data, out, n_blocks):
    import opticam_like as ol
    import opticam_like.reducer as reducer_module
    from opticam_like.stacking import StackFactory

    factory = reducer_module.StackFactory
    reducer_module.StackFactory = functools.partial(StackFactory, n_blocks=n_blocks)
    try:
        with ol.Reducer(out, data_directory=data, n_workers=2, progress=False) as reducer:
            reducer._find_defects()          # cached maps: not part of the comparison
            start = time.perf_counter()
            reducer.create_catalogs()
            return time.perf_counter() - start
    finally:
        reducer_module.StackFactory = factory


def _robust_snr(flux, columns, comparisons):
    """Robust per-frame S/N of each of ``columns``' light curves relative to the comparisons."""
    from opticam_like.photometry.aperture_choice import differential_snr
    snrs = []
    for column in columns:
        stars = [column] + [c for c in comparisons if c != column][:5]
        _, per_star = differential_snr(flux[:, stars], np.isfinite(flux[:, stars]))
        snrs.append(per_star[0])
    return np.asarray(snrs)


def run(n_images=150, repeats=3, faint=3000.0):
    import opticam_like as ol
    from astropy.table import Table
    from data_generator import generate_realistic_night

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_realistic_night(tmp, n_images=n_images, n_calibration=3, progress=False)
        data = tmp / "night"
        rows = []
        for label, n_blocks in (("plain mean", 1), ("robust stack", None)):
            seconds = sorted(_catalogue_seconds(data, tmp / f"{label}{r}", n_blocks)
                             for r in range(repeats))
            median = seconds[len(seconds) // 2]
            rows.append((f"catalogue pass, {label}", 3 * n_images, f"{median:.1f}",
                         f"{3 * n_images / median:.1f}"))
        out = tmp / f"robust stack{repeats - 1}"
        with ol.Reducer(out, data_directory=data, n_workers=2, progress=False) as reducer:
            reducer.photometry(ol.AperturePhotometer())
            reducer.photometry(choose_aperture=True)
        gains = []
        for band in "gri":
            fixed = Table.read(out / "lcs" / f"{band}_aperture_1.5fwhm.fits")
            best = Table.read(out / "lcs" / f"{band}_aperture_best.fits")
            catalog = Table.read(out / "cat" / f"{band}_catalog.ecsv")
            clean = np.flatnonzero((np.asarray(fixed["flags"]) == 0).mean(axis=0) > 0.9)
            comparisons = [int(c) for c in clean[:8]]
            flux = np.asarray(catalog["flux"], dtype=float)
            stars = [int(c) for c in clean if flux[c] < faint]
            ratio = (_robust_snr(np.asarray(best["flux"]), stars, comparisons) /
                     _robust_snr(np.asarray(fixed["flux"]), stars, comparisons))
            scale = best.meta["PHOTPARS"]
            gains.append((band, len(stars), float(np.nanmedian(ratio)), scale))
    return rows, gains


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows, gains = run(args.n_images, args.repeats)
    print(format_table(rows, ("stage", "frames", "median s", "frames/s")))
    for band, n, gain, scale in gains:
        print(f"{band}: chosen aperture {scale}; faint-star S/N gain over 1.5 FWHM "
              f"{gain:.3f} (median of {n} stars)")


if __name__ == "__main__":
    main()
