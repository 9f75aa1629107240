"""The ensemble workflow behind ``fcinv ensemble --material``: models → force constants →
projection onto the basis → training domain → HDF5 (+ summary JSON, figures).

The command (:mod:`fcinv_widgets.commands.ensemble`) only parses options and prints.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from ..errors import FcinvError


#: the largest finite displacement (Å) and supercell edge (Å) ``run_material`` takes: far beyond
#: the harmonic range / any phonon calculation a uMLFF ensemble can afford
MAX_DISPLACEMENT = 0.5
MAX_MIN_LENGTH = 200.0


def _check_run_args(given: dict) -> dict:
    """:func:`run_material`'s arguments (``given``: its ``locals()``) checked before anything runs (one line
    naming the argument); returns the converted ones."""
    from ..validate import as_path, finite_number, flag, max_workers, need_type, nonempty_list, whole_number
    from .calculators import ModelSpec

    specs, models, supercell, min_length = given["specs"], given["models"], given["supercell"], given["min_length"]
    include_reference, widen_mode = given["include_reference"], given["widen_mode"]
    for name in ("relax", "serial", "progress"):
        flag(given[name], name)
    specs = [need_type(s, ModelSpec, "each of specs (calculators.available_models())") for s in nonempty_list(specs, "specs")]
    if models is not None:
        models = [need_type(m, str, "each model name") for m in nonempty_list(models, "models (registry names)")]
    if supercell is not None:
        sc = [whole_number(v, "each supercell entry", -100, 100) for v in nonempty_list(supercell, "supercell (3 or 9 integers)")]
        # phonopy builds right-handed supercells only: det < 0 failed every model ("Cell trimming failed") with exit 0
        if len(sc) not in (3, 9) or np.linalg.det(np.diag(sc) if len(sc) == 3 else np.reshape(sc, (3, 3))) < 0.5:
            raise FcinvError(f"supercell must be 3 or 9 integers of a matrix with determinant ≥ 1, got {supercell!r}"[:200])
    if min_length is not None:
        min_length = finite_number(min_length, "min_length (Å)", positive=True, maximum=MAX_MIN_LENGTH)
    displacement = finite_number(given["displacement"], "displacement (Å)", positive=True, maximum=MAX_DISPLACEMENT)
    mesh = [whole_number(v, "each stability mesh size", 1, 100) for v in nonempty_list(given["mesh"], "mesh (3 integers)")]
    if len(mesh) != 3:
        raise FcinvError(f"mesh must be 3 integers, got {mesh!r}")
    workers = whole_number(given["workers"], "workers", 1, max_workers())
    for name in ("from_h5", "summary_path", "plot"):
        if given[name] is not None:
            as_path(given[name], name)
    refs = [
        as_path(f, "each include_reference file")
        for f in (include_reference if isinstance(include_reference, (list, tuple)) else [include_reference])
    ]
    if not isinstance(widen_mode, str) or widen_mode not in ("signed", "magnitude"):
        raise FcinvError(f"widen_mode must be 'signed' or 'magnitude', got {widen_mode!r}"[:200])
    return {
        "specs": specs,
        "out": as_path(given["out"], "out (ensemble file)"),
        "models": models,
        "mesh": mesh,
        "workers": workers,
        "include_reference": refs,
        "displacement": displacement,
        "min_length": min_length,
    }


def _reference_params(files, mat) -> dict:
    """{label: parameters (eV/Å²)} of the ``--include-reference`` force-constant files on ``mat``'s
    basis — read before any model runs (a bad file was reported after every uMLFF had run)."""
    from ..fcio import read_force_constants
    from ..materials import reduce_given

    refs = {}
    for f in files:
        if not os.path.isfile(f):
            raise FcinvError(f"--include-reference {f!r}: no such file")
        params, _ = reduce_given(mat.basis, read_force_constants(f), f"--include-reference {f}")
        refs[f"reference:{os.path.basename(os.path.dirname(os.path.abspath(f)))}/{os.path.basename(f)}"] = params
    return refs


def run_material(
    material: str,
    specs,
    out,
    *,
    models=None,
    supercell=None,
    min_length: float | None = None,
    relax: bool = False,
    displacement: float = 0.01,
    mesh=(8, 8, 8),
    serial: bool = False,
    scheduler: str | None = None,
    workers: int = 2,
    from_h5=None,
    include_reference=(),
    widen_mode: str = "signed",
    summary_path=None,
    plot=None,
    progress: bool = True,
    log=None,
) -> tuple[dict, str]:
    """The ensemble workflow of ``fcinv ensemble --material``: run (or re-read ``from_h5``) every
    uMLFF in ``specs``, project onto the material's basis, derive the training domain, write
    ``out`` (HDF5), and optionally ``summary_path`` (JSON) and figures into ``plot``.

    ``log(line)`` receives warnings (skipped models, no domain); default: stderr.
    Returns (payload dict, human-readable text).
    """
    from .. import materials
    from .calculators import find_spec
    from .domain import project_results, summary_dict, training_domain
    from .fcsets import run_ensemble, supercell_for_length, write_ensemble_h5

    if log is None:

        def log(line):
            print(line, file=sys.stderr)

    a = _check_run_args(locals())
    specs, out, models, mesh, workers, include_reference = (
        a[k] for k in ("specs", "out", "models", "mesh", "workers", "include_reference")
    )
    displacement, min_length = a["displacement"], a["min_length"]

    mat = materials.get_material(material)
    if models:
        specs = [find_spec(n, specs) for n in models]
    if supercell is not None:
        sc = np.asarray(supercell, int)
        if sc.size == 3:
            sc = np.diag(sc)
        elif sc.size == 9:
            sc = sc.reshape(3, 3)
        else:
            raise FcinvError("--supercell takes 3 or 9 integers")
    elif min_length is not None:
        sc = supercell_for_length(mat.crystal.lattice, min_length)
    else:
        sc = np.asarray(mat.supercell_matrix, int)
    same_basis = np.array_equal(sc, np.asarray(mat.supercell_matrix, int))
    refs = _reference_params(include_reference, mat) if same_basis and not from_h5 else None  # before the hours of runs
    skipped = [s for s in specs if not s.available]
    for s in [] if from_h5 else skipped:
        log(f"skipping {s.name}: {s.reason}")
    t0 = time.perf_counter()
    if from_h5:
        results, sc, old_settings = results_from_h5(from_h5, mat.name)
        same_basis = np.array_equal(sc, np.asarray(mat.supercell_matrix, int))
    else:
        old_settings = {}
        results = run_ensemble(
            specs,
            mat.crystal,
            sc,
            mat.grid.q.qpoints,
            relax=relax,
            displacement=displacement,
            mesh=mesh,
            executor="serial" if serial else "dask",
            scheduler=scheduler,
            n_workers=workers,
            progress=progress,
        )
    wall = time.perf_counter() - t0
    settings = (
        dict(old_settings)
        if from_h5
        else {
            "relax": bool(relax),
            "displacement": displacement,
            "supercell_matrix": sc.tolist(),
            "mesh": list(mesh),
            "executor": "serial" if serial else (scheduler or f"LocalCluster({workers}x1)"),
            "wall_s": round(wall, 1),
        }
    )
    if from_h5:
        settings["reprojected_from"] = os.path.basename(from_h5)
    projection = None
    summary = None
    if same_basis:
        basis = mat.basis
        project_results(results, basis)
        refs = _reference_params(include_reference, mat) if refs is None else refs
        settings["include_reference"] = list(refs)
        settings["widen_mode"] = widen_mode
        dft = mat.dft_params
        try:
            dom = training_domain(results, basis, mat.grid.q.qpoints, reference_fcsets=refs, dft_params=dft, mode=widen_mode)
        except Exception as exc:  # keep the (expensive) force constants whatever happens here
            log(f"no training domain: {type(exc).__name__}: {exc}")
            dom = None
        if dom is not None:
            projection = dict(dom)
            projection["dft_params"] = dft
            summary = summary_dict(mat.name, results, dom, settings)
    else:
        log(
            f"supercell {sc.tolist()} differs from the material's {np.asarray(mat.supercell_matrix).tolist()}: "
            "force constants saved, not projected onto the basis"
        )
    write_ensemble_h5(
        out,
        results,
        mat.name,
        mat.crystal,
        sc,
        mat.grid.q.qpoints,
        mat.grid.q.distance,
        [list(map(str, x)) for x in mat.grid.q.labels],
        projection=projection,
        settings=settings,
    )
    if summary is not None and summary_path:
        with open(summary_path, "w") as fh:
            json.dump(summary, fh, indent=1)
            fh.write("\n")
    rows = []
    for r in results:
        t = r.get("timings", {}).get("total_s")
        rows.append(
            {
                "name": r["name"],
                "family": r.get("family"),
                "status": r["status"],
                "stable": bool(r.get("stable")),
                "reason": r.get("reason", ""),
                "time_s": None if t is None else round(t, 1),
                "min_frequency_thz": r.get("min_frequency_thz"),
            }
        )
    payload = {"material": mat.name, "out": out, "wall_s": round(wall, 1), "models": rows}
    lines = [f"{'model':<40s} {'status':<8s} {'stable':<6s} {'time/s':>7s}  reason"]
    for row in rows:
        lines.append(
            f"{row['name']:<40s} {row['status']:<8s} {str(row['stable']):<6s} "
            f"{(row['time_s'] if row['time_s'] is not None else 0):>7.1f}  {row['reason']}"
        )
    if summary is not None:
        payload["active_names"] = summary["active_names"]
        payload["domain"] = summary["domain"]
        payload["models_used"] = summary["models_used"]
        lines.append(f"{len(summary['models_used'])} stable members: {', '.join(summary['models_used'])}")
        if len(summary["models_used"]) < 2:
            lines.append("warning: fewer than 2 stable members: the domain has zero width (add models or --include-reference)")
        lines.append(
            "training domain (eV/Å², "
            + (
                "[min − 25 % range, max + 150 % range]"
                if widen_mode == "signed"
                else "150 % of the range away from zero, 25 % toward zero"
            )
            + "):"
        )
        for k, (nm, (lo, hi)) in enumerate(zip(summary["active_names"], summary["domain"])):
            lines.append(f"  FC{k} {nm:<22s} [{lo:+.4f}, {hi:+.4f}]")
        if "dft_check" in summary:
            dc = summary["dft_check"]
            payload["dft_check"] = dc
            if dc["all_inside"]:
                lines.append("DFT reference: inside the widened domain for all 8 parameters")
            else:
                outs = "; ".join(
                    f"{o['param']} = {o['value']:+.4f} not in [{o['lo']:+.4f}, {o['hi']:+.4f}]" for o in dc["outside"]
                )
                lines.append(
                    f"DFT reference: OUTSIDE the widened domain for {len(dc['outside'])} of 8 parameters: {outs} "
                    "(use --include-reference FILE to add it to the ensemble)"
                )
        if "alternative_widening" in summary and "dft_all_inside" in summary["alternative_widening"]:
            alt = summary["alternative_widening"]
            lines.append(
                f"  with --widen-mode {alt['mode']} the DFT reference would be "
                + (
                    "inside for all 8"
                    if alt["dft_all_inside"]
                    else f"outside for {len(alt['dft_outside'])} of 8: " + ", ".join(o["param"] for o in alt["dft_outside"])
                )
            )
    if plot:
        from .fcsets import read_ensemble_h5
        from .plots import save_figures

        figs = save_figures(read_ensemble_h5(out), plot, prefix=f"{mat.name.lower()}_")
        payload["figures"] = figs
        lines.append("figures: " + ", ".join(figs))
    lines.append(f"wrote {out} in {wall:.1f} s" + (f" and {summary_path}" if summary is not None and summary_path else ""))
    return payload, "\n".join(lines)


def results_from_h5(path, material):
    """Result dicts (as :func:`run_ensemble` returns them) from an ensemble HDF5 file."""
    from ..validate import json_loads
    from .fcsets import read_ensemble_h5

    d = read_ensemble_h5(path)
    if str(d["attrs"]["material"]).lower() != material.lower():
        raise FcinvError(f"{path} holds {d['attrs']['material']}, not {material}")
    results = []
    for m in d["models"]:
        r = dict(m)
        r["stable"] = bool(m.get("stable", False))
        r.pop("params", None)
        r.pop("projection_residual", None)
        results.append(r)
    settings = json_loads(d["attrs"].get("settings", "{}") or "{}", "the ensemble file's settings")
    return results, np.asarray(d["structure"]["supercell_matrix"], int), settings
