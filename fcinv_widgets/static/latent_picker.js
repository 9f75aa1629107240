// LatentPicker view: UMAP scatter of latent means coloured by a chosen FC; click and lasso
// selection, overlay points with a legend, and a ray tool (two clicks) whose decoded spectra
// come back from the kernel as a strip of small images.
// State comes from the Python LatentPickerView; arrays arrive as {buffer, dtype, shape}.
import {
  makeLut, floatToRGBA, nearestPoint, lassoSelect, decodeArray, lutColor, cssRGB, extent,
  projectPoints, linmap, CATEGORICAL,
  bumpFrame, fmt, colorLimits, sizeCanvas, watchWidth, watchTheme, themeOf, eventPos, drawColorbar,
  stepPoint, makeLasso, attachTooltip, pngButton, suppressShortcuts, whenConnected, el, initRoot, wrapText,
} from "./common.js";

const LUT = makeLut();
export const MAP_PAD = { l: 10, r: 78, t: 10, b: 10 };
const MARKERS = ["star", "cross", "plus", "triangle"];

/** Geometry of the map: data ranges of points + overlays (+ ray ends) and pixel positions. */
export function mapGeometry(xy, W, H, extra = null) {
  const rect = { x: MAP_PAD.l, y: MAP_PAD.t, w: W - MAP_PAD.l - MAP_PAD.r, h: H - MAP_PAD.t - MAP_PAD.b };
  const n = xy ? xy.length / 2 : 0;
  const xs = new Float64Array(n), ys = new Float64Array(n);
  for (let i = 0; i < n; i++) { xs[i] = xy[2 * i]; ys[i] = xy[2 * i + 1]; }
  const ex = [], ey = [];
  if (extra) for (let i = 0; i < extra.length / 2; i++) { ex.push(extra[2 * i]); ey.push(extra[2 * i + 1]); }
  const xr = extent([xs, ex], 0.04), yr = extent([ys, ey], 0.04);
  const { px, py } = projectPoints(xs, ys, xr, yr, rect);
  return { rect, xr, yr, px, py };
}

/** Pixel position of a data point (x, y) in the map geometry. */
export function toPixel(g, x, y) {
  return [linmap(x, g.xr[0], g.xr[1], g.rect.x, g.rect.x + g.rect.w), linmap(y, g.yr[0], g.yr[1], g.rect.y + g.rect.h, g.rect.y)];
}

/** Data position of a pixel (x, y) in the map geometry. */
export function toData(g, x, y) {
  return [linmap(x, g.rect.x, g.rect.x + g.rect.w, g.xr[0], g.xr[1]), linmap(y, g.rect.y + g.rect.h, g.rect.y, g.yr[0], g.yr[1])];
}

/** Click selection: [i] for the nearest point within maxDist; with `add`, toggles i in current. */
export function clickSelection(g, x, y, current = [], add = false, maxDist = 8) {
  const i = nearestPoint(x, y, g.px, g.py, maxDist);
  if (!add) return i < 0 ? [] : [i];
  if (i < 0) return [...current];
  const s = new Set(current);
  if (s.has(i)) s.delete(i); else s.add(i);
  return [...s].sort((a, b) => a - b);
}

/** Lasso selection: indices inside the pixel polygon (union with current when add). */
export function lassoSelection(g, poly, current = [], add = false) {
  const inside = Array.from(lassoSelect(g.px, g.py, poly));
  if (!add) return inside;
  return [...new Set([...current, ...inside])].sort((a, b) => a - b);
}

/** A ray end point from a click: the nearest map point's index (within maxDist), else [x, y] data. */
export function rayEndpoint(g, x, y, maxDist = 12) {
  const i = nearestPoint(x, y, g.px, g.py, maxDist);
  return i >= 0 ? i : toData(g, x, y);
}

/** Hover text of map point i: its index and FCs (params: (N, nfc) row-major). */
export function pointReadout(i, params, names, units, color = null) {
  if (i < 0) return "";
  let t = `point ${i}`;
  if (params && params.shape) {
    const nfc = params.shape[1];
    for (let k = 0; k < nfc; k++) t += `\n${names[k] || `FC${k}`} = ${fmt(params[i * nfc + k], 3)} ${units}`;
  } else if (color) t += `\nvalue ${fmt(color[i], 3)} ${units}`;
  return t;
}

/** CSS colours of the points for values on [lo, hi] with the viridis LUT. */
export function pointColors(values, lo, hi, lut = LUT) {
  return Array.from(values, (v) => cssRGB(lutColor(lut, v, lo, hi)));
}


/**
 * Labels over the ray strip's m thumbnails, `pitch` px apart: "A", "t=0.14", …, "B" where they fit,
 * "0.14" where only the number does, else A, B and every step-th t in between (they overprinted
 * as "t=0.1t=0.2…" under ~35 px). `measure(text)` is the text's width in px. "" = not drawn.
 */
export function stripLabels(m, pitch, measure) {
  const t = (k) => (k / (m - 1)).toFixed(2);
  const end = (k) => (k === 0 ? "A" : k === m - 1 ? "B" : null);
  const room = pitch - 4;
  for (const f of [(k) => `t=${t(k)}`, t]) {
    const labels = Array.from({ length: m }, (_, k) => end(k) ?? f(k));
    if (labels.every((s) => measure(s) <= room)) return labels;
  }
  let widest = 0;
  for (let k = 1; k < m - 1; k++) widest = Math.max(widest, measure(t(k)));
  const step = Math.max(1, Math.ceil((widest + 4) / pitch));
  return Array.from({ length: m }, (_, k) => end(k) ?? (k % step === 0 && m - 1 - k >= step ? t(k) : ""));
}

function marker(ctx, kind, x, y, r, color) {
  ctx.save(); ctx.strokeStyle = "#000"; ctx.fillStyle = color; ctx.lineWidth = 1;
  ctx.beginPath();
  if (kind === "star") {
    for (let k = 0; k < 10; k++) {
      const a = -Math.PI / 2 + (k * Math.PI) / 5, rr = k % 2 ? r * 0.45 : r;
      ctx.lineTo(x + rr * Math.cos(a), y + rr * Math.sin(a));
    }
    ctx.closePath(); ctx.fill(); ctx.stroke();
  } else if (kind === "triangle") {
    ctx.moveTo(x, y - r); ctx.lineTo(x + r, y + r * 0.8); ctx.lineTo(x - r, y + r * 0.8); ctx.closePath();
    ctx.fill(); ctx.stroke();
  } else {
    const d = kind === "cross" ? r * 0.75 : r;
    ctx.strokeStyle = color; ctx.lineWidth = 2.5;
    if (kind === "cross") { ctx.moveTo(x - d, y - d); ctx.lineTo(x + d, y + d); ctx.moveTo(x - d, y + d); ctx.lineTo(x + d, y - d); }
    else { ctx.moveTo(x - d, y); ctx.lineTo(x + d, y); ctx.moveTo(x, y - d); ctx.lineTo(x, y + d); }
    ctx.stroke();
  }
  ctx.restore();
}

function render({ model, el: root }) {
  const unsuppress = initRoot(root, "fcinv-latent-picker");
  const wrap = el("div", { style: "display:flex;flex-direction:column;align-items:flex-start;gap:6px;font-size:12px;max-width:100%" }, root);
  const ctl = el("div", { style: "display:flex;flex-wrap:wrap;gap:8px;align-items:center" }, wrap);
  el("span", { textContent: "colour by:" }, ctl);
  const fcSel = el("select", { className: "fcinv-fc" }, ctl);
  const toolBtns = {};
  for (const [t, label] of [["select", "click"], ["lasso", "lasso"], ["ray", "ray"]]) {
    toolBtns[t] = el("button", { textContent: label, className: `fcinv-tool-${t}`, title: `${t} tool` }, ctl);
    toolBtns[t].addEventListener("click", () => { model.set("tool", t); model.save_changes(); });
  }
  const clear = el("button", { textContent: "clear", className: "fcinv-clear" }, ctl);
  pngButton(ctl, root, "latent_map.png", () => theme.bg);
  const info = el("span", { className: "fcinv-sel-info" }, ctl);
  const errBox = el("div", { className: "fcinv-error" }, wrap);
  const canvas = el("canvas", { className: "fcinv-map", tabIndex: 0 }, wrap);
  const strip = el("canvas", { className: "fcinv-strip" }, wrap);
  canvas.style.cursor = "crosshair";
  canvas.style.touchAction = "none";
  canvas.setAttribute("aria-label", "latent map: arrow keys move the selected point");

  let theme = themeOf(root);
  root.fcinvTheme = theme;
  const size = { mw: 560, mh: 460, sw: 900, sh: 130 };
  function layout(width) {
    const w = Math.floor(width || root.getBoundingClientRect().width || 900);
    size.mw = Math.max(200, Math.min(620, w)); size.mh = Math.round(Math.min(480, size.mw * 0.82));
    size.sw = Math.max(200, w); size.sh = 130;
  }
  const st = { pending: null };
  const lasso = makeLasso();
  let geom = null;
  function read() {
    st.xy = decodeArray(model.get("xy"));
    st.color = decodeArray(model.get("color"));
    st.params = decodeArray(model.get("params"));
    st.oxy = decodeArray(model.get("overlay_xy"));
    st.ogroup = decodeArray(model.get("overlay_group"));
    st.rayxy = decodeArray(model.get("ray_xy"));
    st.strip = decodeArray(model.get("strip"));
    const [lo, hi] = model.get("color_range");
    st.colors = st.color ? pointColors(st.color, lo, hi) : [];
  }
  function syncControls() {
    fcSel.textContent = "";
    model.get("names").forEach((t, i) => el("option", { value: String(i), textContent: t }, fcSel));
    fcSel.value = String(model.get("fc"));
    for (const [t, b] of Object.entries(toolBtns)) b.style.fontWeight = model.get("tool") === t ? "bold" : "normal";
    toolBtns.ray.disabled = false;
  }
  fcSel.addEventListener("change", () => { model.set("fc", Number(fcSel.value)); model.save_changes(); });
  clear.addEventListener("click", () => { st.pending = null; model.set("selected", []); model.set("ray", []); model.save_changes(); });

  function paintMap() {
    const W = size.mw, H = size.mh;
    const ctx = sizeCanvas(canvas, W, H);
    ctx.fillStyle = theme.bg; ctx.fillRect(0, 0, W, H);
    if (!st.xy) return;
    geom = mapGeometry(st.xy, W, H, st.oxy);
    canvas.fcinvGeom = geom; // for tests and tools
    const sel = model.get("selected");
    const n = geom.px.length;
    ctx.globalAlpha = sel.length ? 0.35 : 0.9;
    for (let i = 0; i < n; i++) { ctx.fillStyle = st.colors[i]; ctx.fillRect(geom.px[i] - 2, geom.py[i] - 2, 4, 4); }
    ctx.globalAlpha = 1;
    for (const i of sel) {
      ctx.fillStyle = st.colors[i]; ctx.strokeStyle = theme.fg; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.arc(geom.px[i], geom.py[i], 4, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    }
    // overlays + legend
    const names = model.get("overlay_names");
    if (st.oxy && st.ogroup) {
      for (let k = 0; k < st.ogroup.length; k++) {
        const g = st.ogroup[k];
        const [x, y] = toPixel(geom, st.oxy[2 * k], st.oxy[2 * k + 1]);
        marker(ctx, MARKERS[g % MARKERS.length], x, y, 7, CATEGORICAL[g % CATEGORICAL.length]);
      }
    }
    names.forEach((t, g) => {
      const y = geom.rect.y + 10 + 16 * g;
      ctx.fillStyle = theme.dark ? "rgba(0,0,0,0.6)" : "rgba(255,255,255,0.8)"; ctx.fillRect(geom.rect.x + 2, y - 8, 14 + 7 * t.length + 10, 16);
      marker(ctx, MARKERS[g % MARKERS.length], geom.rect.x + 10, y, 6, CATEGORICAL[g % CATEGORICAL.length]);
      ctx.fillStyle = theme.fg; ctx.font = `11px ${theme.font}`; ctx.textAlign = "left"; ctx.textBaseline = "middle";
      ctx.fillText(t, geom.rect.x + 20, y);
    });
    // ray
    if (st.rayxy) {
      const [ax, ay] = toPixel(geom, st.rayxy[0], st.rayxy[1]);
      const [bx, by] = toPixel(geom, st.rayxy[2], st.rayxy[3]);
      ctx.strokeStyle = theme.selection; ctx.lineWidth = 2; ctx.beginPath(); ctx.moveTo(ax, ay); ctx.lineTo(bx, by); ctx.stroke();
      const m = model.get("ray_n");
      ctx.fillStyle = theme.selection;
      for (let k = 0; k < m; k++) {
        const t = m > 1 ? k / (m - 1) : 0;
        ctx.beginPath(); ctx.arc(ax + t * (bx - ax), ay + t * (by - ay), k === 0 || k === m - 1 ? 5 : 3, 0, 2 * Math.PI); ctx.fill();
      }
      ctx.fillStyle = theme.fg; ctx.font = `bold 11px ${theme.font}`; ctx.fillText("A", ax + 6, ay - 6); ctx.fillText("B", bx + 6, by - 6);
    }
    if (st.pending != null) {
      const [x, y] = typeof st.pending === "number" ? [geom.px[st.pending], geom.py[st.pending]] : toPixel(geom, ...st.pending);
      ctx.strokeStyle = theme.selection; ctx.lineWidth = 2; ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.stroke();
    }
    const lp = lasso.points;
    if (lp && lp.length > 1) {
      ctx.strokeStyle = theme.fg; ctx.setLineDash([4, 3]); ctx.lineWidth = 1.2; ctx.beginPath();
      lp.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.closePath(); ctx.stroke(); ctx.setLineDash([]);
    }
    // colour bar with ticks and units
    const [lo, hi] = model.get("color_range");
    drawColorbar(ctx, { x: W - MAP_PAD.r + 8, y: MAP_PAD.t + 10, w: 12, h: H - MAP_PAD.t - MAP_PAD.b - 20 }, LUT, lo, hi,
      `${model.get("names")[model.get("fc")] || ""} (${model.get("units")})`, theme);
    bumpFrame(canvas);
  }

  function paintStrip() {
    const W = size.sw, H = size.sh;
    const ctx = sizeCanvas(strip, W, H);
    ctx.fillStyle = theme.bg; ctx.fillRect(0, 0, W, H);
    ctx.fillStyle = theme.fg; ctx.font = `11px ${theme.font}`; ctx.textAlign = "left"; ctx.textBaseline = "top";
    if (!st.strip) {
      const hint = model.get("can_decode") ? "ray tool: click two points to decode spectra along the latent line"
        : "ray tool: give the trained VAE (LatentPicker(map, model)) to decode";
      wrapText(ctx, hint, W - 8).forEach((line, i) => ctx.fillText(line, 4, 4 + 14 * i)); // (was cut at 300 px)
      bumpFrame(strip); return;
    }
    const [m, nq, nE] = st.strip.shape;
    const [vmin, vmax] = colorLimits(st.strip);
    const cbw = 56, gap = 4;
    const w = Math.min(110, (W - cbw - gap * (m - 1)) / m), h = H - 18;
    strip.dataset.thumbWidth = String(w);
    const off = new OffscreenCanvas(nq, nE);
    const octx = off.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    const labels = stripLabels(m, w + gap, (s) => ctx.measureText(s).width);
    for (let k = 0; k < m; k++) {
      const id = octx.createImageData(nq, nE);
      floatToRGBA(st.strip.subarray(k * nq * nE, (k + 1) * nq * nE), nq, nE, LUT, vmin, vmax, id.data);
      octx.putImageData(id, 0, 0);
      const x = k * (w + gap);
      ctx.drawImage(off, x, 16, w, h);
      ctx.fillStyle = theme.fg;
      if (labels[k]) ctx.fillText(labels[k], x + 2, 2);
    }
    drawColorbar(ctx, { x: m * (w + gap) + 2, y: 16, w: 9, h }, LUT, vmin, vmax, "I (scaled)", theme, { nTicks: 3 });
    bumpFrame(strip);
  }

  function paintInfo() {
    const sel = model.get("selected");
    const tool = model.get("tool");
    const hint = tool === "lasso" ? "drag to lasso (shift adds)" : tool === "ray"
      ? (st.pending == null ? "ray: click the first point" : "ray: click the second point") : "click a point (shift toggles; arrow keys move)";
    info.textContent = `${sel.length} selected — ${hint}`;
    errBox.textContent = model.get("error");
    errBox.style.color = theme.error;
  }

  // lasso with pointer capture: the stroke may leave the canvas (e.g. over the colour bar) and come back
  canvas.addEventListener("pointerdown", (e) => {
    if (!geom || model.get("tool") !== "lasso" || e.button !== 0) return;
    lasso.down(...eventPos(canvas, e));
    try { canvas.setPointerCapture(e.pointerId); } catch (_) { /* synthetic events */ }
    e.preventDefault();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!lasso.active) return;
    lasso.move(...eventPos(canvas, e));
    paintMap();
  });
  canvas.addEventListener("pointerleave", () => lasso.leave());
  const endLasso = (e) => {
    if (!lasso.active) return;
    const poly = lasso.up();
    if (poly) {
      model.set("selected", lassoSelection(geom, poly, model.get("selected"), e.shiftKey));
      model.save_changes();
    }
    paintMap();
  };
  canvas.addEventListener("pointerup", endLasso);
  // a release outside the page without capture (old browsers): finish the stroke there
  window.addEventListener("pointerup", endLasso);
  canvas.addEventListener("pointercancel", () => { lasso.cancel(); paintMap(); });
  canvas.addEventListener("click", (e) => {
    if (!geom) return;
    const [x, y] = eventPos(canvas, e);
    const tool = model.get("tool");
    if (tool === "select") {
      model.set("selected", clickSelection(geom, x, y, model.get("selected"), e.shiftKey));
      model.save_changes();
    } else if (tool === "ray") {
      const p = rayEndpoint(geom, x, y);
      if (st.pending == null) { st.pending = p; paintMap(); paintInfo(); return; }
      const a = st.pending; st.pending = null;
      model.set("ray", [a, p]); model.save_changes();
      paintInfo();
    }
  });
  canvas.fcinvKeys = (e) => {
    if (!geom || !["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(e.key)) return;
    e.preventDefault();
    const sel = model.get("selected");
    const cur = sel.length ? sel[sel.length - 1] : -1;
    const i = stepPoint(geom.px, geom.py, cur, e.key);
    if (i >= 0) { model.set("selected", [i]); model.save_changes(); }
  };
  const tip = attachTooltip(root, canvas, (x, y) => {
    if (!geom || lasso.active) return "";
    const i = nearestPoint(x, y, geom.px, geom.py, 8);
    return pointReadout(i, st.params, model.get("names"), model.get("units"), st.color);
  });

  const onData = () => { read(); paintMap(); };
  const onSel = () => { paintMap(); paintInfo(); };
  const onStrip = () => { read(); paintMap(); paintStrip(); paintInfo(); };
  const onCtl = () => { syncControls(); st.pending = null; paintMap(); paintInfo(); };
  const handlers = {
    color: onData, xy: onData, overlay_names: onData, selected: onSel, strip_frame: onStrip,
    tool: onCtl, names: onCtl, fc: onCtl, error: paintInfo,
  };
  for (const [k, f] of Object.entries(handlers)) model.on(`change:${k}`, f);
  const paintAll = () => { paintMap(); paintStrip(); paintInfo(); };
  const unW = watchWidth(root, (w) => { layout(w); paintAll(); });
  const onTheme = () => { theme = themeOf(root); root.fcinvTheme = theme; root.style.colorScheme = theme.dark ? "dark" : "light"; paintAll(); };
  const unT = watchTheme(onTheme);
  whenConnected(root, onTheme); // the notebook's theme variables are readable once attached
  root.style.colorScheme = theme.dark ? "dark" : "light";
  syncControls(); read(); layout(); paintAll();
  return () => {
    unsuppress(); unW(); unT(); tip();
    window.removeEventListener("pointerup", endLasso);
    for (const k of Object.keys(handlers)) model.off(`change:${k}`);
  };
}

export default { render };
