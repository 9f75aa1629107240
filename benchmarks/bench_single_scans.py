"""A model on realistic S(Q,E) single scans rendered with their own orientation's mode weights.

    python benchmarks/bench_single_scans.py --model ge-resnet --dataset ge_nuis.h5 \\
        --mask-bank ge_masks_geom.npz [--n 500] [--seed 11] [--resolved-lines] [--json FILE]

The first ``--n`` test spectra of ``--dataset`` (their own 44 FCs), each drawn once through the
measurement model with every draw an S(Q,E) (``p_sqe = 1``): once as a single scan of the coverage
bank with that orientation's weights (``MeasurementModel.sqe_scan_geometry``; the bank must record
its geometry, as banks written since session 16 do), once with full coverage. Prints R² per FC and
the ±1σ / ±2σ coverage of the model's σ (the single scans' "measured-sqe-scan" calibration, full coverage
"measured-sqe"). ``--resolved-lines``: the S(Q,E) draws on lines of their Ei's ARCS resolution, weighted
after, as a measurement has them (``MeasurementModel.sqe_resolved_lines``, session 39); without it as
every figure before session 39 was drawn (weights, then a resolution kernel). Asserts nothing.
"""

import argparse
import json
from pathlib import Path

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="ge-resnet")
ap.add_argument("--dataset", required=True)
ap.add_argument("--mask-bank", required=True)
ap.add_argument("--n", type=int, default=500)
ap.add_argument("--seed", type=int, default=11)
ap.add_argument("--resolved-lines", action="store_true")
ap.add_argument("--json", default=None)
a = ap.parse_args()

from fcinv_widgets.measurement import MeasurementModel, load_bank, recorded_geometry  # noqa: E402
from fcinv_widgets.models import load_model  # noqa: E402
from fcinv_widgets.models.train import TEST_EPOCH, _augmenter, load_split  # noqa: E402

x, y, info = load_split(a.dataset, "test", a.n)
masks, meta = load_bank(a.mask_bank)
geometry = recorded_geometry(meta)
if not geometry:
    raise SystemExit(f"{a.mask_bank} does not record its geometry: write the bank again (fcinv train --mask-bank NEW.npz)")
model = load_model(a.model)
kw = {"n_samples": 32, "reconstruct": False} if model.kind == "vae" else {}
sets = {
    "single scan, own weights": MeasurementModel(
        p_sqe=1.0, p_clean=0.0, p_mask=1.0, p_single=1.0, sqe_scan_geometry=geometry, sqe_resolved_lines=a.resolved_lines
    ),
    "full coverage": MeasurementModel(p_sqe=1.0, p_clean=0.0, p_mask=0.0, sqe_resolved_lines=a.resolved_lines),
}
out = {"settings": vars(a), "names": model.names, "sets": {}}
for label, mm in sets.items():
    aug = _augmenter(mm, info, masks, a.seed, dataset=a.dataset, split="test", n=len(x))
    xa = aug.apply(x, np.arange(len(x)), TEST_EPOCH).astype(np.float32)
    # σ as infer-scans sizes it: a single scan's own calibration (falls back to "measured-sqe" for
    # checkpoints before session 20), full coverage the S(Q,E) one
    p = model.predict(xa, sigma_regime="measured-sqe-scan" if label.startswith("single") else "measured-sqe", **kw)
    r2 = 1 - ((p.mean - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    z = np.abs(p.mean - y) / p.std
    out["sets"][label] = {"r2": r2.tolist(), "cov1": (z <= 1).mean(0).tolist(), "cov2": (z <= 2).mean(0).tolist()}
    print(
        f"{a.model} · {label} ({len(x)}): R² "
        + " / ".join(f"{v:.3f}" for v in r2)
        + f" | ±1σ {np.mean(z <= 1):.2f} ±2σ {np.mean(z <= 2):.2f} (8 FCs)",
        flush=True,
    )
if a.json:
    Path(a.json).write_text(json.dumps(out, indent=1))
