"""A model's measured single-scan trust limit (``trust.json``): how it is measured, stored, refused and used."""

import json
import shutil

import numpy as np
import pytest

from fcinv_widgets.errors import FcinvError
from fcinv_widgets.models.trust import TRUST_FILE, TRUST_LEVEL, familywise_limit, load_trust_limit, save_trust_limit


def test_familywise_limit_is_the_sidak_limit_for_exact_independent_sigmas():
    """For z ~ N(0, 1) over 8 independent FCs, the 95 % quantile of max |z| is Šidák's
    Φ⁻¹(1 − 0.05/16) = 2.734; a σ twice too small doubles it; bad input is one error."""
    from scipy.stats import norm

    z = np.random.default_rng(0).standard_normal((40000, 8))
    k = familywise_limit(z)
    assert k == pytest.approx(norm.ppf(1 - 0.05 / 16), abs=0.03)
    assert familywise_limit(2 * z) == pytest.approx(2 * k)
    assert familywise_limit(z, level=0.68) < k
    for bad in (z[:10], z[:, 0], np.full((30, 8), np.nan)):
        with pytest.raises(FcinvError, match="20 cases"):
            familywise_limit(bad)
    with pytest.raises(FcinvError, match="level"):
        familywise_limit(z, level=1.0)


def test_trust_file_round_trip_and_refusals(tmp_path):
    ck = tmp_path / "model.pt"
    ck.write_bytes(b"weights")
    assert load_trust_limit(ck)[0] is None and TRUST_FILE in load_trust_limit(ck)[2]
    p = save_trust_limit(tmp_path, 3.25, level=0.95, n_cases=400)
    assert p == tmp_path / TRUST_FILE
    k, rec, note = load_trust_limit(ck)
    assert k == 3.25 and note is None and rec["n_cases"] == 400 and len(rec["model_sha256"]) == 64
    ck.write_bytes(b"other weights")  # measured for another checkpoint: not used, and said so
    k, _, note = load_trust_limit(ck)
    assert k is None and "another checkpoint" in note
    for bad in (0.5, 11, float("nan"), "x", None):
        with pytest.raises(FcinvError, match="single_scan_limit must be"):
            save_trust_limit(tmp_path, bad)  # type: ignore[arg-type]
        (tmp_path / TRUST_FILE).write_text(json.dumps({"single_scan_limit": bad}))
        with pytest.raises(FcinvError, match="single_scan_limit must be"):
            load_trust_limit(ck)
    for text in ("{", "[1, 2]"):
        (tmp_path / TRUST_FILE).write_text(text)
        with pytest.raises(FcinvError, match="not a readable trust-limit file"):
            load_trust_limit(ck)


def test_an_inverter_uses_its_measured_limit_for_single_scans_only(tmp_path):
    """``Inverter.single_scan_trust_limit``: the limit of the model's own ``trust.json``; without one
    (or one for another checkpoint) ``TRUST_NETWORK_SIGMA``, with ``trust_note`` saying why.
    ``trust_limit_for``: a fit of one orientation gets it, a fit of several or of the full range 2σ."""
    from fcinv_widgets.analysis.refine import TRUST_NETWORK_SIGMA
    from fcinv_widgets.models import load_model

    shipped = load_model("ge-vae")
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(shipped.path, d / "model.pt")
    m = load_model(d)
    assert m.single_scan_trust_limit == TRUST_NETWORK_SIGMA and TRUST_FILE in m.trust_note
    save_trust_limit(d, 3.5, level=0.95)
    m = load_model(d)
    assert m.single_scan_trust_limit == 3.5 and m.trust_note is None
    assert m.trust_limit_for({"orientations": [40.0]}) == 3.5
    for other in ({"orientations": [0.0, 40.0]}, {"orientations": None}, {}):
        assert m.trust_limit_for(other) == TRUST_NETWORK_SIGMA
    from types import SimpleNamespace  # a fit result object, not its dict

    assert m.trust_limit_for(SimpleNamespace(orientations=[40.0])) == 3.5
    assert m.trust_limit_for(SimpleNamespace(orientations=None)) == TRUST_NETWORK_SIGMA
    (d / TRUST_FILE).write_text(json.dumps({"single_scan_limit": 3.5, "model_sha256": "0" * 64}))
    m = load_model(d)
    assert m.single_scan_trust_limit == TRUST_NETWORK_SIGMA and "another checkpoint" in m.trust_note


def test_an_adopted_full_data_limit_holds_fits_of_several_orientations(tmp_path):
    """``full_data_limit`` in ``trust.json`` (rule D, session 21): fits of full data or several
    scans are held to it instead of 2σ, single scans still to the single-scan limit; a file
    measured for another checkpoint gives neither; a damaged value is one error."""
    from fcinv_widgets.analysis.refine import TRUST_NETWORK_SIGMA, fit_trust_limit
    from fcinv_widgets.models import load_model

    assert fit_trust_limit({"orientations": [0.0, 40.0]}, 3.5, 3.1) == 3.1
    assert fit_trust_limit({"orientations": None}, 3.5, 3.1) == 3.1
    assert fit_trust_limit({"orientations": [40.0]}, 3.5, 3.1) == 3.5
    assert fit_trust_limit({"orientations": [40.0]}, None, 3.1) == TRUST_NETWORK_SIGMA
    assert fit_trust_limit({"orientations": [0.0, 40.0]}, 3.5) == TRUST_NETWORK_SIGMA
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(load_model("nb-vae").path, d / "model.pt")
    save_trust_limit(d, 2.6, full_data_limit=3.1, level=0.99)
    m = load_model(d)
    assert (m.single_scan_trust_limit, m.full_data_trust_limit) == (2.6, 3.1)
    assert m.trust_limit_for({"orientations": [0.0, 60.0]}) == 3.1 and m.trust_limit_for({"orientations": [60.0]}) == 2.6
    rec = json.loads((d / TRUST_FILE).read_text())
    (d / TRUST_FILE).write_text(json.dumps(rec | {"model_sha256": "0" * 64}))
    m = load_model(d)
    assert m.full_data_trust_limit == m.single_scan_trust_limit == TRUST_NETWORK_SIGMA
    for bad in (0.2, "x", float("inf")):
        (d / TRUST_FILE).write_text(json.dumps(rec | {"full_data_limit": bad}))
        with pytest.raises(FcinvError, match="full_data_limit must be"):
            load_trust_limit(d / "model.pt")
        with pytest.raises(FcinvError, match="full_data_limit must be"):
            save_trust_limit(d, 2.6, full_data_limit=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["ge-vae", "ge-resnet", "nb-vae", "nb-resnet"])
def test_shipped_robust_models_carry_a_measured_limit_for_their_own_weights(name):
    """Every shipped robust model's trust.json was measured for the very weights it ships with
    (benchmarks/calibrate_trust.py) and records how."""
    from fcinv_widgets.models import load_model

    m = load_model(name)
    k, rec, note = load_trust_limit(m.path)
    assert note is None and m.single_scan_trust_limit == k
    assert rec["level"] == TRUST_LEVEL and rec["n_cases"] >= 100 and "calibrate_trust.py" in rec["command"]
    assert rec["measured"]["single scan"]["limit"] == k and f"--level {TRUST_LEVEL:g}" in rec["command"]
    # rule D (docs/results.md "Session 21"): the Nb models passed it and hold full data to their measured
    # full-data limit; the Ge models failed it and keep 2σ
    if name.startswith("nb-"):
        assert m.full_data_trust_limit == rec["full_data_limit"] == rec["measured"]["full data"]["limit"]
        assert rec["command"].endswith("--full-data")
    else:
        assert "full_data_limit" not in rec and m.full_data_trust_limit == 2.0


def test_rule_f_is_adopted_per_model_in_its_trust_file(tmp_path):
    """``edge_one_sided`` in ``trust.json`` (rule F): `ge-resnet` adopted it (session 29), `nb-resnet`
    and `nb-vae` too (session 31, the same scoring on Nb), `ge-vae` failed it and the paper models
    were not scored; a file measured for another checkpoint gives none; a value that is not
    true/false is one error."""
    from fcinv_widgets.models import load_model

    assert all(load_model(n).edge_one_sided is True for n in ("ge-resnet", "nb-resnet", "nb-vae"))
    assert not any(load_model(n).edge_one_sided for n in ("ge-vae", "ge-resnet-paper", "nb-vae-paper"))
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(load_model("nb-vae").path, d / "model.pt")
    save_trust_limit(d, 2.6, level=0.99, edge_one_sided=True)
    assert load_model(d).edge_one_sided is True
    rec = json.loads((d / TRUST_FILE).read_text())
    (d / TRUST_FILE).write_text(json.dumps(rec | {"model_sha256": "0" * 64}))
    assert load_model(d).edge_one_sided is False
    (d / TRUST_FILE).write_text(json.dumps(rec | {"edge_one_sided": "yes"}))
    with pytest.raises(FcinvError, match="edge_one_sided must be true or false"):
        load_trust_limit(d / "model.pt")
    (d / TRUST_FILE).write_text(json.dumps(rec | {"edge_warn": 1}))
    with pytest.raises(FcinvError, match="edge_warn must be true or false"):
        load_trust_limit(d / "model.pt")


def test_re_measuring_a_limit_keeps_the_rules_adopted_for_that_checkpoint(tmp_path):
    """``fcinv trust-calibrate --write`` on a checkpoint that adopted rule F or the edge warning
    keeps them (with the text saying how they were adopted); for another checkpoint it drops them
    (they were scored on the old weights)."""
    from fcinv_widgets.models import load_model

    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(load_model("nb-vae").path, d / "model.pt")
    save_trust_limit(d, 2.6, level=0.99, edge_one_sided=True, edge_one_sided_adopted="scored", edge_warn=True)
    save_trust_limit(d, 3.1, level=0.99, command="again")
    rec = json.loads((d / TRUST_FILE).read_text())
    assert rec["single_scan_limit"] == 3.1 and rec["command"] == "again"
    assert rec["edge_one_sided"] is True and rec["edge_one_sided_adopted"] == "scored" and rec["edge_warn"] is True
    m = load_model(d)
    assert m.edge_one_sided is True and m.edge_warns is True
    # an explicit value wins over the kept one
    save_trust_limit(d, 3.1, level=0.99, edge_warn=False)
    assert json.loads((d / TRUST_FILE).read_text())["edge_warn"] is False
    # another checkpoint: nothing kept
    (d / TRUST_FILE).write_text(json.dumps(rec | {"model_sha256": "0" * 64}))
    save_trust_limit(d, 3.0, level=0.99)
    rec = json.loads((d / TRUST_FILE).read_text())
    assert not any(k.startswith("edge_") for k in rec)
    # the shipped files: nb-resnet warns, ge-resnet is one-sided, and each says how it was adopted
    for name, key in (
        ("nb-resnet", "edge_warn"),
        ("ge-resnet", "edge_one_sided"),
        ("nb-resnet", "edge_one_sided"),
        ("nb-vae", "edge_one_sided"),
    ):
        shipped = json.loads((load_model(name).path.parent / TRUST_FILE).read_text())
        assert shipped[key] is True and "before" in shipped[f"{key}_adopted"]


def test_a_rule_is_adopted_only_for_the_checkpoint_it_was_scored_on(tmp_path):
    """``adopt_rule`` writes one of the ADOPTED_RULES with its text into the trust.json measured for
    this very checkpoint; an unknown rule, an empty text, a missing file or one of another
    checkpoint is one error, and the file is untouched."""
    from fcinv_widgets.models import load_model
    from fcinv_widgets.models.trust import adopt_rule

    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(load_model("nb-vae").path, d / "model.pt")
    with pytest.raises(FcinvError, match="no trust limit measured for this checkpoint"):
        adopt_rule(d, "edge_one_sided", "scored")
    save_trust_limit(d, 2.6, level=0.99, command="measured")
    before = (d / TRUST_FILE).read_text()
    for key, text, words in (
        ("edge_everything", "scored", "unknown rule"),
        ("edge_one_sided", "  ", "needs a text"),
        ("edge_one_sided", None, "needs a text"),
    ):
        with pytest.raises(FcinvError, match=words):
            adopt_rule(d, key, text)
    assert (d / TRUST_FILE).read_text() == before
    assert load_model(d).edge_one_sided is False
    adopt_rule(d / "model.pt", "edge_one_sided", "scored on 16 truths")
    rec = json.loads((d / TRUST_FILE).read_text())
    assert rec["edge_one_sided"] is True and rec["edge_one_sided_adopted"] == "scored on 16 truths"
    assert rec["single_scan_limit"] == 2.6 and rec["command"] == "measured" and list(rec)[-1] == "model_sha256"
    assert load_model(d).edge_one_sided is True
    # a file of another checkpoint: refused
    (d / TRUST_FILE).write_text(json.dumps(rec | {"model_sha256": "0" * 64}))
    with pytest.raises(FcinvError, match="measured for another checkpoint"):
        adopt_rule(d, "edge_warn", "scored")
