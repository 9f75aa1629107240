"""Symmetry block decomposition of parameter-linear dynamical matrices.

At a wave vector q, D(q; θ) = Σ_p θ_p D_p(q) for *every* parameter vector θ. The
matrices that commute with all D_p(q) (the commutant, found numerically as the null
space of the commutator map) contain the little group's representation. A generic
Hermitian element Y of the commutant has eigenspaces that every D(q; θ) leaves
invariant; each eigenspace E gives a small block E† D E, and blocks that belong to
copies of the same irreducible representation have identical spectra, so only one is
kept, with a multiplicity. Along high-symmetry lines this turns a 6×6 eigenproblem
(diamond) into 1×1 and 2×2 blocks — for all θ at once, with no group tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class QBlocks:
    """Blocks at one q: ``coeffs[k]`` is (P, m_k, m_k) complex, ``mult[k]`` its multiplicity."""

    coeffs: list
    mult: list


def commutant_basis(Ds: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """Basis (k, n, n) of the matrices Y with [D_p, Y] = 0 for all p."""
    P, n, _ = Ds.shape
    eye = np.eye(n)
    scale = max(np.abs(Ds).max(), 1e-300)
    # rows p·n² … of M: kron(D_p, 1) − kron(1, D_pᵀ), for all p at once (the same products as np.kron)
    Dn = Ds / scale
    left = Dn[:, :, None, :, None] * eye[None, None, :, None, :]  # [p, i, k, j, l] = D_p[i, j] δ_kl
    right = eye[None, :, None, :, None] * np.swapaxes(Dn, 1, 2)[:, None, :, None, :]  # δ_ij D_p[l, k]
    M = (left - right).reshape(P * n * n, n * n)
    _, s, vh = np.linalg.svd(M, full_matrices=False)
    null = np.conj(vh[np.sum(s > tol * max(s[0], 1e-300)) :])
    return null.reshape(-1, n, n)


def decompose(Ds: np.ndarray, rng: np.random.Generator | None = None, tol: float = 1e-7) -> QBlocks:
    """Split the Hermitian matrices ``Ds`` (P, n, n) into common invariant blocks."""
    rng = np.random.default_rng(12345) if rng is None else rng
    P, n, _ = Ds.shape
    C = commutant_basis(Ds)
    coef = rng.normal(size=len(C)) + 1j * rng.normal(size=len(C))
    Y = np.tensordot(coef, C, axes=(0, 0))
    Y = 0.5 * (Y + Y.conj().T)
    w, V = np.linalg.eigh(Y)
    # eigenvalues of Y are O(1) (unit-norm commutant basis, O(1) coefficients)
    gap = 1e-6 * max(np.abs(w).max(), 1e-300)
    groups, start = [], 0
    for k in range(1, n + 1):
        if k == n or (w[k] - w[k - 1]) > gap:
            groups.append(V[:, start:k])
            start = k
    blocks = [np.einsum("ni,pnm,mj->pij", E.conj(), Ds, E) for E in groups]
    # merge copies of the same irrep: identical spectra at two random parameter vectors
    probes = rng.normal(size=(2, P))
    scale = max(np.abs(Ds).max(), 1e-300)
    kept: list = []
    mult: list = []
    sigs: list = []
    for b in blocks:
        s = _spectrum(b, probes)
        for k, (kb, ks) in enumerate(zip(kept, sigs)):
            if kb.shape == b.shape and np.allclose(ks, s, atol=1e-9 * scale * P):
                mult[k] += 1
                break
        else:
            kept.append(b)
            mult.append(1)
            sigs.append(s)
    assert sum(b.shape[1] * m for b, m in zip(kept, mult)) == n
    return QBlocks(kept, mult)


def _spectrum(b, probes):
    return np.concatenate([np.linalg.eigvalsh(np.tensordot(t, b, axes=(0, 0))) for t in probes])
