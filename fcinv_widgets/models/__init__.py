"""Stage II/III models: a VAE over I(q, E) images with a separate FC regressor on its
latent means (the paper's dual model), trained with :func:`train_vae`, used through
:class:`Inverter` (inference with latent-sampling uncertainties)."""

from .inverter import Inverter, Prediction, resolve_model
from .train import train_vae

__all__ = ["Inverter", "Prediction", "resolve_model", "train_vae"]
