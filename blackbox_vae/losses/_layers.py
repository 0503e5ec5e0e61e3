"""What a model's layers of latents are, and which estimators fit it: for the refusals of the estimators that
assume Bernoulli or one-hot layers (ARM, DisARM, ARSM, REBAR, RELAX, the unordered set)."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.latents import Latents

BERNOULLI, CATEGORICAL, OTHER = "bernoulli", "categorical", "other"
KINDS = (BERNOULLI, CATEGORICAL, OTHER)

Kinds = Optional[tuple[str, ...]]


def declared_kinds(inf_net: InfNet) -> Kinds:
    """``inf_net``'s `InfNet.layer_kinds`, checked; None where it does not say.

    Raises:
        TypeError: for a declaration that is not a tuple of `KINDS`.
    """
    kinds = inf_net.layer_kinds
    if kinds is None:
        return None
    if not (isinstance(kinds, tuple) and kinds and all(kind in KINDS for kind in kinds)):
        raise TypeError(f"`{type(inf_net).__name__}.layer_kinds` must be None or a non-empty tuple of "
                        f"{', '.join(map(repr, KINDS))}, one per latent tensor; got {kinds!r}.")
    return kinds


def declared_layer_count(inf_net: InfNet) -> int | None:
    """How many layers ``inf_net`` says its latents have (`InfNet.layer_kinds`, else `InfNet.layer_order`), or None."""
    kinds = declared_kinds(inf_net)
    if kinds is not None:
        return len(kinds)
    order = inf_net.layer_order
    return len(order) if order is not None else None


def _off_binary(layer: Tensor) -> Tensor:
    """Where ``layer`` is neither 0 nor 1, to rounding: a draw with a straight-through gradient path,
    z + p - p.detach(), is off by a few ulps."""
    tolerance = 16 * torch.finfo(layer.dtype).eps if layer.is_floating_point() else 0
    return (layer.detach() - layer.detach().round()).abs().gt(tolerance) | ~torch.isin(layer.detach().round(),
                                                                                        layer.new_tensor([0, 1]))


def is_one_hot(layer: Tensor) -> bool:
    """Whether every draw of ``layer`` ``[batch, n, *shape, C]``, C >= 2, has values in {0, 1} and exactly one 1."""
    return (layer.dim() >= 3 and layer.shape[-1] >= 2 and not bool(_off_binary(layer).any())
            and bool((layer.detach().round().sum(-1) == 1).all()))


def non_binary_value(layer: Tensor) -> float | None:
    """A value of ``layer`` other than 0 and 1 (to rounding), or None if there is none."""
    outside = _off_binary(layer)
    return layer.detach()[outside].flatten()[0].item() if bool(outside.any()) else None


def drawn_kinds(latents: Latents) -> Kinds:
    """What one draw shows of each layer (a tensor, or a tuple of tensors; None for other structures): values
    other than 0 and 1 make it ``"other"``; one-hot draws (exactly one 1 in every draw's last dimension of 2 or
    more entries) ``"categorical"``; other draws in {0, 1} ``"bernoulli"``. Read for the advice in messages,
    where a Bernoulli layer whose few draws happen to be one-hot only narrows the advice."""
    layers = latents if isinstance(latents, tuple) else (latents,) if isinstance(latents, Tensor) else None
    if layers is None or not all(isinstance(layer, Tensor) for layer in layers):
        return None
    return tuple(OTHER if non_binary_value(layer) is not None else CATEGORICAL if is_one_hot(layer) else BERNOULLI
                 for layer in layers)


def layer_kinds(inf_net: InfNet, latents: Latents | None = None) -> Kinds:
    """The kinds ``inf_net`` declares, else (given a draw) those the draw shows, else None."""
    kinds = declared_kinds(inf_net)
    return kinds if kinds is not None or latents is None else drawn_kinds(latents)


def _all_bernoulli(inf_net: InfNet, kinds: Kinds) -> bool:
    return kinds is not None and all(kind == BERNOULLI for kind in kinds) and inf_net.has_bernoulli_logits


def _one(kind: str, hook: str) -> Callable[[InfNet, Kinds], bool]:
    return lambda inf_net, kinds: kinds == (kind,) and getattr(inf_net, f"has_{hook}")


# Each estimator, and whether it fits q (its flags and layer kinds, None where unknown). The pathwise ones
# (`PATHWISE`) also need a differentiable p. The order is that of the advice: the general ones first.
_FITS: tuple[tuple[str, Callable[[InfNet, Kinds], bool]], ...] = (
    ("VIMCOLoss", lambda inf_net, kinds: True),
    ("ScoreFunctionLoss", lambda inf_net, kinds: True),
    ("NVILLoss", lambda inf_net, kinds: True),
    ("RWSLoss", lambda inf_net, kinds: True),
    ("SymmetricLoss", lambda inf_net, kinds: True),
    ("ARMLoss", _all_bernoulli),
    ("DisARMLoss", _all_bernoulli),
    ("ARSMLoss", _one(CATEGORICAL, "categorical_logits")),
    ("UnorderedSetLoss", lambda inf_net, kinds: (_one(BERNOULLI, "bernoulli_logits")(inf_net, kinds)
                                                 or _one(CATEGORICAL, "categorical_logits")(inf_net, kinds))),
    ("REBARLoss", _one(BERNOULLI, "bernoulli_logits")),
    ("RELAXLoss", _one(BERNOULLI, "bernoulli_logits")),
    ("GumbelSoftmaxLoss", lambda inf_net, kinds: inf_net.has_relaxed_rsample),
    ("ZGRLoss", lambda inf_net, kinds: inf_net.has_zgr_rsample),
    ("ELBOLoss", lambda inf_net, kinds: inf_net.has_rsample),
    ("IWAELoss", lambda inf_net, kinds: inf_net.has_rsample),
)
PATHWISE = frozenset({"REBARLoss", "RELAXLoss", "GumbelSoftmaxLoss", "ZGRLoss", "ELBOLoss", "IWAELoss"})
ESTIMATORS = tuple(name for name, _ in _FITS)


def fitting_estimators(inf_net: InfNet, gen_model: GenModel | None = None, kinds: Kinds = None) -> list[str]:
    """The estimators that fit ``inf_net`` (and ``gen_model``), by name, from its capability flags and its layer
    ``kinds`` (declared or drawn; None: unknown, so none of the estimators that assume a kind).

    Args:
        inf_net: q(z|x).
        gen_model: p(x, z); one that declares ``differentiable = False`` rules out the pathwise estimators.
        kinds: what each layer is (`layer_kinds`).
    """
    differentiable = gen_model is None or getattr(gen_model, "differentiable", True)
    return [name for name, fits in _FITS if fits(inf_net, kinds) and (differentiable or name not in PATHWISE)]


def fitting_advice(inf_net: InfNet, gen_model: GenModel | None = None, kinds: Kinds = None) -> str:
    """A sentence for messages: ``"Estimators that fit `Q`: VIMCOLoss, ..."``."""
    return (f"Estimators that fit `{type(inf_net).__name__}`: "
            f"{', '.join(fitting_estimators(inf_net, gen_model, kinds))}.")


def describe_kinds(kinds: tuple[str, ...]) -> str:
    """``"layer 0 categorical, layer 1 bernoulli"``."""
    return ", ".join(f"layer {index} {kind}" for index, kind in enumerate(kinds))


def bernoulli_log_prob(logits: Tensor, value: Tensor) -> Tensor:
    """log Bernoulli(value; sigmoid(logits)) summed over all but the leading ``[batch, n]``."""
    return -torch.nn.functional.binary_cross_entropy_with_logits(logits, value, reduction="none").flatten(2).sum(2)
