"""Bad inputs to the ML stages and the Python API found by a probing helper in session 46 (~500
runs: damaged datasets and checkpoints, hostile options, public calls with bad arguments). Each
was a traceback, a silent overwrite or a silent wrong answer; each is now one line and exit 2
(an FcinvError in the API), checked before the work where the work is long."""

import json
import shutil

import h5py
import numpy as np
import pytest

from fcinv_widgets.cli import main
from fcinv_widgets.errors import FcinvError


def _one_line(capsys, argv, match: str) -> str:
    assert main([str(a) for a in argv]) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fcinv ") and match in err[0], err
    return err[0]


@pytest.fixture(scope="module")
def vae_copy(tmp_path_factory):
    """A copy of the shipped ge-vae folder (its files may be damaged by a test)."""
    from fcinv_widgets.materials import data_path

    out = tmp_path_factory.mktemp("m") / "ge-vae"
    shutil.copytree(data_path("models", "ge-vae"), out)
    return out


def test_one_cycle_schedule_runs_at_every_small_step_count():
    """`--epochs 1` with 5 batches (or 5 epochs of one) was a ZeroDivisionError in torch's
    OneCycleLR (it divides by pct_start × steps − 1)."""
    import torch

    from fcinv_widgets.models.train import one_cycle

    for steps in range(1, 13):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sched = one_cycle(opt, 0.1, steps)
        for _ in range(steps):
            opt.step()
            if sched.last_epoch + 1 < sched.total_steps:
                sched.step()
        assert all(np.isfinite(g["lr"]) for g in opt.param_groups)


def test_outputs_that_would_overwrite_another_kind_of_file_are_refused(capsys, vae_copy, tiny_dataset, tmp_path):
    """`ood-calibrate --out model.pt`, `domain --save dataset.h5` and `sigma-calibrate --out
    <another model>` replaced a checkpoint or dataset with exit 0; a plot path matplotlib cannot
    write was a traceback after all the work."""
    before = (vae_copy / "model.pt").read_bytes()
    _one_line(capsys, ["ood-calibrate", "--model", vae_copy, "--out", vae_copy / "model.pt"], "not a JSON file")
    _one_line(capsys, ["domain", "--material", "Ge", "--samples", "0", "--save", tiny_dataset], "will not overwrite")
    assert (vae_copy / "model.pt").read_bytes() == before
    other = tmp_path / "other"
    shutil.copytree(vae_copy, other)
    _one_line(
        capsys, ["sigma-calibrate", "--model", "ge-resnet", "--dataset", tiny_dataset, "--out", other], "holds another model"
    )
    assert (other / "model.pt").read_bytes() == before and (other / "ood.json").is_file()
    for argv in (
        ["noise-grid", "--model", vae_copy, "--dataset", tiny_dataset, "--out", tmp_path / "ng.h5", "--plot", tmp_path / "x.txt"],
        ["evaluate", "--model", vae_copy, "--dataset", tiny_dataset, "--parity", tmp_path / "p.h5"],
        ["latent", "--model", vae_copy, "--dataset", tiny_dataset, "--out", tmp_path / "lat", "--plot", tmp_path / "m.json"],
    ):
        _one_line(capsys, argv, "matplotlib cannot write")
    # a JSON file may be rewritten, a PDF figure is a figure
    (tmp_path / "d.json").write_text("{}")
    assert main(["domain", "--material", "Ge", "--samples", "0", "--save", str(tmp_path / "d.json"), "--json"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    "argv, match",
    [
        (["latent", "--min-dist", "2"], "from 0 to 1"),
        (["train", "--threads", "100000"], "--threads"),
        (["noise-grid", "--scheduler", "local:100000"], "local:N needs a number of workers"),
        (["ensemble", "--material", "Ge", "--workers", "100000", "--out", "{tmp}/e.h5"], "--workers"),
        (["ood-calibrate", "--model", "ge-vae", "--n-train", "100000000"], "--n-train must be from 10"),
        (["ensemble", "--material", "Ge", "--supercell", "-2", "2", "2", "--serial", "--out", "{tmp}/e.h5"], "determinant"),
    ],
)
def test_option_bounds(capsys, tmp_path, argv, match):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] in ("latent", "train", "noise-grid"):  # argparse refuses the value before it asks for the rest
        argv += ["--model", "ge-vae", "--dataset", "x.h5", "--out", str(tmp_path / "o")]
    _one_line(capsys, argv, match)


def _copy_dataset(src, dst, edit):
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        edit(f)
    return dst


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda s: s * 0, "row 0 all zero"),
        (lambda s: -s, "ranges -1 … 0"),
        (lambda s: s * 1e6, "ranges 0 … 1e+06"),
        (lambda s: np.where(np.arange(len(s))[:, None, None] == 7, 0.25, s), "rows 7; row 7 constant"),
    ],
    ids=["zero", "sign-flipped", "x1e6", "one-constant-row"],
)
def test_training_refuses_spectra_not_scaled_as_the_dataset_format_says(edit, words, capsys, tiny_dataset, tmp_path):
    """Session 51 (session 50's probe): all-zero or sign-flipped training spectra trained with exit 0
    into a meaningless model (evaluate refuses them); spectra × 10⁶ failed after an epoch naming no row."""

    def damage(f):
        s = f["train/spectra"][()]
        del f["train/spectra"]
        f["train/spectra"] = edit(s).astype(np.float32)

    bad = _copy_dataset(tiny_dataset, tmp_path / "bad.h5", damage)
    common = ["--epochs", "1", "--batch-size", "16", "--threads", "1", "--no-progress"]
    _one_line(capsys, ["train", "--dataset", bad, "--out", tmp_path / "m", *common], words)
    assert not (tmp_path / "m" / "model.pt").exists()


def test_training_refuses_a_split_with_a_constant_fc(capsys, tiny_dataset, tmp_path):
    """A training split whose FC is one value trained with exit 0 (its validation R² NaN, others −234)."""

    def constant(f):
        p = f["train/params"][()]
        p[:, 2] = p[0, 2]
        f["train/params"][...] = p

    bad = _copy_dataset(tiny_dataset, tmp_path / "const.h5", constant)
    common = ["--epochs", "1", "--batch-size", "16", "--threads", "1", "--no-progress"]
    _one_line(capsys, ["train", "--dataset", bad, "--out", tmp_path / "m", "--model", "resnet", *common], "FC2")


def test_training_refuses_what_it_cannot_learn_from(capsys, tiny_dataset, tmp_path):
    """One training spectrum (a torch.cat traceback), NaN in a training spectrum or a learning
    rate that diverges ("no epoch ran", naming neither), a dataset whose spectra, grid and material
    disagree (trained with exit 0 into a model stamped wrong), a network of 10⁸ latent dimensions
    (a 51 GB allocation) and a --pretrained file holding a list (an AttributeError)."""
    common = ["--epochs", "1", "--batch-size", "16", "--threads", "1", "--no-progress"]
    out = tmp_path / "m"
    _one_line(capsys, ["train", "--dataset", tiny_dataset, "--out", out, "--max-train", "1", *common], "at least 2 spectra")

    def nan(f):
        f["train/spectra"][3, 10, 10] = np.nan

    bad = _copy_dataset(tiny_dataset, tmp_path / "nan.h5", nan)
    _one_line(capsys, ["train", "--dataset", bad, "--out", out, *common], "NaN or ±inf pixels (rows 3")
    _one_line(capsys, ["train", "--dataset", tiny_dataset, "--out", out, "--lr", "1e30", *common], "non-finite")

    def relabel(f):
        f.attrs["material"] = "Xx"

    bad = _copy_dataset(tiny_dataset, tmp_path / "xx.h5", relabel)
    _one_line(capsys, ["train", "--dataset", bad, "--out", out, *common], "not a preset")

    def narrow(f):
        s = f["train/spectra"][()]
        del f["train/spectra"]
        f["train/spectra"] = s[:, :, :-1]

    bad = _copy_dataset(tiny_dataset, tmp_path / "narrow.h5", narrow)
    _one_line(capsys, ["train", "--dataset", bad, "--out", out, *common], "damaged or relabelled dataset")
    _one_line(capsys, ["train", "--dataset", tiny_dataset, "--out", out, "--latent", "100000000", *common], "latent")
    _one_line(
        capsys, ["train", "--dataset", tiny_dataset, "--out", out, "--model", "resnet", "--width", "100000", *common], "width"
    )
    import torch

    torch.save([1, 2, 3], tmp_path / "list.pt")
    _one_line(
        capsys,
        ["train", "--dataset", tiny_dataset, "--out", out, "--model", "resnet", "--pretrained", tmp_path / "list.pt", *common],
        "not a state dict",
    )


def _damaged_checkpoint(src, dst, **changes):
    import torch

    ck = torch.load(src / "model.pt", map_location="cpu", weights_only=True)
    cfg = json.loads(ck["config"])
    cfg.update(changes)
    ck["config"] = json.dumps(cfg)
    dst.mkdir()
    torch.save(ck, dst / "model.pt")
    return dst


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"y_std": [0.0] * 8}, "y_std"),  # constant FCs with exit 0
        ({"y_std": [-1.0] * 8}, "y_std"),  # sign-flipped FCs with exit 0
        ({"y_mean": [0.0] * 3}, "y_mean"),  # a broadcasting traceback
        ({"domain": "x"}, "domain"),  # a float('x') traceback
        ({"energy_centers_mev": [float("nan")] * 140}, "energy_centers_mev"),
        ({"hidden": 10**6}, "does not match its weights"),  # 20.7 GB allocated before the mismatch was seen
    ],
)
def test_checkpoint_config_that_lies_is_refused(vae_copy, tmp_path, changes, match):
    from fcinv_widgets.models import load_model

    bad = _damaged_checkpoint(vae_copy, tmp_path / "bad", **changes)
    with pytest.raises(FcinvError, match=match):
        load_model(bad)


def test_metrics_to_compare_are_checked_before_the_work_and_written_strict(capsys, vae_copy, tiny_dataset, tmp_path):
    """`--compare` of a metrics.json holding a list or 2 FCs was a traceback after the evaluation;
    `--write-metrics` wrote NaN (not JSON) for an undefined R²."""
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "two.json").write_text(json.dumps({"names": ["a", "b"], "r2": [0.5, 0.6]}))
    base = ["evaluate", "--model", vae_copy, "--dataset", tiny_dataset, "--max-test", "4", "--n-samples", "2"]
    _one_line(capsys, [*base, "--r2-bars", tmp_path / "b.png", "--compare", tmp_path / "list.json"], "not a metrics file")
    _one_line(capsys, [*base, "--r2-bars", tmp_path / "b.png", "--compare", tmp_path / "two.json"], "name 2 FCs")
    _one_line(capsys, [*base, "--compare", tmp_path / "two.json"], "give --r2-bars")

    def constant(f):  # one FC constant over the test split: its R² is undefined
        p = f["test/params"][()]
        p[:, 0] = p[0, 0]
        f["test/params"][...] = p

    ds = _copy_dataset(tiny_dataset, tmp_path / "const.h5", constant)
    assert (
        main([*map(str, base[:3]), "--dataset", str(ds), "--max-test", "4", "--n-samples", "2", "--write-metrics", "--json"]) == 0
    )
    capsys.readouterr()
    text = (vae_copy / "metrics.json").read_text()
    assert "NaN" not in text and json.loads(text)["r2"][0] is None


def test_public_helpers_refuse_bad_arguments():
    """Helpers that returned NaN arrays, accepted what a sibling refuses, or raised numpy's own
    errors (`sqe.gaussians` σ 0, `coth_factor` T < 0, `noise.minmax([])` or of an all-NaN image, `NoiseLevel(-1, nan)`,
    `MeasurementModel(n_ei_kernels=0)`, `kinematic_q_range(-1, …)`, `add_noise` of no spectra,
    complex energies in `creation_correction`)."""
    from fcinv_widgets.measurement import MeasurementModel, creation_correction
    from fcinv_widgets.noise import NoiseLevel, add_noise, minmax
    from fcinv_widgets.sqe import coth_factor, gaussians, kinematic_q_range

    e = np.linspace(0.5, 40, 80)
    calls = [
        lambda: gaussians(e, [[10.0]], sigma_mev=0),
        lambda: gaussians(e, [[10.0]], sigma_mev=float("nan")),
        lambda: gaussians(e, [[10.0]], sigma_mev=-1),
        lambda: coth_factor(e, -1),
        lambda: minmax(np.array([])),
        lambda: minmax(np.stack([np.ones((3, 3)), np.full((3, 3), np.nan)])),  # numpy's All-NaN warnings, a NaN image
        lambda: minmax(np.array([[1.0, np.inf], [0.0, 2.0]])),
        lambda: NoiseLevel(-1, 5),
        lambda: NoiseLevel(float("nan"), 10),
        lambda: NoiseLevel(0.1, -5),
        lambda: MeasurementModel(n_ei_kernels=0),
        lambda: MeasurementModel(n_ei_kernels=10**9),
        lambda: MeasurementModel(background="x"),
        lambda: MeasurementModel.from_dict({"p_clean": "x"}),
        lambda: MeasurementModel.from_dict({"no_such": 1}),
        lambda: kinematic_q_range(-1, e),
        lambda: add_noise(np.zeros((0, 140, 140)), 0.1, 100),
        lambda: creation_correction(e + 1j, 5),
    ]
    for i, call in enumerate(calls):
        with pytest.raises(FcinvError):
            call()
            pytest.fail(f"call {i} accepted")
    assert np.all(np.isfinite(gaussians(e, [[10.0]], sigma_mev=1.0)))
    assert NoiseLevel(0.1, None).label() == "B=0.1, P=∞"
    assert MeasurementModel.from_dict(MeasurementModel().to_dict()) == MeasurementModel()


def test_local_cluster_size_is_bounded_in_the_api():
    from fcinv_widgets.dataset import dask_client

    with pytest.raises(FcinvError, match="workers"):
        dask_client("local:100000")


def test_sigma_calibrate_refuses_a_mask_bank_the_model_never_used(capsys, tiny_dataset, tmp_path):
    """`sigma-calibrate --mask-bank F` on a model trained with `--no-masks` ignored F with exit 0."""
    out = tmp_path / "m"
    argv = ["train", "--dataset", tiny_dataset, "--model", "resnet", "--width", "4", "--augment", "--no-masks"]
    assert main([*map(str, argv), "--epochs", "1", "--batch-size", "16", "--threads", "1", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    argv = ["sigma-calibrate", "--model", out, "--dataset", tiny_dataset, "--mask-bank", tiny_dataset, "--out", tmp_path / "c"]
    _one_line(capsys, argv, "trained without coverage masks")


class _Evil:
    """Unpickling this would create the marker file: a checkpoint must never run it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_checkpoints_that_are_not_ours_say_what_they_hold(tmp_path):
    """A pickled object (never run: weights_only), a text file ("KeyError: 101" before), a list, a
    config that is a JSON list: one FcinvError naming what the file holds."""
    import torch

    from fcinv_widgets.models import load_model

    marker = tmp_path / "PWNED"
    torch.save({"config": "{}", "vae": _Evil(marker)}, tmp_path / "evil.pt")
    (tmp_path / "text.pt").write_text("hello")
    torch.save([1, 2], tmp_path / "list.pt")
    torch.save({"config": "[1, 2]"}, tmp_path / "cfg.pt")
    for name, match in (
        ("evil.pt", "pickled objects"),
        ("text.pt", "not a torch file"),
        ("list.pt", "holds a list"),
        ("cfg.pt", "config is a JSON list"),
    ):
        with pytest.raises(FcinvError, match=match):
            load_model(tmp_path / name)
    assert not marker.exists()


def test_what_evaluation_cannot_score_is_said(capsys, tiny_dataset, tmp_path):
    """Session 50's batch-stage probe: a constant test FC gave R² −1e29…−1e34 (the rounding of its mean
    left Σ(y − ȳ)² ≈ 1e-30), one test spectrum an all-null R² with exit 0, and a coverage bank whose
    masks cover nothing was used as full coverage (single-scan R² of full data, exit 0)."""
    from fcinv_widgets.analysis.evaluation import evaluate_model
    from fcinv_widgets.errors import FcinvWarning
    from fcinv_widgets.measurement import load_bank, save_bank
    from fcinv_widgets.metrics import r2_score
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.train import load_split

    y = np.full((5, 2), 0.1)
    y[:, 1] = np.arange(5)
    r2 = r2_score(y, y + 0.1)
    assert np.isnan(r2[0]) and np.isfinite(r2[1])
    vae = load_model("ge-vae")
    x, th, _ = load_split(tiny_dataset, "test")
    with pytest.raises(FcinvError, match="at least 2 test spectra"):
        evaluate_model(vae, x[:1], th[:1], n_samples=2)
    flat = th[:4].copy()
    flat[:, 3] = flat[0, 3]
    with pytest.warns(FcinvWarning, match=r"FC3\b.* is the same in every test spectrum"):
        out = evaluate_model(vae, x[:4], flat, n_samples=2)
    assert np.isnan(out["r2"][3])
    bank = tmp_path / "bank.npz"
    masks = np.ones((3, *x.shape[1:]), bool)
    masks[1] = False
    save_bank(bank, masks, {"material": "Ge"})
    with pytest.raises(FcinvError, match="1 of its 3 masks cover no pixel"):
        load_bank(bank)
    assert main(["evaluate", "--model", "ge-vae", "--dataset", str(tiny_dataset), "--max-test", "1", "--json"]) == 2
    assert "at least 2 test spectra" in capsys.readouterr().err


def test_messages_name_the_problem(capsys, tiny_dataset, tmp_path):
    """Session 51 (session 50's probe): refusals that were right but said the wrong thing."""
    import warnings

    from fcinv_widgets.errors import FcinvWarning
    from fcinv_widgets.measurement import load_bank

    # a truncated dataset as an output: "not an HDF5 file" → damaged
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(tiny_dataset.read_bytes()[:5000])
    _one_line(capsys, ["dataset", "--material", "Ge", "--n-train", "4", "--n-test", "2", "--out", trunc], "damaged HDF5 file")

    # a damaged compressed chunk: h5py's "filter returned failure", naming neither file nor split
    def garble(f):
        ds = f["train/spectra"]
        off, size = ds.id.get_chunk_info(0).byte_offset, ds.id.get_chunk_info(0).size
        return off, size

    garbled = tmp_path / "garbled.h5"
    shutil.copy(tiny_dataset, garbled)
    with h5py.File(garbled, "r") as f:
        off, size = garble(f)
    raw = bytearray(garbled.read_bytes())
    raw[off + size // 3 : off + size // 3 + 64] = bytes(64)
    garbled.write_bytes(bytes(raw))
    line = _one_line(capsys, ["train", "--dataset", garbled, "--out", tmp_path / "m", "--epochs", "1"], "/train cannot be read")
    assert "damaged dataset file" in line and "garbled.h5" in line
    # --batch-size 1 blamed --epochs too
    line = _one_line(capsys, ["train", "--dataset", tiny_dataset, "--out", tmp_path / "m", "--batch-size", "1"], "--batch-size")
    assert "--epochs" not in line
    # bench has no --structure
    line = _one_line(capsys, ["bench", "forward", "--material", "Xx"], "unknown material 'Xx'")
    assert "where the command takes them" in line
    # an empty bank: "shape (0, 140, 140) does not match the packed masks"
    empty = tmp_path / "empty.npz"
    np.savez(empty, masks=np.zeros((0, 140, 18), np.uint8), shape=np.array([0, 140, 140]), meta=np.array("{}"))
    with pytest.raises(FcinvError, match="holds no masks"):
        load_bank(empty)
    # --resume without a saved state started afresh without a word
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from fcinv_widgets.models import train_resnet

        train_resnet(tiny_dataset, tmp_path / "r", epochs=1, batch_size=16, progress=False, threads=1, resume=True)
    assert any(issubclass(w.category, FcinvWarning) and "no training state" in str(w.message) for w in caught)
