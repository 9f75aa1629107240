"""Out-of-distribution (OOD) check: is a spectrum like anything the model was trained on?

Per model, statistics of its in-distribution inputs, stored as ``ood.json`` beside
``model.pt`` (written by ``fcinv ood-calibrate`` / :func:`calibrate`, recomputable for any
retrained model):

* **feature distance** — the Mahalanobis distance of the input's features to the training
  features: the VAE's latent mean μ (all latent dimensions), the ResNet's globally pooled
  last-stage activations (projected on their top principal components, plus the norm of what
  those components leave out, the "residual");
* **reconstruction misfit** (VAE only), between the (min-max scaled) input and the decoder's
  reconstruction at μ over the measured (finite) pixels: ``recon``, the mean squared difference
  after both are smoothed by a Gaussian of ``SMOOTH_PX`` pixels (counting noise averages out,
  structure the decoder cannot produce does not); ``profile``, the largest absolute mean
  difference along a whole energy row or q column (a spurious flat band); and ``missing``,
  the smoothed intensity the reconstruction puts where the input has less, as a fraction of
  the input's total (branches the model expects that the data lack, e.g. another crystal);
* **physics misfit** (both kinds, ``physics``): the smoothed mean squared difference between the
  input and the forward model's image at the FCs the model predicts for it (the model's own
  material, reference and grid), after a least-squares scale and linear background (flat and
  sloping along E and q) per spectrum. A spectrum the
  model can invert is explained by the phonons of the FCs it returns, up to noise and what the
  eight parameters cannot express; another crystal's dispersion, a spurious band or pure noise
  is not, however well a denoising decoder reproduces it.

The reported ``score`` combines them: Σ_k max(0, log(s_k / scale_k)), scale_k the score's 90th
percentile over in-distribution spectra (:data:`COMBINE_REF_QUANTILE`; the median in files from
before session 11) — several moderately unusual scores add up (another crystal's dispersion: a latent
point at the edge of the training cloud *and* branches the decoder adds that the data lack), while
the right crystal's ordinary spread adds nothing.
Its ``threshold`` is a high quantile (default 0.99) of the combined score over in-distribution
spectra not used for the feature statistics — the clean test spectra and noisy copies at the
noise grid's levels (:mod:`fcinv_widgets.analysis.noise`, default the cells with B ≤ 0.2,
P ≥ 30), whichever of the two quantiles is larger. A spectrum is also flagged when a single
score exceeds its own 1 − (1 − q)/n quantile, n the number of scores (Bonferroni: e.g. 0.998 for
five; pure noise, a bright spurious band).

**Two regimes.** What an instrument does to a spectrum (resolution, the residual intensity
weighting of a corrected S(Q,E), an elastic line, backgrounds, partial coverage) moves every
score above — the reconstruction and unit-weight physics misfits most — for the right crystal
as much as for a wrong one. Inputs that say they are measured or a one-phonon S(Q,E)
(:func:`is_measured_input`) are therefore judged in a **measured** regime, calibrated on the
model's own measurement-model draws (:mod:`fcinv_widgets.measurement`) instead of clean and
noisy images, with the scores that still separate there: the feature distance(s), the
``profile`` misfit (VAE; a spurious band) and ``refit``: the fraction of the data's structure
(smoothed, after a per-q-column flat + sloping background and elastic-tail fit) that the
forward model cannot explain once it is *refitted* under the measurement effects — per q
column a free scale (the residual weighting) and a broadening term, the resolution chosen
among the measurement model's Ei kernels, and a few damped Gauss–Newton steps of the active
FCs from the model's prediction (whose error alone would otherwise look like a misfit), the
kernel chosen again at the new FCs and the steps repeated until it stays (session 11). The
right crystal leaves noise; another crystal's branches stay unexplained. And ``band``
(session 10): the largest mean of that refit's residual along one energy row (above the
elastic line's reach), in units of the structure's RMS — a spurious flat band, which the
per-column fits cannot absorb in every column at once, and which the ResNets' features do not
see. A model without a measurement model (the paper models) or an older ``ood.json`` has only
the model-image regime; an ``ood.json`` calibrated before a score existed uses the scores it knows.

**Weak data** (session 19, both regimes): an input whose structure rises less than its own
counting noise (:func:`structure_to_noise` below :data:`MIN_STRUCTURE_TO_NOISE`) is flagged with
that reason, whatever the scores say (``weak_data``; ``scores_flag`` keeps their verdict): no
score can tell the crystal from it — e.g. a 300 K S(Q,E) with few counts, whose brightest pixels
the Bose factor puts near Γ. The refit of an input corrected from a one-phonon S(Q,E) uses the
temperature it was corrected at (:func:`input_temperature`; its Debye–Waller factor and the
background shapes a raw background takes under the correction, :func:`_background_shapes`).

**A limit by signal on S(Q,E) inputs** (rule C, session 32, pre-registered; tried and adopted for no
shipped model — calibrated over several incident energies its limits are set by the worst one, docs/results.md
OOD "Session 32"; the mechanism stays for a model calibrated per setup): the check's verdict is
r > 1, r the largest of the combined score over its threshold and each single score over its own
(:meth:`OODStats.ratio`). For a one-phonon S(Q,E) input of at least the calibration's coverage,
judged in the measured regime and not weak data, the right crystal's r falls with the input's
structure-to-noise while another crystal's falls more slowly; where the model's ``ood.json``
carries ``sqe_limits`` (split-conformal quantiles of r over the right crystal's simulated S(Q,E)
measurements, per structure-to-noise bin; ``benchmarks/ood_limits.py``) the verdict is r > the
input's bin's limit instead (:meth:`OODStats.sqe_limit`; the record's ``limit`` and ``signal_limit``).

**The refit's excess over the noise on S(Q,E) inputs** (rule E, session 34, pre-registered): on the
right crystal's noisy S(Q,E) the refit leaves about the input's noise share of its structure,
1/(1 + structure-to-noise), whatever the signal; another crystal's branches stay unexplained on top
of it. :func:`refit_excess` is that excess. Where the model's ``ood.json`` carries ``sqe_excess``
(a split-conformal limit on it over the right crystal's simulated S(Q,E) measurements inside the
training Ei range; ``benchmarks/ood_excess.py``), a one-phonon S(Q,E) input judged in the measured
regime, not weak data, of at least the calibration's coverage and of a known Ei inside that range is
also flagged when its excess exceeds the limit (:meth:`OODStats.sqe_excess_limit`; the record's
``refit_excess``). A table with ``by_ei`` (rule E by Ei, session 41) holds one limit per calibration Ei
and judges an input by the larger of the two around its Ei (:func:`limits_at_ei`).

**A single scan** (rule S, session 35; rule S′, session 38; both pre-registered): one orientation averages,
per pixel, only the equivalents it reaches, so the full-data limits do not describe it. Where ``ood.json``
carries ``scan_limits`` a single scan of a one-phonon S(Q,E) (not weak data, of known Ei inside the
calibration's range) is judged by each score against a limit of its own (:meth:`OODStats.scan_limit`).
When the scan's orientation is known (:func:`scan_orientation`, ``orientation=``) and ``ood.json``
carries ``scan_limits_oriented``, the refit's S(Q,E) candidate follows that scan's coverage
(:func:`_oriented_renderer`) and rule S′'s limits judge the scores; an ``excess_limit`` in that table
also limits the oriented refit's excess (rule S′E; adopted by no shipped model).

``ood.json`` records the SHA-256 of the ``model.pt`` it was computed for: statistics of another
(e.g. retrained) checkpoint are not used (run ``fcinv ood-calibrate`` again).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FcinvError
from ..validate import flag as flag_arg
from ..validate import format_version, json_loads

FORMAT = "fcinv-ood"
#: noise cells used for the thresholds: the grid's operating region (B ≤ 0.2, P ≥ 30)
DEFAULT_LEVELS = tuple((b, p) for b in (0.0, 0.05, 0.1, 0.2) for p in (1000.0, 300.0, 100.0, 30.0))
MAX_COMPONENTS = 32
#: the augmentation "epoch" of the calibration draws (never a training epoch)
OOD_EPOCH = 1_000_003
SMOOTH_PX = 2.0
MIN_PROFILE_PIXELS = 10
LABELS = {
    "latent": "latent distance",
    "feature": "feature distance",
    "residual": "feature residual",
    "recon": "smoothed reconstruction misfit",
    "profile": "reconstruction misfit along an energy row or q column",
    "missing": "reconstructed intensity missing from the data",
    "physics": "misfit to the forward model at the predicted FCs",
    "refit": "structure the forward model leaves unexplained when refitted under measurement effects",
    "band": "refit misfit along one energy row (a spurious band)",
}
#: scores judged by their own threshold only, not summed into the combined score: ``band`` has a
#: heavy in-distribution tail (the residual weighting's energy dependence leaves row-wise misfit
#: in the right crystal's data too), which raised the combined threshold and cost ~10 points of
#: another crystal's detection when it was summed (measured, session 10)
SINGLE_ONLY = ("band",)
#: the scores of the measured-input regime (those a model has)
MEASURED_SCORES = ("latent", "feature", "residual", "profile", "refit", "band")
#: Gauss–Newton steps of the refit, relative finite-difference step (of the domain width)
REFIT_STEPS = 4
#: rounds of (choose the resolution kernel at the current FCs, Gauss–Newton steps), until the kernel stays
REFIT_ROUNDS = 3
REFIT_FD = 1e-3
#: half width (meV) of the elastic tail's Lorentzian in the per-column background of the refit
REFIT_ELASTIC_MEV = 3.0
#: the ``band`` score looks at energy rows from here up (meV): below, the elastic line's tail
#: (resolution width up to ~3 meV at the measurement model's Ei) leaves row-wise residuals in
#: the right crystal's data too (measured, session 10: ge-resnet's in-distribution 99th
#: percentile 1.81 over all rows, 0.48 from 10 meV up)
BAND_MIN_MEV = 3 * REFIT_ELASTIC_MEV
#: a q column takes part in the refit with at least this many measured pixels
REFIT_MIN_PIXELS = 10
#: the combined score measures each score's excess over this in-distribution quantile (its
#: "scale"), not over its median: the refit's median is ~30× below another crystal's, so an
#: ordinary in-distribution spectrum above it added log(s/median) ≈ 2 and raised the combined
#: threshold (session 11; statistics files without scales use the medians, as before)
COMBINE_REF_QUANTILE = 0.9
#: below this structure-to-noise ratio (:func:`structure_to_noise`: the smoothed structure's power
#: over the smoothed counting noise's) an input is "weak data": flagged, with that reason
MIN_STRUCTURE_TO_NOISE = 1.0
#: the weak-data level of a one-phonon S(Q,E) input (one the check is told a correction temperature
#: for): rule W (session 31, written down before its validation): between 1 and 3 the right
#: crystal's S(Q,E) inputs were flagged by the scores in 59–100 % (seeds 31 + 32), as often as
#: another crystal's — the check cannot tell the crystal there (docs/results.md, OOD)
MIN_STRUCTURE_TO_NOISE_SQE = 3.0


def weak_level(temperature_k=None):
    """The weak-data level of an input (one, or (N,) for one temperature per spectrum):
    :data:`MIN_STRUCTURE_TO_NOISE_SQE` for a one-phonon S(Q,E) corrected at ``temperature_k``
    (K; NaN entries: not an S(Q,E)), else :data:`MIN_STRUCTURE_TO_NOISE`."""
    if temperature_k is None:
        return MIN_STRUCTURE_TO_NOISE
    t = np.asarray(temperature_k, float)
    return np.where(np.isfinite(t), MIN_STRUCTURE_TO_NOISE_SQE, MIN_STRUCTURE_TO_NOISE)


def is_measured_input(corrections: dict | None) -> bool:
    """True when :func:`~fcinv_widgets.analysis.expio.prepare_input`'s record says the input is a
    measurement or a one-phonon S(Q,E) (corrected now or in its file): the measured regime."""
    c = corrections or {}
    return bool(c.get("origin") == "measured" or c.get("intensity") == "one-phonon-sqe" or c.get("already_applied"))


def input_temperature(corrections: dict | None) -> float | None:
    """The temperature (K) at which :func:`~fcinv_widgets.analysis.expio.prepare_input` corrected a
    one-phonon S(Q,E) by E/(n+1) — now or, as its file says, before — else None."""
    c = corrections or {}
    for rec in (c, c.get("already_applied") if isinstance(c.get("already_applied"), dict) else {}):
        t = (rec.get("bose_weighting") or {}).get("temperature_k")
        if t is not None:
            return float(t)
    return None


#: what :func:`note_sqe_input` adds to a measured-regime record of a one-phonon S(Q,E) input
SQE_INPUT_NOTE = (
    "a one-phonon S(Q,E) input: the measured regime's thresholds are calibrated on unit-weight measurement "
    "draws, and simulated S(Q,E) measurements of the right crystal whose structure rises only a few times above "
    "their noise are often flagged too (docs/results.md, OOD) — on such an input a flag alone is weak evidence"
)


#: what :func:`note_sqe_input` adds to the record of a single scan not judged by rule S
SCAN_INPUT_NOTE = (
    "a single scan of a one-phonon S(Q,E): the check's thresholds were not calibrated on single scans, and "
    "simulated single scans of the right crystal are often flagged (docs/results.md, OOD, session 35) — on such an input "
    "a flag alone is weak evidence"
)


#: the version of the check's scoring: what rates and limits measured on its verdicts
#: (:attr:`OODStats.sqe_rates`, :attr:`OODStats.sqe_limits`; ``check_version`` in them, 1 when absent)
#: describe. 2 since session 33: the refit's S(Q,E) renderer broadens the raw S(Q,E) before the
#: E/(n+1) correction (:func:`_as_measured`), which lowers the right crystal's ``refit`` on warm and
#: high-Ei inputs — rates measured with version 1 are not quoted for version 2's verdicts
OOD_CHECK_VERSION = 2


def _is_version(v) -> bool:
    """A ``check_version`` value: a whole number ≥ 1 (not true/false)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def check_version_of(table: dict) -> int:
    """The :data:`OOD_CHECK_VERSION` a rates, limits or excess table was measured with (1: before it
    was recorded; −1 for a value that is no version)."""
    v = table.get("check_version", 1)
    return v if _is_version(v) else -1


#: a structure-to-noise bin of :attr:`OODStats.sqe_rates` with fewer of the right crystal's inputs
#: than this says too little to replace :data:`SQE_INPUT_NOTE`
MIN_RATE_CASES = 10
#: the rates of :attr:`OODStats.sqe_rates` are quoted for an input measured within this fraction of
#: an Ei they were measured at (or of unknown Ei): session 32 measured the right crystal's flag rate
#: at other incident energies at up to 30 % (``ge-resnet``, Ei 120 meV) where Ei 80 meV gave 1 %
RATE_EI_TOLERANCE = 0.1


def note_sqe_input(record: dict | None, corrections: dict | None, stats: OODStats | None = None) -> dict | None:
    """Add an ``input_note`` to an OOD ``record`` (:meth:`OODStats.check`) judged in the measured
    regime when ``corrections`` (``prepare_input``'s record) say the input is a one-phonon S(Q,E)
    and it was not flagged as weak data (whose reason says why): the false-alarm rate on such inputs
    depends on their signal (session 19, ``benchmarks/bench_ood.py``: 28–62 % of the right crystal's
    realistic S(Q,E) draws that are not weak data), and a user should know it before acting on the
    flag. When ``stats`` carry :attr:`OODStats.sqe_rates` measured for this checkpoint (session 31),
    the record also gets ``sqe_flag_rates`` — how often simulated S(Q,E) measurements of the right
    crystal and of another one with this input's structure-to-noise were flagged — and the note
    says those numbers; else (or with fewer than :data:`MIN_RATE_CASES` right-crystal cases in its
    bin) :data:`SQE_INPUT_NOTE`. Returns the record."""
    if (
        record is not None
        and record.get("regime") == "measured"
        and not record.get("weak_data")
        and (corrections or {}).get("intensity") == "one-phonon-sqe"
    ):
        if record.get("single_scan"):  # the full-data rates do not describe a single scan
            rule = record.get("scan_rule")
            name = ("S′" if rule.get("oriented") else "S") if rule else "full-data"
            record["input_note"] = _scan_rule_note(stats, name)
            return record
        rate = stats.sqe_rate(record.get("structure_to_noise")) if stats is not None else None
        if rate is not None:
            record["sqe_flag_rates"] = rate
        ei = (corrections or {}).get("ei_mev")
        measured_at = rate.get("measured_ei_mev") if rate is not None else None
        if rate is None or rate["own_n"] < MIN_RATE_CASES:
            record["input_note"] = SQE_INPUT_NOTE
        elif ei is not None and measured_at and not any(abs(float(ei) - e) <= RATE_EI_TOLERANCE * e for e in measured_at):
            rate["applies"] = False
            record["input_note"] = (
                f"a one-phonon S(Q,E) input at Ei {float(ei):g} meV: this model's flag rates by signal were measured at Ei "
                + ", ".join(f"{e:g}" for e in measured_at)
                + " meV, and at other incident energies the right crystal's inputs were flagged at other rates (docs/results.md, "
                "OOD, sessions 32–34: up to 30 % before the refit's fix, 8 % at 95–110 meV after it) — on this input a "
                "flag alone is weaker evidence"
            )
        else:
            rate["applies"] = True
            record["input_note"] = rate_note(rate)
    return record


def scan_rule_of(stats: OODStats, ei_mev=None, oriented: bool = False) -> dict:
    """How :meth:`OODStats.flags` judges single scans of a one-phonon S(Q,E) at Ei ``ei_mev`` (meV)
    in the measured regime, ``oriented``: their orientations given — {"rule": "S′" (rule S′, the
    orientations used), "S" (rule S) or "full-data" (the full-data thresholds), "note": the
    held-out single-scan rates of that rule (:func:`scan_rate_note`) or :data:`SCAN_INPUT_NOTE`}."""
    if oriented and stats.scan_limit(ei_mev, oriented=True) is not None:
        name = "S′"
    else:
        name = "S" if stats.scan_limit(ei_mev) is not None else "full-data"
    return {"rule": name, "note": _scan_rule_note(stats, name)}


def _scan_rule_note(stats: OODStats | None, rule: str) -> str:
    """The ``input_note`` of a single scan judged by ``rule`` ("S′", "S" or "full-data"): that rule's
    held-out single-scan rates (:func:`scan_rate_note`; the full-data verdict's ``scan_rates`` only
    for a model without rule S and of this :data:`OOD_CHECK_VERSION`), else :data:`SCAN_INPUT_NOTE`."""
    if stats is None:
        return SCAN_INPUT_NOTE
    if rule in ("S′", "S"):
        table = stats.scan_limits_oriented if rule == "S′" else stats.scan_limits
        rates = table.get("rates")
        by_ei = bool(table.get("by_ei"))
        return scan_rate_note(rates, True, oriented=rule == "S′", by_ei=by_ei) if rates else SCAN_INPUT_NOTE
    own = stats.scan_rates if stats.scan_rates and not stats.scan_limits else {}
    ok = bool(own) and check_version_of(own) == OOD_CHECK_VERSION  # (counted without rule S)
    return scan_rate_note(own, False) if ok else SCAN_INPUT_NOTE


def _count_text(k: int, n: int) -> str:
    """ "k of n (p %)" for a rate note, or "none measured"."""
    return f"{k} of {n} ({k / n:.0%})" if n else "none measured"


def scan_rate_note(rates: dict, rule_s: bool, oriented: bool = False, by_ei: bool = False) -> str:
    """The ``input_note`` of a single scan from the held-out single-scan rates of the check that
    judged it: rule S's (:attr:`OODStats.scan_limits`), rule S′'s (``oriented``:
    :attr:`OODStats.scan_limits_oriented`) or, without either, the check's own (:attr:`OODStats.scan_rates`);
    ``by_ei``: that rule's limits are set by Ei (:func:`limits_at_ei`)."""
    limits = "single-scan limits by Ei" if by_ei else "single-scan limits"
    if oriented:
        how, table = f"of known orientation, judged against {limits} (rule S′)", "scan_limits_oriented"
    else:
        how = f"judged against {limits} (rule S)" if rule_s else "judged by the full-data thresholds"
        table = "scan_limits" if rule_s else "scan_rates"
    return (
        f"a single scan of a one-phonon S(Q,E), {how}: held-out simulated single scans of the right crystal were "
        f"flagged in {_count_text(rates['own_flagged'], rates['own_n'])}, of {rates['other']} in "
        f"{_count_text(rates['other_flagged'], rates['other_n'])} (docs/results.md, OOD; ood.json {table})"
    )


def rate_note(rate: dict) -> str:
    """The ``input_note`` of an S(Q,E) input from its bin of :attr:`OODStats.sqe_rates`."""
    lo, hi = rate["structure_to_noise_range"]
    where = f"{lo:g}–{hi:g}" if hi is not None else f"≥ {lo:g}"

    at = rate.get("measured_ei_mev")
    return (
        f"a one-phonon S(Q,E) input with structure-to-noise {where}: at that signal the right crystal's simulated "
        f"S(Q,E) measurements" + (f" (Ei {', '.join(f'{e:g}' for e in at)} meV)" if at else "") + " were flagged in "
        f"{_count_text(rate['own_flagged'], rate['own_n'])}, {rate['other']} in "
        f"{_count_text(rate['other_flagged'], rate['other_n'])} (docs/results.md, OOD; ood.json sqe_rates)"
    )


def _ei_arg(ei_mev) -> float | None:
    """An OOD check's ``ei_mev`` argument: None, or one finite number > 0 (meV; else one line)."""
    from ..validate import finite_number

    return None if ei_mev is None else finite_number(ei_mev, "ei_mev (meV)", positive=True)


def _is_number(v) -> bool:
    """One finite real number > 0 (not text, a list or true/false)."""
    from ..validate import is_real_number

    return is_real_number(v) and bool(np.isfinite(float(v))) and float(v) > 0


def _bin(edges, v: float) -> tuple[int, list]:
    """(index, [low, high or None]) of the bin of lower ``edges`` (the last open) holding ``v`` ≥ edges[0]."""
    i = int(np.searchsorted(edges, v, side="right")) - 1
    return i, [float(edges[i]), float(edges[i + 1]) if i + 1 < len(edges) else None]


def _bin_edges(d: dict, name: str) -> list:
    """The ``edges`` of a per-bin table in ood.json: increasing finite numbers ≥ 0 (ValueError naming ``name``)."""
    edges = [float(v) for v in d["edges"]]
    if not edges or not all(np.isfinite(edges)) or edges[0] < 0 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"{name} edges must be increasing finite numbers ≥ 0, got {d['edges']!r}")
    return edges


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------- raw scores
def _smooth(z: np.ndarray, mask: np.ndarray, den: np.ndarray | None = None) -> np.ndarray:
    """Gaussian smoothing over the measured pixels only (normalised convolution), (N, nq, nE);
    ``den``: the smoothed mask (:func:`_smooth_den`) when many images share one mask."""
    from scipy.ndimage import gaussian_filter

    num = gaussian_filter(np.where(mask, z, 0.0), (0, SMOOTH_PX, SMOOTH_PX), mode="nearest")
    return num / (_smooth_den(mask) if den is None else den)


def _smooth_den(mask: np.ndarray) -> np.ndarray:
    """The normalisation of :func:`_smooth`: the smoothed mask (floored), same shape as ``mask``."""
    from scipy.ndimage import gaussian_filter

    sigma = (0,) * (mask.ndim - 2) + (SMOOTH_PX, SMOOTH_PX)
    return np.maximum(gaussian_filter(mask.astype(np.float64), sigma, mode="nearest"), 1e-6)


def _misfit(x: np.ndarray, rec: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(smoothed mean squared misfit, largest |mean misfit| along an energy row or q column, smoothed
    reconstructed intensity missing from the data / the data's total), each (N,)."""
    sx = _smooth(x, mask)
    d = sx - _smooth(rec, mask)
    recon = np.where(mask, d**2, 0.0).sum((1, 2)) / np.maximum(mask.sum((1, 2)), 1)
    missing = np.where(mask, np.clip(-d, 0, None), 0.0).sum((1, 2)) / np.maximum(np.where(mask, sx, 0.0).sum((1, 2)), 1e-9)
    r = np.where(mask, x - rec, 0.0)
    prof = []
    for ax in (1, 2):  # mean over q for every energy bin, then over E for every q bin
        n = mask.sum(ax)
        mean = r.sum(ax) / np.maximum(n, 1)
        prof.append(np.where(n >= MIN_PROFILE_PIXELS, np.abs(mean), 0.0).max(1))
    return recon, np.maximum(*prof), missing


def _features(model, x: np.ndarray, batch: int = 128, misfits: bool = True) -> tuple[np.ndarray, dict]:
    """(features (N, d), {score: (N,)} reconstruction and physics misfits) for raw spectra ``x``;
    ``misfits=False``: the features alone (the training statistics need nothing else)."""
    import torch

    feats, recs, profs, miss = [], [], [], []
    for s in range(0, len(x), batch):
        raw = x[s : s + batch]
        xb = model.prepare(raw)
        mask = np.isfinite(np.asarray(raw, float))
        if mask.ndim == 2:
            mask = mask[None]
        with torch.no_grad():
            t = torch.from_numpy(xb)
            if model.kind == "vae":
                mu, _ = model.vae.encode(t)
                rec = model.vae.decode(mu).numpy()
                feats.append(mu.numpy())
                a, b, c = _misfit(xb.astype(np.float64), rec.astype(np.float64), mask)
                recs.append(a)
                profs.append(b)
                miss.append(c)
            else:
                net = model.net
                h = t[:, None]
                h = net.maxpool(net.relu(net.bn1(net.conv1(h))))
                h = net.layer4(net.layer3(net.layer2(net.layer1(h))))
                feats.append(torch.flatten(net.avgpool(h), 1).numpy())
    mis = {"recon": np.concatenate(recs), "profile": np.concatenate(profs), "missing": np.concatenate(miss)} if recs else {}
    phys = _physics_misfit(model, x) if misfits else None
    if phys is not None:
        mis["physics"] = phys
    return np.concatenate(feats).astype(np.float64), mis


def _physics_misfit(model, x: np.ndarray) -> np.ndarray | None:
    """(N,) smoothed mean squared misfit between the inputs and the forward model at the FCs the
    model predicts for them (None for a model without a preset material, e.g. a custom crystal)."""
    from ..materials import material_for_model

    try:
        mat = material_for_model(model.config)
    except FcinvError:
        return None
    fm = mat.forward_model()
    if tuple(fm.grid.shape) != tuple(x.shape[1:]):
        return None
    pred = model.predict(x, n_samples=8, reconstruct=False) if model.kind == "vae" else model.predict(x)
    dom = np.asarray(model.config.get("domain", mat.domain), float)
    theta = np.clip(np.asarray(pred.mean, float), dom[:, 0], dom[:, 1])
    img = np.asarray(fm.spectra(theta), np.float64)
    xb = model.prepare(x).astype(np.float64)
    mask = np.isfinite(np.asarray(x, float))
    sx, si = _smooth(xb, mask), _smooth(img, mask)
    # the forward image's scale and a linear background (flat + slopes along E and q: what the
    # measurement model adds) fitted per spectrum by least squares over the covered pixels
    nq, ne = x.shape[1:]
    qq, ee = np.meshgrid(np.linspace(-0.5, 0.5, nq), np.linspace(-0.5, 0.5, ne), indexing="ij")
    out = np.empty(len(x))
    for i in range(len(x)):  # every spectrum has covered pixels (check_input refuses all-NaN)
        m = mask[i]
        A = np.stack([si[i][m], np.ones(m.sum()), ee[m], qq[m]], axis=1)
        coef, *_ = np.linalg.lstsq(A, sx[i][m], rcond=None)
        out[i] = float(np.mean((sx[i][m] - A @ coef) ** 2))
    return out


def _column_residuals(sx: np.ndarray, si: np.ndarray, m: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Residuals (K, nq, nE) of the smoothed data ``sx`` (nq, nE) after a least-squares fit, per q
    column over the covered pixels ``m`` (nq, nE; 0/1), of each of K smoothed images ``si`` (K, nq,
    nE) with its energy curvature (a broadening) and the background shapes ``bg`` (nb, nE) along E
    (:func:`_background_shapes`); K = 0 images: the background terms alone.

    The refit's hot path: the normal equations are assembled block by block (the background
    shapes' block and right-hand side are shared by every image and computed once) rather than
    from a stacked (K, nq, nE, 2 + nb) design matrix: ~2.5× faster (session 37, K = 9 images of
    140 × 140)."""
    m = np.asarray(m, np.float64)
    # the shapes' span, orthonormalised: the fit depends on the span only, and the shapes corrected by
    # E/(n+1) are nearly collinear with the plain ones at low T (session 37: fitted as they were, the
    # normal equations missed a random sparse test column's least-squares optimum by up to 37 % at 5 K)
    _, sv, vt = np.linalg.svd(np.asarray(bg, np.float64), full_matrices=False)
    bg = vt[sv > 1e-10 * sv[0]]
    nb = len(bg)
    bm = m[:, None, :] * bg[None]  # (nq, nb, nE): the shapes over each column's covered pixels
    bb = bm @ bg.T  # (nq, nb, nb)
    bs = (bm @ sx[..., None])[..., 0]  # (nq, nb)
    if not len(si):
        c = _scaled_solve(bb, bs)
        return ((sx - c @ bg) * m)[None]
    d2 = si @ _curvature_matrix(si.shape[-1]).T  # np.gradient twice along E, as one matrix product
    s_m, d_m = si * m, d2 * m
    nr = 2 + nb
    G = np.empty(si.shape[:2] + (nr, nr))
    G[..., 0, 0] = np.einsum("kqe,kqe->kq", s_m, si)
    G[..., 0, 1] = G[..., 1, 0] = np.einsum("kqe,kqe->kq", s_m, d2)
    G[..., 1, 1] = np.einsum("kqe,kqe->kq", d_m, d2)
    G[..., 0, 2:] = s_m @ bg.T
    G[..., 2:, 0] = G[..., 0, 2:]
    G[..., 1, 2:] = d_m @ bg.T
    G[..., 2:, 1] = G[..., 1, 2:]
    G[..., 2:, 2:] = bb
    rhs = np.empty(si.shape[:2] + (nr,))
    rhs[..., 0] = np.einsum("kqe,qe->kq", s_m, sx)
    rhs[..., 1] = np.einsum("kqe,qe->kq", d_m, sx)
    rhs[..., 2:] = bs
    c = _scaled_solve(G, rhs)
    fit = c[..., 0, None] * si + c[..., 1, None] * d2 + c[..., 2:] @ bg
    return (sx[None] - fit) * m[None]


def _scaled_solve(G: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """c with G c = rhs for a stack of normal equations G (..., n, n), rhs (..., n): Jacobi-scaled
    (an image and its curvature differ in size by orders of magnitude) with a tiny ridge, so that an
    empty column (G = 0) gets c = 0."""
    js = 1.0 / np.sqrt(np.maximum(np.diagonal(G, axis1=-2, axis2=-1), 1e-300))
    Gs = G * js[..., :, None] * js[..., None, :] + 1e-14 * np.eye(G.shape[-1])
    return np.linalg.solve(Gs, (rhs * js)[..., None])[..., 0] * js


@functools.cache
def _curvature_matrix(n: int) -> np.ndarray:
    """(n, n): x ↦ ``np.gradient(np.gradient(x))`` along one axis of n ≥ 2 points (unit spacing,
    first-order one-sided differences at the ends), as a matrix the refit multiplies its images by."""
    d = np.zeros((n, n))
    d[0, :2] = d[-1, -2:] = (-1.0, 1.0)
    i = np.arange(1, n - 1)
    d[i, i - 1], d[i, i + 1] = -0.5, 0.5
    d2 = d @ d
    d2.setflags(write=False)
    return d2


def _background_shapes(energies: np.ndarray, temperature_k: float | None = None) -> np.ndarray:
    """(nb, nE) the refit's per-column background shapes along E: flat, a slope and the elastic
    line's Lorentzian tail (what the measurement model adds to a model image); for a one-phonon
    S(Q,E) corrected at ``temperature_k`` (K) also the same three as an instrument adds them to the
    raw S(Q,E), times the correction E/(n(E,T)+1) the input went through — at 5 K a flat raw
    background becomes a ramp ∝ E, at 300 K a curve ∝ E²/kT at low E (session 19, 5 K Ge S(Q,E):
    the right crystal's ``refit`` median 0.111 → 0.082 with these, another crystal's unchanged)."""
    e = (energies - energies.mean()) / max(float(np.ptp(energies)), 1e-12)
    lor = 1.0 / (1.0 + (energies / REFIT_ELASTIC_MEV) ** 2)
    shapes = [np.ones_like(e), e, lor]
    if temperature_k is not None:
        from ..measurement import creation_correction

        c = creation_correction(energies, float(temperature_k))
        c = c / max(float(np.abs(c).max()), 1e-12)
        shapes += [c, c * e, c * lor]
    return np.stack(shapes)


_SQE_REFIT: dict = {}


def _as_measured(images: np.ndarray, after, mask: np.ndarray) -> np.ndarray:
    """Candidate images (..., nq, nE) of the refit as inference sees a measured file: for the S(Q,E)
    renderer (``after`` the correction E/(n+1), (1, nE)) the resolution-broadened raw S(Q,E) times
    it, clipped at its :data:`~fcinv_widgets.measurement.SQE_CLIP` th percentile over the measured
    pixels ``mask`` (nq, nE) as ``to_model_intensity`` clips the input; unit-weight images as they are."""
    if np.ndim(after) == 0:
        return images
    from ..measurement import SQE_CLIP

    y = images * after
    lim = np.percentile(y[..., mask], SQE_CLIP, axis=-1)
    return np.minimum(y, np.asarray(lim)[..., None, None])


@functools.cache
def _smoothing_noise_gain() -> float:
    """Σ w² of :func:`_smooth`'s kernel away from the edges: the fraction of white noise's variance
    per pixel that survives the smoothing (≈ 1/(4π ``SMOOTH_PX``²))."""
    from scipy.ndimage import gaussian_filter

    n = int(8 * SMOOTH_PX) + 1
    delta = np.zeros((n, n))
    delta[n // 2, n // 2] = 1.0
    return float((gaussian_filter(delta, SMOOTH_PX) ** 2).sum())


def structure_to_noise(model, x: np.ndarray, temperature_k=None) -> np.ndarray:
    """(N,) how far the structure of each input (N, nq, nE) rises above its own counting noise, as
    the model sees it (``model.prepare``): the mean square of the smoothed image (:func:`_smooth`)
    after the per-q-column background of the refit (:func:`_background_shapes`, at the input's
    ``temperature_k`` when it was corrected from a one-phonon S(Q,E)), less the smoothed noise's
    share, over that share. The noise variance per pixel comes from the second difference along q
    (white noise: 3/2 of it). 0 (or below): nothing above the noise; ∞: no noise (a model image).
    An input below :data:`MIN_STRUCTURE_TO_NOISE` carries too little of its phonons for any check
    (or inversion) to tell which crystal made it (session 19: a 300 K S(Q,E) with P ≤ 300 counts
    at its brightest pixels, where the Bose factor puts them, near Γ)."""
    x = np.asarray(x, float)
    x = x[None] if x.ndim == 2 else x
    xb = model.prepare(x).astype(np.float64)
    mask = np.isfinite(x)
    sx_all = _smooth(xb, mask)
    gain = _smoothing_noise_gain()
    energies = np.asarray(model.config.get("energy_centers_mev", np.arange(x.shape[2])), float)
    temps = _per_spectrum_temperatures(temperature_k, len(x))
    out = np.empty(len(x))
    for i in range(len(x)):
        m = mask[i]
        d = xb[i, 1:-1] - 0.5 * (xb[i, :-2] + xb[i, 2:])
        dm = m[1:-1] & m[:-2] & m[2:]
        noise = gain * (float(np.var(d[dm])) / 1.5 if dm.sum() > 10 else 0.0)
        mc = m & (m.sum(1, keepdims=True) >= REFIT_MIN_PIXELS)
        if not mc.any():
            out[i] = 0.0
            continue
        r = _column_residuals(sx_all[i], np.empty((0,) + xb.shape[1:]), mc, _background_shapes(energies, temps[i]))[0]
        power = float((r**2).sum() / mc.sum())
        out[i] = np.inf if noise <= 1e-12 * max(power, 1e-30) else (power - noise) / noise
    return out


def refit_excess(refit, structure_to_noise) -> np.ndarray:
    """The ``refit`` score in excess of the input's noise share 1/(1 + max(s, 0)), s its
    :func:`structure_to_noise` (∞: a noiseless input, share 0; NaN where s is not a number):
    dimensionless, (N,) or a 0-d array. Both measure against the same smoothed structure after the
    per-column background, so on the right crystal's noisy data the refit leaves ≈ that share and the
    excess is what the crystal model cannot explain beyond the noise (rule E, see the module doc)."""
    s = np.asarray(structure_to_noise, float)
    share = np.where(np.isinf(s), 0.0, 1.0 / (1.0 + np.maximum(np.nan_to_num(s, nan=0.0), 0.0)))
    return np.where(np.isnan(s), np.nan, np.asarray(refit, float) - share)


def weak_reason(snr: float, temperature_k: float | None = None, energies_mev=None) -> str:
    """The one-line reason of a weak-data flag (:func:`structure_to_noise` below
    :data:`MIN_STRUCTURE_TO_NOISE`), with what would help: for a one-phonon S(Q,E) corrected at a
    temperature whose k_B·T exceeds a tenth of the energy range (``energies_mev``), the Bose factor
    is why — it puts the brightest pixels near Γ and leaves the branches above few of the counts."""
    from ..units import KB_MEV

    e_max = float(np.max(energies_mev)) if energies_mev is not None and len(energies_mev) else np.inf
    warm = temperature_k is not None and KB_MEV * float(temperature_k) > 0.1 * e_max
    help_ = (
        f"a one-phonon S(Q,E) at {temperature_k:g} K: the Bose factor puts the brightest pixels near Γ and leaves "
        "the branches above few of the counts — more counts or a colder sample would help"
        if warm
        else "more counts or a lower background would help"
    )
    rises = (
        f"the input's structure rises {snr:.2f}× above its own counting noise"
        if snr > 0
        else f"nothing of the input's structure rises above its own counting noise (structure to noise {snr:.2f})"
    )
    return (
        f"weak data: {rises} (below "
        f"{float(weak_level(temperature_k)):g}), too little for this check to tell which crystal made it, and the force "
        f"constants inferred from it rest on little ({help_})"
    )


def _sqe_renderer(mat, fm, ei_mev: float, temperature_k: float = 5.0):
    """(weighted twin of ``fm``, E/(n+1) at ``temperature_k``): the refit's S(Q,E) renderer — the
    folded mode weights at the material's reference FCs, Ei ``ei_mev``, the Debye–Waller factor at
    ``temperature_k`` (K; 5 K when the input's temperature is unknown), and the correction
    E/(n+1) that inference applies to a measured file — after the resolution, as the refit applies
    it (the weights hardly move over the domain; ``measurement.SQEWeighting``). Computed once per
    process and temperature (~1–2 s for Ge)."""
    from ..measurement import creation_correction, reference_slot_weights

    ref = np.asarray(mat.reference_params, float)
    t = round(float(temperature_k), 1)
    key = (mat.name, ref.tobytes(), round(ei_mev, 6), t)
    if key not in _SQE_REFIT:
        w = reference_slot_weights(mat, fm, ref[np.asarray(mat.active)], ei_mev, t)
        fmw = fm.with_sqe_weights(w, t)
        _SQE_REFIT[key] = (fmw, creation_correction(fm.grid.e.centers, t)[None, :])
    return _SQE_REFIT[key]


#: oriented renderers kept (:func:`_oriented_renderer`; one per angle, axes, Ei, |Q| range, detector and
#: temperature; a scan set's scans share all but the angle): the oldest is dropped beyond this many
ORIENTED_KEEP = 64
_ORIENTED: dict = {}
_ORIENTED_AMPS: dict = {}


def scan_orientation(scan_deg, u=None, v=None, ei_mev=None, qmax_inv_a=None, detector_deg=None) -> dict | None:
    """The orientation of one single-orientation scan as the OOD check's refit takes it
    (``orientation=`` of :meth:`OODStats.scores`, :meth:`~OODStats.check`, :meth:`~OODStats.flags`):
    {"scan_deg", "u", "v", "ei_mev", "qmax_inv_a", "detector_deg"} — the sample angle ω (degrees),
    the sample axes (r.l.u.; default ``scans.SCAN_U`` / ``SCAN_V``), the incident energy (meV), the
    |Q| range folded (1/Å; None: what the kinematics at Ei reach, as the physics fit takes it) and
    the detector (None: ``scans.DETECTOR``). None when the angle or the Ei is unknown: the refit
    then renders the scan's candidate as full data. :class:`FcinvError` on a bad value."""
    from ..scans import scan_axes
    from ..validate import finite_number

    if scan_deg is None or ei_mev is None:
        return None
    omega, u, v = scan_axes(scan_deg, u, v)
    ei = finite_number(ei_mev, "the scan's incident energy Ei (meV)", positive=True)
    q = None if qmax_inv_a is None else finite_number(qmax_inv_a, "the scan's |Q| range (1/Å)", positive=True)
    if detector_deg is not None and not (
        isinstance(detector_deg, dict) and {"h_min_deg", "h_max_deg", "v_max_deg"} <= set(detector_deg)
    ):
        raise FcinvError(f"detector_deg must give h_min_deg, h_max_deg and v_max_deg (degrees), got {detector_deg!r}"[:200])
    det = None if detector_deg is None else {k: float(detector_deg[k]) for k in ("h_min_deg", "h_max_deg", "v_max_deg")}
    return {"scan_deg": omega, "u": u, "v": v, "ei_mev": ei, "qmax_inv_a": q, "detector_deg": det}


def _oriented_renderer(mat, orientation: dict, temperature_k: float):
    """(S(Q,E) twin, E/(n+1)) as :func:`_sqe_renderer`, with the folded mode weights of one
    single-orientation scan (``orientation``: :func:`scan_orientation`) — the equivalents Q that
    orientation's detector sees at its Ei, as ``refine_sqe(orientations=[ω])`` weights the physics
    fit of a scan — at the material's reference FCs and ``temperature_k`` (K), on a forward model
    with the ARCS resolution at that Ei. The weights are applied to the broadened lines, as a scan
    records them (per pixel the mean over the equivalents that cover it): a scan's coverage changes
    abruptly with E where equivalents enter or leave the detector, so weights applied before a
    resolution kernel (as :func:`_sqe_renderer`'s are) would smear those steps — a noiseless Ge scan
    at ω = 80° (|Q| ≤ 4 Å⁻¹) left 0.11 of its structure at the reference FCs that way. The refit uses
    it without a further kernel. The eigen-solve once per (|Q| range, T), the coverage per angle
    (~0.3–1 s for Ge); the newest :data:`ORIENTED_KEEP` kept."""
    from ..measurement import creation_correction, reference_slot_weights
    from ..scans import DETECTOR, _orientation_hits, orientation_matrix, reach_qmax
    from ..sqe import SQE, fold_geometry, mode_amplitudes

    ref = np.asarray(mat.reference_params, float)
    t = round(float(temperature_k), 1)
    o = orientation
    ei = float(o["ei_mev"])
    qmax = float(o["qmax_inv_a"]) if o.get("qmax_inv_a") is not None else reach_qmax(ei, mat.grid.e.e_min, 135.0)
    det = o.get("detector_deg") or DETECTOR
    key = (
        mat.name,
        ref.tobytes(),
        round(float(o["scan_deg"]), 9),
        tuple(np.round(np.asarray(o["u"], float), 9)),
        tuple(np.round(np.asarray(o["v"], float), 9)),
        round(ei, 6),
        round(qmax, 9),
        tuple(sorted(det.items())),
        t,
    )
    if key not in _ORIENTED:
        akey = (mat.name, ref.tobytes(), round(qmax, 9), t)
        if akey not in _ORIENTED_AMPS:
            geom = fold_geometry(mat.crystal, mat.grid, qmax, mat.conventional_a)
            _ORIENTED_AMPS.clear()  # (one |Q| range and temperature at a time: the amplitudes are large)
            _ORIENTED_AMPS[akey] = (geom, mode_amplitudes(SQE(mat.basis, ref, temperature=t), geom))
        geom, amps = _ORIENTED_AMPS[akey]
        hits = [_orientation_hits(geom, float(o["scan_deg"]), ei, mat.grid, orientation_matrix(o["u"], o["v"], mat.crystal), det)]
        fm = mat.forward_model(resolution=("arcs", ei))
        w = reference_slot_weights(mat, fm, ref[np.asarray(mat.active)], ei, t, geometry=geom, amplitudes=amps, hits=hits)
        while len(_ORIENTED) >= ORIENTED_KEEP:
            _ORIENTED.pop(next(iter(_ORIENTED)))
        _ORIENTED[key] = (fm.with_sqe_weights(w, t), creation_correction(fm.grid.e.centers, t)[None, :])
    return _ORIENTED[key]


def _orientation_record(o) -> dict | None:
    """A :func:`scan_orientation` record checked again (None stays None; FcinvError in one line)."""
    if o is None:
        return None
    keys = ("scan_deg", "u", "v", "ei_mev", "qmax_inv_a", "detector_deg")
    if not isinstance(o, dict) or not {"scan_deg", "ei_mev"} <= set(o) or set(o) - set(keys):
        raise FcinvError(f"an orientation must be a scan_orientation record ({', '.join(keys)}) or None, got {o!r}"[:300])
    return scan_orientation(**o)


def _per_spectrum_orientations(orientation, n: int) -> list:
    """[dict | None] * n from None, one :func:`scan_orientation` record or n of them (each checked)."""
    if orientation is None or isinstance(orientation, dict):
        return [_orientation_record(orientation)] * n
    if isinstance(orientation, (str, bytes)) or not hasattr(orientation, "__len__"):
        raise FcinvError(f"orientation must be a scan_orientation record, a list of them or None, got {orientation!r}"[:300])
    o = list(orientation)
    if len(o) != n:
        raise FcinvError(f"need one orientation per spectrum: {n} spectra, {len(o)} orientations")
    return [_orientation_record(v) for v in o]


def _per_spectrum_temperatures(temperature_k, n: int) -> list:
    """[float | None] * n from None, one temperature (K) or n of them (None: not an S(Q,E))."""
    if temperature_k is None or np.ndim(temperature_k) == 0:
        return [None if temperature_k is None else float(temperature_k)] * n
    t = list(temperature_k)
    if len(t) != n:
        raise FcinvError(f"need one temperature per spectrum: {n} spectra, {len(t)} temperatures")
    return [None if v is None or not np.isfinite(v) else float(v) for v in t]


def _refit_misfit(
    model, x: np.ndarray, steps: int = REFIT_STEPS, progress: bool = False, temperature_k=None, orientation=None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(``refit``, ``band``) scores, (N,) each (see the module doc), or None without a preset
    material or a measurement model. ``refit``: the fraction of the smoothed data's structure the
    forward model leaves unexplained after the per-column fit and a refit of the active FCs from
    the model's prediction; ``band``: the largest |mean over q| of that residual along one energy
    row at E ≥ :data:`BAND_MIN_MEV`, in units of the structure's RMS per pixel (what a spurious
    flat band leaves: the per-column fits cannot put one energy's excess into every column at once).
    ``orientation``: None, or per spectrum (:func:`scan_orientation`) the single scan it is — an
    input corrected from a one-phonon S(Q,E) then gets an S(Q,E) candidate with that orientation's
    mode weights (:func:`_oriented_renderer`) instead of the full data's."""
    from ..materials import material_for_model
    from ..measurement import MeasurementModel

    aug = model.config.get("augment")
    try:
        mat = material_for_model(model.config)
    except FcinvError:
        return None
    fm = mat.forward_model()
    if not aug or tuple(fm.grid.shape) != tuple(x.shape[1:]):
        return None
    energies = np.asarray(model.config.get("energy_centers_mev", fm.grid.e.centers), float)
    mm = MeasurementModel.from_dict(aug)
    sampler = mm.sampler(energies)
    kernels = sampler.kernels_t.astype(np.float64)
    temps = _per_spectrum_temperatures(temperature_k, len(x))
    orients = _per_spectrum_orientations(orientation, len(x))
    ei_mid = float(np.median(sampler.eis))

    def unit(t):  # unit weights (the fast model)
        return np.asarray(fm.spectra(t), np.float64)

    def renders_at(temp: float | None, orient: dict | None = None) -> list:
        """[(render, after, kernels)]: ``render(FCs) @ kernel`` for each of its ``kernels``, then
        ``after`` (:func:`_as_measured`), is a candidate image. For an input corrected from a one-phonon S(Q,E) at ``temp`` (K) the S(Q,E)
        candidate is made as the input was: the raw S(Q,E) broadened by the kernel, *then* corrected
        (× E/(n+1)) and clipped — the two do not commute where E/(n+1) changes within a resolution
        width (low E; warm and high-Ei inputs most; session 33: in the other order the right crystal's
        own noiseless S(Q,E) at 100 K, Ei 125 meV left 0.42 of its structure, 1.05× the threshold).
        An input that was not corrected (``temp`` None: a model image under measurement effects, the
        kind the thresholds are calibrated on) gets the S(Q,E) mode weights at 5 K on the unit-weight
        Gaussians (corrected at the modes, then broadened): the weighting such an image can carry.
        ``orient``: a corrected input's single-scan orientation: its S(Q,E) candidate has that scan's
        weights and the ARCS resolution at its Ei (:func:`_oriented_renderer`; the grid's own kernel only)."""
        out: list = [(unit, 1.0, kernels)]
        if mm.p_sqe > 0:  # a model trained on measured S(Q,E) too: the refit may explain the data as one
            kers = kernels
            if temp is not None and orient is not None:
                fmw, bose = _oriented_renderer(mat, orient, temp)
                kers = kernels[:1]
            else:
                fmw, bose = _sqe_renderer(mat, fm, ei_mid, 5.0 if temp is None else temp)
            raw = lambda t: np.asarray(fmw.spectra(t, normalize=False), np.float64)  # noqa: E731
            out.append((raw, bose, kers) if temp is not None else ((lambda t: raw(t) * bose), 1.0, kers))
        return out

    kernels = np.concatenate([np.eye(len(energies))[None], kernels])  # the grid's own width first
    band_rows = energies >= BAND_MIN_MEV
    pred = model.predict(x, n_samples=8, reconstruct=False) if model.kind == "vae" else model.predict(x)
    dom = np.asarray(model.config.get("domain", mat.domain), float)
    width = dom[:, 1] - dom[:, 0]
    h = REFIT_FD * width
    xb = model.prepare(x).astype(np.float64)
    mask = np.isfinite(np.asarray(x, float))
    sx_all = _smooth(xb, mask)
    from tqdm.auto import tqdm

    out = np.empty(len(x))
    rows = np.zeros(len(x))
    for i in tqdm(range(len(x)), desc="OOD refit", unit="spectra", disable=not progress, leave=False):
        m = mask[i] & (mask[i].sum(1, keepdims=True) >= REFIT_MIN_PIXELS)
        mi = mask[i]  # every image of this spectrum is smoothed over its mask: one normalisation
        den = _smooth_den(mi)
        sx = sx_all[i]
        bg = _background_shapes(energies, temps[i])
        renders = renders_at(temps[i], orients[i])
        total = float((_column_residuals(sx, np.empty((0,) + sx.shape), m, bg) ** 2).sum())
        if total <= 0 or not m.any():
            out[i] = 0.0
            continue
        th = np.clip(np.asarray(pred.mean[i], float), dom[:, 0], dom[:, 1])
        k_prev = -1
        for _ in range(REFIT_ROUNDS):
            # the resolution: the kernel that explains the data best at the current FCs (chosen
            # again after each round: a kernel picked at a poor start can hold the fit away from the
            # right FCs; session 11: such stalls made the right crystal's largest refit scores)
            # (and, for a model trained on measured S(Q,E), whether unit or S(Q,E) weights explain it)
            cand = np.concatenate([_as_measured(render(th[None])[0] @ kers, after, mi) for render, after, kers in renders])
            index = [(j, k) for j, (_, _, kers) in enumerate(renders) for k in range(len(kers))]
            r = _column_residuals(sx, _smooth(cand, mi, den), m, bg)
            c = int(np.argmin((r**2).sum((1, 2))))
            if c == k_prev:
                break
            k_prev = c
            j, k = index[c]
            render, after, kers = renders[j]
            kernel = kers[k]
            r0, lam = r[c], 1e-2  # the residual at the current FCs
            best = float((r0**2).sum())
            for _ in range(steps):  # damped Gauss–Newton on the active FCs, finite-difference Jacobian
                pts = th + np.diag(h)
                imgs = _as_measured(render(pts) @ kernel, after, mi)
                r = _column_residuals(sx, _smooth(imgs, mi, den), m, bg)
                J = ((r - r0) / h[:, None, None]).reshape(len(h), -1).T
                H = J.T @ J
                step = -np.linalg.solve(H + lam * np.diag(np.diag(H)) + 1e-12 * np.eye(len(h)), J.T @ r0.ravel())
                trial = np.clip(th + step, dom[:, 0], dom[:, 1])
                ti = _as_measured(render(trial[None]) @ kernel, after, mi)
                rt = _column_residuals(sx, _smooth(ti, mi, den), m, bg)[0]
                f = float((rt**2).sum())
                if f < best:
                    th, r0, best, lam = trial, rt, f, lam / 3
                else:
                    lam *= 10
        out[i] = best / total
        n_row = np.where(band_rows, m.sum(0), 0)
        mean_row = np.where(n_row >= REFIT_MIN_PIXELS, r0.sum(0) / np.maximum(n_row, 1), 0.0)
        rows[i] = float(np.abs(mean_row).max() / np.sqrt(total / m.sum()))
    return out, rows


@dataclass
class OODStats:
    """Feature statistics and thresholds of one model (see the module doc). Units: dimensionless."""

    kind: str
    mean: np.ndarray  # (d,) feature mean
    components: np.ndarray  # (k, d) principal directions (rows)
    variances: np.ndarray  # (k,) variances along them
    residual_scale: float  # mean squared residual outside the k components (0 when k = d)
    thresholds: dict  # score name -> threshold of the single score (quantile 1 − (1 − q)/n_scores)
    quantile: float = 0.99
    medians: dict = field(default_factory=dict)  # score name -> in-distribution median
    combined_threshold: float = float("inf")
    model_sha256: str | None = None
    calibration: dict = field(default_factory=dict)
    #: the measured-input regime: {"medians", "thresholds", "combined_threshold"[, "scales"]} (empty: none)
    measured: dict = field(default_factory=dict)
    #: score name -> in-distribution :data:`COMBINE_REF_QUANTILE` quantile, the combined score's
    #: reference (empty in files from before session 11: the medians are)
    scales: dict = field(default_factory=dict)
    #: the measured regime's flag rates on one-phonon S(Q,E) inputs by structure-to-noise (session
    #: 31; empty: not measured): {"edges": lower bin edges, "own"/"other": {"n", "flagged"} counts
    #: per bin, "other": what the other crystal was, "command": how it was measured}
    #: (``benchmarks/ood_rates.py --write``; dropped when ``fcinv ood-calibrate`` rewrites the file)
    sqe_rates: dict = field(default_factory=dict)
    #: rule C (session 32; empty: not adopted for this model): {"edges": lower structure-to-noise bin
    #: edges, "limits": the limit on :meth:`ratio` per bin, "n": calibration inputs per bin,
    #: "min_coverage": the least coverage the calibration inputs had, "alpha", "command", …}
    #: (``benchmarks/ood_limits.py --write``; dropped when ``fcinv ood-calibrate`` rewrites the file)
    sqe_limits: dict = field(default_factory=dict)
    #: rule E (session 34; empty: not adopted for this model): {"limit": the limit on
    #: :func:`refit_excess`, "n": calibration inputs, "min_coverage", "ei_range_mev": [low, high] the
    #: calibration inputs' Ei range (the rule applies inside it only), "alpha", "command", …}
    #: (``benchmarks/ood_excess.py --write``; dropped when ``fcinv ood-calibrate`` rewrites the file)
    sqe_excess: dict = field(default_factory=dict)
    #: rule S (session 35; empty: not adopted for this model), the verdict on one single-orientation
    #: scan of a one-phonon S(Q,E) (``single_scan``): {"limits": {score name: the limit on its value,
    #: or None}, "n": calibration scans, "alpha", "ei_range_mev": [low, high] the calibration scans'
    #: Ei range (the rule applies inside it only), "command", …; optional "rates": {"own_n",
    #: "own_flagged", "other_n", "other_flagged", "other"} measured on held-out scans}
    #: (``benchmarks/ood_scan_limits.py --write``; dropped when ``fcinv ood-calibrate`` rewrites the file)
    scan_limits: dict = field(default_factory=dict)
    #: the check's flag rates on held-out simulated single scans where it has no rule S (session 35;
    #: empty: not measured): {"own_n", "own_flagged", "other_n", "other_flagged", "other", "command", …}
    #: (``benchmarks/ood_scan_limits.py --write-rates``; dropped when ``fcinv ood-calibrate`` rewrites the file)
    scan_rates: dict = field(default_factory=dict)
    #: rule S′ (session 38; empty: not adopted for this model): :attr:`scan_limits` for a single scan
    #: whose orientation is known (``orientation=``, ``fcinv invert --scan DEG``, ``infer-scans``),
    #: calibrated on scores whose refit follows that orientation's coverage (:func:`scan_orientation`);
    #: ``excess_limit`` (optional, rule S′E): a limit on that refit's excess over the noise share
    #: (:func:`refit_excess`), one more score of the rule (``ood_scan_limits.py --oriented --excess``)
    #: (``benchmarks/ood_scan_limits.py --oriented --write``; dropped when ``fcinv ood-calibrate`` rewrites the file)
    scan_limits_oriented: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ scores
    def has_measured(self) -> bool:
        """Whether these statistics carry the measured-input regime (see the module doc)."""
        return bool(self.measured.get("medians"))

    def _regime(self, measured: bool) -> tuple[dict, dict, float]:
        if measured:
            r = self.measured
            return r["medians"], r["thresholds"], float(r.get("combined_threshold", np.inf))
        return self.medians, self.thresholds, self.combined_threshold

    def scores(
        self, model, spectra, measured: bool = False, progress: bool = False, temperature_k=None, orientation=None
    ) -> dict:
        """Raw scores {name: (N,)} for (N, nq, nE) or (nq, nE) spectra (validated like ``predict``);
        ``measured``: the measured regime's scores (:data:`MEASURED_SCORES`; needs :meth:`has_measured`
        unless called by :func:`calibrate`); ``temperature_k``: the temperature (K; one, or one per
        spectrum) at which an input was corrected from a one-phonon S(Q,E) (:func:`input_temperature`),
        for the measured regime's refit (:func:`_refit_misfit`); ``orientation``: the single scan an
        input is (:func:`scan_orientation`; one, or one per spectrum, None where unknown): its
        refit's S(Q,E) candidate then follows that orientation's coverage — the scores rule S′
        (:attr:`scan_limits_oriented`) was calibrated on, not those of rule S or the full-data rules."""
        x = model.check_input(spectra)
        x = x[None] if x.ndim == 2 else x
        f, rec = _features(model, x, misfits=not measured)
        if f.shape[1] != self.mean.size:
            raise FcinvError(f"the OOD statistics are for {self.mean.size} features, this model gives {f.shape[1]}")
        d = f - self.mean
        proj = d @ self.components.T
        out = {("latent" if self.kind == "vae" else "feature"): np.sqrt((proj**2 / self.variances).sum(1))}
        if self.residual_scale > 0:
            r = d - proj @ self.components
            out["residual"] = np.sqrt((r**2).sum(1) / self.residual_scale)
        out.update(rec)
        if measured:
            out = {k: v for k, v in out.items() if k in MEASURED_SCORES}
            refit = _refit_misfit(model, x, progress=progress, temperature_k=temperature_k, orientation=orientation)
            if refit is not None:
                out["refit"], out["band"] = refit
            known = self.measured.get("medians")
        else:
            known = self.medians
        if known:  # statistics calibrated before a score existed (an older ood.json) use the scores they know
            out = {k: v for k, v in out.items() if k in known}
        return out

    def _scales(self, measured: bool) -> dict:
        """The combined score's reference of every score: its in-distribution
        :data:`COMBINE_REF_QUANTILE` quantile, or (statistics from before session 11) its median."""
        sc = self.measured.get("scales") if measured else self.scales
        return sc or self._regime(measured)[0]

    def combine(self, scores: dict, measured: bool = False) -> np.ndarray:
        """Σ_k max(0, log(s_k / scale_k)) over the scores but :data:`SINGLE_ONLY`, (N,), scale_k the
        score's in-distribution :data:`COMBINE_REF_QUANTILE` quantile: one-sided — a score below it
        (e.g. nothing "missing" from pure noise) cannot offset another's excess, and the ordinary
        spread of the right crystal's scores adds nothing."""
        ref = self._scales(measured)
        parts = [np.clip(np.log(np.maximum(v, 1e-30) / ref[k]), 0.0, None) for k, v in scores.items() if k not in SINGLE_ONLY]
        return sum(parts) if parts else np.zeros(len(next(iter(scores.values()))))

    def ratio(self, scores: dict, measured: bool = False) -> np.ndarray:
        """(N,) the largest of the combined score over its threshold and each single score over its
        own: the check's verdict is ratio > 1 (or the input's :meth:`sqe_limit`)."""
        _, thresholds, combined = self._regime(measured)
        single = np.max(np.stack([v / thresholds[k] for k, v in scores.items()]), axis=0)
        return np.maximum(self.combine(scores, measured) / combined, single)

    def _flags(self, scores: dict, measured: bool = False) -> np.ndarray:
        return self.ratio(scores, measured) > 1.0

    def sqe_limit(self, structure_to_noise, coverage, ei_mev=None) -> dict | None:
        """Rule C's limit on :meth:`ratio` for a one-phonon S(Q,E) input judged in the measured regime:
        {"structure_to_noise_range": [low, high or None], "limit", "n"} of the input's bin of
        :attr:`sqe_limits`; None without them, below the first bin, for a coverage (fraction of
        measured pixels) below the calibration inputs' least, or for values that are not finite
        numbers (the limit is then 1, as for any other input); with ``ei_range_mev`` in the limits
        (calibrated inside the model's training Ei range), also None for an input whose Ei
        (``ei_mev``) is unknown or outside that range, and for limits calibrated with another
        :data:`OOD_CHECK_VERSION`."""
        lim = self.sqe_limits
        try:
            v, c = float(structure_to_noise), float(coverage)
        except (TypeError, ValueError):
            return None
        if not lim or not (np.isfinite(v) and np.isfinite(c)) or v < lim["edges"][0] or c < lim["min_coverage"]:
            return None
        if check_version_of(lim) != OOD_CHECK_VERSION:  # calibrated on another version's verdicts
            return None
        if lim.get("ei_range_mev") is not None:
            from ..measurement import ei_inside

            if not (_is_number(ei_mev) and ei_inside(ei_mev, lim["ei_range_mev"])):
                return None
        i, rng = _bin(lim["edges"], v)
        return {
            "structure_to_noise_range": rng,
            "limit": float(lim["limits"][i]),
            "n": int(lim["n"][i]),
        }

    def sqe_excess_limit(self, structure_to_noise, coverage, ei_mev=None) -> dict | None:
        """Rule E's limit for a one-phonon S(Q,E) input judged in the measured regime and not weak
        data: {"limit", "n"} of :attr:`sqe_excess` (where it holds limits by Ei, the larger of the two
        calibration Ei that bracket ``ei_mev``, :func:`limits_at_ei`, its "n" and "by_ei": {"ei_mev":
        the calibration Ei used, "limit_at_ei_mev": the one whose limit it is}); None without it, for a coverage (fraction of
        measured pixels) below the calibration inputs' least, an Ei (``ei_mev``) unknown or outside
        the calibration's range, values that are not numbers (a structure-to-noise of ∞, a noiseless
        input, is judged), or a table of another :data:`OOD_CHECK_VERSION`."""
        ex = self.sqe_excess
        try:
            v, c = float(structure_to_noise), float(coverage)
        except (TypeError, ValueError):
            return None
        if not ex or np.isnan(v) or not np.isfinite(c) or c < ex["min_coverage"]:
            return None
        if check_version_of(ex) != OOD_CHECK_VERSION:
            return None
        from ..measurement import ei_inside

        if not (_is_number(ei_mev) and ei_inside(ei_mev, ex["ei_range_mev"])):
            return None
        if ex.get("by_ei"):  # limits by Ei (session 41): the larger of the bracketing calibration Ei's
            by = ex["by_ei"]
            lims, used = limits_at_ei(by, float(ei_mev))
            if lims.get("excess") is None:
                return None
            k = max((by["ei_mev"].index(e) for e in used), key=lambda j: by["limits"][j]["excess"])
            return {
                "limit": float(lims["excess"]),
                "n": int(by["n"][k]),
                "by_ei": {"ei_mev": used, "limit_at_ei_mev": by["ei_mev"][k]},
            }
        return {"limit": float(ex["limit"]), "n": int(ex["n"])}

    def scan_limit(self, ei_mev=None, oriented: bool = False) -> dict | None:
        """Rule S's limits for one single-orientation scan of a one-phonon S(Q,E) judged in the
        measured regime and not weak data: {"limits": {score: limit or None}, "n"} of
        :attr:`scan_limits` — with ``oriented``, rule S′'s (:attr:`scan_limits_oriented`: a scan of
        known orientation, scored with it); None without the table, for an Ei (``ei_mev``) unknown
        or outside the calibration's range, or a table of another :data:`OOD_CHECK_VERSION`."""
        t = self.scan_limits_oriented if oriented else self.scan_limits
        if not t or check_version_of(t) != OOD_CHECK_VERSION:
            return None
        from ..measurement import ei_inside

        if not (_is_number(ei_mev) and ei_inside(ei_mev, t["ei_range_mev"])):
            return None
        out: dict = {"limits": dict(t["limits"]), "n": int(t["n"])}
        if t.get("by_ei"):  # limits by Ei (session 40)
            out["limits"], used = limits_at_ei(t["by_ei"], float(ei_mev))
            out["by_ei"] = {"ei_mev": used}
        return out | ({"excess_limit": float(t["excess_limit"])} if t.get("excess_limit") is not None else {})

    def flags(
        self,
        model,
        spectra,
        measured: bool = False,
        temperature_k=None,
        return_weak: bool = False,
        ei_mev=None,
        single_scan: bool = False,
        orientation=None,
    ):
        """(N,) bool: :meth:`ratio` above 1 (the combined score above its threshold, or any single
        score above its own) — above the input's rule-C limit where :meth:`check` would use one — or
        weak data (:func:`structure_to_noise` below :func:`weak_level`); ``measured``:
        in the measured regime (falls back to the model-image one without it); ``temperature_k``:
        as in :meth:`scores`; ``ei_mev``, ``single_scan``, ``orientation`` (one, or one per
        spectrum, None where unknown): as in :meth:`check`. ``return_weak``: (flags, which of them
        are weak data)."""
        single_scan, return_weak = flag_arg(single_scan, "single_scan"), flag_arg(return_weak, "return_weak")
        measured = flag_arg(measured, "measured") and self.has_measured()
        ei_mev = _ei_arg(ei_mev)
        x = model.check_input(spectra)
        x = x[None] if x.ndim == 2 else x
        orients = _per_spectrum_orientations(orientation, len(x))
        single_scan = single_scan or any(o is not None for o in orients)
        snr = structure_to_noise(model, x, temperature_k)
        weak = snr < weak_level(temperature_k)
        scan_o = self.scan_limit(ei_mev, oriented=True) if single_scan and measured else None
        scan_o = scan_o if scan_o is not None and any(o is not None for o in orients) else None
        sc = self.scores(model, x, measured, temperature_k=temperature_k, orientation=orients if scan_o else None)
        ratio = self.ratio(sc, measured)
        temps = np.broadcast_to(np.asarray(np.nan if temperature_k is None else temperature_k, float), (len(x),))
        limits = np.ones(len(x))
        excess = np.zeros(len(x), bool)
        coverage = np.isfinite(x).reshape(len(x), -1).mean(1)
        e = refit_excess(sc["refit"], snr) if "refit" in sc else None
        scan = self.scan_limit(ei_mev) if single_scan and measured else None
        for i in np.flatnonzero(np.isfinite(temps) & ~weak) if measured else []:
            scan_i = scan_o if scan_o is not None and orients[i] is not None else scan
            if scan_i is not None:  # rule S (S′: the orientation known): each score against its single-scan limit
                limits[i] = np.inf
                over_e = "excess_limit" in scan_i and e is not None and bool(e[i] > scan_i["excess_limit"])
                excess[i] = bool(scan_ratio(sc, scan_i["limits"], i) > 1.0) or over_e
                continue
            signal = self.sqe_limit(snr[i], coverage[i], ei_mev)
            limits[i] = signal["limit"] if signal else 1.0
            lim_e = self.sqe_excess_limit(snr[i], coverage[i], ei_mev) if e is not None else None
            excess[i] = lim_e is not None and bool(e[i] > lim_e["limit"])
        flags = (ratio > limits) | excess | weak
        return (flags, weak) if return_weak else flags

    def check(
        self,
        model,
        spectrum,
        measured: bool = False,
        temperature_k: float | None = None,
        ei_mev: float | None = None,
        single_scan: bool = False,
        orientation: dict | None = None,
    ) -> dict:
        """The JSON record for one spectrum: flag, score (combined), threshold, a reason, the regime
        and every component's value, in-distribution median and single-score threshold.
        ``measured``: judge it in the measured regime (see the module doc) when these statistics
        have one; the record says which regime was used and why. ``temperature_k``: the temperature
        (K) at which the input was corrected from a one-phonon S(Q,E) (:func:`input_temperature`).
        With ``temperature_k``, the measured regime and :attr:`sqe_limits`, an input that is not weak
        data is judged against its signal's limit (rule C, :meth:`sqe_limit`, from its
        structure-to-noise, coverage and Ei ``ei_mev`` (meV, if known); ``limit`` and ``signal_limit``
        in the record), else against 1. ``single_scan``: the input is one single-orientation scan;
        with :attr:`scan_limits` (rule S, :meth:`scan_limit`) such an S(Q,E) input that is not weak
        data is judged by each score against its single-scan limit alone (``scan_rule`` in the
        record), as the full-data rules were not calibrated on scans. ``orientation``: the scan's
        orientation when known (:func:`scan_orientation`; implies ``single_scan``): with
        :attr:`scan_limits_oriented` (rule S′) the refit follows that orientation's coverage and
        the scores are judged against rule S′'s limits (``scan_rule["oriented"]``); without that
        table the orientation is not used (rule S's limits hold for the scores without it)."""
        single_scan = flag_arg(single_scan, "single_scan")
        if orientation is not None and not isinstance(orientation, dict):
            raise FcinvError(f"orientation must be a scan_orientation record or None, got {type(orientation).__name__}")
        orientation = _orientation_record(orientation)
        single_scan = single_scan or orientation is not None
        use = flag_arg(measured, "measured") and self.has_measured()
        ei_mev = _ei_arg(ei_mev)
        medians, thresholds, combined = self._regime(use)
        x = model.check_input(spectrum)
        snr = float(structure_to_noise(model, x, temperature_k)[0])
        weak = bool(snr < weak_level(temperature_k))
        coverage = float(np.isfinite(x).mean())
        sqe_judged = use and temperature_k is not None and not weak
        scan_o = self.scan_limit(ei_mev, oriented=True) if sqe_judged and orientation is not None else None
        sc = self.scores(model, spectrum, use, temperature_k=temperature_k, orientation=orientation if scan_o else None)
        comps = {k: {"value": float(v[0]), "median": float(medians[k]), "threshold": float(thresholds[k])} for k, v in sc.items()}
        score = float(self.combine(sc, use)[0])
        scan = scan_o or (self.scan_limit(ei_mev) if sqe_judged and single_scan else None)
        if scan is not None:
            return self._scan_record(comps, sc, scan, score, float(combined), snr, oriented=scan_o is not None)
        signal = self.sqe_limit(snr, coverage, ei_mev) if sqe_judged else None
        limit = signal["limit"] if signal else 1.0
        ratio = float(self.ratio(sc, use)[0])
        excess = None
        if sqe_judged and "refit" in sc:  # rule E: the refit's excess over the input's noise share
            lim_e = self.sqe_excess_limit(snr, coverage, ei_mev)
            e = float(refit_excess(sc["refit"][0], snr))
            excess = {"value": e if np.isfinite(e) else None} | (lim_e or {"limit": None, "n": None})
        excess_flag = bool(
            excess and excess["limit"] is not None and excess["value"] is not None and excess["value"] > excess["limit"]
        )
        ratio_flag = ratio > limit
        scores_flag = ratio_flag or excess_flag
        flag = scores_flag or weak
        worst = max((k for k in comps if k not in SINGLE_ONLY), key=lambda k: comps[k]["value"] / comps[k]["median"])
        over = [k for k, c in comps.items() if c["value"] > limit * c["threshold"]]
        if over:
            reason = ", ".join(f"{LABELS[k]} {comps[k]['value'] / comps[k]['threshold']:.1f}× its threshold" for k in over)
        elif ratio_flag:
            reason = (
                f"combined score {score:.2f} > {limit * combined:.2f}, mostly the {LABELS[worst]} "
                f"({comps[worst]['value'] / comps[worst]['median']:.1f}× its in-distribution median)"
            )
        else:
            reason = f"combined score {score:.2f} ≤ {limit * combined:.2f}" + (
                "" if signal is None else f", every score ≤ {limit:.2f}× its threshold"
            )
        if signal is not None:
            lo, hi = signal["structure_to_noise_range"]
            where = f"{lo:g}–{hi:g}" if hi is not None else f"≥ {lo:g}"
            reason += (
                f" (limit {limit:.2f}× the thresholds for an S(Q,E) input with structure-to-noise {where}, "
                f"calibrated on {signal['n']} of the right crystal's: rule C)"
            )
        if excess_flag and excess is not None:
            rule = f" at Ei {excess['by_ei']['limit_at_ei_mev']:g} meV: rule E by Ei" if excess.get("by_ei") else ": rule E"
            why = (
                f"the refit leaves {excess['value']:.3f} of the structure beyond the input's noise share, above the "
                f"limit {excess['limit']:.3f} (calibrated on {excess['n']} of the right crystal's S(Q,E) measurements{rule})"
            )
            reason = f"{why}; {reason}" if ratio_flag else f"{why} — the other scores pass: {reason}"
        if weak:
            reason = f"{weak_reason(snr, temperature_k, model.config.get('energy_centers_mev'))}; the scores: {reason}" + (
                " (on data this weak that says little)" if scores_flag else ""
            )
        regime = "measured" if use else "model-image"
        note = None
        if measured and not use:
            note = "a measured input judged as a model image: these statistics have no measured-input regime (run `fcinv ood-calibrate` on a model trained with a measurement model)"
        return {
            "flag": flag,
            "weak_data": weak,
            "scores_flag": scores_flag,
            "structure_to_noise": snr if np.isfinite(snr) else None,
            "score": score,
            "threshold": float(combined),
            "ratio": ratio,
            "limit": limit,
            "signal_limit": signal,
            "refit_excess": excess,
            "reason": reason,
            "regime": regime,
            "regime_note": note,
            "components": comps,
            "quantile": self.quantile,
            "single_scan": bool(single_scan),
        }

    def _scan_record(
        self, comps: dict, sc: dict, scan: dict, score: float, combined: float, snr: float, oriented: bool = False
    ) -> dict:
        """:meth:`check`'s record of a single scan judged by rule S, or with ``oriented`` rule S′
        (the scan's orientation known and used by the refit; not weak data)."""
        lims = scan["limits"]
        ratio = float(scan_ratio(sc, lims, 0))
        for k, c in comps.items():
            c["scan_limit"] = lims.get(k)
        over = [k for k in comps if lims.get(k) is not None and comps[k]["value"] > lims[k]]
        excess = None
        if scan.get("excess_limit") is not None and "refit" in sc:  # the refit's excess over the noise share
            e = float(refit_excess(sc["refit"][0], snr))
            excess = {"value": e if np.isfinite(e) else None, "limit": float(scan["excess_limit"]), "n": scan["n"]}
        over_e = excess is not None and excess["value"] is not None and excess["value"] > excess["limit"]
        where = (
            f"calibrated on {scan['n']} of the right crystal's simulated single scans, each refitted with its "
            "orientation: rule S′"
            if oriented
            else f"calibrated on {scan['n']} of the right crystal's simulated single scans: rule S"
        )
        if "by_ei" in scan:  # limits by Ei (session 40)
            used = " and ".join(f"{e:g}" for e in scan["by_ei"]["ei_mev"])
            where += f" by Ei (the limits of the calibration at {used} meV)"
        parts = [f"{LABELS[k]} {comps[k]['value'] / lims[k]:.1f}× its single-scan limit" for k in over]
        if over_e and excess is not None:
            parts.append(
                f"the refit leaves {excess['value']:.3f} of the structure beyond the input's noise share, above the "
                f"single-scan limit {excess['limit']:.3f}"
            )
        if parts:
            reason = ", ".join(parts) + f"; {where}"
        else:
            reason = f"every score within its single-scan limit; {where}"
        return {
            "flag": bool(over) or over_e,
            "weak_data": False,
            "scores_flag": bool(over) or over_e,
            "structure_to_noise": snr if np.isfinite(snr) else None,
            "score": score,
            "threshold": combined,
            "ratio": ratio,
            "limit": 1.0,
            "signal_limit": None,
            "refit_excess": excess,
            "scan_rule": {"limits": lims, "n": scan["n"], "oriented": bool(oriented)}
            | ({"excess_limit": scan["excess_limit"]} if "excess_limit" in scan else {})
            | ({"by_ei": scan["by_ei"]} if "by_ei" in scan else {}),
            "reason": reason,
            "regime": "measured",
            "regime_note": None,
            "components": comps,
            "quantile": self.quantile,
            "single_scan": True,
        }

    def sqe_rate(self, structure_to_noise) -> dict | None:
        """The :attr:`sqe_rates` bin of an input's structure-to-noise: {"structure_to_noise_range":
        [low, high or None], "own_n", "own_flagged", "other_n", "other_flagged", "other"}; None
        without rates, for a ratio that is not a finite number, below the first bin, or for rates
        measured with another :data:`OOD_CHECK_VERSION` or another rule-E limit (``sqe_excess_limit``
        in the rates: the :attr:`sqe_excess` limit their verdicts were counted under, None for none)."""
        r = self.sqe_rates
        try:
            v = float(structure_to_noise)
        except (TypeError, ValueError):
            return None
        if not r or not np.isfinite(v) or v < r["edges"][0] or check_version_of(r) != OOD_CHECK_VERSION:
            return None  # (rates of another version's verdicts describe another check)
        if (r.get("sqe_excess_limit"), r.get("sqe_excess_by_ei")) != excess_key(self.sqe_excess):
            return None  # (counted with or without another rule E: another check)
        i, rng = _bin(r["edges"], v)
        eis = sorted({float(m["ei"]) for m in r.get("measured_on") or [] if isinstance(m, dict) and _is_number(m.get("ei"))})
        return {
            "structure_to_noise_range": rng,
            **({"measured_ei_mev": eis} if eis else {}),
            "own_n": int(r["own"]["n"][i]),
            "own_flagged": int(r["own"]["flagged"][i]),
            "other_n": int(r["other"]["n"][i]),
            "other_flagged": int(r["other"]["flagged"][i]),
            "other": str(r["other_label"]),
        }

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": 1,
            "kind": self.kind,
            "model_sha256": self.model_sha256,
            "quantile": self.quantile,
            "combined_threshold": self.combined_threshold,
            "medians": self.medians,
            "thresholds": self.thresholds,
            "mean": self.mean.tolist(),
            "components": self.components.tolist(),
            "variances": self.variances.tolist(),
            "residual_scale": self.residual_scale,
            "calibration": self.calibration,
            "measured": self.measured,
            "scales": self.scales,
            **({"sqe_rates": self.sqe_rates} if self.sqe_rates else {}),
            **({"sqe_limits": self.sqe_limits} if self.sqe_limits else {}),
            **({"sqe_excess": self.sqe_excess} if self.sqe_excess else {}),
            **({"scan_limits": self.scan_limits} if self.scan_limits else {}),
            **({"scan_rates": self.scan_rates} if self.scan_rates else {}),
            **({"scan_limits_oriented": self.scan_limits_oriented} if self.scan_limits_oriented else {}),
        }

    def save(self, path) -> None:
        path = Path(path)
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, default=float))
        tmp.replace(path)

    @classmethod
    def load(cls, path) -> OODStats:
        from ..validate import as_path

        path = as_path(path, "ood.json")
        try:
            d = json_loads(Path(path).read_text(), str(path))
            if d.get("format") != FORMAT:
                raise ValueError(f"format {d.get('format')!r}")
            format_version(d.get("version"), str(path))
            stats = cls(
                d["kind"],
                np.asarray(d["mean"], float),
                np.asarray(d["components"], float),
                np.asarray(d["variances"], float),
                float(d["residual_scale"]),
                {k: float(v) for k, v in d["thresholds"].items()},
                float(d["quantile"]),
                {k: float(v) for k, v in d["medians"].items()},
                float(d["combined_threshold"]),
                d.get("model_sha256"),
                d.get("calibration", {}),
                _measured_regime(d.get("measured") or {}),
                {k: float(v) for k, v in (d.get("scales") or {}).items()},
                _sqe_rates(d.get("sqe_rates") or {}),
                _sqe_limits(d.get("sqe_limits") or {}),
                _sqe_excess(d.get("sqe_excess") or {}),
                _scan_limits(d.get("scan_limits") or {}),
                _scan_rates(d.get("scan_rates") or {}),
                _scan_limits(d.get("scan_limits_oriented") or {}, "scan_limits_oriented"),
            )
            problem = _stats_problem(stats)
            if problem:
                raise ValueError(problem)
            return stats
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FcinvError(f"{path} is not a readable OOD statistics file ({exc})") from None

    @classmethod
    def for_model(cls, model) -> OODStats | None:
        """``ood.json`` beside the model's checkpoint if it exists and was computed for this very
        checkpoint; else None (the reason in ``model.ood_note``)."""
        path = getattr(model, "path", None)
        if path is None:
            model.ood_note = "the model has no checkpoint file"
            return None
        p = Path(path).parent / "ood.json"
        if not p.is_file():
            model.ood_note = f"no OOD statistics beside {path} (run `fcinv ood-calibrate --model …`)"
            return None
        stats = cls.load(p)
        if stats.model_sha256 and stats.model_sha256 != file_sha256(path):
            model.ood_note = f"{p} was computed for another checkpoint (run `fcinv ood-calibrate` again)"
            return None
        if stats.kind != model.kind:
            model.ood_note = f"{p} is for a {stats.kind} model, this is a {model.kind}"
            return None
        model.ood_note = None
        return stats


def _stats_problem(s: OODStats) -> str | None:
    """What makes loaded statistics unusable (None when nothing): every array finite and of
    consistent shape, variances and thresholds > 0, quantile in (0, 1), each regime's medians and
    thresholds over the same scores including the feature distance."""
    if s.kind not in ("vae", "resnet"):
        return f"kind {s.kind!r} (vae or resnet)"
    if s.mean.ndim != 1 or s.mean.size == 0 or s.components.ndim != 2 or s.components.shape[1] != s.mean.size:
        return f"mean {s.mean.shape} and components {s.components.shape} do not fit together"
    if s.variances.shape != (len(s.components),):
        return f"{s.variances.size} variances for {len(s.components)} components"
    arrays = (s.mean, s.components, s.variances, np.array([s.residual_scale]))
    if not all(np.isfinite(a).all() for a in arrays) or (s.variances <= 0).any() or s.residual_scale < 0:
        return "non-finite mean/components, or variances ≤ 0, or a negative residual scale"
    if not 0 < s.quantile < 1:
        return f"quantile {s.quantile!r} (must lie in (0, 1))"
    if s.model_sha256 is not None and not isinstance(s.model_sha256, str):
        return "model_sha256 must be text"
    distance = "latent" if s.kind == "vae" else "feature"
    regimes = [("model-image", s.medians, s.thresholds, s.combined_threshold, s.scales)]
    if s.measured:
        m = s.measured
        regimes.append(("measured", m["medians"], m["thresholds"], m["combined_threshold"], m.get("scales", {})))
    for name, med, thr, comb, scales in regimes:
        if distance not in thr or set(med) != set(thr):
            return f"{name} regime: medians {sorted(med)} and thresholds {sorted(thr)} must name the same scores, {distance!r} among them"
        values = [*med.values(), *thr.values(), comb, *scales.values()]
        if not all(np.isfinite(v) for v in values) or min(thr.values()) <= 0 or min(med.values()) < 0 or comb <= 0:
            return f"{name} regime: thresholds and combined threshold must be finite numbers > 0, medians ≥ 0"
        if scales and (set(scales) - set(thr) or min(scales.values()) <= 0):
            return f"{name} regime: scales must be > 0 for scores it thresholds"
    for name, t in (("scan_limits", s.scan_limits), ("scan_limits_oriented", s.scan_limits_oriented)):
        have = set(s.measured.get("thresholds") or {})
        if t and set(t["limits"]) - have:
            return f"{name} name scores {sorted(t['limits'])} the measured regime does not all have"
        for lims in (t or {}).get("by_ei", {}).get("limits", []):
            if set(lims) - have:
                return f"{name} by_ei names scores {sorted(lims)} the measured regime does not all have"
    return None


def _check_version_field(d: dict, what: str) -> None:
    """A table's ``check_version``, when present, is a whole number ≥ 1 (ValueError naming it)."""
    v = d.get("check_version", 1)
    if not _is_version(v):
        raise ValueError(f"{what} check_version must be a whole number ≥ 1, got {v!r}")


def _sqe_rates(d: dict) -> dict:
    """:attr:`OODStats.sqe_rates` from a file, checked: increasing finite edges ≥ 0, per kind
    whole counts 0 ≤ flagged ≤ n, one per bin (ValueError naming the problem)."""
    if not d:
        return {}
    if not isinstance(d, dict):
        raise ValueError("sqe_rates must be an object")
    edges = _bin_edges(d, "sqe_rates")
    out: dict = {"edges": edges}
    for kind in ("own", "other"):
        n, k = d[kind]["n"], d[kind]["flagged"]
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in [*n, *k])
        if not ok or len(n) != len(edges) or len(k) != len(edges) or any(not 0 <= a <= b for a, b in zip(k, n)):
            raise ValueError(f"sqe_rates {kind}: one whole count per bin with 0 ≤ flagged ≤ n, got n {n!r}, flagged {k!r}")
        out[kind] = {"n": list(n), "flagged": list(k)}
    if not isinstance(d.get("other_label"), str):
        raise ValueError("sqe_rates other_label must be text")
    ex = d.get("sqe_excess_limit")
    if ex is not None and (isinstance(ex, bool) or not isinstance(ex, (int, float)) or not np.isfinite(ex)):
        raise ValueError(f"sqe_rates sqe_excess_limit must be a finite number or null, got {ex!r}")
    by = d.get("sqe_excess_by_ei")
    if by is not None and not (isinstance(by, list) and by and all(_is_number(v) for v in by)):
        raise ValueError(f"sqe_rates sqe_excess_by_ei must be a list of finite numbers > 0 or null, got {by!r}")
    _check_version_field(d, "sqe_rates")
    return out | {k: v for k, v in d.items() if k not in out}


def _sqe_limits(d: dict) -> dict:
    """:attr:`OODStats.sqe_limits` from a file, checked: increasing finite edges ≥ 0, one finite
    limit > 0 and one whole count ≥ 0 per bin, a coverage in [0, 1] (ValueError naming the problem)."""
    if not d:
        return {}
    if not isinstance(d, dict):
        raise ValueError("sqe_limits must be an object")
    edges = _bin_edges(d, "sqe_limits")
    limits, n = d["limits"], d["n"]
    if (
        len(limits) != len(edges)
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v > 0 for v in limits)
        or len(n) != len(edges)
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in n)
    ):
        raise ValueError(f"sqe_limits: one finite limit > 0 and one whole count ≥ 0 per bin, got {limits!r}, {n!r}")
    out = {"edges": edges, "limits": [float(v) for v in limits], "n": list(n), "min_coverage": _coverage_field(d, "sqe_limits")}
    if d.get("ei_range_mev") is not None:
        out["ei_range_mev"] = _ei_range_field(d, "sqe_limits")
    _check_version_field(d, "sqe_limits")
    return out | {k: v for k, v in d.items() if k not in out}


def _coverage_field(d: dict, what: str) -> float:
    """A table's ``min_coverage``: a number in [0, 1] (ValueError naming it)."""
    cov = d["min_coverage"]
    if isinstance(cov, bool) or not isinstance(cov, (int, float)) or not 0 <= cov <= 1:
        raise ValueError(f"{what} min_coverage must be a number in [0, 1], got {cov!r}")
    return float(cov)


def _ei_range_field(d: dict, what: str) -> list:
    """A table's ``ei_range_mev``: [low, high] meV with 0 < low < high (ValueError naming it)."""
    ei = d.get("ei_range_mev")
    ok = isinstance(ei, list) and len(ei) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in ei)
    if not ok or not (np.isfinite(ei).all() and 0 < ei[0] < ei[1]):
        raise ValueError(f"{what} ei_range_mev must be [low, high] in meV with 0 < low < high, got {ei!r}")
    return [float(ei[0]), float(ei[1])]


def excess_key(sqe_excess: dict) -> tuple:
    """What identifies a rule E for :attr:`OODStats.sqe_rates` counted under it: (its limit or None,
    its limits by Ei or None) — the rates' ``sqe_excess_limit`` and ``sqe_excess_by_ei``."""
    if not sqe_excess:
        return (None, None)
    by = sqe_excess.get("by_ei")
    return (sqe_excess["limit"], [t["excess"] for t in by["limits"]] if by else None)


def _sqe_excess(d: dict) -> dict:
    """:attr:`OODStats.sqe_excess` from a file, checked: a finite limit, a whole count ≥ 1, a
    coverage in [0, 1] and an Ei range (ValueError naming the problem)."""
    if not d:
        return {}
    if not isinstance(d, dict):
        raise ValueError("sqe_excess must be an object")
    lim, n = d["limit"], d["n"]
    if isinstance(lim, bool) or not isinstance(lim, (int, float)) or not np.isfinite(lim):
        raise ValueError(f"sqe_excess limit must be a finite number, got {lim!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"sqe_excess n must be a whole number ≥ 1, got {n!r}")
    out = {
        "limit": float(lim),
        "n": n,
        "min_coverage": _coverage_field(d, "sqe_excess"),
        "ei_range_mev": _ei_range_field(d, "sqe_excess"),
    }
    if d.get("by_ei") is not None:  # limits by Ei (session 41): one "excess" limit per calibration Ei
        by = _limits_by_ei(d["by_ei"], "sqe_excess", out["ei_range_mev"])
        if any(set(t) != {"excess"} or t["excess"] is None for t in by["limits"]):
            raise ValueError(f'sqe_excess by_ei limits must each be {{"excess": a finite number > 0}}, got {by["limits"]!r}')
        out["by_ei"] = by
    _check_version_field(d, "sqe_excess")
    return out | {k: v for k, v in d.items() if k not in out}


def _scan_limits(d: dict, what: str = "scan_limits") -> dict:
    """:attr:`OODStats.scan_limits` (or, ``what``, :attr:`OODStats.scan_limits_oriented`) from a
    file, checked: one finite limit > 0 or null per score (at least one a number), a whole count
    ≥ 1, an Ei range and, if present, rates of whole counts with 0 ≤ flagged ≤ n (ValueError naming
    the problem)."""
    if not d:
        return {}
    if not isinstance(d, dict):
        raise ValueError(f"{what} must be an object")
    lims, n = d["limits"], d["n"]
    _check_score_limits(lims, what)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{what} n must be a whole number ≥ 1, got {n!r}")
    if d.get("rates") is not None:
        _rates_counts(d["rates"], f"{what} rates")
    ex = d.get("excess_limit")
    if ex is not None and (isinstance(ex, bool) or not _is_number(ex) or ex <= 0):
        raise ValueError(f"{what} excess_limit must be a finite number > 0 or absent, got {ex!r}")
    ei_range = _ei_range_field(d, what)
    out = {
        "limits": {k: None if v is None else float(v) for k, v in lims.items()},
        "n": n,
        "ei_range_mev": ei_range,
        **({"excess_limit": float(ex)} if ex is not None else {}),
        **({"by_ei": _limits_by_ei(d["by_ei"], what, ei_range)} if d.get("by_ei") is not None else {}),
    }
    _check_version_field(d, what)
    return out | {k: v for k, v in d.items() if k not in out}


def _rates_counts(rates, what: str) -> None:
    """Single-scan rates: whole counts with 0 ≤ flagged ≤ n and the other crystal's name (ValueError naming ``what``)."""
    counts = [rates.get(k) for k in ("own_n", "own_flagged", "other_n", "other_flagged")] if isinstance(rates, dict) else []
    if (
        len(counts) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts)
        or counts[1] > counts[0]
        or counts[3] > counts[2]
        or not isinstance(rates.get("other"), str)
    ):
        raise ValueError(f"{what} must be whole counts with 0 ≤ flagged ≤ n and the other crystal's name, got {rates!r}")


def _scan_rates(d: dict) -> dict:
    """:attr:`OODStats.scan_rates` from a file, checked as rule S's rates (ValueError naming the problem)."""
    if not d:
        return {}
    _rates_counts(d, "scan_rates")
    _check_version_field(d, "scan_rates")
    return dict(d)


def limits_at_ei(by_ei: dict, ei_mev: float) -> tuple[dict, list]:
    """A single-scan table's limits at Ei ``ei_mev`` (meV) from its limits by Ei (rule S by Ei,
    session 40): ``by_ei`` = {"ei_mev": [e_1 < … < e_m], "limits": [{score: limit or None}, …]}, each
    calibrated on the right crystal's scans at that Ei. Inside [e_1, e_m] each score's limit is the
    larger of the two calibration Ei that bracket ``ei_mev`` (that Ei's own at a calibration Ei, to
    0.1 %), so a score that grows or falls with Ei between them is never judged against the smaller;
    outside, the largest over all of them. A score without a limit at either is not limited.
    Returns (limits, the calibration Ei used)."""
    grid = [float(e) for e in by_ei["ei_mev"]]
    near = [k for k, e in enumerate(grid) if abs(ei_mev - e) <= 1e-3 * e]
    if near:
        use = near[:1]
    elif grid[0] < ei_mev < grid[-1]:
        hi = next(k for k, e in enumerate(grid) if e > ei_mev)
        use = [hi - 1, hi]
    else:
        use = list(range(len(grid)))
    tables = [by_ei["limits"][k] for k in use]
    names = sorted({k for t in tables for k in t})
    lims = {}
    for name in names:
        vals = [t.get(name) for t in tables]
        lims[name] = None if any(v is None for v in vals) else float(max(vals))
    return lims, [grid[k] for k in use]


def _check_score_limits(lims, what: str) -> None:
    """A single-scan table's limits: one finite number > 0 or null per score name, at least one a
    number (ValueError naming ``what``)."""
    ok = isinstance(lims, dict) and all(isinstance(k, str) and (v is None or _is_number(v)) for k, v in lims.items())
    if not ok or not any(v is not None for v in lims.values()):
        raise ValueError(f"{what} limits must map score names to a finite number > 0 or null (one a number), got {lims!r}")


def _limits_by_ei(d, what: str, ei_range: list) -> dict:
    """A single-scan table's ``by_ei`` from a file, checked: at least two calibration Ei, increasing,
    inside the table's Ei range, and per Ei one finite limit > 0 or null per score (at least one a
    number) and a whole count ≥ 1 (ValueError naming the problem)."""
    if not isinstance(d, dict):
        raise ValueError(f"{what} by_ei must be an object")
    grid, tables, ns = d.get("ei_mev"), d.get("limits"), d.get("n")
    nums = isinstance(grid, list) and all(_is_number(e) for e in grid)  # (finite, > 0, no true/false)
    if not nums or len(grid) < 2 or any(b <= a for a, b in zip(grid, grid[1:])):
        raise ValueError(f"{what} by_ei ei_mev must be ≥ 2 increasing incident energies (meV), got {grid!r}")
    if grid[0] < ei_range[0] * (1 - 1e-3) or grid[-1] > ei_range[1] * (1 + 1e-3):
        raise ValueError(f"{what} by_ei ei_mev {grid} lies outside the table's Ei range {ei_range}")
    if not isinstance(tables, list) or len(tables) != len(grid):
        raise ValueError(f"{what} by_ei limits must be one object per Ei ({len(grid)}), got {tables!r}")
    for t in tables:
        _check_score_limits(t, f"{what} by_ei")
    if not (
        isinstance(ns, list)
        and len(ns) == len(grid)
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in ns)
    ):
        raise ValueError(f"{what} by_ei n must be one whole number ≥ 1 per Ei, got {ns!r}")
    return {
        "ei_mev": [float(e) for e in grid],
        "limits": [{k: None if v is None else float(v) for k, v in t.items()} for t in tables],
        "n": list(ns),
    }


def scan_ratio(scores: dict, limits: dict, i: int = 0) -> float:
    """Rule S's ratio of input ``i``: the largest score over its single-scan limit (scores without a
    limit take no part; NaN scores count as within it)."""
    parts = [float(scores[k][i]) / v for k, v in limits.items() if v is not None and k in scores and np.isfinite(scores[k][i])]
    return max(parts, default=0.0)


def _measured_regime(d: dict) -> dict:
    if not d:
        return {}
    return {
        "medians": {k: float(v) for k, v in d["medians"].items()},
        "thresholds": {k: float(v) for k, v in d["thresholds"].items()},
        "combined_threshold": float(d["combined_threshold"]),
        **({"scales": {k: float(v) for k, v in d["scales"].items()}} if d.get("scales") else {}),
    }


# ---------------------------------------------------------------------- calibration
def noisy_copies(spectra, levels=DEFAULT_LEVELS, seed: int = 0) -> tuple[np.ndarray, list]:
    """Each spectrum once per noise level, cycling through ``levels`` ((B, P) pairs):
    returns (noisy (N, nq, nE), level of each)."""
    from ..analysis.noise import add_noise

    rng = np.random.default_rng(seed)
    x = np.asarray(spectra, float)
    out = np.empty(x.shape, np.float32)
    used = []
    for i in range(len(x)):
        b, p = levels[i % len(levels)]
        out[i] = add_noise(x[i], b, p, rng=rng)[0]
        used.append((b, p))
    return out, used


def measured_draws(augmenter, spectra, epoch: int = OOD_EPOCH) -> np.ndarray:
    """One measurement-model draw of each spectrum as an instrument would record it, (N, nq, nE)
    float32: counts / P with NaN where the drawn coverage has no data (zero-count pixels stay
    measured zeros; the model's own min-max scaling follows in ``prepare``)."""
    return np.stack([augmenter.one(x, epoch, i, scale=False) for i, x in enumerate(np.asarray(spectra))]).astype(np.float32)


def calibrate(
    model,
    train_spectra,
    calib_spectra,
    levels=DEFAULT_LEVELS,
    quantile: float = 0.99,
    seed: int = 0,
    n_components: int = MAX_COMPONENTS,
    extra: dict | None = None,
    masks=None,
    augmenter=None,
    progress: bool = False,
) -> OODStats:
    """OOD statistics for ``model``: feature mean/covariance from ``train_spectra`` (clean, as trained
    on); thresholds at ``quantile`` of the scores of ``calib_spectra`` (clean) and of one noisy copy of
    each at the noise ``levels`` (cycled). Returns :class:`OODStats` (``save`` it as ``ood.json``).

    ``masks`` (M, nq, nE) bool, optional: coverage masks (e.g. of single scans); when given, every
    noisy copy is also cut to a random one of them (NaN outside) — for a model trained with partial
    coverage, so that partial coverage alone is not "out of distribution".

    ``augmenter`` (a :class:`~fcinv_widgets.measurement.Augmenter`, optional): for a model trained
    on realistic spectra, one augmented draw of every calibration spectrum (resolution, residual
    weighting, elastic line, backgrounds, counts, coverage) calibrates the **measured regime**
    (its own medians and thresholds, the :data:`MEASURED_SCORES`; see the module doc) used for
    inputs that say they are measured; the model-image regime stays calibrated on the clean and
    noisy sets. ``progress``: a progress bar (stderr) over those draws' refits, the long part."""
    if not 0.5 < quantile < 1:
        raise FcinvError(f"quantile must be in (0.5, 1), got {quantile}")
    tr = np.asarray(train_spectra)
    ca = np.asarray(calib_spectra)
    if len(tr) < 10 or len(ca) < 10:
        raise FcinvError(f"need at least 10 training and 10 calibration spectra, got {len(tr)} and {len(ca)}")
    f, _ = _features(model, tr, misfits=False)
    mean = f.mean(0)
    cov = np.cov(f - mean, rowvar=False)
    w, v = np.linalg.eigh(cov)
    order = np.argsort(w)[::-1]
    w, v = w[order], v[:, order]
    k = min(n_components, f.shape[1], len(f) - 1)
    floor = max(w[0], 1e-30) * 1e-6  # keep the whitening finite along near-degenerate directions
    comps, var = v[:, :k].T, np.maximum(w[:k], floor)
    resid = 0.0
    if k < f.shape[1]:
        d = f - mean
        r = d - (d @ comps.T) @ comps
        resid = float((r**2).sum(1).mean())
    stats = OODStats(model.kind, mean, comps, var, resid, {}, quantile)
    noisy, _ = noisy_copies(ca, levels, seed=seed)
    if masks is not None:
        m = np.asarray(masks, bool)
        if m.ndim != 3 or m.shape[1:] != noisy.shape[1:] or not m.reshape(len(m), -1).any(1).all():
            raise FcinvError(f"masks must be (M, {noisy.shape[1]}, {noisy.shape[2]}) with some coverage each, got {m.shape}")
        pick = np.random.default_rng(seed + 1).integers(0, len(m), len(noisy))
        noisy = np.where(m[pick], noisy, np.nan).astype(np.float32)
    s_clean = stats.scores(model, ca)
    s_noisy = stats.scores(model, noisy)
    # thresholds: the quantile over the clean and over the noisy spectra, whichever is larger
    # single scores: a Bonferroni share of the false-alarm budget (each catches what the sum dilutes)
    q1 = 1 - (1 - quantile) / len(s_clean)
    sets = [s_clean, s_noisy]

    def qmax(vals, q):
        return float(max(np.quantile(v, q) for v in vals))

    stats.medians = {k: max(float(np.median(np.concatenate([st[k] for st in sets]))), 1e-12) for k in s_clean}
    stats.scales = {
        k: max(float(np.quantile(np.concatenate([st[k] for st in sets]), COMBINE_REF_QUANTILE)), 1e-12) for k in s_clean
    }
    stats.thresholds = {k: qmax([st[k] for st in sets], q1) for k in s_clean}
    stats.combined_threshold = qmax([stats.combine(st) for st in sets], quantile)
    fpr_clean = float(stats._flags(s_clean).mean())
    fpr_noisy = float(stats._flags(s_noisy).mean())
    fpr_aug = None
    if augmenter is not None:
        # the measured regime: the model's own measurement-model draws of every calibration spectrum
        aug = measured_draws(augmenter, ca, epoch=OOD_EPOCH)
        # (a draw with no coverage or a constant one is not a spectrum: check_input would refuse it)
        ok = np.array([bool(np.isfinite(a).any()) and np.nanmax(a) > np.nanmin(a) for a in aug])
        s_aug = stats.scores(model, aug[ok], measured=True, progress=progress)
        qm = 1 - (1 - quantile) / len(s_aug)
        stats.measured = {
            "medians": {k: max(float(np.median(v)), 1e-12) for k, v in s_aug.items()},
            "thresholds": {k: float(np.quantile(v, qm)) for k, v in s_aug.items()},
            "scales": {k: max(float(np.quantile(v, COMBINE_REF_QUANTILE)), 1e-12) for k, v in s_aug.items()},
        }
        stats.measured["combined_threshold"] = float(np.quantile(stats.combine(s_aug, True), quantile))
        fpr_aug = float(stats._flags(s_aug, True).mean())
    stats.model_sha256 = file_sha256(model.path) if getattr(model, "path", None) else None
    stats.calibration = {
        "n_train": len(tr),
        "n_calib": len(ca),
        "levels": [list(map(float, lv)) for lv in levels],
        "seed": seed,
        "n_components": int(k),
        "flagged_fraction_clean": fpr_clean,
        "flagged_fraction_noisy": fpr_noisy,
        "flagged_fraction_augmented": fpr_aug,
        "augmented": None if augmenter is None else augmenter.model.to_dict(),
        # whether the measured regime's draws went through step 0 (an augmenter without attached
        # S(Q,E) weights draws unit-weight spectra whatever its p_sqe says)
        "sqe_draws": None if augmenter is None else getattr(augmenter, "weighting", None) is not None,
        "coverage_masks": 0 if masks is None else len(masks),
        **(extra or {}),
    }
    return stats
