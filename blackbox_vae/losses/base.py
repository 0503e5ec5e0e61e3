"""The base of every loss object: it drives the models, validates them and keeps state."""

from __future__ import annotations

import abc
import functools
from typing import Any, Callable, ClassVar, Literal

import torch
from torch import Tensor, nn

from blackbox_vae._call_state import set_call_state, state_without_call_state
from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.latents import Latents, map_latents
from blackbox_vae.losses._checks import check_data, check_finite, check_latents, check_log_prob, check_n_samples
from blackbox_vae.losses._layers import declared_kinds, fitting_advice

__all__ = ["Loss"]

# Pending history entries are detached device scalars, turned into floats in one transfer when read or
# when this many have piled up, so that training on a GPU does not synchronize with the host every step.
_HISTORY_FLUSH_EVERY = 256

# What to tell a user whose InfNet lacks a hook that an estimator needs (see `Loss.needs`).
_HOOK_ADVICE = {
    "rsample": "a reparameterized sample; implement `rsample`, or use a score-function estimator such as "
               "ScoreFunctionLoss or VIMCOLoss, which need only `sample` and `log_prob`",
    "relaxed_rsample": "a relaxed (Gumbel-softmax / Concrete) sample of discrete latents; subclass "
                       "RelaxedBernoulliInfNet or RelaxedCategoricalInfNet, implement `relaxed_rsample`, or use a "
                       "score-function estimator such as VIMCOLoss",
    "zgr_rsample": "exact discrete samples with the ZGR gradient; subclass RelaxedBernoulliInfNet or "
                   "RelaxedCategoricalInfNet, implement `zgr_rsample` with blackbox_vae.zgr, or use a score-function "
                   "estimator such as VIMCOLoss",
    "bernoulli_logits": "the logits of q's Bernoulli latents, layer by layer; implement `bernoulli_logits`, "
                        "subclass RelaxedBernoulliInfNet or DistributionInfNet with a Bernoulli, or use a "
                        "score-function estimator such as VIMCOLoss, which needs only `sample` and `log_prob`",
    "categorical_logits": "the class logits of q's one-hot latents; implement `categorical_logits`, subclass "
                          "RelaxedCategoricalInfNet or DistributionInfNet with a OneHotCategorical, or use a "
                          "score-function estimator such as VIMCOLoss, which needs only `sample` and `log_prob`",
    "analytic_elbo": "an ELBO with closed-form KL terms (the hierarchical Bernoulli models in "
                     "blackbox_vae.models have one); use analytic_kl=False",
}

Sampler = Literal["sample", "rsample", "relaxed_rsample", "zgr_rsample"]


def _detached(tensor: Tensor) -> Tensor:
    """``tensor.detach()``, or the tensor itself when it has no graph (samples drawn under ``no_grad``): one op less
    per latent tensor on every step."""
    return tensor.detach() if tensor.requires_grad else tensor


def outside_compiled_graphs(method: Callable) -> Callable:
    """Runs ``method`` eagerly even inside a ``torch.compile``d loss (host-side bookkeeping).

    The same as ``torch.compiler.disable``, applied at each call under compilation: the decorator
    itself imports the compiler stack, which would double the time of ``import blackbox_vae``. Nothing
    is cached between calls: a cache filled inside the traced frame (a list's ``append``) is a graph
    break that torch 2.11's Dynamo warns about.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not torch.compiler.is_compiling():
            return method(*args, **kwargs)
        return torch.compiler.disable(method)(*args, **kwargs)

    return wrapper


class Loss(nn.Module, metaclass=abc.ABCMeta):
    """Base class of the loss objects (gradient estimators).

    A loss is constructed as ``SomeLoss(inf_net, gen_model, n_samples=..., ...)``
    and called as ``loss(data)`` with ``data [batch, *data_shape]``. It drives
    both models itself and returns a scalar to minimize: its **value** is the
    estimated objective (the negative bound, averaged over the batch) and its
    **gradient** is the estimator's, as ``objective + (surrogate - surrogate.detach())``
    (Pyro's ``differentiable_loss`` does the same). The models are registered as
    submodules, so ``loss.parameters()`` holds both networks' parameters (and any
    the estimator learns itself) and ``loss.to(device)`` moves everything.

    Subclasses implement `_estimate`, returning the objective (what is
    reported) and the surrogate loss (what is differentiated), kept apart by name.

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

    Raises:
        TypeError: if a model is not an InfNet / GenModel, or ``inf_net`` lacks a hook the
            estimator needs (`needs`).
        ValueError: if ``n_samples`` is below the estimator's `min_samples`.
    """

    #: Smallest ``n_samples`` the estimator accepts, and why.
    min_samples: ClassVar[int] = 1
    min_samples_reason: ClassVar[str] = ""
    #: Optional InfNet hooks the estimator calls besides ``sample`` and ``log_prob``: each name ``h`` is
    #: checked at construction through the InfNet's capability flag ``has_h`` (``"rsample"``: `InfNet.has_rsample`).
    needs: ClassVar[tuple[str, ...]] = ()
    #: Whether the estimator differentiates log p(x, z) with respect to the latents (a pathwise gradient): such a
    #: loss refuses a generative model that declares ``differentiable = False``.
    needs_differentiable_gen_model: ClassVar[bool] = False
    #: The choices of each constructor option that takes one of a few values, e.g. ``{"baseline": (None,
    #: "mean", "leave-one-out")}``: the estimator validates its arguments against them, and the command line
    #: offers exactly these. The one place each option's choices are written.
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {}

    #: Whether the first call's checks of what q draws have passed: the estimators that assume Bernoulli or
    #: one-hot layers check the drawn values once (reading them back is a host synchronization).
    _draws_checked: bool = False

    log_p_: Tensor | None
    log_q_: Tensor | None

    def __init__(self, inf_net: InfNet, gen_model: GenModel, n_samples: int = 1, *, validate: bool = True):
        super().__init__()
        name = type(self).__name__
        if not isinstance(inf_net, InfNet):
            raise TypeError(f"{name}: `inf_net` must be an InfNet (q(z|x)); got {type(inf_net).__name__}.")
        if not isinstance(gen_model, GenModel):
            raise TypeError(f"{name}: `gen_model` must be a GenModel (p(x, z)); got {type(gen_model).__name__}.")
        # the model's limit first: no choice of inference network lifts it
        if self.needs_differentiable_gen_model and not getattr(gen_model, "differentiable", True):
            raise TypeError(f"{name} differentiates log p(x, z) with respect to the latents, but "
                            f"`{type(gen_model).__name__}` declares `differentiable = False` (its log_prob is computed "
                            "outside autograd). Use an estimator that only scores samples: VIMCOLoss, "
                            "ScoreFunctionLoss(baseline='leave-one-out'), NVILLoss, DisARMLoss or RWSLoss.")
        for hook in self.needs:
            self._check_hook(inf_net, hook, gen_model)
        self.inf_net = inf_net
        self.gen_model = gen_model
        self.n_samples = check_n_samples(n_samples, self.min_samples, name, self.min_samples_reason)
        self.validate = bool(validate)
        self._history: list[float] = []
        self._pending: list[Tensor] = []
        self._statistics_group: Any = None
        self.log_p_ = None
        self.log_q_ = None

    def _check_hook(self, inf_net: InfNet, hook: str, gen_model: GenModel | None = None) -> None:
        """Raises unless ``inf_net`` has the hook (its ``has_...`` flag), naming what to do instead and the
        estimators that fit the model (`fitting_estimators`)."""
        if not getattr(inf_net, f"has_{hook}"):
            fits = fitting_advice(inf_net, gen_model if gen_model is not None else getattr(self, "gen_model", None),
                                  declared_kinds(inf_net))
            raise TypeError(f"{type(self).__name__} needs `{type(inf_net).__name__}.{hook}`, which it does not have "
                            f"(`has_{hook}` is False): {_HOOK_ADVICE.get(hook, f'implement `{hook}`')}. {fits}")

    def _check_choice(self, option: str, value: Any) -> Any:
        """Returns ``value`` if it is one of ``choices[option]``, else raises naming the option."""
        allowed = self.choices[option]
        if not any(value is choice or (type(value) is type(choice) and value == choice) for choice in allowed):
            raise ValueError(f"{type(self).__name__}: `{option}` must be one of {allowed}; got {value!r}.")
        return value

    # ------------------------------------------------------------------ API
    def forward(self, data: Tensor) -> Tensor:
        """Estimates the objective for ``data``; returns a scalar to minimize.

        Args:
            data: ``[batch, *data_shape]``.

        Returns:
            a scalar whose value is the estimated objective (the negative bound, averaged over
            the batch) and whose gradient is the estimator's.
        """
        data = check_data(data, type(self).__name__)
        reference = self._check_device(data)
        try:
            objective, surrogate_loss = self._estimate(data)
        except RuntimeError as error:
            if reference is None or data.dtype == reference.dtype:
                raise
            fix = f"convert the data with `data.to({reference.dtype})`"
            if data.is_floating_point():
                fix += f", or the models with `loss.to({data.dtype})`"
            raise TypeError(f"{type(self).__name__}: `data` has dtype {data.dtype} but the models' parameters are "
                            f"{reference.dtype}, and the models failed on it ({str(error).splitlines()[0]}); "
                            f"{fix}.") from error
        if not (isinstance(objective, Tensor) and objective.dim() == 0
                and isinstance(surrogate_loss, Tensor) and surrogate_loss.dim() == 0):
            shapes = [tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in (objective, surrogate_loss)]
            raise TypeError(f"`{type(self).__name__}._estimate` must return two scalars (objective [], surrogate_loss "
                            f"[]): the negative bound averaged over the batch, and what is differentiated; got "
                            f"{shapes[0]} and {shapes[1]}.")
        # Inside a compiled graph the finiteness checks wait for `_record`, which runs eagerly: a value read back
        # in the middle of the graph would split it in three.
        self._record(objective.detach(), checked=not torch.compiler.is_compiling())
        if surrogate_loss is objective:  # its value is already the objective
            return surrogate_loss
        # the value of objective, the gradient of surrogate_loss: objective + (surrogate - surrogate.detach())
        return surrogate_loss + (objective.detach() - surrogate_loss.detach())

    @property
    def loss_history_(self) -> list[float]:
        """The negative bound per call, as floats."""
        self._flush_history()
        return self._history

    @abc.abstractmethod
    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(objective [], surrogate_loss [])`` for one batch.

        ``objective`` is the estimated negative bound averaged over the batch, the value the
        call reports (its gradient is ignored); ``surrogate_loss`` is what is differentiated.
        Return the same tensor twice when the surrogate's value is the objective.
        """

    # ------------------------------------------------------- model driving
    def _draw(self, data: Tensor, sampler: Sampler = "sample", **options: Any) -> tuple[Latents, Tensor, Tensor]:
        """Samples K latents from q for ``data`` and scores them under q and p.

        ``sampler`` names the InfNet method that draws them: ``"sample"`` (detached latents, as the
        score-function estimators treat them), ``"rsample"``, ``"relaxed_rsample"`` (with ``options``,
        e.g. ``temperature``) or ``"zgr_rsample"``, whose latents carry the gradient path.

        Also keeps the detached log-probabilities in ``log_q_`` / ``log_p_``.

        Returns:
            ``(latents, log_q [batch, K], log_p [batch, K])``.
        """
        inf_name = type(self.inf_net).__name__
        batch, k = data.shape[0], self.n_samples
        inf_net = self.inf_net(data)
        if sampler == "sample":
            if type(inf_net).sample_and_log_prob is InfNet.sample_and_log_prob:
                # No fused hook: check the samples before log_prob sees them.
                latents = map_latents(_detached, inf_net.sample(k))
                check_latents(latents, batch, k, f"{inf_name}.sample")
                log_q = inf_net.log_prob(latents)
            else:
                latents, log_q = inf_net.sample_and_log_prob(k)
                check_latents(latents, batch, k, f"{inf_name}.sample_and_log_prob")
                latents = map_latents(_detached, latents)
        elif sampler == "rsample" and type(inf_net).rsample_and_log_prob is not InfNet.rsample_and_log_prob:
            latents, log_q = inf_net.rsample_and_log_prob(k)
            check_latents(latents, batch, k, f"{inf_name}.rsample_and_log_prob")
        else:
            self._check_hook(inf_net, sampler)  # again after forward: a DistributionInfNet's distribution decides
            latents = getattr(inf_net, sampler)(k, **options)
            check_latents(latents, batch, k, f"{inf_name}.{sampler}")
            log_q = inf_net.log_prob(latents)
        log_q = self._checked(log_q, batch, k, f"{inf_name}.log_prob")
        log_p = self._score(data, latents)
        self._keep(log_q, log_p)
        return latents, log_q, log_p

    def _keep(self, log_q: Tensor, log_p: Tensor) -> None:
        """Stores the last batch's log-probabilities, detached."""
        set_call_state(self, "log_q_", log_q.detach())
        set_call_state(self, "log_p_", log_p.detach())

    def _score(self, data: Tensor, latents: Latents) -> Tensor:
        """log p(x, z) ``[batch, K]`` for latents with leading ``[batch, K]``."""
        log_p = self.gen_model(data, latents).log_prob(data, latents)
        return self._checked(log_p, data.shape[0], self.n_samples, f"{type(self.gen_model).__name__}.log_prob")

    def _checked(self, log_prob: Tensor, batch: int, n_samples: int, where: str) -> Tensor:
        """Checks a log-prob's shape ``[batch, n_samples]``, and its values when ``validate`` is on; a bfloat16 or
        float16 one (a model under autocast) is returned in float32."""
        log_prob = check_log_prob(log_prob, batch, n_samples, where)
        if log_prob.dtype in (torch.bfloat16, torch.float16):
            # A model run under autocast: the importance weights and bounds are computed in float32 (their
            # logsumexp over K and the mean over the batch would lose digits in 8 bits of mantissa).
            log_prob = log_prob.float()
        if self.validate and not torch.compiler.is_compiling():
            check_finite(log_prob, where)
        return log_prob

    def _check_device(self, data: Tensor) -> Tensor | None:
        # One parameter stands for all (the models move together). Remembered as per-call state: walking
        # parameters() on every call costs more than the check; .to() keeps Parameter objects, so its device
        # stays current.
        param = self.__dict__.get("_device_reference")
        if param is None:
            param = next(self.parameters(), None)
            set_call_state(self, "_device_reference", param)
        if param is not None and param.device != data.device:
            raise ValueError(
                f"{type(self).__name__}: `data` is on {data.device} but the models' parameters are on "
                f"{param.device}; move the data with `data.to({str(param.device)!r})`."
            )
        return param

    # ------------------------------------------------- data-parallel training
    def synchronize_statistics(self, group: Any = None) -> "Loss":
        """Averages the batch statistics the estimator keeps over the processes of ``group``.

        For data-parallel training (`torch.nn.parallel.DistributedDataParallel`), where each process
        sees its own equal share of every batch: the moving averages of a running baseline
        (``ScoreFunctionLoss(baseline="mean")``) and of NVIL's centring and normalization then fold in the
        statistics of the whole batch, as in one process, instead of diverging process by process.
        Estimators that keep no statistics are unaffected. Call it on every process, after
        ``torch.distributed.init_process_group``; every process must then call the loss equally often.

        Args:
            group: a ``torch.distributed`` process group (default: the whole world).

        Returns:
            ``self``.
        """
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(f"{type(self).__name__}.synchronize_statistics: torch.distributed is not initialized; "
                               "call torch.distributed.init_process_group first (torchrun sets up its environment).")
        self._statistics_group = group if group is not None else dist.group.WORLD
        return self

    def _batch_moments(self, values: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, variance)`` of every entry of ``values`` (detached 0-d tensors): over this process's batch, or
        under `synchronize_statistics`, over the whole batch of all processes (equal shares)."""
        values = values.detach()
        mean, variance = values.mean(), values.var(unbiased=False)
        if self._statistics_group is None:
            return mean, variance
        import torch.distributed as dist

        # Each process's (mean, variance) of its equal share; the whole batch's variance is the mean of the
        # shares' variances plus the variance of their means, taken about the mean (not as E[m^2] - E[m]^2,
        # which cancels catastrophically when the mean dwarfs the spread).
        local = torch.stack([mean, variance])
        shares = [torch.empty_like(local) for _ in range(dist.get_world_size(self._statistics_group))]
        dist.all_gather(shares, local, group=self._statistics_group)
        means, variances = torch.stack(shares).unbind(1)
        whole_mean = means.mean()
        return whole_mean, variances.mean() + (means - whole_mean).pow(2).mean()

    # --------------------------------------------------------------- state
    @outside_compiled_graphs  # host-side bookkeeping: no guard on the list's length in a compiled graph
    def _record(self, objective: Tensor, checked: bool = True) -> None:
        if self.validate and not checked and self.log_q_ is not None:  # a compiled call: check its last draw now
            check_finite(self.log_q_, f"{type(self.inf_net).__name__}.log_prob")
            check_finite(self.log_p_, f"{type(self.gen_model).__name__}.log_prob")
        self._pending.append(objective)
        if len(self._pending) >= _HISTORY_FLUSH_EVERY:
            self._flush_history()

    def _flush_history(self) -> None:
        if self._pending:
            self._history.extend(torch.stack(self._pending).tolist())
            self._pending.clear()

    def settings(self) -> dict[str, Any]:
        """The estimator's configuration: the loss class, K, and (in subclasses) its options.

        Saved in ``state_dict()``; loading a state saved by a loss with other settings is refused.
        """
        return {"loss": type(self).__name__, "n_samples": self.n_samples}

    def get_extra_state(self) -> dict[str, Any]:
        """Non-tensor state saved in ``state_dict()``: the loss history, and the settings it was trained with."""
        return {"loss_history": list(self.loss_history_), "settings": self.settings()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restores what `get_extra_state` saved.

        Raises:
            ValueError: if the state was saved by a loss with other `settings` (naming each that differs).
        """
        saved, current = state.get("settings"), self.settings()
        if saved is not None and saved != current:
            differing = [f"{key}: saved {saved.get(key)!r}, this loss {current.get(key)!r}"
                         for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)]
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state was saved by a loss with other "
                             f"settings ({'; '.join(differing)}). Build the loss with the saved settings to load it.")
        self._pending.clear()
        self._history = [float(value) for value in state["loss_history"]]

    def __getstate__(self) -> dict[str, Any]:
        # A deep copy (or a pickle) starts without the per-call state; the next call recomputes it.
        state = state_without_call_state(self, ("log_p_", "log_q_", "_device_reference"))
        state["_statistics_group"] = None  # a process group belongs to its process
        return state

    def extra_repr(self) -> str:
        return f"n_samples={self.n_samples}"
