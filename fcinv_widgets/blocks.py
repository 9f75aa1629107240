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

from .errors import FcinvError


@dataclass
class QBlocks:
    """Blocks at one q: ``coeffs[k]`` is (P, m_k, m_k) complex, ``mult[k]`` its multiplicity."""

    coeffs: list
    mult: list


#: above this many modes the commutant comes from the Gram matrix of the commutator map (n² × n²)
#: instead of an SVD of the map itself (P·n² × n², P the number of parameters): an SVD costs
#: ~P·n⁶ — 11 minutes of `fcinv simulate` for rutile (18 modes; 10 s with the Gram route)
GRAM_ABOVE_MODES = 8


def commutant_basis(Ds: np.ndarray, tol: float = 1e-8, method: str = "auto") -> np.ndarray:
    """Basis (k, n, n) of the matrices Y with [D_p, Y] = 0 for all p (``Ds`` (P, n, n) Hermitian).

    ``method``: "svd" — the null space of the commutator map M (rows: every p), singular values
    below ``tol`` × the largest; "gram" — the null space of L = M†M = Σ_p [D_p, [D_p, ·]], built in
    P·n⁴ operations by one matrix product, eigenvalues below ``tol²`` × 10⁴ × the largest (L squares
    M's singular values; the factor keeps the rounding of an n² eigenproblem out); "auto" — "gram"
    above :data:`GRAM_ABOVE_MODES` modes. :func:`decompose` checks the blocks either gives.
    """
    P, n, _ = Ds.shape
    scale = max(np.abs(Ds).max(), 1e-300)
    Dn = Ds / scale
    if method == "auto":
        method = "gram" if n > GRAM_ABOVE_MODES else "svd"
    if method == "gram":
        return _commutant_gram(Dn, tol)
    eye = np.eye(n)
    # rows p·n² … of M: kron(D_p, 1) − kron(1, D_pᵀ), for all p at once (the same products as np.kron)
    left = Dn[:, :, None, :, None] * eye[None, None, :, None, :]  # [p, i, k, j, l] = D_p[i, j] δ_kl
    right = eye[None, :, None, :, None] * np.swapaxes(Dn, 1, 2)[:, None, :, None, :]  # δ_ij D_p[l, k]
    M = (left - right).reshape(P * n * n, n * n)
    _, s, vh = np.linalg.svd(M, full_matrices=False)
    null = np.conj(vh[np.sum(s > tol * max(s[0], 1e-300)) :])
    return null.reshape(-1, n, n)


def _commutant_gram(Dn: np.ndarray, tol: float) -> np.ndarray:
    """Null space of L = Σ_p K_pᴴK_p, K_p = kron(D_p, 1) − kron(1, D_pᵀ) (row-major vec(Y)); for
    Hermitian D_p, K_pᴴK_p = kron(D_p², 1) − 2 kron(D_p, D_pᵀ) + kron(1, (D_p²)ᵀ)."""
    P, n, _ = Dn.shape
    n2 = n * n
    A = Dn.reshape(P, n2)
    # Σ_p kron(D_p, D_pᵀ)[(i,k), (j,l)] = Σ_p D_p[i, j] D_p[l, k]: one (n² × P)(P × n²) product
    cross = (A.T @ A).reshape(n, n, n, n).transpose(0, 3, 1, 2).reshape(n2, n2)
    s2 = (Dn @ Dn).sum(0)
    eye = np.eye(n)
    L = np.kron(s2, eye) + np.kron(eye, s2.T) - 2 * cross
    L = 0.5 * (L + L.conj().T)
    w, V = np.linalg.eigh(L)
    null = V[:, w <= 1e4 * tol**2 * max(w[-1], 1e-300)]
    return null.T.reshape(-1, n, n)


def decompose(Ds: np.ndarray, rng: np.random.Generator | None = None, tol: float = 1e-7) -> QBlocks:
    """Split the Hermitian matrices ``Ds`` (P, n, n) into common invariant blocks.

    The blocks' spectra (times their multiplicities) are checked against the full matrices' at two
    random parameter vectors; when the faster Gram route's null space was too wide for them, the
    SVD route is taken instead (exact to its tolerance)."""
    rng = np.random.default_rng(12345) if rng is None else rng
    n = Ds.shape[1]
    state = rng.bit_generator.state
    if n > GRAM_ABOVE_MODES:
        out = _decompose_with(Ds, rng, tol, "gram")
        if out is not None:
            return out
        rng.bit_generator.state = state
    out = _decompose_with(Ds, rng, tol, "svd")
    if out is None:
        raise FcinvError("internal error: the symmetry blocks do not reproduce the dynamical matrix's spectrum")
    return out


def _decompose_with(Ds: np.ndarray, rng: np.random.Generator, tol: float, method: str) -> QBlocks | None:
    P, n, _ = Ds.shape
    C = commutant_basis(Ds, method=method)
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
    if method == "gram":  # many modes: batched products by BLAS (the einsum below is unoptimised, P·n³ per group)
        blocks = [(E.conj().T @ Ds) @ E for E in groups]
    else:  # few modes (Ge, Nb): kept bit-for-bit as before — the physics fits' stopping points move with the last bit
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
    if sum(b.shape[1] * m for b, m in zip(kept, mult)) != n:
        return None
    # the blocks must carry the full spectrum (a too-wide null space splits what does not split)
    for t in np.random.default_rng(2024).normal(size=(2, P)):  # its own draws: the caller's stream is unchanged
        full = np.linalg.eigvalsh(np.tensordot(t, Ds, axes=(0, 0)))
        parts = np.sort(
            np.concatenate([np.repeat(np.linalg.eigvalsh(np.tensordot(t, b, axes=(0, 0))), m) for b, m in zip(kept, mult)])
        )
        if not np.allclose(full, parts, atol=1e-9 * scale * P, rtol=0):
            return None
    return QBlocks(kept, mult)


def _spectrum(b, probes):
    return np.concatenate([np.linalg.eigvalsh(np.tensordot(t, b, axes=(0, 0))) for t in probes])
