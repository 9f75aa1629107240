import re

import numpy as np
import pytest

from fcinv_widgets.errors import FcinvError, GridMismatchError
from fcinv_widgets.widgets import FCExplorer, FCExplorerView
from fcinv_widgets.widgets._assets import load_esm
from fcinv_widgets.widgets._traits import array_from_json, array_to_json
from fcinv_widgets.widgets.fake import FakeMaterial


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

