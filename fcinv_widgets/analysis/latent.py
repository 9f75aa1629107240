"""Latent-space analysis of a trained VAE (the paper's Figs. 5–6).

* :func:`latent_stats`: per-dimension mean/std of μ and log σ² over a set of spectra, and
  which dimensions are *active* (μ spread out, log σ² well below the prior's 0) versus
  unused (μ ≈ 0, log σ² ≈ 0: the posterior equals the prior);
* :func:`decode_ray`: spectra decoded along a straight line between two latent points;
* :class:`LatentMap`: a 2-D UMAP of the latent means, fitted once and reused to place new
  spectra (experiments, noisy or single-scan inputs) on the same map; saved next to a model
  (``latent_map.npz`` + ``umap_reducer.joblib``) because fitting takes many seconds.

Files: ``latent_map.npz`` holds plain arrays (``embedding`` (N, 2), ``mu`` (N, latent),
``params`` (N, 8) eV/Å², ``names``) and loads without pickle. The fitted UMAP reducer is a
joblib pickle (umap-learn has no other format): it is loaded only from the package's
shipped models or when the caller says ``trust_reducer=True``; without it
:meth:`LatentMap.place` falls back to an inverse-distance average of the k nearest map points
in latent space (UMAP's own initialisation for new points, without its refinement).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import FcinvError
from ..validate import real_array, whole_number


def latent_stats(mu, logvar, active_std: float = 0.1, active_logvar: float = -0.5) -> dict:
    """Per-dimension statistics of μ and log σ² (arrays (N, latent))."""
    mu = real_array(mu, "μ (latent means)")
    logvar = real_array(logvar, "log σ² (latent log-variances)")
    if mu.shape != logvar.shape or mu.ndim != 2:
        raise FcinvError(f"μ and log σ² must both be (N, latent), got {mu.shape} and {logvar.shape}")
    s = {"mu_mean": mu.mean(0), "mu_std": mu.std(0), "logvar_mean": logvar.mean(0), "logvar_std": logvar.std(0)}
    s["active"] = (s["mu_std"] > active_std) & (s["logvar_mean"] < active_logvar)
    s["n_active"] = int(s["active"].sum())
    return s


def decode_ray(inverter, z0, z1, n: int = 8):
    """Decode ``n`` equally spaced latent points from ``z0`` to ``z1``: (z (n, latent), images (n, nq, nE))."""
    z0 = real_array(z0, "the ray's first end point z0", allow_nan=False)
    z1 = real_array(z1, "the ray's second end point z1", allow_nan=False)
    if z0.shape != z1.shape or z0.ndim != 1:
        raise FcinvError("the ray's end points must be two latent vectors of the same length")
    n = whole_number(n, "n (points along the ray)", 2, 1000)
    t = np.linspace(0.0, 1.0, n)[:, None]
    z = (1 - t) * z0 + t * z1
    return z, inverter.decode(z)


@dataclass
class LatentMap:
    """UMAP of latent means with the FC labels of the spectra that made them."""

    embedding: np.ndarray  # (N, 2)
    mu: np.ndarray  # (N, latent)
    params: np.ndarray  # (N, 8) eV/Å²
    names: list
    reducer: object = None
    #: the SHA-256 of the checkpoint (model.pt) whose latent means made the map: a map is one model's
    #: latent space (two 20-dim VAEs' maps look alike and mean different things). ``fcinv latent``
    #: records it (since session 51); a shipped map is its folder's model; None: not known.
    model_sha256: str | None = None

    def check_model(self, model) -> None:
        """Refuse a model other than the one whose latent space the map is (when both are known)."""
        path = getattr(model, "path", None)
        if self.model_sha256 is None or path is None or not Path(path).is_file():
            return
        from ..models.ood import file_sha256

        if file_sha256(path) != self.model_sha256:
            raise FcinvError(
                f"this latent map was made with another model's latent space ({Path(path).parent.name} is not its "
                "model): its positions mean nothing for this one — use the map made with it (`fcinv latent --model …`)"
            )

    @classmethod
    def fit(cls, mu, params, names, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0) -> "LatentMap":
        import umap

        from ..validate import finite_number

        min_dist = finite_number(min_dist, "min_dist (UMAP; its spread is 1)", positive=False, maximum=1.0)
        mu = np.asarray(mu, float)
        if len(mu) < max(5, n_neighbors):
            raise FcinvError(f"UMAP needs more points than n_neighbors ({n_neighbors}); got {len(mu)}")
        red = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed, n_components=2)
        with warnings.catch_warnings():
            # a seeded UMAP runs single-threaded (reproducible maps): umap says so on every fit
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            emb = red.fit_transform(mu)
        return cls(np.asarray(emb), mu, np.asarray(params, float), list(names), red)

    def place(self, mu_new, k: int = 10) -> np.ndarray:
        """2-D positions of new latent means on the map (UMAP transform; without a reducer the
        inverse-distance average of the ``k`` nearest map points in latent space)."""
        mu_new = np.atleast_2d(np.asarray(mu_new, float))
        if mu_new.shape[1] != self.mu.shape[1]:
            raise FcinvError(f"latent vectors of length {mu_new.shape[1]}; this map has {self.mu.shape[1]} dimensions")
        if self.reducer is not None:
            return np.asarray(self.reducer.transform(mu_new))
        k = int(min(max(k, 1), len(self.mu)))
        dist, idx = self._tree.query(mu_new, k=k)
        dist, idx = np.asarray(dist).reshape(len(mu_new), k), np.asarray(idx).reshape(len(mu_new), k)
        w = 1.0 / (dist**2 + 1e-12)  # Shepard weights 1/d²
        return (self.embedding[idx] * w[..., None]).sum(1) / w.sum(1, keepdims=True)

    # ------------------------------------------------------------------ persistence
    def save(self, folder) -> Path:
        """Write ``latent_map.npz`` (and ``umap_reducer.joblib`` when fitted) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            folder / "latent_map.npz",
            embedding=self.embedding.astype(np.float32),
            mu=self.mu,
            params=self.params,
            names=np.array(self.names),
            **({"model_sha256": np.array(self.model_sha256)} if self.model_sha256 else {}),
        )
        if self.reducer is not None:
            import joblib

            joblib.dump(self.reducer, folder / "umap_reducer.joblib", compress=3)
        return folder / "latent_map.npz"

    @classmethod
    def load(cls, folder, trust_reducer: bool | None = None) -> "LatentMap":
        """Read a saved map. ``folder``: a directory, its ``latent_map.npz``, or a shipped model name
        (``ge-vae``). The reducer pickle is read when ``trust_reducer`` is True, or by default
        for the package's own shipped maps."""
        from ..materials import data_path
        from ..validate import as_path

        p = Path(as_path(folder, "latent map"))
        if not p.exists() and str(folder) in ("ge-vae", "nb-vae", "ge-vae-paper", "nb-vae-paper"):
            p = data_path("models", str(folder))
            if not p.is_dir():  # a robust model that is not shipped: its -paper model stands in
                p = data_path("models", f"{str(folder).removesuffix('-paper')}-paper")
        if p.is_dir():
            p = p / "latent_map.npz"
        if not p.is_file():
            raise FcinvError(f"no latent map at {folder!r}: make one with `fcinv latent --model … --dataset … --out DIR`")
        from ..validate import open_npz

        archive = open_npz(p, "latent map")  # (an HDF5 file handed over by mistake is named as such)
        try:
            with archive as z:
                emb, mu, params, names = z["embedding"], z["mu"], z["params"], [str(n) for n in z["names"]]
                sha = str(z["model_sha256"]) if "model_sha256" in z.files else None
        except Exception as exc:
            raise FcinvError(f"{p} is not a readable latent map ({type(exc).__name__}: {exc})") from None
        shipped = data_path("models").resolve() in p.resolve().parents
        if trust_reducer is None:
            trust_reducer = shipped
        if sha is None and shipped and p.with_name("model.pt").is_file():  # a shipped map is its folder's model
            from ..models.ood import file_sha256

            sha = file_sha256(p.with_name("model.pt"))
        reducer = None
        rp = p.with_name("umap_reducer.joblib")
        if trust_reducer and rp.is_file():
            import joblib

            reducer = joblib.load(rp)
        return cls(np.asarray(emb, float), np.asarray(mu, float), np.asarray(params, float), names, reducer, sha)

    def nearest(self, mu_new, k: int = 1) -> np.ndarray:
        """Indices (M, k) of the k nearest map points in latent space (Euclidean in μ), nearest first."""
        mu_new = np.atleast_2d(np.asarray(mu_new, float))
        if mu_new.shape[1] != self.mu.shape[1]:
            raise FcinvError(f"latent vectors of length {mu_new.shape[1]}; this map has {self.mu.shape[1]} dimensions")
        k = int(min(max(k, 1), len(self.mu)))
        _, idx = self._tree.query(mu_new, k=k)
        return np.asarray(idx).reshape(len(mu_new), k)

    @cached_property
    def _tree(self):
        """A k-d tree over the latent means (scipy cKDTree): O(log N) nearest-neighbour queries."""
        from scipy.spatial import cKDTree

        return cKDTree(self.mu)


def plot_latent_map(lmap: LatentMap, fcs=None, extra=None, s: float = 3.0):
    """UMAP scatter panels coloured by each FC (eV/Å²), like the paper's Fig. 6.

    ``extra``: {label: (M, 2) positions} of new spectra placed on the map, drawn as markers.
    """
    import matplotlib.pyplot as plt

    fcs = list(range(lmap.params.shape[1])) if fcs is None else list(fcs)
    cols = min(4, len(fcs))
    rows = (len(fcs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.8 * rows), constrained_layout=True, squeeze=False)
    for ax, k in zip(axes.flat, fcs):
        sc = ax.scatter(lmap.embedding[:, 0], lmap.embedding[:, 1], c=lmap.params[:, k], s=s, cmap="viridis", lw=0)
        for j, (lab, xy) in enumerate((extra or {}).items()):
            xy = np.atleast_2d(xy)
            ax.scatter(xy[:, 0], xy[:, 1], marker="*x+^"[j % 4], s=60, color=f"C{3 + j}", label=lab, lw=1)
        fig.colorbar(sc, ax=ax, label="eV/Å²", shrink=0.8)
        ax.set_title(lmap.names[k], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(fcs) :]:
        ax.axis("off")
    if extra:
        axes.flat[0].legend(fontsize=7)
    return fig


def plot_latent_stats(stats: dict):
    """Per-dimension mean/std of μ and mean of log σ² (the paper's Fig. 5a–b); active dimensions marked."""
    import matplotlib.pyplot as plt

    n = len(stats["mu_mean"])
    x = np.arange(n)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3), constrained_layout=True)
    col = np.where(stats["active"], "C0", "0.7")
    a.bar(x, stats["mu_std"], color=col)
    a.set_title("spread of μ per latent dimension", fontsize=9)
    a.set_xlabel("latent dimension")
    a.set_ylabel("std of μ")
    b.bar(x, stats["logvar_mean"], color=col)
    b.axhline(0, color="k", lw=0.6)
    b.set_title(f"mean log σ² ({stats['n_active']} active of {n}; grey = unused)", fontsize=9)
    b.set_xlabel("latent dimension")
    return fig
