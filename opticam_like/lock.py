"""One run per output directory: a lock file holding the run's PID and host.

Two reductions writing into one directory would mix their nights (one camera's catalogue from
one, the light curves from the other). A run therefore holds an exclusive ``flock`` on
``out/.opticam_like.lock`` while it writes; the file names the run's PID and host. A second
run from another process stops at once with a :class:`~opticam_like.errors.ReductionError`
naming the directory and the other run's PID. The kernel drops the lock when its process ends,
however it ends: the lock of a run killed with ``kill -9`` is taken over by the next run, with
a warning naming the dead run. Reducers of one process (a notebook reducing a night in steps)
share the lock.
"""

import errno
import fcntl
import logging
import os
from pathlib import Path
import socket
import threading

from .errors import ReductionError

__all__ = ["LOCK_FILE", "OutputLock"]

log = logging.getLogger(__name__)

LOCK_FILE = ".opticam_like.lock"
"""Name of the lock file in the output directory."""

_held = {}  # resolved directory -> [file descriptor, number of holders] in this process
_guard = threading.Lock()


class OutputLock:
    """The lock of an output directory, held by this process until :meth:`release`.

    Parameters
    ----------
    directory : str or Path
        The output directory (created if needed).

    Raises
    ------
    ReductionError
        Another process holds the lock: the message names the directory and that run's PID
        and host.
    OSError
        The directory or its lock file cannot be created (e.g. a read-only file system); the
        error names the path.
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self._name = str(self.directory.resolve())
        with _guard:
            if self._name in _held:
                _held[self._name][1] += 1
            else:
                _held[self._name] = [self._acquire(), 1]
        self._released = False

    def _acquire(self):
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot create the output directory or its lock file: "
                                     f"{exc.strerror}", exc.filename or str(self.path)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _describe(os.pread(fd, 256, 0))
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise ReductionError(
                    f"output directory {self.directory} is in use by another run ({holder}); "
                    "wait for it to end or choose another directory") from None
            raise
        previous = os.pread(fd, 256, 0)
        if previous.strip():
            log.warning("output directory %s: taking over the lock of a run that ended "
                        "without releasing it (%s)", self.directory, _describe(previous))
        record = f"{os.getpid()} {socket.gethostname()}\n".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        return fd

    def release(self):
        """Release this holder's share; the last holder of the process empties the file and
        unlocks it (idempotent)."""
        if self._released:
            return
        self._released = True
        with _guard:
            entry = _held.get(self._name)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del _held[self._name]
                fd = entry[0]
                try:
                    os.ftruncate(fd, 0)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)


def _describe(record):
    """'PID n on host h' from a lock file's content."""
    parts = record.decode(errors="replace").split()
    if not parts:
        return "PID unknown"
    return f"PID {parts[0]}" + (f" on {parts[1]}" if len(parts) > 1 else "")
