// The JavaScript forward model (kernel-free FCExplorer).
// Unit tests run on their own; the agreement with Python (Ge and Nb, |ΔI| ≤ 1e-5 on the
// [0, 1]-scaled image, the same stability flag) runs when FCINV_JSFORWARD_FIXTURES names
// fixture files (comma-separated) written by tests/test_jsforward.py, which sets it and calls
// `node --test` on this file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  fwdDecode, fwdEvaluate, fwdEigBlock, fwdHermitianEigvals, fwdTyped,
} from "../../fcinv_widgets/static/forward_model.js";

function rng(seed) {
  let s = seed >>> 0;
  return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 2 ** 32 - 0.5; };
}

function randomHermitian(m, r) {
  const re = new Float64Array(m * m), im = new Float64Array(m * m);
  for (let i = 0; i < m; i++) {
    re[i * m + i] = 4 * r();
    for (let j = i + 1; j < m; j++) {
      re[i * m + j] = re[j * m + i] = r();
      im[i * m + j] = r(); im[j * m + i] = -im[i * m + j];
    }
  }
  return { re, im };
}

// tr(H^k), k = 1..m, by complex matrix products
function powerTraces(re, im, m) {
  let pr = Float64Array.from(re), pi = Float64Array.from(im);
  const out = [];
  for (let k = 1; k <= m; k++) {
    let t = 0;
    for (let i = 0; i < m; i++) t += pr[i * m + i];
    out.push(t);
    const nr = new Float64Array(m * m), ni = new Float64Array(m * m);
    for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) {
      let sr = 0, si = 0;
      for (let l = 0; l < m; l++) {
        sr += pr[i * m + l] * re[l * m + j] - pi[i * m + l] * im[l * m + j];
        si += pr[i * m + l] * im[l * m + j] + pi[i * m + l] * re[l * m + j];
      }
      nr[i * m + j] = sr; ni[i * m + j] = si;
    }
    pr = nr; pi = ni;
  }
  return out;
}

test("Jacobi eigenvalues of Hermitian 4x4..6x6 satisfy tr(H^k) = Σλ^k (Newton identities)", () => {
  const r = rng(7);
  for (const m of [4, 5, 6]) {
    const { re, im } = randomHermitian(m, r);
    const lam = fwdHermitianEigvals(re, im, m);
    for (let i = 1; i < m; i++) assert.ok(lam[i] >= lam[i - 1]);
    const tr = powerTraces(re, im, m);
    tr.forEach((t, k) => {
      const s = lam.reduce((acc, l) => acc + l ** (k + 1), 0);
      assert.ok(Math.abs(s - t) < 1e-9 * Math.max(1, Math.abs(t)), `m=${m} k=${k + 1}: ${s} vs ${t}`);
    });
  }
});

test("closed-form 2x2 and 3x3 eigenvalues agree with Jacobi, and the packed layout is forward._pack's", () => {
  const r = rng(11);
  const lam = new Float64Array(8);
  for (let trial = 0; trial < 50; trial++) {
    for (const m of [2, 3]) {
      const { re, im } = randomHermitian(m, r);
      const e = m === 2
        ? Float64Array.from([re[0], re[3], re[1], im[1]])
        : Float64Array.from([re[0], re[4], re[8], re[1], im[1], re[2], im[2], re[5], im[5]]);
      fwdEigBlock(e, m, lam);
      const ref = fwdHermitianEigvals(re, im, m);
      for (let i = 0; i < m; i++) assert.ok(Math.abs(lam[i] - ref[i]) < 1e-10, `m=${m}: ${lam[i]} vs ${ref[i]}`);
    }
  }
  // larger blocks: [re (m·m), im (m·m)]
  const { re, im } = randomHermitian(4, r);
  const e = new Float64Array(32); e.set(re); e.set(im, 16);
  fwdEigBlock(e, 4, lam);
  const ref = fwdHermitianEigvals(re, im, 4);
  for (let i = 0; i < 4; i++) assert.equal(lam[i], ref[i]);
});

// One 1×1 block per q: λ = θ0 · c_q, so ω_q = √(θ0 c_q)·to_mev; a synthetic payload built here.
function syntheticPayload({ sigma = [1.0], lut = true } = {}) {
  const nq = 3, nE = 80, de = 0.5, e0 = 0.25, cutoff = 4, toMev = 1.0;
  const c = [100, 400, 900]; // ω = 10, 20, 30 meV at θ0 = 1
  const W = new Float64Array(nq * 2);
  for (let q = 0; q < nq; q++) { W[2 * q] = 0; W[2 * q + 1] = c[q]; }
  const enc = (a, dtype, shape) => ({ buffer: a, dtype, shape });
  let L = new Float64Array(0), lshape = [0, 0];
  if (lut && sigma.length === 1) {
    const n = 256, s = sigma[0], ntap = Math.ceil(2 * cutoff * s / de) + 2;
    L = new Float64Array((n + 1) * ntap);
    for (let j = 0; j <= n; j++) for (let k = 0; k < ntap; k++) {
      const t = ((j / n + k) * de - cutoff * s) / s;
      L[j * ntap + k] = Math.abs(t) <= cutoff ? Math.exp(-0.5 * t * t) * 0.3989422804014327 / s : 0;
    }
    lshape = [n + 1, ntap];
  }
  return {
    version: 1, n_active: 1, nq, nE, n_modes: 2, e0, de, to_mev: toMev, cutoff,
    sigma_e0: -10, sigma_de: 0.05, unstable_below_mev: -0.1,
    W: enc(W, "float64", [nq, 2]),
    blk_m: enc(Int32Array.from([1, 1, 1]), "int32", [3]),
    blk_off: enc(Int32Array.from([0, 1, 2]), "int32", [3]),
    blk_k: enc(Int32Array.from([1, 1, 1]), "int32", [3]),
    blk_q: enc(Int32Array.from([0, 1, 2]), "int32", [3]),
    blk_w: enc(Float64Array.from([2, 2, 2]), "float64", [3]),
    sigma: enc(Float64Array.from(sigma), "float64", [sigma.length]),
    lut: enc(L, "float64", lshape),
  };
}

test("a synthetic 1x1-block model: peaks at √λ, unit area per mode, [0, 1] scaling, stability", () => {
  const fm = fwdDecode(syntheticPayload());
  const raw = fwdEvaluate(fm, [1.0], { normalize: false });
  for (let q = 0; q < 3; q++) {
    const row = raw.image.subarray(q * 80, (q + 1) * 80);
    let best = 0;
    for (let i = 1; i < 80; i++) if (row[i] > row[best]) best = i;
    assert.ok(Math.abs(0.25 + 0.5 * best - 10 * (q + 1)) <= 0.25, `peak of q${q} at bin ${best}`);
    const area = row.reduce((a, v) => a + v, 0) * 0.5;
    assert.ok(Math.abs(area - 2) < 1e-3, `area ${area} (multiplicity 2)`);
    assert.deepEqual([...raw.freqs.subarray(2 * q, 2 * q + 2)].map((v) => Math.round(v * 1e4) / 1e4), [10 * (q + 1), 10 * (q + 1)]);
  }
  const img = fwdEvaluate(fm, [1.0]).image;
  assert.equal(Math.max(...img), 1);
  assert.equal(Math.min(...img), 0);
  assert.equal(fwdEvaluate(fm, [1.0]).stable, true);
  const neg = fwdEvaluate(fm, [-1.0]);
  assert.equal(neg.stable, false);
  assert.ok(Math.abs(neg.minMev + 30) < 1e-9);
  assert.throws(() => fwdEvaluate(fm, [1, 2]), /needs 1 parameters/);
});

test("energy-dependent σ (recurrence) gives the same peaks and areas as the profile table for a flat σ(E)", () => {
  const a = fwdEvaluate(fwdDecode(syntheticPayload()), [1.0], { normalize: false }).image;
  const flat = new Array(2000).fill(1.0);
  const b = fwdEvaluate(fwdDecode(syntheticPayload({ sigma: flat, lut: false })), [1.0], { normalize: false }).image;
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-5, `bin ${i}: ${a[i]} vs ${b[i]}`);
});

test("fwdTyped decodes base64 (JSON files) and buffers (widget state) alike", () => {
  const a = Float64Array.from([1.5, -2, 3e-9]);
  const b64 = Buffer.from(a.buffer).toString("base64");
  assert.deepEqual([...fwdTyped({ b64, dtype: "float64", shape: [3] })], [...a]);
  assert.deepEqual([...fwdTyped({ buffer: new DataView(a.buffer), dtype: "float64", shape: [3] })], [...a]);
  assert.throws(() => fwdDecode({ ...syntheticPayload(), version: 99 }), /version 99/);
});

// ------------------------------------------------------------- agreement with Python
const FIXTURES = (process.env.FCINV_JSFORWARD_FIXTURES || "").split(",").filter(Boolean);
const IMAGE_TOL = 1e-5; // max |ΔI| on the [0, 1]-scaled image
const FREQ_TOL_MEV = 1e-4;

for (const path of FIXTURES) {
  const fx = JSON.parse(readFileSync(path, "utf8"));
  test(`${fx.name}: JS and Python images agree to ${IMAGE_TOL} and the stability flags match`, () => {
    const fm = fwdDecode(fx.payload);
    assert.equal(fm.nq * fm.nE, fx.cases[0].image.shape[0] * fx.cases[0].image.shape[1]);
    let nUnstable = 0;
    const report = [];
    for (const c of fx.cases) {
      const r = fwdEvaluate(fm, c.theta);
      const ref = fwdTyped(c.image);
      let dmax = 0;
      for (let i = 0; i < ref.length; i++) dmax = Math.max(dmax, Math.abs(r.image[i] - ref[i]));
      const fref = fwdTyped(c.freqs);
      let fmax = 0;
      for (let i = 0; i < fref.length; i++) fmax = Math.max(fmax, Math.abs(r.freqs[i] - fref[i]));
      report.push(`${c.label}: max|ΔI| ${dmax.toExponential(2)}, max|Δω| ${fmax.toExponential(2)} meV, min ω ${r.minMev.toFixed(4)} meV`);
      assert.ok(dmax <= IMAGE_TOL, `${fx.name} ${c.label}: max |ΔI| = ${dmax}`);
      assert.ok(fmax <= FREQ_TOL_MEV, `${fx.name} ${c.label}: max |Δω| = ${fmax} meV`);
      assert.equal(r.stable, c.stable, `${fx.name} ${c.label}: stability (JS min ${r.minMev}, Python ${c.min_mev} meV)`);
      assert.ok(Math.abs(r.minMev - c.min_mev) < 1e-6 * Math.max(1, Math.abs(c.min_mev)), `${c.label}: min energy ${r.minMev} vs ${c.min_mev}`);
      if (!c.stable) nUnstable++;
    }
    assert.ok(nUnstable > 0 && nUnstable < fx.cases.length, "fixtures need stable and unstable cases");
    console.log(`# ${fx.name}\n# ${report.join("\n# ")}`);
  });
}

// ------------------------------------------------------------- the view's model proxy
import { FWD_IDLE_MS, fwdKernelGate, fwdWrapWidget } from "../../fcinv_widgets/static/jsforward_wrap.js";

test("kernel gate: one request in flight, a newer one waits, the stale answer is hidden", () => {
  const g = fwdKernelGate();
  assert.equal(g.request(), true);
  assert.equal(g.request(), false);
  assert.equal(g.request(), false);
  assert.equal(g.answer(), "send");
  assert.equal(g.busy, true);
  assert.equal(g.answer(), "show");
  assert.equal(g.busy, false);
  assert.equal(g.answer(), "show"); // a kernel frame nobody asked for (Python set θ)
});

function fakeRealModel(payload) {
  const state = { jsforward: payload, values: [1.0], request_seq: 0, frame: 1, image: { tag: "kernel" }, stable: true };
  const handlers = new Map();
  const saved = [];
  return {
    state, saved,
    get: (k) => state[k],
    set(k, v) { state[k] = v; },
    save_changes() { saved.push(state.values.slice()); },
    on(ev, cb) { handlers.set(ev, [...(handlers.get(ev) || []), cb]); },
    off(ev, cb) { handlers.set(ev, (handlers.get(ev) || []).filter((h) => cb && h !== cb)); },
    kernelFrame() { state.frame += 1; for (const h of handlers.get("change:frame") || []) h(); },
  };
}

/** A view behind the proxy over a fake model: the images it is shown, and a "release" (pointer up, key). */
function wrappedView() {
  const real = fakeRealModel(syntheticPayload());
  const listeners = [];
  const root = { dataset: {}, addEventListener: (ev, cb) => listeners.push(cb), removeEventListener() {} };
  const seen = [];
  let view;
  const base = { render({ model }) { view = model; model.on("change:frame", () => seen.push(model.get("image"))); return () => {}; } };
  const cleanup = fwdWrapWidget(base).render({ model: real, el: root });
  return { real, root, release: () => listeners.forEach((cb) => cb()), seen, view, cleanup };
}

test("the proxy answers each slider request in the page and lets only the latest reach the view from the kernel", () => {
  const { real, root, release, seen, view, cleanup } = wrappedView();
  assert.equal(root.dataset.jsForward, "on");
  // a save without a values change (another control) is passed through, no frame
  view.set("e_view", [0, 10]); view.save_changes();
  assert.equal(seen.length, 0);
  assert.deepEqual(real.saved, [[1.0]]);
  real.saved.length = 0;
  // a slider move: values set, saved → a JS frame at once, the request goes to the kernel
  view.set("values", [0.95]); view.set("request_seq", 1); view.save_changes();
  assert.equal(seen.length, 1);
  assert.equal(seen[0].dtype, "float32");
  assert.deepEqual(seen[0].shape, [3, 80]);
  assert.equal(root.dataset.source, "js");
  assert.equal(view.get("rendered_seq"), 1);
  assert.deepEqual(real.saved, []); // during a drag nothing goes to the kernel
  release(); // pointer up / key: the kernel gets the latest values
  assert.deepEqual(real.saved, [[0.95]]);
  // two more moves while the kernel computes: both painted, neither sent yet
  view.set("values", [0.9]); view.save_changes();
  view.set("values", [0.8]); view.save_changes();
  release();
  assert.equal(seen.length, 3);
  assert.equal(real.saved.length, 1);
  assert.equal(root.dataset.jsFrames, "3");
  // the kernel answers the first request: stale, hidden; the latest values go out
  real.kernelFrame();
  assert.equal(seen.length, 3);
  assert.deepEqual(real.saved, [[0.95], [0.8]]);
  // the kernel answers the latest: the view repaints from the kernel (ground truth)
  real.kernelFrame();
  assert.equal(seen.length, 4);
  assert.equal(seen[3].tag, "kernel");
  assert.equal(root.dataset.source, "kernel");
  cleanup();
});

test("a kernel answer for values the user has since moved from never replaces the JS frame", () => {
  // session 47 (a slowed kernel): the answer for a flushed request arrived while newer values
  // were painted in the page but not yet flushed, and was shown over them (|ΔI| up to 1)
  const { real, root, release, seen, view, cleanup } = wrappedView();
  view.set("values", [0.95]); view.save_changes();
  release(); // [0.95] goes to the kernel
  view.set("values", [0.7]); view.save_changes(); // a JS frame, still within FWD_IDLE_MS: not flushed
  assert.deepEqual(real.saved, [[0.95]]);
  assert.equal(seen.length, 2);
  real.kernelFrame(); // the answer for 0.95
  assert.equal(seen.length, 2, "the stale kernel frame was shown");
  assert.equal(root.dataset.source, "js");
  release(); // the latest values go out now, and their answer is shown
  assert.deepEqual(real.saved, [[0.95], [0.7]]);
  real.kernelFrame();
  assert.equal(seen.length, 3);
  assert.equal(seen[2].tag, "kernel");
  cleanup();
});

test("without a release the latest values reach the kernel after FWD_IDLE_MS", async () => {
  const real = fakeRealModel(syntheticPayload());
  const root = { dataset: {}, addEventListener() {}, removeEventListener() {} };
  let view;
  const cleanup = fwdWrapWidget({ render({ model }) { view = model; } }).render({ model: real, el: root });
  view.set("values", [0.7]); view.save_changes();
  view.set("values", [0.6]); view.save_changes();
  assert.deepEqual(real.saved, []);
  await new Promise((r) => setTimeout(r, FWD_IDLE_MS + 60));
  assert.deepEqual(real.saved, [[0.6]]);
  cleanup();
});

test("without a jsforward payload the view gets the kernel's model untouched", () => {
  const real = fakeRealModel(null);
  let got;
  fwdWrapWidget({ render({ model }) { got = model; } }).render({ model: real, el: { dataset: {}, addEventListener() {} } });
  assert.equal(got, real);
});
