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
