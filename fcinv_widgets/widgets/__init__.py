"""Jupyter widgets (anywidget): synced views + user-facing classes taking library objects."""

from .fc_explorer import FCExplorer, FCExplorerView, SliderDomainError
from .latent_picker import LatentPicker, LatentPickerView, LatentSelectionError
from .noise_grid import NoiseGridExplorer, NoiseGridResult, NoiseGridView
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
]
