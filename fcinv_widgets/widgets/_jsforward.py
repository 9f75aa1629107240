"""The kernel-free FCExplorer: the forward model's precomputed blocks, shipped to the browser.

After the symmetry block decomposition (:mod:`fcinv_widgets.forward`), an I(q, E) image is
``[1, θ] @ W`` (packed entries of small Hermitian blocks), closed-form eigenvalues,
energies in meV, Gaussians in energy and a min-max scaling. :func:`forward_payload` exports
exactly the arrays the fused CPU kernel (:mod:`fcinv_widgets._cpu_kernel`) evaluates —
``W`` and the block layout of the path and of the stability mesh, the Gaussian profile
table (constant σ) or the σ(E) table (energy-dependent resolution) — once, as binary
buffers. ``fcinv_widgets/static/forward_model.js`` evaluates them in JavaScript on every
slider frame; the kernel stays the ground truth and recomputes when a slider is released.

:func:`save_html` writes a standalone page (the widget's ESM and its state inlined, no
kernel, no CDN) where the sliders still move the spectrum.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import numpy as np

from ..errors import FcinvError
from ._assets import load_esm, static_text
from ._traits import array_to_json

#: bump when the layout of the payload changes (forward_model.js checks it)
PAYLOAD_VERSION = 1
#: largest block (modes) evaluated in JavaScript; larger ones keep the widget on the kernel path
MAX_JS_BLOCK = 12

_IMPORT_FWD = re.compile(r'import\s*\{[^}]*\}\s*from\s*"\./forward_model\.js";\s*', re.DOTALL)


def wrap_esm(base: str) -> str:
    """The FCExplorer view module ``base`` (``load_esm("fc_explorer.js")``) wrapped for
    kernel-free frames, as one self-contained ESM.

    ``forward_model.js`` + the view with its default export renamed + ``jsforward_wrap.js``,
    whose ``fwdWrapWidget(view)`` becomes the default export. The view's own code is
    unchanged: without a ``jsforward`` payload it behaves exactly as before.
    """
    if base.count("export default") != 1:
        raise FcinvError("the widget module must have exactly one default export")
    wrap = _IMPORT_FWD.sub("", static_text("jsforward_wrap.js"), count=1)
    return (
        static_text("forward_model.js")
        + "\n"
        + base.replace("export default", "const __fcinvBase =", 1)
        + "\n"
        + wrap
        + "\nexport default fwdWrapWidget(__fcinvBase);\n"
    )


def forward_payload(fm) -> dict | None:
    """Everything ``forward_model.js`` needs to evaluate ``fm`` without a kernel, or None.

    ``fm`` is a :class:`fcinv_widgets.forward.ForwardModel` (any backend: the arrays are the
    CPU layout built at construction). Other forward models (e.g. the tests' fake) have
    no block layout, and a model with blocks larger than ``MAX_JS_BLOCK`` modes (a big cell at
    low-symmetry q) would be slow in the page: None, and the widget keeps the kernel path.

    Units: ``W`` rows are packed block entries in eV/Å²/amu per unit θ (θ in eV/Å²);
    ``to_mev`` turns √eigenvalue into meV; ``e0``/``de`` are the first energy-bin centre and
    the bin width (meV); ``sigma`` is σ (meV) tabulated from ``sigma_e0`` in steps of
    ``sigma_de`` (one entry = constant σ, then ``lut`` holds the kernel's Gaussian profile
    over the sub-bin offset, per meV); ``unstable_below_mev`` is the stability threshold.
    """
    layout = getattr(fm, "_cpu", None)
    if layout is None or not hasattr(fm, "sigma_table") or not hasattr(fm, "grid"):
        return None
    from .._cpu_kernel import gaussian_luts
    from ..forward import UNSTABLE_BELOW_MEV
    from ..units import SQRT_EIG_TO_MEV

    nq, nE = (int(n) for n in fm.grid.shape)
    sig = np.asarray(fm.sigma_table, dtype=np.float64)
    if len(sig) == 1:
        lut = gaussian_luts(float(sig[0]), float(fm.grid.e.step), float(fm.cutoff))[0]
    else:
        lut = np.zeros((0, 0))
    W = np.ascontiguousarray(layout["W"], dtype=np.float64)
    blk_m = layout["m"]
    if np.any(blk_m > MAX_JS_BLOCK):
        return None  # Jacobi on (2m)² per block and frame would be too slow: kernel path
    return {
        "version": PAYLOAD_VERSION,
        "n_active": int(W.shape[1] - 1),
        "nq": nq,
        "nE": nE,
        "n_modes": int(fm.path.n_modes),
        "e0": float(fm.grid.e.centers[0]),
        "de": float(fm.grid.e.step),
        "to_mev": float(SQRT_EIG_TO_MEV),
        "cutoff": float(fm.cutoff),
        "sigma_e0": float(fm.sigma_e0),
        "sigma_de": float(fm.sigma_de),
        "unstable_below_mev": float(UNSTABLE_BELOW_MEV),
        "W": W,
        "blk_m": blk_m.astype(np.int32),
        "blk_off": layout["off"].astype(np.int32),
        "blk_k": layout["k"].astype(np.int32),
        "blk_q": layout["q"].astype(np.int32),
        "blk_w": np.asarray(layout["w"], dtype=np.float64),
        "sigma": sig,
        "lut": np.ascontiguousarray(lut, dtype=np.float64),
    }


def payload_to_json(value, widget):
    """Synced-trait serializer: arrays → {buffer, dtype, shape} (binary), scalars as JSON."""
    if value is None:
        return None
    return {k: (array_to_json(v, widget) if isinstance(v, np.ndarray) else v) for k, v in value.items()}


def payload_from_json(value, widget):
    """The browser never changes the payload; keep what Python holds."""
    return getattr(widget, "jsforward", None)


payload_serialization = {"to_json": payload_to_json, "from_json": payload_from_json}


def payload_to_plain(payload: dict) -> dict:
    """The payload with every array as {b64, dtype, shape} (a JSON file: node tests, pages)."""
    out = {}
    for k, v in payload.items():
        if isinstance(v, np.ndarray):
            a = np.ascontiguousarray(v)
            out[k] = {"b64": base64.b64encode(a.tobytes()).decode("ascii"), "dtype": a.dtype.name, "shape": list(a.shape)}
        else:
            out[k] = v
    return out


# ---------------------------------------------------------------------------------- static page
def _widget_state(widget) -> tuple[dict, list, list]:
    """The widget's synced state with its binary buffers split out (as ipywidgets sends it)."""
    from ipywidgets.widgets.widget import _remove_buffers

    state = widget.get_state()
    state, paths, buffers = _remove_buffers(state)
    return state, paths, [base64.b64encode(bytes(b)).decode("ascii") for b in buffers]


def _script_json(obj) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(obj, separators=(",", ":")).replace("</", "<\\/")


def standalone_html(widget, title: str = "FCExplorer", references: dict | None = None) -> str:
    """A self-contained HTML page rendering ``widget`` (an FCExplorerView) with no kernel.

    The widget's own ESM runs against a small in-page model (get/set/on/save_changes/send);
    its state and binary buffers are inlined as JSON + base64. Nothing is fetched: the page
    works from file:// and offline. ``references`` ({name: slider FCs in eV/Å²}, from
    ``FCExplorer._reference_table``) lets the page's reference switch move the sliders as the
    kernel does; without it the switch is left off the page (it changed nothing there before
    session 47 while saying "first-principles").
    """
    esm = widget._esm if isinstance(widget._esm, str) else wrap_esm(load_esm("fc_explorer.js"))
    if esm.count("export default") != 1:
        raise FcinvError("the widget module needs exactly one default export to render")
    esm = esm.replace("export default", "const __fcinvWidget =", 1)
    css = widget._css if isinstance(getattr(widget, "_css", None), str) else ""
    state, paths, buffers = _widget_state(widget)
    opts, labels = list(state.get("reference_options") or []), list(state.get("reference_labels") or [])
    keep = [i for i, o in enumerate(opts) if o in (references or {})]
    if len(keep) < 2:  # nothing to switch between in the page: no switch
        keep = []
    refs = {opts[i]: [float(v) for v in references[opts[i]]] for i in keep}  # type: ignore[index]
    state["reference_options"] = [opts[i] for i in keep]
    state["reference_labels"] = [labels[i] if i < len(labels) else opts[i] for i in keep]
    data = {"state": state, "buffer_paths": paths, "buffers": buffers, "references": refs}
    host = static_text("standalone_host.js")
    module = f"{esm}\n{host}\n__fcinvBoot(__fcinvWidget, document.getElementById('fcinv-root'), JSON.parse(document.getElementById('fcinv-state').textContent));\n"
    module = module.replace("</script", "<\\/script")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        "<style>body{font-family:sans-serif;margin:16px;background:#fff;color:#222}"
        "@media (prefers-color-scheme: dark){body{background:#111;color:#e6e6e6}}" + css.replace("</", "<\\/") + "</style>\n"
        "</head>\n<body>\n"
        f'<div id="fcinv-root" class="fcinv-standalone"></div>\n'
        '<p style="font-size:11px;color:#666">Standalone page written by fcinv_widgets '
        "(FCExplorer.save_html): spectra are computed in this page by the JavaScript forward model.</p>\n"
        f'<script type="application/json" id="fcinv-state">{_script_json(data)}</script>\n'
        f'<script type="module">\n{module}</script>\n</body>\n</html>\n'
    )


def save_html(widget, path, title: str = "FCExplorer", references: dict | None = None) -> Path:
    """Write :func:`standalone_html` of ``widget`` to ``path``; returns the path."""
    if getattr(widget, "jsforward", None) is None:
        raise FcinvError(
            "save_html needs the JavaScript forward model: build FCExplorer from a Material or a ForwardModel "
            "(a forward model without precomputed blocks cannot run without a kernel)"
        )
    if not str(path).strip():
        raise FcinvError("save_html: no file name given (e.g. save_html('ge.html'))")
    p = Path(path)
    if p.is_dir():
        raise FcinvError(f"save_html: {p} is a directory, give a file name such as ge.html")
    try:
        p.write_text(standalone_html(widget, title, references), encoding="utf-8")
    except OSError as exc:
        raise FcinvError(f"cannot write {p}: {exc.strerror or exc}") from exc
    return p


def static_iframe(widget, height_px: int = 460, title: str = "FCExplorer", references: dict | None = None):
    """An ``IPython.display.HTML`` iframe holding :func:`standalone_html` of ``widget``.

    Displayed in a notebook cell it survives export: nbconvert's HTML keeps the iframe, whose
    sliders move the spectrum offline and without a kernel (the widget view itself needs the
    widget manager, which nbconvert's page loads from a CDN). About 0.4 MB per Ge page.
    """
    from IPython.display import HTML

    if getattr(widget, "jsforward", None) is None:
        raise FcinvError("static_view needs the JavaScript forward model: build FCExplorer from a Material or a ForwardModel")
    if not (isinstance(height_px, int) and 100 <= height_px <= 5000):
        raise FcinvError(f"height_px must be an integer number of pixels in [100, 5000], got {height_px!r}")
    page = html.escape(standalone_html(widget, title, references), quote=True)
    # in a <div>: IPython warns about an HTML object that starts with <iframe
    return HTML(
        f'<div class="fcinv-static-view-box"><iframe class="fcinv-static-view" sandbox="allow-scripts" '
        f'title="{html.escape(title)}" style="width:100%;height:{height_px}px;border:0" srcdoc="{page}"></iframe>'
        f"<script>{_THEME_TO_IFRAME}</script></div>"
    )


#: the notebook's colours for the sandboxed iframe of :func:`static_iframe`, which cannot read
#: them (a white box in JupyterLab Dark before session 47): sent on load and on every change of
#: the notebook's theme attributes; the page (standalone_host.js) takes them as its body's colours
_THEME_TO_IFRAME = (
    "(()=>{const s=document.currentScript,box=s&&s.parentElement,f=box&&box.querySelector('iframe.fcinv-static-view');"
    "if(!f)return;const bg=(e)=>{for(;e&&e.nodeType===1;e=e.parentElement){const c=getComputedStyle(e).backgroundColor;"
    "if(c&&c!=='transparent'&&!/rgba\\([^)]*,\\s*0\\)$/.test(c))return c;}return '';};"
    "const send=()=>{if(f.contentWindow)f.contentWindow.postMessage({fcinvTheme:{bg:bg(box),fg:getComputedStyle(box).color}},'*');};"
    "f.addEventListener('load',send);send();"
    "new MutationObserver(()=>[150,600,1500].forEach((t)=>setTimeout(send,t))).observe(document.body,{attributes:true});})();"
)
