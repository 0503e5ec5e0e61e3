"""Batch-norm readjustment before sampling (NVAE, section 3.2 of Vahdat & Kautz 2020).

At a low temperature the decoder's activations drift away from the statistics its batch-norm layers
collected in training on posterior samples. Re-estimating those statistics on a few batches of prior
samples *at the sampling temperature* restores sharp samples.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["readjust_batch_norm"]


@torch.no_grad()
def readjust_batch_norm(gen_model: nn.Module, passes: int, batch_size: int = 64, temperature: float = 1.0) -> int:
    """Re-estimates the running statistics of every batch-norm layer of ``gen_model`` from ``passes`` batches
    of its prior samples at ``temperature``; changes nothing else.

    The statistics are reset and then averaged over the passes with equal weights (``momentum=None``), so the
    result does not depend on what training left in them. Each layer's momentum and every module's
    train/eval flag are restored afterwards.

    Args:
        gen_model: a generative model whose ``sample(n, temperature=t)`` samples at a temperature
            (`NVAEGenModel`).
        passes: batches of samples, >= 1.
        batch_size: samples per batch.
        temperature: the sampling temperature (scales every prior's standard deviation).

    Returns:
        the number of batch-norm layers readjusted.

    Raises:
        ValueError: for ``passes`` or ``batch_size`` below 1.
    """
    for name, value in (("passes", passes), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"readjust_batch_norm: `{name}` must be a positive integer; got {value!r}.")
    layers = [m for m in gen_model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = {m: m.training for m in gen_model.modules()}
    momenta = {layer: layer.momentum for layer in layers}
    try:
        gen_model.eval()
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None  # a cumulative average over the passes
            layer.train()
        for _ in range(passes):
            gen_model.sample(batch_size, temperature=temperature)
    finally:
        for module, training in modes.items():
            module.training = training
        for layer, momentum in momenta.items():
            layer.momentum = momentum
    return len(layers)
