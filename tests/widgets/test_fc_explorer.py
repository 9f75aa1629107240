import re

import numpy as np
import pytest

from fcinv_widgets.errors import FcinvError, GridMismatchError
from fcinv_widgets.widgets import FCExplorer, FCExplorerView
from fcinv_widgets.widgets._assets import load_esm
from fcinv_widgets.widgets._traits import array_from_json, array_to_json
from fcinv_testing.fakes import FakeMaterial


@pytest.fixture
def fx():
    return FCExplorer(FakeMaterial())


def test_builds_from_material(fx):
    w = fx.widget
    assert len(w.names) == 8 and w.units == "eV/Å²"
    assert w.image.shape == (60, 50) and w.image.dtype == np.float32
    assert w.freqs.shape == (60, 3)
    assert w.stable is True and w.frame == 1
    assert w.q_labels[1] == [20.0, "X|K"] and w.q_breaks == [20.0] and w.break_indices == [20]
    assert w.q_range == [0.0, 60.0]
    np.testing.assert_allclose(fx.theta, FakeMaterial().reference_params[:8])


def test_arrays_cross_as_bytes(fx):
    state = fx.widget.get_state()
    img = state["image"]
    assert isinstance(img["buffer"], memoryview) and img["shape"] == [60, 50]
    fr = state["freqs"]
    assert fr["dtype"] == "float32" and fr["shape"] == [60, 3]
    back = array_from_json(array_to_json(fx.widget.image, None), None)
    np.testing.assert_array_equal(back, fx.widget.image)


def test_slider_change_recomputes_and_acks_request(fx):
    w = fx.widget
    before = w.image.copy()
    vals = list(w.values)
    vals[0] = float(w.domain[0, 1])
    # what the browser does: values + request_seq in one state update
    w.set_state({"values": vals, "request_seq": 7})
    assert w.rendered_seq == 7 and w.frame == 2
    assert not np.array_equal(before, w.image)


def test_unstable_indicator(fx):
    vals = list(fx.widget.values)
    vals[0] = float(fx.widget.domain[0, 0])  # negative FC0 -> imaginary branch
    fx.theta = vals
    assert fx.stable is False


def test_out_of_domain_raises_and_widget_stays_usable(fx):
    w = fx.widget
    good = list(w.values)
    bad = list(good)
    bad[2] = 1e3
    with pytest.raises(FcinvError, match=r"FC2 2NN xx = 1000.0 eV/Å² is outside its training domain"):
        fx.theta = bad
    assert w.values == good
    with pytest.raises(FcinvError, match="needs 8 force constants"):
        fx.theta = good[:3]
    good2 = list(good)
    good2[1] = float(w.domain[1, 0])
    fx.theta = good2
    assert w.values == good2 and w.frame == 2


def test_reset_message(fx):
    w = fx.widget
    vals = list(w.values)
    vals[3] = float(w.domain[3, 1])
    fx.theta = vals
    fx._on_msg(w, {"event": "reset"}, [])
    np.testing.assert_allclose(fx.theta, FakeMaterial().reference_params[:8])


def test_compare_shape_checked(fx):
    with pytest.raises(GridMismatchError, match=r"shape \(10, 10\).*\(60, 50\)"):
        fx.compare(np.zeros((10, 10)))
    with pytest.raises(GridMismatchError):  # also when the trait is set directly
        fx.widget.compare = np.zeros((10, 10), np.float32)
    fx.compare(np.zeros((60, 50)))
    assert fx.widget.compare.shape == (60, 50)
    fx.compare(None)
    assert fx.widget.compare is None


def test_needs_inputs():
    with pytest.raises(FcinvError, match="needs a material"):
        FCExplorer()


def test_backend_passed_through():
    fx = FCExplorer(FakeMaterial(), backend="cupy", sigma_mev=2.0)
    assert fx.forward_model.backend == "cupy" and fx.forward_model.sigma_mev == 2.0


def test_esm_is_self_contained():
    src = load_esm("fc_explorer.js")
    assert not re.search(r"^import\s*\{", src, re.M)
    assert "export function makeCoalescer" in src and "export default { render }" in src
    # the view ships wrapped for kernel-free frames (widgets/_jsforward.py), its code unchanged
    assert src.replace("export default", "const __fcinvBase =", 1) in FCExplorerView._esm


# ---------------------------------------------------------------- issue 13: static output, export, energy window
def _png(bundle):
    import base64

    data = bundle[0] if isinstance(bundle, tuple) else bundle
    raw = base64.b64decode(data["image/png"])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return data, raw


def test_mime_bundle_has_static_png_and_meaningful_text(fx):
    data, raw = _png(fx._repr_mimebundle_())
    assert "application/vnd.jupyter.widget-view+json" in data  # the live view is still there
    assert len(raw) > 5_000
    text = data["text/plain"]
    assert text.startswith("FCExplorer(Fake: 8 FCs (eV/Å²)") and "stable" in text and "object at" not in text
    fx.compare(fx.widget.image * 0.5)
    _, raw2 = _png(fx._repr_mimebundle_())
    import io

    from matplotlib.image import imread

    w1 = imread(io.BytesIO(raw)).shape[1]
    w2 = imread(io.BytesIO(raw2)).shape[1]
    assert w2 > 2 * w1  # three panels: model, comparison, difference


def test_data_export_matches_the_view(fx):
    fx.compare(fx.widget.image * 0.5)
    d = fx.data
    np.testing.assert_array_equal(d["image"], fx.widget.image)
    np.testing.assert_allclose(d["difference"], fx.widget.image * 0.5, rtol=1e-6, atol=1e-12)
    assert d["frequencies"].shape == (60, 3) and d["energy"].shape == (50,)
    assert d["names"][0].startswith("FC0") and d["units"] == "eV/Å²" and d["stable"] is True
    d["image"][:] = -1  # a copy: the widget is untouched
    assert fx.widget.image.min() >= 0


def test_to_dataframe_long_table(fx):
    pytest.importorskip("pandas")
    df = fx.to_dataframe()
    assert len(df) == 60 * 50 and {"q_index", "E_meV", "intensity"} <= set(df.columns)
    row = df.iloc[50 * 7 + 3]
    assert row.q_index == 7 and abs(row.E_meV - fx.data["energy"][3]) < 1e-12
    assert row.intensity == pytest.approx(float(fx.widget.image[7, 3]))


def test_energy_window_auto_and_checked():
    from fcinv_testing.fakes import make_fake_grid
    from fcinv_widgets.widgets.fc_explorer import auto_energy_range

    assert auto_energy_range([1.0, 37.4], [0.0, 70.0]) == [0.0, 45.0]
    assert auto_energy_range([69.0], [0.0, 70.0]) == [0.0, 70.0]
    assert auto_energy_range([np.nan], [0.0, 70.0]) == [0.0, 70.0]
    mat = FakeMaterial(grid=make_fake_grid(emax=100.0))
    fx = FCExplorer(mat)
    top = float(np.nanmax(fx.widget.freqs))
    lo, hi = fx.energy_range
    assert lo == 0.0 and top < hi < 0.6 * 100.0  # the highest branch with a margin, not the whole grid
    fx.energy_range = (0, 80)
    assert fx.widget.e_view == [0.0, 80.0]
    for bad in [(0, 200), (30, 10), (0, float("nan")), (1,)]:
        with pytest.raises(FcinvError, match="energy window"):
            fx.energy_range = bad
    assert fx.auto_energy() == (lo, hi)


def test_reference_switch_hook(fx, monkeypatch):
    # a material that is not a preset (the fake) has no named references: the switch is hidden and says why
    from fcinv_widgets import materials

    assert fx.widget.reference_options == []
    with pytest.raises(FcinvError, match="reference"):
        fx.set_reference("measured")
    # a preset: switching moves the sliders to that reference
    monkeypatch.setitem(materials.PRESETS, FakeMaterial().name.lower(), FakeMaterial)
    mat = FakeMaterial()
    alt = FakeMaterial()
    alt.reference_params = alt.reference_params * 1.1

    def get_material(name, reference=None):
        return alt if reference == "measured" else mat

    monkeypatch.setattr(materials, "get_material", get_material)
    monkeypatch.setattr(materials, "REFERENCES", ("measured", "dft", "umlff"), raising=False)
    fx2 = FCExplorer(mat)
    assert fx2.widget.reference_options == ["measured", "dft", "umlff"]
    assert fx2.widget.reference_labels[1] == "first-principles (DFT)"
    fx2.set_reference("Measured")
    np.testing.assert_allclose(fx2.theta, np.clip(alt.reference_params[:8], mat.domain[:, 0], mat.domain[:, 1]))
    with pytest.raises(FcinvError, match="choose one of"):
        fx2.set_reference("nonsense")


@pytest.mark.parametrize("bad", [float("nan"), None, "abc", 5, {"a": 1}, [[0, 1], [2, 3]], (1, 2, 3), (5, 1)])
def test_energy_window_setter_refuses_anything_but_a_rising_pair(fx, bad):
    """Found by fuzzing (session 24): a scalar, text or None was a TypeError/ValueError traceback."""
    before = fx.energy_range
    with pytest.raises(FcinvError, match="energy window"):
        fx.energy_range = bad
    assert fx.energy_range == before


def test_a_refused_browser_message_is_rolled_back(fx):
    """Found by fuzzing (session 24): a value the widget refuses that arrives from the browser
    (``set_state``) stayed in the model with its observers already run — traitlets rolls back
    only a ``TraitError``; the widgets' errors are one now (and still FcinvErrors)."""
    import traitlets

    from fcinv_widgets.widgets.fc_explorer import SliderDomainError

    theta, window = fx.theta.copy(), fx.energy_range
    with pytest.raises(SliderDomainError) as info:
        fx.widget.set_state({"values": [1e9] * len(theta)})
    assert isinstance(info.value, traitlets.TraitError) and isinstance(info.value, FcinvError)
    np.testing.assert_array_equal(fx.theta, theta)
    with pytest.raises(FcinvError, match="energy window"):
        fx.widget.set_state({"e_view": [5.0, 1.0]})
    assert fx.energy_range == window
    with pytest.raises(GridMismatchError):  # a checker's own error inside a validator keeps its kind
        fx.widget.compare = np.ones((3, 3), np.float32)
