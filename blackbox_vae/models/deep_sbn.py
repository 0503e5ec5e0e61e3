"""Sigmoid belief networks with several stochastic layers (e.g. 200-200-200, as in the VIMCO/NVIL/RWS papers).

Latents are a tuple ``(z_1, ..., z_L)``, z_1 next to the data, each ``[batch, n_samples, H_l]`` in {0, 1}.
Written directly against InfNet/GenModel, with the Bernoulli log-likelihood and draws of `blackbox_vae._distributions`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import RelaxedBernoulli

from blackbox_vae._call_state import set_call_state
from blackbox_vae._distributions import bernoulli_log_prob, draw_bernoulli
from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet, _check_n_samples
from blackbox_vae.models._mlp import mlp
from blackbox_vae.relaxed import check_temperature, straight_through_sample
from blackbox_vae.zgr import bernoulli_zgr

__all__ = ["DeepSBNInfNet", "DeepSBNGenModel", "bernoulli_log_prob", "draw_bernoulli"]  # the two re-exported


def _check_layers(layers: Sequence[int], owner: str) -> list[int]:
    layers = list(layers)
    if not layers or any(not isinstance(h, int) or h < 1 for h in layers):
        raise ValueError(f"{owner}: `layers` must be a non-empty list of positive ints; got {layers!r}.")
    return layers


class DeepSBNInfNet(InfNet):
    """q(z_1|x) q(z_2|z_1) ... q(z_L|z_{L-1}), each a product of Bernoullis with logits from an MLP.

    Args:
        data_dim: D.
        layers: latent units per stochastic layer, from the data up (e.g. ``[200, 200, 200]``).
        hidden: deterministic hidden widths inside each conditional (``()``: linear, as in the papers).

    Shapes: data ``[batch, D]``; latents a tuple of ``[batch, n_samples, H_l]``.
    """

    def __init__(self, data_dim: int, layers: Sequence[int], hidden: Sequence[int] = ()):
        super().__init__()
        layers = _check_layers(layers, "DeepSBNInfNet")
        widths = [data_dim, *layers]
        self.conditionals = nn.ModuleList(mlp(a, hidden, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, data: Tensor) -> "DeepSBNInfNet":
        set_call_state(self, "params_", self.conditionals[0](data))  # [batch, H_1] logits of q(z_1|x)
        return self

    def _logits_above(self, layer: int, below: Tensor) -> Tensor:
        return self.conditionals[layer](below)

    def sample(self, n_samples: int = 1) -> tuple[Tensor, ...]:
        with torch.no_grad():
            return self.sample_and_log_prob(n_samples)[0]

    def sample_and_log_prob(self, n_samples: int = 1) -> tuple[tuple[Tensor, ...], Tensor]:
        """Fused: each layer's logits are computed once, for sampling and scoring.

        Measured (benchmarks/hot_path_tricks.py): 4.8% of a step of the 784-200-200-200 SBN at K = 5.
        """
        logits = self.params_.unsqueeze(1)  # [batch, 1, H_1]
        latents, log_q = [], None
        for layer in range(len(self.conditionals)):
            if layer > 0:
                logits = self._logits_above(layer, latents[-1])  # [batch, K, H_l]
                z = draw_bernoulli(torch.sigmoid(logits.detach()))
            else:
                z = draw_bernoulli(torch.sigmoid(logits.detach()).expand(-1, n_samples, -1))
            log_q_layer = bernoulli_log_prob(logits, z)
            log_q = log_q_layer if log_q is None else log_q + log_q_layer
            latents.append(z)
        return tuple(latents), log_q

    def log_prob(self, latents: tuple[Tensor, ...]) -> Tensor:
        log_q = bernoulli_log_prob(self.params_.unsqueeze(1), latents[0])  # [batch, K]
        for layer in range(1, len(self.conditionals)):
            log_q = log_q + bernoulli_log_prob(self._logits_above(layer, latents[layer - 1]), latents[layer])
        return log_q

    @property
    def layer_kinds(self) -> tuple[str, ...]:
        """Every layer is Bernoulli (`InfNet.layer_kinds`)."""
        return ("bernoulli",) * len(self.conditionals)

    def bernoulli_logits(self, latents: tuple[Tensor, ...], layer: int = 0) -> Tensor:
        """Logits of q(z_layer | z_{layer-1}) (of q(z_1|x) for layer 0): ``[batch, n_samples, H_layer]``."""
        if layer == 0:
            return self.params_.unsqueeze(1).expand(-1, latents[0].shape[1], -1)
        return self._logits_above(layer, latents[layer - 1])

    def bit_probabilities(self, n_samples: int = 1) -> tuple[Tensor, ...]:
        """q(z_l = 1 | z_{l-1}) per layer, each layer conditioned on a sample of the layer below (z_0 = x).

        Vectorized over samples: layer 1's probabilities are sigmoid of `forward`'s logits, expanded; each
        deeper layer's are computed from ``[batch, n_samples, H_{l-1}]`` draws of the layer below.

        Args:
            n_samples: ancestral samples per data point.

        Returns:
            ``(p_1, ..., p_L)``, each ``[batch, n_samples, H_l]``.
        """
        n_samples = _check_n_samples(n_samples, f"{type(self).__name__}.bit_probabilities")
        probs = torch.sigmoid(self.params_).unsqueeze(1).expand(-1, n_samples, -1)  # [batch, K, H_1]
        layers = [probs]
        for layer in range(1, len(self.conditionals)):
            below = draw_bernoulli(layers[-1].detach())  # [batch, K, H_{l-1}]
            layers.append(torch.sigmoid(self._logits_above(layer, below)))  # [batch, K, H_l]
        return tuple(layers)

    def relaxed_rsample(self, n_samples: int = 1, *, temperature: float,
                        straight_through: bool = False) -> tuple[Tensor, ...]:
        """Relaxed (binary Concrete) samples, layer by layer, each conditioned on the (relaxed) layer below.

        Args:
            n_samples: samples per data point.
            temperature: the relaxation's temperature, > 0.
            straight_through: exact {0, 1} samples forward (each layer conditioned on the hard layer below),
                relaxed gradients backward.

        Raises:
            ValueError: for a temperature that is not a number > 0.
        """
        tau = torch.as_tensor(check_temperature(f"{type(self).__name__}.relaxed_rsample", temperature),
                              dtype=self.params_.dtype, device=self.params_.device)
        logits = self.params_.unsqueeze(1).expand(-1, n_samples, -1)
        latents = []
        for layer in range(len(self.conditionals)):
            if layer > 0:
                logits = self._logits_above(layer, latents[-1])
            relaxed = RelaxedBernoulli(tau, logits=logits, validate_args=False).rsample()
            latents.append(straight_through_sample(relaxed.detach().round(), relaxed) if straight_through else relaxed)
        return tuple(latents)

    def zgr_rsample(self, n_samples: int = 1) -> tuple[Tensor, ...]:
        """Exact {0, 1} samples, layer by layer, with the ZGR (DARN(1/2)) gradient through every layer."""
        logits = self.params_.unsqueeze(1).expand(-1, n_samples, -1)
        latents = []
        for layer in range(len(self.conditionals)):
            if layer > 0:
                logits = self._logits_above(layer, latents[-1])
            latents.append(bernoulli_zgr(logits))
        return tuple(latents)


class DeepSBNGenModel(GenModel):
    """p(z_L) p(z_{L-1}|z_L) ... p(z_1|z_2) p(x|z_1), every factor a product of Bernoullis.

    Args:
        data_dim: D.
        layers: latent units per stochastic layer, from the data up.
        hidden: deterministic hidden widths inside each conditional (``()``: linear).

    Shapes: data ``[batch, D]``; latents a tuple of ``[batch, n_samples, H_l]``.
    """

    def __init__(self, data_dim: int, layers: Sequence[int], hidden: Sequence[int] = ()):
        super().__init__()
        layers = _check_layers(layers, "DeepSBNGenModel")
        widths = [data_dim, *layers]
        self.prior_logits = nn.Parameter(torch.zeros(layers[-1]))
        # conditionals[l] maps layer l+1 down to layer l (layer 0 is the data)
        self.conditionals = nn.ModuleList(mlp(b, hidden, a) for a, b in zip(widths[:-1], widths[1:]))

    @property
    def output_logits_bias(self) -> Tensor:
        """The ``[D]`` bias of p(x|z_1)'s logits (`blackbox_vae.models.initialize_output_bias`)."""
        return self.conditionals[0][-1].bias

    def forward(self, data: Tensor, latents: tuple[Tensor, ...]) -> "DeepSBNGenModel":
        # logits of p(x|z_1), p(z_1|z_2), ..., p(z_{L-1}|z_L)
        set_call_state(self, "params_", tuple(conditional(z) for conditional, z in zip(self.conditionals, latents)))
        return self

    def log_prob(self, data: Tensor, latents: tuple[Tensor, ...]) -> Tensor:
        log_p = bernoulli_log_prob(self.prior_logits, latents[-1])  # [batch, K]
        log_p = log_p + bernoulli_log_prob(self.params_[0], data.unsqueeze(1))
        for layer in range(1, len(latents)):
            log_p = log_p + bernoulli_log_prob(self.params_[layer], latents[layer - 1])
        return log_p

    def sample(self, n_samples: int = 1) -> tuple[Tensor, tuple[Tensor, ...]]:
        """(x [n, D], (z_1 [n, H_1], ..., z_L [n, H_L]))."""
        with torch.no_grad():
            z = draw_bernoulli(torch.sigmoid(self.prior_logits).expand(n_samples, -1))
            latents = [z]
            for conditional in reversed(self.conditionals[1:]):
                latents.insert(0, draw_bernoulli(torch.sigmoid(conditional(latents[0]))))
            data = draw_bernoulli(torch.sigmoid(self.conditionals[0](latents[0])))
        return data, tuple(latents)

    def likelihood_mean(self, latents: tuple[Tensor, ...]) -> Tensor:
        """E[x | z] = sigmoid of p(x|z_1)'s logits, for latents with any leading dimensions."""
        return torch.sigmoid(self.conditionals[0](latents[0]))

    @torch.no_grad()
    def sample_data(self, latents: tuple[Tensor, ...]) -> Tensor:
        """x ~ p(x | z_1), for latents with any leading dimensions."""
        return torch.bernoulli(self.likelihood_mean(latents))
