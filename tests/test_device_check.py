"""benchmarks/device_check.sh stops at once, with one clear line, where there is no GPU; its
--dry-run takes every step but the CUDA ones on the CPU."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_without_a_gpu_it_stops_with_one_line(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("nvidia-smi is present: run benchmarks/device_check.sh itself")
    r = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_check.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=dict(os.environ, VENV=str(tmp_path / "venv")),
        check=False,
    )
    assert r.returncode == 3
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1 and "no NVIDIA GPU" in r.stderr
    assert not (tmp_path / "venv").exists()  # nothing installed


def test_the_python_part_refuses_without_cuda(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 3 and "no CUDA device" in r.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_dry_run_takes_every_step_but_cuda(tmp_path):
    """Set-up of its venv over this environment, the install of this checkout, then every section
    of device_check.py with torch on the CPU for CUDA and NumPy under CuPy's name, at small sizes."""
    torch = pytest.importorskip("torch")
    venv, out = tmp_path / "venv", tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(VENV=str(venv), PYTHON=sys.executable)
    sizes = ["--gpu-batch", "64", "--cpu-batch", "64", "--n-train", "64", "--phonopy-sets", "5"]
    sizes += ["--mask-bank", str(tmp_path / "ge_masks.npz"), "--cpu-threads", "1", "--loader-workers", "1"]  # bank: first use
    r = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_check.sh"), "--out", str(out), "--dry-run", *sizes],
        capture_output=True,
        text=True,
        timeout=840,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert f"{venv} made over the packages of {sys.prefix}" in r.stdout and (venv / "bin" / "python").exists()
    if not torch.cuda.is_available():
        assert "--dry-run: would install torch==2.13.0" in r.stdout
    report = json.loads((out / "device_check.json").read_text())
    assert report["ok"] and report["devices"]["fcinv_widgets"] == str(ROOT / "fcinv_widgets")  # this checkout's package
    assert not report["devices"]["cuda"] and report["devices"]["cupy_gpu"]  # the stand-ins
    eq = report["equality"]
    assert sorted((x["material"], x["resolution"], x["backend"].split()[0]) for x in eq) == sorted(
        (m, k, b) for m in ("Ge", "Nb") for k in ("constant", "arcs") for b in ("cupy", "torch")
    )
    assert all(x["ok"] for x in eq)
    assert all(x["torch_cuda_vs_cpu_rel"] <= 1e-6 for x in eq if x["backend"].startswith("torch"))
    tp = report["throughput"]
    assert [x["backend"] for x in tp] == ["numpy", "cupy", "torch"]
    assert all(x["one_array_per_s"] > 0 and x["streamed_per_s"] > 0 and x["phonopy_run_qpoints_per_s"] > 0 for x in tp)
    assert sorted((x["model"], x["device"]) for x in report["training"]) == [("resnet", "cpu"), ("vae", "cpu")]
    assert all(x["epoch_seconds"] > 0 for x in report["training"])
    aug = report["augmented_training"]
    assert [(x["recipe"], x["device"], x["loader_workers"]) for x in aug] == [("augmented", "cpu", 0), ("augmented", "cpu", 1)]
    assert all(x["epoch_seconds"] > 0 for x in aug)
    assert (tmp_path / "ge_masks.npz").is_file()
    assert "s in all (budget: 8 min)" in r.stdout
