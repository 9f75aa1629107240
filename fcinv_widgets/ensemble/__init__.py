"""Stage I: the uMLFF ensemble (calculator registry, FC sets per model, training domain).

Nothing here imports a uMLFF package at import time; each family is optional.
See docs/ensemble.md.
"""

from .calculators import ModelSpec, available_models, get_calculator, package_versions  # noqa: F401
from .domain import project_results, training_domain, widen  # noqa: F401
from .fcsets import compute_fcset, read_ensemble_h5, run_ensemble, write_ensemble_h5  # noqa: F401
