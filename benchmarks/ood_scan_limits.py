"""Rule S (session 35): the OOD check's limits for one single-orientation scan of a one-phonon S(Q,E).

    python benchmarks/bench_ood_fit.py --model M --n 120 --n-other 0 --no-fit --scan-angles 0:120 \\
        --temperatures 5,50,100,300 --counts 30,3000 --seed 61 --ei 80 --json CAL.json
    python benchmarks/ood_scan_limits.py CAL.json [MORE.json …] --model M [--alpha 0.05]
        [--test TEST.json …] [--json OUT.json] [--write]

The measured regime's thresholds and rules C and E were calibrated on full data. A single scan
averages, per pixel, only the equivalents its orientation reaches, so the refit (whose candidate is
the full fold) leaves a quarter of a right-crystal scan's structure even with little noise, and the
combined score flags most of the right crystal's scans (README, OOD, session 35). Rule S judges such
an input by each of its scores against a limit of its own: from calibration rows of the model's own
crystal (``bench_ood_fit.py --scan-angles`` rows, ``set`` "own", not weak data, measured at an Ei
inside the model's training Ei range) the split-conformal limit at α/k per score (k scores): the
⌈(n + 1)(1 − α/k)⌉-th smallest value of the n rows (no limit for a score when that rank exceeds n),
so that a scan exchangeable with them is flagged with probability ≤ α. ``--test``: held-out scan
rows (both crystals), scored as pre-registered (README, OOD, session 35): the judged scans of each
crystal flagged by the check without rule S and with it, per Ei and structure-to-noise bin, and the
adoption criteria. ``--write`` stores the limits in the model's ``ood.json``
(``OODStats.scan_limits``) with the calibration's Ei range and, with ``--test``, the held-out rates
that ``fcinv invert --single-scan`` quotes; ``--write-rates`` (a model that does not adopt it) stores the
check's own held-out single-scan rates instead (``OODStats.scan_rates``). Refused, as in ``ood_rates.py``, for rows of another
checkpoint, other measured-regime thresholds or full data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ood_excess import judged, score
from ood_limits import conformal_limit, conformal_rank
from ood_rates import command_line, load_rows, measured_stats, save_stats

from fcinv_widgets.materials import material_for_model
from fcinv_widgets.measurement import ei_inside
from fcinv_widgets.models.ood import OOD_CHECK_VERSION


def scan_limits_from_rows(rows: list, scores: list, alpha: float, ei_range) -> dict:
    """{"limits": {score: limit or None}, "n", "ei_range_mev", "calibration_ei_mev"} from the judged
    own-crystal scan rows measured inside ``ei_range`` (meV; see the module doc); SystemExit when none."""
    own = [r for r in judged(rows, "own") if r.get("ei_mev") is not None and ei_inside(r["ei_mev"], ei_range)]
    if not own:
        raise SystemExit("no judged own-crystal single-scan rows inside the training Ei range")
    each = alpha / len(scores)
    limits = {}
    for k in scores:
        v = [r["ood_components"][k]["value"] for r in own]
        limits[k] = conformal_limit(v, each) if conformal_rank(len(v), each) <= len(v) else None
    if all(v is None for v in limits.values()):
        raise SystemExit(f"{len(own)} judged own-crystal scans: too few for α = {alpha:g} over {len(scores)} scores")
    return {
        "limits": limits,
        "n": len(own),
        "ei_range_mev": [float(ei_range[0]), float(ei_range[1])],
        "calibration_ei_mev": sorted({float(r["ei_mev"]) for r in own}),
    }


def criteria(sc: dict) -> dict:
    """The pre-registered adoption criteria (README, OOD, session 35) on a :func:`~ood_excess.score`."""
    o, t = sc["own"], sc["other"]
    return {
        "a_own_flagged_at_most_10pct_and_halved": o["after"] <= 0.10 * o["n"] and o["after"] <= 0.5 * o["before"],
        "b_fewer_errors": o["after"] + (t["n"] - t["after"]) < o["before"] + (t["n"] - t["before"]),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="+", help="bench_ood_fit.py --scan-angles --json calibration files of this model")
    ap.add_argument("--model", required=True)
    ap.add_argument("--alpha", type=float, default=0.05, help="the false-alarm rate the limits aim at (shared by the scores)")
    ap.add_argument("--test", nargs="*", default=[], help="held-out bench_ood_fit.py --scan-angles --json files")
    ap.add_argument("--json", default=None, help="write the limits, the scores and the criteria here")
    ap.add_argument("--write", action="store_true", help="store the limits in the model's ood.json")
    ap.add_argument(
        "--write-rates",
        action="store_true",
        help="with --test, for a model that does not adopt rule S: store the check's own flag rates on the held-out "
        "scans (without rule S) in its ood.json (scan_rates), which `fcinv invert --single-scan` then quotes",
    )
    ap.add_argument("--assume-current", action="store_true", help="rows that do not record the checkpoint they were measured on")
    a = ap.parse_args(argv)
    if not 0 < a.alpha < 0.5:
        raise SystemExit("--alpha must lie in (0, 0.5)")
    if a.write_rates and (a.write or not a.test):
        raise SystemExit("--write-rates needs --test and excludes --write (the rates of the check without rule S)")
    model, stats = measured_stats(a.model)
    if a.write_rates and stats.scan_limits:
        raise SystemExit(f"{a.model} has rule S (scan_limits): its single-scan rates are the ones stored with it")
    ei_range = model.training_ei_range
    if ei_range is None:
        raise SystemExit(f"{a.model} was trained without a measurement model: no training Ei range")
    cal, settings = load_rows(a.rows, a.model, model, stats, a.assume_current, scans=True)
    names = sorted(stats.measured["thresholds"])
    lim = scan_limits_from_rows(cal, names, a.alpha, ei_range)
    shown = ", ".join(f"{k} {'—' if v is None else f'{v:.4g}'}" for k, v in lim["limits"].items())
    print(
        f"{a.model}: rule S limits {shown} from {lim['n']} own-crystal single scans "
        f"(Ei {', '.join(f'{v:g}' for v in lim['calibration_ei_mev'])} meV; α = {a.alpha:g} over {len(names)} scores)"
    )
    before = dataclasses.replace(stats, scan_limits={})
    after = dataclasses.replace(stats)
    after.scan_limits = lim | {
        "alpha": a.alpha,
        "measured_on": settings,
        "check_version": OOD_CHECK_VERSION,
        "command": command_line("ood_scan_limits", argv),
    }
    report: dict = {"model": a.model, "scan_limits": after.scan_limits}
    if a.test:
        test, test_settings = load_rows(a.test, a.model, model, stats, a.assume_current, scans=True)
        sc = score(test, before, after)
        crit = criteria(sc)
        own = material_for_model(model.config).name
        other = "Nb" if own.lower() == "ge" else "Ge"
        after.scan_limits["rates"] = {
            "own_n": sc["own"]["n"],
            "own_flagged": sc["own"]["after"],
            "other_n": sc["other"]["n"],
            "other_flagged": sc["other"]["after"],
            "other": f"{other} folded on the {own} path",
            "measured_on": test_settings,
        }
        report |= {"score": sc, "criteria": crit, "adopt": all(crit.values())}
        if a.write_rates:
            before.scan_rates = after.scan_limits["rates"] | {
                "own_flagged": sc["own"]["before"],
                "other_flagged": sc["other"]["before"],
                "check_version": OOD_CHECK_VERSION,
                "command": after.scan_limits["command"],
            }
        print(f"held out ({len(test)} scans): flagged / judged, the check without rule S → with it")
        print("| scans | judged | without rule S | with rule S |")
        print("|---|---|---|---|")
        for kind, label in (("own", f"{own} (own)"), ("other", other)):
            s = sc[kind]
            print(f"| {label}, all | {s['n']} | {s['before']} | {s['after']} |")
            for ei, p in s["by_ei"].items():
                print(f"| {label}, Ei {ei} meV | {p['n']} | {p['before']} | {p['after']} |")
        print("criteria: " + ", ".join(f"{k} {v}" for k, v in crit.items()) + f" → adopt: {report['adopt']}")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))
    if a.write:
        save_stats(model, after, "scan_limits")
    if a.write_rates:
        save_stats(model, before, "scan_rates")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
