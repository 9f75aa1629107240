import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GE_DFT = SHARED / "reference" / "ge-dft"


@pytest.fixture(scope="session")
def ge():
    from fcinv_widgets.materials import get_material

    return get_material("Ge")


@pytest.fixture(scope="session")
def nb():
    from fcinv_widgets.materials import get_material

    return get_material("Nb")


@pytest.fixture(scope="session")
def ge_fm(ge):
    return ge.forward_model()


@pytest.fixture(scope="session")
def ge_dft_files():
    """The DFT reference shipped in the package (a copy of shared/reference/ge-dft)."""
    from fcinv_widgets.materials import data_path

    return data_path("ge", "POSCAR"), data_path("ge", "FORCE_CONSTANTS_DFT")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
