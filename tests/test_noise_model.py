"""Scintillation noise: the formula against the simulator's copy, the airmass against the
simulator's, the variance term, the profile fields and the per-frame value."""

import numpy as np
import pytest
from astropy import units as u
from astropy.time import Time

from data_generator import atmosphere
from opticam_like.errors import ConfigError
from opticam_like.frames import FrameInfo
from opticam_like.instruments import BUILTIN_PROFILES, InstrumentProfile
from opticam_like.photometry.noise import (add_scintillation, frame_airmass,
                                           scintillation_sigma)
from opticam_like.stages import PassContext, frame_scintillation
from opticam_like.timing import get_site

SPM = (-115.4636, 31.0442, 2790.0)


@pytest.mark.parametrize("diameter, altitude", [(2.1, 2790.0), (0.5, 0.0), (4.2, 2400.0)])
def test_scintillation_matches_the_simulator(diameter, altitude):
    exposure = np.array([0.1, 1.0, 10.0, 30.0])
    airmass = np.array([1.0, 1.3, 2.0, 2.9])
    ours = scintillation_sigma(diameter, exposure, airmass, altitude)
    theirs = atmosphere.scintillation_sigma(diameter, exposure, airmass, altitude)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    # Young's formula (C_Y = 1) for 2.1 m, 1 s, zenith, sea level: sqrt(1e-5) 2.1^(-2/3)
    assert scintillation_sigma(2.1, 1.0, 1.0, 0.0, c_y=1.0) == pytest.approx(
        np.sqrt(1e-5) * 2.1 ** (-2 / 3), rel=1e-12)


def test_scintillation_rejects_bad_input():
    with pytest.raises(ValueError, match="diameter"):
        scintillation_sigma(0.0, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        scintillation_sigma(2.1, np.array([1.0, 0.0]), 1.0, 0.0)


def test_airmass_matches_the_simulator():
    times = Time("2024-01-01T01:00:00") + np.arange(0, 6, 1.0) * u.hour
    ours = np.array([frame_airmass(t, get_site(SPM), 15.0, 25.0) for t in times])
    theirs = atmosphere.airmass(times, 15.0, 25.0, SPM[0], SPM[1])
    ok = np.isfinite(theirs) & (theirs < 3)
    assert ok.sum() >= 3
    # sec z without refraction, precession or nutation in the simulator: 1% up to airmass 3
    np.testing.assert_allclose(ours[ok], theirs[ok], rtol=0.01)


def test_add_scintillation():
    flux = np.array([1e4, 1e6, -50.0])
    variance = np.array([1e4, 1e6, 100.0])
    new, method = add_scintillation(flux, variance, 0.002, "ccd")
    np.testing.assert_allclose(new, [1e4 + 400.0, 1e6 + 4e6, 100.0])
    assert method == "ccd+scintillation"
    same, method = add_scintillation(flux, variance, 0.0, "ccd")
    assert method == "ccd" and np.array_equal(same, variance)


def test_profiles_carry_the_telescope():
    opticam, generic = BUILTIN_PROFILES["opticam"], BUILTIN_PROFILES["generic"]
    assert opticam.telescope_diameter == 2.1 and opticam.scintillation
    assert not generic.scintillation
    with pytest.raises(ConfigError, match="telescope_diameter"):
        InstrumentProfile(name="x", scintillation=True)
    with pytest.raises(ConfigError, match="telescope_diameter"):
        InstrumentProfile(name="x", telescope_diameter=-1.0)


def _info(time, exposure=2.0, ra=15.0, dec=25.0, observatory="SPM"):
    return FrameInfo(path="f.fits", camera="C1", filter="g", binning="4x4", shape=(64, 64),
                     gain=1.0, read_noise=5.0, exposure=exposure, dark_current=0.0,
                     saturation=65535.0, time=Time(time), time_keyword="DATE-OBS", ra=ra,
                     dec=dec, observatory=observatory)


def test_frame_scintillation():
    opticam = BUILTIN_PROFILES["opticam"]
    info = _info("2024-01-01T02:00:00")
    sigma = frame_scintillation(PassContext(profile=opticam), info)
    location = get_site(SPM)
    expected = scintillation_sigma(2.1, 2.0, frame_airmass(info.time, location, 15.0, 25.0),
                                   2790.0)
    assert sigma == pytest.approx(float(expected), rel=1e-3)
    assert 0.001 < sigma < 0.003
    # off in the generic profile, without a target, or below the horizon
    assert frame_scintillation(PassContext(profile=BUILTIN_PROFILES["generic"]), info) == 0.0
    assert frame_scintillation(PassContext(profile=opticam),
                               _info("2024-01-01T02:00:00", ra=np.nan, dec=np.nan)) == 0.0
    assert frame_scintillation(PassContext(profile=opticam), _info("2024-01-01T18:00:00")) == 0.0
    # the context's target overrides the header's
    other = frame_scintillation(PassContext(profile=opticam, target=(15.0, -20.0)), info)
    assert other > sigma
