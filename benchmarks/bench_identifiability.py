"""What a perfect inverter could reach: the best 8-parameter fit to the first-principles Ge image.

    python benchmarks/bench_identifiability.py [--references measured,umlff,dft] [--full-sqe] [--json FILE]

A model with 8 active FCs and the 36 others fixed at a reference can only return points of
that 8-parameter family. The clean unit-weight image of the full first-principles (DFT) Ge
force constants is fitted by L-BFGS (``analysis.refine``, started at the DFT active values)
in the family of each reference; the fitted active FCs are the best any inverter with those
fixed inactive FCs can report, and their deviation from the DFT values is a floor under its
error on a DFT "measurement" (no noise, no resolution, full coverage).

``--full-sqe``: the same for the intensity gap. The folded one-phonon S(Q,E) of the DFT FCs
(ARCS resolution at Ei = 80 meV, 5 K, |Q| ≤ 6 Å⁻¹, no noise; what ``fcinv simulate --full-sqe``
writes) is corrected to unit weights as ``fcinv invert`` does by default and fitted with the
model at the DFT reference and the same resolution: the deviation is what the unit-weight
approximation alone costs. Then the same S(Q,E), uncorrected, fitted with the folded-S(Q,E)
model over all parameters from the measured reference (``analysis.refine.refine_sqe``: per-pixel
mode weights, Bose factor, 36 inactive FCs under their prior): what the physics fit recovers.
Prints tables; asserts nothing.
"""

import argparse
import json

import numpy as np

from fcinv_widgets import get_material
from fcinv_widgets.analysis.refine import refine

ap = argparse.ArgumentParser()
ap.add_argument("--references", default="measured,umlff,dft")
ap.add_argument("--full-sqe", action="store_true")
ap.add_argument("--json", default=None)
a = ap.parse_args()

truth_mat = get_material("Ge", reference="dft")
dft_full = np.asarray(truth_mat.dft_params, float)
image = truth_mat.forward_model().spectra(dft_full[truth_mat.active][None])[0]
names = truth_mat.active_names
out = {"names": names, "dft": dft_full[truth_mat.active].tolist(), "fits": {}}
print(f"{'FC':<16} {'DFT':>8} " + " ".join(f"{r:>22}" for r in a.references.split(",")))
rows = []
for ref in a.references.split(","):
    mat = get_material("Ge", reference=ref)
    truth = dft_full[mat.active]
    r = refine(mat.forward_model(), image, start=truth, domain=mat.domain)
    rel = np.abs(r.params - truth) / np.abs(truth)
    out["fits"][ref] = {
        "params": r.params.tolist(),
        "relative_error": rel.tolist(),
        "misfit": r.misfit,
        "inactive_max_abs_diff": float(np.abs(np.delete(mat.reference_params - dft_full, mat.active)).max()),
    }
    rows.append((r.params, rel))
for k, nm in enumerate(names):
    cells = " ".join(f"{p[k]:+8.3f} ({100 * e[k]:5.1f} %)   " for p, e in rows)
    print(f"{nm:<16} {out['dft'][k]:+8.3f} {cells}")
for ref in a.references.split(","):
    f = out["fits"][ref]
    print(f"{ref}: misfit {f['misfit']:.2e}, largest inactive difference to DFT {f['inactive_max_abs_diff']:.3f} eV/Å²")
if a.full_sqe:
    from fcinv_widgets.analysis.expio import DEFAULT_CLIP, to_model_intensity
    from fcinv_widgets.sqe import SQE, fold_full, fold_points

    ei, temp = 80.0, 5.0
    calc = SQE(truth_mat.basis, dft_full, temperature=temp)
    pts = fold_points(calc, truth_mat.grid, 6.0, truth_mat.conventional_a)
    sqe, _ = fold_full(pts, truth_mat.grid, sigma_mev=1.0, ei_mev=ei)
    data = to_model_intensity(sqe, truth_mat.grid, temp, DEFAULT_CLIP)
    fm = truth_mat.forward_model(resolution=("arcs", ei))
    truth = dft_full[truth_mat.active]
    r = refine(fm, data, start=truth, domain=truth_mat.domain)
    rel = np.abs(r.params - truth) / np.abs(truth)
    out["full_sqe"] = {"params": r.params.tolist(), "relative_error": rel.tolist(), "misfit": r.misfit}
    print("\nfolded S(Q,E) of the DFT FCs, corrected to unit weights, fitted at the DFT reference:")
    for k, nm in enumerate(names):
        print(f"{nm:<16} {truth[k]:+8.3f} {r.params[k]:+8.3f} ({100 * rel[k]:5.1f} %)")
    print(f"misfit {r.misfit:.2e}")
    from fcinv_widgets.analysis.refine import refine_sqe

    mat = get_material("Ge")
    rs = refine_sqe(mat, sqe, temp, ei_mev=ei, qmax=6.0)
    rel = np.abs(rs.active_params - truth) / np.abs(truth)
    out["full_sqe_physics_fit"] = {
        "params": rs.active_params.tolist(),
        "sigma": rs.active_sigma.tolist(),
        "relative_error": rel.tolist(),
        "seconds": rs.seconds,
    }
    print("\nthe same S(Q,E), uncorrected, folded-S(Q,E) fit of all 44 FCs from the measured reference (refine_sqe):")
    for k, nm in enumerate(names):
        print(f"{nm:<16} {truth[k]:+8.3f} {rs.active_params[k]:+8.3f} ({100 * rel[k]:5.1f} %)")
    print(f"{rs.seconds:.0f} s")
if a.json:
    with open(a.json, "w") as fh:
        json.dump(out, fh, indent=1)
