"""Checks of user-supplied arrays, in one place (the Euphonic ``validate.py`` pattern).

* :func:`real_array` — a real, numeric array of the expected rank/shape, as float64, with a
  message naming the argument or file (strings, objects, complex numbers, ±inf refused);
* :func:`check_declared` — a shape and dtype *declared* by a file (``.npy`` header, HDF5
  dataset) checked before anything is read, so a 1 kB file that declares 10⁵ × 10⁵ values
  never allocates them;
* :func:`check_bytes` — an allocation about to be made, against the memory available.
* :func:`check_spectra` — a user spectrum or stack of spectra: real, (nq, nE) or (N, nq, nE),
  no ±inf, at least one measured pixel, not all-zero or constant (every reader, the models'
  ``predict`` and the CLI call it before anything is computed; NaN = not measured, the pathSQE
  convention; a wrong shape raises :class:`~fcinv_widgets.errors.GridMismatchError`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import FcinvError, GridMismatchError

#: the largest single array read from a user spectrum file (bytes): a 140 × 140 spectrum is 157 kB
MAX_READ_BYTES = 1024**3
#: the hottest sample temperature (K) read or accepted: above any furnace, far below where the
#: Bose factor overflows (a temperature of 1e300 K made NaN images and a misleading error)
MAX_TEMPERATURE_K = 5000.0

#: the largest |coherent scattering length| (fm) accepted anywhere (natural elements: |b| < 20 fm)
MAX_B_COH_FM = 100.0

#: the atomic masses accepted (amu): from below hydrogen's (a muonium-like toy) to well above any element's
MASS_RANGE_AMU = (0.1, 1000.0)


def _dtype_problem(dtype) -> str | None:
    dt = np.dtype(dtype)
    if dt.kind in "fiub":
        return None
    kind = {
        "c": "complex",
        "U": "string",
        "S": "byte-string",
        "O": "object (pickled)",
        "V": "structured/void",
        "M": "datetime",
        "m": "timedelta",
    }.get(dt.kind, dt.kind)
    return f"{kind} values ({dt}), not real numbers"


def real_array(
    value, name: str, ndim: int | None = None, shape: tuple | None = None, allow_nan: bool = True, allow_inf: bool = False
) -> np.ndarray:
    """``value`` as a float64 array, or :class:`FcinvError` naming ``name``.

    ``shape`` may hold ``None`` for free axes. NaN (= not measured) is allowed unless
    ``allow_nan`` is False; ±inf only with ``allow_inf``.
    """
    if value is None:  # np.asarray(None).astype(float) is NaN: say what is wrong
        raise FcinvError(f"{name}: no value (None), not numbers")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise FcinvError(f"{name}: not a rectangular array of numbers ({exc})") from None
    if arr.dtype == object:
        try:
            arr = arr.astype(float)
        except (TypeError, ValueError):
            raise FcinvError(f"{name}: contains values that are not numbers") from None
    problem = _dtype_problem(arr.dtype)
    if problem:
        raise FcinvError(f"{name}: {problem}")
    arr = arr.astype(float, copy=False)
    if ndim is not None and arr.ndim != ndim:
        raise FcinvError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if shape is not None and (arr.ndim != len(shape) or any(w is not None and w != g for w, g in zip(shape, arr.shape))):
        want = "×".join("N" if w is None else str(w) for w in shape)
        raise FcinvError(f"{name}: expected shape {want}, got {'×'.join(map(str, arr.shape)) or 'a scalar'}")
    if not allow_inf and np.isinf(arr).any():
        raise FcinvError(f"{name}: contains ±inf")
    if not allow_nan and np.isnan(arr).any():
        raise FcinvError(f"{name}: contains NaN")
    return arr


def check_declared(shape, dtype, name: str, ndim: int | None = None, max_bytes: int = MAX_READ_BYTES) -> None:
    """Refuse a file's declared array before reading it: wrong dtype (true/false values too: a mask
    saved in place of intensities), rank, or an absurd size."""
    problem = _dtype_problem(dtype)
    if problem:
        raise FcinvError(f"{name}: {problem}")
    if np.dtype(dtype).kind == "b":
        raise FcinvError(f"{name}: boolean values (a mask?), not real numbers")
    shape = tuple(int(n) for n in shape)
    if ndim is not None and len(shape) != ndim:
        raise FcinvError(f"{name}: expected a {ndim}-D array, the file declares shape {shape}")
    nbytes = int(np.prod(shape, dtype=np.float64)) * 8  # read as float64
    if nbytes > max_bytes:
        raise FcinvError(
            f"{name}: declares {'×'.join(map(str, shape))} values ({nbytes / 1e9:.3g} GB as float64), "
            f"more than this reader accepts ({max_bytes / 1e9:.3g} GB)"
        )


def npz_declared(z, key: str) -> tuple:
    """(shape, dtype) that member ``key`` of an open ``np.load`` npz declares in its header, read
    without decompressing the data (KeyError when there is no such member)."""
    with z.zip.open(key + ".npy") as fh:
        version = np.lib.format.read_magic(fh)
        shape, _, dtype = (
            np.lib.format.read_array_header_1_0(fh) if version == (1, 0) else np.lib.format.read_array_header_2_0(fh)
        )
    return shape, dtype


def h5_array(f, key: str, name, ndim: int | None = None, allow_inf: bool = False) -> np.ndarray:
    """Dataset ``key`` of the open HDF5 file ``f`` as float64, its declared shape and dtype
    checked before it is read; one-line :class:`FcinvError` naming ``name`` (the file) otherwise."""
    import h5py

    obj = f.get(key)
    if not isinstance(obj, h5py.Dataset):
        raise FcinvError(f"{name}: no dataset /{key} ({'a group' if obj is not None else 'missing'})")
    check_declared(obj.shape, obj.dtype, f"{name}:/{key}", ndim=ndim)
    return real_array(obj[()], f"{name}:/{key}", ndim=ndim, allow_inf=allow_inf)


def is_real_number(v) -> bool:
    """One real number: a Python or NumPy int or float, not a bool, text, list or array."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def nonempty_list(values, what: str) -> list:
    """``values`` as a list when it is a non-empty sequence (not text or a dict), else one line."""
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__len__") or not len(values):
        raise FcinvError(f"{what} must be a non-empty list, got {values!r}")
    return list(values)


def need_type(obj, types, what: str):
    """``obj`` when it is an instance of ``types`` (a class or a tuple of them), else a one-line
    :class:`FcinvError` naming ``what`` and what it got (an AttributeError deep inside before)."""
    if isinstance(obj, types):
        return obj
    want = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
    raise FcinvError(f"{what} must be a {want}, got {type(obj).__name__} {obj!r}"[:200])


def need_attrs(obj, attrs, what: str):
    """``obj`` when it has every attribute in ``attrs`` (duck typing: a loaded model, a scan set),
    else one line ``what; got TYPE (no ATTR, …)``."""
    missing = [a for a in attrs if not hasattr(obj, a)]
    if missing:
        raise FcinvError(f"{what}; got {type(obj).__name__} (no {', '.join(missing)})")
    return obj


def fc_box(domain, n: int, what: str = "the domain") -> np.ndarray:
    """``domain`` as an (n, 2) float64 box of force constants (eV/Å²: a finite [lo, hi] row per FC,
    lo < hi), or :class:`FcinvError` naming ``what``. The one check of a training box passed to an
    API call (datasets, planners, scan inference, the trust check)."""
    box = real_array(domain, f"{what} (eV/Å²)", allow_nan=False)
    if box.shape != (n, 2):
        raise FcinvError(f"{what} must be ({n}, 2) finite [lo, hi] rows (eV/Å²) with lo < hi, got shape {box.shape}")
    bad = np.flatnonzero(~(box[:, 1] > box[:, 0]))
    if bad.size:
        i = int(bad[0])
        raise FcinvError(
            f"{what} must be [lo, hi] rows with lo < hi: row {i} (FC{i}) is [{box[i, 0]:.4g}, {box[i, 1]:.4g}] eV/Å²"
            + (f" ({bad.size} rows so)" if bad.size > 1 else "")
        )
    return box


def flag(v, what: str) -> bool:
    """``v`` when it is True or False (a Python or NumPy bool), else one line naming ``what``."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    raise FcinvError(f"{what} must be True or False, got {v!r}"[:200])


def finite_number(v, what: str, positive: bool | None = None, maximum: float = np.inf) -> float:
    """``v`` as a float when it is one real number (not text, a list or true/false), finite,
    > 0 (``positive=True``) or ≥ 0 (``positive=False``) and ≤ ``maximum``; else a one-line
    :class:`FcinvError` starting with ``what``."""
    x = float(v) if is_real_number(v) else float("nan")
    low = positive is not None and (x < 0 or (positive and x == 0))
    if not np.isfinite(x) or low or x > maximum:
        rng = {None: "", True: " > 0", False: " ≥ 0"}[positive] + (f" and ≤ {maximum:g}" if np.isfinite(maximum) else "")
        raise FcinvError(f"{what} must be one finite number{rng}, got {v!r}")
    return x


#: cells a supercell matrix may hold
MAX_SUPERCELL_CELLS = 10000


def supercell_matrix(values, what: str = "supercell") -> np.ndarray:
    """phonopy's supercell matrix (DIM) from 3 whole numbers (a diagonal), 9 or a 3×3 array → (3, 3)
    int with a positive determinant of at most :data:`MAX_SUPERCELL_CELLS`; anything else one
    :class:`FcinvError` naming ``what`` (4.9 is not truncated, booleans and text are refused). The
    CLI's ``--supercell`` tokenises its text and comes here; ``custom_material`` passes its argument."""
    arr = np.asarray(values, dtype=object)
    try:
        nums = np.asarray(arr, dtype=float).ravel()
        ok = arr.shape in ((3,), (9,), (3, 3)) and not any(isinstance(x, (bool, np.bool_, str, bytes)) for x in arr.ravel())
    except (TypeError, ValueError):
        nums, ok = np.zeros(0), False
    if not ok or not np.all(np.isfinite(nums)) or np.any(np.abs(nums - np.round(nums)) > 1e-9):
        shown = " ".join(map(str, arr.ravel())) if arr.ndim else str(values)
        raise FcinvError(f"{what} must be 3 or 9 integers (a diagonal or a 3×3 matrix), got {shown!r}"[:300])
    m = np.round(nums).astype(int)
    m = np.diag(m) if m.size == 3 else m.reshape(3, 3)
    det = round(np.linalg.det(m))
    if det <= 0:
        raise FcinvError(f"{what} {m.tolist()} has determinant {det}; it must be positive (a right-handed supercell)")
    if det > MAX_SUPERCELL_CELLS:
        raise FcinvError(f"{what} {m.tolist()} holds {det} cells; at most {MAX_SUPERCELL_CELLS} are supported")
    return m


def whole_number(v, what: str, minimum: int = 1, maximum: int | None = None) -> int:
    """``v`` as an int when it is one whole number (a Python or NumPy integer, not a bool, float or
    text) in [``minimum``, ``maximum``]; else a one-line :class:`FcinvError` starting with ``what``."""
    ok = isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
    if not ok or v < minimum or (maximum is not None and v > maximum):
        rng = f"≥ {minimum}" + (f" and ≤ {maximum:,}" if maximum is not None else "")
        raise FcinvError(f"{what} must be a whole number {rng}, got {v!r}")
    return int(v)


def h5_number(attrs, key: str, name, positive: bool | None = None, maximum: float = np.inf) -> float:
    """A scalar number stored as HDF5 attribute ``key`` (a number, or a number written as text),
    checked by :func:`finite_number`; a missing attribute is one line naming ``name`` too."""
    if key not in attrs:
        raise FcinvError(f"{name}: no {key} attribute")
    v = attrs[key]
    if isinstance(v, bytes):
        v = v.decode(errors="replace")
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(())[()]
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            pass  # refused below, as text
    return finite_number(v, f"{name}: the {key} attribute", positive, maximum)


def as_path(value, what: str = "file") -> str:
    """``value`` as a path string (a ``str`` or ``os.PathLike``), else a one-line :class:`FcinvError`
    (the Python API's loaders got ``TypeError: expected str, bytes or os.PathLike object`` before)."""
    if isinstance(value, (str, os.PathLike)) and str(os.fspath(value)).strip():
        return str(os.fspath(value))
    raise FcinvError(f"{what}: expected a file path (str or pathlib.Path), got {type(value).__name__} {value!r}"[:200])


def not_a_file(path, what: str) -> str:
    """Why ``path`` (which :meth:`Path.is_file` said is no file) cannot be read as ``what``: not
    found, a folder, or not a regular file (a device, a pipe) — one line."""
    p = Path(path)
    if p.is_dir():
        return f"{what}: {p} is a folder, not a file"
    if p.exists():
        return f"{what}: {p} is not a regular file"
    return f"{what} not found: {p}"


def open_h5(path, what: str):
    """An open read-only ``h5py.File`` of ``path``, or a one-line :class:`FcinvError` naming ``what``
    (a missing path, a folder, a file that is not HDF5)."""
    import h5py

    p = as_path(path, what)
    if not os.path.isfile(p):
        raise FcinvError(not_a_file(p, what))
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise FcinvError(f"{what}: cannot open {p} as HDF5 ({str(exc).splitlines()[0][:120]})") from None


#: leading bytes of the kinds of file a user hands a .npz reader by mistake
_FILE_KINDS = ((b"\x89HDF\r\n\x1a\n", "an HDF5 file"), (b"\x93NUMPY", "a single .npy array"), (b"\x80", "a Python pickle"))


def open_npz(path, what: str):
    """``np.load(path, allow_pickle=False)`` of a ``.npz`` archive, or a one-line :class:`FcinvError`
    naming ``what`` and, for another kind of file, what it is (numpy's own error for an HDF5 file
    advised loading it "unsafely" as a pickle)."""
    p = as_path(path, what)
    if not os.path.isfile(p):
        raise FcinvError(not_a_file(p, what))
    with open(p, "rb") as fh:
        head = fh.read(8)
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a zip archive (an empty one too)
        kind = next((k for magic, k in _FILE_KINDS if head.startswith(magic)), "an empty file" if not head else None)
        said = f"it is {kind}, not a .npz archive" if kind else "not a .npz (zip) archive"
        raise FcinvError(f"{p}: not a readable {what}: {said}")
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise FcinvError(f"{p}: not a readable {what} ({str(exc).splitlines()[0][:120]})") from None


def format_version(v, what: str, reads: int = 1) -> int:
    """The format version a file records (``version`` key or attribute), checked: absent means 1
    (files written before versions were recorded); anything but a whole number 1 … ``reads`` is a
    one-line :class:`FcinvError` starting with ``what`` — a newer one says to upgrade rather than
    read a layout this code does not know."""
    if v is None:
        return 1
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(())[()]
    ok = isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
    if not ok and isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer():
        v, ok = int(v), True
    if not ok or int(v) < 1:
        raise FcinvError(f"{what}: format version must be a whole number ≥ 1, got {v!r}")
    if int(v) > reads:
        raise FcinvError(
            f"{what}: format version {int(v)} is newer than this fcinv reads (≤ {reads}); upgrade fcinv-widgets to read it"
        )
    return int(v)


def available_bytes() -> int:
    """Memory available to this process (bytes; Linux ``MemAvailable``, else a large number)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_bytes(nbytes: float, what: str, fraction: float = 0.8) -> None:
    """Refuse an allocation of ``nbytes`` larger than ``fraction`` of the available memory."""
    avail = available_bytes()
    if nbytes > fraction * avail:
        raise FcinvError(
            f"{what} needs {nbytes / 1e9:.3g} GB, more than the {avail / 1e9:.3g} GB of memory available; ask for fewer"
        )


def as_real_array(data, name: str = "spectrum") -> np.ndarray:
    """``data`` as a float64 array, refusing strings, objects, booleans and complex values. A
    numpy masked array's masked pixels become NaN (not measured) — ``np.asarray`` would keep the
    values under the mask as if they had been measured."""
    if data is None:
        raise FcinvError(f"{name}: no data (None)")
    if np.ma.isMaskedArray(data):
        if np.ma.getdata(data).dtype.kind == "b":
            raise FcinvError(f"{name}: boolean values, not real numbers")
        arr = real_array(np.ma.getdata(data), name, allow_inf=True).copy()
        arr[np.ma.getmaskarray(data)] = np.nan
        return arr
    arr = real_array(data, name, allow_inf=True)
    if np.asarray(data).dtype.kind == "b":
        raise FcinvError(f"{name}: boolean values, not real numbers")
    return arr


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
    if stack.shape[1] == 0 or stack.shape[2] == 0:
        raise FcinvError(f"{name}: an empty image (shape {x.shape})")
    flat = stack.reshape(len(stack), -1)
    n_inf = np.isinf(flat).sum(1)
    fin = np.isfinite(flat)
    hi = np.where(fin, flat, -np.inf).max(1)
    lo = np.where(fin, flat, np.inf).min(1)
    bad = (n_inf > 0) | ~fin.any(1) | (hi == lo) | (hi <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        which = name if len(stack) == 1 else f"{name} {i}"
        if n_inf[i]:
            raise FcinvError(f"{which}: contains ±inf ({int(n_inf[i])} pixels); use NaN for unmeasured pixels")
        if not fin[i].any():
            raise FcinvError(f"{which}: no measured pixel (all NaN)")
        if hi[i] == 0 and lo[i] == 0:
            raise FcinvError(f"{which}: all zero (no intensity)")
        if hi[i] <= 0:
            raise FcinvError(
                f"{which}: no positive intensity (largest value {hi[i] + 0.0:.4g}); a sign flipped, or not an intensity map"
            )
        raise FcinvError(f"{which}: constant intensity {hi[i]:.4g} (no contrast to invert)")
    return x


def max_workers() -> int:
    """The most local worker processes or CPU threads a stage may start: 4 per core (at least 8).
    ``local:100000`` made Dask create scratch folders until it was killed; 10⁵ torch threads on a
    shared node help nobody."""
    return max(8, 4 * (os.cpu_count() or 1))


#: the deepest nesting of [ and { that a JSON text from a file may have (ours have 3 or 4 levels)
MAX_JSON_DEPTH = 64


def _json_text(text, what: str) -> str:
    """``text`` as a str, its nesting checked: a text nested deeper than :data:`MAX_JSON_DEPTH`
    (``[[[[…`` 10⁵ deep) raises RecursionError in the decoder or, where a library has raised the
    recursion limit, overflows the C stack (a segmentation fault)."""
    import re

    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise FcinvError(f"{what}: not a JSON text (got {type(text).__name__})")
    depth = top = 0
    for m in re.finditer(r'"(?:\\.|[^"\\])*"|[\[\]{}]', text):
        tok = m.group()
        if tok in "[{":
            depth += 1
            top = max(top, depth)
            if top > MAX_JSON_DEPTH:
                raise FcinvError(f"{what}: not a JSON file (nested deeper than {MAX_JSON_DEPTH} levels)")
        elif tok in "]}":
            depth -= 1
    return text


def json_loads(text: str, what: str):
    """``json.loads`` of a file's JSON text (or an attribute's) with its nesting checked first
    (:func:`_json_text`). One :class:`FcinvError` naming ``what`` for that and for anything the
    decoder refuses. Every JSON the package reads goes through here."""
    import json

    text = _json_text(text, what)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # (JSONDecodeError is a ValueError; so is a 5000-digit number)
        raise FcinvError(f"{what}: not a JSON file ({str(exc)[:120]})") from None


def json_or_text(value, what: str):
    """An HDF5 attribute that is JSON where it can be and plain text otherwise: the decoded value,
    or the string itself when it is not JSON — but a text nested deeper than :data:`MAX_JSON_DEPTH`
    is refused (:func:`_json_text`) rather than handed to the decoder."""
    import json

    if not isinstance(value, (str, bytes, bytearray)):
        return value
    value = _json_text(value, what)
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return value
