"""Does the default physics fit tell the model's own crystal from another one, on measured-like S(Q,E)?

    python benchmarks/bench_ood_fit.py [--model ge-resnet] [--n 12] [--n-other 12] [--seed 5]
        [--ei 80] [--qmax 6] [--json FILE]

The networks' OOD check flags 38–77 % of the right crystal's realistic one-phonon S(Q,E) draws
(docs/results.md, ``bench_ood.py``). Since session 16 ``fcinv invert`` fits every such input with the
crystal's own lattice-dynamical model (``refine_sqe``), and that fit's residual against the
data's own noise (``noise_ratio``; above :data:`~fcinv_widgets.analysis.refine.ABOVE_NOISE` =
"above the noise") says whether the crystal model can explain the data at all. This benchmark
measures it as an OOD signal: ``--n`` S(Q,E) measurements of the model's crystal (``_truths``:
the first-principles FCs, then drawn sets) and ``--n-other`` of another crystal folded on the
same path (Nb on the Ge grid, Ge on the Nb grid, its reference × (1 ± 10 %) per active FC), each
at the ``--temperatures`` in turn (default 5 and 300 K), Ei ``--ei``, |Q| ≤ ``--qmax``, a flat background B ~ U(0, 0.2) and
Poisson counts P ~ logU(30, 300) (``--counts``) at the raw S(Q,E)'s 99.5th percentile (the operating region; seeded;
``--fixed-background``: the percentile of the same crystal's S(Q,E) at the lowest temperature, see
``--help``), inverted by
``Inverter.invert(path)`` with its defaults (OOD check and trusted physics fit). Prints per set
the fraction flagged by the network's check (what the product reports as ``ood["flag"]``) and by
the fit (above the noise; session 17 measured that the fit cannot clear a
flag — the Ge model fits Nb's S(Q,E) on the Ge path to its noise). ``--no-fit``: the network's check
alone (``refine=False``), for its scores (each row keeps the check's score, threshold and
components). Per set and temperature the table also gives the fraction flagged as weak data
(``ood["weak_data"]``: too little structure above the counting noise to judge, session 19) and the
fraction flagged among the rest (the judged inputs). ``--scan-angles LO:HI``: every input is one
single-orientation scan (ω drawn per input; partial coverage) inverted with ``single_scan=True``, as
``fcinv invert --single-scan`` does (the single-scan σ and OOD check: rule S where the model has it;
``benchmarks/ood_scan_limits.py`` reads these rows); ``--oriented-scores`` adds each scan's scores with
its orientation handed to the check's refit (rule S′, session 38: ``ood_scan_limits.py --oriented``). Asserts nothing.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument(
    "--model",
    default="ge-resnet",
    help="a model, or several of one crystal separated by commas: each judges the same simulated files "
    "(the simulation is most of the time); then --json must contain {model}",
)
ap.add_argument("--n", type=int, default=12)
ap.add_argument("--n-other", type=int, default=12)
ap.add_argument("--seed", type=int, default=5)
ap.add_argument("--ei", type=float, default=80.0)
ap.add_argument("--qmax", type=float, default=6.0)
ap.add_argument("--no-fit", action="store_true", help="the network's check alone (no physics fit: fast)")
ap.add_argument("--temperatures", default="5,300", help="sample temperatures (K), cycled over the cases")
ap.add_argument("--counts", default="30,300", help="LO,HI: Poisson counts P ~ logU(LO, HI) at the 99.5th percentile")
ap.add_argument(
    "--fixed-background",
    action="store_true",
    help="B and P refer to the 99.5th percentile of the same crystal's S(Q,E) at the lowest of --temperatures, "
    "not of the warm one: the counting time and a background that does not depend on the sample temperature held "
    "fixed, so a warm sample's phonons gain the Bose factor's counts over the same background",
)
ap.add_argument(
    "--scan-angles",
    default=None,
    help="LO:HI (degrees): each input is one single-orientation scan at a sample angle ω ~ U(LO, HI) "
    "(u = [1,1,0], v = [0,0,1], the detector of fcinv_widgets.scans), not the full data; inverted as a single scan",
)
ap.add_argument(
    "--oriented-scores",
    action="store_true",
    help="with --scan-angles: each row also records the measured regime's scores with the scan's orientation handed "
    "to the check's refit (ood_components_oriented; OODStats.scores(orientation=…)), what rule S′ "
    "(benchmarks/ood_scan_limits.py --oriented) is calibrated and tested on",
)
ap.add_argument("--json", default=None, help="rows and summary as JSON ({model}: replaced by each model's name)")
a = ap.parse_args()
names = [v.strip() for v in a.model.split(",") if v.strip()]
if len(names) > 1 and a.json and "{model}" not in a.json:
    ap.error("several --model: --json must contain {model}")

from _truths import draw_truths  # noqa: E402

from fcinv_widgets import get_material  # noqa: E402
from fcinv_widgets.materials import material_for_model  # noqa: E402
from fcinv_widgets.analysis.expio import as_spectrum, prepare_input  # noqa: E402
from fcinv_widgets.models import load_model  # noqa: E402
from fcinv_widgets.models.ood import input_temperature, scan_orientation  # noqa: E402
from fcinv_widgets.noise import add_noise  # noqa: E402
from fcinv_widgets.spectrum_io import write_spectrum  # noqa: E402
from fcinv_widgets.scans import orientation_image, orientation_matrix  # noqa: E402
from fcinv_widgets.sqe import SQE, fold_full, fold_points, gaussians  # noqa: E402

models = {name: load_model(name) for name in names}
owns = {material_for_model(m.config).name for m in models.values()}
if len(owns) > 1:
    ap.error(f"--model: models of one crystal only (got {sorted(owns)})")
model = next(iter(models.values()))
own = material_for_model(model.config)
other = get_material("Nb" if own.name.lower() == "ge" else "Ge")
rng = np.random.default_rng(a.seed)
temps = [float(v) for v in a.temperatures.split(",") if v.strip()]
p_lo, p_hi = (float(v) for v in a.counts.split(","))
scan_range = None
if a.scan_angles:
    try:
        scan_range = tuple(float(v) for v in a.scan_angles.split(":"))
    except ValueError:
        ap.error(f"--scan-angles: LO:HI in degrees, got {a.scan_angles!r}")
    if len(scan_range) != 2 or not scan_range[0] < scan_range[1]:
        ap.error(f"--scan-angles: LO:HI with LO < HI, got {a.scan_angles!r}")
    if a.fixed_background:
        ap.error("--scan-angles and --fixed-background: one or the other")
elif a.oriented_scores:
    ap.error("--oriented-scores needs --scan-angles")
cases = [("own", n, t, own) for n, t in draw_truths(own, a.n, a.seed)]
fmo = other.forward_model().with_backend("numpy")
while len(cases) < a.n + a.n_other:
    t = np.asarray(other.reference_params, float).copy()
    t[other.active] *= 1 + rng.uniform(-0.1, 0.1, len(other.active))
    if fmo.is_stable(t[other.active])[0]:
        cases.append(("other", f"{other.name} {len(cases) - a.n}", t, other))
tmp = tempfile.TemporaryDirectory()
rows_of: dict = {name: [] for name in models}
for i, (kind, name, t, crystal) in enumerate(cases):
    temp = temps[i % len(temps)]
    B, P = float(rng.uniform(0.0, 0.2)), float(np.exp(rng.uniform(np.log(p_lo), np.log(p_hi))))
    calc = SQE(crystal.basis, t, temperature=temp)
    pts = fold_points(calc, own.grid, a.qmax, crystal.conventional_a)  # the crystal's S(Q,E) on the model's path
    omega = None
    if scan_range is None:
        img = fold_full(pts, own.grid, sigma_mev=1.0, ei_mev=a.ei)[0]
    else:  # one orientation: the equivalents it reaches, averaged per pixel (as scans.simulate_scans does)
        omega = float(rng.uniform(*scan_range))
        Gt = gaussians(pts.energies, own.grid.e.centers, ei_mev=a.ei).astype(np.float32)
        d, nrm = orientation_image(pts, Gt, omega, a.ei, own.grid, orientation_matrix())
        with np.errstate(invalid="ignore", divide="ignore"):
            img = np.where(nrm > 0, d / np.where(nrm > 0, nrm, 1.0), np.nan)
    noise_seed = int(rng.integers(1 << 30))
    if a.fixed_background and temp != min(temps):
        cold = SQE(crystal.basis, t, temperature=min(temps))
        ref = np.nanpercentile(
            fold_full(fold_points(cold, own.grid, a.qmax, crystal.conventional_a), own.grid, sigma_mev=1.0, ei_mev=a.ei)[0], 99.5
        )
        x = img / ref
        counts = np.random.default_rng(noise_seed).poisson(np.where(np.isfinite(x), P * (np.nan_to_num(x) + B), 0.0))
        noisy = np.where(np.isfinite(x), counts / P, np.nan)
    else:
        noisy, _ = add_noise(img, B, P, seed=noise_seed, peak_percentile=99.5)
    path = Path(tmp.name) / f"c{i}.h5"
    write_spectrum(path, noisy, own.grid, material=own.name, kind="full-sqe", temperature_k=temp, ei_mev=a.ei,
                   qmax_inv_a=a.qmax, intensity="one-phonon-sqe", origin="simulated")  # fmt: skip
    for mname, m in models.items():
        r = m.invert(str(path), refine=False if a.no_fit else None, single_scan=omega is not None)
        ood = r.get("ood") or {}
        fit = r.get("refined") or {}
        row = {
            "set": kind,
            "name": name,
            "T": temp,
            "B": B,
            "P": P,
            "network_flag": bool(ood.get("flag", False)),  # what the product reports
            "weak_data": bool(ood.get("weak_data", False)),  # flagged as too little signal (session 19)
            "structure_to_noise": ood.get("structure_to_noise"),
            "coverage": float(np.isfinite(noisy).mean()),
            "ei_mev": a.ei,  # measured pixels (rule C applies from its calibration's least)
            "scan_deg": omega,  # the single scan's sample angle (None: the full data)
            "ood_score": ood.get("score"),
            "ood_threshold": ood.get("threshold"),
            "ood_components": ood.get("components"),
            "fit_above_noise": bool(fit.get("above_noise", False)),
            "noise_ratio": fit.get("noise_ratio"),
            "fc_source": r.get("fc_source"),
        }
        if a.oriented_scores:  # the same input, the check's scores with the scan's orientation (rule S′)
            image, corr = prepare_input(as_spectrum(str(path), own.grid, material=own.name), own.grid)
            orient = scan_orientation(omega, ei_mev=corr.get("ei_mev"), qmax_inv_a=a.qmax)
            sc = m.ood_stats().scores(m, image, measured=True, temperature_k=input_temperature(corr), orientation=orient)
            row["ood_components_oriented"] = {k: {"value": float(v[0])} for k, v in sc.items()}
        if kind == "own":
            row["rel_err"] = (np.abs(np.asarray(r["fc_mean"]) - t[own.active]) / np.abs(t[own.active])).tolist()
        rows_of[mname].append(row)
        print(f"{i + 1}/{len(cases)} {mname} {kind:5s} T {temp:3.0f} K B {B:.2f} P {P:5.0f}: network flag "
              f"{row['network_flag']!s:5s} fit noise ratio "
              f"{row['noise_ratio'] if row['noise_ratio'] is None else round(row['noise_ratio'], 2)}", flush=True)  # fmt: skip


def report(mname: str, rows: list) -> None:
    """Print one model's table; write its --json file."""
    print(
        f"{mname}: {a.n} {own.name} and {a.n_other} {other.name} S(Q,E) on the {own.name} path (operating region, {a.temperatures} K)"
    )
    print("| input | T (K) | n | weak data | flagged, judged inputs | network's check (reported) | fit above the noise |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for kind in ("own", "other"):
        label = f"{own.name} (own)" if kind == "own" else f"{other.name} on the {own.name} path"
        for temp in [*temps, None]:
            rs = [r for r in rows if r["set"] == kind and (temp is None or r["T"] == temp)]
            if not rs:  # (--n-other 0)
                continue
            judged = [r for r in rs if not r["weak_data"]]
            s = {k: float(np.mean([r[k] for r in rs])) for k in ("network_flag", "fit_above_noise", "weak_data")}
            s["flagged_judged"] = float(np.mean([r["network_flag"] for r in judged])) if judged else None
            summary[f"{kind} {'all' if temp is None else f'{temp:g} K'}"] = s | {"n": len(rs), "n_judged": len(judged)}
            fj = "—" if s["flagged_judged"] is None else f"{s['flagged_judged']:.2f} of {len(judged)}"
            print(f"| {label} | {'all' if temp is None else f'{temp:g}'} | {len(rs)} | {s['weak_data']:.2f} | {fj} "
                  f"| {s['network_flag']:.2f} | {s['fit_above_noise']:.2f} |")  # fmt: skip
    if a.json:
        from fcinv_widgets.models.ood import OOD_CHECK_VERSION, file_sha256

        m = models[mname]
        st = m.ood_stats()
        checked_by = {  # what the flags were measured with (benchmarks/ood_rates.py checks it before writing)
            "model_sha256": file_sha256(m.path),
            "ood_measured_regime": st.measured if st is not None else None,
            "ood_check_version": OOD_CHECK_VERSION,
        }
        out = {"settings": vars(a) | {"model": mname}, **checked_by, "summary": summary, "rows": rows}
        Path(a.json.replace("{model}", mname)).write_text(json.dumps(out, indent=1))


for mname in models:
    report(mname, rows_of[mname])
