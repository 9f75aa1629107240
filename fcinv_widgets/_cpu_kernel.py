"""Fused CPU kernel (numba) of the forward model: for every parameter vector, block
entries (a small dot product per entry), closed-form eigenvalues of 1×1/2×2/3×3 Hermitian
blocks (LAPACK for larger ones), energies in meV, Gaussian broadening by a recurrence
(three exponentials per mode, then two multiplications per energy bin), the per-spectrum
minimum energy (stability) and min-max scaling — with no temporaries between the steps.

It evaluates the same precomputed matrices as the array (NumPy/CuPy/torch) path in
:mod:`fcinv_widgets.forward`, which the tests compare it against.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

TWO_PI_3 = 2.0 * math.pi / 3.0


@njit(cache=True, fastmath=False)
def _eig_block(e, m, lam):
    """Eigenvalues of one packed Hermitian block ``e`` of size m into ``lam[:m]`` (ascending)."""
    if m == 1:
        lam[0] = e[0]
    elif m == 2:
        h = 0.5 * (e[0] + e[1])
        r = math.sqrt(0.25 * (e[0] - e[1]) ** 2 + e[2] * e[2] + e[3] * e[3])
        lam[0] = h - r
        lam[1] = h + r
    elif m == 3:
        a1, a2, a3 = e[0], e[1], e[2]
        r12, i12, r13, i13, r23, i23 = e[3], e[4], e[5], e[6], e[7], e[8]
        p1 = r12 * r12 + i12 * i12 + r13 * r13 + i13 * i13 + r23 * r23 + i23 * i23
        q = (a1 + a2 + a3) / 3.0
        b1, b2, b3 = a1 - q, a2 - q, a3 - q
        p2 = b1 * b1 + b2 * b2 + b3 * b3 + 2.0 * p1
        if p2 <= 1e-300:
            lam[0] = q
            lam[1] = q
            lam[2] = q
            return
        p = math.sqrt(p2 / 6.0)
        xr = r12 * r23 - i12 * i23
        xi = r12 * i23 + i12 * r23
        det = (
            b1 * b2 * b3
            + 2.0 * (xr * r13 + xi * i13)
            - b1 * (r23 * r23 + i23 * i23)
            - b2 * (r13 * r13 + i13 * i13)
            - b3 * (r12 * r12 + i12 * i12)
        )
        r = det / (2.0 * p * p * p)
        if r < -1.0:
            r = -1.0
        elif r > 1.0:
            r = 1.0
        phi = math.acos(r) / 3.0
        l1 = q + 2.0 * p * math.cos(phi)
        l3 = q + 2.0 * p * math.cos(phi + TWO_PI_3)
        lam[0] = l3
        lam[1] = 3.0 * q - l1 - l3
        lam[2] = l1
    else:
        H = np.empty((m, m), dtype=np.complex128)
        k = m * m
        for i in range(m):
            for j in range(m):
                H[i, j] = e[i * m + j] + 1j * e[k + i * m + j]
        w = np.linalg.eigvalsh(H)
        for i in range(m):
            lam[i] = w[i]


@njit(parallel=True, cache=True, fastmath=True)
def forward_kernel(
    theta,
    W,
    blk_m,
    blk_off,
    blk_k,
    blk_q,
    blk_w,
    to_mev,
    e0,
    de,
    sig_table,
    sig_e0,
    sig_de,
    cutoff,
    normalize,
    out,
    min_mev,
    lut_g,
    lut_r,
    qout,
    qmode,
):
    """theta (N, A1) with a leading 1; W (K, A1) packed block entries (row per entry).

    For a constant σ, ``lut_g``/``lut_r`` tabulate the recurrence's start values over the
    sub-bin offset of the first bin (see :func:`gaussian_luts`); empty tables mean "compute".

    blk_q[b] < 0 marks blocks (e.g. of the stability mesh) that only enter ``min_mev``.
    qmode 0: ``out`` (N, nq, nE) float32 is overwritten (skipped when its first dimension
    is 0; ``qout`` unused). qmode 1: each image is made in a float32 scratch image (it stays
    in cache) and written once into ``qout`` (N, nq, nE) uint8 as round(255·I); ``out`` is
    unused. The float32 values are the same in both modes. Every image is written by the
    thread that computes it (the first touch of new memory happens in parallel).
    """
    N = theta.shape[0]
    A1 = theta.shape[1]
    B = blk_m.shape[0]
    do_img = (out.shape[0] > 0) if qmode == 0 else (qout.shape[0] > 0)
    nq = out.shape[1]
    nE = out.shape[2]
    nt = sig_table.shape[0]
    nl = lut_g.shape[0] - 1
    ntap = lut_g.shape[1]
    kmax = 0
    for b in range(B):
        kmax = max(kmax, blk_k[b])
    for n in prange(N):
        e = np.empty(kmax)
        lam = np.empty(64)
        lo_min = 1e300
        if qmode == 0 and do_img:
            img = out[n]
        else:
            img = np.empty((nq if do_img else 0, nE), dtype=np.float32)
        if do_img:
            for q in range(nq):
                rq = img[q]
                for i in range(nE):
                    rq[i] = 0.0
        for b in range(B):
            m = blk_m[b]
            off = blk_off[b]
            for j in range(blk_k[b]):
                s = 0.0
                for a in range(A1):
                    s += theta[n, a] * W[off + j, a]
                e[j] = s
            _eig_block(e, m, lam)
            qb = blk_q[b]
            for j in range(m):
                l = lam[j]
                w = math.sqrt(l) * to_mev if l >= 0.0 else -math.sqrt(-l) * to_mev
                lo_min = min(lo_min, w)
                if not do_img or qb < 0:
                    continue
                if nt == 1:
                    sig = sig_table[0]
                else:
                    x = (w - sig_e0) / sig_de
                    if x <= 0.0:
                        sig = sig_table[0]
                    elif x >= nt - 1:
                        sig = sig_table[nt - 1]
                    else:
                        ix = int(x)
                        f = x - ix
                        sig = sig_table[ix] * (1.0 - f) + sig_table[ix + 1] * f
                ilo = math.ceil((w - cutoff * sig - e0) / de)
                ihi = math.floor((w + cutoff * sig - e0) / de)
                ilo = max(ilo, 0)
                ihi = min(ihi, nE - 1)
                if ihi < ilo:
                    continue
                if nl > 0:
                    # constant σ: interpolate the tabulated profile at this sub-bin offset;
                    # the taps are independent (no dependency chain), so the loop vectorises
                    xf = (w - cutoff * sig - e0) / de
                    i0 = math.ceil(xf)
                    u = (i0 - xf) * nl
                    iu = int(u)
                    if iu >= nl:
                        iu = nl - 1
                    fu = u - iu
                    wa = blk_w[b] * (1.0 - fu)
                    wb = blk_w[b] * fu
                    klo = -i0 if i0 < 0 else 0
                    khi = min(ntap, nE - i0)
                    row = img[qb]
                    pa = lut_g[iu]
                    pb = lut_g[iu + 1]
                    for k in range(klo, khi):
                        row[i0 + k] += wa * pa[k] + wb * pb[k]
                    continue
                # energy-dependent σ: Gaussian by recurrence, g_{i+1} = g_i r_i, r_{i+1} = r_i c
                d = de / sig
                c = math.exp(-d * d)
                t = (e0 + ilo * de - w) / sig
                g = math.exp(-0.5 * t * t) * blk_w[b] * 0.3989422804014327 / sig
                r = math.exp(-t * d - 0.5 * d * d)
                row = img[qb]
                for i in range(ilo, ihi + 1):
                    row[i] += g
                    g *= r
                    r *= c
        min_mev[n] = lo_min
        if do_img and normalize:
            mn = np.float32(1e30)
            mx = np.float32(-1e30)
            for q in range(nq):
                rq = img[q]
                for i in range(nE):
                    v = rq[i]
                    mn = min(mn, v)
                    mx = max(mx, v)
            scale = np.float32(1.0 / (mx - mn)) if mx > mn else np.float32(0.0)
            for q in range(nq):
                rq = img[q]
                for i in range(nE):
                    rq[i] = (rq[i] - mn) * scale
        if do_img and qmode > 0:
            _quantize_image(img, qout[n])


@njit(cache=True)
def _quantize_image(img, dst):
    """One float32 image in [0, 1] → ``dst`` uint8 = round(255·I), clipped to 0…255 (vectorises)."""
    nq, nE = img.shape
    for q in range(nq):
        for i in range(nE):
            v = img[q, i] * np.float32(255.0) + np.float32(0.5)
            v = min(max(v, np.float32(0.0)), np.float32(255.0))
            dst[q, i] = np.uint8(v)


def gaussian_luts(sigma: float, de: float, cutoff: float, n: int = 256):
    """Gaussian profile for a constant σ, tabulated over the offset u ∈ [0, 1] (in bins) of
    the first bin above ω − cutoff·σ: ``prof[j, k]`` is the normalised Gaussian (per meV) at
    tap k (bin i0 + k) for u = j/n, zero beyond the cutoff. Returns (prof (n+1, taps), dummy)."""
    u = np.linspace(0.0, 1.0, n + 1)[:, None]
    ntap = int(np.ceil(2 * cutoff * sigma / de)) + 2
    k = np.arange(ntap)[None, :]
    t = ((u + k) * de - cutoff * sigma) / sigma
    prof = np.where(np.abs(t) <= cutoff, np.exp(-0.5 * t * t) * 0.3989422804014327 / sigma, 0.0)
    return np.ascontiguousarray(prof), np.zeros(0)


@njit(parallel=True, cache=True)
def parallel_copy(src, dst):
    """dst[:] = src for 1-d arrays, in parallel blocks of 1 MiB (a memory-bandwidth probe)."""
    n = src.shape[0]
    blk = 1 << 18
    nb = (n + blk - 1) // blk
    for j in prange(nb):
        lo = j * blk
        hi = min(n, lo + blk)
        for k in range(lo, hi):
            dst[k] = src[k]
