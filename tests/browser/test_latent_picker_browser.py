"""End-to-end: LatentPicker click, lasso drag and two-click ray (pytest -m browser)."""

import json

import numpy as np

from fcinv_testing.browser import (
    CANVAS_SUM_JS,
    chromium_page,
    jupyterlab,
    kernel_exec,
    open_and_run,
    write_notebook,
)
from fcinv_testing.fakes import fake_latent_map

CELL = """\
from fcinv_widgets.widgets import LatentPicker
from fcinv_testing.fakes import FakeDecoder, fake_latent_map
lmap = fake_latent_map(n=300)
lp = LatentPicker(lmap, FakeDecoder(nq=24, ne=20, latent=6))
lp.add_points("experiment", lmap.mu[:2] + 0.3)
lp"""


def point_in_polygon(x, y, poly):
    """Even-odd rule, as common.js pointInPolygon."""
    inside, j = False, len(poly) - 1
    for i in range(len(poly)):
        (xi, yi), (xj, yj) = poly[i], poly[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


GEOM_JS = """() => { const g = document.querySelector('canvas.fcinv-map').fcinvGeom;
  return {px: Array.from(g.px), py: Array.from(g.py), rect: g.rect}; }"""


def _state(page, tmp_path, name):
    out = tmp_path / f"{name}.json"
    kernel_exec(
        page,
        "import json; json.dump({'sel': lp.selected, 'ray': lp.widget.ray, 'tool': lp.tool, "
        "'strip': None if lp.ray_spectra is None else list(lp.ray_spectra.shape), "
        f"'error': lp.widget.error}}, open({str(out)!r}, 'w'))",
    )
    return json.loads(out.read_text())


def test_latent_picker_click_lasso_ray(tmp_path, artifacts):
    write_notebook(tmp_path / "lp.ipynb", [CELL])
    emb = fake_latent_map(n=300).embedding
    with jupyterlab(tmp_path) as url, chromium_page() as page:
        open_and_run(page, url, "lp.ipynb", "canvas.fcinv-map[data-frame]")
        page.wait_for_function("() => document.querySelector('.fcinv-sel-info').textContent.includes('selected')")
        canvas = page.locator("canvas.fcinv-map")
        g = page.evaluate(GEOM_JS)
        px, py = np.array(g["px"]), np.array(g["py"])
        page.screenshot(path=str(artifacts / "latent_picker_initial.png"))

        # 1. click a point
        before = page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-map")
        i = int(np.argmax(emb[:, 0]))
        canvas.click(position={"x": px[i], "y": py[i]})
        page.wait_for_function("() => document.querySelector('.fcinv-sel-info').textContent.startsWith('1 selected')")
        assert page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-map") != before
        assert _state(page, tmp_path, "s1")["sel"] == [i]

        # 2. lasso: drag a closed polygon with the mouse around the centre of the map
        page.locator("button.fcinv-tool-lasso").click()
        box = canvas.bounding_box()
        r = g["rect"]
        cx, cy, rx, ry = r["x"] + r["w"] / 2, r["y"] + r["h"] / 2, r["w"] / 4, r["h"] / 4
        ts = np.linspace(0, 2 * np.pi, 24)
        poly = [(cx + rx * np.cos(t), cy + ry * np.sin(t)) for t in ts]
        before = page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-map")
        page.mouse.move(box["x"] + poly[0][0], box["y"] + poly[0][1])
        page.mouse.down()
        for x, y in poly[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=2)
        page.mouse.up()
        page.wait_for_function("() => !document.querySelector('.fcinv-sel-info').textContent.startsWith('1 selected')")
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts / "latent_picker_lasso.png"))
        assert page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-map") != before
        s2 = _state(page, tmp_path, "s2")
        inside = [k for k in range(len(px)) if point_in_polygon(px[k], py[k], poly)]
        assert len(inside) > 3
        # the drag path is sampled by mouse events: allow points right on the boundary to differ
        assert len(set(s2["sel"]) ^ set(inside)) <= 2, (s2["sel"], inside)

        # 3. ray: two clicks on two distant points -> decoded strip
        page.locator("button.fcinv-tool-ray").click()
        a, b = int(np.argmin(emb[:, 0])), int(np.argmax(emb[:, 1]))
        strip_before = page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-strip")
        canvas.click(position={"x": px[a], "y": py[a]})
        page.wait_for_function("() => document.querySelector('.fcinv-sel-info').textContent.includes('second point')")
        canvas.click(position={"x": px[b], "y": py[b]})
        page.wait_for_function("() => Number(document.querySelector('canvas.fcinv-strip').dataset.frame) > 1")
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts / "latent_picker_ray.png"))
        assert page.evaluate(CANVAS_SUM_JS, "canvas.fcinv-strip") != strip_before
        s3 = _state(page, tmp_path, "s3")
        assert s3["ray"] == [a, b] and s3["strip"] == [8, 24, 20] and s3["error"] == ""
        assert s3["tool"] == "ray" and s3["sel"] == s2["sel"]

        # 4. Python -> browser: selection, overlay and a bad value (widget stays usable)
        kernel_exec(page, "lp.selected = [0, 1, 2]\nlp.add_points('scans', lmap.mu[10:14])")
        page.wait_for_function("() => document.querySelector('.fcinv-sel-info').textContent.startsWith('3 selected')")
        kernel_exec(page, "try:\n    lp.selected = [9999]\nexcept Exception as e:\n    err = str(e)")
        page.wait_for_timeout(300)
        assert page.locator(".fcinv-sel-info").inner_text().startswith("3 selected")
        page.screenshot(path=str(artifacts / "latent_picker_python.png"))
