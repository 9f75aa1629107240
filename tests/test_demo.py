"""`make demo` starts anywhere: as root or not, with or without a display, port taken or not."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import demo  # noqa: E402  (scripts/ is not a package)


def test_flags_follow_user_and_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(demo.sys, "platform", "linux")
    monkeypatch.setattr(demo.os, "geteuid", lambda: 0)
    cmd = demo.command("notebooks/00_quickstart.ipynb", 8890, "127.0.0.1")
    assert "--allow-root" in cmd and "--no-browser" in cmd and "--port=8890" in cmd
    monkeypatch.setattr(demo.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("DISPLAY", ":0")
    cmd = demo.command("notebooks/00_quickstart.ipynb", 8890, "127.0.0.1")
    assert "--allow-root" not in cmd and "--no-browser" not in cmd


def test_a_taken_port_is_skipped():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert not demo.port_is_free(taken, "127.0.0.1")
        assert demo.free_port(taken, "127.0.0.1") != taken


def _start_and_get(tmp_path, prefix=()):
    """Start the launcher headless with its first port taken; GET the printed URL; stop it."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "JUPYTER_TOKEN")}
    home = tmp_path / "home"
    home.mkdir(mode=0o777, exist_ok=True)
    os.chmod(home, 0o777)
    env.update(
        HOME=str(home),
        JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
        JUPYTER_DATA_DIR=str(home / ".local/share/jupyter"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        IPYTHONDIR=str(home / ".ipython"),
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.Popen(
            [*prefix, sys.executable, str(ROOT / "scripts" / "demo.py"), "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=str(tmp_path),
            start_new_session=True,
        )
        lines, url = [], None
        try:
            t0 = time.time()
            while url is None and time.time() - t0 < 60:
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
                m = re.search(r"demo: JupyterLab on \S+: (http://\S+)", line)
                url = m.group(1) if m else None
            assert url, "no URL printed:\n" + "".join(lines)
            assert f":{port}/" not in url and any(f"port {port} is taken" in x for x in lines)
            status = None
            while status is None and time.time() - t0 < 240:
                try:
                    with urllib.request.urlopen(url, timeout=10) as r:
                        status, body = r.status, r.read().decode()
                except OSError:
                    assert proc.poll() is None, "JupyterLab exited:\n" + "".join(lines) + proc.stdout.read()
                    time.sleep(1)
            assert status == 200 and "JupyterLab" in body
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the group of the server we started
                proc.wait()
    return "".join(lines)


@pytest.mark.slow
def test_demo_starts_headless(tmp_path):
    out = _start_and_get(tmp_path)
    assert "no display" in out
    if os.geteuid() == 0:
        assert "--allow-root" in out


AS_NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def _nobody_can_run_python() -> bool:
    return subprocess.run([*AS_NOBODY, "sh", "-c", f'test -x "{sys.executable}"'], check=False).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("setpriv"),
    reason="needs root and setpriv to run as another user",
)
def test_demo_starts_headless_as_a_normal_user(tmp_path):
    """The same as user 'nobody' (setpriv drops root): no --allow-root, still starts."""
    if not _nobody_can_run_python():
        pytest.skip(f"{sys.executable} is not executable by a normal user here (e.g. a venv on a Python under /root)")
    os.chmod(tmp_path, 0o777)
    out = _start_and_get(tmp_path, prefix=AS_NOBODY)
    assert "--allow-root" not in out and "no display" in out
