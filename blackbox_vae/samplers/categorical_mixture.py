"""A mixture of independent Bernoulli (and categorical) variables fitted to discrete codes by EM."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.progress import progress_bar
from blackbox_vae.samplers.base import Sampler, _positive_int

__all__ = ["BernoulliMixtureSampler"]


class BernoulliMixtureSampler(Sampler):
    """p(u) = sum_c pi_c prod_v Categorical(u_v; theta_cv) over discrete codes, fitted by EM.

    Each bit of a binary code is a variable with two categories (a Bernoulli), each one-hot vector of a
    categorical latent one with C categories. EM runs from ``n_components`` codes drawn at random as
    centres, until the mean log-likelihood per code improves by less than ``tolerance`` or after
    ``max_iter`` iterations; the category probabilities are smoothed by ``smoothing`` (a Dirichlet
    prior's pseudo-count), so no probability is ever 0. Written here (scikit-learn has no Bernoulli
    mixture). The fitted weights and probabilities are buffers: sampling runs in torch.

    Args:
        gen_model: the trained generative model, as `Sampler`.
        inf_net: its inference network, as `Sampler`.
        n_components: mixture components.
        max_iter: EM's iteration limit.
        tolerance: EM stops when the mean log-likelihood per code improves by less.
        smoothing: the Dirichlet prior's pseudo-count on each category probability.
        **options: `Sampler`'s keyword arguments (``codes`` defaults to samples for discrete latents).

    Attributes:
        log_likelihood_: the mean log-likelihood per code at the end of EM.

    Raises:
        ValueError: from `fit`, for real-valued codes.
    """

    code_kinds = ("binary", "one-hot")
    density_settings = ("n_components",)

    def __init__(self, gen_model: GenModel, inf_net: Optional[InfNet] = None, n_components: int = 10,
                 max_iter: int = 200, tolerance: float = 1e-5, smoothing: float = 1e-3, **options: Any):
        super().__init__(gen_model, inf_net, **options)
        self.n_components = _positive_int(n_components, "n_components", "BernoulliMixtureSampler")
        self.max_iter = _positive_int(max_iter, "max_iter", "BernoulliMixtureSampler")
        self.tolerance, self.smoothing = float(tolerance), float(smoothing)
        self.register_buffer("log_weights", torch.empty(0))  # [C]
        self.register_buffer("log_probs", torch.empty(0))  # [C, V, max categories], -inf past a variable's count
        self.log_likelihood_ = float("nan")

    def _one_hot(self, categories: Tensor) -> Tensor:
        """Category indices ``[N, V]`` -> ``[N, V, max categories]`` indicators."""
        return torch.nn.functional.one_hot(categories, self.log_probs.shape[-1] if self.log_probs.numel()
                                           else max(self.layout.cardinalities)).double()

    def _fit(self, codes: Tensor) -> None:
        counts = torch.tensor(self.layout.cardinalities, device=codes.device)  # [V]
        width = int(counts.max())
        valid = torch.arange(width, device=codes.device) < counts[:, None]  # [V, width]
        indicators = torch.nn.functional.one_hot(self.layout.to_categories(codes), width).double()  # [N, V, width]
        n = indicators.shape[0]
        if n < self.n_components:
            raise ValueError(f"BernoulliMixtureSampler: {n} codes cannot fit {self.n_components} components; fit on "
                             "more data or lower `n_components`.")
        # Initial probabilities: smoothed indicators of randomly drawn codes.
        centres = indicators[torch.randperm(n, device=codes.device)[:self.n_components]]  # [C, V, width]
        probs = (centres + 0.5) * valid / (1 + 0.5 * counts[:, None])
        log_weights = torch.full((self.n_components,), -torch.log(torch.tensor(float(self.n_components))).item(),
                                 dtype=torch.float64, device=codes.device)
        previous = -float("inf")
        flat = indicators.reshape(n, -1)  # [N, V * width]
        bar = progress_bar(self.max_iter, "BernoulliMixtureSampler: EM", "iteration", self.progress)
        for _ in range(self.max_iter):
            log_probs = torch.where(valid, probs.clamp_min(1e-300).log(), torch.zeros((), dtype=probs.dtype,
                                                                                      device=probs.device))
            joint = flat @ log_probs.reshape(self.n_components, -1).T + log_weights  # [N, C]
            total = torch.logsumexp(joint, dim=1)  # [N]
            mean_log_likelihood = total.mean().item()
            responsibilities = (joint - total[:, None]).exp()  # [N, C]
            mass = responsibilities.sum(0)  # [C]
            log_weights = (mass / n).log()
            expected = torch.einsum("nc,nvk->cvk", responsibilities, indicators)  # [C, V, width]
            probs = (expected + self.smoothing) * valid / (mass[:, None, None] + self.smoothing * counts[:, None])
            bar.update()
            bar.set_postfix_str(f"mean log-likelihood {mean_log_likelihood:.4f}")
            if mean_log_likelihood - previous < self.tolerance:
                break
            previous = mean_log_likelihood
        bar.close()
        self.log_likelihood_ = mean_log_likelihood
        self.log_weights = log_weights.to(codes.dtype)
        self.log_probs = torch.where(valid, probs.log(), torch.full_like(probs, -float("inf"))).to(codes.dtype)

    def log_prob(self, codes: Tensor) -> Tensor:
        """The fitted log-probability of discrete codes ``[N, D]``: ``[N]``."""
        indicators = self._one_hot(self.layout.to_categories(codes)).to(self.log_probs.dtype)
        finite = torch.where(torch.isfinite(self.log_probs), self.log_probs, torch.zeros_like(self.log_probs))
        joint = indicators.reshape(len(codes), -1) @ finite.reshape(len(self.log_weights), -1).T + self.log_weights
        return torch.logsumexp(joint, dim=1)

    def _sample_codes(self, n: int) -> Tensor:
        components = torch.distributions.Categorical(logits=self.log_weights).sample((n,))  # [n]
        categories = torch.distributions.Categorical(logits=self.log_probs[components]).sample()  # [n, V]
        return self.layout.from_categories(categories, self.log_probs.dtype)

    def extra_repr(self) -> str:
        return f"n_components={self.n_components}, {super().extra_repr()}"
