import { test } from "node:test";
import assert from "node:assert/strict";
import {
  makeLut, floatToRGBA, niceTicks, layoutQLabels, cellAt, nearestPoint,
  pointInPolygon, lassoSelect, makeCoalescer, sharedCounter, decodeArray, encodeArray, difference, clamp,
} from "../../fcinv_widgets/static/common.js";

// A fake forward model: 4 q-points x 3 energies, q-major like the Python side.
const fake = { nq: 4, nE: 3, image: Float32Array.from([0, 0.5, 1, 0.2, NaN, 0.4, 1, 1, 1, 0, 0, 0]) };

test("lut endpoints are viridis ends", () => {
  const lut = makeLut();
  assert.equal(lut.length, 768);
  assert.deepEqual([...lut.slice(0, 3)], [68, 1, 84]);
  assert.deepEqual([...lut.slice(765)], [253, 231, 37]);
});

test("floatToRGBA transposes q-major data with energy upwards and NaN transparent", () => {
  const lut = makeLut();
  const px = floatToRGBA(fake.image, fake.nq, fake.nE, lut);
  assert.equal(px.length, 4 * 3 * 4);
  // pixel at column iq=0, bottom row (ie=0) -> value 0 -> lut[0]
  const o = ((fake.nE - 1) * fake.nq + 0) * 4;
  assert.deepEqual([...px.slice(o, o + 4)], [68, 1, 84, 255]);
  // top row, iq=0 -> value 1
  assert.deepEqual([...px.slice(0, 4)], [253, 231, 37, 255]);
  // NaN at iq=1, ie=1 -> middle row
  const on = ((fake.nE - 2) * fake.nq + 1) * 4;
  assert.equal(px[on + 3], 0);
});

test("floatToRGBA clamps out-of-range values", () => {
  const lut = makeLut();
  const px = floatToRGBA(Float32Array.from([-5, 7]), 1, 2, lut);
  assert.deepEqual([...px.slice(4, 7)], [68, 1, 84]);
  assert.deepEqual([...px.slice(0, 3)], [253, 231, 37]);
});

test("difference is symmetric in range", () => {
  const d = difference(Float32Array.from([1, 0]), Float32Array.from([0.5, 0.75]));
  assert.equal(d.vmax, 0.75);
  assert.equal(d.vmin, -0.75);
});

test("niceTicks", () => {
  assert.deepEqual(niceTicks(0, 40, 4), [0, 10, 20, 30, 40]);
  assert.deepEqual(niceTicks(0.3, 1.1, 4), [0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(1, 1), [1]);
  // a float32 maximum a hair under the tick keeps it (the colour bar's "1" came and went)
  assert.deepEqual(niceTicks(0, 0.99999994, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(0.2000000003, 1, 4), [0.2, 0.4, 0.6, 0.8, 1]);
});

test("q-path labels merge at breaks", () => {
  const labels = [[0, "Γ"], [1, "X"], [1, "K"], [2, "Γ"], [3, "L"]];
  const out = layoutQLabels(labels, [1], 0, 3, 0, 300);
  assert.deepEqual(out.map((l) => l.text), ["Γ", "X|K", "Γ", "L"]);
  assert.deepEqual(out.map((l) => l.px), [0, 100, 200, 300]);
  assert.deepEqual(out.map((l) => l.isBreak), [false, true, false, false]);
});

test("cellAt hit-tests a 5x5 grid", () => {
  const rect = { x: 10, y: 10, w: 100, h: 100 };
  assert.equal(cellAt(10, 10, 5, 5, rect), 0);
  assert.equal(cellAt(109, 109, 5, 5, rect), 24);
  assert.equal(cellAt(35, 15, 5, 5, rect), 1);
  assert.equal(cellAt(5, 50, 5, 5, rect), -1);
  assert.equal(cellAt(110, 50, 5, 5, rect), -1);
});

test("nearestPoint", () => {
  assert.equal(nearestPoint(0, 0, [10, 3, -2], [0, 4, 1], 8), 2);
  assert.equal(nearestPoint(100, 100, [10, 3], [0, 4], 8), -1);
});

test("lasso point-in-polygon", () => {
  const sq = [[0, 0], [10, 0], [10, 10], [0, 10]];
  assert.equal(pointInPolygon(5, 5, sq), true);
  assert.equal(pointInPolygon(15, 5, sq), false);
  const sel = lassoSelect([1, 20, 9, 5], [1, 5, 9, -1], sq);
  assert.ok(sel instanceof Uint32Array);
  assert.deepEqual([...sel], [0, 2]);
  assert.equal(lassoSelect([1], [1], [[0, 0], [1, 1]]).length, 0);
});

test("coalescer: latest value wins, never a queue", () => {
  const sent = [];
  const c = makeCoalescer((v, s) => sent.push([v, s]));
  c.push(1);
  c.push(2); c.push(3); c.push(4);
  assert.deepEqual(sent, [[1, 1]]);
  assert.equal(c.busy, true);
  c.done(1);
  assert.deepEqual(sent, [[1, 1], [4, 2]]);
  c.done(1); // stale ack ignored
  assert.equal(c.busy, true);
  c.done(2);
  assert.equal(c.busy, false);
  c.push(5);
  assert.deepEqual(sent.at(-1), [5, 3]);
});

test("coalescers of two views of one model share the request numbers: a later answer frees both", () => {
  // session 47: with a counter per view, view 1's request 3 answered after view 2's request 10
  // left view 2 busy for good (its focused slider never took the kernel's values again)
  const state = { request_seq: 7, rendered_seq: 7 };
  const model = { get: (k) => state[k] };
  const sent = [];
  const a = makeCoalescer((v, s) => sent.push(["a", v, s]), sharedCounter(model));
  const b = makeCoalescer((v, s) => sent.push(["b", v, s]), sharedCounter(model));
  assert.equal(sharedCounter(model), sharedCounter(model)); // one counter per model
  a.push(1);
  b.push(2);
  assert.deepEqual(sent, [["a", 1, 8], ["b", 2, 9]]); // above the kernel's last request, never reused
  a.push(3); // waits for a's answer
  b.done(9); a.done(9); // the kernel rendered b's (later) request: both are free, a's pending goes out
  assert.equal(b.busy, false);
  assert.deepEqual(sent.at(-1), ["a", 3, 10]);
  a.done(10);
  assert.equal(a.busy, false);
});

test("decode/encode arrays round-trip", () => {
  const a = Float32Array.from([1, 2, 3, 4, 5, 6]);
  const enc = encodeArray(a, [2, 3]);
  const dec = decodeArray(enc);
  assert.deepEqual([...dec], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(dec.shape, [2, 3]);
  assert.equal(decodeArray(null), null);
  assert.throws(() => decodeArray({ buffer: new DataView(new ArrayBuffer(4)), dtype: "complex", shape: [1] }));
});

test("clamp", () => {
  assert.equal(clamp(5, 0, 1), 1);
  assert.equal(clamp(-5, 0, 1), 0);
});

test("quantised uint8 image decodes with scale and maps to the LUT ends", async () => {
  const { toFloat } = await import("../../fcinv_widgets/static/common.js");
  const enc = { buffer: new DataView(Uint8Array.from([0, 127, 254]).buffer), dtype: "uint8", shape: [3, 1], scale: 1 / 254 };
  const a = decodeArray(enc);
  assert.equal(a.scale, 1 / 254);
  const f = toFloat(a);
  assert.ok(Math.abs(f[2] - 1) < 1e-6 && f[0] === 0);
  const px = floatToRGBA(a, 3, 1, makeLut(), 0, 254);
  assert.deepEqual([...px.slice(8, 11)], [253, 231, 37]);
});

test("q labels that would touch go to a second row at their true positions", async () => {
  const { labelRows, drawQLabels } = await import("../../fcinv_widgets/static/common.js");
  // Γ … X U|K (close) … Γ: U|K drops to row 1, the rest stay on row 0
  assert.deepEqual(labelRows([0, 100, 108, 200], [8, 8, 22, 8]), [0, 0, 1, 0]);
  assert.deepEqual(labelRows([0, 50, 100], [8, 8, 8]), [0, 0, 0]);
  // three crowded labels: the third goes back to row 0 once row 0 is clear again
  assert.deepEqual(labelRows([0, 6, 12, 30], [8, 8, 8, 8]), [0, 1, 0, 0]);
  // a label that fits neither row is left out (-1), never drawn over another
  assert.deepEqual(labelRows([0, 4, 8, 30], [8, 8, 8, 8]), [0, 1, -1, 0]);
  const drawn = [];
  const ctx = { measureText: (t) => ({ width: 7 * t.length }), fillText: (t, x, y) => drawn.push([t, x, y]) };
  drawQLabels(ctx, [{ px: 10, text: "X" }, { px: 16, text: "U|K" }, { px: 400, text: "Γ" }], 50, 11, (px) => px < 300);
  assert.deepEqual(drawn, [["X", 10, 50], ["U|K", 16, 61]]);
  drawn.length = 0;
  drawQLabels(ctx, [{ px: 10, text: "X" }, { px: 14, text: "U|K" }, { px: 18, text: "W" }], 50);
  assert.deepEqual(drawn.map((d) => d[0]), ["X", "U|K"]);
});

test("wrapText keeps lines within the width; compactCount shortens counts", async () => {
  const { wrapText, compactCount } = await import("../../fcinv_widgets/static/common.js");
  const ctx = { measureText: (t) => ({ width: 6 * t.length }) };
  const lines = wrapText(ctx, "ray tool: click two points to decode spectra along the latent line", 120);
  assert.ok(lines.length > 1 && lines.every((l) => 6 * l.length <= 120), lines);
  assert.equal(lines.join(" "), "ray tool: click two points to decode spectra along the latent line");
  assert.deepEqual([3000, 10000, 300, 2.5e6, 1500].map(compactCount), ["3k", "10k", "300", "2.5M", "1.5k"]);
});

test("sliderStep lets the last step reach the top of the range", async () => {
  const { sliderStep } = await import("../../fcinv_widgets/static/common.js");
  // the browser snaps a range input to lo + floor((v - lo) / step) * step; End must land on hi (within 2e-9 of the range)
  for (const [lo, hi] of [[-0.585, 0], [-2.947, -1.2], [0.1, 0.7], [-3.3, 2.2]]) {
    const step = sliderStep(lo, hi);
    const k = Math.floor((hi - lo) / step);
    assert.equal(k, 200, `${lo}..${hi}`);
    assert.ok(lo + k * step <= hi && hi - (lo + k * step) <= 2e-9 * (hi - lo), `${lo}..${hi}`);
  }
});
