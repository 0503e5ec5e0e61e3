"""`LayeredInfNet`: q(z|x) as layers drawn in order; write one method, get every estimator's hooks."""

from __future__ import annotations

import abc
from typing import Any, Optional, Sequence

import torch
from torch import Tensor
from torch.distributions import (Bernoulli, Distribution, Independent, OneHotCategorical, RelaxedBernoulli,
                                 RelaxedOneHotCategorical)

from blackbox_vae._call_state import set_call_state, state_without_call_state
from blackbox_vae._distributions import bernoulli_log_prob, check_distribution, draw_bernoulli, sum_to_leading
from blackbox_vae.inf_net import InfNet, _check_n_samples
from blackbox_vae.relaxed import check_temperature, straight_through_sample
from blackbox_vae.zgr import bernoulli_zgr, categorical_zgr

__all__ = ["LayeredInfNet"]

#: what `InfNet.layer_kinds` calls each layer distribution class (any other distribution is "other")
_KINDS = {Bernoulli: "bernoulli", OneHotCategorical: "categorical"}


def _base(dist: Distribution) -> tuple[Distribution, int]:
    """``dist`` without its ``Independent`` wrappers, and how many dimensions they made part of the event."""
    reinterpreted = 0
    while isinstance(dist, Independent):
        reinterpreted += dist.reinterpreted_batch_ndims
        dist = dist.base_dist
    return dist, reinterpreted


class LayeredInfNet(InfNet):
    """q(z|x) = prod_l q(z_l | x, the layers drawn before l): write `conditional`, get every estimator's hooks.

    A subclass states the order in which q draws its layers (`layer_order`) and writes one method, the
    distribution of one layer given the data and the layers drawn before it. From it follow `sample`, `log_prob`,
    `sample_and_log_prob`, `rsample` (where every layer's distribution has one), `relaxed_rsample` and
    `zgr_rsample` (Bernoulli and one-hot layers relaxed, reparameterized layers drawn by `rsample`),
    `bit_probabilities`, `bernoulli_logits` and `categorical_logits`: each estimator of the library finds the hook
    it needs.

    ```python
    class TwoLayerQ(LayeredInfNet):
        layer_order = (0, 1)                 # latents are a tuple indexed by layer; q draws them in this order
        def __init__(self):
            super().__init__()
            self.enc0, self.enc1 = nn.Linear(784, 200), nn.Linear(784 + 200, 100)
        def conditional(self, data, layer, latents):    # data [batch, 784]; latents[l]: [batch, K, H_l], drawn before
            if layer == 0:
                return Bernoulli(logits=self.enc0(data).unsqueeze(1))              # broadcasts over the K samples
            x = data.unsqueeze(1).expand(-1, latents[0].shape[1], -1)
            return Bernoulli(logits=self.enc1(torch.cat([x, latents[0]], dim=-1)))
    ```

    Each layer's distribution: a ``torch.distributions`` (or Pyro) distribution whose ``batch_shape`` starts with
    ``[batch, 1 or K]`` (1: the same for every sample, as the first layer drawn usually is).
    Bernoulli and OneHotCategorical layers (possibly inside ``Independent``) serve the estimators for discrete
    latents; any distribution with ``rsample`` (a Normal) serves the pathwise ones. A one-hot layer is scored as
    ``sum_c z_c log pi_c``, linear in z, so that relaxed one-hot samples keep their gradient.

    Capabilities come from the layers' distributions, declared in `layer_distributions` (one class per layer,
    indexed by layer), as ``torch.distributions.Distribution.has_rsample`` is a class attribute: a loss built on a
    model that declares them refuses it at once when a layer does not fit. Without the declaration every hook is
    offered, and a layer that does not fit a hook raises a clear error at the first call.

    Latents: a tuple indexed by layer (``latents[l]``: ``[batch, n_samples, *shape of layer l]``). `forward`
    computes the first layer's distribution (from the data alone) and keeps it in ``params_``, with the data for
    the later layers.
    """

    #: The order in which q draws the layers (a permutation of 0..L-1); every subclass sets it.
    layer_order: tuple[int, ...] = ()
    #: Optional: the distribution class of each layer, indexed by layer (e.g. ``(Bernoulli, Bernoulli)``), from
    #: which `layer_kinds` and the ``has_...`` capabilities follow before any call.
    layer_distributions: Optional[tuple[type, ...]] = None

    params_: Optional[Distribution] = None
    data_: Optional[Tensor] = None

    def __getstate__(self) -> dict[str, Any]:
        return state_without_call_state(self, ("params_", "data_"))

    @abc.abstractmethod
    def conditional(self, data: Tensor, layer: int, latents: Sequence[Optional[Tensor]]) -> Distribution:
        """q(z_layer | x, the layers drawn before it).

        Args:
            data: ``[batch, *data_shape]``.
            layer: the index of the layer (its place in the latents' tuple).
            latents: one entry per layer: ``[batch, K, *shape]`` for the layers drawn before ``layer``
                (`layer_order`), None for the others. The first layer drawn sees only None (it is computed by
                `forward`, before K is known).

        Returns:
            a distribution whose ``batch_shape`` starts with ``[batch, 1 or K]`` (1: the same for every sample);
            the rest of ``batch_shape`` and the ``event_shape`` are the layer's shape.
        """

    # ------------------------------------------------------------------ structure
    @property
    def n_layers(self) -> int:
        """L, the number of layers (the length of `layer_order`)."""
        return len(self.layer_order)

    def _check_order(self) -> tuple[int, ...]:
        order = tuple(self.layer_order)
        if not order or sorted(order) != list(range(len(order))):
            raise TypeError(f"`{type(self).__name__}.layer_order` must be a permutation of 0..L-1 (the order q draws "
                            f"its L layers in, e.g. (0, 1)); got {self.layer_order!r}.")
        return order

    def forward(self, data: Tensor) -> "LayeredInfNet":
        order = self._check_order()
        set_call_state(self, "data_", data)
        set_call_state(self, "params_", self._layer(order[0], [None] * len(order), None))
        return self

    def _data(self) -> Tensor:
        if self.data_ is None:
            raise RuntimeError(f"Call `{type(self).__name__}(data)` (its forward) before sampling or scoring.")
        return self.data_

    def _layer(self, layer: int, latents: Sequence[Optional[Tensor]], n_samples: Optional[int]) -> Distribution:
        """The checked distribution of ``layer`` given ``latents`` (the first layer drawn: `forward`'s), its
        ``batch_shape`` ``[batch, 1 or n_samples, ...]`` as `conditional` returned it (scored unexpanded: a
        layer shared by the samples costs one evaluation)."""
        if n_samples is not None and layer == self.layer_order[0]:
            self._data()  # raises before any forward
            dist = self.params_
        else:
            before = self.layer_order[:self.layer_order.index(layer)]
            visible = [z if index in before else None for index, z in enumerate(latents)]
            dist = check_distribution(self.conditional(self._data(), layer, visible),
                                      f"{type(self).__name__}.conditional (layer {layer})")
        batch = self._data().shape[0]
        shape = tuple(dist.batch_shape)
        if len(shape) < 2 or shape[0] != batch or (n_samples is not None and shape[1] not in (1, n_samples)):
            raise ValueError(
                f"`{type(self).__name__}.conditional` returned for layer {layer} a {type(dist).__name__} with "
                f"batch_shape {shape}; expected it to start with [batch, 1 or K] = [{batch}, "
                f"{'1 or ' + str(n_samples) if n_samples is not None else '1 or K'}] (the sample dimension a batch "
                "dimension, not part of the event).")
        return dist

    @staticmethod
    def _expanded(dist: Distribution, n_samples: int) -> Distribution:
        """``dist`` with its sample dimension (1 or ``n_samples``) expanded to ``n_samples``."""
        if dist.batch_shape[1] == n_samples:
            return dist
        return dist.expand(torch.Size((dist.batch_shape[0], n_samples, *dist.batch_shape[2:])))

    def _ancestral(self, n_samples: int, draw) -> tuple[tuple[Tensor, ...], list[Distribution]]:
        """Latents drawn in `layer_order` by ``draw(layer, dist expanded to n_samples) -> z``, and each layer's
        distribution (unexpanded)."""
        n_samples = _check_n_samples(n_samples, f"{type(self).__name__}.sample")
        latents: list[Optional[Tensor]] = [None] * self.n_layers
        dists: list[Optional[Distribution]] = [None] * self.n_layers
        for layer in self.layer_order:
            dists[layer] = self._layer(layer, latents, n_samples)
            latents[layer] = draw(layer, self._expanded(dists[layer], n_samples))
        return tuple(latents), dists

    # ------------------------------------------------------------------ sampling and scoring
    def sample(self, n_samples: int = 1) -> tuple[Tensor, ...]:
        with torch.no_grad():
            return self._ancestral(n_samples, self._draw_exact)[0]

    def sample_and_log_prob(self, n_samples: int = 1) -> tuple[tuple[Tensor, ...], Tensor]:
        """Fused: each layer's distribution is computed once, for sampling and scoring."""
        latents, dists = self._ancestral(n_samples, self._draw_exact)  # exact draws carry no gradient
        return latents, self._sum_log_probs(dists, latents)

    def log_prob(self, latents: tuple[Tensor, ...]) -> Tensor:
        latents = self._check_latents(latents)
        n_samples = latents[0].shape[1]
        dists = [self._layer(layer, latents, n_samples) for layer in range(self.n_layers)]
        return self._sum_log_probs(dists, latents)

    def rsample(self, n_samples: int = 1) -> tuple[Tensor, ...]:
        """Reparameterized samples, each layer conditioned on the reparameterized layers drawn before it.

        Raises:
            NotImplementedError: for a layer whose distribution has no ``rsample``.
        """
        return self._ancestral(n_samples, self._draw_reparameterized)[0]

    def relaxed_rsample(self, n_samples: int = 1, *, temperature: float,
                        straight_through: bool = False) -> tuple[Tensor, ...]:
        """Relaxed samples (binary Concrete for Bernoulli layers, Gumbel-softmax for one-hot layers, ``rsample``
        for reparameterized ones), each layer conditioned on the relaxed layers drawn before it.

        Args:
            n_samples: samples per data point.
            temperature: the relaxation's temperature, > 0.
            straight_through: exact discrete samples forward (rounded, or one-hot of the argmax), each layer
                conditioned on the exact layers before it; the relaxed samples' gradients backward.
        """
        tau = check_temperature(f"{type(self).__name__}.relaxed_rsample", temperature)

        def draw(layer: int, dist: Distribution) -> Tensor:
            base, _ = _base(dist)
            if isinstance(base, (Bernoulli, OneHotCategorical)):
                relaxation = RelaxedBernoulli if isinstance(base, Bernoulli) else RelaxedOneHotCategorical
                logits = base.logits
                relaxed = relaxation(torch.as_tensor(tau, dtype=logits.dtype, device=logits.device), logits=logits,
                                     validate_args=False).rsample()
                if not straight_through:
                    return relaxed
                hard = (relaxed.detach().round() if isinstance(base, Bernoulli) else
                        torch.nn.functional.one_hot(relaxed.detach().argmax(-1), relaxed.shape[-1]).to(relaxed.dtype))
                return straight_through_sample(hard, relaxed)
            return self._draw_reparameterized(layer, dist, "relaxed_rsample")
        return self._ancestral(n_samples, draw)[0]

    def zgr_rsample(self, n_samples: int = 1) -> tuple[Tensor, ...]:
        """Exact discrete samples with the ZGR gradient (`blackbox_vae.zgr`) for Bernoulli and one-hot layers
        (``rsample`` for reparameterized ones), each layer conditioned on the ZGR draws before it."""
        def draw(layer: int, dist: Distribution) -> Tensor:
            base, _ = _base(dist)
            if isinstance(base, Bernoulli):
                return bernoulli_zgr(base.logits)
            if isinstance(base, OneHotCategorical):
                return categorical_zgr(base.logits)
            return self._draw_reparameterized(layer, dist, "zgr_rsample")
        return self._ancestral(n_samples, draw)[0]

    def bit_probabilities(self, n_samples: int = 1) -> tuple[Tensor, ...]:
        """q(z_i = 1 | x, sampled parents) of every bit along an ancestral sample: ``[batch, n_samples, *shape]``
        per layer (every layer must be Bernoulli)."""
        with torch.no_grad():
            _, dists = self._ancestral(n_samples, self._draw_exact)
            return tuple(self._bernoulli(layer, self._expanded(dist, n_samples), "bit_probabilities").probs
                         for layer, dist in enumerate(dists))

    def bernoulli_logits(self, latents: tuple[Tensor, ...], layer: int = 0) -> Tensor:
        """The logits of the Bernoulli layer ``layer`` given the layers drawn before it: ``[batch, K, *shape]``."""
        dist = self._layer_given(latents, layer, "bernoulli_logits")
        return self._bernoulli(layer, dist, "bernoulli_logits").logits

    def categorical_logits(self, latents: tuple[Tensor, ...], layer: int = 0) -> Tensor:
        """The (normalized) logits of the one-hot layer ``layer`` given the layers drawn before it:
        ``[batch, K, *shape]``."""
        dist = self._layer_given(latents, layer, "categorical_logits")
        base, _ = _base(dist)
        if not isinstance(base, OneHotCategorical):
            raise NotImplementedError(self._unfit(layer, dist, "categorical_logits", "a OneHotCategorical"))
        return base.logits

    # ------------------------------------------------------------------ capabilities
    @property
    def layer_kinds(self) -> Optional[tuple[str, ...]]:
        """What each layer is, from `layer_distributions` (None where they are not declared)."""
        if self.layer_distributions is None:
            return None
        return tuple(next((kind for cls, kind in _KINDS.items() if issubclass(dist, cls)), "other")
                     for dist in self.layer_distributions)

    def _declared(self, test) -> bool:
        """Whether every declared layer passes ``test(distribution class)``; True when nothing is declared."""
        return self.layer_distributions is None or all(test(dist) for dist in self.layer_distributions)

    @property
    def has_rsample(self) -> bool:
        """Whether every layer's distribution has ``rsample`` (from `layer_distributions`; False undeclared, as
        discrete layers are the common case: declare them to offer the pathwise estimators)."""
        return self.layer_distributions is not None and all(dist.has_rsample for dist in self.layer_distributions)

    @property
    def has_relaxed_rsample(self) -> bool:
        """Whether every declared layer is Bernoulli, one-hot or reparameterized (True undeclared)."""
        return self._declared(lambda dist: issubclass(dist, (Bernoulli, OneHotCategorical)) or dist.has_rsample)

    @property
    def has_zgr_rsample(self) -> bool:
        """As `has_relaxed_rsample`."""
        return self.has_relaxed_rsample

    @property
    def has_bit_probabilities(self) -> bool:
        """Whether every declared layer is Bernoulli (True undeclared)."""
        return self._declared(lambda dist: issubclass(dist, Bernoulli))

    @property
    def has_bernoulli_logits(self) -> bool:
        """Whether some declared layer is Bernoulli (True undeclared)."""
        return self.layer_distributions is None or any(issubclass(d, Bernoulli) for d in self.layer_distributions)

    @property
    def has_categorical_logits(self) -> bool:
        """Whether some declared layer is one-hot (True undeclared)."""
        return (self.layer_distributions is None
                or any(issubclass(d, OneHotCategorical) for d in self.layer_distributions))

    # ------------------------------------------------------------------ helpers
    def _draw_exact(self, layer: int, dist: Distribution) -> Tensor:
        base, _ = _base(dist)
        if isinstance(base, Bernoulli):
            return draw_bernoulli(base.probs.detach())
        return dist.sample()

    def _draw_reparameterized(self, layer: int, dist: Distribution, hook: str = "rsample") -> Tensor:
        if not dist.has_rsample:
            raise NotImplementedError(self._unfit(layer, dist, hook, "a distribution with rsample (e.g. a Normal)"))
        return dist.rsample()

    def _sum_log_probs(self, dists: Sequence[Distribution], latents: Sequence[Tensor]) -> Tensor:
        """sum_l log q(z_l | ...) over the layers and each layer's dimensions: ``[batch, K]``."""
        total = None
        for dist, z in zip(dists, latents):
            base, _ = _base(dist)
            if isinstance(base, Bernoulli):
                flat = base.logits.flatten(2)  # [batch, 1 or K, H]: one matrix product where the logits are shared
                term = bernoulli_log_prob(flat, z.flatten(2))
            elif isinstance(base, OneHotCategorical):  # linear in z: relaxed one-hot samples keep their gradient
                term = sum_to_leading(z * base.logits, 2)
            else:
                term = sum_to_leading(dist.log_prob(z), 2)
            total = term if total is None else total + term
        return total

    def _layer_given(self, latents: tuple[Tensor, ...], layer: int, hook: str) -> Distribution:
        latents = self._check_latents(latents, hook)
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.n_layers:
            raise ValueError(f"`{type(self).__name__}.{hook}`: `layer` must be an int in [0, {self.n_layers}); "
                             f"got {layer!r}.")
        n_samples = latents[0].shape[1]
        return self._expanded(self._layer(layer, latents, n_samples), n_samples)

    def _bernoulli(self, layer: int, dist: Distribution, hook: str) -> Bernoulli:
        base, _ = _base(dist)
        if not isinstance(base, Bernoulli):
            raise NotImplementedError(self._unfit(layer, dist, hook, "a Bernoulli"))
        return base

    def _unfit(self, layer: int, dist: Distribution, hook: str, needed: str) -> str:
        return (f"`{type(self).__name__}.{hook}`: layer {layer}'s distribution is a {type(_base(dist)[0]).__name__}, "
                f"not {needed}. Declare `layer_distributions` so that losses refuse the model when they are built, "
                "or use an estimator that fits every layer (VIMCOLoss and RWSLoss need only sample and log_prob).")

    def _check_latents(self, latents: object, hook: str = "log_prob") -> tuple[Tensor, ...]:
        if (not isinstance(latents, (tuple, list)) or len(latents) != self.n_layers
                or not all(isinstance(z, Tensor) and z.dim() >= 2 for z in latents)):
            got = (f"a {type(latents).__name__} of {len(latents)}" if isinstance(latents, (tuple, list))
                   else type(latents).__name__)
            raise ValueError(f"`{type(self).__name__}.{hook}`: `latents` must be a tuple of {self.n_layers} tensors "
                             f"[batch, n_samples, *shape], one per layer; got {got}.")
        return tuple(latents)
