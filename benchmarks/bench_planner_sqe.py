"""Does the S(Q,E) orientation planner save beam time? Closed loop on realistic simulated scans.

    python benchmarks/bench_planner_sqe.py --material Ge --ei 80 --qmax 4 --candidates 0:180:6 \\
        --n-true 20 --k 5 --counts 5 --background 0.1 --out planner_sqe_ge.json

For each of ``--n-true`` true FC sets (the 8 active FCs drawn uniformly within ±``--spread`` of the
material's reference, clipped to the training domain and kept only if stable; the inactive FCs at
the reference) the single-orientation scans at every candidate angle are simulated with
``scans.simulate_scans`` (folded one-phonon S(Q,E), Debye–Waller and Bose factor at 5 K, ARCS
resolution and detector coverage at Ei, |Q| ≤ qmax) and get background B and Poisson noise with P
counts at the 99.5th-percentile peak (``noise.add_noise(rescale=False)``: counts/P, the final
min-max step left out — every scan's scale and offset are fitted anyway). One noisy image per
(truth, angle), shared by all strategies. Strategies, k = 1 … ``--k`` scans:

* ``planner``: :func:`~fcinv_widgets.analysis.planner.plan_orientations_sqe` (criterion ``--criterion``,
  the Fisher information of the folded S(Q,E) per scan), planned at the reference before the first
  scan and re-planned at the current fit after each;
* ``sweep``: consecutive candidates from a random start; ``random``: a random order.

After each scan the union of the scans so far is fitted by
:func:`~fcinv_widgets.analysis.planner.fit_scans_sqe` (Gauss–Newton MAP of the 8 active FCs on the
single scans with the same S(Q,E) model, inactive FCs at the reference, dispersion from the
residual; from the reference for k = 1, from the previous fit after). Reported per k and strategy:
median [quartiles] over the true sets of the mean relative error of FC0–3 and of the mean relative
σ of FC0–3, the fraction of true sets with all of FC0–3 within 5 %, and the scans each strategy
needs for a median error target. ``--summarize A.json[,B.json] [--plot PNG]`` prints the tables of
finished (or partial) runs and plots them (the docs/results.md's figure: ``docs/figures/planner_sqe.png`` from
``docs/figures/planner_sqe_ge.json,docs/figures/planner_sqe_nb.json``).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def summarize(rep, targets=(5.0, 3.0, 2.0)) -> str:
    strategies = rep["strategies"]
    K = rep["settings"]["k"]
    res = rep["results"]
    out = [f"{len(res)} true sets; FC0–3 mean relative error (%), median [quartiles]; reported σ (%) median"]
    out.append("| k | " + " | ".join(f"{s} error" for s in strategies) + " | " + " | ".join(f"{s} σ" for s in strategies) + " |")
    out.append("|---" * (1 + 2 * len(strategies)) + "|")
    med = {}
    for k in range(1, K + 1):
        cells, sig = [], []
        for s in strategies:
            e = [r[s]["err"][k - 1] for r in res if len(r[s]["err"]) >= k]
            sg = [r[s]["sig"][k - 1] for r in res if len(r[s]["sig"]) >= k]
            if not e:
                cells.append("–")
                sig.append("–")
                continue
            q1, q2, q3 = np.percentile(e, [25, 50, 75])
            med[(s, k)] = q2
            cells.append(f"{q2:.2f} [{q1:.2f}–{q3:.2f}]")
            sig.append(f"{np.median(sg):.2f}")
        out.append(f"| {k} | " + " | ".join(cells) + " | " + " | ".join(sig) + " |")
    out.append("\nall of FC0–3 within 5 % (fraction of true sets):")
    for k in range(1, K + 1):
        row = []
        for s in strategies:
            ok = [r[s]["within5"][k - 1] for r in res if len(r[s]["within5"]) >= k]
            row.append(f"{s} {np.mean(ok):.2f}" if ok else f"{s} –")
        out.append(f"k = {k}: " + ", ".join(row))
    out.append("\nscans needed for a median FC0–3 error ≤ target:")
    for t in targets:
        row = []
        for s in strategies:
            ks = [k for k in range(1, K + 1) if med.get((s, k), np.inf) <= t]
            row.append(f"{s} {ks[0] if ks else f'>{K}'}")
        out.append(f"{t:g} %: " + ", ".join(row))
    out.append(
        "\nplanner better than both baselines (median error) at k = "
        + ", ".join(
            str(k)
            for k in range(1, K + 1)
            if all(med.get(("planner", k), np.inf) < med.get((s, k), -np.inf) for s in strategies if s != "planner")
        )
    )
    return "\n".join(out)


def plot(reps, path) -> None:
    """Median [quartiles] FC0–3 error against k per strategy, one panel per JSON report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reps), figsize=(4.2 * len(reps), 3.4), constrained_layout=True, squeeze=False)
    for ax, rep in zip(axes[0], reps):
        K = rep["settings"]["k"]
        ks = np.arange(1, K + 1)
        for c, s in enumerate(rep["strategies"]):
            e = np.array([r[s]["err"] for r in rep["results"] if len(r[s]["err"]) == K])
            q1, q2, q3 = np.percentile(e, [25, 50, 75], axis=0)
            ax.plot(ks, q2, "o-", color=f"C{c}", label=s)
            ax.fill_between(ks, q1, q3, color=f"C{c}", alpha=0.15)
        ax.set(
            xlabel="scans k",
            ylabel="FC0–3 mean relative error (%)",
            title=f"{rep['settings']['material']}: {len(rep['results'])} true sets",
            xticks=ks,
        )
        ax.set_ylim(bottom=0)
        ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--material", default="Ge")
    ap.add_argument("--ei", type=float, default=80.0)
    ap.add_argument("--qmax", type=float, default=4.0)
    ap.add_argument("--candidates", default="0:180:6")
    ap.add_argument("--n-true", type=int, default=20)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--counts", type=float, default=5.0)
    ap.add_argument("--background", type=float, default=0.1)
    ap.add_argument("--spread", type=float, default=0.15, help="relative half-width of the active FCs around the reference")
    ap.add_argument("--criterion", default="D", choices=("D", "A"))
    ap.add_argument("--temperature", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--summarize", default=None, help="print the tables of these JSON reports (comma-separated) and exit")
    ap.add_argument("--plot", default=None, metavar="PNG", help="with --summarize: median [quartiles] error against k")
    a = ap.parse_args(argv)
    if a.summarize:
        reps = []
        for path in a.summarize.split(","):
            with open(path) as fh:
                reps.append(json.load(fh))
            print(f"{path}:\n{summarize(reps[-1])}\n")
        if a.plot:
            plot(reps, a.plot)
        return 0

    from fcinv_widgets import get_material
    from fcinv_widgets.analysis.planner import fit_scans_sqe, hits_bank, plan_orientations_sqe
    from fcinv_widgets.noise import add_noise
    from fcinv_widgets.scans import parse_angles, simulate_scans

    mat = get_material(a.material)
    cand = parse_angles(a.candidates)
    dom = np.asarray(mat.domain, float)
    fm = mat.forward_model().with_backend("numpy")
    t0 = time.perf_counter()
    bank = hits_bank(mat, cand, a.ei, qmax=a.qmax)
    bank.flat_hits()
    bank.dynamical_matrices(mat.basis)
    print(f"hits bank: {len(cand)} angles, {time.perf_counter() - t0:.1f} s", flush=True)
    rng = np.random.default_rng(a.seed)
    ref = mat.reference_theta
    trues = []
    while len(trues) < a.n_true:
        th = np.clip(ref * (1 + rng.uniform(-a.spread, a.spread, len(ref))), dom[:, 0], dom[:, 1])
        if fm.is_stable(th)[0]:
            trues.append(th)
    strategies = ["planner", "sweep", "random"]
    rep = {"settings": vars(a), "strategies": strategies, "names": mat.active_names, "results": [], "timing": {}}
    t_fit, n_fit, t_plan, n_plan, t_sim = 0.0, 0, 0.0, 0, 0.0
    for it, th in enumerate(trues):
        full = mat.reference_params.copy()
        full[mat.active] = th
        ts = time.perf_counter()
        ss = simulate_scans(mat, a.ei, cand, temperature=a.temperature, params=full, qmax=a.qmax, progress=False)
        imgs = np.array(
            [
                add_noise(s, a.background, a.counts, seed=1000 * it + j, peak_percentile=99.5, rescale=False)[0]
                for j, s in enumerate(ss.scans)
            ]
        )
        t_sim += time.perf_counter() - ts
        srng = np.random.default_rng(a.seed + 7919 * (it + 1))
        s0 = int(srng.integers(len(cand)))
        orders = {"sweep": [(s0 + j) % len(cand) for j in range(a.k)], "random": list(srng.permutation(len(cand))[: a.k])}
        fits: dict = {}  # frozenset of angle indices → fit (shared between strategies)
        row = {"truth": th.tolist()}
        for strat in strategies:
            chosen: list = []
            est = ref.copy()
            errs, sigs, within, angles = [], [], [], []
            prev = None
            for k in range(a.k):
                if strat == "planner":
                    tp = time.perf_counter()
                    plan = plan_orientations_sqe(
                        mat,
                        bank,
                        est,
                        measured_deg=cand[chosen],
                        n=1,
                        temperature_k=a.temperature,
                        background=a.background,
                        counts=a.counts,
                        criterion=a.criterion,
                    )
                    t_plan += time.perf_counter() - tp
                    n_plan += 1
                    nxt = int(bank.index(plan.next_angle)[0])
                else:
                    nxt = int(orders[strat][k])
                chosen.append(nxt)
                key = frozenset(chosen)
                if key not in fits:
                    tf = time.perf_counter()
                    fits[key] = fit_scans_sqe(
                        mat,
                        bank,
                        imgs[chosen],
                        cand[chosen],
                        a.temperature,
                        start=None if prev is None else prev.theta,
                        n_outer=3 if prev is None else 2,
                    )
                    t_fit += time.perf_counter() - tf
                    n_fit += 1
                f = fits[key]
                prev = f
                est = f.theta
                rel = np.abs(f.theta - th) / np.abs(th)
                errs.append(float(100 * rel[:4].mean()))
                sigs.append(float(100 * (f.sigma / np.abs(th))[:4].mean()))
                within.append(bool((rel[:4] <= 0.05).all()))
                angles.append(float(cand[nxt]))
            row[strat] = {"err": errs, "sig": sigs, "within5": within, "angles": angles}
        rep["results"].append(row)
        rep["timing"] = {
            "simulate_s_per_truth": t_sim / (it + 1),
            "fit_s_mean": t_fit / max(n_fit, 1),
            "plan_s_mean": t_plan / max(n_plan, 1),
            "n_fits": n_fit,
            "elapsed_s": time.perf_counter() - t0,
        }
        print(
            f"truth {it + 1}/{len(trues)}: "
            + "; ".join(f"{s} " + " ".join(f"{e:.2f}" for e in row[s]["err"]) for s in strategies)
            + f"  [{time.perf_counter() - t0:.0f} s]",
            flush=True,
        )
        if a.out:
            with open(a.out, "w") as fh:
                json.dump(rep, fh, indent=1)
    print(summarize(rep))
    print(json.dumps(rep["timing"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
