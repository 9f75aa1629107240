"""Fuzz the CLI with damaged inputs: every case must end in exit 0/3 with strict JSON on stdout, or
exit 2 with exactly one line on stderr — never a traceback (a benchmark to rerun, not a test: the
findings of session 23 are regression rows in the test suite).

    python benchmarks/fuzz_inputs.py [--family options,scanset,model,structure,table,dataset,bank]
                                     [--timeout 60] [--json] [--no-progress]

Families:
* ``options`` — options parsed with a bare type (int/float/str) over bad values (NaN, ±inf, 1e400,
  '', hex, …) and incident energies up to 1e12 meV;
* ``scanset`` — attribute and dataset damages of a small scan set through ``infer-scans``,
  ``plan-scans`` and ``invert`` (``--no-refine``);
* ``model`` — key damages of a copy of ``ge-resnet``'s ``ood.json`` through ``invert``;
* ``structure`` — line damages of Ge's POSCAR / FORCE_CONSTANTS through ``basis`` and ``phonons``,
  empty/binary/truncated files, two atoms on one site, a flat cell;
* ``table`` — key, point and elastic-constant damages of Ge's measured table through ``fit-dispersion``;
* ``dataset`` — attribute and dataset damages of a small Ge dataset through ``evaluate``, ``noise-grid``,
  ``train`` (one epoch) and ``latent``;
* ``bank`` — damaged coverage banks (npz) through ``evaluate --augment --mask-bank``.

Cases run in this process (``cli.main``) with an alarm per case; a case that runs past it is
counted as "slow" (accepted input doing real work), not as bad. Prints the bad cases and a
summary (``--json``: the summary and every bad case as JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path

import h5py
import numpy as np

from fcinv_widgets.cli import main

NUMBERS = ["nan", "inf", "-1", "0", "1e400", "", "abc", "1e12", "2.5", "0x10"]
TEXTS = ["", "abc", "nan", "1,2", "1,2,nan", "0,0,0", "inf,0,0", ":", "0:10:0", "10:0:1", "1,,2", "__import__('os')"]
ATTR_VALUES = ['"abc"', "-5", "0", "1e9", "NaN", "[1, 2]", '{"a": 1}', "null", "true", '""', "Infinity"]


class _Slow(Exception):
    pass


def _alarm(*_):
    raise _Slow


def run_case(argv: list[str], timeout: int) -> tuple[str, object, str]:
    """("ok" | "bad" | "slow", exit code, last stderr line) of one in-process CLI call."""
    out, err = io.StringIO(), io.StringIO()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc: object = main(argv)
    except SystemExit as exc:
        rc = exc.code
    except _Slow:
        return "slow", None, ""
    except BaseException:  # noqa: BLE001 — what the fuzzer is looking for
        rc = "traceback"
        err.write(traceback.format_exc())
    finally:
        signal.alarm(0)
    lines = [ln for ln in err.getvalue().strip().splitlines() if ln.strip()]
    if rc == 2:
        ok = len(lines) == 1 and "Traceback" not in err.getvalue()
    elif rc in (0, 3):
        try:
            json.loads(out.getvalue())
            ok = "Traceback" not in err.getvalue()
        except ValueError:
            ok = False
    else:
        ok = False
    return ("ok" if ok else "bad"), rc, (lines[-1] if lines else "")[:200]


def option_cases(work: Path) -> list[list[str]]:
    spec = str(work / "spectrum.h5")
    cases = []

    def add(base, opt, values):
        cases.extend(base + [f"{opt}={v}", "--json"] for v in values)

    add(["domain", "--material", "Ge", "--samples", "50"], "--seed", NUMBERS)
    add(["domain", "--material", "Ge"], "--samples", NUMBERS)
    add(["fit-dispersion", "--material", "Ge"], "--prior-width", NUMBERS)
    add(["fit-dispersion", "--material", "Ge"], "--max-iter", NUMBERS)
    add(["refine", "--spectrum", spec, "--max-iter", "1"], "--clip", NUMBERS)
    add(["phonons", "--material", "Ge"], "--qpoints", TEXTS)
    add(["phonons", "--material", "Ge", "--qpoints", "0 0 0.5"], "--mass", TEXTS)
    add(["basis", "--material", "Ge"], "--supercell", NUMBERS)
    add(["plan-scans", "--model", "ge-vae", "--candidates", "0:30:10", "--n", "1"], "--ei", NUMBERS)
    add(["plan-scans", "--model", "ge-vae", "--n", "1"], "--candidates", TEXTS)
    add(["scans", "--material", "Ge", "--ei", "80", "--out", str(work / "s.h5")], "--angles", TEXTS)
    add(["scans", "--material", "Ge", "--angles", "0", "--out", str(work / "s.h5")], "--ei", ["1e12", "1000", "41"])
    add(["simulate", "--material", "Ge", "--full-sqe", "--out", str(work / "s.h5")], "--ei", ["1e12", "1000", "1e-300"])
    add(["trust-calibrate", "--model", "ge-vae", "--truths", "1"], "--ei", ["1e12", "1e-300"])
    add(["trust-calibrate", "--model", "ge-vae", "--truths", "1"], "--angles", ["1,1", "nan", ""])
    return cases


def _mutate_scanset(src: Path, dst: Path, kind: str, key: str, how: str) -> None:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        if kind == "attr":
            f.attrs[key] = how
        elif kind == "del":
            del f.attrs[key]
        else:
            d = f[key][()]
            del f[key]
            if how == "del":
                return
            try:
                d = {
                    "nan": lambda: np.where(np.arange(d.size).reshape(d.shape) == 0, np.nan, d.astype(float)),
                    "neg": lambda: -np.abs(d.astype(float)) - 1,
                    "shape": lambda: d[..., :-1],
                    "text": lambda: np.full(d.shape, b"a"),
                    "dup": lambda: np.concatenate([d, d]),
                    "empty": lambda: d[:0],
                    "zero": lambda: np.zeros(d.shape),
                }[how]()
            except (ValueError, TypeError, IndexError):
                pass
            f[key] = d


def scanset_cases(work: Path) -> list[tuple[str, list[list[str]]]]:
    src = work / "scans.h5"
    out = []
    muts = [("attr", a, v) for a in ("ei_mev", "temperature_k", "material", "meta", "format") for v in ATTR_VALUES]
    muts += [("del", a, "") for a in ("ei_mev", "temperature_k", "material", "meta")]
    muts += [
        ("ds", d, h)
        for d in ("angles_deg", "coverage", "full", "scans", "params_ev_a2", "grid/energy_centers_mev", "grid/q_points")
        for h in ("del", "nan", "neg", "shape", "text", "dup", "empty", "zero")
    ]
    for i, (kind, key, how) in enumerate(muts):
        p = work / f"scanset_{i}.h5"
        _mutate_scanset(src, p, kind, key, how)
        out.append(
            (
                f"{kind} {key} {how}",
                [
                    ["infer-scans", "--model", "ge-vae", "--scans", str(p), "--no-refine", "--json", "--no-progress"],
                    ["plan-scans", "--model", "ge-vae", "--scans", str(p), "--candidates", "0:60:20", "--n", "1", "--json"],
                    ["invert", "--model", "ge-vae", "--spectrum", str(p), "--no-refine", "--json"],
                ],
            )
        )
    return out


def model_cases(work: Path) -> list[tuple[str, list[list[str]]]]:
    from fcinv_widgets.materials import data_path

    src = data_path("models", "ge-resnet")
    ood = json.loads((src / "ood.json").read_text())
    out = []
    for i, (key, value) in enumerate((k, v) for k in ood for v in ATTR_VALUES):
        d = work / f"model_{i}"
        shutil.copytree(src, d)
        changed = dict(ood)
        changed[key] = float(value.replace("Infinity", "inf")) if value in ("NaN", "Infinity") else json.loads(value)
        (d / "ood.json").write_text(json.dumps(changed))
        spec = str(work / "spectrum.h5")
        out.append((f"ood.{key}={value}", [["invert", "--model", str(d), "--spectrum", spec, "--no-refine", "--json"]]))
    return out


POSCAR_LINE_DAMAGES = ["del", "dup", "nan", "inf", "1e300", "0", "-1", "abc", "empty", "half"]


def _damage_line(lines: list[str], i: int, how: str) -> list[str]:
    out = list(lines)
    toks = out[i].split()
    if how == "del":
        del out[i]
    elif how == "dup":
        out.insert(i, out[i])
    elif how == "empty":
        out[i] = ""
    elif how == "half":
        out[i] = " ".join(toks[: max(len(toks) // 2, 0)])
    else:
        out[i] = " ".join([how] * max(len(toks), 1))
    return out


def structure_cases(work: Path) -> list[tuple[str, list[list[str]]]]:
    """Line damages of Ge's POSCAR and FORCE_CONSTANTS through ``basis`` and ``phonons``, plus whole-file
    damages (empty, binary, truncated) and physically odd cells (two atoms on one site, a flat cell)."""
    from fcinv_widgets.materials import data_path

    poscar = (data_path("ge") / "POSCAR").read_text().splitlines()
    fc_lines = (data_path("ge") / "FORCE_CONSTANTS_DFT").read_text().splitlines()
    fc_good = str(data_path("ge") / "FORCE_CONSTANTS_DFT")
    pos_good = str(data_path("ge") / "POSCAR")
    out = []

    def phonons(pos, fc):
        return ["phonons", "--structure", pos, "--force-constants", fc, "--supercell", "4", "--qpoints", "0 0 0.5", "--json"]

    def basis(pos):
        return ["basis", "--structure", pos, "--supercell", "2", "2", "2", "--json"]

    variants = [(f"POSCAR line {i} {h}", _damage_line(poscar, i, h)) for i in range(10) for h in POSCAR_LINE_DAMAGES]
    variants += [
        ("POSCAR empty", []),
        ("POSCAR truncated", poscar[:6]),
        ("POSCAR two atoms on one site", poscar[:8] + [poscar[8], poscar[8]] + ["  1"]),
        ("POSCAR flat cell", poscar[:2] + [poscar[2], poscar[2], poscar[4]] + poscar[5:]),
    ]
    for i, (name, lines) in enumerate(variants):
        p = work / f"POSCAR_{i}"
        p.write_text("\n".join(lines) + "\n")
        out.append((name, [basis(str(p)), phonons(str(p), fc_good)]))
    (work / "POSCAR_bin").write_bytes(bytes(range(256)) * 8)
    out.append(("POSCAR binary", [basis(str(work / "POSCAR_bin"))]))
    fc_rows = [0, 1, 2, 3, len(fc_lines) - 1]
    fvariants = [(f"FC line {i} {h}", _damage_line(fc_lines, i, h)) for i in fc_rows for h in POSCAR_LINE_DAMAGES]
    fvariants += [("FC empty", []), ("FC truncated", fc_lines[:100]), ("FC header 3 128", ["   3  128"] + fc_lines[1:])]
    for i, (name, lines) in enumerate(fvariants):
        p = work / f"FC_{i}"
        p.write_text("\n".join(lines) + "\n")
        out.append((name, [phonons(pos_good, str(p))]))
    return out


def table_cases(work: Path) -> list[tuple[str, list[list[str]]]]:
    """Key and point damages of Ge's measured table through ``fit-dispersion`` (a few iterations)."""
    from fcinv_widgets.materials import data_path

    table = json.loads((data_path("measured") / "ge.json").read_text())
    out = []
    changes: list[tuple[str, dict]] = []
    for key in list(table) + ["points.0.frequency", "points.0.sigma", "points.0.label", "points.0.degeneracy"]:
        for value in ATTR_VALUES:
            t = json.loads(json.dumps(table))
            v = float(value.replace("Infinity", "inf")) if value in ("NaN", "Infinity") else json.loads(value)
            if key.startswith("points."):
                _, j, k = key.split(".")
                t["points"][int(j)][k] = v
            else:
                t[key] = v
            changes.append((f"{key}={value}", t))
    for key in ("C11", "C12", "C44", "density_g_cm3", "sigma_rel"):
        for value in ("-1", "0", '"abc"', "1e300"):
            t = json.loads(json.dumps(table))
            if isinstance(t.get("elastic"), dict):
                t["elastic"][key] = json.loads(value)
            changes.append((f"elastic.{key}={value}", t))
    changes.append(("no points", {**table, "points": []}))
    changes.append(("a point at a q-vector of text", {**table, "points": [{"q": "abc", "frequency": 1.0}]}))
    for i, (name, t) in enumerate(changes):
        p = work / f"table_{i}.json"
        p.write_text(json.dumps(t))
        out.append((name, [["fit-dispersion", "--material", "Ge", "--table", str(p), "--max-iter", "3", "--json"]]))
    p = work / "table_text.json"
    p.write_text("{not json")
    out.append(("not JSON", [["fit-dispersion", "--material", "Ge", "--table", str(p), "--json"]]))
    return out


def _small_dataset(work: Path) -> Path:
    from fcinv_widgets.dataset import generate_dataset

    path = work / "dataset.h5"
    if not path.exists():
        with contextlib.redirect_stderr(io.StringIO()):
            generate_dataset("Ge", path, n_train=8, n_test=6, candidates=16, progress=False)
    return path


def dataset_cases(work: Path) -> list[tuple[str, list[list[str]]]]:
    """Attribute and dataset damages of a small Ge dataset through ``evaluate``, ``noise-grid``, ``train`` and ``latent``."""
    src = _small_dataset(work)
    with h5py.File(src, "r") as f:
        keys = [k for k in ("param_names", "domain", "reference_params", "test/spectra", "test/params", "grid/q_points",
                            "grid/energy_centers_mev") if k in f]  # fmt: skip
        attrs = [a for a in ("material", "seed", "resolution", "version") if a in f.attrs]
    out = []
    muts = [("attr", a, v) for a in attrs for v in ATTR_VALUES] + [("del", a, "") for a in attrs]
    muts += [("ds", k, h) for k in keys for h in ("del", "nan", "neg", "shape", "text", "dup", "empty", "zero")]
    for i, (kind, key, how) in enumerate(muts):
        p = work / f"dataset_{i}.h5"
        _mutate_scanset(src, p, kind, key, how)
        out.append(
            (
                f"{kind} {key} {how}",
                [
                    ["evaluate", "--model", "ge-vae", "--dataset", str(p), "--n-samples", "4", "--json", "--no-progress"],
                    ["noise-grid", "--model", "ge-vae", "--dataset", str(p), "--max-test", "2", "--n-samples", "2"]
                    + ["--out", str(work / f"grid_{i}.h5"), "--json", "--no-progress"],
                    ["train", "--model", "resnet", "--dataset", str(p), "--epochs", "1", "--out", str(work / f"train_{i}")]
                    + ["--json", "--no-progress"],
                    ["latent", "--model", "ge-vae", "--dataset", str(p), "--out", str(work / f"latent_{i}.h5"), "--json"]
                    + ["--no-progress"],
                ],
            )
        )
    return out


def bank_cases(work: Path) -> list[tuple[str, list[list[str]]]]:
    """Damaged coverage banks (npz) through ``evaluate --augment --mask-bank``."""
    from fcinv_widgets.analysis.planner import coverage_bank
    from fcinv_widgets.materials import get_material

    data = _small_dataset(work)
    good = work / "bank.npz"
    coverage_bank(get_material("Ge"), [0.0, 40.0], 80.0, qmax=3.0, progress=False, cache=False).save(good)
    with np.load(good, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    out = []
    variants: list[tuple[str, dict]] = []
    for key in arrays:
        for how, fn in {
            "del": None,
            "nan": lambda a: np.full(a.shape, np.nan),
            "shape": lambda a: a.reshape(-1)[:-1] if a.size else a,
            "text": lambda a: np.full(a.shape, "a"),
            "empty": lambda a: a[:0] if a.ndim else a,
            "neg": lambda a: -np.ones(a.shape),
        }.items():
            changed = {k: v for k, v in arrays.items() if k != key}
            if fn is not None:
                try:
                    changed[key] = fn(arrays[key])
                except (ValueError, TypeError):
                    continue
            variants.append((f"{key} {how}", changed))
    for i, (name, arrs) in enumerate(variants):
        p = work / f"bank_{i}.npz"
        np.savez(p, **arrs)
        out.append((name, [["evaluate", "--model", "ge-vae", "--dataset", str(data), "--augment", "--mask-bank", str(p)]
                           + ["--n-samples", "4", "--json", "--no-progress"]]))  # fmt: skip
    (work / "bank_text.npz").write_text("not a zip")
    out.append(("not a zip", [["evaluate", "--model", "ge-vae", "--dataset", str(data), "--augment", "--mask-bank",
                               str(work / "bank_text.npz"), "--json", "--no-progress"]]))  # fmt: skip
    return out


def main_(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="options,scanset,model,structure,table,dataset,bank")
    ap.add_argument("--timeout", type=int, default=60, help="seconds per case before it counts as slow (default 60)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-progress", action="store_true", help="no case counter on stderr")
    args = ap.parse_args(argv)
    families = [f.strip() for f in args.family.split(",") if f.strip()]
    summary: dict = {}
    bad_cases: list = []
    with tempfile.TemporaryDirectory(prefix="fcinv-fuzz-") as tmp:
        work = Path(tmp)
        from fcinv_widgets.materials import get_material
        from fcinv_widgets.scans import simulate_scans

        simulate_scans(get_material("Ge"), 80.0, [0.0, 40.0], qmax=3.0, progress=False).save(work / "scans.h5")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            rc = main(["simulate", "--material", "Ge", "--full-sqe", "--ei", "80", "--qmax", "3", "--temperature", "5",
                       "--out", str(work / "spectrum.h5"), "--json"])  # fmt: skip
        assert rc == 0, "could not simulate the base spectrum"
        groups: list[tuple[str, str, list[list[str]]]] = []
        if "options" in families:
            groups += [("options", " ".join(a[:1] + a[-2:-1]), [a]) for a in option_cases(work)]
        if "scanset" in families:
            groups += [("scanset", n, argvs) for n, argvs in scanset_cases(work)]
        if "model" in families:
            groups += [("model", n, argvs) for n, argvs in model_cases(work)]
        for fam, make in (
            ("structure", structure_cases),
            ("table", table_cases),
            ("dataset", dataset_cases),
            ("bank", bank_cases),
        ):
            if fam in families:
                groups += [(fam, n, argvs) for n, argvs in make(work)]
        total, done = sum(len(a) for *_, a in groups), 0
        for family, name, argvs in groups:
            counts = summary.setdefault(family, {"ok": 0, "bad": 0, "slow": 0})
            for a in argvs:
                verdict, rc, line = run_case(a, args.timeout)
                counts[verdict] += 1
                done += 1
                if not args.no_progress:
                    print(f"\r{done}/{total} cases", end="", file=sys.stderr, flush=True)
                if verdict == "bad":
                    bad_cases.append({"family": family, "case": name, "command": a[0], "exit": rc, "stderr": line})
                    if not args.json:
                        print(f"BAD {family}: {a[0]} {name} (exit {rc}): {line}", file=sys.stderr)
    if not args.no_progress:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps({"summary": summary, "bad": bad_cases}, indent=1, default=str))
    else:
        for family, c in summary.items():
            print(f"{family}: {c['ok']} ok, {c['bad']} bad, {c['slow']} slow (past --timeout)")
    return 1 if bad_cases else 0


if __name__ == "__main__":
    sys.exit(main_())
