"""End-to-end: OrientationScatter click on a point (pytest -m browser)."""

import json

from fcinv_testing.browser import (
    CANVAS_SUM_JS,
    chromium_page,
    jupyterlab,
    kernel_exec,
    open_and_run,
    write_notebook,
)

CELL = """\
from fcinv_widgets.widgets import OrientationScatter
from fcinv_testing.fakes import FakeMaterial, fake_scan_inference, make_fake_grid
grid = make_fake_grid(30, 24)
res = fake_scan_inference(n=20, grid=grid)
osc = OrientationScatter(res, forward_model=FakeMaterial(grid=grid).forward_model())
osc"""

POINT_JS = """([sel, i]) => { const g = document.querySelector(sel).fcinvGeom; return [g.px[i], g.py[i]]; }"""


def _state(page, tmp_path, name):
    out = tmp_path / f"{name}.json"
    kernel_exec(
        page,
        "import json, numpy as np; json.dump({'sel': osc.selected, 'frame': osc.widget.scan_frame, "
        "'worst': res.best_median_worst()[2], 'fc': osc.fc, "
        f"'img_ok': bool(np.array_equal(osc.widget.input_image, res.inputs[osc.selected], equal_nan=True))}}, "
        f"open({str(out)!r}, 'w'))",
    )
    return json.loads(out.read_text())


def test_orientation_click_point(tmp_path, artifacts):
    write_notebook(tmp_path / "osc.ipynb", [CELL])
    with jupyterlab(tmp_path) as url, chromium_page() as page:
        open_and_run(page, url, "osc.ipynb", "canvas.fcinv-input[data-frame]")
        page.wait_for_function("() => document.querySelector('.fcinv-scan-info').textContent.includes('ω =')")
        s0 = _state(page, tmp_path, "s0")
        worst = s0["worst"]
        assert s0["sel"] != worst
        before = {c: page.evaluate(CANVAS_SUM_JS, f"canvas.fcinv-{c}") for c in ("scatter", "input", "recon")}
        page.screenshot(path=str(artifacts / "orientation_initial.png"))
        x, y = page.evaluate(POINT_JS, ["canvas.fcinv-scatter", worst])
        page.locator("canvas.fcinv-scatter").click(position={"x": x + 1, "y": y})
        page.wait_for_function(f"() => document.querySelector('.fcinv-scan-info').textContent.startsWith('scan {worst}:')")
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts / "orientation_clicked.png"))
        for c, v in before.items():
            assert page.evaluate(CANVAS_SUM_JS, f"canvas.fcinv-{c}") != v, c
        s1 = _state(page, tmp_path, "s1")
        assert s1["sel"] == worst and s1["frame"] > s0["frame"] and s1["img_ok"]
        # the FC dropdown redraws the scatter and syncs to Python
        scat = page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-scatter")
        page.locator("select.fcinv-fc").select_option("2")
        page.wait_for_timeout(500)
        assert page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-scatter") != scat
        assert _state(page, tmp_path, "s2")["fc"] == 2
        # a click on the MSE panel selects too; Python-side selection repaints the browser
        x, y = page.evaluate(POINT_JS, ["canvas.fcinv-mse", 0])
        page.locator("canvas.fcinv-mse").click(position={"x": x, "y": y})
        page.wait_for_function("() => document.querySelector('.fcinv-scan-info').textContent.startsWith('scan 0:')")
        kernel_exec(page, "osc.select(5)")
        page.wait_for_function("() => document.querySelector('.fcinv-scan-info').textContent.startsWith('scan 5:')")
        page.screenshot(path=str(artifacts / "orientation_python_select.png"))
