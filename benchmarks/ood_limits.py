"""Rule C (session 32): the OOD check's limit on one-phonon S(Q,E) inputs, by structure-to-noise.

    python benchmarks/bench_ood_fit.py --model M --n 120 --n-other 0 --no-fit \\
        --temperatures 5,50,100,300 --counts 30,3000 --seed 40 --json CAL.json
    python benchmarks/ood_limits.py CAL.json [MORE.json …] --model M [--edges 3,10,30,100]
        [--alpha 0.02] [--min-rows 20] [--ei-range training] [--test TEST.json …] [--write]

The check flags an input when r > 1, r the largest of its combined score over the combined
threshold and each single score over its own (``OODStats.ratio``). On the right crystal's
simulated S(Q,E) measurements r falls with the input's structure-to-noise, on another crystal's
more slowly (docs/results.md, OOD, session 32). From calibration rows of the model's own crystal
(``bench_ood_fit.py`` rows, ``set`` "own", not weak data) this computes per structure-to-noise
bin the split-conformal limit: the ⌈(n + 1)(1 − α)⌉-th smallest r of the bin's n rows (the largest
when that exceeds n; a bin with fewer than ``--min-rows`` keeps 1, today's rule), so that an
input exchangeable with them is flagged with probability ≤ α. ``--test``: rows never used here
(both crystals), scored as pre-registered (/work/notes/prereg32.md; docs/results.md): the right crystal's
judged inputs flagged and the other's caught, with 1 and with the limits. ``--write`` stores the
limits in the model's ``ood.json`` (``OODStats.sqe_limits``) with the least coverage of the
calibration inputs (rule C applies only to inputs covering at least as much). ``--ei-range
training`` (rule C′): only calibration rows measured at an Ei inside the model's training Ei range
(``Inverter.training_ei_range``) are used, and the limits hold only for inputs inside it
(``ei_range_mev``). Refused, as in
``ood_rates.py``, for rows of another checkpoint or other measured-regime thresholds.
"""

from __future__ import annotations

import math

import numpy as np
from ood_rates import command_line, edges_arg, load_rows, measured_stats, row_flag, row_ratio, rule_parser, save_stats

from fcinv_widgets.measurement import ei_inside
from fcinv_widgets.models.ood import OOD_CHECK_VERSION


def conformal_rank(n: int, alpha: float) -> int:
    """⌈(n + 1)(1 − α)⌉: the rank of the split-conformal quantile of n calibration values."""
    return math.ceil((n + 1) * (1 - alpha))


def conformal_limit(ratios, alpha: float) -> float:
    """The :func:`conformal_rank`-th smallest of ``ratios`` (the largest when that rank exceeds n)."""
    r = np.sort(np.asarray(ratios, float))
    return float(r[min(conformal_rank(len(r), alpha), len(r)) - 1])


def limits_from_rows(rows: list, edges: list, alpha: float, min_rows: int, ei_range=None) -> dict:
    """{"edges", "limits", "n", "min_coverage"[, "ei_range_mev"]} from the judged own-crystal rows
    (see the module doc); ``ei_range``: (low, high) meV, only rows measured inside it."""
    own = [r for r in rows if r["set"] == "own" and not r.get("weak_data") and row_ratio(r) is not None]
    if ei_range is not None:
        own = [r for r in own if r.get("ei_mev") is not None and ei_inside(r["ei_mev"], ei_range)]
    own = [r for r in own if r.get("structure_to_noise") is not None and r["structure_to_noise"] >= edges[0]]
    if not own:
        raise SystemExit("no judged rows of the model's own crystal with scores in the calibration files")
    if any(r.get("coverage") is None for r in own):
        raise SystemExit("calibration rows must record their coverage (or their file its Ei and qmax)")
    bins = np.searchsorted(edges, [r["structure_to_noise"] for r in own], side="right") - 1
    limits, n = [], []
    for i in range(len(edges)):
        part = [row_ratio(r) for r, b in zip(own, bins) if b == i]
        n.append(len(part))
        limits.append(conformal_limit(part, alpha) if len(part) >= min_rows else 1.0)
    out = {"edges": edges, "limits": limits, "n": n, "min_coverage": float(min(r["coverage"] for r in own))}
    return out | ({"ei_range_mev": [float(ei_range[0]), float(ei_range[1])]} if ei_range is not None else {})


def score(rows: list, stats, edges: list) -> dict:
    """Per kind, judged rows (structure-to-noise ≥ the first edge, not weak) flagged with limit 1
    ("before") and with ``stats``' rule C ("after"), in all and per bin."""
    out = {}
    for kind in ("own", "other"):
        rs = [r for r in rows if r["set"] == kind and not r.get("weak_data") and row_ratio(r) is not None]
        rs = [r for r in rs if r.get("structure_to_noise") is not None and r["structure_to_noise"] >= edges[0]]
        bins = np.searchsorted(edges, [r["structure_to_noise"] for r in rs], side="right") - 1
        before = [row_ratio(r) > 1.0 for r in rs]
        after = [row_flag(r, stats) for r in rs]
        out[kind] = {
            "n": len(rs),
            "before": int(sum(before)),
            "after": int(sum(after)),
            "by_bin": [
                {
                    "n": int(sum(bins == i)),
                    "before": int(sum(f for f, b in zip(before, bins) if b == i)),
                    "after": int(sum(f for f, b in zip(after, bins) if b == i)),
                }
                for i in range(len(edges))
            ],
        }
    return out


def main(argv=None) -> int:
    ap = rule_parser(
        __doc__,
        "bench_ood_fit.py --json calibration files of this model (own crystal)",
        "store the limits in the model's ood.json",
        test_help="held-out bench_ood_fit.py --json files to score the limits on",
    )
    ap.add_argument("--edges", default="3,10,30,100", help="lower edges of the structure-to-noise bins (the last open)")
    ap.add_argument("--alpha", type=float, default=0.02, help="the false-alarm rate per bin the limits aim at")
    ap.add_argument("--min-rows", type=int, default=20, help="a bin with fewer calibration rows keeps the limit 1")
    ap.add_argument(
        "--ei-range",
        choices=("any", "training"),
        default="any",
        help="training: calibrate on, and apply to, inputs measured inside the model's training Ei range only (rule C′)",
    )
    a = ap.parse_args(argv)
    edges = edges_arg(a.edges)
    if not 0 < a.alpha < 0.5 or a.min_rows < 1:
        raise SystemExit("--alpha must lie in (0, 0.5) and --min-rows be ≥ 1")
    model, stats = measured_stats(a.model)
    cal, settings = load_rows(a.rows, a.model, model, stats, a.assume_current)
    ei_range = None
    if a.ei_range == "training":
        ei_range = model.training_ei_range
        if ei_range is None:
            raise SystemExit(f"{a.model} was trained without a measurement model: no training Ei range")
    lim = limits_from_rows(cal, edges, a.alpha, a.min_rows, ei_range)
    print(
        f"{a.model}: rule C limits from {sum(lim['n'])} own-crystal S(Q,E) rows (α = {a.alpha:g}; coverage ≥ {lim['min_coverage']:.3f})"
    )
    print("| structure-to-noise | calibration rows | limit on r |")
    print("|---|---|---|")
    for i, lo in enumerate(edges):
        where = f"{lo:g}–{edges[i + 1]:g}" if i + 1 < len(edges) else f"≥ {lo:g}"
        print(f"| {where} | {lim['n'][i]} | {lim['limits'][i]:.3f} |")
    stats.sqe_limits = lim | {
        "alpha": a.alpha,
        "min_rows": a.min_rows,
        "measured_on": settings,
        "check_version": OOD_CHECK_VERSION,
        "command": command_line("ood_limits", argv),
    }
    if a.test:
        test, _ = load_rows(a.test, a.model, model, stats, a.assume_current)
        sc = score(test, stats, edges)
        o, t = sc["own"], sc["other"]
        print(f"held out ({len(test)} rows): own flagged {o['before']}/{o['n']} → {o['after']}/{o['n']}; "
              f"other caught {t['before']}/{t['n']} → {t['after']}/{t['n']}")  # fmt: skip
        for i, lo in enumerate(edges):
            ob, tb = o["by_bin"][i], t["by_bin"][i]
            print(f"  ≥ {lo:g}: own {ob['before']}/{ob['n']} → {ob['after']}/{ob['n']}, "
                  f"other {tb['before']}/{tb['n']} → {tb['after']}/{tb['n']}")  # fmt: skip
    if a.write:
        save_stats(model, stats, "sqe_limits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
