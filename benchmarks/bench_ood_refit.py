"""Speed of the OOD check's physics refit (``models.ood._refit_misfit``, the measured regime's long
part): seconds per spectrum on realistic draws of a shipped model's own measurement model, and the
scores themselves so that two versions of the code can be compared on the same inputs.

    python benchmarks/bench_ood_refit.py [--model ge-vae] [--n 24] [--seed 3] [--repeat 3] [--out scores.npz]
    python benchmarks/bench_ood_refit.py ... --compare scores.npz   # max |Δ| of refit and band
    python benchmarks/bench_ood_refit.py --model ge-resnet --sqe 300,80 [--out/--compare …]

``--sqe T,EI``: instead, four one-phonon S(Q,E) inputs corrected at T (K) as ``fcinv invert``
corrects them — the model's crystal and the other preset (Ge ↔ Nb) drawn on its path, noiseless
(reference FCs, |Q| ≤ 6 Å⁻¹, ARCS resolution and kinematics at EI meV) and with Gaussian noise of
5 % of the maximum — and their scores printed one by one.

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
ap.add_argument("--sqe", help="T,EI: score four one-phonon S(Q,E) inputs at T (K) and Ei (meV) instead")
a = ap.parse_args()

model = load_model(a.model)
cfg = model.config
fm = material_for_model(cfg).forward_model()
dom = np.asarray(cfg["domain"], float)
rng = np.random.default_rng(a.seed)
theta = dom[:, 0] + rng.random((40 * a.n, len(dom))) * (dom[:, 1] - dom[:, 0])
theta = theta[fm.is_stable(theta)][: a.n + 2]
temperature = None
if not a.sqe:  # (the draws only where they are scored)
    sampler = MeasurementModel.from_dict(cfg["augment"]).sampler(cfg["energy_centers_mev"], seed=a.seed)
    x = measured_draws(sampler, fm.spectra(theta).astype(float))
else:
    from fcinv_widgets import get_material
    from fcinv_widgets.analysis.expio import to_model_intensity
    from fcinv_widgets.sqe import SQE, fold_full, fold_points

    temperature, ei = (float(v) for v in a.sqe.split(","))
    own = material_for_model(cfg)
    other = get_material("Nb" if own.name == "Ge" else "Ge")

    def sqe_input(crystal):
        calc = SQE(crystal.basis, np.asarray(crystal.reference_params, float), temperature=temperature)
        pts = fold_points(calc, own.grid, 6.0, crystal.conventional_a)
        img = fold_full(pts, own.grid, sigma_mev=1.0, ei_mev=ei)[0]
        return to_model_intensity(img, own.grid, temperature_k=temperature, clip_percentile=99.5)

    clean = np.stack([sqe_input(own), sqe_input(other)])
    noisy = clean + 0.05 * np.nanmax(clean) * rng.standard_normal(clean.shape)
    x = np.concatenate([clean[:1], clean, noisy])  # the first one: warm-up
    a.n = 4
_refit_misfit(model, x[:2], temperature_k=temperature)  # warm-up: renderers, kernels
best = np.inf
for _ in range(a.repeat):
    t = time.perf_counter()
    refit, band = _refit_misfit(model, x[2:] if not a.sqe else x[1:], temperature_k=temperature)
    best = min(best, time.perf_counter() - t)
what = f"one-phonon S(Q,E) inputs at {a.sqe}" if a.sqe else "measured-regime draws"
print(f"{a.model}: refit of {a.n} {what}: {1e3 * best / a.n:.0f} ms per spectrum (best of {a.repeat})")
if a.sqe:
    for name, r, b in zip(("own", "other", "own noisy", "other noisy"), refit, band):
        print(f"  {name:<12} refit {r:.4f}  band {b:.3f}")
else:
    print(f"  refit median {np.median(refit):.4f}, band median {np.median(band):.4f}")
if a.out:
    np.savez(a.out, refit=refit, band=band)
if a.compare:
    with np.load(a.compare, allow_pickle=False) as z:
        for k, v in (("refit", refit), ("band", band)):
            d = np.abs(np.asarray(z[k]) - v)
            print(f"  {k}: max |Δ| {d.max():.2e} (max relative {(d / np.maximum(np.abs(v), 1e-12)).max():.2e})")
