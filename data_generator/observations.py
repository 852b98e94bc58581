"""Science frames of a simulated night, with their truth.

For frame ``i`` of camera ``k`` (filter ``F``): the light is the sky plus every star rendered as a
pixel-integrated PSF stamp (the variable star's flux integrated over the exposure); the detector
of the camera multiplies it by the flat field, adds dark current, draws Poisson electrons, adds
cosmic rays and read noise, converts to ADU with the gain, adds the bias, rounds and clips
(:meth:`Detector.read_out`). Every frame of every camera has its own random stream, so no noise
is shared between bands or frames.
"""

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from tqdm.auto import tqdm

from .conditions import night_conditions
from .cosmic_rays import cosmic_ray_mean, cosmic_ray_table, draw_cosmic_rays
from .detector import Detector
from .field import draw_field
from .files import (GeneratedFrames, detector_needs_writing, frame_path, frame_patterns,
                    prepare_directory, write_detector, write_frame)
from .headers import frame_header, start_times
from .parameters import check_n_images, resolve_parameters
from .pointing import camera_pointings
from .psf import moffat_fwhm_axes, psf_stamp
from .streams import Stream, random_stream
from .trails import render_trail, trail_table
from .truth import TRUTH_FOLDER, write_json
from .variability import exposure_mean_factor, smearing_factor

__all__ = ["generate_observations"]

_TRUTH_PATTERN = (r"parameters\.json|frames\.ecsv|sources\.ecsv|fluxes_.+\.fits"
                  r"|cosmic_rays_.+\.ecsv|conditions\.ecsv|field\.ecsv|trails\.ecsv"
                  r"|scintillation_.+\.fits")


def _light_curves(parameters, field, conditions, k):
    """Expected electrons per frame of every star in camera ``k`` and the scintillation factors
    (both (n_images, n_sources); the factors are 1 without scintillation)."""
    p = parameters
    n_images = conditions.t_start.shape[1]
    flux = np.repeat(field.flux[None, :, k], n_images, axis=0)
    if field.variable_index is not None:
        flux[:, field.variable_index] *= exposure_mean_factor(
            conditions.t_start[k], p.exposure, p.variable_rms, p.variable_frequency,
            p.variable_lags[p.filters[k]])
    factors = np.ones_like(flux)
    if p.scintillation:
        factors += conditions.scintillation[k][:, None] * random_stream(
            p.seed, Stream.SCINTILLATION, k).standard_normal(flux.shape)
        flux *= factors
    if p.cloud_transparency < 1:
        flux *= conditions.transparency[:, None]
    return flux, factors


def _psf_angles(parameters, conditions, pointing):
    """Position angle (deg) of the PSF major axis in a camera's pixels, per frame: the field
    angle mapped by the frame's orientation; 0 (along x) when the PSF is not rotated."""
    if not parameters.psf_rotates:
        return np.zeros(len(conditions.psf_angle))
    angle = np.deg2rad(conditions.psf_angle)
    axis = np.einsum("fij,jf->fi", pointing.matrices, np.stack([np.cos(angle), np.sin(angle)]))
    return np.rad2deg(np.arctan2(axis[:, 1], axis[:, 0])) % 180.0


def _render_frame(parameters, detector, rng, sky, psf, positions, fluxes, trails):
    """One raw frame and its per-star truth.

    ``psf`` is ``(fwhm, beta, ellipticity, theta)``; ``trails`` the rows of the trail table
    that fall on the frame.

    Returns
    -------
    (ndarray, ndarray, ndarray, CosmicRays)
        uint16 frame, injected electrons (n_sources,), saturated flags (n_sources,), cosmic rays.
    """
    p = parameters
    fwhm, beta, ellipticity, theta = psf
    light = np.full(p.shape, sky, np.float32)
    stamps = []
    injected = np.empty(len(fluxes))
    for s, ((x, y), flux) in enumerate(zip(positions, fluxes)):
        rows, cols, stamp = psf_stamp(x, y, fwhm, p.shape, p.psf, beta, ellipticity,
                                      theta=theta)
        light[rows, cols] += (flux * stamp).astype(np.float32)
        injected[s] = flux * stamp.sum()
        stamps.append((rows, cols))
    for row in trails:
        render_trail(light, row)
    cosmic_rays = draw_cosmic_rays(rng, cosmic_ray_mean(p), p.shape)
    frame = detector.read_out(light, p.exposure, rng, cosmic_rays)
    saturated = np.array([frame[rows, cols].size > 0 and frame[rows, cols].max() >= p.saturation
                          for rows, cols in stamps])
    return frame, injected, saturated, cosmic_rays


def generate_observations(out_directory, n_images=100, *, parameters=None, overwrite=False,
                          compress=False, progress=True, **kwargs):
    """Simulate an OPTICAM night: science frames of every camera and the truth.

    Parameters
    ----------
    out_directory : path-like
        Output directory; frames ``{camera}_{filter}_{i:06d}.fits`` go there and the truth in
        ``out_directory/truth/`` (formats in :mod:`data_generator.truth`).
    n_images : int
        Frames per camera (default 100).
    parameters : SimulationParameters or dict, optional
        Base parameters (e.g. ``load_truth(d).parameters``); ``kwargs`` override them.
    overwrite : bool
        Replace the files of an earlier generated night (default False).
    compress : bool
        Write ``.fits.gz`` (slower; default False).
    progress : bool
        Show a tqdm progress bar over the frames (default True).
    **kwargs
        Any field of :class:`~data_generator.parameters.SimulationParameters` (filters, shape,
        binning, cadence, exposure, seed, gain, read_noise, sky, fwhm, psf, drift, cosmic_rays,
        hot_pixels, ...).

    Returns
    -------
    GeneratedFrames
        Output directory, frame paths, truth directory, resolved parameters.

    Raises
    ------
    FileExistsError
        If the directory already holds a generated night and ``overwrite`` is False.
    ValueError
        If a parameter is out of range or the stars do not fit in the frame.
    TypeError
        If a keyword is not a simulation parameter.

    Examples
    --------
    >>> from data_generator import generate_observations, load_truth
    >>> night = generate_observations("night/data", n_images=20, shape=(128, 128), n_sources=6,
    ...                               progress=False)  # doctest: +SKIP
    >>> load_truth("night/data").fluxes("g")["flux"].shape  # doctest: +SKIP
    (20, 6)
    """
    p = resolve_parameters(parameters, **kwargs)
    n_images = check_n_images(n_images)
    directory = Path(out_directory)
    truth_directory = directory / TRUTH_FOLDER

    detectors = [Detector(p, k) for k in range(p.n_cameras)]
    conditions = night_conditions(p, n_images)
    pointings = camera_pointings(p, conditions.progress)
    field = draw_field(p, pointings, conditions, detectors)

    trails = trail_table(p, conditions, pointings, field, n_images)
    n_stars = len(field.xy)

    names = [[frame_path(p, k, i, compress=compress) for i in range(n_images)]
             for k in range(p.n_cameras)]
    truth_files = (["parameters.json", "frames.ecsv", "sources.ecsv", "conditions.ecsv",
                    "field.ecsv", "trails.ecsv"]
                   + [f"fluxes_{band}.fits" for band in p.filters]
                   + [f"cosmic_rays_{band}.ecsv" for band in p.filters]
                   + [f"scintillation_{band}.fits" for band in p.filters])
    detector_paths = [truth_directory / f"detector_{camera}.fits" for camera in p.cameras]
    rewrite_detector = [detector_needs_writing(path, detector, overwrite)
                        for path, detector in zip(detector_paths, detectors)]
    stale = frame_patterns(p, directory) + [(truth_directory, _TRUTH_PATTERN)]
    prepare_directory(directory,
                      [directory / n for row in names for n in row]
                      + [truth_directory / n for n in truth_files],
                      overwrite, stale)
    for path, detector, needed in zip(detector_paths, detectors, rewrite_detector):
        if needed:
            write_detector(path, detector)

    frame_rows, condition_rows, files = [], [], []
    is_variable = np.zeros(n_stars, bool)
    if field.variable_index is not None:
        is_variable[field.variable_index] = True
    sources = Table({"id": np.arange(n_stars), "is_variable": is_variable})
    bar = tqdm(total=p.n_cameras * n_images, desc="Generating observations", unit="frame",
               disable=not progress)
    for k, (camera, band, detector) in enumerate(zip(p.cameras, p.filters, detectors)):
        positions = pointings[k].positions(field.xy)
        light_curves, scintillation = _light_curves(p, field, conditions, k)
        shifts = pointings[k].shifts
        thetas = _psf_angles(p, conditions, pointings[k])
        iso, isot = start_times(p, conditions.t_start[k])
        injected = np.empty((n_images, n_stars))
        saturated = np.zeros((n_images, n_stars), bool)
        hits = []
        for i in range(n_images):
            rng = random_stream(p.seed, Stream.SCIENCE, k, i)
            psf = (conditions.fwhm[k, i], conditions.beta, conditions.ellipticity[i], thetas[i])
            on_frame = trails[(trails["camera"] == camera) & (trails["frame"] == i)]
            frame, injected[i], saturated[i], rays = _render_frame(
                p, detector, rng, conditions.sky[k, i], psf, positions[i], light_curves[i],
                on_frame)
            path = directory / names[k][i]
            write_frame(path, frame, frame_header(p, k, "object", p.exposure, iso[i], isot[i],
                                                  p.object_name))
            files.append(path)
            hits.append(rays)
            frame_rows.append((names[k][i], camera, band, i, isot[i],
                               conditions.t_start[k, i] + p.exposure / 2, p.exposure,
                               shifts[i, 0], shifts[i, 1], pointings[k].rotation[i],
                               conditions.fwhm[k, i], conditions.sky[k, i], rays.n_rays))
            major, minor = moffat_fwhm_axes(conditions.fwhm[k, i], conditions.ellipticity[i])
            matrix, offset = pointings[k].matrices[i], pointings[k].offsets[i]
            condition_rows.append((names[k][i], camera, band, i, conditions.fwhm[k, i], major,
                                   minor, conditions.beta, conditions.ellipticity[i], thetas[i],
                                   conditions.transparency[i], conditions.airmass[k, i],
                                   conditions.scintillation[k, i], *matrix.ravel(), *offset,
                                   len(on_frame)))
            bar.update()
        sources[f"x_{band}"] = positions[0, :, 0]
        sources[f"y_{band}"] = positions[0, :, 1]
        sources[f"flux_{band}"] = field.flux[:, k]
        _write_fluxes(truth_directory / f"fluxes_{band}.fits", camera, band, names[k],
                      conditions.t_start[k] + p.exposure / 2, positions, injected, saturated)
        cosmic_ray_table(hits).write(truth_directory / f"cosmic_rays_{band}.ecsv",
                                     overwrite=True)
        _write_scintillation(truth_directory / f"scintillation_{band}.fits", camera, band,
                             conditions.scintillation[k], scintillation)
    bar.close()

    frames = Table(rows=frame_rows, names=(
        "file", "camera", "filter", "index", "t_start", "t_mid", "exposure", "dx", "dy",
        "rotation", "fwhm", "sky_e", "n_cosmic_rays"))
    frames.meta["mapping"] = ("pos_i = c + R(rotation_i) (pos_0 - c) + (dx_i, dy_i), "
                              "c = ((nx-1)/2, (ny-1)/2), pos_0 = position in the camera's frame 0")
    frames.meta["t_mid"] = "seconds since the night start (start_time) at mid-exposure"
    frames.write(truth_directory / "frames.ecsv", overwrite=True)
    sources.meta["flux"] = "mean electrons per frame before the flat field (F0 of the variable)"
    sources.write(truth_directory / "sources.ecsv", overwrite=True)
    _conditions_table(condition_rows).write(truth_directory / "conditions.ecsv", overwrite=True)
    _field_table(field).write(truth_directory / "field.ecsv", overwrite=True)
    trails.meta["model"] = "see data_generator.trails"
    trails.write(truth_directory / "trails.ecsv", overwrite=True)
    write_json(truth_directory / "parameters.json",
               _parameters_record(p, n_images, "object", conditions.beta))
    return GeneratedFrames(directory=directory, files=files, truth_directory=truth_directory,
                           parameters=p, n_images=n_images, kind="object")


def _conditions_table(rows):
    table = Table(rows=rows, names=(
        "file", "camera", "filter", "index", "fwhm", "fwhm_major", "fwhm_minor", "beta",
        "ellipticity", "theta", "transparency", "airmass", "scintillation", "a11", "a12", "a21",
        "a22", "tx", "ty", "n_trails"))
    table.meta["transform"] = ("pixel (x, y) = [[a11, a12], [a21, a22]] @ (x_field, y_field) "
                               "+ (tx, ty); field coordinates in field.ecsv")
    table.meta["theta"] = "PSF major-axis position angle in the frame, deg from +x towards +y"
    table.meta["fwhm"] = "geometric mean sqrt(fwhm_major * fwhm_minor), pixels of the frame"
    return table


def _field_table(field):
    return Table({"id": np.arange(len(field.xy)), "x": field.xy[:, 0], "y": field.xy[:, 1],
                  "primary": field.primary, "separation": field.separation,
                  "delta_mag": field.delta_mag},
                 meta={"separation": "companion - primary distance in units of fwhm",
                       "primary": "id of the star a companion belongs to, -1 for none"})


def _write_scintillation(path, camera, band, sigma, factors):
    table = Table({"frame": np.arange(len(sigma)), "sigma": sigma, "factor": factors})
    hdu = fits.table_to_hdu(table)
    hdu.header["CAMERA"] = camera
    hdu.header["FILTER"] = band
    hdu.header["COMMENT"] = "flux of star s in frame i multiplied by factor[i, s]"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)


def _parameters_record(parameters, n_images, kind, beta_night):
    p = parameters
    record = p.to_dict()
    record.update(
        n_images=n_images, kind=kind, beta_night=beta_night,
        readout_offsets={camera: k * p.readout_offset for k, camera in enumerate(p.cameras)},
        variable_observed_rms=p.variable_rms * smearing_factor(p.variable_frequency, p.exposure),
    )
    return record


def _write_fluxes(path, camera, band, names, t_mid, positions, injected, saturated):
    table = Table({"frame": np.arange(len(names)), "file": names, "t_mid": t_mid,
                   "x": positions[..., 0], "y": positions[..., 1], "flux": injected,
                   "saturated": saturated})
    hdu = fits.table_to_hdu(table)
    hdu.header["CAMERA"] = camera
    hdu.header["FILTER"] = band
    hdu.header["FLUXUNIT"] = ("e-", "expected electrons before the flat")
    hdu.header["XYCONV"] = "0-based, centre of pixel [0,0] at (0,0)"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
