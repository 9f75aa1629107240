"""Input refusal and automatic input handling: what a file says about itself decides the
correction, applied exactly once; bad spectra are refused with one line and exit 2."""

import json

import h5py
import numpy as np
import pytest

from fcinv_widgets.analysis.expio import (
    MODEL_IMAGE,
    SQE,
    Spectrum,
    corrected,
    prepare_input,
    read_spectrum,
    save_spectrum,
    to_model_intensity,
    write_pathsqe_npz,
)
from fcinv_widgets.errors import FcinvError, GridMismatchError
from fcinv_widgets.spectrum_io import write_spectrum
from fcinv_widgets.validate import check_spectra

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def vae():
    from fcinv_widgets.models import load_model

    return load_model("ge-vae")


@pytest.fixture(scope="module")
def image(ge_fm):
    return ge_fm.spectra(ge_fm.reference_theta)[0].astype(float)


@pytest.fixture(scope="module")
def sqe_image(ge, image):
    """A one-phonon-S(Q,E)-like image at 5 K: the model image times (n(E,T)+1)/E, the weighting
    :func:`to_model_intensity` removes (NaN at E ≤ 0, where the weight is undefined)."""
    from fcinv_widgets.sqe import bose_factor

    e = ge.grid.e.centers
    w = np.full(e.shape, np.nan)
    w[e > 0] = bose_factor(e[e > 0], 5.0) / e[e > 0]
    return image * w[None, :]


def _bad_spectra(shape):
    rng = np.random.default_rng(0)
    good = rng.random(shape)
    inf = good.copy()
    inf[3, 4] = np.inf
    return {
        "all-zero": (np.zeros(shape), "all zero"),
        "constant": (np.full(shape, 0.3), "constant"),
        "complex": (good + 1j * good, "complex"),
        "inf": (inf, "inf"),
        "all-NaN": (np.full(shape, np.nan), "all NaN"),
        "string": (np.full(shape, "1.0"), "real numbers"),
        "wrong shape": (good[:, :-1], "shape"),
        "no positive value": (-good, "no positive intensity"),  # a sign flipped (session 40)
        "boolean": (good > 0.5, "boolean"),  # a mask saved in place of intensities (session 40)
    }


BAD = list(_bad_spectra((140, 140)))


@pytest.mark.parametrize("case", BAD)
def test_check_spectra_refuses(case):
    x, msg = _bad_spectra((140, 140))[case]
    with pytest.raises(FcinvError, match=msg):
        check_spectra(x, (140, 140))


def test_check_spectra_accepts_partial_coverage_and_names_the_bad_one():
    x = np.random.default_rng(1).random((3, 5, 6))
    x[0, :, 3:] = np.nan  # NaN = not measured: fine
    assert check_spectra(x, (5, 6)).shape == (3, 5, 6)
    x[2] = 0.0
    with pytest.raises(FcinvError, match="spectrum 2: all zero"):
        check_spectra(x, (5, 6))
    with pytest.raises(FcinvError, match="ragged|rectangular|real numbers"):
        check_spectra([[1.0, 2.0], [3.0]])


def test_masked_pixels_of_a_numpy_masked_array_are_not_measured(vae, image):
    """np.asarray drops a mask: the values under it must not be read as data (session 23)."""
    junk = np.array(image, float)
    junk[:, 70:] = 50.0  # under the mask
    masked = np.ma.masked_array(junk, mask=np.zeros_like(junk, bool))
    masked.mask[:, 70:] = True
    x = check_spectra(masked, (140, 140))
    assert np.isnan(x[:, 70:]).all() and np.array_equal(x[:, :70], junk[:, :70])
    with_nan = np.where(masked.mask, np.nan, junk)
    assert vae.invert(masked, refine=False)["fc_mean"] == vae.invert(with_nan, refine=False)["fc_mean"]
    with pytest.raises(FcinvError, match="boolean"):
        check_spectra(np.ma.masked_array(junk > 1, mask=masked.mask), (140, 140))


@pytest.mark.parametrize("case", BAD)
def test_predict_and_invert_refuse(vae, case):
    x, msg = _bad_spectra((140, 140))[case]
    with pytest.raises(FcinvError, match=msg):
        vae.predict(x, n_samples=2)
    with pytest.raises(FcinvError, match=msg):
        vae.invert(x, n_samples=2)


def _save_bad(path, x):
    if path.suffix == ".npy":
        np.save(path, x)
    elif path.suffix == ".npz":
        np.savez(path, spectrum=x)
    else:
        with h5py.File(path, "w") as f:
            f.attrs["format"] = "fcinv-spectrum"
            f["spectrum"] = x


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5"])
@pytest.mark.parametrize("case", ["all-zero", "constant", "complex", "inf", "all-NaN", "string", "no positive value", "boolean"])
def test_cli_invert_refuses_bad_files(tmp_path, capsys, suffix, case):
    from fcinv_widgets.cli import main

    x, _ = _bad_spectra((140, 140))[case]
    if case == "string" and suffix == ".h5":
        x = x.astype("S3")
    p = tmp_path / f"bad{suffix}"
    _save_bad(p, x)
    assert main(["invert", "--model", "ge-vae", "--spectrum", str(p), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "error:" in err and "Traceback" not in err
    assert _bad_spectra((140, 140))[case][1] in err or case == "string"


def test_a_spectrum_with_negative_pixels_is_still_inverted(vae):
    """Background-subtracted data go below zero in places: only a spectrum with no positive value at all
    is refused."""
    x = np.random.default_rng(3).random((140, 140)) - 0.3
    assert check_spectra(x, (140, 140)).min() < 0
    assert len(vae.predict(x, n_samples=2).mean[0]) == 8


def test_cli_refine_and_infer_scans_refuse(tmp_path, capsys, ge):
    from fcinv_widgets.cli import main
    from fcinv_widgets.scans import ScanSet

    p = tmp_path / "zero.npy"
    np.save(p, np.zeros(ge.grid.shape))
    assert main(["refine", "--spectrum", str(p), "--max-iter", "2"]) == 2
    assert "all zero" in capsys.readouterr().err
    nq, ne = ge.grid.shape
    full = np.full((nq, ne), 0.5)
    scans = np.random.default_rng(0).random((2, nq, ne)).astype(np.float32)
    ss = ScanSet(full, scans, np.array([0.0, 10.0]), np.ones(2), 80.0, 5.0, "Ge", ge.grid, ge.reference_params, {})
    ss.save(tmp_path / "s.h5")
    assert main(["infer-scans", "--model", "ge-vae", "--scans", str(tmp_path / "s.h5"), "--n-samples", "2"]) == 2
    assert "constant" in capsys.readouterr().err


def test_widget_input_refused(vae):
    """The latent picker places user spectra through the model: a bad one is refused there too."""
    from fcinv_testing.fakes import fake_latent_map
    from fcinv_widgets.widgets.latent_picker import LatentPicker

    lm = fake_latent_map(latent=20)
    w = LatentPicker(lm, vae)
    with pytest.raises(FcinvError, match="all zero"):
        w.add_points("mine", np.zeros((140, 140)), kind="spectra")


# ---------------------------------------------------------------------- what a file says about itself
def test_simulate_writes_what_the_file_is(tmp_path):
    from fcinv_widgets.cli import main

    p = tmp_path / "fast.h5"
    assert main(["simulate", "--material", "Ge", "--ei", "80", "--out", str(p), "--json"]) == 0
    s = read_spectrum(p)
    assert s.meta["intensity"] == MODEL_IMAGE and s.meta["origin"] == "simulated" and s.meta["ei_mev"] == 80


def test_model_image_is_not_corrected(ge, image, tmp_path):
    p = tmp_path / "m.h5"
    write_spectrum(p, image, ge.grid, material="Ge", intensity=MODEL_IMAGE, origin="simulated")
    img, rec = prepare_input(read_spectrum(p, ge.grid), ge.grid)
    assert rec["applied"] == [] and rec["intensity"] == MODEL_IMAGE
    np.testing.assert_allclose(img, image, rtol=1e-6)


def test_sqe_file_is_corrected_once_at_its_temperature(ge, image, sqe_image, tmp_path):
    p = tmp_path / "sqe.h5"
    write_spectrum(p, sqe_image, ge.grid, material="Ge", intensity=SQE, origin="simulated", temperature_k=5.0, ei_mev=80.0)
    spec = read_spectrum(p, ge.grid)
    img, rec = prepare_input(spec, ge.grid)
    assert rec["bose_weighting"] == {"temperature_k": 5.0, "source": "sqe.h5: temperature_k attribute"}
    assert rec["clip_percentile"] == 99.5 and len(rec["applied"]) == 2
    # the weighting undoes (n+1)/E: the corrected image is the model image, clipped at its 99.5th percentile
    ok = np.isfinite(img)
    want = np.minimum(image, np.percentile(image[ok], 99.5))
    np.testing.assert_allclose(img[ok], want[ok], rtol=1e-5, atol=1e-6)
    # a corrected spectrum (in memory or saved) is never corrected again
    c = corrected(spec, ge.grid)
    again, rec2 = prepare_input(c, ge.grid)
    np.testing.assert_array_equal(again, img)
    assert rec2["applied"] == [] and rec2["already_applied"]["applied"] == rec["applied"]
    save_spectrum(tmp_path / "done.h5", c, ge.grid, material="Ge")
    again2, rec3 = prepare_input(read_spectrum(tmp_path / "done.h5", ge.grid), ge.grid)
    np.testing.assert_allclose(again2, img, rtol=1e-6, equal_nan=True)
    assert rec3["applied"] == []
    with pytest.raises(FcinvError, match="already corrected"):
        prepare_input(c, ge.grid, temperature_k=5.0)
    # a double application would have changed the image: the guard is not vacuous
    twice = to_model_intensity(img, ge.grid, 5.0, 99.5)
    assert not np.allclose(np.nan_to_num(twice), np.nan_to_num(img))


def test_cli_invert_corrected_and_uncorrected_files_agree(ge, sqe_image, tmp_path, capsys):
    from fcinv_widgets.cli import main

    raw = tmp_path / "sqe.h5"
    write_spectrum(raw, sqe_image, ge.grid, material="Ge", intensity=SQE, temperature_k=5.0)
    done = tmp_path / "done.h5"
    save_spectrum(done, corrected(read_spectrum(raw, ge.grid), ge.grid), ge.grid, material="Ge")
    res = {}
    for name, p in (("raw", raw), ("done", done)):
        # the networks alone: the physics fit would run by default on the uncorrected file only
        assert main(["invert", "--model", "ge-vae", "--spectrum", str(p), "--n-samples", "20", "--no-refine", "--json"]) == 0
        res[name] = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(res["raw"]["fc_mean"], res["done"]["fc_mean"], rtol=1e-4, atol=1e-5)
    assert len(res["raw"]["corrections"]["applied"]) == 2 and res["done"]["corrections"]["applied"] == []
    assert res["done"]["corrections"]["already_applied"]
    # asking for a second correction of the corrected file is refused
    assert main(["invert", "--model", "ge-vae", "--spectrum", str(done), "--temperature", "5"]) == 2
    assert "already corrected" in capsys.readouterr().err
    # --raw: nothing applied, and the answer differs
    assert main(["invert", "--model", "ge-vae", "--spectrum", str(raw), "--raw", "--n-samples", "20", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["corrections"]["applied"] == [] and r["corrections"]["raw"]
    assert not np.allclose(r["fc_mean"], res["raw"]["fc_mean"], atol=1e-3)


def test_pathsqe_needs_the_temperature_once(ge, sqe_image, tmp_path, capsys):
    from fcinv_widgets.cli import main

    p = tmp_path / "folded.npz"
    write_pathsqe_npz(p, sqe_image, ge.grid)
    spec = read_spectrum(p, ge.grid)
    assert spec.meta["intensity"] == SQE and spec.meta["origin"] == "measured"
    assert main(["invert", "--model", "ge-vae", "--spectrum", str(p)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--temperature" in err
    assert main(["invert", "--model", "ge-vae", "--spectrum", str(p), "--temperature", "5", "--n-samples", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rec = out["corrections"]
    assert rec["bose_weighting"] == {"temperature_k": 5.0, "source": "given (--temperature)"}
    assert out["sigma_regime"] == "measured-sqe"  # a measured S(Q,E): σ sized on such draws
    assert main(["invert", "--model", "ge-vae", "--spectrum", str(p), "--temperature", "5", "--n-samples", "5"]) == 0
    assert "σ: calibrated on held-out measurement-model draws of a one-phonon S(Q,E)" in capsys.readouterr().out


def test_mantid_temperature_and_ei_from_sample_logs(ge, sqe_image, tmp_path):
    p = tmp_path / "m.nxs"
    _mantid_with_logs(p, ge, sqe_image, [{"SampleTemp": ([4.9, 5.0, 5.1], None), "Ei": ([80.0], None)}])
    spec = read_spectrum(p, ge.grid)
    assert spec.meta["temperature_k"] == pytest.approx(5.0) and spec.meta["ei_mev"] == 80.0
    _, rec = prepare_input(spec, ge.grid)
    assert rec["bose_weighting"]["source"] == "m.nxs: sample log SampleTemp"
    # an explicit temperature overrides the log
    _, rec2 = prepare_input(spec, ge.grid, temperature_k=10.0)
    assert rec2["bose_weighting"]["temperature_k"] == 10.0


def _mantid_with_logs(path, ge, sqe_image, logs_by_run):
    """A Mantid MDHisto file whose runs (experiment0, experiment1, …) carry the given sample logs:
    {name: (values, units or None)}."""
    nq = ge.grid.shape[0]
    with h5py.File(path, "w") as f:
        d = f.create_group("MDHistoWorkspace").create_group("data")
        d.create_dataset("signal", data=sqe_image.T[:, None, None, :]).attrs["axes"] = "D3:D2:D1:D0"
        d.create_dataset("D0", data=np.linspace(0, 1, nq + 1))
        d.create_dataset("D1", data=[-0.05, 0.05])
        d.create_dataset("D2", data=[-0.05, 0.05])
        d.create_dataset("D3", data=ge.grid.e.edges).attrs["units"] = "meV"
        for k, logs in enumerate(logs_by_run):
            g = f["MDHistoWorkspace"].create_group(f"experiment{k}").create_group("logs")
            for name, (values, units) in logs.items():
                v = g.create_group(name).create_dataset("value", data=np.asarray(values, float))
                if units is not None:
                    v.attrs["units"] = units


@pytest.mark.parametrize(
    "runs, temperature, problem",
    [
        ([{"SampleTemp": ([26.85], "C")}], 300.0, None),
        ([{"SampleTemp": ([80.33], "degF")}], 300.0, None),
        ([{"SampleTemp": ([5000.0], "mK")}], 5.0, None),
        ([{"SampleTemp": ([-268.15], "°C")}], 5.0, None),
        ([{"SampleTemp": ([300.0], "Rankine")}], None, "has units 'rankine'"),
        ([{"SensorA": ([10.0], "K"), "SensorB": ([300.0], "K")}], None, "sample logs disagree"),
        ([{"SampleTemp": ([0, 0, 0, 300, 300, 300], "K")}], None, "varies from 0 to 300 K"),
        ([{"SampleTemp": ([10.0], "K")}, {"SampleTemp": ([590.0], "K")}], None, "sample logs disagree"),
        ([{"SampleTemp": ([300.0], "K"), "SensorA": ([10.0], "K")}], 300.0, None),  # the sample's own log first
        ([{"SampleTemp": ([299.6, 300.4], "K")}, {"SampleTemp": ([300.1], "K")}], 300.05, None),  # median of the runs
    ],
)
def test_mantid_temperature_logs_honour_units_and_refuse_ambiguity(ge, sqe_image, tmp_path, runs, temperature, problem):
    """Session 49's probe: °C and °F logs were read as K (26.85 °C as 26.85 K), the first sensor of a
    fixed list won over a second that disagreed, a series with drop-outs averaged to 150 K, merged
    runs gave the first run's T. Units are honoured; disagreeing or varying logs are refused in one
    line that asks for --temperature (which still overrides)."""
    p = tmp_path / "m.nxs"
    _mantid_with_logs(p, ge, sqe_image, runs)
    spec = read_spectrum(p, ge.grid)
    if problem is None:
        assert spec.meta["temperature_k"] == pytest.approx(temperature, abs=0.01)
        return
    assert "temperature_k" not in spec.meta
    with pytest.raises(FcinvError, match=f"{problem}.*give the sample temperature with --temperature K"):
        prepare_input(spec, ge.grid)
    _, rec = prepare_input(spec, ge.grid, temperature_k=300.0)
    assert rec["bose_weighting"]["temperature_k"] == 300.0


@pytest.mark.parametrize(
    "runs, ei, problem",
    [
        ([{"Ei": ([0.08], "eV")}], 80.0, None),
        ([{"Ei": ([80.0], "meV")}], 80.0, None),
        ([{"EnergyRequest": ([80.0, 30.0, 15.0], None)}], None, "holds several incident energies"),
        ([{"Ei": ([80.0], None)}, {"Ei": ([120.0], None)}], None, "holds several incident energies"),
        ([{"Ei": ([80.0], "J")}], None, "has units 'j'"),
    ],
)
def test_mantid_ei_logs_honour_units_and_refuse_several_energies(ge, sqe_image, tmp_path, capsys, runs, ei, problem):
    """Repetition-rate multiplication (80, 30, 15 meV) was averaged to 41.7 meV and `refine` fitted the
    resolution there with exit 0; an eV log was read as meV. Now a single Ei is read in its unit and
    recorded with its source; several are refused by `refine` (asking for --ei) and leave `invert`
    without the fit, saying why."""
    from fcinv_widgets.cli import main

    p = tmp_path / "m.nxs"
    runs = [r | {"SampleTemp": ([5.0], "K")} for r in runs]
    _mantid_with_logs(p, ge, sqe_image, runs)
    spec = read_spectrum(p, ge.grid)
    if problem is None:
        assert spec.meta["ei_mev"] == pytest.approx(ei) and spec.meta["ei_source"].startswith("m.nxs: sample log")
        return
    assert "ei_mev" not in spec.meta and problem in spec.meta["ei_problem"]
    assert main(["refine", "--material", "Ge", "--spectrum", str(p), "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and problem in err[0] and "--ei MEV" in err[0], err


def test_bare_array_is_a_model_image_unless_a_temperature_is_given(vae, image, sqe_image):
    a = vae.invert(image, n_samples=5, ood=False)
    assert a["corrections"]["applied"] == [] and a["corrections"]["intensity_source"].startswith("assumed")
    b = vae.invert(sqe_image, temperature_k=5.0, n_samples=5, ood=False)
    assert b["corrections"]["intensity"] == SQE and len(b["corrections"]["applied"]) == 2
    # the input regime also picks the σ calibration (session 15): the same image judged as a
    # measurement gets the measured regime's σ, and the record says which sized it
    assert a["sigma_regime"] == "model-image" and b["sigma_regime"] == "measured-sqe"
    c = vae.invert(image, n_samples=5, ood=False, ood_regime="measured")
    assert c["sigma_regime"] == "measured" and c["fc_mean"] == pytest.approx(a["fc_mean"])
    ratio = np.asarray(c["fc_std"]) / np.asarray(a["fc_std"])
    assert not np.allclose(ratio, 1.0, atol=0.02)
    # one single-orientation scan (the caller says so): σ from the single-scan calibration (session
    # 20) where the checkpoint has one, else the nearest it has (SIGMA_FALLBACK)
    from fcinv_widgets.models import load_model

    d = vae.invert(sqe_image, temperature_k=5.0, n_samples=5, ood=False, refine=False, single_scan=True)
    assert d["sigma_regime"] == vae.resolved_sigma_regime("measured-sqe-scan") and d["fc_mean"] == pytest.approx(b["fc_mean"])
    res = load_model("ge-resnet")
    one, full = (res.invert(sqe_image, temperature_k=5.0, ood=False, refine=False, single_scan=s) for s in (True, False))
    assert one["sigma_regime"] == "measured-sqe-scan" and full["sigma_regime"] == "measured-sqe"
    assert one["fc_mean"] == pytest.approx(full["fc_mean"]) and not np.allclose(one["fc_std"], full["fc_std"])
    with pytest.raises(GridMismatchError):
        vae.invert(image[None].repeat(2, 0))
    with pytest.raises(FcinvError, match="--raw"):
        prepare_input(Spectrum(image, "x", "array"), None, raw=True, clip_percentile=99)


def test_infer_scans_api_corrects_a_scan_set_once(ge):
    """The Python API (and so OrientationScatter's input) corrects a ScanSet as the CLI does."""
    from fcinv_widgets.analysis.expio import prepare_scan_set
    from fcinv_widgets.analysis.scan_inference import infer_scans
    from fcinv_widgets.scans import ScanSet

    rng = np.random.default_rng(3)
    nq, ne = ge.grid.shape
    full = rng.random((nq, ne)) + 0.1
    scans = rng.random((2, nq, ne)).astype(np.float32) + 0.1
    scans[1, :, 100:] = np.nan
    ss = ScanSet(full, scans, np.array([0.0, 10.0]), np.ones(2), 80.0, 5.0, "Ge", ge.grid, ge.reference_params, {})

    class Echo:  # predicts the mean of what it is given: shows which image it saw
        kind = "stub"

        def __init__(self):
            self.names = [f"FC{i}" for i in range(8)]
            self.config = {"domain": np.tile([[-1.0, 1.0]], (8, 1))}

        def predict(self, x, n_samples=1, seed=0, sigma_regime=None):
            from types import SimpleNamespace

            regimes.append(sigma_regime)
            x = np.asarray(x, float)
            x = x[None] if x.ndim == 2 else x
            m = np.tile(np.nanmean(x, axis=(1, 2))[:, None], (1, 8))
            return SimpleNamespace(mean=m, std=0 * m, recon=np.zeros((0,)))

    regimes: list = []
    res = infer_scans(Echo(), ss)
    # the full data's σ from the S(Q,E) calibration, each scan's from the single-scan one (session 20)
    assert regimes == ["measured-sqe", "measured-sqe-scan"]
    f, s, rec = prepare_scan_set(ss, ge.grid)
    assert res.meta["corrections"]["applied"] == rec["applied"] and len(rec["applied"]) == 2
    np.testing.assert_allclose(res.full_mean[0], np.nanmean(f))
    np.testing.assert_allclose(res.mean[:, 0], np.nanmean(s, axis=(1, 2)))
    raw = infer_scans(Echo(), ss, raw=True)
    np.testing.assert_allclose(raw.full_mean[0], np.nanmean(full), rtol=1e-6)


@pytest.mark.parametrize("units", ["degrees C", "degree Celsius", "deg C", "°C", "DegC"])
def test_mantid_celsius_spellings(ge, sqe_image, tmp_path, units):
    p = tmp_path / "m.nxs"
    _mantid_with_logs(p, ge, sqe_image, [{"SampleTemp": ([26.85], units)}])
    assert read_spectrum(p, ge.grid).meta["temperature_k"] == pytest.approx(300.0)
