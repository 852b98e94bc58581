"""Local background: the sky level in an annulus around each source."""

from dataclasses import dataclass

import numpy as np

__all__ = ["AnnulusBackground"]

STATISTICS = ("median", "mean", "sigma_clipped_mean", "sigma_clipped_median", "mode")


@dataclass(frozen=True)
class AnnulusBackground:
    """Sky level per pixel in a circular annulus around each source.

    It is evaluated on the image from which the global background has been subtracted, so it
    measures the local residual; the photometer adds the global level back for the reported
    ``background``.

    Parameters
    ----------
    r_in, r_out : float
        Inner and outer radii: pixels, or multiples of the frame FWHM when ``fwhm_scaled``.
    fwhm_scaled : bool
        Scale the radii with each frame's FWHM (as hipercam's variable apertures).
    statistic : {'sigma_clipped_mean', 'median', 'mean', 'sigma_clipped_median', 'mode'}
        Estimator of the level. The default 3-sigma clipped mean is unbiased on a Poisson sky,
        whereas a median sits ~0.2 e- per pixel low on a 150 e- sky (the skewness of the
        Poisson distribution), which biases faint-star fluxes high by 2-4% (measured on a
        generated night); it also gave the lowest scatter on the crowded OGLE frames. ``'mode'`` is SExtractor's ``2.5 median - 1.5 mean`` of the
        3-sigma clipped pixels, which falls back to the median when
        ``|mean - median| / std >= 0.3`` (crowded annulus; Bertin & Arnouts 1996), as
        photutils ``SExtractorBackground``.

    Attributes
    ----------
    median_based : bool
        Whether the level is a median (its error then carries the factor pi/2).
    min_pixels : int
        Fewer good annulus pixels than this flag the point ``BAD_BACKGROUND``.

    Raises
    ------
    ValueError
        Radii not positive or ``r_out <= r_in``; unknown statistic.
    """

    r_in: float = 3.0
    r_out: float = 5.0
    fwhm_scaled: bool = True
    statistic: str = "sigma_clipped_mean"
    min_pixels: int = 20

    def __post_init__(self):
        if not 0 < self.r_in < self.r_out:
            raise ValueError(f"annulus radii must satisfy 0 < r_in < r_out, got "
                             f"r_in={self.r_in}, r_out={self.r_out}")
        if self.statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {STATISTICS}, not {self.statistic!r}")

    @property
    def median_based(self):
        """True for the median-type statistics (their error carries the factor pi/2)."""
        return self.statistic in ("median", "sigma_clipped_median", "mode")

    def radii(self, fwhm):
        """Inner and outer radius in pixels for a frame of the given FWHM (pixels)."""
        scale = fwhm if self.fwhm_scaled else 1.0
        return self.r_in * scale, self.r_out * scale

    def measure(self, data, x, y, fwhm, mask=None):
        """Sky level per pixel around each source.

        Parameters
        ----------
        data : ndarray, shape (ny, nx)
            Image (e-), normally with the global background subtracted.
        x, y : ndarray, shape (N,)
            Source positions (0-based pixels).
        fwhm : float
            Frame FWHM (pixels), used when ``fwhm_scaled``.
        mask : ndarray of bool, shape (ny, nx), optional
            Pixels to leave out.

        Returns
        -------
        level, std : ndarray, shape (N,)
            Level and standard deviation per pixel (e-).
        npix : ndarray of int, shape (N,)
            Pixels used.
        """
        from ..photometry.kernels import annulus_statistics  # the exact-overlap kernels

        r_in, r_out = self.radii(fwhm)
        stats = annulus_statistics(data, x, y, r_in, r_out, mask=mask,
                                   statistic=self.statistic)
        return stats.value, stats.std, np.asarray(stats.npix)

    def params(self):
        """Parameters for the tables' metadata."""
        return {"type": "annulus", "r_in": self.r_in, "r_out": self.r_out,
                "fwhm_scaled": self.fwhm_scaled, "statistic": self.statistic}
