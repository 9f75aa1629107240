"""fcinv refine: fit the top-8 FCs to a spectrum with the differentiable forward model."""

from __future__ import annotations

from ._common import add_sigma_ei, add_temperature, emit, parse_params, positive_int, sigma_of


def register(sub):
    p = sub.add_parser("refine", help="iterative refinement of the top-8 FCs against a spectrum (L-BFGS, torch)")
    p.add_argument("--material", default="Ge")
    p.add_argument(
        "--spectrum",
        required=True,
        help="spectrum file (fcinv HDF5, pathSQE .npz, Mantid MDHisto .nxs, .npy); "
        "corrected as it says about itself, like `fcinv invert`",
    )
    p.add_argument("--clip", type=float, default=None, metavar="PERCENTILE", help="clip percentile (see invert)")
    p.add_argument("--raw", action="store_true", help="no correction")
    p.add_argument("--start", help="start values (8, eV/Å², comma-separated; --start=-2.9,…); default: the reference")
    add_sigma_ei(p, "Gaussian σ of the model (meV, default 1)")
    add_temperature(p, None, "sample temperature (K) of a one-phonon S(Q,E) whose file does not say it (see invert)")
    p.add_argument("--max-iter", type=positive_int, default=200)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.expio import prepare_input, read_spectrum
    from ..analysis.refine import refine
    from ..materials import get_material
    from ..validate import check_spectra

    sigma = sigma_of(args)
    mat = get_material(args.material)
    if args.ei is not None:
        from ..scans import check_ei

        check_ei(args.ei, mat.grid)
    fm = mat.forward_model(sigma_mev=sigma, resolution=("arcs", args.ei) if args.ei is not None else None)
    spec = read_spectrum(args.spectrum, grid=mat.grid)  # refuses complex, constant, all-zero, non-finite input
    img, corrections = prepare_input(spec, mat.grid, temperature_k=args.temperature, clip_percentile=args.clip, raw=args.raw)
    img = check_spectra(img, mat.grid.shape, name=args.spectrum)
    start = parse_params(args.start, fm.n_active) if args.start is not None else None
    r = refine(fm, img, start=start, domain=mat.domain, max_iter=args.max_iter)
    lines = [
        f"refined in {r.n_iter} evaluations, {r.seconds:.2f} s; misfit {r.misfit_start:.3e} → {r.misfit:.3e}"
        + ("" if r.stable else "  (UNSTABLE result)")
    ]
    lines += [f"  {n:<16} {s:>9.4f} → {v:>9.4f} eV/Å²" for n, s, v in zip(r.names, r.start, r.params)]
    emit(args, r.to_dict() | {"corrections": corrections}, "\n".join(lines))
    return 0
