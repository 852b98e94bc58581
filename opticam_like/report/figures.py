"""The report's figures: each function takes what :mod:`.night` read and returns a Figure.

Figures are :class:`matplotlib.figure.Figure` objects (no pyplot state, no screen), so the
same object is written into the PDF and, as a PNG, into the HTML.
"""

import warnings

import numpy as np
from astropy import units as u
from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval
from astropy.wcs import FITSFixedWarning, WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle

from .night import airmass, detrended_flux, ensemble_flux
from .timeaxis import axis_label, time_axis

__all__ = ["orientation", "stack_figure", "light_curve_figure", "rms_figure", "conditions_figure",
           "drift_figure", "text_figure", "N_LABELLED", "LINES_PER_PAGE"]

N_LABELLED = 15
"""Besides target, comparisons and check star, the stack figure labels the N brightest."""

LINES_PER_PAGE = 70
"""Lines of a table or of the configuration on one PDF page."""

_LABEL_BOX = {"boxstyle": "round,pad=0.15", "fc": "black", "ec": "none", "alpha": 0.65}
_ROLE_COLOURS = {"target": "tab:red", "comparison": "tab:cyan", "check": "tab:orange"}


def _figure(width, height):
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.1, right=0.96, bottom=0.08, top=0.92, hspace=0.35)
    return fig


def _roles(night):
    roles = {c: "comparison" for c in night.comparisons}
    if night.check is not None:
        roles[night.check] = "check"
    if night.target is not None:
        roles[night.target] = "target"
    return roles


def _annulus_radii(night, fwhm):
    """Annulus (r_in, r_out) in pixels from the photometer parameters, or None."""
    local = night.photometer_params().get("local_background") or {}
    if "r_in" not in local or "r_out" not in local:
        return None
    scale = fwhm if local.get("fwhm_scaled") else 1.0
    return local["r_in"] * scale, local["r_out"] * scale


def orientation(header, shape):
    """Unit pixel vectors of the arrows that orient an image: N and E, else +x and +y.

    Parameters
    ----------
    header : astropy.io.fits.Header or None
        With a celestial WCS, the arrows point to North and East at the image centre.
    shape : tuple of int
        ``(ny, nx)``.

    Returns
    -------
    list of (ndarray of shape (2,), str)
        ``(dx, dy)`` unit vectors and their labels.
    """
    axes = [(np.array([1.0, 0.0]), "+x"), (np.array([0.0, 1.0]), "+y")]
    if header is None:
        return axes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header)
    if not wcs.has_celestial:
        return axes
    wcs = wcs.celestial
    centre = np.array([(shape[1] - 1) / 2, (shape[0] - 1) / 2])
    sky = wcs.pixel_to_world(*centre)
    step = 10 * np.mean(np.abs(proj_plane_pixel_scales(wcs))) * u.deg
    arrows = []
    for position_angle, label in ((0 * u.deg, "N"), (90 * u.deg, "E")):
        x, y = wcs.world_to_pixel(sky.directional_offset_by(position_angle, step))
        vector = np.array([float(x), float(y)]) - centre
        arrows.append((vector / np.hypot(*vector), label))
    return arrows


def stack_figure(night, n_labelled=N_LABELLED):
    """The stack with apertures and annuli; target, comparisons, check and brightest labelled.

    Parameters
    ----------
    night : FilterNight
    n_labelled : int
        Other sources labelled with their ID: the brightest ``n_labelled``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(8.5, 8))
    fig.subplots_adjust(left=0.08, right=0.9, bottom=0.07, top=0.93)
    ax = fig.add_axes([0.08, 0.07, 0.76, 0.86])
    cax = fig.add_axes([0.86, 0.07, 0.03, 0.86])
    stack = night.stack
    finite = np.isfinite(stack)
    norm = ImageNormalize(stack[finite], interval=ZScaleInterval(), stretch=AsinhStretch())
    image = ax.imshow(stack, origin="lower", cmap="Greys_r", norm=norm)
    fig.colorbar(image, cax=cax, label="stacked flux (e-/pixel)")
    catalog = night.catalog
    radius = float(np.nanmedian(night.table["aperture_radius"]))
    fwhm = float(np.nanmedian(night.table["fwhm"]))
    annulus = _annulus_radii(night, fwhm)
    roles = _roles(night)
    for row in catalog:
        sid = int(row["id"])
        role = roles.get(sid)
        colour = _ROLE_COLOURS.get(role, "yellow")
        ax.add_patch(Circle((row["x"], row["y"]), radius, fill=False, color=colour,
                            lw=1.2 if role else 0.4, alpha=1.0 if role else 0.5))
        if annulus is not None and role:
            for r in annulus:
                ax.add_patch(Circle((row["x"], row["y"]), r, fill=False, color=colour,
                                    lw=0.8, ls="--"))
        if role or sid <= n_labelled:
            text = {"target": f"T {sid}", "comparison": f"C {sid}",
                    "check": f"K {sid}"}.get(role, str(sid))
            offset = 0.7 * (annulus[1] if annulus and role else radius) + 1
            ax.annotate(text, (row["x"] + offset, row["y"] + offset), color=colour,
                        fontsize=10 if role else 8, fontweight="bold" if role else "normal",
                        bbox=_LABEL_BOX)
    ny, nx = stack.shape
    length = 0.1 * min(nx, ny)
    origin = np.array([0.08 * nx, 0.08 * ny])
    for direction, label in orientation(night.stack_header, stack.shape):
        tip = origin + length * direction
        ax.annotate("", xy=tip, xytext=origin,
                    arrowprops={"arrowstyle": "->", "color": "lime", "lw": 1.5})
        ax.annotate(label, origin + 1.3 * length * direction, color="lime", fontsize=9,
                    ha="center", va="center", bbox=_LABEL_BOX)
    ax.set(xlim=(-0.5, nx - 0.5), ylim=(-0.5, ny - 0.5), xlabel="x (pixels)",
           ylabel="y (pixels)")
    annulus_text = (f", annulus {annulus[0]:.1f}-{annulus[1]:.1f} px (dashed)"
                    if annulus else "")
    ax.set_title(f"{night.name}: {len(catalog)} sources; aperture {radius:.1f} px"
                 f"{annulus_text}\nT target (red), C comparisons (cyan), K check (orange); "
                 f"IDs of the {n_labelled} brightest", fontsize=9)
    return fig


def _errorbar(ax, t, y, err, good, label, colour=None):
    ax.errorbar(t[good], y[good], err[good], fmt=".", ms=2, lw=0.4, label=label,
                color=colour)
    if (~good).any():
        # add_artist: flagged points are drawn where they fall but do not stretch the axis
        ax.add_artist(Line2D(t[~good], y[~good], ls="none", marker="x", color="0.6", ms=3))


def light_curve_figure(night):
    """Target, comparison and check-star light curves of one filter.

    The target is its relative light curve (``relative_light_curves/``); comparisons and
    check star are each divided by the summed flux of the other comparisons, normalised to
    a median of 1, and offset for clarity. Flagged points are grey crosses (the axis range
    follows the unflagged points).

    Parameters
    ----------
    night : FilterNight

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure(10, 9)
    ax_t, ax_c, ax_k = fig.subplots(3, 1, sharex=True)
    t, unit, start = time_axis(night.times)
    if night.light_curve is not None:
        lc = night.light_curve
        good = np.asarray(lc["flags"]) == 0
        lc_t, _, _ = time_axis(lc[night.time_name], start=start, unit=unit)
        _errorbar(ax_t, lc_t, np.asarray(lc["relative_flux"]),
                  np.asarray(lc["relative_flux_err"]), good, f"target {night.target}",
                  _ROLE_COLOURS["target"])
        ax_t.legend(loc="upper right", fontsize=8)
    else:
        ax_t.text(0.5, 0.5, "no relative light curve for this filter and photometer",
                  transform=ax_t.transAxes, ha="center")
    ax_t.set(ylabel="target / ensemble",
             title=f"{night.name} ({night.photometer}): "
                   + (f"target {night.target}, " if night.target else "no target, ")
                   + f"comparisons {night.comparisons}, "
                   + (f"check {night.check}" if night.check else "no check star"))
    step = 0.0
    for sid in night.comparisons:
        ratio, err, good = detrended_flux(night, sid)
        _errorbar(ax_c, t, ratio + step, err, good, f"C {sid}" + (f" + {step:.2f}"
                                                                  if step else ""))
        spread = np.nanpercentile(ratio[good], [1, 99]) if good.any() else (1.0, 1.0)
        step += max(5 * (spread[1] - spread[0]), 0.02)
    ax_c.set(ylabel="comparison / others (offset)")
    bottom, top = ax_c.get_ylim()
    ax_c.set_ylim(bottom, top + 0.15 * (top - bottom))
    ax_c.legend(loc="upper center", fontsize=7, ncol=max(1, len(night.comparisons)))
    if night.check is not None:
        ratio, err, good = detrended_flux(night, night.check)
        _errorbar(ax_k, t, ratio, err, good, f"check {night.check}", _ROLE_COLOURS["check"])
        ax_k.legend(loc="upper right", fontsize=8)
    else:
        ax_k.text(0.5, 0.5, "no check star", transform=ax_k.transAxes, ha="center")
    ax_k.set(ylabel="check / comparisons",
             xlabel=axis_label(unit, start, night.time_name))
    return fig


def rms_figure(night, noise):
    """Robust scatter against magnitude with the noise model.

    Parameters
    ----------
    night : FilterNight
    noise : astropy.table.Table
        Output of :func:`.night.excess_noise`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure(9, 6)
    ax = fig.subplots()
    order = np.argsort(noise["mag"])
    ax.plot(noise["mag"][order], 1e3 * noise["error_mag"][order], "-", color="k", lw=1,
            label="noise model (median propagated error)")
    ax.plot(noise["mag"], 1e3 * noise["rms_mag"], "o", ms=3, color="tab:blue",
            label="measured (1.4826 MAD)")
    roles = _roles(night)
    for row in noise:
        role = roles.get(int(row["id"]))
        if role:
            ax.plot(row["mag"], 1e3 * row["rms_mag"], "o", ms=7, mfc="none",
                    color=_ROLE_COLOURS[role])
            ax.annotate(f"{role} {row['id']}", (row["mag"], 1e3 * row["rms_mag"]),
                        xytext=(5, 5), textcoords="offset points", fontsize=8,
                        color=_ROLE_COLOURS[role])
    ax.set(yscale="log", xlabel="instrumental magnitude (-2.5 log10 e-/s)",
           ylabel="rms (mmag)",
           title=f"{night.name} ({night.photometer}): scatter of each star over the "
                 "comparison ensemble")
    ax.legend(fontsize=8)
    return fig


def conditions_figure(nights, utc_times):
    """Transparency, FWHM, sky and airmass against time, all filters.

    Parameters
    ----------
    nights : list of FilterNight
    utc_times : dict of str to astropy.time.Time or None
        Per filter, UTC times for the airmass (None: the table's times).

    Returns
    -------
    figure : matplotlib.figure.Figure
    notes : list of str
        Why the airmass is missing, per filter (empty when it is shown).
    """
    fig = _figure(10, 11)
    ax_e, ax_f, ax_s, ax_a = fig.subplots(4, 1, sharex=True)
    axes, unit, start = time_axis([night.times for night in nights])
    notes = []
    for night, t in zip(nights, axes):
        ax_e.plot(t, ensemble_flux(night), ".", ms=2, label=night.name)
        ax_f.plot(t, night.table["fwhm"], ".", ms=2, label=night.name)
        ax_s.plot(t, night.table["background_median"], ".", ms=2, label=night.name)
        secz, note = airmass(night, utc_times.get(night.name))
        if secz is None:
            notes.append(f"{night.name}: {note}")
        else:
            ax_a.plot(t, secz, ".", ms=2, label=night.name)
    if notes:
        ax_a.text(0.5, 0.5, "\n".join(notes), transform=ax_a.transAxes, ha="center",
                  va="center", fontsize=8)
    ax_e.set(ylabel="ensemble flux / median", title="Observing conditions")
    ax_f.set(ylabel="FWHM (pixels)")
    ax_s.set(ylabel="sky (e-/pixel)")
    ax_a.set(ylabel="airmass", xlabel=axis_label(unit, start, nights[0].time_name))
    ax_e.legend(title="filter", fontsize=8)
    return fig, notes


def drift_figure(nights):
    """Frame shifts relative to the reference frame and alignment rms against time.

    Parameters
    ----------
    nights : list of FilterNight
        Filters without a transforms table are left out.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure(10, 9)
    ax_x, ax_y, ax_r = fig.subplots(3, 1, sharex=True)
    axes, unit, start = time_axis([night.times for night in nights])
    for night, t_frames in zip(nights, axes):
        if night.transforms is None:
            continue
        when = dict(zip(night.table["file"], t_frames))
        trans = night.transforms
        t = np.array([when.get(f, np.nan) for f in trans["file"]])
        aligned = np.asarray(trans["aligned"], dtype=bool)
        dx = np.where(aligned, trans["dx"], np.nan)
        dy = np.where(aligned, trans["dy"], np.nan)
        ax_x.plot(t, dx, ".", ms=2, label=night.name)
        ax_y.plot(t, dy, ".", ms=2, label=night.name)
        ax_r.plot(t, np.where(aligned, trans["rms"], np.nan), ".", ms=2, label=night.name)
    ax_x.set(ylabel="x shift (pixels)", title="Alignment to the reference frame")
    ax_y.set(ylabel="y shift (pixels)")
    ax_r.set(ylabel="fit rms (pixels)",
             xlabel=axis_label(unit, start, nights[0].time_name))
    ax_x.legend(title="filter", fontsize=8)
    return fig


def text_figure(title, lines):
    """One PDF page of monospaced text (tables, configuration).

    Parameters
    ----------
    title : str
    lines : list of str
        At most :data:`LINES_PER_PAGE` lines.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(8.27, 11.69))
    fig.text(0.05, 0.97, title, fontsize=12, va="top", fontweight="bold")
    fig.text(0.05, 0.94, "\n".join(lines), family="monospace", fontsize=7, va="top")
    return fig
