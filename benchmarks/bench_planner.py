"""Does the orientation planner save beam time? Closed-loop simulated experiments.

For each of ``--n-true`` random stable FC sets θ* inside the model's training domain and each
strategy, scans are "measured" one at a time (k = 1 … ``--k``):

* the measured image is the forward model's image m(θ*) (ARCS resolution at Ei) on the pixels
  the measured orientations cover, with Poisson counts at their summed exposure and a flat
  background (:func:`fcinv_widgets.analysis.planner.simulate_union`: B and P per scan, exposures
  from the ARCS-like single-orientation kinematics of :mod:`fcinv_widgets.scans`) — i.e. what
  the inverse model sees after the intensity correction, not a full S(Q,E) simulation;
* the model (VAE: mean and σ over latent samples) is run on the union of the scans so far;
* the next angle is chosen by the strategy: the planner (criterion D, A or model, re-planned at
  the current estimate), a sequential sweep (consecutive candidates from a random start) or at
  random.

Errors are |mean − θ*| / max(|θ*|, 5 % of the domain width) over FC0–FC3 (the convention of
bench_refine.py). Prints a table (median and quartiles over the true sets) and writes JSON and a
plot. Example (the docs/results.md's figures)::

    python benchmarks/bench_planner.py --material Ge --model ge-vae --ei 80 --n-true 20 --k 10 \
        --out planner_ge.json --plot planner_ge.png
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--material", default="Ge")
    ap.add_argument("--model", default="ge-vae")
    ap.add_argument("--ei", type=float, default=80.0)
    ap.add_argument("--candidates", default="0:180:2")
    ap.add_argument("--n-true", type=int, default=20)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--background", type=float, default=0.05)
    ap.add_argument("--counts", type=float, default=200.0)
    ap.add_argument("--criteria", default="D,model", help="planner criteria to compare (D, A, model)")
    ap.add_argument("--n-samples", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--resolution",
        default="train",
        choices=("train", "arcs"),
        help="images of the simulated measurement: the training data's constant σ = 1 meV (default: "
        "isolates the choice of orientations from the model's resolution mismatch) or ARCS at Ei",
    )
    ap.add_argument("--out", default=None)
    ap.add_argument("--plot", default=None)
    a = ap.parse_args(argv)

    from fcinv_widgets import get_material
    from fcinv_widgets.analysis.planner import coverage_bank, plan_orientations, simulate_union
    from fcinv_widgets.models import load_model
    from fcinv_widgets.scans import parse_angles

    mat = get_material(a.material)
    model = load_model(a.model)
    dom = np.asarray(model.config["domain"], float)
    width = dom[:, 1] - dom[:, 0]
    fm = mat.forward_model(resolution=("arcs", a.ei)) if a.resolution == "arcs" else mat.forward_model(sigma_mev=1.0)
    cand = parse_angles(a.candidates)
    t0 = time.perf_counter()
    bank = coverage_bank(mat, cand, a.ei, progress=True)
    t_bank = time.perf_counter() - t0

    rng = np.random.default_rng(a.seed)
    trues = []
    while len(trues) < a.n_true:
        th = dom[:, 0] + rng.random((512, len(dom))) * width
        trues.extend(th[fm.is_stable(th)][: a.n_true - len(trues)])
    trues = np.array(trues)
    start = np.clip(mat.reference_theta, dom[:, 0], dom[:, 1]) if len(mat.reference_theta) == len(dom) else dom.mean(1)

    strategies = [f"planner-{c}" for c in a.criteria.split(",") if c] + ["sweep", "random"]
    err = {s: np.full((a.n_true, a.k), np.nan) for s in strategies}
    nerr = {s: np.full((a.n_true, a.k), np.nan) for s in strategies}
    sig = {s: np.full((a.n_true, a.k), np.nan) for s in strategies}
    plan_times = []
    for t, th_true in enumerate(trues):
        clean = fm.spectra(th_true, normalize=True)[0]
        scale = np.maximum(np.abs(th_true), 0.05 * width)
        for si, s in enumerate(strategies):
            r = np.random.default_rng([a.seed, t, si])
            order = r.permutation(len(cand))
            first = int(r.integers(len(cand)))
            measured: list[int] = []
            est = start.copy()
            for k in range(a.k):
                if s.startswith("planner"):
                    t1 = time.perf_counter()
                    p = plan_orientations(
                        bank,
                        fm,
                        est,
                        dom,
                        measured_deg=cand[measured],
                        n=1,
                        background=a.background,
                        counts=a.counts,
                        criterion=s.split("-", 1)[1],
                        model=model,
                        n_samples=a.n_samples,
                        seed=a.seed + k,
                    )
                    plan_times.append(time.perf_counter() - t1)
                    nxt = int(bank.index(p.angles_deg[:1])[0])
                elif s == "sweep":
                    nxt = (first + k) % len(cand)
                else:
                    nxt = int(order[k])
                measured.append(nxt)
                img = simulate_union(clean, bank, measured, a.background, a.counts, rng=r)
                pred = model.predict(img, n_samples=a.n_samples, seed=a.seed)
                est = np.clip(pred.mean[0], dom[:, 0], dom[:, 1])
                e = np.abs(pred.mean[0] - th_true) / scale
                err[s][t, k] = e[:4].mean()
                nerr[s][t, k] = np.sqrt(np.mean(((pred.mean[0] - th_true) / width)[:4] ** 2))
                sig[s][t, k] = (pred.std[0] / scale)[:4].mean()
        print(
            f"true set {t + 1}/{a.n_true}: "
            + ", ".join(f"{s} k=1 {err[s][t, 0]:.3f} k={a.k} {err[s][t, -1]:.3f}" for s in strategies),
            flush=True,
        )

    def summary(x):
        return np.nanpercentile(x, [25, 50, 75], axis=0)

    rows = []
    head = f"{'k':>3} " + " ".join(f"{s:>24}" for s in strategies)
    rows.append(head)
    for k in range(a.k):
        cells = []
        for s in strategies:
            q = summary(err[s])[:, k]
            cells.append(f"{100 * q[1]:6.2f} % [{100 * q[0]:5.2f}–{100 * q[2]:5.2f}]")
        rows.append(f"{k + 1:>3} " + " ".join(f"{c:>24}" for c in cells))
    print("\nmean relative error over FC0–FC3, median [quartiles] over true sets")
    print("\n".join(rows))
    print("\nRMS error over FC0–FC3 in % of the domain width, median [quartiles]")
    for k in range(a.k):
        print(
            f"{k + 1:>3} "
            + " ".join(
                f"{100 * np.nanmedian(nerr[s][:, k]):6.2f} % [{100 * np.nanpercentile(nerr[s][:, k], 25):5.2f}–"
                f"{100 * np.nanpercentile(nerr[s][:, k], 75):5.2f}]".rjust(25)
                for s in strategies
            )
        )
    target = 0.05
    need = {}
    for s in strategies:
        med = np.nanmedian(err[s], axis=0)
        hit = np.flatnonzero(med <= target)
        need[s] = int(hit[0] + 1) if len(hit) else None
    print(f"\nscans needed for a median error ≤ {100 * target:g} %: " + ", ".join(f"{s} {need[s]}" for s in strategies))
    beats = {}
    for s in strategies:
        if not s.startswith("planner"):
            continue
        med = np.nanmedian(err[s], axis=0)
        beats[s] = {b: [bool(med[k] < np.nanmedian(err[b], axis=0)[k]) for k in range(min(5, a.k))] for b in ("sweep", "random")}
        print(f"{s} beats sweep/random at k = 1…5: {beats[s]}")
    print(f"plan time (n=1, {len(cand)} candidates): median {np.median(plan_times):.3f} s; coverage bank {t_bank:.1f} s")
    res = {
        "args": vars(a),
        "strategies": strategies,
        "err": {s: err[s].tolist() for s in strategies},
        "err_width": {s: nerr[s].tolist() for s in strategies},
        "sigma": {s: sig[s].tolist() for s in strategies},
        "scans_needed": need,
        "beats": beats,
        "plan_time_median_s": float(np.median(plan_times)) if plan_times else None,
        "bank_s": t_bank,
    }
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f)
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
        ks = np.arange(1, a.k + 1)
        for s in strategies:
            q = summary(err[s])
            ax[0].plot(ks, 100 * q[1], marker="o", label=s)
            ax[0].fill_between(ks, 100 * q[0], 100 * q[2], alpha=0.15)
            ax[1].plot(ks, 100 * np.nanmedian(sig[s], axis=0), marker="o", label=s)
        ax[0].axhline(100 * target, color="grey", lw=0.8, ls="--")
        ax[0].set(
            xlabel="scans measured", ylabel="error FC0–3 (%)", title=f"{a.material}: error vs truth (median, IQR)", yscale="log"
        )
        ax[1].set(xlabel="scans measured", ylabel="model σ FC0–3 (%)", title="reported σ (median)", yscale="log")
        ax[0].legend()
        fig.savefig(a.plot, dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
