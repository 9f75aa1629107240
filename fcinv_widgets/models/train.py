"""Training of the dual model: the VAE on clean spectra, then the FC regressor on the frozen
encoder's latent samples z = μ + σ·ε, fresh every epoch (targets standardised). Progress bars per epoch, best checkpoint by
validation loss, early stopping, resume, seeds, CPU threads set sensibly."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..errors import FcinvError


from ..metrics import r2_score as _r2  # noqa: E402  (the one R²: NaN for a constant target)


def load_split(dataset, split: str = "train", limit: int | None = None):
    """(spectra float32 (N, nq, nE), params (N, 8), info dict) of a dataset file's split."""
    from ..dataset import Dataset

    d = Dataset(dataset)
    try:
        spectra, params, n = d.split(split)
        n = n if limit is None else min(n, int(limit))
        if n == 0:
            raise FcinvError(f"{dataset}: the {split} split is empty")
        from ..validate import check_bytes, check_declared

        check_declared((n,) + tuple(spectra.shape[1:]), spectra.dtype, f"{dataset}:/{split}/spectra", ndim=3,
                       max_bytes=1 << 62)
        check_bytes(4.0 * n * int(np.prod(spectra.shape[1:])), f"reading {n} spectra of {dataset}")
        x = np.asarray(spectra[:n], dtype=np.float32)
        info = {"material": d.material, "names": d.names, "domain": d.domain.tolist(), "energies": d.energies.tolist(),
                "grid": None if d.grid is None else d.grid.to_dict(arrays=True), "reference": d.reference}
        return x, np.asarray(params[:n], float), info
    finally:
        d.close()


def _setup(threads, device, seed):
    import torch

    torch.set_num_threads(threads or min(4, os.cpu_count() or 1))
    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise FcinvError(f"--device {device}: no CUDA device is available to torch here; use cpu or auto")
        dev = torch.device(device)
    torch.manual_seed(seed)
    return dev


def _split(n: int, seed: int):
    """(validation indices, training indices): a seeded 10 % hold-out of the training split."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, n // 10)
    return perm[:n_val], perm[n_val:]


def _probe_r2(mu_tr, y_tr, mu_va, y_va, ridge: float = 1e-3):
    """Validation R² of a ridge-regularised linear map latent → FCs (a cheap per-epoch probe)."""
    A = np.c_[mu_tr, np.ones(len(mu_tr))]
    w = np.linalg.solve(A.T @ A + ridge * np.eye(A.shape[1]), A.T @ y_tr)
    return _r2(y_va, np.c_[mu_va, np.ones(len(mu_va))] @ w)


def _fit(net, opt, step, validate, it, epochs, batch_size, seed, state_path, patience, resume, progress, desc,
         sched=None, dev=None):
    """The epoch loop both models share.

    ``step(idx) -> loss`` trains on one mini-batch of training indices; ``validate() ->
    (val_loss, r2 array)``. Keeps the best weights by validation loss, stops after ``patience``
    epochs without improvement, and writes an atomic resume file after every epoch.
    Returns (best_state, history, seconds).
    """
    import torch
    from tqdm.auto import tqdm

    start, best, best_state, bad, history = 0, np.inf, None, 0, []
    if resume and state_path.is_file():
        try:
            st = torch.load(state_path, map_location=dev or "cpu", weights_only=True)
            net.load_state_dict(st["net"])
            opt.load_state_dict(st["opt"])
            if sched is not None and "sched" in st:
                sched.load_state_dict(st["sched"])
            best_state = st["best"]
            start, best, bad = int(st["epoch"]), float(st["best_loss"]), int(st["bad"])
            history = json.loads(st["history"])
        except Exception as exc:  # truncated file, another model's state, a foreign pickle
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise FcinvError(f"--resume: {state_path} is not a training state of this model "
                             f"({type(exc).__name__}: {first}); remove it to start afresh") from None
    # wall time accumulates over resumed runs (history's "seconds" is cumulative)
    t0 = time.perf_counter() - (float(history[-1]["seconds"]) if history else 0.0)
    bar = tqdm(range(start, epochs), desc=desc, unit="epoch", disable=not progress)
    for ep in bar:
        if bad >= patience:
            break
        net.train()
        g = torch.Generator().manual_seed(seed * 1000 + ep)
        order = torch.from_numpy(it)[torch.randperm(len(it), generator=g)]
        tot = 0.0
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            tot += float(step(idx)) * len(idx)
        net.eval()
        with torch.no_grad():
            vl, r2 = validate()
        rec = {"epoch": ep + 1, "train_loss": tot / len(it), "val_loss": float(vl), "val_r2": [float(v) for v in r2],
               "seconds": time.perf_counter() - t0}
        history.append(rec)
        bar.set_postfix(train=f"{rec['train_loss']:.3g}", val=f"{vl:.3g}", r2=" ".join(f"{v:.2f}" for v in r2))
        if vl < best:
            best, bad = float(vl), 0
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
        # atomic: a Ctrl-C while saving never leaves a half-written resume file
        tmp = state_path.with_suffix(".part")
        st = {"net": net.state_dict(), "opt": opt.state_dict(), "best": best_state, "epoch": ep + 1,
              "best_loss": best, "bad": bad, "history": json.dumps(history)}
        if sched is not None:
            st["sched"] = sched.state_dict()
        torch.save(st, tmp)
        tmp.replace(state_path)
    if best_state is None:
        raise FcinvError("training produced no checkpoint (no epoch ran); use more epochs or drop --resume")
    return best_state, history, time.perf_counter() - t0


def _base_config(kind: str, info: dict, shape, y_mean, y_std) -> dict:
    return {"format": f"fcinv-{kind}", "version": 1, "material": info["material"], "grid_shape": list(shape),
            "energy_centers_mev": info["energies"], "names": info["names"], "domain": info["domain"],
            "reference": info.get("reference", "umlff"), "y_mean": y_mean.tolist(), "y_std": y_std.tolist(),
            **({"grid": info["grid"]} if info.get("grid") else {})}


def train_vae(dataset, out, epochs: int = 30, batch_size: int = 64, lr: float = 1e-3, beta: float = 1.0, latent: int = 20,
              base: int = 8, hidden: int = 128, seed: int = 0, max_train: int | None = None, patience: int = 6,
              reg_epochs: int = 400, device: str = "auto", threads: int | None = None, resume: bool = False,
              progress: bool = True) -> dict:
    """Train VAE + regressor on ``dataset`` (fcinv HDF5); write ``out/model.pt``. Returns a summary.

    The per-epoch validation R² shown in the progress bar is that of a linear probe
    (ridge regression latent μ → FCs); the final regressor is a neural network on frozen μ.
    """
    import torch

    from .inverter import Inverter
    from .nets import VAE, vae_loss

    dev = _setup(threads, device, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    x, y, info = load_split(dataset, "train", max_train)
    iv, it = _split(len(x), seed)
    xt = torch.from_numpy(x)
    shape = x.shape[1:]
    vae = VAE(shape, latent=latent, base=base, hidden=hidden).to(dev)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)

    def encode_all(idx):
        return torch.cat([vae.encode(xt[idx[s : s + 256]].to(dev))[0].cpu() for s in range(0, len(idx), 256)]).numpy()

    def step(idx):
        xb = xt[idx].to(dev)
        rec, mu, logvar = vae(xb)
        loss, _, _ = vae_loss(rec, xb, mu, logvar, beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    def validate():
        vl = 0.0
        for s in range(0, len(iv), 256):
            xb = xt[iv[s : s + 256]].to(dev)
            mu, logvar = vae.encode(xb)
            vl += float(vae_loss(vae.decode(mu), xb, mu, logvar, beta)[0]) * len(xb)
        probe = it[: min(len(it), 3000)]
        return vl / len(iv), _probe_r2(encode_all(probe), y[probe], encode_all(iv), y[iv])

    best_state, history, vae_seconds = _fit(vae, opt, step, validate, it, epochs, batch_size, seed, out / "train_state.pt",
                                            patience, resume, progress, "VAE", dev=dev)
    vae.load_state_dict(best_state)
    vae = vae.cpu().eval()
    reg, y_mean, y_std, r2_val, reg_seconds = _fit_regressor(vae, xt, y, it, iv, latent, reg_epochs, seed, progress)
    cfg = _base_config("vae", info, shape, y_mean, y_std)
    cfg.update({"latent": latent, "base": base, "hidden": hidden, "reg_hidden": 128, "beta": beta,
                "training": {"dataset": str(dataset), "n_train": int(len(it)), "n_val": int(len(iv)), "epochs": len(history),
                             "vae_seconds": vae_seconds, "regressor_seconds": reg_seconds, "seed": seed,
                             "val_r2": r2_val.tolist(), "history": history, "device": str(dev),
                             "threads": torch.get_num_threads(), "regressor": "latent samples"}})
    Inverter(vae, reg, cfg).save(out / "model.pt")
    return {"out": str(out / "model.pt"), "val_r2": r2_val.tolist(), "names": info["names"], "epochs": len(history),
            "vae_seconds": vae_seconds, "regressor_seconds": reg_seconds, "seconds": vae_seconds + reg_seconds}


def _fit_regressor(vae, xt, y, it, iv, latent, reg_epochs, seed, progress, n_val_samples: int = 16):
    """The FC regressor on the frozen encoder, trained on latent *samples* z = μ + σ·ε (fresh ε
    every epoch), i.e. on what inference feeds it (100 samples per spectrum). Trained on μ
    alone, a regressor that leans on dimensions with large σ gives biased sample means.
    Validation: the mean over ``n_val_samples`` samples, as at inference."""
    import torch
    from tqdm.auto import tqdm

    from .nets import Regressor

    vae = vae.cpu().eval()
    with torch.no_grad():
        enc = [vae.encode(xt[s : s + 256]) for s in range(0, len(xt), 256)]
    mu = torch.cat([e[0] for e in enc])
    sd = torch.cat([torch.exp(0.5 * e[1]) for e in enc])
    y_mean, y_std = y[it].mean(0), y[it].std(0) + 1e-12
    yt = torch.as_tensor((y - y_mean) / y_std, dtype=torch.float32)
    reg = Regressor(latent, y.shape[1], hidden=128)
    ropt = torch.optim.Adam(reg.parameters(), lr=2e-3)
    gv = torch.Generator().manual_seed(seed + 991)
    zv = mu[iv][None] + sd[iv][None] * torch.randn((n_val_samples,) + mu[iv].shape, generator=gv)
    best_r, best_rstate = np.inf, None
    t1 = time.perf_counter()
    for ep in tqdm(range(reg_epochs), desc="regressor", unit="epoch", disable=not progress):
        reg.train()
        g = torch.Generator().manual_seed(seed * 7 + ep)
        order = torch.from_numpy(it)[torch.randperm(len(it), generator=g)]
        for s in range(0, len(order), 256):
            idx = order[s : s + 256]
            z = mu[idx] + sd[idx] * torch.randn(mu[idx].shape, generator=g)
            loss = ((reg(z) - yt[idx]) ** 2).mean()
            ropt.zero_grad()
            loss.backward()
            ropt.step()
        reg.eval()
        with torch.no_grad():
            vl = float(((reg(zv).mean(0) - yt[iv]) ** 2).mean())
        if vl < best_r:
            best_r, best_rstate = vl, {k: v.clone() for k, v in reg.state_dict().items()}
    reg.load_state_dict(best_rstate)
    reg_seconds = time.perf_counter() - t1
    with torch.no_grad():
        pv = reg(zv).mean(0).numpy() * y_std + y_mean
    return reg.eval(), y_mean, y_std, _r2(y[iv], pv), reg_seconds


def refit_regressor(model_dir, dataset, reg_epochs: int = 400, seed: int = 0, max_train: int | None = None,
                    threads: int | None = None, progress: bool = True) -> dict:
    """Retrain only the FC regressor of a trained VAE checkpoint (``model_dir/model.pt``) on the
    frozen encoder, with the same split as :func:`train_vae`; rewrites the checkpoint."""
    import torch

    from .inverter import Inverter, load_model

    _setup(threads, "cpu", seed)
    model_dir = Path(model_dir)
    inv = load_model(model_dir)
    if inv.kind != "vae":
        raise FcinvError(f"{model_dir} holds a {inv.kind} model: only a VAE has a separate regressor")
    x, y, info = load_split(dataset, "train", max_train)
    if info["material"].lower() != inv.material.lower():
        raise FcinvError(f"the model is for {inv.material}, the dataset for {info['material']}")
    iv, it = _split(len(x), seed)
    reg, y_mean, y_std, r2_val, reg_seconds = _fit_regressor(inv.vae, torch.from_numpy(x), y, it, iv,
                                                             inv.config["latent"], reg_epochs, seed, progress)
    cfg = dict(inv.config)
    cfg["y_mean"], cfg["y_std"] = [float(v) for v in y_mean], [float(v) for v in y_std]
    tr = dict(cfg.get("training") or {})
    tr.update({"regressor_seconds": reg_seconds, "val_r2": r2_val.tolist(), "regressor": "latent samples"})
    cfg["training"] = tr
    Inverter(inv.vae, reg, cfg).save(model_dir / "model.pt")
    return {"out": str(model_dir / "model.pt"), "val_r2": r2_val.tolist(), "names": inv.names, "epochs": reg_epochs,
            "seconds": reg_seconds}


def train_resnet(dataset, out, epochs: int = 30, batch_size: int = 64, lr: float = 2e-3, width: int = 16, seed: int = 0,
                 max_train: int | None = None, patience: int = 8, weight_decay: float = 1e-4, pretrained=None,
                 device: str = "auto", threads: int | None = None, resume: bool = False, progress: bool = True) -> dict:
    """Train a ResNet-18 regressing standardised FCs directly from spectra; write ``out/model.pt``.

    AdamW with a one-cycle learning-rate schedule over ``epochs``; MSE on standardised targets.
    ``pretrained``: a state-dict file (``torch.save(model.state_dict())``, e.g. torchvision's
    ImageNet ResNet-18 weights saved by the user) for transfer learning; it needs
    ``width=64`` to match all layers (see :meth:`ResNet18.load_pretrained`).
    """
    import torch

    from .inverter import ResNetModel
    from .nets import ResNet18

    dev = _setup(threads, device, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    x, y, info = load_split(dataset, "train", max_train)
    iv, it = _split(len(x), seed)
    xt = torch.from_numpy(x)
    shape = x.shape[1:]
    y_mean, y_std = y[it].mean(0), y[it].std(0) + 1e-12
    yt = torch.as_tensor((y - y_mean) / y_std, dtype=torch.float32)
    net = ResNet18(y.shape[1], width=width)
    transfer = None
    if pretrained is not None:
        try:
            sd = torch.load(pretrained, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise FcinvError(f"--pretrained {pretrained}: not a readable state-dict file ({type(exc).__name__}: {exc})") from None
        if isinstance(sd, dict) and "state_dict" in sd:
            sd = sd["state_dict"]
        transfer = net.load_pretrained(sd)
        if not transfer["loaded"]:
            raise FcinvError(f"--pretrained {pretrained}: no tensor matches a ResNet-18 of width {width} (use --width 64 for ImageNet weights)")
    net = net.to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(it) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.2)

    def step(idx):
        pred = net(xt[idx].to(dev))
        loss = ((pred - yt[idx].to(dev)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched.last_epoch + 1 < sched.total_steps:
            sched.step()
        return loss.detach()

    def validate():
        p = torch.cat([net(xt[iv[s : s + 256]].to(dev)).cpu() for s in range(0, len(iv), 256)])
        return float(((p - yt[iv]) ** 2).mean()), _r2(y[iv], p.numpy() * y_std + y_mean)

    best_state, history, seconds = _fit(net, opt, step, validate, it, epochs, batch_size, seed, out / "train_state.pt",
                                        patience, resume, progress, "ResNet-18", sched=sched, dev=dev)
    net.load_state_dict(best_state)
    net = net.cpu().eval()
    with torch.no_grad():
        pv = torch.cat([net(xt[iv[s : s + 256]]) for s in range(0, len(iv), 256)]).numpy() * y_std + y_mean
    r2_val = _r2(y[iv], pv)
    cfg = _base_config("resnet", info, shape, y_mean, y_std)
    cfg.update({"width": width, "training": {"dataset": str(dataset), "n_train": int(len(it)), "n_val": int(len(iv)),
                                             "epochs": len(history), "seconds": seconds, "seed": seed, "lr": lr,
                                             "batch_size": batch_size, "val_r2": r2_val.tolist(), "history": history,
                                             "device": str(dev), "threads": torch.get_num_threads(),
                                             "pretrained": None if pretrained is None else str(pretrained),
                                             "transfer": None if transfer is None else {k: len(v) for k, v in transfer.items()}}})
    ResNetModel(net, cfg).save(out / "model.pt")
    return {"out": str(out / "model.pt"), "val_r2": r2_val.tolist(), "names": info["names"], "epochs": len(history),
            "seconds": seconds}
