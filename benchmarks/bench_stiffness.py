"""A force field's overall stiffness in the S(Q,E) fit of any crystal (``refine_sqe(stiffness=)``).

    python benchmarks/bench_stiffness.py --structure POSCAR --force-constants FC_TRUE [--supercell 2,2,3]
        [--start 0.75 | --start 0.55,0.75] [--seeds 3] [--ei 120] [--qmax 5] [--noise 0.05,300] [--json FILE]
    python benchmarks/bench_stiffness.py --ge [same options]   # the shipped first-principles Ge FCs, given as a user's crystal
    python benchmarks/bench_stiffness.py --ge --scans 0,30,60 [--n-scans 1,3] [same options]   # the planner's scan fit

The folded one-phonon S(Q,E) of the true FCs is simulated as ``fcinv simulate --full-sqe`` makes it
(``sqe.fold_full`` at 5 K, ARCS resolution and kinematic coverage at ``--ei``, |Q| ≤ ``--qmax``; a flat
background B and Poisson counts P from ``noise.add_noise``, one draw per seed) and fitted from start
force constants that are too soft: the true ones × ``--start`` (one factor for all), or × a factor
drawn per basis parameter uniformly in ``--start LO,HI`` (seed 7; the sum rule holds in the basis, but
such a set is no force field and may be dynamically unstable: it says so), or a force-constant file
(``--start-force-constants``: a force field with its own error per interaction).
The start is the crystal's reference, as `fcinv refine --structure --force-constants START` makes it:
the fit starts from it with the inactive FCs' prior centred there (``stiffness=False``, before session
43), or first finds the overall factor s and starts from s × it with the prior centred there
(``stiffness=True``, the default for such a crystal since). Prints per fit s, the residual against
the noise and the largest relative error and |error| / σ of the FCs ≥ 10 % of the largest and, pooled
over the fits, the |z| quantiles (68.3 %, 95.4 %), the ±1σ/±2σ coverage and the median and largest
error of those FCs (``--json``: every FC's). Asserts nothing.

``--check-sigma N`` (session 44): for every full-data fit with s fitted, also the coverage that
:func:`~fcinv_widgets.analysis.refine.check_fit_sigma` measures at the estimate (N draws from the fit's
own model and noise, refitted), beside the coverage against the truth (pooled at the end).

``--scans ANGLES`` (session 44): single-orientation scans at those sample angles instead (``scans.simulate_scans``
of the truth, noise per scan with ``rescale=False``), fitted with the planner's 8-FC fit
(``planner.fit_scans_sqe(stiffness=)``: the FCs outside the top 8 held at the start, or at s × it) on the first
k scans for every k of ``--n-scans``; the FCs scored are the active ones ≥ 10 % of the largest.
``--inactive held|fit|both`` (session 45): the scan fit with the FCs outside the top 8 held (s × the start)
or fitted with a prior (``fit_scans_sqe(fit_inactive=)``), or both; with ``--check-sigma N`` every scan fit with
s fitted also gets :func:`~fcinv_widgets.analysis.planner.check_scan_fit_sigma` (pooled per variant at the end).
"""

import argparse
import json
import time

import numpy as np

ap = argparse.ArgumentParser()
src = ap.add_mutually_exclusive_group(required=True)
src.add_argument("--ge", action="store_true", help="the shipped first-principles Ge FCs as the truth")
src.add_argument("--structure", help="structure file of the truth (with --force-constants)")
ap.add_argument("--force-constants", help="true force constants (phonopy FORCE_CONSTANTS or .hdf5)")
ap.add_argument("--supercell", default=None, help="n1,n2,n3 (default: inferred)")
ap.add_argument("--start", default="0.75", help="start = truth × this (or × U(LO,HI) per parameter: LO,HI)")
ap.add_argument("--start-force-constants", default=None, help="start from this force-constant file instead (e.g. a force field)")
ap.add_argument("--seeds", type=int, default=3)
ap.add_argument("--ei", type=float, default=120.0)
ap.add_argument("--qmax", type=float, default=5.0)
ap.add_argument("--noise", default="0.05,300", help="B,P")
ap.add_argument("--json", default=None)
ap.add_argument("--scans", default=None, help="sample angles (degrees, comma list): fit single scans with planner.fit_scans_sqe")
ap.add_argument("--n-scans", default="1,3", help="with --scans: fit the first k scans for each k (comma list)")
ap.add_argument(
    "--check-sigma", type=int, default=0, help="full data, s fitted: also run refine.check_fit_sigma with N draws per fit"
)
ap.add_argument("--only-fitted", action="store_true", help="skip the fits with s fixed")
ap.add_argument("--inactive", choices=("held", "fit", "both"), default="held", help="with --scans: the FCs outside the top 8")
a = ap.parse_args()

from fcinv_widgets.analysis.refine import refine_sqe  # noqa: E402
from fcinv_widgets.materials import custom_material, get_material  # noqa: E402
from fcinv_widgets.noise import add_noise  # noqa: E402
from fcinv_widgets.sqe import SQE, fold_full, fold_points  # noqa: E402

sc = None if a.supercell is None else tuple(int(v) for v in a.supercell.split(","))
if a.ge:
    ge = get_material("Ge", reference="dft")
    crystal, sc = ge.crystal, tuple(int(v) for v in np.diag(ge.basis.supercell_matrix))
    truth = custom_material(crystal, ge.basis.expand(np.asarray(ge.dft_params, float), full=True), supercell=sc, name="Ge (DFT)")
else:
    crystal = a.structure
    truth = custom_material(a.structure, a.force_constants, supercell=sc, name="truth")
t = truth.reference_params
lohi = [float(v) for v in a.start.split(",")]
factor = lohi[0] if len(lohi) == 1 else np.random.default_rng(7).uniform(lohi[0], lohi[1], len(t))
start = (
    custom_material(crystal, a.start_force_constants, supercell=sc, name="start")
    if a.start_force_constants
    else custom_material(
        crystal, truth.basis.expand(factor * t, full=True), supercell=tuple(np.diag(truth.basis.supercell_matrix)), name="start"
    )
)
fm0 = start.forward_model()
print("the start set is dynamically " + ("stable" if fm0.is_stable(fm0.reference_theta[None])[0] else "UNSTABLE"), flush=True)
start = start.with_energy_grid(truth.grid.e) if start.grid.e != truth.grid.e else start
big = np.flatnonzero(np.abs(t) >= 0.1 * np.abs(t).max())
B, P = (float(v) for v in a.noise.split(","))
calc = SQE(truth.basis, t, temperature=5.0)
clean, _ = fold_full(fold_points(calc, truth.grid, a.qmax, truth.conventional_a), truth.grid, sigma_mev=1.0, ei_mev=a.ei)
print(
    f"{truth.basis.n_params} parameters, {len(big)} ≥ 10 % of the largest; start = "
    + (a.start_force_constants if a.start_force_constants else f"truth × {a.start}"),
    flush=True,
)
rows = []
if a.scans:
    from fcinv_widgets.analysis.planner import fit_scans_sqe, hits_bank  # noqa: E402
    from fcinv_widgets.scans import simulate_scans  # noqa: E402

    angles = [float(v) for v in a.scans.split(",")]
    ss = simulate_scans(start, a.ei, angles, params=t, qmax=a.qmax, progress=False)
    bank = hits_bank(start, angles, a.ei, qmax=a.qmax, cache=False)
    act = np.asarray(start.active)
    big = act[np.abs(t[act]) >= 0.1 * np.abs(t).max()]
    pick = np.array([list(act).index(i) for i in big])  # their places in the fit's θ
    fits = [(k, seed) for seed in range(a.seeds) for k in (int(v) for v in a.n_scans.split(","))]
else:
    fits = [(0, seed) for seed in range(a.seeds)]
for k, seed in fits:
    if a.scans:
        data = np.stack(
            [add_noise(ss.scans[c], B, P, seed=seed + 10 * c, peak_percentile=99.5, rescale=False)[0] for c in range(k)]
        )
    else:
        data, _ = add_noise(clean, B, P, seed=seed, peak_percentile=99.5)
    inact = {"held": (False,), "fit": (True,), "both": (False, True)}[a.inactive] if a.scans else (False,)
    for stiff, fi in [(st, fi) for st in ((True,) if a.only_fitted else (False, True)) for fi in inact]:
        t0 = time.perf_counter()
        if a.scans:
            f = fit_scans_sqe(start, bank, data, angles[:k], stiffness=stiff, fit_inactive=fi)
            est, sig, s_fit, ratio = f.theta[pick], f.sigma[pick], f.stiffness, float(np.sqrt(f.dispersion * P))
        else:
            r = refine_sqe(start, data, 5.0, a.ei, qmax=a.qmax, stiffness=stiff)
            est, sig, s_fit, ratio = r.params[big], r.sigma[big], r.stiffness, r.noise_ratio
        err = est / t[big] - 1
        z = (est - t[big]) / sig
        check = None
        if a.check_sigma and stiff:
            if a.scans:
                from fcinv_widgets.analysis.planner import check_scan_fit_sigma  # noqa: E402

                c = check_scan_fit_sigma(start, bank, f, a.check_sigma, seed=100 + seed)
                keep, zt = pick, z  # the active FCs ≥ 10 % of the largest, in the fit's θ order
            else:
                from fcinv_widgets.analysis.refine import check_fit_sigma  # noqa: E402

                c = check_fit_sigma(start, r, a.check_sigma, seed=100 + seed)
                keep, zt = np.isin(r.active, big), z[np.isin(big, r.active)]
            check = np.abs(c.z[:, keep]).ravel().tolist()
            print(
                f"   σ check ({a.check_sigma} draws, {c.seconds:.0f} s): ±1σ {np.mean(np.array(check) <= 1):.2f}, "
                f"±2σ {np.mean(np.array(check) <= 2):.2f} on the active FCs ≥ 10 %; against the truth here: "
                f"{np.mean(np.abs(zt) <= 1):.2f}, {np.mean(np.abs(zt) <= 2):.2f}",
                flush=True,
            )
        rows.append(
            {
                "seed": seed,
                "n_scans": k or None,
                "stiffness": stiff,
                "inactive_fitted": fi,
                "s": s_fit,
                "seconds": time.perf_counter() - t0,
                "noise_ratio": ratio,
                "err": err.tolist(),
                "z": z.tolist(),
                "check_abs_z": check,
            }
        )
        print(
            f"seed {seed}{f' {k} scan(s)' if k else ''} stiffness {'fitted' if stiff else 'fixed '}"
            f"{' inactive fitted' if fi else ''} s {s_fit or 1:.3f}  "
            f"{rows[-1]['seconds']:5.1f} s  residual/noise {ratio:.3f}  max |err| {np.abs(err).max() * 100:4.1f} %  "
            f"max |z| {np.abs(z).max():4.1f}",
            flush=True,
        )
summary = {}
for stiff, fi in sorted({(r["stiffness"], r["inactive_fitted"]) for r in rows}):
    sel = [r for r in rows if r["stiffness"] == stiff and r["inactive_fitted"] == fi]
    z = np.abs(np.concatenate([r["z"] for r in sel]))
    e = np.abs(np.concatenate([r["err"] for r in sel]))
    label = ("fitted" if stiff else "fixed") + (" + inactive fitted" if fi else "")
    summary[label] = s = {
        "n": int(z.size),
        "z_q683": float(np.quantile(z, 0.683)),
        "z_q954": float(np.quantile(z, 0.954)),
        "cover_1sigma": float(np.mean(z <= 1)),
        "cover_2sigma": float(np.mean(z <= 2)),
        "median_err_pct": float(np.median(e) * 100),
        "max_err_pct": float(e.max() * 100),
    }
    print(
        f"{label} s: {s['n']} FC estimates; |z| 68.3 % {s['z_q683']:.2f}, 95.4 % {s['z_q954']:.2f}; "
        f"±1σ {s['cover_1sigma']:.2f}, ±2σ {s['cover_2sigma']:.2f}; |error| median {s['median_err_pct']:.2f} %, max {s['max_err_pct']:.2f} %"
    )
for fi in sorted({r["inactive_fitted"] for r in rows if r.get("check_abs_z")}):
    checks = [r for r in rows if r.get("check_abs_z") and r["inactive_fitted"] == fi]
    cz = np.concatenate([r["check_abs_z"] for r in checks])
    key = "sigma_check" + (" + inactive fitted" if fi else "")
    summary[key] = {
        "n": int(cz.size),
        "cover_1sigma": float(np.mean(cz <= 1)),
        "cover_2sigma": float(np.mean(cz <= 2)),
        "z_q683": float(np.quantile(cz, 0.683)),
    }
    print(
        f"{key} pooled ({cz.size} refit estimates): ±1σ {summary[key]['cover_1sigma']:.2f}, "
        f"±2σ {summary[key]['cover_2sigma']:.2f}, |z| 68.3 % {summary[key]['z_q683']:.2f}"
    )
if a.json:
    with open(a.json, "w") as f:
        json.dump({"settings": vars(a), "rows": rows, "summary": summary}, f, indent=1)
