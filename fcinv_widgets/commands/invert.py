"""fcinv invert: force constants (mean ± std over latent samples) from a spectrum file."""

from __future__ import annotations

from ._common import add_temperature, emit, nonneg_int, positive_float, positive_int


def register(sub):
    p = sub.add_parser("invert", help="invert a spectrum into the top-8 FCs with uncertainties")
    p.add_argument("--model", required=True, help="checkpoint directory or shipped name (ge-vae, nb-vae)")
    p.add_argument("--spectrum", required=True, help="fcinv HDF5, pathSQE .npz, Mantid MDHisto .nxs, or .npy")
    p.add_argument("--n-samples", type=positive_int, default=100)
    add_temperature(p, None,
                    help="the spectrum is a measured one-phonon S(Q,E) at this sample temperature: weight each "
                        "energy bin by E/(n(E,T)+1) to match the training intensity (see analysis.expio.to_model_intensity)")
    p.add_argument("--clip", type=positive_float, default=None, metavar="PERCENTILE",
                   help="clip intensities above this percentile of the covered pixels (e.g. 99.5; Bragg tails, hot pixels)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.expio import read_spectrum, to_model_intensity
    from ..materials import get_material
    from ..models import Inverter

    inv = Inverter.load(args.model)
    grid = inv.grid or get_material(inv.config["material"]).grid  # the checkpoint's own grid when it carries one
    inv.check_grid(grid)
    spec = read_spectrum(args.spectrum, grid)
    image = spec.image
    if args.temperature is not None or args.clip is not None:
        image = to_model_intensity(image, grid, args.temperature, args.clip)
    pred = inv.predict(image, n_samples=args.n_samples, seed=args.seed, reconstruct=False)
    d = pred.to_dict(0) | {"coverage": spec.coverage}
    text = "\n".join(f"{n:<16} {m:+.4f} ± {s:.4f} eV/Å²" for n, m, s in zip(d["names"], d["fc_mean"], d["fc_std"]))
    emit(args, d, text)
    return 0
