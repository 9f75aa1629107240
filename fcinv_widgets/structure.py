"""Crystal structures: a small immutable :class:`Crystal` and readers (ASE) for POSCAR/CIF.

A :class:`Crystal` is checked when it is made: a finite, right-handed lattice of non-zero
volume, at least one atom, known chemical symbols, no two atoms closer than
:data:`MIN_DISTANCE_A`. Masses default to phonopy's table (so frequencies match phonopy's);
:meth:`Crystal.with_masses` overrides them per species. :func:`to_primitive` reduces a cell
explicitly; nothing else changes the cell a user gives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from typing import Any
from numpy.typing import ArrayLike

from .errors import StructureError

#: two atoms closer than this (Å, periodic images included) are refused as overlapping
MIN_DISTANCE_A = 0.5
#: largest cell read (atoms); the force-constant basis of a larger cell would not fit in memory
MAX_ATOMS = 1000
#: largest lattice vector component accepted (Å): beyond it a file is not a crystal's unit cell (a wrong
#: scale factor, e.g. 1e5 for 5.78)
MAX_LATTICE_A = 1000.0


def phonopy_mass(symbol: str) -> float:
    """Standard atomic mass (amu) of ``symbol`` from phonopy's table (what phonopy uses by default)."""
    from phonopy.structure.atomic_data import get_atomic_data

    data = get_atomic_data()
    z = data.symbol_map.get(str(symbol))
    if z is None:
        raise StructureError(f"unknown chemical symbol {symbol!r}")
    mass = data.atom_data[z][3]
    if mass is None:
        raise StructureError(f"phonopy has no standard mass for {symbol!r}; give it (e.g. --mass {symbol}=…)")
    return float(mass)


@dataclass(frozen=True, init=False)
class Crystal:
    """A periodic crystal.

    Attributes
    ----------
    lattice : (3, 3) array, Å — rows are the lattice vectors a1, a2, a3.
    positions : (n, 3) array — fractional coordinates.
    symbols : tuple of str — chemical symbols.
    masses : (n,) array, amu.

    The constructor takes array-likes and ``masses=None`` (phonopy's table); the attributes
    are always the checked float arrays and a tuple of str.
    """

    lattice: np.ndarray
    positions: np.ndarray
    symbols: tuple[str, ...]
    masses: np.ndarray

    def __init__(self, lattice: ArrayLike, positions: ArrayLike, symbols: Iterable[str], masses: ArrayLike | None = None) -> None:
        try:
            lat = np.asarray(lattice, dtype=float)
            pos = np.asarray(positions, dtype=float)
        except (TypeError, ValueError):
            raise StructureError("lattice and positions must be numeric arrays") from None
        if lat.shape != (3, 3) or not np.all(np.isfinite(lat)):
            raise StructureError(
                f"lattice must be a finite 3×3 array in Å, got shape {lat.shape}"
                + ("" if lat.shape != (3, 3) else " with NaN or inf")
            )
        longest = float(np.abs(lat).max())  # within √3 of the longest vector; no overflow
        if longest > MAX_LATTICE_A:
            raise StructureError(f"lattice component of {longest:.3g} Å (at most {MAX_LATTICE_A:g} Å): check the scale factor")
        det = np.linalg.det(lat)
        if abs(det) < 1e-6:
            raise StructureError("lattice vectors are linearly dependent (cell volume ~ 0)")
        if det < 0:
            raise StructureError("left-handed lattice (a1 · (a2 × a3) < 0): swap two lattice vectors or negate one")
        if pos.size == 0:
            raise StructureError("the structure has no atoms")
        if pos.ndim != 2 or pos.shape[1] != 3 or not np.all(np.isfinite(pos)):
            raise StructureError(f"positions must be a finite (n, 3) array, got shape {pos.shape}")
        if len(pos) > MAX_ATOMS:
            raise StructureError(f"{len(pos)} atoms in the cell; at most {MAX_ATOMS} are supported")
        syms = tuple(str(s) for s in symbols)
        if len(syms) != len(pos):
            raise StructureError(f"{len(syms)} symbols for {len(pos)} positions")
        if masses is None:
            table = {s: phonopy_mass(s) for s in set(syms)}
            m = np.array([table[s] for s in syms])
        else:
            try:
                m = np.asarray(masses, dtype=float)
            except (TypeError, ValueError):
                raise StructureError("masses must be numbers (amu)") from None
            if m.shape != (len(pos),) or not np.all(np.isfinite(m)) or np.any(m <= 0):
                raise StructureError("masses must be positive, one per atom (amu)")
        _check_no_overlap(lat, pos, syms)
        object.__setattr__(self, "lattice", lat)
        object.__setattr__(self, "positions", pos)
        object.__setattr__(self, "symbols", syms)
        object.__setattr__(self, "masses", m)

    def with_masses(self, masses: dict | None) -> Crystal:
        """A copy with the masses (amu) of the species in ``masses`` ({symbol: amu}) replaced."""
        if not masses:
            return self
        unknown = sorted(set(masses) - set(self.symbols))
        if unknown:
            raise StructureError(
                f"mass given for {unknown[0]!r}, which is not in the structure ({', '.join(sorted(set(self.symbols)))})"
            )
        m = np.array([float(masses.get(s, mi)) for s, mi in zip(self.symbols, self.masses)])
        return Crystal(self.lattice, self.positions, self.symbols, m)

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
        """From ASE ``Atoms``; masses only when set explicitly on them (else phonopy's table)."""
        return cls(
            lattice=np.array(atoms.cell),
            positions=atoms.get_scaled_positions(wrap=True),
            symbols=tuple(atoms.get_chemical_symbols()),
            masses=atoms.get_masses() if atoms.has("masses") else None,
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


def _check_no_overlap(lattice, positions, symbols) -> None:
    """Refuse two atoms (or an atom and a periodic image) closer than MIN_DISTANCE_A."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    atoms = Atoms(numbers=np.zeros(len(positions), int), cell=lattice, scaled_positions=positions, pbc=True)
    i, j, d = neighbor_list("ijd", atoms, MIN_DISTANCE_A, self_interaction=False)
    if len(d):
        k = int(np.argmin(d))
        a, b = int(i[k]), int(j[k])
        what = f"atom {a + 1} ({symbols[a]}) and " + ("its own periodic image" if a == b else f"atom {b + 1} ({symbols[b]})")
        raise StructureError(
            f"overlapping atoms: {what} are {d[k]:.3f} Å apart (< {MIN_DISTANCE_A} Å); "
            "check for duplicated sites or a too-small cell"
        )


def symmetry_dataset(crystal: Crystal, symprec: float = 1e-5):
    """spglib's symmetry dataset of ``crystal`` (attributes ``number``, ``transformation_matrix``, …;
    spglib ≥ 2.5 returns an object, older ones a dict — both read by attribute here), or None when
    spglib finds none or fails on the cell."""
    import types

    import spglib

    cell: Any = (np.asarray(crystal.lattice, float), crystal.positions, crystal.numbers)
    try:
        ds: Any = spglib.get_symmetry_dataset(cell, symprec=symprec)
    except Exception:  # noqa: BLE001 — spglib raises its own C++ error types on odd cells
        return None
    return types.SimpleNamespace(**ds) if isinstance(ds, dict) else ds


def to_primitive(crystal: Crystal, primitive="auto", symprec: float = 1e-5) -> tuple:
    """Reduce ``crystal`` to a primitive cell, explicitly (nothing else does).

    ``primitive``: ``"auto"`` (phonopy's guess from the symmetry), a centring letter
    (``"P"``, ``"F"``, ``"I"``, ``"A"``, ``"C"``, ``"R"``: phonopy's matrices for a conventional
    cell of that centring) or a 3×3 matrix M with a_prim = Mᵀ-columns of the given cell
    (phonopy's ``primitive_matrix`` convention). Returns ``(Crystal, M)``; masses are kept.
    """
    from phonopy.structure.cells import get_primitive, get_primitive_matrix_with_auto

    if isinstance(primitive, str):
        key = primitive.strip()
        key = "auto" if key.lower() == "auto" else key.upper()
        if key not in ("auto", "P", "F", "I", "A", "C", "R"):
            raise StructureError(f"--primitive must be auto, P, F, I, A, C, R or 9 numbers, got {primitive!r}")
        primitive = key
    else:
        primitive = np.asarray(primitive, dtype=float).reshape(3, 3)
    try:
        pmat = np.asarray(get_primitive_matrix_with_auto(crystal.to_phonopy_atoms(), primitive, symprec=symprec), float)
        if pmat.shape != (3, 3) or not np.all(np.isfinite(pmat)) or abs(np.linalg.det(pmat)) < 1e-8:
            raise ValueError("singular primitive matrix")
        prim = get_primitive(crystal.to_phonopy_atoms(), pmat, symprec=symprec)
    except (ValueError, RuntimeError, TypeError) as exc:
        why = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        if "trimming" in why.lower():  # phonopy's words for a centring the cell does not have
            why = "its lattice points are not a centring of this cell's lattice: choose the centring the cell has, or auto"
        raise StructureError(
            f"primitive matrix {primitive if isinstance(primitive, str) else primitive.tolist()} does not reduce this cell ({why})"
        ) from None
    out = Crystal(np.array(prim.cell), np.array(prim.scaled_positions), tuple(prim.symbols), np.array(prim.masses))
    return out, pmat


def read_structure(path: str | Path, fmt: str | None = None) -> Crystal:
    """Read a structure file (POSCAR/CONTCAR, CIF, or anything ASE reads).

    Raises :class:`StructureError` with the file name when the file is missing or malformed.
    """
    from .validate import as_path, not_a_file

    path = Path(as_path(path, "structure file"))
    if not path.is_file():
        raise StructureError(not_a_file(path, "structure file"))
    import ase.io

    if fmt is None and (path.name.upper().startswith(("POSCAR", "CONTCAR")) or path.suffix.lower() == ".vasp"):
        fmt = "vasp"
    if fmt is None:
        from ase.io.formats import filetype

        try:
            fmt = filetype(str(path), guess=True)
        except Exception:  # noqa: BLE001 — unknown format: ase.io.read below says so
            fmt = None
    if fmt == "vasp":
        _check_vasp_species(path)
    try:
        with np.errstate(all="ignore"):  # NaN/inf in the file: refused below, not warned about
            atoms = ase.io.read(str(path), format=fmt)
    except Exception as exc:  # ASE raises many different types on malformed input
        raise StructureError(f"cannot read structure from {path}: {type(exc).__name__}: {exc}") from None
    if isinstance(atoms, list):
        if not atoms:
            raise StructureError(f"{path}: no structure in the file")
        atoms = atoms[-1]
    if len(atoms) == 0:
        raise StructureError(f"{path}: the structure has no atoms")
    occupancy = atoms.info.get("occupancy") or {}
    for site, occ in occupancy.items():
        if any(abs(float(v) - 1.0) > 1e-3 for v in occ.values()) or len(occ) > 1:
            mix = ", ".join(f"{k} {float(v):g}" for k, v in occ.items())
            raise StructureError(
                f"{path}: partial occupancy at site {site} ({mix}); give an ordered structure (one species per site, occupancy 1)"
            )
    if not all(atoms.pbc) or atoms.cell.rank != 3:
        raise StructureError(f"{path} does not describe a 3-D periodic crystal")
    with np.errstate(all="ignore"):
        raw = atoms.get_scaled_positions(wrap=False)
    if np.any(np.abs(raw) > 1e3):  # finite but wrapping it would keep only rounding noise
        i = int(np.argmax(np.abs(raw).max(axis=1)))
        raise StructureError(
            f"{path}: atom {i + 1} lies {np.abs(raw[i]).max():.3g} cells outside the cell; check its coordinates"
        )
    try:
        return Crystal.from_ase(atoms)
    except StructureError as exc:
        raise StructureError(f"{path}: {exc}") from None


def _check_vasp_species(path: Path) -> None:
    """A VASP 5 file's element line and count line must name as many species (ASE pairs them up
    silently, dropping the extra element or count)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return
    lines = text[5:7]
    if len(lines) < 2:
        return
    names, counts = lines[0].split(), lines[1].split()
    if names and counts and all(n.isalpha() for n in names) and all(c.lstrip("+").isdigit() for c in counts):
        if len(names) != len(counts):
            raise StructureError(
                f"{path}: {len(names)} element symbols ({' '.join(names)}) but {len(counts)} atom counts ({' '.join(counts)})"
            )
    _check_vasp_positions(path, text)


def _floats(line: str, n: int = 3) -> bool:
    parts = line.split()[:n]
    try:
        return len(parts) == n and all(np.isfinite(float(x)) for x in parts)
    except ValueError:
        return False


def _check_vasp_positions(path: Path, text: list) -> None:
    """More position lines than the count line's total right after the positions (no blank line
    before them, as a velocity block has) are atoms the counts leave out: ASE would read the first
    N and drop the rest silently."""
    if len(text) < 7:
        return
    at = 6 if text[5].split() and all(t.isalpha() for t in text[5].split()) else 5  # VASP 5 / VASP 4
    counts = text[at].split()
    if not counts or not all(c.lstrip("+").isdigit() for c in counts):
        return
    n = sum(int(c) for c in counts)
    mode = at + 1
    if mode < len(text) and text[mode].strip()[:1] in ("s", "S"):
        mode += 1  # Selective dynamics
    after = mode + 1 + n
    if after < len(text) and text[after].strip() and _floats(text[after]) and all(_floats(x) for x in text[mode + 1 : after]):
        extra = sum(1 for x in text[after:] if x.strip() and _floats(x))
        blank = next((i for i, x in enumerate(text[after:]) if not x.strip()), None)
        more = extra if blank is None else blank
        raise StructureError(
            f"{path}: the count line says {n} atom{'' if n == 1 else 's'} ({' '.join(counts)}), "
            f"but {more} more position line(s) follow"
        )


def high_symmetry_points(crystal: Crystal, symprec: float = 1e-5) -> dict:
    """SeeK-path (Hinuma et al. 2017; Setyawan–Curtarolo-like) labels of ``crystal``'s Brillouin
    zone → q in fractional coordinates of *this* cell's reciprocal lattice (conventional or
    primitive, as given). Γ is available as ``"Γ"`` and ``"GAMMA"``, and as ``"G"`` where SeeK-path has
    no point of that name (it has one in body-centred tetragonal lattices with c > a and in
    C-centred monoclinic ones: there ``"G"`` is SeeK-path's G, as its path labels show; see
    :func:`gamma_alias_free`); keys are upper case."""
    import seekpath

    try:
        res = seekpath.get_path((crystal.lattice, crystal.positions, crystal.numbers), with_time_reversal=True, symprec=symprec)
    except Exception as exc:  # noqa: BLE001 — seekpath/spglib raise several types for odd cells
        raise StructureError(
            f"SeeK-path cannot find the high-symmetry points of this cell ({type(exc).__name__}: {exc})"
        ) from None
    prim_sp = np.asarray(res["primitive_lattice"])
    recip_sp = np.asarray(res["reciprocal_primitive_lattice"])
    rot = np.asarray(res.get("rotation_matrix", np.eye(3)))

    # seekpath's cell may be rotated: pick the orientation in which its primitive lattice is a
    # lattice of the given cell's points (the given cell is then an integer supercell of it)
    def misfit(r: np.ndarray) -> float:
        m = crystal.lattice @ np.linalg.inv(prim_sp @ r)
        return float(np.abs(m - np.rint(m)).max())

    r = min((rot, rot.T), key=misfit)
    if misfit(r) > 1e-3:
        raise StructureError("cannot relate SeeK-path's standard cell to the given cell; give q-points as numbers")
    out = {}
    for label, f in res["point_coords"].items():
        cart = (np.asarray(f, float) @ recip_sp) @ r
        q = cart @ crystal.lattice.T / (2 * np.pi)
        q[np.abs(q) < 1e-12] = 0.0
        key = label.upper()
        out[key] = q
        if key == "GAMMA":
            out["Γ"] = q
    if "G" not in out:
        out["G"] = out["GAMMA"]
    return out


_GREEK = {"GAMMA": "Γ", "SIGMA": "Σ", "DELTA": "Δ", "LAMBDA": "Λ"}
_SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
_UNSUBSCRIPT = str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")


def display_label(label: str) -> str:
    """A SeeK-path point name as a plot and a hover show it: Greek names as letters and indices as
    subscripts ("SIGMA_0" → "Σ₀", "H_2" → "H₂", "GAMMA" → "Γ"); :func:`label_key` reads it back."""
    name, _, index = str(label).partition("_")
    name = _GREEK.get(name.upper(), name)
    return name + index.translate(_SUBSCRIPT) if index.isdigit() else (name + ("_" + index if index else ""))


def label_key(text: str) -> str:
    """The :func:`high_symmetry_points` key of a label as a user may type it: SeeK-path's own name in
    any case ("sigma_0", "H_2") or as plots show it ("Σ₀", "H₂", "Γ")."""
    t = str(text).strip().upper()  # "γ", "σ₀" too
    for name, letter in _GREEK.items():
        if t.startswith(letter):
            t = name + t[len(letter) :]
    plain = t.translate(_UNSUBSCRIPT)
    if plain != t:  # "H₂" → "H_2"
        n = len(t.rstrip("₀₁₂₃₄₅₆₇₈₉"))
        t = plain[:n] + "_" + plain[n:]
    return t


def gamma_alias_free(points: dict) -> bool:
    """Whether ``"G"`` in :func:`high_symmetry_points`'s answer is SeeK-path's own point G, not an
    alias of Γ (so a user's "G" is ambiguous for that crystal)."""
    return "G" in points and not np.allclose(points["G"], points["GAMMA"])
