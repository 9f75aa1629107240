"""fcinv ood-calibrate: out-of-distribution statistics of a model, written as ``ood.json`` beside it."""

from __future__ import annotations

from ._common import JSON, add_json, add_model_args, add_ship, check_not_shipped, emit, noise_cells


#: the most spectra --n-train/--n-test take (the shipped calibrations used 2000 and 1000)
MAX_SPECTRA = 100_000


def register(sub):
    p = sub.add_parser(
        "ood-calibrate",
        help="feature statistics and thresholds of the out-of-distribution check "
        "(ood.json beside the model; read by `fcinv invert`)",
    )
    add_model_args(p, "checkpoint directory or shipped name (ge-vae, ge-resnet, …)")
    p.add_argument(
        "--dataset",
        default=None,
        help="fcinv dataset HDF5 of the model's material (train split: feature statistics; test split: "
        "thresholds). Default: a fresh one drawn from the material's training domain (--n-train/--n-test)",
    )
    p.add_argument("--n-train", type=int, default=2000, help="training spectra for the feature statistics (default 2000)")
    p.add_argument(
        "--n-test", type=int, default=1000, help="spectra for the thresholds, each clean and once noisy (default 1000)"
    )
    p.add_argument("--quantile", type=float, default=0.99, help="threshold quantile of the in-distribution scores (default 0.99)")
    p.add_argument("--seed", type=int, default=12345, help="seed of a generated dataset and of the noise")
    p.add_argument(
        "--levels",
        default=None,
        metavar="B,P;B,P…",
        help="noise cells (background, counts) of the noisy calibration copies (default: every cell of the "
        "noise grid with B ≤ 0.2 and P ≥ 30)",
    )
    p.add_argument(
        "--coverage-from",
        default=None,
        metavar="SCANS_H5",
        help="a scan set (`fcinv scans`): cut the noisy calibration spectra to its single scans' coverage "
        "(for models trained with partial coverage)",
    )
    p.add_argument(
        "--mask-bank",
        metavar="NPZ",
        default=None,
        help="coverage masks (fcinv train --mask-bank) for the augmented calibration draws of a model trained on "
        "realistic spectra",
    )
    p.add_argument(
        "--augmented",
        action="store_true",
        help="calibrate the measured-input regime on draws of the measurement model the checkpoint was trained with "
        "(the default for such a model; given for a model without one: exit 2)",
    )
    p.add_argument("--out", default=None, help="output JSON (default: ood.json beside model.pt)")
    add_ship(p, "ood.json")
    add_json(p, progress=True)
    p.set_defaults(func=run, outputs=[("out", "file", JSON)])


def run(args) -> int:
    import tempfile
    from pathlib import Path

    import numpy as np

    from ..dataset import Dataset, generate_dataset
    from ..errors import FcinvError
    from ..models import load_model
    from ..models.ood import DEFAULT_LEVELS, calibrate

    levels = noise_cells(args.levels, "--levels") if args.levels else DEFAULT_LEVELS
    model = load_model(args.model)
    masks = None
    augmenter = None
    aug_cfg = model.config.get("augment")
    if args.augmented and not aug_cfg:
        raise FcinvError(f"{args.model} was not trained with a measurement model: --augmented has nothing to draw")
    if args.mask_bank and not aug_cfg:
        raise FcinvError(f"--mask-bank is used only for the measurement-model draws, and {args.model} was not trained with one")
    if aug_cfg:
        from ..measurement import MEASURED_P_CLEAN, MeasurementModel, load_bank

        bank = load_bank(args.mask_bank, model.material)[0] if args.mask_bank else None
        sampler = MeasurementModel.from_dict(aug_cfg).sampler(model.config["energy_centers_mev"], masks=bank, seed=args.seed)
        augmenter = sampler.forced(p_clean=MEASURED_P_CLEAN)  # as measurements arrive, whatever --clean-fraction trained on
    for name in ("n_train", "n_test"):
        if not 10 <= getattr(args, name) <= MAX_SPECTRA:
            raise FcinvError(f"--{name.replace('_', '-')} must be from 10 to {MAX_SPECTRA:,}")
    if args.out is None:  # beside the model: for a shipped name, the installed package's own file (checked before the work)
        check_not_shipped(Path(model.path).parent / "ood.json", "--out (default: ood.json beside the model)", args.ship)
    from ..validate import check_bytes

    # every spectrum is held in memory (float32), the test ones also noisy; a fresh set is written to a
    # temporary file first: --n-train 10⁸ filled the disk at 70 MB/s before the memory blew up
    check_bytes(4.0 * np.prod(model.shape) * (args.n_train + 3 * args.n_test), "the OOD calibration's spectra")
    with tempfile.TemporaryDirectory() as tmp:
        path = args.dataset
        if path is None:
            path = Path(tmp) / "ood.h5"
            cfg = model.config
            generate_dataset(  # the model's own training distribution: its reference, domain and nuisance
                model.material,
                path,
                n_train=args.n_train,
                n_test=args.n_test,
                seed=args.seed,
                progress=not args.no_progress,
                reference=cfg.get("reference", "umlff"),
                domain=cfg.get("domain"),
                nuisance=float(cfg.get("nuisance", 0.0)),
            )
        ds = Dataset(path)
        try:
            if ds.material.lower() != model.material.lower():
                raise FcinvError(f"the dataset is of {ds.material}, the model is for {model.material}")
            tr, _, ntr = ds.split("train")
            te, _, nte = ds.split("test")
            train = np.asarray(tr[: min(ntr, args.n_train)], np.float32)
            test = np.asarray(te[: min(nte, args.n_test)], np.float32)
        finally:
            ds.close()
        # (a model trained with the S(Q,E) path is still calibrated on unit-weight measurement draws:
        # with half its draws through that path the thresholds rose until Nb on the Ge grid passed —
        # 0.00 flagged, a flat band 0.10 — session 12; see docs/models.md)
        if args.coverage_from:
            from ..scans import ScanSet

            masks = np.isfinite(ScanSet.load(args.coverage_from).scans)
        stats = calibrate(
            model,
            train,
            test,
            levels=levels,
            quantile=args.quantile,
            seed=args.seed,
            masks=masks,
            augmenter=augmenter,
            progress=not args.no_progress,
            extra={
                "dataset": str(args.dataset) if args.dataset else f"generated (seed {args.seed})",
                "coverage_from": args.coverage_from,
                "mask_bank": args.mask_bank,
                "command": "fcinv ood-calibrate",
            },
        )
    out = Path(args.out) if args.out else Path(model.path).parent / "ood.json"
    stats.save(out)
    c = stats.calibration
    payload = {
        "out": str(out),
        "kind": stats.kind,
        "combined_threshold": stats.combined_threshold,
        "medians": stats.medians,
        "thresholds": stats.thresholds,
        "quantile": stats.quantile,
        "measured": stats.measured,
        **c,
    }
    emit(
        args,
        payload,
        f"wrote {out}: combined-score threshold {stats.combined_threshold:.3g} ({stats.quantile:.0%} quantile); "
        "single-score thresholds "
        + ", ".join(f"{k} {v:.4g}" for k, v in stats.thresholds.items())
        + f"; flagged in-distribution: {c['flagged_fraction_clean']:.1%} clean, {c['flagged_fraction_noisy']:.1%} noisy"
        + (
            f"; measured regime: combined threshold {stats.measured['combined_threshold']:.3g}, "
            f"{c['flagged_fraction_augmented']:.1%} of the measurement-model draws flagged"
            if stats.has_measured()
            else ""
        ),
    )
    return 0
