"""The known truth of a generated night, on disk in ``{out_directory}/truth/``, and its reader.

Files (``F`` = filter, ``C`` = camera):

``parameters.json``
    Every simulation parameter (resolved) plus ``n_images`` and the package version.
``frames.ecsv``
    One row per science frame: ``file, camera, filter, index, t_start`` (UTC ISO string with
    microseconds, the header time), ``t_mid`` (s since the night start), ``exposure`` (s),
    ``dx, dy`` (px), ``rotation`` (deg), ``fwhm`` (px), ``sky_e`` (e-/px before the flat),
    ``n_cosmic_rays``. Pixel position of a star in frame ``i`` of a camera:
    ``pos_i = c + R(rotation_i) (pos_0 - c) + (dx_i, dy_i)`` with ``c = ((nx-1)/2, (ny-1)/2)``
    and ``pos_0`` the position in that camera's frame 0; with no rotation
    ``pos_i = pos_0 + (dx_i, dy_i)``.
``sources.ecsv``
    One row per star (``id`` 0-based = rank of the flux in the first filter among the
    ``n_sources`` primary stars; companions, see ``field.ecsv``, follow): ``id,
    is_variable`` and for every filter ``x_F, y_F`` (position in frame 0 of that filter's
    camera) and ``flux_F`` (mean electrons per frame; ``F0`` for the variable).
``fluxes_F.fits``
    Binary table, one row per frame of filter ``F``: ``frame`` (int), ``file``, ``t_mid`` (s) and
    per-star vector columns of length ``n_sources``: ``x, y`` (0-based pixel position, centre
    of pixel ``[0, 0]`` at ``(0, 0)``), ``flux`` (expected electrons injected in the frame,
    before the flat field: exposure-integrated variability, scintillation factor, cloud
    transparency and PSF truncation to the stamp included; the Poisson draw is not; a
    satellite trail's light is not), ``saturated`` (a pixel of the star's stamp is at
    the saturation level). Reading it gives ``flux`` of shape ``(n_frames, n_sources)``.
``cosmic_rays_F.ecsv``
    One row per pixel hit: ``frame, ray, x, y`` (int) and ``electrons`` (deposited charge).
``detector_C.fits``
    The true ``FLAT``, ``BIAS`` (ADU), ``DARK`` (e-/s/px), ``HOT`` and ``DEAD`` maps (``HOT``
    includes saturated hot pixels and hot columns, ``DEAD`` dead columns; warm pixels are only
    in ``DARK``).
``defects_C.ecsv``
    One row per defective pixel of camera ``C``: ``kind`` (``hot, saturated_hot, warm,
    hot_column, dead, dead_column``), ``x, y``, ``dark`` (e-/s), ``response`` (flat value).
``conditions.ecsv``
    One row per science frame (same order as ``frames.ecsv``): ``file, camera, filter,
    index``, ``fwhm`` (geometric mean, px of that camera), ``fwhm_major, fwhm_minor`` (px),
    ``beta`` (Moffat index of the night), ``ellipticity`` (``1 - minor/major``), ``theta``
    (deg, major axis from +x towards +y in the frame; 0 when the PSF is not rotated),
    ``transparency`` (fraction of the stars' light through the clouds), ``airmass``,
    ``scintillation`` (relative RMS sigma of each star's flux; 0 when off), ``a11, a12, a21,
    a22, tx, ty``: the true transform of field coordinates (``field.ecsv``) to the frame's
    pixels ``(x, y) = A (x_f, y_f) + t``, and ``n_trails`` (satellite segments in the frame).
``field.ecsv``
    One row per star: ``id, x, y`` (field coordinates = pixels of an ideal first camera),
    ``primary`` (id of the star a companion belongs to, -1 for none), ``separation`` (in units
    of the ``fwhm`` parameter) and ``delta_mag`` (companion - primary, every filter).
``trails.ecsv``
    One row per satellite segment and frame (:func:`data_generator.trails.trail_table`):
    ``trail, camera, filter, frame, x0, y0, x1, y1, fwhm, flux_per_length, peak,
    variable_distance``.
``scintillation_F.fits``
    Binary table, one row per frame of ``F``: ``frame``, ``sigma`` and the vector ``factor``
    (n_sources) that multiplied each star's flux (1 without scintillation). The ``flux`` of
    ``fluxes_F.fits`` includes these factors and the transparency.
``{kind}_parameters.json``, ``{kind}_frames.ecsv``, ``{kind}_cosmic_rays_F.ecsv``
    The same for calibration frames (``kind`` = bias, dark, flat) written by the calibration
    generators into their own output directory; ``{kind}_frames.ecsv`` has ``file, camera,
    filter, index, t_start, exposure, level_e`` (flat illumination in e-/px before the flat
    field, 0 otherwise) and ``n_cosmic_rays``.

Frame paths (``file`` columns) are relative to the output directory: ``c1/g_000000.fits``
with ``camera_folders``, ``g_000000.fits`` without ``camera_in_names``.
"""

import json
from functools import cached_property
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

__all__ = ["Truth", "load_truth", "write_json", "TRUTH_FOLDER"]

TRUTH_FOLDER = "truth"


def write_json(path, content):
    """Write a JSON file (indented, keys in insertion order)."""
    Path(path).write_text(json.dumps(content, indent=2) + "\n")


class Truth:
    """Lazy reader of the truth of a generated night.

    Parameters
    ----------
    directory : path-like
        The generator's output directory (holding ``truth/``).

    Raises
    ------
    FileNotFoundError
        If ``directory/truth`` does not exist.
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        self.path = self.directory / TRUTH_FOLDER
        if not self.path.is_dir():
            raise FileNotFoundError(f"no truth folder {self.path}: not a generated night")
        self._fluxes = {}

    def _file(self, name):
        path = self.path / name
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        return path

    @cached_property
    def parameters(self):
        """dict: ``parameters.json`` (science) — every simulation parameter and ``n_images``."""
        return json.loads(self._file("parameters.json").read_text())

    @cached_property
    def frames(self):
        """`~astropy.table.Table`: ``frames.ecsv``, one row per science frame."""
        return Table.read(self._file("frames.ecsv"))

    @cached_property
    def sources(self):
        """`~astropy.table.Table`: ``sources.ecsv``, one row per star."""
        return Table.read(self._file("sources.ecsv"))

    def fluxes(self, band):
        """`~astropy.table.Table`: ``fluxes_{band}.fits`` (vector columns, see module doc)."""
        if band not in self._fluxes:
            self._fluxes[band] = Table.read(self._file(f"fluxes_{band}.fits"),
                                            character_as_bytes=False)
        return self._fluxes[band]

    def cosmic_rays(self, band, kind=None):
        """`~astropy.table.Table`: pixels hit by cosmic rays in the frames of ``band``.

        Parameters
        ----------
        band : str
            Filter.
        kind : {None, 'dark', 'flat'}
            ``None`` for the science frames, else calibration frames of that kind.
        """
        prefix = f"{kind}_" if kind else ""
        return Table.read(self._file(f"{prefix}cosmic_rays_{band}.ecsv"))

    def detector(self, camera):
        """dict of ndarray (ny, nx): ``flat``, ``bias`` (ADU), ``dark`` (e-/s/px), ``hot`` and
        ``dead`` (bool) of a camera."""
        with fits.open(self._file(f"detector_{camera}.fits")) as hdulist:
            maps = {name.lower(): hdulist[name].data.astype(
                        hdulist[name].data.dtype.newbyteorder("="))
                    for name in ("FLAT", "BIAS", "DARK", "HOT", "DEAD")}
        maps["hot"] = maps["hot"].astype(bool)
        maps["dead"] = maps["dead"].astype(bool)
        return maps

    @cached_property
    def conditions(self):
        """`~astropy.table.Table`: ``conditions.ecsv``, PSF, atmosphere and true transform per
        science frame."""
        return Table.read(self._file("conditions.ecsv"))

    @cached_property
    def field(self):
        """`~astropy.table.Table`: ``field.ecsv``, field coordinates and companions per star."""
        return Table.read(self._file("field.ecsv"))

    @property
    def pairs(self):
        """`~astropy.table.Table`: the rows of :attr:`field` that are companions (``id`` of the
        companion, ``primary``, ``separation`` in fwhm, ``delta_mag``)."""
        return self.field[self.field["primary"] >= 0]

    @cached_property
    def trails(self):
        """`~astropy.table.Table`: ``trails.ecsv``, satellite segments per frame."""
        return Table.read(self._file("trails.ecsv"))

    def defects(self, camera):
        """`~astropy.table.Table`: ``defects_{camera}.ecsv``, one row per defective pixel."""
        return Table.read(self._file(f"defects_{camera}.ecsv"))

    def scintillation(self, band):
        """`~astropy.table.Table`: ``scintillation_{band}.fits`` (``frame, sigma, factor``)."""
        return Table.read(self._file(f"scintillation_{band}.fits"))

    def transform(self, band, frame):
        """True affine map of field coordinates to the pixels of a frame.

        Parameters
        ----------
        band : str
            Filter.
        frame : int
            Frame index.

        Returns
        -------
        (ndarray (2, 2), ndarray (2,))
            ``A, t`` with pixel ``(x, y) = A @ (x_f, y_f) + t``.
        """
        rows = self.conditions[(self.conditions["filter"] == band)
                               & (self.conditions["index"] == frame)]
        if not len(rows):
            raise KeyError(f"no {band} frame {frame} in the truth")
        row = rows[0]
        matrix = np.array([[row["a11"], row["a12"]], [row["a21"], row["a22"]]], float)
        return matrix, np.array([row["tx"], row["ty"]], float)

    def relative_transform(self, band, frame, reference_band, reference_frame):
        """True affine map from the pixels of a reference frame to those of a frame.

        Parameters
        ----------
        band : str
            Filter of the frame.
        frame : int
            Frame index.
        reference_band : str
            Filter (camera) of the reference frame; another camera gives the inter-camera
            map (flip, rotation, pixel scale).
        reference_frame : int
            Index of the reference frame.

        Returns
        -------
        (ndarray (2, 2), ndarray (2,))
            ``M, t`` with ``pos_frame = M @ pos_reference + t``.
        """
        matrix, offset = self.transform(band, frame)
        reference, reference_offset = self.transform(reference_band, reference_frame)
        inverse = np.linalg.inv(reference)
        return matrix @ inverse, offset - matrix @ inverse @ reference_offset

    def frame_position(self, band, file):
        """Index of a frame in the sequence of its filter.

        Parameters
        ----------
        band : str
            Filter.
        file : path-like
            The frame (its name is matched, whatever its folder or compression suffix).

        Returns
        -------
        int

        Raises
        ------
        KeyError
            If no frame of ``band`` has that name.
        """
        stem = Path(file).name.removesuffix(".gz").removesuffix(".fits")
        frames = self.frames[self.frames["filter"] == band]
        for name, index in zip(frames["file"], frames["index"]):
            if Path(name).name.removesuffix(".gz").removesuffix(".fits") == stem:
                return int(index)
        raise KeyError(f"no {band} frame named {Path(file).name} in the truth")

    def positions(self, band, frame):
        """ndarray (n_sources, 2): true ``(x, y)`` of every star in frame ``frame`` of ``band``."""
        fluxes = self.fluxes(band)
        return np.stack([fluxes["x"][frame], fluxes["y"][frame]], axis=1)

    def variable_position(self, band, frame):
        """(float, float): true ``(x, y)`` of the variable star in frame ``frame`` of ``band``.

        Raises
        ------
        ValueError
            If the night has no variable star.
        """
        ids = np.flatnonzero(self.sources["is_variable"])
        if not len(ids):
            raise ValueError("this night has no variable star")
        x, y = self.positions(band, frame)[ids[0]]
        return float(x), float(y)

    def calibration_frames(self, kind):
        """`~astropy.table.Table`: ``{kind}_frames.ecsv`` of calibration frames."""
        return Table.read(self._file(f"{kind}_frames.ecsv"))

    def calibration_parameters(self, kind):
        """dict: ``{kind}_parameters.json`` of calibration frames."""
        return json.loads(self._file(f"{kind}_parameters.json").read_text())


def load_truth(out_directory):
    """Read the truth of a generated night (or of generated calibration frames).

    Parameters
    ----------
    out_directory : path-like
        Directory given to ``generate_observations`` (or a calibration generator).

    Returns
    -------
    Truth
        Lazy accessors: ``parameters``, ``frames``, ``sources``, ``fluxes(filter)``,
        ``cosmic_rays(filter, kind=None)``, ``detector(camera)``, ``defects(camera)``,
        ``conditions``, ``field``, ``pairs``, ``trails``, ``scintillation(filter)``,
        ``transform(filter, frame)``, ``relative_transform(filter, frame, reference_filter,
        reference_frame)``, ``positions(filter, frame)``,
        ``variable_position(filter, frame)``, ``frame_position(filter, file)``,
        ``calibration_frames(kind)``, ``calibration_parameters(kind)``.

    Raises
    ------
    FileNotFoundError
        If there is no ``truth`` folder (or, on access, no such truth file).
    """
    return Truth(out_directory)
