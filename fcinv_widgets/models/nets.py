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


class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 convolutions with batch norm and an identity shortcut
    (a 1×1 strided projection when the shape changes). Parameter names follow torchvision."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + idt)


class ResNet18(nn.Module):
    """The ResNet-18 topology (He et al. 2016) for one-channel I(q,E) images and ``n_out``
    regression outputs (standardised FCs).

    Stem: 7×7 stride-2 convolution, batch norm, ReLU, 3×3 stride-2 max pool; four stages of two
    basic blocks with ``width·(1, 2, 4, 8)`` channels (strides 1, 2, 2, 2); global average pool;
    a linear head. ``width=64`` is the standard network (11 M parameters) and its parameter
    names equal torchvision's, so ImageNet weights load with :meth:`load_pretrained`; the
    shipped models use a narrower ``width`` to stay small and fast on CPUs.
    """

    def __init__(self, n_out: int = 8, width: int = 64, in_channels: int = 1):
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        chans = [width, 2 * width, 4 * width, 8 * width]
        cin = width
        for i, c in enumerate(chans):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, c, stride), BasicBlock(c, c, 1)))
            cin = c
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, n_out)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init the last BN of each block: each block starts as identity
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x):
        """x (N, nq, nE) or (N, 1, nq, nE) → (N, n_out)."""
        if x.dim() == 3:
            x = x[:, None]
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def load_pretrained(self, state_dict: dict) -> dict:
        """Transfer learning: copy matching weights from a (torchvision-style) ResNet-18 state dict.

        A 3-channel (RGB) first convolution is summed over its input channels to make the
        one-channel one; tensors whose shapes do not match (the ImageNet 1000-class ``fc``
        head, or any layer of another width) are skipped. Returns {"loaded": [...], "skipped": [...]}.
        """
        own = self.state_dict()
        loaded, skipped = [], []
        for k, v in state_dict.items():
            if k not in own or not torch.is_tensor(v):
                skipped.append(k)
                continue
            if k == "conv1.weight" and v.dim() == 4 and v.shape[1] != own[k].shape[1] and own[k].shape[1] == 1:
                v = v.sum(dim=1, keepdim=True)
            if v.shape != own[k].shape:
                skipped.append(k)
                continue
            own[k] = v.to(own[k].dtype)
            loaded.append(k)
        self.load_state_dict(own)
        return {"loaded": loaded, "skipped": skipped}


def split_heteroscedastic(out, n: int):
    """A heteroscedastic head's output (..., 2n) → (mean, log variance) (..., n) each, in
    standardised target units; log σ² is clamped to [−14, 6] for numerical safety."""
    return out[..., :n], out[..., n:].clamp(-14.0, 6.0)


def gaussian_nll(mean, logvar, y, beta: float = 0.5):
    """β-NLL (Seitzer et al., ICLR 2022): the Gaussian negative log-likelihood
    ½[log σ² + (y − μ)²/σ²] per output, weighted by stop-gradient(σ²)^β so that the mean is
    not starved of gradient where σ is large; β = 0 is the plain NLL. Batch mean."""
    nll = 0.5 * (logvar + (y - mean) ** 2 * torch.exp(-logvar))
    if beta:
        nll = nll * torch.exp(beta * logvar).detach()
    return nll.mean()
