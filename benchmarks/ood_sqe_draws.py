"""How the measured regime's scores spread over a model's own S(Q,E) draws, and what thresholds
calibrated on them (per bin of structure-to-noise) would catch (session 19; docs/results.md, OOD).

    python benchmarks/ood_sqe_draws.py --model ge-resnet --dataset ge_nuis.h5 --mask-bank ge_masks.npz
        [--n 400] [--skip 1000] [--bins 4] [--bench-rows bench_ood_fit.json] [--json FILE]

``--n`` held-out spectra of the model's own training distribution (the nuisance test split past
the ``--skip`` that ``fcinv ood-calibrate`` used) are drawn twice through the model's measurement
model (coverage bank ``--mask-bank``, the calibration's seed and epoch): unit-weight, as the
measured regime is calibrated, and as a measured one-phonon S(Q,E) (``p_sqe`` = 1, at the
model's training temperatures, corrected as inference corrects such a file). For each draw: the
measured-regime scores of the shipped ``ood.json`` (the refit told the temperature), the
structure-to-noise ratio and the covered fraction. Prints quantiles (50 / 90 / 99 %) of the
feature distance (latent distance for a VAE) and the refit score by kind, coverage and
structure-to-noise. With ``--bench-rows`` (a ``bench_ood_fit.py --json`` file of the same
model): also what thresholds per quantile bin of log structure-to-noise (``--bins``, over both
kinds of draws that are not weak data, each bin's threshold at least the shipped one) flag among
that run's judged inputs, own and other crystal. Asserts nothing.
"""

import argparse
import dataclasses
import json

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="ge-resnet")
ap.add_argument("--dataset", required=True, help="the fcinv dataset HDF5 the model's ood.json was calibrated on")
ap.add_argument("--mask-bank", required=True)
ap.add_argument("--n", type=int, default=400)
ap.add_argument("--skip", type=int, default=1000)
ap.add_argument("--bins", type=int, default=4)
ap.add_argument("--bench-rows", default=None)
ap.add_argument("--json", default=None)
a = ap.parse_args()

import h5py  # noqa: E402

from fcinv_widgets.materials import material_for_model  # noqa: E402
from fcinv_widgets.measurement import MeasurementModel, load_bank  # noqa: E402
from fcinv_widgets.models import load_model  # noqa: E402
from fcinv_widgets.models.ood import MIN_STRUCTURE_TO_NOISE, OOD_EPOCH, structure_to_noise  # noqa: E402
from fcinv_widgets.models.train import full_params  # noqa: E402

model = load_model(a.model)
stats = model.ood_stats()
if stats is None or not stats.has_measured():
    raise SystemExit(f"{a.model}: no ood.json with a measured regime ({getattr(model, 'ood_note', '')})")
with h5py.File(a.dataset) as f:
    held = np.asarray(f["test/spectra"][a.skip : a.skip + a.n])
params = full_params(a.dataset, "test", a.skip + a.n)[1][a.skip :]
mm = MeasurementModel.from_dict(model.config["augment"])
if mm.p_sqe <= 0:
    raise SystemExit(f"{a.model} was not trained with the S(Q,E) path (p_sqe = 0)")
E = model.config["energy_centers_mev"]
bank = load_bank(a.mask_bank)[0]
seed = int(stats.calibration.get("seed", 12345))
draws = {}
for kind, kw in (("unit", {"p_sqe": 0.0}), ("sqe", {"p_sqe": 1.0, "p_clean": 0.0})):
    smp = dataclasses.replace(mm, **kw).sampler(E, masks=bank, seed=seed)
    if kw["p_sqe"] > 0:
        smp.attach_sqe(material_for_model(model.config), params)
    out = [smp.one(x, OOD_EPOCH, i, return_info=True, scale=False) for i, x in enumerate(held)]
    x = np.stack([d for d, _ in out])
    temps = np.array([i.get("temperature_k", np.nan) for _, i in out])
    ok = np.array([bool(np.isfinite(v).any()) and np.nanmax(v) > np.nanmin(v) for v in x])
    x, temps = x[ok], temps[ok]
    t_list = [None if not np.isfinite(t) else float(t) for t in temps]
    draws[kind] = {
        "snr": structure_to_noise(model, x, t_list),
        "coverage": np.isfinite(x).mean((1, 2)),
        "scores": stats.scores(model, x, measured=True, temperature_k=t_list),
    }
    print(f"{kind}: {len(x)} draws", flush=True)
feat = "latent" if model.kind == "vae" else "feature"
table = []
print(f"{a.model}: quantiles 50 / 90 / 99 % of the {feat} distance and the refit score")
for kind, d in draws.items():
    snr, cov, sc = d["snr"], d["coverage"], d["scores"]
    judged = snr >= MIN_STRUCTURE_TO_NOISE
    for label, sel in (
        ("judged", judged),
        ("full coverage", judged & (cov > 0.99)),
        ("partial coverage", judged & (cov <= 0.99)),
        ("full coverage, structure/noise > 10", (snr > 10) & (cov > 0.99)),
    ):
        if sel.sum() < 4:
            continue
        q = {k: np.quantile(sc[k][sel], [0.5, 0.9, 0.99]).round(3).tolist() for k in (feat, "refit") if k in sc}
        table.append({"kind": kind, "subset": label, "n": int(sel.sum()), **q})
        print(f"  {kind:<5} {label:<38} n={sel.sum():4d}  " + "  ".join(f"{k} {v}" for k, v in q.items()))
binned = None
if a.bench_rows:
    rows = json.load(open(a.bench_rows))["rows"]
    meas = stats.measured
    keys = list(meas["thresholds"])
    pool_snr = np.concatenate([d["snr"] for d in draws.values()])
    pool = {k: np.concatenate([d["scores"][k] for d in draws.values()]) for k in keys}
    keep = pool_snr >= MIN_STRUCTURE_TO_NOISE
    pool_snr, pool = pool_snr[keep], {k: v[keep] for k, v in pool.items()}
    edges = np.quantile(np.log(pool_snr), np.linspace(0, 1, a.bins + 1)[1:-1])
    which = np.searchsorted(edges, np.log(pool_snr))
    qm = 1 - (1 - stats.quantile) / len(keys)
    comb = stats.combine(pool, True)
    bins = []
    for j in range(a.bins):
        s = which == j
        th = {k: max(float(np.quantile(pool[k][s], qm)), meas["thresholds"][k]) for k in keys}
        bins.append((th, max(float(np.quantile(comb[s], stats.quantile)), meas["combined_threshold"])))

    def flag(r):
        c = {k: np.array([v["value"]]) for k, v in r["ood_components"].items()}
        th, ct = bins[int(np.searchsorted(edges, np.log(r["structure_to_noise"])))]
        single = any(c[k][0] > th[k] for k in c)
        return bool(single or stats.combine(c, True)[0] > ct)  # (combine leaves out SINGLE_ONLY scores)

    binned = {"edges_structure_to_noise": np.exp(edges).tolist(), "thresholds": bins}
    for kind in ("own", "other"):
        rs = [r for r in rows if r["set"] == kind and not r.get("weak_data")]
        now, new = sum(r["network_flag"] for r in rs), sum(flag(r) for r in rs)
        binned[kind] = {"n_judged": len(rs), "flagged_shipped": now, "flagged_binned": new}
        print(f"  {kind} judged inputs of {a.bench_rows}: flagged {now} of {len(rs)} now, {new} with per-bin thresholds")
if a.json:
    with open(a.json, "w") as f:
        json.dump({"settings": vars(a), "table": table, "binned": binned}, f, indent=1, default=float)
