import { test } from "node:test";
import assert from "node:assert/strict";
import {
  mapGeometry, toPixel, toData, clickSelection, lassoSelection, rayEndpoint, pointColors, MAP_PAD,
  stripLabels,
} from "../../fcinv_widgets/static/latent_picker.js";
import { pointInPolygon, lassoSelect } from "../../fcinv_widgets/static/common.js";

// fake model state: 5 map points (interleaved x, y as the Python (N, 2) float32 array)
const xy = Float32Array.from([0, 0, 1, 0, 1, 1, 0, 1, 0.5, 0.5]);
const W = 300, H = 200;

test("map geometry fits the points and overlays inside the plot rectangle", () => {
  const g = mapGeometry(xy, W, H, Float32Array.from([2, 2]));
  assert.ok(g.xr[1] > 2 && g.yr[1] > 2); // overlay widened the range
  for (let i = 0; i < 5; i++) {
    assert.ok(g.px[i] >= MAP_PAD.l && g.px[i] <= W - MAP_PAD.r);
    assert.ok(g.py[i] >= MAP_PAD.t && g.py[i] <= H - MAP_PAD.b);
  }
  assert.ok(g.py[3] < g.py[0]); // y upwards
  const [x, y] = toPixel(g, 0.5, 0.5);
  assert.ok(Math.abs(x - g.px[4]) < 1e-9 && Math.abs(y - g.py[4]) < 1e-9);
  const [dx, dy] = toData(g, x, y);
  assert.ok(Math.abs(dx - 0.5) < 1e-9 && Math.abs(dy - 0.5) < 1e-9);
});

test("click hit-testing: nearest point, miss clears, shift toggles", () => {
  const g = mapGeometry(xy, W, H);
  assert.deepEqual(clickSelection(g, g.px[2] + 2, g.py[2] - 1), [2]);
  assert.deepEqual(clickSelection(g, g.px[2] + 40, g.py[2] + 40), []);
  assert.deepEqual(clickSelection(g, g.px[1], g.py[1], [4], true), [1, 4]);
  assert.deepEqual(clickSelection(g, g.px[4], g.py[4], [1, 4], true), [1]);
  assert.deepEqual(clickSelection(g, 0, 0, [1, 4], true), [1, 4]); // shift-click on nothing keeps
});

test("lasso point-in-polygon selects the enclosed points", () => {
  const g = mapGeometry(xy, W, H);
  // a box around the bottom row 0 (0,0), 1 (1,0) up to the centre 4, not the top row 2, 3
  const pad = 6;
  const poly = [[g.px[0] - pad, g.py[0] + pad], [g.px[1] + pad, g.py[1] + pad],
    [g.px[1] + pad, g.py[4] - pad], [g.px[0] - pad, g.py[4] - pad]];
  assert.deepEqual(lassoSelection(g, poly), [0, 1, 4]);
  assert.deepEqual(lassoSelection(g, poly, [3], true), [0, 1, 3, 4]);
  assert.deepEqual(lassoSelection(g, poly.slice(0, 2)), []); // not a polygon
  // concave polygon (a "U"): the notch is outside
  const U = [[0, 0], [30, 0], [30, 30], [20, 30], [20, 10], [10, 10], [10, 30], [0, 30]];
  assert.equal(pointInPolygon(15, 20, U), false);
  assert.equal(pointInPolygon(5, 20, U), true);
  assert.deepEqual([...lassoSelect([15, 5, 25], [20, 20, 25], U)], [1, 2]);
});

test("ray end points: a map point index near a point, else a map position", () => {
  const g = mapGeometry(xy, W, H);
  assert.equal(rayEndpoint(g, g.px[3] + 3, g.py[3]), 3);
  const [x, y] = toPixel(g, 0.25, 0.75);
  const p = rayEndpoint(g, x, y);
  assert.ok(Array.isArray(p) && Math.abs(p[0] - 0.25) < 1e-9 && Math.abs(p[1] - 0.75) < 1e-9);
});

test("colour mapping by FC value (viridis, clamped)", () => {
  const c = pointColors(Float32Array.from([0, 1, 0.5, 7, NaN]), 0, 1);
  assert.equal(c[0], "rgb(68,1,84)");
  assert.equal(c[1], "rgb(253,231,37)");
  assert.equal(c[3], c[1]);
  assert.equal(c[4], "rgb(128,128,128)");
  assert.notEqual(c[2], c[0]);
});

test("hover read-out of a map point: index and every FC with units", async () => {
  const { pointReadout } = await import("../../fcinv_widgets/static/latent_picker.js");
  const params = Float32Array.from([1, 2, 3, 4.5]); params.shape = [2, 2];
  const t = pointReadout(1, params, ["FC0", "FC1"], "eV/Å²");
  assert.match(t, /^point 1\nFC0 = 3 eV\/Å²\nFC1 = 4.5 eV\/Å²$/);
  assert.equal(pointReadout(-1, params, [], ""), "");
});

test("ray strip labels never overprint (session 49: 't=0.1t=0.2…' under ~35 px thumbnails)", () => {
  const measure = (s) => 6.2 * s.length; // 11 px sans: about 6 px a character
  for (const [m, pitch] of [[8, 110], [8, 40], [8, 30], [32, 32], [32, 14], [64, 9], [2, 20]]) {
    const labels = stripLabels(m, pitch, measure);
    assert.equal(labels.length, m);
    assert.equal(labels[0], "A");
    assert.equal(labels[m - 1], "B");
    const shown = labels.map((s, k) => [k, s]).filter(([, s]) => s);
    for (let i = 1; i < shown.length; i++) {
      const [k0, s0] = shown[i - 1], [k1] = shown[i];
      assert.ok(k0 * pitch + 2 + measure(s0) <= k1 * pitch + 2, `m=${m} pitch=${pitch}: ${s0} runs into the next label`);
    }
    if (m > 2 && pitch >= 30) assert.ok(shown.length > 2, `m=${m} pitch=${pitch}: some t shown`);
  }
  assert.deepEqual(stripLabels(3, 110, measure), ["A", "t=0.50", "B"]);
  assert.deepEqual(stripLabels(3, 34, measure), ["A", "0.50", "B"]);
});
