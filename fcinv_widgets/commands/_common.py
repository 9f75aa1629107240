"""Shared argument helpers for the CLI subcommands."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ..errors import FcinvError


def parse_qpoints(text: str, crystal=None) -> np.ndarray:
    """'0 0 0, 0.5 0 0.5' or 'G, X, L' (labels of ``crystal``'s Brillouin zone) → (n, 3) array,
    fractional coordinates of the reciprocal lattice of the cell used (as given, or as reduced by
    --primitive)."""
    pts = []
    labels = None
    for k, chunk in enumerate(str(text).split(",")):
        parts = chunk.split()
        try:
            vals = [float(x) for x in parts]
        except ValueError:
            if len(parts) == 1 and crystal is not None:
                if labels is None:
                    from ..structure import high_symmetry_points

                    labels = high_symmetry_points(crystal)
                key = parts[0].upper()
                if key not in labels:
                    raise FcinvError(f"q-point {k + 1}: no label {parts[0]!r} for this cell; known: "
                                     + ", ".join(x for x in labels if x not in ("GAMMA", "Γ"))) from None
                pts.append(list(labels[key]))
                continue
            raise FcinvError(f"q-point {k + 1} ({chunk.strip()!r}) is not three numbers nor a label; "
                             "use e.g. --qpoints \"0 0 0, 0.5 0 0.5\" or \"G, X, L\"") from None
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
        p.add_argument("--structure", help="structure file (POSCAR, CIF, …); its cell is the cell used, as given "
                       "(a conventional cell stays conventional), unless --primitive reduces it")
        p.add_argument("--force-constants", help="phonopy FORCE_CONSTANTS (full or compact), .hdf5 or phonopy.yaml")
        p.add_argument("--supercell", nargs="+", metavar="N",
                       help='supercell of the force constants in units of the structure file\'s cell (phonopy\'s DIM, also '
                       'with --primitive): 3 integers (diagonal) or 9 '
                       '(a 3×3 matrix, rows), also as one string "a b c, d e f, g h i" (default: inferred, n×n×n)')
        p.add_argument("--primitive", default=None, metavar="auto|P|F|I|A|C|R|MATRIX",
                       help="reduce the structure to a primitive cell first: auto (from its symmetry), a centring "
                       "letter, or 9 numbers (phonopy's primitive matrix); default: the cell as given. Force constants "
                       "stay those of phonopy's supercell of the structure file's cell; they are re-ordered for the primitive cell")
        p.add_argument("--mass", action="append", default=[], metavar="X=AMU",
                       help="atomic mass of species X in amu (default: phonopy's table), e.g. --mass Ge=72.63; repeatable")
        p.add_argument("--b-coh", action="append", default=[], metavar="X=FM",
                       help="coherent scattering length of species X in fm (default: the periodictable package's "
                       "table), e.g. --b-coh O=5.803; repeatable")


def parse_supercell(values) -> np.ndarray:
    """--supercell: 3 integers (diagonal), 9 integers (rows of a 3×3 matrix), or one string
    "a b c, d e f, g h i" → (3, 3) int matrix with a positive determinant."""
    if isinstance(values, str):
        values = [values]
    tokens = " ".join(str(v) for v in values).replace(",", " ").replace(";", " ").split()
    try:
        nums = [float(t) for t in tokens]
    except ValueError:
        raise FcinvError(f"--supercell must be 3 or 9 integers, got {' '.join(map(str, values))!r}") from None
    if len(nums) not in (3, 9) or not all(np.isfinite(nums)) or any(abs(x - round(x)) > 1e-9 for x in nums):
        raise FcinvError(f"--supercell must be 3 or 9 integers (a diagonal or a 3×3 matrix), got {' '.join(tokens)!r}")
    m = np.array([round(x) for x in nums], dtype=int)
    m = np.diag(m) if len(nums) == 3 else m.reshape(3, 3)
    det = round(np.linalg.det(m))
    if det <= 0:
        raise FcinvError(f"--supercell {m.tolist()} has determinant {det}; it must be positive (a right-handed supercell)")
    if det > 10000:
        raise FcinvError(f"--supercell {m.tolist()} holds {det} cells; at most 10000 are supported")
    return m


def parse_species_values(items, option: str) -> dict:
    """["Ge=72.63", "O=5.8,Si=4.1"] → {"Ge": 72.63, …} for --mass / --b-coh (finite numbers)."""
    out = {}
    for item in items or []:
        for part in str(item).split(","):
            if not part.strip():
                continue
            sym, sep, val = part.partition("=")
            try:
                x = float(val)
            except ValueError:
                x = float("nan")
            if not sep or not sym.strip() or not np.isfinite(x):
                raise FcinvError(f"{option} takes SYMBOL=NUMBER (e.g. {option} Ge=72.63), got {part.strip()!r}")
            out[sym.strip()] = x
    return out


def _species_b_coh(args, crystal) -> dict:
    b = parse_species_values(getattr(args, "b_coh", None), "--b-coh")
    unknown = sorted(set(b) - set(crystal.symbols))
    if unknown:
        raise FcinvError(f"--b-coh {unknown[0]}=…: {unknown[0]!r} is not in the structure ({', '.join(sorted(set(crystal.symbols)))})")
    return b


def infer_supercell(n_prim: int, n_super: int) -> np.ndarray:
    ratio = n_super // n_prim
    n = round(ratio ** (1 / 3))
    if n**3 != ratio or n_super % n_prim:
        raise FcinvError(f"cannot infer the supercell from {n_super} supercell atoms and {n_prim} atoms in the cell used; "
                         "give --supercell (3 or 9 integers)")
    return np.diag([n, n, n])


def load_material(args):
    """A Material from --material, or from --structure/--force-constants (a custom material)."""
    from ..materials import custom_material, get_material

    structure = getattr(args, "structure", None)
    fcfile = getattr(args, "force_constants", None)
    if structure:
        from ..fcio import read_force_constants
        from ..structure import read_structure

        masses = parse_species_values(getattr(args, "mass", None), "--mass")
        if any(m <= 0 for m in masses.values()):
            raise FcinvError("--mass values must be positive (amu)")
        given = read_structure(structure).with_masses(masses)
        cr, pmat = given, None
        if getattr(args, "primitive", None):
            from ..structure import to_primitive

            prim = args.primitive
            nums = prim.replace(",", " ").split()
            if len(nums) == 9:
                try:
                    prim = np.array([float(x) for x in nums]).reshape(3, 3)
                except ValueError:
                    raise FcinvError(f"--primitive: {args.primitive!r} is not 9 numbers") from None
            cr, pmat = to_primitive(given, prim)
        args.b_coh_fm = _species_b_coh(args, cr)
        fc = read_force_constants(fcfile) if fcfile else None
        # --supercell is in units of the structure file's cell (phonopy's DIM), as are the force constants
        if args.supercell:
            smat = parse_supercell(args.supercell)
        elif fc is not None:
            smat = infer_supercell(given.n_atoms, fc.shape[1])
        else:
            smat = np.diag([4, 4, 4])
        if pmat is not None:
            s_used = np.linalg.solve(pmat, smat)
            if np.abs(s_used - np.rint(s_used)).max() > 1e-6:
                raise FcinvError(f"the supercell {smat.tolist()} of the structure file's cell is not a whole number of the "
                                 f"primitive cells chosen by --primitive {args.primitive}")
            if fc is not None:
                from ..fcio import unitcell_fc_to_cell_used

                fc = unitcell_fc_to_cell_used(fc, given, smat, pmat, cr, np.rint(s_used).astype(int), where=str(fcfile))
            smat = np.rint(s_used).astype(int)
        if args.material:
            base = get_material(args.material)
            from ..materials import Material

            mat = Material(base.name, cr, smat, base.grid, base.conventional_a)
            if fc is not None:
                mat._reference, resid = mat.basis.reduce(fc)
                mat.reference_source = f"{fcfile} (projection residual {resid['relative']:.2e})"
            return mat, fc
        return custom_material(cr, fc, smat), fc
    if not args.material:
        raise FcinvError("give --material (Ge, Nb) or --structure (and --force-constants)")
    for opt in ("supercell", "primitive"):
        if getattr(args, opt, None):
            raise FcinvError(f"--{opt} applies to a --structure file; the preset {args.material} has its own cell and supercell")
    mat = get_material(args.material)
    masses = parse_species_values(getattr(args, "mass", None), "--mass")
    if masses:
        if any(m <= 0 for m in masses.values()):
            raise FcinvError("--mass values must be positive (amu)")
        from ..materials import Material

        mat = Material(mat.name, mat.crystal.with_masses(masses), mat.supercell_matrix, mat.grid, mat.conventional_a)
    args.b_coh_fm = _species_b_coh(args, mat.crystal)
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
