"""fcinv_widgets: ML inversion of interatomic force constants from single-crystal INS.

Stages: structure → FC basis (:mod:`.basis`) → forward model (:mod:`.forward`) →
datasets (:mod:`.dataset`) → models → inference/analysis → widgets.
"""

__version__ = "0.1.0"

from .errors import FcinvError  # noqa: E402,F401
from .materials import custom_material, get_material  # noqa: E402,F401


def __getattr__(name):
    # models (torch) and widgets (Jupyter) are imported lazily so that the batch stages stay light
    if name in ("load_model", "Inverter"):
        from . import models

        return getattr(models, name)
    if name in ("FCExplorer", "NoiseGridExplorer", "OrientationScatter", "LatentPicker"):
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'fcinv_widgets' has no attribute {name!r}")
