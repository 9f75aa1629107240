"""fcinv infer-scans: per-scan predictions from a scan-set file, saved result, table and plot."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    from fcinv_widgets import get_material
    from fcinv_widgets.scans import simulate_scans

    ss = simulate_scans(get_material("Ge"), 80, [0, 30, 60], temperature=5, qmax=4.5, progress=False)
    path = tmp_path_factory.mktemp("scans") / "s.h5"
    ss.save(path)
    return path


def test_cli_infer_scans_round_trip(trained, scan_file, tmp_path, capsys):
    from fcinv_widgets.analysis.scan_inference import ScanInference
    from fcinv_widgets.cli import main
    from fcinv_widgets.errors import FcinvError

    model_dir, _ = trained
    out, png = tmp_path / "r.h5", tmp_path / "r.png"
    assert (
        main(
            [
                "infer-scans",
                "--model",
                str(model_dir),
                "--scans",
                str(scan_file),
                "--n-samples",
                "5",
                "--out",
                str(out),
                "--plot",
                str(png),
                "--reference",
                "dft",
                "--json",
            ]
        )
        == 0
    )
    d = json.loads(capsys.readouterr().out)
    assert d["angles_deg"] == [0.0, 30.0, 60.0] and len(d["mse"]) == 3 and len(d["reference"]) == 8
    # where the network's answers lie in its training box (models.domain_edge): Ge at 5 K is inside
    assert d["domain_edge"]["at_edge"] is False and len(d["domain_edge"]["edge_sigmas"]) == 8
    assert set(d["scans_at_edge_deg"]) <= {0.0, 30.0, 60.0}
    assert png.stat().st_size > 10_000
    res = ScanInference.load(out)
    np.testing.assert_allclose(res.mse, d["mse"])
    assert res.inputs.shape == (3, 140, 140) and np.isnan(res.inputs).any() == (min(res.coverage) < 1)
    assert "full data" in res.table()
    with pytest.raises(FcinvError, match="not an fcinv scan-inference"):
        ScanInference.load(scan_file)


def test_cli_infer_scans_refuses_other_material(scan_file, tmp_path):
    from fcinv_widgets.cli import main

    assert main(["infer-scans", "--model", "nb-vae", "--scans", str(scan_file)]) == 2
