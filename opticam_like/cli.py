"""Command line: ``opticam-like simulate | reduce | demo | analyze``.

Run ``opticam-like COMMAND --help`` for the options of each command; ``--version``, ``-v``
(INFO messages, ``-vv`` DEBUG) and ``-q`` (errors only) apply to all. Every error of the
package (:class:`~opticam_like.errors.OpticamLikeError`) is printed as one line and the exit
status is 2; an error of the operating system (a read-only or full disk, a missing permission)
is printed as one line naming the path, with exit status 1 (and its traceback with ``-v``).
"""

import argparse
import logging
import traceback
from pathlib import Path
import sys

from ._version import __version__
from .errors import ConfigError, OpticamLikeError
from .report.cli import add_report_command, run_report

__all__ = ["main"]


def _verbosity_options(parser, default):
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="more messages: -v INFO, -vv DEBUG (default: warnings)")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="errors only")


def _configure_logging(verbose, quiet):
    """Messages of the ``opticam_like`` loggers on stderr, at the chosen level."""
    level = logging.ERROR if quiet else {0: logging.WARNING, 1: logging.INFO}.get(
        verbose, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("[opticam_like] %(levelname)s %(message)s"))
    logger = logging.getLogger("opticam_like")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level, logging.INFO))
    return handler, previous


def star(text):
    """A star on the command line (:func:`opticam_like.lightcurves.parse_source`)."""
    from .lightcurves import parse_source
    return parse_source(text)


def _add_reduce_options(parser):
    parser.add_argument("--instrument", default=None,
                        help="instrument profile: 'opticam', 'generic' or a .toml file "
                             "(default: the config's, else 'opticam')")
    parser.add_argument("--config", default=None, help="reduction configuration (.toml)")
    parser.add_argument("--n-workers", type=int, default=None,
                        help="worker processes (default: number of CPUs)")
    parser.add_argument("--bias", default=None, help="directory of bias frames")
    parser.add_argument("--dark", default=None, help="directory of dark frames")
    parser.add_argument("--flat", default=None, help="directory of flat frames")
    parser.add_argument("--site", default=None,
                        help="observing site: a known name (e.g. 'lco', 'spm') or LON,LAT,HEIGHT "
                             "in deg, deg, m (default: the instrument's or the header's)")
    parser.add_argument("--remove-cosmic-rays", action="store_true", default=None,
                        help="detect and mask cosmic rays (astroscrappy)")
    parser.add_argument("--target", type=star, default=None,
                        help="the target, to also write its relative light curves: its night "
                             "ID, X,Y (px in each filter's reference frame), X,Y@FRAME (px in "
                             "camera FRAME's frame, e.g. 120.5,88.2@g) or RA,DEC@sky (deg; "
                             "needs a WCS)")
    parser.add_argument("--comparisons", type=star, nargs="+", default=None,
                        help="comparison stars, each given like --target (default: automatic; "
                             "unsuitable ones are named in a warning)")
    parser.add_argument("--photometer", default=None,
                        help="photometer whose table gives the --target light curves (default: "
                             "the config's [light_curve] photometer, else the first of the run)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--follow", action="store_true",
                        help="live reduction: build the catalogues from the first "
                             "--catalog-frames frames, then reduce every new frame as it "
                             "arrives, until Ctrl-C (outputs stay consistent; a re-run with "
                             "the same --catalog-frames completes them)")
    parser.add_argument("--catalog-frames", type=int, default=None,
                        help="build the catalogues from the first N frames of each filter "
                             "(default: all; 10 with --follow)")
    parser.add_argument("--poll", type=float, default=1.0,
                        help="with --follow: seconds between looks at DATA_DIR (default 1)")
    parser.add_argument("--fresh", action="store_true",
                        help="compute every frame again, ignoring the results cached in "
                             "OUT/cache by earlier runs (default: a re-run computes only "
                             "what is missing, e.g. after a crash)")


def _parser():
    parser = argparse.ArgumentParser(
        prog="opticam-like",
        description="Reduce multi-camera CCD time series to calibrated differential light "
                    "curves.")
    parser.add_argument("--version", action="version", version=f"opticam-like {__version__}")
    _verbosity_options(parser, 0)
    common = argparse.ArgumentParser(add_help=False)
    _verbosity_options(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("simulate", parents=[common],
                              help="write a synthetic OPTICAM night with its truth",
                              description="Write a synthetic OPTICAM night (3 cameras, g r i) "
                                          "and its truth tables into OUT.")
    sim.add_argument("out", help="output directory (frames, truth/)")
    sim.add_argument("--n-images", type=int, default=100, help="frames per camera")
    sim.add_argument("--seed", type=int, default=0, help="random seed")
    sim.add_argument("--calibration", action="store_true",
                     help="also write bias, dark and flat frames into OUT/calibration/{bias,dark,flat}")
    sim.add_argument("--overwrite", action="store_true", help="replace existing files")

    red = commands.add_parser("reduce", parents=[common],
                              help="reduce a directory of frames",
                              description="Scan, align, stack, build catalogues and measure "
                                          "every source in every frame.")
    red.add_argument("data_dir", help="directory of the frames (not modified)")
    red.add_argument("out", help="output directory")
    _add_reduce_options(red)

    demo = commands.add_parser("demo", parents=[common],
                               help="simulate a night and reduce it end to end",
                               description="Simulate a default OPTICAM night into OUT/data, "
                                           "reduce it into OUT/reduced and write the relative "
                                           "light curves of the variable source.")
    demo.add_argument("out", help="output directory")
    demo.add_argument("--n-images", type=int, default=100, help="frames per camera")
    demo.add_argument("--n-workers", type=int, default=None, help="worker processes")

    ana = commands.add_parser("analyze", parents=[common],
                              help="timing analysis of relative light curves",
                              description="Periodograms, power spectra, folded light curves "
                                          "and inter-band lags of a reduced night's relative "
                                          "light curves, as PDFs under REDUCED/analysis.")
    ana.add_argument("reduced", help="a Reducer output directory")
    ana.add_argument("--period", type=float, default=None,
                     help="fold at this period (s); default: the strongest periodogram peak")
    ana.add_argument("--n-bins", type=int, default=10, help="phase bins of the folded curve")
    ana.add_argument("--target", type=int, default=None,
                     help="catalogue ID of the target when several have light curves")
    ana.add_argument("--photometer", default=None,
                     help="photometer whose light curves to read, when several have some")
    add_report_command(commands)
    return parser


def _simulate_calibration(night, out, overwrite):
    """Bias, dark and flat frames of the same simulated detector, into ``out/{kind}``."""
    from data_generator import generate_biases, generate_darks, generate_flats, load_truth
    parameters = load_truth(night).parameters
    for kind, make in (("bias", generate_biases), ("dark", generate_darks),
                       ("flat", generate_flats)):
        make(Path(out) / kind, parameters=parameters, overwrite=overwrite)
    return {kind: Path(out) / kind for kind in ("bias", "dark", "flat")}


def _simulate(args):
    from data_generator import generate_observations
    out = Path(args.out)
    try:
        generate_observations(out, n_images=args.n_images, seed=args.seed,
                              overwrite=args.overwrite)
        print(f"frames and truth written to {out}")
        if args.calibration:
            _simulate_calibration(out, out / "calibration", args.overwrite)
            print(f"calibration frames written to {out / 'calibration'}")
    except FileExistsError as exc:
        raise ConfigError(f"{exc} (use --overwrite)") from None


def _site(text):
    """A site name, or a (lon, lat, height) tuple from 'LON,LAT,HEIGHT'."""
    if text is None or "," not in text:
        return text
    try:
        lon, lat, height = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--site {text!r}: expected a name or LON,LAT,HEIGHT") from None
    return (lon, lat, height)


def _light_curves(args, reducer):
    """The relative light curves of --target (or the config's), if any."""
    from .lightcurves import DifferentialPhotometer
    light_curve = reducer.settings.light_curve
    target = args.target or light_curve.get("target")
    comparisons = args.comparisons or light_curve.get("comparisons")
    if target is not None:
        photometer = (args.photometer or light_curve.get("photometer")
                      or reducer.default_photometer)
        print(f"light curves of source {target} from photometer {photometer}")
        diff = DifferentialPhotometer(args.out, photometer=photometer)
        for name in reducer.filters:
            diff.get_relative_light_curve(name, target, comparisons)


def _reduce_options(args):
    return dict(instrument=args.instrument, config=args.config, n_workers=args.n_workers,
                bias=args.bias, dark=args.dark, flat=args.flat,
                remove_cosmic_rays=args.remove_cosmic_rays, site=_site(args.site),
                fresh=args.fresh, progress=False if args.no_progress else None)


def _follow(args):
    from .follow import follow
    n_first = 10 if args.catalog_frames is None else args.catalog_frames
    print(f"following {args.data_dir}: catalogues from the first {n_first} frames of each "
          "filter, then every new frame; Ctrl-C to stop")
    try:
        runs = follow(args.out, args.data_dir, catalog_frames=n_first, poll=args.poll,
                      on_run=lambda reducer: _light_curves(args, reducer),
                      **_reduce_options(args))
    except KeyboardInterrupt:
        print(f"stopped; the outputs in {args.out} are consistent (re-run to complete them)")
        return
    print(f"{runs} runs into {args.out}")


def _reduce(args):
    from .reducer import Reducer
    if args.follow:
        _follow(args)
        return
    with Reducer(args.out, data_directory=args.data_dir, catalog_frames=args.catalog_frames,
                 **_reduce_options(args)) as reducer:
        reducer.create_catalogs()
        reducer.photometry()
        _light_curves(args, reducer)
        n_rejected = len(reducer.rejected)
    print(f"reduced into {args.out}: catalogues in cat/, photometry in lcs/, diagnostics in "
          f"diag/ ({n_rejected} frames listed in diag/rejected_frames.ecsv)")
    _write_report(args.out, args.photometer)


def _demo(args):
    from data_generator import generate_observations, load_truth
    from .lightcurves import DifferentialPhotometer
    from .reducer import Reducer
    out = Path(args.out)
    data, reduced = out / "data", out / "reduced"
    print(f"simulating {args.n_images} frames per camera into {data}, with bias, dark and "
          f"flat frames into {out / 'calibration'}")
    generate_observations(data, n_images=args.n_images, overwrite=True)
    calibration = _simulate_calibration(data, out / "calibration", overwrite=True)
    truth = load_truth(data)
    with Reducer(reduced, data_directory=data, n_workers=args.n_workers,
                 **calibration) as reducer:
        reducer.create_catalogs()
        reducer.photometry()
        diff = DifferentialPhotometer(reduced, photometer=reducer.default_photometer)
        written = []
        for name in reducer.filters:
            target = _variable_id(reducer.catalogs[name], truth, name,
                                  reducer.catalogs[name].meta["reference_frame"])
            diff.get_relative_light_curve(name, target)
            written.append(f"{name}: source {target}")
    print(f"reduced into {reduced}")
    print(f"  catalogues:      {reduced / 'cat'} (catalogs.pdf)")
    print(f"  photometry:      {reduced / 'lcs'}")
    print(f"  light curves:    {reduced / 'relative_light_curves'} ({'; '.join(written)})")
    print(f"  diagnostics:     {reduced / 'diag'}; log: {reduced / 'info.log'}")
    _write_report(reduced, None)


def _write_report(out, photometer):
    """The night report at the end of a reduction (see :mod:`opticam_like.report`)."""
    from .report import write_report
    report = write_report(out, photometer=photometer)
    print(f"  night report:    {report.html} and {report.pdf}")


def _variable_id(catalog, truth, name, reference_file):
    """Catalogue ID of the simulated variable (nearest source to its true position)."""
    import numpy as np
    frame = truth.frame_position(name, reference_file)
    x, y = truth.variable_position(name, frame)
    distance = np.hypot(catalog["x"] - x, catalog["y"] - y)
    return int(catalog["id"][int(np.argmin(distance))])


def _analyze(args):
    from .analysis import Analyzer
    analyzer = Analyzer.from_directory(args.reduced, target=args.target,
                                       photometer=args.photometer)
    written = analyzer.save_report(Path(args.reduced) / "analysis", period=args.period,
                                   n_bins=args.n_bins)
    for path in written:
        print(path)


def _os_error_sentence(exc):
    """One line for an OSError: what failed and the path."""
    what = exc.strerror or str(exc)
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    if not paths:
        return what
    return f"{what}: {' -> '.join(str(p) for p in paths)}"


def main(argv=None):
    """Entry point of ``opticam-like``; returns the exit status (2 on an error of ours, 1 on
    an error of the operating system)."""
    args = _parser().parse_args(argv)
    handler, previous_level = _configure_logging(args.verbose, args.quiet)
    try:
        {"simulate": _simulate, "reduce": _reduce, "demo": _demo,
         "analyze": _analyze, "report": run_report}[args.command](args)
    except OpticamLikeError as exc:
        print(f"opticam-like {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"opticam-like {args.command}: error: {_os_error_sentence(exc)}",
              file=sys.stderr)
        return 1
    finally:
        logging.getLogger("opticam_like").removeHandler(handler)
        logging.getLogger("opticam_like").setLevel(previous_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
