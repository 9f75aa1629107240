// FCExplorer view: FC sliders + canvas I(q,E) heatmap with dispersion overlay.
// State comes from the Python _FCExplorerView; arrays arrive as {buffer, dtype, shape}.
import {
  makeLut, floatToRGBA, niceTicks, linmap, layoutQLabels, makeCoalescer,
  decodeArray, difference, sliderStep, clamp, toFloat, DIVERGING_STOPS,
} from "./common.js";

const LUT = makeLut();
const DLUT = makeLut(DIVERGING_STOPS);
const PAD = { l: 46, r: 8, t: 10, b: 30 };

function el(tag, props = {}, parent = null) {
  const e = Object.assign(document.createElement(tag), props);
  if (parent) parent.appendChild(e);
  return e;
}

function drawPanel(canvas, img, nq, nE, lut, vmin, vmax, st, title, overlay) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  const x0 = PAD.l, x1 = W - PAD.r, y0 = PAD.t, y1 = H - PAD.b;
  if (img) {
    const off = new OffscreenCanvas(nq, nE);
    const octx = off.getContext("2d");
    const id = octx.createImageData(nq, nE);
    floatToRGBA(img, nq, nE, lut, vmin, vmax, id.data);
    octx.putImageData(id, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, x0, y0, x1 - x0, y1 - y0);
  }
  const qx = st.qx, e = st.erange;
  const [qmin, qmax] = st.qrange;
  // dispersion curves
  if (overlay && st.freqs && qx) {
    const [nqf, nm] = st.freqs.shape;
    ctx.strokeStyle = "rgba(255,255,255,0.85)"; ctx.lineWidth = 1.2;
    for (let m = 0; m < nm; m++) {
      ctx.beginPath();
      let started = false;
      for (let i = 0; i < nqf; i++) {
        const f = st.freqs[i * nm + m];
        const px = linmap(qx[i], qmin, qmax, x0, x1);
        const py = linmap(f, e[0], e[1], y1, y0);
        const brk = st.breakIdx.has(i);
        if (!started || brk) { ctx.moveTo(px, py); started = true; } else ctx.lineTo(px, py);
      }
      ctx.stroke();
    }
  }
  // axes
  ctx.strokeStyle = "#333"; ctx.lineWidth = 1; ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  ctx.fillStyle = "#222"; ctx.font = "11px sans-serif";
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (const t of niceTicks(e[0], e[1], 5)) {
    const y = linmap(t, e[0], e[1], y1, y0);
    ctx.fillText(String(t), x0 - 4, y);
    ctx.beginPath(); ctx.moveTo(x0 - 3, y); ctx.lineTo(x0, y); ctx.stroke();
  }
  ctx.save(); ctx.translate(10, (y0 + y1) / 2); ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center"; ctx.fillText("E (meV)", 0, 0); ctx.restore();
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (const l of layoutQLabels(st.labels, st.breaks, qmin, qmax, x0, x1)) {
    ctx.fillText(l.text, l.px, y1 + 4);
    ctx.strokeStyle = l.isBreak ? "#fff" : "rgba(255,255,255,0.35)";
    ctx.lineWidth = l.isBreak ? 2 : 1;
    ctx.beginPath(); ctx.moveTo(l.px, y0); ctx.lineTo(l.px, y1); ctx.stroke();
  }
  if (title) { ctx.textAlign = "left"; ctx.fillStyle = "#fff"; ctx.fillText(title, x0 + 4, y0 + 3); }
}

function render({ model, el: root }) {
  root.classList.add("fcinv-fcexplorer");
  // keep slider keys (arrows, Home/End) away from JupyterLab's notebook shortcuts
  const stopKeys = (e) => { if (e.target.tagName === "INPUT") e.stopPropagation(); };
  root.addEventListener("keydown", stopKeys);
  const wrap = el("div", { style: "display:flex;gap:12px;font:12px sans-serif;align-items:flex-start" }, root);
  const side = el("div", { style: "display:flex;flex-direction:column;gap:4px;min-width:250px" }, wrap);
  const plots = el("div", { style: "display:flex;flex-direction:column;gap:6px" }, wrap);
  const badge = el("div", { className: "fcinv-stability", style: "padding:2px 6px;border-radius:3px;font-weight:bold" }, side);
  const sliderBox = el("div", { style: "display:flex;flex-direction:column;gap:2px" }, side);
  const reset = el("button", { textContent: "Reset to reference", className: "fcinv-reset" }, side);
  const errBox = el("div", { className: "fcinv-error", style: "color:#b00;max-width:260px" }, side);
  const row = el("div", { style: "display:flex;gap:6px" }, plots);
  const canvas = el("canvas", { width: 420, height: 360, className: "fcinv-heatmap" }, row);
  const cmpCanvas = el("canvas", { width: 420, height: 360, className: "fcinv-compare" }, row);
  const diffCanvas = el("canvas", { width: 420, height: 360, className: "fcinv-diff" }, row);

  const st = {};
  let sliders = [];
  // latest values the user asked for: a slider move changes only its own entry, so values of
  // untouched sliders are never rounded to a slider step
  let latest = (model.get("values") || []).slice();
  const coalescer = makeCoalescer((values, seq) => {
    model.set("values", values);
    model.set("request_seq", seq);
    model.save_changes();
  });

  function readArrays() {
    st.image = decodeArray(model.get("image"));
    st.freqs = decodeArray(model.get("freqs"));
    st.qx = decodeArray(model.get("q_x"));
    st.compare = decodeArray(model.get("compare"));
    st.erange = model.get("energy_range");
    st.qrange = model.get("q_range");
    st.labels = model.get("q_labels");
    st.breaks = model.get("q_breaks");
    // indices i where a segment break falls between i-1 and i (discontinuous path)
    st.breakIdx = new Set(model.get("break_indices"));
  }

  function paint() {
    const t0 = performance.now();
    const shape = st.image ? st.image.shape : [0, 0];
    const vmax = st.image && st.image.scale != null ? 1 / st.image.scale : 1;
    drawPanel(canvas, st.image, shape[0], shape[1], LUT, 0, vmax, st, "model", true);
    const showCmp = !!st.compare;
    cmpCanvas.style.display = diffCanvas.style.display = showCmp ? "" : "none";
    if (showCmp) {
      drawPanel(cmpCanvas, st.compare, shape[0], shape[1], LUT, 0, 1, st, "comparison", false);
      const d = difference(toFloat(st.image), st.compare);
      drawPanel(diffCanvas, d.data, shape[0], shape[1], DLUT, d.vmin, d.vmax, st, "model − comparison", false);
    }
    const stable = model.get("stable");
    badge.textContent = stable ? "stable" : "UNSTABLE (imaginary modes)";
    badge.style.background = stable ? "#d7f0d7" : "#f6c6c6";
    badge.dataset.stable = String(stable);
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
      const lab = el("label", { style: "display:flex;flex-direction:column" }, sliderBox);
      const txt = el("span", {}, lab);
      const s = el("input", { type: "range", min: lo, max: hi, step: sliderStep(lo, hi), value: vals[i], className: "fcinv-slider" }, lab);
      s.dataset.index = String(i);
      s.setAttribute("aria-label", name);
      const show = (v) => { txt.textContent = `${name} = ${Number(v).toFixed(3)} ${units}  [${lo.toFixed(2)}, ${hi.toFixed(2)}]`; };
      show(vals[i]);
      s.addEventListener("input", () => {
        latest = latest.slice();
        latest[i] = clamp(parseFloat(s.value), lo, hi);
        show(s.value);
        coalescer.push(latest);
      });
      return { el: s, show };
    });
  }

  function syncSliders() {
    const vals = model.get("values");
    latest = latest.length === vals.length ? latest.slice() : vals.slice();
    sliders.forEach((s, i) => {
      if (document.activeElement !== s.el || !coalescer.busy) { s.el.value = vals[i]; s.show(vals[i]); latest[i] = vals[i]; }
    });
  }

  reset.addEventListener("click", () => model.send({ event: "reset" }));
  const onResult = () => { readArrays(); paint(); coalescer.done(model.get("rendered_seq")); };
  const onErr = () => { errBox.textContent = model.get("error"); };
  model.on("change:frame", onResult);
  model.on("change:compare", onResult);
  model.on("change:values", syncSliders);
  model.on("change:names", buildSliders);
  model.on("change:domain", buildSliders);
  model.on("change:error", onErr);
  buildSliders(); readArrays(); paint(); onErr();
  return () => {
    root.removeEventListener("keydown", stopKeys);
    for (const ev of ["frame", "compare", "values", "names", "domain", "error"]) model.off(`change:${ev}`);
  };
}

export default { render };
