"""OrientationScatter: predicted force constants vs sample angle for every single scan.

Two levels, like the other widgets:

* :class:`OrientationView` - the synced anywidget (state and binary arrays only).
* :class:`OrientationScatter` - the user-facing object, built from a
  :class:`~fcinv_widgets.analysis.scan_inference.ScanInference` (any object with its
  fields plugs in) and optionally a forward model; on a selection it sends the scan's
  input, its reconstruction and the dispersion predicted at the scan's mean FCs.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, Sequence

import anywidget
import numpy as np
import traitlets

from ..analysis.scan_inference import ScanInference, grid_view
from ..errors import FcinvError, GridMismatchError
from ..validate import real_array
from . import _static
from ._assets import load_esm
from ._traits import RollsBack, WidgetInputError, int_arg, need_attrs, range_arg, refuses, synced_array
from .fc_explorer import UNITS, _pandas, _to_numpy


class ScanSelectionError(WidgetInputError):
    """A scan index outside the ScanInference (or a bad FC index)."""


class OrientationView(RollsBack, anywidget.AnyWidget):
    """Synced state of the orientation scatter. Arrays cross as bytes (dtype + shape)."""

    _esm = load_esm("orientation.js")

    names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    units = traitlets.Unicode(UNITS).tag(sync=True)
    fc = traitlets.Int(0).tag(sync=True)
    angles = synced_array("float32", ndim=1)
    mean = synced_array("float32", ndim=2)  # (n_scans, n_fc)
    std = synced_array("float32", ndim=2)
    full_mean = synced_array("float32", ndim=1)
    full_std = synced_array("float32", ndim=1)
    reference = synced_array("float32", ndim=1)  # None when unknown
    mse = synced_array("float32", ndim=1)
    coverage = synced_array("float32", ndim=1)
    selected = traitlets.Int(-1).tag(sync=True)
    input_image = synced_array("float32", ndim=2)  # (nq, nE), NaN = not covered
    recon_image = synced_array("float32", ndim=2)
    freqs = synced_array("float32", ndim=2)  # (nq, nmodes) meV, None without a forward model
    q_labels = traitlets.List().tag(sync=True)
    q_breaks = traitlets.List(traitlets.Float()).tag(sync=True)
    q_range = traitlets.List(traitlets.Float(), default_value=[0.0, 1.0]).tag(sync=True)
    energy_range = traitlets.List(traitlets.Float(), default_value=[0.0, 1.0]).tag(sync=True)
    energy_label = traitlets.Unicode("E (meV)").tag(sync=True)  # "E (bin)" when no energy axis is known
    scan_frame = traitlets.Int(0).tag(sync=True)  # bumped after the selected scan's arrays changed
    # orientation planner (issue 14): expected information per candidate angle and the next angle
    info_angles = synced_array("float32", ndim=1)
    info_values = synced_array("float32", ndim=1)
    next_angle = traitlets.Float(float("nan"), allow_none=True).tag(sync=True)
    info_units = traitlets.Unicode("nats").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)

    @traitlets.validate("fc")
    @refuses
    def _check_fc(self, proposal):
        v = proposal["value"]
        if self.names and not 0 <= v < len(self.names):
            raise ScanSelectionError(f"fc must be an index in [0, {len(self.names)}), got {v}")
        return v

    @traitlets.validate("selected")
    @refuses
    def _check_selected(self, proposal):
        v = proposal["value"]
        n = 0 if self.angles is None else len(self.angles)
        if v != -1 and not 0 <= v < n:
            raise ScanSelectionError(f"selected must be -1 (none) or a scan index in [0, {n}), got {v}")
        return v


class OrientationScatter:
    """Predicted FC vs sample angle ω for all single scans (points coloured by ω, error bars
    from the spread, lines for the full-data prediction and the reference), a small
    MSE-vs-ω panel, and for the clicked scan its input, reconstruction and predicted dispersion.

    Parameters
    ----------
    result : a ``ScanInference`` (fields ``names, angles_deg, mean, std, full_mean,
        full_std, reference, mse, inputs, recon, coverage``).
    forward_model : optional; ``frequencies(theta[None]) -> (1, nq, nmodes)`` meV (numpy,
        or converted with ``forward_model.backend.to_numpy``). Draws the dispersion at the
        selected scan's mean FCs over its input.
    grid : the (q, E) grid (``q.labels``, ``q.breaks``, ``e.edges``/``e.centers``); default
        ``forward_model.grid``. Without one, ``q_labels``/``q_breaks``/``energy_range`` are used.
    fc : FC shown first; selected : scan selected first (default: the best scan, lowest MSE).
    plan : optional :class:`~fcinv_widgets.analysis.planner.Plan`; its expected information per
        candidate angle is drawn as a curve under the MSE panel with the recommended next angle
        marked (also :meth:`set_plan`).
    """

    def __init__(
        self,
        result: Any,
        *,
        forward_model: Any = None,
        grid: Any = None,
        q_labels: Sequence | None = None,
        q_breaks: Sequence[float] | None = None,
        energy_range: Sequence[float] | None = None,
        fc: int = 0,
        selected: int | None = None,
        plan: Any = None,
    ):
        need_attrs(
            result,
            ("angles_deg", "mean", "std", "full_mean", "full_std", "mse", "inputs", "recon", "names"),
            "OrientationScatter",
            "a scan-inference result (analysis.scan_inference.infer_scans, or ScanInference.load of `fcinv infer-scans --out`)",
        )
        self.result = result
        self.forward_model = forward_model
        res = _checked(result)  # every field against the others (ScanInference's checks)
        n, nfc = res.mean.shape
        inputs = np.asarray(res.inputs)
        nq, ne = inputs.shape[1:]
        grid = grid if grid is not None else getattr(forward_model, "grid", None)
        view = None
        if grid is not None:
            if tuple(grid.shape) != (nq, ne):
                raise GridMismatchError(f"the grid is {tuple(grid.shape)} (nq, nE), the scans are {(nq, ne)}")
            view = grid_view(grid)
        else:  # a saved result (`fcinv infer-scans --out`) records its grid's axes
            saved = res.meta.get("grid_view")
            if isinstance(saved, dict) and list(saved.get("shape", [])) == [nq, ne]:
                view = saved
        if view is not None:
            q_labels = q_labels if q_labels is not None else view.get("q_labels")
            q_breaks = q_breaks if q_breaks is not None else view.get("q_breaks")
            energy_range = energy_range if energy_range is not None else view.get("energy_range_mev")
        q_labels = _q_labels(q_labels)
        q_breaks = [] if q_breaks is None else list(real_array(q_breaks, "q_breaks (bin indices)", ndim=1, allow_nan=False))
        energy_label = "E (meV)"
        if energy_range is not None:
            energy_range = range_arg(energy_range, "energy_range (meV)")
        else:  # no grid, no saved axes, no energy_range: draw energy bins, never a made-up meV axis
            energy_range, energy_label = [0.0, float(ne)], "E (bin)"
        fc = int_arg(fc, "fc", 0, nfc)
        if selected is not None:
            selected = int_arg(selected, "selected (a scan index)", 0, n)
        ref = res.reference
        self.widget = OrientationView(
            names=list(res.names),
            angles=res.angles_deg.astype(np.float32),
            mean=res.mean.astype(np.float32),
            std=res.std.astype(np.float32),
            full_mean=res.full_mean.astype(np.float32),
            full_std=res.full_std.astype(np.float32),
            reference=None if ref is None else ref.astype(np.float32),
            mse=res.mse.astype(np.float32),
            coverage=res.coverage.astype(np.float32),
            q_labels=q_labels,
            q_breaks=[float(b) for b in q_breaks],
            q_range=[0.0, float(nq)],
            energy_range=[float(v) for v in energy_range],
            energy_label=energy_label,
        )
        self.widget.fc = fc
        self.widget.observe(lambda _: self._update_scan(), names=["selected"])
        self.select(int(np.argsort(res.mse, kind="stable")[0]) if selected is None else selected)
        if plan is not None:
            self.set_plan(plan)

    def set_plan(self, plan: Any) -> None:
        """Show a planner result: ``plan.candidates_deg`` (n,), ``plan.information`` (n,) and the
        recommended ``plan.angles_deg[0]``; ``None`` removes the curve."""
        if plan is None:
            self.widget.info_angles, self.widget.info_values, self.widget.next_angle = None, None, float("nan")
            return
        try:
            a = np.asarray(plan.candidates_deg, float).reshape(-1)
            v = np.asarray(plan.information, float).reshape(-1)
            nxt = float(np.asarray(plan.angles_deg, float).reshape(-1)[0])
        except (AttributeError, TypeError, ValueError, IndexError):
            raise FcinvError("set_plan needs a planner Plan (candidates_deg, information, angles_deg)") from None
        if a.shape != v.shape or a.size == 0 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(v)) and np.isfinite(nxt)):
            raise FcinvError("the plan's candidate angles and information must be equal-length finite arrays")
        names = getattr(plan, "names", None)
        if names is not None and [str(x) for x in names] != list(self.widget.names)[: len(names)]:
            raise FcinvError(
                f"the plan is for other force constants ({', '.join(map(str, names))[:120]}) than this scan set's "
                f"({', '.join(self.widget.names)[:120]})"
            )
        if not np.any(np.isclose(a, nxt, atol=1e-6)):
            raise FcinvError(f"the plan's next angle {nxt:g}° is not one of its candidate angles ({a.min():g}–{a.max():g}°)")
        self.widget.info_units = "nats" if getattr(plan, "criterion", "D") == "D" else "gain"
        self.widget.info_angles = a.astype(np.float32)
        self.widget.info_values = v.astype(np.float32)
        self.widget.next_angle = nxt

    # -- public API -------------------------------------------------------
    @property
    def selected(self) -> int | None:
        """Index of the selected scan, or None."""
        s = self.widget.selected
        return None if s < 0 else s

    def select(self, index: int | None) -> None:
        """Select scan ``index`` (None or -1: no scan)."""
        if index is None:
            self.widget.selected = -1
            return
        try:
            i = operator.index(index)
        except TypeError:
            raise ScanSelectionError(f"select needs an integer scan index, got {index!r}") from None
        self.widget.selected = i

    @property
    def fc(self) -> int:
        return self.widget.fc

    @fc.setter
    def fc(self, value: int) -> None:
        try:
            i = operator.index(value)
        except TypeError:
            raise ScanSelectionError(f"fc needs an integer FC index, got {' '.join(repr(value).split())[:60]}") from None
        self.widget.fc = i

    # -- export --------------------------------------------------------------
    @property
    def data(self) -> dict:
        """Arrays behind the view: ``angles_deg`` (n,), ``mean``/``std`` (n, n_fc) eV/Å²,
        ``full_mean`` (n_fc,), ``reference`` (n_fc,) or None, ``mse`` (n,), ``coverage`` (n,),
        ``names``, ``selected`` and the selected scan's ``input``/``reconstruction`` (nq, nE)."""
        w = self.widget

        def cp(a):
            return None if a is None else np.array(a)

        return {
            "names": list(w.names),
            "units": w.units,
            "angles_deg": cp(w.angles),
            "mean": cp(w.mean),
            "std": cp(w.std),
            "full_mean": cp(w.full_mean),
            "full_std": cp(w.full_std),
            "reference": cp(w.reference),
            "mse": cp(w.mse),
            "coverage": cp(w.coverage),
            "selected": self.selected,
            "input": cp(w.input_image),
            "reconstruction": cp(w.recon_image),
            "frequencies": cp(w.freqs),
            "information_angles_deg": cp(w.info_angles),
            "information": cp(w.info_values),
            "next_angle_deg": None if not np.isfinite(w.next_angle) else w.next_angle,
        }

    def to_dataframe(self):
        """One row per scan: angle (°), MSE, coverage and every FC's mean and std (eV/Å²). Needs pandas."""
        pd = _pandas()
        d = self.data
        cols = {"angle_deg": d["angles_deg"], "mse": d["mse"], "coverage": d["coverage"]}
        for k, name in enumerate(d["names"]):
            cols[f"{name} mean"] = d["mean"][:, k]
            cols[f"{name} std"] = d["std"][:, k]
        return pd.DataFrame(cols)

    def __repr__(self) -> str:
        w = self.widget
        k = w.fc
        a = np.asarray(w.angles, float)
        sel = self.selected
        pick = f"; selected scan {sel} at ω = {a[sel]:.4g}°" if sel is not None else ""
        return (
            f"OrientationScatter({len(a)} scans, ω {a.min():.4g}–{a.max():.4g}°; showing {w.names[k]} "
            f"({w.units}), full data {float(w.full_mean[k]):.4g}; best MSE {float(np.min(w.mse)):.3g}{pick})"
        )

    def to_png(self) -> bytes:
        """Static PNG (matplotlib): the chosen FC vs ω with error bars and the full-data/reference
        lines, MSE vs ω (log), and the selected scan's input with the predicted dispersion."""
        w = self.widget
        k = w.fc
        fig = _static.figure(13.0, 3.4)
        ax1, ax2, ax3 = fig.subplots(1, 3, width_ratios=[1.3, 0.8, 1.1])
        a = np.asarray(w.angles, float)
        m, sd = np.asarray(w.mean, float)[:, k], np.asarray(w.std, float)[:, k]
        ax1.errorbar(a, m, yerr=sd, fmt="o", ms=3.5, color="#1f77b4", ecolor="#999999", lw=1)
        ax1.axhline(float(w.full_mean[k]), color="k", lw=1.2, label="full data")
        if w.reference is not None:
            ax1.axhline(float(w.reference[k]), color="#c22", ls="--", lw=1.2, label="reference")
        ax1.set_xlabel("sample angle ω (°)")
        ax1.set_ylabel(f"{w.names[k]} ({w.units})")
        ax1.legend(fontsize=8)
        ax2.semilogy(a, np.clip(np.asarray(w.mse, float), 1e-12, None), "o", ms=3.5)
        ax2.set_xlabel("ω (°)")
        ax2.set_ylabel("MSE vs full data")
        if w.info_angles is not None and w.info_values is not None:
            axi = ax2.twinx()
            axi.plot(np.asarray(w.info_angles, float), np.asarray(w.info_values, float), color="#2a9d8f", lw=1.2)
            axi.axvline(w.next_angle, color="#2a9d8f", ls="--", lw=1)
            axi.set_ylabel(f"expected information ({w.info_units}); next ω = {w.next_angle:.4g}°", fontsize=8)
        if w.input_image is not None:
            _static.spectrum_axes(
                ax3,
                w.input_image,
                labels=w.q_labels,
                breaks=w.q_breaks,
                erange=w.energy_range,
                ylabel=w.energy_label,
                freqs=w.freqs,
                lines="#ff5050",
                cbar_label="I (arb. units)",
                title=f"scan {self.selected} (ω = {a[self.selected]:.4g}°)",
            )
        else:
            ax3.set_axis_off()
        return _static.png_bytes(fig)

    def _repr_mimebundle_(self, **kwargs):
        return _static.with_static(self.widget._repr_mimebundle_(**kwargs), self.to_png(), repr(self))

    # -- internals --------------------------------------------------------
    def _frequencies(self, theta: np.ndarray) -> np.ndarray:
        fm = self.forward_model
        out = fm.frequencies(theta[None])
        be = getattr(fm, "backend", None)
        out = be.to_numpy(out) if hasattr(be, "to_numpy") else _to_numpy(out)
        return np.asarray(out, np.float32)[0]

    def _update_scan(self) -> None:
        w = self.widget
        i = w.selected
        err = ""
        freqs = None
        if i >= 0 and self.forward_model is not None:
            try:
                freqs = self._frequencies(np.asarray(self.result.mean[i], float))
            except Exception as exc:  # keep the widget usable, show why
                err = f"forward model failed: {exc}"
        with w.hold_sync():
            if i >= 0:
                w.input_image = np.asarray(self.result.inputs[i], np.float32)
                w.recon_image = np.asarray(self.result.recon[i], np.float32)
            else:
                w.input_image = None
                w.recon_image = None
            w.freqs = freqs
            w.error = err
            w.scan_frame += 1


def _checked(result: Any) -> ScanInference:
    """``result`` as a checked :class:`ScanInference` (a duck-typed one is copied into one)."""
    if isinstance(result, ScanInference):
        return ScanInference(**{f.name: getattr(result, f.name) for f in dataclasses.fields(ScanInference)})
    try:
        n = len(result.angles_deg)
    except TypeError:
        raise FcinvError("angles_deg must be a 1-D array of sample angles (degrees)") from None
    coverage = getattr(result, "coverage", None)
    meta = getattr(result, "meta", None)
    return ScanInference(
        names=result.names,
        angles_deg=result.angles_deg,
        mean=result.mean,
        std=result.std,
        full_mean=result.full_mean,
        full_std=result.full_std,
        reference=getattr(result, "reference", None),
        mse=result.mse,
        inputs=result.inputs,
        recon=result.recon,
        coverage=np.ones(n) if coverage is None else coverage,
        meta=meta if isinstance(meta, dict) else {},
    )


def _q_labels(labels) -> list:
    """q-path labels as [[bin, text], …] (pairs of a finite number and a text), or one FcinvError."""
    if labels is None:
        return []
    if isinstance(labels, (str, bytes)):
        raise FcinvError("q_labels must be [(bin, label), …] pairs, got a string")
    out = []
    try:
        for x, t in labels:
            xf = float(x)
            if not np.isfinite(xf) or isinstance(x, (str, bytes, bool)):
                raise ValueError
            out.append([xf, str(t)])
    except (TypeError, ValueError):
        raise FcinvError(f"q_labels must be [(bin, label), …] pairs of a number and a text, got {str(labels)[:80]}") from None
    return out
