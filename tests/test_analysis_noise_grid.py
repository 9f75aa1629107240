"""The noise grid with a simple, real predictor (ridge regression on the clean training set)."""

import re

import numpy as np
import pytest

from fcinv_widgets.analysis.noise_grid import NoiseGridResult, plot_noise_grid, r2_score, run_noise_grid


@pytest.fixture(scope="module")
def data(ge_fm, ge):
    rng = np.random.default_rng(0)
    lo, hi = ge.domain.T
    th = rng.uniform(lo, hi, size=(6000, 8))
    th = th[ge_fm.is_stable(th)][:240]
    x = ge_fm.spectra(th)
    return x, th


class Ridge:
    """Ridge regression on 4×4-pooled images: a small real model for the test."""

    def __init__(self, x, y, lam=1e-2):
        f = self._feat(x)
        self.mu, self.sd = y.mean(0), y.std(0)
        A = f.T @ f + lam * np.eye(f.shape[1])
        self.w = np.linalg.solve(A, f.T @ ((y - self.mu) / self.sd))

    @staticmethod
    def _feat(x):
        x = np.nan_to_num(np.asarray(x, float))
        n, a, b = x.shape
        p = x[:, : a // 4 * 4, : b // 4 * 4].reshape(n, a // 4, 4, b // 4, 4).mean((2, 4)).reshape(n, -1)
        return np.hstack([p, np.ones((n, 1))])

    def __call__(self, x):
        return self._feat(x) @ self.w * self.sd + self.mu


def test_r2_score():
    y = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 9.0]])
    assert np.allclose(r2_score(y, y), 1.0)
    assert np.allclose(r2_score(y, np.repeat(y.mean(0, keepdims=True), 3, 0)), 0.0)


def test_grid_degrades_with_noise_and_round_trips(data, tmp_path, ge):
    x, th = data
    model = Ridge(x[:160], th[:160])
    names = ge.forward_model().names
    res = run_noise_grid(model, x[160:], th[160:], names, backgrounds=(0.0, 0.2, 0.8), counts=(1000.0, 30.0, 3.0), progress=False)
    assert res.r2.shape == (3, 3, 8) and res.examples.shape == (3, 3, 140, 140)
    fc0 = res.r2[:, :, 0]
    assert fc0[0, 0] > 0.5  # the first-neighbour term is learnable even by ridge regression
    assert fc0[-1, -1] < fc0[0, 0]  # and the heaviest noise hurts
    assert np.all(np.diff(res.snr, axis=1) < 0) and np.all(np.diff(res.snr, axis=0) < 0)
    res.save(tmp_path / "g.h5")
    back = NoiseGridResult.load(tmp_path / "g.h5")
    assert np.array_equal(back.r2, res.r2, equal_nan=True) and back.names == names
    assert "R²" in res.table(0)
    fig = plot_noise_grid(res)
    fig.savefig(tmp_path / "grid.png")


def test_dask_cells_equal_local(data, ge):
    from dask.distributed import Client, LocalCluster

    x, th = data
    model = Ridge(x[:160], th[:160])
    names = ge.forward_model().names
    kw = dict(backgrounds=(0.0, 0.3), counts=(100.0, 10.0), progress=False, seed=5)
    local = run_noise_grid(model, x[160:200], th[160:200], names, **kw)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c, Client(c) as client:
        remote = run_noise_grid(model, x[160:200], th[160:200], names, scheduler=client, **kw)
    assert np.allclose(local.r2, remote.r2, equal_nan=True)


def test_coverage_per_cell_with_sigma(data, tmp_path, ge):
    """A predictor returning (mean, σ): every cell records ±1σ/±2σ coverage. With σ = the clean
    held-out residual RMS, coverage is near 68/95 % where the noise is light and drops where it
    is heavy."""
    x, th = data
    model = Ridge(x[:120], th[:120])
    rms = np.sqrt(((model(x[120:160]) - th[120:160]) ** 2).mean(0))

    def predict(s):
        m = model(s)
        return m, np.broadcast_to(rms, m.shape)

    names = ge.forward_model().names
    res = run_noise_grid(predict, x[160:], th[160:], names, backgrounds=(0.0, 0.8), counts=(1000.0, 3.0), progress=False)
    assert res.cov1.shape == (2, 2, 8) and np.all(res.cov1 <= res.cov2)
    assert 0.45 < res.cov1[0, 0].mean() and res.cov2[0, 0].mean() > 0.8  # held-out RMS: roughly calibrated
    assert res.cov1[-1, -1, 0] < res.cov1[0, 0, 0]  # heavy noise: the clean σ is too small
    res.save(tmp_path / "g.h5")
    back = NoiseGridResult.load(tmp_path / "g.h5")
    assert np.array_equal(back.cov2, res.cov2)
    assert "±1σ coverage" in res.coverage_table(0)
    plot_noise_grid(res, what="cov1").savefig(tmp_path / "cov.png")
    no_sigma = run_noise_grid(model, x[160:170], th[160:170], names, backgrounds=(0.0,), counts=(100.0,), progress=False)
    assert no_sigma.cov1 is None and "no coverage" in no_sigma.coverage_table(0)


def test_what_the_grid_cannot_score_is_said(data, ge):
    """Session 49's widgets probe: one test spectrum gave an all-NaN grid without a word, a predict of
    the wrong width a raw numpy broadcast error, a NaN prediction a NaN cell. Now one line each; a
    constant FC (R² undefined, NaN by definition) is warned about."""
    from fcinv_widgets.errors import FcinvError, FcinvWarning

    x, th = data
    model = Ridge(x[:120], th[:120])
    names = ge.forward_model().names
    kw = dict(backgrounds=(0.1,), counts=(100.0,), progress=False)
    with pytest.raises(FcinvError, match="at least 2 test spectra"):
        run_noise_grid(model, x[160:161], th[160:161], names, **kw)
    with pytest.raises(FcinvError, match=r"predictions of shape \(10, 7\), expected \(10, 8\)"):
        run_noise_grid(lambda s: model(s)[:, :7], x[160:170], th[160:170], names, **kw)
    with pytest.raises(FcinvError, match=r"σ of shape \(8,\)"):
        run_noise_grid(lambda s: (model(s), np.ones(8)), x[160:170], th[160:170], names, **kw)

    def nan_for_one(s):
        m = model(s)
        m[3, 2] = np.nan
        return m

    with pytest.raises(FcinvError, match="NaN or inf predictions for 1 of 10 spectra at B = 0.1, P = 100"):
        run_noise_grid(nan_for_one, x[160:170], th[160:170], names, **kw)
    flat = th[160:170].copy()
    flat[:, 5] = flat[0, 5]
    with pytest.warns(FcinvWarning, match=re.escape(f"{names[5]} is the same in every test spectrum")):
        res = run_noise_grid(model, x[160:170], flat, names, **kw)
    assert np.isnan(res.r2[0, 0, 5]) and np.isfinite(np.delete(res.r2[0, 0], 5)).all()
