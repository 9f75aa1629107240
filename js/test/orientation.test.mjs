import { test } from "node:test";
import assert from "node:assert/strict";
import { scatterGeometry, mseGeometry, infoCurve, pickScan, angleColors, plotRect, PAD } from "../../fcinv_widgets/static/orientation.js";
import { lutColor, makeLut, CYCLIC_STOPS, extent, projectPoints } from "../../fcinv_widgets/static/common.js";

// fake model state: 4 scans at 0, 45, 90, 135 degrees
const angles = Float32Array.from([0, 45, 90, 135]);
const vals = Float64Array.from([1, 2, 3, 2]);
const errs = Float64Array.from([0.5, 0.1, 0, 0.1]);

test("scatter geometry covers error bars and horizontal lines", () => {
  const g = scatterGeometry(angles, vals, errs, [5, null], 480, 300);
  assert.deepEqual(g.rect, plotRect(480, 300));
  assert.ok(g.yr[0] < 0.5 && g.yr[1] > 5); // 1 - 0.5 and the full-data line at 5
  // angle increases to the right, value increases upwards
  assert.ok(g.px[0] < g.px[1] && g.px[1] < g.px[2]);
  assert.ok(g.py[2] < g.py[0]);
  for (let i = 0; i < 4; i++) {
    assert.ok(g.px[i] >= PAD.l && g.px[i] <= 480 - PAD.r);
    assert.ok(g.py[i] >= PAD.t && g.py[i] <= 300 - PAD.b);
  }
});

test("hit-testing picks the nearest scan within the radius", () => {
  const g = scatterGeometry(angles, vals, errs, [], 480, 300);
  assert.equal(pickScan(g, g.px[2] + 3, g.py[2] - 2), 2);
  assert.equal(pickScan(g, g.px[1], g.py[1]), 1);
  assert.equal(pickScan(g, 2, 2), -1);
  assert.equal(pickScan(g, g.px[3] + 20, g.py[3]), -1);
});

test("mse panel is logarithmic and tolerates zero", () => {
  const g = mseGeometry(angles, Float32Array.from([1e-3, 1e-2, 0, 1e-1]), 260, 300);
  assert.ok(Math.abs(g.yr[0] - -3) < 0.3 && Math.abs(g.yr[1] - -1) < 0.3);
  assert.equal(g.py[2], g.py[0]); // zero clipped to the smallest positive
  assert.ok(Math.abs((g.py[0] - g.py[1]) - (g.py[1] - g.py[3])) < 1e-3); // decades equally spaced
});

test("angle colours are cyclic and distinct", () => {
  const lut = makeLut(CYCLIC_STOPS);
  assert.deepEqual(lutColor(lut, 0, 0, 1), lutColor(lut, 1, 0, 1)); // ends meet
  const c = angleColors(Float32Array.from([0, 45, 90, 135, 180]));
  assert.equal(c[0], c[4]); // 0° and 180° are the same orientation for a half-turn scan set
  assert.equal(new Set(c.slice(0, 4)).size, 4);
  assert.match(c[1], /^rgb\(\d+,\d+,\d+\)$/);
  assert.deepEqual(lutColor(lut, NaN), [128, 128, 128]);
  assert.deepEqual(lutColor(makeLut(), 5, 0, 1), [253, 231, 37]); // clamped
});

test("extent and projectPoints", () => {
  assert.deepEqual(extent([[1, NaN, 3]], 0), [1, 3]);
  assert.deepEqual(extent([[2, 2]], 0), [1.8, 2.2]);
  assert.deepEqual(extent([[]]), [0, 1]);
  const p = projectPoints([0, 1], [0, 1], [0, 1], [0, 1], { x: 10, y: 20, w: 100, h: 50 });
  assert.deepEqual([...p.px], [10, 110]);
  assert.deepEqual([...p.py], [70, 20]);
});

test("bug 1: a scan's input is coloured over its own range, not a fixed 0-1", async () => {
  const { inputLimits } = await import("../../fcinv_widgets/static/orientation.js");
  const bright = Float32Array.from([0, 2.5, NaN, 10.1]); bright.shape = [2, 2];
  const dim = Float32Array.from([0, 0.3, 0.67, NaN]); dim.shape = [2, 2];
  assert.ok(Math.abs(inputLimits(bright)[1] - 10.1) < 1e-5); // was 1: solid yellow
  assert.ok(Math.abs(inputLimits(dim)[1] - 0.67) < 1e-6); // was 1: dim
  assert.equal(inputLimits(dim)[0], 0);
});

test("bug 7: the MSE panel's log axis has several ticks for less than a decade", async () => {
  const { logTicks } = await import("../../fcinv_widgets/static/common.js");
  const g = mseGeometry(angles, Float32Array.from([0.011, 0.013, 0.02, 0.017]), 260, 300);
  const t = logTicks(g.yr[0], g.yr[1]);
  assert.ok(t.length >= 3, JSON.stringify(t)); // was one tick ("1e-2")
});

test("hover read-out of a scan: angle, FC ± σ with units, MSE", async () => {
  const { scanReadout } = await import("../../fcinv_widgets/static/orientation.js");
  const mean = Float32Array.from([1, 2, 3, 4]); mean.shape = [2, 2];
  const std = Float32Array.from([0.1, 0.2, 0.3, 0.4]); std.shape = [2, 2];
  const st = { angles: Float32Array.from([10, 55.5]), mean, std, mse: Float32Array.from([1e-3, 2e-2]), cov: Float32Array.from([0.5, 0.9]) };
  const txt = scanReadout(1, st, 1, ["FC0", "FC1"], "eV/Å²");
  assert.match(txt, /ω = 55.5°/);
  assert.match(txt, /FC1 = 4 ± 0.4 eV\/Å²/);
  assert.match(txt, /MSE vs full data 0.02/);
  assert.match(txt, /coverage 90 %/);
  assert.equal(scanReadout(-1, st, 0, [], ""), "");
});

test("planner curve: scaled into the lower third, next angle marked, outside angles dropped", async () => {
  const { infoCurve } = await import("../../fcinv_widgets/static/orientation.js");
  const rect = { x: 50, y: 20, w: 300, h: 90 };
  const c = infoCurve(Float32Array.from([0, 45, 90, 200]), Float32Array.from([1, 4, 2, 9]), 45, rect, [0, 180]);
  assert.equal(c.xs.length, 3);
  assert.equal(c.vmax, 4); // the largest plotted value (200° lies outside the panel)
  assert.ok(c.ys.every((y) => y >= rect.y + rect.h * (2 / 3) - 1e-9 && y <= rect.y + rect.h + 1e-9));
  assert.ok(Math.abs(c.nextX - (50 + 300 * 45 / 180)) < 1e-9);
  assert.equal(infoCurve(Float32Array.from([0]), Float32Array.from([1]), NaN, rect, [0, 180]).nextX, null);
  assert.equal(infoCurve(null, null, 10, rect, [0, 180]), null);
});

test("every scan point is outlined in a colour that stands out from the background, in both themes", async () => {
  // session 47 (a browser probe): the cyclic map's ends sat at 1.38:1 on white and its middle at
  // 1.15:1 on #111, outlined by a light-grey 0.6 px border in the light theme
  const { drawPoints } = await import("../../fcinv_widgets/static/orientation.js");
  const { resolveTheme, contrastRatio } = await import("../../fcinv_widgets/static/common.js");
  for (const bg of ["#ffffff", "#111111"]) {
    const theme = resolveTheme(() => "", bg);
    const strokes = [];
    const ctx = new Proxy({}, {
      get: (t, k) => (k === "stroke" ? () => strokes.push([t.strokeStyle, t.lineWidth]) : k in t ? t[k] : () => {}),
      set: (t, k, v) => { t[k] = v; return true; },
    });
    drawPoints(ctx, { px: [1, 2], py: [1, 2] }, ["rgb(226,217,226)", "rgb(47,20,55)"], -1, theme);
    assert.equal(strokes.length, 2);
    for (const [c, w] of strokes) {
      assert.ok(contrastRatio(c, theme.bg) >= 4.5, `${c} on ${theme.bg}`);
      assert.ok(w >= 0.8);
    }
  }
});

test("the planner's next angle is drawn when it lies outside the measured angles", () => {
  // measured 0–30°, the planner recommends 170° (the usual case: an angle not measured yet); the
  // MSE panel's range was the measured angles only and the curve and its marker were left out
  const meas = Float32Array.from([0, 10, 20, 30]);
  const mse = Float32Array.from([1e-3, 2e-3, 5e-4, 1e-3]);
  const cand = Float32Array.from([0, 40, 80, 120, 170]);
  const info = Float32Array.from([0, 0.5, 1.2, 0.8, 2.0]);
  const old = mseGeometry(meas, mse, 480, 300);
  assert.equal(infoCurve(cand, info, 170, old.rect, old.xr).nextX, null);
  const g = mseGeometry(meas, mse, 480, 300, Float64Array.from([...cand, 170]));
  assert.ok(g.xr[0] <= 0 && g.xr[1] >= 170, String(g.xr));
  const c = infoCurve(cand, info, 170, g.rect, g.xr);
  assert.equal(c.xs.length, cand.length);
  assert.ok(c.nextX > g.px[3] && c.nextX <= g.rect.x + g.rect.w);
  assert.ok(Math.min(...c.ys) < Math.max(...c.ys)); // a curve, not a flat line
});
