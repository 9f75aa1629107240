#!/usr/bin/env bash
# One GPU check for a machine with an NVIDIA GPU (about 5–8 minutes):
#   1. sets up $VENV (.venv-gpu): a venv that sees the packages of $PYTHON (python3) — also
#      when $PYTHON is itself a venv, as on images that ship CUDA torch/CuPy in one — through a
#      .pth file; installs torch==2.13.0 (its Linux wheel on PyPI is the CUDA build) only when
#      no torch there sees the GPU, cupy-cuda12x only when no CuPy imports, then this checkout
#      (editable) unless it is the fcinv_widgets that $VENV already imports;
#   2. benchmarks/device_check.py: CuPy and torch-on-CUDA images and frequencies against the
#      NumPy CPU kernel (tolerances printed), forward throughput (one array and streamed) on
#      GPU and CPU, and one training epoch of the VAE and the ResNet on GPU and CPU — all in
#      the same run. Figures go to stdout and out/device_check/device_check.json.
# Without a GPU it stops at once with one line on stderr and exit code 3.
#   usage: bash benchmarks/device_check.sh [--dry-run] [device_check.py options]
#   PYTHON=python3  VENV=.venv-gpu  WHEELHOUSE=/path/to/wheels (offline: pip --no-index, and the
#   build backend, setuptools, from the environment: --no-build-isolation)
#   A machine with CUDA torch and CuPy but no package registry (as the GPU machines lent here)
#   needs WHEELHOUSE holding this package's other dependencies for its Python (phonopy, spglib,
#   seekpath, ase, dask, distributed, anywidget, ipywidgets, umap-learn, periodictable and theirs).
#   --dry-run (anywhere among the options): no GPU needed, to check this script on a CPU
#   machine. Every step runs except the CUDA ones: $VENV is set up the same way, but torch and
#   CuPy are not installed (a line says what would be); torch on the CPU stands in for CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
DRY=0
for a in "$@"; do [ "$a" = "--dry-run" ] && DRY=1; done

if [ "$DRY" = 0 ]; then
  gpus=$(nvidia-smi -L 2>/dev/null || true)  # not `nvidia-smi -L | grep -q`: with pipefail, an early grep exit fails it
  if [[ "$gpus" != *GPU* ]]; then
    echo "device_check: no NVIDIA GPU here (nvidia-smi is missing or lists no GPU): run it on a machine with one, or --dry-run to check the script" >&2
    exit 3
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi

PY=${PYTHON:-python3}
VENV=${VENV:-.venv-gpu}
PIPOPT=(-q)
if [ -n "${WHEELHOUSE:-}" ]; then PIPOPT+=(--no-index --find-links "$WHEELHOUSE"); fi
VPY="$VENV/bin/python"
if [ ! -x "$VPY" ]; then
  # --system-site-packages would show the packages of $PY's base interpreter, not of $PY when $PY
  # is a venv: name $PY's own site-packages (and the base's, when it sees them) in a .pth file.
  "$PY" -m venv --without-pip "$VENV"
  "$PY" -c 'import site; print("\n".join("import site; site.addsitedir(%r)" % p for p in site.getsitepackages()))' \
    >"$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_device_check_base.pth"
  echo "device_check: $VENV made over the packages of $("$PY" -c 'import sys; print(sys.prefix)')"
fi
if ! "$VPY" -m pip --version >/dev/null 2>&1; then
  "$VPY" -m ensurepip -q || {
    echo "device_check: no pip in $PY and no ensurepip to put one into $VENV: install pip (python3-pip/python3-venv)" >&2
    exit 3
  }
fi
offline() {
  echo "device_check: pip could not install $1 (no registry here? set WHEELHOUSE to a folder of wheels: see the header)" >&2
  exit 3
}
install() {  # what to install, why
  if [ "$DRY" = 1 ]; then
    echo "device_check: --dry-run: would install $1 ($2)"
  else
    echo "device_check: installing $1 ($2)"
    "$VPY" -m pip install "${PIPOPT[@]}" "$1" || offline "$1"
  fi
}
if ! "$VPY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  install "torch==2.13.0" "no torch that sees a GPU; the CUDA build from PyPI"
fi
if ! "$VPY" -c 'import cupy' 2>/dev/null; then
  install "cupy-cuda12x>=13" "no CuPy"
fi
# this checkout's package, not one installed from elsewhere (nor one on $PYTHONPATH)
here=$(pwd -P)
if ! (cd / && env -u PYTHONPATH "$VPY" -c 'import fcinv_widgets, os, sys; sys.exit(os.path.dirname(os.path.dirname(os.path.realpath(fcinv_widgets.__file__))) != sys.argv[1])' "$here") 2>/dev/null; then
  echo "device_check: installing fcinv-widgets from this checkout (editable)"
  BUILD=()
  if [ -n "${WHEELHOUSE:-}" ]; then BUILD=(--no-build-isolation); fi
  "$VPY" -m pip install "${PIPOPT[@]}" "${BUILD[@]}" -e . || offline "this checkout and its dependencies"
fi
if [ "$DRY" = 0 ]; then
  "$VPY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || {
    echo "device_check: torch in $VENV does not see the GPU (a CPU-only torch on the system path?): remove $VENV or set VENV to a fresh folder" >&2
    exit 3
  }
fi
echo "device_check: environment ready after $(( $(date +%s) - START )) s"
env -u PYTHONPATH "$VPY" benchmarks/device_check.py "$@"
echo "device_check: $(( $(date +%s) - START )) s in all (budget: 8 min)"
