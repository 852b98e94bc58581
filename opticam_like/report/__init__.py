"""The night report: a self-contained ``report.html`` and the same pages as ``report.pdf``.

Like :mod:`opticam_like.plots`, it reduces nothing: :func:`write_report` reads a finished
output directory and draws.
"""

from .build import Report, Section, write_report
from .cli import add_report_command, run_report
from .timeaxis import time_axis, time_unit

__all__ = ["write_report", "Report", "Section", "add_report_command", "run_report",
           "time_axis", "time_unit"]
