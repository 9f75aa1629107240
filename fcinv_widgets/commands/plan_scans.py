"""fcinv plan-scans: which sample orientations to measure next (Fisher information / model-based)."""

from __future__ import annotations

import sys

import numpy as np

from ..errors import FcinvError, GridMismatchError
from ._common import (
    FIGURE,
    INACTIVE,
    STIFFNESS,
    add_check_sigma,
    add_json,
    add_material_args,
    add_stiffness,
    check_sigma_args,
    emit,
    load_material,
    nonneg_float,
    on_data_grid,
    positive_float,
    warn_if_unstable,
)


def register(sub):
    p = sub.add_parser(
        "plan-scans",
        help="rank the next sample orientations by the information they add about the FCs",
        description="Given the scans measured so far (a scan set, or none) and an inverse model, score "
        "every candidate sample angle by the information its kinematic coverage would add "
        "about the active force constants and plan the next --n scans greedily "
        "(see fcinv_widgets.analysis.planner). With --sqe the criterion is the physics model's own and "
        "needs no network: --material, or any crystal's --structure with --force-constants, instead of --model.",
    )
    p.add_argument(
        "--model",
        default=None,
        help="checkpoint directory or shipped name (ge-vae, nb-vae, …); with --sqe, --material or --structure "
        "(and --force-constants) may name the crystal instead",
    )
    add_material_args(p)
    p.add_argument("--scans", default=None, help="scan set measured so far (HDF5 from `fcinv scans`); default: none yet")
    p.add_argument(
        "--measured",
        default=None,
        help="which of the scan set's angles count as measured (start:stop:step or comma list, degrees; default: all of them)",
    )
    p.add_argument("--candidates", default="0:180:1", help="candidate sample angles ω (degrees, default 0:180:1)")
    p.add_argument("--n", type=int, default=5, help="how many next orientations to plan (default 5)")
    p.add_argument("--ei", type=float, default=None, help="incident energy (meV); default: the scan set's")
    p.add_argument("--u", default=None, help="sample direction along the beam at ω = 0 (default: the scan set's, or 1,1,0)")
    p.add_argument("--v", default=None, help="second in-plane direction (default: the scan set's, or 0,0,1)")
    p.add_argument(
        "--background", type=nonneg_float, default=0.05, help="expected flat background per scan, fraction of the peak"
    )
    p.add_argument("--counts", type=positive_float, default=200.0, help="expected counts at the peak per scan")
    p.add_argument(
        "--criterion",
        default="D",
        choices=("D", "A", "model"),
        help="D-optimal (log det of the Fisher information, default), A-optimal on FC0–3, or the model's own expected error",
    )
    p.add_argument(
        "--sqe",
        action="store_true",
        help="score every candidate by the Fisher information of the folded one-phonon S(Q,E) its single scan "
        "records (structure factors of the equivalents that orientation sees; criterion D or A) instead of its "
        "exposure × the model image; the estimate is then the S(Q,E) fit of the measured scans (or the reference) "
        "and --model (or --material, --structure) only names the crystal",
    )
    p.add_argument(
        "--qmax",
        type=positive_float,
        default=None,
        help="largest |Q| (Å⁻¹) folded with --sqe (default: the scan set's, else the reach)",
    )
    add_stiffness(
        p,
        "--sqe with measured scans: first fit one factor s for all reference force constants, then hold the "
        "FCs outside the top 8 at s × theirs and centre the fit and the plan there (free), or at them (fixed); "
        "auto (default): free for a --structure crystal (a force field's overall stiffness is not known), "
        "fixed for the presets",
    )
    p.add_argument(
        "--inactive",
        choices=tuple(INACTIVE),
        default="auto",
        help="--sqe with measured scans: fit the FCs outside the top 8 too, each with a prior around the reference "
        "(fit: the top 8's σ then carries their uncertainty), or hold them at the reference (held); auto (default): "
        "fit for a --structure crystal (a force field's error differs per interaction), held for the presets "
        "(anchored to measured phonons)",
    )
    add_check_sigma(p, "--sqe with measured scans, the S(Q,E) fit of the scans", "N fits: seconds to minutes each")
    p.add_argument("--count-time", type=positive_float, default=None, help="counting time per scan (s): gains become per second")
    p.add_argument("--move-time", type=nonneg_float, default=0.0, help="motor time per degree of rotation (s/°)")
    p.add_argument(
        "--temperature",
        type=nonneg_float,
        default=None,
        help="sample temperature (K) for the intensity correction of the scans (default: the scan set's)",
    )
    p.add_argument("--plot", default=None, metavar="PNG", help="information per candidate angle with the plan marked")
    add_json(p, progress=True)
    p.set_defaults(func=run, outputs=[("plot", "file", FIGURE)])


def _vec(text, default, name):
    from ._common import parse_vector

    return parse_vector(text, name) if text is not None else np.asarray(default, float)


def run(args) -> int:
    from ..analysis.expio import check_same_crystal
    from ..analysis.planner import coverage_bank, plan_orientations, union_of_scans
    from ..materials import get_material
    from ..models import load_model
    from ..scans import ScanSet, align_turns, check_angles, check_ei, parse_angles

    if not (isinstance(args.n, int) and args.n >= 1):
        raise FcinvError(f"--n must be a positive integer, got {args.n}")
    cand = parse_angles(args.candidates)
    model, mat, fc = None, None, None
    if args.model is not None:
        if args.material or args.structure:
            raise FcinvError("--model names the crystal: drop --material/--structure (or --model, with --sqe)")
        model = load_model(args.model)
        mat = get_material(model.material)
    elif not args.sqe:
        raise FcinvError(
            "give --model (a trained network), or --sqe with --material or --structure and --force-constants "
            "(the S(Q,E) Fisher criterion needs no network)"
        )
    elif not (args.material or args.structure):
        raise FcinvError("--sqe without --model needs --material (Ge, Nb) or --structure with --force-constants")
    else:
        mat, fc = load_material(args)
        if mat.name == "custom" and fc is None and not mat.has_reference:
            raise FcinvError("plan-scans --structure needs --force-constants: the estimate the first scan is planned at")
        if mat.name == "custom":  # (planned at, or fitted from, a set with imaginary modes: said, as refine says it)
            warn_if_unstable(
                mat, args.force_constants, "the plan is made at (or the scan fit starts from) a set with imaginary modes"
            )
    ss = None
    if args.scans:
        ss = ScanSet.load(args.scans)
        # another preset material by name; a "custom" scan set (its own structure) by its q-path's length
        if model is not None:
            check_same_crystal(args.scans, str(ss.material), model.material, ss.grid.q.distance, model.input_grid, ss.elements)
        else:
            mat = on_data_grid(mat, args, ss.grid.e)
            check_same_crystal(args.scans, str(ss.material), mat, ss.grid.q.distance, mat.grid, ss.elements)
        if tuple(ss.grid.shape) != tuple(mat.grid.shape):
            raise GridMismatchError(
                f"the scans' grid {ss.grid.shape} is not the {'model' if model else 'crystal'}'s {mat.grid.shape}"
            )
    ei = args.ei if args.ei is not None else (ss.ei_mev if ss is not None else None)
    if ei is None:
        raise FcinvError("give --ei (meV) or --scans (its Ei is used)")
    check_ei(ei, mat.grid)
    axes = ss.sample_axes(mat.crystal, args.scans) if ss is not None and None in (args.u, args.v) else {}
    u = _vec(args.u, axes.get("u", (1, 1, 0)), "--u")
    v = _vec(args.v, axes.get("v", (0, 0, 1)), "--v")
    measured = np.zeros(0)
    if ss is not None:
        measured = ss.angles_deg if args.measured is None else parse_angles(args.measured)
        missing = [a for a in np.atleast_1d(measured) if not np.any(np.abs(ss.angles_deg - a) < 1e-6)]
        if missing:
            raise FcinvError(f"--measured angle {missing[0]:g}° is not in the scan set")
    elif args.measured is not None:
        raise FcinvError("--measured needs --scans (the measured data)")
    # a candidate that is a measured orientation written another way (−90° and 270°) is that one
    cand = np.unique(align_turns(cand, measured))
    angles = check_angles(np.unique(np.concatenate([cand, measured])))
    for flag in ("stiffness", "inactive"):
        if getattr(args, flag) != "auto" and not (args.sqe and len(measured)):
            raise FcinvError(f"--{flag} applies to the S(Q,E) fit of measured scans (--sqe with --scans)")
    check_sigma_args(args, bool(args.sqe and len(measured)), "the S(Q,E) fit of measured scans (--sqe with --scans)")
    if args.sqe:
        return _run_sqe(args, mat, ss, cand, measured, angles, float(ei), u, v)
    assert model is not None  # (checked above: without --sqe a model is required)
    bank = coverage_bank(mat, angles, ei, u=u, v=v, progress=not args.no_progress)
    names = list(model.names)
    dom = np.asarray(model.config["domain"], float)
    fm = mat.forward_model(resolution=("arcs", float(ei)))
    if [n.split(" ", 1)[-1] for n in fm.names] != [n.split(" ", 1)[-1] for n in names]:
        raise GridMismatchError(f"the model's FCs {names} are not the material's active set {fm.names}")
    if len(measured):
        idx = [int(np.flatnonzero(np.abs(ss.angles_deg - a) < 1e-6)[0]) for a in measured]
        scans = ss.scans[idx]
        temp = args.temperature if args.temperature is not None else ss.temperature_k
        if "noise" not in ss.meta:  # a folded one-phonon S(Q,E): correct to the model's intensity
            from ..analysis.expio import to_model_intensity

            scans = np.stack([to_model_intensity(s, mat.grid, temp, 99.5) if np.isfinite(s).any() else s for s in scans])
        union = union_of_scans(scans, bank, measured)
        if not np.isfinite(union).any():
            raise FcinvError("the measured scans cover no pixel of the path")
        from ..models.inverter import input_sigma_regime

        # corrected from an S(Q,E) above (else a measurement at the model's intensity); one scan
        # measured so far: its σ from the single-scan calibration, as infer-scans sizes it
        intensity = "model-image" if "noise" in ss.meta else "one-phonon-sqe"
        regime = input_sigma_regime({"intensity": intensity}, True, single_scan=len(measured) == 1)
        pred = model.predict(union, n_samples=100, sigma_regime=regime)
        estimate = np.clip(pred.mean[0], dom[:, 0], dom[:, 1])
        model_sigma = pred.std[0]
        source = f"model on the union of {len(measured)} measured scan(s)"
    else:
        estimate = np.clip(mat.reference_theta, dom[:, 0], dom[:, 1])
        model_sigma = None
        source = f"{mat.name} reference ({getattr(mat, 'reference_source', 'preset')}), no scan measured yet"
    plan = plan_orientations(
        bank,
        fm,
        estimate,
        dom,
        measured_deg=measured,
        candidates_deg=cand,
        n=args.n,
        background=args.background,
        counts=args.counts,
        criterion=args.criterion,
        count_time_s=args.count_time,
        move_s_per_deg=args.move_time,
        names=names,
        model=model,
    )
    extra = {"model": args.model, "ei_mev": float(ei), "model_sigma_ev_a2": None if model_sigma is None else model_sigma.tolist()}
    return _report(args, plan, source, extra, f"plan for {mat.name} ({len(measured)} scan(s) measured; estimate: {source})")


def _run_sqe(args, mat, ss, cand, measured, angles, ei, u, v) -> int:
    """plan-scans --sqe: the S(Q,E) Fisher criterion (analysis.planner.plan_orientations_sqe)."""
    from ..analysis.planner import fit_scans_sqe, hits_bank, plan_orientations_sqe
    from ..analysis.refine import stiffness_text, stiffness_warning

    if args.criterion == "model":
        raise FcinvError("--sqe scores with the Fisher information: use --criterion D or A")
    qmax = args.qmax if args.qmax is not None else (ss.meta.get("qmax_inv_a") if ss is not None else None)
    temp = args.temperature if args.temperature is not None else (ss.temperature_k if ss is not None else 5.0)
    bank = hits_bank(mat, angles, ei, u=u, v=v, qmax=qmax, progress=not args.no_progress)
    dom = np.asarray(mat.domain, float)
    # --b-coh where given, else the scan set's record, else the table's (as refine)
    b_coh = getattr(args, "b_coh_fm", None) or None
    if b_coh is None and ss is not None and ss.meta.get("b_coh_fm") is not None:
        from ..analysis.expio import file_b_coh

        b_coh = file_b_coh(ss.meta["b_coh_fm"], args.scans)
    sigma = fit = check = None
    if len(measured):
        idx = [int(np.flatnonzero(np.abs(ss.angles_deg - a) < 1e-6)[0]) for a in measured]
        fit_mat = mat
        fit = fit_scans_sqe(
            mat,
            bank,
            ss.scans[idx],
            measured,
            temp,
            b_coh=b_coh,
            stiffness=STIFFNESS[args.stiffness],
            fit_inactive=INACTIVE[args.inactive],
        )
        estimate, sigma = np.clip(fit.theta, dom[:, 0], dom[:, 1]), fit.sigma
        source = f"S(Q,E) fit of {len(measured)} measured scan(s)"
        if fit.stiffness is not None or fit.inactive_fitted:
            # the plan's inactive FCs where the fit left them: held at the reference × s, or fitted
            assert fit.params is not None
            mat = mat.with_reference(fit.params, mat.reference_source, mat.reference_name)
        if fit.stiffness is not None:
            source += f", overall stiffness {stiffness_text(fit.stiffness, fit.stiffness_sigma)} × the reference"
            if stiffness_warning(fit.stiffness):
                print(f"warning: {stiffness_warning(fit.stiffness)}", file=sys.stderr)
        if fit.inactive_fitted:
            source += ", the FCs outside the top 8 fitted with a prior"
        if args.check_sigma is not None:
            from ..analysis.planner import check_scan_fit_sigma

            # the refits are made as the fit was: on the material and bank it was given
            check = check_scan_fit_sigma(
                fit_mat, bank, fit, args.check_sigma, seed=args.seed, progress=not args.no_progress, scheduler=args.scheduler
            )
    else:
        estimate = np.clip(mat.reference_theta, dom[:, 0], dom[:, 1])
        source = f"{mat.name} reference, no scan measured yet"
    plan = plan_orientations_sqe(
        mat,
        bank,
        estimate,
        measured_deg=measured,
        candidates_deg=cand,
        n=args.n,
        temperature_k=temp,
        background=args.background,
        counts=args.counts,
        criterion=args.criterion,
        count_time_s=args.count_time,
        move_s_per_deg=args.move_time,
        b_coh=b_coh,
    )
    extra = {
        "model_kind": "sqe",
        "ei_mev": ei,
        "fit_sigma_ev_a2": None if sigma is None else sigma.tolist(),
        "stiffness": None if fit is None else fit.stiffness,
        "stiffness_sigma": None if fit is None else fit.stiffness_sigma,
        "inactive_fitted": None if fit is None else fit.inactive_fitted,
        "sigma_check": None if check is None else check.to_dict(),
    }
    header = f"plan for {mat.name}, S(Q,E) criterion ({len(measured)} scan(s) measured; estimate: {source})"
    if check is not None:
        header += f"\nσ check of the scan fit: {check.note()}"
    return _report(args, plan, source, extra, header)


def _report(args, plan, source: str, extra: dict, header: str) -> int:
    """Print the plan (JSON with ``--json``: the plan, where its estimate came from, ``extra``) and
    write ``--plot``."""
    payload = plan.to_dict() | {"estimate_source": source} | extra
    if args.plot:
        _plot(plan, args.plot)
        payload["plot"] = args.plot
    emit(args, payload, f"{header}\n" + plan.table() + f"\nnext: ω = {plan.next_angle:g}°")
    return 0


def _plot(plan, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3), constrained_layout=True)
    ax.plot(plan.candidates_deg, plan.information, lw=1.2, label="expected information of the next scan")
    for k, a in enumerate(plan.angles_deg):
        ax.axvline(a, color="C3" if k == 0 else "0.6", lw=1.5 if k == 0 else 0.8, ls="-" if k == 0 else "--")
    for a in plan.measured_deg:
        ax.axvline(a, color="k", lw=0.5, alpha=0.4)
    ax.set(
        xlabel="sample angle ω (°)",
        ylabel="gain" + (" (nats)" if plan.criterion == "D" else ""),
        title=f"next ω = {plan.next_angle:g}° (red), then dashed; measured in black",
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
