"""Model evaluation on a dataset's test split: R² and MAE per FC, parity data, and the plots
(a parity grid per FC; R² bars of several models side by side, like the paper's Fig. 2b)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import FcinvError
from ..validate import finite_number, need_attrs, real_array, whole_number
from ..metrics import check_scorable
from .noise_grid import r2_score


def _fc_table(value, what: str, allow_nan: bool = False) -> np.ndarray:
    """(N, n_fc) real numbers, N ≥ 1 (a row of FCs per sample), else one line naming ``what``."""
    a = real_array(value, what, allow_nan=allow_nan)
    if a.ndim != 2 or not a.size:
        raise FcinvError(f"{what}: expected (N, n_fc) numbers, one row per sample, got shape {a.shape}")
    return a


def coverage(true, mean, std, k: float = 1.0) -> np.ndarray:
    """Fraction of samples per FC whose true value lies within mean ± k·std: (8,). A calibrated
    Gaussian σ gives 0.683 for k = 1 and 0.954 for k = 2; σ = 0 gives (almost) 0."""
    true, mean, std = (_fc_table(a, w) for a, w in ((true, "true FCs"), (mean, "predicted FCs"), (std, "σ")))
    if not true.shape == mean.shape == std.shape:
        raise FcinvError(f"true, mean and σ must have one shape, got {true.shape}, {mean.shape}, {std.shape}")
    if np.any(std < 0):
        raise FcinvError("σ must be ≥ 0")
    k = finite_number(k, "k (interval half-width in σ)", positive=False)
    return (np.abs(true - mean) <= k * std).mean(0)


#: the confidence levels of the reliability curve (central intervals of a Gaussian)
RELIABILITY_LEVELS = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.683, 0.8, 0.9, 0.954, 0.99])


def reliability(true, mean, std, levels=RELIABILITY_LEVELS) -> np.ndarray:
    """Observed coverage (len(levels), 8) of the central Gaussian intervals mean ± z(level)·std."""
    from scipy.stats import norm

    lv = real_array(levels, "levels (confidence levels)", allow_nan=False).reshape(-1)
    if not lv.size or np.any((lv <= 0) | (lv >= 1)):
        raise FcinvError(f"levels must be confidence levels in (0, 1), got {levels!r}"[:200])
    z = norm.ppf(0.5 + lv / 2)
    return np.array([coverage(true, mean, std, k) for k in z])


def _regime_record(model, sigma_regime, n: int):
    """What :func:`evaluate_model` records of the σ calibration(s) used."""
    regs = [sigma_regime] * n if sigma_regime is None or isinstance(sigma_regime, str) else list(sigma_regime)
    used = [model.resolved_sigma_regime(r) for r in regs]
    kinds = sorted({str(u) for u in used})
    if len(kinds) <= 1:
        return used[0] if used else None
    return {k: sum(str(u) == k for u in used) for k in kinds}


def realistic_test_set(
    dataset,
    spectra,
    info: dict,
    mask_bank=None,
    sqe_weights=None,
    single_scans: bool = False,
    seed: int = 0,
    resolved_lines: bool = False,
):
    """A dataset's test spectra as an instrument would record them: ``(spectra, regimes, description)``.

    ``spectra``, ``info``: the test split as :func:`~fcinv_widgets.models.train.load_split` gives
    it (the first N rows of ``dataset``'s test split). The measurement model's defaults
    (:mod:`fcinv_widgets.measurement`) applied with ``seed``; ``mask_bank``: an ``.npz`` of coverage
    masks; ``sqe_weights``: the fraction (0–1) rendered with the folded one-phonon S(Q,E) mode
    weights (each single scan with its orientation's own when the bank records its geometry);
    ``single_scans``: every spectrum one single-orientation scan of the bank; ``resolved_lines``:
    S(Q,E) draws on lines of the drawn Ei's ARCS resolution, weighted after
    (``MeasurementModel.sqe_resolved_lines``; the default draws as every shipped model's realistic
    test sets were drawn). ``regimes``: per
    spectrum the σ calibration inference would pick for it (a measurement draw "measured", an
    S(Q,E) draw "measured-sqe", "…-scan" for one single scan); ``description``: one phrase for
    reports. What ``fcinv evaluate --augment`` evaluates on."""
    from ..measurement import MeasurementModel, load_bank, recorded_geometry
    from ..models.inverter import input_sigma_regime
    from ..models.train import TEST_EPOCH, _augmenter

    p_sqe = 0.0 if sqe_weights is None else finite_number(sqe_weights, "sqe_weights (a fraction)", positive=False, maximum=1.0)
    if single_scans and not mask_bank:
        raise FcinvError("single scans need the coverage masks the scans come from (a mask bank)")
    masks, bank_meta = load_bank(mask_bank, info["material"]) if mask_bank else (None, {})
    # a bank that records its geometry (session 16): single-scan S(Q,E) draws get their orientation's weights
    geometry = recorded_geometry(bank_meta) if p_sqe else {}
    if resolved_lines and not p_sqe:
        raise FcinvError("resolved lines apply to S(Q,E) draws: give sqe_weights > 0")
    mm = MeasurementModel(p_sqe=p_sqe, sqe_scan_geometry=geometry, sqe_resolved_lines=bool(resolved_lines))
    if single_scans:
        mm = replace(mm, p_clean=0.0, p_mask=1.0, p_single=1.0)
    aug = _augmenter(mm, info, masks, seed, dataset=dataset, split="test", n=len(spectra))
    x, infos = aug.apply(spectra, np.arange(len(spectra)), TEST_EPOCH, return_info=True)
    regimes = [
        input_sigma_regime(
            {"intensity": "one-phonon-sqe" if i.get("sqe_weights") else "model-image"}, True, single_scan=i.get("scans") == 1
        )
        for i in infos
    ]
    description = (
        f"augmented (measurement model defaults{f', S(Q,E) weights p = {p_sqe:g}' if p_sqe else ''}, seed {seed}"
        f"{', coverage masks' if masks is not None else ''}"
        f"{', single scans with their orientation weights' if geometry else ''}"
        f"{', every spectrum a single scan' if single_scans else ''}"
        f"{', lines of the ARCS resolution weighted after' if resolved_lines else ''})"
    )
    return x, regimes, description


def evaluate_model(
    model, spectra, params, n_samples: int = 100, seed: int = 0, progress: bool = False, sigma_regime=None
) -> dict:
    """Metrics of ``model`` (an Inverter or ResNetModel) on spectra (N, nq, nE) with true FCs (N, 8).

    Returns names, r2 (8,), mae (8,) in eV/Å², coverage_1sigma / coverage_2sigma (8,) (fraction of
    true values within ±1σ / ±2σ of the prediction), reliability ({levels, observed (levels, 8)}),
    recon_mse (None for a ResNet), n_test, and the parity arrays ``true``/``pred``/``pred_std``
    (N, 8) (not JSON: pop them before dumping). ``progress``: a bar over the prediction batches.
    ``sigma_regime``: which of the model's σ calibrations (a regime of
    :data:`~fcinv_widgets.models.inverter.SIGMA_REGIMES` or one per spectrum; None: the pooled one)
    — the one inference would pick for such inputs; recorded as ``sigma_regime``: the calibration
    used, or for several {calibration: number of spectra} (None: the pooled one).
    """
    need_attrs(model, ("predict", "kind", "resolved_sigma_regime"), "model must be a loaded model (models.load_model)")
    y = _fc_table(params, "params (true FCs, eV/Å²)")
    check_scorable(y, getattr(model, "names", [f"FC{i}" for i in range(y.shape[1])]), "evaluation")
    p = model.predict(spectra, n_samples=n_samples, seed=seed, progress=progress, sigma_regime=sigma_regime)
    if y.shape != p.mean.shape:
        raise FcinvError(f"params {y.shape} must be one row of the model's {p.mean.shape[1]} FCs per spectrum ({len(p.mean)})")
    recon = None
    if len(p.recon):
        recon = float(((p.recon - model.prepare(spectra)) ** 2).mean())
    return {
        "names": list(p.names),
        "r2": r2_score(y, p.mean).tolist(),
        "mae": np.abs(p.mean - y).mean(0).tolist(),
        "coverage_1sigma": coverage(y, p.mean, p.std, 1).tolist(),
        "coverage_2sigma": coverage(y, p.mean, p.std, 2).tolist(),
        "reliability": {"levels": RELIABILITY_LEVELS.tolist(), "observed": reliability(y, p.mean, p.std).tolist()},
        "recon_mse": recon,
        "n_test": int(len(y)),
        "kind": model.kind,
        "sigma_regime": _regime_record(model, sigma_regime, len(y)),
        "true": y,
        "pred": p.mean,
        "pred_std": p.std,
    }


def plot_reliability(curves: dict, title=None, ax=None):
    """Reliability diagram: observed vs nominal coverage of the central ±z·σ intervals, one line per
    FC (or per model): ``curves`` = {label: (levels (L,), observed (L,))}. The diagonal is a
    calibrated σ; below it σ is too small (overconfident), above it too large."""
    import matplotlib.pyplot as plt

    if not isinstance(curves, dict) or not curves:
        raise FcinvError(f"curves must be {{label: (levels, observed)}}, got {type(curves).__name__}")
    for lab, c in curves.items():
        if not (isinstance(c, (tuple, list)) and len(c) == 2):
            raise FcinvError(f"curve {lab!r} must be a pair (levels, observed)")
        lv, ob = (real_array(x, f"curve {lab!r}", allow_nan=False).reshape(-1) for x in c)
        if lv.size != ob.size or not lv.size:
            raise FcinvError(f"curve {lab!r} must be (levels, observed) of one length")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4.0), constrained_layout=True)
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, label="calibrated")
    for i, (lab, (lv, ob)) in enumerate(curves.items()):
        ax.plot(lv, ob, marker="o", ms=3, lw=1.2, color=f"C{i % 10}", label=lab)
    ax.axvspan(0.6827, 0.6827, color="0.6")
    ax.set_xlabel("nominal coverage (central Gaussian interval)")
    ax.set_ylabel("observed coverage (test set)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6, loc="upper left")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_parity(true, pred, names, r2=None, pred_std=None, title=None, max_points: int = 1500):
    """A 2×4 grid of predicted vs true FC (eV/Å²) with the identity line and R² per panel."""
    import matplotlib.pyplot as plt

    true, pred = _fc_table(true, "true FCs"), _fc_table(pred, "predicted FCs")
    if true.shape != pred.shape:
        raise FcinvError(f"true and predicted FCs must have one shape, got {true.shape} and {pred.shape}")
    n = true.shape[1]
    if isinstance(names, (str, bytes)) or not hasattr(names, "__len__") or len(names) != n:
        raise FcinvError(f"names must be {n} FC names, got {names!r}"[:200])
    if pred_std is not None and np.shape(pred_std) != true.shape:
        raise FcinvError(f"pred_std must have the shape of the FCs {true.shape}, got {np.shape(pred_std)}")
    max_points = whole_number(max_points, "max_points", 1)
    r2 = r2_score(true, pred) if r2 is None else np.asarray(r2)
    sel = np.arange(len(true))[:max_points]
    cols = 4
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.9 * rows), constrained_layout=True, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        t, p = true[sel, k], pred[sel, k]
        lo, hi = min(t.min(), p.min()), max(t.max(), p.max())
        if pred_std is not None and np.any(np.asarray(pred_std)[sel, k] > 0):
            ax.errorbar(t, p, yerr=np.asarray(pred_std)[sel, k], fmt="none", ecolor="0.75", lw=0.5, zorder=1)
        ax.scatter(t, p, s=3, alpha=0.5, color="C0", lw=0, zorder=2)
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.set_title(f"{names[k]}\nR² = {r2[k]:.3f}", fontsize=9)
        ax.set_xlabel("true (eV/Å²)", fontsize=8)
        if k % cols == 0:
            ax.set_ylabel("predicted (eV/Å²)", fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_r2_bars(metrics: dict, title=None, ax=None):
    """Grouped bars of R² per FC for several models: ``metrics`` = {label: metrics dict}.

    Each metrics dict needs ``names`` and ``r2`` (e.g. a shipped model's metrics.json).
    """
    import matplotlib.pyplot as plt

    if not isinstance(metrics, dict) or not metrics:
        raise FcinvError(f"metrics must be {{label: metrics dict}}, got {type(metrics).__name__}")
    n = None
    for lab, m in metrics.items():
        ok = isinstance(m, dict) and isinstance(m.get("names"), list) and isinstance(m.get("r2"), list)
        if not ok or len(m["r2"]) != len(m["names"]) or not all(isinstance(v, str) for v in m["names"]):
            raise FcinvError(f"metrics[{lab!r}] needs 'names' (text) and 'r2' lists of one length (a metrics.json)")
        if n is not None and len(m["names"]) != n:
            raise FcinvError(f"metrics[{lab!r}] has {len(m['names'])} FCs, the first {n}: the bars compare like with like")
        n = len(m["names"])
        real_array([np.nan if v is None else v for v in m["r2"]], f"metrics[{lab!r}]['r2']")
    labels = list(metrics)
    names = metrics[labels[0]]["names"]
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 3.2), constrained_layout=True)
    w = 0.8 / len(labels)
    x = np.arange(len(names))
    for i, lab in enumerate(labels):
        r2 = np.asarray(metrics[lab]["r2"], float)
        bars = ax.bar(x + (i - (len(labels) - 1) / 2) * w, np.clip(r2, -0.05, None), w, label=lab)
        for b, v in zip(bars, r2):
            ax.text(
                b.get_x() + b.get_width() / 2, max(v, 0) + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=6, rotation=90
            )
    ax.set_xticks(x, [n.split(" ")[0] for n in names])
    ax.set_ylabel("R² (test set)")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.15)
    ax.axhline(1.0, color="k", lw=0.5)
    ax.legend(fontsize=8, ncol=len(labels), loc="upper right")
    if title:
        ax.set_title(title, fontsize=10)
    return ax
