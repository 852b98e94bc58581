"""The catalogue stack: aligned frames combined so that only what stays on the sky survives.

A plain running sum keeps everything a frame ever held: cosmic rays, satellite trails and hot
pixels (which the drift of the field trails across the reference grid) become catalogue
sources. :class:`RobustStack` keeps instead one running sum per *time block* of the night (the
frames are split into ``n_blocks`` consecutive blocks) and combines the block means with a
median. A cosmic ray or a trail lives in one frame, so in one block; a detector defect moves on
the reference grid with the drift, so it falls on different reference pixels in different
blocks; a star is in every block. The median of the block means therefore keeps the stars and
rejects the rest, with memory bounded by ``n_blocks`` images whatever the number of frames
(only the blocks a worker's frames touch are allocated in that worker).

This is the "median of partial sums" combination used for robust co-addition when the frames
cannot all be held in memory (e.g. the median of sub-stack means in drift-scan and lucky
imaging pipelines); with ``n_blocks = 1`` it is the plain mean.
"""

import math

import numpy as np

from .alignment import StackAccumulator

__all__ = ["RobustStack", "StackFactory", "default_n_blocks"]


def default_n_blocks(n_frames, max_blocks=7, min_frames_per_block=2):
    """Number of time blocks for a night of ``n_frames`` frames.

    At most ``max_blocks`` (an odd number keeps the median a single block mean), at least
    ``min_frames_per_block`` frames per block, and 1 (a plain mean) for fewer than 3 blocks'
    worth of frames: a median of two block means rejects nothing.

    Parameters
    ----------
    n_frames : int
        Frames in the stack.
    max_blocks : int
        Upper limit.
    min_frames_per_block : int
        Fewest frames in a block.

    Returns
    -------
    int
    """
    n = min(int(max_blocks), int(n_frames) // max(1, int(min_frames_per_block)))
    if n < 3:
        return 1
    return n if n % 2 else n - 1


class RobustStack:
    """Median of the block means of the aligned frames of a night.

    Parameters
    ----------
    shape : tuple of int
        Shape ``(ny, nx)`` of the reference grid.
    n_frames : int
        Frames of the night (indices ``0 .. n_frames - 1`` in time order).
    n_blocks : int, optional
        Number of consecutive time blocks; default :func:`default_n_blocks`.

    Notes
    -----
    A pixel of the combined image is the median of the means of the blocks that cover it. Where
    only two blocks cover a pixel (the low-coverage edges of a drifting night) it is the smaller
    of the two means, so an outlier in one block still does not survive; where one block covers
    it, it is that block's mean.

    Examples
    --------
    >>> from opticam_like.alignment import Transform
    >>> stack = RobustStack((1, 3), n_frames=3, n_blocks=3)
    >>> for i, frame in enumerate([[1.0, 2.0, 3.0], [1.0, 2.0, 300.0], [1.0, 2.0, 3.0]]):
    ...     stack.add_frame(np.array([frame]), Transform.from_translation(0, 0), index=i)
    >>> stack.image.tolist()
    [[1.0, 2.0, 3.0]]
    """

    def __init__(self, shape, n_frames, n_blocks=None):
        self.shape = tuple(int(n) for n in shape)
        self.n_total = int(n_frames)
        if self.n_total < 1:
            raise ValueError(f"n_frames must be positive, not {n_frames}")
        self.n_blocks = default_n_blocks(self.n_total) if n_blocks is None else int(n_blocks)
        if not 1 <= self.n_blocks <= self.n_total:
            raise ValueError(f"n_blocks must be in 1..{self.n_total}, not {n_blocks}")
        self._blocks = {}

    def block_of(self, index):
        """Time block (0-based) of the frame at position ``index``."""
        if not 0 <= index < self.n_total:
            raise ValueError(f"frame index {index} outside 0..{self.n_total - 1}")
        return index * self.n_blocks // self.n_total

    def add_frame(self, data, transform, bad=None, index=0):
        """Add a frame given in its own pixels to its time block.

        Parameters
        ----------
        data : ndarray, shape (ny, nx)
            Background-subtracted frame (e-).
        transform : Transform
            Reference -> frame transform.
        bad : ndarray of bool, shape (ny, nx), optional
            Pixels to leave out (non-finite pixels are always left out).
        index : int
            Position of the frame in the night's time order.
        """
        block = self.block_of(index)
        if block not in self._blocks:
            self._blocks[block] = StackAccumulator(self.shape)
        self._blocks[block].add_frame(data, transform, bad=bad)

    def merge(self, other):
        """Add the frames of another stack of the same night (e.g. one per worker).

        Raises
        ------
        ValueError
            If the shapes, the number of frames or of blocks differ.
        """
        if (other.shape, other.n_total, other.n_blocks) != (self.shape, self.n_total,
                                                               self.n_blocks):
            raise ValueError("cannot merge stacks of different grids or nights")
        for block, acc in other._blocks.items():
            if block in self._blocks:
                self._blocks[block].merge(acc)
            else:
                self._blocks[block] = acc

    @property
    def n_frames(self):
        """Number of frames added."""
        return sum(acc.n_frames for acc in self._blocks.values())

    @property
    def count(self):
        """Frames that contributed to each pixel, ndarray of int32, shape ``shape``."""
        count = np.zeros(self.shape, dtype=np.int32)
        for acc in self._blocks.values():
            count += acc.count
        return count

    @property
    def image(self):
        """The combined image, ndarray of float64, shape ``shape`` (e- per frame).

        The median over the covering blocks of the block means (the smaller of two where two
        blocks cover a pixel); NaN where no frame contributed.
        """
        if not self._blocks:
            return np.full(self.shape, np.nan)
        if len(self._blocks) == 1 and self.n_blocks == 1:
            return next(iter(self._blocks.values())).mean
        means = np.stack([acc.mean for acc in self._blocks.values()])
        covered = np.isfinite(means).sum(axis=0)
        filled = np.where(np.isfinite(means), means, np.inf)
        image = np.min(filled, axis=0)
        many = covered >= 3
        if many.any():
            image[many] = np.nanmedian(means[:, many], axis=0)
        image[covered == 0] = np.nan
        return image

    def effective_count(self):
        """Frames behind each pixel of :attr:`image`, for its noise (ndarray of float).

        The median of ``k`` block means of ``m`` frames each has the variance of a mean of
        ``2 k m / pi`` frames (large-sample efficiency of the median of Gaussian values).
        """
        count = self.count.astype(float)
        if self.n_blocks == 1:
            return count
        return count * 2.0 / math.pi


class StackFactory:
    """Picklable factory of empty :class:`RobustStack` s (one per worker chunk).

    Parameters
    ----------
    shape : tuple of int
        Reference grid.
    n_frames : int
        Frames of the night.
    n_blocks : int, optional
        Time blocks (default :func:`default_n_blocks`).
    """

    def __init__(self, shape, n_frames, n_blocks=None):
        self.shape = tuple(shape)
        self.n_frames = int(n_frames)
        self.n_blocks = n_blocks

    def __call__(self):
        return RobustStack(self.shape, self.n_frames, self.n_blocks)
