"""Symmetry-reduced harmonic force-constant basis.

For a crystal and a supercell, the supercell force constants Φ(i, j) (3×3 blocks, eV/Å²)
are written as Φ = Σ_p θ_p B_p, where each basis tensor B_p belongs to one *pair orbit*
(a neighbour shell: all atom pairs related by a space-group operation or by exchange
i ↔ j) and the parameter θ_p is a named Cartesian element of the orbit's representative
pair (e.g. ``1NN xx``). Every B_p

* obeys the space-group symmetry: Φ(g i, g j) = R Φ(i, j) Rᵀ,
* obeys index symmetry: Φ(j, i) = Φ(i, j)ᵀ,
* carries the acoustic sum rule: its on-site blocks are Φ(i, i) = −Σ_{j≠i} Φ(i, j),
* has symmetric on-site blocks Φ(i, i) = Φ(i, i)ᵀ. At sites of low symmetry (e.g. Al₂O₃, R-3c)
  the sum of one pair orbit's blocks can have an antisymmetric part; the basis is then
  restricted to the parameter combinations whose on-site blocks are symmetric (the parameters
  that stay keep their names), so its dimension equals symfc's.

The cell is used as given (an explicit identity primitive matrix for phonopy): a conventional
cell keeps all its atoms and bands, and q-points are fractional coordinates of its reciprocal
lattice. :func:`fcinv_widgets.structure.to_primitive` reduces a cell when asked.

Built on spglib's space-group operations of the supercell; cross-checked against symfc in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .errors import FcinvError
from .fcio import check_fc_shape
from .structure import Crystal

#: upper bound (bytes) on the dense basis tensors built for one crystal and supercell
MAX_BASIS_BYTES = 8 * 1024**3
#: largest supercell (atoms) accepted
MAX_SUPERCELL_ATOMS = 1500

_ELEMENT_NAMES = ["xx", "xy", "xz", "yx", "yy", "yz", "zx", "zy", "zz"]
# preference when choosing which tensor elements name the free parameters
_PREFERENCE = [0, 1, 2, 4, 5, 8, 3, 6, 7]  # xx, xy, xz, yy, yz, zz, yx, zx, zy


@dataclass(frozen=True)
class Orbit:
    """A pair orbit (neighbour shell)."""

    index: int  # shell number, 1 = nearest neighbours
    distance: float  # Å, minimum-image distance of the representative pair
    pair: tuple  # (i, j) supercell atom indices of the representative
    vector: tuple  # Cartesian vector r_j - r_i of the representative (Å)
    n_pairs: int  # number of ordered pairs (i, j) in the supercell in this orbit
    params: tuple  # indices of the parameters that belong to this orbit
    elements: tuple  # element names of those parameters (e.g. ("xx", "xy"))


class FCBasis:
    """Symmetry-adapted basis of the harmonic force constants of ``crystal`` in a supercell.

    Parameters
    ----------
    crystal : Crystal — the cell used, as given (primitive or not: a conventional cell stays
        conventional, with 3 × its atoms bands; q-points are fractional coordinates of *its*
        reciprocal lattice). Reduce it first with :func:`fcinv_widgets.structure.to_primitive`.
    supercell_matrix : (3, 3) int or 3 ints — supercell in units of that cell.
    symprec : float — spglib tolerance (Å).
    """

    def __init__(self, crystal: Crystal, supercell_matrix, symprec: float = 1e-5):
        smat = np.asarray(supercell_matrix, dtype=int)
        if smat.shape == (3,):
            smat = np.diag(smat)
        if smat.shape != (3, 3) or round(abs(np.linalg.det(smat))) < 1:
            raise FcinvError(
                f"supercell matrix must be 3 integers or a 3×3 integer matrix with det ≥ 1, got {supercell_matrix!r}"
            )
        n_super = crystal.n_atoms * round(abs(np.linalg.det(smat)))
        if n_super > MAX_SUPERCELL_ATOMS:
            raise FcinvError(
                f"supercell of {n_super} atoms ({crystal.n_atoms} × {round(abs(np.linalg.det(smat)))} cells); "
                f"at most {MAX_SUPERCELL_ATOMS} are supported: use a smaller --supercell"
            )
        self.crystal = crystal
        self.supercell_matrix = smat
        self.symprec = symprec
        # the cell as given is the cell used: an explicit identity primitive matrix (phonopy ≥ 2.2x
        # reads None as "auto" and would silently reduce a conventional cell to its primitive cell)
        # the supercell and primitive cell only: phonopy's own symmetry search (atom permutations of
        # every operation, ~1 s for a 128-atom supercell) is not needed here (spglib, _symmetry);
        # the full phonopy object (:attr:`phonopy`) is made when it is asked for
        cells = self._new_phonopy(is_symmetry=False)
        sc = cells.supercell
        self._primitive = cells.primitive
        self.p2s = np.asarray(self._primitive.p2s_map)
        self.s2p = np.asarray(self._primitive.s2p_map)  # supercell atom -> supercell index of its primitive image
        p2p = self._primitive.p2p_map  # supercell index of a primitive atom -> primitive index
        self._sc_numbers = np.asarray(sc.numbers)
        self.s2pp = np.array([p2p[s] for s in self.s2p])  # supercell atom -> primitive index
        self.n_prim = len(self.p2s)
        self.n_super = len(sc)
        self._sc_lattice = np.array(sc.cell)
        self._sc_pos = np.array(sc.scaled_positions)
        self._build()

    # ------------------------------------------------------------------ construction
    @cached_property
    def phonopy(self):
        """A phonopy object of this crystal and supercell (the cell as given: identity primitive matrix)."""
        return self._new_phonopy()

    def _new_phonopy(self, is_symmetry: bool = True):
        from .fcio import new_phonopy

        return new_phonopy(self.crystal.to_phonopy_atoms(), self.supercell_matrix, symprec=self.symprec, is_symmetry=is_symmetry)

    def _symmetry(self):
        import spglib

        numbers = self._sc_numbers
        # lists: spglib's annotations take sequences (it converts to arrays itself)
        cell = (self._sc_lattice.tolist(), self._sc_pos.tolist(), numbers.tolist())
        try:
            ds = spglib.get_symmetry(cell, symprec=self.symprec)
        except Exception as exc:  # noqa: BLE001 — spglib raises its own C++ error types on odd cells
            raise FcinvError(f"spglib could not find the symmetry of the supercell ({exc})") from None
        if ds is None:
            raise FcinvError("spglib could not find the symmetry of the supercell")
        W, t = ds["rotations"], ds["translations"]
        # atom permutations: position of atom a under op g is atom perm[g, a]
        from scipy.spatial import cKDTree

        tree = cKDTree(np.mod(self._sc_pos, 1.0) % 1.0, boxsize=1.0 + 1e-12)
        mapped = np.einsum("gij,aj->gai", W, self._sc_pos) + t[:, None, :]
        mapped = np.mod(mapped, 1.0) % 1.0
        tol = self.symprec / np.min(np.linalg.norm(self._sc_lattice, axis=1)) * 10 + 1e-6
        dist, idx = tree.query(mapped.reshape(-1, 3), distance_upper_bound=tol)
        if np.any(~np.isfinite(dist)):
            raise FcinvError("a symmetry operation does not map the supercell onto itself (check symprec)")
        perm = idx.reshape(len(W), self.n_super)
        L = self._sc_lattice
        # R_cart = Lᵀ W L⁻ᵀ (L rows are lattice vectors)
        R = np.einsum("ij,gjk,lk->gil", L.T, W, np.linalg.inv(L))
        return perm, R

    def _min_image_vectors(self, i, js):
        """Cartesian minimum-image vectors r_j - r_i (Å) and their lengths."""
        d = self._sc_pos[js] - self._sc_pos[i]
        d -= np.rint(d)
        # search neighbouring images for the true minimum in skewed cells
        shifts = np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij")).reshape(3, -1).T
        cand = (d[:, None, :] + shifts[None]) @ self._sc_lattice
        n = np.linalg.norm(cand, axis=-1)
        k = np.argmin(n, axis=1)
        return cand[np.arange(len(js)), k], n[np.arange(len(js)), k]

    def _build(self):
        perm, R = self._symmetry()
        N = self.n_super
        self.n_ops = len(R)
        # canonical orbit label of every ordered pair: min over ops and exchange of the pair id
        ii, jj = np.repeat(np.arange(N), N), np.tile(np.arange(N), N)  # pair id = i * N + j
        label = np.full(N * N, N * N, dtype=np.int64)
        step = int(np.clip(2e7 // (N * N), 1, 128))  # bounded temporaries for large supercells
        for g0 in range(0, len(perm), step):
            pg = perm[g0 : g0 + step]
            a, b = pg[:, ii], pg[:, jj]
            label = np.minimum(label, np.minimum(a * N + b, b * N + a).min(axis=0))
        uniq = np.unique(label)
        # the dense tensors (P, N, N, 3, 3) must fit: at most 9 parameters per pair orbit
        need = 9 * len(uniq) * N * N * 9 * 8
        if need > MAX_BASIS_BYTES:
            raise FcinvError(
                f"the supercell of {N} atoms has {len(uniq)} pair orbits; its dense force-constant basis could "
                f"need up to {need / 1024**3:.0f} GiB (limit {MAX_BASIS_BYTES / 1024**3:.0f} GiB): use a smaller --supercell"
            )

        basis_full = []  # list of (N, N, 3, 3) tensors
        orbits_raw = []
        for lab in uniq:
            members = np.nonzero(label == lab)[0]
            mi, mj = ii[members], jj[members]
            if np.all(mi == mj):
                continue  # on-site orbit: fixed by the acoustic sum rule
            # representative: a pair starting on a primitive atom (the first one that occurs)
            starts = [p for p in self.p2s if np.any(mi == p)]
            i0 = int(starts[0])
            cand = mj[mi == i0]
            vecs, dists = self._min_image_vectors(i0, cand)
            rv = np.round(vecs, 6)
            order = np.lexsort((-rv[:, 2], -rv[:, 1], -rv[:, 0], np.round(dists, 6)))
            j0 = int(cand[order[0]])
            vec, dist = vecs[order[0]], float(dists[order[0]])
            # site-symmetry constraints on Φ(i0, j0)
            fix = (perm[:, i0] == i0) & (perm[:, j0] == j0)
            swap = (perm[:, i0] == j0) & (perm[:, j0] == i0)
            T = np.zeros((9, 9))
            for a in range(3):
                for b in range(3):
                    T[a * 3 + b, b * 3 + a] = 1.0
            rows = [np.kron(r, r) - np.eye(9) for r in R[fix]] + [np.kron(r, r) - T for r in R[swap]]
            C = np.concatenate(rows) if rows else np.zeros((1, 9))
            _, s, vh = np.linalg.svd(C)
            rank = int(np.sum(s > 1e-8 * max(s[0], 1.0)))
            null = vh[rank:].T  # (9, k)
            k = null.shape[1]
            if k == 0:
                continue
            # name the free parameters by tensor elements: pivots chosen in preference order
            piv: list[int] = []
            for e in _PREFERENCE:
                trial = piv + [e]
                if np.linalg.matrix_rank(null[trial], tol=1e-8) == len(trial):
                    piv = trial
                if len(piv) == k:
                    break
            E = null @ np.linalg.inv(null[piv])  # (9, k) with E[piv] = identity
            E[np.abs(E) < 1e-12] = 0.0
            # expand each basis element over the orbit
            gi, gj = perm[:, i0], perm[:, j0]
            for m in range(k):
                phi0 = E[:, m].reshape(3, 3)
                rot = np.einsum("gab,bc,gdc->gad", R, phi0, R)
                B = np.zeros((N, N, 3, 3))
                B[gi, gj] = rot
                B[gj, gi] = np.transpose(rot, (0, 2, 1))
                basis_full.append(B)
            orbits_raw.append((dist, (i0, j0), tuple(vec), int(len(members)), [_ELEMENT_NAMES[p] for p in piv], k))

        # order orbits by distance, then assign parameter indices
        by_distance, prefixes = self._orbit_names(orbits_raw)
        offsets = np.cumsum([0] + [o[5] for o in orbits_raw])
        tensors: list[np.ndarray] = []
        orbits: list[Orbit] = []
        names: list[str] = []
        for o, (shell, prefix) in zip(by_distance, prefixes):
            dist, pair, vec, npairs, elems, k = orbits_raw[o]
            idx = tuple(range(len(tensors), len(tensors) + k))
            for m in range(k):
                tensors.append(basis_full[offsets[o] + m])
                names.append(f"{prefix} {elems[m]}")
            orbits.append(Orbit(shell, dist, pair, vec, npairs, idx, tuple(elems)))
        # acoustic sum rule: on-site blocks
        full = np.array(tensors)  # (P, N, N, 3, 3)
        diag = np.arange(N)
        full[:, diag, diag] = 0.0
        full[:, diag, diag] = -full.sum(axis=2)
        full, orbits, names = self._symmetric_onsite(full, orbits, names)
        self.orbits = orbits
        self.names = names
        self._full = full
        self._compact = np.ascontiguousarray(full[:, self.p2s])  # (P, n_prim, N, 3, 3)

    #: Å: orbits whose distances differ by less are one neighbour shell (crystals of several species)
    SHELL_TOL_A = 1e-4

    def _orbit_names(self, orbits_raw) -> tuple[list[int], list[tuple[int, str]]]:
        """The orbits' order and, per orbit in that order, (shell number, name prefix).

        One species (Ge, Nb, …): by distance, the n-th orbit is "nNN" — the shipped models' names,
        which must never change. Several species: orbits at one distance are one shell, told apart
        by their species pair ("1NN Cu-Pt", "1NN Cu-Cu", "1NN Pt-Pt"; a letter where one shell holds
        two orbits of the same pair), and ordered by (distance shell, species pair): the same names
        for the same parameters in every cell setting of the crystal. (Numbering orbits alone named
        CuPt's Pt–Pt first neighbours "2NN" in one setting and "3NN" or "1NN" in others.)"""
        n = len(orbits_raw)
        by_distance = sorted(range(n), key=lambda o: orbits_raw[o][0])
        symbols = self.crystal.symbols
        if len(set(symbols)) == 1:
            return by_distance, [(i, f"{i}NN") for i in range(1, n + 1)]
        shell_of, shell, start = {}, 0, -np.inf
        for o in by_distance:
            if orbits_raw[o][0] > start + self.SHELL_TOL_A:
                shell, start = shell + 1, orbits_raw[o][0]
            shell_of[o] = shell

        key = {o: (shell_of[o], tuple(sorted(symbols[self.s2pp[k]] for k in orbits_raw[o][1]))) for o in range(n)}
        order = sorted(range(n), key=lambda o: (*key[o], orbits_raw[o][0]))
        groups: dict = {}
        for o in order:
            groups.setdefault(key[o], []).append(o)
        prefixes = []
        for o in order:
            same = groups[key[o]]
            letter = "" if len(same) == 1 else f"({chr(ord('a') + same.index(o))})"
            prefixes.append((key[o][0], f"{key[o][0]}NN{letter} {'-'.join(key[o][1])}"))
        return order, prefixes

    def _symmetric_onsite(self, full, orbits, names):
        """Restrict the basis to the subspace whose on-site blocks Φ_ii = −Σ_{j≠i} Φ_ij are symmetric.

        With low site symmetry (e.g. Al₂O₃, R-3c) a single pair tensor can give an on-site block
        with an antisymmetric part; the force constants must have Φ_ii = Φ_iiᵀ and the sum rule
        together, which is a linear constraint on the parameters. Its null space is spanned by
        keeping the earliest parameters whose columns are independent (pivots) and writing the
        others as their linear combinations, so kept parameters keep their names; a crystal
        without such a constraint (Ge, Nb, every site symmetry that forces it) keeps its basis
        unchanged. The dimension is then that of symfc's basis (checked in the tests).
        """
        diag = np.arange(self.n_super)
        onsite = full[:, self.p2s, self.p2s]  # (P, n_prim, 3, 3)
        anti = (onsite - np.swapaxes(onsite, -1, -2)).reshape(len(full), -1)  # (P, 9 n_prim)
        scale = max(np.abs(full).max(), 1.0)
        if np.abs(anti).max() <= 1e-10 * scale:
            return full, orbits, names
        _, s, vh = np.linalg.svd(anti.T, full_matrices=True)
        rank = int(np.sum(s > 1e-9 * max(s[0], 1e-300)))
        null = vh[rank:].T  # (P, k)
        k = null.shape[1]
        # earliest independent rows of the null-space basis (incremental Gram–Schmidt, twice)
        piv, Q = [], np.zeros((k, 0))
        for p in range(len(full)):
            r = null[p] - Q @ (Q.T @ null[p])
            r -= Q @ (Q.T @ r)
            nr = np.linalg.norm(r)
            if nr > 1e-6:
                piv.append(p)
                Q = np.column_stack([Q, r / nr])
            if len(piv) == k:
                break
        E = null @ np.linalg.inv(null[piv])  # (P, k), identity on the kept parameters
        E[np.abs(E) < 1e-12] = 0.0
        new = np.tensordot(E.T, full, axes=(1, 0))
        # rebuild the on-site blocks from the combined pair terms; they are symmetric up to rounding
        new[:, diag, diag] = 0.0
        onsite = -new.sum(axis=2)
        new[:, diag, diag] = 0.5 * (onsite + np.swapaxes(onsite, -1, -2))
        pos = {p: m for m, p in enumerate(piv)}
        kept = []
        for orb in orbits:
            sel = [(pos[p], el) for p, el in zip(orb.params, orb.elements) if p in pos]
            if sel:
                kept.append(
                    Orbit(
                        orb.index,
                        orb.distance,
                        orb.pair,
                        orb.vector,
                        orb.n_pairs,
                        tuple(m for m, _ in sel),
                        tuple(el for _, el in sel),
                    )
                )
        return new, kept, [names[p] for p in piv]

    # ------------------------------------------------------------------ public API
    @property
    def n_params(self) -> int:
        return len(self.names)

    @property
    def compact_tensors(self) -> np.ndarray:
        """Basis tensors in phonopy's compact layout: (n_params, n_prim, n_super, 3, 3)."""
        return self._compact

    def pair_species(self, orbit: Orbit) -> tuple:
        """The chemical symbols of an orbit's representative atom pair (i, j), e.g. ("Na", "Cl")."""
        return tuple(self.crystal.symbols[self.s2pp[k]] for k in orbit.pair)

    def describe(self) -> list:
        """One dict per parameter: index, name, shell, distance (Å), element, atom pair, orbit size."""
        out = []
        for orb in self.orbits:
            species = "-".join(self.pair_species(orb))
            for p, el in zip(orb.params, orb.elements):
                out.append(
                    {
                        "index": p,
                        "name": self.names[p],
                        "shell": orb.index,
                        "distance_A": round(orb.distance, 4),
                        "element": el,
                        "species": species,
                        "pairs": orb.n_pairs,
                        "vector_A": [round(v, 4) for v in orb.vector],
                    }
                )
        return out

    def _check_params(self, params) -> np.ndarray:
        from .validate import real_array

        params = real_array(params, "force-constant parameters (eV/Å²)")
        if params.shape[-1:] != (self.n_params,):
            raise FcinvError(f"expected {self.n_params} force-constant parameters, got shape {params.shape}")
        if not np.all(np.isfinite(params)):
            raise FcinvError("force-constant parameters contain NaN or inf")
        return params

    def expand(self, params, full: bool = False) -> np.ndarray:
        """Parameters (eV/Å²) → force constants, compact (n_prim, N, 3, 3) or ``full`` (N, N, 3, 3)."""
        params = self._check_params(params)
        src = self._full if full else self._compact
        return np.tensordot(params, src, axes=(-1, 0))

    def reduce(self, fc) -> tuple:
        """Least-squares projection of force constants onto the basis.

        Returns ``(params, residual)`` where ``residual`` is a dict with the RMS and the
        maximum absolute deviation (eV/Å²) of the rebuilt compact FCs, and the relative
        residual ‖Φ − Φ_basis‖ / ‖Φ‖.
        """
        fc = check_fc_shape(fc, self.n_prim, self.n_super)
        if fc.shape[0] == self.n_super:
            fc = fc[self.p2s]
        A = self._compact.reshape(self.n_params, -1)
        y = fc.reshape(-1)
        params, *_ = np.linalg.lstsq(A.T, y, rcond=None)
        diff = A.T @ params - y
        resid = {
            "rms": float(np.sqrt(np.mean(diff**2))),
            "max_abs": float(np.abs(diff).max()),
            "relative": float(np.linalg.norm(diff) / max(float(np.linalg.norm(y)), 1e-300)),
        }
        return params, resid

    def write_force_constants(self, path, params, full: bool = False) -> None:
        """Write phonopy ``FORCE_CONSTANTS`` for ``params`` (compact unless ``full``)."""
        from .fcio import write_force_constants

        fc = self.expand(params, full=full)
        write_force_constants(path, fc, p2s_map=None if full else self.p2s)

    def phonopy_with(self, params):
        """A phonopy object of this supercell with the force constants of ``params`` (compact)."""
        ph = self._new_phonopy()
        ph.force_constants = self.expand(params)
        return ph

    # ------------------------------------------------------------------ dynamical matrices
    @cached_property
    def _smallest_vectors(self):
        svecs, multi = self._primitive.get_smallest_vectors()
        return np.asarray(svecs), np.asarray(multi)

    def _phases(self, q) -> np.ndarray:
        """phase[q, i, k] = (1/m) Σ_l exp(2πi q·svec(k, i, l)) over the m equidistant images (phonopy)."""
        svecs, multi = self._smallest_vectors
        n, N = self.n_prim, self.n_super
        phase = np.zeros((len(q), n, N), dtype=complex)
        for k in range(N):
            for i in range(n):
                m, adrs = multi[k, i]
                phase[:, i, k] = np.exp(2j * np.pi * q @ svecs[adrs : adrs + m].T).sum(axis=1) / m
        return phase

    def _dynamical(self, compact, qpoints) -> np.ndarray:
        """Mass-weighted, Hermitised D(q) of compact force constants (..., n_prim, N, 3, 3):
        (..., nq, 3n, 3n) complex, eV/Å²/amu."""
        q = np.atleast_2d(np.asarray(qpoints, dtype=float))
        phase = self._phases(q)
        n = self.n_prim
        lead = compact.shape[:-4]
        D = np.zeros(lead + (len(q), n, 3, n, 3), dtype=complex)
        for j in range(n):
            kj = np.nonzero(self.s2pp == j)[0]
            D[..., j, :] = np.einsum("...ikab,qik->...qiab", compact[..., kj, :, :], phase[:, :, kj])
        m = self.crystal.masses
        D /= np.sqrt(np.outer(m, m))[:, None, :, None]
        D = D.reshape(lead + (len(q), 3 * n, 3 * n))
        return 0.5 * (D + np.conj(np.swapaxes(D, -1, -2)))

    def dynamical_matrices(self, qpoints) -> np.ndarray:
        """Per-parameter dynamical matrices D_p(q), (n_params, nq, 3n, 3n) complex, eV/Å²/amu.

        Uses phonopy's convention (phases from the shortest vectors between atoms,
        averaged over equidistant images), so that eigenvalues match phonopy's.
        ``q`` in fractional coordinates of the primitive reciprocal lattice.
        """
        return self._dynamical(self._compact, qpoints)

    def dynamical_matrix(self, params, qpoints) -> np.ndarray:
        """D(q) (nq, 3n, 3n) of one parameter vector (eV/Å²), contracted from its compact force
        constants (no per-parameter intermediate); same convention as :meth:`dynamical_matrices`."""
        return self._dynamical(self.expand(self._check_params(params)), qpoints)

    def frequencies_thz(self, params, qpoints) -> np.ndarray:
        """Phonon frequencies (THz, ascending; negative = imaginary) at ``qpoints`` for ``params``."""
        from .units import VASP_TO_THZ

        params = self._check_params(params)
        lam = np.concatenate(
            [np.linalg.eigvalsh(np.tensordot(params, self.dynamical_matrices(q), axes=(0, 0))) for q in self._q_chunks(qpoints)]
        )
        return np.sign(lam) * np.sqrt(np.abs(lam)) * VASP_TO_THZ

    #: bytes: the per-parameter dynamical matrices (P, nq, 3n, 3n) of a larger q set are built a chunk
    #: of q-points at a time (a 16-atom cell's 693 parameters on its q-path took ~8 GB at once)
    DP_CHUNK_BYTES = 256 * 1024**2

    def _q_chunks(self, qpoints) -> list:
        """``qpoints`` as one array where its (P, nq, 3n, 3n) matrices fit :attr:`DP_CHUNK_BYTES` (every
        preset: the same arithmetic as before), else as consecutive chunks that do."""
        q = np.atleast_2d(np.asarray(qpoints, dtype=float))
        per_q = self.n_params * (3 * self.n_prim) ** 2 * 16
        step = max(1, int(self.DP_CHUNK_BYTES // per_q))
        return [q] if len(q) <= step else [q[i : i + step] for i in range(0, len(q), step)]

    # ------------------------------------------------------------------ sensitivity
    def sensitivity(self, params, qpoints, n_top: int = 8, scale=None) -> dict:
        """Rank parameters by how much they move the phonon frequencies along ``qpoints``.

        The sensitivity of parameter p is ``scale_p × RMS_{q, modes} ∂ω/∂θ_p`` (meV), with
        ∂ω/∂θ from first-order perturbation theory (Hellmann–Feynman: ∂λ/∂θ_p = e† D_p e) and
        ``scale_p`` the parameter's magnitude |θ_p| (default) or a given spread (e.g. the
        ensemble's range). Returns ``{"scores", "order", "top"}``.
        """
        from .units import SQRT_EIG_TO_MEV

        params = self._check_params(params)
        sq, n_ok = np.zeros(self.n_params), 0
        for q in self._q_chunks(qpoints):
            Dp = self.dynamical_matrices(q)  # (P, nq, n, n)
            D = np.tensordot(params, Dp, axes=(0, 0))
            lam, vec = np.linalg.eigh(D)
            dlam = np.einsum("qnm,pqnk,qkm->pqm", np.conj(vec), Dp, vec).real  # (P, nq, modes)
            w = np.sqrt(np.clip(lam, 0, None))
            ok = w * SQRT_EIG_TO_MEV > 1.0  # avoid the acoustic singularity at Γ
            domega = np.where(ok, SQRT_EIG_TO_MEV * dlam / (2 * np.where(ok, w, 1.0)), 0.0)
            sq, n_ok = sq + (domega**2).sum(axis=(1, 2)), n_ok + int(ok.sum())
        rms = np.sqrt(sq / max(n_ok, 1))
        scale = np.abs(params) if scale is None else np.asarray(scale, dtype=float)
        scores = rms * scale
        order = np.argsort(-scores, kind="stable")
        return {"scores": scores, "order": order, "top": order[:n_top]}
