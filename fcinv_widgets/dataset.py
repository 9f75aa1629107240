"""Training datasets: uniform samples of the active FC parameters → stable I(q, E) images → HDF5.

The inactive parameters (all but the top 8) sit at the material's reference (``reference=``:
"measured", "dft" or "umlff"; :func:`~fcinv_widgets.materials.get_material`), or, with
``nuisance=s > 0``, are drawn per spectrum from a Gaussian around it with standard deviation
s × :attr:`Material.nuisance_sigma` (the measured fit's σ of each parameter). A real crystal's
far-shell FCs are not the reference's: a model trained with fixed inactive parameters projects
every spectrum onto an 8-parameter family and is biased when they differ (docs/results.md "inactive
parameters"); trained over the nuisance it learns the active FCs marginalised over them.

Reproducibility: candidates are drawn in chunks; chunk ``k`` of split ``s`` draws
``candidates`` uniform samples from its own generator ``default_rng([seed, s, k])``,
keeps the dynamically stable ones in draw order, and the split is the concatenation of
chunks 0, 1, 2, … cut at N. The result does not depend on how chunks are scheduled
(in-process or on Dask workers), nor on interruptions: a run stopped with Ctrl-C (or
``kill -INT``) finishes the chunk it is writing, records its progress and closes the
file; running the same command again continues from there.

HDF5 layout (``format = "fcinv-dataset"``, version 1)::

    attrs: format, version, material, seed, created, versions (JSON), resolution (JSON),
           candidates_per_chunk, domain_source, reference_source, reference (its name: measured | dft | umlff)
    /grid  the (q, E) grid (:meth:`SpectrumGrid.to_hdf5`): q_points (nq,3), q_conventional (nq,3),
           q_distance (nq,), energy_centers_mev (nE,); attrs: grid, labels, breaks (JSON)
    /param_names (8,) str   /domain (8,2) eV/Å²   /active (8,) int   /reference_params (P,) eV/Å²
    /<split>/spectra (N,nq,nE) float32, chunks (64,nq,nE), gzip(1)+shuffle, min-max scaled to [0,1]
    /<split>/params  (N,8) float64, eV/Å²
    /<split>/inactive_params (N,P−8) float64, eV/Å² (only with nuisance > 0; the order of /inactive)
    /inactive (P−8,) int (only with nuisance > 0); attrs nuisance (s), nuisance_source
    /<split> attrs: n_target, n_done, next_chunk, n_candidates, n_stable
with <split> in {train, test}.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .errors import FcinvError
from .validate import format_version, json_loads

SPLITS = {"train": 0, "test": 1}


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("fcinv-widgets", "numpy", "phonopy", "spglib", "numba", "h5py"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def draw_chunk(
    material_name: str,
    split: int,
    k: int,
    seed: int,
    candidates: int,
    domain,
    sigma_mev: float,
    resolution=None,
    reference: str | None = None,
    nuisance: float = 0.0,
):
    """Evaluate chunk ``k``: returns (params (n,8), spectra (n,nq,nE) float32, inactive (n,P−8) or
    None) of its stable samples. The active draws do not depend on ``nuisance`` (drawn first)."""
    from .materials import get_material

    # the material's basis and forward model are precomputed with single-threaded BLAS
    # (materials._one_blas_thread), so chunks are byte-identical in any process
    mat = get_material(material_name, reference=reference)
    domain = np.asarray(domain, float)
    rng = np.random.default_rng([seed, split, k])
    theta = rng.uniform(domain[:, 0], domain[:, 1], size=(candidates, len(domain)))
    if nuisance > 0:
        fm_all, inactive = _nuisance_model(mat, sigma_mev, resolution)
        extra = mat.reference_params[inactive] + rng.normal(size=(candidates, len(inactive))) * (nuisance * mat.nuisance_sigma)
        full = np.concatenate([theta, extra], axis=1)
        stable = fm_all.is_stable(full)
        full = full[stable]
        images = fm_all.spectra(full) if len(full) else np.zeros((0,) + mat.grid.shape, np.float32)
        return theta[stable], images, extra[stable]
    fm = mat.forward_model(sigma_mev=sigma_mev, resolution=resolution)
    # 1. screen: eigenvalues at the few wave vectors where instabilities show first (cheap);
    # 2. the full stability check (path + mesh) on the survivors; 3. images of the stable ones
    keep = screen(material_name, domain, sigma_mev, reference).passes(theta)
    stable = np.zeros(len(theta), bool)
    if keep.any():
        stable[keep] = fm.is_stable(theta[keep])
    theta = theta[stable]
    return theta, fm.spectra(theta) if len(theta) else np.zeros((0,) + mat.grid.shape, np.float32), None


_NUISANCE_FM: dict = {}


def _nuisance_model(mat, sigma_mev: float, resolution=None):
    """(ForwardModel over all parameters — the active ones first —, inactive indices) of ``mat``."""
    from .forward import ForwardModel
    from .materials import _one_blas_thread

    key = (mat.name, mat.reference_name, mat.reference_params.tobytes(), float(sigma_mev), repr(resolution))
    if key not in _NUISANCE_FM:
        inactive = np.setdiff1d(np.arange(mat.basis.n_params), mat.active)
        with _one_blas_thread():
            fm = ForwardModel(
                mat.basis,
                mat.grid,
                mat.reference_params,
                np.concatenate([mat.active, inactive]),
                sigma_mev=sigma_mev,
                resolution=resolution,
            )
        _NUISANCE_FM[key] = (fm, inactive)
    return _NUISANCE_FM[key]


#: screening rejects only what the full check rejects too: its eigenvalue threshold is 5 % below
#: the forward model's (−0.1025 instead of −0.1 meV), far beyond the rounding of either path,
#: including the arccos closed form of near-degenerate 3×3 blocks
SCREEN_MARGIN = 0.05


class StabilityScreen:
    """A cheap necessary condition for stability: the forward model's own symmetry blocks at a
    few wave vectors only.

    The wave vectors (of the path or the stability mesh) are chosen once per (material,
    domain) by a greedy set cover over a seeded pilot sample of the domain: the q that
    exposes the most unstable pilot samples, then the one exposing most of the rest, … until
    99.5 % are caught or ``max_q`` are chosen. The screen evaluates exactly the block
    eigenvalues the full check evaluates (same precomputed matrices, same closed forms), at
    those q only, with a threshold :data:`SCREEN_MARGIN` below the full check's: a candidate it
    rejects, the full check rejects too, so datasets are identical with or without it.
    """

    def __init__(self, fm, domain, n_pilot: int = 2048, max_q: int = 12, seed: int = 2024):
        from .backend import get_backend
        from .forward import UNSTABLE_BELOW_MEV, _eig_closed, _pack_size
        from .units import SQRT_EIG_TO_MEV

        self._eig, self._size = _eig_closed, _pack_size
        self.eps = (UNSTABLE_BELOW_MEV / SQRT_EIG_TO_MEV) ** 2  # eigenvalue threshold, eV/Å²/amu
        sets = [fm.path] + ([fm.mesh] if fm.mesh is not None else [])
        # every block of every set, tagged with its wave vector (set, q)
        self._blocks = [(si, m, W, qidx) for si, bs in enumerate(sets) for m, W, qidx, _ in bs.groups]
        dom = np.asarray(domain, float)
        pilot = np.random.default_rng(seed).uniform(dom[:, 0], dom[:, 1], size=(n_pilot, len(dom)))
        ext = np.concatenate([np.ones((n_pilot, 1)), pilot], axis=1)
        keys, cols = [], []
        for si, m, W, qidx in self._blocks:
            lam = self._lowest(ext, m, W)  # (n_pilot, nb)
            for b, q in enumerate(qidx):
                keys.append((si, int(q)))
                cols.append(lam[:, b])
        lam = np.stack(cols, axis=1)
        uniq = sorted(set(keys))
        where = {k: i for i, k in enumerate(uniq)}
        per_q = np.full((n_pilot, len(uniq)), np.inf)
        for c, k in enumerate(keys):
            per_q[:, where[k]] = np.minimum(per_q[:, where[k]], lam[:, c])
        bad = per_q < -self.eps
        unstable = bad.any(axis=1)
        chosen: list = []
        caught = np.zeros(n_pilot, bool)
        while len(chosen) < max_q and unstable.any() and caught[unstable].mean() < 0.995:
            gain = (bad & ~caught[:, None]).sum(axis=0)
            j = int(np.argmax(gain))
            if gain[j] == 0:
                break
            chosen.append(uniq[j])
            caught |= bad[:, j]
        self.q = chosen  # [(set index: 0 path / 1 mesh, q index in that set)]
        sel = set(chosen)
        self._sub = []
        for si, m, W, qidx in self._blocks:
            size = _pack_size(m)
            blocks = [i for i, q in enumerate(qidx) if (si, int(q)) in sel]
            if blocks:
                sub_cols = np.concatenate([np.arange(i * size, (i + 1) * size) for i in blocks])
                self._sub.append((m, np.ascontiguousarray(W[:, sub_cols])))
        self.pilot_unstable = float(unstable.mean())
        self.pilot_caught = float(caught[unstable].mean()) if unstable.any() else 1.0
        self._be = get_backend("numpy")

    def _lowest(self, ext, m, W):
        k = self._size(m)
        X = (ext @ W).reshape(len(ext), -1, k)
        return self._eig(np, X, m)[..., 0]

    def passes(self, theta) -> np.ndarray:
        """(N,) bool: False where θ is certainly unstable."""
        theta = np.atleast_2d(np.asarray(theta, float))
        ok = np.ones(len(theta), bool)
        if not self._sub:
            return ok
        ext = np.concatenate([np.ones((len(theta), 1)), theta], axis=1)
        for m, W in self._sub:
            ok &= np.all(self._lowest(ext, m, W) >= -self.eps * (1.0 + SCREEN_MARGIN), axis=1)
        return ok


_SCREENS: dict = {}


def screen(material_name: str, domain, sigma_mev: float = 1.0, reference: str | None = None) -> StabilityScreen:
    """The (cached) :class:`StabilityScreen` of a preset's forward model over ``domain``."""
    from .materials import _one_blas_thread, get_material

    dom = np.asarray(domain, float)
    key = (str(material_name).lower(), dom.tobytes(), float(sigma_mev), str(reference))
    if key not in _SCREENS:
        fm = get_material(material_name, reference=reference).forward_model(sigma_mev=sigma_mev)
        with _one_blas_thread():
            _SCREENS[key] = StabilityScreen(fm, dom)
    return _SCREENS[key]


@contextmanager
def _graceful_sigint():
    """Turn SIGINT into a flag checked between chunks, so a chunk is never half-written."""
    state = {"stop": False, "writing": False, "now": False}

    def handler(signum, frame):
        if state["stop"]:  # a second Ctrl-C: stop now, but never inside a chunk's write
            if state["writing"]:
                state["now"] = True
                return
            raise KeyboardInterrupt
        state["stop"] = True

    def unraisable(arg):
        # the handler's KeyboardInterrupt can land in code that cannot raise it (a ctypes callback of
        # numba's JIT cache, a __del__): Python would print it and carry on. Keep the request
        # instead: the loop stops at the end of the chunk.
        if arg.exc_type is not None and issubclass(arg.exc_type, KeyboardInterrupt):
            state["now"] = True
        elif state["stop"]:
            # after a Ctrl-C, an object the KeyboardInterrupt left half-built fails in its __del__
            # (llvmlite's OutputString while numba compiled: "Exception ignored … no attribute
            # '_ptr'", a traceback on stderr of a clean stop; seen once in CI, session 48): the run
            # is stopping, say nothing more than its one line
            return
        else:
            old_hook(arg)

    try:
        old = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not in the main thread
        old = None
    old_hook = sys.unraisablehook
    if old is not None:
        sys.unraisablehook = unraisable
    try:
        yield state
    finally:
        if old is not None:
            sys.unraisablehook = old_hook
            signal.signal(signal.SIGINT, old)


def _init_file(f, mat, fm, seed, candidates, splits, domain, nuisance: float = 0.0):
    g = mat.grid
    f.attrs.update(
        {
            "format": "fcinv-dataset",
            "version": 1,
            "material": mat.name,
            "seed": seed,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": json.dumps(_versions()),
            "resolution": json.dumps(fm.resolution),
            "candidates_per_chunk": candidates,
            "domain_source": mat.domain_source if np.array_equal(domain, mat.domain) else "given by the caller",
            "reference_source": mat.reference_source,
            "reference": mat.reference_name,
        }
    )
    g.to_hdf5(f.create_group("grid"))
    f["param_names"] = np.array(fm.names, dtype=object).astype("S")
    f["domain"] = domain
    f["active"] = mat.active
    f["reference_params"] = mat.reference_params
    inactive = np.setdiff1d(np.arange(mat.basis.n_params), mat.active)
    if nuisance > 0:
        f["inactive"] = inactive
        f.attrs["nuisance"] = float(nuisance)
        f.attrs["nuisance_source"] = mat.nuisance_source
    nq, nE = g.shape
    for name, n in splits.items():
        s = f.create_group(name)
        if n > 0:
            s.create_dataset(
                "spectra",
                shape=(n, nq, nE),
                dtype="f4",
                chunks=(min(64, n), nq, nE),
                compression="gzip",
                compression_opts=1,
                shuffle=True,
            )
        else:  # an empty split (e.g. a test-only file): HDF5 cannot chunk a zero-length axis
            s.create_dataset("spectra", shape=(0, nq, nE), dtype="f4")
        s.create_dataset("params", shape=(n, len(fm.names)), dtype="f8")
        if nuisance > 0:
            s.create_dataset("inactive_params", shape=(n, len(inactive)), dtype="f8")
        s.attrs.update({"n_target": n, "n_done": 0, "next_chunk": 0, "n_candidates": 0, "n_stable": 0})


def _deflate():
    """zlib-format deflate at level 1: ISA-L's (``isal``, several times faster than zlib's level 1
    and as small on these images) where installed, else the standard library's. Both write the
    stream HDF5's gzip filter reads; only the compressed bytes differ, never the data."""
    try:
        from isal import isal_zlib

        return isal_zlib.compress
    except ImportError:  # pragma: no cover - isal is a dependency; a bare environment still works
        import zlib

        return zlib.compress


class _SpectraWriter:
    """Appends rows to a ``/<split>/spectra`` dataset one whole HDF5 chunk at a time, filtered here.

    The file's filter pipeline (shuffle, then deflate) is applied in NumPy and ISA-L and the
    chunk is stored with ``write_direct_chunk``: the same layout and filters as an h5py write
    (any HDF5 reader decodes it), without HDF5 re-reading and re-compressing the chunk that a
    batch of rows ends in. That chunk is still written (padded) at every call, so the file is
    complete up to the last row written; its rows are kept here and written again, whole, with
    the next batch. A dataset with other filters or chunking is written through h5py as before.
    """

    def __init__(self, dset, done: int):
        self.dset = dset
        c = dset.chunks
        self.direct = (
            c is not None
            and dset.dtype == np.dtype("<f4")
            and dset.compression == "gzip"
            and dset.shuffle
            and not dset.fletcher32
            and dset.scaleoffset is None
            and tuple(c[1:]) == tuple(dset.shape[1:])
        )
        self.rows = c[0] if c is not None else 0
        if self.direct:
            self.start = (done // self.rows) * self.rows  # first row of the chunk being filled
            self.pending = dset[self.start : done] if done > self.start else np.zeros((0,) + dset.shape[1:], np.float32)
            self._compress = _deflate()

    def write(self, at: int, rows: np.ndarray) -> None:
        if not self.direct:
            self.dset[at : at + len(rows)] = rows
            return
        if at != self.start + len(self.pending):
            raise FcinvError(f"internal error: rows written at {at}, expected {self.start + len(self.pending)}")
        buf = np.concatenate([self.pending, np.asarray(rows, np.float32)]) if len(self.pending) else np.asarray(rows, np.float32)
        R = self.rows
        n_full = len(buf) // R
        for i in range(n_full + (1 if len(buf) % R else 0)):
            part = buf[i * R : (i + 1) * R]
            if len(part) < R:  # the chunk being filled: HDF5 stores chunks whole (padded with the fill value 0)
                part = np.concatenate([part, np.zeros((R - len(part),) + part.shape[1:], np.float32)])
            self.dset.id.write_direct_chunk((self.start + i * R,) + (0,) * (buf.ndim - 1), self._filter(part))
        self.start += n_full * R
        self.pending = buf[n_full * R :].copy()

    def _filter(self, chunk: np.ndarray) -> bytes:
        # HDF5's shuffle filter for 4-byte elements: byte 0 of every element, then byte 1, …
        shuffled = np.ascontiguousarray(np.ascontiguousarray(chunk, "<f4").view(np.uint8).reshape(-1, 4).T)
        return self._compress(shuffled, 1)


#: the most spectra per split a dataset may be asked for (10⁸ Ge spectra are 7.8 TB)
MAX_SPECTRA = 100_000_000


def generate_dataset(
    material: str,
    out,
    n_train: int = 10000,
    n_test: int = 1500,
    seed: int = 0,
    candidates: int = 1024,
    sigma_mev: float = 1.0,
    scheduler=None,
    progress: bool = True,
    on_chunk=None,
    reference: str | None = None,
    domain=None,
    nuisance: float = 0.0,
) -> dict:
    """Make (or resume) a dataset file. Returns a summary dict.

    ``reference``: the material reference the inactive parameters sit at ("measured" — the
    default —, "dft", "umlff"); ``domain``: (8, 2) eV/Å² box of the active parameters (default:
    the material's training domain); ``nuisance``: s ≥ 0, the inactive parameters drawn per
    spectrum around the reference with σ = s × ``Material.nuisance_sigma`` (0: fixed).

    ``on_chunk(split, n_done)`` is called after every chunk is written (e.g. for a UI).
    ``scheduler``: None (in-process; the compiled kernel uses every core), a
    ``dask.distributed.Client``, a scheduler address ("tcp://host:8786"), or "local:N"
    for a LocalCluster of N worker processes.
    """
    import h5py
    from tqdm.auto import tqdm

    from .materials import get_material

    from .validate import as_path, fc_box, is_real_number, whole_number

    for nm, n in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(n, (int, np.integer)) or isinstance(n, (bool, np.bool_)) or not 0 <= n <= MAX_SPECTRA:
            raise FcinvError(f"{nm} must be a non-negative integer (at most {MAX_SPECTRA:,}), got {n!r}")
    candidates = whole_number(candidates, "candidates per chunk", 1, 1_000_000)
    seed = whole_number(seed, "seed", 0, 2**63 - 1)
    if not (is_real_number(nuisance) and math.isfinite(float(nuisance)) and 0 <= nuisance <= 10):
        raise FcinvError(f"nuisance must be a scale in [0, 10], got {nuisance!r}")
    out = as_path(out, "dataset file")
    mat = get_material(material, reference=reference)
    fm = mat.forward_model(sigma_mev=sigma_mev)
    if domain is None:
        domain = mat.domain
    else:
        domain = fc_box(domain, len(mat.active))
    out = Path(out)
    splits = {"train": int(n_train), "test": int(n_test)}
    t0 = time.perf_counter()
    if out.exists():
        with h5py.File(out, "r") as f:
            if f.attrs.get("format") != "fcinv-dataset":
                raise FcinvError(f"{out} exists and is not an fcinv dataset; choose another --out")
            format_version(f.attrs.get("version"), str(out))
            same = (
                f.attrs["material"] == mat.name
                and int(f.attrs["seed"]) == seed
                and int(f.attrs["candidates_per_chunk"]) == candidates
                and json_loads(f.attrs["resolution"], f"{out}: attribute resolution") == fm.resolution
                and all(int(f[s].attrs["n_target"]) == n for s, n in splits.items() if s in f)
                and np.allclose(f["domain"][()], domain)
                and np.array_equal(f["reference_params"][()], mat.reference_params)
                and float(f.attrs.get("nuisance", 0.0)) == float(nuisance)
            )
            if not same:
                raise FcinvError(
                    f"{out} was started with other settings (material, seed, sizes, domain, reference or "
                    "resolution); "
                    "delete it or choose another --out to start afresh"
                )
    else:
        tmp = out.with_suffix(out.suffix + ".part")
        with h5py.File(tmp, "w") as f:
            _init_file(f, mat, fm, seed, candidates, splits, domain, nuisance)
        tmp.replace(out)

    interrupted = False
    with dask_session(scheduler) as client, _graceful_sigint() as state, h5py.File(out, "r+") as f:
        for name, n in splits.items():
            grp = f[name]
            done = int(grp.attrs["n_done"])
            bar = tqdm(total=n, initial=done, desc=f"{mat.name} {name}", unit="spectra", disable=not progress)
            k = int(grp.attrs["next_chunk"])
            writer = _SpectraWriter(grp["spectra"], done)
            for params, spectra, extra in _chunks(
                client,
                mat.name,
                SPLITS[name],
                k,
                seed,
                candidates,
                domain,
                sigma_mev,
                lambda n=n, grp=grp: n - int(grp.attrs["n_done"]),
                mat.reference_name,
                nuisance,
            ):
                take = min(len(params), n - done)
                state["writing"] = True  # a chunk's rows and its attributes are written together
                if take > 0:
                    grp["params"][done : done + take] = params[:take]
                    writer.write(done, spectra[:take])
                    if extra is not None:
                        grp["inactive_params"][done : done + take] = extra[:take]
                done += take
                grp.attrs.update(
                    {
                        "n_done": done,
                        "next_chunk": int(grp.attrs["next_chunk"]) + 1,
                        "n_candidates": int(grp.attrs["n_candidates"]) + candidates,
                        "n_stable": int(grp.attrs["n_stable"]) + len(params),
                    }
                )
                f.flush()
                state["writing"] = False
                if state["now"]:
                    raise KeyboardInterrupt
                bar.update(take)
                if on_chunk is not None:
                    on_chunk(name, done)
                if done >= n or state["stop"]:
                    break
            bar.close()
            if state["stop"] and done < n:
                interrupted = True
                break
    return summarize(out) | {"interrupted": interrupted, "seconds": time.perf_counter() - t0}


@contextmanager
def dask_session(scheduler):
    """The Dask client of a batch stage's ``scheduler`` for the length of a ``with`` block (None
    for None: run in-process): what it opened for the stage — a client to an address, a local
    cluster for "local:N" — it closes at the end; a ``Client`` passed in stays open (the caller's).
    A scheduler that cannot be reached is one :class:`FcinvError`."""
    client, cluster = dask_client(scheduler)
    try:
        yield client
    finally:
        if client is not None and client is not scheduler:
            client.close()
        if cluster is not None:
            cluster.close()


def run_tasks(fn, calls, desc: str, unit: str = "task", progress: bool = False, scheduler=None) -> list:
    """``[fn(*args, **kwargs) for args, kwargs in calls]``, in call order, with a progress bar: in
    this process, or as Dask tasks when a ``scheduler`` is given (:func:`dask_session`; the calls
    must be independent; a positional argument that is the same object in every call is scattered
    to the workers once). A scheduler that cannot be reached is one :class:`FcinvError`, before
    the bar opens."""
    from tqdm.auto import tqdm

    from .validate import flag

    progress = flag(progress, "progress")
    calls = list(calls)
    with dask_session(scheduler) as client, tqdm(total=len(calls), desc=desc, unit=unit, disable=not progress) as bar:
        if client is None:
            out = []
            for args, kwargs in calls:
                out.append(fn(*args, **kwargs))
                bar.update()
            return out

        # an argument every call shares (the material: its basis is tens of MB) goes to the workers once
        head = calls[0][0] if calls else ()
        shared = {
            i: client.scatter(a, broadcast=True)
            for i, a in enumerate(head)
            if not isinstance(a, (int, float, str, type(None))) and all(len(c[0]) > i and c[0][i] is a for c in calls)
        }
        futures = [
            client.submit(fn, *(shared.get(i, a) for i, a in enumerate(args)), pure=False, **kwargs) for args, kwargs in calls
        ]
        where = scheduler if isinstance(scheduler, str) else "the given client"
        pending = set(futures)
        while pending:
            done, pending = dask_wait(client, list(pending), where, first=True)
            bar.update(len(done))
        return [dask_result(f, where) for f in futures]


#: how long a batch stage waits at a Dask scheduler with no worker (none started, all died, or none
#: can run the package) before it gives up in one line (seconds); a connection that is not answered
#: as a Dask scheduler's within DASK_CONNECT_S is given up too
DASK_NO_WORKER_S, DASK_CONNECT_S = 60.0, 30.0


def _is_local(scheduler) -> bool:
    """ "local" or "local:N" — not "localhost:8786", an address."""
    return isinstance(scheduler, str) and (scheduler == "local" or scheduler.startswith("local:"))


def _dask_lost():
    """The exceptions of a lost scheduler, a killed worker or a cancelled future."""
    from concurrent.futures import CancelledError

    from distributed import KilledWorker

    return (CancelledError, KilledWorker, OSError, TimeoutError)


def _connect(address: str):
    """``Client(address)`` within :data:`DASK_CONNECT_S`: in a daemon thread, since a service that
    accepts the TCP connection but is no Dask scheduler hung the client past its own timeout."""
    import threading

    from dask.distributed import Client

    box: dict = {}

    def go():
        try:
            box["client"] = Client(address, timeout=f"{DASK_CONNECT_S:g}s")
        except BaseException as exc:  # noqa: BLE001 — reported below in one line
            box["error"] = exc

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(DASK_CONNECT_S + 10)
    if "client" in box:
        return box["client"]
    exc = box.get("error")
    why = f"{type(exc).__name__}: {exc}" if exc is not None else f"no Dask scheduler answered within {DASK_CONNECT_S + 10:g} s"
    raise FcinvError(f"cannot connect to the Dask scheduler at {address!r}: {' '.join(why.split())[:300]}")


def _check_workers(client, where: str) -> None:
    """At least one worker, within :data:`DASK_NO_WORKER_S`, and every worker able to import the
    package (a worker without it crashed unpickling the first task, and the stage waited for ever)."""
    try:
        client.wait_for_workers(1, timeout=DASK_NO_WORKER_S)
    except _dask_lost() as exc:
        raise FcinvError(
            f"the Dask scheduler at {where!r} has no worker (waited {DASK_NO_WORKER_S:g} s): start workers "
            f"(`dask worker {where}`) or use local:N [{type(exc).__name__}]"
        ) from None
    # (a lambda travels by value: a worker without the package can still run it)
    try:
        has = client.run(lambda: __import__("importlib.util").util.find_spec("fcinv_widgets") is not None)
    except Exception as exc:  # noqa: BLE001 — a worker that dies while asked, distributed's own errors
        raise FcinvError(f"cannot ask the Dask workers at {where!r} for the package: {type(exc).__name__}: {exc}"[:400]) from None
    missing = sorted(w for w, ok in has.items() if not ok)
    if missing:
        raise FcinvError(
            f"{len(missing)} of the {len(has)} Dask workers at {where!r} cannot import fcinv_widgets (e.g. {missing[0]}): "
            "install it in the workers' environment"
        )


def dask_wait(client, futures, where: str, first: bool = False):
    """``distributed.wait(futures)`` (``first``: until one is done) in steps, so that a lost
    scheduler or a cluster left without workers for :data:`DASK_NO_WORKER_S` is one
    :class:`FcinvError` instead of a traceback or a wait for ever; returns wait's (done, not_done)."""
    from distributed import wait

    idle, step = 0.0, 5.0
    while True:
        try:
            return wait(futures, timeout=step, return_when="FIRST_COMPLETED" if first else "ALL_COMPLETED")
        except TimeoutError:
            pass
        except Exception as exc:  # noqa: BLE001 — a lost scheduler, or distributed's own errors while it goes
            raise FcinvError(f"lost the Dask scheduler at {where!r} ({type(exc).__name__}); rerun the command") from None
        if client.status not in ("running", "connecting", "newly-created"):
            raise FcinvError(f"lost the Dask scheduler at {where!r} (client {client.status}); rerun the command")
        try:
            n = len(client.scheduler_info().get("workers", {}))
        except _dask_lost():
            n = 0
        idle = idle + step if n == 0 else 0.0
        if idle >= DASK_NO_WORKER_S:
            raise FcinvError(f"no Dask worker left at {where!r} for {idle:.0f} s (did they die?); rerun the command")


def dask_result(future, where: str):
    """``future.result()`` with a lost scheduler, a killed worker or a cancelled task said in one line
    (an error the task itself raised passes through)."""
    try:
        return future.result()
    except _dask_lost() as exc:
        raise FcinvError(
            f"a Dask task at {where!r} did not finish ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); rerun the command"
        ) from None


def dask_client(scheduler):
    """(client, cluster) for a batch stage's ``scheduler``: (None, None) for None (in-process), the
    given ``dask.distributed.Client``, a new local cluster of N single-threaded worker processes
    for "local:N" (the caller closes both), or a client of the scheduler at an address."""
    if scheduler is None:
        return None, None
    from dask.distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        return scheduler, None
    if _is_local(scheduler):
        from .validate import max_workers

        try:
            n = int(scheduler.split(":")[1]) if ":" in scheduler else 2
        except ValueError:
            raise FcinvError(f"scheduler {scheduler!r}: local:N needs a whole number of workers N") from None
        if not 1 <= n <= max_workers():
            raise FcinvError(f"scheduler {scheduler!r}: local:N takes 1 to {max_workers()} workers on this machine")
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster), cluster
    if not isinstance(scheduler, str):
        raise FcinvError(
            f"scheduler must be a Dask address, local:N or a dask.distributed.Client, got {type(scheduler).__name__}"
        )
    client = _connect(scheduler)
    try:
        _check_workers(client, scheduler)
    except BaseException:
        client.close()
        raise
    return client, None


def _chunks(client, material, split, k0, seed, candidates, domain, sigma, remaining, reference=None, nuisance=0.0):
    """Yield chunk results in chunk order, from k0 on; on Dask keep a few chunks in flight."""
    if client is None:
        k = k0
        while remaining() > 0:  # as the Dask path: a finished split draws nothing (a rerun drew a chunk and counted it)
            yield draw_chunk(material, split, k, seed, candidates, domain, sigma, None, reference, nuisance)
            k += 1
        return
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    inflight: dict = {}
    k_next = k0
    k_yield = k0
    domain = np.asarray(domain).tolist()
    try:
        while remaining() > 0:
            while len(inflight) < 2 * n_workers:
                inflight[k_next] = client.submit(
                    draw_chunk, material, split, k_next, seed, candidates, domain, sigma, None, reference, nuisance, pure=False
                )
                k_next += 1
            fut = inflight.pop(k_yield)
            dask_wait(client, [fut], "the dataset's scheduler")
            res = dask_result(fut, "the dataset's scheduler")
            k_yield += 1
            yield res
    finally:
        for fut in inflight.values():
            fut.cancel()


def summarize(path) -> dict:
    import h5py

    path = Path(path)
    with h5py.File(path, "r") as f:
        out = {
            "path": str(path),
            "material": f.attrs["material"],
            "reference": str(f.attrs.get("reference", "umlff")),
            "nuisance": float(f.attrs.get("nuisance", 0.0)),
            "size_mb": path.stat().st_size / 1e6,
        }
        for s in SPLITS:
            if s in f:
                a = f[s].attrs
                out[s] = {
                    "n_target": int(a["n_target"]),
                    "n_done": int(a["n_done"]),
                    "stable_fraction": float(a["n_stable"]) / max(int(a["n_candidates"]), 1),
                }
    return out


@dataclass
class Dataset:
    """Read access to a dataset file (arrays are read on demand)."""

    path: Path

    def __post_init__(self):
        import h5py

        from .validate import as_path

        self.path = Path(as_path(self.path, "dataset"))
        if not self.path.is_file():
            raise FcinvError(f"dataset not found: {self.path}")
        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            raise FcinvError(f"cannot open {self.path} as HDF5: {exc}") from None
        if f.attrs.get("format") != "fcinv-dataset":
            f.close()
            raise FcinvError(f"{self.path} is not an fcinv dataset (no format='fcinv-dataset' attribute)")
        try:
            format_version(f.attrs.get("version"), str(self.path))
        except FcinvError:
            f.close()
            raise
        self._f = f
        try:
            self.material = str(f.attrs["material"])
            self.names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["param_names"][()]]
            from .validate import real_array

            self.domain = real_array(f["domain"][()], f"{self.path}:/domain", shape=(len(self.names), 2), allow_nan=False)
            if not (self.domain[:, 0] < self.domain[:, 1]).all():
                raise ValueError("/domain: every lower bound must lie below its upper bound")
            #: the material reference the inactive parameters were fixed at (files before it was recorded: "umlff")
            self.reference = str(f.attrs.get("reference", "umlff"))
            #: the scale s of the inactive parameters' spread (0: fixed at the reference)
            self.nuisance = float(f.attrs.get("nuisance", 0.0))
            #: (P,) eV/Å²: every parameter at the reference the file was made at
            self.reference_params = (
                real_array(f["reference_params"][()], f"{self.path}:/reference_params", ndim=1, allow_nan=False)
                if "reference_params" in f
                else None
            )
            self.energies = f["grid/energy_centers_mev"][()]
            self.labels = json_loads(f["grid"].attrs["labels"], f"{self.path}: /grid attribute labels")
            from .grid import SpectrumGrid

            self.grid = SpectrumGrid.from_hdf5(f["grid"]) if "grid" in f["grid"].attrs else None
        except FcinvError:
            f.close()
            raise
        except (KeyError, ValueError, TypeError) as exc:
            f.close()
            raise FcinvError(f"{self.path}: a damaged fcinv dataset ({type(exc).__name__}: {exc})") from None

    def split(self, name: str = "train"):
        """(spectra h5py dataset (N,nq,nE), params (N,8)) of the completed part of a split."""
        import h5py

        g = self._f.get(name)
        if (
            not isinstance(g, h5py.Group)
            or not isinstance(g.get("spectra"), h5py.Dataset)
            or not isinstance(g.get("params"), h5py.Dataset)
        ):
            raise FcinvError(f"{self.path}: no complete '{name}' split (/{name}/spectra and /{name}/params)")
        raw = g.attrs.get("n_done", 0)
        try:
            whole = not isinstance(raw, (bool, np.bool_)) and float(raw).is_integer()  # NaN, ±inf, text: False/raise
        except (TypeError, ValueError):
            whole = False
        if not whole:
            raise FcinvError(f"{self.path}: the {name} split's n_done attribute must be a whole number, got {raw!r}")
        n = int(float(raw))
        if not 0 <= n <= min(len(g["spectra"]), len(g["params"])):
            raise FcinvError(
                f"{self.path}: the {name} split says {n} spectra are done but holds "
                f"{len(g['spectra'])} spectra and {len(g['params'])} parameter rows"
            )
        from .validate import check_declared, real_array

        where = f"{self.path}:/{name}"
        check_declared(g["spectra"].shape, g["spectra"].dtype, f"{where}/spectra", ndim=3, max_bytes=1 << 62)
        check_declared(g["params"].shape, g["params"].dtype, f"{where}/params", ndim=2, max_bytes=1 << 62)
        params = real_array(g["params"][:n], f"{where}/params", shape=(None, len(self.names)), allow_nan=False)
        self._check_inside_domain(params, f"{where}/params")
        return g["spectra"], params, n

    def _check_inside_domain(self, params: np.ndarray, where: str) -> None:
        """Every row is drawn inside /domain (``sampling``); one outside it by more than a part in
        10⁶ of the width is a damaged or edited file — evaluated, its 1e300 labels made overflow
        warnings and R² with exit 0."""
        lo, hi = self.domain[:, 0], self.domain[:, 1]
        tol = 1e-6 * (hi - lo)
        out = (params < lo - tol) | (params > hi + tol)
        if out.any():
            i, j = np.argwhere(out)[0]
            raise FcinvError(
                f"{where}: row {i} gives {self.names[j]} = {params[i, j]:.6g} eV/Å², outside the dataset's own "
                f"domain [{lo[j]:.6g}, {hi[j]:.6g}] ({int(out.any(axis=1).sum())} rows so): a damaged or edited dataset"
            )

    def close(self):
        self._f.close()
