"""The noise model of the robustness study: constant background B and Poisson counting P.

For a clean spectrum I (min-max scaled, peak 1):

1. background: I_B = I + B — a flat background at a fraction B of the spectrum's peak;
2. counting: N ~ Poisson(P · I_B) — P is the expected number of counts at the peak
   intensity (so a larger P means a longer measurement, relatively less noise);
3. the model sees N / P min-max scaled again to [0, 1], like any measured input.

The signal-to-noise ratio reported with each noisy spectrum is
SNR = ‖I‖₂ / ‖Ĩ − I‖₂ over the covered pixels, with Ĩ = N/P − B the background-subtracted
estimate of I: it falls with B (the background adds counting noise but no signal) and rises
with P (∝ √P for B = 0). ``counts = None`` (or inf) means no counting noise; NaN pixels
(not covered) stay NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import FcinvError
from .validate import as_real_array, finite_number, is_real_number, whole_number

#: the largest background B (× the peak) and counts P at the peak :func:`add_noise` takes: far beyond
#: any measurement, below where the Poisson sampler's λ overflows (P = 1e300 was a numpy error)
MAX_BACKGROUND = 100.0
MAX_COUNTS = 1e12
#: the lowest percentile a peak reference or a clip level may be: below the median it is not a peak
#: (0.995, a fraction for 99.5, clipped an image to ~0)
MIN_PERCENTILE = 50.0
#: default 5 × 5 grid: background (fraction of the peak) × counts at the peak
DEFAULT_BACKGROUNDS = (0.0, 0.05, 0.1, 0.2, 0.4)
DEFAULT_COUNTS = (1000.0, 300.0, 100.0, 30.0, 10.0)


@dataclass(frozen=True)
class NoiseLevel:
    background: float
    counts: float | None

    def __post_init__(self):  # NoiseLevel(-1, nan) was made without a word; add_noise refused it only later
        finite_number(self.background, f"background B (× the peak, ≤ {MAX_BACKGROUND:g})", positive=False, maximum=MAX_BACKGROUND)
        if self.counts is not None:
            check_counts(self.counts)

    def label(self) -> str:
        p = "∞" if self.counts is None or not np.isfinite(self.counts) else f"{self.counts:g}"
        return f"B={self.background:g}, P={p}"


def noise_grid_levels(backgrounds=DEFAULT_BACKGROUNDS, counts=DEFAULT_COUNTS) -> list:
    """Rows: backgrounds; columns: counts → list of lists of :class:`NoiseLevel`."""
    return [[NoiseLevel(float(b), None if c is None else float(c)) for c in counts] for b in backgrounds]


def check_counts(counts) -> float:
    """Counts P at the peak: > 0 and ≤ :data:`MAX_COUNTS`, or inf (noiseless: the grid's P = ∞
    column); else one line."""
    if not (is_real_number(counts) and (float(counts) == np.inf or 0 < float(counts) <= MAX_COUNTS)):
        raise FcinvError(f"counts P must be > 0 and ≤ {MAX_COUNTS:g} (expected counts at the peak), or inf, got {counts!r}")
    return float(counts)


def _check(spectra) -> np.ndarray:
    x = as_real_array(spectra, "spectra")
    if x.size == 0:
        raise FcinvError(f"spectra: no pixels (an empty array of shape {x.shape})")
    if x.ndim < 2:
        raise FcinvError(f"spectra must be (nq, nE) or (N, nq, nE), got shape {x.shape}")
    finite = np.isfinite(x)
    if np.any(np.isinf(x)):
        raise FcinvError("spectrum contains inf")
    flat = finite.reshape(finite.shape[:-2] + (-1,)) if x.ndim > 2 else finite.reshape(1, -1)
    if not np.all(flat.any(axis=-1)):
        raise FcinvError("a spectrum has no covered (finite) pixels (all NaN)")
    if np.nanmin(x) < 0:
        raise FcinvError(
            f"negative intensities (min {np.nanmin(x):.3g}): the counting model needs non-negative "
            "intensities — min-max scale the spectrum first"
        )
    return x


def minmax(x: np.ndarray) -> np.ndarray:
    """Min-max scale each (nq, nE) image to [0, 1], ignoring NaN."""
    x = np.asarray(x, dtype=float)
    if x.ndim < 2 or x.size == 0:
        raise FcinvError(f"minmax scales (nq, nE) images, got an array of shape {x.shape}")
    lead = x.shape[:-2]
    flat = x.reshape((-1, x.shape[-2] * x.shape[-1]))
    empty = np.isnan(flat).all(axis=1)
    if empty.any():  # numpy's "All-NaN slice" warnings and a NaN image, not a word (ML probe, session 46)
        raise FcinvError(f"minmax: image {int(np.argmax(empty))} of {len(flat)} has no pixel that is not NaN")
    lo = np.nanmin(flat, axis=1, keepdims=True)
    hi = np.nanmax(flat, axis=1, keepdims=True)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise FcinvError(f"minmax: image {int(np.argmax(~(np.isfinite(lo) & np.isfinite(hi)).ravel()))} holds ±inf")
    out = (flat - lo) / np.where(hi > lo, hi - lo, 1.0)
    return out.reshape(lead + x.shape[-2:])


def add_noise(
    spectra,
    background: float = 0.0,
    counts: float | None = None,
    rng=None,
    seed=None,
    rescale: bool = True,
    peak_percentile: float | None = None,
):
    """Noisy copies of ``spectra`` (nq, nE) or (N, nq, nE): returns (noisy float32 in [0, 1], snr (N,)).

    ``rescale=False`` returns N/P itself (before the final min-max scaling).
    ``peak_percentile``: the "peak" that B and P refer to is this percentile of each image's
    covered pixels instead of its maximum (for full S(Q,E) simulations, whose acoustic
    intensity near Bragg points is orders of magnitude above the phonon ridges; brighter pixels
    then simply get more than P counts).
    """
    background = finite_number(background, "background B (fraction of the peak)", positive=False, maximum=MAX_BACKGROUND)
    if counts is not None:
        counts = check_counts(counts)
    if seed is not None and rng is None:
        seed = whole_number(seed, "seed", 0)
    x = _check(spectra)
    single = x.ndim == 2
    x = minmax(x[None] if single else x)
    if peak_percentile is not None:
        peak_percentile = finite_number(peak_percentile, "peak percentile", positive=True, maximum=100.0)
        if not MIN_PERCENTILE <= peak_percentile <= 100:
            raise FcinvError(
                f"peak percentile must be in [{MIN_PERCENTILE:g}, 100] (a percentile such as 99.5), got {peak_percentile!r}"
                + (" — a fraction, not a percentile?" if 0 < peak_percentile <= 1 else "")
            )
        ref = np.array([np.percentile(v[np.isfinite(v)], peak_percentile) if np.isfinite(v).any() else 1.0 for v in x])
        x = x / np.where(ref > 0, ref, 1.0)[:, None, None]
    rng = np.random.default_rng(seed) if rng is None else rng
    mask = np.isfinite(x)
    base = np.where(mask, x, 0.0) + background
    if counts is None or not np.isfinite(counts):
        est = base
    else:
        est = rng.poisson(counts * base) / counts
    noisy = np.where(mask, est, np.nan)
    diff = np.where(mask, est - background - np.where(mask, x, 0.0), 0.0)
    sig = np.sqrt((np.where(mask, x, 0.0) ** 2).sum(axis=(1, 2)))
    err = np.sqrt((diff**2).sum(axis=(1, 2)))
    snr = np.where(err > 0, sig / np.maximum(err, 1e-300), np.inf)
    noisy = (minmax(noisy) if rescale else noisy).astype(np.float32)
    return (noisy[0], snr[0]) if single else (noisy, snr)
