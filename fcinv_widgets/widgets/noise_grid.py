"""NoiseGridExplorer: the 5x5 (B, P) noise grid as clickable R² cells.

Shows one or several :class:`fcinv_widgets.analysis.noise_grid.NoiseGridResult` (one per
model, as ``run_noise_grid`` returns and ``NoiseGridResult.save`` writes); the widget holds
no physics and no result type of its own.
"""

from __future__ import annotations

import os

import anywidget
import numpy as np
import traitlets

from ..analysis.noise_grid import NoiseGridResult
from ..errors import FcinvError, GridMismatchError
from . import _static
from ._assets import load_esm
from ._traits import RollsBack, WidgetInputError, int_arg, refuses, synced_array
from .fc_explorer import _pandas


def _as_results(results) -> dict[str, NoiseGridResult]:
    """``{model name: NoiseGridResult}`` from a result, a saved result's path, a list of either
    (names from each result's ``model``) or a dict ``{model name: result or path}``; all on
    one (B, P) grid with the same FC names."""
    if isinstance(results, dict):
        pairs = [(str(k), v) for k, v in results.items()]
    else:
        items = list(results) if isinstance(results, (list, tuple)) else [results]
        pairs = [("", r) for r in items]
    if not pairs:
        raise FcinvError("no noise-grid results given (an empty collection)")
    out: dict[str, NoiseGridResult] = {}
    for i, (name, r) in enumerate(pairs):
        if isinstance(r, (str, os.PathLike)):
            r = NoiseGridResult.load(r)
        if not isinstance(r, NoiseGridResult):
            raise FcinvError(
                f"NoiseGridExplorer takes analysis.noise_grid.NoiseGridResult objects (or their saved files), got {type(r).__name__}"
            )
        name = name or r.model or f"model {i}"
        levels = {"B": np.asarray(r.backgrounds, float), "P": np.asarray(r.counts, float)}
        for what, lv in levels.items():
            if not np.isfinite(lv).all():  # (NaN ≠ NaN: a grid was said to differ from itself)
                raise FcinvError(f"noise grid {name!r}: its {what} levels must be finite numbers, got {lv.tolist()}")
        if name in out:
            raise FcinvError(f"two noise-grid results are named {name!r}: pass a dict {{name: result}}")
        out[name] = r
    first = next(iter(out.values()))
    for name, r in out.items():
        same = (
            list(r.names) == list(first.names)
            and np.array_equal(r.backgrounds, first.backgrounds)
            and np.array_equal(r.counts, first.counts)
        )
        if not same:
            raise GridMismatchError(
                f"noise grid {name!r} has other B levels, P levels or FC names than {next(iter(out))!r}: one grid per explorer"
            )
    return out


class NoiseGridView(RollsBack, anywidget.AnyWidget):
    _esm = load_esm("noise_grid.js")

    b_levels = traitlets.List().tag(sync=True)
    p_levels = traitlets.List().tag(sync=True)
    fc_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    models = traitlets.List(traitlets.Unicode()).tag(sync=True)
    model = traitlets.Unicode("").tag(sync=True)
    fc = traitlets.Int(0).tag(sync=True)
    r2_grid = synced_array("float32", ndim=2)
    selected = traitlets.Int(-1).tag(sync=True)
    clean = synced_array("float32", ndim=2)
    noisy = synced_array("float32", ndim=2)
    snr = traitlets.Float(0.0).tag(sync=True)
    snr_grid = synced_array("float32", ndim=2)  # (nB, nP) SNR of each cell's example spectrum
    cell_r2 = synced_array("float32", ndim=1)
    cell_frame = traitlets.Int(0).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)  # a browser update the kernel refused (RollsBack)

    @traitlets.validate("model")
    @refuses
    def _check_model(self, proposal):
        if self.models and proposal["value"] not in self.models:
            raise WidgetInputError(f"model must be one of {list(self.models)}, got {proposal['value']!r}")
        return proposal["value"]

    @traitlets.validate("fc")
    @refuses
    def _check_fc(self, proposal):
        v = proposal["value"]
        if self.fc_names and not 0 <= v < len(self.fc_names):
            raise WidgetInputError(f"fc must be an index in [0, {len(self.fc_names)}), got {v}")
        return v

    @traitlets.validate("selected")
    @refuses
    def _check_selected(self, proposal):
        v = proposal["value"]
        n = len(self.b_levels) * len(self.p_levels)
        if v != -1 and not 0 <= v < n:
            raise WidgetInputError(f"selected must be -1 or a cell index in [0, {n}), got {v}")
        return v


class NoiseGridExplorer:
    """Clickable (B, P) grid of R² for a chosen FC and model; a click shows the
    cell's example noisy spectrum (with SNR) beside the clean one and every FC's R²."""

    def __init__(self, results, *, model: str | None = None, fc: int = 0):
        """``results``: an ``analysis.noise_grid.NoiseGridResult`` (or the path of a saved one), a
        list of them, or a dict ``{model name: result}``. The example spectra and their SNR
        shown for a cell are the first result's."""
        self.results = _as_results(results)
        models = list(self.results)
        first = self.results[models[0]]
        self._r2 = np.stack([np.asarray(r.r2, float) for r in self.results.values()])  # (n_models, nB, nP, n_fc)
        self._b = np.asarray(first.backgrounds, float)
        self._p = np.asarray(first.counts, float)
        self._names = [str(n) for n in first.names]
        self._examples = first.examples
        self._snr = np.asarray(first.example_snr, float)
        self.widget = NoiseGridView(
            b_levels=[float(b) for b in self._b],
            p_levels=[float(p) for p in self._p],
            fc_names=self._names,
            models=models,
            clean=np.asarray(first.example_clean, np.float32),
            snr_grid=np.asarray(self._snr, np.float32),
        )
        if model is not None and (not isinstance(model, str) or model not in models):
            raise WidgetInputError(f"model must be one of {models}, got {model!r}")
        self.widget.model = model if model is not None else models[0]
        self.widget.fc = int_arg(fc, "fc", 0, len(self._names))
        self._update_grid()
        self.widget.observe(lambda _: self._update_grid(), names=["model", "fc"])
        self.widget.observe(lambda _: self._update_cell(), names=["selected"])

    @property
    def selected(self) -> tuple[int, int] | None:
        s = self.widget.selected
        return None if s < 0 else divmod(s, len(self._p))

    def select(self, ib: int, ip: int) -> None:
        """Select cell (B index, P index)."""
        npk = len(self._p)
        if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in (ib, ip)):
            raise FcinvError(f"select takes two integer cell indices (B, P), got ({ib!r}, {ip!r})")
        if not (0 <= ib < len(self._b) and 0 <= ip < npk):
            raise FcinvError(f"cell ({ib}, {ip}) is outside the {len(self._b)}x{npk} grid")
        self.widget.selected = ib * npk + ip

    # -- export --------------------------------------------------------------
    @property
    def data(self) -> dict:
        """Arrays behind the view: ``r2`` (n_models, nB, nP, n_fc), ``b_levels``, ``p_levels``,
        ``snr`` (nB, nP: the SNR of each cell's example spectrum), ``models``, ``fc_names``, the
        shown ``r2_grid`` (nB, nP) and the selection."""
        return {
            "models": list(self.results),
            "fc_names": list(self._names),
            "b_levels": self._b.copy(),
            "p_levels": self._p.copy(),
            "r2": self._r2.copy(),
            "snr": self._snr.copy(),
            "model": self.widget.model,
            "fc": self.widget.fc,
            "r2_grid": np.array(self.widget.r2_grid),
            "selected": self.selected,
        }

    def to_dataframe(self):
        """Long table: one row per (model, B, P, FC) with R² and the cell's example SNR. Needs pandas."""
        pd = _pandas()
        r2 = self._r2
        idx = np.indices(r2.shape).reshape(4, -1)
        return pd.DataFrame(
            {
                "model": np.asarray(list(self.results), object)[idx[0]],
                "B": self._b[idx[1]],
                "P": self._p[idx[2]],
                "fc": np.asarray(self._names, object)[idx[3]],
                "r2": r2.ravel(),
                "snr": self._snr[idx[1], idx[2]],
            }
        )

    def __repr__(self) -> str:
        g = np.asarray(self.widget.r2_grid, float)
        name = self._names[self.widget.fc]
        return (
            f"NoiseGridExplorer({len(self._b)}x{len(self._p)} (B, P) grid, "
            f"{len(self.results)} models; {self.widget.model} {name}: R² {np.nanmin(g):.3g}–{np.nanmax(g):.3g})"
        )

    def to_png(self) -> bytes:
        """Static PNG (matplotlib) of the shown R² grid with its values: viridis on [0, 1], negative R²
        in a red ramp that deepens down to −1 (as the browser view draws it), an undefined (NaN) R²
        grey and hatched with "–"."""
        from matplotlib import colormaps
        from matplotlib.colors import ListedColormap, LinearSegmentedColormap
        from matplotlib.patches import Rectangle

        w = self.widget
        g = np.asarray(w.r2_grid, float)
        fig = _static.figure(5.2, 4.2)
        ax = fig.subplots()
        negative = bool(np.nanmin(g) < 0) if np.isfinite(g).any() else False
        vir = colormaps["viridis"](np.linspace(0, 1, 256))
        if negative:  # [−1, 0): pale to deep red (the browser's ramp), [0, 1]: viridis
            reds = LinearSegmentedColormap.from_list("r2neg", ["#b2182b", "#f4cbbb"])(np.linspace(0, 1, 256))
            cmap, vmin = ListedColormap(np.vstack([reds, vir])), -1.0
        else:
            cmap, vmin = ListedColormap(vir), 0.0
        cmap = cmap.with_extremes(bad="#969696", under="#b2182b")
        im = ax.imshow(g, cmap=cmap, vmin=vmin, vmax=1.0)
        for (i, j), v in np.ndenumerate(g):
            if not np.isfinite(v):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#555555", lw=0))
                ax.text(j, i, "–", ha="center", va="center", fontsize=10, color="k")
                continue
            r, gg, b, _ = cmap((max(v, vmin) - vmin) / (1.0 - vmin))
            dark = 0.2126 * r + 0.7152 * gg + 0.0722 * b < 0.5
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="w" if dark else "k")
        ax.set_xticks(range(len(w.p_levels)), [f"{p:g}" for p in w.p_levels])
        ax.set_yticks(range(len(w.b_levels)), [f"{b:g}" for b in w.b_levels])
        ax.set_xlabel("P (counts)")
        ax.set_ylabel("B (background)")
        title = f"{w.model}: {w.fc_names[w.fc]}"
        if not np.isfinite(g).all():
            title += "  (– : R² undefined, FC constant in the test set)"
        ax.set_title(title, fontsize=10 if np.isfinite(g).all() else 8)
        below = negative and bool(np.nanmin(g) < -1)
        fig.colorbar(im, ax=ax, label="R² (red: < 0)" if negative else "R²", extend="min" if below else "neither")
        return _static.png_bytes(fig)

    def _repr_mimebundle_(self, **kwargs):
        return _static.with_static(self.widget._repr_mimebundle_(**kwargs), self.to_png(), repr(self))

    def _mi(self) -> int:
        return list(self.results).index(self.widget.model)

    def _update_grid(self) -> None:
        self.widget.r2_grid = np.asarray(self._r2[self._mi(), :, :, self.widget.fc], np.float32)
        self._update_cell()

    def _update_cell(self) -> None:
        w = self.widget
        with w.hold_sync():
            sel = self.selected
            if sel is not None:
                ib, ip = sel
                w.noisy = np.asarray(self._examples[ib, ip], np.float32)
                w.snr = float(self._snr[ib, ip])
                w.cell_r2 = np.asarray(self._r2[self._mi(), ib, ip, :], np.float32)
            w.cell_frame += 1
