"""Crystal structures: a small immutable :class:`Crystal` and readers (ASE) for POSCAR/CIF."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import StructureError


@dataclass(frozen=True)
class Crystal:
    """A periodic crystal.

    Attributes
    ----------
    lattice : (3, 3) array, Å — rows are the lattice vectors a1, a2, a3.
    positions : (n, 3) array — fractional coordinates.
    symbols : tuple of str — chemical symbols.
    masses : (n,) array, amu.
    """

    lattice: np.ndarray
    positions: np.ndarray
    symbols: tuple
    masses: np.ndarray = field(default=None)

    def __post_init__(self):
        lat = np.asarray(self.lattice, dtype=float)
        pos = np.asarray(self.positions, dtype=float)
        if lat.shape != (3, 3) or not np.all(np.isfinite(lat)):
            raise StructureError(f"lattice must be a finite 3×3 array in Å, got shape {lat.shape}")
        if abs(np.linalg.det(lat)) < 1e-6:
            raise StructureError("lattice vectors are linearly dependent (cell volume ~ 0)")
        if pos.ndim != 2 or pos.shape[1] != 3 or len(pos) == 0 or not np.all(np.isfinite(pos)):
            raise StructureError(f"positions must be a finite (n, 3) array, got shape {pos.shape}")
        symbols = tuple(str(s) for s in self.symbols)
        if len(symbols) != len(pos):
            raise StructureError(f"{len(symbols)} symbols for {len(pos)} positions")
        if self.masses is None:
            from ase.data import atomic_masses, atomic_numbers

            try:
                masses = np.array([atomic_masses[atomic_numbers[s]] for s in symbols])
            except KeyError as exc:
                raise StructureError(f"unknown chemical symbol {exc.args[0]!r}") from None
        else:
            masses = np.asarray(self.masses, dtype=float)
            if masses.shape != (len(pos),) or np.any(masses <= 0):
                raise StructureError("masses must be positive, one per atom (amu)")
        object.__setattr__(self, "lattice", lat)
        object.__setattr__(self, "positions", pos)
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "masses", masses)

    @property
    def n_atoms(self) -> int:
        return len(self.positions)

    @property
    def numbers(self) -> np.ndarray:
        from ase.data import atomic_numbers

        return np.array([atomic_numbers[s] for s in self.symbols])

    @property
    def cartesian_positions(self) -> np.ndarray:
        return self.positions @ self.lattice

    @property
    def reciprocal_lattice(self) -> np.ndarray:
        """Rows b1, b2, b3 with a_i · b_j = 2π δ_ij (Å⁻¹)."""
        return 2 * np.pi * np.linalg.inv(self.lattice).T

    def to_phonopy_atoms(self):
        from phonopy.structure.atoms import PhonopyAtoms

        return PhonopyAtoms(
            symbols=list(self.symbols),
            cell=self.lattice,
            scaled_positions=self.positions,
            masses=self.masses,
        )

    def to_ase(self):
        from ase import Atoms

        return Atoms(
            symbols=list(self.symbols),
            cell=self.lattice,
            scaled_positions=self.positions,
            masses=self.masses,
            pbc=True,
        )

    @classmethod
    def from_ase(cls, atoms) -> "Crystal":
        return cls(
            lattice=np.array(atoms.cell),
            positions=atoms.get_scaled_positions(wrap=True),
            symbols=tuple(atoms.get_chemical_symbols()),
            masses=atoms.get_masses(),
        )

    def to_dict(self) -> dict:
        return {
            "lattice": self.lattice.tolist(),
            "positions": self.positions.tolist(),
            "symbols": list(self.symbols),
            "masses": self.masses.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Crystal":
        return cls(d["lattice"], d["positions"], tuple(d["symbols"]), d.get("masses"))


def read_structure(path: str | Path, fmt: str | None = None) -> Crystal:
    """Read a structure file (POSCAR/CONTCAR, CIF, or anything ASE reads).

    Raises :class:`StructureError` with the file name when the file is missing or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise StructureError(f"structure file not found: {path}")
    import ase.io

    if fmt is None and (path.name.upper().startswith(("POSCAR", "CONTCAR")) or path.suffix.lower() == ".vasp"):
        fmt = "vasp"
    try:
        atoms = ase.io.read(str(path), format=fmt)
    except Exception as exc:  # ASE raises many different types on malformed input
        raise StructureError(f"cannot read structure from {path}: {type(exc).__name__}: {exc}") from None
    if isinstance(atoms, list):
        atoms = atoms[-1]
    if not all(atoms.pbc) or atoms.cell.rank != 3:
        raise StructureError(f"{path} does not describe a 3-D periodic crystal")
    return Crystal.from_ase(atoms)
