"""fcinv train: train the VAE + FC regressor on a dataset file."""

from __future__ import annotations

from ..cli import emit
from ..errors import FcinvError


def register(sub):
    p = sub.add_parser("train", help="train a model (VAE + FC regressor) on a dataset HDF5 file")
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", default="vae", help="vae (the ResNet-18 baseline is not implemented yet)")
    p.add_argument("--out", required=True, help="output directory (model.pt, train_state.pt)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta", type=float, default=1.0, help="weight of the KL term")
    p.add_argument("--latent", type=int, default=20)
    p.add_argument("--max-train", type=int, default=None, help="use only the first N training spectra")
    p.add_argument("--patience", type=int, default=6, help="early stopping: epochs without improvement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: min(4, cores))")
    p.add_argument("--resume", action="store_true", help="continue from out/train_state.pt")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..models import train_vae

    if args.model != "vae":
        raise FcinvError(f"--model {args.model}: only 'vae' is implemented in this version")
    if args.epochs < 1 or args.batch_size < 1:
        raise FcinvError("--epochs and --batch-size must be ≥ 1")
    r = train_vae(args.dataset, args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, beta=args.beta,
                  latent=args.latent, seed=args.seed, max_train=args.max_train, patience=args.patience,
                  device=args.device, threads=args.threads, resume=args.resume, progress=not args.json)
    text = f"wrote {r['out']} after {r['epochs']} epochs ({r['vae_seconds']:.0f} s VAE, {r['regressor_seconds']:.0f} s regressor)\n" + \
        "\n".join(f"  validation R² {n:<16} {v:6.3f}" for n, v in zip(r["names"], r["val_r2"]))
    emit(args, r, text)
    return 0
