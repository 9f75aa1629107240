"""Whether a network's answer sits at the edge of the box of force constants it was trained on.

A network learns the FCs over its training domain (a box, eV/Å², docs/results.md "Training domains"): it
cannot answer outside it, and near its edge its answer is pulled toward the interior with a σ
that is too small. Measured (``benchmarks/bench_domain_edge.py``, Ge, the box widened by 30 % per
side, 1,000 clean test spectra, seed 71, the shipped models): truths up to 15 % of the box's
width outside it come back 1.5–4.5σ inside on average, with ±2σ covering 0.2–0.7 of them; truths
further out 2–12σ with ±2σ 0.0–0.5 — while the spectrum-side check (:mod:`.ood`) flags only
36–54 % of those spectra: a crystal stiffer or softer than anything in the box gives a spectrum
that still looks like one.

So each answer carries its distance to the box's edge, per FC, in its own σ
(:func:`domain_edge`), and is marked ``at_edge`` when one of the leading
:data:`EDGE_CHECKED_FCS` FCs lies within :data:`EDGE_SIGMA_LIMIT` σ of an edge or beyond it.
A record, and an alarm only where measured to be one: whether it should warn was decided by a rule written down before the
validation runs (docs/results.md "the training-box edge"), and on fresh draws (seed 72) it
marked 4.7–10.7 % of held-out spectra of the box itself (answers that are as well covered by
their ±2σ as the rest: inside the box an answer at its edge is not less trustworthy) but caught ≥ 80 % of spectra with a truth > 15 % outside only for
`nb-resnet` (clean 0.95, realistic 0.89); `ge-resnet` 0.87 / 0.71, `nb-vae` 0.67 / 0.63,
`ge-vae` 0.53 / 0.43 — so `fcinv invert` and `infer-scans` say it in their report and JSON for
every model, and warn (stderr, ``"warning": true``) only for a model whose ``trust.json`` adopts
it (``edge_warn``: `nb-resnet`, the one model that met the rule; session 30), on full data (the rule
was validated on full spectra, not on single scans).
"""

from __future__ import annotations

import numpy as np

from ..errors import FcinvError

#: an answer within this many of its σ of the box's edge (or beyond it) on a checked FC is flagged
EDGE_SIGMA_LIMIT = 0.5

#: the leading FCs checked (FC0–FC3, the issue's target FCs and the networks' best determined;
#: the higher ones have σ comparable to the box's width, so they sit "near an edge" by design)
EDGE_CHECKED_FCS = 4


def edge_gaps(mean, std, domain) -> tuple[np.ndarray, np.ndarray]:
    """``(z, lower)`` per FC: the distance of ``mean`` to the box's nearer edge in ``std`` (negative
    beyond it; σ = 0 counts as a vanishing σ) and whether that edge is the lower one (ties: lower).
    The one place the gaps are computed (:func:`domain_edge`, the trust check's rule F)."""
    mu, sd, box = np.asarray(mean, float), np.asarray(std, float), np.asarray(domain, float)
    lo_gap, hi_gap = mu - box[:, 0], box[:, 1] - mu
    lower = lo_gap <= hi_gap
    z = np.minimum(lo_gap, hi_gap) / np.maximum(sd, 1e-12 * np.maximum(box[:, 1] - box[:, 0], 1e-300))
    return z, lower


def domain_edge(
    mean, std, domain, names=None, limit: float = EDGE_SIGMA_LIMIT, checked: int = EDGE_CHECKED_FCS, warns: bool = False
) -> dict:
    """Where the answer ``mean`` ± ``std`` (n FCs, eV/Å²) lies in the training box ``domain``
    ((n, 2) eV/Å²): ``{"at_edge", "warning", "limit_sigma", "checked", "edge_sigmas" (per FC: the
    distance of the mean to the nearer edge in its σ, negative beyond it), "fcs" (the checked FCs
    at the edge), "edges" (their nearer edge's value, eV/Å²), "reason"}``. ``warns``: the model
    adopted the warning (``edge_warn`` in its ``trust.json``); ``warning`` is then ``at_edge``."""
    mu = np.asarray(mean, float).reshape(-1)
    sd = np.asarray(std, float).reshape(-1)
    box = np.asarray(domain, float)
    n = mu.size
    if (
        sd.shape != (n,)
        or box.shape != (n, 2)
        or not (np.isfinite(mu).all() and np.isfinite(sd).all() and np.isfinite(box).all())
    ):
        raise FcinvError(f"domain_edge needs n finite means and σ and an (n, 2) box, got {mu.shape}, {sd.shape}, {box.shape}")
    if not isinstance(warns, (bool, np.bool_)):
        raise FcinvError(f"warns must be true or false, got {warns!r}")
    names = [f"FC{j}" for j in range(n)] if names is None else list(names)
    z, lower = edge_gaps(mu, sd, box)
    edge = np.where(lower, box[:, 0], box[:, 1])
    k = min(int(checked), n)
    at = [j for j in range(k) if z[j] < limit]
    reason = None
    if at:
        reason = "; ".join(
            f"{names[j]} {mu[j]:+.3f} ± {sd[j]:.3f} eV/Å² is "
            + (f"{-z[j]:.1f}σ beyond" if z[j] < 0 else f"{z[j]:.1f}σ inside")
            + f" the training box's edge {edge[j]:+.3f}"
            for j in at
        )
    return {
        "at_edge": bool(at),
        "warning": bool(at) and bool(warns),
        "limit_sigma": float(limit),
        "checked": k,
        "edge_sigmas": z.tolist(),
        "fcs": [names[j] for j in at],
        "edges": [float(edge[j]) for j in at],
        "reason": reason,
    }


#: what a flagged answer means, for warnings and notebooks
EDGE_NOTE = (
    "the crystal's force constants may lie outside what the model was trained on: there its answer is pulled "
    "inside the box and its σ is too small (docs/results.md 'the training-box edge'); the physics fit of a one-phonon S(Q,E) is not bound to the box"
)
