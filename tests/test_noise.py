"""The background × Poisson noise model."""

import numpy as np
import pytest

from fcinv_widgets.analysis.noise import add_noise, noise_grid_levels
from fcinv_widgets.errors import FcinvError


@pytest.fixture(scope="module")
def clean(ge_fm):
    return ge_fm.spectra(ge_fm.reference_theta)[0]


def test_counts_are_poisson(rng):
    flat = np.full((200, 200), 0.5)
    flat[0, 0], flat[0, 1] = 1.0, 0.0  # peak 1 and floor 0: min-max leaves the level at 0.5
    B, P = 0.1, 200.0
    raw, _ = add_noise(flat, background=B, counts=P, rng=rng, rescale=False)
    x = raw[1:].astype(float)  # N/P with N ~ Poisson(P·(0.5 + B))
    assert x.mean() == pytest.approx(0.5 + B, rel=0.01)
    assert x.var() == pytest.approx((0.5 + B) / P, rel=0.05)
    assert np.allclose(x * P, np.round(x * P), atol=1e-3)  # integer counts


def test_snr_falls_with_background_and_rises_with_counts(clean, rng):
    grid = noise_grid_levels()
    snr = np.array([[add_noise(clean, lv.background, lv.counts, rng=rng)[1] for lv in row] for row in grid])
    assert np.all(np.diff(snr, axis=1) < 0)  # fewer counts → lower SNR
    assert np.all(np.diff(snr, axis=0) < 0)  # more background → lower SNR
    assert snr.shape == (5, 5)


def test_clean_limit_and_nan_preserved(clean, rng):
    same, snr = add_noise(clean, 0.0, None)
    assert np.allclose(same, clean, atol=1e-6) and np.isinf(snr)
    x = clean.astype(float).copy()
    x[:, 100:] = np.nan
    noisy, _ = add_noise(x, 0.1, 100.0, rng=rng)
    assert np.isnan(noisy[:, 100:]).all() and np.isfinite(noisy[:, :100]).all()
    assert np.nanmin(noisy) == 0.0 and np.nanmax(noisy) == pytest.approx(1.0)


def test_seeded(clean):
    a, _ = add_noise(clean, 0.1, 30.0, seed=3)
    b, _ = add_noise(clean, 0.1, 30.0, seed=3)
    assert np.array_equal(a, b)


def test_bad_inputs(clean):
    with pytest.raises(FcinvError, match="negative"):
        add_noise(clean - 0.5, 0.1, 10.0)
    with pytest.raises(FcinvError, match="all NaN"):
        add_noise(np.full((10, 10), np.nan), 0.1, 10.0)
    with pytest.raises(FcinvError, match="counts"):
        add_noise(clean, 0.1, -5.0)
    with pytest.raises(FcinvError, match="background"):
        add_noise(clean, -0.1, 5.0)
    with pytest.raises(FcinvError, match="inf"):
        add_noise(np.full((10, 10), np.inf), 0.1, 5.0)
