"""What the report shows, read from a finished output directory.

Nothing here reduces data: the tables are read as written, and the few numbers the report
shows that are not in them (ensemble flux, robust scatter, excess noise, airmass) are cheap
functions of those tables.
"""

from dataclasses import dataclass
from functools import cached_property
import json
import tomllib

import numpy as np
from astropy import units as u
from astropy.coordinates import AltAz, SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from ..flags import PhotFlag
from ..lightcurves import select_comparisons, time_column
from ..timing import get_site, offline_iers

__all__ = ["FilterNight", "load_filter", "excess_noise", "detrended_flux", "ensemble_flux",
           "airmass", "flag_counts", "read_config_text", "utc_times", "MAD_TO_SIGMA"]

MAD_TO_SIGMA = 1.482602218505602
"""Scale from the median absolute deviation to the standard deviation of a normal law."""

_AIRMASS_NODES = 200


@dataclass
class FilterNight:
    """One filter of a reduced night, as the report needs it.

    Attributes
    ----------
    name, photometer : str
    table : astropy.table.Table
        The photometry table (``lcs/``), one row per frame, ``Time`` column ``time_name``.
    time_name : str
    catalog : astropy.table.Table
    stack : ndarray or None
        The stack image (e-), ``stack[y, x]``, None when the file is missing.
    stack_header : astropy.io.fits.Header or None
        Its header (a celestial WCS there gives N/E arrows on the figure).
    light_curve : astropy.table.Table or None
        The first relative light curve of this filter and photometer.
    target : int or None
        Catalogue ID of the target (from the light curve).
    comparisons : list of int
        Catalogue IDs of the comparison stars (the light curve's, else chosen automatically).
    check : int or None
        Catalogue ID of the check star (the light curve's ``check``, else the brightest other
        star unflagged in 90% of the frames).
    transforms : astropy.table.Table or None
    """

    name: str
    photometer: str
    table: Table
    time_name: str
    catalog: Table
    stack: np.ndarray
    stack_header: fits.Header
    light_curve: Table
    target: int
    comparisons: list
    check: int
    transforms: Table

    @property
    def times(self):
        return self.table[self.time_name]

    @cached_property
    def flux(self):
        """Fluxes (e-), shape (n_frames, n_sources)."""
        return np.asarray(self.table["flux"], dtype=float)

    @cached_property
    def flux_err(self):
        """Flux errors (e-), shape (n_frames, n_sources)."""
        return np.asarray(self.table["flux_err"], dtype=float)

    @cached_property
    def flags(self):
        """Point flags OR the frame flags, shape (n_frames, n_sources)."""
        return _all_flags(self.table)

    @cached_property
    def ensemble_good(self):
        """Frames where every comparison is unflagged and finite, shape (n_frames,)."""
        comp = [c - 1 for c in self.comparisons]
        return (self.flags[:, comp] == 0).all(axis=1) & np.isfinite(self.flux[:, comp]).all(
            axis=1)

    def photometer_params(self):
        return json.loads(self.table.meta.get("PHOTPARS", "{}"))

    def config(self):
        return json.loads(self.table.meta.get("CONFIG", "{}"))


def _all_flags(table):
    return (np.asarray(table["flags"], dtype=np.int32)
            | np.asarray(table["frame_flags"], dtype=np.int32)[:, None])


def load_filter(files, name, photometer=None):
    """Read what the report shows of one filter.

    Parameters
    ----------
    files : OutputFiles
    name : str
        Filter name.
    photometer : str, optional
        Photometer table; default: the one of the first relative light curve, else the first
        in alphabetical order.

    Returns
    -------
    FilterNight

    Raises
    ------
    FileNotFoundError
        No photometry table for the filter (and photometer).
    """
    available = files.photometers(name)
    if photometer is None:
        with_curves = [p for p in available if files.relative_light_curves(name, p)]
        photometer = (with_curves or available or [None])[0]
    path = files.photometry(name, photometer) if photometer else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"no photometry table for filter {name!r} and photometer "
                                f"{photometer!r} under {files.root / 'lcs'}; available: "
                                f"{available or 'none'}")
    table = Table.read(path, astropy_native=True)
    catalog = Table.read(files.catalog(name)) if files.catalog(name).is_file() else None
    stack, stack_header = (fits.getdata(files.stack(name), header=True)
                           if files.stack(name).is_file() else (None, None))
    transforms = (Table.read(files.transforms(name))
                  if files.transforms(name).is_file() else None)
    curves = files.relative_light_curves(name, photometer)
    light_curve = Table.read(curves[0]) if curves else None
    flags = _all_flags(table)
    target = int(light_curve.meta["target"]) if light_curve is not None else None
    if light_curve is not None:
        comparisons = [int(c) for c in light_curve.meta["comparisons"]]
    else:
        comparisons = [c + 1 for c in select_comparisons(
            np.asarray(table["flux"], float), np.asarray(table["flux_err"], float), flags,
            target=-1)]
    check = light_curve.meta.get("check") if light_curve is not None else None
    if check is None:
        good_fraction = np.mean(flags == 0, axis=0)
        others = [i + 1 for i in range(flags.shape[1])
                  if i + 1 != target and i + 1 not in comparisons and good_fraction[i] >= 0.9]
        check = others[0] if others else None
    return FilterNight(name=name, photometer=photometer, table=table,
                       time_name=time_column(table), catalog=catalog,
                       stack=None if stack is None else stack.astype(float),
                       stack_header=stack_header,
                       light_curve=light_curve, target=target, comparisons=comparisons,
                       check=None if check is None else int(check), transforms=transforms)


def ensemble_flux(night):
    """Summed flux of the comparison stars over its median: the sky transparency.

    Parameters
    ----------
    night : FilterNight

    Returns
    -------
    ndarray, shape (n_frames,)
        NaN on frames where a comparison is flagged or missing.
    """
    total = night.flux[:, [c - 1 for c in night.comparisons]].sum(axis=1)
    good = night.ensemble_good
    total = np.where(good, total, np.nan)
    return total / np.nanmedian(total) if good.any() else total


def detrended_flux(night, star):
    """A star's flux over the comparisons' summed flux (the star left out), with its error.

    Parameters
    ----------
    night : FilterNight
    star : int
        Catalogue ID.

    Returns
    -------
    ratio, ratio_err : ndarray, shape (n_frames,)
        Normalised to a median of 1 over the good frames; errors from the CCD-equation errors
        of the star and of the ensemble members, in quadrature.
    good : ndarray of bool, shape (n_frames,)
        Frames where the star and every comparison are unflagged and finite.
    """
    flux, flux_err = night.flux, night.flux_err
    members = [c - 1 for c in night.comparisons if c != star]
    index = star - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        ensemble = flux[:, members].sum(axis=1) if members else np.full(len(flux), np.nan)
        ensemble_err = np.sqrt((flux_err[:, members] ** 2).sum(axis=1))
        ratio = flux[:, index] / ensemble
        relative_err = np.hypot(flux_err[:, index] / flux[:, index], ensemble_err / ensemble)
        good = (night.ensemble_good & (night.flags[:, index] == 0)
                & np.isfinite(ratio) & (flux[:, index] > 0))
        scale = np.median(ratio[good]) if good.any() else np.nan
    return ratio / scale, np.abs(ratio / scale) * relative_err, good


def excess_noise(night):
    """Measured scatter against propagated error, per catalogue star.

    For each star the flux over the comparisons' summed flux (:func:`detrended_flux`) on the
    frames where the star and every comparison are unflagged gives the robust scatter
    ``1.4826 * MAD`` (fractional); the propagated error is the median fractional CCD-equation
    error of that ratio. Their quotient is the excess noise (1 for a constant star whose
    errors are right).

    Parameters
    ----------
    night : FilterNight

    Returns
    -------
    astropy.table.Table
        Columns ``id``, ``mag`` (instrumental, ``-2.5 log10`` of the median flux in e-/s),
        ``n_good``, ``scatter``, ``error`` (fractional), ``rms_mag``, ``error_mag``
        (``2.5 / ln 10`` times those) and ``excess``; one row per star with 3 or more good
        frames, by ID.
    """
    flux = night.flux
    exposure = np.asarray(night.table["exposure"], dtype=float)
    rows = []
    for index in range(flux.shape[1]):
        ratio, ratio_err, good = detrended_flux(night, index + 1)
        if good.sum() < 3:
            continue
        values = ratio[good]
        scatter = MAD_TO_SIGMA * np.median(np.abs(values - np.median(values)))
        error = np.median(ratio_err[good] / ratio[good])
        rate = np.median(flux[good, index] / exposure[good])
        rows.append((index + 1, -2.5 * np.log10(rate), int(good.sum()), scatter, error,
                     scatter / error))
    table = Table(rows=rows, names=("id", "mag", "n_good", "scatter", "error", "excess"),
                  dtype=(int, float, int, float, float, float))
    to_mag = 2.5 / np.log(10)
    table["rms_mag"] = to_mag * table["scatter"]
    table["error_mag"] = to_mag * table["error"]
    return table


def _target_coordinates(meta, config):
    """Target (ra, dec) in degrees from table metadata or the configuration echo, or None."""
    ra, dec = meta.get("RA"), meta.get("DEC")
    if ra is None or dec is None:
        target = config.get("target", {})
        ra, dec = target.get("ra"), target.get("dec")
    if ra is None or dec is None:
        return None
    if isinstance(ra, str) or isinstance(dec, str):
        coord = SkyCoord(str(ra), str(dec), unit=(u.hourangle, u.deg))
        return coord.ra.deg, coord.dec.deg
    return float(ra), float(dec)


def _site(config):
    site = config.get("site", {})
    if "name" in site:
        return site["name"]
    if "lon" in site and "lat" in site:
        return (site["lon"], site["lat"], site.get("height", 0.0))
    return None


def airmass(night, utc=None):
    """Airmass of the target at each frame, or why it is unknown.

    Parameters
    ----------
    night : FilterNight
    utc : astropy.time.Time, optional
        UTC mid-exposure times of the frames; default the table's times (a BJD differs
        from UTC by at most ~10 min, which moves the airmass very little).

    Returns
    -------
    airmass : ndarray or None, shape (n_frames,)
        ``sec z`` computed at up to 200 times and interpolated; None when unknown.
    note : str
        Empty, or the reason the airmass is unknown.
    """
    config = night.config()
    coordinates = _target_coordinates(night.table.meta, config)
    site = _site(config)
    if coordinates is None or site is None:
        missing = " and ".join(n for n, v in (("target RA/Dec", coordinates), ("site", site))
                               if v is None)
        return None, f"airmass unknown: no {missing} in the metadata of the photometry tables"
    times = Time(night.times if utc is None else utc)
    location = get_site(site)
    mjd = times.utc.mjd
    nodes = np.linspace(np.nanmin(mjd), np.nanmax(mjd), min(_AIRMASS_NODES, len(mjd)))
    with offline_iers():
        frame = AltAz(obstime=Time(nodes, format="mjd", scale="utc"), location=location)
        altitude = SkyCoord(coordinates[0] * u.deg,
                            coordinates[1] * u.deg).transform_to(frame).alt
    secz = 1.0 / np.sin(altitude.to_value(u.rad))
    return np.interp(mjd, nodes, secz), ""


def flag_counts(nights):
    """Points and frames with each flag bit set, per filter.

    Parameters
    ----------
    nights : list of FilterNight

    Returns
    -------
    astropy.table.Table
        Columns ``flag``, ``bit`` and per filter ``{filter} points`` (source-frame pairs
        with the bit set in ``flags``) and ``{filter} frames`` (frames with the bit set in
        ``frame_flags``).
    """
    table = Table()
    table["flag"] = [flag.name for flag in PhotFlag]
    table["bit"] = [int(flag) for flag in PhotFlag]
    for night in nights:
        points = np.asarray(night.table["flags"], dtype=np.int64)
        frames = np.asarray(night.table["frame_flags"], dtype=np.int64)
        table[f"{night.name} points"] = [int(np.count_nonzero(points & flag))
                                         for flag in PhotFlag]
        table[f"{night.name} frames"] = [int(np.count_nonzero(frames & flag))
                                         for flag in PhotFlag]
    return table


def read_config_text(files):
    """The echoed configuration (``misc/config.toml``) and whether it parses as TOML."""
    if not files.config.is_file():
        return None, f"{files.config} does not exist"
    text = files.config.read_text()
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return text, f"not valid TOML: {exc}"
    return text, ""


def utc_times(files, night):
    """UTC mid-exposure times of a filter's frames from the scan table, or None."""
    if not files.frames.is_file():
        return None
    scan = Table.read(files.frames)
    if "mjd_mid" not in scan.colnames:
        return None
    mjd = dict(zip(scan["file"], scan["mjd_mid"]))
    values = [mjd.get(f, np.nan) for f in night.table["file"]]
    if not np.isfinite(values).all():
        return None
    return Time(values, format="mjd", scale="utc")
