"""The scan-inference summary figure (``plot_scan_inference``, notebook 05): a browser probe in
session 47 found its three scan panels at widths 1 : 2 : 2 for four FCs (the bottom row sliced
the top row's five columns), colour bars all labelled "I (scaled)" running to 10.5, 2.2 and
0.65, and the ω colour map's near-white ends invisible on white axes."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fcinv_testing.fakes import fake_scan_inference, make_fake_grid  # noqa: E402


@pytest.mark.parametrize("fcs", [(0, 1, 2, 3), (0, 1), (0, 1, 2, 3, 4, 5)])
def test_the_three_scan_panels_are_equal_and_scaled_alike(fcs):
    import matplotlib.pyplot as plt

    from fcinv_widgets.analysis.scan_inference import plot_scan_inference

    from fcinv_widgets.materials import get_material

    grid = get_material("Ge").grid  # (plot_spectrum draws on a real grid: its q labels and breaks)
    res = fake_scan_inference(n=12, grid=make_fake_grid(*grid.shape))
    res.inputs[3] *= 40.0  # one scan on another intensity scale than the others
    fig = plot_scan_inference(res, fcs=fcs, grid=grid)  # (the fake forward model has no backend to draw a dispersion)
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 3
    widths = [ax.get_position().width for ax in panels]
    assert max(widths) / min(widths) < 1.05, widths
    assert all(ax.get_images()[0].get_clim() == (0.0, 1.0) for ax in panels)
    scatters = [c for ax in fig.axes for c in ax.collections if c.get_array() is not None and not ax.get_images()]
    assert scatters and all(np.all(np.asarray(c.get_linewidths()) > 0) for c in scatters)
    plt.close(fig)
