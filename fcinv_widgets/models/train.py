"""Training of the dual model: the VAE on clean spectra, then the FC regressor on the frozen
encoder's latent samples z = μ + σ·ε, fresh every epoch (targets standardised). Progress bars per epoch, best checkpoint by
validation loss, early stopping, resume, seeds, CPU threads set sensibly."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import FcinvError, FcinvWarning
from ..validate import json_loads


from ..metrics import r2_score as _r2  # noqa: E402  (the one R²: NaN for a constant target)


def load_split(dataset, split: str = "train", limit: int | None = None):
    """(spectra float32 (N, nq, nE), params (N, 8), info dict) of a dataset file's split."""
    from ..dataset import Dataset

    d = Dataset(dataset)
    try:
        spectra, params, n = d.split(split)
        n = n if limit is None else min(n, int(limit))
        if n == 0:
            raise FcinvError(f"{dataset}: the {split} split is empty")
        from ..validate import check_bytes, check_declared

        check_declared((n,) + tuple(spectra.shape[1:]), spectra.dtype, f"{dataset}:/{split}/spectra", ndim=3, max_bytes=1 << 62)
        _check_dataset_material(d, tuple(spectra.shape[1:]), dataset)
        check_bytes(4.0 * n * int(np.prod(spectra.shape[1:])), f"reading {n} spectra of {dataset}")
        try:
            x = np.asarray(spectra[:n], dtype=np.float32)
            y = np.asarray(params[:n], float)
        except OSError as exc:  # a damaged compressed chunk: h5py's words name neither file nor split
            raise FcinvError(f"{dataset}: /{split} cannot be read ({exc}): a damaged dataset file") from None
        info = {
            "material": d.material,
            "names": d.names,
            "domain": d.domain.tolist(),
            "energies": d.energies.tolist(),
            "grid": None if d.grid is None else d.grid.to_dict(arrays=True),
            "reference": d.reference,
            "reference_params": None if d.reference_params is None else d.reference_params.tolist(),
            "nuisance": d.nuisance,
        }
        return x, y, info
    finally:
        d.close()


#: the largest networks ``fcinv train`` builds (the shipped ones: latent 20, base 8, hidden 128, width
#: 16; ImageNet's ResNet-18 is width 64): ``--latent 10**8`` asked torch for 51 GB
MAX_LATENT, MAX_CHANNELS, MAX_HIDDEN = 1024, 512, 8192


def _check_dataset_material(d, shape: tuple, dataset) -> None:
    """A dataset that contradicts itself is refused before anything is trained on it or stamped
    with its claims: its material must be a preset and its spectra, its /grid and that preset's
    grid one shape (a (140, 139) split under a 140 × 140 grid, or a Ge set labelled "Nb" or "Xx",
    trained with exit 0 into a model that then refused every real spectrum)."""
    from ..materials import PRESETS, get_material

    if d.material.lower() not in PRESETS:
        raise FcinvError(f"{dataset}: made for material {d.material!r}, which is not a preset ({', '.join(sorted(PRESETS))})")
    want = tuple(get_material(d.material).grid.shape)
    said = None if d.grid is None else tuple(d.grid.shape)
    if shape != want or said not in (None, want) or len(d.energies) != want[1]:
        raise FcinvError(
            f"{dataset}: its spectra are {shape[0]} × {shape[1]} (q × E), its /grid "
            f"{'says nothing' if said is None else f'{said[0]} × {said[1]}'} with {len(d.energies)} energies, "
            f"and {d.material}'s grid is {want[0]} × {want[1]}: a damaged or relabelled dataset"
        )


def _setup(threads, device, seed):
    import torch

    from ..validate import max_workers, whole_number

    if threads is not None:
        threads = whole_number(threads, "threads", 1, max_workers())
    torch.set_num_threads(threads or min(4, os.cpu_count() or 1))
    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise FcinvError(f"--device {device}: no CUDA device is available to torch here; use cpu or auto")
        dev = torch.device(device)
    torch.manual_seed(seed)
    return dev


def _split(n: int, seed: int):
    """(validation indices, training indices): a seeded 10 % hold-out of the training split."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, n // 10)
    return perm[:n_val], perm[n_val:]


def _data(dataset, max_train, seed: int):
    """(x, y, info, iv, it): a dataset's training split and its seeded validation hold-out."""
    x, y, info = load_split(dataset, "train", max_train)
    if len(x) < 2:
        raise FcinvError(f"{dataset}: training needs at least 2 spectra (one is held out for validation), got {len(x)}")
    bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
    if bad.any():
        first = ", ".join(str(int(i)) for i in np.flatnonzero(bad)[:5])
        raise FcinvError(
            f"{dataset}: {int(bad.sum())} training spectra hold NaN or ±inf pixels (rows {first}…): training needs finite spectra"
        )
    _check_scaled(x, dataset)
    from ..metrics import constant_columns

    flat = [str(n) for n, c in zip(info["names"], constant_columns(y)) if c]
    if flat:  # y_std 1e-12: trained with exit 0, its validation R² NaN or −234 (session 50's probe)
        raise FcinvError(
            f"{dataset}: {', '.join(flat)} {'is' if len(flat) == 1 else 'are'} the same in every training spectrum: "
            "nothing to learn from (a damaged or hand-edited split?)"
        )
    iv, it = _split(len(x), seed)
    return x, y, info, iv, it


#: how far a training spectrum's pixel may lie outside [0, 1] (float32 rounding of the min-max scaling)
SCALE_TOLERANCE = 1e-3


def _check_scaled(x: np.ndarray, dataset) -> None:
    """Training spectra are min-max scaled to [0, 1], as ``fcinv dataset`` writes them (the dataset
    format): all-zero, sign-flipped or constant spectra trained with exit 0 into a meaningless model,
    and spectra × 10⁶ failed after an epoch naming no row (session 50's probe)."""
    flat = x.reshape(len(x), -1)
    lo, hi = flat.min(1), flat.max(1)
    bad = (lo < -SCALE_TOLERANCE) | (hi > 1 + SCALE_TOLERANCE) | (hi - lo < 0.5)
    if not bad.any():
        return
    rows = np.flatnonzero(bad)
    i = int(rows[0])
    what = (
        "all zero"
        if hi[i] == 0 and lo[i] == 0
        else ("constant" if hi[i] == lo[i] else f"ranges {float(lo[i]) + 0.0:.4g} … {float(hi[i]) + 0.0:.4g}")
    )
    first = ", ".join(str(int(r)) for r in rows[:5])
    raise FcinvError(
        f"{dataset}: {len(rows)} training spectra are not min-max scaled to [0, 1] as `fcinv dataset` writes them "
        f"(rows {first}{'…' if len(rows) > 5 else ''}; row {i} {what}): training needs the dataset's own spectra"
    )


def _prepare(dataset, out, max_train, threads, device, seed: int, augment, masks, progress: bool = False):
    """The set-up both trainings share, in this order: torch threads, device and seed; the output
    folder; the data (:func:`_data`); the augmenter. Returns (dev, out, x, y, info, iv, it, aug)."""
    dev = _setup(threads, device, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    x, y, info, iv, it = _data(dataset, max_train, seed)
    return dev, out, x, y, info, iv, it, _augmenter(augment, info, masks, seed, dataset=dataset, n=len(x), progress=progress)


def _scaler(y, it):
    """(mean, std) of the training targets ``y[it]`` (std + 1e-12: a constant FC stays finite)."""
    return y[it].mean(0), y[it].std(0) + 1e-12


def _standardised(y, y_mean, y_std):
    """The targets in standardised units, a float32 tensor."""
    import torch

    return torch.as_tensor((y - y_mean) / y_std, dtype=torch.float32)


def one_cycle(opt, lr: float, steps: int):
    """torch's OneCycleLR over ``steps`` optimiser steps, warming up over the first 20 %. torch
    divides by ``pct_start × steps − 1``, which is 0 at exactly 5 steps (a ZeroDivisionError on
    ``--epochs 1`` with 5 batches, or ``--epochs 5`` with one): from 5 to 9 steps the warm-up is
    two steps instead."""
    import torch

    steps = max(int(steps), 1)
    pct = 0.2 if steps < 5 or steps >= 10 else 2.0 / steps
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=pct)


def _loss(het: bool, n: int):
    """The loss on standardised targets: β-NLL of a heteroscedastic head (mean and log σ² of the
    ``n`` FCs) when ``het``, else the MSE of a point-estimate head."""
    from .nets import gaussian_nll, split_heteroscedastic

    def loss_of(out, target):
        if het:
            m, lv = split_heteroscedastic(out, n)
            return gaussian_nll(m, lv, target)
        return ((out - target) ** 2).mean()

    return loss_of


def _batched(f, xs, dev, size: int = 256):
    """``f`` applied to ``xs`` in chunks of ``size`` on ``dev``, concatenated on the CPU."""
    import torch

    return torch.cat([f(xs[s : s + size].to(dev)).cpu() for s in range(0, len(xs), size)])


def _aug_config(aug, sigma_scale) -> dict:
    """The checkpoint entries of a model trained with the augmenter ``aug``."""
    from ..measurement import bank_digest

    return {
        "heteroscedastic": True,
        "sigma_scale": sigma_scale,
        "augment": aug.model.to_dict(),
        "coverage_bank": None if aug.masks is None else list(aug.masks.shape),
        # which bank (fcinv sigma-calibrate refuses another bank of the same shape; since session 51)
        "coverage_bank_sha256": None if aug.masks is None else bank_digest(aug.masks),
    }


#: how many leading rows of a training split its fingerprint is taken over
FINGERPRINT_ROWS = 256


def dataset_fingerprint(params) -> str:
    """The SHA-256 of the FC targets (eV/Å², as float64) of the first :data:`FINGERPRINT_ROWS`
    rows of a dataset's training split: the same draws give the same fingerprint whatever the
    file is called (``fcinv sigma-calibrate --unseen`` refuses a renamed copy of a model's
    training set by it)."""
    import hashlib

    y = np.ascontiguousarray(np.asarray(params)[:FINGERPRINT_ROWS], dtype="<f8")
    return hashlib.sha256(repr(y.shape).encode() + y.tobytes()).hexdigest()


def _training_head(dataset, it, iv, history, y) -> dict:
    """The first entries of a checkpoint's ``training`` record (``y``: the training split's FC targets)."""
    return {
        "dataset": str(dataset),
        "dataset_fingerprint": dataset_fingerprint(y),
        "dataset_fingerprint_rows": int(min(len(y), FINGERPRINT_ROWS)),
        "n_train": int(len(it)),
        "n_val": int(len(iv)),
        "epochs": len(history),
    }


def _save(model, path: Path, r2_val, names, epochs: int, **more) -> dict:
    """Write ``model`` (an Inverter or ResNetModel) to ``path``; the summary a training returns."""
    model.save(path)
    return {"out": str(path), "val_r2": r2_val.tolist(), "names": names, "epochs": epochs, **more}


def _probe_r2(mu_tr, y_tr, mu_va, y_va, ridge: float = 1e-3):
    """Validation R² of a ridge-regularised linear map latent → FCs (a cheap per-epoch probe)."""
    A = np.c_[mu_tr, np.ones(len(mu_tr))]
    w = np.linalg.solve(A.T @ A + ridge * np.eye(A.shape[1]), A.T @ y_tr)
    return _r2(y_va, np.c_[mu_va, np.ones(len(mu_va))] @ w)


def _fit(
    net,
    opt,
    step,
    validate,
    it,
    epochs,
    batch_size,
    seed,
    state_path,
    patience,
    resume,
    progress,
    desc,
    sched=None,
    dev=None,
    *,
    inputs,
):
    """The epoch loop both models share.

    ``step(idx, xin) -> loss`` trains on one mini-batch of training indices and their inputs
    ``xin``, which ``inputs(batches)`` yields in order for the epoch's list of (indices, epoch)
    pairs (:func:`_input_batches`); ``validate() -> (val_loss, r2 array)``. Keeps the best
    weights by validation loss, stops after ``patience``
    epochs without improvement, and writes an atomic resume file after every epoch.
    Returns (best_state, history, seconds).
    """
    import torch
    from tqdm.auto import tqdm

    start, best, best_state, bad, history = 0, np.inf, None, 0, []
    if resume and not state_path.is_file():  # (it started afresh without a word)
        warnings.warn(
            FcinvWarning(f"--resume: no training state at {state_path}; training starts from the beginning"), stacklevel=2
        )
    elif resume:
        try:
            st = torch.load(state_path, map_location=dev or "cpu", weights_only=True)
            net.load_state_dict(st["net"])
            opt.load_state_dict(st["opt"])
            if sched is not None and "sched" in st:
                sched.load_state_dict(st["sched"])
            best_state = st["best"]
            start, best, bad = int(st["epoch"]), float(st["best_loss"]), int(st["bad"])
            history = json_loads(st["history"], "history")
        except Exception as exc:  # truncated file, another model's state, a foreign pickle
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise FcinvError(
                f"--resume: {state_path} is not a training state of this model "
                f"({type(exc).__name__}: {first}); remove it to start afresh"
            ) from None
    # wall time accumulates over resumed runs (history's "seconds" is cumulative)
    t0 = time.perf_counter() - (float(history[-1]["seconds"]) if history else 0.0)
    bar = tqdm(range(start, epochs), desc=desc, unit="epoch", disable=not progress)
    for ep in bar:
        if bad >= patience:
            break
        net.train()
        g = torch.Generator().manual_seed(seed * 1000 + ep)
        order = torch.from_numpy(it)[torch.randperm(len(it), generator=g)]
        tot = 0.0
        # batch norm needs two samples: a last batch of one is skipped
        batches = [b for b in (order[s : s + batch_size] for s in range(0, len(order), batch_size)) if len(b) >= 2]
        for idx, xin in zip(batches, inputs([(b.numpy(), ep) for b in batches])):
            tot += float(step(idx, xin)) * len(idx)
        net.eval()
        with torch.no_grad():
            vl, r2 = validate()
        rec = {
            "epoch": ep + 1,
            "train_loss": tot / len(it),
            "val_loss": float(vl),
            "val_r2": [float(v) for v in r2],
            "seconds": time.perf_counter() - t0,
        }
        if not (np.isfinite(rec["train_loss"]) and np.isfinite(rec["val_loss"])):
            msg = (
                f"the loss became non-finite at epoch {ep + 1} (training {rec['train_loss']:.3g}, validation "
                f"{rec['val_loss']:.3g}): the learning rate is too high, or the spectra too large for float32"
            )
            if best_state is None:
                raise FcinvError(msg)
            warnings.warn(FcinvWarning(msg + "; training stopped there, the best epoch before it is kept"), stacklevel=2)
            break
        history.append(rec)
        bar.set_postfix(train=f"{rec['train_loss']:.3g}", val=f"{vl:.3g}", r2=" ".join(f"{v:.2f}" for v in r2))
        if vl < best:
            best, bad = float(vl), 0
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
        # atomic: a Ctrl-C while saving never leaves a half-written resume file
        tmp = state_path.with_suffix(".part")
        st = {
            "net": net.state_dict(),
            "opt": opt.state_dict(),
            "best": best_state,
            "epoch": ep + 1,
            "best_loss": best,
            "bad": bad,
            "history": json.dumps(history),
        }
        if sched is not None:
            st["sched"] = sched.state_dict()
        torch.save(st, tmp)
        tmp.replace(state_path)
    if best_state is None:
        raise FcinvError("training produced no checkpoint (no epoch ran); use more epochs or drop --resume")
    return best_state, history, time.perf_counter() - t0


def _base_config(kind: str, info: dict, shape, y_mean, y_std) -> dict:
    return {
        "format": f"fcinv-{kind}",
        "version": 1,
        "material": info["material"],
        "grid_shape": list(shape),
        "energy_centers_mev": info["energies"],
        "names": info["names"],
        "domain": info["domain"],
        "reference": info.get("reference", "umlff"),
        # every FC the training images were made with (the inactive ones at this reference,
        # or drawn around it with nuisance × the fit's σ): a later refit of the named reference
        # cannot silently change what the model means
        **({"reference_params": info["reference_params"]} if info.get("reference_params") is not None else {}),
        "nuisance": float(info.get("nuisance", 0.0)),
        "y_mean": y_mean.tolist(),
        "y_std": y_std.tolist(),
        **({"grid": info["grid"]} if info.get("grid") else {}),
    }


def _augmenter(augment, info, masks, seed, dataset=None, split: str = "train", n: int | None = None, progress: bool = False):
    """An :class:`~fcinv_widgets.measurement.Augmenter` (or None) for a dataset's energy axis; with
    S(Q,E) weighting (``p_sqe`` > 0) and the ``dataset``, bound to the force constants of the first
    ``n`` spectra of its ``split`` (:func:`full_params`)."""
    if augment is None or augment is False:
        return None
    from ..measurement import MeasurementModel

    model = MeasurementModel() if augment is True else augment
    aug = model.sampler(info["energies"], masks=masks, seed=seed)
    if model.p_sqe > 0 and dataset is not None:
        mat, params = full_params(dataset, split, n)
        aug.attach_sqe(mat, params, progress=progress)
    return aug


def full_params(dataset, split: str = "train", n: int | None = None):
    """(material, (N, P) eV/Å²): every force-constant parameter of the first ``n`` spectra of a
    dataset split, the active ones first (``dataset._nuisance_model``'s order): the inactive ones
    as drawn (``--nuisance``) or at the file's reference. The material's reference must be the
    file's (the weights of :class:`~fcinv_widgets.measurement.SQEWeighting` are computed at it)."""
    import h5py

    from ..dataset import Dataset
    from ..materials import get_material

    d = Dataset(dataset)
    try:
        _, params, n_done = d.split(split)
        n = n_done if n is None else min(int(n), n_done)
        mat = get_material(d.material)
        ref = np.asarray(mat.reference_params, float)
        if d.reference_params is not None and not np.allclose(np.asarray(d.reference_params, float), ref, rtol=1e-6, atol=1e-9):
            raise FcinvError(
                f"{dataset}: made at another fit of the {d.material} reference than today's preset; "
                "S(Q,E) weighting needs the preset's (regenerate the dataset with fcinv dataset)"
            )
        inactive = np.setdiff1d(np.arange(mat.basis.n_params), mat.active)
        g = d._f[split]
        if isinstance(g.get("inactive_params"), h5py.Dataset):
            extra = np.asarray(g["inactive_params"][:n], float)
        else:
            extra = np.broadcast_to(ref[inactive], (n, len(inactive)))
        return mat, np.hstack([np.asarray(params[:n], float), extra])
    finally:
        d.close()


def _augmented(aug, x, idx, epoch):
    """Rows ``idx`` of x, augmented at ``epoch`` (or as they are without an augmenter)."""
    import torch

    idx = np.asarray(idx)
    if aug is None:
        return torch.from_numpy(np.ascontiguousarray(x[idx]))
    return torch.from_numpy(aug.apply(x[idx], idx, epoch))


def _limit_worker_threads(_worker_id: int) -> None:
    """A loader worker renders with one BLAS/OpenMP thread (torch already gives it one)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _shm_free_bytes() -> int | None:
    """Free bytes of /dev/shm (where DataLoader workers pass their tensors), None where there is none."""
    import os

    try:
        st = os.statvfs("/dev/shm")
    except (OSError, AttributeError):
        return None
    return int(st.f_bavail * st.f_frsize)


def _input_batches(aug, x, batches, workers: int = 0, pin: bool = False):
    """The inputs of ``batches`` ((training indices, augmentation epoch) pairs), in order: augmented
    here (``workers`` = 0, or without an augmenter) or rendered ahead by ``workers`` torch
    DataLoader worker processes while the network trains on the batch before. Each row depends
    only on (seed, epoch, sample) (:meth:`Augmenter.apply`), so both give the same bits."""
    if aug is None or workers <= 0 or len(batches) < 2:
        for idx, ep in batches:
            yield _augmented(aug, x, idx, ep)
        return
    import torch
    from torch.utils.data import DataLoader, Dataset

    prefetch = 4
    batch_bytes = 4 * max(len(idx) for idx, _ in batches) * int(np.prod(x.shape[1:]))  # float32 rows
    need, free = (int(workers) * prefetch + 1) * batch_bytes, _shm_free_bytes()
    if free is not None and need > free:  # a container's default /dev/shm is 64 MB: the workers would die mid-epoch
        raise FcinvError(
            f"--loader-workers {workers} needs ~{need / 1e6:.0f} MB of shared memory (/dev/shm) for the batches in "
            f"flight, {free / 1e6:.0f} MB are free (a container's default?): use fewer workers, or give the container more "
            "(docker run --shm-size)"
        )

    class _Batches(Dataset):
        def __len__(self):
            return len(batches)

        def __getitem__(self, i):
            idx, ep = batches[i]
            return _augmented(aug, x, idx, ep)

    # fork: the workers share the dataset array and the augmenter's precomputed weights (copy on write)
    yield from DataLoader(
        _Batches(),
        batch_size=None,
        shuffle=False,
        num_workers=int(workers),
        multiprocessing_context="fork",
        prefetch_factor=prefetch,
        pin_memory=pin and torch.cuda.is_available(),
        worker_init_fn=_limit_worker_threads,
        # its own generator: the loader's worker seed would otherwise be drawn from torch's global
        # RNG, which the VAE's reparameterisation noise comes from
        generator=torch.Generator(),
    )


def _init_from(init_from, kind: str, material: str):
    """The trained network to start from (fine-tuning): a checkpoint of the same kind and material."""
    if init_from is None:
        return None
    from .inverter import load_model

    m = load_model(init_from)
    if m.kind != kind or m.material.lower() != str(material).lower():
        raise FcinvError(f"--init-from {init_from}: a {m.material} {m.kind} model, not a {material} {kind} one")
    return m


#: "epochs" of the augmentation seeds used for the fixed held-out sets (never a training epoch)
VAL_EPOCH, CAL_EPOCH, TEST_EPOCH = 1_000_000, 2_000_000, 3_000_000
#: … and of the single-scan calibration draws (:func:`scan_calibration_draws`)
SCAN_CAL_EPOCH = 2_500_000


#: quantile bins of the predicted σ in the σ-conditional calibration (:func:`sigma_calibration`)
SIGMA_BINS = 5
#: the fewest held-out spectra per bin (the 95.45 % quantile of |z| in a bin needs a few hundred)
SIGMA_MIN_PER_BIN = 200


def calibration_draws(aug, x, idx, seed: int = 0, return_sqe: bool = False):
    """The held-out inputs σ is calibrated on, (2·len(idx), nq, nE) float32: one measurement-model
    draw of each spectrum ``x[idx]`` (epoch :data:`CAL_EPOCH`, as the model's inputs look after
    ``prepare``), then one noise-grid draw of each — a flat background B and Poisson counts P
    (:func:`fcinv_widgets.noise.add_noise`) of a cell of the 5 × 5 grid drawn per spectrum from
    ``SeedSequence([seed, CAL_EPOCH, 1])``. The two halves are the two kinds of input σ must mean
    something for: a realistic measurement and the paper's noise model (which lacks resolution,
    coverage and the residual weighting, so the same predicted σ is too wide there when only
    realistic draws are used). ``return_sqe``: also (len(idx),) bool, which measurement-model draws
    went through the S(Q,E) path (step 0)."""
    from ..measurement import MEASURED_P_CLEAN
    from ..noise import DEFAULT_BACKGROUNDS, DEFAULT_COUNTS, add_noise

    idx = np.asarray(idx)
    n = len(idx)
    aug = aug.forced(p_clean=MEASURED_P_CLEAN)  # as measurements arrive, whatever the training's --clean-fraction
    out = np.empty((2 * n, *np.shape(x)[1:]), np.float32)
    infos = _apply_into(aug, x, idx, CAL_EPOCH, out[:n], return_info=True)
    sqe = np.array([bool(i.get("sqe_weights")) for i in infos], bool)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), CAL_EPOCH, 1]))
    cells = [(b, p) for b in DEFAULT_BACKGROUNDS for p in DEFAULT_COUNTS]
    pick = rng.integers(0, len(cells), n)
    for c in np.unique(pick):
        sel = np.flatnonzero(pick == c)
        out[n + sel] = add_noise(x[idx[sel]], cells[c][0], cells[c][1], rng=rng)[0]
    return (out, sqe) if return_sqe else out


#: rows rendered / predicted at a time by the σ calibration (a multiple of ``predict``'s batch of
#: 256, so the network sees the same batches as in one call): its memory is the float32 draws
#: (~0.24 MB per spectrum on Ge's grid) plus one chunk's temporaries, not ~1.1 MB per spectrum
CAL_CHUNK = 4096


def _apply_into(aug, x, idx, epoch: int, out: np.ndarray, return_info: bool = False) -> list:
    """``aug.apply(x[idx], idx, epoch)`` written into ``out`` :data:`CAL_CHUNK` rows at a time (the
    same rows: each depends only on (seed, epoch, sample)); returns the draw records with
    ``return_info``, else []."""
    infos: list = []
    chunk = CAL_CHUNK
    for a in range(0, len(idx), chunk):
        part = idx[a : a + chunk]
        got = aug.apply(x[part], part, epoch, return_info=return_info, out=out[a : a + len(part)])
        if return_info:
            infos += got[1]
    return infos


def _predict_chunked(model, x, progress: bool = False, **kw) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of ``model.predict`` over ``x`` :data:`CAL_CHUNK` rows at a time (``prepare``
    makes a float64 copy of what it is given)."""
    means, stds = [], []
    chunk = CAL_CHUNK
    for a in range(0, len(x), chunk):
        p = model.predict(x[a : a + chunk], progress=progress, **kw)
        means.append(p.mean)
        stds.append(p.std)
    return np.concatenate(means), np.concatenate(stds)


def scan_calibration_draws(aug, x, idx, geometry: dict | None = None):
    """((len(idx), nq, nE) float32, the σ regime) or None: one draw of each spectrum ``x[idx]``
    through the measurement model as a single scan of the coverage bank (no clean pass-through,
    every draw one scan; through the S(Q,E) path when the model draws it at all, with that
    orientation's own mode weights — as a real scan has them — when the model's
    ``sqe_scan_geometry`` or ``geometry`` (the bank's recorded one, which wins) describes the
    bank), epoch :data:`SCAN_CAL_EPOCH`. The regime is "measured-sqe-scan" for an S(Q,E)-trained model, else
    "measured-scan". None without a coverage bank or, for the S(Q,E) path, without the spectra's
    force constants attached. A single scan is the hardest input the networks meet and the one
    their σ understated most (session 19: ``nb-resnet`` ±2σ 0.68 on single scans of drawn truths;
    the single-scan trust limits 3.2–5.8σ against 2.6–4.1σ on full data)."""
    if aug is None or aug.masks is None or not len(aug.masks):
        return None
    sqe = aug.model.p_sqe > 0
    if sqe and (aug.weighting is None or aug.params is None):
        return None
    extra = {"p_sqe": 1.0} | ({"sqe_scan_geometry": dict(geometry)} if geometry else {}) if sqe else {}
    forced = aug.forced(p_clean=0.0, p_mask=1.0, p_single=1.0, **extra)
    idx = np.asarray(idx)
    out = np.empty((len(idx), *np.shape(x)[1:]), np.float32)
    _apply_into(forced, x, idx, SCAN_CAL_EPOCH, out)
    return out, ("measured-sqe-scan" if sqe else "measured-scan")


def sigma_calibration(y, mean, std, n_bins: int = SIGMA_BINS) -> dict:
    """The σ-conditional post-hoc scale, fitted on a held-out set: for each FC the predicted σ
    (``std``, eV/Å², before any scale) is cut into ``n_bins`` quantile bins and each bin gets its
    :func:`sigma_scale`; at inference the scale is interpolated linearly in log σ between the
    bins' median log σ (constant beyond the outer ones; :meth:`~.inverter._Model.calibrated_std`).
    A network's σ head orders inputs by difficulty better than it sizes them: one scale per FC
    over the whole held-out set is too wide for easy inputs and too narrow for hard ones.
    Returns ``{"kind": "sigma-binned", "bins", "n", "log_sigma": (bins, n_fc), "scales": (bins, n_fc)}``,
    or None when the held-out set has fewer than 2 × :data:`SIGMA_MIN_PER_BIN` spectra (bins are
    reduced to keep that many in each; below two bins only the per-FC scale is meaningful)."""
    y, mean, std = (np.asarray(a, float) for a in (y, mean, std))
    n_bins = min(int(n_bins), len(y) // SIGMA_MIN_PER_BIN)
    if n_bins < 2:
        return None
    logs = np.log(np.maximum(std, 1e-30))
    knots = np.empty((n_bins, y.shape[1]))
    scales = np.empty((n_bins, y.shape[1]))
    for k in range(y.shape[1]):
        order = np.argsort(logs[:, k], kind="stable")
        for j, part in enumerate(np.array_split(order, n_bins)):
            knots[j, k] = float(np.median(logs[part, k]))
            scales[j, k] = float(sigma_scale(y[part, k : k + 1], mean[part, k : k + 1], std[part, k : k + 1])[0])
    return {"kind": "sigma-binned", "bins": int(n_bins), "n": int(len(y)), "log_sigma": knots.tolist(), "scales": scales.tolist()}


#: the fewest held-out draws a σ regime is calibrated on alone (fewer: it falls back, see
#: :meth:`~.inverter._Model.resolved_sigma_regime`)
SIGMA_MIN_PER_REGIME = 100


def _fit_sigma(
    model, x, y, iv, aug, seed: int, n_samples: int = 32, progress: bool = False, scan_geometry: dict | None = None
) -> tuple[list, dict | None, dict]:
    """(pooled per-FC scale, pooled σ-conditional calibration, the same per input regime) of
    ``model`` (its σ unscaled) on :func:`calibration_draws` of the validation spectra ``x[iv]``;
    sets all three on the model. The per-regime pairs are fitted on parts of the draws alone —
    "measured" on the measurement-model draws with the model's intensity, "measured-sqe" on those
    that went through the S(Q,E) path (models trained with ``--sqe-weights``; at least
    :data:`SIGMA_MIN_PER_REGIME` of them), "model-image" on the noise-grid draws — because the
    network's own σ hardly tells them apart (session 15, nb-vae: median σ within 5 % between the
    halves) while its errors differ: the pooled scale left the grid's ±1σ at 0.72–0.79 and the
    measurement draws' ±2σ at 0.93–0.94. Inference picks the regime from what the input says
    about itself (:meth:`~.inverter._Model.invert`). With a coverage bank, one more draw of each
    validation spectrum as a single scan (:func:`scan_calibration_draws`) is the "…-scan" regime's
    alone (session 20; not in the pooled pair, which stays as before); ``scan_geometry``: the
    bank's recorded geometry for those draws' own-orientation weights."""
    xc, sqe = calibration_draws(aug, x, iv, seed, return_sqe=True)
    yc = np.concatenate([y[iv], y[iv]])
    model.set_sigma_calibration(None, None)  # the network's own σ
    kw = {"n_samples": n_samples, "reconstruct": False} if model.kind == "vae" else {}
    mean, std = _predict_chunked(model, xc, progress=progress, **kw)
    del xc
    scale, cal = sigma_scale(yc, mean, std).tolist(), sigma_calibration(yc, mean, std)
    n = len(iv)
    real = np.arange(n)
    parts = {"measured": real[~sqe], "measured-sqe": real[sqe], "model-image": np.arange(n, 2 * n)}
    fits = {reg: (yc[rows], mean[rows], std[rows]) for reg, rows in parts.items()}
    scans = scan_calibration_draws(aug, x, iv, scan_geometry) if n >= SIGMA_MIN_PER_REGIME else None
    if scans is not None:
        fits[scans[1]] = (y[iv], *_predict_chunked(model, scans[0], progress=progress, **kw))
    by_regime = {
        regime: {"sigma_scale": sigma_scale(*f).tolist(), "sigma_calibration": sigma_calibration(*f), "n": int(len(f[0]))}
        for regime, f in fits.items()
        if len(f[0]) >= SIGMA_MIN_PER_REGIME
    }
    model.set_sigma_calibration(scale, cal, by_regime)
    return scale, cal, by_regime


def sigma_scale(y, mean, std, levels=(0.6827, 0.9545)) -> np.ndarray:
    """Post-hoc per-FC scale s of predicted σ on a held-out set: the smallest s with
    P(|y − μ| ≤ s·σ) ≥ 68.27 % and P(|y − μ| ≤ 2s·σ) ≥ 95.45 % (both empirical quantiles of
    |z| = |y − μ|/σ), so that ±1σ and ±2σ intervals cover at least their Gaussian fractions."""
    z = np.abs(np.asarray(y, float) - np.asarray(mean, float)) / np.maximum(np.asarray(std, float), 1e-30)
    return np.maximum(np.quantile(z, levels[0], axis=0), np.quantile(z, levels[1], axis=0) / 2.0)


def train_vae(
    dataset,
    out,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    beta: float = 1.0,
    latent: int = 20,
    base: int = 8,
    hidden: int = 128,
    seed: int = 0,
    max_train: int | None = None,
    patience: int = 6,
    reg_epochs: int = 400,
    device: str = "auto",
    threads: int | None = None,
    resume: bool = False,
    progress: bool = True,
    augment=None,
    masks=None,
    reg_copies: int = 2,
    init_from=None,
    supervise: float = 0.0,
    loader_workers: int = 0,
) -> dict:
    """Train VAE + regressor on ``dataset`` (fcinv HDF5); write ``out/model.pt``. Returns a summary.

    The per-epoch validation R² shown in the progress bar is that of a linear probe
    (ridge regression latent μ → FCs); the final regressor is a neural network on frozen μ.

    ``augment``: None (the paper's model: clean spectra, regressor → FC means) or a
    :class:`~fcinv_widgets.measurement.MeasurementModel` (``True`` = its defaults) applied on
    the fly to every mini-batch, with ``masks`` its coverage bank. Then the VAE is a denoising
    VAE (augmented input, the clean image as reconstruction target), the regressor is
    heteroscedastic (mean and log σ² per FC, β-NLL) trained on the latents of ``reg_copies``
    augmented draws of each training spectrum, and a per-FC σ scale is fitted on a held-out
    augmented draw of the validation spectra (:func:`sigma_scale`).

    ``init_from``: a trained VAE checkpoint (directory or shipped name) whose encoder and decoder
    are the starting point (fine-tuning); the architecture options are then taken from it.

    ``supervise``: λ ≥ 0 of a supervised term added to the VAE's loss while it trains — λ × the
    per-image sum over FCs of the squared error of an auxiliary MLP head (latent sample z →
    standardised FCs; discarded afterwards). 0 is the paper's unsupervised VAE. A reconstruction
    loss alone keeps in the 20 latent dimensions what the image's pixels weigh, not what the weak
    FCs change (a linear probe of the robust ge-vae's μ: R² 0.43 on FC2); the term makes the
    encoder keep the FCs, the decoder and the regressor after it are unchanged.
    """
    import torch

    from ..validate import whole_number
    from .inverter import Inverter
    from .nets import VAE, Regressor, vae_loss

    latent = whole_number(latent, "latent (dimensions)", 1, MAX_LATENT)
    base = whole_number(base, "base (channels)", 1, MAX_CHANNELS)
    hidden = whole_number(hidden, "hidden (units)", 1, MAX_HIDDEN)
    dev, out, x, y, info, iv, it, aug = _prepare(dataset, out, max_train, threads, device, seed, augment, masks, progress)
    xt = torch.from_numpy(x)
    shape = x.shape[1:]
    start = _init_from(init_from, "vae", info["material"])
    if start is not None:
        latent, base, hidden = (int(start.config[k]) for k in ("latent", "base", "hidden"))
    vae = VAE(shape, latent=latent, base=base, hidden=hidden)
    if start is not None:
        vae.load_state_dict(start.vae.state_dict())
    if not np.isfinite(supervise) or supervise < 0:
        raise FcinvError(f"supervise must be a finite λ ≥ 0, not {supervise}")
    head = Regressor(latent, y.shape[1], hidden=hidden) if supervise > 0 else None
    net = vae if head is None else torch.nn.ModuleDict({"vae": vae, "head": head})
    net = net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x_val = _augmented(aug, x, iv, VAL_EPOCH)
    ys = _standardised(y, *_scaler(y, it)).to(dev)

    def supervised(mu, logvar, idx, gen=None):
        """λ × per-image Σ over FCs of (head(z) − y)² on standardised targets, batch mean."""
        if head is None:
            return 0.0
        eps = torch.randn(mu.shape, generator=gen, device="cpu").to(dev) if gen is not None else torch.randn_like(mu)
        z = mu + torch.exp(0.5 * logvar) * eps
        return supervise * ((head(z) - ys[idx]) ** 2).sum(dim=1).mean()

    def encode_all(xs):
        return _batched(lambda b: vae.encode(b)[0], xs, dev).numpy()

    def step(idx, xin):
        xin = xin.to(dev)
        xb = xt[idx].to(dev)
        rec, mu, logvar = vae(xin)
        loss, _, _ = vae_loss(rec, xb, mu, logvar, beta)
        loss = loss + supervised(mu, logvar, idx.to(dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    probe = it[: min(len(it), 1000 if aug is not None else 3000)]
    x_probe = _augmented(aug, x, probe, VAL_EPOCH)

    def validate():
        vl = 0.0
        gen = torch.Generator().manual_seed(seed + 4242)  # the same ε every epoch: a comparable loss
        for s in range(0, len(iv), 256):
            xb = x_val[s : s + 256].to(dev)
            mu, logvar = vae.encode(xb)
            vl += float(vae_loss(vae.decode(mu), xt[iv[s : s + 256]].to(dev), mu, logvar, beta)[0]) * len(xb)
            vl += float(supervised(mu, logvar, torch.from_numpy(iv[s : s + 256]).to(dev), gen)) * len(xb)
        return vl / len(iv), _probe_r2(encode_all(x_probe), y[probe], encode_all(x_val), y[iv])

    best_state, history, vae_seconds = _fit(
        net,
        opt,
        step,
        validate,
        it,
        epochs,
        batch_size,
        seed,
        out / "train_state.pt",
        patience,
        resume,
        progress,
        "VAE",
        dev=dev,
        inputs=lambda b: _input_batches(aug, x, b, loader_workers, pin=dev.type == "cuda"),
    )
    net.load_state_dict(best_state)
    vae = vae.cpu().eval()
    cfg = _base_config("vae", info, shape, np.zeros(y.shape[1]), np.ones(y.shape[1]))
    cfg.update({"latent": latent, "base": base, "hidden": hidden, "reg_hidden": 128, "beta": beta})
    reg, y_mean, y_std, r2_val, reg_seconds, extra = _fit_regressor(
        vae, x, y, it, iv, latent, reg_epochs, seed, progress, aug=aug, copies=reg_copies, workers=loader_workers
    )
    cfg["y_mean"], cfg["y_std"] = y_mean.tolist(), y_std.tolist()
    cfg.update(extra.pop("config"))
    cfg["training"] = {
        **_training_head(dataset, it, iv, history, y),
        "vae_seconds": vae_seconds,
        "regressor_seconds": reg_seconds,
        "seed": seed,
        "val_r2": r2_val.tolist(),
        "history": history,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "loader_workers": int(loader_workers),
        "regressor": "latent samples",
        "init_from": None if init_from is None else str(init_from),
        "supervise": float(supervise),
        **extra,
    }
    return _save(
        Inverter(vae, reg, cfg),
        out / "model.pt",
        r2_val,
        info["names"],
        len(history),
        vae_seconds=vae_seconds,
        regressor_seconds=reg_seconds,
        seconds=vae_seconds + reg_seconds,
        n_val=int(len(iv)),
        **extra,
    )


def _encode(vae, xs):
    import torch

    with torch.no_grad():
        enc = [vae.encode(xs[s : s + 256]) for s in range(0, len(xs), 256)]
    return torch.cat([e[0] for e in enc]), torch.cat([torch.exp(0.5 * e[1]) for e in enc])


def _fit_regressor(
    vae, x, y, it, iv, latent, reg_epochs, seed, progress, n_val_samples: int = 16, aug=None, copies: int = 3, workers: int = 0
):
    """The FC regressor on the frozen encoder, trained on latent *samples* z = μ + σ·ε (fresh ε
    every epoch), i.e. on what inference feeds it (100 samples per spectrum). Trained on μ
    alone, a regressor that leans on dimensions with large σ gives biased sample means.
    Validation: the mean over ``n_val_samples`` samples, as at inference.

    With an augmenter ``aug``: μ, σ of ``copies`` augmented draws of every training spectrum
    (epochs 0 … copies−1 of the augmentation seeds), a heteroscedastic head (β-NLL), and the
    σ scale fitted on another augmented draw of the validation spectra. Returns
    (regressor, y_mean, y_std, val R², seconds, extra dict with a "config" entry)."""
    import torch
    from tqdm.auto import tqdm

    from .nets import Regressor

    vae = vae.cpu().eval()
    n = y.shape[1]
    het = aug is not None
    t1 = time.perf_counter()
    y_mean, y_std = _scaler(y, it)
    yt = _standardised(y, y_mean, y_std)
    if het:
        tr_idx = np.concatenate([it] * copies)
        pairs = [(it[s : s + 512], c) for c in range(copies) for s in range(0, len(it), 512)]
        parts = [_encode(vae, xb) for xb in _input_batches(aug, x, pairs, workers)]
        mu_tr, sd_tr = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        mu_va, sd_va = _encode(vae, _augmented(aug, x, iv, VAL_EPOCH))
    else:
        tr_idx = it
        mu_all, sd_all = _encode(vae, torch.from_numpy(x))
        mu_tr, sd_tr, mu_va, sd_va = mu_all[it], sd_all[it], mu_all[iv], sd_all[iv]
    y_tr = yt[tr_idx]
    reg = Regressor(latent, 2 * n if het else n, hidden=128)
    ropt = torch.optim.Adam(reg.parameters(), lr=2e-3)
    gv = torch.Generator().manual_seed(seed + 991)
    zv = mu_va[None] + sd_va[None] * torch.randn((n_val_samples,) + mu_va.shape, generator=gv)
    loss_of = _loss(het, n)

    def mean_of(out):
        return out[..., :n]

    best_r, best_rstate = np.inf, None
    for ep in tqdm(range(reg_epochs), desc="regressor", unit="epoch", disable=not progress):
        reg.train()
        g = torch.Generator().manual_seed(seed * 7 + ep)
        order = torch.randperm(len(tr_idx), generator=g)
        for s in range(0, len(order), 256):
            j = order[s : s + 256]
            z = mu_tr[j] + sd_tr[j] * torch.randn(mu_tr[j].shape, generator=g)
            loss = loss_of(reg(z), y_tr[j])
            ropt.zero_grad()
            loss.backward()
            ropt.step()
        reg.eval()
        with torch.no_grad():
            o = reg(zv)
            vl = (
                float(loss_of(o.reshape(-1, o.shape[-1]), yt[iv].repeat(n_val_samples, 1)))
                if het
                else float(((mean_of(o).mean(0) - yt[iv]) ** 2).mean())
            )
        if vl < best_r:
            best_r, best_rstate = vl, {k: v.clone() for k, v in reg.state_dict().items()}
    reg.load_state_dict(best_rstate)
    reg.eval()
    with torch.no_grad():
        pv = mean_of(reg(zv)).mean(0).numpy() * y_std + y_mean
    extra = {"config": {}}
    if het:
        from .inverter import Inverter

        cfg = {
            "format": "fcinv-vae",
            "material": "",
            "names": [str(i) for i in range(n)],
            "grid_shape": list(x.shape[1:]),
            "y_mean": y_mean.tolist(),
            "y_std": y_std.tolist(),
            "heteroscedastic": True,
        }
        scale, cal, by_regime = _fit_sigma(Inverter(vae, reg, cfg), x, y, iv, aug, seed)
        extra = {
            "config": {**_aug_config(aug, scale), "sigma_calibration": cal, "sigma_calibration_by_regime": by_regime},
            "sigma_scale": scale,
            "augmented": True,
        }
    return reg, y_mean, y_std, _r2(y[iv], pv), time.perf_counter() - t1, extra


def refit_regressor(
    model_dir,
    dataset,
    reg_epochs: int = 400,
    seed: int = 0,
    max_train: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    masks=None,
) -> dict:
    """Retrain only the FC regressor of a trained VAE checkpoint (``model_dir/model.pt``) on the
    frozen encoder, with the same split (and, for an augmented model, the same measurement
    model) as :func:`train_vae`; rewrites the checkpoint."""
    from .inverter import Inverter, load_model

    _setup(threads, "cpu", seed)
    model_dir = Path(model_dir)
    inv = load_model(model_dir)
    if inv.kind != "vae":
        raise FcinvError(f"{model_dir} holds a {inv.kind} model: only a VAE has a separate regressor")
    x, y, info, iv, it = _data(dataset, max_train, seed)
    if info["material"].lower() != inv.material.lower():
        raise FcinvError(f"the model is for {inv.material}, the dataset for {info['material']}")
    aug = None
    if inv.config.get("augment"):
        from ..measurement import MeasurementModel

        aug = _augmenter(MeasurementModel.from_dict(inv.config["augment"]), info, masks, seed, dataset=dataset, n=len(x))
    reg, y_mean, y_std, r2_val, reg_seconds, extra = _fit_regressor(
        inv.vae, x, y, it, iv, inv.config["latent"], reg_epochs, seed, progress, aug=aug
    )
    cfg = dict(inv.config)
    cfg["y_mean"], cfg["y_std"] = [float(v) for v in y_mean], [float(v) for v in y_std]
    cfg.update(extra.pop("config"))
    tr = dict(cfg.get("training") or {})
    tr.update({"regressor_seconds": reg_seconds, "val_r2": r2_val.tolist(), "regressor": "latent samples", **extra})
    cfg["training"] = tr
    return _save(
        Inverter(inv.vae, reg, cfg),
        model_dir / "model.pt",
        r2_val,
        inv.names,
        reg_epochs,
        seconds=reg_seconds,
        n_val=int(len(iv)),
    )


def train_resnet(
    dataset,
    out,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 2e-3,
    width: int = 16,
    seed: int = 0,
    max_train: int | None = None,
    patience: int = 8,
    weight_decay: float = 1e-4,
    pretrained=None,
    device: str = "auto",
    threads: int | None = None,
    resume: bool = False,
    progress: bool = True,
    augment=None,
    masks=None,
    init_from=None,
    loader_workers: int = 0,
) -> dict:
    """Train a ResNet-18 regressing standardised FCs directly from spectra; write ``out/model.pt``.

    AdamW with a one-cycle learning-rate schedule over ``epochs``; MSE on standardised targets.
    ``pretrained``: a state-dict file (``torch.save(model.state_dict())``, e.g. torchvision's
    ImageNet ResNet-18 weights saved by the user) for transfer learning; it needs
    ``width=64`` to match all layers (see :meth:`ResNet18.load_pretrained`).

    ``augment`` (a :class:`~fcinv_widgets.measurement.MeasurementModel`, ``True`` = defaults;
    ``masks`` its coverage bank): measurement effects applied on the fly to every mini-batch,
    a heteroscedastic head (mean and log σ² per FC, β-NLL instead of MSE) and a per-FC σ
    scale fitted on a held-out augmented draw of the validation spectra.

    ``init_from``: a trained ResNet checkpoint to fine-tune (its width is used); a point-estimate
    head is widened to a heteroscedastic one (log σ² rows start at zero weight, σ = 0.3 in
    standardised units).
    """
    import torch

    from ..validate import whole_number
    from .inverter import ResNetModel
    from .nets import ResNet18

    width = whole_number(width, "width (channels of the first stage)", 1, MAX_CHANNELS)
    dev, out, x, y, info, iv, it, aug = _prepare(dataset, out, max_train, threads, device, seed, augment, masks, progress)
    het = aug is not None
    n = y.shape[1]
    shape = x.shape[1:]
    y_mean, y_std = _scaler(y, it)
    yt = _standardised(y, y_mean, y_std)
    start = _init_from(init_from, "resnet", info["material"])
    if start is not None:  # its architecture and its target scaler (the head's outputs mean that)
        width = int(start.config["width"])
        y_mean, y_std = start.y_mean.copy(), start.y_std.copy()
        yt = _standardised(y, y_mean, y_std)
    net = ResNet18(2 * n if het else n, width=width)
    if start is not None:
        sd = {k: v.clone() for k, v in start.net.state_dict().items()}
        w, b = sd["fc.weight"], sd["fc.bias"]
        if w.shape[0] != net.fc.weight.shape[0]:  # widen a point-estimate head
            sd["fc.weight"] = torch.cat([w, torch.zeros_like(w)])[: net.fc.weight.shape[0]]
            sd["fc.bias"] = torch.cat([b, torch.full_like(b, 2 * math.log(0.3))])[: net.fc.bias.shape[0]]
        net.load_state_dict(sd)
    transfer = None
    if pretrained is not None:
        try:
            sd = torch.load(pretrained, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise FcinvError(f"--pretrained {pretrained}: not a readable state-dict file ({type(exc).__name__}: {exc})") from None
        if isinstance(sd, dict) and "state_dict" in sd:
            sd = sd["state_dict"]
        if not isinstance(sd, dict):
            raise FcinvError(f"--pretrained {pretrained}: holds a {type(sd).__name__}, not a state dict (name → tensor)")
        transfer = net.load_pretrained(sd)
        if not transfer["loaded"]:
            raise FcinvError(
                f"--pretrained {pretrained}: no tensor matches a ResNet-18 of width {width} (use --width 64 for ImageNet weights)"
            )
    net = net.to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(it) + batch_size - 1) // batch_size)
    sched = one_cycle(opt, lr, steps)
    x_val = _augmented(aug, x, iv, VAL_EPOCH)
    loss_of = _loss(het, n)

    def step(idx, xin):
        pred = net(xin.to(dev))
        loss = loss_of(pred, yt[idx].to(dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched.last_epoch + 1 < sched.total_steps:
            sched.step()
        return loss.detach()

    def predict_val(xs):
        return _batched(net, xs, dev)

    def validate():
        p = predict_val(x_val)
        return float(loss_of(p, yt[iv])), _r2(y[iv], p[:, :n].numpy() * y_std + y_mean)

    best_state, history, seconds = _fit(
        net,
        opt,
        step,
        validate,
        it,
        epochs,
        batch_size,
        seed,
        out / "train_state.pt",
        patience,
        resume,
        progress,
        "ResNet-18",
        sched=sched,
        dev=dev,
        inputs=lambda b: _input_batches(aug, x, b, loader_workers, pin=dev.type == "cuda"),
    )
    net.load_state_dict(best_state)
    net = net.cpu().eval()
    dev = torch.device("cpu")
    with torch.no_grad():
        pv = predict_val(x_val)[:, :n].numpy() * y_std + y_mean
    r2_val = _r2(y[iv], pv)
    cfg = _base_config("resnet", info, shape, y_mean, y_std)
    cfg.update(
        {
            "width": width,
            "training": {
                **_training_head(dataset, it, iv, history, y),
                "seconds": seconds,
                "seed": seed,
                "lr": lr,
                "batch_size": batch_size,
                "val_r2": r2_val.tolist(),
                "history": history,
                "device": str(dev),
                "threads": torch.get_num_threads(),
                "loader_workers": int(loader_workers),
                "pretrained": None if pretrained is None else str(pretrained),
                "init_from": None if init_from is None else str(init_from),
                "transfer": None if transfer is None else {k: len(v) for k, v in transfer.items()},
            },
        }
    )
    extra = {}
    if het:
        cfg.update(_aug_config(aug, [1.0] * n))
        scale, _, _ = _fit_sigma(ResNetModel(net, cfg), x, y, iv, aug, seed)  # records all three in cfg
        cfg["training"].update({"augmented": True, "sigma_scale": scale})
        extra = {"sigma_scale": scale, "augmented": True}
    return _save(
        ResNetModel(net, cfg), out / "model.pt", r2_val, info["names"], len(history), seconds=seconds, n_val=int(len(iv)), **extra
    )
