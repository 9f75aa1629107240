"""Latent maps saved next to a model: safe arrays, trusted reducer only, kNN fallback, CLI."""

import json

import numpy as np
import pytest

pytest.importorskip("umap")

from fcinv_widgets.analysis.latent import LatentMap  # noqa: E402
from fcinv_widgets.errors import FcinvError  # noqa: E402


def test_cli_latent_writes_a_reusable_map(trained, tiny_dataset, tmp_path, capsys):
    from fcinv_widgets.cli import main
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.train import load_split

    model_dir, _ = trained
    out = tmp_path / "lm"
    assert (
        main(
            [
                "latent",
                "--model",
                str(model_dir),
                "--dataset",
                str(tiny_dataset),
                "--out",
                str(out),
                "--neighbors",
                "5",
                "--plot",
                str(tmp_path / "map.png"),
                "--json",
            ]
        )
        == 0
    )
    io = capsys.readouterr()
    d = json.loads(io.out)  # the stage bar goes to stderr, stdout stays JSON
    assert d["n"] == 16 and (out / "umap_reducer.joblib").is_file() and (tmp_path / "map.png").is_file()
    assert "latent map" in io.err
    args = ["latent", "--model", str(model_dir), "--dataset", str(tiny_dataset), "--out", str(tmp_path / "q")]
    assert main([*args, "--neighbors", "5", "--no-progress", "--json"]) == 0
    assert "latent map" not in capsys.readouterr().err
    st = json.loads((out / "latent_stats.json").read_text())
    assert len(st["mu_std"]) == 20 and isinstance(st["n_active"], int)

    x, _, _ = load_split(tiny_dataset, "test")
    mu, _ = load_model(model_dir).encode(x[:3])
    untrusted = LatentMap.load(out)  # a user folder: the pickle is not read by default
    assert untrusted.reducer is None and untrusted.embedding.shape == (16, 2)
    near = untrusted.place(mu)  # kNN fallback: each point lands next to its own map position
    d = np.linalg.norm(near[:, None] - untrusted.embedding[None], axis=-1)
    assert (d.argmin(1) == np.arange(3)).all()
    trusted = LatentMap.load(out, trust_reducer=True)
    assert trusted.reducer is not None and trusted.place(mu).shape == (3, 2)
    # the map is its model's latent space (session 51: another 20-dim VAE's latents were placed without a word)
    from fcinv_widgets.widgets import LatentPicker

    assert untrusted.model_sha256 is not None
    LatentPicker(untrusted, load_model(model_dir))
    with pytest.raises(FcinvError, match="another model's latent space"):
        LatentPicker(untrusted, load_model("ge-vae"))
    with pytest.raises(FcinvError, match="another model's latent space"):
        LatentPicker(LatentMap.load("ge-vae-paper"), load_model("ge-vae"))
    LatentPicker(LatentMap.load("ge-vae"), load_model("ge-vae"))
    with pytest.raises(FcinvError, match="latent vectors of length"):
        trusted.place(np.zeros((1, 7)))


def test_latent_refuses_a_resnet_and_missing_maps(tmp_path, tiny_dataset):
    from fcinv_widgets.cli import main

    with pytest.raises(FcinvError, match="no latent map"):
        LatentMap.load(tmp_path / "nothing")
    (tmp_path / "latent_map.npz").write_bytes(b"junk")
    with pytest.raises(FcinvError, match="not a readable latent map"):
        LatentMap.load(tmp_path)
    assert main(["latent", "--model", "ge-resnet", "--dataset", str(tiny_dataset), "--out", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize("name", ["ge-vae", "nb-vae"])
def test_shipped_robust_maps_belong_to_their_models(name, tmp_path):
    """The robust VAEs' shipped maps are the UMAP of their own test distribution (`fcinv dataset
    --nuisance 1.5`, seed 0, test split; regenerated here): the model encodes those spectra to the
    stored latent means, and the shipped reducer places them next to their stored map positions."""
    from fcinv_widgets.dataset import generate_dataset
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.train import load_split

    model = load_model(name)
    lmap = LatentMap.load(name)
    assert lmap.reducer is not None and len(lmap.mu) == 1500
    path = tmp_path / "d.h5"
    generate_dataset(name.split("-")[0].capitalize(), path, n_train=0, n_test=1500, nuisance=1.5, seed=0, progress=False)
    x, y, _ = load_split(path, "test")
    idx = np.linspace(0, 1499, 16).astype(int)
    assert np.allclose(y[idx], lmap.params[idx])
    mu, _ = model.encode(x[idx])
    assert np.allclose(mu, lmap.mu[idx], atol=1e-4)
    placed = lmap.place(mu)
    spread = np.median(np.linalg.norm(lmap.embedding[idx][:, None] - lmap.embedding[None], axis=-1))
    assert np.median(np.linalg.norm(placed - lmap.embedding[idx], axis=1)) < 0.1 * spread


def test_shipped_model_files_stay_within_40_mb():
    """Everything shipped beside the models (weights, metrics, OOD statistics, latent maps) ≤ 40 MB together."""
    from fcinv_widgets.materials import data_path

    root = data_path("models")
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert 0 < total <= 40e6, total / 1e6
