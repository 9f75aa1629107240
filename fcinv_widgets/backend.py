"""Array back-ends: NumPy (default), CuPy (GPU; used when available) and torch (differentiable).

``get_backend("auto")`` picks CuPy when ``cupy.cuda.is_available()`` is true and NumPy
otherwise; the forward model is written once against the small namespace returned here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import FcinvError, MissingDependencyError


@dataclass(frozen=True)
class Backend:
    name: str  # "numpy", "cupy" or "torch"
    # the array module (numpy, cupy or torch): their namespaces share no common type, so the
    # forward model's calls through it are checked at run time (tests per backend), not by mypy
    xp: Any
    device: Any = None  # torch.device for the torch backend, else None

    def asarray(self, a: Any, dtype: type[np.generic] | None = None) -> Any:
        if self.name == "torch":
            import torch

            dtypes: dict[type[np.generic] | None, torch.dtype | None] = {
                np.float64: torch.float64,
                np.float32: torch.float32,
                np.complex128: torch.complex128,
                None: None,
            }
            dt = dtypes[dtype]
            if isinstance(a, torch.Tensor):
                return a.to(device=self.device, dtype=dt or a.dtype)
            return torch.as_tensor(np.asarray(a), dtype=dt, device=self.device)
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        if self.name == "cupy":
            return self.xp.asnumpy(a)
        if self.name == "torch":
            return a.detach().cpu().numpy()
        return np.asarray(a)


def cupy_available() -> bool:
    try:
        import cupy

        return bool(cupy.cuda.is_available())
    except Exception:
        return False


def get_backend(name: "str | Backend" = "numpy", device: Any = None) -> Backend:
    """``name``: "numpy", "cupy", "torch" or "auto" (CuPy if a GPU is usable, else NumPy)."""
    if isinstance(name, Backend):
        return name
    if not isinstance(name, str):  # an array's == would not give one truth value
        raise FcinvError(f"unknown backend {name!r}: use 'numpy', 'cupy', 'torch' or 'auto'")
    if name == "auto":
        name = "cupy" if cupy_available() else "numpy"
    if name == "numpy":
        return Backend("numpy", np)
    if name == "cupy":
        if not cupy_available():
            raise MissingDependencyError(
                "backend 'cupy' needs CuPy and a CUDA GPU (pip install 'fcinv-widgets[gpu]'); "
                "none is usable here — use backend='numpy' or 'auto'"
            )
        import cupy

        return Backend("cupy", cupy)
    if name == "torch":
        import torch

        dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return Backend("torch", torch, dev)
    raise FcinvError(f"unknown backend {name!r}: use 'numpy', 'cupy', 'torch' or 'auto'")
