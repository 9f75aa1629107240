"""fcinv infer-scans: FC predictions for every single-orientation scan of a scan set (Fig. 4)."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..errors import FcinvError
from ._common import (
    FIGURE,
    add_json,
    add_model_args,
    add_n_samples,
    add_scheduler,
    emit,
    nonneg_float,
    positive_float,
    positive_int,
)


def register(sub):
    p = sub.add_parser(
        "infer-scans",
        help="predict FCs from the full data and from every single scan of a scan set "
        "(`fcinv scans`), MSE of each scan vs the full data",
    )
    add_model_args(p, "checkpoint directory or shipped name (ge-vae, ge-resnet, …)")
    p.add_argument("--scans", required=True, help="scan-set HDF5 written by `fcinv scans`")
    p.add_argument(
        "--reference",
        default="scans",
        choices=("scans", "dft", "none"),
        help="reference FCs for the table and plots: the force constants the scans were simulated "
        "from (default), the material's first-principles values, or none",
    )
    add_n_samples(p, "latent samples per spectrum (VAE)")
    p.add_argument(
        "--clip",
        type=positive_float,
        default=None,
        metavar="PERCENTILE",
        help="clip intensities above this percentile of each image's covered pixels (default 99.5)",
    )
    p.add_argument(
        "--temperature",
        type=nonneg_float,
        default=None,
        metavar="K",
        help="sample temperature for the E/(n(E,T)+1) weighting (default: the scan set's own)",
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="feed the folded S(Q,E) as it is (default: weight each energy bin by E/(n(E,T)+1) at the "
        "scan set's temperature and clip, see analysis.expio.prepare_input)",
    )
    p.add_argument(
        "--refine",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fit the physics to the full data and to every scan from the network's answers: the folded "
        "one-phonon S(Q,E) over all FCs, uncorrected data (~10 s per fit on one core); each fit's values and σ "
        "replace the network's (kept under 'network') where the fit is trusted. Default: on when the scan set is a "
        "one-phonon S(Q,E) and the model has a calibrated σ; --no-refine: the networks alone",
    )
    p.add_argument("--max-iter", type=positive_int, default=300, help="L-BFGS iterations per round of each physics fit")
    add_scheduler(p, "the physics fits")
    p.add_argument("--out", default=None, help="write the result (HDF5, read by OrientationScatter)")
    p.add_argument("--plot", default=None, metavar="PNG", help="FC vs angle, MSE vs angle, best/median/worst scans")
    add_json(p, progress="no progress bar for the physics fits")
    p.set_defaults(func=run, outputs=[("out", "file", "fcinv-scan-inference"), ("plot", "file", FIGURE)])


def run(args) -> int:
    from ..analysis.expio import check_same_crystal, is_uncorrected_sqe, prepare_scan_set
    from ..analysis.scan_inference import infer_scans, plot_scan_inference, refine_scan_inference
    from ..materials import material_for_model
    from ..models import load_model
    from ..models.inverter import refine_policy
    from ..scans import ScanSet

    model = load_model(args.model)
    ss = ScanSet.load(args.scans)
    # another preset material by name; a "custom" scan set (its own structure) by its q-path's length
    check_same_crystal(args.scans, str(ss.material), model.material, ss.grid.q.distance, model.input_grid, ss.elements)
    mat = material_for_model(model.config)  # the model's own reference and active set
    ref = None
    if args.reference == "dft":
        if mat.dft_params is None:
            raise FcinvError(f"{mat.name} has no first-principles reference shipped")
        ref = np.asarray(mat.dft_params, float)[mat.active]
    elif args.reference == "scans":
        params = getattr(ss, "params", None)
        if params is not None and len(params) == len(mat.reference_params):
            ref = np.asarray(params, float)[mat.active]
        elif params is not None and len(params):
            print(
                f"warning: {args.scans}: its params_ev_a2 holds {len(params)} values, the {mat.name} basis has "
                f"{len(mat.reference_params)}: no reference is shown (--reference dft or none to choose)",
                file=sys.stderr,
            )
    full, scans, corrections = prepare_scan_set(
        ss, mat.grid, temperature_k=args.temperature, clip_percentile=args.clip, raw=args.raw, source=str(args.scans)
    )
    if args.refine and not is_uncorrected_sqe(corrections):
        raise FcinvError("--refine fits the S(Q,E) as the scan set holds it: it cannot be combined with --raw")
    policy = refine_policy(model, corrections, args.refine)
    res = infer_scans(model, scans, full=full, angles_deg=ss.angles_deg, reference=ref, n_samples=args.n_samples)
    if policy["refine"]:
        res = refine_scan_inference(
            res,
            ss,
            mat,
            corrections["bose_weighting"]["temperature_k"],
            domain=model.config.get("domain"),
            progress=not args.no_progress,
            scheduler=args.scheduler,
            single_scan_limit=model.single_scan_trust_limit,
            full_data_limit=model.full_data_trust_limit,
            edge_domain=model.domain if model.edge_one_sided else None,
            max_iter=args.max_iter,
        )
    res.meta.update(
        {
            "scans": str(args.scans),
            "corrections": corrections,
            "corrected": bool(corrections["applied"]),
            "clip": corrections["clip_percentile"],
            "temperature_k": float(ss.temperature_k),
        }
    )
    from ..models.domain_edge import EDGE_NOTE
    from ..models.ood import input_temperature, is_measured_input, note_sqe_input, scan_orientation, scan_rule_of

    measured = is_measured_input(corrections)
    temp = input_temperature(corrections)
    ei = float(ss.ei_mev)
    res.meta["ei_check"] = model.ei_check(ei)
    if res.meta["ei_check"] and res.meta["ei_check"]["note"]:
        print(f"warning: {args.scans}: {res.meta['ei_check']['note']}", file=sys.stderr)
    ood = note_sqe_input(model.ood_check(full, measured=measured, temperature_k=temp, ei_mev=ei), corrections, model.ood_stats())
    if ood is not None:
        stats = model.ood_stats()
        ok = np.isfinite(scans).reshape(len(scans), -1).any(1)
        geometry = {"qmax_inv_a": ss.meta.get("qmax_inv_a"), "detector_deg": ss.meta.get("detector_deg")}
        # each scan's orientation: its refit follows that scan's coverage where the model has rule S′
        orients = [scan_orientation(float(w), **ss.axes, ei_mev=ei, **geometry) for w in np.asarray(ss.angles_deg)[ok]]
        flagged, weak = (
            stats.flags(
                model,
                scans[ok],
                measured=measured,
                temperature_k=temp,
                return_weak=True,
                ei_mev=ei,
                single_scan=True,
                orientation=orients,
            )
            if ok.any()
            else ([], [])
        )
        ood["scans_flagged"] = int(np.sum(flagged))
        ood["scans_flagged_deg"] = [float(w) for w, f in zip(np.asarray(ss.angles_deg)[ok], flagged) if f]
        # of those, the scans flagged for too little structure above their noise (weak data)
        ood["scans_weak"] = int(np.sum(weak))
        if measured and temp is not None:  # which single-scan rule judged them, and how it did on held-out scans
            rule = scan_rule_of(stats, ei, oriented=True)
            ood["scans_rule"], ood["scans_note"] = rule["rule"], rule["note"]
        if ood["flag"]:
            print(
                f"warning: the full data of {args.scans} "
                + ("carries too little signal" if ood.get("weak_data") else "looks out of distribution")
                + f" for {args.model} ({ood['reason']})"
                + (f"; {ood['input_note']}" if ood.get("input_note") else ""),
                file=sys.stderr,
            )
    else:
        print(
            f"warning: {args.scans}: no out-of-distribution check ({getattr(model, 'ood_note', None)}): nothing says "
            "whether these data are like the model's training data",
            file=sys.stderr,
        )
    if args.out:
        res.save(args.out)
    if args.plot:
        fm = mat.forward_model()
        plot_scan_inference(res, grid=mat.grid, forward_model=fm).savefig(args.plot, dpi=120)
    b, m, w = res.best_median_worst()
    payload = {
        "names": res.names,
        "angles_deg": res.angles_deg.tolist(),
        "full_mean": res.full_mean.tolist(),
        "full_std": res.full_std.tolist(),
        "reference": None if ref is None else ref.tolist(),
        "scan_mean": res.mean.tolist(),
        "scan_std": res.std.tolist(),
        "mse": res.mse.tolist(),
        "coverage": res.coverage.tolist(),
        "best_median_worst_deg": [float(res.angles_deg[i]) for i in (b, m, w)],
        "corrections": corrections,
        # whether the scan set's Ei lies inside the incident energies the model trained over
        "ei_check": res.meta["ei_check"],
        "ood": ood,
        "ood_note": None if ood is not None else getattr(model, "ood_note", None),
        # where the network's answers lie in its training box (models.domain_edge)
        "domain_edge": res.meta["domain_edge"],
        "scans_at_edge_deg": [float(res.angles_deg[i]) for i in res.meta["scans_at_edge"]],
        "refine_policy": policy,
    }
    edge = res.meta["domain_edge"]
    n_edge = len(res.meta["scans_at_edge"])
    # a record for every model, a warning on the full data only where trust.json adopts it: docs/results.md "the training-box edge"
    if edge["warning"]:
        print(
            f"warning: {args.model}'s full-data answer for {args.scans} is at its training box's edge ({edge['reason']}): {EDGE_NOTE}",
            file=sys.stderr,
        )
    edge_line = (
        f"training box: the network's full-data answer is AT THE EDGE ({edge['reason']} — {EDGE_NOTE})"
        if edge["at_edge"]
        else "training box: the network's full-data answer is inside"
    ) + f"; {n_edge} of {len(res.angles_deg)} scans' answers at the edge"
    fit_line = f"physics fit: not run ({policy['reason']}; --refine runs it)"
    if "refined" in res.meta:
        r = res.meta["refined"]
        payload["refined"] = {"method": r["method"], "fits": r["fits"]}
        payload["network"] = {k: r[f"network_{k}"] for k in ("full_mean", "full_std", "mean", "std")}
        bad = [f["data"] for f in r["fits"] if not (f.get("trust") or {"accepted": True})["accepted"]]
        fit_line = f"physics fit: {len(r['fits']) - len(bad)} of {len(r['fits'])} fits trusted and reported"
        if bad:
            print(
                f"warning: {len(bad)} of {len(r['fits'])} physics fits not trusted — above the data's noise or more than "
                f"the trust limit ({model.full_data_trust_limit:.3g}σ on FC0–FC3; {model.single_scan_trust_limit:.3g}σ on every FC for a single scan) from the network's answer ({', '.join(bad[:4])}{', …' if len(bad) > 4 else ''}): probably local "
                "minima; the network's answers are reported for them (the fits' under 'refined' in --json)",
                file=sys.stderr,
            )
    text = (
        res.table()
        + f"\n{len(res.angles_deg)} scans; best / median / worst ω = "
        + " / ".join(f"{res.angles_deg[i]:g}°" for i in (b, m, w))
        + f"; MSE {res.mse[b]:.3g} / {res.mse[m]:.3g} / {res.mse[w]:.3g}"
        + f"\n{fit_line}\n{edge_line}"
    )
    emit(args, payload, text)
    return 0
