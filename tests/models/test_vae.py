"""The VAE + regressor: training lowers the loss, checkpoints round-trip safely, bad input is refused."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fcinv_widgets.errors import FcinvError, GridMismatchError  # noqa: E402
from fcinv_widgets.models import Inverter, train_vae  # noqa: E402
from fcinv_widgets.models.nets import VAE, vae_loss  # noqa: E402


def test_a_few_steps_lower_the_loss(tiny_dataset):
    from fcinv_widgets.models.train import load_split

    x, _, _ = load_split(tiny_dataset)
    torch.manual_seed(0)
    vae = VAE(x.shape[1:], base=4, hidden=32)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    xb = torch.from_numpy(x[:16])
    losses = []
    for _ in range(40):
        rec, mu, lv = vae(xb)
        loss = vae_loss(rec, xb, mu, lv, 1.0)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert min(losses[-5:]) < 0.8 * losses[0], losses


def test_save_load_round_trip_is_identical(trained, tiny_dataset):
    from fcinv_widgets.models.train import load_split

    out, r = trained
    assert len(r["val_r2"]) == 8
    x, _, _ = load_split(tiny_dataset, "test")
    a = Inverter.load(out)
    b = Inverter.load(out / "model.pt")
    pa, pb = a.predict(x, n_samples=20, seed=3), b.predict(x, n_samples=20, seed=3)
    assert np.array_equal(pa.mean, pb.mean) and np.array_equal(pa.std, pb.std) and np.array_equal(pa.recon, pb.recon)
    assert pa.mean.shape == (16, 8) and np.all(pa.std > 0)
    # the checkpoint is plain data: loads with weights_only=True
    ck = torch.load(out / "model.pt", weights_only=True)
    assert json.loads(ck["config"])["material"] == "Ge"


def test_corrupted_and_foreign_checkpoints(trained, tmp_path, nb):
    out, _ = trained
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(FcinvError, match="not a readable"):
        Inverter.load(bad)
    with pytest.raises(GridMismatchError, match="trained for Ge"):
        Inverter.load(out, material="Nb")
    with pytest.raises(GridMismatchError):
        Inverter.load(out, grid=nb.grid)
    with pytest.raises(FcinvError, match="no model"):
        Inverter.load(tmp_path / "nowhere")


def test_bad_spectra_and_nan_masking(trained, ge_fm):
    out, _ = trained
    inv = Inverter.load(out)
    img = ge_fm.spectra(ge_fm.reference_theta)[0].astype(float)
    with pytest.raises(GridMismatchError, match="140"):
        inv.predict(img[:, :100])
    with pytest.raises(FcinvError, match="inf"):
        inv.predict(np.where(img > 0.5, np.inf, img))
    with pytest.raises(FcinvError, match="all NaN"):
        inv.predict(np.full_like(img, np.nan))
    masked = img.copy()
    masked[:, 100:] = np.nan  # documented: NaN → 0 after min-max scaling
    same = img.copy()
    same[:, 100:] = 0.0
    assert np.allclose(inv.predict(masked, n_samples=5).mean, inv.predict(same, n_samples=5).mean)


def test_cli_train_evaluate_invert(tiny_dataset, tmp_path, capsys, ge):
    from fcinv_widgets.cli import main
    from fcinv_widgets.spectrum_io import write_spectrum

    out = tmp_path / "m"
    assert main(["train", "--dataset", str(tiny_dataset), "--out", str(out), "--epochs", "1", "--json"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--dataset", str(tiny_dataset), "--json", "--write-metrics"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["r2"]) == 8 and (out / "metrics.json").is_file()
    fm = ge.forward_model()
    write_spectrum(tmp_path / "s.h5", fm.spectra(fm.reference_theta)[0], ge.grid, material="Ge")
    assert main(["invert", "--model", str(out), "--spectrum", str(tmp_path / "s.h5"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) >= {"names", "fc_mean", "fc_std"} and len(d["fc_mean"]) == 8
    assert main(["invert", "--model", "nb-vae", "--spectrum", str(tmp_path / "s.h5")]) == 2


def test_cli_noise_grid(trained, tiny_dataset, tmp_path, capsys):
    from fcinv_widgets.analysis.noise_grid import NoiseGridResult
    from fcinv_widgets.cli import main

    out, _ = trained
    assert (
        main(
            [
                "noise-grid",
                "--model",
                str(out),
                "--dataset",
                str(tiny_dataset),
                "--out",
                str(tmp_path / "g.h5"),
                "--n-samples",
                "5",
                "--plot",
                str(tmp_path / "g.png"),
                "--json",
            ]
        )
        == 0
    )
    d = json.loads(capsys.readouterr().out)
    assert np.array(d["r2"]).shape == (5, 5, 8) and (tmp_path / "g.png").is_file()
    assert NoiseGridResult.load(tmp_path / "g.h5").examples.shape == (5, 5, 140, 140)


def test_latent_stats_ray_and_map(trained, tiny_dataset):
    from fcinv_widgets.analysis.latent import LatentMap, decode_ray, latent_stats
    from fcinv_widgets.models.train import load_split

    out, _ = trained
    inv = Inverter.load(out)
    x, y, _ = load_split(tiny_dataset, "train")
    mu, lv = inv.encode(x)
    s = latent_stats(mu, lv)
    assert s["mu_std"].shape == (20,) and 0 <= s["n_active"] <= 20
    z, imgs = decode_ray(inv, mu[0], mu[1], n=5)
    assert imgs.shape == (5, 140, 140) and np.allclose(z[0], mu[0]) and np.allclose(z[-1], mu[1])
    m = LatentMap.fit(mu, y, inv.names, n_neighbors=10)
    assert m.embedding.shape == (len(x), 2)
    p = m.place(mu[:3])
    assert p.shape == (3, 2) and np.all(np.isfinite(p))
    assert list(m.nearest(mu[:2])[:, 0]) == [0, 1]


def test_resume_continues_from_the_saved_epoch(tiny_dataset, tmp_path):
    out = tmp_path / "r"
    train_vae(tiny_dataset, out, epochs=1, batch_size=16, reg_epochs=2, progress=False, threads=2)
    st = torch.load(out / "train_state.pt", weights_only=True)
    assert int(st["epoch"]) == 1
    first = json.loads(st["history"])[-1]["seconds"]
    r = train_vae(tiny_dataset, out, epochs=2, batch_size=16, reg_epochs=2, progress=False, threads=2, resume=True)
    hist = json.loads(torch.load(out / "train_state.pt", weights_only=True)["history"])
    assert r["epochs"] == 2 and len(hist) == 2
    assert hist[1]["seconds"] > first and r["vae_seconds"] >= hist[1]["seconds"]  # wall time accumulates over runs


def test_regressor_only_retrains_on_latent_samples(trained, tiny_dataset, tmp_path):
    """--regressor-only keeps the encoder bit-for-bit, replaces the regressor, and refuses a ResNet."""
    import shutil

    import torch

    from fcinv_widgets.cli import main
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.train import load_split

    src, _ = trained
    d = tmp_path / "m"
    shutil.copytree(src, d)
    before = load_model(d)
    assert (
        main(
            [
                "train",
                "--dataset",
                str(tiny_dataset),
                "--out",
                str(d),
                "--regressor-only",
                "--reg-epochs",
                "3",
                "--threads",
                "2",
                "--json",
            ]
        )
        == 0
    )
    after = load_model(d)
    for k, v in before.vae.state_dict().items():
        assert torch.equal(v, after.vae.state_dict()[k])
    assert any(not torch.equal(v, after.regressor.state_dict()[k]) for k, v in before.regressor.state_dict().items())
    assert after.config["training"]["regressor"] == "latent samples"
    x, _, _ = load_split(tiny_dataset, "test")
    assert np.isfinite(after.predict(x[:2], n_samples=5).mean).all()
    assert main(["train", "--dataset", str(tiny_dataset), "--out", str(d), "--model", "resnet", "--regressor-only"]) == 2


def test_supervised_latent_keeps_more_of_the_fcs(tmp_path):
    """--supervise λ: the encoder trained with the auxiliary FC head holds more of the FCs in its
    latent means (a linear probe fitted on the training split, scored on the test split) than the
    same VAE, same seed, trained on reconstruction alone (measured: FC0/FC1 probe R² 0.26/0.57
    without, 0.70/0.79 with λ = 20); the checkpoint records λ and loads as any VAE."""
    from fcinv_widgets.dataset import generate_dataset
    from fcinv_widgets.models.train import _probe_r2, load_split

    data = tmp_path / "d.h5"
    generate_dataset("Ge", data, n_train=400, n_test=100, seed=1, candidates=512, progress=False)
    x, y, _ = load_split(data)
    xt, yt, _ = load_split(data, "test")
    kw = dict(
        epochs=6, batch_size=32, lr=3e-3, reg_epochs=2, progress=False, threads=2, base=4, hidden=32, patience=100, latent=8
    )
    probe = {}
    for lam in (0.0, 20.0):
        out = tmp_path / f"s{lam}"
        train_vae(data, out, supervise=lam, **kw)
        m = Inverter.load(out)
        assert m.config["training"]["supervise"] == lam
        with torch.no_grad():
            enc = [m.vae.encode(torch.from_numpy(a))[0].numpy() for a in (x, xt)]
        probe[lam] = _probe_r2(enc[0], y, enc[1], yt)[:2]
    assert probe[20.0].mean() > probe[0.0].mean() + 0.15, probe
    with pytest.raises(FcinvError, match="supervise"):
        train_vae(data, tmp_path / "bad", supervise=-1.0, **kw)


def test_a_local_folder_named_like_a_shipped_model_is_announced(trained, tiny_dataset, tmp_path, monkeypatch, capsys):
    """`--model ge-vae` in a folder holding ./ge-vae/ means the local one (as before), and says so:
    one warning line on stderr naming the local path; ./ge-vae is taken silently."""
    import shutil
    import warnings
    from pathlib import Path

    from fcinv_widgets.cli import main
    from fcinv_widgets.errors import FcinvWarning
    from fcinv_widgets.models.inverter import resolve_model

    out, _ = trained
    shutil.copytree(out, tmp_path / "ge-vae")
    monkeypatch.chdir(tmp_path)
    with pytest.warns(FcinvWarning, match="not the shipped model"):
        assert resolve_model("ge-vae") == Path("ge-vae") / "model.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_model("./ge-vae").is_file()
    capsys.readouterr()
    assert main(["evaluate", "--model", "ge-vae", "--dataset", str(tiny_dataset), "--max-test", "4", "--json"]) == 0
    io = capsys.readouterr()
    json.loads(io.out)
    lines = [ln for ln in io.err.splitlines() if "warning" in ln]
    assert len(lines) == 1 and lines[0].startswith("fcinv evaluate: warning: 'ge-vae' is the local"), io.err
    assert str(tmp_path / "ge-vae") in lines[0]


def test_a_spectrums_answer_does_not_depend_on_its_batch(trained, tiny_dataset):
    """The same latent draws serve every spectrum: a spectrum alone, first of a batch, or late in
    the second batch gets the same mean and σ (the planner compares candidates by these)."""
    from fcinv_widgets.models.train import load_split

    out, _ = trained
    m = Inverter.load(out)
    x, _, _ = load_split(tiny_dataset, "test")
    alone = m.predict(x[5:6], n_samples=30, seed=4, reconstruct=False)
    for batch in (16, 3):
        p = m.predict(x, n_samples=30, seed=4, batch=batch, reconstruct=False, progress=True)
        np.testing.assert_allclose(p.mean[5], alone.mean[0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(p.std[5], alone.std[0], rtol=1e-5, atol=1e-7)
    other = m.predict(x[5:6], n_samples=30, seed=5, reconstruct=False)
    assert not np.allclose(other.mean, alone.mean)
