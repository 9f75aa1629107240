"""Rule E (session 34): a limit on the refit's excess over the noise, for one-phonon S(Q,E) inputs.

    python benchmarks/bench_ood_fit.py --model M --n 120 --n-other 0 --no-fit \\
        --temperatures 5,50,100,300 --counts 30,3000 --seed 50 --ei 80 --json CAL.json
    python benchmarks/ood_excess.py CAL.json [MORE.json …] --model M [--alpha 0.02] [--by-ei | --vs-current]
        [--test TEST.json …] [--write]

On the right crystal's noisy S(Q,E) the measured regime's ``refit`` leaves about the input's noise
share of its structure, 1/(1 + structure-to-noise); another crystal's branches stay unexplained
on top of it (docs/results.md, OOD, session 33). ``refit_excess`` (``fcinv_widgets.models.ood``) is the
refit less that share. From calibration rows of the model's own crystal (``bench_ood_fit.py``
rows, ``set`` "own", not weak data, measured at an Ei inside the model's training Ei range,
``Inverter.training_ei_range``) this computes the split-conformal limit: the ⌈(n + 1)(1 − α)⌉-th
smallest excess of the n rows (refused when that rank exceeds n: too few rows for α), so that an
input exchangeable with them is flagged by it with probability ≤ α. ``--test``: rows never used
here (both crystals), scored as pre-registered (docs/results.md, OOD, session 34): the judged inputs of
each crystal flagged by the check without rule E (any ``sqe_excess`` already in the file left out)
and with this limit (flag = that verdict or an excess above the limit), per Ei and per
structure-to-noise bin, and the three adoption criteria. ``--write`` stores the limit in the model's ``ood.json`` (``OODStats.sqe_excess``) with
the calibration inputs' least coverage and their Ei range (inside the training range: the rule
applies there only); the ``sqe_rates`` counted without it are then not quoted until
``ood_rates.py --write`` counts them again. Refused, as in ``ood_rates.py``, for rows of another
checkpoint or other measured-regime thresholds.

``--by-ei`` (rule E by Ei, session 41, pre-registered): a limit per calibration Ei, computed as above from
that Ei's rows alone; an input is judged by the larger of the two calibration Ei that bracket its own
(``models.ood.limits_at_ei``). ``--test`` then scores it against the check as it stands (the model's
current rule E included), with the same criteria; ``--vs-current`` does that for one pooled limit (a
rule E recalibrated on new rows against the one in the file).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from ood_limits import conformal_limit, conformal_rank
from ood_rates import command_line, load_rows, measured_stats, row_excess, row_flag, row_ratio, rule_parser, save_stats

from fcinv_widgets.measurement import ei_inside
from fcinv_widgets.models.ood import OOD_CHECK_VERSION

#: structure-to-noise bins of the --test table (lower edges; from 3: rule W)
EDGES = (3.0, 10.0, 30.0)


def judged(rows: list, kind: str) -> list:
    """The rows of ``kind`` ("own"/"other") the check judged on their scores: not weak data, with a
    recorded refit score."""
    return [
        r for r in rows if r["set"] == kind and not r.get("weak_data") and row_ratio(r) is not None and row_excess(r) is not None
    ]


def excess_from_rows(rows: list, alpha: float, ei_range) -> dict:
    """{"limit", "n", "min_coverage", "ei_range_mev"} from the judged own-crystal rows measured
    inside ``ei_range`` (meV; see the module doc); SystemExit when there are too few."""
    own = [r for r in judged(rows, "own") if r.get("ei_mev") is not None and ei_inside(r["ei_mev"], ei_range)]
    if any(r.get("coverage") is None for r in own):
        raise SystemExit("calibration rows must record their coverage (or their file its Ei and qmax)")
    e = [row_excess(r) for r in own]
    if conformal_rank(len(e), alpha) > len(e):
        raise SystemExit(f"{len(e)} judged own-crystal rows inside the training Ei range: too few for α = {alpha:g}")
    eis = [float(r["ei_mev"]) for r in own]
    return {
        "limit": conformal_limit(e, alpha),
        "n": len(e),
        "min_coverage": float(min(r["coverage"] for r in own)),
        "ei_range_mev": [float(ei_range[0]), float(ei_range[1])],
        "calibration_ei_mev": sorted(set(eis)),
    }


def excess_by_ei(rows: list, alpha: float, ei_range) -> dict:
    """Rule E by Ei (session 41): :func:`excess_from_rows` at each calibration Ei on its own
    (``by_ei``: {"ei_mev", "limits": [{"excess": limit}], "n"}, read by
    ``OODStats.sqe_excess_limit`` through ``models.ood.limits_at_ei``), with "limit" the largest of
    them (what an input outside the calibration Ei's span is judged by) and "n" all the judged rows;
    SystemExit with fewer than two calibration Ei inside ``ei_range``."""
    eis = sorted(
        {float(r["ei_mev"]) for r in judged(rows, "own") if r.get("ei_mev") is not None and ei_inside(r["ei_mev"], ei_range)}
    )
    if len(eis) < 2:
        raise SystemExit(f"limits by Ei need calibration rows at two or more Ei inside the training range, got {eis}")
    each = [excess_from_rows([r for r in rows if r.get("ei_mev") == e], alpha, ei_range) for e in eis]
    return {
        "limit": max(t["limit"] for t in each),
        "n": sum(t["n"] for t in each),
        "min_coverage": min(t["min_coverage"] for t in each),
        "ei_range_mev": [float(ei_range[0]), float(ei_range[1])],
        "calibration_ei_mev": eis,
        "by_ei": {"ei_mev": eis, "limits": [{"excess": t["limit"]} for t in each], "n": [t["n"] for t in each]},
    }


def oriented_row(r: dict) -> dict:
    """A single-scan row as the check with the scan's orientation scores it: its
    ``ood_components_oriented`` (``bench_ood_fit.py --oriented-scores``: values) as its components,
    with the medians and thresholds its components record (the same measured regime's)."""
    comps = r["ood_components"]
    return r | {"ood_components": {k: comps.get(k, {}) | c for k, c in r["ood_components_oriented"].items()}}


def known_angle_flag(r: dict, stats) -> bool:
    """The product's verdict on a single-scan row whose angle is known: rule S′'s limits
    (``stats.scan_limits_oriented``) on its oriented scores where they apply, else :func:`row_flag`."""
    if stats.scan_limit(r.get("ei_mev"), oriented=True) is not None and "ood_components_oriented" in r:
        return row_flag(oriented_row(r), dataclasses.replace(stats, scan_limits=stats.scan_limits_oriented))
    return row_flag(r, stats)


def score(rows: list, before, after, oriented: bool = False) -> dict:
    """Per kind, judged rows flagged by the check under ``before`` and ``after`` statistics, in all,
    per Ei and per structure-to-noise bin (:data:`EDGES`). ``oriented`` (rule S′): each row is a scan
    of known angle — ``before`` judges it as the product does (:func:`known_angle_flag`), and
    ``after``'s ``scan_limits`` judge its oriented scores (:func:`oriented_row`) where they apply (its
    Ei inside their range); elsewhere the row keeps ``before``'s verdict."""
    out = {}
    for kind in ("own", "other"):
        rs = judged(rows, kind)
        b = [known_angle_flag(r, before) if oriented else row_flag(r, before) for r in rs]
        if oriented:
            a = [row_flag(oriented_row(r), after) if after.scan_limit(r.get("ei_mev")) else x for r, x in zip(rs, b)]
        else:
            a = [row_flag(r, after) for r in rs]

        def part(sel, b=b, a=a) -> dict:
            return {
                "n": int(sum(sel)),
                "before": int(sum(x for x, s in zip(b, sel) if s)),
                "after": int(sum(x for x, s in zip(a, sel) if s)),
            }

        bins = np.searchsorted(EDGES, [r["structure_to_noise"] for r in rs], side="right") - 1
        out[kind] = part([True] * len(rs)) | {
            "by_ei": {f"{ei:g}": part([r["ei_mev"] == ei for r in rs]) for ei in sorted({float(r["ei_mev"]) for r in rs})},
            "by_bin": [part([x == i for x in bins]) for i in range(len(EDGES))],
        }
    return out


def criteria(sc: dict) -> dict:
    """The pre-registered adoption criteria (docs/results.md, OOD, session 34) on a :func:`score`."""
    o, t = sc["own"], sc["other"]
    return {
        "a_own_flagged_within": o["after"] <= o["before"] + max(2, 0.03 * o["n"]),
        "b_other_caught_more": t["after"] > t["before"],
        "c_fewer_errors": o["after"] + (t["n"] - t["after"]) < o["before"] + (t["n"] - t["before"]),
    }


def main(argv=None) -> int:
    ap = rule_parser(
        __doc__,
        "bench_ood_fit.py --json calibration files of this model (own crystal)",
        "store the limit in the model's ood.json",
        test_help="held-out bench_ood_fit.py --json files to score the rule on",
        json_help="write the limit, the scores and the criteria here",
    )
    ap.add_argument("--alpha", type=float, default=0.02, help="the false-alarm rate the limit aims at")
    ap.add_argument(
        "--by-ei",
        action="store_true",
        help="a limit per calibration Ei (rule E by Ei, session 41), scored against the check as it stands (the "
        "model's rule E included) rather than without rule E",
    )
    ap.add_argument(
        "--vs-current",
        action="store_true",
        help="score against the check as it stands (the model's rule E included), e.g. a recalibrated limit against the "
        "shipped one (implied by --by-ei)",
    )
    a = ap.parse_args(argv)
    a.vs_current = a.vs_current or a.by_ei
    if not 0 < a.alpha < 0.5:
        raise SystemExit("--alpha must lie in (0, 0.5)")
    model, stats = measured_stats(a.model)
    ei_range = model.training_ei_range
    if ei_range is None:
        raise SystemExit(f"{a.model} was trained without a measurement model: no training Ei range")
    cal, settings = load_rows(a.rows, a.model, model, stats, a.assume_current)
    ex = (excess_by_ei if a.by_ei else excess_from_rows)(cal, a.alpha, ei_range)
    print(
        f"{a.model}: rule E limit {ex['limit']:.4f} on the refit's excess over the noise share, from {ex['n']} own-crystal "
        f"S(Q,E) rows (Ei {', '.join(f'{v:g}' for v in ex['calibration_ei_mev'])} meV; α = {a.alpha:g}; "
        f"coverage ≥ {ex['min_coverage']:.3f})"
    )
    if a.by_ei:
        by = ex["by_ei"]
        print(
            "  by Ei: "
            + ", ".join(f"{e:g} meV {t['excess']:.4f} (n {n})" for e, t, n in zip(by["ei_mev"], by["limits"], by["n"]))
        )
    # the check without rule E (a limit written before left out), or with --vs-current the check as it stands
    before = dataclasses.replace(stats) if a.vs_current else dataclasses.replace(stats, sqe_excess={})
    after = dataclasses.replace(stats)
    after.sqe_excess = ex | {
        "alpha": a.alpha,
        "measured_on": settings,
        "check_version": OOD_CHECK_VERSION,
        "command": command_line("ood_excess", argv),
    }
    report: dict = {"model": a.model, "sqe_excess": after.sqe_excess}
    if a.test:
        test, _ = load_rows(a.test, a.model, model, stats, a.assume_current)
        sc = score(test, before, after)
        crit = criteria(sc)
        report |= {"score": sc, "criteria": crit, "adopt": all(crit.values())}
        was = "as it stands" if a.vs_current else "without rule E"
        now = "with rule E by Ei" if a.by_ei else ("with the new rule E" if a.vs_current else "with rule E")
        print(f"held out ({len(test)} rows): flagged / judged, the check {was} → {now}")
        print(f"| inputs | judged | {was} | {now} |")
        print("|---|---|---|---|")
        for kind, label in (("own", "own crystal"), ("other", "other crystal")):
            s = sc[kind]
            print(f"| {label}, all | {s['n']} | {s['before']} | {s['after']} |")
            for ei, p in s["by_ei"].items():
                print(f"| {label}, Ei {ei} meV | {p['n']} | {p['before']} | {p['after']} |")
            for i, p in enumerate(s["by_bin"]):
                where = f"{EDGES[i]:g}–{EDGES[i + 1]:g}" if i + 1 < len(EDGES) else f"≥ {EDGES[i]:g}"
                print(f"| {label}, structure-to-noise {where} | {p['n']} | {p['before']} | {p['after']} |")
        print("criteria: " + ", ".join(f"{k} {v}" for k, v in crit.items()) + f" → adopt: {report['adopt']}")
    if a.json:
        import json
        from pathlib import Path

        Path(a.json).write_text(json.dumps(report, indent=1))
    if a.write:
        save_stats(model, after, "sqe_excess")
        print("the sqe_rates in it were counted without this limit: run ood_rates.py --write again")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
