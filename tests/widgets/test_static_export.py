"""Issue 13: every widget's MIME bundle carries a static PNG and a meaningful text line, and its
current data is reachable from Python (``.data``, ``to_dataframe()``)."""

import base64
import io

import numpy as np
import pytest

from fcinv_widgets.widgets import LatentPicker, NoiseGridExplorer, OrientationScatter
from fcinv_testing.fakes import FakeDecoder, FakeMaterial, fake_latent_map, fake_noise_grid, fake_scan_inference, make_fake_grid


def _bundle_png(obj):
    from matplotlib.image import imread

    b = obj._repr_mimebundle_()
    data = b[0] if isinstance(b, tuple) else b
    assert "application/vnd.jupyter.widget-view+json" in data
    raw = base64.b64decode(data["image/png"])
    img = imread(io.BytesIO(raw))
    assert img.shape[0] > 200 and img.shape[1] > 300
    assert img[..., :3].std() > 0.05  # a figure, not a blank box
    return data["text/plain"], img


@pytest.fixture
def orient():
    mat = FakeMaterial(grid=make_fake_grid(30, 24))
    return OrientationScatter(fake_scan_inference(), forward_model=mat.forward_model())


def test_orientation_static_and_data(orient):
    text, _ = _bundle_png(orient)
    assert text.startswith("OrientationScatter(24 scans") and "FC0" in text and "object at" not in text
    d = orient.data
    assert d["mean"].shape == (24, 8) and d["angles_deg"].shape == (24,) and d["selected"] == orient.selected
    np.testing.assert_array_equal(d["input"], orient.result.inputs[orient.selected])
    pd = pytest.importorskip("pandas")
    df = orient.to_dataframe()
    assert isinstance(df, pd.DataFrame) and len(df) == 24
    assert df["FC1 1NN xy mean"].iloc[3] == pytest.approx(float(orient.result.mean[3, 1]), rel=1e-6)


def test_noise_grid_static_and_data():
    r = fake_noise_grid()
    r["VAE"].r2[0, 0, 0] = -0.4  # negative R² stays visible in the static figure and the table
    ng = NoiseGridExplorer(r)
    text, _ = _bundle_png(ng)
    assert text.startswith("NoiseGridExplorer(5x5 (B, P) grid, 2 models; VAE FC0: R² -0.4")
    np.testing.assert_array_equal(ng.widget.snr_grid, r["VAE"].example_snr.astype(np.float32))
    d = ng.data
    assert d["r2"].shape == (2, 5, 5, 8) and d["r2_grid"][0, 0] == pytest.approx(-0.4)
    pytest.importorskip("pandas")
    df = ng.to_dataframe()
    assert len(df) == 2 * 5 * 5 * 8
    row = df[(df.model == "ResNet") & (df.B == 0.1) & (df.P == 1000) & (df.fc == "FC3")]
    assert len(row) == 1 and row.r2.iloc[0] == pytest.approx(r["ResNet"].r2[2, 2, 3])
    assert row.snr.iloc[0] == pytest.approx(r["VAE"].example_snr[2, 2])


def test_latent_picker_static_and_data():
    lp = LatentPicker(fake_latent_map(n=120), FakeDecoder())
    lp.select([3, 5])
    lp.add_points("experiment", np.zeros((1, 2)))
    lp.set_ray(0, 7, n=4)
    text, _ = _bundle_png(lp)
    assert text.startswith("LatentPicker(120 points coloured by FC0") and "2 selected" in text
    assert "experiment" in text and "ray of 4" in text
    np.testing.assert_array_equal(lp.widget.params, np.asarray(lp.map.params, np.float32))
    d = lp.data
    assert d["selected"] == [3, 5] and d["ray_spectra"].shape[0] == 4 and "experiment" in d["overlays"]
    pytest.importorskip("pandas")
    df = lp.to_dataframe()
    assert len(df) == 120 and df.selected.sum() == 2 and df.selected.iloc[5]
    assert df["FC2"].iloc[7] == pytest.approx(float(lp.map.params[7, 2]))


def test_to_dataframe_without_pandas_names_the_package(orient, monkeypatch):
    import builtins

    from fcinv_widgets.errors import MissingDependencyError

    real = builtins.__import__

    def no_pandas(name, *a, **k):
        if name == "pandas":
            raise ImportError("no pandas")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(MissingDependencyError, match="pandas"):
        orient.to_dataframe()


def test_nbconvert_html_shows_the_static_figure():
    """A notebook saved without widget state (the default) converts to HTML with the PNG in
    place of the empty widget box (nbconvert skips widget views it has no state for)."""
    nbformat = pytest.importorskip("nbformat")
    nbconvert = pytest.importorskip("nbconvert")
    from fcinv_widgets.widgets import FCExplorer

    fx = FCExplorer(FakeMaterial())
    b = fx._repr_mimebundle_()
    data = b[0] if isinstance(b, tuple) else b
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("fx")
    cell.outputs = [nbformat.v4.new_output("display_data", data=data)]
    nb.cells = [cell]
    html, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    assert f'src="data:image/png;base64,{data["image/png"][:40]}' in html
    assert "object at 0x" not in html


def test_static_q_labels_do_not_overprint():
    """The PNG export drew "S₀|S₂" over "F" for a rhombohedral path (the browser staggers them):
    labels too close go to a second row, and one that fits neither row is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fcinv_widgets.widgets import _static

    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    img = np.ones((200, 40))
    labels = [(0, "Γ"), (60, "T"), (100, "S₀|S₂"), (104, "F"), (107, "L"), (200, "Γ")]
    _static.spectrum_axes(ax, img, labels=labels, breaks=[], erange=[0, 40])
    texts = [t.get_text() for t in ax.get_xticklabels()]
    plt.close(fig)
    assert texts[:3] == ["Γ", "T", "S₀|S₂"] and texts[3] == "\nF" and texts[4] == "" and texts[5] == "Γ", texts


def test_noise_grid_png_draws_undefined_and_negative_r2_apart(monkeypatch):
    """Session 49's widgets probe: a NaN R² (a constant FC) was white with a white "nan" label (a blank
    cell) and the red of negative R² had one shade. Now NaN is grey, hatched, "–", and the red deepens
    as R² falls, with every label readable on its cell."""
    from matplotlib.colors import to_rgb

    from fcinv_widgets.widgets import _static

    r = fake_noise_grid()
    r["VAE"].r2[0, :, 0] = np.nan
    r["VAE"].r2[1, 0, 0], r["VAE"].r2[1, 1, 0] = -0.05, -1.0
    seen = {}
    monkeypatch.setattr(_static, "png_bytes", lambda fig: seen.setdefault("fig", fig) and b"")
    NoiseGridExplorer(r).to_png()
    ax = seen["fig"].axes[0]
    im = ax.images[0]
    cmap, norm = im.get_cmap(), im.norm
    lum = lambda c: float(np.dot(to_rgb(c), [0.2126, 0.7152, 0.0722]))  # noqa: E731
    assert lum(cmap(norm(-1.0))) < lum(cmap(norm(-0.5))) < lum(cmap(norm(-0.05)))
    grey = cmap.get_bad()
    assert abs(grey[0] - grey[1]) < 1e-6 and abs(grey[1] - grey[2]) < 1e-6 and 0.3 < grey[0] < 0.8
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert all(texts[(0, j)].get_text() == "–" for j in range(5))
    assert sum(p.get_hatch() == "///" for p in ax.patches) == 5
    for (i, j), t in texts.items():  # a dark cell gets white text, a light one black
        v = r["VAE"].r2[i, j, 0]
        if np.isfinite(v):
            dark = lum(cmap(norm(v))) < 0.5
            assert to_rgb(t.get_color()) == ((1.0, 1.0, 1.0) if dark else (0.0, 0.0, 0.0)), (i, j, v)
