"""Every browser message a widget can receive (``set_state`` on each synced scalar/list trait)
with bad values: refused as a ``TraitError`` with the previous state kept, or accepted — never
another exception (session 24's fuzz, kept as a test; it found the non-rollback and bool bugs)."""

import numpy as np
import pytest
import traitlets

from fcinv_testing.fakes import FakeDecoder, FakeMaterial, fake_latent_map, fake_noise_grid, fake_scan_inference, make_fake_grid

BAD = [float("nan"), float("inf"), -1, 10**9, 1.5, True, "abc", None, [], [1, 2], [10**9], ["a"], [[1, 2]], {"a": 1}]


def _widgets():
    from fcinv_widgets.widgets import FCExplorer, LatentPicker, NoiseGridExplorer, OrientationScatter

    grid = make_fake_grid(30, 24)
    return {
        "FCExplorer": FCExplorer(FakeMaterial()),
        "NoiseGridExplorer": NoiseGridExplorer(fake_noise_grid()),
        "OrientationScatter": OrientationScatter(
            fake_scan_inference(n=12, grid=grid), forward_model=FakeMaterial(grid=grid).forward_model()
        ),
        "LatentPicker": LatentPicker(fake_latent_map(n=60, latent=6), decoder=FakeDecoder()),
    }


def _browser_traits(view):
    """Synced traits a message could set: scalars and lists (arrays are binary buffers the views send back never)."""
    kinds = (traitlets.Int, traitlets.Float, traitlets.Unicode, traitlets.Bool, traitlets.List)
    own = set(view.traits(sync=True)) - set(traitlets.HasTraits.class_traits()) - {"_esm", "_css", "_anywidget_id"}
    return sorted(n for n in own if isinstance(view.traits()[n], kinds) and not n.startswith("_"))


@pytest.mark.parametrize("name", ["FCExplorer", "NoiseGridExplorer", "OrientationScatter", "LatentPicker"])
def test_bad_browser_messages_are_refused_and_rolled_back(name):
    w = _widgets()[name]
    view = w.widget
    traits = _browser_traits(view)
    assert traits, "no synced traits found"
    problems = []
    for trait in traits:
        for value in BAD:
            before = view.get_state(trait)
            try:
                view.set_state({trait: value})
            except traitlets.TraitError:
                if view.get_state(trait) != before:
                    problems.append(f"{trait}={value!r}: refused but not rolled back")
                continue
            except Exception as exc:  # noqa: BLE001 — what this test looks for
                problems.append(f"{trait}={value!r}: {type(exc).__name__}: {exc}"[:200])
                continue
            try:  # accepted: put it back for the next case
                view.set_state(before)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{trait}={value!r}: accepted, then the previous state was refused: {exc}"[:200])
    assert not problems, "\n".join(problems)
    assert np.isfinite(np.asarray(getattr(w, "theta", [0.0]), float)).all()


CTOR_BAD = [float("nan"), float("inf"), -1, 10**9, 1.5, True, "abc", None, [], [1, 2], {"a": 1}, np.zeros((3, 3))]


def _constructor_cases():
    from fcinv_widgets.widgets import FCExplorer, LatentPicker, NoiseGridExplorer, OrientationScatter

    grid = make_fake_grid(30, 24)
    for v in CTOR_BAD:
        yield "FCExplorer(material)", lambda v=v: FCExplorer(v)
        yield "FCExplorer(sigma_mev)", lambda v=v: FCExplorer(FakeMaterial(), sigma_mev=v)
        yield "FCExplorer(compare)", lambda v=v: FCExplorer(FakeMaterial(), compare=v)
        yield "NoiseGridExplorer(results)", lambda v=v: NoiseGridExplorer(v)
        yield "NoiseGridExplorer(fc)", lambda v=v: NoiseGridExplorer(fake_noise_grid(), fc=v)
        yield "NoiseGridExplorer(model)", lambda v=v: NoiseGridExplorer(fake_noise_grid(), model=v)
        yield "OrientationScatter(result)", lambda v=v: OrientationScatter(v)
        yield "OrientationScatter(fc)", lambda v=v: OrientationScatter(fake_scan_inference(n=12, grid=grid), fc=v)
        yield "OrientationScatter(selected)", lambda v=v: OrientationScatter(fake_scan_inference(n=12, grid=grid), selected=v)
        yield (
            "OrientationScatter(energy_range)",
            lambda v=v: OrientationScatter(fake_scan_inference(n=12, grid=grid), energy_range=v),
        )
        yield "OrientationScatter(plan)", lambda v=v: OrientationScatter(fake_scan_inference(n=12, grid=grid), plan=v)
        yield "LatentPicker(latent_map)", lambda v=v: LatentPicker(v, decoder=FakeDecoder())
        yield "LatentPicker(fc)", lambda v=v: LatentPicker(fake_latent_map(n=60, latent=6), decoder=FakeDecoder(), fc=v)
        yield "LatentPicker(ray_n)", lambda v=v: LatentPicker(fake_latent_map(n=60, latent=6), decoder=FakeDecoder(), ray_n=v)


def test_bad_constructor_arguments_are_one_fcinv_error():
    """Session 25: the widgets' Python constructors with 12 bad values per argument (180 cases) —
    accepted or refused with an FcinvError naming the argument, never an AttributeError/TypeError
    from deep inside (97 were before: `FCExplorer(1.5)` → "'float' object has no attribute 'grid'")."""
    from fcinv_widgets.errors import FcinvError

    problems, refused = [], 0
    for name, make in _constructor_cases():
        try:
            make()
        except FcinvError:
            refused += 1
        except Exception as exc:  # noqa: BLE001 — what this test looks for
            problems.append(f"{name}: {type(exc).__name__}: {exc}"[:200])
    assert not problems, "\n".join(problems)
    assert refused > 120


def test_constructor_messages_name_the_argument():
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.widgets import FCExplorer, LatentPicker, OrientationScatter

    with pytest.raises(FcinvError, match="FCExplorer needs a material .* got float"):
        FCExplorer(1.5)
    with pytest.raises(FcinvError, match="unknown material|no such material|Ge, Nb"):
        FCExplorer("Xx")
    with pytest.raises(FcinvError, match="sigma_mev"):
        FCExplorer(FakeMaterial(), sigma_mev=-1)
    with pytest.raises(FcinvError, match="OrientationScatter needs a scan-inference result"):
        OrientationScatter({"a": 1})
    with pytest.raises(FcinvError, match=r"fc must be an integer in \[0, "):
        LatentPicker(fake_latent_map(n=60, latent=6), decoder=FakeDecoder(), fc=1.5)
    ex = FCExplorer(FakeMaterial())
    for bad in ("12", {1: 0, 2: 0}, [5, 1], [0, float("nan")]):  # a 2-character string once unpacked to (1, 2)
        with pytest.raises(FcinvError, match="energy window"):
            ex.energy_range = bad
    with pytest.raises(FcinvError, match=r"energy_range \(meV\) must be two finite numbers"):
        OrientationScatter(fake_scan_inference(n=12, grid=make_fake_grid(30, 24)), energy_range=[5, 1])


@pytest.mark.parametrize("arg", ["/nonexistent/x.h5", "text", "folder", None, 3.5])
def test_python_api_loaders_refuse_in_one_line(arg, tmp_path):
    """Every loader of the Python API: a missing path, a text file, a folder, None or a number is one
    FcinvError (NoiseGridResult.load raised h5py's OSError/FileNotFoundError; None/3.5 a TypeError)."""
    from fcinv_widgets.analysis.expio import read_spectrum
    from fcinv_widgets.analysis.latent import LatentMap
    from fcinv_widgets.analysis.noise_grid import NoiseGridResult
    from fcinv_widgets.analysis.planner import CoverageBank
    from fcinv_widgets.analysis.scan_inference import ScanInference
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.materials import custom_material
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.ood import OODStats
    from fcinv_widgets.scans import ScanSet

    (tmp_path / "text.h5").write_text("hello\n")
    (tmp_path / "folder").mkdir()
    value = {"text": str(tmp_path / "text.h5"), "folder": str(tmp_path / "folder")}.get(arg, arg)
    for load in (
        OODStats.load,
        load_model,
        ScanSet.load,
        LatentMap.load,
        ScanInference.load,
        NoiseGridResult.load,
        CoverageBank.load,
        read_spectrum,
        custom_material,
    ):
        with pytest.raises(FcinvError):
            load(value)


def test_presets_by_name():
    """FCExplorer("Ge") and LatentPicker("ge-vae") (with the model's decoder) work as written."""
    from fcinv_widgets.widgets import FCExplorer, LatentPicker

    assert FCExplorer("Ge").widget.title == "Ge"
    lp = LatentPicker("ge-vae")
    assert lp.widget.can_decode and len(lp.widget.xy) > 100


@pytest.mark.parametrize(
    "name, bad",
    [
        ("FCExplorer", {"values": [1000.0, 0.0, 0.0, 0.0]}),
        ("FCExplorer", {"values": [None, 0.0, 0.0, 0.0]}),  # NaN arrives as null
        ("FCExplorer", {"e_view": [30.0, 5.0]}),
        ("NoiseGridExplorer", {"selected": 999}),
        ("NoiseGridExplorer", {"fc": 99}),
        ("OrientationScatter", {"selected": 10**6}),
        ("LatentPicker", {"fc": 99}),
    ],
)
def test_a_refused_browser_value_is_sent_back_to_the_browser_and_said(name, bad, monkeypatch):
    """Session 47 (a browser probe): traitlets rolled a refused browser value back in the kernel
    only — the view kept "FC0 = 1000 eV/Å²" beside the image of the kernel's −0.41, a noise grid
    kept cell 999, and the reason reached no one. Now the kernel's values of the message's keys go
    back to the browser and the reason is the view's ``error``, cleared by the next accepted update."""
    view = _widgets()[name].widget
    sent = []
    monkeypatch.setattr(view, "send_state", lambda key=None: sent.append(key))
    before = {k: view.get_state(k)[k] for k in bad}
    with pytest.raises(traitlets.TraitError):
        view.set_state(bad)
    assert list(bad) in sent  # (the error trait goes out too)
    assert {k: view.get_state(k)[k] for k in bad} == before
    assert view.error and "\n" not in view.error and len(view.error) <= 400
    view.set_state(before)  # an update the kernel accepts clears it
    assert view.error == ""


def test_explorer_values_and_domain_messages_name_the_fault():
    """`fx.theta = None` said "contains NaN" (numpy turns None into NaN); a NaN or inverted `domain=`
    was accepted and each slider value then refused as "outside its training domain [1, 0]"; a text
    domain leaked numpy's ValueError."""
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.widgets import FCExplorer

    ex = FCExplorer(FakeMaterial())
    with pytest.raises(FcinvError, match=r"theta \(eV/Å²\): no value \(None\)"):
        ex.theta = None
    n = len(ex.widget.names)
    dom = np.tile([[-1.0, 1.0]], (n, 1))
    inverted = dom[:, ::-1].copy()
    with pytest.raises(FcinvError, match=r"domain must be \[lo, hi\] rows with lo < hi: row 0 \(FC0\) is \[1, -1\] eV/Å²"):
        FCExplorer(FakeMaterial(), domain=inverted)
    dom_nan = dom.copy()
    dom_nan[1, 0] = np.nan
    with pytest.raises(FcinvError, match=r"domain \(eV/Å²\): contains NaN"):
        FCExplorer(FakeMaterial(), domain=dom_nan)
    with pytest.raises(FcinvError, match=r"domain \(eV/Å²\): string values"):
        FCExplorer(FakeMaterial(), domain="x")
