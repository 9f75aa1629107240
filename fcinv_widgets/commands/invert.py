"""fcinv invert: force constants (mean ± std over latent samples) from a spectrum file.

The file's own metadata decides the correction (fast-model image: none; one-phonon S(Q,E):
E/(n(E,T)+1) weighting at its temperature + a 99.5th-percentile clip), applied exactly once;
``--temperature``/``--clip``/``--raw`` override it. The JSON result records what was applied
(``corrections``), the out-of-distribution check (``ood``; a flagged spectrum also gets a
warning line on stderr) and where the network's answer lies in its training box
(``domain_edge``, :mod:`fcinv_widgets.models.domain_edge`; a warning too for a model that adopted
it, ``"warning": true``).
"""

from __future__ import annotations

import argparse
import sys

from ._common import add_json, add_temperature, emit, nonneg_int, parse_vector, positive_float, positive_int


def register(sub):
    p = sub.add_parser("invert", help="invert a spectrum into the top-8 FCs with uncertainties")
    p.add_argument("--model", required=True, help="checkpoint directory or shipped name (ge-vae, nb-vae)")
    p.add_argument("--spectrum", required=True, help="fcinv HDF5, pathSQE .npz, Mantid MDHisto .nxs, or .npy")
    p.add_argument("--n-samples", type=positive_int, default=100)
    add_temperature(
        p,
        None,
        help="sample temperature of a one-phonon S(Q,E) (K). Read from the file when it says so (our HDF5, "
        "Mantid sample logs); needed once for a pathSQE .npz; on a model image or bare array it declares "
        "the data an S(Q,E) at this T",
    )
    p.add_argument(
        "--clip",
        type=positive_float,
        default=None,
        metavar="PERCENTILE",
        help="clip intensities above this percentile of the covered pixels (default 99.5 for an S(Q,E), none for a model image)",
    )
    p.add_argument("--raw", action="store_true", help="feed the spectrum as it is: no correction at all")
    p.add_argument(
        "--refine",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fit the physics from the network's answer: a one-phonon S(Q,E) with the folded-S(Q,E) "
        "model over all FCs (~10 s on one core), a model image with the unit-weight image; reported as fc_mean/fc_std "
        "(the network's under 'network') when trusted — it reached the data's noise and stayed within 2σ (a single scan: the model's measured limit; full data: its adopted one where trust.json has it) of the "
        "network's answer — else the network's answer stays, with a warning ('fc_source' says which). Default: on "
        "for a one-phonon S(Q,E) as measured and a model with a calibrated σ, off otherwise and for a single scan "
        "without --scan ('refine_policy' says why); --no-refine: the network alone",
    )
    p.add_argument(
        "--ood-regime",
        choices=("auto", "model-image", "measured"),
        default="auto",
        help="the input regime: which statistics judge the out-of-distribution check and which calibration sizes σ "
        "— 'measured' (calibrated on the model's measurement-model draws) for a measurement or S(Q,E), "
        "'model-image' (clean and noisy images) otherwise; default: what the input says about itself",
    )
    p.add_argument(
        "--single-scan",
        action="store_true",
        help="the spectrum is one single-orientation scan (a file cannot say so): σ from the model's single-scan "
        "calibration, a physics fit trusted within its single-scan limit (trust.json) and the OOD check's single-scan "
        "limits where ood.json has them; a scan set from "
        "`fcinv scans` goes through `fcinv infer-scans`, which knows this of each scan",
    )
    p.add_argument(
        "--scan",
        type=float,
        default=None,
        metavar="DEG",
        help="the spectrum is the single scan at sample angle ω = DEG (implies --single-scan): the physics fit models "
        "that orientation's detector coverage (sample axes --u/--v) instead of folding every equivalent, and so does the "
        "OOD check's refit where the model has single-scan limits for it (rule S′); for a scan set "
        "(`fcinv scans`) it picks that scan (its axes are in the file)",
    )
    p.add_argument("--u", default=None, help="with --scan: sample direction along the beam at ω = 0 (default 1,1,0)")
    p.add_argument("--v", default=None, help="with --scan: second in-plane sample direction (default 0,0,1)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    add_json(p, progress="no progress bar for the physics fit")
    p.set_defaults(func=run)


#: how the text output names each σ calibration (models.inverter.SIGMA_REGIMES)
SIGMA_WORDS = {
    "measured": "held-out measurement-model draws",
    "measured-sqe": "held-out measurement-model draws of a one-phonon S(Q,E)",
    "model-image": "held-out noise-grid draws (model images)",
    "measured-scan": "held-out single-scan measurement-model draws",
    "measured-sqe-scan": "held-out single-scan measurement-model draws of a one-phonon S(Q,E)",
}


def run(args) -> int:
    from ..analysis.refine import above_noise_message
    from ..models import Inverter
    from ..models.domain_edge import EDGE_NOTE

    inv = Inverter.load(args.model)
    d = inv.invert(
        args.spectrum,
        temperature_k=args.temperature,
        clip_percentile=args.clip,
        raw=args.raw,
        n_samples=args.n_samples,
        seed=args.seed,
        refine=args.refine,
        progress=not args.no_progress,
        ood_regime=None if args.ood_regime == "auto" else args.ood_regime,
        single_scan=args.single_scan,
        scan_deg=args.scan,
        u=None if args.u is None else parse_vector(args.u, "--u"),
        v=None if args.v is None else parse_vector(args.v, "--v"),
    )
    lines = [f"{n:<16} {m:+.4f} ± {s:.4f} eV/Å²" for n, m, s in zip(d["names"], d["fc_mean"], d["fc_std"])]
    if "refined" in d:
        trust = d["refined"].get("trust") or {"accepted": True, "reasons": []}
        if trust["accepted"]:
            head = f"refined ({d['refined']['method']}); network: " + ", ".join(f"{m:+.4f}" for m in d["network"]["fc_mean"])
        else:
            head = "network (the physics fit was not trusted); fit: " + ", ".join(f"{m:+.4f}" for m in d["refined"]["fc"])
        lines.insert(0, head)
        if not trust["accepted"]:
            print(
                f"warning: {args.spectrum}: the physics fit is not reported: {'; '.join(trust['reasons'])} — fc_mean and "
                "fc_std are the network's (the fit's answer is under 'refined' in --json)",
                file=sys.stderr,
            )
        elif d["refined"].get("above_noise"):
            print(f"warning: {args.spectrum}: {above_noise_message(d['refined'])}", file=sys.stderr)
        if d["refined"].get("scan_angle_note"):
            print(f"warning: {args.spectrum}: {d['refined']['scan_angle_note']}", file=sys.stderr)
    c = d["corrections"]
    lines.append(
        f"input: {c['intensity']} ({c['intensity_source']}); corrections: "
        + (
            "; ".join(c["applied"])
            if c["applied"]
            else "already applied in the file"
            if c.get("already_applied")
            else "none (--raw)"
            if c.get("raw")
            else "none"
        )
    )
    pol = d.get("refine_policy") or {}
    if not pol.get("refine"):
        lines.append(f"physics fit: not run ({pol.get('reason', 'not asked for')}; --refine runs it)")
    if d.get("sigma_regime") and d.get("fc_source") != "refined":  # a reported fit's σ is its own (Laplace × FIT_SIGMA_SCALE)
        lines.append(f"σ: calibrated on {SIGMA_WORDS.get(d['sigma_regime'], d['sigma_regime'])} (--ood-regime overrides)")
    edge = d["domain_edge"]
    if edge["at_edge"]:
        # a record for every model, a warning only where trust.json adopts it: docs/results.md "the training-box edge"
        lines.append(f"training box: the network's answer is AT THE EDGE ({edge['reason']}) — {EDGE_NOTE}")
        if edge["warning"]:
            print(
                f"warning: {args.spectrum}: {args.model}'s answer is at its training box's edge ({edge['reason']}): {EDGE_NOTE}",
                file=sys.stderr,
            )
    else:
        z = min(edge["edge_sigmas"][: edge["checked"]])
        lines.append(f"training box: the network's answer is inside (FC0–FC{edge['checked'] - 1} ≥ {z:.1f}σ from its edges)")
    ei_check = d.get("ei_check")
    if ei_check and ei_check["note"]:
        lines.append(f"incident energy: {ei_check['note']}")
        print(f"warning: {args.spectrum}: {ei_check['note']}", file=sys.stderr)
    ood = d.get("ood")
    if ood is None:
        lines.append(f"out-of-distribution check: not done ({d.get('ood_note')})")
        print(
            f"warning: {args.spectrum}: no out-of-distribution check ({d.get('ood_note')}): nothing says whether "
            "this input is like the model's training data",
            file=sys.stderr,
        )
    else:
        lines.append(
            f"out-of-distribution score {ood['score']:.2f} (threshold {ood['threshold']:g}, {ood['regime']} regime): "
            + (
                f"WEAK DATA (structure {max(ood['structure_to_noise'], 0.0):.2f}× its noise)"
                if ood.get("weak_data")
                else ("FLAGGED" if ood["flag"] else "ok")
            )
            + (f" — {ood['regime_note']}" if ood.get("regime_note") else "")
        )
        if ood["flag"]:
            what = "carries too little signal" if ood.get("weak_data") else "looks out of distribution"  # see ood.weak_reason
            print(
                f"warning: {args.spectrum} {what} for {args.model} ({ood['reason']}); "
                "the predicted force constants are not trustworthy"
                + (f" ({ood['input_note']})" if ood.get("input_note") else ""),
                file=sys.stderr,
            )
    emit(args, d, "\n".join(lines))
    return 0
