"""Rule E (session 34): a limit on the refit's excess over the input's noise share, for one-phonon
S(Q,E) inputs (``refit_excess``, ``OODStats.sqe_excess``, ``benchmarks/ood_excess.py``)."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from test_ood_limits import _folder, _refused, _script  # noqa: E402
from test_ood_scan import _bench_json  # noqa: E402


def _excess(limit, min_coverage=0.0, ei_range=(77.0, 133.0)):
    from fcinv_widgets.models.ood import OOD_CHECK_VERSION

    return {
        "limit": limit,
        "n": 150,
        "min_coverage": min_coverage,
        "ei_range_mev": list(ei_range),
        "check_version": OOD_CHECK_VERSION,
    }


def test_refit_excess_is_the_refit_less_the_noise_share():
    """refit − 1/(1 + max(s, 0)); a noiseless input (s = ∞) has no noise share; NaN stays NaN."""
    from fcinv_widgets.models.ood import refit_excess

    got = refit_excess([0.3, 0.3, 0.3, 0.3, 0.3], [9.0, np.inf, -1.0, 0.0, np.nan])
    assert got[:4] == pytest.approx([0.2, 0.3, -0.7, -0.7]) and np.isnan(got[4])
    assert float(refit_excess(0.05, 19.0)) == pytest.approx(0.0)


def test_rule_e_flags_sqe_inputs_whose_refit_leaves_more_than_their_noise(tmp_path, ge_input, monkeypatch):
    """Without ``sqe_excess`` the record carries the excess (value, no limit) and the verdict is the
    check's; with it an S(Q,E) input (correction temperature, measured regime, not weak, known Ei
    inside the calibration's range, enough coverage) above the limit is flagged, naming rule E,
    and one below passes; at an Ei outside the range, of unknown Ei, with less coverage than the
    calibration's, or without a correction temperature the limit does not apply; ``flags`` agree
    with ``check``; the table survives a save and load."""
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import OODStats, refit_excess

    d = _folder(tmp_path)
    model = load_model(d)
    stats = model.ood_stats()
    stats.sqe_excess = {}  # (the shipped Ge models carry one since session 34)
    once = stats.scores(model, ge_input, True, temperature_k=5.0)  # the refit is the slow part
    scores = {5.0: once, None: once}
    monkeypatch.setattr(
        stats, "scores", lambda m, x, measured=False, progress=False, temperature_k=None, orientation=None: scores[temperature_k]
    )
    base = stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=80.0)
    assert not base["flag"] and not base["weak_data"]  # the right crystal, bright: the check as it stands passes it
    e = base["refit_excess"]["value"]
    assert e == pytest.approx(float(refit_excess(once["refit"][0], base["structure_to_noise"])))
    assert base["refit_excess"]["limit"] is None and abs(e) < 0.1  # the refit leaves about the noise

    stats.sqe_excess = _excess(e - 0.01)
    low = stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=80.0)
    assert low["flag"] and low["scores_flag"] and "rule E" in low["reason"] and low["refit_excess"]["limit"] == e - 0.01
    assert low["ratio"] == base["ratio"] and low["refit_excess"]["n"] == 150
    stats.sqe_excess = _excess(e + 0.01)
    high = stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=80.0)
    assert not high["flag"] and high["refit_excess"]["limit"] == e + 0.01 and "rule E" not in high["reason"]

    stats.sqe_excess = _excess(e - 0.01)
    coverage = float(np.isfinite(ge_input).mean())
    for kwargs in ({"ei_mev": 60.0}, {"ei_mev": None}):  # outside the calibration's Ei range, unknown Ei
        rec = stats.check(model, ge_input, measured=True, temperature_k=5.0, **kwargs)
        assert not rec["flag"] and rec["refit_excess"]["limit"] is None
    stats.sqe_excess = _excess(e - 0.01, min_coverage=min(1.0, coverage + 0.01))
    assert stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=80.0)["refit_excess"]["limit"] is None
    stats.sqe_excess = _excess(e - 0.01)
    assert stats.check(model, ge_input, measured=True, ei_mev=80.0)["refit_excess"] is None  # not an S(Q,E) input

    batch = np.stack([ge_input, ge_input])
    scores[5.0] = {k: np.repeat(v, 2) for k, v in once.items()}
    assert stats.flags(model, batch, measured=True, temperature_k=5.0, ei_mev=80.0).tolist() == [True, True]
    assert stats.flags(model, batch, measured=True, temperature_k=5.0, ei_mev=60.0).tolist() == [False, False]
    stats.sqe_excess = _excess(e + 0.01)
    assert stats.flags(model, batch, measured=True, temperature_k=5.0, ei_mev=80.0).tolist() == [False, False]

    stats.sqe_excess = _excess(e - 0.01) | {"alpha": 0.02, "command": "test"}
    stats.save(d / "ood.json")
    back = OODStats.load(d / "ood.json")
    assert back.sqe_excess["limit"] == pytest.approx(e - 0.01) and back.sqe_excess["command"] == "test"
    assert load_model(d).ood_stats().sqe_excess_limit(50.0, coverage, 100.0)["limit"] == pytest.approx(e - 0.01)


def test_rates_counted_under_another_rule_e_limit_are_not_quoted(tmp_path):
    """``sqe_rates`` record the rule-E limit their verdicts were counted under: with another (or
    none where the statistics now carry one) they describe another check and are not quoted."""
    from fcinv_widgets.models.ood import OOD_CHECK_VERSION, OODStats

    stats = OODStats.load(_folder(tmp_path) / "ood.json")
    counts = {"n": [20, 20], "flagged": [1, 2]}
    stats.sqe_rates = {
        "edges": [3.0, 10.0],
        "own": counts,
        "other": counts,
        "other_label": "Nb",
        "check_version": OOD_CHECK_VERSION,
    }
    stats.sqe_excess = {}
    assert stats.sqe_rate(5.0)["own_n"] == 20
    stats.sqe_excess = _excess(0.05)
    assert stats.sqe_rate(5.0) is None  # counted without rule E
    stats.sqe_rates["sqe_excess_limit"] = 0.05
    assert stats.sqe_rate(5.0)["own_n"] == 20
    stats.sqe_rates["sqe_excess_limit"] = 0.07
    assert stats.sqe_rate(5.0) is None


@pytest.mark.parametrize(
    "damage, words",
    [
        ({"limit": float("nan")}, "limit"),
        ({"limit": "0.1"}, "limit"),
        ({"limit": True}, "limit"),
        ({"n": 0}, "whole number"),
        ({"n": 2.5}, "whole number"),
        ({"min_coverage": 2.0}, "min_coverage"),
        ({"ei_range_mev": [133.0, 77.0]}, "ei_range_mev"),
        ({"ei_range_mev": None}, "ei_range_mev"),
        ({"check_version": 0}, "check_version"),
    ],
)
def test_damaged_excess_tables_are_refused_in_one_line(tmp_path, damage, words):
    assert words in _refused(tmp_path, {"sqe_excess": _excess(0.05) | damage})


def test_rates_with_a_damaged_rule_e_limit_are_refused_in_one_line(tmp_path):
    counts = {"n": [1], "flagged": [0]}
    rates = {"edges": [3.0], "own": counts, "other": counts, "other_label": "Nb", "sqe_excess_limit": "0.05"}
    assert "sqe_excess_limit" in _refused(tmp_path, {"sqe_rates": rates})


def _row(kind, snr, refit, ei=100.0, ratio=0.5, coverage=1.0):
    """A bench_ood_fit.py row with recorded scores: combined ratio ``ratio``, refit ``refit``."""
    return {
        "set": kind,
        "structure_to_noise": snr,
        "weak_data": False,
        "network_flag": ratio > 1.0,
        "coverage": coverage,
        "ei_mev": ei,
        "ood_score": ratio * 2.0,
        "ood_threshold": 2.0,
        "ood_components": {
            "feature": {"value": 0.0, "median": 1.0, "threshold": 5.0},
            "refit": {"value": refit, "median": 0.05, "threshold": 100.0},
        },
    }


def test_ood_excess_script_calibrates_inside_the_training_range_scores_and_writes(tmp_path, capsys):
    """benchmarks/ood_excess.py: the limit is the ⌈(n+1)(1−α)⌉-th smallest excess of the judged
    own-crystal rows inside the training Ei range (rows outside it and another crystal's are not
    calibration data; too few rows for α are refused); held-out scoring without / with rule E
    (a limit already in the file is not part of "without") with the pre-registered criteria;
    ``--write`` into ood.json, after which ood_rates.py counts flags under the limit and records
    it."""
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import OOD_CHECK_VERSION

    mod = _script("ood_excess")
    d = _folder(tmp_path)
    stats = load_model(d).ood_stats()
    excess = np.linspace(-0.02, 0.08, 60)  # the rows' excess: refit − 1/(1 + 9)
    cal = [_row("own", 9.0, float(v) + 0.1, ei=(80.0 if i % 2 else 125.0), coverage=0.9) for i, v in enumerate(excess)]
    cal += [_row("own", 9.0, 5.0, ei=60.0), _row("other", 9.0, 5.0)]  # outside the training range; another crystal

    def write(name, rows):
        return _bench_json(tmp_path / name, d, rows, stats.measured, scans=None)  # full-data rows

    test = [_row("own", 9.0, 0.1), _row("own", 9.0, 0.2), _row("other", 9.0, 0.3), _row("other", 9.0, 0.3, ratio=2.0)]
    test += [_row("other", 9.0, 0.3, ei=60.0), _row("other", 9.0, 0.3, coverage=0.5)]  # outside: rule E does not apply
    out_json = tmp_path / "e.json"
    args = [write("cal.json", cal), "--model", str(d), "--test", write("test.json", test), "--json", str(out_json)]
    assert mod.main(args + ["--write"]) == 0
    out = capsys.readouterr().out
    ex = load_model(d).ood_stats().sqe_excess
    k = int(np.ceil(61 * 0.98))  # rank 60 of 60
    assert ex["limit"] == pytest.approx(np.sort(excess)[k - 1]) and ex["n"] == 60
    assert ex["min_coverage"] == pytest.approx(0.9) and ex["ei_range_mev"] == [pytest.approx(77.0), pytest.approx(133.0)]
    assert ex["calibration_ei_mev"] == [80.0, 125.0] and ex["check_version"] == OOD_CHECK_VERSION
    rep = json.loads(out_json.read_text())
    own, other = rep["score"]["own"], rep["score"]["other"]
    assert (own["n"], own["before"], own["after"]) == (2, 0, 1)  # excess 0.1 > limit 0.08: flagged
    assert (other["n"], other["before"], other["after"]) == (4, 1, 2)
    assert rep["criteria"] == {"a_own_flagged_within": True, "b_other_caught_more": True, "c_fewer_errors": False}
    assert rep["adopt"] is False and "wrote sqe_excess" in out and "ood_rates.py --write" in out
    capsys.readouterr()
    assert mod.main(args) == 0  # again, the limit now in the file: the same scores
    assert json.loads(out_json.read_text())["score"] == rep["score"]
    rates = _script("ood_rates")
    assert rates.main([write("t2.json", test), "--model", str(d), "--edges", "3", "--write"]) == 0
    got = load_model(d).ood_stats()
    assert got.sqe_rates["own"]["flagged"] == [1] and got.sqe_rates["other"]["flagged"] == [2]
    assert got.sqe_rates["sqe_excess_limit"] == pytest.approx(ex["limit"]) and got.sqe_rate(9.0)["own_flagged"] == 1
    with pytest.raises(SystemExit, match="too few"):
        mod.main([write("few.json", cal[:20]), "--model", str(d)])


# ------------------------------------------------------------------------------ rule E by Ei (session 41)
BY_EI = {"ei_mev": [80.0, 95.0, 110.0, 125.0], "limits": [{"excess": v} for v in (0.11, 0.04, 0.06, 0.09)], "n": [50, 60, 70, 80]}


def test_rule_e_by_ei_judges_an_input_by_the_larger_of_its_bracketing_calibration_ei(tmp_path):
    """87 meV lies between 80 (0.11) and 95 (0.04): 0.11, from 80; 103 between 95 and 110: 0.06; a
    calibration Ei its own; inside the training range but outside the grid (78, 130): the largest;
    outside the training range: none. The record names the Ei whose limit it is."""
    from fcinv_widgets.models.ood import OODStats

    stats = OODStats.load(_folder(tmp_path) / "ood.json")
    stats.sqe_excess = _excess(0.2) | {"by_ei": BY_EI}
    got = {ei: stats.sqe_excess_limit(50.0, 1.0, ei) for ei in (87.0, 103.0, 95.0, 78.0, 130.0, 60.0)}
    assert got[87.0] == {"limit": 0.11, "n": 50, "by_ei": {"ei_mev": [80.0, 95.0], "limit_at_ei_mev": 80.0}}
    assert got[103.0] == {"limit": 0.06, "n": 70, "by_ei": {"ei_mev": [95.0, 110.0], "limit_at_ei_mev": 110.0}}
    assert got[95.0]["limit"] == 0.04 and got[95.0]["by_ei"]["ei_mev"] == [95.0]
    assert got[78.0]["limit"] == got[130.0]["limit"] == 0.11 and got[60.0] is None
    stats.sqe_excess = _excess(0.2)
    assert stats.sqe_excess_limit(50.0, 1.0, 103.0) == {"limit": 0.2, "n": 150}  # without by_ei: the one limit


def test_rule_e_by_ei_in_the_check_and_the_rates_it_is_quoted_with(tmp_path, ge_input, monkeypatch):
    """The check flags an S(Q,E) input whose excess passes the pooled limit but not its Ei's, naming
    rule E by Ei and the calibration Ei; the table survives a save and load; rates are quoted only
    when counted under the same limits by Ei."""
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import OOD_CHECK_VERSION, OODStats

    d = _folder(tmp_path)
    model = load_model(d)
    stats = model.ood_stats()
    stats.sqe_excess = {}
    once = stats.scores(model, ge_input, True, temperature_k=5.0)
    monkeypatch.setattr(stats, "scores", lambda m, x, measured=False, progress=False, temperature_k=None, orientation=None: once)
    e = stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=95.0)["refit_excess"]["value"]
    lims = [e + 0.05, e - 0.005, e + 0.05, e + 0.05]
    by = {"ei_mev": [80.0, 95.0, 110.0, 125.0], "limits": [{"excess": v} for v in lims], "n": [50, 60, 70, 80]}
    stats.sqe_excess = _excess(e + 0.05) | {"by_ei": by}
    rec = stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=95.0)
    assert rec["flag"] and "at Ei 95 meV: rule E by Ei" in rec["reason"] and rec["refit_excess"]["n"] == 60
    assert not stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=125.0)["flag"]
    assert stats.flags(model, ge_input[None], measured=True, temperature_k=5.0, ei_mev=95.0).tolist() == [True]
    stats.save(d / "ood.json")
    back = OODStats.load(d / "ood.json")
    assert back.sqe_excess["by_ei"]["limits"] == [{"excess": pytest.approx(v)} for v in lims]

    counts = {"n": [20], "flagged": [1]}
    back.sqe_rates = {"edges": [3.0], "own": counts, "other": counts, "other_label": "Nb", "check_version": OOD_CHECK_VERSION}
    back.sqe_rates["sqe_excess_limit"] = back.sqe_excess["limit"]
    assert back.sqe_rate(5.0) is None  # counted under the pooled limit alone: another check
    back.sqe_rates["sqe_excess_by_ei"] = [t["excess"] for t in back.sqe_excess["by_ei"]["limits"]]
    assert back.sqe_rate(5.0)["own_n"] == 20


@pytest.mark.parametrize(
    "damage, words",
    [
        ({"ei_mev": [80.0]}, "increasing"),
        ({"limits": [{"refit": 0.1}] * 4}, "excess"),
        ({"limits": [{"excess": None}] * 4}, "excess"),
        ({"n": [1, 2, 3]}, "whole number"),
        ({"ei_mev": [60.0, 95.0, 110.0, 125.0]}, "outside"),
    ],
)
def test_damaged_excess_limits_by_ei_are_refused_in_one_line(tmp_path, damage, words):
    msg = _refused(tmp_path, {"sqe_excess": _excess(0.05) | {"by_ei": BY_EI | damage}})
    assert words in msg and "sqe_excess" in msg


def test_rates_with_damaged_limits_by_ei_are_refused_in_one_line(tmp_path):
    counts = {"n": [1], "flagged": [0]}
    rates = {"edges": [3.0], "own": counts, "other": counts, "other_label": "Nb", "sqe_excess_by_ei": ["x"]}
    assert "sqe_excess_by_ei" in _refused(tmp_path, {"sqe_rates": rates})


def test_ood_excess_script_by_ei_calibrates_each_ei_and_scores_against_the_rule_in_place(tmp_path, capsys):
    """``--by-ei``: one limit per calibration Ei from its rows alone (the ⌈(n+1)(1−α)⌉-th smallest),
    the top-level limit their largest; scored against the check as it stands (the file's pooled rule
    E included), so a held-out input the pooled limit already flags stays flagged 'before'."""
    from fcinv_widgets.models import load_model

    mod = _script("ood_excess")
    d = _folder(tmp_path)
    stats = load_model(d).ood_stats()
    lo, hi = np.linspace(-0.02, 0.03, 60), np.linspace(0.0, 0.12, 60)  # 80 meV quiet, 125 meV loud
    cal = [_row("own", 9.0, float(v) + 0.1, ei=80.0) for v in lo] + [_row("own", 9.0, float(v) + 0.1, ei=125.0) for v in hi]

    def write(name, rows):
        return _bench_json(tmp_path / name, d, rows, stats.measured, scans=None)  # full-data rows

    # the file's rule E as it stands: one pooled limit 0.10
    stats.sqe_excess = _excess(0.10)
    stats.save(d / "ood.json")
    # held out at 80 meV: own 0.02 (passes both), other 0.06 (caught by Ei only), other 0.15 (caught by both)
    test = [_row("own", 9.0, 0.12, ei=80.0), _row("other", 9.0, 0.16, ei=80.0), _row("other", 9.0, 0.25, ei=80.0)]
    out_json = tmp_path / "e.json"
    args = [write("cal.json", cal), "--model", str(d), "--by-ei", "--test", write("test.json", test), "--json", str(out_json)]
    assert mod.main(args) == 0
    out = capsys.readouterr().out
    rep = json.loads(out_json.read_text())
    ex = rep["sqe_excess"]
    k = int(np.ceil(61 * 0.98))
    assert ex["by_ei"]["ei_mev"] == [80.0, 125.0] and ex["by_ei"]["n"] == [60, 60]
    assert ex["by_ei"]["limits"][0]["excess"] == pytest.approx(np.sort(lo)[k - 1])
    assert ex["by_ei"]["limits"][1]["excess"] == pytest.approx(np.sort(hi)[k - 1])
    assert ex["limit"] == pytest.approx(np.sort(hi)[k - 1]) and ex["n"] == 120
    own, other = rep["score"]["own"], rep["score"]["other"]
    assert (own["before"], own["after"]) == (0, 0) and (other["before"], other["after"]) == (1, 2)
    assert rep["adopt"] is True and "by Ei: 80 meV" in out and "as it stands" in out
    # --vs-current: one pooled limit from the same rows (rank 119 of 120), against the same check
    assert mod.main(args[:3] + ["--vs-current"] + args[4:]) == 0
    rep = json.loads(out_json.read_text())
    pooled = np.sort(np.concatenate([lo, hi]))[int(np.ceil(121 * 0.98)) - 1]
    assert "by_ei" not in rep["sqe_excess"] and rep["sqe_excess"]["limit"] == pytest.approx(pooled)
    assert (rep["score"]["other"]["before"], rep["score"]["other"]["after"]) == (1, 1) and rep["adopt"] is False
    assert "with the new rule E" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="two or more Ei"):
        mod.main([write("one.json", cal[:60]), "--model", str(d), "--by-ei"])
