"""GPU check (run through benchmarks/device_check.sh): CuPy / torch-on-CUDA against the NumPy
CPU kernel, forward throughput and one training epoch per model kind, GPU and CPU in one run.

Tolerances (the GPU paths evaluate exact dense Gaussians, the CPU kernel tabulated ones cut
at 4σ — the same comparison tests/test_forward.py makes with torch on the CPU):
  frequencies            |Δ| ≤ 1e-6 meV (both float64, same closed-form eigenvalues)
  raw images (per meV)   max|Δ| ≤ 1e-3 × max (constant σ), 2e-3 × max (ARCS resolution)
  normalised images      max|Δ| ≤ 2e-3 (constant σ), 3e-3 (ARCS)
  torch CUDA vs torch CPU  max|Δ| ≤ 1e-6 × max (the same dense algorithm, float64)
  stability flags        identical, except within 1e-6 meV of the −0.1 meV threshold
Exit code 0 when every check passes, 1 otherwise; 3 when no GPU is usable (unless --dry-run).

--dry-run (no GPU; checks this script): torch on the CPU stands in for CUDA (also in the torch
CUDA-against-CPU comparison) and NumPy, under CuPy's name (benchmarks/dry_run/cupy), for CuPy,
in this process and in the fcinv commands it runs, so every branch runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DRY_RUN_CUPY = Path(__file__).resolve().parent / "dry_run"

TOL = {
    "freq_mev": 1e-6,
    "raw": {"constant": 1e-3, "arcs": 2e-3},
    "norm": {"constant": 2e-3, "arcs": 3e-3},
    "torch_cuda_cpu": 1e-6,
}


def log(msg: str) -> None:
    print(msg, flush=True)


def devices(dry: bool) -> dict:
    import torch

    import fcinv_widgets

    info = {"torch": torch.__version__, "cuda": torch.cuda.is_available() and not dry}
    info["fcinv_widgets"] = str(Path(fcinv_widgets.__file__).resolve().parent)
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    try:
        import cupy

        info["cupy"] = cupy.__version__
        info["cupy_gpu"] = bool(cupy.cuda.is_available())
    except (ImportError, RuntimeError, OSError) as exc:  # not installed, no driver, no device
        info["cupy"] = None
        info["cupy_error"] = f"{type(exc).__name__}: {exc}"[:200]
        info["cupy_gpu"] = False
    info["cpu_cores"] = os.cpu_count()
    return info


def equality(dry: bool, cupy_ok: bool) -> list[dict]:
    """Images, frequencies and stability of the GPU back-ends against the NumPy CPU kernel."""
    from fcinv_widgets.materials import get_material

    rows = []
    for name in ("Ge", "Nb"):
        mat = get_material(name)
        rng = np.random.default_rng(11)
        lo, hi = mat.domain.T
        th = np.vstack([mat.reference_params[mat.active], rng.uniform(lo, hi, size=(63, len(lo)))])
        for kind, res in (("constant", None), ("arcs", ("arcs", 80.0 if name == "Ge" else 60.0))):
            cpu = mat.forward_model(resolution=res)
            f0 = cpu.frequencies(th)
            raw0 = cpu.spectra(th, normalize=False)
            img0, st0 = cpu.spectra(th, return_stable=True)
            emin = cpu.min_energy(th)
            backends = (["cupy"] if cupy_ok else []) + ["torch"]
            for be in backends:
                fm = mat.forward_model(resolution=res, backend=be)
                b = fm.backend
                t0 = time.perf_counter()
                f = b.to_numpy(fm.frequencies(th))
                raw = b.to_numpy(fm.spectra(th, normalize=False))
                img, st = fm.spectra(th, return_stable=True)
                img = b.to_numpy(img)
                seconds = time.perf_counter() - t0
                near = np.abs(emin + 0.1) < 1e-6
                row = {
                    "material": name,
                    "resolution": kind,
                    "backend": f"{be} ({b.device or 'gpu'})" if be == "torch" else be,
                    "freq_max_abs_mev": float(np.abs(f - f0).max()),
                    "raw_max_rel": float(np.abs(raw - raw0).max() / raw0.max()),
                    "norm_max_abs": float(np.abs(img - img0).max()),
                    "flags_equal": bool(np.array_equal(st[~near], st0[~near])),
                    "seconds": seconds,
                }
                row["ok"] = (
                    row["freq_max_abs_mev"] <= TOL["freq_mev"]
                    and row["raw_max_rel"] <= TOL["raw"][kind]
                    and row["norm_max_abs"] <= TOL["norm"][kind]
                    and row["flags_equal"]
                )
                if be == "torch" and (str(b.device).startswith("cuda") or dry):
                    from fcinv_widgets.backend import get_backend
                    from fcinv_widgets.forward import ForwardModel

                    fm_c = ForwardModel(
                        mat.basis,
                        mat.grid,
                        mat.reference_params,
                        mat.active,
                        resolution=res,
                        backend=get_backend("torch", device="cpu"),
                    )
                    raw_c = fm_c.backend.to_numpy(fm_c.spectra(th, normalize=False))
                    row["torch_cuda_vs_cpu_rel"] = float(np.abs(raw - raw_c).max() / raw_c.max())
                    row["ok"] = row["ok"] and row["torch_cuda_vs_cpu_rel"] <= TOL["torch_cuda_cpu"]
                rows.append(row)
                extra = f", torch {b.device} vs CPU {row['torch_cuda_vs_cpu_rel']:.1e}" if "torch_cuda_vs_cpu_rel" in row else ""
                log(
                    f"  {'ok  ' if row['ok'] else 'FAIL'} {name} {kind:8s} {row['backend']:18s} frequencies {row['freq_max_abs_mev']:.1e} meV, "
                    f"raw {row['raw_max_rel']:.1e} of max, normalised {row['norm_max_abs']:.1e}, flags "
                    f"{'equal' if row['flags_equal'] else 'DIFFER'}{extra}"
                )
    return rows


def cli(args: list[str], timeout: float = 600) -> tuple[dict, float]:
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "fcinv_widgets.cli", *args, "--json"], capture_output=True, text=True, timeout=timeout, check=False
    )
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"fcinv {' '.join(args)} failed: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1]), dt


def throughput(backends: list[tuple[str, int]], phonopy_sets: int) -> list[dict]:
    rows = []
    for be, batch in backends:
        d, _ = cli(
            ["bench", "forward", "--material", "Ge", "--backend", be, "--batch", str(batch), "--phonopy-sets", str(phonopy_sets)]
        )
        row = {
            "backend": d["backend"],
            "batch": batch,
            "one_array_per_s": d["ours_spectra_per_s"],
            "streamed_per_s": d["streamed_spectra_per_s"],
            "phonopy_run_qpoints_per_s": d["phonopy_run_qpoints_per_s"],
            "paths": d["paths"],
        }
        rows.append(row)
        log(
            f"  {be:6s} batch {batch:>7,}: one array {row['one_array_per_s']:>12,.0f} spectra/s, streamed {row['streamed_per_s']:>12,.0f} "
            f"spectra/s ({row['one_array_per_s'] / row['phonopy_run_qpoints_per_s']:,.0f}× / "
            f"{row['streamed_per_s'] / row['phonopy_run_qpoints_per_s']:,.0f}× phonopy run_qpoints)"
        )
    return rows


def make_dataset(ds: Path, n_train: int, extra: list[str]) -> None:
    if ds.exists():
        return
    _, dt = cli(
        ["dataset", "--material", "Ge", "--n-train", str(n_train), "--n-test", str(max(64, n_train // 8))]
        + extra
        + ["--out", str(ds), "--no-progress"]
    )
    log(f"  dataset {ds.name}: {n_train} training spectra in {dt:.1f} s")


def cpu_threads(dev: str, threads: int | None) -> list[str]:
    return ["--threads", str(threads)] if dev == "cpu" and threads else []


def training(work: Path, n_train: int, devices_: list[str], threads: int | None = None) -> list[dict]:
    ds = work / "ge_check.h5"
    make_dataset(ds, n_train, [])
    rows = []
    for model in ("vae", "resnet"):
        for dev in devices_:
            out = work / f"{model}-{dev}"
            extra = (["--reg-epochs", "1"] if model == "vae" else []) + cpu_threads(dev, threads)
            d, wall = cli(
                [
                    "train",
                    "--dataset",
                    str(ds),
                    "--model",
                    model,
                    "--epochs",
                    "1",
                    "--device",
                    dev,
                    "--out",
                    str(out),
                    "--seed",
                    "0",
                    *extra,
                ]
            )
            rows.append({"model": model, "device": dev, "epoch_seconds": float(d.get("seconds", wall)), "wall_seconds": wall})
            log(
                f"  {model:6s} on {dev:4s}: one epoch of {n_train} spectra {rows[-1]['epoch_seconds']:7.2f} s "
                f"(process {wall:.1f} s)"
            )
    return rows


def augmented_training(
    work: Path, n_train: int, devices_: list[str], bank: Path, threads: int | None = None, workers: int = 0
) -> list[dict]:
    """One epoch of the shipped models' realistic recipe (docs/models.md): the measurement model
    on the fly in the data loader (S(Q,E) weights for half the spectra, resolution, coverage
    masks from ``bank``, backgrounds, counts) on a dataset with nuisance parameters — the CPU-side
    augmentation is what a GPU could wait on; with ``workers`` > 0 the first device's epoch again
    with that many DataLoader workers rendering ahead (``fcinv train --loader-workers``)."""
    ds = work / "ge_check_nuis.h5"
    make_dataset(ds, n_train, ["--nuisance", "1.5"])
    rows = []
    runs = [(dev, 0) for dev in devices_] + ([(devices_[0], workers)] if workers > 0 else [])
    for dev, w in runs:
        out = work / f"resnet-aug-{dev}-w{w}"
        args = ["train", "--dataset", str(ds), "--model", "resnet", "--augment", "--sqe-weights", "0.5"]
        args += ["--mask-bank", str(bank), "--epochs", "1", "--device", dev, "--out", str(out), "--seed", "0"]
        args += ["--loader-workers", str(w)]
        d, wall = cli(args + cpu_threads(dev, threads))
        row = {"model": "resnet", "recipe": "augmented", "device": dev, "loader_workers": w}
        rows.append(row | {"epoch_seconds": float(d.get("seconds", wall)), "wall_seconds": wall})
        log(
            f"  resnet augmented on {dev:4s}, {w:2d} loader workers: one epoch of {n_train} spectra "
            f"{rows[-1]['epoch_seconds']:7.2f} s (process {wall:.1f} s)"
        )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="no GPU: torch on the CPU stands in for CUDA")
    p.add_argument(
        "--out", default="out/device_check", help="folder for the dataset, models and device_check.json (out/ is git-ignored)"
    )
    p.add_argument("--gpu-batch", type=int, default=100000, help="parameter sets for the GPU throughput")
    p.add_argument("--cpu-batch", type=int, default=20000, help="parameter sets for the CPU throughput")
    p.add_argument("--n-train", type=int, default=4096, help="training spectra for the one-epoch timings")
    p.add_argument("--phonopy-sets", type=int, default=50, help="parameter sets for phonopy's loop in each throughput run")
    p.add_argument("--skip", nargs="*", default=[], choices=["equality", "throughput", "training", "augmented"])
    p.add_argument(
        "--mask-bank",
        default=None,
        help="a Ge coverage bank (.npz, as fcinv train --mask-bank writes): also time one augmented ResNet epoch",
    )
    p.add_argument("--cpu-threads", type=int, default=None, help="torch threads for the CPU training rows (default: fcinv's)")
    p.add_argument(
        "--loader-workers",
        type=int,
        default=max(0, min(12, (os.cpu_count() or 1) - 4)),
        help="with --mask-bank: also time the first device's augmented epoch with this many loader workers (0: not)",
    )
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.dry_run:  # NumPy as CuPy here and in the fcinv commands below; torch stays on the CPU
        sys.path.insert(0, str(DRY_RUN_CUPY))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(DRY_RUN_CUPY), os.environ.get("PYTHONPATH")]))
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    info = devices(args.dry_run)
    log(
        f"device_check: torch {info['torch']} CUDA {'yes, ' + info.get('gpu', '') if info['cuda'] else 'no'}; "
        f"CuPy {info['cupy'] or 'missing'} (GPU {'yes' if info['cupy_gpu'] else 'no'}); {info['cpu_cores']} CPU cores; "
        f"fcinv_widgets from {info['fcinv_widgets']}"
    )
    if not info["cuda"] and not args.dry_run:
        print("device_check: torch sees no CUDA device: nothing to check (--dry-run to check the script)", file=sys.stderr)
        return 3
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    report = {"devices": info, "tolerances": TOL}
    ok = True
    if "equality" not in args.skip:
        log("1. GPU back-ends against the NumPy CPU kernel (64 parameter sets each)")
        report["equality"] = equality(args.dry_run, info["cupy_gpu"])
        ok = all(r["ok"] for r in report["equality"])
    if "throughput" not in args.skip:
        log("2. forward throughput, Ge 140×140 (fcinv bench forward)")
        bes = [("numpy", args.cpu_batch)] + ([("cupy", args.gpu_batch)] if info["cupy_gpu"] else [])
        bes += [("torch", args.gpu_batch if info["cuda"] else min(args.cpu_batch, 2000))]
        report["throughput"] = throughput(bes, args.phonopy_sets)
    if "training" not in args.skip:
        log("3. one training epoch per model kind")
        report["training"] = training(work, args.n_train, (["cuda"] if info["cuda"] else []) + ["cpu"], args.cpu_threads)
    if args.mask_bank and "augmented" not in args.skip:
        log("4. one augmented ResNet epoch (the shipped models' recipe)")
        devs = (["cuda"] if info["cuda"] else []) + ["cpu"]
        report["augmented_training"] = augmented_training(
            work, args.n_train, devs, Path(args.mask_bank), args.cpu_threads, args.loader_workers
        )
    report["seconds"] = time.perf_counter() - t0
    report["ok"] = ok
    (work / "device_check.json").write_text(json.dumps(report, indent=1, default=float))
    log(
        f"device_check: {'all checks passed' if ok else 'SOME CHECKS FAILED'} in {report['seconds']:.0f} s; "
        f"figures in {work / 'device_check.json'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
