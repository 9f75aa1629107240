"""Would the OOD check's refit tell the crystals apart better on a single scan if it knew the scan's
orientation? A measurement for the next pre-registered step of the single-scan rule (rule S), not
a change of the product: the shipped refit renders its S(Q,E) candidate with the mode weights of
every equivalent the kinematics reach (the full data), which leaves a right-crystal scan with
structure it cannot explain (session 35: ~0.25 of it).

For each sample angle ω: the model's crystal and the other preset (Ge ↔ Nb), at their reference
FCs, drawn on the model's path as the one scan at ω (u [110], v [001], the default detector; the
equivalents it reaches averaged per pixel as ``scans.simulate_scans`` does), corrected as
``fcinv invert`` corrects a one-phonon S(Q,E); noiseless and with counting noise (``--b``,
``--p``). Scores: ``refit`` and ``band`` (``models.ood._refit_misfit``) with the shipped renderer
("full": the mode weights of every equivalent the kinematics reach, at the median Ei of the model's
measurement model), the same at the input's Ei ("full at Ei"), and one whose mode weights follow
that orientation's coverage at the input's Ei ("oriented", ``orientation=`` of the refit since session 38, ``models.ood.scan_orientation``: the
weights ``refine_sqe(orientations=[ω])`` uses): the middle column separates the Ei from the orientation.

    python benchmarks/ood_scan_orientation.py [--model ge-vae] [--angles 0,30,60,90] [--t 5] [--ei 80]

Prints a table; asserts nothing.
"""

import argparse

import numpy as np

from fcinv_widgets import get_material
from fcinv_widgets.analysis.expio import to_model_intensity
from fcinv_widgets.materials import material_for_model
from fcinv_widgets.models import load_model, ood
from fcinv_widgets.noise import add_noise
from fcinv_widgets.scans import orientation_image, orientation_matrix
from fcinv_widgets.sqe import SQE, fold_points, gaussians

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="ge-vae")
ap.add_argument("--angles", default="0,30,60,90", help="sample angles ω (degrees), comma-separated")
ap.add_argument("--t", type=float, default=5.0, help="temperature (K)")
ap.add_argument("--ei", type=float, default=80.0, help="incident energy (meV)")
ap.add_argument("--qmax", type=float, default=6.0, help="|Q| range of the scans (1/Å)")
ap.add_argument("--b", type=float, default=0.05, help="background of the noisy copies (fraction of the peak)")
ap.add_argument("--p", type=float, default=300.0, help="counts at the peak of the noisy copies")
a = ap.parse_args()

model = load_model(a.model)
own = material_for_model(model.config)
other = get_material("Nb" if own.name == "Ge" else "Ge")
fm = own.forward_model()
U0 = orientation_matrix()
full_renderer = ood._sqe_renderer


def scan_image(crystal, omega: float) -> np.ndarray:
    calc = SQE(crystal.basis, np.asarray(crystal.reference_params, float), temperature=a.t)
    pts = fold_points(calc, own.grid, a.qmax, crystal.conventional_a)
    gt = gaussians(pts.energies, own.grid.e.centers, ei_mev=a.ei).astype(np.float32)
    d, nrm = orientation_image(pts, gt, omega, a.ei, own.grid, U0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(nrm > 0, d / np.where(nrm > 0, nrm, 1.0), np.nan)


print(f"{a.model}: {own.name} (own) and {other.name} single scans on the {own.name} path, T {a.t:g} K, "
      f"Ei {a.ei:g} meV, |Q| ≤ {a.qmax:g}; noisy: B {a.b:g}, P {a.p:g}")  # fmt: skip
print("| ω (°) | input | refit full | refit full at Ei | refit oriented | band full | band full at Ei | band oriented |")
print("|---|---|---|---|---|---|---|---|")
rng = np.random.default_rng(0)
for omega in (float(v) for v in a.angles.split(",")):
    imgs, names = [], []
    for crystal, label in ((own, "own"), (other, "other")):
        raw = scan_image(crystal, omega)
        noisy, _ = add_noise(raw, a.b, a.p, seed=int(rng.integers(1 << 30)), peak_percentile=99.5)
        for img, what in ((raw, ""), (noisy, " noisy")):
            imgs.append(to_model_intensity(img, own.grid, temperature_k=a.t, clip_percentile=99.5))
            names.append(label + what)
    x = np.stack(imgs)
    scores = {}
    for kind, renderer in (("full", full_renderer), ("full at Ei", lambda *args, **kw: full_renderer(own, fm, a.ei, a.t))):
        ood._sqe_renderer = renderer
        scores[kind] = ood._refit_misfit(model, x, temperature_k=a.t)
    ood._sqe_renderer = full_renderer
    orient = ood.scan_orientation(omega, ei_mev=a.ei, qmax_inv_a=a.qmax)  # the product's oriented refit
    scores["oriented"] = ood._refit_misfit(model, x, temperature_k=a.t, orientation=orient)
    for j, name in enumerate(names):
        cells = (
            " | ".join(f"{scores[k][0][j]:.3f}" for k in scores) + " | " + " | ".join(f"{scores[k][1][j]:.3f}" for k in scores)
        )
        print(f"| {omega:g} | {name} | {cells} |", flush=True)
