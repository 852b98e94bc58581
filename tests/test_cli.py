from pathlib import Path
import subprocess
import sys

import pytest
from astropy.table import Table

import opticam_like as ol
from opticam_like import schema
from opticam_like.analysis import Analyzer
from opticam_like.cli import main


@pytest.mark.parametrize("command", ["simulate", "reduce", "demo", "analyze"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: opticam-like " + command in capsys.readouterr().out


def test_demo_simulates_reduces_and_analyzes(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", str(out), "--n-images", "60", "--n-workers", "2"]) == 0
    reduced = out / "reduced"
    for name in ("cat/catalogs.pdf", "cat/g_catalog.ecsv", "diag/background.pdf",
                 "diag/header_times.pdf", "lcs/g_aperture_1.5fwhm.fits", "info.log"):
        assert (reduced / name).exists(), name
    curves = sorted(p.name for p in (reduced / "relative_light_curves").glob("*.ecsv"))
    assert [c[0] for c in curves] == ["g", "i", "r"]
    lc = Table.read(reduced / "relative_light_curves" / curves[0])
    assert len(lc) == 60 and lc.meta["time_scale"] == "bjd_tdb"
    assert main(["analyze", str(reduced)]) == 0
    assert list((reduced / "analysis").glob("*.pdf"))
    # The reader finds the writer's files by the one naming function, by target and photometer.
    target = lc.meta["target"]
    assert curves[0] == schema.light_curve_name("g", target, "aperture_1.5fwhm")
    analyzer = Analyzer.from_directory(reduced, target=target, photometer="aperture_1.5fwhm")
    assert "g" in analyzer.bands
    assert all(Table.read(p).meta["target"] == target
               for p in schema.light_curve_paths(reduced, target=target))
    assert main(["analyze", str(reduced), "--target", str(target),
                 "--photometer", "aperture_1.5fwhm"]) == 0
    assert main(["analyze", str(reduced), "--target", "999"]) == 2


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"opticam-like {ol.__version__}"


def test_reduce_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["reduce", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "no FITS frames" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[background]\nbox_sise = 3\n")
    assert main(["reduce", str(tmp_path / "empty"), str(tmp_path / "out"),
                 "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "box_sise" in err


def _console_script():
    script = Path(sys.executable).with_name("opticam-like")
    if not script.exists():
        pytest.skip(f"no installed console script next to {sys.executable} (pip install -e .)")
    return str(script)


def test_console_script_installed(tmp_path):
    """The installed entry point (not ``python -m``) runs and reports the version."""
    result = subprocess.run([_console_script(), "--help"], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0 and "simulate" in result.stdout
    result = subprocess.run([_console_script(), "--version"], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"opticam-like {ol.__version__}"
    result = subprocess.run([_console_script(), "reduce", str(tmp_path / "missing"),
                             str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"opticam-like reduce: error: data directory {tmp_path / 'missing'} does not exist"]


def test_verbosity_options(tmp_path, capsys):
    """-v shows INFO messages of the opticam_like loggers, -q hides warnings; the logger's
    level is restored afterwards."""
    (tmp_path / "empty").mkdir()
    assert main(["-v", "reduce", str(tmp_path / "empty"), str(tmp_path / "out1")]) == 2
    err = capsys.readouterr().err
    assert "INFO" in err and "reducing" in err
    assert main(["reduce", str(tmp_path / "empty"), str(tmp_path / "out2"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "INFO" not in err and "no FITS frames" in err
    assert main(["reduce", str(tmp_path / "empty"), str(tmp_path / "out3")]) == 2
    assert "INFO" not in capsys.readouterr().err
    import logging
    assert logging.getLogger("opticam_like").level == logging.NOTSET
