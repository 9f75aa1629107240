"""Single-scan OOD limits by incident energy (session 40): ``by_ei`` in a model's ``scan_limits`` /
``scan_limits_oriented`` (``models.ood.limits_at_ei``), the check's record of it, the file checks and
``benchmarks/ood_scan_limits.py --by-ei``."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from test_ood_limits import _folder, _refused, _script  # noqa: E402
from test_ood_scan import _bench_json, _row, _table  # noqa: E402

BY_EI = {
    "ei_mev": [80.0, 95.0, 110.0, 125.0],
    "limits": [
        {"refit": 0.2, "band": 0.5},
        {"refit": 0.3, "band": 0.4},
        {"refit": 0.25, "band": None},
        {"refit": 0.6, "band": 0.3},
    ],
    "n": [90, 91, 92, 93],
}


def test_limits_at_an_ei_are_the_larger_of_the_bracketing_calibrations():
    """Between two calibration Ei each score takes the larger of their limits (either direction of change
    covered); at a calibration Ei (to 0.1 %) its own; outside the span the largest of all; a score
    without a limit at either bracketing Ei has none."""
    from fcinv_widgets.models.ood import limits_at_ei

    assert limits_at_ei(BY_EI, 87.0) == ({"band": 0.5, "refit": 0.3}, [80.0, 95.0])
    assert limits_at_ei(BY_EI, 95.0) == ({"band": 0.4, "refit": 0.3}, [95.0])
    assert limits_at_ei(BY_EI, 95.05) == ({"band": 0.4, "refit": 0.3}, [95.0])  # within 0.1 %
    assert limits_at_ei(BY_EI, 96.0) == ({"band": None, "refit": 0.3}, [95.0, 110.0])
    assert limits_at_ei(BY_EI, 118.0) == ({"band": None, "refit": 0.6}, [110.0, 125.0])
    assert limits_at_ei(BY_EI, 130.0)[0] == {"band": None, "refit": 0.6}  # outside the span: all of them
    assert limits_at_ei(BY_EI, 78.0)[1] == BY_EI["ei_mev"]


@pytest.mark.parametrize(
    "damage, words",
    [
        ({"ei_mev": [80.0]}, "increasing"),
        ({"ei_mev": [95.0, 80.0, 110.0, 125.0]}, "increasing"),
        ({"ei_mev": [80.0, 95.0, 95.0, 125.0]}, "increasing"),
        ({"ei_mev": [80.0, "95", 110.0, 125.0]}, "increasing"),
        ({"ei_mev": [60.0, 95.0, 110.0, 125.0]}, "outside the table's Ei range"),
        ({"limits": BY_EI["limits"][:3]}, "one object per Ei"),
        ({"limits": [{"refit": -1.0}] * 4}, "finite number > 0"),
        ({"limits": [{"refit": None}] * 4}, "finite number > 0"),
        ({"limits": [{"refit": True}] * 4}, "finite number > 0"),
        ({"n": [90, 91, 92]}, "whole number"),
        ({"n": [90, 91, 0, 93]}, "whole number"),
        ({"n": [90, 91, 9.5, 93]}, "whole number"),
        ({"limits": [{"latent": 3.0}] * 4}, "measured regime"),  # a ResNet has no latent distance
    ],
)
def test_damaged_limits_by_ei_are_refused_in_one_line(tmp_path, damage, words):
    table = _table({"refit": 0.3}) | {"by_ei": BY_EI | damage}
    msg = _refused(tmp_path, {"scan_limits": table})
    assert words in msg and "by_ei" in msg and "\n" not in msg
    other = tmp_path / "oriented"
    other.mkdir()
    assert "by_ei" in _refused(other, {"scan_limits_oriented": _table({"refit": 0.3}) | {"by_ei": [1, 2]}})


def test_the_check_judges_a_single_scan_by_the_limits_at_its_ei(tmp_path, ge_input, monkeypatch):
    """With ``by_ei`` a single scan at Ei 87 meV is judged by the limits of the 80 and 95 meV calibrations
    (the larger of each), not by the table's pooled ones or another Ei's; the record and reason say which;
    the rule's note says "by Ei"; the table survives a save and load; full data is not touched."""
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import OODStats, note_sqe_input

    d = _folder(tmp_path)
    model = load_model(d)
    stats = model.ood_stats()
    once = stats.scores(model, ge_input, True, temperature_k=5.0)
    monkeypatch.setattr(stats, "scores", lambda m, x, measured=False, progress=False, temperature_k=None, orientation=None: once)
    refit = float(once["refit"][0])
    names = list(once)
    big = {k: 10.0 * float(once[k][0]) + 1.0 for k in names}

    def tables(at80, at95, at110):  # refit limits per calibration Ei, every other score far above its value
        return [big | {"refit": refit * f} for f in (at80, at95, at110)]

    pooled = {k: 100.0 * v for k, v in big.items()}
    by_ei = {"ei_mev": [80.0, 95.0, 110.0], "limits": tables(0.5, 1.2, 0.5), "n": [90, 90, 90]}
    stats.scan_limits = _table(pooled, rates={"own_n": 9, "own_flagged": 1, "other_n": 9, "other_flagged": 8, "other": "Nb"})
    stats.scan_limits["by_ei"] = by_ei

    rec = stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=87.0, single_scan=True)
    assert not rec["flag"] and rec["scan_rule"]["by_ei"] == {"ei_mev": [80.0, 95.0]}
    assert rec["components"]["refit"]["scan_limit"] == pytest.approx(1.2 * refit)
    assert "by Ei (the limits of the calibration at 80 and 95 meV)" in rec["reason"]
    rec = stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=100.0, single_scan=True)
    assert not rec["flag"]  # 95 and 110: the larger, 1.2
    stats.scan_limits["by_ei"] = by_ei | {"limits": tables(0.5, 0.9, 3.0)}
    rec = stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=87.0, single_scan=True)
    assert rec["flag"] and rec["ratio"] == pytest.approx(1 / 0.9)  # 110 meV's 3.0 plays no part at 87
    assert "1.1× its single-scan limit" in rec["reason"]
    assert not stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=105.0, single_scan=True)["flag"]
    assert stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=95.0, single_scan=True)["flag"]
    batch = np.stack([ge_input, ge_input])
    monkeypatch.setattr(
        stats,
        "scores",
        lambda m, x, measured=False, progress=False, temperature_k=None, orientation=None: {
            k: np.repeat(v, 2) for k, v in once.items()
        },
    )
    assert stats.flags(model, batch, measured=True, temperature_k=5.0, ei_mev=87.0, single_scan=True).tolist() == [True, True]
    assert stats.flags(model, batch, measured=True, temperature_k=5.0, ei_mev=105.0, single_scan=True).tolist() == [False, False]
    full = stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=87.0)
    assert "scan_rule" not in full and not full["single_scan"]

    sqe = {"intensity": "one-phonon-sqe", "ei_mev": 87.0}
    note = note_sqe_input({"regime": "measured", "weak_data": False, "single_scan": True, "scan_rule": {"n": 9}}, sqe, stats)
    assert "single-scan limits by Ei (rule S)" in note["input_note"]

    stats.save(d / "ood.json")
    back = OODStats.load(d / "ood.json")
    assert back.scan_limits["by_ei"]["ei_mev"] == [80.0, 95.0, 110.0]
    assert back.scan_limit(87.0)["by_ei"] == {"ei_mev": [80.0, 95.0]}
    assert back.scan_limit(87.0)["limits"]["refit"] == pytest.approx(0.9 * refit)


def test_ood_scan_limits_by_ei_calibrates_each_ei_and_tests_against_the_rule_in_place(tmp_path, capsys):
    """``--by-ei``: each calibration Ei's limits are rule S's on its own rows (⌈(n+1)(1−α/k)⌉-th smallest);
    the pooled "limits" the largest of them; held-out scans are judged against the check as it stands (the
    model's rule S) and the criterion is the one against a rule in place; ``--write`` replaces the table;
    one calibration Ei is refused, as are --excess and --write-rates."""
    from fcinv_widgets.models import load_model

    mod = _script("ood_scan_limits")
    d = _folder(tmp_path)
    stats = load_model(d).ood_stats()

    def write(name, rows):
        return _bench_json(tmp_path / name, d, rows, stats.measured)

    # the refit grows with Ei: 0.10–0.20 at 80 meV, 0.12–0.22 at 95, 0.30–0.40 at 125 (100 scans each)
    grids = {80.0: np.linspace(0.1, 0.2, 100), 95.0: np.linspace(0.12, 0.22, 100), 125.0: np.linspace(0.3, 0.4, 100)}
    cal = [_row("own", {"refit": float(v)}, ei=e) for e, vals in grids.items() for v in vals]
    one = write("one.json", cal[:100])
    cal_f = write("cal.json", cal)
    # rule S pooled over the three Ei, in place first (the "before")
    assert mod.main([cal_f, "--model", str(d), "--write"]) == 0
    pooled = load_model(d).ood_stats().scan_limits["limits"]["refit"]
    every = np.sort(np.concatenate(list(grids.values())))
    assert pooled == pytest.approx(every[int(np.ceil(301 * (1 - 0.05 / 4))) - 1])  # rank 298 of 300
    k = int(np.ceil(101 * (1 - 0.05 / 4)))  # rank 100 of 100: the largest at each Ei
    # held out: at 87 meV own scans 0.15 and Nb 0.25 (passes rule S's pooled ~0.4); at 120 meV own 0.35, Nb 0.5
    test = [_row("own", {"refit": 0.15}, ei=87.0)] * 5 + [_row("own", {"refit": 0.35}, ei=120.0)] * 5
    test += [_row("other", {"refit": 0.25}, ei=87.0)] * 5 + [_row("other", {"refit": 0.5}, ei=120.0)] * 5
    out_json = tmp_path / "r.json"
    capsys.readouterr()
    args = [cal_f, "--model", str(d), "--by-ei", "--test", write("test.json", test), "--json", str(out_json)]
    assert mod.main(args + ["--write"]) == 0
    out = capsys.readouterr().out
    got = load_model(d).ood_stats().scan_limits
    assert got["by_ei"]["ei_mev"] == [80.0, 95.0, 125.0] and got["by_ei"]["n"] == [100, 100, 100]
    for e, t in zip(got["by_ei"]["ei_mev"], got["by_ei"]["limits"]):
        assert t["refit"] == pytest.approx(np.sort(grids[e])[k - 1])
    assert got["limits"]["refit"] == pytest.approx(0.4) and got["n"] == 300
    assert "rule S by Ei" in out and "Ei 95 meV (100 scans)" in out
    rep = json.loads(out_json.read_text())
    own, other = rep["score"]["own"], rep["score"]["other"]
    assert (own["n"], own["before"], own["after"]) == (10, 0, 0)
    assert (other["n"], other["before"], other["after"]) == (10, 5, 10)  # at 87 meV the 80/95 limits (0.22) catch Nb
    assert rep["criteria"] == {"a_own_flagged_at_most_10pct_and_within_rule_s": True, "b_fewer_errors": True}
    assert rep["adopt"] and got["rates"]["other_flagged"] == 10
    with pytest.raises(SystemExit, match="two or more Ei"):
        mod.main([one, "--model", str(d), "--by-ei"])
    for extra in (["--oriented", "--excess"], ["--test", args[4], "--write-rates"]):
        with pytest.raises(SystemExit, match="--by-ei takes neither"):
            mod.main([cal_f, "--model", str(d), "--by-ei", *extra])
