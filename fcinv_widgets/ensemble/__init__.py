"""Stage I: the uMLFF ensemble (calculator registry, FC sets per model, training domain).

Nothing here imports a uMLFF package at import time; each family is optional.
"""

from .calculators import ModelSpec, available_models, get_calculator, package_versions  # noqa: F401
