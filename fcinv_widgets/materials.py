"""Material presets: Ge (diamond) and Nb (bcc), and custom materials from files.

A :class:`Material` bundles the primitive cell, the supercell of the force-constant
model, the (q, E) grid of its spectra, the symmetry-reduced FC basis, the reference
parameter values (all parameters, eV/Å²), the active top-8 parameters and their
training domain. Reference values and domains come from the shipped uMLFF-ensemble
summary (``fcinv_widgets/data/ensemble/<name>.json``) when present.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from .basis import FCBasis
from .errors import FcinvError, MissingDependencyError
from .grid import EnergyGrid, SpectrumGrid, build_qpath
from .structure import Crystal, read_structure

N_ACTIVE = 8

# Conventional-cell r.l.u. of the high-symmetry points (SeeK-path / Hinuma conventions).
FCC_POINTS = {"Γ": (0, 0, 0), "X": (0, 1, 0), "U": (0.25, 1, 0.25), "K": (0.75, 0.75, 0), "L": (0.5, 0.5, 0.5), "W": (0.5, 1, 0)}
FCC_PATH = [("Γ", "X"), ("X", "U"), ("K", "Γ"), ("Γ", "L"), ("L", "W"), ("W", "X")]
BCC_POINTS = {"Γ": (0, 0, 0), "H": (0, 0, 1), "N": (0.5, 0.5, 0), "P": (0.5, 0.5, 0.5)}
BCC_PATH = [("Γ", "H"), ("H", "N"), ("N", "Γ"), ("Γ", "P"), ("P", "H"), ("P", "N")]


def _one_blas_thread():
    """Single-threaded BLAS/LAPACK while precomputing: OpenBLAS results depend on its thread
    count in the last bit, and byte-identical datasets (in-process, resumed, on Dask workers
    that run one thread) need the same precomputed matrices everywhere."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def data_path(*parts) -> Path:
    return Path(resources.files("fcinv_widgets")) / "data" / Path(*parts)


@dataclass
class Material:
    """A material preset or a custom material.

    Attributes
    ----------
    name : str
    crystal : Crystal (primitive cell)
    supercell_matrix : (3, 3) int, in units of the primitive cell
    grid : SpectrumGrid
    conventional_a : float, Å (cubic conventional lattice constant; q-points in its r.l.u.)
    """

    name: str
    crystal: Crystal
    supercell_matrix: np.ndarray
    grid: SpectrumGrid
    conventional_a: float
    _reference: np.ndarray = field(default=None, repr=False)
    _active: np.ndarray = field(default=None, repr=False)
    _domain: np.ndarray = field(default=None, repr=False)
    _reference_source: str = field(default="", repr=False)
    _domain_source: str = field(default="", repr=False)

    @property
    def reference_source(self) -> str:
        """Where the reference parameters come from."""
        _ = self.reference_params  # computing it sets the source
        return self._reference_source

    @reference_source.setter
    def reference_source(self, value: str) -> None:
        self._reference_source = value

    @property
    def domain_source(self) -> str:
        """Where the training domain comes from."""
        _ = self.domain  # computing it sets the source
        return self._domain_source

    @domain_source.setter
    def domain_source(self, value: str) -> None:
        self._domain_source = value

    @cached_property
    def basis(self) -> FCBasis:
        with _one_blas_thread():
            return FCBasis(self.crystal, self.supercell_matrix)

    # ---------------------------------------------------------------- reference and domain
    @cached_property
    def _summary(self):
        p = data_path("ensemble", f"{self.name.lower()}.json")
        if p.is_file():
            return json.loads(p.read_text())
        return None

    @property
    def reference_params(self) -> np.ndarray:
        """All basis parameters (eV/Å²) at the material's reference (ensemble median, or DFT)."""
        if self._reference is None:
            s = self._summary
            if s is not None and "reference_params" in s:
                self._reference = np.asarray(s["reference_params"], float)
                self.reference_source = "ensemble median (" + ", ".join(s.get("models_used", [])) + ")"
            elif self.dft_params is not None:
                self._reference = self.dft_params
                self.reference_source = "first-principles (DFT) force constants"
            else:
                raise MissingDependencyError(
                    f"no reference force constants for {self.name}: run `fcinv ensemble --material {self.name}` "
                    "or give force constants (--force-constants FILE)"
                )
            if len(self._reference) != self.basis.n_params:
                raise FcinvError(f"{self.name}: reference has {len(self._reference)} parameters, basis has {self.basis.n_params}")
        return self._reference

    @cached_property
    def dft_params(self):
        """The reduced parameters of the shipped first-principles FCs (Ge), else None."""
        p = data_path(self.name.lower(), "FORCE_CONSTANTS_DFT")
        if not p.is_file():
            return None
        from .fcio import read_force_constants

        params, _ = self.basis.reduce(read_force_constants(p))
        return params

    @property
    def active(self) -> np.ndarray:
        """Indices of the top-8 parameters, most sensitive first (FC0 … FC7)."""
        if self._active is None:
            s = self._summary
            if s is not None and "active" in s:
                self._active = np.asarray(s["active"], int)
            else:
                self._active = self.basis.sensitivity(self.reference_params, self.grid.q.qpoints, N_ACTIVE)["top"]
        return self._active

    @property
    def active_names(self) -> list:
        return [f"FC{k} ({self.basis.names[i]})" for k, i in enumerate(self.active)]

    @property
    def domain(self) -> np.ndarray:
        """(8, 2) training domain [lo, hi] of the active parameters (eV/Å²)."""
        if self._domain is None:
            s = self._summary
            if s is not None and "domain" in s:
                self._domain = np.asarray(s["domain"], float)
                self.domain_source = "uMLFF ensemble, widened [min − 25 % range, max + 150 % range]"
            else:
                ref = self.reference_params[self.active]
                self._domain = np.stack([ref - 0.5 * np.abs(ref), ref + 0.5 * np.abs(ref)], axis=1)
                self._domain.sort(axis=1)
                self.domain_source = "provisional: reference ± 50 % (no ensemble summary shipped)"
        return self._domain

    @property
    def reference_theta(self) -> np.ndarray:
        return self.reference_params[self.active].copy()

    def forward_model(self, sigma_mev: float = 1.0, resolution=None, backend="numpy", mesh=(4, 4, 4)):
        """A :class:`~fcinv_widgets.forward.ForwardModel` over the active parameters."""
        from .forward import ForwardModel

        key = (sigma_mev, repr(resolution), str(backend), tuple(mesh) if mesh is not None else None)
        cache = self.__dict__.setdefault("_fm_cache", {})
        if key not in cache:
            with _one_blas_thread():
                cache[key] = ForwardModel(self.basis, self.grid, self.reference_params, self.active, sigma_mev=sigma_mev,
                                          resolution=resolution, backend=backend, mesh=mesh, names=self.active_names)
        return cache[key]

    def to_dict(self) -> dict:
        return {"name": self.name, "crystal": self.crystal.to_dict(), "supercell_matrix": self.supercell_matrix.tolist(),
                "grid": self.grid.to_dict(), "conventional_a": self.conventional_a}


def _cubic_grid(crystal: Crystal, a: float, points, path, e_max, e_step, q_step=0.025) -> SpectrumGrid:
    conv_to_prim = (crystal.lattice / a).T  # q_prim = Q_conv @ (A_prim / a)ᵀ
    conv_recip = 2 * np.pi / a * np.eye(3)
    q = build_qpath(points, path, conv_to_prim, conv_recip, step=q_step)
    return SpectrumGrid(q, EnergyGrid(0.0, e_max, e_step))


def _ge() -> Material:
    cr = read_structure(data_path("ge", "POSCAR"))
    a = float(np.linalg.norm(cr.lattice[0]) * np.sqrt(2))
    grid = _cubic_grid(cr, a, FCC_POINTS, FCC_PATH, 70.0, 0.5)
    return Material("Ge", cr, np.diag([4, 4, 4]), grid, a)


def _nb(a: float = 3.30) -> Material:
    lat = 0.5 * a * np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]], float)
    cr = Crystal(lat, np.zeros((1, 3)), ("Nb",))
    grid = _cubic_grid(cr, a, BCC_POINTS, BCC_PATH, 48.0, 0.4)
    smat = 4 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])  # 4×4×4 conventional cells, 128 atoms
    return Material("Nb", cr, smat, grid, a)


PRESETS = {"ge": _ge, "nb": _nb}


@lru_cache(maxsize=None)
def get_material(name: str) -> Material:
    """A preset by name: "Ge" or "Nb" (case-insensitive)."""
    key = str(name).lower()
    if key not in PRESETS:
        raise FcinvError(f"unknown material {name!r}; presets: Ge, Nb (or give --structure and --force-constants)")
    return PRESETS[key]()


def custom_material(structure, force_constants=None, supercell=(4, 4, 4), name: str = "custom",
                    e_max: float = 70.0, e_step: float = 0.5, q_step: float = 0.025) -> Material:
    """A material from a structure file (POSCAR/CIF) and optional phonopy force constants.

    The q-path is the SeeK-path/Hinuma path of the structure's Bravais lattice.
    """
    from .fcio import read_force_constants

    cr = structure if isinstance(structure, Crystal) else read_structure(structure)
    smat = np.asarray(supercell, int)
    smat = np.diag(smat) if smat.shape == (3,) else smat
    grid, a = seekpath_grid(cr, e_max, e_step, q_step)
    mat = Material(name, cr, smat, grid, a)
    if force_constants is not None:
        fc = force_constants if isinstance(force_constants, np.ndarray) else read_force_constants(force_constants)
        params, resid = mat.basis.reduce(fc)
        mat._reference = params
        mat.reference_source = f"given force constants (projection residual {resid['relative']:.2e})"
    return mat


def seekpath_grid(crystal: Crystal, e_max=70.0, e_step=0.5, q_step=0.025):
    """SeeK-path high-symmetry path for ``crystal``; points converted to its own reciprocal cell."""
    import seekpath

    res = seekpath.get_path((crystal.lattice, crystal.positions, crystal.numbers), with_time_reversal=True)
    conv = np.asarray(res["conv_lattice"])
    # seekpath may rotate the cell: express its conventional r.l.u. in our Cartesian frame
    rot = np.asarray(res.get("rotation_matrix", np.eye(3)))
    conv_cart = conv @ rot  # conventional lattice in the input frame
    prim_recip = np.asarray(res["reciprocal_primitive_lattice"])
    points = {}
    for label, frac_prim_sp in res["point_coords"].items():
        cart_sp = np.asarray(frac_prim_sp) @ prim_recip
        # to conventional r.l.u. of the (rotated) conventional cell
        points[label.replace("GAMMA", "Γ")] = tuple(cart_sp @ conv.T / (2 * np.pi))
    path = [(a.replace("GAMMA", "Γ"), b.replace("GAMMA", "Γ")) for a, b in res["path"]]
    a = float(np.linalg.norm(conv[0]))
    conv_recip = 2 * np.pi * np.linalg.inv(conv_cart).T
    conv_to_prim = conv_cart.T @ np.linalg.inv(crystal.lattice.T).T
    # q_prim_i = Q_cart · a_i / 2π with Q_cart = Q_conv @ conv_recip
    conv_to_prim = (conv_recip @ crystal.lattice.T) / (2 * np.pi)
    q = build_qpath(points, path, conv_to_prim, conv_recip, step=q_step)
    return SpectrumGrid(q, EnergyGrid(0.0, e_max, e_step)), a
