"""Overscan and trim sections of a raw frame, from FITS header keywords.

Sections use the FITS/IRAF syntax ``[x1:x2,y1:y2]``: 1-based, inclusive, ``x`` along a row
(``NAXIS1``) and ``y`` along a column (``NAXIS2``). They are applied identically to calibration
and science frames: the overscan level (median of the overscan region, ADU) is subtracted from
the whole frame, then the frame is cut to the trim section.
"""

import re

import numpy as np

from ..frames import FrameError

__all__ = ["parse_section", "header_sections", "overscan_level"]

_SECTION = re.compile(r"^\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]$")


def parse_section(text, shape=None):
    """Convert a FITS section string to array slices.

    Parameters
    ----------
    text : str
        ``'[x1:x2,y1:y2]'``, 1-based and inclusive, ``x1 <= x2`` and ``y1 <= y2``.
    shape : tuple of int, optional
        Image shape ``(ny, nx)``; when given, the section must lie inside the image.

    Returns
    -------
    tuple of slice
        ``(slice_y, slice_x)`` to index ``image[slice_y, slice_x]`` (0-based, end exclusive).

    Raises
    ------
    ValueError
        When the text is not a section, a range is reversed or empty, or the section
        leaves the image.
    """
    match = _SECTION.match(str(text).strip())
    if match is None:
        raise ValueError(f"{text!r} is not a FITS section '[x1:x2,y1:y2]'")
    x1, x2, y1, y2 = (int(v) for v in match.groups())
    if min(x1, y1) < 1 or x1 > x2 or y1 > y2:
        raise ValueError(f"section {text!r} must have 1 <= x1 <= x2 and 1 <= y1 <= y2")
    if shape is not None and (y2 > shape[0] or x2 > shape[1]):
        raise ValueError(f"section {text!r} leaves the image of {shape[1]} x {shape[0]} "
                         "pixels (nx x ny)")
    return slice(y1 - 1, y2), slice(x1 - 1, x2)


def header_sections(header, shape, path, biassec_keyword="BIASSEC", trimsec_keyword="TRIMSEC"):
    """Overscan and trim sections of one frame.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header.
    shape : tuple of int
        Raw image shape ``(ny, nx)``.
    path : str
        The frame's file, for error messages.
    biassec_keyword, trimsec_keyword : str or None
        Header keywords of the overscan and trim sections; None disables the step.

    Returns
    -------
    overscan, trim : tuple of slice or None
        ``(slice_y, slice_x)`` of each section, None when the keyword is disabled or absent.

    Raises
    ------
    FrameError
        When a section keyword holds an invalid section (the keyword is named).
    """
    sections = []
    for keyword in (biassec_keyword, trimsec_keyword):
        if keyword is None or keyword not in header:
            sections.append(None)
            continue
        try:
            sections.append(parse_section(header[keyword], shape))
        except ValueError as exc:
            raise FrameError(path, f"keyword {keyword}: {exc}", keyword=keyword) from None
    return tuple(sections)


def overscan_level(data, overscan):
    """Bias level measured in the overscan region.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Raw image (ADU).
    overscan : tuple of slice or None
        Overscan section from :func:`header_sections`.

    Returns
    -------
    float
        Median of the finite overscan pixels (ADU); 0 when there is no overscan section.
    """
    if overscan is None:
        return 0.0
    region = np.asarray(data[overscan], dtype=np.float32)
    region = region[np.isfinite(region)]
    return float(np.median(region)) if region.size else 0.0
