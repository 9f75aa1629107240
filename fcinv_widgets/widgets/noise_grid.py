"""NoiseGridExplorer: the 5x5 (B, P) noise grid as clickable R² cells.

The Stage III noise analysis should return an object with the fields of
:class:`NoiseGridResult` (any object with these attributes plugs in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import anywidget
import numpy as np
import traitlets

from ..errors import FcinvError, GridMismatchError
from . import _static
from ._assets import load_esm
from ._traits import synced_array
from .fc_explorer import _pandas


@dataclass
class NoiseGridResult:
    """Noise-robustness results on a (nB, nP) grid.

    b_levels (nB,) background levels; p_levels (nP,) peak counts; fc_names (8,);
    models e.g. ["VAE", "ResNet"]; r2 (n_models, nB, nP, 8); example_noisy
    (nB, nP, nq, nE) in [0, 1]; example_clean (nq, nE); snr (nB, nP).
    """

    b_levels: np.ndarray
    p_levels: np.ndarray
    fc_names: Sequence[str]
    models: Sequence[str]
    r2: np.ndarray
    example_noisy: np.ndarray
    example_clean: np.ndarray
    snr: np.ndarray

    def __post_init__(self):
        nb, npk = len(self.b_levels), len(self.p_levels)
        want = (len(self.models), nb, npk, len(self.fc_names))
        if np.shape(self.r2) != want:
            raise GridMismatchError(f"r2 must have shape {want}, got {np.shape(self.r2)}")
        if np.shape(self.example_noisy)[:2] != (nb, npk) or np.shape(self.example_noisy)[2:] != np.shape(self.example_clean):
            raise GridMismatchError(
                f"example_noisy must have shape ({nb}, {npk}) + example_clean.shape, got {np.shape(self.example_noisy)}"
            )
        if np.shape(self.snr) != (nb, npk):
            raise GridMismatchError(f"snr must have shape ({nb}, {npk}), got {np.shape(self.snr)}")

    @classmethod
    def from_analysis(cls, results) -> "NoiseGridResult":
        """Build from Stage III result(s) (``fcinv_widgets.analysis.noise_grid.NoiseGridResult``,
        one per model): a single result, a list, or a dict ``{model name: result}``.
        The example spectra and their SNR are taken from the first result."""
        if isinstance(results, dict):
            models, items = list(results), list(results.values())
        else:
            items = list(results) if isinstance(results, (list, tuple)) else [results]
            models = [getattr(r, "model", "") or f"model {i}" for i, r in enumerate(items)]
        if not items:
            raise FcinvError("no noise-grid results given (an empty collection)")
        first = items[0]
        return cls(
            b_levels=np.asarray(first.backgrounds, float),
            p_levels=np.asarray(first.counts, float),
            fc_names=list(first.names),
            models=models,
            r2=np.stack([np.asarray(r.r2, float) for r in items]),
            example_noisy=np.asarray(first.examples, np.float32),
            example_clean=np.asarray(first.example_clean, np.float32),
            snr=np.asarray(first.example_snr, float),
        )


class NoiseGridView(anywidget.AnyWidget):
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

    @traitlets.validate("model")
    def _check_model(self, proposal):
        if self.models and proposal["value"] not in self.models:
            raise FcinvError(f"model must be one of {list(self.models)}, got {proposal['value']!r}")
        return proposal["value"]

    @traitlets.validate("fc")
    def _check_fc(self, proposal):
        v = proposal["value"]
        if self.fc_names and not 0 <= v < len(self.fc_names):
            raise FcinvError(f"fc must be an index in [0, {len(self.fc_names)}), got {v}")
        return v

    @traitlets.validate("selected")
    def _check_selected(self, proposal):
        v = proposal["value"]
        n = len(self.b_levels) * len(self.p_levels)
        if v != -1 and not 0 <= v < n:
            raise FcinvError(f"selected must be -1 or a cell index in [0, {n}), got {v}")
        return v


class NoiseGridExplorer:
    """Clickable (B, P) grid of R² for a chosen FC and model; a click shows the
    cell's example noisy spectrum (with SNR) beside the clean one and every FC's R²."""

    def __init__(self, result, *, model: str | None = None, fc: int = 0):
        if not isinstance(result, NoiseGridResult):
            result = NoiseGridResult.from_analysis(result)
        self.result = result
        models = list(result.models)
        self.widget = NoiseGridView(
            b_levels=[float(b) for b in result.b_levels],
            p_levels=[float(p) for p in result.p_levels],
            fc_names=list(result.fc_names),
            models=models,
            clean=np.asarray(result.example_clean, np.float32),
            snr_grid=np.asarray(result.snr, np.float32),
        )
        self.widget.model = model if model is not None else models[0]
        self.widget.fc = fc
        self._update_grid()
        self.widget.observe(lambda _: self._update_grid(), names=["model", "fc"])
        self.widget.observe(lambda _: self._update_cell(), names=["selected"])

    @property
    def selected(self) -> tuple[int, int] | None:
        s = self.widget.selected
        return None if s < 0 else divmod(s, len(self.result.p_levels))

    def select(self, ib: int, ip: int) -> None:
        """Select cell (B index, P index)."""
        npk = len(self.result.p_levels)
        if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in (ib, ip)):
            raise FcinvError(f"select takes two integer cell indices (B, P), got ({ib!r}, {ip!r})")
        if not (0 <= ib < len(self.result.b_levels) and 0 <= ip < npk):
            raise FcinvError(f"cell ({ib}, {ip}) is outside the {len(self.result.b_levels)}x{npk} grid")
        self.widget.selected = ib * npk + ip

    # -- export --------------------------------------------------------------
    @property
    def data(self) -> dict:
        """Arrays behind the view: ``r2`` (n_models, nB, nP, n_fc), ``b_levels``, ``p_levels``,
        ``snr`` (nB, nP), ``models``, ``fc_names``, the shown ``r2_grid`` (nB, nP) and the selection."""
        r = self.result
        return {
            "models": list(r.models),
            "fc_names": list(r.fc_names),
            "b_levels": np.array(r.b_levels, float),
            "p_levels": np.array(r.p_levels, float),
            "r2": np.array(r.r2, float),
            "snr": np.array(r.snr, float),
            "model": self.widget.model,
            "fc": self.widget.fc,
            "r2_grid": np.array(self.widget.r2_grid),
            "selected": self.selected,
        }

    def to_dataframe(self):
        """Long table: one row per (model, B, P, FC) with R² and the cell's example SNR. Needs pandas."""
        pd = _pandas()
        r = self.result
        r2 = np.asarray(r.r2, float)
        idx = np.indices(r2.shape).reshape(4, -1)
        return pd.DataFrame(
            {
                "model": np.asarray(r.models, object)[idx[0]],
                "B": np.asarray(r.b_levels, float)[idx[1]],
                "P": np.asarray(r.p_levels, float)[idx[2]],
                "fc": np.asarray(r.fc_names, object)[idx[3]],
                "r2": r2.ravel(),
                "snr": np.asarray(r.snr, float)[idx[1], idx[2]],
            }
        )

    def __repr__(self) -> str:
        g = np.asarray(self.widget.r2_grid, float)
        name = self.result.fc_names[self.widget.fc]
        return (
            f"NoiseGridExplorer({len(self.result.b_levels)}x{len(self.result.p_levels)} (B, P) grid, "
            f"{len(self.result.models)} models; {self.widget.model} {name}: R² {np.nanmin(g):.3g}–{np.nanmax(g):.3g})"
        )

    def to_png(self) -> bytes:
        """Static PNG (matplotlib) of the shown R² grid with its values, negative R² in red."""
        from matplotlib.colors import ListedColormap

        w = self.widget
        g = np.asarray(w.r2_grid, float)
        fig = _static.figure(5.2, 4.2)
        ax = fig.subplots()
        from matplotlib import colormaps

        cmap = ListedColormap(colormaps["viridis"](np.linspace(0, 1, 256))).with_extremes(under="#d6604d")
        im = ax.imshow(g, cmap=cmap, vmin=0.0, vmax=1.0)
        for (i, j), v in np.ndenumerate(g):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="k" if v > 0.6 or v < 0 else "w")
        ax.set_xticks(range(len(w.p_levels)), [f"{p:g}" for p in w.p_levels])
        ax.set_yticks(range(len(w.b_levels)), [f"{b:g}" for b in w.b_levels])
        ax.set_xlabel("P (counts)")
        ax.set_ylabel("B (background)")
        ax.set_title(f"{w.model}: {w.fc_names[w.fc]}", fontsize=10)
        fig.colorbar(im, ax=ax, label="R² (red: < 0)", extend="min" if np.nanmin(g) < 0 else "neither")
        return _static.png_bytes(fig)

    def _repr_mimebundle_(self, **kwargs):
        return _static.with_static(self.widget._repr_mimebundle_(**kwargs), self.to_png(), repr(self))

    def _mi(self) -> int:
        return list(self.result.models).index(self.widget.model)

    def _update_grid(self) -> None:
        self.widget.r2_grid = np.asarray(self.result.r2[self._mi(), :, :, self.widget.fc], np.float32)
        self._update_cell()

    def _update_cell(self) -> None:
        w = self.widget
        with w.hold_sync():
            sel = self.selected
            if sel is not None:
                ib, ip = sel
                w.noisy = np.asarray(self.result.example_noisy[ib, ip], np.float32)
                w.snr = float(self.result.snr[ib, ip])
                w.cell_r2 = np.asarray(self.result.r2[self._mi(), ib, ip, :], np.float32)
            w.cell_frame += 1
