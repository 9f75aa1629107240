"""The networks' mean error where real crystals are: plausible truths near the reference against the whole box.

    python benchmarks/bench_local_bias.py [--material Ge] [--models ge-resnet,ge-vae] [--truths 40]
        [--seed 53] [--dataset ge_nuis.h5 --n-box 60] [--ei 80] [--temperature 5] [--cell 0.05,300] [--json FILE]

A network's σ is calibrated over its whole training box (uniform draws); a measured crystal lies near
the material's reference, a small corner of that box. This asks whether the networks' answers are
centred on the truth there. Truths: ``--truths`` plausible sets (``draw_truths``, as the S(Q,E)
benchmarks and ``fcinv trust-calibrate`` draw them: the 8 active FCs within ±15 % of the reference,
the 36 inactive ones from N(reference, (1.5 σ_fit)²), stable; the first-principles set first where
the material has it) and, with ``--dataset``, the first ``--n-box`` test rows of a dataset of the
model's box (uniform over it) for comparison. Each truth is rendered as a folded one-phonon S(Q,E)
at ``--ei`` and ``--temperature`` by two independent routes:

- **simulate**: ``sqe.SQE`` at the truth's own eigenvectors, folded as ``fcinv simulate --full-sqe``
  folds it (ARCS resolution at Ei), then ``noise.add_noise`` (flat B, Poisson P at the 99.5th
  percentile) and the inference correction (``analysis.expio.to_model_intensity``);
- **augmenter**: the training measurement model's S(Q,E) step (``measurement.SQEWeighting``, the
  reference's mode weights) with everything else off but the resolution at that Ei and, noisy, the
  same flat B and Poisson P — what the networks were trained on;

each clean and at ``--cell``. Prints per model, truth set, route and noise the mean standardised error
(answer − truth)/σ per FC (0 for an unbiased network; its standard error is at least 1/√n — the
plausible truths lie close together, so their errors are correlated: compare two seeds), the mean
signed relative error of FC0–FC3 and the ±2σ coverage; progress on stderr. Asserts nothing.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--material", default="Ge")
ap.add_argument("--models", default="ge-resnet,ge-vae")
ap.add_argument("--truths", type=int, default=40)
ap.add_argument("--seed", type=int, default=53)
ap.add_argument("--dataset", default=None, help="a dataset of the models' box: its first --n-box test rows as uniform truths")
ap.add_argument("--n-box", type=int, default=60)
ap.add_argument("--ei", type=float, default=80.0)
ap.add_argument("--temperature", type=float, default=5.0)
ap.add_argument("--qmax", type=float, default=6.0)
ap.add_argument("--cell", default="0.05,300", help="B,P of the noisy renderings")
ap.add_argument("--json", default=None)
a = ap.parse_args()

sys.path.insert(0, str(Path(__file__).parent))
from _truths import draw_truths  # noqa: E402

from fcinv_widgets import get_material  # noqa: E402
from fcinv_widgets.analysis.expio import to_model_intensity  # noqa: E402
from fcinv_widgets.dataset import _nuisance_model  # noqa: E402
from fcinv_widgets.measurement import SQE_CLIP, MeasurementModel  # noqa: E402
from fcinv_widgets.models import load_model  # noqa: E402
from fcinv_widgets.models.train import full_params  # noqa: E402
from fcinv_widgets.noise import add_noise  # noqa: E402
from fcinv_widgets.sqe import SQE, fold_full, fold_points  # noqa: E402

mat = get_material(a.material)
grid = mat.grid
B, P = (float(v) for v in a.cell.split(","))
_, inactive = _nuisance_model(mat, 1.0)
order = np.concatenate([mat.active, inactive])  # the augmenter's parameter order: active first


def in_basis_order(params_aug_order):
    out = np.empty((len(params_aug_order), len(order)))
    out[:, order] = params_aug_order
    return out


sets = {"plausible": np.array([t for _, t in draw_truths(mat, a.truths, a.seed)])}
if a.dataset:
    _, p_box = full_params(a.dataset, "test", a.n_box)
    sets["box"] = in_basis_order(p_box)
energies = np.asarray(grid.e.centers, float)
ef = a.ei / float(energies.max())
base = dict(
    p_sqe=1.0, p_clean=0.0, p_resolution=1.0, weight_q=0.0, weight_e=0.0, p_elastic=0.0, slope=(0.0, 0.0), p_mask=0.0,
    sqe_temperatures=(a.temperature,), ei_factor=(ef, ef), n_ei_kernels=1,
)  # fmt: skip


def renderings(full):
    """{(route, noise): (n, nq, nE) corrected inputs} of the truths ``full`` (n, P) in basis order."""
    n = len(full)
    out = {}
    for noise, extra in (
        ("clean", dict(background=(0.0, 0.0), p_noiseless=1.0)),
        ("noisy", dict(background=(B, B), counts=(P, P), p_noiseless=0.0)),
    ):
        aug = MeasurementModel(**base, **extra).sampler(energies, masks=None, seed=0)
        aug.attach_sqe(mat, full[:, order])
        out[("augmenter", noise)] = aug.apply(np.zeros((n,) + grid.shape, np.float32), np.arange(n), 0)
    raw = [
        fold_full(
            fold_points(SQE(mat.basis, t, temperature=a.temperature), grid, a.qmax, mat.conventional_a),
            grid,
            sigma_mev=1.0,
            ei_mev=a.ei,
        )[0]
        for t in full
    ]
    out[("simulate", "clean")] = np.array([to_model_intensity(r, grid, a.temperature, SQE_CLIP) for r in raw], np.float32)
    out[("simulate", "noisy")] = np.array(
        [
            to_model_intensity(add_noise(r, B, P, seed=7 + i, peak_percentile=SQE_CLIP)[0], grid, a.temperature, SQE_CLIP)
            for i, r in enumerate(raw)
        ],
        np.float32,
    )
    return out


def progress(msg: str) -> None:
    """One progress line on stderr (the table and --json go to stdout / the file)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


inputs = {}
for name, full in sets.items():
    progress(f"rendering the {len(full)} {name} truths (two routes, clean and noisy)")
    inputs[name] = renderings(full)
rows = []
names = None
for mname in a.models.split(","):
    progress(f"{mname}: predicting {sum(len(v) for v in inputs.values())} renderings")
    m = load_model(mname)
    names = m.names
    for sname, full in sets.items():
        y = full[:, mat.active]
        for (route, noise), x in inputs[sname].items():
            p = m.predict(x, n_samples=100, seed=0, sigma_regime="measured-sqe")
            z = (p.mean - y) / p.std
            rel = (p.mean - y) / np.abs(y)
            rows.append(
                {
                    "model": mname, "truths": sname, "n": len(y), "route": route, "noise": noise,
                    "mean_z": z.mean(0).tolist(), "mean_signed_rel": rel.mean(0).tolist(),
                    "coverage_2sigma": float((np.abs(z) <= 2).mean()),
                }
            )  # fmt: skip
print(f"{a.material}: Ei {a.ei:g} meV, T {a.temperature:g} K, noisy B {B:g} P {P:g}; plausible truths seed {a.seed}")
print("| model | truths (n) | route | noise | mean z FC0–FC7 | mean signed error FC0–FC3 | ±2σ |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(
        f"| {r['model']} | {r['truths']} ({r['n']}) | {r['route']} | {r['noise']} | "
        + " / ".join(f"{v:+.2f}" for v in r["mean_z"])
        + " | "
        + " / ".join(f"{100 * v:+.1f} %" for v in r["mean_signed_rel"][:4])
        + f" | {r['coverage_2sigma']:.2f} |"
    )
if a.json:
    Path(a.json).write_text(json.dumps({"settings": vars(a), "names": names, "rows": rows}, indent=1))
