"""The measurement model: what an instrument does to an idealized I(q, E) image, applied on
the fly to training spectra (data augmentation) and to build realistic test sets.

Training images (:mod:`fcinv_widgets.dataset`) are unit-weight: every phonon mode a Gaussian
of σ = 1 meV, min-max scaled to [0, 1]. :class:`MeasurementModel` turns one of them into what
the models see at inference after the standard correction to unit weights
(:func:`fcinv_widgets.analysis.expio.to_model_intensity`: × E/(n(E,T)+1), clipped), in this
order (each step drawn per spectrum):

1. **resolution**: with probability ``p_resolution`` the image is re-broadened to the ARCS
   resolution σ(E; Ei) (:func:`~fcinv_widgets.broadening.sigma_arcs`) at an incident energy
   Ei drawn uniformly in ``ei_factor`` × the grid's largest energy: a Gaussian kernel of width
   sqrt(σ(E)² − σ₀²) along E (σ₀ = the dataset's 1 meV; the sum of two Gaussians is Gaussian,
   so this is exact for a locally constant σ);
2. **residual intensity weighting**: what the correction to unit weights leaves of the folded
   one-phonon S(Q, E) weights (|Q·e|² averaged over the folded zones, the Debye–Waller factor,
   a temperature guessed wrong): a smooth random multiplicative field
   exp(a·Σₖ cₖ cos(kπx + φₖ) + b·(E/E_max − ½)) over the path coordinate x ∈ [0, 1] and E,
   with |a| ≤ ``weight_q`` and |b| ≤ ``weight_e``; the image is then rescaled to peak 1;
3. **elastic line**: a Gaussian at E = 0 of the resolution width σ(0; Ei) with a Lorentzian
   tail (10 % weight, HWHM σ(0)), of height A ∈ ``elastic`` (fraction of the peak);
4. **background**: B ∈ ``background`` (fraction of the peak, the noise grid's range) with a
   linear slope along E of relative size s ∈ ``slope`` and along q of s_q ∈ ``slope``/2;
5. **counting**: Poisson counts with P expected counts at the peak, log-uniform in ``counts``
   (the noise grid's range), divided by P (with probability ``p_noiseless`` no counting noise);
6. **coverage**: with probability ``p_mask`` a mask from the single-orientation kinematics of
   :mod:`fcinv_widgets.scans` (a bank computed once per material, :func:`coverage_bank`): a
   single scan (probability ``p_single``) or the union of a random subset of scans;
7. the same input scaling as :meth:`fcinv_widgets.models.inverter._Model.prepare`: min-max
   over the covered pixels, uncovered pixels → 0.

With probability ``p_clean`` a spectrum passes unchanged (the paper's idealized input).

Every draw comes from ``numpy.random.default_rng(SeedSequence([seed, epoch, sample]))``, so a
sample's augmentation is reproducible from (seed, epoch, sample index) alone and nothing is
stored: the loader applies it to each mini-batch (:meth:`MeasurementModel.apply`).

**Training and inference are consistent as follows**: the models are trained on unit-weight
images augmented as above; measured inputs (a folded one-phonon S(Q, E)) must be corrected
to unit weights once (× E/(n+1) and clipping, ``to_model_intensity``) before inversion — the
augmentation covers what that correction cannot remove, not the (n+1)/E factor itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import FcinvError

#: the σ (meV) of the training datasets' unit-weight Gaussians
DATASET_SIGMA_MEV = 1.0


@dataclass(frozen=True)
class MeasurementModel:
    """Ranges of the measurement effects (see the module docstring). Fractions are of the
    spectrum's peak; energies in meV; ``ei_factor`` is Ei / (the grid's largest energy)."""

    p_clean: float = 0.1
    p_resolution: float = 0.7
    ei_factor: tuple = (1.1, 1.9)
    weight_q: float = 0.35
    weight_e: float = 0.6
    elastic: tuple = (0.0, 1.0)
    p_elastic: float = 0.6
    background: tuple = (0.0, 0.4)
    slope: tuple = (-0.5, 0.5)
    counts: tuple = (10.0, 1000.0)
    p_noiseless: float = 0.05
    p_mask: float = 0.6
    p_single: float = 0.4
    n_ei_kernels: int = 12
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for k in ("p_clean", "p_resolution", "p_elastic", "p_noiseless", "p_mask", "p_single"):
            v = getattr(self, k)
            if not (0 <= v <= 1):
                raise FcinvError(f"measurement model: {k} must be a probability in [0, 1], got {v!r}")
        for k in ("ei_factor", "elastic", "background", "slope", "counts"):
            lo, hi = getattr(self, k)
            if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
                raise FcinvError(f"measurement model: {k} must be a range lo ≤ hi, got {getattr(self, k)!r}")
        if self.ei_factor[0] <= 1.0:
            raise FcinvError("measurement model: Ei must exceed the grid's largest energy (ei_factor > 1)")
        if self.counts[0] <= 0 or self.background[0] < 0 or self.elastic[0] < 0:
            raise FcinvError("measurement model: counts must be > 0, background and elastic ≥ 0")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> MeasurementModel:
        d = dict(d)
        for k in ("ei_factor", "elastic", "background", "slope", "counts"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def sampler(self, energies_mev, masks=None, seed: int = 0) -> Augmenter:
        return Augmenter(self, energies_mev, masks=masks, seed=seed)


class Augmenter:
    """A :class:`MeasurementModel` bound to an energy axis (meV bin centres) and a coverage bank
    (``masks``: (n_masks, nq, nE) bool, True = covered; None = full coverage)."""

    def __init__(self, model: MeasurementModel, energies_mev, masks=None, seed: int = 0):
        from .broadening import sigma_arcs

        self.model = model
        self.e = np.asarray(energies_mev, float)
        self.seed = int(seed)
        e_max = float(self.e[-1] + 0.5 * (self.e[1] - self.e[0]))
        self.eis = np.linspace(model.ei_factor[0], model.ei_factor[1], max(1, model.n_ei_kernels)) * e_max
        # one (nE, nE) kernel per Ei: column e' spreads source bin e' with the extra width
        self.kernels = np.empty((len(self.eis), len(self.e), len(self.e)), np.float32)
        self.sigma0 = np.empty(len(self.eis))
        de = self.e[1] - self.e[0]
        for i, ei in enumerate(self.eis):
            s = sigma_arcs(self.e, ei)
            extra = np.sqrt(np.clip(s**2 - DATASET_SIGMA_MEV**2, 0.0, None))
            extra = np.maximum(extra, 0.3 * de)
            k = np.exp(-0.5 * ((self.e[:, None] - self.e[None, :]) / extra[None, :]) ** 2)
            k /= k.sum(0, keepdims=True)
            self.kernels[i] = k  # out[:, e] = Σ_e' img[:, e'] k[e, e']
            self.sigma0[i] = float(sigma_arcs(np.array([0.0]), ei)[0])
        self.kernels_t = np.ascontiguousarray(self.kernels.transpose(0, 2, 1))
        self.masks = None if masks is None else np.asarray(masks, bool)
        if self.masks is not None and (self.masks.ndim != 3 or self.masks.shape[2] != len(self.e)):
            raise FcinvError(f"coverage bank of shape {self.masks.shape} does not fit {len(self.e)} energy bins")

    def rng(self, epoch: int, sample: int) -> np.random.Generator:
        """The generator of one (epoch, sample) draw (both non-negative integers)."""
        if epoch < 0 or sample < 0:
            raise FcinvError(f"augmentation epoch and sample must be ≥ 0, got {epoch}, {sample}")
        return np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch), int(sample)]))

    def one(self, img: np.ndarray, epoch: int, sample: int, return_info: bool = False, scale: bool = True):
        """Augment one (nq, nE) image in [0, 1]; returns float32 (nq, nE) in [0, 1] (0 = uncovered).
        ``scale=False``: the counts / P before the final scaling, NaN where not covered."""
        m = self.model
        r = self.rng(epoch, sample)
        x = np.asarray(img, np.float32)
        info: dict[str, float] = {"clean": True}  # flags and numbers (bool and int are floats to mypy)
        if r.random() < m.p_clean:
            return (x.astype(np.float32), info) if return_info else x.astype(np.float32)
        info = {"clean": False}
        nq = x.shape[0]
        k = None
        if r.random() < m.p_resolution:
            k = int(r.integers(len(self.eis)))
            x = x @ self.kernels_t[k]
            info["ei_mev"] = float(self.eis[k])
        # residual weighting: smooth random field along q and a tilt along E
        xq = np.linspace(0.0, 1.0, nq)
        a = r.uniform(0, m.weight_q)
        c = r.normal(size=3) / math.sqrt(3)
        ph = r.uniform(0, 2 * math.pi, size=3)
        fq = a * sum(c[j] * np.cos((j + 1) * math.pi * xq + ph[j]) for j in range(3))
        b = r.uniform(-m.weight_e, m.weight_e)
        fe = b * (self.e / self.e[-1] - 0.5)
        x = x * np.exp(fq[:, None] + fe[None, :]).astype(np.float32)
        x = x / max(x.max(), 1e-12)
        # elastic line with a Lorentzian tail
        if r.random() < m.p_elastic:
            amp = r.uniform(*m.elastic)
            s0 = self.sigma0[k] if k is not None else DATASET_SIGMA_MEV
            el = 0.9 * np.exp(-0.5 * (self.e / s0) ** 2) + 0.1 * s0**2 / (self.e**2 + s0**2)
            x = x + amp * el[None, :]
            info["elastic"] = float(amp)
        # sloping background
        B = r.uniform(*m.background)
        s_e = r.uniform(*m.slope)
        s_q = 0.5 * r.uniform(*m.slope)
        bg = B * (1 + s_e * (self.e / self.e[-1] - 0.5))[None, :] * (1 + s_q * (xq - 0.5))[:, None]
        x = x + np.clip(bg, 0.0, None)
        info["background"] = float(B)
        # counting
        if r.random() >= m.p_noiseless:
            P = math.exp(r.uniform(math.log(m.counts[0]), math.log(m.counts[1])))
            x = (r.poisson(P * x) / P).astype(np.float32)
            info["counts"] = float(P)
        # coverage
        cov = None
        if self.masks is not None and len(self.masks) and r.random() < m.p_mask:
            if r.random() < m.p_single:
                cov = self.masks[int(r.integers(len(self.masks)))]
                info["scans"] = 1
            else:
                n = int(r.integers(2, max(3, len(self.masks) // 2) + 1))
                pick = r.choice(len(self.masks), size=min(n, len(self.masks)), replace=False)
                cov = self.masks[pick].any(0)
                info["scans"] = len(pick)
        if not scale:
            y = x if cov is None else np.where(cov, x, np.nan)
            return (y.astype(np.float32), info) if return_info else y.astype(np.float32)
        if cov is not None and cov.any():
            lo, hi = x[cov].min(), x[cov].max()
            y = np.where(cov, (x - lo) / (hi - lo if hi > lo else 1.0), 0.0)
            info["coverage"] = float(cov.mean())
        else:
            lo, hi = x.min(), x.max()
            y = (x - lo) / (hi - lo if hi > lo else 1.0)
        y = y.astype(np.float32)
        return (y, info) if return_info else y

    def apply(self, images, samples, epoch: int) -> np.ndarray:
        """Augment a batch (N, nq, nE) whose rows are the dataset samples ``samples`` (N,) at
        ``epoch``: each row depends only on (seed, epoch, sample), not on the batch it is in."""
        images = np.asarray(images)
        return np.stack([self.one(im, epoch, int(s)) for im, s in zip(images, samples)])


def coverage_bank(material, ei_mev: float | None = None, angles_deg=None, qmax: float = 6.0, progress: bool = False):
    """(n_scans, nq, nE) bool coverage masks of single-orientation scans of ``material``
    (a :class:`~fcinv_widgets.materials.Material`) at ``ei_mev`` (default 1.15 × the grid's
    largest energy), angles default 0°–178° in 4° steps, folded points up to ``qmax`` Å⁻¹
    (6 Å⁻¹ is conservative: a real data set reaches further and covers more)."""
    from .scans import simulate_scans

    grid = material.grid
    ei = float(ei_mev) if ei_mev is not None else 1.15 * float(grid.e.e_max)
    ang = np.arange(0.0, 180.0, 4.0) if angles_deg is None else np.asarray(angles_deg, float)
    s = simulate_scans(material, ei, ang, qmax=qmax, progress=progress)
    return np.isfinite(s.scans)


def save_bank(path, masks, meta: dict) -> None:
    np.savez_compressed(
        path, masks=np.packbits(np.asarray(masks, bool), axis=-1), shape=np.array(masks.shape), meta=np.array(json.dumps(meta))
    )


def load_bank(path):
    """(masks (n, nq, nE) bool, meta dict) from :func:`save_bank`'s file (no pickles)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            shape = tuple(int(v) for v in z["shape"])
            masks = np.unpackbits(z["masks"], axis=-1)[..., : shape[-1]].astype(bool).reshape(shape)
            meta = json.loads(str(z["meta"]))
    except (OSError, KeyError, ValueError) as exc:
        raise FcinvError(f"{path}: not a coverage-bank file ({type(exc).__name__}: {exc})") from None
    return masks, meta
