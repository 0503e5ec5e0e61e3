r"""Hierarchical Bernoulli VAEs (Flach, Schlesinger & Shekhovtsov 2024): z_0 -> z_1 -> ... -> z_{L-1} -> x.

The generative model: $p(z_0)$ uniform (fixed), each $p(z_l | z_{l-1})$ a product of Bernoullis whose logits an
MLP with a linear skip computes, and $p(x | z_{L-1})$ a product of Bernoullis from a decoder (an MLP, or the
paper's transposed convolutions for 28x28 images). Two encoders:

- **ladder** (`HVAELadderInfNet`): $q(z_0|x)$, then $q(z_l | z_{l-1}, x)$ with logits $s_l(z_{l-1}) + a_l(x)$,
  where $s_l$ is p's own conditional $p(z_l|z_{l-1})$ (the module is shared) and $a_l$ an x-dependent term;
- **reverse** (`HVAEReverseInfNet`): $q(z_{L-1}|x)$, then $q(z_{l-1} | z_l)$ down to $z_0$, as in wake-sleep.

Latents are a tuple ``(z_0, ..., z_{L-1})``, top layer first, each ``[batch, n_samples, H_l]`` in {0, 1}; data
are flat ``[batch, D]`` (the convolutional layers reshape them to ``image_shape``). Every InfNet hook the
library's estimators use is here: exact ``sample``/``log_prob`` (score function, NVIL, VIMCO, RWS, symmetric
learning), ``relaxed_rsample`` (Gumbel-softmax), ``zgr_rsample`` and ``analytic_elbo`` (ZGR with closed-form
per-layer KLs, the paper's ELBO baseline), and ``bit_probabilities`` (per-bit mutual information).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor, nn
import torch.nn.functional as F
from torch.distributions import Bernoulli, RelaxedBernoulli

from blackbox_vae._call_state import set_call_state
from blackbox_vae._distributions import bernoulli_log_prob
from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.models._mlp import mlp
from blackbox_vae.relaxed import check_temperature, straight_through_sample
from blackbox_vae.zgr import bernoulli_zgr

__all__ = ["HVAEGenModel", "HVAELadderInfNet", "HVAEReverseInfNet"]

Architecture = Literal["mlp", "conv"]
_CONV_IMAGE = (1, 28, 28)  # the paper's convolutional layers are sized for 28x28 single-channel images


class _Conditional(nn.Module):
    """Logits of a Bernoulli layer given its parent: an MLP of tanh units plus a linear skip (as in the paper)."""

    def __init__(self, n_in: int, hidden: Sequence[int], n_out: int):
        super().__init__()
        self.net = mlp(n_in, hidden, n_out)
        self.skip = nn.Linear(n_in, n_out, bias=False)

    def forward(self, parent: Tensor) -> Tensor:
        return self.net(parent) + self.skip(parent)


class _ConvFeatures(nn.Module):
    """The paper's convolutional encoder trunk: a 28x28 image to ``width`` tanh features."""

    def __init__(self, width: int, channels: int = 32):
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 3, 1, padding=1), nn.Tanh(), nn.Conv2d(c, c, 2, 1), nn.Tanh(),  # 28 -> 27
            nn.Conv2d(c, 2 * c, 3, 2), nn.Tanh(), nn.Conv2d(2 * c, 2 * c, 3, 1), nn.Tanh(),  # 13 -> 11
            nn.Conv2d(2 * c, 2 * c, 3, 1), nn.Tanh(), nn.Conv2d(2 * c, 4 * c, 3, 2), nn.Tanh(),  # 9 -> 4
            nn.Conv2d(4 * c, width, 4, 1), nn.Tanh(), nn.Flatten(1))  # 1

    def forward(self, data: Tensor) -> Tensor:
        return self.net(data.reshape(-1, *_CONV_IMAGE))


class _ConvDecoder(nn.Module):
    """The paper's transposed-convolution decoder: a code to 28x28 logits, flattened to ``[*, 784]``."""

    def __init__(self, n_in: int, channels: int = 32):
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.ConvTranspose2d(n_in, 4 * c, 4, 1), nn.Tanh(), nn.ConvTranspose2d(4 * c, 2 * c, 3, 2), nn.Tanh(),  # 9
            nn.ConvTranspose2d(2 * c, 2 * c, 3, 1), nn.Tanh(), nn.ConvTranspose2d(2 * c, 2 * c, 3, 1), nn.Tanh(),
            nn.ConvTranspose2d(2 * c, c, 3, 2), nn.Tanh(), nn.ConvTranspose2d(c, c, 2, 1), nn.Tanh(),  # 27 -> 28
            nn.Conv2d(c, 1, 3, 1, padding=1))

    def forward(self, code: Tensor) -> Tensor:
        lead = code.shape[:-1]
        logits = self.net(code.reshape(-1, code.shape[-1], 1, 1))
        return logits.reshape(*lead, -1)


def _bernoulli_kl(q_logits: Tensor, p_logits: Tensor) -> Tensor:
    """KL(Bernoulli(sigmoid(q_logits)) || Bernoulli(sigmoid(p_logits))), elementwise, in log-space.

    Not torch's ``kl_divergence``: it sets the KL to infinity wherever sigmoid rounds to exactly 0 or 1 (a logit
    above about 17 in float32), which a trained encoder reaches.
    """
    return (torch.sigmoid(q_logits) * (F.logsigmoid(q_logits) - F.logsigmoid(p_logits))
            + torch.sigmoid(-q_logits) * (F.logsigmoid(-q_logits) - F.logsigmoid(-p_logits)))


def _check(layers: Sequence[int], hidden: Sequence[int], architecture: str, data_dim: int, owner: str) -> list[int]:
    layers = list(layers)
    if not layers or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in layers):
        raise ValueError(f"{owner}: `layers` must be a non-empty list of positive ints (top layer first, e.g. "
                         f"[30, 100]); got {layers!r}.")
    if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(f"{owner}: `hidden` must be positive ints; got {list(hidden)!r}.")
    if architecture not in ("mlp", "conv"):
        raise ValueError(f"{owner}: `architecture` must be 'mlp' or 'conv'; got {architecture!r}.")
    if architecture == "conv" and data_dim != 784:
        raise ValueError(f"{owner}: architecture='conv' is the paper's layers for 28x28 images (data_dim 784); got "
                         f"data_dim {data_dim}. Use architecture='mlp'.")
    if architecture == "mlp" and not hidden:
        raise ValueError(f"{owner}: architecture='mlp' needs at least one hidden width; got hidden=().")
    return layers


def _features(data_dim: int, hidden: Sequence[int], architecture: str) -> nn.Module:
    """x -> tanh features: an MLP's hidden layers, or the convolutional trunk (600 features, as the paper)."""
    if architecture == "conv":
        return _ConvFeatures(600)
    return nn.Sequential(mlp(data_dim, hidden[:-1], hidden[-1]), nn.Tanh())


def _feature_width(hidden: Sequence[int], architecture: str) -> int:
    return 600 if architecture == "conv" else hidden[-1]


class HVAEGenModel(GenModel):
    """p(z_0) p(z_1|z_0) ... p(z_{L-1}|z_{L-2}) p(x|z_{L-1}): Bernoulli layers, uniform p(z_0).

    Args:
        data_dim: D (784 for the convolutional decoder).
        layers: units per stochastic layer, top first (the paper: ``[30, 100]``).
        hidden: tanh widths inside each conditional and the MLP decoder.
        architecture: ``"mlp"``, or ``"conv"`` for the paper's transposed convolutions (28x28 images).

    Shapes: data ``[batch, D]``; latents a tuple ``(z_0, ..., z_{L-1})`` of ``[batch, n_samples, H_l]``.
    """

    def __init__(self, data_dim: int, layers: Sequence[int] = (30, 100), hidden: Sequence[int] = (256,),
                 architecture: Architecture = "mlp"):
        super().__init__()
        layers = _check(layers, hidden, architecture, data_dim, "HVAEGenModel")
        self.layers, self.architecture = layers, architecture
        self.register_buffer("prior_logits", torch.zeros(layers[0]))  # uniform p(z_0), not learned (the paper)
        # conditionals[l - 1]: logits of p(z_l | z_{l-1})
        self.conditionals = nn.ModuleList(_Conditional(a, hidden, b) for a, b in zip(layers[:-1], layers[1:]))
        self.decoder = _ConvDecoder(layers[-1]) if architecture == "conv" else mlp(layers[-1], hidden, data_dim)

    @property
    def output_logits_bias(self) -> Tensor | None:
        """The ``[D]`` bias of p(x|z)'s logits for the MLP decoder (`blackbox_vae.models.initialize_output_bias`);
        None for the convolutional one, whose biases are per channel."""
        return self.decoder[-1].bias if self.architecture == "mlp" else None

    def conditional_logits(self, layer: int, parent: Tensor) -> Tensor:
        """Logits of p(z_layer | z_{layer-1} = parent), for ``layer`` >= 1 and any leading dimensions."""
        return self.conditionals[layer - 1](parent)

    def forward(self, data: Tensor, latents: tuple[Tensor, ...]) -> "HVAEGenModel":
        # logits of p(z_1|z_0), ..., p(z_{L-1}|z_{L-2}), then p(x|z_{L-1})
        logits = [self.conditional_logits(layer, latents[layer - 1]) for layer in range(1, len(latents))]
        set_call_state(self, "params_", (*logits, self.decoder(latents[-1])))
        return self

    def log_prob(self, data: Tensor, latents: tuple[Tensor, ...]) -> Tensor:
        log_p = bernoulli_log_prob(self.prior_logits, latents[0])  # [batch, K]
        for layer in range(1, len(latents)):
            log_p = log_p + bernoulli_log_prob(self.params_[layer - 1], latents[layer])
        return log_p + bernoulli_log_prob(self.params_[-1], data.unsqueeze(1))

    def sample(self, n_samples: int = 1) -> tuple[Tensor, tuple[Tensor, ...]]:
        """(x ``[n, D]``, (z_0 ``[n, H_0]``, ..., z_{L-1} ``[n, H_{L-1}]``)), ancestrally."""
        with torch.no_grad():
            latents = [torch.bernoulli(torch.sigmoid(self.prior_logits).expand(n_samples, -1))]
            for layer in range(1, len(self.layers)):
                latents.append(torch.bernoulli(torch.sigmoid(self.conditional_logits(layer, latents[-1]))))
            return torch.bernoulli(self.likelihood_mean(tuple(latents))), tuple(latents)

    def likelihood_mean(self, latents: tuple[Tensor, ...]) -> Tensor:
        """E[x | z] = sigmoid of p(x|z_{L-1})'s logits, for latents with any leading dimensions."""
        return torch.sigmoid(self.decoder(latents[-1]))

    @torch.no_grad()
    def sample_data(self, latents: tuple[Tensor, ...]) -> Tensor:
        """x ~ p(x | z_{L-1}), for latents with any leading dimensions."""
        return torch.bernoulli(self.likelihood_mean(latents))


class _HVAEInfNet(InfNet):
    """What both encoder orders share: ancestral sampling in ``order``, given per-layer conditional logits."""

    #: the layer indices in the order q samples them
    order: tuple[int, ...]

    def _logits(self, layer: int, latents: list[Tensor | None]) -> Tensor:
        """Logits of q(z_layer | x, its parents), ``[batch, K or 1, H]``, from the parents in ``latents``."""
        raise NotImplementedError

    @property
    def layer_order(self) -> tuple[int, ...]:
        """The order q draws the layers in (`InfNet.layer_order`)."""
        return self.order

    @property
    def layer_kinds(self) -> tuple[str, ...]:
        """Every layer is Bernoulli (`InfNet.layer_kinds`)."""
        return ("bernoulli",) * len(self.order)

    def bernoulli_logits(self, latents: tuple[Tensor, ...], layer: int = 0) -> Tensor:
        """Logits of q(z_layer | x, its parents in ``latents``): ``[batch, n_samples, H_layer]``."""
        logits = self._logits(layer, list(latents))
        return logits.expand(logits.shape[0], latents[0].shape[1], logits.shape[-1])

    def layer_logits(self, latents: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Each layer's q-logits given the parents in ``latents`` (for the batch last passed to `forward`)."""
        return tuple(self._logits(layer, list(latents)) for layer in range(len(latents)))

    def _ancestral(self, n_samples: int, draw) -> tuple[tuple[Tensor, ...], list[Tensor]]:
        """Latents drawn in ``order`` by ``draw(logits [batch, K, H]) -> z``, and each layer's logits."""
        latents: list[Tensor | None] = [None] * len(self.order)
        logits: list[Tensor | None] = [None] * len(self.order)
        for layer in self.order:
            layer_logits = self._logits(layer, latents)
            logits[layer] = layer_logits.expand(layer_logits.shape[0], n_samples, layer_logits.shape[-1])
            latents[layer] = draw(logits[layer])
        return tuple(latents), logits

    def sample(self, n_samples: int = 1) -> tuple[Tensor, ...]:
        with torch.no_grad():
            return self._ancestral(n_samples, lambda logits: torch.bernoulli(torch.sigmoid(logits)))[0]

    def sample_and_log_prob(self, n_samples: int = 1) -> tuple[tuple[Tensor, ...], Tensor]:
        """Fused: each layer's logits are computed once, for sampling and scoring."""
        latents, logits = self._ancestral(n_samples, lambda logits: torch.bernoulli(torch.sigmoid(logits.detach())))
        return latents, sum(bernoulli_log_prob(lg, z) for lg, z in zip(logits, latents))

    def log_prob(self, latents: tuple[Tensor, ...]) -> Tensor:
        return sum(bernoulli_log_prob(lg, z) for lg, z in zip(self.layer_logits(latents), latents))

    def zgr_rsample(self, n_samples: int = 1) -> tuple[Tensor, ...]:
        """Exact {0, 1} samples with the ZGR (DARN(1/2)) gradient, each layer conditioned on its parents' ZGR draw."""
        return self._ancestral(n_samples, bernoulli_zgr)[0]

    def relaxed_rsample(self, n_samples: int = 1, *, temperature: float,
                        straight_through: bool = False) -> tuple[Tensor, ...]:
        """Relaxed (binary Concrete) samples, layer by layer in q's order, each conditioned on its relaxed parents.

        Args:
            n_samples: samples per data point.
            temperature: the relaxation's temperature, > 0.
            straight_through: exact {0, 1} samples forward, relaxed gradients backward.

        Raises:
            ValueError: for a temperature that is not a number > 0.
        """
        tau = check_temperature(f"{type(self).__name__}.relaxed_rsample", temperature)

        def draw(logits: Tensor) -> Tensor:
            relaxed = RelaxedBernoulli(torch.as_tensor(tau, dtype=logits.dtype, device=logits.device), logits=logits,
                                       validate_args=False).rsample()
            return straight_through_sample(relaxed.detach().round(), relaxed) if straight_through else relaxed

        return self._ancestral(n_samples, draw)[0]

    def bit_probabilities(self, n_samples: int = 1) -> tuple[Tensor, ...]:
        """q(z_i = 1 | x, sampled parents) along an ancestral sample: ``[batch, n_samples, H_l]`` per layer."""
        with torch.no_grad():
            _, logits = self._ancestral(n_samples, lambda logits: torch.bernoulli(torch.sigmoid(logits)))
            return tuple(torch.sigmoid(lg) for lg in logits)

    def _check_gen_model(self, gen_model: GenModel) -> HVAEGenModel:
        if not isinstance(gen_model, HVAEGenModel) or gen_model.layers != self.layers:
            got = type(gen_model).__name__ + (f" with layers {gen_model.layers}" if isinstance(gen_model, HVAEGenModel)
                                              else "")
            raise TypeError(f"`{type(self).__name__}.analytic_elbo` needs the HVAEGenModel it was built for (layers "
                            f"{self.layers}); got {got}.")
        return gen_model


class HVAELadderInfNet(_HVAEInfNet):
    """Ladder encoder: q(z_0|x), then q(z_l | z_{l-1}, x) with logits p's s_l(z_{l-1}) + a_l(x).

    The p-conditionals are p's modules, registered here too (so ``parameters()`` lists them, as a ladder VAE
    shares them): the ELBO trains them through both models, as the paper's ELBO baseline does, while
    `SymmetricLoss` trains p's parameters with p's (wake) term only, which makes q's use of them detached,
    as in the paper's q-update.

    Args:
        gen_model: the `HVAEGenModel` whose conditionals q borrows.
        data_dim: D.
        hidden: tanh widths of the x-feature MLP (its last width is the feature size).
        architecture: ``"mlp"``, or ``"conv"`` for the paper's convolutional trunk (28x28 images).

    Shapes: data ``[batch, D]``; latents ``(z_0, ..., z_{L-1})``, each ``[batch, n_samples, H_l]``.
    """

    def __init__(self, gen_model: HVAEGenModel, data_dim: int, hidden: Sequence[int] = (256,),
                 architecture: Architecture = "mlp"):
        super().__init__()
        if not isinstance(gen_model, HVAEGenModel):
            raise TypeError(f"HVAELadderInfNet: `gen_model` must be the HVAEGenModel whose conditionals the ladder "
                            f"borrows; got {type(gen_model).__name__}.")
        self.layers = _check(gen_model.layers, hidden, architecture, data_dim, "HVAELadderInfNet")
        self.order = tuple(range(len(self.layers)))
        self.features = _features(data_dim, hidden, architecture)
        self.heads = nn.ModuleList(nn.Linear(_feature_width(hidden, architecture), h) for h in self.layers)
        self.prior_conditionals = gen_model.conditionals  # shared with p (see the class docstring)

    def forward(self, data: Tensor) -> "HVAELadderInfNet":
        features = self.features(data)
        set_call_state(self, "params_", tuple(head(features) for head in self.heads))  # a_l(x): [batch, H_l]
        return self

    def _logits(self, layer: int, latents: list[Tensor | None]) -> Tensor:
        x_term = self.params_[layer].unsqueeze(1)
        if layer == 0:
            return x_term  # the uniform prior's logits are zero
        return self.prior_conditionals[layer - 1](latents[layer - 1]) + x_term

    def analytic_elbo(self, gen_model: GenModel, data: Tensor, latents: tuple[Tensor, ...]) -> Tensor:
        """log p(x | z_{L-1}) - sum_l KL(q(z_l | z_{l-1}, x) || p(z_l | z_{l-1})): ``[batch, K]``.

        Every KL is in closed form given the sampled parents (q and p condition on the same z_{l-1}).

        Raises:
            TypeError: if ``gen_model`` is not the `HVAEGenModel` this network was built for.
        """
        gen_model = self._check_gen_model(gen_model)
        q_logits = self.layer_logits(latents)
        elbo = bernoulli_log_prob(gen_model.decoder(latents[-1]), data.unsqueeze(1))
        for layer, logits in enumerate(q_logits):
            p_logits = (gen_model.prior_logits if layer == 0
                        else gen_model.conditional_logits(layer, latents[layer - 1])).expand_as(logits)
            elbo = elbo - _bernoulli_kl(logits, p_logits).sum(-1)
        return elbo


class HVAEReverseInfNet(_HVAEInfNet):
    """Reverse (wake-sleep) encoder: q(z_{L-1}|x), then q(z_{l-1} | z_l) down to z_0.

    Args:
        data_dim: D.
        layers: units per stochastic layer, top first (as the `HVAEGenModel`'s).
        hidden: tanh widths of the x-feature MLP and of each conditional.
        architecture: ``"mlp"``, or ``"conv"`` for the paper's convolutional trunk (28x28 images).

    Shapes: data ``[batch, D]``; latents ``(z_0, ..., z_{L-1})``, each ``[batch, n_samples, H_l]``.
    """

    def __init__(self, data_dim: int, layers: Sequence[int] = (30, 100), hidden: Sequence[int] = (256,),
                 architecture: Architecture = "mlp"):
        super().__init__()
        self.layers = _check(layers, hidden, architecture, data_dim, "HVAEReverseInfNet")
        self.order = tuple(reversed(range(len(self.layers))))
        self.features = _features(data_dim, hidden, architecture)
        self.head = nn.Linear(_feature_width(hidden, architecture), self.layers[-1])
        # conditionals[l]: logits of q(z_l | z_{l+1})
        self.conditionals = nn.ModuleList(_Conditional(b, hidden, a) for a, b in zip(self.layers[:-1], self.layers[1:]))

    def forward(self, data: Tensor) -> "HVAEReverseInfNet":
        set_call_state(self, "params_", self.head(self.features(data)))  # logits of q(z_{L-1}|x): [batch, H]
        return self

    def _logits(self, layer: int, latents: list[Tensor | None]) -> Tensor:
        if layer == len(self.layers) - 1:
            return self.params_.unsqueeze(1)
        return self.conditionals[layer](latents[layer + 1])

    def analytic_elbo(self, gen_model: GenModel, data: Tensor, latents: tuple[Tensor, ...]) -> Tensor:
        """log p(x | z_{L-1}) + sum_{l >= 1} [log p(z_l | z_{l-1}) + H(q(z_l | z_{l+1}))] - KL(q(z_0 | z_1) || p(z_0)).

        q draws z_l before z_{l-1}, so only the top layer's KL is closed-form given its parents; the other
        layers' entropies are (their p-terms need z_{l-1}, drawn after them): ``[batch, K]``.

        Raises:
            TypeError: if ``gen_model`` is not the `HVAEGenModel` this network was built for.
        """
        gen_model = self._check_gen_model(gen_model)
        q_logits = self.layer_logits(latents)
        elbo = bernoulli_log_prob(gen_model.decoder(latents[-1]), data.unsqueeze(1))
        for layer in range(1, len(latents)):
            q_layer = Bernoulli(logits=q_logits[layer].expand_as(latents[layer]), validate_args=False)
            elbo = elbo + bernoulli_log_prob(gen_model.conditional_logits(layer, latents[layer - 1]), latents[layer])
            elbo = elbo + q_layer.entropy().sum(-1)
        top = q_logits[0].expand_as(latents[0])
        return elbo - _bernoulli_kl(top, gen_model.prior_logits.expand_as(top)).sum(-1)
