"""Alternative global background estimators with the same call contract.

* `PhotutilsBackground` returns a real ``photutils.background.Background2D``,
  so any photutils estimator can be used (e.g. biweight location and scale).
* `SExtractorExactBackground` runs SExtractor's own background algorithm
  through ``sep`` (an optional dependency): per mesh, a histogram-based mode
  estimate with iterative 3-sigma clipping, ``2.5 median - 1.5 mean`` unless
  the mesh is crowded, a median filter of the mesh and bicubic-spline
  interpolation. It reproduces SExtractor's BACKGROUND and BACKGROUND_RMS
  check-images.

Both are callables ``bkg(data, mask=None, coverage_mask=None) -> result``
whose result has ``background``, ``background_rms``, ``background_median``
and ``background_rms_median``.

References
----------
Bertin, E. & Arnouts, S. 1996, A&AS 117, 393 (SExtractor).
Barbary, K. 2016, JOSS 1, 58 (sep).
"""

from functools import cached_property

import numpy as np

from opticam_like.background.mesh import _validate_mask, as_pair

__all__ = ["PhotutilsBackground", "SExtractorExactBackground", "SepBackgroundResult"]


class PhotutilsBackground:
    """photutils ``Background2D`` with any photutils estimators.

    Parameters
    ----------
    box_size : int or (int, int)
        Box size in pixels (``(ny, nx)`` if a pair).
    filter_size : int or (int, int)
        Median filter size in boxes (odd).
    bkg_estimator : callable, optional
        A photutils background estimator, e.g.
        ``photutils.background.BiweightLocationBackground()``; default
        ``SExtractorBackground``.
    bkgrms_estimator : callable, optional
        A photutils rms estimator, e.g. ``BiweightScaleBackgroundRMS()``;
        default ``StdBackgroundRMS``.
    **kwargs
        Any other ``Background2D`` keyword (``sigma_clip``,
        ``exclude_percentile``, ``filter_threshold``, ``fill_value``).

    Examples
    --------
    >>> from photutils.background import (BiweightLocationBackground,
    ...                                   BiweightScaleBackgroundRMS)
    >>> bkg = PhotutilsBackground(64, 3, BiweightLocationBackground(),
    ...                           BiweightScaleBackgroundRMS())(image)
    """

    def __init__(self, box_size=64, filter_size=3, bkg_estimator=None,
                 bkgrms_estimator=None, **kwargs):
        self.box_size = as_pair("box_size", box_size)
        self.filter_size = as_pair("filter_size", filter_size, odd=True)
        self.bkg_estimator = bkg_estimator
        self.bkgrms_estimator = bkgrms_estimator
        self.kwargs = kwargs

    def __repr__(self):
        return (f"PhotutilsBackground(box_size={self.box_size}, filter_size="
                f"{self.filter_size}, bkg_estimator={self.bkg_estimator!r}, "
                f"bkgrms_estimator={self.bkgrms_estimator!r}, **{self.kwargs!r})")

    def __call__(self, data, mask=None, coverage_mask=None):
        """Estimate the background of one image.

        Parameters
        ----------
        data : array_like, shape (ny, nx)
            The image.
        mask, coverage_mask : array_like of bool, shape (ny, nx), optional
            As in ``Background2D``.

        Returns
        -------
        photutils.background.Background2D
        """
        from photutils.background import Background2D

        return Background2D(data, self.box_size, mask=mask, coverage_mask=coverage_mask,
                            filter_size=self.filter_size,
                            bkg_estimator=self.bkg_estimator,
                            bkg_rms_estimator=self.bkgrms_estimator, **self.kwargs)


def _import_sep():
    """Import ``sep`` or explain how to install it."""
    try:
        import sep
    except ImportError as err:
        raise ImportError("SExtractorExactBackground needs the optional package sep: "
                          "pip install sep") from err
    return sep


class SExtractorExactBackground:
    """SExtractor's own background algorithm (through ``sep``).

    Parameters
    ----------
    box_size : int or (int, int)
        Mesh size in pixels (``BACK_SIZE``), ``(ny, nx)`` if a pair.
    filter_size : int or (int, int)
        Median filter size in meshes (``BACK_FILTERSIZE``).
    filter_threshold : float
        ``BACK_FILTERTHRESH``: filter only meshes differing from the median
        by more than this (0 filters all).
    fill_value : float
        Value of the maps where ``coverage_mask`` is True.

    Raises
    ------
    ImportError
        When called without ``sep`` installed.
    """

    def __init__(self, box_size=64, filter_size=3, filter_threshold=0.0, fill_value=0.0):
        self.box_size = as_pair("box_size", box_size)
        self.filter_size = as_pair("filter_size", filter_size, odd=True)
        self.filter_threshold = float(filter_threshold)
        self.fill_value = fill_value

    def __repr__(self):
        return (f"SExtractorExactBackground(box_size={self.box_size}, filter_size="
                f"{self.filter_size}, filter_threshold={self.filter_threshold}, "
                f"fill_value={self.fill_value})")

    def __call__(self, data, mask=None, coverage_mask=None):
        """Estimate the background of one image.

        Parameters
        ----------
        data : array_like, shape (ny, nx)
            The image; any byte order and real dtype (copied to native
            float32/float64 for sep when needed). Non-finite pixels are masked.
        mask : array_like of bool, shape (ny, nx), optional
            Pixels to ignore.
        coverage_mask : array_like of bool, shape (ny, nx), optional
            Pixels without data: ignored, and ``fill_value`` in the maps.

        Returns
        -------
        SepBackgroundResult

        Raises
        ------
        ImportError
            If ``sep`` is not installed.
        ValueError
            If ``data`` is not a real 2-D array or a mask has the wrong shape.
        """
        sep = _import_sep()
        data = np.asarray(data)
        if data.ndim != 2 or data.dtype.kind not in "iuf":
            raise ValueError("data must be a real 2-D image")
        dtype = np.float64 if data.dtype == np.float64 else np.float32
        data = np.ascontiguousarray(data, dtype=np.dtype(dtype).newbyteorder("="))
        mask = _validate_mask(mask, data.shape, "mask")
        coverage_mask = _validate_mask(coverage_mask, data.shape, "coverage_mask")
        invalid = ~np.isfinite(data)
        if invalid.any():
            data = np.where(invalid, 0.0, data).astype(dtype)
        for extra in (mask, coverage_mask):
            if extra is not None:
                invalid |= extra
        (by, bx), (fy, fx) = self.box_size, self.filter_size
        result = sep.Background(data, mask=invalid if invalid.any() else None,
                                bw=bx, bh=by, fw=fx, fh=fy, fthresh=self.filter_threshold)
        return SepBackgroundResult(result, coverage_mask, self.fill_value)


class SepBackgroundResult:
    """Result of `SExtractorExactBackground` (maps computed on first access).

    Parameters
    ----------
    sep_background : sep.Background
        The sep object (kept as ``sep_background``).
    coverage_mask : ndarray of bool or None
        Pixels set to ``fill_value`` in the maps.
    fill_value : float
        See ``coverage_mask``.
    """

    def __init__(self, sep_background, coverage_mask=None, fill_value=0.0):
        self.sep_background = sep_background
        self.coverage_mask = coverage_mask
        self.fill_value = fill_value

    def _image(self, image):
        if self.coverage_mask is not None:
            image[self.coverage_mask] = self.fill_value
        return image

    @cached_property
    def background(self):
        """ndarray, shape (ny, nx): SExtractor's BACKGROUND map."""
        return self._image(self.sep_background.back())

    @cached_property
    def background_rms(self):
        """ndarray, shape (ny, nx): SExtractor's BACKGROUND_RMS map."""
        return self._image(self.sep_background.rms())

    @property
    def background_median(self):
        """float: SExtractor's global background ("(M+D) Background")."""
        return self.sep_background.globalback

    @property
    def background_rms_median(self):
        """float: SExtractor's global rms ("(M+D) RMS")."""
        return self.sep_background.globalrms
