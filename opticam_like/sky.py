"""The night-wide catalogue: per-camera catalogues matched into one ID per star.

OPTICAM's three cameras see the same field through a dichroic beam splitter: their pixel
scales differ (0.1397, 0.1406 and 0.1661 arcsec/px), and so do their orientations and mirror
flips. Each camera's catalogue (:func:`~opticam_like.catalog.catalog_from_stack`) is in its own
reference frame, with IDs ranked by brightness in its own band, so the same star would have a
different ID in each band. :func:`match_catalogs` finds the affine map from a reference
camera's pixels to every other camera's pixels (asterism matching with astroalign, trying the
four mirror flips, then a least-squares affine fit over all matched stars), matches the stars
one to one, and numbers them once for the night: by brightness in the reference band, then the
stars seen only in other bands by their brightness there.
"""

import logging

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

from .alignment import AlignmentError, Transform, find_transform
from .catalog import CATALOG_UNITS, set_units
from .errors import ReductionError

__all__ = ["NightCatalog", "match_catalogs", "camera_transform", "number_stars",
           "nearest_source"]

log = logging.getLogger(__name__)

_FLIPS = ((1.0, 1.0), (-1.0, 1.0), (1.0, -1.0), (-1.0, -1.0))


def _flip_matrix(sx, sy):
    return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]])


def _affine_fit(src, dst):
    """Least-squares affine matrix (3x3) with ``dst = M @ src``."""
    design = np.column_stack([src, np.ones(len(src))])
    coeffs, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return np.vstack([coeffs.T, [0.0, 0.0, 1.0]])


def _match(predicted, points, tolerance):
    """One-to-one nearest matches within ``tolerance``: index arrays (i_predicted, i_points)."""
    if len(points) == 0 or len(predicted) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    distance, nearest = cKDTree(points).query(predicted, distance_upper_bound=tolerance)
    order = np.argsort(distance, kind="stable")
    used, first, second = set(), [], []
    for i in order:
        if not np.isfinite(distance[i]) or nearest[i] in used:
            continue
        used.add(int(nearest[i]))
        first.append(int(i))
        second.append(int(nearest[i]))
    return np.asarray(first, int), np.asarray(second, int)


def camera_transform(ref_xy, cam_xy, tolerance=2.0, max_control_points=40):
    """Affine transform from a reference camera's pixels to another camera's pixels.

    Parameters
    ----------
    ref_xy : array_like, shape (N, 2)
        Star positions in the reference camera (px), brightest first.
    cam_xy : array_like, shape (M, 2)
        Star positions in the other camera (px), brightest first.
    tolerance : float
        Matching radius (px, in the other camera) of the final fit.
    max_control_points : int
        Brightest stars of each list given to astroalign.

    Returns
    -------
    Transform
        Reference camera -> other camera (``method='night'``-style: ``n_matches`` and ``rms``
        of the final affine fit over all one-to-one matches).

    Raises
    ------
    AlignmentError
        If no mirror flip gives a reliable match.

    Notes
    -----
    astroalign (Beroiz et al. 2020) matches triangle asterisms and fits a similarity
    transform, which cannot represent a mirror flip; the four flips of the other camera's
    coordinates are tried in turn and the first that astroalign accepts (its own test rejects
    chance coincidences of unrelated lists) is kept. It is refined by an affine least-squares fit (which absorbs small differences in scale between
    the axes) iterated with the one-to-one matches.
    """
    ref_xy = np.asarray(ref_xy, dtype=float).reshape(-1, 2)
    cam_xy = np.asarray(cam_xy, dtype=float).reshape(-1, 2)
    matrix, reasons = None, []
    for sx, sy in _FLIPS:
        try:
            found = find_transform(cam_xy * (sx, sy), ref_xy, method="astroalign",
                                   max_control_points=max_control_points,
                                   tolerance=tolerance)
        except AlignmentError as exc:
            reasons.append(f"flip ({sx:+.0f}, {sy:+.0f}): {exc.reason}")
            continue
        matrix = _flip_matrix(sx, sy) @ found.matrix
        break
    if matrix is None:
        raise AlignmentError("no mirror flip matches the cameras: " + "; ".join(reasons))
    for _ in range(3):
        predicted = Transform(matrix).apply(ref_xy[:, 0], ref_xy[:, 1])
        i_ref, i_cam = _match(np.column_stack(predicted), cam_xy, tolerance)
        if len(i_ref) < 3:
            break
        matrix = _affine_fit(ref_xy[i_ref], cam_xy[i_cam])
    predicted = np.column_stack(Transform(matrix).apply(ref_xy[:, 0], ref_xy[:, 1]))
    i_ref, i_cam = _match(predicted, cam_xy, tolerance)
    rms = float(np.sqrt(np.mean(np.sum((predicted[i_ref] - cam_xy[i_cam])**2, axis=1))))
    return Transform(matrix, method="astroalign", n_matches=len(i_ref), rms=rms)


class NightCatalog:
    """One ID per star across the cameras of a night.

    Parameters
    ----------
    table : astropy.table.Table
        One row per star: ``id`` (1-based night ID) and, for every band ``b``, ``x_b``, ``y_b``
        (px in that camera's reference frame; predicted through the camera transform where the
        camera did not detect the star), ``id_b`` (the camera catalogue's row ID, 0 where the
        camera did not detect it), ``flux_b`` (e- per frame; NaN where not detected) and
        ``in_b`` (True when the position lies inside that camera's frame).
    reference : str
        Band whose brightness ranks the IDs.
    transforms : dict of str to Transform
        Reference camera -> each camera.
    """

    def __init__(self, table, reference, transforms, catalogs=None):
        self.table = table
        self.reference = reference
        self.transforms = dict(transforms)
        self.catalogs = dict(catalogs or {})

    @property
    def bands(self):
        """The bands (cameras) of the night, reference first."""
        return list(self.transforms)

    def camera_catalog(self, band, count=None):
        """The camera's catalogue numbered by night ID: every star of the night, in ID order.

        Row ``k`` is night ID ``k + 1`` in every camera, so the photometry tables of all
        cameras have the same columns (forced photometry at the mapped position where a camera
        did not detect a star; outside its frame the points are flagged like any aperture
        beyond the image).

        Parameters
        ----------
        band : str
        count : ndarray of int, shape (ny, nx), optional
            Frames behind each pixel of the camera's stack (for the ``coverage`` column of the
            stars it did not detect; 0 without it).

        Returns
        -------
        astropy.table.Table
            ``id`` (night ID), ``x``, ``y`` (px in the camera's reference frame), ``flux``,
            ``peak``, ``fwhm``, ``npix`` (from the camera's detection; NaN / 0 where it did not
            detect the star), ``coverage``, ``flags`` (the finder's, or
            ``SourceFlag.UNDETECTED``), ``detected`` and ``inside`` (bool), ``camera_id`` (the
            brightness rank in this camera's own catalogue, 0 when not detected).

        Raises
        ------
        KeyError
            If ``band`` is not a camera of the night.
        """
        from .detection import SourceFlag

        if band not in self.transforms:
            raise KeyError(f"no camera {band!r} in the night catalogue (bands: {self.bands})")
        table, own = self.table, self.catalogs.get(band)
        cam_id = np.asarray(table[f"id_{band}"])
        detected = cam_id > 0
        n = len(table)
        out = Table()
        out["id"] = table["id"]
        out["x"] = np.asarray(table[f"x_{band}"], dtype=float)
        out["y"] = np.asarray(table[f"y_{band}"], dtype=float)
        columns = {"flux": (float, np.nan), "peak": (float, np.nan), "fwhm": (float, np.nan),
                   "npix": (np.int64, 0), "coverage": (float, 0.0), "flags": (np.int32, 0)}
        for name, (dtype, fill) in columns.items():
            values = np.full(n, fill, dtype=dtype)
            if own is not None and name in own.colnames and detected.any():
                values[detected] = np.asarray(own[name])[cam_id[detected] - 1]
            out[name] = values
        out["flags"][~detected] = int(SourceFlag.UNDETECTED)
        if count is not None:
            count = np.asarray(count)
            ny, nx = count.shape
            xi = np.clip(np.rint(out["x"]).astype(int), 0, nx - 1)
            yi = np.clip(np.rint(out["y"]).astype(int), 0, ny - 1)
            fraction = count[yi, xi] / max(int(count.max()), 1)
            out["coverage"][~detected] = np.where(np.asarray(table[f"in_{band}"]),
                                                  fraction, 0.0)[~detected]
        out["detected"] = detected
        out["inside"] = np.asarray(table[f"in_{band}"], dtype=bool)
        out["camera_id"] = cam_id
        set_units(out, CATALOG_UNITS)
        out.meta.update({k: v for k, v in (own.meta.items() if own is not None else ())})
        out.meta["night_reference_band"] = self.reference
        return out

    def find(self, x, y, band=None, tolerance=3.0):
        """Night ID of the star nearest to ``(x, y)`` in a camera's reference frame.

        Parameters
        ----------
        x, y : float
            Position (px, 0-based) in the reference frame of ``band``.
        band : str, optional
            Camera whose pixels ``(x, y)`` are in; default the reference band.
        tolerance : float
            Largest distance (px) accepted.

        Returns
        -------
        int

        Raises
        ------
        ReductionError
            If no star lies within ``tolerance``.
        """
        band = self.reference if band is None else band
        return nearest_source(self.camera_catalog(band), x, y, tolerance, frame=band)


def nearest_source(catalog, x, y, tolerance=3.0, frame=None):
    """ID of the catalogue star nearest to ``(x, y)``.

    Parameters
    ----------
    catalog : astropy.table.Table
        A camera's catalogue: ``id``, ``x``, ``y`` (px) and, for night catalogues, ``inside``
        (only the stars inside the camera's frame are candidates).
    x, y : float
        Position (px, 0-based) in the catalogue's reference frame.
    tolerance : float
        Largest distance (px) accepted.
    frame : str, optional
        Name of the frame, for the message.

    Returns
    -------
    int

    Raises
    ------
    ReductionError
        If no star lies within ``tolerance`` (the message gives the nearest distance).
    """
    if "inside" in catalog.colnames:
        catalog = catalog[np.asarray(catalog["inside"], dtype=bool)]
    distance = np.hypot(np.asarray(catalog["x"], dtype=float) - x,
                        np.asarray(catalog["y"], dtype=float) - y)
    if len(distance) == 0 or distance.min() > tolerance:
        nearest = f"; nearest at {distance.min():.1f} px" if len(distance) else ""
        where = f" in the {frame} frame" if frame else ""
        raise ReductionError(f"no star within {tolerance} px of ({x}, {y}){where}{nearest}")
    return int(catalog["id"][int(np.argmin(distance))])


def match_catalogs(catalogs, shapes, reference=None, tolerance=2.0):
    """Match per-camera catalogues into the night-wide catalogue.

    Parameters
    ----------
    catalogs : dict of str to astropy.table.Table
        Per band (camera): ``x``, ``y`` (px), ``flux`` (e-), brightest first.
    shapes : dict of str to tuple of int
        Per band: the reference frame shape ``(ny, nx)``.
    reference : str, optional
        Band that ranks the IDs; default the band with the most sources.
    tolerance : float
        Matching radius (px).

    Returns
    -------
    NightCatalog

    Raises
    ------
    AlignmentError
        If a camera cannot be matched to the reference camera.
    """
    bands = list(catalogs)
    if reference is None:
        reference = max(bands, key=lambda b: len(catalogs[b]))
    bands = [reference] + [b for b in bands if b != reference]
    ref = catalogs[reference]
    ref_xy = np.column_stack([ref["x"], ref["y"]]).astype(float)
    transforms = {reference: Transform.identity()}
    for band in bands[1:]:
        cat = catalogs[band]
        transforms[band] = camera_transform(
            ref_xy, np.column_stack([cat["x"], cat["y"]]).astype(float), tolerance=tolerance)

    # stars: reference-band positions (px), their flux for ranking, and per-band matches
    star_xy = [tuple(p) for p in ref_xy]
    rank_key = [(0, -float(f)) for f in ref["flux"]]
    members = {reference: {i: i for i in range(len(ref))}}
    for order, band in enumerate(bands[1:], start=1):
        cat = catalogs[band]
        cam_xy = np.column_stack([cat["x"], cat["y"]]).astype(float)
        xy = np.asarray(star_xy)
        predicted = np.column_stack(transforms[band].apply(xy[:, 0], xy[:, 1]))
        i_star, i_cam = _match(predicted, cam_xy, tolerance)
        members[band] = dict(zip(i_star.tolist(), i_cam.tolist()))
        inverse = transforms[band].inverse()
        for j in sorted(set(range(len(cat))) - set(i_cam.tolist())):
            members[band][len(star_xy)] = j
            star_xy.append(tuple(np.ravel(inverse.apply(cam_xy[j, 0], cam_xy[j, 1]))))
            rank_key.append((order, -float(cat["flux"][j])))
    ranking = sorted(range(len(star_xy)), key=lambda s: rank_key[s])
    xy = np.asarray(star_xy).reshape(-1, 2)[ranking]
    table = Table()
    table["id"] = np.arange(1, len(ranking) + 1)
    for band in bands:
        cat = catalogs[band]
        x, y = transforms[band].apply(xy[:, 0], xy[:, 1])
        x, y = np.array(x, dtype=float), np.array(y, dtype=float)
        cam_id = np.zeros(len(ranking), dtype=np.int64)
        flux = np.full(len(ranking), np.nan)
        for row, star in enumerate(ranking):
            j = members[band].get(star)
            if j is not None:
                x[row], y[row] = float(cat["x"][j]), float(cat["y"][j])
                cam_id[row] = int(cat["id"][j]) if "id" in cat.colnames else j + 1
                flux[row] = float(cat["flux"][j])
        ny, nx = shapes[band]
        table[f"x_{band}"] = x * CATALOG_UNITS["x"]
        table[f"y_{band}"] = y * CATALOG_UNITS["y"]
        table[f"id_{band}"] = cam_id
        table[f"flux_{band}"] = flux * CATALOG_UNITS["flux"]
        table[f"in_{band}"] = (x >= -0.5) & (x <= nx - 0.5) & (y >= -0.5) & (y <= ny - 0.5)
    table.meta["reference_band"] = reference
    table.meta["transforms"] = {b: t.matrix.tolist() for b, t in transforms.items()}
    return NightCatalog(table, reference, transforms, catalogs)


def number_stars(catalogs, counts, reference=None):
    """Give the stars of a night's per-camera catalogues one ID across the cameras.

    Parameters
    ----------
    catalogs : dict of str to astropy.table.Table
        Per band (camera): the catalogue of :func:`~opticam_like.catalog.catalog_from_stack`.
    counts : dict of str to ndarray of int, shape (ny, nx)
        Per band: frames behind each pixel of the stack (gives the shapes and coverages).
    reference : str, optional
        Band that ranks the IDs (default: the one with the most sources).

    Returns
    -------
    catalogs : dict of str to astropy.table.Table
        Per band, :meth:`NightCatalog.camera_catalog`: every star of the night in night-ID
        order. Unchanged with a single band, or when a camera cannot be matched (the reason is
        logged as a warning and ``night_ids`` is False in each catalogue's metadata).
    night : NightCatalog or None
        None when the catalogues were left unchanged.
    """
    if len(catalogs) < 2:
        return catalogs, None
    try:
        night = match_catalogs(catalogs, {b: np.shape(c) for b, c in counts.items()},
                               reference=reference)
    except AlignmentError as exc:
        log.warning("the cameras could not be matched (%s): each camera keeps its own "
                    "brightness-ranked IDs, so an ID names different stars in different "
                    "cameras", exc.reason)
        for catalog in catalogs.values():
            catalog.meta["night_ids"] = False
        return catalogs, None
    numbered = {}
    for band in catalogs:
        numbered[band] = night.camera_catalog(band, counts[band])
        numbered[band].meta["night_ids"] = True
        log.info("%s: %d night stars, %d detected in this camera", band, len(numbered[band]),
                 int(numbered[band]["detected"].sum()))
    return numbered, night
