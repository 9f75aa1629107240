"""The noise model (flat background + Poisson counts) lives in :mod:`fcinv_widgets.noise`, a core
module (scan sets and ``fcinv simulate`` use it without the analysis layer); re-exported here."""

from ..noise import (  # noqa: F401
    DEFAULT_BACKGROUNDS,
    DEFAULT_COUNTS,
    add_noise,
    minmax,
    noise_grid_levels,
)
