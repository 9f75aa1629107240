"""The widgets' JS ships inside the package (no Node build at install)."""

import fnmatch
import tomllib
from importlib import resources
from pathlib import Path

from fcinv_widgets.widgets._assets import load_esm, static_text

ROOT = Path(__file__).resolve().parents[2]


def test_static_js_is_package_data():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = conf["tool"]["setuptools"]["package-data"]["fcinv_widgets"]
    files = sorted(p.name for p in (ROOT / "fcinv_widgets" / "static").glob("*.js"))
    assert {"common.js", "fc_explorer.js", "noise_grid.js", "orientation.js", "latent_picker.js"} <= set(files)
    for f in files:
        assert any(fnmatch.fnmatch(f"static/{f}", pat) for pat in patterns), f


def test_installed_package_finds_assets():
    base = resources.files("fcinv_widgets").joinpath("static")
    assert base.joinpath("common.js").is_file()
    assert "export function floatToRGBA" in static_text("common.js")
    for name in ("fc_explorer.js", "noise_grid.js", "orientation.js", "latent_picker.js"):
        assert "export default { render }" in load_esm(name)


def test_inlined_modules_load_in_node(tmp_path):
    """The ESM anywidget receives (common.js inlined) is one valid module: no clashing names."""
    import shutil
    import subprocess

    import pytest

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    for name in ("orientation.js", "latent_picker.js", "noise_grid.js", "fc_explorer.js"):
        f = tmp_path / (name[:-3] + ".mjs")
        f.write_text(load_esm(name), "utf-8")
        r = subprocess.run(
            [node, "-e", f"import({str(f.as_uri())!r}).then(m => {{ if (!m.default.render) process.exit(3); }})"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, (name, r.stderr)


def test_top_level_exports():
    import fcinv_widgets
    from fcinv_widgets import widgets

    for name in ("FCExplorer", "NoiseGridExplorer", "OrientationScatter", "LatentPicker"):
        assert getattr(fcinv_widgets, name) is getattr(widgets, name)
        assert name in widgets.__all__
