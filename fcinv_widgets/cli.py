"""The ``fcinv`` command line: a thin shell over the library.

Each subcommand lives in its own module ``fcinv_widgets/commands/<name>.py`` that
defines ``register(subparsers)``; the module's parser sets ``func`` to a callable
``func(args) -> int``. Commands print human-readable text by default and JSON with
``--json``. A :class:`~fcinv_widgets.errors.FcinvError` is printed as one line on
stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__
from .commands._common import emit  # noqa: F401  (re-exported for old callers)
from .errors import FcinvError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fcinv",
        description="Force-constant inversion from single-crystal INS: the batch stages.",
    )
    parser.add_argument("--version", action="version", version=f"fcinv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except FcinvError as exc:
        print(f"fcinv {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fcinv {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
