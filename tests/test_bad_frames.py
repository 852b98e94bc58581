"""Every failure is a sentence: a corrupt .fits.gz, symbolic-link loops, broken links, special
and unreadable files are rejected with their reason (never read as garbage, never skipped
without a word), and an invalid instrument file stops at once naming the file and keyword."""

import gzip
import os
import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import opticam_like as ol
from conftest import write_opticam_frame
from opticam_like.cli import main
from opticam_like.frames import FrameError, read_frame, read_header
from opticam_like.instruments import ConfigError, load_profile
from opticam_like.scan import scan_frames


def _gzip_frame(folder, name="a.fits.gz"):
    """A gzip-compressed frame, its pixels and the compressed bytes."""
    data = np.random.default_rng(5).poisson(500.0, (64, 64)).astype(np.uint16)
    plain = write_opticam_frame(folder / "plain.fits", data=data)
    raw = gzip.compress(plain.read_bytes())
    plain.unlink()
    (folder / name).write_bytes(raw)
    return folder / name, data, raw


def test_gzip_frame_reads_when_sound(tmp_path):
    path, data, _ = _gzip_frame(tmp_path)
    np.testing.assert_array_equal(read_frame(path, "opticam").data, data.astype(np.float32))


def test_gzip_crc_error_is_rejected_not_read_as_garbage(tmp_path):
    path, data, raw = _gzip_frame(tmp_path)
    corrupt = bytearray(raw)
    corrupt[len(corrupt) // 2] ^= 0x10  # one bit of the deflate stream, inside the pixels
    path.write_bytes(bytes(corrupt))
    # the failure mode: astropy alone decodes the stream without checking its CRC
    with fits.open(path) as hdul:
        assert np.count_nonzero(hdul[0].data != data) > 0
    with pytest.raises(FrameError, match="corrupt gzip file.*CRC check failed") as error:
        read_frame(path, "opticam")
    assert str(path) in str(error.value)
    assert read_header(path, "opticam").filter == "g"  # the header stays usable by the scan


def test_gzip_bad_trailer_and_truncation(tmp_path):
    path, _, raw = _gzip_frame(tmp_path)
    corrupt = bytearray(raw)
    corrupt[-8] ^= 0xFF  # the stored CRC-32 itself
    path.write_bytes(bytes(corrupt))
    with pytest.raises(FrameError, match="CRC check failed"):
        read_frame(path, "opticam")
    path.write_bytes(raw[:len(raw) - 200])
    with pytest.raises(FrameError, match="gzip stream is truncated"):
        read_frame(path, "opticam")


def _bad_directory(folder):
    """Four good frames and one of each kind of entry that cannot be read."""
    folder.mkdir()
    for i in range(4):
        write_opticam_frame(folder / f"good_{i}.fits", GPSTIME=f"2024-01-01 00:00:0{i}.000000")
    os.symlink("loop_b.fits", folder / "loop_a.fits")
    os.symlink("loop_a.fits", folder / "loop_b.fits")
    os.symlink("gone.fits", folder / "broken.fits")
    os.mkfifo(folder / "pipe.fits")
    (folder / "subdir.fits").mkdir()
    return folder


def test_links_loops_and_special_files_are_listed(tmp_path):
    folder = _bad_directory(tmp_path / "data")
    result = scan_frames([folder], load_profile("opticam"))
    assert [len(v) for v in result.groups.values()] == [4]
    reasons = {os.path.basename(r.path): (r.stage, r.reason) for r in result.rejected}
    assert set(reasons) == {"loop_a.fits", "loop_b.fits", "broken.fits", "pipe.fits"}
    assert reasons["loop_a.fits"] == ("scan", "symbolic-link loop: the link never reaches a file")
    assert reasons["broken.fits"][1] == "broken symbolic link: its target gone.fits does not exist"
    assert "not a regular file" in reasons["pipe.fits"][1]


def test_unreadable_file_is_listed(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(3):
        write_opticam_frame(folder / f"good_{i}.fits", GPSTIME=f"2024-01-01 00:00:0{i}.000000")
    locked = write_opticam_frame(folder / "locked.fits")
    locked.chmod(0)
    if os.access(locked, os.R_OK):
        pytest.skip("running as root: permissions do not stop reading")
    result = scan_frames([folder], load_profile("opticam"))
    assert [(os.path.basename(r.path), r.reason) for r in result.rejected] == [
        ("locked.fits", "no permission to read the file")]


def test_reducer_lists_every_bad_entry(tmp_path):
    """End to end: the scan-rejected entries and the corrupt .fits.gz (rejected when its
    pixels are read) are rows of diag/rejected_frames.ecsv with their reasons."""
    data = tmp_path / "data"
    ol.generate_observations(data, n_images=12, shape=(128, 128), n_sources=8, filters=("g",),
                             progress=False)
    shutil.rmtree(data / "truth")
    source = data / "C1_g_000006.fits"
    raw = bytearray(gzip.compress(source.read_bytes()))
    raw[len(raw) // 2] ^= 0x10
    source.unlink()
    (data / "C1_g_000006.fits.gz").write_bytes(bytes(raw))
    os.symlink("C1_g_loop2.fits", data / "C1_g_loop1.fits")
    os.symlink("C1_g_loop1.fits", data / "C1_g_loop2.fits")
    os.symlink("missing.fits", data / "C1_g_broken.fits")
    with ol.Reducer(tmp_path / "out", data_directory=data, n_workers=1,
                    progress=False) as reducer:
        reducer.create_catalogs()
    table = Table.read(tmp_path / "out" / "diag" / "rejected_frames.ecsv")
    reasons = {row["file"]: row["reason"] for row in table}
    assert set(reasons) == {"C1_g_000006.fits.gz", "C1_g_loop1.fits", "C1_g_loop2.fits",
                            "C1_g_broken.fits"}
    assert "CRC check failed" in reasons["C1_g_000006.fits.gz"]
    assert "symbolic-link loop" in reasons["C1_g_loop1.fits"]
    assert "broken symbolic link" in reasons["C1_g_broken.fits"]


@pytest.mark.parametrize("line, keyword", [("keywords = 5", "keywords"),
                                           ('time_scale = "bogus"', "time_scale")])
def test_bad_instrument_file_stops_at_once(tmp_path, capsys, line, keyword):
    path = tmp_path / "cam.toml"
    path.write_text(f'[instrument]\nbase = "generic"\n{line}\n')
    with pytest.raises(ConfigError) as error:
        load_profile(path)
    assert str(path) in str(error.value) and repr(keyword) in str(error.value)
    data = tmp_path / "data"
    data.mkdir()
    write_opticam_frame(data / "a.fits")
    assert main(["reduce", str(data), str(tmp_path / "out"), "--instrument", str(path),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert str(path) in err and keyword in err
