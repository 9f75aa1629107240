"""``fcinv ensemble``: force-constant sets from an ensemble of uMLFFs, and the training domain.

    fcinv ensemble --list [--matgl-path DIR] [--mace FILE|NAME]
    fcinv ensemble --material Ge [--models NAME ...] [--matgl-path DIR ...] [--mace FILE|NAME ...]
                   [--scheduler ADDR | --serial] [--relax] [--include-reference FILE]
                   --out ge_ensemble.h5 [--summary ge.json] [--json]
"""

from __future__ import annotations

import json
import os
import time


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ensemble",
        help="uMLFF ensemble: force constants per model, stability, training domain",
        description="Run every available uMLFF (CHGNet, SevenNet, matgl, MACE) through phonopy finite "
        "differences, project onto the symmetry basis and derive the widened training domain.",
    )
    p.add_argument("--list", action="store_true", help="list the registry (available and skipped models) and exit")
    p.add_argument("--material", default=None, help="preset: Ge or Nb")
    p.add_argument("--models", nargs="+", default=None, metavar="NAME",
                   help="only these registry names (default: all available)")
    p.add_argument("--matgl-path", action="append", default=[], metavar="DIR",
                   help="a matgl model folder (with model.json) or a folder of them; repeatable")
    p.add_argument("--matgl-name", action="append", default=[], metavar="NAME",
                   help="a matgl pretrained model by name (needs the network); repeatable")
    p.add_argument("--mace", action="append", default=[], metavar="FILE|NAME",
                   help="a MACE .model file or a mace_mp foundation name; repeatable (a file needs --trust-mace-file)")
    p.add_argument("--trust-mace-file", action="store_true",
                   help="load the --mace model files given: a .model file is a Python pickle and can run any code "
                   "when loaded, so pass this only for files you trust (without it they are refused)")
    p.add_argument("--relax", action="store_true", help="relax each model's cubic lattice constant first")
    p.add_argument("--displacement", type=float, default=0.01, help="finite displacement, Å (default 0.01)")
    p.add_argument("--supercell", type=int, nargs="+", default=None, metavar="N",
                   help="supercell: 3 or 9 integers (default: the material's)")
    p.add_argument("--min-length", type=float, default=None, metavar="Å",
                   help="choose a diagonal supercell with every lattice vector at least this long")
    p.add_argument("--mesh", type=int, nargs=3, default=[8, 8, 8], help="stability mesh (default 8 8 8)")
    p.add_argument("--scheduler", default=None, metavar="ADDR", help="Dask scheduler address (default: a LocalCluster)")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default 2, 1 thread each)")
    p.add_argument("--serial", action="store_true", help="run the models one by one in this process (no Dask)")
    p.add_argument("--from", dest="from_h5", default=None, metavar="H5",
                   help="do not run the models: re-project the force constants stored in an ensemble HDF5 file "
                   "(e.g. with another --widen-mode or --include-reference)")
    p.add_argument("--include-reference", action="append", default=[], metavar="FILE",
                   help="add a phonopy FORCE_CONSTANTS file (same supercell) to the ensemble as a stable member; repeatable")
    p.add_argument("--widen-mode", choices=["signed", "magnitude"], default="signed",
                   help="signed (default): [min − 25 %% range, max + 150 %% range]; magnitude: the 150 %% on the side "
                   "away from zero (see docs/ensemble.md)")
    p.add_argument("--out", default=None, help="output HDF5 file")
    p.add_argument("--summary", default=None, metavar="JSON", help="also write the ensemble summary JSON (shipped format)")
    p.add_argument("--plot", default=None, metavar="DIR",
                   help="write PNG figures (dispersions, parameter ranges, sensitivity) into DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _specs(args):
    from ..ensemble.calculators import available_models

    return available_models(matgl_paths=args.matgl_path, matgl_names=args.matgl_name, mace_models=args.mace,
                            trust_mace_files=args.trust_mace_file)


def run(args) -> int:
    from ._common import emit
    from ..errors import FcinvError

    for d in args.matgl_path:
        if not os.path.exists(os.path.expanduser(d)):
            raise FcinvError(f"--matgl-path {d!r}: no such folder")
    specs = _specs(args)
    untrusted = [s.source for s in specs if s.family == "mace" and s.available and not s.extra.get("by_name")
                 and not s.extra.get("trusted")]
    if untrusted and not args.list:
        from ..ensemble.calculators import MACE_TRUST_NOTE

        raise FcinvError(f"--mace {untrusted[0]}: refused: {MACE_TRUST_NOTE}; add --trust-mace-file to load it")
    if args.list:
        payload = {"models": [s.to_dict() for s in specs]}
        text = "\n".join(s.line() for s in specs)
        n = sum(s.available for s in specs)
        text += f"\n{n} of {len(specs)} models available"
        emit(args, payload, text)
        return 0
    if args.from_h5 and not args.material:
        from ..ensemble.fcsets import read_ensemble_h5

        args.material = read_ensemble_h5(args.from_h5)["attrs"]["material"]
    if not args.material:
        raise FcinvError("give --material Ge|Nb (or --list)")
    if not args.out:
        raise FcinvError("give --out FILE.h5")
    return _run_material(args, specs)


def _run_material(args, specs) -> int:
    import numpy as np

    from .. import materials
    from ._common import emit
    from ..ensemble.calculators import find_spec
    from ..ensemble.domain import project_results, summary_dict, training_domain
    from ..ensemble.fcsets import run_ensemble, supercell_for_length, write_ensemble_h5
    from ..errors import FcinvError

    mat = materials.get_material(args.material)
    if args.models:
        specs = [find_spec(n, specs) for n in args.models]
    if args.supercell is not None:
        sc = np.asarray(args.supercell, int)
        if sc.size == 3:
            sc = np.diag(sc)
        elif sc.size == 9:
            sc = sc.reshape(3, 3)
        else:
            raise FcinvError("--supercell takes 3 or 9 integers")
    elif args.min_length is not None:
        sc = supercell_for_length(mat.crystal.lattice, args.min_length)
    else:
        sc = np.asarray(mat.supercell_matrix, int)
    same_basis = np.array_equal(sc, np.asarray(mat.supercell_matrix, int))
    skipped = [s for s in specs if not s.available]
    for s in [] if args.from_h5 else skipped:
        print(f"skipping {s.name}: {s.reason}")
    t0 = time.perf_counter()
    if args.from_h5:
        results, sc, old_settings = _results_from_h5(args.from_h5, mat.name)
        same_basis = np.array_equal(sc, np.asarray(mat.supercell_matrix, int))
    else:
        old_settings = {}
        results = run_ensemble(
            specs, mat.crystal, sc, mat.grid.q.qpoints, relax=args.relax, displacement=args.displacement, mesh=args.mesh,
            executor="serial" if args.serial else "dask", scheduler=args.scheduler, n_workers=args.workers,
            progress=not args.no_progress and not args.json,
        )
    wall = time.perf_counter() - t0
    settings = dict(old_settings) if args.from_h5 else {"relax": bool(args.relax), "displacement": args.displacement, "supercell_matrix": sc.tolist(),
                "mesh": list(args.mesh), "executor": "serial" if args.serial else (args.scheduler or f"LocalCluster({args.workers}x1)"),
                "wall_s": round(wall, 1)}
    if args.from_h5:
        settings["reprojected_from"] = os.path.basename(args.from_h5)
    projection = None
    summary = None
    if same_basis:
        basis = mat.basis
        project_results(results, basis)
        refs = {}
        from ..fcio import read_force_constants

        for f in args.include_reference:
            if not os.path.isfile(f):
                raise FcinvError(f"--include-reference {f!r}: no such file")
            params, resid = basis.reduce(read_force_constants(f))
            refs[f"reference:{os.path.basename(os.path.dirname(os.path.abspath(f)))}/{os.path.basename(f)}"] = params
        settings["include_reference"] = list(refs)
        settings["widen_mode"] = args.widen_mode
        dft = mat.dft_params
        try:
            dom = training_domain(results, basis, mat.grid.q.qpoints, reference_fcsets=refs, dft_params=dft,
                                    mode=args.widen_mode)
        except Exception as exc:  # keep the (expensive) force constants whatever happens here
            print(f"no training domain: {type(exc).__name__}: {exc}")
            dom = None
        if dom is not None:
            projection = dict(dom)
            projection["dft_params"] = dft
            summary = summary_dict(mat.name, results, dom, settings)
    else:
        print(f"supercell {sc.tolist()} differs from the material's {np.asarray(mat.supercell_matrix).tolist()}: "
              "force constants saved, not projected onto the basis")
    write_ensemble_h5(args.out, results, mat.name, mat.crystal, sc, mat.grid.q.qpoints, mat.grid.q.distance,
                      [list(map(str, x)) for x in mat.grid.q.labels], projection=projection, settings=settings)
    if summary is not None and args.summary:
        with open(args.summary, "w") as fh:
            json.dump(summary, fh, indent=1)
            fh.write("\n")
    rows = []
    for r in results:
        t = r.get("timings", {}).get("total_s")
        rows.append({"name": r["name"], "family": r.get("family"), "status": r["status"], "stable": bool(r.get("stable")),
                     "reason": r.get("reason", ""), "time_s": None if t is None else round(t, 1),
                     "min_frequency_thz": r.get("min_frequency_thz")})
    payload = {"material": mat.name, "out": args.out, "wall_s": round(wall, 1), "models": rows}
    lines = [f"{'model':<40s} {'status':<8s} {'stable':<6s} {'time/s':>7s}  reason"]
    for row in rows:
        lines.append(f"{row['name']:<40s} {row['status']:<8s} {str(row['stable']):<6s} "
                     f"{(row['time_s'] if row['time_s'] is not None else 0):>7.1f}  {row['reason']}")
    if summary is not None:
        payload["active_names"] = summary["active_names"]
        payload["domain"] = summary["domain"]
        payload["models_used"] = summary["models_used"]
        lines.append(f"{len(summary['models_used'])} stable members: {', '.join(summary['models_used'])}")
        if len(summary["models_used"]) < 2:
            lines.append("warning: fewer than 2 stable members: the domain has zero width (add models or --include-reference)")
        lines.append("training domain (eV/Å², " + ("[min − 25 % range, max + 150 % range]" if args.widen_mode == "signed"
                     else "150 % of the range away from zero, 25 % toward zero") + "):")
        for k, (nm, (lo, hi)) in enumerate(zip(summary["active_names"], summary["domain"])):
            lines.append(f"  FC{k} {nm:<22s} [{lo:+.4f}, {hi:+.4f}]")
        if "dft_check" in summary:
            dc = summary["dft_check"]
            payload["dft_check"] = dc
            if dc["all_inside"]:
                lines.append("DFT reference: inside the widened domain for all 8 parameters")
            else:
                outs = "; ".join(f"{o['param']} = {o['value']:+.4f} not in [{o['lo']:+.4f}, {o['hi']:+.4f}]" for o in dc["outside"])
                lines.append(f"DFT reference: OUTSIDE the widened domain for {len(dc['outside'])} of 8 parameters: {outs} "
                             "(use --include-reference FILE to add it to the ensemble)")
        if "alternative_widening" in summary and "dft_all_inside" in summary["alternative_widening"]:
            alt = summary["alternative_widening"]
            lines.append(f"  with --widen-mode {alt['mode']} the DFT reference would be "
                         + ("inside for all 8" if alt["dft_all_inside"] else f"outside for {len(alt['dft_outside'])} of 8: "
                            + ", ".join(o["param"] for o in alt["dft_outside"])))
    if args.plot:
        from ..ensemble.fcsets import read_ensemble_h5
        from ..ensemble.plots import save_figures

        figs = save_figures(read_ensemble_h5(args.out), args.plot, prefix=f"{mat.name.lower()}_")
        payload["figures"] = figs
        lines.append("figures: " + ", ".join(figs))
    lines.append(f"wrote {args.out} in {wall:.1f} s" + (f" and {args.summary}" if summary is not None and args.summary else ""))
    emit(args, payload, "\n".join(lines))
    return 0


def _results_from_h5(path, material):
    """Result dicts (as :func:`run_ensemble` returns them) from an ensemble HDF5 file."""
    import json as _json

    import numpy as np

    from ..ensemble.fcsets import read_ensemble_h5
    from ..errors import FcinvError

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
    settings = _json.loads(d["attrs"].get("settings", "{}") or "{}")
    return results, np.asarray(d["structure"]["supercell_matrix"], int), settings
