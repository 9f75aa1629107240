"""Rule S (session 35): the OOD check's limits for one single-orientation scan of a one-phonon S(Q,E).

    python benchmarks/bench_ood_fit.py --model M --n 120 --n-other 0 --no-fit --scan-angles 0:120 \\
        --temperatures 5,50,100,300 --counts 30,3000 --seed 61 --ei 80 --json CAL.json
    python benchmarks/ood_scan_limits.py CAL.json [MORE.json …] --model M [--alpha 0.05]
        [--test TEST.json …] [--json OUT.json] [--write]

The measured regime's thresholds and rules C and E were calibrated on full data. A single scan
averages, per pixel, only the equivalents its orientation reaches, so the refit (whose candidate is
the full fold) leaves a quarter of a right-crystal scan's structure even with little noise, and the
combined score flags most of the right crystal's scans (docs/results.md, OOD, session 35). Rule S judges such
an input by each of its scores against a limit of its own: from calibration rows of the model's own
crystal (``bench_ood_fit.py --scan-angles`` rows, ``set`` "own", not weak data, measured at an Ei
inside the model's training Ei range) the split-conformal limit at α/k per score (k scores): the
⌈(n + 1)(1 − α/k)⌉-th smallest value of the n rows (no limit for a score when that rank exceeds n),
so that a scan exchangeable with them is flagged with probability ≤ α. ``--test``: held-out scan
rows (both crystals), scored as pre-registered (docs/results.md, OOD, session 35): the judged scans of each
crystal flagged by the check without rule S and with it, per Ei and structure-to-noise bin, and the
adoption criteria. ``--write`` stores the limits in the model's ``ood.json``
(``OODStats.scan_limits``) with the calibration's Ei range and, with ``--test``, the held-out rates
that ``fcinv invert --single-scan`` quotes; ``--write-rates`` (a model that does not adopt it) stores the
check's own held-out single-scan rates instead (``OODStats.scan_rates``). Refused, as in ``ood_rates.py``, for rows of another
checkpoint, other measured-regime thresholds or full data.

``--oriented`` (rule S′, session 38, pre-registered: docs/results.md, OOD, "Session 38"): the same for a scan
whose orientation is known (``fcinv invert --scan DEG``, ``infer-scans``' scans). The check's refit
then renders the scan's candidate with that orientation's coverage (``OODStats.scores(orientation=…)``),
so the limits come from those scores (``bench_ood_fit.py --scan-angles … --oriented-scores`` rows,
``ood_components_oriented``), the held-out scans are judged with them against the verdict the same scans
get without their angle (rule S where the model has it), and ``--write`` stores them beside rule S as
``OODStats.scan_limits_oriented``.

    python benchmarks/bench_ood_fit.py --model M … --scan-angles 0:120 --oriented-scores --json CAL.json
    python benchmarks/ood_scan_limits.py CAL.json [MORE.json …] --model M --oriented [--test TEST.json …] [--write]

``--by-ei`` (rule S / S′ by Ei, session 40, pre-registered: docs/results.md, OOD, "Session 40"): the networks' own
scores move with the resolution, so limits pooled over several incident energies are set by the broadest one.
With calibration rows at two or more Ei, each Ei gets rule S's limits from its own rows, and an input is
judged, per score, by the larger of the two calibration Ei that bracket its Ei (``models.ood.limits_at_ei``;
outside their span by the largest). Held-out scans are judged against the check as it stands (the model's
rule S / S′ where it has one, with that rule's criterion); ``--write`` replaces the table, its ``by_ei``
beside pooled "limits" that are each score's largest.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ood_excess import judged, oriented_row, score
from ood_limits import conformal_limit, conformal_rank
from ood_rates import command_line, load_rows, measured_stats, row_excess, rule_parser, save_stats

from fcinv_widgets.materials import material_for_model
from fcinv_widgets.measurement import ei_inside
from fcinv_widgets.models.ood import OOD_CHECK_VERSION


def scan_limits_from_rows(rows: list, scores: list, alpha: float, ei_range, excess: bool = False) -> dict:
    """{"limits": {score: limit or None}, "n", "ei_range_mev", "calibration_ei_mev"[, "excess_limit"]}
    from the judged own-crystal scan rows measured inside ``ei_range`` (meV; see the module doc);
    ``excess`` (rule S′E): the refit's excess over the noise share is one more score (α shared by
    k + 1); SystemExit when none."""
    own = [r for r in judged(rows, "own") if r.get("ei_mev") is not None and ei_inside(r["ei_mev"], ei_range)]
    if not own:
        raise SystemExit("no judged own-crystal single-scan rows inside the training Ei range")
    each = alpha / (len(scores) + int(excess))
    limits = {}
    for k in scores:
        v = [r["ood_components"][k]["value"] for r in own]
        limits[k] = conformal_limit(v, each) if conformal_rank(len(v), each) <= len(v) else None
    if all(v is None for v in limits.values()):
        raise SystemExit(f"{len(own)} judged own-crystal scans: too few for α = {alpha:g} over {len(scores)} scores")
    out = {
        "limits": limits,
        "n": len(own),
        "ei_range_mev": [float(ei_range[0]), float(ei_range[1])],
        "calibration_ei_mev": sorted({float(r["ei_mev"]) for r in own}),
    }
    if excess:
        e = [row_excess(r) for r in own]
        if conformal_rank(len(e), each) > len(e):
            raise SystemExit(f"{len(own)} judged own-crystal scans: too few for α = {alpha:g} over {len(scores) + 1} scores")
        out["excess_limit"] = conformal_limit(e, each)
    return out


def scan_limits_by_ei(rows: list, scores: list, alpha: float, ei_range) -> dict:
    """Rule S by Ei (session 40): :func:`scan_limits_from_rows` at each calibration Ei on its own
    (``by_ei``: {"ei_mev", "limits", "n"}, read by ``models.ood.limits_at_ei``), with "limits" each
    score's largest over them (what an input of an Ei outside the calibration's span is judged by) and
    "n" all the judged scans; SystemExit with fewer than two calibration Ei inside ``ei_range``."""
    eis = sorted(
        {float(r["ei_mev"]) for r in judged(rows, "own") if r.get("ei_mev") is not None and ei_inside(r["ei_mev"], ei_range)}
    )
    if len(eis) < 2:
        raise SystemExit(f"limits by Ei need calibration rows at two or more Ei inside the training range, got {eis}")
    each = [scan_limits_from_rows([r for r in rows if r.get("ei_mev") == e], scores, alpha, [e, e]) for e in eis]
    top = {k: None if any(t["limits"][k] is None for t in each) else max(t["limits"][k] for t in each) for k in scores}
    return {
        "limits": top,
        "n": sum(t["n"] for t in each),
        "ei_range_mev": [float(ei_range[0]), float(ei_range[1])],
        "calibration_ei_mev": eis,
        "by_ei": {"ei_mev": eis, "limits": [t["limits"] for t in each], "n": [t["n"] for t in each]},
    }


def criteria(sc: dict, rule_s: bool = False) -> dict:
    """The pre-registered adoption criteria on a :func:`~ood_excess.score`: rule S's (docs/results.md, OOD,
    session 35; also rule S′'s for a model without rule S) or, with ``rule_s`` (rule S′ against a
    model's rule S, session 38), own flagged at most 10 % and at most rule S's + max(2, 3 %)."""
    o, t = sc["own"], sc["other"]
    fewer = o["after"] + (t["n"] - t["after"]) < o["before"] + (t["n"] - t["before"])
    if rule_s:
        within = o["after"] <= 0.10 * o["n"] and o["after"] <= o["before"] + max(2, 0.03 * o["n"])
        return {"a_own_flagged_at_most_10pct_and_within_rule_s": within, "b_fewer_errors": fewer}
    return {
        "a_own_flagged_at_most_10pct_and_halved": o["after"] <= 0.10 * o["n"] and o["after"] <= 0.5 * o["before"],
        "b_fewer_errors": fewer,
    }


def main(argv=None) -> int:
    ap = rule_parser(
        __doc__,
        "bench_ood_fit.py --scan-angles --json calibration files of this model",
        "store the limits in the model's ood.json",
        test_help="held-out bench_ood_fit.py --scan-angles --json files",
        json_help="write the limits, the scores and the criteria here",
    )
    ap.add_argument("--alpha", type=float, default=0.05, help="the false-alarm rate the limits aim at (shared by the scores)")
    ap.add_argument(
        "--write-rates",
        action="store_true",
        help="with --test, for a model that does not adopt rule S: store the check's own flag rates on the held-out "
        "scans (without rule S) in its ood.json (scan_rates), which `fcinv invert --single-scan` then quotes",
    )
    ap.add_argument(
        "--oriented",
        action="store_true",
        help="rule S′ (session 38): limits from the scores with the scan's orientation (rows of bench_ood_fit.py "
        "--oriented-scores), tested against the verdict the same scans get without their angle; --write stores "
        "scan_limits_oriented",
    )
    ap.add_argument(
        "--excess",
        action="store_true",
        help="with --oriented (rule S′E): the oriented refit's excess over the input's noise share is one more score "
        "with a limit of its own (excess_limit; α shared by the k + 1 scores)",
    )
    ap.add_argument(
        "--by-ei",
        action="store_true",
        help="rule S (or, with --oriented, S′) by Ei (session 40): limits at each calibration Ei on its own, an input "
        "judged by the larger of the two that bracket its Ei; tested against the check as it stands (the model's rule "
        "S / S′ where it has one); --write replaces that table",
    )
    a = ap.parse_args(argv)
    if a.by_ei and (a.excess or a.write_rates):
        raise SystemExit("--by-ei takes neither --excess nor --write-rates")
    if a.excess and not a.oriented:
        raise SystemExit("--excess is a part of rule S′: give --oriented too")
    if not 0 < a.alpha < 0.5:
        raise SystemExit("--alpha must lie in (0, 0.5)")
    if a.write_rates and (a.write or not a.test):
        raise SystemExit("--write-rates needs --test and excludes --write (the rates of the check without rule S)")
    if a.oriented and a.write_rates:
        raise SystemExit(
            "--oriented and --write-rates: one or the other (the rates without rule S′ are scan_limits' or scan_rates')"
        )
    model, stats = measured_stats(a.model)
    if a.write_rates and stats.scan_limits:
        raise SystemExit(f"{a.model} has rule S (scan_limits): its single-scan rates are the ones stored with it")
    ei_range = model.training_ei_range
    if ei_range is None:
        raise SystemExit(f"{a.model} was trained without a measurement model: no training Ei range")
    cal, settings = load_rows(a.rows, a.model, model, stats, a.assume_current, scans=True)
    rule = "rule S′" if a.oriented else "rule S"
    if a.oriented:
        missing = [p for p, st in zip(a.rows, settings) if not st.get("oriented_scores")]
        if missing or any("ood_components_oriented" not in r for r in cal):
            raise SystemExit(f"{', '.join(missing) or 'some rows'}: no oriented scores (bench_ood_fit.py --oriented-scores)")
        cal = [oriented_row(r) for r in cal]
    names = sorted(stats.measured["thresholds"])
    if a.by_ei:
        lim = scan_limits_by_ei(cal, names, a.alpha, ei_range)
        rule += " by Ei"
        for e, t, n in zip(lim["by_ei"]["ei_mev"], lim["by_ei"]["limits"], lim["by_ei"]["n"]):
            print(f"  Ei {e:g} meV ({n} scans): " + ", ".join(f"{k} {'—' if v is None else f'{v:.4g}'}" for k, v in t.items()))
    else:
        lim = scan_limits_from_rows(cal, names, a.alpha, ei_range, excess=a.excess)
    shown = ", ".join(f"{k} {'—' if v is None else f'{v:.4g}'}" for k, v in lim["limits"].items())
    if a.excess:
        rule, shown = "rule S′E", f"{shown}, refit excess {lim['excess_limit']:.4g}"
    print(
        f"{a.model}: {rule} limits {shown} from {lim['n']} own-crystal single scans "
        f"(Ei {', '.join(f'{v:g}' for v in lim['calibration_ei_mev'])} meV; α = {a.alpha:g} over "
        f"{len(names) + int(a.excess)} scores)"
    )
    # before: the check as it stands (rule S where adopted; with --oriented, for a scan of known angle: rule S′
    # where adopted, ood_excess.known_angle_flag); after: the new rule
    # (--by-ei: against the check as it stands, the model's rule S where it has one)
    before = dataclasses.replace(stats) if a.oriented or a.by_ei else dataclasses.replace(stats, scan_limits={})
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
        if a.oriented and any("ood_components_oriented" not in r for r in test):
            raise SystemExit("--test rows without oriented scores (bench_ood_fit.py --oriented-scores)")
        sc = score(test, before, after, oriented=a.oriented)
        if a.by_ei:  # against the rule it would replace, where the model has one
            rule_s = bool(stats.scan_limits_oriented or stats.scan_limits) if a.oriented else bool(stats.scan_limits)
        else:
            rule_s = a.oriented and bool(stats.scan_limits)
        crit = criteria(sc, rule_s=rule_s)
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
        was = "as it stands for a scan of known angle" if a.oriented else ("as it stands" if a.by_ei else "without rule S")
        print(f"held out ({len(test)} scans): flagged / judged, the check {was} → with {rule}")
        print(f"| scans | judged | {was} | with {rule} |")
        print("|---|---|---|---|")
        for kind, label in (("own", f"{own} (own)"), ("other", other)):
            s = sc[kind]
            print(f"| {label}, all | {s['n']} | {s['before']} | {s['after']} |")
            for ei, p in s["by_ei"].items():
                print(f"| {label}, Ei {ei} meV | {p['n']} | {p['before']} | {p['after']} |")
        print("criteria: " + ", ".join(f"{k} {v}" for k, v in crit.items()) + f" → adopt: {report['adopt']}")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))
    if a.write and a.oriented:  # rule S′ beside the model's rule S (or the full-data verdict), not instead of it
        stats.scan_limits_oriented = after.scan_limits
        save_stats(model, stats, "scan_limits_oriented")
    elif a.write:
        save_stats(model, after, "scan_limits")
    if a.write_rates:
        save_stats(model, before, "scan_rates")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
