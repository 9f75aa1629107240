"""Our single-spectrum HDF5 file (written by ``fcinv simulate``; read by ``analysis.expio.read_spectrum``).

Layout::

    /spectrum                 (nq, nE) float32   I(q, E); NaN where not covered
    /grid                     the (q, E) grid (:meth:`SpectrumGrid.to_hdf5`): q_points (nq, 3) primitive
                              r.l.u., q_conventional (nq, 3), q_distance (nq,) Å⁻¹, energy_centers_mev (nE,)
    attrs: format="fcinv-spectrum", version=1, material, labels (JSON [[index, label], ...]),
           breaks (JSON), plus free metadata (e.g. params_ev_a2, param_names, sigma_mev) and what
           the spectrum is: intensity ("model-image" | "one-phonon-sqe"), origin ("simulated" |
           "measured"), temperature_k, ei_mev, corrections (already applied; see analysis.expio).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import FcinvError
from .grid import SpectrumGrid
from .validate import json_or_text


def write_spectrum(path, image, grid: SpectrumGrid, material: str = "", **meta) -> None:
    import h5py

    image = grid.check_image(image)
    if image.ndim != 2:
        raise FcinvError(f"write_spectrum takes one (nq, nE) image, got shape {image.shape}")
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".part")
    with h5py.File(tmp, "w") as f:
        f.attrs.update(
            {
                "format": "fcinv-spectrum",
                "version": 1,
                "material": material,
                "labels": json.dumps(grid.q.labels),
                "breaks": json.dumps(grid.q.breaks),
            }
        )
        for k, v in meta.items():
            f.attrs[k] = json.dumps(v.tolist() if isinstance(v, np.ndarray) else v)
        f.create_dataset("spectrum", data=np.asarray(image, np.float32))
        grid.to_hdf5(f.create_group("grid"))
    tmp.replace(path)


def read_attrs(path) -> dict:
    """The metadata of our spectrum file (attributes, JSON decoded). The image itself is read, like
    every other spectrum format, by :func:`fcinv_widgets.analysis.expio.read_spectrum`."""
    import h5py

    from .validate import not_a_file

    path = Path(path)
    if not path.is_file():
        raise FcinvError(not_a_file(path, "spectrum file"))
    try:
        with h5py.File(path, "r") as f:
            return {k: _decode(v, f"{path}: attribute {k}") for k, v in f.attrs.items()}
    except OSError as exc:
        raise FcinvError(f"cannot read {path} as HDF5: {exc}") from None


def _decode(v, what: str = "an attribute"):
    """Attributes written as JSON come back as Python values; plain strings stay strings."""
    return json_or_text(v, what)


def file_elements(value, source) -> list[str] | None:
    """A file's ``elements`` record (its crystal's chemical elements) as a sorted list; None when
    absent; anything but a short list of element symbols is one :class:`FcinvError`."""
    if value is None:
        return None
    from ase.data import atomic_numbers

    ok = isinstance(value, (list, tuple)) and 0 < len(value) <= 120
    ok = ok and all(isinstance(e, str) and e.strip() in atomic_numbers for e in value)
    if not ok:
        raise FcinvError(f"{source}: the elements attribute must be a list of chemical symbols, got {str(value)[:80]}")
    return sorted({e.strip() for e in value})


def scan_set_elements(meta, source) -> list[str] | None:
    """A scan set's crystal elements from its ``meta`` (JSON object): ``elements`` (since session
    31), else the species of its ``b_coh_fm`` (older sets); None when it has neither."""
    meta = meta if isinstance(meta, dict) else {}
    v = meta.get("elements")
    if v is None and isinstance(meta.get("b_coh_fm"), dict):
        v = list(meta["b_coh_fm"])
    return file_elements(v, source)
