"""fcinv noise-grid: R² per FC over a 5×5 (background, counts) grid on a dataset's test split."""

from __future__ import annotations

import numpy as np

from ..errors import FcinvError, GridMismatchError
from ._common import FIGURE, add_json, add_max_test, add_model_args, add_n_samples, add_scheduler, add_seed, emit


def register(sub):
    p = sub.add_parser("noise-grid", help="noise robustness: R² per FC on a 5×5 (B, P) grid of noisy test sets")
    add_model_args(p, "checkpoint directory or shipped name (VAE or ResNet)", dataset=True)
    p.add_argument("--out", required=True, help="output HDF5 (read by NoiseGridExplorer)")
    add_max_test(p, "use only the first N test spectra")
    add_n_samples(p, "latent samples per spectrum")
    add_seed(p)
    add_scheduler(p, "the noise cells")
    p.add_argument("--plot", help="also write the R² heatmaps (FC0–FC3) to this PNG")
    p.add_argument(
        "--coverage-plot", metavar="PNG", help="also write the ±1σ coverage heatmaps (FC0–FC3) to this PNG (models with a σ)"
    )
    add_json(p, progress=True)
    p.set_defaults(
        func=run, outputs=[("out", "file", "fcinv-noise-grid"), ("plot", "file", FIGURE), ("coverage_plot", "file", FIGURE)]
    )


class _Predict:
    """Picklable predict callable (for Dask workers)."""

    def __init__(self, model, n_samples):
        self.model, self.n_samples, self._inv = model, n_samples, None

    def __call__(self, x):
        from ..models import load_model

        if self._inv is None:
            self._inv = load_model(self.model)
        # the grid's inputs are model images with background and counts: the model-image σ calibration
        p = self._inv.predict(x, n_samples=self.n_samples, reconstruct=False, sigma_regime="model-image")
        return (p.mean, p.std) if np.any(p.std > 0) else p.mean

    def __getstate__(self):
        return {"model": self.model, "n_samples": self.n_samples, "_inv": None}


def run(args) -> int:
    from ..analysis.noise_grid import plot_noise_grid, run_noise_grid
    from ..models import load_model, resolve_model
    from ..models.train import load_split

    model = str(resolve_model(args.model))
    inv = load_model(model)
    x, y, info = load_split(args.dataset, "test", args.max_test)
    if str(info["material"]).lower() != inv.material.lower():
        raise GridMismatchError(f"the model is for {inv.material}, the dataset for {info['material']}")
    res = run_noise_grid(
        _Predict(model, args.n_samples),
        x,
        y,
        inv.names,
        seed=args.seed,
        model=model,
        scheduler=args.scheduler,
        progress=not (args.json or args.no_progress),
    )
    res.save(args.out)
    if args.plot:
        plot_noise_grid(res).savefig(args.plot, dpi=120)
    if args.coverage_plot:
        if res.cov1 is None:
            raise FcinvError(f"--coverage-plot: {args.model} reports no σ (σ = 0), so there is no coverage to plot")
        plot_noise_grid(res, what="cov1").savefig(args.coverage_plot, dpi=120)
    payload = {
        "out": args.out,
        "names": res.names,
        "backgrounds": res.backgrounds.tolist(),
        "counts": res.counts.tolist(),
        "r2": res.r2.tolist(),
        "snr": res.snr.tolist(),
        "coverage_1sigma": None if res.cov1 is None else res.cov1.tolist(),
        "coverage_2sigma": None if res.cov2 is None else res.cov2.tolist(),
    }
    text = "\n\n".join(res.table(k) for k in range(min(4, len(res.names))))
    if res.cov1 is not None:
        text += "\n\n" + "\n\n".join(res.coverage_table(k, 1) for k in range(min(4, len(res.names))))
    emit(args, payload, text)
    return 0
