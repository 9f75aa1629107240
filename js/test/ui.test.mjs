// Tests of the theme/layout/format/interaction maths behind issue 13 (node --test, no DOM).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  fmt, fmtRange, tickLabels, logTicks, colorLimits, parseColor, contrastRatio, readableOn, resolveTheme,
  overlayColor, makeLut, DIVERGING_STOPS, canvasPixels, sizeCanvas, panelWidth, gridStep, stepPoint,
  stepSorted, makeLasso, lassoSelect, zoomWindow, panWindow, drawColorbar,
} from "../../fcinv_widgets/static/common.js";
import { segmentName, hoverReadout, autoEnergy, panelRect } from "../../fcinv_widgets/static/fc_explorer.js";

test("bug 8: small slider bounds stay readable and distinct", () => {
  assert.equal(fmtRange(-0.0031, 0.05), "[-0.0031, 0.05]"); // was "[-0.00, 0.05]"
  assert.equal(fmtRange(-1e-5, 0.05), "[-1e-5, 0.05]");
  assert.equal(fmtRange(1.2341, 1.2342), "[1.2341, 1.2342]");
  assert.equal(fmt(-0.0004), "-4e-4");
  assert.equal(fmt(-1e-12, 2), "-1e-12");
  assert.equal(fmt(-0), "0");
  assert.equal(fmt(2.946), "2.95");
  assert.equal(fmt(NaN), "–");
  assert.ok(!fmtRange(-0.004, 0.05).includes("-0.00,"));
});

test("tick labels have the decimals of the step and no -0", () => {
  assert.deepEqual(tickLabels([0, 0.25, 0.5]), ["0.00", "0.25", "0.50"]);
  assert.deepEqual(tickLabels([0, 10, 20]), ["0", "10", "20"]);
  assert.deepEqual(tickLabels([-0.2, 0, 0.2]), ["-0.2", "0.0", "0.2"]);
  assert.deepEqual(tickLabels([-1e-6, 0, 1e-6]), ["-1e-6", "0", "1e-6"]);
});

test("bug 7: a log axis spanning less than a decade gets several ticks", () => {
  const t = logTicks(Math.log10(0.0052), Math.log10(0.0098)); // 0.0052 .. 0.0098
  assert.ok(t.length >= 3, JSON.stringify(t));
  for (const { v } of t) assert.ok(v >= Math.log10(0.0052) - 1e-9 && v <= Math.log10(0.0098) + 1e-9);
  assert.deepEqual(logTicks(-3.2, 0.1).map((x) => x.label), ["0.001", "0.01", "0.1", "1"]);
  const narrow = logTicks(Math.log10(0.0101), Math.log10(0.0108)); // 7 % of a decade
  assert.ok(narrow.length >= 2, JSON.stringify(narrow));
  assert.equal(new Set(narrow.map((x) => x.label)).size, narrow.length);
  assert.equal(logTicks(-2, -2).length, 1);
});

test("bug 1: colour limits follow the data, not a fixed 0-1", () => {
  assert.deepEqual(colorLimits(Float32Array.from([0.1, NaN, 10])), [0, 10]);
  const dim = colorLimits(Float32Array.from([0.02, 0.67]));
  assert.ok(Math.abs(dim[1] - 0.67) < 1e-6 && dim[0] === 0);
  assert.deepEqual(colorLimits(Float32Array.from([-2, 3]), { fromZero: true }), [-2, 3]);
  assert.deepEqual(colorLimits(Float32Array.from([NaN])), [0, 1]);
  assert.deepEqual(colorLimits(Float32Array.from([2, 2]), { fromZero: false }), [2, 4]);
  const q = Uint8Array.from([0, 254]); q.scale = 5 / 254; // quantised image in float units
  assert.ok(Math.abs(colorLimits(q)[1] - 5) < 1e-9);
});

test("bug 6: theme from CSS variables; badge and text readable in light, dark, high contrast", () => {
  const vars = (o) => (n) => o[n] || "";
  const light = resolveTheme(vars({ "--jp-layout-color0": "white", "--jp-ui-font-color1": "rgba(0,0,0,0.87)" }));
  const dark = resolveTheme(vars({ "--jp-layout-color0": "#111111", "--jp-ui-font-color1": "rgba(255,255,255,0.87)" }));
  const hc = resolveTheme(vars({ "--jp-layout-color0": "#000000", "--jp-ui-font-color1": "#ffffff", "--jp-border-color1": "#ffffff" }));
  const vscode = resolveTheme(vars({ "--vscode-editor-background": "#1e1e1e", "--vscode-editor-foreground": "#d4d4d4" }));
  const unknown = resolveTheme(() => "", "rgb(30, 30, 30)"); // no variables: the page background decides
  assert.equal(light.dark, false);
  for (const t of [dark, hc, vscode, unknown]) assert.equal(t.dark, true);
  assert.notEqual(parseColor(dark.bg).join(), "255,255,255"); // no hard-coded white canvas
  for (const t of [light, dark, hc, vscode, unknown]) {
    assert.ok(contrastRatio(t.fg, t.bg) >= 4.5, `fg on bg ${t.fg} ${t.bg}`);
    assert.ok(contrastRatio(t.goodText, t.good) >= 4.5, "stable badge");
    assert.ok(contrastRatio(t.badText, t.bad) >= 4.5, "unstable badge");
  }
  // a theme that sets only the background still gets a readable foreground
  assert.ok(contrastRatio(resolveTheme(vars({ "--jp-layout-color0": "#000" })).fg, "#000") >= 4.5);
  assert.equal(readableOn("#ffffff"), "#000000");
  assert.equal(readableOn("#111111"), "#ffffff");
});

test("bug 4: lines over the diverging map are dark, over viridis white", () => {
  const dl = makeLut(DIVERGING_STOPS);
  assert.equal(overlayColor(dl), "#1e1e1e");
  assert.equal(overlayColor(makeLut()), "#ffffff");
  const centre = [dl[3 * 128], dl[3 * 128 + 1], dl[3 * 128 + 2]];
  assert.ok(contrastRatio(overlayColor(dl), centre) > 7);
});

test("bug 4: every heatmap colour bar has ticks and a label with units", () => {
  const calls = [];
  const ctx = new Proxy({}, {
    get: (o, k) => (k in o ? o[k] : k === "measureText" ? (s) => ({ width: 6 * s.length })
      : (...a) => calls.push([k, ...a])),
    set: (o, k, v) => { o[k] = v; return true; },
  });
  const theme = resolveTheme();
  drawColorbar(ctx, { x: 0, y: 0, w: 10, h: 100 }, makeLut(DIVERGING_STOPS), -0.2, 0.2, "ΔI (scaled)", theme, { mark: 0 });
  const texts = calls.filter((c) => c[0] === "fillText").map((c) => c[1]);
  assert.ok(texts.includes("ΔI (scaled)"));
  assert.ok(texts.includes("-0.2") && texts.includes("0.2"), texts.join());
});

test("bug 9: canvases get devicePixelRatio times their CSS size, drawing in CSS px", () => {
  assert.deepEqual(canvasPixels(420, 300, 2), { w: 840, h: 600, ratio: 2 });
  assert.deepEqual(canvasPixels(420, 300, 1.5), { w: 630, h: 450, ratio: 1.5 });
  assert.deepEqual(canvasPixels(10, 10, NaN), { w: 10, h: 10, ratio: 1 });
  let tf = null;
  const fake = { width: 300, height: 150, style: {}, getContext: () => ({ setTransform: (...a) => { tf = a; } }) };
  sizeCanvas(fake, 420, 300, 2);
  assert.equal(fake.width, 840); assert.equal(fake.height, 600);
  assert.equal(fake.style.width, "420px"); assert.equal(fake.style.height, "300px");
  assert.deepEqual(tf, [2, 0, 0, 2, 0, 0]);
});

test("bug 5: panels shrink and wrap to fit the output area", () => {
  // FCExplorer with compare= at 1280 px: side column ~300 px leaves ~950 px for 3 panels
  const a = panelWidth(950, 3, { minW: 300, maxW: 470, gap: 6 });
  assert.equal(a.perRow, 3);
  assert.ok(3 * a.w + 2 * 6 <= 950);
  // at 800 px the plots column is full width below the sliders: 2 per row, never wider than it
  const b = panelWidth(780, 3, { minW: 300, maxW: 470, gap: 6 });
  assert.equal(b.perRow, 2);
  assert.ok(2 * b.w + 6 <= 780);
  // narrower than one panel's minimum: one panel, as wide as the room
  assert.deepEqual(panelWidth(200, 3, { minW: 300, maxW: 470 }), { w: 200, perRow: 1 });
  assert.equal(panelWidth(2000, 1, { maxW: 470 }).w, 470);
});

test("bug 3: a lasso that leaves the canvas and comes back still selects", () => {
  const L = makeLasso();
  const xs = [50, 150, 400], ys = [50, 60, 50];
  L.down(20, 20);
  L.move(200, 20);
  L.move(320, 40); // over the colour bar, outside the plot
  L.leave(); // pointer left the canvas element
  L.move(500, 200); // outside the canvas entirely (pointer capture keeps the events)
  L.move(200, 100); // back in
  L.move(20, 100);
  const poly = L.up();
  assert.ok(poly && poly.length === 6);
  assert.deepEqual([...lassoSelect(xs, ys, poly)], [0, 1]);
  assert.equal(L.active, false);
  L.down(0, 0); L.move(1, 1); assert.equal(L.up(), null); // a click is not a lasso
});

test("keyboard: arrows move through grid cells and scatter points", () => {
  assert.equal(gridStep(-1, 5, 5, "ArrowRight"), 0);
  assert.equal(gridStep(0, 5, 5, "ArrowRight"), 1);
  assert.equal(gridStep(4, 5, 5, "ArrowRight"), 4);
  assert.equal(gridStep(1, 5, 5, "ArrowDown"), 6);
  assert.equal(gridStep(6, 5, 5, "ArrowUp"), 1);
  assert.equal(gridStep(6, 5, 5, "End"), 24);
  const px = [0, 10, 10, -10, 0], py = [0, 0, -10, 0, 20];
  assert.equal(stepPoint(px, py, 0, "ArrowRight"), 1);
  assert.equal(stepPoint(px, py, 0, "ArrowLeft"), 3);
  assert.equal(stepPoint(px, py, 0, "ArrowDown"), 4);
  assert.equal(stepPoint(px, py, 0, "ArrowUp"), 2);
  assert.equal(stepPoint(px, py, 4, "ArrowDown"), 4); // nothing further down
  assert.equal(stepPoint(px, py, -1, "ArrowDown"), 0);
  assert.equal(stepSorted([30, 10, 20], 1, "ArrowRight"), 2);
  assert.equal(stepSorted([30, 10, 20], 2, "ArrowRight"), 0);
  assert.equal(stepSorted([30, 10, 20], 0, "ArrowRight"), 0);
  assert.equal(stepSorted([30, 10, 20], -1, "ArrowLeft"), 1);
});

test("zoom and pan stay inside the data", () => {
  const z = zoomWindow([0, 100], 50, 0.5, [0, 100]);
  assert.deepEqual(z, [25, 75]);
  assert.deepEqual(zoomWindow([0, 100], 0, 0.5, [0, 100]), [0, 50]);
  assert.deepEqual(zoomWindow([25, 75], 50, 10, [0, 100]), [0, 100]);
  assert.deepEqual(zoomWindow([0, 100], 50, 0.001, [0, 100], 4), [48, 52]);
  assert.deepEqual(panWindow([25, 75], 40, [0, 100]), [50, 100]);
  assert.deepEqual(panWindow([25, 75], -40, [0, 100]), [0, 50]);
});

test("FCExplorer hover read-out: q segment and r.l.u., E in meV, intensity", () => {
  const labels = [[0, "Γ"], [2, "X|K"], [4, "Γ"]];
  assert.equal(segmentName(labels, 1.5), "Γ–X");
  assert.equal(segmentName(labels, 2.5), "K–Γ");
  const img = Float32Array.from([0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]); // 4 q x 2 E
  const st = { shape: [4, 2], qrange: [0, 4], erange: [0, 10], view: { q: [0, 4], e: [0, 10] }, labels,
    qrlu: Float64Array.from([0, 0, 0, 0, 0.25, 0, 0, 0.5, 0, 0, 0.75, 0]) };
  const r = panelRect(200, 150);
  const txt = hoverReadout(st, img, r.x + r.w * 0.3, r.y + r.h * 0.25, r);
  assert.match(txt, /q bin 1 \(Γ–X\)/);
  assert.match(txt, /q = \(0, 0.25, 0\) r.l.u./);
  assert.match(txt, /E = 7.5 meV/);
  assert.match(txt, /I = 0.3/);
  assert.equal(hoverReadout(st, img, 1, 1, r), "");
  assert.match(hoverReadout(st, Float32Array.from([NaN, 0, 0, 0, 0, 0, 0, 0]), r.x + 1, r.y + r.h - 1, r), /not measured/);
});

test("energy window: highest branch plus a margin (Ge uses under half of 0-70 meV)", () => {
  const [lo, hi] = autoEnergy(Float32Array.from([2, 37.4, 36]), [0, 70]);
  assert.equal(lo, 0);
  assert.ok(hi > 37.4 * 1.05 && hi < 46, String(hi));
  assert.deepEqual(autoEnergy(Float32Array.from([69]), [0, 70]), [0, 70]);
  assert.deepEqual(autoEnergy(null, [0, 70]), [0, 70]);
});

test("noise grid: negative R² is visibly distinct; cell read-out has R² and SNR", async () => {
  const { r2Color, cellReadout } = await import("../../fcinv_widgets/static/noise_grid.js");
  const neg = r2Color(-0.3), zero = r2Color(0), low = r2Color(0.05);
  assert.ok(neg[0] > neg[2] + 60, `negative R² is red: ${neg}`); // viridis never has r >> b at the low end
  assert.ok(zero[2] > zero[0], `zero is viridis purple: ${zero}`);
  assert.notDeepEqual(neg, low);
  assert.deepEqual(r2Color(-5), r2Color(-1)); // clamped
  // session 50 (a widgets probe): the red ramp paled as R² fell (−1 looked milder than −0.01), and
  // NaN (a constant FC) took the colour of R² ≤ −1
  const lum = ([r, g, b]) => 0.2126 * r + 0.7152 * g + 0.0722 * b;
  const ramp = [-0.01, -0.1, -0.3, -0.6, -1].map((v) => lum(r2Color(v)));
  ramp.slice(1).forEach((l, i) => assert.ok(l < ramp[i], `red deepens as R² falls: ${ramp}`));
  const nan = r2Color(NaN);
  assert.ok(nan[0] === nan[1] && nan[1] === nan[2], `NaN is a neutral grey: ${nan}`);
  for (const v of [-1, -0.5, -0.01, 0, 0.3, 1]) assert.notDeepEqual(nan, r2Color(v));
  const t = cellReadout(7, Float32Array.from(Array(25).fill(0.5)), [0, 0.05, 0.1, 0.2, 0.4], [100, 300, 1000, 3000, 1e4],
    Float32Array.from(Array(25).fill(2.5)), "FC0", "VAE");
  assert.match(t, /B = 0.05, P = 1000 counts/);
  assert.match(t, /FC0: R² = 0.5 \(VAE\)/);
  assert.match(t, /SNR 2.5/);
});

test("bug 2: keys on a widget's controls are kept from the notebook, Tab/Escape are not", async () => {
  const { ownsKey } = await import("../../fcinv_widgets/static/common.js");
  const inWidget = (tagName, extra = {}) => ({ tagName, closest: (s) => (s === ".fcinv-keyscope" ? {} : null), ...extra });
  const outside = { tagName: "INPUT", closest: () => null };
  assert.equal(ownsKey({ key: "ArrowRight", target: inWidget("INPUT") }), true);
  assert.equal(ownsKey({ key: "End", target: inWidget("SELECT") }), true);
  assert.equal(ownsKey({ key: "ArrowDown", target: inWidget("CANVAS", { fcinvKeys: () => {} }) }), true);
  assert.equal(ownsKey({ key: "ArrowDown", target: inWidget("CANVAS") }), false); // a canvas without keys
  assert.equal(ownsKey({ key: "Tab", target: inWidget("INPUT") }), false);
  assert.equal(ownsKey({ key: "Escape", target: inWidget("INPUT") }), false);
  assert.equal(ownsKey({ key: "ArrowRight", target: outside }), false); // other cells' inputs untouched
});
