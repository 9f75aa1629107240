// NoiseGridExplorer view: 5x5 (B, P) grid of R² cells (click or arrow keys) -> example noisy
// spectrum beside the clean one, every FC's R²; colour bars, hover read-outs, theme, PNG.
import {
  makeLut, floatToRGBA, cellAt, decodeArray, fmt, colorLimits, sizeCanvas, cssSize, panelWidth,
  watchWidth, watchTheme, themeOf, eventPos, drawColorbar, gridStep, attachTooltip, pngButton,
  suppressShortcuts, readableOn, DIVERGING_STOPS, whenConnected, el, initRoot, compactCount,
} from "./common.js";

const LUT = makeLut();
export const GPAD = { l: 50, r: 70, t: 10, b: 40 };

/**
 * Colour map of R²: viridis on [0, 1]; negative R² (worse than predicting the mean) in a
 * separate red ramp that deepens as R² falls (pale red just below 0, deepest red at R2_MIN
 * and below), so it can never be mistaken for a low positive value nor read as milder
 * the worse it gets. Returns a 256-entry LUT over [R2_MIN, 1] with the red part below 0.
 */
export const R2_MIN = -1;
/** Colour of an undefined R² (NaN: a constant FC in the test set): a neutral grey, hatched in the grid. */
export const R2_NAN_RGB = [150, 150, 150];
const R2LUT = makeR2Lut();
function makeR2Lut() {
  const n = 256, lut = new Uint8Array(n * 3), vir = makeLut(), red = makeLut(DIVERGING_STOPS);
  for (let i = 0; i < n; i++) {
    const v = R2_MIN + (i / (n - 1)) * (1 - R2_MIN);
    let c;
    if (v < 0) { const k = Math.round(255 * (0.6 + 0.4 * (v / R2_MIN))); c = [red[3 * k], red[3 * k + 1], red[3 * k + 2]]; }
    else { const k = Math.round(v * 255); c = [vir[3 * k], vir[3 * k + 1], vir[3 * k + 2]]; }
    lut.set(c, 3 * i);
  }
  return lut;
}

/** RGB of an R² value (negative values red, clamped at R2_MIN; NaN grey). */
export function r2Color(v) {
  if (typeof v !== "number" || Number.isNaN(v)) return R2_NAN_RGB.slice();
  const t = Math.max(R2_MIN, Math.min(1, v));
  const k = Math.round(((t - R2_MIN) / (1 - R2_MIN)) * 255);
  return [R2LUT[3 * k], R2LUT[3 * k + 1], R2LUT[3 * k + 2]];
}

/** Diagonal hatch over a cell (an undefined R²), so grey reads as "no value" in any theme. */
function hatch(ctx, x, y, w, h) {
  ctx.save();
  ctx.beginPath(); ctx.rect(x, y, w, h); ctx.clip();
  ctx.strokeStyle = "rgba(0,0,0,0.35)"; ctx.lineWidth = 1;
  ctx.beginPath();
  for (let s = -h; s < w; s += 6) { ctx.moveTo(x + s, y + h); ctx.lineTo(x + s + h, y); }
  ctx.stroke();
  ctx.restore();
}

/** Hover text of grid cell i: B, P, the model's R² for the FC, SNR of the example. */
export function cellReadout(i, r2, b, p, snr, fcName, modelName) {
  if (i < 0) return "";
  const nP = p.length;
  const ib = Math.floor(i / nP), ip = i % nP;
  const s = snr ? `\nexample SNR ${fmt(snr[i], 3)}` : "";
  return `B = ${fmt(b[ib], 3)}, P = ${fmt(p[ip], 3)} counts\n${fcName}: R² = ${fmt(r2[i], 3)} (${modelName})${s}`;
}


const IPAD = { l: 4, r: 58, t: 16, b: 4 };
function drawImage(canvas, W, H, img, title, theme) {
  const ctx = sizeCanvas(canvas, W, H);
  ctx.fillStyle = theme.bg; ctx.fillRect(0, 0, W, H);
  if (!img) return;
  const [nq, nE] = img.shape;
  const [vmin, vmax] = colorLimits(img);
  const off = new OffscreenCanvas(nq, nE);
  const id = off.getContext("2d").createImageData(nq, nE);
  floatToRGBA(img, nq, nE, LUT, vmin, vmax, id.data);
  off.getContext("2d").putImageData(id, 0, 0);
  ctx.imageSmoothingEnabled = false;
  const w = W - IPAD.l - IPAD.r, h = H - IPAD.t - IPAD.b;
  ctx.drawImage(off, IPAD.l, IPAD.t, w, h);
  ctx.fillStyle = theme.fg; ctx.font = `11px ${theme.font}`; ctx.textBaseline = "top"; ctx.textAlign = "left";
  ctx.fillText(title, IPAD.l, 1);
  drawColorbar(ctx, { x: IPAD.l + w + 6, y: IPAD.t, w: 9, h }, LUT, vmin, vmax, "I (scaled)", theme, { nTicks: 4 });
}

function render({ model, el: root }) {
  const unsuppress = initRoot(root, "fcinv-noise-grid");
  const wrap = el("div", { style: "display:flex;flex-wrap:wrap;gap:12px;font-size:12px;max-width:100%" }, root);
  const left = el("div", { style: "max-width:100%" }, wrap);
  const ctl = el("div", { style: "display:flex;flex-wrap:wrap;gap:6px;margin-bottom:4px" }, left);
  const modelSel = el("select", { className: "fcinv-model" }, ctl);
  const fcSel = el("select", { className: "fcinv-fc" }, ctl);
  const grid = el("canvas", { className: "fcinv-grid", tabIndex: 0 }, left);
  grid.setAttribute("aria-label", "noise grid: arrow keys move between cells");
  const right = el("div", { style: "display:flex;flex-direction:column;gap:4px;max-width:100%" }, wrap);
  const info = el("div", { className: "fcinv-cell-info" }, right);
  const imgs = el("div", { style: "display:flex;flex-wrap:wrap;gap:6px" }, right);
  const clean = el("canvas", { className: "fcinv-clean" }, imgs);
  const noisy = el("canvas", { className: "fcinv-noisy" }, imgs);
  const table = el("div", { className: "fcinv-cell-r2" }, right);
  const errBox = el("div", { className: "fcinv-error" }, left);
  pngButton(ctl, root, "noise_grid.png", () => theme.bg);

  let theme = themeOf(root);
  root.fcinvTheme = theme;
  const size = { gw: 380, gh: 350, iw: 240 };
  function layout(width) {
    const w = width || root.getBoundingClientRect().width || 800;
    size.gw = Math.max(220, Math.min(400, w)); size.gh = Math.round(Math.min(350, size.gw * 0.9));
    const rest = w - size.gw - 12 >= 2 * 200 + 6 ? w - size.gw - 12 : w; // images beside or below the grid
    size.iw = panelWidth(rest, 2, { minW: 180, maxW: 260, gap: 6 }).w;
  }
  const gridRect = () => ({ x: GPAD.l, y: GPAD.t, w: size.gw - GPAD.l - GPAD.r, h: size.gh - GPAD.t - GPAD.b });

  function fillSelect(sel, items, value) {
    sel.textContent = "";
    items.forEach((t, i) => el("option", { value: String(i), textContent: t }, sel));
    sel.value = String(value);
  }
  const syncControls = () => {
    fillSelect(modelSel, model.get("models"), model.get("models").indexOf(model.get("model")));
    fillSelect(fcSel, model.get("fc_names"), model.get("fc"));
  };
  modelSel.addEventListener("change", () => { model.set("model", model.get("models")[Number(modelSel.value)]); model.save_changes(); });
  fcSel.addEventListener("change", () => { model.set("fc", Number(fcSel.value)); model.save_changes(); });

  function paintGrid() {
    const r2 = decodeArray(model.get("r2_grid"));
    const ctx = sizeCanvas(grid, size.gw, size.gh);
    ctx.fillStyle = theme.bg; ctx.fillRect(0, 0, size.gw, size.gh);
    if (!r2) return;
    const G = gridRect();
    const [rows, cols] = r2.shape;
    const cw = G.w / cols, ch = G.h / rows;
    const sel = model.get("selected");
    ctx.font = `12px ${theme.font}`; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
      const v = r2[r * cols + c];
      const rgb = r2Color(v);
      ctx.fillStyle = `rgb(${rgb.join(",")})`;
      const x = G.x + c * cw, y = G.y + r * ch;
      ctx.fillRect(x, y, cw - 1, ch - 1);
      if (Number.isNaN(v)) hatch(ctx, x, y, cw - 1, ch - 1);
      ctx.fillStyle = readableOn(rgb);
      ctx.fillText(Number.isNaN(v) ? "–" : v.toFixed(2), x + cw / 2, y + ch / 2);
      if (r * cols + c === sel) { ctx.strokeStyle = theme.selection; ctx.lineWidth = 3; ctx.strokeRect(x + 1.5, y + 1.5, cw - 4, ch - 4); }
    }
    ctx.fillStyle = theme.fg;
    const b = model.get("b_levels"), p = model.get("p_levels");
    b.forEach((v, r) => { ctx.textAlign = "right"; ctx.fillText(fmt(v, 3), G.x - 4, G.y + (r + 0.5) * ch); });
    // P labels as "3k", "10k" where the full numbers would run together in a narrow grid
    const pLab = p.map((v) => fmt(v, 3));
    const pShown = pLab.every((t) => ctx.measureText(t).width <= cw - 4) ? pLab : p.map(compactCount);
    p.forEach((v, c) => { ctx.textAlign = "center"; ctx.fillText(pShown[c], G.x + (c + 0.5) * cw, G.y + G.h + 10); });
    ctx.fillText("P (counts)", G.x + G.w / 2, G.y + G.h + 26);
    ctx.save(); ctx.translate(10, G.y + G.h / 2); ctx.rotate(-Math.PI / 2); ctx.fillText("B (background)", 0, 0); ctx.restore();
    // colour bar of R²: negative values in red below the 0 mark
    let lo = 0, anyNaN = false;
    for (const v of r2) { if (v < lo) lo = v; if (Number.isNaN(v)) anyNaN = true; }
    lo = Math.max(R2_MIN, lo);
    const k0 = Math.round(((lo - R2_MIN) / (1 - R2_MIN)) * 255);
    drawColorbar(ctx, { x: G.x + G.w + 10, y: G.y, w: 10, h: G.h }, R2LUT.subarray(3 * k0), lo, 1,
      `R² (${model.get("fc_names")[model.get("fc")] || ""})`, theme, { mark: lo < 0 ? 0 : null });
    if (anyNaN) {  // a legend entry for the grey cells: R² undefined (the FC is constant in the test set)
      const sx = G.x + G.w + 10, sy = G.y + G.h + 8;
      ctx.fillStyle = `rgb(${R2_NAN_RGB.join(",")})`; ctx.fillRect(sx, sy, 10, 10); hatch(ctx, sx, sy, 10, 10);
      ctx.fillStyle = theme.fg; ctx.textAlign = "left"; ctx.fillText("n/a", sx + 14, sy + 5);
    }
    grid.dataset.frame = String(Number(grid.dataset.frame || 0) + 1);
  }

  function paintCell() {
    const sel = model.get("selected");
    const ih = Math.round(size.iw * 1.0);
    if (sel < 0) {
      info.textContent = "click a cell (or focus the grid and use the arrow keys)";
      drawImage(clean, size.iw, ih, null, "", theme); drawImage(noisy, size.iw, ih, null, "", theme); table.textContent = ""; return;
    }
    drawImage(clean, size.iw, ih, decodeArray(model.get("clean")), "clean", theme);
    drawImage(noisy, size.iw, ih, decodeArray(model.get("noisy")), `noisy, SNR ${fmt(model.get("snr"), 3)}`, theme);
    const nP = model.get("p_levels").length;
    info.textContent = `cell B=${fmt(model.get("b_levels")[Math.floor(sel / nP)], 3)}, P=${fmt(model.get("p_levels")[sel % nP], 3)} — ${model.get("model")}`;
    const r2 = decodeArray(model.get("cell_r2"));
    table.textContent = "";
    model.get("fc_names").forEach((n, i) => el("div", { textContent: `${n}: R² = ${r2 ? fmt(r2[i], 3) : "–"}` }, table));
  }
  const select = (i) => { if (i >= 0 && i !== model.get("selected")) { model.set("selected", i); model.save_changes(); } };
  const cellUnder = (e) => {
    const r2 = decodeArray(model.get("r2_grid"));
    if (!r2) return -1;
    const [x, y] = eventPos(grid, e);
    return cellAt(x, y, r2.shape[0], r2.shape[1], gridRect());
  };
  grid.addEventListener("click", (e) => select(cellUnder(e)));
  grid.fcinvKeys = (e) => {
    const r2 = decodeArray(model.get("r2_grid"));
    if (!r2 || !["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End"].includes(e.key)) return;
    e.preventDefault();
    select(gridStep(model.get("selected"), r2.shape[0], r2.shape[1], e.key));
  };
  const tip = attachTooltip(root, grid, (x, y) => {
    const r2 = decodeArray(model.get("r2_grid"));
    if (!r2) return "";
    const i = cellAt(x, y, r2.shape[0], r2.shape[1], gridRect());
    const snr = decodeArray(model.get("snr_grid"));
    return cellReadout(i, r2, model.get("b_levels"), model.get("p_levels"), snr, model.get("fc_names")[model.get("fc")], model.get("model"));
  });
  const onErr = () => { errBox.textContent = model.get("error") || ""; errBox.style.color = theme.error; };
  const paintAll = () => { paintGrid(); paintCell(); onErr(); };
  const onGrid = () => paintGrid();
  // model, fc and selected also come back from the kernel when it refuses a value (RollsBack)
  const handlers = {
    r2_grid: onGrid, cell_frame: paintAll, models: syncControls, fc_names: syncControls,
    model: syncControls, fc: syncControls, selected: onGrid, error: onErr,
  };
  for (const [k, f] of Object.entries(handlers)) model.on(`change:${k}`, f);
  const unW = watchWidth(root, (w) => { layout(w); paintAll(); });
  const onTheme = () => { theme = themeOf(root); root.fcinvTheme = theme; root.style.colorScheme = theme.dark ? "dark" : "light"; paintAll(); };
  const unT = watchTheme(onTheme);
  whenConnected(root, onTheme); // the notebook's theme variables are readable once attached
  root.style.colorScheme = theme.dark ? "dark" : "light";
  syncControls(); layout(); paintAll();
  return () => {
    unsuppress(); unW(); unT(); tip();
    for (const k of Object.keys(handlers)) model.off(`change:${k}`);
  };
}

export default { render };
