// OrientationScatter view: predicted FC vs sample angle for every single scan, an MSE-vs-angle
// panel, and for the clicked scan its input, reconstruction and predicted dispersion.
// State comes from the Python OrientationView; arrays arrive as {buffer, dtype, shape}.
import {
  makeLut, floatToRGBA, niceTicks, linmap, layoutQLabels, nearestPoint, decodeArray,
  lutColor, cssRGB, extent, projectPoints, CYCLIC_STOPS,
  bumpFrame,
} from "./common.js";

const LUT = makeLut();
const CLUT = makeLut(CYCLIC_STOPS);
export const PAD = { l: 58, r: 10, t: 22, b: 34 };
const IPAD = { l: 40, r: 6, t: 18, b: 24 };

/** Plot rectangle of a W x H canvas with padding pad. */
export function plotRect(W, H, pad = PAD) {
  return { x: pad.l, y: pad.t, w: W - pad.l - pad.r, h: H - pad.t - pad.b };
}

/**
 * Geometry of the FC-vs-angle scatter: data ranges (including error bars and the
 * horizontal lines) and pixel positions of the points. vals/errs: the chosen FC's
 * per-scan mean and std; hlines: values drawn as horizontal lines (NaN/null skipped).
 */
export function scatterGeometry(angles, vals, errs, hlines, W, H) {
  const rect = plotRect(W, H);
  const lo = new Float64Array(vals.length), hi = new Float64Array(vals.length);
  for (let i = 0; i < vals.length; i++) { const e = errs ? errs[i] : 0; lo[i] = vals[i] - e; hi[i] = vals[i] + e; }
  const xr = extent([angles], 0.04);
  const yr = extent([lo, hi, Float64Array.from(hlines.filter((v) => v != null && Number.isFinite(v)))], 0.08);
  const { px, py } = projectPoints(angles, vals, xr, yr, rect);
  return { rect, xr, yr, px, py };
}

/** Geometry of the MSE panel: log10 y axis (non-positive MSE clipped to the smallest positive). */
export function mseGeometry(angles, mse, W, H) {
  const rect = plotRect(W, H, { l: 44, r: 8, t: 22, b: 34 });
  let tiny = Infinity;
  for (const v of mse) if (v > 0 && v < tiny) tiny = v;
  if (!Number.isFinite(tiny)) tiny = 1e-12;
  const ly = Float64Array.from(mse, (v) => Math.log10(v > 0 ? v : tiny));
  const xr = extent([angles], 0.04);
  const yr = extent([ly], 0.08);
  const { px, py } = projectPoints(angles, ly, xr, yr, rect);
  return { rect, xr, yr, px, py };
}

/** Index of the scan under a click at (x, y) in a panel's geometry, or -1. */
export function pickScan(geom, x, y, maxDist = 9) {
  return nearestPoint(x, y, geom.px, geom.py, maxDist);
}

/** Colour of each point: the cyclic map over the angle range (so 0° and 180°/360° ends meet). */
export function angleColors(angles, lut = CLUT) {
  let lo = Infinity, hi = -Infinity;
  for (const a of angles) { if (a < lo) lo = a; if (a > hi) hi = a; }
  // a full turn (or half turn for centrosymmetric data) closes the cycle; else span the data
  const span = hi - lo;
  const period = span > 180 ? 360 : span > 0 ? 180 : 1;
  return Array.from(angles, (a) => cssRGB(lutColor(lut, (((a - lo) % period) + period) % period, 0, period)));
}

function el(tag, props = {}, parent = null) {
  const e = Object.assign(document.createElement(tag), props);
  if (parent) parent.appendChild(e);
  return e;
}

function axes(ctx, rect, xr, yr, xlabel, ylabel, ylog = false) {
  const { x, y, w, h } = rect;
  ctx.strokeStyle = "#333"; ctx.lineWidth = 1; ctx.strokeRect(x, y, w, h);
  ctx.fillStyle = "#222"; ctx.font = "11px sans-serif";
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (const t of niceTicks(xr[0], xr[1], 6)) {
    const px = linmap(t, xr[0], xr[1], x, x + w);
    ctx.fillText(String(t), px, y + h + 4);
    ctx.beginPath(); ctx.moveTo(px, y + h); ctx.lineTo(px, y + h + 3); ctx.stroke();
  }
  ctx.fillText(xlabel, x + w / 2, y + h + 18);
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  const yt = ylog ? niceTicks(Math.ceil(yr[0]), Math.floor(yr[1]), 4).filter(Number.isInteger) : niceTicks(yr[0], yr[1], 5);
  for (const t of yt) {
    const py = linmap(t, yr[0], yr[1], y + h, y);
    ctx.fillText(ylog ? `1e${t}` : String(Number(t.toPrecision(4))), x - 4, py);
    ctx.beginPath(); ctx.moveTo(x - 3, py); ctx.lineTo(x, py); ctx.stroke();
  }
  ctx.save(); ctx.translate(11, y + h / 2); ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center"; ctx.fillText(ylabel, 0, 0); ctx.restore();
}

function drawPoints(ctx, g, colors, sel) {
  for (let i = 0; i < g.px.length; i++) {
    ctx.fillStyle = colors[i];
    ctx.beginPath(); ctx.arc(g.px[i], g.py[i], 4, 0, 2 * Math.PI); ctx.fill();
    ctx.strokeStyle = "#333"; ctx.lineWidth = 0.6; ctx.stroke();
  }
  if (sel >= 0 && sel < g.px.length) {
    ctx.strokeStyle = "#e00"; ctx.lineWidth = 2.5;
    ctx.beginPath(); ctx.arc(g.px[sel], g.py[sel], 8, 0, 2 * Math.PI); ctx.stroke();
  }
}

function hline(ctx, rect, yr, v, color, dash) {
  if (v == null || !Number.isFinite(v)) return;
  const py = linmap(v, yr[0], yr[1], rect.y + rect.h, rect.y);
  ctx.save(); ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.setLineDash(dash);
  ctx.beginPath(); ctx.moveTo(rect.x, py); ctx.lineTo(rect.x + rect.w, py); ctx.stroke(); ctx.restore();
}

function drawSpectrum(canvas, img, st, title, withFreqs) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  const x0 = IPAD.l, x1 = W - IPAD.r, y0 = IPAD.t, y1 = H - IPAD.b;
  ctx.fillStyle = "#222"; ctx.font = "11px sans-serif"; ctx.textAlign = "left"; ctx.textBaseline = "top";
  ctx.fillText(title, x0, 2);
  if (!img) { ctx.fillText("click a scan", x0 + 8, (y0 + y1) / 2); return; }
  const [nq, nE] = img.shape;
  ctx.fillStyle = "#ddd"; ctx.fillRect(x0, y0, x1 - x0, y1 - y0); // uncovered (NaN) shows grey
  const off = new OffscreenCanvas(nq, nE);
  const id = off.getContext("2d").createImageData(nq, nE);
  floatToRGBA(img, nq, nE, LUT, 0, 1, id.data);
  off.getContext("2d").putImageData(id, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, x0, y0, x1 - x0, y1 - y0);
  const [qmin, qmax] = st.qrange, e = st.erange;
  if (withFreqs && st.freqs) {
    const [nqf, nm] = st.freqs.shape;
    ctx.strokeStyle = "rgba(255,80,80,0.95)"; ctx.lineWidth = 1.3;
    const brk = new Set(st.breaks.map((b) => Math.round(b)));
    for (let m = 0; m < nm; m++) {
      ctx.beginPath();
      for (let i = 0; i < nqf; i++) {
        const px = linmap(i + 0.5, qmin, qmax, x0, x1);
        const py = linmap(st.freqs[i * nm + m], e[0], e[1], y1, y0);
        if (i === 0 || brk.has(i)) ctx.moveTo(px, py); else ctx.lineTo(px, py);
      }
      ctx.stroke();
    }
  }
  ctx.strokeStyle = "#333"; ctx.lineWidth = 1; ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  ctx.fillStyle = "#222"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (const t of niceTicks(e[0], e[1], 4)) ctx.fillText(String(t), x0 - 3, linmap(t, e[0], e[1], y1, y0));
  ctx.save(); ctx.translate(9, (y0 + y1) / 2); ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center"; ctx.fillText("E (meV)", 0, 0); ctx.restore();
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (const l of layoutQLabels(st.labels, st.breaks, qmin, qmax, x0, x1)) {
    ctx.fillStyle = "#222"; ctx.fillText(l.text, l.px, y1 + 4);
    ctx.strokeStyle = l.isBreak ? "#fff" : "rgba(255,255,255,0.35)"; ctx.lineWidth = l.isBreak ? 2 : 1;
    ctx.beginPath(); ctx.moveTo(l.px, y0); ctx.lineTo(l.px, y1); ctx.stroke();
  }
}

function render({ model, el: root }) {
  root.classList.add("fcinv-orientation");
  const stopKeys = (e) => { if (e.target.tagName === "SELECT") e.stopPropagation(); };
  root.addEventListener("keydown", stopKeys);
  const wrap = el("div", { style: "display:flex;flex-direction:column;align-items:flex-start;gap:6px;font:12px sans-serif" }, root);
  const ctl = el("div", { style: "display:flex;gap:10px;align-items:center" }, wrap);
  el("span", { textContent: "FC:" }, ctl);
  const fcSel = el("select", { className: "fcinv-fc" }, ctl);
  const info = el("span", { className: "fcinv-scan-info" }, ctl);
  const errBox = el("span", { className: "fcinv-error", style: "color:#b00" }, ctl);
  const row1 = el("div", { style: "display:flex;gap:8px" }, wrap);
  const scatter = el("canvas", { width: 480, height: 300, className: "fcinv-scatter" }, row1);
  const msePanel = el("canvas", { width: 260, height: 300, className: "fcinv-mse" }, row1);
  const row2 = el("div", { style: "display:flex;gap:8px" }, wrap);
  const inputC = el("canvas", { width: 370, height: 260, className: "fcinv-input" }, row2);
  const reconC = el("canvas", { width: 370, height: 260, className: "fcinv-recon" }, row2);
  for (const c of [scatter, msePanel]) c.style.cursor = "pointer";

  const st = {};
  let geom = null, mgeom = null;
  function readData() {
    st.angles = decodeArray(model.get("angles"));
    st.mean = decodeArray(model.get("mean"));
    st.std = decodeArray(model.get("std"));
    st.full = decodeArray(model.get("full_mean"));
    st.ref = decodeArray(model.get("reference"));
    st.mse = decodeArray(model.get("mse"));
    st.cov = decodeArray(model.get("coverage"));
    st.colors = st.angles ? angleColors(st.angles) : [];
  }
  function readScan() {
    st.input = decodeArray(model.get("input_image"));
    st.recon = decodeArray(model.get("recon_image"));
    st.freqs = decodeArray(model.get("freqs"));
    st.labels = model.get("q_labels"); st.breaks = model.get("q_breaks");
    st.qrange = model.get("q_range"); st.erange = model.get("energy_range");
  }
  function column(arr, k) {
    const nfc = arr.shape[1];
    return Float64Array.from({ length: arr.shape[0] }, (_, i) => arr[i * nfc + k]);
  }
  function syncControls() {
    fcSel.textContent = "";
    model.get("names").forEach((t, i) => el("option", { value: String(i), textContent: t }, fcSel));
    fcSel.value = String(model.get("fc"));
  }
  fcSel.addEventListener("change", () => { model.set("fc", Number(fcSel.value)); model.save_changes(); });

  function paintScatter() {
    const ctx = scatter.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, scatter.width, scatter.height);
    if (!st.angles || !st.mean) return;
    const k = model.get("fc");
    const vals = column(st.mean, k), errs = column(st.std, k);
    const full = st.full ? st.full[k] : null, ref = st.ref ? st.ref[k] : null;
    geom = scatterGeometry(st.angles, vals, errs, [full, ref], scatter.width, scatter.height);
    scatter.fcinvGeom = geom; // point positions, for tests and tools
    const { rect, yr } = geom;
    axes(ctx, rect, geom.xr, yr, "sample angle ω (°)", `${model.get("names")[k] || ""} (${model.get("units")})`);
    ctx.strokeStyle = "#aaa"; ctx.lineWidth = 1;
    for (let i = 0; i < vals.length; i++) {
      if (!(errs[i] > 0)) continue;
      const a = linmap(vals[i] - errs[i], yr[0], yr[1], rect.y + rect.h, rect.y);
      const b = linmap(vals[i] + errs[i], yr[0], yr[1], rect.y + rect.h, rect.y);
      ctx.beginPath(); ctx.moveTo(geom.px[i], a); ctx.lineTo(geom.px[i], b); ctx.stroke();
    }
    hline(ctx, rect, yr, full, "#000", []);
    hline(ctx, rect, yr, ref, "#c22", [6, 4]);
    drawPoints(ctx, geom, st.colors, model.get("selected"));
    // legend, one row above the plot
    ctx.font = "11px sans-serif"; ctx.textBaseline = "middle"; ctx.textAlign = "left";
    const leg = [["full data", "#000", []]];
    if (ref != null) leg.push(["reference", "#c22", [6, 4]]);
    let lx = rect.x + rect.w - 90 * leg.length;
    for (const [t, c, d] of leg) {
      ctx.save(); ctx.strokeStyle = c; ctx.lineWidth = 1.5; ctx.setLineDash(d);
      ctx.beginPath(); ctx.moveTo(lx, 10); ctx.lineTo(lx + 20, 10); ctx.stroke(); ctx.restore();
      ctx.fillStyle = "#222"; ctx.fillText(t, lx + 24, 10);
      lx += 90;
    }
    bumpFrame(scatter);
  }

  function paintMse() {
    const ctx = msePanel.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, msePanel.width, msePanel.height);
    if (!st.angles || !st.mse) return;
    mgeom = mseGeometry(st.angles, st.mse, msePanel.width, msePanel.height);
    msePanel.fcinvGeom = mgeom;
    axes(ctx, mgeom.rect, mgeom.xr, mgeom.yr, "ω (°)", "MSE vs full data", true);
    ctx.fillStyle = "#222"; ctx.textAlign = "left"; ctx.textBaseline = "top";
    ctx.fillText("MSE vs full data (log)", mgeom.rect.x, 4);
    drawPoints(ctx, mgeom, st.colors, model.get("selected"));
    bumpFrame(msePanel);
  }

  function paintScan() {
    errBox.textContent = model.get("error");
    const sel = model.get("selected");
    if (sel >= 0 && st.angles) {
      const cov = st.cov ? `, coverage ${(100 * st.cov[sel]).toFixed(0)}%` : "";
      info.textContent = `scan ${sel}: ω = ${Number(st.angles[sel].toFixed(2))}°, MSE ${st.mse[sel].toPrecision(2)}${cov}`;
    } else info.textContent = "click a point to see its scan";
    drawSpectrum(inputC, st.input, st, st.freqs ? "input + predicted dispersion" : "input", true);
    drawSpectrum(reconC, st.recon, st, "reconstruction", false);
    bumpFrame(inputC); bumpFrame(reconC);
  }

  function clickOn(canvas, g) {
    return (e) => {
      if (!g()) return;
      const r = canvas.getBoundingClientRect();
      const i = pickScan(g(), (e.clientX - r.left) * (canvas.width / r.width), (e.clientY - r.top) * (canvas.height / r.height));
      if (i >= 0) { model.set("selected", i); model.save_changes(); }
    };
  }
  scatter.addEventListener("click", clickOn(scatter, () => geom));
  msePanel.addEventListener("click", clickOn(msePanel, () => mgeom));

  const onData = () => { readData(); paintScatter(); paintMse(); };
  const onFc = () => { fcSel.value = String(model.get("fc")); paintScatter(); };
  const onScan = () => { readScan(); paintScatter(); paintMse(); paintScan(); };
  const onNames = () => { syncControls(); paintScatter(); };
  const handlers = { mean: onData, angles: onData, reference: onData, fc: onFc, scan_frame: onScan, names: onNames };
  for (const [k, f] of Object.entries(handlers)) model.on(`change:${k}`, f);
  syncControls(); readData(); readScan(); paintScatter(); paintMse(); paintScan();
  return () => {
    root.removeEventListener("keydown", stopKeys);
    for (const k of Object.keys(handlers)) model.off(`change:${k}`);
  };
}

export default { render };
