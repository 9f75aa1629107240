"""Energy broadening: resolution widths and mode → image kernels (pure functions).

Every mode of frequency ω (meV) contributes a normalised Gaussian
``w · exp(-(E-ω)²/2σ²) / (σ√(2π))`` (per meV) sampled at the energy-bin centres; σ is
constant or a function of the mode energy (a direct-geometry instrument resolution).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import FcinvError
from .units import ARCS_E_AT_K1, ARCS_V_AT_K1

# ARCS-like direct-geometry spectrometer (distances m, times s), as in pathSQE.
_ARCS = dict(L1=11.6, L2=1.99, L3=3.0, dtp=1.2e-6, dtc=3.6e-6, dd=2.4e-6, factor=2.4)
_MN = 1.67492749804e-27  # kg
_MEV = 1.602176634e-22  # J


def sigma_arcs(energy_mev, ei_mev: float, **params) -> np.ndarray:
    """Gaussian σ (meV) of the energy resolution of an ARCS-like chopper spectrometer.

    σ = f · 1.5 · m_n · sqrt{[v_i³/L1 + L2 v_f³/(L1 L3)]² Δt_p² + [v_i³/L1 + (L1+L2) v_f³/(L1 L3)]² Δt_c²
    + (v_f³/L3)² (Δd/v_f)²}, v = 630.2 √(E/2.072) m/s, with the empirical factor f = 2.4 of the
    paper's folding software (pathSQE). Energy transfers E ≥ Ei are out of range (NaN).
    """
    p = {**_ARCS, **params}
    E = np.asarray(energy_mev, dtype=float)
    if ei_mev <= 0:
        raise FcinvError(f"incident energy must be positive, got {ei_mev} meV")
    ef = ei_mev - E
    vi = ARCS_V_AT_K1 * math.sqrt(ei_mev / ARCS_E_AT_K1)
    with np.errstate(invalid="ignore"):
        vf = ARCS_V_AT_K1 * np.sqrt(np.where(ef > 0, ef, np.nan) / ARCS_E_AT_K1)
    L1, L2, L3 = p["L1"], p["L2"], p["L3"]
    a = vi**3 / L1 + L2 * vf**3 / (L1 * L3)
    b = vi**3 / L1 + (L1 + L2) * vf**3 / (L1 * L3)
    c = vf**3 / L3 * (p["dd"] / vf)
    s = np.sqrt((a * p["dtp"]) ** 2 + (b * p["dtc"]) ** 2 + c**2)
    return p["factor"] * 1.5 * _MN * s / _MEV


def gaussian_dense(xp, omega, weights, centers, sigma):
    """Dense Gaussians: omega (..., S) meV, weights (S,), centers (nE,), sigma scalar or (..., S).

    Returns (..., S, nE) contributions (per meV). Works for NumPy, CuPy and torch arrays
    (differentiable in torch).
    """
    scalar = np.ndim(sigma) == 0  # (np.isscalar is a type guard that confuses mypy here)
    d = (centers[None, :] - omega[..., None]) / sigma[..., None] if not scalar else (centers - omega[..., None]) / sigma
    norm = weights[:, None] / (math.sqrt(2 * math.pi) * (sigma[..., None] if not scalar else sigma))
    return xp.exp(-0.5 * d * d) * norm
