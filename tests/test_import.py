"""Importing opticam_like is fast and clean: no heavy or optional dependency is loaded, and
astropy's global configuration is left as it was (no timed assertion: the machine may be
busy; ``python -X importtime -c "import opticam_like"`` measures it)."""

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from astropy.utils import iers
def state():
    # _value, not get(): get() would open (and possibly download) the default table.
    return [iers.conf.auto_download, iers.conf.iers_degraded_accuracy,
            id(iers.earth_orientation_table._value)]
before = state()
import {module}
{access}
after = state()
print(json.dumps({{"modules": sorted(m for m in ("matplotlib", "astroalign", "data_generator",
                                               "opticam_like.photometry", "photutils.psf")
                                     if m in sys.modules),
                  "same_iers": before == after}}))
"""


def _probe(module, access=""):
    result = subprocess.run([sys.executable, "-c", PROBE.format(module=module, access=access)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_import_loads_nothing_heavy_and_leaves_astropy_alone():
    probe = _probe("opticam_like")
    assert probe == {"modules": [], "same_iers": True}


def test_pipeline_modules_leave_plotting_alignment_and_simulator_out():
    """The whole pipeline (Reducer, CLI, Analyzer) imports matplotlib and astroalign only
    inside the functions that plot or align, and never the simulator."""
    probe = _probe("opticam_like.cli, opticam_like.reducer, opticam_like.analysis",
                   "import opticam_like as ol; ol.Reducer; ol.Analyzer; ol.PSFPhotometer")
    assert probe["same_iers"]
    assert not {"matplotlib", "astroalign", "data_generator", "photutils.psf"} & set(
        probe["modules"])


def test_background_does_not_import_photometry():
    probe = _probe("opticam_like.background, opticam_like.background.local")
    assert "opticam_like.photometry" not in probe["modules"]


def test_simulator_names_load_on_first_use():
    import opticam_like as ol
    assert ol.generate_observations.__module__.startswith("data_generator")
    assert "generate_observations" in dir(ol)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        ol.nothing  # noqa: B018
