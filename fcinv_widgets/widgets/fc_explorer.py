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
from ._assets import load_esm
from ._traits import synced_array

UNITS = "eV/Å²"


class SliderDomainError(FcinvError):
    """A force-constant value outside the slider's training domain."""


class ForwardModelLike(Protocol):
    def frequencies(self, theta: np.ndarray) -> np.ndarray: ...  # (N, nq, nmodes) meV
    def spectra(self, theta: np.ndarray) -> np.ndarray: ...  # (N, nq, nE) in [0, 1]
    def is_stable(self, theta: np.ndarray) -> np.ndarray: ...  # (N,) bool


class FCExplorerView(anywidget.AnyWidget):
    """Synced state of the FC explorer. Arrays cross as bytes (dtype + shape)."""

    _esm = load_esm("fc_explorer.js")

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
    q_labels = traitlets.List().tag(sync=True)
    q_breaks = traitlets.List(traitlets.Float()).tag(sync=True)
    q_range = traitlets.List(traitlets.Float(), default_value=[0.0, 1.0]).tag(sync=True)
    break_indices = traitlets.List(traitlets.Int()).tag(sync=True)
    energy_range = traitlets.List(traitlets.Float(), default_value=[0.0, 1.0]).tag(sync=True)
    stable = traitlets.Bool(True).tag(sync=True)
    frame = traitlets.Int(0).tag(sync=True)  # bumped after each compute; the view repaints on it
    error = traitlets.Unicode("").tag(sync=True)

    @traitlets.validate("values")
    def _check_values(self, proposal):
        vals = list(proposal["value"])
        if self.domain is None:
            return vals
        dom = self.domain
        if len(vals) != dom.shape[0]:
            raise SliderDomainError(
                f"values needs {dom.shape[0]} force constants ({UNITS}), got {len(vals)}"
            )
        for i, v in enumerate(vals):
            lo, hi = dom[i]
            if not np.isfinite(v) or v < lo - 1e-9 * max(1.0, abs(lo)) or v > hi + 1e-9 * max(1.0, abs(hi)):
                name = self.names[i] if i < len(self.names) else f"FC{i}"
                raise SliderDomainError(
                    f"{name} = {v!r} {UNITS} is outside its training domain [{lo:.4g}, {hi:.4g}]"
                )
        return vals

    @traitlets.validate("compare")
    def _check_compare(self, proposal):
        arr = proposal["value"]
        if arr is not None and self.image is not None and arr.shape != self.image.shape:
            raise GridMismatchError(
                f"comparison spectrum has shape {arr.shape}, the model grid is {self.image.shape} (nq, nE)"
            )
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
    ):
        if material is not None:
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
            raise FcinvError(
                "FCExplorer needs a material, or forward_model + names + domain + reference + grid"
            )
        domain = np.asarray(domain, dtype=float)
        reference = np.asarray(reference, dtype=float)
        if domain.shape != (len(names), 2):
            raise FcinvError(f"domain must have shape ({len(names)}, 2), got {domain.shape}")
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
        self.widget = FCExplorerView(
            names=list(names),
            domain=domain,
            reference=reference,
            q_x=qx,
            q_labels=[[float(x), str(t)] for x, t in q.labels],
            q_breaks=[float(b) for b in breaks],
            break_indices=breaks,
            q_range=[0.0, float(nq)],
            energy_range=erange,
        )
        # values are checked against the domain; the reference may sit at an edge
        self.widget.values = [float(v) for v in np.clip(reference, domain[:, 0], domain[:, 1])]
        self._compute()
        if compare is not None:
            self.compare(compare)
        self.widget.observe(self._on_values, names="values")
        self.widget.on_msg(self._on_msg)

    # -- public API -------------------------------------------------------
    @property
    def theta(self) -> np.ndarray:
        """Current slider values (8,) in eV/Å²."""
        return np.asarray(self.widget.values, dtype=float)

    @theta.setter
    def theta(self, value) -> None:
        from ..validate import real_array

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
        from ..validate import real_array

        arr = real_array(spectrum, "comparison spectrum").astype(np.float32)
        if arr.ndim == 2 and arr.shape == self.widget.image.shape and not np.isfinite(arr).any():
            raise FcinvError("comparison spectrum: no finite pixel (all NaN): nothing to compare")
        if arr.shape != self.widget.image.shape:
            raise GridMismatchError(
                f"comparison spectrum has shape {arr.shape}, the model grid is {self.widget.image.shape} (nq, nE)"
            )
        self.widget.compare = arr

    @property
    def stable(self) -> bool:
        return bool(self.widget.stable)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # -- internals --------------------------------------------------------
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


def _to_numpy(x):
    if hasattr(x, "get"):  # cupy
        return x.get()
    if hasattr(x, "detach"):  # torch
        return x.detach().cpu().numpy()
    return np.asarray(x)
