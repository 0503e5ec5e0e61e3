"""Ready models, each an InfNet/GenModel pair built from the public API."""

from blackbox_vae.models.categorical import CategoricalGenModel, CategoricalInfNet
from blackbox_vae.models.deep_sbn import DeepSBNGenModel, DeepSBNInfNet
from blackbox_vae.models.gaussian_mlp import GaussianMLPGenModel, GaussianMLPInfNet
from blackbox_vae.models.hvae import HVAEGenModel, HVAELadderInfNet, HVAEReverseInfNet
from blackbox_vae.models.output_bias import initialize_output_bias
from blackbox_vae.models.sbn import SBNGenModel, SBNInfNet

__all__ = [
    "SBNInfNet",
    "SBNGenModel",
    "DeepSBNInfNet",
    "DeepSBNGenModel",
    "CategoricalInfNet",
    "CategoricalGenModel",
    "GaussianMLPInfNet",
    "GaussianMLPGenModel",
    "HVAEGenModel",
    "HVAELadderInfNet",
    "HVAEReverseInfNet",
    "initialize_output_bias",
]
