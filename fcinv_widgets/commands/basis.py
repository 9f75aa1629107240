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
    # The basis is a property of the structure alone; values and the ranking need force constants.
    # A --structure file without --force-constants lists the parameters and orbits, values null.
    if fc is not None:
        params, residual = b.reduce(fc)
        source = str(args.force_constants)
    elif mat.has_reference:
        params, residual, source = mat.reference_params, None, mat.reference_source
    else:
        params, residual, source = None, None, None
    sens = b.sensitivity(params, mat.grid.q.qpoints, n_top=args.top) if params is not None else None
    rows = b.describe()
    for r in rows:
        r["value_ev_a2"] = None if params is None else float(params[r["index"]])
        r["sensitivity_mev"] = None if sens is None else float(sens["scores"][r["index"]])
    payload = {
        "material": mat.name,
        "n_params": b.n_params,
        "n_orbits": len(b.orbits),
        "supercell_matrix": mat.supercell_matrix.tolist(),
        "names": b.names,
        "values_ev_a2": None if params is None else params.tolist(),
        "orbits": [
            {
                "shell": o.index,
                "distance_A": o.distance,
                "params": list(o.params),
                "elements": list(o.elements),
                "species": list(b.pair_species(o)),
                "pairs": o.n_pairs,
                "vector_A": list(o.vector),
            }
            for o in b.orbits
        ],
        "parameters": rows,
        "top": None if sens is None else [int(i) for i in sens["top"]],
        "top_names": None if sens is None else [b.names[i] for i in sens["top"]],
        "reference_source": source,
    }
    if residual is not None:
        payload["projection_residual"] = residual
    wn = max([10, *(len(r["name"]) for r in rows)])  # names of several-species crystals are longer
    wp = max([7, *(len(r["species"]) for r in rows)])
    lines = [
        f"{mat.name}: {b.n_params} parameters in {len(b.orbits)} pair orbits (supercell {mat.supercell_matrix.tolist()})",
        f"values from: {source}"
        + ("" if residual is None else f" (relative projection residual {residual['relative']:.1e}: the part outside the basis)")
        if source is not None
        else f"values and top-{args.top} ranking: none without force constants (give --force-constants FILE)",
        "",
        f"{'#':>3} {'name':<{wn}} {'pair':<{wp}} {'d (Å)':>7} {'value (eV/Å²)':>14} {'sens. (meV)':>12}  rank",
    ]
    rank = {} if sens is None else {int(i): k for k, i in enumerate(sens["order"])}
    for r in rows:
        k = rank.get(r["index"])
        top = f"FC{k}" if k is not None and k < args.top else ""
        value = "—" if r["value_ev_a2"] is None else f"{r['value_ev_a2']:.5f}"
        s = "—" if r["sensitivity_mev"] is None else f"{r['sensitivity_mev']:.4f}"
        lines.append(f"{r['index']:>3} {r['name']:<{wn}} {r['species']:<{wp}} {r['distance_A']:>7.3f} {value:>14} {s:>12}  {top}")
    emit(args, payload, "\n".join(lines))
    return 0
