"""The fast forward model: force-constant parameters (eV/Å²) → frequencies (meV) → I(q, E).

The dynamical matrix is linear in the parameters, D(q; θ) = Σ_p θ_p D_p(q). Everything
that does not depend on θ is done once at construction:

1. D_p(q) for every basis parameter at every q of the path (and of a coarse mesh used
   for the stability check);
2. at every q, the symmetry block decomposition (:mod:`fcinv_widgets.blocks`), so that
   D(q; θ) splits into 1×1, 2×2, 3×3 … blocks valid for all θ;
3. the block entries of the inactive parameters (fixed at their reference values) are
   summed, the active ones stacked into one real matrix W.

A batch of parameter vectors is then one matrix product ``[1, θ] @ W``, closed-form
eigenvalues of the small Hermitian blocks, and a broadening step (compiled Gaussian
kernel on the CPU; dense Gaussians on CuPy/torch). The unpolarized intensity of the
paper: every mode is a unit-weight Gaussian in energy (no eigenvectors, Debye–Waller
or polarization factors).
"""

from __future__ import annotations

import math

import numpy as np

from .backend import Backend, get_backend
from .basis import FCBasis
from .blocks import decompose
from .broadening import gaussian_dense, sigma_arcs
from .errors import FcinvError
from .grid import SpectrumGrid
from .units import SQRT_EIG_TO_MEV
from .validate import MAX_TEMPERATURE_K, finite_number, real_array, whole_number

#: frequencies below this (meV) anywhere on the path or the mesh mark an unstable set
UNSTABLE_BELOW_MEV = -0.1
#: the largest constant Gaussian σ (meV) a forward model takes (wider than any energy grid here)
MAX_SIGMA_MEV = 1000.0
#: most Hermitian blocks per batched eigvalsh call: torch's CUDA solver (cusolverDnXsyevBatched,
#: torch 2.11 + CUDA 13 on an H200) failed on 100,000 4×4 blocks in one call
EIG_BATCH = 16384
#: most parameter sets per eigenvalue pass of ``min_energy`` on the GPU back-ends
GPU_CHUNK = 2048


def _pack(C: np.ndarray) -> np.ndarray:
    """(nb, m, m) Hermitian blocks → (nb, k) real entries in the closed-form layout."""
    m = C.shape[-1]
    if m == 1:
        return C[:, 0, 0].real[:, None]
    if m == 2:
        return np.stack([C[:, 0, 0].real, C[:, 1, 1].real, C[:, 0, 1].real, C[:, 0, 1].imag], axis=1)
    if m == 3:
        return np.stack(
            [
                C[:, 0, 0].real,
                C[:, 1, 1].real,
                C[:, 2, 2].real,
                C[:, 0, 1].real,
                C[:, 0, 1].imag,
                C[:, 0, 2].real,
                C[:, 0, 2].imag,
                C[:, 1, 2].real,
                C[:, 1, 2].imag,
            ],
            axis=1,
        )
    return np.concatenate([C.real.reshape(len(C), -1), C.imag.reshape(len(C), -1)], axis=1)


def _eig_closed(xp, X, m: int):
    """Eigenvalues (ascending) of packed Hermitian blocks X (N, nb, k) → (N, nb, m)."""
    if m == 1:
        return X
    if m == 2:
        a, d, br, bi = X[..., 0], X[..., 1], X[..., 2], X[..., 3]
        h = 0.5 * (a + d)
        r = xp.sqrt(0.25 * (a - d) ** 2 + br * br + bi * bi + 1e-300)
        return xp.stack([h - r, h + r], -1)
    if m == 3:
        a1, a2, a3 = X[..., 0], X[..., 1], X[..., 2]
        r12, i12, r13, i13, r23, i23 = (X[..., k] for k in range(3, 9))
        p1 = r12 * r12 + i12 * i12 + r13 * r13 + i13 * i13 + r23 * r23 + i23 * i23
        q = (a1 + a2 + a3) / 3.0
        b1, b2, b3 = a1 - q, a2 - q, a3 - q
        p2 = b1 * b1 + b2 * b2 + b3 * b3 + 2.0 * p1
        p = xp.sqrt(p2 / 6.0 + 1e-300)
        # det(A - qI) for a Hermitian 3×3
        xr = r12 * r23 - i12 * i23
        xi = r12 * i23 + i12 * r23
        det = (
            b1 * b2 * b3
            + 2.0 * (xr * r13 + xi * i13)
            - b1 * (r23 * r23 + i23 * i23)
            - b2 * (r13 * r13 + i13 * i13)
            - b3 * (r12 * r12 + i12 * i12)
        )
        r = xp.clip(det / (2.0 * p**3), -1.0 + 1e-15, 1.0 - 1e-15)
        phi = xp.arccos(r) / 3.0
        l1 = q + 2.0 * p * xp.cos(phi)
        l3 = q + 2.0 * p * xp.cos(phi + 2.0 * math.pi / 3.0)
        l2 = 3.0 * q - l1 - l3
        return xp.stack([l3, l2, l1], -1)
    # general Hermitian blocks: batched eigvalsh, at most EIG_BATCH matrices per call
    k = m * m
    H = X[..., :k].reshape(X.shape[:-1] + (m, m)) + 1j * X[..., k:].reshape(X.shape[:-1] + (m, m))
    n = math.prod(H.shape[:-2])
    if n <= EIG_BATCH:
        return xp.linalg.eigvalsh(H)
    flat = H.reshape(n, m, m)
    parts = [xp.linalg.eigvalsh(flat[s : s + EIG_BATCH]) for s in range(0, n, EIG_BATCH)]
    return (xp.cat(parts) if xp.__name__ == "torch" else xp.concatenate(parts)).reshape(H.shape[:-1])


class _BlockSet:
    """Precomputed blocks for a set of q-points: entries = [1, θ_active] @ W."""

    def __init__(self, Dp: np.ndarray, reference: np.ndarray, active: np.ndarray, rng):
        P, nq, n, _ = Dp.shape
        self.nq, self.n_modes = nq, n
        inactive = np.setdiff1d(np.arange(P), active)
        by_size: dict = {}
        for iq in range(nq):
            qb = decompose(Dp[:, iq], rng=rng)
            for C, mult in zip(qb.coeffs, qb.mult):
                by_size.setdefault(C.shape[-1], []).append((iq, mult, C))
        self.groups = []  # (m, W (1+A, nb*k), q (nb,), mult (nb,))
        slot_q, slot_w = [], []
        for m in sorted(by_size):
            items = by_size[m]
            C = np.stack([c for _, _, c in items], axis=1)  # (P, nb, m, m)
            fixed = np.tensordot(reference[inactive], C[inactive], axes=(0, 0))
            W = np.stack([_pack(fixed)] + [_pack(C[a]) for a in active])  # (1+A, nb, k)
            qidx = np.array([i for i, _, _ in items])
            mult = np.array([mu for _, mu, _ in items])
            self.groups.append((m, W.reshape(W.shape[0], -1), qidx, mult))
            slot_q.append(np.repeat(qidx, m))
            slot_w.append(np.repeat(mult, m).astype(float))
        self.slot_q = np.concatenate(slot_q)
        self.slot_w = np.concatenate(slot_w)
        # gather index (nq, n_modes) into the slots, repeating degenerate ones
        gather: list[list[int]] = [[] for _ in range(nq)]
        for s, (q, w) in enumerate(zip(self.slot_q, self.slot_w)):
            gather[q].extend([s] * int(w))
        if any(len(g) != n for g in gather):
            raise FcinvError("internal error: block decomposition lost modes")
        self.gather = np.array(gather)

    def to_backend(self, be: Backend, dtype):
        self._dev = [(m, be.asarray(W, dtype)) for m, W, _, _ in self.groups]

    def eigenvalues(self, be: Backend, theta_ext):
        """theta_ext (N, 1+A) → eigenvalues (N, S) of all slots (eV/Å²/amu)."""
        xp = be.xp
        out = []
        for m, W in self._dev:
            X = theta_ext @ W
            k = W.shape[1]
            nb = k // _pack_size(m)
            out.append(_eig_closed(xp, X.reshape(X.shape[0], nb, _pack_size(m)), m).reshape(X.shape[0], nb * m))
        return out[0] if len(out) == 1 else (xp.cat(out, 1) if be.name == "torch" else xp.concatenate(out, 1))


def _amin(be: Backend, x, axis):
    return x.amin(axis) if be.name == "torch" else x.min(axis)


def _pack_size(m: int) -> int:
    return {1: 1, 2: 4, 3: 9}.get(m, 2 * m * m)


def _to_mev(xp, lam):
    return xp.sign(lam) * xp.sqrt(xp.abs(lam)) * SQRT_EIG_TO_MEV


class ForwardModel:
    """Parameters → frequencies (meV) and I(q, E) images on a :class:`SpectrumGrid`.

    Parameters
    ----------
    basis : FCBasis
    grid : SpectrumGrid
    reference_params : (n_params,) eV/Å² — values of all parameters; the inactive ones stay fixed.
    active : sequence of int — indices of the varied parameters (the top-8), in θ order.
    sigma_mev : float — constant Gaussian σ (meV) of every mode; or
    resolution : ("arcs", Ei_meV) or a callable σ(E_meV) — energy-dependent σ instead.
    backend : "numpy" (default), "cupy", "torch" or "auto".
    mesh : 3 ints — Γ-centred mesh (irreducible points) checked for stability, or None.
    """

    #: (slot weights, temperature K) of a folded one-phonon S(q, E) model (see :meth:`with_sqe_weights`)
    _sqe: tuple | None = None

    def __init__(
        self,
        basis: FCBasis,
        grid: SpectrumGrid,
        reference_params,
        active,
        sigma_mev: float = 1.0,
        resolution=None,
        backend="numpy",
        mesh=(4, 4, 4),
        names=None,
        dtype=np.float64,
    ):
        self.basis = basis
        self.grid = grid
        self.reference = basis._check_params(reference_params).copy()
        self.active = np.asarray(active, dtype=int)
        if (
            self.active.ndim != 1
            or len(set(self.active.tolist())) != len(self.active)
            or np.any(self.active < 0)
            or np.any(self.active >= basis.n_params)
        ):
            raise FcinvError(f"active parameter indices must be distinct integers in [0, {basis.n_params}), got {active!r}")
        self.names = list(names) if names is not None else [basis.names[i] for i in self.active]
        self.dtype = dtype
        #: Gaussians are truncated at this many σ (the tail beyond is < 3.4e-4 of the peak)
        self.cutoff = 4.0
        self._set_resolution(sigma_mev, resolution)
        rng = np.random.default_rng(2024)
        self.path = _BlockSet(basis.dynamical_matrices(grid.q.qpoints), self.reference, self.active, rng)
        self.mesh_qpoints = _irreducible_mesh(basis, mesh) if mesh is not None else np.zeros((0, 3))
        self.mesh = (
            _BlockSet(basis.dynamical_matrices(self.mesh_qpoints), self.reference, self.active, rng)
            if len(self.mesh_qpoints)
            else None
        )
        self._cpu = _cpu_layout([self.path] + ([self.mesh] if self.mesh is not None else []))
        self.set_backend(backend)

    # ------------------------------------------------------------------ configuration
    def _set_resolution(self, sigma_mev, resolution):
        centers = self.grid.e.centers
        if resolution is None:
            sigma_mev = finite_number(sigma_mev, "sigma_mev (meV)", positive=True, maximum=MAX_SIGMA_MEV)
            self.sigma_table, self.sigma_e0, self.sigma_de = np.array([float(sigma_mev)]), 0.0, 1.0
            self.resolution = {"kind": "constant", "sigma_mev": float(sigma_mev)}
            return
        e = np.arange(centers[0] - 10.0, centers[-1] + 10.0, 0.05)
        if (
            isinstance(resolution, (tuple, list))
            and len(resolution) == 2
            and isinstance(resolution[0], str)
            and resolution[0] == "arcs"
        ):
            ei = finite_number(resolution[1], "the ARCS resolution's Ei (meV)", positive=True)
            sig = sigma_arcs(np.clip(e, None, 0.98 * ei), ei)
            self.resolution = {"kind": "arcs", "ei_mev": ei}
        elif callable(resolution):
            sig = np.asarray(resolution(e), dtype=float)
            self.resolution = {"kind": "callable"}
        else:
            raise FcinvError(f"resolution must be ('arcs', Ei_meV) or a callable σ(E), got {resolution!r}")
        if not np.all(np.isfinite(sig) & (sig > 0)):
            raise FcinvError("the resolution width must be positive and finite over the energy grid")
        self.sigma_table, self.sigma_e0, self.sigma_de = sig, float(e[0]), 0.05

    def _twin(self, new_sigma: bool = False) -> "ForwardModel":
        """A shallow copy with its own attribute dict (so setting an attribute leaves this model as it
        is) sharing the precomputed blocks; ``new_sigma``: without the CPU kernel's Gaussian tables,
        which depend on σ."""
        import copy

        twin = copy.copy(self)
        twin.__dict__ = dict(self.__dict__)
        if new_sigma:
            twin._cpu = {k: v for k, v in self._cpu.items() if k != "lut"}
        return twin

    def with_backend(self, backend) -> "ForwardModel":
        """A copy of this model on another backend ("numpy", "cupy", "torch", "auto"), sharing the
        precomputed blocks; this model is left unchanged. Returns ``self`` if already there."""
        import copy

        if get_backend(backend).name == self.backend.name:
            return self
        twin = self._twin()
        twin.path = copy.copy(self.path)
        twin.mesh = copy.copy(self.mesh) if self.mesh is not None else None
        twin.set_backend(backend)
        return twin

    def with_broadening(self, factor: float) -> "ForwardModel":
        """A copy whose Gaussian widths are ``factor`` × this model's (constant σ or σ(E) table),
        sharing the precomputed blocks; this model is left unchanged. Used to fit coarse-to-fine."""
        factor = finite_number(factor, "the broadening factor", positive=True)
        if factor == 1.0:
            return self
        twin = self._twin(new_sigma=True)
        twin.sigma_table = self.sigma_table * float(factor)
        twin.resolution = {**self.resolution, "broadening_factor": float(factor)}
        return twin

    def with_resolution(self, resolution=None, sigma_mev: float = 1.0) -> "ForwardModel":
        """A copy with another resolution — ``resolution`` as the constructor takes it (("arcs",
        Ei meV) or a callable σ(E) in meV), or a constant ``sigma_mev`` when None — sharing the
        precomputed blocks (and S(Q,E) weights, if any); this model is left unchanged. The same
        images as a model built with that resolution, without rebuilding the blocks."""
        twin = self._twin(new_sigma=True)
        twin._set_resolution(sigma_mev, resolution)
        return twin

    def slot_weights(self, theta, mode_weights) -> np.ndarray:
        """Per-slot weights (S,) or (S, nE) from per-mode weights ``mode_weights`` (nq, n_modes) or
        per pixel (nq, n_modes, nE), the modes in ascending energy per q-point as at ``theta`` (A,)
        — e.g. :func:`sqe.folded_mode_weights` at the full parameters of θ. Degenerate modes share a slot and their weights add up; unit
        mode weights give the slots' multiplicities."""
        w = np.asarray(mode_weights, dtype=float)
        g = self.path.gather
        if w.shape[:2] != g.shape or w.ndim not in (2, 3) or not np.all(np.isfinite(w)):
            raise FcinvError(f"mode weights must be finite, of shape {g.shape} (nq, n_modes) or (nq, n_modes, nE), got {w.shape}")
        om = self.backend.to_numpy(self.mode_energies(np.asarray(theta, float)))[0]
        order = np.argsort(om[g], axis=1, kind="stable")
        out = np.zeros((len(om),) + w.shape[2:])
        np.add.at(out, g[np.arange(g.shape[0])[:, None], order], w)
        return out

    def with_sqe_weights(self, slot_weights, temperature_k: float) -> "ForwardModel":
        """A copy that renders a folded one-phonon S(q, E) instead of unit-weight modes: slot s
        contributes w_s (n(E_s, T)+1)/E_s × Gaussian (modes at E ≤ 0.01 meV nothing), w_s one
        number per slot (S,) or one per slot and energy bin (S, nE); from
        :meth:`slot_weights` (fm² per atom for :func:`sqe.folded_mode_weights`). The weights are
        held fixed (evaluated at one θ: refit them as θ moves); the energies and the Bose factor
        follow θ, differentiably in torch. Always the dense path (NumPy too)."""
        sw = np.asarray(slot_weights, dtype=float)
        S, nE = self.path.slot_w.shape[0], self.grid.shape[1]
        if sw.shape not in ((S,), (S, nE)) or not np.all(np.isfinite(sw)) or np.any(sw < 0):
            raise FcinvError(f"slot weights must be finite values ≥ 0 of shape ({S},) or ({S}, {nE})")
        temperature_k = finite_number(temperature_k, "the sample temperature (K)", positive=False, maximum=MAX_TEMPERATURE_K)
        twin = self._twin()
        twin._sqe = (sw, float(temperature_k))
        twin.set_backend(self.backend.name)
        return twin

    def set_backend(self, backend) -> None:
        """Switch between "numpy", "cupy", "torch" (or "auto"); precomputed matrices move with it."""
        self.backend = get_backend(backend)
        be = self.backend
        dt = self.dtype
        self.path.to_backend(be, dt)
        if self.mesh is not None:
            self.mesh.to_backend(be, dt)
        self._centers = be.asarray(self.grid.e.centers, dt)
        self._slot_w = be.asarray(self.path.slot_w, dt)
        self._sqe_w = None if self._sqe is None else be.asarray(self._sqe[0], dt)
        self._onehot = None

    @property
    def n_active(self) -> int:
        return len(self.active)

    # ------------------------------------------------------------------ inputs
    def _theta_torch(self, theta):
        """θ (N, A) or (A,) as a torch tensor on the backend's device, with the leading 1 column."""
        import torch

        be = self.backend
        t = (
            theta
            if isinstance(theta, torch.Tensor)
            else torch.as_tensor(real_array(theta, "force-constant parameters θ (eV/Å²)"))
        )
        t = t.to(device=be.device, dtype=torch.float64 if self.dtype == np.float64 else torch.float32)
        if t.ndim == 1:
            t = t[None]
        if t.shape[-1] != self.n_active or t.ndim != 2:
            raise FcinvError(f"expected θ of shape (N, {self.n_active}) or ({self.n_active},), got {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise FcinvError("force-constant parameters contain NaN or inf")
        return torch.cat([torch.ones_like(t[:, :1]), t], 1)

    def _theta(self, theta):
        be = self.backend
        if be.name == "torch":
            return self._theta_torch(theta)
        if be.name == "cupy" and not isinstance(theta, np.ndarray) and hasattr(theta, "__cuda_array_interface__"):
            t = be.xp.asarray(theta, dtype=self.dtype)
            if t.ndim == 1:
                t = t[None]
            if not bool(be.xp.isfinite(t).all()):
                raise FcinvError("force-constant parameters contain NaN or inf")
        else:
            t = real_array(theta, "force-constant parameters θ (eV/Å²)")
            if t.ndim == 1:
                t = t[None]
            if t.ndim != 2 or t.shape[-1] != self.n_active:
                raise FcinvError(f"expected θ of shape (N, {self.n_active}) or ({self.n_active},), got {np.shape(theta)}")
            if not np.all(np.isfinite(t)):
                raise FcinvError("force-constant parameters contain NaN or inf")
            t = be.asarray(t, self.dtype)
        ones = be.xp.ones((t.shape[0], 1), dtype=t.dtype)
        return be.xp.concatenate([ones, t], 1)

    def full_params(self, theta) -> np.ndarray:
        """θ (N, A) → all parameters (N, n_params), the inactive ones at their reference values."""
        t = np.atleast_2d(np.asarray(theta, dtype=float))
        out = np.repeat(self.reference[None], len(t), axis=0)
        out[:, self.active] = t
        return out

    @property
    def reference_theta(self) -> np.ndarray:
        return self.reference[self.active].copy()

    # ------------------------------------------------------------------ physics
    def mode_energies(self, theta):
        """Per-slot energies (N, S) in meV on the path (each distinct mode once; see ``path.slot_w``)."""
        return _to_mev(self.backend.xp, self.path.eigenvalues(self.backend, self._theta(theta)))

    def frequencies(self, theta, sort: bool = True):
        """Phonon energies along the path: (N, nq, n_modes) meV (negative = imaginary)."""
        om = self.mode_energies(theta)
        be = self.backend
        g = self.path.gather
        out = om[:, be.asarray(g.reshape(-1), None) if be.name != "numpy" else g.reshape(-1)].reshape(om.shape[0], *g.shape)
        if sort:
            out = be.xp.sort(out, -1) if be.name != "torch" else be.xp.sort(out, -1).values
        return out

    def frequencies_thz(self, theta):
        from .units import MEV_TO_THZ

        return self.backend.to_numpy(self.frequencies(theta)) * MEV_TO_THZ

    def min_energy(self, theta):
        """Lowest mode energy (meV) over the path and the stability mesh, per parameter set: (N,)."""
        be = self.backend
        th = self._theta(theta)
        if be.name == "numpy":
            lo = np.empty(th.shape[0])
            self._run_cpu(th, np.empty((0,) + self.grid.shape, np.float32), lo, False)
            return lo
        parts = []
        for s in range(0, th.shape[0], GPU_CHUNK):
            t = th[s : s + GPU_CHUNK]
            lo = _amin(be, self.path.eigenvalues(be, t), 1)
            if self.mesh is not None:
                lo = be.xp.minimum(lo, _amin(be, self.mesh.eigenvalues(be, t), 1))
            parts.append(lo)
        lo = parts[0] if len(parts) == 1 else (be.xp.cat(parts) if be.name == "torch" else be.xp.concatenate(parts))
        return _to_mev(be.xp, lo)

    def is_stable(self, theta) -> np.ndarray:
        """True where no mode on the path or the mesh is below −0.1 meV: (N,) bool (NumPy)."""
        return self.backend.to_numpy(self.min_energy(theta)) >= UNSTABLE_BELOW_MEV

    def spectra(self, theta, normalize: bool = True, chunk: int = 2048, return_stable: bool = False, out=None, dtype=None):
        """I(q, E) images (N, nq, nE), float32 unless asked otherwise.

        ``normalize``: min-max scale every image to [0, 1] (the models' input convention);
        otherwise intensities are densities per meV summed over modes. With
        ``return_stable`` also returns the (N,) stability flags from the same eigenvalues.
        NumPy: compiled Gaussian kernel, in parallel over spectra; CuPy/torch: dense Gaussians
        (differentiable in torch).

        ``dtype``: ``np.float32`` (default) or ``np.uint8`` (a quarter of the memory:
        ``round(255·I)``, only with ``normalize``, so I ≈ q/255 to ±1/510; quantised in the
        kernel's last pass). ``out`` (NumPy back-end): a C-contiguous
        (N, nq, nE) array of that dtype to fill and return instead of allocating one — reusing
        a buffer skips the first touch of fresh memory, which dominates one large call. The
        float32 images are the same bits whichever way they are requested.
        """
        be = self.backend
        chunk = whole_number(chunk, "chunk (parameter sets per pass)")
        th = self._theta(theta)
        N = th.shape[0]
        nq, nE = self.grid.shape
        dt = _output_dtype(dtype, out, normalize)
        if be.name == "numpy" and self._sqe_w is None:
            if out is None:
                check_allocation(N * nq * nE * dt.itemsize, f"{N:,} images of {nq}×{nE} {dt.name}")
                out = np.empty((N, nq, nE), dtype=dt)
            else:
                _check_out(out, (N, nq, nE), dt)
            lo = np.empty(N)
            if dt == np.float32:
                for s in range(0, N, chunk):
                    self._run_cpu(th[s : s + chunk], out[s : s + chunk], lo[s : s + chunk], normalize)
            else:
                # each image in a float32 scratch, quantised in the kernel's final pass
                for s in range(0, N, chunk):
                    self._run_cpu(th[s : s + chunk], None, lo[s : s + chunk], normalize, out[s : s + chunk], 1)
            stable = lo >= UNSTABLE_BELOW_MEV
            return (out, stable) if return_stable else out
        if out is not None:
            raise FcinvError(f"out= is supported on the numpy back-end only (this model runs on {be.name})")
        # dense path (CuPy, torch)
        xp = be.xp
        res = []
        for s in range(0, N, chunk):
            t = th[s : s + chunk]
            om = _to_mev(xp, self.path.eigenvalues(be, t))
            sig = self._sigma_of(om)
            if self._sqe_w is None:
                G = gaussian_dense(xp, om, self._slot_w, self._centers, sig)  # (n, S, nE)
            else:
                W = self._sqe_w if self._sqe_w.ndim == 2 else self._sqe_w[:, None]
                G = gaussian_dense(xp, om, xp.ones_like(self._slot_w), self._centers, sig) * (
                    self._one_phonon_weights(om)[..., None] * W
                )
            img = self._scatter_q(G)
            if normalize:
                flat = img.reshape(img.shape[0], -1)
                lo = _amin(be, flat, 1)[:, None]
                hi = -_amin(be, -flat, 1)[:, None]
                img = ((flat - lo) / (hi - lo + 1e-30)).reshape(img.shape)
            res.append(img)
        img = res[0] if len(res) == 1 else (xp.cat(res) if be.name == "torch" else xp.concatenate(res))
        img = img.float() if be.name == "torch" else img.astype(xp.float32)
        if dt == np.uint8:
            img = xp.clip(xp.floor(img * 255.0 + 0.5), 0, 255)
            img = img.to(xp.uint8) if be.name == "torch" else img.astype(xp.uint8)
        if return_stable:
            return img, self.is_stable(theta)
        return img

    def iter_spectra(self, theta, chunk: int = 1024, normalize: bool = True):
        """Stream images in chunks: yields (start, images (n, nq, nE) float32, stable (n,)).

        On the CPU the same buffer is reused for every chunk (copy what you keep), so a batch
        of any size runs in constant memory.
        """
        chunk = whole_number(chunk, "chunk (parameter sets per pass)")
        th = self._theta(theta)
        N = th.shape[0]
        if self.backend.name != "numpy":
            for s in range(0, N, chunk):
                img, st = self.spectra(theta[s : s + chunk], normalize=normalize, return_stable=True)
                yield s, img, st
            return
        buf = np.empty((min(chunk, N),) + self.grid.shape, dtype=np.float32)
        lo = np.empty(min(chunk, N))
        for s in range(0, N, chunk):
            n = min(chunk, N - s)
            self._run_cpu(th[s : s + n], buf[:n], lo[:n], normalize)
            yield s, buf[:n], lo[:n] >= UNSTABLE_BELOW_MEV

    def _run_cpu(self, th, out, lo, normalize, qout=None, qmode=0):
        from ._cpu_kernel import forward_kernel
        from .units import SQRT_EIG_TO_MEV

        c = self._cpu
        if "lut" not in c:
            from ._cpu_kernel import gaussian_luts

            c["lut"] = (
                gaussian_luts(float(self.sigma_table[0]), float(self.grid.e.step), self.cutoff)
                if len(self.sigma_table) == 1
                else (np.zeros((0, 0)), np.zeros(0))
            )
        forward_kernel(
            np.ascontiguousarray(th, dtype=np.float64),
            c["W"],
            c["m"],
            c["off"],
            c["k"],
            c["q"],
            c["w"],
            SQRT_EIG_TO_MEV,
            float(self.grid.e.centers[0]),
            float(self.grid.e.step),
            self.sigma_table,
            self.sigma_e0,
            self.sigma_de,
            self.cutoff,
            normalize,
            out if out is not None else np.empty((0,) + self.grid.shape, np.float32),
            lo,
            c["lut"][0],
            c["lut"][1],
            qout if qout is not None else _NO_QOUT,
            qmode,
        )

    def _one_phonon_weights(self, om):
        """(n, S) (n(E)+1)/E of the slots at energies ``om`` (meV); 0 at E ≤ 0.01 meV."""
        from .sqe import E_MIN_MEV
        from .units import KB_MEV

        xp = self.backend.xp
        assert self._sqe is not None
        T = self._sqe[1]
        ok = om > E_MIN_MEV
        e = xp.where(ok, om, xp.ones_like(om))
        n1 = 1.0 / (1.0 - xp.exp(-e / (KB_MEV * T))) if T > 0 else xp.ones_like(e)
        return xp.where(ok, n1 / e, xp.zeros_like(e))

    def _sigma_of(self, om):
        if len(self.sigma_table) == 1:
            return float(self.sigma_table[0])
        be = self.backend
        e = be.to_numpy(om)
        sig = np.interp(e, self.sigma_e0 + self.sigma_de * np.arange(len(self.sigma_table)), self.sigma_table)
        return be.asarray(sig, self.dtype)

    def _scatter_q(self, G):
        """(n, S, nE) per-slot Gaussians → (n, nq, nE) by summing slots of the same q."""
        be = self.backend
        if self._onehot is None:
            oh = np.zeros((self.grid.shape[0], len(self.path.slot_q)))
            oh[self.path.slot_q, np.arange(len(self.path.slot_q))] = 1.0
            self._onehot = be.asarray(oh, self.dtype)
        return be.xp.matmul(self._onehot, G)


#: placeholder for the kernel's quantised output when float32 images are asked for
_NO_QOUT = np.empty((0, 0, 0), dtype=np.uint8)
_OUTPUT_DTYPES = (np.float32, np.uint8)


def _output_dtype(dtype, out, normalize) -> np.dtype:
    if dtype is None:
        dtype = out.dtype if isinstance(out, np.ndarray) else np.float32
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise FcinvError(f"dtype must be float32 or uint8, got {dtype!r}") from None
    if dt not in [np.dtype(d) for d in _OUTPUT_DTYPES]:
        raise FcinvError(f"dtype must be float32 or uint8, got {dt.name}")
    if dt == np.uint8 and not normalize:
        raise FcinvError("uint8 images need normalize=True (they quantise the [0, 1] scale)")
    return dt


def _check_out(out, shape, dt) -> None:
    if not isinstance(out, np.ndarray):
        raise FcinvError(f"out must be a NumPy array, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dt:
        raise FcinvError(f"out must have shape {shape} and dtype {dt.name}, got {out.shape} {out.dtype.name}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise FcinvError("out must be a writeable, C-contiguous array")


def available_memory_bytes() -> int | None:
    """Memory the system can still give this process (MemAvailable on Linux), or None if unknown."""
    import os

    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_allocation(nbytes: int, what: str) -> None:
    """Refuse (FcinvError) an allocation larger than 90 % of the available memory, before making it."""
    avail = available_memory_bytes()
    if avail is not None and nbytes > 0.9 * avail:
        raise FcinvError(
            f"{what} need {nbytes / 2**30:,.2f} GiB but only {avail / 2**30:,.2f} GiB of memory is available; "
            "use a smaller batch or stream them (iter_spectra)"
        )


def _cpu_layout(sets) -> dict:
    """Concatenate the blocks of several block sets for the fused CPU kernel.

    The first set's blocks are splatted into the image (q ≥ 0); later sets (the stability
    mesh) only enter the minimum energy (q = −1).
    """
    Ws, ms, offs, ks, qs, ws = [], [], [], [], [], []
    off = 0
    for si, bs in enumerate(sets):
        for m, W, qidx, mult in bs.groups:
            k = _pack_size(m)
            nb = W.shape[1] // k
            Ws.append(W.T)
            ms.append(np.full(nb, m))
            ks.append(np.full(nb, k))
            offs.append(off + k * np.arange(nb))
            qs.append(qidx if si == 0 else np.full(nb, -1))
            ws.append(mult.astype(float))
            off += nb * k
    return {
        "W": np.ascontiguousarray(np.concatenate(Ws), dtype=np.float64),
        "m": np.concatenate(ms).astype(np.int64),
        "off": np.concatenate(offs).astype(np.int64),
        "k": np.concatenate(ks).astype(np.int64),
        "q": np.concatenate(qs).astype(np.int64),
        "w": np.concatenate(ws),
    }


def _irreducible_mesh(basis: FCBasis, mesh) -> np.ndarray:
    """Irreducible q-points of a Γ-centred mesh (fractional, primitive reciprocal lattice)."""
    import spglib

    mesh = np.asarray(mesh, dtype=int)
    cr = basis.crystal
    cell = (cr.lattice.tolist(), cr.positions.tolist(), cr.numbers.tolist())  # spglib's annotations take sequences
    mapping, grid = spglib.get_ir_reciprocal_mesh(mesh, cell, is_shift=[0, 0, 0])
    ir = np.unique(mapping)
    return grid[ir] / mesh[None, :].astype(float)
