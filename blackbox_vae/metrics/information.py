"""Per-bit mutual information between binary latents and the data: the discrete analogue of "active units".

For bit i of a binary latent, with p_i(x, s) = q(z_i = 1 | x, s) given the data point x and the sampled
parent layers s (none for the first layer),

    I_i = H_b(E_{x,s}[p_i]) - E_{x,s}[H_b(p_i)],

with H_b the binary entropy in nats: the information between z_i and (x, s) under the data distribution
and q. A bit that ignores its input carries 0; a bit that copies a fair coin flip of the data carries
log 2 ≈ 0.693 nats. Flach, Schlesinger & Shekhovtsov (2024) log it while training hierarchical Bernoulli
VAEs (a bit with I_i near 0 is unused).
"""

from __future__ import annotations

import torch
from torch import Tensor

from blackbox_vae.inf_net import InfNet

__all__ = ["bit_mutual_information", "binary_entropy"]


def binary_entropy(probs: Tensor) -> Tensor:
    """H_b(p) = -p log p - (1 - p) log(1 - p) in nats, elementwise; exactly 0 at p = 0 and p = 1 (no NaN).

    Args:
        probs: probabilities; values are clamped to [0, 1] first.

    Returns:
        a tensor of ``probs``' shape.
    """
    probs = probs.clamp(0, 1)
    return -(torch.xlogy(probs, probs) + torch.xlogy(1 - probs, 1 - probs))


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"bit_mutual_information: `{name}` must be a positive int; got {value!r}.")
    return value


@torch.no_grad()
def bit_mutual_information(inf_net: InfNet, data: Tensor, batch_size: int = 1000,
                           n_samples: int = 1) -> tuple[Tensor, ...]:
    """The mutual information between each latent bit and its input under q, estimated on ``data``, in nats.

    Per bit i: ``I_i = H_b(mean of p_i) - mean of H_b(p_i)``, both means over the data points and
    ``n_samples`` ancestral samples of the parent layers, with ``p_i = q(z_i = 1 | x, parents)`` from
    ``inf_net.bit_probabilities``. For the first layer it is the information between the bit and x; for a
    deeper layer, between the bit and (x, its sampled parent layers), which bounds the information
    about x alone from above. By concavity of H_b it is >= 0 (rounding below 0 is clamped to 0) and at
    most log 2. Computed in float64 without a gradient, ``batch_size`` data points at a time.

    Args:
        inf_net: an inference network with the `InfNet.bit_probabilities` hook (``has_bit_probabilities``),
            e.g. `SBNInfNet`, `DeepSBNInfNet`, or a `DistributionInfNet` whose distribution is a Bernoulli.
        data: ``[N, *data_shape]``, N >= 1.
        batch_size: data points per call of the network.
        n_samples: ancestral samples per data point (1 suffices for a single layer, whose probabilities
            do not depend on samples).

    Returns:
        one float64 tensor per latent tensor, ``[*shape]`` (a bit's information), on the network's device.

    Raises:
        TypeError: if ``inf_net`` is not an InfNet with the hook (or its last distribution is not a
            Bernoulli), or ``data`` is not a tensor.
        ValueError: for empty data, a ``batch_size`` or ``n_samples`` that is not a positive int, or
            probabilities of the wrong shape.
    """
    if not isinstance(inf_net, InfNet) or not inf_net.has_bit_probabilities:
        what = type(inf_net).__name__ + (" (has_bit_probabilities is False)" if isinstance(inf_net, InfNet)
                                         else ", not an InfNet")
        raise TypeError(f"bit_mutual_information: `inf_net` must be an InfNet with binary latents and the "
                        f"`bit_probabilities` hook (has_bit_probabilities); got {what}.")
    if not isinstance(data, Tensor) or data.dim() < 1 or data.shape[0] < 1:
        got = f"shape {tuple(data.shape)}" if isinstance(data, Tensor) else type(data).__name__
        raise (ValueError if isinstance(data, Tensor) else TypeError)(
            f"bit_mutual_information: `data` must be a tensor [N, *data_shape] with N >= 1; got {got}.")
    batch_size = _check_positive_int(batch_size, "batch_size")
    n_samples = _check_positive_int(n_samples, "n_samples")

    sum_probs: list[Tensor] = []  # per layer: sum of p_i over data and samples, [*shape]
    sum_entropies: list[Tensor] = []  # per layer: sum of H_b(p_i), [*shape]
    for start in range(0, data.shape[0], batch_size):
        chunk = data[start:start + batch_size]
        inf_net(chunk)
        if not inf_net.has_bit_probabilities:  # a DistributionInfNet knows only after forward
            raise TypeError(f"bit_mutual_information: `inf_net` ({type(inf_net).__name__}) has no bit "
                            f"probabilities for this data: its distribution is a {type(inf_net.params_).__name__}, "
                            "not a Bernoulli.")
        layers = inf_net.bit_probabilities(n_samples)
        if not isinstance(layers, tuple) or not all(isinstance(p, Tensor) for p in layers):
            raise ValueError(f"bit_mutual_information: `{type(inf_net).__name__}.bit_probabilities` must return a "
                             f"tuple of tensors; got {type(layers).__name__}.")
        for layer, probs in enumerate(layers):
            if probs.dim() < 2 or tuple(probs.shape[:2]) != (chunk.shape[0], n_samples):
                raise ValueError(f"bit_mutual_information: `{type(inf_net).__name__}.bit_probabilities` returned "
                                 f"layer {layer} of shape {tuple(probs.shape)}; expected [batch, n_samples, *shape] "
                                 f"= ({chunk.shape[0]}, {n_samples}, ...).")
            probs = probs.double().clamp(0, 1)
            total_probs, total_entropies = probs.sum((0, 1)), binary_entropy(probs).sum((0, 1))  # [*shape]
            if start == 0:
                sum_probs.append(total_probs)
                sum_entropies.append(total_entropies)
            else:
                sum_probs[layer] += total_probs
                sum_entropies[layer] += total_entropies
    count = data.shape[0] * n_samples
    return tuple((binary_entropy(p / count) - h / count).clamp_min(0) for p, h in zip(sum_probs, sum_entropies))
