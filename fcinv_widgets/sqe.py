"""Coherent one-phonon S(Q, E) from full force constants, and its folding onto the q-path.

Physics (per atom of sample, phonon creation, E ≥ 0)::

    S(Q, E) = Σ_ν  s_ν(Q) · [n(E_ν, T) + 1] · g(E; E_ν, σ(E_ν))                       [fm² / meV]
    s_ν(Q)  = ħ²/(2 E_ν N_atom) · |Σ_κ b_κ / √m_κ · exp(−W_κ(Q)) · (Q · e*_κν) · exp(i G · r_κ)|²  [fm²]
    W_κ(Q)  = ½ Q · U_κ · Q,   U_κ = (1/N_q) Σ_{q,ν} ħ²/(2 m_κ E_qν) · coth(E_qν / 2k_BT) · e_κν e_κν†    [Å²]

* Q in Cartesian Å⁻¹; Q = G + q with q the reduced wave vector at which the dynamical
  matrix is diagonalised. The dynamical matrix follows phonopy's convention (phases from the
  atom positions), so only the lattice phase exp(i G·r_κ) remains; with Euphonic's
  convention (exp(iQ·r_κ), conj(e), eigenvectors relative to the cell origin) this gives the
  same |F|² to 1e-8 (checked in ``tests/test_sqe.py``; the sign of the phase matters in
  diamond, where the two atoms sit at ±(⅛,⅛,⅛)).
* b_κ: coherent scattering lengths in fm, every element from the ``periodictable`` neutron table
  (Ge 8.185, Nb 7.054), overridable per species; masses in amu; energies in meV;
  ħ²/2 = 2.09008 amu·Å²·meV, so s_ν is in fm² (= 10 mbarn), per atom like Euphonic's
  ``StructureFactor``.
* g: a unit-area Gaussian (per meV) evaluated at the energy-bin centres; σ is constant or the
  ARCS resolution σ(E; Ei) of :func:`fcinv_widgets.broadening.sigma_arcs` at the mode energy.
* Bose factor n + 1 = 1 / (1 − exp(−E/k_BT)); T = 0 gives 1. Modes below 0.01 meV are dropped
  (also from the Debye–Waller sum, as Euphonic's ``frequency_min``).

Folding (:func:`fold_points`): every q-bin centre q of the model's path is mapped by each
operation R of the crystal's point group (48 for the cubic presets; duplicates removed) and
translated into every Brillouin zone G with |G + R q| ≤ ``qmax``. Each such point Q = G + Rq
is one "equivalent"; a folded image is Σ data / Σ norm over the equivalents that cover a
(q, E) pixel (the pathSQE convention), NaN where none does.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from .errors import FcinvError
from .validate import MAX_B_COH_FM, MAX_TEMPERATURE_K, finite_number
from .units import HBAR2_OVER_2, KB_MEV  # noqa: F401  (HBAR2_OVER_2 re-exported)

#: coherent scattering lengths (fm) of the presets, Sears 1992 (periodictable gives the same)
B_COH_FM = {"Ge": 8.185, "Nb": 7.054}
#: modes below this energy (meV) carry no intensity and no Debye–Waller weight
E_MIN_MEV = 0.01
#: perpendicular integration half-width of every q-bin, conventional r.l.u. (pathSQE: ±0.05)
PERP_HALF_RLU = 0.05

#: Most equivalent points :func:`fold_geometry` builds (~200 bytes each through the S(Q,E)
#: pipeline, so ~6 GB): |Q| ≤ 11.5 Å⁻¹ (all ARCS reaches at Ei = 80 meV) folds 2.8 million Ge points,
#: 22 Å⁻¹ (Ei = 300 meV) 20 million; larger reaches are refused with the qmax that would fit.
MAX_FOLD_POINTS = 30_000_000


def small_mode() -> bool:
    """True when the environment variable FCINV_SMALL=1 asks for small default sizes."""
    return os.environ.get("FCINV_SMALL", "") not in ("", "0", "false", "False")


def bose_factor(energy_mev, temperature_k: float) -> np.ndarray:
    """n(E, T) + 1 for phonon creation at E > 0 (meV); 1 at T = 0."""
    temperature_k = finite_number(
        temperature_k, "temperature (K)", positive=False
    )  # a formula: any T ≥ 0 (1e5 K: classical limit)
    E = np.asarray(energy_mev, dtype=float)
    if temperature_k == 0:
        return np.ones_like(E)
    x = np.clip(E, 1e-12, None) / (KB_MEV * temperature_k)
    return 1.0 / -np.expm1(-x)


def coth_factor(energy_mev, temperature_k: float) -> np.ndarray:
    """coth(E / 2k_BT) = 2n + 1; 1 at T = 0."""
    temperature_k = finite_number(temperature_k, "temperature (K)", positive=False)  # as bose_factor
    if temperature_k == 0:
        return np.ones_like(np.asarray(energy_mev, float))
    return 1.0 / np.tanh(np.asarray(energy_mev, float) / (2 * KB_MEV * temperature_k))


def coherent_scattering_length_fm(symbol: str) -> float:
    """Bound coherent scattering length b_c (fm, natural isotope mix) of an element, from the
    ``periodictable`` package's neutron table (Sears 1992 with later updates; real part for
    absorbing nuclei such as B, Cd, Gd)."""
    import periodictable

    try:
        el = periodictable.elements.symbol(str(symbol))
    except ValueError:
        raise FcinvError(f"unknown chemical symbol {symbol!r} (no coherent scattering length)") from None
    b = getattr(el.neutron, "b_c", None)
    if b is None or not np.isfinite(b):
        raise FcinvError(f"no tabulated coherent scattering length for {symbol!r}; give one, e.g. --b-coh {symbol}=5.0 (fm)")
    return float(b)


def scattering_lengths(symbols, b_coh=None) -> np.ndarray:
    """Coherent scattering lengths (fm) per atom: ``b_coh`` {symbol: fm} where given, else the
    ``periodictable`` table (:func:`coherent_scattering_length_fm`)."""
    b_coh = dict(b_coh or {})
    for k, v in b_coh.items():
        try:
            ok = np.isfinite(float(v))
        except (TypeError, ValueError):
            ok = False
        if not ok or abs(float(v)) > MAX_B_COH_FM:
            raise FcinvError(
                f"coherent scattering length for {k!r} must be a finite number of fm, |b| ≤ {MAX_B_COH_FM:g}, got {v!r}"
            )
    unknown = sorted(set(b_coh) - set(symbols))
    if unknown:
        raise FcinvError(
            f"scattering length given for {unknown[0]!r}, which is not in the structure ({', '.join(sorted(set(symbols)))})"
        )
    table = {s: float(b_coh[s]) if s in b_coh else coherent_scattering_length_fm(s) for s in set(symbols)}
    out = np.array([table[s] for s in symbols])
    if out.size and not np.any(out):
        raise FcinvError("every atom's coherent scattering length is 0 fm: there is no coherent one-phonon scattering")
    return out


class SQE:
    """One-phonon coherent S(Q, E) of a crystal with given force constants.

    Parameters
    ----------
    basis : FCBasis — crystal (primitive cell) and supercell.
    params : (n_params,) eV/Å² — reduced force constants (expanded with the basis; use
        ``basis.reduce(fc)`` for a FORCE_CONSTANTS file).
    temperature : K (Bose factor and Debye–Waller factor).
    b_coh : {symbol: fm} — overrides the tabulated coherent scattering lengths (periodictable).
    dw_mesh : Γ-centred mesh for the Debye–Waller factor, or None for no Debye–Waller factor.
    """

    def __init__(self, basis, params, temperature: float = 5.0, b_coh=None, dw_mesh=(8, 8, 8)):
        temperature = finite_number(temperature, "the sample temperature (K)", positive=False, maximum=MAX_TEMPERATURE_K)
        self.basis = basis
        self.crystal = basis.crystal
        self.params = basis._check_params(params).copy()
        self.temperature = float(temperature)
        self.b = scattering_lengths(self.crystal.symbols, b_coh)
        self.masses = self.crystal.masses
        self.n_atoms = self.crystal.n_atoms
        self.recip = self.crystal.reciprocal_lattice  # rows b_i, Å⁻¹
        self.dw_mesh = None if dw_mesh is None else tuple(int(n) for n in dw_mesh)
        self.U = self.debye_waller_u(self.dw_mesh) if dw_mesh is not None else np.zeros((self.n_atoms, 3, 3))

    # ------------------------------------------------------------------ phonons
    def dynamical_matrix(self, q_frac) -> np.ndarray:
        """D(q) (nq, 3n, 3n) in eV/Å²/amu, phonopy's convention; q in primitive fractional coordinates."""
        return self.basis.dynamical_matrix(self.params, q_frac)

    def modes(self, q_frac):
        """Energies (nq, 3n) meV (negative = imaginary) and eigenvectors (nq, n, 3, 3n)."""
        from .units import SQRT_EIG_TO_MEV

        lam, vec = np.linalg.eigh(self.dynamical_matrix(q_frac))
        e = np.sign(lam) * np.sqrt(np.abs(lam)) * SQRT_EIG_TO_MEV
        return e, vec.reshape(len(lam), self.n_atoms, 3, -1)

    def debye_waller_u(self, mesh) -> np.ndarray:
        """U_κ = ⟨u_κ u_κᵀ⟩ (n_atoms, 3, 3) in Å² over a Γ-centred ``mesh`` at this temperature."""
        mesh = np.asarray(mesh, int)
        g = np.stack(np.meshgrid(*[np.arange(m) for m in mesh], indexing="ij"), -1).reshape(-1, 3) / mesh
        e, vec = self.modes(g)
        ok = e > E_MIN_MEV
        w = np.where(ok, coth_factor(np.where(ok, e, 1.0), self.temperature) / np.where(ok, e, 1.0), 0.0)  # (nq, modes)
        U = np.einsum("qkam,qkbm,qm->kab", vec, np.conj(vec), w).real / len(g)
        return U * HBAR2_OVER_2 / self.masses[:, None, None]

    # ------------------------------------------------------------------ structure factors
    def _amplitudes(self, Q_cart, G_frac, energies, vec, bose: bool):
        """s_ν (fm²) [× (n+1)] for points Q (p, 3) with eigenvectors ``vec`` (p, n, 3, M) at Q − G."""
        Qe = np.einsum("pa,pkam->pkm", Q_cart, np.conj(vec))
        W = 0.5 * np.einsum("pa,kab,pb->pk", Q_cart, self.U, Q_cart)
        ph = np.exp(2j * np.pi * G_frac @ self.crystal.positions.T)  # (p, n)
        c = self.b / np.sqrt(self.masses)
        F = np.einsum("pkm,pk->pm", Qe, c[None] * np.exp(-W) * ph)
        ok = energies > E_MIN_MEV
        e = np.where(ok, energies, 1.0)
        s = np.where(ok, HBAR2_OVER_2 * np.abs(F) ** 2 / (e * self.n_atoms), 0.0)
        if bose:
            s = s * np.where(ok, bose_factor(e, self.temperature), 0.0)
        return s

    def structure_factor(self, Q_cart, bose: bool = False):
        """Mode energies (nQ, 3n) meV and one-phonon structure factors s_ν(Q) (nQ, 3n) fm² per atom.

        ``Q_cart`` (nQ, 3) Cartesian Å⁻¹. Without ``bose`` this is Euphonic's
        ``StructureFactor.structure_factors`` (there in mbarn = 0.1 fm²).
        """
        Q = np.atleast_2d(np.asarray(Q_cart, float))
        qf = Q @ self.crystal.lattice.T / (2 * np.pi)
        G = np.round(qf)
        e, vec = self.modes(qf - G)
        return e, self._amplitudes(Q, G, e, vec, bose)

    def sqe(self, Q_cart, energies_mev, sigma_mev: float = 1.0, ei_mev: float | None = None) -> np.ndarray:
        """S(Q, E) (nQ, nE) fm²/meV per atom at energy-bin centres ``energies_mev`` (Bose factor included)."""
        e, s = self.structure_factor(Q_cart, bose=True)
        G = gaussians(e, np.asarray(energies_mev, float), sigma_mev, ei_mev)  # (nQ, M, nE)
        return np.einsum("qm,qme->qe", s, G)


def mode_sigma(energies, sigma_mev: float = 1.0, ei_mev: float | None = None) -> np.ndarray:
    """Gaussian σ (meV) of each mode: constant, or the ARCS resolution at Ei for the mode energy."""
    if ei_mev is None:  # (a σ of 0 or NaN made NaN Gaussians without a word)
        return np.full(np.shape(energies), finite_number(sigma_mev, "sigma_mev (Gaussian σ, meV)", positive=True))
    from .broadening import sigma_arcs

    ei_mev = finite_number(ei_mev, "ei_mev (incident energy, meV)", positive=True)
    return sigma_arcs(np.clip(energies, None, 0.98 * ei_mev), ei_mev)


def gaussians(energies, centers, sigma_mev: float = 1.0, ei_mev: float | None = None) -> np.ndarray:
    """Unit-area Gaussians (per meV) of modes ``energies`` (..., M) at ``centers`` (nE,) → (..., M, nE)."""
    sig = mode_sigma(energies, sigma_mev, ei_mev)[..., None]
    d = (centers - np.asarray(energies)[..., None]) / sig
    return np.exp(-0.5 * d * d) / (math.sqrt(2 * math.pi) * sig)


# ---------------------------------------------------------------------------- folding
def _spglib_symmetry(lattice, positions, numbers) -> dict:
    import spglib

    try:
        ds = spglib.get_symmetry((lattice, positions, numbers), symprec=1e-5)
    except Exception as exc:  # noqa: BLE001 — spglib raises its own C++ error types on odd cells
        raise FcinvError(f"spglib could not find the symmetry of this structure ({exc})") from None
    if ds is None:
        raise FcinvError("spglib found no symmetry operations for this structure")
    return ds


def centring_translations(crystal) -> np.ndarray:
    """(k, 3) fractional translations other than 0 that map the structure onto itself: the lattice
    points of the crystal's primitive lattice inside a conventional, centred or super cell given as
    the cell (empty for a primitive cell). A reciprocal vector hkl of the cell is one of the
    crystal's only where hkl · t is a whole number for each of them."""
    ds = _spglib_symmetry(crystal.lattice, crystal.positions, crystal.numbers)
    pure = np.all(ds["rotations"] == np.eye(3, dtype=int), axis=(1, 2))
    t = np.asarray(ds["translations"], float)[pure]
    t = t - np.round(t)
    return t[np.abs(t).max(axis=1) > 1e-6] if len(t) else t.reshape(0, 3)


def point_group_cartesian(crystal) -> np.ndarray:
    """Distinct Cartesian rotations (n_ops, 3, 3) of the crystal's point group (spglib) — read on
    the primitive cell when the cell given is not one (a cubic crystal given as a 2 × 1 × 1 cell
    has a tetragonal lattice, whose operations alone missed the cubic equivalents)."""
    L, pos, num = np.asarray(crystal.lattice, float), crystal.positions, crystal.numbers
    if len(centring_translations(crystal)):
        import spglib

        cell: Any = (L, pos, num)  # (spglib's annotations ask for sequences; it takes arrays)
        prim = spglib.standardize_cell(cell, to_primitive=True, no_idealize=True, symprec=1e-5)
        if prim is not None:  # (no_idealize: the primitive cell in the given Cartesian frame)
            L, pos, num = (np.asarray(x) for x in prim)
            L = L.astype(float)
    ds = _spglib_symmetry(L, pos, num)
    R = np.einsum("ij,gjk,lk->gil", L.T, ds["rotations"].astype(float), np.linalg.inv(L))
    _, idx = np.unique(np.round(R, 6).reshape(len(R), -1), axis=0, return_index=True)
    return R[np.sort(idx)]


@dataclass(frozen=True)
class FoldPoints:
    """All equivalents Q = G + R q of the path's q-bins within |Q| ≤ qmax.

    Attributes (p = number of points, j = distinct reduced wave vectors R q)
    ---------------------------------------------------------------------------
    Q        (p, 3) float64 Cartesian Å⁻¹ (sample frame); ``G`` (p, 3) its reciprocal lattice vector (hkl)
    qbin     (p,) int — the path bin each point belongs to (points are sorted by it)
    iq       (p,) int — index into ``q_frac``/``energies`` of its reduced wave vector R q
    upar     (p, 3) unit vector along the (rotated) path segment
    h_par    (p,) half bin length along the segment (Å⁻¹); ``h_perp`` scalar half-width across (Å⁻¹)
    q_frac   (j, 3) reduced wave vectors (primitive fractional); ``energies`` (j, M) meV
    amp      (p, M) s_ν (n + 1) in fm² per atom (set by :func:`fold_points`)
    n_bins   number of path q-bins
    Q32, upar32, h_par32: float32 copies for the per-orientation kernels (made once, on first use)
    """

    Q: np.ndarray
    qbin: np.ndarray
    iq: np.ndarray
    upar: np.ndarray
    h_par: np.ndarray
    h_perp: float
    q_frac: np.ndarray
    energies: np.ndarray | None
    amp: np.ndarray | None
    n_bins: int
    G: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.Q)

    @cached_property
    def Q32(self) -> np.ndarray:
        return self.Q.astype(np.float32)

    @cached_property
    def upar32(self) -> np.ndarray:
        return self.upar.astype(np.float32)

    @cached_property
    def h_par32(self) -> np.ndarray:
        return self.h_par.astype(np.float32)


def fold_points(calc: SQE, grid, qmax: float, conventional_a: float, chunk: int = 100_000) -> FoldPoints:
    """Equivalent points of every path q-bin within |Q| ≤ ``qmax`` (Å⁻¹), with their amplitudes."""
    pts = fold_geometry(calc.crystal, grid, qmax, conventional_a)
    energies, vec = calc.modes(pts.q_frac)
    Q, G, iq = pts.Q, pts.G, pts.iq
    assert G is not None  # fold_geometry always sets the reciprocal-lattice vectors
    amp = np.empty((len(Q), energies.shape[1]), np.float32)
    for s in range(0, len(Q), chunk):
        sl = slice(s, s + chunk)
        amp[sl] = calc._amplitudes(Q[sl], G[sl], energies[iq[sl]], vec[iq[sl]], bose=True)
    return replace(pts, energies=energies, amp=amp)


#: the largest |Q| range (Å⁻¹) a fold is asked for (the point-count check refuses far less; 1e300
#: overflowed its estimate)
MAX_QMAX = 1000.0


def fold_geometry(cr, grid, qmax: float, conventional_a: float) -> FoldPoints:
    """The equivalent points of :func:`fold_points` without modes or amplitudes (needs no force
    constants): ``Q``, ``G`` (hkl), ``qbin``, ``iq``, ``upar``, ``h_par``, ``h_perp``, ``q_frac``."""
    qmax = finite_number(qmax, "qmax (Å⁻¹)", positive=True, maximum=MAX_QMAX)
    recip = cr.reciprocal_lattice
    R = point_group_cartesian(cr)
    qcart = grid.q.qpoints @ recip  # (nq, 3)
    # segment directions and half lengths, from the conventional → primitive map of the path
    P = (
        np.linalg.lstsq(grid.q.conventional_qpoints, grid.q.qpoints, rcond=None)[0]
        if np.abs(grid.q.conventional_qpoints).sum()
        else np.eye(3)
    )
    dirs, hpar = [], []
    for s in grid.q.segments:
        d = (np.asarray(s.end_q, float) - np.asarray(s.start_q, float)) @ P @ recip
        dirs.append(np.repeat((d / np.linalg.norm(d))[None], s.n_bins, 0))
        hpar.append(np.full(s.n_bins, 0.5 * np.linalg.norm(d) / s.n_bins))
    dirs_a, hpar_a = np.concatenate(dirs), np.concatenate(hpar)
    # distinct images R q per bin (with their rotated segment directions)
    rq = np.einsum("gab,qb->qga", R, qcart)  # (nq, g, 3)
    ru = np.einsum("gab,qb->qga", R, dirs_a)
    lq: list = []
    lu: list = []
    lb: list = []
    for b in range(len(qcart)):
        _, idx = np.unique(np.round(rq[b], 6), axis=0, return_index=True)
        idx = np.sort(idx)
        lq.append(rq[b, idx])
        lu.append(ru[b, idx])
        lb.append(np.full(len(idx), b))
    img_q, img_u, img_bin = np.concatenate(lq), np.concatenate(lu), np.concatenate(lb)
    q_frac = img_q @ cr.lattice.T / (2 * np.pi)
    # refuse before allocating: (images) × (reciprocal-lattice points in the |Q| ≤ qmax sphere)
    n_est = len(img_q) * (4.0 / 3.0 * np.pi * qmax**3) / abs(np.linalg.det(recip))
    if n_est > MAX_FOLD_POINTS:
        q_ok = qmax * (MAX_FOLD_POINTS / n_est) ** (1.0 / 3.0)
        raise FcinvError(
            f"folding every |Q| ≤ {qmax:.1f} Å⁻¹ needs ~{n_est / 1e6:.0f} million points (~{n_est * 200 / 1e9:.0f} GB of "
            f"memory; at most {MAX_FOLD_POINTS / 1e6:.0f} million): ask for a smaller qmax (≤ {q_ok:.1f} Å⁻¹, --qmax) "
            "or a lower Ei"
        )
    # reciprocal lattice vectors within reach
    qrmax = qmax + np.linalg.norm(img_q, axis=1).max()
    nmax = np.ceil(qrmax * np.linalg.norm(cr.lattice, axis=1) / (2 * np.pi)).astype(int) + 1
    hkl = np.stack(np.meshgrid(*[np.arange(-n, n + 1) for n in nmax], indexing="ij"), -1).reshape(-1, 3)
    Gc = hkl @ recip
    keep = np.linalg.norm(Gc, axis=1) <= qrmax
    # only the crystal's own reciprocal vectors: for a conventional, centred or super cell the
    # cell's hkl include vectors that are not (fcc's mixed parities), which folded X onto Γ — 74 %
    # of conventional Cu's points and an acoustic peak in the X bin (session 47, a crystal probe)
    t = centring_translations(cr)
    if len(t):
        ph = hkl @ t.T
        keep &= np.all(np.abs(ph - np.round(ph)) < 1e-6, axis=1)
    hkl, Gc = hkl[keep], Gc[keep]
    Qs, iqs, Gs = [], [], []
    for j in range(len(img_q)):
        Q = Gc + img_q[j]
        ok = np.linalg.norm(Q, axis=1) <= qmax
        Qs.append(Q[ok])
        Gs.append(hkl[ok])
        iqs.append(np.full(int(ok.sum()), j))
    Q, G, iq = np.concatenate(Qs), np.concatenate(Gs).astype(float), np.concatenate(iqs)
    if len(Q) == 0:
        raise FcinvError(f"no Q point of the path lies within |Q| ≤ {qmax:g} Å⁻¹")
    order = np.argsort(img_bin[iq], kind="stable")
    Q, G, iq = Q[order], G[order], iq[order]
    return FoldPoints(
        Q=Q,
        G=G,
        qbin=img_bin[iq],
        iq=iq,
        upar=img_u[iq],
        h_par=hpar_a[img_bin[iq]],
        h_perp=PERP_HALF_RLU * 2 * np.pi / conventional_a,
        q_frac=q_frac,
        energies=None,
        amp=None,
        n_bins=len(qcart),
    )


def fold_full(
    points: FoldPoints,
    grid,
    sigma_mev: float = 1.0,
    ei_mev: float | None = None,
    angle_max_deg: float = 135.0,
    angle_min_deg: float = 0.0,
    chunk: int = 20_000,
    coverage_ei_mev: float | None = None,
):
    """Folded S(q, E) (nq, nE) over all equivalents: Σ S / Σ norm per pixel, NaN where none.

    Without ``ei_mev`` every equivalent covers every energy (ideal coverage, constant σ).
    With ``ei_mev`` the ARCS resolution is used and an equivalent covers an energy bin only
    where (|Q|, E) is kinematically reachable with a scattering angle between
    ``angle_min_deg`` and ``angle_max_deg`` (all sample orientations) — at ``coverage_ei_mev``
    when given (a diagnostic: the resolution of one Ei with the coverage of another), else at ``ei_mev``.
    Returns (image, norm) with ``norm`` the number of equivalents per pixel.
    """
    centers = grid.e.centers
    nq, nE = grid.shape
    if points.energies is None or points.amp is None:
        raise FcinvError("fold_full needs fold points with modes and amplitudes (fold_points, not fold_geometry)")
    Gt = gaussians(points.energies, centers, sigma_mev, ei_mev).astype(np.float32)  # (j, M, nE)
    if ei_mev is None:
        # every point covers every bin: sum amplitudes per reduced wave vector first
        A = np.zeros((len(points.q_frac), points.amp.shape[1]))
        np.add.at(A, points.iq, points.amp)
        per_j = np.einsum("jm,jme->je", A, Gt)
        jbin = np.zeros(len(points.q_frac), int)
        jbin[points.iq] = points.qbin
        data = np.zeros((nq, nE))
        np.add.at(data, jbin, per_j)
        norm = np.bincount(points.qbin, minlength=nq).astype(float)[:, None] * np.ones(nE)
    else:
        from .validate import finite_number

        ei_kin = ei_mev if coverage_ei_mev is None else finite_number(coverage_ei_mev, "coverage_ei_mev (meV)", positive=True)
        qlo, qhi = kinematic_q_range(ei_kin, centers, angle_min_deg, angle_max_deg)
        qabs = np.linalg.norm(points.Q, axis=1)
        data = np.zeros((nq, nE))
        norm = np.zeros((nq, nE))
        for s in range(0, points.n, chunk):
            sl = slice(s, s + chunk)
            m = (qabs[sl, None] >= qlo) & (qabs[sl, None] <= qhi) & (centers < ei_kin)
            S = np.einsum("pm,pme->pe", points.amp[sl], Gt[points.iq[sl]]) * m
            _segment_add(data, points.qbin[sl], S)
            _segment_add(norm, points.qbin[sl], m.astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        img = np.where(norm > 0, data / np.where(norm > 0, norm, 1), np.nan)
    return img, norm


def kinematic_q_range(ei_mev: float, energies_mev, angle_min_deg: float = 0.0, angle_max_deg: float = 135.0):
    """|Q| range (Å⁻¹) reachable at energy transfers ``energies_mev`` with incident energy ``ei_mev``
    and scattering angles between the two limits: (qlo, qhi), same shape as ``energies_mev``."""
    from .units import NEUTRON_E_TO_K2

    ei_mev = finite_number(ei_mev, "ei_mev (incident energy, meV)", positive=True)
    angle_min_deg = finite_number(angle_min_deg, "angle_min_deg (scattering angle, degrees)")
    angle_max_deg = finite_number(angle_max_deg, "angle_max_deg (scattering angle, degrees)")
    ki = math.sqrt(ei_mev * NEUTRON_E_TO_K2)
    kf = np.sqrt(np.clip(ei_mev - np.asarray(energies_mev, float), 0, None) * NEUTRON_E_TO_K2)
    # clipped at 0: at E → 0 and a zero angle the difference of squares rounds to just below 0
    qlo = np.sqrt(np.clip(ki**2 + kf**2 - 2 * ki * kf * math.cos(math.radians(angle_min_deg)), 0, None))
    qhi = np.sqrt(np.clip(ki**2 + kf**2 - 2 * ki * kf * math.cos(math.radians(angle_max_deg)), 0, None))
    return qlo, qhi


def folded_mode_weights(
    calc: SQE | None,
    points: FoldPoints,
    grid,
    ei_mev: float | None = None,
    angle_min_deg: float = 0.0,
    angle_max_deg: float = 135.0,
    hits=None,
    chunk: int = 65_536,
    amplitudes: np.ndarray | None = None,
) -> np.ndarray:
    """Folded one-phonon weight of every mode in every pixel: (n_bins, 3n, nE) fm² per atom,
    modes in ascending energy per bin (as :meth:`SQE.modes` sorts them).

    W_ν(b, E) is the mean, over the equivalents Q = G + R q of bin b that cover energy bin E,
    of ħ²|F_ν(Q)|² / (2 n_atoms) — the structure factor :meth:`SQE.structure_factor` returns
    times the mode energy, i.e. without the 1/E and the Bose factor. Coverage: every point at
    every energy without ``ei_mev``; with it, the kinematic |Q| range at E (as :func:`fold_full`
    counts it); with ``hits``, single-orientation scans: a list of (sel, ilo, ihi) per
    orientation (``scans._orientation_hits``: the points the detector sees and the first/last
    energy bin each covers), summed over the orientations. The folded S(q, E) those
    simulations make is then exactly Σ_ν W_ν(b, E) (n(E_ν)+1)/E_ν G(E − E_ν), which
    ``ForwardModel.with_sqe_weights`` renders. Where nothing covers a pixel (not measured), the
    mean over all of the bin's equivalents.

    ``amplitudes``: :func:`mode_amplitudes` of ``calc`` and ``points``, when already computed —
    they do not depend on the coverage, so many Ei values or orientations at one temperature need
    them once (the eigen-solve and structure factors are most of the cost); ``calc`` may then be None.
    """
    if points.G is None:
        raise FcinvError("folded_mode_weights needs fold points with reciprocal-lattice vectors (fold_geometry)")
    if amplitudes is None:
        if calc is None:
            raise FcinvError("folded_mode_weights needs the SQE calculator or its mode amplitudes")
        amp_all = mode_amplitudes(calc, points, chunk)
    else:
        amp_all = np.asarray(amplitudes, float)
    if amp_all.ndim != 2 or len(amp_all) != points.n:
        raise FcinvError(f"mode amplitudes must be (n_points = {points.n}, modes), got {amp_all.shape}")
    nb, M, nE = points.n_bins, amp_all.shape[1], grid.shape[1]
    centers = np.asarray(grid.e.centers, float)
    num, den = np.zeros((nb, M, nE)), np.zeros((nb, nE))
    alls = np.zeros((nb, M))
    _segment_add(alls, points.qbin, amp_all)
    if hits is None:
        # kinematic coverage depends on |Q| only: within a bin, the points covering energy E are a
        # contiguous run of the |Q|-sorted points, so prefix sums give every pixel at once
        if ei_mev is None:
            qlo, qhi, ok_e = np.full(nE, -np.inf), np.full(nE, np.inf), np.ones(nE, bool)
        else:
            qlo, qhi = kinematic_q_range(ei_mev, centers, angle_min_deg, angle_max_deg)
            ok_e = centers < ei_mev
        qa = np.linalg.norm(points.Q, axis=1)
        order = np.lexsort((qa, points.qbin))
        cum = np.vstack([np.zeros((1, M)), np.cumsum(amp_all[order], axis=0)])
        bounds = np.searchsorted(points.qbin[order], np.arange(nb + 1))
        for b in range(nb):
            s0, s1 = bounds[b], bounds[b + 1]
            qs = qa[order[s0:s1]]
            lo = s0 + np.searchsorted(qs, qlo, "left")
            hi = s0 + np.searchsorted(qs, qhi, "right")
            hi = np.where(ok_e, np.maximum(hi, lo), lo)
            num[b] = (cum[hi] - cum[lo]).T
            den[b] = hi - lo
    if hits is not None:
        num_em = num.transpose(0, 2, 1)  # a view (nb, nE, M): accumulate into num through it
        for sel, ilo, ihi in hits:
            sel = np.asarray(sel)
            if len(sel) == 0:
                continue
            amp, b = amp_all[sel], points.qbin[sel]
            ilo, ihi = np.asarray(ilo), np.asarray(ihi)
            for k in range(int((ihi - ilo).max()) + 1):
                m = ilo + k <= ihi
                if not m.any():
                    break
                idx = ilo[m] + k
                np.add.at(num_em, (b[m], idx), amp[m])
                np.add.at(den, (b[m], idx), 1.0)
    n_all = np.bincount(points.qbin, minlength=nb).astype(float)[:, None]
    mean_all = alls / np.maximum(n_all, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den[:, None, :] > 0, num / np.where(den > 0, den, 1.0)[:, None, :], mean_all[:, :, None])


def mode_amplitudes(calc: SQE, points: FoldPoints, chunk: int = 65_536) -> np.ndarray:
    """(n_points, 3n) the summand of :func:`folded_mode_weights` for every fold point and mode:
    ħ²|F_ν(Q)|²/(2 n_atoms) (fm²) with ``calc``'s Debye–Waller factor, modes ascending in energy,
    0 for modes at or below :data:`E_MIN_MEV`. Independent of Ei and orientations: one eigen-solve
    per temperature serves every coverage (pass it as ``amplitudes=``)."""
    if points.G is None:
        raise FcinvError("mode amplitudes need fold points with reciprocal-lattice vectors (fold_geometry)")
    energies, vec = calc.modes(points.q_frac)
    out = np.empty((points.n, energies.shape[1]))
    for s in range(0, points.n, chunk):
        sel = np.arange(s, min(s + chunk, points.n))
        e = energies[points.iq[sel]]
        amp = calc._amplitudes(points.Q[sel], points.G[sel], e, vec[points.iq[sel]], bose=False)
        out[sel] = amp * np.where(e > E_MIN_MEV, e, 0.0)
    return out


def _segment_add(out, keys, values) -> None:
    """out[keys[i]] += values[i] for ``keys`` sorted ascending (contiguous runs), fast."""
    if len(keys) == 0:
        return
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    out[keys[starts]] += np.add.reduceat(values, starts, axis=0)
