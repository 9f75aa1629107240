"""Helpers for driving the widgets in a real JupyterLab + headless Chromium
(browser tests and the latency benchmark). Needs the `dev` extra (jupyterlab,
playwright) and /usr/bin/chromium (see .ci/install-browser)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = os.environ.get("FCINV_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

_OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"}
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def silence_news() -> None:
    """Write share/jupyter/lab/settings/overrides.json in this environment (news pop-up off)."""
    d = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings"
    d.mkdir(parents=True, exist_ok=True)
    f = d / "overrides.json"
    data = json.loads(f.read_text()) if f.exists() else {}
    data.update(_OVERRIDES)
    f.write_text(json.dumps(data, indent=1))


def write_notebook(path: Path, cells: list[str]) -> Path:
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": c}
            for c in cells
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))
    return path


@contextlib.contextmanager
def jupyterlab(root: Path, timeout: float = 90.0):
    """Start JupyterLab on a loopback port serving ``root``; yield its base URL; stop it."""
    silence_news()
    port = _free_port()
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
        "--ServerApp.token=", "--ServerApp.password=", "--LabApp.expose_app_in_browser=True",
        "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={root}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(root / "jupyterlab.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.time()
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() - t0 > timeout:
                    raise RuntimeError(f"JupyterLab did not start; see {root / 'jupyterlab.log'}") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def chromium_page(viewport=(1500, 1000)):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            yield page
        finally:
            browser.close()


def open_and_run(page, url: str, name: str, wait_selector: str, timeout_ms: int = 120_000) -> None:
    """Open notebook ``name``, wait for its kernel, run all cells, wait for ``wait_selector``."""
    page.goto(f"{url}/lab/tree/{name}?reset", timeout=timeout_ms)
    page.wait_for_function(
        "() => window.jupyterapp && jupyterapp.shell.currentWidget && "
        "jupyterapp.shell.currentWidget.sessionContext && "
        "jupyterapp.shell.currentWidget.sessionContext.session && "
        "jupyterapp.shell.currentWidget.sessionContext.session.kernel && "
        "jupyterapp.shell.currentWidget.sessionContext.session.kernel.connectionStatus === 'connected'",
        timeout=timeout_ms,
    )
    page.evaluate("() => jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_selector(wait_selector, timeout=timeout_ms)


def kernel_exec(page, code: str, timeout_ms: int = 30_000) -> None:
    """Execute ``code`` in the notebook's kernel and wait for it to finish."""
    page.evaluate(
        """async (code) => {
            const k = jupyterapp.shell.currentWidget.sessionContext.session.kernel;
            await k.requestExecute({code}).done;
        }""",
        code,
    )


CANVAS_SUM_JS = """(sel) => {
    const c = document.querySelector(sel);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let s = 0, h = 0;
    for (let i = 0; i < d.length; i += 4) { s += d[i] + 2 * d[i + 1] + 3 * d[i + 2]; h = (h * 31 + d[i] + d[i+1]*7 + d[i+2]*13) >>> 0; }
    return [s, h];
}"""
