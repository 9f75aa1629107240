import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """64 training + 16 test Ge spectra made by the forward model (a few seconds)."""
    from fcinv_widgets.dataset import generate_dataset

    p = tmp_path_factory.mktemp("m") / "tiny.h5"
    generate_dataset("Ge", p, n_train=64, n_test=16, seed=1, candidates=512, progress=False)
    return p


@pytest.fixture(scope="session")
def trained(tiny_dataset, tmp_path_factory):
    """A VAE + regressor trained for 2 epochs on the tiny dataset: (folder, summary)."""
    from fcinv_widgets.models import train_vae

    out = tmp_path_factory.mktemp("model")
    r = train_vae(tiny_dataset, out, epochs=2, batch_size=16, reg_epochs=5, progress=False, threads=2)
    return out, r


@pytest.fixture(scope="session")
def ge_pair():
    """Ge's one-phonon S(Q,E) at its reference on its path (|Q| ≤ 4 Å⁻¹, Ei 80 meV, 5 K), a flat
    background of 5 % and 1000 counts at its 99.5th percentile: (as measured, corrected as
    ``prepare_input`` does)."""
    from fcinv_widgets import get_material
    from fcinv_widgets.analysis.expio import to_model_intensity
    from fcinv_widgets.noise import add_noise
    from fcinv_widgets.sqe import SQE, fold_full, fold_points

    ge = get_material("Ge")
    calc = SQE(ge.basis, np.asarray(ge.reference_params, float), temperature=5.0)
    img = fold_full(fold_points(calc, ge.grid, 4.0, ge.conventional_a), ge.grid, sigma_mev=1.0, ei_mev=80.0)[0]
    noisy, _ = add_noise(img, 0.05, 1000.0, seed=2, peak_percentile=99.5)
    return noisy, to_model_intensity(noisy, ge.grid, 5.0, 99.5)


@pytest.fixture(scope="session")
def ge_input(ge_pair):
    """The corrected input (what the OOD check sees)."""
    return ge_pair[1]
