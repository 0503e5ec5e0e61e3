"""The inference network q(z|x)."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, OneHotCategorical

from blackbox_vae._call_state import set_call_state, state_without_call_state
from blackbox_vae._distributions import check_distribution, shape_of, sum_to_leading
from blackbox_vae.latents import Latents

if TYPE_CHECKING:
    from blackbox_vae.gen_model import GenModel

__all__ = ["InfNet", "DistributionInfNet"]


class InfNet(nn.Module, metaclass=abc.ABCMeta):
    """Abstract inference network q(z|x).

    Shape contract (shared by every model and loss in this library):

    - data: ``[batch, *data_shape]``
    - latents: ``[batch, n_samples, *latent_shape]``, or a tuple/dict of such
      tensors (one entry per stochastic layer). Losses treat latents as opaque.
    - every log-probability: ``[batch, n_samples]``, computed for all samples
      in one batched call.

    Subclasses implement `forward`, `sample` and `log_prob`, and optionally
    the hooks that some estimators need: `rsample` (a reparameterized sample:
    `ELBOLoss`, `IWAELoss`) and `relaxed_rsample` (a sample from a continuous
    relaxation of discrete latents: `GumbelSoftmaxLoss`), `mean` (post-hoc
    samplers) and `bit_probabilities` (binary latents' per-bit probabilities:
    `blackbox_vae.metrics.bit_mutual_information`), plus the fused
    `sample_and_log_prob` / `rsample_and_log_prob` hooks for speed. Each
    optional hook has a capability flag (`has_rsample`, `has_relaxed_rsample`,
    `has_mean`, `has_bit_probabilities`, `has_group_log_prob`, `has_bernoulli_logits`,
    `has_categorical_logits`); a loss reads those it
    needs at construction, and `layer_kinds` (what each layer of latents is:
    Bernoulli, one-hot or other) where it assumes a kind. For the common case where q is a
    single ``torch.distributions`` object, subclass `DistributionInfNet`
    instead.

    Attributes:
        params_: whatever `forward` computed for the last batch
            (distribution parameters); ``None`` before the first call.
    """

    params_: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # params_ holds the last call's graph: a deep copy (or a pickle) starts without it.
        return state_without_call_state(self, ("params_",))

    @abc.abstractmethod
    def forward(self, data: Tensor) -> "InfNet":
        """Computes q's parameters for ``data`` and stores them in ``self.params_``.

        Args:
            data: ``[batch, *data_shape]``.

        Returns:
            ``self``, so that ``inf_net(x).sample(5)`` works.
        """

    @abc.abstractmethod
    def sample(self, n_samples: int = 1) -> Latents:
        """Draws z ~ q(z|x) for the batch last passed to `forward`.

        No gradient path is required (black-box latents).

        Returns:
            latents with leading dimensions ``[batch, n_samples]``.
        """

    @abc.abstractmethod
    def log_prob(self, latents: Latents) -> Tensor:
        """log q(z|x), differentiable in the network's parameters.

        Args:
            latents: leading dimensions ``[batch, n_samples]``.

        Returns:
            ``[batch, n_samples]``.
        """

    def rsample(self, n_samples: int = 1) -> Latents:
        """Reparameterized sample: like `sample`, with a gradient path to the parameters.

        Optional. Reparameterized estimators (`ELBOLoss`, `IWAELoss`) need it;
        score-function estimators do not.

        Raises:
            NotImplementedError: unless a subclass implements it.
        """
        raise NotImplementedError(
            f"`{type(self).__name__}.rsample` is not implemented. Reparameterized estimators such as "
            "ELBOLoss need a reparameterized sample; implement `rsample`, or use a score-function "
            "estimator such as ScoreFunctionLoss, which needs only `sample` and `log_prob`."
        )

    def relaxed_rsample(self, n_samples: int = 1, *, temperature: float, straight_through: bool = False) -> Latents:
        """A reparameterized sample from a continuous relaxation of discrete latents (Gumbel-softmax / Concrete).

        Optional; `GumbelSoftmaxLoss` needs it. `RelaxedBernoulliInfNet` and
        `RelaxedCategoricalInfNet` implement it for Bernoulli and one-hot latents.

        Args:
            n_samples: samples per data point.
            temperature: the relaxation's temperature, > 0.
            straight_through: return exact discrete samples (the rounded relaxed ones) whose gradient is
                the relaxed sample's.

        Returns:
            latents with leading dimensions ``[batch, n_samples]``, carrying a gradient path.

        Raises:
            NotImplementedError: unless a subclass implements it.
        """
        raise NotImplementedError(
            f"`{type(self).__name__}.relaxed_rsample` is not implemented. GumbelSoftmaxLoss needs a relaxed "
            "sample of discrete latents; subclass RelaxedBernoulliInfNet or RelaxedCategoricalInfNet, implement "
            "`relaxed_rsample`, or use a score-function estimator such as VIMCOLoss."
        )

    def zgr_rsample(self, n_samples: int = 1) -> Latents:
        """Exact discrete samples whose gradient is ZGR's (`blackbox_vae.zgr`; DARN(1/2) for Bernoulli latents).

        Optional; `ZGRLoss` needs it. `RelaxedBernoulliInfNet`, `RelaxedCategoricalInfNet` and the library's
        hierarchical Bernoulli networks implement it (each layer conditioned on the ZGR sample of its parents).

        Returns:
            latents with leading dimensions ``[batch, n_samples]``, exact draws from q carrying a gradient path.

        Raises:
            NotImplementedError: unless a subclass implements it.
        """
        raise NotImplementedError(
            f"`{type(self).__name__}.zgr_rsample` is not implemented. ZGRLoss needs exact discrete samples with "
            "the ZGR gradient; subclass RelaxedBernoulliInfNet or RelaxedCategoricalInfNet, implement "
            "`zgr_rsample` with blackbox_vae.zgr, or use a score-function estimator such as VIMCOLoss."
        )

    def analytic_elbo(self, gen_model: "GenModel", data: Tensor, latents: Latents) -> Tensor:
        """Optional: a per-sample ELBO with some expectations in closed form (e.g. analytic per-layer KLs).

        For the batch last passed to `forward` and latents drawn from q (with any gradient path), returns
        ``[batch, n_samples]`` values whose expectation under q equals that of
        ``log p(x, z) - log q(z|x)``. `ZGRLoss(analytic_kl=True)` uses it.

        Raises:
            NotImplementedError: unless a subclass implements it.
        """
        raise NotImplementedError(
            f"`{type(self).__name__}.analytic_elbo` is not implemented: an ELBO with closed-form KL terms needs "
            "it (the hierarchical Bernoulli models in blackbox_vae.models have one). Use analytic_kl=False."
        )

    def mean(self) -> Latents:
        """Optional: E[z | x] for the batch last passed to `forward`: latents with leading dimension ``[batch]``.

        Post-hoc samplers (`blackbox_vae.samplers`) encode data to this code for continuous latents.

        Raises:
            NotImplementedError: unless a subclass implements it.
        """
        raise NotImplementedError(
            f"`{type(self).__name__}.mean` is not implemented: encoding data to the posterior mean needs it. "
            "Implement it, or encode to samples (codes=\"sample\")."
        )

    @property
    def has_mean(self) -> bool:
        """Whether `mean` works: true when the class implements it."""
        return type(self).mean is not InfNet.mean

    def bit_probabilities(self, n_samples: int = 1) -> tuple[Tensor, ...]:
        """Optional: for binary latents, q(z_i = 1 | x, the sampled parent layers) of every bit, for the batch
        last passed to `forward`.

        The layers are drawn ancestrally, as `sample` draws them: the first layer's probabilities depend on
        x alone (the same for every sample), each deeper layer's on x and the layers drawn before it, one
        draw per sample. `blackbox_vae.metrics.bit_mutual_information` reads it (the discrete analogue of
        "active units").

        Args:
            n_samples: ancestral samples per data point.

        Returns:
            one tensor per latent tensor, in the order of the latents (a single latent tensor gives a
            1-tuple), each ``[batch, n_samples, *shape]`` with values in [0, 1].

        Raises:
            NotImplementedError: unless a subclass implements it.
        """
        raise NotImplementedError(
            f"`{type(self).__name__}.bit_probabilities` is not implemented: per-bit mutual information needs "
            "q(z_i = 1 | x, parents) for binary latents. Implement it (a tuple of [batch, n_samples, *shape] "
            "probabilities, one per latent tensor), or subclass RelaxedBernoulliInfNet or DistributionInfNet "
            "with a Bernoulli distribution."
        )

    @property
    def has_bit_probabilities(self) -> bool:
        """Whether `bit_probabilities` works: true when the class implements it (a subclass may refine this)."""
        return type(self).bit_probabilities is not InfNet.bit_probabilities

    def group_log_prob(self, latents: Latents) -> Tensor:
        """Optional: log q of each latent group given x and the groups q conditions it on: ``[batch, K, G]``.

        For hierarchical latents (a tuple of G groups), the terms that `log_prob` sums. `ELBOLoss` with
        ``kl_balancing=True`` weighs each group's KL term separately and needs it (`NVAEInfNet` has it).

        Raises:
            NotImplementedError: unless a subclass implements it.
        """
        raise NotImplementedError(
            f"`{type(self).__name__}.group_log_prob` is not implemented: KL balancing weighs each latent group's "
            "KL term and needs log q per group ([batch, K, G], summing to log_prob). Implement it, or use "
            "kl_balancing=False."
        )

    @property
    def has_group_log_prob(self) -> bool:
        """Whether `group_log_prob` works: true when the class implements it."""
        return type(self).group_log_prob is not InfNet.group_log_prob

    def bernoulli_logits(self, latents: Latents, layer: int = 0) -> Tensor:
        """Optional: for binary latents, the logits of q(z_layer = 1 | x, the layers q draws before it).

        For the batch last passed to `forward`. ``latents`` has the structure `sample` returns (a tensor: one
        layer, ``layer`` 0; a tuple: one layer per entry) with leading ``[batch, n_samples]``; only the layers
        q draws before ``layer`` (`layer_order`) are read, the others may hold anything. The antithetic
        estimators (`ARMLoss`, `DisARMLoss`) draw each layer's pair of samples from these logits.

        Returns:
            ``[batch, n_samples, *shape of layer]``, with a gradient path to q's parameters.

        Raises:
            NotImplementedError: unless a subclass implements it.
        """
        raise NotImplementedError(
            f"`{type(self).__name__}.bernoulli_logits` is not implemented: the antithetic estimators (ARMLoss, "
            "DisARMLoss) draw binary latents from q's logits. Implement it for Bernoulli latents, subclass "
            "RelaxedBernoulliInfNet or DistributionInfNet with a Bernoulli, or use a score-function estimator "
            "such as VIMCOLoss."
        )

    @property
    def has_bernoulli_logits(self) -> bool:
        """Whether `bernoulli_logits` works: true when the class implements it (a subclass may refine this)."""
        return type(self).bernoulli_logits is not InfNet.bernoulli_logits

    def categorical_logits(self, latents: Latents, layer: int = 0) -> Tensor:
        """Optional: for one-hot latents, the logits of q(z_layer | x, the layers q draws before it).

        Like `bernoulli_logits`, for categorical latents whose last dimension is the class: one-hot latents
        ``[batch, n_samples, *shape, n_classes]``. `UnorderedSetLoss` draws distinct latents from these logits
        (and `ARSMLoss` its pseudo-actions).

        Returns:
            ``[batch, n_samples, *shape of layer]`` logits over the last dimension (normalized or not), with a
            gradient path to q's parameters.

        Raises:
            NotImplementedError: unless a subclass implements it.
        """
        raise NotImplementedError(
            f"`{type(self).__name__}.categorical_logits` is not implemented: estimators that enumerate or swap "
            "categories (UnorderedSetLoss, ARSMLoss) read q's class logits. Implement it for one-hot latents, "
            "subclass RelaxedCategoricalInfNet or DistributionInfNet with a OneHotCategorical, or use a "
            "score-function estimator such as VIMCOLoss."
        )

    @property
    def has_categorical_logits(self) -> bool:
        """Whether `categorical_logits` works: true when the class implements it (a subclass may refine this)."""
        return type(self).categorical_logits is not InfNet.categorical_logits

    #: For tuple latents: the order in which q draws the tuple's entries (None: the tuple's own order).
    layer_order: tuple[int, ...] | None = None

    #: What each layer of latents is, where the class knows it: one entry per latent tensor (a tensor: a 1-tuple;
    #: a tuple: one per entry, in the tuple's order), each ``"bernoulli"`` (values in {0, 1}, independent given
    #: the layers q draws before it, with logits `bernoulli_logits`), ``"categorical"`` (one-hot over the last
    #: dimension, with class logits `categorical_logits`) or ``"other"``; None where the class does not say.
    #: The estimators that assume Bernoulli or one-hot layers (`ARMLoss`, `DisARMLoss`, `ARSMLoss`, `REBARLoss`,
    #: `RELAXLoss`, `UnorderedSetLoss`) read it when they are built and refuse a model whose layers they do not
    #: fit; where it is None they check the drawn latents at their first call instead. E.g. a one-hot layer of
    #: 10 classes, then 16 Bernoulli bits given it: ``layer_kinds = ("categorical", "bernoulli")``.
    layer_kinds: tuple[str, ...] | None = None

    def sample_and_log_prob(self, n_samples: int = 1) -> tuple[Latents, Tensor]:
        """Optional fused hook: ``(latents, log q)`` for ``n_samples`` fresh samples.

        The default calls `sample` then `log_prob`; override it when
        the two share work.

        Returns:
            latents with leading ``[batch, n_samples]`` and log q ``[batch, n_samples]``.
        """
        latents = self.sample(n_samples)
        return latents, self.log_prob(latents)

    def rsample_and_log_prob(self, n_samples: int = 1) -> tuple[Latents, Tensor]:
        """Optional fused hook: ``(latents, log q)`` for ``n_samples`` reparameterized samples.

        Both carry the gradient path (log q is differentiated through the
        sample and the parameters). The default calls `rsample` then
        `log_prob`; override it when the two share work (a Gaussian's
        standardized sample is its noise).

        Returns:
            latents with leading ``[batch, n_samples]`` and log q ``[batch, n_samples]``.
        """
        latents = self.rsample(n_samples)
        return latents, self.log_prob(latents)

    @property
    def has_rsample(self) -> bool:
        """Whether `rsample` works: true when the class implements it (a subclass may refine this)."""
        return type(self).rsample is not InfNet.rsample

    @property
    def has_relaxed_rsample(self) -> bool:
        """Whether `relaxed_rsample` works: true when the class implements it."""
        return type(self).relaxed_rsample is not InfNet.relaxed_rsample

    @property
    def has_zgr_rsample(self) -> bool:
        """Whether `zgr_rsample` works: true when the class implements it."""
        return type(self).zgr_rsample is not InfNet.zgr_rsample

    @property
    def has_analytic_elbo(self) -> bool:
        """Whether `analytic_elbo` works: true when the class implements it."""
        return type(self).analytic_elbo is not InfNet.analytic_elbo


class DistributionInfNet(InfNet):
    """Convenience InfNet: implement `distribution` and get the rest.

    ``distribution(data)`` returns a ``torch.distributions`` (or Pyro)
    distribution whose ``batch_shape`` starts with ``batch``; everything after
    that (the remaining batch dimensions and the event shape) is one latent,
    so ``latent_shape = batch_shape[1:] + event_shape``. Sampling draws all
    ``n_samples`` in one call and the log-probability is summed over the
    latent dimensions, so this path is as fast as a hand-written InfNet.

    After `forward`, ``params_`` holds the distribution object.

    Example:

    ```python
    class BernoulliInfNet(DistributionInfNet):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(784, 200)

        def distribution(self, data):
            return torch.distributions.Bernoulli(logits=self.net(data))  # batch_shape [batch, 200]
    ```
    """

    params_: Distribution | None = None

    @abc.abstractmethod
    def distribution(self, data: Tensor) -> Distribution:
        """q(z|x) for a batch: ``batch_shape`` starts with ``batch``.

        Args:
            data: ``[batch, *data_shape]``.
        """

    def forward(self, data: Tensor) -> "DistributionInfNet":
        dist = check_distribution(self.distribution(data), f"{type(self).__name__}.distribution")
        batch = data.shape[0]
        if len(dist.batch_shape) == 0 or dist.batch_shape[0] != batch:
            raise ValueError(
                f"`{type(self).__name__}.distribution` returned a {type(dist).__name__} with batch_shape "
                f"{tuple(dist.batch_shape)}; expected it to start with the batch size {batch} "
                f"(data has shape {tuple(data.shape)})."
            )
        set_call_state(self, "params_", dist)
        return self

    @property
    def has_rsample(self) -> bool:
        """Whether `rsample` works: whether the last `forward`'s distribution has one (true before any call)."""
        return self.params_ is None or bool(self.params_.has_rsample)

    def bit_probabilities(self, n_samples: int = 1) -> tuple[Tensor, ...]:
        """For a Bernoulli distribution (possibly inside ``Independent``): its ``probs``, expanded over samples.

        Args:
            n_samples: samples per data point (the probabilities are the same for each).

        Returns:
            a 1-tuple: ``[batch, n_samples, *latent_shape]`` probabilities of z_i = 1 (an expanded view).

        Raises:
            NotImplementedError: if the last `forward`'s distribution is not a Bernoulli.
        """
        dist = self._dist()
        probs = _bernoulli_probs(dist)
        if probs is None:
            raise NotImplementedError(
                f"`{type(self).__name__}.bit_probabilities`: its distribution is a {type(dist).__name__}, not a "
                "Bernoulli, so its latents are not bits (has_bit_probabilities is False after this forward).")
        n_samples = _check_n_samples(n_samples, f"{type(self).__name__}.bit_probabilities")
        return (probs.unsqueeze(1).expand(probs.shape[0], n_samples, *probs.shape[1:]),)

    @property
    def has_bit_probabilities(self) -> bool:
        """Whether `bit_probabilities` works: whether the last `forward`'s distribution is a Bernoulli (possibly
        inside ``Independent``); true before any call, like `has_rsample`, as the distribution is not known yet."""
        return self.params_ is None or _bernoulli_probs(self.params_) is not None

    def bernoulli_logits(self, latents: Tensor, layer: int = 0) -> Tensor:
        """For a Bernoulli distribution (possibly inside ``Independent``): its logits, expanded over the samples
        of ``latents`` (``[batch, n_samples, *latent_shape]``; not read otherwise). One layer: ``layer`` is 0.

        Raises:
            NotImplementedError: if the last `forward`'s distribution is not a Bernoulli.
            ValueError: for a ``layer`` other than 0.
        """
        base = self._dist()
        while isinstance(base, Independent):
            base = base.base_dist
        return self._logits_of(base if isinstance(base, Bernoulli) else None, "bernoulli_logits", "a Bernoulli",
                               latents, layer)

    @property
    def has_bernoulli_logits(self) -> bool:
        """Whether `bernoulli_logits` works: whether the last `forward`'s distribution is a Bernoulli (true before
        any call, like `has_rsample`)."""
        return self.params_ is None or _bernoulli_probs(self.params_) is not None

    def categorical_logits(self, latents: Tensor, layer: int = 0) -> Tensor:
        """For a OneHotCategorical distribution (possibly inside ``Independent``): its normalized logits, expanded
        over the samples of ``latents`` (``[batch, n_samples, *latent_shape]``; not read otherwise). One layer:
        ``layer`` is 0.

        Raises:
            NotImplementedError: if the last `forward`'s distribution is not a OneHotCategorical.
            ValueError: for a ``layer`` other than 0.
        """
        return self._logits_of(_one_hot_categorical(self._dist()), "categorical_logits", "a OneHotCategorical",
                               latents, layer)

    def _logits_of(self, dist: Distribution | None, hook: str, kind: str, latents: Tensor, layer: int) -> Tensor:
        """``dist``'s logits ``[batch, *latent_shape]`` expanded over the samples of ``latents``, for ``hook``; raises
        when ``dist`` is None (the distribution is not ``kind``) or ``layer`` is not 0."""
        if dist is None:
            raise NotImplementedError(
                f"`{type(self).__name__}.{hook}`: its distribution is a {type(self._dist()).__name__}, not {kind} "
                f"(has_{hook} is False after this forward).")
        if layer != 0:
            raise ValueError(f"`{type(self).__name__}.{hook}`: `layer` must be 0 (one latent tensor); got {layer!r}.")
        logits = dist.logits  # [batch, *latent_shape]
        return logits.unsqueeze(1).expand(logits.shape[0], latents.shape[1], *logits.shape[1:])

    @property
    def has_categorical_logits(self) -> bool:
        """Whether `categorical_logits` works: whether the last `forward`'s distribution is a OneHotCategorical
        (true before any call, like `has_rsample`)."""
        return self.params_ is None or _one_hot_categorical(self.params_) is not None

    @property
    def layer_kinds(self) -> tuple[str, ...] | None:
        """`InfNet.layer_kinds` from the last `forward`'s distribution: ``("bernoulli",)`` for a Bernoulli,
        ``("categorical",)`` for a OneHotCategorical (possibly inside ``Independent``), ``("other",)`` otherwise;
        None before any call, as the distribution is not known yet."""
        if self.params_ is None:
            return None
        if _bernoulli_probs(self.params_) is not None:
            return ("bernoulli",)
        return ("categorical",) if _one_hot_categorical(self.params_) is not None else ("other",)

    def mean(self) -> Tensor:
        """E[z | x] = the distribution's mean: ``[batch, *latent_shape]``."""
        return self._dist().mean

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The shape of one latent sample, from the last `forward`."""
        return shape_of(self._dist())[1:]

    def _dist(self) -> Distribution:
        if self.params_ is None:
            raise RuntimeError(f"Call `{type(self).__name__}(data)` (its forward) before sampling or scoring.")
        return self.params_

    def sample(self, n_samples: int = 1) -> Tensor:
        """z ~ q(z|x): ``[batch, n_samples, *latent_shape]``, no gradient."""
        # Contiguous, so the models' layers see the [batch, n_samples] layout a hand-written InfNet would give.
        with torch.no_grad():
            return self._dist().sample((n_samples,)).movedim(0, 1).contiguous()

    def rsample(self, n_samples: int = 1) -> Tensor:
        """Reparameterized z ~ q(z|x): ``[batch, n_samples, *latent_shape]``.

        Raises:
            NotImplementedError: if the distribution has no ``rsample``.
        """
        dist = self._dist()
        if not dist.has_rsample:
            raise NotImplementedError(
                f"`{type(self).__name__}.rsample`: its {type(dist).__name__} distribution has no reparameterized "
                "sample. Use a score-function estimator (ScoreFunctionLoss), or a relaxed distribution."
            )
        return dist.rsample((n_samples,)).movedim(0, 1).contiguous()

    def log_prob(self, latents: Tensor) -> Tensor:
        """log q(z|x) summed over the latent dimensions: ``[batch, n_samples]``."""
        dist = self._check_latent_shape(latents)
        log_q = dist.log_prob(latents.movedim(1, 0))  # [n_samples, batch, *latent_dims]
        return sum_to_leading(log_q, 2).movedim(0, 1)  # [batch, n_samples]

    def _check_latent_shape(self, latents: Tensor) -> Distribution:
        """Raises unless ``latents`` is ``[batch, n_samples, *latent_shape]``; returns the distribution."""
        dist = self._dist()
        expected = shape_of(dist)
        if (
            not isinstance(latents, Tensor)
            or latents.dim() != len(expected) + 1
            or latents.shape[0] != expected[0]
            or tuple(latents.shape[2:]) != expected[1:]
        ):
            got = tuple(latents.shape) if isinstance(latents, Tensor) else type(latents).__name__
            raise ValueError(
                f"`{type(self).__name__}.log_prob` got latents of shape {got}; expected "
                f"[batch, n_samples, *latent_shape] = ({expected[0]}, n_samples{''.join(f', {d}' for d in expected[1:])})."
            )
        return dist


def _bernoulli_probs(dist: Distribution) -> Tensor | None:
    """The ``probs`` of a Bernoulli (unwrapping ``Independent``), ``[*batch_shape, *event_shape]``; else None."""
    while isinstance(dist, Independent):
        dist = dist.base_dist
    return dist.probs if isinstance(dist, Bernoulli) else None


def _one_hot_categorical(dist: Distribution) -> OneHotCategorical | None:
    """The OneHotCategorical inside ``dist`` (unwrapping ``Independent``), else None."""
    while isinstance(dist, Independent):
        dist = dist.base_dist
    return dist if isinstance(dist, OneHotCategorical) else None


def _check_n_samples(n_samples: object, owner: str) -> int:
    """``n_samples`` as an int, or a ValueError naming ``owner`` unless it is a positive int."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"`{owner}`: `n_samples` must be a positive int; got {n_samples!r}.")
    return n_samples
