"""fcinv sigma-calibrate: refit the post-hoc calibration of a trained model's σ (no retraining)."""

from __future__ import annotations

from pathlib import Path

from ._common import add_json, add_model_args, check_model_domain, check_output, emit, positive_int

#: the fewest spectra --unseen takes (models.train.SIGMA_MIN_PER_REGIME: one input regime's calibration)
SIGMA_MIN_PER_REGIME = 100

#: the most spectra --unseen takes: the calibration holds its float32 draws in memory (three per
#: spectrum) and renders / predicts them ``models.train.CAL_CHUNK`` at a time; its peak grows
#: ~0.24 MB per spectrum on Ge's 140 × 140 grid over ~3 GB (measured, session 32: 3.6 GB at 3,000,
#: 4.9 GB at 8,000; before the chunking ~1.1 MB per spectrum: 4.9 GB at 3,000, and 20,000 were killed
#: for memory on a 24 GB machine in session 29) — ~10 GB here; the training set's own hold-out is 1,000–2,000
MAX_UNSEEN = 30_000


def register(sub):
    p = sub.add_parser(
        "sigma-calibrate",
        help="refit the σ calibration of a model trained with a measurement model (σ-conditional scale on "
        "held-out realistic and noise-grid draws of its validation spectra, pooled and per input regime); writes a "
        "copy of the checkpoint",
    )
    add_model_args(p, "checkpoint directory or shipped name (ge-vae, ge-resnet, …)", dataset=True)
    p.add_argument(
        "--mask-bank",
        metavar="NPZ",
        default=None,
        help="the coverage masks the model was trained with (fcinv train --mask-bank); required when it used them",
    )
    p.add_argument(
        "--unseen",
        type=positive_int,
        metavar="N",
        default=None,
        help="calibrate on the first N training spectra of --dataset, a dataset the model never trained on (a fresh "
        "`fcinv dataset` of its material and domain, another --seed), instead of the training set's validation "
        f"hold-out: for a model trained on spectra unlike the inputs σ must hold for, such as a mixture with "
        f"nuisance-free spectra ({SIGMA_MIN_PER_REGIME} ≤ N ≤ {MAX_UNSEEN:,}; ~3 GB + 0.25 MB of memory per spectrum)",
    )
    p.add_argument("--out", required=True, help="output checkpoint directory (model.pt; never the model's own)")
    add_json(p, progress=True)
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from ..errors import FcinvError
    from ..models import load_model
    from ..models.ood import OODStats, file_sha256
    from ..models.train import SIGMA_MIN_PER_BIN, _augmenter, _data, _fit_sigma

    model = load_model(args.model)
    cfg = model.config
    aug_cfg = cfg.get("augment")
    if not (model.heteroscedastic and aug_cfg):
        raise FcinvError(
            f"{args.model} has no σ to calibrate: it was not trained with a measurement model (fcinv train --augment)"
        )
    out = check_output(args.out, "--out", kind="dir")
    src = model.path.resolve()
    target = (out / "model.pt").resolve()
    if target == src:
        raise FcinvError("--out is the model's own directory: write the recalibrated copy elsewhere")
    if target.exists() and not _same_network(target, model):
        raise FcinvError(
            f"--out {args.out}: holds another model (model.pt); will not overwrite it (choose an empty folder, "
            "or one holding an earlier recalibration of this model)"
        )
    training = cfg.get("training") or {}
    n_split = int(training.get("n_train", 0)) + int(training.get("n_val", 0))
    if args.unseen is not None:
        x, y, info, iv = _unseen(args, model, training)
    else:
        # the first n_split rows, as training read them: a model trained with --max-train K used the
        # first K, and its own dataset was refused for having more
        x, y, info, iv, _ = _data(args.dataset, n_split or None, int(training.get("seed", 0)))
    if info["material"].lower() != model.material.lower():
        raise FcinvError(f"the dataset is of {info['material']}, the model is for {model.material}")
    if args.unseen is None:
        _check_training_set(args, training, n_split, y)
    masks, bank_meta = None, {}
    if cfg.get("coverage_bank"):
        if not args.mask_bank:
            raise FcinvError(
                f"{args.model} was trained with a coverage bank of shape {cfg['coverage_bank']}: give it with --mask-bank"
            )
        from ..measurement import bank_digest, load_bank

        masks, bank_meta = load_bank(args.mask_bank, model.material)
        if list(masks.shape) != list(cfg["coverage_bank"]):
            raise FcinvError(f"--mask-bank has shape {list(masks.shape)}, the model was trained with {cfg['coverage_bank']}")
        said = cfg.get("coverage_bank_sha256")  # recorded since session 51
        if said and bank_digest(masks) != said:
            raise FcinvError(
                f"--mask-bank {args.mask_bank}: not the bank {args.model} was trained with (same shape, other masks); "
                "σ is calibrated on the training bank's draws"
            )
    elif args.mask_bank:  # (it was ignored without a word)
        raise FcinvError(f"{args.model} was trained without coverage masks: drop --mask-bank")
    from ..measurement import MeasurementModel, recorded_geometry

    aug = _augmenter(
        MeasurementModel.from_dict(aug_cfg), info, masks, int(training.get("seed", 0)), dataset=args.dataset, n=len(x)
    )
    before = model.sigma_scale.copy()
    # the single-scan regime's draws get each orientation's own S(Q,E) weights when the bank records
    # its geometry (as a real scan has them), also for models trained before session 16 without them
    scale, cal, by_regime = _fit_sigma(
        model,
        x,
        y,
        iv,
        aug,
        int(training.get("seed", 0)),
        progress=not (args.json or args.no_progress),
        scan_geometry=recorded_geometry(bank_meta),
    )
    training["sigma_calibrated_by"] = "fcinv sigma-calibrate"
    training["sigma_calibrated_on"] = {
        "dataset": Path(args.dataset).name,
        "spectra": int(len(iv)),
        "unseen": args.unseen is not None,
    }
    cfg["training"] = training
    out.mkdir(parents=True, exist_ok=True)
    had_trust = (src.parent / "trust.json").is_file()  # (before a calibration in place removes it)
    for stale in ("metrics.json", "ood.json", "trust.json"):  # they would describe another checkpoint
        (out / stale).unlink(missing_ok=True)
    model.save(target)
    carried = None
    ood = src.parent / "ood.json"
    if ood.is_file():
        # the network is unchanged (only the σ calibration in the config is new), so its OOD
        # statistics still hold: carried over, re-stamped for the new checkpoint and saying so
        stats = OODStats.load(ood)
        if stats.model_sha256 in (None, file_sha256(src)):
            stats.calibration = {**stats.calibration, "carried_over_by": "fcinv sigma-calibrate (network weights unchanged)"}
            stats.model_sha256 = file_sha256(target)
            stats.save(out / "ood.json")
            carried = str(out / "ood.json")
    payload = {
        "out": str(target),
        "n_calibration": 2 * len(iv),
        "bins": int(cal["bins"]) if cal else 1,
        "conditional": cal is not None,
        "sigma_scale_before": before.tolist(),
        "sigma_scale": scale,
        "scales": cal["scales"] if cal else [scale],
        "by_regime": {
            reg: {
                "bins": int(e["sigma_calibration"]["bins"]) if e["sigma_calibration"] else 1,
                "scales": e["sigma_calibration"]["scales"] if e["sigma_calibration"] else [e["sigma_scale"]],
            }
            for reg, e in by_regime.items()
        },
        "ood_carried_over": carried,
        # the single-scan trust limit is measured in units of the calibrated σ, which just changed
        "trust_limit_note": (
            f"{src.parent / 'trust.json'} not carried over: the single-scan trust limit is measured in the calibrated σ; "
            "re-measure it (fcinv trust-calibrate --write, docs/models.md) — until then all fits are held to 2σ"
            if had_trust
            else None
        ),
        "note": "run `fcinv evaluate --write-metrics` on the new checkpoint before shipping it",
    }
    lo, hi = np.min(payload["scales"], 0), np.max(payload["scales"], 0)
    emit(
        args,
        payload,
        f"wrote {target}: σ scale per FC now {', '.join(f'{a:.2f}–{b:.2f}' for a, b in zip(lo, hi))} over the predicted-σ "
        f"bins (was {', '.join(f'{v:.2f}' for v in before)}); calibrated on {2 * len(iv)} held-out draws"
        + ("" if cal else f" (too few for σ bins, < {2 * SIGMA_MIN_PER_BIN}: one scale per FC)")
        + "; and per input regime: "
        + "; ".join(
            f"{reg} {', '.join(f'{a:.2f}–{b:.2f}' for a, b in zip(np.min(e['scales'], 0), np.max(e['scales'], 0)))}"
            for reg, e in payload["by_regime"].items()
        )
        + (f"; OOD statistics carried over to {carried}" if carried else "")
        + (f"\nnote: {payload['trust_limit_note']}" if payload["trust_limit_note"] else ""),
    )
    return 0


def _same_network(path: Path, model) -> bool:
    """Whether ``path`` is a checkpoint of ``model``'s network (the same weights: an earlier
    recalibration of it, which this one may replace). A recalibration writes model.pt and removes
    the folder's metrics/ood/trust.json: another model's folder given as --out lost all four."""
    import torch

    from ..errors import FcinvError
    from ..models import load_model

    try:
        other = load_model(path)
    except FcinvError:
        return False
    a, b = other._state(), model._state()
    if type(other) is not type(model) or a.keys() != b.keys():
        return False
    for k in a:
        sa, sb = a[k], b[k]
        if sa.keys() != sb.keys() or not all(torch.equal(sa[t], sb[t]) for t in sa):
            return False
    return True


def _check_training_set(args, training: dict, n_split: int, y) -> None:
    """The hold-out path calibrates on the model's own validation spectra: the dataset must hold the
    rows the model was trained on — as many, and (for checkpoints since session 30) the same draws
    (its ``dataset_fingerprint``; another dataset of the same size passed before)."""
    from ..errors import FcinvError

    if n_split and len(y) != n_split:
        raise FcinvError(
            f"{args.dataset} has {len(y)} training spectra, the model was trained on {n_split}: "
            "give the dataset it was trained on (its validation hold-out is what σ is calibrated on)"
        )
    if _same_training_draws(args, training, y) is False:
        raise FcinvError(
            f"{args.dataset}: not the dataset {args.model} was trained on (its training draws differ from the checkpoint's "
            "dataset_fingerprint); give that dataset, or --unseen N with one it never saw"
        )


def _same_training_draws(args, training: dict, y) -> bool | None:
    """Whether ``--dataset``'s training split starts with the draws the model was trained on (its
    checkpoint's ``dataset_fingerprint``, recorded since session 30); None when it records none.
    ``y``: the FC targets of the split's first rows (more are read when fewer than fingerprinted)."""
    if not training.get("dataset_fingerprint"):
        return None
    from ..models.train import FINGERPRINT_ROWS, dataset_fingerprint, load_split
    from ..validate import whole_number

    # a model trained on fewer rows than FINGERPRINT_ROWS was fingerprinted over all of them
    # (recorded since session 31; before, FINGERPRINT_ROWS is the best guess)
    rows = whole_number(
        training.get("dataset_fingerprint_rows", FINGERPRINT_ROWS),
        f"{args.model}: the checkpoint's training.dataset_fingerprint_rows",
        minimum=1,
        maximum=FINGERPRINT_ROWS,
    )
    head = y[:rows] if len(y) >= rows else load_split(args.dataset, "train", rows)[1]
    return len(head) == rows and dataset_fingerprint(head) == training["dataset_fingerprint"]


def _unseen(args, model, training: dict):
    """(x, y, info, iv) for ``--unseen N``: the first N training spectra of a dataset the model never
    trained on, all of them the calibration hold-out. Of the model's material, reference and
    domain; not the dataset named in the checkpoint (the same file would be its training spectra),
    nor a copy of it under another name (its ``dataset_fingerprint``, recorded since session 30; a
    mixture made from it is not recognised)."""
    import numpy as np

    from ..errors import FcinvError
    from ..models.train import _data

    if args.unseen < SIGMA_MIN_PER_REGIME:
        raise FcinvError(f"--unseen needs at least {SIGMA_MIN_PER_REGIME} spectra, got {args.unseen}")
    if args.unseen > MAX_UNSEEN:
        raise FcinvError(
            f"--unseen takes at most {MAX_UNSEEN:,} spectra (its float32 draws are held in memory, ~0.25 MB each over ~3 GB), "
            f"got {args.unseen:,}"
        )
    trained_on = training.get("dataset")
    if trained_on and Path(args.dataset).name == Path(str(trained_on)).name:
        raise FcinvError(
            f"{args.dataset} has the name of the dataset the model was trained on ({trained_on}); --unseen takes one "
            "it never saw (a fresh `fcinv dataset` of its domain, another --seed)"
        )
    x, y, info, _, _ = _data(args.dataset, args.unseen, 0)
    check_model_domain(model, info)
    if _same_training_draws(args, training, y):
        raise FcinvError(
            f"{args.dataset} holds the same spectra as the dataset the model was trained on ({trained_on}: the same "
            "training draws); --unseen takes one it never saw (a fresh `fcinv dataset` of its domain, another --seed)"
        )
    if len(x) < args.unseen:
        raise FcinvError(f"--unseen {args.unseen}: {args.dataset} has only {len(x)} training spectra")
    return x, y, info, np.arange(args.unseen)
