import pytest

from opticam_like.config import ConfigError, dump_config, load_config


def test_valid_config_round_trip(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('instrument = "generic"\n[site]\nlon = -70.7\nlat = -29.0\nheight = 2280\n'
                    '[background]\nbox_size = 32\n[[photometry]]\ntype = "aperture"\n'
                    'fwhm_scale = 2.0\n')
    config = load_config(path)
    assert config["background"]["box_size"] == 32
    assert config["photometry"][0]["fwhm_scale"] == 2.0
    text = dump_config(config)
    path.write_text(text)
    assert load_config(path) == config


@pytest.mark.parametrize("text, needle", [
    ("[backgroud]\nbox_size = 3\n", "backgroud"),
    ("[background]\nbox_sise = 3\n", "box_sise"),
    ('[background]\nbox_size = "big"\n', "box_size"),
    ("[reduction]\nprogress = 1\n", "progress"),
    ("[detection]\nthreshold = true\n", "threshold"),
    ('[[photometry]]\nradius = 3\n', "type"),
    ("[site\n", "not valid TOML"),
])
def test_errors_name_file_and_keyword(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_photometers_from_config():
    from opticam_like.config import photometers_from_config
    entries = [{"type": "aperture", "radius": 4.0, "local_background": {"r_in": 8, "r_out": 12,
                                                                      "fwhm_scaled": False}},
               {"type": "optimal"}, {"type": "psf", "method": "weighted"},
               {"type": "aperture", "fwhm_scale": 2.0, "local_background": False}]
    photometers = photometers_from_config(entries, "r.toml")
    assert [p.name for p in photometers] == ["aperture_r4", "optimal_gaussian",
                                             "psf_gaussian_weighted", "aperture_2fwhm"]
    assert photometers[0].local_background.radii(3.0) == (8, 12)
    assert photometers[3].local_background is None
    with pytest.raises(ConfigError, match=r"r.toml: \[\[photometry\]\] number 1: .*radus"):
        photometers_from_config([{"type": "aperture", "radus": 3}], "r.toml")
    with pytest.raises(ConfigError, match="number 1: type must be"):
        photometers_from_config([{"type": "sextractor"}], "r.toml")


def test_relative_paths_follow_the_config_file(tmp_path):
    folder = tmp_path / "night"
    folder.mkdir()
    path = folder / "r.toml"
    path.write_text('instrument = "cam.toml"\n[calibration]\nbias = "cal/bias"\n'
                    'flat = ["/abs/f1.fits", "f2.fits"]\n')
    config = load_config(path)
    assert config["instrument"] == str(folder / "cam.toml")
    assert config["calibration"]["bias"] == str(folder / "cal" / "bias")
    assert config["calibration"]["flat"] == ["/abs/f1.fits", str(folder / "f2.fits")]
