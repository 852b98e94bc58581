"""Trail finder: recovery of injected trails, and no false trails on star fields."""

import math

import numpy as np
import pytest

from opticam_like.detection import DefaultFinder
from opticam_like.trails import Trail, find_trails, trail_mask

SHAPE = (256, 256)
FWHM = 3.5
RMS = 10.0


def _moffat_star(image, x, y, flux, fwhm=FWHM, beta=2.5):
    alpha = fwhm / (2 * math.sqrt(2 ** (1 / beta) - 1))
    yy, xx = np.indices(image.shape)
    r2 = (xx - x) ** 2 + (yy - y) ** 2
    profile = (1 + r2 / alpha**2) ** -beta
    image += flux * profile / profile.sum()


def _add_trail(image, x0, y0, x1, y1, peak, fwhm=FWHM):
    yy, xx = np.indices(image.shape, dtype=float)
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / (dx * dx + dy * dy), 0, 1)
    d = np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy))
    image += peak * np.exp(-0.5 * (d / (fwhm / 2.3548)) ** 2)


def _field(seed, n_stars=40):
    rng = np.random.default_rng(seed)
    image = rng.normal(0.0, RMS, SHAPE)
    for _ in range(n_stars):
        _moffat_star(image, *rng.uniform(5, 250, 2), 10 ** rng.uniform(3, 5.5))
    for _ in range(5):                                   # cosmic rays
        image[tuple(rng.integers(0, 256, 2))] += rng.uniform(500, 5000)
    return image


def _sources(image):
    return DefaultFinder(threshold=5.0, npixels=5)(image, RMS)


@pytest.mark.parametrize("seed", range(12))
def test_no_false_trails_on_star_fields(seed):
    image = _field(seed)
    assert find_trails(image, RMS, sources=_sources(image), fwhm=FWHM) == []


@pytest.mark.parametrize("peak_sigma, line", [
    (3.0, (-5.0, 30.0, 260.0, 200.0)),        # S/N 3 per pixel across the frame
    (1.0, (40.0, -5.0, 120.0, 260.0)),        # S/N 1 per pixel, steep
    (10.0, (-5.0, 128.0, 130.0, 128.0)),      # bright, horizontal, half the frame
])
def test_trails_are_found_and_masked(peak_sigma, line):
    image = _field(1)
    _add_trail(image, *line, peak_sigma * RMS)
    trails = find_trails(image, RMS, sources=_sources(image), fwhm=FWHM)
    assert len(trails) == 1
    trail = trails[0]
    assert trail.significance > 8
    mask = trail_mask(SHAPE, trails)
    truth = np.zeros(SHAPE)
    _add_trail(truth, *line, 1.0)
    inside = (truth > 0.05)
    inside[[0, -1], :] = inside[:, [0, -1]] = False
    # the mask covers at least 97% of the trail's pixels above 5% of its peak
    assert mask[inside].mean() > 0.97
    # and is a thin strip (not a blanket over the frame)
    assert mask.mean() < 3 * inside.mean() + 0.01
    # the surface brightness is measured to 20%
    assert trail.surface_brightness == pytest.approx(peak_sigma * RMS * 0.85, rel=0.25)


def test_two_trails_and_compact_form():
    image = _field(2)
    _add_trail(image, -5, 20, 260, 60, 4 * RMS)
    _add_trail(image, 200, -5, 60, 260, 4 * RMS)
    trails = find_trails(image, RMS, sources=_sources(image), fwhm=FWHM)
    assert len(trails) == 2
    packed = [t.as_tuple() for t in trails]
    np.testing.assert_array_equal(trail_mask(SHAPE, packed), trail_mask(SHAPE, trails))
    assert isinstance(trails[0], Trail)


def test_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        find_trails(np.zeros(5), RMS)
    with pytest.raises(ValueError, match="rms"):
        find_trails(np.zeros((5, 5)), 0.0)


def test_hot_and_dead_columns_are_not_trails():
    image = _field(4)
    image[:, 77] += 6 * RMS                      # a hot column
    image[30:200, 150] += 15 * RMS                # a partial hot column
    image[140, :] -= 8 * RMS                      # a low row
    assert find_trails(image, RMS, sources=_sources(image), fwhm=FWHM) == []
    _add_trail(image, -5, 60, 260, 90, 3 * RMS)   # a real trail is still found beside them
    trails = find_trails(image, RMS, sources=_sources(image), fwhm=FWHM)
    assert len(trails) == 1 and abs(trails[0].y0 - 60.6) < 1.5
