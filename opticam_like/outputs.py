"""Writing results: atomic files, table metadata and provenance.

Every file is written to a temporary name in the destination folder and renamed into place,
so an interrupted run never leaves a half-written table or PDF behind.
"""

from contextlib import contextmanager
import json
import os
from pathlib import Path
import platform
import tempfile

from astropy.time import Time

__all__ = ["atomic_path", "write_table", "write_text", "write_json", "software_versions"]


@contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    Parameters
    ----------
    path : str or Path
        Final destination; its folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix="".join(path.suffixes),
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_table(table, path):
    """Write an astropy Table atomically (format from the suffix: .ecsv or .fits).

    ``Time`` columns are stored as two doubles (jd1, jd2), so no precision is lost.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".ecsv":
            table.write(tmp, format="ascii.ecsv", overwrite=True,
                        serialize_method={Time: "jd1_jd2"})
        else:
            table.write(tmp, format="fits", overwrite=True)


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

    from . import __version__
    return {"opticam_like": __version__, "python": platform.python_version(),
            "numpy": numpy.__version__, "scipy": scipy.__version__,
            "astropy": astropy.__version__, "photutils": photutils.__version__}


def write_json(data, path):
    """Write JSON atomically (with indentation, keys in order)."""
    write_text(json.dumps(data, indent=2, default=str) + "\n", path)
