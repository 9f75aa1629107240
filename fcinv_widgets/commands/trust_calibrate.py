"""fcinv trust-calibrate: measure models' single-scan trust limit (``trust.json``) on simulated measurements."""

from __future__ import annotations

from ._common import (
    add_json,
    add_scheduler,
    add_ship,
    add_temperature,
    check_not_shipped,
    emit,
    noise_cells,
    nonneg_int,
    positive_float,
    positive_int,
)


def register(sub):
    p = sub.add_parser(
        "trust-calibrate",
        help="measure how far in its own σ the truth lies from each network's answer on simulated single scans and "
        "full data of drawn truths (the limit a single scan's physics fit is trusted within; --write: trust.json)",
    )
    p.add_argument(
        "--model",
        nargs="+",
        required=True,
        metavar="MODEL",
        help="checkpoint directories or shipped names of one material, each with a calibrated σ (ge-resnet ge-vae, …)",
    )
    p.add_argument(
        "--truths",
        type=positive_int,
        default=40,
        help="drawn true FC sets (default 40); a limit needs ≥ 20 cases of its kind (truths × angles × cells for single scans)",
    )
    p.add_argument("--seed", type=nonneg_int, default=101, help="seed of the truths (default 101, the shipped limits')")
    p.add_argument(
        "--angles",
        default="0,30,60,90,120,150",
        help="sample angles of the single scans, degrees ('a,b,c' or start:stop:step; default 0,30,60,90,120,150)",
    )
    p.add_argument(
        "--cells",
        default="0.05,300;0.1,100;0.2,30",
        metavar="B,P;B,P…",
        help="noise cells: flat background B and Poisson counts P at the 99.5th percentile (default 0.05,300;0.1,100;0.2,30)",
    )
    p.add_argument("--ei", type=positive_float, default=80.0, help="incident energy (meV, default 80)")
    add_temperature(p, 5.0)
    p.add_argument("--qmax", type=positive_float, default=6.0, help="largest |Q| folded (1/Å, default 6)")
    p.add_argument(
        "--level",
        type=float,
        default=None,
        help="the quantile of max over FCs of |z| (default: models.trust.TRUST_LEVEL, 0.99, the shipped models' level)",
    )
    p.add_argument("--n-samples", type=positive_int, default=100, help="VAE: latent samples per spectrum (default 100)")
    p.add_argument(
        "--write",
        action="store_true",
        help="store each model's single-scan limit as trust.json beside its checkpoint (stamped with its SHA-256)",
    )
    p.add_argument(
        "--full-data",
        action="store_true",
        help="with --write: also hold fits of full data (several scans) to the measured full-data limit instead of 2σ "
        "(adopted for nb-resnet and nb-vae by held-out truths; check it on yours before relying on it)",
    )
    add_ship(p, "--write's trust.json")
    add_scheduler(p, "the simulated measurements (one task per truth)")
    add_json(p, progress=True)
    p.set_defaults(func=run)


def run(args) -> int:
    import shlex
    from pathlib import Path

    from ..analysis.trust_calibration import MIN_CASES, limits_of, network_cases
    from ..errors import FcinvError
    from ..materials import material_for_model
    from ..models import load_model
    from ..models.trust import TRUST_LEVEL, save_trust_limit
    from ..scans import parse_angles

    if args.level is None:
        args.level = TRUST_LEVEL
    if not 0.5 <= args.level < 1:
        raise FcinvError(f"--level must be in [0.5, 1), got {args.level:g}")
    if args.full_data and not args.write:
        raise FcinvError("--full-data says what --write stores: give both")
    cells = noise_cells(args.cells, "--cells")
    angles = [float(a) for a in parse_angles(args.angles)]
    # the cases each truth gives: per noise cell, full data and one single scan per angle; a limit
    # needs MIN_CASES of a kind (checked before the work: it exited 0 with no limit and no reason)
    n_full = args.truths * len(cells)
    n_single = n_full * len(angles)
    counts = f"{len(cells)} cells × {args.truths} truths"
    if n_full + n_single < MIN_CASES:
        raise FcinvError(
            f"too few cases for any limit ({counts} × (1 + {len(angles)} angles) = {n_full + n_single} < {MIN_CASES}): "
            "give more --truths"
        )
    if args.write and args.full_data and n_full < MIN_CASES:
        raise FcinvError(f"too few full-data cases for a limit ({counts} = {n_full} < {MIN_CASES}): give more --truths")
    if args.write and n_single < MIN_CASES:
        raise FcinvError(
            f"too few single-scan cases for a limit ({len(angles)} angles × {counts} = {n_single} < {MIN_CASES}): "
            "give more --truths or --angles"
        )
    if args.ship and not args.write:
        raise FcinvError("--ship allows --write into a shipped model's folder: give --write too")
    models = {}
    for name in dict.fromkeys(args.model):
        m = load_model(name)
        if not getattr(m, "heteroscedastic", False):
            raise FcinvError(f"{name} reports no calibrated σ (a paper model?): a trust limit is measured in that σ")
        models[name] = m
        if args.write:  # beside the checkpoint: for a shipped name, the installed package's own file
            check_not_shipped(Path(m.path).parent / "trust.json", f"--write ({name})", args.ship)
    mats = {m.material.lower() for m in models.values()}
    if len(mats) != 1:
        raise FcinvError(f"the models are of different materials ({', '.join(sorted(mats))}): measure each material apart")
    mat = material_for_model(next(iter(models.values())).config)
    rows = network_cases(
        models,
        mat,
        n_truths=args.truths,
        seed=args.seed,
        cells=cells,
        angles_deg=angles,
        ei_mev=args.ei,
        temperature_k=args.temperature,
        qmax=args.qmax,
        n_samples=args.n_samples,
        progress=not (args.json or args.no_progress),
        scheduler=args.scheduler,
    )
    limits = limits_of(rows, args.level)
    command = "fcinv trust-calibrate " + shlex.join(
        [
            "--model",
            *models,
            "--truths",
            str(args.truths),
            "--seed",
            str(args.seed),
            "--angles",
            ",".join(f"{a:g}" for a in angles),
        ]
        + [
            "--cells",
            ";".join(f"{b:g},{p:g}" for b, p in cells),
            "--ei",
            f"{args.ei:g}",
            "--temperature",
            f"{args.temperature:g}",
        ]
        + ["--qmax", f"{args.qmax:g}", "--level", f"{args.level:g}", "--write"]
        + (["--full-data"] if args.full_data else [])
        + (["--ship"] if args.ship else [])
    )
    measured_on = (
        f"fcinv trust-calibrate: {args.truths} drawn {mat.name} truths (seed {args.seed}), full data and single scans at "
        f"{', '.join(f'{a:g}' for a in angles)}°, cells {args.cells}, Ei {args.ei:g} meV, T {args.temperature:g} K, "
        f"|Q| ≤ {args.qmax:g} 1/Å"
    )
    written = {}
    for name, res in limits.items():
        if args.write:
            written[name] = str(
                save_trust_limit(
                    models[name].path,
                    res["single scan"]["limit"],
                    full_data_limit=res["full data"]["limit"] if args.full_data else None,
                    level=args.level,
                    n_cases=res["single scan"]["n"],
                    measured={k: {"n": v["n"], "limit": v["limit"]} for k, v in res.items()},
                    measured_on=measured_on,
                    command=command,
                )
            )
    payload = {
        "material": mat.name,
        "level": args.level,
        "measured_on": measured_on,
        "limits": limits,
        "written": written or None,
        "note": "a model's single-scan fits are held to its single-scan limit once trust.json is written (--write)",
    }
    text = [f"{mat.name}: {measured_on}"]
    for name, res in limits.items():
        text.append(
            f"  {name}: "
            + "; ".join(f"{k} {v['limit']:.2f} (n {v['n']}, ±1σ {v['cov1']:.2f}, ±2σ {v['cov2']:.2f})" for k, v in res.items())
            + (f" → wrote {written[name]}" if name in written else "")
        )
    emit(args, payload, "\n".join(text))
    return 0
