"""One schema for every writer and reader: transform records, light-curve names, columns."""

import numpy as np
import pytest
from astropy.table import Table

from opticam_like import schema
from opticam_like.alignment import Transform
from opticam_like.catalog import transforms_from_table, transforms_table
from opticam_like.errors import ReductionError
from opticam_like.lightcurves import DifferentialPhotometer
from opticam_like.outputs import write_table
from opticam_like.parallel import FrameFailure
from opticam_like.stages import CatalogRow


def _row(index, transform, error=None):
    return CatalogRow(index=index, background_median=100.0 + index, background_rms_median=5.0,
                      fwhm=3.0, n_detected=10, transform=transform, align_error=error)


def test_transform_records_round_trip_through_the_file_with_interpolated_frames(tmp_path):
    """Aligned frames keep their measured record; an unaligned frame and a failed frame get
    the transform interpolated between their neighbours, written as method 'interpolated'
    and read back by the same Transform.from_dict."""
    paths = [f"/data/f{i}.fits" for i in range(5)]
    measured = {0: Transform.from_translation(0.0, 0.0, n_matches=9, rms=0.1),
                1: Transform.from_translation(2.0, -1.0, n_matches=8, rms=0.2),
                4: Transform.from_translation(8.0, -4.0, n_matches=7, rms=0.3)}
    rows = [_row(0, measured[0]), _row(1, measured[1]), _row(2, None, "only 2 stars matched"),
            FrameFailure(paths[3], "read", "truncated"), _row(4, measured[4])]
    table, failures = transforms_table(paths, rows)
    assert tuple(table.colnames) == schema.TRANSFORM_COLUMNS
    assert [(f.path, f.stage) for f in failures] == [(paths[2], "alignment"), (paths[3], "read")]
    assert list(table["method"]) == ["translation", "translation", "interpolated",
                                     "interpolated", "translation"]
    assert list(table["reason"])[2:4] == ["alignment: only 2 stars matched", "read: truncated"]
    path = schema.transforms_path(tmp_path, "g")
    write_table(table, path)
    back = transforms_from_table(Table.read(path))
    assert [t.method for t in back] == list(table["method"])
    # Linear interpolation in frame order between frames 1 (dx=2) and 4 (dx=8).
    np.testing.assert_allclose([t.dx for t in back], [0.0, 2.0, 4.0, 6.0, 8.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose([t.dy for t in back], [0.0, -1.0, -2.0, -3.0, -4.0], atol=1e-12)
    for index, transform in measured.items():
        assert back[index].to_dict() == transform.to_dict()


def test_no_aligned_frame_stops_the_reduction():
    with pytest.raises(ReductionError, match="no frame could be aligned.*too few"):
        transforms_table(["a.fits"], [_row(0, None, "too few stars")])


def test_light_curve_names_one_function_for_writer_and_reader(tmp_path):
    assert schema.light_curve_name("g", 3, "aperture_1.5fwhm") == "g_3_aperture_1.5fwhm.ecsv"
    folder = tmp_path / schema.RELATIVE
    folder.mkdir()
    for name in (schema.light_curve_name("g", 3, "aperture_r4"),
                 schema.light_curve_name("r", 3, "aperture_r4"),
                 schema.light_curve_name("g", 12, "aperture_r4"),
                 schema.light_curve_name("g", 3, "optimal_gaussian")):
        (folder / name).write_text("")
    names = lambda **kw: [p.name for p in schema.light_curve_paths(tmp_path, **kw)]  # noqa: E731
    assert names(target=3, photometer="aperture_r4") == ["g_3_aperture_r4.ecsv",
                                                         "r_3_aperture_r4.ecsv"]
    assert names(target=12) == ["g_12_aperture_r4.ecsv"]
    assert len(names()) == 4


def test_time_column_and_columns():
    assert schema.time_column(Table({"mjd_utc": [1.0], "flux": [2.0]})) == "mjd_utc"
    with pytest.raises(KeyError, match="bjd_tdb, bmjd_tdb, mjd_utc"):
        schema.time_column(Table({"time": [1.0]}))
    assert schema.TIME_COLUMNS["bjd_tdb"] == ("jd", "tdb")
    from opticam_like.analysis import TIME_COLUMNS
    assert TIME_COLUMNS is schema.TIME_COLUMNS


def test_several_photometers_default_is_the_runs_first_and_logged(tmp_path, caplog):
    """Not alphabetical: the default is the one the run recorded (its first photometer);
    tables from different runs disagree, and then the choice must be explicit."""
    (tmp_path / schema.LCS).mkdir()
    for name in ("aperture_r4", "aperture_1.5fwhm"):
        table = Table({"mjd_utc": [1.0], "run": [name]})
        table.meta[schema.DEFAULT_PHOTOMETER_KEY] = "aperture_r4"
        write_table(table, schema.photometry_path(tmp_path, "g", name))
    assert schema.photometer_names(tmp_path, "g") == ["aperture_1.5fwhm", "aperture_r4"]
    diff = DifferentialPhotometer(tmp_path, save=False)
    with caplog.at_level("INFO", logger="opticam_like"):
        assert diff.load("g")["run"][0] == "aperture_r4"
    assert any("using aperture_r4, the run's default" in r.getMessage() for r in caplog.records)
    assert diff.load("g", photometer="aperture_1.5fwhm")["run"][0] == "aperture_1.5fwhm"
    other = Table({"mjd_utc": [1.0], "run": ["later"]})
    other.meta[schema.DEFAULT_PHOTOMETER_KEY] = "optimal_gaussian"
    write_table(other, schema.photometry_path(tmp_path, "g", "optimal_gaussian"))
    with pytest.raises(ValueError, match="from different runs; give photometer="):
        diff.load("g")
    assert DifferentialPhotometer(tmp_path, photometer="aperture_r4").load("g")["run"][0] == \
        "aperture_r4"
