"""Single-orientation scans of a direct-geometry time-of-flight spectrometer (ARCS-like).

Geometry (lab frame): the beam travels along +x, z is vertical, the sample rotates by ω
about z. At ω = 0 the sample direction ``u`` (Cartesian = conventional cubic axes) points
along the beam and ``v`` lies in the horizontal plane (default u = [1,1,0], v = [0,0,1]: the
(HHL) plane is horizontal). For a sample-frame Q and orientation ω,
Q_lab = R_z(ω) U₀ Q, k_f = k_i − Q_lab and the energy transfer measured at Q is

    E_ω(Q) = Ei − 2.0721 · |k_i − R(ω) Q|²        (k in Å⁻¹, E in meV).

The detector covers horizontal scattering angles −28° … 135° (atan2(k_f,y, k_f,x)) and
vertical angles ±27° (asin(k_f,z / |k_f|)).

Coverage rule (per folded point, orientation and (q, E) bin): every folded point
Q = G + R q (:mod:`fcinv_widgets.sqe`) stands for its bin, a cylinder of half length h∥ (half
the bin length along the rotated segment direction u∥) and radius h⊥ (the ±0.05 r.l.u.
perpendicular integration). E_ω is linear over it to first order, with gradient
∇_Q E = 2 · 2.0721 · k_f, so the bin sees the energies E_ω(Q) ± ΔE with

    ΔE = 2 · 2.0721 · (|k_f · u∥| h∥ + |k_f − (k_f · u∥) u∥| h⊥).

The point covers every energy bin that overlaps [E_ω − ΔE, E_ω + ΔE], provided k_f at the
bin centre hits the detector. Each covered (point, energy bin) adds data = S(Q, E_bin)
(fm²/meV per atom, :class:`~fcinv_widgets.sqe.SQE` with the ARCS resolution at Ei) and
norm = 1; a scan's image is Σ data / Σ norm over its covered points (NaN where none), and the
full data set is Σ data / Σ norm over all orientations (the pathSQE convention).

HDF5 layout of a scan set (``format = "fcinv-scans"``, version 2)::

    /full                     (nq, nE) float32   union of all orientations (NaN = not covered)
    /scans                    (n, nq, nE) float32 one image per orientation (NaN = not covered)
    /angles_deg               (n,) float64       sample rotation ω of each scan
    /coverage                 (n,) float64       fraction of covered pixels of each scan
    /params_ev_a2             (n_params,)        reduced force constants used (eV/Å²)
    /grid/q_points            (nq, 3)            primitive reciprocal fractional coordinates
    /grid/q_conventional      (nq, 3)            conventional r.l.u.
    /grid/q_distance          (nq,)              path length (Å⁻¹)
    /grid/energy_centers_mev  (nE,)
    attrs: format, version, material, ei_mev, temperature_k, intensity ("one-phonon-sqe"),
           origin ("simulated"), grid (JSON: segments, energy
           bins), labels, breaks, units, meta (JSON: u, v, qmax, detector, coverage rule,
           noise, timing, param names …)

Version 2 (since fcinv 0.2): meta ``u``/``v`` are r.l.u. of the crystal's conventional cell
(:func:`conventional_reciprocal`). Version 1 (fcinv 0.1.0) wrote them as Cartesian directions
of the structure file — the same numbers for a cubic cell along the axes (Ge, Nb); for any other
crystal :meth:`ScanSet.sample_axes` turns them into r.l.u. and says so.

Intensities are in fm²/meV per atom unless noise was added (then min-max scaled to [0, 1]
per image, the noise model's convention); ``fcinv invert`` min-max scales its input anyway.
:func:`fcinv_widgets.analysis.expio.read_spectrum` reads ``/full`` from such a file.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import FcinvError
from .grid import SpectrumGrid
from .units import NEUTRON_E_TO_K2
from .validate import MAX_TEMPERATURE_K, finite_number, is_real_number, real_array
from .validate import format_version, json_loads, not_a_file

#: ARCS detector coverage (degrees)
DETECTOR = {"h_min_deg": -28.0, "h_max_deg": 135.0, "v_max_deg": 27.0}
#: Largest incident energy (meV) the ARCS resolution and kinematics are used at: the instrument's
#: range is 15–1500 meV (its Fermi choppers); above it σ(E; Ei) is an extrapolation.
EI_MAX_MEV = 1500.0
E_OF_K2 = 1.0 / NEUTRON_E_TO_K2  # 2.0721 meV Å²


def conventional_reciprocal(crystal) -> np.ndarray | None:
    """Rows b₁, b₂, b₃ (1/Å, without 2π) of the reciprocal lattice of ``crystal``'s conventional
    cell, in the crystal's own Cartesian frame: [h k l] in r.l.u. of that cell, the cell a user
    indexes with, is the direction h b₁ + k b₂ + l b₃. The conventional cell is the structure
    file's own when it is one (the same volume as spglib's standard cell: a user's setting, e.g. a
    tetragonal c along x, is kept), else spglib's standard cell (a primitive fcc/bcc/… file). None when that cell is cubic along
    the Cartesian axes (Ge, Nb, any cubic POSCAR in the standard setting): r.l.u. directions are then
    the Cartesian ones, exactly. Before session 46 u and v were taken as Cartesian directions of the
    structure file for every crystal — the same for those, but not for a tetragonal [1 0 1], a
    hexagonal [1 0 0] or any crystal written in a turned frame (a probe: scans 79 % apart)."""
    std, _ = uv_cell(crystal)
    if np.allclose(std, std[0, 0] * np.eye(3), atol=1e-6 * abs(std[0, 0])):
        return None
    return np.linalg.inv(std).T


_UV_CELL_SAID: set = set()


def uv_cell(crystal, warn: bool = True) -> tuple[np.ndarray, str]:
    """(rows a, b, c in Å in the crystal's Cartesian frame, which cell) of the cell whose r.l.u. the
    scan axes u, v are in (:func:`conventional_reciprocal`): "the structure file's cell" where it is
    a conventional one (spglib's P unimodular), else "spglib's standard conventional cell". Scan
    sets record both (meta ``uv_cell_A``, ``uv_cell``). A non-primitive file that is not a
    conventional cell (the 4-atom face-centred tetragonal cell of CuAu, a supercell) is warned
    about once: its u/v are in the standard cell, whose axes may be turned from the file's
    (session 47, a crystal probe: CuAu's [1 0 0] was the file's [1 1 0], and nothing said so).
    ``warn=False``: no warning (the q-path's conventional r.l.u. are in this cell too, and a
    material is built for commands that never take u/v)."""
    from .structure import symmetry_dataset

    lat = np.asarray(crystal.lattice, float)
    ds = symmetry_dataset(crystal)
    p = np.eye(3) if ds is None else np.asarray(ds.transformation_matrix, float)  # none: the file's own cell
    # rows: the conventional cell's vectors in the crystal's frame — the file's own cell where it is
    # one (spglib's P unimodular: a conventional cell, perhaps in another setting, indexed as given)
    if abs(abs(np.linalg.det(p)) - 1) < 1e-6:
        return lat, "the structure file's cell"
    std = np.linalg.inv(p).T @ lat
    from .sqe import centring_translations

    key = lat.tobytes() + np.asarray(crystal.positions, float).tobytes()
    if not warn or key in _UV_CELL_SAID:  # (looked at once per crystal: every orientation matrix asks)
        return std, "spglib's standard conventional cell"
    _UV_CELL_SAID.add(key)
    if len(centring_translations(crystal)):
        import warnings

        from .errors import FcinvWarning

        abc = " × ".join(f"{x:.4g}" for x in np.linalg.norm(std, axis=1))
        warnings.warn(
            FcinvWarning(
                f"the structure file's cell is neither primitive nor the crystal's conventional cell: u/v are r.l.u. of "
                f"spglib's standard conventional cell ({abc} Å; scan sets record it as uv_cell_A), whose axes may be "
                "turned from the file's"
            ),
            stacklevel=2,
        )
    return std, "spglib's standard conventional cell"


#: meta ``uv_frame`` of a scan set: what its ``u``/``v`` are (a version-1 file is read as Cartesian)
UV_RLU, UV_CARTESIAN = "r.l.u. of the conventional cell", "Cartesian directions of the structure file"


def orientation_matrix(u=(1, 1, 0), v=(0, 0, 1), crystal=None) -> np.ndarray:
    """U₀: sample Cartesian → lab at ω = 0 (u → beam x, v → horizontal y, u×v → vertical z). ``u``
    and ``v`` are in r.l.u. of ``crystal``'s conventional cell (:func:`conventional_reciprocal`;
    without a crystal, or for a cubic cell along the axes, the Cartesian directions themselves)."""
    u, v = real_array(u, "u (r.l.u.)", shape=(3,), allow_nan=False), real_array(v, "v (r.l.u.)", shape=(3,), allow_nan=False)
    given = f"u = [{' '.join(f'{x:g}' for x in u)}] and v = [{' '.join(f'{x:g}' for x in v)}] (r.l.u.)"
    if not (np.isfinite(u).all() and np.isfinite(v).all()) or not (np.abs(u).max() > 0 and np.abs(v).max() > 0):
        raise FcinvError(f"{given} must be finite and non-zero")  # (v = 0 gave a NaN orientation, exit 0)
    u, v = u / np.abs(u).max(), v / np.abs(v).max()  # directions: 1e200 overflowed the norms below
    b = None if crystal is None else conventional_reciprocal(crystal)
    if b is not None:
        u, v = u @ b, v @ b
    if np.linalg.norm(np.cross(u, v)) < 1e-8 * np.linalg.norm(u) * np.linalg.norm(v):
        raise FcinvError(f"{given} are parallel: u and v must be two directions that are not parallel")
    x = u / np.linalg.norm(u)
    y = v - (v @ x) * x
    y /= np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)])


#: a single scan's sample axes when nobody says (r.l.u.): u along the beam at ω = 0, v horizontal
SCAN_U: tuple[int, int, int] = (1, 1, 0)
SCAN_V: tuple[int, int, int] = (0, 0, 1)


def scan_axes(scan_deg, u=None, v=None, scan_set: str | None = None) -> tuple[float | None, list | None, list | None]:
    """The one check of a single scan's orientation arguments (``Inverter.invert(scan_deg, u, v)``,
    :func:`~fcinv_widgets.analysis.refine.refine_spectrum`, ``fcinv refine --scan --u --v``).

    Returns (ω in degrees or None, u, v): ``scan_deg`` a finite number; axes ``u``/``v`` (r.l.u.)
    only with an angle, non-zero and not parallel, defaulting to :data:`SCAN_U` / :data:`SCAN_V`,
    returned as lists of floats. ``scan_set``: the name of the scan set the input is (it records
    its own axes: u/v are refused and returned as None). :class:`FcinvError` on anything else."""
    if scan_deg is None:
        if u is not None or v is not None:
            raise FcinvError("sample axes u/v (--u/--v) describe a single scan: give its angle too (scan_deg, --scan DEG)")
        return None, None, None
    omega = finite_number(scan_deg, "the scan's sample angle ω (scan_deg, --scan; degrees)")
    if scan_set is not None:
        if u is not None or v is not None:
            raise FcinvError(f"{scan_set} is a scan set: it records its sample axes (drop u/v, --u/--v)")
        return omega, None, None
    u = real_array(SCAN_U if u is None else u, "u (r.l.u.)", shape=(3,), allow_nan=False)
    v = real_array(SCAN_V if v is None else v, "v (r.l.u.)", shape=(3,), allow_nan=False)
    orientation_matrix(u, v)  # refuses zero or parallel axes
    return omega, [float(x) for x in u], [float(x) for x in v]


def rotation_z(omega_deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(omega_deg)), math.sin(math.radians(omega_deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def reach_qmax(ei_mev: float, e_min: float = 0.0, angle_max_deg: float = DETECTOR["h_max_deg"]) -> float:
    """Largest |Q| (Å⁻¹) reachable at energy transfers ≥ e_min with scattering angles ≤ angle_max."""
    ki = math.sqrt(ei_mev * NEUTRON_E_TO_K2)
    kf = math.sqrt(max(ei_mev - max(e_min, 0.0), 0.0) * NEUTRON_E_TO_K2)
    return math.sqrt(ki**2 + kf**2 - 2 * ki * kf * math.cos(math.radians(angle_max_deg)))


def check_ei(ei_mev, grid) -> float:
    """``ei_mev`` (meV) as a float if it can measure the grid's energies on ARCS, else FcinvError."""
    if not is_real_number(ei_mev) or not math.isfinite(float(ei_mev)) or ei_mev <= grid.e.e_max:
        raise FcinvError(
            f"Ei must be larger than the grid's largest energy ({grid.e.e_max:g} meV), got {ei_mev!r} meV "
            "(a --structure's grid ends at --e-max: a smaller one allows a smaller Ei)"
        )
    if ei_mev > EI_MAX_MEV:
        raise FcinvError(
            f"Ei must be at most {EI_MAX_MEV:g} meV (the ARCS range the resolution model covers), got {ei_mev!r} meV"
        )
    return float(ei_mev)


def parse_angles(text) -> np.ndarray:
    """'start:stop:step' (stop excluded, like numpy.arange), 'start:stop' (step 1) or 'a,b,c' → degrees."""
    s = str(text).strip()
    try:
        if ":" in s:
            parts = [float(x) for x in s.split(":")]
            if len(parts) == 2:
                parts.append(1.0)
            if len(parts) != 3:
                raise ValueError
            a, b, st = parts
            if not (np.isfinite([a, b, st]).all() and st > 0):
                raise FcinvError(f"--angles {s!r}: the step must be a positive number of degrees")
            ang = np.arange(a, b - 1e-9 * st, st)
        else:
            ang = np.array([float(x) for x in s.split(",") if x.strip()])
    except ValueError:
        raise FcinvError(f"--angles must be 'start:stop:step' (degrees, stop excluded) or a comma list, got {text!r}") from None
    return check_angles(ang)


def check_angles(angles) -> np.ndarray:
    ang = np.atleast_1d(real_array(angles, "sample angles (degrees)"))
    if ang.ndim != 1:
        raise FcinvError(f"sample angles must be a list of numbers (degrees), got an array of shape {ang.shape}")
    if ang.size == 0:
        raise FcinvError("the range of sample angles is empty (e.g. use --angles 0:120:1)")
    if not np.all(np.isfinite(ang)) or np.any(np.abs(ang) > 360):
        raise FcinvError(f"sample angles must lie within −360° … 360°, got {ang.min():g} … {ang.max():g}")
    if ang.size > 3600:
        raise FcinvError(f"{ang.size} sample angles is too many (at most 3600)")
    # ω and ω ± 360° are the same orientation: refused as a repeat; a list without repeats may
    # span more than 360° (candidates −120…−60° beside a measured 270°)
    turn = np.round(np.mod(ang, 360.0), 6) % 360.0
    _, first, counts = np.unique(turn, return_index=True, return_counts=True)
    if np.any(counts > 1):
        if ang.max() - ang.min() > 360:
            raise FcinvError(
                f"sample angles span {ang.max() - ang.min():g}° (more than a full turn: ω and ω + 360° are the same orientation)"
            )
        i = int(first[np.argmax(counts > 1)])
        raise FcinvError(f"sample angle {ang[i]:g}° is listed more than once (the same orientation twice)")
    return ang


def align_turns(angles, reference) -> np.ndarray:
    """``angles`` (degrees) with each one that is the same orientation as a ``reference`` angle
    (equal modulo 360°) replaced by that reference angle — e.g. candidate −90° and measured 270°."""
    ang = np.atleast_1d(np.asarray(angles, float)).copy()
    ref = np.atleast_1d(np.asarray(reference, float))
    if ang.size and ref.size:
        d = np.abs((ang[:, None] - ref[None, :] + 180.0) % 360.0 - 180.0)
        hit = d < 1e-6
        rows = hit.any(axis=1)
        ang[rows] = ref[np.argmax(hit[rows], axis=1)]
    return ang


def _orientation_hits(points, omega_deg, ei_mev, grid, U0, detector=DETECTOR):
    """The folded points that orientation ω sees on the detector, with the energy bins each covers.

    Returns (sel, ilo, ihi): indices into ``points`` and, per selected point, the first and last
    energy bin index it covers (see the module docstring for the rule)."""
    nE = grid.shape[1]
    e0, de = float(grid.e.edges[0]), float(grid.e.step)
    ki = math.sqrt(ei_mev * NEUTRON_E_TO_K2)
    M = (rotation_z(omega_deg) @ U0).astype(np.float32)
    Q = points.Q32
    kf = -(Q @ M.T)
    kf[:, 0] += ki
    kf2 = np.einsum("pa,pa->p", kf, kf)
    ec = ei_mev - E_OF_K2 * kf2
    ul = points.upar32 @ M.T
    par = np.abs(np.einsum("pa,pa->p", kf, ul))
    perp = np.sqrt(np.clip(kf2 - par * par, 0, None))
    dE = 2 * E_OF_K2 * (par * points.h_par32 + perp * np.float32(points.h_perp))
    lo, hi = ec - dE, ec + dE
    ok = (hi >= e0) & (lo < e0 + nE * de) & (kf2 > 0)
    sel = np.flatnonzero(ok)
    kfs = kf[sel]
    h = np.degrees(np.arctan2(kfs[:, 1], kfs[:, 0]))
    v = np.degrees(np.arcsin(np.clip(kfs[:, 2] / np.sqrt(kf2[sel]), -1, 1)))
    hit = (h >= detector["h_min_deg"]) & (h <= detector["h_max_deg"]) & (np.abs(v) <= detector["v_max_deg"])
    sel = sel[hit]
    ilo = np.clip(np.floor((lo[sel] - e0) / de), 0, nE - 1).astype(np.int64)
    ihi = np.clip(np.floor((hi[sel] - e0) / de), 0, nE - 1).astype(np.int64)
    return sel, ilo, ihi


def orientation_image(points, Gt, omega_deg, ei_mev, grid, U0, detector=DETECTOR):
    """(data, norm) (nq, nE) of one orientation ω (see the module docstring for the rule)."""
    nq, nE = grid.shape
    data = np.zeros(nq * nE)
    norm = np.zeros(nq * nE)
    sel, ilo, ihi = _orientation_hits(points, omega_deg, ei_mev, grid, U0, detector)
    if len(sel) == 0:
        return data.reshape(nq, nE), norm.reshape(nq, nE)
    amp, iq, base = points.amp[sel], points.iq[sel], points.qbin[sel].astype(np.int64) * nE
    for k in range(int((ihi - ilo).max()) + 1):
        m = ilo + k <= ihi
        if not m.any():
            break
        idx = ilo[m] + k
        val = np.einsum("pm,pm->p", amp[m], Gt[iq[m], :, idx])
        flat = base[m] + idx
        data += np.bincount(flat, weights=val, minlength=nq * nE)
        norm += np.bincount(flat, minlength=nq * nE)
    return data.reshape(nq, nE), norm.reshape(nq, nE)


def orientation_exposure(points, omega_deg, ei_mev, grid, U0, detector=DETECTOR) -> np.ndarray:
    """Number of folded equivalents (Q points) that orientation ω puts into each (q, E) pixel: (nq, nE).

    The ``norm`` of :func:`orientation_image` without the intensities (it needs no force
    constants): the relative exposure of each pixel in one scan."""
    nq, nE = grid.shape
    sel, ilo, ihi = _orientation_hits(points, omega_deg, ei_mev, grid, U0, detector)
    norm = np.zeros(nq * nE)
    if len(sel) == 0:
        return norm.reshape(nq, nE)
    # each point covers the contiguous bins ilo … ihi: a difference array per q-row
    row = points.qbin[sel].astype(np.int64) * (nE + 1)
    size = nq * (nE + 1)
    diff = np.bincount(row + ilo, minlength=size) - np.bincount(row + ihi + 1, minlength=size)
    return np.cumsum(diff.reshape(nq, nE + 1), axis=1)[:, :nE]


def _ratio(data, norm):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, data / np.where(norm > 0, norm, 1.0), np.nan).astype(np.float32)


def _check_scan_meta(meta: dict, path) -> None:
    """The scan set's meta fields that the commands read as numbers: ``u``/``v`` (3 finite numbers,
    r.l.u.) and ``qmax_inv_a`` (a positive number, 1/Å), where present and not null."""
    for k in ("u", "v"):
        x = meta.get(k)
        if x is None:
            continue
        ok = isinstance(x, list) and len(x) == 3 and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in x)
        if not ok or not np.all(np.isfinite(np.asarray(x, float))):
            raise FcinvError(f"{path}: meta {k!r} must be 3 finite numbers (a direction in r.l.u.), got {x!r}"[:300])
    q = meta.get("qmax_inv_a")
    if q is not None and not (isinstance(q, (int, float)) and not isinstance(q, bool) and np.isfinite(q) and q > 0):
        raise FcinvError(f"{path}: meta 'qmax_inv_a' must be a positive number (1/Å), got {q!r}"[:300])


@dataclass
class ScanSet:
    """Simulated single-orientation scans and their union (the full data set).

    full (nq, nE), scans (n, nq, nE) float32 with NaN where not covered; angles_deg (n,);
    coverage (n,) covered-pixel fraction per scan; ei_mev; temperature_k; material (name);
    grid (SpectrumGrid); params (n_params,) reduced FCs (eV/Å²) used; meta (dict).
    ``full_coverage`` is the covered fraction of the union.
    """

    full: np.ndarray
    scans: np.ndarray
    angles_deg: np.ndarray
    coverage: np.ndarray
    ei_mev: float
    temperature_k: float
    material: str
    grid: SpectrumGrid
    params: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def elements(self) -> list[str] | None:
        """The crystal's chemical elements as the file records them (``meta["elements"]``, since
        session 31; before, the species of ``meta["b_coh_fm"]``), None when it does not."""
        from .spectrum_io import scan_set_elements

        return scan_set_elements(self.meta, "the scan set")

    @property
    def axes(self) -> dict:
        """{"u", "v"}: the sample axes the scans were taken with as the file records them (lists
        of floats) — ``meta["u"]``/``meta["v"]``, :data:`SCAN_U`/:data:`SCAN_V` in files that do
        not say; r.l.u. except in a version-1 file of a non-cubic crystal (:meth:`sample_axes`)."""
        return {k: [float(x) for x in np.asarray(self.meta.get(k, d), float)] for k, d in (("u", SCAN_U), ("v", SCAN_V))}

    def sample_axes(self, crystal=None, source: str = "the scan set") -> dict:
        """{"u", "v"} in r.l.u. of ``crystal``'s conventional cell: :attr:`axes`, turned from the
        Cartesian directions a version-1 file (fcinv 0.1.0) recorded where that differs (a
        non-cubic crystal or one in a turned frame; an :class:`FcinvWarning` names the file and
        the r.l.u. read). Without a crystal, or for the presets, :attr:`axes` itself."""
        ax = self.axes
        b = None if crystal is None or self.meta.get("uv_frame") != UV_CARTESIAN else conventional_reciprocal(crystal)
        if b is None:
            return ax
        import warnings

        from .errors import FcinvWarning

        # a Cartesian direction d is h b₁ + k b₂ + l b₃ for [h k l] = d · B⁻¹ (rows of B: b₁, b₂, b₃)
        hkl = {k: np.asarray(ax[k]) @ np.linalg.inv(b) for k in ("u", "v")}
        out = {k: [float(x) for x in h / np.abs(h).max()] for k, h in hkl.items()}  # (a direction: largest index 1)
        shown = {k: "[" + " ".join(f"{x:.4g}" for x in out[k]) + "]" for k in out}
        warnings.warn(
            FcinvWarning(
                f"{source} is a version-1 scan set (fcinv 0.1.0), whose u/v are Cartesian directions of the "
                f"structure file: read as u = {shown['u']}, v = {shown['v']} in r.l.u. of the conventional cell"
            ),
            stacklevel=2,
        )
        return out

    @property
    def full_coverage(self) -> float:
        return float(np.isfinite(self.full).mean())

    def __len__(self) -> int:
        return len(self.angles_deg)

    def scan_index(self, scan_deg: float, source: str = "the scan set") -> int:
        """Index of the scan at sample angle ω = ``scan_deg`` (degrees, to 1e-6°); one line naming
        ``source`` and the angles it has when there is none."""
        from .validate import finite_number

        scan_deg = finite_number(scan_deg, "the scan's sample angle ω (degrees)")
        ang = np.asarray(self.angles_deg, float)
        hit = np.flatnonzero(np.isclose(ang, scan_deg, atol=1e-6))
        if len(hit) == 0:
            raise FcinvError(f"{source} has no scan at ω = {scan_deg:g}° (angles {ang.min():g}…{ang.max():g}°)")
        return int(hit[0])

    def add_noise(self, background: float, counts, seed: int = 0, peak_percentile: float | None = 99.5) -> "ScanSet":
        """A copy with the background + Poisson noise model applied to every image (min-max scaled).

        B and P refer to each image's ``peak_percentile`` intensity (default the 99.5th percentile
        of its covered pixels, not the maximum: the acoustic intensity near Bragg points would
        otherwise leave the phonon ridges with almost no counts); ``None`` = the maximum."""
        from .noise import add_noise
        from .validate import whole_number

        rng = np.random.default_rng(whole_number(seed, "seed", 0))
        full, snr = add_noise(self.full, background, counts, rng=rng, peak_percentile=peak_percentile)
        scans = np.full_like(self.scans, np.nan)
        for i, s in enumerate(self.scans):
            if np.isfinite(s).any():
                scans[i] = add_noise(s, background, counts, rng=rng, peak_percentile=peak_percentile)[0]
        meta = {
            **self.meta,
            "noise": {
                "background": background,
                "counts": counts,
                "seed": seed,
                "snr_full": float(snr),
                "peak_percentile": peak_percentile,
            },
            "units": "min-max scaled to [0, 1] per image (noise model)",
        }
        return ScanSet(
            full,
            scans,
            self.angles_deg,
            self.coverage,
            self.ei_mev,
            self.temperature_k,
            self.material,
            self.grid,
            self.params,
            meta,
        )

    # ------------------------------------------------------------------ HDF5
    def save(self, path) -> None:
        import h5py

        from .validate import as_path

        path = Path(as_path(path, "scan-set file"))
        tmp = path.with_suffix(path.suffix + ".part")
        g = self.grid
        with h5py.File(tmp, "w") as f:
            f.attrs.update(
                {
                    "format": "fcinv-scans",
                    "version": 2,
                    "material": self.material,
                    "ei_mev": self.ei_mev,
                    "temperature_k": self.temperature_k,
                    "grid": json.dumps(g.to_dict()),
                    "intensity": "one-phonon-sqe",
                    "origin": "simulated",
                    "labels": json.dumps(g.q.labels),
                    "breaks": json.dumps(g.q.breaks),
                    "units": self.meta.get("units", "fm^2/meV per atom"),
                    "meta": json.dumps(self.meta, default=_json_default),
                }
            )
            f.create_dataset("full", data=np.asarray(self.full, np.float32))
            f.create_dataset(
                "scans",
                data=np.asarray(self.scans, np.float32),
                compression="gzip",
                compression_opts=4,
                chunks=(1,) + tuple(g.shape),
            )
            f["angles_deg"] = np.asarray(self.angles_deg, float)
            f["coverage"] = np.asarray(self.coverage, float)
            f["params_ev_a2"] = np.asarray(self.params, float)
            g.to_hdf5(f.create_group("grid"))
        tmp.replace(path)

    @classmethod
    def load(cls, path) -> "ScanSet":
        """Read a file written by :meth:`save`; every dataset and attribute is checked (declared
        shape and dtype before reading, shapes against the grid, finite numbers, Ei within
        :func:`check_ei`, angles by :func:`check_angles`) and any problem is one
        :class:`FcinvError` naming the file."""
        import h5py

        from .validate import as_path, h5_array, h5_number

        path = Path(as_path(path, "scan-set file"))
        if not path.is_file():
            raise FcinvError(not_a_file(path, "scan-set file"))
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise FcinvError(f"cannot read {path} as HDF5: {exc}") from None
        with f:
            fmt = f.attrs.get("format")
            fmt = fmt.decode(errors="replace") if isinstance(fmt, bytes) else fmt
            if fmt != "fcinv-scans":
                raise FcinvError(f"{path} is not an fcinv scan-set file (format attribute {fmt!r})")
            version = format_version(f.attrs.get("version"), str(path), reads=2)
            if not isinstance(f.get("grid"), h5py.Group):
                raise FcinvError(f"{path}: no /grid group")
            try:
                grid = SpectrumGrid.from_hdf5(f["grid"])
            except Exception as exc:  # noqa: BLE001 — JSON, key, shape and type errors of a damaged description
                first = (str(exc).splitlines() or [""])[0][:160]
                why = first if isinstance(exc, FcinvError) else f"{type(exc).__name__}: {first}"
                raise FcinvError(f"{path}: cannot read its /grid ({why.removeprefix(f'{path}: ')})") from None
            full = h5_array(f, "full", path, ndim=2)
            scans = h5_array(f, "scans", path, ndim=3)
            angles = h5_array(f, "angles_deg", path, ndim=1)
            coverage = h5_array(f, "coverage", path, ndim=1)
            params = h5_array(f, "params_ev_a2", path, ndim=1)
            ei = h5_number(f.attrs, "ei_mev", path)
            temperature = h5_number(f.attrs, "temperature_k", path, positive=False)
            material = f.attrs.get("material")
            meta_text = f.attrs.get("meta", "{}")
        material = material.decode(errors="replace") if isinstance(material, bytes) else material
        if not isinstance(material, str) or not material.strip():
            raise FcinvError(f"{path}: the material attribute must name the crystal, got {material!r}")
        if full.shape != grid.shape or scans.shape[1:] != grid.shape:
            raise FcinvError(f"{path}: /full {full.shape} and /scans {scans.shape} do not match the grid {grid.shape}")
        n = len(scans)
        if n == 0 or len(angles) != n or len(coverage) != n:
            raise FcinvError(f"{path}: {n} scans, {len(angles)} angles and {len(coverage)} coverages (must be equal and ≥ 1)")
        if np.isnan(angles).any() or np.isnan(coverage).any() or np.isnan(params).any():
            raise FcinvError(f"{path}: NaN in /angles_deg, /coverage or /params_ev_a2")
        if np.any((coverage < 0) | (coverage > 1)):
            raise FcinvError(f"{path}: /coverage must be fractions in [0, 1]")
        check_unmeasured_are_nan(full, scans, coverage, path)
        try:
            angles = check_angles(angles)
            ei = check_ei(ei, grid)
        except FcinvError as exc:
            raise FcinvError(f"{path}: {exc}") from None
        if isinstance(meta_text, bytes):
            meta_text = meta_text.decode(errors="replace")
        try:
            meta = json_loads(meta_text, f"{path}: meta") if isinstance(meta_text, str) else None
        except FcinvError:
            meta = None
        if not isinstance(meta, dict):
            raise FcinvError(f"{path}: the meta attribute must be a JSON object")
        _check_scan_meta(meta, path)
        if version == 1:  # fcinv 0.1.0 took u/v as Cartesian directions (sample_axes turns them)
            meta["uv_frame"] = UV_CARTESIAN
        elif meta.get("uv_frame", UV_RLU) not in (UV_RLU, UV_CARTESIAN):
            raise FcinvError(f"{path}: meta 'uv_frame' must be {UV_RLU!r} or {UV_CARTESIAN!r}, got {meta['uv_frame']!r}"[:300])
        return cls(
            full.astype(np.float32),
            scans.astype(np.float32),
            angles,
            coverage,
            ei,
            temperature,
            material,
            grid,
            params,
            meta,
        )


#: a scan's finite-pixel fraction may differ from its recorded /coverage by this much (a pixel or two)
COVERAGE_TOLERANCE = 0.005


def check_unmeasured_are_nan(full, scans, coverage, path) -> None:
    """A scan set marks the pixels a scan does not reach as NaN: refuse one whose scans hold more finite
    pixels than their own /coverage says, or whose /full holds numbers where no scan reached (a file
    written with 0 for "not measured" read as measured zero intensity: coverage 1.0 for 0.71, exit 0)."""
    finite = np.isfinite(scans).reshape(len(scans), -1).mean(1)
    bad = np.flatnonzero(np.abs(finite - coverage) > COVERAGE_TOLERANCE)
    if bad.size:
        i = int(bad[0])
        raise FcinvError(
            f"{path}: scan {i} has {finite[i]:.1%} of its pixels finite but its /coverage says {coverage[i]:.1%}: "
            "pixels a scan does not reach must be NaN (not 0) in /scans"
        )
    extra = np.isfinite(full) & ~np.isfinite(scans).any(axis=0)
    if extra.mean() > COVERAGE_TOLERANCE:
        raise FcinvError(
            f"{path}: /full has values at {extra.mean():.1%} of its pixels that no scan reaches: pixels no scan "
            "covers must be NaN (not 0) in /full"
        )


def default_params(mat, fc=None):
    """(full parameter vector (eV/Å²), its source) to simulate ``mat`` from: the given force
    constants ``fc`` projected onto the basis, else the shipped DFT ones, else the reference."""
    if fc is not None:
        from .materials import reduce_given

        return reduce_given(mat.basis, fc)[0], "given force constants"
    if mat.dft_params is not None:
        return mat.dft_params, "shipped first-principles (DFT) force constants"
    return mat.reference_params, f"reference ({mat.reference_source})"


def check_stable(mat, params, allow: bool = False) -> float:
    """The lowest mode energy (meV) of the full parameter set ``params`` (eV/Å²) on ``mat``'s q-path
    and stability mesh; a set with a mode below −0.1 meV (imaginary) is refused unless ``allow``.
    The one-phonon S(Q,E) drops imaginary modes (no energy to put them at): an unstable set
    simulated as S(Q,E) lost its unstable branches without a word — negated force constants
    wrote an all-zero image with exit 0 — while the fast image path refused it."""
    from .errors import UnstableError
    from .forward import UNSTABLE_BELOW_MEV, _irreducible_mesh
    from .units import MEV_TO_THZ, VASP_TO_THZ

    # the forward model's test (its q-path and 4×4×4 stability mesh) from D(q) of these force
    # constants alone: milliseconds, where building a forward model for them took 7 s for rutile
    q = np.concatenate([mat.grid.q.qpoints, _irreducible_mesh(mat.basis, (4, 4, 4))])
    lam = float(np.linalg.eigvalsh(mat.basis.dynamical_matrix(params, q)).min())
    lo = float(np.sign(lam) * np.sqrt(abs(lam)) * VASP_TO_THZ / MEV_TO_THZ)
    if not np.isfinite(lo) or (lo < UNSTABLE_BELOW_MEV and not allow):
        raise UnstableError(
            f"this force-constant set is dynamically unstable (lowest mode {lo:.3f} meV < {UNSTABLE_BELOW_MEV} meV on the "
            "q-path and stability mesh): its S(Q,E) would leave the imaginary modes out; pass --allow-unstable to write it anyway"
        )
    return lo


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    raise TypeError(type(o).__name__)


def simulate_scans(
    material,
    ei_mev: float,
    angles_deg,
    temperature: float = 5.0,
    params=None,
    qmax: float | None = None,
    u=(1, 1, 0),
    v=(0, 0, 1),
    b_coh=None,
    dw_mesh=(8, 8, 8),
    progress: bool = True,
    detector=DETECTOR,
) -> ScanSet:
    """Simulate single-orientation scans of ``material`` (a :class:`~fcinv_widgets.materials.Material`).

    ``params``: reduced FCs (eV/Å²), default the material's shipped DFT values, else its reference.
    ``qmax``: largest |Q| (Å⁻¹) of the folded points; default everything the detector reaches at
    E = 0 (2 k_i sin 67.5°), or 6 Å⁻¹ with FCINV_SMALL=1.
    """
    from .sqe import SQE, fold_points, gaussians, small_mode
    from .validate import need_attrs

    need_attrs(
        material,
        ("grid", "basis", "crystal", "dft_params", "reference_params"),
        "simulate_scans takes a Material (e.g. get_material('Ge'), or materials.custom_material), not a forward model",
    )
    grid = material.grid
    ei = check_ei(ei_mev, grid)
    ang = check_angles(angles_deg)
    temperature = finite_number(temperature, "temperature (K)", positive=False, maximum=MAX_TEMPERATURE_K)
    if params is None:
        params = material.dft_params if material.dft_params is not None else material.reference_params
    params = material.basis._check_params(params)
    reach = reach_qmax(ei, grid.e.e_min, detector["h_max_deg"])
    if qmax is not None:
        qmax = finite_number(qmax, "qmax (1/Å)", positive=True)
    qmax = (min(6.0, reach) if small_mode() else reach) if qmax is None else min(qmax, reach)
    t0 = time.perf_counter()
    calc = SQE(material.basis, params, temperature=temperature, b_coh=b_coh, dw_mesh=dw_mesh)
    pts = fold_points(calc, grid, qmax, material.conventional_a)
    Gt = gaussians(pts.energies, grid.e.centers, ei_mev=ei).astype(np.float32)
    t1 = time.perf_counter()
    U0 = orientation_matrix(u, v, material.crystal)
    nq, nE = grid.shape
    scans = np.empty((len(ang), nq, nE), np.float32)
    data_all, norm_all = np.zeros((nq, nE)), np.zeros((nq, nE))
    it = ang
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(ang, desc="orientations", unit="ω", leave=False)
    for i, om in enumerate(it):
        d, n = orientation_image(pts, Gt, float(om), ei, grid, U0, detector)
        scans[i] = _ratio(d, n)
        data_all += d
        norm_all += n
    t2 = time.perf_counter()
    coverage = np.isfinite(scans).reshape(len(ang), -1).mean(1)
    meta = {
        "u": list(map(float, u)),
        "v": list(map(float, v)),
        "uv_frame": UV_RLU,
        "uv_cell_A": uv_cell(material.crystal)[0].tolist(),
        "uv_cell": uv_cell(material.crystal)[1],
        "qmax_inv_a": qmax,
        "n_points": int(pts.n),
        "detector_deg": dict(detector),
        "coverage_rule": "bin-cylinder energy window, see fcinv_widgets.scans",
        "param_names": list(material.basis.names),
        "b_coh_fm": dict(zip(calc.crystal.symbols, calc.b.tolist())),
        "elements": sorted(set(calc.crystal.symbols)),
        "dw_mesh": list(dw_mesh) if dw_mesh is not None else None,
        "resolution": {"kind": "arcs", "ei_mev": ei},
        "units": "fm^2/meV per atom",
        "timing_s": {"setup": t1 - t0, "orientations": t2 - t1},
    }
    return ScanSet(
        _ratio(data_all, norm_all),
        scans,
        ang,
        coverage,
        ei,
        float(temperature),
        material.name,
        grid,
        np.asarray(params, float),
        meta,
    )
