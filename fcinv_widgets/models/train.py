"""Training of the dual model: the VAE on clean spectra, then the FC regressor on the frozen
encoder's latent means (targets standardised). Progress bars per epoch, best checkpoint by
validation loss, early stopping, resume, seeds, CPU threads set sensibly."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..errors import FcinvError


def _r2(y, p):
    return 1 - ((y - p) ** 2).sum(0) / np.maximum(((y - y.mean(0)) ** 2).sum(0), 1e-300)


def load_split(dataset, split: str = "train", limit: int | None = None):
    """(spectra float32 (N, nq, nE), params (N, 8), info dict) of a dataset file's split."""
    from ..dataset import Dataset

    d = Dataset(dataset)
    try:
        spectra, params, n = d.split(split)
        n = n if limit is None else min(n, int(limit))
        if n == 0:
            raise FcinvError(f"{dataset}: the {split} split is empty")
        x = np.asarray(spectra[:n], dtype=np.float32)
        info = {"material": d.material, "names": d.names, "domain": d.domain.tolist(), "energies": d.energies.tolist()}
        return x, np.asarray(params[:n], float), info
    finally:
        d.close()


def train_vae(dataset, out, epochs: int = 30, batch_size: int = 64, lr: float = 1e-3, beta: float = 1.0, latent: int = 20,
              base: int = 8, hidden: int = 128, seed: int = 0, max_train: int | None = None, patience: int = 6,
              reg_epochs: int = 400, device: str = "auto", threads: int | None = None, resume: bool = False,
              progress: bool = True) -> dict:
    """Train VAE + regressor on ``dataset`` (fcinv HDF5); write ``out/model.pt``. Returns a summary."""
    import torch
    from tqdm.auto import tqdm

    from .inverter import Inverter
    from .nets import VAE, Regressor, vae_loss

    torch.set_num_threads(threads or min(4, os.cpu_count() or 1))
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    x, y, info = load_split(dataset, "train", max_train)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x))
    n_val = max(1, len(x) // 10)
    iv, it = perm[:n_val], perm[n_val:]
    xt = torch.from_numpy(x)
    shape = x.shape[1:]
    vae = VAE(shape, latent=latent, base=base, hidden=hidden).to(dev)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    state_path = out / "train_state.pt"
    start, best, best_state, bad, history = 0, np.inf, None, 0, []
    if resume and state_path.is_file():
        st = torch.load(state_path, map_location=dev, weights_only=True)
        vae.load_state_dict(st["vae"])
        opt.load_state_dict(st["opt"])
        best_state = st["best"]
        start, best, bad = int(st["epoch"]), float(st["best_loss"]), int(st["bad"])
        history = json.loads(st["history"])
    t0 = time.perf_counter()
    bar = tqdm(range(start, epochs), desc="VAE", unit="epoch", disable=not progress)
    for ep in bar:
        vae.train()
        g = torch.Generator().manual_seed(seed * 1000 + ep)
        order = torch.from_numpy(it)[torch.randperm(len(it), generator=g)]
        tot = 0.0
        for s in range(0, len(order), batch_size):
            xb = xt[order[s : s + batch_size]].to(dev)
            rec, mu, logvar = vae(xb)
            loss, _, _ = vae_loss(rec, xb, mu, logvar, beta)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(xb)
        vae.eval()
        with torch.no_grad():
            vl = 0.0
            for s in range(0, n_val, 256):
                xb = xt[iv[s : s + 256]].to(dev)
                mu, logvar = vae.encode(xb)
                vl += float(vae_loss(vae.decode(mu), xb, mu, logvar, beta)[0]) * len(xb)
            vl /= n_val
        history.append({"epoch": ep + 1, "train_loss": tot / len(it), "val_loss": vl})
        bar.set_postfix(train=f"{tot / len(it):.1f}", val=f"{vl:.1f}")
        if vl < best:
            best, bad = vl, 0
            best_state = {k: v.detach().cpu().clone() for k, v in vae.state_dict().items()}
        else:
            bad += 1
        # atomic: a Ctrl-C while saving never leaves a half-written resume file
        tmp = state_path.with_suffix(".part")
        torch.save({"vae": vae.state_dict(), "opt": opt.state_dict(), "best": best_state, "epoch": ep + 1,
                    "best_loss": best, "bad": bad, "history": json.dumps(history)}, tmp)
        tmp.replace(state_path)
        if bad >= patience:
            break
    vae_seconds = time.perf_counter() - t0
    vae.load_state_dict(best_state)
    vae = vae.cpu().eval()
    # ---------------------------------------------------------------- regressor on latent means
    with torch.no_grad():
        mu = torch.cat([vae.encode(xt[s : s + 256])[0] for s in range(0, len(x), 256)])
    y_mean, y_std = y[it].mean(0), y[it].std(0) + 1e-12
    yt = torch.as_tensor((y - y_mean) / y_std, dtype=torch.float32)
    reg = Regressor(latent, y.shape[1], hidden=128)
    ropt = torch.optim.Adam(reg.parameters(), lr=2e-3)
    best_r, best_rstate = np.inf, None
    t1 = time.perf_counter()
    for ep in tqdm(range(reg_epochs), desc="regressor", unit="epoch", disable=not progress):
        reg.train()
        g = torch.Generator().manual_seed(seed * 7 + ep)
        order = torch.from_numpy(it)[torch.randperm(len(it), generator=g)]
        for s in range(0, len(order), 256):
            idx = order[s : s + 256]
            loss = ((reg(mu[idx]) - yt[idx]) ** 2).mean()
            ropt.zero_grad()
            loss.backward()
            ropt.step()
        reg.eval()
        with torch.no_grad():
            vl = float(((reg(mu[iv]) - yt[iv]) ** 2).mean())
        if vl < best_r:
            best_r, best_rstate = vl, {k: v.clone() for k, v in reg.state_dict().items()}
    reg.load_state_dict(best_rstate)
    reg_seconds = time.perf_counter() - t1
    with torch.no_grad():
        pv = reg(mu[iv]).numpy() * y_std + y_mean
    r2_val = _r2(y[iv], pv)
    cfg = {"format": "fcinv-vae", "version": 1, "material": info["material"], "grid_shape": list(shape),
           "energy_centers_mev": info["energies"], "names": info["names"], "domain": info["domain"],
           "y_mean": y_mean.tolist(), "y_std": y_std.tolist(), "latent": latent, "base": base, "hidden": hidden,
           "reg_hidden": 128, "beta": beta,
           "training": {"dataset": str(dataset), "n_train": int(len(it)), "n_val": int(n_val), "epochs": len(history),
                        "vae_seconds": vae_seconds, "regressor_seconds": reg_seconds, "seed": seed,
                        "val_r2": r2_val.tolist(), "history": history, "device": str(dev), "threads": torch.get_num_threads()}}
    Inverter(vae, reg, cfg).save(out / "model.pt")
    return {"out": str(out / "model.pt"), "val_r2": r2_val.tolist(), "names": info["names"], "epochs": len(history),
            "vae_seconds": vae_seconds, "regressor_seconds": reg_seconds}
