"""Time of one S(Q,E) plan over 180 candidate orientations (``plan_orientations_sqe``, n = 5, D).

    python benchmarks/bench_plan_time.py

For Ge (Ei 80 meV) and Nb (Ei 60 meV), at qmax 4 Å⁻¹ and at the kinematic reach (the CLI's
default): hits of 0:180:1 (from the disk cache after the first run), the first plan on the bank
(compiled kernels loaded, dynamical matrices, hits by point), then three plans. Prints the
seconds and the load average; asserts nothing (a benchmark: the machine is shared).
"""

import os
import time

import numpy as np

from fcinv_widgets import get_material
from fcinv_widgets.analysis.planner import hits_bank, plan_orientations_sqe

for name, ei in (("Ge", 80.0), ("Nb", 60.0)):
    mat = get_material(name)
    est = mat.reference_params[mat.active]
    for q in (4.0, None):
        b = hits_bank(mat, np.arange(0, 180, 1.0), ei, qmax=q)
        t = time.perf_counter()
        plan_orientations_sqe(mat, b, est, measured_deg=[0.0], n=5)
        first = time.perf_counter() - t
        ts = []
        for _ in range(3):
            t = time.perf_counter()
            plan_orientations_sqe(mat, b, est, measured_deg=[0.0], n=5)
            ts.append(time.perf_counter() - t)
        print(
            f"{name} qmax {b.meta['qmax_inv_a']:.1f} Å⁻¹, {b.points.n} points: first plan {first:.2f} s, "
            f"then {', '.join(f'{x:.2f}' for x in ts)} s (load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )
