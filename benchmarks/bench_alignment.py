"""Benchmark of detection and alignment: ours against photutils, sep and astroalign.

Run ``python benchmarks/bench_alignment.py`` from the repository root; it prints Markdown
tables. ``run()`` returns the rows for other scripts.

Detection: a synthetic frame (``common.synthetic_frame``: 200 Gaussian stars of FWHM 3 px on a
sloped sky) with the sky subtracted, 5 sigma, 5 connected pixels, timed with

* ``DefaultFinder`` without and with the FWHM = 3 px filter;
* photutils ``detect_sources`` + ``SourceCatalog`` (centroid, flux, peak, area and shape
  columns computed, as our table has);
* photutils ``DAOStarFinder`` (FWHM = 3 px);
* ``sep.extract`` (its default 3x3 filter and deblending).

Alignment: the star lists of two such frames shifted by (12.3, -7.6) px, timed with
``find_transform`` (auto and translation), ``astroalign.find_transform`` on the point lists and
on the images (it runs sep detection inside, the way opticam uses it), and
``warp_to_reference`` of the 512 x 512 frame.
"""

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import format_table, median_time, synthetic_frame  # noqa: E402
from opticam_like.alignment import Transform, find_transform, warp_to_reference  # noqa: E402
from opticam_like.detection import DefaultFinder  # noqa: E402

SHIFT = (12.3, -7.6)


def _sky_subtracted(size, seed=0):
    """Synthetic frame minus its (known-shape) sky fitted as a plane, and its rms."""
    image, xy = synthetic_frame(size, n_stars=200 * (size // 512) ** 2, seed=seed)
    yy, xx = np.mgrid[0:size, 0:size]
    sky = 1000.0 * (1 + 0.2 * xx / size + 0.1 * yy / size)
    return (image - sky).astype(np.float32), float(np.sqrt(1000.0)), xy


def _detectors(rms):
    """Name -> callable(data) returning something with a length (the sources)."""
    import sep
    from photutils.detection import DAOStarFinder
    from photutils.segmentation import SourceCatalog, detect_sources

    columns = ["x_centroid", "y_centroid", "segment_flux", "max_value", "area",
               "semimajor_axis", "semiminor_axis", "orientation"]

    def photutils_segm(data):
        segm = detect_sources(data, 5.0 * rms, n_pixels=5)
        return SourceCatalog(data, segm).to_table(columns=columns)

    return {
        "ours DefaultFinder": DefaultFinder(threshold=5.0, npixels=5),
        "ours DefaultFinder(fwhm=3)": DefaultFinder(threshold=5.0, npixels=5, fwhm=3.0),
        "photutils detect_sources+SourceCatalog": photutils_segm,
        "photutils DAOStarFinder": DAOStarFinder(5.0 * rms, 3.0),
        "sep.extract": lambda data: sep.extract(data, 5.0, err=rms, minarea=5),
    }


def detection_rows(sizes=(512, 2048), repeats=7):
    """Rows ``(size, method, n_sources, ms)`` of the detection benchmark."""
    rows = []
    for size in sizes:
        data, rms, _ = _sky_subtracted(size)
        for name, detect in _detectors(rms).items():
            call = (lambda d: detect(d, rms)) if isinstance(detect, DefaultFinder) else detect
            n = len(call(data))
            reps = repeats if size <= 512 else max(3, repeats // 2)
            rows.append((f"{size}^2", name, n, 1e3 * median_time(call, data, repeats=reps)))
    return rows


def alignment_rows(size=512, repeats=7):
    """Rows ``(method, n_matches, dx, dy, ms)`` of the transform-estimation benchmark."""
    import astroalign

    ref_image, _ = synthetic_frame(size, seed=1)
    frame_image = ndimage.shift(ref_image, SHIFT[::-1], order=1, mode="nearest")
    rms = float(np.sqrt(1000.0))
    finder = DefaultFinder(threshold=5.0, npixels=5)
    lists = []
    for image in (ref_image, frame_image):
        table = finder(image - np.median(image), rms)
        lists.append(np.column_stack([table["x"], table["y"]]))
    ref_xy, frame_xy = lists

    def aa_points():
        return astroalign.find_transform(ref_xy, frame_xy)[0]

    def aa_images():
        return astroalign.find_transform(ref_image, frame_image)[0]

    rows = []
    for name, call in [
        ("ours find_transform (auto)", lambda: find_transform(frame_xy, ref_xy)),
        ("ours find_transform (translation)",
         lambda: find_transform(frame_xy, ref_xy, method="translation")),
        ("astroalign.find_transform (point lists)", aa_points),
        ("astroalign.find_transform (images)", aa_images),
    ]:
        result = call()
        matrix = result.matrix if isinstance(result, Transform) else result.params
        n = result.n_matches if isinstance(result, Transform) else "-"
        rows.append((name, n, float(matrix[0, 2]), float(matrix[1, 2]),
                     1e3 * median_time(call, repeats=repeats)))

    sub_pixel = Transform.from_translation(*SHIFT)
    whole = Transform.from_translation(12, -8)
    for name, t in [("warp_to_reference (sub-pixel shift, order 1)", sub_pixel),
                    ("warp_to_reference (whole-pixel shift: slice)", whole)]:
        rows.append((name, "-", t.dx, t.dy, 1e3 * median_time(
            warp_to_reference, frame_image, t, ref_image.shape, repeats=repeats)))
    return rows


def run(repeats=7):
    """Both benchmarks.

    Returns
    -------
    dict
        ``"detection"``: rows ``(size, method, n_sources, ms)``;
        ``"alignment"``: rows ``(method, n_matches, dx, dy, ms)`` (true shift (12.3, -7.6)).
    """
    return {"detection": detection_rows(repeats=repeats),
            "alignment": alignment_rows(repeats=repeats)}


def main():
    results = run()
    print("## Detection (5 sigma, 5 px; median ms)\n")
    print(format_table(results["detection"], ["frame", "method", "sources", "ms"]))
    print(f"\n## Transform estimation (512^2 frames, true shift {SHIFT}; median ms)\n")
    print(format_table(results["alignment"], ["method", "matches", "dx", "dy", "ms"]))


if __name__ == "__main__":
    main()
