"""fcinv simulate: the I(q, E) image of a parameter set or force-constant file."""

from __future__ import annotations

import numpy as np

from ..errors import FcinvError, UnstableError
from ._common import (
    add_json,
    add_material_args,
    add_noise_seed,
    add_sigma_ei,
    add_temperature,
    emit,
    load_material,
    parse_params,
    positive_float,
    sigma_of,
    warn_energy_cut,
)


def register(sub):
    p = sub.add_parser("simulate", help="simulate the I(q,E) image (fast unpolarized model) and write it to HDF5")
    add_material_args(p)
    p.add_argument("--params", help="the top-8 parameters (eV/Å², comma-separated); the others at the reference")
    add_sigma_ei(p)
    add_noise_seed(p)
    p.add_argument(
        "--full-sqe",
        action="store_true",
        help="coherent one-phonon S(Q,E) (eigenvectors, Debye–Waller, Bose factor) folded over all equivalent "
        "Q within reach (with --ei: ARCS resolution and kinematic coverage) instead of the fast model",
    )
    add_temperature(p, 5.0, "sample temperature for --full-sqe (K, default 5)")
    p.add_argument(
        "--qmax",
        type=positive_float,
        default=None,
        help="largest |Q| (1/Å) folded with --full-sqe (default: the reach at --ei, else 8)",
    )
    p.add_argument("--out", required=True, help="output HDF5 file")
    p.add_argument("--allow-unstable", action="store_true", help="write the image even if the set is dynamically unstable")
    add_json(p)
    p.set_defaults(func=run, outputs=[("out", "file", "fcinv-spectrum")])


def run(args) -> int:
    from ..forward import ForwardModel
    from ..spectrum_io import write_spectrum

    sigma = sigma_of(args)
    mat, fc = load_material(args)
    if args.params is not None and fc is None and not mat.has_reference:
        # a structure alone: --params lists every basis parameter and becomes the reference (consumed here)
        from ..materials import given_reference

        n = mat.basis.n_params
        mat = given_reference(
            mat, parse_params(args.params, n, every=True), f"--params (all {n} basis parameters)", getattr(args, "e_max", None)
        )
        args.params = None
    if args.ei is not None:
        from ..scans import check_ei

        check_ei(args.ei, mat.grid)
    if args.full_sqe:
        return _run_full_sqe(args, mat, fc)
    b = mat.basis
    ref = mat.reference_params.copy() if fc is None else b.reduce(fc)[0]
    active = mat.active
    theta = ref[active].copy()
    if args.params is not None:
        if fc is not None:
            raise FcinvError("give either --params or --force-constants, not both")
        theta = parse_params(args.params, len(active))
    resolution = ("arcs", args.ei) if args.ei else None
    fm = ForwardModel(b, mat.grid, ref, active, sigma_mev=sigma, resolution=resolution, names=mat.active_names)
    img, stable = fm.spectra(theta, return_stable=True)
    lo = float(fm.min_energy(theta)[0])
    if np.isfinite(lo) and stable[0]:
        warn_energy_cut(mat, fm.full_params(theta)[0])
    if not stable[0] and not args.allow_unstable:
        raise UnstableError(
            f"this force-constant set is dynamically unstable (lowest mode {lo:.3f} meV < −0.1 meV); "
            "pass --allow-unstable to write it anyway"
        )
    if not np.isfinite(lo) or not np.isfinite(img).all() or not np.any(img):
        raise UnstableError(
            f"this force-constant set gives no spectrum (lowest mode {lo} meV, image "
            f"{'all zero' if np.isfinite(img).all() else 'not finite'}): nothing to write"
        )
    extra, snr = {}, None
    if args.noise:
        from ..noise import add_noise

        b, pc = args.noise
        img, snr = add_noise(img, b, pc, seed=args.seed)
        extra = {"noise_background": b, "noise_counts": pc, "noise_seed": args.seed, "snr": float(snr[0])}
    write_spectrum(
        args.out,
        img[0],
        mat.grid,
        material=mat.name,
        elements=sorted(set(mat.crystal.symbols)),
        params_ev_a2=theta,
        param_names=fm.names,
        resolution=fm.resolution,
        stable=bool(stable[0]),
        intensity="model-image",
        origin="simulated",
        **({"ei_mev": args.ei} if args.ei else {}),
        **extra,
    )
    payload = {
        "out": args.out,
        "shape": list(img.shape[1:]),
        "stable": bool(stable[0]),
        "min_energy_mev": lo,
        "names": fm.names,
        "params_ev_a2": theta.tolist(),
        **extra,
    }
    emit(
        args,
        payload,
        f"wrote {args.out}: {img.shape[1]}×{img.shape[2]} I(q,E), {'stable' if stable[0] else 'UNSTABLE'} (lowest mode {lo:.2f} meV)",
    )
    return 0


def _run_full_sqe(args, mat, fc) -> int:
    import time

    from ..scans import reach_qmax
    from ..spectrum_io import write_spectrum
    from ..sqe import SQE, fold_full, fold_points, small_mode
    from ..scans import check_stable, default_params

    if args.params is not None:
        raise FcinvError(
            "--full-sqe takes the force constants from --force-constants or the material's shipped/reference ones, not --params "
            "(except with --structure alone, where --params lists every basis parameter)"
        )
    noise = args.noise
    t0 = time.perf_counter()
    params, source = default_params(mat, fc)
    check_stable(mat, params, args.allow_unstable)
    warn_energy_cut(mat, params)
    reach = reach_qmax(args.ei, mat.grid.e.e_min) if args.ei else 8.0
    qmax = (min(6.0, reach) if small_mode() else reach) if args.qmax is None else min(args.qmax, reach)
    calc = SQE(mat.basis, params, temperature=args.temperature, b_coh=getattr(args, "b_coh_fm", None))
    pts = fold_points(calc, mat.grid, qmax, mat.conventional_a)
    img, norm = fold_full(pts, mat.grid, sigma_mev=sigma_of(args), ei_mev=args.ei)
    if not np.any(np.nan_to_num(img)):
        raise UnstableError("this force-constant set gives no one-phonon S(Q,E) on the grid (all zero): nothing to write")
    extra = {}
    if noise:
        from ..noise import add_noise

        img, snr = add_noise(
            img, noise[0], noise[1], seed=args.seed, peak_percentile=99.5
        )  # B, P relative to the 99.5th percentile
        extra = {"noise_background": noise[0], "noise_counts": noise[1], "noise_seed": args.seed, "snr": float(snr)}
    resolution = {"kind": "arcs", "ei_mev": args.ei} if args.ei else {"kind": "constant", "sigma_mev": sigma_of(args)}
    cov = float(np.isfinite(img).mean())
    write_spectrum(
        args.out,
        img,
        mat.grid,
        material=mat.name,
        elements=sorted(set(mat.crystal.symbols)),
        b_coh_fm=dict(zip(calc.crystal.symbols, calc.b.tolist())),
        kind="full-sqe",
        params_ev_a2=params,
        param_names=mat.basis.names,
        params_source=source,
        temperature_k=args.temperature,
        qmax_inv_a=qmax,
        resolution=resolution,
        coverage=cov,
        n_points=int(pts.n),
        intensity="one-phonon-sqe",
        origin="simulated",
        **({"ei_mev": args.ei} if args.ei else {}),
        units="min-max scaled (noise)" if noise else "fm^2/meV per atom",
        **extra,
    )
    dt = time.perf_counter() - t0
    payload = {
        "out": args.out,
        "shape": list(img.shape),
        "coverage": cov,
        "qmax_inv_a": qmax,
        "n_points": int(pts.n),
        "temperature_k": args.temperature,
        "params_source": source,
        "seconds": dt,
        **extra,
    }
    emit(
        args,
        payload,
        f"wrote {args.out}: {img.shape[0]}×{img.shape[1]} folded one-phonon S(Q,E) at {args.temperature:g} K, "
        f"{pts.n} equivalent Q points within {qmax:.2f} 1/Å, coverage {cov:.0%} ({dt:.1f} s)",
    )
    return 0
