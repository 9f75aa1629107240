"""The measurement model (training augmentation): reproducible from its seed, physically the
effects it claims (ARCS resolution width, Poisson statistics, coverage), and useful: a model
trained a few steps on augmented spectra beats the same model trained on clean ones on a
noisy test batch. Calibration metrics (coverage) are checked against a known Gaussian."""

import json
import math

import numpy as np
import pytest

from fcinv_widgets.errors import FcinvError
from fcinv_widgets.measurement import MeasurementModel, load_bank, save_bank

E = np.arange(140) * 0.5 + 0.25  # the Ge energy grid (meV bin centres)


def _images(n=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 140, 140)).astype(np.float32) ** 8
    x /= x.reshape(n, -1).max(1)[:, None, None]
    return x


def test_augmentation_reproducible_from_seed():
    x = _images()
    aug = MeasurementModel(p_clean=0.0).sampler(E, seed=3)
    a = aug.apply(x, np.arange(6), epoch=2)
    b = aug.apply(x[::-1], np.arange(6)[::-1], epoch=2)[::-1]  # another batch order: same rows
    assert np.array_equal(a, b)
    assert np.array_equal(a[4], MeasurementModel(p_clean=0.0).sampler(E, seed=3).one(x[4], 2, 4))
    assert not np.allclose(a, aug.apply(x, np.arange(6), epoch=3))  # a new epoch, new draws
    assert not np.allclose(a, MeasurementModel(p_clean=0.0).sampler(E, seed=4).apply(x, np.arange(6), 2))
    assert a.dtype == np.float32 and a.min() == 0.0 and np.allclose(a.reshape(6, -1).max(1), 1.0)


def test_clean_passes_unchanged_and_bad_settings_refused():
    x = _images(2)
    assert np.array_equal(MeasurementModel(p_clean=1.0).sampler(E).apply(x, [0, 1], 0), x)
    with pytest.raises(FcinvError, match="probability"):
        MeasurementModel(p_mask=1.5)
    with pytest.raises(FcinvError, match="Ei must exceed"):
        MeasurementModel(ei_factor=(0.5, 2.0))
    with pytest.raises(FcinvError, match="≥ 0"):
        MeasurementModel().sampler(E).rng(-1, 0)


def test_resolution_kernel_gives_the_arcs_width():
    """A σ = 1 meV Gaussian (the dataset's) re-broadened at Ei has the ARCS σ(E; Ei) of broadening.py."""
    from fcinv_widgets.broadening import sigma_arcs

    aug = MeasurementModel(n_ei_kernels=3).sampler(E)
    for k, ei in enumerate(aug.eis):
        for e0 in (10.0, 20.0, 30.0, 55.0):
            want = float(sigma_arcs(np.array([e0]), ei)[0])
            if e0 < 3 * want:  # the kernel is cut at E = 0
                continue
            g = np.exp(-0.5 * ((E - e0) / 1.0) ** 2)
            out = g @ aug.kernels_t[k]
            mean = (out * E).sum() / out.sum()
            width = math.sqrt((out * (E - mean) ** 2).sum() / out.sum())
            assert mean == pytest.approx(e0, abs=0.1)
            assert width == pytest.approx(want, rel=0.02), (ei, e0)


def test_counting_noise_is_poisson():
    """Flat image, background B, P counts at the peak: N/P has mean I + B and variance (I + B)/P."""
    m = MeasurementModel(
        p_clean=0,
        p_resolution=0,
        weight_q=0,
        weight_e=0,
        p_elastic=0,
        background=(0.2, 0.2),
        slope=(0, 0),
        counts=(50.0, 50.0),
        p_noiseless=0,
        p_mask=0,
    )
    img = np.full((140, 140), 0.5, np.float32)
    img[0, 0] = 1.0  # the peak
    x, info = m.sampler(E).one(img, 0, 0, return_info=True, scale=False)
    assert info["counts"] == pytest.approx(50.0) and info["background"] == pytest.approx(0.2)
    v = x.ravel()[1:]
    assert v.mean() == pytest.approx(0.7, abs=0.003)
    assert v.var() == pytest.approx(0.7 / 50, rel=0.05)
    assert np.allclose(v * 50, np.round(v * 50), atol=1e-4)  # integer counts


def test_coverage_masks_zero_uncovered_pixels(tmp_path):
    rng = np.random.default_rng(0)
    masks = rng.random((5, 140, 140)) > 0.3
    save_bank(tmp_path / "b.npz", masks, {"material": "Ge"})
    back, meta = load_bank(tmp_path / "b.npz")
    assert np.array_equal(back, masks) and meta["material"] == "Ge"
    aug = MeasurementModel(p_clean=0, p_mask=1.0, p_single=1.0).sampler(E, masks=back)
    x = _images(4)
    for i in range(4):
        y, info = aug.one(x[i], 0, i, return_info=True)
        assert info["scans"] == 1
        assert any(np.all(y[~m] == 0) for m in masks)
    with pytest.raises(FcinvError, match="coverage-bank"):
        (tmp_path / "bad.npz").write_bytes(b"not a bank")
        load_bank(tmp_path / "bad.npz")


def test_coverage_metrics_on_a_known_gaussian():
    from fcinv_widgets.analysis.evaluation import coverage, reliability
    from fcinv_widgets.models.train import sigma_scale

    rng = np.random.default_rng(0)
    y = rng.normal(size=(20000, 2))
    mean = np.zeros_like(y)
    std = np.ones_like(y)
    assert coverage(y, mean, std, 1) == pytest.approx([0.6827] * 2, abs=0.01)
    assert coverage(y, mean, std, 2) == pytest.approx([0.9545] * 2, abs=0.005)
    assert reliability(y, mean, std)[-1] == pytest.approx([0.99] * 2, abs=0.005)
    assert np.all(coverage(y, mean, np.zeros_like(y), 1) == 0)
    s = sigma_scale(y, mean, 0.5 * std)  # σ too small by 2: the scale restores it
    assert s == pytest.approx([2.0, 2.0], rel=0.03)


def test_augmented_training_beats_clean_on_noisy_spectra(tiny_dataset, tmp_path):
    """Same start (the shipped paper ResNet), seed and steps (one epoch of 58 spectra, 4 steps):
    fine-tuned on augmented spectra it predicts a noisy test batch (the noise grid's model:
    background B = 0.2, P = 30 counts, analysis.noise, independent of the measurement module)
    better than fine-tuned on the same spectra clean."""
    from fcinv_widgets.analysis.noise import add_noise
    from fcinv_widgets.models import load_model, train_resnet
    from fcinv_widgets.models.train import load_split

    x, y, _ = load_split(tiny_dataset, "test")
    noisy, _ = add_noise(x, 0.2, 30, seed=5)
    err = {}
    for name, aug in (("clean", None), ("augmented", MeasurementModel(p_mask=0.0))):
        out = tmp_path / name
        train_resnet(
            tiny_dataset,
            out,
            epochs=1,
            batch_size=16,
            lr=1e-3,
            progress=False,
            threads=2,
            augment=aug,
            init_from="ge-resnet-paper",
        )
        m = load_model(out)
        p = m.predict(noisy)
        err[name] = float((((p.mean - y) / m.y_std) ** 2).mean())
        if aug is not None:  # a heteroscedastic head with a fitted scale: a real σ, never 0
            assert m.heteroscedastic and np.all(p.std > 0) and len(m.sigma_scale) == 8
    assert err["augmented"] < 0.5 * err["clean"], err


def test_augmented_vae_cli_reports_coverage_and_reliability(tiny_dataset, tmp_path, capsys):
    """fcinv train --augment (VAE) → a heteroscedastic checkpoint; fcinv evaluate reports ±1σ/±2σ
    coverage per FC on the clean and on an augmented test set and writes the reliability plot."""
    import json

    from fcinv_widgets.cli import main
    from fcinv_widgets.models import load_model

    out = tmp_path / "vae"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(tiny_dataset),
                "--out",
                str(out),
                "--augment",
                "--no-masks",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--reg-epochs",
                "2",
                "--threads",
                "2",
                "--json",
            ]
        )
        == 0
    )
    r = json.loads(capsys.readouterr().out)
    assert r["augmented"] and len(r["sigma_scale"]) == 8 and all(s > 0 for s in r["sigma_scale"])
    m = load_model(out)
    assert m.heteroscedastic and m.config["augment"]["p_mask"] == MeasurementModel().p_mask
    # this hold-out is too small for a σ calibration per kind of input (< 100 draws each): pooled only
    assert m.sigma_regimes() == () and len(m.config["training"]["val_r2"]) == 8
    for extra in ([], ["--augment", "--seed", "3"]):
        png = tmp_path / f"rel{len(extra)}.png"
        assert (
            main(
                [
                    "evaluate",
                    "--model",
                    str(out),
                    "--dataset",
                    str(tiny_dataset),
                    "--n-samples",
                    "8",
                    "--reliability",
                    str(png),
                    "--json",
                    *extra,
                ]
            )
            == 0
        )
        d = json.loads(capsys.readouterr().out)
        assert len(d["coverage_1sigma"]) == 8 and all(0 <= c <= 1 for c in d["coverage_2sigma"])
        assert all(a <= b for a, b in zip(d["coverage_1sigma"], d["coverage_2sigma"]))
        assert png.stat().st_size > 10_000
        assert d["sigma_regime"] is None  # the pooled calibration (none per kind of input, above)
    assert "augmented" in d["test_set"]
    assert main(["evaluate", "--model", str(out), "--dataset", str(tiny_dataset), "--augment", "--write-metrics"]) == 2
    # every test draw one single scan of a bank (session 20): the record says so
    from fcinv_widgets.models.train import load_split

    nq, ne = load_split(tiny_dataset, "test", 1)[0].shape[1:]
    bank = tmp_path / "bank.npz"
    masks = np.zeros((3, nq, ne), bool)
    for i in range(3):
        masks[i, i * nq // 3 : (i + 1) * nq // 3] = True
    save_bank(bank, masks, {"material": "Ge", "n": 3})
    capsys.readouterr()
    base = ["evaluate", "--model", str(out), "--dataset", str(tiny_dataset), "--n-samples", "4", "--json"]
    assert main([*base, "--augment", "--mask-bank", str(bank), "--single-scans"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert "every spectrum a single scan" in d["test_set"] and d["evaluated_with"].endswith("--single-scans")
    for bad, words in ((["--single-scans"], "--augment"), (["--augment", "--single-scans"], "--mask-bank")):
        assert main([*base, *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert main(["train", "--dataset", str(tiny_dataset), "--out", str(tmp_path / "x"), "--no-masks"]) == 2
    assert "--augment" in capsys.readouterr().err


def test_paper_models_load_and_robust_names_resolve():
    from fcinv_widgets.models import load_model, resolve_model

    for name in ("ge-vae-paper", "ge-resnet-paper", "nb-vae-paper", "nb-resnet-paper"):
        m = load_model(name)
        assert not m.heteroscedastic and np.all(m.sigma_scale == 1)
    for name in ("ge-vae", "ge-resnet", "nb-vae", "nb-resnet"):  # shipped robust model, or its -paper fallback
        assert resolve_model(name).is_file()


@pytest.mark.parametrize("kind", ["resnet", "vae"])
def test_loader_workers_give_the_same_model(tiny_dataset, tmp_path, kind):
    """--loader-workers: torch DataLoader workers render the augmented batches ahead of the step
    (on a GPU the CPU-side measurement model was the bottleneck: 35 s of a 3 s ResNet epoch on an
    H200, session 26). Every row depends only on (seed, epoch, sample), so the trained weights —
    the VAE's regressor too, fitted on augmented copies — are the same bits with 0 or 2 workers."""
    import json

    import torch

    from fcinv_widgets.models import train_resnet, train_vae

    states = {}
    for w in (0, 2):
        out = tmp_path / f"{kind}{w}"
        kw = dict(epochs=2, batch_size=16, progress=False, threads=1, augment=MeasurementModel(), loader_workers=w)
        if kind == "vae":
            r = train_vae(tiny_dataset, out, reg_epochs=2, **kw)
        else:
            r = train_resnet(tiny_dataset, out, **kw)
        assert r["epochs"] == 2
        ck = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
        assert json.loads(ck["config"])["training"]["loader_workers"] == w
        states[w] = {f"{part}.{k}": v for part in ("net", "vae", "regressor") for k, v in (ck.get(part) or {}).items()}
    assert states[0] and states[0].keys() == states[2].keys()
    for k in states[0]:
        assert torch.equal(states[0][k], states[2][k]), k


def test_loader_workers_need_augment(tiny_dataset, tmp_path, capsys):
    from fcinv_widgets.cli import main

    base = ["train", "--dataset", str(tiny_dataset), "--out", str(tmp_path / "m"), "--epochs", "1"]
    assert main(base + ["--loader-workers", "2"]) == 2
    assert "--loader-workers applies with --augment only" in capsys.readouterr().err
    assert main(base + ["--augment", "--loader-workers", "-1"]) == 2


def test_loader_workers_refuse_a_small_shared_memory(tiny_dataset, tmp_path, monkeypatch):
    """Workers pass batches through /dev/shm; a container's default 64 MB would kill them mid-epoch
    (a bus error). The need is checked first and refused in one line."""
    from fcinv_widgets.models import train_resnet
    from fcinv_widgets.models import train as tr

    monkeypatch.setattr(tr, "_shm_free_bytes", lambda: 1_000_000)  # 1 MB: less than one batch in flight
    with pytest.raises(FcinvError, match=r"needs ~\d+ MB of shared memory"):
        train_resnet(
            tiny_dataset,
            tmp_path / "m",
            epochs=1,
            batch_size=16,
            progress=False,
            threads=1,
            augment=MeasurementModel(),
            loader_workers=2,
        )


def test_clean_fraction_reaches_the_measurement_model(tiny_dataset, tmp_path):
    """fcinv train --augment --clean-fraction P: P is the measurement model's p_clean, recorded in the
    checkpoint (default 0.1 without the flag), and that fraction of draws passes unchanged."""
    from fcinv_widgets.cli import main
    from fcinv_widgets.models import load_model

    base = ["train", "--dataset", str(tiny_dataset), "--model", "resnet", "--width", "8", "--augment", "--no-masks"]
    base += ["--epochs", "1", "--batch-size", "16", "--threads", "1", "--no-progress"]
    for frac in (None, 0.5):
        out = tmp_path / f"r{frac}"
        assert main([*base, "--out", str(out)] + ([] if frac is None else ["--clean-fraction", str(frac)])) == 0
        cfg = load_model(out).config["augment"]
        assert cfg["p_clean"] == (MeasurementModel().p_clean if frac is None else frac)
    aug = MeasurementModel.from_dict(cfg).sampler(np.linspace(0.25, 69.75, 140), seed=1)
    img = np.random.default_rng(0).random((140, 140)).astype(np.float32)
    clean = [aug.one(img, 0, s, return_info=True)[1]["clean"] for s in range(400)]
    assert 0.42 < np.mean(clean) < 0.58  # 400 draws at p = 0.5: ±4 σ
    # … a training knob only: σ and the OOD thresholds are calibrated on draws as measurements arrive
    from fcinv_widgets.measurement import MEASURED_P_CLEAN
    from fcinv_widgets.models.train import calibration_draws

    x, idx = np.stack([img] * 40), np.arange(40)
    half = MeasurementModel.from_dict(cfg).sampler(np.linspace(0.25, 69.75, 140), seed=1)
    default = MeasurementModel.from_dict({**cfg, "p_clean": MEASURED_P_CLEAN}).sampler(np.linspace(0.25, 69.75, 140), seed=1)
    assert np.array_equal(calibration_draws(half, x, idx, 0), calibration_draws(default, x, idx, 0))
    assert not np.array_equal(half.apply(x, idx, 0), default.apply(x, idx, 0))  # training draws do differ
    ood_args = ["--dataset", str(tiny_dataset), "--n-train", "10", "--n-test", "10", "--no-progress"]
    assert main(["ood-calibrate", "--model", str(out), *ood_args]) == 0
    assert json.loads((out / "ood.json").read_text())["calibration"]["augmented"]["p_clean"] == MEASURED_P_CLEAN


def test_resolved_lines_reach_the_checkpoint_and_the_test_set(tiny_dataset, tmp_path, capsys):
    """fcinv train --sqe-resolved-lines: the checkpoint's measurement model records it (off without
    the flag), its S(Q,E) draws say so; fcinv evaluate --sqe-resolved-lines draws its test set that
    way and records it in the command it reports."""
    from fcinv_widgets.cli import main
    from fcinv_widgets.models import load_model

    base = ["train", "--dataset", str(tiny_dataset), "--model", "resnet", "--width", "8", "--augment", "--no-masks"]
    base += ["--epochs", "1", "--batch-size", "16", "--threads", "1", "--no-progress", "--sqe-weights", "1"]
    for flag in (False, True):
        out = tmp_path / f"r{flag}"
        assert main([*base, "--out", str(out)] + (["--sqe-resolved-lines"] if flag else [])) == 0
        assert load_model(out).config["augment"]["sqe_resolved_lines"] is flag
    capsys.readouterr()
    ev = ["evaluate", "--model", str(out), "--dataset", str(tiny_dataset), "--augment", "--sqe-weights", "1", "--json"]
    ev += ["--no-progress", "--n-samples", "2"]
    assert main([*ev, "--sqe-resolved-lines"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["evaluated_with"].endswith("--sqe-resolved-lines") and "weighted after" in d["test_set"]
    assert main(ev) == 0
    plain = json.loads(capsys.readouterr().out)
    assert "weighted after" not in plain["test_set"] and plain["r2"] != d["r2"]  # other draws, other scores
