"""How far a physics fit of a single scan may move from a network's answer and still be trusted, per model.

:func:`~fcinv_widgets.analysis.refine.trust_fit` keeps a fit only when it stayed within ``k`` of
the network's calibrated σ on every active FC. A fixed ``k`` = 2 reads the network's σ as exact
per FC; but the check is over all 8 FCs at once, and a network's σ covers the truth on a single
scan's one-phonon S(Q,E) less well than on its own test set. So each model carries the limit
measured for it: the :data:`TRUST_LEVEL` (99 %) quantile, over simulated single-scan measurements
of known truth, of max over FCs of |truth − network| / σ_network (:func:`familywise_limit`) — the
distance within which the truth itself lies 99 % of the time, all FCs together. A fit further away
than that has most likely left for a wrong basin. (Sessions 18–20 used 95 %; with each scan's own
σ calibration the 95 % limit refused the odd right fit, and 99 % was preferred on fresh truths by
a rule written down before the runs: docs/results.md "Session 21".)

Only single-orientation fits use it (docs/results.md "Session 18"): on held-out truths it put more single
scans' FC0–FC3 within 5 % for all four robust models without lowering ±2σ, while on Ge full data,
where the networks' σ covers better, the same change let one more wrong-basin fit through per
model; full data keep :data:`~fcinv_widgets.analysis.refine.TRUST_NETWORK_SIGMA`.

A model may also carry ``edge_one_sided`` (rule F, session 29: a fit leaving the training box
where the network's answer sits at its edge is judged one-sided there; :func:`edge_one_sided_of`),
and ``full_data_limit``, the same quantile measured on full data, where it was
adopted by a rule written down before the runs (session 21, rule D: on two sets of held-out truths
it put at least as many full-data FC0–FC3 within 5 % as 2σ with ±2σ ≥ 0.90 — `nb-resnet`, `nb-vae`;
the Ge models failed it and keep 2σ). Without it full data keep ``TRUST_NETWORK_SIGMA``.

Stored as ``trust.json`` beside ``model.pt``::

    {"format": "fcinv-trust", "version": 1, "single_scan_limit": 3.2, "level": 0.99, "measured": {"single scan": {"limit": 3.2, "n": 720},
     "full data": {...}}, "model_sha256": "…", "measured_on": "…", "command": "…"}

It records the SHA-256 of the checkpoint it was measured for; a model without one (or with one
for another checkpoint) uses ``TRUST_NETWORK_SIGMA`` for single scans too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import FcinvError
from ..validate import format_version, json_loads

TRUST_FILE = "trust.json"
FORMAT = "fcinv-trust"

#: the familywise level the shipped limits are measured at, and the default of ``fcinv trust-calibrate``
TRUST_LEVEL = 0.99

#: the range a stored limit must lie in (σ of the network): below 1 a fit could hardly move at all,
#: above 10 the check would accept anything
LIMIT_RANGE = (1.0, 10.0)


def familywise_limit(z, level: float = 0.95) -> float:
    """The ``level`` quantile over cases of max over FCs of |z|: ``z`` (cases, FCs) the network's
    standardized errors (truth − answer) / calibrated σ on inputs of known truth. For a network
    whose σ is exact and FCs independent it is the Šidák limit (2.73 for 8 FCs at 95 %)."""
    z = np.abs(np.asarray(z, float))
    if z.ndim != 2 or len(z) < 20 or not np.isfinite(z).all():
        raise FcinvError(f"familywise_limit needs ≥ 20 cases × FCs of finite z, got shape {z.shape}")
    if not 0.5 <= level < 1:
        raise FcinvError(f"level must be in [0.5, 1), got {level}")
    return float(np.quantile(z.max(axis=1), level))


def save_trust_limit(model_path, single_scan_limit: float, full_data_limit: float | None = None, **meta) -> Path:
    """Write ``trust.json`` beside the checkpoint ``model_path`` (``model.pt`` or its folder);
    ``full_data_limit``: also hold full-data fits to it (else 2σ). The :data:`ADOPTED_RULES` of
    an existing file measured for this same checkpoint are kept (re-measuring a limit does not undo
    them); those of a file measured for another checkpoint are not (they were scored on it)."""
    from .ood import file_sha256

    p = Path(model_path)
    ckpt = p / "model.pt" if p.is_dir() else p
    out = ckpt.parent / TRUST_FILE
    sha = file_sha256(ckpt)
    rec: dict = {"format": FORMAT, "version": 1, "single_scan_limit": _check_limit(single_scan_limit, out)}
    if full_data_limit is not None:
        rec["full_data_limit"] = _check_limit(full_data_limit, out, "full_data_limit")
    kept: dict = {}
    try:
        old = json_loads(out.read_text(), str(out)) if out.is_file() else {}
    except (OSError, ValueError):
        old = {}  # a damaged file is replaced whole
    if isinstance(old, dict) and old.get("model_sha256") == sha:
        for key in ADOPTED_RULES:
            if old.get(key) is True:
                kept |= {k: old[k] for k in (key, f"{key}_adopted") if k in old}
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    out.write_text(json.dumps({**rec, **kept, **meta, "model_sha256": sha}, indent=1) + "\n")
    return out


def full_data_limit_of(record: dict, where="trust.json") -> float | None:
    """The adopted full-data limit of a ``trust.json`` record, None when it has none (2σ then)."""
    v = record.get("full_data_limit")
    return None if v is None else _check_limit(v, where, "full_data_limit")


#: rules a model adopts by a measurement on its own checkpoint (each with a ``<key>_adopted`` text
#: saying on what): kept by :func:`save_trust_limit` when the limit is re-measured for the same
#: checkpoint, dropped for another one (the rule was scored on the old weights)
ADOPTED_RULES = ("edge_one_sided", "edge_warn")


def adopt_rule(model_path, key: str, adopted: str) -> Path:
    """Mark one of :data:`ADOPTED_RULES` as adopted in the ``trust.json`` beside ``model_path``
    (``model.pt`` or its folder), with ``adopted`` saying on what measurement. The file must exist
    and have been measured for this very checkpoint (SHA-256): a rule is scored on the weights."""
    from .ood import file_sha256

    if key not in ADOPTED_RULES:
        raise FcinvError(f"unknown rule {key!r}: one of {', '.join(ADOPTED_RULES)}")
    if not isinstance(adopted, str) or not adopted.strip():
        raise FcinvError(f"adopting {key} needs a text saying on what measurement")
    p = Path(model_path)
    ckpt = p / "model.pt" if p.is_dir() else p
    if not ckpt.is_file():
        raise FcinvError(f"{ckpt}: no such checkpoint")
    k, rec, note = load_trust_limit(ckpt)
    if k is None or rec.get("model_sha256") != file_sha256(ckpt):
        raise FcinvError(
            f"{ckpt.parent / TRUST_FILE}: no trust limit measured for this checkpoint "
            f"({note or 'no model_sha256'}; `fcinv trust-calibrate --write` first)"
        )
    # rewritten by the one writer of trust.json, which keeps the rules adopted before
    skip = ("single_scan_limit", "full_data_limit", "model_sha256")
    meta = {m: v for m, v in rec.items() if m not in skip} | {key: True, f"{key}_adopted": adopted.strip()}
    return save_trust_limit(ckpt, k, full_data_limit_of(rec), **meta)


def _adopted(record: dict, key: str, where) -> bool:
    v = record.get(key, False)
    if not isinstance(v, bool):
        raise FcinvError(f"{where}: {key} must be true or false, got {v!r}")
    return v


def edge_one_sided_of(record: dict, where="trust.json") -> bool:
    """Whether a ``trust.json`` record adopts rule F (session 29, docs/results.md "the training-box edge"):
    a physics fit that leaves the training box on the side where the network's answer sits at its
    edge is judged one-sided there (:func:`~fcinv_widgets.analysis.refine.trust_fit`'s ``domain``).
    Adopted for `ge-resnet` (session 29) and `nb-resnet`, `nb-vae` (session 31) by a rule written
    down before its scoring (`ge-vae` failed it); absent: False."""
    return _adopted(record, "edge_one_sided", where)


def edge_warn_of(record: dict, where="trust.json") -> bool:
    """Whether a ``trust.json`` record adopts the training-box edge warning (session 29's
    pre-registered rule, docs/results.md "the training-box edge": ≤ 12 % of held-out in-box spectra marked
    and ≥ 80 % of truths > 15 % outside caught, clean and realistic): `nb-resnet`; absent: False
    (the answer's place in the box is then a record only)."""
    return _adopted(record, "edge_warn", where)


def _check_limit(value, where, key: str = "single_scan_limit") -> float:
    try:
        k = float(value)
    except (TypeError, ValueError):
        k = math.nan
    if not (LIMIT_RANGE[0] <= k <= LIMIT_RANGE[1]):
        raise FcinvError(f"{where}: {key} must be a number in [{LIMIT_RANGE[0]:g}, {LIMIT_RANGE[1]:g}], got {value!r}")
    return k


def load_trust_limit(model_path) -> tuple[float | None, dict, str | None]:
    """(limit or None, the file's record, note): the measured single-scan limit of the checkpoint
    ``model_path`` from its ``trust.json``; None with a note saying why when there is none for this checkpoint. A
    damaged file is an error (one line)."""
    from .ood import file_sha256

    if model_path is None:
        return None, {}, "the model has no checkpoint file"
    ckpt = Path(model_path)
    p = ckpt.parent / TRUST_FILE
    if not p.is_file():
        return None, {}, f"no {TRUST_FILE} beside {ckpt}"
    try:
        d = json_loads(p.read_text(), str(p))
    except (OSError, ValueError) as exc:
        raise FcinvError(f"{p} is not a readable trust-limit file ({exc})") from None
    if not isinstance(d, dict):
        raise FcinvError(f"{p} is not a readable trust-limit file (not a JSON object)")
    if d.get("format", FORMAT) != FORMAT:  # files written before the format was recorded have none
        raise FcinvError(f"{p} is not a trust-limit file (format {d.get('format')!r}, expected {FORMAT!r})")
    format_version(d.get("version"), str(p))
    k = _check_limit(d.get("single_scan_limit"), p)
    full_data_limit_of(d, p)  # a damaged full-data limit is an error too
    edge_one_sided_of(d, p)
    edge_warn_of(d, p)
    sha = d.get("model_sha256")
    if sha and ckpt.is_file() and sha != file_sha256(ckpt):
        return None, d, f"{p} was measured for another checkpoint"
    return k, d, None
