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
  const start = Math.ceil(min / step - 1e-9) * step;
  for (let t = start; t <= max + step * 1e-9; t += step) ticks.push(Number(t.toFixed(12)));
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
export function makeCoalescer(send) {
  let seq = 0;
  let inflight = null;
  let pending;
  let hasPending = false;
  const fire = (v) => { seq += 1; inflight = seq; send(v, seq); };
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
  return (hi - lo) / nSteps;
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
