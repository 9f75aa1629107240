import numpy as np
import pytest

from fcinv_widgets.errors import FcinvError, GridMismatchError
from fcinv_widgets.widgets import NoiseGridExplorer, NoiseGridResult
from fcinv_testing.fakes import fake_noise_grid


def test_grid_follows_model_and_fc():
    res = fake_noise_grid()
    ng = NoiseGridExplorer(res)
    np.testing.assert_allclose(ng.widget.r2_grid, res.r2[0, :, :, 0])
    ng.widget.fc = 3
    ng.widget.model = "ResNet"
    np.testing.assert_allclose(ng.widget.r2_grid, res.r2[1, :, :, 3])
    assert ng.widget.get_state()["r2_grid"]["dtype"] == "float32"


def test_click_cell_shows_example_and_per_fc_r2():
    res = fake_noise_grid()
    ng = NoiseGridExplorer(res)
    ng.widget.set_state({"selected": 7})  # what a click sends
    assert ng.selected == (1, 2)
    np.testing.assert_array_equal(ng.widget.noisy, res.example_noisy[1, 2])
    assert ng.widget.snr == pytest.approx(res.snr[1, 2])
    np.testing.assert_allclose(ng.widget.cell_r2, res.r2[0, 1, 2])


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
    res = fake_noise_grid()
    with pytest.raises(GridMismatchError, match="r2 must have shape"):
        NoiseGridResult(
            res.b_levels, res.p_levels, res.fc_names, res.models, res.r2[:, :3], res.example_noisy, res.example_clean, res.snr
        )


def test_from_stage3_results():
    from fcinv_widgets.analysis.noise_grid import NoiseGridResult as Stage3

    res = fake_noise_grid()

    def stage3(k):
        return Stage3(
            names=list(res.fc_names),
            backgrounds=res.b_levels,
            counts=res.p_levels,
            r2=res.r2[k],
            mae=np.zeros_like(res.r2[k]),
            snr=res.snr,
            example_clean=res.example_clean,
            examples=res.example_noisy,
            example_snr=res.snr,
            model=res.models[k],
        )

    ng = NoiseGridExplorer({"VAE": stage3(0), "ResNet": stage3(1)})
    assert ng.widget.models == ["VAE", "ResNet"]
    ng.widget.model = "ResNet"
    np.testing.assert_allclose(ng.widget.r2_grid, res.r2[1, :, :, 0])
    ng2 = NoiseGridExplorer(stage3(0))
    assert ng2.widget.models == ["VAE"]
