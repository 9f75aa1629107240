"""Material presets: Ge (diamond) and Nb (bcc), and custom materials from files.

A :class:`Material` bundles the primitive cell, the supercell of the force-constant
model, the (q, E) grid of its spectra, the symmetry-reduced FC basis, the reference
parameter values (all parameters, eV/Å²), the active top-8 parameters and their
training domain.

Named references (``get_material(name, reference=...)``):

* ``"measured"`` (default): the Born–von Kármán fit to the shipped measured phonons and
  elastic constants (``data/measured/<name>-fit.json``, made by ``fcinv fit-dispersion``);
* ``"dft"``: the shipped first-principles force constants (Ge only);
* ``"umlff"``: the median of the uMLFF ensemble (``data/ensemble/<name>.json``; the paper's choice).

The non-active parameters follow the chosen reference. The active set (FC0…FC7) is the
one the shipped models and datasets use (the ensemble summary's ranking), whatever the
reference; :meth:`Material.ranking` gives the top-8 at the current reference. The training
domain is the same for every reference: per active parameter the union of the widened
uMLFF range (magnitude reading of the paper's [−25 %, +150 %]), the measured fit ± 3σ and
the DFT value (:func:`.ensemble.domain.reality_domain`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from .basis import FCBasis
from .errors import FcinvError, MissingDependencyError
from .grid import EnergyGrid, QPath, SpectrumGrid, build_qpath
from .structure import Crystal, display_label, read_structure
from .validate import json_loads

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
    return Path(str(resources.files("fcinv_widgets"))) / "data" / Path(*parts)


#: a custom material's provisional domain: reference ± this fraction of each FC (no ensemble summary)
PROVISIONAL_DOMAIN = 1.0


#: :attr:`Material.nuisance_source` of a reference whose spread nothing measured (a structure and force
#: constants of the user's): the S(Q,E) fit then fits its overall stiffness first (``refine_sqe(stiffness=None)``).
UNMEASURED_NUISANCE = "10 % of the reference"


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
    _reference: np.ndarray | None = field(default=None, repr=False)
    _active: np.ndarray | None = field(default=None, repr=False)
    _domain: np.ndarray | None = field(default=None, repr=False)
    _reference_source: str = field(default="", repr=False)
    _domain_source: str = field(default="", repr=False)
    reference_name: str = "umlff"

    def with_reference(self, params, source: str, reference_name: str = "custom") -> Material:
        """A copy with other reference parameters (eV/Å², all of them); this material is unchanged.

        The basis, active set and training domain are shared; forward models are rebuilt on demand.
        """
        params = self.basis._check_params(params).copy()
        new = Material(
            self.name,
            self.crystal,
            self.supercell_matrix,
            self.grid,
            self.conventional_a,
            _reference=params,
            _active=self._active,
            _domain=self._domain,
            _reference_source=source,
            _domain_source=self._domain_source,
            reference_name=reference_name,
        )
        for k in ("basis", "_summary", "dft_params", "_domain_info"):
            if k in self.__dict__:
                new.__dict__[k] = self.__dict__[k]
        return new

    def with_energy_grid(self, energy: EnergyGrid) -> Material:
        """A copy on another energy grid (meV; the q-path unchanged), e.g. a measured file's; the
        reference, basis and active set are shared (the active set depends on the q-path only)."""
        new = self.with_reference(self.reference_params, self.reference_source, self.reference_name)
        new.grid = SpectrumGrid(self.grid.q, energy)
        return new

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
            return json_loads(p.read_text(), str(p))
        return None

    @property
    def has_reference(self) -> bool:
        """Whether :attr:`reference_params` exists (a preset's, or given force constants'): a
        ``--structure`` material without force constants has none."""
        try:
            return len(self.reference_params) > 0
        except MissingDependencyError:
            return False

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
                if self.name.lower() in PRESETS:
                    hint = f"run `fcinv ensemble --material {self.name}` or give force constants (--force-constants FILE)"
                else:
                    hint = (
                        "a structure file alone has none: give force constants (--force-constants FILE: phonopy "
                        "FORCE_CONSTANTS, force_constants.hdf5 or phonopy.yaml of the same structure)"
                    )
                raise MissingDependencyError(f"no reference force constants for {self.name}: {hint}")
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

    @cached_property
    def umlff_params(self):
        """All parameters (eV/Å²) at the uMLFF ensemble median, or None when no summary ships."""
        s = self._summary
        return np.asarray(s["reference_params"], float) if s is not None and "reference_params" in s else None

    @cached_property
    def measured_fit(self):
        """The shipped fit to measured phonons (:class:`~fcinv_widgets.fitting.DispersionFit`), or None."""
        p = data_path("measured", f"{self.name.lower()}-fit.json")
        if not p.is_file():
            return None
        from .fitting import DispersionFit

        fit = DispersionFit.from_dict(json_loads(p.read_text(encoding="utf-8"), str(p)))
        if len(fit.params) != self.basis.n_params or list(fit.names) != list(self.basis.names):
            raise FcinvError(f"{p}: the fit's parameters do not match the {self.name} basis")
        return fit

    @cached_property
    def _nuisance(self) -> tuple:
        inactive = np.setdiff1d(np.arange(self.basis.n_params), self.active)
        fit = self.measured_fit
        if fit is not None:
            return np.asarray(fit.sigma_all(), float)[inactive], "σ of the fit to measured phonons"
        ref = self.reference_params[inactive]
        if self.umlff_params is not None and self.dft_params is not None:
            spread = 0.5 * np.abs(self.umlff_params - self.dft_params)[inactive]
            return np.maximum(spread, 1e-3), "half the uMLFF–DFT difference"
        return np.maximum(0.1 * np.abs(ref), 1e-3), UNMEASURED_NUISANCE

    @property
    def nuisance_sigma(self) -> np.ndarray:
        """(P−8,) eV/Å²: the spread of every inactive parameter (ascending index order) that
        datasets with ``nuisance > 0`` draw around the reference: the measured fit's σ where a
        fit ships, else half the uMLFF–DFT difference, else 10 % of the reference (≥ 1e-3)."""
        return self._nuisance[0]

    @property
    def nuisance_source(self) -> str:
        return self._nuisance[1]

    @cached_property
    def _domain_info(self) -> dict:
        from .ensemble.domain import DOMAIN_WIDEN_MODE, reality_domain, widen

        s = self._summary
        if s is None or "observed_min" not in s:
            return {}
        # the paper's [-25 %, +150 %] widening of the observed uMLFF range, in the reading chosen on
        # evidence (docs/results.md "Training domains"): +150 % away from zero, -25 % toward zero
        umlff = widen(
            s["observed_min"],
            s["observed_max"],
            mode=DOMAIN_WIDEN_MODE,
            center=np.asarray(s["reference_params"], float)[self.active],
        )
        fit = self.measured_fit
        return reality_domain(
            self.basis.names,
            self.active,
            umlff,
            fit_params=None if fit is None else fit.params,
            fit_sigma=None if fit is None else fit.sigma_all(),
            dft_params=self.dft_params,
        )

    @property
    def domain(self) -> np.ndarray:
        """(8, 2) training domain [lo, hi] of the active parameters (eV/Å²).

        With an ensemble summary: per parameter the union of the widened uMLFF range, the
        measured fit ± 3σ and the DFT value (whichever ship); :attr:`domain_sources` names the
        source of every bound. Otherwise provisional: reference ± 100 % (each FC between zero and
        twice its reference: a reference from a force field may be as soft as the presets' uMLFF
        ones were, 25–45 %; ± 50 % kept a fit of one 35 % too soft from reaching the truth), and
        at least ± 1e-3 of the largest active FC (one at zero would have no room at all).
        """
        if self._domain is None:
            info = self._domain_info
            if info:
                self._domain = np.asarray(info["domain"], float)
                self.domain_source = info["rule"]
            else:
                ref = self.reference_params[self.active]
                # at least 1e-3 of the largest FC: a parameter at (numerically) zero can still move
                half = np.maximum(PROVISIONAL_DOMAIN * np.abs(ref), 1e-3 * float(np.abs(ref).max(initial=0.0)) + 1e-12)
                self._domain = np.stack([ref - half, ref + half], axis=1)
                self.domain_source = f"provisional: reference ± {PROVISIONAL_DOMAIN:.0%} (no ensemble summary shipped)"
        return self._domain

    @property
    def domain_sources(self) -> list:
        """Per active parameter, [source of the lower bound, source of the upper bound]."""
        _ = self.domain
        info = self._domain_info
        return info.get("sources", [[f"reference ± {PROVISIONAL_DOMAIN:.0%}"] * 2 for _ in self.active])

    def ranking(self, n_top: int = N_ACTIVE) -> dict:
        """Sensitivity ranking at this material's reference: ``{"top", "top_names", "scores", "same_set_as_active"}``."""
        s = self.basis.sensitivity(self.reference_params, self.grid.q.qpoints, n_top)
        top = [int(i) for i in s["top"]]
        return {
            "top": top,
            "top_names": [self.basis.names[i] for i in top],
            "scores": s["scores"],
            "same_set_as_active": set(top) == {int(i) for i in self.active},
            "same_order_as_active": top == [int(i) for i in self.active],
        }

    @property
    def reference_theta(self) -> np.ndarray:
        return self.reference_params[self.active].copy()

    def forward_model(self, sigma_mev: float = 1.0, resolution=None, backend="numpy", mesh=(4, 4, 4)):
        """A :class:`~fcinv_widgets.forward.ForwardModel` over the active parameters."""
        from .forward import ForwardModel

        # the type is part of the key: True == 1.0 (and hashes alike), but True is refused as a σ
        try:
            key = (type(sigma_mev).__name__, sigma_mev, repr(resolution), str(backend), tuple(mesh) if mesh is not None else None)
            hash(key)
        except TypeError:  # a list σ or mesh: not a cache key; the model's own checks name the problem
            key = None
        cache = self.__dict__.setdefault("_fm_cache", {})
        if key is None or key not in cache:
            with _one_blas_thread():
                fm = ForwardModel(
                    self.basis,
                    self.grid,
                    self.reference_params,
                    self.active,
                    sigma_mev=sigma_mev,
                    resolution=resolution,
                    backend=backend,
                    mesh=mesh,
                    names=self.active_names,
                )
                if key is None:
                    return fm
                cache[key] = fm
        return cache[key]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "crystal": self.crystal.to_dict(),
            "supercell_matrix": self.supercell_matrix.tolist(),
            "grid": self.grid.to_dict(),
            "conventional_a": self.conventional_a,
        }


def _cubic_grid(crystal: Crystal, a: float, points, path, e_max, e_step, q_step=0.025) -> SpectrumGrid:
    conv_to_prim = (crystal.lattice / a).T  # q_prim = Q_conv @ (A_prim / a)ᵀ
    conv_recip = 2 * np.pi / a * np.eye(3)
    q = build_qpath(points, path, conv_to_prim, conv_recip, step=q_step)
    return SpectrumGrid(q, EnergyGrid(0.0, e_max, e_step))


def _read_shipped_poscar(path: Path) -> Crystal:
    """A shipped POSCAR read with phonopy's reader instead of ASE's (importing ``ase.io`` costs
    ~1 s of every start-up), with ASE's arithmetic — Cartesian positions, then fractional again,
    wrapped into [0, 1) — so that the crystal is :func:`read_structure`'s to the bit (tested)."""
    try:
        from phonopy.interface.vasp import read_vasp

        atoms = read_vasp(str(path))
        lattice = np.asarray(atoms.cell, dtype=float)
        cart = np.asarray(atoms.scaled_positions, dtype=float) @ lattice
        frac = np.linalg.solve(lattice.T, cart.T).T
        frac %= 1.0
        frac %= 1.0
        return Crystal(lattice, frac, tuple(atoms.symbols))
    except Exception:  # pragma: no cover - a phonopy without this reader: the general path
        return read_structure(path)


def _ge() -> Material:
    cr = _read_shipped_poscar(data_path("ge", "POSCAR"))
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
REFERENCES = ("measured", "dft", "umlff")
DEFAULT_REFERENCE = "measured"


@cache
def _base_material(key: str) -> Material:
    return PRESETS[key]()


def get_material(name: str, reference: str | None = None) -> Material:
    """A preset by name, "Ge" or "Nb" (case-insensitive), at a named reference.

    reference : "measured" (default: the fit to measured phonons), "dft" (Ge: first-principles
        FCs) or "umlff" (the uMLFF ensemble median, the paper's choice).

    One object per (material, reference) however they are spelled ("Ge", "ge"; None,
    "measured"): its forward models are built once per process.
    """
    key = str(name).lower()
    if key not in PRESETS:
        raise FcinvError(
            f"unknown material {name!r}; presets: Ge, Nb (a crystal of your own: --structure and --force-constants, "
            "where the command takes them)"
        )
    ref = DEFAULT_REFERENCE if reference is None else str(reference).lower()
    if ref not in REFERENCES:
        raise FcinvError(f"unknown reference {reference!r}; choose one of: {', '.join(REFERENCES)}")
    return _material_at(key, ref)


def as_material(value, what: str = "material") -> Material:
    """``value`` when it is a :class:`Material`, the preset of that name when it is text ("Ge",
    "Nb"), else a one-line :class:`FcinvError` (the analysis and planner calls took any object and
    failed deep inside with an AttributeError)."""
    if isinstance(value, Material):
        return value
    if isinstance(value, str):
        return get_material(value)
    raise FcinvError(f"{what} must be a Material or a preset's name ('Ge', 'Nb'), got {type(value).__name__} {value!r}"[:200])


@cache
def _material_at(key: str, ref: str) -> Material:
    base = _base_material(key)
    if ref == "umlff":
        _ = base.reference_params
        return base
    if ref == "dft":
        if base.dft_params is None:
            raise FcinvError(f"no first-principles force constants ship for {base.name}; use reference 'measured' or 'umlff'")
        return base.with_reference(base.dft_params, "first-principles (DFT) force constants", "dft")
    fit = base.measured_fit
    if fit is None:
        raise MissingDependencyError(
            f"no fit to measured phonons ships for {base.name} (data/measured/{key}-fit.json); "
            f"make it with `fcinv fit-dispersion --material {base.name} --out …` or use reference 'umlff'"
        )
    src = (
        f"fit to measured phonons ({fit.table_meta.get('source', '')[:60]}…; "
        f"chi2/dof {fit.reduced_chi2:.2f}, prior {fit.prior['kind'] if fit.prior else 'none'})"
    )
    return base.with_reference(fit.params, src, "measured")


def material_for_model(config: dict) -> Material:
    """The preset a trained model belongs to, at the reference its training data used.

    ``config``: the checkpoint's config (``material``, ``names``, optional ``reference``;
    checkpoints from before references were named were trained at "umlff"). Refuses a
    model whose parameter names differ from the material's active set, so that model
    outputs and forward models never silently mix two parameterisations. The training
    domain to use with the model is the checkpoint's own ``config["domain"]``.
    """
    from .errors import GridMismatchError

    mat = get_material(config["material"], reference=config.get("reference", "umlff"))
    if config.get("reference_params") is not None:
        ref = np.asarray(config["reference_params"], float)
        if ref.shape != mat.reference_params.shape or not np.all(np.isfinite(ref)):
            raise GridMismatchError(
                f"the model's reference has {ref.size} parameters, the {mat.name} basis {mat.reference_params.size}"
            )
        if not np.array_equal(ref, mat.reference_params):  # the named reference was refitted since
            mat = mat.with_reference(
                ref,
                f"the model's own reference ({config.get('reference')!r} when it was trained)",
                str(config.get("reference", "custom")),
            )
    names = list(config.get("names", []))
    if names and names != list(mat.active_names):
        raise GridMismatchError(
            f"the model's parameters {names} are not the {mat.name} preset's active set "
            f"{list(mat.active_names)}; it cannot be combined with this forward model"
        )
    return mat


#: the energy range (meV) of a custom material's grid when nothing says otherwise (the presets' range)
DEFAULT_E_MAX_MEV = 70.0


def energy_top_for(max_mode_mev: float, default: float = DEFAULT_E_MAX_MEV) -> float:
    """The top of the energy grid (meV) for a crystal whose highest mode is ``max_mode_mev``: 15 %
    above it, rounded up to 10 meV (at least 10 meV), so a stiff crystal's optic branches are not
    cut off and a soft one's image is not mostly empty above its modes (hcp Mg's 22 meV → 0–30 meV,
    which an Ei of 35 meV covers). ``default`` when the highest mode is not a positive number.
    """
    m = float(max_mode_mev)
    if not np.isfinite(m) or m <= 0:
        return float(default)
    return float(max(10.0, np.ceil(1.15 * m / 10.0) * 10.0))


def custom_material(
    structure,
    force_constants=None,
    supercell=None,
    name: str = "custom",
    e_max: float | None = None,
    e_step: float = 0.5,
    q_step: float = 0.025,
    *,
    source: str | None = None,
) -> Material:
    """A material from a structure file (POSCAR/CIF) and optional phonopy force constants.

    ``supercell``: phonopy's supercell matrix (DIM) of the structure's cell, 3 or 3×3 integers; by
    default a phonopy.yaml's own (its unit cell checked against ``structure``, :func:`phonopy_yaml_for`),
    else inferred from the force constants (:func:`infer_supercell`), 4×4×4 without them. Force
    constants that do not fit the structure's symmetry basis are refused (:func:`reduce_given`);
    ``source`` names them in messages (default: their file name, if a file was given).
    The q-path is the SeeK-path/Hinuma path of the structure's Bravais lattice. The energy grid runs
    from 0 to ``e_max`` meV in ``e_step`` bins; by default (``None``) up to 15 % above the force
    constants' highest mode on the path (:func:`energy_top_for`), 0–70 meV without them — except
    for a preset's crystal on the preset's path (a user's own Ge), which gets the preset's grid
    (:func:`preset_energy_grid`).
    """
    import os

    from .fcio import read_force_constants
    from .validate import finite_number, supercell_matrix

    # the Python API's own checks (the CLI parses its options first): one FcinvError naming the argument
    q_step = finite_number(q_step, "q_step (r.l.u.)", positive=True, maximum=1.0)
    e_step = finite_number(e_step, "e_step (meV)", positive=True, maximum=100.0)
    if not (force_constants is None or isinstance(force_constants, (np.ndarray, str, os.PathLike))):
        raise FcinvError(
            f"force_constants must be a file path or a NumPy array of force constants, got {type(force_constants).__name__}"
        )
    if supercell is not None:
        supercell = supercell_matrix(supercell, "supercell")

    cr = structure if isinstance(structure, Crystal) else read_structure(structure)
    from .fcio import is_phonopy_yaml

    fc, file_smat = None, None
    if isinstance(force_constants, np.ndarray):
        fc = force_constants
    elif force_constants is not None and is_phonopy_yaml(force_constants):  # it knows its cell and supercell
        fc, file_smat = phonopy_yaml_for(force_constants, cr)
    elif force_constants is not None:
        fc = read_force_constants(os.fspath(force_constants))
        if not isinstance(structure, Crystal):
            warn_cif_frame(structure, cr, force_constants)
    if supercell is None:
        smat = file_smat if file_smat is not None else infer_supercell(cr, fc) if fc is not None else np.diag([4, 4, 4])
    else:
        smat = supercell  # (3, 3), checked above
    grid, a = seekpath_grid(cr, DEFAULT_E_MAX_MEV if e_max is None else e_max, e_step, q_step)
    preset = preset_energy_grid(cr, grid) if e_max is None and (e_step, q_step) == (0.5, 0.025) else None
    if preset is not None:  # a user's own Ge: the preset's grid, so that its models read what it writes
        grid = SpectrumGrid(grid.q, preset)
    mat = Material(name, cr, smat, grid, a)
    if fc is not None:
        where = source or (None if isinstance(force_constants, np.ndarray) else str(force_constants))
        params, resid = reduce_given(mat.basis, fc, where)
        mat = given_reference(
            mat, params, f"{where or 'given force constants'} (projection residual {resid['relative']:.2e})", e_max
        )
    return mat


def warn_cif_frame(structure, crystal: Crystal, force_constants) -> None:
    """A CIF fixes no Cartesian frame (it is read with a along x and b in the xy plane) while force
    constants are Cartesian in the frame of the file they were computed on. For a crystal with
    enough symmetry a wrong frame leaves the force constants outside the symmetry basis and is
    refused (:func:`reduce_given`); a triclinic or monoclinic crystal's basis cannot see it, and the
    frequencies never do — only the eigenvectors (S(Q,E): up to 21 % of the peak per Q in a probe on
    a turned monoclinic Ag cell) are wrong. Said once, for those crystals only."""
    import warnings

    from .errors import FcinvWarning

    if Path(str(structure)).suffix.lower() not in (".cif", ".mcif"):
        return
    from .structure import symmetry_dataset

    ds = symmetry_dataset(crystal)
    if ds is None:  # nothing to judge by
        return
    number = int(ds.number)
    if number <= 15:
        warnings.warn(
            FcinvWarning(
                f"{structure} is a CIF of a {'triclinic' if number <= 2 else 'monoclinic'} crystal: it is read with a along x "
                f"and b in the xy plane, and {force_constants} must be Cartesian in that frame — its symmetry cannot tell "
                "(give the POSCAR the force constants were computed on, or a phonopy.yaml, to be sure)"
            ),
            stacklevel=3,
        )


def preset_energy_grid(crystal: Crystal, grid: SpectrumGrid) -> EnergyGrid | None:
    """The energy axis (meV) of the preset whose crystal ``crystal`` is — the same elements and, on
    ``grid``'s q-path, the preset's path (the same labels at the same bins, its length in Å⁻¹ within
    :data:`~fcinv_widgets.analysis.expio.MAX_PATH_LENGTH_MISMATCH`) — so that a user's own Ge
    structure writes files on the grid the Ge models read; None for any other crystal."""
    from .analysis.expio import MAX_PATH_LENGTH_MISMATCH

    own = sorted(set(crystal.symbols))
    for key in PRESETS:
        p = _base_material(key)
        if sorted(set(p.crystal.symbols)) != own or p.grid.q.nq != grid.q.nq or p.grid.q.labels != grid.q.labels:
            continue
        ratio = float(np.ptp(grid.q.distance) / np.ptp(p.grid.q.distance))
        if abs(ratio - 1) <= MAX_PATH_LENGTH_MISMATCH:
            return p.grid.e
    return None


#: a phonopy.yaml's unit cell may differ from the --structure file's lattice by this much (relative) —
#: force constants are often used at another lattice constant (the experiment's) — with a warning
YAML_LATTICE_TOLERANCE = 0.05


def phonopy_yaml_for(path, given: Crystal) -> tuple:
    """(force constants (eV/Å²), supercell matrix) of a ``phonopy.yaml`` given with the structure
    ``given`` (the CLI's ``--structure``, :func:`custom_material`'s ``structure``), whose unit cell
    must be given's: the same species in the same order at the same fractional positions (to
    1e-3), lattices within :data:`YAML_LATTICE_TOLERANCE` (a warning above 1e-4; given's geometry
    is used); else refused in one line naming both (:func:`fcio.read_phonopy_yaml_unitcell`)."""
    import warnings

    from .errors import FcinvWarning, ForceConstantsError
    from .fcio import read_phonopy_yaml_unitcell

    unit, fc, smat = read_phonopy_yaml_unitcell(path)
    same = unit.n_atoms == given.n_atoms and list(unit.symbols) == list(given.symbols)
    strain, rot = np.inf, np.eye(3)
    if same:
        shift = np.asarray(unit.positions) - np.asarray(given.positions)
        shift -= np.rint(shift)  # the same site, wrapped into the cell or not
        # the same cell may sit in another Cartesian frame (a CIF is read with a along x, b in the xy
        # plane): the rotation taking the yaml's lattice onto the structure's, its strain measured after it
        rot = frame_rotation(unit.lattice, given.lattice)
        strain = float(np.linalg.norm(unit.lattice @ rot.T - given.lattice) / np.linalg.norm(given.lattice))
        same = bool(np.abs(shift).max() <= 1e-3) and strain <= YAML_LATTICE_TOLERANCE
    if not same:
        lat = " × ".join(f"{v:.3f}" for v in np.linalg.norm(unit.lattice, axis=1))
        raise ForceConstantsError(
            f"{path}: its force constants are for its own unit cell ({unit.n_atoms} atoms, {lat} Å), not the --structure "
            f"file's ({given.n_atoms} atoms, {' × '.join(f'{v:.3f}' for v in np.linalg.norm(given.lattice, axis=1))} Å): "
            "give that unit cell as --structure (--primitive then reduces it if wanted)"
        )
    if strain > 1e-4:
        warnings.warn(
            FcinvWarning(
                f"{path}: its unit cell's lattice differs from the --structure file's by {strain:.1%}: its force constants "
                "are used with the structure file's geometry"
            ),
            stacklevel=2,
        )
    if not np.allclose(rot, np.eye(3), atol=1e-8):
        # Cartesian tensors: each 3×3 block turned into the structure file's frame (frequencies do not
        # change; the eigenvectors, and so S(Q,E), do — they were silently in the wrong frame)
        fc = np.einsum("ab,ijbc,dc->ijad", rot, fc, rot)
        angle = float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1))))
        warnings.warn(
            FcinvWarning(
                f"{path}: its unit cell is the --structure file's in another Cartesian orientation (turned by {angle:.1f}°): "
                "its force constants were rotated into the structure file's frame"
            ),
            stacklevel=2,
        )
    return fc, smat


def frame_rotation(from_lattice, to_lattice) -> np.ndarray:
    """The proper rotation R (3×3) nearest to taking the lattice vectors ``from_lattice`` (rows, Å) onto
    ``to_lattice``'s (``to ≈ from @ R.T``): the polar factor of ``solve(from, to).T``; the identity
    when they are one frame. How far they are from one cell is for the caller to measure after it."""
    m = np.linalg.solve(np.asarray(from_lattice, float), np.asarray(to_lattice, float)).T
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    if np.linalg.det(r) < 0:  # a reflection is not a change of frame
        return np.eye(3)
    return r


#: given force constants whose relative projection residual (‖Φ − Φ_basis‖ / ‖Φ‖) exceeds this are
#: refused: they belong to another structure, atom order or supercell. Measured (session 41): a
#: structure's own force constants leave 5e-5 (pair potential) to 1.7e-3 (Ge, first principles);
#: hcp Mg's 3×3×2 set read as any other diagonal supercell of 18 cells leaves 0.30–0.40.
MAX_PROJECTION_RESIDUAL = 0.25
#: … and above this a warning says that much of them lies outside the symmetry basis (noisy or
#: unsymmetrised force constants: 1 % of the largest element as noise on every element leaves 0.16)
WARN_PROJECTION_RESIDUAL = 0.05


def reduce_given(basis: FCBasis, fc, where: str | None = None) -> tuple:
    """:meth:`FCBasis.reduce` of a user's force constants (eV/Å²), checked: refused
    (:class:`~fcinv_widgets.errors.ForceConstantsError`) when more than
    :data:`MAX_PROJECTION_RESIDUAL` of them lies outside the basis, warned about above
    :data:`WARN_PROJECTION_RESIDUAL`; ``where`` (a file name) leads the message. Returns (params,
    residual) as ``reduce`` does."""
    import warnings

    from .errors import FcinvWarning, ForceConstantsError

    params, resid = basis.reduce(fc)
    r = resid["relative"]
    lead = f"{where}: " if where else ""
    sm = np.asarray(basis.supercell_matrix)
    dim = " ".join(str(int(v)) for v in (np.diag(sm) if np.count_nonzero(sm - np.diag(np.diag(sm))) == 0 else sm.ravel()))
    if not r <= MAX_PROJECTION_RESIDUAL:
        raise ForceConstantsError(
            f"{lead}the force constants do not fit this structure's symmetry basis on the supercell {dim} ({r:.0%} of them "
            "lie outside it): "
            "they belong to another structure, atom order, supercell (--supercell is phonopy's DIM of the structure file's cell) "
            "or Cartesian frame (force constants are Cartesian in the frame of the file they were computed on; a CIF is read "
            "with a along x and b in the xy plane: give that POSCAR or a phonopy.yaml instead)"
        )
    if r > WARN_PROJECTION_RESIDUAL:
        warnings.warn(
            FcinvWarning(
                f"{lead}{r:.0%} of the force constants lie outside this structure's symmetry basis (kept: the projection "
                "onto it); "
                "noisy or unsymmetrised force constants, or another structure"
            ),
            stacklevel=2,
        )
    return params, resid


#: at most this many diagonal supercells are tried by :func:`infer_supercell`
MAX_SUPERCELL_CANDIDATES = 6


def infer_supercell(crystal: Crystal, fc) -> np.ndarray:
    """Phonopy's supercell matrix (DIM, 3×3 integers) of ``crystal``'s cell that force constants
    ``fc`` ((n, N, 3, 3), compact or full) were computed on. N = n_cell·n³ gives n×n×n. Otherwise the
    diagonal supercells of N / n_cell cells are tried, the most nearly isotropic first (at most
    :data:`MAX_SUPERCELL_CANDIDATES`; each is a symmetry analysis, seconds for a few hundred atoms),
    and the first the force constants fit (projection residual ≤ :data:`WARN_PROJECTION_RESIDUAL`;
    read as a wrong one they leave 30–40 % outside) is returned; none fitting is refused with the
    candidates tried (give the supercell)."""
    from .errors import ForceConstantsError

    n_prim, shape = crystal.n_atoms, np.shape(fc)
    if len(shape) != 4 or shape[2:] != (3, 3) or shape[0] not in (n_prim, shape[1]):
        raise ForceConstantsError(
            f"force constants of shape {shape} are neither compact ({n_prim}, N, 3, 3) nor full (N, N, 3, 3) for this "
            f"{n_prim}-atom cell: give the structure file the force constants were computed from"
        )
    n_super = int(shape[1])
    ratio = n_super // n_prim
    if n_super % n_prim or ratio < 1:
        raise ForceConstantsError(
            f"force constants over {n_super} supercell atoms cannot belong to a supercell of this {n_prim}-atom cell: "
            "give the structure file the force constants were computed from"
        )
    n = round(ratio ** (1 / 3))
    if n**3 == ratio:
        return np.diag([n, n, n])
    lengths = np.linalg.norm(crystal.lattice, axis=1)
    cands = [
        (a, b, ratio // (a * b))
        for a in range(1, ratio + 1)
        if ratio % a == 0
        for b in range(1, ratio // a + 1)
        if (ratio // a) % b == 0
    ]
    cands.sort(key=lambda d: (float(np.ptp(np.log(np.array(d) * lengths))), d))
    tried = []
    for d in cands[:MAX_SUPERCELL_CANDIDATES]:
        try:
            r = FCBasis(crystal, np.diag(d)).reduce(fc)[1]["relative"]
        except FcinvError:  # (a supercell phonopy cannot build: too many atoms)
            continue
        if r <= WARN_PROJECTION_RESIDUAL:
            return np.diag(d)
        tried.append(f"{d[0]} {d[1]} {d[2]} ({r:.0%} outside)")
    raise ForceConstantsError(
        f"cannot infer the supercell of force constants over {n_super} atoms ({ratio} cells of {n_prim} atoms): "
        f"they fit none of the diagonal supercells tried ({'; '.join(tried) or 'none'}); give --supercell (3 or 9 integers, "
        "phonopy's DIM), or the structure file they were computed on (a CIF fixes no Cartesian frame: force constants "
        "computed in another orientation fit no supercell of it)"
    )


def given_reference(mat: Material, params, source: str, e_max: float | None = None) -> Material:
    """A custom material with the user's own parameters (eV/Å², every basis parameter) as its
    reference: the top-8 active set is chosen at them and, unless ``e_max`` (meV) was given or the
    crystal is a preset's on its path (:func:`preset_energy_grid`), the energy grid is sized to
    their highest mode (:func:`energy_top_for`)."""
    params = mat.basis._check_params(params)
    out = mat.with_reference(params, source, "given")
    if e_max is None and preset_energy_grid(out.crystal, out.grid) is None:
        g = out.grid
        top = energy_top_for(highest_mode_mev(out.basis, params, g))
        if top != g.e.e_max:
            out.grid = SpectrumGrid(g.q, EnergyGrid(g.e.e_min, top, g.e.step))
    return out


def highest_mode_mev(basis: FCBasis, params, grid: SpectrumGrid) -> float:
    """The highest phonon energy (meV) of ``params`` (eV/Å², all basis parameters) on the grid's q-path.

    Kept on the basis for the last few (params, path) pairs: a ``--structure`` material with force
    constants asks twice (its grid's top in :func:`custom_material`, then the energy-cut warning),
    ~1 s each for an 18-mode crystal."""
    from .units import THZ_TO_MEV

    p = np.asarray(params, float)
    qp = np.asarray(grid.q.qpoints, float)
    key = (p.tobytes(), p.shape, qp.tobytes(), qp.shape)
    cache = basis.__dict__.setdefault("_highest_mode_cache", {})
    if key not in cache:
        if len(cache) >= 8:
            cache.clear()
        cache[key] = float(np.nanmax(basis.frequencies_thz(p, qp))) * THZ_TO_MEV
    return cache[key]


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
        points[display_label(label)] = tuple(cart_sp @ conv.T / (2 * np.pi))
    path = [(display_label(a), display_label(b)) for a, b in res["path"]]  # "SIGMA_0" → "Σ₀"
    a = float(np.linalg.norm(conv[0]))
    conv_recip = 2 * np.pi * np.linalg.inv(conv_cart).T
    # q_prim_i = Q_cart · a_i / 2π with Q_cart = Q_conv @ conv_recip
    conv_to_prim = (conv_recip @ crystal.lattice.T) / (2 * np.pi)
    q = build_qpath(points, path, conv_to_prim, conv_recip, step=q_step)
    return SpectrumGrid(_in_uv_cell(q, crystal, conv_recip), EnergyGrid(0.0, e_max, e_step)), a


def _in_uv_cell(q: QPath, crystal: Crystal, sp_recip: np.ndarray) -> QPath:
    """The path's conventional r.l.u. (SeeK-path's standard cell) re-expressed in the cell the scan
    axes u/v are given in (:func:`~fcinv_widgets.scans.uv_cell`), so that one file, widget or JSON
    never means two cells by "conventional r.l.u." (session 48: a bct file with c along x had X at
    q_conventional (0.5, 0.5, 0) but --u 0,1,0 for that direction; a reverse-setting hexagonal cell
    had its a–b axes turned by 60°). Binning, q-points and distances are SeeK-path's as before; the
    cells are two conventional cells of one lattice, so the map is an integer one (rounded)."""
    from .scans import uv_cell

    cell, _ = uv_cell(crystal, warn=False)
    M = sp_recip @ np.asarray(cell, float).T / (2 * np.pi)  # Q_uv = Q_seekpath @ M
    if np.abs(M - np.rint(M)).max() < 1e-6:
        M = np.rint(M)
    if np.array_equal(M, np.eye(3)):
        return q
    segs = tuple(
        replace(s, start_q=tuple(np.asarray(s.start_q, float) @ M + 0.0), end_q=tuple(np.asarray(s.end_q, float) @ M + 0.0))
        for s in q.segments
    )
    return replace(q, segments=segs, conventional_qpoints=np.asarray(q.conventional_qpoints, float) @ M + 0.0)
