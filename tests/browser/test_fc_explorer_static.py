"""The kernel-free FCExplorer in headless Chromium, from file:// with the network blocked.

1. ``FCExplorer(ge).save_html(...)``: the page draws the Ge spectrum, a slider key repaints it
   (computed in the page), the in-page image agrees with Python to 1e-5 at the page's θ, the
   stability badge agrees with Python, and "Reset to reference" brings the first image back.
2. nbconvert of an executed notebook with widget state: what works offline. The widget view
   needs the widget manager that nbconvert's page loads from a CDN (blocked here: the box stays
   empty, asserted so the docs stay true); ``fx.static_view()`` (an iframe with the standalone
   page) shows the spectrum and its sliders move it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fcinv_testing.browser import (
    CANVAS_SUM_JS,
    CHROMIUM,
    CHROMIUM_ARGS,
    chromium_page,
    jupyterlab,
    kernel_exec,
    open_and_run,
    press_counted,
    wait_kernel_idle,
    write_notebook,
)

ROOT_JS = "document.getElementById('fcinv-root')"


@pytest.fixture(scope="module")
def ge_explorer():
    from fcinv_widgets import get_material
    from fcinv_widgets.widgets import FCExplorer

    ge = get_material("Ge")
    return FCExplorer(ge), ge.forward_model()


def _offline_page(p, viewport=(1300, 800)):
    """A Chromium page that may load file:// only; returns (browser, page, blocked URLs, errors)."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    blocked, errors = [], []

    def route(r):
        if r.request.url.startswith(("file:", "about:", "data:", "blob:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return browser, page, blocked, errors


def test_save_html_page_moves_the_spectrum_without_kernel_or_network(tmp_path, artifacts, ge_explorer):
    from playwright.sync_api import sync_playwright

    fx, fm = ge_explorer
    path = fx.save_html(tmp_path / "ge.html")
    with sync_playwright() as p:
        browser, page, blocked, errors = _offline_page(p)
        try:
            page.goto(path.resolve().as_uri())
            page.wait_for_selector("canvas.fcinv-heatmap")
            page.wait_for_function(f"() => {ROOT_JS}.dataset.paintCount >= 1")
            px0 = page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-heatmap")
            slider = page.locator("input.fcinv-slider").nth(1)  # FC1 (1NN xy)
            slider.focus()
            for _ in range(12):
                page.keyboard.press("ArrowLeft")
            page.wait_for_function(f"() => Number({ROOT_JS}.dataset.jsFrames) >= 12")
            page.screenshot(path=str(artifacts / "fc_explorer_static_moved.png"))
            px1 = page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-heatmap")
            assert px1 != px0, "the canvas did not repaint"
            frame = page.evaluate(
                f"() => {{ const f = {ROOT_JS}.fcinvJsFrame;"
                " return {values: f.values, image: Array.from(f.image), stable: f.stable}; }"
            )
            theta = np.asarray(frame["values"])
            assert theta[1] < fx.theta[1]  # the page moved FC1 down, Python's widget did not move
            img, st = fm.spectra(theta[None], return_stable=True)
            diff = np.abs(np.asarray(frame["image"]) - img[0].ravel()).max()
            assert diff <= 1e-5, f"page image vs Python: max |ΔI| = {diff}"
            assert frame["stable"] == bool(st[0])

            # FC0 to both ends of its domain: the badge follows Python's stability check
            s0 = page.locator("input.fcinv-slider").nth(0)
            s0.focus()
            for key in ("Home", "End"):
                n = page.evaluate(f"() => Number({ROOT_JS}.dataset.jsFrames)")
                page.keyboard.press(key)
                page.wait_for_function(f"() => Number({ROOT_JS}.dataset.jsFrames) > {n}")
                vals = np.asarray(page.evaluate(f"() => {ROOT_JS}.fcinvJsFrame.values"))
                badge = page.evaluate("() => document.querySelector('.fcinv-stability').dataset.stable")
                assert badge == str(bool(fm.is_stable(vals[None])[0])).lower(), (key, vals, badge)

            # reset: back to the first image (the page plays the kernel)
            page.click("button.fcinv-reset")
            page.wait_for_function(f"() => {ROOT_JS}.dataset.source === 'kernel'")
            page.wait_for_timeout(200)
            assert page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-heatmap") == px0

            # the reference switch moves the sliders to that reference, as the kernel does
            # (session 47: the page's switch said "first-principles" and changed nothing)
            table = fx._reference_table()
            other = next(k for k in table if k != fx.widget.reference_name)
            n = page.evaluate(f"() => Number({ROOT_JS}.dataset.jsFrames || 0)")
            page.select_option("select", other)
            page.wait_for_function(f"() => {ROOT_JS}.fcinvJsFrame && Number({ROOT_JS}.dataset.paintCount) > 0")
            page.wait_for_function(
                "(want) => { const s = document.querySelectorAll('input.fcinv-slider');"
                " return Array.from(s).every((x, i) => Math.abs(Number(x.value) - want[i]) < 0.05 * Math.abs(want[i]) + 1e-3); }",
                arg=table[other],
            )
            assert page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-heatmap") != px0, (n, other)
        finally:
            browser.close()
    assert blocked == [], f"the page tried to fetch {blocked}"
    assert errors == [], errors


NB_CELLS = [
    "from fcinv_widgets import get_material\nfrom fcinv_widgets.widgets import FCExplorer\nfx = FCExplorer(get_material('Ge'))",
    "fx",
    "fx.static_view(480)",
]


def test_nbconvert_html_offline_static_view_works_widget_view_needs_cdn(tmp_path, artifacts):
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter
    from playwright.sync_api import sync_playwright

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NB_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(
        nb, timeout=600, kernel_name="python3", store_widget_state=True, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    assert "application/vnd.jupyter.widget-state+json" in nb.metadata.get("widgets", {})
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    page_path = tmp_path / "executed.html"
    page_path.write_text(body, encoding="utf-8")
    with sync_playwright() as p:
        browser, page, blocked, _errors = _offline_page(p, (1300, 1600))
        try:
            page.goto(page_path.resolve().as_uri())
            frame_el = page.wait_for_selector("iframe.fcinv-static-view")
            frame = frame_el.content_frame()
            frame.wait_for_selector("canvas.fcinv-heatmap")
            frame.wait_for_function("() => document.getElementById('fcinv-root').dataset.paintCount >= 1")
            px0 = frame.evaluate(CANVAS_SUM_JS, "canvas.fcinv-heatmap")
            frame.locator("input.fcinv-slider").nth(1).focus()
            for _ in range(8):
                page.keyboard.press("ArrowLeft")
            frame.wait_for_function("() => Number(document.getElementById('fcinv-root').dataset.jsFrames) >= 8")
            assert frame.evaluate(CANVAS_SUM_JS, "canvas.fcinv-heatmap") != px0
            page.wait_for_timeout(1000)
            page.screenshot(path=str(artifacts / "fc_explorer_nbconvert_offline.png"), full_page=True)
            # the widget view itself: nbconvert's page loads the widget manager from a CDN
            n_widget_canvases = page.evaluate("() => document.querySelectorAll('canvas.fcinv-heatmap').length")
        finally:
            browser.close()
    cdn = [u for u in blocked if "jsdelivr" in u or "unpkg" in u or "cdnjs" in u]
    print(json.dumps({"blocked": blocked, "widget_view_canvases": n_widget_canvases}, indent=1))
    assert cdn, "nbconvert's page no longer loads from a CDN: the widget view may work offline now (update docs)"
    assert n_widget_canvases == 0, "the widget view rendered offline: update docs/widgets.md"


LAB_CELL = """\
from fcinv_widgets import get_material
from fcinv_widgets.widgets import FCExplorer
fx = FCExplorer(get_material("Ge"))
fx"""


def test_jupyterlab_paints_js_frames_and_the_kernel_confirms_them(tmp_path, artifacts):
    """In JupyterLab each key press is painted from the JS forward model; the kernel's answer for
    the final values then repaints the canvas, and the two images agree to 1e-5. After the
    kernel dies, the sliders still move the spectrum."""
    write_notebook(tmp_path / "ge.ipynb", [LAB_CELL])
    with jupyterlab(tmp_path) as url, chromium_page() as page:
        open_and_run(page, url, "ge.ipynb", "canvas.fcinv-heatmap[data-frame='1']", timeout_ms=240_000)
        root = "document.querySelector('.fcinv-fcexplorer')"
        assert page.evaluate(f"() => {root}.dataset.jsForward") == "on"
        frame0 = int(page.evaluate("() => document.querySelector('canvas.fcinv-heatmap').dataset.frame"))
        slider = page.locator("input.fcinv-slider").nth(1)
        wait_kernel_idle(page)
        frames = f"{root}.dataset.jsFrames || 0"
        # one JS frame per key press (a key JupyterLab took by moving the focus is pressed again)
        press_counted(page, slider, "ArrowLeft", frames, 10)
        assert int(page.evaluate(f"() => Number({frames})")) >= 10
        # the kernel's answer for the final values: painted, with the JS image agreeing
        page.wait_for_function(
            f"() => {root}.dataset.source === 'kernel' && {root}.dataset.jsKernelMaxDiff !== undefined"
            " && Number(document.querySelector('canvas.fcinv-heatmap').dataset.frame) > " + str(frame0),
            timeout=60_000,
        )
        page.screenshot(path=str(artifacts / "fc_explorer_js_then_kernel.png"))
        diff = float(page.evaluate(f"() => {root}.dataset.jsKernelMaxDiff"))
        assert diff <= 1e-5, diff
        out = tmp_path / "vals.txt"
        kernel_exec(page, f"import json; open({str(out)!r}, 'w').write(json.dumps(fx.widget.values))")
        kernel_vals = json.loads(out.read_text())
        page_vals = page.evaluate(f"() => {root}.fcinvJsFrame.values")
        assert np.allclose(kernel_vals, page_vals, rtol=0, atol=1e-12)
        assert abs(float(slider.input_value()) - kernel_vals[1]) < 1e-9

        # the kernel dies (as a culled Binder kernel): the sliders keep moving the spectrum
        page.evaluate(
            "() => jupyterapp.shell.currentWidget.sessionContext.session.kernel.requestExecute({code: 'import os; os._exit(1)'})"
        )
        page.wait_for_selector(".jp-Dialog button.jp-mod-accept", timeout=60_000)  # "kernel appears to have died"
        page.click(".jp-Dialog button.jp-mod-accept")
        n = int(page.evaluate(f"() => Number({frames})"))
        px = page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-heatmap")
        press_counted(page, slider, "ArrowLeft", frames, 6)  # focuses the slider first (the dialog took it)
        assert int(page.evaluate(f"() => Number({frames})")) >= n + 6
        assert page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-heatmap") != px
        page.screenshot(path=str(artifacts / "fc_explorer_dead_kernel.png"))


def test_static_view_iframe_follows_the_notebook_theme(tmp_path, artifacts):
    """Session 47 (a browser probe): the sandboxed iframe of ``static_view()`` cannot read the
    notebook's colours and was a white box in JupyterLab Dark. The notebook now sends them
    (postMessage on load and on a theme change) and the page's widget takes the dark theme."""
    write_notebook(tmp_path / "sv.ipynb", [NB_CELLS[0] + "\nfx.static_view(420)"])
    body = "() => getComputedStyle(document.body).backgroundColor"
    scheme = "() => document.querySelector('.fcinv-fcexplorer').style.colorScheme"
    with jupyterlab(tmp_path) as url, chromium_page() as page:
        open_and_run(page, url, "sv.ipynb", "iframe.fcinv-static-view")
        frame = page.wait_for_selector("iframe.fcinv-static-view").content_frame()
        frame.wait_for_selector("canvas.fcinv-heatmap")
        frame.wait_for_function(f"() => ({scheme})() === 'light'")
        page.evaluate("() => jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
        frame.wait_for_function(f"() => ({scheme})() === 'dark'", timeout=20_000)
        page.screenshot(path=str(artifacts / "fc_explorer_static_view_dark.png"))
        r, g, b = (int(x) for x in frame.evaluate(body).strip("rgba()").split(",")[:3])
        assert max(r, g, b) < 80, frame.evaluate(body)
