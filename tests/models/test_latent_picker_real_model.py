"""LatentPicker with a real (tiny, 2-epoch) VAE: encode places spectra, decode draws the ray."""

import numpy as np

from fcinv_widgets.analysis.latent import LatentMap
from fcinv_widgets.widgets import LatentPicker


def test_latent_picker_with_trained_vae(trained, tiny_dataset):
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.train import load_split

    model_dir, _ = trained
    model = load_model(model_dir)
    x, y, _ = load_split(tiny_dataset, "test")
    mu, _ = model.encode(x)
    lmap = LatentMap(mu[:, :2].copy(), mu, np.asarray(y, float)[:, : len(model.names)], list(model.names))
    lp = LatentPicker(lmap, model, ray_n=4)
    strip = lp.set_ray(0, 5)
    assert strip.shape == (4,) + x.shape[1:] and strip.dtype == np.float32
    assert lp.widget.error == "" and np.all((strip >= 0) & (strip <= 1))
    xy = lp.add_points("experiment", x[3])
    np.testing.assert_allclose(xy, lmap.embedding[3:4], atol=1e-3)  # kNN placement of a map spectrum
    lp.selected = [1, 2]
    assert lp.selected_params.shape == (2, len(model.names))
