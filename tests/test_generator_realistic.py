"""Tests of the realistic preset of data_generator against its truth and analytic results."""

import math
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.utils import iers
from photutils.morphology import data_properties
from scipy.ndimage import map_coordinates

from data_generator import (PRESETS, SimulationParameters, generate_biases, generate_darks,
                            generate_flats, generate_observations, generate_realistic_night,
                            load_truth, scintillation_sigma)
from data_generator.atmosphere import airmass
from data_generator.cosmic_rays import cosmic_ray_mean
from data_generator.parameters import OPTICAM_PIXEL_SCALES, resolve_parameters
from data_generator.psf import moffat_alpha, psf_stamp

SMALL_REALISTIC = dict(preset="realistic", shape=(128, 128), n_sources=8, n_pairs=3, seed=11,
                       drift=12.0)


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    """A small realistic night (24 frames of 128 x 128) with its darks and flats."""
    root = tmp_path_factory.mktemp("realistic")
    night = generate_observations(root / "night", n_images=24, progress=False,
                                  **SMALL_REALISTIC)
    generate_darks(root / "dark", n_images=3, exposure=10.0, parameters=night.parameters,
                   progress=False)
    generate_flats(root / "flat", n_images=2, parameters=night.parameters, progress=False)
    generate_biases(root / "bias", n_images=1, parameters=night.parameters, progress=False)
    return root


def _read(directory, name):
    with fits.open(Path(directory) / name) as hdulist:
        return hdulist[0].data.astype(float), hdulist[0].header


def _electrons(truth, camera, data, sky, exposure):
    """Frame in electrons of star light per unit response: (ADU - bias) g / flat - sky - dark."""
    p = truth.parameters
    detector = truth.detector(camera)
    return ((data - detector["bias"]) * p["gain"] - detector["dark"] * exposure) / detector[
        "flat"] - sky


# -- parameters --------------------------------------------------------------------------------

def test_presets_resolve():
    assert PRESETS["clean"] == {}
    assert resolve_parameters(preset="clean") == SimulationParameters()
    p = resolve_parameters(preset="realistic", seed=4, n_pairs=2)
    assert p.preset == "realistic" and p.psf == "moffat" and p.n_pairs == 2 and p.seed == 4
    assert p.pixel_scales == OPTICAM_PIXEL_SCALES and not p.camera_keyword
    # the preset's fwhm-derived separation is derived again from an overridden fwhm
    assert resolve_parameters(preset="realistic", fwhm=4.0).min_separation == 20.0
    with pytest.raises(ValueError, match="preset"):
        resolve_parameters(preset="dreamy")
    with pytest.raises(ValueError, match="need psf='moffat'"):
        SimulationParameters(ellipticity_range=(0.1, 0.2))
    with pytest.raises(ValueError, match="variable_companion"):
        SimulationParameters(variable_companion=(1.5, -1.0))


# -- PSF -----------------------------------------------------------------------------------------

def _moffat_profile_fwhm(fwhm, beta, ellipticity, theta, along):
    """FWHM measured on a 20x magnified noise-free stamp along the direction ``along`` (deg)."""
    scale = 20.0
    size = 2 * int(6 * fwhm * scale) + 1
    centre = (size - 1) / 2
    rows, cols, stamp = psf_stamp(centre, centre, fwhm * scale, (size, size), "moffat", beta,
                                  ellipticity, oversample=3, theta=theta)
    image = np.zeros((size, size))
    image[rows, cols] = stamp
    r = np.linspace(0, 3 * fwhm * scale, 3001)
    a = math.radians(along)
    profile = map_coordinates(image, [centre + r * math.sin(a), centre + r * math.cos(a)],
                              order=3)
    half = profile[0] / 2
    crossing = np.flatnonzero(profile < half)[0]
    r_half = np.interp(half, profile[crossing:crossing - 2:-1], r[crossing:crossing - 2:-1])
    return 2 * r_half / scale


def test_noise_free_psf_fwhm_matches_truth(realistic):
    truth = load_truth(realistic / "night")
    row = truth.conditions[(truth.conditions["filter"] == "r")][7]
    beta, e, theta = row["beta"], row["ellipticity"], row["theta"]
    assert 2.5 <= beta <= 4.0 and 0.05 <= e <= 0.2
    assert row["fwhm_major"] * row["fwhm_minor"] == pytest.approx(row["fwhm"] ** 2, rel=1e-12)
    assert 1 - row["fwhm_minor"] / row["fwhm_major"] == pytest.approx(e, rel=1e-12)
    major = _moffat_profile_fwhm(row["fwhm"], beta, e, theta, theta)
    minor = _moffat_profile_fwhm(row["fwhm"], beta, e, theta, theta + 90)
    assert major == pytest.approx(row["fwhm_major"], rel=3e-3)
    assert minor == pytest.approx(row["fwhm_minor"], rel=3e-3)
    # the analytic FWHM of a Moffat: 2 alpha sqrt(2^(1/beta) - 1)
    alpha = moffat_alpha(row["fwhm"], beta) / math.sqrt(1 - e)
    assert 2 * alpha * math.sqrt(2 ** (1 / beta) - 1) == pytest.approx(row["fwhm_major"])


@pytest.mark.parametrize("theta", [0.0, 35.0, 120.0])
def test_elliptical_moffat_flux_and_orientation(theta):
    fwhm, beta, e = 3.0, 2.8, 0.2
    rows, cols, stamp = psf_stamp(40.3, 39.6, fwhm, (81, 81), "moffat", beta, e, theta=theta)
    # flux: the stamp holds what the Moffat puts inside the square, bounded by the inscribed
    # and circumscribed ellipses (enclosed flux 1 - (1 + R^2)^(1 - beta))
    alpha = moffat_alpha(fwhm, beta)
    a_major, a_minor = alpha / math.sqrt(1 - e), alpha * math.sqrt(1 - e)
    half = (stamp.shape[0] - 1) / 2 - 0.7
    inside = 1 - (1 + (half / a_major) ** 2) ** (1 - beta)
    outside = 1 - (1 + 2 * ((half + 1.4) / a_minor) ** 2) ** (1 - beta)
    assert inside <= stamp.sum() <= outside
    assert outside - inside < 2e-3
    # pixel integration against brute force (21 x 21 samples per pixel) near the core
    y, x = np.mgrid[rows, cols]
    sub = (np.arange(21) + 0.5) / 21 - 0.5
    c, s = math.cos(math.radians(theta)), math.sin(math.radians(theta))
    brute = np.zeros_like(stamp)
    for oy in sub:
        for ox in sub:
            dx, dy = x + ox - 40.3, y + oy - 39.6
            r2 = ((c * dx + s * dy) / a_major) ** 2 + ((c * dy - s * dx) / a_minor) ** 2
            brute += (beta - 1) / (math.pi * a_major * a_minor) * (1 + r2) ** (-beta)
    brute /= 21 * 21
    assert np.max(np.abs(stamp - brute)) < 1e-3 * stamp.max()
    # orientation from the second moments (photutils)
    properties = data_properties(stamp)
    assert (properties.orientation.value - theta + 90) % 180 - 90 == pytest.approx(0, abs=0.5)


def test_psf_angle_follows_the_camera_flips(realistic):
    truth = load_truth(realistic / "night")
    c = truth.conditions
    field_angle = truth.parameters["psf_angle"] + truth.parameters["psf_angle_rotation"] * (
        c["index"] / (truth.parameters["n_images"] - 1))
    for row, angle in zip(c, field_angle):
        matrix, _ = truth.transform(row["filter"], row["index"])
        axis = matrix @ [math.cos(math.radians(angle)), math.sin(math.radians(angle))]
        expected = math.degrees(math.atan2(axis[1], axis[0])) % 180
        assert (row["theta"] - expected + 90) % 180 - 90 == pytest.approx(0, abs=1e-9)
    # C2 is flipped in x: its PSF angle is 180 deg minus that of C1, up to the two camera
    # rotations (< 1.5 deg each) and twice the field rotation
    g, r = c[c["filter"] == "g"], c[c["filter"] == "r"]
    bound = 3.0 + 2 * truth.parameters["field_rotation"]
    assert np.all(np.abs(((g["theta"] + r["theta"]) + 90) % 180 - 90) < bound)


# -- geometry ------------------------------------------------------------------------------------

def test_transforms_flips_scales_and_positions(realistic):
    truth = load_truth(realistic / "night")
    field = np.stack([truth.field["x"], truth.field["y"]], axis=1)
    determinants = {}
    for band, camera, scale in zip("gri", ("C1", "C2", "C3"), OPTICAM_PIXEL_SCALES):
        for frame in (0, 23):
            matrix, offset = truth.transform(band, frame)
            np.testing.assert_allclose(truth.positions(band, frame), field @ matrix.T + offset,
                                       atol=1e-9)
            determinants[camera] = np.linalg.det(matrix)
            assert math.sqrt(abs(determinants[camera])) == pytest.approx(
                OPTICAM_PIXEL_SCALES[0] / scale, rel=1e-9)
    assert determinants["C1"] > 0 and determinants["C2"] < 0 and determinants["C3"] < 0
    # the field rotates by field_rotation over the night and drifts by ~drift pixels
    p = truth.parameters
    first, _ = truth.transform("g", 0)
    last, _ = truth.transform("g", 23)
    relative = last @ np.linalg.inv(first)
    assert math.degrees(math.atan2(relative[1, 0], relative[0, 0])) == pytest.approx(
        p["field_rotation"], abs=1e-9)
    moved = truth.positions("g", 23) - truth.positions("g", 0)
    assert np.median(np.hypot(*moved.T)) == pytest.approx(p["drift"], rel=0.25)
    # the stars are where the truth says: centroid of the brightest isolated star's light
    row = truth.frames[(truth.frames["filter"] == "r") & (truth.frames["index"] == 6)][0]
    data, _ = _read(realistic / "night", row["file"])
    light = _electrons(truth, "C2", data, row["sky_e"], row["exposure"])
    stars = truth.positions("r", 6)
    flux = truth.fluxes("r")["flux"][6]
    isolated = [s for s in np.argsort(-flux)
                if np.sort(np.hypot(*(stars - stars[s]).T))[1] > 6 * row["fwhm"]]
    x, y = stars[isolated[0]]
    yy, xx = np.mgrid[:128, :128]
    aperture = np.hypot(xx - x, yy - y) < 2.5 * row["fwhm"]
    weights = light * aperture
    centroid = np.array([(weights * xx).sum(), (weights * yy).sum()]) / weights.sum()
    assert np.hypot(*(centroid - (x, y))) < 0.1


def test_relative_transform_between_cameras(realistic):
    truth = load_truth(realistic / "night")
    matrix, offset = truth.relative_transform("i", 17, "g", 3)
    np.testing.assert_allclose(truth.positions("g", 3) @ matrix.T + offset,
                               truth.positions("i", 17), atol=1e-9)
    # g -> i: C3 is flipped in y and has larger pixels than C1
    assert np.linalg.det(matrix) == pytest.approx(-(OPTICAM_PIXEL_SCALES[0]
                                                    / OPTICAM_PIXEL_SCALES[2]) ** 2, rel=1e-9)


def test_close_pairs(realistic):
    truth = load_truth(realistic / "night")
    p = truth.parameters
    pairs = truth.pairs
    assert len(pairs) == 1 + p["n_pairs"]
    variable = int(np.flatnonzero(truth.sources["is_variable"])[0])
    companion = pairs[pairs["primary"] == variable]
    assert len(companion) == 1
    assert companion["separation"][0] == 1.5 and companion["delta_mag"][0] == 2.0
    others = pairs[pairs["primary"] != variable]
    assert np.all((others["separation"] >= 1) & (others["separation"] <= 3))
    assert np.all((others["delta_mag"] >= 0) & (others["delta_mag"] <= 3))
    for row in pairs:
        distance = np.hypot(*(np.array([row["x"], row["y"]]) - [
            truth.field["x"][row["primary"]], truth.field["y"][row["primary"]]]))
        assert distance == pytest.approx(row["separation"] * p["fwhm"], rel=1e-9)
        for band, scale in zip("gri", OPTICAM_PIXEL_SCALES):
            flux = truth.sources[f"flux_{band}"]
            assert -2.5 * math.log10(flux[row["id"]] / flux[row["primary"]]) == pytest.approx(
                row["delta_mag"], abs=1e-9)
            # in the camera's pixels, the separation scales with the camera's pixel scale
            pos = truth.positions(band, 5)
            assert np.hypot(*(pos[row["id"]] - pos[row["primary"]])) == pytest.approx(
                distance * OPTICAM_PIXEL_SCALES[0] / scale, rel=1e-9)


# -- detector defects ----------------------------------------------------------------------------

def test_defects_where_the_truth_says(realistic):
    night = load_truth(realistic / "night")
    darks = load_truth(realistic / "dark")
    p = night.parameters
    defects = {camera: night.defects(camera) for camera in ("C1", "C2", "C3")}
    for camera, band in zip(("C1", "C2", "C3"), "gri"):
        table = defects[camera]
        counts = {kind: int(np.sum(table["kind"] == kind)) for kind in set(table["kind"])}
        assert counts == {"hot": p["hot_pixels"], "saturated_hot": p["saturated_hot_pixels"],
                          "warm": p["warm_pixels"], "dead": p["dead_pixels"],
                          "hot_column": 128 * p["hot_columns"],
                          "dead_column": 128 * p["dead_columns"]}
        detector = night.detector(camera)
        dark, header = _read(realistic / "dark", darks.calibration_frames("dark")["file"][
            3 * "gri".index(band)])
        assert "CAMERA" not in header and header["FILTER"] == band
        t = 10.0
        expected = detector["bias"] + detector["dark"] * t / p["gain"]
        sigma = np.sqrt(detector["dark"] * t + p["read_noise"] ** 2) / p["gain"] + 1
        warm = table[table["kind"] == "warm"]
        assert np.all(np.abs(dark[warm["y"], warm["x"]] - expected[warm["y"], warm["x"]])
                      < 6 * sigma[warm["y"], warm["x"]])
        assert np.all(warm["dark"] - p["dark_current"] >= 5 - 1e-3)
        saturated = table[table["kind"] == "saturated_hot"]
        science, _ = _read(realistic / "night", night.frames["file"][24 * "gri".index(band)])
        assert np.all(science[saturated["y"], saturated["x"]] == p["saturation"])
        assert np.all(detector["hot"][saturated["y"], saturated["x"]])
        hot_column = int(table[table["kind"] == "hot_column"]["x"][0])
        dead_column = int(table[table["kind"] == "dead_column"]["x"][0])
        neighbours = [c for c in (hot_column - 2, hot_column + 2) if 0 <= c < 128]
        excess = np.median(dark[:, hot_column]) - np.median(dark[:, neighbours])
        assert excess == pytest.approx(table[table["kind"] == "hot_column"]["dark"][0] * t
                                       / p["gain"], rel=0.1, abs=8)
        assert excess > 100
        flat, _ = _read(realistic / "flat", f"{band}_flat_000000.fits")
        level = np.median(flat - detector["bias"])
        assert np.median(flat[:, dead_column] - detector["bias"][:, dead_column]) < 0.06 * level
        assert np.all(detector["dead"][:, dead_column])
    # fixed per camera, but different between cameras
    columns = {c: set(defects[c]["x"][defects[c]["kind"] == "hot_column"]) for c in defects}
    warm = {c: set(zip(*[defects[c][defects[c]["kind"] == "warm"][n] for n in "xy"]))
            for c in defects}
    assert warm["C1"] != warm["C2"] and len(warm["C1"] & warm["C2"]) < 5
    assert len({min(v) for v in columns.values()}) > 1


# -- satellite trails ----------------------------------------------------------------------------

def test_trail_pixels_along_the_recorded_line(realistic):
    truth = load_truth(realistic / "night")
    trails = truth.trails
    for band in "gri":
        rows = trails[trails["filter"] == band]
        assert 2 <= len(np.unique(rows["frame"])) <= 8
        assert rows["variable_distance"].min() < truth.parameters["fwhm"] * 1.2
    camera_of = dict(zip("gri", ("C1", "C2", "C3")))
    checked = 0
    for row in trails:
        frame = truth.frames[(truth.frames["filter"] == row["filter"])
                             & (truth.frames["index"] == row["frame"])][0]
        data, _ = _read(truth.directory, frame["file"])
        light = _electrons(truth, camera_of[row["filter"]], data, frame["sky_e"], 1.0)
        stars = truth.positions(row["filter"], row["frame"])
        start, end = np.array([row["x0"], row["y0"]]), np.array([row["x1"], row["y1"]])
        normal = np.array([-(end - start)[1], (end - start)[0]]) / np.hypot(*(end - start))
        on, off = [], []
        for f in np.linspace(0.2, 0.8, 40):
            point = start + f * (end - start)
            far = point + 4 * row["fwhm"] * normal
            for where, store in ((point, on), (far, off)):
                x, y = np.rint(where).astype(int)
                if (0 <= x < 128 and 0 <= y < 128
                        and np.min(np.hypot(*(stars - [x, y]).T)) > 4 * frame["fwhm"]
                        and truth.detector(camera_of[row["filter"]])["flat"][y, x] > 0.5):
                    store.append(light[y, x])
        if len(on) >= 8 and len(off) >= 8:
            checked += 1
            # pixel centres lie up to 0.7 px from the line: the mean is 75-100 % of the peak
            assert 0.6 * row["peak"] < np.mean(on) < 1.1 * row["peak"]
            assert abs(np.mean(off)) < 0.1 * row["peak"] + 20
    assert checked >= 3


# -- atmosphere ------------------------------------------------------------------------------------

def test_scintillation_formula():
    # Young (1967) with C_Y (Osborn et al. 2015): sigma^2 = 1e-5 C_Y^2 D^-4/3 / t X^3 e^(-2h/H)
    expected = math.sqrt(1e-5 * 1.5 ** 2 * 2.1 ** (-4 / 3) * math.exp(-2 * 2800 / 8000))
    assert scintillation_sigma(2.1, 1.0, 1.0, 2800.0) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.00204, abs=1e-5)
    assert scintillation_sigma(2.1, 4.0, 2.0, 2800.0) == pytest.approx(
        expected / 2 * 2 ** 1.5, rel=1e-12)
    assert scintillation_sigma(2.1, 1.0, 1.0, 2800.0, c_y=1.0) == pytest.approx(expected / 1.5)
    with pytest.raises(ValueError):
        scintillation_sigma(2.1, 0.0, 1.0, 2800.0)


def test_airmass_against_astropy():
    times = Time("2024-01-01T00:00:00") + np.linspace(0, 6, 7) * u.hour
    site = EarthLocation(lon=-115.4636 * u.deg, lat=31.0442 * u.deg, height=2790 * u.m)
    target = SkyCoord("01:00:00.00", "+25:00:00.0", unit=(u.hourangle, u.deg))
    with iers.conf.set_temp("auto_download", False), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        altitude = target.transform_to(AltAz(obstime=times, location=site)).alt
    # sec z without precession since J2000 (20 arcmin in 2024): within 1.5 %
    np.testing.assert_allclose(airmass(times, 15.0, 25.0, -115.4636, 31.0442),
                               1 / np.sin(altitude.rad), rtol=0.015)


def test_scintillation_in_the_frames(tmp_path):
    n = 200
    generate_observations(tmp_path, n_images=n, progress=False, shape=(64, 64), n_sources=1,
                          filters=("r",), psf="moffat", beta=3.0, fwhm=6.0, fwhm_scatter=0.0,
                          flux_range=(2e6, 2e6), variable_index=None, drift=0.0, jitter=0.0,
                          margin=20, scintillation=True, camera_keyword=False, seed=5)
    truth = load_truth(tmp_path)
    sigma = truth.conditions["scintillation"]
    airmass = truth.conditions["airmass"]
    p = truth.parameters
    np.testing.assert_allclose(sigma, scintillation_sigma(2.1, p["exposure"], airmass,
                                                          p["site"][2], 1.5), rtol=1e-12)
    factors = truth.scintillation("r")["factor"][:, 0]
    assert np.std(factors - 1) / np.mean(sigma) == pytest.approx(1.0, abs=0.15)
    x, y = truth.positions("r", 0)[0]
    yy, xx = np.mgrid[:64, :64]
    aperture = np.hypot(xx - x, yy - y) < 20
    measured = np.empty(n)
    for i, row in enumerate(truth.frames):
        data, _ = _read(tmp_path, row["file"])
        measured[i] = _electrons(truth, "C1", data, row["sky_e"], row["exposure"])[aperture].sum()
    injected = truth.fluxes("r")["flux"][:, 0]
    mean = truth.sources["flux_r"][0]
    # measured scatter = scintillation + (photon + background) noise; the latter is
    # measured - injected (the injected flux carries the scintillation factor)
    total = np.var(measured / mean)
    noise = np.var((measured - injected) / mean)
    assert math.sqrt(total - noise) == pytest.approx(np.mean(sigma), rel=0.15)
    assert math.sqrt(noise) < 0.5 * np.mean(sigma)


def test_clouds(realistic):
    truth = load_truth(realistic / "night")
    c = truth.conditions
    transparency = c["transparency"][c["filter"] == "g"]
    assert transparency.min() == pytest.approx(0.1, abs=1e-9)
    assert np.all(transparency <= 1) and np.sum(transparency < 1) >= 3
    for band in "gri":
        same = c["transparency"][c["filter"] == band]
        np.testing.assert_array_equal(same, transparency)
        fluxes = truth.fluxes(band)["flux"]
        factors = truth.scintillation(band)["factor"]
        is_variable = np.asarray(truth.sources["is_variable"])
        expected = truth.sources[f"flux_{band}"][None, :] * factors * transparency[:, None]
        # injected flux of the constant stars = F0 x scintillation x transparency (the stamp
        # truncation loses < 1e-3)
        np.testing.assert_allclose(fluxes[:, ~is_variable], expected[:, ~is_variable],
                                   rtol=2e-3)
    # the sky is not dimmed, the stars are: the brightest star in the deepest frame
    deepest = int(np.argmin(transparency))
    clear = int(np.argmax(transparency))
    ratio = []
    for frame in (deepest, clear):
        row = truth.frames[(truth.frames["filter"] == "g") & (truth.frames["index"] == frame)][0]
        data, _ = _read(truth.directory, row["file"])
        light = _electrons(truth, "C1", data, row["sky_e"], row["exposure"])
        x, y = truth.positions("g", frame)[0]
        yy, xx = np.mgrid[:128, :128]
        ratio.append(light[np.hypot(xx - x, yy - y) < 10].sum())
    assert ratio[0] / ratio[1] == pytest.approx(transparency[deepest] / transparency[clear],
                                                rel=0.1)


# -- headers and files ---------------------------------------------------------------------------

def test_no_camera_keyword_and_folders(realistic, tmp_path):
    truth = load_truth(realistic / "night")
    for name in truth.frames["file"][::10]:
        _, header = _read(realistic / "night", name)
        assert "CAMERA" not in header
        assert header["FILTER"] == name[0] and not name.startswith("C")
    for kind in ("bias", "flat"):
        for path in (realistic / kind).glob("*.fits"):
            assert "CAMERA" not in fits.getheader(path)
    night = generate_observations(tmp_path, n_images=2, progress=False, camera_folders=True,
                                  **SMALL_REALISTIC)
    assert sorted(str(f.relative_to(tmp_path)) for f in night.files) == [
        "c1/g_000000.fits", "c1/g_000001.fits", "c2/r_000000.fits", "c2/r_000001.fits",
        "c3/i_000000.fits", "c3/i_000001.fits"]
    truth = load_truth(tmp_path)
    assert truth.frames["file"][2] == "c2/r_000000.fits"
    assert truth.frame_position("r", "anywhere/r_000001.fits") == 1
    with pytest.raises(FileExistsError):
        generate_observations(tmp_path, n_images=1, progress=False, camera_folders=True,
                              **SMALL_REALISTIC)
    generate_observations(tmp_path, n_images=1, progress=False, camera_folders=True,
                          overwrite=True, **SMALL_REALISTIC)
    assert not (tmp_path / "c1" / "g_000001.fits").exists()


def test_realistic_night_is_reproducible(tmp_path):
    first = generate_observations(tmp_path / "a", n_images=3, progress=False, **SMALL_REALISTIC)
    generate_observations(tmp_path / "b", n_images=3, progress=False,
                          parameters=load_truth(tmp_path / "a").parameters)
    for path in first.files + sorted((tmp_path / "a" / "truth").iterdir()):
        relative = path.relative_to(tmp_path / "a")
        assert (tmp_path / "b" / relative).read_bytes() == path.read_bytes(), relative


def test_cosmic_ray_rate(realistic):
    p = resolve_parameters(preset="realistic")
    side = 2048 * 6.5e-4
    assert cosmic_ray_mean(p) == pytest.approx(2.0 * side * side / 60.0, rel=1e-12)
    assert cosmic_ray_mean(p, 60.0) == pytest.approx(2.0 * side * side, rel=1e-12)
    truth = load_truth(realistic / "night")
    hits = truth.cosmic_rays("g")
    assert set(hits.colnames) == {"frame", "ray", "x", "y", "electrons"}


def test_clean_night_has_no_realistic_effects(tmp_path):
    generate_observations(tmp_path, n_images=3, progress=False, shape=(64, 64), n_sources=3,
                          hot_pixels=4, dead_pixels=2, drift=4.0, seed=2)
    truth = load_truth(tmp_path)
    c = truth.conditions
    assert np.all(c["theta"] == 0) and np.all(c["transparency"] == 1)
    assert np.all(c["scintillation"] == 0) and np.all(c["beta"] == 2.5)
    assert np.all(c["ellipticity"] == 0) and np.all(c["n_trails"] == 0)
    assert len(truth.trails) == 0 and len(truth.pairs) == 0 and len(truth.sources) == 3
    assert np.all(truth.scintillation("g")["factor"] == 1)
    assert sorted(set(truth.defects("C1")["kind"])) == ["dead", "hot"]
    assert fits.getheader(tmp_path / "C2_r_000001.fits")["CAMERA"] == "C2"
    for band, flip in zip("gri", (1, -1, -1)):
        matrix, _ = truth.transform(band, 0)
        assert np.sign(np.linalg.det(matrix)) == flip
        assert abs(np.linalg.det(matrix)) == pytest.approx(1.0, rel=1e-12)


def test_realistic_night_smoke(tmp_path):
    """The standard realistic night, shortened to 6 frames per camera."""
    generated = generate_realistic_night(tmp_path, n_images=6, n_calibration=1, progress=False)
    assert set(generated) == {"object", "bias", "dark", "flat"}
    truth = load_truth(tmp_path / "night")
    assert truth.parameters["shape"] == [512, 512] and truth.parameters["binning"] == 4
    assert len(truth.sources) == 60 + 12 + 1 and len(truth.pairs) == 13
    assert len(truth.conditions) == 18 and len(list((tmp_path / "night").glob("*.fits"))) == 18
    data, header = _read(tmp_path / "night", "i_000003.fits")
    assert data.shape == (512, 512) and header["BINNING"] == "4x4" and "CAMERA" not in header
