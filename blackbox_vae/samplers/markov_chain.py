"""The Markov chain x -> z ~ q(z|x) -> x ~ p(x|z): samples from its limiting distribution."""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.latents import Latents, map_latents
from blackbox_vae.samplers.base import NotFittedError, Sampler, _positive_int
from blackbox_vae.samplers.codes import CodeLayout

__all__ = ["MarkovChainSampler"]


class MarkovChainSampler(Sampler):
    """Alternates z ~ q(z|x) and x ~ p(x|z) for ``n_steps`` steps, and decodes the last z.

    When the encoder and the decoder are consistent (q(z|x) p(x) = p(x|z) p(z)), the chain's limiting
    distribution is the model's p(x); how far its samples are from the prior's measures how far they
    are from consistent (Flach, Schlesinger & Shekhovtsov 2024). It fits nothing: with ``start="noise"``
    each chain starts from uniform noise x_0 in [0, 1]; with ``start="data"`` from data points, which
    `fit` records (a random draw of them starts each batch of chains). Needs ``gen_model.sample_data``.

    Args:
        gen_model: the trained generative model, as `Sampler`.
        inf_net: its inference network (required here).
        n_steps: steps of the chain, >= 1.
        start: ``"noise"`` or ``"data"``.
        **options: `Sampler`'s keyword arguments (``decode`` applies to the last step).
    """

    needs_fit = False

    density_settings = ("n_steps", "start")

    def __init__(self, gen_model: GenModel, inf_net: InfNet, n_steps: int = 100,
                 start: Literal["noise", "data"] = "noise", **options: Any):
        if inf_net is None:
            raise ValueError("MarkovChainSampler: `inf_net` is required (each step draws z ~ q(z|x)).")
        super().__init__(gen_model, inf_net, **options)
        self.n_steps = _positive_int(n_steps, "n_steps", "MarkovChainSampler")
        if start not in ("noise", "data"):
            raise ValueError(f"MarkovChainSampler: `start` must be 'noise' or 'data'; got {start!r}.")
        self.start = start
        self.register_buffer("starts", torch.empty(0))

    def _fit(self, codes: Tensor) -> None:
        pass  # the data themselves are what fit keeps (see fit)

    def fit(self, data: Tensor, batch_size: int = 256, progress: Optional[bool] = False) -> "MarkovChainSampler":
        """Records the data shape and, for ``start="data"``, the data points the chains start from (at once:
        ``batch_size`` and ``progress`` are accepted for `Sampler.fit`'s signature).

        Raises:
            ValueError: for empty data.
        """
        if not isinstance(data, Tensor) or data.dim() == 0 or data.shape[0] == 0:
            got = tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__
            raise ValueError(f"MarkovChainSampler.fit: `data` must be a tensor [N, *data_shape] with N >= 1; got {got}.")
        self.data_shape = tuple(data.shape[1:])
        if self.start == "data":
            self.starts = data.detach().clone()
        return self

    def _initial(self, n: int) -> Tensor:
        if self.start == "data":
            if not self.starts.numel():
                raise NotFittedError("MarkovChainSampler(start='data') needs data to start from: call "
                                     "`MarkovChainSampler.fit(data)` first.")
            return self.starts[torch.randint(len(self.starts), (n,), device=self.starts.device)]
        if self.data_shape is None:
            x, _ = self.gen_model.sample(1)
            self.data_shape = tuple(x.shape[1:])
        reference = next(self.gen_model.parameters())
        return torch.rand(n, *self.data_shape, dtype=reference.dtype, device=reference.device)

    def run(self, x: Tensor, n_steps: int) -> Latents:
        """The latents z_n after ``n_steps`` steps from ``x [n, *data_shape]``, leading dimension ``[n]``
        (x_n, drawn from them, is left to the caller's decoding)."""
        for step in range(n_steps):
            latents = map_latents(lambda t: t[:, 0], self.inf_net(x).sample(1))
            if step < n_steps - 1:
                x = self.gen_model.sample_data(latents)
        return latents

    def sample_latents(self, n: int) -> Latents:
        """The chains' last latents, ``[n, ...]``."""
        return self.run(self._initial(n), self.n_steps)

    def _sample_codes(self, n: int) -> Tensor:
        latents = self.sample_latents(n)
        return CodeLayout.of(latents).flatten(latents)

    def extra_repr(self) -> str:
        return f"n_steps={self.n_steps}, start={self.start!r}, {super().extra_repr()}"
