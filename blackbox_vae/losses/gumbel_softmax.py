"""Gumbel-softmax / Concrete relaxation, and its straight-through variant."""

from __future__ import annotations

import math
from typing import Any, Callable, Union

import torch

from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.losses.base import Loss
from blackbox_vae.relaxed import check_temperature

__all__ = ["GumbelSoftmaxLoss", "TemperatureSchedule"]


class TemperatureSchedule:
    """Jang et al.'s annealing: ``max(minimum, initial * exp(-rate * t))``, t rounded down to a multiple of ``every``.

    Pass one as ``GumbelSoftmaxLoss(temperature=...)``; the loss evaluates it at
    its own step count (the number of training calls so far, which ``state_dict`` keeps).

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
    Bernoulli latents) from ``inf_net.relaxed_rsample(n, temperature=tau)``, and both
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

    A schedule is evaluated at the loss's step count: the number of training
    calls so far, i.e. calls in training mode (``loss.train()``, the default)
    with gradients enabled. Calls under ``torch.no_grad()`` or after
    ``loss.eval()`` (evaluation) leave the schedule where it is.

    Cost per step: one forward/backward of q and p over K samples.

    Args:
        inf_net: an InfNet with a ``relaxed_rsample`` (``has_relaxed_rsample``), e.g. a
            `RelaxedBernoulliInfNet` or `RelaxedCategoricalInfNet`.
        gen_model: p(x, z), scoring relaxed latents.
        n_samples: K.
        temperature: a float > 0, or a schedule ``step -> float`` such as
            `TemperatureSchedule`, evaluated at the loss's step count.
        straight_through: use the straight-through variant.
        validate: see `Loss`.

    Raises:
        TypeError: if ``inf_net`` has no ``relaxed_rsample``.
        ValueError: for a temperature that is not a number > 0.

    References:
        Jang, Gu & Poole (2017), Categorical reparameterization with Gumbel-softmax.
        Maddison, Mnih & Teh (2017), The Concrete distribution.
        Bengio, Léonard & Courville (2013), Estimating or propagating gradients through stochastic neurons.
    """

    needs = ("relaxed_rsample",)
    needs_differentiable_gen_model = True
    choices = {"straight_through": (True, False)}

    def __init__(self, inf_net: InfNet, gen_model: GenModel, n_samples: int = 1, temperature: Temperature = 1.0,
                 straight_through: bool = False, *, validate: bool = True):
        super().__init__(inf_net, gen_model, n_samples, validate=validate)
        if not callable(temperature):
            check_temperature(type(self).__name__, temperature)
        self.temperature = temperature
        self.straight_through = self._check_choice("straight_through", straight_through)
        self.steps = 0  # training calls so far: where a schedule is evaluated

    @property
    def current_temperature(self) -> float:
        """The temperature the next training call uses."""
        if callable(self.temperature):
            return check_temperature(f"{type(self).__name__} (its temperature schedule at step {self.steps})",
                                     self.temperature(self.steps))
        return float(self.temperature)

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        temperature = self.current_temperature
        if self.training and torch.is_grad_enabled():
            self.steps += 1
        try:
            _, log_q, log_p = self._draw(data, "relaxed_rsample", temperature=temperature,
                                         straight_through=self.straight_through)
        except ValueError as error:
            if "support" not in str(error):
                raise
            raise ValueError(
                f"GumbelSoftmaxLoss scores relaxed latents (values in [0, 1], or on the simplex), and a distribution "
                f"of {type(self.gen_model).__name__} or {type(self.inf_net).__name__} rejected them because it "
                "validates its support: construct it with validate_args=False, e.g. Bernoulli(logits=..., "
                f"validate_args=False). ({str(error).splitlines()[0]})") from error
        negative_objective = -(log_p - log_q).mean()  # the objective is its own surrogate
        return negative_objective, negative_objective

    def settings(self) -> dict[str, Any]:
        """K, the temperature (a number, or the schedule's repr) and straight-through (see `Loss.settings`)."""
        temperature = self.temperature
        if isinstance(temperature, TemperatureSchedule):
            temperature = repr(temperature)
        elif callable(temperature):  # a function: its name (a repr would hold its address, which changes)
            temperature = getattr(temperature, "__qualname__", type(temperature).__qualname__)
        else:
            temperature = float(temperature)
        return {**super().settings(), "temperature": temperature, "straight_through": self.straight_through}

    def get_extra_state(self) -> dict[str, Any]:
        """The history, and the step count at which the temperature schedule is evaluated."""
        return {**super().get_extra_state(), "steps": self.steps}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restores what `get_extra_state` saved."""
        super().set_extra_state(state)
        self.steps = int(state["steps"])

    def extra_repr(self) -> str:
        return f"n_samples={self.n_samples}, temperature={self.temperature!r}, straight_through={self.straight_through}"
