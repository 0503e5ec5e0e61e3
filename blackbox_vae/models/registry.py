"""Build a ready InfNet/GenModel pair by name (used by the command line)."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.models.categorical import CategoricalGenModel, CategoricalInfNet
from blackbox_vae.models.deep_sbn import DeepSBNGenModel, DeepSBNInfNet
from blackbox_vae.models.gaussian_mlp import GaussianMLPGenModel, GaussianMLPInfNet
from blackbox_vae.models.hvae import HVAEGenModel, HVAELadderInfNet, HVAEReverseInfNet

__all__ = ["MODELS", "DEFAULT_N_CLASSES", "build_models", "default_layers"]

MODELS = ("sbn", "categorical", "gaussian", "hvae-ladder", "hvae-reverse", "nvae")
#: Classes per latent of the categorical model when none are given.
DEFAULT_N_CLASSES = 10


def default_layers(model: str) -> list[int]:
    """The latent layers a model gets when none are given: the paper's ``[30, 100]`` for the hierarchical
    Bernoulli VAEs, none for NVAE (its ``architecture`` sets its latent groups), ``[200]`` otherwise."""
    if model == "nvae":
        return []
    return [30, 100] if model.startswith("hvae") else [200]


def build_models(model: str, data_dim: int, likelihood: str = "bernoulli", layers: Sequence[int] = (200,),
                 hidden: Sequence[int] = (), n_classes: int = DEFAULT_N_CLASSES, image_shape: Optional[Sequence[int]] = None,
                 architecture: Optional[Mapping[str, Any]] = None) -> tuple[InfNet, GenModel]:
    """An (inf_net, gen_model) pair.

    Args:
        model: ``"sbn"`` (sigmoid belief network with ``len(layers)`` stochastic layers of ``layers``
            units; ``hidden`` deterministic widths inside each conditional, ``()`` for linear),
            ``"categorical"`` (``layers[0]`` one-hot latents of ``n_classes`` classes, MLPs of
            ``hidden`` widths, Jang et al.'s 512-256 by default), or ``"gaussian"`` (``layers[0]``
            Gaussian latents, MLPs of ``hidden`` widths, 200-200 by default), ``"hvae-ladder"`` /
            ``"hvae-reverse"`` (hierarchical Bernoulli VAE with ``layers`` units per layer, top first, z_0
            uniform; tanh MLPs of ``hidden`` widths, one layer of 256 by default; ladder or reverse encoder),
            or ``"nvae"`` (`NVAEInfNet` / `NVAEGenModel` shaped by ``architecture``; ``layers`` and ``hidden``
            unused).
        data_dim: D.
        likelihood: the data's: ``"bernoulli"`` (binary), ``"8-bit"`` (grey levels k/255: NVAE with
            ``architecture.likelihood: logistic-mixture``) or ``"gaussian"`` (only the Gaussian VAE).
        image_shape: nvae: the images' ``(H, W)`` or ``(C, H, W)`` (default: square single-channel images of
            ``data_dim`` pixels).
        architecture: nvae: the `NVAEArchitecture` fields (defaults: the ``nvae-tiny`` preset's).

    Raises:
        ValueError: for an unknown model, a likelihood it does not support, or an invalid architecture.
    """
    if model not in MODELS:
        raise ValueError(f"build_models: unknown model {model!r}; expected one of {', '.join(MODELS)}.")
    if model == "nvae":
        return _build_nvae(data_dim, likelihood, image_shape, architecture)
    if likelihood == "8-bit":
        raise ValueError(f"build_models: the {model!r} model needs binary data; 8-bit images (binarization none) "
                         "need --model nvae with `architecture.likelihood: logistic-mixture`.")
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


def _build_nvae(data_dim: int, likelihood: str, image_shape: Optional[Sequence[int]],
                architecture: Optional[Mapping[str, Any]]) -> tuple[InfNet, GenModel]:
    from blackbox_vae.models.nvae import NVAEArchitecture, NVAEGenModel, NVAEInfNet
    from blackbox_vae.models.nvae.architecture import field_name

    if image_shape is None:
        side = round(data_dim ** 0.5)
        if side * side != data_dim:
            raise ValueError(f"build_models: nvae models images; {data_dim} values per row are not a square image "
                             "(give `image_shape`).")
        image_shape = (side, side)
    image_shape = tuple(image_shape) if len(image_shape) == 3 else (1, *image_shape)
    arch = NVAEArchitecture.from_dict(dict(architecture or {}))
    expected = {"bernoulli": "bernoulli", "logistic-mixture": "8-bit"}[arch.likelihood]
    if likelihood != expected:
        fix = ("binarized images (binarization static or dynamic)" if expected == "bernoulli"
               else "8-bit images (binarization none)")
        raise ValueError(f"build_models: {field_name('likelihood')} {arch.likelihood!r} needs {fix}; the data are "
                         f"{likelihood}. Set it to "
                         f"{'logistic-mixture' if likelihood == '8-bit' else 'bernoulli'}, or change the binarization.")
    gen_model = NVAEGenModel(image_shape, arch)
    return NVAEInfNet(gen_model), gen_model
