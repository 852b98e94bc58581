import pytest

from conftest import write_opticam_frame
from opticam_like.instruments import load_profile
from opticam_like.parallel import WorkerPool
from opticam_like.scan import ReductionError, scan_frames


def _night(folder, n=6, **header):
    folder.mkdir(exist_ok=True)
    for i in range(n):
        for cam, band in (("C1", "g"), ("C2", "r")):
            write_opticam_frame(folder / f"{cam}_{band}_{i:03d}.fits", CAMERA=cam, FILTER=band,
                                GPSTIME=f"2024-01-01 00:00:{i:02d}.500000", **header)
    return folder


def test_groups_sorted_and_rejections(tmp_path):
    folder = _night(tmp_path / "data")
    write_opticam_frame(folder / "nofilter.fits", FILTER=None)
    (folder / "broken.fits").write_bytes(b"SIMPLE  =")
    (folder / "notes.txt").write_text("not a frame")
    write_opticam_frame(folder / "bias.fits", IMAGETYP="bias")
    result = scan_frames([folder], load_profile("opticam"))
    assert list(result.groups) == ["g", "r"]
    assert [len(v) for v in result.groups.values()] == [6, 6]
    times = [i.time.mjd for i in result.groups["g"]]
    assert times == sorted(times)
    reasons = {r.path.split("/")[-1]: r.reason for r in result.rejected}
    assert set(reasons) == {"nofilter.fits", "broken.fits", "bias.fits"}
    assert "FILTER" in reasons["nofilter.fits"]
    assert "bias" in reasons["bias.fits"]


def test_parallel_scan_equals_serial(tmp_path):
    folder = _night(tmp_path / "data")
    write_opticam_frame(folder / "nofilter.fits", FILTER=None)
    serial = scan_frames([folder], load_profile("opticam"))
    with WorkerPool(2, progress=False) as pool:
        parallel = scan_frames([folder], load_profile("opticam"), pool=pool)
    assert [i.path for i in serial.groups["g"]] == [i.path for i in parallel.groups["g"]]
    assert [r.reason for r in serial.rejected] == [r.reason for r in parallel.rejected]


def test_mixed_binning_stops(tmp_path):
    folder = _night(tmp_path / "data", n=3)
    write_opticam_frame(folder / "odd.fits", BINNING="2x2")
    with pytest.raises(ReductionError, match=r"mix binnings: 4x4 \(6 frames.*2x2 \(1 frames, e.g. odd.fits"):
        scan_frames([folder], load_profile("opticam"))


def test_no_frames_stops(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReductionError, match="no FITS frames"):
        scan_frames([tmp_path / "empty"], load_profile("opticam"))
    with pytest.raises(ReductionError, match="does not exist"):
        scan_frames([tmp_path / "missing"], load_profile("opticam"))


def test_unknown_filter_and_gap_warnings(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for i, second in enumerate([0, 1, 2, 3, 10, 11]):
        write_opticam_frame(folder / f"f{i}.fits", FILTER="Halpha",
                            GPSTIME=f"2024-01-01 00:00:{second:02d}.000000")
    result = scan_frames([folder], load_profile("opticam"))
    text = " ".join(result.warnings)
    assert "unknown filter 'Halpha'" in text
    assert "1 time gaps" in text and "7.0 s" in text


def test_acquisition_order_reveals_backward_time_stamps(tmp_path):
    from astropy.time import Time
    from opticam_like.flags import PhotFlag
    from opticam_like.timing import frame_time_flags
    from opticam_like.scan import acquisition_order
    folder = tmp_path / "data"
    folder.mkdir()
    seconds = [0, 1, 2, 3, 2.5, 5, 6, 6, 8]  # frame 4 jumps back, frame 7 repeats frame 6
    for i, second in enumerate(seconds):
        write_opticam_frame(folder / f"run_{i + 1}.fits",
                            GPSTIME=f"2024-01-01 00:00:0{int(second)}.{int(second % 1 * 1e6):06d}")
    write_opticam_frame(folder / "run_10.fits", GPSTIME="2024-01-01 00:00:09.000000")
    infos = scan_frames([folder], load_profile("opticam")).groups["g"]
    names = [i.path.split("/")[-1] for i in infos]
    assert [names[i] for i in acquisition_order(infos)] == [f"run_{i}.fits" for i in range(1, 11)]
    flags = dict(zip(names, frame_time_flags(infos, acquisition_order(infos))))
    assert flags["run_5.fits"] == PhotFlag.BAD_TIME
    assert flags["run_8.fits"] == PhotFlag.BAD_TIME or flags["run_7.fits"] == PhotFlag.BAD_TIME
    assert sum(1 for v in flags.values() if v) == 2
    assert Time([i.time for i in infos]).argsort().tolist() == list(range(10))


def test_a_filter_of_two_cameras_is_split(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(4):
        for cam in ("C1", "C2"):
            write_opticam_frame(folder / f"{cam}_{i}.fits", CAMERA=cam,
                                GPSTIME=f"2024-01-01 00:00:{i:02d}.000000")
    result = scan_frames([folder], load_profile("opticam"))
    assert {k: {i.camera for i in v} for k, v in result.groups.items()} == {
        "g-C1": {"C1"}, "g-C2": {"C2"}}
    assert any("reduced as separate groups g-C1, g-C2" in w for w in result.warnings)


def test_camera_subdirectories_without_camera_keyword(tmp_path):
    """OPTICAM's layout: one directory per camera and no CAMERA keyword; the scan looks into
    c1/c2/c3 (any case) and takes the camera from the directory when the filter is unknown."""
    for folder, band in (("c1", "g"), ("C2", "Halpha"), ("camera3", "i")):
        (tmp_path / "night" / folder).mkdir(parents=True)
        for i in range(3):
            write_opticam_frame(tmp_path / "night" / folder / f"{i}.fits", CAMERA=None,
                                FILTER=band, GPSTIME=f"2024-01-01 00:00:{i:02d}.000000")
    (tmp_path / "night" / "other").mkdir()
    write_opticam_frame(tmp_path / "night" / "other" / "x.fits")
    result = scan_frames([tmp_path / "night"], load_profile("opticam"))
    found = {k: [(i.camera, i.camera_source) for i in v] for k, v in result.groups.items()}
    assert found == {"g": [("C1", "filter")] * 3, "i": [("C3", "filter")] * 3,
                     "Halpha": [("C2", "directory")] * 3}
    assert list(result.frame_table()["camera_source"][:3]) == ["filter"] * 3


def test_a_directory_given_twice_is_scanned_once(tmp_path):
    folder = _night(tmp_path / "data", n=3)
    (folder / "c1").mkdir()
    write_opticam_frame(folder / "c1" / "late.fits", GPSTIME="2024-01-01 00:00:09.500000")
    result = scan_frames([folder, folder / "c1", folder], load_profile("opticam"))
    assert [len(v) for v in result.groups.values()] == [4, 3]
