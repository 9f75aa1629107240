"""How often the shipped OOD check flags realistic in-distribution spectra, and how often another crystal.

    python benchmarks/bench_ood.py --model ge-vae|ge-resnet|nb-vae|nb-resnet --mask-bank MASKS.npz
        [--dataset ge_nuis.h5 [--skip 1000]] [--n 200] [--n-other 100] [--json FILE]

Uses the model's shipped ``ood.json`` as it is (no recalibration). Held-out spectra of the model's
own training distribution — with ``--dataset``, the test split of the dataset ``fcinv ood-calibrate``
was run on, past the ``--skip`` spectra it calibrated on (its ``--n-test``, default 1000), so with
the same inactive-FC nuisance; without, random stable FCs in its domain with the inactive FCs at
the reference (seed 777, as ``tests/models/test_ood.py``) — and another crystal's dispersion drawn on the model's grid (Nb on the Ge
grid, or Ge on the Nb grid: the other preset's forward model at its reference ± 20 % per active FC),
each clean and through the model's own measurement model (``MeasurementModel.from_dict(config["augment"])``,
seed 99, the coverage bank ``--mask-bank`` (``fcinv mask-bank``); "operating": B ≤ 0.2 and P ≥ 30, the noise grid's
region), plus pure noise and a spurious flat band. Prints the flagged fraction of each set in both
regimes (model-image: clean and noisy calibration; measured: the measurement-model calibration),
in the measured regime also the fraction that is weak data (too little structure above the noise,
session 19) and the fraction flagged among the rest, and the seconds per spectrum of each check.
The S(Q,E) draws are checked with the temperature they were corrected at, as ``invert`` does.
Asserts nothing.
"""

import argparse
import dataclasses
import json
import time

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="ge-vae")
ap.add_argument(
    "--mask-bank", required=True, help="coverage bank (fcinv mask-bank, or fcinv train --mask-bank) of the model's material"
)
ap.add_argument("--n", type=int, default=200, help="held-out in-distribution spectra")
ap.add_argument("--dataset", default=None, help="fcinv dataset HDF5 the model's ood.json was calibrated on")
ap.add_argument("--skip", type=int, default=1000, help="with --dataset: test spectra used by ood-calibrate")
ap.add_argument("--n-other", type=int, default=100, help="spectra of the other crystal")
ap.add_argument(
    "--seed",
    type=int,
    default=None,
    help="one seed for every draw (default: the fixed seeds of the shipped figures: 777, 0, 99, 11, 4)",
)
ap.add_argument("--json", default=None)
a = ap.parse_args()


def _seed(shipped: int, k: int) -> int:
    """The shipped figures' fixed seed, or the k-th one derived from --seed (a fresh draw of everything)."""
    return shipped if a.seed is None else a.seed + 1000 * k


from fcinv_widgets import get_material  # noqa: E402
from fcinv_widgets.forward import ForwardModel  # noqa: E402
from fcinv_widgets.materials import material_for_model  # noqa: E402
from fcinv_widgets.measurement import MeasurementModel, load_bank  # noqa: E402
from fcinv_widgets.models import load_model  # noqa: E402
from fcinv_widgets.models.ood import measured_draws, noisy_copies, structure_to_noise, weak_level  # noqa: E402

model = load_model(a.model)
stats = model.ood_stats()
if stats is None or not stats.has_measured():
    raise SystemExit(f"{a.model}: no ood.json with a measured regime ({getattr(model, 'ood_note', '')})")
cfg = model.config
E = np.asarray(cfg["energy_centers_mev"], float)
bank = load_bank(a.mask_bank)[0]
fm = material_for_model(cfg).forward_model()
dom = np.asarray(cfg["domain"], float)
mat_own = material_for_model(cfg)
inactive = np.setdiff1d(np.arange(mat_own.basis.n_params), mat_own.active)
if a.dataset:
    from fcinv_widgets.dataset import Dataset
    from fcinv_widgets.models.train import full_params

    ds = Dataset(a.dataset)
    te, _, nte = ds.split("test")
    if nte < a.skip + a.n:
        raise SystemExit(f"{a.dataset}: {nte} test spectra, need --skip {a.skip} + --n {a.n}")
    held = np.asarray(te[a.skip : a.skip + a.n], float)
    ds.close()
    fc_held = full_params(a.dataset, "test", a.skip + a.n)[1][a.skip :]
else:
    rng = np.random.default_rng(_seed(777, 0))
    theta = np.zeros((0, len(dom)))
    while len(theta) < 900 + a.n:
        t = dom[:, 0] + rng.random((4096, len(dom))) * (dom[:, 1] - dom[:, 0])
        theta = np.vstack([theta, t[fm.is_stable(t)]])
    held = fm.spectra(theta[900 : 900 + a.n]).astype(float)
    ref_inactive = np.broadcast_to(mat_own.reference_params[inactive], (a.n, len(inactive)))
    fc_held = np.hstack([theta[900 : 900 + a.n], ref_inactive])
own = get_material(cfg["material"])
other = get_material("Nb" if own.name.lower() == "ge" else "Ge")
fmo = ForwardModel(other.basis, own.grid, other.reference_params, other.active)
th = other.reference_params[other.active] * (1 + 0.2 * np.random.default_rng(_seed(0, 1)).standard_normal((4 * a.n_other, 8)))
oth = fmo.spectra(th[fmo.is_stable(th)][: a.n_other]).astype(float)
mm = MeasurementModel.from_dict(cfg["augment"])
full = mm.sampler(E, masks=bank, seed=_seed(99, 2))
op = dataclasses.replace(mm, background=(0.0, 0.2), counts=(30.0, 1000.0)).sampler(E, masks=bank, seed=_seed(99, 2))
sqe_sets = {}
temperatures = {}  # set name -> (N,) K at which each S(Q,E) draw was corrected (the check is told, as invert tells it)
if mm.p_sqe > 0:  # a model trained with the S(Q,E) path: the same held-out spectra as measured S(Q,E)
    for label, kw in (("", {}), (", operating", {"background": (0.0, 0.2), "counts": (30.0, 1000.0)})):
        smp = dataclasses.replace(mm, p_sqe=1.0, **kw).sampler(E, masks=bank, seed=_seed(99, 2))
        smp.attach_sqe(mat_own, fc_held)
        draws = [smp.one(x, 7, i, return_info=True, scale=False) for i, x in enumerate(held)]
        sqe_sets[f"{own.name} realistic S(Q,E){label}"] = np.stack([d for d, _ in draws])
        temperatures[f"{own.name} realistic S(Q,E){label}"] = np.array([info.get("temperature_k", np.nan) for _, info in draws])
band = held[:20].copy()
band[:, :, held.shape[2] // 2 : held.shape[2] // 2 + 2] = band.max()
sets = {
    f"{own.name} clean": held,
    f"{own.name} noisy (B ≤ 0.2, P ≥ 30)": noisy_copies(held, seed=_seed(11, 3))[0],
    f"{own.name} realistic": measured_draws(full, held, epoch=7),
    f"{own.name} realistic, operating": measured_draws(op, held, epoch=7),
    **sqe_sets,
    f"{other.name} on the {own.name} grid, clean": oth,
    f"{other.name} on the {own.name} grid, realistic": measured_draws(full, oth, epoch=7),
    f"{other.name} on the {own.name} grid, realistic, operating": measured_draws(op, oth, epoch=7),
    "pure noise": np.random.default_rng(_seed(4, 4)).random((10, *held.shape[1:])),
    "flat band": band,
}
rows = []
print(f"{a.model}: flagged fraction (model-image regime | measured regime)")
for name, x in sets.items():
    x = np.asarray(x, np.float32)
    ok = np.array([bool(np.isfinite(s).any()) and np.nanmax(s) > np.nanmin(s) for s in x])
    x = x[ok]
    temps = temperatures[name][ok] if name in temperatures else None
    t0 = time.perf_counter()
    f_img = stats.flags(model, x)
    t1 = time.perf_counter()
    f_meas = stats.flags(model, x, measured=True, temperature_k=temps)
    t2 = time.perf_counter()
    weak = structure_to_noise(model, x, temps) < weak_level(temps)  # 3 for S(Q,E) inputs since session 31 (rule W)
    row = {
        "set": name,
        "n": len(x),
        "model_image": float(f_img.mean()),
        "measured": float(f_meas.mean()),
        # session 19: weak data (flagged for too little structure above the noise) and the rest
        "weak": float(weak.mean()),
        "measured_judged": float(f_meas[~weak].mean()) if (~weak).any() else None,
        "n_judged": int((~weak).sum()),
        "s_per_spectrum_model_image": (t1 - t0) / len(x),
        "s_per_spectrum_measured": (t2 - t1) / len(x),
    }
    rows.append(row)
    print(
        f"  {name:<42} n={len(x):<4} {row['model_image']:.2f} | {row['measured']:.2f}   weak {row['weak']:.2f}, "
        f"judged {row['n_judged']}: {row['measured_judged'] if row['measured_judged'] is None else round(row['measured_judged'], 2)}"
        f"   ({row['s_per_spectrum_measured']:.2f} s each)",
        flush=True,
    )
if a.json:
    with open(a.json, "w") as f:
        json.dump({"model": a.model, "mask_bank": a.mask_bank, "dataset": a.dataset, "rows": rows}, f, indent=1)
