"""Speed of the OOD check's physics refit (``models.ood._refit_misfit``, the measured regime's long
part): seconds per spectrum on realistic draws of a shipped model's own measurement model, and the
scores themselves so that two versions of the code can be compared on the same inputs.

    python benchmarks/bench_ood_refit.py [--model ge-vae] [--n 24] [--seed 3] [--repeat 3] [--out scores.npz]
    python benchmarks/bench_ood_refit.py ... --compare scores.npz   # max |Δ| of refit and band

Run it from two checkouts (``PYTHONPATH=…``) on an otherwise idle machine for a before/after
ratio. Prints figures; asserts nothing (timings on shared machines are noisy).
"""

import argparse
import time

import numpy as np

from fcinv_widgets.materials import material_for_model
from fcinv_widgets.measurement import MeasurementModel
from fcinv_widgets.models import load_model
from fcinv_widgets.models.ood import _refit_misfit, measured_draws

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="ge-vae")
ap.add_argument("--n", type=int, default=24, help="spectra timed (after 2 warm-up ones)")
ap.add_argument("--seed", type=int, default=3)
ap.add_argument("--repeat", type=int, default=3, help="best of this many passes")
ap.add_argument("--out", help="write the scores (npz: refit, band)")
ap.add_argument("--compare", help="scores written by another version (npz): print the largest differences")
a = ap.parse_args()

model = load_model(a.model)
cfg = model.config
fm = material_for_model(cfg).forward_model()
dom = np.asarray(cfg["domain"], float)
rng = np.random.default_rng(a.seed)
theta = dom[:, 0] + rng.random((40 * a.n, len(dom))) * (dom[:, 1] - dom[:, 0])
theta = theta[fm.is_stable(theta)][: a.n + 2]
sampler = MeasurementModel.from_dict(cfg["augment"]).sampler(cfg["energy_centers_mev"], seed=a.seed)
x = measured_draws(sampler, fm.spectra(theta).astype(float))
_refit_misfit(model, x[:2])  # warm-up: renderers, kernels
best = np.inf
for _ in range(a.repeat):
    t = time.perf_counter()
    refit, band = _refit_misfit(model, x[2:])
    best = min(best, time.perf_counter() - t)
print(f"{a.model}: refit of {a.n} measured-regime draws: {1e3 * best / a.n:.0f} ms per spectrum (best of {a.repeat})")
print(f"  refit median {np.median(refit):.4f}, band median {np.median(band):.4f}")
if a.out:
    np.savez(a.out, refit=refit, band=band)
if a.compare:
    with np.load(a.compare, allow_pickle=False) as z:
        for k, v in (("refit", refit), ("band", band)):
            d = np.abs(np.asarray(z[k]) - v)
            print(f"  {k}: max |Δ| {d.max():.2e} (max relative {(d / np.maximum(np.abs(v), 1e-12)).max():.2e})")
