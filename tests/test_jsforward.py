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
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from fcinv_widgets.widgets._jsforward import forward_payload, payload_to_plain

ROOT = Path(__file__).resolve().parents[1]
NODE_TEST = ROOT / "js" / "test" / "forward_model.test.mjs"


def _cases(fm, domain, seed=0):
    """Reference θ, the domain's corners, random θ in the domain, a surely unstable θ (sign of FC0
    flipped), and two θ just either side of the stability threshold."""
    rng = np.random.default_rng(seed)
    ref = fm.reference_theta
    lo, hi = domain[:, 0], domain[:, 1]
    thetas = [("reference", ref), ("domain-low", lo), ("domain-high", hi)]
    thetas += [(f"random{i}", lo + (hi - lo) * rng.random(len(ref))) for i in range(4)]
    flip = ref.copy()
    flip[0] = -flip[0]
    thetas.append(("FC0-flipped", flip))
    thetas += _stability_edge(fm, ref, flip)
    return thetas


def _stability_edge(fm, stable, unstable, tol_mev=0.01):
    """Two θ on the segment stable → unstable whose lowest energies bracket the −0.1 meV
    threshold within ``tol_mev`` (bisection): the flags must agree right at the edge."""
    from fcinv_widgets.forward import UNSTABLE_BELOW_MEV

    def lowest(t):
        return float(fm.min_energy((stable + t * (unstable - stable))[None])[0])

    lo, hi = 0.0, 1.0
    assert lowest(lo) >= UNSTABLE_BELOW_MEV > lowest(hi)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if lowest(mid) >= UNSTABLE_BELOW_MEV:
            lo = mid
        else:
            hi = mid
        if lowest(lo) - UNSTABLE_BELOW_MEV < tol_mev and UNSTABLE_BELOW_MEV - lowest(hi) < tol_mev:
            break
    assert lowest(lo) - UNSTABLE_BELOW_MEV < tol_mev and UNSTABLE_BELOW_MEV - lowest(hi) < tol_mev
    return [("edge-stable", stable + lo * (unstable - stable)), ("edge-unstable", stable + hi * (unstable - stable))]


def write_fixture(name: str, fm, domain, path: Path) -> dict:
    """Write the JSON fixture for the node test; returns the Python side's summary."""
    cases = []
    for label, th in _cases(fm, np.asarray(domain, float)):
        img, st = fm.spectra(th[None], return_stable=True)
        fr = fm.frequencies(th[None])[0]
        lo = float(fm.min_energy(th[None])[0])
        cases.append(
            {
                "label": label,
                "theta": [float(v) for v in th],
                "stable": bool(st[0]),
                "min_mev": lo,
                "image": payload_to_plain({"a": np.asarray(img[0], np.float32)})["a"],
                "freqs": payload_to_plain({"a": np.asarray(fr, np.float64)})["a"],
            }
        )
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
    r = subprocess.run(
        [node, "--test", str(NODE_TEST)], check=False, cwd=ROOT / "js", env=env, capture_output=True, text=True, timeout=600
    )
    print("\n".join(line for line in r.stdout.splitlines() if "max|ΔI|" in line or line.startswith(("# G", "# N"))))
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "# fail 0" in r.stdout and "# skipped 0" in r.stdout, r.stdout[-3000:]
    for name in ("Ge σ = 1.0 meV", "Ge ARCS σ(E), Ei = 80 meV", "Nb σ = 1.0 meV"):
        assert any(line.startswith("ok ") and name in line for line in r.stdout.splitlines()), name


def test_payload_is_none_for_a_forward_model_without_blocks():
    from fcinv_testing.fakes import FakeMaterial

    fm = FakeMaterial().forward_model()
    assert forward_payload(fm) is None


def test_payload_is_none_for_blocks_too_large_for_the_page():
    from types import SimpleNamespace

    from fcinv_widgets.widgets._jsforward import MAX_JS_BLOCK

    def fm(m):
        k = 2 * m * m
        layout = {
            "W": np.zeros((k, 9)),
            "m": np.array([m]),
            "off": np.array([0]),
            "k": np.array([k]),
            "q": np.array([0]),
            "w": np.array([1.0]),
        }
        grid = SimpleNamespace(shape=(1, 10), e=SimpleNamespace(centers=np.arange(10) + 0.5, step=1.0))
        return SimpleNamespace(
            _cpu=layout,
            grid=grid,
            sigma_table=np.array([1.0]),
            sigma_e0=0.0,
            sigma_de=1.0,
            cutoff=4.0,
            path=SimpleNamespace(n_modes=m),
        )

    assert forward_payload(fm(MAX_JS_BLOCK))["blk_m"].tolist() == [MAX_JS_BLOCK]
    assert forward_payload(fm(MAX_JS_BLOCK + 1)) is None


def test_fake_explorer_has_no_js_path_and_refuses_save_html(tmp_path):
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.widgets import FCExplorer
    from fcinv_testing.fakes import FakeMaterial

    fx = FCExplorer(FakeMaterial())
    assert fx.widget.jsforward is None
    with pytest.raises(FcinvError, match="JavaScript forward model"):
        fx.save_html(tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_wrapped_esm_is_one_module_with_one_default_export():
    from fcinv_widgets.widgets import FCExplorerView
    from fcinv_widgets.widgets._assets import load_esm
    from fcinv_widgets.widgets._jsforward import wrap_esm

    esm = FCExplorerView._esm
    assert esm.count("export default") == 1 and "fwdWrapWidget(__fcinvBase)" in esm
    assert not re.search(r'^import\s*\{[^}]*\}\s*from\s*"\./', esm, re.MULTILINE)  # local imports inlined
    with pytest.raises(Exception, match="default export"):
        wrap_esm(load_esm("fc_explorer.js").replace("export default", "const x ="))


@pytest.mark.slow
def test_ge_explorer_payload_and_standalone_page(tmp_path):
    """The payload travels as binary buffers in the widget state; the page inlines everything."""
    from fcinv_widgets import get_material
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.widgets import FCExplorer

    fx = FCExplorer(get_material("Ge"))
    state = fx.widget.get_state()
    js = state["jsforward"]
    assert isinstance(js["W"]["buffer"], memoryview) and js["W"]["dtype"] == "float64"
    assert js["nq"] == 140 and js["nE"] == 140 and js["n_active"] == 8
    page = fx.save_html(tmp_path / "ge.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script src" not in page
    assert page.count("</script>") == 2  # the state and the module, nothing escaped out of them
    assert len(page) < 1_000_000
    # every reference the switch offers travels with the page (its switch works without a kernel);
    # a page of the bare view has no switch (it could not act on it)
    from fcinv_widgets.widgets._jsforward import standalone_html

    data = json.loads(re.search(r'id="fcinv-state">(.*?)</script>', page, re.S).group(1))
    table = fx._reference_table()
    assert len(table) >= 2 and data["references"] == table
    assert data["state"]["reference_options"] == list(table)
    fx.set_reference(next(k for k in table if k != fx.widget.reference_name))
    np.testing.assert_allclose(fx.theta, np.clip(table[fx.widget.reference_name], *np.asarray(fx.widget.domain).reshape(-1, 2).T))
    bare = json.loads(re.search(r'id="fcinv-state">(.*?)</script>', standalone_html(fx.widget), re.S).group(1))
    assert bare["references"] == {} and bare["state"]["reference_options"] == []
    with pytest.raises(FcinvError, match="directory"):
        fx.save_html(tmp_path)
    with pytest.raises(FcinvError, match="no file name given"):
        fx.save_html("")
    with pytest.raises(FcinvError, match="cannot write"):
        fx.save_html(tmp_path / "missing" / "ge.html")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        view = fx.static_view(500)
    assert "<iframe" in view.data and 'sandbox="allow-scripts"' in view.data
    with pytest.raises(FcinvError, match="height_px"):
        fx.static_view(10)
    assert FCExplorer(get_material("Ge"), js_forward=False).widget.jsforward is None
