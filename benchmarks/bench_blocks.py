"""The forward model's symmetry blocks for crystals with many modes: SVD vs Gram route (session 25).

``blocks.commutant_basis`` finds the matrices that commute with every D_p(q). The SVD route
factors the commutator map itself, (P·n²) × n² — ~P·n⁶ operations, which made `fcinv simulate`
take 56 s for SrTiO3 (15 modes), 11 min for rutile (18 modes) and more than 6 min (stopped there)
for an 8-atom monoclinic cell (24 modes). The Gram route builds L = Σ_p [D_p, [D_p, ·]]
(n² × n²) with one matrix product and takes its null space. This times both on the same q-points
of each crystal's path (every ``--every``-th point, so the SVD side stays short), checks that they
find commutants of the same dimension and blocks that carry the full spectrum, and prints the
ratio. No force constants are needed: the D_p(q) are the symmetry basis's own.

    python benchmarks/bench_blocks.py [--every 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import time


def crystals():
    from ase.spacegroup import crystal as sgc

    from fcinv_widgets.structure import Crystal

    yield (
        "SrTiO3 (Pm-3m)",
        Crystal.from_ase(
            sgc(
                ["Sr", "Ti", "O"],
                basis=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)],
                spacegroup=221,
                cellpar=[3.905] * 3 + [90] * 3,
            )
        ),
        2,
    )
    yield (
        "TiO2 rutile (P4_2/mnm)",
        Crystal.from_ase(
            sgc(["Ti", "O"], basis=[(0, 0, 0), (0.305, 0.305, 0)], spacegroup=136, cellpar=[4.59, 4.59, 2.96, 90, 90, 90])
        ),
        2,
    )
    yield (
        "ZrO-like, one O site (P2_1/c)",
        Crystal.from_ase(
            sgc(
                ["Zr", "O"],
                basis=[(0.276, 0.04, 0.208), (0.07, 0.34, 0.34)],
                spacegroup=14,
                cellpar=[5.15, 5.21, 5.31, 90, 99.2, 90],
            )
        ),
        1,
    )


def main(argv=None) -> int:
    from fcinv_widgets import blocks
    from fcinv_widgets.basis import FCBasis
    from fcinv_widgets.materials import seekpath_grid

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=10, help="time every n-th q-point of the path (default 10)")
    ap.add_argument("--svd-max-modes", type=int, default=20, help="skip the SVD route above this many modes (default 20)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for name, cr, sc in crystals():
        b = FCBasis(cr, [sc] * 3)
        grid, _ = seekpath_grid(cr)
        q = grid.q.qpoints[:: args.every]
        D = b.dynamical_matrices(q)
        n = D.shape[-1]
        row = {"crystal": name, "n_params": int(D.shape[0]), "n_modes": int(n), "n_q": len(q)}
        dims = {}
        for method in ("gram", "svd"):
            if method == "svd" and n > args.svd_max_modes:
                continue
            t0 = time.perf_counter()
            dims[method] = [len(blocks.commutant_basis(D[:, i], method=method)) for i in range(len(q))]
            row[f"{method}_s_per_q"] = (time.perf_counter() - t0) / len(q)
        if "svd" in dims:
            row["same_commutant_dimension"] = dims["svd"] == dims["gram"]
            row["ratio_svd_over_gram"] = row["svd_s_per_q"] / row["gram_s_per_q"]
        t0 = time.perf_counter()
        qb = [blocks.decompose(D[:, i]) for i in range(len(q))]  # checks every block set's spectrum
        row["decompose_s_per_q"] = (time.perf_counter() - t0) / len(q)
        row["largest_block"] = int(max(max(c.shape[1] for c in x.coeffs) for x in qb))
        rows.append(row)
        if not args.json:
            print(
                f"{name:34s} P={row['n_params']:4d} n={n:2d} q={len(q):3d}  gram {row['gram_s_per_q'] * 1e3:8.1f} ms/q"
                + (
                    f"  svd {row['svd_s_per_q'] * 1e3:9.1f} ms/q  ratio {row['ratio_svd_over_gram']:6.0f}×"
                    f"  same dims {row['same_commutant_dimension']}"
                    if "svd" in dims
                    else "  svd skipped"
                )
                + f"  decompose {row['decompose_s_per_q'] * 1e3:7.1f} ms/q",
                flush=True,
            )
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
