"""Master bias, dark and flat frames: grouping, bounded-memory combination, cached files.

Units and keys of the masters:

* master **bias**: ADU (after overscan subtraction when there is an overscan section), one per
  ``(camera, binning)``;
* master **dark**: dark **rate** in e-/s/pixel, ``(raw - overscan - bias) * gain / exposure``,
  one per ``(camera, binning)``; it applies to any exposure time;
* master **flat**: dimensionless response, median 1, one per ``(camera, filter, binning)``. Each
  flat frame is corrected ``((raw - overscan - bias) * gain - dark * exposure)``, divided by its
  median, the frames are combined, and the result is divided by its median.

Frames are combined with iterative sigma clipping about the median (mean of the survivors by
default) in blocks of rows (:func:`~opticam_like.calibration.combine.chunked_combine`), so the
memory needed does not grow with the number of frames. Raw values at or above the saturation
level are ignored.

Masters are written as float32 FITS files into a cache directory, with their provenance in the
header (kind, key, unit, method, number of frames, date, software version, upstream masters and
a fingerprint) and an ``INPUTS`` table (path, size, modification time, exposure, overscan level,
normalisation of every input). A master whose fingerprint -- inputs with sizes and modification
times, options, instrument profile, upstream masters, software version -- is unchanged is reused;
otherwise it is rebuilt.
"""

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timezone
import hashlib
import json
import logging
import os
from pathlib import Path
import re
import tempfile
import warnings

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .._version import __version__
from ..errors import CalibrationError
from ..frames import FrameError, image_hdu, open_fits, read_header
from ..instruments import load_profile
from ..scan import ReductionError, find_frames
from .combine import DEFAULT_MEMORY_LIMIT, chunked_combine
from .sections import header_sections, overscan_level

__all__ = [ "CalibrationWarning", "MASTER_KINDS", "MASTER_UNITS",
           "build_masters", "read_master", "master_key", "master_key_from_header",
           "format_key"]

logger = logging.getLogger(__name__)

#: The kinds of master frames, in build order.
MASTER_KINDS = ("bias", "dark", "flat")

#: Unit (FITS ``BUNIT``) of each kind of master.
MASTER_UNITS = {"bias": "adu", "dark": "electron / (pixel s)", "flat": ""}

#: Words that an input's image type (``IMAGETYP``) must contain for each kind (case-insensitive);
#: frames with another non-empty type are ignored, so one mixed directory may serve all kinds.
IMAGE_TYPE_WORDS = {"bias": ("bias", "zero"), "dark": ("dark",), "flat": ("flat",)}

# Header quantities a kind of calibration frame does not need, with the value used instead.
_NOT_NEEDED = {"bias": {"filter": "", "exposure": 0.0}, "dark": {"filter": ""}, "flat": {}}

class CalibrationWarning(UserWarning):
    """A calibration input was skipped or a calibration step could not be applied."""


def master_key(kind, info):
    """Key of the master of ``kind`` that applies to a frame.

    Parameters
    ----------
    kind : {'bias', 'dark', 'flat'}
    info : FrameInfo

    Returns
    -------
    tuple of str
        ``(camera, binning)`` for bias and dark, ``(camera, filter, binning)`` for flats.
    """
    if kind == "flat":
        return (info.camera, info.filter, info.binning)
    return (info.camera, info.binning)


def format_key(key):
    """A key as text, ``'C1/g/4x4'``."""
    return "/".join(key)


def master_key_from_header(header, kind, path):
    """Key of a master file from its ``CAMERA``, ``FILTER`` and ``BINNING`` keywords.

    Raises
    ------
    CalibrationError
        When a keyword is missing (name the keys explicitly with a dict instead).
    """
    names = ("CAMERA", "FILTER", "BINNING") if kind == "flat" else ("CAMERA", "BINNING")
    missing = [name for name in names if name not in header]
    if missing:
        raise CalibrationError(f"{path}: master {kind} has no {', '.join(missing)} keyword; "
                               f"pass {{{', '.join(n.lower() for n in names)}: path}} instead")
    return tuple(str(header[name]).strip() for name in names)


def read_master(path, kind=None):
    """Read a master file.

    Parameters
    ----------
    path : str or Path
        A master FITS file (the first 2-D image HDU is used).
    kind : {'bias', 'dark', 'flat'}, optional
        When given and the header has a ``MASTER`` keyword, it must match.

    Returns
    -------
    data : ndarray, shape (ny, nx), float32
    header : astropy.io.fits.Header

    Raises
    ------
    CalibrationError
        Unreadable file, no 2-D image, or a master of another kind.
    """
    try:
        with open_fits(path) as hdul:
            hdu = image_hdu(hdul, path)
            data = np.asarray(hdu.data, dtype=np.float32)
            header = hdu.header.copy()
    except FrameError as exc:
        raise CalibrationError(f"cannot read master {kind or 'frame'} {exc}") from None
    found = str(header.get("MASTER", "")).strip().lower()
    if kind is not None and found and found != kind:
        raise CalibrationError(f"{path}: is a master {found}, not a master {kind}")
    return data, header


@dataclass(frozen=True)
class _Input:
    """One calibration frame: parsed header and file state (for the fingerprint)."""

    path: str
    info: object
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class _Prepared:
    """An input with what the first pass measured on it."""

    input: _Input
    level: float
    trim: tuple
    scale: float = 1.0


@dataclass(frozen=True)
class _Options:
    cache_directory: Path
    profile: object
    biassec_keyword: str | None
    trimsec_keyword: str | None
    method: str
    sigma: float | None
    maxiters: int
    memory_limit: int

    def fingerprint_items(self):
        return {"biassec": self.biassec_keyword, "trimsec": self.trimsec_keyword,
                "method": self.method, "sigma": self.sigma, "maxiters": self.maxiters,
                "profile": repr(self.profile), "version": __version__}


def _collect(source, kind, profile):
    """FITS files of a source (directory, file, or list of files).

    A directory gives its FITS files, and those of its sub-directories ``c1``, ``c2``, ...
    when the profile takes cameras from directories; entries that cannot be read (broken or
    looping symbolic links, special files) are skipped with a :class:`CalibrationWarning`.
    """
    if source is None:
        return []
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            try:
                files, unreadable = find_frames([path], profile.camera_directories)
            except ReductionError as exc:
                raise CalibrationError(f"{kind} frames: {exc}") from None
            for failure in unreadable:
                warnings.warn(f"{kind} frame skipped: {failure.path}: {failure.reason}",
                              CalibrationWarning, stacklevel=3)
            if not files:
                raise CalibrationError(f"{path}: no FITS file for the {kind} frames")
            return files
        source = [path]
    files = [Path(p) for p in source]
    for path in files:
        if not path.is_file():
            raise CalibrationError(f"{path}: {kind} frame not found")
    return files


def _check_cache_directory(cache_directory, files):
    cache = cache_directory.resolve()
    for directory in sorted({path.resolve().parent for path in files}):
        if cache == directory or directory in cache.parents:
            raise CalibrationError(f"cache directory {cache_directory} is inside the input "
                                   f"directory {directory}; inputs are never written to")


def _scan(files, kind, profile):
    """Parse headers; frames that cannot be read or have another image type are skipped."""
    not_needed = _NOT_NEEDED[kind]
    profile = profile.with_overrides(
        required=tuple(q for q in profile.required if q not in not_needed),
        defaults={q: v for q, v in not_needed.items() if q not in profile.defaults})
    inputs, other_type = [], []
    for path in files:
        try:
            info = read_header(path, profile)
        except FrameError as exc:
            warnings.warn(f"{kind} frame skipped: {exc}", CalibrationWarning, stacklevel=2)
            continue
        image_type = info.image_type.lower()
        if image_type and not any(word in image_type for word in IMAGE_TYPE_WORDS[kind]):
            other_type.append(path.name)
            continue
        stat = path.stat()
        inputs.append(_Input(str(path.resolve()), info, stat.st_size, stat.st_mtime_ns))
    if other_type:
        warnings.warn(f"{len(other_type)} file(s) given as {kind} frames have another image "
                      f"type and were ignored (e.g. {other_type[0]})", CalibrationWarning,
                      stacklevel=2)
    if files and not inputs:
        raise CalibrationError(f"no usable {kind} frame among {len(files)} file(s), e.g. "
                               f"{files[0]}")
    return inputs


def _file_name(kind, key):
    text = "_".join((kind,) + key)
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", text) + ".fits"


def _fingerprint(kind, key, inputs, upstream, options):
    payload = {"kind": kind, "key": list(key),
               "inputs": [[p.path, p.size, p.mtime_ns] for p in inputs],
               "upstream": {k: v[1] for k, v in upstream.items()},
               "options": options.fingerprint_items()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _corrected(kind, prepared, raw, rows, bias, dark):
    """Rows of one calibration frame in the unit of its master (see the module docstring)."""
    info = prepared.input.info
    raw = np.asarray(raw, dtype=np.float32)
    values = raw - np.float32(prepared.level)
    if bias is not None:
        values -= bias[rows]
    if kind != "bias":
        values *= np.float32(info.gain)
        if kind == "dark":
            values /= np.float32(info.exposure)
        else:
            if dark is not None:
                values -= dark[rows] * np.float32(info.exposure)
            values /= np.float32(prepared.scale)
    with np.errstate(invalid="ignore"):
        values[~(raw < info.saturation)] = np.nan
    return values


def _prepare(kind, inputs, masters, options):
    """First pass: overscan level, trim section and (flats) median level of every input.

    ``masters`` maps 'bias' / 'dark' to ``(array, path)`` of the upstream masters.
    """
    arrays = {name: master[0] for name, master in masters.items()}
    prepared, shape, first = [], None, None
    for item in inputs:
        info = item.info
        if kind == "dark" and not info.exposure > 0:
            warnings.warn(f"dark frame skipped: {item.path}: exposure {info.exposure} s; a "
                          "dark rate needs a positive exposure", CalibrationWarning,
                          stacklevel=2)
            continue
        try:
            with open_fits(item.path) as hdul:
                hdu = image_hdu(hdul, item.path)
                overscan, trim = header_sections(hdu.header, info.shape, item.path,
                                                 options.biassec_keyword,
                                                 options.trimsec_keyword)
                if trim is None:
                    trim = (slice(0, info.shape[0]), slice(0, info.shape[1]))
                this = (trim[0].stop - trim[0].start, trim[1].stop - trim[1].start)
                if shape is None:
                    shape, first = this, item.path
                    for name, (array, path) in masters.items():
                        if array.shape != shape:
                            raise CalibrationError(
                                f"master {name} {path} has shape {array.shape} but {kind} "
                                f"frame {item.path} has shape {shape} (after trim)")
                elif this != shape:
                    raise CalibrationError(f"{kind} frames {first} and {item.path} have "
                                           f"different shapes {shape} and {this} (after trim)")
                if "bias" not in masters and overscan is None:
                    where = f"no master bias for {format_key(master_key('bias', info))} and no " \
                            "overscan section"
                    if kind == "dark":
                        raise CalibrationError(f"dark frame {item.path}: {where}; a dark rate "
                                               "needs the bias level removed")
                    if kind == "flat" and not prepared:
                        warnings.warn(f"flat frames of {format_key(master_key(kind, info))} "
                                      f"are not bias-subtracted ({where})", CalibrationWarning,
                                      stacklevel=2)
                entry = _Prepared(item, overscan_level(hdu.section, overscan), trim)
                if kind == "flat":
                    values = _corrected(kind, entry, hdu.section[trim], slice(None),
                                        arrays.get("bias"), arrays.get("dark"))
                    finite = values[np.isfinite(values)]
                    scale = float(np.median(finite)) if finite.size else 0.0
                    if not scale > 0:
                        warnings.warn(f"flat frame skipped: {item.path}: median level {scale} "
                                      "is not positive", CalibrationWarning, stacklevel=2)
                        continue
                    entry = replace(entry, scale=scale)
        except FrameError as exc:
            raise CalibrationError(f"{kind} frame unusable: {exc}") from None
        prepared.append(entry)
    if not prepared:
        raise CalibrationError(f"no usable {kind} frame for "
                               f"{format_key(master_key(kind, inputs[0].info))}")
    return prepared, shape


def _combine(kind, prepared, shape, masters, options):
    """Second pass: combine the corrected inputs block of rows by block of rows."""
    bias, dark = (masters[name][0] if name in masters else None for name in ("bias", "dark"))

    def read_rows(i, y0, y1):
        entry = prepared[i]
        ty, tx = entry.trim
        try:
            with open_fits(entry.input.path) as hdul:
                hdu = image_hdu(hdul, entry.input.path)
                raw = hdu.section[ty.start + y0: ty.start + y1, tx]
        except FrameError as exc:
            raise CalibrationError(f"{kind} frame unusable: {exc}") from None
        return _corrected(kind, entry, raw, slice(y0, y1), bias, dark)

    data = chunked_combine(read_rows, len(prepared), shape, memory_limit=options.memory_limit,
                           method=options.method, sigma=options.sigma,
                           maxiters=options.maxiters)
    if kind == "flat":
        data /= np.float32(np.nanmedian(data))
    return data


def _write(path, kind, key, data, prepared, fingerprint, upstream, options):
    """Write a master and its provenance atomically (temporary file, then rename)."""
    header = fits.Header()
    header["MASTER"] = (kind.upper(), "opticam_like master calibration frame")
    names = ("CAMERA", "FILTER", "BINNING") if kind == "flat" else ("CAMERA", "BINNING")
    for name, value in zip(names, key):
        header[name] = value
    header["BUNIT"] = MASTER_UNITS[kind]
    header["NCOMBINE"] = (len(prepared), "number of frames combined")
    header["COMBMETH"] = (options.method, "statistic of the sigma-clipped values")
    header["CLIPSIG"] = (options.sigma if options.sigma is not None else "none",
                         "clipping threshold (std about the median)")
    header["CLIPITER"] = (options.maxiters, "maximum clipping iterations")
    for name in ("bias", "dark"):
        if name in upstream:
            header[f"{name.upper()}FILE"] = (Path(upstream[name][0]).name, f"master {name} used")
    header["DATE"] = (datetime.now(timezone.utc).isoformat(timespec="seconds"), "build date")
    header["SOFTVER"] = (__version__, "opticam_like version")
    header["PROFILE"] = (options.profile.name, "instrument profile")
    header["OLHASH"] = fingerprint          # sha256 of inputs, options and upstream masters
    table = Table({
        "path": [p.input.path for p in prepared],
        "size": np.array([p.input.size for p in prepared], dtype=np.int64),
        "mtime_ns": np.array([p.input.mtime_ns for p in prepared], dtype=np.int64),
        "exposure": np.array([p.input.info.exposure for p in prepared]),
        "level": np.array([p.level for p in prepared]),
        "scale": np.array([p.scale for p in prepared]),
    })
    inputs = fits.table_to_hdu(table)
    inputs.name = "INPUTS"
    hdul = fits.HDUList([fits.PrimaryHDU(data.astype(np.float32, copy=False), header), inputs])
    handle, temporary = tempfile.mkstemp(suffix=".fits", dir=path.parent)
    os.close(handle)
    try:
        hdul.writeto(temporary, overwrite=True)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _build(kind, key, inputs, upstream, options):
    """Path and fingerprint of the master of one group, reused or (re)built."""
    inputs = sorted(inputs, key=lambda item: item.path)
    fingerprint = _fingerprint(kind, key, inputs, upstream, options)
    path = options.cache_directory / _file_name(kind, key)
    if path.is_file():
        try:
            if fits.getval(path, "OLHASH") == fingerprint:
                logger.info("reused master %s %s (%d frames): %s", kind, format_key(key),
                            len(inputs), path)
                return str(path), fingerprint
        except (OSError, KeyError):
            pass
    masters = {name: (read_master(path, name)[0], path) for name, (path, _) in upstream.items()}
    prepared, shape = _prepare(kind, inputs, masters, options)
    data = _combine(kind, prepared, shape, masters, options)
    _write(path, kind, key, data, prepared, fingerprint, upstream, options)
    logger.info("built master %s %s from %d frames: %s", kind, format_key(key),
                len(prepared), path)
    return str(path), fingerprint


def build_masters(bias=None, dark=None, flat=None, *, profile="opticam", cache_directory,
                  biassec_keyword="BIASSEC", trimsec_keyword="TRIMSEC", method="mean",
                  sigma=3.0, maxiters=5, memory_limit=DEFAULT_MEMORY_LIMIT):
    """Build (or reuse) the master bias, dark and flat frames of a set of calibration frames.

    Parameters
    ----------
    bias, dark, flat : str, Path, list of them, or None
        A directory (its FITS files, and those of its ``c1``, ``c2``, ... sub-directories when
        the profile takes cameras from directories), one file or a list of files per kind.
        Files whose image type names another kind are ignored with a warning.
    profile : InstrumentProfile or str
        How to read the headers. Bias and dark frames need no filter, bias frames no exposure.
        Frames are grouped by camera as the profile identifies it (header keyword, filter or
        directory; see :mod:`opticam_like.instruments`), so that the cameras of a
        multi-camera instrument are never combined together even when the headers carry no
        camera keyword; a frame whose camera cannot be told is skipped with a warning.
    cache_directory : str or Path
        Where the masters are written (created if needed); must not be inside an input
        directory.
    biassec_keyword, trimsec_keyword : str or None
        Header keywords of the overscan and trim sections (None disables the step).
    method : {'mean', 'median'}
        Statistic of the sigma-clipped values.
    sigma : float or None
        Clipping threshold in standard deviations about the median; None disables clipping.
    maxiters : int
        Maximum clipping iterations.
    memory_limit : int
        Memory budget of the combination (bytes).

    Returns
    -------
    dict
        ``{'bias': {key: path}, 'dark': {key: path}, 'flat': {key: path}}`` with keys as in
        :func:`master_key`.

    Raises
    ------
    CalibrationError
        Missing files, no usable frame of a kind, frames of one key with different shapes,
        darks without a bias level, or a cache directory inside an input directory.
    """
    options = _Options(Path(cache_directory), load_profile(profile), biassec_keyword,
                       trimsec_keyword, method, sigma, int(maxiters), int(memory_limit))
    files = {kind: _collect(source, kind, options.profile)
             for kind, source in zip(MASTER_KINDS, (bias, dark, flat))}
    _check_cache_directory(options.cache_directory, [p for f in files.values() for p in f])
    options.cache_directory.mkdir(parents=True, exist_ok=True)
    built = {kind: {} for kind in MASTER_KINDS}
    fingerprints = {}
    for kind in MASTER_KINDS:
        groups = defaultdict(list)
        for item in _scan(files[kind], kind, options.profile):
            groups[master_key(kind, item.info)].append(item)
        for key, inputs in sorted(groups.items()):
            upstream = {}
            for name in MASTER_KINDS[:MASTER_KINDS.index(kind)]:
                base = (key[0], key[-1])
                if base in built[name]:
                    upstream[name] = (built[name][base], fingerprints[name, base])
            path, fingerprint = _build(kind, key, inputs, upstream, options)
            built[kind][key] = path
            fingerprints[kind, key] = fingerprint
    return built
