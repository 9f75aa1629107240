"""Damaged or stale files beside a checkpoint (``ood.json``): one line, exit 2, or a warning.

Found by mutating a copy of ``ge-resnet``'s folder (session 23): ``OODStats.load`` took any
array and number, so a damaged ``ood.json`` ended in a numpy traceback (a mean or components of
the wrong shape) or silently switched the check off (variances ≤ 0, a NaN or infinite
threshold); and an ``ood.json`` of another checkpoint skipped the check with no word on stderr.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fcinv_widgets.cli import main
from fcinv_widgets.materials import data_path
from fcinv_widgets.spectrum_io import write_spectrum


@pytest.fixture(scope="module")
def spectrum(tmp_path_factory):
    from fcinv_widgets.materials import get_material

    mat = get_material("Ge")
    path = tmp_path_factory.mktemp("spec") / "ge.h5"
    write_spectrum(path, mat.forward_model().spectra(mat.reference_theta)[0], mat.grid, material="Ge")
    return path


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(data_path("models", "ge-resnet"), d)
    return d


def _edit(folder, **changes):
    p = folder / "ood.json"
    d = json.loads(p.read_text())
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            d[outer][inner] = value
        else:
            d[key] = value
    p.write_text(json.dumps(d))


DAMAGE = {
    "mean of another length": {"mean": [1.0, 2.0]},
    "components a number": {"components": 0},
    "variances negative": {"variances": [-5.0] * 32},
    "thresholds of unknown scores": {"thresholds": {"a": 1.0}},
    "threshold NaN": {"thresholds.feature": float("nan")},
    "combined threshold infinite": {"combined_threshold": float("inf")},
    "quantile above 1": {"quantile": 2.0},
    "kind unknown": {"kind": "abc"},
    "measured thresholds zero": {"measured.thresholds": {"feature": 0.0, "residual": 1.0, "refit": 1.0, "band": 1.0}},
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_a_damaged_ood_file_is_one_line_exit_2(folder, spectrum, capsys, name):
    _edit(folder, **DAMAGE[name])
    assert main(["invert", "--model", str(folder), "--spectrum", str(spectrum), "--no-refine", "--json"]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and "is not a readable OOD statistics file" in lines[0], err


def test_features_of_another_size_are_refused_at_use(folder, spectrum, capsys):
    """Consistent in itself but for another network: the feature count is checked when scoring."""
    d = json.loads((folder / "ood.json").read_text())
    k = len(d["components"])
    _edit(folder, mean=[0.0] * 4, components=np.eye(k, 4).tolist())
    assert main(["invert", "--model", str(folder), "--spectrum", str(spectrum), "--no-refine", "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "for 4 features, this model gives 128" in err[0], err


def test_an_ood_file_of_another_checkpoint_is_skipped_with_a_warning(folder, spectrum, capsys):
    _edit(folder, model_sha256="0" * 64)
    assert main(["invert", "--model", str(folder), "--spectrum", str(spectrum), "--no-refine", "--json"]) == 0
    out, err = capsys.readouterr()
    rec = json.loads(out)
    assert rec["ood"] is None and "another checkpoint" in rec["ood_note"]
    assert "no out-of-distribution check" in err and "another checkpoint" in err
