"""The measurement model: what an instrument does to an idealized I(q, E) image, applied on
the fly to training spectra (data augmentation) and to build realistic test sets.

Training images (:mod:`fcinv_widgets.dataset`) are unit-weight: every phonon mode a Gaussian
of σ = 1 meV, min-max scaled to [0, 1]. :class:`MeasurementModel` turns one of them into what
the models see at inference after the standard correction to unit weights
(:func:`fcinv_widgets.analysis.expio.to_model_intensity`: × E/(n(E,T)+1), clipped), in this
order (each step drawn per spectrum):

0. **S(Q,E) weighting** (session 12; with probability ``p_sqe``, 0 by default and for every model
   trained before): the spectrum is rendered again at its own force constants with the folded
   one-phonon S(Q,E) mode weights — |F_ν(Q)|² over the equivalents the kinematics at the drawn Ei
   cover, with the Debye–Waller factor at a temperature from ``sqe_temperatures`` — times
   (n+1)/E, scaled to its 99.5th percentile: steps 1–5 then act on this raw S(Q,E) as an
   instrument does (the background and the counts before any correction), and after step 5 it is
   corrected by E/(n+1) and clipped at the 99.5th percentile as inputs are at inference
   (``to_model_intensity``). Measured (session 12): the same B and P added before rather than after
   that correction cost the unit-weight-trained ge-resnet FC0/FC1 24/32 % instead of 2/8 % on the
   first-principles S(Q,E) — the correction turns a flat background into a ramp ∝ E and the counting
   noise with it (:class:`SQEWeighting`; needs the spectra's FCs, :meth:`Augmenter.attach_sqe`);
1. **resolution**: with probability ``p_resolution`` the image is re-broadened to the ARCS
   resolution σ(E; Ei) (:func:`~fcinv_widgets.broadening.sigma_arcs`) at an incident energy
   Ei drawn uniformly in ``ei_factor`` × the grid's largest energy: a Gaussian kernel of width
   sqrt(σ(E)² − σ₀²) along E (σ₀ = the dataset's 1 meV; the sum of two Gaussians is Gaussian,
   so this is exact for a locally constant σ). An S(Q,E)-path draw with ``sqe_resolved_lines``
   (session 39; off for every shipped model) is instead rendered in step 0 on lines of the ARCS
   width at that Ei, its weights applied to the broadened lines as a measurement's are, and gets
   no kernel: a single scan's coverage changes abruptly with E, and a kernel after the weights
   smears those steps;
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

**Training and inference are consistent as follows**: measured inputs (a folded one-phonon
S(Q, E)) are corrected once (× E/(n+1) and clipping, ``to_model_intensity``) before inversion;
the models are trained on unit-weight images (the paper's fast-model input) augmented as above,
and — with ``p_sqe`` > 0 — on images carrying the |Q·e|² and Debye–Waller weights that correction
leaves, rendered exactly (step 0) rather than imitated by the random field of step 2.
"""

from __future__ import annotations

import json
import zipfile
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import FcinvError
from .validate import json_loads

#: the σ (meV) of the training datasets' unit-weight Gaussians
DATASET_SIGMA_MEV = 1.0

#: the fraction of spectra a measurement-model draw passes on clean, as a measurement arrives: the
#: default of :attr:`MeasurementModel.p_clean` and the value of every calibration draw (σ, OOD
#: thresholds) and realistic test set whatever the model trained with — ``fcinv train
#: --clean-fraction`` shapes what the network learns from, not what it will be given
MEASURED_P_CLEAN = 0.1


@dataclass(frozen=True)
class MeasurementModel:
    """Ranges of the measurement effects (see the module docstring). Fractions are of the
    spectrum's peak; energies in meV; ``ei_factor`` is Ei / (the grid's largest energy)."""

    p_clean: float = MEASURED_P_CLEAN
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
    #: probability that a spectrum is rendered with folded one-phonon S(Q,E) mode weights (step 0;
    #: needs the spectra's force constants, :meth:`Augmenter.attach_sqe`; 0 = unit weights, as
    #: every model before session 12 was trained)
    p_sqe: float = 0.0
    #: sample temperatures (K) of those weights' Debye–Waller factors, one drawn per spectrum
    sqe_temperatures: tuple = (5.0, 300.0)
    #: the coverage bank's geometry ({"angles_deg": one per mask, "ei_mev", "qmax"}: how
    #: :func:`coverage_bank` made it). Given, an S(Q,E)-path draw that gets a single-scan mask is
    #: rendered with the mode weights of that orientation's detector hits instead of the full
    #: kinematic coverage's — a real single scan sees a few equivalents Q per pixel, and its
    #: intensities differ from the folded full-coverage S(Q,E) by 35–66 % (median, bright pixels;
    #: session 16) — and the coverage is drawn before the rendering. Empty: as before session 16.
    #: Inert with a bank of another size (``Augmenter.scan_geometry`` is then empty).
    sqe_scan_geometry: dict = field(default_factory=dict)
    #: an S(Q,E)-path draw that gets a resolution (``p_resolution``) is rendered on lines broadened
    #: with the ARCS resolution at the drawn Ei and weighted after, as an instrument records them
    #: (and as the OOD refit's oriented renderer has since session 38) — instead of weights applied
    #: to the dataset's σ = 1 meV lines and the extra-width kernel after them, which smears the
    #: abrupt steps a single scan's coverage makes in E (session 39). False: as every shipped
    #: model was trained.
    sqe_resolved_lines: bool = False

    def __post_init__(self):
        if not isinstance(self.sqe_resolved_lines, bool):
            raise FcinvError(f"measurement model: sqe_resolved_lines must be true or false, got {self.sqe_resolved_lines!r}")
        from .validate import is_real_number

        for k in ("p_clean", "p_resolution", "p_elastic", "p_noiseless", "p_mask", "p_single", "p_sqe"):
            v = getattr(self, k)
            if not (is_real_number(v) and 0 <= v <= 1):
                raise FcinvError(f"measurement model: {k} must be a probability in [0, 1], got {v!r}"[:200])
        for k in ("ei_factor", "elastic", "background", "slope", "counts"):
            r = getattr(self, k)
            ok = isinstance(r, (tuple, list)) and len(r) == 2 and all(is_real_number(v) for v in r)
            if not (ok and np.isfinite(r[0]) and np.isfinite(r[1]) and r[0] <= r[1]):
                raise FcinvError(f"measurement model: {k} must be a range (lo, hi) of numbers with lo ≤ hi, got {r!r}"[:200])
        n = self.n_ei_kernels
        if not (isinstance(n, (int, np.integer)) and not isinstance(n, bool) and 1 <= n <= 1000):
            raise FcinvError(f"measurement model: n_ei_kernels must be a whole number from 1 to 1000, got {n!r}"[:200])
        for k in ("extra", "sqe_scan_geometry"):
            if not isinstance(getattr(self, k), dict):
                raise FcinvError(f"measurement model: {k} must be a dict, got {type(getattr(self, k)).__name__}")
        if self.ei_factor[0] <= 1.0:
            raise FcinvError("measurement model: Ei must exceed the grid's largest energy (ei_factor > 1)")
        if self.counts[0] <= 0 or self.background[0] < 0 or self.elastic[0] < 0:
            raise FcinvError("measurement model: counts must be > 0, background and elastic ≥ 0")
        g = self.sqe_scan_geometry
        if g:
            ang = np.asarray(g.get("angles_deg", []), float)
            if (
                ang.ndim != 1
                or len(ang) == 0
                or not np.all(np.isfinite(ang))
                or not all(np.isfinite(float(g.get(k, np.nan))) and float(g.get(k, np.nan)) > 0 for k in ("ei_mev", "qmax"))
            ):
                raise FcinvError(
                    "measurement model: sqe_scan_geometry needs 'angles_deg' (one per coverage mask), 'ei_mev' > 0 and 'qmax' > 0"
                )
        t = np.asarray(self.sqe_temperatures, float)
        if t.ndim != 1 or len(t) == 0 or not np.all(np.isfinite(t)) or np.any(t < 0):
            raise FcinvError(f"measurement model: sqe_temperatures must be temperatures ≥ 0 K, got {self.sqe_temperatures!r}")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> MeasurementModel:
        from dataclasses import fields

        if not isinstance(d, dict):
            raise FcinvError(f"measurement model: a dict of its settings, got {type(d).__name__}")
        unknown = sorted(set(map(str, d)) - {f.name for f in fields(cls)})
        if unknown:
            raise FcinvError(f"measurement model: unknown setting(s) {', '.join(unknown)}"[:200])
        d = dict(d)
        for k in ("ei_factor", "elastic", "background", "slope", "counts", "sqe_temperatures"):
            if k in d:
                if not isinstance(d[k], (list, tuple)):
                    raise FcinvError(f"measurement model: {k} must be a list of numbers, got {d[k]!r}"[:200])
                d[k] = tuple(d[k])
        return cls(**d)

    def sampler(self, energies_mev, masks=None, seed: int = 0) -> Augmenter:
        return Augmenter(self, energies_mev, masks=masks, seed=seed)


def training_ei_range(model: MeasurementModel, energies_mev) -> tuple[float, float]:
    """(lowest, highest) incident energy (meV) the measurement model draws its resolution from on the
    energy axis ``energies_mev`` (bin centres): ``ei_factor`` × the axis' top edge, as
    :class:`Augmenter` does. A measured input with an Ei outside it has a resolution (and, below it,
    a kinematic coverage) the model never saw in training."""
    e = np.asarray(energies_mev, float)
    e_max = float(e[-1] + 0.5 * (e[1] - e[0]))
    return float(model.ei_factor[0] * e_max), float(model.ei_factor[1] * e_max)  # (the ends of Augmenter.eis)


def ei_inside(ei_mev, ei_range) -> bool:
    """Whether ``ei_mev`` (meV) lies inside ``ei_range`` (low, high), to 0.1 % at the ends."""
    lo, hi = ei_range
    return bool(lo * (1 - 1e-3) <= float(ei_mev) <= hi * (1 + 1e-3))


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
        g = model.sqe_scan_geometry
        #: the scan geometry in use: the model's, when this bank is the one it describes (one mask per
        #: orientation); with another bank (or none) single-scan draws keep the full coverage's weights
        self.scan_geometry = g if g and self.masks is not None and len(self.masks) == len(g["angles_deg"]) else {}
        self.weighting: SQEWeighting | None = None
        self.params: np.ndarray | None = None

    def attach_sqe(self, material, params, progress: bool = False) -> None:
        """Render step 0 (``p_sqe``) for the spectra whose force constants are ``params`` ((N, P)
        eV/Å², every parameter in the order of ``dataset._nuisance_model``: the active ones first,
        row = the ``sample`` index :meth:`one` is given). The weights are computed once per
        material and measurement model (:class:`SQEWeighting`: one eigen-solve per T, ~6 s for Ge's 12 Ei × 2 T)."""
        p = np.asarray(params, float)
        if p.ndim != 2 or p.shape[1] != material.basis.n_params or not np.all(np.isfinite(p)):
            raise FcinvError(f"S(Q,E) weighting needs (N, {material.basis.n_params}) finite force constants, got {p.shape}")
        self.weighting = SQEWeighting.get(material, self.eis, self.model.sqe_temperatures, progress=progress)
        self.params = p

    def forced(self, **changes) -> Augmenter:
        """This augmenter with some of its model's probabilities changed (e.g. ``p_mask=1,
        p_single=1``: every draw a single scan) and/or its ``sqe_scan_geometry``, sharing its Ei
        kernels, coverage bank and S(Q,E) weighting: a held-out set of one kind of input. Only
        the ``p_*`` fields and ``sqe_scan_geometry`` may change."""
        from copy import copy
        from dataclasses import replace

        bad = sorted(k for k in changes if not (k.startswith("p_") or k == "sqe_scan_geometry"))
        if bad:
            raise FcinvError(f"Augmenter.forced changes probabilities and the scan geometry only, not {', '.join(bad)}")
        out = copy(self)
        out.model = replace(self.model, **changes)
        g = out.model.sqe_scan_geometry
        out.scan_geometry = g if g and self.masks is not None and len(self.masks) == len(g["angles_deg"]) else {}
        return out

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
        sqe_t = None  # the S(Q,E) path: its temperature index (noise added before the correction)
        scan_first = bool(self.scan_geometry)
        if scan_first:  # the coverage first: a single scan's S(Q,E) is rendered with its own weights
            cov, cov_info = self._coverage(r)
        if r.random() < m.p_resolution:
            k = int(r.integers(len(self.eis)))
        resolved = False  # the resolution rendered on the lines (S(Q,E) path, sqe_resolved_lines), not a kernel after
        if m.p_sqe > 0:  # (no draw without it: the draws of every earlier model stay as they were)
            use = r.random() < m.p_sqe
            kw = k if k is not None else int(r.integers(len(self.eis)))
            kt = int(r.integers(len(m.sqe_temperatures)))
            if use and self.weighting is not None and self.params is not None:
                resolved = k is not None and m.sqe_resolved_lines
                one_scan = cov_info.get("scan_index") if scan_first else None
                if one_scan is not None:
                    x = self.weighting.render_scan(
                        self.params[sample], int(one_scan), kt, self.scan_geometry, i_ei=k if resolved else None
                    )
                    info["scan_weights"] = True
                else:
                    x = self.weighting.render(self.params[sample], kw, kt, resolved=resolved)
                sqe_t = kt
                info["sqe_weights"] = True
                info["temperature_k"] = float(m.sqe_temperatures[kt])
                if resolved:
                    info["resolved_lines"] = True
        if k is not None:
            if not resolved:
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
        # the peak B and P refer to: the maximum of a model image, the 99.5th percentile of an S(Q,E)
        x = x / max(float(x.max() if sqe_t is None else np.percentile(x, SQE_CLIP)), 1e-12)
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
        if sqe_t is not None:  # background and counts were an instrument's: now the inference correction
            x = self.weighting.correct(x, sqe_t)  # type: ignore[union-attr]
        # coverage
        if not scan_first:
            cov, cov_info = self._coverage(r)
        if "scans" in cov_info:
            info["scans"] = cov_info["scans"]
        if not scale:
            y = x if cov is None else np.where(cov, x, np.nan)
            return (y.astype(np.float32), info) if return_info else y.astype(np.float32)
        if cov is not None and not cov.any():
            raise FcinvError("a coverage mask covers no pixel: nothing of this spectrum would be measured")
        if cov is not None:
            lo, hi = x[cov].min(), x[cov].max()
            y = np.where(cov, (x - lo) / (hi - lo if hi > lo else 1.0), 0.0)
            info["coverage"] = float(cov.mean())
        else:
            lo, hi = x.min(), x.max()
            y = (x - lo) / (hi - lo if hi > lo else 1.0)
        y = y.astype(np.float32)
        return (y, info) if return_info else y

    def _coverage(self, r: np.random.Generator):
        """(mask or None, {"scans": n, "scan_index": i for a single scan}) of one draw: none (full
        coverage), one scan of the bank, or the union of 2 … n/2 of them."""
        m = self.model
        if self.masks is None or not len(self.masks) or r.random() >= m.p_mask:
            return None, {}
        if r.random() < m.p_single:
            i = int(r.integers(len(self.masks)))
            return self.masks[i], {"scans": 1, "scan_index": i}
        n = int(r.integers(2, max(3, len(self.masks) // 2) + 1))
        pick = r.choice(len(self.masks), size=min(n, len(self.masks)), replace=False)
        return self.masks[pick].any(0), {"scans": len(pick)}

    def apply(self, images, samples, epoch: int, return_info: bool = False, out: np.ndarray | None = None):
        """Augment a batch (N, nq, nE) whose rows are the dataset samples ``samples`` (N,) at
        ``epoch``: each row depends only on (seed, epoch, sample), not on the batch it is in.
        ``return_info``: also the list of each row's draw record (:meth:`one`'s ``info``: which
        effects, e.g. ``sqe_weights`` for the S(Q,E) path). ``out``: an (N, nq, nE) array to write
        the rows into (e.g. float32: no float64 copy of the batch) and return."""
        images = np.asarray(images)
        if out is not None:
            infos = []
            for k, (im, s) in enumerate(zip(images, samples)):
                row = self.one(im, epoch, int(s), return_info=return_info)
                if return_info:
                    out[k], info = row
                    infos.append(info)
                else:
                    out[k] = row
            return (out, infos) if return_info else out
        if not return_info:
            return np.stack([self.one(im, epoch, int(s)) for im, s in zip(images, samples)])
        pairs = [self.one(im, epoch, int(s), return_info=True) for im, s in zip(images, samples)]
        return np.stack([p[0] for p in pairs]), [p[1] for p in pairs]


#: the |Q| range (1/Å) folded into the S(Q,E) weights of step 0 (as the coverage bank's)
SQE_QMAX = 6.0
#: training images in S(Q,E) weighting are clipped at this percentile, as inputs are at inference
#: (``analysis.expio.DEFAULT_CLIP``)
SQE_CLIP = 99.5


def creation_correction(energies_mev, temperature_k: float) -> np.ndarray:
    """(nE,) E/(n(E,T)+1) per energy bin centre (meV), 0 at E ≤ 0: the factor inference applies to a
    measured one-phonon S(Q,E) (``analysis.expio.to_model_intensity``), here for rendering."""
    from .sqe import bose_factor
    from .validate import as_real_array

    e = as_real_array(energies_mev, "energies_mev (meV)")  # (complex energies lost their imaginary part with a warning)
    return np.where(e > 0, e / bose_factor(np.maximum(e, 1e-9), temperature_k), 0.0)


def reference_slot_weights(
    material, fm, params, ei_mev: float, temperature_k: float, geometry=None, amplitudes=None, hits=None
) -> np.ndarray:
    """The folded mode weights of ``material`` at its reference force constants (Ei ``ei_mev``, T
    ``temperature_k``; :func:`fcinv_widgets.sqe.folded_mode_weights`) as per-slot weights of the
    forward model ``fm`` (``fm.slot_weights(params, …)``, ``params`` the reference in ``fm``'s own
    parameter order: the 8 active FCs of the fast model or the 44 of the nuisance model), for
    ``fm.with_sqe_weights``. ``geometry``: a ``fold_geometry`` to reuse (computed at :data:`SQE_QMAX`
    otherwise); ``amplitudes``: its :func:`~fcinv_widgets.sqe.mode_amplitudes` at ``temperature_k``
    to reuse (the same for every Ei); ``hits``: single-orientation coverage
    (``scans._orientation_hits`` of ``geometry``, one per orientation) instead of the kinematic
    range at Ei — the weights of those scans."""
    from .sqe import SQE, fold_geometry, folded_mode_weights

    ref = np.asarray(material.reference_params, float)
    grid = material.grid
    geom = geometry if geometry is not None else fold_geometry(material.crystal, grid, SQE_QMAX, material.conventional_a)
    calc = None if amplitudes is not None else SQE(material.basis, ref, temperature=float(temperature_k))
    mw = folded_mode_weights(calc, geom, grid, float(ei_mev), amplitudes=amplitudes, hits=hits)
    return fm.slot_weights(np.asarray(params, float), mw)


class SQEWeighting:
    """Step 0 of the measurement model: a training spectrum rendered as the folded one-phonon
    S(Q,E) weights it, after the standard correction (× E/(n(E,T)+1)): every mode ν of q bin b
    weighted by W_ν(b, E), the mean over the equivalents Q = G + Rq within :data:`SQE_QMAX` that
    the kinematics at Ei cover of ħ²|F_ν(Q)|²/2 with the Debye–Waller factor at T
    (:func:`fcinv_widgets.sqe.folded_mode_weights`), instead of unit weight.

    The weights are computed once at the material's reference force constants, per (Ei, T), and
    applied at each spectrum's own force constants (energies follow the spectrum; weights are
    held): the eigenvectors hardly move over the training domain (measured, session 12: the
    first-principles Ge S(Q,E) rendered with the reference's weights is 0.2 % RMS off the exact
    one, with unit weights 62 %). :meth:`render` gives the raw S(Q,E), :meth:`correct` the inference
    correction the augmenter applies after its background and counts."""

    _cache: dict = {}

    def __init__(self, material, eis_mev, temperatures_k, qmax: float = SQE_QMAX, progress: bool = False):
        from tqdm.auto import tqdm

        from .dataset import _nuisance_model
        from .sqe import fold_geometry

        grid = material.grid
        self.fm, inactive = _nuisance_model(material, DATASET_SIGMA_MEV)
        ref = np.asarray(material.reference_params, float)[np.concatenate([material.active, inactive])]
        geom = fold_geometry(material.crystal, grid, float(qmax), material.conventional_a)
        self.material, self.ref = material, ref
        e = np.asarray(grid.e.centers, float)
        self.eis = np.asarray(eis_mev, float)
        self.temperatures = np.asarray(temperatures_k, float)
        self.bose = np.stack([creation_correction(e, t) for t in self.temperatures])
        bar = tqdm(total=len(self.eis) * len(self.temperatures), desc="S(Q,E) weights", disable=not progress, leave=False)
        #: (|Q| range, temperature index) -> mode amplitudes of that fold geometry (``sqe.mode_amplitudes``):
        #: one eigen-solve per temperature for every Ei and every single-scan orientation
        self._amps: dict = {}
        self._geoms: dict = {float(qmax): geom}  # fold geometries by |Q| range (the scan weights' too)
        w = []
        for i_t, t in enumerate(self.temperatures):
            amps = self._amplitudes(float(qmax), i_t)
            row = []
            for ei in self.eis:
                row.append(reference_slot_weights(material, self.fm, ref, float(ei), float(t), geom, amps).astype(np.float32))
                bar.update()
            w.append(row)
        bar.close()
        #: (n_T, n_Ei, slots, nE) folded mode weights, fm² per atom
        self.slot_weights = np.asarray(w)
        self._twins: dict = {}
        self._scan_twins: dict = {}
        self._scan_weights: dict = {}
        self._fm_ei: dict = {}  # Ei index -> ``fm`` with the ARCS resolution at that Ei (:meth:`_at_ei`)

    def _amplitudes(self, qmax: float, i_t: int) -> np.ndarray:
        """The reference's mode amplitudes over the fold geometry of ``qmax`` at ``temperatures[i_t]``, kept."""
        from .sqe import SQE, fold_geometry, mode_amplitudes

        key = (float(qmax), int(i_t))
        if key not in self._amps:
            mat = self.material
            if float(qmax) not in self._geoms:
                self._geoms[float(qmax)] = fold_geometry(mat.crystal, mat.grid, float(qmax), mat.conventional_a)
            calc = SQE(mat.basis, np.asarray(mat.reference_params, float), temperature=float(self.temperatures[int(i_t)]))
            self._amps[key] = mode_amplitudes(calc, self._geoms[float(qmax)])
        return self._amps[key]

    @classmethod
    def get(cls, material, eis_mev, temperatures_k, progress: bool = False) -> SQEWeighting:
        """One instance per (material and reference, Ei values, temperatures) in this process."""
        key = (
            material.name,
            np.asarray(material.reference_params, float).tobytes(),
            np.asarray(eis_mev, float).tobytes(),
            np.asarray(temperatures_k, float).tobytes(),
        )
        if key not in cls._cache:
            cls._cache[key] = cls(material, eis_mev, temperatures_k, progress=progress)
        return cls._cache[key]

    def _at_ei(self, i_ei: int):
        """``fm`` with the ARCS resolution at ``eis[i_ei]`` instead of the dataset's σ (kept; a twin
        sharing the blocks, ``ForwardModel.with_resolution``)."""
        if int(i_ei) not in self._fm_ei:
            self._fm_ei[int(i_ei)] = self.fm.with_resolution(("arcs", float(self.eis[int(i_ei)])))
        return self._fm_ei[int(i_ei)]

    def render(self, params, i_ei: int, i_t: int, resolved: bool = False) -> np.ndarray:
        """The (nq, nE) float32 folded one-phonon S(Q,E) of force constants ``params`` (P,) — the
        weights of Ei ``eis[i_ei]`` and T ``temperatures[i_t]``, times (n+1)/E — as an instrument
        sees it before any correction, scaled so that its 99.5th percentile is 1 (the peak the
        noise grid's B and P refer to, as ``fcinv simulate --full-sqe --noise`` does). Lines of the
        dataset's σ (the resolution is a kernel applied after), or ``resolved``: of the ARCS
        resolution at that Ei, as a measurement has them."""
        key = (int(i_ei), int(i_t), bool(resolved))
        if key not in self._twins:
            base = self._at_ei(i_ei) if resolved else self.fm
            self._twins[key] = base.with_sqe_weights(self.slot_weights[i_t, i_ei], float(self.temperatures[i_t]))
        img = np.asarray(self._twins[key].spectra(np.asarray(params, float)[None], normalize=False), float)[0]
        return (img / max(float(np.percentile(img, SQE_CLIP)), 1e-30)).astype(np.float32)

    def scan_slot_weights(self, i_scan: int, i_t: int, geometry: dict) -> np.ndarray:
        """(slots, nE) float32 folded mode weights of one single-orientation scan as per-slot
        weights of ``fm``: the detector hits (``scans._orientation_hits``, default detector and
        sample axes) of orientation ``geometry["angles_deg"][i_scan]`` at ``geometry["ei_mev"]``,
        folded within ``geometry["qmax"]`` (Å⁻¹), at the reference force constants and
        ``temperatures[i_t]`` — computed at first use and kept; the eigen-solve and structure factors
        once per (|Q| range, temperature) for all orientations (:meth:`_amplitudes`)."""
        from .scans import DETECTOR, _orientation_hits, orientation_matrix
        from .sqe import folded_mode_weights

        key = (int(i_scan), int(i_t))
        if key not in self._scan_weights:
            grid = self.material.grid
            qmax, ei = float(geometry["qmax"]), float(geometry["ei_mev"])
            amps = self._amplitudes(qmax, int(i_t))
            geom = self._geoms[qmax]
            om = float(geometry["angles_deg"][int(i_scan)])
            hits = [_orientation_hits(geom, om, ei, grid, orientation_matrix(crystal=self.material.crystal), DETECTOR)]
            mw = folded_mode_weights(None, geom, grid, ei, hits=hits, amplitudes=amps)
            self._scan_weights[key] = self.fm.slot_weights(self.ref, mw).astype(np.float32)
        return self._scan_weights[key]

    def render_scan(self, params, i_scan: int, i_t: int, geometry: dict, i_ei: int | None = None) -> np.ndarray:
        """As :meth:`render`, with the mode weights of one single-orientation scan of the coverage
        bank (:meth:`scan_slot_weights`) instead of the full kinematic coverage's; ``i_ei``: on
        lines of the ARCS resolution at ``eis[i_ei]`` (the twin made per call: ~0.1 ms), else of
        the dataset's σ."""
        t = float(self.temperatures[int(i_t)])
        if i_ei is not None:
            twin = self._at_ei(i_ei).with_sqe_weights(self.scan_slot_weights(i_scan, i_t, geometry), t)
        else:
            key = (int(i_scan), int(i_t))
            if key not in self._scan_twins:
                self._scan_twins[key] = self.fm.with_sqe_weights(self.scan_slot_weights(i_scan, i_t, geometry), t)
            twin = self._scan_twins[key]
        img = np.asarray(twin.spectra(np.asarray(params, float)[None], normalize=False), float)[0]
        return (img / max(float(np.percentile(img, SQE_CLIP)), 1e-30)).astype(np.float32)

    def correct(self, img: np.ndarray, i_t: int) -> np.ndarray:
        """What inference does to a measured S(Q,E) (``analysis.expio.to_model_intensity``): × E/(n(E,T)+1)
        at ``temperatures[i_t]``, clipped at the :data:`SQE_CLIP` th percentile; float32, peak 1."""
        x = np.asarray(img, np.float32) * self.bose[i_t][None, :].astype(np.float32)
        x = np.minimum(x, np.percentile(x, SQE_CLIP))
        return (x / max(float(x.max()), 1e-30)).astype(np.float32)


def coverage_bank(material, ei_mev: float | None = None, angles_deg=None, qmax: float = 6.0, progress: bool = False):
    """(n_scans, nq, nE) bool coverage masks of single-orientation scans of ``material``
    (a :class:`~fcinv_widgets.materials.Material`) at ``ei_mev`` (default 1.15 × the grid's
    largest energy), angles default 0°–178° in 4° steps, folded points up to ``qmax`` Å⁻¹
    (6 Å⁻¹ is conservative: a real data set reaches further and covers more)."""
    from .scans import simulate_scans

    g = bank_geometry(material, ei_mev, angles_deg, qmax)
    s = simulate_scans(material, g["ei_mev"], g["angles_deg"], qmax=g["qmax"], progress=progress)
    return np.isfinite(s.scans)


def recorded_geometry(meta: dict) -> dict:
    """The geometry a coverage bank's meta records ({"angles_deg", "ei_mev", "qmax"}, written since
    session 16 by :func:`bank_geometry`), or {} when it records none or only part of it."""
    g = {k: meta[k] for k in ("angles_deg", "ei_mev", "qmax") if k in meta}
    return g if len(g) == 3 else {}


def bank_geometry(material, ei_mev: float | None = None, angles_deg=None, qmax: float = 6.0) -> dict:
    """{"angles_deg", "ei_mev", "qmax"} of :func:`coverage_bank` with these arguments (its
    defaults filled in): what a bank file records (``save_bank`` meta) and what
    :attr:`MeasurementModel.sqe_scan_geometry` takes."""
    ei = float(ei_mev) if ei_mev is not None else 1.15 * float(material.grid.e.e_max)
    ang = np.arange(0.0, 180.0, 4.0) if angles_deg is None else np.asarray(angles_deg, float)
    return {"angles_deg": [float(a) for a in ang], "ei_mev": ei, "qmax": float(qmax)}


def save_bank(path, masks, meta: dict) -> None:
    """Write a coverage bank to exactly ``path`` (numpy alone would add ".npz" to a name without it,
    and the next run, looking for the name it was given, would compute the bank again), through a
    temporary file renamed into place: a Ctrl-C while writing leaves no half-written bank."""
    import os

    tmp = f"{os.fspath(path)}.part{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                masks=np.packbits(np.asarray(masks, bool), axis=-1),
                shape=np.array(masks.shape),
                meta=np.array(json.dumps(meta)),
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def bank_digest(masks) -> str:
    """The SHA-256 of a coverage bank's masks (bit-packed, with their shape): a checkpoint trained
    with a bank records it, and a recalibration is refused another bank of the same shape."""
    import hashlib

    m = np.asarray(masks, bool)
    return hashlib.sha256(repr(m.shape).encode() + np.packbits(m, axis=-1).tobytes()).hexdigest()


def load_bank(path, material: str | None = None):
    """(masks (n, nq, nE) bool, meta dict) from :func:`save_bank`'s file (no pickles).

    ``material``: the crystal the masks are for (a model's or dataset's); a bank that records
    another material, or none, is refused (a Ge-shaped bank labelled Nb was used without a word;
    an Nb bank on a Ge model was refused only by its shape, naming neither)."""
    from .validate import check_declared, npz_declared, open_npz

    archive = open_npz(path, "coverage-bank file")
    try:
        with archive as z:
            packed_shape, packed_dtype = npz_declared(z, "masks")
            if np.dtype(packed_dtype) != np.uint8 or len(packed_shape) != 3:
                raise ValueError(f"masks must be packed bits (uint8, 3-D), the file declares {packed_dtype} {packed_shape}")
            check_declared(packed_shape, packed_dtype, f"{path}[masks]")  # no zip bomb: size checked before reading
            shape = tuple(int(v) for v in np.asarray(z["shape"]).ravel())
            if len(shape) == 3 and shape[0] == 0 and packed_shape[0] == 0:
                raise FcinvError(f"{path}: holds no masks (an empty coverage bank; write one with `fcinv mask-bank`)")
            if len(shape) != 3 or min(shape) < 1 or shape[:2] != tuple(packed_shape[:2]) or -(-shape[2] // 8) != packed_shape[2]:
                raise ValueError(f"shape {shape} does not match the packed masks {tuple(packed_shape)}")
            masks = np.unpackbits(z["masks"], axis=-1)[..., : shape[-1]].astype(bool).reshape(shape)
            meta = json_loads(str(z["meta"]), f"{path}: meta")
            if not isinstance(meta, dict):
                raise ValueError("meta is not a JSON object")
        said = meta.get("material")
        if material is not None and (not isinstance(said, str) or said.lower() != str(material).lower()):
            which = f"of {said}" if isinstance(said, str) and said else "that records no material"
            raise FcinvError(f"{path}: a coverage bank {which}, for {material} here (write one with `fcinv mask-bank`)")
        n = meta.get("n")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n != len(masks)):
            raise FcinvError(f"{path}: its meta says {n!r} masks, it holds {len(masks)}: a damaged coverage bank")
        empty = np.flatnonzero(~masks.reshape(len(masks), -1).any(axis=1))
        if empty.size:  # (an empty mask was taken for full coverage: single-scan R² of full data, exit 0)
            raise FcinvError(
                f"{path}: {empty.size} of its {len(masks)} masks cover no pixel (mask {int(empty[0])} first): a damaged "
                "coverage bank (write a new one with `fcinv mask-bank`)"
            )
    except FcinvError:
        raise
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
        raise FcinvError(f"{path}: not a coverage-bank file ({type(exc).__name__}: {exc})") from None
    return masks, meta
