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


@pytest.mark.parametrize(
    "edges, error",
    [
        (lambda e: e[:-5], "has 136 values for 140 bins"),  # wrong length: was dropped, and the energy check with it
        (lambda e: 0.5 * (e[1:] + e[:-1]), None),  # centres, not edges: read
        (lambda e: e[::-1], "not strictly increasing"),
        (lambda e: np.where(np.arange(e.size) == 3, np.nan, e), "non-finite"),
    ],
)
def test_mantid_energy_axis_of_the_wrong_length_or_order_is_refused(tmp_path, ge, image, edges, error):
    """Session 46: an energy axis with neither n + 1 edges nor n centres was ignored, so the file's
    energy bins went unchecked against the model's grid."""
    p = tmp_path / "e.nxs"
    _write_mdhisto(p, image, edges(ge.grid.e.edges))
    if error is None:
        s = read_spectrum(p, ge.grid)
        assert np.allclose(s.energies, ge.grid.e.centers)
    else:
        with pytest.raises(FcinvError, match=error):
            read_spectrum(p, ge.grid)


@pytest.mark.parametrize(
    "units, scale, refused",
    [
        ("Angstrom^-1", 1.0, False),  # the model's crystal: its path length
        ("Angstrom^-1", 1.03, False),  # 3 % strain or thermal expansion: the same crystal
        ("Angstrom^-1", 1.56, True),  # Cu's fcc path (a = 3.61 Å vs Ge's 5.65 Å)
        ("MomentumTransfer", 0.8, True),
        ("in 1.113 A^-1", 1.56, False),  # a reciprocal-lattice coordinate: its length is not compared
        (None, 1.56, False),  # no units: nothing to compare
    ],
)
def test_mantid_q_axis_in_inverse_angstrom_is_checked_against_the_crystal(tmp_path, ge, image, units, scale, refused):
    """Session 25: a Mantid file whose path coordinate is in Å⁻¹ is held to the model's crystal like an
    fcinv file's /grid/q_distance — another lattice's path on the same reduced grid was inverted before."""
    import h5py

    p = tmp_path / "q.nxs"
    _write_mdhisto(p, image, ge.grid.e.edges)
    d = ge.grid.q.distance
    step = np.diff(d).mean()
    edges = np.concatenate([[d[0] - step / 2], 0.5 * (d[1:] + d[:-1]), [d[-1] + step / 2]]) * scale
    with h5py.File(p, "r+") as f:
        del f["MDHistoWorkspace/data/D0"]
        q = f["MDHistoWorkspace/data"].create_dataset("D0", data=edges)
        q.attrs["long_name"] = "path"
        if units:
            q.attrs["units"] = units
    if refused:
        with pytest.raises(GridMismatchError, match="another crystal"):
            read_spectrum(p, ge.grid)
    else:
        s = read_spectrum(p, ge.grid)
        assert np.array_equal(s.image, image, equal_nan=True)
        assert (s.q_distance is not None) == (units == "Angstrom^-1")


def test_mantid_square_signal_without_energy_units_is_oriented_by_q_or_refused(tmp_path, ge, image):
    """Session 23 read a square signal whose axes say nothing about energy as (q, E) in the order the
    file lists them, with a warning — transposed for Mantid's own order (D0 the path, D3 DeltaE), and
    inverted with exit 0 (session 49's probe: FC0 −3.88 for −3.01). Now a recognisable q axis
    ("[xi,0,0]") orients it, and with no marking at all it is refused."""
    import h5py

    p = tmp_path / "bare.nxs"
    _write_mdhisto(p, image, ge.grid.e.edges)
    with h5py.File(p, "r+") as f:
        for k in ("long_name", "units"):
            del f["MDHistoWorkspace/data/D3"].attrs[k]
    s = read_spectrum(p, ge.grid)
    assert np.array_equal(s.image, image, equal_nan=True)
    with h5py.File(p, "r+") as f:
        del f["MDHistoWorkspace/data/D0"].attrs["long_name"]
    with pytest.raises(FcinvError, match="q cannot be told from E"):
        read_spectrum(p, ge.grid)


@pytest.mark.parametrize("units, scale", [("THz", 1 / 4.135667696), ("cm-1", 1 / 0.1239841984), ("meV", 1.0)])
def test_mantid_energy_axis_in_thz_or_wavenumbers_is_converted(tmp_path, ge, image, units, scale):
    """A THz energy axis was read as meV where no preset grid was there to compare with (refine
    --structure: FC0 −1.22 for −2.95); the axis units are now converted, an unknown unit refused."""
    import h5py

    p = tmp_path / "e.nxs"
    _write_mdhisto(p, image, ge.grid.e.edges * scale)
    with h5py.File(p, "r+") as f:
        f["MDHistoWorkspace/data/D3"].attrs["units"] = units
    s = read_spectrum(p, ge.grid)
    np.testing.assert_allclose(s.energies, ge.grid.e.centers, rtol=1e-6, atol=1e-9)
    with h5py.File(p, "r+") as f:
        f["MDHistoWorkspace/data/D3"].attrs["units"] = "furlongs"
    with pytest.raises(FcinvError, match="has units 'furlongs'"):
        read_spectrum(p, ge.grid)


def test_mantid_unmeasured_bins_from_num_events_and_mask(tmp_path, ge, image):
    """BinMD leaves bins no event reached at signal 0 with num_events 0, and SaveMD writes a mask:
    both were read as measured data (coverage 1.0 for 0.83). Now they are NaN, and the record says so."""
    import h5py

    full = np.nan_to_num(image, nan=0.0) + 1e-3
    p = tmp_path / "ne.nxs"
    _write_mdhisto(p, full, ge.grid.e.edges)
    nq, ne = full.shape
    hole = np.zeros((nq, ne), bool)
    hole[:20, 30:] = True
    masked = np.zeros((nq, ne), bool)
    masked[50:60, :10] = True
    with h5py.File(p, "r+") as f:
        d = f["MDHistoWorkspace/data"]
        sig = d["signal"][()]
        sig[hole.T[:, None, None, :]] = 0.0
        sig[masked.T[:, None, None, :]] = 1e3
        d["signal"][...] = sig
        d.create_dataset("num_events", data=np.where(hole.T, 0, 7)[:, None, None, :].astype(float))
        d.create_dataset("mask", data=masked.T[:, None, None, :].astype(np.int8))
    s = read_spectrum(p, ge.grid)
    assert np.isnan(s.image[hole]).all() and np.isnan(s.image[masked]).all()
    ok = ~(hole | masked)
    np.testing.assert_allclose(s.image[ok], full[ok])
    assert "bins with mask set" in s.meta["unmeasured_bins"] and "no events and zero signal" in s.meta["unmeasured_bins"]


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


def test_to_model_intensity_weights_clips_and_checks(ge):
    from fcinv_widgets.analysis.expio import to_model_intensity
    from fcinv_widgets.errors import FcinvError
    from fcinv_widgets.sqe import bose_factor

    e = ge.grid.e.centers
    img = np.ones(ge.grid.shape)
    img[3, 5] = 1e4  # a Bragg-tail hot pixel
    img[7] = np.nan  # an uncovered q bin
    out = to_model_intensity(img, ge.grid, temperature_k=300)
    np.testing.assert_allclose(out[0], e / bose_factor(e, 300))
    assert np.isnan(out[7]).all()
    clipped = to_model_intensity(img, ge.grid, clip_percentile=99.0)
    assert np.nanmax(clipped) == 1.0 and np.isnan(clipped[7]).all()
    with pytest.raises(FcinvError, match="shape"):
        to_model_intensity(np.ones((3, 3)), ge.grid)
    with pytest.raises(FcinvError, match="temperature"):
        to_model_intensity(img, ge.grid, temperature_k=-1)


def test_noise_relative_to_a_percentile_peak():
    """With a hot pixel, P counts at the 99.5th percentile leave the ridges far less noisy than P at the maximum."""
    from fcinv_widgets.analysis.noise import add_noise

    img = np.full((40, 40), 1.0)
    img[20:] = 2.0  # a ridge above the floor
    img[0, 0] = 200.0
    noisy_max, _ = add_noise(img, 0.0, 100, seed=1)
    noisy_pct, _ = add_noise(img, 0.0, 100, seed=1, peak_percentile=99.5)
    rel = lambda a: np.std(a[20:]) / np.mean(a[20:])  # noqa: E731
    assert rel(noisy_pct) < 0.3 * rel(noisy_max)


@pytest.mark.parametrize("scale, refused", [(1.0, False), (1.01, False), (0.97, False), (1.5, True), (0.6, True)])
def test_a_file_on_another_lattice_is_refused(tmp_path, scale, refused):
    """The same reduced path on another lattice (Cu's fcc path written on Ge's grid by
    ``simulate --structure``) has the same shape and energies as Ge's: its q-path length in Å⁻¹
    tells it apart. Beyond 5 % it is refused by name (it passed the OOD check before, session 24);
    thermal expansion and strain (≲ 3 %) are read."""
    import h5py

    from fcinv_widgets.analysis.expio import read_spectrum
    from fcinv_widgets.errors import GridMismatchError
    from fcinv_widgets.materials import get_material
    from fcinv_widgets.spectrum_io import write_spectrum

    ge = get_material("Ge")
    path = tmp_path / "s.h5"
    write_spectrum(path, ge.forward_model().spectra(ge.reference_params[ge.active])[0], ge.grid, material="custom")
    with h5py.File(path, "a") as f:
        f["grid/q_distance"][...] = f["grid/q_distance"][()] * scale
    if refused:
        with pytest.raises(GridMismatchError, match="another crystal"):
            read_spectrum(path, ge.grid)
    else:
        assert read_spectrum(path, ge.grid).image.shape == ge.grid.shape
    assert read_spectrum(path).image.shape == ge.grid.shape  # without a model's grid nothing to compare


@pytest.mark.parametrize(
    "elements, refused",
    [(["Ge"], False), (["Si"], True), (["Ga", "As"], True), (["As", "Ga", "Ge"], True), (None, False)],
)
def test_a_file_of_other_elements_is_refused(tmp_path, elements, refused):
    """Si in diamond is 4 % smaller than Ge, so its q-path passes the length test (5 %), and GaAs's
    lattice is Ge's within 0.1 %: a "custom" file of either on Ge's grid was inverted by the Ge
    models (session 31: a Si S(Q,E) from `fcinv simulate --structure` went through `invert` with
    exit 0). A file that records its crystal's elements (`fcinv simulate`, `fcinv scans` since
    session 31) is now refused by them for a model of another crystal; a user's own Ge structure
    ("custom", elements Ge) and files that do not say are read as before."""
    from fcinv_widgets.materials import get_material
    from fcinv_widgets.spectrum_io import write_spectrum

    ge = get_material("Ge")
    path = tmp_path / "s.h5"
    img = ge.forward_model().spectra(ge.reference_params[ge.active])[0]
    write_spectrum(path, img, ge.grid, material="custom", **({} if elements is None else {"elements": elements}))
    if refused:
        with pytest.raises(GridMismatchError, match="another crystal") as e:
            read_spectrum(path, ge.grid, material="Ge")
        assert ", ".join(sorted(elements)) in str(e.value) and "\n" not in str(e.value)
        assert "fcinv refine --structure" in str(e.value)  # what does fit another crystal's data
    else:
        assert read_spectrum(path, ge.grid, material="Ge").image.shape == ge.grid.shape
    assert read_spectrum(path).image.shape == ge.grid.shape  # no model: nothing to compare


@pytest.mark.parametrize("value", [3, "Ge", [], ["Xx"], [1.5], ["Ge"] * 200])
def test_a_damaged_elements_record_is_one_line(tmp_path, value):
    from fcinv_widgets.materials import get_material
    from fcinv_widgets.spectrum_io import write_spectrum

    ge = get_material("Ge")
    path = tmp_path / "s.h5"
    write_spectrum(
        path, ge.forward_model().spectra(ge.reference_params[ge.active])[0], ge.grid, material="custom", elements=value
    )
    with pytest.raises(FcinvError, match="elements attribute must be a list of chemical symbols") as e:
        read_spectrum(path, ge.grid, material="Ge")
    assert "\n" not in str(e.value)


def test_simulate_and_scan_sets_record_their_elements(tmp_path, capsys):
    """`fcinv simulate` writes the crystal's elements; a scan set carries them in its meta, and one
    written before they were recorded is read by its scattering lengths' species."""
    import dataclasses

    from fcinv_widgets.cli import main
    from fcinv_widgets.spectrum_io import read_attrs

    assert main(["simulate", "--material", "Nb", "--out", str(tmp_path / "nb.h5"), "--json"]) == 0
    capsys.readouterr()
    assert read_attrs(tmp_path / "nb.h5")["elements"] == ["Nb"]
    from fcinv_widgets.scans import ScanSet

    fields = {f.name: None for f in dataclasses.fields(ScanSet)}
    ss = ScanSet(**(fields | {"meta": {"elements": ["Ge"], "b_coh_fm": {"Si": 4.1}}}))
    assert ss.elements == ["Ge"]
    assert dataclasses.replace(ss, meta={"b_coh_fm": {"Si": 4.1}}).elements == ["Si"]
    assert dataclasses.replace(ss, meta={}).elements is None


def test_q_order_and_bins_are_compared_with_the_models_path(tmp_path, ge, image):
    """Session 49's readers probe: a file whose image and q axes were all stored in the reverse of the
    model's path order was inverted reversed with exit 0 (only the path's length was compared), a
    descending r.l.u. Mantid axis was read as the path, and a powder |Q| axis of the path's span was
    taken for it. The bins are now compared bin by bin, and any descending q axis is refused."""
    import h5py

    from fcinv_widgets.spectrum_io import write_spectrum

    own = tmp_path / "own.h5"
    write_spectrum(own, np.nan_to_num(image), ge.grid, material="Ge")
    assert read_spectrum(own, ge.grid).image.shape == ge.grid.shape
    rev = tmp_path / "rev.h5"
    write_spectrum(rev, np.nan_to_num(image)[::-1], ge.grid, material="Ge")
    with h5py.File(rev, "a") as f:
        f["grid/q_distance"][...] = f["grid/q_distance"][()][::-1]
    with pytest.raises(GridMismatchError, match="run backwards"):
        read_spectrum(rev, ge.grid)
    uniform = tmp_path / "uniform.h5"  # the path's span in equal steps: not the model's bins (segments differ)
    write_spectrum(uniform, np.nan_to_num(image), ge.grid, material="Ge")
    with h5py.File(uniform, "a") as f:
        d = f["grid/q_distance"][()]
        f["grid/q_distance"][...] = np.linspace(d[0], d[-1], d.size)
    with pytest.raises(GridMismatchError, match=r"q bin \d+ lies .* along the path"):
        read_spectrum(uniform, ge.grid)

    d = ge.grid.q.distance
    step = np.diff(d).mean()
    path_edges = np.concatenate([[d[0] - step / 2], 0.5 * (d[1:] + d[:-1]), [d[-1] + step / 2]])

    def mantid(name, q_edges, signal, long_name, units):
        p = tmp_path / f"{name}.nxs"
        _write_mdhisto(p, signal, ge.grid.e.edges)
        with h5py.File(p, "r+") as f:
            del f["MDHistoWorkspace/data/D0"]
            q = f["MDHistoWorkspace/data"].create_dataset("D0", data=q_edges)
            q.attrs["long_name"] = long_name
            if units:
                q.attrs["units"] = units
        return p

    ok = mantid("rlu", np.linspace(0, 1, 141), image, "[xi,0,0]", "r.l.u.")
    assert np.array_equal(read_spectrum(ok, ge.grid).image, image, equal_nan=True)
    with pytest.raises(FcinvError, match="not strictly increasing"):
        read_spectrum(mantid("rlu_down", np.linspace(1, 0, 141), image[::-1], "[xi,0,0]", "r.l.u."), ge.grid)
    with pytest.raises(GridMismatchError, match="powder"):
        read_spectrum(mantid("powder", path_edges + 2.0, image, "|Q|", "MomentumTransfer"), ge.grid)
    with pytest.raises(GridMismatchError, match="along the path"):  # |Q| 2–7 Å⁻¹ under another name
        read_spectrum(mantid("shifted", path_edges + 2.0, image, "Q", "MomentumTransfer"), ge.grid)
    assert read_spectrum(mantid("path", path_edges, image, "path", "Angstrom^-1"), ge.grid).q_distance is not None


@pytest.mark.parametrize("value", [0.995, 0.5, 30.0, 101.0])
def test_a_clip_or_peak_percentile_that_is_no_peak_is_refused(ge, value):
    """Session 50's notebook probe: ``to_model_intensity(img, grid, T, 0.995)`` (a fraction for 99.5)
    clipped the image to ~1e-24 without a word; a percentile below the median is no peak."""
    from fcinv_widgets.analysis.expio import to_model_intensity
    from fcinv_widgets.noise import add_noise

    img = np.random.default_rng(0).random(ge.grid.shape)
    hint = "a fraction, not a percentile" if value <= 1 else r"\[50, 100\]"
    with pytest.raises(FcinvError, match=hint):
        to_model_intensity(img, ge.grid, 5.0, value)
    with pytest.raises(FcinvError, match=hint if value <= 100 else "peak percentile"):
        add_noise(img, 0.1, 100.0, seed=0, peak_percentile=value)
    assert np.isfinite(to_model_intensity(img, ge.grid, 5.0, 99.5)).all()
