"""Hypothesis strategies: random small models, data and sample counts for property tests.

    from hypothesis import given
    from blackbox_vae.testing.strategies import small_discrete_models, n_samples

    @given(model=small_discrete_models(), k=n_samples(2, 3))
    def test_my_estimator_is_unbiased(model, k):
        loss = MyLoss(model.inf_net, model.gen_model, n_samples=k)
        exact = exact_elbo(model.inf_net, model.gen_model, model.data, model.configurations)
        assert_unbiased(loss, model.replicated_data(), gradients(-exact.mean(), loss), false_failure_rate=1e-5)

Every drawn model is seeded from the example (its ``seed`` field), so a
failure reproduces; `register_profiles` sets up a quick profile for CI
and a thorough one for local runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.models import CategoricalGenModel, CategoricalInfNet, SBNGenModel, SBNInfNet
from blackbox_vae.testing.enumeration import bernoulli_configurations, configurations_for
from blackbox_vae.testing.linear_gaussian import LinearGaussianGenModel, LinearGaussianInfNet, closed_form_posterior

__all__ = [
    "DiscreteModel",
    "LinearGaussianModel",
    "binary_data",
    "n_samples",
    "small_discrete_models",
    "small_linear_gaussian_models",
    "register_profiles",
]


@dataclass
class DiscreteModel:
    """A small discrete latent-variable model, with data, ready for exact checks by enumeration.

    Attributes:
        inf_net: q(z|x).
        gen_model: p(x, z).
        data: ``[batch, data_dim]`` binary points.
        configurations: every latent value, ``[S, *latent_shape]``.
        data_configurations: every data value, ``[2**data_dim, data_dim]`` (for sleep-phase references).
        kind: ``"bernoulli"`` (a sigmoid belief network) or ``"categorical"`` (one-hot latents).
        max_abs_logit: the bound on every logit.
        seed: the seed its parameters were drawn with.
    """

    inf_net: InfNet = field(repr=False)
    gen_model: GenModel = field(repr=False)
    data: Tensor = field(repr=False)
    configurations: Tensor = field(repr=False)
    data_configurations: Tensor = field(repr=False)
    kind: str
    latent_shape: tuple
    data_dim: int
    max_abs_logit: float
    seed: int

    def replicated_data(self, replicas: int = 100) -> Tensor:
        """The data repeated ``replicas`` times: one gradient draw then averages ``replicas`` estimates per point."""
        return self.data.repeat(replicas, 1)


@dataclass
class LinearGaussianModel:
    """A linear Gaussian model (closed-form ELBO and log p(x)) with data; see ``blackbox_vae.testing.linear_gaussian``."""

    inf_net: LinearGaussianInfNet = field(repr=False)
    gen_model: LinearGaussianGenModel = field(repr=False)
    data: Tensor = field(repr=False)
    data_dim: int
    latent_dim: int
    seed: int

    def replicated_data(self, replicas: int = 100) -> Tensor:
        """The data repeated ``replicas`` times, ``[replicas * batch, data_dim]``: one gradient draw then averages
        ``replicas`` estimates per point."""
        return self.data.repeat(replicas, 1)


def n_samples(min_value: int = 1, max_value: int = 4) -> st.SearchStrategy[int]:
    """A number of samples K.

    Args:
        min_value: the smallest K drawn.
        max_value: the largest K drawn.

    Returns:
        a strategy of integers in [``min_value``, ``max_value``].
    """
    return st.integers(min_value, max_value)


def binary_data(data_dim: int, min_batch: int = 1, max_batch: int = 3, dtype: torch.dtype = torch.float64
                ) -> st.SearchStrategy[Tensor]:
    """Batches of binary vectors ``[batch, data_dim]``.

    Args:
        data_dim: the length of each vector.
        min_batch: the fewest rows.
        max_batch: the most rows.
        dtype: of the tensors (on the CPU).

    Returns:
        a strategy of 0/1 tensors ``[batch, data_dim]``, with ``min_batch <= batch <= max_batch``.
    """
    rows = st.lists(st.integers(0, 1), min_size=data_dim, max_size=data_dim)
    return st.lists(rows, min_size=min_batch, max_size=max_batch).map(lambda r: torch.tensor(r, dtype=dtype))


def _randomize(modules, seed: int, max_abs_logit: float, data_dim: int) -> None:
    """Uniform weights bounded so that every logit (of binary inputs) lies in [-max_abs_logit, max_abs_logit]."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in modules:
            for parameter in module.parameters():
                fan_in = parameter.shape[-1] + 1 if parameter.dim() == 2 else data_dim + 1
                bound = max_abs_logit / fan_in
                parameter.copy_((torch.rand(parameter.shape, generator=generator, dtype=parameter.dtype) * 2 - 1)
                                * bound)


# Logit bounds that keep every latent configuration's probability under q >= 1e-3 (sigmoid(-2.2)^3 and
# (exp(-2 * 1.15) / 3)^2 both exceed it), so that the 20000 draws of a typical check (200 draws of
# 100 replicas) see each configuration about 20 times or more: the regime in which a sample mean's
# standard error is trustworthy. Rarer configurations can carry a gradient no finite check sees.
_MAX_ABS_LOGIT = {"bernoulli": 2.2, "categorical": 1.15}


@st.composite
def small_discrete_models(draw, kinds: tuple[str, ...] = ("bernoulli", "categorical"), max_latents: int = 3,
                          max_classes: int = 3, max_data_dim: int = 5, max_batch: int = 3,
                          dtype: torch.dtype = torch.float64,
                          device: str | torch.device = "cpu") -> DiscreteModel:
    """Random small discrete latent-variable models with data, enumerable exactly.

    ``"bernoulli"``: a one-layer sigmoid belief network (`SBNInfNet` /
    ``SBNGenModel``) with 1..``max_latents`` latents. ``"categorical"``: one-hot latents
    (`CategoricalInfNet` / ``CategoricalGenModel``, linear maps, a learned
    prior), 1..2 latents of 2..``max_classes`` classes. Observations: 1..``max_data_dim`` binary units.

    Parameters are uniform, scaled so that every logit is at most a drawn bound in absolute value; the
    largest bound keeps every latent configuration's probability under q at 1e-3 or more (with the
    default sizes), so the exact gradient never hides in configurations a Monte Carlo check cannot see.
    """
    kind = draw(st.sampled_from(kinds))
    data_dim = draw(st.integers(1, max_data_dim))
    seed = draw(st.integers(0, 2**31 - 1))
    if kind not in _MAX_ABS_LOGIT:
        raise ValueError(f"small_discrete_models: unknown kind {kind!r}; expected 'bernoulli' or 'categorical'.")
    max_abs_logit = draw(st.floats(0.1, _MAX_ABS_LOGIT[kind]))
    if kind == "bernoulli":
        n_latents = draw(st.integers(1, max_latents))
        inf_net, gen_model = SBNInfNet(data_dim, n_latents), SBNGenModel(data_dim, n_latents)
        latent_shape: tuple = (n_latents,)
    elif kind == "categorical":
        n_latents, n_classes = draw(st.integers(1, 2)), draw(st.integers(2, max_classes))
        inf_net = CategoricalInfNet(data_dim, n_latents, n_classes, hidden=())
        gen_model = CategoricalGenModel(data_dim, n_latents, n_classes, hidden=(), learn_prior=True)
        latent_shape = (n_latents, n_classes)
    _randomize((inf_net, gen_model), seed, max_abs_logit, data_dim)
    inf_net, gen_model = inf_net.to(device, dtype), gen_model.to(device, dtype)
    data = draw(binary_data(data_dim, max_batch=max_batch, dtype=dtype)).to(device)
    return DiscreteModel(
        inf_net=inf_net, gen_model=gen_model, data=data, configurations=configurations_for(inf_net, data),
        data_configurations=bernoulli_configurations(data_dim, dtype=dtype, device=device), kind=kind,
        latent_shape=latent_shape, data_dim=data_dim, max_abs_logit=max_abs_logit, seed=seed)


@st.composite
def small_linear_gaussian_models(draw, max_data_dim: int = 4, max_latent_dim: int = 1, max_batch: int = 3,
                                 dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
                                 ) -> LinearGaussianModel:
    """Random linear Gaussian models with data, for closed-form and quadrature references.

    The generative model's parameters are random; q is the exact posterior (diagonal, for a 1-D latent
    exactly) plus a perturbation of a drawn size, as after some training. Far-off q's make the
    importance weights so uneven that quadrature needs many more nodes. ``max_latent_dim=1`` (the
    default) keeps K-sample quadrature (``quadrature_iwae_bound``) cheap.
    """
    data_dim = draw(st.integers(1, max_data_dim))
    latent_dim = draw(st.integers(1, max_latent_dim))
    seed = draw(st.integers(0, 2**31 - 1))
    perturbation = draw(st.floats(0.0, 0.5))
    generator = torch.Generator().manual_seed(seed)
    inf_net, gen_model = LinearGaussianInfNet(data_dim, latent_dim), LinearGaussianGenModel(data_dim, latent_dim)
    with torch.no_grad():
        for parameter in gen_model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.7)
        # The posterior's mean is affine in x: read its slope and intercept off two evaluations.
        probe = torch.cat([torch.zeros(1, data_dim), torch.eye(data_dim)])  # [1 + D, D]
        posterior = closed_form_posterior(gen_model, probe)
        intercept = posterior.mean[0]  # [H]
        gain = (posterior.mean[1:] - intercept).T  # [H, D]
        inf_net.linear.weight.copy_(gain + perturbation * torch.randn(gain.shape, generator=generator))
        inf_net.linear.bias.copy_(intercept + perturbation * torch.randn(latent_dim, generator=generator))
        inf_net.log_scale.copy_(0.5 * posterior.covariance_matrix[0].diagonal().log()
                                + perturbation * torch.randn(latent_dim, generator=generator))
    batch = draw(st.integers(1, max_batch))
    data = torch.randn(batch, data_dim, generator=generator, dtype=dtype) * 1.5
    return LinearGaussianModel(inf_net=inf_net.to(device, dtype), gen_model=gen_model.to(device, dtype),
                               data=data.to(device), data_dim=data_dim, latent_dim=latent_dim, seed=seed)


def register_profiles() -> None:
    """Registers three Hypothesis profiles for estimator property tests.

    - ``"blackbox-quick"``: 5 examples per test, derandomized (the same examples on every run), no
      deadline: a quick local run.
    - ``"blackbox-ci"``: 50 examples per test, derandomized (CI is reproducible), no deadline.
    - ``"blackbox-thorough"``: 200 examples per test, random, no deadline, for local exploration.

    Load one with ``settings.load_profile(name)`` (e.g. in ``conftest.py``, from an environment variable).
    """
    common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
                  print_blob=True)
    settings.register_profile("blackbox-quick", max_examples=5, derandomize=True, **common)
    settings.register_profile("blackbox-ci", max_examples=50, derandomize=True, **common)
    settings.register_profile("blackbox-thorough", max_examples=200, **common)
