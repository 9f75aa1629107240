"""benchmarks/device_check.sh stops at once, with one clear line, where there is no GPU."""

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
