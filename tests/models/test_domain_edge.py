"""An answer at the edge of a model's training box is marked (models.domain_edge): the record, the
`invert` / `infer-scans` JSON and report, and the shipped models on crystals inside and outside."""

import json

import numpy as np
import pytest

from fcinv_widgets.errors import FcinvError
from fcinv_widgets.models.domain_edge import EDGE_CHECKED_FCS, EDGE_SIGMA_LIMIT, domain_edge

BOX = np.array([[-5.0, -1.0], [-4.0, 0.0], [-1.0, 1.0], [0.0, 1.0], [-1.0, 0.0], [-0.3, 0.1], [-0.1, 0.2], [-0.1, 0.1]])


def test_distance_to_the_edge_in_sigma():
    mean = BOX.mean(1)
    std = np.full(8, 0.01)
    d = domain_edge(mean, std, BOX)
    assert d["at_edge"] is False and d["fcs"] == [] and d["reason"] is None
    assert d["checked"] == EDGE_CHECKED_FCS and d["limit_sigma"] == EDGE_SIGMA_LIMIT
    assert np.allclose(d["edge_sigmas"], (BOX[:, 1] - BOX[:, 0]) / 2 / 0.01)
    # FC1 0.3σ inside its lower edge, FC2 2σ beyond its upper one, FC6 beyond but unchecked
    m = mean.copy()
    m[1], m[2], m[6] = -4.0 + 0.003, 1.02, 0.5
    d = domain_edge(m, std, BOX, names=[f"F{j}" for j in range(8)])
    assert d["at_edge"] is True and d["fcs"] == ["F1", "F2"] and d["edges"] == [-4.0, 1.0]
    assert d["edge_sigmas"][1] == pytest.approx(0.3) and d["edge_sigmas"][2] == pytest.approx(-2.0)
    assert d["edge_sigmas"][6] < 0
    assert "F1 -3.997 ± 0.010 eV/Å² is 0.3σ inside" in d["reason"] and "F2 +1.020 ± 0.010 eV/Å² is 2.0σ beyond" in d["reason"]
    # a wider σ brings an answer to the edge; checking every FC catches FC6
    assert domain_edge(mean, np.full(8, 10.0), BOX)["at_edge"] is True
    assert domain_edge(m, std, BOX, checked=8)["fcs"] == ["FC1", "FC2", "FC6"]
    # σ = 0 (an uncalibrated network): inside is inside, beyond is beyond
    assert domain_edge(mean, np.zeros(8), BOX)["at_edge"] is False
    assert domain_edge(m, np.zeros(8), BOX)["fcs"] == ["FC2"]
    json.dumps(domain_edge(m, np.zeros(8), BOX), allow_nan=False)
    # a warning only where the model adopted it, and only at the edge
    assert d["warning"] is False and domain_edge(m, std, BOX, warns=True)["warning"] is True
    assert domain_edge(mean, std, BOX, warns=True)["warning"] is False


@pytest.mark.parametrize(
    "args",
    [
        (np.zeros(7), np.ones(8), BOX),
        (np.zeros(8), np.ones(8), BOX[:, :1]),
        (np.full(8, np.nan), np.ones(8), BOX),
        (np.zeros(8), np.full(8, np.inf), BOX),
    ],
)
def test_bad_arguments_are_one_line(args):
    with pytest.raises(FcinvError, match="domain_edge needs"):
        domain_edge(*args)
    with pytest.raises(FcinvError, match="warns must be true or false"):
        domain_edge(np.zeros(8), np.ones(8), BOX, warns="yes")


def _inside_and_outside(material: str):
    """A material and two images on its grid: its reference crystal and one whose 1NN xx bond is
    20 % of its training box's width stiffer than the box's stiffest."""
    from fcinv_widgets.materials import get_material

    mat = get_material(material)
    fm = mat.forward_model()
    box = np.asarray(mat.domain)
    th = fm.reference_theta.copy()
    out = th.copy()
    lo = box[0, 0] if th[0] < 0 else box[0, 1]
    out[0] = lo - np.sign(-th[0]) * 0.2 * (box[0, 1] - box[0, 0])
    img = fm.spectra(np.stack([th, out]))
    assert np.isfinite(img).all()
    return mat, img


@pytest.fixture(scope="module")
def ge_images():
    return _inside_and_outside("Ge")


@pytest.mark.parametrize("name", ["ge-resnet", "ge-vae"])
def test_shipped_models_flag_a_crystal_outside_their_box(name, ge_images):
    from fcinv_widgets.models import load_model

    ge, img = ge_images
    m = load_model(name)
    assert np.array_equal(m.domain, np.asarray(m.config["domain"], float))
    inside = m.invert(img[0], ood=False, refine=False)
    assert inside["domain_edge"]["at_edge"] is False
    assert min(inside["domain_edge"]["edge_sigmas"][:4]) > 2  # the reference sits well inside
    outside = m.invert(img[1], ood=False, refine=False)
    e = outside["domain_edge"]
    assert e["at_edge"] is True and e["fcs"][0] == "FC0 (1NN xx)"
    # the answer cannot follow the truth: it sits near the edge, far from the true -6.5 eV/Å²
    assert outside["fc_mean"][0] > -6.2


def test_invert_and_infer_scans_report_it(ge_images, tmp_path, capsys):
    from fcinv_widgets.spectrum_io import write_spectrum
    from fcinv_widgets.analysis.scan_inference import infer_scans
    from fcinv_widgets.cli import main
    from fcinv_widgets.models import load_model

    ge, img = ge_images
    for i, flagged in ((0, False), (1, True)):
        p = tmp_path / f"s{i}.h5"
        write_spectrum(p, img[i], ge.grid, material="Ge")
        assert main(["invert", "--model", "ge-resnet", "--spectrum", str(p), "--json", "--no-progress"]) == 0
        out = capsys.readouterr()
        d = json.loads(out.out)
        assert d["domain_edge"]["at_edge"] is flagged
        assert "training box" not in out.err  # a record, not a warning (docs/results.md "Session 29")
        assert main(["invert", "--model", "ge-resnet", "--spectrum", str(p), "--no-progress"]) == 0
        text = capsys.readouterr().out
        assert ("AT THE EDGE" in text) is flagged and "training box" in text
    # the per-scan record: three copies of the outside image as "scans"
    net = load_model("ge-resnet")
    res = infer_scans(net, np.stack([img[1]] * 2 + [img[0]]), full=img[1], angles_deg=[0.0, 10.0, 20.0], n_samples=2)
    assert res.meta["domain_edge"]["at_edge"] is True and res.meta["scans_at_edge"] == [0, 1]


def test_nb_resnet_warns_at_the_edge_the_others_record_it(tmp_path, capsys):
    """`nb-resnet` met session 29's pre-registered rule (``edge_warn`` in its ``trust.json``): an
    answer at its box's edge is a warning on stderr and ``"warning": true``; `nb-vae` (failed it)
    records the same answer without a warning. ``infer_scans`` warns on the full data only."""
    from fcinv_widgets.analysis.scan_inference import infer_scans
    from fcinv_widgets.cli import main
    from fcinv_widgets.models import load_model
    from fcinv_widgets.spectrum_io import write_spectrum

    nb, img = _inside_and_outside("Nb")
    assert load_model("nb-resnet").edge_warns is True
    assert not any(load_model(n).edge_warns for n in ("nb-vae", "ge-resnet", "ge-vae", "nb-resnet-paper"))
    for i, flagged in ((0, False), (1, True)):
        p = tmp_path / f"nb{i}.h5"
        write_spectrum(p, img[i], nb.grid, material="Nb")
        for model, warns in (("nb-resnet", True), ("nb-vae", False)):
            assert main(["invert", "--model", model, "--spectrum", str(p), "--json", "--no-progress"]) == 0
            out = capsys.readouterr()
            e = json.loads(out.out)["domain_edge"]
            assert e["at_edge"] is flagged and e["warning"] is (flagged and warns)
            assert ("training box's edge" in out.err) is (flagged and warns)
    net = load_model("nb-resnet")
    # one single-orientation scan: the record only (the rule was validated on full spectra)
    one = net.invert(img[1], ood=False, refine=False, single_scan=True)["domain_edge"]
    assert one["at_edge"] is True and one["warning"] is False
    res = infer_scans(net, np.stack([img[1], img[0]]), full=img[1], angles_deg=[0.0, 10.0], n_samples=2)
    assert res.meta["domain_edge"]["warning"] is True and res.meta["scans_at_edge"] == [0]
    res = infer_scans(net, np.stack([img[1], img[1]]), full=img[0], angles_deg=[0.0, 10.0], n_samples=2)
    assert res.meta["domain_edge"]["warning"] is False and res.meta["scans_at_edge"] == [0, 1]
