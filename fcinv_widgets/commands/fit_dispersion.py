"""fcinv fit-dispersion: Born–von Kármán fit of the force constants to measured phonons."""

from __future__ import annotations

import sys

from ._common import FIGURE, JSON, add_json, add_material_args, emit, load_material


def register(sub):
    p = sub.add_parser(
        "fit-dispersion",
        help="least-squares fit of the FC parameters to measured phonon frequencies (and elastic constants)",
        description="Born–von Kármán fit of a preset's force constants (--material) or of any crystal's "
        "(--structure with --force-constants, the start and the prior's centre, and --table: your measured "
        "phonons in its cell) to measured frequencies and elastic constants",
    )
    add_material_args(p)
    p.add_argument(
        "--table",
        default=None,
        help="measured table (JSON, format fcinv-measured-phonons; see docs); default: a preset's shipped, cited "
        "table (a --structure crystal needs its own)",
    )
    p.add_argument(
        "--reference",
        default=None,
        choices=["umlff", "dft", "measured"],
        help="a preset's start, prior centre and value of non-fitted parameters (default umlff: the ensemble "
        "median); a --structure crystal's are its --force-constants",
    )
    p.add_argument("--params", default="all", help="'all' (default, with the prior) or N: the top-N by sensitivity")
    p.add_argument(
        "--prior",
        default="scaled",
        choices=["scaled", "reference", "none"],
        help="weak Gaussian prior toward s×reference (scaled, s = one fitted stiffness factor), the reference itself, or none",
    )
    p.add_argument("--prior-width", type=float, default=0.5, help="relative 1σ width of the prior (default 0.5)")
    p.add_argument("--no-elastic", action="store_true", help="ignore the table's elastic constants")
    p.add_argument("--max-iter", type=int, default=200, help="maximum function evaluations (default 200)")
    p.add_argument("--out", help="write the fit as JSON (format fcinv-dispersion-fit)")
    p.add_argument("--plot", help="write a PNG of fit vs data along the dispersion path")
    add_json(p)
    p.set_defaults(func=run, outputs=[("out", "file", JSON), ("plot", "file", FIGURE)])


def run(args) -> int:
    import json
    from pathlib import Path

    from ..errors import FcinvError
    from ..fitting import fit_dispersion, frequencies_at_labels

    if args.structure and not args.material:
        if args.reference is not None:
            raise FcinvError(
                "--reference names a preset's reference set; a --structure crystal starts from its --force-constants"
            )
        if args.table is None:
            raise FcinvError(
                "a --structure crystal has no shipped table: give --table (your measured phonons, format "
                "fcinv-measured-phonons, q in its cell; the format is fcinv_widgets.measured's docstring)"
            )
        mat, fc = load_material(args)
        if fc is None and not mat.has_reference:
            raise FcinvError(
                "fit-dispersion --structure needs --force-constants: the fit starts from them, centres its prior on "
                "them and keeps the parameters it does not fit at them"
            )
    else:
        mat, _ = load_material(args, reference=args.reference or "umlff")
    if args.params == "all":
        params = "all"
    else:
        try:
            params = int(args.params)
        except ValueError:
            raise FcinvError(f"--params must be 'all' or a number N (top-N), got {args.params!r}") from None
    if args.max_iter < 1:
        raise FcinvError("--max-iter must be ≥ 1")
    fit = fit_dispersion(
        mat,
        args.table or "shipped",
        params=params,
        prior=None if args.prior == "none" else args.prior,
        prior_width=args.prior_width,
        elastic=not args.no_elastic,
        max_iter=args.max_iter,
    )
    payload = fit.to_dict()
    payload["reference"] = args.reference
    payload["command"] = "fcinv " + " ".join(sys.argv[1:]) if sys.argv and "fit-dispersion" in sys.argv else None
    payload["high_symmetry_thz"] = {k: [round(float(x), 4) for x in v] for k, v in frequencies_at_labels(mat, fit.params).items()}
    if args.out and fit.converged:
        Path(args.out).write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        ax = fit.plot(mat)
        ax.figure.savefig(args.plot, dpi=120, bbox_inches="tight")
    prior = f"{fit.prior['kind']} ×{fit.prior['scale']:.3f}" if fit.prior else "none"
    n_pts = sum(r["kind"] == "point" for r in fit.residuals)
    n_el = sum(r["kind"] == "elastic" for r in fit.residuals)
    lines = [
        f"{mat.name}: fitted {len(fit.fitted)} parameters to {n_pts} measured modes + {n_el} elastic slopes (prior: {prior})",
        f"chi2 = {fit.chi2:.3f}, dof = {fit.dof}, chi2/dof = {fit.reduced_chi2:.3f}, {fit.message}",
        "",
        f"{'kind':<8} {'label':<6} {'branch':<12} {'measured':>9} {'model':>9} {'σ':>7} {'z':>7}  (THz)",
    ]
    for r in fit.residuals:
        lines.append(
            f"{r['kind']:<8} {r['label']:<6} {r['branch']:<12} {r['measured_thz']:>9.3f} {r['model_thz']:>9.3f} "
            f"{r['sigma_thz']:>7.3f} {r['z']:>7.2f}"
        )
    lines += ["", "active parameters (eV/Å²):"]
    sig = fit.sigma_all()
    for i in mat.active:
        lines.append(f"  {mat.basis.names[i]:<10} {fit.params[i]:>9.4f} ± {sig[i]:.4f}")
    emit(args, payload, "\n".join(lines))
    if not fit.converged:
        print(
            f"fcinv fit-dispersion: {fit.message}; chi2 = {fit.chi2:.4g} (chi2/dof = {fit.reduced_chi2:.4g}); "
            "raise --max-iter or check the table",
            file=sys.stderr,
        )
        return 3
    return 0
