"""Parameters of a simulated night: one frozen object shared by the science and calibration frames.

The same :class:`SimulationParameters` (same seed, same detector parameters) gives the same
detector (bias structure, flat field, hot and dead pixels) in ``generate_observations``,
``generate_biases``, ``generate_darks`` and ``generate_flats``, so that calibration frames are
consistent with the night.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from astropy.coordinates import Angle
from astropy.time import Time

from .streams import Stream, random_stream

__all__ = ["SimulationParameters", "resolve_parameters", "check_n_images", "json_safe",
           "DEFAULT_SKY", "RECORD_KEYS", "PRESETS", "OPTICAM_PIXEL_SCALES"]

DEFAULT_SKY = {"u": 80.0, "g": 150.0, "r": 200.0, "i": 250.0, "z": 300.0}
"""Default sky level per filter (electrons per pixel per frame, before the flat field)."""

_OTHER_SKY = 200.0
RECORD_KEYS = ("n_images", "kind", "readout_offsets", "variable_observed_rms",
               "calibration_exposure", "beta_night")
"""Keys of a ``parameters.json`` record that describe the run, not the parameters."""
_DERIVED = {"cameras": ("filters",), "sky": ("filters",), "variable_lags": ("filters",),
            "shape": ("binning", "detector_shape"), "exposure": ("cadence",),
            "min_separation": ("fwhm",), "margin": ("fwhm",), "variable_index": ("n_sources",),
            "drift_angle": ("seed",)}
"""Parameters whose default derives from others: re-derived when those are overridden."""
_DEFAULT_VIGNETTING = 0.2
OPTICAM_PIXEL_SCALES = (0.1397, 0.1406, 0.1661)
"""Unbinned pixel scales of the OPTICAM cameras C1, C2, C3 in arcsec/px."""

PRESETS = {
    "clean": {},
    "realistic": {
        "psf": "moffat", "beta_range": (2.5, 4.0), "ellipticity_range": (0.05, 0.2),
        "psf_angle_rotation": 60.0, "fwhm_scatter": 0.15,
        "pixel_scales": OPTICAM_PIXEL_SCALES,
        "drift": 50.0, "field_rotation": 1.2, "sky_trend": 0.1,
        "cosmic_ray_rate": 2.0,
        "hot_pixels": 40, "saturated_hot_pixels": 6, "warm_pixels": 200, "dead_pixels": 20,
        "hot_columns": 1, "dead_columns": 1,
        "satellite_trails": 1,
        "n_sources": 60, "n_pairs": 12, "variable_companion": (1.5, 2.0),
        "cloud_transparency": 0.1,
        "scintillation": True,
        "camera_keyword": False, "camera_in_names": False,
    },
}
"""Named sets of parameter values; ``preset=NAME`` applies one (see :func:`resolve_parameters`).

``'clean'`` changes nothing (an idealised night). ``'realistic'`` makes a night that looks like
real OPTICAM data: elliptical Moffat PSFs (beta drawn in 2.5-4, ellipticity 0.05-0.2, position
angle rotating by 60 deg), the three OPTICAM pixel scales, 50 px drift and 1.2 deg field
rotation, cosmic rays at 2 events/cm^2/min, hot (6 saturated), warm and dead pixels, a hot and
a dead column, a satellite trail, 60 stars with 12 close pairs and a companion 2 mag fainter
at 1.5 FWHM from the variable, a cloud (transparency down to 10 %), scintillation and no
``CAMERA`` keyword (the camera is known only from the filter)."""


def _require(condition, message):
    if not condition:
        raise ValueError(message)


def _per_filter(name, value, filters, default):
    """A ``{filter: float}`` dict from a scalar, a sequence (filter order) or a dict."""
    if value is None:
        return {f: float(default(k, f)) for k, f in enumerate(filters)}
    if isinstance(value, dict):
        missing = [f for f in filters if f not in value]
        _require(not missing, f"{name}: no value for filter(s) {missing}")
        return {f: float(value[f]) for f in filters}
    if np.ndim(value) == 0:
        return {f: float(value) for f in filters}
    _require(len(value) == len(filters),
             f"{name}: {len(value)} values given for {len(filters)} filters")
    return {f: float(v) for f, v in zip(filters, value)}


@dataclass(frozen=True)
class SimulationParameters:
    """Every parameter of a simulated OPTICAM-like night.

    Unset (``None``) parameters are resolved at construction to the value actually used, so the
    object (and ``truth/parameters.json``) records the full configuration.

    Parameters
    ----------
    filters : sequence of str
        One filter per camera, unique (default ``("g", "r", "i")``).
    cameras : sequence of str, optional
        Camera names, one per filter (default ``C1, C2, ...``).
    binning : int
        On-chip binning, written as ``BINNING = '{b}x{b}'`` (default 4).
    detector_shape : (int, int)
        Unbinned detector size ``(ny, nx)`` (default ``(2048, 2048)``).
    shape : (int, int), optional
        Frame shape ``(ny, nx)``; default ``detector_shape // binning`` (512 x 512).
    cadence : float
        Seconds between the starts of consecutive frames (default 1).
    exposure : float, optional
        Exposure time in seconds, ``0 < exposure <= cadence`` (default: the cadence).
    start_time : str or astropy.time.Time
        UTC start of frame 0 of camera 0 (default ``2024-01-01T00:00:00``).
    readout_offset : float
        Camera ``k`` starts each frame ``k * readout_offset`` seconds after the nominal time
        (default 2.5 ms): the cameras are not triggered at exactly the same instant.
    seed : int
        Seed of every random draw (default 1).
    gain : float
        Electrons per ADU (default 1.6).
    read_noise : float
        Read noise in electrons (default 5).
    bias_level : float
        Mean bias level in ADU (default 400). Each camera gets a fixed offset of a few ADU and a
        fixed 2-D structure.
    bias_structure : float
        RMS in ADU of the fixed bias pattern (column offsets and a smooth ramp; default 3).
    dark_current : float
        Dark current in electrons / s / pixel (default 0.5).
    saturation : int
        Largest ADU value (default 65535); larger values are clipped to it.
    prnu : float
        Pixel response non-uniformity: RMS of the pixel-to-pixel flat-field (default 0.01).
    vignetting : bool or float
        Fractional loss of response at the frame corners (radial, quadratic); ``True`` means 0.2,
        ``False`` 0 (default ``True``).
    hot_pixels, dead_pixels : int
        Number of hot pixels (extra dark current 50 to 2000 e-/s) and dead pixels (response
        below 5 %) per camera (default 0).
    sky : float, sequence or dict, optional
        Sky electrons per pixel per frame (before the flat) per filter (default
        :data:`DEFAULT_SKY`: g 150, r 200, i 250; 200 for other filters).
    sky_trend : float
        Fractional linear change of the sky over the run (default 0).
    fwhm : float
        Mean PSF FWHM in (binned) pixels (default 3).
    fwhm_scatter : float
        Fractional RMS of the FWHM over the run: a slow random walk plus frame-to-frame noise
        (default 0.1). Bluer filters have a slightly larger FWHM (+5 % per filter step).
    psf : {'gaussian', 'moffat'}
        PSF model (default ``'gaussian'``).
    beta : float
        Moffat index (default 2.5), > 1.
    ellipticity : float
        ``1 - b/a`` of the PSF, major axis along x (default 0).
    n_sources : int
        Number of stars (default 20).
    flux_range : (float, float)
        Log-uniform range of the stars' geometric-mean flux over the filters, in electrons per
        frame (default ``(1e3, 1e6)``). Stars brighter than ``peak_limit`` allows are drawn again
        below that limit.
    min_separation : float, optional
        Minimum distance between stars in pixels (default 5 FWHM).
    margin : float, optional
        Minimum distance in pixels between a star and the frame edge in every frame of every
        camera, drift included (default 5 FWHM).
    peak_limit : float
        The peak pixel of every star, at the smallest FWHM of the run, stays below
        ``peak_limit * saturation`` ADU (default 0.8) ...
    n_saturated : int
        ... except the ``n_saturated`` brightest stars, made bright enough to saturate in every
        frame (default 0).
    variable_index : int, 'auto' or None
        0-based id (brightness rank in the first filter) of the variable star; ``'auto'``
        (default) is the third brightest (2), or the faintest when there are fewer than three
        stars; ``None`` for no variable.
    variable_rms : float
        Fractional RMS of the sinusoid (default 0.02).
    variable_frequency : float
        Frequency in Hz (default 0.135).
    variable_lags : sequence or dict, optional
        Phase lag in radians per filter (default ``k * pi / 2`` for filter ``k``: 0, pi/2, pi).
    drift : float
        End-to-end pointing drift in pixels over the run (default 28).
    drift_angle : float, optional
        Direction of the drift in field coordinates, degrees from +x towards +y (default drawn
        from the seed, 20 to 70 deg from an axis, so that the cameras drift in clearly
        different pixel directions).
    field_rotation : float
        Rotation of the field about the frame centre over the run in degrees (default 0).
    jitter : float
        RMS per-axis jitter of each frame of each camera in pixels (default 0.4).
    camera_geometry : bool
        Give each camera its own fixed offset (up to 5 px), small rotation (up to 1.5 deg) and
        flip: none for C1, x for C2, y for C3, then again (default ``True``).
    cosmic_rays : float
        Mean number of cosmic rays per science frame (default 0); calibration frames get a
        number in proportion to their exposure.
    ra, dec : str
        Target coordinates as sexagesimal strings (default ``'01:00:00.00'``,
        ``'+25:00:00.0'``, high in the sky at SPM at the default start).
    object_name : str
        ``OBJECT`` keyword of the science frames.
    observatory : str
        ``OBSERVAT`` keyword (default ``'SPM'``).
    site : (float, float, float)
        Observatory longitude (deg, east positive), latitude (deg) and height (m), recorded in
        the truth and used for the airmass and the scintillation (default San Pedro Martir).
    preset : {'clean', 'realistic'}
        Name of the :data:`PRESETS` entry the parameters were resolved from (default
        ``'clean'``). Only :func:`resolve_parameters` (hence ``generate_*(preset=...)``) applies
        the preset's values; this field records it.
    beta_range : (float, float), optional
        Draw the Moffat ``beta`` of the night uniformly in this range (seeded; recorded as
        ``beta_night`` in ``parameters.json`` and per frame in ``conditions.ecsv``); ``None``
        (default) uses ``beta``.
    ellipticity_range : (float, float), optional
        Per-frame ellipticity ``1 - b/a`` following a slow random walk inside this range,
        common to the cameras; ``None`` (default) keeps the fixed ``ellipticity``.
    psf_angle : float
        Position angle of the PSF major axis at the start of the night, degrees from the field
        +x axis towards +y (default 0). In each camera the angle is mapped by the camera's
        orientation (flip, rotation).
    psf_angle_rotation : float
        Change of the PSF position angle over the run in degrees (default 0). A non-zero angle
        needs ``psf='moffat'``.
    pixel_scales : sequence of float, optional
        Unbinned pixel scale of each camera in arcsec/px, e.g. :data:`OPTICAM_PIXEL_SCALES`.
        Field coordinates, ``fwhm``, ``drift`` and separations are in pixels of the first
        camera; camera ``k`` sees them scaled by ``pixel_scales[0] / pixel_scales[k]``. ``None``
        (default): the same scale for all cameras.
    cosmic_ray_rate : float
        Cosmic-ray events per cm^2 of detector per minute of exposure, added to
        ``cosmic_rays`` (default 0; about 1 at sea level, 2 at 2800 m).
    pixel_size : float
        Unbinned pixel size in micrometres for ``cosmic_ray_rate`` (default 6.5, the Andor Zyla
        4.2 sCMOS of OPTICAM).
    saturated_hot_pixels : int
        Hot pixels with a dark current (2e5 to 1e6 e-/s) that saturates them in any
        exposure longer than 0.6 s (default 0); marked ``HOT`` in the detector truth.
    warm_pixels : int
        Pixels with an extra dark current of 5 to 50 e-/s (default 0); in ``DARK`` and in
        ``defects_C.ecsv`` only.
    hot_columns : int
        Whole columns with an extra dark current of 20 to 100 e-/s (default 0); marked ``HOT``.
    dead_columns : int
        Whole columns of response below 5 % (default 0); marked ``DEAD``.
    satellite_trails : int
        Satellite passes over the night (default 0). Each crosses the field at constant speed
        in 3 to 5 frames (every camera sees it at the same times); the first passes within 1
        FWHM of the variable star (or the brightest star when there is no variable).
    trail_brightness : float
        Electrons per pixel of trail length per frame, integrated across the trail, before the
        flat field (default 3000).
    n_pairs : int
        Companions added close to ``n_pairs`` randomly chosen stars (not the variable), at
        ``pair_separation`` and ``pair_delta_mag`` (default 0). Companions get the ids after
        the ``n_sources`` primary stars.
    pair_separation : (float, float)
        Range of the companion separations in units of ``fwhm`` (default (1, 3)).
    pair_delta_mag : (float, float)
        Range of the magnitude differences companion - primary (default (0, 3)).
    variable_companion : (float, float), optional
        ``(separation in fwhm, delta_mag)`` of a companion of the variable star (default
        ``None``: none).
    cloud_transparency : float
        Lowest transparency of a passing cloud (default 1: no cloud). A cloud with a smooth
        (cosine) edge and patchy interior covers ``cloud_duration`` of the run; the
        transparency is common to the cameras (grey) and multiplies the stars (not the sky).
    cloud_duration : float
        Fraction of the run covered by the cloud (default 0.2).
    scintillation : bool
        Multiply each star's flux in each frame by ``1 + sigma N(0, 1)`` with the
        scintillation ``sigma`` of :func:`data_generator.scintillation.scintillation_sigma`
        (independent per star, camera and frame; default False).
    telescope_diameter : float
        Telescope diameter in metres for the scintillation (default 2.1, the SPM 2.1 m).
    scintillation_coefficient : float
        The empirical ``C_Y`` of Osborn et al. (2015) (default 1.5).
    camera_keyword : bool
        Write the ``CAMERA`` keyword in the headers (default True).
    camera_in_names : bool
        Start the file names with the camera: ``{camera}_{filter}_{i:06d}.fits``; False writes
        ``{filter}_{i:06d}.fits`` (default True).
    camera_folders : bool
        Write the frames of camera ``k`` into the sub-directory ``c{k+1}/`` (default False).

    Raises
    ------
    ValueError
        If a parameter is out of range; the message names it.
    """

    filters: tuple = ("g", "r", "i")
    cameras: tuple | None = None
    binning: int = 4
    detector_shape: tuple = (2048, 2048)
    shape: tuple | None = None
    cadence: float = 1.0
    exposure: float | None = None
    start_time: str = "2024-01-01T00:00:00"
    readout_offset: float = 0.0025
    seed: int = 1
    gain: float = 1.6
    read_noise: float = 5.0
    bias_level: float = 400.0
    bias_structure: float = 3.0
    dark_current: float = 0.5
    saturation: int = 65535
    prnu: float = 0.01
    vignetting: float | bool = True
    hot_pixels: int = 0
    dead_pixels: int = 0
    sky: object = None
    sky_trend: float = 0.0
    fwhm: float = 3.0
    fwhm_scatter: float = 0.1
    psf: str = "gaussian"
    beta: float = 2.5
    ellipticity: float = 0.0
    n_sources: int = 20
    flux_range: tuple = (1e3, 1e6)
    min_separation: float | None = None
    margin: float | None = None
    peak_limit: float = 0.8
    n_saturated: int = 0
    variable_index: int | str | None = "auto"
    variable_rms: float = 0.02
    variable_frequency: float = 0.135
    variable_lags: object = None
    drift: float = 28.0
    drift_angle: float | None = None
    field_rotation: float = 0.0
    jitter: float = 0.4
    camera_geometry: bool = True
    cosmic_rays: float = 0.0
    ra: str = "01:00:00.00"
    dec: str = "+25:00:00.0"
    object_name: str = "SYNTHETIC"
    observatory: str = "SPM"
    site: tuple = (-115.4636, 31.0442, 2790.0)
    preset: str = "clean"
    beta_range: tuple | None = None
    ellipticity_range: tuple | None = None
    psf_angle: float = 0.0
    psf_angle_rotation: float = 0.0
    pixel_scales: tuple | None = None
    cosmic_ray_rate: float = 0.0
    pixel_size: float = 6.5
    saturated_hot_pixels: int = 0
    warm_pixels: int = 0
    hot_columns: int = 0
    dead_columns: int = 0
    satellite_trails: int = 0
    trail_brightness: float = 3000.0
    n_pairs: int = 0
    pair_separation: tuple = (1.0, 3.0)
    pair_delta_mag: tuple = (0.0, 3.0)
    variable_companion: tuple | None = None
    cloud_transparency: float = 1.0
    cloud_duration: float = 0.2
    scintillation: bool = False
    telescope_diameter: float = 2.1
    scintillation_coefficient: float = 1.5
    camera_keyword: bool = True
    camera_in_names: bool = True
    camera_folders: bool = False

    def __post_init__(self):
        resolved = {}
        filters = tuple(str(f) for f in np.atleast_1d(self.filters))
        _require(len(filters) > 0, "filters: at least one filter is needed")
        _require(len(set(filters)) == len(filters), f"filters: must be unique, got {filters}")
        resolved["filters"] = filters
        cameras = (tuple(f"C{k + 1}" for k in range(len(filters))) if self.cameras is None
                   else tuple(str(c) for c in np.atleast_1d(self.cameras)))
        _require(len(cameras) == len(filters),
                 f"cameras: {len(cameras)} names for {len(filters)} filters")
        _require(len(set(cameras)) == len(cameras), f"cameras: must be unique, got {cameras}")
        resolved["cameras"] = cameras

        _require(int(self.binning) == self.binning and self.binning >= 1,
                 f"binning: must be a positive integer, got {self.binning}")
        detector_shape = tuple(int(n) for n in self.detector_shape)
        _require(len(detector_shape) == 2 and min(detector_shape) >= 1,
                 f"detector_shape: must be two positive integers, got {self.detector_shape}")
        shape = (tuple(n // int(self.binning) for n in detector_shape) if self.shape is None
                 else tuple(int(n) for n in self.shape))
        _require(len(shape) == 2 and min(shape) >= 16,
                 f"shape: must be (ny, nx) with both >= 16, got {shape}")
        resolved.update(binning=int(self.binning), detector_shape=detector_shape, shape=shape)

        _require(self.cadence > 0, f"cadence: must be > 0 s, got {self.cadence}")
        exposure = float(self.cadence if self.exposure is None else self.exposure)
        _require(0 < exposure <= self.cadence,
                 f"exposure: must be in (0, cadence={self.cadence}] s, got {exposure}")
        resolved.update(cadence=float(self.cadence), exposure=exposure)
        try:
            start = Time(self.start_time, scale="utc")
        except ValueError as error:
            raise ValueError(f"start_time: cannot parse {self.start_time!r}: {error}") from None
        start.precision = 6
        resolved["start_time"] = start.isot
        _require(self.readout_offset >= 0,
                 f"readout_offset: must be >= 0 s, got {self.readout_offset}")
        _require(int(self.seed) == self.seed and self.seed >= 0,
                 f"seed: must be a non-negative integer, got {self.seed}")
        resolved["seed"] = int(self.seed)

        for name in ("gain", "fwhm"):
            _require(getattr(self, name) > 0, f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("read_noise", "bias_structure", "dark_current", "prnu", "fwhm_scatter",
                     "jitter", "drift", "cosmic_rays"):
            _require(getattr(self, name) >= 0, f"{name}: must be >= 0, got {getattr(self, name)}")
        _require(0 <= self.bias_level < self.saturation,
                 f"bias_level: must be in [0, saturation), got {self.bias_level}")
        _require(0 < self.saturation <= 65535,
                 f"saturation: must be in (0, 65535] ADU, got {self.saturation}")
        vignetting = (_DEFAULT_VIGNETTING if self.vignetting is True
                      else 0.0 if self.vignetting is False else float(self.vignetting))
        _require(0 <= vignetting < 1, f"vignetting: must be in [0, 1), got {self.vignetting}")
        resolved["vignetting"] = vignetting
        n_pixels = shape[0] * shape[1]
        for name in ("hot_pixels", "dead_pixels", "n_saturated"):
            value = getattr(self, name)
            _require(int(value) == value and 0 <= value,
                     f"{name}: must be a non-negative integer, got {value}")
            resolved[name] = int(value)
        _require(self.hot_pixels + self.dead_pixels <= n_pixels // 10,
                 "hot_pixels + dead_pixels: must be at most 10 % of the pixels")

        resolved["sky"] = _per_filter("sky", self.sky, filters,
                                      lambda k, f: DEFAULT_SKY.get(f, _OTHER_SKY))
        _require(min(resolved["sky"].values()) >= 0, "sky: must be >= 0 electrons")
        _require(self.sky_trend > -1, f"sky_trend: must be > -1, got {self.sky_trend}")
        _require(self.psf in ("gaussian", "moffat"),
                 f"psf: must be 'gaussian' or 'moffat', got {self.psf!r}")
        _require(self.psf != "moffat" or self.beta > 1, f"beta: must be > 1, got {self.beta}")
        _require(0 <= self.ellipticity < 0.5,
                 f"ellipticity: must be in [0, 0.5), got {self.ellipticity}")

        _require(int(self.n_sources) == self.n_sources and self.n_sources >= 1,
                 f"n_sources: must be a positive integer, got {self.n_sources}")
        resolved["n_sources"] = int(self.n_sources)
        flux_range = tuple(float(f) for f in self.flux_range)
        _require(len(flux_range) == 2 and 0 < flux_range[0] <= flux_range[1],
                 f"flux_range: must be (low, high) with 0 < low <= high, got {self.flux_range}")
        resolved["flux_range"] = flux_range
        _require(self.n_saturated <= self.n_sources,
                 f"n_saturated: must be <= n_sources, got {self.n_saturated}")
        _require(0 < self.peak_limit <= 1, f"peak_limit: must be in (0, 1], got {self.peak_limit}")
        resolved["min_separation"] = float(5 * self.fwhm if self.min_separation is None
                                           else self.min_separation)
        resolved["margin"] = float(5 * self.fwhm if self.margin is None else self.margin)
        _require(resolved["min_separation"] >= 0 and resolved["margin"] >= 0,
                 "min_separation, margin: must be >= 0 pixels")
        if self.variable_index == "auto":
            resolved["variable_index"] = min(2, resolved["n_sources"] - 1)
        elif self.variable_index is not None:
            _require(not isinstance(self.variable_index, str)
                     and int(self.variable_index) == self.variable_index
                     and 0 <= self.variable_index < self.n_sources,
                     f"variable_index: must be in [0, n_sources), got {self.variable_index}")
            resolved["variable_index"] = int(self.variable_index)
        _require(self.variable_rms >= 0 and self.variable_rms * math.sqrt(2) < 1,
                 f"variable_rms: must be in [0, 1/sqrt(2)), got {self.variable_rms}")
        _require(self.variable_frequency >= 0,
                 f"variable_frequency: must be >= 0 Hz, got {self.variable_frequency}")
        resolved["variable_lags"] = _per_filter("variable_lags", self.variable_lags, filters,
                                                lambda k, f: k * math.pi / 2)

        if self.drift_angle is None:
            rng = random_stream(self.seed, Stream.GEOMETRY, 0)
            drift_angle = rng.uniform(20, 70) + 90 * rng.integers(4)
        else:
            drift_angle = self.drift_angle
        resolved["drift_angle"] = float(drift_angle)
        for name in ("ra", "dec"):
            unit = "hourangle" if name == "ra" else "deg"
            try:
                Angle(getattr(self, name), unit=unit)
            except ValueError as error:
                raise ValueError(f"{name}: not a sexagesimal angle: {error}") from None
        site = tuple(float(v) for v in self.site)
        _require(len(site) == 3, f"site: must be (lon_deg, lat_deg, height_m), got {self.site}")
        resolved["site"] = site
        resolved.update(self._realism(filters, shape))
        for name, value in resolved.items():
            object.__setattr__(self, name, value)

    def _realism(self, filters, shape):
        """Validate the fields of the realistic effects; return their resolved values."""
        resolved = {}
        n_pixels = shape[0] * shape[1]
        _require(self.preset in PRESETS,
                 f"preset: must be one of {sorted(PRESETS)}, got {self.preset!r}")
        for name, low, high in (("beta_range", 1.0, math.inf),
                                ("ellipticity_range", 0.0, 0.5)):
            value = getattr(self, name)
            if value is not None:
                value = tuple(float(v) for v in value)
                _require(len(value) == 2 and low <= value[0] <= value[1] < high
                         and (low == 0.0 or value[0] > low),
                         f"{name}: must be (low, high) inside ({low}, {high}), "
                         f"got {getattr(self, name)}")
                resolved[name] = value
        _require(not self.psf_rotates or self.psf == "moffat",
                 "psf_angle, psf_angle_rotation, ellipticity_range: need psf='moffat'")
        _require(self.beta_range is None or self.psf == "moffat", "beta_range: needs psf='moffat'")
        if self.pixel_scales is not None:
            scales = tuple(float(v) for v in np.atleast_1d(self.pixel_scales))
            _require(len(scales) == len(filters) and min(scales) > 0,
                     f"pixel_scales: must be {len(filters)} positive values, got "
                     f"{self.pixel_scales}")
            resolved["pixel_scales"] = scales
        for name in ("cosmic_ray_rate", "trail_brightness"):
            _require(getattr(self, name) >= 0, f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("pixel_size", "telescope_diameter", "scintillation_coefficient"):
            _require(getattr(self, name) > 0, f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("saturated_hot_pixels", "warm_pixels", "hot_columns", "dead_columns",
                     "satellite_trails", "n_pairs"):
            value = getattr(self, name)
            _require(not isinstance(value, bool) and int(value) == value and value >= 0,
                     f"{name}: must be a non-negative integer, got {value}")
            resolved[name] = int(value)
        _require(self.saturated_hot_pixels + self.warm_pixels <= n_pixels // 10,
                 "saturated_hot_pixels + warm_pixels: must be at most 10 % of the pixels")
        _require(self.hot_columns + self.dead_columns <= shape[1] // 10,
                 "hot_columns + dead_columns: must be at most 10 % of the columns")
        for name, low, high in (("pair_separation", 0.0, math.inf),
                                ("pair_delta_mag", -math.inf, math.inf)):
            value = tuple(float(v) for v in getattr(self, name))
            _require(len(value) == 2 and low <= value[0] <= value[1] < high,
                     f"{name}: must be (low, high) with low <= high, got {getattr(self, name)}")
            resolved[name] = value
        _require(resolved["pair_delta_mag"][0] >= 0,
                 "pair_delta_mag: companions must be fainter (delta_mag >= 0)")
        if self.variable_companion is not None:
            value = tuple(float(v) for v in self.variable_companion)
            _require(len(value) == 2 and value[0] > 0 and value[1] >= 0,
                     "variable_companion: must be (separation_fwhm > 0, delta_mag >= 0), got "
                     f"{self.variable_companion}")
            _require(self.variable_index is not None,
                     "variable_companion: the night has no variable star")
            resolved["variable_companion"] = value
        _require(self.n_pairs <= self.n_sources - (self.variable_index is not None),
                 f"n_pairs: at most one companion per non-variable star, got {self.n_pairs}")
        _require(0 < self.cloud_transparency <= 1,
                 f"cloud_transparency: must be in (0, 1], got {self.cloud_transparency}")
        _require(0 < self.cloud_duration <= 1,
                 f"cloud_duration: must be in (0, 1], got {self.cloud_duration}")
        for name in ("scintillation", "camera_keyword", "camera_in_names", "camera_folders"):
            resolved[name] = bool(getattr(self, name))
        return resolved

    @property
    def psf_rotates(self):
        """Whether the PSF's position angle is set (``psf_angle``, ``psf_angle_rotation`` or
        ``ellipticity_range``); otherwise the major axis stays along x in every camera."""
        return (self.psf_angle % 180 != 0 or self.psf_angle_rotation != 0
                or self.ellipticity_range is not None)

    def camera_scale(self, camera_index):
        """Pixels of camera ``camera_index`` per field pixel: ``pixel_scales[0] /
        pixel_scales[k]`` (1 without ``pixel_scales``)."""
        if self.pixel_scales is None:
            return 1.0
        return self.pixel_scales[0] / self.pixel_scales[camera_index]

    @property
    def n_cameras(self):
        """Number of cameras (= number of filters)."""
        return len(self.cameras)

    @property
    def start(self):
        """`~astropy.time.Time`: the UTC start of the night (frame 0 of camera 0)."""
        return Time(self.start_time, scale="utc", precision=6)

    def to_dict(self):
        """The parameters as a JSON-serialisable dict (tuples become lists)."""
        return json_safe(dataclasses.asdict(self))


def json_safe(value):
    """``value`` with tuples turned into lists and numpy scalars into Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def resolve_parameters(parameters=None, **overrides):
    """Build the :class:`SimulationParameters` of a call.

    Parameters
    ----------
    parameters : SimulationParameters or dict, optional
        A base set of parameters, e.g. ``load_truth(d).parameters`` of an earlier night (its
        :data:`RECORD_KEYS` are ignored).
    **overrides
        Fields of :class:`SimulationParameters` to set. ``preset=NAME`` first sets the values of
        ``PRESETS[NAME]`` (over the base), then the other overrides apply. A base value derived
        from an overridden field (e.g. ``shape`` from ``binning``, ``exposure`` from
        ``cadence``) is derived again unless it is overridden too.

    Returns
    -------
    SimulationParameters

    Raises
    ------
    TypeError
        If a keyword is not a field of :class:`SimulationParameters`.
    ValueError
        If a value is out of range.
    """
    names = {field.name for field in dataclasses.fields(SimulationParameters)}
    if isinstance(parameters, SimulationParameters):
        base = {name: getattr(parameters, name) for name in names}
    else:
        base = {k: v for k, v in dict(parameters or {}).items() if k not in RECORD_KEYS}
    unknown = sorted((set(base) | set(overrides)) - names)
    if unknown:
        raise TypeError(f"unknown simulation parameter(s) {unknown}; "
                        f"valid names are {sorted(names)}")
    preset = overrides.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"preset: must be one of {sorted(PRESETS)}, got {preset!r}")
        overrides = {**PRESETS[preset], **overrides}
    for name, sources in _DERIVED.items():
        if name not in overrides and any(source in overrides for source in sources):
            base.pop(name, None)
    base.update(overrides)
    return SimulationParameters(**base)


def check_n_images(n_images):
    """Validate a number of frames per camera.

    Parameters
    ----------
    n_images : int

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If ``n_images`` is not a positive integer.
    """
    if isinstance(n_images, bool) or int(n_images) != n_images or n_images < 1:
        raise ValueError(f"n_images: must be a positive integer, got {n_images!r}")
    return int(n_images)
