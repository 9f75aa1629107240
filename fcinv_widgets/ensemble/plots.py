"""Figures of the ensemble (matplotlib, Agg-safe): dispersions overlaid, parameter ranges with
the widened domain, sensitivity ranking. Input: :func:`fcsets.read_ensemble_h5` output."""

from __future__ import annotations

import numpy as np


def _labels(ax, qpath):
    x = np.asarray(qpath.get("x", np.arange(len(qpath["qpoints"]))))
    ticks = []
    for item in qpath.get("labels", []):
        i, lab = int(item[0]), str(item[1])
        ticks.append((x[min(i, len(x) - 1)], lab))
    if ticks:
        ax.set_xticks([t[0] for t in ticks])
        ax.set_xticklabels([t[1] for t in ticks])
        for t in ticks:
            ax.axvline(t[0], color="0.85", lw=0.6, zorder=0)
    return x


def plot_dispersions(ens: dict, ax=None, reference_thz=None):
    """Every model's dispersion along the path (THz); unstable models dashed."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(8, 4.5))[1]
    x = _labels(ax, ens["qpath"])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    k = 0
    for m in ens["models"]:
        if "dispersion_thz" not in m:
            continue
        c = colors[k % len(colors)]
        k += 1
        ls = "-" if m.get("stable") else "--"
        d = np.asarray(m["dispersion_thz"])
        for b in range(d.shape[1]):
            ax.plot(
                x, d[:, b], ls, color=c, lw=0.9, label=m["name"] + ("" if m.get("stable") else " (unstable)") if b == 0 else None
            )
    if reference_thz is not None:
        for b in range(reference_thz.shape[1]):
            ax.plot(x, reference_thz[:, b], "k-", lw=1.6, label="reference" if b == 0 else None)
    ax.set_ylabel("frequency (THz)")
    ax.set_title(f"{ens['attrs'].get('material', '')}: uMLFF ensemble dispersions")
    ax.legend(fontsize=6, ncol=2, loc="upper right")
    return ax


def plot_parameter_ranges(ens: dict, ax=None):
    """Per-model values of the top-8 parameters, the observed range and the widened domain."""
    import matplotlib.pyplot as plt

    p = ens["projection"]
    active = np.asarray(p["active"], int)
    names = p.get("active_names", [str(i) for i in active])
    dom = np.asarray(p["domain"])
    ax = ax or plt.subplots(figsize=(8, 4))[1]
    y = np.arange(len(active))
    ax.barh(y, dom[:, 1] - dom[:, 0], left=dom[:, 0], color="0.9", edgecolor="0.6", label="training domain")
    ax.barh(
        y,
        np.asarray(p["observed_max"]) - np.asarray(p["observed_min"]),
        left=p["observed_min"],
        height=0.35,
        color="tab:blue",
        alpha=0.4,
        label="stable models",
    )
    for m in ens["models"]:
        if m.get("params") is None:
            continue
        v = np.asarray(m["params"])[active]
        ax.plot(v, y, "o" if m.get("stable") else "x", ms=3, color="tab:blue" if m.get("stable") else "tab:red")
    if p.get("dft_params") is not None:
        ax.plot(np.asarray(p["dft_params"])[active], y, "k*", ms=8, label="DFT reference")
    ax.set_yticks(y)
    ax.set_yticklabels([f"FC{k} {n}" for k, n in enumerate(names)])
    ax.invert_yaxis()
    ax.set_xlabel("eV/Å²")
    ax.legend(fontsize=7)
    return ax


def plot_sensitivity(ens: dict, ax=None, n: int = 20):
    """Sensitivity scores of the parameters (at the ensemble median), largest first."""
    import matplotlib.pyplot as plt

    p = ens["projection"]
    s = np.asarray(p["sensitivity_scores"])
    names = p.get("param_names", [str(i) for i in range(len(s))])
    order = np.argsort(-s)[:n]
    ax = ax or plt.subplots(figsize=(8, 3.5))[1]
    ax.bar(
        range(len(order)), s[order], color=["tab:blue" if i in set(np.asarray(p["active"]).tolist()) else "0.7" for i in order]
    )
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([names[i] for i in order], rotation=70, fontsize=7)
    ax.set_ylabel("RMS ∂ω/∂θ · |θ| (meV)")
    ax.set_yscale("log")
    return ax


def save_figures(ens: dict, folder, prefix: str = "") -> list:
    """Write the three figures as PNG into ``folder``; returns the paths."""
    import os

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    out = []
    for name, fn in (
        ("dispersions", plot_dispersions),
        ("parameter_ranges", plot_parameter_ranges),
        ("sensitivity", plot_sensitivity),
    ):
        if name != "dispersions" and "projection" not in ens:
            continue
        fig, ax = plt.subplots(figsize=(8, 4.5))
        fn(ens, ax=ax)
        fig.tight_layout()
        path = os.path.join(folder, f"{prefix}{name}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out
