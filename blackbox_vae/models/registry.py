"""Build a ready InfNet/GenModel pair by name (used by the command line)."""

from __future__ import annotations

from typing import Sequence

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.models.categorical import CategoricalGenModel, CategoricalInfNet
from blackbox_vae.models.deep_sbn import DeepSBNGenModel, DeepSBNInfNet
from blackbox_vae.models.gaussian_mlp import GaussianMLPGenModel, GaussianMLPInfNet
from blackbox_vae.models.hvae import HVAEGenModel, HVAELadderInfNet, HVAEReverseInfNet

__all__ = ["MODELS", "build_models", "default_layers"]

MODELS = ("sbn", "categorical", "gaussian", "hvae-ladder", "hvae-reverse")


def default_layers(model: str) -> list[int]:
    """The latent layers a model gets when none are given: the paper's ``[30, 100]`` for the hierarchical
    Bernoulli VAEs, ``[200]`` otherwise."""
    return [30, 100] if model.startswith("hvae") else [200]


def build_models(model: str, data_dim: int, likelihood: str = "bernoulli", layers: Sequence[int] = (200,),
                 hidden: Sequence[int] = (), n_classes: int = 10) -> tuple[InfNet, GenModel]:
    """An (inf_net, gen_model) pair.

    Args:
        model: ``"sbn"`` (sigmoid belief network with ``len(layers)`` stochastic layers of ``layers``
            units; ``hidden`` deterministic widths inside each conditional, ``()`` for linear),
            ``"categorical"`` (``layers[0]`` one-hot latents of ``n_classes`` classes, MLPs of
            ``hidden`` widths, Jang et al.'s 512-256 by default), or ``"gaussian"`` (``layers[0]``
            Gaussian latents, MLPs of ``hidden`` widths, 200-200 by default), ``"hvae-ladder"`` /
            ``"hvae-reverse"`` (hierarchical Bernoulli VAE with ``layers`` units per layer, top first, z_0
            uniform; tanh MLPs of ``hidden`` widths, one layer of 256 by default; ladder or reverse encoder).
        data_dim: D.
        likelihood: ``"bernoulli"`` or ``"gaussian"`` (only the Gaussian VAE supports real-valued data).

    Raises:
        ValueError: for an unknown model or a likelihood it does not support.
    """
    if model not in MODELS:
        raise ValueError(f"build_models: unknown model {model!r}; expected one of {', '.join(MODELS)}.")
    if likelihood == "gaussian" and model != "gaussian":
        raise ValueError(f"build_models: the {model!r} model has Bernoulli observations and needs binary data; "
                         "use --model gaussian for real-valued data.")
    layers, hidden = list(layers), list(hidden)
    if model == "sbn":
        return DeepSBNInfNet(data_dim, layers, hidden), DeepSBNGenModel(data_dim, layers, hidden)
    if model == "categorical":
        encoder_hidden = hidden or [512, 256]
        return (CategoricalInfNet(data_dim, layers[0], n_classes, encoder_hidden),
                CategoricalGenModel(data_dim, layers[0], n_classes, list(reversed(encoder_hidden))))
    if model.startswith("hvae"):
        hidden = hidden or [256]
        gen_model = HVAEGenModel(data_dim, layers, hidden)
        if model == "hvae-ladder":
            return HVAELadderInfNet(gen_model, data_dim, hidden), gen_model
        return HVAEReverseInfNet(data_dim, layers, hidden), gen_model
    hidden = hidden or [200, 200]
    return (GaussianMLPInfNet(data_dim, layers[0], hidden),
            GaussianMLPGenModel(data_dim, layers[0], hidden, likelihood=likelihood))
