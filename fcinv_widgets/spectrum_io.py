"""Our single-spectrum HDF5 file (written by ``fcinv simulate``, read by ``fcinv invert``).

Layout::

    /spectrum                 (nq, nE) float32   I(q, E); NaN where not covered
    /grid/q_points            (nq, 3)  primitive reciprocal fractional coordinates
    /grid/q_conventional      (nq, 3)  conventional r.l.u.
    /grid/energy_centers_mev  (nE,)
    attrs: format="fcinv-spectrum", version=1, material, labels (JSON [[index, label], ...]),
           breaks (JSON), plus free metadata (e.g. params_ev_a2, param_names, sigma_mev) and what
           the spectrum is: intensity ("model-image" | "one-phonon-sqe"), origin ("simulated" |
           "measured"), temperature_k, ei_mev, corrections (already applied; see analysis.expio).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import FcinvError, GridMismatchError
from .grid import SpectrumGrid


def write_spectrum(path, image, grid: SpectrumGrid, material: str = "", **meta) -> None:
    import h5py

    image = grid.check_image(image)
    if image.ndim != 2:
        raise FcinvError(f"write_spectrum takes one (nq, nE) image, got shape {image.shape}")
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".part")
    with h5py.File(tmp, "w") as f:
        f.attrs.update({"format": "fcinv-spectrum", "version": 1, "material": material,
                        "labels": json.dumps(grid.q.labels), "breaks": json.dumps(grid.q.breaks)})
        for k, v in meta.items():
            f.attrs[k] = json.dumps(v.tolist() if isinstance(v, np.ndarray) else v)
        f.create_dataset("spectrum", data=np.asarray(image, np.float32))
        g = f.create_group("grid")
        g["q_points"] = grid.q.qpoints
        g["q_conventional"] = grid.q.conventional_qpoints
        g["energy_centers_mev"] = grid.e.centers
    tmp.replace(path)


def read_spectrum(path, grid: SpectrumGrid | None = None):
    """Read our spectrum file → (image (nq, nE) float32, attrs dict). Checks ``grid`` if given."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FcinvError(f"spectrum file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if "spectrum" not in f:
                raise FcinvError(f"{path} has no /spectrum dataset (not an fcinv spectrum file)")
            img = np.asarray(f["spectrum"], np.float32)
            attrs = {k: _decode(v) for k, v in f.attrs.items()}
            e = np.asarray(f["grid/energy_centers_mev"]) if "grid/energy_centers_mev" in f else None
    except OSError as exc:
        raise FcinvError(f"cannot read {path} as HDF5: {exc}") from None
    if grid is not None:
        grid.check_image(img, name=str(path))
        if e is not None and (len(e) != grid.e.n or not np.allclose(e, grid.e.centers, atol=1e-6)):
            raise GridMismatchError(f"{path}: energy bins {e[0]:.3g}…{e[-1]:.3g} meV differ from the model's {grid.e.centers[0]:.3g}…{grid.e.centers[-1]:.3g} meV")
    return img, attrs


def _decode(v):
    """Attributes written as JSON come back as Python values; plain strings stay strings."""
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v
