"""Static plots (matplotlib): I(q, E) images with the q-path labelled, dispersion overlays."""

from __future__ import annotations

import numpy as np

from .errors import GridMismatchError
from .validate import real_array


def plot_spectrum(image, grid, ax=None, frequencies=None, title=None, cmap="viridis", vmax=None, e_max=None):
    """Plot an (nq, nE) image on its grid: q-path labels and breaks on x, energy (meV) on y.

    ``frequencies`` (nq, nmodes) meV are drawn as white dots (e.g. a predicted dispersion);
    ``ForwardModel.frequencies`` of one set, (1, nq, nmodes), is taken as it comes.
    NaN pixels (not measured) are left blank.
    """
    import matplotlib.pyplot as plt

    img = grid.check_image(image)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.6), constrained_layout=True)
    nq = grid.shape[0]
    e = grid.e.edges
    m = np.ma.masked_invalid(np.asarray(img, float).T)
    im = ax.imshow(
        m,
        origin="lower",
        aspect="auto",
        extent=(0, nq, e[0], e[-1]),
        cmap=cmap,
        vmin=0,
        vmax=vmax if vmax is not None else np.nanmax(img),
        interpolation="nearest",
    )
    if frequencies is not None:
        f = real_array(frequencies, "frequencies (meV)", allow_nan=True)
        if f.ndim == 3 and f.shape[0] == 1:  # ForwardModel.frequencies of one parameter set: (1, nq, modes)
            f = f[0]
        if f.ndim != 2 or f.shape[0] != nq:
            raise GridMismatchError(f"frequencies must be (nq = {nq}, modes) meV along the grid's path, got shape {f.shape}")
        x = np.repeat(np.arange(nq) + 0.5, f.shape[1])
        ax.plot(x, f.reshape(-1), ".", ms=1.5, color="white", alpha=0.8)
    ticks, labels = zip(*grid.q.labels)
    ax.set_xticks(ticks, labels)
    for t in ticks[1:-1]:
        ax.axvline(t, color="white", lw=0.6, alpha=0.5)
    for b in grid.q.breaks:
        ax.axvline(b, color="white", lw=2.0)
    ax.set_ylabel("energy transfer (meV)")
    ax.set_ylim(e[0], e_max if e_max is not None else e[-1])
    if title:
        ax.set_title(title, fontsize=10)
    plt.colorbar(im, ax=ax, label="I (scaled)", pad=0.01)
    return ax
