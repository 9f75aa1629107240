"""The ResNet-18 baseline: topology, transfer learning, training lowers the loss, safe round trip."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fcinv_widgets.errors import FcinvError, GridMismatchError  # noqa: E402
from fcinv_widgets.models import Inverter, ResNetModel, load_model, train_resnet  # noqa: E402
from fcinv_widgets.models.nets import ResNet18  # noqa: E402


@pytest.fixture(scope="module")
def trained_resnet(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("resnet")
    r = train_resnet(tiny_dataset, out, epochs=2, batch_size=16, width=8, progress=False, threads=2)
    return out, r


def test_topology_is_resnet18():
    net = ResNet18(8, width=64)
    n = sum(p.numel() for p in net.parameters())
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]
    assert len(convs) == 17  # stem + 8 blocks × 2 (+ the linear head = 18 weighted layers)
    assert 11.0e6 < n < 11.3e6  # torchvision's resnet18 has 11.69 M with 3 channels and 1000 classes
    y = net(torch.rand(2, 140, 140))
    assert y.shape == (2, 8)


def test_load_pretrained_rgb_weights():
    """A torchvision-style ImageNet state dict: RGB stem summed to one channel, 1000-class head skipped."""
    src = ResNet18(1000, width=64, in_channels=3)
    net = ResNet18(8, width=64)
    info = net.load_pretrained(src.state_dict())
    assert "fc.weight" in info["skipped"] and "conv1.weight" in info["loaded"]
    assert torch.allclose(net.conv1.weight, src.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(net.layer3[1].conv2.weight, src.layer3[1].conv2.weight)


def test_a_few_steps_lower_the_loss(tiny_dataset):
    from fcinv_widgets.models.train import load_split

    x, y, _ = load_split(tiny_dataset)
    torch.manual_seed(0)
    net = ResNet18(8, width=8)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xb = torch.from_numpy(x[:32])
    yb = torch.as_tensor((y[:32] - y[:32].mean(0)) / y[:32].std(0), dtype=torch.float32)
    losses = []
    for _ in range(30):
        loss = ((net(xb) - yb) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert min(losses[-5:]) < 0.5 * losses[0], losses


def test_round_trip_and_dispatch(trained_resnet, tiny_dataset):
    from fcinv_widgets.models.train import load_split

    out, r = trained_resnet
    x, _, _ = load_split(tiny_dataset, "test")
    a = load_model(out)
    b = Inverter.load(out / "model.pt")  # Inverter.load dispatches on the checkpoint's format
    assert isinstance(a, ResNetModel) and isinstance(b, ResNetModel) and a.kind == "resnet"
    pa, pb = a.predict(x), b.predict(x)
    np.testing.assert_array_equal(pa.mean, pb.mean)
    assert pa.mean.shape == (16, 8) and np.all(pa.std == 0)
    cfg = json.loads(torch.load(out / "model.pt", weights_only=True)["config"])
    assert cfg["format"] == "fcinv-resnet" and cfg["width"] == 8 and len(cfg["training"]["history"]) == 2


def test_foreign_and_bad_inputs(trained_resnet, nb):
    out, _ = trained_resnet
    with pytest.raises(GridMismatchError, match="trained for Ge"):
        load_model(out, material="Nb")
    m = load_model(out)
    with pytest.raises(GridMismatchError, match="140"):
        m.predict(np.zeros((160, 120)))
    bad = np.full((140, 140), np.nan)
    with pytest.raises(FcinvError, match="all NaN"):
        m.predict(bad)


def test_cli_train_resnet_evaluate_invert(tiny_dataset, tmp_path, capsys, ge):
    from fcinv_widgets.cli import main
    from fcinv_widgets.spectrum_io import write_spectrum

    out = tmp_path / "rn"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(tiny_dataset),
                "--model",
                "resnet",
                "--width",
                "8",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    d = json.loads(capsys.readouterr().out)
    assert len(d["val_r2"]) == 8
    # 64 training spectra: a hold-out of 6 says little about R², and the result says so (session 25)
    assert d["n_val"] == 6 and "the hold-out has 6 spectra" in d["val_note"] and "fcinv evaluate" in d["val_note"]
    assert main(["evaluate", "--model", str(out), "--dataset", str(tiny_dataset), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["r2"]) == 8 and np.isfinite(d["mae"]).all()
    fm = ge.forward_model()
    write_spectrum(tmp_path / "s.h5", fm.spectra(fm.reference_theta)[0], ge.grid, material="Ge")
    assert main(["invert", "--model", str(out), "--spectrum", str(tmp_path / "s.h5"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["fc_std"] == [0.0] * 8
    # transfer learning from a file that matches nothing is refused clearly
    torch.save({"foo": torch.zeros(3)}, tmp_path / "w.pt")
    assert (
        main(
            [
                "train",
                "--dataset",
                str(tiny_dataset),
                "--model",
                "resnet",
                "--epochs",
                "1",
                "--pretrained",
                str(tmp_path / "w.pt"),
                "--out",
                str(tmp_path / "rn2"),
            ]
        )
        == 2
    )
    assert "no tensor matches" in capsys.readouterr().err


def test_cli_noise_grid_takes_a_resnet(trained_resnet, tiny_dataset, tmp_path, capsys):
    from fcinv_widgets.analysis.noise_grid import NoiseGridResult
    from fcinv_widgets.cli import main

    folder, _ = trained_resnet
    assert (
        main(
            [
                "noise-grid",
                "--model",
                str(folder),
                "--dataset",
                str(tiny_dataset),
                "--out",
                str(tmp_path / "g.h5"),
                "--max-test",
                "8",
                "--json",
            ]
        )
        == 0
    )
    d = json.loads(capsys.readouterr().out)
    assert np.array(d["r2"]).shape == (5, 5, 8) and np.isfinite(d["r2"]).all()
    assert NoiseGridResult.load(tmp_path / "g.h5").meta["n"] == 8
