"""Gumbel-softmax / Concrete relaxation, and its straight-through variant."""

from __future__ import annotations

import inspect
import math
from typing import Callable, Union

from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.losses.base import Loss

__all__ = ["GumbelSoftmaxLoss", "TemperatureSchedule"]


class TemperatureSchedule:
    """Jang et al.'s annealing: ``max(minimum, initial * exp(-rate * t))``, t rounded down to a multiple of ``every``.

    Pass one as ``GumbelSoftmaxLoss(temperature=...)``; the loss evaluates it at
    its own step count (the number of calls so far, which ``state_dict`` keeps).

    Args:
        initial: temperature at step 0, > 0.
        minimum: floor, > 0 (the paper: 0.5).
        rate: decay rate per step, >= 0 (the paper: 1e-5 to 1e-4).
        every: steps between updates (the paper: 500).
    """

    def __init__(self, initial: float = 1.0, minimum: float = 0.5, rate: float = 1e-4, every: int = 500):
        if not (initial > 0 and minimum > 0):
            raise ValueError(f"TemperatureSchedule: `initial` and `minimum` must be > 0; got {initial!r}, {minimum!r}.")
        if rate < 0 or every < 1:
            raise ValueError(f"TemperatureSchedule: need `rate` >= 0 and `every` >= 1; got {rate!r}, {every!r}.")
        self.initial, self.minimum, self.rate, self.every = float(initial), float(minimum), float(rate), int(every)

    def __call__(self, step: int) -> float:
        t = (step // self.every) * self.every
        return max(self.minimum, self.initial * math.exp(-self.rate * t))

    def __repr__(self) -> str:
        return (f"TemperatureSchedule(initial={self.initial}, minimum={self.minimum}, rate={self.rate}, "
                f"every={self.every})")


Temperature = Union[float, Callable[[int], float]]


class GumbelSoftmaxLoss(Loss):
    r"""Gumbel-softmax / Concrete estimator (Jang et al. 2017; Maddison et al. 2017).

    Relaxed objective optimized (``straight_through=False``):

    $$
    \mathcal{L}_\tau(x) = \mathbb{E}_{y \sim \mathrm{Concrete}_\tau(q(\cdot|x))}
        \big[\log p(x, y) - \log q(y|x)\big]
    $$

    where ``y`` is a relaxed sample (a point of the simplex, or of [0, 1] for
    Bernoulli latents) from ``inf_net.rsample(n, temperature=tau)``, and both
    log-probabilities are the models' own ``log_prob`` evaluated at ``y`` (for
    the library's Bernoulli and categorical models, the discrete log-mass
    extended linearly, $\sum_i y_i \log \pi_i$). The gradient is the
    pathwise derivative of $\mathcal{L}_\tau$'s estimate, unbiased for
    $\nabla\mathcal{L}_\tau$ but biased for the ELBO's gradient; the bias
    vanishes as $\tau \to 0$ while the variance grows. The reported
    objective is the relaxed one.

    Straight-through (``straight_through=True``): the forward pass uses exact
    discrete samples z (rounded / argmax of y, themselves exact draws from q),
    so the reported objective is an unbiased ELBO estimate; the backward pass
    uses y's gradient. Biased for every temperature, but the decoder only ever
    sees discrete codes.

    Cost per step: one forward/backward of q and p over K samples.

    Args:
        inf_net: an InfNet whose ``rsample`` takes ``temperature`` (and
            ``straight_through``), e.g. a `RelaxedBernoulliInfNet` or
            `RelaxedCategoricalInfNet`.
        gen_model: p(x, z), scoring relaxed latents.
        n_samples: K.
        temperature: a float > 0, or a schedule ``step -> float`` such as
            `TemperatureSchedule`, evaluated at the loss's call count.
        straight_through: use the straight-through variant.
        validate: see `Loss`.

    Raises:
        TypeError: if ``inf_net.rsample`` does not take ``temperature`` (or ``straight_through``).
        ValueError: for a temperature <= 0.

    References:
        Jang, Gu & Poole (2017), Categorical reparameterization with Gumbel-softmax.
        Maddison, Mnih & Teh (2017), The Concrete distribution.
        Bengio, Léonard & Courville (2013), Estimating or propagating gradients through stochastic neurons.
    """

    needs_rsample = True

    def __init__(self, inf_net: InfNet, gen_model: GenModel, n_samples: int = 1, temperature: Temperature = 1.0,
                 straight_through: bool = False, *, validate: bool = True):
        super().__init__(inf_net, gen_model, n_samples, validate=validate)
        wanted = ["temperature"] + (["straight_through"] if straight_through else [])
        accepted = inspect.signature(inf_net.rsample).parameters
        missing = [name for name in wanted if name not in accepted]
        if missing:
            raise TypeError(
                f"GumbelSoftmaxLoss needs `{type(inf_net).__name__}.rsample` to take {', '.join(map(repr, missing))}; "
                "its signature is " f"rsample{inspect.signature(inf_net.rsample)}. Subclass RelaxedBernoulliInfNet or "
                "RelaxedCategoricalInfNet, or add the argument to your rsample."
            )
        if not callable(temperature):
            _check_temperature(temperature)
        self.temperature = temperature
        self.straight_through = bool(straight_through)

    @property
    def current_temperature(self) -> float:
        """The temperature the next call uses."""
        if callable(self.temperature):
            return _check_temperature(self.temperature(len(self._history) + len(self._pending)))
        return float(self.temperature)

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        options = {"temperature": self.current_temperature}
        if self.straight_through:
            options["straight_through"] = True
        _, log_q, log_p = self._draw(data, reparameterized=True, **options)
        objective = log_p - log_q  # [batch, K]
        return objective.detach(), -objective.mean()  # per-sample terms: the history averages them

    def extra_repr(self) -> str:
        return f"n_samples={self.n_samples}, temperature={self.temperature!r}, straight_through={self.straight_through}"


def _check_temperature(temperature: object) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"GumbelSoftmaxLoss: `temperature` must be a number > 0 or a schedule; got {temperature!r}.")
    return float(temperature)
