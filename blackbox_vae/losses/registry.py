"""Build a loss by name (used by the command line), with the options each one takes."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.losses.arm import ARMLoss, DisARMLoss
from blackbox_vae.losses.arsm import ARSMLoss
from blackbox_vae.losses.base import Loss
from blackbox_vae.losses.rebar import RELAXControlVariate, REBARLoss, RELAXLoss
from blackbox_vae.losses.elbo import ELBOLoss
from blackbox_vae.losses.gumbel_softmax import GumbelSoftmaxLoss, TemperatureSchedule
from blackbox_vae.losses.iwae import IWAELoss
from blackbox_vae.losses.nvil import NVILBaseline, NVILLoss
from blackbox_vae.losses.rws import RWSLoss
from blackbox_vae.losses.score_function import ScoreFunctionLoss
from blackbox_vae.losses.symmetric import SymmetricLoss
from blackbox_vae.losses.unordered_set import UnorderedSetLoss
from blackbox_vae.losses.vimco import VIMCOLoss
from blackbox_vae.losses.zgr import ZGRLoss

__all__ = ["LOSSES", "LossSpec", "build_loss", "option_choices", "option_default", "ANNEALED_TEMPERATURE",
           "ESTIMATOR_OPTIONS"]


@dataclass(frozen=True)
class LossSpec:
    """A loss as the command line knows it.

    Attributes:
        loss_class: the `Loss` subclass.
        options: the constructor's keyword arguments that can be set by name (command-line flags and
            config keys); their choices, where they have a few, are the class's ``choices``.
    """

    loss_class: type[Loss]
    options: tuple[str, ...] = ()


#: name -> how to build it.
LOSSES: dict[str, LossSpec] = {
    "score-function": LossSpec(ScoreFunctionLoss, ("baseline",)),
    "nvil": LossSpec(NVILLoss, ("variance_normalization",)),
    "vimco": LossSpec(VIMCOLoss),
    "arm": LossSpec(ARMLoss),
    "disarm": LossSpec(DisARMLoss),
    "arsm": LossSpec(ARSMLoss),
    "rebar": LossSpec(REBARLoss),
    "relax": LossSpec(RELAXLoss),
    "unordered-set": LossSpec(UnorderedSetLoss),
    "rws": LossSpec(RWSLoss, ("phi_update",)),
    "symmetric": LossSpec(SymmetricLoss, ("dreams", "flip_noise")),
    "gumbel-softmax": LossSpec(GumbelSoftmaxLoss, ("temperature", "straight_through")),
    "zgr": LossSpec(ZGRLoss, ("analytic_kl",)),
    "elbo": LossSpec(ELBOLoss),
    "iwae": LossSpec(IWAELoss, ("gradient",)),
}

#: Every option of the registered losses, in order (each belongs to one loss).
ESTIMATOR_OPTIONS = tuple(dict.fromkeys(option for spec in LOSSES.values() for option in spec.options))

#: ``temperature="anneal"``: Jang et al.'s schedule ``max(0.5, exp(-1e-4 t))``, updated every 500 steps.
ANNEALED_TEMPERATURE = TemperatureSchedule(1.0, 0.5, 1e-4, 500)


def _spec(name: str) -> LossSpec:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}.")
    return LOSSES[name]


def option_choices(name: str, option: str) -> tuple[Any, ...] | None:
    """The choices of ``option`` of the loss called ``name`` (from its class's ``choices``), or None if free."""
    return _spec(name).loss_class.choices.get(option)


def option_default(name: str, option: str) -> Any:
    """The default value of ``option`` in the constructor of the loss called ``name``."""
    return inspect.signature(_spec(name).loss_class.__init__).parameters[option].default


def _latent_dim(inf_net: InfNet, data_dim: int) -> int:
    """The size of one latent draw of ``inf_net`` (from a draw for a zero datum; 0 for tuple latents of several
    layers, which RELAX refuses with its own message)."""
    reference = next(inf_net.parameters(), None)
    with torch.no_grad():
        draw = inf_net(torch.zeros(1, data_dim, dtype=reference.dtype if reference is not None else None,
                                   device=reference.device if reference is not None else None)).sample(1)
    if isinstance(draw, tuple) and len(draw) == 1:
        draw = draw[0]
    return draw[0, 0].numel() if isinstance(draw, torch.Tensor) else 0


def build_loss(name: str, inf_net: InfNet, gen_model: GenModel, n_samples: int, *, data_dim: int,
               options: Mapping[str, Any] | None = None, validate: bool = True) -> Loss:
    """A loss object by name.

    Args:
        name: one of `LOSSES`.
        inf_net: q(z|x).
        gen_model: p(x, z).
        n_samples: K.
        data_dim: input size of NVIL's baseline network (an `NVILBaseline` with 100 tanh units) and of RELAX's
            control variate (a `RELAXControlVariate` with 100 tanh units).
        options: values of the loss's options (`LossSpec.options`); an option left out takes the
            constructor's default. ``temperature`` may be ``"anneal"`` (`ANNEALED_TEMPERATURE`).
        validate: see `Loss`.

    Raises:
        ValueError: for an unknown name, or an option the loss does not take (never silently ignored).
    """
    spec = _spec(name)
    options = dict(options or {})
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        takes = f"its options are {', '.join(spec.options)}" if spec.options else "it takes no options"
        raise ValueError(f"the {name!r} loss does not take {', '.join(map(repr, unknown))}; {takes}.")
    if options.get("temperature") == "anneal":
        options["temperature"] = ANNEALED_TEMPERATURE
    if spec.loss_class is NVILLoss:
        options["baseline_net"] = NVILBaseline(data_dim)
    if spec.loss_class is RELAXLoss:
        options["control_variate"] = RELAXControlVariate(data_dim, _latent_dim(inf_net, data_dim))
    return spec.loss_class(inf_net, gen_model, n_samples, validate=validate, **options)
