"""fcinv refine: fit the FCs to a spectrum with the differentiable forward model.

A one-phonon S(Q,E) (the file says so, or ``--temperature`` declares it) is fitted as it is with
the folded-S(Q,E) model over all parameters (``analysis.refine.refine_sqe``); a model image, or
``--unit-weights``, with the unit-weight image over the top 8 (``analysis.refine.refine``)."""

from __future__ import annotations

import sys

from ._common import (
    STIFFNESS,
    add_check_sigma,
    add_json,
    add_material_args,
    add_sigma_ei,
    add_stiffness,
    add_temperature,
    check_sigma_args,
    emit,
    load_material,
    on_data_grid,
    parse_params,
    parse_vector,
    positive_float,
    positive_int,
    sigma_of,
    warn_if_unstable,
)


def register(sub):
    p = sub.add_parser(
        "refine",
        help="iterative refinement of the top-8 FCs against a spectrum (L-BFGS, torch)",
        description="Fit the force constants to a spectrum: of a preset (--material, default Ge) or of any "
        "crystal (--structure with --force-constants, the start values and the prior's centre; the energy "
        "grid is the file's)",
    )
    add_material_args(p)
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
    p.add_argument(
        "--unit-weights",
        action="store_true",
        help="fit a one-phonon S(Q,E) the old way: corrected to unit weights, top 8 only (default: the folded S(Q,E) model, all FCs)",
    )
    p.add_argument(
        "--prior-scale",
        type=positive_float,
        default=1.5,
        help="S(Q,E) fit: width of the prior on the inactive FCs, in units of the reference's σ (default 1.5)",
    )
    add_stiffness(
        p,
        "S(Q,E) fit: first fit one factor s for all reference force constants, then start from s × them and "
        "centre the inactive FCs' prior there (free), or start and centre at them (fixed); auto (default): free for a "
        "--structure crystal (a force field's overall stiffness is not known), fixed for the presets (anchored to "
        "measured phonons)",
    )
    p.add_argument(
        "--qmax",
        type=positive_float,
        default=None,
        help="S(Q,E) fit: largest |Q| folded (1/Å; default: the file's, else the reach at Ei)",
    )
    p.add_argument(
        "--scan",
        type=float,
        default=None,
        metavar="DEG",
        help="S(Q,E) fit of one single-orientation scan at sample angle ω = DEG: of a scan set (`fcinv scans`) that "
        "scan instead of the union; any other S(Q,E) file is that scan, its coverage modelled with sample axes --u/--v",
    )
    p.add_argument(
        "--u",
        default=None,
        help="with --scan on a file that is not a scan set: sample direction along the beam at ω = 0 (default 1,1,0)",
    )
    p.add_argument("--v", default=None, help="with --scan: second in-plane sample direction (default 0,0,1)")
    add_check_sigma(p, "S(Q,E) fit", "N fits: minutes; σ for a crystal other than Ge is otherwise uncalibrated")
    add_json(p, progress="no progress bar for the S(Q,E) fit's rounds (stderr)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.expio import is_uncorrected_sqe, prepare_input, read_spectrum
    from ..analysis.refine import refine
    from ..validate import check_spectra

    sigma = sigma_of(args)
    mat = _material(args)
    if args.ei is not None:
        from ..scans import check_ei

        check_ei(args.ei, mat.grid)
    fm = mat.forward_model(sigma_mev=sigma, resolution=("arcs", args.ei) if args.ei is not None else None)
    if mat.name == "custom":
        warn_if_unstable(mat, args.force_constants, "the fit starts from them and may stop in a wrong basin")
    # refuses another material, complex, constant, all-zero, non-finite input
    spec = read_spectrum(args.spectrum, grid=mat.grid, material=mat)
    img, corrections = prepare_input(spec, mat.grid, temperature_k=args.temperature, clip_percentile=args.clip, raw=args.raw)
    img = check_spectra(img, mat.grid.shape, name=args.spectrum)
    start = parse_params(args.start, fm.n_active) if args.start is not None else None
    sqe_input = is_uncorrected_sqe(corrections)
    if args.scan is not None and (not sqe_input or args.unit_weights):
        from ..errors import FcinvError

        raise FcinvError("--scan applies to the S(Q,E) fit (not with --raw, --unit-weights or a model image)")
    if args.stiffness != "auto" and (not sqe_input or args.unit_weights):
        from ..errors import FcinvError

        raise FcinvError("--stiffness applies to the S(Q,E) fit (not with --raw, --unit-weights or a model image)")
    check_sigma_args(
        args, sqe_input and not args.unit_weights, "the S(Q,E) fit (not with --raw, --unit-weights or a model image)"
    )
    from ..scans import scan_axes

    u = None if args.u is None else parse_vector(args.u, "--u")
    v = None if args.v is None else parse_vector(args.v, "--v")
    scan_axes(args.scan, u, v, scan_set=spec.source if spec.fmt == "fcinv-scans" else None)  # refuses a bad ω or axes
    if sqe_input and not args.unit_weights:
        return _run_sqe(args, mat, spec, corrections, start, u, v)
    r = refine(fm, img, start=start, domain=mat.domain, max_iter=args.max_iter)
    lines = [
        f"refined in {r.n_iter} evaluations, {r.seconds:.2f} s; misfit {r.misfit_start:.3e} → {r.misfit:.3e}"
        + ("" if r.stable else "  (UNSTABLE result)")
    ]
    lines += [f"  {n:<16} {s:>9.4f} → {v:>9.4f} eV/Å²" for n, s, v in zip(r.names, r.start, r.params)]
    emit(args, r.to_dict() | {"corrections": corrections}, "\n".join(lines))
    return 0


def _material(args):
    """The preset (--material, Ge by default) or the --structure crystal with its --force-constants;
    a custom crystal's energy grid is the spectrum file's (unless --e-max), not one sized to the
    start values' highest mode."""
    from ..errors import FcinvError

    if not args.structure and not args.material:
        args.material = "Ge"
    mat, fc = load_material(args)
    if mat.name != "custom":
        return mat
    if fc is None:
        raise FcinvError(
            "fcinv refine --structure needs --force-constants: the fit starts from them and holds the FCs it "
            "cannot resolve near them"
        )
    from ..analysis.expio import read_spectrum

    from ..grid import EnergyGrid

    spec = read_spectrum(args.spectrum, material=mat)
    mat = on_data_grid(mat, args, EnergyGrid.from_centers(spec.energies))
    if spec.image.shape != mat.grid.shape:
        g = mat.grid
        raise FcinvError(
            f"{args.spectrum}: the image is {spec.image.shape[0]} q-bins × {spec.image.shape[1]} energy bins, the "
            f"--structure crystal's grid {g.shape[0]} × {g.shape[1]} (its SeeK-path q-path; {g.e.e_min:g}–{g.e.e_max:g} "
            f"meV in {g.e.step:g} meV bins"
            + ("): a file that does not list its energies needs --e-max to match them" if spec.energies is None else ")")
        )
    return mat


def _run_sqe(args, mat, spec, corrections, start, u=None, v=None) -> int:

    from ..analysis.expio import SQE
    from ..analysis.refine import above_noise_message, refine_spectrum, stiffness_text, stiffness_warning
    from ..errors import FcinvError

    if args.clip is not None:
        raise FcinvError("the S(Q,E) fit uses the data as they are (no clipping): drop --clip, or add --unit-weights")
    temp = corrections["bose_weighting"]["temperature_k"]
    ei = args.ei if args.ei is not None else spec.meta.get("ei_mev")
    if ei is None and spec.meta.get("ei_problem"):
        raise FcinvError(f"{args.spectrum}: {spec.meta['ei_problem']}: give the incident energy with --ei MEV")
    qmax = args.qmax if args.qmax is not None else spec.meta.get("qmax_inv_a")
    r = refine_spectrum(
        mat,
        spec,
        temp,
        ei_mev=ei,
        qmax=qmax,
        scan=args.scan,
        u=u,
        v=v,
        start=start,
        prior_scale=args.prior_scale,
        stiffness=STIFFNESS[args.stiffness],
        b_coh=args.b_coh_fm or None,  # --b-coh; else the file's record, else the table's
        max_iter=args.max_iter,
        progress=not args.no_progress,
    )
    rec = {
        "intensity": SQE,
        "temperature_k": temp,
        "ei_mev": ei,
        "qmax_inv_a": qmax,
        **({"scan_deg": args.scan} if args.scan is not None else {}),
        "applied": ["none: the folded one-phonon S(Q,E) is modelled (mode weights, Bose factor, resolution)"],
    }
    lines = [
        f"folded S(Q,E) fit of all {len(r.params)} FCs in {r.seconds:.1f} s; misfit {r.misfit:.3e}, "
        f"noise φ {r.dispersion:.3g}" + ("" if r.stable else "  (UNSTABLE result)")
    ]
    lines += [f"  {r.names[i]:<16} {r.start[i]:>9.4f} → {r.params[i]:>9.4f} ± {r.sigma[i]:.4f} eV/Å²" for i in r.active]
    lines.append(
        "residual / the data's own noise: "
        + ("not estimable (too many empty pixels)" if r.noise_ratio is None else f"{r.noise_ratio:.2f}")
    )
    if args.check_sigma is not None:
        from ..analysis.refine import check_fit_sigma

        r.sigma_check = check_fit_sigma(
            mat, r, args.check_sigma, seed=args.seed, progress=not args.no_progress, scheduler=args.scheduler
        )
    if r.stiffness is not None:
        lines.append(
            f"overall stiffness: {stiffness_text(r.stiffness, r.stiffness_sigma)} × the reference force constants "
            "(fitted first; the fit started from s × them and holds the FCs the data hardly see near s × theirs; "
            "--stiffness fixed: s = 1)"
        )
    if mat.name != "Ge" or r.sigma_check is not None:
        lines.append(f"σ: {r.sigma_note}")
    if r.sigma_check is not None:
        lines.append(f"σ check: {r.sigma_check.note()}")
    if r.above_noise:
        print(f"warning: {above_noise_message(r)}", file=sys.stderr)
    if stiffness_warning(r.stiffness):
        print(f"warning: {stiffness_warning(r.stiffness)}", file=sys.stderr)
    emit(args, r.to_dict() | {"corrections": rec}, "\n".join(lines))
    return 0
