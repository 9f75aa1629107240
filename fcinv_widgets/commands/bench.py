"""fcinv bench forward: our forward model against phonopy and this machine's memory
bandwidth, all measured in the same run.

Paths timed (N parameter sets, images of nq × nE):

- one array, float32, into new memory: ``fm.spectra(theta)`` — the first touch of fresh
  pages (the kernel zeroes every page it hands out) is part of the cost;
- one array, float32, into a caller's buffer: ``fm.spectra(theta, out=buf)``;
- one array, uint8 (new memory): ``fm.spectra(theta, dtype=np.uint8)``, a quarter of the bytes;
- streamed: ``fm.iter_spectra(theta, chunk=1024)`` into one reused buffer (how datasets are made).

The copy benchmark copies a float32 array with all cores (numba, parallel blocks), once into
new memory and then between touched buffers: it bounds what writing the images can reach.
"""

from __future__ import annotations

import os
import platform
import resource
import time

import numpy as np

from ..errors import FcinvError
from ._common import add_json, add_seed, emit, positive_int

#: bytes of the copy benchmark's arrays (at most; less for small batches)
COPY_BYTES = 512 * 2**20


def register(sub):
    p = sub.add_parser("bench", help="benchmarks (prints figures; no pass/fail)")
    p.add_argument("what", choices=["forward"], help="what to benchmark")
    p.add_argument("--material", default="Ge")
    p.add_argument("--batch", type=positive_int, default=10000, help="parameter sets for our model")
    p.add_argument("--phonopy-sets", type=positive_int, default=100, help="parameter sets for the phonopy loop")
    p.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "torch", "auto"), help="numpy, cupy, torch or auto")
    add_seed(p)
    add_json(p)
    p.set_defaults(func=run)


def _sync(be) -> None:
    if be.name == "cupy":
        be.xp.cuda.Device().synchronize()
    elif be.name == "torch" and str(be.device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _timed(fn, be):
    t0 = time.perf_counter()
    r = fn()
    _sync(be)
    return time.perf_counter() - t0, r


def copy_bandwidth(nbytes: int) -> dict:
    """Copy ``nbytes`` of float32 with all cores: into new memory (first touch included) and,
    best of three, between touched buffers. GB/s = 1e9 bytes/s; "write" counts bytes written,
    "read_write" bytes read plus written."""
    from .._cpu_kernel import parallel_copy

    n = max(nbytes // 4, 1 << 18)
    parallel_copy(np.ones(1 << 18, np.float32), np.empty(1 << 18, np.float32))  # compile
    src = np.ones(n, np.float32)
    t0 = time.perf_counter()
    dst = np.empty(n, np.float32)
    parallel_copy(src, dst)
    t_fresh = time.perf_counter() - t0
    t_warm = 1e30
    for _ in range(3):
        t0 = time.perf_counter()
        parallel_copy(src, dst)
        t_warm = min(t_warm, time.perf_counter() - t0)
    b = 4 * n
    return {
        "bytes": b,
        "fresh_write_gb_s": b / t_fresh / 1e9,
        "warm_write_gb_s": b / t_warm / 1e9,
        "warm_read_write_gb_s": 2 * b / t_warm / 1e9,
    }


def run(args) -> int:
    from ..forward import check_allocation
    from ..materials import get_material

    if args.batch < 1:
        raise FcinvError(f"--batch must be a positive number of parameter sets, got {args.batch}")
    if args.phonopy_sets < 1:
        raise FcinvError(f"--phonopy-sets must be a positive number, got {args.phonopy_sets}")
    mat = get_material(args.material)
    nq, nE = mat.grid.shape
    N = args.batch
    img_bytes = N * nq * nE * 4
    # θ (float64) and one float32 array of images live at once, plus the copy benchmark's two arrays
    check_allocation(
        N * 8 * 8 + img_bytes + 2 * min(COPY_BYTES, img_bytes),
        f"--batch {N:,}: the parameters, {N:,} float32 images of {nq}×{nE} and the copy benchmark",
    )

    t0 = time.perf_counter()
    fm = mat.forward_model(backend=args.backend)
    t_build = time.perf_counter() - t0
    be = fm.backend
    rng = np.random.default_rng(args.seed)
    lo, hi = mat.domain.T
    theta = rng.uniform(lo, hi, size=(N, len(lo)))
    cpu = be.name == "numpy"
    # compile / warm up every path on a few sets
    fm.spectra(theta[:8])
    if cpu:
        fm.spectra(theta[:8], dtype=np.uint8)

    copy = copy_bandwidth(min(COPY_BYTES, img_bytes)) if cpu else None

    paths = {}  # name -> (seconds, bytes written, memory kind)
    t, (img, stable) = _timed(lambda: fm.spectra(theta, return_stable=True), be)
    paths["one_array_float32"] = (t, img_bytes, "fresh")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cpu:
        t, _ = _timed(lambda buf=img: fm.spectra(theta, out=buf), be)
        paths["one_array_float32_out"] = (t, img_bytes, "warm")
        t, q = _timed(lambda: fm.spectra(theta, dtype=np.uint8), be)
        paths["one_array_uint8"] = (t, q.nbytes, "fresh")
        del q
    del img
    n_stable = 0

    def stream():
        nonlocal n_stable
        for _, _chunk, chunk_stable in fm.iter_spectra(theta, chunk=1024):
            n_stable += int(chunk_stable.sum())

    t, _ = _timed(stream, be)
    paths["streamed_1024"] = (t, img_bytes, "warm")

    # phonopy: run_qpoints over the same path for each parameter set, then the same Gaussians
    ph = mat.basis.phonopy
    q = mat.grid.q.qpoints
    centers = mat.grid.e.centers
    n_ph = min(args.phonopy_sets, N)
    full = fm.full_params(theta[:n_ph])
    from ..units import THZ_TO_MEV

    t_fc = t_q = t_img = 0.0
    sig = fm.sigma_table[0]
    for p in full:
        t0 = time.perf_counter()
        ph.force_constants = mat.basis.expand(p)
        t1 = time.perf_counter()
        ph.run_qpoints(q)
        f = np.asarray(ph.qpoints.frequencies) * THZ_TO_MEV
        t2 = time.perf_counter()
        _ = (np.exp(-0.5 * ((centers[None, None, :] - f[..., None]) / sig) ** 2).sum(1) / (sig * np.sqrt(2 * np.pi))).astype(
            np.float32
        )
        t3 = time.perf_counter()
        t_fc += t1 - t0
        t_q += t2 - t1
        t_img += t3 - t2
    ph_q = n_ph / t_q
    ph_all = n_ph / (t_fc + t_q + t_img)

    table = {}
    for name, (t, nbytes, kind) in paths.items():
        row = {
            "seconds": t,
            "spectra_per_s": N / t,
            "ratio_vs_run_qpoints": N / t / ph_q,
            "output_gb_s": nbytes / t / 1e9,
            "memory": kind,
        }
        if copy is not None:
            row["fraction_of_copy_write"] = row["output_gb_s"] / copy[f"{kind}_write_gb_s"]
        table[name] = row
    ours = table["one_array_float32"]["spectra_per_s"]
    streamed = table["streamed_1024"]["spectra_per_s"]
    payload = {
        "material": mat.name,
        "grid": [nq, nE],
        "backend": be.name,
        "batch": N,
        "paths": table,
        "copy": copy,
        "ours_spectra_per_s": ours,
        "ours_seconds": table["one_array_float32"]["seconds"],
        "build_seconds": t_build,
        "peak_rss_mb": peak_mb,
        "stable_fraction": float(stable.mean()),
        "phonopy_sets": n_ph,
        "phonopy_run_qpoints_per_s": ph_q,
        "phonopy_with_fc_and_gaussians_per_s": ph_all,
        "ratio_vs_run_qpoints": ours / ph_q,
        "ratio_vs_phonopy_pipeline": ours / ph_all,
        "streamed_spectra_per_s": streamed,
        "streamed_ratio_vs_run_qpoints": streamed / ph_q,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    labels = {
        "one_array_float32": "one array, float32, new memory",
        "one_array_float32_out": "one array, float32, out= buffer",
        "one_array_uint8": "one array, uint8, new memory",
        "streamed_1024": "streamed, chunks of 1024",
    }
    lines = [
        (
            f"{mat.name} {nq}×{nE} images, backend {be.name}, {N:,} parameter sets "
            f"(model built in {t_build:.2f} s, peak RSS {peak_mb:.0f} MB, {payload['machine']})"
        )
    ]
    if copy is not None:
        lines.append(
            f"  memory copy, all cores, {copy['bytes'] / 2**20:.0f} MiB: {copy['warm_read_write_gb_s']:.1f} GB/s read+write "
            f"({copy['warm_write_gb_s']:.1f} GB/s written) between touched buffers, "
            f"{copy['fresh_write_gb_s']:.1f} GB/s written into new memory"
        )
    lines.append(f"  {'path':34s} {'spectra/s':>10s} {'× run_qpoints':>14s} {'written GB/s':>13s} {'of copy':>8s}")
    for name, row in table.items():
        frac = f"{100 * row['fraction_of_copy_write']:7.0f}%" if "fraction_of_copy_write" in row else f"{'—':>8s}"
        lines.append(
            f"  {labels[name]:34s} {row['spectra_per_s']:10,.0f} {row['ratio_vs_run_qpoints']:13,.0f}× "
            f"{row['output_gb_s']:13.2f} {frac}"
        )
    lines.append(f"  phonopy: run_qpoints {ph_q:,.1f} sets/s; with FC build + Gaussians {ph_all:,.1f} spectra/s ({n_ph} sets)")
    lines.append('  ("of copy": written GB/s against the copy\'s written GB/s into the same kind of memory, new or touched)')
    emit(args, payload, "\n".join(lines))
    return 0
