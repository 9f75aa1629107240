"""Shared by the S(Q,E) benchmarks: true force-constant sets to simulate measurements from."""

import numpy as np


def draw_truths(mat, n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """``n`` (name, all-FC params (P,), eV/Å²) truths of a preset material: its first-principles FCs
    first (``dft_params``, when it has them), then sets drawn around the reference — the inactive FCs from
    N(reference, (1.5 σ_fit)²) (``nuisance_sigma``), the 8 active ones uniformly within ±15 % of
    the reference — keeping only dynamically stable ones (seeded, reproducible)."""
    rng = np.random.default_rng(seed)
    truths = [("dft", np.asarray(mat.dft_params, float))] if mat.dft_params is not None else []
    inactive = np.setdiff1d(np.arange(mat.basis.n_params), mat.active)
    fm = mat.forward_model().with_backend("numpy")
    while len(truths) < n:
        t = np.asarray(mat.reference_params, float).copy()
        t[inactive] += rng.normal(0, 1.5, len(inactive)) * np.asarray(mat.nuisance_sigma)
        t[mat.active] *= 1 + rng.uniform(-0.15, 0.15, len(mat.active))
        if fm.is_stable(t[mat.active])[0]:
            truths.append((f"drawn {len(truths)}", t))
    return truths
