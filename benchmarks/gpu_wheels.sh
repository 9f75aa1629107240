#!/usr/bin/env bash
# Wheels that the GPU machines lent here lack (no package registry there; they ship CUDA torch,
# CuPy, numba, h5py, scipy, matplotlib, PyYAML, tqdm): what benchmarks/device_check.py imports,
# for their Python (3.12, x86-64), into .whl/ (git-ignored through .git/info/exclude), with the
# Ge coverage bank the augmented-epoch row uses. Session 26 ran on such a machine:
#   bash benchmarks/gpu_wheels.sh            # here, with a registry (6.6 MB)
#   device run, carry .whl:
#     python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#     PYTHONPATH=/tmp/site:$PWD python3 benchmarks/device_check.py --out /tmp/dc \
#         --mask-bank .whl/ge_masks.npz --cpu-threads 16 --n-train 10000
# Versions are this checkout's .venv's (the ones the tests ran with).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >>.git/info/exclude
plat=()
for p in manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 manylinux_2_31 manylinux_2_34 manylinux_2_35 manylinux2014 manylinux1; do
  plat+=(--platform "${p}_x86_64")
done
for pkg in phonopy phonors spglib seekpath ase isal periodictable symfc; do
  v=$("$PY" -m pip show "$pkg" 2>/dev/null | awk '/^Version:/{print $2}')
  [ -n "$v" ] || { echo "gpu_wheels: $pkg is not installed in $PY: run make venv first" >&2; exit 2; }
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d .whl "$pkg==$v"
done
"$PY" - <<'PYEOF'
from fcinv_widgets.materials import get_material
from fcinv_widgets.measurement import bank_geometry, coverage_bank, save_bank

mat = get_material("Ge")
masks = coverage_bank(mat, progress=False)
save_bank(".whl/ge_masks.npz", masks, {"material": mat.name, "n": len(masks)} | bank_geometry(mat))
PYEOF
du -sh .whl
