"""The ``fcinv`` command line: a thin shell over the library.

Each subcommand lives in its own module ``fcinv_widgets/commands/<name>.py`` that
defines ``register(subparsers)``; the module's parser sets ``func`` to a callable
``func(args) -> int``. Commands print human-readable text by default and JSON with
``--json``. A :class:`~fcinv_widgets.errors.FcinvError`, a usage error, or an OS error
(a path that cannot be read or written) is printed as one line on stderr with exit
code 2, never as a traceback.

Outputs: a command declares them with ``set_defaults(outputs=[(dest, kind, format), …])``
(``kind`` "file" or "dir", ``format`` the fcinv HDF5 format it writes, or None). Before the
command runs, every given output path is checked (:func:`~.commands._common.check_output`)
and the first is locked against concurrent writers (:func:`~.commands._common.output_lock`); a path
inside the installed package's shipped data is refused unless the command has and was given ``--ship``
(:func:`~.commands._common.check_not_shipped`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import re
import signal
import sys
import warnings

from . import __version__
from .commands._common import ArgumentParser, check_not_shipped, check_output, output_lock
from .errors import FcinvError, FcinvWarning


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
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
    cmd = "fcinv"
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else list(argv)))
        except SystemExit as exc:  # usage errors (one line, exit 2), --help and --version (exit 0)
            return int(exc.code or 0) if not isinstance(exc.code, str) else 2
        if not getattr(args, "func", None):
            parser.print_help()
            return 1
        cmd = f"fcinv {args.command}"
        outputs = [(getattr(args, dest, None), dest, kind, fmt) for dest, kind, fmt in getattr(args, "outputs", ())]
        outputs = [o for o in outputs if o[0] is not None]
        for path, dest, kind, fmt in outputs:
            check_output(path, "--" + dest.replace("_", "-"), kind, fmt)
            check_not_shipped(path, "--" + dest.replace("_", "-"), getattr(args, "ship", None))
        lock = output_lock(outputs[0][0], "--" + outputs[0][1].replace("_", "-")) if outputs else contextlib.nullcontext()
        with lock, warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(cmd, warnings.showwarning)
            rc = int(args.func(args) or 0)
        if rc == 130:  # the command stopped cleanly on Ctrl-C: another one while we exit stays quiet
            _ignore_sigint()
        return rc
    except FcinvError as exc:
        return _fail(cmd, str(exc))
    except BrokenPipeError:  # `fcinv … | head`: the reader has gone; nothing to report to anyone
        _detach_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a pipe's writer
    except OSError as exc:  # PermissionError, IsADirectoryError, h5py's "unable to create file", a full disk, …
        return _fail(cmd, _os_message(exc))
    except MemoryError:
        return _fail(cmd, "not enough memory for this request (use a smaller batch or fewer samples)")
    except KeyboardInterrupt:
        _ignore_sigint()  # a second Ctrl-C while we report stays quiet
        print(f"{cmd}: interrupted", file=sys.stderr)
        return 130


#: a value list that starts with a negative number: "-0.5,1.2", "-30:90:1", "-1e-3 2" (argparse takes
#: only a single negative number as a value; "-30:90:1" would be read as an unknown option)
_NEGATIVE_LIST = re.compile(r"^-\.?\d[\d.eE+-]*[,:;\s][-+\d.eE,:;\s]*$")


def join_negative_values(argv: list[str]) -> list[str]:
    """``--opt -1,2`` → ``--opt=-1,2``: a list of numbers that starts with a minus sign is the value of
    the option before it (``--params -18.1,-12.8,…``, ``--angles -30:90:1``), not an option."""
    out: list[str] = []
    for tok in argv:
        prev = out[-1] if out else ""
        if _NEGATIVE_LIST.match(tok) and prev.startswith("--") and "=" not in prev and len(prev) > 2:
            out[-1] = f"{prev}={tok}"
        else:
            out.append(tok)
    return out


def _detach_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's flush at exit does not fail again on
    the closed pipe (Python's documented handling of SIGPIPE)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor (a captured stdout): nothing to detach
        pass


def _one_line_warnings(cmd: str, show):
    """A ``warnings.showwarning`` that prints an :class:`FcinvWarning` as one line on stderr
    (``fcinv CMD: warning: …``, no file and line of the library) and leaves others to ``show``."""

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, FcinvWarning):
            print(f"{cmd}: warning: {' '.join(str(message).split())}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


def _ignore_sigint() -> None:
    """Ignore further SIGINTs: the command has stopped and only reporting and exiting remain (a
    Ctrl-C then would end the process by the signal, exit status -2, instead of 130)."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # main() called from another thread: the signal is not ours to handle
        pass


def _fail(cmd: str, message: str) -> int:
    line = " ".join(str(message).split()) or "failed"
    print(f"{cmd}: error: {line}", file=sys.stderr)
    return 2


def _os_message(exc: OSError) -> str:
    """One line naming the path and the reason of an OS error (h5py's long messages cut)."""
    name = exc.filename or ""
    reason = exc.strerror or str(exc)
    text = str(exc)
    if not name and "name = '" in text:  # h5py: "Unable to … (unable to open file: name = 'x', errno = 2, …)"
        name = text.split("name = '", 1)[1].split("'", 1)[0]
    if "error message = '" in text:
        reason = text.split("error message = '", 1)[1].split("'", 1)[0]
    elif "unable to lock file" in text:
        reason = "in use by another process (the file is locked)"
    return f"{name}: {reason}" if name else reason


def run() -> None:  # pragma: no cover - the console script; tests call main() or a subprocess
    """The ``fcinv`` console script: :func:`main`, then exit with its status.

    After an interruption (status 130) the process leaves at once (``os._exit`` after flushing
    stdout and stderr): the command has closed its files and has nothing left to do, and a
    KeyboardInterrupt that passed through C code during the run (a ctypes or numba callback, code
    run by an extension) can leave the interpreter marked as killed by SIGINT, so that a normal
    shutdown would end the process by the signal (status −2) instead of 130; a Ctrl-C during
    the shutdown of torch, Dask and h5py could do the same."""
    rc = main()
    if rc == 130:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(130)
    sys.exit(rc)


if __name__ == "__main__":  # pragma: no cover
    run()
