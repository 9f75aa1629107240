"""End-to-end: NoiseGridExplorer click on a cell (pytest -m browser)."""

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
from fcinv_widgets.widgets import NoiseGridExplorer
from fcinv_testing.fakes import fake_noise_grid
ng = NoiseGridExplorer(fake_noise_grid())
ng"""


def test_noise_grid_click_cell(tmp_path, artifacts):
    write_notebook(tmp_path / "ng.ipynb", [CELL])
    with jupyterlab(tmp_path) as url, chromium_page() as page:
        open_and_run(page, url, "ng.ipynb", "canvas.fcinv-grid[data-frame]")
        noisy_before = page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-noisy")
        grid_before = page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-grid")
        # cell (B index 1, P index 2): grid rect x=50, y=10, 60 px cells
        page.locator("canvas.fcinv-grid").click(position={"x": 50 + 2 * 60 + 30, "y": 10 + 1 * 60 + 30})
        page.wait_for_function("() => document.querySelector('.fcinv-cell-info').textContent.includes('P=')")
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts / "noise_grid_clicked.png"))
        assert page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-noisy") != noisy_before
        assert page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-grid") != grid_before  # selection outline
        assert "R² =" in page.locator(".fcinv-cell-r2").inner_text()
        out = tmp_path / "s.json"
        kernel_exec(page, f"import json; json.dump({{'sel': ng.selected, 'snr': ng.widget.snr}}, open({str(out)!r}, 'w'))")
        s = json.loads(out.read_text())
        assert s["sel"] == [1, 2]
