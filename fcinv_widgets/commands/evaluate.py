"""fcinv evaluate: R² and MAE per FC on a dataset's test split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..cli import emit


def register(sub):
    p = sub.add_parser("evaluate", help="R² and MAE per FC of a model on a dataset's test split")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--max-test", type=int, default=None)
    p.add_argument("--n-samples", type=int, default=100)
    p.add_argument("--write-metrics", action="store_true", help="also write metrics.json next to the model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.noise_grid import r2_score
    from ..models import Inverter, resolve_model
    from ..models.train import load_split

    inv = Inverter.load(args.model)
    x, y, info = load_split(args.dataset, "test", args.max_test)
    if info["material"].lower() != inv.config["material"].lower():
        from ..errors import GridMismatchError

        raise GridMismatchError(f"the model is for {inv.config['material']}, the dataset for {info['material']}")
    p = inv.predict(x, n_samples=args.n_samples)
    r2 = r2_score(y, p.mean)
    mae = np.abs(p.mean - y).mean(0)
    rec = float(((p.recon - inv.prepare(x)) ** 2).mean())
    d = {"names": p.names, "r2": r2.tolist(), "mae": mae.tolist(), "recon_mse": rec, "n_test": int(len(x)),
         "dataset": str(args.dataset), "model": str(resolve_model(args.model))}
    if args.write_metrics:
        Path(resolve_model(args.model)).with_name("metrics.json").write_text(json.dumps(d, indent=1))
    text = f"{len(x)} test spectra, reconstruction MSE {rec:.4f}\n" + "\n".join(
        f"  {n:<16} R² {a:6.3f}   MAE {b:.4f} eV/Å²" for n, a, b in zip(d["names"], d["r2"], d["mae"]))
    emit(args, d, text)
    return 0
