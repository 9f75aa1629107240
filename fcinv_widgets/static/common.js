// Pure drawing and interaction maths shared by the fcinv widgets.
// No DOM access here: everything is testable with `node --test js/test/`.
// The Python side inlines this file in front of each widget module (see
// fcinv_widgets/widgets/_assets.py), so widget files import from "./common.js".

/** Viridis-like colour map: control points (t, r, g, b). */
export const VIRIDIS_STOPS = [
  [0.0, 68, 1, 84], [0.13, 71, 44, 122], [0.25, 59, 81, 139], [0.38, 44, 113, 142],
  [0.5, 33, 144, 141], [0.63, 39, 173, 129], [0.75, 92, 200, 99], [0.88, 170, 220, 50],
  [1.0, 253, 231, 37],
];
/** Diverging blue-white-red map for difference images. */
export const DIVERGING_STOPS = [
  [0.0, 33, 102, 172], [0.25, 103, 169, 207], [0.5, 247, 247, 247],
  [0.75, 239, 138, 98], [1.0, 178, 24, 43],
];

/** Cyclic (twilight-like) map for angles: the ends meet, so 0° and 360° share a colour. */
export const CYCLIC_STOPS = [
  [0.0, 226, 217, 226], [0.125, 160, 184, 211], [0.25, 94, 128, 193], [0.375, 88, 64, 160],
  [0.5, 47, 20, 55], [0.625, 118, 39, 75], [0.75, 184, 98, 78], [0.875, 210, 167, 146],
  [1.0, 226, 217, 226],
];
/** Categorical colours for overlays / legends (Tableau 10). */
export const CATEGORICAL = ["#d62728", "#ff7f0e", "#e377c2", "#17becf", "#8c564b", "#bcbd22", "#2ca02c", "#1f77b4"];

/** Build a 256-entry RGB lookup table (Uint8Array of length 768). */
export function makeLut(stops = VIRIDIS_STOPS, n = 256) {
  const lut = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const t = i / (n - 1);
    let k = 0;
    while (k < stops.length - 2 && t > stops[k + 1][0]) k++;
    const [t0, r0, g0, b0] = stops[k];
    const [t1, r1, g1, b1] = stops[k + 1];
    const f = t1 > t0 ? Math.min(1, Math.max(0, (t - t0) / (t1 - t0))) : 0;
    lut[3 * i] = Math.round(r0 + f * (r1 - r0));
    lut[3 * i + 1] = Math.round(g0 + f * (g1 - g0));
    lut[3 * i + 2] = Math.round(b0 + f * (b1 - b0));
  }
  return lut;
}

/**
 * Map a q-major float image (nq, nE) to RGBA pixels of an image nq wide and
 * nE tall, energy increasing upwards (row 0 = highest energy).
 * NaN pixels become transparent. Returns a Uint8ClampedArray (nq*nE*4).
 */
export function floatToRGBA(data, nq, nE, lut, vmin = 0, vmax = 1, out = null) {
  const px = out || new Uint8ClampedArray(nq * nE * 4);
  const n = lut.length / 3;
  const scale = vmax > vmin ? (n - 1) / (vmax - vmin) : 0;
  for (let iq = 0; iq < nq; iq++) {
    const base = iq * nE;
    for (let ie = 0; ie < nE; ie++) {
      const v = data[base + ie];
      const o = ((nE - 1 - ie) * nq + iq) * 4;
      if (Number.isNaN(v)) { px[o] = px[o + 1] = px[o + 2] = px[o + 3] = 0; continue; }
      let k = Math.round((v - vmin) * scale);
      k = k < 0 ? 0 : k >= n ? n - 1 : k;
      px[o] = lut[3 * k]; px[o + 1] = lut[3 * k + 1]; px[o + 2] = lut[3 * k + 2]; px[o + 3] = 255;
    }
  }
  return px;
}

/** Difference a - b (NaN-aware) and its symmetric colour range. */
export function difference(a, b) {
  const d = new Float32Array(a.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d[i] = a[i] - b[i];
    if (!Number.isNaN(d[i]) && Math.abs(d[i]) > m) m = Math.abs(d[i]);
  }
  return { data: d, vmin: -(m || 1), vmax: m || 1 };
}

/** "Nice" axis ticks covering [min, max] with about n intervals. */
export function niceTicks(min, max, n = 5) {
  if (!(max > min)) return [min];
  const raw = (max - min) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const r = raw / mag;
  const step = (r <= 1 ? 1 : r <= 2 ? 2 : r <= 2.5 ? 2.5 : r <= 5 ? 5 : 10) * mag;
  const ticks = [];
  // ends within a millionth of a step count as on the tick: a float32 image's maximum of 0.99999994
  // kept the colour bar's "1" off until the browser recomputed it as exactly 1 (session 48)
  const start = Math.ceil(min / step - 1e-6) * step;
  for (let t = start; t <= max + step * 1e-6; t += step) ticks.push(Number(t.toFixed(12)));
  return ticks;
}

/** Linear map from data interval [d0, d1] to pixel interval [p0, p1]. */
export function linmap(v, d0, d1, p0, p1) {
  return d1 === d0 ? p0 : p0 + ((v - d0) / (d1 - d0)) * (p1 - p0);
}

/**
 * Lay out q-path labels: labels is [[x, text], ...] in the plotting
 * coordinate, breaks is [x, ...]. Labels at (nearly) the same x merge as
 * "A|B". Returns [{px, text, isBreak}] sorted by px.
 */
export function layoutQLabels(labels, breaks, x0, x1, p0, p1, tol = 1e-6) {
  const out = [];
  const span = Math.abs(x1 - x0) || 1;
  for (const [x, text] of labels) {
    const prev = out[out.length - 1];
    if (prev && Math.abs(prev.x - x) <= tol * span) {
      if (prev.text !== text) prev.text = `${prev.text}|${text}`;
      continue;
    }
    out.push({ x, text });
  }
  out.sort((a, b) => a.x - b.x);
  return out.map(({ x, text }) => ({
    px: linmap(x, x0, x1, p0, p1),
    text,
    isBreak: breaks.some((b) => Math.abs(b - x) <= tol * span),
  }));
}

/**
 * Row (0 or 1) of each q label so that no two on a row overlap: labels in order of px with
 * widths `widths` (px); one that would touch the last on row 0 goes to row 1 (staggered, at its
 * true position), or stays on row 0 when row 1 is taken there too. "X" and "U|K" of the fcc path
 * ran together into "XU|K" on a narrow panel (session 47, a browser probe).
 */
export function labelRows(pxs, widths, gap = 3) {
  const end = [-Infinity, -Infinity];
  return pxs.map((px, i) => {
    const lo = px - widths[i] / 2, hi = px + widths[i] / 2;
    // a label that fits neither row is left out (-1): overprinted it made its neighbours unreadable
    // too (a 300 px view of a 12-label path); the hover still names every segment
    const row = lo >= end[0] + gap ? 0 : lo >= end[1] + gap ? 1 : -1;
    if (row >= 0) end[row] = Math.max(end[row], hi);
    return row;
  });
}

/** Draw q labels (from layoutQLabels) centred under the panel at y, staggered by labelRows. */
export function drawQLabels(ctx, labels, y, rowH = 11, keep = () => true) {
  const shown = labels.filter((l) => keep(l.px));
  const rows = labelRows(shown.map((l) => l.px), shown.map((l) => ctx.measureText(l.text).width));
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  shown.forEach((l, i) => { if (rows[i] >= 0) ctx.fillText(l.text, l.px, y + rows[i] * rowH); });
}

/** Lines of `text` (split at spaces) no wider than maxW px by ctx.measureText; a word longer
 * than maxW stands on its own line. */
export function wrapText(ctx, text, maxW) {
  const lines = [];
  let cur = "";
  for (const w of String(text).split(" ")) {
    const next = cur ? `${cur} ${w}` : w;
    if (cur && ctx.measureText(next).width > maxW) { lines.push(cur); cur = w; } else cur = next;
  }
  if (cur) lines.push(cur);
  return lines;
}

/** A compact label of a count: 3000 → "3k", 10000 → "10k", 2.5e6 → "2.5M"; below 1000 as is. */
export function compactCount(v) {
  const a = Math.abs(v);
  const [d, u] = a >= 1e6 ? [1e6, "M"] : a >= 1e3 ? [1e3, "k"] : [1, ""];
  return `${Number((v / d).toPrecision(3))}${u}`;
}

/** Index of the cell under (px, py) in a rows x cols grid drawn in rect, or -1. */
export function cellAt(px, py, rows, cols, rect) {
  const { x, y, w, h } = rect;
  if (px < x || py < y || px >= x + w || py >= y + h) return -1;
  const c = Math.floor(((px - x) / w) * cols);
  const r = Math.floor(((py - y) / h) * rows);
  return r * cols + c;
}

/** Index of the point nearest (px, py) within maxDist pixels, or -1. */
export function nearestPoint(px, py, xs, ys, maxDist = 8) {
  let best = -1;
  let bd = maxDist * maxDist;
  for (let i = 0; i < xs.length; i++) {
    const dx = xs[i] - px; const dy = ys[i] - py;
    const d = dx * dx + dy * dy;
    if (d <= bd) { bd = d; best = i; }
  }
  return best;
}

/** Even-odd point-in-polygon test; poly is [[x, y], ...]. */
export function pointInPolygon(x, y, poly) {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i]; const [xj, yj] = poly[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Indices (Uint32Array) of the points inside the lasso polygon. */
export function lassoSelect(xs, ys, poly) {
  if (poly.length < 3) return new Uint32Array(0);
  const sel = [];
  for (let i = 0; i < xs.length; i++) if (pointInPolygon(xs[i], ys[i], poly)) sel.push(i);
  return Uint32Array.from(sel);
}

/**
 * Latest-value-wins coalescing of requests to a slow consumer (the kernel).
 * push(v): sends at once when idle, otherwise replaces the pending value
 * (never a queue). done(seq): the consumer finished request seq; the pending
 * value, if any, is sent next. send(value, seq) is the transport.
 */
export function makeCoalescer(send, counter = { n: 0 }) {
  // `counter` numbers the requests; views of one model share it (sharedCounter), so an answer
  // for any view's later request frees every view waiting for an earlier one — with a counter
  // per view, one view's request 3 answered after another's 10 kept the second busy for good and
  // its focused slider off the kernel's values (session 47, two views of a slow kernel)
  let seq = 0;
  let inflight = null;
  let pending;
  let hasPending = false;
  const fire = (v) => { counter.n += 1; seq = counter.n; inflight = seq; send(v, seq); };
  return {
    push(v) {
      if (inflight === null) fire(v);
      else { pending = v; hasPending = true; }
    },
    done(s) {
      if (inflight === null || s < inflight) return;
      inflight = null;
      if (hasPending) { hasPending = false; const v = pending; pending = undefined; fire(v); }
    },
    get busy() { return inflight !== null; },
    get seq() { return seq; },
  };
}

/** The request counter shared by every view of ``model`` (kept on the model object, started above
 * the kernel's last request and answer so that a new view's numbers never run backwards). */
export function sharedCounter(model, reqKey = "request_seq", ansKey = "rendered_seq") {
  if (!model.fcinvSeq) model.fcinvSeq = { n: Math.max(Number(model.get(reqKey)) || 0, Number(model.get(ansKey)) || 0) };
  return model.fcinvSeq;
}

const DTYPES = {
  float32: Float32Array, float64: Float64Array, uint8: Uint8Array, int32: Int32Array,
  uint32: Uint32Array, int16: Int16Array, uint16: Uint16Array, int8: Int8Array,
};

/** Decode {buffer, dtype, shape} sent by the Python Array trait into a typed array. */
export function decodeArray(obj) {
  if (!obj || obj.buffer == null) return null;
  const Ctor = DTYPES[obj.dtype];
  if (!Ctor) throw new Error(`unsupported dtype ${obj.dtype}`);
  const b = obj.buffer;
  const ab = b instanceof DataView ? b.buffer : b.buffer || b;
  const off = b.byteOffset || 0;
  const len = (b.byteLength ?? ab.byteLength) / Ctor.BYTES_PER_ELEMENT;
  const arr = new Ctor(ab.slice(off, off + len * Ctor.BYTES_PER_ELEMENT));
  arr.shape = obj.shape;
  if (obj.scale != null) arr.scale = obj.scale; // quantised image: value = level * scale
  return arr;
}

/** Encode a typed array for the Python Array trait. */
export function encodeArray(arr, shape) {
  const dtype = Object.keys(DTYPES).find((k) => arr instanceof DTYPES[k]);
  return { buffer: new DataView(arr.buffer, arr.byteOffset, arr.byteLength), dtype, shape: shape || [arr.length] };
}

/** Slider step for a domain [lo, hi] with nSteps positions. */
export function sliderStep(lo, hi, nSteps = 200) {
  // a hair under (hi - lo) / nSteps: the browser snaps a range input to lo + k·step ≤ hi, and with the
  // exact quotient rounding could make the nSteps-th step overshoot, so End stopped one step short
  return ((hi - lo) / nSteps) * (1 - 1e-9);
}

/** Clamp v into [lo, hi]. */
export function clamp(v, lo, hi) { return v < lo ? lo : v > hi ? hi : v; }

/** Float view of a (possibly uint8-quantised) image. */
export function toFloat(arr) {
  if (!arr || arr.scale == null) return arr;
  const out = new Float32Array(arr.length);
  for (let i = 0; i < arr.length; i++) out[i] = arr[i] * arr.scale;
  out.shape = arr.shape;
  return out;
}

/** RGB triple of value v on a LUT spanning [vmin, vmax] (clamped; NaN -> grey). */
export function lutColor(lut, v, vmin = 0, vmax = 1) {
  if (Number.isNaN(v)) return [128, 128, 128];
  const n = lut.length / 3;
  const t = vmax > vmin ? (v - vmin) / (vmax - vmin) : 0;
  const k = Math.max(0, Math.min(n - 1, Math.round(t * (n - 1))));
  return [lut[3 * k], lut[3 * k + 1], lut[3 * k + 2]];
}

/** CSS colour string of an RGB triple. */
export function cssRGB([r, g, b]) { return `rgb(${r},${g},${b})`; }

/** [min, max] of the finite values of several arrays, widened by frac on each side (never empty). */
export function extent(arrays, frac = 0.05) {
  let lo = Infinity, hi = -Infinity;
  for (const a of arrays) {
    if (!a) continue;
    for (let i = 0; i < a.length; i++) { const v = a[i]; if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } }
  }
  if (!(hi >= lo)) return [0, 1];
  if (hi === lo) { const d = Math.abs(lo) * 0.1 || 1; return [lo - d, hi + d]; }
  const d = (hi - lo) * frac;
  return [lo - d, hi + d];
}

/** Pixel positions of data points (xs, ys) in rect {x, y, w, h} for ranges xr, yr (y upwards). */
export function projectPoints(xs, ys, xr, yr, rect) {
  const n = xs.length;
  const px = new Float64Array(n), py = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    px[i] = linmap(xs[i], xr[0], xr[1], rect.x, rect.x + rect.w);
    py[i] = linmap(ys[i], yr[0], yr[1], rect.y + rect.h, rect.y);
  }
  return { px, py };
}

/** Count a repaint in the canvas' data-frame attribute (the browser tests wait on it). */
export function bumpFrame(canvas) { canvas.dataset.frame = String(Number(canvas.dataset.frame || 0) + 1); }

// ---------------------------------------------------------------- number formatting
/**
 * Short readable text of a number: `digits` significant digits, trailing zeros dropped,
 * never "-0", scientific notation below 1e-3 or from 1e5 (e.g. 1.2e-4).
 */
export function fmt(v, digits = 3) {
  if (v == null || Number.isNaN(v)) return "–";
  if (!Number.isFinite(v)) return v > 0 ? "∞" : "-∞";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a < 1e-3 || a >= 1e5) {
    const [m, e] = v.toExponential(Math.max(0, digits - 1)).split("e");
    return `${String(Number(m))}e${Number(e)}`;
  }
  const s = String(Number(v.toPrecision(digits)));
  return s === "-0" ? "0" : s;
}

/** "[lo, hi]" with enough significant digits that the two bounds differ (bug: "[-0.00, 0.05]"). */
export function fmtRange(lo, hi, digits = 3) {
  let d = digits;
  while (d < 8 && lo !== hi && fmt(lo, d) === fmt(hi, d)) d++;
  return `[${fmt(lo, d)}, ${fmt(hi, d)}]`;
}

/** Labels of evenly spaced ticks: as many decimals as the step needs, no "-0". */
export function tickLabels(ticks) {
  if (ticks.length < 2) return ticks.map((t) => fmt(t, 4));
  const step = Math.abs(ticks[1] - ticks[0]);
  const big = Math.max(...ticks.map(Math.abs));
  if (big >= 1e5 || (big > 0 && big < 1e-3)) return ticks.map((t) => fmt(t, 3));
  const dec = Math.max(0, Math.min(10, -Math.floor(Math.log10(step) + 1e-9) + (Number((step / 10 ** Math.floor(Math.log10(step) + 1e-9)).toFixed(6)) % 1 ? 1 : 0)));
  return ticks.map((t) => { const s = t.toFixed(dec); return /^-0(\.0*)?$/.test(s) ? s.slice(1) : s; });
}

/**
 * Ticks of a log10 axis spanning [lo, hi] (both in log10 units): whole decades when the range
 * holds at least three of them, else 1-2-5 per decade, else every integer mantissa, else
 * linear ticks on the values. Returns [{v: log10 position, label}].
 */
export function logTicks(lo, hi) {
  if (!(hi > lo)) return [{ v: lo, label: fmt(10 ** lo, 2) }];
  const eps = 1e-9 * (hi - lo);
  const inside = (v) => v >= lo - eps && v <= hi + eps;
  const label = (x) => fmt(x, 2);
  for (const mant of [[1], [1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]) {
    const out = [];
    for (let k = Math.floor(lo) - 1; k <= Math.ceil(hi); k++) {
      for (const m of mant) { const v = k + Math.log10(m); if (inside(v)) out.push({ v, label: label(m * 10 ** k) }); }
    }
    if (out.length >= 3) return out;
  }
  let out = [];
  for (const n of [4, 6, 8, 12]) {
    const ts = niceTicks(10 ** lo, 10 ** hi, n).filter((t) => t > 0);
    const labs = tickLabels(ts);
    out = ts.map((t, i) => ({ v: Math.log10(t), label: labs[i] })).filter((t) => inside(t.v));
    if (out.length >= 3) break;
  }
  return out;
}

// ---------------------------------------------------------------- colour limits
/**
 * Colour limits of an image from its finite values: [min(0, lo), hi] for data that start at or
 * above zero (intensities), [lo, hi] otherwise; a flat image gets a unit-wide range. A uint8
 * quantised array (with .scale) is measured in its float units.
 */
export function colorLimits(arr, { fromZero = true } = {}) {
  let lo = Infinity, hi = -Infinity;
  const s = arr && arr.scale != null ? arr.scale : 1;
  if (arr) for (let i = 0; i < arr.length; i++) { const v = arr[i] * s; if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } }
  if (!(hi >= lo)) return [0, 1];
  if (fromZero && lo >= 0) lo = 0;
  if (hi === lo) hi = lo + (Math.abs(lo) || 1);
  return [lo, hi];
}

// ---------------------------------------------------------------- colours and theme
/** [r, g, b] of a CSS colour (#rgb, #rrggbb, rgb(), rgba()); null when unreadable. */
export function parseColor(css) {
  if (!css) return null;
  const s = String(css).trim().toLowerCase();
  let m = s.match(/^#([0-9a-f]{3})$/);
  if (m) return [...m[1]].map((c) => parseInt(c + c, 16));
  m = s.match(/^#([0-9a-f]{6})([0-9a-f]{2})?$/);
  if (m) return [0, 2, 4].map((k) => parseInt(m[1].slice(k, k + 2), 16));
  m = s.match(/^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)/);
  if (m) return [1, 2, 3].map((k) => Math.round(Number(m[k])));
  if (s === "white") return [255, 255, 255];
  if (s === "black") return [0, 0, 0];
  return null;
}

/** WCAG relative luminance of an [r, g, b] colour. */
export function luminance([r, g, b]) {
  const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
}

/** WCAG contrast ratio of two colours (CSS strings or [r, g, b]): 1 to 21. */
export function contrastRatio(a, b) {
  const ca = Array.isArray(a) ? a : parseColor(a), cb = Array.isArray(b) ? b : parseColor(b);
  const la = luminance(ca), lb = luminance(cb);
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}

/** Black or white, whichever reads better on background bg. */
export function readableOn(bg) {
  return contrastRatio("#000000", bg) >= contrastRatio("#ffffff", bg) ? "#000000" : "#ffffff";
}

/** CSS variables read for each theme colour, JupyterLab (also Notebook 7) first, then VS Code. */
export const THEME_VARS = {
  bg: ["--jp-layout-color0", "--vscode-editor-background"],
  fg: ["--jp-ui-font-color1", "--jp-content-font-color1", "--vscode-editor-foreground"],
  muted: ["--jp-ui-font-color2", "--vscode-descriptionForeground"],
  border: ["--jp-border-color1", "--vscode-editorWidget-border"],
  panel: ["--jp-layout-color1", "--vscode-editorWidget-background"],
  accent: ["--jp-brand-color1", "--vscode-focusBorder"],
  font: ["--jp-ui-font-family", "--vscode-font-family"],
};
const LIGHT = { bg: "#ffffff", fg: "#1a1a1a", muted: "#555555", border: "#444444", panel: "#f2f2f2", accent: "#1976d2", font: "sans-serif" };
const DARK = { bg: "#111111", fg: "#e6e6e6", muted: "#aaaaaa", border: "#bbbbbb", panel: "#222222", accent: "#64b5f6", font: "sans-serif" };

/**
 * Theme colours from CSS variables: getVar(name) returns the variable's value ("" when unset).
 * When no background variable is set, `fallbackBg` (e.g. the computed background of the output
 * area) decides light or dark. Every colour read must parse, else the default of that theme
 * is used. Adds: dark (bool), selection (a colour readable on bg), error, good/bad badge colours.
 */
export function resolveTheme(getVar = () => "", fallbackBg = null) {
  const read = (names) => { for (const n of names) { const v = (getVar(n) || "").trim(); if (v) return v; } return ""; };
  const bgCss = read(THEME_VARS.bg);
  const bgRGB = parseColor(bgCss) || parseColor(fallbackBg);
  const dark = bgRGB ? luminance(bgRGB) < 0.25 : false;
  const base = dark ? DARK : LIGHT;
  const t = { dark };
  for (const k of Object.keys(THEME_VARS)) {
    const v = read(THEME_VARS[k]);
    t[k] = k === "font" ? (v || base.font) : (parseColor(v) ? v : base[k]);
  }
  if (!parseColor(bgCss) && bgRGB) t.bg = `rgb(${bgRGB.join(",")})`;
  // foreground must read on the background (a theme may set only some variables)
  if (contrastRatio(t.fg, t.bg) < 4.5) t.fg = readableOn(t.bg);
  if (contrastRatio(t.muted, t.bg) < 3) t.muted = t.fg;
  t.selection = dark ? "#ff5252" : "#d50000";
  t.error = dark ? "#ff8a80" : "#b00020";
  t.good = dark ? "#1b5e20" : "#c8e6c9";
  t.bad = dark ? "#8e0000" : "#ffcdd2";
  t.goodText = readableOn(t.good);
  t.badText = readableOn(t.bad);
  t.nan = dark ? "#3a3a3a" : "#dddddd";
  return t;
}

/** The theme of the page around element el (browser only). */
export function themeOf(el) {
  const cs = getComputedStyle(el);
  let bg = null;
  for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
    const c = getComputedStyle(e).backgroundColor;
    const p = parseColor(c);
    if (p && !/rgba\([^)]*,\s*0\)$/.test(c)) { bg = c; break; }
  }
  if (!bg && typeof matchMedia === "function" && matchMedia("(prefers-color-scheme: dark)").matches) bg = "#111111";
  return resolveTheme((n) => cs.getPropertyValue(n), bg);
}

/**
 * Call onChange when the notebook theme may have changed (JupyterLab switches
 * data-jp-theme-* attributes on <body>; VS Code switches body classes). Returns a disposer.
 */
export function watchTheme(onChange) {
  if (typeof MutationObserver === "undefined" || typeof document === "undefined") return () => {};
  // the new theme's stylesheet may apply after the attribute flips: look again a few times
  let timers = [];
  const later = () => { timers.forEach(clearTimeout); timers = [0, 150, 500, 1200, 3000].map((t) => setTimeout(onChange, t)); };
  const mo = new MutationObserver(later);
  mo.observe(document.body, { attributes: true, attributeFilter: ["class", "data-jp-theme-light", "data-jp-theme-name", "style"] });
  const mq = typeof matchMedia === "function" ? matchMedia("(prefers-color-scheme: dark)") : null;
  if (mq && mq.addEventListener) mq.addEventListener("change", later);
  return () => { mo.disconnect(); timers.forEach(clearTimeout); if (mq && mq.removeEventListener) mq.removeEventListener("change", later); };
}

/**
 * Call f once el is in the document (anywidget renders into a detached element, where the
 * notebook's CSS variables cannot be read yet). Polls once per frame, for at most ~10 s.
 */
export function whenConnected(el, f) {
  let n = 0;
  const tick = () => {
    if (el.isConnected) { f(); return; }
    if (++n < 600 && typeof requestAnimationFrame === "function") requestAnimationFrame(tick);
  };
  if (typeof requestAnimationFrame === "function") requestAnimationFrame(tick);
}

/**
 * Colour of lines and text drawn over an image with the colour map `lut`: the one of
 * near-white and near-black with the larger worst-case contrast over the map's colours
 * (white over viridis, dark grey over the diverging map whose centre is white).
 */
export function overlayColor(lut) {
  let wMin = Infinity, kMin = Infinity;
  for (let i = 0; i < lut.length; i += 3 * 8) {
    const c = [lut[i], lut[i + 1], lut[i + 2]];
    wMin = Math.min(wMin, contrastRatio([255, 255, 255], c));
    kMin = Math.min(kMin, contrastRatio([30, 30, 30], c));
  }
  return wMin >= kMin ? "#ffffff" : "#1e1e1e";
}

// ---------------------------------------------------------------- canvas sizing and layout
/** Device-pixel size of a canvas shown at cssW x cssH CSS pixels on a screen with ratio dpr. */
export function canvasPixels(cssW, cssH, dpr = 1) {
  const r = dpr > 0 && Number.isFinite(dpr) ? dpr : 1;
  return { w: Math.max(1, Math.round(cssW * r)), h: Math.max(1, Math.round(cssH * r)), ratio: r };
}

/**
 * Size a canvas to cssW x cssH CSS pixels with a backing store of devicePixelRatio times that
 * (crisp text on high-DPI screens); returns its 2-D context scaled so drawing code uses CSS
 * pixels. canvas.fcinvCss = {w, h, ratio}.
 */
export function sizeCanvas(canvas, cssW, cssH, dpr = (typeof devicePixelRatio === "number" ? devicePixelRatio : 1)) {
  const p = canvasPixels(cssW, cssH, dpr);
  if (canvas.width !== p.w) canvas.width = p.w;
  if (canvas.height !== p.h) canvas.height = p.h;
  canvas.style.width = `${Math.round(cssW)}px`;
  canvas.style.height = `${Math.round(cssH)}px`;
  canvas.fcinvCss = { w: cssW, h: cssH, ratio: p.ratio };
  const ctx = canvas.getContext("2d");
  ctx.setTransform(p.ratio, 0, 0, p.ratio, 0, 0);
  return ctx;
}

/** CSS size of a canvas sized with sizeCanvas (else its attribute size). */
export function cssSize(canvas) {
  return canvas.fcinvCss ? [canvas.fcinvCss.w, canvas.fcinvCss.h] : [canvas.width, canvas.height];
}

/**
 * Width of each of n panels in a row of width avail (gap between panels): as wide as fits,
 * at most maxW; below minW per panel the row wraps (fewer panels per row), and a single panel
 * narrower than minW shrinks to avail. Returns {w, perRow}.
 */
export function panelWidth(avail, n, { minW = 240, maxW = 480, gap = 8 } = {}) {
  const a = Math.max(1, avail);
  let perRow = Math.max(1, Math.min(n, Math.floor((a + gap) / (minW + gap))));
  const w = Math.min(maxW, (a - gap * (perRow - 1)) / perRow);
  return { w: Math.max(1, Math.floor(w)), perRow };
}

/** Call onWidth(width) when element el changes width (debounced to one per frame). Returns a disposer. */
export function watchWidth(el, onWidth) {
  if (typeof ResizeObserver === "undefined") return () => {};
  let last = -1, raf = 0;
  const ro = new ResizeObserver((entries) => {
    const w = Math.floor(entries[0].contentRect.width);
    if (w === last || w <= 0) return;
    last = w;
    cancelAnimationFrame(raf);
    raf = requestAnimationFrame(() => onWidth(w));
  });
  ro.observe(el);
  return () => { ro.disconnect(); cancelAnimationFrame(raf); };
}

/** Position of a pointer event in CSS pixels of the canvas (works under CSS scaling). */
export function eventPos(canvas, e) {
  const r = canvas.getBoundingClientRect();
  const [w, h] = cssSize(canvas);
  return [(e.clientX - r.left) * (w / (r.width || 1)), (e.clientY - r.top) * (h / (r.height || 1))];
}

// ---------------------------------------------------------------- colour bars
const BAR_CACHE = new WeakMap();

/**
 * Vertical colour bar in rect {x, y, w, h} (CSS px) for lut on [vmin, vmax], ticks on the
 * right, `label` (with units) rotated beside them. `mark`: an optional value to mark
 * (e.g. 0 on a map with negative values).
 */
export function drawColorbar(ctx, rect, lut, vmin, vmax, label, theme, { mark = null, nTicks = 5 } = {}) {
  const { x, y, w, h } = rect;
  const n = lut.length / 3;
  if (ctx.canvas && ctx.canvas.dataset) ctx.canvas.dataset.colorbar = label || "";
  if (typeof OffscreenCanvas === "function") {
    // one pixel column per LUT entry, cached per LUT, stretched to the bar
    let col = BAR_CACHE.get(lut);
    if (!col) {
      col = new OffscreenCanvas(1, n);
      const c2 = col.getContext("2d");
      const id = c2.createImageData(1, n);
      for (let k = 0; k < n; k++) {
        const o = 4 * (n - 1 - k);
        id.data[o] = lut[3 * k]; id.data[o + 1] = lut[3 * k + 1]; id.data[o + 2] = lut[3 * k + 2]; id.data[o + 3] = 255;
      }
      c2.putImageData(id, 0, 0);
      BAR_CACHE.set(lut, col);
    }
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(col, x, y, w, h);
  } else {
    for (let i = 0; i < h; i++) {
      const k = Math.round(((h - 1 - i) / Math.max(1, h - 1)) * (n - 1));
      ctx.fillStyle = `rgb(${lut[3 * k]},${lut[3 * k + 1]},${lut[3 * k + 2]})`;
      ctx.fillRect(x, y + i, w, 1.5);
    }
  }
  ctx.strokeStyle = theme.border; ctx.lineWidth = 1; ctx.strokeRect(x, y, w, h);
  ctx.fillStyle = theme.fg; ctx.font = `10px ${theme.font}`; ctx.textAlign = "left"; ctx.textBaseline = "middle";
  const ts = niceTicks(vmin, vmax, nTicks);
  const labs = tickLabels(ts);
  ts.forEach((t, i) => {
    const py = linmap(t, vmin, vmax, y + h, y);
    ctx.beginPath(); ctx.moveTo(x + w, py); ctx.lineTo(x + w + 3, py); ctx.stroke();
    ctx.fillText(labs[i], x + w + 5, py);
  });
  if (mark != null && mark > vmin && mark < vmax) {
    const py = linmap(mark, vmin, vmax, y + h, y);
    ctx.save(); ctx.strokeStyle = theme.fg; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(x - 3, py); ctx.lineTo(x + w + 3, py); ctx.stroke(); ctx.restore();
  }
  if (label) {
    const lw = Math.max(...labs.map((s) => ctx.measureText ? ctx.measureText(s).width : 6 * s.length), 10);
    ctx.save(); ctx.translate(x + w + 10 + lw, y + h / 2); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center"; ctx.textBaseline = "top"; ctx.fillText(label, 0, 0); ctx.restore();
  }
}

// ---------------------------------------------------------------- interaction maths
/** New selected cell of a rows x cols grid after an arrow key (row-major index; -1 -> 0). */
export function gridStep(index, rows, cols, key) {
  if (index < 0) return 0;
  let r = Math.floor(index / cols), c = index % cols;
  if (key === "ArrowLeft") c = Math.max(0, c - 1);
  else if (key === "ArrowRight") c = Math.min(cols - 1, c + 1);
  else if (key === "ArrowUp") r = Math.max(0, r - 1);
  else if (key === "ArrowDown") r = Math.min(rows - 1, r + 1);
  else if (key === "Home") { r = 0; c = 0; }
  else if (key === "End") { r = rows - 1; c = cols - 1; }
  return r * cols + c;
}

/**
 * Point reached from point cur by an arrow key on screen positions (px, py): the nearest
 * point in a 90° cone around the key's direction (distance counts double across the
 * direction). Unchanged when nothing lies that way; -1 -> the first point.
 */
export function stepPoint(px, py, cur, key) {
  const n = px.length;
  if (!n) return -1;
  if (cur < 0 || cur >= n) return 0;
  const dir = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[key];
  if (!dir) return cur;
  let best = cur, bd = Infinity;
  for (let i = 0; i < n; i++) {
    if (i === cur) continue;
    const dx = px[i] - px[cur], dy = py[i] - py[cur];
    const along = dx * dir[0] + dy * dir[1];
    const across = Math.abs(dx * dir[1] - dy * dir[0]);
    if (along <= 0 || across > along) continue;
    const d = along + 2 * across;
    if (d < bd) { bd = d; best = i; }
  }
  return best;
}

/** Index after cur in the order of the values vals (ArrowRight/Up: next larger, Left/Down: next smaller). */
export function stepSorted(vals, cur, key) {
  const n = vals.length;
  if (!n) return -1;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => vals[a] - vals[b] || a - b);
  if (cur < 0 || cur >= n) return order[0];
  const k = order.indexOf(cur);
  if (key === "ArrowRight" || key === "ArrowUp") return order[Math.min(n - 1, k + 1)];
  if (key === "ArrowLeft" || key === "ArrowDown") return order[Math.max(0, k - 1)];
  if (key === "Home") return order[0];
  if (key === "End") return order[n - 1];
  return cur;
}

/**
 * A lasso that keeps tracking while the pointer is outside the canvas (pointer capture):
 * down(x, y) starts, move adds points (also outside the plot), leave() is ignored,
 * up() returns the polygon (null when fewer than 3 points), cancel() drops it.
 */
export function makeLasso() {
  let poly = null;
  return {
    down(x, y) { poly = [[x, y]]; },
    move(x, y) { if (poly) poly.push([x, y]); },
    leave() { /* pointer capture keeps the stroke: a lasso may go round the colour bar and back */ },
    up() { const p = poly; poly = null; return p && p.length >= 3 ? p : null; },
    cancel() { poly = null; },
    get active() { return poly !== null; },
    get points() { return poly; },
  };
}

/**
 * Zoom the interval win = [a, b] by factor (< 1 zooms in) about the data value c, kept
 * inside full = [lo, hi] and at least minSpan wide.
 */
export function zoomWindow(win, c, factor, full, minSpan = 0) {
  const [lo, hi] = full;
  let span = Math.max(minSpan, Math.min(hi - lo, (win[1] - win[0]) * factor));
  const f = (c - win[0]) / (win[1] - win[0] || 1);
  let a = c - f * span;
  a = Math.max(lo, Math.min(hi - span, a));
  return [a, a + span];
}

/** Shift win by delta (data units), kept inside full. */
export function panWindow(win, delta, full) {
  const span = win[1] - win[0];
  const a = Math.max(full[0], Math.min(full[1] - span, win[0] + delta));
  return [a, a + span];
}

// ---------------------------------------------------------------- hover tooltip and PNG export (browser only)
/**
 * A tooltip over canvas inside host (position: relative): textAt(x, y) in CSS px of the canvas
 * returns the text (lines joined by "\n") or "" to hide. Returns a disposer.
 */
export function attachTooltip(host, canvas, textAt) {
  const tip = document.createElement("div");
  tip.className = "fcinv-tooltip";
  tip.setAttribute("role", "status");
  tip.style.cssText = "position:absolute;pointer-events:none;display:none;white-space:pre;z-index:10;" +
    "padding:3px 6px;border-radius:3px;font-size:11px;line-height:1.35;box-shadow:0 1px 4px rgba(0,0,0,.35)";
  host.appendChild(tip);
  const move = (e) => {
    const [x, y] = eventPos(canvas, e);
    const text = textAt(x, y);
    if (!text) { tip.style.display = "none"; return; }
    const t = host.fcinvTheme || resolveTheme();
    tip.style.background = t.panel; tip.style.color = t.fg; tip.style.border = `1px solid ${t.border}`;
    tip.textContent = text;
    tip.style.display = "block";
    const hr = host.getBoundingClientRect();
    let left = e.clientX - hr.left + 14;
    const top = e.clientY - hr.top + 14;
    if (left + tip.offsetWidth > hr.width) left = Math.max(0, e.clientX - hr.left - tip.offsetWidth - 10);
    tip.style.left = `${left}px`; tip.style.top = `${top}px`;
  };
  const hide = () => { tip.style.display = "none"; };
  canvas.addEventListener("pointermove", move);
  canvas.addEventListener("pointerleave", hide);
  return () => { canvas.removeEventListener("pointermove", move); canvas.removeEventListener("pointerleave", hide); tip.remove(); };
}

/**
 * One PNG of every visible canvas inside root, placed as on screen, on the theme background,
 * at device resolution. Returns a data: URL.
 */
export function composeCanvases(root, bg = "#ffffff") {
  const rr = root.getBoundingClientRect();
  const cs = [...root.querySelectorAll("canvas")].filter((c) => c.offsetParent !== null && c.width > 0);
  if (!cs.length) return null;
  const ratio = Math.max(...cs.map((c) => (c.fcinvCss ? c.fcinvCss.ratio : 1)));
  let W = 0, H = 0;
  const boxes = cs.map((c) => { const r = c.getBoundingClientRect(); const b = { c, x: r.left - rr.left, y: r.top - rr.top, w: r.width, h: r.height }; W = Math.max(W, b.x + b.w); H = Math.max(H, b.y + b.h); return b; });
  const out = document.createElement("canvas");
  out.width = Math.ceil(W * ratio); out.height = Math.ceil(H * ratio);
  const ctx = out.getContext("2d");
  ctx.fillStyle = bg; ctx.fillRect(0, 0, out.width, out.height);
  for (const b of boxes) ctx.drawImage(b.c, b.x * ratio, b.y * ratio, b.w * ratio, b.h * ratio);
  return out.toDataURL("image/png");
}

/** A "PNG" button saving composeCanvases(root) as `filename`. The button keeps the last URL in dataset.url. */
export function pngButton(parent, root, filename, getBg = () => "#ffffff") {
  const b = document.createElement("button");
  b.textContent = "PNG"; b.title = "save the figure as PNG"; b.className = "fcinv-png";
  b.addEventListener("click", () => {
    const url = composeCanvases(root, getBg());
    if (!url) return;
    b.dataset.bytes = String(Math.round((url.length - 22) * 0.75));
    const a = document.createElement("a");
    a.href = url; a.download = filename; document.body.appendChild(a); a.click(); a.remove();
  });
  parent.appendChild(b);
  return b;
}

/**
 * Keep the notebook's own shortcuts away from keys pressed inside el (bug 2).
 * JupyterLab listens for shortcuts on the document in the bubble phase, so stopping the event
 * at the widget is enough there; Notebook 7 listens in the capture phase and takes the arrow
 * keys before a focused slider sees them. One capture listener on window (which runs before
 * the document's) stops keys whose target is a form control inside a widget, or a canvas
 * with a key handler (element.fcinvKeys, called here); the browser's default action (moving
 * the slider, typing) still happens. Tab and Escape keep their notebook meaning. Elements
 * are also marked data-lm-suppress-shortcuts (Lumino's own opt-out). Returns a disposer.
 */
export function suppressShortcuts(el) {
  el.setAttribute("data-lm-suppress-shortcuts", "true");
  el.classList.add("fcinv-keyscope");
  installKeyGuard();
  const stop = (e) => { if (ownsKey(e)) e.stopPropagation(); };
  el.addEventListener("keydown", stop);
  return () => el.removeEventListener("keydown", stop);
}

/** Whether keydown e belongs to a widget control (see suppressShortcuts). */
export function ownsKey(e) {
  const t = e.target;
  if (!t || !t.closest || !t.closest(".fcinv-keyscope") || e.key === "Tab" || e.key === "Escape") return false;
  return t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA" || typeof t.fcinvKeys === "function";
}

function installKeyGuard() {
  if (typeof window === "undefined" || window.__fcinvKeyGuard) return;
  window.__fcinvKeyGuard = true;
  window.addEventListener("keydown", (e) => {
    if (!ownsKey(e)) return;
    e.stopPropagation();
    if (typeof e.target.fcinvKeys === "function") e.target.fcinvKeys(e);
  }, true);
}

/** Create a DOM element with properties, appended to ``parent`` when given. */
export function el(tag, props = {}, parent = null) {
  const e = Object.assign(document.createElement(tag), props);
  if (parent) parent.appendChild(e);
  return e;
}

/**
 * Prepare a widget's root element: its class, a positioned box no wider than the output area,
 * and the keyboard guard that keeps slider/arrow keys from the notebook (returns its remover).
 */
export function initRoot(root, className) {
  root.classList.add(className);
  root.style.position = "relative";
  root.style.maxWidth = "100%";
  return suppressShortcuts(root);
}
