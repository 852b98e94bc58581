"""Assemble the night report: one list of sections written as HTML and as PDF."""

import base64
from dataclasses import dataclass, field
import html
import io
import math
import textwrap

from astropy.table import Table
from matplotlib.backends.backend_pdf import PdfPages

from ..outputs import atomic_path
from .figures import (LINES_PER_PAGE, conditions_figure, drift_figure, light_curve_figure,
                      rms_figure, stack_figure, text_figure)
from .files import OutputFiles
from .night import excess_noise, flag_counts, load_filter, read_config_text, utc_times

__all__ = ["write_report", "Section", "Report"]

_PNG_DPI = 100


@dataclass
class Section:
    """One part of the report: a figure, a table or a text, with its HTML id.

    Attributes
    ----------
    id : str
        HTML id of the ``<section>`` (and of its ``<img>`` as ``fig-{id}``).
    title : str
    figure : matplotlib.figure.Figure, optional
    table : astropy.table.Table, optional
    text : str, optional
        Preformatted text (the configuration).
    notes : list of str
        Shown under the title.
    """

    id: str
    title: str
    figure: object = None
    table: Table = None
    text: str = None
    notes: list = field(default_factory=list)

    def lines(self):
        """Text of a table or text section, as lines (for the PDF)."""
        if self.table is not None:
            return self.table.pformat(max_lines=-1, max_width=-1) if len(self.table) else [
                "(none)"]
        return (self.text or "").splitlines() or [""]

    def pdf_pages(self):
        """The PDF pages of the section (one per figure, text split into pages)."""
        if self.figure is not None:
            return [self.figure]
        lines = [w for note in self.notes for w in textwrap.wrap(note, 110)] + self.lines()
        n_pages = math.ceil(len(lines) / LINES_PER_PAGE)
        return [text_figure(self.title + (f" ({k + 1}/{n_pages})" if n_pages > 1 else ""),
                            lines[k * LINES_PER_PAGE:(k + 1) * LINES_PER_PAGE])
                for k in range(n_pages)]


@dataclass
class Report:
    """What :func:`write_report` wrote.

    Attributes
    ----------
    html, pdf : Path
    sections : list of Section
    n_pages : int
        Pages of the PDF.
    """

    html: object
    pdf: object
    sections: list
    n_pages: int


def _format_table(table):
    """Float columns rounded for reading."""
    table = table.copy()
    for name in table.colnames:
        if table[name].dtype.kind == "f":
            table[name].info.format = ".4g"
    return table


def _sections(files, photometer=None):
    names = files.filters()
    if not names:
        raise FileNotFoundError(f"no photometry tables under {files.root / 'lcs'}: is "
                                f"{files.root} a finished Reducer output directory?")
    nights = [load_filter(files, name, photometer) for name in names]
    sections = []
    for night in nights:
        noise = excess_noise(night)
        if night.stack is not None and night.catalog is not None:
            sections.append(Section(f"stack-{night.name}", f"Stack: {night.name}",
                                    figure=stack_figure(night)))
        else:
            sections.append(Section(f"stack-{night.name}", f"Stack: {night.name}",
                                    text="", notes=[f"no stack or catalogue for "
                                                    f"{night.name}"]))
        sections.append(Section(f"lightcurves-{night.name}", f"Light curves: {night.name}",
                                figure=light_curve_figure(night)))
        sections.append(Section(f"rms-{night.name}", f"RMS against magnitude: {night.name}",
                                figure=rms_figure(night, noise)))
        sections.append(Section(
            f"excess-{night.name}", f"Excess noise: {night.name}",
            table=_format_table(noise),
            notes=["scatter: 1.4826 MAD of the star over the summed flux of the comparisons "
                   f"{night.comparisons} (the star left out), fractional; error: median "
                   "propagated CCD-equation error of that ratio; excess = scatter / error"]))
    utc = {night.name: utc_times(files, night) for night in nights}
    figure, notes = conditions_figure(nights, utc)
    sections.append(Section("conditions", "Transparency, FWHM, sky and airmass",
                            figure=figure, notes=notes))
    sections.append(Section("drift", "Alignment drift", figure=drift_figure(nights)))
    sections.append(Section("flags", "Flag summary", table=flag_counts(nights),
                            notes=["points: source-frame pairs with the bit set; frames: "
                                   "frames with the bit set for the whole frame"]))
    if files.rejected_frames.is_file():
        rejected = Table.read(files.rejected_frames)
        sections.append(Section("rejected", f"Rejected frames ({len(rejected)})",
                                table=rejected))
    else:
        sections.append(Section("rejected", "Rejected frames", text="",
                                notes=[f"{files.rejected_frames} does not exist"]))
    config, note = read_config_text(files)
    sections.append(Section("config", "Configuration (misc/config.toml)", text=config or "",
                            notes=[note] if note else []))
    return nights, sections


_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1100px; }
nav ul { columns: 3; }
section { margin-bottom: 2.5em; }
img.figure { max-width: 100%; height: auto; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; }
.note { color: #a04000; }
"""

# Sets <body data-figures-loaded="k/n"> once every image has decoded (k == n when all
# figures are present); a headless browser can read it from the DOM.
_SCRIPT = """
window.addEventListener('load', function () {
  var images = document.querySelectorAll('img.figure');
  var loaded = Array.prototype.filter.call(images, function (im) {
    return im.complete && im.naturalWidth > 0; }).length;
  document.body.setAttribute('data-figures-loaded', loaded + '/' + images.length);
});
"""


def _png(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_PNG_DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _html_table(table):
    head = "".join(f"<th>{html.escape(n)}</th>" for n in table.colnames)
    body = []
    for row in table:
        cells = []
        for name in table.colnames:
            value = row[name]
            fmt = table[name].info.format
            text = format(value, fmt) if fmt else str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html(sections, title, header):
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(header)}</p>", "<nav><ul>"]
    parts += [f'<li><a href="#{s.id}">{html.escape(s.title)}</a></li>' for s in sections]
    parts.append("</ul></nav>")
    for s in sections:
        parts.append(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>')
        parts += [f'<p class="note">{html.escape(n)}</p>' for n in s.notes]
        if s.figure is not None:
            parts.append(f'<img class="figure" id="fig-{s.id}" alt="{html.escape(s.title)}" '
                         f'src="data:image/png;base64,{_png(s.figure)}">')
        elif s.table is not None:
            parts.append(_html_table(s.table) if len(s.table) else "<p>(none)</p>")
        elif s.text:
            parts.append(f"<pre>{html.escape(s.text)}</pre>")
        parts.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
            f"<script>{_SCRIPT}</script></head><body>\n" + "\n".join(parts)
            + "\n</body></html>\n")


def write_report(out_directory, photometer=None):
    """Write ``report.html`` (self-contained) and ``report.pdf`` for a reduced night.

    The report reads a finished output directory and draws: per filter the stack with
    apertures, annuli, target, comparisons and check star; their light curves; scatter
    against magnitude with the noise model and the excess noise per star; for the night
    the transparency (ensemble flux), FWHM, sky and airmass against time, the alignment
    drift, the flag counts, the rejected frames and the configuration. The HTML embeds
    every figure as a base64 PNG and needs no network; the PDF has the same sections, one
    page per figure and tables split into pages of
    :data:`~opticam_like.report.figures.LINES_PER_PAGE` lines.

    Parameters
    ----------
    out_directory : str or Path
        A Reducer output directory (with ``lcs/``).
    photometer : str, optional
        Photometer table to report; default: the one with relative light curves, else the
        first by name.

    Returns
    -------
    Report
        Paths, sections and the PDF page count.

    Raises
    ------
    FileNotFoundError
        When the directory has no photometry tables (or not for ``photometer``).
    """
    files = OutputFiles(out_directory)
    nights, sections = _sections(files, photometer)
    header = (f"{files.root.resolve()} - filters {', '.join(n.name for n in nights)}; "
              f"photometer {nights[0].photometer}; times {nights[0].time_name}")
    with atomic_path(files.html) as tmp:
        tmp.write_text(_html(sections, "Night report", header), encoding="utf-8")
    n_pages = 0
    with atomic_path(files.pdf) as tmp:
        with PdfPages(tmp) as pdf:
            for section in sections:
                for page in section.pdf_pages():
                    pdf.savefig(page)
                    n_pages += 1
    return Report(html=files.html, pdf=files.pdf, sections=sections, n_pages=n_pages)
