// The forward model in JavaScript: force-constant parameters θ (eV/Å²) → phonon energies (meV)
// → I(q, E) image, without a kernel. It evaluates the arrays exported once by
// fcinv_widgets/widgets/_jsforward.py (forward_payload): the packed entries of the small
// Hermitian blocks of the dynamical matrix, linear in θ ([1, θ] @ W), for the q-path (image)
// and the stability mesh, with the same algorithm as the fused CPU kernel
// (fcinv_widgets/_cpu_kernel.py): closed-form eigenvalues of 1×1/2×2/3×3 blocks (Jacobi for
// larger ones), energies sign(λ)·√|λ|·to_mev, Gaussians (tabulated profile for a constant σ,
// recurrence for σ(E)), 4σ truncation, min-max scaling to [0, 1], minimum energy → stability.
// Pure functions, no DOM: tested by js/test/forward_model.test.mjs against images exported by
// Python. Names carry a "fwd" prefix: this file is inlined into the widget module beside
// common.js (fcinv_widgets/widgets/_assets.py).

const FWD_TYPES = { float64: Float64Array, float32: Float32Array, int32: Int32Array, uint8: Uint8Array };
const FWD_TWO_PI_3 = 2.0 * Math.PI / 3.0;

/** Typed array from {buffer, dtype, shape} (widget state) or {b64, dtype, shape} (a JSON file). */
export function fwdTyped(obj) {
  const Ctor = FWD_TYPES[obj.dtype];
  if (!Ctor) throw new Error(`forward model: unsupported dtype ${obj.dtype}`);
  let bytes;
  if (obj.b64 != null) {
    const bin = typeof atob === "function" ? atob(obj.b64) : Buffer.from(obj.b64, "base64").toString("binary");
    bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  } else {
    const b = obj.buffer;
    const ab = b instanceof ArrayBuffer ? b : b.buffer;
    bytes = new Uint8Array(ab, b.byteOffset || 0, b.byteLength);
  }
  // copy: typed arrays need an aligned offset
  const out = new Ctor(bytes.byteLength / Ctor.BYTES_PER_ELEMENT);
  new Uint8Array(out.buffer).set(bytes);
  out.shape = obj.shape;
  return out;
}

/** Decode the payload of forward_payload() into a model for fwdEvaluate (or null). */
export function fwdDecode(payload) {
  if (!payload || payload.W == null) return null;
  if (payload.version !== 1) throw new Error(`forward model payload version ${payload.version} is not supported (1)`);
  const fm = { ...payload };
  for (const k of ["W", "blk_m", "blk_off", "blk_k", "blk_q", "blk_w", "sigma", "lut"]) fm[k] = fwdTyped(payload[k]);
  fm.A1 = fm.n_active + 1;
  fm.nBlocks = fm.blk_m.length;
  fm.kmax = 0;
  for (let b = 0; b < fm.nBlocks; b++) fm.kmax = Math.max(fm.kmax, fm.blk_k[b]);
  fm.nl = fm.lut.shape[0] > 0 ? fm.lut.shape[0] - 1 : 0;
  fm.ntap = fm.lut.shape.length > 1 ? fm.lut.shape[1] : 0;
  // scratch buffers reused by every evaluation (no allocation per frame)
  fm._e = new Float64Array(fm.kmax);
  fm._lam = new Float64Array(64);
  fm._acc = new Float64Array(fm.nq * fm.nE);
  fm._qfill = new Int32Array(fm.nq);
  fm._th = new Float64Array(fm.A1);
  return fm;
}

/** Eigenvalues of a Hermitian m×m matrix H = A + iB (row-major re, im) by cyclic Jacobi on
 *  the real symmetric [[A, −B], [B, A]] (each eigenvalue of H appears twice). Ascending. */
export function fwdHermitianEigvals(re, im, m) {
  const n = 2 * m;
  const a = new Float64Array(n * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < m; j++) {
      const r = re[i * m + j], s = im[i * m + j];
      a[i * n + j] = r; a[(i + m) * n + j + m] = r;
      a[i * n + j + m] = -s; a[(i + m) * n + j] = s;
    }
  }
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0, diag = 0;
    for (let i = 0; i < n; i++) {
      diag += a[i * n + i] * a[i * n + i];
      for (let j = i + 1; j < n; j++) off += a[i * n + j] * a[i * n + j];
    }
    if (off <= 1e-30 * diag || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
      }
    }
  }
  const d = [];
  for (let i = 0; i < n; i++) d.push(a[i * n + i]);
  d.sort((x, y) => x - y);
  const out = new Float64Array(m);
  for (let i = 0; i < m; i++) out[i] = 0.5 * (d[2 * i] + d[2 * i + 1]);
  return out;
}

/** Eigenvalues (ascending) of one packed Hermitian block e of size m into lam[0..m). The packing
 *  is forward._pack: 1×1 [a]; 2×2 [a, d, Re b, Im b]; 3×3 [a1, a2, a3, r12, i12, r13, i13, r23,
 *  i23]; larger: [re (m·m), im (m·m)] row-major. */
export function fwdEigBlock(e, m, lam) {
  if (m === 1) {
    lam[0] = e[0];
  } else if (m === 2) {
    const h = 0.5 * (e[0] + e[1]);
    const r = Math.sqrt(0.25 * (e[0] - e[1]) ** 2 + e[2] * e[2] + e[3] * e[3]);
    lam[0] = h - r; lam[1] = h + r;
  } else if (m === 3) {
    const a1 = e[0], a2 = e[1], a3 = e[2];
    const r12 = e[3], i12 = e[4], r13 = e[5], i13 = e[6], r23 = e[7], i23 = e[8];
    const p1 = r12 * r12 + i12 * i12 + r13 * r13 + i13 * i13 + r23 * r23 + i23 * i23;
    const q = (a1 + a2 + a3) / 3.0;
    const b1 = a1 - q, b2 = a2 - q, b3 = a3 - q;
    const p2 = b1 * b1 + b2 * b2 + b3 * b3 + 2.0 * p1;
    if (p2 <= 1e-300) { lam[0] = lam[1] = lam[2] = q; return; }
    const p = Math.sqrt(p2 / 6.0);
    const xr = r12 * r23 - i12 * i23;
    const xi = r12 * i23 + i12 * r23;
    const det = b1 * b2 * b3 + 2.0 * (xr * r13 + xi * i13) - b1 * (r23 * r23 + i23 * i23)
      - b2 * (r13 * r13 + i13 * i13) - b3 * (r12 * r12 + i12 * i12);
    let r = det / (2.0 * p * p * p);
    r = r < -1 ? -1 : r > 1 ? 1 : r;
    const phi = Math.acos(r) / 3.0;
    const l1 = q + 2.0 * p * Math.cos(phi);
    const l3 = q + 2.0 * p * Math.cos(phi + FWD_TWO_PI_3);
    lam[0] = l3; lam[1] = 3.0 * q - l1 - l3; lam[2] = l1;
  } else {
    const k = m * m;
    const w = fwdHermitianEigvals(e.subarray(0, k), e.subarray(k, 2 * k), m);
    for (let i = 0; i < m; i++) lam[i] = w[i];
  }
}

/**
 * Evaluate the forward model at θ (length n_active, eV/Å²).
 * Returns {image: Float32Array (nq·nE, q-major; min-max scaled to [0, 1] unless
 * normalize=false, then density per meV), freqs: Float32Array (nq·n_modes, meV, ascending per
 * q; negative = imaginary), minMev (lowest energy on path and mesh), stable (minMev ≥ the
 * threshold)}. ``out`` may pass {image, freqs} buffers to reuse.
 */
export function fwdEvaluate(fm, theta, { normalize = true, out = null } = {}) {
  const { A1, W, blk_m, blk_off, blk_k, blk_q, blk_w, nq, nE, e0, de, to_mev, cutoff } = fm;
  if (theta.length !== fm.n_active) throw new Error(`forward model needs ${fm.n_active} parameters, got ${theta.length}`);
  const th = fm._th;
  th[0] = 1;
  for (let a = 0; a < fm.n_active; a++) th[a + 1] = theta[a];
  const sig = fm.sigma, nt = sig.length, sigE0 = fm.sigma_e0, sigDe = fm.sigma_de;
  const lut = fm.lut, nl = fm.nl, ntap = fm.ntap, nModes = fm.n_modes;
  const acc = fm._acc; acc.fill(0);
  const image = out && out.image ? out.image : new Float32Array(nq * nE);
  const freqs = out && out.freqs ? out.freqs : new Float32Array(nq * nModes);
  const qfill = fm._qfill; qfill.fill(0);
  const e = fm._e, lam = fm._lam;
  let loMin = Infinity;
  for (let b = 0; b < fm.nBlocks; b++) {
    const m = blk_m[b], off = blk_off[b], kk = blk_k[b];
    for (let j = 0; j < kk; j++) {
      const row = (off + j) * A1;
      let s = 0;
      for (let a = 0; a < A1; a++) s += th[a] * W[row + a];
      e[j] = s;
    }
    fwdEigBlock(e, m, lam);
    const qb = blk_q[b], mult = blk_w[b];
    for (let j = 0; j < m; j++) {
      const l = lam[j];
      const w = l >= 0 ? Math.sqrt(l) * to_mev : -Math.sqrt(-l) * to_mev;
      if (w < loMin) loMin = w;
      if (qb < 0) continue;
      for (let r = 0; r < mult; r++) freqs[qb * nModes + qfill[qb]++] = w;
      let sg;
      if (nt === 1) sg = sig[0];
      else {
        const x = (w - sigE0) / sigDe;
        if (x <= 0) sg = sig[0];
        else if (x >= nt - 1) sg = sig[nt - 1];
        else { const ix = Math.floor(x), f = x - ix; sg = sig[ix] * (1 - f) + sig[ix + 1] * f; }
      }
      let ilo = Math.ceil((w - cutoff * sg - e0) / de);
      let ihi = Math.floor((w + cutoff * sg - e0) / de);
      if (ilo < 0) ilo = 0;
      if (ihi > nE - 1) ihi = nE - 1;
      if (ihi < ilo) continue;
      const base = qb * nE;
      if (nl > 0) {
        // constant σ: the kernel's tabulated profile, linear in the sub-bin offset
        const xf = (w - cutoff * sg - e0) / de;
        const i0 = Math.ceil(xf);
        const u = (i0 - xf) * nl;
        let iu = Math.floor(u);
        if (iu >= nl) iu = nl - 1;
        const fu = u - iu;
        const wa = mult * (1 - fu), wb = mult * fu;
        const klo = i0 < 0 ? -i0 : 0;
        const khi = nE - i0 < ntap ? nE - i0 : ntap;
        const pa = iu * ntap, pb = (iu + 1) * ntap;
        for (let k = klo; k < khi; k++) acc[base + i0 + k] += wa * lut[pa + k] + wb * lut[pb + k];
        continue;
      }
      // σ(E): Gaussian by recurrence, g_{i+1} = g_i r_i, r_{i+1} = r_i c
      const d = de / sg;
      const c = Math.exp(-d * d);
      const t = (e0 + ilo * de - w) / sg;
      let g = Math.exp(-0.5 * t * t) * mult * 0.3989422804014327 / sg;
      let r = Math.exp(-t * d - 0.5 * d * d);
      for (let i = ilo; i <= ihi; i++) { acc[base + i] += g; g *= r; r *= c; }
    }
  }
  // sort the energies at each q (ascending, as ForwardModel.frequencies)
  for (let q = 0; q < nq; q++) {
    const seg = freqs.subarray(q * nModes, (q + 1) * nModes);
    seg.sort();
  }
  if (normalize) {
    let mn = Infinity, mx = -Infinity;
    for (let i = 0; i < acc.length; i++) { const v = acc[i]; if (v < mn) mn = v; if (v > mx) mx = v; }
    const scale = mx > mn ? 1 / (mx - mn) : 0;
    for (let i = 0; i < acc.length; i++) image[i] = (acc[i] - mn) * scale;
  } else {
    for (let i = 0; i < acc.length; i++) image[i] = acc[i];
  }
  image.shape = [nq, nE];
  freqs.shape = [nq, nModes];
  return { image, freqs, minMev: loMin, stable: loMin >= fm.unstable_below_mev };
}
