// FCExplorer view: FC sliders (+ numeric entry) and canvas I(q,E) heatmaps with the
// dispersion overlay, a colour bar with units on every panel, hover read-outs, an energy-range
// control, zoom/pan, PNG export; theme-aware, sized to the output area, crisp at any DPR.
// State comes from the Python FCExplorerView; arrays arrive as {buffer, dtype, shape}.
import {
  makeLut, floatToRGBA, niceTicks, linmap, layoutQLabels, drawQLabels, makeCoalescer, sharedCounter,
  decodeArray, difference, sliderStep, clamp, toFloat, DIVERGING_STOPS,
  fmt, fmtRange, tickLabels, colorLimits, overlayColor, sizeCanvas, cssSize, panelWidth,
  watchWidth, watchTheme, themeOf, eventPos, drawColorbar, zoomWindow, panWindow,
  attachTooltip, pngButton, suppressShortcuts, whenConnected, el, initRoot,
} from "./common.js";

const LUT = makeLut();
const DLUT = makeLut(DIVERGING_STOPS);
export const PAD = { l: 46, r: 66, t: 20, b: 30 };


/** Plot rectangle of a panel W x H (CSS px). */
export function panelRect(W, H) {
  return { x: PAD.l, y: PAD.t, w: W - PAD.l - PAD.r, h: H - PAD.t - PAD.b };
}

/** Label of the q-path segment holding plotting coordinate x, e.g. "Γ–X" (labels: [[x, text], ...]). */
export function segmentName(labels, x) {
  let a = null, b = null;
  for (const [lx, t] of labels) {
    if (lx <= x) a = t;
    else if (b === null) { b = t; break; }
  }
  const left = a == null ? "" : String(a).split("|").pop();
  const right = b == null ? "" : String(b).split("|")[0];
  return left && right ? `${left}–${right}` : left || right;
}

/**
 * Hover read-out of panel pixel (x, y): q bin, its label and r.l.u., E (meV), the value.
 * st: {qrange, view, labels, qrlu (nq*3) or null, shape [nq, nE], erange}; img: q-major data.
 */
export function hoverReadout(st, img, x, y, rect, valueName = "I") {
  if (x < rect.x || x > rect.x + rect.w || y < rect.y || y > rect.y + rect.h || !img) return "";
  const [nq, nE] = st.shape;
  const qv = linmap(x, rect.x, rect.x + rect.w, st.view.q[0], st.view.q[1]);
  const ev = linmap(y, rect.y + rect.h, rect.y, st.view.e[0], st.view.e[1]);
  const iq = clamp(Math.floor(linmap(qv, st.qrange[0], st.qrange[1], 0, nq)), 0, nq - 1);
  const ie = clamp(Math.floor(linmap(ev, st.erange[0], st.erange[1], 0, nE)), 0, nE - 1);
  const v = img[iq * nE + ie] * (img.scale != null ? img.scale : 1);
  const seg = segmentName(st.labels, qv);
  let q = `q bin ${iq}${seg ? ` (${seg})` : ""}`;
  if (st.qrlu) q += `\nq = (${[0, 1, 2].map((k) => fmt(st.qrlu[3 * iq + k], 3)).join(", ")}) r.l.u.`;
  return `${q}\nE = ${fmt(ev, 3)} meV\n${valueName} = ${Number.isNaN(v) ? "not measured" : fmt(v, 3)}`;
}

/** Auto energy window: the highest branch (meV) plus a margin, within the grid's range. */
export function autoEnergy(freqs, erange, margin = 0.12) {
  let top = -Infinity;
  if (freqs) for (let i = 0; i < freqs.length; i++) if (Number.isFinite(freqs[i]) && freqs[i] > top) top = freqs[i];
  if (!(top > erange[0])) return [erange[0], erange[1]];
  const step = niceTicks(0, top, 8)[1] || 1;
  return [erange[0], Math.min(erange[1], Math.ceil((top * (1 + margin)) / step) * step)];
}

function drawPanel(canvas, W, H, img, lut, vmin, vmax, st, theme, title, overlay, cbarLabel, mark) {
  const ctx = sizeCanvas(canvas, W, H);
  ctx.fillStyle = theme.bg; ctx.fillRect(0, 0, W, H);
  const r = panelRect(W, H);
  const x0 = r.x, x1 = r.x + r.w, y0 = r.y, y1 = r.y + r.h;
  const [nq, nE] = st.shape;
  const { q: vq, e: ve } = st.view;
  const [qmin, qmax] = st.qrange, e = st.erange;
  ctx.fillStyle = theme.nan; ctx.fillRect(x0, y0, r.w, r.h); // not measured (NaN) shows grey
  if (img && nq && nE) {
    // one offscreen image per panel canvas, reused while the grid keeps its shape
    let off = canvas.fcinvOff;
    if (!off || off.width !== nq || off.height !== nE) {
      off = canvas.fcinvOff = new OffscreenCanvas(nq, nE);
      canvas.fcinvImg = off.getContext("2d").createImageData(nq, nE);
    }
    const octx = off.getContext("2d");
    const id = canvas.fcinvImg;
    floatToRGBA(img, nq, nE, lut, vmin, vmax, id.data);
    octx.putImageData(id, 0, 0);
    ctx.imageSmoothingEnabled = false;
    // source rectangle of the view window (row 0 = highest energy)
    const sx = linmap(vq[0], qmin, qmax, 0, nq), sw = linmap(vq[1], qmin, qmax, 0, nq) - sx;
    const sy = linmap(ve[1], e[1], e[0], 0, nE), sh = linmap(ve[0], e[1], e[0], 0, nE) - sy;
    ctx.drawImage(off, sx, sy, sw, sh, x0, y0, r.w, r.h);
  }
  const line = overlayColor(lut);
  ctx.save(); ctx.beginPath(); ctx.rect(x0, y0, r.w, r.h); ctx.clip();
  if (overlay && st.freqs && st.qx) {
    const [nqf, nm] = st.freqs.shape;
    ctx.strokeStyle = line === "#ffffff" ? "rgba(255,255,255,0.85)" : "rgba(30,30,30,0.85)"; ctx.lineWidth = 1.2;
    for (let m = 0; m < nm; m++) {
      ctx.beginPath();
      let started = false;
      for (let i = 0; i < nqf; i++) {
        const px = linmap(st.qx[i], vq[0], vq[1], x0, x1);
        const py = linmap(st.freqs[i * nm + m], ve[0], ve[1], y1, y0);
        if (!started || st.breakIdx.has(i)) { ctx.moveTo(px, py); started = true; } else ctx.lineTo(px, py);
      }
      ctx.stroke();
    }
  }
  const qlabels = layoutQLabels(st.labels, st.breaks, vq[0], vq[1], x0, x1);
  for (const l of qlabels) {
    ctx.strokeStyle = l.isBreak ? line : line === "#ffffff" ? "rgba(255,255,255,0.4)" : "rgba(30,30,30,0.45)";
    ctx.lineWidth = l.isBreak ? 2 : 1;
    ctx.beginPath(); ctx.moveTo(l.px, y0); ctx.lineTo(l.px, y1); ctx.stroke();
  }
  ctx.restore();
  // axes, in the theme's colours, outside the image
  ctx.strokeStyle = theme.border; ctx.lineWidth = 1; ctx.strokeRect(x0, y0, r.w, r.h);
  ctx.fillStyle = theme.fg; ctx.font = `11px ${theme.font}`;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  const et = niceTicks(ve[0], ve[1], 5);
  tickLabels(et).forEach((s, i) => {
    const y = linmap(et[i], ve[0], ve[1], y1, y0);
    ctx.fillText(s, x0 - 4, y);
    ctx.beginPath(); ctx.moveTo(x0 - 3, y); ctx.lineTo(x0, y); ctx.stroke();
  });
  ctx.save(); ctx.translate(10, (y0 + y1) / 2); ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center"; ctx.fillText("E (meV)", 0, 0); ctx.restore();
  drawQLabels(ctx, qlabels, y1 + 4, 11, (px) => px >= x0 - 1 && px <= x1 + 1);
  if (title) { ctx.textAlign = "left"; ctx.textBaseline = "bottom"; ctx.fillText(title, x0, y0 - 3); }
  drawColorbar(ctx, { x: x1 + 8, y: y0, w: 10, h: r.h }, lut, vmin, vmax, cbarLabel, theme, { mark });
}

function render({ model, el: root }) {
  // keep slider keys (arrows, Home/End) away from the notebook's shortcuts (JupyterLab and Notebook 7)
  const unsuppress = initRoot(root, "fcinv-fcexplorer");
  const wrap = el("div", { className: "fcinv-wrap", style: "display:flex;flex-wrap:wrap;gap:12px;font-size:12px;align-items:flex-start" }, root);
  const side = el("div", { className: "fcinv-side", style: "display:flex;flex-direction:column;gap:4px;flex:0 1 290px;min-width:220px;max-width:100%" }, wrap);
  const plots = el("div", { className: "fcinv-plots", style: "display:flex;flex-direction:column;gap:6px;flex:1 1 320px;min-width:0;max-width:100%" }, wrap);
  const badge = el("div", { className: "fcinv-stability", style: "padding:2px 6px;border-radius:3px;font-weight:bold" }, side);
  const refRow = el("label", { className: "fcinv-ref-row", style: "display:none;gap:4px;align-items:center" }, side);
  el("span", { textContent: "reference:" }, refRow);
  const refSel = el("select", { className: "fcinv-reference" }, refRow);
  const sliderBox = el("div", { style: "display:flex;flex-direction:column;gap:3px" }, side);
  const reset = el("button", { textContent: "Reset to reference", className: "fcinv-reset" }, side);
  const errBox = el("div", { className: "fcinv-error", style: "max-width:280px" }, side);
  const bar = el("div", { className: "fcinv-toolbar", style: "display:flex;flex-wrap:wrap;gap:6px;align-items:center" }, plots);
  el("span", { textContent: "E max" }, bar);
  const emaxBox = el("input", { type: "number", className: "fcinv-emax", title: "upper end of the energy axis (meV)", style: "width:5.5em" }, bar);
  el("span", { textContent: "meV" }, bar);
  const autoBtn = el("button", { textContent: "auto", className: "fcinv-eauto", title: "highest branch + margin" }, bar);
  const fullBtn = el("button", { textContent: "full", className: "fcinv-efull", title: "the whole energy grid" }, bar);
  const zoomBtn = el("button", { textContent: "reset zoom", className: "fcinv-unzoom", title: "wheel zooms, drag pans, double-click resets" }, bar);
  const row = el("div", { className: "fcinv-row", style: "display:flex;flex-wrap:wrap;gap:6px" }, plots);
  const canvas = el("canvas", { className: "fcinv-heatmap" }, row);
  const cmpCanvas = el("canvas", { className: "fcinv-compare" }, row);
  const diffCanvas = el("canvas", { className: "fcinv-diff" }, row);
  pngButton(bar, root, "fc_explorer.png", () => theme.bg);

  const st = { view: { q: [0, 1], e: [0, 1] }, shape: [0, 0] };
  let theme = themeOf(root);
  root.fcinvTheme = theme;
  root.style.colorScheme = theme.dark ? "dark" : "light"; // native controls follow the theme
  let panelW = 420, panelH = 340;
  let sliders = [];
  // latest values the user asked for: a slider move changes only its own entry, so values of
  // untouched sliders are never rounded to a slider step
  let latest = (model.get("values") || []).slice();
  const coalescer = makeCoalescer((values, seq) => {
    model.set("values", values);
    model.set("request_seq", seq);
    model.save_changes();
  }, sharedCounter(model));

  function eWindow() {
    const ev = model.get("e_view") || [];
    return ev.length === 2 && ev[1] > ev[0] ? ev : st.erange;
  }

  function readArrays() {
    st.image = decodeArray(model.get("image"));
    st.freqs = decodeArray(model.get("freqs"));
    st.qx = decodeArray(model.get("q_x"));
    st.qrlu = decodeArray(model.get("q_rlu"));
    st.compare = decodeArray(model.get("compare"));
    st.erange = model.get("energy_range");
    st.qrange = model.get("q_range");
    st.labels = model.get("q_labels");
    st.breaks = model.get("q_breaks");
    st.shape = st.image ? st.image.shape : [0, 0];
    // indices i where a segment break falls between i-1 and i (discontinuous path)
    st.breakIdx = new Set(model.get("break_indices"));
    if (!st.zoomed) st.view = { q: st.qrange.slice(), e: eWindow().slice() };
  }

  let plotsWidth = 0; // from the ResizeObserver: no forced reflow on every frame
  function layout(width) {
    const n = st.compare ? 3 : 1;
    if (width) plotsWidth = width;
    if (!plotsWidth) plotsWidth = plots.getBoundingClientRect().width;
    const w = plotsWidth || 420;
    const p = panelWidth(w, n, { minW: 300, maxW: 470, gap: 6 });
    panelW = p.w; panelH = Math.round(clamp(p.w * 0.78, 220, 360));
  }

  function paint() {
    const t0 = performance.now();
    const iunits = model.get("intensity_units");
    const [, vmax] = st.image ? colorLimits(st.image) : [0, 1];
    drawPanel(canvas, panelW, panelH, st.image, LUT, 0, vmax, st, theme, model.get("title") || "model", true, `I (${iunits})`);
    const showCmp = !!st.compare;
    cmpCanvas.style.display = diffCanvas.style.display = showCmp ? "" : "none";
    if (showCmp) {
      const [, cmax] = colorLimits(st.compare);
      drawPanel(cmpCanvas, panelW, panelH, st.compare, LUT, 0, cmax, st, theme, "comparison", false, `I (${iunits})`);
      const d = difference(toFloat(st.image), st.compare);
      st.diff = d.data;
      drawPanel(diffCanvas, panelW, panelH, d.data, DLUT, d.vmin, d.vmax, st, theme, "model − comparison", false, `ΔI (${iunits})`, 0);
    }
    const stable = model.get("stable");
    badge.textContent = stable ? "stable" : "UNSTABLE (imaginary modes)";
    badge.style.background = stable ? theme.good : theme.bad;
    badge.style.color = stable ? theme.goodText : theme.badText;
    badge.dataset.stable = String(stable);
    errBox.style.color = theme.error;
    const ev = st.view.e;
    if (document.activeElement !== emaxBox) emaxBox.value = fmt(ev[1], 4);
    canvas.dataset.frame = String(model.get("frame"));
    canvas.dataset.paintMs = (performance.now() - t0).toFixed(2);
    root.dataset.paintCount = String(Number(root.dataset.paintCount || 0) + 1);
    window.__fcinvLastPaint = performance.now();
  }

  function buildSliders() {
    sliderBox.textContent = "";
    const names = model.get("names");
    const dom = decodeArray(model.get("domain"));
    const units = model.get("units");
    const vals = model.get("values");
    latest = vals.slice();
    sliders = names.map((name, i) => {
      const lo = dom[2 * i], hi = dom[2 * i + 1];
      const box = el("div", { className: "fcinv-fc-row", style: "display:flex;flex-direction:column" }, sliderBox);
      const txt = el("span", { className: "fcinv-fc-label" }, box);
      const line = el("div", { style: "display:flex;gap:4px;align-items:center" }, box);
      const s = el("input", { type: "range", min: lo, max: hi, step: sliderStep(lo, hi), value: vals[i], className: "fcinv-slider", style: "flex:1 1 auto;min-width:80px" }, line);
      const num = el("input", { type: "number", min: lo, max: hi, step: "any", className: "fcinv-fc-entry", style: "width:6.5em" }, line);
      s.dataset.index = String(i);
      s.setAttribute("aria-label", name);
      num.setAttribute("aria-label", `${name} (${units})`);
      const show = (v) => {
        txt.textContent = `${name} = ${fmt(Number(v), 4)} ${units}  ${fmtRange(lo, hi)}`;
        if (document.activeElement !== num) num.value = fmt(Number(v), 4);
        num.style.outline = "";
      };
      show(vals[i]);
      const send = (v) => {
        latest = latest.slice();
        latest[i] = clamp(v, lo, hi);
        coalescer.push(latest);
      };
      s.addEventListener("input", () => { show(s.value); send(parseFloat(s.value)); });
      num.addEventListener("change", () => {
        const v = parseFloat(num.value);
        if (!Number.isFinite(v) || v < lo || v > hi) {
          num.style.outline = `2px solid ${theme.error}`;
          num.title = `${name} must be a number in ${fmtRange(lo, hi)} ${units}`;
          return;
        }
        num.title = ""; s.value = String(v); show(v); send(v);
      });
      return { el: s, num, show };
    });
  }

  // a values change that came while this view was busy skips its focused slider; the next free
  // frame re-syncs then (and only then: not every frame of a drag)
  let skipped = false;
  function syncSliders() {
    const vals = model.get("values");
    latest = latest.length === vals.length ? latest.slice() : vals.slice();
    skipped = false;
    sliders.forEach((s, i) => {
      if (document.activeElement !== s.el || !coalescer.busy) { s.el.value = vals[i]; s.show(vals[i]); latest[i] = vals[i]; }
      else skipped = true;
    });
  }

  function syncReference() {
    const opts = model.get("reference_options") || [];
    refRow.style.display = opts.length > 1 ? "flex" : "none";
    refSel.textContent = "";
    const labels = model.get("reference_labels") || [];
    opts.forEach((o, i) => el("option", { value: o, textContent: labels[i] || o }, refSel));
    refSel.value = model.get("reference_name");
  }
  refSel.addEventListener("change", () => { model.set("reference_name", refSel.value); model.save_changes(); });

  // energy range, zoom and pan (view state: the kernel is not involved)
  const setE = (lo, hi) => { model.set("e_view", [lo, hi]); model.save_changes(); };
  emaxBox.addEventListener("change", () => {
    const v = parseFloat(emaxBox.value);
    const lo = st.erange[0];
    if (!Number.isFinite(v) || v <= lo) { emaxBox.style.outline = `2px solid ${theme.error}`; return; }
    emaxBox.style.outline = "";
    setE(lo, Math.min(v, st.erange[1]));
  });
  autoBtn.addEventListener("click", () => { const [a, b] = autoEnergy(st.freqs, st.erange); setE(a, b); });
  fullBtn.addEventListener("click", () => setE(st.erange[0], st.erange[1]));
  const unzoom = () => { st.zoomed = false; st.view = { q: st.qrange.slice(), e: eWindow().slice() }; paint(); };
  zoomBtn.addEventListener("click", unzoom);
  for (const c of [canvas, cmpCanvas, diffCanvas]) {
    const toData = (x, y) => {
      const r = panelRect(...cssSize(c));
      return [linmap(x, r.x, r.x + r.w, st.view.q[0], st.view.q[1]), linmap(y, r.y + r.h, r.y, st.view.e[0], st.view.e[1]), r];
    };
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      const [x, y] = eventPos(c, e);
      const [qv, ev] = toData(x, y);
      const f = e.deltaY > 0 ? 1.25 : 0.8;
      st.zoomed = true;
      st.view = { q: zoomWindow(st.view.q, qv, f, st.qrange, 4), e: zoomWindow(st.view.e, ev, f, st.erange, 2) };
      paint();
    }, { passive: false });
    let drag = null;
    c.addEventListener("pointerdown", (e) => { drag = { p: eventPos(c, e), view: st.view }; c.setPointerCapture(e.pointerId); });
    c.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const [x, y] = eventPos(c, e);
      const r = panelRect(...cssSize(c));
      const dq = -((x - drag.p[0]) / r.w) * (drag.view.q[1] - drag.view.q[0]);
      const de = ((y - drag.p[1]) / r.h) * (drag.view.e[1] - drag.view.e[0]);
      if (Math.abs(x - drag.p[0]) + Math.abs(y - drag.p[1]) < 3) return;
      st.zoomed = true;
      st.view = { q: panWindow(drag.view.q, dq, st.qrange), e: panWindow(drag.view.e, de, st.erange) };
      paint();
    });
    const end = () => { drag = null; };
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
    c.addEventListener("dblclick", unzoom);
  }
  const iu = () => model.get("intensity_units");
  const tips = [
    attachTooltip(root, canvas, (x, y) => hoverReadout(st, st.image, x, y, panelRect(...cssSize(canvas)), `I (${iu()})`)),
    attachTooltip(root, cmpCanvas, (x, y) => hoverReadout(st, st.compare, x, y, panelRect(...cssSize(cmpCanvas)), `I (${iu()})`)),
    attachTooltip(root, diffCanvas, (x, y) => hoverReadout(st, st.diff, x, y, panelRect(...cssSize(diffCanvas)), `ΔI (${iu()})`)),
  ];

  reset.addEventListener("click", () => model.send({ event: "reset" }));
  const onResult = () => {
    readArrays(); layout(); paint(); coalescer.done(model.get("rendered_seq"));
    // free again: a change of the values skipped while busy (e.g. from another view of the same
    // widget) reaches the focused slider now
    if (skipped && !coalescer.busy) syncSliders();
  };
  const onErr = () => { errBox.textContent = model.get("error"); };
  const onEView = () => { st.zoomed = false; st.view = { q: st.qrange.slice(), e: eWindow().slice() }; paint(); };
  const onTheme = () => { theme = themeOf(root); root.fcinvTheme = theme; root.style.colorScheme = theme.dark ? "dark" : "light"; paint(); };
  const handlers = {
    frame: onResult, compare: onResult, values: syncSliders, names: buildSliders, domain: buildSliders,
    error: onErr, e_view: onEView, reference_options: syncReference, reference_name: syncReference, title: paint,
  };
  for (const [k, f] of Object.entries(handlers)) model.on(`change:${k}`, f);
  const unwatchW = watchWidth(plots, (w) => { layout(w); paint(); });
  const unwatchT = watchTheme(onTheme);
  whenConnected(root, onTheme); // the notebook's theme variables are readable once attached
  buildSliders(); syncReference(); readArrays(); layout(); paint(); onErr();
  return () => {
    unsuppress(); unwatchW(); unwatchT(); tips.forEach((f) => f());
    for (const k of Object.keys(handlers)) model.off(`change:${k}`);
  };
}

export default { render };
