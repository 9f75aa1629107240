#!/usr/bin/env bash
# Peak resident memory (and wall time) of the commands a user runs most, as the README's
# "Measured figures at a glance" reports them: `bash benchmarks/bench_memory.sh [DIR]`
# (default: a new temporary folder; needs GNU time at /usr/bin/time and ../shared/reference/ge-dft
# or FCINV_GE_DFT=folder with POSCAR and FORCE_CONSTANTS). Prints one line per command.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FCINV="${FCINV:-$ROOT/.venv/bin/fcinv}"
DFT="${FCINV_GE_DFT:-$ROOT/../shared/reference/ge-dft}"
DIR="${1:-$(mktemp -d)}"
mkdir -p "$DIR" && cd "$DIR"
[ -x /usr/bin/time ] || { echo "bench_memory: needs GNU time at /usr/bin/time" >&2; exit 2; }
[ -f "$DFT/POSCAR" ] || { echo "bench_memory: no Ge first-principles files in $DFT (set FCINV_GE_DFT)" >&2; exit 2; }

measure() {  # label, then the fcinv arguments
    local label="$1"; shift
    /usr/bin/time -v "$FCINV" "$@" > /dev/null 2> time.txt || { tail -1 time.txt >&2; exit 1; }
    local rss wall
    rss=$(awk -F: '/Maximum resident/ {gsub(/ /, "", $2); print $2}' time.txt)
    wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' time.txt)
    awk -v l="$label" -v r="$rss" -v w="$wall" 'BEGIN {printf "%-40s peak %6.2f GB  wall %s\n", l, r / 1048576, w}'
}

"$FCINV" simulate --material Ge --structure "$DFT/POSCAR" --force-constants "$DFT/FORCE_CONSTANTS" \
    --full-sqe --ei 80 --temperature 5 --noise 0.05,300 --seed 3 --out m.h5 --json > /dev/null
measure "invert ge-vae (physics fit, default)" invert --model ge-vae --spectrum m.h5 --json
measure "invert ge-vae --no-refine" invert --model ge-vae --spectrum m.h5 --no-refine --json
measure "invert ge-resnet --no-refine" invert --model ge-resnet --spectrum m.h5 --no-refine --json
measure "dataset Ge 2,000 spectra" dataset --material Ge --n-train 2000 --n-test 0 --out d.h5 --no-progress --json
measure "train resnet, 1 epoch of 2,000" train --dataset d.h5 --model resnet --epochs 1 --out r1 --json
measure "train vae, 1 epoch of 2,000" train --dataset d.h5 --model vae --epochs 1 --out v1 --json
