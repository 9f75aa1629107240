"""fcinv bench forward: our forward model against phonopy, measured in the same run."""

from __future__ import annotations

import platform
import resource
import time

import numpy as np

from ._common import emit, positive_int, nonneg_int


def register(sub):
    p = sub.add_parser("bench", help="benchmarks (prints figures; no pass/fail)")
    p.add_argument("what", choices=["forward"], help="what to benchmark")
    p.add_argument("--material", default="Ge")
    p.add_argument("--batch", type=positive_int, default=10000, help="parameter sets for our model")
    p.add_argument("--phonopy-sets", type=positive_int, default=100, help="parameter sets for the phonopy loop")
    p.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "torch", "auto"), help="numpy, cupy, torch or auto")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..materials import get_material

    mat = get_material(args.material)
    t0 = time.perf_counter()
    fm = mat.forward_model(backend=args.backend)
    t_build = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    lo, hi = mat.domain.T
    theta = rng.uniform(lo, hi, size=(args.batch, len(lo)))
    fm.spectra(theta[:8])  # compile / warm up
    be = fm.backend
    if be.name == "cupy":
        be.xp.cuda.Device().synchronize()
    t0 = time.perf_counter()
    img, stable = fm.spectra(theta, return_stable=True)
    if be.name == "cupy":
        be.xp.cuda.Device().synchronize()
    t_ours = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del img
    # streamed in chunks of 1024 into a reused buffer (how datasets are made): constant memory
    t0 = time.perf_counter()
    n_stable = 0
    for _, _chunk_img, chunk_stable in fm.iter_spectra(theta, chunk=1024):
        n_stable += int(chunk_stable.sum())
    if be.name == "cupy":
        be.xp.cuda.Device().synchronize()
    t_stream = time.perf_counter() - t0

    # phonopy: run_qpoints over the same path for each parameter set, then the same Gaussians
    ph = mat.basis.phonopy
    q = mat.grid.q.qpoints
    centers = mat.grid.e.centers
    n_ph = min(args.phonopy_sets, args.batch)
    full = fm.full_params(theta[:n_ph])
    from ..units import THZ_TO_MEV

    t_fc = t_q = t_img = 0.0
    for p in full:
        t0 = time.perf_counter()
        ph.force_constants = mat.basis.expand(p)
        t1 = time.perf_counter()
        ph.run_qpoints(q)
        f = np.asarray(ph.qpoints.frequencies) * THZ_TO_MEV
        t2 = time.perf_counter()
        sig = fm.sigma_table[0]
        _ = (np.exp(-0.5 * ((centers[None, None, :] - f[..., None]) / sig) ** 2).sum(1) / (sig * np.sqrt(2 * np.pi))).astype(np.float32)
        t3 = time.perf_counter()
        t_fc += t1 - t0
        t_q += t2 - t1
        t_img += t3 - t2
    ours = args.batch / t_ours
    streamed = args.batch / t_stream
    ph_q = n_ph / t_q
    ph_all = n_ph / (t_fc + t_q + t_img)
    payload = {
        "material": mat.name, "grid": list(mat.grid.shape), "backend": be.name, "batch": args.batch,
        "ours_spectra_per_s": ours, "ours_seconds": t_ours, "build_seconds": t_build, "peak_rss_mb": peak_mb,
        "stable_fraction": float(stable.mean()),
        "phonopy_sets": n_ph, "phonopy_run_qpoints_per_s": ph_q, "phonopy_with_fc_and_gaussians_per_s": ph_all,
        "ratio_vs_run_qpoints": ours / ph_q, "ratio_vs_phonopy_pipeline": ours / ph_all,
        "streamed_spectra_per_s": streamed, "streamed_ratio_vs_run_qpoints": streamed / ph_q,
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
    }
    text = (f"{mat.name} {mat.grid.shape[0]}×{mat.grid.shape[1]} images, backend {be.name}\n"
            f"  ours:    {args.batch} spectra in {t_ours:.3f} s = {ours:,.0f} spectra/s as one array (setup {t_build:.2f} s, peak RSS {peak_mb:.0f} MB)\n"
            f"           streamed in chunks of 1024: {t_stream:.3f} s = {streamed:,.0f} spectra/s ({streamed / ph_q:,.0f}× run_qpoints)\n"
            f"  phonopy: run_qpoints {ph_q:,.1f} sets/s; with FC build + Gaussians {ph_all:,.1f} spectra/s ({n_ph} sets)\n"
            f"  ratio:   {ours / ph_q:,.0f}× run_qpoints alone, {ours / ph_all:,.0f}× the phonopy pipeline")
    emit(args, payload, text)
    return 0
