"""Starting p(x|z) at the data's marginal: output biases set to the logits of the training data's mean."""

from __future__ import annotations

import torch
from torch import Tensor

from blackbox_vae.gen_model import GenModel

__all__ = ["initialize_output_bias"]


def initialize_output_bias(gen_model: GenModel, data: Tensor, clip: float = 1e-3) -> bool:
    """Sets the bias of the layer that gives p(x|z)'s Bernoulli logits to logit(mean of ``data``).

    The papers' practice (e.g. Burda et al. 2016, Mnih & Rezende 2016): the decoder starts out predicting
    each pixel's frequency, so the first steps are not spent learning the background.

    Args:
        gen_model: a model with an ``output_logits_bias`` attribute (the ``[D]`` bias of its last linear map
            to the Bernoulli logits of x; the library's SBNs, categorical VAE, Bernoulli Gaussian-latent VAE
            and MLP HVAE have one); others are left as they are.
        data: ``[N, D]`` training rows with values in [0, 1] (their means are pixel frequencies).
        clip: the means are clipped to ``[clip, 1 - clip]``, so that a pixel never on (or always on) gets a
            finite logit (±6.9 for the default).

    Returns:
        whether the model has such a bias (and it was set).
    """
    bias = getattr(gen_model, "output_logits_bias", None)
    if bias is None:
        return False
    if data.dim() != 2 or data.shape[1] != bias.shape[0]:
        raise ValueError(f"initialize_output_bias: `data` must be [N, D] with D = {bias.shape[0]} (the output "
                         f"layer's width); got shape {tuple(data.shape)}.")
    mean = data.double().mean(0).clamp(clip, 1 - clip)
    with torch.no_grad():
        bias.copy_(torch.logit(mean).to(bias.dtype))
    return True
