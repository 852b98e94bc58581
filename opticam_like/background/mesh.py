"""Global 2-D background from a mesh of boxes: ``DefaultBackground``.

``DefaultBackground`` computes what photutils' ``Background2D`` computes with
its default estimators (SExtractor background, standard-deviation rms,
3-sigma / 10-iteration sigma clipping, 10 % exclusion, median filter of the
mesh, bicubic-spline upsampling), to within ~1e-6 of the rms, without calling
photutils and tens of times faster (see `opticam_like.background.clipping`
and its C kernel, and `opticam_like.background.upsample`, for how; without
the optional C kernel the box statistics use NumPy, and the maps take about
ten times longer, still a few times less than photutils). The result, `MeshBackground`,
has the attributes of ``Background2D`` that users read and computes each of
them only when first read.

References
----------
Bertin, E. & Arnouts, S. 1996, A&AS 117, 393 (SExtractor background).
photutils ``Background2D`` (Bradley et al., photutils 3.0).
"""

from functools import cached_property

import numpy as np
from scipy.spatial import cKDTree

from opticam_like.background.clipping import BoxGrid, box_statistics
from opticam_like.background.upsample import SplineUpsampler

__all__ = ["DefaultBackground", "MeshBackground"]

#: Nearest good boxes used to fill an excluded box (photutils' value).
_IDW_NEIGHBORS = 10


def as_pair(name, value, *, odd=False):
    """A positive integer or ``(ny, nx)`` pair as a tuple of two ints.

    Parameters
    ----------
    name : str
        Parameter name for the error message.
    value : int or sequence of two int
        The value.
    odd : bool
        Require odd values.

    Returns
    -------
    tuple of int
        ``(ny, nx)``.

    Raises
    ------
    ValueError
        If the value is not one or two positive (odd) integers.
    """
    arr = np.atleast_1d(value)
    if arr.ndim != 1 or len(arr) not in (1, 2) or arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer or a pair of integers (ny, nx), "
                         f"got {value!r}")
    pair = (int(arr[0]), int(arr[-1]))
    if min(pair) < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    if odd and not (pair[0] % 2 and pair[1] % 2):
        raise ValueError(f"{name} must be odd along both axes, got {value!r}")
    return pair


def _validate_mask(mask, shape, name):
    """A boolean mask of the image shape, or None."""
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != shape:
        raise ValueError(f"{name} must have the shape of the data {shape}, "
                         f"got {mask.shape}")
    return mask


class DefaultBackground:
    """SExtractor-style 2-D background and rms, as photutils ``Background2D``.

    Every ``box_size`` box of the image is sigma clipped (centre median,
    population standard deviation, ``sigma`` on both sides, at most
    ``maxiters`` iterations); its background is ``2.5 median - 1.5 mean``
    (the median if ``|mean - median| / std >= 0.3``, the mean if ``std = 0``)
    and its rms the standard deviation. Boxes with more than
    ``exclude_percentile`` per cent of their pixels masked, non-finite,
    outside the image or clipped are replaced by inverse-distance weighting
    of the 10 nearest good boxes; the mesh is median filtered over
    ``filter_size`` boxes (only where the background exceeds
    ``filter_threshold``, if given) and upsampled with bicubic splines. The
    maps agree with ``photutils.background.Background2D(data, box_size,
    filter_size=filter_size, ...)`` (default estimators) to ~1e-6 of the rms.

    Parameters
    ----------
    box_size : int or (int, int)
        Box size in pixels, ``(ny, nx)`` if a pair. It must not exceed the
        image.
    filter_size : int or (int, int)
        Median filter size in boxes (odd); 1 means no filtering.
    sigma : float
        Clipping limit in standard deviations.
    maxiters : int
        Maximum number of clipping iterations.
    exclude_percentile : float
        Percentage of masked pixels above which a box is excluded (0-100).
    filter_threshold : float or None
        Filter only the boxes whose background exceeds this value.
    fill_value : float
        Value of the maps where ``coverage_mask`` is True.

    Raises
    ------
    ValueError
        For invalid parameters.

    Examples
    --------
    >>> bkg = DefaultBackground(box_size=64)(image, mask=bad_pixels)
    >>> residual = image - bkg.background
    """

    def __init__(self, box_size=64, filter_size=3, sigma=3.0, maxiters=10,
                 exclude_percentile=10.0, filter_threshold=None, fill_value=0.0):
        self.box_size = as_pair("box_size", box_size)
        self.filter_size = as_pair("filter_size", filter_size, odd=True)
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma!r}")
        if int(maxiters) != maxiters or maxiters < 1:
            raise ValueError(f"maxiters must be a positive integer, got {maxiters!r}")
        if not 0 <= exclude_percentile <= 100:
            raise ValueError("exclude_percentile must be between 0 and 100, "
                             f"got {exclude_percentile!r}")
        self.sigma = float(sigma)
        self.maxiters = int(maxiters)
        self.exclude_percentile = float(exclude_percentile)
        self.filter_threshold = filter_threshold
        self.fill_value = fill_value

    def __repr__(self):
        return (f"DefaultBackground(box_size={self.box_size}, filter_size={self.filter_size}, "
                f"sigma={self.sigma}, maxiters={self.maxiters}, "
                f"exclude_percentile={self.exclude_percentile}, "
                f"filter_threshold={self.filter_threshold}, fill_value={self.fill_value})")

    def __call__(self, data, mask=None, coverage_mask=None):
        """Estimate the background of one image.

        Parameters
        ----------
        data : array_like, shape (ny, nx)
            The image (any real dtype; integers are processed as float32).
            NaN and infinite values are masked automatically.
        mask : array_like of bool, shape (ny, nx), optional
            True for pixels to ignore (sources, bad pixels). They still get a
            background value.
        coverage_mask : array_like of bool, shape (ny, nx), optional
            True where the image has no data; the maps are ``fill_value``
            there.

        Returns
        -------
        MeshBackground
            The background and rms maps and meshes.

        Raises
        ------
        ValueError
            If ``data`` is not a real 2-D array, the box is larger than the
            image, a mask has the wrong shape, every pixel is masked, or no
            box has enough good pixels.
        """
        data = np.asarray(data)
        if data.ndim != 2:
            raise ValueError(f"data must be a 2-D image, got {data.ndim} dimension(s)")
        if data.dtype.kind not in "iuf":
            raise ValueError(f"data must be real numbers, got dtype {data.dtype}")
        if self.box_size[0] > data.shape[0] or self.box_size[1] > data.shape[1]:
            raise ValueError(f"box_size {self.box_size} is larger than the image "
                             f"{data.shape}")
        if not data.dtype.isnative:
            data = data.astype(data.dtype.newbyteorder("="))
        mask = _validate_mask(mask, data.shape, "mask")
        coverage_mask = _validate_mask(coverage_mask, data.shape, "coverage_mask")
        invalid = mask if coverage_mask is None else (
            coverage_mask if mask is None else mask | coverage_mask)
        if invalid is not None and invalid.all():
            raise ValueError("All input pixels are masked. Cannot compute a background.")
        grid = BoxGrid(data.shape, self.box_size)
        stats = box_statistics(data, invalid, grid, sigma=self.sigma,
                               maxiters=self.maxiters,
                               exclude_percentile=self.exclude_percentile)
        if np.isnan(stats.background).all():
            if not stats.n_good.any():
                raise ValueError("All pixels are masked or non-finite. "
                                 "Cannot compute a background.")
            threshold = (1 - self.exclude_percentile / 100) * grid.box_npixels
            raise ValueError(f"All boxes contain <= {threshold:g} unmasked or finite "
                             f"pixels (box_size={self.box_size}, exclude_percentile="
                             f"{self.exclude_percentile}). Check the data or increase "
                             "exclude_percentile.")
        out_dtype = data.dtype if data.dtype.kind == "f" and data.dtype.itemsize >= 4 \
            else np.dtype(np.float32)
        return MeshBackground(grid, stats.background, stats.rms, stats.n_good,
                              filter_size=self.filter_size,
                              filter_threshold=self.filter_threshold,
                              coverage_mask=coverage_mask, fill_value=self.fill_value,
                              dtype=out_dtype)


def _idw_fill(mesh):
    """Fill NaN boxes by inverse-distance weighting of the 10 nearest good ones.

    The same computation as photutils (``ShepardIDWInterpolator`` with power
    1 on a k-d tree of the good box indices).

    Parameters
    ----------
    mesh : ndarray, shape (my, mx)
        Box values, NaN where excluded.

    Returns
    -------
    ndarray, shape (my, mx)
        ``mesh`` itself if it has no NaN, else a filled copy.
    """
    bad = np.isnan(mesh)
    if not bad.any():
        return mesh
    good_yx = np.column_stack(np.nonzero(~bad))
    bad_yx = np.column_stack(np.nonzero(bad))
    values = mesh[~bad]
    dist, idx = cKDTree(good_yx, leafsize=10).query(bad_yx, k=_IDW_NEIGHBORS)
    valid = np.isfinite(dist)
    weights = np.where(valid, 1.0 / np.where(valid, dist, 1.0), 0.0)
    neighbours = values[np.where(valid, idx, 0)]
    filled = mesh.copy()
    filled[bad] = (weights * neighbours).sum(axis=1) / weights.sum(axis=1)
    return filled


def _median_filter(mesh, size):
    """NaN-padded median filter of a mesh (``generic_filter(nanmedian)``).

    Parameters
    ----------
    mesh : ndarray, shape (my, mx)
        Finite box values.
    size : tuple of int
        Odd filter size ``(fy, fx)``.

    Returns
    -------
    ndarray, shape (my, mx), float64
        Median of the window clipped to the mesh (the mean of the two middle
        values for an even count).
    """
    fy, fx = size
    padded = np.pad(mesh.astype(np.float64), ((fy // 2,) * 2, (fx // 2,) * 2),
                    constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, size)
    windows = np.sort(windows.reshape(mesh.shape + (fy * fx,)), axis=-1)
    count = np.count_nonzero(~np.isnan(windows), axis=-1)
    lo = np.take_along_axis(windows, ((count - 1) // 2)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(windows, (count // 2)[..., None], axis=-1)[..., 0]
    return (lo + hi) / 2.0


class MeshBackground:
    """Background and rms of an image from box statistics (``Background2D``-like).

    Produced by `DefaultBackground`; every attribute is computed on first
    access and kept.

    Parameters
    ----------
    grid : BoxGrid
        Image shape and box size.
    bkg_stats, rms_stats : ndarray, shape ``grid.mesh_shape``
        Box background and rms, NaN for excluded boxes.
    n_good : ndarray of int, shape ``grid.mesh_shape``
        Pixels used in each box.
    filter_size : tuple of int
        Median filter size in boxes.
    filter_threshold : float or None
        Filter only boxes whose background exceeds this value.
    coverage_mask : ndarray of bool or None
        Pixels set to ``fill_value`` in the maps.
    fill_value : float
        See ``coverage_mask``.
    dtype : numpy dtype
        Data type of the maps (that of float input, else float32).
    """

    def __init__(self, grid, bkg_stats, rms_stats, n_good, *, filter_size=(3, 3),
                 filter_threshold=None, coverage_mask=None, fill_value=0.0,
                 dtype=np.float32):
        self.grid = grid
        self.box_size = grid.box_size
        self.filter_size = tuple(filter_size)
        self.filter_threshold = filter_threshold
        self.fill_value = fill_value
        self.coverage_mask = coverage_mask
        self._bkg_stats = bkg_stats
        self._rms_stats = rms_stats
        self._n_good = n_good
        self._dtype = np.dtype(dtype)

    def __repr__(self):
        return (f"<MeshBackground shape={self.grid.shape} box_size={self.box_size} "
                f"filter_size={self.filter_size}>")

    def compact(self):
        """A copy holding only the box statistics (a few hundred bytes to pickle).

        Its maps are rebuilt on first access, identical to this object's. The Reducer sends
        it from the catalogue pass to the photometry pass of the same frame, which then skips
        the box statistics.

        Returns
        -------
        MeshBackground
        """
        return MeshBackground(self.grid, self._bkg_stats, self._rms_stats, self._n_good,
                              filter_size=self.filter_size,
                              filter_threshold=self.filter_threshold,
                              coverage_mask=self.coverage_mask, fill_value=self.fill_value,
                              dtype=self._dtype)

    @property
    def n_pixels_mesh(self):
        """ndarray of int, shape (my, mx): pixels used in each box after clipping."""
        return self._n_good

    npixels_mesh = n_pixels_mesh

    @property
    def mesh_nan_mask(self):
        """ndarray of bool, shape (my, mx): boxes excluded from the statistics."""
        return np.isnan(self._bkg_stats)

    @cached_property
    def _filter_mask(self):
        """Boxes to median filter: all (None), or those above the threshold."""
        if self.filter_size == (1, 1):
            return np.zeros(self.grid.mesh_shape, bool)
        if (self.filter_threshold is None
                or self.filter_threshold < np.nanmin(self._bkg_stats)):
            return None
        return _idw_fill(self._bkg_stats) > self.filter_threshold

    def _mesh(self, stats):
        """IDW-filled and median-filtered mesh."""
        mesh = _idw_fill(stats)
        selected = self._filter_mask
        if selected is not None and not selected.any():
            return mesh
        filtered = _median_filter(mesh, self.filter_size)
        if selected is not None:
            filtered = np.where(selected, filtered, mesh)
        return filtered.astype(stats.dtype)

    @cached_property
    def background_mesh(self):
        """ndarray, shape (my, mx): the low-resolution background (MINIBACK)."""
        return self._mesh(self._bkg_stats)

    @cached_property
    def background_rms_mesh(self):
        """ndarray, shape (my, mx): the low-resolution rms (MINIBACK_RMS)."""
        return self._mesh(self._rms_stats)

    @cached_property
    def background_median(self):
        """float: median of `background_mesh` (SExtractor's global background)."""
        return np.median(self.background_mesh)

    @cached_property
    def background_rms_median(self):
        """float: median of `background_rms_mesh` (SExtractor's global rms)."""
        return np.median(self.background_rms_mesh)

    @cached_property
    def _upsampler(self):
        return SplineUpsampler(self.grid.shape, self.grid.box_size, self.grid.mesh_shape)

    def _image(self, mesh):
        image = self._upsampler(mesh, dtype=self._dtype)
        if self.coverage_mask is not None:
            image[self.coverage_mask] = self.fill_value
        return image

    @cached_property
    def background(self):
        """ndarray, shape (ny, nx): the background map (data units)."""
        return self._image(self.background_mesh)

    @cached_property
    def background_rms(self):
        """ndarray, shape (ny, nx): the background rms map (data units)."""
        return self._image(self.background_rms_mesh)

    def plot_meshes(self, ax=None, *, marker="+", markersize=None, color="blue",
                    alpha=None, outlines=False, **kwargs):
        """Mark the centres (and optionally outlines) of the boxes used.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on (default: the current axes).
        marker : str
            Marker of the box centres.
        markersize : float, optional
            Marker size in points**2 (0 hides the markers).
        color : str
            Colour of markers and outlines.
        alpha : float, optional
            Transparency.
        outlines : bool
            Also draw the box outlines.
        **kwargs
            Passed to `matplotlib.patches.Rectangle` for the outlines.

        Returns
        -------
        matplotlib.axes.Axes
            The axes.
        """
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        if ax is None:
            ax = plt.gca()
        yc, xc = self.grid.centers()
        iy, ix = np.nonzero(~self.mesh_nan_mask)
        ax.scatter(xc[ix], yc[iy], s=markersize, marker=marker, color=color, alpha=alpha)
        if outlines:
            by, bx = self.box_size
            for y, x in zip(yc[iy], xc[ix]):
                ax.add_patch(Rectangle((x - bx / 2, y - by / 2), bx, by, fill=False,
                                       color=color, alpha=alpha, **kwargs))
        return ax
