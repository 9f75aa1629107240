"""Helpers for driving the widgets in a real JupyterLab + headless Chromium
(browser tests and the latency benchmark). Needs the `dev` extra (jupyterlab,
playwright) and /usr/bin/chromium (see .ci/install-browser). Test support, not part of
the installed package."""

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

_OVERRIDES = {"@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"}}


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
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": c} for c in cells],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))
    return path


@contextlib.contextmanager
def jupyterlab(root: Path, timeout: float = 90.0, app: str = "lab"):
    """Start JupyterLab (``app="lab"``) or Notebook 7 (``app="notebook"``) on a loopback port
    serving ``root``; yield its base URL; stop it. Both expose ``window.jupyterapp``."""
    silence_news()
    port = _free_port()
    cls = "LabApp" if app == "lab" else "JupyterNotebookApp"
    # user settings (e.g. a theme a test switches to) stay in the temp dir, never in $HOME
    settings = root / ".jupyter-user-settings"
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        app,
        "--no-browser",
        f"--port={port}",
        "--ip=127.0.0.1",
        "--ServerApp.token=",
        "--ServerApp.password=",
        f"--{cls}.expose_app_in_browser=True",
        f"--{cls}.user_settings_dir={settings}",
        f"--{cls}.workspaces_dir={settings / 'workspaces'}",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={root}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    # notebook kernels inherit the server's environment: tests/ on their path, for fcinv_testing
    from . import TESTS_DIR

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)
    log = open(root / "jupyterlab.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env)
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


def open_and_run(page, url: str, name: str, wait_selector: str, timeout_ms: int = 120_000, app: str = "lab") -> None:
    """Open notebook ``name`` (in JupyterLab or, with ``app="notebook"``, Notebook 7), wait for
    its kernel, run all cells, wait for ``wait_selector``."""
    page.goto(f"{url}/lab/tree/{name}?reset" if app == "lab" else f"{url}/notebooks/{name}", timeout=timeout_ms)
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


def set_from_page(page, model_id: str, key: str, value) -> None:
    """Set trait ``key`` of widget model ``model_id`` from the page, as another front end or a
    custom script would (the built-in controls clamp their input): through the notebook's widget
    manager, ``model.set`` + ``save_changes``."""
    ok = page.evaluate(
        """async ([id, key, value]) => {
            const nb = jupyterapp.shell.currentWidget.content;
            for (const cell of nb.widgets) {
                const stack = cell.outputArea ? [...cell.outputArea.widgets] : [];
                while (stack.length) {
                    const x = stack.pop();
                    if (x._manager && x._manager.promise) {
                        const m = await (await x._manager.promise).get_model(id);
                        m.set(key, value); m.save_changes();
                        return true;
                    }
                    if (x.widgets) stack.push(...x.widgets);
                    if (x.layout && x.layout.widgets) stack.push(...x.layout.widgets);
                }
            }
            return false;
        }""",
        [model_id, key, value],
    )
    assert ok, "no widget manager found in the notebook's outputs"


def wait_kernel_idle(page, timeout_ms: int = 120_000) -> None:
    """Wait until the current notebook's kernel reports ``idle`` (run-all finished), so that
    JupyterLab's end-of-execution focus changes are over before a test types."""
    page.wait_for_function(
        "() => jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
        timeout=timeout_ms,
    )


def press_counted(page, locator, key: str, counter_js: str, n: int, timeout_ms: int = 15_000) -> int:
    """Press ``key`` on ``locator`` ``n`` times, waiting after each press until ``counter_js``
    (a JS expression giving a number) has grown by one. A press that produced nothing while the
    element had lost the focus (JupyterLab moved it between Playwright's focus and the key) is
    pressed again, at most twice in all; one lost while the element held the focus fails the test.
    Returns the number of presses repeated that way."""
    repeated = 0
    for i in range(n):
        before = int(page.evaluate(f"() => Number({counter_js})"))
        while True:
            locator.press(key)
            try:
                page.wait_for_function(f"() => Number({counter_js}) >= {before + 1}", timeout=timeout_ms)
                break
            except Exception:
                focused = locator.evaluate("el => document.activeElement === el")
                active = page.evaluate(
                    "() => { const a = document.activeElement; return a ? a.tagName + '.' + a.className : null; }"
                )
                if focused or repeated >= 2:
                    raise AssertionError(
                        f"press {i + 1} of {n} ({key}) painted nothing in {timeout_ms} ms; "
                        f"focus on the element: {focused}; active element: {active}; repeated so far: {repeated}"
                    ) from None
                repeated += 1
    return repeated


CANVAS_SUM_JS = """(sel) => {
    const c = document.querySelector(sel);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let s = 0, h = 0;
    for (let i = 0; i < d.length; i += 4) { s += d[i] + 2 * d[i + 1] + 3 * d[i + 2]; h = (h * 31 + d[i] + d[i+1]*7 + d[i+2]*13) >>> 0; }
    return [s, h];
}"""


# ---------------------------------------------------------------- a kernel-free page for one widget view
THEMES = {
    "light": {
        "--jp-layout-color0": "#ffffff",
        "--jp-layout-color1": "#ffffff",
        "--jp-ui-font-color1": "rgba(0,0,0,0.87)",
        "--jp-ui-font-color2": "rgba(0,0,0,0.54)",
        "--jp-border-color1": "#bdbdbd",
    },
    "dark": {
        "--jp-layout-color0": "#111111",
        "--jp-layout-color1": "#212121",
        "--jp-ui-font-color1": "rgba(255,255,255,0.87)",
        "--jp-ui-font-color2": "rgba(255,255,255,0.54)",
        "--jp-border-color1": "#616161",
    },
    "high-contrast": {
        "--jp-layout-color0": "#000000",
        "--jp-layout-color1": "#000000",
        "--jp-ui-font-color1": "#ffffff",
        "--jp-ui-font-color2": "#ffff00",
        "--jp-border-color1": "#ffffff",
    },
}


def _state_json(view) -> str:
    """The view's synced state as JSON, binary buffers as base64 (decoded in the page)."""
    import base64

    state = view.get_state()
    out = {}
    for k, v in state.items():
        if isinstance(v, dict) and isinstance(v.get("buffer"), (memoryview, bytes)):
            v = dict(v, buffer={"__b64__": base64.b64encode(bytes(v["buffer"])).decode("ascii")})
        out[k] = v
    return json.dumps(out)


def harness_html(view, theme: str = "light", width: int = 1280) -> str:
    """A standalone page rendering ``view`` (an anywidget) with a stub model (no kernel): state
    changes made by the view are kept in ``window.fcinvSent``; the page's body carries the
    JupyterLab CSS variables of ``theme`` and the output area is ``width`` px wide."""
    css = ";".join(f"{k}:{v}" for k, v in THEMES[theme].items())
    esm = view._esm if isinstance(view._esm, str) else Path(view._esm).read_text()
    return f"""<!doctype html><html><head><meta charset="utf-8"></head>
<body style="{css};background:var(--jp-layout-color0);color:var(--jp-ui-font-color1);margin:0;font-family:sans-serif">
<div class="jp-OutputArea-output" id="out" style="width:{width}px;box-sizing:border-box;padding:4px"></div>
<script type="module">
const state = {_state_json(view)};
for (const [k, v] of Object.entries(state)) {{
  if (v && v.buffer && v.buffer.__b64__) {{
    const raw = atob(v.buffer.__b64__); const u = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) u[i] = raw.charCodeAt(i);
    v.buffer = new DataView(u.buffer);
  }}
}}
const handlers = {{}};
window.fcinvSent = []; window.fcinvMsgs = [];
const model = {{
  get: (k) => state[k],
  set: (k, v) => {{ state[k] = v; (handlers["change:" + k] || []).forEach((f) => f()); }},
  save_changes: () => window.fcinvSent.push(JSON.parse(JSON.stringify(state, (k, v) => v instanceof DataView ? null : v))),
  on: (ev, f) => {{ (handlers[ev] = handlers[ev] || []).push(f); }},
  off: (ev) => {{ if (ev) delete handlers[ev]; }},
  send: (m) => window.fcinvMsgs.push(m),
}};
window.fcinvModel = model;
const blob = new Blob([{json.dumps(esm)}], {{type: "text/javascript"}});
const mod = await import(URL.createObjectURL(blob));
window.fcinvErrors = [];
mod.default.render({{model, el: document.getElementById("out")}});
window.fcinvReady = true;
</script></body></html>"""


@contextlib.contextmanager
def harness_page(view, tmp_dir: Path, theme: str = "light", width: int = 1280, scale: float = 1.0, viewport=(1400, 1000)):
    """Chromium page showing ``view`` in :func:`harness_html` (file:// URL); yields the page.
    Page errors are collected in ``page.fcinv_errors``."""
    from playwright.sync_api import sync_playwright

    f = Path(tmp_dir) / f"harness_{type(view).__name__}_{theme}_{width}.html"
    f.write_text(harness_html(view, theme, width), encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=scale)
            page.fcinv_errors = []
            page.on("pageerror", lambda e: page.fcinv_errors.append(str(e)))
            page.goto(f.as_uri())
            page.wait_for_function("() => window.fcinvReady === true", timeout=30_000)
            yield page
        finally:
            browser.close()
