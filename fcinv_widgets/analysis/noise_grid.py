"""The 5 × 5 noise-robustness grid: background B × Poisson counts P applied to a whole test
set, inference in every cell, R² per FC per cell (the paper's Fig. 2d).

Model-agnostic: ``predict`` is any callable (N, nq, nE) → (N, 8) point predictions in
eV/Å² (e.g. ``Inverter.predict(x).mean``), or → (mean, std) (N, 8) each, and then every cell
also records the ±1σ and ±2σ coverage per FC (fraction of true values inside the interval). With a Dask ``scheduler`` the cells run as
tasks on the cluster (``predict`` must then be picklable).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..errors import FcinvError, GridMismatchError
from ..validate import as_real_array, finite_number, format_version, json_loads, nonempty_list, real_array, whole_number
from ..noise import MAX_BACKGROUND, check_counts
from .noise import DEFAULT_BACKGROUNDS, DEFAULT_COUNTS, add_noise


from ..metrics import check_scorable, r2_score  # noqa: E402,F401  (the one R², re-exported)


@dataclass
class NoiseGridResult:
    """One model's noise-robustness results on the (nB, nP) grid; the one noise-grid object of
    the package (``run_noise_grid`` makes it, ``save``/``load`` its one HDF5 format,
    ``widgets.NoiseGridExplorer`` shows one or several of them). Shapes are checked."""

    names: list
    backgrounds: np.ndarray  # (nB,)
    counts: np.ndarray  # (nP,)
    r2: np.ndarray  # (nB, nP, 8)
    mae: np.ndarray  # (nB, nP, 8) eV/Å²
    snr: np.ndarray  # (nB, nP) median SNR over the test set
    example_clean: np.ndarray  # (nq, nE)
    examples: np.ndarray  # (nB, nP, nq, nE) the first test spectrum in every cell
    example_snr: np.ndarray  # (nB, nP)
    model: str = ""
    meta: dict = field(default_factory=dict)
    cov1: np.ndarray | None = None  # (nB, nP, 8) fraction of true FCs within ±1σ (None: no σ)
    cov2: np.ndarray | None = None  # (nB, nP, 8) within ±2σ

    def __post_init__(self) -> None:
        if np.ndim(self.backgrounds) != 1 or np.ndim(self.counts) != 1:
            raise GridMismatchError(
                f"backgrounds and counts must be 1-D, got shapes {np.shape(self.backgrounds)} and {np.shape(self.counts)}"
            )
        nb, npk, nfc = len(self.backgrounds), len(self.counts), len(self.names)
        want = {"r2": (nb, npk, nfc), "mae": (nb, npk, nfc), "snr": (nb, npk), "example_snr": (nb, npk)}
        if (self.cov1 is None) != (self.cov2 is None):
            raise GridMismatchError("cov1 and cov2 come together (both or neither)")
        if self.cov1 is not None:
            want.update(cov1=(nb, npk, nfc), cov2=(nb, npk, nfc))
        for k, shape in want.items():
            if np.shape(getattr(self, k)) != shape:
                raise GridMismatchError(f"{k} must have shape {shape} (nB, nP[, n_fc]), got {np.shape(getattr(self, k))}")
        if np.ndim(self.example_clean) != 2 or np.shape(self.examples) != (nb, npk, *np.shape(self.example_clean)):
            raise GridMismatchError(
                f"examples must have shape ({nb}, {npk}) + example_clean.shape (nq, nE), got {np.shape(self.examples)} "
                f"and example_clean {np.shape(self.example_clean)}"
            )

    def save(self, path) -> None:
        import h5py

        with h5py.File(path, "w") as f:
            f.attrs.update(
                {
                    "format": "fcinv-noise-grid",
                    "version": 1,
                    "model": self.model,
                    "names": json.dumps(self.names),
                    "meta": json.dumps(self.meta),
                }
            )
            for k in ("backgrounds", "counts", "r2", "mae", "snr", "example_clean", "example_snr"):
                f[k] = getattr(self, k)
            f.create_dataset("examples", data=self.examples.astype(np.float32), compression="gzip", compression_opts=1)
            if self.cov1 is not None:
                f["coverage_1sigma"], f["coverage_2sigma"] = self.cov1, self.cov2

    @classmethod
    def load(cls, path) -> "NoiseGridResult":
        from ..validate import open_h5

        with open_h5(path, "noise-grid file") as f:
            if f.attrs.get("format") != "fcinv-noise-grid":
                raise FcinvError(f"{path} is not an fcinv noise-grid file (write one with `fcinv noise-grid --out`)")
            format_version(f.attrs.get("version"), str(path))
            try:
                cov = [f[k][()] if k in f else None for k in ("coverage_1sigma", "coverage_2sigma")]
                return cls(
                    json_loads(f.attrs["names"], f"{path}: attribute names"),
                    *(
                        f[k][()]
                        for k in ("backgrounds", "counts", "r2", "mae", "snr", "example_clean", "examples", "example_snr")
                    ),
                    model=str(f.attrs["model"]),
                    meta=json_loads(f.attrs["meta"], f"{path}: attribute meta"),
                    cov1=cov[0],
                    cov2=cov[1],
                )
            except (KeyError, ValueError, TypeError) as exc:
                raise FcinvError(f"{path}: a damaged noise-grid file ({type(exc).__name__}: {str(exc)[:100]})") from None

    def table(self, fc: int = 0) -> str:
        """A text table of R² for one FC (rows: B, columns: P)."""
        head = "B \\ P    " + " ".join(f"{p:>8g}" for p in self.counts)
        rows = [f"{b:<8g} " + " ".join(f"{v:8.3f}" for v in self.r2[i, :, fc]) for i, b in enumerate(self.backgrounds)]
        return f"R² of {self.names[fc]} ({self.model})\n" + "\n".join([head] + rows)

    def coverage_table(self, fc: int = 0, k: int = 1) -> str:
        """A text table of the ±kσ coverage (k = 1 or 2) for one FC (rows: B, columns: P)."""
        if self.cov1 is None:
            return f"{self.model}: no σ, no coverage"
        c = self.cov1 if k == 1 else self.cov2
        head = "B \\ P    " + " ".join(f"{p:>8g}" for p in self.counts)
        rows = [f"{b:<8g} " + " ".join(f"{v:8.3f}" for v in c[i, :, fc]) for i, b in enumerate(self.backgrounds)]
        return f"±{k}σ coverage of {self.names[fc]} ({self.model})\n" + "\n".join([head] + rows)


def _cell(predict, spectra, params, b, p, seed):
    noisy, snr = add_noise(spectra, b, p, seed=seed)
    out = predict(noisy)
    cov = (None, None)
    parts = out if isinstance(out, tuple) else (out,)
    try:
        parts = tuple(np.asarray(a, float) for a in parts[:2])
    except (TypeError, ValueError):
        raise FcinvError(
            f"predict returned {type(out).__name__} values that are not numbers (cell B = {b:g}, P = {p:g})"
        ) from None
    for what, a in zip(("predictions", "σ"), parts):
        if a.shape != params.shape:
            raise FcinvError(
                f"predict returned {what} of shape {a.shape}, expected {params.shape} (one row of {params.shape[1]} FCs "
                f"per spectrum; cell B = {b:g}, P = {p:g})"
            )
        bad = ~np.isfinite(a).all(axis=1)
        if bad.any():
            raise FcinvError(
                f"predict returned NaN or inf {what} for {int(bad.sum())} of {len(a)} spectra at B = {b:g}, P = {p:g}"
            )
    pred = parts[0]
    if len(parts) == 2:
        err = np.abs(pred - params)
        cov = ((err <= parts[1]).mean(0), (err <= 2 * parts[1]).mean(0))
    return r2_score(params, pred), np.abs(pred - params).mean(0), float(np.median(snr)), noisy[0], float(snr[0]), *cov


def run_noise_grid(
    predict,
    spectra,
    params,
    names,
    backgrounds=DEFAULT_BACKGROUNDS,
    counts=DEFAULT_COUNTS,
    seed: int = 0,
    model: str = "",
    scheduler=None,
    progress: bool = True,
) -> NoiseGridResult:
    """Evaluate ``predict`` on noisy copies of (``spectra``, ``params``) in every (B, P) cell."""
    from tqdm.auto import tqdm

    spectra = as_real_array(spectra, "spectra")
    params = real_array(params, "params (eV/Å²)", allow_nan=False)
    backgrounds = tuple(
        finite_number(b, "each background B (fraction of the peak)", positive=False, maximum=MAX_BACKGROUND)
        for b in nonempty_list(backgrounds, "backgrounds")
    )
    counts = tuple(check_counts(p) for p in nonempty_list(counts, "counts"))
    seed = whole_number(seed, "seed", 0)
    if spectra.ndim != 3 or params.ndim != 2 or len(spectra) != len(params) or params.shape[1] != len(names):
        raise FcinvError(f"need spectra (N, nq, nE) and params (N, {len(names)}), got {spectra.shape} and {params.shape}")
    check_scorable(params, names, "the noise grid")
    nB, nP = len(backgrounds), len(counts)
    cells = [(i, j) for i in range(nB) for j in range(nP)]
    seeds = {c: int(np.random.SeedSequence([seed, *c]).generate_state(1)[0]) for c in cells}
    results = {}
    if scheduler is None:
        for c in tqdm(cells, desc="noise grid", disable=not progress):
            results[c] = _cell(predict, spectra, params, backgrounds[c[0]], counts[c[1]], seeds[c])
    else:
        from ..dataset import dask_result, dask_session, dask_wait

        where = scheduler if isinstance(scheduler, str) else "the given client"
        with dask_session(scheduler) as client:  # an address, "local:N" or a Client
            xs, ps = client.scatter([spectra, params], broadcast=True)
            futs = {
                client.submit(_cell, predict, xs, ps, backgrounds[c[0]], counts[c[1]], seeds[c], pure=False): c for c in cells
            }
            pending = set(futs)
            with tqdm(total=len(futs), desc="noise grid", disable=not progress) as bar:
                while pending:  # (a lost scheduler or no workers left: one line, not a wait for ever)
                    done, pending = dask_wait(client, list(pending), where, first=True)
                    for fut in done:
                        results[futs[fut]] = dask_result(fut, where)
                    bar.update(len(done))
    r2 = np.array([[results[(i, j)][0] for j in range(nP)] for i in range(nB)])
    mae = np.array([[results[(i, j)][1] for j in range(nP)] for i in range(nB)])
    snr = np.array([[results[(i, j)][2] for j in range(nP)] for i in range(nB)])
    ex = np.array([[results[(i, j)][3] for j in range(nP)] for i in range(nB)])
    exs = np.array([[results[(i, j)][4] for j in range(nP)] for i in range(nB)])
    cov1 = cov2 = None
    if results[(0, 0)][5] is not None:
        cov1 = np.array([[results[(i, j)][5] for j in range(nP)] for i in range(nB)])
        cov2 = np.array([[results[(i, j)][6] for j in range(nP)] for i in range(nB)])
    return NoiseGridResult(
        list(names),
        np.asarray(backgrounds, float),
        np.asarray(counts, float),
        r2,
        mae,
        snr,
        spectra[0].astype(np.float32),
        ex,
        exs,
        model=model,
        meta={"seed": seed, "n": int(len(spectra))},
        cov1=cov1,
        cov2=cov2,
    )


def plot_noise_grid(result: NoiseGridResult, fcs=(0, 1, 2, 3), ax=None, what: str = "r2"):
    """Heatmaps per FC, like the paper's Fig. 2d: ``what`` = "r2" (R² clipped to [0, 1]),
    "cov1" or "cov2" (fraction of true FCs within ±1σ / ±2σ; ideal 0.683 / 0.954)."""
    import matplotlib.pyplot as plt

    if what == "r2":
        data, label, vmin, vmax, cmap = result.r2, "R²", 0, 1, "viridis"
    elif what in ("cov1", "cov2"):
        data = getattr(result, what)
        if data is None:
            raise FcinvError(f"{result.model}: this grid has no σ, hence no coverage")
        k = what[-1]
        label, vmin, vmax, cmap = f"±{k}σ coverage (ideal {0.683 if k == '1' else 0.954:.2f})", 0, 1, "RdBu"
    else:
        raise FcinvError(f"what must be r2, cov1 or cov2, got {what!r}")
    fig, axes = plt.subplots(1, len(fcs), figsize=(3.2 * len(fcs), 3.0), constrained_layout=True)
    axes = np.atleast_1d(axes)
    for a, k in zip(axes, fcs):
        im = a.imshow(np.clip(data[:, :, k], vmin, vmax), vmin=vmin, vmax=vmax, cmap=cmap, origin="upper")
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                v = data[i, j, k]
                dark = v < 0.6 if what == "r2" else abs(v - 0.5) > 0.3
                a.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
        a.set_xticks(range(len(result.counts)), [f"{c:g}" for c in result.counts])
        a.set_yticks(range(len(result.backgrounds)), [f"{b:g}" for b in result.backgrounds])
        a.set_xlabel("counts at peak P")
        a.set_ylabel("background B")
        a.set_title(result.names[k], fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8, label=label)
    return fig
