"""Per-frame stage helpers: the background contract, the stacking shortcut."""

import numpy as np
import pytest
from photutils.background import Background2D

from opticam_like.alignment import Transform
from opticam_like.background import DefaultBackground
from opticam_like.stages import apply_background, stacking_transform


def test_background_contract():
    rng = np.random.default_rng(0)
    data = rng.normal(100, 5, (64, 64)).astype(np.float32)
    mask = np.zeros(data.shape, bool)
    mask[10:20, 10:20] = True
    data[mask] = 1e6
    seen = {}

    def no_mask_argument(image):
        seen["nan"] = np.isnan(image[15, 15])
        return Background2D(image, 16)

    result = apply_background(no_mask_argument, data, mask)
    assert seen["nan"] and abs(result.background_median - 100) < 1
    assert abs(apply_background(DefaultBackground(box_size=16), data, mask).background_median
               - 100) < 1

    class Incomplete:
        background = np.zeros((64, 64))

    with pytest.raises(TypeError, match="without background_rms"):
        apply_background(lambda image, mask=None: Incomplete(), data, mask)

    class WrongShape:
        background = np.zeros((8, 8))
        background_rms = background_median = background_rms_median = 0.0

    with pytest.raises(TypeError, match="background map of shape"):
        apply_background(lambda image, mask=None: WrongShape(), data, mask)


def test_stacking_transform_rounds_pure_shifts_only():
    shift = stacking_transform(Transform.from_translation(3.4, -7.6), (512, 512))
    assert shift.is_integer_shift and (shift.dx, shift.dy) == (3, -8)
    angle = np.radians(0.2)  # 1.8 px at the far edge of 512 px
    rotated = Transform(np.array([[np.cos(angle), -np.sin(angle), 2.0],
                                  [np.sin(angle), np.cos(angle), 1.0], [0, 0, 1]]))
    assert stacking_transform(rotated, (512, 512)) is rotated


def test_photometry_table_carries_the_fitted_psf():
    from astropy.time import Time

    from opticam_like.photometry.moffat import MoffatProfile
    from opticam_like.photometry.tables import photometry_table
    from opticam_like.stages import PhotometryRow

    psf = MoffatProfile(3.0, 2.7, 0.19, 0.4)
    result = {"flux": np.ones(2), "flux_err": np.ones(2), "background": np.zeros(2),
              "area": np.ones(2), "flags": np.zeros(2, np.int32), "meta": {"radius": 4.5}}
    row = PhotometryRow(0, np.zeros(2), np.zeros(2), psf.fwhm, 1.0, np.zeros(2, np.int32),
                        {"ap": result}, psf)
    failed = object()
    table = photometry_table("ap", ["a.fits", "b.fits"], Time([60000.0, 60000.1], format="mjd"),
                             "mjd_utc", [1.0, 1.0], [row, failed], [0, 0], 2)
    assert table["fwhm"][0] == pytest.approx(3.0)
    assert table["fwhm_major"][0] == pytest.approx(3.0 / 0.9)
    assert table["fwhm_minor"][0] == pytest.approx(3.0 * 0.9)
    assert (table["psf_theta"][0], table["psf_beta"][0]) == (0.4, 2.7)
    assert np.isnan(table["psf_beta"][1])
