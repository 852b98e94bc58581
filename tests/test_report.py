"""The night report on a small real Reducer output: every figure in the HTML and the PDF,
numbers that match a direct computation from the tables, and a headless-browser render."""

import argparse
import base64
import html
import json
import math
import re
import shutil
import struct
import subprocess

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import AltAz, SkyCoord
from astropy.table import Table
from astropy.time import Time

import opticam_like as ol
from opticam_like.flags import PhotFlag
from opticam_like.lightcurves import DifferentialPhotometer
from opticam_like.report import add_report_command, time_axis, time_unit, write_report
from opticam_like.report.figures import LINES_PER_PAGE, stack_figure
from opticam_like.report.files import OutputFiles
from opticam_like.report.night import airmass, load_filter, utc_times
from opticam_like.timing import get_site

N_IMAGES = 8
TARGET_RADEC = (15.0, 25.0)   # the simulator's RA 01:00:00, Dec +25:00:00
SITE = (-115.4636, 31.0442, 2790.0)
FILTERS = ["g", "r", "i"]
TARGET_ID = 3


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    ol.generate_observations(base / "data", n_images=N_IMAGES, progress=False)
    with ol.Reducer(base / "reduced", data_directory=base / "data", n_workers=1,
                    target=TARGET_RADEC, site=SITE, progress=False) as reducer:
        reducer.create_catalogs()
        reducer.photometry()
    # g and i get a relative light curve; r has none (automatic comparisons in the report).
    diff = DifferentialPhotometer(base / "reduced")
    for name in ("g", "i"):
        diff.get_relative_light_curve(name, TARGET_ID)
    report = write_report(base / "reduced")
    return base / "reduced", report


def _sections(text):
    return re.findall(r'<section id="([\w-]+)"', text)


def _png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


EXPECTED_FIGURES = ([f"{kind}-{name}" for name in FILTERS
                     for kind in ("stack", "lightcurves", "rms")] + ["conditions", "drift"])


def test_html_embeds_every_figure(reduced):
    out, report = reduced
    text = (out / "report.html").read_text()
    expected_sections = ([f"{kind}-{name}" for name in FILTERS
                          for kind in ("stack", "lightcurves", "rms", "excess")]
                         + ["conditions", "drift", "flags", "rejected", "config"])
    assert _sections(text) == expected_sections
    images = re.findall(r'<img class="figure" id="fig-([\w-]+)"[^>]*'
                        r'src="data:image/png;base64,([^"]+)"', text)
    assert sorted(i for i, _ in images) == sorted(EXPECTED_FIGURES)
    for _, data in images:
        width, height = _png_size(base64.b64decode(data))
        assert width > 400 and height > 400
    # self-contained: nothing is fetched
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "<link" not in text
    # the configuration is echoed verbatim
    assert html.escape((out / "misc" / "config.toml").read_text()) in text
    assert report.html == out / "report.html"
    n_rejected = len(Table.read(out / "diag" / "rejected_frames.ecsv"))
    assert f"Rejected frames ({n_rejected})" in text


def test_not_an_output_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no photometry tables"):
        write_report(tmp_path)


def test_pdf_has_one_page_per_figure_and_table_page(reduced):
    out, report = reduced
    config_lines = (out / "misc" / "config.toml").read_text().splitlines()
    n_stars = max(len(Table.read(out / "cat" / f"{name}_catalog.ecsv")) for name in FILTERS)
    assert n_stars + 6 <= LINES_PER_PAGE          # each excess table fits one page here
    expected = (len(EXPECTED_FIGURES) + len(FILTERS)   # figures, excess tables
                + 2                                    # flags, rejected frames
                + math.ceil(len(config_lines) / LINES_PER_PAGE))
    pdf = (out / "report.pdf").read_bytes()
    assert len(re.findall(rb"/Type /Page\b", pdf)) == expected
    assert report.n_pages == expected


def _html_table(text, section):
    block = re.search(rf'<section id="{section}">(.*?)</section>', text, re.S).group(1)
    head = re.findall(r"<th>(.*?)</th>", block)
    rows = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", block)]
    return head, [r for r in rows if r]


def _direct_excess(out, name, comparisons):
    """Excess noise per star straight from the lcs table (numpy only)."""
    path = next((out / "lcs").glob(f"{name}_*.fits"))
    lcs = Table.read(path)
    flux = np.asarray(lcs["flux"], float)
    err = np.asarray(lcs["flux_err"], float)
    flags = np.asarray(lcs["flags"]) | np.asarray(lcs["frame_flags"])[:, None]
    comp = [c - 1 for c in comparisons]
    ensemble_ok = (flags[:, comp] == 0).all(axis=1) & np.isfinite(flux[:, comp]).all(axis=1)
    result = {}
    for i in range(flux.shape[1]):
        members = [c for c in comp if c != i]
        ens = flux[:, members].sum(axis=1)
        ens_err = np.sqrt((err[:, members] ** 2).sum(axis=1))
        ok = ensemble_ok & (flags[:, i] == 0) & (flux[:, i] > 0)
        if ok.sum() < 3:
            continue
        ratio = flux[ok, i] / ens[ok]
        ratio = ratio / np.median(ratio)
        scatter = 1.4826 * np.median(np.abs(ratio - np.median(ratio)))
        error = np.median(np.hypot(err[ok, i] / flux[ok, i], ens_err[ok] / ens[ok]))
        mag = -2.5 * np.log10(np.median(flux[ok, i] / lcs["exposure"][ok]))
        result[i + 1] = (mag, int(ok.sum()), scatter, error, scatter / error)
    return result


@pytest.mark.parametrize("name", ["g", "r"])
def test_excess_noise_table_matches_direct_computation(reduced, name):
    out, report = reduced
    night = load_filter(OutputFiles(out), name)
    if name == "g":
        rlc = Table.read(next((out / "relative_light_curves").glob("g_3_*.ecsv")))
        assert night.comparisons == list(rlc.meta["comparisons"])
    direct = _direct_excess(out, name, night.comparisons)
    head, rows = _html_table((out / "report.html").read_text(), f"excess-{name}")
    assert head[:6] == ["id", "mag", "n_good", "scatter", "error", "excess"]
    assert len(rows) == len(direct) >= 10
    for row in rows:
        mag, n_good, scatter, error, excess = direct[int(row[0])]
        assert int(row[2]) == n_good
        for shown, value in zip((row[1], row[3], row[4], row[5]),
                                (mag, scatter, error, excess)):
            assert float(shown) == pytest.approx(value, rel=1e-3)   # shown to 4 digits
    # the simulator's errors are the CCD equation: constant stars scatter as predicted
    excess = [float(r[5]) for r in rows if int(r[0]) != TARGET_ID]
    assert 0.5 < np.median(excess) < 2.0


def test_flag_summary_matches_the_tables(reduced):
    out, _ = reduced
    head, rows = _html_table((out / "report.html").read_text(), "flags")
    assert head[:2] == ["flag", "bit"]
    assert [r[0] for r in rows] == [f.name for f in PhotFlag]
    for name in FILTERS:
        lcs = Table.read(next((out / "lcs").glob(f"{name}_*.fits")))
        points = head.index(f"{name} points")
        frames = head.index(f"{name} frames")
        for row, flag in zip(rows, PhotFlag):
            assert int(row[points]) == int(np.sum((np.asarray(lcs["flags"]) & flag) != 0))
            assert int(row[frames]) == int(np.sum((np.asarray(lcs["frame_flags"]) & flag)
                                                  != 0))


def test_airmass_matches_astropy(reduced):
    out, _ = reduced
    files = OutputFiles(out)
    night = load_filter(files, "g")
    utc = utc_times(files, night)
    secz, note = airmass(night, utc)
    assert note == ""
    altaz = AltAz(obstime=utc, location=get_site(SITE))
    alt = SkyCoord(TARGET_RADEC[0] * u.deg, TARGET_RADEC[1] * u.deg).transform_to(altaz).alt
    np.testing.assert_allclose(secz, 1 / np.sin(alt.to_value(u.rad)), rtol=1e-6)
    assert 1.0 < secz.min() < 3.0


def test_airmass_unknown_without_target_coordinates(reduced):
    out, _ = reduced
    night = load_filter(OutputFiles(out), "g")
    config = json.loads(night.table.meta["CONFIG"])
    config["target"] = {}
    night.table.meta["CONFIG"] = json.dumps(config)
    secz, note = airmass(night)
    assert secz is None
    assert "no target RA/Dec" in note


def test_stack_labels_only_roles_and_brightest(reduced):
    out, _ = reduced
    night = load_filter(OutputFiles(out), "g")
    fig = stack_figure(night, n_labelled=4)
    ax = fig.axes[0]
    labels = {t.get_text() for t in ax.texts if t.get_text() not in ("", "+x", "+y")}
    roles = ({f"T {night.target}", f"K {night.check}"}
             | {f"C {c}" for c in night.comparisons})
    plain = {str(i) for i in range(1, 5)
             if i not in night.comparisons and i not in (night.target, night.check)}
    assert labels == roles | plain
    assert len(ax.patches) >= len(night.catalog)      # one aperture per source at least
    assert fig.axes[1].get_ylabel() == "stacked flux (e-/pixel)"   # the colour bar


@pytest.mark.parametrize("span, unit, value", [(60.0, "s", 60.0), (600.0, "min", 10.0),
                                               (10 * 3600.0, "h", 10.0),
                                               (98 * 86400.0, "d", 98.0)])
def test_time_axis_unit_suits_the_span(span, unit, value):
    start = Time("2024-01-01T00:00:00", scale="utc")
    times = start + np.array([0.0, span / 2, span]) * u.s
    values, got_unit, origin = time_axis(times)
    assert got_unit == unit == time_unit(span)
    np.testing.assert_allclose(values, [0.0, value / 2, value], rtol=1e-9)
    assert origin == start
    # several arrays share one origin and unit
    (first, second), shared, _ = time_axis([times[:1], times[1:]])
    assert shared == unit and second[-1] == pytest.approx(value)


def test_cli_command_writes_the_report(reduced, tmp_path, capsys):
    out, _ = reduced
    (out / "report.html").unlink()
    parser = argparse.ArgumentParser()
    add_report_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(out)])
    args.func(args)
    assert (out / "report.html").is_file()
    assert "report.pdf (" in capsys.readouterr().out


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium binary on PATH (Debian package 'chromium'): the headless "
                "render test needs a real browser")


def _run_chromium(binary, tmp_path, *args):
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def test_headless_browser_loads_every_figure(reduced, tmp_path):
    binary = _chromium()
    out, _ = reduced
    url = (out / "report.html").resolve().as_uri()
    result = _run_chromium(binary, tmp_path, "--virtual-time-budget=10000", "--dump-dom", url)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = re.search(r'data-figures-loaded="(\d+)/(\d+)"', result.stdout)
    assert loaded, "the page's load script did not run"
    assert loaded.groups() == (str(len(EXPECTED_FIGURES)),) * 2
    shot = tmp_path / "report.png"
    result = _run_chromium(binary, tmp_path, f"--screenshot={shot}",
                           "--window-size=1200,3000", url)
    assert result.returncode == 0, result.stderr[-2000:]
    from matplotlib.image import imread
    pixels = imread(shot)
    assert pixels.shape[:2] == (3000, 1200)
    assert pixels[..., :3].std() > 0.05          # not a blank page


def test_orientation_arrows_follow_the_wcs():
    from astropy.io import fits
    from astropy.wcs import WCS

    from opticam_like.report.figures import orientation
    assert [label for _, label in orientation(None, (64, 64))] == ["+x", "+y"]
    assert [label for _, label in orientation(fits.Header(), (64, 64))] == ["+x", "+y"]
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [15.0, 25.0]
    wcs.wcs.crpix = [32.5, 32.5]
    angle = np.radians(30.0)   # North 30 deg from +y towards +x, East 90 deg further
    scale = 0.14 / 3600
    wcs.wcs.cd = scale * np.array([[-np.cos(angle), np.sin(angle)],
                                   [np.sin(angle), np.cos(angle)]])
    (north, n_label), (east, e_label) = orientation(wcs.to_header(), (64, 64))
    assert (n_label, e_label) == ("N", "E")
    np.testing.assert_allclose(north, [np.sin(angle), np.cos(angle)], atol=1e-3)
    np.testing.assert_allclose(east, [-np.cos(angle), np.sin(angle)], atol=1e-3)
