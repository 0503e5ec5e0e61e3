"""Sampling from the prior: the usual way to generate, and the baseline every other sampler is compared with."""

from __future__ import annotations

from torch import Tensor

from blackbox_vae.latents import Latents
from blackbox_vae.samplers.base import Sampler

__all__ = ["PriorSampler"]


class PriorSampler(Sampler):
    """z ~ p(z) (the generative model's own ``sample``), decoded. Needs no fit and no inference network.

    Args: as `Sampler`.
    """

    needs_fit = False

    def _fit(self, codes: Tensor) -> None:
        pass  # fitting would only record the codes' layout

    def sample_latents(self, n: int) -> Latents:
        """``n`` latents from p(z), with leading dimension ``[n]``."""
        return self.gen_model.sample(n)[1]

    def _sample_codes(self, n: int) -> Tensor:
        return self.layout.flatten(self.sample_latents(n))
