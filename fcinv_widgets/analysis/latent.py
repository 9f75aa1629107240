"""Latent-space analysis of a trained VAE (the paper's Figs. 5–6).

* :func:`latent_stats`: per-dimension mean/std of μ and log σ² over a set of spectra, and
  which dimensions are *active* (μ spread out, log σ² well below the prior's 0) versus
  unused (μ ≈ 0, log σ² ≈ 0: the posterior equals the prior);
* :func:`decode_ray`: spectra decoded along a straight line between two latent points;
* :class:`LatentMap`: a 2-D UMAP of the latent means, fitted once and reused to place new
  spectra (experiments, noisy or single-scan inputs) on the same map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FcinvError


def latent_stats(mu, logvar, active_std: float = 0.1, active_logvar: float = -0.5) -> dict:
    """Per-dimension statistics of μ and log σ² (arrays (N, latent))."""
    mu = np.asarray(mu, float)
    logvar = np.asarray(logvar, float)
    if mu.shape != logvar.shape or mu.ndim != 2:
        raise FcinvError(f"μ and log σ² must both be (N, latent), got {mu.shape} and {logvar.shape}")
    s = {"mu_mean": mu.mean(0), "mu_std": mu.std(0), "logvar_mean": logvar.mean(0), "logvar_std": logvar.std(0)}
    s["active"] = (s["mu_std"] > active_std) & (s["logvar_mean"] < active_logvar)
    s["n_active"] = int(s["active"].sum())
    return s


def decode_ray(inverter, z0, z1, n: int = 8):
    """Decode ``n`` equally spaced latent points from ``z0`` to ``z1``: (z (n, latent), images (n, nq, nE))."""
    z0, z1 = np.asarray(z0, float), np.asarray(z1, float)
    if z0.shape != z1.shape or z0.ndim != 1:
        raise FcinvError("the ray's end points must be two latent vectors of the same length")
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

    @classmethod
    def fit(cls, mu, params, names, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0) -> "LatentMap":
        import umap

        mu = np.asarray(mu, float)
        if len(mu) < max(5, n_neighbors):
            raise FcinvError(f"UMAP needs more points than n_neighbors ({n_neighbors}); got {len(mu)}")
        red = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed, n_components=2)
        emb = red.fit_transform(mu)
        return cls(np.asarray(emb), mu, np.asarray(params, float), list(names), red)

    def place(self, mu_new) -> np.ndarray:
        """2-D positions of new latent means on the fitted map."""
        if self.reducer is None:
            raise FcinvError("this map has no fitted reducer (loaded without it): refit with LatentMap.fit")
        return np.asarray(self.reducer.transform(np.atleast_2d(np.asarray(mu_new, float))))

    def nearest(self, mu_new, k: int = 1) -> np.ndarray:
        """Indices of the k nearest map points in latent space (Euclidean in μ)."""
        d = ((self.mu[None] - np.atleast_2d(mu_new)[:, None]) ** 2).sum(-1)
        return np.argsort(d, axis=1)[:, :k]
