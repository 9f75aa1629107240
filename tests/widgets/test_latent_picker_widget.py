import numpy as np
import pytest

from fcinv_widgets.analysis.latent import LatentMap
from fcinv_widgets.errors import FcinvError, GridMismatchError
from fcinv_widgets.widgets import LatentPicker, LatentSelectionError
from fcinv_testing.fakes import FakeDecoder, fake_latent_map


@pytest.fixture
def lmap():
    return fake_latent_map(n=120, latent=6)


def test_construction_and_colour_by_fc(lmap):
    lp = LatentPicker(lmap)
    st = lp.widget.get_state()
    assert st["xy"]["dtype"] == "float32" and st["xy"]["shape"] == [120, 2]
    assert isinstance(st["xy"]["buffer"], memoryview)
    np.testing.assert_allclose(lp.widget.color, lmap.params[:, 0], rtol=1e-6)
    lp.widget.fc = 3
    np.testing.assert_allclose(lp.widget.color, lmap.params[:, 3], rtol=1e-6)
    assert lp.widget.color_range == pytest.approx([lmap.params[:, 3].min(), lmap.params[:, 3].max()])
    assert not lp.widget.can_decode and lp.selected == []


def test_selection_readable_settable_and_validated(lmap):
    lp = LatentPicker(lmap)
    lp.widget.set_state({"selected": [7, 3, 3, 50]})  # what a lasso sends
    assert lp.selected == [3, 7, 50]
    np.testing.assert_array_equal(lp.selected_params, lmap.params[[3, 7, 50]])
    np.testing.assert_array_equal(lp.selected_mu, lmap.mu[[3, 7, 50]])
    lp.selected = np.array([1, 2])
    assert lp.widget.selected == [1, 2]
    with pytest.raises(LatentSelectionError, match=r"index 120 is outside the map's 120 points"):
        lp.selected = [5, 120]
    with pytest.raises(LatentSelectionError, match="integer point indices"):
        lp.selected = [1.5]
    with pytest.raises(FcinvError, match="tool must be one of"):
        lp.tool = "magic"
    with pytest.raises(FcinvError, match="fc must be an index"):
        lp.widget.fc = 8
    assert lp.selected == [1, 2] and lp.tool == "select" and lp.widget.fc == 0  # still usable
    lp.select([4])
    assert lp.selected == [4]
    lp.selected = None
    assert lp.selected == []


def test_ray_decodes_strip_between_points(lmap):
    dec = FakeDecoder(nq=16, ne=12, latent=6)
    lp = LatentPicker(lmap, dec, ray_n=5)
    assert lp.widget.can_decode
    frame = lp.widget.strip_frame
    lp.widget.set_state({"ray": [2, 9]})  # what two ray clicks send
    assert lp.widget.strip_frame == frame + 1 and lp.widget.error == ""
    assert lp.widget.strip.shape == (5, 16, 12) and lp.widget.get_state()["strip"]["dtype"] == "float32"
    np.testing.assert_allclose(lp.ray_z[0], lmap.mu[2])
    np.testing.assert_allclose(lp.ray_z[-1], lmap.mu[9])
    np.testing.assert_allclose(lp.ray_z[2], 0.5 * (lmap.mu[2] + lmap.mu[9]))
    np.testing.assert_allclose(lp.widget.strip[0], dec.decode(lmap.mu[2])[0], rtol=1e-6)
    np.testing.assert_allclose(lp.widget.ray_xy, lmap.embedding[[2, 9]], rtol=1e-6)
    # positions on the map work too, and ray_n changes the strip length
    strip = lp.set_ray([0.0, 0.0], 9, n=3)
    assert strip.shape == (3, 16, 12)
    np.testing.assert_allclose(lp.widget.ray_xy[0], [0, 0], atol=1e-7)
    lp.clear_ray()
    assert lp.ray_spectra is None and lp.ray_z is None


def test_bad_ray_keeps_previous(lmap):
    lp = LatentPicker(lmap, decoder=FakeDecoder(latent=6))
    lp.set_ray(1, 2)
    for bad, msg in [([1], "two end points"), ([1, 500], "outside the map"), ([1, [np.nan, 0]], r"\[x, y\]")]:
        with pytest.raises(LatentSelectionError, match=msg):
            lp.widget.ray = bad
    assert lp.widget.ray == [1, 2] and lp.ray_spectra is not None
    with pytest.raises(LatentSelectionError, match="ray_n"):
        lp.widget.ray_n = 1


def test_ray_without_decoder_or_failing_decoder(lmap):
    lp = LatentPicker(lmap)
    with pytest.raises(FcinvError, match="needs a decoder"):
        lp.set_ray(1, 2)
    assert lp.widget.ray_xy is not None and lp.ray_spectra is None  # end points still drawn

    class Bad:
        def decode(self, z):
            raise RuntimeError("latent size mismatch")

    lp = LatentPicker(lmap, decoder=Bad())
    lp.widget.set_state({"ray": [1, 2]})  # from the browser: no exception, the error is shown
    assert "latent size mismatch" in lp.widget.error
    lp.widget.set_state({"selected": [3]})
    assert lp.selected == [3]


def test_overlays_xy_latent_spectra(lmap):
    dec = FakeDecoder(nq=16, ne=12, latent=6)
    lp = LatentPicker(lmap, dec)
    lp.add_points("experiment", [[0.5, 0.5]])
    xy = lp.add_points("scans", lmap.mu[:4])  # latent means -> LatentMap.place
    np.testing.assert_allclose(xy, lmap.place(lmap.mu[:4]))
    sp = dec.decode(lmap.mu[:3])
    xy = lp.add_points("noisy", sp)  # spectra -> encode -> place
    assert xy.shape == (3, 2)
    assert lp.widget.overlay_names == ["experiment", "scans", "noisy"]
    assert lp.widget.overlay_xy.shape == (8, 2)
    np.testing.assert_array_equal(lp.widget.overlay_group, [0, 1, 1, 1, 1, 2, 2, 2])
    lp.add_points("experiment", dec.decode(lmap.mu[5])[0])  # one (nq, nE) spectrum replaces
    assert lp.widget.overlay_xy.shape == (8, 2)
    lp.remove_points("scans")
    assert lp.widget.overlay_names == ["experiment", "noisy"] and len(lp.widget.overlay_group) == 4
    with pytest.raises(LatentSelectionError, match="no overlay named"):
        lp.remove_points("nope")
    with pytest.raises(FcinvError, match="needs the VAE"):
        LatentPicker(lmap).add_points("x", sp)
    with pytest.raises(GridMismatchError, match="overlay data"):
        lp.add_points("x", np.zeros((2, 2, 2, 2)))
    # found by fuzzing (session 23): a ValueError / TraitError instead of the widget's own errors
    with pytest.raises(FcinvError, match="overlay data: string values"):
        lp.add_points("x", "abc")
    for name in ("", None, 3):
        with pytest.raises(LatentSelectionError, match="needs a name"):
            lp.add_points(name, [[0.5, 0.5]])
    for tool in (None, 3):
        with pytest.raises(LatentSelectionError, match="tool must be one of"):
            lp.tool = tool


def test_saved_map_round_trip(lmap, tmp_path):
    lmap.save(tmp_path)
    lp = LatentPicker(LatentMap.load(tmp_path), decoder=FakeDecoder(latent=6))
    np.testing.assert_allclose(lp.widget.xy, lmap.embedding, rtol=1e-6)
    assert lp.set_ray(0, 1).shape[0] == 8


def test_set_ray_decodes_once(lmap):
    dec = FakeDecoder(latent=6)
    lp = LatentPicker(lmap, decoder=dec)
    lp.set_ray(1, 2)
    assert dec.calls == 1
    assert lp.set_ray(3, 4, n=5).shape[0] == 5 and dec.calls == 2  # new n and ends: one decode
    assert lp.set_ray(3, 4, n=6).shape[0] == 6 and dec.calls == 3  # same ends, new n
    lp.widget.set_state({"ray_n": 4})  # from the browser: re-decodes the current ray
    assert lp.ray_spectra.shape[0] == 4 and dec.calls == 4


def test_browser_messages_with_a_bool_index_or_a_far_ray_end_are_refused_and_rolled_back(lmap):
    """Found by fuzzing (session 24): ``fc = True`` passed the Int trait (bool is an int) and broke
    the colour observer, leaving fc True; a ray end at 1e300 on the map overflowed in the decoder's
    placement, one at 1e6 was decoded far outside anything the VAE saw."""
    import traitlets

    from fcinv_widgets.widgets.latent_picker import LatentSelectionError

    lp = LatentPicker(lmap, decoder=FakeDecoder())
    with pytest.raises(traitlets.TraitError, match="must be an integer"):
        lp.widget.set_state({"fc": True})
    assert lp.widget.fc == 0 and type(lp.widget.fc) is int
    for far in ([1e300, 1e300], [1e6, 0.0]):
        with pytest.raises(LatentSelectionError, match="far outside the map"):
            lp.widget.set_state({"ray": [0, far]})
        assert lp.widget.ray == []
    lo, hi = lmap.embedding.min(0), lmap.embedding.max(0)
    lp.widget.set_state({"ray": [0, [float(hi[0] + 0.5 * (hi[0] - lo[0])), float(lo[1])]]})  # just past the edge: fine
    assert len(lp.widget.ray) == 2


def test_map_names_must_match_its_fc_columns_and_equal_browser_values_are_still_typed():
    """Session 49's probe: a map with 10 names for 8 FC columns was accepted (the dropdown's 9th name
    raised IndexError inside an observer; 3 names silently hid 5 FCs), and a browser value equal to
    the current one ([1.0] for [1]) skipped the validators, so later steps raised IndexError."""
    import dataclasses

    import traitlets

    from fcinv_widgets.errors import FcinvError

    m = fake_latent_map(n=60, latent=6)
    for names in (list(m.names) + ["x", "y"], list(m.names)[:3], "abcdefgh"):
        with pytest.raises(FcinvError, match="FC columns but|names must be a list"):
            LatentPicker(dataclasses.replace(m, names=names), decoder=FakeDecoder())
    with pytest.raises(FcinvError, match=r"params \(eV/Å²\): contains ±inf"):
        bad = np.asarray(m.params, float).copy()
        bad[0, 0] = np.inf
        LatentPicker(dataclasses.replace(m, params=bad), decoder=FakeDecoder())
    lp = LatentPicker(m, decoder=FakeDecoder())
    lp.selected = [1]
    with pytest.raises(traitlets.TraitError):
        lp.widget.set_state({"selected": [1.0]})
    assert lp.widget.selected == [1] and all(type(i) is int for i in lp.widget.selected)
    lp.widget.ray = [1, 2]
    with pytest.raises(traitlets.TraitError):
        lp.widget.set_state({"ray": [1.0, 2.0]})
    lp.widget.ray_n = 10
    assert lp.to_png()[:4] == b"\x89PNG" and len(lp.to_dataframe()) >= 1
