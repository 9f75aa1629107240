"""End-to-end: FCExplorer in JupyterLab + headless Chromium (pytest -m browser)."""

import json

from fcinv_testing.browser import (
    CANVAS_SUM_JS,
    chromium_page,
    jupyterlab,
    kernel_exec,
    open_and_run,
    set_from_page,
    write_notebook,
)

CELL = """\
from fcinv_widgets.widgets import FCExplorer
from fcinv_testing.fakes import FakeMaterial
fx = FCExplorer(FakeMaterial())
fx"""


def _state(page, tmp_path, name):
    out = tmp_path / f"{name}.json"
    kernel_exec(
        page,
        "import json; json.dump({'values': fx.widget.values, 'frame': fx.widget.frame, "
        f"'stable': fx.widget.stable, 'error': fx.widget.error}}, open({str(out)!r}, 'w'))",
    )
    return json.loads(out.read_text())


def test_fc_explorer_slider_keyboard_and_errors(tmp_path, artifacts):
    write_notebook(tmp_path / "fcx.ipynb", [CELL])
    with jupyterlab(tmp_path) as url, chromium_page() as page:
        open_and_run(page, url, "fcx.ipynb", "canvas.fcinv-heatmap[data-frame='1']")
        page.screenshot(path=str(artifacts / "fc_explorer_initial.png"))
        before_px = page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-heatmap")
        assert before_px[0] > 0
        s0 = _state(page, tmp_path, "s0")

        slider = page.locator("input.fcinv-slider").first
        slider.focus()
        for _ in range(40):
            page.keyboard.press("ArrowRight")
        # wait until the kernel's last result is painted and no request is in flight
        page.wait_for_function(
            "() => { const c = document.querySelector('canvas.fcinv-heatmap'); return Number(c.dataset.frame) > 1; }"
        )
        page.wait_for_timeout(500)
        after_px = page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-heatmap")
        s1 = _state(page, tmp_path, "s1")
        page.screenshot(path=str(artifacts / "fc_explorer_after_slider.png"))
        assert after_px != before_px, "canvas did not repaint"
        assert s1["values"][0] > s0["values"][0], (s0, s1)
        assert s1["frame"] > s0["frame"]
        slider_val = float(slider.input_value())
        assert abs(slider_val - s1["values"][0]) < 1e-6  # latest value won

        # bad value from Python: clear error, widget still usable
        out = tmp_path / "err.txt"
        kernel_exec(
            page,
            "try:\n    fx.theta = [1e3] * 8\nexcept Exception as e:\n"
            f"    open({str(out)!r}, 'w').write(type(e).__name__ + ': ' + str(e))",
        )
        assert "outside its training domain" in out.read_text()
        kernel_exec(page, "fx.reset()")
        page.wait_for_function(f"() => Number(document.querySelector('canvas.fcinv-heatmap').dataset.frame) > {s1['frame']}")
        s2 = _state(page, tmp_path, "s2")
        assert s2["values"] == s0["values"]
        assert page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-heatmap") == before_px

        # a value the kernel refuses, set from the page (another front end, a script): the view
        # goes back to the kernel's value and says why (session 47: it kept "FC0 = 1000")
        ident = tmp_path / "id.txt"
        kernel_exec(page, f"open({str(ident)!r}, 'w').write(fx.widget.model_id)")
        set_from_page(page, ident.read_text(), "values", [1000.0] + s2["values"][1:])
        page.wait_for_function("() => document.querySelector('.fcinv-error').textContent.includes('domain')", timeout=20_000)
        page.wait_for_function(
            "(v) => Math.abs(Number(document.querySelector('input.fcinv-slider').value) - v) < 1e-6",
            arg=s2["values"][0],
            timeout=20_000,
        )
        label = page.locator(".fcinv-fc-label").first.text_content()
        assert "1000" not in label, label
        assert _state(page, tmp_path, "s2b")["values"] == s2["values"]

        # unstable: FC0 to the bottom of its domain via the keyboard
        slider.focus()
        page.keyboard.press("Home")
        page.wait_for_selector(".fcinv-stability[data-stable='false']", timeout=20_000)
        page.screenshot(path=str(artifacts / "fc_explorer_unstable.png"))
        assert _state(page, tmp_path, "s3")["stable"] is False


REAL_CELL = """\
import numpy as np
from fcinv_widgets import FCExplorer, get_material
ge = get_material("Ge")
fx = FCExplorer(ge)
fx"""


def test_fc_explorer_real_ge_forward_model(tmp_path, artifacts):
    """The real Ge forward model behind the sliders: keyboard moves repaint the canvas, the synced
    values follow, and a comparison spectrum of the wrong shape is refused with the widget intact."""
    write_notebook(tmp_path / "ge.ipynb", [REAL_CELL])
    with jupyterlab(tmp_path) as url, chromium_page() as page:
        open_and_run(page, url, "ge.ipynb", "canvas.fcinv-heatmap[data-frame='1']", timeout_ms=180_000)
        before_px = page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-heatmap")
        s0 = _state(page, tmp_path, "g0")
        slider = page.locator("input.fcinv-slider").nth(1)  # FC1 (1NN xy)
        slider.focus()
        for _ in range(15):
            page.keyboard.press("ArrowLeft")
        page.wait_for_function("() => Number(document.querySelector('canvas.fcinv-heatmap').dataset.frame) > 1")
        page.wait_for_timeout(800)
        s1 = _state(page, tmp_path, "g1")
        page.screenshot(path=str(artifacts / "fc_explorer_real_ge.png"))
        assert page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-heatmap") != before_px
        assert s1["values"][1] < s0["values"][1] and s1["values"][0] == s0["values"][0]
        assert abs(float(slider.input_value()) - s1["values"][1]) < 1e-6
        out = tmp_path / "err.txt"
        kernel_exec(
            page,
            "try:\n    fx.compare(np.zeros((10, 10)))\nexcept Exception as e:\n"
            f"    open({str(out)!r}, 'w').write(type(e).__name__ + ': ' + str(e))",
        )
        assert "GridMismatchError" in out.read_text() and "(140, 140)" in out.read_text()
        kernel_exec(page, "fx.compare(ge.forward_model().spectra(ge.reference_theta[None])[0])")
        page.wait_for_timeout(800)
        assert _state(page, tmp_path, "g2")["error"] == ""
