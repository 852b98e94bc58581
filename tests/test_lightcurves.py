import numpy as np
import pytest

from opticam_like.flags import PhotFlag
from opticam_like.lightcurves import relative_flux, select_comparisons


def _fluxes(n=4000, seed=2):
    rng = np.random.default_rng(seed)
    true = np.array([5e5, 2e5, 1e5, 5e4, 2e4])
    transparency = 1 + 0.2 * np.sin(np.arange(n) / 300)
    variable = 1 + 0.05 * np.sin(np.arange(n) / 17)
    model = true * transparency[:, None]
    model[:, 2] *= variable
    err = np.sqrt(model + 30 * 200.0)
    flux = rng.normal(model, err)
    return flux, err, np.zeros(flux.shape, np.int32), variable


def test_relative_flux_removes_transparency_and_errors_match_scatter():
    flux, err, flags, variable = _fluxes()
    rel, rel_err, rel_flags, weights = relative_flux(flux, err, flags, 4, [0, 1, 3])
    assert np.isclose(weights.sum(), 1) and weights[0] > weights[1] > weights[2]
    assert np.median(rel) == pytest.approx(1.0, abs=1e-12)
    # constant star: scatter equals the propagated error
    assert np.std(rel) / np.median(rel_err) == pytest.approx(1.0, abs=0.05)
    rel, _, _, _ = relative_flux(flux, err, flags, 2, [0, 1, 3])
    residual = rel / np.median(rel) - variable / np.median(variable)
    assert np.std(residual) < 0.005 and abs(np.mean(residual)) < 1e-3


def test_flags_and_errors():
    flux, err, flags, _ = _fluxes(200)
    flags[10, 1] = PhotFlag.SATURATED
    flux[20, 4] = np.nan
    _, _, rel_flags, _ = relative_flux(flux, err, flags, 4, [0, 1])
    assert rel_flags[10] == PhotFlag.SATURATED
    assert rel_flags[20] & PhotFlag.FRAME_REJECTED
    with pytest.raises(ValueError, match="target"):
        relative_flux(flux, err, flags, 1, [1, 2])
    with pytest.raises(ValueError, match="not in the catalogue"):
        relative_flux(flux, err, flags, 1, [9])


def test_select_comparisons_drops_the_variable():
    flux, err, flags, _ = _fluxes()
    chosen = select_comparisons(flux, err, flags, target=4, max_comparisons=3)
    assert 2 not in chosen and set(chosen) == {0, 1, 3}
