"""Directory scan: find the frames, parse every header, check them and group them.

The scan reads headers only. Frames whose header cannot be used (unreadable, truncated,
missing keyword) are rejected with the reason; the run goes on without them. Problems with the
whole set (no frames, mixed binning) stop the run at once with :class:`ReductionError`.
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
import re

import numpy as np
from astropy.table import Table
from astropy.time import Time

from .errors import ReductionError
from .frames import FrameError, is_fits_file, read_header
from .parallel import FrameFailure

__all__ = ["ScanResult", "ReductionError", "find_frames", "scan_frames", "group_key",
           "acquisition_order"]

#: Image types (``IMAGETYP``) that are not science frames.
CALIBRATION_TYPES = ("bias", "zero", "dark", "flat", "flatfield", "sky flat", "dome flat",
                     "twilight flat")


def find_frames(directories):
    """FITS files directly inside the given directories, sorted by name.

    Parameters
    ----------
    directories : sequence of str or Path

    Returns
    -------
    list of Path

    Raises
    ------
    ReductionError
        A directory does not exist, or no FITS file is found.
    """
    paths = []
    for directory in directories:
        directory = Path(directory)
        if not directory.is_dir():
            raise ReductionError(f"data directory {directory} does not exist")
        paths += sorted(p for p in directory.iterdir() if p.is_file() and is_fits_file(p))
    if not paths:
        raise ReductionError("no FITS frames (.fits, .fit, .fts, optionally .gz) found in "
                             + ", ".join(str(d) for d in directories))
    return paths


def group_key(info):
    """Name of the group a frame belongs to: its filter (one camera per filter)."""
    return info.filter


@dataclass
class ScanResult:
    """Outcome of a scan.

    Attributes
    ----------
    groups : dict of str to list of FrameInfo
        Frames per filter, sorted by mid-exposure time.
    rejected : list of FrameFailure
        Frames that cannot be used, with the reason.
    warnings : list of str
        Findings that do not stop the run (unknown filters, time gaps, ...).
    """

    groups: dict
    rejected: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    @property
    def filters(self):
        """Filters found, in the order of the profile's filter list (or alphabetical)."""
        return list(self.groups)

    def frame_table(self):
        """All accepted frames as an astropy Table (one row per frame)."""
        rows = [info for infos in self.groups.values() for info in infos]
        table = Table()
        table["file"] = [Path(i.path).name for i in rows]
        table["camera"] = [i.camera for i in rows]
        table["filter"] = [i.filter for i in rows]
        table["binning"] = [i.binning for i in rows]
        table["exposure"] = [i.exposure for i in rows]
        table["gain"] = [i.gain for i in rows]
        table["mjd_mid"] = Time([i.time for i in rows]).mjd if rows else []
        table["time_keyword"] = [i.time_keyword for i in rows]
        return table


def scan_frames(directories, profile, pool=None):
    """Scan directories of frames.

    Parameters
    ----------
    directories : sequence of str or Path
        Where the frames are (not searched recursively).
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
    paths = find_frames(directories)
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
    rejected = [i for i in infos if isinstance(i, FrameFailure)]
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
        raise ReductionError(f"none of the {len(paths)} FITS files is a usable science frame "
                             f"({reasons})")
    _check_binning(science)
    warnings = []
    if profile.filters is not None:
        unknown = Counter(i.filter for i in science if i.filter not in profile.filters)
        for name, count in unknown.items():
            warnings.append(f"unknown filter {name!r} in {count} frames (instrument "
                            f"{profile.name!r} has {', '.join(profile.filters)}); reduced "
                            "as its own group")
    groups = {}
    for info in science:
        groups.setdefault(group_key(info), []).append(info)
    for key in groups:
        groups[key].sort(key=lambda i: (i.time.jd1, i.time.jd2, i.path))
        groups[key], odd = _common_shape(groups[key])
        rejected += odd
        cameras = {i.camera for i in groups[key]}
        if len(cameras) > 1:
            warnings.append(f"filter {key!r} was observed by several cameras "
                            f"({', '.join(sorted(cameras))}); they are reduced together")
        warnings += _time_warnings(key, groups[key])
    order = list(profile.filters or ())
    groups = dict(sorted(groups.items(),
                         key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order),
                                         kv[0])))
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
