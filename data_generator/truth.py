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
    One row per star (``id`` 0-based = rank of the flux in the first filter): ``id,
    is_variable`` and for every filter ``x_F, y_F`` (position in frame 0 of that filter's
    camera) and ``flux_F`` (mean electrons per frame; ``F0`` for the variable).
``fluxes_F.fits``
    Binary table, one row per frame of filter ``F``: ``frame`` (int), ``file``, ``t_mid`` (s) and
    per-star vector columns of length ``n_sources``: ``x, y`` (0-based pixel position, centre
    of pixel ``[0, 0]`` at ``(0, 0)``), ``flux`` (expected electrons injected in the frame,
    before the flat field: exposure-integrated variability included, PSF truncation to the
    stamp included; the Poisson draw is not), ``saturated`` (a pixel of the star's stamp is at
    the saturation level). Reading it gives ``flux`` of shape ``(n_frames, n_sources)``.
``cosmic_rays_F.ecsv``
    One row per pixel hit: ``frame, ray, x, y`` (int) and ``electrons`` (deposited charge).
``detector_C.fits``
    The true ``FLAT``, ``BIAS`` (ADU), ``DARK`` (e-/s/px), ``HOT`` and ``DEAD`` maps.
``{kind}_parameters.json``, ``{kind}_frames.ecsv``, ``{kind}_cosmic_rays_F.ecsv``
    The same for calibration frames (``kind`` = bias, dark, flat) written by the calibration
    generators into their own output directory; ``{kind}_frames.ecsv`` has ``file, camera,
    filter, index, t_start, exposure, level_e`` (flat illumination in e-/px before the flat
    field, 0 otherwise) and ``n_cosmic_rays``.
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
            if name.removesuffix(".gz").removesuffix(".fits") == stem:
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
        ``cosmic_rays(filter, kind=None)``, ``detector(camera)``, ``positions(filter, frame)``,
        ``variable_position(filter, frame)``, ``frame_position(filter, file)``,
        ``calibration_frames(kind)``, ``calibration_parameters(kind)``.

    Raises
    ------
    FileNotFoundError
        If there is no ``truth`` folder (or, on access, no such truth file).
    """
    return Truth(out_directory)
