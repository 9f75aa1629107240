"""``fcinv trust-calibrate`` (analysis.trust_calibration): the single-scan trust limit measured on
simulated measurements of drawn truths, from the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fcinv_widgets.errors import FcinvError


def test_truths_are_seeded_stable_and_do_not_depend_on_the_first_principles_set():
    from fcinv_widgets import get_material
    from fcinv_widgets.analysis.trust_calibration import draw_truths

    ge = get_material("Ge")
    a = draw_truths(ge, 4, seed=7)
    b = draw_truths(ge, 4, seed=7, include_dft=False)
    assert [n for n, _ in a] == ["dft", "drawn 1", "drawn 2", "drawn 3"]
    assert [n for n, _ in b] == ["drawn 1", "drawn 2", "drawn 3"]
    for (_, x), (_, y) in zip(a[1:], b):
        assert np.array_equal(x, y)
    act = np.asarray(ge.reference_params)[ge.active]
    for _, t in a[1:]:  # the active FCs within ±15 % of the reference, every set stable
        assert np.all(np.abs(t[ge.active] / act - 1) <= 0.15 + 1e-12)
        assert ge.forward_model().with_backend("numpy").is_stable(t[ge.active])[0]
    assert not np.array_equal(a[1][1], draw_truths(ge, 2, seed=8)[1][1])
    with pytest.raises(FcinvError, match="truths"):
        draw_truths(ge, 0, seed=1)


def test_limits_of_gives_the_sidak_limit_for_gaussian_errors():
    from scipy.stats import norm

    from fcinv_widgets.analysis.trust_calibration import limits_of

    rng = np.random.default_rng(0)
    rows = [{"model": "m", "set": "single scan", "z": z.tolist()} for z in rng.standard_normal((8000, 8))]
    rows += [{"model": "m", "set": "full data", "z": z.tolist()} for z in 2 * rng.standard_normal((10, 8))]
    res = limits_of(rows, 0.95)["m"]
    assert res["single scan"]["limit"] == pytest.approx(norm.ppf(1 - 0.05 / 16), abs=0.06)
    # the default is the shipped models' level, 99 %: Šidák's Φ⁻¹(1 − 0.01/16) = 3.23
    assert limits_of(rows)["m"]["single scan"]["limit"] == pytest.approx(norm.ppf(1 - 0.01 / 16), abs=0.1)
    assert res["single scan"]["cov1"] == pytest.approx(0.683, abs=0.01) and res["single scan"]["n"] == 8000
    assert "full data" not in res  # fewer than 20 cases: no limit


def test_a_case_is_what_invert_answers_for_the_same_image():
    """The batched answer of a case equals ``invert`` on the same simulated image (a ResNet is
    deterministic), with σ from the single-scan calibration for a scan and the S(Q,E) one for the
    full data."""
    from fcinv_widgets import get_material
    from fcinv_widgets.analysis.expio import Spectrum
    from fcinv_widgets.analysis.trust_calibration import draw_truths, network_cases, simulated_images
    from fcinv_widgets.models import load_model

    ge = get_material("Ge")
    m = load_model("ge-resnet")
    rows = network_cases({"ge-resnet": m}, ge, n_truths=1, seed=5, cells=[(0.05, 300.0)], angles_deg=[30.0], qmax=3.0)
    assert [r["set"] for r in rows] == ["full data", "single scan"]
    t = draw_truths(ge, 2, seed=5)[1][1]
    imgs = simulated_images(ge, t, [(0.05, 300.0)], [30.0], 80.0, 5.0, 3.0, index=1)
    meta = {"intensity": "one-phonon-sqe", "origin": "simulated", "temperature_k": 5.0, "ei_mev": 80.0}
    for r, (_, _, _, _, img) in zip(rows, imgs):
        single = r["set"] == "single scan"
        out = m.invert(Spectrum(img, "x", "array", None, dict(meta)), ood=False, refine=False, single_scan=single)
        assert out["sigma_regime"] == ("measured-sqe-scan" if single else "measured-sqe")
        np.testing.assert_allclose(r["mean"], out["fc_mean"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(r["std"], out["fc_std"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(r["true"], t[ge.active])


def test_cli_writes_a_limit_the_model_then_uses(tmp_path, capsys):
    from fcinv_widgets.cli import main
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.trust import TRUST_FILE, TRUST_LEVEL

    src = load_model("nb-resnet").path.parent
    dst = tmp_path / "nb-resnet"
    shutil.copytree(src, dst)
    (dst / TRUST_FILE).unlink(missing_ok=True)
    argv = ["trust-calibrate", "--model", str(dst), "--truths", "4", "--angles", "0,60,120", "--cells", "0.05,300;0.2,30"]
    assert main([*argv, "--qmax", "4", "--write", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    res = d["limits"][str(dst)]
    assert res["single scan"]["n"] == 24 and "full data" not in res  # 4 truths × 3 angles × 2 cells; 8 full-data cases
    m = load_model(dst)
    assert m.single_scan_trust_limit == pytest.approx(res["single scan"]["limit"]) and m.trust_note is None
    rec = json.loads((dst / TRUST_FILE).read_text())
    assert rec["command"].startswith("fcinv trust-calibrate --model") and rec["n_cases"] == 24
    assert rec["level"] == d["level"] == TRUST_LEVEL and f"--level {TRUST_LEVEL:g}" in rec["command"]
    assert d["written"] == {str(dst): str(dst / TRUST_FILE)}


def test_cli_full_data_writes_the_measured_full_data_limit(tmp_path, capsys):
    """``--write --full-data``: the model then holds fits of several orientations to the measured
    full-data limit (20 full-data cases: 10 truths × 2 cells), and the command is recorded."""
    from fcinv_widgets.cli import main
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.trust import TRUST_FILE

    dst = tmp_path / "nb-resnet"
    shutil.copytree(load_model("nb-resnet").path.parent, dst)
    (dst / TRUST_FILE).unlink()
    argv = ["trust-calibrate", "--model", str(dst), "--truths", "10", "--angles", "0", "--cells", "0.05,300;0.2,30"]
    assert main([*argv, "--qmax", "3", "--write", "--full-data", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["limits"][str(dst)]
    assert res["full data"]["n"] == res["single scan"]["n"] == 20
    m = load_model(dst)
    assert m.full_data_trust_limit == pytest.approx(res["full data"]["limit"])
    assert m.trust_limit_for({"orientations": [0.0, 60.0]}) == pytest.approx(res["full data"]["limit"])
    assert m.single_scan_trust_limit == pytest.approx(res["single scan"]["limit"])
    assert json.loads((dst / TRUST_FILE).read_text())["command"].endswith("--write --full-data")


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--model", "ge-vae-paper"], "no calibrated σ"),
        (["--model", "ge-resnet", "nb-resnet"], "different materials"),
        (["--model", "ge-resnet", "--cells", "0.05"], "--cells"),
        (["--model", "ge-resnet", "--cells", "-1,30"], "--cells"),
        (["--model", "ge-resnet", "--level", "1.5"], "--level"),
        (["--model", "ge-resnet", "--angles", "0:10:0"], "step"),
        (["--model", "ge-resnet", "--truths", "1", "--angles", "0", "--cells", "0.05,300", "--qmax", "3", "--write"], "too few"),
        (["--model", "no-such-model"], "no-such-model"),
        (["--model", "ge-resnet", "--full-data"], "--write"),
        (
            [
                "--model",
                "ge-resnet",
                "--truths",
                "2",
                "--angles",
                "0,60,120,180",
                "--cells",
                "0.05,300;0.2,30",
                "--qmax",
                "3",
                "--write",
                "--full-data",
            ],
            "too few full-data",
        ),
    ],
)
def test_cli_refusals_are_one_line(extra, words, capsys):
    from fcinv_widgets.cli import main

    assert main(["trust-calibrate", *extra, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
