"""Reducer options on a small generated night: a user background returning a real photutils
Background2D, unpicklable callables, photometry from an existing output directory, per-camera
directories, executors and configuration files."""

import functools
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from astropy.table import Table
from photutils.background import Background2D, MedianBackground

import opticam_like as ol

SHAPE = (192, 192)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    base = tmp_path_factory.mktemp("options")
    ol.generate_observations(base / "data", n_images=16, shape=SHAPE, n_sources=8,
                             filters=("g", "r"), progress=False)
    with ol.Reducer(base / "default", data_directory=base / "data", n_workers=2,
                    progress=False) as reducer:
        reducer.create_catalogs()
        reducer.photometry()
    return base


def _flux(out, band="g"):
    return np.asarray(Table.read(out / "lcs" / f"{band}_aperture_1.5fwhm.fits")["flux"])


def test_photutils_background2d_callable(night):
    background = functools.partial(Background2D, box_size=32, filter_size=3,
                                   bkg_estimator=MedianBackground())
    with ol.Reducer(night / "photutils", data_directory=night / "data", background=background,
                    n_workers=2, progress=False) as reducer:
        reducer.create_catalogs()
        reducer.photometry()
    np.testing.assert_array_equal(Table.read(night / "photutils" / "cat" / "g_catalog.ecsv")["id"],
                                  Table.read(night / "default" / "cat" / "g_catalog.ecsv")["id"])
    ratio = _flux(night / "photutils") / _flux(night / "default")
    assert np.nanmedian(np.abs(ratio[:, :5] - 1)) < 0.01  # bright stars: same fluxes


class _LockedBackground:
    """A background holding a lock: it cannot reach worker processes."""

    def __init__(self):
        self.lock = threading.Lock()

    def __call__(self, data, mask=None):
        return Background2D(data, 32)


def test_unpicklable_background_is_refused_at_once(night, tmp_path):
    with pytest.raises(TypeError, match="the background cannot be pickled.*lock"):
        ol.Reducer(tmp_path / "out", data_directory=night / "data", n_workers=2,
                   background=_LockedBackground())
    with ol.Reducer(tmp_path / "serial", data_directory=night / "data", n_workers=1,
                    progress=False,
                    background=lambda data, mask=None: Background2D(data, 32)) as reducer:
        assert len(reducer.create_catalogs()["g"]) >= 5


def test_photometry_from_an_existing_output_directory(night, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(night / "default", out)
    shutil.rmtree(out / "lcs")
    with ol.Reducer(out, data_directory=night / "data", n_workers=1, progress=False) as reducer:
        reducer.photometry(ol.AperturePhotometer(radius=4.0))
    radius4 = np.asarray(Table.read(out / "lcs" / "g_aperture_r4.fits")["flux"])
    assert radius4.shape == _flux(night / "default").shape
    with pytest.raises(ol.ReductionError, match="create_catalogs"):
        with ol.Reducer(tmp_path / "fresh", data_directory=night / "data", n_workers=1,
                        progress=False) as reducer:
            reducer.photometry()


def test_per_camera_directories_and_an_executor(night, tmp_path):
    for camera in ("C1", "C2"):
        (tmp_path / camera).mkdir()
        for path in (night / "data").glob(f"{camera}_*.fits"):
            shutil.copy(path, tmp_path / camera)
    with ThreadPoolExecutor(2) as executor:
        reducer = ol.Reducer(tmp_path / "out", c1_directory=tmp_path / "C1",
                             c2_directory=tmp_path / "C2", executor=executor, progress=False)
        reducer.create_catalogs()
        reducer.photometry()
    np.testing.assert_allclose(_flux(tmp_path / "out"), _flux(night / "default"))


def test_config_file_drives_the_reduction(night, tmp_path):
    config = tmp_path / "reduce.toml"
    config.write_text('instrument = "opticam"\n[background]\nbox_size = 48\n'
                      '[detection]\nthreshold = 6.0\n[reduction]\nn_workers = 1\n'
                      'progress = false\n[[photometry]]\ntype = "aperture"\nradius = 5.0\n'
                      '[[photometry]]\ntype = "aperture"\nfwhm_scale = 2.0\n'
                      '[photometry.local_background]\nstatistic = "median"\n')
    with ol.Reducer(tmp_path / "out", data_directory=night / "data", config=config) as reducer:
        assert reducer.background.box_size == (48, 48)
        reducer.create_catalogs()
        tables = reducer.photometry()
    assert set(name for _, name in tables) == {"aperture_r5", "aperture_2fwhm"}
    echoed = (tmp_path / "out" / "misc" / "config.toml").read_text()
    assert "box_size" in echoed and "aperture_r5" in echoed
    bad = tmp_path / "bad.toml"
    bad.write_text('[[photometry]]\ntype = "aperture"\nradious = 5.0\n')
    with pytest.raises(ol.ConfigError, match="bad.toml.*radious"):
        ol.Reducer(tmp_path / "out2", data_directory=night / "data", config=bad)


def test_dask_client(night, tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed "
                                      "(it is optional: any concurrent.futures Executor works)")
    with distributed.Client(n_workers=2, threads_per_worker=1, processes=True,
                            dashboard_address=None) as client:
        reducer = ol.Reducer(tmp_path / "out", data_directory=night / "data", executor=client,
                             progress=False)
        reducer.create_catalogs()
        reducer.photometry()
    np.testing.assert_allclose(_flux(tmp_path / "out"), _flux(night / "default"))
