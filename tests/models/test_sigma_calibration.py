"""The σ-conditional calibration (models.train.sigma_calibration, _Model.calibrated_std) and
``fcinv sigma-calibrate``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fcinv_widgets.errors import FcinvError


def _model(calibration=None, scale=None, n=2):
    """A ResNetModel around an identity network: only the σ calibration matters here."""
    import torch

    from fcinv_widgets.models.inverter import ResNetModel

    cfg = {"format": "fcinv-resnet", "material": "Ge", "names": [f"FC{i}" for i in range(n)], "grid_shape": [4, 4]}
    cfg.update({"y_mean": [0.0] * n, "y_std": [1.0] * n, "heteroscedastic": True})
    if scale is not None:
        cfg["sigma_scale"] = scale
    if calibration is not None:
        cfg["sigma_calibration"] = calibration
    return ResNetModel(torch.nn.Identity(), cfg)


def _draw(rng, n):
    """Predicted σ log-uniform in [0.05, 1]; the true error is 2σ for σ < 0.2 and 0.6σ above:
    a head that orders inputs right but sizes the easy ones too small and the hard ones too large."""
    std = np.exp(rng.uniform(np.log(0.05), 0.0, size=(n, 2)))
    true = std * np.where(std < 0.2, 2.0, 0.6)
    return rng.normal(0.0, true), np.zeros((n, 2)), std


def _cover(y, mean, std):
    return (np.abs(y - mean) <= std).mean(0)


def test_conditional_scale_calibrates_where_one_scale_cannot():
    from fcinv_widgets.models.train import sigma_calibration, sigma_scale

    rng = np.random.default_rng(0)
    cal = sigma_calibration(*_draw(rng, 4000))
    assert cal["bins"] == 5 and np.asarray(cal["scales"]).shape == (5, 2)
    y, mean, std = _draw(rng, 20000)  # fresh draws
    calibrated = _model(cal).calibrated_std(std)
    one = std * sigma_scale(*_draw(np.random.default_rng(1), 4000))
    for part in (std[:, 0] < 0.1, std[:, 0] > 0.4):  # well inside each regime
        good = _cover(y[part], mean[part], calibrated[part])[0]
        bad = _cover(y[part], mean[part], one[part])[0]
        assert 0.63 <= good <= 0.74, good
        assert not 0.60 <= bad <= 0.80, bad  # the single scale is off in both regimes
    # overall: at least the Gaussian fractions (each bin's scale is the smallest meeting both), and
    # inside the 0.60–0.80 band (a bin straddling the jump at σ = 0.2 is conservative)
    assert 0.66 <= _cover(y, mean, calibrated)[0] <= 0.78
    assert _cover(y, mean, 2 * calibrated)[0] >= 0.94


def test_small_holdout_gives_no_conditional_scale_and_old_checkpoints_keep_their_scale():
    from fcinv_widgets.models.train import sigma_calibration

    assert sigma_calibration(*_draw(np.random.default_rng(0), 300)) is None
    m = _model(scale=[2.0, 0.5])
    assert m.calibrated_std(np.ones((3, 2))) == pytest.approx(np.tile([2.0, 0.5], (3, 1)))
    assert "sigma_calibration" not in m.config


@pytest.mark.parametrize(
    "bad",
    [
        {"log_sigma": [[0.0, 0.0], [-1.0, 1.0]], "scales": [[1.0, 1.0], [1.0, 1.0]]},  # knots not increasing
        {"log_sigma": [[0.0, 0.0]], "scales": [[1.0, -1.0]]},  # a negative scale
        {"log_sigma": [[0.0, 0.0, 0.0]], "scales": [[1.0, 1.0, 1.0]]},  # three FCs for a two-FC model
        {"log_sigma": "x", "scales": [[1.0, 1.0]]},
        {"scales": [[1.0, 1.0]]},
    ],
)
def test_damaged_calibration_is_refused(bad):
    with pytest.raises(FcinvError, match="sigma_calibration is damaged"):
        _model(bad)


@pytest.fixture(scope="module")
def calibratable(tmp_path_factory):
    """A ResNet trained one epoch on 2,000 realistic Ge spectra (a validation hold-out of 200, so
    400 calibration draws: two σ bins), and its dataset."""
    from fcinv_widgets.dataset import generate_dataset
    from fcinv_widgets.measurement import MeasurementModel
    from fcinv_widgets.models import train_resnet

    d = tmp_path_factory.mktemp("sigcal")
    ds = d / "ds.h5"
    generate_dataset("Ge", ds, n_train=2000, n_test=16, seed=3, candidates=2048, progress=False)
    train_resnet(ds, d / "m", epochs=1, batch_size=64, progress=False, threads=2, augment=MeasurementModel(p_mask=0.0))
    return d / "m", ds


def test_sigma_calibrate_cli(calibratable, tmp_path, capsys):
    from fcinv_widgets.cli import main
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import OODStats, file_sha256

    src, ds = calibratable
    m0 = load_model(src)
    assert m0.config.get("sigma_calibration", {}).get("bins") == 2  # training fitted it already
    # … and per kind of input, each on its part of the 400 draws (no S(Q,E) path in this training)
    assert m0.sigma_regimes() == ("measured", "model-image")
    assert [e["n"] for e in m0.config["sigma_calibration_by_regime"].values()] == [200, 200]
    # a stale per-FC scale in a copy, as an older checkpoint would have: the command refits it
    m0.set_sigma_calibration([3.0] * 8, None)
    old = tmp_path / "old"
    m0.save(old / "model.pt")
    assert (
        main(["ood-calibrate", "--model", str(old), "--dataset", str(ds), "--n-train", "40", "--n-test", "16", "--no-progress"])
        == 0
    )
    capsys.readouterr()
    from fcinv_widgets.models.trust import TRUST_FILE, save_trust_limit

    save_trust_limit(old, 3.0, level=0.95)  # measured in the old σ: not carried over, and said so
    out = tmp_path / "new"
    assert main(["sigma-calibrate", "--model", str(old), "--dataset", str(ds), "--out", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert not (out / TRUST_FILE).exists() and "not carried over" in r["trust_limit_note"]
    assert r["sigma_scale_before"] == [3.0] * 8 and r["bins"] == 2 and r["n_calibration"] == 400
    m1 = load_model(out)
    assert m1.config["sigma_calibration"]["scales"] == r["scales"]
    # and per input regime: each half of the 400 draws alone (200: one scale per FC, no σ bins)
    assert set(r["by_regime"]) == {"measured", "model-image"} == set(m1.sigma_regimes())
    for reg, e in r["by_regime"].items():
        assert e["bins"] == 1 and e["scales"] == [m1.config["sigma_calibration_by_regime"][reg]["sigma_scale"]]
    from fcinv_widgets.models.train import load_split

    x, _, _ = load_split(ds, "test")
    p0, p1 = load_model(old).predict(x), m1.predict(x)
    assert np.array_equal(p0.mean, p1.mean)  # the network is the same …
    assert not np.allclose(p0.std, p1.std)  # … its σ is recalibrated
    # the OOD statistics hold for the unchanged network: carried over, re-stamped, and saying so
    stats = OODStats.load(out / "ood.json")
    assert stats.model_sha256 == file_sha256(out / "model.pt") and "sigma-calibrate" in stats.calibration["carried_over_by"]
    assert OODStats.for_model(m1) is not None


def test_sigma_calibrate_refusals(calibratable, tiny_dataset, tmp_path, capsys):
    from fcinv_widgets.cli import main

    src, ds = calibratable
    cases = [
        (["--model", "ge-vae-paper", "--dataset", str(ds), "--out", str(tmp_path / "a")], "no σ to calibrate"),
        (["--model", str(src), "--dataset", str(tiny_dataset), "--out", str(tmp_path / "b")], "trained on 2000"),
        (["--model", str(src), "--dataset", str(ds), "--out", str(src)], "own directory"),
        (["--model", str(src), "--dataset", str(tmp_path / "none.h5"), "--out", str(tmp_path / "c")], "none.h5"),
    ]
    for argv, words in cases:
        assert main(["sigma-calibrate", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_sigma_calibrate_on_an_unseen_dataset(calibratable, tmp_path, capsys):
    """--unseen N: σ fitted on the first N spectra of a dataset the model never trained on, of any
    size (session 28: a ge-resnet trained on a mixture with nuisance-free spectra, calibrated on
    fresh nuisance spectra), and recorded; the training set itself, too few or too many refused."""
    from fcinv_widgets.cli import main
    from fcinv_widgets.commands import sigma_calibrate
    from fcinv_widgets.dataset import generate_dataset
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models import train as tr

    assert sigma_calibrate.SIGMA_MIN_PER_REGIME == tr.SIGMA_MIN_PER_REGIME  # the CLI's copy of the bound
    src, ds = calibratable
    fresh = tmp_path / "fresh.h5"
    generate_dataset("Ge", fresh, n_train=300, n_test=4, seed=11, candidates=2048, progress=False)
    out = tmp_path / "u"
    argv = ["sigma-calibrate", "--model", str(src), "--dataset", str(fresh), "--unseen", "250", "--out", str(out), "--json"]
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n_calibration"] == 500  # 250 unseen spectra, each drawn twice — not the 200 of the hold-out
    rec = load_model(out).config["training"]["sigma_calibrated_on"]
    assert rec == {"dataset": "fresh.h5", "spectra": 250, "unseen": True}
    # a copy of the training set under another name is its training draws all the same (its
    # fingerprint); the fresh set's is another
    import shutil

    copy = tmp_path / "renamed.h5"
    shutil.copy(ds, copy)
    fp = load_model(src).config["training"]["dataset_fingerprint"]
    assert fp == tr.dataset_fingerprint(tr.load_split(ds, "train", tr.FINGERPRINT_ROWS)[1])
    assert fp != tr.dataset_fingerprint(tr.load_split(fresh, "train", tr.FINGERPRINT_ROWS)[1])
    for argv, words in [
        (["--dataset", str(copy), "--unseen", "150"], "same spectra as the dataset the model was trained on"),
        (["--dataset", str(fresh), "--unseen", "50"], "at least 100"),
        (["--dataset", str(fresh), "--unseen", "40000"], "at most 30,000"),  # ~3 GB + 0.25 MB per spectrum (session 32)
        (["--dataset", str(fresh), "--unseen", "400"], "only 300"),
        (["--dataset", str(ds), "--unseen", "150"], "trained on"),
    ]:
        assert main(["sigma-calibrate", "--model", str(src), *argv, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_per_regime_calibration_sizes_each_kind_of_input():
    """One network σ, two kinds of input whose errors differ at the same σ (a measurement's three
    times a model image's): the pooled calibration is too narrow at ±2σ for one and too wide for
    the other; the per-regime one fits each, and ``calibrated_std`` picks it by name."""
    from fcinv_widgets.models.train import sigma_calibration, sigma_scale

    rng = np.random.default_rng(4)

    def draw(n, factor):
        std = np.exp(rng.uniform(np.log(0.05), 0.0, size=(n, 2)))
        return rng.normal(0.0, factor * std), np.zeros((n, 2)), std

    meas, img = draw(4000, 3.0), draw(4000, 1.0)
    pooled = [np.concatenate(a) for a in zip(meas, img)]
    by = {
        reg: {"sigma_scale": sigma_scale(*d).tolist(), "sigma_calibration": sigma_calibration(*d)}
        for reg, d in (("measured", meas), ("model-image", img))
    }
    m = _model(sigma_calibration(*pooled), sigma_scale(*pooled).tolist())
    m.set_sigma_calibration(m.config["sigma_scale"], m.config["sigma_calibration"], by)
    assert m.sigma_regimes() == ("measured", "model-image")
    for reg, factor in (("measured", 3.0), ("model-image", 1.0)):
        y, mean, std = draw(20000, factor)  # fresh draws
        assert 0.64 <= _cover(y, mean, m.calibrated_std(std, reg))[0] <= 0.73
        assert _cover(y, mean, 2 * m.calibrated_std(std, reg))[0] >= 0.94
        joint = m.calibrated_std(std)  # the pooled one: too narrow for one, too wide for the other
        if reg == "measured":
            assert _cover(y, mean, 2 * joint)[0] < 0.93
        else:
            assert _cover(y, mean, joint)[0] > 0.85
    # the per-regime pair travels with the checkpoint's config, and an unknown regime is refused
    assert m.config["sigma_calibration_by_regime"] == by
    with pytest.raises(FcinvError, match="sigma regime"):
        m.calibrated_std(np.ones((1, 2)), "beamline")
    # a checkpoint without it (before session 15) falls back to the pooled calibration for any regime
    old = _model(scale=[2.0, 0.5])
    assert old.sigma_regimes() == ()
    assert old.calibrated_std(np.ones((1, 2)), "measured")[0] == pytest.approx([2.0, 0.5])


def test_sqe_inputs_fall_back_to_the_measured_calibration_and_regimes_go_per_row():
    m = _model(scale=[1.0, 1.0])
    m.set_sigma_calibration(
        [1.0, 1.0], None, {"measured": {"sigma_scale": [2.0, 2.0]}, "model-image": {"sigma_scale": [0.5, 0.5]}}
    )
    # a checkpoint trained without S(Q,E) draws: an S(Q,E) input gets the measured calibration
    assert m.resolved_sigma_regime("measured-sqe") == "measured"
    assert m.calibrated_std(np.ones((1, 2)), "measured-sqe")[0] == pytest.approx([2.0, 2.0])
    m.set_sigma_calibration(
        [1.0, 1.0], None, m.config["sigma_calibration_by_regime"] | {"measured-sqe": {"sigma_scale": [3.0, 3.0]}}
    )
    assert m.resolved_sigma_regime("measured-sqe") == "measured-sqe" and m.resolved_sigma_regime(None) is None
    # one regime per row: each row sized by its own calibration
    got = m.calibrated_std(np.ones((4, 2)), ["model-image", "measured-sqe", None, "measured"])
    assert got[:, 0] == pytest.approx([0.5, 3.0, 1.0, 2.0])
    with pytest.raises(FcinvError, match="one sigma regime per spectrum"):
        m.calibrated_std(np.ones((4, 2)), ["measured"] * 3)
    from fcinv_widgets.models.inverter import input_sigma_regime

    assert input_sigma_regime({"intensity": "one-phonon-sqe"}, True) == "measured-sqe"
    assert input_sigma_regime({"intensity": "model-image", "origin": "measured"}, True) == "measured"
    assert input_sigma_regime({"intensity": "one-phonon-sqe"}, False) == "model-image"


@pytest.mark.parametrize(
    "bad",
    [
        {"beamline": {"sigma_scale": [1.0, 1.0]}},  # an unknown regime
        {"measured": {"sigma_calibration": None}},  # no scale
        {"measured": {"sigma_scale": [1.0, -1.0]}},  # a negative one
        {"measured": {"sigma_scale": [1.0]}},  # one FC for a two-FC model
        {"measured": "x"},
    ],
)
def test_damaged_per_regime_calibration_is_refused(bad):
    with pytest.raises(FcinvError, match="damaged"):
        _model(scale=[1.0, 1.0]).set_sigma_calibration([1.0, 1.0], None, bad)


def test_single_scan_regimes_fall_back_to_the_nearest_calibration():
    """A single scan's σ has its own calibration (session 20); a checkpoint without it sizes a single
    scan's S(Q,E) with the S(Q,E) one, then the measured one, then the pooled one."""
    from fcinv_widgets.models.inverter import SIGMA_REGIMES, input_sigma_regime

    m = _model(scale=[1.0, 1.0])
    assert m.resolved_sigma_regime("measured-sqe-scan") is None and m.resolved_sigma_regime("measured-scan") is None
    m.set_sigma_calibration([1.0, 1.0], None, {"measured": {"sigma_scale": [2.0, 2.0]}})
    assert m.resolved_sigma_regime("measured-sqe-scan") == "measured" == m.resolved_sigma_regime("measured-scan")
    m.set_sigma_calibration(
        [1.0, 1.0], None, {"measured": {"sigma_scale": [2.0, 2.0]}, "measured-sqe": {"sigma_scale": [3.0, 3.0]}}
    )
    assert m.resolved_sigma_regime("measured-sqe-scan") == "measured-sqe"
    assert m.resolved_sigma_regime("measured-scan") == "measured"  # never the S(Q,E) one for a unit-weight scan
    by = m.config["sigma_calibration_by_regime"] | {"measured-sqe-scan": {"sigma_scale": [5.0, 5.0]}}
    m.set_sigma_calibration([1.0, 1.0], None, by)
    got = m.calibrated_std(np.ones((3, 2)), ["measured-sqe-scan", "measured-sqe", "measured-scan"])
    assert got[:, 0] == pytest.approx([5.0, 3.0, 2.0])
    assert set(m.sigma_regimes()) <= set(SIGMA_REGIMES)
    sqe = {"intensity": "one-phonon-sqe"}
    assert input_sigma_regime(sqe, True, single_scan=True) == "measured-sqe-scan"
    assert input_sigma_regime({"intensity": "model-image"}, True, single_scan=True) == "measured-scan"
    assert input_sigma_regime(sqe, False, single_scan=True) == "model-image"  # a model image is no scan


def test_forced_augmenter_draws_single_scans_and_changes_probabilities_only():
    from fcinv_widgets.measurement import MeasurementModel

    rng = np.random.default_rng(0)
    e = np.linspace(0.5, 39.5, 40)
    masks = rng.random((6, 12, 40)) < 0.5
    aug = MeasurementModel(p_clean=0.5).sampler(e, masks=masks, seed=3)
    forced = aug.forced(p_clean=0.0, p_mask=1.0, p_single=1.0)
    assert forced.kernels is aug.kernels and forced.masks is aug.masks and aug.model.p_clean == 0.5
    x = rng.random((30, 12, 40)).astype(np.float32)
    out, infos = forced.apply(x, np.arange(30), 7, return_info=True)
    assert all(i.get("scans") == 1 and not i["clean"] for i in infos)
    for img in out:  # uncovered pixels are 0: the draw is one of the bank's scans
        assert any(np.all(img[~m] == 0) for m in masks)
    # reproducible from (seed, epoch, sample), as any draw
    assert np.array_equal(out, forced.apply(x, np.arange(30), 7))
    with pytest.raises(FcinvError, match="probabilities and the scan geometry only"):
        aug.forced(counts=(1.0, 2.0))


def test_fit_sigma_adds_a_single_scan_regime_with_a_coverage_bank(calibratable):
    """With a coverage bank, one single-scan draw per validation spectrum calibrates the "measured-scan"
    regime alone (the pooled pair is the same as without the bank), and sizes σ on fresh single scans."""
    from fcinv_widgets.measurement import MeasurementModel
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.train import _augmenter, _data, _fit_sigma, scan_calibration_draws

    src, ds = calibratable
    model = load_model(src)
    training = model.config["training"]
    x, y, info, iv, _ = _data(ds, None, int(training.get("seed", 0)))
    rng = np.random.default_rng(1)
    nq, ne = x.shape[1:]
    # 8 "scans", each a band of a fifth of the path: far less than full coverage
    masks = np.zeros((8, nq, ne), bool)
    for i in range(8):
        lo = int(rng.integers(0, nq - nq // 5))
        masks[i, lo : lo + nq // 5] = True
    mm = MeasurementModel.from_dict(model.config["augment"])
    plain = _augmenter(mm, info, None, 0)
    banked = _augmenter(mm, info, masks, 0)
    assert scan_calibration_draws(plain, x, iv) is None
    draws, regime = scan_calibration_draws(banked, x, iv)
    assert regime == "measured-scan" and draws.shape == (len(iv), nq, ne)
    scale0, cal0, by0 = _fit_sigma(model, x, y, iv, plain, 0)
    scale1, cal1, by1 = _fit_sigma(model, x, y, iv, banked, 0)
    assert "measured-scan" not in by0 and by1["measured-scan"]["n"] == len(iv)
    assert scale0 == scale1 and cal0 == cal1 and by0["model-image"] == by1["model-image"]
    assert model.resolved_sigma_regime("measured-scan") == "measured-scan"
    # fresh single-scan draws of the same spectra (another epoch): the regime's σ covers as it says
    from fcinv_widgets.models.train import SCAN_CAL_EPOCH

    forced = banked.forced(p_clean=0.0, p_mask=1.0, p_single=1.0)
    fresh = forced.apply(x[iv], iv, SCAN_CAL_EPOCH + 1).astype(np.float32)
    p = model.predict(fresh, sigma_regime="measured-scan")
    z = np.abs(p.mean - y[iv]) / p.std
    assert 0.60 <= np.mean(z <= 1) <= 0.80 and np.mean(z <= 2) >= 0.90, (np.mean(z <= 1), np.mean(z <= 2))


def test_a_model_trained_on_few_rows_is_told_from_a_renamed_copy(calibratable, tmp_path):
    """A model trained on fewer spectra than FINGERPRINT_ROWS was fingerprinted over all of them: the
    check hashes as many rows of the candidate as the checkpoint records (session 30 hashed 256 of
    the candidate and let a renamed copy of such a set through)."""
    import shutil
    from types import SimpleNamespace

    from fcinv_widgets.commands.sigma_calibrate import _unseen
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models import train as tr

    src, ds = calibratable
    model = load_model(src)
    copy = tmp_path / "renamed.h5"
    shutil.copy(ds, copy)
    rows = 120  # a training on --max-train 120
    y = tr.load_split(ds, "train", rows)[1]
    args = SimpleNamespace(unseen=150, dataset=str(copy), model=str(src))
    training = {"dataset": "small.h5", "dataset_fingerprint": tr.dataset_fingerprint(y), "dataset_fingerprint_rows": rows}
    with pytest.raises(FcinvError, match="same spectra as the dataset the model was trained on"):
        _unseen(args, model, training)
    # a dataset that shares the fingerprinted rows' count but not their draws passes
    other = {**training, "dataset_fingerprint": tr.dataset_fingerprint(y[::-1])}
    assert len(_unseen(args, model, other)[0]) == 150
    # a damaged record is named in one line
    with pytest.raises(FcinvError, match="dataset_fingerprint_rows"):
        _unseen(args, model, {**training, "dataset_fingerprint_rows": 1e9})
    # a model trained since session 31 records the count
    assert model.config["training"]["dataset_fingerprint_rows"] == tr.FINGERPRINT_ROWS


def test_calibration_in_chunks_gives_the_same_draws_and_sigma(calibratable, monkeypatch):
    """The σ calibration renders and predicts ``CAL_CHUNK`` rows at a time into float32 (its memory
    no longer grows ~1.1 MB per spectrum): the draws are the ones rendered in one call, bit for bit
    (each row depends only on (seed, epoch, sample); the noise-grid half keeps its RNG order), and
    the fitted σ scales are the same."""
    from fcinv_widgets.measurement import MEASURED_P_CLEAN, MeasurementModel
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models import train as tr
    from fcinv_widgets.noise import DEFAULT_BACKGROUNDS, DEFAULT_COUNTS, add_noise

    src, ds = calibratable
    model = load_model(src)
    training = model.config["training"]
    x, y, info, iv, _ = tr._data(ds, None, int(training.get("seed", 0)))
    aug = tr._augmenter(MeasurementModel.from_dict(model.config["augment"]), info, None, 0)
    whole, sqe = tr.calibration_draws(aug, x, iv, 0, return_sqe=True)
    # the one-call rendering as it was before (float64 rows stacked, then float32)
    forced = aug.forced(p_clean=MEASURED_P_CLEAN)
    real = forced.apply(x[iv], iv, tr.CAL_EPOCH).astype(np.float32)
    rng = np.random.default_rng(np.random.SeedSequence([0, tr.CAL_EPOCH, 1]))
    cells = [(b, p) for b in DEFAULT_BACKGROUNDS for p in DEFAULT_COUNTS]
    pick = rng.integers(0, len(cells), len(iv))
    grid = np.empty_like(real)
    for c in np.unique(pick):
        sel = np.flatnonzero(pick == c)
        grid[sel] = add_noise(x[iv[sel]], cells[c][0], cells[c][1], rng=rng)[0]
    assert whole.dtype == np.float32 and np.array_equal(whole, np.concatenate([real, grid]))
    scale0, cal0, by0 = tr._fit_sigma(model, x, y, iv, aug, 0)
    monkeypatch.setattr(tr, "CAL_CHUNK", 7)  # many chunks, none a whole predict batch
    chunked, sqe7 = tr.calibration_draws(aug, x, iv, 0, return_sqe=True)
    assert np.array_equal(chunked, whole) and np.array_equal(sqe7, sqe)
    scale7, cal7, by7 = tr._fit_sigma(model, x, y, iv, aug, 0)
    np.testing.assert_allclose(scale7, scale0, rtol=1e-5)
    assert (cal7 is None) == (cal0 is None) and by7.keys() == by0.keys()
    if cal0:
        np.testing.assert_allclose(cal7["scales"], cal0["scales"], rtol=1e-5)


def test_sigma_calibrate_holds_the_model_to_its_own_rows_and_bank(calibratable, tmp_path, capsys):
    """Session 51 (session 50's probe): a model trained with --max-train could not be recalibrated on
    its own dataset ("has 2000 training spectra, the model was trained on 300"); another dataset of
    the same size, and another coverage bank of the same shape (or one labelled with another
    material), were taken without a word."""
    from fcinv_widgets.cli import main
    from fcinv_widgets.dataset import generate_dataset
    from fcinv_widgets.measurement import save_bank

    _, ds = calibratable
    rng = np.random.default_rng(5)
    masks = rng.random((3, 140, 140)) < 0.6
    bank, other = tmp_path / "bank.npz", tmp_path / "other.npz"
    save_bank(bank, masks, {"material": "Ge", "n": 3})
    save_bank(other, ~masks, {"material": "Ge", "n": 3})
    m = tmp_path / "m300"
    common = ["--epochs", "1", "--batch-size", "64", "--threads", "2", "--no-progress", "--json"]
    argv = ["train", "--model", "resnet", "--dataset", ds, "--augment", "--mask-bank", bank, "--max-train", "300", "--out", m]
    assert main([str(a) for a in [*argv, *common]]) == 0
    capsys.readouterr()

    def sigcal(*extra):
        return main(["sigma-calibrate", "--model", str(m), "--no-progress", "--json", *map(str, extra)])

    assert sigcal("--dataset", ds, "--mask-bank", bank, "--out", tmp_path / "ok") == 0
    assert json.loads(capsys.readouterr().out)["n_calibration"] > 0
    same_size = tmp_path / "same.h5"
    generate_dataset("Ge", same_size, n_train=300, n_test=10, seed=9, candidates=1024, progress=False)
    cases = [
        (("--dataset", same_size, "--mask-bank", bank), "not the dataset"),
        (("--dataset", ds, "--mask-bank", other), "not the bank"),
    ]
    nb = tmp_path / "nb.npz"
    save_bank(nb, masks, {"material": "Nb", "n": 3})
    cases.append((("--dataset", ds, "--mask-bank", nb), "a coverage bank of Nb, for Ge here"))
    miscounted = tmp_path / "n.npz"
    save_bank(miscounted, masks, {"material": "Ge", "n": 7})
    cases.append((("--dataset", ds, "--mask-bank", miscounted), "says 7 masks, it holds 3"))
    for extra, words in cases:
        assert sigcal(*extra, "--out", tmp_path / "bad") == 2, extra
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "bad" / "model.pt").exists()
