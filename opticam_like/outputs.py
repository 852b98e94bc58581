"""Writing results: atomic files, images, table metadata, provenance and the run's log.

Every file is written to a temporary name in the destination folder and renamed into place,
so an interrupted run never leaves a half-written table or PDF behind. Folders are created by
the first file written into them.
"""

from contextlib import contextmanager
import json
import logging
import os
from pathlib import Path
import platform
import tempfile
import warnings

import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table
from astropy.time import Time

from ._version import __version__
from .schema import REJECTED_COLUMNS

__all__ = ["atomic_path", "write_table", "write_text", "write_json", "write_stack",
           "rejected_table", "software_versions", "RunLog"]

PACKAGE_LOGGER = "opticam_like"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    Parameters
    ----------
    path : str or Path
        Final destination; its folder is created if needed. The file gets the mode of a
        plain new file (``0o666`` less the umask), not the temporary file's private mode.

    Raises
    ------
    OSError
        The folder or file cannot be written (read-only or full disk, no permission, ...);
        the error's ``filename`` is ``path`` (not the temporary name), and its message
        says what was being written.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix="".join(path.suffixes),
                                   dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it the mode of a plain new file
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path.name}: "
                                 f"{exc.strerror or exc}", str(path)) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_table(table, path):
    """Write an astropy Table atomically (format from the suffix: .ecsv or .fits).

    ``Time`` columns are stored as two doubles (jd1, jd2), so no precision is lost, with their
    ``location``. Column units are kept: ECSV ``unit``; in FITS, ``TUNITn`` for the units FITS
    knows (``pix``, ``s``, ``deg``, ``adu``, ``mag``), and for the others (``electron``) the
    table is written as a ``QTable``, whose units astropy keeps in the header's
    serialized-columns block, so ``QTable.read`` (and ``Table.read``) get them back.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".ecsv":
            table.write(tmp, format="ascii.ecsv", overwrite=True,
                        serialize_method={Time: "jd1_jd2"})
        else:
            with warnings.catch_warnings():  # the non-FITS units go to the serialized block
                warnings.filterwarnings("ignore", message=".*native FITS format.*")
                QTable(table).write(tmp, format="fits", overwrite=True)


def write_text(text, path):
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def software_versions():
    """Versions of this package and of the libraries results depend on."""
    import astropy
    import numpy
    import photutils
    import scipy

    return {"opticam_like": __version__, "python": platform.python_version(),
            "numpy": numpy.__version__, "scipy": scipy.__version__,
            "astropy": astropy.__version__, "photutils": photutils.__version__}


def write_json(data, path):
    """Write JSON atomically (with indentation, keys in order)."""
    write_text(json.dumps(data, indent=2, default=str) + "\n", path)


def write_stack(mean, count, path):
    """Write a stack (mean image, e-, float32) with its per-pixel frame count as a FITS file.

    Parameters
    ----------
    mean : ndarray, shape (ny, nx)
        Mean of the aligned, background-subtracted frames (e-).
    count : ndarray of int, shape (ny, nx)
        Frames that contributed to each pixel (HDU ``COUNT``).
    path : str or Path
    """
    hdus = fits.HDUList([fits.PrimaryHDU(np.asarray(mean, dtype=np.float32)),
                         fits.ImageHDU(np.asarray(count, dtype=np.int32), name="COUNT")])
    hdus[0].header["BUNIT"] = "electron"
    hdus[0].header["COMMENT"] = "Mean of the aligned, background-subtracted frames"
    with atomic_path(path) as tmp:
        hdus.writeto(tmp, overwrite=True)


def rejected_table(failures):
    """The rejected frames as a Table (:data:`opticam_like.schema.REJECTED_COLUMNS`).

    Parameters
    ----------
    failures : iterable of FrameFailure
        With ``path``, ``stage`` and ``reason``.
    """
    return Table(rows=[(Path(f.path).name, str(f.path), f.stage, f.reason) for f in failures],
                 names=REJECTED_COLUMNS, dtype=(str,) * len(REJECTED_COLUMNS))


class _FolderFileHandler(logging.FileHandler):
    """A FileHandler that opens its file (and creates its folder) at the first record."""

    def __init__(self, path):
        super().__init__(path, delay=True)

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def _has_console(logger):
    """Whether ``logger`` already has a handler other than a run's log file (the CLI's stderr
    handler, or the console of a run opened earlier), so that warnings print only once."""
    return any(not isinstance(handler, _FolderFileHandler) for handler in logger.handlers)


class RunLog:
    """The ``info.log`` of one run, attached to the ``opticam_like`` logger until closed.

    Module loggers (``logging.getLogger(__name__)``) propagate to ``opticam_like``, so the
    level set with ``logging.getLogger("opticam_like").setLevel(...)`` applies, and the
    records also reach the application's handlers. While the run is open, its file receives
    the package's records (INFO and above unless the level is set); the file and its folder
    are created by the first record. When logging is not configured at all (the root logger
    has no handler and the package logger has no console handler), warnings are also printed
    on stderr.

    Parameters
    ----------
    path : str or Path
        The log file.
    """

    _open = 0
    """Runs open in this process; the first sets the package level, the last restores it."""
    _saved_level = logging.NOTSET

    def __init__(self, path):
        self.path = Path(path)
        self.logger = logging.getLogger(PACKAGE_LOGGER)
        if RunLog._open == 0:
            RunLog._saved_level = self.logger.level
            if self.logger.level == logging.NOTSET:
                self.logger.setLevel(logging.INFO)
        RunLog._open += 1
        self.handlers = [_FolderFileHandler(self.path)]
        self.handlers[0].setFormatter(logging.Formatter(LOG_FORMAT))
        if not logging.getLogger().handlers and not _has_console(self.logger):
            console = logging.StreamHandler()
            console.setLevel(logging.WARNING)
            console.setFormatter(logging.Formatter("[opticam_like] %(levelname)s %(message)s"))
            self.handlers.append(console)
        for handler in self.handlers:
            self.logger.addHandler(handler)

    def close(self):
        """Detach and close the handlers; the last run to close restores the package logger's
        level (idempotent)."""
        if not self.handlers:
            return
        for handler in self.handlers:
            self.logger.removeHandler(handler)
            handler.close()
        self.handlers = []
        RunLog._open -= 1
        if RunLog._open == 0 and RunLog._saved_level == logging.NOTSET:
            self.logger.setLevel(logging.NOTSET)
