// NoiseGridExplorer view: 5x5 (B, P) grid of R² cells; click -> example noisy spectrum.
import { makeLut, floatToRGBA, cellAt, decodeArray } from "./common.js";

const LUT = makeLut();
const GRID = { x: 50, y: 10, w: 300, h: 300 };

function el(tag, props = {}, parent = null) {
  const e = Object.assign(document.createElement(tag), props);
  if (parent) parent.appendChild(e);
  return e;
}

function drawImage(canvas, img, title) {
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!img) return;
  const [nq, nE] = img.shape;
  const off = new OffscreenCanvas(nq, nE);
  const id = off.getContext("2d").createImageData(nq, nE);
  floatToRGBA(img, nq, nE, LUT, 0, 1, id.data);
  off.getContext("2d").putImageData(id, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 16, canvas.width, canvas.height - 16);
  ctx.fillStyle = "#222"; ctx.font = "11px sans-serif"; ctx.textBaseline = "top";
  ctx.fillText(title, 2, 1);
}

function render({ model, el: root }) {
  const stopKeys = (e) => { if (e.target.tagName === "SELECT") e.stopPropagation(); };
  root.addEventListener("keydown", stopKeys);
  const wrap = el("div", { style: "display:flex;gap:12px;font:12px sans-serif" }, root);
  const left = el("div", {}, wrap);
  const ctl = el("div", { style: "display:flex;gap:6px;margin-bottom:4px" }, left);
  const modelSel = el("select", { className: "fcinv-model" }, ctl);
  const fcSel = el("select", { className: "fcinv-fc" }, ctl);
  const grid = el("canvas", { width: 360, height: 340, className: "fcinv-grid" }, left);
  const right = el("div", { style: "display:flex;flex-direction:column;gap:4px" }, wrap);
  const info = el("div", { className: "fcinv-cell-info" }, right);
  const imgs = el("div", { style: "display:flex;gap:6px" }, right);
  const clean = el("canvas", { width: 220, height: 236, className: "fcinv-clean" }, imgs);
  const noisy = el("canvas", { width: 220, height: 236, className: "fcinv-noisy" }, imgs);
  const table = el("div", { className: "fcinv-cell-r2" }, right);

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
    const ctx = grid.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, grid.width, grid.height);
    if (!r2) return;
    const [rows, cols] = r2.shape;
    const cw = GRID.w / cols, ch = GRID.h / rows;
    const sel = model.get("selected");
    ctx.font = "12px sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
      const v = r2[r * cols + c];
      const k = Math.max(0, Math.min(255, Math.round(v * 255)));
      ctx.fillStyle = `rgb(${LUT[3 * k]},${LUT[3 * k + 1]},${LUT[3 * k + 2]})`;
      const x = GRID.x + c * cw, y = GRID.y + r * ch;
      ctx.fillRect(x, y, cw - 1, ch - 1);
      ctx.fillStyle = v > 0.6 ? "#000" : "#fff";
      ctx.fillText(v.toFixed(2), x + cw / 2, y + ch / 2);
      if (r * cols + c === sel) { ctx.strokeStyle = "#f00"; ctx.lineWidth = 3; ctx.strokeRect(x + 1.5, y + 1.5, cw - 4, ch - 4); }
    }
    ctx.fillStyle = "#222";
    const b = model.get("b_levels"), p = model.get("p_levels");
    b.forEach((v, r) => { ctx.textAlign = "right"; ctx.fillText(String(v), GRID.x - 4, GRID.y + (r + 0.5) * ch); });
    p.forEach((v, c) => { ctx.textAlign = "center"; ctx.fillText(String(v), GRID.x + (c + 0.5) * cw, GRID.y + GRID.h + 10); });
    ctx.fillText("P (counts)", GRID.x + GRID.w / 2, GRID.y + GRID.h + 24);
    ctx.save(); ctx.translate(10, GRID.y + GRID.h / 2); ctx.rotate(-Math.PI / 2); ctx.fillText("B", 0, 0); ctx.restore();
    grid.dataset.frame = String(Number(grid.dataset.frame || 0) + 1);
  }

  function paintCell() {
    const sel = model.get("selected");
    if (sel < 0) { info.textContent = "click a cell"; drawImage(clean, null); drawImage(noisy, null); table.textContent = ""; return; }
    drawImage(clean, decodeArray(model.get("clean")), "clean");
    drawImage(noisy, decodeArray(model.get("noisy")), `noisy, SNR ${model.get("snr").toFixed(2)}`);
    const nP = model.get("p_levels").length;
    info.textContent = `cell B=${model.get("b_levels")[Math.floor(sel / nP)]}, P=${model.get("p_levels")[sel % nP]} — ${model.get("model")}`;
    const r2 = decodeArray(model.get("cell_r2"));
    table.textContent = "";
    model.get("fc_names").forEach((n, i) => el("div", { textContent: `${n}: R² = ${r2 ? r2[i].toFixed(3) : "–"}` }, table));
  }

  grid.addEventListener("click", (e) => {
    const rect = grid.getBoundingClientRect();
    const r2 = decodeArray(model.get("r2_grid"));
    const [rows, cols] = r2.shape;
    const i = cellAt(e.clientX - rect.left, e.clientY - rect.top, rows, cols, GRID);
    if (i >= 0) { model.set("selected", i); model.save_changes(); }
  });
  const onGrid = () => paintGrid();
  const onCell = () => { paintGrid(); paintCell(); };
  model.on("change:r2_grid", onGrid);
  model.on("change:cell_frame", onCell);
  model.on("change:models", syncControls);
  model.on("change:fc_names", syncControls);
  syncControls(); paintGrid(); paintCell();
  return () => {
    root.removeEventListener("keydown", stopKeys);
    for (const ev of ["r2_grid", "cell_frame", "models", "fc_names"]) model.off(`change:${ev}`);
  };
}

export default { render };
