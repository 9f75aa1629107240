"""Rule S′ (session 38): the OOD check of one single-orientation scan whose orientation is known
(``scan_orientation``, ``orientation=`` of ``OODStats.scores/check/flags``, ``OODStats.scan_limits_oriented``,
``Inverter.invert(scan_deg=)``, ``fcinv infer-scans``, ``benchmarks/ood_scan_limits.py --oriented``)."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from test_ood_limits import _folder, _refused, _script  # noqa: E402
from test_ood_scan import _bench_json, _row, _table  # noqa: E402


def test_scan_orientation_checks_its_fields_and_is_none_without_angle_or_ei():
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.models.ood import scan_orientation

    assert scan_orientation(None, ei_mev=80.0) is None and scan_orientation(30.0) is None
    o = scan_orientation(30, ei_mev=80, qmax_inv_a=4)
    assert o == {
        "scan_deg": 30.0,
        "u": [1.0, 1.0, 0.0],
        "v": [0.0, 0.0, 1.0],
        "ei_mev": 80.0,
        "qmax_inv_a": 4.0,
        "detector_deg": None,
    }
    det = {"h_min_deg": -20, "h_max_deg": 120, "v_max_deg": 20}
    assert scan_orientation(30, (1, 0, 0), (0, 1, 0), 80, None, det)["detector_deg"] == {k: float(v) for k, v in det.items()}
    for kwargs, words in (
        ({"scan_deg": float("nan"), "ei_mev": 80}, "scan_deg"),
        ({"scan_deg": 30, "ei_mev": -1}, "Ei"),
        ({"scan_deg": 30, "ei_mev": 80, "qmax_inv_a": 0}, r"\|Q\| range"),
        ({"scan_deg": 30, "u": (1, 0, 0), "v": (2, 0, 0), "ei_mev": 80}, "not parallel"),
        ({"scan_deg": 30, "ei_mev": 80, "detector_deg": {"h_min_deg": 0}}, "detector_deg"),
    ):
        with pytest.raises(FcinvError, match=words):
            scan_orientation(**kwargs)


def _scan(crystal, omega, q=4.0, t=5.0, ei=80.0):
    """``crystal``'s one-phonon S(Q,E) at its reference on Ge's path as the one scan at ω (u [110],
    v [001]), corrected as ``prepare_input`` corrects it."""
    from fcinv_widgets import get_material
    from fcinv_widgets.analysis.expio import to_model_intensity
    from fcinv_widgets.scans import orientation_image, orientation_matrix
    from fcinv_widgets.sqe import SQE, fold_points, gaussians

    ge = get_material("Ge")
    calc = SQE(crystal.basis, np.asarray(crystal.reference_params, float), temperature=t)
    pts = fold_points(calc, ge.grid, q, crystal.conventional_a)
    gt = gaussians(pts.energies, ge.grid.e.centers, ei_mev=ei).astype(np.float32)
    d, n = orientation_image(pts, gt, omega, ei, ge.grid, orientation_matrix())
    with np.errstate(invalid="ignore", divide="ignore"):
        img = np.where(n > 0, d / np.where(n > 0, n, 1.0), np.nan)
    return to_model_intensity(img, ge.grid, temperature_k=t, clip_percentile=99.5)


def test_the_refit_with_the_scans_orientation_explains_the_right_crystals_scan_better():
    """Given the orientation, the refit's S(Q,E) candidate follows what that scan saw (the mode
    weights of the equivalents its detector reaches, as ``refine_sqe(orientations=[ω])``, applied to
    lines broadened at the scan's Ei): a noiseless Ge scan is explained (the full data's weights
    leave 0.09–0.17 of it), and a Nb scan on Ge's path stays unexplained; a model image (no correction temperature)
    is scored as before — the orientation concerns an S(Q,E) candidate only."""
    from fcinv_widgets import get_material
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import _refit_misfit, scan_orientation

    model = load_model("ge-vae")
    ge, nb = get_material("Ge"), get_material("Nb")
    x = np.stack([_scan(ge, 0.0), _scan(ge, 40.0), _scan(nb, 40.0)])
    orient = [scan_orientation(w, ei_mev=80.0, qmax_inv_a=4.0) for w in (0.0, 40.0, 40.0)]
    full = _refit_misfit(model, x, temperature_k=5.0)[0]
    got = _refit_misfit(model, x, temperature_k=5.0, orientation=orient)[0]
    assert got[0] < 0.01 < 0.1 < full[0] and got[1] < 0.01 < 0.05 < full[1], (full, got)  # noiseless: explained
    assert got[2] > 0.1, got
    plain = _refit_misfit(model, x[1:2])[0]  # no temperature: not a corrected S(Q,E)
    assert _refit_misfit(model, x[1:2], orientation=orient[1])[0] == pytest.approx(plain)
    with pytest.raises(Exception, match="one orientation per spectrum"):
        _refit_misfit(model, x, temperature_k=5.0, orientation=orient[:2])


def test_rule_s_prime_judges_a_scan_of_known_orientation_with_its_oriented_scores(tmp_path, ge_input, monkeypatch):
    """With ``scan_limits_oriented`` a single scan whose orientation is given is scored with it and
    judged by rule S′'s limits (``scan_rule["oriented"]``, the reason naming rule S′); without that
    table, without an orientation, at an Ei outside its range or as weak data the orientation is
    not used and rule S (or the check as it stands) judges; ``flags`` agree per spectrum; the table
    survives a save and load and a damaged one is refused."""
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import OODStats, scan_orientation

    d = _folder(tmp_path, "ge-vae")
    model = load_model(d)
    stats = model.ood_stats()
    plain = stats.scores(model, ge_input, True, temperature_k=5.0)
    oriented = {k: v * (0.5 if k in ("refit", "band") else 1.0) for k, v in plain.items()}
    calls = []

    def scores(m, x, measured=False, progress=False, temperature_k=None, orientation=None):
        calls.append(orientation)
        n = len(x) if np.ndim(x) == 3 else 1
        if orientation is None or isinstance(orientation, dict):
            return {k: np.repeat(oriented[k] if orientation else plain[k], n) for k in plain}
        return {k: np.array([(oriented if o else plain)[k][0] for o in orientation]) for k in plain}

    monkeypatch.setattr(stats, "scores", scores)
    values = {k: float(v[0]) for k, v in plain.items()}
    o = scan_orientation(30.0, ei_mev=80.0, qmax_inv_a=4.0)
    stats.scan_limits_oriented = {}  # (the shipped model's own rule S′ aside)
    stats.scan_limits = _table({k: 0.9 * v for k, v in values.items()})  # rule S flags it
    rs = stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=80.0, orientation=o)
    assert rs["flag"] and rs["scan_rule"]["oriented"] is False and calls[-1] is None  # no S′: orientation unused

    def fit(f):  # limits: f × the refit and band, 1.1 × the network's own scores
        return {k: (f if k in ("refit", "band") else 1.1) * v for k, v in values.items()}

    stats.scan_limits_oriented = _table(fit(0.75))  # S′: its oriented scores pass
    rec = stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=80.0, orientation=o)
    assert calls[-1] == o and not rec["flag"] and rec["single_scan"] and rec["scan_rule"]["oriented"]
    assert "rule S′" in rec["reason"] and rec["components"]["refit"]["value"] == pytest.approx(0.5 * values["refit"])
    assert rec["components"]["refit"]["scan_limit"] == pytest.approx(0.75 * values["refit"])
    stats.scan_limits_oriented = _table(fit(0.75) | {"refit": 0.25 * values["refit"]})
    hit = stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=80.0, orientation=o)
    assert hit["flag"] and "2.0× its single-scan limit" in hit["reason"] and "rule S′" in hit["reason"]
    for kwargs in ({"ei_mev": 60.0}, {"ei_mev": 80.0, "orientation": None, "single_scan": True}):
        rec = stats.check(model, ge_input, measured=True, temperature_k=5.0, **({"orientation": o} | kwargs))
        assert calls[-1] is None and not rec.get("scan_rule", {}).get("oriented"), kwargs
    stats.scan_limits_oriented["ei_range_mev"] = [60.0, 70.0]
    assert not stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=80.0, orientation=o)["scan_rule"]["oriented"]
    with pytest.raises(Exception, match="orientation must be"):
        stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=80.0, orientation=[o])
    for bad in ({"scan_deg": 30.0}, o | {"extra": 1}, o | {"ei_mev": "80"}, o | {"scan_deg": float("inf")}):
        with pytest.raises(FcinvError):
            stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=80.0, orientation=bad)
    for bad in ("30", 30.0, [o, "x"]):
        with pytest.raises(FcinvError, match="orientation"):
            stats.flags(model, np.stack([ge_input, ge_input]), measured=True, temperature_k=5.0, orientation=bad)

    stats.scan_limits_oriented = _table(fit(0.75) | {"refit": 0.25 * values["refit"]})
    batch = np.stack([ge_input, ge_input])
    got = stats.flags(model, batch, measured=True, temperature_k=5.0, ei_mev=80.0, orientation=[o, None])
    assert got.tolist() == [True, True] and calls[-1] == [o, None]  # S′ on the first, rule S (0.9×) on the second
    stats.scan_limits = _table({k: 1.1 * v for k, v in values.items()})
    assert stats.flags(model, batch, measured=True, temperature_k=5.0, ei_mev=80.0, orientation=[o, None]).tolist() == [
        True,
        False,
    ]
    stats.scan_limits_oriented = {}
    assert stats.flags(model, batch, measured=True, temperature_k=5.0, ei_mev=80.0, orientation=[o, o]).tolist() == [False, False]
    assert calls[-1] is None

    stats.scan_limits_oriented = _table({"refit": 0.2}) | {"alpha": 0.05, "command": "test"}
    stats.save(d / "ood.json")
    back = OODStats.load(d / "ood.json")
    assert back.scan_limits_oriented["limits"] == {"refit": 0.2} and back.scan_limit(100.0, oriented=True)["n"] == 200
    assert back.scan_limit(100.0)["limits"] != {"refit": 0.2}


@pytest.mark.parametrize(
    "damage, words",
    [({"limits": {}}, "limits"), ({"n": 0}, "whole number"), ({"limits": {"latent": 3.0}}, "measured regime")],
)
def test_damaged_oriented_scan_tables_are_refused_in_one_line(tmp_path, damage, words):
    got = _refused(tmp_path, {"scan_limits_oriented": _table({"refit": 0.3}) | damage})
    assert "scan_limits_oriented" in got and words in got


def test_a_scan_of_known_orientation_is_quoted_rule_s_primes_rates(tmp_path):
    from fcinv_widgets.models.ood import OODStats, note_sqe_input

    stats = OODStats.load(_folder(tmp_path) / "ood.json")
    sqe = {"intensity": "one-phonon-sqe", "ei_mev": 80.0}
    rec = {"regime": "measured", "weak_data": False, "structure_to_noise": 50.0, "single_scan": True}
    rates = {"own_n": 90, "own_flagged": 4, "other_n": 80, "other_flagged": 70, "other": "Nb folded on the Ge path"}
    stats.scan_limits = _table({"refit": 0.3}, rates=rates | {"other_flagged": 10})
    stats.scan_limits_oriented = _table({"refit": 0.2}, rates=rates)
    got = note_sqe_input(rec | {"scan_rule": {"n": 200, "oriented": True}}, sqe, stats)["input_note"]
    assert "rule S′" in got and "70 of 80" in got and "scan_limits_oriented" in got
    got = note_sqe_input(rec | {"scan_rule": {"n": 200, "oriented": False}}, sqe, stats)["input_note"]
    assert "(rule S)" in got and "10 of 80" in got


def test_invert_and_infer_scans_hand_the_scans_orientation_to_the_check(tmp_path, ge_pair, monkeypatch, capsys):
    """``invert(scan_deg=)`` gives the check the scan's angle, axes, Ei, |Q| range (and, of a scan
    set, its detector); without the angle no orientation; ``infer-scans`` gives each scan its own."""
    from fcinv_widgets import get_material
    from fcinv_widgets.cli import main
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import OODStats, scan_orientation
    from fcinv_widgets.scans import simulate_scans
    from fcinv_widgets.spectrum_io import write_spectrum

    ge = get_material("Ge")
    plain = tmp_path / "scan.h5"
    write_spectrum(plain, ge_pair[0], ge.grid, material="Ge", kind="full-sqe", temperature_k=5.0, ei_mev=80.0,
                   qmax_inv_a=4.0, intensity="one-phonon-sqe", origin="simulated")  # fmt: skip
    det = {"h_min_deg": -20.0, "h_max_deg": 120.0, "v_max_deg": 20.0}
    ss = simulate_scans(ge, 90.0, [20.0, 40.0], qmax=3.0, u=(1, 0, 0), v=(0, 1, 0), detector=det, progress=False)
    sets = tmp_path / "scans.h5"
    ss.save(sets)
    model = load_model(_folder(tmp_path))
    seen = []

    def check(self, m, x, measured=False, temperature_k=None, ei_mev=None, single_scan=False, orientation=None):
        seen.append(orientation)
        return {"flag": False, "regime": "measured", "weak_data": False, "single_scan": single_scan}

    monkeypatch.setattr(OODStats, "check", check)
    model.invert(str(plain), refine=False, scan_deg=30, u=(1, 0, 0), v=(0, 1, 0))
    assert seen[-1] == scan_orientation(30.0, (1, 0, 0), (0, 1, 0), ei_mev=80.0, qmax_inv_a=4.0)  # the file's Ei, |Q|
    model.invert(str(plain), refine=False, single_scan=True)
    assert seen[-1] is None
    model.invert(str(sets), refine=False, scan_deg=40)
    assert seen[-1] == scan_orientation(40.0, (1, 0, 0), (0, 1, 0), ei_mev=90.0, qmax_inv_a=3.0, detector_deg=det)

    got = []
    flags = OODStats.flags
    monkeypatch.setattr(OODStats, "flags", lambda self, *a, **k: got.append(k.get("orientation")) or flags(self, *a, **k))
    monkeypatch.setattr(OODStats, "check", lambda self, *a, **k: {"flag": False, "regime": "measured", "weak_data": False})
    assert main(["infer-scans", "--model", "ge-vae", "--scans", str(sets), "--n-samples", "5", "--no-refine", "--json"]) == 0
    ood = json.loads(capsys.readouterr().out)["ood"]
    assert [o["scan_deg"] for o in got[-1]] == [20.0, 40.0] and all(
        o["detector_deg"] == det and o["ei_mev"] == 90.0 for o in got[-1]
    )
    # which rule judged the scans, and the angles of those it flagged (ge-vae has rule S′ inside its Ei range)
    assert ood["scans_rule"] == "S′" and "rule S′" in ood["scans_note"] and "scan_limits_oriented" in ood["scans_note"]
    assert len(ood["scans_flagged_deg"]) == ood["scans_flagged"] and set(ood["scans_flagged_deg"]) <= {20.0, 40.0}


def test_scan_rule_of_names_the_rule_that_judges_scans_and_its_rates(tmp_path):
    from fcinv_widgets.models.ood import OOD_CHECK_VERSION, SCAN_INPUT_NOTE, OODStats, scan_rule_of

    stats = OODStats.load(_folder(tmp_path) / "ood.json")
    stats.scan_limits, stats.scan_limits_oriented, stats.scan_rates = {}, {}, {}
    assert scan_rule_of(stats, 80.0, oriented=True) == {"rule": "full-data", "note": SCAN_INPUT_NOTE}
    rates = {"own_n": 90, "own_flagged": 4, "other_n": 80, "other_flagged": 70, "other": "Nb"}
    stats.scan_rates = rates | {"check_version": OOD_CHECK_VERSION}
    assert "full-data thresholds" in scan_rule_of(stats, 80.0)["note"]
    stats.scan_limits = _table({"refit": 0.3}, rates=rates)
    assert scan_rule_of(stats, 80.0, oriented=True)["rule"] == "S" and scan_rule_of(stats, 60.0)["rule"] == "full-data"
    stats.scan_limits_oriented = _table({"refit": 0.2}, rates=rates | {"other_flagged": 75})
    got = scan_rule_of(stats, 80.0, oriented=True)
    assert got["rule"] == "S′" and "75 of 80" in got["note"] and scan_rule_of(stats, 80.0)["rule"] == "S"


def test_ood_scan_limits_oriented_calibrates_on_the_oriented_scores_and_writes_beside_rule_s(tmp_path, capsys):
    """``ood_scan_limits.py --oriented``: limits from each row's oriented scores; the held-out scans
    judged by them against the verdict the same scans get without their angle (rule S where the model
    has it); the pre-registered criteria against rule S; ``--write`` stores ``scan_limits_oriented``
    and keeps ``scan_limits``; rows without oriented scores are refused."""
    from fcinv_widgets.models import load_model

    mod = _script("ood_scan_limits")
    d = _folder(tmp_path)
    stats = load_model(d).ood_stats()
    stats.scan_limits = _table({"refit": 0.3})  # a model with rule S: refit ≤ 0.3 passes
    stats.scan_limits_oriented = {}  # and no rule S′ yet (the shipped ge-resnet has one since session 40)
    stats.save(d / "ood.json")
    stats = load_model(d).ood_stats()

    def row(kind, plain, oriented, ei=100.0):
        r = _row(kind, {"refit": plain}, ei=ei)
        r["ood_components_oriented"] = {k: {"value": c["value"]} for k, c in r["ood_components"].items()}
        r["ood_components_oriented"]["refit"]["value"] = oriented
        return r

    refit = np.linspace(0.05, 0.15, 200)
    cal = [row("own", 0.25, float(v), ei=(80.0 if i % 2 else 125.0)) for i, v in enumerate(refit)]

    def write(name, rows, oriented=True):
        return _bench_json(tmp_path / name, d, rows, stats.measured, oriented=oriented)

    test = [row("own", 0.2, 0.1), row("own", 0.35, 0.12), row("own", 0.2, 0.2)]  # rule S: 1 of 3; S′: 1 of 3
    test += [row("other", 0.2, 0.3), row("other", 0.25, 0.4), row("other", 0.4, 0.1)]  # rule S: 1 of 3; S′: 2 of 3
    test += [row("other", 0.2, 0.4, ei=60.0)]  # outside the range: the verdict without the angle (passes rule S? no range)
    out_json = tmp_path / "s.json"
    args = [write("cal.json", cal), "--model", str(d), "--oriented", "--test", write("test.json", test), "--json", str(out_json)]
    capsys.readouterr()
    assert mod.main(args + ["--write"]) == 0
    assert "rule S′" in capsys.readouterr().out
    st = load_model(d).ood_stats()
    k = int(np.ceil(201 * (1 - 0.05 / 4)))
    assert st.scan_limits_oriented["limits"]["refit"] == pytest.approx(np.sort(refit)[k - 1])
    assert st.scan_limits["limits"] == {"refit": 0.3}  # rule S kept
    rep = json.loads(out_json.read_text())
    own, other = rep["score"]["own"], rep["score"]["other"]
    assert (own["n"], own["before"], own["after"]) == (3, 1, 1)
    assert (other["n"], other["before"], other["after"]) == (4, 1, 2)  # Ei 60: rule S has no limit there → full-data verdict
    assert set(rep["criteria"]) == {"a_own_flagged_at_most_10pct_and_within_rule_s", "b_fewer_errors"}
    assert st.scan_limits_oriented["rates"]["other_flagged"] == 2
    with pytest.raises(SystemExit, match="no oriented scores"):
        mod.main([write("plain.json", cal, oriented=False), "--model", str(d), "--oriented"])
    with pytest.raises(SystemExit, match="one or the other"):
        mod.main(args[:6] + ["--write-rates"])


def test_a_shipped_model_with_rule_s_prime_judges_a_scan_of_given_angle_with_it(tmp_path):
    """End to end on a model that adopted rule S′ (its ``ood.json`` carries ``scan_limits_oriented``):
    ``invert(scan_deg=ω)`` on a single-scan S(Q,E) file scores the scan with its orientation — the
    record's refit is what ``scores(orientation=…)`` gives, below rule S′'s limit for the model's own
    crystal and above it for the other one on its path; without the angle the same file is judged by
    rule S."""
    from fcinv_widgets import get_material
    from fcinv_widgets.analysis.expio import as_spectrum, prepare_input
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import scan_orientation
    from fcinv_widgets.scans import orientation_image, orientation_matrix
    from fcinv_widgets.spectrum_io import write_spectrum
    from fcinv_widgets.sqe import SQE, fold_points, gaussians

    name = next(n for n in ("nb-vae", "ge-vae", "nb-resnet", "ge-resnet") if load_model(n).ood_stats().scan_limits_oriented)
    model = load_model(name)
    stats = model.ood_stats()
    own = get_material(model.material)
    other = get_material("Ge" if own.name == "Nb" else "Nb")
    ei = float(np.mean(stats.scan_limits_oriented["ei_range_mev"]))
    omega, qmax = 30.0, 5.0
    got = {}
    for crystal in (own, other):
        calc = SQE(crystal.basis, np.asarray(crystal.reference_params, float), temperature=5.0)
        pts = fold_points(calc, own.grid, qmax, crystal.conventional_a)
        gt = gaussians(pts.energies, own.grid.e.centers, ei_mev=ei).astype(np.float32)
        d, n = orientation_image(pts, gt, omega, ei, own.grid, orientation_matrix())
        with np.errstate(invalid="ignore", divide="ignore"):
            img = np.where(n > 0, d / np.where(n > 0, n, 1.0), np.nan)
        path = tmp_path / f"{crystal.name}.h5"
        write_spectrum(path, img, own.grid, material=own.name, kind="full-sqe", temperature_k=5.0, ei_mev=ei,
                       qmax_inv_a=qmax, intensity="one-phonon-sqe", origin="simulated")  # fmt: skip
        rec = model.invert(str(path), refine=False, scan_deg=omega)["ood"]
        assert rec["scan_rule"]["oriented"] and "rule S′" in rec["reason"], rec["reason"]
        image, corr = prepare_input(as_spectrum(str(path), own.grid, material=own.name), own.grid)
        orient = scan_orientation(omega, ei_mev=ei, qmax_inv_a=qmax)
        want = stats.scores(model, image, True, temperature_k=5.0, orientation=orient)["refit"][0]
        assert rec["components"]["refit"]["value"] == pytest.approx(want, rel=1e-9)
        plain = model.invert(str(path), refine=False, single_scan=True)["ood"]
        if stats.scan_limits:  # (rule S; else the full-data verdict)
            assert not plain["scan_rule"]["oriented"] and plain["reason"].endswith("rule S")
        got[crystal.name] = rec
    refit = {k: r["components"]["refit"]["value"] for k, r in got.items()}
    assert refit[own.name] < 0.1 * stats.scan_limits_oriented["limits"]["refit"] and not got[own.name]["flag"]
    assert refit[other.name] > 10 * refit[own.name] and got[other.name]["flag"], refit


def test_rule_s_prime_e_adds_a_limit_on_the_oriented_refits_excess(tmp_path, ge_input, monkeypatch):
    """A rule S′ table with ``excess_limit`` (rule S′E) also flags a scan whose oriented refit leaves
    more than that beyond the input's noise share (``refit_excess``), in ``check`` (the record's
    ``refit_excess`` and reason) and in ``flags`` alike; a bad limit is refused in one line."""
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import refit_excess, scan_orientation, structure_to_noise

    d = _folder(tmp_path, "ge-vae")
    model = load_model(d)
    stats = model.ood_stats()
    plain = stats.scores(model, ge_input, True, temperature_k=5.0)
    monkeypatch.setattr(stats, "scores", lambda m, x, measured=False, progress=False, temperature_k=None, orientation=None: plain)
    values = {k: float(v[0]) for k, v in plain.items()}
    e = float(refit_excess(values["refit"], structure_to_noise(model, ge_input[None], 5.0)[0]))
    o = scan_orientation(30.0, ei_mev=80.0, qmax_inv_a=4.0)
    for factor, flagged in ((1.5, False), (0.5, True)):
        stats.scan_limits_oriented = _table({k: 1.1 * v for k, v in values.items()}) | {"excess_limit": factor * abs(e)}
        rec = stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=80.0, orientation=o)
        assert rec["flag"] is flagged and rec["refit_excess"]["value"] == pytest.approx(e), (e, rec["reason"])
        assert rec["scan_rule"]["excess_limit"] == pytest.approx(factor * abs(e))
        assert ("beyond the input's noise share" in rec["reason"]) is flagged
        assert stats.flags(model, ge_input, measured=True, temperature_k=5.0, ei_mev=80.0, orientation=o).tolist() == [flagged]
    for i, bad in enumerate((0.0, -1.0, "0.1", True)):
        (tmp_path / f"bad{i}").mkdir()
        got = _refused(tmp_path / f"bad{i}", {"scan_limits_oriented": _table({"refit": 0.3}) | {"excess_limit": bad}})
        assert "excess_limit" in got


def test_ood_scan_limits_excess_adds_the_refit_excess_as_one_more_score(tmp_path, capsys):
    """``--oriented --excess``: every limit at α/(k+1), the refit excess's the ⌈(n+1)(1−α/(k+1))⌉-th
    smallest of the own rows' oriented excess; the held-out scans' "current" verdict is rule S′'s where
    the model has it (their oriented scores), and rule S′E flags an excess over its limit."""
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import refit_excess

    mod = _script("ood_scan_limits")
    d = _folder(tmp_path)
    stats = load_model(d).ood_stats()
    stats.scan_limits_oriented = _table({"refit": 0.5})  # the current rule S′: refit ≤ 0.5 passes
    stats.save(d / "ood.json")
    stats = load_model(d).ood_stats()

    def row(kind, oriented, snr=50.0, ei=100.0):
        r = _row(kind, {"refit": 0.1}, ei=ei, snr=snr)
        r["ood_components_oriented"] = {k: {"value": c["value"]} for k, c in r["ood_components"].items()}
        r["ood_components_oriented"]["refit"]["value"] = oriented
        return r

    refit = np.linspace(0.05, 0.15, 200)
    cal = [row("own", float(v), ei=(80.0 if i % 2 else 125.0)) for i, v in enumerate(refit)]

    def write(name, rows):
        return _bench_json(tmp_path / name, d, rows, stats.measured, oriented=True)

    test = [row("own", 0.1), row("other", 0.6), row("other", 0.3), row("other", 0.1)]  # S′: other 1 of 3
    out_json = tmp_path / "x.json"
    args = [write("cal.json", cal), "--model", str(d), "--oriented", "--excess", "--test", write("t.json", test)]
    capsys.readouterr()
    assert mod.main(args + ["--json", str(out_json), "--write"]) == 0
    assert "rule S′E" in capsys.readouterr().out
    got = load_model(d).ood_stats().scan_limits_oriented
    k = int(np.ceil(201 * (1 - 0.05 / 5)))  # rank 199 of 200 with 5 scores
    excess = np.sort(refit - (refit_excess(0.0, 50.0) * -1.0))  # the excess: refit less the noise share 1/51
    assert got["excess_limit"] == pytest.approx(excess[k - 1]) and got["limits"]["refit"] == pytest.approx(np.sort(refit)[k - 1])
    rep = json.loads(out_json.read_text())
    assert (rep["score"]["other"]["before"], rep["score"]["other"]["after"]) == (1, 2)  # S′ → S′E: 0.3 caught too
    assert (rep["score"]["own"]["before"], rep["score"]["own"]["after"]) == (0, 0)
    with pytest.raises(SystemExit, match="give --oriented"):
        mod.main([args[0], "--model", str(d), "--excess"])
