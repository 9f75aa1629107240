"""fcinv basis: the symmetry-reduced force-constant parameters and the top-8 ranking."""

from __future__ import annotations

from ._common import add_json, add_material_args, emit, load_material, positive_int


def register(sub):
    p = sub.add_parser("basis", help="symmetry-reduced FC parameters, orbits, values and sensitivity ranking")
    add_material_args(p)
    p.add_argument("--top", type=positive_int, default=8, help="how many parameters to rank as active (default 8)")
    add_json(p)
    p.set_defaults(func=run)


def run(args) -> int:
    mat, fc = load_material(args)
    b = mat.basis
    params = mat.reference_params if fc is None else b.reduce(fc)[0]
    residual = b.reduce(fc)[1] if fc is not None else None
    sens = b.sensitivity(params, mat.grid.q.qpoints, n_top=args.top)
    rows = b.describe()
    for r in rows:
        r["value_ev_a2"] = float(params[r["index"]])
        r["sensitivity_mev"] = float(sens["scores"][r["index"]])
    payload = {
        "material": mat.name,
        "n_params": b.n_params,
        "n_orbits": len(b.orbits),
        "supercell_matrix": mat.supercell_matrix.tolist(),
        "names": b.names,
        "values_ev_a2": params.tolist(),
        "orbits": [
            {
                "shell": o.index,
                "distance_A": o.distance,
                "params": list(o.params),
                "elements": list(o.elements),
                "pairs": o.n_pairs,
                "vector_A": list(o.vector),
            }
            for o in b.orbits
        ],
        "parameters": rows,
        "top": [int(i) for i in sens["top"]],
        "top_names": [b.names[i] for i in sens["top"]],
        "reference_source": mat.reference_source if fc is None else str(args.force_constants),
    }
    if residual is not None:
        payload["projection_residual"] = residual
    lines = [
        f"{mat.name}: {b.n_params} parameters in {len(b.orbits)} pair orbits (supercell {mat.supercell_matrix.tolist()})",
        f"values from: {payload['reference_source']}",
        "",
        f"{'#':>3} {'name':<10} {'d (Å)':>7} {'value (eV/Å²)':>14} {'sens. (meV)':>12}  rank",
    ]
    rank = {int(i): k for k, i in enumerate(sens["order"])}
    for r in rows:
        top = f"FC{rank[r['index']]}" if rank[r["index"]] < args.top else ""
        lines.append(
            f"{r['index']:>3} {r['name']:<10} {r['distance_A']:>7.3f} {r['value_ev_a2']:>14.5f} {r['sensitivity_mev']:>12.4f}  {top}"
        )
    emit(args, payload, "\n".join(lines))
    return 0
