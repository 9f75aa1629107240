"""Jupyter widgets (anywidget): synced views + user-facing classes taking library objects.

``NoiseGridResult`` is :class:`fcinv_widgets.analysis.noise_grid.NoiseGridResult`, re-exported
for convenience: the widgets define no data objects of their own."""

from ..analysis.noise_grid import NoiseGridResult
from .fc_explorer import FCExplorer, FCExplorerView, SliderDomainError
from .latent_picker import LatentPicker, LatentPickerView, LatentSelectionError
from .noise_grid import NoiseGridExplorer, NoiseGridView
from ._traits import WidgetGridError, WidgetInputError
from .orientation import OrientationScatter, OrientationView, ScanSelectionError

__all__ = [
    "FCExplorer",
    "FCExplorerView",
    "SliderDomainError",
    "NoiseGridExplorer",
    "NoiseGridResult",
    "NoiseGridView",
    "OrientationScatter",
    "OrientationView",
    "ScanSelectionError",
    "LatentPicker",
    "LatentPickerView",
    "LatentSelectionError",
    "WidgetInputError",
    "WidgetGridError",
]
