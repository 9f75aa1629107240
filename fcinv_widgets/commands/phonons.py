"""fcinv phonons: frequencies (THz) at given q-points."""

from __future__ import annotations

import numpy as np

from ._common import add_json, emit
from ..errors import FcinvError
from ._common import add_material_args, load_material, parse_params, parse_qpoints


def register(sub):
    p = sub.add_parser(
        "phonons",
        help="phonon frequencies (THz) at q-points",
        description="Phonon frequencies at q-points, in fractional coordinates of the reciprocal lattice of "
        "the cell used (the --structure cell as given, or as reduced by --primitive; a preset's primitive cell).",
    )
    add_material_args(p)
    p.add_argument(
        "--qpoints",
        required=True,
        help='fractional coordinates of the cell used, e.g. "0 0 0, 0.5 0 0.5", or SeeK-path labels of that cell, '
        'e.g. "Γ, X, L" (Γ also as GAMMA, and as G unless the crystal has a point named G: bct with c > a, C-centred '
        "monoclinic)",
    )
    p.add_argument(
        "--params",
        help="the top-8 parameters (eV/Å², comma-separated; write --params=-2.9,... when the first is negative); the others at the reference",
    )
    p.add_argument(
        "--reduced", action="store_true", help="project the force constants onto the symmetry basis and rebuild them first"
    )
    add_json(p, "machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    mat, fc = load_material(args)
    q = parse_qpoints(args.qpoints, mat.crystal)
    basis = mat.basis
    if args.params is not None:
        if fc is not None:
            raise FcinvError("give either --params or --force-constants, not both")
        params = mat.reference_params.copy()
        params[mat.active] = parse_params(args.params, len(mat.active))
        freqs = basis.frequencies_thz(params, q)
        source = f"{mat.name} reference with the top-8 parameters given"
    elif fc is not None:
        from ..fcio import check_fc_shape

        fc = check_fc_shape(fc, basis.n_prim, basis.n_super, where=str(args.force_constants))
        if args.reduced:
            params, resid = basis.reduce(fc)
            freqs = basis.frequencies_thz(params, q)
            source = (
                f"{args.force_constants} projected onto {basis.n_params} parameters (relative residual {resid['relative']:.2e})"
            )
        else:
            ph = basis.phonopy
            ph.force_constants = fc
            ph.run_qpoints(q)
            freqs = np.asarray(ph.qpoints.frequencies)
            source = f"{args.force_constants} (phonopy)"
    else:
        freqs = basis.frequencies_thz(mat.reference_params, q)
        source = f"{mat.name} reference ({mat.reference_source})"
    payload = {
        "qpoints": q.tolist(),
        "frequencies_thz": np.round(freqs, 6).tolist(),
        "n_atoms": mat.crystal.n_atoms,
        "lattice_A": mat.crystal.lattice.tolist(),
    }
    lines = [f"# {source}", f"# cell used: {mat.crystal.n_atoms} atoms; q in its reciprocal lattice units; frequencies (THz)"]
    for qq, f in zip(q, freqs):
        lines.append(f"{qq[0]:7.4f} {qq[1]:7.4f} {qq[2]:7.4f}   " + " ".join(f"{x:8.4f}" for x in f))
    emit(args, payload, "\n".join(lines))
    return 0
