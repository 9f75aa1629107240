"""The networks alone on simulated Ge measurements of several true FC sets: accuracy and ±2σ coverage.

    python benchmarks/bench_networks_sqe.py [--models ge-vae,ge-resnet] [--truths 8]
        [--cells 0.05,300;0.2,30] [--angles 0,60] [--ei 80] [--temperature 5] [--qmax 6] [--json FILE]

``bench_measurement.py`` inverts one truth (the first-principles FCs) and one noise draw; this
one asks the same of ``--truths`` FC sets (of ``--material``, default Ge) — the shipped first-principles (DFT) FCs
where the material has them, then sets
drawn as ``bench_refine_sqe.py`` draws them (the 36 inactive FCs from N(reference,
(1.5 σ_fit)²), the 8 active ones uniformly within ±15 % of the reference) — in each noise cell:
the folded one-phonon S(Q,E) as ``fcinv simulate --full-sqe`` makes it (Debye–Waller, Bose
factor at ``--temperature``, ARCS resolution and kinematic coverage at ``--ei``, |Q| ≤
``--qmax``), a flat background B and Poisson counts P (``noise.add_noise``, 99.5th-percentile
peak), written as an fcinv spectrum file that says what it is, and inverted by
``Inverter.invert(path, refine=False)`` — the correction chosen by default (E/(n+1) weighting at
its temperature, clip), the network alone (the OOD check is skipped: accuracy only). ``--angles``: single-orientation
scans of each truth at these sample angles too (``scans.simulate_scans``, same noise), inverted
as S(Q,E) at the temperature. Prints, per model and data set, the median and largest relative
error of FC0–FC3 over truths × cells, the fraction of FC0–FC3 within 5 %, and the ±1σ / ±2σ
coverage over all 8 FCs. ``--refine``: each network answer is also the start of the physics fit
(``analysis.refine.refine_sqe``, as ``fcinv invert`` and ``fcinv infer-scans`` run it; ~10 s
per fit on one core), reported as "refined", as "refined, checked": the fit where it reached
the data's noise (``above_noise`` false), the network's answer where it did not, and as "refined,
trusted": what ``fcinv invert`` and ``infer-scans`` report by default since session 16
(``analysis.refine.trust_fit``: the fit where it reached the noise and stayed within 2σ of the
network's answer on FC0–FC3 since session 22 (rule E; every active FC before) — a single scan within
the model's measured limit on every FC, ``trust.json``, since session 18 — the network's answer otherwise); a fit's σ is what it
reports (Laplace × ``FIT_SIGMA_SCALE`` since session 17; the docs/results.md's seed-31/41 rows were scored
with the Laplace σ and the scale applied after). ``--json``: the rows after each truth (``"partial": true``), the summary at
the end. ``--prior-fit K1,K2``: also the fits
with the network's answer as a Gaussian prior on the active FCs (``refine_sqe(prior_mean=,
prior_std=)``, the network's σ times K), reported raw ("prior fit ×K") and where it reached the
data's noise ("prior fit ×K, checked"; the network's answer otherwise). Asserts nothing.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--models", default="ge-vae,ge-resnet")
ap.add_argument("--material", default="Ge", help="the models' material (the truths are drawn around its reference)")
ap.add_argument("--truths", type=int, default=8)
ap.add_argument("--cells", default="0.05,300;0.2,30", help="B,P noise cells separated by ;")
ap.add_argument("--angles", default="", help="single scans at these sample angles (degrees, comma-separated)")
ap.add_argument("--ei", type=float, default=80.0)
ap.add_argument("--temperature", type=float, default=5.0)
ap.add_argument("--qmax", type=float, default=6.0)
ap.add_argument("--seed", type=int, default=2026)
ap.add_argument("--refine", action="store_true", help="also the physics fit started at each network answer")
ap.add_argument(
    "--prior-fit", default="", metavar="K1,K2", help="with --refine: also the fits with the network's answer as prior, σ × K"
)
ap.add_argument("--json", default=None)
a = ap.parse_args()

from _truths import draw_truths  # noqa: E402

from fcinv_widgets import get_material  # noqa: E402
from fcinv_widgets.analysis.refine import fit_trust_checked, refine_sqe, trust_fit  # noqa: E402
from fcinv_widgets.models import load_model  # noqa: E402
from fcinv_widgets.noise import add_noise  # noqa: E402
from fcinv_widgets.scans import simulate_scans  # noqa: E402
from fcinv_widgets.spectrum_io import write_spectrum  # noqa: E402
from fcinv_widgets.sqe import SQE, fold_full, fold_points  # noqa: E402

mat = get_material(a.material)
truths = draw_truths(mat, a.truths, a.seed)
cells = [tuple(float(v) for v in c.split(",")) for c in a.cells.split(";") if c.strip()]
angles = [float(v) for v in a.angles.split(",") if v.strip()]
inflates = [float(v) for v in a.prior_fit.split(",") if v.strip()] if a.refine else []
models = {n: load_model(n) for n in a.models.split(",")}
tmp = tempfile.TemporaryDirectory()
rows = []
for ti, (tname, t) in enumerate(truths):
    calc = SQE(mat.basis, t, temperature=a.temperature)
    pts = fold_points(calc, mat.grid, a.qmax, mat.conventional_a)
    sets = {"full data": fold_full(pts, mat.grid, sigma_mev=1.0, ei_mev=a.ei)[0]}
    if angles:
        ss = simulate_scans(mat, a.ei, angles, temperature=a.temperature, params=t, qmax=a.qmax, progress=False)
        sets.update({f"scan {om:g}°": img for om, img in zip(angles, ss.scans)})
    for ci, (B, P) in enumerate(cells):
        for si, (sname, img) in enumerate(sets.items()):
            noisy, _ = add_noise(img, B, P, seed=1000 * ti + 10 * ci + si, peak_percentile=99.5)
            path = Path(tmp.name) / f"t{ti}_c{ci}_s{si}.h5"
            write_spectrum(
                path,
                noisy,
                mat.grid,
                material=mat.name,
                kind="full-sqe",
                temperature_k=a.temperature,
                ei_mev=a.ei,
                qmax_inv_a=a.qmax,
                intensity="one-phonon-sqe",
                origin="simulated",
            )
            for mname, m in models.items():
                # the network alone; a single scan's σ from its single-scan calibration (session 20), as
                # infer-scans sizes each scan's
                r = m.invert(str(path), ood=False, refine=False, single_scan=si > 0)
                true = t[mat.active]
                base = {
                    "truth": tname,
                    "B": B,
                    "P": P,
                    "set": "full data" if si == 0 else "single scan",
                    "scan": sname,
                    "true": true.tolist(),
                }
                answers = [(mname, r["fc_mean"], r["fc_std"], {})]
                if a.refine:
                    orient = None if si == 0 else [angles[si - 1]]
                    f = refine_sqe(mat, noisy, a.temperature, ei_mev=a.ei, qmax=a.qmax, start=r["fc_mean"], orientations=orient)
                    fit = {"above_noise": bool(f.above_noise), "noise_ratio": f.noise_ratio, "seconds": f.seconds}
                    answers.append((f"{mname} refined", f.active_params, f.active_sigma, fit))
                    keep = answers[0] if f.above_noise else answers[1]
                    answers.append((f"{mname} refined, checked", keep[1], keep[2], fit))
                    # what invert and infer-scans report: 2σ, a single scan the model's measured limit (session 18)
                    trust = trust_fit(f, r["fc_mean"], r["fc_std"], k=m.trust_limit_for(f), checked=fit_trust_checked(f))
                    keep = answers[1] if trust["accepted"] else answers[0]
                    answers.append((f"{mname} refined, trusted", keep[1], keep[2], fit | {"trust": trust}))
                    for k in inflates:
                        g = refine_sqe(
                            mat, noisy, a.temperature, ei_mev=a.ei, qmax=a.qmax, start=r["fc_mean"], orientations=orient,
                            prior_mean=r["fc_mean"], prior_std=k * np.asarray(r["fc_std"], float),
                        )  # fmt: skip
                        gfit = {"above_noise": bool(g.above_noise), "noise_ratio": g.noise_ratio, "seconds": g.seconds}
                        answers.append((f"{mname} prior fit ×{k:g}", g.active_params, g.active_sigma, gfit))
                        keep = answers[0] if g.above_noise else answers[-1]
                        answers.append((f"{mname} prior fit ×{k:g}, checked", keep[1], keep[2], gfit))
                for label, mu, sd, extra in answers:
                    mu, sd = np.asarray(mu, float), np.asarray(sd, float)
                    rows.append(
                        base
                        | extra
                        | {
                            "model": label,
                            "mean": mu.tolist(),
                            "std": sd.tolist(),
                            "rel_err": (np.abs(mu - true) / np.abs(true)).tolist(),
                            "z": ((mu - true) / sd).tolist(),
                        }
                    )
    print(f"truth {ti + 1}/{len(truths)} done", flush=True)
    if a.json:  # the rows so far: an interrupted run keeps what it measured
        Path(a.json).write_text(json.dumps({"settings": vars(a), "partial": True, "rows": rows}, indent=1))
print(f"{len(truths)} truths × cells {a.cells} (Ei {a.ei:g} meV, T {a.temperature:g} K, |Q| ≤ {a.qmax:g} 1/Å)")
print("| model | data | n | FC0–FC3 median rel. error | max | within 5 % | ±1σ (8 FCs) | ±2σ (8 FCs) |")
print("|---|---|---|---|---|---|---|---|")
summary = {}
sfxs = ("", " refined", " refined, checked", " refined, trusted") if a.refine else ("",)
sfxs += tuple(f" prior fit ×{k:g}{c}" for k in inflates for c in ("", ", checked"))
labels = [m + sfx for m in models for sfx in sfxs]
for mname in labels:
    for kind in ("full data", "single scan"):
        rs = [r for r in rows if r["model"] == mname and r["set"] == kind]
        if not rs:
            continue
        e = np.array([r["rel_err"][:4] for r in rs])
        z = np.abs(np.array([r["z"] for r in rs]))
        s = {
            "n": len(rs),
            "median": np.median(e, 0).tolist(),
            "max": e.max(0).tolist(),
            "within_5pct": float((e <= 0.05).mean()),
            "cov1": float((z <= 1).mean()),
            "cov2": float((z <= 2).mean()),
        }
        summary[f"{mname} {kind}"] = s
        print(
            f"| {mname} | {kind} | {len(rs)} | {' / '.join(f'{100 * v:.0f}' for v in s['median'])} % | "
            f"{' / '.join(f'{100 * v:.0f}' for v in s['max'])} % | {s['within_5pct']:.2f} | {s['cov1']:.2f} | {s['cov2']:.2f} |"
        )
if a.json:
    Path(a.json).write_text(json.dumps({"settings": vars(a), "summary": summary, "rows": rows}, indent=1))
