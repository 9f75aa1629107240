"""Test-only stand-ins for the widgets (no physics, no trained model, no torch).

* ``FakeMaterial`` / ``FakeForwardModel`` / ``make_fake_grid``: a material and forward model
  with the core's interface; a smooth analytic dispersion whose branches scale with the
  force constants;
* ``fake_noise_grid()``: a synthetic noise-grid result for ``NoiseGridExplorer``;
* ``fake_scan_inference()``: a synthetic ``ScanInference`` for ``OrientationScatter``;
* ``FakeDecoder`` / ``fake_latent_map()``: a VAE stand-in and a small ``LatentMap`` for
  ``LatentPicker``.

Used by tests/, benchmarks/bench_widget_latency.py and .ci/wheel_smoke.py (copied next to
it); not part of the installed package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class FakeQPath:
    """Like grid.QPath: labels are (bin-edge index, text), breaks are bin indices."""

    nq: int
    labels: list
    breaks: list


@dataclass
class FakeEnergyGrid:
    centers: np.ndarray
    edges: np.ndarray


@dataclass
class FakeGrid:
    q: FakeQPath
    e: FakeEnergyGrid

    @property
    def shape(self):
        return (self.q.nq, len(self.e.centers))


def make_fake_grid(nq: int = 60, ne: int = 50, emax: float = 40.0) -> FakeGrid:
    a, b = nq // 3, 2 * nq // 3
    labels = [(0, "Γ"), (a, "X|K"), (b, "Γ"), (nq, "L")]
    edges = np.linspace(0.0, emax, ne + 1)
    return FakeGrid(FakeQPath(nq, labels, [a]), FakeEnergyGrid(0.5 * (edges[1:] + edges[:-1]), edges))


@dataclass
class FakeForwardModel:
    grid: FakeGrid
    reference: np.ndarray
    sigma_mev: float = 1.0
    backend: str = "numpy"
    calls: int = field(default=0)

    def _theta(self, theta):
        t = np.asarray(theta, dtype=float)
        return t[None, :] if t.ndim == 1 else t

    def frequencies(self, theta):
        t = self._theta(theta)
        x = 3.0 * (np.arange(self.grid.q.nq) + 0.5) / self.grid.q.nq
        s = np.sin(np.pi * x / 2.0) ** 2  # (nq,)
        scale = t / self.reference  # (N, 8)
        w1 = 30.0 * np.sign(scale[:, :1]) * np.sqrt(np.abs(scale[:, :1])) * np.sqrt(s)[None]
        w2 = 20.0 * np.sqrt(np.abs(scale[:, 1:2])) * np.sqrt(s)[None] + 2.0 * scale[:, 2:3]
        w3 = 35.0 - 5.0 * s[None] * scale[:, 3:4] + scale[:, 4:].sum(1, keepdims=True)
        return np.sort(np.stack([w1, w2, w3], axis=-1), axis=-1)

    def spectra(self, theta, normalize=True):
        self.calls += 1
        f = self.frequencies(theta)  # (N, nq, m)
        e = self.grid.e.centers
        img = np.exp(-0.5 * ((e[None, None, None, :] - f[..., None]) / self.sigma_mev) ** 2).sum(2)
        lo = img.min(axis=(1, 2), keepdims=True)
        hi = img.max(axis=(1, 2), keepdims=True)
        return ((img - lo) / np.where(hi > lo, hi - lo, 1.0)).astype(np.float32)

    def is_stable(self, theta):
        return self.frequencies(theta).min(axis=(1, 2)) >= -0.1


@dataclass
class FakeMaterial:
    grid: FakeGrid = field(default_factory=make_fake_grid)
    name: str = "Fake"

    def __post_init__(self):
        self.reference_params = np.array([3.0, -1.5, 0.5, 0.8, 0.1, -0.2, 0.05, 0.3, 0.01, 0.02])
        self.active = np.arange(8)
        self.active_names = [
            f"FC{i} {nn}NN {c}"
            for i, (nn, c) in enumerate([(1, "xx"), (1, "xy"), (2, "xx"), (2, "yy"), (3, "xx"), (3, "xy"), (4, "xx"), (4, "yz")])
        ]
        ref = self.reference_params[self.active]
        width = np.maximum(0.5 * np.abs(ref), 0.1)
        lo = ref - width
        lo[0] = -0.5 * ref[0]  # let FC0 go negative: an unstable region to explore
        self.domain = np.stack([lo, ref + width], axis=1)

    def forward_model(self, sigma_mev=1.0, backend="numpy"):
        return FakeForwardModel(self.grid, self.reference_params[self.active], sigma_mev, backend)


def fake_noise_grid(nq: int = 40, ne: int = 30, seed: int = 0) -> dict:
    """Synthetic noise-grid results for two models, ``{"VAE": r, "ResNet": r}`` of
    ``analysis.noise_grid.NoiseGridResult`` (no physics, no model): R² falls with the
    background and rises with the counts; both share the example spectra (as
    ``NoiseGridExplorer`` shows the first result's)."""
    from fcinv_widgets.analysis.noise_grid import NoiseGridResult

    rng = np.random.default_rng(seed)
    b = np.array([0.0, 0.05, 0.1, 0.2, 0.4])
    p = np.array([1e2, 3e2, 1e3, 3e3, 1e4])
    q = np.linspace(0, 1, nq)[:, None]
    e = np.linspace(0, 1, ne)[None, :]
    clean = np.exp(-((e - 0.3 - 0.4 * np.sin(np.pi * q)) ** 2) / 0.005).astype(np.float32)
    noisy = np.empty((5, 5, nq, ne), np.float32)
    snr = np.empty((5, 5))
    for i, bb in enumerate(b):
        for j, pp in enumerate(p):
            counts = rng.poisson(pp * (clean + bb)) / pp
            img = (counts - counts.min()) / (counts.max() - counts.min())
            noisy[i, j] = img
            snr[i, j] = float(clean.sum() / np.sqrt(((img - clean) ** 2).sum() + 1e-9))
    quality = (np.log10(p)[None, :] - 2) / 2 - b[:, None]
    names = [f"FC{i}" for i in range(8)]
    out = {}
    for model, scale in (("VAE", 1.0), ("ResNet", 0.9)):
        r2 = np.clip(quality[:, :, None] * np.linspace(1.0, 0.6, 8)[None, None, :] * scale, 0, 1)
        out[model] = NoiseGridResult(
            names, b, p, r2, 0.1 * (1.0 - r2), snr.copy(), clean, noisy, snr.copy(), model=model, meta={"kind": "fake"}
        )
    return out


def fake_scan_inference(n: int = 24, grid: Any = None, seed: int = 0):
    """Small synthetic ScanInference for tests and demos (no physics): predictions scatter
    around the fake material's reference with an angle-dependent bias; each scan covers a
    band of the (q, E) grid. Pair it with ``FakeMaterial(grid).forward_model()``."""
    from fcinv_widgets.analysis.scan_inference import ScanInference

    rng = np.random.default_rng(seed)
    mat = FakeMaterial(grid=grid if grid is not None else make_fake_grid(30, 24))
    fm = mat.forward_model()
    ref = np.asarray(mat.reference_params[mat.active], float)
    width = mat.domain[:, 1] - mat.domain[:, 0]
    ang = np.linspace(0.0, 180.0, n, endpoint=False)
    bias = 0.15 * np.sin(np.deg2rad(2 * ang))[:, None] * width[None]
    mean = ref[None] + bias + 0.03 * width[None] * rng.standard_normal((n, len(ref)))
    std = 0.02 * width[None] * (1.5 + np.cos(np.deg2rad(ang)))[:, None] * np.ones((1, len(ref)))
    full_mean = ref + 0.01 * width
    recon = fm.spectra(mean)
    nq, ne = recon.shape[1:]
    inputs = recon + 0.05 * rng.standard_normal(recon.shape).astype(np.float32)
    qi = np.arange(nq)
    for k, a in enumerate(ang):  # each scan sees a band of q that moves with ω
        c = (a / 180.0) * nq
        d = np.minimum(np.abs(qi - c), nq - np.abs(qi - c))
        inputs[k, d > nq * 0.3] = np.nan
    covered = np.isfinite(inputs).reshape(n, -1)
    mse = (((mean - full_mean) / width) ** 2).mean(1)
    return ScanInference(
        names=list(mat.active_names),
        angles_deg=ang,
        mean=mean,
        std=std,
        full_mean=full_mean,
        full_std=0.02 * width,
        reference=ref,
        mse=mse,
        inputs=inputs.astype(np.float32),
        recon=recon.astype(np.float32),
        coverage=covered.mean(1),
        meta={"kind": "fake"},
    )


class FakeDecoder:
    """Tiny stand-in for a trained VAE (no model, no torch): ``decode(z)`` draws two smooth
    branches whose energies follow z[0] and z[1]; ``encode(spectra)`` returns fixed
    projections of the image (so the same spectrum always lands at the same place)."""

    def __init__(self, nq: int = 24, ne: int = 20, latent: int = 6):
        self.nq, self.ne, self.latent = nq, ne, latent
        self.calls = 0

    def decode(self, z) -> np.ndarray:
        self.calls += 1
        z = np.atleast_2d(np.asarray(z, float))
        q = np.linspace(0, 1, self.nq)[None, :, None]
        e = np.linspace(0, 1, self.ne)[None, None, :]
        a = 0.45 + 0.12 * np.tanh(z[:, 0])[:, None, None]
        b = 0.2 + 0.08 * np.tanh(z[:, 1])[:, None, None]
        w1 = a * np.sin(np.pi * q) + 0.05
        w2 = b + 0.5 * q
        img = np.exp(-((e - w1) ** 2) / 0.004) + np.exp(-((e - w2) ** 2) / 0.004)
        return (img / img.max(axis=(1, 2), keepdims=True)).astype(np.float32)

    def encode(self, spectra):
        x = np.asarray(spectra, float).reshape(len(spectra), -1)
        rng = np.random.default_rng(42)
        proj = rng.standard_normal((x.shape[1], self.latent)) / np.sqrt(x.shape[1])
        mu = np.nan_to_num(x) @ proj
        return mu, np.full_like(mu, -2.0)


def fake_latent_map(n: int = 300, latent: int = 6, seed: int = 0):
    """Small random LatentMap for tests and demos (no UMAP, no model): three clusters in
    latent space, the 'embedding' a fixed 2-D projection of them, FCs linear in μ."""
    from fcinv_widgets.analysis.latent import LatentMap

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, latent)) * 2.0
    mu = centres[rng.integers(0, 3, n)] + 0.6 * rng.standard_normal((n, latent))
    proj = np.linalg.qr(rng.standard_normal((latent, 2)))[0]
    emb = mu @ proj
    emb = emb + 0.15 * np.sin(2.0 * emb[:, ::-1])  # a little non-linear, like a UMAP
    ref = np.array([3.0, -1.5, 0.5, 0.8, 0.1, -0.2, 0.05, 0.3])
    params = ref[None] + 0.1 * np.abs(ref)[None] * (mu @ rng.standard_normal((latent, 8)))
    return LatentMap(emb, mu, params, [f"FC{i}" for i in range(8)])
