"""Measured phonon data: frequencies at wave vectors and elastic constants, read from a small JSON file.

Shipped tables (``fcinv_widgets/data/measured/<material>.json``) cite their source,
temperature and uncertainty. Users can write the same file for their own crystal::

    {
      "format": "fcinv-measured-phonons", "version": 1,
      "material": "Ge",                  # optional, informational
      "cell": "conventional",            # q in r.l.u. of the "conventional" cell (cubic a) or the "primitive" cell
                                         # (the material's own cell; the only one for a non-cubic crystal)
      "unit": "THz",                     # THz | meV | cm-1, for every frequency and sigma
      "temperature_K": 80, "source": "…", "sigma_note": "…",
      "points": [
        {"label": "X", "frequency": 2.4, "sigma": 0.1, "branch": "TA", "degeneracy": 2},
        {"q": [0.2, 0, 0], "frequency": 1.1, "sigma": 0.05, "mode": 0}
      ],
      "elastic": {"unit": "GPa", "C11": 128.5, "C12": 48.3, "C44": 66.8,
                  "density_g_cm3": 5.32, "sigma_rel": 0.02}      # optional (cubic crystals)
    }

Each point gives either a ``label`` (a high-symmetry point of the material's q-path, e.g.
Γ/G, X, L, H, N, P; a non-cubic crystal's SeeK-path labels, e.g. M, K, A) or ``q`` (three
numbers in r.l.u. of ``cell``; a reduced wave vector, inside the first Brillouin zone). The
"conventional" cell is a cubic one: a non-cubic crystal gives ``q`` in its own ("primitive")
cell, the cell of its structure file (``fcinv fit-dispersion --structure``). A row may give both ``label`` and ``q`` when
they name the same point (or one equivalent to it by the crystal's symmetry); rows that
disagree are refused. ``branch`` is a free label; ``degeneracy`` (default 1) says how many
modes share the value. Keys other than the ones shown (and a free-text ``comment``) are
refused, not ignored: a row's own ``unit``, say, would otherwise be read in the table's.
Branch assignment at a wave vector, in this order:

* every row has ``mode`` (0-based index into the modes sorted by frequency; at Γ the
  acoustic modes are excluded, so optic mode 0 is the lowest optic mode): used as given,
  a row with ``degeneracy`` d standing for modes ``mode`` … ``mode`` + d − 1;
* otherwise the rows of that q, each repeated ``degeneracy`` times, must cover all the
  modes (3 × atoms, or 3 × atoms − 3 at Γ) and are matched to them in sorted order
  ("sorted per q": the symmetry labels of a complete set need no group tables).

Elastic constants (cubic: C11, C12, C44 in GPa, density in g/cm³) become sound velocities
along [100], [110] and [111] (Christoffel equation) and enter a fit as the slopes of the
three acoustic branches near Γ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import FcinvError
from .units import THZ_TO_MEV
from .validate import format_version, json_loads

FORMAT = "fcinv-measured-phonons"
#: 1 THz in cm⁻¹ (c = 299 792 458 m/s)
THZ_TO_CM1 = 1e12 / 2.99792458e10
UNITS = {
    "thz": 1.0,
    "mev": 1.0 / THZ_TO_MEV,
    "cm-1": 1.0 / THZ_TO_CM1,
    "cm^-1": 1.0 / THZ_TO_CM1,
    "1/cm": 1.0 / THZ_TO_CM1,
    "cm⁻¹": 1.0 / THZ_TO_CM1,
}
#: no phonon is faster (O–H stretching ~110 THz): above it a table's unit or value is wrong
MAX_FREQUENCY_THZ = 200.0
#: fraction of the way to the zone boundary at which elastic slopes are compared (conventional r.l.u.)
ELASTIC_ZETA = 0.04
ELASTIC_DIRECTIONS = {"[100]": (1, 0, 0), "[110]": (1, 1, 0), "[111]": (1, 1, 1)}
#: the keys a table, a row of its "points" and its "elastic" block may have (anything else is a typo
#: or a unit the reader would not apply, and is refused)
TABLE_KEYS = (
    "format",
    "version",
    "material",
    "cell",
    "unit",
    "temperature_K",
    "source",
    "sigma_note",
    "points",
    "elastic",
    "comment",
)
ROW_KEYS = ("label", "q", "frequency", "sigma", "branch", "degeneracy", "mode", "comment")
ELASTIC_KEYS = ("unit", "C11", "C12", "C44", "density_g_cm3", "sigma_rel", "source", "temperature_K", "comment")


@dataclass
class MeasuredPoint:
    """One measured value: frequency (THz) and σ (THz) at q (fractional, primitive reciprocal lattice)."""

    q_primitive: np.ndarray
    frequency_thz: float
    sigma_thz: float
    label: str = ""
    branch: str = ""
    degeneracy: int = 1
    mode: int | None = None
    row: int = 0  # 1-based row in the file's "points" list


@dataclass
class MeasuredTable:
    """A table of measured phonons for one material.

    Attributes
    ----------
    points : list of :class:`MeasuredPoint` (frequencies in THz)
    elastic : dict or None — ``{"C11", "C12", "C44"}`` (GPa), ``"density_g_cm3"``, ``"sigma_rel"``
    meta : dict — source, temperature_K, sigma_note, material, path
    """

    points: list
    elastic: dict | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n_values(self) -> int:
        """Independent measured numbers: the point rows plus 3 elastic constants when given."""
        return len(self.points) + (3 if self.elastic else 0)

    def groups(self, n_modes: int):
        """Rows grouped by wave vector with their mode indices: list of (q, [(point, mode index)], at_gamma)."""
        out: list[tuple[np.ndarray, list[MeasuredPoint]]] = []
        keys: dict[tuple, int] = {}
        for p in self.points:
            key = tuple(np.round(p.q_primitive, 6))
            if key not in keys:
                keys[key] = len(out)
                out.append((p.q_primitive, []))
            out[keys[key]][1].append(p)
        res: list[tuple[np.ndarray, list[tuple[MeasuredPoint, int]], bool]] = []
        for q, pts in out:
            gamma = _is_gamma(q)
            n = n_modes - 3 if gamma else n_modes
            where = _label_or_q(pts[0])
            with_mode = [p for p in pts if p.mode is not None]
            if len(with_mode) == len(pts):
                given = []
                for p in with_mode:
                    assert p.mode is not None
                    top = p.mode + p.degeneracy - 1
                    if not (0 <= p.mode and top < n):
                        said = f"mode {p.mode}" if p.degeneracy == 1 else f"modes {p.mode}…{top} (degeneracy {p.degeneracy})"
                        raise FcinvError(
                            f"measured table row {p.row} ({where}): {said} {'is' if p.degeneracy == 1 else 'are'} outside 0…{n - 1}"
                            + (" (at Γ only optic modes count)" if gamma else "")
                        )
                    given += [(p, p.mode + j) for j in range(p.degeneracy)]
                res.append((q, given, gamma))
                continue
            if with_mode:
                raise FcinvError(f"measured table at {where}: give 'mode' on every row of that q or on none")
            total = sum(p.degeneracy for p in pts)
            if total != n:
                raise FcinvError(
                    f"measured table at {where}: the rows cover {total} modes (with degeneracy) but the crystal has {n} "
                    f"{'optic ' if gamma else ''}modes there; give all of them or a 'mode' index per row"
                )
            order = sorted(pts, key=lambda p: p.frequency_thz)
            pairs: list[tuple[MeasuredPoint, int]] = []
            k = 0
            for p in order:
                for _ in range(p.degeneracy):
                    pairs.append((p, k))
                    k += 1
            res.append((q, pairs, gamma))
        return res

    def to_dict(self) -> dict:
        return {
            "meta": {k: v for k, v in self.meta.items() if k != "path"},
            "elastic": self.elastic,
            "points": [
                {
                    "label": p.label,
                    "q_primitive": p.q_primitive.tolist(),
                    "frequency_thz": p.frequency_thz,
                    "sigma_thz": p.sigma_thz,
                    "branch": p.branch,
                    "degeneracy": p.degeneracy,
                }
                for p in self.points
            ],
        }


def _label_or_q(p: MeasuredPoint) -> str:
    return p.label or "q = " + " ".join(f"{x:g}" for x in p.q_primitive) + " (primitive r.l.u.)"


def _is_gamma(q) -> bool:
    return bool(np.all(np.abs(np.asarray(q) - np.rint(q)) < 1e-8))


def measured_path(material_name: str) -> Path:
    from .materials import data_path

    return data_path("measured", f"{str(material_name).lower()}.json")


def high_symmetry_points(material) -> dict:
    """Labelled points of the material's q-path, conventional r.l.u. (from its grid's segments)."""
    pts: dict[str, tuple[float, ...]] = {}
    for s in material.grid.q.segments:
        pts.setdefault(s.start, tuple(s.start_q))
        pts.setdefault(s.end, tuple(s.end_q))
    return pts


def conventional_to_primitive(material) -> np.ndarray:
    """(3, 3) M with q_primitive = Q_conventional @ M for a cubic conventional cell of side
    ``material.conventional_a``: q_prim_i = Q_cart · a_i / 2π with Q_cart = Q_conv · 2π/a.
    Checked against the material's own q-path (equal up to reciprocal lattice vectors)."""
    M = (np.asarray(material.crystal.lattice, float) / float(material.conventional_a)).T
    g = material.grid.q
    d = np.asarray(g.conventional_qpoints, float) @ M - np.asarray(g.qpoints, float)
    if np.abs(d - np.rint(d)).max() > 1e-6:
        raise FcinvError(
            f"{material.name}: its conventional cell is not cubic with a = {material.conventional_a:.4f} Å; "
            'give q in the primitive cell ("cell": "primitive")'
        )
    return M


def label_points(material) -> tuple[dict, np.ndarray | None]:
    """({label: q (fractional, the material's cell's reciprocal lattice)} of the labelled points of
    its q-path, plus every SeeK-path point of a non-cubic cell; M of
    :func:`conventional_to_primitive`, or None when the cell is not cubic (then no q is given
    in conventional r.l.u.)). Labels are keyed as the plots show them ("Γ", "X", "S₀"; see
    :func:`fcinv_widgets.structure.display_label`); :func:`find_label` reads a user's spelling."""
    from .structure import display_label, gamma_alias_free
    from .structure import high_symmetry_points as seekpath_points

    path = high_symmetry_points(material)
    try:
        M = conventional_to_primitive(material)
    except FcinvError:
        seek = {k: np.asarray(v, float) for k, v in seekpath_points(material.crystal).items()}
        own_g = gamma_alias_free(seek)
        shown = {display_label(k): v for k, v in seek.items() if k != "GAMMA" and (own_g or k != "G")}
        return {"Γ": seek["GAMMA"]} | {k: shown[k] for k in path if k in shown} | shown, None
    return {k: np.asarray(v, float) @ M for k, v in path.items()}, M


def find_label(text: str, labels: dict, where: str) -> str:
    """The key of :func:`label_points`' answer a user's label names, in any spelling SeeK-path or the
    plots use ("Γ", "G", "GAMMA", "\\Gamma"; "S_0", "s_0", "S₀"); "G" is refused where the crystal has
    a point G of its own (body-centred tetragonal with c > a, C-centred monoclinic)."""
    from .structure import label_key

    key = label_key(text.replace("\\", ""))
    by_key = {label_key(k): k for k in labels}
    if key == "G" and "G" in by_key:
        g = " ".join(f"{x:.4g}" for x in labels[by_key["G"]])
        raise FcinvError(
            f"{where}: label 'G' is ambiguous for this crystal: SeeK-path names a point G at ({g}); "
            "write Γ or GAMMA for the zone centre, or give 'q'"
        )
    if key in ("G", "GAMMA"):
        return "Γ"
    if key not in by_key:
        raise FcinvError(f"{where}: unknown label {text!r}; known: {', '.join(sorted(labels))} (or give 'q')")
    return by_key[key]


def read_measured(source, material) -> MeasuredTable:
    """Read and check a measured table (path, dict, or "shipped" for the material's own table)."""
    path = None
    if isinstance(source, dict):
        d = source
    else:
        path = measured_path(material.name) if source in (None, "shipped") else Path(source)
        if not path.is_file():
            raise FcinvError(f"measured table not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise FcinvError(f"{path}: not a JSON file ({exc})") from None
        d = json_loads(text, str(path))
    where = str(path) if path else "measured table"
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise FcinvError(f'{where}: not a measured-phonon table (needs "format": "{FORMAT}")')
    format_version(d.get("version"), where)
    _known_keys(d, TABLE_KEYS, where)
    unit = str(d.get("unit", "")).strip().lower()
    if unit not in UNITS:
        raise FcinvError(f"{where}: unknown unit {d.get('unit')!r}; use THz, meV or cm-1")
    to_thz = UNITS[unit]
    cell = str(d.get("cell", "conventional")).lower()
    if cell not in ("conventional", "primitive"):
        raise FcinvError(f"{where}: cell must be 'conventional' or 'primitive', got {d.get('cell')!r}")
    said = d.get("material")
    if said is not None and (not isinstance(said, str) or not said.strip()):
        raise FcinvError(f"{where}: 'material' must name the crystal, got {said!r}")
    if said and material.name.lower() != "custom" and said.strip().lower() != material.name.lower():
        raise FcinvError(f"{where}: the table is for {said.strip()}, not {material.name}")
    t = d.get("temperature_K")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not np.isfinite(t) or t < 0):
        raise FcinvError(f"{where}: 'temperature_K' must be a number ≥ 0, got {t!r}")
    rows = d.get("points")
    if not isinstance(rows, list) or not rows:
        raise FcinvError(f"{where}: 'points' must be a non-empty list")
    labels, M = label_points(material)  # M None: not cubic, labels and q in the primitive cell only
    B = 2 * np.pi * np.linalg.inv(material.crystal.lattice).T
    stars = None  # the crystal's rotations, found when a row gives both a label and q
    points = []
    for i, r in enumerate(rows, start=1):
        if not isinstance(r, dict):
            raise FcinvError(f"{where}: row {i} is not an object")
        _known_keys(r, ROW_KEYS, f"{where}: row {i}")
        label = str(r.get("label", "") or "")
        if "q" in r and r["q"] is not None:
            q = _numbers(r["q"], 3, f"{where}: row {i} 'q'")
            if cell == "conventional" and M is None:
                raise FcinvError(
                    f"{where}: row {i}: q in the conventional cell, but {material.name} is not cubic: give q in the "
                    'primitive cell ("cell": "primitive")'
                )
            q_prim = q @ M if cell == "conventional" else q
            if not _in_first_zone(q_prim, B):
                raise FcinvError(
                    f"{where}: row {i}: q = {np.round(q_prim, 4).tolist()} (primitive r.l.u.) lies outside the "
                    "first Brillouin zone; give the reduced wave vector"
                )
            if label:  # both: they must name the same point (or one the crystal's symmetry makes equivalent)
                key = find_label(label, labels, f"{where}: row {i} ({material.name})")
                if stars is None:
                    stars = _star_operations(material.crystal)
                if not _equivalent(q_prim, np.asarray(labels[key], float), stars):
                    at = " ".join(f"{x:.4g}" for x in labels[key])
                    raise FcinvError(
                        f"{where}: row {i}: label {label!r} is the point ({at}) in primitive r.l.u., but its q is "
                        f"{np.round(q_prim, 4).tolist()} (primitive r.l.u.), not equivalent to it; give one of them"
                    )
                label = key
        elif label:
            key = find_label(label, labels, f"{where}: row {i} ({material.name})")
            q_prim = np.asarray(labels[key], float)
            label = key
        else:
            raise FcinvError(f"{where}: row {i} has neither 'label' nor 'q'")
        # a labelled point is SeeK-path's own, in this cell's reciprocal lattice: for a cell that is
        # not primitive it may lie outside the cell's (smaller) first zone — an equivalent point there
        f = _number(r.get("frequency"), f"{where}: row {i} 'frequency'")
        if not 0 < f * to_thz < MAX_FREQUENCY_THZ:
            raise FcinvError(
                f"{where}: row {i}: frequency must be > 0 and < {MAX_FREQUENCY_THZ:g} THz (a measured phonon), "
                f"got {f:g} {d.get('unit')}"
            )
        s = _number(r.get("sigma"), f"{where}: row {i} 'sigma'")
        if s <= 0:
            raise FcinvError(f"{where}: row {i}: sigma must be > 0, got {s}")
        if s * to_thz < MIN_SIGMA_THZ:
            raise FcinvError(
                f"{where}: row {i}: sigma = {s:g} {d.get('unit')} is below {MIN_SIGMA_THZ:g} THz, finer than any measurement"
            )
        deg = r.get("degeneracy", 1)
        if not isinstance(deg, int) or isinstance(deg, bool) or deg < 1:
            raise FcinvError(f"{where}: row {i}: degeneracy must be a positive integer, got {deg!r}")
        mode = r.get("mode")
        if mode is not None and (not isinstance(mode, int) or isinstance(mode, bool)):
            raise FcinvError(f"{where}: row {i}: mode must be an integer, got {mode!r}")
        points.append(
            MeasuredPoint(np.asarray(q_prim, float), f * to_thz, s * to_thz, label, str(r.get("branch", "")), deg, mode, i)
        )
    elastic = d.get("elastic")
    if elastic is not None:
        elastic = _check_elastic(elastic, where)
    meta = {k: d.get(k) for k in ("material", "source", "temperature_K", "sigma_note", "cell") if k in d}
    meta["unit"] = d.get("unit")
    if path is not None:
        meta["path"] = str(path)
    table = MeasuredTable(points, elastic, meta)
    table.groups(3 * material.crystal.n_atoms)  # branch assignment errors surface at read time
    return table


def _known_keys(d: dict, known, where: str) -> None:
    unknown = [str(k) for k in d if k not in known]
    if unknown:
        raise FcinvError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(repr(k) for k in unknown)} "
            f"(known: {', '.join(known)}); the reader does not guess what it means"
        )


def _star_operations(crystal) -> np.ndarray:
    """The crystal's point-group rotations acting on fractional reciprocal coordinates (q → q W),
    with time reversal (−W): (n, 3, 3)."""
    import spglib

    cell = (crystal.lattice.tolist(), crystal.positions.tolist(), crystal.numbers.tolist())
    try:
        ds = spglib.get_symmetry(cell, symprec=1e-5)
    except Exception:  # noqa: BLE001 — spglib's own error types; the identity alone is always right
        ds = None
    W = np.asarray(ds["rotations"], float) if ds else np.eye(3)[None]
    return np.concatenate([W, -W])


def _equivalent(q_a, q_b, ops, tol=1e-5) -> bool:
    """Whether q_a is q_b up to a reciprocal lattice vector after one of ``ops`` (fractional coordinates)."""
    d = np.einsum("i,nij->nj", np.asarray(q_a, float), ops) - np.asarray(q_b, float)
    return bool((np.abs(d - np.rint(d)).max(axis=1) < tol).any())


def _number(x, what) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x):
        raise FcinvError(f"{what} must be a finite number, got {x!r}")
    return float(x)


def _numbers(x, n, what) -> np.ndarray:
    if not isinstance(x, (list, tuple)) or len(x) != n:
        raise FcinvError(f"{what} must be a list of {n} numbers, got {x!r}")
    return np.array([_number(v, what) for v in x])


def _in_first_zone(q_prim, B, tol=1e-6) -> bool:
    with np.errstate(over="ignore", invalid="ignore"):  # a huge q is refused by the caller, not warned about
        qc = np.asarray(q_prim) @ B
        r = np.arange(-2, 3)
        G = np.array(np.meshgrid(r, r, r, indexing="ij")).reshape(3, -1).T @ B
        d0 = qc @ qc
        dG = ((qc[None] - G) ** 2).sum(1)
        return bool(d0 <= dG.min() + tol * max(1.0, d0))


#: the smallest σ a table may give a phonon (THz; 0.4 µeV) and an elastic constant (relative): below
#: them the fit's weights overflow, and no measurement is that fine
MIN_SIGMA_THZ = 1e-4
MIN_SIGMA_REL = 1e-6

#: limits of a measured table's elastic block (GPa, g/cm³): beyond them a typo, not a crystal
MAX_ELASTIC_GPA = 5000.0
MAX_DENSITY_G_CM3 = 30.0


def _check_elastic(e, where) -> dict:
    if not isinstance(e, dict):
        raise FcinvError(f"{where}: 'elastic' must be an object")
    _known_keys(e, ELASTIC_KEYS, f"{where}: elastic")
    unit = str(e.get("unit", "GPa")).strip()
    if unit.lower() != "gpa":
        raise FcinvError(f"{where}: elastic constants must be in GPa, got unit {unit!r}")
    out = {k: _number(e.get(k), f"{where}: elastic {k}") for k in ("C11", "C12", "C44")}
    out["density_g_cm3"] = _number(e.get("density_g_cm3"), f"{where}: elastic density_g_cm3")
    out["sigma_rel"] = _number(e.get("sigma_rel", 0.02), f"{where}: elastic sigma_rel")
    if out["density_g_cm3"] <= 0 or out["sigma_rel"] <= 0:
        raise FcinvError(f"{where}: density and sigma_rel must be > 0")
    if out["sigma_rel"] < MIN_SIGMA_REL:
        raise FcinvError(
            f"{where}: elastic sigma_rel = {out['sigma_rel']:g} is below {MIN_SIGMA_REL:g}, finer than any measurement"
        )
    # physical ranges: diamond's C11 is ~1080 GPa, osmium's density 22.6 g/cm³
    big = {k: out[k] for k in ("C11", "C12", "C44") if abs(out[k]) > MAX_ELASTIC_GPA}
    if big:
        k, v = next(iter(big.items()))
        raise FcinvError(f"{where}: elastic {k} = {v:g} GPa is beyond any crystal's (|C| ≤ {MAX_ELASTIC_GPA:g} GPa)")
    if out["density_g_cm3"] > MAX_DENSITY_G_CM3:
        raise FcinvError(
            f"{where}: elastic density_g_cm3 = {out['density_g_cm3']:g} is beyond any solid's (≤ {MAX_DENSITY_G_CM3:g})"
        )
    if out["sigma_rel"] > 1:
        raise FcinvError(f"{where}: elastic sigma_rel = {out['sigma_rel']:g} is a relative error and must be ≤ 1")
    C = cubic_stiffness(out["C11"], out["C12"], out["C44"])
    if np.linalg.eigvalsh(C).min() <= 0:
        raise FcinvError(f"{where}: the elastic constants are not mechanically stable (C11 > |C12|, C11 + 2 C12 > 0, C44 > 0)")
    for k in ("source", "temperature_K"):
        if k in e:
            out[k] = e[k]
    return out


def cubic_stiffness(c11, c12, c44) -> np.ndarray:
    """6×6 Voigt stiffness of a cubic crystal (same unit as the inputs)."""
    C = np.zeros((6, 6))
    C[:3, :3] = c12
    C[range(3), range(3)] = c11
    C[range(3, 6), range(3, 6)] = c44
    return C


def sound_velocities(elastic: dict, direction) -> np.ndarray:
    """Sound velocities (m/s, ascending) along a Cartesian direction: Christoffel ρ v² = eig(C_ijkl n_j n_l)."""
    voigt = {(0, 0): 0, (1, 1): 1, (2, 2): 2, (1, 2): 3, (2, 1): 3, (0, 2): 4, (2, 0): 4, (0, 1): 5, (1, 0): 5}
    C6 = cubic_stiffness(elastic["C11"], elastic["C12"], elastic["C44"]) * 1e9  # Pa
    n = np.asarray(direction, float)
    n = n / np.linalg.norm(n)
    G = np.zeros((3, 3))
    for i in range(3):
        for k in range(3):
            G[i, k] = sum(C6[voigt[i, j], voigt[k, m]] * n[j] * n[m] for j in range(3) for m in range(3))
    rho = elastic["density_g_cm3"] * 1e3  # kg/m³
    return np.sqrt(np.linalg.eigvalsh(G) / rho)


def elastic_targets(elastic: dict, material) -> list:
    """Long-wavelength constraints: list of (direction label, q_primitive (3,), acoustic frequencies THz (3,)).

    The q-point sits at ``ELASTIC_ZETA`` of the conventional cubic r.l.u. along each direction;
    frequency = v |q| / 2π with |q| = ζ·2π/a·|n| (the dispersion is linear there to < 0.3 %).
    """
    a = float(material.conventional_a)
    try:
        M = conventional_to_primitive(material)
    except FcinvError:
        raise FcinvError(
            f"{material.name}: elastic constants C11, C12, C44 describe a cubic crystal, and this one is not "
            "(drop the table's 'elastic' block, or --no-elastic)"
        ) from None
    out = []
    for name, n in ELASTIC_DIRECTIONS.items():
        Q = ELASTIC_ZETA * np.asarray(n, float)
        k = np.linalg.norm(Q) * 2 * np.pi / a * 1e10  # 1/m
        nu = sound_velocities(elastic, n) * k / (2 * np.pi) / 1e12  # THz
        out.append((name, Q @ M, nu))
    return out
