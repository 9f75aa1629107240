"""Iterative refinement on clean simulated spectra: relative FC error and wall time.

    python benchmarks/bench_refine.py [--material Ge] [--n 5] [--start vae|noise] [--start-spread 0.1]

For each of ``n`` stable random FC sets in the training domain: simulate the spectrum, start
L-BFGS from the shipped VAE's prediction (``--start vae``, the paper's protocol: ML first, then
the classical fit) or from the truth plus ``start-spread`` × domain width of Gaussian noise,
and print the worst relative error over the 8 FCs (relative to the domain width for FCs
smaller than 5 % of it) and the wall time. Prints figures; asserts nothing.
"""

import argparse

import numpy as np

from fcinv_widgets import get_material
from fcinv_widgets.analysis.refine import refine

ap = argparse.ArgumentParser()
ap.add_argument("--material", default="Ge")
ap.add_argument("--n", type=int, default=5)
ap.add_argument("--start", choices=("vae", "noise"), default="vae")
ap.add_argument("--start-spread", type=float, default=0.1)
ap.add_argument("--seed", type=int, default=0, help="of the true FC sets and the start noise (the README's figure: 0)")
a = ap.parse_args()
mat = get_material(a.material)
fm = mat.forward_model()
rng = np.random.default_rng(a.seed)
lo, hi = mat.domain.T
cand = rng.uniform(lo, hi, size=(20000, 8))
truths = cand[fm.is_stable(cand)][: a.n]
refine(fm, fm.spectra(truths[:1])[0], start=truths[0], domain=mat.domain, max_iter=5)  # build the torch twin once
if a.start == "vae":
    from fcinv_widgets.models import load_model

    starts = load_model(f"{a.material.lower()}-vae").predict(fm.spectra(truths), n_samples=100, reconstruct=False).mean
else:
    starts = truths + a.start_spread * (hi - lo) * rng.normal(size=truths.shape)
errs, secs = [], []
for k, (true, start) in enumerate(zip(truths, starts)):
    r = refine(fm, fm.spectra(true[None])[0], start=start, domain=mat.domain)
    err = np.abs(r.params - true) / np.maximum(np.abs(true), 0.05 * (hi - lo))
    errs.append(err.max())
    secs.append(r.seconds)
    print(
        f"set {k}: worst relative error {err.max():.2e} (median {np.median(err):.1e}), {r.n_iter} evaluations, "
        f"{r.seconds:.2f} s, misfit {r.misfit_start:.2e} → {r.misfit:.2e}"
    )
print(
    f"{a.material}, start {a.start}: worst relative FC error ≤ {max(errs):.2e} over {len(errs)} sets; "
    f"median wall time {np.median(secs):.2f} s per fit"
)
