"""Shared argument helpers for the CLI subcommands."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ..errors import FcinvError


def parse_qpoints(text: str) -> np.ndarray:
    """'0 0 0, 0.5 0 0.5' → (n, 3) array."""
    pts = []
    for k, chunk in enumerate(str(text).split(",")):
        parts = chunk.split()
        try:
            vals = [float(x) for x in parts]
        except ValueError:
            raise FcinvError(f"q-point {k + 1} ({chunk.strip()!r}) is not three numbers; use e.g. --qpoints \"0 0 0, 0.5 0 0.5\"") from None
        if len(vals) != 3 or not np.all(np.isfinite(vals)):
            raise FcinvError(f"q-point {k + 1} ({chunk.strip()!r}) must be three finite numbers")
        pts.append(vals)
    if not pts:
        raise FcinvError("no q-points given")
    return np.array(pts)


def parse_params(text: str, n: int) -> np.ndarray:
    """'v1,…,vn' → (n,) array (eV/Å²)."""
    try:
        vals = np.array([float(x) for x in str(text).replace(" ", "").split(",") if x != ""])
    except ValueError:
        raise FcinvError(f"--params must be {n} comma-separated numbers (eV/Å²), got {text!r}") from None
    if vals.shape != (n,):
        raise FcinvError(f"--params needs {n} values (the top-{n} parameters in eV/Å²), got {len(vals)}")
    if not np.all(np.isfinite(vals)):
        raise FcinvError("--params contains NaN or inf")
    return vals


def add_material_args(p, files: bool = True) -> None:
    p.add_argument("--material", default=None, help="preset: Ge or Nb")
    if files:
        p.add_argument("--structure", help="structure file (POSCAR, CIF, …)")
        p.add_argument("--force-constants", help="phonopy FORCE_CONSTANTS (full or compact), .hdf5 or phonopy.yaml")
        p.add_argument("--supercell", nargs=3, type=int, metavar=("N1", "N2", "N3"),
                       help="supercell of the force constants in primitive cells (default: inferred, n×n×n)")


def infer_supercell(n_prim: int, n_super: int) -> np.ndarray:
    ratio = n_super // n_prim
    n = round(ratio ** (1 / 3))
    if n**3 != ratio or n_super % n_prim:
        raise FcinvError(f"cannot infer the supercell from {n_super} supercell atoms and {n_prim} primitive atoms; give --supercell")
    return np.diag([n, n, n])


def load_material(args):
    """A Material from --material, or from --structure/--force-constants (a custom material)."""
    from ..materials import custom_material, get_material

    structure = getattr(args, "structure", None)
    fcfile = getattr(args, "force_constants", None)
    if structure:
        from ..fcio import read_force_constants
        from ..structure import read_structure

        cr = read_structure(structure)
        fc = read_force_constants(fcfile) if fcfile else None
        if args.supercell:
            smat = np.diag(args.supercell)
        elif fc is not None:
            smat = infer_supercell(cr.n_atoms, fc.shape[1])
        else:
            smat = np.diag([4, 4, 4])
        if args.material:
            base = get_material(args.material)
            from ..materials import Material

            mat = Material(base.name, cr, smat, base.grid, base.conventional_a)
            if fc is not None:
                params, resid = mat.basis.reduce(fc)
                mat = mat.with_reference(params, f"{fcfile} (projection residual {resid['relative']:.2e})", "given")
            return mat, fc
        return custom_material(cr, fc, smat), fc
    if not args.material:
        raise FcinvError("give --material (Ge, Nb) or --structure (and --force-constants)")
    mat = get_material(args.material)
    fc = None
    if fcfile:
        from ..fcio import read_force_constants

        fc = read_force_constants(fcfile)
    return mat, fc


def emit(args: argparse.Namespace, payload: dict, text: str | None = None) -> None:
    """Print ``payload`` as JSON when ``--json`` was given, else ``text`` (or a summary)."""
    if getattr(args, "json", False):
        json.dump(payload, sys.stdout, indent=None, default=_json_default)
        sys.stdout.write("\n")
    else:
        print(text if text is not None else json.dumps(payload, indent=2, default=_json_default))


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
