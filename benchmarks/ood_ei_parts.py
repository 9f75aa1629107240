"""Which part of a measurement's setup moves the OOD verdict on an S(Q,E) input with the incident energy?

    python benchmarks/ood_ei_parts.py [--material Ge] [--n 3] [--eis 60,80,110,125] [--json FILE]
    python benchmarks/ood_ei_parts.py --noiseless [--material Ge] [--eis 80,110,125]

Session 32 measured the right crystal's flag rate on simulated S(Q,E) files at 1 % (Ei 80 meV) to 30 %
(Ei 120 meV). An S(Q,E) at another Ei differs in two ways: the resolution width σ(E; Ei) and the
kinematic coverage (which equivalents Q reach each pixel, so which are averaged, and which pixels are
measured at all). This benchmark folds the same modes with the resolution of one Ei and the coverage of
another (every pair of ``--eis``), adds B = 0.05 and P = 3000 counts (``noise.add_noise``, at the raw
S(Q,E)'s 99.5th percentile), writes each as an ``fcinv simulate``-like file and prints, per model of
the crystal (``ge-resnet``/``ge-vae`` or ``nb-resnet``/``nb-vae``), temperature (5, 300 K) and pair,
the check's ratio (verdict: > 1) averaged over ``--n`` truths (``_truths``: the first-principles FCs
first for Ge) and its largest component. ``--noiseless``: instead the ``refit`` score alone (the
fraction of the structure the refitted forward model leaves) of the crystal's own and the other
crystal's noiseless S(Q,E) at its reference FCs (5 / 50 / 100 / 300 K, resolution and coverage of
the same Ei), over the refit threshold of the first model. Asserts nothing (docs/results.md, OOD, session 33).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--material", default="Ge", choices=["Ge", "Nb"])
ap.add_argument("--n", type=int, default=3, help="truths (the first-principles FCs first for Ge)")
ap.add_argument("--eis", default="60,80,110,125", help="incident energies (meV)")
ap.add_argument("--qmax", type=float, default=6.0)
ap.add_argument("--seed", type=int, default=7)
ap.add_argument("--noiseless", action="store_true", help="the refit score of noiseless own / other S(Q,E)")
ap.add_argument("--json", default=None)
a = ap.parse_args()
try:
    eis = [float(v) for v in a.eis.split(",")]
except ValueError:
    ap.error(f"--eis: comma-separated incident energies in meV, got {a.eis!r}")
if not all(np.isfinite(e) and e > 0 for e in eis):
    ap.error(f"--eis: incident energies must be finite numbers > 0 meV, got {a.eis!r}")

from _truths import draw_truths  # noqa: E402

from fcinv_widgets import get_material  # noqa: E402
from fcinv_widgets.analysis.expio import to_model_intensity  # noqa: E402
from fcinv_widgets.models import load_model  # noqa: E402
from fcinv_widgets.models.ood import _refit_misfit  # noqa: E402
from fcinv_widgets.noise import add_noise  # noqa: E402
from fcinv_widgets.spectrum_io import write_spectrum  # noqa: E402
from fcinv_widgets.sqe import SQE, fold_full, fold_points  # noqa: E402

own = get_material(a.material)
other = get_material("Nb" if a.material == "Ge" else "Ge")
prefix = a.material.lower()
models = {n: load_model(n) for n in (f"{prefix}-resnet", f"{prefix}-vae")}
grid = own.grid
rows: list = []


if a.noiseless:
    first = next(iter(models))
    thr = models[first].ood_stats().measured["thresholds"]["refit"]
    print(f"refit score of noiseless S(Q,E) (reference FCs, |Q| ≤ {a.qmax:g}); {first}'s refit threshold {thr:.3f}")
    print("| T (K) | Ei (meV) | " + " | ".join(f"{m}: {c}" for m in models for c in (own.name, other.name)) + " |")
    print("|---|---|" + "---|" * (2 * len(models)))
    for temp in (5.0, 50.0, 100.0, 300.0):
        pts = {c.name: fold_points(SQE(c.basis, np.asarray(c.reference_params, float), temperature=temp), grid, a.qmax,
                                   c.conventional_a) for c in (own, other)}  # fmt: skip
        for ei in eis:
            x = np.stack([to_model_intensity(fold_full(pts[c.name], grid, 1.0, ei)[0], grid, temp, 99.5) for c in (own, other)])
            cells = []
            for name, m in models.items():
                refit, _ = _refit_misfit(m, x, temperature_k=temp)
                cells += [f"{v:.4f}" for v in refit]
                rows.append({"T": temp, "ei": ei, "model": name, "own": float(refit[0]), "other": float(refit[1])})
            print(f"| {temp:g} | {ei:g} | " + " | ".join(cells) + " |", flush=True)
else:
    tmp = tempfile.TemporaryDirectory()
    for j, (_, t) in enumerate(draw_truths(own, a.n, a.seed)):
        for temp in (5.0, 300.0):
            pts = fold_points(SQE(own.basis, t, temperature=temp), grid, a.qmax, own.conventional_a)
            for ei_res in eis:
                for ei_kin in eis:
                    img = fold_full(pts, grid, 1.0, ei_res, coverage_ei_mev=ei_kin)[0]
                    noisy, _ = add_noise(img, 0.05, 3000.0, seed=100 + j, peak_percentile=99.5)
                    p = Path(tmp.name) / "x.h5"
                    write_spectrum(p, noisy, grid, material=own.name, kind="full-sqe", temperature_k=temp, ei_mev=ei_kin,
                                   qmax_inv_a=a.qmax, intensity="one-phonon-sqe", origin="simulated")  # fmt: skip
                    for name, m in models.items():
                        o = m.invert(str(p), refine=False)["ood"]
                        rows.append({
                            "truth": j, "T": temp, "ei_res": ei_res, "ei_kin": ei_kin, "model": name, "ratio": o["ratio"],
                            "structure_to_noise": o["structure_to_noise"], "coverage": float(np.isfinite(noisy).mean()),
                            "components": {k: c["value"] / c["threshold"] for k, c in o["components"].items()},
                        })  # fmt: skip
            print(f"truth {j + 1}/{a.n}, {temp:g} K done", flush=True)
    for name in models:
        for temp in (5.0, 300.0):
            print(f"\n{name}, {temp:g} K: mean ratio (largest component); rows: the resolution's Ei, columns: the coverage's")
            print("| resolution \\ coverage | " + " | ".join(f"{e:g}" for e in eis) + " |")
            print("|---|" + "---|" * len(eis))
            for er in eis:
                cells = []
                for ek in eis:
                    rs = [r for r in rows if r["model"] == name and r["T"] == temp and r["ei_res"] == er and r["ei_kin"] == ek]
                    mean = {k: np.mean([r["components"][k] for r in rs]) for k in rs[0]["components"]}
                    cells.append(f"{np.mean([r['ratio'] for r in rs]):.2f} ({max(mean, key=mean.get)})")
                print(f"| {er:g} | " + " | ".join(cells) + " |")
if a.json:
    Path(a.json).write_text(json.dumps({"settings": vars(a), "rows": rows}, indent=1))
