"""Benchmark of the global background estimators (issue "Performance", items 1-2).

Times, on float32 star fields, the background + rms maps of
``DefaultBackground`` against photutils ``Background2D`` and ``sep`` (box 64,
filter 3), splits DefaultBackground's time into its steps (box statistics in
the C kernel, meshes, upsampled maps), and measures how far DefaultBackground
is from SExtractor's own maps on the NTT/EMMI reference image
(``../shared/realdata``), which ``SExtractorExactBackground`` reproduces, and
times the NumPy implementation of the box statistics (what an installation
without a C compiler uses) against the C kernel and photutils.

Run ``python benchmarks/bench_background.py`` (from the repository root), or
``python benchmarks/bench_background.py fallback`` for the last case only.
"""

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table, median_time, synthetic_frame  # noqa: E402

from opticam_like.background import (DefaultBackground,  # noqa: E402
                                     SExtractorExactBackground, clipping)

NTT = (Path(__file__).resolve().parents[2] / "shared" / "realdata"
       / "sep_ntt_emmi_sextractor_ref")
HEADERS = ("operation", "size", "ours (ms)", "photutils (ms)", "sep (ms)",
           "ratio vs photutils", "ratio vs sep")
STEP_HEADERS = ("size", "box statistics (ms)", "meshes (ms)", "two maps (ms)",
                "sum of steps (ms)")
FALLBACK_HEADERS = ("size", "C kernel (ms)", "NumPy fallback (ms)", "photutils (ms)",
                    "NumPy / C", "photutils / NumPy")


def _maps(result):
    """Touch both maps (what the pipeline reads)."""
    return result.background, result.background_rms


def _time_frame(size, repeats):
    """Median times (s) of ours, photutils and sep on one frame size."""
    from photutils.background import Background2D

    image, _ = synthetic_frame(size)
    ours = DefaultBackground(box_size=64, filter_size=3)
    t_ours = median_time(lambda: _maps(ours(image)), repeats=repeats)
    t_phot = median_time(lambda: _maps(Background2D(image, 64, filter_size=3)),
                         repeats=max(3, repeats // 4))
    try:
        import sep
    except ImportError:
        t_sep = float("nan")
    else:
        def run_sep():
            bkg = sep.Background(image, bw=64, bh=64, fw=3, fh=3)
            return bkg.back(), bkg.rms()
        t_sep = median_time(run_sep, repeats=repeats)
    return t_ours, t_phot, t_sep


def steps(size, repeats=15):
    """Median times (ms) of DefaultBackground's steps on one frame size.

    Returns
    -------
    tuple
        A row matching `STEP_HEADERS`: box statistics (validation and the C
        kernel), the two meshes (IDW fill, median filter) and the two maps
        (upsampling into new arrays).
    """
    image, _ = synthetic_frame(size)
    estimator = DefaultBackground(box_size=64, filter_size=3)
    t_call = median_time(lambda: estimator(image), repeats=repeats)

    def meshes():
        result = estimator(image)
        return result.background_mesh, result.background_rms_mesh
    t_meshes = median_time(meshes, repeats=repeats) - t_call
    t_maps = median_time(lambda: _maps(estimator(image)), repeats=repeats) - t_call - t_meshes
    return (f"{size}^2", 1e3 * t_call, 1e3 * t_meshes, 1e3 * t_maps,
            1e3 * (t_call + t_meshes + t_maps))


def fallback(sizes=(512, 2048), repeats=3):
    """DefaultBackground's maps with each box-statistics backend, and photutils.

    Parameters
    ----------
    sizes : sequence of int
        Square frame sizes (pixels); box 64, filter 3.
    repeats : int
        Timed calls per measurement (medians).

    Returns
    -------
    list of tuple
        Rows matching `FALLBACK_HEADERS` (NaN for the C kernel when it is not built).
    """
    from photutils.background import Background2D

    estimator = DefaultBackground(box_size=64, filter_size=3)
    rows = []
    for size in sizes:
        image, _ = synthetic_frame(size)
        times = {}
        for backend in ("c", "numpy"):
            if backend not in clipping.BACKENDS:
                times[backend] = float("nan")
                continue
            saved, clipping.BACKEND = clipping.BACKEND, backend
            try:
                times[backend] = median_time(lambda: _maps(estimator(image)), repeats=repeats)
            finally:
                clipping.BACKEND = saved
        t_phot = median_time(lambda: _maps(Background2D(image, 64, filter_size=3)),
                             repeats=repeats)
        rows.append((f"{size}^2", 1e3 * times["c"], 1e3 * times["numpy"], 1e3 * t_phot,
                     f"{times['numpy'] / times['c']:.0f}x", f"{t_phot / times['numpy']:.1f}x"))
    return rows


def ntt_distance():
    """Distance of DefaultBackground's maps to SExtractor's on the NTT image.

    Returns
    -------
    dict or None
        Max and median absolute differences (ADU) of background and rms, and
        the same for SExtractorExactBackground; None without the data or sep.
    """
    if not NTT.is_dir():
        return None
    from astropy.io import fits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image, back, rms = (fits.getdata(NTT / n) for n in ("image.fits", "back.fits",
                                                            "rms.fits"))
    ours = DefaultBackground(64, 3)(image)
    out = {"default_back_max": float(np.abs(ours.background - back).max()),
           "default_back_median": float(np.median(np.abs(ours.background - back))),
           "default_rms_max": float(np.abs(ours.background_rms - rms).max()),
           "default_rms_median": float(np.median(np.abs(ours.background_rms - rms))),
           "global_rms": float(np.median(rms))}
    try:
        exact = SExtractorExactBackground(64, 3)(image)
    except ImportError:
        return out
    out["exact_back_max"] = float(np.abs(exact.background - back).max())
    out["exact_rms_max"] = float(np.abs(exact.background_rms - rms).max())
    return out


def run(sizes=(512, 2048), repeats=15):
    """Time the estimators and return table rows.

    Parameters
    ----------
    sizes : sequence of int
        Square frame sizes (pixels).
    repeats : int
        Timed calls per measurement (medians are reported; photutils gets a
        quarter of them, at least 3).

    Returns
    -------
    list of tuple
        Rows matching `HEADERS`.
    """
    rows = []
    for size in sizes:
        t_ours, t_phot, t_sep = _time_frame(size, repeats)
        rows.append(("DefaultBackground: background + rms maps", f"{size}^2",
                     1e3 * t_ours, 1e3 * t_phot, 1e3 * t_sep,
                     f"{t_phot / t_ours:.1f}x faster", f"{t_sep / t_ours:.2f}x"))
    return rows


def main():
    if sys.argv[1:] == ["fallback"]:
        print(format_table(fallback(), FALLBACK_HEADERS))
        return
    print(format_table(run(), HEADERS))
    print("\nDefaultBackground by step (medians; maps include the page faults of the new arrays):")
    print(format_table([steps(size) for size in (512, 2048)], STEP_HEADERS))
    dist = ntt_distance()
    if dist is None:
        print("\nNTT/EMMI reference image not found: distance to SExtractor not measured.")
        return
    print(f"\nNTT/EMMI 256^2, box 64, filter 3, vs SExtractor back.fits/rms.fits "
          f"(global rms {dist['global_rms']:.2f} ADU):")
    print(f"- DefaultBackground: background max {dist['default_back_max']:.2f} ADU, "
          f"median {dist['default_back_median']:.2f} ADU; rms max "
          f"{dist['default_rms_max']:.2f} ADU, median {dist['default_rms_median']:.2f} ADU")
    if "exact_back_max" in dist:
        print(f"- SExtractorExactBackground: background max {dist['exact_back_max']:.2g} ADU,"
              f" rms max {dist['exact_rms_max']:.2g} ADU")
    print("\nBox statistics without a C compiler (NumPy fallback), background + rms maps:")
    print(format_table(fallback(), FALLBACK_HEADERS))


if __name__ == "__main__":
    main()
