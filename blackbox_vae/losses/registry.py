"""Build a loss by name (used by the command line)."""

from __future__ import annotations

from typing import Optional

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.losses.base import Loss
from blackbox_vae.losses.elbo import ELBOLoss
from blackbox_vae.losses.gumbel_softmax import GumbelSoftmaxLoss, TemperatureSchedule
from blackbox_vae.losses.iwae import IWAELoss
from blackbox_vae.losses.nvil import NVILBaseline, NVILLoss
from blackbox_vae.losses.rws import RWSLoss
from blackbox_vae.losses.score_function import ScoreFunctionLoss
from blackbox_vae.losses.vimco import VIMCOLoss

__all__ = ["LOSSES", "build_loss"]

#: name -> the options it reads (see build_loss)
LOSSES = {
    "score-function": ("baseline",),
    "nvil": ("variance_normalization",),
    "vimco": (),
    "rws": ("phi_update",),
    "gumbel-softmax": ("temperature", "straight_through"),
    "elbo": (),
    "iwae": ("gradient",),
}


def build_loss(name: str, inf_net: InfNet, gen_model: GenModel, n_samples: int, *, data_dim: int,
               baseline: Optional[str] = None, variance_normalization: bool = True, phi_update: str = "wake",
               temperature: float | str = 1.0, straight_through: bool = False, gradient: str = "reparam",
               validate: bool = True) -> Loss:
    """A loss object by name; options that do not apply to it are ignored.

    Args:
        name: one of `LOSSES`.
        n_samples: K.
        data_dim: input size of NVIL's baseline network.
        baseline: ``ScoreFunctionLoss``'s baseline (``None``, ``"mean"``, ``"leave-one-out"``).
        variance_normalization: NVIL's (its baseline network is an ``NVILBaseline`` with 100 tanh units).
        phi_update: RWS's (``"wake"``, ``"sleep"``, ``"wake-sleep"``).
        temperature: Gumbel-softmax's: a number, or ``"anneal"`` for Jang et al.'s schedule
            ``max(0.5, exp(-1e-4 t))`` updated every 500 steps.
        straight_through: Gumbel-softmax's straight-through variant.
        gradient: IWAE's (``"reparam"``, ``"stl"``, ``"dreg"``).
        validate: see `Loss`.

    Raises:
        ValueError: for an unknown name.
    """
    common = {"validate": validate}
    if name == "score-function":
        return ScoreFunctionLoss(inf_net, gen_model, n_samples, baseline=baseline, **common)
    if name == "nvil":
        return NVILLoss(inf_net, gen_model, n_samples, baseline_net=NVILBaseline(data_dim),
                        variance_normalization=variance_normalization, **common)
    if name == "vimco":
        return VIMCOLoss(inf_net, gen_model, n_samples, **common)
    if name == "rws":
        return RWSLoss(inf_net, gen_model, n_samples, phi_update=phi_update, **common)
    if name == "gumbel-softmax":
        schedule = TemperatureSchedule(1.0, 0.5, 1e-4, 500) if temperature == "anneal" else float(temperature)
        return GumbelSoftmaxLoss(inf_net, gen_model, n_samples, temperature=schedule,
                                 straight_through=straight_through, **common)
    if name == "elbo":
        return ELBOLoss(inf_net, gen_model, n_samples, **common)
    if name == "iwae":
        return IWAELoss(inf_net, gen_model, n_samples, gradient=gradient, **common)
    raise ValueError(f"build_loss: unknown loss {name!r}; expected one of {', '.join(LOSSES)}.")
