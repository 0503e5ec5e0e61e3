"""Contract checks for users' InfNet and GenModel subclasses.

``check_inf_net(inf_net, data)`` and ``check_gen_model(gen_model, data)`` run a
model through what the losses rely on and raise `ContractError` (an
``AssertionError``, so pytest reports it as a failure) with a message that says
what to fix:

- ``forward`` returns ``self``;
- samples have leading dimensions ``[batch, n_samples]`` (``[n_samples]`` for
  ``GenModel.sample``), log-probabilities are floating ``[batch, n_samples]`` and finite — checked at two
  numbers of samples, both different from the batch size, so that ``[n_samples, batch]`` (the two axes
  swapped) cannot pass by having the same shape;
- ``log_prob`` is differentiable in the model's parameters, and ``rsample`` / ``relaxed_rsample`` (where
  the capability flags ``has_rsample`` / ``has_relaxed_rsample`` say they work) carry a gradient path;
- ``log_prob`` is vectorized over samples: scoring K samples at once equals K calls with one each;
- where ``has_bit_probabilities`` says it works, ``bit_probabilities(K)`` returns one tensor per latent
  tensor, each of its latent's shape ``[batch, K, *shape]`` with values in [0, 1], and the latents are bits;
- ``sample`` and ``log_prob`` agree: for discrete values, the empirical frequency of every drawn
  configuration matches ``exp(log_prob)`` (a z-test per configuration, Bonferroni-corrected, at the
  stated false-failure rate);
- ``log_prob`` is normalized: for Bernoulli and one-hot values, ``sum_z exp(log_prob(z))`` is not more than
  1, estimated by importance sampling (below).

The frequency check has power only over configurations drawn about ten times or more: at 10 classes x 16
bits it sees none, and a ``log_prob`` that drops a whole layer's term passes it. The normalization check
covers that case. It draws configurations from a proposal r that covers the whole support, the product over
elements of the marginal frequencies of the model's own draws (Krichevsky-Trofimov smoothed, so that every
bit value and every class has probability > 0), and estimates ``S = E_r[exp(log_prob(z)) / r(z)]``, which is
1 for a normalized ``log_prob``. Dropping a layer's term multiplies S by that layer's number of values (10,
or 2**16). The test is one-sided, S > 1 by more than a Student-t threshold times the standard error: the
weights are positive and right-skewed, which makes the upper tail of the t statistic lighter than nominal,
so a correct model fails it less often than the stated rate. Its power is high where r is close to the model
(elements weakly dependent given x, as at initialization) and falls where they depend strongly on each
other (the data on the latents, in a GenModel with many data elements), where r's weights spread; there the
model concentrates on few configurations, which the frequency check sees. docs/testing.md gives the sizes
measured.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.latents import Latents, latent_leaves, map_latents
from blackbox_vae.losses._checks import check_finite, check_latents, check_log_prob
from blackbox_vae.testing.enumeration import _infer_support
from blackbox_vae.testing.statistics import critical_value

__all__ = ["ContractError", "check_inf_net", "check_gen_model"]


class ContractError(AssertionError):
    """A model breaks the InfNet/GenModel contract; the message says what to fix."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ContractError(message)


def _reraise(check: Callable[[], Any]) -> Any:
    """Runs one of the losses' validation checks, turning its error into a ContractError."""
    try:
        return check()
    except (ValueError, TypeError) as error:
        raise ContractError(str(error)) from error


def _check_differentiable(log_prob: Tensor, module: torch.nn.Module, where: str) -> None:
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        return
    _expect(log_prob.requires_grad, f"`{where}` returned a tensor without a gradient path to the parameters; "
                                    "compute it from `params_` without detaching or `torch.no_grad()`.")
    grads = torch.autograd.grad(log_prob.sum(), params, allow_unused=True, retain_graph=True)
    _expect(any(g is not None for g in grads),
            f"`{where}` does not depend on any parameter of {type(module).__name__}; it must be differentiable in them.")


def _check_vectorized(batched: Tensor, one_by_one: list[Tensor], where: str) -> None:
    separate = torch.cat(one_by_one, dim=1)  # [batch, K]
    tolerance = 1e-4 if batched.dtype == torch.float32 else 1e-9
    difference = (batched - separate).abs().max().item()
    _expect(difference <= tolerance * (1 + separate.abs().max().item()),
            f"`{where}` of {batched.shape[1]} samples differs from {batched.shape[1]} calls with one sample each "
            f"(max difference {difference:.3g}): each sample's log-probability must not depend on the others "
            "(look for a reduction or normalization over dimension 1).")


def _is_discrete(latents: Latents) -> bool:
    return all(bool(torch.equal(t, t.round())) for _, t in latent_leaves(latents))


def _rows(values: Latents, n_leading: int) -> Tensor:
    """Every draw's values as one row ``[M, F]``, ``n_leading`` being the draw dimensions."""
    leaves = [leaf for _, leaf in latent_leaves(values)]
    draws = math.prod(leaves[0].shape[:n_leading])
    return torch.cat([leaf.reshape(draws, -1).to(torch.float64) for leaf in leaves], dim=1)


# Below this expected count a configuration's frequency is not near-normal; such configurations are pooled.
_MIN_EXPECTED_COUNT = 10


def _check_frequencies(rows: Tensor, log_probs: Tensor, false_failure_rate: float, where: str) -> None:
    """Empirical frequencies vs exp(log_prob): a z-test per category, Bonferroni-corrected.

    The categories are the drawn configurations expected at least 10 times,
    and "the rest", whose probability is 1 minus theirs: a multinomial test in
    which every category's count is near-normal.

    Args:
        rows: ``[M, F]`` the M draws.
        log_probs: ``[M]`` the log-probability of each draw.
    """
    unique, first, counts = _unique_rows(rows)
    n_draws = rows.shape[0]
    probability = log_probs[first].double().exp()  # [U]
    _expect(probability.sum().item() <= 1 + 1e-6,
            f"`{where}`: the drawn configurations' probabilities exp(log_prob) sum to {probability.sum().item():.4f} "
            "> 1: `log_prob` is not normalized (a missing log_softmax, or an added constant).")
    common = probability * n_draws >= _MIN_EXPECTED_COUNT
    labels = [str(row) for row in unique[common].tolist()] + ["all other configurations"]
    category_probability = torch.cat([probability[common], (1 - probability[common].sum()).clamp_min(0).reshape(1)])
    category_count = torch.cat([counts[common], (n_draws - counts[common].sum()).reshape(1)]).double()
    tested = category_probability * n_draws >= _MIN_EXPECTED_COUNT
    if not bool(tested.any()):
        return  # every configuration is rare: too many to test with this many draws
    frequency = category_count / n_draws
    standard_error = (category_probability * (1 - category_probability) / n_draws).sqrt().clamp_min(1e-12)
    z = torch.where(tested, (frequency - category_probability) / standard_error, torch.zeros_like(frequency))
    threshold = NormalDist().inv_cdf(1 - false_failure_rate / (2 * int(tested.sum())))
    worst = int(z.abs().argmax())
    _expect(z.abs().max().item() <= threshold,
            f"`{where}`: samples and log-probabilities disagree. {labels[worst]} was drawn with frequency "
            f"{frequency[worst].item():.4f} in {n_draws} draws, but exp(log_prob) says "
            f"{category_probability[worst].item():.4f} (z = {z[worst].item():.1f}, threshold {threshold:.1f}). "
            "`sample` must draw from the distribution that `log_prob` scores (check logits vs. probabilities, "
            "a temperature, or a missing normalization such as log_softmax).")


def _rounding(dtype: torch.dtype) -> float:
    """Relative rounding allowed in a sum of probabilities computed in ``dtype``."""
    return 1e-4 if dtype in (torch.float16, torch.bfloat16, torch.float32) else 1e-9


class _Proposal:
    """A product over elements of smoothed marginal frequencies, fitted to draws of Bernoulli or one-hot tensors.

    Args:
        fitted: ``[M, *shape]`` draws per tensor (the model's own), each tensor's support "bernoulli" or
            "one-hot" (the last dimension).
        supports: one per tensor.
    """

    def __init__(self, fitted: list[Tensor], supports: list[str]):
        self.supports, self.dtypes = supports, [t.dtype for t in fitted]
        self.probs = []
        for draws, support in zip(fitted, supports):
            counts = draws.double().sum(0)  # [*shape]
            if support == "bernoulli":  # q(z_i = 1), Krichevsky-Trofimov: (count + 1/2) / (M + 1)
                self.probs.append((counts + 0.5) / (draws.shape[0] + 1))
            else:  # each class of the last dimension: (count + 1/2) / (M + C/2)
                self.probs.append((counts + 0.5) / (draws.shape[0] + 0.5 * draws.shape[-1]))

    def sample(self, n_draws: int) -> tuple[list[Tensor], Tensor]:
        """``n_draws`` draws ``[n_draws, *shape]`` per tensor, and their log r ``[n_draws]`` (float64)."""
        draws, log_r = [], torch.zeros(n_draws, dtype=torch.float64, device=self.probs[0].device)
        for probs, support, dtype in zip(self.probs, self.supports, self.dtypes):
            if support == "bernoulli":
                z = torch.bernoulli(probs.expand(n_draws, *probs.shape))
                log_r = log_r + (z * probs.log() + (1 - z) * (-probs).log1p()).reshape(n_draws, -1).sum(1)
            else:
                z = torch.distributions.OneHotCategorical(probs=probs, validate_args=False).sample((n_draws,))
                log_r = log_r + (z * probs.log()).reshape(n_draws, -1).sum(1)
            draws.append(z.to(dtype))
        return draws, log_r


def _proposal_for(leaves: list[Tensor]) -> Optional[_Proposal]:
    """The proposal fitted to draws ``[M, *shape]`` per tensor; None unless each is Bernoulli or one-hot."""
    supports = [_infer_support(leaf) for leaf in leaves]
    if any(support is None for support in supports):
        return None
    return _Proposal(leaves, supports)


def _check_normalization(proposal: _Proposal, score: Callable[[list[Tensor]], Tensor], n_draws: int,
                         false_failure_rate: float, where: str) -> None:
    """``sum_z exp(score(z))`` is not significantly more than 1: importance sampling from ``proposal``.

    Args:
        proposal: r, covering every Bernoulli / one-hot value.
        score: the log-probability ``[n_draws]`` of draws ``[n_draws, *shape]`` per tensor.
        n_draws: draws from r.
        false_failure_rate: the chance that a normalized ``log_prob`` fails (one-sided test).
    """
    draws, log_r = proposal.sample(n_draws)
    with torch.no_grad():
        log_prob = score(draws).double()  # [n_draws]
    weights = (log_prob - log_r).exp()  # exp(log_prob) / r: mean 1 for a normalized log_prob
    total, standard_error = weights.mean().item(), (weights.std() / math.sqrt(n_draws)).item()
    threshold = critical_value(2 * false_failure_rate, 1, n_draws)  # one-sided
    allowed = threshold * standard_error + _rounding(proposal.dtypes[0])
    z = (total - 1) / max(standard_error, 1e-300)
    _expect(total - 1 <= allowed,
            f"`{where}`: exp(log_prob) sums to about {total:.4g} (standard error {standard_error:.2g}) over every "
            f"configuration, not 1: `log_prob` is not normalized. (An importance-sampled sum: {n_draws} draws from "
            f"a product of per-element frequencies of the model's own draws; z = {z:.1f}, "
            f"threshold {threshold:.1f}.) Look for a missing term, e.g. a layer's log q(z1|x) or prior log p(z1), "
            "an added constant, or a missing log_softmax.")


def _unique_rows(rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    unique, inverse, counts = torch.unique(rows, dim=0, return_inverse=True, return_counts=True)
    first = torch.full((len(unique),), rows.shape[0], dtype=torch.long, device=rows.device)
    first.scatter_reduce_(0, inverse, torch.arange(rows.shape[0], device=rows.device), reduce="amin")
    return unique, first, counts


def _sample_counts(n_samples: int, batch: int) -> tuple[int, int]:
    """Two numbers of samples, from ``n_samples`` up, both different from ``batch``."""
    counts = [k for k in range(n_samples, n_samples + 3) if k != batch]
    return counts[0], counts[1]


def _check_bit_probabilities(inf_net: InfNet, latents: Latents, n_samples: int, name: str) -> None:
    """``bit_probabilities(n_samples)``: one ``[batch, n_samples, *shape]`` tensor in [0, 1] per (binary) latent."""
    try:
        probs = inf_net.bit_probabilities(n_samples)
    except NotImplementedError as error:
        raise ContractError(f"`{name}.has_bit_probabilities` is True, but `{name}.bit_probabilities` raised "
                            f"NotImplementedError ({error}); a capability flag must say whether the method "
                            "works.") from error
    leaves = latent_leaves(latents)
    _expect(isinstance(probs, tuple) and len(probs) == len(leaves) and all(isinstance(p, Tensor) for p in probs),
            f"`{name}.bit_probabilities` must return a tuple of {len(leaves)} tensor(s), one per latent tensor "
            f"in the order of the latents; got {type(probs).__name__}"
            f"{f' of {len(probs)}' if isinstance(probs, (tuple, list)) else ''}.")
    for (path, leaf), p in zip(leaves, probs):
        _expect(bool(((leaf == 0) | (leaf == 1)).all()),
                f"`{name}.has_bit_probabilities` is True, but `{name}.sample` drew {path} with values other "
                "than 0 and 1: the hook is for binary latents.")
        _expect(tuple(p.shape) == tuple(leaf.shape),
                f"`{name}.bit_probabilities({n_samples})` returned shape {tuple(p.shape)} for {path}; expected "
                f"its shape [batch, n_samples, *shape] = {tuple(leaf.shape)}.")
        _expect(bool(((p >= 0) & (p <= 1)).all()),
                f"`{name}.bit_probabilities` returned values outside [0, 1] for {path}: it must return the "
                "probabilities q(z_i = 1 | ...), not logits.")


def check_inf_net(inf_net: InfNet, data: Tensor, *, n_samples: int = 3, frequency_samples: int = 4000,
                  normalization_samples: int = 4000, false_failure_rate: float = 1e-3,
                  relaxed_temperature: float = 0.5) -> None:
    """Checks an InfNet against the contract the losses rely on.

    Args:
        inf_net: the inference network to check.
        data: a batch ``[batch, *data_shape]``.
        n_samples: K for the shape and vectorization checks (it and K + 1 are used, skipping the batch size).
        frequency_samples: draws for the sample/log_prob agreement check (discrete latents only); the
            normalization check's proposal is fitted to them.
        normalization_samples: draws from the proposal for the normalization check (Bernoulli and one-hot
            latents only), at the first row of ``data``.
        false_failure_rate: chance that a correct model fails the statistical checks (half of it for the
            frequency check, half for the normalization check).
        relaxed_temperature: the temperature at which ``relaxed_rsample`` is checked (when
            ``has_relaxed_rsample``).

    Raises:
        ContractError: naming what is wrong and what to fix.
    """
    name = type(inf_net).__name__
    batch = data.shape[0]
    _expect(inf_net(data) is inf_net, f"`{name}.forward` must return `self` (so that `inf_net(x).sample(5)` works).")
    n_samples, other = _sample_counts(n_samples, batch)
    drawn_other = inf_net.sample(other)  # a second K: shapes must follow it
    _reraise(lambda: check_latents(drawn_other, batch, other, f"{name}.sample"))
    _reraise(lambda: check_log_prob(inf_net.log_prob(drawn_other), batch, other, f"{name}.log_prob"))
    latents = inf_net.sample(n_samples)
    _reraise(lambda: check_latents(latents, batch, n_samples, f"{name}.sample"))
    log_q = _reraise(lambda: check_log_prob(inf_net.log_prob(latents), batch, n_samples, f"{name}.log_prob"))
    _reraise(lambda: check_finite(log_q, f"{name}.log_prob"))
    _check_differentiable(log_q, inf_net, f"{name}.log_prob")
    singles = [inf_net.log_prob(map_latents(lambda t: t[:, k:k + 1], latents)) for k in range(n_samples)]
    _check_vectorized(log_q, singles, f"{name}.log_prob")

    samplers = {"rsample": {}, "relaxed_rsample": {"temperature": relaxed_temperature}}
    for sampler, options in samplers.items():
        if not getattr(inf_net, f"has_{sampler}"):
            continue
        try:
            drawn = getattr(inf_net, sampler)(n_samples, **options)
        except NotImplementedError as error:
            raise ContractError(f"`{name}.has_{sampler}` is True, but `{name}.{sampler}` raised "
                                f"NotImplementedError ({error}); a capability flag must say whether the method "
                                "works.") from error
        _reraise(lambda: check_latents(drawn, batch, n_samples, f"{name}.{sampler}"))
        _expect(all(leaf.requires_grad for _, leaf in latent_leaves(drawn)),
                f"`{name}.{sampler}` returned samples without a gradient path; reparameterize them "
                "(loc + scale * noise) instead of sampling under no_grad.")

    if inf_net.has_bit_probabilities:
        _check_bit_probabilities(inf_net, latents, n_samples, name)

    if _is_discrete(latents):
        with torch.no_grad():
            one = inf_net(data[:1])
            draws = one.sample(frequency_samples)  # [1, M, ...]
            log_probs = one.log_prob(draws)[0]  # [M]
        _check_frequencies(_rows(map_latents(lambda t: t[0], draws), 1), log_probs, false_failure_rate / 2,
                           f"{name}.sample / {name}.log_prob")
        proposal = _proposal_for([leaf[0] for _, leaf in latent_leaves(draws)])
        if proposal is not None:
            def score(values: list[Tensor]) -> Tensor:
                leaves = iter(values)
                return one.log_prob(map_latents(lambda _: next(leaves).unsqueeze(0), draws))[0]  # [n_draws]
            _check_normalization(proposal, score, normalization_samples, false_failure_rate / 2, f"{name}.log_prob")


def check_gen_model(gen_model: GenModel, data: Tensor, latents: Optional[Latents] = None, *, n_samples: int = 3,
                    frequency_samples: int = 4000, normalization_samples: int = 4000,
                    false_failure_rate: float = 1e-3) -> None:
    """Checks a GenModel against the contract the losses rely on.

    Args:
        gen_model: the generative model to check.
        data: a batch ``[batch, *data_shape]``.
        latents: latents with leading ``[batch, n_samples]`` to score; by default drawn from
            ``gen_model.sample``.
        n_samples: K, when ``latents`` is not given (it and K + 1 are used, skipping the batch size).
        frequency_samples: draws for the sample/log_prob agreement check (discrete data and latents only);
            the normalization check's proposal is fitted to them.
        normalization_samples: draws from the proposal for the normalization check over data and latents
            (Bernoulli and one-hot values only).
        false_failure_rate: chance that a correct model fails the statistical checks (half of it for the
            frequency check, half for the normalization check).

    Raises:
        ContractError: naming what is wrong and what to fix.
    """
    name = type(gen_model).__name__
    batch = data.shape[0]
    n_samples, other = _sample_counts(n_samples, batch)
    if latents is None:  # a second K first: shapes must follow it
        _, other_z = gen_model.sample(batch * other)
        other_latents = map_latents(lambda t: t.reshape(batch, other, *t.shape[1:]), other_z)
        _reraise(lambda: check_log_prob(gen_model(data, other_latents).log_prob(data, other_latents), batch, other,
                                        f"{name}.log_prob"))
    draws_x, draws_z = gen_model.sample(batch * n_samples)
    _expect(isinstance(draws_x, Tensor) and tuple(draws_x.shape) == (batch * n_samples, *data.shape[1:]),
            f"`{name}.sample({batch * n_samples})` returned data of shape "
            f"{tuple(draws_x.shape) if isinstance(draws_x, Tensor) else type(draws_x).__name__}; expected "
            f"[n_samples, *data_shape] = {(batch * n_samples, *data.shape[1:])}.")
    for path, leaf in latent_leaves(draws_z):
        _expect(leaf.shape[0] == batch * n_samples,
                f"`{name}.sample({batch * n_samples})` returned {path} of shape {tuple(leaf.shape)}; expected "
                f"a leading dimension of {batch * n_samples}.")
    if latents is None:
        latents = map_latents(lambda t: t.reshape(batch, n_samples, *t.shape[1:]), draws_z)
    n_samples = latent_leaves(latents)[0][1].shape[1]
    _reraise(lambda: check_latents(latents, batch, n_samples, "latents"))
    _expect(gen_model(data, latents) is gen_model, f"`{name}.forward` must return `self`.")
    log_p = _reraise(lambda: check_log_prob(gen_model.log_prob(data, latents), batch, n_samples, f"{name}.log_prob"))
    _reraise(lambda: check_finite(log_p, f"{name}.log_prob"))
    _check_differentiable(log_p, gen_model, f"{name}.log_prob")
    singles = []
    for k in range(n_samples):
        single = map_latents(lambda t: t[:, k:k + 1], latents)
        singles.append(gen_model(data, single).log_prob(data, single))
    _check_vectorized(log_p, singles, f"{name}.log_prob")

    if _is_discrete(draws_z) and bool(torch.equal(draws_x, draws_x.round())):
        with torch.no_grad():
            x, z = gen_model.sample(frequency_samples)
            scored = map_latents(lambda t: t.unsqueeze(1), z)  # [M, 1, ...]
            log_probs = gen_model(x, scored).log_prob(x, scored)[:, 0]  # [M]
        rows = torch.cat([x.reshape(frequency_samples, -1).double(), _rows(z, 1)], dim=1)
        _check_frequencies(rows, log_probs, false_failure_rate / 2, f"{name}.sample / {name}.log_prob")
        proposal = _proposal_for([x] + [leaf for _, leaf in latent_leaves(z)])
        if proposal is not None:
            def score(values: list[Tensor]) -> Tensor:
                leaves = iter(values[1:])
                drawn = map_latents(lambda _: next(leaves).unsqueeze(1), z)  # [n_draws, 1, ...]
                return gen_model(values[0], drawn).log_prob(values[0], drawn)[:, 0]  # [n_draws]
            _check_normalization(proposal, score, normalization_samples, false_failure_rate / 2, f"{name}.log_prob")
