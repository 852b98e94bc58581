"""Console output of a run: each warning is printed once, with or without the CLI's handler."""

import logging

import pytest

from opticam_like import cli
from opticam_like.outputs import RunLog


@pytest.mark.parametrize("with_cli", [False, True])
def test_a_warning_is_printed_once(monkeypatch, capsys, tmp_path, with_cli):
    # the root logger as in a plain script: no handler (pytest adds its capture handlers to
    # the root logger for the test's body, so this is done here, not in a fixture)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    package = logging.getLogger("opticam_like")
    before = (package.level, list(package.handlers))
    if with_cli:
        handler, previous = cli._configure_logging(0, False)
    first, second = RunLog(tmp_path / "a" / "info.log"), RunLog(tmp_path / "b" / "info.log")
    logging.getLogger("opticam_like.somewhere").warning("frame 3 rejected")
    second.close()
    first.close()
    if with_cli:
        package.removeHandler(handler)
        package.setLevel(previous)
    assert capsys.readouterr().err.count("frame 3 rejected") == 1
    assert "frame 3 rejected" in (tmp_path / "a" / "info.log").read_text()
    assert (package.level, package.handlers) == before
