"""Checks of user-supplied spectra, in one place: every reader, the models' ``predict`` and
the CLI call :func:`check_spectra` before anything is computed.

A spectrum is an (nq, nE) image of real intensities (any unit), NaN where nothing was
measured (the pathSQE convention). Refused, each with one line naming the problem
(:class:`~fcinv_widgets.errors.FcinvError`; a wrong shape raises
:class:`~fcinv_widgets.errors.GridMismatchError`):

* anything that is not an array of real numbers (strings, objects, ragged lists, booleans)
  and complex values (an intensity is real: casting would silently drop the imaginary part);
* a wrong shape (not (nq, nE) or (N, nq, nE), or not the model's grid);
* ±inf anywhere; a spectrum with no measured pixel (all NaN);
* an all-zero or constant spectrum (no contrast: min-max scaling would invent one).
"""

from __future__ import annotations

import numpy as np

from .errors import FcinvError, GridMismatchError


def as_real_array(data, name: str = "spectrum") -> np.ndarray:
    """``data`` as a float64 array, refusing strings, objects, booleans and complex values."""
    if data is None:
        raise FcinvError(f"{name}: no data (None)")
    try:
        arr = np.asarray(data)
    except ValueError as exc:  # ragged nested lists
        raise FcinvError(f"{name}: not a rectangular array of numbers ({exc})") from None
    kind = arr.dtype.kind
    if kind == "c":
        raise FcinvError(f"{name}: complex values (dtype {arr.dtype}); give the real intensity, e.g. np.abs(x)**2 or x.real")
    if kind not in "iuf":
        raise FcinvError(f"{name}: expected real numbers, got dtype {arr.dtype}"
                         + (" (text)" if kind in "US" else " (objects or a ragged list)" if kind == "O" else ""))
    return arr.astype(np.float64, copy=False)


def check_spectra(data, shape=None, name: str = "spectrum") -> np.ndarray:
    """Validate one (nq, nE) spectrum or a stack (N, nq, nE); returns float64 of the same shape.

    ``shape``: the (nq, nE) the model needs, or None to accept any 2-D image.
    """
    x = as_real_array(data, name)
    if x.ndim not in (2, 3) or (shape is not None and x.shape[-2:] != tuple(shape)):
        want = f"({shape[0]}, {shape[1]}) or (N, {shape[0]}, {shape[1]})" if shape is not None else "(nq, nE) or (N, nq, nE)"
        raise GridMismatchError(f"{name}: shape {x.shape}; expected {want}")
    stack = x[None] if x.ndim == 2 else x
    if len(stack) == 0:
        raise FcinvError(f"{name}: an empty stack (0 spectra)")
    flat = stack.reshape(len(stack), -1)
    n_inf = np.isinf(flat).sum(1)
    fin = np.isfinite(flat)
    hi = np.where(fin, flat, -np.inf).max(1)
    lo = np.where(fin, flat, np.inf).min(1)
    bad = (n_inf > 0) | ~fin.any(1) | (hi == lo)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        which = name if len(stack) == 1 else f"{name} {i}"
        if n_inf[i]:
            raise FcinvError(f"{which}: contains ±inf ({int(n_inf[i])} pixels); use NaN for unmeasured pixels")
        if not fin[i].any():
            raise FcinvError(f"{which}: no measured pixel (all NaN)")
        if hi[i] == 0:
            raise FcinvError(f"{which}: all zero (no intensity)")
        raise FcinvError(f"{which}: constant intensity {hi[i]:.4g} (no contrast to invert)")
    return x
