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
from ..noise import MAX_BACKGROUND, MAX_COUNTS
from ..validate import (
    MAX_TEMPERATURE_K,
    fc_box,
    json_loads,
    finite_number,
    flag,
    need_type,
    nonempty_list,
    real_array,
    whole_number,
)
from ..grid import SpectrumGrid
from ..sqe import FoldPoints
from ..units import HBAR2_OVER_2

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
        from ..validate import as_path

        from ..validate import open_npz

        path = as_path(path, "coverage bank")
        archive = open_npz(path, "coverage bank")
        try:
            with archive as z:
                info = json_loads(str(z["info"]), f"{path}: info")
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
    from ..scans import (
        DETECTOR,
        check_angles,
        check_ei,
        conventional_reciprocal,
        orientation_exposure,
        orientation_matrix,
        reach_qmax,
        uv_cell,
    )
    from ..sqe import fold_geometry, small_mode

    detector = dict(DETECTOR if detector is None else detector)
    grid = material.grid
    ei = check_ei(ei_mev, grid)
    ang = check_angles(angles_deg)
    U0 = orientation_matrix(u, v, material.crystal)  # checks u and v
    reach = reach_qmax(ei, grid.e.e_min, detector["h_max_deg"])
    if qmax is not None:
        qmax = finite_number(qmax, "qmax (1/Å)", positive=True)
    qmax = (min(6.0, reach) if small_mode() else reach) if qmax is None else min(qmax, reach)
    meta = {"u": [float(x) for x in u], "v": [float(x) for x in v], "qmax_inv_a": qmax, "detector_deg": detector}
    if conventional_reciprocal(material.crystal) is not None:  # u, v in r.l.u. of a non-cubic cell (session 46)
        meta["axes"] = "conventional r.l.u."
        meta["uv_cell"] = uv_cell(material.crystal)[1]  # which cell (as scan sets record it)
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
    from ..forward import ForwardModel

    need_type(forward_model, ForwardModel, "the forward model (Material.forward_model())")
    A = forward_model.n_active
    th = real_array(theta, "the FC estimate (eV/Å²)", allow_inf=True).reshape(-1)
    if th.shape != (A,) or not np.all(np.isfinite(th)):
        raise FcinvError(f"the FC estimate must be {A} finite numbers (eV/Å²), got {np.asarray(theta).tolist()!r}"[:300])
    dom = fc_box(domain, A)
    background = finite_number(background, "the background B (fraction of the peak)", positive=False, maximum=MAX_BACKGROUND)
    rel_step = finite_number(rel_step, "rel_step (fraction of the domain width)", positive=True, maximum=0.5)
    h = rel_step * (dom[:, 1] - dom[:, 0])
    pts = np.concatenate([th[None], th[None] + np.diag(h), th[None] - np.diag(h)])
    img = forward_model.spectra(pts, normalize=True).reshape(2 * A + 1, -1).astype(np.float64)
    m = img[0]
    J = (img[1 : A + 1] - img[A + 1 :]).T / (2 * h)  # (n_pix, A)
    # Poisson variance m + B; a pixel with neither intensity nor background carries no information
    # (with B = 0 it was 0/0 = NaN, and the plan NaN)
    var = m + background
    return np.einsum("pa,pb->pab", J, J) / np.where(var > 0, var, np.inf)[:, None, None]


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
        # whole names (a crystal of several species has "FC0 (1NN Cu-Pt zz)"; they were cut at 14 characters)
        w = max([14, *(len(self.names[f]) for f in focus)])
        head = f"{'step':>4} {'ω (deg)':>8} {'gain (' + unit + ')':>14} " + " ".join(f"σ {self.names[f]:>{w}}" for f in focus)
        rows = [head, f"{'now':>4} {'':>8} {'':>14} " + " ".join(f"{self.current_sigma[f]:{w + 2}.4f}" for f in focus)]
        for k, (a, g, s) in enumerate(zip(self.angles_deg, self.gain, self.predicted_sigma)):
            rows.append(f"{k + 1:>4} {a:8.2f} {g:14.4g} " + " ".join(f"{s[f]:{w + 2}.4f}" for f in focus))
        # (printed without a unit or meaning, they read as the errors to expect: 1000× below the network's σ)
        rows.append(
            "σ in eV/Å²: Cramér–Rao bounds from the counting statistics at the current estimate "
            "(the least σ the scans allow, not the error to expect)"
        )
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
    from ..forward import ForwardModel

    need_type(bank, CoverageBank, "the coverage bank (planner.coverage_bank)")
    need_type(forward_model, ForwardModel, "the forward model (Material.forward_model())")
    A = forward_model.n_active
    dom = fc_box(domain, A)
    if not isinstance(criterion, str) or criterion not in ("D", "A", "model"):
        raise FcinvError(f"criterion must be 'D', 'A' or 'model', got {criterion!r}")
    a = _plan_inputs(A, locals())
    estimate, measured_deg, candidates_deg, prior_sigma, count_time_s = (a[k] for k in _PLAN_ARRAYS)
    background, counts, move_s_per_deg, last_angle_deg, focus, n, allow_repeat = (a[k] for k in _PLAN_SCALARS)
    n_samples = whole_number(n_samples, "n_samples", 1)
    seed = whole_number(seed, "seed", -(2**63), 2**64 - 1)
    if criterion == "model" and model is None:
        raise FcinvError("the 'model' criterion needs the inverse model (model=...)")
    if tuple(bank.shape) != tuple(forward_model.grid.shape):
        raise FcinvError(f"the coverage bank's grid {bank.shape} is not the forward model's {forward_model.grid.shape}")
    cand, ci, mi, width, sig0 = _plan_candidates(bank, candidates_deg, measured_deg, dom, prior_sigma)
    G = pixel_information(forward_model, estimate, dom, background).reshape(-1, A * A)
    E = _relative_exposure(bank)
    Fall = (counts * (E[np.concatenate([ci, mi])] @ G)).reshape(-1, A, A)
    Fc, Fm = Fall[: len(ci)], Fall[len(ci) :]
    F = np.diag(1.0 / sig0**2) + Fm.sum(0)
    current_sigma = np.sqrt(np.diag(np.linalg.inv(F)))
    cost, avail, last = _plan_schedule(ci, mi, measured_deg, count_time_s, move_s_per_deg, allow_repeat, last_angle_deg)
    # an orientation in which the detector records no pixel adds nothing: never plan it (the model
    # criterion's gains carry a little sampling noise, which could otherwise rank it above a
    # candidate the model would gain nothing from either)
    avail &= E[ci].any(1)
    if not avail.any():
        raise FcinvError("no candidate orientation records any pixel of the grid (zero exposure in the coverage bank)")
    gain_fn = on_pick = None
    if criterion == "model":
        clean = forward_model.spectra(np.asarray(estimate, float).reshape(1, -1), normalize=True).reshape(-1).astype(float)
        # how many orientations the current union holds: a union of one is sized by the single-scan σ
        state = {"Eu": E[mi].sum(0), "sc": None, "n": len(mi)}

        def score(Eu, n_orient):
            args = (estimate, width, focus, background, counts, n_samples, int(seed), bank.shape)
            return _model_score(model, clean, Eu, *args, single_scan=n_orient == 1)

        state["now"] = score(state["Eu"][None], len(mi))[0] if len(mi) else float(len(focus)) / 12.0

        def gain_fn(F, avail):
            sc = np.full(len(ci), np.inf)
            idx = np.flatnonzero(avail)
            sc[idx] = score(state["Eu"][None] + E[ci[idx]], state["n"] + 1)
            state["sc"] = sc
            return state["now"] - sc

        def on_pick(k):
            state["Eu"] = state["Eu"] + E[ci[k]]
            state["n"] += 1
            state["now"] = float(state["sc"][k])

    chosen, gains, sigmas, information = _greedy(
        F, Fc, cand, criterion, width, focus, cost, move_s_per_deg, last, avail, n, allow_repeat, gain_fn, on_pick
    )
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


def _model_score(
    model, clean, Eu, estimate, width, focus, background, counts, n_samples, seed, shape, single_scan=False
) -> np.ndarray:
    """Σ_focus [(mean − estimate)² + σ²]/w² of the model on simulated unions with exposures ``Eu`` (n, n_pix);
    σ from the model's calibration on measurement-model draws (unit weights, as the unions are), its
    single-scan one where each union is one scan (``single_scan``)."""
    rng = np.random.default_rng(seed)
    u = rng.random(clean.shape)  # common random numbers: the same noise draw pattern for every candidate
    lam = counts * Eu * (clean + background)
    # Poisson quantile by the normal approximation (continuous in λ, so candidates compare smoothly)
    from scipy.special import ndtri

    N = np.clip(lam + np.sqrt(lam) * ndtri(np.clip(u, 1e-6, 1 - 1e-6)), 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        img = np.where(Eu > 0, N / (counts * np.where(Eu > 0, Eu, 1.0)), np.nan)
    from ..models.inverter import input_sigma_regime

    regime = input_sigma_regime(None, measured=True, single_scan=single_scan)
    pred = model.predict(img.reshape((-1,) + tuple(shape)), n_samples=n_samples, seed=seed, sigma_regime=regime)
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
    from ..validate import real_array

    rng = np.random.default_rng(rng)
    exposure = _relative_exposure(bank)
    idx = real_array(measured_idx, "measured_idx (indices of the bank's scans)", allow_nan=False).ravel()
    if idx.size == 0:  # (an all-NaN image came back without a word)
        raise FcinvError("measured_idx is empty: give the bank index of at least one measured scan")
    if np.any(idx != np.round(idx)) or idx.min() < 0 or idx.max() >= len(exposure):
        raise FcinvError(
            f"measured_idx must be whole numbers from 0 to {len(exposure) - 1} (the bank's scans), got {idx.tolist()}"[:200]
        )
    m = real_array(clean_image, "clean_image", allow_nan=False).reshape(-1)
    if m.size != exposure.shape[1]:
        raise FcinvError(f"clean_image has {m.size} pixels, the bank's grid {tuple(bank.shape)} has {exposure.shape[1]}")
    E = exposure[idx.astype(int)].sum(0)
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


# ============================================================================ full S(Q,E) criterion
# The exposure criterion above weights every pixel of the unit-weight model image alike in every
# orientation; an ARCS-like scan covers 94–96 % of the path's pixels, so it sees little difference
# between orientations. What does differ is *which* equivalents Q = G + R q a scan sees, and each
# one weights the modes by its structure factor |Q·e_ν|²: the same pixel carries a different mix
# of branches in every orientation. The functions below score candidates with the Fisher
# information of the folded one-phonon S(Q,E) each single scan would record.
#
# Model of one scan ω (the simulation of scans.simulate_scans + noise.add_noise):
#   I_ω(b, E; θ) = Σ_ν W_ω,ν(b, E) · L_ν(b, E; θ),   L_ν = (n(E_ν)+1)/E_ν · g(E; E_ν, σ(E_ν))
# W_ω (sqe.folded_mode_weights with that orientation's detector hits) is held at the current
# estimate (eigenvectors); the energies E_ν(θ) move. The recorded counts are Poisson with mean
# P (a_ω I_ω + b_ω) on the covered pixels (a_ω = 1/peak: B and P refer to the 99.5th percentile
# of the scan's image, b_ω ≈ B), so per scan
#   F_ω = P Σ_p j_p j_pᵀ / (a I_p + b),  j_p = ∂(a I_p + b)/∂(θ, a, b),
# with the scan's own scale and background profiled out (Schur complement): they are fitted.
@dataclass
class HitsBank:
    """Detector hits of every candidate orientation (they need no force constants).

    ``points``: the fold geometry (:func:`sqe.fold_geometry`); ``hits[i]`` = (sel, ilo, ihi) of
    angle ``angles_deg[i]`` (:func:`scans._orientation_hits`); ``grid``: the material's grid."""

    material: str
    ei_mev: float
    angles_deg: np.ndarray
    points: FoldPoints
    hits: list
    grid: SpectrumGrid
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return tuple(self.grid.shape)

    def index(self, angles_deg) -> np.ndarray:
        return _angle_index(self.angles_deg, angles_deg, "hits bank")

    def dynamical_matrices(self, basis) -> np.ndarray:
        """D_p(q) (n_params, j, 3n, 3n) at the points' reduced wave vectors (made once, kept)."""
        if self.meta.get("_dp") is None:
            self.meta["_dp"] = basis.dynamical_matrices(self.points.q_frac)
        return self.meta["_dp"]

    def flat_hits(self) -> tuple:
        """(offsets (n+1,), sel, ilo, ihi) int64: the hits of every orientation concatenated (orientation
        i's are ``offsets[i]:offsets[i+1]``), as the kernels take them. Made once per bank."""
        if self.meta.get("_flat") is None:
            off = np.concatenate([[0], np.cumsum([len(h[0]) for h in self.hits])]).astype(np.int64)

            def cat(k):
                parts = [np.asarray(h[k], np.int64).reshape(-1) for h in self.hits]
                return np.concatenate(parts) if parts else np.zeros(0, np.int64)

            sel, ilo, ihi = cat(0), cat(1), cat(2)
            nE = self.shape[1]
            if sel.size and (
                sel.min() < 0 or sel.max() >= self.points.n or ilo.min() < 0 or ihi.max() >= nE or np.any(ilo > ihi)
            ):
                raise FcinvError("the hits bank is inconsistent with its points or energy grid (delete the planner cache)")
            self.meta["_flat"] = (off, sel, ilo, ihi)
        return self.meta["_flat"]

    def hits_by_point(self) -> tuple:
        """(bin_start (nq+1,), start (n_points+1,), scan, ilo, ihi): every hit ordered by point
        (:func:`.._fold_kernel.invert_hits`), and where each path bin's points begin. Made once per bank."""
        if self.meta.get("_by_point") is None:
            from .._fold_kernel import invert_hits

            off, sel, ilo, ihi = self.flat_hits()
            start, scan, lo, hi = invert_hits(off, sel, ilo, ihi, self.points.n)
            qbin = np.asarray(self.points.qbin)
            if qbin.size > 1 and np.any(np.diff(qbin) < 0):
                raise FcinvError("the hits bank's points are not sorted by path bin")
            bin_start = np.searchsorted(qbin, np.arange(self.shape[0] + 1)).astype(np.int64)
            self.meta["_by_point"] = (bin_start, start, scan, lo, hi)
        return self.meta["_by_point"]


def _angle_index(bank_angles, angles_deg, what: str) -> np.ndarray:
    ang = np.atleast_1d(np.asarray(angles_deg, float))
    d = np.abs(((ang[:, None] - bank_angles[None, :]) + 180.0) % 360.0 - 180.0)
    idx = d.argmin(1)
    bad = d[np.arange(len(ang)), idx] > 1e-6
    if np.any(bad):
        raise FcinvError(f"angle {ang[bad][0]:g}° is not in the {what} (angles {bank_angles.min():g} … {bank_angles.max():g}°)")
    return idx


_HITS_MEMO: dict = {}


def hits_bank(
    material,
    angles_deg,
    ei_mev: float,
    u=(1, 1, 0),
    v=(0, 0, 1),
    qmax: float | None = None,
    detector=None,
    progress: bool = False,
    cache: bool = True,
) -> HitsBank:
    """The detector hits of ``material``'s folded points for every sample angle (ARCS-like kinematics).

    ``qmax`` as in :func:`coverage_bank`. Kept in memory for the process (the last four banks) and,
    with ``cache``, on disk next to the coverage banks (keyed by everything the hits depend on)."""
    from ..scans import (
        DETECTOR,
        _orientation_hits,
        check_angles,
        check_ei,
        conventional_reciprocal,
        orientation_matrix,
        reach_qmax,
        uv_cell,
    )
    from ..sqe import fold_geometry, small_mode

    detector = dict(DETECTOR if detector is None else detector)
    grid = material.grid
    ei = check_ei(ei_mev, grid)
    ang = check_angles(angles_deg)
    reach = reach_qmax(ei, grid.e.e_min, detector["h_max_deg"])
    qmax = (min(6.0, reach) if small_mode() else reach) if qmax is None else min(float(qmax), reach)
    meta = {"u": [float(x) for x in u], "v": [float(x) for x in v], "qmax_inv_a": qmax, "detector_deg": detector}
    if conventional_reciprocal(material.crystal) is not None:  # u, v in r.l.u. of a non-cubic cell (session 46)
        meta["axes"] = "conventional r.l.u."
        meta["uv_cell"] = uv_cell(material.crystal)[1]  # which cell (as scan sets record it)
    key = json.dumps(
        {
            "kind": "hits",
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
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    if digest in _HITS_MEMO:
        return _HITS_MEMO[digest]
    pts = fold_geometry(material.crystal, grid, qmax, material.conventional_a)
    path = _cache_dir() / f"{material.name.lower()}-hits-{digest}.npz"
    hits = None
    if cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                off, sel, ilo, ihi = z["offsets"], z["sel"], z["ilo"], z["ihi"]
            if len(off) == len(ang) + 1 and off[-1] == len(sel) and (len(sel) == 0 or sel.max() < pts.n):
                hits = [
                    (sel[a:b].astype(np.int64), ilo[a:b].astype(np.int64), ihi[a:b].astype(np.int64))
                    for a, b in zip(off[:-1], off[1:])
                ]
        except (OSError, KeyError, ValueError):
            hits = None  # a damaged cache entry is recomputed
    if hits is None:
        U0 = orientation_matrix(u, v, material.crystal)
        it = ang
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(ang, desc="detector hits", unit="ω", leave=False)
        hits = [_orientation_hits(pts, float(om), ei, grid, U0, detector) for om in it]
        if cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".part.npz")
                off = np.concatenate([[0], np.cumsum([len(h[0]) for h in hits])])
                np.savez(
                    tmp,
                    offsets=off,
                    sel=np.concatenate([h[0] for h in hits]).astype(np.int32),
                    ilo=np.concatenate([h[1] for h in hits]).astype(np.int16),
                    ihi=np.concatenate([h[2] for h in hits]).astype(np.int16),
                )
                tmp.replace(path)
            except OSError:
                pass
    bank = HitsBank(material.name, ei, ang, pts, hits, grid, meta)
    while len(_HITS_MEMO) >= 4:
        _HITS_MEMO.pop(next(iter(_HITS_MEMO)))
    _HITS_MEMO[digest] = bank
    return bank


def point_mode_weights(calc, points, dynamical=None) -> np.ndarray:
    """ħ²|F_ν(Q)|²/(2 n_atoms) (fm², no 1/E, no Bose factor) of every folded point and mode:
    (n_points, 3n), modes ascending in energy — the summand of :func:`sqe.folded_mode_weights`
    (tested against it and against ``scans.simulate_scans``). ``dynamical``: the basis' D_p at
    ``points.q_frac`` (:meth:`HitsBank.dynamical_matrices`), which makes the modes a contraction
    instead of a new expansion. One compiled pass over the points (:mod:`.._fold_kernel`)."""
    from .._fold_kernel import point_amplitudes
    from ..sqe import E_MIN_MEV

    if dynamical is None:
        energies, vec = calc.modes(points.q_frac)
    else:
        from ..units import SQRT_EIG_TO_MEV

        lam, v = np.linalg.eigh(np.tensordot(calc.params, dynamical, axes=(0, 0)))
        energies = np.sign(lam) * np.sqrt(np.abs(lam)) * SQRT_EIG_TO_MEV
        vec = v.reshape(len(lam), calc.n_atoms, 3, -1)
    out = np.empty((points.n, vec.shape[-1]))
    point_amplitudes(
        np.ascontiguousarray(points.Q, np.float64),
        np.ascontiguousarray(points.G, np.float64),
        np.ascontiguousarray(points.iq, np.int64),
        np.ascontiguousarray(vec, np.complex128),
        np.ascontiguousarray(energies, np.float64),
        np.ascontiguousarray(calc.b / np.sqrt(calc.masses), np.complex128),
        np.ascontiguousarray(calc.U, np.float64),
        np.ascontiguousarray(calc.crystal.positions, np.float64),
        float(E_MIN_MEV),
        float(HBAR2_OVER_2 / calc.n_atoms),
        out,
    )
    return out


def candidate_mode_weights(amp: np.ndarray, bank: HitsBank, idx) -> tuple:
    """Folded mode weights of single orientations: (W (n, nq, nE, M) float32, covered (n, nq, nE) bool).

    ``amp`` from :func:`point_mode_weights`; ``idx`` indices into ``bank.hits``. W is the mean of
    ``amp`` over the equivalents each orientation puts into a pixel (0 where it covers none): the
    same numbers :func:`sqe.folded_mode_weights` gives with that orientation's hits alone (each
    point covers a contiguous run of energy bins: a difference array per orientation, compiled)."""
    from .._fold_kernel import scan_mode_means

    nq, nE = bank.shape
    idx = np.atleast_1d(np.asarray(idx, np.int64))
    if idx.size and (idx.min() < 0 or idx.max() >= len(bank.hits)):
        raise FcinvError(f"orientation indices must be in 0…{len(bank.hits) - 1}, got {idx.tolist()}")
    bin_start, start, scan, lo, hi = bank.hits_by_point()
    col = np.full(len(bank.hits), -1, np.int64)
    uniq, inv = np.unique(idx, return_inverse=True)
    col[uniq] = np.arange(len(uniq))
    amp = np.ascontiguousarray(amp, np.float64)
    W = np.empty((len(uniq), nq, nE, amp.shape[1]), np.float32)
    cov = np.empty((len(uniq), nq, nE), np.bool_)
    scan_mode_means(bin_start, start, scan, lo, hi, amp, col, nE, W, cov)
    if not np.array_equal(uniq, idx):
        W, cov = W[inv], cov[inv]
    return W, cov


_PATH_DP: dict = {}


def _path_dynamical(material) -> np.ndarray:
    """The basis' D_p at the path's q-points, (n_params, nq·3n·3n) complex (made once per material)."""
    key = (material.name, id(material.basis), material.grid.shape)
    if key not in _PATH_DP:
        _PATH_DP.clear()
        _PATH_DP[key] = material.basis.dynamical_matrices(material.grid.q.qpoints)
    return _PATH_DP[key]


_PATH_DP_REAL: dict = {}


def _path_dynamical_real(material) -> np.ndarray:
    """(nq, 2·M², n_params) float64: [Re D_p; −Im D_p] per q-point, so that
    e_νᴴ D_p e_ν = [Re ρ_ν, Im ρ_ν] · that column with ρ_ν,ij = conj(e_iν) e_jν — every parameter's
    Hellmann–Feynman derivative in one real matrix product per q-point (made once per material)."""
    key = (material.name, id(material.basis), material.grid.shape)
    if key not in _PATH_DP_REAL:
        _PATH_DP_REAL.clear()
        Dp = _path_dynamical(material)
        P, nq = Dp.shape[0], Dp.shape[1]
        D = Dp.reshape(P, nq, -1).transpose(1, 2, 0)  # (nq, M², P)
        _PATH_DP_REAL[key] = np.ascontiguousarray(np.concatenate([D.real, -D.imag], axis=1))
    return _PATH_DP_REAL[key]


def _line_shapes(energies, centers, temperature_k, ei_mev, broadening):
    from ..sqe import E_MIN_MEV, bose_factor, mode_sigma

    e = np.asarray(energies, float)
    ok = e > E_MIN_MEV
    ee = np.where(ok, e, 1.0)
    pref = np.where(ok, bose_factor(ee, temperature_k) / ee, 0.0)
    sig = mode_sigma(e, 1.0, ei_mev)[..., None] * broadening
    d = (centers - e[..., None]) / sig
    return pref[..., None] * np.exp(-0.5 * d * d) / (np.sqrt(2 * np.pi) * sig)


def _path_modes(material, params, vectors: bool = False):
    from ..units import SQRT_EIG_TO_MEV

    Dp = _path_dynamical(material)
    D = np.tensordot(np.asarray(params, complex), Dp, axes=(0, 0))
    if vectors:
        lam, vec = np.linalg.eigh(D)
    else:
        lam, vec = np.linalg.eigvalsh(D), None
    return np.sign(lam) * np.sqrt(np.abs(lam)) * SQRT_EIG_TO_MEV, lam, vec


def mode_line_shapes(material, params, temperature_k: float, ei_mev: float | None, broadening: float = 1.0) -> np.ndarray:
    """L_ν(b, E) = (n(E_ν)+1)/E_ν · g(E; E_ν, σ) at the path's bins: (N, nq, M, nE) per meV², for
    full parameter vectors ``params`` (N, n_params); modes ascending (0 below 0.01 meV). σ: the
    ARCS resolution at ``ei_mev`` (1 meV without) × ``broadening``."""
    centers = np.asarray(material.grid.e.centers, float)
    P = np.atleast_2d(np.asarray(params, float))
    return np.array([_line_shapes(_path_modes(material, p)[0], centers, temperature_k, ei_mev, broadening) for p in P])


def line_shape_jacobian(material, theta, temperature_k, ei_mev, broadening: float = 1.0, step_mev: float = 1e-3):
    """(L (nq, M, nE), ∂L/∂θ (nq, M, nE, A)) at the active FCs ``theta`` (inactive at the reference):
    ∂E_ν/∂θ_a by Hellmann–Feynman (e_νᵀ D_a e_ν), ∂L/∂E_ν by a central difference of ``step_mev``."""
    from ..units import SQRT_EIG_TO_MEV

    th = np.asarray(theta, float).reshape(-1)
    full = material.reference_params.copy()
    full[material.active] = th
    e, lam, vec = _path_modes(material, full, vectors=True)
    Dp = _path_dynamical(material)
    Da = Dp[material.active]  # (A, nq, M, M)
    dlam = np.einsum("qim,aqij,qjm->qma", np.conj(vec), Da, vec).real
    de = dlam * (SQRT_EIG_TO_MEV**2 / (2.0 * np.where(np.abs(e) > 1e-6, np.abs(e), 1e-6)))[..., None]
    centers = np.asarray(material.grid.e.centers, float)
    L = _line_shapes(e, centers, temperature_k, ei_mev, broadening)
    dLdE = (
        _line_shapes(e + step_mev, centers, temperature_k, ei_mev, broadening)
        - _line_shapes(e - step_mev, centers, temperature_k, ei_mev, broadening)
    ) / (2 * step_mev)
    return L, dLdE[..., None] * de[:, :, None, :]


def _free_jacobian(material, full, free, Wd, temperature_k, ei_mev, broadening: float = 1.0, step_mev: float = 1e-3):
    """(I (k, nq, nE), ∂I/∂p (k, nq, nE, len(free))): the scans' model I = Σ_ν W_ν L_ν at the full
    parameter vector ``full`` and its derivatives with respect to the parameters ``free`` (any of
    them, active or not) — ∂E_ν/∂p by Hellmann–Feynman as :func:`line_shape_jacobian`, contracted
    with the mode weights per q-point (no (nq, M, nE, P) array), in chunks of parameters."""
    from ..units import SQRT_EIG_TO_MEV

    e, lam, vec = _path_modes(material, full, vectors=True)
    nq, M = vec.shape[0], vec.shape[1]
    fac = SQRT_EIG_TO_MEV**2 / (2.0 * np.where(np.abs(e) > 1e-6, np.abs(e), 1e-6))  # (nq, M)
    free = np.asarray(free, int)
    rho = np.conj(vec).transpose(0, 2, 1)[:, :, :, None] * vec.transpose(0, 2, 1)[:, :, None, :]  # (nq, M, i, j)
    rho = np.concatenate([rho.real.reshape(nq, M, -1), rho.imag.reshape(nq, M, -1)], axis=2)  # (nq, M, 2M²)
    de = np.matmul(rho, _path_dynamical_real(material))[..., free] * fac[..., None]  # (nq, M, P): ∂E_ν/∂p
    centers = np.asarray(material.grid.e.centers, float)
    L = _line_shapes(e, centers, temperature_k, ei_mev, broadening)  # (nq, M, nE)
    dLdE = (
        _line_shapes(e + step_mev, centers, temperature_k, ei_mev, broadening)
        - _line_shapes(e - step_mev, centers, temperature_k, ei_mev, broadening)
    ) / (2 * step_mev)
    k, nE = Wd.shape[0], Wd.shape[2]
    G = Wd * dLdE.transpose(0, 2, 1)[None]  # (k, nq, nE, M)
    J = np.matmul(G.transpose(1, 0, 2, 3).reshape(nq, k * nE, M), de)  # (nq, k·nE, P)
    J = J.reshape(nq, k, nE, len(free)).transpose(1, 0, 2, 3)
    return _contract(Wd, L), J


def _contract(W, L):
    """Σ_ν W[c, q, e, ν] · L[q, ν, e, ...]: (c, q, e, ...) — a loop over the few modes (faster than einsum)."""
    out = None
    for m in range(W.shape[-1]):
        Lm = L[:, m]
        term = W[..., m].reshape(W.shape[:3] + (1,) * (Lm.ndim - 2)) * Lm[None]
        out = term if out is None else out + term
    return out


def _scan_scale(I, cov, background: float, percentile: float = 99.5):
    """(a, b) with a I + b the expected counts / P of a scan (noise.add_noise: min-max, B and P at
    the ``percentile`` of the covered pixels). Vectorised over leading axes."""
    n = I.shape[0]
    a, b = np.zeros(n), np.zeros(n)
    for c in range(n):
        v = I[c][cov[c]]
        if v.size == 0:
            continue
        lo = float(v.min())
        ref = float(np.percentile(v - lo, percentile))
        if ref <= 0:
            continue
        a[c] = 1.0 / ref
        b[c] = background - lo / ref
    return a, b


def sqe_fisher(W, cov, L, dL, background: float = DEFAULT_BACKGROUND, counts: float = DEFAULT_COUNTS, profile: bool = True):
    """Fisher information (n, A, A) of single scans about the active FCs, in (eV/Å²)⁻².

    ``W``, ``cov`` from :func:`candidate_mode_weights`; ``L``, ``dL`` from :func:`line_shape_jacobian`.
    Per scan: F = P Σ_covered j jᵀ/(a I + b), j = ∂(a I + b)/∂(θ, a, b) with I = Σ_ν W L, the scan's
    scale a and offset b as :func:`noise.add_noise` sets them (B and P at its 99.5th percentile);
    ``profile``: a and b are fitted per scan, so their information is profiled out (Schur complement)."""
    from .._fold_kernel import scan_fisher

    n = W.shape[0]
    A = dL.shape[-1]
    nq, nE, M = W.shape[1:]
    p = nq * nE
    Wp = W.reshape(n, p, M)
    Lp = L.transpose(0, 2, 1).reshape(p, M)
    dLp = np.ascontiguousarray(dL.transpose(0, 2, 1, 3)).reshape(p, M, A)
    I = np.einsum("cpm,pm->cp", Wp, Lp)
    a, b = _scan_scale(I.reshape(n, nq, nE), cov, background)
    ok = cov.reshape(n, p) & (a > 0)[:, None]
    H = np.empty((n, A + 2, A + 2))
    scan_fisher(Wp.astype(np.float32, copy=False), ok, dLp, I, a, b, float(counts), H)
    if profile:
        Hnn = H[:, A:, A:] + 1e-12 * np.trace(H[:, A:, A:], axis1=1, axis2=2)[:, None, None] * np.eye(2) + 1e-300 * np.eye(2)
        F = H[:, :A, :A] - H[:, :A, A:] @ np.linalg.solve(Hnn, H[:, A:, :A])
    else:
        F = H[:, :A, :A]
    F = np.where((a > 0)[:, None, None], F, 0.0)
    return 0.5 * (F + F.transpose(0, 2, 1))


def sqe_candidate_information(
    material,
    estimate,
    bank: HitsBank,
    idx,
    temperature_k: float = 5.0,
    background: float = DEFAULT_BACKGROUND,
    counts: float = DEFAULT_COUNTS,
    profile: bool = True,
    chunk: int = 16,
    b_coh=None,
) -> np.ndarray:
    """Fisher information (len(idx), A, A) of the single scans ``idx`` of ``bank`` at the active FCs
    ``estimate`` (inactive at the reference): mode weights at the estimate, line-shape derivatives.
    ``b_coh`` ({element: fm}): coherent scattering lengths where not the table's."""
    from ..sqe import SQE

    th = np.asarray(estimate, float).reshape(-1)
    A = len(material.active)
    if th.shape != (A,) or not np.all(np.isfinite(th)):
        raise FcinvError(f"the FC estimate must be {A} finite numbers (eV/Å²), got {np.asarray(estimate).tolist()!r}")
    if not (np.isfinite(background) and background >= 0):
        raise FcinvError(f"the background must be a non-negative fraction of the peak, got {background!r}")
    if not (np.isfinite(counts) and counts > 0):
        raise FcinvError(f"counts at the peak must be a positive number, got {counts!r}")
    full = material.reference_params.copy()
    full[material.active] = th
    calc = SQE(material.basis, full, temperature=temperature_k, b_coh=b_coh)
    amp = point_mode_weights(calc, bank.points, bank.dynamical_matrices(material.basis))
    L, dL = line_shape_jacobian(material, th, temperature_k, bank.ei_mev)
    idx = np.atleast_1d(np.asarray(idx, int))
    out = np.zeros((len(idx), A, A))
    W, cov = candidate_mode_weights(amp, bank, idx)  # one pass over the hits for all of them
    for s in range(0, len(idx), chunk):
        out[s : s + chunk] = sqe_fisher(W[s : s + chunk], cov[s : s + chunk], L, dL, background, counts, profile)
    return out


_PLAN_ARRAYS = ("estimate", "measured_deg", "candidates_deg", "prior_sigma", "count_time_s")
_PLAN_SCALARS = ("background", "counts", "move_s_per_deg", "last_angle_deg", "focus", "n", "allow_repeat")


def _plan_inputs(A: int, given: dict) -> dict:
    """Both planners' common arguments (``given``: the caller's ``locals()``, keys
    :data:`_PLAN_ARRAYS` + :data:`_PLAN_SCALARS`) checked and converted (one line naming the argument)."""
    estimate, measured_deg, candidates_deg, prior_sigma, count_time_s = (given[k] for k in _PLAN_ARRAYS)
    background, counts, move_s_per_deg, last_angle_deg, focus, n, allow_repeat = (given[k] for k in _PLAN_SCALARS)
    estimate = real_array(estimate, "the FC estimate (eV/Å²)", allow_inf=True)
    if estimate.size != A or not np.all(np.isfinite(estimate)):
        raise FcinvError(f"the FC estimate must be {A} finite numbers (eV/Å²), got {estimate.tolist()!r}"[:300])
    out = {
        "estimate": estimate.reshape(-1),
        "measured_deg": real_array(measured_deg, "measured_deg (degrees)", allow_nan=False).reshape(-1),
        "candidates_deg": None
        if candidates_deg is None
        else real_array(candidates_deg, "candidates_deg (degrees)", allow_nan=False),
        "prior_sigma": None if prior_sigma is None else real_array(prior_sigma, "prior_sigma (eV/Å²)"),
        "count_time_s": None if count_time_s is None else real_array(count_time_s, "count_time_s (seconds)"),
        "background": finite_number(background, "background B (fraction of the peak)", positive=False, maximum=MAX_BACKGROUND),
        "counts": finite_number(counts, "counts at the peak", positive=True, maximum=MAX_COUNTS),
        "move_s_per_deg": finite_number(move_s_per_deg, "move_s_per_deg (motor seconds per degree)", positive=False),
        "last_angle_deg": None if last_angle_deg is None else finite_number(last_angle_deg, "last_angle_deg (degrees)"),
        "focus": [whole_number(f, "each focus FC index", 0, A - 1) for f in nonempty_list(focus, "focus (FC indices)")],
        "n": whole_number(n, "the number of planned scans", 1),
        "allow_repeat": flag(allow_repeat, "allow_repeat"),
    }
    return out


def _plan_candidates(bank, candidates_deg, measured_deg, dom, prior_sigma):
    """Candidate angles and their bank indices, the measured ones', the domain widths and the prior σ₀."""
    A = len(dom)
    cand = bank.angles_deg if candidates_deg is None else np.atleast_1d(np.asarray(candidates_deg, float))
    if cand.size == 0:
        raise FcinvError("the candidate list is empty")
    ci = bank.index(cand)
    mi = bank.index(measured_deg) if np.size(measured_deg) else np.zeros(0, int)
    width = dom[:, 1] - dom[:, 0]
    sig0 = width / np.sqrt(12.0) if prior_sigma is None else np.asarray(prior_sigma, float)
    if sig0.shape != (A,) or not np.all(np.isfinite(sig0) & (sig0 > 0)):
        raise FcinvError(f"prior σ must be {A} positive numbers (eV/Å²)")
    return cand, ci, mi, width, sig0


def _plan_schedule(ci, mi, measured_deg, count_time_s, move_s_per_deg, allow_repeat, last_angle_deg):
    """Counting time per candidate, which candidates may still be chosen, and the angle the motor is at."""
    if count_time_s is not None and np.size(count_time_s) not in (1, len(ci)):
        raise FcinvError(f"count_time_s must be one time or one per candidate ({len(ci)}), got {np.size(count_time_s)} values")
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
    return cost, avail, last


def _greedy(F, Fc, cand, criterion, width, focus, cost, move_s_per_deg, last, avail, n, allow_repeat, gain_fn=None, on_pick=None):
    """Greedy plan: the best gain per unit cost (counting time + motor move), F updated after each pick.
    ``gain_fn(F, avail)`` replaces the Fisher gains (the model criterion); ``on_pick(k)`` is told each pick."""
    chosen, gains, sigmas = [], [], []
    information = None
    for _ in range(int(n)):
        if not avail.any():
            break
        g = gain_fn(F, avail) if gain_fn is not None else _gains(F, Fc, criterion, width, focus)
        c = cost + (move_s_per_deg * np.abs(cand - last) if last is not None else 0.0)
        score = np.where(avail, g / c, -np.inf)
        if information is None:
            information = np.where(avail, g / c, 0.0)
        k = int(np.argmax(score))
        chosen.append(k)
        gains.append(float(score[k]))
        F = F + Fc[k]
        sigmas.append(np.sqrt(np.diag(np.linalg.inv(F))))
        if on_pick is not None:
            on_pick(k)
        last = float(cand[k])
        if not allow_repeat:
            avail[k] = False
    return chosen, gains, sigmas, information


def plan_orientations_sqe(
    material,
    bank: HitsBank,
    estimate,
    measured_deg=(),
    candidates_deg=None,
    n: int = 5,
    temperature_k: float = 5.0,
    background: float = DEFAULT_BACKGROUND,
    counts: float = DEFAULT_COUNTS,
    prior_sigma=None,
    criterion: str = "D",
    focus=(0, 1, 2, 3),
    count_time_s=None,
    move_s_per_deg: float = 0.0,
    last_angle_deg: float | None = None,
    allow_repeat: bool = False,
    profile: bool = True,
    b_coh=None,
) -> Plan:
    """Rank candidate orientations by the Fisher information of the folded one-phonon S(Q,E) they record.

    Like :func:`plan_orientations`, with the information of a scan from the full S(Q,E) model
    (:func:`sqe_fisher`: every mode weighted by the structure factors of the equivalents that
    orientation puts on the detector, Poisson noise at B and P per scan as :func:`noise.add_noise`
    applies them, the scan's scale and background profiled out) instead of exposure × the
    unit-weight image. ``bank`` from :func:`hits_bank` (all candidate and measured angles);
    ``estimate`` (A,) the current active FCs (eV/Å², inactive at the reference); the prior, the
    criteria ("D", "A" on ``focus``), costs and the greedy plan as in :func:`plan_orientations`;
    ``b_coh`` ({element: fm}) the coherent scattering lengths where not the table's.
    """
    from ..materials import as_material

    material = as_material(material)
    need_type(bank, HitsBank, "the hits bank (planner.hits_bank)")
    dom = np.asarray(material.domain, float)
    if not isinstance(criterion, str) or criterion not in ("D", "A"):
        raise FcinvError(f"the S(Q,E) criterion must be 'D' or 'A', got {criterion!r}")
    a = _plan_inputs(len(material.active), locals())
    estimate, measured_deg, candidates_deg, prior_sigma, count_time_s = (a[k] for k in _PLAN_ARRAYS)
    background, counts, move_s_per_deg, last_angle_deg, focus, n, allow_repeat = (a[k] for k in _PLAN_SCALARS)
    temperature_k = finite_number(temperature_k, "the sample temperature (K)", positive=False, maximum=MAX_TEMPERATURE_K)
    profile = flag(profile, "profile")
    if bank.material != material.name or tuple(bank.shape) != tuple(material.grid.shape):
        raise FcinvError(f"the hits bank is for {bank.material} {bank.shape}, not {material.name} {material.grid.shape}")
    cand, ci, mi, width, sig0 = _plan_candidates(bank, candidates_deg, measured_deg, dom, prior_sigma)
    uniq, inv = np.unique(np.concatenate([ci, mi]), return_inverse=True)
    Fu = sqe_candidate_information(material, estimate, bank, uniq, temperature_k, background, counts, profile, b_coh=b_coh)
    Fall = Fu[inv]
    Fc, Fm = Fall[: len(ci)], Fall[len(ci) :]
    F = np.diag(1.0 / sig0**2) + Fm.sum(0)
    current_sigma = np.sqrt(np.diag(np.linalg.inv(F)))
    cost, avail, last = _plan_schedule(ci, mi, measured_deg, count_time_s, move_s_per_deg, allow_repeat, last_angle_deg)
    chosen, gains, sigmas, information = _greedy(
        F, Fc, cand, criterion, width, focus, cost, move_s_per_deg, last, avail, n, allow_repeat
    )
    return Plan(
        angles_deg=cand[chosen],
        gain=np.array(gains),
        predicted_sigma=np.array(sigmas),
        information=np.asarray(information),
        candidates_deg=cand,
        current_sigma=current_sigma,
        estimate=np.asarray(estimate, float).reshape(-1),
        names=list(material.active_names),
        criterion=criterion,
        measured_deg=np.asarray(measured_deg, float).reshape(-1),
        meta={
            "model": "sqe",
            "background": background,
            "counts": counts,
            "temperature_k": temperature_k,
            "prior_sigma_ev_a2": sig0.tolist(),
            "focus": list(focus),
            "ei_mev": bank.ei_mev,
            **{k: v for k, v in bank.meta.items() if not k.startswith("_")},
        },
    )


def _gn_system(w, r, I, dI, a, phi):
    """Gradient Jᵀ W r / φ and Gauss–Newton matrix Jᵀ W J / φ over (θ, a_1, b_1, … a_k, b_k): per
    scan, only its weighted pixels, J's θ block whitened once (√w) and multiplied by itself (its
    scale/offset columns touch their own scan only)."""
    k, A = len(a), dI.shape[-1]
    g = np.zeros(A + 2 * k)
    H = np.zeros((A + 2 * k, A + 2 * k))
    for s in range(k):
        ws = w[s].reshape(-1)
        m = ws > 0
        sw = np.sqrt(ws[m])
        D = dI[s].reshape(-1, A)[m] * (a[s] * sw)[:, None]  # √w ∂(a I)/∂θ
        C = np.stack([I[s].reshape(-1)[m] * sw, sw], 1)  # √w ∂(a I + b)/∂(a, b)
        rw = r[s].reshape(-1)[m] * sw
        j = slice(A + 2 * s, A + 2 * s + 2)
        H[:A, :A] += D.T @ D
        H[:A, j] = D.T @ C
        H[j, :A] = H[:A, j].T
        H[j, j] = C.T @ C
        g[:A] += D.T @ rw
        g[j] = C.T @ rw
    return g / phi, H / phi


@dataclass
class ScanFit:
    """Result of :func:`fit_scans_sqe`: ``theta`` (A,) and ``sigma`` (A,) eV/Å² (Laplace, dispersion
    from the residual unless given), per-scan ``scale``/``offset``, ``dispersion`` φ, ``n_iter``, ``seconds``."""

    theta: np.ndarray
    sigma: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    dispersion: float
    n_iter: int
    seconds: float
    stiffness: float | None = None  # s: the reference × s held the inactive FCs and centred the prior; None: s = 1
    stiffness_sigma: float | None = None  # s's 1σ with the shape held at the reference's (a lower bound)
    params: np.ndarray | None = None  # (n_params,) eV/Å²: every FC at the estimate (the inactive ones held or fitted)
    inactive_fitted: bool = False  # the FCs outside the top 8 fitted with a prior (their uncertainty is in σ)
    names: list = field(default_factory=list)  # the active FCs' names
    # for check_scan_fit_sigma (not serialised): the fitted model a·I + b of every scan and its noise 1σ
    # (√(φ·max(a·I + b, floor)), the fit's noise model with φ from the residual even where a dispersion
    # was given, so a wrong one shows), NaN where not covered; the fit's arguments
    model_image: np.ndarray | None = None
    noise_std: np.ndarray | None = None
    fit_settings: dict | None = None


def _scans_stiffness(material, bank, Y, idx, temperature_k, ei, b_coh) -> tuple[float, float]:
    """(s, σ_s): the one factor s for which s × every reference FC fits the scans ``Y`` (k, nq, nE)
    best (:func:`~fcinv_widgets.analysis.refine.stiffness_search`): each scan's scale and offset
    refitted by weighted least squares with the data's own noise model; the mode weights at the
    reference (a uniform rescale keeps the eigenvectors; the (n+1)/ω factors change by one factor at
    low temperature and in the classical limit, which the scale absorbs) and every mode energy
    × √s (exact for a uniform rescale)."""
    from ..sqe import SQE
    from .refine import _noise_model, stiffness_search

    calc = SQE(material.basis, material.reference_params, temperature=temperature_k, b_coh=b_coh)
    W, cov = candidate_mode_weights(point_mode_weights(calc, bank.points, bank.dynamical_matrices(material.basis)), bank, idx)
    Wd = W.astype(np.float64)
    msk = cov & np.isfinite(Y)
    e0 = _path_modes(material, material.reference_params)[0]
    centers = np.asarray(material.grid.e.centers, float)
    inv_v = []
    for c in range(len(Y)):
        base, floor = _noise_model(np.where(msk[c], Y[c], np.nan), msk[c]) if msk[c].any() else (np.zeros_like(Y[c]), 1.0)
        inv_v.append((1.0 / (base + floor))[msk[c]])

    def chi2(u: float) -> float:
        img = _contract(Wd, _line_shapes(np.exp(0.5 * u) * e0, centers, temperature_k, ei, 1.0))
        total = 0.0
        for c in range(len(Y)):
            m = msk[c]
            x, yy, w = img[c][m], Y[c][m], inv_v[c]
            if x.size < 3:
                continue
            X = np.stack([x, np.ones_like(x)], 1) * np.sqrt(w)[:, None]
            ab = np.linalg.lstsq(X, yy * np.sqrt(w), rcond=None)[0]
            total += float((w * (yy - ab[0] * x - ab[1]) ** 2).sum())
        return total

    return stiffness_search(chi2, float(msk.sum()) - 2.0 * len(Y) - 1.0)


def fit_scans_sqe(
    material,
    bank: HitsBank,
    images,
    angles_deg,
    temperature_k: float = 5.0,
    start=None,
    prior_sigma=None,
    dispersion: float | None = None,
    n_outer: int = 3,
    anneal=(1.0,),
    max_iter: int = 100,
    b_coh=None,
    stiffness: bool | None = None,
    fit_inactive: bool | None = None,
    prior_scale: float = 1.5,
) -> ScanFit:
    """Gauss–Newton (Levenberg–Marquardt) MAP fit of the active FCs to single-orientation scans.

    ``images`` (k, nq, nE), NaN = not covered, each a scan at ``angles_deg`` of ``bank`` in counts
    per P (``noise.add_noise(..., rescale=False)``) or any affine rescaling of it (every scan gets its
    own fitted scale and offset). Model: the folded one-phonon S(Q,E) of each orientation,
    Σ_ν W_ω,ν L_ν(θ) (:func:`candidate_mode_weights`, :func:`mode_line_shapes`), the inactive FCs at
    the reference; the mode weights are recomputed at the estimate ``n_outer`` times. Noise:
    variance φ·(model) (Poisson in counts/P: φ = 1/P), φ from the residual unless ``dispersion``.
    Prior N(reference, σ₀²), σ₀ = domain width/√12 by default. ``anneal``: broadening factors of
    the line shapes in the first round (coarse to fine, a smoother misfit). σ: the inverse
    Gauss–Newton Hessian at the estimate (the scales and offsets marginalised). ``b_coh``
    ({element: fm}): coherent scattering lengths where not the table's.

    ``stiffness``: first find the one factor s by which every reference FC must be scaled to fit the
    scans best (:func:`_scans_stiffness`), then hold the inactive FCs at s × the reference and centre
    the prior (and, without ``start``, start) at s × the reference's active FCs — as
    :func:`~fcinv_widgets.analysis.refine.refine_sqe` does, for a reference whose overall stiffness
    is not known (a force field's). Default (``None``): on where the material's inactive spread is
    the unmeasured fallback (a structure with force constants), off for the presets. The result
    records s (``stiffness``, ``stiffness_sigma``; None when off).

    ``fit_inactive``: fit the FCs outside the top 8 too, each with a Gaussian prior
    N(reference (× s), (``prior_scale`` × :attr:`~fcinv_widgets.materials.Material.nuisance_sigma`
    (× s))²) as :func:`~fcinv_widgets.analysis.refine.refine_sqe` does, so that σ of the top 8 carries
    the uncertainty of the others (the inverse of the Hessian over all of them). Held at the
    reference, a force field whose error differs per interaction leaves them the wrong shape and the
    8 FCs' σ means nothing (rutile, session 44: ±1σ 0.00). Default (``None``): on where the
    inactive spread is the unmeasured fallback (a structure with force constants), off for the
    presets (their inactive FCs anchored to measured phonons; the paper's 8-FC model). The result's
    ``params`` holds every FC at the estimate; ``inactive_fitted`` says which way it was made.
    """
    import time

    from ..sqe import SQE

    from ..materials import UNMEASURED_NUISANCE, as_material
    from .refine import MAX_FIT_ITERATIONS, _anneal

    t0 = time.perf_counter()
    material = as_material(material)
    need_type(bank, HitsBank, "the hits bank (planner.hits_bank)")
    given_start, given_prior = start, prior_sigma
    if stiffness is None:
        stiffness = material.nuisance_source == UNMEASURED_NUISANCE
    elif not isinstance(stiffness, (bool, np.bool_)):
        raise FcinvError(f"stiffness must be True, False or None (automatic), got {stiffness!r}")
    if fit_inactive is None:
        fit_inactive = material.nuisance_source == UNMEASURED_NUISANCE
    elif not isinstance(fit_inactive, (bool, np.bool_)):
        raise FcinvError(f"fit_inactive must be True, False or None (automatic), got {fit_inactive!r}")
    prior_scale = finite_number(prior_scale, "prior_scale", positive=True)
    if bank.material != material.name or tuple(bank.shape) != tuple(material.grid.shape):
        raise FcinvError(f"the hits bank is for {bank.material} {bank.shape}, not {material.name} {material.grid.shape}")
    dom = np.asarray(material.domain, float)
    A = len(material.active)
    ref = material.reference_theta
    width = dom[:, 1] - dom[:, 0]
    sig0 = width / np.sqrt(12.0) if prior_sigma is None else real_array(prior_sigma, "prior_sigma (eV/Å²)")
    if sig0.shape != (A,) or not np.all(np.isfinite(sig0) & (sig0 > 0)):
        raise FcinvError(f"prior σ must be {A} positive numbers (eV/Å²)")
    Y = real_array(images, "the scan images")
    Y = Y[None] if Y.ndim == 2 else Y
    if Y.ndim != 3 or Y.shape[1:] != tuple(material.grid.shape):
        raise FcinvError(f"the scan images must be (k, {material.grid.shape[0]}, {material.grid.shape[1]}), got shape {Y.shape}")
    if not np.isfinite(Y).any(axis=(1, 2)).all():
        raise FcinvError("every scan image needs at least one measured (finite) pixel")
    for c in range(len(Y)):
        v = Y[c][np.isfinite(Y[c])]
        if v.max() == v.min():
            raise FcinvError(f"scan image {c} is constant ({v[0]:g} in every measured pixel): there is nothing to fit")
    angles = real_array(angles_deg, "angles_deg (degrees)", allow_nan=False).reshape(-1)
    idx = bank.index(angles)
    if len(idx) != len(Y):
        raise FcinvError(f"{len(Y)} images for {len(idx)} angles")
    temperature_k = finite_number(temperature_k, "the sample temperature (K)", positive=False, maximum=MAX_TEMPERATURE_K)
    if dispersion is not None:
        dispersion = finite_number(dispersion, "dispersion φ", positive=True)
    n_outer = whole_number(n_outer, "n_outer", 1, 100)
    anneal = _anneal(anneal)
    max_iter = whole_number(max_iter, "max_iter", 1, MAX_FIT_ITERATIONS)
    k = len(Y)
    ei = bank.ei_mev
    s_fit = s_sig = None
    if stiffness:
        s_fit, s_sig = _scans_stiffness(material, bank, Y, idx, temperature_k, ei, b_coh)
        # the same crystal, its reference × s (basis, active set and domain shared)
        material = material.with_reference(s_fit * material.reference_params, material.reference_source, material.reference_name)
        ref = material.reference_theta
    if start is None:
        th = ref.copy()
    else:
        th = real_array(start, "start (eV/Å²)", allow_nan=False).reshape(-1).copy()
        if th.shape != (A,):
            raise FcinvError(f"start must be the {A} active FCs (eV/Å²), got {th.size} numbers")
    th = np.clip(th, dom[:, 0], dom[:, 1])
    # the parameters fitted (active first): the top 8, or every FC with a prior on the others
    base = material.reference_params.copy()
    inactive = np.setdiff1d(np.arange(len(base)), material.active)
    if fit_inactive and len(inactive):
        free = np.concatenate([np.asarray(material.active, int), inactive])
        ref = np.concatenate([ref, base[inactive]])
        sig0 = np.concatenate([sig0, prior_scale * np.asarray(material.nuisance_sigma, float)])
        th = np.concatenate([th, base[inactive]])
        lo = np.concatenate([dom[:, 0], np.full(len(inactive), -np.inf)])
        hi = np.concatenate([dom[:, 1], np.full(len(inactive), np.inf)])
        width = np.concatenate([width, sig0[A:]])
    else:
        fit_inactive = False
        free = np.asarray(material.active, int)
        lo, hi = dom[:, 0], dom[:, 1]
    nf = len(free)
    a = np.ones(k)
    b = np.zeros(k)
    n_iter = 0
    phi = 1.0
    H = np.eye(nf + 2 * k)
    for outer in range(max(1, int(n_outer))):
        full = base.copy()
        full[free] = th
        calc = SQE(material.basis, full, temperature=temperature_k, b_coh=b_coh)
        amp = point_mode_weights(calc, bank.points, bank.dynamical_matrices(material.basis))
        W, cov = candidate_mode_weights(amp, bank, idx)
        Wd = W.astype(np.float64)
        msk = cov & np.isfinite(Y)
        y = np.where(msk, Y, 0.0)
        npix = int(msk.sum())

        def model(theta, f, deriv, Wd=Wd):
            if deriv and fit_inactive:
                full_ = base.copy()
                full_[free] = theta
                return _free_jacobian(material, full_, free, Wd, temperature_k, ei, f)
            if deriv:
                L, dL = line_shape_jacobian(material, theta, temperature_k, ei, broadening=f)
                return _contract(Wd, L), _contract(Wd, dL)
            full_ = base.copy()
            full_[free] = theta
            return _contract(Wd, mode_line_shapes(material, full_[None], temperature_k, ei, f)[0]), None

        stages = tuple(anneal) if outer == 0 else (1.0,)
        for f in stages:
            I, dI = model(th, f, True)
            if outer == 0 and f == stages[0]:
                # scales and offsets to start from: linear least squares per scan
                for s in range(k):
                    m = msk[s]
                    X = np.stack([I[s][m], np.ones(int(m.sum()))], 1)
                    a[s], b[s] = np.linalg.lstsq(X, y[s][m], rcond=None)[0]
            # Poisson weights 1/(model), held fixed for this stage (a plain weighted least-squares
            # problem: LM decreases it monotonically); floored at 5 % of each scan's peak
            mu = a[:, None, None] * I + b[:, None, None]
            w = np.zeros_like(mu)
            for s in range(k):
                m = msk[s]
                fl = 0.05 * max(float(np.percentile(np.abs(mu[s][m]), 99.5)), 1e-300)
                w[s][m] = 1.0 / np.maximum(mu[s][m], fl)
            r = np.where(msk, y - mu, 0.0)
            phi = dispersion if dispersion is not None else max(float((w * r * r).sum()) / max(npix - A - 2 * k, 1), 1e-30)
            lam = 1e-3
            for _ in range(int(max_iter)):
                n_iter += 1
                r = np.where(msk, y - a[:, None, None] * I - b[:, None, None], 0.0)
                g, H = _gn_system(w, r, I, dI, a, phi)
                zres = (th - ref) / sig0
                g[:nf] -= zres / sig0
                H[:nf, :nf] += np.diag(1.0 / sig0**2)
                cost = 0.5 * float((w * r * r).sum()) / phi + 0.5 * float(zres @ zres)
                done = False
                while True:
                    step = np.linalg.solve(H + lam * np.diag(np.diag(H)), g)
                    th_new = np.clip(th + step[:nf], lo, hi)
                    a_new, b_new = a + step[nf::2], b + step[nf + 1 :: 2]
                    I_new, _ = model(th_new, f, False)
                    r_new = np.where(msk, y - a_new[:, None, None] * I_new - b_new[:, None, None], 0.0)
                    zn = (th_new - ref) / sig0
                    cost_new = 0.5 * float((w * r_new * r_new).sum()) / phi + 0.5 * float(zn @ zn)
                    if cost_new <= cost:
                        lam = max(lam / 3.0, 1e-9)
                        rel = np.max(np.abs(th_new - th) / width)
                        th, a, b = th_new, a_new, b_new
                        done = rel < 1e-6 or (cost - cost_new) < 1e-9 * max(cost, 1.0)
                        break
                    lam *= 4.0
                    if lam > 1e8:
                        done = True
                        break
                if done:
                    break
                I, dI = model(th, f, True)
    # σ: the Gauss–Newton Hessian at the estimate, φ from the final residual unless given
    I, dI = model(th, 1.0, True)
    r = np.where(msk, y - a[:, None, None] * I - b[:, None, None], 0.0)
    npix = int(msk.sum())
    phi_data = max(float((w * r * r).sum()) / max(npix - A - 2 * k, 1), 1e-30)  # the residual's φ
    phi = dispersion if dispersion is not None else phi_data
    g, H = _gn_system(w, r, I, dI, a, phi)
    H[:nf, :nf] += np.diag(1.0 / sig0**2)
    cov_m = np.linalg.inv(H)
    sigma = np.sqrt(np.clip(np.diag(cov_m)[:A], 0, None))
    full = base.copy()
    full[free] = th
    mu = a[:, None, None] * I + b[:, None, None]
    settings = dict(
        angles_deg=angles,
        temperature_k=temperature_k,
        start=None if given_start is None else np.array(given_start, float),
        prior_sigma=None if given_prior is None else np.array(given_prior, float),
        dispersion=dispersion,
        n_outer=n_outer,
        anneal=anneal,
        max_iter=max_iter,
        b_coh=b_coh,
        stiffness=bool(stiffness),
        fit_inactive=bool(fit_inactive),
        prior_scale=prior_scale,
    )
    return ScanFit(
        th[:A],
        sigma,
        a,
        b,
        float(phi),
        n_iter,
        time.perf_counter() - t0,
        s_fit,
        s_sig,
        full,
        bool(fit_inactive),
        [material.basis.names[i] for i in material.active],
        np.where(msk, mu, np.nan),
        np.where(msk & (w > 0), np.sqrt(phi_data / np.where(w > 0, w, 1.0)), np.nan),  # the data's noise, not a given φ
        settings,
    )


def check_scan_fit_sigma(
    material, bank: HitsBank, fit: ScanFit, n_draws: int = 10, seed: int = 0, progress: bool = False, scheduler=None
):
    """Measure how often a scan fit's σ covers the error, for this crystal and these scans (the
    planner's fit has no calibration anywhere): ``n_draws`` sets of scans drawn from the fit's own
    model at its estimate (``fit.model_image``) with Gaussian noise of its own noise model
    (``fit.noise_std``, the same pixels), each refitted by :func:`fit_scans_sqe` on ``material`` and
    ``bank`` (the ones the fit was made on) with the fit's arguments (``fit.fit_settings``: the
    stiffness search and the other FCs' prior included), and the refitted top 8 compared with the
    estimate in units of their σ: a :class:`~fcinv_widgets.analysis.refine.SigmaCheck`. What it
    measures and what it cannot are those of :func:`~fcinv_widgets.analysis.refine.check_fit_sigma`
    (a model wrong for the data, a truth far from the estimate). Seeded; on Dask with a ``scheduler``."""
    import time

    from ..dataset import run_tasks
    from .refine import MAX_SIGMA_CHECK_DRAWS, SigmaCheck, sigma_check_draws

    t0 = time.perf_counter()
    need_type(fit, ScanFit, "the scan fit (planner.fit_scans_sqe)")
    need_type(bank, HitsBank, "the hits bank (planner.hits_bank)")
    if fit.model_image is None or fit.noise_std is None or fit.fit_settings is None:
        raise FcinvError("this scan fit carries no model image, noise model and settings to refit with")
    n_draws = whole_number(n_draws, "the number of σ-check draws", 2, MAX_SIGMA_CHECK_DRAWS)
    seed = whole_number(seed, "the σ-check seed", 0, 2**32 - 1)
    kw = dict(fit.fit_settings)
    angles = kw.pop("angles_deg")
    calls = [((material, bank, d, angles), kw) for d in sigma_check_draws(fit, n_draws, seed)]
    fits = run_tasks(fit_scans_sqe, calls, "σ check: refit per draw", "fit", progress, scheduler)
    z = np.stack([(f.theta - fit.theta) / f.sigma for f in fits])
    return SigmaCheck(list(fit.names), z, seed, time.perf_counter() - t0)
