"""Numba kernels of the orientation planner's hot loops over folded points (``analysis.planner``).

``point_amplitudes``: the one-phonon structure factor |F_ν(Q)|² of every folded point and mode
(one pass over the points, no (points × atoms × modes) temporaries); ``scan_mode_means``: the
mean of those amplitudes over the points each orientation puts into each pixel (a difference
array over the energy bins each hit covers, summed in float64, then divided by the count), over
the hits ordered by point (``invert_hits``) so the amplitudes are read once and in order;
``scan_fisher``: the Fisher sums of single scans over their covered pixels. All parallel over
independent outputs (chunks of points, path bins, scans), so the result does not depend on the
number of threads. Tested against direct NumPy formulas (``tests/test_planner_sqe.py``) and,
through the planner, against :func:`sqe.folded_mode_weights` and ``scans.simulate_scans``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

_CHUNK = 4096


@njit(cache=True, parallel=True)
def point_amplitudes(Q, G, iq, vec, energies, coef, U, pos, e_min, scale, out):  # pragma: no cover - compiled
    """out[p, ν] = scale · |Σ_k coef_k e^{−½ Q·U_k·Q} e^{2πi G·r_k} (Q · conj e_kν)|² (0 where E_ν ≤ e_min).

    Q (p, 3) Å⁻¹ Cartesian; G (p, 3) hkl; iq (p,) index into vec/energies; vec (j, n_atoms, 3, M)
    complex eigenvectors; energies (j, M) meV; coef (n_atoms,) complex b/√m; U (n_atoms, 3, 3) Å²;
    pos (n_atoms, 3) fractional; out (p, M) float64."""
    n = Q.shape[0]
    na = pos.shape[0]
    M = vec.shape[3]
    n_chunks = (n + _CHUNK - 1) // _CHUNK
    for ch in prange(n_chunks):
        fac = np.empty(na, np.complex128)
        acc = np.empty(M, np.complex128)
        for i in range(ch * _CHUNK, min(n, (ch + 1) * _CHUNK)):
            q0, q1, q2 = Q[i, 0], Q[i, 1], Q[i, 2]
            for k in range(na):
                w = 0.0
                for a in range(3):
                    w += Q[i, a] * (U[k, a, 0] * q0 + U[k, a, 1] * q1 + U[k, a, 2] * q2)
                ph = 2.0 * math.pi * (G[i, 0] * pos[k, 0] + G[i, 1] * pos[k, 1] + G[i, 2] * pos[k, 2])
                fac[k] = coef[k] * math.exp(-0.5 * w) * complex(math.cos(ph), math.sin(ph))
            j = iq[i]
            for m in range(M):
                acc[m] = 0.0
            for k in range(na):
                for m in range(M):
                    qe = q0 * vec[j, k, 0, m].conjugate() + q1 * vec[j, k, 1, m].conjugate() + q2 * vec[j, k, 2, m].conjugate()
                    acc[m] += fac[k] * qe
            for m in range(M):
                if energies[j, m] > e_min:
                    out[i, m] = scale * (acc[m].real * acc[m].real + acc[m].imag * acc[m].imag)
                else:
                    out[i, m] = 0.0


@njit(cache=True)
def invert_hits(offsets, sel, ilo, ihi, n_points):  # pragma: no cover - compiled
    """The hits ordered by point (a counting sort, stable): (start (n_points+1,), scan, ilo, ihi) with
    point p's hits at start[p]:start[p+1]. Points are sorted by path bin, so a pass in this order
    reads the amplitudes once, in order, and writes each path bin's pixels together."""
    n_hits = sel.shape[0]
    start = np.zeros(n_points + 1, np.int64)
    for h in range(n_hits):
        start[sel[h] + 1] += 1
    for p in range(n_points):
        start[p + 1] += start[p]
    fill = start[:-1].copy()
    scan = np.empty(n_hits, np.int32)
    lo = np.empty(n_hits, np.int16)
    hi = np.empty(n_hits, np.int16)
    for s in range(offsets.shape[0] - 1):
        for h in range(offsets[s], offsets[s + 1]):
            k = fill[sel[h]]
            fill[sel[h]] += 1
            scan[k] = s
            lo[k] = ilo[h]
            hi[k] = ihi[h]
    return start, scan, lo, hi


@njit(cache=True, parallel=True)
def scan_mode_means(bin_start, start, scan, lo, hi, amp, col, nE, W, cov):  # pragma: no cover - compiled
    """W[c, b, e, ν] = mean of amp[p, ν] over the points p that orientation s (col[s] = c ≥ 0; −1:
    not wanted) puts into pixel (b, e), 0 where none (cov[c, b, e]: whether any). Hits by point
    (:func:`invert_hits`); bin_start[b]:bin_start[b+1] the points of path bin b. Parallel over bins."""
    M = amp.shape[1]
    n_out = W.shape[0]
    nq = bin_start.shape[0] - 1
    for b in prange(nq):
        acc = np.zeros((n_out, nE + 1, M))
        cnt = np.zeros((n_out, nE + 1), np.int64)
        for p in range(bin_start[b], bin_start[b + 1]):
            for h in range(start[p], start[p + 1]):
                c = col[scan[h]]
                if c < 0:
                    continue
                e0 = lo[h]
                e1 = hi[h] + 1
                cnt[c, e0] += 1
                cnt[c, e1] -= 1
                for m in range(M):
                    v = amp[p, m]
                    acc[c, e0, m] += v
                    acc[c, e1, m] -= v
        run = np.zeros(M)
        for c in range(n_out):
            n_run = 0
            for m in range(M):
                run[m] = 0.0
            for e in range(nE):
                n_run += cnt[c, e]
                for m in range(M):
                    run[m] += acc[c, e, m]
                if n_run > 0:
                    cov[c, b, e] = True
                    for m in range(M):
                        W[c, b, e, m] = run[m] / n_run
                else:
                    cov[c, b, e] = False
                    for m in range(M):
                        run[m] = 0.0  # exact: no point covers this pixel (drops the difference array's rounding)
                        W[c, b, e, m] = 0.0


@njit(cache=True, parallel=True)
def scan_fisher(W, cov, dL, I, a, b, counts, H):  # pragma: no cover - compiled
    """H[c] = counts · Σ_p j jᵀ / max(a_c I_cp + b_c, 1e-6) over the pixels scan c covers, with
    j = (a_c Σ_ν W[c,p,ν] dL[p,ν,:], I_cp, 1): the Fisher information of Poisson counts about
    (θ, scale, background). W (n, p, M) float32; cov (n, p) bool; dL (p, M, A); I (n, p); H (n, A+2, A+2)."""
    n, P, M = W.shape
    A = dL.shape[2]
    K = A + 2
    for c in prange(n):
        h = np.zeros((K, K))
        j = np.empty(K)
        if a[c] > 0:
            for p in range(P):
                if not cov[c, p]:
                    continue
                mu = a[c] * I[c, p] + b[c]
                w = counts / (mu if mu > 1e-6 else 1e-6)
                for k in range(A):
                    s = 0.0
                    for m in range(M):
                        s += W[c, p, m] * dL[p, m, k]
                    j[k] = a[c] * s
                j[A] = I[c, p]
                j[A + 1] = 1.0
                for k in range(K):
                    wk = w * j[k]
                    for l in range(k, K):
                        h[k, l] += wk * j[l]
        for k in range(K):
            for l in range(k, K):
                H[c, k, l] = h[k, l]
                H[c, l, k] = h[k, l]
