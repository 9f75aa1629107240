"""Every fcinv file records a format version; a reader refuses one newer than it knows (or a
version that is not a whole number) with one line that says to upgrade, instead of reading a
layout it does not know. Files without a version (written before it was recorded) read as 1."""

import json
import shutil

import h5py
import numpy as np
import pytest

from fcinv_widgets.errors import FcinvError
from fcinv_widgets.validate import format_version


@pytest.mark.parametrize("v, ok", [(None, 1), (1, 1), (np.int64(1), 1), (1.0, 1), (np.array([1]), 1)])
def test_format_version_accepts(v, ok):
    assert format_version(v, "f") == ok


@pytest.mark.parametrize(
    "v, msg",
    [
        (2, "newer than this fcinv reads"),
        (0, "whole number"),
        (1.5, "whole number"),
        ("1", "whole number"),
        (True, "whole number"),
    ]
    + [(float("nan"), "whole number"), ([1], "whole number")],
)
def test_format_version_refuses(v, msg):
    with pytest.raises(FcinvError, match=msg):
        format_version(v, "f")


@pytest.fixture(scope="module")
def scanset(tmp_path_factory):
    from fcinv_widgets.materials import get_material
    from fcinv_widgets.scans import simulate_scans

    path = tmp_path_factory.mktemp("v") / "s.h5"
    simulate_scans(get_material("Ge"), 80.0, [0.0, 40.0], qmax=3.0, progress=False).save(path)
    return path


def _bumped_h5(src, dst, version=3):
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        f.attrs["version"] = version
    return dst


def test_scan_set_and_its_spectrum_reader(scanset, tmp_path):
    from fcinv_widgets.analysis.expio import read_spectrum
    from fcinv_widgets.scans import ScanSet

    ScanSet.load(scanset)
    read_spectrum(scanset)
    newer = _bumped_h5(scanset, tmp_path / "new.h5")
    for load in (ScanSet.load, read_spectrum):
        with pytest.raises(FcinvError, match=r"format version 3 is newer than this fcinv reads \(≤ 2\)"):
            load(newer)
    with pytest.raises(FcinvError, match="whole number"):
        ScanSet.load(_bumped_h5(scanset, tmp_path / "text.h5", "two"))


def test_cli_refuses_a_newer_scan_set_with_one_line(scanset, tmp_path, capsys):
    from fcinv_widgets.cli import main

    newer = _bumped_h5(scanset, tmp_path / "new.h5")
    for argv in (
        ["infer-scans", "--model", "ge-resnet", "--scans", str(newer), "--json"],
        ["invert", "--spectrum", str(newer), "--model", "ge-resnet", "--json"],
    ):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2 and "newer than this fcinv reads" in err and err.count("\n") == 1, err


def test_measured_table(tmp_path):
    from fcinv_widgets.materials import get_material
    from fcinv_widgets.measured import measured_path, read_measured

    d = json.loads(measured_path("Ge").read_text())
    p = tmp_path / "t.json"
    p.write_text(json.dumps({**d, "version": 3}))
    with pytest.raises(FcinvError, match="format version 3 is newer"):
        read_measured(p, get_material("Ge"))
    p.write_text(json.dumps({k: v for k, v in d.items() if k != "version"}))
    assert len(read_measured(p, get_material("Ge")).points) > 0  # no version: read as 1


def test_ood_json_and_checkpoint(tmp_path):
    import torch

    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.inverter import resolve_model
    from fcinv_widgets.models.ood import OODStats

    src = resolve_model("ge-resnet").parent
    folder = tmp_path / "m"
    shutil.copytree(src, folder)
    ood = json.loads((folder / "ood.json").read_text())
    (folder / "ood.json").write_text(json.dumps({**ood, "version": 2}))
    with pytest.raises(FcinvError, match="format version 2 is newer"):
        OODStats.load(folder / "ood.json")
    ck = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    ck["config"] = json.dumps({**json.loads(ck["config"]), "version": 2})
    torch.save(ck, folder / "model.pt")
    with pytest.raises(FcinvError, match=r"model\.pt: format version 2 is newer"):
        load_model(folder)


def test_dispersion_fit_file():
    from fcinv_widgets.fitting import DispersionFit
    from importlib.resources import files

    fit = json.loads(files("fcinv_widgets").joinpath("data/measured/ge-fit.json").read_text())
    DispersionFit.from_dict(fit)
    with pytest.raises(FcinvError, match="format version 2 is newer"):
        DispersionFit.from_dict({**fit, "version": 2})


def test_dataset_file(tmp_path):
    from fcinv_widgets.dataset import Dataset, generate_dataset

    out = tmp_path / "d.h5"
    generate_dataset("Ge", out, n_train=4, n_test=2, candidates=8, progress=False)
    Dataset(out).close()
    _bumped_h5(out, tmp_path / "n.h5", 2)
    with pytest.raises(FcinvError, match="format version 2 is newer"):
        Dataset(tmp_path / "n.h5")
    with pytest.raises(FcinvError, match="format version 2 is newer"):  # resuming one
        generate_dataset("Ge", tmp_path / "n.h5", n_train=4, n_test=2, candidates=8, progress=False)


def _loaders():
    from fcinv_widgets.analysis.noise_grid import NoiseGridResult
    from fcinv_widgets.analysis.scan_inference import ScanInference
    from fcinv_widgets.ensemble import fcsets

    return {
        "fcinv-noise-grid": NoiseGridResult.load,
        "fcinv-scan-inference": ScanInference.load,
        fcsets.FORMAT: fcsets.read_ensemble_h5,
    }


@pytest.mark.parametrize("fmt", ["fcinv-noise-grid", "fcinv-scan-inference", "fcinv-ensemble"])
def test_result_files_of_a_newer_format(fmt, tmp_path):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = fmt
        f.attrs["version"] = 2
    with pytest.raises(FcinvError, match="format version 2 is newer"):
        _loaders()[fmt](path)


def test_a_file_of_another_material_is_refused_before_its_grid(tmp_path, capsys):
    """A Nb scan set given to a Ge model (or `refine --material Ge`): one line naming both materials,
    not a grid-shape complaint; the Python API the same."""
    from fcinv_widgets.cli import main
    from fcinv_widgets.errors import GridMismatchError
    from fcinv_widgets.materials import get_material
    from fcinv_widgets.models import Inverter
    from fcinv_widgets.scans import simulate_scans

    path = tmp_path / "nb.h5"
    simulate_scans(get_material("Nb"), 60.0, [0.0, 30.0], qmax=3.0, progress=False).save(path)
    for argv in (
        ["invert", "--spectrum", str(path), "--model", "ge-resnet", "--no-refine", "--json"],
        ["refine", "--spectrum", str(path), "--material", "Ge", "--json"],
    ):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2 and "says it is Nb" in err and "for Ge" in err and err.count("\n") == 1, err
    with pytest.raises(GridMismatchError, match="says it is Nb"):
        Inverter.load("ge-vae").invert(str(path), refine=False)


def test_trust_file(tmp_path):
    """trust.json names its format and version like every other fcinv file (it was the one without)."""
    from fcinv_widgets.models.trust import TRUST_FILE, load_trust_limit, save_trust_limit

    ck = tmp_path / "model.pt"
    ck.write_bytes(b"weights")
    save_trust_limit(tmp_path, 3.0, version=7)  # meta cannot overwrite the format keys
    d = json.loads((tmp_path / TRUST_FILE).read_text())
    assert d["format"] == "fcinv-trust" and d["version"] == 1
    assert load_trust_limit(ck)[0] == 3.0
    del d["format"], d["version"]  # written before the format was recorded: read as version 1
    (tmp_path / TRUST_FILE).write_text(json.dumps(d))
    assert load_trust_limit(ck)[0] == 3.0
    for extra, msg in (({"version": 2}, "newer than this fcinv reads"), ({"format": "fcinv-ood"}, "not a trust-limit file")):
        (tmp_path / TRUST_FILE).write_text(json.dumps({**d, **extra}))
        with pytest.raises(FcinvError, match=msg):
            load_trust_limit(ck)


def test_shipped_trust_files_record_their_format():
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.trust import load_trust_limit

    for name in ("ge-vae", "ge-resnet", "nb-vae", "nb-resnet"):
        k, rec, note = load_trust_limit(load_model(name).path)
        assert note is None and k is not None and rec["format"] == "fcinv-trust" and rec["version"] == 1
