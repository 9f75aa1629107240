"""Shared set-up of the end-to-end widget tests (JupyterLab + headless Chromium).

Every test here is marked ``browser`` and skipped, with the reason, when Playwright,
JupyterLab or Debian's Chromium (``.ci/install-browser``) is missing. ``artifacts`` is the
folder for screenshots (``test-artifacts/`` at the repository root).
"""

import importlib.util
import os
from pathlib import Path

import pytest

from fcinv_testing.browser import CHROMIUM

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE.parents[1] / "test-artifacts"


def _missing() -> str:
    for mod in ("playwright", "jupyterlab"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} not installed"
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} missing (run .ci/install-browser)"
    return ""


def pytest_collection_modifyitems(config, items):
    why = _missing()
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.browser)
            if why:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
