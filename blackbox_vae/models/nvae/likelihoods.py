r"""The discretized logistic mixture likelihood for 8-bit images (Salimans et al. 2017, PixelCNN++; NVAE).

Images are ``[C, H, W]`` with values on the 256-level grid $k/255$ in [0, 1]; internally a level is the point
$y = 2k/255 - 1$ of [-1, 1], and owns the bin $[y - 1/255, y + 1/255]$ (width $2/255$), the two edge bins
stretching to $\mp\infty$. Each pixel has its own mixture of $M$ components; within component $m$, channel $c$
is a discretized logistic with scale $s_{mc}$ and a mean that depends linearly on the pixel's earlier channels,

$$
\mu_{mc}(y) = \mu_{mc} + \sum_{j < c} a_{mcj}\, y_j, \qquad
p(x) = \prod_{h, w} \sum_m \pi_m \prod_c \big(F_{mc}(y_c + 1/255) - F_{mc}(y_c - 1/255)\big),
$$

with $F_{mc}$ the logistic CDF of mean $\mu_{mc}(y)$ and scale $s_{mc}$, $F(-\infty) = 0$ below level 0 and
$F(+\infty) = 1$ above level 255. The coefficients $a_{mcj}$ (PixelCNN++'s channel dependence; for RGB,
green on red and blue on red and green) are stored for the pairs $(c, j)$, $j < c$, in row-major order of the
strictly lower triangle: (1, 0), (2, 0), (2, 1), (3, 0), ... -- for RGB exactly PixelCNN++'s three.

References:
    Salimans, Karpathy, Chen & Kingma (2017). PixelCNN++: improving the PixelCNN with discretized logistic
    mixture likelihood and other modifications. ICLR.
    Vahdat & Kautz (2020). NVAE: a deep hierarchical variational autoencoder. NeurIPS.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Categorical, Distribution, constraints

__all__ = ["DiscretizedLogisticMixture", "logistic_mixture_parameters", "logistic_mixture_channels"]

_LEVELS = 255  # the largest level k of an 8-bit image
_BIN_WIDTH = 2.0 / _LEVELS  # a level's bin on the [-1, 1] scale
# PixelCNN++ and NVAE clamp log-scales at -7: 1/scale <= e^7 ~ 1100 keeps the sigmoids' arguments and the
# gradients to the means bounded. A bin is then 8.6 scales wide and a centred component already puts 97% of its
# mass in it, so a smaller scale would gain almost no likelihood, only exploding gradients.
_MIN_LOG_SCALE = -7.0
_GRID_TOLERANCE = 1e-2  # in levels: how far from k/255 a value may lie and still count as level k


class _EightBitImages(constraints.Constraint):
    """Images ``[..., C, H, W]`` whose values are k/255 for integers 0 <= k <= 255 (up to float rounding)."""

    is_discrete = True
    event_dim = 3

    def check(self, value: Tensor) -> Tensor:
        levels = value * _LEVELS
        on_grid = ((levels - levels.round()).abs() <= _GRID_TOLERANCE) & (levels >= -_GRID_TOLERANCE) \
            & (levels <= _LEVELS + _GRID_TOLERANCE)
        return on_grid.flatten(-3).all(-1)


def _shape_error(name: str, got: Tensor, expected: str) -> ValueError:
    return ValueError(f"DiscretizedLogisticMixture: `{name}` must have shape {expected}; got {tuple(got.shape)}.")


def _earlier_channels_term(coefficients: Tensor, values: Tensor, channel: int) -> Tensor:
    """sum_{j < c} a_{cj} values_j for c = ``channel``: coefficients ``[..., K, H, W]``, values ``[..., C, H, W]``.

    The pairs (c, 0), ..., (c, c - 1) are consecutive, from index c (c - 1) / 2 (the row-major lower triangle).
    """
    first = channel * (channel - 1) // 2
    return (coefficients[..., first:first + channel, :, :] * values[..., :channel, :, :]).sum(-3)


class DiscretizedLogisticMixture(Distribution):
    r"""Per-pixel mixtures of discretized logistics over 8-bit images ``[C, H, W]`` (PixelCNN++'s likelihood).

    Batch shape ``[*batch]``, event shape ``[C, H, W]``; values are images in [0, 1] on the grid k/255 (the
    module docstring gives the density). The parameters are on the [-1, 1] scale that the levels are mapped to.

    Args:
        mixture_logits: ``[*batch, M, H, W]``, unnormalized log-weights of each pixel's M components.
        means: ``[*batch, M, C, H, W]``, the components' means before the channel dependence (any real; a mean
            outside [-1, 1] moves mass into an edge bin).
        log_scales: ``[*batch, M, C, H, W]``, the logistics' log-scales; clamped from below at -7.
        coefficients: ``[*batch, M, C(C-1)/2, H, W]``, the linear dependence of channel c's mean on the pixel's
            earlier channels, used as given (`logistic_mixture_parameters` squashes raw outputs with tanh
            first, as PixelCNN++ does); pairs in the order (1, 0), (2, 0), (2, 1), ... None (or an empty
            tensor for C = 1): channels independent within a component.
        validate_args: check the parameters (not NaN) and, in `log_prob`, that values lie on the grid;
            default torch's global setting.

    Raises:
        ValueError: when a parameter's shape does not match ``mixture_logits``'s and ``means``'s (the message
            names the argument, the shape got and the shape expected).
    """

    arg_constraints = {"mixture_logits": constraints.real, "means": constraints.real,
                       "log_scales": constraints.real, "coefficients": constraints.real}
    support = _EightBitImages()
    has_rsample = False

    def __init__(self, mixture_logits: Tensor, means: Tensor, log_scales: Tensor,
                 coefficients: Tensor | None = None, validate_args: bool | None = None):
        if mixture_logits.dim() < 3:
            raise _shape_error("mixture_logits", mixture_logits, "[*batch, M, H, W]")
        *batch, n_mixtures, height, width = mixture_logits.shape
        if means.dim() != mixture_logits.dim() + 1 or (*means.shape[:-3], *means.shape[-2:]) != (
                *batch, n_mixtures, height, width):
            raise _shape_error("means", means, f"[*batch, M, C, H, W] = {(*batch, n_mixtures, 'C', height, width)} "
                                               "to match `mixture_logits`")
        channels = means.shape[-3]
        if log_scales.shape != means.shape:
            raise _shape_error("log_scales", log_scales, f"{tuple(means.shape)}, that of `means`")
        n_pairs = channels * (channels - 1) // 2
        expected_coefficients = (*batch, n_mixtures, n_pairs, height, width)
        if coefficients is None:
            coefficients = means.new_zeros(expected_coefficients)
        elif coefficients.shape != expected_coefficients:
            raise _shape_error("coefficients", coefficients,
                               f"[*batch, M, C(C-1)/2, H, W] = {expected_coefficients} for C = {channels}")
        self.mixture_logits, self.means, self.log_scales, self.coefficients = (
            mixture_logits, means, log_scales, coefficients)
        super().__init__(torch.Size(batch), torch.Size((channels, height, width)), validate_args=validate_args)

    def expand(self, batch_shape: torch.Size | tuple[int, ...],
               _instance: "DiscretizedLogisticMixture | None" = None) -> "DiscretizedLogisticMixture":
        """This distribution with its parameters expanded to ``batch_shape`` (no copies).

        Args:
            batch_shape: the new batch shape, broadcastable from the current one.
            _instance: torch's hook for subclasses (see `torch.distributions.Distribution.expand`).

        Returns:
            A `DiscretizedLogisticMixture` of batch shape ``batch_shape``.
        """
        new = self._get_checked_instance(DiscretizedLogisticMixture, _instance)
        batch_shape = torch.Size(batch_shape)
        for name in ("mixture_logits", "means", "log_scales", "coefficients"):
            parameter = getattr(self, name)
            n_tail = parameter.dim() - len(self.batch_shape)
            setattr(new, name, parameter.expand(*batch_shape, *parameter.shape[-n_tail:]))
        super(DiscretizedLogisticMixture, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _clamped_log_scales(self) -> Tensor:
        return self.log_scales.clamp(min=_MIN_LOG_SCALE)

    def log_prob(self, value: Tensor) -> Tensor:
        """log p(value), summed over the image.

        Every term stays in log space: logsigmoid for the edge bins, and for a middle bin
        ``log(F(y + 1/255) - F(y - 1/255))`` from the exact factorization
        ``sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(b - a))``, which has no cancellation
        anywhere in the tails; where the bin is narrower than sqrt(eps) scales, the midpoint rule
        log pdf + log(2/255) replaces it (exact to rounding there, and safe where 1 - exp(b - a) underflows).

        Args:
            value: images ``[*sample, *batch, C, H, W]`` (any leading shape that broadcasts with the batch
                shape), values k/255 in [0, 1]; each is taken as its nearest level.

        Returns:
            ``[*sample, *batch]`` log-probabilities.

        Raises:
            ValueError: when ``value``'s trailing shape is not the event shape ``[C, H, W]`` or its leading
                shape does not broadcast with the batch shape; with ``validate_args``, also for values off the
                grid or outside [0, 1].
        """
        self._check_value_shape(value)
        if self._validate_args:
            self._validate_sample(value)
        levels = (value.to(self.means.dtype) * _LEVELS).round().clamp(0, _LEVELS)  # [*s, *batch, C, H, W]
        y = levels * _BIN_WIDTH - 1.0
        log_scales = self._clamped_log_scales()  # [*batch, M, C, H, W]
        inverse_scales = torch.exp(-log_scales)
        centered = y.unsqueeze(-4) - self._dependent_means(y)  # [*s, *batch, M, C, H, W]
        above = inverse_scales * (centered + _BIN_WIDTH / 2)  # the bin's upper edge, in scales from the mean
        below = inverse_scales * (centered - _BIN_WIDTH / 2)
        log_cdf_above = F.logsigmoid(above)  # the mass of level 0's bin
        log_survival_below = F.logsigmoid(-below)  # the mass of level 255's bin
        log_width = math.log(_BIN_WIDTH) - log_scales  # log((above - below)), exact: no difference taken
        narrow = log_width < 0.5 * math.log(torch.finfo(log_width.dtype).eps)
        safe_width = torch.where(narrow, torch.ones_like(log_width), log_width.exp())  # no inf gradient unused
        log_middle = log_cdf_above + log_survival_below + torch.log(-torch.expm1(-safe_width))
        middle = inverse_scales * centered
        log_pdf = middle - log_scales - 2.0 * F.softplus(middle)
        log_middle = torch.where(narrow, log_pdf + math.log(_BIN_WIDTH), log_middle)
        level = levels.unsqueeze(-4)
        log_mass = torch.where(level == 0, log_cdf_above, torch.where(level == _LEVELS, log_survival_below,
                                                                       log_middle))  # [*s, *batch, M, C, H, W]
        log_weights = torch.log_softmax(self.mixture_logits, dim=-3)  # [*batch, M, H, W]
        log_pixels = torch.logsumexp(log_weights + log_mass.sum(-3), dim=-3)  # [*s, *batch, H, W]
        return log_pixels.sum((-2, -1))  # [*s, *batch]

    def _check_value_shape(self, value: Tensor) -> None:
        expected = f"[*sample, *batch, C, H, W] with [*batch] = {list(self.batch_shape)} and [C, H, W] = " \
                   f"{list(self.event_shape)}"
        if not isinstance(value, Tensor) or value.dim() < 3 or value.shape[-3:] != self.event_shape:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"DiscretizedLogisticMixture.log_prob: `value` must have shape {expected}; got {got}.")
        try:
            torch.broadcast_shapes(value.shape[:-3], self.batch_shape)
        except RuntimeError:
            raise ValueError(f"DiscretizedLogisticMixture.log_prob: `value` must have shape {expected}; "
                             f"got {tuple(value.shape)}, whose leading shape does not broadcast with the batch "
                             "shape.") from None

    def _dependent_means(self, y: Tensor) -> Tensor:
        """mu_mc + sum_{j<c} a_mcj y_j for every component and channel: y ``[..., C, H, W]`` to
        ``[..., M, C, H, W]``."""
        channels = self.event_shape[0]
        rows, columns = torch.tril_indices(channels, channels, -1, device=y.device)  # the pairs (c, j), row-major
        terms = self.coefficients * y[..., columns, :, :].unsqueeze(-4)  # [..., M, K, H, W]
        to_rows = F.one_hot(rows, channels).to(y.dtype)  # [K, C]: pair k belongs to channel rows[k]
        return self.means + torch.einsum("...khw,kc->...chw", terms, to_rows)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> Tensor:
        """Images drawn from the mixture, on the grid k/255.

        Per pixel: a component from the mixture weights; then channel by channel a logistic draw around the
        mean shifted by the earlier channels' drawn levels (on the [-1, 1] scale), clamped to [-1, 1] and
        rounded to the nearest level -- the discretization that `log_prob` scores.

        Args:
            sample_shape: the leading shape of the draws.

        Returns:
            ``[*sample_shape, *batch, C, H, W]`` values k/255, in the parameters' dtype.
        """
        sample_shape = torch.Size(sample_shape)
        shape = self._extended_shape(sample_shape)  # [*s, *batch, C, H, W]
        component = Categorical(logits=self.mixture_logits.movedim(-3, -1), validate_args=False).sample(
            sample_shape)  # [*s, *batch, H, W]

        def chosen(parameter: Tensor) -> Tensor:  # [*batch, M, X, H, W] -> [*s, *batch, X, H, W]
            expanded = parameter.expand(*sample_shape, *parameter.shape)
            index = component[..., None, None, :, :].expand(*expanded.shape[:-4], 1, *expanded.shape[-3:])
            return expanded.gather(-4, index).squeeze(-4)

        means, scales, coefficients = chosen(self.means), chosen(self._clamped_log_scales()).exp(), chosen(
            self.coefficients)
        uniform = torch.rand(shape, dtype=means.dtype, device=means.device).clamp(min=torch.finfo(means.dtype).tiny)
        logistic = torch.log(uniform) - torch.log1p(-uniform)  # standard logistic draws
        levels = torch.zeros(shape, dtype=means.dtype, device=means.device)
        for c in range(shape[-3]):  # sequential over the few channels: channel c's mean needs the earlier levels
            y = levels * _BIN_WIDTH - 1.0
            x = means[..., c, :, :] + _earlier_channels_term(coefficients, y, c) + scales[..., c, :, :] * logistic[
                ..., c, :, :]
            levels[..., c, :, :] = ((x.clamp(-1.0, 1.0) + 1.0) / _BIN_WIDTH).round()
        return levels / _LEVELS

    @property
    def mean(self) -> Tensor:
        """The mean of the continuous mixture, clamped to the image range and mapped to [0, 1]: ``[*batch, C, H, W]``.

        This is the mean of the un-discretized, unclamped mixture (each component's channel means solved
        through the coefficients: m_c = mu_c + sum_{j<c} a_cj m_j), clamped to [-1, 1] and mapped to [0, 1] --
        an approximation of the discretized distribution's mean. It is accurate when the scales are small
        against [-1, 1] (but at least about a bin) and the means lie well inside it; mass in the edge bins
        makes the two differ.
        """
        component_means = [self.means[..., 0, :, :]]  # a list, not in-place writes: the mean stays differentiable
        for c in range(1, self.event_shape[0]):
            earlier = torch.stack(component_means, dim=-3)  # [*batch, M, c, H, W]
            component_means.append(self.means[..., c, :, :] + _earlier_channels_term(self.coefficients, earlier, c))
        weights = torch.softmax(self.mixture_logits, dim=-3).unsqueeze(-3)  # [*batch, M, 1, H, W]
        mixture_mean = (weights * torch.stack(component_means, dim=-3)).sum(-4)  # [*batch, C, H, W]
        return (mixture_mean.clamp(-1.0, 1.0) + 1.0) / 2.0


def logistic_mixture_channels(n_mixtures: int, channels: int) -> int:
    """The number of decoder output channels the mixture needs: ``M * (1 + 2C + C(C-1)/2)``.

    One logit per component, then per component and image channel a mean and a log-scale, and per component
    the C(C-1)/2 channel coefficients (100 for PixelCNN++'s 10 components over RGB).

    Args:
        n_mixtures: M, the components per pixel.
        channels: C, the image channels.

    Returns:
        n_params.

    Raises:
        ValueError: when ``n_mixtures`` or ``channels`` is not a positive integer.
    """
    for name, number in (("n_mixtures", n_mixtures), ("channels", channels)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValueError(f"logistic_mixture_channels: `{name}` must be a positive integer; got {number!r}.")
    return n_mixtures * (1 + 2 * channels + channels * (channels - 1) // 2)


def logistic_mixture_parameters(output: Tensor, n_mixtures: int,
                                channels: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Splits a decoder's raw output into `DiscretizedLogisticMixture`'s four parameters.

    Channel layout of ``output`` (M = ``n_mixtures``, C = ``channels``, K = C(C-1)/2), in blocks:
    ``[0, M)`` the mixture logits; ``[M, M + MC)`` the means; ``[M + MC, M + 2MC)`` the log-scales;
    ``[M + 2MC, M + 2MC + MK)`` the coefficients. Within each block the component varies slowest
    (component m, channel c at offset ``m * C + c``). The coefficients are squashed with tanh, as in
    PixelCNN++ and NVAE; everything else is returned as is (the distribution clamps the log-scales).

    Args:
        output: ``[*batch, n_params, H, W]`` with ``n_params = logistic_mixture_channels(M, C)``.
        n_mixtures: M.
        channels: C.

    Returns:
        ``(mixture_logits [*batch, M, H, W], means [*batch, M, C, H, W], log_scales [*batch, M, C, H, W],
        coefficients [*batch, M, K, H, W])``, views of ``output`` except the tanh-squashed coefficients.

    Raises:
        ValueError: when ``output`` is not ``[*batch, n_params, H, W]`` with the right n_params, or ``n_mixtures``
            or ``channels`` is not a positive integer.
    """
    n_params = logistic_mixture_channels(n_mixtures, channels)
    if output.dim() < 3 or output.shape[-3] != n_params:
        raise ValueError(f"logistic_mixture_parameters: `output` must have shape [*batch, n_params, H, W] with "
                         f"n_params = {n_mixtures} * (1 + 2 * {channels} + {channels * (channels - 1) // 2}) = "
                         f"{n_params}; got {tuple(output.shape)}.")
    m, mc, n_pairs = n_mixtures, n_mixtures * channels, channels * (channels - 1) // 2
    *batch, _, height, width = output.shape
    logits, means, log_scales, coefficients = output.split([m, mc, mc, m * n_pairs], dim=-3)
    return (logits, means.reshape(*batch, m, channels, height, width),
            log_scales.reshape(*batch, m, channels, height, width),
            torch.tanh(coefficients.reshape(*batch, m, n_pairs, height, width)))
