"""Start JupyterLab on the quickstart wherever this runs (what ``make demo`` calls).

- as root (containers, CI runners, many JupyterHub images): passes ``--allow-root``;
- without a display (``$DISPLAY`` and ``$WAYLAND_DISPLAY`` unset on Linux, e.g. over SSH):
  passes ``--no-browser``; the URL with its token is printed either way;
- when the port (default 8888) is taken: the next free one (8889, …), chosen here so the
  printed URL is the one the server listens on.

The token is random (or ``$JUPYTER_TOKEN``) and handed over in the environment, not on the
command line. Usage: ``python scripts/demo.py [--port N] [--ip ADDR] [NOTEBOOK]``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NOTEBOOK = "notebooks/00_quickstart.ipynb"


def port_is_free(port: int, ip: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def free_port(start: int, ip: str, tries: int = 100) -> int:
    """``start`` if free, else the next free port above it (else one the system picks)."""
    for port in range(start, min(start + tries, 65536)):
        if port_is_free(port, ip):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def command(notebook: str, port: int, ip: str) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        notebook,
        f"--port={port}",
        f"--ip={ip}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={ROOT}",
    ]
    if is_root():
        cmd.append("--allow-root")
    if not has_display():
        cmd.append("--no-browser")
    return cmd


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("notebook", nargs="?", default=DEFAULT_NOTEBOOK, help="path relative to the repository root")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8888), help="first port to try (default 8888)")
    p.add_argument(
        "--ip",
        default=os.environ.get("IP") or "127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 inside a container you reach from outside)",
    )
    args = p.parse_args(argv)
    if not (ROOT / args.notebook).is_file():
        print(f"demo: error: notebook {args.notebook} not found under {ROOT}", file=sys.stderr)
        return 2
    if not 1 <= args.port <= 65535:
        print(f"demo: error: --port must be in 1…65535, got {args.port}", file=sys.stderr)
        return 2
    port = free_port(args.port, args.ip)
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24)
    env = dict(os.environ, JUPYTER_TOKEN=token)
    cmd = command(args.notebook, port, args.ip)
    host = "127.0.0.1" if args.ip in ("0.0.0.0", "", "*") else args.ip
    url = f"http://{host}:{port}/lab/tree/{args.notebook}?token={token}"
    notes = []
    if port != args.port:
        notes.append(f"port {args.port} is taken, using {port}")
    if is_root():
        notes.append("running as root: --allow-root")
    if not has_display():
        notes.append("no display: open the URL below in a browser (through an SSH tunnel if remote)")
    for n in notes:
        print(f"demo: {n}")
    print(f"demo: JupyterLab on {args.notebook}: {url}", flush=True)
    os.chdir(ROOT)
    os.execve(cmd[0], cmd, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
