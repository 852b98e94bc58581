"""Directory scan: find the frames, parse every header, check them and group them.

The scan reads headers only. Frames whose header cannot be used (unreadable, truncated,
missing keyword) and files with a FITS name that cannot be opened (a broken symbolic link, a
symbolic-link loop, a file without read permission, a special file) are rejected with the
reason; the run goes on without them. Problems with the whole set (no frames, mixed binning)
stop the run at once with :class:`ReductionError`.

Frames are grouped by filter. A filter observed by several cameras is split into one group per
camera (``g-C1``, ``g-C2``): cameras are never reduced together.
"""

from collections import Counter
from dataclasses import dataclass, field
import errno
import os
from pathlib import Path
import re
import stat

import numpy as np
from astropy import units as u
from astropy.table import Table
from astropy.time import Time

from .errors import ReductionError
from .frames import FrameError, is_fits_file, read_header
from .instruments import camera_directory_name
from .parallel import FrameFailure

__all__ = ["ScanResult", "find_frames", "scan_frames", "group_key",
           "acquisition_order"]

#: Image types (``IMAGETYP``) that are not science frames.
CALIBRATION_TYPES = ("bias", "zero", "dark", "flat", "flatfield", "sky flat", "dome flat",
                     "twilight flat")


def find_frames(directories, camera_directories=False):
    """FITS files inside the given directories, sorted by name, and those that cannot be read.

    Parameters
    ----------
    directories : sequence of str or Path
    camera_directories : bool
        Also take the files of sub-directories named ``c1``, ``cam2``, ``camera3``, ... (any
        case), one level down, as OPTICAM stores each camera's frames. A file reached twice
        (a directory given twice, or also as a camera sub-directory) is taken once.

    Returns
    -------
    paths : list of Path
        Regular files (or symbolic links to them) with a FITS suffix.
    rejected : list of FrameFailure
        Entries with a FITS name that cannot be read: a broken symbolic link, a symbolic-link
        loop, no read permission, or not a regular file (a FIFO, a socket, a device), each
        with the reason (stage ``'scan'``). Directories with a FITS name are passed over.

    Raises
    ------
    ReductionError
        A directory does not exist or cannot be listed.
    """
    paths, rejected, seen = [], [], set()
    for directory in directories:
        directory = Path(directory)
        if not directory.is_dir():
            raise ReductionError(f"data directory {directory} does not exist")
        folders = [directory]
        if camera_directories:
            folders += sorted(p for p in _listing(directory)
                              if camera_directory_name(p.name) and p.is_dir())
        for folder in folders:
            for path in sorted(p for p in _listing(folder) if is_fits_file(p)):
                if path.absolute() in seen:
                    continue
                seen.add(path.absolute())
                if path.is_dir():
                    continue
                reason = _unreadable(path)
                if reason:
                    rejected.append(FrameFailure(str(path), "scan", reason))
                else:
                    paths.append(path)
    return paths, rejected


def _listing(directory):
    try:
        return list(directory.iterdir())
    except OSError as exc:
        raise ReductionError(f"data directory {directory} cannot be listed "
                             f"({exc.strerror or exc})") from None


def _unreadable(path):
    """Why a directory entry cannot be read as a frame ('' when it can)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic-link loop: the link never reaches a file"
        if path.is_symlink() and exc.errno == errno.ENOENT:
            return f"broken symbolic link: its target {os.readlink(path)} does not exist"
        return f"cannot access the file ({exc.strerror or exc})"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a FIFO, socket or device cannot be read as a frame)"
    if not os.access(path, os.R_OK):
        return "no permission to read the file"
    return ""


def group_key(info, split_cameras=False):
    """Name of the group a frame belongs to.

    Parameters
    ----------
    info : FrameInfo
    split_cameras : bool
        True when the frame's filter was observed by several cameras.

    Returns
    -------
    str
        The filter (``'g'``), or ``'{filter}-{camera}'`` (``'g-C2'``) when ``split_cameras``.
    """
    return f"{info.filter}-{info.camera}" if split_cameras else info.filter


@dataclass
class ScanResult:
    """Outcome of a scan.

    Attributes
    ----------
    groups : dict of str to list of FrameInfo
        Frames per group (see :func:`group_key`: the filter, or ``'{filter}-{camera}'`` for a
        filter observed by several cameras), sorted by mid-exposure time.
    rejected : list of FrameFailure
        Frames that cannot be used, with the reason: unreadable entries (broken or looping
        symbolic links, special files, no read permission), unusable headers, calibration
        frames and frames of an odd shape.
    warnings : list of str
        Findings that do not stop the run (unknown filters, time gaps, ...).
    """

    groups: dict
    rejected: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    @property
    def filters(self):
        """Group names (filters), in the order of the profile's filter list (then
        alphabetical)."""
        return list(self.groups)

    def frame_table(self):
        """All accepted frames as an astropy Table (one row per frame): ``exposure`` (s),
        ``gain`` (electron / adu) and ``mjd_mid`` (d, UTC) carry their units."""
        rows = [info for infos in self.groups.values() for info in infos]
        table = Table()
        table["file"] = [Path(i.path).name for i in rows]
        table["camera"] = [i.camera for i in rows]
        table["camera_source"] = [i.camera_source for i in rows]
        table["filter"] = [i.filter for i in rows]
        table["binning"] = [i.binning for i in rows]
        table["exposure"] = [i.exposure for i in rows]
        table["gain"] = [i.gain for i in rows]
        table["mjd_mid"] = Time([i.time for i in rows]).mjd if rows else []
        table["time_keyword"] = [i.time_keyword for i in rows]
        table["exposure"].unit, table["gain"].unit = u.s, u.electron / u.adu
        table["mjd_mid"].unit = u.day
        return table


def scan_frames(directories, profile, pool=None):
    """Scan directories of frames.

    Parameters
    ----------
    directories : sequence of str or Path
        Where the frames are (not searched recursively, except for sub-directories named
        ``c1``, ``c2``, ... when the profile has ``camera_directories``).
    profile : InstrumentProfile
        How to read the headers.
    pool : WorkerPool, optional
        Read headers in parallel.

    Returns
    -------
    ScanResult

    Raises
    ------
    ReductionError
        No frames, no usable frame, or frames that mix binnings (the message lists the
        binnings and an example file of each).
    """
    paths, unreadable = find_frames(directories, profile.camera_directories)
    if not paths and not unreadable:
        raise ReductionError("no FITS frames (.fits, .fit, .fts, optionally .gz) found in "
                             + ", ".join(str(d) for d in directories))
    if pool is None:
        infos = []
        for path in paths:
            try:
                infos.append(read_header(path, profile))
            except FrameError as exc:
                infos.append(FrameFailure(exc.path, "scan", exc.reason))
    else:
        infos, _, _ = pool.map(_scan_one, paths, profile, desc="scan")
        infos = [FrameFailure(i.path, "scan", i.reason) if isinstance(i, FrameFailure) else i
                 for i in infos]
    rejected = unreadable + [i for i in infos if isinstance(i, FrameFailure)]
    infos = [i for i in infos if not isinstance(i, FrameFailure)]
    science = []
    for info in infos:
        if info.image_type.strip().lower() in CALIBRATION_TYPES:
            rejected.append(FrameFailure(info.path, "scan", "not a science frame "
                                         f"(image type {info.image_type!r})"))
        else:
            science.append(info)
    if not science:
        reasons = "; ".join(f"{Path(r.path).name}: {r.reason}" for r in rejected[:5])
        raise ReductionError(f"none of the {len(paths) + len(unreadable)} FITS files is a "
                             f"usable science frame ({reasons})")
    _check_binning(science)
    warnings = []
    if profile.filters is not None:
        unknown = Counter(i.filter for i in science if i.filter not in profile.filters)
        for name, count in unknown.items():
            warnings.append(f"unknown filter {name!r} in {count} frames (instrument "
                            f"{profile.name!r} has {', '.join(profile.filters)}); reduced "
                            "as its own group")
    cameras = {}
    for info in science:
        cameras.setdefault(info.filter, set()).add(info.camera)
    for name, found in sorted(cameras.items()):
        if len(found) > 1:
            warnings.append(f"filter {name!r} was observed by cameras {', '.join(sorted(found))}: "
                            "reduced as separate groups "
                            f"{', '.join(f'{name}-{c}' for c in sorted(found))}")
    groups = {}
    for info in science:
        groups.setdefault(group_key(info, len(cameras[info.filter]) > 1), []).append(info)
    for key in groups:
        groups[key].sort(key=lambda i: (i.time.jd1, i.time.jd2, i.path))
        groups[key], odd = _common_shape(groups[key])
        rejected += odd
        warnings += _time_warnings(key, groups[key])
    order = list(profile.filters or ())
    groups = dict(sorted(groups.items(), key=lambda kv: (
        order.index(kv[1][0].filter) if kv[1][0].filter in order else len(order), kv[0])))
    return ScanResult(groups=groups, rejected=rejected, warnings=warnings)


def acquisition_order(infos):
    """Indices that put frames in acquisition order: natural sort of their file names.

    Frames are reduced in time order; comparing with the order in which the camera wrote them
    (the sequence number in the file name) is what reveals time stamps that go backwards.

    Parameters
    ----------
    infos : list of FrameInfo

    Returns
    -------
    list of int
    """
    def key(index):
        name = Path(infos[index].path).name
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
    return sorted(range(len(infos)), key=key)


def _scan_one(path, profile, timer):
    timer.step("scan")
    return read_header(path, profile)


def _check_binning(infos):
    binnings = Counter(i.binning for i in infos)
    if len(binnings) > 1:
        examples = {}
        for info in infos:
            examples.setdefault(info.binning, Path(info.path).name)
        listing = ", ".join(f"{b} ({n} frames, e.g. {examples[b]})"
                            for b, n in binnings.most_common())
        raise ReductionError(f"frames mix binnings: {listing}. Reduce each binning "
                             "separately (put the frames in separate directories).")


def _common_shape(infos):
    shapes = Counter(i.shape for i in infos)
    if len(shapes) == 1:
        return infos, []
    main = shapes.most_common(1)[0][0]
    keep = [i for i in infos if i.shape == main]
    odd = [FrameFailure(i.path, "scan", f"image shape {i.shape} differs from the "
                        f"{main} of the other {i.filter} frames") for i in infos
           if i.shape != main]
    return keep, odd


def _time_warnings(key, infos):
    if len(infos) < 3:
        return []
    mjd = np.array([(i.time.jd1 - 2400000.5) + i.time.jd2 for i in infos])
    steps = np.diff(mjd) * 86400.0
    cadence = np.median(steps)
    warnings = []
    repeats = int(np.sum(steps == 0))
    if repeats:
        warnings.append(f"filter {key!r}: {repeats} frames repeat the time stamp of the "
                        "previous frame")
    if cadence > 0:
        gaps = steps > 1.5 * cadence + 1e-3
        if gaps.any():
            warnings.append(f"filter {key!r}: {int(gaps.sum())} time gaps longer than 1.5 x "
                            f"the cadence ({cadence:.3f} s); the longest is "
                            f"{steps.max():.1f} s")
    return warnings
