"""fcinv dataset: training/test datasets of stable (parameters, I(q,E)) pairs."""

from __future__ import annotations

from ._common import add_json, add_scheduler, add_seed, emit, nonneg_float, nonneg_int, positive_float, positive_int


def register(sub):
    p = sub.add_parser(
        "dataset",
        help="generate (or resume) a training dataset HDF5 file",
        description="Uniform samples of the top-8 FC parameters over the material's training domain, "
        "forward-simulated, unstable sets dropped. Ctrl-C stops cleanly; rerun to resume.",
    )
    p.add_argument("--material", default="Ge")
    p.add_argument("--n-train", type=nonneg_int, default=10000)
    p.add_argument("--n-test", type=nonneg_int, default=1500)
    add_seed(p)
    p.add_argument("--candidates", type=positive_int, default=1024, help="candidates drawn per chunk (part of the seeded recipe)")
    p.add_argument("--sigma", type=positive_float, default=1.0, help="Gaussian σ of every mode (meV)")
    add_scheduler(p, "the spectra's chunks")
    p.add_argument(
        "--reference",
        choices=("measured", "dft", "umlff"),
        default=None,
        help="where the inactive FCs sit: the fit to measured phonons (default), first principles, the uMLFF median",
    )
    p.add_argument(
        "--nuisance",
        type=nonneg_float,
        default=0.0,
        help="draw the inactive FCs per spectrum around the reference with σ = this × the measured fit's σ "
        "(0: fixed at the reference; the robust models use 1.5)",
    )
    p.add_argument("--out", required=True)
    add_json(p, progress=True)
    p.set_defaults(func=run, outputs=[("out", "file", "fcinv-dataset")])


def run(args) -> int:
    from ..dataset import generate_dataset

    res = generate_dataset(
        args.material,
        args.out,
        n_train=args.n_train,
        n_test=args.n_test,
        seed=args.seed,
        candidates=args.candidates,
        sigma_mev=args.sigma,
        scheduler=args.scheduler,
        progress=not args.no_progress,
        reference=args.reference,
        nuisance=args.nuisance,
    )
    tr, te = res.get("train", {}), res.get("test", {})
    text = (
        f"{res['path']}: {res['material']}, train {tr.get('n_done')}/{tr.get('n_target')}, test {te.get('n_done')}/{te.get('n_target')}, "
        f"stable fraction {tr.get('stable_fraction', 0):.2f}, {res['size_mb']:.1f} MB, {res['seconds']:.1f} s"
        + ("\ninterrupted: run the same command again to continue" if res["interrupted"] else "")
    )
    emit(args, res, text)
    return 130 if res["interrupted"] else 0
