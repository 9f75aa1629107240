"""Shared argument helpers for the CLI subcommands.

Everything a command needs besides its own logic lives here: the argument parser class
(one-line errors), argument types with ranges (:func:`positive_int`, :func:`finite_float`,
…), the shared options (:func:`add_sigma_ei`, :func:`add_temperature`, :func:`add_noise_seed`,
:func:`add_seed`, :func:`add_json`; for the commands that take a trained model
:func:`add_model_args`, :func:`add_max_test`, :func:`add_n_samples`), output-path checks and
locks (:func:`check_output`, :func:`output_lock`) and :func:`emit`.
No command imports ``cli`` or another command.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import FcinvError


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line, ``fcinv <cmd>: error: …``, exit 2."""

    def error(self, message):  # noqa: D401  (argparse API)
        self.exit(2, f"{self.prog}: error: {message}\n")


# ----------------------------------------------------------------------------- argument types
def _number(text, kind, what, ok=None, bound: str | None = None):
    """``text`` as a ``kind`` (int or finite float); with ``ok``, a value failing ``ok(v)`` is
    refused as ``must be {bound or what}``."""
    try:
        v = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if kind is float and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    if ok is not None and not ok(v):
        raise argparse.ArgumentTypeError(f"must be {bound or what}, got {text!r}")
    return v


def positive_int(text) -> int:
    """An integer ≥ 1."""
    return _number(text, int, "a positive integer", lambda v: v >= 1, "a positive integer (≥ 1)")


def nonneg_int(text) -> int:
    """An integer ≥ 0."""
    return _number(text, int, "an integer ≥ 0", lambda v: v >= 0)


def finite_float(text) -> float:
    """Any finite number (no NaN or inf)."""
    return _number(text, float, "a finite number")


def positive_float(text) -> float:
    """A finite number > 0."""
    return _number(text, float, "a finite number > 0", lambda v: v > 0)


def nonneg_float(text) -> float:
    """A finite number ≥ 0."""
    return _number(text, float, "a finite number ≥ 0", lambda v: v >= 0)


def scheduler_address(text) -> str:
    """A Dask scheduler address (``tcp://host:port``, ``host:port``) or ``local:N`` (N ≥ 1 workers)."""
    s = str(text).strip()
    if not s:
        raise argparse.ArgumentTypeError("is empty: give a Dask scheduler address or local:N")
    scheme = s.split("://", 1)[0].lower() if "://" in s else None
    if scheme == "inproc":  # (an in-process address cannot be reached from a command; it gave a cryptic unpacking error)
        raise argparse.ArgumentTypeError(
            f"inproc:// addresses live inside one Python process: give tcp://host:port or local:N, got {text!r}"
        )
    if s == "local" or s.startswith("local:"):  # ("localhost:8786" is an address)
        _, _, n = s.partition(":")
        from ..validate import max_workers

        try:
            if not 1 <= int(n or "1") <= max_workers():
                raise ValueError
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"local:N needs a number of workers N from 1 to {max_workers()} (4 per core here), got {text!r}"
            ) from None
    return s


def thread_count(text) -> int:
    """A number of CPU threads or worker processes: 1 to :func:`~fcinv_widgets.validate.max_workers`."""
    from ..validate import max_workers

    return _number(text, int, "a whole number", lambda v: 1 <= v <= max_workers(), f"from 1 to {max_workers()} (4 per core here)")


def unit_float(text) -> float:
    """A finite number from 0 to 1."""
    return _number(text, float, "a number from 0 to 1", lambda v: 0 <= v <= 1)


# ----------------------------------------------------------------------------- shared options
def add_scheduler(p, what: str, metavar: str | None = None) -> None:
    """``--scheduler`` (:func:`scheduler_address`; default None: run in this process): ``what`` says
    what runs as Dask tasks, e.g. "the physics fits"."""
    p.add_argument(
        "--scheduler",
        type=scheduler_address,
        default=None,
        metavar=metavar,
        help=f"run {what} on Dask: a scheduler address, or local:N for a local cluster of N workers",
    )


#: ``--stiffness``'s values → ``stiffness=`` of the S(Q,E) fits (None: automatic)
STIFFNESS = {"auto": None, "free": True, "fixed": False}


#: ``--inactive``'s values → ``fit_inactive=`` of the planner's scan fit (None: automatic)
INACTIVE = {"auto": None, "fit": True, "held": False}


def add_stiffness(p, help: str) -> None:
    """``--stiffness auto|free|fixed`` (read with ``STIFFNESS[args.stiffness]``): whether the S(Q,E) fit
    first fits one factor for every reference force constant (``refine``, ``plan-scans --sqe``)."""
    p.add_argument("--stiffness", choices=tuple(STIFFNESS), default="auto", help=help)


def add_check_sigma(p, fit: str, what: str) -> None:
    """``--check-sigma N``, ``--seed``, ``--scheduler``: measure the coverage of ``fit``'s σ by N refits of
    data drawn from the fit's own model (``what``: how long it takes); checked by :func:`check_sigma_args`."""
    p.add_argument(
        "--check-sigma",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"{fit}: measure how often the reported σ covers the error for this crystal and these data — N "
        f"data sets simulated from the fit's own model and noise at its estimate, each refitted the same way ({what}); "
        "the coverage is reported",
    )
    p.add_argument("--seed", type=int, default=0, help="with --check-sigma: seed of the simulated draws (default 0)")
    add_scheduler(p, "--check-sigma's refits")


def check_sigma_args(args, applies: bool, where: str) -> None:
    """Refuse --check-sigma's N or --seed out of range, --seed/--scheduler without it, and --check-sigma
    where it does not apply (``applies`` False; ``where`` says where it does) — before any fit."""
    from ..analysis.refine import MAX_SIGMA_CHECK_DRAWS

    if args.check_sigma is not None and not 2 <= args.check_sigma <= MAX_SIGMA_CHECK_DRAWS:
        raise FcinvError(f"--check-sigma takes 2–{MAX_SIGMA_CHECK_DRAWS} draws, got {args.check_sigma}")
    if not 0 <= args.seed < 2**32:
        raise FcinvError(f"--seed must be a whole number from 0 to 2**32 − 1, got {args.seed}")
    if args.check_sigma is None and (args.scheduler is not None or args.seed != 0):
        raise FcinvError("--scheduler and --seed are --check-sigma's: give --check-sigma N")
    if args.check_sigma is not None and not applies:
        raise FcinvError(f"--check-sigma applies to {where}")


def add_sigma_ei(p, sigma_help: str = "Gaussian σ of every mode (meV, default 1)") -> None:
    """``--sigma`` (meV) and ``--ei`` (meV, ARCS resolution), mutually exclusive; read with :func:`sigma_of`."""
    p.add_argument("--sigma", type=positive_float, default=None, help=sigma_help)
    p.add_argument(
        "--ei",
        type=positive_float,
        default=None,
        help="use the ARCS energy resolution at this incident energy (meV) instead of --sigma; "
        "must exceed the grid's largest energy",
    )


def sigma_of(args, default: float = 1.0) -> float:
    """The constant Gaussian σ (meV) of ``--sigma``; refuses ``--sigma`` together with ``--ei``."""
    sigma = getattr(args, "sigma", None)
    if sigma is not None and getattr(args, "ei", None) is not None:
        raise FcinvError("give either --sigma (a constant resolution) or --ei (the ARCS resolution), not both")
    return default if sigma is None else float(sigma)


def add_temperature(p, default: float | None = 5.0, help: str | None = None) -> None:
    """``--temperature`` (K, ≥ 0)."""
    p.add_argument(
        "--temperature",
        type=nonneg_float,
        default=default,
        metavar="K",
        help=help or f"sample temperature (K, default {default:g})",
    )


def noise_arg(text):
    """``B,P``: a flat background B ≥ 0 and Poisson counts P > 0 (both relative to the peak)."""
    try:
        b, pc = (float(x) for x in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'B,P' (two numbers), got {text!r}") from None
    if not (math.isfinite(b) and b >= 0 and math.isfinite(pc) and pc > 0):
        raise argparse.ArgumentTypeError(f"needs a background B ≥ 0 and counts P > 0, got {text!r}")
    return b, pc


def add_noise_seed(
    p, noise_help: str = "B,P: add a flat background B (fraction of the peak) and Poisson counts P at the peak"
) -> None:
    """``--noise B,P`` (parsed to a (B, P) tuple) and ``--seed``."""
    p.add_argument("--noise", type=noise_arg, default=None, help=noise_help)
    add_seed(p, "random seed (default 0)")


def add_seed(p, help: str | None = None) -> None:
    """``--seed`` (an integer ≥ 0, default 0)."""
    p.add_argument("--seed", type=nonneg_int, default=0, help=help)


def add_model_args(p, model_help: str, dataset: bool = False) -> None:
    """``--model`` (required: a checkpoint directory or shipped name, as ``model_help`` says) and,
    with ``dataset``, ``--dataset`` (required: an fcinv dataset HDF5 file)."""
    p.add_argument("--model", required=True, help=model_help)
    if dataset:
        p.add_argument("--dataset", required=True)


def add_max_test(p, help: str | None = None) -> None:
    """``--max-test N``: use only the first N test spectra (default: all)."""
    p.add_argument("--max-test", type=positive_int, default=None, help=help)


def add_n_samples(p, help: str | None = None) -> None:
    """``--n-samples``: latent samples per spectrum of a VAE (≥ 1, default 100)."""
    p.add_argument("--n-samples", type=positive_int, default=100, help=help)


def add_json(p, help: str | None = None, progress: str | bool = False) -> None:
    """``--json`` (print JSON), after ``--no-progress`` when ``progress`` is given (True, or that
    option's help text): a command's last options."""
    if progress:
        p.add_argument("--no-progress", action="store_true", help=None if progress is True else progress)
    p.add_argument("--json", action="store_true", help=help)


# ----------------------------------------------------------------------------- output paths
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def check_output(path, flag: str = "--out", kind: str = "file", fmt: str | None = None) -> Path:
    """Refuse an output path that cannot or must not be written, before any work is done.

    ``kind`` is ``"file"`` or ``"dir"``. A file's folder must exist and be writable; the path
    must not be a folder. With ``fmt`` (an fcinv HDF5 format such as ``"fcinv-spectrum"``), an
    existing file is overwritten only if it is an HDF5 file of that format. A ``"dir"`` may
    exist (as a folder) or be created in an existing, writable parent.
    """
    p = Path(path)
    if str(path) == "":
        raise FcinvError(f"{flag} is empty")
    if kind == "dir":
        if p.exists() and not p.is_dir():
            raise FcinvError(f"{flag} {path}: exists and is not a folder")
        parent = p if p.is_dir() else p.parent
    else:
        if p.is_dir():
            raise FcinvError(f"{flag} {path}: is a folder, not a file")
        if p.exists() and not p.is_file():
            raise FcinvError(f"{flag} {path}: exists and is not a regular file")
        parent = p.parent
    parent = parent if str(parent) else Path(".")
    if not parent.is_dir():
        raise FcinvError(f"{flag} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise FcinvError(f"{flag} {path}: no permission to write there")
    if kind == "file" and fmt == FIGURE:
        _check_figure_suffix(p, flag)
    elif kind == "file" and fmt and p.is_file() and p.stat().st_size > 0:
        if fmt == JSON:
            found = "JSON" if _is_json_text(p) else None
            what = "not a JSON file"
        else:
            found = _hdf5_format(p)
            what = (
                ("a damaged HDF5 file (truncated?)" if _has_hdf5_magic(p) else "not an HDF5 file")
                if found is None
                else f"an HDF5 file of format {found!r}"
            )
        if found != fmt:
            raise FcinvError(
                f"{flag} {path}: exists and is {what}, not {fmt!r}; will not overwrite it (remove it or choose another name)"
            )
    return p


#: ``fmt`` of :func:`check_output` for a figure (its suffix must be one matplotlib writes) and for a
#: JSON file (an existing file is overwritten only when it is a JSON text — not a checkpoint or dataset)
FIGURE, JSON = "figure", "JSON"


def add_ship(p, what: str) -> None:
    """``--ship``: the explicit consent to write ``what`` into the installed package's shipped data
    (a shipped model's folder), which every user of the installation reads."""
    p.add_argument(
        "--ship",
        action="store_true",
        help=f"allow writing {what} into the installed package's shipped data (a shipped model's folder); "
        "without it such a target is refused",
    )


def shipped_data_root() -> Path:
    """The folder of the installed package's shipped data (``fcinv_widgets/data``), resolved."""
    from ..materials import data_path

    return data_path().resolve()


def check_not_shipped(path, flag: str, ship: bool | None = None) -> Path:
    """Refuse a target inside the installed package's shipped data unless ``ship`` (``--ship``;
    ``None``: the command has no ``--ship``, and the message does not offer it).

    The shipped models' ``metrics.json``, ``ood.json``, ``trust.json`` and latent maps are what
    every user of the installation reads; a command given ``--model ge-vae`` resolves to that
    folder, so writing "beside the model" would replace them without a word.
    """
    p = Path(path)
    root = shipped_data_root()
    try:
        inside = p.resolve().is_relative_to(root)
    except OSError:  # an unresolvable path is judged by the other output checks
        return p
    if inside and not ship:
        raise FcinvError(
            f"{flag} {path}: is inside the installed package's shipped data ({root}), which every user of this "
            "installation reads; write it elsewhere"
            + (" (or pass --ship to replace the shipped file on purpose)" if ship is not None else "")
        )
    return p


def _check_figure_suffix(p: Path, flag: str) -> None:
    """A figure's file type is its suffix: one matplotlib cannot write was a traceback after all the
    work (``--plot x.txt``); no suffix is PNG, as matplotlib does."""
    if not p.suffix:
        return
    from matplotlib.backend_bases import FigureCanvasBase

    types = FigureCanvasBase.get_supported_filetypes()
    if p.suffix[1:].lower() not in types:
        raise FcinvError(f"{flag} {p}: matplotlib cannot write a {p.suffix!r} figure (use one of {', '.join(sorted(types))})")


def _is_json_text(path: Path) -> bool:
    """Whether a file starts (after white space or a BOM) as a JSON object or array does."""
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] in (b"{", b"[")


def _has_hdf5_magic(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == _HDF5_MAGIC


def _hdf5_format(path: Path) -> str | None:
    """The ``format`` attribute of an HDF5 file ('' when it has none), or None if it is not HDF5
    (or one h5py cannot open)."""
    if not _has_hdf5_magic(path):
        return None
    import h5py

    try:
        with h5py.File(path, "r", locking=False) as f:
            v = f.attrs.get("format", "")
    except OSError:
        return None
    return v.decode() if isinstance(v, bytes) else str(v)


@contextmanager
def output_lock(path, flag: str = "--out"):
    """Hold an exclusive lock on ``path`` (a hidden ``.<name>.lock`` beside it) while writing it.

    A second process writing the same output is refused at once with "in use by another
    process" instead of both corrupting it.
    """
    import fcntl

    p = Path(path)
    lock = p.parent / f".{p.name}.lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise FcinvError(f"{flag} {path}: cannot write in {p.parent} ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FcinvError(f"{flag} {path}: in use by another process (lock file {lock})") from None
        try:
            yield p
        finally:
            try:
                os.unlink(lock)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def warn_if_unstable(mat, source, consequence: str) -> None:
    """One ``warning:`` line on stderr when ``mat``'s reference (a user's given force constants) has a
    mode below −0.1 meV on its q-path or stability mesh — what follows from them (``consequence``)
    rests on a set with imaginary modes."""
    from ..forward import UNSTABLE_BELOW_MEV
    from ..scans import check_stable

    lo = check_stable(mat, mat.reference_params, allow=True)
    if lo < UNSTABLE_BELOW_MEV:
        print(
            f"warning: the force constants in {source} are dynamically unstable (lowest mode {lo:.2f} meV on the q-path or stability mesh): {consequence}",
            file=sys.stderr,
        )


def parse_vector(text: str, name: str) -> np.ndarray:
    """'1,1,0' → (3,) array (a direction such as --u/--v)."""
    try:
        v = np.array([float(x) for x in str(text).split(",")])
    except ValueError:
        raise FcinvError(f"{name} must be three comma-separated numbers, got {text!r}") from None
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise FcinvError(f"{name} must be three finite numbers, got {text!r}")
    return v


#: the largest |coordinate| of a --qpoints point (r.l.u.): q and q + G have one set of frequencies,
#: and far out the phases exp(2πi q·R) lose the digits that hold them (a probe: q = 1e12 gave
#: acoustic modes of 1e-3 THz at Γ, 1e17 gave 2.9 THz)
MAX_QPOINT_RLU = 1e4


def parse_qpoints(text: str, crystal=None) -> np.ndarray:
    """'0 0 0, 0.5 0 0.5' or 'G, X, L' (labels of ``crystal``'s Brillouin zone) → (n, 3) array,
    fractional coordinates of the reciprocal lattice of the cell used (as given, or as reduced by
    --primitive)."""
    pts = []
    labels = None
    for k, chunk in enumerate(str(text).split(",")):
        parts = chunk.split()
        try:
            vals = [float(x) for x in parts]
        except ValueError:
            if len(parts) == 1 and crystal is not None:
                from ..structure import gamma_alias_free, high_symmetry_points, label_key

                if labels is None:
                    labels = high_symmetry_points(crystal)
                key = label_key(parts[0])  # "H_2", "h_2" or "H₂" as the plots show it
                own_g = gamma_alias_free(labels)
                if key == "G" and own_g:
                    g = " ".join(f"{x:.4g}" for x in labels["G"])
                    raise FcinvError(
                        f"q-point {k + 1}: 'G' is ambiguous for this crystal: SeeK-path names a point G at ({g}) "
                        "here; write Γ or GAMMA for the zone centre, or G's coordinates as numbers"
                    ) from None
                if key not in labels:
                    shown = [x for x in labels if x != "GAMMA" and (own_g or x != "G")]
                    raise FcinvError(
                        f"q-point {k + 1}: no label {parts[0]!r} for this cell; known: " + ", ".join(shown)
                    ) from None
                pts.append(list(labels[key]))
                continue
            raise FcinvError(
                f"q-point {k + 1} ({chunk.strip()!r}) is not three numbers nor a label; "
                'use e.g. --qpoints "0 0 0, 0.5 0 0.5" or "G, X, L"'
            ) from None
        if len(vals) != 3 or not np.all(np.isfinite(vals)):
            raise FcinvError(
                f"q-point {k + 1} ({chunk.strip()!r}) must be three finite numbers: coordinates separated by spaces, "
                'points by commas, e.g. --qpoints "0 0 0, 0.5 0 0.5"'
            )
        if np.abs(vals).max() > MAX_QPOINT_RLU:  # the Fourier phases lose their digits: 1e17 gave 2.9 THz at Γ
            raise FcinvError(
                f"q-point {k + 1} ({chunk.strip()!r}) lies beyond ±{MAX_QPOINT_RLU:g} r.l.u.: reduce it into the first zones"
            )
        pts.append(vals)
    if not pts:
        raise FcinvError("no q-points given")
    return np.array(pts)


def parse_params(text: str, n: int, every: bool = False) -> np.ndarray:
    """'v1,…,vn' → (n,) array (eV/Å²): the top-n parameters, or (``every``) all n basis parameters."""
    try:
        vals = np.array([float(x) for x in str(text).replace(" ", "").split(",") if x != ""])
    except ValueError:
        raise FcinvError(f"--params must be {n} comma-separated numbers (eV/Å²), got {text!r}") from None
    if vals.shape != (n,):
        what = (
            f"every one of the structure's {n} basis parameters in eV/Å², in the order `fcinv basis --structure` lists "
            "(no force constants were given to start from)"
            if every
            else f"the top-{n} parameters in eV/Å²"
        )
        raise FcinvError(f"--params needs {n} values ({what}), got {len(vals)}")
    if not np.all(np.isfinite(vals)):
        raise FcinvError("--params contains NaN or inf")
    return vals


def add_material_args(p, files: bool = True) -> None:
    p.add_argument("--material", default=None, help="preset: Ge or Nb")
    if files:
        p.add_argument(
            "--structure",
            help="structure file (POSCAR, CIF, …); its cell is the cell used, as given "
            "(a conventional cell stays conventional), unless --primitive reduces it",
        )
        p.add_argument("--force-constants", help="phonopy FORCE_CONSTANTS (full or compact), .hdf5 or phonopy.yaml")
        p.add_argument(
            "--supercell",
            nargs="+",
            metavar="N",
            help="supercell of the force constants in units of the structure file's cell (phonopy's DIM, also "
            "with --primitive): 3 integers (diagonal) or 9 "
            '(a 3×3 matrix, rows), also as one string "a b c, d e f, g h i" '
            "(default: a phonopy.yaml's own, else the diagonal supercell the force constants fit, 4×4×4 "
            "without force constants)",
        )
        p.add_argument(
            "--primitive",
            default=None,
            metavar="auto|P|F|I|A|C|R|MATRIX",
            help="reduce the structure to a primitive cell first: auto (from its symmetry), a centring "
            "letter, or 9 numbers (phonopy's primitive matrix); default: the cell as given. Force constants "
            "stay those of phonopy's supercell of the structure file's cell; they are re-ordered for the primitive cell",
        )
        p.add_argument(
            "--mass",
            action="append",
            default=[],
            metavar="X=AMU",
            help="atomic mass of species X in amu (default: phonopy's table), e.g. --mass Ge=72.63; repeatable",
        )
        p.add_argument(
            "--e-max",
            type=float,
            default=None,
            metavar="MEV",
            help="top of a --structure material's energy grid (meV, 0.5 meV bins); default 15%% above the "
            "highest mode of its force constants (or --params), rounded up to 10 meV; 70 without either (a "
            "preset's grid is fixed)",
        )
        p.add_argument(
            "--b-coh",
            action="append",
            default=[],
            metavar="X=FM",
            help="coherent scattering length of species X in fm (default: the periodictable package's "
            "table), e.g. --b-coh O=5.803; repeatable",
        )


def parse_supercell(values) -> np.ndarray:
    """--supercell: 3 integers (diagonal), 9 integers (rows of a 3×3 matrix), or one string
    "a b c, d e f, g h i" → (3, 3) int matrix with a positive determinant (:func:`validate.supercell_matrix`)."""
    from ..validate import supercell_matrix

    if isinstance(values, str):
        values = [values]
    tokens = " ".join(str(v) for v in values).replace(",", " ").replace(";", " ").split()
    try:
        nums = [float(t) for t in tokens]
    except ValueError:
        raise FcinvError(f"--supercell must be 3 or 9 integers, got {' '.join(map(str, values))!r}") from None
    return supercell_matrix(nums, "--supercell")


def parse_species_values(items, option: str) -> dict:
    """["Ge=72.63", "O=5.8,Si=4.1"] → {"Ge": 72.63, …} for --mass / --b-coh (finite numbers)."""
    out = {}
    for item in items or []:
        for part in str(item).split(","):
            if not part.strip():
                continue
            sym, sep, val = part.partition("=")
            try:
                x = float(val)
            except ValueError:
                x = float("nan")
            if not sep or not sym.strip() or not np.isfinite(x):
                raise FcinvError(f"{option} takes SYMBOL=NUMBER (e.g. {option} Ge=72.63), got {part.strip()!r}")
            out[sym.strip()] = x
    return out


def _species_b_coh(args, crystal) -> dict:
    from ..validate import MAX_B_COH_FM

    b = parse_species_values(getattr(args, "b_coh", None), "--b-coh")
    unknown = sorted(set(b) - set(crystal.symbols))
    if unknown:
        raise FcinvError(
            f"--b-coh {unknown[0]}=…: {unknown[0]!r} is not in the structure ({', '.join(sorted(set(crystal.symbols)))})"
        )
    big = [k for k, v in b.items() if abs(v) > MAX_B_COH_FM]
    if big:
        raise FcinvError(f"--b-coh {big[0]}={b[big[0]]:g}: a coherent scattering length must be |b| ≤ {MAX_B_COH_FM:g} fm")
    if b and set(b) >= set(crystal.symbols) and not any(b.values()):
        raise FcinvError("--b-coh gives every element 0 fm: there is no coherent one-phonon scattering")
    return b


def check_masses(masses: dict) -> dict:
    """--mass values within :data:`~fcinv_widgets.validate.MASS_RANGE_AMU` (amu), else one line."""
    from ..validate import MASS_RANGE_AMU

    lo, hi = MASS_RANGE_AMU
    bad = [k for k, v in masses.items() if not lo <= v <= hi]
    if bad:
        raise FcinvError(f"--mass {bad[0]}={masses[bad[0]]:g}: masses must be {lo:g}–{hi:g} amu")
    return masses


#: the largest --e-max (meV): the ARCS range the resolution model covers
MAX_E_MAX_MEV = 1500.0


def warn_energy_cut(mat, params) -> None:
    """Warn (one line) when the highest mode of ``params`` (eV/Å², all basis parameters) on the
    material's path lies above its energy grid."""
    import warnings

    from ..errors import FcinvWarning
    from ..materials import highest_mode_mev

    top = highest_mode_mev(mat.basis, params, mat.grid)
    e_max = mat.grid.e.e_max
    if np.isfinite(top) and top > e_max:
        hint = (
            "give a larger --e-max"
            if mat.name == "custom"
            else f"the {mat.name} preset's grid is fixed; these force constants are far from the crystal's"
        )
        warnings.warn(
            FcinvWarning(
                f"the highest mode ({top:.1f} meV) is above the energy grid's top ({e_max:g} meV): the spectrum "
                f"is cut there; {hint}"
            ),
            stacklevel=2,
        )


def load_material(args, reference: str | None = None):
    """A Material from --material (at ``reference``, default the preset's own: "measured"), or from
    --structure/--force-constants (a custom material)."""
    from ..materials import custom_material, get_material

    structure = getattr(args, "structure", None)
    fcfile = getattr(args, "force_constants", None)
    e_max = getattr(args, "e_max", None)
    if e_max is not None:
        if not structure or args.material:
            raise FcinvError(
                "--e-max applies to a --structure material without --material; a preset's energy grid is fixed "
                "(its models were trained on it)"
            )
        if not (np.isfinite(e_max) and 5.0 <= e_max <= MAX_E_MAX_MEV):
            raise FcinvError(f"--e-max must be between 5 and {MAX_E_MAX_MEV:g} meV, got {e_max!r}")
    if structure:
        from ..fcio import is_phonopy_yaml, read_force_constants
        from ..structure import read_structure

        masses = parse_species_values(getattr(args, "mass", None), "--mass")
        if any(m <= 0 for m in masses.values()):
            raise FcinvError("--mass values must be positive (amu)")
        given = read_structure(structure).with_masses(check_masses(masses))
        cr, pmat = given, None
        if getattr(args, "primitive", None):
            from ..structure import to_primitive

            prim = args.primitive
            nums = prim.replace(",", " ").split()
            if len(nums) == 9:
                try:
                    prim = np.array([float(x) for x in nums]).reshape(3, 3)
                except ValueError:
                    raise FcinvError(f"--primitive: {args.primitive!r} is not 9 numbers") from None
            cr, pmat = to_primitive(given, prim)
        args.b_coh_fm = _species_b_coh(args, cr)
        fc, file_smat = None, None
        if fcfile and is_phonopy_yaml(fcfile):  # a phonopy.yaml knows its cell and supercell
            from ..materials import phonopy_yaml_for

            fc, file_smat = phonopy_yaml_for(fcfile, given)
        elif fcfile:
            from ..materials import warn_cif_frame

            fc = read_force_constants(fcfile)
            warn_cif_frame(structure, given, fcfile)
        fc = _check_fc_size(fc, fcfile) if fc is not None else None
        # --supercell is in units of the structure file's cell (phonopy's DIM), as are the force constants
        if args.supercell:
            smat = parse_supercell(args.supercell)
        elif file_smat is not None:
            smat = file_smat
        elif fc is not None:
            from ..materials import infer_supercell

            smat = infer_supercell(given, fc)
        else:
            smat = np.diag([4, 4, 4])
        if pmat is not None:
            s_used = np.linalg.solve(pmat, smat)
            if np.abs(s_used - np.rint(s_used)).max() > 1e-6:
                raise FcinvError(
                    f"the supercell {smat.tolist()} of the structure file's cell is not a whole number of the "
                    f"primitive cells chosen by --primitive {args.primitive}"
                )
            if fc is not None:
                from ..fcio import unitcell_fc_to_cell_used

                fc = unitcell_fc_to_cell_used(fc, given, smat, pmat, cr, np.rint(s_used).astype(int), where=str(fcfile))
            smat = np.rint(s_used).astype(int)
        if args.material:
            base = get_material(args.material)
            from ..materials import Material

            if sorted(set(base.crystal.symbols)) != sorted(set(cr.symbols)):
                raise FcinvError(
                    f"--material {args.material} is {'/'.join(sorted(set(base.crystal.symbols)))}, but "
                    f"--structure {structure} holds {'/'.join(sorted(set(cr.symbols)))}: drop --material "
                    "or give a matching structure"
                )

            mat = Material(base.name, cr, smat, base.grid, base.conventional_a)
            if fc is not None:
                from ..materials import reduce_given

                params, resid = reduce_given(mat.basis, fc, str(fcfile))
                mat = mat.with_reference(params, f"{fcfile} (projection residual {resid['relative']:.2e})", "given")
            return mat, fc
        return custom_material(cr, fc, smat, e_max=e_max, source=str(fcfile) if fcfile else None), fc
    if not args.material:
        raise FcinvError("give --material (Ge, Nb) or --structure (and --force-constants)")
    for opt in ("supercell", "primitive"):
        if getattr(args, opt, None):
            raise FcinvError(f"--{opt} applies to a --structure file; the preset {args.material} has its own cell and supercell")
    mat = get_material(args.material, reference)
    masses = parse_species_values(getattr(args, "mass", None), "--mass")
    if masses:
        if any(m <= 0 for m in masses.values()):
            raise FcinvError("--mass values must be positive (amu)")
        check_masses(masses)
        from ..materials import Material

        mat = Material(mat.name, mat.crystal.with_masses(masses), mat.supercell_matrix, mat.grid, mat.conventional_a)
    args.b_coh_fm = _species_b_coh(args, mat.crystal)
    fc = None
    if fcfile:
        from ..fcio import check_fc_shape, read_force_constants
        from ..materials import reduce_given

        fc = _check_fc_size(read_force_constants(fcfile), fcfile)
        b = mat.basis
        hint = f"they are not the {mat.name} preset's: give the structure they were computed on with --structure"
        check_fc_shape(fc, b.n_prim, b.n_super, f"{fcfile}: the force constants", hint)
        reduce_given(b, fc, str(fcfile))  # refuses another structure's or supercell's, once for every command
    return mat, fc


def on_data_grid(mat, args, energy):
    """A --structure crystal on the data's energy grid ``energy`` (an ``EnergyGrid``, or None when the
    data do not say): its own grid is sized to the start values' highest mode, which need not be the
    measurement's. Presets (a fixed grid), an explicit --e-max and a grid already equal: unchanged."""
    if mat.name != "custom" or getattr(args, "e_max", None) is not None or energy is None or energy == mat.grid.e:
        return mat
    return mat.with_energy_grid(energy)


#: force constants above this (eV/Å²) are no crystal's (Ge's largest block is ~15 eV/Å², diamond's < 100)
MAX_FC_EV_A2 = 1e3


def _check_fc_size(fc: np.ndarray, where) -> np.ndarray:
    """Refuse non-finite or absurdly large force constants (units mistaken, corrupt file)."""
    fc = np.asarray(fc, float)
    if not np.all(np.isfinite(fc)):
        raise FcinvError(f"{where}: force constants contain NaN or inf")
    big = float(np.abs(fc).max()) if fc.size else 0.0
    if big > MAX_FC_EV_A2:
        raise FcinvError(
            f"{where}: force constants up to {big:.3g} eV/Å², more than any crystal's "
            f"({MAX_FC_EV_A2:g}); wrong units (eV/Å² expected) or a damaged file"
        )
    return fc


def emit(args: argparse.Namespace, payload: dict, text: str | None = None) -> None:
    """Print ``payload`` as JSON when ``--json`` was given, else ``text`` (or a summary).

    The JSON is strict: NaN and ±inf become ``null`` (never ``NaN``/``-Infinity``).
    """
    if getattr(args, "json", False):
        sys.stdout.write(json_dumps(payload) + "\n")
    else:
        print(text if text is not None else json_dumps(payload, indent=2))


def json_dumps(payload, indent=None) -> str:
    """Strict JSON of ``payload`` (numpy arrays/scalars allowed; non-finite floats → null)."""
    return json.dumps(_finite(payload), indent=indent, allow_nan=False, default=_json_default)


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return _finite(obj.item())
    return obj


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def noise_cells(text: str, flag: str) -> list:
    """``'B,P;B,P…'`` → [(B, P), …]: noise cells of a flat background B ≥ 0 and Poisson counts
    P > 0 (both relative to the peak); bad input is one :class:`FcinvError` naming ``flag``."""
    import math

    from ..errors import FcinvError

    out = []
    for chunk in str(text).split(";"):
        if not chunk.strip():
            continue
        try:
            b, p = (float(x) for x in chunk.split(","))
        except ValueError:
            raise FcinvError(f"{flag} must be 'B,P;B,P…' (background, counts), got {chunk!r}") from None
        if not (math.isfinite(b) and math.isfinite(p) and b >= 0 and p > 0):
            raise FcinvError(f"{flag}: B must be ≥ 0 and P > 0, got {chunk!r}")
        out.append((b, p))
    if not out:
        raise FcinvError(f"{flag} is empty: give at least one 'B,P'")
    return out


def check_model_domain(model, info: dict, allow_other: bool = False, override: str = "") -> None:
    """Refuse (GridMismatchError) a dataset (``info``: its attributes) of another material, or made
    at another reference or over another domain than ``model`` was trained on — unless
    ``allow_other``; ``override`` names the flag that allows it, for the message."""
    from ..errors import GridMismatchError

    if info["material"].lower() != model.material.lower():
        raise GridMismatchError(f"the model is for {model.material}, the dataset for {info['material']}")
    m_ref, d_ref = model.config.get("reference", "umlff"), info.get("reference", "umlff")
    same_domain = np.allclose(np.asarray(info["domain"], float), np.asarray(model.config.get("domain", info["domain"]), float))
    m_vec, d_vec = model.config.get("reference_params"), info.get("reference_params")
    if m_vec is not None and d_vec is not None and np.shape(m_vec) != np.shape(d_vec):
        raise GridMismatchError(
            f"the dataset's reference holds {np.size(d_vec)} force-constant parameters, the model's {np.size(m_vec)}"
        )
    if m_ref == d_ref and m_vec is not None and d_vec is not None and not np.allclose(m_vec, d_vec, rtol=1e-9, atol=1e-12):
        d_ref = f"{d_ref} (refitted since: other values)"  # the named reference was refitted since the training
    if (m_ref != d_ref or not same_domain) and not allow_other:
        raise GridMismatchError(
            f"the model was trained at reference {m_ref!r} on its own domain, the dataset was made at "
            f"reference {d_ref!r}{'' if same_domain else ' over another domain'}" + (f"; {override}" if override else "")
        )
