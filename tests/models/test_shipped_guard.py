"""The installed package's shipped data is written only on purpose (session 51).

A command given a shipped model's name (``--model ge-vae``) resolves to the package's own folder;
``evaluate --write-metrics``, ``ood-calibrate`` (default ``--out``), ``trust-calibrate --write`` and
``latent --out <that folder>`` replaced the shipped ``metrics.json``/``ood.json``/``trust.json``/latent
map every user of the installation reads, with exit 0 (session 50's probe overwrote ge-vae's latent
map). Each is now refused before the work unless ``--ship`` is given; any other command's output
inside the shipped data is refused outright."""

import hashlib
import json
import shutil

import pytest

from fcinv_widgets.cli import main
from fcinv_widgets.materials import data_path


def _one_line(capsys, argv, match: str) -> str:
    assert main([str(a) for a in argv]) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fcinv ") and match in err[0], err
    return err[0]


def _digest(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_shipped_model_files_are_not_replaced_without_ship(capsys, tiny_dataset, tmp_path):
    shipped = data_path("models", "ge-vae")
    before = _digest(shipped)
    line = _one_line(
        capsys,
        ["evaluate", "--model", "ge-vae", "--dataset", tiny_dataset, "--max-test", "4", "--n-samples", "2", "--write-metrics"],
        "shipped data",
    )
    assert "--ship" in line  # the command can do it on purpose, and says how
    _one_line(capsys, ["ood-calibrate", "--model", "ge-vae", "--dataset", tiny_dataset, "--no-progress"], "shipped data")
    _one_line(capsys, ["ood-calibrate", "--model", "ge-vae", "--out", shipped / "ood.json"], "shipped data")
    _one_line(capsys, ["latent", "--model", "ge-vae", "--dataset", tiny_dataset, "--out", shipped], "shipped data")
    _one_line(capsys, ["trust-calibrate", "--model", "ge-resnet", "--write", "--no-progress"], "shipped data")
    # a command without --ship does not offer it
    line = _one_line(capsys, ["domain", "--material", "Ge", "--samples", "0", "--save", shipped / "d.json"], "shipped data")
    assert "--ship" not in line
    # a path that reaches the folder by another spelling is the same folder
    other = tmp_path / "link"
    other.symlink_to(shipped)
    _one_line(capsys, ["latent", "--model", "ge-vae", "--dataset", tiny_dataset, "--out", other], "shipped data")
    assert _digest(shipped) == before


def test_ship_writes_into_the_shipped_data_on_purpose(capsys, tiny_dataset, tmp_path, monkeypatch):
    """With --ship the write goes through (here into a stand-in for the package's data folder)."""
    from fcinv_widgets.commands import _common

    root = tmp_path / "data"
    model = root / "models" / "ge-vae"
    shutil.copytree(data_path("models", "ge-vae"), model)
    monkeypatch.setattr(_common, "shipped_data_root", lambda: root.resolve())
    argv = ["evaluate", "--model", model, "--dataset", tiny_dataset, "--max-test", "4", "--n-samples", "2"]
    before = (model / "metrics.json").read_text()
    _one_line(capsys, [*argv, "--write-metrics"], "shipped data")
    assert (model / "metrics.json").read_text() == before
    _one_line(capsys, [*argv, "--ship"], "give --write-metrics too")
    assert main([str(a) for a in [*argv, "--write-metrics", "--ship", "--json"]]) == 0
    written = json.loads((model / "metrics.json").read_text())
    assert written != json.loads(before) and "--max-test 4" in written["evaluated_with"]
    capsys.readouterr()
    # elsewhere needs no --ship
    (tmp_path / "mine").mkdir()
    shutil.copytree(model, tmp_path / "mine" / "m")
    assert main([str(a) for a in [*argv[:2], tmp_path / "mine" / "m", *argv[3:], "--write-metrics", "--json"]]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    "extra, words",
    [
        # 1 truth × 1 cell × (full data + 2 scans) = 3 cases: no limit of any kind (exit 0, empty, before)
        (["--truths", "1", "--cells", "0.05,300", "--angles", "0,90"], "too few cases for any limit"),
        # 5 truths: 5 full data + 15 single scans = 20 pooled, too few single scans for --write
        (["--truths", "5", "--cells", "0.05,300", "--angles", "0,90,180", "--write"], "too few single-scan cases"),
        (["--truths", "3", "--cells", "0.05,300", "--angles", "0:180:10", "--ship"], "give --write too"),
    ],
)
def test_trust_calibrate_refuses_too_few_cases_before_the_work(extra, words, capsys, monkeypatch):
    from fcinv_widgets.analysis import trust_calibration

    def no_work(*a, **k):
        raise AssertionError("the simulations ran")

    monkeypatch.setattr(trust_calibration, "network_cases", no_work)
    _one_line(capsys, ["trust-calibrate", "--model", "ge-resnet", *extra, "--no-progress"], words)
