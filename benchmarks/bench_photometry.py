"""Forced-photometry kernels against photutils and sep: time per source.

Run ``python benchmarks/bench_photometry.py`` (``--quick`` for a smaller run) or import
:func:`run`. Each operation is timed in one process as the median of repeats (the machine is
shared and noisy); the ``max rel diff`` column compares our values with photutils'.

Operations: exact circular sums (r = 5), exact elliptical sums (a = 5, b = 3, theta = 0.5) and
the median (plain and 3-sigma clipped) of a circular annulus (r_in = 9, r_out = 15) at random
positions on 512^2 and 2048^2 float32 star fields. photutils: ``aperture_photometry(
method="exact")`` and ``ApertureStats(...).median``; sep: ``sum_circle``/``sum_ellipse`` with
``subpix=0`` (exact), and no annulus median exists in sep.
"""

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import format_table, median_time, synthetic_frame  # noqa: E402
from opticam_like.photometry.kernels import (  # noqa: E402
    annulus_statistics, circular_aperture_sums, elliptical_aperture_sums)

HEADERS = ("operation", "image", "N", "ours (us/src)", "photutils (us/src)", "sep (us/src)",
           "photutils/ours", "sep/ours", "max rel diff")

DEFAULT_CASES = ((512, 1000), (2048, 10000))


def _photutils():
    from astropy.stats import SigmaClip
    from photutils.aperture import (ApertureStats, CircularAnnulus, CircularAperture,
                                    EllipticalAperture, aperture_photometry)

    def circle(data, xy):
        return aperture_photometry(data, CircularAperture(xy, 5.0),
                                   method="exact")["aperture_sum"].value

    def ellipse(data, xy):
        aperture = EllipticalAperture(xy, 5.0, 3.0, theta=0.5)
        return aperture_photometry(data, aperture, method="exact")["aperture_sum"].value

    def annulus(data, xy):
        return np.asarray(ApertureStats(data, CircularAnnulus(xy, 9.0, 15.0)).median)

    def clipped(data, xy):
        clip = SigmaClip(sigma=3.0, maxiters=10)
        stats = ApertureStats(data, CircularAnnulus(xy, 9.0, 15.0), sigma_clip=clip)
        return np.asarray(stats.median)

    return circle, ellipse, annulus, clipped


def _sep():
    try:
        import sep
    except ImportError:
        return None, None

    def circle(data, x, y):
        return sep.sum_circle(data, x, y, 5.0, subpix=0)[0]

    def ellipse(data, x, y):
        return sep.sum_ellipse(data, x, y, 5.0, 3.0, 0.5, r=1.0, subpix=0)[0]

    return circle, ellipse


def run(cases=DEFAULT_CASES, repeats=5, seed=1):
    """Time the kernels, photutils and sep.

    Parameters
    ----------
    cases : sequence of (int, int)
        ``(image size, number of sources)`` pairs; images are ``size x size`` float32.
    repeats : int
        Timed repeats per operation (the median is reported); photutils' annulus
        statistics, the slowest, get ``max(1, repeats // 2)``.
    seed : int
        Random seed of the frame and positions.

    Returns
    -------
    list of tuple
        One row per (operation, case) in the order of :data:`HEADERS`; times in
        microseconds per source, ratios ``other / ours`` (NaN where sep has no equivalent).
    """
    p_circle, p_ellipse, p_annulus, p_clipped = _photutils()
    s_circle, s_ellipse = _sep()
    rows = []
    rng = np.random.default_rng(seed)
    for size, n in cases:
        data, _ = synthetic_frame(size, n_stars=max(50, size // 4), seed=seed)
        x = rng.uniform(20, size - 20, n)
        y = rng.uniform(20, size - 20, n)
        xy = np.column_stack([x, y])
        operations = (
            ("circular sum r=5",
             lambda: circular_aperture_sums(data, x, y, 5.0).sum,
             lambda: p_circle(data, xy), s_circle and (lambda: s_circle(data, x, y)),
             repeats),
            ("elliptical sum a=5 b=3",
             lambda: elliptical_aperture_sums(data, x, y, 5.0, 3.0, 0.5).sum,
             lambda: p_ellipse(data, xy), s_ellipse and (lambda: s_ellipse(data, x, y)),
             repeats),
            ("annulus median 9-15",
             lambda: annulus_statistics(data, x, y, 9.0, 15.0).value,
             lambda: p_annulus(data, xy), None, max(1, repeats // 2)),
            ("annulus 3-sigma-clipped median 9-15",
             lambda: annulus_statistics(data, x, y, 9.0, 15.0,
                                        statistic="sigma_clipped_median").value,
             lambda: p_clipped(data, xy), None, max(1, repeats // 2)),
        )
        for name, ours, theirs, sep_call, reps in operations:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                diff = float(np.max(np.abs(ours() / theirs() - 1)))
                t_ours = median_time(ours, repeats=repeats) / n * 1e6
                t_phot = median_time(theirs, repeats=reps) / n * 1e6
                t_sep = (median_time(sep_call, repeats=repeats) / n * 1e6 if sep_call
                         else float("nan"))
            rows.append((name, f"{size}^2", n, t_ours, t_phot, t_sep, t_phot / t_ours,
                         t_sep / t_ours, diff))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one small case (512^2, 200 sources), 3 repeats")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.quick:
        rows = run(cases=((512, 200),), repeats=3)
    else:
        rows = run(repeats=args.repeats)
    print(format_table(rows, HEADERS))


if __name__ == "__main__":
    main()
