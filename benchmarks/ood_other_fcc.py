"""Another fcc crystal on Ge's path: do the Ge models' OOD checks catch it? (session 24)

Cu (fcc, 1 atom) and Al (fcc, conventional 4-atom cell) with EMT force constants (ASE's EMT
calculator through phonopy, 0.01 Å displacements), simulated by ``fcinv simulate --structure``
as a fast-model image and as a folded one-phonon S(Q,E) (Ei 100 meV, 10 K, qmax 5 Å⁻¹) — both
land on Ge's 140 × 140 grid — and given to each Ge model as arrays (a file is refused by its q-path
length). Prints flag, combined score / threshold and each component's value / threshold.

    python benchmarks/ood_other_fcc.py [--models ge-vae,ge-resnet] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def emt_force_constants(atoms, dim, out_dir: Path, name: str) -> tuple[Path, Path]:
    from ase.calculators.emt import EMT
    from ase.io import write
    from phonopy import Phonopy
    from phonopy.file_IO import write_FORCE_CONSTANTS
    from phonopy.structure.atoms import PhonopyAtoms

    from ase import Atoms

    pos, fc = out_dir / f"POSCAR_{name}", out_dir / f"FC_{name}"
    write(pos, atoms, format="vasp", direct=True)
    unit = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell[:], scaled_positions=atoms.get_scaled_positions())
    ph = Phonopy(unit, supercell_matrix=np.diag(dim), primitive_matrix="P")
    ph.generate_displacements(distance=0.01)
    forces = []
    for sc in ph.supercells_with_displacements:
        a = Atoms(sc.symbols, cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True)
        a.calc = EMT()
        forces.append(a.get_forces())
    ph.forces = forces
    ph.produce_force_constants()
    ph.symmetrize_force_constants()
    write_FORCE_CONSTANTS(ph.force_constants, filename=str(fc))
    return pos, fc


def main(argv=None) -> int:
    from ase.build import bulk

    from fcinv_widgets.analysis.expio import read_spectrum
    from fcinv_widgets.cli import main as fcinv
    from fcinv_widgets.models import Inverter

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="ge-vae,ge-resnet")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fcinv-fcc-") as tmp:
        work = Path(tmp)
        crystals = {"Cu": (bulk("Cu", "fcc", a=3.61), [4, 4, 4]), "Al": (bulk("Al", "fcc", a=4.05, cubic=True), [2, 2, 2])}
        inputs = {}
        for name, (atoms, dim) in crystals.items():
            pos, fc = emt_force_constants(atoms, dim, work, name)
            base = ["simulate", "--structure", str(pos), "--force-constants", str(fc), "--supercell", *map(str, dim)]
            for kind, extra in (("image", []), ("S(Q,E)", ["--full-sqe", "--ei", "100", "--qmax", "5", "--temperature", "10"])):
                out = work / f"{name}_{len(inputs)}.h5"
                with contextlib.redirect_stdout(io.StringIO()):
                    rc = fcinv(base + extra + ["--out", str(out), "--json"])
                if rc != 0:
                    print(f"{name} {kind}: simulate failed (exit {rc})", file=sys.stderr)
                    return 1
                inputs[(name, kind)] = read_spectrum(out).image
        for m in [s.strip() for s in args.models.split(",") if s.strip()]:
            inv = Inverter.load(m)
            for (name, kind), img in inputs.items():
                if img.shape != inv.shape:
                    rows.append({"model": m, "crystal": name, "input": kind, "note": f"grid {img.shape}, not the model's"})
                    continue
                kw = {"temperature_k": 10.0, "ood_regime": "measured"} if kind == "S(Q,E)" else {}
                r = inv.invert(img, refine=False, n_samples=5, **kw)
                o = r["ood"]
                rows.append(
                    {
                        "model": m,
                        "crystal": name,
                        "input": kind,
                        "flag": o["flag"],
                        "score": o["score"],
                        "threshold": o["threshold"],
                        "components": {k: v["value"] / v["threshold"] for k, v in o["components"].items()},
                        "fc_mean": r["fc_mean"],
                    }
                )
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            if "note" in r:
                print(f"{r['model']:<10} {r['crystal']:<3} {r['input']:<7} {r['note']}")
                continue
            comp = " ".join(f"{k} {v:.2f}" for k, v in r["components"].items())
            print(
                f"{r['model']:<10} {r['crystal']:<3} {r['input']:<7} flag {r['flag']!s:<5} {r['score']:.2f} / {r['threshold']:.2f}  [{comp}]"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
