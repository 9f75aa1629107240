import dataclasses

import numpy as np
import pytest

from fcinv_testing.fakes import fake_noise_grid
from fcinv_widgets.analysis import noise_grid as analysis_noise_grid
from fcinv_widgets.errors import FcinvError, GridMismatchError
from fcinv_widgets.widgets import NoiseGridExplorer, NoiseGridResult


def test_one_noise_grid_result_class():
    """The widgets re-export the analysis object; they define no result type of their own."""
    import fcinv_widgets.widgets.noise_grid as widget_module

    assert NoiseGridResult is analysis_noise_grid.NoiseGridResult
    assert [n for n, v in vars(widget_module).items() if isinstance(v, type) and v.__module__ == widget_module.__name__] == [
        "NoiseGridView",
        "NoiseGridExplorer",
    ]


def test_grid_follows_model_and_fc():
    res = fake_noise_grid()
    ng = NoiseGridExplorer(res)
    np.testing.assert_allclose(ng.widget.r2_grid, res["VAE"].r2[:, :, 0])
    ng.widget.fc = 3
    ng.widget.model = "ResNet"
    np.testing.assert_allclose(ng.widget.r2_grid, res["ResNet"].r2[:, :, 3])
    assert ng.widget.get_state()["r2_grid"]["dtype"] == "float32"


def test_click_cell_shows_example_and_per_fc_r2():
    res = fake_noise_grid()
    ng = NoiseGridExplorer(res)
    ng.widget.set_state({"selected": 7})  # what a click sends
    assert ng.selected == (1, 2)
    np.testing.assert_array_equal(ng.widget.noisy, res["VAE"].examples[1, 2])
    assert ng.widget.snr == pytest.approx(res["VAE"].example_snr[1, 2])
    np.testing.assert_allclose(ng.widget.cell_r2, res["VAE"].r2[1, 2])


def test_bad_values_raise_and_keep_state():
    ng = NoiseGridExplorer(fake_noise_grid())
    ng.select(0, 0)
    with pytest.raises(FcinvError, match="outside the 5x5 grid"):
        ng.select(5, 0)
    with pytest.raises(FcinvError, match="model must be one of"):
        ng.widget.model = "GPT"
    with pytest.raises(FcinvError, match="fc must be an index"):
        ng.widget.fc = 9
    assert ng.selected == (0, 0) and ng.widget.model == "VAE"


def test_result_shape_checked():
    r = fake_noise_grid()["VAE"]
    with pytest.raises(GridMismatchError, match="r2 must have shape"):
        dataclasses.replace(r, r2=r.r2[:3])
    with pytest.raises(GridMismatchError, match="examples must have shape"):
        dataclasses.replace(r, examples=r.examples[:, :, :-1])
    with pytest.raises(GridMismatchError, match="example_snr must have shape"):
        dataclasses.replace(r, example_snr=r.example_snr[:, :2])
    with pytest.raises(GridMismatchError, match="cov1 and cov2"):
        dataclasses.replace(r, cov1=np.zeros_like(r.r2))


def test_takes_a_result_a_list_a_dict_or_a_saved_file(tmp_path):
    res = fake_noise_grid()
    vae, resnet = res["VAE"], res["ResNet"]
    one = NoiseGridExplorer(vae)
    assert one.widget.models == ["VAE"]
    listed = NoiseGridExplorer([vae, resnet])  # names from each result's `model`
    assert listed.widget.models == ["VAE", "ResNet"]
    named = NoiseGridExplorer({"mine": resnet, "theirs": vae})
    assert named.widget.models == ["mine", "theirs"]
    np.testing.assert_allclose(named.widget.r2_grid, resnet.r2[:, :, 0])
    # the one persistence format: NoiseGridResult.save, read back by the explorer
    vae.save(tmp_path / "vae.h5")
    resnet.save(tmp_path / "resnet.h5")
    loaded = NoiseGridExplorer([tmp_path / "vae.h5", str(tmp_path / "resnet.h5")])
    assert loaded.widget.models == ["VAE", "ResNet"]
    loaded.widget.model = "ResNet"
    loaded.widget.fc = 5
    np.testing.assert_allclose(loaded.widget.r2_grid, resnet.r2[:, :, 5])
    np.testing.assert_array_equal(loaded.data["r2"], np.stack([vae.r2, resnet.r2]))


def test_inconsistent_collections_refused():
    res = fake_noise_grid()
    vae, resnet = res["VAE"], res["ResNet"]
    with pytest.raises(FcinvError, match="named 'VAE'"):
        NoiseGridExplorer([vae, vae])
    other = dataclasses.replace(resnet, counts=resnet.counts * 2)
    with pytest.raises(GridMismatchError, match="one grid per explorer"):
        NoiseGridExplorer({"VAE": vae, "ResNet": other})
    with pytest.raises(FcinvError, match="NoiseGridResult"):
        NoiseGridExplorer({"VAE": vae.r2})
    with pytest.raises(FcinvError, match="empty"):
        NoiseGridExplorer([])
    # session 49's probe: NaN backgrounds were reported as "other B levels … than 'VAE'" — itself
    nan_b = dataclasses.replace(vae, backgrounds=np.array([0.0, np.nan, 0.1, 0.2, 0.4]))
    with pytest.raises(FcinvError, match=r"'VAE': its B levels must be finite numbers, got \[0.0, nan"):
        NoiseGridExplorer(nan_b)


def test_an_out_of_range_click_is_refused_and_rolled_back():
    """Found by fuzzing (session 24): a cell index past the grid from the browser was an IndexError
    in the observer (traitlets notifies before it rolls a refused value back)."""
    ng = NoiseGridExplorer(fake_noise_grid())
    ng.select(1, 2)
    with pytest.raises(FcinvError, match="cell index"):
        ng.widget.set_state({"selected": 10**9})
    assert ng.selected == (1, 2)
