"""Mix the training splits of two datasets of one material (session 25's ge-resnet experiment).

The first ``--n`` training spectra of each file (``--n-second``: another count from the second), shuffled with ``--seed``; every other dataset
and attribute (grid, domain, reference, test split) is the first file's. A spectrum from a file
without ``inactive_params`` (nuisance-free: its inactive FCs are the reference's) gets the
reference values there. Session 25 (docs/results.md, "half nuisance-free spectra"):

    python benchmarks/mix_datasets.py ge_nuis.h5 ge_dataset.h5 --n 5000 --out ge_mix.h5
    fcinv train --model resnet --dataset ge_mix.h5 --augment --sqe-weights 0.5 \\
        --mask-bank ge_masks.npz --init-from ge-resnet --epochs 5 --lr 5e-4 --threads 2 --out ge-resnet-mix
"""

from __future__ import annotations

import argparse
import os

import h5py
import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first", help="dataset whose layout, grid and test split the mixture keeps")
    ap.add_argument("second", help="dataset of the same material and grid")
    ap.add_argument("--n", type=int, default=5000, help="training spectra from each (default 5000)")
    ap.add_argument("--n-second", type=int, default=None, help="training spectra from the second (default --n)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    part = f"{args.out}.part"  # written aside and moved into place: an interrupted run leaves no half file
    with h5py.File(args.first, "r") as a, h5py.File(args.second, "r") as b, h5py.File(part, "w") as f:
        if a.attrs.get("material") != b.attrs.get("material") or not np.array_equal(
            a["grid/energy_centers_mev"][()], b["grid/energy_centers_mev"][()]
        ):
            raise SystemExit("the two datasets are not of one material and grid")
        n = args.n
        n2 = n if args.n_second is None else args.n_second
        for f2, k, name in ((a, n, args.first), (b, n2, args.second)):
            if not 0 < k <= len(f2["train/params"]):
                raise SystemExit(f"{name} has {len(f2['train/params'])} training spectra; asked for {k}")
        for k, v in a.attrs.items():
            f.attrs[k] = v
        f.attrs["mixture"] = f"first {n} training spectra of {args.first} and {n2} of {args.second}, shuffled (seed {args.seed})"
        for k in ("active", "domain", "inactive", "param_names", "reference_params"):
            if k in a:
                f.create_dataset(k, data=a[k][()])
        for k in a["grid"]:
            f.create_dataset(f"grid/{k}", data=a[f"grid/{k}"][()])
        if "inactive" not in a and "inactive" in b:
            f.create_dataset("inactive", data=b["inactive"][()])
        order = np.random.default_rng(args.seed).permutation(n + n2)
        spec = np.concatenate([a["train/spectra"][:n], b["train/spectra"][:n2]])[order]
        f.create_dataset("train/spectra", data=spec, chunks=(64,) + spec.shape[1:])
        f.create_dataset("train/params", data=np.concatenate([a["train/params"][:n], b["train/params"][:n2]])[order])
        src = a if "inactive" in a else b
        ref = src["reference_params"][()][src["inactive"][()]]
        ina = [
            f2["train/inactive_params"][:k] if "train/inactive_params" in f2 else np.tile(ref, (k, 1))
            for f2, k in ((a, n), (b, n2))
        ]
        f.create_dataset("train/inactive_params", data=np.concatenate(ina)[order])
        for k in a["test"]:
            f.create_dataset(f"test/{k}", data=a[f"test/{k}"][()])
        for g in ("grid", "train", "test"):
            for k, v in a[g].attrs.items():
                f[g].attrs[k] = v
        # the training split holds n + n2 done spectra (the first file's count made readers stop at
        # its n_done: session 27's --n 10000 mixture was read as its first 10,000)
        f["train"].attrs["n_done"] = f["train"].attrs["n_target"] = n + n2
    os.replace(part, args.out)
    print(f"wrote {args.out}: {n + n2} training spectra")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
