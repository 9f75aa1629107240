"""FCExplorer latency from a slider key press to the repainted canvas, in headless Chromium,
for both paths:

* kernel: JupyterLab, ``FCExplorer(ge, js_forward=False)`` — the browser sends θ to the
  kernel, the kernel computes and sends the image back, the view repaints;
* js: JupyterLab, ``FCExplorer(ge)`` — the page computes the frame with the JavaScript
  forward model (the kernel recomputes in the background and stays the ground truth);
* static: the same in the page written by ``FCExplorer(ge).save_html(...)`` (file://, no
  kernel, no JupyterLab).

    python benchmarks/bench_widget_latency.py [--paths kernel,js,static] [--presses 40] [--json]
    FCINV_BENCH_FAKE=1 python benchmarks/bench_widget_latency.py --paths kernel   # the tests' fake model

Measured in the page from the keydown event's timestamp to (a) the canvas drawn (the view's
frame marker changes right after drawing: ``data-frame`` for the kernel path,
``data-js-frames`` for the JS path) and (b) the next animation frame after that (the frame in
which the new image is presented). Medians and 90th percentiles over the presses (and, for the JS
paths, pointer moves of a thumb drag in 3 px steps) after two warm-up events. Noisy on a shared 2-core machine: report, never assert.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

# the JupyterLab/Chromium helpers and the fake material are test support in tests/fcinv_testing
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fcinv_testing.browser import (  # noqa: E402
    chromium_page,
    jupyterlab,
    open_and_run,
    write_notebook,
)

FAKE = os.environ.get("FCINV_BENCH_FAKE", "0") == "1"

CELL_SETUP = """\
from fcinv_widgets.widgets import FCExplorer
from fcinv_testing.fakes import FakeMaterial, make_fake_grid
from fcinv_widgets import materials
mat = FakeMaterial(grid=make_fake_grid(140, 140, 40.0)) if {fake} else materials.get_material("Ge")"""

# page side: keydown time → marker change (canvas drawn) → next animation frame (presented)
SETUP_JS = """([rootSel, index, attr, onCanvas]) => {
  const root = document.querySelectorAll(rootSel)[index];
  const target = onCanvas ? root.querySelector('canvas.fcinv-heatmap') : root;
  window.__lat = []; window.__t0 = null;
  window.addEventListener('keydown', (e) => { window.__t0 = e.timeStamp; }, true); // window: the widgets stop slider keys there
  document.addEventListener('pointermove', (e) => { if (e.buttons) window.__t0 = e.timeStamp; }, true);
  new MutationObserver(() => {
    if (window.__t0 === null) return;
    const t0 = window.__t0; window.__t0 = null;
    const drawn = performance.now();
    requestAnimationFrame(() => window.__lat.push([drawn - t0, performance.now() - t0]));
  }).observe(target, {attributes: true, attributeFilter: [attr]});
}"""


def _press(page, slider, presses: int) -> list:
    slider.focus()
    for i in range(presses):
        n = page.evaluate("() => window.__lat.length")
        page.keyboard.press("ArrowRight" if (i // 20) % 2 == 0 else "ArrowLeft")
        page.wait_for_function(f"() => window.__lat.length > {n}", timeout=20_000)
        page.wait_for_timeout(40)
    return page.evaluate("() => window.__lat")[2:]  # warm-up


def _drag(page, slider, moves: int) -> list:
    """Drag the slider's thumb in 3 px steps; one latency per pointer move that changed the value."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.evaluate("() => { window.__lat = []; }")
    box = slider.bounding_box()
    y = box["y"] + box["height"] / 2
    x = box["x"] + box["width"] * 0.3
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(moves):
        n = page.evaluate("() => window.__lat.length")
        page.mouse.move(x + 3 * (i + 1), y)
        try:
            page.wait_for_function(f"() => window.__lat.length > {n}", timeout=2_000)
        except PlaywrightTimeout:  # a move within one slider step changes nothing: no frame
            page.evaluate("() => { window.__t0 = null; }")
        page.wait_for_timeout(20)
    page.mouse.up()
    return page.evaluate("() => window.__lat")[2:]


def _stats(lat: list) -> dict:
    drawn = sorted(a for a, _ in lat)
    shown = sorted(b for _, b in lat)

    def p90(v):
        return v[min(len(v) - 1, int(0.9 * len(v)))]

    return {
        "n": len(lat),
        "drawn_median_ms": round(statistics.median(drawn), 2),
        "drawn_p90_ms": round(p90(drawn), 2),
        "presented_median_ms": round(statistics.median(shown), 2),
        "presented_p90_ms": round(p90(shown), 2),
    }


def bench_lab(paths: list, presses: int) -> dict:
    out = {}
    cells = [CELL_SETUP.format(fake=FAKE)]
    widgets = []
    if "kernel" in paths:
        cells.append("fx_kernel = FCExplorer(mat, js_forward=False)\nfx_kernel")
        widgets.append("kernel")
    if "js" in paths:
        cells.append("fx_js = FCExplorer(mat)\nfx_js")
        widgets.append("js")
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        write_notebook(root / "bench.ipynb", cells)
        with jupyterlab(root) as url, chromium_page((1500, 1800)) as page:
            wait = f".fcinv-fcexplorer >> nth={len(widgets) - 1}"
            open_and_run(page, url, "bench.ipynb", wait, timeout_ms=300_000)
            page.wait_for_function(
                f"() => document.querySelectorAll('canvas.fcinv-heatmap[data-frame=\"1\"]').length >= {len(widgets)}",
                timeout=120_000,
            )
            for i, name in enumerate(widgets):
                if (
                    name == "js"
                    and page.evaluate(f"() => document.querySelectorAll('.fcinv-fcexplorer')[{i}].dataset.jsForward") != "on"
                ):
                    raise SystemExit("the JS path is off: the forward model has no precomputed blocks (FCINV_BENCH_FAKE=1?)")
                page.evaluate(
                    SETUP_JS, [".fcinv-fcexplorer", i, "data-frame" if name == "kernel" else "data-js-frames", name == "kernel"]
                )
                slider = page.locator(".fcinv-fcexplorer").nth(i).locator("input.fcinv-slider").nth(1)
                lat = _press(page, slider, presses)
                out[name] = _stats(lat)
                if name == "js":
                    page.wait_for_timeout(1000)
                    out["js_drag"] = _stats(_drag(page, slider, presses))
                page.wait_for_timeout(1500)  # let the kernel finish the background requests
    return out


def bench_static(presses: int) -> dict:
    from fcinv_widgets import get_material
    from fcinv_widgets.widgets import FCExplorer

    with tempfile.TemporaryDirectory() as d:
        path = FCExplorer(get_material("Ge")).save_html(Path(d) / "ge.html")
        with chromium_page((1300, 800)) as page:
            page.goto(path.resolve().as_uri())
            page.wait_for_selector("canvas.fcinv-heatmap")
            page.evaluate(SETUP_JS, ["#fcinv-root", 0, "data-js-frames", False])
            slider = page.locator("input.fcinv-slider").nth(1)
            lat = _press(page, slider, presses)
            frame_ms = float(page.evaluate("() => document.getElementById('fcinv-root').dataset.jsFrameMs"))
            drag = _stats(_drag(page, slider, presses))
    return {"static": {**_stats(lat), "last_frame_compute_and_draw_ms": frame_ms}, "static_drag": drag}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths", default="kernel,js,static", help="comma-separated: kernel, js, static")
    ap.add_argument("--presses", type=int, default=40)
    ap.add_argument("--json", action="store_true", help="JSON on stdout only")
    args = ap.parse_args()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    bad = [p for p in paths if p not in ("kernel", "js", "static")]
    if bad or not paths or args.presses < 5:
        print(f"error: --paths takes kernel, js, static (got {args.paths!r}); --presses >= 5", file=sys.stderr)
        raise SystemExit(2)
    if FAKE and ("js" in paths or "static" in paths):
        print(
            "error: the JS path needs the real forward model; FCINV_BENCH_FAKE=1 works with --paths kernel only", file=sys.stderr
        )
        raise SystemExit(2)
    res = {"material": "fake" if FAKE else "Ge", "grid": "140x140", "presses": args.presses}
    lab = [p for p in paths if p in ("kernel", "js")]
    if lab:
        res.update(bench_lab(lab, args.presses))
    if "static" in paths:
        res.update(bench_static(args.presses))
    if args.json:
        print(json.dumps(res, indent=1))
        return
    names = {
        "kernel": "key, through the kernel (JupyterLab)",
        "js": "key, JS forward model (JupyterLab)",
        "js_drag": "drag, JS forward model (JupyterLab)",
        "static": "key, save_html page (file://)",
        "static_drag": "drag, save_html page (file://)",
    }
    print(f"FCExplorer key press / drag move -> repainted canvas, {res['material']} {res['grid']}, headless Chromium:")
    for p, label in names.items():
        if p not in res:
            continue
        s = res[p]
        print(
            f"  {label:40s} drawn: median {s['drawn_median_ms']:.1f} ms (p90 {s['drawn_p90_ms']:.1f}); "
            f"next frame: median {s['presented_median_ms']:.1f} ms (p90 {s['presented_p90_ms']:.1f}); n={s['n']}"
        )


if __name__ == "__main__":
    main()
