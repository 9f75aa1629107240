"""The (q, E) grid of every spectrum: a high-symmetry q-path and an energy axis.

A :class:`QPath` is a list of straight segments between labelled points of the
Brillouin zone, each cut into bins of equal length; the spectrum's q-axis holds the
bin centres (as Mantid's MDNorm binning does). Points are given in conventional
reciprocal-lattice units (r.l.u.) and converted to fractional coordinates of the
primitive cell's reciprocal lattice, which the forward model uses.
"""

from __future__ import annotations

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


def build_qpath(points: dict, path: list, conventional_to_primitive: np.ndarray, conventional_reciprocal: np.ndarray, step: float = 0.025) -> QPath:
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
    segs, conv = [], []
    for a, b in path:
        qa, qb = np.asarray(points[a], float), np.asarray(points[b], float)
        d = qb - qa
        length = np.abs(d).max()
        n = int(round(length / step))
        if n < 1:
            raise FcinvError(f"segment {a}–{b} is shorter than one q step ({step} r.l.u.)")
        frac = (np.arange(n) + 0.5) / n
        conv.append(qa + frac[:, None] * d)
        segs.append(Segment(a, b, tuple(qa), tuple(qb), n))
    conv = np.concatenate(conv)
    prim = conv @ np.asarray(conventional_to_primitive, float)
    # cumulative distance: within a segment, continuous; at a jump, no gap
    cart = conv @ np.asarray(conventional_reciprocal, float)
    dist = np.zeros(len(conv))
    start = 0
    offset = 0.0
    for s in segs:
        seg_cart = cart[start : start + s.n_bins]
        seg_len = np.linalg.norm((np.asarray(s.end_q) - np.asarray(s.start_q)) @ conventional_reciprocal)
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


@dataclass(frozen=True)
class SpectrumGrid:
    """The (q, E) grid: ``q`` (:class:`QPath`) and ``e`` (:class:`EnergyGrid`); images are (nq, nE)."""

    q: QPath
    e: EnergyGrid

    @property
    def shape(self) -> tuple:
        return (self.q.nq, self.e.n)

    def to_dict(self) -> dict:
        return {
            "shape": list(self.shape),
            "q": self.q.to_dict(),
            "energy": {"min_mev": self.e.e_min, "max_mev": self.e.e_max, "step_mev": self.e.step},
        }

    def check_image(self, image, name: str = "spectrum") -> np.ndarray:
        """Return ``image`` as a float array of shape (..., nq, nE) or raise GridMismatchError."""
        from .errors import GridMismatchError

        arr = np.asarray(image)
        if arr.ndim < 2 or arr.shape[-2:] != self.shape:
            raise GridMismatchError(
                f"{name} has shape {arr.shape}, but this grid needs (..., {self.shape[0]}, {self.shape[1]}) "
                f"({self.shape[0]} q-bins × {self.shape[1]} energy bins)"
            )
        return arr
