"""The Python API refuses bad arguments with one FcinvError (a ValueError; a widget's refusal is
also a traitlets TraitError), never a TypeError/RuntimeError from numpy or torch deep inside —
session 26 found 249 such leaks by sending these values to the public calls below (`ForwardModel`,
`Inverter.invert/predict/decode/regress`, `simulate_scans`, `add_noise`, `LatentPicker`, …)."""

import numpy as np
import pytest
from traitlets import TraitError

from fcinv_widgets.errors import FcinvError

BAD = {
    "None": None,
    "text": "abc",
    "nan": float("nan"),
    "inf": float("inf"),
    "-1": -1,
    "0": 0,
    "1e300": 1e300,
    "-1e300": -1e300,
    "True": True,
    "list of text": ["a", "b"],
    "dict": {"a": 1},
    "complex": 1 + 2j,
    "empty array": np.array([]),
    "object array": np.array([object()]),
    "10**30": 10**30,
    "tuple": (1, 2),
    "bytes": b"abc",
    "ragged": [[1, [2]]],
    "3.0": 3.0,
}


class _Accepted(Exception):
    """A value taken as valid that starts real work (a fit, a simulation): not what is tested."""


_FIRED: list[bool] = []


def _alarm(*_):
    _FIRED.append(True)
    raise _Accepted


def _leaks(calls, seconds: int = 0) -> list[str]:
    """Each call with each bad value: what escaped other than FcinvError/TraitError. ``seconds``:
    a case still running after that long took the value and is working — stopped, not a leak. The
    alarm's exception can surface as another type when it lands inside C code that converts what it
    catches (numpy's structured-array comparison turned it into a TypeError on a clean clone's CI):
    whatever a call raises after the alarm fired is the stop, not a leak."""
    import signal

    out = []
    old = signal.signal(signal.SIGALRM, _alarm) if seconds else None
    try:
        for name, fn in calls:
            for label, v in BAD.items():
                if seconds:
                    _FIRED.clear()
                    signal.alarm(seconds)
                try:
                    fn(v)
                except (FcinvError, TraitError, _Accepted):
                    pass
                except Exception as exc:  # the leak this test is about
                    if _FIRED:
                        continue
                    out.append(f"{name}({label}): {type(exc).__name__}: {str(exc)[:120]}")
                finally:
                    if seconds:
                        signal.alarm(0)
    finally:
        if seconds:
            signal.signal(signal.SIGALRM, old)
    return out


@pytest.fixture(scope="module")
def ge_fm(ge):
    return ge.forward_model()


@pytest.fixture(scope="module", autouse=True)
def _kernels_compiled(ge, ge_fm):
    """Compile every numba kernel the alarm-timed cases reach before any of them runs: a case
    stopped by the alarm mid-compilation leaves the dispatcher half-built, and the next call fails
    with "no compiled object yet" (seen on a clean clone's CI, where no numba cache exists)."""
    from fcinv_widgets.analysis.planner import fit_scans_sqe, hits_bank, plan_orientations_sqe
    from fcinv_widgets.scans import simulate_scans

    th = ge_fm.reference_theta
    ge_fm.spectra(th)
    bank = hits_bank(ge, [0.0, 60.0], 80.0, qmax=2.0, cache=False)
    plan_orientations_sqe(ge, bank, th, n=1)
    ss = simulate_scans(ge, 80.0, [0.0, 60.0], qmax=2.0, progress=False)
    fit_scans_sqe(ge, bank, ss.scans[:1], [0.0], max_iter=1)


def test_forward_model_arguments(ge, ge_fm):
    th = ge_fm.reference_theta
    calls = [
        ("get_material", lambda v: __import__("fcinv_widgets").get_material(v)),
        ("spectra", lambda v: ge_fm.spectra(v)),
        ("frequencies", lambda v: ge_fm.frequencies(v)),
        ("is_stable", lambda v: ge_fm.is_stable(v)),
        ("spectra(chunk=)", lambda v: ge_fm.spectra(th, chunk=v)),
        ("iter_spectra(chunk=)", lambda v: list(ge_fm.iter_spectra(th[None], chunk=v))),
        ("spectra(dtype=)", lambda v: ge_fm.spectra(th, dtype=v)),
        ("with_broadening", lambda v: ge_fm.with_broadening(v)),
        ("with_resolution", lambda v: ge_fm.with_resolution(v)),
        ("with_resolution(sigma_mev=)", lambda v: ge_fm.with_resolution(None, v)),
        ("forward_model(sigma_mev=)", lambda v: ge.forward_model(sigma_mev=v)),
        ("forward_model(resolution=)", lambda v: ge.forward_model(resolution=v)),
        ("forward_model(backend=)", lambda v: ge.forward_model(backend=v)),
        ("with_reference", lambda v: ge.with_reference(v, "x")),
    ]
    assert _leaks(calls) == []


def test_model_arguments(ge_fm):
    from fcinv_widgets.models import load_model

    img = ge_fm.spectra(ge_fm.reference_theta)[0]
    res, vae = load_model("ge-resnet"), load_model("ge-vae")
    calls = [("load_model", load_model)]
    for tag, m in (("resnet", res), ("vae", vae)):
        calls += [
            (f"{tag}.invert", lambda v, m=m: m.invert(v, ood=False)),
            (f"{tag}.invert(temperature_k=)", lambda v, m=m: m.invert(img, temperature_k=v, ood=False, refine=False)),
            (f"{tag}.invert(clip_percentile=)", lambda v, m=m: m.invert(img, clip_percentile=v, ood=False, refine=False)),
            (f"{tag}.invert(ood_regime=)", lambda v, m=m: m.invert(img, ood_regime=v, refine=False)),
            (f"{tag}.invert(scan_deg=)", lambda v, m=m: m.invert(img, scan_deg=v, ood=False, refine=False)),
            (f"{tag}.invert(u=)", lambda v, m=m: m.invert(img, scan_deg=30.0, u=v, ood=False, refine=False)),
            (f"{tag}.invert(v=)", lambda v, m=m: m.invert(img, scan_deg=30.0, v=v, ood=False, refine=False)),
            (f"{tag}.invert(single_scan=)", lambda v, m=m: m.invert(img, single_scan=v, ood=False, refine=False)),
            (f"{tag}.invert(raw=)", lambda v, m=m: m.invert(img, raw=v, ood=False, refine=False)),
            (f"{tag}.predict", lambda v, m=m: m.predict(v)),
            (f"{tag}.predict(n_samples=)", lambda v, m=m: m.predict(img, n_samples=v)),
            (f"{tag}.predict(seed=)", lambda v, m=m: m.predict(img, seed=v)),
            (f"{tag}.predict(batch=)", lambda v, m=m: m.predict(img, batch=v)),
            (f"{tag}.predict(sigma_regime=)", lambda v, m=m: m.predict(img, sigma_regime=v)),
            (f"{tag}.ood_check", lambda v, m=m: m.ood_check(v)),
        ]
    calls += [("vae.encode", vae.encode), ("vae.decode", vae.decode), ("vae.regress", vae.regress)]
    assert _leaks(calls) == []


def test_vae_regress_gives_the_fc_means_of_a_heteroscedastic_head(ge_fm):
    """regress() returned the head's 16 outputs × 8 scales (a broadcasting error) for the robust VAE."""
    from fcinv_widgets.models import load_model

    vae = load_model("ge-vae")
    assert vae.heteroscedastic
    mu, _ = vae.encode(ge_fm.spectra(ge_fm.reference_theta))
    y = vae.regress(mu)
    assert y.shape == (1, 8) and np.all(np.isfinite(y))
    assert vae.regress(mu[0]).shape == (8,)
    with pytest.raises(FcinvError, match="expected shape"):
        vae.regress(np.zeros((1, 19)))


def test_scan_and_noise_arguments(ge, ge_fm, tmp_path, monkeypatch):
    from fcinv_widgets.analysis.expio import as_spectrum, read_spectrum
    from fcinv_widgets.noise import add_noise
    from fcinv_widgets.scans import simulate_scans

    monkeypatch.chdir(tmp_path)  # read_spectrum("abc") looks in the working directory
    img = ge_fm.spectra(ge_fm.reference_theta)[0]
    calls = [
        ("simulate_scans(ei_mev=)", lambda v: simulate_scans(ge, v, [0.0], qmax=2.0)),
        ("simulate_scans(angles_deg=)", lambda v: simulate_scans(ge, 60.0, v, qmax=2.0)),
        ("simulate_scans(temperature=)", lambda v: simulate_scans(ge, 60.0, [0.0], temperature=v, qmax=2.0)),
        ("simulate_scans(params=)", lambda v: simulate_scans(ge, 60.0, [0.0], params=v, qmax=2.0)),
        # (1e300 is clipped to the reach: a valid, slow simulation)
        ("simulate_scans(qmax=)", lambda v: simulate_scans(ge, 60.0, [0.0], qmax=2.0 if isinstance(v, float) and v > 10 else v)),
        ("simulate_scans(u=)", lambda v: simulate_scans(ge, 60.0, [0.0], u=v, qmax=2.0)),
        ("add_noise(spectra=)", lambda v: add_noise(v, 0.1, 30)),
        ("add_noise(background=)", lambda v: add_noise(img, v, 30)),
        ("add_noise(counts=)", lambda v: add_noise(img, 0.1, v)),
        ("add_noise(seed=)", lambda v: add_noise(img, 0.1, 30, seed=v)),
        ("add_noise(peak_percentile=)", lambda v: add_noise(img, 0.1, 30, peak_percentile=v)),
        ("read_spectrum", read_spectrum),
        ("as_spectrum", lambda v: as_spectrum(v, ge.grid)),
    ]
    assert _leaks(calls) == []


def test_too_hot_a_sample_is_refused_by_name(ge_fm):
    """A temperature of 1e300 K made NaN images and the error 'force-constant parameters contain
    NaN or inf' (plus a numpy warning line): now one line naming the temperature."""
    from fcinv_widgets.models import load_model

    img = ge_fm.spectra(ge_fm.reference_theta)[0]
    with pytest.raises(FcinvError, match=r"sample temperature \(K\) must be .*≤ 5000"):
        load_model("ge-resnet").invert(img, temperature_k=1e300)


def test_latent_picker_python_calls():
    from fcinv_widgets.widgets import LatentPicker

    lp = LatentPicker("ge-vae")
    calls = [
        ("select", lp.select),
        ("selected=", lambda v: setattr(lp, "selected", v)),
        ("set_ray(a=)", lambda v: lp.set_ray(v, [0, 0])),
        ("set_ray(n=)", lambda v: lp.set_ray([0, 0], [0.1, 0.1], n=v)),
        ("add_points(name=)", lambda v: lp.add_points(v, np.zeros((1, 2)))),
        ("add_points(data=)", lambda v: lp.add_points("x", v)),
        ("add_points(kind=)", lambda v: lp.add_points("x", np.zeros((1, 2)), kind=v)),
    ]
    assert _leaks(calls) == []


def test_analysis_arguments(ge, ge_fm, tmp_path, monkeypatch):
    """The fits, the noise grid, the latent helpers and scan sets (234 leaks before, session 26;
    refine(max_iter=inf) was an UnboundLocalError, refine_sqe(qmax=1e300) an OverflowError)."""
    from fcinv_widgets.analysis.latent import decode_ray, latent_stats
    from fcinv_widgets.analysis.noise_grid import run_noise_grid
    from fcinv_widgets.analysis.refine import noise_dispersion, refine, refine_sqe
    from fcinv_widgets.models import load_model
    from fcinv_widgets.scans import simulate_scans

    monkeypatch.chdir(tmp_path)  # ScanSet.save("abc") writes a file named abc
    th = ge_fm.reference_theta
    img = ge_fm.spectra(th)[0]
    vae = load_model("ge-vae")
    ss = simulate_scans(ge, 100.0, [0.0, 30.0], qmax=2.0)

    def pred(x):
        return vae.predict(x, n_samples=4, reconstruct=False).mean

    th2 = np.stack([th, 1.02 * th])  # R² needs two test spectra at least, and FCs that differ
    img2 = ge_fm.spectra(th2)

    def grid(**kw):
        args = dict(backgrounds=(0.1,), counts=(30.0,), progress=False) | kw
        return run_noise_grid(pred, args.pop("spectra", img2), th2, ["a"] * 8, **args)

    calls = [
        ("refine(spectrum)", lambda v: refine(ge_fm, v, max_iter=1)),
        ("refine(start=)", lambda v: refine(ge_fm, img, start=v, max_iter=1)),
        ("refine(domain=)", lambda v: refine(ge_fm, img, domain=v, max_iter=1)),
        ("refine(max_iter=)", lambda v: refine(ge_fm, img, max_iter=v, anneal=(1.0,))),
        ("refine(tol=)", lambda v: refine(ge_fm, img, tol=v, max_iter=1)),
        ("refine(anneal=)", lambda v: refine(ge_fm, img, anneal=v, max_iter=1)),
        ("refine_sqe(spectrum)", lambda v: refine_sqe(ge, v, 5.0, max_iter=1)),
        ("refine_sqe(ei_mev=)", lambda v: refine_sqe(ge, img, 5.0, ei_mev=v, max_iter=1)),
        ("refine_sqe(qmax=)", lambda v: refine_sqe(ge, img, 5.0, qmax=v, max_iter=1)),
        ("refine_sqe(start=)", lambda v: refine_sqe(ge, img, 5.0, start=v, max_iter=1)),
        ("refine_sqe(prior_scale=)", lambda v: refine_sqe(ge, img, 5.0, prior_scale=v, max_iter=1)),
        ("refine_sqe(n_outer=)", lambda v: refine_sqe(ge, img, 5.0, n_outer=v, max_iter=1)),
        ("refine_sqe(max_iter=)", lambda v: refine_sqe(ge, img, 5.0, max_iter=v)),
        ("refine_sqe(stiffness=)", lambda v: refine_sqe(ge, img, 5.0, stiffness=v, max_iter=1)),
        ("noise_dispersion", noise_dispersion),
        ("decode_ray(z0=)", lambda v: decode_ray(vae, v, np.zeros(20))),
        ("decode_ray(n=)", lambda v: decode_ray(vae, np.zeros(20), np.ones(20), n=v)),
        ("latent_stats", lambda v: latent_stats(v, np.zeros((3, 20)))),
        ("run_noise_grid(spectra=)", lambda v: grid(spectra=v)),
        ("run_noise_grid(backgrounds=)", lambda v: grid(backgrounds=v)),
        ("run_noise_grid(counts=)", lambda v: grid(counts=v)),
        ("run_noise_grid(seed=)", lambda v: grid(seed=v)),
        ("ScanSet.add_noise(background)", lambda v: ss.add_noise(v, 30.0)),
        ("ScanSet.add_noise(counts)", lambda v: ss.add_noise(0.1, v)),
        ("ScanSet.add_noise(seed=)", lambda v: ss.add_noise(0.1, 30.0, seed=v)),
        ("ScanSet.add_noise(peak_percentile=)", lambda v: ss.add_noise(0.1, 30.0, peak_percentile=v)),
        ("ScanSet.save", ss.save),
    ]
    assert _leaks(calls, seconds=5) == []


def test_planner_and_dataset_arguments(ge, ge_fm, tmp_path, monkeypatch):
    """The orientation planner, coverage banks and datasets (192 leaks of 504 before, session 26)."""
    from fcinv_widgets.analysis.planner import coverage_bank, plan_orientations
    from fcinv_widgets.dataset import Dataset, generate_dataset

    monkeypatch.chdir(tmp_path)
    th, dom = ge_fm.reference_theta, ge.domain
    bank = coverage_bank(ge, [0.0, 30.0, 60.0], 100.0, qmax=2.0, progress=False, cache=False)

    def plan(**kw):
        return plan_orientations(bank, ge_fm, kw.pop("estimate", th), kw.pop("domain", dom), **kw)

    def data(**kw):
        args = dict(material="Ge", out=tmp_path / "d.h5", n_train=4, n_test=4, progress=False) | kw
        try:
            return generate_dataset(**args)
        finally:
            for f in tmp_path.glob("*.h5*"):
                f.unlink()

    def bank_of(**kw):
        args = dict(material=ge, angles_deg=[0.0], ei_mev=100.0, qmax=2.0, progress=False, cache=False) | kw
        return coverage_bank(**args)

    calls = [("coverage_bank(" + k + "=)", lambda v, k=k: bank_of(**{k: v})) for k in ("angles_deg", "ei_mev", "u")]
    calls += [("coverage_bank(qmax=)", lambda v: bank_of(qmax=2.0 if isinstance(v, float) and v > 10 else v))]
    keys = ("estimate", "domain", "measured_deg", "candidates_deg", "n", "background", "counts", "prior_sigma")
    keys += ("criterion", "focus", "count_time_s", "move_s_per_deg", "last_angle_deg", "n_samples")
    calls += [(f"plan_orientations({k}=)", lambda v, k=k: plan(**{k: v})) for k in keys]
    keys = ("material", "out", "n_train", "seed", "candidates", "sigma_mev", "domain", "nuisance", "reference")
    calls += [(f"generate_dataset({k}=)", lambda v, k=k: data(**{k: v})) for k in keys]
    calls += [("Dataset", Dataset)]
    assert _leaks(calls, seconds=5) == []


def test_sqe_planner_and_scan_inference_arguments(ge, ge_fm, tmp_path, monkeypatch):
    """The S(Q,E) planner and fit, pixel information, scan inference and its physics fits (session
    27: 478 leaks of 988 before, AttributeErrors from a material or bank of another type among them)."""
    from fcinv_widgets.analysis.planner import (
        check_scan_fit_sigma,
        fit_scans_sqe,
        hits_bank,
        pixel_information,
        plan_orientations_sqe,
    )
    from fcinv_widgets.analysis.scan_inference import infer_scans, refine_scan_inference
    from fcinv_widgets.models import load_model
    from fcinv_widgets.scans import simulate_scans

    monkeypatch.chdir(tmp_path)
    th = ge_fm.reference_theta
    bank = hits_bank(ge, [0.0, 60.0], 80.0, qmax=2.0, cache=False)
    ss = simulate_scans(ge, 80.0, [0.0, 60.0], qmax=2.0, progress=False)
    net = load_model("ge-resnet")
    base = infer_scans(net, ss, n_samples=2)
    calls = [
        ("pixel_information(fm)", lambda v: pixel_information(v, th, ge.domain)),
        ("pixel_information(theta)", lambda v: pixel_information(ge_fm, v, ge.domain)),
        ("pixel_information(domain)", lambda v: pixel_information(ge_fm, th, v)),
        ("pixel_information(background)", lambda v: pixel_information(ge_fm, th, ge.domain, background=v)),
        ("pixel_information(rel_step)", lambda v: pixel_information(ge_fm, th, ge.domain, rel_step=v)),
    ]

    def plan(**kw):
        return plan_orientations_sqe(**(dict(material=ge, bank=bank, estimate=th, n=1) | kw))

    def fit(**kw):
        return fit_scans_sqe(**(dict(material=ge, bank=bank, images=ss.scans[:1], angles_deg=[0.0], max_iter=1) | kw))

    def scans(**kw):
        return infer_scans(**(dict(model=net, scans=ss, n_samples=2) | kw))

    def refit(**kw):
        return refine_scan_inference(**(dict(res=base, ss=ss, material=ge, temperature_k=5.0, max_iter=1) | kw))

    keys = ("material", "bank", "estimate", "measured_deg", "candidates_deg", "n", "temperature_k", "background")
    keys += ("counts", "prior_sigma", "criterion", "focus", "count_time_s", "move_s_per_deg", "last_angle_deg")
    calls += [(f"plan_orientations_sqe({k}=)", lambda v, k=k: plan(**{k: v})) for k in keys + ("allow_repeat", "profile")]
    keys = ("material", "bank", "images", "angles_deg", "temperature_k", "start", "prior_sigma", "dispersion")
    keys += ("n_outer", "anneal", "max_iter", "stiffness", "fit_inactive", "prior_scale")
    calls += [(f"fit_scans_sqe({k}=)", lambda v, k=k: fit(**{k: v})) for k in keys]
    keys = ("model", "scans", "full", "angles_deg", "reference", "domain", "n_samples", "seed", "batch")
    calls += [(f"infer_scans({k}=)", lambda v, k=k: scans(**{k: v})) for k in keys + ("temperature_k", "clip_percentile", "raw")]
    keys = ("res", "ss", "material", "temperature_k", "domain", "single_scan_limit", "full_data_limit", "progress", "edge_domain")
    calls += [(f"refine_scan_inference({k}=)", lambda v, k=k: refit(**{k: v})) for k in keys]
    one = fit()

    def check(**kw):  # session 46: the scan fit's σ check (session 45) was not fuzzed
        return check_scan_fit_sigma(**(dict(material=ge, bank=bank, fit=one, n_draws=2) | kw))

    keys = ("material", "bank", "fit", "n_draws", "seed", "progress", "scheduler")
    calls += [(f"check_scan_fit_sigma({k}=)", lambda v, k=k: check(**{k: v})) for k in keys]
    assert _leaks(calls, seconds=5) == []
    # a preset's name is a material
    assert np.array_equal(plan(material="Ge").angles_deg, plan().angles_deg)


def test_evaluation_trust_and_ensemble_helper_arguments(ge, ge_fm, tmp_path, monkeypatch):
    """Coverage/reliability/metrics and their plots, the trust-limit helpers, the ensemble's domain
    widening and file reader (session 27: 361 leaks of 741 before)."""
    import matplotlib

    matplotlib.use("Agg")
    from fcinv_widgets.analysis import evaluation as ev
    from fcinv_widgets.analysis import trust_calibration as tc
    from fcinv_widgets.ensemble.domain import widen
    from fcinv_widgets.ensemble.fcsets import read_ensemble_h5
    from fcinv_widgets.models import load_model

    monkeypatch.chdir(tmp_path)
    net = load_model("ge-resnet")
    th = ge_fm.reference_theta
    specs = ge_fm.spectra(np.stack([th, th * 1.01]))
    pars = np.stack([ge.reference_params[ge.active]] * 2)
    t = np.ones((5, 8))
    calls = []
    for i, nm in enumerate(("true", "mean", "std")):
        calls.append((f"coverage({nm})", lambda v, i=i: ev.coverage(*[v if j == i else t for j in range(3)])))
        calls.append((f"reliability({nm})", lambda v, i=i: ev.reliability(*[v if j == i else t for j in range(3)])))
    calls += [
        ("coverage(k=)", lambda v: ev.coverage(t, t, t, k=v)),
        ("reliability(levels=)", lambda v: ev.reliability(t, t, t, levels=v)),
    ]

    def metrics(**kw):
        return ev.evaluate_model(**(dict(model=net, spectra=specs, params=pars, n_samples=2) | kw))

    calls += [
        (f"evaluate_model({k}=)", lambda v, k=k: metrics(**{k: v})) for k in ("model", "spectra", "params", "n_samples", "seed")
    ]
    calls += [
        ("plot_parity(true)", lambda v: ev.plot_parity(v, t, ["a"] * 8)),
        ("plot_parity(names)", lambda v: ev.plot_parity(t, t, v)),
        ("plot_r2_bars", ev.plot_r2_bars),
        ("plot_reliability", ev.plot_reliability),
        ("draw_truths(material)", lambda v: tc.draw_truths(v, 2, 0)),
        ("draw_truths(n)", lambda v: tc.draw_truths(ge, v, 0)),
        ("draw_truths(seed)", lambda v: tc.draw_truths(ge, 2, v)),
        ("limits_of(rows)", tc.limits_of),
        ("limits_of(level=)", lambda v: tc.limits_of([], level=v)),
        ("limits_of(min_cases=)", lambda v: tc.limits_of([], min_cases=v)),
    ]

    def cases(**kw):
        return tc.network_cases(**(dict(models={"r": net}, material=ge, n_truths=1, n_samples=2, qmax=2.0) | kw))

    keys = ("models", "material", "n_truths", "seed", "cells", "angles_deg", "ei_mev", "temperature_k", "qmax", "n_samples")
    calls += [(f"network_cases({k}=)", lambda v, k=k: cases(**{k: v})) for k in keys]
    lo, hi = np.array([1.0, -2.0]), np.array([2.0, -1.0])
    calls += [
        (f"widen({k}=)", lambda v, k=k: widen(**(dict(lo=lo, hi=hi) | {k: v})))
        for k in ("lo", "hi", "low", "high", "mode", "center")
    ]
    calls += [("read_ensemble_h5", read_ensemble_h5)]
    assert _leaks(calls, seconds=5) == []


def test_damaged_ensemble_file_is_one_line(tmp_path):
    """An HDF5 file that says it is an ensemble but lacks its groups: one line, not a KeyError."""
    import h5py

    from fcinv_widgets.ensemble.fcsets import FORMAT, VERSION, read_ensemble_h5

    p = tmp_path / "ens.h5"
    with h5py.File(p, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
    with pytest.raises(FcinvError, match="damaged ensemble file"):
        read_ensemble_h5(p)
    with pytest.raises(FcinvError, match="not an fcinv ensemble file"):
        (tmp_path / "x.h5").write_bytes(b"")
        h5py.File(tmp_path / "x.h5", "w").close()
        read_ensemble_h5(tmp_path / "x.h5")


def test_ensemble_stage_arguments(ge, tmp_path, monkeypatch):
    """The uMLFF ensemble stage's Python calls check every argument before anything runs (session 27:
    126 leaks of 437 before — `run_material(specs=…, models=…, mesh=…)`, `find_spec`,
    `get_calculator`, `supercell_for_length` were TypeErrors/AttributeErrors/numpy AxisErrors)."""
    from fcinv_widgets.ensemble.calculators import available_models, find_spec, get_calculator
    from fcinv_widgets.ensemble.fcsets import supercell_for_length
    from fcinv_widgets.ensemble.workflow import run_material

    monkeypatch.chdir(tmp_path)
    specs = available_models()

    def run(**kw):  # a model name no registry has: every argument is checked before that is looked up
        args = dict(material="Ge", specs=specs, out=tmp_path / "e.h5", models=["no-such-model"], serial=True, progress=False)
        return run_material(**(args | kw | {"log": lambda line: None}))

    keys = ("material", "specs", "out", "models", "supercell", "min_length", "relax", "displacement", "mesh", "serial")
    keys += ("workers", "from_h5", "include_reference", "widen_mode", "summary_path", "plot", "progress")
    calls = [(f"run_material({k}=)", lambda v, k=k: run(**{k: v})) for k in keys]
    calls += [
        ("supercell_for_length(lattice)", lambda v: supercell_for_length(v, 10.0)),
        ("supercell_for_length(min_length)", lambda v: supercell_for_length(ge.crystal.lattice, v)),
        ("find_spec(name)", lambda v: find_spec(v, specs)),
        ("find_spec(specs)", lambda v: find_spec("CHGNet-0.3.0", v)),
        ("get_calculator(name)", get_calculator),
        ("get_calculator(device=)", lambda v: get_calculator("no-such-model", device=v)),
    ]
    assert _leaks(calls, seconds=5) == []
    with pytest.raises(FcinvError, match="displacement"):
        run(displacement=2.0, models=None)  # 2 Å: far outside the harmonic range


def test_what_a_student_passes_next_is_one_line(ge, ge_fm):
    """Session 50's notebook probe: ``plot_spectrum(frequencies=fm.frequencies(theta))`` ((1, nq, modes),
    what the forward model returns) failed deep in matplotlib, and ``simulate_scans(forward_model)``
    with an AttributeError. The first is now drawn, the second one line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fcinv_widgets.errors import GridMismatchError
    from fcinv_widgets.plotting import plot_spectrum
    from fcinv_widgets.scans import simulate_scans

    th = ge_fm.reference_theta
    img, f = ge_fm.spectra(th)[0], ge_fm.frequencies(th)
    assert f.ndim == 3 and f.shape[0] == 1
    ax = plot_spectrum(img, ge.grid, frequencies=f)
    assert len(ax.lines[0].get_xdata()) == f[0].size
    with pytest.raises(GridMismatchError, match=r"frequencies must be \(nq = 140, modes\)"):
        plot_spectrum(img, ge.grid, frequencies=f[0, :70])
    with pytest.raises(FcinvError, match="frequencies"):
        plot_spectrum(img, ge.grid, frequencies="fast")
    plt.close("all")
    with pytest.raises(FcinvError, match="simulate_scans takes a Material .*got ForwardModel"):
        simulate_scans(ge_fm, 80.0, [0.0], qmax=2.0, progress=False)


def test_npz_readers_name_the_file_they_were_given(tmp_path):
    """An HDF5 file handed to a .npz reader (a latent map, a coverage or mask bank, a spectrum) got
    numpy's advice to load it "unsafely" as a pickle (session 49's widgets probe); now its kind is named."""
    import h5py

    from fcinv_widgets.analysis.latent import LatentMap
    from fcinv_widgets.analysis.planner import CoverageBank
    from fcinv_widgets.measurement import load_bank
    from fcinv_widgets.validate import open_npz

    h5 = tmp_path / "grid.h5"
    with h5py.File(h5, "w") as f:
        f["x"] = np.zeros(3)
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(3))
    empty = tmp_path / "e.npz"
    empty.write_bytes(b"")
    for path, kind in ((h5, "an HDF5 file"), (npy, "a single .npy array"), (empty, "an empty file")):
        for load in (LatentMap.load, CoverageBank.load, load_bank, lambda p: open_npz(p, "x")):
            with pytest.raises(FcinvError, match=f"not a readable .*: it is {kind}, not a .npz archive") as err:
                load(path)
            assert "allow_pickle" not in str(err.value) and "unsafe" not in str(err.value)
    good = tmp_path / "g.npz"
    np.savez(good, a=np.arange(3))
    with open_npz(good, "x") as z:
        assert z["a"].tolist() == [0, 1, 2]
