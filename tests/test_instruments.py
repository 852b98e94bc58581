import pytest

from opticam_like.instruments import (BUILTIN_PROFILES, ConfigError, InstrumentProfile,
                                      load_profile, profile_from_mapping)


def test_builtin_profiles():
    assert load_profile("opticam").site == (-115.4636, 31.0442, 2790.0)
    assert load_profile("GENERIC").name == "generic"
    profile = BUILTIN_PROFILES["opticam"]
    assert load_profile(profile) is profile
    assert profile.header_keywords("exposure") == ("EXPOSURE", "EXPTIME")


def test_toml_profile(tmp_path):
    path = tmp_path / "cam.toml"
    path.write_text('[instrument]\nbase = "generic"\ntime_reference = "mid"\n'
                    '[instrument.keywords]\nexposure = "ITIME"\n'
                    '[instrument.site]\nlon = -70.7\nlat = -29.0\nheight = 2280\n')
    profile = load_profile(path)
    assert profile.time_reference == "mid"
    assert profile.header_keywords("exposure") == ("ITIME",)
    assert profile.header_keywords("gain") == ("GAIN", "EGAIN", "CCDGAIN")
    assert profile.site == (-70.7, -29.0, 2280.0)


@pytest.mark.parametrize("text, keyword", [
    ('[instrument]\nbase = "generic"\ntime_referense = "mid"\n', "time_referense"),
    ('[instrument]\nbase = "generic"\ntime_reference = "middle"\n', "time_reference"),
    ('[instrument]\nbase = "nope"\n', "base"),
    ('[instrument]\nbase = "generic"\n[instrument.keywords]\nfliter = "F"\n', "fliter"),
    ('[instrument]\nbase = "generic"\n[instrument.site]\nlon = 1\n', "site"),
    ('[instrument]\nbase = "generic"\nkeywords = 5\n', "keywords"),
    ('[instrument]\nbase = "generic"\n[instrument.keywords]\ngain = 5\n', "keywords.gain"),
    ('[instrument]\nbase = "generic"\ntime_scale = "bogus"\n', "time_scale"),
    ('[instrument]\nbase = "generic"\ntime_keywords = "DATE-OBS"\n', "time_keywords"),
    ('[instrument]\nbase = "generic"\ntime_keywords = ["MJD:days"]\n', "MJD:days"),
    ('[instrument]\nbase = "generic"\ntime_keywords = []\n', "time_keywords"),
    ('[instrument]\nbase = "generic"\nrequired = ["gain", 3]\n', "required"),
    ('[instrument]\nbase = "generic"\ndefaults = 1\n', "defaults"),
    ('[instrument]\nbase = "generic"\n[instrument.defaults]\ngain = "high"\n', "defaults.gain"),
    ('[instrument]\nbase = "generic"\nsite = [1, 2]\n', "site"),
    ('[instrument]\nbase = "opticam"\ncamera_directories = "yes"\n', "camera_directories"),
    ('[instrument]\nbase = "opticam"\n[instrument.camera_filters]\nC1 = ["g"]\nC2 = ["g\'"]\n',
     "camera_filters"),
    ('[instrument]\nname = 7\n', "name"),
    ('instrument = 5\n', "instrument"),
])
def test_bad_profile_names_file_and_keyword(tmp_path, text, keyword):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert str(path) in str(info.value) and keyword in str(info.value)
    assert "\n" not in str(info.value)


def test_camera_mapping_profile(tmp_path):
    opticam = load_profile("opticam")
    assert [opticam.camera_of_filter(b) for b in ("u", "g'", "R", "i-band", "z", "V")] == [
        "C1", "C1", "C2", "C3", "C3", None]
    assert [opticam.camera_name(v) for v in ("1", "c2", "CAM3", "Camera 1", "blue")] == [
        "C1", "C2", "C3", "C1", "blue"]
    assert load_profile("generic").camera_name("1") == "1"
    path = tmp_path / "two.toml"
    path.write_text('[instrument]\nbase = "opticam"\ncamera_directories = false\n'
                    '[instrument.camera_filters]\nblue = "B"\nred = ["R", "I"]\n')
    profile = load_profile(path)
    assert profile.camera_filters == {"blue": ("B",), "red": ("R", "I")}
    assert profile.camera_of_filter("I") == "red" and not profile.camera_directories

def test_unknown_instrument_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown instrument 'hst'"):
        load_profile("hst")
    with pytest.raises(ConfigError, match="not found"):
        load_profile(tmp_path / "missing.toml")


def test_profile_without_name_needs_base():
    with pytest.raises(ConfigError, match="name"):
        profile_from_mapping({"time_reference": "start"}, source="x.toml")
    profile = profile_from_mapping({"name": "cam", "keywords": {"filter": ["FILT"]}})
    assert isinstance(profile, InstrumentProfile) and profile.header_keywords("filter") == ("FILT",)
