"""The photometry-pass cosmic-ray check against the frame's measured (Moffat) PSF."""

import numpy as np
import pytest

from opticam_like.flags import PhotFlag
from opticam_like.photometry.cosmic_rays import star_cosmic_rays
from opticam_like.photometry.moffat import MoffatProfile

SKY_VARIANCE = 100.0


def _field(fwhm, seed, n_side=6, flux_range=(2e3, 3e5)):
    """Elliptical Moffat stars (beta 2.7) on a grid with Poisson and sky noise (e-)."""
    rng = np.random.default_rng(seed)
    psf = MoffatProfile(fwhm=fwhm, beta=2.7, ellipticity=0.12, theta=0.6)
    spacing = int(8 * fwhm)
    size = spacing * (n_side + 1)
    grid = np.arange(1, n_side + 1) * spacing
    x = (grid[None, :] + rng.uniform(-0.5, 0.5, (n_side, n_side))).ravel()
    y = (grid[:, None] + rng.uniform(-0.5, 0.5, (n_side, n_side))).ravel()
    flux = np.exp(rng.uniform(*np.log(flux_range), x.size))
    yy, xx = np.mgrid[:size, :size].astype(float)
    image = np.zeros((size, size))
    half = int(4 * fwhm)
    for xi, yi, fi in zip(x, y, flux):
        sl = np.s_[int(yi) - half:int(yi) + half + 1, int(xi) - half:int(xi) + half + 1]
        image[sl] += fi * psf.render(xx[sl] - xi, yy[sl] - yi)
    image = rng.poisson(image).astype(float) + rng.normal(0, np.sqrt(SKY_VARIANCE), image.shape)
    return image, x, y, psf, rng, flux


@pytest.mark.parametrize("fwhm", [2.5, 5.0])
def test_clean_moffat_stars_give_no_hits(fwhm):
    flags = None
    false = 0
    for seed in range(3):
        image, x, y, psf, _, _ = _field(fwhm, seed)
        flags = np.zeros(image.shape, dtype=np.uint16)
        hits, cleared = star_cosmic_rays(image, flags, x, y, fwhm, np.full(x.size, SKY_VARIANCE),
                                         psf=psf)
        false += len(hits)
        assert len(cleared) == 0
    assert false == 0


@pytest.mark.parametrize("fwhm", [2.5, 5.0])
def test_hits_on_star_cores_are_found(fwhm):
    found = total = 0
    for seed in range(3):
        image, x, y, psf, rng, flux = _field(fwhm, 10 + seed)
        # one-pixel hits within 1 px of each star's centre, 5-50 times the pixel noise there
        ix = np.round(x + rng.integers(-1, 2, x.size)).astype(int)
        iy = np.round(y + rng.integers(-1, 2, x.size)).astype(int)
        noise = np.sqrt(SKY_VARIANCE + np.maximum(image[iy, ix], 0))
        energy = rng.uniform(5, 50, x.size) * noise
        image[iy, ix] += energy
        flags = np.zeros(image.shape, dtype=np.uint16)
        hits, _ = star_cosmic_rays(image, flags, x, y, fwhm, np.full(x.size, SKY_VARIANCE),
                                   psf=psf)
        injected = iy * image.shape[1] + ix
        flux_sigma = np.sqrt(flux + np.pi * (1.5 * fwhm) ** 2 * SKY_VARIANCE)
        significant = energy > 3 * flux_sigma  # changes a 1.5 FWHM aperture flux by 3 sigma
        found += np.isin(injected[significant], hits).sum()
        total += significant.sum()
    assert found >= 0.95 * total, (found, total)


def test_la_cosmic_flags_on_clean_cores_are_cleared_and_real_hits_kept():
    image, x, y, psf, _, _ = _field(2.5, 3)
    flags = np.zeros(image.shape, dtype=np.uint16)
    nx = image.shape[1]
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)
    flags[iy[:10], ix[:10]] = PhotFlag.COSMIC_RAY  # clean cores L.A.Cosmic took for hits
    hit_x, hit_y = ix[10:20] + 1, iy[10:20]
    image[hit_y, hit_x] += 30 * np.sqrt(SKY_VARIANCE + np.maximum(image[hit_y, hit_x], 0))
    flags[hit_y, hit_x] = PhotFlag.COSMIC_RAY
    hits, cleared = star_cosmic_rays(image, flags, x, y, 2.5, np.full(x.size, SKY_VARIANCE),
                                     psf=psf)
    assert set(cleared) == set(iy[:10] * nx + ix[:10])
    assert set(hit_y * nx + hit_x) <= set(hits)


def test_no_stars():
    hits, cleared = star_cosmic_rays(np.zeros((10, 10)), np.zeros((10, 10), np.uint16),
                                     np.zeros(0), np.zeros(0), 3.0, np.zeros(0))
    assert hits.size == 0 and cleared.size == 0
