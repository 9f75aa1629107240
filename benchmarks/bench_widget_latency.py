"""Median time from a slider key press to the repainted FCExplorer canvas,
through the kernel, in JupyterLab + headless Chromium.

    python benchmarks/bench_widget_latency.py [--presses 40] [--screenshot x.png]
    FCINV_BENCH_FAKE=0 python benchmarks/bench_widget_latency.py   # real Ge forward model

Measured in the page: keydown event time -> the canvas' data-frame attribute
changing (set right after the heatmap is painted)."""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from fcinv_widgets.widgets._browser import chromium_page, jupyterlab, open_and_run, write_notebook

CELL = """\
import os
from fcinv_widgets.widgets import FCExplorer
from fcinv_widgets.widgets.fake import FakeMaterial, make_fake_grid
if os.environ.get("FCINV_BENCH_FAKE", "1") == "1":
    mat = FakeMaterial(grid=make_fake_grid(140, 140, 40.0))
else:
    from fcinv_widgets import materials
    mat = materials.get_material("Ge")
fx = FCExplorer(mat)
fx"""

SETUP_JS = """() => {
  const c = document.querySelector('canvas.fcinv-heatmap');
  window.__lat = []; window.__t0 = null;
  window.addEventListener('keydown', (e) => { window.__t0 = performance.now(); }, true); // window: the widgets stop slider keys there
  new MutationObserver(() => {
    if (window.__t0 !== null) { window.__lat.push(performance.now() - window.__t0); window.__t0 = null; }
  }).observe(c, {attributes: true, attributeFilter: ['data-frame']});
}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--presses", type=int, default=40)
    ap.add_argument("--screenshot", default=None, help="save a PNG of the page at the end")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        write_notebook(root / "bench.ipynb", [CELL])
        with jupyterlab(root) as url, chromium_page() as page:
            open_and_run(page, url, "bench.ipynb", "canvas.fcinv-heatmap[data-frame='1']")
            page.evaluate(SETUP_JS)
            slider = page.locator("input.fcinv-slider").nth(1)
            slider.focus()
            for i in range(args.presses):
                n = page.evaluate("() => window.__lat.length")
                page.keyboard.press("ArrowRight" if (i // 20) % 2 == 0 else "ArrowLeft")
                page.wait_for_function(f"() => window.__lat.length > {n}", timeout=10_000)
                page.wait_for_timeout(30)
            lat = page.evaluate("() => window.__lat")
            if args.screenshot:
                page.screenshot(path=args.screenshot)
            paint = page.evaluate("() => Number(document.querySelector('canvas.fcinv-heatmap').dataset.paintMs)")
    lat = lat[2:]  # warm-up
    print(f"FCExplorer key press -> repainted canvas through the kernel: median {statistics.median(lat):.1f} ms "
          f"(p90 {sorted(lat)[int(0.9 * len(lat))]:.1f} ms, n={len(lat)}); canvas paint {paint:.2f} ms; grid 140x140")


if __name__ == "__main__":
    main()
