"""For estimators that handle one layer of discrete latents: a draw of that layer and q's logits for it, and the
refusal of models of several layers or of another kind."""

from __future__ import annotations

import torch
from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.losses._layers import (BERNOULLI, CATEGORICAL, declared_kinds, declared_layer_count,
                                         describe_kinds, drawn_kinds, fitting_advice, is_one_hot, non_binary_value)

# What each logits hook's layer must be, for messages.
_KIND_OF_HOOK = {"bernoulli_logits": BERNOULLI, "categorical_logits": CATEGORICAL}


def check_declared_layer(owner: str, inf_net: InfNet, gen_model: GenModel, kinds: tuple[str, ...]) -> None:
    """At construction: refuses a model that declares several layers (`InfNet.layer_kinds`, or `InfNet.layer_order`),
    or one layer of a kind not in ``kinds``.

    Raises:
        ValueError: naming ``owner``, what the model declares, and the estimators that fit it.
    """
    declared, count = declared_kinds(inf_net), declared_layer_count(inf_net)
    name = type(inf_net).__name__
    if count is not None and count > 1:
        said = (f"`{name}.layer_kinds` declares a tuple of {count} entries ({describe_kinds(declared)})"
                if declared is not None else f"`{name}.layer_order` declares a tuple of {count} entries")
        raise ValueError(f"{owner} handles one layer of latents (a tensor, or a 1-tuple); {said}. "
                         f"{fitting_advice(inf_net, gen_model, declared)}")
    if declared is not None and declared[0] not in kinds:
        wanted = " or ".join(kinds)
        raise ValueError(f"{owner} handles one layer of {wanted} latents; `{name}.layer_kinds` declares layer 0 "
                         f"{declared[0]!r}. {fitting_advice(inf_net, gen_model, declared)}")


def one_layer_logits(owner: str, inf_net: InfNet, hook: str, *, gen_model: GenModel | None = None,
                     check_values: bool = False) -> tuple[Tensor, Tensor, bool]:
    """q's logits for its one layer of latents, read through ``hook`` (``"bernoulli_logits"`` or
    ``"categorical_logits"``) after `InfNet.forward`.

    Args:
        owner: the estimator, for messages.
        inf_net: q, already called on the batch.
        hook: the logits hook to call.
        gen_model: p, for the estimators that messages advise.
        check_values: also check the draw's values (a host synchronization: the estimators do it at their
            first call): in {0, 1} for ``"bernoulli_logits"``, one-hot for ``"categorical_logits"``.

    Returns:
        ``(logits [batch, 1, *shape], a draw of the layer [batch, 1, *shape], whether latents are a 1-tuple)``;
        the logits carry the gradient path.

    Raises:
        ValueError: for latents of several layers, a draw of another kind than the hook's, or logits of another
            shape than the layer's; each message names the estimators that fit the model.
    """
    with torch.no_grad():
        draw = inf_net.sample(1)
    name = type(inf_net).__name__
    one_tuple = isinstance(draw, tuple) and len(draw) == 1
    if not (isinstance(draw, Tensor) or one_tuple):
        entries = f" of {len(draw)} entries" if isinstance(draw, (tuple, list, dict)) else ""
        kinds = declared_kinds(inf_net) or drawn_kinds(draw)
        shown = f" ({describe_kinds(kinds)})" if kinds is not None else ""
        raise ValueError(f"{owner} handles one layer of latents (a tensor, or a 1-tuple); `{name}.sample` returned "
                         f"{type(draw).__name__}{entries}{shown}. {fitting_advice(inf_net, gen_model, kinds)}")
    layer = draw[0] if one_tuple else draw
    if check_values:
        _check_draw(owner, inf_net, gen_model, hook, layer, draw)
    logits = getattr(inf_net, hook)(draw, 0)
    if logits.shape != layer.shape:
        raise ValueError(f"{owner}: `{name}.{hook}` returned shape {tuple(logits.shape)}; "
                         f"expected the latents' [batch, n_samples, *shape] = {tuple(layer.shape)}.")
    return logits, layer, one_tuple


def _check_draw(owner: str, inf_net: InfNet, gen_model: GenModel | None, hook: str, layer: Tensor,
                draw: Tensor | tuple[Tensor]) -> None:
    """Raises unless ``layer`` holds what ``hook``'s kind draws: values in {0, 1}; one-hot for a categorical."""
    value = non_binary_value(layer)
    if value is not None:
        found = f"holds values other than 0 and 1 (e.g. {value:g})"
    elif hook == "categorical_logits" and not is_one_hot(layer):
        found = "is not one-hot (a draw without exactly one 1 in its last dimension)"
    else:
        return
    raise ValueError(f"{owner} reads `{hook}` for a {_KIND_OF_HOOK[hook]} layer, but the layer of "
                     f"`{type(inf_net).__name__}.sample` {found}. "
                     f"{fitting_advice(inf_net, gen_model, drawn_kinds(draw))}")
