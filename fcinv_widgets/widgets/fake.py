"""A small fake material/forward model with the core's interface, for widget
tests and demos before (or without) the physics core. No physics: a smooth
analytic dispersion whose branches scale with the force constants."""

from __future__ import annotations

from dataclasses import dataclass, field

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
