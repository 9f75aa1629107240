"""``fcinv ensemble``: force-constant sets from an ensemble of uMLFFs, and the training domain.

fcinv ensemble --list [--matgl-path DIR] [--mace FILE|NAME]
fcinv ensemble --material Ge [--models NAME ...] [--matgl-path DIR ...] [--mace FILE|NAME ...]
               [--scheduler ADDR | --serial] [--relax] [--include-reference FILE]
               --out ge_ensemble.h5 [--summary ge.json] [--json]
"""

from __future__ import annotations

import os

from ._common import JSON, add_json, emit, positive_float, positive_int, scheduler_address, thread_count


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ensemble",
        help="uMLFF ensemble: force constants per model, stability, training domain",
        description="Run every available uMLFF (CHGNet, SevenNet, matgl, MACE) through phonopy finite "
        "differences, project onto the symmetry basis and derive the widened training domain.",
    )
    p.add_argument("--list", action="store_true", help="list the registry (available and skipped models) and exit")
    p.add_argument("--material", default=None, help="preset: Ge or Nb")
    p.add_argument("--models", nargs="+", default=None, metavar="NAME", help="only these registry names (default: all available)")
    p.add_argument(
        "--matgl-path",
        action="append",
        default=[],
        metavar="DIR",
        help="a matgl model folder (with model.json) or a folder of them; repeatable",
    )
    p.add_argument(
        "--matgl-name",
        action="append",
        default=[],
        metavar="NAME",
        help="a matgl pretrained model by name (needs the network); repeatable",
    )
    p.add_argument(
        "--mace",
        action="append",
        default=[],
        metavar="FILE|NAME",
        help="a MACE .model file or a mace_mp foundation name; repeatable (a file needs --trust-mace-file)",
    )
    p.add_argument(
        "--trust-mace-file",
        action="store_true",
        help="load the --mace model files given: a .model file is a Python pickle and can run any code "
        "when loaded, so pass this only for files you trust (without it they are refused)",
    )
    p.add_argument("--relax", action="store_true", help="relax each model's cubic lattice constant first")
    p.add_argument("--displacement", type=positive_float, default=0.01, help="finite displacement, Å (default 0.01)")
    p.add_argument(
        "--supercell", type=int, nargs="+", default=None, metavar="N", help="supercell: 3 or 9 integers (default: the material's)"
    )
    p.add_argument(
        "--min-length",
        type=positive_float,
        default=None,
        metavar="Å",
        help="choose a diagonal supercell with every lattice vector at least this long",
    )
    p.add_argument("--mesh", type=positive_int, nargs=3, default=[8, 8, 8], help="stability mesh (default 8 8 8)")
    p.add_argument(
        "--scheduler",
        type=scheduler_address,
        default=None,
        metavar="ADDR",
        help="Dask scheduler address (default: a LocalCluster)",
    )
    p.add_argument("--workers", type=thread_count, default=2, help="LocalCluster worker processes (default 2, 1 thread each)")
    p.add_argument("--serial", action="store_true", help="run the models one by one in this process (no Dask)")
    p.add_argument(
        "--from",
        dest="from_h5",
        default=None,
        metavar="H5",
        help="do not run the models: re-project the force constants stored in an ensemble HDF5 file "
        "(e.g. with another --widen-mode or --include-reference)",
    )
    p.add_argument(
        "--include-reference",
        action="append",
        default=[],
        metavar="FILE",
        help="add a phonopy FORCE_CONSTANTS file (same supercell) to the ensemble as a stable member; repeatable",
    )
    p.add_argument(
        "--widen-mode",
        choices=["signed", "magnitude"],
        default="signed",
        help="signed (default): [min − 25 %% range, max + 150 %% range]; magnitude: the 150 %% on the side "
        "away from zero (see docs/ensemble.md)",
    )
    p.add_argument("--out", default=None, help="output HDF5 file")
    p.add_argument("--summary", default=None, metavar="JSON", help="also write the ensemble summary JSON (shipped format)")
    p.add_argument(
        "--plot", default=None, metavar="DIR", help="write PNG figures (dispersions, parameter ranges, sensitivity) into DIR"
    )
    add_json(p, "print JSON", progress="no progress bar")
    p.set_defaults(func=run, outputs=[("out", "file", "fcinv-ensemble"), ("summary", "file", JSON), ("plot", "dir", None)])


def _specs(args):
    from ..ensemble.calculators import available_models

    return available_models(
        matgl_paths=args.matgl_path, matgl_names=args.matgl_name, mace_models=args.mace, trust_mace_files=args.trust_mace_file
    )


def run(args) -> int:
    from ..errors import FcinvError

    for d in args.matgl_path:
        if not os.path.exists(os.path.expanduser(d)):
            raise FcinvError(f"--matgl-path {d!r}: no such folder")
    specs = _specs(args)
    untrusted = [
        s.source
        for s in specs
        if s.family == "mace" and s.available and not s.extra.get("by_name") and not s.extra.get("trusted")
    ]
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
    from ..ensemble.workflow import run_material

    payload, text = run_material(
        args.material,
        specs,
        args.out,
        models=args.models,
        supercell=args.supercell,
        min_length=args.min_length,
        relax=args.relax,
        displacement=args.displacement,
        mesh=args.mesh,
        serial=args.serial,
        scheduler=args.scheduler,
        workers=args.workers,
        from_h5=args.from_h5,
        include_reference=args.include_reference,
        widen_mode=args.widen_mode,
        summary_path=args.summary,
        plot=args.plot,
        progress=not args.no_progress and not args.json,
    )
    ran = [m for m in payload["models"] if m["status"] != "skipped"]
    if ran and not any(m["status"] == "ok" for m in ran):  # exit 0 with no member was a silent failure
        first = next((m["reason"] for m in ran if m.get("reason")), "")
        raise FcinvError(f"every model failed ({len(ran)}; recorded in {args.out}): {first}"[:300])
    emit(args, payload, text)
    return 0
