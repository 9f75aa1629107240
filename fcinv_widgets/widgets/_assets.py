"""Locate the widgets' ESM sources shipped in ``fcinv_widgets/static``.

Each widget module imports its pure helpers with ``import {...} from "./common.js"``.
anywidget loads one module per widget from a string, where relative imports do
not resolve, so :func:`load_esm` inlines ``common.js`` in front of the widget
file and drops that import line. No Node build is needed at install time.
"""

from __future__ import annotations

import re
from importlib import resources

from ..errors import MissingDependencyError

_IMPORT_COMMON = re.compile(r'import\s*\{[^}]*\}\s*from\s*"\./common\.js";\s*', re.S)


def static_text(name: str) -> str:
    """Text of ``fcinv_widgets/static/<name>`` from the installed package."""
    try:
        return resources.files("fcinv_widgets").joinpath("static", name).read_text("utf-8")
    except FileNotFoundError as exc:  # pragma: no cover - broken install
        raise MissingDependencyError(f"widget asset {name!r} is missing from the installed fcinv_widgets/static") from exc


def load_esm(name: str) -> str:
    """The widget module ``name`` with ``common.js`` inlined (one self-contained ESM)."""
    common = static_text("common.js")
    body = static_text(name)
    if not _IMPORT_COMMON.search(body):
        return body
    return common + "\n" + _IMPORT_COMMON.sub("", body, count=1)
