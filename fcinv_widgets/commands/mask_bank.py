"""fcinv mask-bank: the coverage bank of single-orientation scans that training (``--augment``),
evaluation, σ calibration and the OOD benchmarks draw coverage masks from — without a training run.

The same file ``fcinv train --augment --mask-bank FILE`` writes when FILE does not exist
(``measurement.coverage_bank`` + ``save_bank``: packed boolean masks, their shape and a JSON meta
with the material and geometry; read back with ``allow_pickle=False``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FcinvError
from ._common import add_json, add_material_args, emit, load_material, positive_float


def register(sub):
    p = sub.add_parser(
        "mask-bank",
        help="write the coverage bank (single-orientation scan masks) that --augment/--mask-bank draw from",
        description="Simulate the detector coverage of single-orientation scans of a preset on its q-path "
        "(ARCS-like kinematics) and write the masks as a coverage bank for fcinv train/evaluate/"
        "sigma-calibrate/ood-calibrate --mask-bank. Defaults are those of fcinv train --mask-bank.",
    )
    add_material_args(p, files=False)
    p.add_argument("--ei", type=positive_float, default=None, help="incident energy (meV; default 1.15 × the grid's top)")
    p.add_argument(
        "--angles",
        default="0:180:4",
        help="sample angles ω in degrees: start:stop:step (stop excluded) or a comma list (default 0:180:4)",
    )
    p.add_argument("--qmax", type=positive_float, default=6.0, help="largest |Q| folded (Å⁻¹, default 6)")
    p.add_argument("--out", required=True, help="the bank file (.npz)")
    add_json(p, progress=True)
    p.set_defaults(func=run, outputs=[("out", "file", None)])


def _check_overwrite(path: str) -> None:
    """An existing non-empty --out is overwritten only when it is a coverage bank itself."""
    from ..measurement import load_bank

    p = Path(path)
    if p.is_file() and p.stat().st_size > 0:
        try:
            load_bank(p)
        except FcinvError:
            raise FcinvError(
                f"--out {path}: exists and is not a coverage bank; will not overwrite it (remove it or choose another name)"
            ) from None


def run(args) -> int:
    from ..measurement import bank_geometry, coverage_bank, save_bank
    from ..scans import check_ei, parse_angles

    _check_overwrite(args.out)
    mat, _ = load_material(args)
    angles = parse_angles(args.angles)
    geometry = bank_geometry(mat, args.ei, angles, args.qmax)
    check_ei(geometry["ei_mev"], mat.grid)  # above the grid's top, within ARCS's range
    masks = coverage_bank(mat, geometry["ei_mev"], angles, args.qmax, progress=not (args.json or args.no_progress))
    meta = {"material": mat.name, "n": len(masks)} | geometry
    save_bank(args.out, masks, meta)
    covered = masks.reshape(len(masks), -1).mean(axis=1)
    payload = {
        "out": str(args.out),
        "material": mat.name,
        "shape": list(masks.shape),
        "ei_mev": geometry["ei_mev"],
        "qmax_inv_a": geometry["qmax"],
        "angles_deg": geometry["angles_deg"],
        "covered_fraction": {"min": float(covered.min()), "median": float(np.median(covered)), "max": float(covered.max())},
    }
    text = (
        f"{args.out}: {len(masks)} coverage masks of {mat.name} at Ei {geometry['ei_mev']:g} meV, |Q| ≤ {args.qmax:g} Å⁻¹; "
        f"each scan covers {covered.min():.0%}–{covered.max():.0%} of the pixels (median {np.median(covered):.0%})"
    )
    emit(args, payload, text)
    return 0
