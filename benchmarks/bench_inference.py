"""Inference speed of a VAE + regressor model: ms per spectrum with 100 latent samples.

    python benchmarks/bench_inference.py [--model ge-vae] [--n-samples 100]

Prints figures; asserts nothing (timings on shared machines are noisy).
"""

import argparse
import time

import numpy as np

from fcinv_widgets.materials import get_material
from fcinv_widgets.models import Inverter

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="ge-vae")
ap.add_argument("--n-samples", type=int, default=100)
ap.add_argument("--repeat", type=int, default=5)
a = ap.parse_args()
inv = Inverter.load(a.model)
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
    print(f"batch {batch:>3}: {best * 1e3:.2f} ms per spectrum ({a.n_samples} latent samples, best of {a.repeat})")
