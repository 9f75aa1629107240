"""`make demo` starts anywhere: as root or not, with or without a display, port taken or not."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
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


def test_wayland_alone_is_a_display(monkeypatch):
    monkeypatch.setattr(demo.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert demo.has_display() and "--no-browser" not in demo.command("notebooks/00_quickstart.ipynb", 8890, "127.0.0.1")
    monkeypatch.delenv("WAYLAND_DISPLAY")
    assert not demo.has_display()


class _Exec(Exception):
    pass


def test_main_prints_the_url_it_starts_and_keeps_the_token_off_the_command_line(monkeypatch, capsys):
    """What main() hands to JupyterLab (os.execve stubbed): the printed URL's port, host and token
    are the server's; IP=0.0.0.0 listens everywhere but prints a URL on 127.0.0.1."""
    seen = {}

    def fake_execve(path, argv, env):
        seen.update(path=path, argv=argv, env=env)
        raise _Exec

    monkeypatch.setattr(demo.os, "execve", fake_execve)
    monkeypatch.setattr(demo.os, "chdir", lambda d: seen.setdefault("cwd", d))
    monkeypatch.delenv("JUPYTER_TOKEN", raising=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(_Exec):
            demo.main(["--port", str(port), "--ip", "0.0.0.0"])
    out = capsys.readouterr().out
    url = re.search(r"demo: JupyterLab on notebooks/00_quickstart.ipynb: (http://\S+)", out).group(1)
    served = int(next(a for a in seen["argv"] if a.startswith("--port=")).split("=")[1])
    assert served != port and f"port {port} is taken, using {served}" in out
    assert url.startswith(f"http://127.0.0.1:{served}/lab/tree/notebooks/00_quickstart.ipynb?token=")
    token = url.split("token=")[1]
    assert len(token) >= 32 and seen["env"]["JUPYTER_TOKEN"] == token
    assert "--ip=0.0.0.0" in seen["argv"] and not any(token in a for a in seen["argv"])
    assert seen["path"] == sys.executable and seen["cwd"] == demo.ROOT


def test_makefile_passes_port_and_ip_and_defaults_to_8888():
    if not shutil.which("make"):
        pytest.skip("needs make")

    def demo_line(*args):
        r = subprocess.run(["make", "-n", "demo", *args], cwd=ROOT, capture_output=True, text=True, check=True)
        return next(x for x in r.stdout.splitlines() if "scripts/demo.py" in x)

    assert demo_line().split("scripts/demo.py", 1)[1].split() == ["--port", "8888"]
    assert demo_line("PORT=9000", "IP=0.0.0.0").split("scripts/demo.py", 1)[1].split() == ["--port", "9000", "--ip", "0.0.0.0"]


# --- `make demo` itself, from a fresh clone, as root and as a normal user, with and without a display ---
#
# A fresh clone's `make demo` creates .venv/ and installs torch and the package with its dev
# extras (minutes and over a GB). The test seeds the clone's .venv/ with a thin venv over the
# environment running the tests instead (a .pth file naming its site-packages), made from an
# interpreter of the same X.Y that the user can execute: `make demo` then runs its own install
# step as it is (pip finds torch and the dependencies there and installs the clone itself,
# editable, into .venv/) and starts JupyterLab, all as that user.

NOBODY = 65534
VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


def _as(uid: int) -> tuple[str, ...]:
    """The prefix that runs a command as ``uid`` (nothing for the user running the tests)."""
    return () if uid == os.geteuid() else ("setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups")


def _can(uid: int, *cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*_as(uid), *cmd], capture_output=True, text=True, check=False, timeout=60, **kw)


_VERSION_OF = "import sys, venv; print('%d.%d' % sys.version_info[:2])"


def _python_for(uid: int) -> str:
    """An interpreter of this Python's X.Y (so this environment's compiled packages load) that ``uid`` can run."""
    candidates = [
        getattr(sys, "_base_executable", None),
        os.path.realpath(sys.executable),
        shutil.which(f"python{VERSION}"),
        f"/usr/bin/python{VERSION}",
        f"/usr/local/bin/python{VERSION}",
    ]
    tried = []
    for c in dict.fromkeys(c for c in candidates if c):
        # test -x first: the path itself must be usable (make stats .venv/bin/python, whose link points here)
        r = _can(uid, "sh", "-c", 'test -x "$1" || exit 126; exec "$1" -c "$2"', "sh", c, _VERSION_OF)
        if r.returncode == 0 and r.stdout.strip() == VERSION:
            return c
        why = "not executable by that user" if r.returncode == 126 else (r.stderr.strip().splitlines() or [r.stdout.strip()])[-1]
        tried.append(f"{c}: {why}")
    pytest.skip(
        f"no Python {VERSION} with venv that uid {uid} can execute (the test environment's compiled packages need that "
        f"X.Y); tried {'; '.join(tried)}. Install one readable by all (e.g. Debian's python{VERSION} and python3-venv)."
    )


def _environment_for(uid: int, scratch: Path) -> Path:
    """sys.prefix if ``uid`` can read its site-packages, else a hard-linked copy of it in ``scratch``."""
    site_dir = Path(sysconfig.get_paths()["purelib"])
    if _can(uid, "test", "-r", str(site_dir), "-a", "-x", str(site_dir)).returncode == 0:
        return Path(sys.prefix)
    copy = scratch / "env"
    if os.stat(sys.prefix).st_dev != os.stat(scratch).st_dev:
        pytest.skip(f"uid {uid} cannot read {site_dir} and {scratch} is on another file system (no hard-linked copy)")
    subprocess.run(["cp", "-al", sys.prefix, str(copy)], check=True)  # hard links: seconds, no data copied
    copy.chmod(0o755)
    return copy


def _fresh_clone(scratch: Path, uid: int) -> tuple[Path, Path, Path]:
    """A clone of this repository at HEAD with a thin .venv/, owned by ``uid``: (clone, home, environment)."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    clone, home = scratch / "fcinv-widgets", scratch / "home"
    # --no-hardlinks: the clone is chown-ed below, which must not reach this repository's objects
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", "--detach", head], check=True)
    env_prefix = _environment_for(uid, scratch)
    python = _python_for(uid)
    subprocess.run([python, "-m", "venv", "--without-pip", str(clone / ".venv")], check=True)
    purelib = subprocess.run(
        [str(clone / ".venv/bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = Path(sysconfig.get_paths()["purelib"]).relative_to(sys.prefix)
    (Path(purelib) / "_fcinv_test_environment.pth").write_text(f"{env_prefix / ours}\n")
    home.mkdir()
    if uid != os.geteuid():
        subprocess.run(["chown", "-R", f"{uid}:{uid}", str(clone), str(home)], check=True)
    return clone, home, env_prefix


def _session_processes(sid: int) -> list[tuple[int, int, list[str]]]:
    """(pid, real uid, argv) of every process in session ``sid``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if os.getsid(int(d.name)) != sid:
                continue
            argv = (d / "cmdline").read_bytes().decode(errors="replace").split("\0")
            uid = int(next(x for x in (d / "status").read_text().splitlines() if x.startswith("Uid:")).split()[1])
        except (OSError, StopIteration):
            continue
        found.append((int(d.name), uid, argv))
    return found


def _make_demo(clone: Path, home: Path, env_prefix: Path, uid: int, port: int, display: str | None = None) -> dict:
    """`make demo PORT=port` in ``clone`` as ``uid``; waits for the printed URL and the server's answer, then stops it."""
    drop = ("DISPLAY", "WAYLAND_DISPLAY", "JUPYTER_TOKEN", "PYTHONPATH", "VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("JUPYTER_")}
    here = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p != here)
    env.update(HOME=str(home), JUPYTER_PATH=str(env_prefix / "share" / "jupyter"))  # the widgets' lab extensions
    opened = home / "browser-opened"
    if display is not None:
        browser = home / "browser.sh"  # stands in for the browser JupyterLab opens: records what it was given
        browser.write_text(f'#!/bin/sh\necho "$@" >> "{opened}"\n')
        browser.chmod(0o755)
        if uid != os.geteuid():
            os.chown(browser, uid, uid)
        env.update(DISPLAY=display, BROWSER=str(browser))
    proc = subprocess.Popen(
        [*_as(uid), "make", "demo", f"PORT={port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=str(clone),
        start_new_session=True,
    )
    lines, url, t0 = [], None, time.time()
    try:
        while url is None and time.time() - t0 < 300:  # a cold pip can take a while on a loaded machine
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"demo: JupyterLab on \S+: (http://\S+)", line)
            url = m.group(1) if m else None
        assert url, "no URL printed:\n" + "".join(lines)
        base, token = url.split("/lab/", 1)[0], url.split("token=", 1)[1]
        status, t1 = None, time.time()
        while status is None and time.time() - t1 < 180:
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    status, body = r.status, r.read().decode()
            except OSError:
                assert proc.poll() is None, "make demo exited:\n" + "".join(lines) + proc.stdout.read()
                time.sleep(1)
        assert status == 200 and "JupyterLab" in body, f"{url} answered {status}"
        with urllib.request.urlopen(f"{base}/api/kernelspecs?token={token}", timeout=30) as r:
            specs = json.loads(r.read().decode())
        servers = [(pid, u, argv) for pid, u, argv in _session_processes(proc.pid) if "jupyterlab" in argv]
        browser_args = ""
        if display is not None:
            t2 = time.time()
            while not opened.exists() and time.time() - t2 < 60:
                time.sleep(0.5)
            browser_args = opened.read_text() if opened.exists() else ""
        return {
            "url": url,
            "out": "".join(lines),
            "kernels": specs.get("kernelspecs", {}),
            "servers": servers,
            "browser": browser_args,
        }
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session of the make we started
            proc.wait()


@pytest.fixture
def scratch():
    """A folder any user can enter (pytest's own tmp_path sits under a 0700 folder of root's)."""
    d = Path(tempfile.mkdtemp(prefix="fcinv-demo-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("user", ["this user", "nobody"])
def test_make_demo_from_a_fresh_clone(user, scratch):
    """`make demo` in a fresh clone starts JupyterLab on the quickstart as the user running the tests
    (root in CI and containers: --allow-root) and, from root through setpriv, as user nobody (no
    --allow-root): headless (--no-browser, the URL with its token printed) and with a display (the
    browser opened), on the next free port when PORT is taken."""
    if not hasattr(os, "geteuid"):
        pytest.skip("POSIX only (setpriv, /proc)")
    if not shutil.which("make") or not shutil.which("git"):
        pytest.skip("needs make and git")
    if user == "nobody":
        if os.geteuid() != 0:
            pytest.skip("needs root to run make demo as user nobody (65534)")
        if not shutil.which("setpriv"):
            pytest.skip("needs setpriv (util-linux) to run make demo as user nobody")
    uid = os.geteuid() if user == "this user" else NOBODY
    clone, home, env_prefix = _fresh_clone(scratch, uid)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for display in (None, ":99"):
            r = _make_demo(clone, home, env_prefix, uid, port, display)
            out = r["out"]
            assert f":{port}/" not in r["url"] and f"port {port} is taken" in out
            assert "/lab/tree/notebooks/00_quickstart.ipynb?token=" in r["url"]
            assert "python3" in r["kernels"]
            assert r["servers"], "no JupyterLab process in the session of make demo:\n" + out
            for _pid, server_uid, argv in r["servers"]:
                assert server_uid == uid, f"JupyterLab runs as uid {server_uid}, not {uid}"
                assert ("--allow-root" in argv) == (uid == 0), argv
                assert ("--no-browser" in argv) == (display is None), argv
                assert str(clone / ".venv" / "bin" / "python") in argv[0] or argv[0] == ".venv/bin/python", argv
            assert ("running as root: --allow-root" in out) == (uid == 0)
            assert ("no display" in out) == (display is None)
            if display is None:
                assert r["browser"] == "" and "pip install" in out  # the first run installs the clone
            else:
                assert r["browser"].strip(), "JupyterLab did not open the browser with a display:\n" + out
                assert "pip install" not in out  # installed once: the second run starts at once
    # make demo installed this clone (editable) into its .venv, for that user
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    code = "import fcinv_widgets; print(fcinv_widgets.__file__)"
    r = _can(uid, str(clone / ".venv/bin/python"), "-c", code, env=env, cwd=str(home))
    assert r.returncode == 0 and r.stdout.strip().startswith(str(clone)), r.stdout + r.stderr
