"""Static output of the widgets: a PNG (matplotlib, Agg) and a one-line text for the MIME bundle.

A widget view needs a live kernel or an embedded widget manager (loaded from a CDN); nbconvert
HTML offline, GitHub and nbviewer show only static outputs. Each user-facing widget class adds
``image/png`` (a rendering of its current state) and a meaningful ``text/plain`` to the bundle
of its view, so the figure survives leaving the kernel. No pyplot state is touched.
"""

from __future__ import annotations

import base64
import io
from itertools import pairwise

import numpy as np


def figure(width_in: float, height_in: float, *, wspace: float = 0.45):
    """A matplotlib Figure on the Agg canvas (no pyplot, no global state). Fixed margins
    instead of a layout engine: constrained layout doubles the rendering time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100)
    fig.subplots_adjust(
        left=0.75 / width_in, right=1 - 0.25 / width_in, bottom=0.5 / height_in, top=1 - 0.35 / height_in, wspace=wspace
    )
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def with_static(bundle, png: bytes | None, text: str):
    """The widget's MIME bundle plus ``image/png`` (base64) and ``text/plain``."""
    data, meta = bundle if isinstance(bundle, tuple) else (bundle, {})
    data = dict(data or {})
    if png:
        data["image/png"] = base64.b64encode(png).decode("ascii")
    data["text/plain"] = text
    return (data, meta) if isinstance(bundle, tuple) else data


def spectrum_axes(
    ax,
    image,
    *,
    labels=(),
    breaks=(),
    erange=(0.0, 1.0),
    e_view=None,
    freqs=None,
    title="",
    cmap="viridis",
    vmin=None,
    vmax=None,
    cbar_label="I (scaled)",
    lines="white",
    ylabel="E (meV)",
):
    """Draw a q-major (nq, nE) image on ax: q-path labels and breaks on x, E (meV) on y, a colour
    bar with its units, and optionally the dispersion ``freqs`` (nq, nmodes) meV as lines."""
    img = np.asarray(image, float)
    nq = img.shape[0]
    m = np.ma.masked_invalid(img.T)
    finite = img[np.isfinite(img)]
    if vmax is None:
        vmax = float(finite.max()) if finite.size else 1.0
    if vmin is None:
        vmin = min(0.0, float(finite.min())) if finite.size else 0.0
    if vmax <= vmin:
        vmax = vmin + 1.0
    im = ax.imshow(
        m,
        origin="lower",
        aspect="auto",
        extent=(0, nq, erange[0], erange[1]),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
    )
    ax.set_facecolor("#dddddd")
    if freqs is not None:
        f = np.asarray(freqs, float)
        x = np.arange(nq) + 0.5
        cut = {int(b) for b in breaks}
        starts = [0] + sorted(b for b in cut if 0 < b < nq) + [nq]
        for a, b in pairwise(starts):
            ax.plot(x[a:b], f[a:b], color=lines, lw=0.8, alpha=0.85)
    if labels:
        ticks, texts = zip(*[(float(x), str(t)) for x, t in labels])
        ax.set_xticks(ticks, _label_rows(ax, ticks, texts, nq))
        for t in ticks[1:-1]:
            ax.axvline(t, color=lines, lw=0.6, alpha=0.5)
    for b in breaks:
        ax.axvline(float(b), color=lines, lw=1.6)
    ax.set_xlim(0, nq)
    ev = e_view if e_view is not None else erange
    ax.set_ylim(ev[0], ev[1])
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.figure.colorbar(im, ax=ax, label=cbar_label, pad=0.01)
    return im


def _label_rows(ax, ticks, texts, nq: int) -> list:
    """q-path tick texts that do not overprint: a label too close to the previous one on the first
    row goes to a second row ("\\n" + text), one that fits neither is left out (as the browser
    views' ``labelRows`` do). Widths estimated from the font size and the axes' width."""
    fig = ax.figure
    width_px = max(ax.get_position().width * fig.get_figwidth() * fig.dpi, 1.0)
    size_px = _rc_points("xtick.labelsize") * fig.dpi / 72.0
    per_bin = width_px / max(nq, 1)
    ends = [-np.inf, -np.inf]
    out = []
    for x, t in sorted(zip(ticks, texts), key=lambda p: p[0]):
        half = 0.5 * (0.62 * size_px * max(len(t), 1) + 0.4 * size_px) / per_bin  # bins
        row = next((r for r in (0, 1) if x - half >= ends[r]), None)
        if row is None:
            out.append("")
            continue
        ends[row] = x + half
        out.append(t if row == 0 else "\n" + t)
    order = np.argsort(np.argsort(ticks, kind="stable"), kind="stable")
    return [out[i] for i in order]


def _rc_points(key: str) -> float:
    """A matplotlib rc size in points (named sizes such as "medium" resolved)."""
    import matplotlib
    from matplotlib.font_manager import FontProperties

    v = matplotlib.rcParams[key]
    return float(FontProperties(size=v).get_size_in_points())
