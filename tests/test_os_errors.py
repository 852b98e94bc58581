"""Errors of the operating system end a run with one line naming the path (exit status 1),
with the traceback only under -v: a full disk (ENOSPC), a read-only output directory."""

import errno
import os
from pathlib import Path

import pytest
from astropy.table import Table

from opticam_like.cli import main
from opticam_like.outputs import write_table



def _disk_full(monkeypatch):
    def write(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(Table, "write", write)


def test_disk_full_is_one_line_naming_the_file(frames, tmp_path, monkeypatch, capsys):
    _disk_full(monkeypatch)
    out = tmp_path / "out"
    assert main(["reduce", str(frames), str(out), "--n-workers", "1", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "No space left on device" in err[0] and str(out / "diag") in err[0]
    assert not any(p.name.startswith(".") and p.suffix in (".ecsv", ".fits")
                   for p in out.rglob("*"))  # no temporary file left behind


def test_disk_full_traceback_with_verbose(frames, tmp_path, monkeypatch, capsys):
    _disk_full(monkeypatch)
    out = tmp_path / "out"
    assert main(["reduce", str(frames), str(out), "--n-workers", "1", "--no-progress",
                 "-v"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "No space left on device" in err.strip().splitlines()[-1]


def test_atomic_write_error_names_the_destination(tmp_path, monkeypatch):
    _disk_full(monkeypatch)
    with pytest.raises(OSError) as error:
        write_table(Table({"a": [1]}), tmp_path / "t" / "table.ecsv")
    assert error.value.errno == errno.ENOSPC
    assert error.value.filename == str(tmp_path / "t" / "table.ecsv")
    assert list((tmp_path / "t").iterdir()) == []


def test_read_only_output_directory_simulated(frames, tmp_path, monkeypatch, capsys):
    """A read-only file system refuses to create the output directory (EROFS)."""
    out = tmp_path / "ro" / "out"
    mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if self == out or out in self.parents:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return mkdir(self, *args, **kwargs)
    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(["reduce", str(frames), str(out), "--n-workers", "1", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Read-only file system" in err[0] and str(out) in err[0]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permissions do not bind root")
def test_read_only_output_directory(frames, tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        assert main(["reduce", str(frames), str(parent / "out"), "--n-workers", "1",
                     "--no-progress"]) == 1
    finally:
        parent.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Permission denied" in err[0] and str(parent / "out") in err[0]
