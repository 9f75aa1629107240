import numpy as np
import pytest

from fcinv_widgets.errors import FcinvError, GridMismatchError
from fcinv_widgets.widgets import OrientationScatter
from fcinv_testing.fakes import FakeMaterial, fake_scan_inference, make_fake_grid
from fcinv_widgets.widgets.orientation import ScanSelectionError


@pytest.fixture
def setup():
    grid = make_fake_grid(30, 24)
    res = fake_scan_inference(n=20, grid=grid)
    fm = FakeMaterial(grid=grid).forward_model()
    return res, fm


def test_construction_sends_binary_arrays_and_selects_best(setup):
    res, fm = setup
    o = OrientationScatter(res, forward_model=fm)
    best = res.best_median_worst()[0]
    assert o.selected == best
    st = o.widget.get_state()
    for k in ("angles", "mean", "std", "mse", "input_image", "recon_image", "freqs"):
        assert st[k]["dtype"] == "float32", k
        assert isinstance(st[k]["buffer"], memoryview), k
    assert st["mean"]["shape"] == [20, 8]
    np.testing.assert_array_equal(o.widget.input_image, res.inputs[best])
    assert np.isnan(o.widget.input_image).any()  # uncovered pixels stay NaN
    assert o.widget.q_labels[1] == [10.0, "X|K"] and o.widget.energy_range == [0.0, 40.0]


def test_select_updates_scan_arrays_and_dispersion(setup):
    res, fm = setup
    o = OrientationScatter(res, forward_model=fm)
    frame = o.widget.scan_frame
    worst = res.best_median_worst()[2]
    o.widget.set_state({"selected": worst})  # what a click sends
    assert o.selected == worst and o.widget.scan_frame == frame + 1
    np.testing.assert_array_equal(o.widget.input_image, res.inputs[worst])
    np.testing.assert_array_equal(o.widget.recon_image, res.recon[worst])
    np.testing.assert_allclose(o.widget.freqs, fm.frequencies(res.mean[worst][None])[0], rtol=1e-6)
    o.select(None)
    assert o.selected is None and o.widget.input_image is None and o.widget.freqs is None


def test_bad_selection_raises_and_keeps_widget_usable(setup):
    res, fm = setup
    o = OrientationScatter(res, forward_model=fm, selected=3)
    with pytest.raises(ScanSelectionError, match=r"scan index in \[0, 20\), got 20"):
        o.select(20)
    with pytest.raises(FcinvError, match="fc must be an index"):
        o.fc = 8
    with pytest.raises(ScanSelectionError, match="integer scan index"):
        o.select(2.5)
    assert o.selected == 3 and o.fc == 0
    o.select(4)
    np.testing.assert_array_equal(o.widget.input_image, res.inputs[4])


def test_without_forward_model_or_reference():
    res = fake_scan_inference(n=6)
    res.reference = None
    o = OrientationScatter(res, q_labels=[(0, "Γ"), (30, "X")], energy_range=[0, 40])
    assert o.widget.freqs is None and o.widget.reference is None
    assert o.widget.q_labels == [[0.0, "Γ"], [30.0, "X"]]


def test_backend_to_numpy_and_failing_forward_model(setup):
    res, fm = setup

    class Backend:
        def to_numpy(self, x):
            return np.asarray(x) * 0 + 1.0

    class FM:
        grid = fm.grid
        backend = Backend()

        def frequencies(self, theta):
            assert theta.shape == (1, 8)
            return np.zeros((1, 30, 3))

    o = OrientationScatter(res, forward_model=FM())
    assert np.all(o.widget.freqs == 1.0)

    class Bad(FM):
        def frequencies(self, theta):
            raise RuntimeError("boom")

    o = OrientationScatter(res, forward_model=Bad())
    assert "boom" in o.widget.error and o.widget.input_image is not None


def test_shape_mismatch(setup):
    res, fm = setup
    with pytest.raises(GridMismatchError, match="the grid is"):
        OrientationScatter(res, grid=make_fake_grid(20, 24))


def test_real_ge_forward_model_dispersion(ge):
    """The Ge forward model (Backend.to_numpy) gives the dispersion on the Ge grid."""
    fm = ge.forward_model()
    res = fake_scan_inference(n=4, grid=ge.grid)
    ref = np.asarray(ge.reference_params, float)[np.asarray(ge.active)]
    res.mean = ref[None] * (1 + 0.02 * np.arange(4))[:, None]
    res.names = list(ge.active_names)
    o = OrientationScatter(res, forward_model=fm, selected=2)
    assert o.widget.error == "" and o.widget.freqs.shape == (ge.grid.shape[0], 6)
    np.testing.assert_allclose(o.widget.freqs, fm.backend.to_numpy(fm.frequencies(res.mean[2][None]))[0], rtol=1e-5)
    assert o.widget.q_labels[0] == [0.0, "Γ"]


def test_planner_curve_and_next_angle():
    from types import SimpleNamespace

    res = fake_scan_inference(n=6)
    plan = SimpleNamespace(
        candidates_deg=np.arange(0, 180, 10.0),
        information=np.linspace(1, 3, 18),
        angles_deg=np.array([130.0, 20.0]),
        criterion="D",
    )
    sc = OrientationScatter(res, plan=plan)
    w = sc.widget
    np.testing.assert_array_equal(w.info_angles, np.arange(0, 180, 10.0).astype(np.float32))
    assert w.next_angle == 130.0 and w.info_units == "nats"
    assert sc.data["next_angle_deg"] == 130.0 and len(sc.data["information"]) == 18
    assert sc.to_png()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FcinvError):
        sc.set_plan(SimpleNamespace(candidates_deg=[0.0, 1.0], information=[np.nan, 1.0], angles_deg=[0.0]))
    assert w.next_angle == 130.0  # unchanged after the refusal
    with pytest.raises(FcinvError):
        sc.set_plan(object())
    sc.set_plan(None)
    assert w.info_angles is None and not np.isfinite(w.next_angle)


def test_bad_fc_and_out_of_range_selection_are_one_line_errors(setup):
    """Found by fuzzing (session 24): ``o.fc = 'abc'``/NaN/None were int() tracebacks and 1.5 was
    taken as 1; a scan index past the list from the browser an IndexError in the observer."""
    from fcinv_widgets.widgets.orientation import ScanSelectionError

    res, fm = setup
    o = OrientationScatter(res, forward_model=fm)
    for bad in ("abc", float("nan"), None, 1.5, [1]):
        with pytest.raises(ScanSelectionError, match="integer FC index"):
            o.fc = bad
    o.fc = 2
    assert o.fc == 2
    o.select(3)
    with pytest.raises(ScanSelectionError, match="scan index"):
        o.widget.set_state({"selected": 10**9})
    assert o.selected == 3


def _fields(res) -> dict:
    import dataclasses

    return {f.name: getattr(res, f.name) for f in dataclasses.fields(res)}


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("mse", np.ones(3), r"mse: expected shape 20"),
        ("std", np.ones((5, 8)), r"std: expected shape 20×8"),
        ("reference", np.ones(3), r"reference \(eV/Å²\): expected shape 8"),
        ("full_mean", np.ones(3), r"full_mean: expected shape 8"),
        ("coverage", np.ones(2), r"coverage .*expected shape 20"),
        ("coverage", np.full(20, 1.5), r"coverage .* must lie in \[0, 1\]"),
        ("angles_deg", np.full(20, np.nan), r"angles_deg \(degrees\): contains NaN"),
        ("angles_deg", np.array(["a"] * 20), r"angles_deg \(degrees\): (byte-)?string values"),
        ("names", "abcdefgh", r"names must be a list of FC names"),
    ],
)
def test_a_result_whose_fields_disagree_is_refused_naming_the_field(setup, tmp_path, field, value, match):
    """Session 49's probe: only mean/inputs/recon were checked; a short `mse` chose the "best" scan
    from 3 values, a short `reference` dropped its line, a JSON-string `names` became letters, and
    `to_png` then failed inside matplotlib. Now ScanInference checks every field (and so does a
    loaded `fcinv infer-scans --out` file, naming it)."""
    from fcinv_widgets.analysis.scan_inference import ScanInference

    res, fm = setup
    bad = _fields(res) | {field: value}
    with pytest.raises(FcinvError, match=match):
        ScanInference(**bad)
    from types import SimpleNamespace

    with pytest.raises(FcinvError, match=match):
        OrientationScatter(SimpleNamespace(**bad), forward_model=fm)
    res.save(tmp_path / "r.h5")
    import h5py

    if field != "names":
        with h5py.File(tmp_path / "r.h5", "a") as f:
            del f[field]
            f[field] = value.astype("S") if value.dtype.kind == "U" else value
        with pytest.raises(FcinvError, match="r.h5: a damaged scan-inference file"):
            ScanInference.load(tmp_path / "r.h5")


def test_no_made_up_energy_axis_and_a_saved_result_draws_its_grid(setup, tmp_path):
    """Without a grid the view labelled a 0–1 axis "E (meV)"; now energy bins are drawn as such, and a
    result that records its grid (`fcinv infer-scans --out` writes meta["grid_view"]) draws the true
    meV axis and q labels after loading."""
    from fcinv_widgets.analysis.scan_inference import ScanInference, grid_view

    res, fm = setup
    o = OrientationScatter(res)
    assert o.widget.energy_label == "E (bin)" and o.widget.energy_range == [0.0, 24.0]
    assert o.to_png()[:4] == b"\x89PNG"
    res.meta["grid_view"] = grid_view(fm.grid)
    res.save(tmp_path / "r.h5")
    o2 = OrientationScatter(ScanInference.load(tmp_path / "r.h5"))
    o3 = OrientationScatter(res, forward_model=fm)
    assert o2.widget.energy_label == "E (meV)"
    assert o2.widget.energy_range == o3.widget.energy_range and o2.widget.q_labels == o3.widget.q_labels
    with pytest.raises(FcinvError, match="q_labels must be"):
        OrientationScatter(res, q_labels=["G", "X"])


def test_a_plan_for_other_force_constants_or_an_angle_it_did_not_rank_is_refused(setup):
    from types import SimpleNamespace

    res, fm = setup
    sc = OrientationScatter(res, forward_model=fm)
    good = dict(candidates_deg=np.arange(0, 180, 10.0), information=np.linspace(1, 3, 18), angles_deg=[130.0], criterion="D")
    sc.set_plan(SimpleNamespace(**good, names=list(res.names)))
    with pytest.raises(FcinvError, match="the plan is for other force constants"):
        sc.set_plan(SimpleNamespace(**good, names=["FC0 (1NN Cu-Pt zz)"] + list(res.names)[1:]))
    with pytest.raises(FcinvError, match="next angle 500° is not one of its candidate angles"):
        sc.set_plan(SimpleNamespace(**(good | {"angles_deg": [500.0]})))
    assert sc.widget.next_angle == 130.0
