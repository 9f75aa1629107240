"""Per-scan inference (the paper's Fig. 4): FC predictions for every single-orientation scan,
compared with the prediction from the full data set.

:class:`ScanInference` is the result object the :class:`~fcinv_widgets.OrientationScatter`
widget shows. Arrays are NumPy; FCs in eV/Å²; spectra on the model's (q, E) grid, NaN where a
scan measured nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ScanInference:
    """Predictions for single scans at sample angles ``angles_deg``.

    names        (8,) parameter names, e.g. "FC0 (1NN xx)"
    angles_deg   (n,) sample rotation ω of each scan, degrees
    mean, std    (n, 8) per-scan FC mean and spread over latent samples (eV/Å²; std 0 for a ResNet)
    full_mean    (8,) prediction from the full data set (union of all scans)
    full_std     (8,)
    reference    (8,) reference FCs (e.g. first-principles values) or None
    mse          (n,) mean over FCs of ((mean − full_mean) / domain width)², dimensionless
    inputs       (n, nq, nE) float32 scan spectra, NaN = not covered
    recon        (n, nq, nE) float32 decoder reconstructions (zeros for a ResNet)
    coverage     (n,) fraction of covered pixels of each scan
    """

    names: list
    angles_deg: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    full_mean: np.ndarray
    full_std: np.ndarray
    reference: np.ndarray | None
    mse: np.ndarray
    inputs: np.ndarray
    recon: np.ndarray
    coverage: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Every field checked against the others (a hand-built or tampered result was drawn wrong or
        failed later inside the widget): one :class:`GridMismatchError`/FcinvError naming the field."""
        from ..errors import FcinvError, GridMismatchError
        from ..validate import _dtype_problem, real_array

        if isinstance(self.names, str) or not isinstance(self.names, (list, tuple)):
            raise FcinvError(f"names must be a list of FC names, got {type(self.names).__name__}")
        self.names = [str(x) for x in self.names]
        nfc = len(self.names)
        self.angles_deg = real_array(self.angles_deg, "angles_deg (degrees)", ndim=1, allow_nan=False)
        n = len(self.angles_deg)
        if n == 0 or nfc == 0:
            raise GridMismatchError(f"a scan-inference result needs at least one scan and one FC, got {n} scans, {nfc} FCs")
        for k, shape in (("mean", (n, nfc)), ("std", (n, nfc)), ("full_mean", (nfc,)), ("full_std", (nfc,)), ("mse", (n,))):
            setattr(self, k, real_array(getattr(self, k), k, shape=shape))
        if self.reference is not None:
            self.reference = real_array(self.reference, "reference (eV/Å²)", shape=(nfc,))
        self.coverage = real_array(self.coverage, "coverage (fraction of covered pixels)", shape=(n,))
        if np.any((self.coverage < 0) | (self.coverage > 1)):
            raise FcinvError("coverage (fraction of covered pixels) must lie in [0, 1]")
        for k in ("inputs", "recon"):
            a = np.asarray(getattr(self, k))
            problem = _dtype_problem(a.dtype)
            if problem:
                raise FcinvError(f"{k}: {problem}")
            if a.ndim != 3 or len(a) != n:
                raise GridMismatchError(f"{k} must have shape ({n}, nq, nE) (scans, q, E), got {a.shape}")
        if np.shape(self.recon) != np.shape(self.inputs):
            raise GridMismatchError(f"recon must have the inputs' shape {np.shape(self.inputs)}, got {np.shape(self.recon)}")
        if not isinstance(self.meta, dict):
            raise FcinvError(f"meta must be a dict, got {type(self.meta).__name__}")

    @property
    def order(self) -> np.ndarray:
        """Scan indices from best (lowest MSE) to worst."""
        return np.argsort(self.mse, kind="stable")

    def best_median_worst(self) -> tuple:
        o = self.order
        return int(o[0]), int(o[len(o) // 2]), int(o[-1])

    def table(self) -> str:
        """Text table: reference, full-data prediction ± spread, median of the single scans (eV/Å²)."""
        head = f"{'FC':<16}{'reference':>10}{'full data':>20}{'median scan':>13}"
        med = np.median(self.mean, axis=0)
        rows = [
            f"{n:<16}{(f'{r:+.3f}' if r is not None else '—'):>10}{m:>+13.3f} ± {s:.3f}{md:>+13.3f}"
            for n, r, m, s, md in zip(
                self.names,
                (self.reference if self.reference is not None else [None] * len(self.names)),
                self.full_mean,
                self.full_std,
                med,
            )
        ]
        return "\n".join([head] + rows)

    # HDF5 layout (``format = "fcinv-scan-inference"``): datasets named like the fields
    # (inputs/recon gzip-compressed float32); ``names`` and ``meta`` as JSON attributes;
    # ``reference`` absent when None.
    def save(self, path) -> None:
        import json

        import h5py

        with h5py.File(path, "w") as f:
            f.attrs.update(
                {
                    "format": "fcinv-scan-inference",
                    "version": 1,
                    "names": json.dumps(self.names),
                    "meta": json.dumps(self.meta, default=str),
                }
            )
            for k in ("angles_deg", "mean", "std", "full_mean", "full_std", "mse", "coverage"):
                f[k] = np.asarray(getattr(self, k))
            if self.reference is not None:
                f["reference"] = np.asarray(self.reference, float)
            for k in ("inputs", "recon"):
                f.create_dataset(k, data=np.asarray(getattr(self, k), np.float32), compression="gzip", compression_opts=4)

    @classmethod
    def load(cls, path) -> "ScanInference":
        from ..errors import FcinvError
        from ..validate import format_version, json_loads, open_h5

        with open_h5(path, "scan-inference file") as f:
            if f.attrs.get("format") != "fcinv-scan-inference":
                raise FcinvError(f"{path} is not an fcinv scan-inference file (write one with `fcinv infer-scans --out`)")
            format_version(f.attrs.get("version"), str(path))
            try:
                d = {
                    k: f[k][()]
                    for k in ("angles_deg", "mean", "std", "full_mean", "full_std", "mse", "coverage", "inputs", "recon")
                }
                ref = f["reference"][()] if "reference" in f else None
                names, meta = (json_loads(f.attrs[k], f"{path}: attribute {k}") for k in ("names", "meta"))
                return cls(names=names, reference=ref, meta=meta, **d)
            except FcinvError as exc:
                raise type(exc)(f"{path}: a damaged scan-inference file ({exc})"[:300]) from None
            except (KeyError, ValueError, TypeError) as exc:
                raise FcinvError(f"{path}: a damaged scan-inference file ({type(exc).__name__}: {str(exc)[:100]})") from None


def _reference_fcs(reference, n: int) -> np.ndarray:
    from ..errors import FcinvError
    from ..validate import real_array

    ref = real_array(reference, "reference (FCs, eV/Å²)", allow_nan=False).reshape(-1)
    if ref.shape != (n,):
        raise FcinvError(f"reference must be the model's {n} FCs (eV/Å²), got {ref.size} numbers")
    return ref


def infer_scans(
    model,
    scans,
    full=None,
    angles_deg=None,
    reference=None,
    domain=None,
    n_samples: int = 100,
    seed: int = 0,
    batch: int = 64,
    temperature_k: float | None = None,
    clip_percentile: float | None = None,
    raw: bool = False,
) -> ScanInference:
    """Predict FCs for every single-orientation scan and compare them with the full-data prediction.

    ``scans``: a ScanSet (``.scans`` (n, nq, nE), ``.full``, ``.angles_deg``) or an array
    (n, nq, nE) with ``full`` (nq, nE) and ``angles_deg`` (n,) given. NaN pixels are uncovered.
    ``reference``: FCs (8,) eV/Å² to compare with (e.g. the first-principles reduced values).
    ``domain``: (8, 2) training domain used to make the MSE dimensionless (default: the
    model's config ``domain``). A scan without a single covered pixel is refused clearly.

    A ScanSet is an S(Q,E) at its temperature: its images are corrected to the models'
    intensity once (:func:`~fcinv_widgets.analysis.expio.prepare_scan_set`; ``temperature_k``,
    ``clip_percentile``, ``raw`` override, as in ``fcinv infer-scans``) and ``meta["corrections"]``
    records it. Arrays are taken as they are.
    """
    from ..errors import FcinvError
    from ..models.inverter import _check_predict_args
    from ..validate import fc_box, flag, need_attrs, real_array

    need_attrs(model, ("predict", "names", "config", "kind"), "model must be a loaded model (models.load_model)")
    _check_predict_args(n_samples, seed, batch)
    raw = flag(raw, "raw")
    dom = fc_box(domain if domain is not None else model.config["domain"], len(model.names))
    if reference is not None:
        reference = _reference_fcs(reference, len(model.names))
    corrections = None
    if hasattr(scans, "scans"):
        if full is None and hasattr(scans, "temperature_k"):
            from .expio import prepare_scan_set

            full, fixed, corrections = prepare_scan_set(scans, scans.grid, temperature_k, clip_percentile, raw)
        else:
            fixed = scans.scans
            full = scans.full if full is None else full
        angles_deg = scans.angles_deg if angles_deg is None else angles_deg
        scans = fixed
    x = real_array(scans, "scans")
    if x.ndim != 3:
        raise FcinvError(f"scans must be (n, nq, nE); got shape {x.shape}")
    if full is None or angles_deg is None:
        raise FcinvError("give the full-data spectrum and the scan angles (or a ScanSet)")
    full = real_array(full, "the full-data spectrum")
    if full.shape != x.shape[1:]:
        raise FcinvError(f"the full-data spectrum's shape {full.shape} is not the scans' {x.shape[1:]}")
    ang = real_array(angles_deg, "angles_deg (degrees)", allow_nan=False)
    if ang.shape != (len(x),):
        raise FcinvError(f"{len(x)} scans but {ang.size} angles")
    covered = np.isfinite(x).reshape(len(x), -1)
    empty = np.flatnonzero(~covered.any(1))
    if len(empty):
        raise FcinvError(
            f"{len(empty)} scan(s) measured nothing on the path (all NaN), e.g. ω = {ang[empty[0]]:g}°; "
            "drop them or check the orientation and Ei"
        )
    # scans are measurements (or simulated ones): σ from the measured calibration, the S(Q,E) one
    # for a scan set corrected from a one-phonon S(Q,E); each scan's from the single-scan one
    from ..models.inverter import input_sigma_regime

    regime = input_sigma_regime(corrections, measured=True)
    scan_regime = input_sigma_regime(corrections, measured=True, single_scan=True)
    pf = model.predict(np.asarray(full, float), n_samples=n_samples, seed=seed, sigma_regime=regime)
    means, stds, recs = [], [], []
    for s in range(0, len(x), batch):
        p = model.predict(x[s : s + batch], n_samples=n_samples, seed=seed + 1 + s, sigma_regime=scan_regime)
        means.append(p.mean)
        stds.append(p.std)
        recs.append(p.recon if len(p.recon) else np.zeros_like(x[s : s + batch], dtype=np.float32))
    mean, std = np.concatenate(means), np.concatenate(stds)
    # where the answers lie in the model's training box (models.domain_edge): the full data's, and
    # which scans' answers sit at its edge
    from ..models.domain_edge import domain_edge

    box = np.asarray(model.domain if hasattr(model, "domain") else model.config["domain"], float)
    # a warning only on the full data, and only for a model that adopted it (validated on full spectra)
    edge = domain_edge(pf.mean[0], pf.std[0], box, names=model.names, warns=bool(getattr(model, "edge_warns", False)))
    scans_at_edge = [i for i in range(len(mean)) if domain_edge(mean[i], std[i], box)["at_edge"]]
    width = dom[:, 1] - dom[:, 0]
    mse = (((mean - pf.mean[0]) / width) ** 2).mean(1)
    return ScanInference(
        names=list(model.names),
        angles_deg=ang,
        mean=mean,
        std=std,
        full_mean=pf.mean[0],
        full_std=pf.std[0],
        reference=reference,
        mse=mse,
        inputs=x.astype(np.float32),
        recon=np.concatenate(recs).astype(np.float32),
        coverage=covered.mean(1),
        meta={
            "model": str(getattr(model, "path", "")),
            "kind": model.kind,
            "n_samples": n_samples,
            "corrections": corrections,
            # which σ calibrations sized the full data's and each scan's σ (None: the pooled one)
            "sigma_regime": model.resolved_sigma_regime(regime) if hasattr(model, "resolved_sigma_regime") else None,
            "scan_sigma_regime": model.resolved_sigma_regime(scan_regime) if hasattr(model, "resolved_sigma_regime") else None,
            "domain_edge": edge,
            "scans_at_edge": scans_at_edge,
            "grid_view": grid_view(getattr(model, "grid", None)),
        },
    )


def grid_view(grid) -> dict | None:
    """What a view needs of the (q, E) grid to draw a scan without the grid itself: the energy
    range (bin edges, meV), the q-path labels [[bin, label], …] and breaks (bin indices). Saved in
    a result's ``meta`` (``fcinv infer-scans --out``) so that a loaded file draws true axes."""
    if grid is None:
        return None
    try:
        edges = getattr(grid.e, "edges", None)
        e = np.asarray(edges if edges is not None else grid.e.centers, float)
        return {
            "energy_range_mev": [float(e[0]), float(e[-1])],
            "q_labels": [[float(x), str(t)] for x, t in grid.q.labels],
            "q_breaks": [float(b) for b in getattr(grid.q, "breaks", [])],
            "shape": [int(n) for n in grid.shape],
        }
    except (AttributeError, TypeError, ValueError, IndexError):
        return None


def plot_scan_inference(res: ScanInference, fcs=(0, 1, 2, 3), grid=None, forward_model=None):
    """Fig. 4-style summary: predicted FC vs angle (with full-data and reference lines), MSE vs angle,
    and — with a grid — the best / median / worst scans with the predicted dispersion overlaid."""
    import matplotlib.pyplot as plt

    from ..plotting import plot_spectrum

    fcs = list(fcs)
    show_scans = grid is not None
    fig = plt.figure(figsize=(12, 7.2 if show_scans else 4.2), constrained_layout=True)
    gs = fig.add_gridspec(2 if show_scans else 1, len(fcs) + 1)
    for j, k in enumerate(fcs):
        ax = fig.add_subplot(gs[0, j])
        # (twilight's ends are near-white: a thin dark edge keeps every ω visible on a white axes)
        sc = ax.scatter(
            res.angles_deg, res.mean[:, k], c=res.angles_deg, s=10, cmap="twilight", zorder=3, edgecolors="0.3", linewidths=0.3
        )
        if np.any(res.std[:, k] > 0):
            ax.errorbar(res.angles_deg, res.mean[:, k], yerr=res.std[:, k], fmt="none", ecolor="0.7", lw=0.6, zorder=2)
        ax.axhline(res.full_mean[k], color="k", lw=1.2, label="full data")
        if res.reference is not None:
            ax.axhline(res.reference[k], color="C3", lw=1.2, ls="--", label="reference")
        ax.set_title(res.names[k], fontsize=9)
        ax.set_xlabel("sample angle ω (°)", fontsize=8)
        if j == 0:
            ax.set_ylabel("predicted FC (eV/Å²)", fontsize=8)
            ax.legend(fontsize=7)
    ax = fig.add_subplot(gs[0, len(fcs)])
    ax.scatter(res.angles_deg, res.mse, c=res.angles_deg, s=10, cmap="twilight", edgecolors="0.3", linewidths=0.3)
    ax.set_yscale("log")
    ax.set_xlabel("sample angle ω (°)", fontsize=8)
    ax.set_title("MSE vs full data", fontsize=9)
    fig.colorbar(sc, ax=ax, label="ω (°)")
    if show_scans:
        # three equal panels whatever the number of FCs above (slicing the top row's columns gave
        # 1 : 2 : 2 for four FCs, session 47); each scan min-max scaled as the network sees it, so
        # the three colour bars mean the same ("I (scaled)" had run to 10.5, 2.2 and 0.65)
        from ..noise import minmax

        row = gs[1, :].subgridspec(1, 3)
        for j, (lab, i) in enumerate(zip(("best", "median", "worst"), res.best_median_worst())):
            ax = fig.add_subplot(row[0, j])
            freqs = None
            if forward_model is not None:
                freqs = forward_model.backend.to_numpy(forward_model.frequencies(res.mean[i][None]))[0]
            plot_spectrum(
                minmax(res.inputs[i]),
                grid,
                ax=ax,
                frequencies=freqs,
                vmax=1.0,
                title=f"{lab}: ω = {res.angles_deg[i]:g}°, MSE {res.mse[i]:.2g}, coverage {res.coverage[i]:.0%}",
            )
    return fig


def _run_fits(refine_sqe, material, temperature_k, jobs, common: dict, progress: bool, scheduler) -> list:
    """Every job's ``refine_sqe`` fit, in job order: in this process, or as Dask tasks when a
    ``scheduler`` is given (:func:`~fcinv_widgets.dataset.run_tasks`; the fits are independent)."""
    from ..dataset import run_tasks

    calls = [
        ((material, img, temperature_k), dict(orientations=orient, start=np.asarray(start, float), **common))
        for _, img, orient, start in jobs
    ]
    return run_tasks(refine_sqe, calls, "physics fit per scan", "fit", progress, scheduler)


def refine_scan_inference(
    res: ScanInference,
    ss,
    material,
    temperature_k: float,
    domain=None,
    progress: bool = False,
    scheduler=None,
    single_scan_limit: float | None = None,
    full_data_limit: float | None = None,
    edge_domain=None,
    **kwargs,
) -> ScanInference:
    """The physics fit (:func:`~fcinv_widgets.analysis.refine.refine_sqe`) of the full data and of
    every scan of the scan set ``ss`` (uncorrected S(Q,E), fitted with the detector coverage of
    its orientations), each started at the network's answer in ``res``: a new
    :class:`ScanInference` whose mean/std (and full_mean/full_std) are the fits' MAP values and
    σ (Laplace × ``FIT_SIGMA_SCALE``, eV/Å²) where the fit is trusted (:func:`~fcinv_widgets.analysis.refine.trust_fit`:
    it reached the data's noise and stayed within ``full_data_limit`` of the network's σ — the model's
    :attr:`~fcinv_widgets.models.Inverter.full_data_trust_limit` —, a single
    scan's fit within ``single_scan_limit`` — the model's
    :attr:`~fcinv_widgets.models.Inverter.single_scan_trust_limit`; None: ``TRUST_NETWORK_SIGMA`` — a
    network without σ: the noise check alone), the network's where it is not, and whose MSE is recomputed; the network's
    values and every fit's record (answer, reduced χ², misfit, seconds, stable, trust) are kept in
    ``meta["refined"]``. ``material``:
    the model's material (:func:`~fcinv_widgets.materials.material_for_model`); ``domain`` (8, 2)
    for the MSE (default ``material.domain``); ``edge_domain`` (8, 2): the model's training box when
    it adopts rule F (:attr:`~fcinv_widgets.models.Inverter.edge_one_sided`; None: not used) — a
    fit leaving the box where the network's answer sits at its edge is judged one-sided there;
    ``kwargs`` go to ``refine_sqe``. About 10 s per
    fit for Ge on one core (|Q| ≤ 6 Å⁻¹). ``scheduler`` (a Dask address, "local:N" or a
    ``Client``): the fits run as Dask tasks, in parallel; the results are the same."""
    from ..errors import FcinvError
    from ..materials import as_material
    from ..validate import MAX_TEMPERATURE_K, fc_box, finite_number, flag, need_attrs, need_type
    from .refine import fit_trust_checked, fit_trust_limit, refine_sqe, trust_fit

    need_type(res, ScanInference, "res (the networks' answers, infer_scans)")
    need_attrs(
        ss, ("scans", "full", "angles_deg", "ei_mev"), "ss must be the scan set (scans.ScanSet) that res was inferred from"
    )
    material = as_material(material)
    temperature_k = finite_number(temperature_k, "the sample temperature (K)", positive=False, maximum=MAX_TEMPERATURE_K)
    progress = flag(progress, "progress")
    single_scan_limit = (
        None if single_scan_limit is None else finite_number(single_scan_limit, "single_scan_limit (σ)", positive=True)
    )
    full_data_limit = None if full_data_limit is None else finite_number(full_data_limit, "full_data_limit (σ)", positive=True)
    if len(res.angles_deg) != len(ss.scans) or len(res.names) != len(material.active):
        raise FcinvError(
            f"res holds {len(res.angles_deg)} scans of {len(res.names)} FCs, the scan set {len(ss.scans)} scans of "
            f"{material.name} ({len(material.active)} FCs): not the same inference"
        )
    dom = fc_box(domain if domain is not None else material.domain, len(material.active))
    edge_box = None if edge_domain is None else fc_box(edge_domain, len(material.active), "edge_domain")
    meta = ss.meta if isinstance(getattr(ss, "meta", None), dict) else {}
    common = (
        dict(
            ei_mev=float(ss.ei_mev),
            qmax=meta.get("qmax_inv_a"),
            u=meta.get("u", (1, 1, 0)),
            v=meta.get("v", (0, 0, 1)),
            detector=meta.get("detector_deg"),
        )
        | kwargs
    )
    ang = np.asarray(res.angles_deg, float)
    jobs = [
        (
            "full data",
            np.asarray(ss.full, float),
            [float(a) for a, img in zip(ss.angles_deg, ss.scans) if np.isfinite(img).any()],
            res.full_mean,
        )
    ]
    jobs += [(f"ω = {a:g}°", np.asarray(img, float), [float(a)], m) for a, img, m in zip(ang, ss.scans, res.mean)]
    fits = _run_fits(refine_sqe, material, temperature_k, jobs, common, progress, scheduler)
    act = np.asarray(material.active)
    net_mean = np.vstack([np.asarray(res.full_mean, float)[None], np.asarray(res.mean, float)])
    net_std = np.vstack([np.asarray(res.full_std, float)[None], np.asarray(res.std, float)])
    trusts = [
        trust_fit(
            f,
            m,
            s_,
            names=list(res.names),
            k=fit_trust_limit(f, single_scan_limit, full_data_limit),
            checked=fit_trust_checked(f),
            domain=edge_box,
        )
        for f, m, s_ in zip(fits, net_mean, net_std)
    ]
    pick_mean = np.stack([f.params[act] if t["accepted"] else m for f, t, m in zip(fits, trusts, net_mean)])
    pick_std = np.stack([f.sigma[act] if t["accepted"] else s_ for f, t, s_ in zip(fits, trusts, net_std)])
    mean, std = pick_mean[1:], pick_std[1:]
    mse = (((mean - pick_mean[0]) / (dom[:, 1] - dom[:, 0])) ** 2).mean(1)
    rec = {
        "method": "folded one-phonon S(Q,E) fit of all FCs (refine_sqe) from the network's answer, uncorrected data",
        "network_full_mean": np.asarray(res.full_mean).tolist(),
        "network_full_std": np.asarray(res.full_std).tolist(),
        "network_mean": np.asarray(res.mean).tolist(),
        "network_std": np.asarray(res.std).tolist(),
        "fits": [
            {
                "data": name,
                "chi2_red": f.chi2_red,
                "misfit": f.misfit,
                "noise_ratio": f.noise_ratio,
                "above_noise": f.above_noise,
                "seconds": f.seconds,
                "stable": f.stable,
                "orientations": f.orientations,
                "fc": f.params[act].tolist(),
                "fc_std": f.sigma[act].tolist(),
                "trust": t,
            }
            for (name, *_), f, t in zip(jobs, fits, trusts)
        ],
    }
    return ScanInference(
        names=list(res.names),
        angles_deg=ang,
        mean=mean,
        std=std,
        full_mean=pick_mean[0],
        full_std=pick_std[0],
        reference=res.reference,
        mse=mse,
        inputs=res.inputs,
        recon=res.recon,
        coverage=res.coverage,
        meta=dict(res.meta) | {"refined": rec},
    )
