"""Rule C (session 32): the OOD check's limit on one-phonon S(Q,E) inputs by structure-to-noise
(``OODStats.sqe_limits``, ``benchmarks/ood_limits.py``)."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

BENCH = Path(__file__).parents[2] / "benchmarks"


def _folder(tmp_path, name="ge-resnet"):
    """A copy of a shipped model's folder (checkpoint + ood.json) to write limits into."""
    from fcinv_widgets.models import load_model

    src = load_model(name).path.parent
    d = tmp_path / name
    d.mkdir()
    for f in ("model.pt", "ood.json"):
        shutil.copy(src / f, d / f)
    return d


def _limits(value, min_coverage=0.0):
    from fcinv_widgets.models.ood import OOD_CHECK_VERSION

    return {
        "edges": [3.0, 10.0, 30.0, 100.0],
        "limits": [value] * 4,
        "n": [40] * 4,
        "min_coverage": min_coverage,
        "check_version": OOD_CHECK_VERSION,
    }


def test_rule_c_limit_decides_the_verdict_of_sqe_inputs_only(tmp_path, ge_input, monkeypatch):
    """Without ``sqe_limits`` the verdict is ratio > 1; with them an S(Q,E) input (a correction
    temperature, measured regime, not weak, enough coverage) is judged against its bin's limit —
    flagged below its ratio, passed above it, the record naming the limit and the bin; an input
    with less coverage than the calibration's, or without a correction temperature, keeps 1; the
    batch ``flags`` agree with ``check``; the limits survive a save and load."""
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import OODStats

    d = _folder(tmp_path)
    model = load_model(d)
    stats = model.ood_stats()
    stats.sqe_limits = {}
    once = stats.scores(model, ge_input, True, temperature_k=5.0)  # the refit is the slow part; the limits do not change it
    scores = {5.0: once, None: once}
    monkeypatch.setattr(
        stats, "scores", lambda m, x, measured=False, progress=False, temperature_k=None, orientation=None: scores[temperature_k]
    )
    base = stats.check(model, ge_input, measured=True, temperature_k=5.0)
    assert base["limit"] == 1.0 and base["signal_limit"] is None and not base["weak_data"]
    assert base["scores_flag"] == (base["ratio"] > 1.0)
    r, snr = base["ratio"], base["structure_to_noise"]
    coverage = float(np.isfinite(ge_input).mean())
    assert 0 < coverage < 1  # (|Q| ≤ 4 Å⁻¹ at Ei 80 meV leaves pixels unmeasured)

    stats.sqe_limits = _limits(r / 2)
    low = stats.check(model, ge_input, measured=True, temperature_k=5.0)
    assert low["flag"] and low["scores_flag"] and low["limit"] == pytest.approx(r / 2)
    lo, hi = low["signal_limit"]["structure_to_noise_range"]
    assert lo <= snr and (hi is None or snr < hi) and low["signal_limit"]["n"] == 40
    assert "rule C" in low["reason"] and low["ratio"] == pytest.approx(r)
    stats.sqe_limits = _limits(2 * r)
    high = stats.check(model, ge_input, measured=True, temperature_k=5.0)
    assert not high["flag"] and high["limit"] == pytest.approx(2 * r) and "rule C" in high["reason"]

    stats.sqe_limits = _limits(r / 2, min_coverage=min(1.0, coverage + 0.01))  # less coverage than calibrated
    assert stats.check(model, ge_input, measured=True, temperature_k=5.0)["signal_limit"] is None
    stats.sqe_limits = _limits(r / 2)
    other = stats.check(model, ge_input, measured=True)  # no correction temperature: not an S(Q,E) input
    assert other["limit"] == 1.0 and other["signal_limit"] is None

    batch = np.stack([ge_input, ge_input])
    scores[5.0] = {k: np.repeat(v, 2) for k, v in scores[5.0].items()}
    assert stats.flags(model, batch, measured=True, temperature_k=5.0).tolist() == [True, True]
    stats.sqe_limits = _limits(2 * r)
    assert stats.flags(model, batch, measured=True, temperature_k=5.0).tolist() == [False, False]

    stats.sqe_limits = _limits(r / 2) | {"alpha": 0.02, "command": "test"}
    stats.save(d / "ood.json")
    back = OODStats.load(d / "ood.json")
    assert back.sqe_limits["limits"] == [pytest.approx(r / 2)] * 4 and back.sqe_limits["command"] == "test"
    assert load_model(d).ood_stats().sqe_limit(snr, coverage)["limit"] == pytest.approx(r / 2)


def _refused(tmp_path, tables: dict) -> str:
    """The one-line refusal of a shipped model's ood.json with ``tables`` put into it (fails the test
    when it loads)."""
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.models.ood import OODStats

    d = _folder(tmp_path)
    rec = json.loads((d / "ood.json").read_text())
    (d / "ood.json").write_text(json.dumps(rec | tables))
    with pytest.raises(FcinvError, match="not a readable OOD statistics file") as e:
        OODStats.load(d / "ood.json")
    return str(e.value)


@pytest.mark.parametrize(
    "damage, words",
    [
        ({"edges": [10.0, 3.0]}, "edges"),
        ({"limits": [1.0, 1.0, 1.0]}, "one finite limit"),
        ({"limits": [1.0, -1.0, 1.0, 1.0]}, "one finite limit"),
        ({"limits": [1.0, True, 1.0, 1.0]}, "one finite limit"),
        ({"n": [1, 2, 3, 4.5]}, "whole count"),
        ({"min_coverage": 1.5}, "min_coverage"),
        ({"min_coverage": "all"}, "min_coverage"),
        ({"check_version": 1.5}, "check_version"),
    ],
)
def test_damaged_limits_are_refused_in_one_line(tmp_path, damage, words):
    assert words in _refused(tmp_path, {"sqe_limits": _limits(0.8) | damage})


def _script(name):
    sys.path.insert(0, str(BENCH))  # (ood_limits imports ood_rates as the scripts do)
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCH))
    return mod


def _row(kind, snr, ratio, coverage=1.0):
    """A bench_ood_fit.py row whose recorded scores give ``ratio`` (the combined score's part)."""
    return {
        "set": kind,
        "structure_to_noise": snr,
        "weak_data": False,
        "network_flag": ratio > 1.0,
        "coverage": coverage,
        "ood_score": ratio * 2.0,
        "ood_threshold": 2.0,
        "ood_components": {"feature": {"value": 0.0, "median": 1.0, "threshold": 5.0}},
    }


def test_ood_limits_script_calibrates_scores_and_writes_for_this_checkpoint(tmp_path, capsys):
    """benchmarks/ood_limits.py: the split-conformal limit per bin (the ⌈(n+1)(1−α)⌉-th smallest
    ratio; a bin with fewer than --min-rows keeps 1), the least coverage, held-out scoring before /
    after, ``--write`` into ood.json; ood_rates.py then counts flags under the limits."""
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import OOD_CHECK_VERSION, file_sha256

    mod = _script("ood_limits")
    assert mod.conformal_limit(np.arange(1, 101) / 100, 0.02) == pytest.approx(0.99)  # rank ⌈101·0.98⌉ = 99
    assert mod.conformal_limit([0.1, 0.2, 0.3], 0.02) == pytest.approx(0.3)  # rank past n: the largest
    d = _folder(tmp_path)
    stats = load_model(d).ood_stats()
    ratios = np.linspace(0.1, 0.6, 30)
    cal = [_row("own", 5.0, float(v), coverage=0.9) for v in ratios] + [_row("own", 50.0, 0.3)] * 5
    cal += [_row("other", 5.0, 3.0)]  # not calibration data (another crystal)

    def write(name, rows):
        p = tmp_path / name
        settings = {"model": str(d), "n": len(rows), "n_other": 0, "seed": 1, "temperatures": "5", "counts": "30,300"}
        p.write_text(
            json.dumps(
                {
                    "settings": settings,
                    "model_sha256": file_sha256(d / "model.pt"),
                    "ood_measured_regime": stats.measured,
                    "ood_check_version": OOD_CHECK_VERSION,
                    "rows": rows,
                }
            )
        )
        return str(p)

    test = [_row("own", 5.0, 0.55), _row("own", 5.0, 0.7), _row("other", 5.0, 0.8), _row("other", 5.0, 1.5)]
    test += [_row("other", 5.0, 0.8, coverage=0.5)]  # less coverage than calibrated: limit 1
    args = [write("cal.json", cal), "--model", str(d), "--edges", "3,10,30", "--test", write("test.json", test)]
    assert mod.main(args + ["--write"]) == 0
    out = capsys.readouterr().out
    lim = load_model(d).ood_stats().sqe_limits
    assert lim["limits"][0] == pytest.approx(ratios.max()) and lim["limits"][1:] == [1.0, 1.0]  # 5 rows at 50: too few
    assert lim["n"] == [30, 0, 5] and lim["min_coverage"] == pytest.approx(0.9) and "ood_limits.py" in lim["command"]
    assert lim["check_version"] == OOD_CHECK_VERSION
    assert "own flagged 0/2 → 1/2" in out and "other caught 1/3 → 2/3" in out and "wrote sqe_limits" in out
    rates = _script("ood_rates")
    assert rates.main([write("test2.json", test), "--model", str(d), "--edges", "3,10,30", "--write"]) == 0
    got = load_model(d).ood_stats().sqe_rates
    assert got["own"]["flagged"][0] == 1 and got["other"]["flagged"][0] == 2  # recomputed under the limits
    with pytest.raises(SystemExit, match="at least 3"):
        mod.main(args[:3] + ["--edges", "1,10"])
    with pytest.raises(SystemExit, match="no judged rows"):  # rule C′: these rows record no Ei
        mod.main(args[:3] + ["--ei-range", "training"])
    for r in cal:
        r["ei_mev"] = 100.0  # inside Ge's training range (77–133 meV)
    assert (
        mod.main([write("cal_ei.json", cal), "--model", str(d), "--edges", "3,10,30", "--ei-range", "training", "--write"]) == 0
    )
    lim = load_model(d).ood_stats().sqe_limits
    assert lim["ei_range_mev"] == [pytest.approx(77.0), pytest.approx(133.0)] and lim["limits"][0] == pytest.approx(ratios.max())


def test_an_input_ei_outside_the_training_range_is_said(tmp_path, ge_pair, capsys):
    """The robust models know the incident energies their measurement model trained them over
    (ei_factor × the grid's top: 77–133 meV for Ge); an input measured at another Ei gets
    ``ei_check`` with a note, and ``fcinv invert`` says it on stderr; inside the range nothing is
    said; the paper models (no measurement model) and inputs without an Ei record nothing."""
    from fcinv_widgets.cli import main
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.models import load_model
    from fcinv_widgets.spectrum_io import write_spectrum

    model = load_model("ge-resnet")
    lo, hi = model.training_ei_range
    assert lo == pytest.approx(1.1 * 70.0) and hi == pytest.approx(1.9 * 70.0)
    below, inside, above = model.ei_check(60.0), model.ei_check(100.0), model.ei_check(200.0)
    assert not below["inside"] and "below" in below["note"] and "coverage" in below["note"]
    assert inside["inside"] and inside["note"] is None and inside["training_range_mev"] == [lo, hi]
    assert not above["inside"] and "above" in above["note"]
    assert model.ei_check(None) is None and load_model("ge-resnet-paper").ei_check(60.0) is None
    for bad in ("abc", float("nan"), -5.0, 0.0, [80.0], True):
        with pytest.raises(FcinvError, match="ei_mev"):
            model.ei_check(bad)
    ge = model.input_grid
    for ei, said in ((60.0, True), (100.0, False)):
        path = tmp_path / f"ei{ei:g}.h5"
        write_spectrum(path, ge_pair[0], ge, material="Ge", kind="full-sqe", temperature_k=5.0, ei_mev=ei, qmax_inv_a=4.0,
                       intensity="one-phonon-sqe", origin="simulated")  # fmt: skip
        assert main(["invert", "--model", "ge-resnet", "--spectrum", str(path), "--no-refine", "--json"]) == 0
        cap = capsys.readouterr()
        d = json.loads(cap.out)
        assert d["ei_check"]["inside"] is not said and ("lies below the incident energies" in cap.err) is said


def test_rule_c_limits_calibrated_inside_an_ei_range_hold_only_there(tmp_path):
    """``sqe_limits["ei_range_mev"]`` (rule C′): the limit applies to an input whose Ei lies inside
    the range; an input at another Ei, or without one, keeps 1; a damaged range is one line."""
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.models.ood import OODStats

    d = _folder(tmp_path)
    stats = OODStats.load(d / "ood.json")
    stats.sqe_limits = _limits(0.5) | {"ei_range_mev": [77.0, 133.0]}
    assert stats.sqe_limit(50.0, 1.0, 100.0)["limit"] == 0.5
    assert stats.sqe_limit(50.0, 1.0, 133.1)["limit"] == 0.5  # (0.1 % tolerance at the ends)
    assert stats.sqe_limit(50.0, 1.0, 60.0) is None and stats.sqe_limit(50.0, 1.0, None) is None
    # limits calibrated on another version of the check's verdicts (session 33) are not applied
    older = stats.sqe_limits
    stats.sqe_limits = {k: v for k, v in older.items() if k != "check_version"}
    assert stats.sqe_limit(50.0, 1.0, 100.0) is None
    stats.sqe_limits = older
    from fcinv_widgets.models import load_model

    model = load_model(d)
    for bad in ("abc", float("nan"), -1.0):  # refused before any score is computed
        with pytest.raises(FcinvError, match="ei_mev"):
            model.ood_check(np.ones(model.shape), measured=True, temperature_k=5.0, ei_mev=bad)
        with pytest.raises(FcinvError, match="ei_mev"):
            stats.flags(model, np.ones((1, *model.shape)), measured=True, ei_mev=bad)
    stats.save(d / "ood.json")
    assert OODStats.load(d / "ood.json").sqe_limits["ei_range_mev"] == [77.0, 133.0]
    rec = json.loads((d / "ood.json").read_text())
    for bad in ([133.0, 77.0], [77.0], "77-133", [0.0, 10.0], [77.0, float("nan")]):
        rec["sqe_limits"]["ei_range_mev"] = bad
        (d / "ood.json").write_text(json.dumps(rec))
        with pytest.raises(FcinvError, match="ei_range_mev"):
            OODStats.load(d / "ood.json")
