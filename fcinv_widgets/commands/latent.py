"""fcinv latent: latent-space analysis of a VAE on a dataset's test split (stats, UMAP map)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._common import FIGURE, add_json, add_max_test, add_model_args, add_seed, add_ship, emit, positive_int, unit_float
from ..errors import FcinvError, GridMismatchError


def register(sub):
    p = sub.add_parser("latent", help="latent statistics and a UMAP map of a VAE's test-set latents (saved for reuse)")
    add_model_args(p, "a VAE checkpoint directory or shipped name (ge-vae, nb-vae)", dataset=True)
    p.add_argument("--out", required=True, help="folder for latent_map.npz, umap_reducer.joblib, latent_stats.json")
    add_max_test(p)
    p.add_argument("--neighbors", type=positive_int, default=15, help="UMAP n_neighbors (≥ 2)")
    p.add_argument("--min-dist", type=unit_float, default=0.1, help="UMAP min_dist (0 to 1: UMAP's spread is 1)")
    add_seed(p)
    p.add_argument("--plot", default=None, metavar="PNG", help="also write the map coloured by each FC")
    add_ship(p, "the latent map")
    add_json(p, progress="no progress bar over the stages (encode, UMAP, save) on stderr")
    p.set_defaults(func=run, outputs=[("out", "dir", None), ("plot", "file", FIGURE)])


def run(args) -> int:
    from ..analysis.latent import LatentMap, latent_stats, plot_latent_map, plot_latent_stats
    from ..models import load_model
    from ..models.train import load_split

    if args.neighbors < 2:
        raise FcinvError(f"--neighbors must be ≥ 2 (UMAP needs neighbours), got {args.neighbors}")
    model = load_model(args.model)
    if model.kind != "vae":
        raise FcinvError(f"{args.model} is a {model.kind} model: the latent analysis needs a VAE")
    x, y, info = load_split(args.dataset, "test", args.max_test)
    if info["material"].lower() != model.material.lower():
        raise GridMismatchError(f"the model is for {model.material}, the dataset for {info['material']}")
    from tqdm.auto import tqdm

    with tqdm(total=3, desc="latent map", unit="stage", disable=args.no_progress) as bar:
        bar.set_postfix_str(f"encoding {len(x)} spectra")
        mu, lv = model.encode(x)
        st = latent_stats(mu, lv)
        bar.update()
        bar.set_postfix_str("UMAP")
        lmap = LatentMap.fit(mu, y, model.names, n_neighbors=args.neighbors, min_dist=args.min_dist, seed=args.seed)
        bar.update()
        bar.set_postfix_str("saving")
        from ..models.ood import file_sha256

        lmap.model_sha256 = file_sha256(model.path)  # which latent space the map is
        path = lmap.save(args.out)
        bar.update()
    js = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in st.items()}
    js |= {"model": str(args.model), "dataset": str(args.dataset), "n": int(len(x))}
    (path.parent / "latent_stats.json").write_text(json.dumps(js, indent=1))
    if args.plot:
        fig = plot_latent_map(lmap)
        fig.savefig(args.plot, dpi=120)
        plot = Path(args.plot)  # the statistics beside the map, in its file type: map.pdf → map_stats.pdf
        plot_latent_stats(st).savefig(plot.with_name(f"{plot.stem}_stats{plot.suffix or '.png'}"), dpi=120)
    emit(
        args,
        {"out": str(path), "n_active": st["n_active"], "n": int(len(x))},
        f"wrote {path} ({len(x)} points); {st['n_active']} of {mu.shape[1]} latent dimensions active",
    )
    return 0
