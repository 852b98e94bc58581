"""The ``opticam-like report OUT`` command (wired into :mod:`opticam_like.cli`)."""

__all__ = ["add_report_command", "run_report"]


def add_report_command(subparsers):
    """Add the ``report`` command to the CLI's subparsers.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From ``ArgumentParser.add_subparsers``.

    Returns
    -------
    argparse.ArgumentParser
        The command's parser (its ``func`` default is :func:`run_report`).
    """
    parser = subparsers.add_parser(
        "report", help="write the night report (report.html, report.pdf)",
        description="Read a reduced night and write OUT/report.html (self-contained, opens "
                    "offline) and OUT/report.pdf with the same pages.")
    parser.add_argument("out", help="a Reducer output directory")
    parser.add_argument("--photometer", default=None,
                        help="photometer table to report (default: the one with relative "
                             "light curves, else the first by name)")
    parser.set_defaults(func=run_report)
    return parser


def run_report(args):
    """Write the report of ``args.out``; print the paths."""
    from .build import write_report
    report = write_report(args.out, photometer=args.photometer)
    print(f"{report.html} ({len(report.sections)} sections)")
    print(f"{report.pdf} ({report.n_pages} pages)")
