"""Force-constant sets from an ensemble of uMLFFs (the paper's Stage I, first half).

Per model: optional relaxation of the cubic lattice constant (hydrostatic, ASE
``FrechetCellFilter`` on the primitive cell), phonopy finite differences (0.01 Å),
compact force constants ``(n_prim, n_super, 3, 3)`` in eV/Å², the dispersion along
the material's q-path and a stability check on a Γ-centred mesh plus the path.

:func:`run_ensemble` runs one Dask task per model: on a default
``dask.distributed.LocalCluster`` (processes, 2 workers, 1 thread each), on a
scheduler address, or on a given ``Client``; ``executor="serial"`` runs the models
one after the other in this process. Results are plain dicts (picklable);
:func:`write_ensemble_h5` / :func:`read_ensemble_h5` store them with provenance.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from datetime import datetime, timezone

import numpy as np

from ..errors import FcinvError, MissingDependencyError
from ..structure import Crystal
from ..validate import as_path, format_version, json_loads, json_or_text, open_h5
from .calculators import ModelSpec, get_calculator, package_version, package_versions

FORMAT = "fcinv-ensemble"
VERSION = 1
DISPLACEMENT = 0.01  # Å
UNSTABLE_BELOW_THZ = -0.1 / 4.135667696  # −0.1 meV, the forward model's threshold


def supercell_for_length(lattice, min_length: float) -> np.ndarray:
    """Smallest diagonal supercell whose three lattice vectors are each ≥ ``min_length`` Å."""
    from ..validate import finite_number, real_array

    lat = real_array(lattice, "lattice (Å)", shape=(3, 3), allow_nan=False)
    lengths = np.linalg.norm(lat, axis=1)
    if not np.all(lengths > 0):
        raise FcinvError("lattice (Å): a lattice vector of length 0")
    min_length = finite_number(min_length, "min_length (Å)", positive=True, maximum=1000.0)
    return np.diag(np.maximum(1, np.ceil(min_length / lengths - 1e-9)).astype(int))


def _scaled(crystal: Crystal, scale: float) -> Crystal:
    return Crystal(crystal.lattice * scale, crystal.positions, crystal.symbols, crystal.masses)


def relax_lattice(crystal: Crystal, calc, fmax: float = 1e-4, steps: int = 200) -> tuple:
    """Hydrostatic relaxation of the cell (positions are fixed by symmetry in Ge and Nb).

    Returns ``(scale, info)``: the lattice scale factor and a dict with the final pressure
    (eV/Å³) and number of steps.
    """
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms = crystal.to_ase()
    atoms.calc = calc
    filt = FrechetCellFilter(atoms, hydrostatic_strain=True)
    opt = BFGS(filt, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    scale = float(np.cbrt(atoms.get_volume() / abs(np.linalg.det(crystal.lattice))))
    stress = atoms.get_stress()
    return scale, {"pressure_eV_A3": float(-stress[:3].mean()), "steps": int(opt.nsteps), "converged": converged}


def phonopy_force_constants(crystal: Crystal, supercell_matrix, calc, displacement: float = DISPLACEMENT):
    """phonopy finite differences; returns ``(phonopy, fc_compact, info)``.

    Forces of the perfect supercell are subtracted (residual forces of the model), the
    force constants are symmetrised (index symmetry and acoustic sum rule, phonopy's
    ``symmetrize_force_constants``) and kept in compact form (n_prim, n_super, 3, 3), eV/Å².
    """
    from ..fcio import new_phonopy
    from ..structure import Crystal as _C  # noqa: F401

    ph = new_phonopy(crystal.to_phonopy_atoms(), np.asarray(supercell_matrix, int))
    ph.generate_displacements(distance=displacement)
    from ase import Atoms

    def forces_of(sc):
        at = Atoms(symbols=sc.symbols, cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True)
        at.calc = calc
        return np.array(at.get_forces(), dtype=float)

    f0 = forces_of(ph.supercell)
    sets = [forces_of(sc) - f0 for sc in ph.supercells_with_displacements]
    ph.forces = np.array(sets)
    ph.produce_force_constants(calculate_full_force_constants=False)
    raw = np.array(ph.force_constants)
    ph.symmetrize_force_constants()
    fc = np.array(ph.force_constants)
    info = {
        "n_displacements": len(sets),
        "residual_force_max": float(np.abs(f0).max()),
        "symmetrization_change_max": float(np.abs(fc - raw).max()),
        "n_supercell_atoms": int(len(ph.supercell)),
    }
    return ph, fc, info


def stability(ph, path_qpoints, mesh=(8, 8, 8)) -> dict:
    """Dispersion on the path (THz) and the lowest frequency on the path and a Γ-centred mesh."""
    out = {}
    if path_qpoints is not None and len(path_qpoints):
        ph.run_qpoints(np.asarray(path_qpoints, float))
        out["dispersion_thz"] = np.array(
            ph.qpoints.frequencies if hasattr(ph, "qpoints") and ph.qpoints is not None else ph.get_qpoints_dict()["frequencies"]
        )
    ph.run_mesh(list(mesh), is_gamma_center=True, with_eigenvectors=False)
    mesh_f = np.array(ph.mesh.frequencies if getattr(ph, "mesh", None) is not None else ph.get_mesh_dict()["frequencies"])
    lows = [float(mesh_f.min())]
    if "dispersion_thz" in out:
        lows.append(float(out["dispersion_thz"].min()))
    out["min_frequency_thz"] = min(lows)
    out["stable"] = bool(out["min_frequency_thz"] >= UNSTABLE_BELOW_THZ)
    return out


def compute_fcset(
    spec: ModelSpec,
    crystal: Crystal,
    supercell_matrix,
    path_qpoints=None,
    relax: bool = False,
    displacement: float = DISPLACEMENT,
    mesh=(8, 8, 8),
    device: str = "cpu",
    torch_threads: int | None = None,
) -> dict:
    """One model's force-constant set. Never raises for a model problem: failures come back as
    ``status="failed"`` with a one-line ``reason``. Picklable in and out (a Dask task)."""
    t0 = time.perf_counter()
    if torch_threads:
        try:
            import torch

            torch.set_num_threads(int(torch_threads))
        except Exception:
            pass
    res = {
        "name": spec.name,
        "family": spec.family,
        "source": spec.source,
        "modal": spec.modal,
        "package_version": package_version(spec.family),
        "package_versions": package_versions(),
        "displacement": float(displacement),
        "supercell_matrix": np.asarray(supercell_matrix, int),
        "relaxed": bool(relax),
        "status": "failed",
        "stable": False,
        "reason": "",
        "timings": {},
        "host": os.uname().nodename,
        "pid": os.getpid(),
    }
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _compute(res, spec, crystal, supercell_matrix, path_qpoints, relax, displacement, mesh, device, t0)
    except MissingDependencyError as exc:
        res["reason"] = str(exc)
    except Exception as exc:  # a model that breaks must not take the ensemble down
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno}" if tb else ""
        res["reason"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}{where}"
    res["timings"]["total_s"] = time.perf_counter() - t0
    return res


def _compute(res, spec, crystal, supercell_matrix, path_qpoints, relax, displacement, mesh, device, t0):
    """The work of :func:`compute_fcset`; fills ``res`` in place."""
    calc = get_calculator(spec, device=device)
    res["timings"]["load_s"] = time.perf_counter() - t0
    scale, rinfo = 1.0, {}
    if relax:
        t = time.perf_counter()
        scale, rinfo = relax_lattice(crystal, calc)
        res["timings"]["relax_s"] = time.perf_counter() - t
    cr = _scaled(crystal, scale)
    res["scale"] = scale
    res["relax_info"] = rinfo
    res["lattice"] = cr.lattice
    res["positions"] = cr.positions
    res["symbols"] = list(cr.symbols)
    t = time.perf_counter()
    ph, fc, finfo = phonopy_force_constants(cr, supercell_matrix, calc, displacement)
    res["timings"]["forces_s"] = time.perf_counter() - t
    res.update(finfo)
    res["force_constants"] = fc
    t = time.perf_counter()
    st = stability(ph, path_qpoints, mesh)
    res["timings"]["phonons_s"] = time.perf_counter() - t
    res.update(st)
    res["mesh"] = list(mesh)
    res["status"] = "ok"
    res["reason"] = "stable" if st["stable"] else f"imaginary modes (lowest {st['min_frequency_thz']:.3f} THz)"


# ------------------------------------------------------------------------------ running
def _progress(total, desc, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="model", disable=not enabled)


def run_ensemble(
    specs,
    crystal: Crystal,
    supercell_matrix,
    path_qpoints=None,
    relax: bool = False,
    displacement: float = DISPLACEMENT,
    mesh=(8, 8, 8),
    executor: str = "dask",
    client=None,
    scheduler: str | None = None,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    progress: bool = True,
    desc: str = "uMLFF models",
) -> list:
    """Force-constant sets for every available spec, one Dask task per model.

    executor : ``"dask"`` (default: ``client``, else ``scheduler`` address, else a new
               LocalCluster of ``n_workers`` processes × ``threads_per_worker`` threads) or
               ``"serial"`` (in this process).
    Returns the result dicts in the order of ``specs`` (skipped specs come back as
    ``status="skipped"`` without running).
    """
    specs = list(specs)
    results = [None] * len(specs)
    todo = []
    for i, s in enumerate(specs):
        if s.available:
            todo.append(i)
        else:
            results[i] = {
                "name": s.name,
                "family": s.family,
                "status": "skipped",
                "stable": False,
                "reason": s.reason,
                "timings": {},
            }
    kw = dict(
        path_qpoints=None if path_qpoints is None else np.asarray(path_qpoints, float),
        relax=relax,
        displacement=displacement,
        mesh=tuple(mesh),
    )
    if executor == "serial":
        bar = _progress(len(todo), desc, progress)
        for i in todo:
            bar.set_postfix_str(specs[i].name)
            results[i] = compute_fcset(specs[i], crystal, supercell_matrix, **kw)
            bar.update(1)
        bar.close()
        return results
    if executor != "dask":
        raise FcinvError(f"executor must be 'dask' or 'serial', got {executor!r}")
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise MissingDependencyError("dask.distributed is not installed (pip install 'dask[distributed]')") from None
    own_client = own_cluster = None
    if client is None:
        if scheduler:
            from ..dataset import dask_client

            # (one connection rule for every stage: any bad address, no answer, no worker or workers
            # without the package is one line — `foo bar` was a ValueError traceback here)
            client, _ = dask_client(scheduler)
            own_client = client
        else:
            own_cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=threads_per_worker,
                processes=True,
                dashboard_address=None,
                silence_logs=40,
            )
            client = own_client = Client(own_cluster)
    bar = _progress(len(todo), desc, progress)  # (after the connection: its refusal is one line, no bar)
    try:
        nthreads = client.nthreads()
        tt = max(1, min(nthreads.values())) if nthreads else 1
        futs = {}
        for i in todo:
            f = client.submit(
                compute_fcset,
                specs[i],
                crystal,
                supercell_matrix,
                torch_threads=tt,
                pure=False,
                key=f"fcset-{specs[i].name}-{time.time_ns()}",
                **kw,
            )
            futs[f] = i
        from ..dataset import dask_wait

        where = scheduler or "the ensemble's cluster"
        pending = set(futs)
        while pending:  # (a lost scheduler, or no worker left: one line, not a wait for ever)
            done, pending = dask_wait(client, list(pending), where, first=True)
            for f in done:
                i = futs[f]
                try:
                    results[i] = f.result()
                except Exception as exc:  # worker died etc.
                    results[i] = {
                        "name": specs[i].name,
                        "family": specs[i].family,
                        "status": "failed",
                        "stable": False,
                        "reason": f"Dask task failed: {type(exc).__name__}: {exc}",
                        "timings": {},
                    }
                bar.set_postfix_str(specs[i].name)
                bar.update(1)
    finally:
        bar.close()
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()
    return results


# ------------------------------------------------------------------------------ HDF5
def _group_name(name: str) -> str:
    return name.replace("/", "_")


def write_ensemble_h5(
    path,
    results,
    material: str,
    crystal: Crystal,
    supercell_matrix,
    path_qpoints=None,
    qpath_x=None,
    labels=None,
    projection: dict | None = None,
    settings: dict | None = None,
) -> None:
    """Write the ensemble to one HDF5 file (layout in docs/ensemble.md)."""
    import h5py

    tmp = f"{path}.tmp-{os.getpid()}"
    with h5py.File(tmp, "w") as h:
        h.attrs["format"] = FORMAT
        h.attrs["version"] = VERSION
        h.attrs["material"] = material
        h.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        h.attrs["package_versions"] = json.dumps(package_versions())
        h.attrs["settings"] = json.dumps(settings or {})
        h.attrs["units"] = "force constants eV/Å^2, frequencies THz, lengths Å"
        s = h.create_group("structure")
        s["lattice"] = crystal.lattice
        s["positions"] = crystal.positions
        s["masses"] = crystal.masses
        s.attrs["symbols"] = json.dumps(list(crystal.symbols))
        s["supercell_matrix"] = np.asarray(supercell_matrix, int)
        if path_qpoints is not None:
            q = h.create_group("qpath")
            q["qpoints"] = np.asarray(path_qpoints, float)
            if qpath_x is not None:
                q["x"] = np.asarray(qpath_x, float)
            q.attrs["labels"] = json.dumps(labels or [])
        mg = h.create_group("models")
        order = []
        for r in results:
            g = mg.create_group(_group_name(r["name"]))
            order.append(r["name"])
            for key in ("name", "family", "source", "modal", "status", "reason", "package_version", "host"):
                v = r.get(key)
                g.attrs[key] = "" if v is None else str(v)
            g.attrs["stable"] = bool(r.get("stable", False))
            for key in ("displacement", "scale", "min_frequency_thz", "residual_force_max", "symmetrization_change_max"):
                if key in r:
                    g.attrs[key] = float(r[key])
            g.attrs["relaxed"] = bool(r.get("relaxed", False))
            g.attrs["timings"] = json.dumps(r.get("timings", {}))
            g.attrs["package_versions"] = json.dumps(r.get("package_versions", {}))
            g.attrs["relax_info"] = json.dumps(r.get("relax_info", {}))
            if "n_displacements" in r:
                g.attrs["n_displacements"] = int(r["n_displacements"])
            for key in ("force_constants", "lattice", "positions", "supercell_matrix", "dispersion_thz", "mesh", "params"):
                if r.get(key) is not None:
                    g.create_dataset(key, data=np.asarray(r[key]), compression="gzip" if key == "force_constants" else None)
            if "lattice" in r:
                a_conv = _conventional_a(crystal, r["lattice"])
                if a_conv is not None:
                    g.attrs["lattice_constant"] = a_conv
            if "projection_residual" in r:
                g.attrs["projection_residual"] = json.dumps(r["projection_residual"])
        mg.attrs["order"] = json.dumps(order)
        if projection:
            p = h.create_group("projection")
            for key, v in projection.items():
                if v is None:
                    continue
                arr = None
                if not isinstance(v, (dict, str, bool, np.bool_)):
                    try:
                        arr = np.asarray(v)
                    except Exception:
                        arr = None
                if arr is not None and arr.dtype.kind in "fiub" and arr.size:
                    p[key] = arr
                else:
                    p.attrs[key] = json.dumps(v, default=_json_default)
    os.replace(tmp, path)


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    return str(obj)


def _conventional_a(ref: Crystal, lattice) -> float | None:
    """Conventional cubic lattice constant for a scaled copy of ``ref`` (Ge fcc: |a1|·√2, bcc: 2|a1|/√3)."""
    lat = np.asarray(lattice, float)
    n = np.linalg.norm(lat, axis=1)
    if not np.allclose(n, n[0], rtol=1e-6):
        return None
    cosang = lat[0] @ lat[1] / n[0] ** 2
    if abs(cosang - 0.5) < 1e-4:  # fcc primitive (60°)
        return float(n[0] * np.sqrt(2))
    if abs(cosang + 1 / 3) < 1e-4:  # bcc primitive (109.47°)
        return float(2 * n[0] / np.sqrt(3))
    if abs(cosang) < 1e-6:
        return float(n[0])
    return None


def read_ensemble_h5(path) -> dict:
    """Read back what :func:`write_ensemble_h5` wrote: ``{"attrs", "structure", "qpath", "models": [dict], "projection"}``."""
    path = as_path(path, "ensemble file")
    if not os.path.isfile(path):
        raise FcinvError(f"ensemble file {path!r} not found")
    try:
        return _read_ensemble(path)
    except (KeyError, ValueError, TypeError, AttributeError, OSError) as exc:  # json errors are ValueErrors
        raise FcinvError(f"{path}: damaged ensemble file ({type(exc).__name__}: {exc})"[:300]) from None


def _read_ensemble(path: str) -> dict:
    out: dict = {"models": []}
    with open_h5(path, "ensemble file") as h:
        if h.attrs.get("format") != FORMAT:
            raise FcinvError(f"{path}: not an fcinv ensemble file (format={h.attrs.get('format')!r})")
        format_version(h.attrs.get("version"), str(path), VERSION)
        out["attrs"] = {k: (v.item() if hasattr(v, "item") else v) for k, v in h.attrs.items()}
        out["structure"] = {k: h["structure"][k][()] for k in h["structure"]}
        out["structure"]["symbols"] = json_loads(h["structure"].attrs["symbols"], f"{path}: /structure symbols")
        if "qpath" in h:
            out["qpath"] = {k: h["qpath"][k][()] for k in h["qpath"]}
            out["qpath"]["labels"] = json_loads(h["qpath"].attrs["labels"], f"{path}: /qpath labels")
        order = json_loads(h["models"].attrs["order"], f"{path}: /models order")
        for name in order:
            g = h["models"][_group_name(name)]
            r = {}
            for k, v in g.attrs.items():
                v = v.item() if hasattr(v, "item") else v
                if k in ("timings", "package_versions", "relax_info", "projection_residual"):
                    v = json_loads(v, f"{path}: model {name} attribute {k}")
                r[k] = v
            for k in g:
                r[k] = g[k][()]
            out["models"].append(r)
        if "projection" in h:
            p = h["projection"]
            d = {k: p[k][()] for k in p}
            for k, v in p.attrs.items():
                v = v.item() if hasattr(v, "item") else v
                d[k] = json_or_text(v, f"{path}: /projection attribute {k}")
            out["projection"] = d
    return out
