"""REBAR and RELAX: unbiased score-function gradients for Bernoulli latents with a control variate through the
continuous relaxation, whose own parameters are trained to minimize the gradient's variance."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn.functional import binary_cross_entropy_with_logits, logsigmoid

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae._call_state import set_call_state
from blackbox_vae.losses._layers import BERNOULLI
from blackbox_vae.losses._one_layer import check_declared_layer, one_layer_logits
from blackbox_vae.losses.base import Loss
from blackbox_vae.relaxed import check_temperature

__all__ = ["REBARLoss", "RELAXLoss", "RELAXControlVariate"]


def _logit(u: Tensor) -> Tensor:
    return torch.log(u) - torch.log1p(-u)


class _RelaxedControlVariateLoss(Loss):
    r"""The estimator both share (Tucker et al. 2017, Grathwohl et al. 2018), for one Bernoulli layer with logits a.

    With u, v ~ U(0, 1): z = a + logit(u) (a logistic relaxation; b = 1[z > 0] is an exact draw from q),
    z~ ~ p(z | b) by the conditional reparameterization of v, and a control variate c(z) differentiable in z,

    $$
    \hat g_a = \big(f(b) - c(\tilde z)\big)\,\nabla_a \log q(b) + \nabla_a c(z) - \nabla_a c(\tilde z),
    $$

    unbiased for the gradient of E_q[f(b)] with respect to a, for any c. Here f = log p(x, b) - log q(b|x), as
    for the score function (f's own dependence on q vanishes in expectation), and ĝ backpropagates from
    the logits into q's parameters; p's gradient is that of log p(x, b).

    The control variate's parameters (eta, the temperature, RELAX's network) get the gradient of
    mean_{n,k} ||ĝ_a||^2, the squared estimate of the gradient with respect to **q's logits a** (summed over
    units, averaged over data points and samples): as E[ĝ_a] does not depend on c, this is a single-sample
    estimate of the gradient of the variance of ĝ_a. The papers and their reference code minimize instead the
    variance of the gradient with respect to **q's network parameters φ**, ĝ_φ = (∂a/∂φ)^T ĝ_a. We use the
    logits' because it needs no second backward pass through q's network at every step (ĝ_a is already at
    hand where the estimator forms it), and it does not depend on how q's network is built; the two
    objectives share their minimizer when c can zero the estimate's noise, and differ by the weighting
    (∂a/∂φ)(∂a/∂φ)^T otherwise. The estimator is unbiased for every c either way.

    The relaxed f at s = sigmoid(z / temperature) is log p(x, s) - log q(s|x), the Bernoulli log-densities
    evaluated at values in (0, 1): the generative model must accept such latents (the library's SBNs do).
    """

    needs = ("bernoulli_logits",)
    needs_differentiable_gen_model = True

    def __init__(self, inf_net: InfNet, gen_model: GenModel, n_samples: int = 1, *, temperature: float = 0.5,
                 validate: bool = True):
        super().__init__(inf_net, gen_model, n_samples, validate=validate)
        check_declared_layer(type(self).__name__, inf_net, gen_model, (BERNOULLI,))
        temperature = check_temperature(type(self).__name__, temperature)
        # the learned relaxation: log temperature and the REBAR term's scale eta (both the papers' parameters)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.eta = nn.Parameter(torch.tensor(1.0))

    def control_variate_parameters(self) -> list[nn.Parameter]:
        """The parameters the loss trains to reduce the gradient's variance (give them their own optimizer, or a
        parameter group, to set their learning rate)."""
        models = {id(p) for p in (*self.inf_net.parameters(), *self.gen_model.parameters())}
        return [p for p in self.parameters() if id(p) not in models]

    def _relaxed_elbo(self, data: Tensor, logits: Tensor, z: Tensor, pack) -> Tensor:
        """f at the relaxed latents sigmoid(z / temperature): ``[batch, K]``, differentiable in z and the logits."""
        relaxed = torch.sigmoid(z / self.log_temperature.exp())
        log_q = -binary_cross_entropy_with_logits(logits, relaxed, reduction="none").flatten(2).sum(2)
        return self.gen_model(data, pack(relaxed)).log_prob(data, pack(relaxed)) - log_q

    def _control(self, data: Tensor, logits: Tensor, z: Tensor, pack) -> Tensor:
        """c(z): ``[batch, K]`` (``pack`` puts a layer into the latents' structure)."""
        return self.eta * self._relaxed_elbo(data, logits, z, pack)

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        name = type(self).__name__
        inf_net = self.inf_net(data)
        self._check_hook(inf_net, "bernoulli_logits")  # again after forward: a DistributionInfNet's distribution decides
        batch, k = data.shape[0], self.n_samples
        logits, _, one_tuple = one_layer_logits(name, inf_net, "bernoulli_logits", gen_model=self.gen_model,
                                                check_values=not self._draws_checked)  # [batch, 1, *shape]
        set_call_state(self, "_draws_checked", True)
        pack = (lambda z: (z,)) if one_tuple else (lambda z: z)
        logits = logits.expand(batch, k, *logits.shape[2:])  # one layer: the same logits for every sample
        tiny = torch.finfo(logits.dtype).tiny
        u = torch.rand_like(logits.detach()).clamp(tiny, 1 - 1e-7)
        v = torch.rand_like(logits.detach()).clamp(tiny, 1 - 1e-7)
        z = logits + _logit(u)
        b = (z > 0).to(logits.dtype).detach()
        probs = torch.sigmoid(logits)
        # z~ ~ p(z | b): u given b is uniform on (1 - p, 1) when b = 1 and on (0, 1 - p) when b = 0
        u_given_b = torch.where(b > 0, 1 - probs + v * probs, v * (1 - probs)).clamp(tiny, 1 - 1e-7)
        z_tilde = logits + _logit(u_given_b)

        log_q = (b * logsigmoid(logits) + (1 - b) * logsigmoid(-logits)).flatten(2).sum(2)  # [batch, K]
        log_q = self._checked(log_q, batch, k, f"{type(inf_net).__name__}.bernoulli_logits")
        log_p = self._score(data, pack(b))
        self._keep(log_q, log_p)
        signal = (log_p - log_q).detach()  # f(b)

        control, control_tilde = self._control(data, logits, z, pack), self._control(data, logits, z_tilde, pack)
        for value, where in ((control, "c(z)"), (control_tilde, "c(z~)")):
            if value.shape != (batch, k):
                raise ValueError(f"{name}: the control variate {where} has shape {tuple(value.shape)}; expected "
                                 f"[batch, n_samples] = ({batch}, {k}).")
        pathwise = torch.autograd.grad((control - control_tilde).sum(), logits, create_graph=True)[0]
        score = b - probs.detach()  # d log q(b) / d a
        expand = (batch, k, *([1] * (logits.dim() - 2)))
        gradient = (signal - control_tilde).view(expand) * score + pathwise  # ĝ: [batch, K, *shape]

        variance = gradient.pow(2).flatten(2).sum(2).mean()
        tuned = self.control_variate_parameters()
        variance_gradients = torch.autograd.grad(variance, tuned, allow_unused=True, retain_graph=True)
        variance_surrogate = sum((g.detach() * p).sum() for g, p in zip(variance_gradients, tuned) if g is not None)

        q_surrogate = (gradient.detach() * logits).flatten(2).sum(2).mean(1)  # [batch]
        surrogate = -(q_surrogate + log_p.mean(1)).mean() + variance_surrogate
        return -signal.mean(), surrogate


class REBARLoss(_RelaxedControlVariateLoss):
    r"""REBAR (Tucker et al. 2017): the control variate is the ELBO's integrand at the relaxed latents, scaled.

    c(z) = eta * f(sigmoid(z / temperature)), eta and the temperature learned by the loss to minimize the
    gradient's variance (`control_variate_parameters`). The estimator is unbiased at every eta and temperature.

    Reported objective: the negative ELBO, averaged over the K samples.

    Refusals (REBAR's and RELAX's): a model without `InfNet.bernoulli_logits` is refused when the loss is built
    (a TypeError), and so is one whose `InfNet.layer_kinds` (or `InfNet.layer_order`) declares several layers, or
    a layer that is not Bernoulli (a ValueError); otherwise the first call refuses latents of several layers, and
    a draw whose values are not in {0, 1} (ValueErrors). Each message names the estimators that fit the model.

    Args:
        inf_net: q(z|x) with one layer of Bernoulli latents (a tensor): needs `InfNet.bernoulli_logits`.
        gen_model: p(x, z), accepting relaxed latents in (0, 1).
        n_samples: K independent samples (each with its own control variate).
        temperature: the relaxation's initial temperature, > 0 (learned from there).
        validate: see `Loss`.

    References:
        Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein (2017), REBAR: Low-variance, unbiased gradient
        estimates for discrete latent variable models.
    """


class RELAXControlVariate(nn.Module):
    """A learned control variate r(x, s) for RELAX: an MLP of the data and the relaxed latents s, ``[batch, K]``.

    Args:
        data_dim: D (data ``[batch, D]``).
        latent_dim: H (relaxed latents ``[batch, K, H]``).
        hidden: hidden widths (tanh).
    """

    def __init__(self, data_dim: int, latent_dim: int, hidden: tuple[int, ...] = (100,)):
        super().__init__()
        widths, layers = [data_dim + latent_dim, *hidden], []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.Tanh()]
        self.net = nn.Sequential(*layers, nn.Linear(widths[-1], 1))

    def forward(self, data: Tensor, relaxed: Tensor) -> Tensor:
        """``[batch, K]`` from data ``[batch, D]`` and relaxed latents ``[batch, K, H]``."""
        inputs = torch.cat([data.unsqueeze(1).expand(-1, relaxed.shape[1], -1), relaxed.flatten(2)], dim=2)
        return self.net(inputs).squeeze(-1)


class RELAXLoss(_RelaxedControlVariateLoss):
    r"""RELAX (Grathwohl et al. 2018): REBAR's control variate plus a learned network, c(z) = eta * f(s) + r(x, s).

    s = sigmoid(z / temperature); eta, the temperature and r's parameters are trained by the loss to
    minimize the gradient's variance (`control_variate_parameters`; `loss.parameters()` includes them).
    The estimator is unbiased for any c.

    Reported objective: the negative ELBO, averaged over the K samples.

    Refusals: as `REBARLoss` (one Bernoulli layer).

    Args:
        inf_net: q(z|x) with one layer of Bernoulli latents (a tensor): needs `InfNet.bernoulli_logits`.
        gen_model: p(x, z), accepting relaxed latents in (0, 1).
        n_samples: K independent samples.
        control_variate: r, a module mapping (data ``[batch, *data_shape]``, relaxed latents
            ``[batch, K, *latent_shape]``) to ``[batch, K]``, e.g. `RELAXControlVariate`.
        temperature: the relaxation's initial temperature, > 0.
        validate: see `Loss`.

    References:
        Grathwohl, Choi, Wu, Roeder & Duvenaud (2018), Backpropagation through the void: Optimizing control
        variates for black-box gradient estimation.
    """

    def __init__(self, inf_net: InfNet, gen_model: GenModel, n_samples: int = 1,
                 control_variate: Optional[nn.Module] = None, *, temperature: float = 0.5, validate: bool = True):
        if not isinstance(control_variate, nn.Module):
            raise TypeError(f"RELAXLoss: `control_variate` must be an nn.Module mapping (data, relaxed latents) to "
                            f"[batch, n_samples], e.g. RELAXControlVariate(data_dim, latent_dim); got "
                            f"{type(control_variate).__name__}.")
        super().__init__(inf_net, gen_model, n_samples, temperature=temperature, validate=validate)
        self.control_variate = control_variate

    def _control(self, data: Tensor, logits: Tensor, z: Tensor, pack) -> Tensor:
        relaxed = torch.sigmoid(z / self.log_temperature.exp())
        learned = self.control_variate(data, relaxed)
        if learned.shape != z.shape[:2]:
            raise ValueError(f"RELAXLoss: `control_variate` returned shape {tuple(learned.shape)}; expected "
                             f"[batch, n_samples] = {tuple(z.shape[:2])}.")
        return super()._control(data, logits, z, pack) + learned
