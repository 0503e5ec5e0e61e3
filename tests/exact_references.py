"""Exact expected gradients for every estimator, on small models: the references of the registry's exact test.

Each reference is computed from the estimator's mathematics, independently of its implementation:
enumeration of latent configurations (the score-function family, VIMCO, RWS), closed forms (the
linear Gaussian ELBO), and quadrature (the K-sample bound and STL's score term by Gauss-Hermite over
the Gaussian noise; the relaxed objectives and the straight-through estimator by Gauss-Legendre over
the logistic noise). Every reference in float64.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from blackbox_vae import GenModel, InfNet, RelaxedBernoulliInfNet, ScoreFunctionLoss
from blackbox_vae.models import CategoricalInfNet, SBNGenModel, SBNInfNet
from blackbox_vae.models._mlp import mlp
from blackbox_vae.testing import (
    LinearGaussianGenModel,
    LinearGaussianInfNet,
    bernoulli_configurations,
    gradients,
    quadrature_expectation,
)

DATA_DIM, LATENT_DIM, REPLICAS = 5, 3, 100


# ------------------------------------------------------------------------------------------ models
class CarriedSampleSBNInfNet(SBNInfNet):
    """An SBN encoder whose `sample` keeps a gradient path to its probabilities (straight-through: the values are
    exact draws, z + probs - probs.detach()), as a user's InfNet may. The score-function family must score its
    samples as constants (`Loss._draw` detaches them): with the path kept, their gradients change."""

    def sample(self, n_samples: int = 1) -> Tensor:
        latents = super().sample(n_samples)  # [batch, K, H], exact draws
        probs = self.params_.probs.unsqueeze(1)  # [batch, 1, H], with the graph
        return latents + probs - probs.detach()


class ReparameterizedSampleSBNGenModel(SBNGenModel):
    """An SBN whose `sample` is reparameterized (straight-through in its prior's and likelihood's probabilities),
    as a user's GenModel may be: dreams (x', z') ~ p must be drawn without a gradient, or the sleep phase's
    log q(z'|x') would also move p."""

    def sample(self, n_samples: int = 1) -> tuple[Tensor, Tensor]:
        prior = torch.sigmoid(self.prior_logits).expand(n_samples, -1)  # [n, H]
        latents = torch.bernoulli(prior.detach())
        latents = latents + prior - prior.detach()
        means = torch.sigmoid(self.decoder(latents))  # [n, D]
        data = torch.bernoulli(means.detach())
        return data + means - means.detach(), latents


def random_sbn(device, data_dim=DATA_DIM, latent_dim=LATENT_DIM):
    """A one-layer sigmoid belief network in float64 with a random (non-zero) prior; q's `sample` carries a
    gradient path and p's `sample` is reparameterized (what the docs allow: the estimators must not depend on
    either), so every exact case on it meets both."""
    inf_net, gen_model = CarriedSampleSBNInfNet(data_dim, latent_dim), ReparameterizedSampleSBNGenModel(data_dim,
                                                                                                          latent_dim)
    with torch.no_grad():
        gen_model.prior_logits.normal_()
    return inf_net.double().to(device), gen_model.double().to(device)


def binary_data(device, n_points=3, data_dim=DATA_DIM, replicas=REPLICAS):
    """``(points [n_points, D], the points replicated ``replicas`` times)``: one gradient draw then averages
    ``replicas`` estimates per point, and the exact target of the replicated batch is the points' own."""
    points = torch.bernoulli(torch.full((n_points, data_dim), 0.5, dtype=torch.float64))
    return points.to(device), points.repeat(replicas, 1).to(device)


def configurations(device, latent_dim=LATENT_DIM):
    return bernoulli_configurations(latent_dim, dtype=torch.float64, device=device)


class SmallRelaxedBernoulliInfNet(RelaxedBernoulliInfNet):
    """q(z|x) = Bernoulli(sigmoid(W x + b)) with a relaxed sample; ``encoder`` is the linear map."""

    def __init__(self, data_dim, latent_dim):
        super().__init__()
        self.encoder = mlp(data_dim, (), latent_dim)

    def logits(self, data):
        return self.encoder(data)


class UnnormalizedCategoricalInfNet(CategoricalInfNet):
    """A categorical encoder whose `categorical_logits` are not normalized (shifted by a parameter-dependent amount
    per latent: the same softmax), which `InfNet.categorical_logits` allows ("normalized or not"); the estimators
    that read them must normalize them."""

    def categorical_logits(self, latents: Tensor, layer: int = 0) -> Tensor:
        logits = super().categorical_logits(latents, layer)  # [batch, K, L, C], normalized
        return logits + 2.0 + logits[..., :1]


def linear_gaussian(device, data_dim=3, latent_dim=2, seed=2):
    """A linear Gaussian model (float64) with q away from the posterior, and 4 data points."""
    torch.manual_seed(seed)
    inf_net = LinearGaussianInfNet(data_dim, latent_dim).double().to(device)
    gen_model = LinearGaussianGenModel(data_dim, latent_dim).double().to(device)
    with torch.no_grad():
        inf_net.log_scale.uniform_(-1.0, 0.0)
        gen_model.log_noise.fill_(-0.3)
    points = torch.randn(4, data_dim, dtype=torch.float64).to(device)
    return inf_net, gen_model, points


def _split(latents: Tensor) -> dict[str, Tensor]:
    return {"a": latents[..., :1], "b": latents[..., 1:]}


def _join(latents: dict[str, Tensor]) -> Tensor:
    return torch.cat([latents["a"], latents["b"]], dim=-1)


class DictLatentGaussianInfNet(InfNet):
    """A linear Gaussian q whose latent is a dict ``{"a": [batch, K, 1], "b": [batch, K, H - 1]}``."""

    def __init__(self, inner: LinearGaussianInfNet):
        super().__init__()
        self.inner = inner

    def forward(self, data):
        self.params_ = self.inner(data).params_
        return self

    def sample(self, n_samples=1):
        return _split(self.inner.sample(n_samples))

    def rsample(self, n_samples=1):
        return _split(self.inner.rsample(n_samples))

    def log_prob(self, latents):
        return self.inner.log_prob(_join(latents))


def _split_tuple(latents: Tensor) -> tuple[Tensor, Tensor]:
    return latents[..., :1].unsqueeze(-1), latents[..., 1:]  # ([batch, K, 1, 1], [batch, K, H - 1])


def _join_tuple(latents: tuple[Tensor, Tensor]) -> Tensor:
    return torch.cat([latents[0].squeeze(-1), latents[1]], dim=-1)


class TupleLatentGaussianInfNet(InfNet):
    """A linear Gaussian q whose latent is a tuple ``([batch, K, 1, 1], [batch, K, H - 1])`` (a leaf of two axes)."""

    def __init__(self, inner: LinearGaussianInfNet):
        super().__init__()
        self.inner = inner

    def forward(self, data):
        self.params_ = self.inner(data).params_
        return self

    def sample(self, n_samples=1):
        return _split_tuple(self.inner.sample(n_samples))

    def rsample(self, n_samples=1):
        return _split_tuple(self.inner.rsample(n_samples))

    def log_prob(self, latents):
        return self.inner.log_prob(_join_tuple(latents))


class TupleLatentGaussianGenModel(GenModel):
    """The linear Gaussian p(x, z) scoring tuple latents (see `TupleLatentGaussianInfNet`)."""

    def __init__(self, inner: LinearGaussianGenModel):
        super().__init__()
        self.inner = inner

    def forward(self, data, latents):
        self.params_ = self.inner(data, _join_tuple(latents)).params_
        return self

    def log_prob(self, data, latents):
        return self.inner.log_prob(data, _join_tuple(latents))

    def sample(self, n_samples=1):
        data, latents = self.inner.sample(n_samples)
        return data, _split_tuple(latents)


class DictLatentGaussianGenModel(GenModel):
    """The linear Gaussian p(x, z) scoring dict latents (see `DictLatentGaussianInfNet`)."""

    def __init__(self, inner: LinearGaussianGenModel):
        super().__init__()
        self.inner = inner

    def forward(self, data, latents):
        self.params_ = self.inner(data, _join(latents)).params_
        return self

    def log_prob(self, data, latents):
        return self.inner.log_prob(data, _join(latents))

    def sample(self, n_samples=1):
        data, latents = self.inner.sample(n_samples)
        return data, _split(latents)


class SelfIncludingBaselineLoss(ScoreFunctionLoss):
    """A deliberately wrong estimator: each sample's baseline includes its own signal (biased)."""

    def __init__(self, inf_net, gen_model, n_samples):
        super().__init__(inf_net, gen_model, n_samples, baseline="mean")  # so that _baseline is consulted

    def _baseline(self, learning_signal):
        return learning_signal.mean(dim=1, keepdim=True)


# ---------------------------------------------------------------------------- the NVIL statistics
class FrozenStatistics(nn.Module):
    """Calls ``loss`` with its buffers (NVIL's running mean and variance) restored before every call.

    NVIL's q-gradient is the exact one divided by max(1, sqrt(v)) at the statistics the call reads;
    holding them fixed makes that a constant, so the draws share one expectation.
    """

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss
        self.frozen = {name: buffer.clone() for name, buffer in loss.named_buffers()}

    def forward(self, data):
        with torch.no_grad():
            for name, buffer in self.loss.named_buffers():
                buffer.copy_(self.frozen[name])
        return self.loss(data)


# ------------------------------------------------------------------------------ quadrature helpers
def legendre(n_nodes, dtype, device):
    """Gauss-Legendre nodes and weights on [0, 1]."""
    nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
    return (torch.as_tensor((nodes + 1) / 2, dtype=dtype, device=device),
            torch.as_tensor(weights / 2, dtype=dtype, device=device))


def relaxed_bernoulli_objective(inf_net, gen_model, data, temperature, n_nodes=48):
    """E over logistic noise of log p(x, y) - log q(y|x), y = sigmoid((logit + L) / tau): ``[batch]``.

    L = log u - log(1 - u) with u uniform, so the expectation is an integral over the unit cube, taken
    by a tensor Gauss-Legendre rule. Differentiable in both models' parameters along the relaxed path.
    """
    u, w = legendre(n_nodes, data.dtype, data.device)
    logits = inf_net(data).params_.logits  # [batch, H]
    latent_dim = logits.shape[1]
    grid = torch.cartesian_prod(*[u] * latent_dim).reshape(-1, latent_dim)  # [G, H]
    grid_weights = torch.cartesian_prod(*[w] * latent_dim).reshape(-1, latent_dim).prod(-1)  # [G]
    noise = torch.log(grid) - torch.log1p(-grid)  # logistic
    relaxed = torch.sigmoid((logits.unsqueeze(1) + noise) / temperature)  # [batch, G, H]
    objective = gen_model(data, relaxed).log_prob(data, relaxed) - inf_net.log_prob(relaxed)  # [batch, G]
    return (objective * grid_weights).sum(-1)


def _half_line_slopes(logits, temperature, n_nodes):
    """m_i(z) = E[dy_i/da_i ; round(y_i) = z] for z in {0, 1}, y = sigmoid((a + L) / tau): ``[batch, H, 2]``.

    z = 1 exactly when L > -a, i.e. u > sigmoid(-a): a Gauss-Legendre rule on each side of that point
    (the integrand is smooth on each; with tau = 1/2 it is a rational function of u).
    """
    u, w = legendre(n_nodes, logits.dtype, logits.device)
    split = torch.sigmoid(-logits).unsqueeze(-1)  # [batch, H, 1]
    pieces = []
    for low, high in ((torch.zeros_like(split), split), (split, torch.ones_like(split))):  # z = 0, then z = 1
        nodes = low + (high - low) * u  # [batch, H, n]
        y = torch.sigmoid((logits.unsqueeze(-1) + torch.log(nodes) - torch.log1p(-nodes)) / temperature)
        pieces.append(((y * (1 - y) / temperature) * w).sum(-1) * (high - low).squeeze(-1))
    return torch.stack(pieces, dim=-1)


def straight_through_surrogate(inf_net, gen_model, data, temperature, n_nodes=64):
    """A scalar whose gradient is the exact expected straight-through Gumbel gradient of the ELBO: ``[]``.

    The estimator differentiates F(z) = log p(x, z) - log q(z|x) at the hard sample z = round(y) as if z
    were y = sigmoid((a + L) / tau), a = q's logits. Its expectation over the independent logistic noises
    L_i, by enumerating z and integrating each L_i over the half-line where round(y_i) = z_i:

        E[dF] = sum_z sum_i [prod_{j != i} q(z_j)] m_i(z_i) dF/dz_i(z) da_i  +  sum_z q(z) dF(z)|_z fixed

    with m_i(z_i) = E[dy_i/da_i ; round(y_i) = z_i] (`_half_line_slopes`). The first term is the
    straight-through path, the second the score of log q at fixed z (mean zero) and p's own gradient.
    """
    logits = inf_net(data).params_.logits  # [batch, H], differentiable in phi
    batch, latent_dim = logits.shape
    values = configurations(data.device, latent_dim).unsqueeze(0).expand(batch, -1, -1).clone()  # [batch, S, H]
    at = values.clone().requires_grad_(True)
    objective = gen_model(data, at).log_prob(data, at) - inf_net.log_prob(at)  # [batch, S]
    slope_of_objective = torch.autograd.grad(objective.sum(), at, retain_graph=True)[0].detach()  # dF/dz_i(z)
    probabilities = torch.sigmoid(logits).detach().unsqueeze(1)  # [batch, 1, H]
    per_latent = torch.where(values > 0.5, probabilities, 1 - probabilities)  # q(z_i) [batch, S, H]
    others = torch.stack([per_latent[..., [j for j in range(latent_dim) if j != i]].prod(-1)
                          for i in range(latent_dim)], dim=-1)  # prod_{j != i} q(z_j) [batch, S, H]
    slopes = _half_line_slopes(logits.detach(), temperature, n_nodes)  # [batch, H, 2]
    m = torch.where(values > 0.5, slopes[:, None, :, 1], slopes[:, None, :, 0])  # m_i(z_i) [batch, S, H]
    path = (others * m * slope_of_objective * logits.unsqueeze(1)).sum((1, 2))  # [batch]
    fixed = gen_model(data, values).log_prob(data, values) - inf_net.log_prob(values)  # [batch, S], z constant
    score = (per_latent.prod(-1) * fixed).sum(1)  # [batch]
    return (path + score).mean()


def stl_quadrature_objective(inf_net, gen_model, data, n_samples, n_nodes):
    """A scalar whose gradient is the exact expected STL gradient of the K-sample bound: ``[]``.

    STL keeps the pathwise derivative of log w_k and drops the score term d log q(z_k|x)/d phi at fixed
    z_k, weighted by w~_k. So E[STL] = grad E[L_K] + E[sum_k w~_k d log q(z_k|x)/d phi |z fixed]: the
    bound, plus the dropped term with z and w~ held constant, both by Gauss-Hermite quadrature.
    """
    batch = data.shape[0]

    def log_weights(latents):  # [batch, G * K, H] -> [batch, G, K]
        log_w = gen_model(data, latents).log_prob(data, latents) - inf_net.log_prob(latents)
        return log_w.reshape(batch, -1, n_samples)

    def bound(latents):
        return torch.logsumexp(log_weights(latents), -1) - np.log(n_samples)

    def dropped_score(latents):
        normalized = torch.softmax(log_weights(latents).detach(), -1)  # [batch, G, K]
        log_q = inf_net.log_prob(latents.detach()).reshape(batch, -1, n_samples)  # z held constant
        return (normalized * log_q).sum(-1)

    bound_value = quadrature_expectation(inf_net, data, n_samples, bound, n_nodes)
    score_value = quadrature_expectation(inf_net, data, n_samples, dropped_score, n_nodes)
    return (bound_value + score_value).mean()


def converged_gradients(objective, module, coarse_nodes):
    """Gradients of ``objective(n_nodes)`` for ``module``'s parameters at 1.5x ``coarse_nodes``, with the absolute
    difference from ``coarse_nodes`` as their numerical error: ``(gradients, errors)`` for ``assert_unbiased``."""
    coarse = gradients(objective(coarse_nodes), module)
    fine = gradients(objective(coarse_nodes + coarse_nodes // 2), module)
    return fine, {name: (fine[name] - coarse[name]).abs() for name in fine}


# ---------------------------------------------------------------------------------------------- ZGR
def darn_half(logits: Tensor, sample: Tensor) -> Tensor:
    """``sample``'s value with DARN(1/2)'s gradient to ``logits``: d x / d logits = (x (1 - p) + (1 - x) p) / 2.

    Written from the estimator's definition (Gregor et al. 2014 with xi = 1/2), apart from the library's
    ZGR: for Bernoulli variables the two must coincide (Shekhovtsov 2023).
    """
    p = torch.sigmoid(logits).detach()
    jacobian = (sample * (1 - p) + (1 - sample) * p) / 2
    return sample + jacobian * (logits - logits.detach())


def zgr_expected_objective(inf_net, gen_model, data, configurations):
    """``[N]``: sum_z q(z|x) f(z~), q(z|x) held constant and z~ = z with DARN(1/2)'s gradient, f = log p - log q.

    Its gradient is the ZGR estimator's expectation (the gradient it takes given z, averaged over q) for a
    one-layer Bernoulli network exposing ``logits``.
    """
    n, m = data.shape[0], configurations.shape[0]
    logits = inf_net.logits(data)[:, None, :].expand(n, m, -1)
    latents = darn_half(logits, configurations[None].expand(n, m, -1))
    log_q = inf_net(data).log_prob(latents)
    log_p = gen_model(data, latents).log_prob(data, latents)
    return (log_q.detach().exp() * (log_p - log_q)).sum(1)


def zgr_expected_analytic_objective(inf_net, gen_model, data, configurations_per_layer):
    """As `zgr_expected_objective`, for a hierarchical network with ``layer_logits`` and ``analytic_elbo``:
    every joint configuration of the layers, each layer's z~ built in q's order from its parents' z~."""
    n = data.shape[0]
    grids = torch.cartesian_prod(*[torch.arange(len(c)) for c in configurations_per_layer])  # [M, L]
    m = grids.shape[0]
    exact = tuple(c[grids[:, layer]][None].expand(n, m, -1) for layer, c in enumerate(configurations_per_layer))
    inf_net(data)
    weights = inf_net.log_prob(exact).detach().exp()  # q(z|x): [N, M]
    latents = list(exact)
    for layer in inf_net.order:
        logits = inf_net.layer_logits(tuple(latents))[layer].expand_as(exact[layer])
        latents[layer] = darn_half(logits, exact[layer])
    return (weights * inf_net.analytic_elbo(gen_model, data, tuple(latents))).sum(1)


def exact_layered_elbo(inf_net, gen_model, data, configurations_per_layer):
    """sum_z q(z|x) [log p(x, z) - log q(z|x)] over every joint configuration of tuple latents: ``[batch]``."""
    n = data.shape[0]
    grids = torch.cartesian_prod(*[torch.arange(len(c)) for c in configurations_per_layer])  # [M, L]
    latents = tuple(c[grids[:, layer]][None].expand(n, grids.shape[0], -1)
                    for layer, c in enumerate(configurations_per_layer))
    log_q = inf_net(data).log_prob(latents)
    log_p = gen_model(data, latents).log_prob(data, latents)
    return (log_q.exp() * (log_p - log_q)).sum(1)
