"""Issue 13 in the real front-ends: FCExplorer (with a comparison, so three panels) in JupyterLab
and in Notebook 7, at 1280 and 800 px: the canvases fit the output area, colour bars are drawn,
hover shows values, arrow keys on a focused slider move it (bug 2: Notebook 7 took them), and
in JupyterLab the dark theme reaches the canvases and the stability badge."""

import json

import pytest

from fcinv_testing.browser import (
    chromium_page,
    jupyterlab,
    kernel_exec,
    open_and_run,
    write_notebook,
)

CELL = """\
import numpy as np
from fcinv_widgets.widgets import FCExplorer
from fcinv_testing.fakes import FakeMaterial
fx = FCExplorer(FakeMaterial())
fx.compare(np.asarray(fx.widget.image) * 0.7)
fx"""

FIT_JS = """() => {
  const cs = [...document.querySelectorAll('.fcinv-fcexplorer canvas')].filter((c) => c.offsetParent !== null);
  return cs.map((c) => {
    const out = c.closest('.jp-OutputArea-output').getBoundingClientRect();
    const r = c.getBoundingClientRect();
    return {cls: c.className, right: r.right, outRight: out.right, left: r.left, outLeft: out.left,
            colorbar: c.dataset.colorbar || null};
  });
}"""


def _values(page, tmp_path, tag):
    out = tmp_path / f"v_{tag}.json"
    kernel_exec(page, f"import json; json.dump(fx.widget.values, open({str(out)!r}, 'w'))")
    return json.loads(out.read_text())


def _fits(page):
    boxes = page.evaluate(FIT_JS)
    assert len(boxes) == 3, boxes
    for b in boxes:
        assert b["left"] >= b["outLeft"] - 0.5 and b["right"] <= b["outRight"] + 0.5, b
        assert b["colorbar"] and "(" in b["colorbar"], b


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_fc_explorer_in_frontend(tmp_path, artifacts, app):
    write_notebook(tmp_path / "fx.ipynb", [CELL])
    with jupyterlab(tmp_path, app=app) as url, chromium_page(viewport=(1280, 900)) as page:
        open_and_run(page, url, "fx.ipynb", "canvas.fcinv-heatmap[data-frame='1']", app=app)
        page.wait_for_timeout(500)
        assert page.evaluate("() => document.body.dataset.jpThemeLight") == "true"  # settings are per test
        assert page.evaluate("() => document.querySelector('.fcinv-fcexplorer').style.colorScheme") == "light"
        _fits(page)
        page.screenshot(path=str(artifacts / f"frontend_{app}_1280.png"))
        page.set_viewport_size({"width": 800, "height": 900})
        page.wait_for_timeout(800)  # ResizeObserver -> relayout
        _fits(page)
        page.screenshot(path=str(artifacts / f"frontend_{app}_800.png"))
        # hover read-out
        page.hover("canvas.fcinv-heatmap", position={"x": 120, "y": 120})
        page.wait_for_timeout(150)
        tip = page.evaluate(
            "() => [...document.querySelectorAll('.fcinv-tooltip')]"
            ".map((e) => e.style.display === 'block' ? e.textContent : '').join('')"
        )
        assert "meV" in tip and "I (scaled) = " in tip, tip
        # arrow keys on a focused slider reach it, in both front-ends (bug 2)
        v0 = _values(page, tmp_path, "0")
        slider = page.locator("input.fcinv-slider").first
        slider.focus()
        for _ in range(8):
            page.keyboard.press("ArrowRight")
        page.wait_for_timeout(800)
        assert page.evaluate("() => document.activeElement && document.activeElement.className") == "fcinv-slider"
        v1 = _values(page, tmp_path, "1")
        assert v1[0] > v0[0] and v1[1:] == v0[1:], (v0, v1)
        for _ in range(3):
            page.keyboard.press("ArrowLeft")
        page.wait_for_timeout(800)
        assert _values(page, tmp_path, "2")[0] < v1[0]
        if app == "lab":  # the dark theme reaches the canvases and the badge
            page.evaluate("() => jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
            page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(artifacts / "frontend_lab_dark_800.png"))
            px = page.evaluate(
                "() => Array.from(document.querySelector('canvas.fcinv-heatmap').getContext('2d').getImageData(2, 2, 1, 1).data)"
            )
            assert max(px[:3]) < 80, px
            fg, bg = page.evaluate(
                "() => { const s = getComputedStyle(document.querySelector('.fcinv-stability'));"
                " return [s.color, s.backgroundColor]; }"
            )
            assert fg != bg and "255, 255, 255" in fg, (fg, bg)  # the badge keeps readable text
