"""Rule S (session 35): the OOD check's own limits for one single-orientation scan of a one-phonon
S(Q,E) (``OODStats.scan_limits``, ``check(single_scan=True)``, ``benchmarks/ood_scan_limits.py``)."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from test_ood_limits import _folder, _refused, _script  # noqa: E402


def _table(limits, ei_range=(77.0, 133.0), rates=None):
    from fcinv_widgets.models.ood import OOD_CHECK_VERSION

    return {
        "limits": dict(limits),
        "n": 200,
        "ei_range_mev": list(ei_range),
        "check_version": OOD_CHECK_VERSION,
        **({"rates": rates} if rates else {}),
    }


def test_rule_s_judges_a_single_scan_by_each_score_against_its_own_limit(tmp_path, ge_input, monkeypatch):
    """With ``scan_limits`` a single scan (S(Q,E) input: correction temperature, measured regime, not
    weak, known Ei inside the calibration's range) is flagged iff a score exceeds its single-scan
    limit — the combined score and rules C/E take no part — and the record says so (``scan_rule``,
    the reason naming rule S and the score); the same input as full data, at an Ei outside the range,
    of unknown Ei or without a correction temperature keeps the check as it stands; ``flags`` agree
    with ``check``; the table survives a save and load."""
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import OODStats

    d = _folder(tmp_path)
    model = load_model(d)
    stats = model.ood_stats()
    once = stats.scores(model, ge_input, True, temperature_k=5.0)  # the refit is the slow part
    scores = {5.0: once, None: once}
    monkeypatch.setattr(
        stats, "scores", lambda m, x, measured=False, progress=False, temperature_k=None, orientation=None: scores[temperature_k]
    )
    base = stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=80.0)
    assert base["single_scan"] is False and "scan_rule" not in base
    values = {k: float(v[0]) for k, v in once.items()}
    stats.scan_limits = _table({k: 1.1 * v for k, v in values.items()})
    ok = stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=80.0, single_scan=True)
    assert not ok["flag"] and ok["single_scan"] and ok["scan_rule"]["n"] == 200 and "rule S" in ok["reason"]
    assert ok["ratio"] == pytest.approx(1 / 1.1) and ok["components"]["refit"]["scan_limit"] == pytest.approx(
        1.1 * values["refit"]
    )
    assert ok["refit_excess"] is None and ok["signal_limit"] is None

    stats.scan_limits = _table({k: (0.5 if k == "refit" else 1.1) * v for k, v in values.items()} | {"band": None})
    hit = stats.check(model, ge_input, measured=True, temperature_k=5.0, ei_mev=80.0, single_scan=True)
    assert hit["flag"] and hit["scores_flag"] and hit["ratio"] == pytest.approx(2.0)
    assert "refitted under measurement effects 2.0× its single-scan limit" in hit["reason"] and "rule S" in hit["reason"]
    assert hit["components"]["band"]["scan_limit"] is None

    stats.scan_limits = _table({k: 0.5 * v for k, v in values.items()})  # every score over: a flag wherever rule S applies
    for kwargs in ({"ei_mev": 60.0}, {"ei_mev": None}, {"ei_mev": 80.0, "single_scan": False}):
        rec = stats.check(model, ge_input, measured=True, temperature_k=5.0, **({"single_scan": True} | kwargs))
        assert "scan_rule" not in rec and rec["flag"] == base["flag"]
    assert "scan_rule" not in stats.check(model, ge_input, measured=True, ei_mev=80.0, single_scan=True)  # not an S(Q,E)

    batch = np.stack([ge_input, ge_input])
    scores[5.0] = {k: np.repeat(v, 2) for k, v in once.items()}
    assert stats.flags(model, batch, measured=True, temperature_k=5.0, ei_mev=80.0, single_scan=True).tolist() == [True, True]
    assert (
        stats.flags(model, batch, measured=True, temperature_k=5.0, ei_mev=60.0, single_scan=True).tolist() == [base["flag"]] * 2
    )
    stats.scan_limits = _table({k: 1.1 * v for k, v in values.items()})
    assert stats.flags(model, batch, measured=True, temperature_k=5.0, ei_mev=80.0, single_scan=True).tolist() == [False, False]

    stats.scan_limits = _table({"refit": 0.2}) | {"alpha": 0.05, "command": "test"}
    stats.save(d / "ood.json")
    back = OODStats.load(d / "ood.json")
    assert back.scan_limits["limits"] == {"refit": 0.2} and back.scan_limits["command"] == "test"
    assert load_model(d).ood_stats().scan_limit(100.0) == {"limits": {"refit": 0.2}, "n": 200}
    assert back.scan_limit(140.0) is None


def test_invert_passes_single_scan_to_the_check(tmp_path, ge_pair, monkeypatch):
    """``Inverter.invert(single_scan=True)`` (``fcinv invert --single-scan``) asks the OOD check for
    a single scan; the default is full data."""
    from fcinv_widgets import get_material
    from fcinv_widgets.models import load_model
    from fcinv_widgets.spectrum_io import write_spectrum

    ge = get_material("Ge")
    path = tmp_path / "scan.h5"
    write_spectrum(path, ge_pair[0], ge.grid, material="Ge", kind="full-sqe", temperature_k=5.0, ei_mev=80.0,
                   qmax_inv_a=4.0, intensity="one-phonon-sqe", origin="simulated")  # fmt: skip
    model = load_model(_folder(tmp_path))
    stats = model.ood_stats()
    seen = []

    def check(m, x, measured=False, temperature_k=None, ei_mev=None, single_scan=False, orientation=None):
        seen.append(single_scan)
        return {"flag": False, "regime": "measured", "weak_data": False, "single_scan": single_scan}

    monkeypatch.setattr(stats, "check", check)
    out = model.invert(str(path), refine=False, single_scan=True)
    model.invert(str(path), refine=False)
    assert seen == [True, False]
    assert out["ood"]["input_note"].startswith("a single scan")  # no scan_rule: the full-data thresholds' caveat


def test_invert_fits_a_single_scan_with_its_orientation(tmp_path, ge_pair, monkeypatch):
    """``Inverter.invert(scan_deg=ω, u=, v=)`` (``fcinv invert --scan``, session 36): a single scan
    (implied) whose physics fit gets that orientation (``refine_spectrum(scan=, u=, v=)``, not the
    fold over every equivalent); of a scan set it inverts that scan's image, not the union; the
    result records ``scan_deg`` and the axes it was taken with (``scan_axes``); bad angles and axes are refused in one line."""
    from fcinv_widgets import get_material
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.models import load_model
    from fcinv_widgets.scans import simulate_scans
    from fcinv_widgets.spectrum_io import write_spectrum

    ge = get_material("Ge")
    plain = tmp_path / "scan.h5"
    write_spectrum(plain, ge_pair[0], ge.grid, material="Ge", kind="full-sqe", temperature_k=5.0, ei_mev=80.0,
                   qmax_inv_a=4.0, intensity="one-phonon-sqe", origin="simulated")  # fmt: skip
    ss = simulate_scans(ge, 80.0, [20.0, 40.0], qmax=3.0, u=(1, 0, 0), v=(0, 1, 0), progress=False)
    sets = tmp_path / "scans.h5"
    ss.save(sets)
    model = load_model(_folder(tmp_path))
    seen = []

    def fit(self, out, spec, image, corrections, progress=False, single_scan=False, scan=None):
        seen.append((spec.image, single_scan, scan))
        return out | {"fc_source": "network"}

    monkeypatch.setattr(type(model), "_refine", fit)
    out = model.invert(str(plain), refine=True, ood=False, scan_deg=30, u=(1, 0, 0), v=(0, 1, 0))
    assert out["scan_deg"] == 30.0 and out["sigma_regime"].endswith("-scan")
    assert seen[-1][1] and seen[-1][2] == {"scan": 30.0, "u": [1.0, 0.0, 0.0], "v": [0.0, 1.0, 0.0]}
    assert out["scan_axes"] == {"u": [1.0, 0.0, 0.0], "v": [0.0, 1.0, 0.0]}  # what the input was taken as
    assert model.invert(str(plain), refine=False, ood=False, scan_deg=30)["scan_axes"] == {"u": [1, 1, 0], "v": [0, 0, 1]}
    out = model.invert(str(sets), refine=True, ood=False, scan_deg=40)
    img, one, scan = seen[-1]
    assert np.array_equal(img, ss.scans[1], equal_nan=True) and one and scan == {"scan": 40.0, "u": None, "v": None}
    assert out["scan_axes"] == {"u": [1.0, 0.0, 0.0], "v": [0.0, 1.0, 0.0]}  # the set's own axes
    assert out["coverage"] == pytest.approx(float(np.isfinite(ss.scans[1]).mean()))
    out = model.invert(str(sets), refine=True, ood=False)  # no angle: the union, full data
    assert np.array_equal(seen[-1][0], ss.full, equal_nan=True) and not seen[-1][1] and seen[-1][2] == {}
    assert "scan_deg" not in out
    for kwargs, words in (
        ({"scan_deg": 41}, "no scan at ω = 41°"),
        ({"scan_deg": float("nan")}, "scan_deg"),
        ({"scan_deg": "40"}, "scan_deg"),
        ({"u": (1, 0, 0)}, "give its angle too"),
        ({"scan_deg": 40, "u": (1, 1, 0), "v": (2, 2, 0)}, "not parallel"),
        ({"scan_deg": 40, "u": "x"}, "u"),
        ({"scan_deg": 40, "u": (1, 0, 0), "v": (0, 1, 0)}, "records its sample axes"),
    ):
        with pytest.raises(FcinvError, match=words):
            model.invert(str(sets), refine=True, ood=False, **kwargs)


def test_a_single_scan_fitted_without_its_angle_says_so(tmp_path, ge_pair, monkeypatch, capsys):
    """A single scan whose angle was not given is not fitted by default (the file cannot say its
    orientation, and the fit could only fold every equivalent): ``refine_policy`` says why; forced
    (``refine=True``) the fit's record carries ``scan_angle_note`` and ``fcinv invert`` prints it as
    a warning; with the angle, or for full data, the fit runs by default and there is no note."""
    from types import SimpleNamespace

    from fcinv_widgets import get_material
    from fcinv_widgets.analysis import refine
    from fcinv_widgets.cli import main
    from fcinv_widgets.models import load_model
    from fcinv_widgets.spectrum_io import write_spectrum

    ge = get_material("Ge")
    path = tmp_path / "scan.h5"
    write_spectrum(path, ge_pair[0], ge.grid, material="Ge", kind="full-sqe", temperature_k=5.0, ei_mev=80.0,
                   qmax_inv_a=4.0, intensity="one-phonon-sqe", origin="simulated")  # fmt: skip
    folder = _folder(tmp_path)
    model = load_model(folder)

    def fake(material, spec, temperature_k, scan=None, **kwargs):
        fc = np.asarray(ge.reference_params, float)[ge.active]
        d = {"fc": fc.tolist(), "fc_std": None}
        return SimpleNamespace(orientations=None if scan is None else [scan], to_dict=lambda: d)

    monkeypatch.setattr(refine, "refine_spectrum", fake)
    auto = model.invert(str(path), ood=False, single_scan=True)  # by default no fit without the angle
    assert not auto["refine_policy"]["refine"] and "--scan DEG" in auto["refine_policy"]["reason"]
    assert auto["fc_source"] == "network" and "refined" not in auto
    auto = model.invert(str(path), ood=False, scan_deg=30)
    assert auto["refine_policy"]["refine"] and auto["fc_source"] == "refined"
    assert model.invert(str(path), ood=False)["refine_policy"]["refine"]  # full data: as before
    note = model.invert(str(path), refine=True, ood=False, single_scan=True)["refined"].get("scan_angle_note")
    assert note and "--scan DEG" in note and "not trusted" in note
    assert "scan_angle_note" not in model.invert(str(path), refine=True, ood=False, scan_deg=30)["refined"]
    assert "scan_angle_note" not in model.invert(str(path), refine=True, ood=False)["refined"]
    capsys.readouterr()
    args = ["invert", "--model", str(folder), "--spectrum", str(path), "--refine", "--json", "--no-progress"]
    assert main([*args, "--single-scan"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "sample angle was not given" in err
    assert main([*args, "--scan", "30", "--u", "1,1,0", "--v", "0,0,1"]) == 0
    out = capsys.readouterr()
    assert "sample angle" not in out.err and json.loads(out.out)["scan_deg"] == 30.0


@pytest.mark.parametrize("bad", ["no", "False", 1, 0, None, [True], np.array([True, False])])
def test_switches_that_are_not_true_or_false_are_refused(tmp_path, ge_input, bad):
    """``single_scan``, ``raw``, ``ood``, ``progress`` and ``refine`` of ``Inverter.invert``, and
    ``measured`` / ``single_scan`` / ``return_weak`` of ``OODStats.check/flags``, take True or False
    (``refine`` also None): text such as "no" is truthy and was taken as True (a single scan judged
    by rule S, a spectrum fed raw) — now one line naming the argument; NumPy bools still count."""
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.models import load_model

    model = load_model(_folder(tmp_path))
    stats = model.ood_stats()
    calls = {
        "single_scan": lambda v: model.invert(ge_input, refine=False, single_scan=v),
        "raw": lambda v: model.invert(ge_input, refine=False, ood=False, raw=v),
        "ood": lambda v: model.invert(ge_input, refine=False, ood=v),
        "progress": lambda v: model.invert(ge_input, refine=False, ood=False, progress=v),
        "measured": lambda v: stats.check(model, ge_input, measured=v),
        "return_weak": lambda v: stats.flags(model, ge_input, return_weak=v),
    }
    calls["single_scan "] = lambda v: stats.flags(model, ge_input, single_scan=v)
    if bad is not None:  # None is refine's default (decide by the input)
        calls["refine"] = lambda v: model.invert(ge_input, ood=False, refine=v)
    for name, call in calls.items():
        with pytest.raises(FcinvError, match=rf"^{name.strip()} must be True(, False or None| or False), got"):
            call(bad)
    out = model.invert(ge_input, refine=np.bool_(False), ood=False, single_scan=np.bool_(True), raw=np.bool_(False))
    assert out["fc_source"] == "network" and out["sigma_regime"] is not None


def test_a_single_scan_is_not_quoted_the_full_data_rates(tmp_path):
    """A single scan's record never gets the full-data ``sqe_flag_rates``; judged by rule S its note
    quotes the held-out single-scan rates, else the caveat that the thresholds were not calibrated
    on scans."""
    from fcinv_widgets.models.ood import OOD_CHECK_VERSION, SCAN_INPUT_NOTE, OODStats, note_sqe_input

    stats = OODStats.load(_folder(tmp_path) / "ood.json")
    counts = {"n": [40], "flagged": [1]}
    stats.sqe_excess, stats.scan_rates = {}, {}  # (what the shipped ge-resnet carries)
    stats.sqe_rates = {"edges": [3.0], "own": counts, "other": counts, "other_label": "Nb", "check_version": OOD_CHECK_VERSION}
    sqe = {"intensity": "one-phonon-sqe", "ei_mev": 80.0}
    rec = {"regime": "measured", "weak_data": False, "structure_to_noise": 50.0, "single_scan": False}
    assert "sqe_flag_rates" in note_sqe_input(dict(rec), sqe, stats)  # full data: the rates
    got = note_sqe_input(rec | {"single_scan": True}, sqe, stats)
    assert got["input_note"] == SCAN_INPUT_NOTE and "sqe_flag_rates" not in got
    rates = {"own_n": 90, "own_flagged": 3, "other_n": 80, "other_flagged": 60, "other": "Nb folded on the Ge path"}
    stats.scan_limits = _table({"refit": 0.3}, rates=rates)
    got = note_sqe_input(rec | {"single_scan": True, "scan_rule": {"n": 200}}, sqe, stats)
    assert "rule S" in got["input_note"] and "3 of 90 (3%)" in got["input_note"] and "60 of 80 (75%)" in got["input_note"]
    # without rule S: the check's own single-scan rates where measured (scan_rates), counted without rule S
    stats.scan_rates = rates | {"own_flagged": 45, "check_version": OOD_CHECK_VERSION}
    assert note_sqe_input(rec | {"single_scan": True}, sqe, stats)["input_note"] == SCAN_INPUT_NOTE  # (rule S present)
    stats.scan_limits = {}
    got = note_sqe_input(rec | {"single_scan": True}, sqe, stats)["input_note"]
    assert "full-data thresholds" in got and "45 of 90 (50%)" in got and "scan_rates" in got
    stats.scan_rates["check_version"] = OOD_CHECK_VERSION + 1
    assert note_sqe_input(rec | {"single_scan": True}, sqe, stats)["input_note"] == SCAN_INPUT_NOTE


@pytest.mark.parametrize(
    "damage, words",
    [
        ({"limits": {}}, "limits"),
        ({"limits": {"refit": None}}, "limits"),
        ({"limits": {"refit": -0.1}}, "limits"),
        ({"limits": {"refit": "0.1"}}, "limits"),
        ({"limits": {"refit": True}}, "limits"),
        ({"limits": [0.1]}, "limits"),
        ({"limits": {"latent": 3.0}}, "measured regime"),  # a ResNet has no latent distance
        ({"n": 0}, "whole number"),
        ({"ei_range_mev": [133.0, 77.0]}, "ei_range_mev"),
        ({"rates": {"own_n": 3, "own_flagged": 4, "other_n": 1, "other_flagged": 0, "other": "Nb"}}, "rates"),
        ({"rates": {"own_n": 3, "own_flagged": 1, "other_n": 1, "other_flagged": 0}}, "rates"),
        ({"check_version": 0}, "check_version"),
    ],
)
def test_damaged_scan_tables_are_refused_in_one_line(tmp_path, damage, words):
    assert words in _refused(tmp_path, {"scan_limits": _table({"refit": 0.3}) | damage})


@pytest.mark.parametrize(
    "damage", [{"own_flagged": 91}, {"other_n": -1}, {"own_n": 9.5}, {"other": None}, {"check_version": "2"}]
)
def test_damaged_scan_rates_are_refused_in_one_line(tmp_path, damage):
    rates = {"own_n": 90, "own_flagged": 3, "other_n": 80, "other_flagged": 60, "other": "Nb"}
    assert "scan_rates" in _refused(tmp_path, {"scan_rates": rates | damage})


def _bench_json(path, model_dir, rows, measured, scans="0:120", oriented=None) -> str:
    """Write a ``bench_ood_fit.py`` output of ``rows`` for the model folder ``model_dir`` (its
    checkpoint's hash, the measured-regime thresholds ``measured``, the current check version) to
    ``path``; ``scans``: its ``--scan-angles`` setting (None: full data); ``oriented``: its
    ``--oriented-scores`` setting, when given. Returns the path as a string."""
    from fcinv_widgets.models.ood import OOD_CHECK_VERSION, file_sha256

    settings = {"model": str(model_dir), "n": len(rows), "n_other": 0, "seed": 1, "temperatures": "5", "counts": "30,300"}
    settings |= {"scan_angles": scans} | ({} if oriented is None else {"oriented_scores": oriented})
    rec = {"settings": settings, "model_sha256": file_sha256(Path(model_dir) / "model.pt"), "ood_measured_regime": measured}
    Path(path).write_text(json.dumps(rec | {"ood_check_version": OOD_CHECK_VERSION, "rows": rows}))
    return str(path)


def _row(kind, values: dict, ei=100.0, snr=50.0):
    """A bench_ood_fit.py --scan-angles row with recorded measured-regime scores ``values``."""
    thresholds = {"feature": 14.0, "residual": 2.8, "refit": 0.4, "band": 1.2}
    comps = {k: {"value": values.get(k, 1.0), "median": 1.0, "threshold": t} for k, t in thresholds.items()}
    return {
        "set": kind,
        "structure_to_noise": snr,
        "weak_data": False,
        "network_flag": False,
        "coverage": 0.9,
        "ei_mev": ei,
        "scan_deg": 30.0,
        "ood_score": 3.0 if values.get("refit", 0.0) > 0.2 else 0.1,  # the combined score: over for a large refit
        "ood_threshold": 1.0,
        "ood_components": comps,
    }


def test_ood_scan_limits_script_calibrates_scores_writes_and_keeps_scans_apart(tmp_path, capsys):
    """benchmarks/ood_scan_limits.py: each score's limit is the ⌈(n+1)(1−α/k)⌉-th smallest of the
    judged own-crystal scans inside the training Ei range; held-out scoring without / with rule S
    and the pre-registered criteria; ``--write`` stores the limits and the held-out rates; full-data
    rows are refused here and scan rows by the full-data scripts."""
    from fcinv_widgets.models import load_model

    mod = _script("ood_scan_limits")
    d = _folder(tmp_path)
    stats = load_model(d).ood_stats()
    refit = np.linspace(0.1, 0.3, 200)
    cal = [
        _row("own", {"refit": float(v), "residual": 2.0 + 0.001 * i}, ei=(80.0 if i % 2 else 125.0)) for i, v in enumerate(refit)
    ]
    cal += [_row("own", {"refit": 5.0}, ei=60.0), _row("other", {"refit": 5.0})]  # outside the range; another crystal

    def write(name, rows, scans="0:120"):
        return _bench_json(tmp_path / name, d, rows, stats.measured, scans)

    test = [_row("own", {"refit": 0.25}), _row("own", {"refit": 0.35}), _row("own", {"refit": 0.22})]
    test += [
        _row("other", {"refit": 0.25, "residual": 3.5}),
        _row("other", {"refit": 0.1}),
        _row("other", {"refit": 0.25}, ei=60.0),
    ]
    out_json = tmp_path / "s.json"
    args = [write("cal.json", cal), "--model", str(d), "--test", write("test.json", test), "--json", str(out_json)]
    assert mod.main(args[:3] + ["--test", args[4], "--write-rates"]) == 0  # the check's own rates, without rule S
    rates = load_model(d).ood_stats().scan_rates
    assert rates["own_flagged"] == 3 and rates["other_flagged"] == 2 and rates["own_n"] == 3 and not stats.scan_limits
    with pytest.raises(SystemExit, match="needs --test"):
        mod.main(args[:3] + ["--write-rates"])
    capsys.readouterr()
    assert mod.main(args + ["--write"]) == 0
    out = capsys.readouterr().out
    got = load_model(d).ood_stats().scan_limits
    k = int(np.ceil(201 * (1 - 0.05 / 4)))  # rank 199 of 200
    assert got["limits"]["refit"] == pytest.approx(np.sort(refit)[k - 1]) and got["n"] == 200
    assert got["limits"]["residual"] == pytest.approx(2.0 + 0.001 * (k - 1)) and got["limits"]["feature"] == 1.0
    assert got["ei_range_mev"] == [pytest.approx(77.0), pytest.approx(133.0)] and got["calibration_ei_mev"] == [80.0, 125.0]
    rep = json.loads(out_json.read_text())
    own, other = rep["score"]["own"], rep["score"]["other"]
    assert (own["n"], own["before"], own["after"]) == (3, 3, 1)  # the combined score flagged all three; rule S one
    assert (other["n"], other["before"], other["after"]) == (3, 2, 2)  # at Ei 60 (outside) the check as it stands
    assert rep["criteria"] == {"a_own_flagged_at_most_10pct_and_halved": False, "b_fewer_errors": True}
    assert got["rates"]["own_flagged"] == 1 and got["rates"]["other_n"] == 3 and "wrote scan_limits" in out
    with pytest.raises(SystemExit, match="has rule S"):  # (its rates are rule S's)
        mod.main(args[:3] + ["--test", args[4], "--write-rates"])
    with pytest.raises(SystemExit, match="not single scans"):
        mod.main([write("full.json", cal, scans=None), "--model", str(d)])
    with pytest.raises(SystemExit, match="not full data"):
        _script("ood_rates").main([write("scans.json", test), "--model", str(d)])


def test_infer_scans_counts_flagged_scans_as_single_scans(tmp_path, capsys, monkeypatch):
    """``fcinv infer-scans`` judges the full data as full data and counts its flagged scans with the
    single-scan check (rule S where the model has it)."""
    from fcinv_widgets import get_material
    from fcinv_widgets.cli import main
    from fcinv_widgets.models.ood import OODStats
    from fcinv_widgets.scans import simulate_scans

    seen = {"check": [], "flags": []}
    check, flags = OODStats.check, OODStats.flags
    monkeypatch.setattr(
        OODStats, "check", lambda self, *a, **k: seen["check"].append(k.get("single_scan", False)) or check(self, *a, **k)
    )
    monkeypatch.setattr(
        OODStats, "flags", lambda self, *a, **k: seen["flags"].append(k.get("single_scan", False)) or flags(self, *a, **k)
    )
    ss = simulate_scans(get_material("Ge"), 80, [0, 40], temperature=5, qmax=4.0, progress=False)
    path = tmp_path / "scans.h5"
    ss.add_noise(background=0.05, counts=1000, seed=1).save(path)
    assert main(["infer-scans", "--model", "ge-vae", "--scans", str(path), "--n-samples", "5", "--no-refine", "--json"]) == 0
    ood = json.loads(capsys.readouterr().out)["ood"]
    assert seen == {"check": [False], "flags": [True]} and 0 <= ood["scans_flagged"] <= 2


def test_the_shipped_robust_models_say_how_their_check_does_on_single_scans():
    """Every shipped robust model's ood.json says how its check does on held-out single scans of the
    right crystal and of the other: rule S (adopted: own flagged in at most 10 %) with its rates, or
    the full-data verdict's rates; all of this checkpoint's check version."""
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import OOD_CHECK_VERSION

    for name in ("ge-resnet", "ge-vae", "nb-resnet", "nb-vae"):
        st = load_model(name).ood_stats()
        rates = st.scan_limits["rates"] if st.scan_limits else st.scan_rates
        assert rates["own_n"] >= 40 and rates["other_n"] >= 40, name
        table = st.scan_limits or st.scan_rates
        assert table["check_version"] == OOD_CHECK_VERSION, name
        if st.scan_limits:
            assert rates["own_flagged"] <= 0.1 * rates["own_n"] and st.scan_limit(st.scan_limits["calibration_ei_mev"][0]), name
        if st.scan_limits_oriented:  # rule S′ (session 38): adopted only with own flagged ≤ 10 % of its held-out scans
            t = st.scan_limits_oriented
            assert t["check_version"] == OOD_CHECK_VERSION and t["rates"]["own_flagged"] <= 0.1 * t["rates"]["own_n"], name
            assert t["rates"]["own_n"] >= 40 and st.scan_limit(t["calibration_ei_mev"][0], oriented=True), name


def test_one_scan_of_a_set_is_read_once_for_its_fit(tmp_path, monkeypatch):
    """``expio.scan_of_set`` keeps the scan set it read on the picked scan, and ``refine_spectrum`` fits that
    scan from it (its image, angle, Ei and axes) without reading the file again (session 36's leftover)."""
    from fcinv_widgets import get_material
    from fcinv_widgets.analysis import expio
    from fcinv_widgets.analysis import refine as rmod
    from fcinv_widgets.scans import ScanSet, simulate_scans

    ge = get_material("Ge")
    ss = simulate_scans(ge, 80.0, [20.0, 40.0], qmax=3.0, u=(1, 0, 0), v=(0, 1, 0), progress=False)
    ss.save(tmp_path / "scans.h5")
    spec = expio.scan_of_set(expio.read_spectrum(tmp_path / "scans.h5"), 40.0)
    assert spec.scan_set is not None and np.array_equal(spec.image, ss.scans[1], equal_nan=True)

    def no_read(*args, **kwargs):
        raise AssertionError("the scan set was read again")

    monkeypatch.setattr(ScanSet, "load", no_read)
    seen = {}
    monkeypatch.setattr(rmod, "refine_sqe", lambda material, data, temperature_k, **kw: seen.update(kw, data=data) or "fit")
    assert rmod.refine_spectrum(ge, spec, 5.0, scan=40.0) == "fit"
    assert np.array_equal(seen["data"], ss.scans[1], equal_nan=True) and seen["orientations"] == [40.0]
    assert seen["ei_mev"] == 80.0 and list(seen["u"]) == [1.0, 0.0, 0.0] and list(seen["v"]) == [0.0, 1.0, 0.0]
