"""The dataset sampler: a cheap stability screen before the full check, over a domain that is mostly stable."""

import numpy as np
import pytest


@pytest.mark.parametrize("name", ["Ge", "Nb"])
def test_screen_rejects_only_unstable_sets_and_most_of_them(name):
    from fcinv_widgets.dataset import screen
    from fcinv_widgets.materials import get_material

    mat = get_material(name)
    fm = mat.forward_model()
    dom = mat.domain
    th = np.random.default_rng(5).uniform(dom[:, 0], dom[:, 1], size=(3000, 8))
    sc = screen(name, dom)
    ok = sc.passes(th)
    stable = fm.is_stable(th)
    assert not np.any(stable & ~ok)  # never rejects a stable set: datasets are unchanged by it
    assert (~ok).sum() >= 0.9 * (~stable).sum()  # and catches ≥ 90 % of the unstable ones
    assert len(sc.q) <= 12
    # the default domain is mostly stable (it was ~4 % under the signed widening)
    assert stable.mean() > 0.3


def test_draw_chunk_equals_unscreened_rejection():
    from fcinv_widgets import dataset
    from fcinv_widgets.materials import get_material

    mat = get_material("Ge")
    fm = mat.forward_model()
    dom = mat.domain
    params, spectra, extra = dataset.draw_chunk("Ge", 0, 3, 11, 256, dom, 1.0)
    assert extra is None  # no nuisance: the inactive FCs stay at the reference
    theta = np.random.default_rng([11, 0, 3]).uniform(dom[:, 0], dom[:, 1], size=(256, 8))
    plain = theta[fm.is_stable(theta)]
    assert np.array_equal(params, plain)
    assert np.array_equal(spectra, fm.spectra(plain))
