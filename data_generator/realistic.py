"""The standard realistic test night: 3 cameras x 150 frames of 512 x 512 (binning 4x4), with
its calibration frames.

Recipe (what :func:`generate_realistic_night` does)::

    night = generate_observations(out / "night", 150, preset="realistic")
    generate_biases(out / "bias", 5, parameters=night.parameters)
    generate_darks(out / "dark", 5, parameters=night.parameters)
    generate_flats(out / "flat", 5, parameters=night.parameters)

The calibration frames share the night's detectors (defects included) and, like the science
frames, have no ``CAMERA`` keyword.
"""

from pathlib import Path

from .calibrations import generate_biases, generate_darks, generate_flats
from .observations import generate_observations

__all__ = ["generate_realistic_night", "REALISTIC_NIGHT_FRAMES"]

REALISTIC_NIGHT_FRAMES = 150
"""Frames per camera of the standard realistic night."""


def generate_realistic_night(out_directory, n_images=REALISTIC_NIGHT_FRAMES, *,
                             n_calibration=5, overwrite=False, progress=True, **kwargs):
    """Generate the standard realistic test night and its calibration frames.

    Parameters
    ----------
    out_directory : path-like
        Root directory; frames go to ``night/``, ``bias/``, ``dark/`` and ``flat/`` below it,
        each with its ``truth/``.
    n_images : int
        Science frames per camera (default 150).
    n_calibration : int
        Bias, dark and flat frames per camera (default 5; 0 for none).
    overwrite, progress
        As in :func:`~data_generator.generate_observations`.
    **kwargs
        Simulation parameters overriding the ``'realistic'`` preset (e.g. ``seed``,
        ``camera_folders=True``).

    Returns
    -------
    dict of str to GeneratedFrames
        ``'object'`` and, with ``n_calibration > 0``, ``'bias'``, ``'dark'``, ``'flat'``.

    Notes
    -----
    The default night (450 science frames) takes about 15 s of CPU (50 s of wall time on the
    shared 2-core development machine), most of it rendering the elliptical Moffat stamps.
    """
    root = Path(out_directory)
    night = generate_observations(root / "night", n_images, preset="realistic",
                                  overwrite=overwrite, progress=progress, **kwargs)
    generated = {"object": night}
    if n_calibration > 0:
        options = dict(parameters=night.parameters, overwrite=overwrite, progress=progress)
        generated["bias"] = generate_biases(root / "bias", n_calibration, **options)
        generated["dark"] = generate_darks(root / "dark", n_calibration, **options)
        generated["flat"] = generate_flats(root / "flat", n_calibration, **options)
    return generated
