"""fcinv train: train the VAE + FC regressor, or the ResNet-18, on a dataset file."""

from __future__ import annotations

from ._common import emit, nonneg_int, positive_float, positive_int
from ..errors import FcinvError


def register(sub):
    p = sub.add_parser("train", help="train a model (VAE + FC regressor, or ResNet-18) on a dataset HDF5 file")
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", default="vae", choices=("vae", "resnet"), help="vae (VAE + FC regressor) or resnet (ResNet-18)")
    p.add_argument("--out", required=True, help="output directory (model.pt, train_state.pt)")
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=positive_float, default=None, help="learning rate (default: 1e-3 VAE, 2e-3 peak one-cycle ResNet)")
    p.add_argument("--beta", type=positive_float, default=1.0, help="VAE: weight of the KL term")
    p.add_argument("--width", type=positive_int, default=16, help="ResNet: channels of the first stage (64 = standard ResNet-18)")
    p.add_argument("--pretrained", default=None,
                   help="ResNet: a state-dict file for transfer learning (e.g. torchvision ImageNet ResNet-18 weights; needs --width 64)")
    p.add_argument("--latent", type=positive_int, default=20, help="VAE: latent dimensions")
    p.add_argument("--max-train", type=positive_int, default=None, help="use only the first N training spectra")
    p.add_argument("--patience", type=positive_int, default=8, help="early stopping: epochs without improvement")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto (cuda when present), cpu or cuda")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: min(4, cores))")
    p.add_argument("--resume", action="store_true", help="continue from out/train_state.pt")
    p.add_argument("--regressor-only", action="store_true",
                   help="VAE: keep the trained encoder in out/model.pt and retrain only the FC regressor")
    p.add_argument("--reg-epochs", type=positive_int, default=400, help="VAE: epochs of the FC regressor")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run, outputs=[("out", "dir", None)])


def run(args) -> int:
    from ..models import train_resnet, train_vae
    from ..models.train import refit_regressor

    if args.epochs < 1 or args.batch_size < 2:
        raise FcinvError("--epochs must be ≥ 1 and --batch-size ≥ 2")
    common = dict(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, max_train=args.max_train,
                  patience=args.patience, device=args.device, threads=args.threads, resume=args.resume,
                  progress=not args.json)
    if args.regressor_only:
        if args.model != "vae":
            raise FcinvError("--regressor-only applies to --model vae only")
        r = refit_regressor(args.out, args.dataset, reg_epochs=args.reg_epochs, seed=args.seed, max_train=args.max_train,
                            threads=args.threads, progress=not args.json)
    elif args.model == "vae":
        if args.pretrained:
            raise FcinvError("--pretrained applies to --model resnet only")
        r = train_vae(args.dataset, args.out, lr=args.lr or 1e-3, beta=args.beta, latent=args.latent,
                      reg_epochs=args.reg_epochs, **common)
    else:
        r = train_resnet(args.dataset, args.out, lr=args.lr or 2e-3, width=args.width, pretrained=args.pretrained, **common)
    text = f"wrote {r['out']} after {r['epochs']} {'regressor ' if args.regressor_only else ''}epochs ({r['seconds']:.0f} s)\n" + \
        "\n".join(f"  validation R² {n:<16} {v:6.3f}" for n, v in zip(r["names"], r["val_r2"]))
    emit(args, r, text)
    return 0
