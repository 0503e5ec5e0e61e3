"""The discretized logistic mixture (blackbox_vae.models.nvae.likelihoods) against exact references.

- Normalization by enumeration, in float64, for ordinary and extreme parameters (scales clamped or huge, means
  outside [-1, 1], near one-hot mixture weights). One channel: the 256 levels. Three channels, whose
  coefficients make channel c's distribution depend on the earlier levels: the sum over all 256^3 images equals
  1 exactly when, for every prefix, summing out the last channel gives the model of the first channels. So the
  checks are: sum_r p1(r) = 1; sum_g p2(r, g) = p1(r) for all 256 r (all 65536 two-channel images); and
  sum_b p3(r, g, b) = p2(r, g) for prefixes at and next to the edges and inside. The exhaustive 256^3 sum is a
  slow test.
- Against an independent reference: PixelCNN++'s loss written out for RGB, channel by channel (pins the
  [0, 1] -> [-1, 1] map, the edge bins and the order of the coefficients).
- float32 against float64 over the same extreme parameters (the log-space formulas and the narrow-bin fallback).
- Samples lie on the grid, and their frequencies match exp(log_prob): Pearson chi-square tests, cells with
  expected count < 5 pooled, each at level 1e-4 / (the number of tests in the function).
- `mean` against the Monte Carlo mean of samples where it is exact (small scales, means well inside [-1, 1]),
  within a Bonferroni critical value of standard errors (false-failure rate 1e-4).
- Finite log-probabilities and gradients at extreme parameters; shape errors that name the argument.

Tolerances of the exact comparisons: every log-mass is a few float64 operations on sigmoid arguments of size
|a| <= 4 * e^7 ~ 4400, so it is off by about 10 * eps * |a| ~ 1e-11 at most; sums of up to 65536 terms add
n * eps ~ 1.5e-11 relative. Exact checks use rtol = atol = 1e-10.
"""

import math

import pytest
import torch
from scipy.stats import chi2

from blackbox_vae.models.nvae.likelihoods import (
    DiscretizedLogisticMixture,
    logistic_mixture_channels,
    logistic_mixture_parameters,
)
from blackbox_vae.testing import critical_value

DTYPE = torch.float64
EXACT = dict(rtol=1e-10, atol=1e-10)
LEVELS = torch.arange(256, dtype=DTYPE)
FALSE_FAILURE_RATE = 1e-4
N_SAMPLES = 20000

# One-channel mixtures of M = 3 components, (mixture logits, means, log-scales), the batch of `one_channel()`.
ONE_CHANNEL = {
    "moderate": ([0.1, -0.5, 1.0], [-0.3, 0.2, 0.7], [-2.0, -3.0, -1.5]),
    "clamped scales, means on bin edges": ([0.0, 0.5, -0.5], [0.0, 2 * 100 / 255 - 1 + 1 / 255, -1 - 1 / 255],
                                           [-30.0, -7.0, -6.5]),
    "huge scales": ([0.2, 0.0, -0.3], [0.0, 5.0, -5.0], [5.0, 15.0, 300.0]),
    "means outside [-1, 1]": ([0.0, 1.0, -1.0], [-3.0, 1.02, 1.5], [-1.0, -4.0, -6.0]),
    "near one-hot weights": ([40.0, -40.0, 0.0], [0.999, -0.999, 0.0], [-5.0, -5.0, 0.0]),
    "random 1": None,
    "random 2": None,
    "random 3": None,
}


def pixels(parameter, image_dims=2):
    """``[..., X]`` per-pixel parameters to ``[..., X, 1, 1]`` (1x1 images)."""
    return torch.as_tensor(parameter, dtype=DTYPE)[(...,) + (None,) * image_dims]


def one_channel(dtype=DTYPE):
    """The ONE_CHANNEL cases as one distribution of batch shape [len(ONE_CHANNEL)] over 1x1 images."""
    generator = torch.Generator().manual_seed(1)
    rows = []
    for values in ONE_CHANNEL.values():
        if values is None:  # means in [-4, 4], log-scales in [-9, 4]: clamped, ordinary and wide
            values = (3 * torch.randn(3, generator=generator, dtype=DTYPE),
                      8 * torch.rand(3, generator=generator, dtype=DTYPE) - 4,
                      13 * torch.rand(3, generator=generator, dtype=DTYPE) - 9)
        rows.append([torch.as_tensor(v, dtype=DTYPE) for v in values])
    logits, means, log_scales = (torch.stack(column) for column in zip(*rows))  # [B, 3] each
    return DiscretizedLogisticMixture(pixels(logits).to(dtype), pixels(means[..., None]).to(dtype),
                                      pixels(log_scales[..., None]).to(dtype))


def three_channels():
    """An RGB mixture over 1x1 images with extreme parameters and strong channel coefficients (1 / 3 / 2 / 3)."""
    logits = torch.tensor([0.3, -1.0, 0.5], dtype=DTYPE)
    means = torch.tensor([[0.2, -1.3, 0.6], [1.02, 0.4, -0.2], [-0.5, 0.0, 0.9]], dtype=DTYPE)
    log_scales = torch.tensor([[-9.0, -3.0, -6.5], [-2.0, 2.0, -4.0], [-5.0, -7.0, 0.5]], dtype=DTYPE)
    coefficients = torch.tensor([[0.99, -0.99, 0.5], [-0.7, 0.3, 0.99], [0.2, -0.9, -0.4]], dtype=DTYPE)
    return pixels(logits), pixels(means), pixels(log_scales), pixels(coefficients)


def images(*levels):
    """Images ``[..., C, 1, 1]`` from the levels of each channel (broadcast)."""
    levels = torch.broadcast_tensors(*(torch.as_tensor(level, dtype=DTYPE) for level in levels))
    return (torch.stack(levels, dim=-1) / 255)[..., None, None]


def chi_square_p_value(observed, expected):
    """Pearson's chi-square p-value; cells with expected count < 5 are pooled into one cell, itself pooled into
    the smallest other cell when its expected count is still < 5."""
    small = expected < 5
    observed_cells, expected_cells = observed[~small].tolist(), expected[~small].tolist()
    pooled_observed, pooled_expected = observed[small].sum().item(), expected[small].sum().item()
    if pooled_expected >= 5:
        observed_cells.append(pooled_observed)
        expected_cells.append(pooled_expected)
    elif small.any():
        smallest = min(range(len(expected_cells)), key=expected_cells.__getitem__)
        observed_cells[smallest] += pooled_observed
        expected_cells[smallest] += pooled_expected
    statistic = sum((o - e) ** 2 / e for o, e in zip(observed_cells, expected_cells))
    return chi2.sf(statistic, len(expected_cells) - 1)


# ----------------------------------------------------------------------------------------------- normalization
def test_one_channel_sums_to_one():
    distribution = one_channel()
    probabilities = distribution.log_prob(images(LEVELS[:, None])).exp()  # [256, B]
    torch.testing.assert_close(probabilities.sum(0), torch.ones(len(ONE_CHANNEL), dtype=DTYPE), **EXACT)


def test_three_channels_marginalize_channel_by_channel():
    logits, means, log_scales, coefficients = three_channels()
    p1 = DiscretizedLogisticMixture(logits, means[:, :1], log_scales[:, :1])
    p2 = DiscretizedLogisticMixture(logits, means[:, :2], log_scales[:, :2], coefficients[:, :1])
    p3 = DiscretizedLogisticMixture(logits, means, log_scales, coefficients)
    log_p1 = p1.log_prob(images(LEVELS))  # [256]
    log_p2 = p2.log_prob(images(LEVELS[:, None], LEVELS))  # [256 r, 256 g]
    torch.testing.assert_close(log_p1.exp().sum(), torch.tensor(1.0, dtype=DTYPE), **EXACT)
    torch.testing.assert_close(torch.logsumexp(log_p2, dim=1), log_p1, **EXACT)
    prefixes = torch.tensor([0, 1, 2, 60, 127, 128, 200, 253, 254, 255], dtype=DTYPE)
    log_p3 = p3.log_prob(images(prefixes[:, None, None], prefixes[:, None], LEVELS))  # [10 r, 10 g, 256 b]
    prefix = prefixes.long()
    torch.testing.assert_close(torch.logsumexp(log_p3, dim=2), log_p2[prefix[:, None], prefix], **EXACT)


@pytest.mark.slow  # 2^24 images: about two minutes on two busy cores
def test_three_channels_sum_to_one_exhaustively():
    distribution = DiscretizedLogisticMixture(*three_channels())
    total = torch.zeros((), dtype=DTYPE)
    for red in range(256):
        total += distribution.log_prob(images(torch.tensor(float(red), dtype=DTYPE), LEVELS[:, None],
                                              LEVELS)).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=DTYPE), **EXACT)


# ------------------------------------------------------------------------------------------ reference values
def pixelcnnpp_log_prob(x, logits, means, log_scales, coefficients):
    """PixelCNN++'s discretized_mix_logistic_loss, negated, for RGB, written out channel by channel.

    x ``[N, 3, H, W]`` in [0, 1]; logits ``[M, H, W]``; means, log_scales, coefficients ``[M, 3, H, W]``.
    Returns ``[N]``. Each bin's mass is the difference of the CDFs on the mean's far side, where it does not
    cancel (accurate in float64 for the moderate arguments used here).
    """
    x = (2 * x - 1).unsqueeze(1)  # [N, 1, 3, H, W]
    r, g, b = x[:, :, 0], x[:, :, 1], x[:, :, 2]  # [N, 1, H, W]
    channel_means = [means[:, 0], means[:, 1] + coefficients[:, 0] * r,
                     means[:, 2] + coefficients[:, 1] * r + coefficients[:, 2] * g]
    log_scales = log_scales.clamp(min=-7.0)
    mass = 1.0
    for c, value in enumerate((r, g, b)):
        inverse_scale = torch.exp(-log_scales[:, c])
        plus, minus = inverse_scale * (value - channel_means[c] + 1 / 255), inverse_scale * (
            value - channel_means[c] - 1 / 255)
        middle = torch.where(value > channel_means[c], torch.sigmoid(-minus) - torch.sigmoid(-plus),
                             torch.sigmoid(plus) - torch.sigmoid(minus))
        mass = mass * torch.where(value < -0.999, torch.sigmoid(plus),
                                  torch.where(value > 0.999, torch.sigmoid(-minus), middle))
    return torch.log((torch.softmax(logits, 0) * mass).sum(1)).sum((-2, -1))


def test_rgb_matches_pixelcnnpp():
    generator = torch.Generator().manual_seed(2)
    m, height, width = 4, 2, 3

    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand(*shape, generator=generator, dtype=DTYPE)

    logits = 2 * torch.randn(m, height, width, generator=generator, dtype=DTYPE)
    means, log_scales = uniform(-1.2, 1.2, m, 3, height, width), uniform(-5.0, 0.0, m, 3, height, width)
    coefficients = torch.tanh(2 * torch.randn(m, 3, height, width, generator=generator, dtype=DTYPE))
    levels = torch.randint(0, 256, (500, 3, height, width), generator=generator).to(DTYPE)
    levels[:50] = 0.0  # the edge bins, alone and with every other level
    levels[50:100] = 255.0
    levels[100:200, 1] = 0.0
    levels[200:300, 2] = 255.0
    x = levels / 255
    distribution = DiscretizedLogisticMixture(logits, means, log_scales, coefficients)
    torch.testing.assert_close(distribution.log_prob(x), pixelcnnpp_log_prob(x, logits, means, log_scales,
                                                                              coefficients), **EXACT)


def test_float32_agrees_with_float64():
    """The same (float32) parameters in both precisions. float32 rounds the level's position y, the means and the
    products, so the sigmoid arguments (y - mu +- 1/255) / s carry an absolute error of a few eps_32 (2 + |mu|) / s;
    a log-mass moves by at most as much (its derivative in the argument is within [-1, 1]), and the log-space
    sums add a few eps_32 |log p|. The test allows 8 eps_32 (1 + |log p| + max over components of (2 + |mu|) / s)."""
    values = images(LEVELS[:, None])
    single = one_channel(torch.float32)
    exact = DiscretizedLogisticMixture(single.mixture_logits.double(), single.means.double(),
                                       single.log_scales.double()).log_prob(values)  # [256, B]
    argument_scale = ((2 + single.means.double().abs())
                      / single.log_scales.double().clamp(min=-7).exp()).flatten(1).amax(1)  # [B]
    tolerance = 8 * torch.finfo(torch.float32).eps * (1 + exact.abs() + argument_scale)
    error = (single.log_prob(values.float()).double() - exact).abs()
    assert (error <= tolerance).all(), (error / tolerance).max()


def test_log_scales_below_minus_seven_act_as_minus_seven():
    logits, means, log_scales, coefficients = three_channels()
    values = images(LEVELS[:, None], 128.0, LEVELS[::5])
    lowered = log_scales.where(log_scales > -7, torch.full_like(log_scales, -7.0))
    torch.testing.assert_close(DiscretizedLogisticMixture(logits, means, log_scales, coefficients).log_prob(values),
                               DiscretizedLogisticMixture(logits, means, lowered, coefficients).log_prob(values),
                               rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_and_gradient_are_finite_at_extremes(dtype):
    generator = torch.Generator().manual_seed(3)
    m, height, width = 5, 4, 4
    means = (20 * torch.rand(m, 3, height, width, generator=generator) - 10).to(dtype)
    choices = torch.tensor([-50.0, -7.0, -3.0, 0.0, 15.0, 80.0 if dtype == torch.float32 else 600.0])
    log_scales = choices[torch.randint(0, len(choices), (m, 3, height, width), generator=generator)].to(dtype)
    coefficients = torch.tensor([-1.0, 1.0])[torch.randint(0, 2, (m, 3, height, width), generator=generator)]
    logits = (50 * torch.randn(m, height, width, generator=generator)).to(dtype)
    parameters = [p.to(dtype).requires_grad_() for p in (logits, means, log_scales, coefficients)]
    levels = torch.tensor([0.0, 1.0, 127.0, 254.0, 255.0])
    x = levels[torch.randint(0, 5, (16, 3, height, width), generator=generator)].to(dtype) / 255
    log_p = DiscretizedLogisticMixture(*parameters).log_prob(x)
    assert torch.isfinite(log_p).all() and (log_p <= 0).all()
    for name, gradient in zip(["logits", "means", "log_scales", "coefficients"],
                              torch.autograd.grad(log_p.sum(), parameters)):
        assert torch.isfinite(gradient).all(), name


# ----------------------------------------------------------------------------------------------------- sampling
def test_samples_lie_on_the_grid_with_the_documented_shape():
    distribution = one_channel()
    x = distribution.sample((7,))
    assert x.shape == (7, len(ONE_CHANNEL), 1, 1, 1) and x.dtype == DTYPE
    rgb = DiscretizedLogisticMixture(*three_channels()).expand((2, 3))
    for draws in (x, rgb.sample((4,))):
        assert ((draws >= 0) & (draws <= 1)).all()
        assert torch.equal(draws * 255, (draws * 255).round())
    assert rgb.sample((4,)).shape == (4, 2, 3, 3, 1, 1) and rgb.sample().shape == (2, 3, 3, 1, 1)


def test_one_channel_frequencies_match_log_prob():
    distribution = one_channel()
    draws = (distribution.sample((N_SAMPLES,)) * 255).round().long().reshape(N_SAMPLES, -1)  # [N, B]
    expected = N_SAMPLES * distribution.log_prob(images(LEVELS[:, None])).exp()  # [256, B]
    for case, name in enumerate(ONE_CHANNEL):
        observed = torch.bincount(draws[:, case], minlength=256).to(DTYPE)
        p_value = chi_square_p_value(observed, expected[:, case])
        assert p_value > FALSE_FAILURE_RATE / len(ONE_CHANNEL), f"{name}: p = {p_value:.3g}"


def test_rgb_frequencies_match_log_prob():
    """Three pixels with concentrated, channel-dependent components (one at the top edge); in the third, green and
    blue have the clamped scale e^-7 (a ninth of a bin) and coefficients +-0.99, so they follow the earlier
    channels' drawn levels (not the continuous draws) closely. Per pixel: the cells (r, g, b) seen in an
    independent pilot sample, the rest pooled."""
    logits, means, log_scales, coefficients = three_channels()
    log_scales = log_scales.clamp(-5.5, -4.5)  # a few levels per channel: cells with expected counts >= 5
    pixel_2 = (logits.flip(0), means.flip(1) * 0.8, log_scales.flip(1), -coefficients)
    pixel_3 = (logits, means * 0.5, torch.cat([torch.full_like(log_scales[:, :1], -4.0),
                                                torch.full_like(log_scales[:, 1:], -7.0)], dim=1),
               pixels([[0.99, -0.99, 0.99], [-0.99, 0.99, 0.99], [0.99, 0.99, -0.99]]))
    logits, means, log_scales, coefficients = (torch.cat(p, dim=-1) for p in zip(
        (logits, means, log_scales, coefficients), pixel_2, pixel_3))  # 1x3 images
    distribution = DiscretizedLogisticMixture(logits, means, log_scales, coefficients)

    def cells(x):  # [N, 3, 1, 3] -> [N, 3] cell numbers r * 256^2 + g * 256 + b, per pixel
        levels = (x * 255).round().long()
        return levels[:, 0, 0] * 65536 + levels[:, 1, 0] * 256 + levels[:, 2, 0]

    pilot, draws = cells(distribution.sample((N_SAMPLES,))), cells(distribution.sample((N_SAMPLES,)))
    for pixel in range(3):
        support = pilot[:, pixel].unique()  # [S]
        single = DiscretizedLogisticMixture(*(p[..., pixel:pixel + 1] for p in (logits, means, log_scales,
                                                                               coefficients)))
        cell_images = images(support // 65536, support // 256 % 256, support % 256)
        expected = N_SAMPLES * single.log_prob(cell_images).exp()  # [S]
        observed = (draws[:, pixel, None] == support).sum(0).to(DTYPE)
        observed = torch.cat([observed, torch.tensor([N_SAMPLES - observed.sum()], dtype=DTYPE)])
        expected = torch.cat([expected, (N_SAMPLES - expected.sum()).reshape(1)])  # the cells no pilot saw
        p_value = chi_square_p_value(observed, expected)
        assert p_value > FALSE_FAILURE_RATE / 3, f"pixel {pixel}: p = {p_value:.3g}"


def test_mean_is_the_sample_mean_where_it_is_exact():
    """Scales e^-4.5..e^-4 (2.3 to 3.5 bins: the rounding's bias is below e^-40) and dependent means within
    +-0.7, at least 16 scales from the edges (tail mass below e^-16): the mean is exact to far below the
    standard error."""
    generator = torch.Generator().manual_seed(4)
    m, height, width = 3, 2, 2

    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand(*shape, generator=generator, dtype=DTYPE)

    distribution = DiscretizedLogisticMixture(torch.randn(m, height, width, generator=generator, dtype=DTYPE),
                                              uniform(-0.3, 0.3, m, 3, height, width),
                                              uniform(-4.5, -4.0, m, 3, height, width),
                                              uniform(-0.4, 0.4, m, 3, height, width))
    x = distribution.sample((N_SAMPLES,))  # [N, 3, 2, 2]
    standard_error = x.std(0) / math.sqrt(N_SAMPLES)
    z = (x.mean(0) - distribution.mean) / standard_error
    assert z.abs().max() < critical_value(FALSE_FAILURE_RATE, z.numel(), N_SAMPLES), z


def test_mean_is_clamped_and_weighted():
    logits = pixels([0.0, math.log(3.0)])  # weights 1/4, 3/4
    means = pixels([[1.5], [-0.2]])
    distribution = DiscretizedLogisticMixture(logits, means, torch.full_like(means, -5.0))
    torch.testing.assert_close(distribution.mean.squeeze(), torch.tensor((0.25 * 1.5 + 0.75 * -0.2 + 1) / 2,
                                                                         dtype=DTYPE))
    outside = DiscretizedLogisticMixture(logits[:1], means[:1], torch.full_like(means[:1], -5.0))
    assert outside.mean.item() == 1.0


# ------------------------------------------------------------------------------------------ parameters, shapes
def test_parameters_from_a_decoder_output():
    assert logistic_mixture_channels(10, 3) == 100  # PixelCNN++'s 10 components over RGB
    assert logistic_mixture_channels(5, 1) == 15
    m, c, k = 2, 3, 3
    blocks = [torch.randn(4, n, 2, 5) for n in (m, m * c, m * c, m * k)]
    logits, means, log_scales, coefficients = logistic_mixture_parameters(torch.cat(blocks, 1), m, c)
    assert torch.equal(logits, blocks[0])
    assert torch.equal(means, blocks[1].reshape(4, m, c, 2, 5)) and means[0, 1, 2, 0, 0] == blocks[1][0, 5, 0, 0]
    assert torch.equal(log_scales, blocks[2].reshape(4, m, c, 2, 5))
    assert torch.equal(coefficients, torch.tanh(blocks[3].reshape(4, m, k, 2, 5)))
    distribution = DiscretizedLogisticMixture(logits, means, log_scales, coefficients)
    assert distribution.batch_shape == (4,) and distribution.event_shape == (3, 2, 5)
    assert distribution.log_prob(torch.rand(4, 3, 2, 5).mul(255).round() / 255).shape == (4,)
    single = DiscretizedLogisticMixture(*logistic_mixture_parameters(torch.randn(1, 3, 1, 1), 1, 1))
    assert single.coefficients.shape == (1, 1, 0, 1, 1)


def test_bad_shapes_name_the_argument():
    logits, means, log_scales, coefficients = (torch.zeros(2, 3, 4, 5), torch.zeros(2, 3, 3, 4, 5),
                                               torch.zeros(2, 3, 3, 4, 5), torch.zeros(2, 3, 3, 4, 5))
    with pytest.raises(ValueError, match=r"`mixture_logits` must have shape \[\*batch, M, H, W\]; got \(3, 4\)"):
        DiscretizedLogisticMixture(torch.zeros(3, 4), means, log_scales)
    with pytest.raises(ValueError, match=r"`means` must have shape .*\(2, 3, 'C', 4, 5\).*; got \(2, 2, 3, 4, 5\)"):
        DiscretizedLogisticMixture(logits, torch.zeros(2, 2, 3, 4, 5), log_scales)
    with pytest.raises(ValueError, match=r"`log_scales` must have shape \(2, 3, 3, 4, 5\).*; got \(2, 3, 1, 4, 5\)"):
        DiscretizedLogisticMixture(logits, means, torch.zeros(2, 3, 1, 4, 5))
    with pytest.raises(ValueError, match=r"`coefficients` must have shape .*\(2, 3, 3, 4, 5\) for C = 3; "
                                         r"got \(2, 3, 2, 4, 5\)"):
        DiscretizedLogisticMixture(logits, means, log_scales, torch.zeros(2, 3, 2, 4, 5))
    distribution = DiscretizedLogisticMixture(logits, means, log_scales, coefficients)
    with pytest.raises(ValueError, match=r"`value` must have shape .*\[3, 4, 5\]; got \(2, 4, 5\)"):
        distribution.log_prob(torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match=r"`value` must have shape .*got \(3, 3, 4, 5\), whose leading shape"):
        distribution.log_prob(torch.zeros(3, 3, 4, 5))
    with pytest.raises(ValueError, match=r"`output` must have shape \[\*batch, n_params, H, W\] with n_params = "
                                         r"2 \* \(1 \+ 2 \* 3 \+ 3\) = 20; got \(1, 19, 4, 5\)"):
        logistic_mixture_parameters(torch.zeros(1, 19, 4, 5), 2, 3)
    with pytest.raises(ValueError, match="`n_mixtures` must be a positive integer; got 0"):
        logistic_mixture_channels(0, 3)


def test_validation_of_values_and_parameters():
    logits, means, log_scales, _ = three_channels()
    distribution = DiscretizedLogisticMixture(logits, means, log_scales, validate_args=True)
    assert distribution.log_prob(images(torch.tensor(3.0), 0.0, 255.0)).isfinite()
    for bad in (images(torch.tensor(3.5), 0.0, 255.0), images(torch.tensor(3.0), 0.0, 256.0), torch.full(
            (3, 1, 1), 2.0)):  # off the grid; above 1; on the 0..255 scale
        with pytest.raises(ValueError, match="within the support"):
            distribution.log_prob(bad)
    with pytest.raises(ValueError, match="means"):
        DiscretizedLogisticMixture(logits, means * float("nan"), log_scales, validate_args=True)
