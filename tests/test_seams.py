"""Issue 12 §4: one format per object, clean seams between the layers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from fcinv_widgets.errors import FcinvError

ROOT = Path(__file__).resolve().parents[1]


def test_grid_round_trips_through_dict_and_hdf5(ge, tmp_path):
    from fcinv_widgets.grid import SpectrumGrid

    g = ge.grid
    back = SpectrumGrid.from_dict(g.to_dict(arrays=True))
    assert back.same_as(g) and back.q.labels == g.q.labels and back.q.breaks == g.q.breaks
    np.testing.assert_array_equal(back.q.conventional_qpoints, g.q.conventional_qpoints)
    np.testing.assert_array_equal(back.q.distance, g.q.distance)
    with h5py.File(tmp_path / "g.h5", "w") as f:
        g.to_hdf5(f.create_group("grid"))
    with h5py.File(tmp_path / "g.h5", "r") as f:
        back = SpectrumGrid.from_hdf5(f["grid"])
    assert back.same_as(g) and back.e == g.e and back.q.segments == g.q.segments
    with pytest.raises(FcinvError):
        SpectrumGrid.from_dict({"q": {"segments": []}})
    d = g.to_dict(arrays=True)
    d["q"]["q_points"] = d["q"]["q_points"][:-1]
    with pytest.raises(FcinvError):
        SpectrumGrid.from_dict(d)


def test_one_grid_writer_one_spectrum_reader_no_cli_imports():
    """grep: /grid is written only by SpectrumGrid.to_hdf5; read_spectrum defined once; no command imports cli."""

    def grep(pattern, *paths):
        r = subprocess.run(["grep", "-rnE", pattern, *paths], cwd=ROOT, capture_output=True, text=True)
        return [ln for ln in r.stdout.splitlines() if ln]

    writers = [ln for ln in grep(r'\["?(q_points|energy_centers_mev)"?\] *=', "fcinv_widgets") if "grid.py" not in ln]
    assert writers == [], writers
    assert [ln.split(":")[0] for ln in grep(r"^def read_spectrum", "fcinv_widgets")] == ["fcinv_widgets/analysis/expio.py"]
    assert grep(r"from \.\.cli import|from \. import cli|import fcinv_widgets\.cli", "fcinv_widgets/commands") == []
    # no command imports another command
    assert (
        grep(
            r"from \.(basis|bench|dataset|ensemble|evaluate|infer_scans|invert|latent|noise_grid|phonons|refine|"
            r"scans|simulate|train) import",
            "fcinv_widgets/commands",
        )
        == []
    )
    assert grep(r"from \.analysis|import analysis", "fcinv_widgets/scans.py") == []


def test_checkpoint_grid_is_checked_by_content(ge):
    import copy

    from fcinv_widgets.errors import GridMismatchError
    from fcinv_widgets.models import load_model

    inv = load_model("ge-vae")
    inv.config = dict(inv.config) | {"grid": ge.grid.to_dict(arrays=True)}
    inv.check_grid(ge.grid)
    assert inv.grid.same_as(ge.grid)
    other = copy.deepcopy(inv.config["grid"])
    other["q"]["q_points"] = (np.asarray(other["q"]["q_points"]) + 0.01).tolist()  # same shape, other q-points
    inv.config["grid"] = other
    with pytest.raises(GridMismatchError):
        inv.check_grid(ge.grid)


def test_with_backend_leaves_the_model_alone(ge_fm, ge):
    pytest.importorskip("torch")
    before = dict(ge_fm.__dict__)
    twin = ge_fm.with_backend("torch")
    assert twin is not ge_fm and twin.backend.name == "torch" and ge_fm.backend.name == "numpy"
    assert ge_fm.__dict__.keys() == before.keys() and ge_fm.with_backend("numpy") is ge_fm
    theta = ge.reference_theta[None]
    got = twin.spectra(theta).detach().cpu().numpy()
    # the same images as a torch model built from scratch, and as the NumPy kernel to its 4σ truncation
    np.testing.assert_allclose(got, ge.forward_model(backend="torch").spectra(theta).numpy(), atol=1e-6)
    assert np.abs(got - ge_fm.spectra(theta)).max() < 1e-3


def test_refine_reads_every_spectrum_format(ge, ge_fm, tmp_path, capsys):
    """`fcinv refine` takes the .npz/.npy that `fcinv invert` reads (one reader)."""
    import json

    from fcinv_widgets.analysis.expio import write_pathsqe_npz
    from fcinv_widgets.cli import main

    img = ge_fm.spectra(ge.reference_theta[None])[0]
    write_pathsqe_npz(tmp_path / "s.npz", img, ge.grid)
    # a fast-model image stored as pathSQE segments: --raw (a pathSQE file is read as a measured S(Q,E))
    rc = main(["refine", "--spectrum", str(tmp_path / "s.npz"), "--max-iter", "3", "--raw", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    d = json.loads(out)
    assert d["misfit"] < 1e-6  # it starts at the reference, which made the image


def test_one_r2_nan_on_a_constant_target():
    from fcinv_widgets.analysis.noise_grid import r2_score as r2_grid
    from fcinv_widgets.metrics import r2_score
    from fcinv_widgets.models.train import _r2

    y = np.c_[np.arange(5.0), np.full(5, 2.0)]
    p = y + 0.1
    for f in (r2_score, r2_grid, _r2):
        r = f(y, p)
        assert r[0] == pytest.approx(1 - 0.05 / 10.0) and np.isnan(r[1])


def test_latent_nearest_is_exact(rng):
    from fcinv_widgets.analysis.latent import LatentMap

    mu = rng.normal(size=(500, 6))
    lm = LatentMap(rng.normal(size=(500, 2)), mu, rng.normal(size=(500, 8)), [f"FC{i}" for i in range(8)])
    q = rng.normal(size=(7, 6))
    brute = np.argsort(((mu[None] - q[:, None]) ** 2).sum(-1), axis=1)[:, :3]
    np.testing.assert_array_equal(lm.nearest(q, k=3), brute)
    assert lm.place(q).shape == (7, 2)
    with pytest.raises(FcinvError):
        lm.nearest(np.zeros((1, 5)))


def test_load_model_at_the_top_level():
    import fcinv_widgets

    assert fcinv_widgets.load_model("ge-vae").kind == "vae"


def test_fold_points_is_a_dataclass():
    import dataclasses

    from fcinv_widgets.sqe import FoldPoints

    names = [f.name for f in dataclasses.fields(FoldPoints)]
    assert names[:3] == ["Q", "qbin", "iq"] and "amp" in names
    pts = FoldPoints(
        np.zeros((2, 3)),
        np.zeros(2, int),
        np.zeros(2, int),
        np.ones((2, 3)),
        np.ones(2),
        0.1,
        np.zeros((1, 3)),
        np.ones((1, 6)),
        np.ones((2, 6)),
        1,
    )
    assert pts.n == 2 and pts.Q32.dtype == np.float32
    with pytest.raises(dataclasses.FrozenInstanceError):
        pts.Q = np.zeros((3, 3))
