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
    assert {"common.js", "fc_explorer.js", "noise_grid.js"} <= set(files)
    for f in files:
        assert any(fnmatch.fnmatch(f"static/{f}", pat) for pat in patterns), f


def test_installed_package_finds_assets():
    base = resources.files("fcinv_widgets").joinpath("static")
    assert base.joinpath("common.js").is_file()
    assert "export function floatToRGBA" in static_text("common.js")
    for name in ("fc_explorer.js", "noise_grid.js"):
        assert "export default { render }" in load_esm(name)
