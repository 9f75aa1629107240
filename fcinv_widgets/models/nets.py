"""Network definitions (PyTorch): a convolutional VAE and the FC regressor."""

from __future__ import annotations

import torch
from torch import nn


def _padded(n: int, k: int = 16) -> int:
    return (n + k - 1) // k * k


class VAE(nn.Module):
    """Convolutional VAE over one-channel (nq, nE) images in [0, 1].

    Four stride-2 convolutions (channels ``base·(1, 2, 4, 8)``), a dense bottleneck to a
    ``latent``-dimensional Gaussian (μ, log σ²), and the mirror-image decoder with a sigmoid
    output. Images are zero-padded to multiples of 16 and cropped back.
    """

    def __init__(self, shape, latent: int = 20, base: int = 8, hidden: int = 128):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.latent = latent
        H, W = _padded(self.shape[0]), _padded(self.shape[1])
        self.pad = (H, W)
        c = [1, base, 2 * base, 4 * base, 8 * base]
        enc = []
        for a, b in zip(c[:-1], c[1:]):
            enc += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.GELU()]
        self.enc = nn.Sequential(*enc)
        self.h, self.w = H // 16, W // 16
        flat = c[-1] * self.h * self.w
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.GELU())
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.dfc = nn.Sequential(nn.Linear(latent, hidden), nn.GELU(), nn.Linear(hidden, flat), nn.GELU())
        dec = []
        rc = c[::-1]
        for i, (a, b) in enumerate(zip(rc[:-1], rc[1:])):
            dec += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1)]
            if i < len(rc) - 2:
                dec += [nn.GELU()]
        self.dec = nn.Sequential(*dec)
        self.c_last = c[-1]

    def encode(self, x):
        """x (N, nq, nE) → μ, log σ² (N, latent)."""
        H, W = self.pad
        x = nn.functional.pad(x[:, None], (0, W - x.shape[-1], 0, H - x.shape[-2]))
        h = self.fc(self.enc(x))
        return self.mu(h), self.logvar(h)

    def decode(self, z):
        """z (N, latent) → images (N, nq, nE) in [0, 1]."""
        h = self.dfc(z).view(-1, self.c_last, self.h, self.w)
        y = torch.sigmoid(self.dec(h))[:, 0]
        return y[:, : self.shape[0], : self.shape[1]]

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


class Regressor(nn.Module):
    """Feed-forward network: latent vector → standardised FC parameters."""

    def __init__(self, latent: int = 20, n_out: int = 8, hidden: int = 128, depth: int = 3):
        super().__init__()
        layers, d = [], latent
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.GELU()]
            d = hidden
        layers.append(nn.Linear(d, n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


def vae_loss(recon, x, mu, logvar, beta: float):
    """Per-image reconstruction (sum of squared errors) + β·KL(q(z|x) ‖ N(0, I)), batch mean."""
    rec = ((recon - x) ** 2).sum(dim=(1, 2)).mean()
    kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)).mean()
    return rec + beta * kl, rec, kl
