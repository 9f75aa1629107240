"""Issue 13, in headless Chromium without a kernel: each widget view rendered from its real
Python state on a page with JupyterLab's theme variables (light/dark/high contrast), an
output area of 1280 or 800 px, at device scale 1 or 2 (``_browser.harness_page``).

Checks: nothing clipped (every canvas inside the output area), colour bars with units on
every heatmap, hover read-outs with values, theme colours (no white canvas in the dark theme,
readable stability badge), crisp canvases (backing store = devicePixelRatio x CSS size),
arrow-key selection, the numeric FC entry, the lasso that leaves the canvas and comes back,
the PNG button. The real front-ends (JupyterLab, Notebook 7) are in test_frontends.py."""

import dataclasses

import numpy as np
import pytest

from fcinv_widgets.widgets import (
    FCExplorer,
    LatentPicker,
    NoiseGridExplorer,
    OrientationScatter,
)
from fcinv_testing.browser import harness_page
from fcinv_testing.fakes import FakeDecoder, FakeMaterial, fake_latent_map, fake_noise_grid, fake_scan_inference, make_fake_grid

LAYOUT_JS = """() => {
  const out = document.getElementById('out').getBoundingClientRect();
  return [...document.querySelectorAll('canvas')].filter((c) => c.offsetParent !== null).map((c) => {
    const r = c.getBoundingClientRect();
    return {cls: c.className, left: r.left, right: r.right, outLeft: out.left, outRight: out.right,
            cssW: r.width, cssH: r.height, w: c.width, h: c.height, colorbar: c.dataset.colorbar ?? null};
  });
}"""

PIXEL_JS = """([sel, x, y]) => { const c = document.querySelector(sel);
  return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data); }"""

STYLE_JS = """(sel) => { const s = getComputedStyle(document.querySelector(sel));
  return [s.color, s.backgroundColor]; }"""


def _lum(rgb):
    def f(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (f(float(v)) for v in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a, b):
    la, lb = _lum(a), _lum(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def _rgb(css):
    return [float(v) for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3]]


def _check_layout(page, scale, heatmaps):
    boxes = page.evaluate(LAYOUT_JS)
    assert boxes, "no canvas"
    for b in boxes:  # nothing clipped: every canvas inside the output area, crisp at the device scale
        assert b["left"] >= b["outLeft"] - 0.5 and b["right"] <= b["outRight"] + 0.5, b
        assert abs(b["w"] - round(b["cssW"] * scale)) <= 1 and abs(b["h"] - round(b["cssH"] * scale)) <= 1, b
    bars = {b["cls"]: b["colorbar"] for b in boxes}
    for cls in heatmaps:
        assert bars.get(cls) and "(" in bars[cls], f"{cls}: colour bar with units missing ({bars})"
    return boxes


def _hover(page, sel, x, y):
    page.hover(sel, position={"x": x, "y": y})
    page.wait_for_timeout(100)
    return page.evaluate(
        "() => { const t = [...document.querySelectorAll('.fcinv-tooltip')]"
        ".find((e) => e.style.display === 'block'); return t ? t.textContent : ''; }"
    )


def _last_sent(page, key):
    return page.evaluate(f"() => {{ const s = window.fcinvSent; return s.length ? s[s.length - 1][{key!r}] : null; }}")


@pytest.mark.parametrize("theme,width,scale", [("light", 1280, 1), ("dark", 800, 2), ("high-contrast", 1280, 2)])
def test_fc_explorer_view(tmp_path, artifacts, theme, width, scale):
    fx = FCExplorer(FakeMaterial())
    fx.compare(np.asarray(fx.widget.image) * 0.7)
    # the reference switch as the materials module offers it (get_material(name, reference=...))
    fx.widget.reference_options = ["measured", "dft", "umlff"]
    fx.widget.reference_labels = ["measured (fit to INS)", "first-principles (DFT)", "uMLFF ensemble"]
    fx.widget.reference_name = "umlff"
    with harness_page(fx.widget, tmp_path, theme=theme, width=width, scale=scale) as page:
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts / f"view_fc_explorer_{theme}_{width}.png"))
        assert page.fcinv_errors == []
        boxes = _check_layout(page, scale, ["fcinv-heatmap", "fcinv-compare", "fcinv-diff"])
        assert len(boxes) == 3  # the difference panel is shown, not hidden off the side (bug 5)
        assert "ΔI" in {b["cls"]: b["colorbar"] for b in boxes}["fcinv-diff"]
        # bug 4: the q-path break line over the white centre of the difference map is dark
        d = {b["cls"]: b for b in boxes}["fcinv-diff"]
        bx = 46 + (d["cssW"] - 46 - 66) * 20 / 60  # PAD.l, PAD.r of fc_explorer.js; break at bin 20 of 60
        line = page.evaluate(PIXEL_JS, ["canvas.fcinv-diff", round(bx * scale), round((20 + 5) * scale)])
        assert _lum(line) < 0.2, line
        # theme: the canvas background is the page's, not white, in dark themes (bug 6)
        px = page.evaluate(PIXEL_JS, ["canvas.fcinv-heatmap", 2, 2])
        assert (_lum(px) < 0.05) if theme != "light" else (_lum(px) > 0.9), px
        fg, bg = page.evaluate(STYLE_JS, ".fcinv-stability")
        assert _contrast(_rgb(fg), _rgb(bg)) >= 4.5, (fg, bg)  # "stable" readable in every theme
        # hover read-out over the model image: q segment, E in meV, intensity
        text = _hover(page, "canvas.fcinv-heatmap", 120, 120)
        assert "E = " in text and "meV" in text and "I (scaled) = " in text and "q bin" in text, text
        assert "ΔI (scaled) = " in _hover(page, "canvas.fcinv-diff", 120, 120)
        # the numeric entry beside a slider sends the typed value; an out-of-domain one is refused
        box = page.locator("input.fcinv-fc-entry").nth(2)
        box.fill("0.61")
        box.press("Enter")
        assert _last_sent(page, "values")[2] == pytest.approx(0.61)
        n_sent = page.evaluate("() => window.fcinvSent.length")
        box.fill("99")
        box.press("Enter")
        assert page.evaluate("() => window.fcinvSent.length") == n_sent
        # slider labels show small bounds readably (bug 8)
        labels = page.locator(".fcinv-fc-label").all_text_contents()
        assert not any("-0.00," in t for t in labels), labels
        # energy window: typed E max goes to the synced e_view
        emax = page.locator("input.fcinv-emax")
        emax.fill("30")
        emax.press("Enter")
        assert _last_sent(page, "e_view") == [0.0, 30.0]
        # zoom with the wheel repaints a different picture, double-click restores it
        before = page.evaluate(PIXEL_JS, ["canvas.fcinv-heatmap", 150 * scale, 150 * scale])
        page.hover("canvas.fcinv-heatmap", position={"x": 150, "y": 150})
        for _ in range(4):
            page.mouse.wheel(0, -100)
        page.wait_for_timeout(100)
        zoomed = page.evaluate("() => document.querySelector('canvas.fcinv-heatmap').toDataURL()")
        page.dblclick("canvas.fcinv-heatmap", position={"x": 150, "y": 150})
        assert page.evaluate("() => document.querySelector('canvas.fcinv-heatmap').toDataURL()") != zoomed
        assert page.evaluate(PIXEL_JS, ["canvas.fcinv-heatmap", 150 * scale, 150 * scale]) == before
        # reference switch: a drop-down with readable names, the choice goes to the kernel
        assert page.locator("select.fcinv-reference option").all_text_contents()[1] == "first-principles (DFT)"
        page.select_option("select.fcinv-reference", "dft")
        assert _last_sent(page, "reference_name") == "dft"
        # PNG export of the whole widget
        with page.expect_download() as dl:
            page.click("button.fcinv-png")
        assert dl.value.suggested_filename == "fc_explorer.png"
        assert int(page.get_attribute("button.fcinv-png", "data-bytes")) > 10_000


def test_orientation_view(tmp_path, artifacts):
    res = fake_scan_inference()
    # an unscaled scan (max 10.1) and MSE spanning less than a decade (bugs 1 and 7)
    inputs = np.array(res.inputs)
    inputs[0] *= 10.1 / np.nanmax(inputs[0])
    res = dataclasses.replace(res, inputs=inputs, mse=np.linspace(0.011, 0.02, len(res.mse)))
    mat = FakeMaterial(grid=make_fake_grid(30, 24))
    o = OrientationScatter(res, forward_model=mat.forward_model(), selected=0)
    for theme, width, scale in [("dark", 1280, 1), ("light", 800, 2)]:
        with harness_page(o.widget, tmp_path, theme=theme, width=width, scale=scale) as page:
            page.wait_for_timeout(300)
            page.screenshot(path=str(artifacts / f"view_orientation_{theme}_{width}.png"))
            assert page.fcinv_errors == []
            _check_layout(page, scale, ["fcinv-scatter", "fcinv-input", "fcinv-recon"])
            vmax = float(page.get_attribute("canvas.fcinv-input", "data-vmax"))
            assert vmax == pytest.approx(float(np.nanmax(inputs[0])), rel=1e-4)  # not a fixed 1
            assert int(page.get_attribute("canvas.fcinv-mse", "data-yticks")) >= 3
            g = page.evaluate(
                "() => { const g = document.querySelector('canvas.fcinv-scatter').fcinvGeom; return [g.px[5], g.py[5]]; }"
            )
            text = _hover(page, "canvas.fcinv-scatter", g[0], g[1])
            assert "scan 5" in text and "±" in text and "eV/Å²" in text and "MSE" in text, text
            page.focus("canvas.fcinv-scatter")
            page.keyboard.press("ArrowRight")
            assert _last_sent(page, "selected") == int(np.argsort(res.angles_deg, kind="stable")[1])


def test_noise_grid_view(tmp_path, artifacts):
    r = fake_noise_grid()
    r["VAE"].r2[0, 0, 0] = -0.4
    ng = NoiseGridExplorer(r)
    ng.select(0, 0)
    with harness_page(ng.widget, tmp_path, theme="dark", width=800, scale=2) as page:
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts / "view_noise_grid_dark_800.png"))
        assert page.fcinv_errors == []
        _check_layout(page, 2, ["fcinv-grid", "fcinv-clean", "fcinv-noisy"])
        # the negative R² cell is red, unlike any viridis colour
        red = page.evaluate(PIXEL_JS, ["canvas.fcinv-grid", 2 * 56, 2 * 16])
        assert red[0] > red[2] + 60, red
        text = _hover(page, "canvas.fcinv-grid", 50 + 1.5 * 52, 10 + 0.5 * 60)
        assert "R² = " in text and "SNR" in text and "B = 0" in text, text
        page.focus("canvas.fcinv-grid")
        page.keyboard.press("ArrowRight")
        assert _last_sent(page, "selected") == 1
        page.keyboard.press("ArrowDown")
        assert _last_sent(page, "selected") == 6


def test_latent_picker_view(tmp_path, artifacts):
    lp = LatentPicker(fake_latent_map(n=300), FakeDecoder())
    lp.set_ray(0, 7, n=12)
    lp.tool = "lasso"
    with harness_page(lp.widget, tmp_path, theme="light", width=1280, scale=1) as page:
        page.wait_for_timeout(300)
        assert page.fcinv_errors == []
        _check_layout(page, 1, ["fcinv-map", "fcinv-strip"])
        # all 12 thumbnails and their colour bar fit the strip (bug 5: the last one was cut)
        tw = float(page.get_attribute("canvas.fcinv-strip", "data-thumb-width"))
        sw = page.evaluate("() => document.querySelector('canvas.fcinv-strip').getBoundingClientRect().width")
        assert 12 * tw + 11 * 4 + 56 <= sw + 1
        # a lasso that leaves the canvas (over the colour bar and beyond) and comes back (bug 3):
        # the part before leaving is a straight line, so only the whole stroke encloses points
        box = page.locator("canvas.fcinv-map").bounding_box()
        g = page.evaluate("() => document.querySelector('canvas.fcinv-map').fcinvGeom.rect")
        x0, y0 = box["x"] + g["x"] + 5, box["y"] + g["y"] + 5
        y1 = box["y"] + g["y"] + g["h"] - 5
        page.mouse.move(x0, y0)
        page.mouse.down()
        for x in np.linspace(x0, box["x"] + box["width"] + 40, 12):
            page.mouse.move(float(x), y0)
        for y in np.linspace(y0, y1, 8):
            page.mouse.move(box["x"] + box["width"] + 40, float(y))
        for x in np.linspace(box["x"] + box["width"] + 40, x0, 12):
            page.mouse.move(float(x), y1)
        page.mouse.up()
        sel = _last_sent(page, "selected")
        px = page.evaluate("() => Array.from(document.querySelector('canvas.fcinv-map').fcinvGeom.px)")
        assert sel and len(sel) > 10, sel
        assert all(px[i] <= g["x"] + g["w"] for i in sel)
        text = _hover(
            page,
            "canvas.fcinv-map",
            px[sel[0]],
            page.evaluate(f"() => document.querySelector('canvas.fcinv-map').fcinvGeom.py[{sel[0]}]"),
        )
        assert text.startswith("point ") and "FC0 = " in text and "eV/Å²" in text, text
        page.click("button.fcinv-tool-select")
        page.focus("canvas.fcinv-map")
        page.keyboard.press("ArrowLeft")
        assert len(_last_sent(page, "selected")) == 1
        page.screenshot(path=str(artifacts / "view_latent_picker_light_1280.png"))
