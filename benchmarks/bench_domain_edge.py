"""What a network answers when the crystal's force constants lie outside its training domain.

    python benchmarks/bench_domain_edge.py [--material Ge] [--models ge-resnet,ge-vae] [--widen 0.3]
        [--n 1500] [--seed 71] [--mask-bank ge_masks.npz --sqe-weights 0.5] [--json FILE]

The networks learn the FCs over a box (the material's training domain, docs/results.md "Training
domains"); a real crystal may sit near its edge or beyond it (the first-principles Ge FC5 is
−0.234 eV/Å² against the box's −0.251). This draws a test set over the box widened by ``--widen``
of its width on every side (``generate_dataset(domain=…)``, nuisance 1.5, the preset's
reference), so some truths lie outside, passes it to each model clean and through the
measurement model (``analysis.evaluation.realistic_test_set``), and reports per FC:

* by where the truth lies — inside (more than 10 % of the width from an edge), near an edge
  inside, outside by up to 15 % / beyond — the number of cases, the mean signed error in σ
  (positive: toward the box's interior) and the ±2σ coverage;
* for the answer-side check ``models.domain_edge`` (the mean ± kσ reaching past the box on
  the checked FCs), how many spectra with a truth outside it flags, how many with every checked
  truth inside it flags, and the ±2σ coverage of the flagged and unflagged.

Prints figures and writes them with ``--json``; asserts nothing.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fcinv_widgets.analysis.evaluation import evaluate_model, realistic_test_set  # noqa: E402
from fcinv_widgets.dataset import generate_dataset  # noqa: E402
from fcinv_widgets.materials import get_material  # noqa: E402
from fcinv_widgets.models import load_model  # noqa: E402
from fcinv_widgets.models.train import load_split  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--material", default="Ge")
ap.add_argument("--models", default="ge-resnet,ge-vae")
ap.add_argument("--widen", type=float, default=0.3, help="widen the box by this fraction of its width on every side")
ap.add_argument("--n", type=int, default=1500, help="test spectra")
ap.add_argument("--seed", type=int, default=71)
ap.add_argument("--nuisance", type=float, default=1.5)
ap.add_argument("--mask-bank", default=None)
ap.add_argument("--sqe-weights", type=float, default=None)
ap.add_argument("--checked", type=int, default=4, help="leading FCs the edge check looks at")
ap.add_argument("--ks", default="1,2", help="edge-check widths k (answer ± kσ) to score")
ap.add_argument("--in-dataset", default=None, help="also: how often the check fires on this in-domain dataset's test split")
ap.add_argument("--n-ood", type=int, default=0, help="also run the spectra's out-of-distribution check on this many")
ap.add_argument("--json", default=None)
a = ap.parse_args()

mat = get_material(a.material)
box = np.asarray(mat.domain, float)
width = box[:, 1] - box[:, 0]
wide = np.stack([box[:, 0] - a.widen * width, box[:, 1] + a.widen * width], 1)
tmp = Path(tempfile.mkdtemp())
path = tmp / f"{a.material.lower()}_wide.h5"
t0 = time.perf_counter()
generate_dataset(a.material, path, n_train=0, n_test=a.n, seed=a.seed, progress=False, domain=wide, nuisance=a.nuisance)
x0, y, info = load_split(path, "test")
print(f"{len(y)} test spectra over the box widened by {a.widen:.0%} per side ({time.perf_counter() - t0:.0f} s)")
u = (y - box[:, 0]) / width  # position in the box: 0 … 1 inside
outside = (u < 0) | (u > 1)
print("truths outside the box per FC:", " ".join(f"{f:.2f}" for f in outside.mean(0)))


def position_rows(true, mean, std):
    rows = {}
    uu = (true - box[:, 0]) / width
    toward = np.where(uu < 0.5, 1.0, -1.0)  # +1: the interior is above the truth
    z = (mean - true) / std * toward
    cats = {
        "inside": (uu >= 0.1) & (uu <= 0.9),
        "near edge, inside": ((uu >= 0) & (uu < 0.1)) | ((uu > 0.9) & (uu <= 1)),
        "outside ≤ 15 %": ((uu < 0) & (uu >= -0.15)) | ((uu > 1) & (uu <= 1.15)),
        "outside > 15 %": (uu < -0.15) | (uu > 1.15),
    }
    for name, m in cats.items():
        rows[name] = {
            "n": m.sum(0).tolist(),
            "mean_z_inward": [float(z[m[:, j], j].mean()) if m[:, j].any() else None for j in range(8)],
            "coverage_2sigma": [float((np.abs(z[m[:, j], j]) <= 2).mean()) if m[:, j].any() else None for j in range(8)],
        }
    return rows


def edge_check_rows(true, mean, std, k, checked):
    c = slice(0, checked)
    flag = ((mean[:, c] - k * std[:, c] < box[c, 0]) | (mean[:, c] + k * std[:, c] > box[c, 1])).any(1)
    out_any = ((true[:, c] < box[c, 0]) | (true[:, c] > box[c, 1])).any(1)
    uu = (true[:, c] - box[c, 0]) / width[c]
    far = ((uu < -0.15) | (uu > 1.15)).any(1)
    cov = (np.abs(mean[:, c] - true[:, c]) <= 2 * std[:, c]).all(1)
    return {
        "flagged_truth_far_outside": float(flag[far].mean()) if far.any() else None,
        "n_truth_far_outside": int(far.sum()),
        "k": k,
        "checked": checked,
        "flagged_truth_outside": float(flag[out_any].mean()) if out_any.any() else None,
        "n_truth_outside": int(out_any.sum()),
        "flagged_truth_inside": float(flag[~out_any].mean()) if (~out_any).any() else None,
        "n_truth_inside": int((~out_any).sum()),
        "all_checked_in_2sigma_flagged": float(cov[flag].mean()) if flag.any() else None,
        "all_checked_in_2sigma_unflagged": float(cov[~flag].mean()) if (~flag).any() else None,
        "n_flagged": int(flag.sum()),
    }


res = {"settings": vars(a), "n": int(len(y)), "outside_fraction": outside.mean(0).tolist(), "models": {}}
for name in a.models.split(","):
    model = load_model(name)
    res["models"][name] = {}
    sets = {"clean": (x0, "model-image")}
    if a.mask_bank or a.sqe_weights is not None:
        xr, reg, desc = realistic_test_set(path, x0, info, mask_bank=a.mask_bank, sqe_weights=a.sqe_weights, seed=a.seed)
        sets["realistic"] = (xr, reg)
    for label, (x, reg) in sets.items():
        t0 = time.perf_counter()
        d = evaluate_model(model, x, y, n_samples=30, sigma_regime=reg)
        true, mean, std = d["true"], d["pred"], d["pred_std"]
        rows = position_rows(true, mean, std)
        checks = [edge_check_rows(true, mean, std, float(k), a.checked) for k in a.ks.split(",")]
        res["models"][name][label] = {"positions": rows, "edge_check": checks, "r2": d["r2"]}
        print(
            f"\n{name}, {label} ({time.perf_counter() - t0:.0f} s): mean z toward the interior / ±2σ coverage, by where the truth lies"
        )
        for cat, r in rows.items():
            cells = [
                "    —      " if r["mean_z_inward"][j] is None else f"{r['mean_z_inward'][j]:+5.2f}/{r['coverage_2sigma'][j]:.2f}"
                for j in range(8)
            ]
            print(f"  {cat:<18} " + " ".join(cells) + f"   (n {min(r['n'])}–{max(r['n'])})")
        for c in checks:
            print(
                f"  edge check k = {c['k']:g} on FC0–FC{a.checked - 1}: flags {c['flagged_truth_outside']:.2f} of "
                f"{c['n_truth_outside']} with a truth outside ({c['flagged_truth_far_outside']:.2f} of {c['n_truth_far_outside']} "
                f"> 15 % outside), {c['flagged_truth_inside']:.2f} of {c['n_truth_inside']} "
                f"inside; all checked FCs in ±2σ: flagged {c['all_checked_in_2sigma_flagged']}, unflagged "
                f"{c['all_checked_in_2sigma_unflagged']:.3f}"
            )
        if a.n_ood:
            # does the spectrum-side check (models.ood) see what the answer-side one does?
            m = min(a.n_ood, len(x))
            flags = np.array([bool((model.ood_check(x[i], measured=label != "clean") or {}).get("flag")) for i in range(m)])
            uu = u[:m, : a.checked]
            cats = {
                "checked truths inside": ((uu >= 0) & (uu <= 1)).all(1),
                "a checked truth ≤ 15 % outside": (((uu < 0) | (uu > 1)).any(1)) & ((uu >= -0.15) & (uu <= 1.15)).all(1),
                "a checked truth > 15 % outside": ((uu < -0.15) | (uu > 1.15)).any(1),
            }
            res["models"][name][label]["ood_flagged"] = {
                k: [float(flags[v].mean()) if v.any() else None, int(v.sum())] for k, v in cats.items()
            }
            print(
                "  spectrum OOD check flags: "
                + "; ".join(f"{k} {v[0]} of {v[1]}" for k, v in res["models"][name][label]["ood_flagged"].items())
            )
    if a.in_dataset:
        xi, yi, info_i = load_split(a.in_dataset, "test", a.n)
        sets_i = {"clean": (xi, "model-image")}
        if a.mask_bank or a.sqe_weights is not None:
            xr, reg, _ = realistic_test_set(
                a.in_dataset, xi, info_i, mask_bank=a.mask_bank, sqe_weights=a.sqe_weights, seed=a.seed
            )
            sets_i["realistic"] = (xr, reg)
        for label, (x, reg) in sets_i.items():
            d = evaluate_model(model, x, yi, n_samples=30, sigma_regime=reg)
            mean, std = d["pred"], d["pred_std"]
            rec = {}
            for k in (float(k) for k in a.ks.split(",")):
                per_fc = ((mean - k * std < box[:, 0]) | (mean + k * std > box[:, 1])).mean(0)
                rec[f"k={k:g}"] = {
                    "per_fc": per_fc.tolist(),
                    "any_checked": float(
                        (
                            (mean[:, : a.checked] - k * std[:, : a.checked] < box[: a.checked, 0])
                            | (mean[:, : a.checked] + k * std[:, : a.checked] > box[: a.checked, 1])
                        )
                        .any(1)
                        .mean()
                    ),
                }
                print(
                    f"  in-domain {Path(a.in_dataset).name} {label}, k = {k:g}: flagged per FC "
                    + " ".join(f"{f:.3f}" for f in per_fc)
                    + f"; any of FC0–FC{a.checked - 1}: {rec[f'k={k:g}']['any_checked']:.3f}"
                )
            # coverage by where the *answer* lies (what a user sees), FC0–FC3 of in-box spectra
            zs = np.minimum(mean - box[:, 0], box[:, 1] - mean) / std
            t = yi
            by = {}
            for lo, hi in ((-np.inf, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, np.inf)):
                sel = (zs >= lo) & (zs < hi)
                sel[:, a.checked :] = False
                n_sel = int(sel.sum())
                c1 = float((np.abs(mean - t) <= std)[sel].mean()) if n_sel else None
                c2 = float((np.abs(mean - t) <= 2 * std)[sel].mean()) if n_sel else None
                by[f"{lo:g}..{hi:g}"] = {"n": n_sel, "coverage_1sigma": c1, "coverage_2sigma": c2}
                if n_sel:
                    print(f"    answer {lo:g}–{hi:g}σ from the edge: n {n_sel:4d}, ±1σ {c1:.2f}, ±2σ {c2:.2f}")
            rec["coverage_by_answer_edge_sigmas"] = by
            res["models"][name][f"in-domain {label}"] = rec
if a.json:
    Path(a.json).write_text(json.dumps(res, indent=1))
