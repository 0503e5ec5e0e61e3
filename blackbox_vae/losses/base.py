"""The base of every loss object: it drives the models, validates them and keeps state."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.latents import Latents, map_latents
from blackbox_vae.losses._importance import log_mean_exp
from blackbox_vae.losses._checks import check_data, check_finite, check_latents, check_log_prob, check_n_samples

__all__ = ["Loss"]

# Pending history entries are detached device scalars, turned into floats in
# one transfer when read or when this many have piled up, so that training on
# a GPU does not synchronize with the host on every step.
_HISTORY_FLUSH_EVERY = 256


class Loss(nn.Module, metaclass=abc.ABCMeta):
    """Base class of the loss objects (gradient estimators).

    A loss is constructed as ``SomeLoss(inf_net, gen_model, n_samples=..., ...)``
    and called as ``loss(data)`` with ``data [batch, *data_shape]``. It drives
    both models itself and returns a scalar surrogate, averaged over the batch,
    whose gradient is the estimator; minimize it with any torch optimizer. The
    models are registered as submodules, so ``loss.parameters()`` holds both
    networks' parameters (and any the estimator learns itself) and
    ``loss.to(device)`` moves everything.

    Subclasses implement `_estimate`, returning the per-datum bound
    (the objective reported in ``loss_history_``) and the surrogate loss
    (what is differentiated), kept apart by name.

    Attributes:
        loss_history_: the estimated objective, the negative bound averaged
            over the batch, one float per call.
        log_p_: the last batch's log p(x, z), ``[batch, n_samples]``, detached.
        log_q_: the last batch's log q(z|x), ``[batch, n_samples]``, detached.

    Args:
        inf_net: the inference network q(z|x).
        gen_model: the generative model p(x, z).
        n_samples: samples of z per data point (K).
        validate: check every log-probability for NaN and infinities. The
            check reads one value back from the device per call; turn it off
            for speed once a model is known to be sound. Shape checks are
            always on (they cost nothing).
    """

    #: Smallest ``n_samples`` the estimator accepts, and why.
    min_samples: ClassVar[int] = 1
    min_samples_reason: ClassVar[str] = ""
    #: Whether the estimator differentiates through ``inf_net.rsample``.
    needs_rsample: ClassVar[bool] = False
    #: What ``_estimate`` returns as its first value: ``"bound"`` (the per-datum bound ``[batch]``, or
    #: per-sample terms ``[batch, K]`` that average to it) or ``"log-weights"`` (``log p - log q``
    #: ``[batch, K]``, whose log-mean-exp over K is the bound). Either way it is reduced off the hot path.
    recorded: ClassVar[str] = "bound"

    log_p_: Tensor | None
    log_q_: Tensor | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.recorded not in ("bound", "log-weights"):
            raise TypeError(f"{cls.__name__}.recorded must be 'bound' or 'log-weights'; got {cls.recorded!r}.")

    def __init__(self, inf_net: InfNet, gen_model: GenModel, n_samples: int = 1, *, validate: bool = True):
        super().__init__()
        name = type(self).__name__
        if not isinstance(inf_net, InfNet):
            raise TypeError(f"{name}: `inf_net` must be an InfNet (q(z|x)); got {type(inf_net).__name__}.")
        if not isinstance(gen_model, GenModel):
            raise TypeError(f"{name}: `gen_model` must be a GenModel (p(x, z)); got {type(gen_model).__name__}.")
        if self.needs_rsample and not inf_net.has_rsample:
            raise TypeError(
                f"{name} is a reparameterized estimator and needs `{type(inf_net).__name__}.rsample`, which is not "
                "implemented. Implement `rsample`, or use a score-function estimator such as ScoreFunctionLoss."
            )
        self.inf_net = inf_net
        self.gen_model = gen_model
        self.n_samples = check_n_samples(n_samples, self.min_samples, name, self.min_samples_reason)
        self.validate = bool(validate)
        self._history: list[float] = []
        self._pending: list[Tensor] = []
        self.log_p_ = None
        self.log_q_ = None

    # ------------------------------------------------------------------ API
    def forward(self, data: Tensor) -> Tensor:
        """Estimates the objective for ``data`` and returns the surrogate loss.

        Args:
            data: ``[batch, *data_shape]``.

        Returns:
            a scalar; its gradient is the estimator (to be minimized).
        """
        data = check_data(data, type(self).__name__)
        self._check_device(data)
        bound, surrogate_loss = self._estimate(data)
        self._record(bound.detach())
        return surrogate_loss

    @property
    def loss_history_(self) -> list[float]:
        """The negative bound per call, as floats."""
        self._flush_history()
        return self._history

    @abc.abstractmethod
    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(bound, surrogate_loss [])`` for one batch.

        ``bound`` is what `recorded` names: the per-datum bound
        ``[batch]``, per-sample terms ``[batch, K]`` whose mean is the batch's
        bound (the ELBO's learning signals), or the log-weights ``[batch, K]``
        of an importance-weighted bound. It is detached and reduced to the
        history's number later, in one batch with other steps.
        """

    # ------------------------------------------------------- model driving
    def _draw(self, data: Tensor, reparameterized: bool = False, **rsample_options: Any) -> tuple[Latents, Tensor, Tensor]:
        """Samples K latents from q for ``data`` and scores them under q and p.

        With ``reparameterized=False`` the latents are detached (score-function
        estimators treat them as fixed); with ``True`` they come from
        ``inf_net.rsample(n_samples, **rsample_options)`` and carry the gradient path.

        Also keeps the detached log-probabilities in ``log_q_`` / ``log_p_``.

        Returns:
            ``(latents, log_q [batch, K], log_p [batch, K])``.
        """
        inf_name = type(self.inf_net).__name__
        inf_net = self.inf_net(data)
        if reparameterized:
            if type(inf_net).rsample_and_log_prob is InfNet.rsample_and_log_prob:
                latents = inf_net.rsample(self.n_samples, **rsample_options)
                check_latents(latents, data.shape[0], self.n_samples, f"{inf_name}.rsample")
                log_q = inf_net.log_prob(latents)
            else:
                latents, log_q = inf_net.rsample_and_log_prob(self.n_samples, **rsample_options)
                check_latents(latents, data.shape[0], self.n_samples, f"{inf_name}.rsample_and_log_prob")
        elif type(inf_net).sample_and_log_prob is InfNet.sample_and_log_prob:
            # No fused hook: check the samples before log_prob sees them.
            latents = map_latents(Tensor.detach, inf_net.sample(self.n_samples))
            check_latents(latents, data.shape[0], self.n_samples, f"{inf_name}.sample")
            log_q = inf_net.log_prob(latents)
        else:
            latents, log_q = inf_net.sample_and_log_prob(self.n_samples)
            check_latents(latents, data.shape[0], self.n_samples, f"{inf_name}.sample_and_log_prob")
            latents = map_latents(Tensor.detach, latents)
        log_q = self._checked(log_q, data.shape[0], self.n_samples, f"{inf_name}.log_prob")
        log_p = self._score(data, latents)
        self._keep(log_q, log_p)
        return latents, log_q, log_p

    def _keep(self, log_q: Tensor, log_p: Tensor) -> None:
        """Stores the last batch's log-probabilities, detached (bypassing nn.Module.__setattr__: a hot path,
        and the values are plain tensors)."""
        object.__setattr__(self, "log_q_", log_q.detach())
        object.__setattr__(self, "log_p_", log_p.detach())

    def _score(self, data: Tensor, latents: Latents) -> Tensor:
        """log p(x, z) ``[batch, K]`` for latents with leading ``[batch, K]``."""
        log_p = self.gen_model(data, latents).log_prob(data, latents)
        return self._checked(log_p, data.shape[0], self.n_samples, f"{type(self.gen_model).__name__}.log_prob")

    def _checked(self, log_prob: Tensor, batch: int, n_samples: int, where: str) -> Tensor:
        """Checks a log-prob's shape ``[batch, n_samples]``, and its values when ``validate`` is on."""
        log_prob = check_log_prob(log_prob, batch, n_samples, where)
        if self.validate:
            check_finite(log_prob, where)
        return log_prob

    def _check_device(self, data: Tensor) -> None:
        # One parameter stands for all (the models move together); remembered, since walking parameters()
        # on every call costs more than the check. .to() keeps Parameter objects, so its device stays current.
        param = self.__dict__.get("_device_reference")
        if param is None:
            param = next(self.parameters(), None)
            object.__setattr__(self, "_device_reference", param)
        if param is not None and param.device != data.device:
            raise ValueError(
                f"{type(self).__name__}: `data` is on {data.device} but the models' parameters are on "
                f"{param.device}; move the data with `data.to({str(param.device)!r})`."
            )

    # --------------------------------------------------------------- state
    @torch.compiler.disable  # host-side bookkeeping: outside any compiled graph, and no guard on its length
    def _record(self, bound: Tensor) -> None:
        self._pending.append(bound)
        if len(self._pending) >= _HISTORY_FLUSH_EVERY:
            self._flush_history()

    def _flush_history(self) -> None:
        # Averaged here rather than per call: a few kernels fewer on the hot path, and one transfer.
        if self._pending:
            if len({recorded.shape for recorded in self._pending}) == 1:
                bounds = self._bounds(torch.stack(self._pending, dim=0))
            else:  # batches of different sizes (a last, smaller batch)
                bounds = torch.stack([self._bounds(recorded.unsqueeze(0))[0] for recorded in self._pending])
            self._history.extend((-bounds).tolist())
            self._pending.clear()

    def _bounds(self, recorded: Tensor) -> Tensor:
        """``[steps, batch, ...]`` of what ``_estimate`` returned -> the batch-mean bound per step ``[steps]``."""
        if self.recorded == "log-weights":  # [steps, batch, K] -> [steps, batch]
            recorded = log_mean_exp(recorded.flatten(0, 1)).view(recorded.shape[:2])
        return recorded.flatten(1).mean(1)

    def get_extra_state(self) -> dict[str, Any]:
        """Non-tensor state saved in ``state_dict()``: the loss history."""
        return {"loss_history": list(self.loss_history_)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._pending.clear()
        self._history = [float(value) for value in state["loss_history"]]

    def extra_repr(self) -> str:
        return f"n_samples={self.n_samples}"
