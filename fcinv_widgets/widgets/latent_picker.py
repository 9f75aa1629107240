"""LatentPicker: the UMAP of a VAE's latent means, coloured by a force constant, with click
and lasso selection, overlay points (experiment, single scans, noisy inputs) and a ray tool
that decodes spectra along the straight latent line between two picked points.

Two levels, like the other widgets:

* :class:`LatentPickerView` - the synced anywidget (state and binary arrays only).
* :class:`LatentPicker` - the user-facing object, built from a
  :class:`~fcinv_widgets.analysis.latent.LatentMap` and optionally the trained VAE
  (:class:`~fcinv_widgets.models.inverter.Inverter`: ``encode`` for overlay spectra,
  ``decode`` for the ray). It places overlays with ``LatentMap.place`` and decodes the
  ray with :func:`~fcinv_widgets.analysis.latent.decode_ray`.

Own canvas anywidget rather than jupyter-scatter: see docs/widgets.md.
"""

from __future__ import annotations

import operator
import os
from typing import Any

import anywidget
import numpy as np
import traitlets

from ..errors import FcinvError, GridMismatchError
from ..validate import real_array
from . import _static
from ._assets import load_esm
from ._traits import RollsBack, WidgetInputError, int_arg, need_attrs, refuses, synced_array
from .fc_explorer import UNITS, _pandas

TOOLS = ("select", "lasso", "ray")


class LatentSelectionError(WidgetInputError):
    """A selection, ray end point or tool the latent map does not have."""


def _index(v, n: int, what: str) -> int:
    try:
        i = operator.index(v)
    except TypeError:
        raise LatentSelectionError(f"{what} must be integer point indices, got {v!r}") from None
    if not 0 <= i < n:
        raise LatentSelectionError(f"{what}: index {i} is outside the map's {n} points [0, {n})")
    return int(i)


class LatentPickerView(RollsBack, anywidget.AnyWidget):
    """Synced state of the latent picker. Arrays cross as bytes (dtype + shape)."""

    _esm = load_esm("latent_picker.js")

    names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    units = traitlets.Unicode(UNITS).tag(sync=True)
    fc = traitlets.Int(0).tag(sync=True)
    xy = synced_array("float32", ndim=2)  # (N, 2) UMAP positions
    color = synced_array("float32", ndim=1)  # (N,) the chosen FC of every map point
    params = synced_array("float32", ndim=2)  # (N, n_fc) eV/Å² of every map point (hover read-out)
    color_range = traitlets.List(traitlets.Float(), default_value=[0.0, 1.0]).tag(sync=True)
    tool = traitlets.Unicode("select").tag(sync=True)
    selected = traitlets.List().tag(sync=True)  # sorted unique point indices
    overlay_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    overlay_xy = synced_array("float32", ndim=2)  # (M, 2)
    overlay_group = synced_array("int32", ndim=1)  # (M,) index into overlay_names
    ray = traitlets.List().tag(sync=True)  # [] or [a, b], each a point index or [x, y] on the map
    ray_n = traitlets.Int(8).tag(sync=True)
    ray_xy = synced_array("float32", ndim=2)  # (2, 2) end points on the map
    strip = synced_array("float32", ndim=3)  # (ray_n, nq, nE) decoded spectra
    strip_frame = traitlets.Int(0).tag(sync=True)
    can_decode = traitlets.Bool(False).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)

    def _n(self) -> int:
        return 0 if self.xy is None else len(self.xy)

    @traitlets.validate("fc")
    @refuses
    def _check_fc(self, proposal):
        v = proposal["value"]
        if self.names and not 0 <= v < len(self.names):
            raise LatentSelectionError(f"fc must be an index in [0, {len(self.names)}), got {v}")
        return v

    @traitlets.validate("tool")
    @refuses
    def _check_tool(self, proposal):
        if proposal["value"] not in TOOLS:
            raise LatentSelectionError(f"tool must be one of {list(TOOLS)}, got {proposal['value']!r}")
        return proposal["value"]

    @traitlets.validate("ray_n")
    @refuses
    def _check_ray_n(self, proposal):
        v = proposal["value"]
        if not 2 <= v <= 64:
            raise LatentSelectionError(f"ray_n (spectra decoded along the ray) must be in [2, 64], got {v}")
        return v

    @traitlets.validate("selected")
    @refuses
    def _check_selected(self, proposal):
        n = self._n()
        return sorted({_index(v, n, "selected") for v in proposal["value"]})

    @traitlets.validate("ray")
    @refuses
    def _check_ray(self, proposal):
        v = list(proposal["value"])
        if not v:
            return []
        if len(v) != 2:
            raise LatentSelectionError(f"ray needs two end points (point indices or [x, y]), got {len(v)}")
        out = []
        for p in v:
            if isinstance(p, (list, tuple, np.ndarray)):
                xy = real_array(p, "a ray end point given as a position [x, y]")
                if xy.shape != (2,) or not np.all(np.isfinite(xy)):
                    raise LatentSelectionError(f"a ray end point given as a position must be [x, y], got {p!r}")
                if self._n():  # at most one map width beyond the map: the decoder extrapolates past it
                    lo, hi = self.xy.min(axis=0), self.xy.max(axis=0)
                    span = np.maximum(hi - lo, 1e-6)
                    if np.any(xy < lo - span) or np.any(xy > hi + span):
                        raise LatentSelectionError(
                            f"ray end point [{xy[0]:.4g}, {xy[1]:.4g}] lies far outside the map "
                            f"(x {lo[0]:.3g}…{hi[0]:.3g}, y {lo[1]:.3g}…{hi[1]:.3g})"
                        )
                out.append([float(xy[0]), float(xy[1])])
            else:
                out.append(_index(p, self._n(), "ray"))
        return out


class LatentPicker:
    """UMAP scatter of the latent map coloured by a chosen FC, with click/lasso selection,
    overlay points and a ray tool decoding spectra along a latent line.

    Parameters
    ----------
    latent_map : a ``LatentMap`` (``embedding`` (N, 2), ``mu`` (N, latent), ``params`` (N, 8)
        eV/Å², ``names``, ``place(mu)``).
    model : optional trained VAE (``Inverter``): ``encode(spectra) -> (mu, logvar)`` places
        overlay spectra; ``decode(z) -> (n, nq, nE)`` draws the ray.
    decoder : optional object with ``decode(z)`` used for the ray instead of ``model``.
    fc : FC colouring the map; ray_n : spectra decoded along a ray.
    """

    def __init__(self, latent_map: Any, model: Any = None, *, decoder: Any = None, fc: int = 0, ray_n: int = 8):
        if isinstance(latent_map, (str, os.PathLike)):  # LatentPicker("ge-vae") or a folder of `fcinv latent --out`
            from ..analysis.latent import LatentMap

            name = latent_map
            latent_map = LatentMap.load(name)
            if model is None and decoder is None and not os.path.exists(name):  # a shipped model's map: its decoder too
                from ..models import load_model

                model = load_model(str(name))
        need_attrs(
            latent_map,
            ("embedding", "params", "mu", "names"),
            "LatentPicker",
            "a latent map (analysis.latent.LatentMap.load of `fcinv latent --out`, or a shipped name such as 'ge-vae')",
        )
        if model is not None and hasattr(latent_map, "check_model"):
            latent_map.check_model(model)  # another model's latent space was accepted without a word
        self.map = latent_map
        self.model = model
        self.decoder = decoder if decoder is not None else (model if hasattr(model, "decode") else None)
        emb = real_array(latent_map.embedding, "the map's embedding (UMAP positions)", allow_nan=False)
        params = real_array(latent_map.params, "the map's params (eV/Å²)")
        if emb.ndim != 2 or emb.shape[1] != 2:
            raise GridMismatchError(f"the map's embedding must be (N, 2), got {emb.shape}")
        if params.ndim != 2 or params.shape[0] != len(emb) or np.shape(latent_map.mu)[0] != len(emb):
            raise GridMismatchError(f"the map has {len(emb)} points but params {params.shape} and mu {np.shape(latent_map.mu)}")
        if isinstance(latent_map.names, str) or len(latent_map.names) != params.shape[1]:
            raise GridMismatchError(
                f"the map has {params.shape[1]} FC columns but {len(latent_map.names)} names"
                if not isinstance(latent_map.names, str)
                else "the map's names must be a list of FC names, got a string"
            )
        if len(emb) == 0:
            raise GridMismatchError("the map has no points")
        self._overlays: dict[str, np.ndarray] = {}
        self.ray_z: np.ndarray | None = None
        fc = int_arg(fc, "fc", 0, params.shape[1] if params.ndim == 2 else 1)
        ray_n = int_arg(ray_n, "ray_n (spectra decoded along the ray)", 2, 65)
        self.widget = LatentPickerView(
            names=[str(s) for s in latent_map.names],
            xy=emb.astype(np.float32),
            ray_n=ray_n,
            params=params.astype(np.float32),
            can_decode=self.decoder is not None,
        )
        self.widget.fc = fc
        self._update_color()
        self.widget.observe(lambda _: self._update_color(), names=["fc"])
        self._quiet = False
        self.widget.observe(lambda _: None if self._quiet else self._update_ray(), names=["ray", "ray_n"])

    # -- public API -------------------------------------------------------
    @property
    def selected(self) -> list[int]:
        """Indices of the selected map points (sorted)."""
        return list(self.widget.selected)

    @selected.setter
    def selected(self, indices) -> None:
        if indices is None:
            self.widget.selected = []
            return
        try:
            values = list(np.atleast_1d(np.asarray(indices)).tolist())
        except (TypeError, ValueError):  # ragged lists, …: the point indices cannot be read
            raise LatentSelectionError(f"selected must be point indices (whole numbers), got {indices!r}") from None
        self.widget.selected = values

    def select(self, indices) -> None:
        self.selected = indices

    @property
    def selected_params(self) -> np.ndarray:
        """FCs (k, 8) eV/Å² of the selected points."""
        return np.asarray(self.map.params, float)[self.selected]

    @property
    def selected_mu(self) -> np.ndarray:
        """Latent means (k, latent) of the selected points."""
        return np.asarray(self.map.mu, float)[self.selected]

    @property
    def tool(self) -> str:
        return self.widget.tool

    @tool.setter
    def tool(self, value: str) -> None:
        if not isinstance(value, str):
            raise LatentSelectionError(f"tool must be one of 'select', 'lasso', 'ray', got {value!r}")
        self.widget.tool = value

    def set_ray(self, a, b, n: int | None = None) -> np.ndarray | None:
        """Decode spectra along the latent line between ``a`` and ``b`` (point indices or
        [x, y] map positions); returns the strip (n, nq, nE), also shown in the widget."""
        if n is not None:
            n = int_arg(n, "n (spectra decoded along the ray)", 2, 65)
        if n is not None and n != self.widget.ray_n:
            self._quiet = True  # decode once, with the new n and the new end points
            try:
                self.widget.ray_n = n
            finally:
                self._quiet = False
        frame = self.widget.strip_frame
        self.widget.ray = [a, b]
        if self.widget.strip_frame == frame:  # same end points as before: no change event
            self._update_ray()
        if self.widget.error:
            raise FcinvError(self.widget.error)
        return self.ray_spectra

    def clear_ray(self) -> None:
        self.widget.ray = []

    @property
    def ray_spectra(self) -> np.ndarray | None:
        """The decoded spectra (n, nq, nE) along the current ray, or None."""
        return self.widget.strip

    def add_points(self, name: str, data, kind: str = "auto") -> np.ndarray:
        """Overlay points named ``name`` (replacing any of that name): ``data`` is map positions
        (M, 2), latent means (M, latent) or spectra (M, nq, nE) / (nq, nE) (encoded with the
        model). ``kind``: "auto", "xy", "latent" or "spectra". Returns the (M, 2) positions."""
        if not isinstance(name, str) or not name.strip():
            raise LatentSelectionError(f"an overlay needs a name (non-empty text), got {name!r}")
        if not isinstance(kind, str) or kind not in ("auto", "xy", "latent", "spectra"):
            raise LatentSelectionError(f"kind must be 'auto', 'xy', 'latent' or 'spectra', got {kind!r}")
        xy = self._to_xy(data, kind)
        self._overlays[name] = xy
        self._send_overlays()
        return xy

    def remove_points(self, name: str) -> None:
        if name not in self._overlays:
            raise LatentSelectionError(f"no overlay named {name!r}; have {list(self._overlays)}")
        del self._overlays[name]
        self._send_overlays()

    @property
    def overlays(self) -> dict:
        return dict(self._overlays)

    # -- export --------------------------------------------------------------
    @property
    def data(self) -> dict:
        """Arrays behind the view: ``xy`` (N, 2) map positions, ``params`` (N, n_fc) eV/Å²,
        ``names``, ``selected`` indices, ``overlays`` {name: (M, 2)}, ``ray_spectra`` or None."""
        return {
            "xy": np.array(self.map.embedding, float),
            "params": np.array(self.map.params, float),
            "names": list(self.widget.names),
            "units": self.widget.units,
            "fc": self.widget.fc,
            "selected": self.selected,
            "overlays": {k: v.copy() for k, v in self._overlays.items()},
            "ray_spectra": None if self.ray_spectra is None else np.array(self.ray_spectra),
        }

    def to_dataframe(self):
        """One row per map point: x, y, every FC (eV/Å²) and whether it is selected. Needs pandas."""
        pd = _pandas()
        d = self.data
        cols = {"x": d["xy"][:, 0], "y": d["xy"][:, 1]}
        for k, name in enumerate(d["names"]):
            cols[name] = d["params"][:, k]
        sel = np.zeros(len(d["xy"]), bool)
        sel[d["selected"]] = True
        cols["selected"] = sel
        return pd.DataFrame(cols)

    def __repr__(self) -> str:
        w = self.widget
        lo, hi = w.color_range
        ov = f"; overlays {', '.join(self._overlays)}" if self._overlays else ""
        ray = f"; ray of {w.ray_n} decoded spectra" if w.strip is not None else ""
        return (
            f"LatentPicker({len(w.xy)} points coloured by {w.names[w.fc]} {lo:.3g}–{hi:.3g} {w.units}; "
            f"{len(w.selected)} selected{ov}{ray})"
        )

    def to_png(self) -> bytes:
        """Static PNG (matplotlib): the map coloured by the chosen FC, the selection and overlays."""
        w = self.widget
        fig = _static.figure(5.6, 4.4)
        ax = fig.subplots()
        xy = np.asarray(w.xy, float)
        lo, hi = w.color_range
        sc = ax.scatter(
            xy[:, 0],
            xy[:, 1],
            c=np.asarray(w.color, float),
            s=5,
            cmap="viridis",
            vmin=lo,
            vmax=hi,
            alpha=0.35 if w.selected else 0.9,
            linewidths=0,
        )
        if w.selected:
            s = np.asarray(w.selected)
            ax.scatter(
                xy[s, 0],
                xy[s, 1],
                c=np.asarray(w.color, float)[s],
                s=22,
                cmap="viridis",
                vmin=lo,
                vmax=hi,
                edgecolors="k",
                linewidths=0.6,
            )
        for g, (name, pts) in enumerate(self._overlays.items()):
            ax.scatter(pts[:, 0], pts[:, 1], marker="*^Px"[g % 4], s=80, edgecolors="k", label=name)
        if self._overlays:
            ax.legend(fontsize=8)
        if w.ray_xy is not None:
            r = np.asarray(w.ray_xy, float)
            ax.plot(r[:, 0], r[:, 1], "-o", color="#d50000", lw=1.5, ms=4)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("latent map (UMAP)", fontsize=10)
        from matplotlib.cm import ScalarMappable

        fig.colorbar(ScalarMappable(norm=sc.norm, cmap=sc.cmap), ax=ax, label=f"{w.names[w.fc]} ({w.units})")
        return _static.png_bytes(fig)

    def _repr_mimebundle_(self, **kwargs):
        return _static.with_static(self.widget._repr_mimebundle_(**kwargs), self.to_png(), repr(self))

    # -- internals --------------------------------------------------------
    def _to_xy(self, data, kind: str) -> np.ndarray:
        from ..validate import as_real_array

        arr = as_real_array(data, "overlay data")
        latent = np.shape(self.map.mu)[1]
        if kind == "auto":
            if arr.ndim == 1 and arr.size in (2, latent):
                arr = arr[None]
            if arr.ndim == 2 and arr.shape[1] == 2 and latent != 2:
                kind = "xy"
            elif arr.ndim == 2 and arr.shape[1] == latent:
                kind = "latent"
            elif arr.ndim in (2, 3):
                kind = "spectra"
            else:
                raise GridMismatchError(
                    f"overlay data of shape {arr.shape} is neither (M, 2) positions, (M, {latent}) latent means nor spectra"
                )
        if kind == "xy":
            xy = np.atleast_2d(arr)
            if xy.shape[1] != 2:
                raise GridMismatchError(f"overlay positions must be (M, 2), got {arr.shape}")
        elif kind == "latent":
            xy = np.asarray(self.map.place(np.atleast_2d(arr)), float)
        elif kind == "spectra":
            if self.model is None or not hasattr(self.model, "encode"):
                raise FcinvError("placing spectra needs the VAE: LatentPicker(latent_map, model)")
            spectra = arr[None] if arr.ndim == 2 else arr
            mu = np.asarray(self.model.encode(spectra)[0], float)
            xy = np.asarray(self.map.place(mu), float)
        else:
            raise LatentSelectionError(f"kind must be 'auto', 'xy', 'latent' or 'spectra', got {kind!r}")
        if not np.all(np.isfinite(xy)):
            raise FcinvError("overlay positions are not finite")
        return xy

    def _send_overlays(self) -> None:
        names = list(self._overlays)
        w = self.widget
        with w.hold_sync():
            if names:
                w.overlay_xy = np.concatenate([self._overlays[k] for k in names]).astype(np.float32)
                w.overlay_group = np.concatenate([np.full(len(self._overlays[k]), g, np.int32) for g, k in enumerate(names)])
            else:
                w.overlay_xy = None
                w.overlay_group = None
            w.overlay_names = names

    def _update_color(self) -> None:
        v = np.asarray(self.map.params, float)[:, self.widget.fc]
        lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
        with self.widget.hold_sync():
            self.widget.color = v.astype(np.float32)
            self.widget.color_range = [lo, hi if hi > lo else lo + 1.0]

    def _endpoint(self, p) -> tuple[np.ndarray, np.ndarray]:
        """(latent vector, map position) of a ray end point: a map point, or a map position
        (latent = inverse-distance average of the 8 nearest map points' μ in the 2-D map)."""
        emb = np.asarray(self.map.embedding, float)
        mu = np.asarray(self.map.mu, float)
        if isinstance(p, list):
            xy = np.asarray(p, float)
            d = np.sqrt(((emb - xy) ** 2).sum(1))
            idx = np.argsort(d)[:8]
            w = 1.0 / (d[idx] + 1e-9)
            return (mu[idx] * w[:, None]).sum(0) / w.sum(), xy
        return mu[p], emb[p]

    def _update_ray(self) -> None:
        from ..analysis.latent import decode_ray

        w = self.widget
        ray = w.ray
        strip, ray_xy, err, z = None, None, "", None
        if len(ray) == 2:
            (z0, p0), (z1, p1) = self._endpoint(ray[0]), self._endpoint(ray[1])
            ray_xy = np.stack([p0, p1]).astype(np.float32)
            if self.decoder is None:
                err = "the ray needs a decoder: LatentPicker(latent_map, model) with the trained VAE"
            else:
                try:
                    z, imgs = decode_ray(self.decoder, z0, z1, n=w.ray_n)
                    imgs = np.asarray(imgs, np.float32)
                    if imgs.ndim == 4 and imgs.shape[1] == 1:
                        imgs = imgs[:, 0]
                    if imgs.ndim != 3:
                        raise GridMismatchError(f"the decoder returned shape {imgs.shape}, expected (n, nq, nE)")
                    strip = imgs
                except Exception as exc:  # keep the widget usable, show why
                    err = f"decoding the ray failed: {exc}"
                    z = None
        self.ray_z = z
        with w.hold_sync():
            w.ray_xy = ray_xy
            w.strip = strip
            w.error = err
            w.strip_frame += 1
