"""Measure each model's trust limit (``trust.json``) from the network rows of a ``bench_networks_sqe.py`` run.

(Since session 20 ``fcinv trust-calibrate --model A B [--write]`` measures the same limits from the same
cases in one command, without the bench; this script stays to re-score the bench's rows.)

    python benchmarks/bench_networks_sqe.py --models ge-resnet,ge-vae --truths 41 \\
        --angles 0,30,60,90,120,150 --cells "0.05,300;0.1,100;0.2,30" --seed 101 --json rows.json
    python benchmarks/calibrate_trust.py rows.json [--level 0.99] [--write]

For every model in the rows (the network alone: rows without "refined"/"prior fit"), the
standardized errors z = (answer − truth) / σ over all 8 FCs, full data and single scans of the
drawn truths (the first-principles truth "dft" is left out: it is what ``bench_measurement.py``
measures), and the ``--level`` quantile of max over FCs of |z|
(:func:`fcinv_widgets.models.trust.familywise_limit`): how far, in its own σ, the truth lies from
the network's answer at most, all FCs together, in 99 % (``TRUST_LEVEL``; 95 % before session 21)
of realistic simulated measurements.
Prints it per data kind and pooled; ``--write`` stores the single-scan one as the model's
``trust.json`` (:func:`~fcinv_widgets.models.trust.save_trust_limit`; full data keep 2σ, docs/results.md
"Session 18"), with all three, the bench's settings and this command. The fits are not used: the
limit is a property of the network's σ alone, and the rule that uses it (``trust_fit``) is scored
on other seeds.
"""

import argparse
import json

import numpy as np

from fcinv_widgets.models import load_model
from fcinv_widgets.models.trust import TRUST_LEVEL, familywise_limit, save_trust_limit

ap = argparse.ArgumentParser()
ap.add_argument("rows", help="the --json file of a bench_networks_sqe.py run")
ap.add_argument("--level", type=float, default=TRUST_LEVEL, help=f"familywise level (default {TRUST_LEVEL:g})")
ap.add_argument("--write", action="store_true", help="store the single-scan limit as each model's trust.json")
ap.add_argument(
    "--full-data",
    action="store_true",
    help="with --write: also hold full-data fits to the measured full-data limit (else 2σ; session 21, rule D)",
)
a = ap.parse_args()
if a.full_data and not a.write:
    ap.error("--full-data says what --write stores: give both")

d = json.load(open(a.rows))
rows = [r for r in d["rows"] if " " not in r["model"] and r["truth"] != "dft"]
out = {}
for name in sorted({r["model"] for r in rows}):
    mine = [r for r in rows if r["model"] == name]
    res = {}
    for kind in ("full data", "single scan", "pooled"):
        z = np.array([r["z"] for r in mine if kind == "pooled" or r["set"] == kind], float)
        if len(z) >= 20:
            res[kind] = {"n": len(z), "limit": familywise_limit(z, a.level)}
    out[name] = res
    print(name, "  ".join(f"{k}: {v['limit']:.2f} (n {v['n']})" for k, v in res.items()))
    if a.write:
        s = d.get("settings", {})
        path = save_trust_limit(
            load_model(name).path,
            res["single scan"]["limit"],
            full_data_limit=res["full data"]["limit"] if a.full_data else None,
            level=a.level,
            n_cases=res["single scan"]["n"],
            measured=res,
            measured_on=(
                f"bench_networks_sqe.py: {len({r['truth'] for r in mine})} drawn {s.get('material', 'Ge')} truths (seed {s.get('seed')}), "
                f"full data and single scans at {s.get('angles')}°, cells {s.get('cells')}, Ei {s.get('ei')} meV, "
                f"T {s.get('temperature')} K, |Q| ≤ {s.get('qmax')} 1/Å"
            ),
            command=(
                f"python benchmarks/bench_networks_sqe.py --material {s.get('material', 'Ge')} --models {s.get('models')} "
                f'--truths {s.get("truths")} --angles {s.get("angles")} --cells "{s.get("cells")}" --ei {s.get("ei")} '
                f"--temperature {s.get('temperature')} --qmax {s.get('qmax')} --seed {s.get('seed')} --json ROWS; "
                f"python benchmarks/calibrate_trust.py ROWS --level {a.level:g} --write" + (" --full-data" if a.full_data else "")
            ),
        )
        print("  wrote", path)
