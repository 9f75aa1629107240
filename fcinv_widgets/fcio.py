"""Force-constant files: phonopy ``FORCE_CONSTANTS`` (full or compact) and ``phonopy.yaml``.

Force constants are (n_rows, n_supercell, 3, 3) arrays in eV/Å², rows either all supercell
atoms (full) or the primitive atoms only (compact, phonopy's ``p2s`` order).
"""

from __future__ import annotations

from typing import Any

import io
from pathlib import Path

import numpy as np

from .errors import ForceConstantsError


def read_force_constants(path: str | Path) -> np.ndarray:
    """Read phonopy ``FORCE_CONSTANTS`` (text), ``force_constants.hdf5`` or ``phonopy.yaml`` (its unit cell's,
    :func:`read_phonopy_yaml_unitcell`) → (n, N, 3, 3) eV/Å²."""
    from .validate import not_a_file

    path = Path(path)
    if not path.is_file():
        raise ForceConstantsError(not_a_file(path, "force-constants file"))
    if is_phonopy_yaml(path):
        return read_phonopy_yaml_unitcell(path)[1]
    _check_declared_size(path)
    try:
        if path.suffix.lower() in (".hdf5", ".h5"):
            from phonopy.file_IO import read_force_constants_hdf5

            fc = read_force_constants_hdf5(str(path))
        else:
            from phonopy.file_IO import parse_FORCE_CONSTANTS

            fc = parse_FORCE_CONSTANTS(str(path))
    except Exception as exc:  # noqa: BLE001 — phonopy raises many types on malformed input
        raise ForceConstantsError(f"cannot parse force constants in {path}: {type(exc).__name__}: {exc}") from None
    kind = np.asarray(fc).dtype.kind
    if kind not in "fiu":
        what = {"c": "complex numbers", "b": "booleans"}.get(kind, f"values of type {np.asarray(fc).dtype}")
        raise ForceConstantsError(f"{path}: force constants must be real numbers (eV/Å²), the file holds {what}")
    fc = np.asarray(fc, dtype=float)
    if fc.ndim != 4 or fc.shape[2:] != (3, 3):
        raise ForceConstantsError(f"{path}: expected (n, N, 3, 3) blocks, got shape {fc.shape}")
    if not np.all(np.isfinite(fc)):
        raise ForceConstantsError(f"{path}: force constants contain NaN or inf")
    return fc


def is_phonopy_yaml(path) -> bool:
    """Whether a force-constants file is a ``phonopy.yaml`` (by its suffix, any case)."""
    return Path(path).suffix.lower() in (".yaml", ".yml")


#: largest force-constant array read (bytes): a 1,500-atom supercell in full is 162 MB
MAX_FC_BYTES = 2 * 1024**3


def _check_declared_size(path: Path) -> None:
    """Refuse, before anything is allocated, a file whose declared (n, N) blocks are absurd or not
    backed by its size (a text FORCE_CONSTANTS needs ≥ 4 lines of ≥ 6 bytes per 3×3 block)."""
    if path.suffix.lower() in (".hdf5", ".h5"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                ds = f.get("force_constants")
                if not isinstance(ds, h5py.Dataset):
                    raise ForceConstantsError(f"{path}: no force_constants dataset (not a phonopy force_constants.hdf5)")
                shape, itemsize = tuple(ds.shape), ds.dtype.itemsize
        except OSError as exc:
            raise ForceConstantsError(f"cannot read {path} as HDF5: {str(exc).splitlines()[0]}") from None
        if len(shape) != 4 or shape[2:] != (3, 3):
            raise ForceConstantsError(f"{path}: force_constants has shape {shape}, expected (n, N, 3, 3)")
        if int(np.prod(shape, dtype=np.float64)) * max(itemsize, 8) > MAX_FC_BYTES:
            raise ForceConstantsError(
                f"{path}: force_constants of shape {shape} is larger than the {MAX_FC_BYTES // 1024**3} GiB allowed"
            )
        return
    try:
        with open(path, "rb") as f:
            head = f.readline(200).split()
    except OSError as exc:
        raise ForceConstantsError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        dims = [int(x) for x in head[:2]]
    except ValueError:
        raise ForceConstantsError(f"{path}: the first line must hold the numbers of atoms (phonopy FORCE_CONSTANTS)") from None
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise ForceConstantsError(
            f"{path}: the first line must hold one or two positive atom counts, got {b' '.join(head[:2])!r}"
        )
    n, N = dims
    if n * N * 9 * 8 > MAX_FC_BYTES or n * N * 4 * 6 > path.stat().st_size:
        raise ForceConstantsError(
            f"{path}: declares {n} × {N} force-constant blocks, which the file's {path.stat().st_size} bytes "
            "cannot hold (truncated or corrupt)"
            if n * N * 9 * 8 <= MAX_FC_BYTES
            else f"{path}: declares {n} × {N} force-constant blocks, more than {MAX_FC_BYTES // 1024**3} GiB"
        )


#: largest YAML file read (bytes); phonopy.yaml files of large supercells are tens of MB
MAX_YAML_BYTES = 512 * 1024**2


def read_yaml_safely(path: str | Path) -> tuple[bytes, dict]:
    """The bytes of a YAML file and the document the *safe* loader made of them, after checking that
    PyYAML's safe loader accepts them.

    Refuses (:class:`ForceConstantsError`, one line) a file that is not YAML or carries any tag the
    safe loader does not know (``!!python/object/apply`` and friends run code under the unsafe
    loader that phonopy uses). Every YAML we read goes through here.
    """
    import yaml

    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ForceConstantsError(
                f"{path}: {size / 1024**2:.0f} MB is larger than the {MAX_YAML_BYTES // 1024**2} MB allowed for a YAML file"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise ForceConstantsError(f"cannot read {path}: {exc.strerror or exc}") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(data, Loader=loader)
    except yaml.constructor.ConstructorError as exc:
        tag = getattr(exc, "problem", "") or str(exc)
        raise ForceConstantsError(
            f"{path}: refused, a YAML tag that only an unsafe loader would construct ({tag.strip()})"
        ) from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ForceConstantsError(f"{path}: not valid YAML{at}") from None
    if not isinstance(doc, dict):
        raise ForceConstantsError(f"{path}: not a phonopy YAML file (no mapping at the top level)")
    if b"*" in data and any(isinstance(ev, yaml.AliasEvent) for ev in yaml.parse(data, Loader=loader)):
        # phonopy never writes anchors; nested aliases ("billion laughs") expand to gigabytes downstream
        raise ForceConstantsError(f"{path}: refused, YAML aliases (*name) are not allowed in a phonopy file")
    return data, doc


def _load_phonopy_yaml(path: Path):
    """A phonopy object with force constants from a ``phonopy.yaml`` (safe-loaded first)."""
    import phonopy

    data, doc = read_yaml_safely(path)
    _check_yaml_supercell(doc, path)
    displacements = doc.get("displacements")
    has_forces = isinstance(displacements, list) and any(isinstance(d, dict) and "forces" in d for d in displacements)
    if "force_constants" not in doc and not has_forces:
        # (phonopy would look for FORCE_CONSTANTS or FORCE_SETS in the working folder: another file's)
        raise ForceConstantsError(f"{path} holds no force constants (nor forces to produce them)")
    try:
        # phonopy parses YAML with PyYAML's unsafe loader: hand it only the bytes that the safe
        # loader has accepted (no python/* tags), from memory, never the file itself
        ph = phonopy.load(io.BytesIO(data), produce_fc=True, log_level=0)
    except Exception as exc:  # noqa: BLE001 — phonopy raises many types on malformed input
        raise ForceConstantsError(f"cannot load {path} with phonopy: {type(exc).__name__}: {exc}") from None
    if ph.force_constants is None:
        raise ForceConstantsError(f"{path} holds no force constants (nor forces to produce them)")
    return ph


def _check_yaml_supercell(doc: dict, path: Path) -> None:
    """Refuse, before phonopy builds anything, a ``phonopy.yaml`` whose supercell would hold more than
    :data:`~fcinv_widgets.basis.MAX_SUPERCELL_ATOMS` atoms (a few bytes can declare a 60×60×60
    supercell, which phonopy then spends minutes and gigabytes building) or whose supercell matrix
    is not 3×3 integers with det ≥ 1."""
    from .basis import MAX_SUPERCELL_ATOMS

    smat = doc.get("supercell_matrix")
    if smat is None:
        return  # (phonopy refuses a file without one; its message is kept)
    try:
        m = np.array(smat, dtype=float)
        det = round(float(np.linalg.det(m))) if m.shape == (3, 3) and np.isfinite(m).all() else 0
    except (TypeError, ValueError):
        det = 0
    if det < 1 or not np.allclose(m, np.rint(m)):
        raise ForceConstantsError(f"{path}: supercell_matrix must be 3×3 integers with determinant ≥ 1, got {smat!r}")
    unit = doc.get("unit_cell") or doc.get("primitive_cell") or {}
    n_unit = len(unit.get("points") or []) if isinstance(unit, dict) else 0
    if n_unit * det > MAX_SUPERCELL_ATOMS:
        raise ForceConstantsError(
            f"{path}: its supercell holds {n_unit * det} atoms ({n_unit} × {det} cells); at most {MAX_SUPERCELL_ATOMS} are supported"
        )


def read_phonopy_yaml(path: str | Path):
    """Read ``phonopy.yaml`` (or ``phonopy_params.yaml``) → (its primitive Crystal, force constants
    compact over it, supercell matrix relative to it)."""
    from .structure import Crystal

    path = Path(path)
    ph = _load_phonopy_yaml(path)
    prim = ph.primitive
    crystal = Crystal(prim.cell, prim.scaled_positions, tuple(prim.symbols), prim.masses)
    # supercell matrix relative to the primitive cell
    smat = (
        np.rint(np.linalg.inv(ph.primitive_matrix) @ ph.supercell_matrix).astype(int)
        if ph.primitive_matrix is not None
        else np.array(ph.supercell_matrix)
    )
    fc = np.asarray(ph.force_constants)
    if fc.shape[0] == fc.shape[1] and ph.primitive_matrix is not None and len(prim) != len(ph.unitcell):
        fc = fc[ph.primitive.p2s_map]
    return crystal, fc, smat


def read_phonopy_yaml_unitcell(path: str | Path):
    """Read ``phonopy.yaml`` (or ``phonopy_params.yaml``) as a FORCE_CONSTANTS file is read: →
    (its unit cell as a Crystal, force constants (eV/Å²) over the supercell of that cell, full —
    or compact when its primitive cell is the unit cell —, the supercell matrix (phonopy's DIM of
    the unit cell)). Compact force constants of a smaller primitive cell are expanded to full by
    phonopy, so they hold for the unit cell whatever primitive cell the file chose (session 41)."""
    from .structure import Crystal

    path = Path(path)
    ph = _load_phonopy_yaml(path)
    unit = ph.unitcell
    crystal = Crystal(unit.cell, unit.scaled_positions, tuple(unit.symbols), unit.masses)
    fc = np.asarray(ph.force_constants, dtype=float)
    if fc.shape[0] != fc.shape[1] and len(ph.primitive) != len(unit):
        from phonopy.harmonic.force_constants import compact_fc_to_full_fc

        fc = np.asarray(compact_fc_to_full_fc(ph.primitive, fc), dtype=float)
    return crystal, fc, np.rint(np.asarray(ph.supercell_matrix)).astype(int)


def write_force_constants(path: str | Path, fc: np.ndarray, p2s_map=None) -> None:
    """Write phonopy ``FORCE_CONSTANTS`` text (full, or compact with ``p2s_map``)."""
    from phonopy.file_IO import write_FORCE_CONSTANTS

    fc = np.asarray(fc, dtype=float)
    write_FORCE_CONSTANTS(fc, filename=str(path), p2s_map=p2s_map)


#: phonopy's two-line UserWarning for a cell whose supercell is more symmetric than the cell itself
_PHONOPY_SYMMETRY_NOTE = "Point group symmetries of supercell and primitivecell are different"


def new_phonopy(cell, supercell_matrix, primitive_matrix=None, **kwargs):
    """``phonopy.Phonopy(cell, supercell_matrix, primitive_matrix, log_level=0, **kwargs)`` (the cell
    as given where ``primitive_matrix`` is None). phonopy's two-line "Point group symmetries of
    supercell and primitivecell are different" UserWarning is said as one :class:`FcinvWarning` that
    names its cause: a structure file whose cell is itself a supercell of a smaller one with a
    lattice that breaks the crystal's symmetry (an fcc cell repeated 2 × 1 × 1: the results are those
    of the cell as given), or, for a primitive cell, a supercell matrix that breaks the cell's point
    group (a non-diagonal orthohexagonal matrix of a hexagonal cell: the force constants then have
    only the supercell's symmetry; session 48's probe found the first text given for the second)."""
    import warnings

    from phonopy import Phonopy

    from .errors import FcinvWarning

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ph = Phonopy(
            cell,
            supercell_matrix=supercell_matrix,
            primitive_matrix=np.eye(3) if primitive_matrix is None else primitive_matrix,
            log_level=0,
            **kwargs,
        )
    for w in seen:
        if _PHONOPY_SYMMETRY_NOTE in str(w.message):
            if _is_primitive(cell):
                text = (
                    "the supercell matrix breaks the point group of the structure's cell (phonopy's note: the supercell "
                    "is less symmetric than the cell), so the force constants and their basis have only the supercell's "
                    "symmetry; a supercell matrix that keeps the point group (n × n × n, or the conventional cell's) avoids it"
                )
            else:
                text = (
                    "the structure file's cell is a supercell of a smaller cell, and its lattice breaks that crystal's "
                    "symmetry (phonopy's note: the supercell is more symmetric than the cell); results are those of the "
                    "cell as given (--primitive auto uses the smallest cell)"
                )
            warnings.warn(FcinvWarning(text), stacklevel=2)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ph


def _is_primitive(cell) -> bool:
    """Whether phonopy's cell has no smaller cell (spglib's primitive holds as many atoms)."""
    import spglib

    given: Any = (np.asarray(cell.cell), np.asarray(cell.scaled_positions), np.asarray(cell.numbers))
    prim = spglib.find_primitive(given, symprec=1e-5)
    return prim is None or len(prim[2]) == len(given[2])


def unitcell_fc_to_cell_used(
    fc,
    unitcell,
    supercell_matrix,
    primitive_matrix,
    cell_used,
    supercell_used,
    where: str = "force constants",
    symprec: float = 1e-5,
) -> np.ndarray:
    """Force constants of phonopy's supercell ``supercell_matrix`` of ``unitcell`` → full force
    constants (N, N, 3, 3) eV/Å² in the atom order of the supercell ``supercell_used`` of
    ``cell_used`` (the primitive cell chosen with ``primitive_matrix``, phonopy's convention).

    The file may be full (N rows), compact over ``unitcell`` (phonopy without a primitive
    matrix) or compact over the primitive cell (phonopy with ``primitive_matrix``). Both supercells
    have the same lattice; atoms are matched by position.
    """
    from phonopy.harmonic.force_constants import compact_fc_to_full_fc
    from scipy.spatial import cKDTree

    fc = np.asarray(fc, dtype=float)
    phs = {}

    def ph(pm):
        key = "eye" if pm is None else "prim"
        if key not in phs:
            phs[key] = new_phonopy(unitcell.to_phonopy_atoms(), supercell_matrix, pm, symprec=symprec)
        return phs[key]

    n_super = len(ph(None).supercell)
    n_prim = len(ph(primitive_matrix).primitive)
    if fc.ndim != 4 or fc.shape[2:] != (3, 3) or fc.shape[1] != n_super or fc.shape[0] not in (n_super, unitcell.n_atoms, n_prim):
        raise ForceConstantsError(
            f"{where} have shape {fc.shape}, but the supercell {np.asarray(supercell_matrix).tolist()} of the structure "
            f"file's cell needs ({n_super}, {n_super}, 3, 3), ({unitcell.n_atoms}, {n_super}, 3, 3) or ({n_prim}, {n_super}, 3, 3)"
        )
    if fc.shape[0] != n_super:
        prim = ph(None if fc.shape[0] == unitcell.n_atoms else primitive_matrix).primitive
        fc = compact_fc_to_full_fc(prim, np.ascontiguousarray(fc))
    sc_u = ph(None).supercell
    sc_b = new_phonopy(cell_used.to_phonopy_atoms(), supercell_used, symprec=symprec).supercell
    if len(sc_b) != n_super or not np.allclose(np.array(sc_b.cell), np.array(sc_u.cell), atol=1e-6):
        raise ForceConstantsError(f"{where}: the primitive cell's supercell does not cover the same crystal as the file's")
    tree = cKDTree(np.mod(np.array(sc_u.scaled_positions), 1.0) % 1.0, boxsize=1.0 + 1e-12)
    dist, perm = tree.query(np.mod(np.array(sc_b.scaled_positions), 1.0) % 1.0)
    if dist.max() > 1e-4 or len(set(perm.tolist())) != n_super:
        raise ForceConstantsError(f"{where}: cannot match the atoms of the primitive cell's supercell to the file's")
    return np.ascontiguousarray(fc[np.ix_(perm, perm)])


def check_fc_shape(
    fc: np.ndarray, n_prim: int, n_super: int, where: str = "force constants", hint: str = "check the --supercell matrix"
) -> np.ndarray:
    """Return compact (n_prim, n_super, 3, 3) FCs; accept full ones; clear error otherwise (ending
    with ``hint``)."""
    fc = np.asarray(fc, dtype=float)
    if fc.ndim != 4 or fc.shape[2:] != (3, 3) or fc.shape[1] != n_super or fc.shape[0] not in (n_prim, n_super):
        raise ForceConstantsError(
            f"{where} have shape {fc.shape}, but the structure and supercell need "
            f"({n_prim}, {n_super}, 3, 3) (compact) or ({n_super}, {n_super}, 3, 3) (full); {hint}"
        )
    if not np.all(np.isfinite(fc)):
        raise ForceConstantsError(f"{where} contain NaN or inf")
    return fc
