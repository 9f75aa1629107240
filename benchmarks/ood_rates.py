"""The measured regime's flag rates on one-phonon S(Q,E) inputs, by structure-to-noise (session 31).

    python benchmarks/bench_ood_fit.py --model M --n 60 --n-other 60 --no-fit \\
        --temperatures 5,50,100,300 --counts 30,3000 --seed 31 --json ROWS.json
    python benchmarks/ood_rates.py ROWS.json [MORE.json …] --model M [--edges 1,3,10,30] [--write]

Counts, per bin of the input's structure-to-noise (``ood.structure_to_noise``; bins from
``--edges``, the last one open, from 3: below it an S(Q,E) input is weak data, rule W), how many of the judged inputs (not weak data) of each kind in
``bench_ood_fit.py`` rows were flagged by the model's check: the model's own crystal ("own") and
another crystal folded on its path ("other"). Prints the table; ``--write`` stores it in the
model's ``ood.json`` as ``sqe_rates`` (``OODStats.sqe_rates``), from where ``invert`` and
``infer-scans`` report the rates of an S(Q,E) input's bin with its flag. Refused when the rows were
measured on another checkpoint or other measured-regime thresholds than the ``ood.json`` now beside
the model (``--assume-current``: rows written before ``bench_ood_fit.py`` recorded them; the
written command says so).
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from fcinv_widgets.materials import material_for_model
from fcinv_widgets.models import load_model
from fcinv_widgets.models.ood import (
    MIN_STRUCTURE_TO_NOISE_SQE,
    OOD_CHECK_VERSION,
    excess_key,
    file_sha256,
    refit_excess,
    scan_ratio,
)


def edges_arg(text: str) -> list:
    """``--edges``: lower structure-to-noise bin edges, increasing from at least 3 (rule W; SystemExit otherwise)."""
    edges = [float(v) for v in text.split(",")]
    if edges[0] < MIN_STRUCTURE_TO_NOISE_SQE or any(b <= x for x, b in zip(edges, edges[1:])):
        raise SystemExit(
            f"--edges must increase from at least {MIN_STRUCTURE_TO_NOISE_SQE:g} (below it an S(Q,E) input is weak data)"
        )
    return edges


def rule_parser(doc: str, rows_help: str, write_help: str, test_help: str | None = None, json_help: str | None = None):
    """The argument parser of a rule script (this one, ``ood_limits``, ``ood_scan_limits``,
    ``ood_excess``; ``doc``: its docstring, whose first line describes it) with the options they
    share: the calibration ``rows``, ``--model``, ``--write``, ``--assume-current`` and, given
    their help texts, ``--test`` (held-out files) and ``--json``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("rows", nargs="+", help=rows_help)
    ap.add_argument("--model", required=True)
    if test_help is not None:
        ap.add_argument("--test", nargs="*", default=[], help=test_help)
    if json_help is not None:
        ap.add_argument("--json", default=None, help=json_help)
    ap.add_argument("--write", action="store_true", help=write_help)
    ap.add_argument("--assume-current", action="store_true", help="rows that do not record the checkpoint they were measured on")
    return ap


def command_line(script: str, argv) -> str:
    """How a table was made, for its ``command`` field: ``python benchmarks/SCRIPT.py`` and the
    arguments (``argv``, or the process's own), shell-quoted."""
    return f"python benchmarks/{script}.py " + " ".join(shlex.quote(v) for v in (argv if argv is not None else sys.argv[1:]))


def measured_stats(name: str):
    """(model, its OOD statistics with a measured regime) — SystemExit when it has none."""
    model = load_model(name)
    stats = model.ood_stats()
    if stats is None or not stats.has_measured():
        raise SystemExit(f"{name}: no ood.json with a measured regime ({getattr(model, 'ood_note', '')})")
    return model, stats


def save_stats(model, stats, what: str) -> None:
    """Write ``stats`` as the ood.json beside the model, saying which table went in."""
    out = Path(model.path).parent / "ood.json"
    stats.save(out)
    print(f"wrote {what} into {out}")


def load_rows(paths, name: str, model, stats, assume_current: bool = False, scans: bool = False) -> tuple[list, list]:
    """(rows, settings per file) of ``bench_ood_fit.py --json`` files measured with the model
    ``name`` (SystemExit naming the problem: another model, checkpoint or measured-regime
    thresholds; rows that record no checkpoint only with ``assume_current``; files of single scans
    (``--scan-angles``) only with ``scans``, and only those then: the full-data tables and rule S
    describe different inputs). Each row gets the
    fraction of measured pixels of its input (``coverage``; rows written before it was recorded:
    that of its crystal folded with the file's Ei and |Q| range, :func:`fold_coverage`) and its Ei
    (``ei_mev``, the file's ``--ei``)."""
    rows, settings = [], []
    own = material_for_model(model.config)
    for path in paths:
        try:
            d = json.loads(Path(path).read_text())
            s = d["settings"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"{path}: not a bench_ood_fit.py --json file ({exc})") from None
        if s["model"] != name:
            raise SystemExit(f"{path} was measured with {s['model']}, not {name}")
        if bool(s.get("scan_angles")) != scans:
            raise SystemExit(
                f"{path}: " + ("full-data rows, not single scans" if scans else "single-scan rows (--scan-angles): not full data")
            )
        if "model_sha256" in d:
            if d["model_sha256"] != file_sha256(model.path) or d["ood_measured_regime"] != json.loads(json.dumps(stats.measured)):
                raise SystemExit(f"{path} was measured on another checkpoint or other OOD thresholds than {name}'s now")
        elif not assume_current:
            raise SystemExit(f"{path} does not record its checkpoint (rows from before session 31): --assume-current")
        version = d.get("ood_check_version")
        if version != OOD_CHECK_VERSION and (version is not None or not assume_current):
            raise SystemExit(
                f"{path} was measured with OOD check version {version or 'before 2 (session 33)'}, this check is version "
                f"{OOD_CHECK_VERSION}: its flags describe another check (--assume-current only for rows of this check "
                "that did not record it)"
            )
        for r in d["rows"]:
            r.setdefault("ei_mev", s.get("ei"))
            if r.get("coverage") is None and "ei" in s and "qmax" in s:
                other = "Nb" if own.name.lower() == "ge" else "Ge"
                r["coverage"] = fold_coverage(own.name if r["set"] == "own" else other, own.name, s["ei"], s["qmax"])
        rows += d["rows"]
        keys = (
            "n",
            "n_other",
            "seed",
            "temperatures",
            "counts",
            "ei",
            "qmax",
            "fixed_background",
            "scan_angles",
            "oriented_scores",
        )
        settings.append({k: s[k] for k in keys if s.get(k) is not None})
    return rows, settings


@functools.lru_cache(maxsize=None)
def fold_coverage(crystal: str, grid_of: str, ei_mev: float, qmax: float) -> float:
    """The fraction of ``grid_of``'s pixels that ``crystal``'s S(Q,E) folded on its path covers at
    Ei ``ei_mev`` within |Q| ≤ ``qmax`` (what ``bench_ood_fit.py``'s inputs cover; 5 K, reference FCs)."""
    from fcinv_widgets import get_material
    from fcinv_widgets.sqe import SQE, fold_full, fold_points

    c, g = get_material(crystal), get_material(grid_of)
    calc = SQE(c.basis, np.asarray(c.reference_params, float), temperature=5.0)
    img = fold_full(fold_points(calc, g.grid, float(qmax), c.conventional_a), g.grid, sigma_mev=1.0, ei_mev=float(ei_mev))[0]
    return float(np.isfinite(img).mean())


def row_ratio(r: dict) -> float | None:
    """A row's :meth:`~fcinv_widgets.models.ood.OODStats.ratio` from its recorded scores (None
    for rows without them)."""
    if r.get("ood_components") is None or r.get("ood_score") is None:
        return None
    comps = r["ood_components"].values()
    return max([r["ood_score"] / r["ood_threshold"], *(c["value"] / c["threshold"] for c in comps)])


def row_excess(r: dict) -> float | None:
    """A row's :func:`~fcinv_widgets.models.ood.refit_excess` from its recorded ``refit`` score and
    structure-to-noise (None without them)."""
    refit = (r.get("ood_components") or {}).get("refit")
    if refit is None or r.get("structure_to_noise") is None:
        return None
    e = float(refit_excess(refit["value"], r["structure_to_noise"]))
    return e if np.isfinite(e) else None


def row_flag(r: dict, stats) -> bool:
    """Whether the check as it stands (rule C where ``stats`` carry ``sqe_limits``, rule E where they
    carry ``sqe_excess``, rule S for a single scan where they carry ``scan_limits``) flags a judged
    row, recomputed from its recorded scores (their thresholds are the current ones:
    :func:`load_rows`); a row without scores keeps its recorded flag."""
    ratio = row_ratio(r)
    if ratio is None:
        return bool(r["network_flag"])
    scan = stats.scan_limit(r.get("ei_mev")) if r.get("scan_deg") is not None else None
    if scan is not None:
        e = row_excess(r) if "excess_limit" in scan else None
        over_e = e is not None and e > scan["excess_limit"]
        return scan_ratio({k: [c["value"]] for k, c in r["ood_components"].items()}, scan["limits"]) > 1.0 or over_e
    signal = stats.sqe_limit(r.get("structure_to_noise"), r.get("coverage"), r.get("ei_mev"))
    lim_e = stats.sqe_excess_limit(r.get("structure_to_noise"), r.get("coverage"), r.get("ei_mev"))
    e = row_excess(r)
    return ratio > (signal["limit"] if signal else 1.0) or (lim_e is not None and e is not None and e > lim_e["limit"])


def main(argv=None) -> int:
    ap = rule_parser(__doc__, "bench_ood_fit.py --json files of this model", "store the table in the model's ood.json")
    ap.add_argument(
        "--edges", default="3,10,30", help="lower edges of the structure-to-noise bins (the last open; from 3: rule W)"
    )
    a = ap.parse_args(argv)
    edges = edges_arg(a.edges)
    model, stats = measured_stats(a.model)
    rows, settings = load_rows(a.rows, a.model, model, stats, a.assume_current)
    counts = {kind: {"n": [0] * len(edges), "flagged": [0] * len(edges)} for kind in ("own", "other")}
    below = 0
    for r in rows:
        v = r.get("structure_to_noise")
        if r.get("weak_data") or v is None or v < edges[0]:
            below += 1
            continue
        i = int(np.searchsorted(edges, v, side="right")) - 1
        counts[r["set"]]["n"][i] += 1
        counts[r["set"]]["flagged"][i] += int(row_flag(r, stats))
    own = material_for_model(model.config)
    other = "Nb" if own.name.lower() == "ge" else "Ge"
    label = f"{other} folded on the {own.name} path"
    print(
        f"{a.model}: flagged / judged S(Q,E) inputs by structure-to-noise ({len(rows)} rows, {below} weak or below the first bin)"
    )
    print(f"| structure-to-noise | {own.name} (own): flagged | {label}: flagged |")
    print("|---|---|---|")
    for i, lo in enumerate(edges):
        rng = f"{lo:g}–{edges[i + 1]:g}" if i + 1 < len(edges) else f"≥ {lo:g}"
        cells = []
        for kind in ("own", "other"):
            n, k = counts[kind]["n"][i], counts[kind]["flagged"][i]
            cells.append(f"{k} / {n}" + (f" ({k / n:.0%})" if n else ""))
        print(f"| {rng} | {cells[0]} | {cells[1]} |")
    if a.write:
        stats.sqe_rates = {
            "edges": edges,
            **counts,
            "other_label": label,
            "measured_on": settings,
            "check_version": OOD_CHECK_VERSION,
            # the rule E counted (or None): its limit, and its limits by Ei where it has them
            **dict(zip(("sqe_excess_limit", "sqe_excess_by_ei"), excess_key(stats.sqe_excess))),
            "command": command_line("ood_rates", argv),
        }
        save_stats(model, stats, "sqe_rates")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
