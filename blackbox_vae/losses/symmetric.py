"""Symmetric equilibrium learning: p learns on the data's codes, q on p's dreams."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.losses._dreams import dreamed_log_q
from blackbox_vae.losses.base import Loss, outside_compiled_graphs

__all__ = ["SymmetricLoss"]


class SymmetricLoss(Loss):
    r"""Symmetric equilibrium learning of a VAE (Flach, Schlesinger & Shekhovtsov 2024): two players.

    - p (the decoder) ascends $\mathbb{E}_{x \sim \text{data},\, z \sim q(z|x)} \log p(x, z)$, the wake
      utility: $\frac{1}{K}\sum_k \nabla_\theta \log p(x, z_k)$ with $z_k \sim q(z|x)$ detached.
    - q (the encoder) ascends $\mathbb{E}_{(x, z) \sim p} \log q(z|x)$, the sleep utility:
      $\nabla_\phi \log q(z'|x')$ on dreams $(x', z') \sim p$ from ``gen_model.sample``, detached.

    Nothing is reparameterized and no density of the prior is needed in closed form: every distribution
    is only sampled and scored. One call returns one scalar whose gradient is the sum of the two updates,
    each averaged over its samples; **p's parameters receive only the wake term and q's only the sleep
    term**, also when q reuses p's modules (the ladder encoder of hierarchical models feeds p's logits
    into q): a parameter of ``gen_model`` is p's even where q uses it, and the sleep term's gradient with
    respect to such shared parameters is removed (one extra backward pass through q's dream graph, taken
    only when q holds parameters of p).

    Reported objective (``loss_history_``, the call's value): the negative single-sample ELBO of the wake
    samples, $-\frac{1}{K}\sum_k [\log p(x, z_k) - \log q(z_k|x)]$ averaged over the batch, so that
    runs of this loss read like the others'. The two utilities each player ascends are kept apart in
    ``wake_utility_history_`` and ``sleep_utility_history_``.

    The game's equilibrium is not the ELBO's optimum: the q update is the sleep phase of wake-sleep
    (it fits q to p's posterior in the KL(p || q) direction), and the p update maximizes
    $\mathbb{E}_q \log p$ without the entropy term that makes it an ELBO gradient for q.

    Args:
        inf_net: q(z|x); needs ``sample`` and ``log_prob``.
        gen_model: p(x, z); needs ``sample`` (the dreams) besides ``log_prob``.
        n_samples: K, samples of z ~ q(z|x) per data point in the wake term.
        dreams: dreamed pairs (x', z') ~ p per data point in the sleep term (``dreams * batch`` in all).
        flip_noise: the probability with which each bit of binary data is flipped before the wake term
            (the paper adds a little such noise, e.g. 0.01, so that p never sees a code for exactly the
            training images only); 0 leaves the data as they are.
        validate: see `Loss`.

    Attributes:
        wake_utility_history_: per call, the mean of log p(x, z) over the batch and the K wake samples.
        sleep_utility_history_: per call, the mean of log q(z'|x') over the dreams.

    Raises:
        ValueError: for ``dreams`` < 1, ``flip_noise`` outside [0, 0.5), or (at a call, when ``validate`` is
            on) non-binary data with ``flip_noise`` > 0.

    References:
        Flach, Schlesinger & Shekhovtsov (2024), Symmetric equilibrium learning of VAEs, AISTATS.
    """

    def __init__(self, inf_net: InfNet, gen_model: GenModel, n_samples: int = 1, *, dreams: int = 1,
                 flip_noise: float = 0.0, validate: bool = True):
        super().__init__(inf_net, gen_model, n_samples, validate=validate)
        if isinstance(dreams, bool) or not isinstance(dreams, int) or dreams < 1:
            raise ValueError(f"SymmetricLoss: `dreams` (dreamed pairs per data point) must be an integer >= 1; "
                             f"got {dreams!r}.")
        self.dreams = dreams
        if isinstance(flip_noise, bool) or not isinstance(flip_noise, (int, float)) or not 0 <= flip_noise < 0.5:
            raise ValueError(f"SymmetricLoss: `flip_noise` must be a probability in [0, 0.5); got {flip_noise!r}.")
        self.flip_noise = float(flip_noise)
        self._utility_history: dict[str, list[float]] = {"wake": [], "sleep": []}
        self._pending_utilities: list[Tensor] = []

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        # The sleep phase first, so that after a call inf_net.params_ is q's for the data (as after RWS).
        sleep_utility = dreamed_log_q(self, self.dreams * data.shape[0], data.device).mean()
        if self.flip_noise:
            data = self._flipped(data)
        _, log_q, log_p = self._draw(data)  # latents detached: the wake term reaches p only
        wake_utility = log_p.mean()
        objective = -(log_p - log_q).detach().mean()
        self._record_utilities(torch.stack([wake_utility.detach(), sleep_utility.detach()]))
        surrogate = -(wake_utility + sleep_utility)
        shared = self._parameters_q_borrows_from_p()
        if shared:
            # Remove the sleep term's gradient on p's parameters: adding <g, theta> with g = d sleep / d theta
            # detached cancels -g in the surrogate's gradient and leaves its value's gradient elsewhere intact.
            borrowed = torch.autograd.grad(sleep_utility, shared, retain_graph=True, allow_unused=True)
            for parameter, gradient in zip(shared, borrowed):
                if gradient is not None:
                    surrogate = surrogate + (gradient.detach() * parameter).sum()
        return objective, surrogate

    def _flipped(self, data: Tensor) -> Tensor:
        """Binary data with each bit flipped with probability ``flip_noise``."""
        # The binary check reads a value back from the device: only when `validate` is on (as the finiteness checks).
        if self.validate and not bool(((data == 0) | (data == 1)).all()):
            raise ValueError(f"SymmetricLoss: `flip_noise` = {self.flip_noise} flips bits, so `data` must be binary "
                             "(0/1); got other values. Binarize the data, or set flip_noise=0.")
        flips = torch.rand_like(data) < self.flip_noise
        return torch.where(flips, 1 - data, data)

    def _parameters_q_borrows_from_p(self) -> list[Tensor]:
        """Parameters of p that q also holds (a ladder encoder's), which the sleep term must not train."""
        p_parameters = {id(parameter) for parameter in self.gen_model.parameters()}
        return [parameter for parameter in self.inf_net.parameters()
                if id(parameter) in p_parameters and parameter.requires_grad]

    # ------------------------------------------------------------------------------ histories
    @outside_compiled_graphs
    def _record_utilities(self, utilities: Tensor) -> None:
        self._pending_utilities.append(utilities)
        if len(self._pending_utilities) >= 256:
            self._flush_utilities()

    def _flush_utilities(self) -> None:
        if self._pending_utilities:
            for wake, sleep in torch.stack(self._pending_utilities).tolist():
                self._utility_history["wake"].append(wake)
                self._utility_history["sleep"].append(sleep)
            self._pending_utilities.clear()

    @property
    def wake_utility_history_(self) -> list[float]:
        """Mean log p(x, z) over the wake samples, per call (what p ascends)."""
        self._flush_utilities()
        return self._utility_history["wake"]

    @property
    def sleep_utility_history_(self) -> list[float]:
        """Mean log q(z'|x') over the dreams, per call (what q ascends)."""
        self._flush_utilities()
        return self._utility_history["sleep"]

    def get_extra_state(self) -> dict[str, Any]:
        """`Loss`'s, and both utilities' histories."""
        return {**super().get_extra_state(), "wake_utility_history": list(self.wake_utility_history_),
                "sleep_utility_history": list(self.sleep_utility_history_)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restores what `get_extra_state` saved."""
        super().set_extra_state(state)
        self._pending_utilities.clear()
        self._utility_history = {"wake": [float(v) for v in state.get("wake_utility_history", [])],
                                 "sleep": [float(v) for v in state.get("sleep_utility_history", [])]}

    def settings(self) -> dict[str, Any]:
        """K, dreams per data point and the flip noise (see `Loss.settings`)."""
        return {**super().settings(), "dreams": self.dreams, "flip_noise": self.flip_noise}

    def extra_repr(self) -> str:
        return f"n_samples={self.n_samples}, dreams={self.dreams}, flip_noise={self.flip_noise}"
