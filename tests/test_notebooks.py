"""Every tutorial notebook runs top to bottom (small size: FCINV_SMALL=1)."""

import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name}: outputs not stripped"
    os.environ["FCINV_SMALL"] = "1"
    # the kernel draws its figures as a notebook does (the inline backend, PNG outputs): with Agg,
    # plt.show() drew nothing and a figure's draw-time errors and warnings went unseen (session 47)
    before = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
        client.execute()
    finally:
        if before is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = before
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors
    warned = [
        line
        for o in outputs
        if o.get("output_type") == "stream" and o.get("name") == "stderr"
        for line in o.get("text", "").splitlines()
        if "Warning" in line
    ]
    assert not warned, f"{path.name}: warnings in the outputs: {warned[:3]}"
    if any("plt.show()" in c.source for c in nb.cells if c.cell_type == "code"):
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name}: no figure was drawn"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_valid_nbformat(path):
    """Every notebook validates against its nbformat schema without warnings (e.g. a cell added
    without an ``id``, which nbformat will refuse in a future version)."""
    import warnings

    import nbformat

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nbformat.validate(nbformat.read(path, as_version=nbformat.NO_CONVERT))
