"""The (q, E) grid of every spectrum: a high-symmetry q-path and an energy axis.

A :class:`QPath` is a list of straight segments between labelled points of the
Brillouin zone, each cut into bins of equal length; the spectrum's q-axis holds the
bin centres (as Mantid's MDNorm binning does). Points are given in conventional
reciprocal-lattice units (r.l.u.) and converted to fractional coordinates of the
primitive cell's reciprocal lattice, which the forward model uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .errors import FcinvError


@dataclass(frozen=True)
class Segment:
    start: str
    end: str
    start_q: tuple  # conventional r.l.u.
    end_q: tuple
    n_bins: int


@dataclass(frozen=True)
class QPath:
    """Segments, q-points (bin centres) and plotting axes.

    Attributes
    ----------
    segments : list of :class:`Segment`
    conventional_qpoints : (nq, 3) — bin centres in conventional r.l.u.
    qpoints : (nq, 3) — the same points in fractional coordinates of the primitive reciprocal lattice.
    distance : (nq,) — cumulative path length in Å⁻¹ at bin centres (for dispersion plots).
    """

    segments: tuple
    conventional_qpoints: np.ndarray
    qpoints: np.ndarray
    distance: np.ndarray

    @property
    def nq(self) -> int:
        return len(self.qpoints)

    @property
    def x(self) -> np.ndarray:
        """Plotting coordinate of the bin centres: bin index + 0.5 (labels sit at bin edges)."""
        return np.arange(self.nq) + 0.5

    @property
    def boundaries(self) -> np.ndarray:
        """Bin index at which each segment starts, plus the total (len n_segments + 1)."""
        return np.concatenate([[0], np.cumsum([s.n_bins for s in self.segments])])

    @property
    def breaks(self) -> list:
        """Bin indices where the path jumps (the end of one segment is not the start of the next)."""
        b = self.boundaries
        return [int(b[i + 1]) for i in range(len(self.segments) - 1) if self.segments[i].end != self.segments[i + 1].start]

    @property
    def labels(self) -> list:
        """(bin-edge index, label) pairs for plots; jumps are written 'U|K'."""
        b = self.boundaries
        out = [(0, self.segments[0].start)]
        for i, seg in enumerate(self.segments):
            nxt = self.segments[i + 1] if i + 1 < len(self.segments) else None
            label = seg.end if nxt is None or nxt.start == seg.end else f"{seg.end}|{nxt.start}"
            out.append((int(b[i + 1]), label))
        return out

    def to_dict(self) -> dict:
        return {
            "segments": [[s.start, s.end, list(s.start_q), list(s.end_q), s.n_bins] for s in self.segments],
        }


def build_qpath(
    points: dict, path: list, conventional_to_primitive: np.ndarray, conventional_reciprocal: np.ndarray, step: float = 0.025
) -> QPath:
    """Make a :class:`QPath`.

    Parameters
    ----------
    points : label -> conventional r.l.u.
    path : list of (start_label, end_label) segments, in order.
    conventional_to_primitive : (3, 3) matrix P with q_prim = Q_conv @ P.
    conventional_reciprocal : (3, 3) rows b1..b3 of the conventional reciprocal lattice (Å⁻¹), for distances.
    step : bin length along each segment, in r.l.u. of the segment direction normalised by its
        largest component (the paper's folding software convention: Γ–X at 0.025 gives 40 bins).
    """
    segs: list[Segment] = []
    conv_parts: list[np.ndarray] = []
    for a, b in path:
        qa, qb = np.asarray(points[a], float), np.asarray(points[b], float)
        d = qb - qa
        length = np.abs(d).max()
        n = int(round(length / step))
        if n < 1:
            raise FcinvError(f"segment {a}–{b} is shorter than one q step ({step} r.l.u.)")
        frac = (np.arange(n) + 0.5) / n
        conv_parts.append(qa + frac[:, None] * d)
        segs.append(Segment(a, b, tuple(qa), tuple(qb), n))
    conv = np.concatenate(conv_parts)
    prim = conv @ np.asarray(conventional_to_primitive, float)
    # cumulative distance: within a segment, continuous; at a jump, no gap
    dist = np.zeros(len(conv))
    start = 0
    offset = 0.0
    for s in segs:
        seg_len = float(np.linalg.norm((np.asarray(s.end_q) - np.asarray(s.start_q)) @ conventional_reciprocal))
        dist[start : start + s.n_bins] = offset + (np.arange(s.n_bins) + 0.5) / s.n_bins * seg_len
        offset += seg_len
        start += s.n_bins
    return QPath(tuple(segs), conv, prim, dist)


@dataclass(frozen=True)
class EnergyGrid:
    """Energy bins in meV: ``edges`` (nE+1,), ``centers`` (nE,)."""

    e_min: float
    e_max: float
    step: float

    def __post_init__(self):
        if not (self.e_max > self.e_min and self.step > 0):
            raise FcinvError(f"bad energy grid: {self.e_min}–{self.e_max} meV in steps of {self.step}")

    @property
    def n(self) -> int:
        return int(round((self.e_max - self.e_min) / self.step))

    @property
    def edges(self) -> np.ndarray:
        return self.e_min + self.step * np.arange(self.n + 1)

    @property
    def centers(self) -> np.ndarray:
        return self.e_min + self.step * (np.arange(self.n) + 0.5)

    @classmethod
    def from_centers(cls, centers) -> EnergyGrid | None:
        """The grid whose bin centres are ``centers`` (meV, evenly spaced, increasing); None when
        they are not (fewer than two, uneven by more than 1e-4 of a bin, decreasing or not finite)."""
        c = np.asarray(centers, float).ravel()
        if c.size < 2 or not np.all(np.isfinite(c)):
            return None
        steps = np.diff(c)
        step = float(steps.mean())
        if step <= 0 or np.abs(steps - step).max() > 1e-4 * step:
            return None
        return cls(float(c[0] - step / 2), float(c[-1] + step / 2), step)


@dataclass(frozen=True)
class SpectrumGrid:
    """The (q, E) grid: ``q`` (:class:`QPath`) and ``e`` (:class:`EnergyGrid`); images are (nq, nE)."""

    q: QPath
    e: EnergyGrid

    @property
    def shape(self) -> tuple:
        return (self.q.nq, self.e.n)

    def to_dict(self, arrays: bool = False) -> dict:
        """JSON-able description: segments and energy axis; with ``arrays`` also the q-points
        (primitive and conventional r.l.u.) and path distances (Å⁻¹), so that
        :meth:`from_dict` rebuilds the grid exactly (what checkpoints store)."""
        q: dict = self.q.to_dict()
        d = {
            "shape": list(self.shape),
            "q": q,
            "energy": {"min_mev": self.e.e_min, "max_mev": self.e.e_max, "step_mev": self.e.step},
        }
        if arrays:
            q |= {
                "q_points": self.q.qpoints.tolist(),
                "q_conventional": self.q.conventional_qpoints.tolist(),
                "q_distance": self.q.distance.tolist(),
            }
        return d

    @classmethod
    def from_dict(cls, d: dict, q_points=None, q_conventional=None, q_distance=None) -> SpectrumGrid:
        """The grid of :meth:`to_dict` (the arrays from ``d`` or given here)."""
        try:
            qd, ed = d["q"], d["energy"]
            segs = tuple(
                Segment(str(a), str(b), tuple(map(float, sa)), tuple(map(float, sb)), int(n))
                for a, b, sa, sb, n in qd["segments"]
            )
            arrs = [
                np.asarray(qd[k] if v is None else v, float)
                for k, v in (("q_conventional", q_conventional), ("q_points", q_points), ("q_distance", q_distance))
            ]
            grid = cls(QPath(segs, *arrs), EnergyGrid(float(ed["min_mev"]), float(ed["max_mev"]), float(ed["step_mev"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise FcinvError(f"not a valid grid description ({type(exc).__name__}: {exc})") from None
        nq = sum(s.n_bins for s in segs)
        if any(a.shape[0] != nq for a in arrs) or grid.q.qpoints.shape != (nq, 3) or grid.q.conventional_qpoints.shape != (nq, 3):
            raise FcinvError(f"grid description: {nq} q-bins in the segments, arrays of {[a.shape for a in arrs]}")
        return grid

    def to_hdf5(self, group) -> None:
        """Write the grid into an (empty) h5py group, conventionally ``/grid``::

        q_points (nq, 3)  q_conventional (nq, 3)  q_distance (nq,) Å⁻¹  energy_centers_mev (nE,)
        attrs: grid (JSON of :meth:`to_dict`), labels, breaks (JSON)
        """
        group["q_points"] = self.q.qpoints
        group["q_conventional"] = self.q.conventional_qpoints
        group["q_distance"] = self.q.distance
        group["energy_centers_mev"] = self.e.centers
        group.attrs["grid"] = json.dumps(self.to_dict())
        group.attrs["labels"] = json.dumps(self.q.labels)
        group.attrs["breaks"] = json.dumps(self.q.breaks)

    @classmethod
    def from_hdf5(cls, group) -> SpectrumGrid:
        """Read a grid written by :meth:`to_hdf5` (files of fcinv ≤ 0.1 kept the JSON in the file's attributes)."""
        text = group.attrs.get("grid", group.file.attrs.get("grid"))
        if text is None:
            raise FcinvError(f"{group.file.filename}: the grid has no description (written by an older fcinv)")
        from .validate import real_array

        try:
            arrays = {
                k: real_array(group[k][()], f"{group.file.filename}:/grid/{k}", allow_nan=False)
                for k in ("q_points", "q_conventional", "q_distance")
            }
        except KeyError as exc:
            raise FcinvError(f"{group.file.filename}: /grid lacks {exc}") from None
        from .validate import json_loads

        grid = cls.from_dict(json_loads(text, f"{group.file.filename}:/grid description"), **arrays)
        if "energy_centers_mev" in group and not np.allclose(group["energy_centers_mev"][()], grid.e.centers, atol=1e-6):
            raise FcinvError(f"{group.file.filename}: /grid energies do not match its description")
        return grid

    def same_as(self, other: SpectrumGrid, atol: float = 1e-6) -> bool:
        """True when both grids have the same q-points (primitive r.l.u.) and energy bins (meV)."""
        return (
            self.shape == other.shape
            and np.allclose(self.q.qpoints, other.q.qpoints, atol=atol)
            and np.allclose(self.e.centers, other.e.centers, atol=atol)
        )

    def check_image(self, image, name: str = "spectrum") -> np.ndarray:
        """Return ``image`` as a float array of shape (..., nq, nE) or raise GridMismatchError."""
        from .errors import GridMismatchError
        from .validate import as_real_array

        plain = isinstance(image, np.ndarray) and image.dtype.kind in "fiu" and not np.ma.isMaskedArray(image)
        arr = image if plain else as_real_array(image, name)  # real arrays keep their dtype (float32 files)
        if arr.ndim < 2 or arr.shape[-2:] != self.shape:
            raise GridMismatchError(
                f"{name} has shape {arr.shape}, but this grid needs (..., {self.shape[0]}, {self.shape[1]}) "
                f"({self.shape[0]} q-bins × {self.shape[1]} energy bins)"
            )
        return arr
