"""Stage II/III models: a VAE over I(q, E) images with a separate FC regressor on its
latent means (the paper's dual model, :func:`train_vae`, :class:`Inverter`: inference with
latent-sampling uncertainties) and a ResNet-18 regressing FCs directly (:func:`train_resnet`,
:class:`ResNetModel`). :func:`load_model` reads either checkpoint."""

from .inverter import Inverter, Prediction, ResNetModel, load_model, resolve_model
from .train import train_resnet, train_vae

__all__ = ["Inverter", "Prediction", "ResNetModel", "load_model", "resolve_model", "train_resnet", "train_vae"]
