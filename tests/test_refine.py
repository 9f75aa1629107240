"""Iterative refinement recovers the FCs of a clean simulated spectrum."""

import json

import numpy as np
import pytest

from fcinv_widgets.analysis.refine import refine
from fcinv_widgets.errors import FcinvError


def _stable_sample(fm, rng, lo, hi):
    while True:
        th = rng.uniform(lo, hi)
        if fm.is_stable(th)[0]:
            return th


def test_recovers_clean_fcs_to_one_percent(ge, ge_fm, rng):
    lo, hi = ge.domain.T
    true = _stable_sample(ge_fm, rng, lo, hi)
    img = ge_fm.spectra(true)[0]
    start = true + 0.1 * (hi - lo) * rng.normal(size=8)
    r = refine(ge_fm, img, start=start, domain=ge.domain)
    assert r.misfit < 1e-3 * r.misfit_start
    assert np.all(np.abs(r.params - true) < 0.01 * np.abs(true))
    assert r.stable


def test_fits_only_covered_pixels(ge, ge_fm, rng):
    lo, hi = ge.domain.T
    true = _stable_sample(ge_fm, rng, lo, hi)
    img = ge_fm.spectra(true)[0].astype(float)
    img[:, 100:] = np.nan  # energies above 50 meV not measured
    img[60:80] = np.nan  # a stretch of the path not covered
    r = refine(ge_fm, img, start=true + 0.02 * (hi - lo), domain=ge.domain)
    assert np.all(np.abs(r.params[:4] - true[:4]) < 0.01 * np.abs(true[:4]))


def test_bad_spectra(ge_fm):
    with pytest.raises(FcinvError, match="no covered"):
        refine(ge_fm, np.full((140, 140), np.nan))
    with pytest.raises(FcinvError, match="shape"):
        refine(ge_fm, np.zeros((140, 100)))


def test_cli(tmp_path, capsys, ge):
    from fcinv_widgets.cli import main

    p = tmp_path / "s.h5"
    assert main(["simulate", "--material", "Ge", "--out", str(p)]) == 0
    capsys.readouterr()
    assert main(["refine", "--material", "Ge", "--spectrum", str(p), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert np.allclose(d["fc"], ge.reference_theta, rtol=1e-3)


def test_wall_keeps_a_mismatched_fit_near_the_domain(ge, ge_fm):
    """A spectrum the model cannot explain (random pixels) must not drive the fit far outside the domain."""
    lo, hi = ge.domain.T
    junk = np.random.default_rng(3).random((140, 140))
    r = refine(ge_fm, junk, start=ge_fm.reference_theta, domain=ge.domain, max_iter=60)
    w = hi - lo
    assert np.all(r.params > lo - 0.2 * w) and np.all(r.params < hi + 0.2 * w)
