"""fcinv scans: simulated single-orientation ARCS-like scans and their union (HDF5 scan set)."""

from __future__ import annotations


from ._common import (
    add_json,
    add_material_args,
    add_noise_seed,
    add_temperature,
    emit,
    load_material,
    parse_vector,
    positive_float,
    warn_energy_cut,
)


def register(sub):
    p = sub.add_parser(
        "scans",
        help="simulate single-orientation scans (one-phonon S(Q,E), ARCS kinematics) and their union",
        description="Simulate the coherent one-phonon S(Q,E) of the force constants, fold it onto the "
        "material's q-path for every sample orientation ω of a direct-geometry ToF "
        "spectrometer (ARCS-like), and write the per-angle scans and the full data set.",
    )
    add_material_args(p)
    p.add_argument(
        "--ei", type=positive_float, required=True, help="incident energy (meV); must exceed the grid's largest energy"
    )
    p.add_argument(
        "--angles",
        default="0:120:1",
        help="sample angles ω in degrees: start:stop:step (stop excluded) or a comma list (default 0:120:1); write --angles=-30:90:1 when it starts negative",
    )
    add_temperature(p, 5.0)
    p.add_argument(
        "--qmax",
        type=positive_float,
        default=None,
        help="largest |Q| (1/Å) folded (default: all the detector reaches; 6 with FCINV_SMALL=1)",
    )
    p.add_argument(
        "--u",
        default="1,1,0",
        help="sample direction along the beam at ω = 0, [h,k,l] in r.l.u. of the conventional cell (default 1,1,0)",
    )
    p.add_argument("--v", default="0,0,1", help="second in-plane sample direction (default 0,0,1)")
    add_noise_seed(p, "B,P: flat background B and Poisson counts P, both relative to each image's 99.5th-percentile intensity")
    p.add_argument("--allow-unstable", action="store_true", help="write the scans even if the set is dynamically unstable")
    p.add_argument("--out", required=True, help="output HDF5 scan-set file")
    add_json(p, progress="no progress bar")
    p.set_defaults(func=run, outputs=[("out", "file", "fcinv-scans")])


def run(args) -> int:
    from ..scans import check_stable, default_params, parse_angles, simulate_scans

    angles = parse_angles(args.angles)
    u, v = parse_vector(args.u, "--u"), parse_vector(args.v, "--v")
    noise = args.noise
    mat, fc = load_material(args)
    from ..scans import check_ei

    check_ei(args.ei, mat.grid)
    params, source = default_params(mat, fc)
    check_stable(mat, params, args.allow_unstable)
    warn_energy_cut(mat, params)
    ss = simulate_scans(
        mat,
        args.ei,
        angles,
        temperature=args.temperature,
        params=params,
        qmax=args.qmax,
        u=u,
        v=v,
        b_coh=getattr(args, "b_coh_fm", None),
        progress=not args.no_progress,
    )
    ss.meta["params_source"] = source
    if noise:
        ss = ss.add_noise(noise[0], noise[1], seed=args.seed)
    ss.save(args.out)
    payload = {
        "out": args.out,
        "n_scans": len(ss),
        "shape": list(ss.scans.shape),
        "ei_mev": ss.ei_mev,
        "temperature_k": ss.temperature_k,
        "full_coverage": ss.full_coverage,
        "coverage_min": float(ss.coverage.min()),
        "coverage_max": float(ss.coverage.max()),
        "params_source": source,
        "timing_s": ss.meta["timing_s"],
    }
    t = ss.meta["timing_s"]
    emit(
        args,
        payload,
        f"wrote {args.out}: {len(ss)} scans at Ei {ss.ei_mev:g} meV, T {ss.temperature_k:g} K "
        f"(coverage per scan {ss.coverage.min():.0%}–{ss.coverage.max():.0%}, union {ss.full_coverage:.0%}; "
        f"{t['setup'] + t['orientations']:.1f} s)",
    )
    return 0
