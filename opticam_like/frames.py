"""One frame: its parsed header (:class:`FrameInfo`) and its pixels (:func:`read_frame`).

Every header is read through an :class:`~opticam_like.instruments.InstrumentProfile`, so the
rest of the pipeline never touches raw keywords. Problems with one frame raise
:class:`FrameError`, which names the file and the reason; the reducer lists such frames and
goes on.
"""

from dataclasses import dataclass
import gzip
import io
import math
from pathlib import Path
import re
import warnings
import zlib

import numpy as np
from astropy.coordinates import Angle
from astropy.io import fits
import astropy.units as u

from .errors import FrameError
from .instruments import camera_from_directory, load_profile
from .timing import mid_exposure, parse_times

__all__ = ["FrameInfo", "Frame", "read_header", "read_frame", "FITS_SUFFIXES",
           "is_fits_file", "parse_binning", "open_fits", "image_hdu"]

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fits.fz")


@dataclass(frozen=True)
class FrameInfo:
    """What the pipeline needs to know about one frame, parsed from its header.

    Attributes
    ----------
    path : str
        File path.
    camera, filter, binning : str
        Camera identifier, filter name and binning (``'4x4'``).
    camera_source : str
        Where the camera came from: the header keyword (``'CAMERA'``), ``'filter'``,
        ``'directory'`` or ``'default'``.
    shape : tuple of int
        Image shape ``(ny, nx)``.
    gain : float
        Gain (e-/ADU).
    read_noise : float
        Read noise (e-); NaN when unknown.
    exposure : float
        Exposure time (s).
    dark_current : float
        Dark current (e-/s/pixel).
    saturation : float
        Saturation level (ADU, raw).
    time : astropy.time.Time
        Mid-exposure time (scalar, in the profile's time scale, normally UTC).
    time_keyword : str
        The header keyword the time came from.
    ra, dec : float
        Target coordinates (deg); NaN when the header has none.
    observatory, image_type, object : str
        Header strings ('' when absent).
    """

    path: str
    camera: str
    filter: str
    binning: str
    shape: tuple
    gain: float
    read_noise: float
    exposure: float
    dark_current: float
    saturation: float
    time: object
    time_keyword: str
    ra: float
    dec: float
    observatory: str = ""
    image_type: str = ""
    object: str = ""
    camera_source: str = ""

    @property
    def name(self):
        """File name without the directory."""
        return Path(self.path).name


@dataclass(frozen=True)
class Frame:
    """A frame's pixels and parsed header.

    Attributes
    ----------
    data : ndarray, shape (ny, nx), float32
        Raw pixel values (ADU), with BSCALE/BZERO applied.
    info : FrameInfo
    header : astropy.io.fits.Header
    """

    data: np.ndarray
    info: FrameInfo
    header: fits.Header


def is_fits_file(path):
    """True when the file name ends with a FITS suffix (``.fits``, ``.fit``, ``.fts``, ``.gz``)."""
    name = Path(path).name.lower()
    return name.endswith(FITS_SUFFIXES) and not name.startswith(".")


def parse_binning(value):
    """Normalise a binning value to ``'NxM'``.

    Parameters
    ----------
    value : str or int
        ``'4x4'``, ``'4 4'`` (CCDSUM), ``'4'`` or ``4``.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        When the value is not a binning.
    """
    numbers = re.findall(r"\d+", str(value))
    if len(numbers) == 1:
        numbers = numbers * 2
    if len(numbers) != 2 or re.search(r"[^\dxX*,\s]", str(value).strip()):
        raise ValueError(f"cannot parse binning {value!r}")
    return f"{int(numbers[0])}x{int(numbers[1])}"


def _lookup(header, profile, quantity):
    """First header keyword of the profile present for ``quantity``, else the default."""
    for key in profile.header_keywords(quantity):
        if key in header and header[key] not in (None, ""):
            value = header[key]
            if isinstance(value, str):
                value = value.strip()
            return key, value
    if quantity in profile.defaults:
        return None, profile.defaults[quantity]
    return None, None


def _as_float(path, key, quantity, value):
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise FrameError(path, f"keyword {key} ({quantity}) is not a number: {value!r}",
                         keyword=key) from None
    if not math.isfinite(result):
        raise FrameError(path, f"keyword {key} ({quantity}) is not finite", keyword=key)
    return result


def _parse_angle(value, unit):
    if value is None:
        return math.nan
    try:
        if isinstance(value, str) and re.search(r"[:hdms\s]", value.strip()):
            return float(Angle(value, unit=unit).deg)
        return float(value)
    except (ValueError, TypeError):
        return math.nan


_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _parse_time(header, profile, path):
    """Time stamp and the entry of ``profile.time_keywords`` it came from.

    A single keyword holding a date only is passed over (a later entry joining it to a time
    keyword gives the time of day); in a joined entry only the date of the first keyword is
    used.
    """
    date_only = []
    for entry in profile.time_keywords:
        entry, _, fmt = entry.partition(":")
        keys = entry.split("+")
        if not all(k in header and header[k] not in (None, "") for k in keys):
            continue
        values = [str(header[k]).strip() for k in keys]
        if len(keys) == 1 and not fmt and _DATE_ONLY.fullmatch(values[0]):
            date_only.append(f"{keys[0]} = {values[0]!r}")
            continue
        if len(keys) > 1:
            values[0] = re.split(r"[T ]", values[0], maxsplit=1)[0]
        text = "T".join(values)
        try:
            if fmt:
                return parse_times(float(values[0]), fmt=fmt, scale=profile.time_scale), entry
            return parse_times(text, scale=profile.time_scale), entry
        except (ValueError, TypeError):
            raise FrameError(path, f"cannot parse time keyword {entry} = {text!r}",
                             keyword=entry) from None
    found = f" ({date_only[0]} holds a date only)" if date_only else ""
    raise FrameError(path, "no time keyword: none of "
                     f"{', '.join(profile.time_keywords)} is in the header{found}",
                     keyword=profile.time_keywords[0])


def _camera(header, profile, path, filter_name):
    """The frame's camera and where it came from (see :mod:`opticam_like.instruments`)."""
    for key in profile.header_keywords("camera"):
        if key in header and str(header[key]).strip():
            return profile.camera_name(header[key]), key
    camera = profile.camera_of_filter(filter_name) if filter_name is not None else None
    if camera is not None:
        return camera, "filter"
    if profile.camera_directories:
        camera = camera_from_directory(path)
        if camera is not None:
            return camera, "directory"
    if "camera" in profile.defaults:
        return profile.camera_name(profile.defaults["camera"]), "default"
    if "camera" not in profile.required:
        return "1", "default"
    keys = profile.header_keywords("camera") or ("camera",)
    clues = [f"no {' / '.join(keys)} keyword"]
    if profile.camera_filters:
        owners = "; ".join(f"{c}: {', '.join(f)}" for c, f in profile.camera_filters.items())
        clues.append(f"filter {filter_name!r} is none of the cameras' ({owners})")
    if profile.camera_directories:
        clues.append("no parent directory named c1, c2, ... (or cam1, camera1)")
    raise FrameError(path, f"cannot tell which camera took the frame: {', '.join(clues)}",
                     keyword=keys[0])


def _header_info(header, shape, path, profile):
    values = {}
    for quantity in ("filter", "binning", "gain", "read_noise", "exposure", "dark_current",
                     "saturation", "observatory", "image_type", "object"):
        key, value = _lookup(header, profile, quantity)
        if value is None and quantity in profile.required:
            keys = profile.header_keywords(quantity) or (quantity,)
            raise FrameError(path, f"missing keyword {' / '.join(keys)} ({quantity})",
                             keyword=keys[0])
        values[quantity] = (key, value)
    numbers = {}
    for quantity in ("gain", "read_noise", "exposure", "dark_current", "saturation"):
        key, value = values[quantity]
        numbers[quantity] = math.nan if value is None else _as_float(path, key, quantity, value)
    if not numbers["gain"] > 0:
        raise FrameError(path, f"gain must be positive, got {numbers['gain']}",
                         keyword=values["gain"][0])
    if numbers["exposure"] < 0:
        raise FrameError(path, f"negative exposure {numbers['exposure']}",
                         keyword=values["exposure"][0])
    binning_key, binning = values["binning"]
    try:
        binning = parse_binning(binning if binning is not None else "1x1")
    except ValueError:
        raise FrameError(path, f"keyword {binning_key} is not a binning: {binning!r}",
                         keyword=binning_key) from None
    camera, camera_source = _camera(header, profile, path, values["filter"][1])
    stamp, time_key = _parse_time(header, profile, path)
    _, ra = _lookup(header, profile, "ra")
    _, dec = _lookup(header, profile, "dec")
    return FrameInfo(
        path=str(path),
        camera=camera,
        filter=str(values["filter"][1]).strip(),
        binning=binning,
        shape=tuple(int(n) for n in shape),
        gain=numbers["gain"],
        read_noise=numbers["read_noise"],
        exposure=numbers["exposure"],
        dark_current=0.0 if math.isnan(numbers["dark_current"]) else numbers["dark_current"],
        saturation=math.inf if math.isnan(numbers["saturation"]) else numbers["saturation"],
        time=mid_exposure(stamp, numbers["exposure"], profile.time_reference),
        time_keyword=time_key,
        ra=_parse_angle(ra, u.hourangle),
        dec=_parse_angle(dec, u.deg),
        observatory=str(values["observatory"][1] or ""),
        image_type=str(values["image_type"][1] or ""),
        object=str(values["object"][1] or ""),
        camera_source=camera_source,
    )


def image_hdu(hdul, path):
    """The first HDU of an open FITS file holding a 2-D image.

    Raises
    ------
    FrameError
        When no HDU holds a 2-D image.
    """
    for hdu in hdul:
        if hdu.is_image and hdu.header.get("NAXIS", 0) == 2:
            return hdu
    raise FrameError(path, "no 2-D image in any HDU")


def _gunzip(path):
    """The whole decompressed content of a gzip file; its CRC-32 and length are checked.

    astropy stops reading a ``.gz`` stream once it has the bytes it needs, so the gzip trailer
    (CRC-32 and size) is never checked and corrupt data would be read as pixels; Python's
    :mod:`gzip` checks the trailer when the stream is read to its end.
    """
    try:
        with gzip.open(path) as stream:
            return stream.read()
    except EOFError:
        raise FrameError(path, "the gzip stream is truncated (the file was cut short)"
                         ) from None
    except gzip.BadGzipFile as exc:
        raise FrameError(path, f"corrupt gzip file ({exc}); the data cannot be trusted"
                         ) from None
    except zlib.error as exc:
        raise FrameError(path, f"corrupt gzip data ({exc})") from None
    except OSError as exc:
        raise FrameError(path, f"cannot read the file ({exc.strerror or exc})") from None


def open_fits(path, strict=True):
    """Open a FITS file; read errors (and, when ``strict``, truncation) become
    :class:`FrameError`.

    Parameters
    ----------
    path : str or Path
    strict : bool
        Reject a truncated file at once, and read a gzip-compressed file (``.gz``) to its end
        to check its CRC-32, so that a corrupt file is rejected instead of read as garbage
        pixels. Header-only reads pass ``False``: a file cut short or corrupt in its data still
        has a usable header, so the frame keeps its place (and time) in the outputs and is
        rejected when its pixels are read.
    """
    source = path
    if strict and str(path).lower().endswith(".gz"):
        source = io.BytesIO(_gunzip(path))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error" if strict else "ignore", message=".*truncated.*")
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            return fits.open(source, memmap=False)
    except (OSError, ValueError, TypeError, UserWarning) as exc:
        raise FrameError(path, f"cannot read FITS file ({exc})") from None


def read_header(path, profile="opticam"):
    """Parse one frame's header (the pixels are not read).

    Parameters
    ----------
    path : str or Path
        A FITS file.
    profile : InstrumentProfile or str
        How to read the header.

    Returns
    -------
    FrameInfo

    Raises
    ------
    FrameError
        Unreadable or truncated file, no 2-D image, missing or invalid keyword (named).
    """
    profile = load_profile(profile)
    with open_fits(path, strict=False) as hdul:
        hdu = image_hdu(hdul, path)
        header = hdu.header
        shape = (header["NAXIS2"], header["NAXIS1"])
        return _header_info(header, shape, path, profile)


def read_frame(path, profile="opticam", info=None):
    """Read one frame: pixels as float32 ADU and the parsed header.

    Parameters
    ----------
    path : str or Path
        A FITS file.
    profile : InstrumentProfile or str
        How to read the header.
    info : FrameInfo, optional
        The frame's header as parsed before (by the scan); it is reused instead of parsing the
        header again (which costs more than reading the pixels of a 512 x 512 frame).

    Returns
    -------
    Frame

    Raises
    ------
    FrameError
        Unreadable or truncated file, missing keyword, no finite pixel, or a shape that differs
        from ``info``.
    """
    with open_fits(path) as hdul:
        hdu = image_hdu(hdul, path)
        header = hdu.header
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                data = np.asarray(hdu.data, dtype=np.float32)
        except (OSError, ValueError, TypeError) as exc:
            raise FrameError(path, f"cannot read the pixels ({exc}); the file may be "
                             "truncated") from None
    if data.ndim != 2:
        raise FrameError(path, f"image has {data.ndim} dimensions, expected 2")
    if not np.isfinite(data).any():
        raise FrameError(path, "no finite pixel (all NaN or inf)")
    if info is None:
        info = _header_info(header, data.shape, path, load_profile(profile))
    elif info.shape != data.shape:
        raise FrameError(path, f"image shape {data.shape} differs from the header's {info.shape}")
    return Frame(data=data, info=info, header=header)
