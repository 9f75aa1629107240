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


def _alarm(*_):
    raise _Accepted


def _leaks(calls, seconds: int = 0) -> list[str]:
    """Each call with each bad value: what escaped other than FcinvError/TraitError. ``seconds``:
    a case still running after that long took the value and is working — stopped, not a leak."""
    import signal

    out = []
    old = signal.signal(signal.SIGALRM, _alarm) if seconds else None
    try:
        for name, fn in calls:
            for label, v in BAD.items():
                if seconds:
                    signal.alarm(seconds)
                try:
                    fn(v)
                except (FcinvError, TraitError, _Accepted):
                    pass
                except Exception as exc:  # the leak this test is about
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

    def grid(**kw):
        args = dict(backgrounds=(0.1,), counts=(30.0,), progress=False) | kw
        return run_noise_grid(pred, args.pop("spectra", img[None]), th[None], ["a"] * 8, **args)

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
