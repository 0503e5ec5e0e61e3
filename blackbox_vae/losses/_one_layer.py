"""For estimators that handle one layer of discrete latents: a draw of that layer and q's logits for it."""

from __future__ import annotations

import torch
from torch import Tensor

from blackbox_vae.inf_net import InfNet


def one_layer_logits(owner: str, inf_net: InfNet, hook: str, *, why: str = "") -> tuple[Tensor, Tensor, bool]:
    """q's logits for its one layer of latents, read through ``hook`` (``"bernoulli_logits"`` or
    ``"categorical_logits"``) after `InfNet.forward`.

    Args:
        owner: the estimator, for messages.
        inf_net: q, already called on the batch.
        hook: the logits hook to call.
        why: advice added to the message for several layers.

    Returns:
        ``(logits [batch, 1, *shape], a draw of the layer [batch, 1, *shape], whether latents are a 1-tuple)``;
        the logits carry the gradient path.

    Raises:
        ValueError: for latents of several layers, or logits of another shape than the layer's.
    """
    with torch.no_grad():
        draw = inf_net.sample(1)
    one_tuple = isinstance(draw, tuple) and len(draw) == 1
    if not (isinstance(draw, Tensor) or one_tuple):
        raise ValueError(f"{owner} handles one layer of latents (a tensor, or a 1-tuple); "
                         f"`{type(inf_net).__name__}.sample` returned {type(draw).__name__} of "
                         f"{len(draw)} entries.{why}")
    layer = draw[0] if one_tuple else draw
    logits = getattr(inf_net, hook)(draw, 0)
    if logits.shape != layer.shape:
        raise ValueError(f"{owner}: `{type(inf_net).__name__}.{hook}` returned shape {tuple(logits.shape)}; "
                         f"expected the latents' [batch, n_samples, *shape] = {tuple(layer.shape)}.")
    return logits, layer, one_tuple
