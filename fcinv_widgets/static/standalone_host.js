// In-page host of a widget on a standalone HTML page (FCExplorer.save_html): no kernel, no
// widget manager. It rebuilds the widget's synced state (binary buffers from base64 at their
// paths, as ipywidgets splits them out), serves it through the anywidget model interface
// (get/set/on/off/save_changes/send) and plays the kernel with the JavaScript forward model
// (forward_model.js, inlined before this file): a saved `values` change gets its image,
// dispersion and stability, and the "reset" message or a switch of the reference (among those
// the page was written with) moves the sliders to the reference.
// Inlined by widgets/_jsforward.py after the widget module; __fcinvBoot(widget, el, data).

function __fcinvB64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function __fcinvBoot(widget, el, data) {
  const state = data.state;
  data.buffer_paths.forEach((path, i) => {
    let obj = state;
    for (const k of path.slice(0, -1)) obj = obj[k];
    const bytes = __fcinvB64(data.buffers[i]);
    obj[path[path.length - 1]] = new DataView(bytes.buffer);
  });
  const listeners = new Map();
  const emit = (ev) => { for (const cb of [...(listeners.get(ev) || [])]) cb(); };
  const fm = typeof fwdDecode === "function" ? fwdDecode(state.jsforward) : null;
  let dirty = new Set();
  const kernel = () => {
    // what the Python FCExplorer does on a values change, computed here
    if (!fm) return;
    const r = fwdEvaluate(fm, state.values);
    state.image = { buffer: new DataView(r.image.buffer), dtype: "float32", shape: [fm.nq, fm.nE] };
    state.freqs = { buffer: new DataView(r.freqs.buffer), dtype: "float32", shape: [fm.nq, fm.n_modes] };
    state.stable = r.stable;
    state.error = "";
    state.rendered_seq = state.request_seq;
    state.frame += 1;
    emit("change:frame");
  };
  // the references the page can switch between ({name: slider FCs}, written by save_html)
  const refs = data.references || {};
  const toReference = () => {
    const dom = state.domain;
    const d = new Float64Array(dom.buffer.buffer, dom.buffer.byteOffset, dom.buffer.byteLength / 8);
    let r = refs[state.reference_name];
    if (!r) {
      const ref = state.reference;
      r = new Float64Array(ref.buffer.buffer, ref.buffer.byteOffset, ref.buffer.byteLength / 8);
    }
    state.values = Array.from(r, (v, i) => Math.min(Math.max(v, d[2 * i]), d[2 * i + 1]));
    emit("change:values");
    kernel();
  };
  const model = {
    get: (k) => state[k],
    set(k, v) { state[k] = v; dirty.add(k); emit(`change:${k}`); },
    save_changes() {
      const changed = dirty;
      dirty = new Set();
      if (changed.has("reference_name") && refs[state.reference_name]) setTimeout(toReference, 0); // as the kernel does
      else if (changed.has("values")) setTimeout(kernel, 0);
    },
    send(content) {
      if (content && content.event === "reset") toReference();
    },
    on(ev, cb) { if (!listeners.has(ev)) listeners.set(ev, new Set()); listeners.get(ev).add(cb); },
    off(ev, cb) {
      if (!ev) { listeners.clear(); return; }
      if (cb) listeners.get(ev)?.delete(cb); else listeners.delete(ev);
    },
    widget_manager: null,
  };
  // inside static_view's sandboxed iframe: the notebook sends its colours (the page cannot read
  // them); the body takes them and the widget's theme watcher follows (body style changes)
  window.addEventListener("message", (e) => {
    const t = e.data && e.data.fcinvTheme;
    if (!t || typeof t !== "object") return;
    if (typeof t.bg === "string" && t.bg.length < 64) document.body.style.background = t.bg;
    if (typeof t.fg === "string" && t.fg.length < 64) document.body.style.color = t.fg;
  });
  if (typeof widget.initialize === "function") widget.initialize({ model });
  el.dataset.standalone = "true";
  return widget.render({ model, el });
}
