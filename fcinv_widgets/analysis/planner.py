"""Which sample orientation to measure next: an orientation planner for adaptive INS experiments.

The paper leaves "quantifying orientation-dependent information content" as future work; this
module does it with the Fisher information of the pixels each orientation covers.

Measurement model (per scan at sample angle ω, the noise model of :mod:`.noise`)
-------------------------------------------------------------------------------------
A scan puts e_ω(p) folded equivalents (Q points) into pixel p = (q, E) — its *exposure*, from
the single-orientation kinematics (:func:`fcinv_widgets.scans.orientation_exposure`; it needs no
force constants). The counts it records in p are Poisson with mean

    λ_ω(p) = P · (e_ω(p) / ē) · (m_p(θ) + B),

m(θ) the model intensity (the forward model's image, min-max scaled, what the inverse models
see after :func:`~fcinv_widgets.analysis.expio.to_model_intensity`), B the flat background and
P the counts at the peak for a pixel of average exposure ē (the mean over the covered pixels of
all candidates). Counts of several scans add, so the Fisher information about the active FCs θ
is additive over scans and pixels:

    F_ω = Σ_p P (e_ω(p)/ē) J_p J_pᵀ / (m_p + B),     J_p = ∂m_p/∂θ  (central differences).

For all candidates at once this is one product (n_cand × n_pix) @ (n_pix × A²).

Criterion
---------
The information already gathered is F = F₀ + Σ_measured F_ω, with the prior F₀ = diag(1/σ₀²)
(default σ₀ = domain width/√12, a uniform prior over the training domain). The gain of a
candidate is the expected information it adds (nats, the mutual information of the linearised
Gaussian model): ``"D"`` ½ [log det(F + F_ω) − log det F] (invariant to the units of θ), or
``"A"`` the drop of Σ_i Var(θ_i)/w_i² (w the domain widths) over the focus FCs. Gains are divided
by the candidate's cost (counting time plus the motor move from the previous angle) when costs are
given. The next n angles are chosen greedily, updating F after each; the predicted σ after each
step is √diag(F⁻¹).

Coverage banks (the exposures of every candidate) are the slow part (~0.1–1 s per angle); they
depend only on the crystal, the grid, Ei, the sample orientation and the detector, and are
cached on disk (``$FCINV_CACHE``, default ``~/.cache/fcinv-widgets``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FcinvError

#: default noise level of one scan: background B and counts P at the peak (the paper's grid range)
DEFAULT_BACKGROUND = 0.05
DEFAULT_COUNTS = 200.0


# ---------------------------------------------------------------------------- coverage
@dataclass
class CoverageBank:
    """Exposure of every pixel for a list of sample angles.

    ``exposure`` (n, nq, nE) float32: number of folded equivalents per pixel and scan (0 = not
    covered); ``angles_deg`` (n,); ``material`` name; ``ei_mev``; ``meta`` (u, v, qmax, detector).
    """

    material: str
    ei_mev: float
    angles_deg: np.ndarray
    exposure: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.angles_deg = np.asarray(self.angles_deg, float)
        self.exposure = np.asarray(self.exposure, np.float32)
        if self.exposure.ndim != 3 or len(self.exposure) != len(self.angles_deg):
            raise FcinvError(
                f"a coverage bank needs (n, nq, nE) exposures for n angles; got {self.exposure.shape} "
                f"for {len(self.angles_deg)} angles"
            )
        if not np.all(np.isfinite(self.exposure)) or np.any(self.exposure < 0):
            raise FcinvError("exposures must be finite and non-negative")

    @property
    def shape(self) -> tuple:
        return tuple(self.exposure.shape[1:])

    def index(self, angles_deg) -> np.ndarray:
        """Indices of ``angles_deg`` in the bank (to within 1e-6°, modulo 360°)."""
        ang = np.atleast_1d(np.asarray(angles_deg, float))
        d = np.abs(((ang[:, None] - self.angles_deg[None, :]) + 180.0) % 360.0 - 180.0)
        idx = d.argmin(1)
        bad = d[np.arange(len(ang)), idx] > 1e-6
        if np.any(bad):
            raise FcinvError(
                f"angle {ang[bad][0]:g}° is not in the coverage bank (angles {self.angles_deg.min():g} … "
                f"{self.angles_deg.max():g}°)"
            )
        return idx

    def save(self, path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part.npz")
        np.savez_compressed(
            tmp,
            exposure=self.exposure,
            angles_deg=self.angles_deg,
            info=np.array(json.dumps({"material": self.material, "ei_mev": self.ei_mev, "meta": self.meta})),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path) -> "CoverageBank":
        try:
            with np.load(path, allow_pickle=False) as z:
                info = json.loads(str(z["info"]))
                return cls(info["material"], float(info["ei_mev"]), z["angles_deg"], z["exposure"], info.get("meta", {}))
        except (OSError, KeyError, ValueError) as exc:
            raise FcinvError(f"cannot read the coverage bank {path}: {exc}") from None


def _cache_dir() -> Path:
    return Path(os.environ.get("FCINV_CACHE", Path.home() / ".cache" / "fcinv-widgets")) / "coverage"


def coverage_bank(
    material,
    angles_deg,
    ei_mev: float,
    u=(1, 1, 0),
    v=(0, 0, 1),
    qmax: float | None = None,
    detector=None,
    progress: bool = True,
    cache: bool = True,
) -> CoverageBank:
    """Exposures of ``material``'s grid pixels for every sample angle (ARCS-like kinematics).

    ``qmax`` (Å⁻¹): largest |Q| folded (default: all the detector reaches at E = 0; 6 Å⁻¹ with
    FCINV_SMALL=1, like :func:`~fcinv_widgets.scans.simulate_scans`). Cached on disk when
    ``cache`` (keyed by everything the exposures depend on)."""
    from ..scans import DETECTOR, check_angles, check_ei, orientation_exposure, orientation_matrix, reach_qmax
    from ..sqe import fold_geometry, small_mode

    detector = dict(DETECTOR if detector is None else detector)
    grid = material.grid
    ei = check_ei(ei_mev, grid)
    ang = check_angles(angles_deg)
    reach = reach_qmax(ei, grid.e.e_min, detector["h_max_deg"])
    qmax = (min(6.0, reach) if small_mode() else reach) if qmax is None else min(float(qmax), reach)
    meta = {"u": [float(x) for x in u], "v": [float(x) for x in v], "qmax_inv_a": qmax, "detector_deg": detector}
    key = json.dumps(
        {
            "material": material.name,
            "lattice": np.round(material.crystal.lattice, 8).tolist(),
            "grid": grid.to_dict(),
            "ei": ei,
            "angles": np.round(ang, 8).tolist(),
            **meta,
        },
        sort_keys=True,
        default=float,
    )
    path = _cache_dir() / f"{material.name.lower()}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"
    if cache and path.is_file():
        try:
            return CoverageBank.load(path)
        except FcinvError:
            pass  # a damaged cache entry is recomputed
    pts = fold_geometry(material.crystal, grid, qmax, material.conventional_a)
    U0 = orientation_matrix(u, v)
    exp = np.empty((len(ang),) + tuple(grid.shape), np.float32)
    it = ang
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(ang, desc="coverage", unit="ω", leave=False)
    for i, om in enumerate(it):
        exp[i] = orientation_exposure(pts, float(om), ei, grid, U0, detector)
    bank = CoverageBank(material.name, ei, ang, exp, meta)
    if cache:
        try:
            bank.save(path)
        except OSError:
            pass  # a read-only home: plan without the cache
    return bank


# ---------------------------------------------------------------------------- information
def pixel_information(forward_model, theta, domain, background: float = DEFAULT_BACKGROUND, rel_step: float = 1e-3) -> np.ndarray:
    """Per-pixel Fisher information J_p J_pᵀ / (m_p + B) at θ: (n_pix, A, A), per unit count.

    J = ∂m/∂θ of the min-max scaled model image by central differences with steps
    ``rel_step`` × domain width (θ in eV/Å², so the result is in (eV/Å²)⁻²)."""
    th = np.asarray(theta, float).reshape(-1)
    dom = np.asarray(domain, float)
    A = forward_model.n_active
    if th.shape != (A,) or not np.all(np.isfinite(th)):
        raise FcinvError(f"the FC estimate must be {A} finite numbers (eV/Å²), got {np.asarray(theta).tolist()!r}")
    if not (np.isfinite(background) and background >= 0):
        raise FcinvError(f"the background must be a non-negative fraction of the peak, got {background!r}")
    h = rel_step * (dom[:, 1] - dom[:, 0])
    pts = np.concatenate([th[None], th[None] + np.diag(h), th[None] - np.diag(h)])
    img = forward_model.spectra(pts, normalize=True).reshape(2 * A + 1, -1).astype(np.float64)
    m = img[0]
    J = (img[1 : A + 1] - img[A + 1 :]).T / (2 * h)  # (n_pix, A)
    return np.einsum("pa,pb->pab", J, J) / (m + background)[:, None, None]


def _relative_exposure(bank: CoverageBank) -> np.ndarray:
    e = bank.exposure.reshape(len(bank.angles_deg), -1)
    covered = e[e > 0]
    mean = float(covered.mean()) if covered.size else 1.0
    return e / mean


@dataclass
class Plan:
    """The ranked next orientations.

    ``angles_deg`` (n,) in the order to measure; ``gain`` (n,) expected information of each step
    (nats for "D", variance units for "A") per unit cost; ``predicted_sigma`` (n, A) eV/Å² after
    each step; ``information`` (n_cand,) gain of every candidate as the very next scan;
    ``candidates_deg`` (n_cand,); ``current_sigma`` (A,) before the plan; ``names`` (A,).
    """

    angles_deg: np.ndarray
    gain: np.ndarray
    predicted_sigma: np.ndarray
    information: np.ndarray
    candidates_deg: np.ndarray
    current_sigma: np.ndarray
    estimate: np.ndarray
    names: list
    criterion: str
    measured_deg: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def next_angle(self) -> float:
        return float(self.angles_deg[0])

    def to_dict(self) -> dict:
        return {
            "next_angles_deg": self.angles_deg.tolist(),
            "gain": self.gain.tolist(),
            "predicted_sigma_ev_a2": self.predicted_sigma.tolist(),
            "current_sigma_ev_a2": self.current_sigma.tolist(),
            "estimate_ev_a2": self.estimate.tolist(),
            "names": list(self.names),
            "criterion": self.criterion,
            "measured_deg": self.measured_deg.tolist(),
            "candidates_deg": self.candidates_deg.tolist(),
            "information": self.information.tolist(),
            "meta": self.meta,
        }

    def table(self, focus=(0, 1, 2, 3)) -> str:
        focus = [f for f in focus if f < len(self.names)]
        unit = "nats" if self.criterion == "D" else "Σσ²/w²"
        head = f"{'step':>4} {'ω (deg)':>8} {'gain (' + unit + ')':>14} " + " ".join(f"σ {self.names[f][:14]:>14}" for f in focus)
        rows = [head, f"{'now':>4} {'':>8} {'':>14} " + " ".join(f"{self.current_sigma[f]:16.4f}" for f in focus)]
        for k, (a, g, s) in enumerate(zip(self.angles_deg, self.gain, self.predicted_sigma)):
            rows.append(f"{k + 1:>4} {a:8.2f} {g:14.4g} " + " ".join(f"{s[f]:16.4f}" for f in focus))
        return "\n".join(rows)


def _gains(F, Fc, criterion: str, weights, focus) -> np.ndarray:
    if criterion == "D":
        s0, ld0 = np.linalg.slogdet(F)
        s1, ld1 = np.linalg.slogdet(F[None] + Fc)
        return 0.5 * (ld1 - ld0)
    W = np.zeros(len(F))
    W[list(focus)] = 1.0 / np.asarray(weights, float)[list(focus)] ** 2
    v0 = float(np.sum(np.diag(np.linalg.inv(F)) * W))
    v1 = np.einsum("cii,i->c", np.linalg.inv(F[None] + Fc), W)
    return v0 - v1


def plan_orientations(
    bank: CoverageBank,
    forward_model,
    estimate,
    domain,
    measured_deg=(),
    candidates_deg=None,
    n: int = 5,
    background: float = DEFAULT_BACKGROUND,
    counts: float = DEFAULT_COUNTS,
    prior_sigma=None,
    criterion: str = "D",
    focus=(0, 1, 2, 3),
    count_time_s=None,
    move_s_per_deg: float = 0.0,
    last_angle_deg: float | None = None,
    allow_repeat: bool = False,
    names=None,
    model=None,
    n_samples: int = 30,
    seed: int = 0,
) -> Plan:
    """Rank the candidate orientations by the information they would add about the active FCs.

    ``bank``: exposures of (at least) every candidate and measured angle; ``forward_model``: the
    material's :class:`~fcinv_widgets.forward.ForwardModel` (ideally with the instrument's
    resolution); ``estimate`` (A,) current FCs (eV/Å²); ``domain`` (A, 2) the model's training
    domain; ``measured_deg`` angles already measured; ``candidates_deg`` (default: every bank
    angle); ``n`` how many to plan; ``background``/``counts`` the per-scan noise level (B, P as in
    :mod:`.noise`); ``prior_sigma`` σ₀ (A,) eV/Å² (default domain width/√12); ``criterion`` "D"
    or "A" (with ``focus`` FC indices); ``count_time_s`` (scalar or per candidate) and
    ``move_s_per_deg`` make the gain per second.

    ``criterion="model"`` scores a candidate by what the inverse ``model`` itself would report:
    the union of the measured scans and the candidate is simulated at the estimate (model image on
    the covered pixels, Poisson noise at the union's exposure with common random numbers for every
    candidate) and inverted; the gain is the drop of Σ_focus [(mean − estimate)² + σ²]/w²
    (the model's expected squared error in units of the domain width).
    """
    dom = np.asarray(domain, float)
    A = forward_model.n_active
    if dom.shape != (A, 2) or not np.all(np.isfinite(dom)) or np.any(dom[:, 1] <= dom[:, 0]):
        raise FcinvError(f"the domain must be ({A}, 2) finite [lo, hi] rows with lo < hi")
    if criterion not in ("D", "A", "model"):
        raise FcinvError(f"criterion must be 'D', 'A' or 'model', got {criterion!r}")
    if criterion == "model" and model is None:
        raise FcinvError("the 'model' criterion needs the inverse model (model=...)")
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise FcinvError(f"the number of planned scans must be a positive integer, got {n!r}")
    if not (np.isfinite(counts) and counts > 0):
        raise FcinvError(f"counts at the peak must be a positive number, got {counts!r}")
    if tuple(bank.shape) != tuple(forward_model.grid.shape):
        raise FcinvError(f"the coverage bank's grid {bank.shape} is not the forward model's {forward_model.grid.shape}")
    cand = bank.angles_deg if candidates_deg is None else np.atleast_1d(np.asarray(candidates_deg, float))
    if cand.size == 0:
        raise FcinvError("the candidate list is empty")
    ci = bank.index(cand)
    mi = bank.index(measured_deg) if np.size(measured_deg) else np.zeros(0, int)
    width = dom[:, 1] - dom[:, 0]
    sig0 = width / np.sqrt(12.0) if prior_sigma is None else np.asarray(prior_sigma, float)
    if sig0.shape != (A,) or not np.all(np.isfinite(sig0) & (sig0 > 0)):
        raise FcinvError(f"prior σ must be {A} positive numbers (eV/Å²)")
    G = pixel_information(forward_model, estimate, dom, background).reshape(-1, A * A)
    E = _relative_exposure(bank)
    Fall = (counts * (E[np.concatenate([ci, mi])] @ G)).reshape(-1, A, A)
    Fc, Fm = Fall[: len(ci)], Fall[len(ci) :]
    F = np.diag(1.0 / sig0**2) + Fm.sum(0)
    current_sigma = np.sqrt(np.diag(np.linalg.inv(F)))
    cost = np.ones(len(ci)) if count_time_s is None else np.broadcast_to(np.asarray(count_time_s, float), (len(ci),)).copy()
    if not np.all(np.isfinite(cost) & (cost > 0)):
        raise FcinvError("counting times must be positive")
    if not (np.isfinite(move_s_per_deg) and move_s_per_deg >= 0):
        raise FcinvError("the motor time per degree must be ≥ 0")
    avail = np.ones(len(ci), bool)
    if not allow_repeat and len(mi):
        avail &= ~np.isin(ci, mi)
    if not avail.any():
        raise FcinvError("every candidate angle has been measured already (allow repeats to plan more counting time)")
    last = (
        last_angle_deg
        if last_angle_deg is not None
        else (float(np.asarray(measured_deg, float).reshape(-1)[-1]) if np.size(measured_deg) else None)
    )
    chosen, gains, sigmas = [], [], []
    information = None
    if criterion == "model":
        clean = forward_model.spectra(np.asarray(estimate, float).reshape(1, -1), normalize=True).reshape(-1).astype(float)
        Eu = E[mi].sum(0)
        rng_seed = int(seed)
        score_now = (
            _model_score(model, clean, Eu[None], estimate, width, focus, background, counts, n_samples, rng_seed, bank.shape)[0]
            if len(mi)
            else float(len(focus)) / 12.0
        )
    for _ in range(int(n)):
        if not avail.any():
            break
        if criterion == "model":
            sc = np.full(len(ci), np.inf)
            idx = np.flatnonzero(avail)
            sc[idx] = _model_score(
                model, clean, Eu[None] + E[ci[idx]], estimate, width, focus, background, counts, n_samples, rng_seed, bank.shape
            )
            g = score_now - sc
        else:
            g = _gains(F, Fc, criterion, width, focus)
        c = cost + (move_s_per_deg * np.abs(cand - last) if last is not None else 0.0)
        score = np.where(avail, g / c, -np.inf)
        if information is None:
            information = np.where(avail, g / c, 0.0)
        k = int(np.argmax(score))
        chosen.append(k)
        gains.append(float(score[k]))
        F = F + Fc[k]
        sigmas.append(np.sqrt(np.diag(np.linalg.inv(F))))
        if criterion == "model":
            Eu = Eu + E[ci[k]]
            score_now = float(sc[k])
        last = float(cand[k])
        if not allow_repeat:
            avail[k] = False
    est = np.asarray(estimate, float).reshape(-1)
    return Plan(
        angles_deg=cand[chosen],
        gain=np.array(gains),
        predicted_sigma=np.array(sigmas),
        information=np.asarray(information),
        candidates_deg=cand,
        current_sigma=current_sigma,
        estimate=est,
        names=list(names if names is not None else forward_model.names),
        criterion=criterion,
        measured_deg=np.asarray(measured_deg, float).reshape(-1),
        meta={
            "background": background,
            "counts": counts,
            "prior_sigma_ev_a2": sig0.tolist(),
            "focus": list(focus),
            "ei_mev": bank.ei_mev,
            **bank.meta,
        },
    )


def _model_score(model, clean, Eu, estimate, width, focus, background, counts, n_samples, seed, shape) -> np.ndarray:
    """Σ_focus [(mean − estimate)² + σ²]/w² of the model on simulated unions with exposures ``Eu`` (n, n_pix)."""
    rng = np.random.default_rng(seed)
    u = rng.random(clean.shape)  # common random numbers: the same noise draw pattern for every candidate
    lam = counts * Eu * (clean + background)
    # Poisson quantile by the normal approximation (continuous in λ, so candidates compare smoothly)
    from scipy.special import ndtri

    N = np.clip(lam + np.sqrt(lam) * ndtri(np.clip(u, 1e-6, 1 - 1e-6)), 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        img = np.where(Eu > 0, N / (counts * np.where(Eu > 0, Eu, 1.0)), np.nan)
    pred = model.predict(img.reshape((-1,) + tuple(shape)), n_samples=n_samples, seed=seed)
    est = np.asarray(estimate, float).reshape(1, -1)
    f = list(focus)
    return ((((pred.mean - est) / width) ** 2 + (pred.std / width) ** 2)[:, f]).sum(1)


# ---------------------------------------------------------------------------- simulated measurements
def simulate_union(
    clean_image,
    bank: CoverageBank,
    measured_idx,
    background: float = DEFAULT_BACKGROUND,
    counts: float = DEFAULT_COUNTS,
    rng=None,
) -> np.ndarray:
    """A noisy measured image from the scans ``measured_idx`` of ``bank`` under the planner's model.

    Counts N_p ~ Poisson(P Σ_s (e_s(p)/ē) (m_p + B)); the returned estimate is N_p / (P Σ_s e_s(p)/ē)
    on covered pixels, NaN elsewhere (the same quantity Σ data / Σ norm of the folding)."""
    rng = np.random.default_rng(rng)
    m = np.asarray(clean_image, float).reshape(-1)
    E = _relative_exposure(bank)[np.asarray(measured_idx, int)].sum(0)
    lam = counts * E * (m + background)
    N = rng.poisson(lam)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(E > 0, N / (counts * np.where(E > 0, E, 1.0)), np.nan)
    return out.reshape(bank.shape).astype(np.float32)


def union_of_scans(scans, bank: CoverageBank, angles_deg) -> np.ndarray:
    """Σ e_s · image_s / Σ e_s over the given single-scan images (NaN = not covered): the union."""
    x = np.asarray(scans, float)
    e = bank.exposure[bank.index(angles_deg)].astype(float)
    e = np.where(np.isfinite(x), e, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        num = np.nansum(np.where(e > 0, x, 0.0) * e, axis=0)
        den = e.sum(0)
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan).astype(np.float32)
