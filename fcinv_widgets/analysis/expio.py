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
the segment lengths (pathSQE npz) and the energy axis (when the file has one), and refuses
values that cannot be a spectrum (:mod:`fcinv_widgets.validate`).

**What a file says about itself** (:attr:`Spectrum.meta`): ``intensity`` — "model-image"
(the fast model's unit-weight image, what the networks were trained on) or "one-phonon-sqe"
(a folded coherent S(Q,E), measured or fully simulated); ``temperature_k`` and where it came
from; ``ei_mev``; ``origin`` ("simulated" / "measured"); ``corrections`` already applied to the
stored image. Our HDF5 files carry these as attributes (``fcinv simulate``, ``fcinv scans``);
a pathSQE .npz is a measured S(Q,E) with no temperature (the user states it once); a Mantid
MDHisto file is a measured S(Q,E) whose temperature and Ei are read from the sample logs when
present; a bare array or .npy says nothing and is taken as a model image.

:func:`prepare_input` turns that into the correction (:func:`to_model_intensity`) applied
exactly once, and a record of what was done (the ``corrections`` field of ``fcinv invert --json``).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import numpy as np

from ..errors import FcinvError, GridMismatchError
from ..validate import (
    MAX_TEMPERATURE_K,
    as_real_array,
    check_declared,
    check_spectra,
    finite_number,
    flag,
    format_version,
    h5_array,
    npz_declared,
    real_array,
)
from ..noise import MIN_PERCENTILE
from ..scans import EI_MAX_MEV
from ..validate import MAX_B_COH_FM
from ..spectrum_io import file_elements, scan_set_elements

#: the two kinds of intensity a spectrum can hold
MODEL_IMAGE = "model-image"
SQE = "one-phonon-sqe"
#: clip percentile applied by default to a one-phonon S(Q,E) (Bragg tails, hot pixels)
DEFAULT_CLIP = 99.5


@dataclass
class Spectrum:
    image: np.ndarray  # (nq, nE) float64, NaN = not measured
    source: str
    fmt: str
    energies: np.ndarray | None = None  # meV bin centres, when the file has them
    meta: dict = field(default_factory=dict)  # what the file says about itself (see the module doc)
    q_distance: np.ndarray | None = None  # Å⁻¹ along the path, when the file has it (/grid/q_distance)
    #: the scan set (scans.ScanSet) one scan was picked from by :func:`scan_of_set`, kept so that the
    #: physics fit of that scan does not read the file again
    scan_set: Any = field(default=None, repr=False, compare=False)

    @property
    def mask(self) -> np.ndarray:
        return np.isfinite(self.image)

    @property
    def coverage(self) -> float:
        return float(self.mask.mean())


def read_spectrum(path, grid=None, material=None) -> Spectrum:
    """Read a folded spectrum in any supported format; check it against ``grid`` if given, and
    refuse one whose file names a material other than ``material`` (when given: a preset's name,
    or a :class:`~fcinv_widgets.materials.Material`, whose crystal's elements a file's must be)."""
    from ..validate import as_path, not_a_file

    path = Path(as_path(path, "spectrum file"))
    if not path.is_file():
        raise FcinvError(not_a_file(path, "spectrum file"))
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
    return _validate(spec, grid, material)


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _load_npy(path, name: str) -> np.ndarray:
    """A 2-D real array from a ``.npy`` file: the header is checked before the data is read."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        shape, _, dtype = (
            np.lib.format.read_array_header_1_0(fh) if version == (1, 0) else np.lib.format.read_array_header_2_0(fh)
        )
    check_declared(shape, dtype, name, ndim=2)
    return real_array(np.load(path, allow_pickle=False), name, allow_inf=True)


def _npz_member(z, key: str, name: str) -> np.ndarray:
    """One array of an open ``np.load`` npz, its header checked before reading."""
    shape, dtype = npz_declared(z, key)
    check_declared(shape, dtype, f"{name}[{key}]")
    return real_array(z[key], f"{name}[{key}]", allow_inf=True)


#: largest relative difference of a file's q-path length (Å⁻¹) from the model's crystal's
MAX_PATH_LENGTH_MISMATCH = 0.05


def preset_elements(material) -> list[str] | None:
    """The sorted chemical elements of a preset material (by name), None for anything else."""
    from ..materials import PRESETS, get_material

    if not isinstance(material, str) or material.lower() not in PRESETS:
        return None
    return sorted(set(get_material(material).crystal.symbols))


def check_same_crystal(source, said, material, q_distance=None, grid=None, elements=None) -> None:
    """Refuse data of another crystal than a model's, as far as the data say: a file that names a
    preset material other than ``material`` (a "custom" structure may be any crystal: its elements
    and grid decide), a file whose ``elements`` (its crystal's chemical elements, as ``fcinv
    simulate`` and ``fcinv scans`` record them since session 31) are not those of the preset
    ``material`` (Si in diamond, 4 % smaller than Ge, would pass the path-length test), and a
    q-path whose length in Å⁻¹ (``q_distance``, the file's ``/grid/q_distance``) differs from
    ``grid``'s by more than :data:`MAX_PATH_LENGTH_MISMATCH` — the same reduced path on another
    lattice (Cu's fcc path on Ge's grid), which the image checks cannot tell apart (docs/results.md, "OOD").
    ``material`` may be a :class:`~fcinv_widgets.materials.Material` (a custom one: its crystal's
    elements are the ones a file's must be). One-line :class:`GridMismatchError`."""
    own = None
    if material is not None and not isinstance(material, str):  # a Material: its own elements
        own = sorted(set(material.crystal.symbols))
        material = material.name
    named = isinstance(said, str) and material is not None and "custom" not in (said.lower(), str(material).lower())
    if named and said.lower() != str(material).lower():
        raise GridMismatchError(
            f"{source}: the file says it is {said}, the inversion is for {material} "
            f"(use a {said} model, e.g. --model {said.lower()}-resnet, or `fcinv refine --material {said}`)"
        )
    own = (own or preset_elements(material)) if elements is not None else None
    if own is not None and sorted(elements) != own:
        if preset_elements(material) is None:  # a custom structure's fit
            raise GridMismatchError(
                f"{source}: the file's crystal is of {', '.join(elements)}, the structure given is of "
                f"{', '.join(own)}: a measurement of another crystal (give its own structure)"
            )
        of = "" if own == [str(material)] else f" ({', '.join(own)})"
        raise GridMismatchError(
            f"{source}: the file's crystal is of {', '.join(elements)}, the inversion is for {material}{of}: "
            "a measurement of another crystal, which this model cannot invert (`fcinv refine --structure POSCAR "
            "--force-constants FC` fits any crystal's)"
        )
    if q_distance is None or grid is None:
        return
    qd, ref = np.asarray(q_distance, float), np.asarray(grid.q.distance, float)
    if qd.shape == ref.shape and np.ptp(ref) > 0:
        if qd[-1] < qd[0]:
            raise GridMismatchError(
                f"{source}: its q-path distances run backwards ({qd[0]:.3g} → {qd[-1]:.3g} Å⁻¹): the image is stored "
                "in the reverse of the model's path order (flip its q axis)"
            )
        # its length in Å⁻¹ scales with 1/a — thermal expansion or strain move it by well under 1 %
        ratio = float(np.ptp(qd) / np.ptp(ref))
        if not np.isfinite(ratio) or abs(ratio - 1) > MAX_PATH_LENGTH_MISMATCH:
            raise GridMismatchError(
                f"{source}: its q-path is {np.ptp(qd):.3g} Å⁻¹ long, the model's crystal's {np.ptp(ref):.3g} Å⁻¹ "
                f"(a lattice {abs(1 / ratio - 1) if ratio else 1:.0%} different): a measurement of another crystal "
                "(or of another q-path), which this model cannot invert"
            )
        # the bins themselves: the distance along the path from its first point, bin by bin (a powder |Q|
        # axis of the path's span, a path in another order or with other segment lengths passed the length test)
        off = np.abs(qd - ratio * ref)
        k = int(np.argmax(off))
        if off[k] > ratio * float(np.diff(ref).max()):
            raise GridMismatchError(
                f"{source}: its q bin {k} lies {qd[k]:.3g} Å⁻¹ along the path, the model's {ratio * ref[k]:.3g} Å⁻¹: "
                "the q axis must be the distance along the model's path from its first point, bin by bin, in its order"
            )


def _validate(spec: Spectrum, grid, material: str | None = None) -> Spectrum:
    img = spec.image
    check_same_crystal(spec.source, spec.meta.get("material"), material, elements=spec.meta.get("elements"))
    if img.ndim != 2:
        raise GridMismatchError(f"{spec.source}: expected a 2-D (q, E) image, got shape {img.shape}")
    check_spectra(img, None, name=spec.source)
    _check_file_ei(spec, grid)
    if grid is not None:
        if img.shape != tuple(grid.shape):
            raise GridMismatchError(
                f"{spec.source}: the image is {img.shape[0]} q-bins × {img.shape[1]} energy bins, "
                f"the model's grid is {grid.shape[0]} × {grid.shape[1]}"
            )
        if spec.energies is not None and spec.energies.shape != grid.e.centers.shape:
            raise GridMismatchError(
                f"{spec.source}: {spec.energies.size} energy bins in /grid/energy_centers_mev, "
                f"the model's grid has {grid.e.centers.size}"
            )
        check_same_crystal(spec.source, None, None, spec.q_distance, grid)
        if spec.energies is not None and not np.allclose(spec.energies, grid.e.centers, atol=1e-3):
            raise GridMismatchError(
                f"{spec.source}: energy bins {spec.energies[0]:.3g}…{spec.energies[-1]:.3g} meV "
                f"differ from the model's {grid.e.centers[0]:.3g}…{grid.e.centers[-1]:.3g} meV"
            )
    return spec


def _check_file_ei(spec: Spectrum, grid) -> None:
    """A file's Ei (its attribute or sample log) must be a positive number within the ARCS range, as
    ``--ei`` must (a Mantid log of 10⁹ meV went through ``invert``). An Ei below the grid's top is
    allowed: a measurement leaves the bins above Ei empty, and the models say when an Ei lies outside
    the range they were trained over (``ei_check``)."""
    ei = spec.meta.get("ei_mev")
    if ei is None:
        return
    if not (np.isfinite(ei) and 0 < ei <= EI_MAX_MEV):
        raise FcinvError(f"{spec.source}: the file's Ei must be a positive number of meV, at most {EI_MAX_MEV:g}, got {ei!r}")


def _read_npz(path: Path, grid) -> Spectrum:
    from ..validate import open_npz

    z = open_npz(path, "spectrum file")
    with z:
        keys = list(z.keys())
        meta = _npz_meta(z, keys, path)
        if "spectrum" in keys:
            e = _npz_member(z, "energy_centers_mev", str(path)) if "energy_centers_mev" in keys else None
            return Spectrum(_npz_member(z, "spectrum", str(path)), str(path), "npz", e, meta)
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
            raise GridMismatchError(
                f"{path}: {len(got)} segments of {got} q-bins; the model's path has "
                f"{len(want)} segments {', '.join(f'{n} {w}' for n, w in zip(names, want))}"
            )
    meta = {"intensity": SQE, "intensity_source": "pathSQE .npz (a folded S(Q,E))", "origin": "measured", **meta}
    return Spectrum(np.concatenate(arrays, axis=0), str(path), "pathSQE-npz", None, meta)


def _npz_meta(z, keys, path) -> dict:
    """Optional scalar keys an .npz may carry: ``temperature_k``, ``ei_mev``, ``intensity``."""
    meta = {}
    for k in ("temperature_k", "ei_mev"):
        if k in keys:
            v = as_real_array(z[k], f"{path}: {k}")
            if v.size != 1 or not np.isfinite(v).all():
                raise FcinvError(f"{path}: {k} must be one finite number, got {v.tolist()}")
            ei = k == "ei_mev"
            meta[k] = _meta_number(float(v.ravel()[0]), k, path, positive=ei, maximum=EI_MAX_MEV if ei else MAX_TEMPERATURE_K)
            if k == "temperature_k":
                meta["temperature_source"] = f"{Path(path).name}: temperature_k"
    if "intensity" in keys:
        v = str(np.asarray(z["intensity"]))
        if v not in (MODEL_IMAGE, SQE):
            raise FcinvError(f"{path}: intensity must be {MODEL_IMAGE!r} or {SQE!r}, got {v!r}")
        meta.update(intensity=v, intensity_source=f"{Path(path).name}: intensity")
    return meta


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
            format_version(f.attrs.get("version"), str(path), reads=2 if fmt == "fcinv-scans" else 1)
            key = "spectrum" if fmt == "fcinv-spectrum" else "full"
            e = _h5_array(f, "grid/energy_centers_mev", path, ndim=1) if "grid/energy_centers_mev" in f else None
            qd = _h5_array(f, "grid/q_distance", path, ndim=1) if "grid/q_distance" in f else None
            image = _h5_array(f, key, path, ndim=2)
            if fmt == "fcinv-scans" and "scans" in f and "coverage" in f:  # its union's unreached pixels are NaN
                from ..scans import check_unmeasured_are_nan

                scans = _h5_array(f, "scans", path, ndim=3)
                coverage = _h5_array(f, "coverage", path, ndim=1)
                if scans.shape[1:] == image.shape and len(coverage) == len(scans):
                    check_unmeasured_are_nan(image, scans, coverage, path)
            return Spectrum(
                image,
                str(path),
                "fcinv" if fmt == "fcinv-spectrum" else fmt,
                e,
                _fcinv_meta(f.attrs, fmt, path),
                qd,
            )
        if "MDHistoWorkspace/data/signal" in f:
            return _read_mdhisto(f, path, grid)
    raise FcinvError(
        f"{path}: not an fcinv spectrum file (no format attribute) nor a Mantid MDHisto NeXus file "
        "(no MDHistoWorkspace/data/signal)"
    )


def _attr(attrs, key):
    """An attribute of our files: JSON-encoded by spectrum_io, plain by ScanSet.save."""
    from ..validate import json_or_text

    v = json_or_text(attrs.get(key), f"attribute {key}")
    return v.item() if isinstance(v, np.generic) else v


def _fcinv_meta(attrs, fmt: str, path) -> dict:
    """What our own HDF5 files say: intensity kind, temperature, Ei, origin, corrections applied.
    Files written before these attributes existed are recognised by ``kind`` (``full-sqe``) and format."""
    name = Path(path).name
    intensity = _attr(attrs, "intensity")
    source = f"{name}: intensity attribute"
    if intensity is None:
        sqe = fmt == "fcinv-scans" or _attr(attrs, "kind") == "full-sqe"
        intensity = SQE if sqe else MODEL_IMAGE
        source = f"{name}: {'scan set' if fmt == 'fcinv-scans' else 'kind attribute' if sqe else 'fast-model spectrum file'}"
    if intensity not in (MODEL_IMAGE, SQE):
        raise FcinvError(f"{path}: intensity attribute must be {MODEL_IMAGE!r} or {SQE!r}, got {intensity!r}")
    meta = {"intensity": intensity, "intensity_source": source, "origin": _attr(attrs, "origin") or "simulated"}
    t = _meta_number(_attr(attrs, "temperature_k"), "temperature_k", path, positive=False, maximum=MAX_TEMPERATURE_K)
    if t is not None:
        meta.update(temperature_k=t, temperature_source=f"{name}: temperature_k attribute")
    ei = _attr(attrs, "ei_mev")
    if ei is None:
        res = _attr(attrs, "resolution")
        ei = res.get("ei_mev") if isinstance(res, dict) else None
    ei = _meta_number(ei, "ei_mev", path, maximum=EI_MAX_MEV)
    if ei is not None:
        meta["ei_mev"] = ei
    qmax = _meta_number(_attr(attrs, "qmax_inv_a"), "qmax_inv_a", path)
    if qmax is not None:
        meta["qmax_inv_a"] = qmax
    corr = _attr(attrs, "corrections")
    if corr:
        meta["corrections"] = corr
    material = _attr(attrs, "material")
    if isinstance(material, str) and material.strip():
        meta["material"] = material.strip()
    elements = file_elements(_attr(attrs, "elements"), path)
    if elements is None and fmt == "fcinv-scans":  # a scan set keeps them in its meta
        elements = scan_set_elements(_attr(attrs, "meta"), path)
    if elements is not None:
        meta["elements"] = elements
    b_coh = _attr(attrs, "b_coh_fm")
    if b_coh is None and fmt == "fcinv-scans":  # a scan set keeps them in its meta
        scan_meta = _attr(attrs, "meta")
        b_coh = scan_meta.get("b_coh_fm") if isinstance(scan_meta, dict) else None
    if b_coh is not None:
        meta["b_coh_fm"] = file_b_coh(b_coh, path)
    return meta


def file_b_coh(value, source) -> dict:
    """A file's ``b_coh_fm`` record ({element: coherent scattering length, fm}, what the simulation
    used — ``fcinv simulate`` since session 42, ``fcinv scans``), checked: one-line
    :class:`FcinvError` for anything but element symbols with finite lengths ≤ 100 fm."""
    ok = isinstance(value, dict) and 0 < len(value) <= 118
    out = {}
    for k, v in value.items() if ok else ():
        if not (isinstance(k, str) and k.isalpha() and len(k) <= 3) or isinstance(v, bool):
            ok = False
            break
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            ok = False
            break
        if not (np.isfinite(out[k]) and abs(out[k]) <= MAX_B_COH_FM):
            ok = False
            break
    if not ok:
        raise FcinvError(
            f"{source}: b_coh_fm must map element symbols to coherent scattering lengths (fm, |b| ≤ {MAX_B_COH_FM:g}), "
            f"got {str(value)[:80]}"
        )
    if all(v == 0 for v in out.values()):
        raise FcinvError(f"{source}: b_coh_fm gives every element a scattering length of 0 fm (no coherent scattering)")
    return out


def _clip_arg(v) -> float:
    """A clip percentile: one number in (0, 100]."""
    return finite_number(v, "the clip percentile", positive=True, maximum=100.0)


def _meta_number(v, key: str, path, positive: bool = True, maximum: float = np.inf) -> float | None:
    """An attribute that must be one finite number > 0 (``positive``) or ≥ 0, and ≤ ``maximum``
    (:func:`~fcinv_widgets.validate.finite_number`); None when absent."""
    return None if v is None else finite_number(v, f"{path}: the {key} attribute", positive, maximum)


#: sample-log names that hold the sample temperature, in tiers from the most specific (lower case):
#: the first tier with a log is used, and logs of one tier must agree
TEMPERATURE_LOG_TIERS = (
    ("sampletemp", "sample_temp", "sampletemperature", "sample_temperature", "tsample"),
    ("temperature", "temp"),
    ("sensora", "sensorb"),
)
EI_LOGS = ("ei", "incident_energy", "energyrequest", "ei_request")


def _text(v) -> str:
    """An HDF5 attribute as text (bytes decoded, a one-element array unwrapped)."""
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.item()
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _read_logs(f) -> dict:
    """Sample logs of a Mantid file: ``{name_lower: [(name, finite values, units), …]}`` from every
    ``…/logs/<name>/value`` (one entry per run a merged file holds; ``units`` from the value's or
    the log group's attribute, lower case, "" when absent)."""
    logs: dict = {}

    def visit(name, obj):
        parts = name.split("/")
        is_log = len(parts) >= 3 and parts[-3] == "logs" and parts[-1] == "value"
        if is_log and hasattr(obj, "dtype") and obj.dtype.kind in "iuf" and obj.size:
            v = np.asarray(obj[()], float).ravel()
            v = v[np.isfinite(v)]
            if v.size:
                units = obj.attrs.get("units", obj.parent.attrs.get("units", ""))
                logs.setdefault(parts[-2].lower(), []).append((parts[-2], v, _text(units).strip().lower()))

    f.visititems(visit)
    return logs


def _kelvin(v: np.ndarray, units: str) -> np.ndarray | None:
    """Temperatures in K from a log's values in ``units`` (K, C/°C/degC, F/°F, mK; "" = K), or None."""
    u = units.lower().replace("°", "").replace("degrees", "").replace("degree", "").replace("deg", "").strip()
    if u in ("", "k", "kelvin"):
        return v
    if u in ("c", "celsius", "centigrade"):
        return v + 273.15
    if u in ("f", "fahrenheit"):
        return (v - 32.0) * 5.0 / 9.0 + 273.15
    if u in ("mk", "millikelvin"):
        return v / 1000.0
    return None


def _log_temperature(logs: dict, name: str) -> tuple:
    """(T in K, source) from the first tier of temperature logs the file has, or (None, problem)
    when its logs cannot give one temperature: an unknown unit, a log that varies by more than
    max(2 K, 10 %) over the run (sensor drop-outs, a ramp), logs of one tier that disagree by more
    than max(1 K, 2 %), or a value outside 0–MAX_TEMPERATURE_K. ``(None, None)``: no such log."""
    for tier in TEMPERATURE_LOG_TIERS:
        found = [e for key in tier for e in logs.get(key, [])]
        if not found:
            continue
        medians = []
        for log, v, units in found:
            t = _kelvin(v, units)
            if t is None:
                return None, f"its sample log {log} has units {units!r} (K, C, F or mK expected)"
            lo, hi, med = float(t.min()), float(t.max()), float(np.median(t))
            if not (0 <= lo and hi <= MAX_TEMPERATURE_K):
                return None, f"its sample log {log} holds {lo:.4g}–{hi:.4g} K, outside 0–{MAX_TEMPERATURE_K:g} K"
            if hi - lo > max(2.0, 0.1 * abs(med)):
                return None, f"its sample log {log} varies from {lo:.4g} to {hi:.4g} K over the run"
            medians.append((log, med))
        vals = [m for _, m in medians]
        if max(vals) - min(vals) > max(1.0, 0.02 * max(vals)):
            said = ", ".join(f"{log} {m:.4g} K" for log, m in medians)
            return None, f"its sample logs disagree ({said})"
        t = float(np.median(vals))
        logs_used = sorted({log for log, _ in medians})
        return t, f"{name}: sample log {', '.join(logs_used)}" + (f" ({len(medians)} runs)" if len(medians) > 1 else "")
    return None, None


def _log_ei(logs: dict, name: str) -> tuple:
    """(Ei in meV, source) from the first incident-energy log the file has, or (None, problem) when
    it holds several energies (repetition-rate multiplication, merged runs: a mean is no energy
    that was measured) or an unknown unit (meV or eV). ``(None, None)``: no such log."""
    for key in EI_LOGS:
        found = logs.get(key, [])
        vals, used = [], []
        for log, v, units in found:
            u = units.replace(" ", "")
            scale = {"": 1.0, "mev": 1.0, "ev": 1000.0}.get(u)
            if scale is None:
                return None, f"its Ei log {log} has units {units!r} (meV or eV expected)"
            v = v[v > 0] * scale
            if v.size:
                vals.append(v)
                used.append(log)
        if not vals:
            continue
        e = np.concatenate(vals)
        if e.max() > 1.01 * e.min():
            shown = ", ".join(f"{x:.4g}" for x in np.unique(np.round(e, 3))[:6])
            return None, (
                f"its Ei log {used[0]} holds several incident energies ({shown} meV: repetition-rate multiplication "
                "or merged runs?)"
            )
        return float(np.median(e)), f"{name}: sample log {used[0]}"
    return None, None


def _mantid_meta(f, path) -> dict:
    meta = {"intensity": SQE, "intensity_source": "Mantid MDHisto file (a folded S(Q,E))", "origin": "measured"}
    logs = _read_logs(f)
    t, t_src = _log_temperature(logs, Path(path).name)
    if t is not None:
        meta.update(temperature_k=t, temperature_source=t_src)
    elif t_src:
        meta["temperature_problem"] = t_src
    ei, ei_src = _log_ei(logs, Path(path).name)
    if ei is not None:
        meta.update(ei_mev=ei, ei_source=ei_src)
    elif ei_src:
        meta["ei_problem"] = ei_src
    return meta


def _h5_array(f, key: str, path, ndim: int | None = None) -> np.ndarray:
    """A real array from HDF5 dataset ``key`` (:func:`~fcinv_widgets.validate.h5_array`; ±inf kept
    for :func:`~fcinv_widgets.validate.check_spectra` to name)."""
    return h5_array(f, key, path, ndim=ndim, allow_inf=True)


def _read_mdhisto(f, path: Path, grid) -> Spectrum:
    data = f["MDHistoWorkspace/data"]
    sig = _h5_array(f, "MDHistoWorkspace/data/signal", path)
    axes_attr = data["signal"].attrs.get("axes")
    if isinstance(axes_attr, np.ndarray) and axes_attr.size == 1:
        axes_attr = axes_attr.item()
    if isinstance(axes_attr, bytes):
        axes_attr = axes_attr.decode(errors="replace")
    if axes_attr is not None and not isinstance(axes_attr, str):
        raise FcinvError(
            f"{path}: the 'axes' attribute of MDHistoWorkspace/data/signal must be a string such as "
            f"'D1:D0', got {type(axes_attr).__name__} {np.asarray(axes_attr).tolist()!r}"
        )
    names = axes_attr.split(":") if axes_attr else [f"D{i}" for i in reversed(range(sig.ndim))]
    if len(names) != sig.ndim:
        raise FcinvError(f"{path}: signal has {sig.ndim} dimensions but its 'axes' attribute lists {len(names)}")

    def axis_text(name) -> str:
        if name not in data:
            return ""
        a = data[name].attrs
        return " ".join(_text(a.get(k, b"")) for k in ("long_name", "units", "frame")).lower()

    def is_energy(name):
        txt = axis_text(name)
        return any(w in txt for w in ("deltae", "mev", "energy", "thz", "cm-1", "cm^-1", "1/cm"))

    def is_q(name):  # a projection axis ("[H,H,0]", "[xi,0,0]") or a momentum transfer
        txt = axis_text(name)
        return name in data and (
            ("[" in txt and "]" in txt) or "r.l.u" in txt or "rlu" in txt or _in_inverse_angstrom(data[name].attrs)
        )

    keep = [i for i, n in enumerate(sig.shape) if n > 1]
    if len(keep) != 2:
        raise GridMismatchError(
            f"{path}: MDHisto signal {sig.shape} must have exactly two dimensions with more than one bin (q and E)"
        )
    e_axis = [i for i in keep if is_energy(names[i])]
    q_axis = [i for i in keep if is_q(names[i]) and i not in e_axis]
    img = sig.reshape([sig.shape[i] for i in keep])
    unmeasured, notes = _mantid_unmeasured(data, sig, [sig.shape[i] for i in keep], path)
    if unmeasured is not None:
        img = np.where(unmeasured, np.nan, img)
    energies = q_distance = None
    if e_axis:
        if e_axis[0] == keep[0]:
            img = img.T
        energies = _axis_centers(data, names[e_axis[0]], img.shape[1], "energy", path) * _energy_scale(
            data[names[e_axis[0]]].attrs, names[e_axis[0]], path
        )
        q_name = names[next(i for i in keep if i != e_axis[0])]
        q_distance = _q_axis(data, q_name, img.shape[0], path)
    elif len(q_axis) == 1:  # no energy marking, but one axis is recognisably q: E is the other
        if q_axis[0] != keep[0]:
            img = img.T
        q_distance = _q_axis(data, names[q_axis[0]], img.shape[0], path)
    elif grid is not None and img.shape[::-1] == tuple(grid.shape) and img.shape != tuple(grid.shape):
        img = img.T  # no axis metadata: orient by the model's grid
    elif img.shape[0] == img.shape[1]:
        raise FcinvError(
            f"{path}: no axis of MDHistoWorkspace/data is marked as energy (DeltaE / meV) or as q, and the signal is "
            f"square: q cannot be told from E (mark the energy axis with long_name DeltaE and units meV)"
        )
    meta = _mantid_meta(f, path)
    if notes:
        meta["unmeasured_bins"] = notes
    return Spectrum(img, str(path), "mantid-mdhisto", energies, meta, q_distance)


def _energy_scale(attrs, name: str, path) -> float:
    """meV per unit of a Mantid energy axis from its ``units`` (meV or none: 1; THz, cm⁻¹, eV
    converted); any other unit is refused (a THz axis was read as meV)."""
    from ..measured import THZ_TO_CM1
    from ..units import THZ_TO_MEV

    u = _text(attrs.get("units", "")).strip().lower().replace(" ", "")
    per_cm = THZ_TO_MEV / THZ_TO_CM1  # meV per cm⁻¹
    scales = {
        "": 1.0,
        "mev": 1.0,
        "deltae": 1.0,
        "thz": THZ_TO_MEV,
        "cm-1": per_cm,
        "cm^-1": per_cm,
        "1/cm": per_cm,
        "ev": 1000.0,
    }
    if u not in scales:
        raise FcinvError(f"{path}: the energy axis MDHistoWorkspace/data/{name} has units {u!r} (meV, THz, cm-1 or eV expected)")
    return scales[u]


def _mantid_unmeasured(data, sig: np.ndarray, kept_shape, path) -> tuple:
    """Bins a Mantid MDHisto file marks as not measured: ``mask`` ≠ 0, and ``num_events`` = 0 where
    the signal is exactly 0 (BinMD leaves bins no event reached at 0, which would read as measured
    zero intensity). A bool array in the signal's kept (2-D, file-order) shape and a note, or
    (None, None) when the file has neither array; an array of another shape is refused."""
    out = np.zeros(kept_shape, bool)
    notes = []
    for key in ("mask", "num_events"):
        if key not in data:
            continue
        a = _h5_array(data, key, path)
        if a.shape != sig.shape:
            raise GridMismatchError(f"{path}: MDHistoWorkspace/data/{key} has shape {a.shape}, the signal {sig.shape}")
        a = a.reshape(kept_shape)
        if key == "mask":
            m = np.nan_to_num(a) != 0
        else:
            m = (a == 0) & (sig.reshape(kept_shape) == 0)
        if m.any():
            notes.append(
                f"{int(m.sum())} bins with {'mask set' if key == 'mask' else 'no events and zero signal'} read as not measured"
            )
        out |= m
    return (out, "; ".join(notes)) if notes else (None, None)


def _axis_centers(data, name: str, n: int, what: str, path) -> np.ndarray:
    """Bin centres of Mantid axis ``name`` for ``n`` bins: the axis holds ``n + 1`` edges (Mantid's
    histogram axes) or ``n`` centres; any other length, a non-finite value or an order that is not
    strictly increasing is refused (an axis of the wrong length used to be dropped silently, and the
    energy check with it)."""
    a = _h5_array(data, name, path, ndim=1)
    if not np.all(np.isfinite(a)):
        raise FcinvError(f"{path}: the {what} axis MDHistoWorkspace/data/{name} holds non-finite values")
    if a.size == n + 1:
        centers = 0.5 * (a[1:] + a[:-1])
    elif a.size == n:
        centers = a
    else:
        raise GridMismatchError(
            f"{path}: the {what} axis MDHistoWorkspace/data/{name} has {a.size} values for {n} bins "
            f"of the signal (expected {n + 1} edges or {n} centres)"
        )
    if n > 1 and not np.all(np.diff(centers) > 0):
        raise FcinvError(f"{path}: the {what} axis MDHistoWorkspace/data/{name} is not strictly increasing")
    return centers


def _q_axis(data, name: str, n: int, path) -> np.ndarray | None:
    """The q axis' bin centres in Å⁻¹ (the distance along the path) when it is in Å⁻¹, else None;
    in any unit it must increase (a descending r.l.u. axis was read as the path in the model's order)
    and must not be a powder |Q| axis (Mantid's dimension "|Q|")."""
    if name not in data:
        return None
    attrs = data[name].attrs
    said = {name.strip().lower(), _text(attrs.get("long_name", "")).strip().lower()}
    if said & {"|q|", "modq", "mod_q", "|q| (å^-1)"}:
        raise GridMismatchError(
            f"{path}: the q axis MDHistoWorkspace/data/{name} is a powder |Q| axis: the models invert a folded path "
            "through a single crystal's Brillouin zone, not a powder pattern"
        )
    centers = _axis_centers(data, name, n, "momentum", path)
    return centers if _in_inverse_angstrom(attrs) else None


def _in_inverse_angstrom(attrs) -> bool:
    """Whether a Mantid axis is a momentum transfer in Å⁻¹ (units "Angstrom^-1", "MomentumTransfer", "1/Å", …)
    — not a reciprocal-lattice coordinate, whose units read "in 1.113 A^-1" (Å⁻¹ per r.l.u.)."""
    import re

    txt = " ".join(_text(attrs.get(k, "")) for k in ("units", "long_name", "frame")).lower().replace(" ", "")
    if re.search(r"in[0-9.]+", txt) or "r.l.u" in txt or "rlu" in txt:
        return False
    return any(u in txt for u in ("angstrom^-1", "a^-1", "å^-1", "1/a", "1/å", "å⁻¹", "momentumtransfer", "invangstrom"))


def write_pathsqe_npz(path, image, grid) -> None:
    """Write an (nq, nE) image as pathSQE does: one array per path segment (arr_0 …)."""
    image = grid.check_image(image)
    b = grid.q.boundaries
    np.savez(path, *[np.asarray(image[b[i] : b[i + 1]]) for i in range(len(b) - 1)])


def to_model_intensity(
    image, grid, temperature_k: float | None = None, clip_percentile: float | None = None, e_min_mev: float = 0.0
) -> np.ndarray:
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
        temperature_k = finite_number(temperature_k, "the sample temperature (K)", positive=False, maximum=MAX_TEMPERATURE_K)
        ok = (e > 0) & (e >= e_min_mev)
        w = np.full(e.shape, np.nan)
        w[ok] = e[ok] / bose_factor(e[ok], float(temperature_k))
        img = img * w[None, :]
    elif e_min_mev > 0:
        img[:, e < e_min_mev] = np.nan
    if clip_percentile is not None:
        if not MIN_PERCENTILE <= clip_percentile <= 100:
            raise FcinvError(
                f"clip percentile must be in [{MIN_PERCENTILE:g}, 100] (a percentile such as 99.5: clip the brightest "
                f"0.5 %), got {clip_percentile!r}" + (" — a fraction, not a percentile?" if 0 < clip_percentile <= 1 else "")
            )
        vals = img[np.isfinite(img)]
        if vals.size == 0:
            raise FcinvError("the spectrum has no covered (finite) pixel")
        img = np.minimum(img, np.percentile(vals, clip_percentile))
    return img


# ---------------------------------------------------------------------- automatic input handling
def as_spectrum(data, grid=None, name: str = "spectrum", material: str | None = None) -> Spectrum:
    """A :class:`Spectrum` from a file path, a Spectrum or an (nq, nE) array (checked against ``grid``;
    with ``material``, a file that names another material is refused before its grid is compared).
    An array says nothing about itself: it is taken as a model image unless a temperature is given."""
    if isinstance(data, Spectrum):
        return _validate(data, grid, material)
    if isinstance(data, (str, Path)):
        return read_spectrum(data, grid, material)
    img = check_spectra(data, None if grid is None else grid.shape, name=name)
    if img.ndim != 2:
        raise GridMismatchError(f"{name}: one (nq, nE) spectrum is inverted at a time, got shape {img.shape}")
    return _validate(Spectrum(img, name, "array"), grid)


def prepare_input(
    spec: Spectrum, grid, temperature_k: float | None = None, clip_percentile: float | None = None, raw: bool = False
) -> tuple[np.ndarray, dict]:
    """The image the models should see, and a record of what was done to it.

    Defaults follow what ``spec.meta`` says (see the module doc): a one-phonon S(Q,E) is
    weighted by E/(n(E,T)+1) at its temperature and clipped at the 99.5th percentile
    (:func:`to_model_intensity`); a model image is left as it is. Explicit arguments override:
    ``temperature_k`` (K; on a model image it declares the data an S(Q,E) at that T),
    ``clip_percentile``, ``raw=True`` (nothing applied). A spectrum whose file says it was
    corrected already is never corrected again (asking for it raises :class:`FcinvError`).
    An S(Q,E) whose temperature is neither in the file nor given raises one line saying so.
    """
    raw = flag(raw, "raw")
    if raw and (temperature_k is not None or clip_percentile is not None):
        raise FcinvError("--raw feeds the spectrum as it is: drop --temperature/--clip, or drop --raw")
    check_spectra(spec.image, None if grid is None else grid.shape, name=spec.source)
    meta = spec.meta or {}
    intensity = meta.get("intensity")
    rec = {
        "intensity": intensity or MODEL_IMAGE,
        "intensity_source": meta.get("intensity_source") or "assumed: the input does not say (a model image)",
        "origin": meta.get("origin"),
        "ei_mev": meta.get("ei_mev"),
        **{k: meta[k] for k in ("ei_source", "ei_problem") if meta.get(k)},
        "applied": [],
        "bose_weighting": None,
        "clip_percentile": None,
    }
    image = np.array(spec.image, dtype=float)
    if raw:
        rec["raw"] = True
        return image, rec
    done = meta.get("corrections")
    if done:
        if temperature_k is not None or clip_percentile is not None:
            raise FcinvError(
                f"{spec.source}: the file says it was already corrected ({'; '.join(done.get('applied', [])) or done}); "
                "correcting it again would distort it — drop --temperature/--clip"
            )
        rec.update(intensity=MODEL_IMAGE, already_applied=done)
        return image, rec
    if temperature_k is not None or intensity == SQE:
        if temperature_k is not None:
            t = finite_number(temperature_k, "the sample temperature (K)", positive=False, maximum=MAX_TEMPERATURE_K)
            t_src = "given (--temperature)"
            if intensity != SQE:
                rec.update(intensity=SQE, intensity_source="given (--temperature): a one-phonon S(Q,E)")
        else:
            t, t_src = meta.get("temperature_k"), meta.get("temperature_source")
            if t is None and meta.get("temperature_problem"):
                raise FcinvError(
                    f"{spec.source} is a one-phonon S(Q,E) ({rec['intensity_source']}) but {meta['temperature_problem']}: "
                    "give the sample temperature with --temperature K"
                )
            if t is None:
                raise FcinvError(
                    f"{spec.source} is a one-phonon S(Q,E) ({rec['intensity_source']}) and does not say its "
                    "sample temperature: give it once with --temperature K (or --raw to feed the data uncorrected)"
                )
        clip = DEFAULT_CLIP if clip_percentile is None else _clip_arg(clip_percentile)
        image = to_model_intensity(image, grid, t, clip)
        rec.update(
            bose_weighting={"temperature_k": t, "source": t_src},
            clip_percentile=clip,
            clip_source="default" if clip_percentile is None else "given (--clip)",
            applied=[f"E/(n(E,T)+1) weighting at T = {t:g} K", f"clip at the {clip:g}th percentile"],
        )
    elif clip_percentile is not None:
        clip_percentile = _clip_arg(clip_percentile)
        image = to_model_intensity(image, grid, None, clip_percentile)
        rec.update(
            clip_percentile=float(clip_percentile),
            clip_source="given (--clip)",
            applied=[f"clip at the {float(clip_percentile):g}th percentile"],
        )
    if not np.isfinite(image).any():
        raise FcinvError(f"{spec.source}: no pixel left after the correction (all NaN)")
    check_spectra(image, None, name=f"{spec.source} (corrected)")
    return image, rec


def is_uncorrected_sqe(record: dict) -> bool:
    """True when :func:`prepare_input`'s record describes a one-phonon S(Q,E) that the physics fit
    (``analysis.refine.refine_sqe``) can take as it is: not ``--raw``, not corrected in its file."""
    return record.get("intensity") == SQE and not record.get("raw") and not record.get("already_applied")


def corrected(spec: Spectrum, grid, **kwargs) -> Spectrum:
    """:func:`prepare_input` as a new :class:`Spectrum` that records its corrections, so that
    passing it (or a file saved from it with :func:`save_spectrum`) again corrects nothing."""
    image, rec = prepare_input(spec, grid, **kwargs)
    meta = dict(spec.meta)
    if rec["applied"]:
        meta.update(intensity=MODEL_IMAGE, corrections=rec)
    return Spectrum(image, spec.source, spec.fmt, spec.energies, meta)


def save_spectrum(path, spec: Spectrum, grid, material: str = "") -> None:
    """Write a :class:`Spectrum` as our ``fcinv-spectrum`` HDF5 with what it says about itself."""
    from ..spectrum_io import write_spectrum

    keep = {
        k: spec.meta[k] for k in ("intensity", "origin", "temperature_k", "ei_mev", "corrections") if spec.meta.get(k) is not None
    }
    write_spectrum(path, spec.image, grid, material=material, **keep)


def scan_of_set(spec: Spectrum, scan_deg: float) -> Spectrum:
    """The single scan at sample angle ω = ``scan_deg`` (degrees) of the scan set ``spec`` was read
    from (an ``fcinv-scans`` file, whose full data set :func:`read_spectrum` returns), with what the
    set says about itself and, in ``meta["sample_axes"]``, the sample axes u, v (r.l.u.) it
    records (``meta["qmax_inv_a"]``, ``meta["detector_deg"]``: the |Q| range and detector of its
    scans); :class:`FcinvError` when the set has no scan at that angle."""
    from ..scans import ScanSet

    if not Path(spec.source).is_file():
        raise FcinvError(f"{spec.source}: picking one scan of a scan set needs its file")
    ss = ScanSet.load(spec.source)
    image = np.asarray(ss.scans[ss.scan_index(scan_deg, spec.source)], float)
    geometry = {k: ss.meta[k] for k in ("qmax_inv_a", "detector_deg") if ss.meta.get(k) is not None}
    meta = dict(spec.meta or {}) | geometry | {"sample_axes": ss.axes}
    return Spectrum(image, spec.source, spec.fmt, spec.energies, meta, spec.q_distance, scan_set=ss)


def prepare_scan_set(
    ss,
    grid,
    temperature_k: float | None = None,
    clip_percentile: float | None = None,
    raw: bool = False,
    source: str = "scan set",
) -> tuple[np.ndarray, np.ndarray, dict]:
    """:func:`prepare_input` for a :class:`~fcinv_widgets.scans.ScanSet` (an S(Q,E) at its own
    temperature): returns (full (nq, nE), scans (n, nq, nE), record of the full data's correction).
    Every image is corrected the same way, once; scans that measured nothing stay all-NaN."""
    meta = {
        "intensity": SQE,
        "intensity_source": "scan set (a folded S(Q,E))",
        "origin": "simulated",
        "temperature_k": float(ss.temperature_k),
        "temperature_source": f"{source}: temperature_k",
        "ei_mev": float(ss.ei_mev),
    }

    def one(img, what):
        spec = Spectrum(np.asarray(img, float), f"{source} ({what})", "fcinv-scans", None, meta)
        return prepare_input(spec, grid, temperature_k=temperature_k, clip_percentile=clip_percentile, raw=raw)

    full, rec = one(ss.full, "full data")
    scans = np.stack(
        [
            one(img, f"scan at ω = {a:g}°")[0] if np.isfinite(img).any() else np.asarray(img, float)
            for a, img in zip(ss.angles_deg, ss.scans)
        ]
    )
    return full, scans, rec
