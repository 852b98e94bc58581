"""The detector of one camera: bias, flat field, dark current, defects, and the read-out.

The model of a read-out (Howell 2006, *Handbook of CCD Astronomy*, ch. 4):

``ADU = clip(round((Poisson(flat * light + dark * t) + cosmic rays + N(0, RN)) / gain + bias),
0, saturation)``

where ``light`` is the expected number of photo-electrons per pixel for a unit response (sky and
stars), ``flat`` the pixel response (PRNU times vignetting, median 1, ~0 for dead pixels), ``dark``
the dark current map (hot pixels included), ``RN`` the read noise in electrons and ``bias`` the
fixed bias map in ADU. Every property is a pure function of the seed, the camera index and the
detector parameters, so science and calibration frames share the same detector.
"""

from functools import cached_property

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .streams import Stream, random_stream

__all__ = ["Detector"]

_CAMERA_BIAS_OFFSET = 10.0
"""Half-range in ADU of the fixed per-camera offset of the bias level."""
_HOT_DARK = (50.0, 2000.0)
"""Range of the extra dark current of a hot pixel, e-/s (log-uniform)."""
_DEAD_RESPONSE = 0.05
"""Largest response of a dead pixel."""
_SATURATED_HOT_DARK = (2e5, 1e6)
"""Range of the dark current of a saturated hot pixel, e-/s (log-uniform)."""
_WARM_DARK = (5.0, 50.0)
"""Range of the extra dark current of a warm pixel, e-/s (log-uniform)."""
_HOT_COLUMN_DARK = (20.0, 100.0)
"""Range of the extra dark current of a hot column, e-/s (uniform)."""


class Detector:
    """The fixed properties of one camera's detector.

    Parameters
    ----------
    parameters : SimulationParameters
        The simulation parameters (shape, gain, read noise, bias, dark, flat, defects, seed).
    camera_index : int
        Index of the camera (0 for C1).

    Notes
    -----
    All maps have the frame shape ``(ny, nx)``. The flat is normalised to a median of 1 over the
    frame before the dead pixels are set, so a pipeline that normalises its master flat by the
    median recovers the fluxes of the truth.
    """

    def __init__(self, parameters, camera_index):
        self.parameters = parameters
        self.camera_index = int(camera_index)
        self.camera = parameters.cameras[camera_index]
        self.filter = parameters.filters[camera_index]
        self.shape = parameters.shape

    def _rng(self, quantity):
        return random_stream(self.parameters.seed, Stream.DETECTOR, self.camera_index, quantity)

    @cached_property
    def bias(self):
        """float32 array (ny, nx): the bias in ADU (level + camera offset + fixed pattern)."""
        p = self.parameters
        rng = self._rng(0)
        ny, nx = self.shape
        offset = rng.uniform(-_CAMERA_BIAS_OFFSET, _CAMERA_BIAS_OFFSET)
        columns = rng.normal(0.0, p.bias_structure * 0.6, nx)
        slope_x, slope_y = rng.normal(0.0, p.bias_structure * 0.8, 2)
        ramp = (slope_x * np.linspace(-1, 1, nx)[None, :]
                + slope_y * np.linspace(-1, 1, ny)[:, None] ** 2)
        return (p.bias_level + offset + columns[None, :] + ramp).astype(np.float32)

    @cached_property
    def _defects(self):
        p = self.parameters
        rng = self._rng(1)
        n_pixels = self.shape[0] * self.shape[1]
        chosen = rng.choice(n_pixels, p.hot_pixels + p.dead_pixels, replace=False)
        hot = np.zeros(n_pixels, bool)
        dead = np.zeros(n_pixels, bool)
        hot[chosen[:p.hot_pixels]] = True
        dead[chosen[p.hot_pixels:]] = True
        hot_dark = np.exp(rng.uniform(*np.log(_HOT_DARK), p.hot_pixels))
        dead_response = rng.uniform(0.0, _DEAD_RESPONSE, p.dead_pixels)
        return hot.reshape(self.shape), dead.reshape(self.shape), hot_dark, dead_response

    @cached_property
    def _more_defects(self):
        """Saturated hot and warm pixels (flat indices), hot and dead columns, and their values,
        drawn from their own stream among the pixels that are not already defects."""
        p = self.parameters
        rng = self._rng(4)
        ny, nx = self.shape
        free = np.flatnonzero(~(self._defects[0] | self._defects[1]).ravel())
        chosen = rng.choice(free, p.saturated_hot_pixels + p.warm_pixels, replace=False)
        saturated = chosen[:p.saturated_hot_pixels]
        warm = chosen[p.saturated_hot_pixels:]
        columns = rng.choice(nx, p.hot_columns + p.dead_columns, replace=False)
        return {
            "saturated_hot": saturated,
            "saturated_dark": np.exp(rng.uniform(*np.log(_SATURATED_HOT_DARK), len(saturated))),
            "warm": warm,
            "warm_dark": np.exp(rng.uniform(*np.log(_WARM_DARK), len(warm))),
            "hot_columns": columns[:p.hot_columns],
            "hot_column_dark": rng.uniform(*_HOT_COLUMN_DARK, p.hot_columns),
            "dead_columns": columns[p.hot_columns:],
            "dead_column_response": rng.uniform(0.0, _DEAD_RESPONSE, p.dead_columns),
        }

    @cached_property
    def hot(self):
        """bool array (ny, nx): True on hot pixels (saturated ones and hot columns included;
        warm pixels are not hot)."""
        hot = self._defects[0].copy()
        extra = self._more_defects
        hot.ravel()[extra["saturated_hot"]] = True
        hot[:, extra["hot_columns"]] = True
        return hot

    @cached_property
    def dead(self):
        """bool array (ny, nx): True on dead pixels (dead columns included)."""
        dead = self._defects[1].copy()
        dead[:, self._more_defects["dead_columns"]] = True
        return dead

    def defects(self):
        """The defects of the detector, one row per pixel.

        Returns
        -------
        astropy.table.Table
            Columns ``kind`` ('hot', 'saturated_hot', 'warm', 'hot_column', 'dead',
            'dead_column'), ``x, y`` (0-based pixel), ``dark`` (e-/s of the pixel, hot pixels
            included) and ``response`` (flat value). A pixel in a defective column is listed
            as part of the column.
        """
        ny, nx = self.shape
        extra = self._more_defects
        rows = []
        single_hot = np.flatnonzero(self._defects[0].ravel())
        single_dead = np.flatnonzero(self._defects[1].ravel())
        for kind, indices in (("hot", single_hot), ("saturated_hot", extra["saturated_hot"]),
                              ("warm", extra["warm"]), ("dead", single_dead)):
            y, x = np.unravel_index(np.sort(indices), self.shape)
            rows += [(kind, int(a), int(b)) for a, b in zip(x, y)]
        for kind, columns in (("hot_column", extra["hot_columns"]),
                              ("dead_column", extra["dead_columns"])):
            for column in np.sort(columns):
                rows += [(kind, int(column), row) for row in range(ny)]
        x = np.array([r[1] for r in rows], int)
        y = np.array([r[2] for r in rows], int)
        return Table({"kind": [r[0] for r in rows], "x": x, "y": y,
                      "dark": self.dark[y, x].astype(float),
                      "response": self.flat[y, x].astype(float)})

    @cached_property
    def vignetting(self):
        """float32 array (ny, nx): the radial (quadratic) fall-off, 1 at the optical centre
        (within 3 % of the frame centre), ``1 - vignetting`` at the farthest corner."""
        ny, nx = self.shape
        x0, y0 = (np.array([nx, ny]) - 1) / 2 * (1 + self._rng(2).uniform(-0.03, 0.03, 2))
        r2 = (np.arange(nx)[None, :] - x0) ** 2 + (np.arange(ny)[:, None] - y0) ** 2
        corners = max((cx - x0) ** 2 + (cy - y0) ** 2 for cx in (0, nx - 1) for cy in (0, ny - 1))
        return (1.0 - self.parameters.vignetting * r2 / corners).astype(np.float32)

    @cached_property
    def flat(self):
        """float32 array (ny, nx): the pixel response (PRNU x vignetting), median 1, with the
        dead pixels and dead columns below 0.05."""
        prnu = 1.0 + self.parameters.prnu * self._rng(3).standard_normal(self.shape)
        flat = prnu * self.vignetting
        flat /= np.median(flat)
        flat[self._defects[1]] = self._defects[3]
        extra = self._more_defects
        flat[:, extra["dead_columns"]] = extra["dead_column_response"][None, :]
        return flat.astype(np.float32)

    @cached_property
    def dark(self):
        """float32 array (ny, nx): the dark current in e-/s/pixel (hot, saturated hot and warm
        pixels and hot columns included)."""
        dark = np.full(self.shape, self.parameters.dark_current, np.float32)
        dark[self._defects[0]] += self._defects[2].astype(np.float32)
        extra = self._more_defects
        dark.ravel()[extra["saturated_hot"]] = extra["saturated_dark"].astype(np.float32)
        dark.ravel()[extra["warm"]] += extra["warm_dark"].astype(np.float32)
        dark[:, extra["hot_columns"]] += extra["hot_column_dark"][None, :].astype(np.float32)
        return dark

    def read_out(self, light, exposure, rng, cosmic_rays=None):
        """Expose and read the detector.

        Parameters
        ----------
        light : float or ndarray (ny, nx)
            Expected photo-electrons per pixel for a unit response (sky + stars, before the
            flat field).
        exposure : float
            Exposure time in seconds (dark current).
        rng : numpy.random.Generator
            The frame's own random stream.
        cosmic_rays : CosmicRays, optional
            Charge deposited directly in pixels (not flat-fielded, no Poisson noise).

        Returns
        -------
        ndarray (ny, nx) of uint16
            The raw frame in ADU, clipped to ``[0, saturation]``.
        """
        p = self.parameters
        expected = self.flat * np.asarray(light, np.float32)
        expected += self.dark * np.float32(exposure)
        electrons = rng.poisson(expected).astype(np.float32)
        if cosmic_rays is not None and len(cosmic_rays.x):
            np.add.at(electrons, (cosmic_rays.y, cosmic_rays.x),
                      cosmic_rays.electrons.astype(np.float32))
        noise = rng.standard_normal(self.shape, dtype=np.float32)
        noise *= np.float32(p.read_noise)
        electrons += noise
        electrons *= np.float32(1.0 / p.gain)
        electrons += self.bias
        return np.clip(np.rint(electrons), 0, p.saturation).astype(np.uint16)

    def to_hdulist(self):
        """The detector truth as FITS.

        Returns
        -------
        astropy.io.fits.HDUList
            Primary header (CAMERA, FILTER, GAIN, RDNOISE, DARKCURR, SATURATE, SEED) and image
            extensions ``FLAT`` (float32), ``BIAS`` (float32, ADU), ``DARK`` (float32, e-/s/px),
            ``HOT`` and ``DEAD`` (uint8, 1 = defect).
        """
        p = self.parameters
        header = fits.Header()
        header["CAMERA"] = self.camera
        header["FILTER"] = self.filter
        header["GAIN"] = (p.gain, "e-/ADU")
        header["RDNOISE"] = (p.read_noise, "e-")
        header["DARKCURR"] = (p.dark_current, "e-/s/px, without hot pixels")
        header["SATURATE"] = (p.saturation, "ADU")
        header["SEED"] = p.seed
        header["COMMENT"] = "FLAT: response, median 1 before dead pixels were set."
        return fits.HDUList([
            fits.PrimaryHDU(header=header),
            fits.ImageHDU(self.flat, name="FLAT"),
            fits.ImageHDU(self.bias, name="BIAS"),
            fits.ImageHDU(self.dark, name="DARK"),
            fits.ImageHDU(self.hot.astype(np.uint8), name="HOT"),
            fits.ImageHDU(self.dead.astype(np.uint8), name="DEAD"),
        ])
