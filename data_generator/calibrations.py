"""Calibration frames (bias, dark, twilight flat) of the same detectors as the night.

Given the same seed and detector parameters as :func:`generate_observations`, the frames share
its bias level and structure, dark current and hot pixels, flat field (PRNU, vignetting, dead
pixels) per camera; their noise is drawn from their own streams. Frames are named
``{camera}_{filter}_{kind}_{i:06d}.fits`` and carry ``IMAGETYP = kind``.

* Bias: zero exposure (no light, no dark current, no cosmic rays), taken 2 h before the night.
* Dark: closed shutter, ``exposure`` seconds (default: the science exposure), 1.5 h before.
* Flat: uniform twilight illumination of ``level`` ADU above the bias on a pixel of unit
  response, fading by a factor ``decay`` from one flat to the next, 1 h before the night.

Cosmic rays hit darks and flats at the science rate scaled by the exposure time.
"""

from pathlib import Path

import numpy as np
from astropy.table import Table
from tqdm.auto import tqdm

from .cosmic_rays import cosmic_ray_mean, cosmic_ray_table, draw_cosmic_rays
from .detector import Detector
from .files import (GeneratedFrames, detector_needs_writing, frame_path, frame_patterns,
                    prepare_directory, write_detector, write_frame)
from .headers import frame_header, start_times
from .parameters import check_n_images, resolve_parameters
from .streams import Stream, random_stream
from .truth import TRUTH_FOLDER, write_json

__all__ = ["generate_biases", "generate_darks", "generate_flats"]

_STREAMS = {"bias": Stream.BIAS, "dark": Stream.DARK, "flat": Stream.FLAT}
_BEFORE_NIGHT = {"bias": 7200.0, "dark": 5400.0, "flat": 3600.0}
"""Seconds between the first calibration frame and the night start."""


def _generate(kind, out_directory, n_images, exposure, levels, parameters, overwrite,
              compress, progress, kwargs):
    p = resolve_parameters(parameters, **kwargs)
    directory = Path(out_directory)
    truth_directory = directory / TRUTH_FOLDER
    detectors = [Detector(p, k) for k in range(p.n_cameras)]
    names = [[frame_path(p, k, i, kind, compress) for i in range(n_images)]
             for k in range(p.n_cameras)]
    truth_files = ([f"{kind}_parameters.json", f"{kind}_frames.ecsv"]
                   + [f"{kind}_cosmic_rays_{band}.ecsv" for band in p.filters])
    detector_paths = [truth_directory / f"detector_{camera}.fits" for camera in p.cameras]
    rewrite_detector = [detector_needs_writing(path, detector, overwrite)
                        for path, detector in zip(detector_paths, detectors)]
    stale = frame_patterns(p, directory, kind)
    stale.append((truth_directory, rf"{kind}_(parameters\.json|frames\.ecsv|cosmic_rays_.+\.ecsv)"))
    prepare_directory(directory,
                      [directory / n for row in names for n in row]
                      + [truth_directory / n for n in truth_files], overwrite, stale)
    for path, detector, needed in zip(detector_paths, detectors, rewrite_detector):
        if needed:
            write_detector(path, detector)

    cadence = max(p.cadence, exposure)
    mean_rays = cosmic_ray_mean(p, exposure)
    rows, files = [], []
    bar = tqdm(total=p.n_cameras * n_images, desc=f"Generating {kind} frames", unit="frame",
               disable=not progress)
    for k, (camera, band, detector) in enumerate(zip(p.cameras, p.filters, detectors)):
        offsets = np.round((np.arange(n_images) * cadence + k * p.readout_offset
                            - _BEFORE_NIGHT[kind]) * 1e6) / 1e6
        iso, isot = start_times(p, offsets)
        hits = []
        for i in range(n_images):
            rng = random_stream(p.seed, _STREAMS[kind], k, i)
            rays = draw_cosmic_rays(rng, mean_rays, p.shape)
            frame = detector.read_out(levels[i], exposure, rng, rays)
            path = directory / names[k][i]
            write_frame(path, frame, frame_header(p, k, kind, exposure, iso[i], isot[i], kind))
            files.append(path)
            hits.append(rays)
            rows.append((names[k][i], camera, band, i, isot[i], exposure, levels[i], rays.n_rays))
            bar.update()
        cosmic_ray_table(hits).write(truth_directory / f"{kind}_cosmic_rays_{band}.ecsv",
                                     overwrite=True)
    bar.close()
    Table(rows=rows, names=("file", "camera", "filter", "index", "t_start", "exposure",
                            "level_e", "n_cosmic_rays")).write(
        truth_directory / f"{kind}_frames.ecsv", overwrite=True)
    record = p.to_dict()
    record.update(n_images=n_images, kind=kind, calibration_exposure=exposure)
    write_json(truth_directory / f"{kind}_parameters.json", record)
    return GeneratedFrames(directory=directory, files=files, truth_directory=truth_directory,
                           parameters=p, n_images=n_images, kind=kind)


def generate_biases(out_directory, n_images=10, *, parameters=None, overwrite=False,
                    compress=False, progress=True, **kwargs):
    """Bias frames of the night's detectors (zero exposure).

    Parameters
    ----------
    out_directory : path-like
        Output directory (frames there, truth in ``out_directory/truth/``).
    n_images : int
        Frames per camera (default 10).
    parameters : SimulationParameters or dict, optional
        Base parameters, e.g. ``night.parameters`` or ``load_truth(d).parameters`` of the night
        these frames calibrate; ``kwargs`` override them.
    overwrite : bool
        Replace the files of earlier generated bias frames (default False).
    compress : bool
        Write ``.fits.gz`` (default False).
    progress : bool
        Show a tqdm progress bar (default True).
    **kwargs
        Fields of :class:`~data_generator.parameters.SimulationParameters`; give the same seed
        and detector parameters as the night.

    Returns
    -------
    GeneratedFrames

    Raises
    ------
    FileExistsError
        If the directory already holds generated bias frames (or a different detector truth)
        and ``overwrite`` is False.
    ValueError
        If a parameter is out of range.
    """
    n_images = check_n_images(n_images)
    return _generate("bias", out_directory, n_images, 0.0, np.zeros(n_images), parameters,
                     overwrite, compress, progress, kwargs)


def generate_darks(out_directory, n_images=10, *, exposure=None, parameters=None,
                   overwrite=False, compress=False, progress=True, **kwargs):
    """Dark frames of the night's detectors (closed shutter).

    Parameters
    ----------
    out_directory : path-like
        Output directory (frames there, truth in ``out_directory/truth/``).
    n_images : int
        Frames per camera (default 10).
    exposure : float, optional
        Dark exposure in seconds (default: the science exposure).
    parameters : SimulationParameters or dict, optional
        Base parameters, e.g. ``night.parameters`` or ``load_truth(d).parameters`` of the night
        these frames calibrate; ``kwargs`` override them.
    overwrite : bool
        Replace the files of earlier generated dark frames (default False).
    compress : bool
        Write ``.fits.gz`` (default False).
    progress : bool
        Show a tqdm progress bar (default True).
    **kwargs
        Fields of :class:`~data_generator.parameters.SimulationParameters`; give the same seed
        and detector parameters as the night.

    Returns
    -------
    GeneratedFrames

    Raises
    ------
    FileExistsError
        If the directory already holds generated dark frames (or a different detector truth)
        and ``overwrite`` is False.
    ValueError
        If a parameter is out of range.
    """
    n_images = check_n_images(n_images)
    p = resolve_parameters(parameters, **kwargs)
    exposure = _exposure(p, exposure)
    return _generate("dark", out_directory, n_images, exposure, np.zeros(n_images), p,
                     overwrite, compress, progress, {})


def _exposure(p, exposure):
    """The calibration exposure (s): the science exposure by default; ValueError if not > 0."""
    exposure = p.exposure if exposure is None else float(exposure)
    if not exposure > 0:
        raise ValueError(f"exposure: must be > 0 s, got {exposure}")
    return exposure


def generate_flats(out_directory, n_images=10, *, exposure=None, level=25000.0, decay=0.95,
                   parameters=None, overwrite=False, compress=False, progress=True, **kwargs):
    """Twilight flat frames of the night's detectors.

    Parameters
    ----------
    out_directory : path-like
        Output directory (frames there, truth in ``out_directory/truth/``).
    n_images : int
        Frames per camera (default 10).
    exposure : float, optional
        Flat exposure in seconds (default: the science exposure).
    level : float
        Illumination of the first flat in ADU above the bias on a pixel of unit response
        (default 25000).
    decay : float
        Ratio of the illumination of consecutive flats (twilight fading; default 0.95).
    parameters : SimulationParameters or dict, optional
        Base parameters, e.g. ``night.parameters`` or ``load_truth(d).parameters`` of the night
        these frames calibrate; ``kwargs`` override them.
    overwrite : bool
        Replace the files of earlier generated flat frames (default False).
    compress : bool
        Write ``.fits.gz`` (default False).
    progress : bool
        Show a tqdm progress bar (default True).
    **kwargs
        Fields of :class:`~data_generator.parameters.SimulationParameters`; give the same seed
        and detector parameters as the night.

    Returns
    -------
    GeneratedFrames

    Raises
    ------
    FileExistsError
        If the directory already holds generated flat frames (or a different detector truth)
        and ``overwrite`` is False.
    ValueError
        If a parameter is out of range.
    """
    n_images = check_n_images(n_images)
    p = resolve_parameters(parameters, **kwargs)
    exposure = _exposure(p, exposure)
    if not 0 < level < p.saturation - p.bias_level:
        raise ValueError(f"level: must be in (0, saturation - bias_level) ADU, got {level}")
    if not 0 < decay <= 1:
        raise ValueError(f"decay: must be in (0, 1], got {decay}")
    levels = level * p.gain * decay ** np.arange(n_images)
    return _generate("flat", out_directory, n_images, exposure, levels, p, overwrite,
                     compress, progress, {})
