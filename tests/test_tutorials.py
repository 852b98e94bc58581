"""Every notebook in tutorials/ runs from top to bottom, and so its closing assertions hold.

Each notebook is executed with nbclient in a kernel of this interpreter, in a temporary copy of
the tutorials folder (so nothing is written into the repository or the data directory). The
copy sits in ``<tmp>/repo/tutorials`` with ``<tmp>/shared`` linked to ``../shared``, so the
notebooks' relative path ``../../shared/realdata/...`` resolves as it does beside the repo. A
notebook that reads ``shared/realdata/<set>`` skips, naming the set, when that set is absent.
Tutorial 3 reuses the night reduced by tutorial 1, which therefore runs first in the same copy.
"""

import re
import shutil
import time
from pathlib import Path

import pytest

from conftest import REALDATA, SHARED

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = sorted(p.name for p in TUTORIALS.glob("*.ipynb"))
PREREQUISITES = {"03_timing_analysis.ipynb": "01_quickstart.ipynb"}
CELL_TIMEOUT = 900  # seconds per cell


def real_data_sets(path):
    """The ``shared/realdata`` sets a notebook reads (from its source text)."""
    source = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
    return sorted(set(re.findall(r"shared/realdata/([\w.-]+)", source)))


class Workspace:
    """A temporary copy of tutorials/ in which notebooks are executed once each, in order."""

    def __init__(self, root):
        self.folder = root / "repo" / "tutorials"
        self.folder.mkdir(parents=True)
        for name in NOTEBOOKS:
            shutil.copy2(TUTORIALS / name, self.folder / name)
        if SHARED.is_dir():
            (root / "shared").symlink_to(SHARED, target_is_directory=True)
        self.seconds = {}
        self.failed = set()

    def run(self, name):
        """Execute a notebook (its prerequisite first); return its run time in seconds."""
        if name in self.failed:
            pytest.fail(f"{name} failed earlier in this session")
        if name in self.seconds:
            return self.seconds[name]
        if name in PREREQUISITES:
            self.run(PREREQUISITES[name])
        notebook = nbformat.read(self.folder / name, as_version=4)
        client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                                         resources={"metadata": {"path": str(self.folder)}})
        start = time.perf_counter()
        try:
            client.execute()
        except Exception:
            self.failed.add(name)
            raise
        self.seconds[name] = time.perf_counter() - start
        return self.seconds[name]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return Workspace(tmp_path_factory.mktemp("tutorials"))


def test_every_tutorial_is_collected():
    assert len(NOTEBOOKS) >= 7, NOTEBOOKS


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_tutorial_runs(name, workspace, record_property):
    for data_set in real_data_sets(TUTORIALS / name):
        if not (REALDATA / data_set).is_dir():
            pytest.skip(f"{name} reads {REALDATA / data_set}, which is absent: the real-data "
                        "tutorials need ../shared beside the repo")
    seconds = workspace.run(name)
    record_property("seconds", round(seconds, 1))
    print(f"{name}: {seconds:.1f} s")
