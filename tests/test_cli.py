import subprocess
import sys

import pytest
from astropy.table import Table

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


def test_console_script_installed(tmp_path):
    result = subprocess.run([sys.executable, "-m", "opticam_like.cli", "--help"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and "simulate" in result.stdout
