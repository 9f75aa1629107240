"""Stage I ensemble: registry, real uMLFF calculators on small supercells, a tiny self-built
MACE model, HDF5 round trip, Dask LocalCluster == serial, training-domain rule, CLI.

Real-model tests need the ``ensemble`` extra (see docs/ensemble.md); they are skipped with a
reason when a package is missing. matgl weights come from ``../shared/models/matgl``
(``FCINV_MATGL_MODELS`` overrides); the package itself never reads that folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from fcinv_widgets.ensemble import calculators as C
from fcinv_widgets.errors import FcinvError, MissingDependencyError

pytestmark = pytest.mark.ensemble

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

REPO = HERE.parents[1]
MATGL_DIR = Path(os.environ.get("FCINV_MATGL_MODELS", REPO.parent / "shared" / "models" / "matgl"))
if not MATGL_DIR.is_dir():  # CI runs in a fresh clone with shared/ beside it
    for cand in (REPO / "shared" / "models" / "matgl", Path("/work/shared/models/matgl")):
        if cand.is_dir():
            MATGL_DIR = cand
            break
M3GNET = MATGL_DIR / "M3GNet-MP-2021.2.8-PES"


def _has(pkg):
    return importlib.util.find_spec(pkg) is not None


needs_chgnet = pytest.mark.skipif(not _has("chgnet"), reason="chgnet not installed (extra 'ensemble')")
needs_sevenn = pytest.mark.skipif(not _has("sevenn"), reason="sevenn not installed (extra 'ensemble')")
needs_matgl = pytest.mark.skipif(
    not _has("matgl") or not M3GNET.is_dir(), reason=f"matgl not installed or no model folder at {M3GNET}"
)
needs_mace = pytest.mark.skipif(not _has("mace") or not _has("e3nn"), reason="mace-torch not installed (extra 'ensemble')")
needs_dask = pytest.mark.skipif(not _has("distributed"), reason="dask.distributed not installed")


@pytest.fixture(scope="module")
def ge():
    from fcinv_widgets import materials

    return materials.get_material("Ge")


SMALL = np.diag([2, 2, 2])  # 16-atom supercell of the Ge primitive cell: small and fast


# ------------------------------------------------------------------------------ registry
def test_registry_lists_models_and_skips_in_one_line(monkeypatch, tmp_path):
    specs = C.available_models(matgl_paths=[tmp_path / "nothing-here"], mace_models=[tmp_path / "missing.model"])
    names = [s.name for s in specs]
    assert {"CHGNet-0.3.0", "CHGNet-0.2.0", "CHGNet-r2scan"} <= set(names)
    assert {"SevenNet-0-11Jul2024", "SevenNet-0-22May2024", "SevenNet-l3i5", "SevenNet-MF-0-PBE", "SevenNet-MF-0-R2SCAN"} <= set(
        names
    )
    bad = [s for s in specs if s.family in ("matgl", "mace")]
    assert len(bad) == 2 and all(s.status == C.SKIPPED for s in bad)
    for s in bad:
        assert "\n" not in s.reason and s.reason
        with pytest.raises(MissingDependencyError, match="skipped"):
            C.get_calculator(s)
    # a family that is not installed: every submodel skipped with one clear line
    real = C._package_dir
    monkeypatch.setattr(C, "_package_dir", lambda pkg: None if pkg in ("chgnet", "sevenn") else real(pkg))
    specs = C.available_models()
    assert specs and all(s.status == C.SKIPPED and "not installed" in s.reason for s in specs)
    with pytest.raises(MissingDependencyError):
        C.get_calculator("CHGNet-0.3.0")
    with pytest.raises(FcinvError, match="unknown model"):
        C.get_calculator("no-such-model")


def test_cli_list_json(capsys, tmp_path):
    from fcinv_widgets.cli import main

    assert main(["ensemble", "--list", "--json", "--mace", str(tmp_path / "x.model")]) == 0
    out = json.loads(capsys.readouterr().out)
    fams = {m["family"] for m in out["models"]}
    assert {"chgnet", "sevenn", "mace"} <= fams
    assert main(["ensemble", "--material", "Ge"]) == 2  # no --out: one-line error, no traceback
    assert "error" in capsys.readouterr().err
    assert main(["ensemble", "--list", "--matgl-path", str(tmp_path / "nope")]) == 2


@needs_matgl
def test_matgl_by_name_fails_fast_offline(monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = [s for s in C.available_models(matgl_names=["M3GNet-MP-2021.2.8-PES"]) if s.family == "matgl"][0]
    t = time.perf_counter()
    with pytest.raises(MissingDependencyError, match="--matgl-path"):
        C.get_calculator(spec)
    assert time.perf_counter() - t < 30


# ------------------------------------------------------------------------------ real models
def _check_fcset(r, n_super=16):
    assert r["status"] == "ok", r["reason"]
    fc = r["force_constants"]
    assert fc.shape == (2, n_super, 3, 3) and np.all(np.isfinite(fc))
    assert np.abs(fc.sum(axis=1)).max() < 1e-8  # acoustic sum rule after symmetrisation
    assert r["dispersion_thz"].shape[1] == 6
    return fc


def _gamma_optic(r):
    return float(r["dispersion_thz"][0].max())


@needs_chgnet
def test_chgnet_real_forces(ge):
    from fcinv_widgets.ensemble.fcsets import compute_fcset

    spec = C.find_spec("CHGNet-0.2.0", C.available_models())
    r = compute_fcset(spec, ge.crystal, SMALL, ge.grid.q.qpoints[:1], mesh=(2, 2, 2))
    _check_fcset(r)
    assert 6.5 < _gamma_optic(r) < 8.5  # CHGNet 0.2.0 Ge Γ optic ≈ 7.6 THz (notes/facts.md)
    assert r["package_version"] == C.package_version("chgnet")


@needs_sevenn
def test_sevennet_real_forces(ge):
    from fcinv_widgets.ensemble.fcsets import compute_fcset

    spec = C.find_spec("SevenNet-0-11Jul2024", C.available_models())
    r = compute_fcset(spec, ge.crystal, SMALL, ge.grid.q.qpoints[:1], mesh=(2, 2, 2))
    _check_fcset(r)
    assert 5.5 < _gamma_optic(r) < 7.5  # SevenNet-0 ≈ 6.4 THz


@needs_matgl
def test_matgl_real_forces_from_folder(ge):
    from fcinv_widgets.ensemble.fcsets import compute_fcset

    spec = [s for s in C.available_models(matgl_paths=[M3GNET]) if s.family == "matgl"][0]
    assert spec.available and spec.name == "matgl:M3GNet-MP-2021.2.8-PES"
    r = compute_fcset(spec, ge.crystal, SMALL, ge.grid.q.qpoints[:1], mesh=(2, 2, 2))
    _check_fcset(r)
    assert 3.5 < _gamma_optic(r) < 6.0  # M3GNet-MP-2021 ≈ 4.65 THz


@needs_mace
def test_tiny_mace_model_through_registry_path(ge, tmp_path):
    from _tinymace import save_tiny_mace

    from fcinv_widgets.ensemble.fcsets import compute_fcset

    path = save_tiny_mace(tmp_path / "tiny.model")
    spec = [s for s in C.available_models(mace_models=[path], trust_mace_files=True) if s.family == "mace"][0]
    assert spec.available and spec.name == "mace:tiny"
    calc = C.get_calculator(spec)
    atoms = ge.crystal.to_ase().repeat(2)
    atoms.rattle(0.02, seed=1)
    atoms.calc = calc
    f = atoms.get_forces()
    assert f.shape == (16, 3) and np.all(np.isfinite(f)) and np.abs(f).max() > 0
    assert np.abs(f.sum(axis=0)).max() < 1e-8  # a conservative, translation-invariant potential
    r = compute_fcset(spec, ge.crystal, SMALL, None, mesh=(2, 2, 2))
    assert r["status"] == "ok", r["reason"]
    assert r["force_constants"].shape == (2, 16, 3, 3)


# ------------------------------------------------------------------------------ HDF5, Dask
@pytest.fixture(scope="module")
def two_models():
    specs = C.available_models(matgl_paths=[M3GNET] if M3GNET.is_dir() else [])
    chosen = [s for s in specs if s.name in ("CHGNet-0.2.0", "matgl:M3GNet-MP-2021.2.8-PES") and s.available]
    if not chosen:
        pytest.skip("neither CHGNet nor matgl installed")
    return chosen


@pytest.fixture(scope="module")
def serial_results(ge, two_models):
    from fcinv_widgets.ensemble.fcsets import run_ensemble

    return run_ensemble(two_models, ge.crystal, SMALL, ge.grid.q.qpoints[::10], mesh=(4, 4, 4), executor="serial", progress=False)


def test_hdf5_round_trip(ge, serial_results, tmp_path):
    from fcinv_widgets.ensemble.fcsets import read_ensemble_h5, write_ensemble_h5

    skipped = {
        "name": "mace:x",
        "family": "mace",
        "status": "skipped",
        "stable": False,
        "reason": "MACE model file x not found",
        "timings": {},
    }
    results = serial_results + [skipped]
    path = tmp_path / "e.h5"
    proj = {
        "domain": np.arange(16.0).reshape(8, 2),
        "active_names": ["1NN xx"] * 8,
        "reference_all_inside": False,
        "reference_outside": [{"param": "1NN xx", "value": -2.9}],
        "widening": {"low": 0.25, "high": 1.5},
    }
    write_ensemble_h5(path, results, "Ge", ge.crystal, SMALL, ge.grid.q.qpoints[::10], settings={"relax": False}, projection=proj)
    back = read_ensemble_h5(path)
    np.testing.assert_array_equal(back["projection"]["domain"], proj["domain"])
    assert back["projection"]["reference_outside"] == proj["reference_outside"]
    assert back["projection"]["active_names"] == proj["active_names"] and back["projection"]["reference_all_inside"] is False
    assert back["attrs"]["format"] == "fcinv-ensemble" and back["attrs"]["material"] == "Ge"
    assert json.loads(back["attrs"]["package_versions"])["phonopy"]
    assert [m["name"] for m in back["models"]] == [r["name"] for r in results]
    for r, m in zip(results, back["models"]):
        assert m["status"] == r["status"] and bool(m["stable"]) == bool(r["stable"]) and m["reason"] == r["reason"]
        if r["status"] == "ok":
            np.testing.assert_array_equal(m["force_constants"], r["force_constants"])
            np.testing.assert_array_equal(m["supercell_matrix"], SMALL)
            assert m["displacement"] == 0.01
            assert abs(m["lattice_constant"] - ge.conventional_a) < 1e-9
            assert m["package_versions"]["torch"]
    np.testing.assert_array_equal(back["structure"]["lattice"], ge.crystal.lattice)
    with pytest.raises(FcinvError):
        read_ensemble_h5(tmp_path / "absent.h5")


@needs_dask
def test_dask_localcluster_equals_serial(ge, two_models, serial_results, tmp_path):
    from dask.distributed import Client, LocalCluster

    from fcinv_widgets.ensemble.fcsets import run_ensemble

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40) as cl,
        Client(cl) as client,
    ):
        res = run_ensemble(two_models, ge.crystal, SMALL, ge.grid.q.qpoints[::10], mesh=(4, 4, 4), client=client, progress=False)
        pids = {r["pid"] for r in res}
        # the command line on the same cluster through --scheduler ADDRESS
        from fcinv_widgets.cli import main
        from fcinv_widgets.ensemble.fcsets import read_ensemble_h5

        out = tmp_path / "cli.h5"
        args = [
            "ensemble",
            "--material",
            "Ge",
            "--models",
            two_models[0].name,
            "--supercell",
            "2",
            "2",
            "2",
            "--mesh",
            "2",
            "2",
            "2",
            "--scheduler",
            cl.scheduler_address,
            "--out",
            str(out),
            "--json",
        ]
        if M3GNET.is_dir():
            args += ["--matgl-path", str(M3GNET)]
        assert main(args) == 0
        back = read_ensemble_h5(out)
        assert [m["name"] for m in back["models"]] == [two_models[0].name] and back["models"][0]["status"] == "ok"
        assert "projection" not in back  # not the material's supercell: FCs stored, not projected
    assert pids and os.getpid() not in pids  # really ran in worker processes
    for a, b in zip(serial_results, res):
        assert a["name"] == b["name"] and b["status"] == "ok" and a["stable"] == b["stable"]
        np.testing.assert_allclose(b["force_constants"], a["force_constants"], atol=1e-6)
        np.testing.assert_allclose(b["dispersion_thz"], a["dispersion_thz"], atol=1e-4)


def test_projection_domain_and_figures_small_supercell(ge, serial_results, tmp_path):
    """Real FCs of the small supercell → basis → domain → HDF5 → figures."""
    import copy

    from fcinv_widgets.basis import FCBasis
    from fcinv_widgets.ensemble.domain import project_results, training_domain
    from fcinv_widgets.ensemble.fcsets import read_ensemble_h5, write_ensemble_h5
    from fcinv_widgets.ensemble.plots import save_figures

    results = copy.deepcopy(serial_results)
    for r in results:
        r["stable"] = True  # the 2×2×2 toy may be unstable: only the plumbing is tested here
    basis = FCBasis(ge.crystal, SMALL)
    project_results(results, basis)
    for r in results:
        assert r["projection_residual"]["relative"] < 1e-8
    n = min(8, basis.n_params)
    dom = training_domain(results, basis, ge.grid.q.qpoints[::10], n_active=n)
    path = tmp_path / "small.h5"
    write_ensemble_h5(
        path, results, "Ge", ge.crystal, SMALL, ge.grid.q.qpoints[::10], np.arange(14.0), [[0, "Γ"], [4, "X"]], projection=dom
    )
    figs = save_figures(read_ensemble_h5(path), tmp_path / "fig")
    assert len(figs) == 3 and all(Path(f).stat().st_size > 1000 for f in figs)


# ------------------------------------------------------------------------------ domain
def test_supercell_for_length(ge):
    from fcinv_widgets.ensemble.fcsets import supercell_for_length

    a = np.linalg.norm(ge.crystal.lattice[0])  # 3.99 Å
    np.testing.assert_array_equal(supercell_for_length(ge.crystal.lattice, 15.0), np.diag([4, 4, 4]))
    np.testing.assert_array_equal(supercell_for_length(ge.crystal.lattice, 2 * a), np.diag([2, 2, 2]))


def test_widen_rule():
    from fcinv_widgets.ensemble.domain import widen

    d = widen([-3.0, 0.1], [-2.0, 0.3])
    np.testing.assert_allclose(d, [[-3.25, -0.5], [0.05, 0.6]])
    d = widen([-3.0, 0.1], [-2.0, 0.3], mode="magnitude")  # alternative reading: 150 % away from zero
    np.testing.assert_allclose(d, [[-4.5, -1.75], [0.05, 0.6]])
    with pytest.raises(FcinvError):
        widen([0.0], [1.0], mode="other")


def test_training_domain_on_ge_basis(ge):
    """Synthetic ensemble around the DFT parameters: median, top-8, widened domain, reference check."""
    from fcinv_widgets.ensemble.domain import project_results, training_domain

    basis = ge.basis
    dft = ge.dft_params
    scales = [0.7, 0.8, 0.9, 0.75]
    results = [{"name": f"m{k}", "stable": True, "force_constants": basis.expand(s * dft)} for k, s in enumerate(scales)]
    results.append({"name": "unstable", "stable": False, "force_constants": basis.expand(0.1 * dft)})
    project_results(results, basis)
    np.testing.assert_allclose(results[0]["params"], 0.7 * dft, atol=1e-10)
    dom = training_domain(results, basis, ge.grid.q.qpoints[::7], dft_params=dft)
    assert dom["models_used"] == ["m0", "m1", "m2", "m3"]
    np.testing.assert_allclose(dom["reference_params"], np.median(np.outer(scales, dft), axis=0))
    a = dom["active"]
    assert len(a) == 8 and len(set(a)) == 8
    lo, hi = np.minimum(0.7 * dft[a], 0.9 * dft[a]), np.maximum(0.7 * dft[a], 0.9 * dft[a])
    np.testing.assert_allclose(dom["domain"][:, 0], lo - 0.25 * (hi - lo))
    np.testing.assert_allclose(dom["domain"][:, 1], hi + 1.5 * (hi - lo))
    assert not dom["reference_all_inside"]  # DFT (scale 1) is stiffer than every member here
    dom2 = training_domain(results, basis, ge.grid.q.qpoints[::7], reference_fcsets={"dft": dft}, dft_params=dft)
    assert dom2["reference_all_inside"] and "dft" in dom2["models_used"]
    with pytest.raises(FcinvError, match="no stable"):
        training_domain(results[-1:], basis, ge.grid.q.qpoints[::7])
    # session 50 (notebook 02 on Binder, no uMLFF installed): the DFT set alone gave a zero-width domain
    with pytest.raises(FcinvError, match=r"only one stable force-constant set \(dft\)"):
        training_domain([], basis, ge.grid.q.qpoints[::7], reference_fcsets={"dft": dft})


def test_shipped_summaries_are_consistent():
    from fcinv_widgets import materials

    for name in ("ge", "nb"):
        p = materials.data_path("ensemble", f"{name}.json")
        if not p.is_file():
            pytest.skip(f"{p} not shipped yet")
        s = json.loads(p.read_text())
        mat = materials.get_material(name)
        n = mat.basis.n_params
        assert len(s["reference_params"]) == n and len(s["param_names"]) == n
        assert len(s["active"]) == 8 and np.asarray(s["domain"]).shape == (8, 2)
        used = [m for m in s["models"] if m["stable"]]
        assert {m["name"] for m in used} <= set(s["models_used"])
        P = np.array([m["params"] for m in s["models"] if m["name"] in s["models_used"]])
        lo, hi = P[:, s["active"]].min(0), P[:, s["active"]].max(0)
        np.testing.assert_allclose(
            np.asarray(s["domain"]), np.stack([lo - 0.25 * (hi - lo), hi + 1.5 * (hi - lo)], 1), atol=1e-12
        )
        np.testing.assert_allclose(s["reference_params"], np.median(P, axis=0), atol=1e-12)
