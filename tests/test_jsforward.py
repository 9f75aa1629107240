"""The kernel-free FCExplorer: the JavaScript forward model against the Python one.

``write_fixture`` exports a material's forward model (the payload the widget ships) and the
Python images, energies and stability flags of a few θ; the node test
``js/test/forward_model.test.mjs`` evaluates the same θ in JavaScript and asserts
max |ΔI| ≤ 1e-5 on the [0, 1]-scaled image and equal stability flags (Ge and Nb, constant σ
and the ARCS σ(E)). The fixtures are large (≈1 MB each), so they are written here into a
temporary folder rather than kept in git.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fcinv_widgets.widgets._jsforward import forward_payload, payload_to_plain

ROOT = Path(__file__).resolve().parents[1]
NODE_TEST = ROOT / "js" / "test" / "forward_model.test.mjs"


def _cases(fm, domain, seed=0):
    """Reference θ, random θ in the training domain, and a surely unstable θ (sign of FC0 flipped)."""
    rng = np.random.default_rng(seed)
    ref = fm.reference_theta
    lo, hi = domain[:, 0], domain[:, 1]
    thetas = [("reference", ref), ("domain-low", lo), ("domain-high", hi)]
    thetas += [(f"random{i}", lo + (hi - lo) * rng.random(len(ref))) for i in range(4)]
    flip = ref.copy()
    flip[0] = -flip[0]
    thetas.append(("FC0-flipped", flip))
    return thetas


def write_fixture(name: str, fm, domain, path: Path) -> dict:
    """Write the JSON fixture for the node test; returns the Python side's summary."""
    cases = []
    for label, th in _cases(fm, np.asarray(domain, float)):
        img, st = fm.spectra(th[None], return_stable=True)
        fr = fm.frequencies(th[None])[0]
        lo = float(fm.min_energy(th[None])[0])
        cases.append({
            "label": label, "theta": [float(v) for v in th], "stable": bool(st[0]), "min_mev": lo,
            "image": payload_to_plain({"a": np.asarray(img[0], np.float32)})["a"],
            "freqs": payload_to_plain({"a": np.asarray(fr, np.float64)})["a"],
        })
    path.write_text(json.dumps({"name": name, "payload": payload_to_plain(forward_payload(fm)), "cases": cases}))
    return {"stable": [c["stable"] for c in cases]}


def _arcs_variant(fm, ei_mev: float):
    """The same precomputed blocks with the ARCS σ(E) instead of a constant σ (no rebuild)."""
    fa = copy.copy(fm)
    fa._set_resolution(1.0, ("arcs", ei_mev))
    fa._cpu = {k: v for k, v in fm._cpu.items() if k != "lut"}
    return fa


@pytest.mark.slow
def test_js_forward_model_agrees_with_python_for_ge_and_nb(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not installed (Node.js >= 18 runs the JavaScript tests)")
    from fcinv_widgets import get_material

    files = []
    for name, sigma in (("Ge", 1.0), ("Nb", 1.0)):
        mat = get_material(name)
        fm = mat.forward_model(sigma_mev=sigma)
        f = tmp_path / f"{name.lower()}.json"
        summary = write_fixture(f"{name} σ = {sigma} meV", fm, mat.domain, f)
        assert any(summary["stable"]) and not all(summary["stable"]), summary
        files.append(f)
        if name == "Ge":
            fa = _arcs_variant(fm, 80.0)
            assert fa.resolution["kind"] == "arcs" and len(fa.sigma_table) > 1
            f = tmp_path / "ge-arcs.json"
            write_fixture("Ge ARCS σ(E), Ei = 80 meV", fa, mat.domain, f)
            files.append(f)
    env = dict(os.environ, FCINV_JSFORWARD_FIXTURES=",".join(str(f) for f in files))
    r = subprocess.run([node, "--test", str(NODE_TEST)], check=False, cwd=ROOT / "js", env=env, capture_output=True, text=True, timeout=600)
    print("\n".join(line for line in r.stdout.splitlines() if "max|ΔI|" in line or line.startswith(("# G", "# N"))))
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert f"# pass {5 + len(files)}" in r.stdout, r.stdout[-3000:]


def test_payload_is_none_for_a_forward_model_without_blocks():
    from fcinv_widgets.widgets.fake import FakeMaterial

    fm = FakeMaterial().forward_model()
    assert forward_payload(fm) is None
