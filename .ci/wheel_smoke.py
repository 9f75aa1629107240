"""Smoke test of an installed (non-editable) wheel, run by .ci/wheel-smoke in a fresh venv
from a temporary directory with no source tree around.

Checks: the package is imported from the venv's site-packages (not a checkout); `fcinv`
commands run (text and --json); every shipped model loads; each widget is constructed and
produces its MIME bundle with its JavaScript; one inversion through the CLI.
Exits non-zero with the failed check's name on the last line.
"""

import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

T0 = time.perf_counter()


def check(name, cond, detail=""):
    if not cond:
        print(f"wheel smoke: FAILED {name} {detail}", file=sys.stderr)
        sys.exit(1)
    print(f"  ok  {name:46s} {time.perf_counter() - T0:6.1f} s {detail}")


def fcinv(*args):
    exe = Path(sys.executable).with_name("fcinv")
    r = subprocess.run([str(exe), *args], capture_output=True, text=True, check=False)
    check(f"fcinv {' '.join(args[:2])} exits 0", r.returncode == 0, r.stderr.strip()[-400:])
    return r.stdout


def main():
    import fcinv_widgets

    pkg = Path(fcinv_widgets.__file__).resolve().parent
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    check("imported from the venv's site-packages", pkg.parent == site, str(pkg))
    check("no source tree in the working directory", not Path("pyproject.toml").exists() and not Path("fcinv_widgets").exists())
    for rel in (
        "static/fc_explorer.js",
        "static/noise_grid.js",
        "static/orientation.js",
        "static/latent_picker.js",
        "data/ensemble/ge.json",
        "data/ensemble/nb.json",
    ):
        check(f"ships {rel}", (pkg / rel).is_file())

    out = fcinv("--version")
    check("fcinv --version names the version", fcinv_widgets.__version__ in out, out.strip())
    d = json.loads(fcinv("basis", "--material", "Ge", "--json"))
    check("fcinv basis --json: 44 parameters", d["n_params"] == 44)
    bad = subprocess.run(
        [str(Path(sys.executable).with_name("fcinv")), "bench", "forward", "--batch", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    check("bad input: exit 2, one line", bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr.strip())

    from fcinv_widgets.models import load_model

    models = {name: load_model(name) for name in ("ge-vae", "ge-resnet", "nb-vae", "nb-resnet")}
    check("the four shipped models load", all(models.values()))

    import numpy as np

    from fcinv_widgets import (
        FCExplorer,
        LatentPicker,
        NoiseGridExplorer,
        OrientationScatter,
        get_material,
    )
    from fcinv_widgets.analysis.latent import LatentMap
    from fcinv_testing.fakes import FakeMaterial, fake_noise_grid, fake_scan_inference, make_fake_grid

    ge = get_material("Ge")
    grid = make_fake_grid(30, 24)
    widgets = {
        "FCExplorer": FCExplorer(ge),
        "NoiseGridExplorer": NoiseGridExplorer(fake_noise_grid()),
        "OrientationScatter": OrientationScatter(
            fake_scan_inference(n=12, grid=grid), forward_model=FakeMaterial(grid=grid).forward_model()
        ),
        "LatentPicker": LatentPicker(LatentMap.load("ge-vae-paper", trust_reducer=False), load_model("ge-vae-paper")),
    }
    for name, w in widgets.items():
        bundle = w._repr_mimebundle_()
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        view = data.get("application/vnd.jupyter.widget-view+json", {})
        esm = str(getattr(w.widget, "_esm", ""))
        check(
            f"{name}: MIME bundle and its JavaScript",
            bool(view.get("model_id")) and "export" in esm and len(esm) > 500,
            f"{len(esm)} chars of JS",
        )

    os.environ.setdefault("MPLBACKEND", "Agg")
    ref = ",".join(f"{x:.6f}" for x in ge.reference_theta)
    fcinv("simulate", "--material", "Ge", f"--params={ref}", "--out", "spectrum.h5", "--json")
    d = json.loads(fcinv("invert", "--model", "ge-vae", "--spectrum", "spectrum.h5", "--json"))
    err = np.abs(np.array(d["fc_mean"]) - ge.reference_theta) / np.maximum(np.abs(ge.reference_theta), 1e-9)
    check(
        "fcinv invert --model ge-vae: 8 FCs with σ",
        len(d["fc_mean"]) == 8 and all(s >= 0 for s in d["fc_std"]),
        f"FC0 {d['fc_mean'][0]:+.3f} (true {ge.reference_theta[0]:+.3f}, {100 * err[0]:.0f} % off)",
    )
    check("FC0 (1NN xx) recovered within 25 %", err[0] < 0.25)
    print(f"wheel smoke: all checks passed in {time.perf_counter() - T0:.1f} s")


if __name__ == "__main__":
    main()
