"""Exact references by enumerating every latent configuration of a small discrete model.

The S configurations of a model's latent space ride on the ``n_samples`` axis,
so every model is scored in one batched call. Configurations have the latents'
structure with a leading ``[S]`` in place of ``[batch, n_samples]``: a tensor
``[S, *latent_shape]`` for one latent tensor, and for layered latents (a tuple
or dict of tensors, one per layer) the same tuple or dict of ``[S, *shape_l]``
tensors, row s of every layer together making the s-th joint configuration.
`product_configurations` builds them from each layer's own configurations (S is
the product of the layers' counts), and `configurations_for` from each layer's
support (Bernoulli bits, one-hot categories, integer codes). The K-sample bound and the
expected RWS updates average over K-tuples of configurations; since both are
symmetric in the K samples, the default method sums over multisets (each
weighted by its multinomial coefficient): C(S + K - 1, K) terms instead of S**K.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Literal, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, OneHotCategorical

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import DistributionInfNet, InfNet
from blackbox_vae.latents import Latents, latent_leaves, map_latents

__all__ = [
    "DEFAULT_MAX_CONFIGURATIONS",
    "bernoulli_configurations",
    "categorical_configurations",
    "integer_configurations",
    "product_configurations",
    "configurations_for",
    "exact_elbo",
    "exact_log_marginal",
    "exact_iwae_bound",
    "exact_rws_wake_objectives",
    "exact_sleep_phi_objective",
]

DEFAULT_MAX_CONFIGURATIONS = 2**16
DEFAULT_MAX_TUPLES = 2**18


def _check_size(size: int, limit: int, what: str) -> None:
    if size > limit:
        raise ValueError(f"{what} has {size} joint configurations, more than `max_configurations`={limit}; "
                         "enumerate a smaller model or raise the limit.")


def integer_configurations(cardinalities: Sequence[int], *, max_configurations: int = DEFAULT_MAX_CONFIGURATIONS,
                           dtype: torch.dtype | None = None, device=None) -> Tensor:
    """Every integer code with ``0 <= z_j < cardinalities[j]``: ``[prod(cardinalities), len(cardinalities)]``.

    The codes are in lexicographic order, the last position varying fastest.

    Args:
        cardinalities: the number of values of each position.
        max_configurations: the most codes allowed.
        dtype: of the result (default: torch's default floating-point dtype).
        device (str | torch.device | None): of the result (default: torch's default device).

    Returns:
        the codes, of ``dtype`` on ``device``.

    Raises:
        ValueError: if there are more than ``max_configurations``.
    """
    size = math.prod(cardinalities)
    _check_size(size, max_configurations, f"An integer code with cardinalities {tuple(cardinalities)}")
    grid = list(itertools.product(*[range(c) for c in cardinalities]))
    return torch.tensor(grid, dtype=dtype or torch.get_default_dtype(), device=device).reshape(size, len(cardinalities))


def bernoulli_configurations(n_latents: int, *, max_configurations: int = DEFAULT_MAX_CONFIGURATIONS,
                             dtype: torch.dtype | None = None, device=None) -> Tensor:
    """Every vector in {0, 1}^n_latents: ``[2**n_latents, n_latents]``.

    Args:
        n_latents: the number of binary latents.
        max_configurations: the most vectors allowed.
        dtype: of the result (default: torch's default floating-point dtype).
        device (str | torch.device | None): of the result (default: torch's default device).

    Returns:
        the vectors, of ``dtype`` on ``device``.

    Raises:
        ValueError: if there are more than ``max_configurations``.
    """
    if 2**n_latents > max_configurations:
        _check_size(2**n_latents, max_configurations, f"{n_latents} Bernoulli latents")
    return integer_configurations([2] * n_latents, max_configurations=max_configurations, dtype=dtype, device=device)


def categorical_configurations(n_latents: int, n_classes: int, *, max_configurations: int = DEFAULT_MAX_CONFIGURATIONS,
                               dtype: torch.dtype | None = None, device=None) -> Tensor:
    """Every assignment of ``n_latents`` one-hot categoricals: ``[n_classes**n_latents, n_latents, n_classes]``.

    Args:
        n_latents: the number of categorical latents.
        n_classes: the classes of each.
        max_configurations: the most assignments allowed.
        dtype: of the result (default: torch's default floating-point dtype).
        device (str | torch.device | None): of the result (default: torch's default device).

    Returns:
        the one-hot assignments, of ``dtype`` on ``device``.

    Raises:
        ValueError: if there are more than ``max_configurations``.
    """
    size = n_classes**n_latents
    _check_size(size, max_configurations, f"{n_latents} categorical latents of {n_classes} classes")
    codes = integer_configurations([n_classes] * n_latents, max_configurations=max_configurations,
                                   dtype=torch.long, device=device)
    return torch.nn.functional.one_hot(codes, n_classes).to(dtype or torch.get_default_dtype())


#: A layer's support for `configurations_for`: ``"bernoulli"`` (every element 0 or 1), ``"one-hot"`` (the last
#: dimension one-hot over its size; ``"categorical"``, as `InfNet.layer_kinds` says it, is the same) or an int n
#: (every element an integer code 0..n-1, in a floating-point dtype).
Support = Union[str, int]
#: `InfNet.layer_kinds` entries (and their aliases in ``supports``) as supports.
_SUPPORT_OF_KIND = {"bernoulli": "bernoulli", "categorical": "one-hot", "one-hot": "one-hot"}


def product_configurations(per_layer: Latents, *, max_configurations: int = DEFAULT_MAX_CONFIGURATIONS) -> Latents:
    """Every joint configuration of layered latents from each layer's configurations.

    Args:
        per_layer: a tuple or dict (nested to any depth) of each layer's configurations ``[S_l, *shape_l]``
            (e.g. from `bernoulli_configurations` and `categorical_configurations`).
        max_configurations: the most joint configurations allowed.

    Returns:
        the same structure of ``[S, *shape_l]`` tensors, S = prod_l S_l: row s of every layer together is the
        s-th joint configuration, in lexicographic order (the last layer varying fastest). One tensor is
        returned as it is.

    Raises:
        ValueError: if there are more than ``max_configurations``.
    """
    leaves = [leaf for _, leaf in latent_leaves(per_layer, "per_layer")]
    counts = [leaf.shape[0] for leaf in leaves]
    _check_size(math.prod(counts), max_configurations,
                f"A product of {len(counts)} layers of {' x '.join(map(str, counts))} configurations")
    index = integer_configurations(counts, max_configurations=max_configurations, dtype=torch.long,
                                   device=leaves[0].device)  # [S, L]
    rows = iter(index.unbind(1))
    return map_latents(lambda leaf: leaf[next(rows)], per_layer)


def _layer_configurations(support: Support, shape: tuple[int, ...], path: str, max_configurations: int,
                          dtype: torch.dtype, device) -> tuple[int, Callable[[], Tensor]]:
    """The number of values of one layer of ``shape`` and a function building them ``[S_l, *shape]``."""
    n = math.prod(shape)
    if support == "bernoulli":
        return 2**n, lambda: bernoulli_configurations(n, max_configurations=max_configurations, dtype=dtype,
                                                      device=device).reshape(-1, *shape)
    if support == "one-hot":
        if len(shape) == 0:
            raise ValueError(f"configurations_for: {path} is a scalar, so it cannot be one-hot (over its last "
                             "dimension); got `supports` 'one-hot' for it.")
        n_classes, n = shape[-1], math.prod(shape[:-1])
        return n_classes**n, lambda: categorical_configurations(
            n, n_classes, max_configurations=max_configurations, dtype=dtype, device=device).reshape(-1, *shape)
    if isinstance(support, int) and not isinstance(support, bool) and support >= 1:
        return support**n, lambda: integer_configurations(
            [support] * n, max_configurations=max_configurations, dtype=dtype, device=device).reshape(-1, *shape)
    raise ValueError(f"configurations_for: the support of {path} must be 'bernoulli', 'one-hot' ('categorical') or "
                     "a positive int "
                     f"(integer codes); got {support!r}.")


def _infer_support(draws: Tensor) -> Optional[str]:
    """The support that draws ``[*lead, *shape]`` show: ``"one-hot"``, ``"bernoulli"``, or None for other values.

    ``"one-hot"`` when every draw is one-hot over a last dimension of at least 2 elements, else
    ``"bernoulli"`` when every value is 0 or 1. Draws cannot tell a Bernoulli layer that happened to draw
    only one-hot rows from a one-hot layer, so callers check the result (`configurations_for` checks that
    q's probabilities of the configurations sum to 1).
    """
    if not bool(((draws == 0) | (draws == 1)).all()):
        return None
    if draws.dim() >= 1 and draws.shape[-1] >= 2 and bool((draws.sum(-1) == 1).all()):
        return "one-hot"
    return "bernoulli"


def configurations_for(inf_net: InfNet, data: Tensor, *, supports: Optional[Union[Support, Sequence, Mapping]] = None,
                       max_configurations: int = DEFAULT_MAX_CONFIGURATIONS, n_draws: int = 64) -> Latents:
    """Every value of an InfNet's latents: ``[S, *latent_shape]``, or a tuple/dict of them for layered latents.

    For a `DistributionInfNet` the support is read from its distribution: Bernoulli, OneHotCategorical
    and Categorical (wrapped in ``Independent`` or not), whose latents are independent per element. For any
    other InfNet (layered latents: a tuple or dict of tensors) each layer's shape comes from a sample, and its
    support from ``supports``, else from the class's ``layer_kinds`` where it says them, else from ``n_draws``
    draws (one-hot if every draw is, else Bernoulli bits); the configurations are the product of the layers'
    (`product_configurations`), and q's probabilities of them, for the first row of ``data``, must sum to 1.

    Example, a first layer one-hot over C classes and a second of B bits given it: the result is
    ``(z1 [C * 2**B, C], z2 [C * 2**B, B])``, z1's class varying slowest.

    Args:
        inf_net: the inference network; it is run on the first row of ``data`` (which replaces its
            ``params_``).
        data: ``[batch, *data_shape]``; only its first row is used.
        supports: each layer's support, in the latents' structure (one value for one latent tensor, a
            tuple or dict of them for layered latents): ``"bernoulli"``, ``"one-hot"`` (or ``"categorical"``) or
            an int n (integer codes 0..n-1). By default read from the distribution, the class's ``layer_kinds``,
            or draws.
        max_configurations: the most (joint) configurations allowed.
        n_draws: draws that show each layer's shape, and its support when neither ``supports`` nor
            ``layer_kinds`` gives it (not for a DistributionInfNet).

    Returns:
        the configurations in the distribution's (or the samples') dtype and on its device (integer codes, in
        a floating-point dtype, for Categorical).

    Raises:
        TypeError: for a distribution, or drawn values, it cannot enumerate (pass configurations explicitly,
            or ``supports``).
        ValueError: if the latent space exceeds ``max_configurations``; for a ``supports`` that does not fit
            the latents; if q's probabilities of the configurations do not sum to 1 (a wrong support, or a
            `log_prob` that is not normalized).
    """
    inf_net = inf_net(data[:1])
    if isinstance(inf_net, DistributionInfNet) and supports is None:
        return _distribution_configurations(inf_net.params_, max_configurations)
    draws = inf_net.sample(n_draws)  # [1, n_draws, *shape] per layer
    leaves = latent_leaves(draws)
    kinds = getattr(inf_net, "layer_kinds", None)  # InfNet.layer_kinds: what the class says each layer is
    if supports is None and kinds is not None:
        supports = tuple(kinds)
        if len(supports) != len(leaves) or any(kind not in _SUPPORT_OF_KIND for kind in supports):
            raise TypeError(f"configurations_for: `{type(inf_net).__name__}.layer_kinds` is {kinds!r}; only "
                            f"Bernoulli and categorical layers, one per latent tensor ({len(leaves)}), can be "
                            "enumerated from it: pass `supports`, or configurations explicitly.")
        layer_supports = [_SUPPORT_OF_KIND[kind] for kind in supports]
    elif supports is None:
        layer_supports = [_infer_support(leaf) for _, leaf in leaves]
        for (path, _), support in zip(leaves, layer_supports):
            if support is None:
                raise TypeError(f"configurations_for: {path} of `{type(inf_net).__name__}.sample` holds values "
                                "other than 0 and 1, so its support is not Bernoulli bits or one-hot categories; "
                                "pass `supports` (an int n for integer codes 0..n-1), or configurations explicitly.")
    else:
        layer_supports = [_SUPPORT_OF_KIND.get(support, support) for _, support in _support_leaves(supports, draws)]
    sizes, builders = zip(*[_layer_configurations(support, tuple(leaf.shape[2:]), path, max_configurations,
                                                  leaf.dtype, leaf.device)
                            for (path, leaf), support in zip(leaves, layer_supports)])
    described = ", ".join(f"{path} {support!r}" for (path, _), support in zip(leaves, layer_supports))
    _check_size(math.prod(sizes), max_configurations, f"The latents of `{type(inf_net).__name__}` ({described})")
    per_layer = iter([build() for build in builders])
    configurations = product_configurations(map_latents(lambda _: next(per_layer), draws),
                                            max_configurations=max_configurations)
    with torch.no_grad():
        mass = inf_net.log_prob(_per_datum(configurations, 1)).double().exp().sum().item()
    tolerance = 1e-4 if leaves[0][1].dtype in (torch.float16, torch.bfloat16, torch.float32) else 1e-9
    if abs(mass - 1) > tolerance:
        raise ValueError(f"configurations_for: q's probabilities of the {math.prod(sizes)} configurations of the "
                         f"supports ({described}) sum to {mass:.6g}, not 1: pass the right `supports` (a layer whose "
                         "draws all looked one-hot may be Bernoulli bits), or normalize "
                         f"`{type(inf_net).__name__}.log_prob`.")
    return configurations


def _support_leaves(supports, draws: Latents) -> list[tuple[str, Support]]:
    """``supports`` as ``(path, support)`` per latent tensor of ``draws``, or a ValueError naming the mismatch."""
    def leaves(value, path):
        if isinstance(value, (str, int)):
            return [(path, value)]
        if isinstance(value, Mapping):
            return [leaf for key, item in value.items() for leaf in leaves(item, f"{path}[{key!r}]")]
        if isinstance(value, (tuple, list)):
            return [leaf for i, item in enumerate(value) for leaf in leaves(item, f"{path}[{i}]")]
        raise TypeError(f"configurations_for: `supports` must hold 'bernoulli', 'one-hot' ('categorical') or ints; got "
                        f"{type(value).__name__} at {path}.")

    got = leaves(supports, "latents")
    expected = [path for path, _ in latent_leaves(draws)]
    if [path for path, _ in got] != expected:
        raise ValueError(f"configurations_for: `supports` must have the latents' structure, one support per latent "
                         f"tensor ({', '.join(expected)}); got {supports!r}.")
    return got


def _distribution_configurations(dist: Distribution, max_configurations: int) -> Tensor:
    """Every value of one distribution's latent (Bernoulli, OneHotCategorical, Categorical): ``[S, *latent_shape]``."""
    base = dist.base_dist if isinstance(dist, Independent) else dist
    if not isinstance(base, (Bernoulli, OneHotCategorical, Categorical)):
        raise TypeError(f"configurations_for: cannot enumerate a {type(base).__name__}; "
                        "pass configurations explicitly.")
    like = base.logits
    shape = tuple(dist.batch_shape[1:]) + tuple(dist.event_shape)
    if isinstance(base, Bernoulli):
        n = math.prod(shape)
        return bernoulli_configurations(n, max_configurations=max_configurations, dtype=like.dtype,
                                        device=like.device).reshape(-1, *shape)
    if isinstance(base, OneHotCategorical):
        n_classes, n = shape[-1], math.prod(shape[:-1])
        return categorical_configurations(n, n_classes, max_configurations=max_configurations, dtype=like.dtype,
                                          device=like.device).reshape(-1, *shape)
    n_classes, n = like.shape[-1], math.prod(shape)  # Categorical: integer codes
    return integer_configurations([n_classes] * n, max_configurations=max_configurations, dtype=like.dtype,
                                  device=like.device).reshape(-1, *shape)


def _count(configurations: Latents) -> int:
    """S, the leading dimension every tensor of ``configurations`` shares; a ValueError naming them otherwise."""
    leaves = latent_leaves(configurations, "configurations")
    counts = {leaf.shape[0] if leaf.dim() else None for _, leaf in leaves}
    if len(counts) != 1 or None in counts:
        got = ", ".join(f"{path} {tuple(leaf.shape)}" for path, leaf in leaves)
        raise ValueError(f"`configurations` must hold every joint configuration on the first dimension of each "
                         f"tensor, the same S for every layer; got {got}. Combine each layer's own configurations "
                         "with product_configurations.")
    return counts.pop()


def _per_datum(configurations: Latents, batch: int) -> Latents:
    """The S configurations on the ``n_samples`` axis: ``[batch, S, *shape]`` per layer, one batched call."""
    _count(configurations)
    return map_latents(lambda t: t.unsqueeze(0).expand(batch, *t.shape), configurations)


def _scores(inf_net: InfNet, gen_model: GenModel, data: Tensor, configurations: Latents) -> tuple[Tensor, Tensor]:
    """log q and log p of every configuration for every datum: ``[batch, S]`` each."""
    latents = _per_datum(configurations, data.shape[0])
    return inf_net(data).log_prob(latents), gen_model(data, latents).log_prob(data, latents)


def exact_elbo(inf_net: InfNet, gen_model: GenModel, data: Tensor, configurations: Latents) -> Tensor:
    """sum_z q(z|x) [log p(x, z) - log q(z|x)], differentiable: ``[batch]``.

    Args:
        inf_net: q(z|x).
        gen_model: p(x, z).
        data: ``[batch, *data_shape]``.
        configurations: every latent value, ``[S, *latent_shape]`` (a tuple or dict of ``[S, *shape_l]``
            for layered latents: see the module docstring).
    """
    log_q, log_p = _scores(inf_net, gen_model, data, configurations)
    return (log_q.exp() * (log_p - log_q)).sum(dim=1)


def exact_log_marginal(gen_model: GenModel, data: Tensor, configurations: Latents) -> Tensor:
    """log p(x) = logsumexp_z log p(x, z), differentiable: ``[batch]``.

    Args:
        gen_model: p(x, z).
        data: ``[batch, *data_shape]``.
        configurations: every latent value, ``[S, *latent_shape]`` (a tuple or dict of ``[S, *shape_l]``
            for layered latents: see the module docstring).
    """
    latents = _per_datum(configurations, data.shape[0])
    log_p = gen_model(data, latents).log_prob(data, latents)  # [batch, S]
    return torch.logsumexp(log_p, dim=1)


Method = Literal["multisets", "tuples"]


def _sample_groups(n_configurations: int, n_samples: int, method: Method, max_tuples: int, device
                   ) -> tuple[Tensor, Tensor]:
    """Index groups ``[T, K]`` and the log of how many ordered K-tuples each stands for ``[T]``."""
    if method == "tuples":
        size = n_configurations**n_samples
    elif method == "multisets":
        size = math.comb(n_configurations + n_samples - 1, n_samples)
    else:
        raise ValueError(f"`method` must be 'multisets' or 'tuples'; got {method!r}.")
    if size > max_tuples:
        raise ValueError(f"{n_samples}-sample groups of {n_configurations} latent configurations number {size} "
                         f"({method}), more than `max_tuples`={max_tuples}; use fewer latents or samples, or raise it.")
    if method == "tuples":
        index = torch.arange(n_configurations, device=device)
        return (torch.cartesian_prod(*[index] * n_samples).reshape(size, n_samples),
                torch.zeros(size, dtype=torch.float64, device=device))
    groups = list(itertools.combinations_with_replacement(range(n_configurations), n_samples))
    # multinomial coefficient K! / prod(multiplicity!) in log space
    log_counts = [math.lgamma(n_samples + 1) - sum(math.lgamma(g.count(i) + 1) for i in set(g)) for g in groups]
    return torch.tensor(groups, device=device), torch.tensor(log_counts, dtype=torch.float64, device=device)


def _group_scores(inf_net, gen_model, data, configurations, n_samples, method, max_tuples):
    """Per group: log of its total probability under q ``[batch, T]``, members' log q and log p ``[batch, T, K]``."""
    log_q, log_p = _scores(inf_net, gen_model, data, configurations)  # [batch, S]
    groups, log_counts = _sample_groups(_count(configurations), n_samples, method, max_tuples, data.device)
    members_log_q, members_log_p = log_q[:, groups], log_p[:, groups]  # [batch, T, K]
    return members_log_q.sum(-1) + log_counts.to(log_q.dtype), members_log_q, members_log_p


def exact_iwae_bound(inf_net: InfNet, gen_model: GenModel, data: Tensor, configurations: Latents, n_samples: int,
                     *, method: Method = "multisets", max_tuples: int = DEFAULT_MAX_TUPLES) -> Tensor:
    """E[log (1/K) sum_k p(x, z_k)/q(z_k|x)] over z_1..z_K ~ q, exactly and differentiably: ``[batch]``.

    Args:
        inf_net: q(z|x).
        gen_model: p(x, z).
        data: ``[batch, *data_shape]``.
        configurations: every latent value, ``[S, *latent_shape]`` (a tuple or dict of ``[S, *shape_l]``
            for layered latents: see the module docstring).
        n_samples: K.
        method: ``"multisets"`` (C(S+K-1, K) terms) or ``"tuples"`` (S**K terms, the definition).
        max_tuples: the most terms allowed.

    Raises:
        ValueError: for an unknown ``method``, or if the number of terms exceeds ``max_tuples``.
    """
    log_group_q, log_q, log_p = _group_scores(inf_net, gen_model, data, configurations, n_samples, method, max_tuples)
    estimate = torch.logsumexp(log_p - log_q, dim=-1) - math.log(n_samples)  # [batch, T]
    return (log_group_q.exp() * estimate).sum(-1)


def exact_rws_wake_objectives(inf_net: InfNet, gen_model: GenModel, data: Tensor, configurations: Latents,
                              n_samples: int, *, method: Method = "multisets", max_tuples: int = DEFAULT_MAX_TUPLES
                              ) -> tuple[Tensor, Tensor]:
    """Objectives whose gradients are the exact expected wake updates: ``(wake_theta [batch], wake_phi [batch])``.

    ``d wake_theta / d theta = E[sum_k w~_k grad_theta log p(x, z_k)]`` and
    ``d wake_phi / d phi = E[sum_k w~_k grad_phi log q(z_k|x)]``, the
    expectation over z_1..z_K ~ q taken exactly, with the normalized weights
    w~ treated as constants as RWS does.

    Args:
        inf_net: q(z|x).
        gen_model: p(x, z).
        data: ``[batch, *data_shape]``.
        configurations: every latent value, ``[S, *latent_shape]`` (a tuple or dict of ``[S, *shape_l]``
            for layered latents: see the module docstring).
        n_samples: K.
        method: ``"multisets"`` (C(S+K-1, K) terms) or ``"tuples"`` (S**K terms, the definition).
        max_tuples: the most terms allowed.

    Raises:
        ValueError: for an unknown ``method``, or if the number of terms exceeds ``max_tuples``.
    """
    log_group_q, log_q, log_p = _group_scores(inf_net, gen_model, data, configurations, n_samples, method, max_tuples)
    group_prob = log_group_q.detach().exp()  # [batch, T]
    normalized = torch.softmax((log_p - log_q).detach(), dim=-1)  # [batch, T, K]
    wake_theta = (group_prob * (normalized * log_p).sum(-1)).sum(-1)
    wake_phi = (group_prob * (normalized * log_q).sum(-1)).sum(-1)
    return wake_theta, wake_phi


def exact_sleep_phi_objective(inf_net: InfNet, gen_model: GenModel, data_configurations: Tensor,
                              configurations: Latents) -> Tensor:
    """sum_{x, z} p(x, z) log q(z|x) with p held constant: its phi-gradient is the exact expected sleep-phi update.

    Args:
        inf_net: q(z|x).
        gen_model: p(x, z).
        data_configurations: every data value, ``[Sx, *data_shape]``.
        configurations: every latent value, ``[S, *latent_shape]`` (a tuple or dict of ``[S, *shape_l]``
            for layered latents: see the module docstring).

    Returns:
        a scalar ``[]``.
    """
    latents = _per_datum(configurations, data_configurations.shape[0])  # [Sx, S, ...]
    log_p = gen_model(data_configurations, latents).log_prob(data_configurations, latents)  # [Sx, S]
    log_q = inf_net(data_configurations).log_prob(latents)  # [Sx, S]
    return (log_p.detach().exp() * log_q).sum()
