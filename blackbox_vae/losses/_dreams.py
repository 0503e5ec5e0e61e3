"""The sleep phase shared by the losses that train q on dreams: (x', z') ~ p(x, z), then log q(z'|x')."""

from __future__ import annotations

import torch
from torch import Tensor

from blackbox_vae.latents import latent_leaves, map_latents
from blackbox_vae.losses._checks import check_latents


def dreamed_log_q(loss, n_dreams: int, device: torch.device) -> Tensor:
    """log q(z'|x') for ``n_dreams`` dreams (x', z') ~ ``loss.gen_model.sample``: ``[n_dreams, 1]``, differentiable
    in q's parameters only through q (the dreams are detached).

    Raises:
        ValueError: if the dreams' shapes are not ``[n_dreams, ...]``, or they are on another device than the data.
    """
    gen_name, inf_name = type(loss.gen_model).__name__, type(loss.inf_net).__name__
    # Dreams are data to q: no gradient may reach p through them, though p's `sample` be reparameterized (and
    # detached as well, for a `sample` that returns a parameter itself).
    with torch.no_grad():
        dreamed_data, dreamed_latents = loss.gen_model.sample(n_dreams)
        dreamed_data, dreamed_latents = dreamed_data.detach(), map_latents(torch.Tensor.detach, dreamed_latents)
    if not isinstance(dreamed_data, Tensor) or dreamed_data.dim() == 0 or dreamed_data.shape[0] != n_dreams:
        got = tuple(dreamed_data.shape) if isinstance(dreamed_data, Tensor) else type(dreamed_data).__name__
        raise ValueError(f"`{gen_name}.sample({n_dreams})` returned data of shape {got}; expected "
                         f"[n_samples, *data_shape] with n_samples = {n_dreams}.")
    latents = map_latents(lambda t: t.unsqueeze(1), dreamed_latents)  # [n_dreams, 1, ...]
    check_latents(latents, n_dreams, 1, f"{gen_name}.sample (latents, with a sample axis added)")
    for name, tensor in (("data", dreamed_data), *latent_leaves(latents)):
        if tensor.device != device:
            raise ValueError(f"`{gen_name}.sample({n_dreams})` returned {name} on {tensor.device}, but the data are "
                             f"on {device}; sample on the device of the model's parameters (e.g. create noise "
                             f"with `device=` a parameter's device).")
    log_q = loss.inf_net(dreamed_data).log_prob(latents)
    return loss._checked(log_q, n_dreams, 1, f"{inf_name}.log_prob")
