"""Readers for folded experimental spectra."""

import h5py
import numpy as np
import pytest

from fcinv_widgets.analysis.expio import read_spectrum, write_pathsqe_npz
from fcinv_widgets.errors import FcinvError, GridMismatchError


@pytest.fixture(scope="module")
def image(ge_fm):
    img = ge_fm.spectra(ge_fm.reference_theta)[0].astype(float)
    img[:, 90:] = np.nan  # not measured above 45 meV
    return img


def test_pathsqe_npz_round_trip(tmp_path, ge, image):
    p = tmp_path / "folded.npz"
    write_pathsqe_npz(p, image, ge.grid)
    assert len(np.load(p).files) == 6
    s = read_spectrum(p, ge.grid)
    assert s.fmt == "pathSQE-npz" and np.array_equal(s.image, image, equal_nan=True)
    assert s.coverage == pytest.approx(90 / 140)


def test_pathsqe_npz_wrong_segments(tmp_path, ge, image):
    p = tmp_path / "bad.npz"
    np.savez(p, image[:40], image[40:60], image[60:])
    with pytest.raises(GridMismatchError, match="Γ–X 40"):
        read_spectrum(p, ge.grid)


def _write_mdhisto(path, image, e_edges, q_first_in_memory=True):
    """A small MDHisto-like NeXus file: 4-D signal stored in reverse dimension order."""
    nq, ne = image.shape
    # dimensions D0 = path coordinate (nq), D1, D2 = integrated (1 bin), D3 = DeltaE (ne)
    sig = image.T[:, None, None, :]  # shape (D3, D2, D1, D0) = (ne, 1, 1, nq)
    with h5py.File(path, "w") as f:
        d = f.create_group("MDHistoWorkspace").create_group("data")
        ds = d.create_dataset("signal", data=sig)
        ds.attrs["axes"] = "D3:D2:D1:D0"
        d.create_dataset("errors_squared", data=np.abs(np.nan_to_num(sig)))
        d.create_dataset("D0", data=np.linspace(0, 1, nq + 1)).attrs["long_name"] = "[xi,0,0]"
        d.create_dataset("D1", data=np.array([-0.05, 0.05])).attrs["long_name"] = "[0,xi,0]"
        d.create_dataset("D2", data=np.array([-0.05, 0.05])).attrs["long_name"] = "[0,0,xi]"
        e = d.create_dataset("D3", data=e_edges)
        e.attrs["long_name"] = "DeltaE"
        e.attrs["units"] = "meV"


def test_mantid_mdhisto(tmp_path, ge, image):
    p = tmp_path / "folded.nxs"
    _write_mdhisto(p, image, ge.grid.e.edges)
    s = read_spectrum(p, ge.grid)
    assert s.fmt == "mantid-mdhisto" and np.array_equal(s.image, image, equal_nan=True)
    p2 = tmp_path / "shifted.nxs"
    _write_mdhisto(p2, image, ge.grid.e.edges + 1.0)
    with pytest.raises(GridMismatchError, match="energy bins"):
        read_spectrum(p2, ge.grid)


def test_our_formats_and_errors(tmp_path, ge, image):
    from fcinv_widgets.spectrum_io import write_spectrum

    write_spectrum(tmp_path / "s.h5", image, ge.grid, material="Ge")
    assert np.array_equal(read_spectrum(tmp_path / "s.h5", ge.grid).image, image, equal_nan=True)
    np.save(tmp_path / "s.npy", image[:, :100])
    with pytest.raises(GridMismatchError, match="140 × 140"):
        read_spectrum(tmp_path / "s.npy", ge.grid)
    np.save(tmp_path / "nan.npy", np.full((140, 140), np.nan))
    with pytest.raises(FcinvError, match="all NaN"):
        read_spectrum(tmp_path / "nan.npy", ge.grid)
    with pytest.raises(FcinvError, match="not found"):
        read_spectrum(tmp_path / "missing.h5")
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(FcinvError, match="unknown spectrum format"):
        read_spectrum(tmp_path / "x.txt")
