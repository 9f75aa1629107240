"""Experimental (folded) spectra: readers for the formats the paper's folding software
writes, plus our own, all returning an (nq, nE) image with NaN where nothing was measured.

* pathSQE ``.npz``: one (nq_segment, nE) array per path segment, ``arr_0 … arr_5``,
  stacked along q in order;
* Mantid MDHisto NeXus (``SaveMD``; read with h5py, no Mantid needed): the
  ``MDHistoWorkspace/data/signal`` array, whose ``axes`` attribute lists the dimensions in
  reverse order (``D3:D2:D1:D0``); the energy dimension is found by its name or units
  (DeltaE / meV), single-bin (integrated) dimensions are squeezed, and the result is
  q-major (nq, nE);
* ours: ``fcinv-spectrum`` HDF5 (:mod:`fcinv_widgets.spectrum_io`), the full data set
  ``/full`` of an ``fcinv-scans`` HDF5 scan set (:mod:`fcinv_widgets.scans`), ``.npz`` with key
  ``spectrum`` (optionally ``energy_centers_mev``), or a plain ``.npy`` (nq, nE) array.

Every reader checks the image against the model's grid when one is given: the shape,
the segment lengths (pathSQE npz) and the energy axis (when the file has one).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FcinvError, GridMismatchError
from ..validate import check_declared, real_array


@dataclass
class Spectrum:
    image: np.ndarray  # (nq, nE) float64, NaN = not measured
    source: str
    fmt: str
    energies: np.ndarray | None = None  # meV bin centres, when the file has them

    @property
    def mask(self) -> np.ndarray:
        return np.isfinite(self.image)

    @property
    def coverage(self) -> float:
        return float(self.mask.mean())


def read_spectrum(path, grid=None) -> Spectrum:
    """Read a folded spectrum in any supported format; check it against ``grid`` if given."""
    path = Path(path)
    if not path.is_file():
        raise FcinvError(f"spectrum file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            spec = _read_npz(path, grid)
        elif suffix == ".npy":
            spec = Spectrum(_load_npy(path, str(path)), str(path), "npy")
        elif suffix in (".h5", ".hdf5", ".nxs", ".nx5"):
            spec = _read_hdf5(path, grid)
        else:
            raise FcinvError(f"{path}: unknown spectrum format {suffix!r} (use .h5/.nxs, .npz or .npy)")
    except FcinvError:
        raise
    except (ValueError, EOFError, KeyError, TypeError, OSError, zipfile.BadZipFile) as exc:  # truncated or foreign files
        raise FcinvError(f"{path}: cannot read it as a {suffix} spectrum ({_first_line(exc)})") from None
    return _validate(spec, grid)


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _load_npy(path, name: str) -> np.ndarray:
    """A 2-D real array from a ``.npy`` file: the header is checked before the data is read."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        shape, _, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                           else np.lib.format.read_array_header_2_0(fh))
    check_declared(shape, dtype, name, ndim=2)
    return real_array(np.load(path, allow_pickle=False), name, allow_inf=True)


def _npz_member(z, key: str, name: str) -> np.ndarray:
    """One array of an open ``np.load`` npz, its header checked before reading."""
    with z.zip.open(key + ".npy") as fh:
        version = np.lib.format.read_magic(fh)
        shape, _, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                           else np.lib.format.read_array_header_2_0(fh))
    check_declared(shape, dtype, f"{name}[{key}]")
    return real_array(z[key], f"{name}[{key}]", allow_inf=True)


def _validate(spec: Spectrum, grid) -> Spectrum:
    img = spec.image
    if img.ndim != 2:
        raise GridMismatchError(f"{spec.source}: expected a 2-D (q, E) image, got shape {img.shape}")
    if np.any(np.isinf(img)):
        raise FcinvError(f"{spec.source}: the spectrum contains inf")
    if not np.isfinite(img).any():
        raise FcinvError(f"{spec.source}: no pixel is covered (all NaN)")
    if grid is not None:
        if img.shape != tuple(grid.shape):
            raise GridMismatchError(f"{spec.source}: the image is {img.shape[0]} q-bins × {img.shape[1]} energy bins, "
                                    f"the model's grid is {grid.shape[0]} × {grid.shape[1]}")
        if spec.energies is not None and not np.allclose(spec.energies, grid.e.centers, atol=1e-3):
            raise GridMismatchError(f"{spec.source}: energy bins {spec.energies[0]:.3g}…{spec.energies[-1]:.3g} meV "
                                    f"differ from the model's {grid.e.centers[0]:.3g}…{grid.e.centers[-1]:.3g} meV")
    return spec


def _read_npz(path: Path, grid) -> Spectrum:
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.keys())
        if "spectrum" in keys:
            e = _npz_member(z, "energy_centers_mev", str(path)) if "energy_centers_mev" in keys else None
            return Spectrum(_npz_member(z, "spectrum", str(path)), str(path), "npz", e)
        segs = sorted((k for k in keys if k.startswith("arr_") and k[4:].isdigit()), key=lambda k: int(k[4:]))
        if not segs:
            raise FcinvError(f"{path}: neither a 'spectrum' array nor pathSQE segments arr_0, arr_1, … (keys: {keys})")
        arrays = [_npz_member(z, k, str(path)) for k in segs]
    if any(a.ndim != 2 for a in arrays):
        raise GridMismatchError(f"{path}: every segment must be a (nq_segment, nE) array, got {[a.shape for a in arrays]}")
    if len({a.shape[1] for a in arrays}) != 1:
        raise GridMismatchError(f"{path}: segments have different numbers of energy bins: {[a.shape[1] for a in arrays]}")
    if grid is not None:
        want = [s.n_bins for s in grid.q.segments]
        got = [a.shape[0] for a in arrays]
        if got != want:
            names = [f"{s.start}–{s.end}" for s in grid.q.segments]
            raise GridMismatchError(f"{path}: {len(got)} segments of {got} q-bins; the model's path has "
                                    f"{len(want)} segments {', '.join(f'{n} {w}' for n, w in zip(names, want))}")
    return Spectrum(np.concatenate(arrays, axis=0), str(path), "pathSQE-npz")


def _read_hdf5(path: Path, grid) -> Spectrum:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FcinvError(f"cannot read {path} as HDF5/NeXus: {exc}") from None
    with f:
        fmt = f.attrs.get("format")
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        if fmt in ("fcinv-spectrum", "fcinv-scans"):  # a scan set: its full data set (union of orientations)
            key = "spectrum" if fmt == "fcinv-spectrum" else "full"
            e = _h5_array(f, "grid/energy_centers_mev", path, ndim=1) if "grid/energy_centers_mev" in f else None
            return Spectrum(_h5_array(f, key, path, ndim=2), str(path), "fcinv" if key == "spectrum" else fmt, e)
        if "MDHistoWorkspace/data/signal" in f:
            return _read_mdhisto(f, path, grid)
    raise FcinvError(f"{path}: not an fcinv spectrum file (no format attribute) nor a Mantid MDHisto NeXus file "
                     "(no MDHistoWorkspace/data/signal)")


def _h5_array(f, key: str, path, ndim: int | None = None) -> np.ndarray:
    """A real array from HDF5 dataset ``key``, its shape and dtype checked before it is read."""
    import h5py

    obj = f.get(key)
    if not isinstance(obj, h5py.Dataset):
        raise FcinvError(f"{path}: no dataset /{key} ({'a group' if obj is not None else 'missing'})")
    check_declared(obj.shape, obj.dtype, f"{path}:/{key}", ndim=ndim)
    return real_array(obj[()], f"{path}:/{key}", allow_inf=True)


def _read_mdhisto(f, path: Path, grid) -> Spectrum:
    data = f["MDHistoWorkspace/data"]
    sig = _h5_array(f, "MDHistoWorkspace/data/signal", path)
    axes_attr = data["signal"].attrs.get("axes")
    if isinstance(axes_attr, np.ndarray) and axes_attr.size == 1:
        axes_attr = axes_attr.item()
    if isinstance(axes_attr, bytes):
        axes_attr = axes_attr.decode(errors="replace")
    if axes_attr is not None and not isinstance(axes_attr, str):
        raise FcinvError(f"{path}: the 'axes' attribute of MDHistoWorkspace/data/signal must be a string such as "
                         f"'D1:D0', got {type(axes_attr).__name__} {np.asarray(axes_attr).tolist()!r}")
    names = axes_attr.split(":") if axes_attr else [f"D{i}" for i in reversed(range(sig.ndim))]
    if len(names) != sig.ndim:
        raise FcinvError(f"{path}: signal has {sig.ndim} dimensions but its 'axes' attribute lists {len(names)}")

    def is_energy(name):
        if name not in data:
            return False
        a = data[name].attrs
        txt = " ".join(str(a.get(k, b"")) for k in ("long_name", "units", "frame")).lower()
        return "deltae" in txt or "mev" in txt or "energy" in txt

    keep = [i for i, n in enumerate(sig.shape) if n > 1]
    if len(keep) != 2:
        raise GridMismatchError(f"{path}: MDHisto signal {sig.shape} must have exactly two dimensions with more than one bin (q and E)")
    e_axis = [i for i in keep if is_energy(names[i])]
    img = sig.reshape([sig.shape[i] for i in keep])
    energies = None
    if e_axis:
        if e_axis[0] == keep[0]:
            img = img.T
        edges = _h5_array(data, names[e_axis[0]], path, ndim=1)
        energies = 0.5 * (edges[1:] + edges[:-1]) if len(edges) == img.shape[1] + 1 else None
    elif grid is not None and img.shape[::-1] == tuple(grid.shape) and img.shape != tuple(grid.shape):
        img = img.T  # no axis metadata: orient by the model's grid
    return Spectrum(img, str(path), "mantid-mdhisto", energies)


def write_pathsqe_npz(path, image, grid) -> None:
    """Write an (nq, nE) image as pathSQE does: one array per path segment (arr_0 …)."""
    image = grid.check_image(image)
    b = grid.q.boundaries
    np.savez(path, *[np.asarray(image[b[i] : b[i + 1]]) for i in range(len(b) - 1)])


def to_model_intensity(image, grid, temperature_k: float | None = None, clip_percentile: float | None = None,
                       e_min_mev: float = 0.0) -> np.ndarray:
    """Bring a measured (or fully simulated) folded S(q, E) closer to the models' training intensity.

    The models were trained on the paper's unpolarized intensity, every phonon mode a
    unit-weight Gaussian. A one-phonon coherent S(Q, E) weights each mode by
    |Q·e|² (n(E)+1) / E: after folding over many zones |Q·e|² averages out, but the
    (n+1)/E factor remains and, near Bragg points, diverges for the acoustic branches, so
    min-max scaling leaves everything else near zero. This function

    * with ``temperature_k``: multiplies every energy bin by E / (n(E, T) + 1) (E in meV,
      bin centres; bins below ``e_min_mev`` or at E ≤ 0 are set to NaN = not used);
    * with ``clip_percentile`` (e.g. 99.5): clips intensities above that percentile of the
      covered pixels (Bragg tails, hot pixels) before the models' own min-max scaling.

    Returns a float64 (nq, nE) image, NaN where not covered. Nothing else is changed.
    """
    from ..sqe import bose_factor

    img = np.array(image, dtype=float)
    if img.shape != tuple(grid.shape):
        raise GridMismatchError(f"spectrum has shape {img.shape}, the grid is {tuple(grid.shape)} (nq, nE)")
    e = np.asarray(grid.e.centers, float)
    if temperature_k is not None:
        if not (np.isfinite(temperature_k) and temperature_k >= 0):
            raise FcinvError(f"temperature must be ≥ 0 K, got {temperature_k!r}")
        ok = (e > 0) & (e >= e_min_mev)
        w = np.full(e.shape, np.nan)
        w[ok] = e[ok] / bose_factor(e[ok], float(temperature_k))
        img = img * w[None, :]
    elif e_min_mev > 0:
        img[:, e < e_min_mev] = np.nan
    if clip_percentile is not None:
        if not 0 < clip_percentile <= 100:
            raise FcinvError(f"clip percentile must be in (0, 100], got {clip_percentile!r}")
        vals = img[np.isfinite(img)]
        if vals.size == 0:
            raise FcinvError("the spectrum has no covered (finite) pixel")
        img = np.minimum(img, np.percentile(vals, clip_percentile))
    return img
