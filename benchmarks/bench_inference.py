"""Inference speed of a shipped or trained model: ms per spectrum (VAE + regressor with
100 latent samples; ResNet-18 a single forward pass).

    python benchmarks/bench_inference.py [--model ge-vae|ge-resnet|DIR] [--n-samples 100] [--threads N]

Prints figures; asserts nothing (timings on shared machines are noisy).
"""

import argparse
import time

import numpy as np

from fcinv_widgets.materials import get_material
from fcinv_widgets.models import load_model

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="ge-vae")
ap.add_argument("--n-samples", type=int, default=100)
ap.add_argument("--repeat", type=int, default=5)
ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
a = ap.parse_args()
if a.threads:
    import torch

    torch.set_num_threads(a.threads)
inv = load_model(a.model)
mat = get_material(inv.config["material"])
fm = mat.forward_model()
rng = np.random.default_rng(0)
lo, hi = mat.domain.T
th = rng.uniform(lo, hi, size=(4000, 8))
th = th[fm.is_stable(th)][:64]
x = fm.spectra(th)
inv.predict(x[:2], n_samples=a.n_samples)
for batch in (1, 64):
    best = np.inf
    for _ in range(a.repeat):
        t = time.perf_counter()
        inv.predict(x[:batch], n_samples=a.n_samples, reconstruct=False)
        best = min(best, (time.perf_counter() - t) / batch)
    if inv.kind == "vae":
        what = f"{a.n_samples} latent samples"
    else:
        what = "with its σ head" if inv.config.get("heteroscedastic") else "point estimate"
    print(f"{a.model} ({inv.kind}) batch {batch:>3}: {best * 1e3:.2f} ms per spectrum ({what}, best of {a.repeat})")
