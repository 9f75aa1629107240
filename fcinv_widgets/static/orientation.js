// OrientationScatter view: predicted FC vs sample angle for every single scan, an MSE-vs-angle
// panel, and for the clicked scan its input, reconstruction and predicted dispersion.
// State comes from the Python OrientationView; arrays arrive as {buffer, dtype, shape}.
import {
  makeLut, floatToRGBA, niceTicks, linmap, layoutQLabels, drawQLabels, nearestPoint, decodeArray,
  lutColor, cssRGB, extent, projectPoints, CYCLIC_STOPS,
  bumpFrame, fmt, tickLabels, logTicks, colorLimits, overlayColor, sizeCanvas, cssSize, panelWidth,
  watchWidth, watchTheme, themeOf, eventPos, drawColorbar, stepSorted, attachTooltip, pngButton,
  suppressShortcuts, clamp, whenConnected, el, initRoot,
} from "./common.js";

const LUT = makeLut();
const CLUT = makeLut(CYCLIC_STOPS);
export const PAD = { l: 58, r: 62, t: 22, b: 34 };
export const IPAD = { l: 40, r: 62, t: 18, b: 24 };
export const MPAD = { l: 52, r: 8, t: 22, b: 34 };

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
export function mseGeometry(angles, mse, W, H, planAngles = null) {
  const rect = plotRect(W, H, MPAD);
  let tiny = Infinity;
  for (const v of mse) if (v > 0 && v < tiny) tiny = v;
  if (!Number.isFinite(tiny)) tiny = 1e-12;
  const ly = Float64Array.from(mse, (v) => Math.log10(v > 0 ? v : tiny));
  // the planner's candidates widen the angle axis: its next angle is usually one not measured yet
  const xr = extent([angles, planAngles], 0.04);
  const yr = extent([ly], 0.08);
  const { px, py } = projectPoints(angles, ly, xr, yr, rect);
  return { rect, xr, yr, px, py };
}

/**
 * The planner's curve in a panel (issue 14): expected information per candidate angle, scaled to
 * the lower third of ``rect`` on the panel's x range ``xr`` (angles outside it are left out); returns the polyline and the x of
 * the recommended angle (null when it lies outside the range or is not finite).
 */
export function infoCurve(angles, values, nextAngle, rect, xr) {
  if (!angles || !values || !angles.length) return null;
  let vmax = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (angles[i] >= xr[0] && angles[i] <= xr[1] && Number.isFinite(v) && v > vmax) vmax = v;
  }
  const top = rect.y + rect.h * (2 / 3), h = rect.h / 3;
  const xs = [], ys = [];
  for (let i = 0; i < angles.length; i++) {
    if (!(angles[i] >= xr[0] && angles[i] <= xr[1])) continue; // only the panel's angle range
    xs.push(linmap(angles[i], xr[0], xr[1], rect.x, rect.x + rect.w));
    ys.push(top + h - (vmax > 0 ? Math.max(0, values[i]) / vmax : 0) * h);
  }
  const nx = Number.isFinite(nextAngle) && nextAngle >= xr[0] && nextAngle <= xr[1]
    ? linmap(nextAngle, xr[0], xr[1], rect.x, rect.x + rect.w) : null;
  return { xs, ys, nextX: nx, vmax };
}

/** Index of the scan under a click at (x, y) in a panel's geometry, or -1. */
export function pickScan(geom, x, y, maxDist = 9) {
  return nearestPoint(x, y, geom.px, geom.py, maxDist);
}

/**
 * Colour limits of a scan's input image (bug 1: inputs are not scaled to 0-1; maxima 0.67-10.1
 * were drawn with fixed 0-1 limits): from 0 to the largest finite value.
 */
export function inputLimits(img) { return colorLimits(img); }

/** Angle period and start of the cyclic colouring (a half or a full turn, or the data span). */
export function anglePeriod(angles) {
  let lo = Infinity, hi = -Infinity;
  for (const a of angles) { if (a < lo) lo = a; if (a > hi) hi = a; }
  const span = hi - lo;
  return { lo: Number.isFinite(lo) ? lo : 0, period: span > 180 ? 360 : span > 0 ? 180 : 1 };
}

/** Hover text of scan i: angle, the FC's value ± σ (units), MSE, coverage. */
export function scanReadout(i, st, k, names, units) {
  if (i < 0 || !st.angles) return "";
  const nfc = st.mean.shape[1];
  const m = st.mean[i * nfc + k], s = st.std ? st.std[i * nfc + k] : NaN;
  const cov = st.cov ? `\ncoverage ${(100 * st.cov[i]).toFixed(0)} %` : "";
  return `scan ${i}: ω = ${fmt(st.angles[i], 4)}°\n${names[k] || `FC${k}`} = ${fmt(m, 3)} ± ${fmt(s, 2)} ${units}` +
    `\nMSE vs full data ${fmt(st.mse[i], 3)}${cov}`;
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


function axes(ctx, rect, xr, yr, xlabel, ylabel, theme, ylog = false) {
  const { x, y, w, h } = rect;
  ctx.strokeStyle = theme.border; ctx.lineWidth = 1; ctx.strokeRect(x, y, w, h);
  ctx.fillStyle = theme.fg; ctx.font = `11px ${theme.font}`;
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  const xt = niceTicks(xr[0], xr[1], Math.max(2, Math.floor(w / 70)));
  tickLabels(xt).forEach((s, i) => {
    const px = linmap(xt[i], xr[0], xr[1], x, x + w);
    ctx.fillText(s, px, y + h + 4);
    ctx.beginPath(); ctx.moveTo(px, y + h); ctx.lineTo(px, y + h + 3); ctx.stroke();
  });
  ctx.fillText(xlabel, x + w / 2, y + h + 18);
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  let yt;
  if (ylog) yt = logTicks(yr[0], yr[1]);
  else { const ts = niceTicks(yr[0], yr[1], 5); const ls = tickLabels(ts); yt = ts.map((v, i) => ({ v, label: ls[i] })); }
  for (const t of yt) {
    const py = linmap(t.v, yr[0], yr[1], y + h, y);
    ctx.fillText(t.label, x - 4, py);
    ctx.beginPath(); ctx.moveTo(x - 3, py); ctx.lineTo(x, py); ctx.stroke();
  }
  ctx.save(); ctx.translate(11, y + h / 2); ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center"; ctx.fillText(ylabel, 0, 0); ctx.restore();
  return yt;
}

export function drawPoints(ctx, g, colors, sel, theme) {
  for (let i = 0; i < g.px.length; i++) {
    ctx.fillStyle = colors[i];
    ctx.beginPath(); ctx.arc(g.px[i], g.py[i], 4, 0, 2 * Math.PI); ctx.fill();
    // outlined in the foreground colour: the cyclic map's ends (light) and middle (dark) sit at
    // 1.4:1 and 1.2:1 contrast on the light and dark backgrounds (session 47, a browser probe)
    ctx.strokeStyle = theme.fg; ctx.lineWidth = 0.9; ctx.stroke();
  }
  if (sel >= 0 && sel < g.px.length) {
    ctx.strokeStyle = theme.selection; ctx.lineWidth = 2.5;
    ctx.beginPath(); ctx.arc(g.px[sel], g.py[sel], 8, 0, 2 * Math.PI); ctx.stroke();
  }
}

function hline(ctx, rect, yr, v, color, dash) {
  if (v == null || !Number.isFinite(v)) return;
  const py = linmap(v, yr[0], yr[1], rect.y + rect.h, rect.y);
  ctx.save(); ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.setLineDash(dash);
  ctx.beginPath(); ctx.moveTo(rect.x, py); ctx.lineTo(rect.x + rect.w, py); ctx.stroke(); ctx.restore();
}

/** Image rectangle of a spectrum panel W x H (CSS px). */
export function imageRect(W, H) { return { x: IPAD.l, y: IPAD.t, w: W - IPAD.l - IPAD.r, h: H - IPAD.t - IPAD.b }; }

function drawSpectrum(canvas, W, H, img, st, theme, title, withFreqs) {
  const ctx = sizeCanvas(canvas, W, H);
  ctx.fillStyle = theme.bg; ctx.fillRect(0, 0, W, H);
  const r = imageRect(W, H);
  const x0 = r.x, x1 = r.x + r.w, y0 = r.y, y1 = r.y + r.h;
  ctx.fillStyle = theme.fg; ctx.font = `11px ${theme.font}`; ctx.textAlign = "left"; ctx.textBaseline = "top";
  ctx.fillText(title, x0, 2);
  if (!img) { ctx.fillText("click a scan", x0 + 8, (y0 + y1) / 2); return null; }
  const [nq, nE] = img.shape;
  const [vmin, vmax] = inputLimits(img);
  ctx.fillStyle = theme.nan; ctx.fillRect(x0, y0, r.w, r.h); // uncovered (NaN) shows grey
  const off = new OffscreenCanvas(nq, nE);
  const id = off.getContext("2d").createImageData(nq, nE);
  floatToRGBA(img, nq, nE, LUT, vmin, vmax, id.data);
  off.getContext("2d").putImageData(id, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, x0, y0, r.w, r.h);
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
  const line = overlayColor(LUT);
  const ql = layoutQLabels(st.labels, st.breaks, qmin, qmax, x0, x1);
  for (const l of ql) {
    ctx.strokeStyle = l.isBreak ? line : "rgba(255,255,255,0.35)"; ctx.lineWidth = l.isBreak ? 2 : 1;
    ctx.beginPath(); ctx.moveTo(l.px, y0); ctx.lineTo(l.px, y1); ctx.stroke();
  }
  ctx.strokeStyle = theme.border; ctx.lineWidth = 1; ctx.strokeRect(x0, y0, r.w, r.h);
  ctx.fillStyle = theme.fg; ctx.textAlign = "right"; ctx.textBaseline = "middle";
  const et = niceTicks(e[0], e[1], 4);
  tickLabels(et).forEach((s, i) => ctx.fillText(s, x0 - 3, linmap(et[i], e[0], e[1], y1, y0)));
  ctx.save(); ctx.translate(9, (y0 + y1) / 2); ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center"; ctx.fillText(st.elabel || "E (meV)", 0, 0); ctx.restore();
  drawQLabels(ctx, ql, y1 + 3, 10);
  drawColorbar(ctx, { x: x1 + 8, y: y0, w: 10, h: r.h }, LUT, vmin, vmax, "I (arb. units)", theme);
  return [vmin, vmax];
}

/** Hover text of an input/reconstruction image at (x, y). */
export function pixelReadout(img, st, x, y, r) {
  if (!img || x < r.x || x > r.x + r.w || y < r.y || y > r.y + r.h) return "";
  const [nq, nE] = img.shape;
  const iq = clamp(Math.floor(((x - r.x) / r.w) * nq), 0, nq - 1);
  const ev = linmap(y, r.y + r.h, r.y, st.erange[0], st.erange[1]);
  const ie = clamp(Math.floor(((st.erange[1] - st.erange[0]) > 0 ? (ev - st.erange[0]) / (st.erange[1] - st.erange[0]) : 0) * nE), 0, nE - 1);
  const v = img[iq * nE + ie];
  const eText = st.elabel === "E (bin)" ? `E bin ${ie}` : `E = ${fmt(ev, 3)} meV`;
  return `q bin ${iq}\n${eText}\nI = ${Number.isNaN(v) ? "not measured" : fmt(v, 3)}`;
}

function render({ model, el: root }) {
  const unsuppress = initRoot(root, "fcinv-orientation");
  const wrap = el("div", { style: "display:flex;flex-direction:column;align-items:flex-start;gap:6px;font-size:12px;max-width:100%" }, root);
  const ctl = el("div", { style: "display:flex;flex-wrap:wrap;gap:10px;align-items:center" }, wrap);
  el("span", { textContent: "FC:" }, ctl);
  const fcSel = el("select", { className: "fcinv-fc" }, ctl);
  const info = el("span", { className: "fcinv-scan-info" }, ctl);
  const errBox = el("span", { className: "fcinv-error" }, ctl);
  const row1 = el("div", { style: "display:flex;flex-wrap:wrap;gap:8px;max-width:100%" }, wrap);
  const scatter = el("canvas", { className: "fcinv-scatter", tabIndex: 0 }, row1);
  const msePanel = el("canvas", { className: "fcinv-mse", tabIndex: 0 }, row1);
  const row2 = el("div", { style: "display:flex;flex-wrap:wrap;gap:8px;max-width:100%" }, wrap);
  const inputC = el("canvas", { className: "fcinv-input" }, row2);
  const reconC = el("canvas", { className: "fcinv-recon" }, row2);
  for (const c of [scatter, msePanel]) {
    c.style.cursor = "pointer";
    c.setAttribute("aria-label", "scans: arrow keys move the selection along the angle");
  }
  pngButton(ctl, root, "orientation.png", () => theme.bg);

  let theme = themeOf(root);
  root.fcinvTheme = theme;
  const size = { sw: 480, sh: 300, mw: 260, mh: 300, iw: 370, ih: 260 };
  const st = {};
  let geom = null, mgeom = null;
  function layout(width) {
    const w = width || root.getBoundingClientRect().width || 760;
    const a = panelWidth(w, 2, { minW: 260, maxW: 520, gap: 8 });
    size.sw = a.perRow === 2 ? Math.min(520, Math.floor((w - 8) * 0.64)) : a.w;
    size.mw = a.perRow === 2 ? Math.min(320, w - 8 - size.sw) : a.w;
    size.sh = size.mh = 300;
    const b = panelWidth(w, 2, { minW: 260, maxW: 420, gap: 8 });
    size.iw = b.w; size.ih = Math.round(clamp(b.w * 0.7, 200, 280));
  }
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
    st.qrange = model.get("q_range"); st.erange = model.get("energy_range"); st.elabel = model.get("energy_label");
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
    const W = size.sw, H = size.sh;
    const ctx = sizeCanvas(scatter, W, H);
    ctx.fillStyle = theme.bg; ctx.fillRect(0, 0, W, H);
    if (!st.angles || !st.mean) return;
    const k = model.get("fc");
    const vals = column(st.mean, k), errs = column(st.std, k);
    const full = st.full ? st.full[k] : null, ref = st.ref ? st.ref[k] : null;
    geom = scatterGeometry(st.angles, vals, errs, [full, ref], W, H);
    scatter.fcinvGeom = geom; // point positions, for tests and tools
    const { rect, yr } = geom;
    axes(ctx, rect, geom.xr, yr, "sample angle ω (°)", `${model.get("names")[k] || ""} (${model.get("units")})`, theme);
    ctx.strokeStyle = theme.muted; ctx.lineWidth = 1;
    for (let i = 0; i < vals.length; i++) {
      if (!(errs[i] > 0)) continue;
      const a = linmap(vals[i] - errs[i], yr[0], yr[1], rect.y + rect.h, rect.y);
      const b = linmap(vals[i] + errs[i], yr[0], yr[1], rect.y + rect.h, rect.y);
      ctx.beginPath(); ctx.moveTo(geom.px[i], a); ctx.lineTo(geom.px[i], b); ctx.stroke();
    }
    const refColor = theme.dark ? "#ff6e6e" : "#c22";
    hline(ctx, rect, yr, full, theme.fg, []);
    hline(ctx, rect, yr, ref, refColor, [6, 4]);
    drawPoints(ctx, geom, st.colors, model.get("selected"), theme);
    // legend, one row above the plot
    ctx.font = `11px ${theme.font}`; ctx.textBaseline = "middle"; ctx.textAlign = "left";
    const leg = [["full data", theme.fg, []]];
    if (ref != null) leg.push(["reference", refColor, [6, 4]]);
    let lx = rect.x + rect.w - 90 * leg.length;
    for (const [t, c, d] of leg) {
      ctx.save(); ctx.strokeStyle = c; ctx.lineWidth = 1.5; ctx.setLineDash(d);
      ctx.beginPath(); ctx.moveTo(lx, 10); ctx.lineTo(lx + 20, 10); ctx.stroke(); ctx.restore();
      ctx.fillStyle = theme.fg; ctx.fillText(t, lx + 24, 10);
      lx += 90;
    }
    // the points' colours: a cyclic colour bar over the angle period
    const { lo, period } = anglePeriod(st.angles);
    drawColorbar(ctx, { x: rect.x + rect.w + 8, y: rect.y, w: 10, h: rect.h }, CLUT, lo, lo + period, "ω (°) colour", theme);
    bumpFrame(scatter);
  }

  function paintMse() {
    const W = size.mw, H = size.mh;
    const ctx = sizeCanvas(msePanel, W, H);
    ctx.fillStyle = theme.bg; ctx.fillRect(0, 0, W, H);
    if (!st.angles || !st.mse) return;
    const ia = decodeArray(model.get("info_angles")), iv = decodeArray(model.get("info_values"));
    const nextA = model.get("next_angle");
    const planA = ia ? Float64Array.from([...ia, Number.isFinite(nextA) ? nextA : NaN]) : null;
    mgeom = mseGeometry(st.angles, st.mse, W, H, planA);
    msePanel.fcinvGeom = mgeom;
    const yt = axes(ctx, mgeom.rect, mgeom.xr, mgeom.yr, "ω (°)", "MSE vs full data", theme, true);
    msePanel.dataset.yticks = String(yt.length);
    ctx.fillStyle = theme.fg; ctx.textAlign = "left"; ctx.textBaseline = "top";
    ctx.fillText("MSE vs full data (log)", mgeom.rect.x, 4);
    drawPoints(ctx, mgeom, st.colors, model.get("selected"), theme);
    const curve = infoCurve(ia, iv, nextA, mgeom.rect, mgeom.xr);
    msePanel.dataset.nextAngle = curve && curve.nextX != null ? String(model.get("next_angle")) : "";
    if (curve) {
      const c = theme.dark ? "#5fd3c4" : "#1f7a70";
      ctx.save(); ctx.strokeStyle = c; ctx.lineWidth = 1.2; ctx.beginPath();
      curve.xs.forEach((x, i) => (i ? ctx.lineTo(x, curve.ys[i]) : ctx.moveTo(x, curve.ys[i]))); ctx.stroke();
      if (curve.nextX != null) {
        ctx.setLineDash([4, 3]); ctx.beginPath();
        ctx.moveTo(curve.nextX, mgeom.rect.y); ctx.lineTo(curve.nextX, mgeom.rect.y + mgeom.rect.h); ctx.stroke();
        ctx.setLineDash([]); ctx.fillStyle = c; ctx.textAlign = "right"; ctx.textBaseline = "top";
        ctx.fillText(`next ω = ${fmt(model.get("next_angle"))}°`, mgeom.rect.x + mgeom.rect.w, 4);
      }
      ctx.restore();
    }
    bumpFrame(msePanel);
  }

  function paintScan() {
    errBox.textContent = model.get("error");
    errBox.style.color = theme.error;
    const sel = model.get("selected");
    if (sel >= 0 && st.angles) {
      const cov = st.cov ? `, coverage ${(100 * st.cov[sel]).toFixed(0)}%` : "";
      info.textContent = `scan ${sel}: ω = ${fmt(st.angles[sel], 4)}°, MSE ${fmt(st.mse[sel], 2)}${cov}`;
    } else info.textContent = "click a point (or focus the plot and use the arrow keys) to see its scan";
    const lim = drawSpectrum(inputC, size.iw, size.ih, st.input, st, theme, st.freqs ? "input + predicted dispersion" : "input", true);
    inputC.dataset.vmax = lim ? String(lim[1]) : "";
    drawSpectrum(reconC, size.iw, size.ih, st.recon, st, theme, "reconstruction", false);
    bumpFrame(inputC); bumpFrame(reconC);
  }
  const paintAll = () => { paintScatter(); paintMse(); paintScan(); };

  const select = (i) => { if (i >= 0 && i !== model.get("selected")) { model.set("selected", i); model.save_changes(); } };
  function clickOn(canvas, g) {
    return (e) => {
      if (!g()) return;
      const [x, y] = eventPos(canvas, e);
      select(pickScan(g(), x, y));
    };
  }
  scatter.addEventListener("click", clickOn(scatter, () => geom));
  msePanel.addEventListener("click", clickOn(msePanel, () => mgeom));
  for (const c of [scatter, msePanel]) {
    c.fcinvKeys = (e) => {
      if (!st.angles || !["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End"].includes(e.key)) return;
      e.preventDefault();
      select(stepSorted(st.angles, model.get("selected"), e.key));
    };
  }
  const names = () => model.get("names"), units = () => model.get("units");
  const tips = [
    attachTooltip(root, scatter, (x, y) => (geom ? scanReadout(pickScan(geom, x, y), st, model.get("fc"), names(), units()) : "")),
    attachTooltip(root, msePanel, (x, y) => (mgeom ? scanReadout(pickScan(mgeom, x, y), st, model.get("fc"), names(), units()) : "")),
    attachTooltip(root, inputC, (x, y) => pixelReadout(st.input, st, x, y, imageRect(...cssSize(inputC)))),
    attachTooltip(root, reconC, (x, y) => pixelReadout(st.recon, st, x, y, imageRect(...cssSize(reconC)))),
  ];

  const onData = () => { readData(); paintScatter(); paintMse(); };
  const onFc = () => { fcSel.value = String(model.get("fc")); paintScatter(); };
  const onScan = () => { readScan(); paintAll(); };
  const onNames = () => { syncControls(); paintScatter(); };
  const handlers = { mean: onData, angles: onData, reference: onData, fc: onFc, scan_frame: onScan, names: onNames,
                     info_values: paintMse, next_angle: paintMse };
  for (const [k, f] of Object.entries(handlers)) model.on(`change:${k}`, f);
  const unW = watchWidth(root, (w) => { layout(w); paintAll(); });
  const onTheme = () => { theme = themeOf(root); root.fcinvTheme = theme; root.style.colorScheme = theme.dark ? "dark" : "light"; paintAll(); };
  const unT = watchTheme(onTheme);
  whenConnected(root, onTheme); // the notebook's theme variables are readable once attached
  root.style.colorScheme = theme.dark ? "dark" : "light";
  syncControls(); readData(); readScan(); layout(); paintAll();
  return () => {
    unsuppress(); unW(); unT(); tips.forEach((f) => f());
    for (const k of Object.keys(handlers)) model.off(`change:${k}`);
  };
}

export default { render };
