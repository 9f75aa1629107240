"""fcinv train: train the VAE + FC regressor, or the ResNet-18, on a dataset file."""

from __future__ import annotations

import math

from ._common import add_json, add_seed, emit, nonneg_int, positive_float, positive_int, thread_count
from ..errors import FcinvError


def register(sub):
    p = sub.add_parser("train", help="train a model (VAE + FC regressor, or ResNet-18) on a dataset HDF5 file")
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", default="vae", choices=("vae", "resnet"), help="vae (VAE + FC regressor) or resnet (ResNet-18)")
    p.add_argument("--out", required=True, help="output directory (model.pt, train_state.pt)")
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument(
        "--lr", type=positive_float, default=None, help="learning rate (default: 1e-3 VAE, 2e-3 peak one-cycle ResNet)"
    )
    p.add_argument("--beta", type=positive_float, default=1.0, help="VAE: weight of the KL term")
    p.add_argument("--width", type=positive_int, default=16, help="ResNet: channels of the first stage (64 = standard ResNet-18)")
    p.add_argument(
        "--pretrained",
        default=None,
        help="ResNet: a state-dict file for transfer learning (e.g. torchvision ImageNet ResNet-18 weights; needs --width 64)",
    )
    p.add_argument("--latent", type=positive_int, default=20, help="VAE: latent dimensions")
    p.add_argument(
        "--supervise",
        type=positive_float,
        default=None,
        metavar="LAMBDA",
        help="VAE: add LAMBDA × the squared error of an auxiliary FC head on the latent to the VAE's loss "
        "(a supervised latent; the paper's VAE has none; e.g. 20)",
    )
    p.add_argument("--max-train", type=positive_int, default=None, help="use only the first N training spectra")
    p.add_argument("--patience", type=positive_int, default=8, help="early stopping: epochs without improvement")
    add_seed(p)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto (cuda when present), cpu or cuda")
    p.add_argument("--threads", type=thread_count, default=None, help="torch CPU threads (default: min(4, cores))")
    p.add_argument(
        "--loader-workers",
        type=nonneg_int,
        default=0,
        metavar="N",
        help="with --augment: N torch DataLoader worker processes render the augmented batches ahead of the "
        "training step (default 0: in the training process; the same results either way). On a GPU the "
        "CPU-side measurement model is the bottleneck: give it the spare cores. The batches in flight pass through "
        "/dev/shm (~4 batches per worker; refused beforehand when it is too small, as in a container's default)",
    )
    p.add_argument("--resume", action="store_true", help="continue from out/train_state.pt")
    p.add_argument(
        "--regressor-only",
        action="store_true",
        help="VAE: keep the trained encoder in out/model.pt and retrain only the FC regressor",
    )
    p.add_argument("--reg-epochs", type=positive_int, default=400, help="VAE: epochs of the FC regressor")
    p.add_argument(
        "--reg-copies",
        type=positive_int,
        default=2,
        help="VAE with --augment: augmented draws of every training spectrum the regressor learns from",
    )
    p.add_argument(
        "--augment",
        action="store_true",
        help="train on realistic spectra: the measurement model (resolution at a range of Ei, residual "
        "intensity weighting, elastic line, sloping background, Poisson counts, coverage masks) applied "
        "on the fly, a heteroscedastic head and a calibrated σ (see fcinv_widgets.measurement)",
    )
    p.add_argument(
        "--mask-bank",
        default=None,
        metavar="NPZ",
        help="with --augment: coverage masks of single-orientation scans; computed once (a few minutes) "
        "and written here when the file does not exist yet",
    )
    p.add_argument(
        "--init-from",
        default=None,
        metavar="MODEL",
        help="start from a trained model of the same kind and material (fine-tuning), e.g. ge-vae-paper",
    )
    p.add_argument("--no-masks", action="store_true", help="with --augment: no coverage masks (full coverage)")
    p.add_argument(
        "--sqe-weights",
        type=float,
        default=None,
        metavar="P",
        help="with --augment: render this fraction (0–1) of the training spectra with the folded one-phonon "
        "S(Q,E) mode weights (|Q·e|², Debye–Waller) a measurement has after its E/(n+1) correction, "
        "instead of unit weights (default 0: unit weights, as the shipped models before session 12)",
    )
    p.add_argument(
        "--clean-fraction",
        type=float,
        default=None,
        metavar="P",
        help="with --augment: the fraction (0–1) of training spectra passed on unchanged, as the forward model "
        "draws them (default 0.1; session 27's ge-resnet experiment: 0.5 in a last fine-tuning round)",
    )
    p.add_argument(
        "--sqe-scan-weights",
        action="store_true",
        help="with --sqe-weights: render an S(Q,E) draw that gets a single-scan mask with the mode weights of that "
        "orientation's detector hits (a real single scan's intensities), not the full coverage's",
    )
    p.add_argument(
        "--sqe-resolved-lines",
        action="store_true",
        help="with --sqe-weights: render an S(Q,E) draw on lines of the ARCS resolution at its drawn Ei, weighted "
        "after, as an instrument records them, instead of a resolution kernel after the weights (off: as the shipped "
        "models were trained)",
    )
    add_json(p, progress=True)
    p.set_defaults(func=run, outputs=[("out", "dir", None)])


def _masks(args, dataset, with_meta: bool = False):
    """The coverage bank for --augment: read --mask-bank, or compute it (and write it there).
    ``with_meta``: (masks, the bank's meta: material, n and, for banks written since session 16,
    its geometry — ``measurement.bank_geometry``)."""
    from pathlib import Path

    from ..measurement import bank_geometry, coverage_bank, load_bank, save_bank
    from ..models.train import load_split

    if args.no_masks:
        return (None, {}) if with_meta else None
    _, _, info = load_split(dataset, "test", 1)
    if args.mask_bank and Path(args.mask_bank).is_file():
        masks, meta = load_bank(args.mask_bank, info["material"])
        return (masks, meta) if with_meta else masks
    from ..materials import get_material

    mat = get_material(info["material"])
    masks = coverage_bank(mat, progress=not (args.json or args.no_progress))
    meta = {"material": mat.name, "n": len(masks)} | bank_geometry(mat)
    if args.mask_bank:
        save_bank(args.mask_bank, masks, meta)
    return (masks, meta) if with_meta else masks


def run(args) -> int:
    from ..measurement import recorded_geometry
    from ..models import train_resnet, train_vae
    from ..models.train import refit_regressor

    if args.epochs < 1:
        raise FcinvError(f"--epochs must be ≥ 1, got {args.epochs}")
    if args.batch_size < 2:
        raise FcinvError(f"--batch-size must be ≥ 2, got {args.batch_size}")
    common = dict(
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        max_train=args.max_train,
        patience=args.patience,
        device=args.device,
        threads=args.threads,
        resume=args.resume,
        progress=not (args.json or args.no_progress),
        loader_workers=args.loader_workers,
    )
    if args.loader_workers and (not args.augment or args.regressor_only):
        raise FcinvError("--loader-workers applies with --augment only (and not with --regressor-only)")
    if (
        args.mask_bank
        or args.no_masks
        or args.sqe_weights is not None
        or args.sqe_scan_weights
        or args.sqe_resolved_lines
        or args.clean_fraction is not None
    ) and not args.augment:
        raise FcinvError(
            "--mask-bank, --no-masks, --sqe-weights, --sqe-scan-weights, --sqe-resolved-lines and --clean-fraction "
            "apply with --augment only"
        )
    if args.sqe_scan_weights and (not args.sqe_weights or args.no_masks):
        raise FcinvError("--sqe-scan-weights needs --sqe-weights > 0 and coverage masks (not --no-masks)")
    if args.sqe_resolved_lines and not args.sqe_weights:
        raise FcinvError("--sqe-resolved-lines needs --sqe-weights > 0")
    aug = {}
    if args.augment and not args.regressor_only:
        augment = True
        for flag_, v in (("--sqe-weights", args.sqe_weights), ("--clean-fraction", args.clean_fraction)):
            if v is not None and not 0 <= v <= 1:
                raise FcinvError(f"{flag_} is a fraction in [0, 1], got {v:g}")
        masks, meta = _masks(args, args.dataset, with_meta=True)
        geometry = {}
        if args.sqe_scan_weights:
            geometry = recorded_geometry(meta)
            if not geometry:
                raise FcinvError(
                    f"--mask-bank {args.mask_bank} does not record its geometry (angles, Ei, qmax; banks written before "
                    "session 16): give a new file name and fcinv train computes and writes the bank with it"
                )
        changes: dict = {} if args.clean_fraction is None else {"p_clean": float(args.clean_fraction)}
        if args.sqe_weights is not None:
            changes |= {"p_sqe": float(args.sqe_weights), "sqe_scan_geometry": geometry}
        if args.sqe_resolved_lines:
            changes |= {"sqe_resolved_lines": True}
        if changes:
            from ..measurement import MeasurementModel

            augment = MeasurementModel(**changes)
        aug = {"augment": augment, "masks": masks}
    if args.init_from:
        if args.regressor_only:
            raise FcinvError("--init-from does not apply with --regressor-only")
        aug["init_from"] = args.init_from
    if args.regressor_only:
        if (
            args.supervise is not None
            or args.sqe_weights is not None
            or args.sqe_scan_weights
            or args.sqe_resolved_lines
            or args.clean_fraction is not None
        ):
            raise FcinvError(
                "--supervise, --sqe-weights, --sqe-scan-weights, --sqe-resolved-lines and --clean-fraction apply while the "
                "network trains, not with --regressor-only"
            )
        if args.model != "vae":
            raise FcinvError("--regressor-only applies to --model vae only")
        r = refit_regressor(
            args.out,
            args.dataset,
            reg_epochs=args.reg_epochs,
            seed=args.seed,
            max_train=args.max_train,
            threads=args.threads,
            progress=not (args.json or args.no_progress),
            masks=_masks(args, args.dataset) if args.augment else None,
        )
    elif args.model == "vae":
        if args.supervise is not None:
            aug["supervise"] = args.supervise
        if args.pretrained:
            raise FcinvError("--pretrained applies to --model resnet only")
        r = train_vae(
            args.dataset,
            args.out,
            lr=args.lr or 1e-3,
            beta=args.beta,
            latent=args.latent,
            reg_epochs=args.reg_epochs,
            reg_copies=args.reg_copies,
            **common,
            **aug,
        )
    else:
        if args.supervise is not None:
            raise FcinvError("--supervise applies to --model vae only (the ResNet is supervised already)")
        r = train_resnet(
            args.dataset, args.out, lr=args.lr or 2e-3, width=args.width, pretrained=args.pretrained, **common, **aug
        )
    text = (
        f"wrote {r['out']} after {r['epochs']} {'regressor ' if args.regressor_only else ''}epochs ({r['seconds']:.0f} s)\n"
        + "\n".join(
            f"  validation R² {n:<16} {'undefined' if v is None or not math.isfinite(v) else f'{v:6.3f}'}"
            for n, v in zip(r["names"], r["val_r2"])
        )
    )
    note = validation_note(r.get("n_val"), r["val_r2"])
    if note:
        r["val_note"] = note
        text += f"\n  ({note})"
    emit(args, r, text)
    return 0


#: below this many validation spectra an R² says little (the hold-out is 10 % of the training split)
MIN_VALIDATION = 20


def validation_note(n_val, val_r2) -> str | None:
    """What the validation R² cannot tell: undefined values (a hold-out whose values do not vary) or a
    hold-out too small to measure (< :data:`MIN_VALIDATION` spectra); None when it is fine."""
    undefined = sum(v is None or not math.isfinite(v) for v in val_r2)
    small = n_val is not None and n_val < MIN_VALIDATION
    if not undefined and not small:
        return None
    what = f"{undefined} of {len(val_r2)} validation R² undefined" if undefined else "the validation R² says little"
    return (
        f"{what}: the hold-out has {n_val} spectr{'um' if n_val == 1 else 'a'} (10 % of the training split); "
        f"train on ≥ {10 * MIN_VALIDATION} spectra, or judge the model with fcinv evaluate on its test split"
    )
