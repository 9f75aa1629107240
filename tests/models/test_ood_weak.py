"""Weak data — too little structure above the counting noise for the OOD check to tell the crystal
(session 19) — and the refit's background at the temperature an S(Q,E) input was corrected at."""

import numpy as np
import pytest

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def ge_sqe():
    """Ge's one-phonon S(Q,E) at its reference FCs on its own path (|Q| ≤ 4 Å⁻¹, Ei 80 meV), no
    noise, at 5 K and at 300 K."""
    from fcinv_widgets import get_material
    from fcinv_widgets.sqe import SQE, fold_full, fold_points

    ge = get_material("Ge")
    out = {}
    for t in (5.0, 300.0):
        calc = SQE(ge.basis, np.asarray(ge.reference_params, float), temperature=t)
        out[t] = fold_full(fold_points(calc, ge.grid, 4.0, ge.conventional_a), ge.grid, sigma_mev=1.0, ei_mev=80.0)[0]
    return ge, out


def _measured(ge, img, temp, b, p, seed):
    """The S(Q,E) with a flat background B and P counts at its 99.5th percentile, corrected by
    E/(n+1) at ``temp`` as ``prepare_input`` corrects such a file."""
    from fcinv_widgets.analysis.expio import to_model_intensity
    from fcinv_widgets.noise import add_noise

    noisy, _ = add_noise(img, b, p, seed=seed, peak_percentile=99.5)
    return to_model_intensity(noisy, ge.grid, temp, 99.5)


def test_structure_to_noise_tells_data_from_noise():
    """Model images (clean, and noisy at the noise grid's harshest operating cell B = 0.2, P = 30)
    rise far above their noise; uniform noise and Poisson counts of a flat background do not."""
    from fcinv_widgets.materials import material_for_model
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import MIN_STRUCTURE_TO_NOISE, noisy_copies, structure_to_noise

    model = load_model("ge-vae")
    mat = material_for_model(model.config)
    fm = mat.forward_model()
    dom = np.asarray(model.config["domain"], float)
    theta = dom[:, 0] + np.random.default_rng(3).random((40, len(dom))) * (dom[:, 1] - dom[:, 0])
    clean = fm.spectra(theta[fm.is_stable(theta)][:12]).astype(float)
    assert (structure_to_noise(model, clean) > 50 * MIN_STRUCTURE_TO_NOISE).all()
    worst, _ = noisy_copies(clean, levels=[(0.2, 30.0)], seed=1)
    assert (structure_to_noise(model, worst) > 5 * MIN_STRUCTURE_TO_NOISE).all()
    rng = np.random.default_rng(4)
    assert (structure_to_noise(model, rng.random((4, *clean.shape[1:]))) < MIN_STRUCTURE_TO_NOISE).all()
    flat = rng.poisson(30.0, (4, *clean.shape[1:])).astype(float)
    assert (structure_to_noise(model, flat) < MIN_STRUCTURE_TO_NOISE).all()


def test_a_warm_sqe_is_weak_with_few_counts_and_not_with_many(ge_sqe):
    """At 300 K the Bose factor puts the brightest pixels near Γ: P = 50 counts there and a flat
    background of 15 % of them leave the branches above within the noise once corrected; the same
    at 5 K does not, and neither does 300 K with 10⁴ counts. Weak is about the statistics."""
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import MIN_STRUCTURE_TO_NOISE, structure_to_noise

    ge, img = ge_sqe
    model = load_model("ge-resnet")

    def snr(temp, b, p):
        return np.array([structure_to_noise(model, _measured(ge, img[temp], temp, b, p, s), temp)[0] for s in range(3)])

    assert (snr(300.0, 0.15, 50.0) < MIN_STRUCTURE_TO_NOISE).all()
    assert (snr(5.0, 0.15, 50.0) > 2 * MIN_STRUCTURE_TO_NOISE).all()
    assert (snr(300.0, 0.02, 1e4) > 10 * MIN_STRUCTURE_TO_NOISE).all()


def test_weak_data_is_flagged_with_its_reason(ge_sqe, tmp_path):
    """``invert`` on a weak 300 K S(Q,E) file: flagged as weak data (the record says why and how
    far its structure rises above the noise); a 5 K measurement with the same background and
    counts is not weak."""
    from fcinv_widgets.models import load_model
    from fcinv_widgets.spectrum_io import write_spectrum

    ge, img = ge_sqe
    model = load_model("ge-resnet")
    paths = {}
    for temp in (5.0, 300.0):
        paths[temp] = tmp_path / f"ge_{temp:g}K.h5"
        write_spectrum(paths[temp], _measured_raw(ge, img[temp], 0.15, 50.0, seed=2), ge.grid, material="Ge",
                       kind="full-sqe", temperature_k=temp, ei_mev=80.0, qmax_inv_a=4.0,
                       intensity="one-phonon-sqe", origin="simulated")  # fmt: skip
    warm = model.invert(str(paths[300.0]), refine=False, n_samples=5)["ood"]
    assert warm["weak_data"] and warm["flag"] and warm["regime"] == "measured"
    assert warm["reason"].startswith("weak data") and "300 K" in warm["reason"]
    assert warm["structure_to_noise"] < 1.0
    cold = model.invert(str(paths[5.0]), refine=False, n_samples=5)["ood"]
    assert not cold["weak_data"] and cold["structure_to_noise"] > 1.0
    assert not cold["reason"].startswith("weak data")


def _measured_raw(ge, img, b, p, seed):
    from fcinv_widgets.noise import add_noise

    return add_noise(img, b, p, seed=seed, peak_percentile=99.5)[0]


def test_cli_warns_that_weak_data_carry_too_little_signal(ge_sqe, tmp_path, capsys):
    import json

    from fcinv_widgets.cli import main
    from fcinv_widgets.spectrum_io import write_spectrum

    ge, img = ge_sqe
    path = tmp_path / "warm.h5"
    write_spectrum(path, _measured_raw(ge, img[300.0], 0.15, 50.0, seed=2), ge.grid, material="Ge", kind="full-sqe",
                   temperature_k=300.0, ei_mev=80.0, qmax_inv_a=4.0, intensity="one-phonon-sqe", origin="simulated")  # fmt: skip
    assert main(["invert", "--model", "ge-resnet", "--spectrum", str(path), "--no-refine", "--json"]) == 0
    out = capsys.readouterr()
    d = json.loads(out.out)
    assert d["ood"]["weak_data"] is True
    assert "carries too little signal" in out.err and "looks out of distribution" not in out.err
    assert main(["invert", "--model", "ge-resnet", "--spectrum", str(path), "--no-refine"]) == 0
    assert "WEAK DATA (structure" in capsys.readouterr().out


def test_background_shapes_absorb_a_flat_raw_background_after_the_correction():
    """A flat + sloping background added to the raw S(Q,E) becomes c(E)·(a + b·E) after the E/(n+1)
    correction at 300 K: the refit's shapes at that temperature absorb it to round-off, the
    unit-weight shapes alone (no temperature) do not."""
    from fcinv_widgets.materials import get_material
    from fcinv_widgets.measurement import creation_correction
    from fcinv_widgets.models.ood import _background_shapes, _column_residuals

    e = np.asarray(get_material("Ge").grid.e.centers, float)
    c = creation_correction(e, 300.0)
    rng = np.random.default_rng(0)
    bg = (rng.uniform(0.5, 1.5, (30, 1)) + rng.uniform(-0.3, 0.3, (30, 1)) * e[None, :] / e.max()) * c[None, :]
    m = np.ones(bg.shape)
    m[:, :5] = 0  # an uncovered corner, as below the kinematic limit
    none = np.empty((0, *bg.shape))
    warm = _column_residuals(bg, none, m, _background_shapes(e, 300.0))[0]
    unit = _column_residuals(bg, none, m, _background_shapes(e))[0]
    assert np.abs(warm).max() < 1e-6 * np.abs(bg).max()
    assert np.abs(unit).max() > 1e-2 * np.abs(bg).max()
    assert _background_shapes(e, 300.0).shape == (6, len(e)) and _background_shapes(e).shape == (3, len(e))


def test_input_temperature_reads_the_correction_record():
    from fcinv_widgets.models.ood import input_temperature

    assert input_temperature({"intensity": "one-phonon-sqe", "bose_weighting": {"temperature_k": 300.0}}) == 300.0
    assert input_temperature({"already_applied": {"bose_weighting": {"temperature_k": 5}}}) == 5.0
    assert input_temperature({"intensity": "model-image", "bose_weighting": None}) is None
    assert input_temperature(None) is None


def test_infer_scans_counts_the_weak_scans(tmp_path, capsys):
    """A warm scan set with few counts: the full data are weak data, and the JSON says how many of
    the flagged scans were flagged for that."""
    import json

    from fcinv_widgets import get_material
    from fcinv_widgets.cli import main
    from fcinv_widgets.scans import simulate_scans

    ss = simulate_scans(get_material("Ge"), 80, [0, 40], temperature=300, qmax=4.0, progress=False)
    path = tmp_path / "warm_scans.h5"
    ss.add_noise(background=0.15, counts=50, seed=1).save(path)
    args = ["infer-scans", "--model", "ge-resnet", "--scans", str(path), "--n-samples", "5", "--no-refine", "--json"]
    assert main(args) == 0
    out = capsys.readouterr()
    ood = json.loads(out.out)["ood"]
    assert ood["weak_data"] is True and "carries too little signal" in out.err
    # (each scan's B and P refer to its own 99.5th percentile: a scan that misses the bright region
    # near Γ keeps more of its counts on the branches — here one of the two)
    assert 1 <= ood["scans_weak"] <= ood["scans_flagged"]


def test_rule_w_an_sqe_input_below_3_is_weak_data_a_model_image_is_not(monkeypatch):
    """Rule W (session 31): between structure-to-noise 1 and 3 the right crystal's S(Q,E) inputs were
    flagged by the scores as often as another crystal's, so a one-phonon S(Q,E) input (the check is
    told its correction temperature) is weak data below 3; any other input keeps 1."""
    from fcinv_widgets.materials import material_for_model
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models import ood as ood_mod

    assert ood_mod.weak_level() == ood_mod.MIN_STRUCTURE_TO_NOISE == 1.0
    assert ood_mod.weak_level(5.0) == ood_mod.MIN_STRUCTURE_TO_NOISE_SQE == 3.0
    np.testing.assert_array_equal(ood_mod.weak_level(np.array([5.0, np.nan, 300.0])), [3.0, 1.0, 3.0])
    model = load_model("ge-resnet")
    stats = model.ood_stats()
    fm = material_for_model(model.config).forward_model()
    x = fm.spectra(fm.reference_theta)[0]
    # an input whose structure rises 2× above its noise: between the two levels
    monkeypatch.setattr(ood_mod, "structure_to_noise", lambda m, s, t=None: np.full(len(s) if np.ndim(s) == 3 else 1, 2.0))
    sqe = stats.check(model, x, measured=True, temperature_k=5.0)
    image = stats.check(model, x, measured=True)
    assert sqe["weak_data"] and sqe["flag"] and "below 3" in sqe["reason"]
    assert not image["weak_data"] and "below" not in image["reason"]
    flags, weak = stats.flags(model, np.stack([x, x]), measured=True, temperature_k=np.array([5.0, np.nan]), return_weak=True)
    assert list(weak) == [True, False] and flags[0]


def test_the_weak_reason_says_the_number_it_measured():
    """Session 50's notebook probe: a structure to noise of −0.11 was printed as "rises 0.00× above its
    own counting noise" beside the −0.11 the record held."""
    from fcinv_widgets.models.ood import weak_reason

    assert "rises 2.50× above" in weak_reason(2.5)
    neg = weak_reason(-0.11)
    assert "nothing of the input's structure rises above" in neg and "-0.11" in neg and "0.00×" not in neg
