// Kernel-free frames for the FCExplorer view, without touching its code: fwdWrapWidget(base)
// returns a widget whose render() hands the view a model proxy. When the model carries the
// forward model's precomputed blocks (trait `jsforward`, see widgets/_jsforward.py), every
// slider request is answered at once in the page: forward_model.js computes image, dispersion
// and stability, the proxy serves them as `image`/`freqs`/`stable` and fires the view's
// change:frame handlers (it repaints, its coalescer is free for the next input). The kernel
// stays the ground truth: the latest values go to it on release (the slider's change event) or
// after 150 ms without input, one request in flight, latest wins;
// when its result for the latest values comes back, the proxy drops its own arrays and the
// view repaints from the kernel; the largest |ΔI| between the two is recorded on the root
// element (data-js-kernel-max-diff). Without `jsforward`, or if the page has no kernel
// (static page, dead kernel), the view behaves as before / keeps the JS frames.
// Markers for tests and benchmarks on the root element: data-js-frames (count of JS frames,
// set after the view has painted), data-source ("js" | "kernel"); root.fcinvJsFrame holds the
// latest JS frame's arrays.
import { fwdDecode, fwdEvaluate } from "./forward_model.js";

/** ms without slider input after which the latest values go to the kernel without a release */
export const FWD_IDLE_MS = 150;

/** The request/response bookkeeping between the page and the kernel (pure, node-tested). */
export function fwdKernelGate() {
  let inflight = false;
  let pending = false;
  return {
    /** a new request: true → send it now; false → it waits for the kernel's answer */
    request() { if (inflight) { pending = true; return false; } inflight = true; return true; },
    /** the kernel answered: "send" (a newer request waits, send it, hide this answer),
     *  "show" (the answer is for the latest request) */
    answer() {
      if (pending) { pending = false; inflight = true; return "send"; }
      inflight = false;
      return "show";
    },
    get busy() { return inflight; },
  };
}

function fwdSame(a, b) {
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function fwdArrayState(arr, shape) {
  return { buffer: new DataView(arr.buffer, arr.byteOffset, arr.byteLength), dtype: "float32", shape };
}

function fwdProxy(real, root) {
  const fm = fwdDecode(real.get("jsforward"));
  if (!fm) return { model: real, close() {} };
  const gate = fwdKernelGate();
  let local = null; // {image, freqs, stable, rendered_seq} served instead of the kernel's
  let nFrames = 0;
  const frameHandlers = new Set();
  const fire = () => { for (const h of frameHandlers) h(); };
  const onKernelFrame = () => {
    if (gate.answer() === "send") { real.save_changes(); return; }
    // the user has moved on since this request (values painted in the page, not yet flushed to
    // the kernel): its answer is for older values and must not replace the JS frame on screen —
    // it did, for up to FWD_IDLE_MS plus a kernel frame (session 47, a slowed kernel); the flush
    // asks for the latest values and their answer is shown
    if (wanted) return;
    const vals = real.get("values");
    if (local && vals && vals.length === fm.n_active) {
      const r = fwdEvaluate(fm, vals);
      const img = real.get("image");
      if (img && img.buffer) {
        const b = img.buffer;
        const k = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
        let d = 0;
        for (let i = 0; i < k.length && i < r.image.length; i++) d = Math.max(d, Math.abs(k[i] - r.image[i]));
        root.dataset.jsKernelMaxDiff = d.toExponential(3);
      }
    }
    local = null;
    lastSaved = (real.get("values") || []).slice();
    root.dataset.source = "kernel";
    fire();
  };
  real.on("change:frame", onKernelFrame);
  let wanted = false;
  let timer = null;
  const flush = () => {
    clearTimeout(timer);
    timer = null;
    if (!wanted) return;
    wanted = false;
    if (gate.request()) real.save_changes();
  };
  const onRelease = () => flush();
  root.addEventListener("change", onRelease, true);
  // values of the frame on screen: a save without a values change (e.g. another control) is
  // passed through, not computed
  let lastSaved = (real.get("values") || []).slice();
  const model = new Proxy(real, {
    get(target, prop) {
      if (prop === "get") {
        return (k) => (local && k in local ? local[k] : target.get(k));
      }
      if (prop === "on") {
        return (ev, cb, ctx) => (ev === "change:frame" ? frameHandlers.add(cb) : target.on(ev, cb, ctx));
      }
      if (prop === "off") {
        return (ev, cb, ctx) => {
          if (ev === "change:frame") { if (cb) frameHandlers.delete(cb); else frameHandlers.clear(); return; }
          target.off(ev, cb, ctx);
        };
      }
      if (prop === "save_changes") {
        return (...args) => {
          const vals = target.get("values");
          if (vals && vals.length === fm.n_active && !fwdSame(vals, lastSaved)) {
            lastSaved = vals.slice();
            const t0 = performance.now();
            const r = fwdEvaluate(fm, vals);
            local = {
              image: fwdArrayState(r.image, [fm.nq, fm.nE]),
              freqs: fwdArrayState(r.freqs, [fm.nq, fm.n_modes]),
              stable: r.stable,
              rendered_seq: target.get("request_seq"),
            };
            root.dataset.source = "js";
            // the latest JS frame, for tests and export: {values, image, freqs, minMev, stable}
            root.fcinvJsFrame = { values: vals.slice(), ...r };
            fire();
            nFrames += 1;
            root.dataset.jsFrames = String(nFrames);
            root.dataset.jsFrameMs = (performance.now() - t0).toFixed(2);
            // to the kernel on release (the slider's change event: pointer up, each key) or
            // after FWD_IDLE_MS without input; never during a drag
            wanted = true;
            clearTimeout(timer);
            timer = setTimeout(flush, FWD_IDLE_MS);
            return;
          }
          target.save_changes(...args);
        };
      }
      const v = Reflect.get(target, prop);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  root.dataset.jsForward = "on";
  return {
    model,
    close() { clearTimeout(timer); root.removeEventListener("change", onRelease, true); real.off("change:frame", onKernelFrame); },
  };
}

/** Wrap a widget module ({render, initialize?}) so that its view gets the JS frames. */
export function fwdWrapWidget(base) {
  const baseRender = base.render || base;
  return {
    ...base,
    render(props) {
      const { model, close } = fwdProxy(props.model, props.el);
      const cleanup = baseRender({ ...props, model });
      return () => { close(); if (typeof cleanup === "function") cleanup(); };
    },
  };
}
