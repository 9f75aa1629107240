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
    d = json.loads(capsys.readouterr().out)
    assert d["n"] == 16 and (out / "umap_reducer.joblib").is_file() and (tmp_path / "map.png").is_file()
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
