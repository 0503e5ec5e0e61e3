"""Evaluation: log-likelihood estimates by importance sampling with the inference network."""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.losses._checks import check_data, check_log_prob, check_n_samples

__all__ = ["log_likelihood_bound", "CHUNK_ELEMENTS"]

#: The default chunk of samples keeps data points x samples x data size at about this many elements (8 MiB of
#: float32 per tensor of the data's size): tensors that fit the allocator's reuse instead of fresh pages from the
#: kernel each time. Measured (benchmarks/evaluate_speed.py, the 784-200 SBN): chunks of 100 x 1000 spent half
#: their time in page faults (system time), chunks up to ~4 million elements none.
CHUNK_ELEMENTS = 2**21


@torch.no_grad()
def log_likelihood_bound(inf_net: InfNet, gen_model: GenModel, data: Tensor, n_samples: int = 1000,
                         batch_size: int = 100, sample_chunk: Optional[int] = None,
                         progress: Optional[Callable[[int], None]] = None) -> Tensor:
    r"""The K-sample importance-weighted bound of log p(x) for every data point: ``[N]``.

    $$
    \log p(x) \ge \mathbb{E}\Big[\log \frac{1}{K}\sum_{k=1}^K \frac{p(x, z_k)}{q(z_k|x)}\Big]
    $$

    The standard evaluation of latent-variable models (Burda et al. 2016):
    with large K (e.g. 5000) it approaches log p(x). Memory is bounded by
    processing ``batch_size`` data points and ``sample_chunk`` samples at a
    time, combining chunks in log-space.

    Args:
        inf_net: q(z|x), the proposal.
        gen_model: p(x, z).
        data: ``[N, *data_shape]``.
        n_samples: K.
        batch_size: data points per chunk.
        sample_chunk: samples per chunk (default: as many as keep ``batch_size x sample_chunk x`` the data
            point's size near `CHUNK_ELEMENTS`, at most ``n_samples``).
        progress: called with the number of data points finished after each chunk of ``batch_size`` (e.g. a
            progress bar's ``update``).

    Returns:
        ``[N]`` on the data's device.
    """
    data = check_data(data, "log_likelihood_bound")
    check_n_samples(n_samples, 1, "log_likelihood_bound")
    for name, value in (("batch_size", batch_size), ("sample_chunk", sample_chunk)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"log_likelihood_bound: `{name}` must be a positive integer; got {value!r}.")
    if sample_chunk is None:
        sample_chunk = max(1, min(n_samples, CHUNK_ELEMENTS // (batch_size * max(1, data[0].numel()))))
    bounds = []
    for start in range(0, data.shape[0], batch_size):
        x = data[start:start + batch_size]
        inf_net(x)
        partial_sums = []
        for chunk_start in range(0, n_samples, sample_chunk):
            k = min(sample_chunk, n_samples - chunk_start)
            latents, log_q = inf_net.sample_and_log_prob(k)
            log_q = check_log_prob(log_q, x.shape[0], k, f"{type(inf_net).__name__}.log_prob")
            log_p = check_log_prob(gen_model(x, latents).log_prob(x, latents), x.shape[0], k,
                                   f"{type(gen_model).__name__}.log_prob")
            partial_sums.append(torch.logsumexp(log_p - log_q, dim=1))  # [b]
        bounds.append(torch.logsumexp(torch.stack(partial_sums, dim=1), dim=1) - math.log(n_samples))
        if progress is not None:
            progress(x.shape[0])
    return torch.cat(bounds)
