import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """64 training + 16 test Ge spectra made by the forward model (a few seconds)."""
    from fcinv_widgets.dataset import generate_dataset

    p = tmp_path_factory.mktemp("m") / "tiny.h5"
    generate_dataset("Ge", p, n_train=64, n_test=16, seed=1, candidates=512, progress=False)
    return p
