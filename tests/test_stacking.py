"""RobustStack: block medians reject what is not on the sky (cosmic rays, trails, defects)."""

import numpy as np
import pytest

from opticam_like.alignment import StackAccumulator, Transform
from opticam_like.catalog import catalog_from_stack
from opticam_like.detection import DefaultFinder
from opticam_like.stacking import RobustStack, StackFactory, default_n_blocks


@pytest.mark.parametrize("n_frames, expected", [(1, 1), (5, 1), (6, 3), (8, 3), (10, 5),
                                                (13, 5), (14, 7), (1000, 7)])
def test_default_n_blocks(n_frames, expected):
    assert default_n_blocks(n_frames) == expected


def _star(shape, x, y, flux, sigma=1.5):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return flux / (2 * np.pi * sigma**2) * np.exp(-((xx - x)**2 + (yy - y)**2) / (2 * sigma**2))


def _night(n_frames=35, shape=(80, 80), drift=12.0, seed=1):
    """Frames of a drifting field with one hot pixel, cosmic rays and a trail."""
    rng = np.random.default_rng(seed)
    stars = [(25.0, 30.0, 4000.0), (50.0, 50.0, 2500.0), (40.0, 20.0, 1500.0)]
    frames, shifts, artefacts = [], [], []
    for i in range(n_frames):
        dx = round(drift * i / (n_frames - 1))
        image = rng.normal(0.0, 3.0, shape)
        for x, y, f in stars:
            image += _star(shape, x + dx, y, f)
        image[60, 70] += 3000.0                     # hot pixel, fixed on the detector
        cx, cy = rng.integers(5, shape[1] - 5), rng.integers(5, shape[0] - 5)
        image[cy, cx] += 5000.0                     # one cosmic ray per frame
        artefacts.append((cx - dx, cy))
        if i == 7:
            image[10, :] += 400.0                   # a satellite trail
        frames.append(image)
        shifts.append(dx)
    return frames, shifts, stars


def _fill(stack, frames, shifts):
    for i, (image, dx) in enumerate(zip(frames, shifts)):
        stack.add_frame(image, Transform.from_translation(dx, 0), index=i)
    return stack


def test_cosmic_rays_trails_and_defects_do_not_survive():
    frames, shifts, stars = _night()
    robust = _fill(RobustStack(frames[0].shape, len(frames)), frames, shifts)
    mean = StackAccumulator(frames[0].shape)
    for image, dx in zip(frames, shifts):
        mean.add_frame(image, Transform.from_translation(dx, 0))
    finder = DefaultFinder(threshold=5.0, npixels=3)
    robust_catalog, _ = catalog_from_stack(robust, finder)
    mean_image = mean.mean
    # the plain mean keeps the trail and the hot pixel trailed by the drift
    assert np.nanmax(mean_image[10, 15:60]) > 8.0
    assert np.nanmax(mean_image[60, 58:70]) > 3000.0 / len(frames) * 0.9
    image = robust.image
    assert np.nanmax(np.abs(image[10, 15:60])) < 3.0
    assert np.nanmax(image[60, 58:70]) < 6.0
    # exactly the three stars, at their positions
    assert len(robust_catalog) == 3
    for x, y, flux in stars:
        d = np.hypot(robust_catalog["x"] - x, robust_catalog["y"] - y)
        assert d.min() < 0.1
    assert robust_catalog.meta["n_stacked"] == len(frames)


def test_merge_of_worker_stacks_equals_one_stack():
    frames, shifts, _ = _night(n_frames=21)
    whole = _fill(RobustStack(frames[0].shape, 21), frames, shifts)
    factory = StackFactory(frames[0].shape, 21)
    parts = [factory(), factory(), factory()]
    for i, (image, dx) in enumerate(zip(frames, shifts)):
        parts[i // 8].add_frame(image, Transform.from_translation(dx, 0), index=i)
    parts[0].merge(parts[1])
    parts[0].merge(parts[2])
    np.testing.assert_allclose(parts[0].image, whole.image, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(parts[0].count, whole.count)
    assert parts[0].n_frames == 21


def test_one_block_is_the_plain_mean():
    frames, shifts, _ = _night(n_frames=4)
    robust = _fill(RobustStack(frames[0].shape, 4), frames, shifts)
    mean = StackAccumulator(frames[0].shape)
    for image, dx in zip(frames, shifts):
        mean.add_frame(image, Transform.from_translation(dx, 0))
    assert robust.n_blocks == 1
    np.testing.assert_allclose(robust.image, mean.mean, equal_nan=True)


def test_two_covering_blocks_take_the_smaller_mean():
    stack = RobustStack((1, 2), n_frames=3, n_blocks=3)
    shift = Transform.from_translation(0, 0)
    stack.add_frame(np.array([[1.0, 2.0]]), shift, index=0)
    stack.add_frame(np.array([[9.0, np.nan]]), shift, index=1)
    assert stack.image.tolist() == [[1.0, 2.0]]


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_blocks"):
        RobustStack((2, 2), n_frames=3, n_blocks=4)
    stack = RobustStack((2, 2), n_frames=3)
    with pytest.raises(ValueError, match="frame index"):
        stack.add_frame(np.zeros((2, 2)), Transform.from_translation(0, 0), index=3)
    with pytest.raises(ValueError, match="different"):
        stack.merge(RobustStack((2, 2), n_frames=4))
