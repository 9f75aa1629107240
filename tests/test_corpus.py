"""A corpus of bad inputs (issue 12 §3): every row must end with exactly one line on stderr,
``fcinv <cmd>: error: …`` naming the problem, exit code 2, no traceback, and nothing
written or changed. Keep it growing: add a row for every bad input found.

The corpus runs in-process (``cli.main``) so that it stays fast; rows are ordered so that
most fail before any forward model is built.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from fcinv_widgets.cli import main
from fcinv_widgets.materials import data_path

GE_POSCAR = str(data_path("ge", "POSCAR"))
GE_FC = str(data_path("ge", "FORCE_CONSTANTS_DFT"))


# ----------------------------------------------------------------------------- bad files
@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """A folder of bad inputs (and a few good ones to combine them with)."""
    d = tmp_path_factory.mktemp("corpus")
    good = np.ones((140, 140))
    good[10:20, 30:40] = 2.0
    np.save(d / "good.npy", good)
    np.save(d / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (d / "trunc.npy").write_bytes((d / "good.npy").read_bytes()[:1000])
    np.save(d / "str.npy", np.full((140, 140), "a"))
    np.save(d / "cplx.npy", good.astype(complex))
    np.save(d / "inf.npy", np.full((140, 140), np.inf))
    np.save(d / "nan.npy", np.full((140, 140), np.nan))
    np.save(d / "shape.npy", np.random.default_rng(0).random((140, 139)))  # not constant: only the shape is wrong
    from fcinv_widgets.measurement import save_bank

    save_bank(d / "oldbank.npz", np.ones((2, 140, 140), bool), {"material": "Ge", "n": 2})  # no geometry (before session 16)
    # damaged coverage banks (session 23): float masks, a meta that is not an object, a zip bomb
    np.savez_compressed(d / "bank_float.npz", masks=np.zeros((2, 140, 18)), shape=np.array([2, 140, 140]), meta=np.array("{}"))
    np.savez_compressed(
        d / "bank_metalist.npz", masks=np.zeros((2, 140, 18), np.uint8), shape=np.array([2, 140, 140]), meta=np.array("[1]")
    )
    np.savez_compressed(  # ~130 kB on disk, declares 134 M values (1.08 GB as float64, past MAX_READ_BYTES)
        d / "bank_bomb.npz", masks=np.zeros((1200, 140, 800), np.uint8), shape=np.array([1200, 140, 6400]), meta=np.array("{}")
    )
    np.savez(d / "pickled.npz", spectrum=np.array([{"a": 1}], dtype=object))
    np.savez(d / "good.npz", spectrum=good)
    (d / "trunc.npz").write_bytes((d / "good.npz").read_bytes()[:2000])
    np.savez(d / "str.npz", spectrum=np.full((140, 140), "a"))
    np.savez(d / "nokeys.npz", other=good)
    with h5py.File(d / "nodata.h5", "w") as f:
        f.attrs["format"] = "fcinv-spectrum"
    with h5py.File(d / "group.h5", "w") as f:
        f.attrs["format"] = "fcinv-spectrum"
        f.create_group("spectrum")
    with h5py.File(d / "foreign.h5", "w") as f:
        f["x"] = 1
    with h5py.File(d / "huge.h5", "w") as f:  # ~6 kB on disk, declares 10⁵ × 10⁵ doubles (80 GB)
        f.attrs["format"] = "fcinv-spectrum"
        f.create_dataset("spectrum", shape=(100_000, 100_000), dtype="f8")
    with h5py.File(d / "huge.nxs", "w") as f:
        f.create_dataset("MDHistoWorkspace/data/signal", shape=(100_000, 100_000), dtype="f8")
    with h5py.File(d / "badattr.nxs", "w") as f:
        s = f.create_dataset("MDHistoWorkspace/data/signal", data=np.ones((140, 1, 140)))
        s.attrs["axes"] = np.array([1, 2, 3])
    with h5py.File(d / "strdata.h5", "w") as f:
        f.attrs["format"] = "fcinv-spectrum"
        f["spectrum"] = np.full((140, 140), b"a")
    with h5py.File(d / "ds_nosplit.h5", "w") as f:
        f.attrs.update({"format": "fcinv-dataset", "material": "Ge"})
        f["param_names"] = np.array([b"a"] * 8)
        f["domain"] = np.tile([-1.0, 1.0], (8, 1))
        f["grid/energy_centers_mev"] = np.arange(140.0)
        f["grid"].attrs["labels"] = "[]"
    with h5py.File(d / "ds_lying.h5", "w") as f:  # says 10⁵ spectra are done, holds 2
        f.attrs.update({"format": "fcinv-dataset", "material": "Ge"})
        f["param_names"] = np.array([b"a"] * 8)
        f["domain"] = np.tile([-1.0, 1.0], (8, 1))
        f["grid/energy_centers_mev"] = np.arange(140.0)
        f["grid"].attrs["labels"] = "[]"
        f.create_dataset("test/spectra", data=np.zeros((2, 140, 140), np.float32))
        f["test/params"] = np.zeros((2, 8))
        f["test"].attrs["n_done"] = 100_000
    shutil.copy(d / "ds_lying.h5", d / "ds_ndone_text.h5")
    with h5py.File(d / "ds_ndone_text.h5", "r+") as f:  # found by fuzzing (session 23): int('1e9') traceback
        f["test"].attrs["n_done"] = "1e9x"
    for name, change in {  # found by fuzzing (session 23): R² NaN without a word, or tracebacks
        "ds_params_nan": lambda f: f["test/params"].__setitem__((0, 0), np.nan),
        "ds_params_text": lambda f: (f.__delitem__("test/params"), f.create_dataset("test/params", data=np.full((2, 8), b"a"))),
        "ds_domain_flipped": lambda f: f["domain"].__setitem__(0, [1.0, -1.0]),
        # found by the ML probe (session 46): 1e300 labels evaluated with overflow warnings and exit 0
        "ds_params_huge": lambda f: f["test/params"].__setitem__((1, 3), 1e300),
    }.items():
        shutil.copy(d / "ds_lying.h5", d / f"{name}.h5")
        with h5py.File(d / f"{name}.h5", "r+") as f:
            f["test"].attrs["n_done"] = 2
            change(f)
    (d / "text.txt").write_text("hello\n")
    (d / "garbage.h5").write_text("not hdf5\n")
    (d / "adir").mkdir()
    # force constants: absurd size, and NaN
    lines = Path(GE_FC).read_text().splitlines()
    head, body = lines[0], lines[1:]
    scaled = [head] + [(" ".join(f"{1e6 * float(x):.6f}" for x in ln.split()) if len(ln.split()) == 3 else ln) for ln in body]
    (d / "FC_huge").write_text("\n".join(scaled) + "\n")
    # the right shape, another atom order (session 41): the supercell columns shuffled
    from fcinv_widgets.fcio import read_force_constants, write_force_constants

    fc = read_force_constants(GE_FC)
    write_force_constants(d / "FC_shuffled", fc[:, np.random.default_rng(1).permutation(fc.shape[1])])
    # a training folder with a truncated and a foreign resume state
    (d / "run_trunc").mkdir()
    (d / "run_trunc" / "train_state.pt").write_bytes(b"PK\x03\x04 truncated")
    (d / "run_foreign").mkdir()
    import torch

    torch.save(
        {"net": {"w": torch.zeros(3)}, "opt": {}, "best": None, "epoch": 1, "best_loss": 1.0, "bad": 0, "history": "[]"},
        d / "run_foreign" / "train_state.pt",
    )
    return d


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    """A real (tiny) Ge dataset made by the CLI: 4 training and 4 test spectra."""
    out = tmp_path_factory.mktemp("ds") / "ds.h5"
    assert (
        main(
            [
                "dataset",
                "--material",
                "Ge",
                "--n-train",
                "12",
                "--n-test",
                "12",
                "--candidates",
                "256",
                "--out",
                str(out),
                "--no-progress",
                "--json",
            ]
        )
        == 0
    )
    return out


# ----------------------------------------------------------------------------- the corpus
# (argv, a substring of the one error line); "{d}" is the folder of bad files, "{ds}" a tiny real dataset
#: fcinv train with the measurement model, for the single-scan S(Q,E) weighting's bad inputs
TRAIN_SCAN = ["train", "--dataset", "{ds}", "--out", "{d}/run_s", "--augment"]
CORPUS = [
    # --- output paths
    (["simulate", "--material", "Ge", "--out", "{d}/missing/x.h5"], "does not exist"),
    (["simulate", "--material", "Ge", "--out", "{d}/adir"], "is a folder"),
    (["simulate", "--material", "Ge", "--out", "{d}/text.txt"], "not an HDF5 file"),
    (["simulate", "--material", "Ge", "--out", "{d}/good.npy"], "will not overwrite"),
    (["simulate", "--material", "Ge", "--out", "{d}/ds_lying.h5"], "'fcinv-dataset'"),
    (["simulate", "--material", "Ge", "--out", "/proc/fcinv-x.h5"], "cannot write"),
    (["simulate", "--material", "Ge", "--out", ""], "--out is empty"),
    (["scans", "--material", "Ge", "--ei", "80", "--out", "{d}/adir"], "is a folder"),
    (["dataset", "--material", "Ge", "--out", "{d}/text.txt"], "not an HDF5 file"),
    (["noise-grid", "--model", "ge-vae", "--dataset", "{d}/garbage.h5", "--out", "{d}/good.npz"], "will not overwrite"),
    (["train", "--dataset", "{d}/garbage.h5", "--out", "{d}/text.txt"], "not a folder"),
    (["latent", "--model", "ge-vae", "--dataset", "{d}/garbage.h5", "--out", "{d}/missing/deeper/run"], "does not exist"),
    (["evaluate", "--model", "ge-vae", "--dataset", "{d}/garbage.h5", "--parity", "{d}/adir"], "is a folder"),
    (["ensemble", "--material", "Ge", "--out", "{d}/adir"], "is a folder"),
    (["ensemble", "--material", "Ge", "--out", "{d}/e.h5", "--summary", "{d}/missing/s.json"], "does not exist"),
    # --- numeric option ranges and choices
    (["bench", "forward", "--batch", "0"], "--batch: must be a positive integer"),
    (["bench", "forward", "--batch", "-5"], "--batch: must be a positive integer"),
    (["bench", "forward", "--batch", "ten"], "--batch: must be a positive integer"),
    (["bench", "forward", "--phonopy-sets", "0"], "--phonopy-sets"),
    (["bench", "forward", "--backend", "bogus"], "invalid choice: 'bogus'"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--lr", "-1"], "--lr: must be a finite number > 0"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--lr", "nan"], "--lr: must be a finite number > 0"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--lr", "inf"], "--lr"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--latent", "0"], "--latent"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--supervise", "-1"], "--supervise: must be a finite number > 0"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--supervise", "nan"], "--supervise"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--model", "resnet", "--supervise", "5"], "--model vae only"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--regressor-only", "--supervise", "5"], "not with --regressor-only"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--sqe-weights", "0.5"], "apply with --augment only"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--augment", "--sqe-weights", "1.5"], "--sqe-weights is a fraction"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--augment", "--sqe-weights", "nan"], "--sqe-weights is a fraction"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--clean-fraction", "0.5"], "apply with --augment only"),
    (
        ["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--augment", "--clean-fraction", "-0.1"],
        "--clean-fraction is a fraction",
    ),
    (
        ["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--augment", "--clean-fraction", "inf"],
        "--clean-fraction is a fraction",
    ),
    (
        ["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--augment", "--regressor-only", "--sqe-weights", "0.5"],
        "not with --regressor-only",
    ),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--max-train", "-5"], "--max-train"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--model", "resnet", "--width", "0"], "--width"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--threads", "-2"], "--threads"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--reg-epochs", "0"], "--reg-epochs"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--epochs", "0"], "--epochs"),
    (["train", "--dataset", "{d}/x.h5", "--out", "{d}/run", "--device", "tpu"], "invalid choice"),
    (["train", "--dataset", "{d}/x.h5"], "required: --out"),
    (["latent", "--model", "ge-vae", "--dataset", "{d}/x.h5", "--out", "{d}/lat", "--neighbors", "0"], "--neighbors"),
    (["latent", "--model", "ge-vae", "--dataset", "{d}/x.h5", "--out", "{d}/lat", "--neighbors", "1"], "--neighbors must be ≥ 2"),
    (["dataset", "--material", "Ge", "--out", "{d}/d2.h5", "--scheduler", "local:abc"], "local:N"),
    (["dataset", "--material", "Ge", "--out", "{d}/d2.h5", "--scheduler", "local:0"], "local:N"),
    (["dataset", "--material", "Ge", "--out", "{d}/d2.h5", "--n-train", "-1"], "--n-train"),
    (["dataset", "--material", "Ge", "--out", "{d}/d2.h5", "--sigma", "0"], "--sigma"),
    (["noise-grid", "--model", "ge-vae", "--dataset", "{d}/x.h5", "--out", "{d}/n.h5", "--scheduler", ""], "--scheduler"),
    (["phonons", "--structure", GE_POSCAR, "--supercell", "-2", "2", "2", "--qpoints", "0 0 0"], "--supercell"),
    (["phonons", "--structure", GE_POSCAR, "--supercell", "0", "2", "2", "--qpoints", "0 0 0"], "--supercell"),
    (["phonons", "--material", "Ge", "--params=", "--qpoints", "0 0 0"], "--params needs 8 values"),
    (["simulate", "--material", "Ge", "--params=", "--out", "{d}/x.h5"], "--params needs 8 values"),
    (["simulate", "--material", "Ge", "--sigma", "-1", "--out", "{d}/x.h5"], "--sigma"),
    (["simulate", "--material", "Ge", "--noise", "0.1", "--out", "{d}/x.h5"], "--noise: must be 'B,P'"),
    (["simulate", "--material", "Ge", "--noise", "0.1,-5", "--out", "{d}/x.h5"], "--noise"),
    (["simulate", "--material", "Ge", "--temperature", "-3", "--out", "{d}/x.h5"], "--temperature"),
    (["scans", "--material", "Ge", "--ei", "nan", "--out", "{d}/s.h5"], "--ei"),
    (["scans", "--material", "Ge", "--ei", "1e12", "--out", "{d}/s.h5"], "at most 1500 meV"),
    (["simulate", "--material", "Ge", "--full-sqe", "--ei", "1e12", "--out", "{d}/x.h5"], "at most 1500 meV"),
    (["plan-scans", "--model", "ge-vae", "--ei", "1e12", "--candidates", "0:30:10"], "at most 1500 meV"),
    (["refine", "--spectrum", "{d}/good.npy", "--ei", "1e12"], "at most 1500 meV"),
    (
        ["scans", "--material", "Ge", "--ei", "1000", "--qmax", "40", "--angles", "0", "--out", "{d}/s.h5"],
        "ask for a smaller qmax",
    ),
    (["domain", "--material", "Ge", "--seed", "-1"], "--seed: must be an integer ≥ 0"),
    (["scans", "--material", "Ge", "--ei", "80", "--angles", "0,10,0", "--out", "{d}/s.h5"], "0° is listed more than once"),
    (["scans", "--material", "Ge", "--ei", "80", "--angles=-10,350", "--out", "{d}/s.h5"], "-10° is listed more than once"),
    (["trust-calibrate", "--model", "ge-vae", "--angles", "1,1"], "1° is listed more than once"),
    (["trust-calibrate", "--model", "ge-vae", "--ei", "1e12"], "at most 1500 meV"),
    (["mask-bank", "--material", "Ge", "--ei", "60", "--out", "{d}/bank.npz"], "larger than the grid's largest energy"),
    (["mask-bank", "--material", "Ge", "--ei", "2e3", "--out", "{d}/bank.npz"], "at most 1500 meV"),
    (["mask-bank", "--material", "Ge", "--angles", "0:90:0", "--out", "{d}/bank.npz"], "--angles must be"),
    (["mask-bank", "--out", "{d}/bank.npz"], "give --material"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/good.npy", "--n-samples", "0"], "--n-samples"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/good.npy", "--clip", "-1"], "--clip"),
    (["refine", "--spectrum", "{d}/good.npy", "--max-iter", "0"], "--max-iter"),
    (["refine", "--spectrum", "{d}/good.npy", "--stiffness", "free"], "--stiffness applies to the S(Q,E) fit"),
    (["refine", "--spectrum", "{d}/good.npy", "--stiffness", "soft"], "--stiffness"),
    (["refine", "--spectrum", "{d}/good.npy", "--check-sigma", "3"], "--check-sigma applies to the S(Q,E) fit"),
    (["refine", "--spectrum", "{d}/good.npy", "--check-sigma", "1"], "--check-sigma takes 2–200 draws"),
    (["refine", "--spectrum", "{d}/good.npy", "--check-sigma", "0"], "--check-sigma"),
    (["refine", "--spectrum", "{d}/good.npy", "--scheduler", "local:2"], "--scheduler and --seed are --check-sigma's"),
    (["refine", "--spectrum", "{d}/good.npy", "--seed", "3"], "--scheduler and --seed are --check-sigma's"),
    (["refine", "--spectrum", "{d}/good.npy", "--check-sigma", "3", "--seed", "-1"], "--seed must be a whole number"),
    (["basis", "--material", "Ge", "--top", "0"], "--top"),
    (["ensemble", "--material", "Ge", "--out", "{d}/e.h5", "--workers", "0"], "--workers"),
    (["ensemble", "--material", "Ge", "--out", "{d}/e.h5", "--displacement", "-0.01"], "--displacement"),
    # --- input files
    (["invert", "--model", "ge-vae", "--spectrum", "{d}"], "is a folder, not a file"),  # session 40
    (["invert", "--model", "ge-vae", "--spectrum", "/dev/null"], "/dev/null is not a regular file"),
    (["basis", "--structure", "{d}"], "structure file: "),
    (["phonons", "--structure", GE_POSCAR, "--force-constants", "{d}", "--qpoints", "0 0 0"], "is a folder, not a file"),
    (["infer-scans", "--model", "ge-vae", "--scans", "/dev/null"], "scan-set file: /dev/null is not a regular file"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/pickled.npy"], "object (pickled)"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/trunc.npy"], "trunc.npy: cannot read it"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/str.npy"], "string values"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/cplx.npy"], "complex values"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/inf.npy"], "inf"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/nan.npy"], "all NaN"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/shape.npy"], "139 energy bins"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/pickled.npz"], "object (pickled)"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/trunc.npz"], "trunc.npz: cannot read it"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/str.npz"], "string values"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/nokeys.npz"], "neither a 'spectrum' array"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/nodata.h5"], "no dataset /spectrum"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/group.h5"], "no dataset /spectrum"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/foreign.h5"], "not an fcinv spectrum file"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/garbage.h5"], "cannot read"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/huge.h5"], "declares 100000×100000"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/huge.nxs"], "declares 100000×100000"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/badattr.nxs"], "'axes' attribute"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/strdata.h5"], "byte-string values"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/text.txt"], "unknown spectrum format"),
    (["invert", "--model", "ge-vae", "--spectrum", "{d}/absent.npy"], "not found"),
    (["invert", "--model", "{d}/text.txt", "--spectrum", "{d}/good.npy"], "not a readable fcinv model checkpoint"),
    (["invert", "--model", "{d}/garbage.h5", "--spectrum", "{d}/good.npy"], "not a readable fcinv model checkpoint"),
    (["refine", "--spectrum", "{d}/trunc.npz"], "cannot read"),
    (["refine", "--spectrum", "{d}/huge.nxs"], "declares 100000×100000"),
    (["ood-calibrate", "--model", "ge-vae-paper", "--mask-bank", "{d}/good.npz"], "--mask-bank is used only"),
    (["ood-calibrate", "--model", "ge-vae-paper", "--augmented"], "not trained with a measurement model"),
    (["ood-calibrate", "--model", "ge-vae", "--augmented", "--mask-bank", "{d}/good.npz"], "not a coverage-bank file"),
    (["sigma-calibrate", "--model", "ge-vae-paper", "--dataset", "{d}/good.npz", "--out", "{d}/sc"], "no σ to calibrate"),
    (["sigma-calibrate", "--model", "ge-vae", "--dataset", "{d}/garbage.h5", "--out", "{d}/sc"], "as HDF5"),
    (["sigma-calibrate", "--model", "ge-vae", "--dataset", "{d}/ds_nosplit.h5", "--out", "{d}/sc"], "split"),
    (["sigma-calibrate", "--model", "ge-vae", "--dataset", "{d}/good.npz", "--out", "{d}/text.txt"], "not a folder"),
    (["sigma-calibrate", "--model", "ge-vae", "--dataset", "{d}/garbage.h5", "--unseen", "0", "--out", "{d}/sc"], "--unseen"),
    (["sigma-calibrate", "--model", "ge-vae", "--dataset", "{d}/garbage.h5", "--unseen", "1e3", "--out", "{d}/sc"], "--unseen"),
    (["dataset", "--nuisance", "11", "--out", "{d}/nuis.h5"], "nuisance must be a scale"),
    (["dataset", "--nuisance", "-1", "--out", "{d}/nuis.h5"], "--nuisance"),
    (["dataset", "--reference", "bogus", "--out", "{d}/nuis.h5"], "--reference"),
    (["evaluate", "--model", "ge-vae", "--dataset", "{d}/garbage.h5"], "as HDF5"),
    (["evaluate", "--model", "ge-vae", "--dataset", "{d}/good.npz"], "as HDF5"),
    (["evaluate", "--model", "ge-vae", "--dataset", "{d}/ds_nosplit.h5"], "no complete 'test' split"),
    (["evaluate", "--model", "ge-vae", "--dataset", "{d}/ds_lying.h5"], "says 100000 spectra are done"),
    (["evaluate", "--model", "ge-vae", "--dataset", "{d}/ds_ndone_text.h5"], "n_done attribute must be a whole number"),
    (["evaluate", "--model", "ge-vae", "--dataset", "{d}/ds_params_nan.h5"], "/test/params: contains NaN"),
    (["evaluate", "--model", "ge-vae", "--dataset", "{d}/ds_params_text.h5"], "/test/params: byte-string values"),
    (["evaluate", "--model", "ge-vae", "--dataset", "{d}/ds_domain_flipped.h5"], "lower bound must lie below"),
    (
        ["evaluate", "--model", "ge-vae", "--dataset", "{d}/ds_params_huge.h5"],
        "row 1 gives a = 1e+300 eV/Å², outside the dataset's own domain",
    ),
    (["noise-grid", "--model", "ge-vae", "--dataset", "{d}/ds_ndone_text.h5", "--out", "{d}/ng.h5"], "must be a whole number"),
    (["infer-scans", "--model", "ge-vae", "--scans", "{d}/good.npz"], "cannot read"),
    (["phonons", "--structure", GE_POSCAR, "--force-constants", "{d}/FC_huge", "--qpoints", "0 0 0"], "eV/Å²"),
    (["phonons", "--structure", GE_POSCAR, "--force-constants", "{d}/text.txt", "--qpoints", "0 0 0"], "text.txt"),
    (["phonons", "--structure", GE_POSCAR, "--force-constants", "{d}/FC_shuffled", "--qpoints", "0 0 0"], "do not fit"),
    (["basis", "--material", "Ge", "--force-constants", "{d}/FC_shuffled"], "FC_shuffled: the force constants do not fit"),
    (["simulate", "--material", "Ge", "--force-constants", "{d}/FC_shuffled", "--out", "{d}/x.h5"], "do not fit"),
    (["train", "--dataset", "{ds}", "--out", "{d}/run_trunc", "--resume", "--epochs", "1"], "--resume"),
    (["noise-grid", "--model", "nb-vae", "--dataset", "{ds}", "--out", "{d}/ng.h5"], "the model is for Nb, the dataset for Ge"),
    (
        ["evaluate", "--model", "ge-vae-paper", "--dataset", "{ds}", "--allow-other-domain", "--sqe-weights", "0.5"],
        "apply with --augment only",
    ),
    (
        ["evaluate", "--model", "ge-vae-paper", "--dataset", "{ds}", "--allow-other-domain", "--augment", "--sqe-weights", "2"],
        "--sqe-weights is a fraction",
    ),
    (["train", "--dataset", "{ds}", "--out", "{d}/run_foreign", "--resume", "--epochs", "1"], "not a training state"),
    (["train", "--dataset", "{ds}", "--out", "{d}/run_s", "--sqe-scan-weights"], "apply with --augment only"),
    ([*TRAIN_SCAN, "--no-masks", "--sqe-weights", "0.5", "--sqe-scan-weights"], "--sqe-scan-weights needs"),
    ([*TRAIN_SCAN, "--regressor-only", "--sqe-weights", "0.5", "--sqe-scan-weights"], "not with --regressor-only"),
    (["train", "--dataset", "{ds}", "--out", "{d}/run_r", "--sqe-resolved-lines"], "apply with --augment only"),
    (
        ["evaluate", "--model", "ge-vae-paper", "--dataset", "{ds}", "--allow-other-domain", "--sqe-resolved-lines"],
        "--sqe-resolved-lines needs --augment",
    ),
    ([*TRAIN_SCAN, "--sqe-resolved-lines"], "--sqe-resolved-lines needs --sqe-weights"),
    ([*TRAIN_SCAN, "--regressor-only", "--sqe-weights", "0.5", "--sqe-resolved-lines"], "not with --regressor-only"),
    (
        [*TRAIN_SCAN, "--mask-bank", "{d}/oldbank.npz", "--sqe-weights", "0.5", "--sqe-scan-weights"],
        "does not record its geometry",
    ),
    ([*TRAIN_SCAN, "--mask-bank", "{d}/bank_float.npz"], "masks must be packed bits"),
    ([*TRAIN_SCAN, "--mask-bank", "{d}/bank_metalist.npz"], "meta is not a JSON object"),
    ([*TRAIN_SCAN, "--mask-bank", "{d}/bank_bomb.npz"], "more than this reader accepts"),
    # --- contradictions
    (["simulate", "--material", "Nb", "--structure", GE_POSCAR, "--force-constants", GE_FC, "--out", "{d}/x.h5"], "Nb"),
    (["simulate", "--material", "Ge", "--ei", "80", "--sigma", "2", "--out", "{d}/x.h5"], "not both"),
    (["refine", "--spectrum", "{d}/good.npy", "--ei", "80", "--sigma", "2"], "not both"),
    (["simulate", "--material", "Ge", "--ei", "30", "--out", "{d}/x.h5"], "Ei must be larger"),
    (["refine", "--spectrum", "{d}/good.npy", "--ei", "30"], "Ei must be larger"),
    (
        ["simulate", "--material", "Ge", "--params=-1e300,1e300,0,0,0,0,0,0", "--allow-unstable", "--out", "{d}/x.h5"],
        "no spectrum",
    ),
    (["simulate", "--material", "Ge", "--params=3,0,0,0,0,0,0,0", "--out", "{d}/x.h5"], "unstable"),
    (["simulate", "--material", "Ge", "--params=1,2,3,4,5,6,7,8", "--force-constants", GE_FC, "--out", "{d}/x.h5"], "not both"),
    (["invert", "--model", "nb-vae", "--spectrum", "{d}/good.npy"], "q-bins"),
    # --- any crystal in refine, fit-dispersion, plan-scans --sqe, domain (session 42)
    (["refine", "--spectrum", "{d}/good.npy", "--structure", GE_POSCAR], "needs --force-constants"),
    (["refine", "--spectrum", "{d}/good.npy", "--structure", GE_POSCAR, "--force-constants", "{d}/FC_shuffled"], "do not fit"),
    (["refine", "--spectrum", "{d}/good.npy", "--structure", GE_POSCAR, "--force-constants", "{d}/FC_huge"], "eV/Å²"),
    (
        ["refine", "--spectrum", "{d}/good.npy", "--structure", GE_POSCAR, "--force-constants", GE_FC, "--e-max", "1e9"],
        "between 5",
    ),
    (["refine", "--spectrum", "{d}/good.npy", "--structure", "{d}/text.txt", "--force-constants", GE_FC], "text.txt"),
    (["fit-dispersion", "--structure", GE_POSCAR, "--force-constants", GE_FC], "give --table"),
    (["fit-dispersion", "--structure", GE_POSCAR, "--force-constants", GE_FC, "--table", "{d}/text.txt"], "text.txt"),
    (["fit-dispersion", "--structure", GE_POSCAR, "--force-constants", GE_FC, "--table", "{d}/adir"], "adir"),
    (
        ["fit-dispersion", "--structure", GE_POSCAR, "--force-constants", GE_FC, "--reference", "dft", "--table", "x"],
        "--reference",
    ),
    (["plan-scans", "--ei", "80", "--candidates", "0,90"], "give --model"),
    (["plan-scans", "--sqe", "--ei", "80", "--structure", GE_POSCAR, "--force-constants", "{d}/FC_shuffled"], "do not fit"),
    (["plan-scans", "--sqe", "--ei", "80", "--model", "ge-vae", "--structure", GE_POSCAR], "--model names the crystal"),
    # --- the planner's scan fit finds a user's overall stiffness (session 44)
    (["plan-scans", "--model", "ge-vae", "--ei", "80", "--candidates", "0,90", "--stiffness", "free"], "--stiffness applies"),
    (["plan-scans", "--sqe", "--material", "Ge", "--ei", "80", "--candidates", "0,90", "--stiffness", "soft"], "--stiffness"),
    (["plan-scans", "--model", "ge-vae", "--ei", "80", "--candidates", "0,90", "--inactive", "fit"], "--inactive applies"),
    (["plan-scans", "--sqe", "--material", "Ge", "--ei", "80", "--candidates", "0,90", "--inactive", "all"], "--inactive"),
    (
        ["plan-scans", "--sqe", "--material", "Ge", "--ei", "80", "--candidates", "0,90", "--check-sigma", "3"],
        "--check-sigma applies",
    ),
    (["plan-scans", "--sqe", "--material", "Ge", "--ei", "80", "--candidates", "0,90", "--seed", "3"], "--check-sigma N"),
    (["plan-scans", "--sqe", "--material", "Ge", "--ei", "80", "--candidates", "0,90", "--check-sigma", "1"], "takes 2–200"),
    (["domain", "--structure", GE_POSCAR, "--force-constants", "{d}/text.txt"], "text.txt"),
]


def _ids(rows):
    return [f"{i:02d}-{a[0]}-{m[:24]}" for i, (a, m) in enumerate(rows)]


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def run_bad(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("argv,message", CORPUS, ids=_ids(CORPUS))
def test_bad_input_is_one_line_exit_2_nothing_written(capsys, bad, argv, message, request):
    ds = request.getfixturevalue("tiny_dataset") if any("{ds}" in a for a in argv) else None
    argv = [a.replace("{d}", str(bad)).replace("{ds}", str(ds)) for a in argv]
    capsys.readouterr()  # what the fixtures printed
    before = _snapshot(bad)
    rc, out, err = run_bad(capsys, argv)
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fcinv {argv[0]}: error: "), lines[0]
    assert message in lines[0], lines[0]
    assert "Traceback" not in err and out == ""
    assert _snapshot(bad) == before, "a failing command wrote or changed files"


def test_concurrent_writer_is_refused(capsys, bad):
    from fcinv_widgets.commands._common import output_lock

    target = bad / "locked.h5"
    with output_lock(target):  # another writer holds it
        rc, _, err = run_bad(capsys, ["simulate", "--material", "Ge", "--out", str(target)])
    assert rc == 2 and "in use by another process" in err and len(err.strip().splitlines()) == 1
    assert not target.exists()
    assert not list(bad.glob(".locked.h5.lock"))  # the lock file goes with its holder


def test_os_errors_at_the_write_site_are_one_line(capsys, bad, monkeypatch):
    import fcinv_widgets.spectrum_io as sio

    def denied(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(sio, "write_spectrum", denied)
    rc, _, err = run_bad(capsys, ["simulate", "--material", "Ge", "--out", str(bad / "p.h5")])
    assert rc == 2 and err.strip() == f"fcinv simulate: error: {bad / 'p.h5'}: Permission denied"

    def h5_fail(path, *a, **k):  # what h5py raises on a full disk or a locked file
        raise OSError(
            f"[Errno 28] Unable to synchronously create file (unable to open file: name = '{path}', "
            "errno = 28, error message = 'No space left on device', flags = 13, o_flags = 242)"
        )

    monkeypatch.setattr(sio, "write_spectrum", h5_fail)
    rc, _, err = run_bad(capsys, ["simulate", "--material", "Ge", "--out", str(bad / "p.h5")])
    assert rc == 2 and err.strip() == f"fcinv simulate: error: {bad / 'p.h5'}: No space left on device"


# root without the two capabilities that let it ignore file permissions: the kernel then checks
# them for root as for any owner, so a read-only folder gives a real EACCES
DROP_DAC = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"]


def _as_root_without_dac_override(ro: Path) -> list[str]:
    """The command prefix under which root cannot write into ``ro`` (checked with a probe write),
    or skip the test naming why that cannot be arranged here."""
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: cannot drop CAP_DAC_OVERRIDE")
    probe = subprocess.run([*DROP_DAC, sys.executable, "-c", f"open({str(ro / 'probe')!r}, 'w')"], capture_output=True, text=True)
    if (ro / "probe").exists() or "PermissionError" not in probe.stderr:
        (ro / "probe").unlink(missing_ok=True)
        pytest.skip(
            f"running as root and dropping CAP_DAC_OVERRIDE with setpriv did not deny a write: {probe.stderr.strip()[-200:]}"
        )
    return DROP_DAC


def test_read_only_folder(capsys, bad):
    """An output in a folder without write permission: one line, exit 2, nothing written. As root
    (which ignores permissions) the command runs as root without CAP_DAC_OVERRIDE, a real
    EACCES, in a subprocess."""
    ro = bad / "ro"
    ro.mkdir(exist_ok=True)
    ro.chmod(0o555)
    argv = ["simulate", "--material", "Ge", "--out", str(ro / "x.h5")]
    try:
        if os.geteuid() != 0:
            rc, _, err = run_bad(capsys, argv)
        else:
            prefix = _as_root_without_dac_override(ro)
            r = subprocess.run([*prefix, sys.executable, "-m", "fcinv_widgets.cli", *argv], capture_output=True, text=True)
            rc, err = r.returncode, r.stderr
    finally:
        ro.chmod(0o755)
    assert rc == 2 and "no permission to write" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert list(ro.iterdir()) == []


def test_interrupt_is_quiet(capsys, monkeypatch):
    """Ctrl-C: one line, exit 130; a second Ctrl-C while reporting is ignored (no traceback)."""
    import fcinv_widgets.commands.basis as basis_cmd

    seen = {}

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(basis_cmd, "run", interrupted)
    old = signal.getsignal(signal.SIGINT)
    try:
        rc, out, err = run_bad(capsys, ["basis", "--material", "Ge"])
        seen["handler"] = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, old)
    assert rc == 130 and err.strip() == "fcinv basis: interrupted" and out == ""
    assert seen["handler"] is signal.SIG_IGN


def test_json_is_strict(capsys):
    """--allow-unstable on an unstable set: never NaN/-Infinity in the JSON."""
    from fcinv_widgets.commands._common import json_dumps

    text = json_dumps({"a": float("-inf"), "b": [np.nan, 1.0], "c": np.float32(2.5), "d": np.array([np.inf])})
    assert json.loads(text) == {"a": None, "b": [None, 1.0], "c": 2.5, "d": [None]}


# ----------------------------------------------------------------------------- widgets
BAD_THETAS = [["a"] * 8, [float("nan")] * 8, "x", None, [1.0] * 3, {"a": 1}]


@pytest.mark.parametrize("value", BAD_THETAS, ids=[repr(v)[:12] for v in BAD_THETAS])
def test_fc_explorer_refuses_bad_theta_and_keeps_state(value):
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.widgets import FCExplorer
    from fcinv_testing.fakes import FakeMaterial

    fx = FCExplorer(FakeMaterial())
    good, frame = list(fx.widget.values), fx.widget.frame
    with pytest.raises(FcinvError):
        fx.theta = value
    assert fx.widget.values == good and fx.widget.frame == frame


@pytest.mark.parametrize(
    "value",
    ["abc", np.full((60, 50), np.nan), np.full((60, 50), "a"), np.full((60, 50), 1j)],
    ids=["text", "all-nan", "strings", "complex"],
)
def test_fc_explorer_refuses_bad_compare(value):
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.widgets import FCExplorer
    from fcinv_testing.fakes import FakeMaterial

    fx = FCExplorer(FakeMaterial())
    with pytest.raises(FcinvError):
        fx.compare(value)
    assert fx.widget.compare is None


def test_noise_grid_widget_refuses_bad_values():
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.widgets import NoiseGridExplorer

    with pytest.raises(FcinvError):
        NoiseGridExplorer({})
    from fcinv_testing.fakes import fake_noise_grid

    ng = NoiseGridExplorer(fake_noise_grid())
    ng.select(0, 0)
    for args in (("a", 0), (0.5, 0), (None, 1)):
        with pytest.raises(FcinvError):
            ng.select(*args)
    from traitlets import TraitError

    fc = ng.widget.fc
    for bad_fc in ("x", 1.5, None, 99):
        with pytest.raises((FcinvError, TraitError)):
            ng.widget.fc = bad_fc
    assert ng.selected == (0, 0) and ng.widget.fc == fc


# ----------------------------------------------------------------------------- --json everywhere
def _json_argv(name, w):
    """A cheap valid invocation of each subcommand; ``w`` holds the files made along the way."""
    return {
        "basis": ["basis", "--material", "Ge"],
        "phonons": ["phonons", "--material", "Ge", "--qpoints", "0 0 0, 0.5 0 0.5"],
        "simulate": ["simulate", "--material", "Ge", "--out", w["spectrum"]],
        "invert": ["invert", "--model", "ge-vae", "--spectrum", w["spectrum"], "--n-samples", "2"],
        "refine": ["refine", "--spectrum", w["spectrum"], "--max-iter", "2"],
        "bench": ["bench", "forward", "--batch", "8", "--phonopy-sets", "1"],
        "dataset": [
            "dataset",
            "--material",
            "Ge",
            "--n-train",
            "2",
            "--n-test",
            "0",
            "--candidates",
            "256",
            "--out",
            w["new_dataset"],
            "--no-progress",
        ],
        "train": [
            "train",
            "--dataset",
            w["dataset"],
            "--out",
            w["run"],
            "--epochs",
            "1",
            "--reg-epochs",
            "1",
            "--latent",
            "2",
            "--batch-size",
            "4",
            "--threads",
            "1",
            "--augment",
            "--no-masks",
        ],
        "sigma-calibrate": ["sigma-calibrate", "--model", w["run"], "--dataset", w["dataset"], "--out", w["recal"]],
        "evaluate": ["evaluate", "--model", "ge-vae", "--dataset", w["dataset"], "--n-samples", "2", "--allow-other-domain"],
        "noise-grid": ["noise-grid", "--model", "ge-resnet", "--dataset", w["dataset"], "--max-test", "2", "--out", w["noise"]],
        "latent": ["latent", "--model", "ge-vae", "--dataset", w["dataset"], "--out", w["latent"], "--neighbors", "2"],
        "scans": [
            "scans",
            "--material",
            "Ge",
            "--ei",
            "80",
            "--angles",
            "0,60",
            "--qmax",
            "3",
            "--out",
            w["scans"],
            "--no-progress",
        ],
        "infer-scans": ["infer-scans", "--model", "ge-vae", "--scans", w["scans"], "--n-samples", "2"],
        "ensemble": ["ensemble", "--list"],
        "domain": ["domain", "--material", "Ge", "--samples", "200"],
        "fit-dispersion": ["fit-dispersion", "--material", "Ge"],
        "ood-calibrate": ["ood-calibrate", "--model", "ge-vae", "--dataset", w["dataset"], "--out", w["ood"], "--no-progress"],
        "plan-scans": ["plan-scans", "--model", "ge-vae", "--ei", "80", "--candidates", "0,90", "--n", "1", "--no-progress"],
        "mask-bank": ["mask-bank", "--material", "Ge", "--angles", "0,90", "--qmax", "3", "--out", w["bank"], "--no-progress"],
        "trust-calibrate": [
            "trust-calibrate",
            "--model",
            "ge-resnet",
            "--truths",
            "2",
            "--angles",
            "0:90:10",  # 2 truths × (full data + 9 scans): the 20 cases a limit needs
            "--cells",
            "0.05,300",
            "--qmax",
            "3",
        ],
    }[name]


JSON_ORDER = [
    "basis",
    "phonons",
    "simulate",
    "invert",
    "refine",
    "bench",
    "dataset",
    "train",
    "sigma-calibrate",
    "evaluate",
    "noise-grid",
    "latent",
    "scans",
    "infer-scans",
    "ensemble",
    "domain",
    "fit-dispersion",
    "ood-calibrate",
    "plan-scans",
    "mask-bank",
    "trust-calibrate",
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_dataset):
    d = tmp_path_factory.mktemp("json")
    w = {
        k: str(d / v)
        for k, v in {
            "spectrum": "s.h5",
            "new_dataset": "ds.h5",
            "run": "run",
            "noise": "ng.h5",
            "latent": "lat",
            "scans": "sc.h5",
            "ood": "ood.json",
            "recal": "recal",
            "bank": "bank.npz",
        }.items()
    }
    return w | {"dataset": str(tiny_dataset)}


def test_every_subcommand_is_covered():
    from fcinv_widgets.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(JSON_ORDER)


@pytest.mark.parametrize("name", JSON_ORDER)
def test_json_stdout_parses(capsys, workspace, name, request):
    if name == "latent":
        if not os.environ.get("FCINV_TEST_UMAP"):
            pytest.skip("UMAP's first import and fit compile numba (~40 s): set FCINV_TEST_UMAP=1")
        pytest.importorskip("umap")
    needs = {
        "invert": "spectrum",
        "refine": "spectrum",
        "train": "dataset",
        "sigma-calibrate": "run",
        "evaluate": "dataset",
        "noise-grid": "dataset",
        "latent": "dataset",
        "infer-scans": "scans",
    }
    if name in needs and not Path(workspace[needs[name]]).exists():
        pytest.skip(f"needs the output of an earlier row ({needs[name]})")
    capsys.readouterr()  # what the fixtures printed
    rc = main(_json_argv(name, workspace) + ["--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    payload = json.loads(out)  # strict: the whole of stdout is one JSON document
    assert isinstance(payload, dict) and payload
    assert "NaN" not in out and "Infinity" not in out


def test_ensemble_json_with_a_stubbed_run(capsys, tmp_path, monkeypatch):
    """The material workflow prints JSON only (warnings go to stderr); the uMLFFs are stubbed."""
    import fcinv_widgets.ensemble.fcsets as fcsets

    def fake_run(specs, crystal, sc, qpoints, **kw):
        return [
            {"name": "stub", "family": "stub", "status": "skipped", "stable": False, "reason": "stubbed in tests", "timings": {}}
        ]

    monkeypatch.setattr(fcsets, "run_ensemble", fake_run)
    out_h5 = tmp_path / "e.h5"
    rc = main(["ensemble", "--material", "Ge", "--supercell", "2", "2", "2", "--serial", "--out", str(out_h5), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    d = json.loads(out)
    assert d["models"][0]["name"] == "stub" and out_h5.is_file()
