"""fcinv evaluate: R² and MAE per FC on a dataset's test split (+ parity grid / R² bar plots)."""

from __future__ import annotations

from pathlib import Path


from ._common import (
    FIGURE,
    add_json,
    add_max_test,
    add_model_args,
    add_n_samples,
    add_seed,
    add_ship,
    check_model_domain,
    check_not_shipped,
    emit,
    json_dumps,
)
from ..errors import FcinvError
from ..validate import json_loads


def register(sub):
    p = sub.add_parser("evaluate", help="R² and MAE per FC of a model on a dataset's test split")
    add_model_args(p, "checkpoint directory, model.pt or shipped name (ge-vae, ge-resnet, …)", dataset=True)
    add_max_test(p)
    add_n_samples(p, "VAE: latent samples per spectrum")
    p.add_argument("--write-metrics", action="store_true", help="also write metrics.json next to the model")
    p.add_argument("--parity", default=None, metavar="PNG", help="write a parity-grid figure (predicted vs true per FC)")
    p.add_argument(
        "--compare",
        nargs="+",
        default=None,
        metavar="METRICS_JSON",
        help="with --r2-bars: other models' metrics.json files (or shipped model names) to put beside this one",
    )
    p.add_argument("--r2-bars", default=None, metavar="PNG", help="write R² bars per FC (this model and --compare ones)")
    p.add_argument(
        "--allow-other-domain",
        action="store_true",
        help="evaluate although the dataset was made at another reference or over another domain than the model's",
    )
    p.add_argument(
        "--reliability",
        default=None,
        metavar="PNG",
        help="write a reliability plot: observed vs nominal coverage of ±z·σ intervals per FC",
    )
    p.add_argument(
        "--augment",
        action="store_true",
        help="evaluate on a realistic test set: the measurement model (fcinv_widgets.measurement) applied "
        "to the test split with a fixed seed (--seed)",
    )
    p.add_argument("--mask-bank", default=None, metavar="NPZ", help="with --augment: coverage masks (fcinv train --mask-bank)")
    p.add_argument(
        "--sqe-weights",
        type=float,
        default=None,
        metavar="P",
        help="with --augment: render this fraction (0–1) of the test spectra with the folded one-phonon S(Q,E) "
        "mode weights a measurement keeps after its E/(n+1) correction (default 0: unit weights)",
    )
    p.add_argument(
        "--single-scans",
        action="store_true",
        help="with --augment and --mask-bank: every test spectrum one single-orientation scan of the bank (no clean "
        "pass-through; with --sqe-weights, each orientation's own S(Q,E) weights when the bank records its geometry)",
    )
    p.add_argument(
        "--sqe-resolved-lines",
        action="store_true",
        help="with --sqe-weights: render the S(Q,E) test spectra on lines of the ARCS resolution at their drawn Ei, "
        "weighted after, as a measurement has them (the order fcinv train --sqe-resolved-lines trains with; default: "
        "the resolution kernel after the weights, as the shipped models' realistic test sets were drawn)",
    )
    add_seed(p, "with --augment: seed of the measurement model's draws")
    add_ship(p, "--write-metrics' metrics.json")
    add_json(p, progress=True)
    p.set_defaults(func=run, outputs=[("parity", "file", FIGURE), ("r2_bars", "file", FIGURE), ("reliability", "file", FIGURE)])


def _metrics_of(ref: str) -> tuple:
    from ..models import resolve_model

    p = Path(ref)
    if not p.is_file() or p.suffix != ".json":
        p = resolve_model(ref).with_name("metrics.json")
    if not p.is_file():
        raise FcinvError(f"no metrics for {ref!r} ({p}): run `fcinv evaluate --write-metrics` on it first")
    d = json_loads(p.read_text(), str(p))
    if not isinstance(d, dict):
        raise FcinvError(f"{p}: not a metrics file (a JSON object with 'names' and 'r2', as --write-metrics writes)")
    return str(d.get("model", ref)), d


def run(args) -> int:
    from ..analysis.evaluation import evaluate_model, plot_parity, plot_r2_bars
    from ..models import load_model, resolve_model
    from ..models.train import load_split

    model = load_model(args.model)
    if args.write_metrics:  # beside the model: for a shipped name, the installed package's own file
        if args.augment:
            raise FcinvError("--write-metrics records the clean test set; run it without --augment")
        check_not_shipped(Path(resolve_model(args.model)).with_name("metrics.json"), "--write-metrics", args.ship)
    elif args.ship:
        raise FcinvError("--ship allows --write-metrics into a shipped model's folder: give --write-metrics too")
    if args.compare and not args.r2_bars:
        raise FcinvError("--compare adds models to the R² bars: give --r2-bars PNG too")
    compare = dict(_metrics_of(c) for c in (args.compare or []))  # read before the work, not after it
    for lab, m in compare.items():
        if not isinstance(m.get("names"), list) or len(m["names"]) != len(model.names):
            raise FcinvError(f"--compare {lab}: its metrics name {len(m.get('names') or [])} FCs, this model {len(model.names)}")
    x, y, info = load_split(args.dataset, "test", args.max_test)
    check_model_domain(model, info, args.allow_other_domain, "pass --allow-other-domain to evaluate it there anyway")
    if (args.mask_bank or args.sqe_weights is not None or args.single_scans) and not args.augment:
        raise FcinvError("--mask-bank, --sqe-weights and --single-scans apply with --augment only")
    if args.single_scans and not args.mask_bank:
        raise FcinvError("--single-scans needs the coverage masks the scans come from (--mask-bank)")
    if args.sqe_weights is not None and not 0 <= args.sqe_weights <= 1:
        raise FcinvError(f"--sqe-weights is a fraction in [0, 1], got {args.sqe_weights:g}")
    if args.sqe_resolved_lines and not args.sqe_weights:
        raise FcinvError("--sqe-resolved-lines needs --augment and --sqe-weights > 0")
    test_set, regime = "clean", "model-image"
    if args.augment:
        from ..analysis.evaluation import realistic_test_set

        x, regime, test_set = realistic_test_set(
            args.dataset,
            x,
            info,
            mask_bank=args.mask_bank,
            sqe_weights=args.sqe_weights,
            single_scans=args.single_scans,
            seed=args.seed,
            resolved_lines=args.sqe_resolved_lines,
        )
    d = evaluate_model(model, x, y, n_samples=args.n_samples, progress=not (args.json or args.no_progress), sigma_regime=regime)
    true, pred, std = d.pop("true"), d.pop("pred"), d.pop("pred_std")
    d |= {
        "dataset": str(args.dataset),
        "model": str(args.model),
        "test_set": test_set,
        "evaluated_with": f"fcinv evaluate --model {args.model} --dataset {Path(args.dataset).name}"
        + (f" --max-test {args.max_test}" if args.max_test else "")
        + f" --n-samples {args.n_samples}"
        + (f" --augment --seed {args.seed}" if args.augment else "")
        + (f" --mask-bank {Path(args.mask_bank).name}" if args.mask_bank else "")
        + (f" --sqe-weights {args.sqe_weights:g}" if args.sqe_weights is not None else "")
        + (" --single-scans" if args.single_scans else "")
        + (" --sqe-resolved-lines" if args.sqe_resolved_lines else ""),
    }
    tr = dict(model.config.get("training") or {})
    if tr:  # how the checkpoint was trained (sizes, epochs, wall time, device), without the per-epoch history
        d["training"] = {k: v for k, v in tr.items() if k not in ("history",)}
    if args.write_metrics:
        # strict JSON: an undefined R² (a constant FC) is null, as on stdout — not NaN
        Path(resolve_model(args.model)).with_name("metrics.json").write_text(json_dumps(d, indent=1))
    label = f"{model.material} {model.kind}"
    if args.reliability:
        import matplotlib.pyplot as plt

        from ..analysis.evaluation import plot_reliability

        lv = d["reliability"]["levels"]
        ob = list(zip(*d["reliability"]["observed"]))
        ax = plot_reliability(
            {n.split(" ")[0]: (lv, o) for n, o in zip(d["names"], ob)}, title=f"{label}: {test_set} test set, {len(y)} spectra"
        )
        ax.figure.savefig(args.reliability, dpi=130)
        plt.close(ax.figure)
    if args.parity:
        fig = plot_parity(true, pred, d["names"], d["r2"], pred_std=std, title=f"{label}: {len(y)} test spectra")
        fig.savefig(args.parity, dpi=130)
    if args.r2_bars:
        import matplotlib.pyplot as plt

        ms = {label: d} | compare
        ax = plot_r2_bars(ms, title=f"{model.material}: R² per FC on the test set")
        ax.figure.savefig(args.r2_bars, dpi=130)
        plt.close(ax.figure)
    rec = "" if d["recon_mse"] is None else f", reconstruction MSE {d['recon_mse']:.4f}"
    text = f"{len(x)} {test_set} test spectra ({label}){rec}\n" + "\n".join(
        f"  {n:<16} R² {a:6.3f}   MAE {b:.4f} eV/Å²   ±1σ covers {c1:5.1%}  ±2σ {c2:5.1%}"
        for n, a, b, c1, c2 in zip(d["names"], d["r2"], d["mae"], d["coverage_1sigma"], d["coverage_2sigma"])
    )
    emit(args, d, text)
    return 0
