"""FCExplorer: FC sliders with a live I(q,E) heatmap and dispersion overlay.

Two levels:

* :class:`FCExplorerView` - the synced anywidget (state and binary arrays only,
  no physics).
* :class:`FCExplorer` - the user-facing object, built from a ``Material`` (or a
  ``ForwardModel`` plus names/domain). It computes spectra, frequencies and
  stability with the forward model on the latest slider values only.

Coalescing: the browser sends at most one request at a time (``request_seq``);
while the kernel computes, newer slider values replace the pending one, and the
next request goes out when ``rendered_seq`` comes back (latest value wins,
never a queue).
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, Sequence

import anywidget
import numpy as np
import traitlets

from ..errors import FcinvError, GridMismatchError
from ..validate import fc_box, real_array
from . import _jsforward, _static
from ._assets import load_esm
from ._traits import RollsBack, WidgetGridError, WidgetInputError, need_attrs, range_arg, refuses, synced_array

UNITS = "eV/Å²"
INTENSITY_UNITS = "scaled"  # forward-model images are scaled to a maximum of 1
# reference names of materials.get_material(name, reference=...) (the domains branch: REFERENCES)
REFERENCE_KINDS = ("measured", "dft", "umlff")
REFERENCE_LABELS = {"measured": "measured (fit to INS)", "dft": "first-principles (DFT)", "umlff": "uMLFF ensemble"}


def auto_energy_range(freqs_mev, erange, margin: float = 0.12) -> list[float]:
    """Energy window (meV) from the grid's lower edge to the highest branch plus ``margin``
    (relative), rounded up to a tick step and kept inside the grid's range ``erange``."""
    f = np.asarray(freqs_mev, float)
    f = f[np.isfinite(f)]
    lo, hi = float(erange[0]), float(erange[1])
    if f.size == 0 or f.max() <= lo:
        return [lo, hi]
    raw = (float(f.max()) - lo) / 8.0  # the tick step of the JS axis (common.js niceTicks)
    mag = 10.0 ** np.floor(np.log10(raw))
    step = mag * next(m for m in (1, 2, 2.5, 5, 10) if raw / mag <= m)
    top = float(f.max()) * (1.0 + margin)
    return [lo, float(min(hi, np.ceil(top / step) * step))]


class SliderDomainError(WidgetInputError):
    """A force-constant value outside the slider's training domain."""


class ForwardModelLike(Protocol):
    def frequencies(self, theta: np.ndarray) -> np.ndarray: ...  # (N, nq, nmodes) meV
    def spectra(self, theta: np.ndarray) -> np.ndarray: ...  # (N, nq, nE) in [0, 1]
    def is_stable(self, theta: np.ndarray) -> np.ndarray: ...  # (N,) bool


class FCExplorerView(RollsBack, anywidget.AnyWidget):
    """Synced state of the FC explorer. Arrays cross as bytes (dtype + shape)."""

    _esm = _jsforward.wrap_esm(load_esm("fc_explorer.js"))  # kernel-free frames: widgets/_jsforward.py

    names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    units = traitlets.Unicode(UNITS).tag(sync=True)
    domain = synced_array("float64", ndim=2)
    reference = synced_array("float64", ndim=1)
    values = traitlets.List(traitlets.Float()).tag(sync=True)
    request_seq = traitlets.Int(0).tag(sync=True)
    rendered_seq = traitlets.Int(0).tag(sync=True)
    image = synced_array("float32", ndim=2)
    compare = synced_array("float32", ndim=2)
    freqs = synced_array("float32", ndim=2)
    q_x = synced_array("float64", ndim=1)
    q_rlu = synced_array("float64", ndim=2)  # (nq, 3) bin centres in conventional r.l.u., None if unknown
    q_labels = traitlets.List().tag(sync=True)
    q_breaks = traitlets.List(traitlets.Float()).tag(sync=True)
    q_range = traitlets.List(traitlets.Float(), default_value=[0.0, 1.0]).tag(sync=True)
    break_indices = traitlets.List(traitlets.Int()).tag(sync=True)
    energy_range = traitlets.List(traitlets.Float(), default_value=[0.0, 1.0]).tag(sync=True)
    e_view = traitlets.List(traitlets.Float(), default_value=[]).tag(sync=True)  # shown E window (meV)
    intensity_units = traitlets.Unicode(INTENSITY_UNITS).tag(sync=True)
    title = traitlets.Unicode("model").tag(sync=True)
    reference_options = traitlets.List(traitlets.Unicode()).tag(sync=True)
    reference_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    reference_name = traitlets.Unicode("").tag(sync=True)
    stable = traitlets.Bool(True).tag(sync=True)
    frame = traitlets.Int(0).tag(sync=True)  # bumped after each compute; the view repaints on it
    error = traitlets.Unicode("").tag(sync=True)
    # the forward model's precomputed blocks for JS frames (binary buffers; None: kernel only)
    jsforward = traitlets.Any(None, allow_none=True).tag(sync=True, **_jsforward.payload_serialization)

    @traitlets.validate("values")
    @refuses
    def _check_values(self, proposal):
        vals = list(proposal["value"])
        if self.domain is None:
            return vals
        dom = self.domain
        if len(vals) != dom.shape[0]:
            raise SliderDomainError(f"values needs {dom.shape[0]} force constants ({UNITS}), got {len(vals)}")
        for i, v in enumerate(vals):
            lo, hi = dom[i]
            if not np.isfinite(v) or v < lo - 1e-9 * max(1.0, abs(lo)) or v > hi + 1e-9 * max(1.0, abs(hi)):
                name = self.names[i] if i < len(self.names) else f"FC{i}"
                raise SliderDomainError(f"{name} = {v!r} {UNITS} is outside its training domain [{lo:.4g}, {hi:.4g}]")
        return vals

    @traitlets.validate("e_view")
    @refuses
    def _check_e_view(self, proposal):
        v = list(proposal["value"])
        if not v:
            return v
        lo, hi = self.energy_range
        if len(v) != 2 or not all(np.isfinite(v)) or not v[0] < v[1]:
            raise WidgetInputError(f"energy window must be [E_min, E_max] meV with E_min < E_max, got {v}")
        if v[0] < lo - 1e-9 or v[1] > hi + 1e-9:
            raise WidgetInputError(f"energy window {v} meV is outside the grid's range [{lo:g}, {hi:g}] meV")
        return [float(x) for x in v]

    @traitlets.validate("compare")
    @refuses
    def _check_compare(self, proposal):
        arr = proposal["value"]
        if arr is not None and self.image is not None and arr.shape != self.image.shape:
            raise WidgetGridError(f"comparison spectrum has shape {arr.shape}, the model grid is {self.image.shape} (nq, nE)")
        return arr


class FCExplorer:
    """Sliders over the top-8 force constants with a live forward view.

    Parameters
    ----------
    material : object with ``grid``, ``active_names``, ``domain`` (8, 2) eV/Å²,
        ``reference_params`` (n_params,), ``active`` (indices) and
        ``forward_model(sigma_mev=..., backend=...)``. ``None`` when
        ``forward_model``, ``names``, ``domain``, ``reference`` and ``grid`` are given.
    forward_model : a ``ForwardModel`` (reuses its backend, e.g. CuPy); built from
        ``material`` with ``backend``/``sigma_mev`` when omitted.
    compare : optional (nq, nE) spectrum shown beside the model with the difference image.
    js_forward : ship the forward model's precomputed blocks to the browser, which then
        computes every slider frame itself (the kernel recomputes and stays the ground
        truth; see :mod:`fcinv_widgets.widgets._jsforward`); also what :meth:`save_html` needs.
    """

    def __init__(
        self,
        material: Any = None,
        *,
        forward_model: ForwardModelLike | None = None,
        names: Sequence[str] | None = None,
        domain: np.ndarray | None = None,
        reference: np.ndarray | None = None,
        grid: Any = None,
        backend: str = "numpy",
        sigma_mev: float = 1.0,
        compare: np.ndarray | None = None,
        js_forward: bool = True,
    ):
        if isinstance(material, str):  # a preset's name: FCExplorer("Ge")
            from ..materials import get_material

            material = get_material(material)
        if material is not None:
            need_attrs(
                material,
                ("grid", "active_names", "domain", "reference_params"),
                "FCExplorer",
                "a material (a preset name such as 'Ge', or a materials.Material)",
            )
            if forward_model is None and not hasattr(material, "forward_model"):
                raise WidgetInputError(f"FCExplorer: {type(material).__name__} has no forward_model(); pass forward_model=")
            from ..validate import finite_number

            sigma_mev = finite_number(sigma_mev, "sigma_mev (meV)", positive=True, maximum=100.0)
            grid = grid if grid is not None else material.grid
            names = names if names is not None else list(material.active_names)
            domain = domain if domain is not None else np.asarray(material.domain, float)
            if reference is None:
                ref_all = np.asarray(material.reference_params, float)
                active = getattr(material, "active", None)
                reference = ref_all[np.asarray(active)] if active is not None else ref_all[: len(names)]
            if forward_model is None:
                forward_model = material.forward_model(sigma_mev=sigma_mev, backend=backend)
        if forward_model is None or names is None or domain is None or reference is None or grid is None:
            raise FcinvError("FCExplorer needs a material, or forward_model + names + domain + reference + grid")
        domain = fc_box(domain, len(names), "domain")
        reference = real_array(reference, f"reference ({UNITS})", allow_nan=False)
        if reference.shape != (len(names),):
            raise FcinvError(f"reference must have shape ({len(names)},), got {reference.shape}")
        self.forward_model = forward_model
        self._fused = "return_stable" in inspect.signature(forward_model.spectra).parameters
        self.grid = grid
        q = grid.q
        nq = int(grid.shape[0])
        # plotting coordinate = bin index (image columns are bins): centres at i + 0.5,
        # labels at bin-edge indices, breaks at the bin index where the path jumps
        qx = np.arange(nq, dtype=float) + 0.5
        breaks = [int(b) for b in getattr(q, "breaks", [])]
        e = np.asarray(grid.e.centers, dtype=float)
        edges = getattr(grid.e, "edges", None)
        erange = [float(edges[0]), float(edges[-1])] if edges is not None else [float(e[0]), float(e[-1])]
        rlu = getattr(q, "conventional_qpoints", None)
        rlu = np.asarray(rlu, float) if rlu is not None and np.shape(rlu) == (nq, 3) else None
        self.material = material
        self.widget = FCExplorerView(
            q_rlu=rlu,
            title=str(getattr(material, "name", "") or "model"),
            names=list(names),
            domain=domain,
            reference=reference,
            q_x=qx,
            q_labels=[[float(x), str(t)] for x, t in q.labels],
            q_breaks=[float(b) for b in breaks],
            break_indices=breaks,
            q_range=[0.0, float(nq)],
            energy_range=erange,
            jsforward=_jsforward.forward_payload(forward_model) if js_forward else None,
        )
        # values are checked against the domain; the reference may sit at an edge
        self.widget.values = [float(v) for v in np.clip(reference, domain[:, 0], domain[:, 1])]
        self._compute()
        self.widget.e_view = auto_energy_range(self.widget.freqs, erange)
        if compare is not None:
            self.compare(compare)
        self._setup_reference_switch()
        self.widget.observe(self._on_values, names="values")
        self.widget.observe(self._on_reference_name, names="reference_name")
        self.widget.on_msg(self._on_msg)

    # -- public API -------------------------------------------------------
    @property
    def theta(self) -> np.ndarray:
        """Current slider values (8,) in eV/Å²."""
        return np.asarray(self.widget.values, dtype=float)

    @theta.setter
    def theta(self, value) -> None:

        vals = real_array(value, f"theta ({UNITS})", allow_nan=False)
        self.widget.values = [float(v) for v in np.atleast_1d(vals).ravel()]

    def reset(self) -> None:
        """Move every slider back to the reference force constants."""
        dom = self.widget.domain
        self.widget.values = [float(v) for v in np.clip(self.widget.reference, dom[:, 0], dom[:, 1])]

    def compare(self, spectrum: np.ndarray | None) -> None:
        """Show a measured/simulated (nq, nE) spectrum beside the model, with the difference."""
        if spectrum is None:
            self.widget.compare = None
            return

        arr = real_array(spectrum, "comparison spectrum").astype(np.float32)
        if arr.ndim == 2 and arr.shape == self.widget.image.shape and not np.isfinite(arr).any():
            raise FcinvError("comparison spectrum: no finite pixel (all NaN): nothing to compare")
        if arr.shape != self.widget.image.shape:
            raise GridMismatchError(
                f"comparison spectrum has shape {arr.shape}, the model grid is {self.widget.image.shape} (nq, nE)"
            )
        self.widget.compare = arr

    def save_html(self, path, title: str = "FCExplorer"):
        """Write a standalone page (no kernel, no CDN; works from file://) where the sliders move
        the spectrum, computed in the page by the JavaScript forward model. Returns the path."""
        return _jsforward.save_html(self.widget, path, title, references=self._reference_table())

    def static_view(self, height_px: int = 460):
        """The same standalone page in an iframe (IPython HTML): it survives nbconvert/nbviewer
        export and works there offline, with no kernel and no widget manager."""
        return _jsforward.static_iframe(self.widget, height_px, references=self._reference_table())

    @property
    def stable(self) -> bool:
        return bool(self.widget.stable)

    # -- energy window ------------------------------------------------------
    @property
    def energy_range(self) -> tuple[float, float]:
        """Energy window (meV) shown on the heatmaps; set it with a (E_min, E_max) pair."""
        v = self.widget.e_view or self.widget.energy_range
        return float(v[0]), float(v[1])

    @energy_range.setter
    def energy_range(self, value) -> None:
        self.widget.e_view = range_arg(value, "energy window (E_min, E_max, meV)")

    def auto_energy(self, margin: float = 0.12) -> tuple[float, float]:
        """Fit the energy window to the highest branch at the current FCs plus ``margin``."""
        self.widget.e_view = auto_energy_range(self.widget.freqs, self.widget.energy_range, margin)
        return self.energy_range

    # -- reference switch (measured / first-principles / uMLFF) ---------------
    def set_reference(self, kind: str) -> None:
        """Switch the reference FCs (and move the sliders there): one of ``reference_options``."""
        opts = list(self.widget.reference_options)
        kind = str(kind).lower()
        if kind not in opts:
            raise FcinvError(
                f"reference {kind!r} is not available here; choose one of {opts}"
                if opts
                else "switching the reference needs get_material(name, reference=...) (materials module)"
            )
        self.widget.reference_name = kind

    # -- export --------------------------------------------------------------
    @property
    def data(self) -> dict:
        """The current state as arrays: ``theta`` (8,) eV/Å², ``names``, ``image`` (nq, nE) scaled
        intensity, ``frequencies`` (nq, nmodes) meV, ``q_x`` (nq,) plotting coordinate,
        ``q_rlu`` (nq, 3) r.l.u. or None, ``energy`` (nE,) bin centres meV, ``stable``,
        ``compare`` and ``difference`` (nq, nE) or None."""
        w = self.widget
        img = None if w.image is None else np.array(w.image)
        cmp_ = None if w.compare is None else np.array(w.compare)
        return {
            "theta": self.theta,
            "names": list(w.names),
            "units": w.units,
            "image": img,
            "frequencies": None if w.freqs is None else np.array(w.freqs),
            "q_x": np.array(w.q_x),
            "q_rlu": None if w.q_rlu is None else np.array(w.q_rlu),
            "energy": np.asarray(self.grid.e.centers, float),
            "stable": bool(w.stable),
            "compare": cmp_,
            "difference": None if cmp_ is None or img is None else img - cmp_,
            "energy_range": self.energy_range,
            "reference": w.reference_name or None,
        }

    def to_dataframe(self):
        """Long table of the current image: one row per (q bin, E bin) with q_x, E (meV),
        intensity (and comparison/difference when shown). Needs pandas."""
        pd = _pandas()
        d = self.data
        nq, ne = d["image"].shape
        cols = {
            "q_index": np.repeat(np.arange(nq), ne),
            "q_x": np.repeat(d["q_x"], ne),
            "E_meV": np.tile(d["energy"], nq),
            "intensity": d["image"].ravel(),
        }
        if d["q_rlu"] is not None:
            for k, ax in enumerate("hkl"):
                cols[f"q_{ax}_rlu"] = np.repeat(d["q_rlu"][:, k], ne)
        if d["compare"] is not None:
            cols["compare"] = d["compare"].ravel()
            cols["difference"] = d["difference"].ravel()
        return pd.DataFrame(cols)

    def __repr__(self) -> str:
        w = self.widget
        name = w.title if w.title != "model" else "forward model"
        vals = ", ".join(f"{n.split()[0]}={v:.3g}" for n, v in zip(w.names, w.values))
        shape = "x".join(map(str, w.image.shape)) if w.image is not None else "?"
        return (
            f"FCExplorer({name}: {len(w.names)} FCs ({w.units}) {vals}; {'stable' if w.stable else 'UNSTABLE'}; I(q,E) {shape})"
        )

    def to_png(self) -> bytes:
        """A static PNG of the current view (matplotlib): the model image with its dispersion,
        and the comparison and difference when shown."""
        w = self.widget
        n = 1 if w.compare is None else 3
        fig = _static.figure(4.6 * n, 3.4)
        axs = fig.subplots(1, n, squeeze=False)[0]
        common = {
            "labels": w.q_labels,
            "breaks": w.q_breaks,
            "erange": w.energy_range,
            "e_view": self.energy_range,
            "cbar_label": f"I ({w.intensity_units})",
        }
        status = "stable" if w.stable else "UNSTABLE"
        _static.spectrum_axes(axs[0], w.image, freqs=w.freqs, title=f"{w.title} ({status})", **common)
        if n == 3:
            _static.spectrum_axes(axs[1], w.compare, title="comparison", **common)
            d = np.asarray(w.image, float) - np.asarray(w.compare, float)
            m = float(np.nanmax(np.abs(d))) if np.isfinite(d).any() else 1.0
            common["cbar_label"] = f"ΔI ({w.intensity_units})"
            _static.spectrum_axes(
                axs[2], d, title="model − comparison", cmap="RdBu_r", vmin=-(m or 1), vmax=m or 1, lines="#222222", **common
            )
        return _static.png_bytes(fig)

    def _repr_mimebundle_(self, **kwargs):
        return _static.with_static(self.widget._repr_mimebundle_(**kwargs), self.to_png(), repr(self))

    # -- internals --------------------------------------------------------
    def _setup_reference_switch(self) -> None:
        # the reference switch (measured / first-principles / uMLFF) is offered for the presets only:
        # any other material (a custom crystal, the test fake) keeps the switch hidden
        self._get_material = None
        name = getattr(self.material, "name", None)
        from .. import materials

        if self.material is None or not name or str(name).lower() not in materials.PRESETS:
            return
        get_material = materials.get_material
        self._get_material = get_material
        kinds = [str(k) for k in getattr(materials, "REFERENCES", REFERENCE_KINDS)]
        with self.widget.hold_sync():
            self.widget.reference_options = kinds
            self.widget.reference_labels = [REFERENCE_LABELS.get(k, k) for k in kinds]
            self.widget.reference_name = str(getattr(self.material, "reference_name", "") or "")

    def _reference_values(self, kind: str) -> np.ndarray:
        """The slider FCs (eV/Å²) of reference ``kind`` of this preset."""
        assert self._get_material is not None
        mat = self._get_material(self.material.name, reference=kind)
        ref_all = np.asarray(mat.reference_params, float)
        active = getattr(mat, "active", None)
        return ref_all[np.asarray(active)] if active is not None else ref_all[: len(self.widget.names)]

    def _reference_table(self) -> dict[str, list[float]]:
        """{reference: slider FCs} of every reference the switch offers (for the standalone page,
        which has no kernel to ask); empty without a switch."""
        if self._get_material is None:
            return {}
        out = {}
        for kind in self.widget.reference_options:
            try:
                out[str(kind)] = [float(v) for v in self._reference_values(kind)]
            except Exception:  # noqa: BLE001 - a reference that cannot be built is left off the page's switch
                continue
        return out

    def _on_reference_name(self, change) -> None:
        kind = change["new"]
        if not kind or self._get_material is None or kind == change["old"]:
            return
        try:
            ref = self._reference_values(kind)
        except Exception as exc:  # noqa: BLE001 - keep the widget usable, show why
            self.widget.error = f"reference {kind!r} is not available: {exc}"
            return
        self.widget.reference = ref
        self.reset()

    def _on_msg(self, widget, content, buffers) -> None:
        if isinstance(content, dict) and content.get("event") == "reset":
            self.reset()

    def _on_values(self, change) -> None:
        self._compute()

    def _compute(self) -> None:
        w = self.widget
        theta = np.asarray(w.values, dtype=float)[None, :]
        try:
            fm = self.forward_model
            if self._fused:  # one eigensolve for the image and the stability flag (ForwardModel)
                img, st = fm.spectra(theta, return_stable=True)
            else:  # a minimal forward model without return_stable
                img, st = fm.spectra(theta), fm.is_stable(theta)
            img = np.asarray(_to_numpy(img)[0], dtype=np.float32)
            fr = np.asarray(_to_numpy(fm.frequencies(theta))[0], dtype=np.float32)
            stable = bool(np.asarray(_to_numpy(st))[0])
        except Exception as exc:  # keep the widget usable, show why
            with w.hold_sync():
                w.error = f"forward model failed: {exc}"
                w.rendered_seq = w.request_seq
                w.frame += 1
            raise
        with w.hold_sync():
            w.error = ""
            w.image = img
            w.freqs = fr
            w.stable = stable
            w.rendered_seq = w.request_seq
            w.frame += 1


def _pandas():
    try:
        import pandas as pd
    except ImportError as exc:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("to_dataframe() needs pandas (pip install pandas); .data gives the arrays") from exc
    return pd


def _to_numpy(x):
    if hasattr(x, "get"):  # cupy
        return x.get()
    if hasattr(x, "detach"):  # torch
        return x.detach().cpu().numpy()
    return np.asarray(x)
