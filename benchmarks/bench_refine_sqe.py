"""Accuracy and calibration of the folded-S(Q,E) fit (``analysis.refine.refine_sqe``) on simulated Ge measurements.

    python benchmarks/bench_refine_sqe.py [--cells 0.05,300;0.1,100;0.2,30] [--truths 3] [--seeds 1]
        [--qmax 6] [--ei 80] [--angles 0,60] [--polish 1] [--json FILE]

For every true FC set — the shipped first-principles (DFT) Ge FCs, then ``--truths − 1`` sets
drawn around the measured reference (the 36 inactive FCs from the fit's own prior, N(ref,
(1.5 σ_fit)²); the 8 active ones uniformly within ±15 %) — the folded one-phonon S(Q,E) is
simulated as ``fcinv simulate --full-sqe`` does (Debye–Waller, Bose factor at 5 K, ARCS
resolution and kinematic coverage at ``--ei``, |Q| ≤ ``--qmax``), a flat background B and Poisson
counts P are added (``noise.add_noise`` with the 99.5th-percentile peak, as simulate does), and
the fit runs from the measured reference with default options. ``--angles``: the same for
single-orientation scans at these sample angles (``scans.simulate_scans``, the same noise,
fitted with their detector coverage: ``refine_sqe(orientations=[ω])``), reported separately. Prints per cell the relative error
of FC0–FC7 (median and max over truths × seeds), and the fraction of the 8 FCs inside ±1σ and
±2σ of the reported Laplace σ, and each fit's residual against the data's own noise
(``SQEFitResult.noise_ratio``; flagged above ``ABOVE_NOISE``) with the coverage of the unflagged fits. Asserts nothing.
"""

import argparse
import json

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--cells", default="0.05,300;0.1,100;0.2,30", help="B,P noise cells separated by ;")
ap.add_argument("--truths", type=int, default=3)
ap.add_argument("--seeds", type=int, default=1)
ap.add_argument("--qmax", type=float, default=6.0)
ap.add_argument("--ei", type=float, default=80.0)
ap.add_argument("--angles", default="", help="also fit single scans at these angles (degrees, comma-separated)")
ap.add_argument("--polish", type=int, default=1, help="Levenberg–Marquardt rounds after L-BFGS (refine_sqe's polish=)")
ap.add_argument("--single-only", action="store_true", help="with --angles: only the single-scan fits (skip the full data)")
ap.add_argument("--json", default=None)
a = ap.parse_args()

from _truths import draw_truths  # noqa: E402

from fcinv_widgets import get_material  # noqa: E402
from fcinv_widgets.analysis.refine import ABOVE_NOISE, refine_sqe  # noqa: E402
from fcinv_widgets.noise import add_noise  # noqa: E402
from fcinv_widgets.scans import simulate_scans  # noqa: E402
from fcinv_widgets.sqe import SQE, fold_full, fold_points  # noqa: E402

mat = get_material("Ge")
truths = draw_truths(mat, a.truths, 2026)
angles = [float(v) for v in a.angles.split(",") if v.strip()]
clean = {}  # (truth, data set) → (image, orientations or None)
for name, t in truths:
    calc = SQE(mat.basis, t, temperature=5.0)
    pts = fold_points(calc, mat.grid, a.qmax, mat.conventional_a)
    clean[(name, "full data")] = (fold_full(pts, mat.grid, sigma_mev=1.0, ei_mev=a.ei)[0], None)
    if angles:
        ss = simulate_scans(mat, a.ei, angles, params=t, qmax=a.qmax, progress=False)
        for om, img in zip(angles, ss.scans):
            clean[(name, "single scan")] = clean.get((name, "single scan"), ()) + ((img, [om]),)  # type: ignore[operator]
report = {"settings": vars(a), "names": mat.active_names, "cells": {}}
kinds = ([] if a.single_only and angles else ["full data"]) + (["single scan"] if angles else [])
rows = [(cell, kind) for cell in a.cells.split(";") for kind in kinds]
for cell, kind in rows:
    b, p = (float(v) for v in cell.split(","))
    errs, zs, secs, ratios = [], [], [], []
    for name, t in truths:
        items = [clean[(name, kind)]] if kind == "full data" else list(clean[(name, kind)])
        for img0, orient in items:
            for seed in range(a.seeds):
                img, _ = add_noise(img0, b, p, seed=seed, peak_percentile=99.5)
                r = refine_sqe(mat, img.astype(float), 5.0, a.ei, qmax=a.qmax, orientations=orient, polish=a.polish)
                tt = t[mat.active]
                errs.append(np.abs(r.active_params - tt) / np.abs(tt))
                zs.append((r.active_params - tt) / r.active_sigma)
                secs.append(r.seconds)
                ratios.append(np.nan if r.noise_ratio is None else r.noise_ratio)
    E, Z, R = np.array(errs), np.abs(np.array(zs)), np.array(ratios)
    ok = ~(R > ABOVE_NOISE)  # not flagged (NaN: not estimable, counted as not flagged)
    rep = {
        "median_rel_err": np.median(E, 0).tolist(),
        "max_rel_err": E.max(0).tolist(),
        "cover_1sigma": (Z <= 1).mean(0).tolist(),
        "cover_2sigma": (Z <= 2).mean(0).tolist(),
        "cover_1sigma_all": float((Z <= 1).mean()),
        "cover_2sigma_all": float((Z <= 2).mean()),
        "fc0_3_within_5pct": float((E[:, :4] <= 0.05).all(1).mean()),
        "seconds_median": float(np.median(secs)),
        "noise_ratio": R.tolist(),
        "flagged": int((~ok).sum()),
        "cover_2sigma_all_unflagged": float((Z[ok] <= 2).mean()) if ok.any() else None,
        "max_rel_err_unflagged": E[ok].max(0).tolist() if ok.any() else None,
        "n_fits": len(E),
    }
    report["cells"][f"{cell} {kind}"] = rep
    print(f"\n{kind}, B = {b:g}, P = {p:g}: {len(E)} fits, {np.median(secs):.0f} s each (median)")
    print("| FC | median err | max err | ±1σ | ±2σ |\n|---|---|---|---|---|")
    for i, nm in enumerate(mat.active_names):
        print(
            f"| {nm} | {100 * rep['median_rel_err'][i]:.1f} % | {100 * rep['max_rel_err'][i]:.1f} % | "
            f"{rep['cover_1sigma'][i]:.2f} | {rep['cover_2sigma'][i]:.2f} |"
        )
    print(
        f"all 8 FCs: ±1σ {rep['cover_1sigma_all']:.2f}, ±2σ {rep['cover_2sigma_all']:.2f}; "
        f"FC0–3 all within 5 %: {rep['fc0_3_within_5pct']:.0%} of the fits"
    )
    print(
        "residual / the data's own noise per fit: " + ", ".join(f"{x:.2f}" for x in R) + f"; flagged (> {ABOVE_NOISE:g}): "
        f"{rep['flagged']} of {len(R)}; unflagged fits: ±2σ {rep['cover_2sigma_all_unflagged']}, max error (FC0–7) "
        + (
            "–"
            if rep["max_rel_err_unflagged"] is None
            else " / ".join(f"{100 * x:.0f}" for x in rep["max_rel_err_unflagged"]) + " %"
        )
    )
if a.json:
    with open(a.json, "w") as fh:
        json.dump(report, fh, indent=1)
