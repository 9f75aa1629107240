"""The orientation planner (issue 14): information per candidate, symmetry, bad input."""

import json

import numpy as np
import pytest

from fcinv_widgets.analysis.planner import (
    CoverageBank,
    coverage_bank,
    pixel_information,
    plan_orientations,
    simulate_union,
    union_of_scans,
)
from fcinv_widgets.errors import FcinvError


@pytest.fixture(scope="module")
def ge_info(ge, ge_fm):
    """Per-pixel information trace at the Ge reference (constant σ = 1 meV)."""
    G = pixel_information(ge_fm, ge.reference_theta, ge.domain)
    return np.einsum("paa->p", G)


def _bank(ge, masks):
    return CoverageBank(
        "Ge", 80.0, np.arange(len(masks)) * 10.0, np.asarray(masks, np.float32).reshape((len(masks),) + ge.grid.shape)
    )


@pytest.mark.parametrize("criterion", ["D", "A"])
def test_orientation_covering_the_informative_pixels_ranks_first(ge, ge_fm, ge_info, criterion):
    npix = ge_info.size
    order = np.argsort(ge_info)
    informative = order[-npix // 10 :]
    dead = np.flatnonzero(ge_info == 0)
    assert len(dead) > npix // 10  # pixels above every branch carry no information
    masks = np.zeros((4, npix))
    masks[0, dead[: npix // 10]] = 1.0
    masks[1, dead[npix // 10 : 2 * (npix // 10)]] = 1.0
    masks[2, informative] = 1.0  # the only orientation that sees the phonons
    masks[3, dead[-npix // 10 :]] = 1.0
    bank = _bank(ge, masks)
    plan = plan_orientations(bank, ge_fm, ge.reference_theta, ge.domain, n=2, criterion=criterion)
    assert plan.angles_deg[0] == 20.0
    assert plan.information[2] > 0 and np.all(np.abs(plan.information[[0, 1, 3]]) < 1e-9 * plan.information[2])
    # measuring it shrinks the predicted σ of every FC
    assert np.all(plan.predicted_sigma[0] < plan.current_sigma)


def test_more_counts_more_information(ge, ge_fm, ge_info):
    masks = np.ones((2, ge_info.size))
    bank = _bank(ge, masks)
    lo = plan_orientations(bank, ge_fm, ge.reference_theta, ge.domain, n=1, counts=50)
    hi = plan_orientations(bank, ge_fm, ge.reference_theta, ge.domain, n=1, counts=500)
    assert np.all(hi.predicted_sigma[0] < lo.predicted_sigma[0])
    # a second, identical scan is worth less than the first (diminishing returns)
    two = plan_orientations(bank, ge_fm, ge.reference_theta, ge.domain, n=2)
    assert two.gain[1] < two.gain[0]


def test_no_background_leaves_empty_pixels_without_information(ge, ge_fm, ge_info):
    """B = 0: a pixel with no intensity has Poisson variance 0 — no information (not 0/0; a
    derivative there is the finite difference reaching over a line shape's cut-off), session 27:
    NaN information and a NaN plan."""
    G = pixel_information(ge_fm, ge.reference_theta, ge.domain, background=0.0)
    tr = np.einsum("paa->p", G)
    assert np.all(np.isfinite(G))
    assert np.all(tr[ge_info == 0] == 0)  # pixels dead with a background stay dead
    lit = (tr > 0) & (ge_info > 0)
    assert lit.sum() > 0.9 * (ge_info > 0).sum() and np.all(tr[lit] >= ge_info[lit])  # less variance, more information
    plan = plan_orientations(_bank(ge, np.ones((2, ge_info.size))), ge_fm, ge.reference_theta, ge.domain, n=1, background=0.0)
    assert np.all(np.isfinite(plan.predicted_sigma[0])) and np.all(plan.predicted_sigma[0] > 0)


def test_symmetry_equivalent_orientations_score_the_same(ge, ge_fm):
    # u = [110] along the beam, v = [001]: the vertical axis is [1-10], a two-fold axis of m-3m,
    # so ω and ω + 180° see the same set of folded points
    bank = coverage_bank(ge, [17.0, 197.0, 60.0], 80.0, qmax=4.0, progress=False, cache=False)
    assert bank.exposure[0].sum() > 0
    np.testing.assert_array_equal(bank.exposure[0], bank.exposure[1])
    assert not np.array_equal(bank.exposure[0], bank.exposure[2])
    plan = plan_orientations(bank, ge_fm, ge.reference_theta, ge.domain, n=1)
    assert plan.information[0] == pytest.approx(plan.information[1], rel=1e-12)


def test_exposure_matches_the_scan_norm(ge):
    """orientation_exposure is the norm of orientation_image (same coverage rule)."""
    from fcinv_widgets.scans import DETECTOR, orientation_exposure, orientation_image, orientation_matrix
    from fcinv_widgets.sqe import SQE, fold_points, gaussians

    calc = SQE(ge.basis, ge.reference_params, temperature=5.0, dw_mesh=(2, 2, 2))
    pts = fold_points(calc, ge.grid, 3.5, ge.conventional_a)
    Gt = gaussians(pts.energies, ge.grid.e.centers, ei_mev=80.0).astype(np.float32)
    U0 = orientation_matrix()
    _, norm = orientation_image(pts, Gt, 33.0, 80.0, ge.grid, U0, DETECTOR)
    assert norm.sum() > 0
    np.testing.assert_array_equal(orientation_exposure(pts, 33.0, 80.0, ge.grid, U0, DETECTOR), norm)


def test_bank_round_trip_and_cache(ge, tmp_path, monkeypatch):
    monkeypatch.setenv("FCINV_CACHE", str(tmp_path))
    b1 = coverage_bank(ge, [0.0, 45.0], 80.0, qmax=3.0, progress=False)
    assert list((tmp_path / "coverage").glob("*.npz"))
    b2 = coverage_bank(ge, [0.0, 45.0], 80.0, qmax=3.0, progress=False)
    np.testing.assert_array_equal(b1.exposure, b2.exposure)
    b1.save(tmp_path / "b.npz")
    b3 = CoverageBank.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(b3.exposure, b1.exposure)
    assert b3.meta["qmax_inv_a"] == pytest.approx(3.0)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(FcinvError, match="coverage bank"):
        CoverageBank.load(tmp_path / "bad.npz")


def test_simulated_union_and_union_of_scans(ge, ge_fm, rng):
    masks = np.zeros((2, ge.grid.shape[0] * ge.grid.shape[1]))
    masks[0, :5000] = 2.0
    masks[1, 3000:9000] = 1.0
    bank = _bank(ge, masks)
    clean = ge_fm.spectra(ge.reference_theta)[0]
    img = simulate_union(clean, bank, [0, 1], background=0.0, counts=1e12, rng=rng)
    cov = masks.sum(0).reshape(ge.grid.shape) > 0
    assert np.isnan(img[~cov]).all()
    np.testing.assert_allclose(img[cov], clean[cov], atol=1e-4)
    s0 = np.where(masks[0].reshape(ge.grid.shape) > 0, clean, np.nan)
    s1 = np.where(masks[1].reshape(ge.grid.shape) > 0, 2 * clean, np.nan)
    u = union_of_scans([s0, s1], bank, [0.0, 10.0])
    both = (masks[0] > 0) & (masks[1] > 0)
    np.testing.assert_allclose(u.reshape(-1)[both], (2 * clean.reshape(-1)[both] + 2 * clean.reshape(-1)[both]) / 3, rtol=1e-5)


def test_bad_inputs(ge, ge_fm):
    bank = _bank(ge, np.ones((2, ge.grid.shape[0] * ge.grid.shape[1])))
    with pytest.raises(FcinvError, match="empty"):
        plan_orientations(bank, ge_fm, ge.reference_theta, ge.domain, candidates_deg=[])
    with pytest.raises(FcinvError, match="not in the coverage bank"):
        plan_orientations(bank, ge_fm, ge.reference_theta, ge.domain, candidates_deg=[5.0])
    with pytest.raises(FcinvError, match="criterion"):
        plan_orientations(bank, ge_fm, ge.reference_theta, ge.domain, criterion="E")
    with pytest.raises(FcinvError, match="finite"):
        plan_orientations(bank, ge_fm, np.full(8, np.nan), ge.domain)
    with pytest.raises(FcinvError, match="measured already"):
        plan_orientations(bank, ge_fm, ge.reference_theta, ge.domain, measured_deg=[0.0, 10.0])
    with pytest.raises(FcinvError):
        coverage_bank(ge, [400.0], 80.0, progress=False, cache=False)


def _cli(argv, capsys):
    from fcinv_widgets.cli import main

    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["--candidates", "10:10:1"], "empty"),
        (["--candidates", "400,410"], "360"),
        (["--n", "0"], "--n"),
        (["--ei", "50"], "Ei must be larger"),
    ],
)
def test_cli_bad_input(argv, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FCINV_CACHE", str(tmp_path))
    rc, out, err = _cli(["plan-scans", "--model", "ge-vae", "--ei", "80"] + argv, capsys)
    assert rc == 2
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_refuses_scans_of_another_material(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FCINV_CACHE", str(tmp_path))
    rc, out, err = _cli(
        [
            "scans",
            "--material",
            "Nb",
            "--ei",
            "60",
            "--angles",
            "0,30",
            "--qmax",
            "3",
            "--out",
            str(tmp_path / "nb.h5"),
            "--no-progress",
            "--json",
        ],
        capsys,
    )
    assert rc == 0, err
    rc, out, err = _cli(["plan-scans", "--model", "ge-vae", "--scans", str(tmp_path / "nb.h5"), "--json"], capsys)
    assert rc == 2 and "Nb" in err and "Ge" in err


def test_cli_plan_json(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FCINV_CACHE", str(tmp_path))
    rc, out, err = _cli(
        [
            "scans",
            "--material",
            "Ge",
            "--ei",
            "80",
            "--angles",
            "0,40",
            "--qmax",
            "3",
            "--out",
            str(tmp_path / "ge.h5"),
            "--no-progress",
            "--json",
        ],
        capsys,
    )
    assert rc == 0, err
    rc, out, err = _cli(
        [
            "plan-scans",
            "--model",
            "ge-vae",
            "--scans",
            str(tmp_path / "ge.h5"),
            "--candidates",
            "0:90:15",
            "--n",
            "2",
            "--no-progress",
            "--json",
            "--plot",
            str(tmp_path / "p.png"),
        ],
        capsys,
    )
    assert rc == 0, err
    d = json.loads(out)
    assert len(d["next_angles_deg"]) == 2 and set(d["next_angles_deg"]) <= {15.0, 30.0, 45.0, 60.0, 75.0}
    assert d["measured_deg"] == [0.0, 40.0]
    assert len(d["information"]) == 6 and (tmp_path / "p.png").stat().st_size > 1000


def test_align_turns_maps_candidates_onto_measured_orientations():
    from fcinv_widgets.scans import align_turns

    assert align_turns([-90.0, 0.0, 10.0, 400.0, 401.0], [270.0, 40.0, 10.0]).tolist() == [270.0, 0.0, 10.0, 40.0, 401.0]
    assert align_turns([-320.0], [40.0]).tolist() == [40.0]
    assert align_turns([], [40.0]).size == 0 and align_turns([5.0], []).tolist() == [5.0]


def test_check_angles_refuses_repeats_not_spans():
    from fcinv_widgets.scans import check_angles

    assert check_angles([-340.0, 0.0, 40.0]).tolist() == [-340.0, 0.0, 40.0]  # 380° apart, no repeat
    with pytest.raises(FcinvError, match="more than a full turn"):
        check_angles(np.arange(-180.0, 200.0, 10.0))
    with pytest.raises(FcinvError, match="listed more than once"):
        check_angles([-10.0, 350.0])


def test_cli_plan_candidate_written_as_another_turn_of_a_measured_angle(capsys, tmp_path, monkeypatch):
    """A candidate list in −360…0° around measured scans at 0° and 40° (−360° and −320° are those
    orientations): the plan treats them as measured, not as a duplicate input to refuse."""
    monkeypatch.setenv("FCINV_CACHE", str(tmp_path))
    rc, out, err = _cli(
        ["scans", "--material", "Ge", "--ei", "80", "--angles", "0,40", "--qmax", "3"]
        + ["--out", str(tmp_path / "ge.h5"), "--no-progress", "--json"],
        capsys,
    )
    assert rc == 0, err
    rc, out, err = _cli(
        ["plan-scans", "--model", "ge-vae", "--scans", str(tmp_path / "ge.h5"), "--candidates=-360:-300:20"]
        + ["--n", "2", "--no-progress", "--json"],
        capsys,
    )
    assert rc == 0, err
    d = json.loads(out)
    assert d["measured_deg"] == [0.0, 40.0]
    assert sorted(d["candidates_deg"]) == [-340.0, 0.0, 40.0]
    assert sorted(d["next_angles_deg"]) == [-340.0]  # the only orientation not yet measured


def test_model_criterion_plans_unmeasured_angles_reproducibly(ge):
    """criterion="model" (the inverse model's own expected error on simulated unions): n distinct
    unmeasured angles, finite positive-information scores, the same plan for the same seed, and
    a scan that adds nothing (no exposure) is never chosen."""
    from fcinv_widgets.models import load_model

    model = load_model("ge-vae")
    dom = np.asarray(model.config["domain"])
    fm = ge.forward_model(sigma_mev=1.0)
    est = np.clip(ge.reference_theta, dom[:, 0], dom[:, 1])
    real = coverage_bank(ge, [0.0, 60.0, 120.0], 80.0, qmax=3.0, progress=False, cache=False)
    bank = CoverageBank("Ge", 80.0, [0.0, 60.0, 120.0, 150.0], np.concatenate([real.exposure, 0 * real.exposure[:1]]), real.meta)

    def plan():
        return plan_orientations(bank, fm, est, dom, measured_deg=[60.0], n=2, criterion="model", model=model, n_samples=8)

    p = plan()
    assert len(p.angles_deg) == 2 and len(set(p.angles_deg.tolist())) == 2
    assert 60.0 not in p.angles_deg and 150.0 not in p.angles_deg
    assert np.all(np.isfinite(p.gain)) and np.all(np.isfinite(p.predicted_sigma))
    assert np.array_equal(plan().angles_deg, p.angles_deg) and np.allclose(plan().gain, p.gain)
    with pytest.raises(FcinvError, match="zero exposure"):  # only a scan that records nothing is left
        plan_orientations(bank, fm, est, dom, measured_deg=[60.0], candidates_deg=[150.0], n=1)


def test_model_criterion_sizes_a_one_scan_union_by_the_single_scan_calibration(ge, monkeypatch):
    """The model criterion's σ on a simulated union of one orientation comes from the model's
    single-scan calibration ("measured-scan"), on a union of several from the "measured" one."""
    from fcinv_widgets.models import load_model

    model = load_model("ge-vae")
    dom = np.asarray(model.config["domain"])
    fm = ge.forward_model(sigma_mev=1.0)
    est = np.clip(ge.reference_theta, dom[:, 0], dom[:, 1])
    bank = coverage_bank(ge, [0.0, 60.0, 120.0], 80.0, qmax=3.0, progress=False, cache=False)
    seen = []
    real_predict = model.predict

    def spy(x, **kw):
        seen.append((len(x), kw["sigma_regime"]))
        return real_predict(x, **kw)

    monkeypatch.setattr(model, "predict", spy)
    plan_orientations(bank, fm, est, dom, measured_deg=[], n=2, criterion="model", model=model, n_samples=4)
    assert seen == [(3, "measured-scan"), (2, "measured")]  # 3 one-scan candidates, then 2 two-scan unions
    seen.clear()
    plan_orientations(bank, fm, est, dom, measured_deg=[60.0], n=1, criterion="model", model=model, n_samples=4)
    assert seen == [(1, "measured-scan"), (2, "measured")]  # the measured scan alone, then 60° + each candidate


def test_plan_table_keeps_whole_names():
    """The text table of a plan prints every focus FC's whole name in aligned columns (names of a crystal
    of several species, "FC0 (1NN Cu-Pt zz)", were cut at 14 characters)."""
    from fcinv_widgets.analysis.planner import Plan

    names = ["FC0 (1NN Cu-Pt zz)", "FC1 (1NN Cu-Pt xx)", "FC2 (3NN(a) Cu-Cu xx)", "FC3 (1NN Pt-Pt xx)"]
    plan = Plan(
        angles_deg=np.array([0.0, 30.0]),
        gain=np.array([1.0, 0.5]),
        predicted_sigma=np.full((2, 4), 0.01),
        information=np.zeros(3),
        candidates_deg=np.array([0.0, 30.0, 60.0]),
        current_sigma=np.full(4, 0.02),
        estimate=np.zeros(4),
        names=names,
        criterion="D",
        measured_deg=np.array([]),
    )
    *lines, note = plan.table().splitlines()
    assert all(n in lines[0] for n in names)
    assert len({len(line) for line in lines}) == 1  # aligned
    assert "eV/Å²" in note and "Cramér–Rao" in note  # what σ is (session 51: printed without a unit)
