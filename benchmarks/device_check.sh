#!/usr/bin/env bash
# One GPU check for a machine with an NVIDIA GPU (about 5–8 minutes):
#   1. sets up .venv-gpu (reusing a preinstalled CUDA torch/CuPy through --system-site-packages,
#      else installing torch==2.13.0 from PyPI — its Linux wheel is the CUDA build — and
#      cupy-cuda12x), then this package;
#   2. benchmarks/device_check.py: CuPy and torch-on-CUDA images and frequencies against the
#      NumPy CPU kernel (tolerances printed), forward throughput (one array and streamed) on
#      GPU and CPU, and one training epoch of the VAE and the ResNet on GPU and CPU — all in
#      the same run. Figures go to stdout and out/device_check/device_check.json.
# Without a GPU it stops at once with one line on stderr and exit code 3.
#   usage: bash benchmarks/device_check.sh [--dry-run] [device_check.py options]
#   PYTHON=python3.11  VENV=.venv-gpu  WHEELHOUSE=/path/to/wheels (offline: pip --no-index)
#   --dry-run: no GPU needed, nothing installed (uses $VENV as it is): torch on the CPU stands
#   in for CUDA, to check the script itself.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1

if [ "$DRY" = 0 ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q "GPU"; then
    echo "device_check: no NVIDIA GPU here (nvidia-smi is missing or lists no GPU): run it on a machine with one, or --dry-run to check the script" >&2
    exit 3
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi

PY=${PYTHON:-python3}
VENV=${VENV:-.venv-gpu}
PIPOPT=(-q)
if [ -n "${WHEELHOUSE:-}" ]; then PIPOPT+=(--no-index --find-links "$WHEELHOUSE"); fi
if [ "$DRY" = 0 ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv --system-site-packages "$VENV"
  fi
  VPY="$VENV/bin/python"
  if ! "$VPY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "device_check: installing torch==2.13.0 (CUDA build from PyPI)"
    "$VPY" -m pip install "${PIPOPT[@]}" "torch==2.13.0"
  fi
  if ! "$VPY" -c 'import cupy' 2>/dev/null; then
    echo "device_check: installing cupy-cuda12x"
    "$VPY" -m pip install "${PIPOPT[@]}" "cupy-cuda12x>=13"
  fi
  if ! "$VPY" -c 'import fcinv_widgets' 2>/dev/null; then
    echo "device_check: installing fcinv-widgets from this checkout"
    "$VPY" -m pip install "${PIPOPT[@]}" -e .
  fi
  "$VPY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || {
    echo "device_check: torch in $VENV does not see the GPU (a CPU-only torch on the system path?): remove $VENV or set VENV to a fresh folder" >&2
    exit 3
  }
else
  VPY="$VENV/bin/python"
  [ -x "$VPY" ] || VPY="$PY"
fi
echo "device_check: environment ready after $(( $(date +%s) - START )) s"
"$VPY" benchmarks/device_check.py "$@"
echo "device_check: $(( $(date +%s) - START )) s in all (budget: 8 min)"
