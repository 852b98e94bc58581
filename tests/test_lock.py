"""One run per output directory (opticam_like.lock): a second run from another process stops at
once naming the directory and the other run's PID; a dead run's lock is taken over with a
warning; Reducers of one process share the lock."""

import logging
import os
import signal
import subprocess
import sys

import pytest

import opticam_like as ol
from opticam_like.cli import main
from opticam_like.errors import ReductionError
from opticam_like.lock import LOCK_FILE, OutputLock


HOLDER = ("import sys, time\n"
          "from opticam_like.lock import OutputLock\n"
          "lock = OutputLock(sys.argv[1])\n"
          "print('locked', flush=True)\n"
          "time.sleep(120)\n")


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of tmp_path/out."""
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    yield out, process
    if process.poll() is None:
        process.kill()
    process.wait()
    process.stdout.close()


def test_second_run_stops_naming_directory_and_pid(frames, holder):
    out, process = holder
    with ol.Reducer(out, data_directory=frames, n_workers=1, progress=False) as reducer:
        with pytest.raises(ReductionError) as error:
            reducer.create_catalogs()
    message = str(error.value)
    assert str(out) in message and f"PID {process.pid}" in message
    assert not (out / "misc").exists()  # nothing written into the other run's directory


def test_cli_exits_2_with_one_line(frames, holder, capsys):
    out, process = holder
    assert main(["reduce", str(frames), str(out), "--n-workers", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"PID {process.pid}" in err[0] and str(out) in err[0]


def test_lock_of_a_killed_run_is_taken_over_with_a_warning(frames, holder, caplog):
    out, process = holder
    process.send_signal(signal.SIGKILL)
    process.wait()
    with caplog.at_level(logging.WARNING, logger="opticam_like"):
        with ol.Reducer(out, data_directory=frames, n_workers=1, progress=False) as reducer:
            assert reducer.filters == ["g"]
            record = (out / LOCK_FILE).read_text().split()
            assert record[0] == str(os.getpid())
    taken = [r.getMessage() for r in caplog.records if "taking over" in r.getMessage()]
    assert len(taken) == 1 and f"PID {process.pid}" in taken[0]
    assert (out / LOCK_FILE).read_text() == ""  # released on close


def test_stale_lock_file_without_a_holder(tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text("999999999 elsewhere\n")
    with caplog.at_level(logging.WARNING, logger="opticam_like"):
        lock = OutputLock(out)
    assert "PID 999999999 on elsewhere" in caplog.text
    lock.release()
    lock.release()  # idempotent


def test_reducers_of_one_process_share_the_lock(frames, tmp_path):
    out = tmp_path / "shared"
    first = ol.Reducer(out, data_directory=frames, n_workers=1, progress=False)
    second = ol.Reducer(out, data_directory=frames, n_workers=1, progress=False)
    assert first.filters == second.filters == ["g"]
    first.close()
    assert (out / LOCK_FILE).read_text().split()[0] == str(os.getpid())  # still held
    probe = subprocess.run([sys.executable, "-c", HOLDER, str(out)], capture_output=True,
                           text=True, timeout=60)
    assert probe.returncode != 0 and "in use by another run" in probe.stderr
    second.close()
    assert (out / LOCK_FILE).read_text() == ""
