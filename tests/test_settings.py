"""Settings: merged from arguments, a configuration file and defaults; validated once; the echo
in misc/config.toml reads back to equal settings."""

from pathlib import Path

import pytest

import opticam_like as ol
from opticam_like.config import load_config
from opticam_like.settings import Settings, background_from_config


def _write(path, text):
    path.write_text(text)
    return path


def test_defaults():
    s = Settings.from_arguments()
    assert s.profile.name == "opticam"
    assert isinstance(s.background, ol.DefaultBackground) and s.background.box_size == (64, 64)
    assert s.finder.deblend is False and s.catalog_finder.deblend is True
    assert (s.alignment, s.recentre, s.reference_frame) == ("auto", "transform", "auto")
    assert s.photometers == () and s.progress is True and s.n_workers is None
    assert s.site == s.profile.site


def test_arguments_override_the_file(tmp_path):
    path = _write(tmp_path / "r.toml", 'instrument = "generic"\n[background]\nbox_size = 48\n'
                  '[detection]\nthreshold = 7.0\n[alignment]\nmethod = "translation"\n'
                  '[reduction]\nn_workers = 3\n[site]\nname = "lco"\n')
    s = Settings.from_arguments(path, n_workers=1, alignment="astroalign")
    assert s.profile.name == "generic" and s.background.box_size == (48, 48)
    assert s.finder.threshold == 7.0 == s.catalog_finder.threshold
    assert (s.n_workers, s.alignment, s.site, s.source) == (1, "astroalign", "lco", str(path))


def test_frozen():
    s = Settings.from_arguments()
    with pytest.raises(AttributeError):
        s.alignment = "translation"
    assert s.replace(alignment="translation").alignment == "translation"


@pytest.mark.parametrize("arguments, needle", [
    ({"alignment": "magic"}, "alignment must be one of"),
    ({"recentre": "sometimes"}, "recentre must be one of"),
    ({"reference_frame": -1}, "reference_frame must be"),
    ({"reference_frame": True}, "reference_frame must be"),
    ({"n_workers": 0}, "n_workers must be a positive integer"),
    ({"max_sources": 2.5}, "max_sources must be a positive integer"),
    ({"background": "big"}, "background must be callable"),
    ({"photometers": [ol.AperturePhotometer(), ol.AperturePhotometer()]},
     "photometer names must differ"),
])
def test_invalid_arguments_are_named(arguments, needle):
    with pytest.raises(ol.ConfigError, match=needle) as info:
        Settings.from_arguments(**arguments)
    assert str(info.value).startswith("<arguments>: ")


def test_invalid_file_values_name_the_file_and_keyword(tmp_path):
    path = _write(tmp_path / "bad.toml", '[alignment]\nrecentre = "sometimes"\n')
    with pytest.raises(ol.ConfigError, match=r"bad.toml: recentre must be one of"):
        Settings.from_toml(path)
    path = _write(tmp_path / "bad2.toml", '[background]\nestimator = "photutils"\nsigma = 2.0\n')
    with pytest.raises(ol.ConfigError, match=r"bad2.toml: \[background\] sigma is not a keyword"):
        Settings.from_toml(path)
    path = _write(tmp_path / "bad3.toml", '[detection]\nthreshold = -1.0\n')
    with pytest.raises(ol.ConfigError, match=r"bad3.toml: \[detection\] threshold must be"):
        Settings.from_toml(path)


def test_round_trip_through_toml(tmp_path):
    settings = Settings.from_arguments(
        instrument="generic", site=(-70.7, -29.0, 2280.0), target=(80.894, -69.756),
        background=ol.SExtractorExactBackground(box_size=(32, 48), filter_size=5),
        remove_cosmic_rays=True, reference_frame=3, alignment="translation", recentre="each",
        max_sources=40, n_workers=2, progress=False, bias=["b1.fits", "b2.fits"],
        data_directories=["night/data"],
        photometers=[ol.AperturePhotometer(radius=4.0, local_background=None),
                     ol.AperturePhotometer(fwhm_scale=2.0, elliptical=True),
                     ol.OptimalPhotometer(psf="moffat"),
                     ol.PSFPhotometer(method="weighted", local_background=ol.AnnulusBackground(
                         r_in=8, r_out=12, fwhm_scaled=False, statistic="median"))])
    path = _write(tmp_path / "config.toml", settings.to_toml())
    assert load_config(path)  # the echo is a valid configuration file
    back = Settings.from_toml(path)
    assert back == settings
    assert back.photometers == settings.photometers
    assert back.background.box_size == (32, 48) and back.background.filter_size == (5, 5)
    assert back.profile == settings.profile
    assert back.target == (80.894, -69.756) and tuple(back.site) == (-70.7, -29.0, 2280.0)
    assert back.bias == [str(Path.cwd() / "b1.fits"), str(Path.cwd() / "b2.fits")]
    assert settings != settings.replace(max_sources=41)


def test_custom_objects_are_echoed_and_must_be_passed_again(tmp_path):
    class Flat:
        def __init__(self):
            self.level = 3.0

        def __call__(self, data, mask=None):
            raise NotImplementedError

    settings = Settings.from_arguments(background=Flat())
    text = settings.to_toml()
    assert "Flat(level=3.0)" in text
    path = _write(tmp_path / "config.toml", text)
    with pytest.raises(ol.ConfigError, match=r"config.toml: \[background\] custom = .*pass "
                                             r"background="):
        Settings.from_toml(path)
    assert Settings.from_toml(path, background=settings.background) == settings


def test_background_from_config():
    assert type(background_from_config({})) is ol.DefaultBackground
    assert background_from_config({"estimator": "photutils", "box_size": 32}).box_size == (32, 32)
    with pytest.raises(ol.ConfigError, match="estimator must be one of"):
        background_from_config({"estimator": "magic"}, "x.toml")
