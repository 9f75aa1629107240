"""Measure a model's single-scan trust limit (``trust.json``) on simulated measurements of drawn truths.

The limit (:mod:`fcinv_widgets.models.trust`) is how far, in its own calibrated σ, the truth lies
from a network's answer at most, all active FCs together, in 95 % of realistic simulated
measurements. It is a property of the network's σ alone, so it is measured on the networks —
no physics fits — over:

* truths (:func:`draw_truths`): the active FCs uniformly within ±15 % of the material's
  reference, the inactive ones from N(reference, (1.5 σ_fit)²), dynamically stable only, seeded
  (the first-principles FCs, where the material ships them, are left out: they are what
  ``benchmarks/bench_measurement.py`` measures);
* for each truth the folded coherent one-phonon S(Q,E) at ``temperature_k`` (Debye–Waller, Bose
  factor, ARCS resolution and kinematic coverage at ``ei_mev``, |Q| ≤ ``qmax``) — the full data —
  and single-orientation scans at ``angles_deg`` (:func:`~fcinv_widgets.scans.simulate_scans`);
* each in every (B, P) noise cell: a flat background and Poisson counts at the 99.5th percentile
  (:func:`~fcinv_widgets.noise.add_noise`), then the default correction of a one-phonon S(Q,E)
  (:func:`~fcinv_widgets.analysis.expio.prepare_input`) and the network's answer with σ sized as
  inference sizes it: the S(Q,E) calibration for the full data, the single-scan one for a scan.

The same cases as ``benchmarks/bench_networks_sqe.py`` (same truths and noise seeds; that script
inverts each written file one by one, here the images are batched in memory, so a VAE's latent
draws differ). ``fcinv trust-calibrate`` runs it and, with ``--write``, stores the single-scan
limit beside each checkpoint.
"""

from __future__ import annotations

import numpy as np

from ..errors import FcinvError
from ..validate import MAX_TEMPERATURE_K, finite_number, flag, need_attrs, real_array, whole_number

#: the settings of the shipped models' limits (docs/results.md "Session 18")
DEFAULT_ANGLES_DEG = (0.0, 30.0, 60.0, 90.0, 120.0, 150.0)
DEFAULT_CELLS = ((0.05, 300.0), (0.1, 100.0), (0.2, 30.0))
#: the most truths one call draws (each is a stability check; the benches use 40)
MAX_TRUTHS = 100_000


def draw_truths(material, n: int, seed: int, include_dft: bool = True) -> list[tuple[str, np.ndarray]]:
    """``n`` (name, all-FC params (P,), eV/Å²) truths of a preset material: its first-principles FCs
    first (``dft_params``, when it has them and ``include_dft``), then sets drawn around the
    reference — the inactive FCs from N(reference, (1.5 σ_fit)²) (``nuisance_sigma``), the active
    ones uniformly within ±15 % of the reference — keeping only dynamically stable ones (seeded,
    reproducible: the drawn sets do not depend on ``include_dft``)."""
    from ..materials import as_material

    material = as_material(material)
    n = whole_number(n, "the number of truths", 1, MAX_TRUTHS)
    seed = whole_number(seed, "seed", 0, 2**64 - 1)
    include_dft = flag(include_dft, "include_dft")
    rng = np.random.default_rng(seed)
    has_dft = getattr(material, "dft_params", None) is not None
    truths = [("dft", np.asarray(material.dft_params, float))] if has_dft else []
    inactive = np.setdiff1d(np.arange(material.basis.n_params), material.active)
    fm = material.forward_model().with_backend("numpy")
    while len(truths) < n:
        t = np.asarray(material.reference_params, float).copy()
        t[inactive] += rng.normal(0, 1.5, len(inactive)) * np.asarray(material.nuisance_sigma)
        t[material.active] *= 1 + rng.uniform(-0.15, 0.15, len(material.active))
        if fm.is_stable(t[material.active])[0]:
            truths.append((f"drawn {len(truths)}", t))
    return truths if include_dft else [tv for tv in truths if tv[0] != "dft"]


def simulated_images(material, params, cells, angles_deg, ei_mev: float, temperature_k: float, qmax: float, index: int):
    """The noisy one-phonon S(Q,E) images of one truth ``params`` (P,) eV/Å²: a list of
    (set "full data" / "single scan", label, B, P, (nq, nE) image with NaN where not measured),
    the full data then one per angle, in every cell; noise seeds 1000·``index`` + 10·cell + set."""
    from ..noise import add_noise
    from ..scans import simulate_scans
    from ..sqe import SQE, fold_full, fold_points

    calc = SQE(material.basis, np.asarray(params, float), temperature=temperature_k)
    pts = fold_points(calc, material.grid, qmax, material.conventional_a)
    sets = [("full data", "full data", fold_full(pts, material.grid, sigma_mev=1.0, ei_mev=ei_mev)[0])]
    if len(angles_deg):
        ss = simulate_scans(
            material, ei_mev, list(angles_deg), temperature=temperature_k, params=params, qmax=qmax, progress=False
        )
        sets += [("single scan", f"scan {om:g}°", img) for om, img in zip(angles_deg, ss.scans)]
    out = []
    for ci, (b, p) in enumerate(cells):
        for si, (kind, label, img) in enumerate(sets):
            noisy, _ = add_noise(img, b, p, seed=1000 * index + 10 * ci + si, peak_percentile=99.5)
            out.append((kind, label, float(b), float(p), np.asarray(noisy, float)))
    return out


def network_cases(
    models: dict,
    material,
    n_truths: int = 40,
    seed: int = 101,
    cells=DEFAULT_CELLS,
    angles_deg=DEFAULT_ANGLES_DEG,
    ei_mev: float = 80.0,
    temperature_k: float = 5.0,
    qmax: float = 6.0,
    n_samples: int = 100,
    progress: bool = False,
    scheduler=None,
) -> list[dict]:
    """Every case's row for every model ``{name: model}`` (all of ``material``): {"model", "truth",
    "set", "scan", "B", "P", "true", "mean", "std", "z"} (active FCs, eV/Å²; z = (answer − truth)
    / σ). The images are simulated per truth in this process or as Dask tasks (``scheduler``,
    :func:`~fcinv_widgets.dataset.run_tasks`); each model predicts them in batches."""
    from ..dataset import run_tasks
    from ..models.inverter import input_sigma_regime
    from .expio import Spectrum, prepare_input

    from ..scans import check_ei

    from ..materials import as_material
    from ..models.inverter import _check_predict_args
    from ..noise import MAX_BACKGROUND, check_counts
    from ..scans import check_angles
    from ..sqe import MAX_QMAX

    if not isinstance(models, dict) or not models:
        raise FcinvError(f"models must be a non-empty {{name: model}} dict, got {models!r}"[:200])
    for mname, model in models.items():
        need_attrs(model, ("predict", "kind"), f"models[{mname!r}] must be a loaded model (models.load_model)")
    material = as_material(material)
    n_truths = whole_number(n_truths, "the number of truths", 1, MAX_TRUTHS)
    _check_predict_args(n_samples, seed, 1)
    if isinstance(cells, (str, bytes, dict)) or not hasattr(cells, "__len__") or not len(cells):
        raise FcinvError(f"cells must be a non-empty list of (B, P) pairs, got {cells!r}"[:200])
    for c in cells:
        if isinstance(c, (str, bytes, dict)) or not hasattr(c, "__len__") or len(c) != 2:
            raise FcinvError(f"each noise cell must be a (B, P) pair, got {c!r}"[:200])
        finite_number(c[0], "a cell's background B (fraction of the peak)", positive=False, maximum=MAX_BACKGROUND)
        check_counts(c[1])
    # no angles: full data only
    angles_deg = [] if isinstance(angles_deg, (list, tuple)) and not angles_deg else [float(a) for a in check_angles(angles_deg)]
    check_ei(ei_mev, material.grid)
    temperature_k = finite_number(temperature_k, "the sample temperature (K)", positive=False, maximum=MAX_TEMPERATURE_K)
    qmax = finite_number(qmax, "qmax (Å⁻¹)", positive=True, maximum=MAX_QMAX)
    progress = flag(progress, "progress")
    truths = draw_truths(material, n_truths + (getattr(material, "dft_params", None) is not None), seed)
    drawn = [(i, name, t) for i, (name, t) in enumerate(truths) if name != "dft"]
    args = (list(cells), list(angles_deg), float(ei_mev), float(temperature_k), float(qmax))
    # in this process or as Dask tasks (the material scattered to the workers once: sent with every
    # task it made Dask warn of a 50 MB graph, session 47)
    calls = [((material, t, *args), {"index": i}) for i, _, t in drawn]
    per_truth = run_tasks(simulated_images, calls, "simulated measurements", "truth", progress, scheduler)
    meta = {"intensity": "one-phonon-sqe", "origin": "simulated", "temperature_k": float(temperature_k), "ei_mev": float(ei_mev)}
    cases, images = [], []
    for (_, name, t), imgs in zip(drawn, per_truth):
        for kind, label, b, p, img in imgs:
            image, corrections = prepare_input(Spectrum(img, f"{name}, {label}", "array", None, dict(meta)), material.grid)
            cases.append((name, t, kind, label, b, p, corrections))
            images.append(image)
    x = np.stack(images)
    rows = []
    for mname, model in models.items():
        regimes = [input_sigma_regime(c[6], True, single_scan=c[2] == "single scan") for c in cases]
        kw = {"n_samples": n_samples, "reconstruct": False} if model.kind == "vae" else {}
        pred = model.predict(x, sigma_regime=regimes, **kw)
        for k, (name, t, kind, label, b, p, _) in enumerate(cases):
            true = np.asarray(t, float)[material.active]
            mu, sd = pred.mean[k], pred.std[k]
            rows.append(
                {
                    "model": mname,
                    "truth": name,
                    "set": kind,
                    "scan": label,
                    "B": b,
                    "P": p,
                    "true": true.tolist(),
                    "mean": mu.tolist(),
                    "std": sd.tolist(),
                    "z": ((mu - true) / np.maximum(sd, 1e-30)).tolist(),
                }
            )
    return rows


#: the fewest cases of a kind of data (single scan, full data, pooled) a limit is measured on
MIN_CASES = 20


def limits_of(rows: list[dict], level: float | None = None, min_cases: int = MIN_CASES) -> dict:
    """{model: {"single scan" / "full data" / "pooled": {"n", "limit"}}}: the familywise limit
    (:func:`~fcinv_widgets.models.trust.familywise_limit`) of each kind of data with at least
    ``min_cases`` cases, and the coverage of ±1σ / ±2σ over all FCs ("cov1", "cov2")."""
    from ..models.trust import TRUST_LEVEL, familywise_limit

    level = TRUST_LEVEL if level is None else finite_number(level, "level (familywise confidence)", positive=True, maximum=1.0)
    if level >= 1.0:
        raise FcinvError(f"level must be below 1, got {level!r}")
    min_cases = whole_number(min_cases, "min_cases", 1)
    if isinstance(rows, (str, bytes, dict)) or not hasattr(rows, "__iter__"):
        raise FcinvError(f"rows must be a list of network_cases rows, got {type(rows).__name__}")
    rows = list(rows)
    for r in rows:
        if not isinstance(r, dict) or not {"model", "set", "z"} <= set(r):
            raise FcinvError(f"each row must be a network_cases dict with 'model', 'set' and 'z', got {r!r}"[:200])
        real_array(r["z"], "a row's z (errors in σ)", allow_nan=False)
    out: dict = {}
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        res = {}
        for kind in ("single scan", "full data", "pooled"):
            z = np.array([r["z"] for r in mine if kind == "pooled" or r["set"] == kind], float)
            if len(z) >= min_cases:
                a = np.abs(z)
                res[kind] = {
                    "n": int(len(z)),
                    "limit": familywise_limit(z, level),
                    "cov1": float((a <= 1).mean()),
                    "cov2": float((a <= 2).mean()),
                }
        out[name] = res
    return out
