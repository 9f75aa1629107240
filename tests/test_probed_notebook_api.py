"""What a student tried next in the tutorial notebooks (session 50's probe, fixed in session 51):
each was an AttributeError/TypeError, or ran silently on an input that cannot mean what was asked."""

import warnings

import numpy as np
import pytest

from fcinv_widgets.errors import FcinvError, FcinvWarning


def _bank(ge, n=3):
    from fcinv_widgets.analysis.planner import CoverageBank

    masks = np.ones((n, *ge.grid.shape), np.float32)
    return CoverageBank("Ge", 80.0, np.arange(n) * 10.0, masks)


def test_a_resnet_has_no_latent_space_and_says_so(ge):
    from fcinv_widgets.models import load_model

    x = ge.forward_model().spectra(ge.reference_theta[None])
    with pytest.raises(FcinvError, match="no latent space.*VAE"):
        load_model("ge-resnet").encode(x)


def test_switching_the_notebooks_to_nb_names_the_missing_first_principles_set():
    """Notebooks 05/07 read `get_material(ge.name, "dft")`: for Nb one line (a TypeError on
    `nb.dft_params[...]` before)."""
    from fcinv_widgets import get_material

    with pytest.raises(FcinvError, match="no first-principles force constants ship for Nb"):
        get_material("Nb", "dft")
    ge = get_material("Ge")
    assert np.array_equal(get_material(ge.name, "dft").reference_params, ge.dft_params)


def test_simulate_union_refuses_no_scans_and_a_wrong_image(ge):
    from fcinv_widgets.analysis.planner import simulate_union

    bank = _bank(ge)
    clean = ge.forward_model().spectra(ge.reference_theta[None])[0]
    assert np.isfinite(simulate_union(clean, bank, [0, 2], rng=1)).all()
    with pytest.raises(FcinvError, match="measured_idx is empty"):
        simulate_union(clean, bank, [])  # an all-NaN image before
    with pytest.raises(FcinvError, match="from 0 to 2"):
        simulate_union(clean, bank, [3])
    with pytest.raises(FcinvError, match="pixels"):
        simulate_union(clean[:, :-1], bank, [0])


def test_refine_from_a_start_outside_the_domain_warns(ge):
    from fcinv_widgets.analysis.refine import refine

    fm = ge.forward_model()
    img = fm.spectra(ge.reference_theta[None])[0]
    with pytest.warns(FcinvWarning, match=r"outside the domain in \d+ FC\(s\) \(FC0: "):
        refine(fm, img, start=3 * ge.reference_theta, domain=ge.domain, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FcinvWarning)
        refine(fm, img, start=ge.reference_theta, domain=ge.domain, max_iter=1)


def test_a_scan_angle_given_with_a_model_image_is_said_to_do_nothing(ge):
    from fcinv_widgets.models import load_model

    img = ge.forward_model().spectra(ge.reference_theta[None])[0]
    vae = load_model("ge-vae")
    with pytest.warns(FcinvWarning, match="scan_deg=30: this input is a model image"):
        out = vae.invert(img, scan_deg=30, n_samples=4, ood=False)
    assert out["fc_source"] == "network"
