"""The night report: a self-contained ``report.html`` and the same pages as ``report.pdf``.

Like :mod:`opticam_like.plots`, it reduces nothing: :func:`write_report` reads a finished
output directory and draws. The public names load on first use (PEP 562), so that the command
line can register the ``report`` command without importing matplotlib.
"""

import importlib

__all__ = ["write_report", "Report", "Section", "add_report_command", "run_report",
           "time_axis", "time_unit"]

_HOMES = {"write_report": "build", "Report": "build", "Section": "build",
          "add_report_command": "cli", "run_report": "cli", "time_axis": "timeaxis",
          "time_unit": "timeaxis"}


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
