"""Post-hoc samplers: fit/sample round trips, state_dict, the unfitted error, what each density recovers,
and bad input."""

import math

import pytest
import torch
from torch import nn

from blackbox_vae import DistributionInfNet, GenModel
from blackbox_vae.models import (
    CategoricalGenModel,
    CategoricalInfNet,
    DeepSBNGenModel,
    DeepSBNInfNet,
    GaussianMLPGenModel,
    GaussianMLPInfNet,
)
from blackbox_vae.samplers import (
    SAMPLERS,
    AutoregressiveSampler,
    BernoulliMixtureSampler,
    CodeLayout,
    FlowSampler,
    GaussianMixtureSampler,
    MarkovChainSampler,
    NotFittedError,
    PriorSampler,
    TwoStageSampler,
    build_sampler,
)

DATA = torch.bernoulli(torch.full((200, 16), 0.3), generator=torch.Generator().manual_seed(0))
QUICK = {"flow": {"epochs": 3}, "two-stage": {"epochs": 3}, "autoregressive": {"epochs": 3},
         "gmm": {"n_components": 2}, "bernoulli-mixture": {"n_components": 2}, "markov-chain": {"n_steps": 3}}


def gaussian_models():
    return (GaussianMLPGenModel(16, 3, hidden=(8,), likelihood="bernoulli"), GaussianMLPInfNet(16, 3, hidden=(8,)))


def sbn_models():  # tuple latents of two layers
    return DeepSBNGenModel(16, [5, 3]), DeepSBNInfNet(16, [5, 3])


def categorical_models():  # one-hot latents
    return CategoricalGenModel(16, 2, 3, hidden=(8,)), CategoricalInfNet(16, 2, 3, hidden=(8,))


CASES = [(name, models) for name, models in [
    ("prior", gaussian_models), ("gmm", gaussian_models), ("flow", gaussian_models), ("two-stage", gaussian_models),
    ("bernoulli-mixture", sbn_models), ("bernoulli-mixture", categorical_models), ("autoregressive", sbn_models),
    ("autoregressive", categorical_models), ("markov-chain", sbn_models), ("prior", sbn_models)]]
IDS = [f"{name}-{models.__name__.removesuffix('_models')}" for name, models in CASES]


def test_every_sampler_has_a_case():
    assert {name for name, _ in CASES} == set(SAMPLERS)


@pytest.mark.parametrize("name, models", CASES, ids=IDS)
def test_fit_sample_and_state_dict_round_trip(name, models, tmp_path):
    torch.manual_seed(0)
    gen_model, inf_net = models()
    sampler = SAMPLERS[name](gen_model, inf_net, **QUICK.get(name, {}))
    assert sampler.fit(DATA) is sampler
    images = sampler.sample(7, batch_size=3, output_dir=tmp_path / "png")
    assert images.shape == (7, 16) and ((images >= 0) & (images <= 1)).all()
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [f"{i:05d}.png" for i in range(7)] + ["grid.png"]
    twin = SAMPLERS[name](gen_model, inf_net, **QUICK.get(name, {}))
    twin.load_state_dict(sampler.state_dict())
    torch.manual_seed(1)
    expected = sampler.sample(5)
    torch.manual_seed(1)
    torch.testing.assert_close(twin.sample(5), expected)


def test_a_fitted_sampler_round_trips_through_a_file(tmp_path):
    sampler = GaussianMixtureSampler(*gaussian_models(), n_components=2).fit(DATA)
    torch.save(sampler.state_dict(), tmp_path / "sampler.pt")
    twin = GaussianMixtureSampler(sampler.gen_model, sampler.inf_net, n_components=2)
    twin.load_state_dict(torch.load(tmp_path / "sampler.pt", weights_only=True))
    torch.testing.assert_close(twin.means, sampler.means)
    assert twin.layout.dim == 3


@pytest.mark.parametrize("sampler_class", [GaussianMixtureSampler, FlowSampler, TwoStageSampler,
                                           BernoulliMixtureSampler, AutoregressiveSampler])
def test_sampling_before_fit_names_fit(sampler_class):
    gen_model, inf_net = sbn_models() if sampler_class in (BernoulliMixtureSampler, AutoregressiveSampler) \
        else gaussian_models()
    with pytest.raises(NotFittedError, match=rf"{sampler_class.__name__} has not been fitted: call "
                                             rf"`{sampler_class.__name__}.fit\(data\)`"):
        sampler_class(gen_model, inf_net).sample(3)
    assert issubclass(NotFittedError, RuntimeError)


def test_a_chain_started_from_data_needs_data():
    with pytest.raises(NotFittedError, match=r"start='data'\) needs data to start from"):
        MarkovChainSampler(*sbn_models(), start="data").sample(2)


@pytest.mark.parametrize("call, message", [
    (lambda s: s.sample(0), r"`num_samples` must be a positive integer; got 0"),
    (lambda s: s.sample(-2), r"`num_samples` must be a positive integer; got -2"),
    (lambda s: s.sample(2, batch_size=0), r"`batch_size` must be a positive integer; got 0"),
    (lambda s: s.fit(DATA[:0]), r"`data` must be a tensor \[N, \*data_shape\] with N >= 1; got \(0, 16\)"),
    (lambda s: s.fit([1, 2]), r"`data` must be a tensor \[N, \*data_shape\] with N >= 1; got list"),
])
def test_bad_input_names_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call(GaussianMixtureSampler(*gaussian_models(), n_components=2))


@pytest.mark.parametrize("sampler_class", [BernoulliMixtureSampler, AutoregressiveSampler])
def test_discrete_samplers_refuse_real_valued_codes(sampler_class):
    with pytest.raises(ValueError, match=rf"{sampler_class.__name__} models binary or one-hot codes; the codes of "
                                         r"GaussianMLPInfNet are real\. For real-valued codes use "
                                         r"GaussianMixtureSampler"):
        sampler_class(*gaussian_models()).fit(DATA)


def test_continuous_samplers_refuse_discrete_codes():
    with pytest.raises(ValueError, match=r"FlowSampler models real codes; the codes of DeepSBNInfNet are binary"):
        FlowSampler(*sbn_models()).fit(DATA)


def test_options_a_sampler_does_not_take_are_refused():
    with pytest.raises(ValueError, match=r"--components is an option of the gmm and bernoulli-mixture samplers, not "
                                         r"of --sampler flow"):
        build_sampler("flow", *gaussian_models(), components=3)
    with pytest.raises(ValueError, match=r"unknown sampler 'vae'"):
        build_sampler("vae", *gaussian_models())


# ------------------------------------------------------------------------- what the densities recover
class IdentityInfNet(DistributionInfNet):
    """q(z|x) = N(x, 1e-6): the codes are the data themselves, to fit densities to known distributions."""

    def distribution(self, data):
        return torch.distributions.Normal(data, 1e-6)


class IdentityGenModel(GenModel):
    """Decodes z to itself (p(x|z) a point mass at z), so samples are the codes."""

    def __init__(self, dimension):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.dimension = dimension

    def forward(self, data, latents):
        return self

    def log_prob(self, data, latents):
        return torch.zeros(latents.shape[:2])

    def sample(self, n_samples=1):
        z = torch.randn(n_samples, self.dimension)
        return z, z

    def likelihood_mean(self, latents):
        return latents


def known_mixture(n, generator):
    """Codes from 0.3 N((-3, 0), 0.5^2 I) + 0.7 N((3, 2), 1^2 I): ``[n, 2]``."""
    first = torch.rand(n, generator=generator) < 0.3
    codes = torch.randn(n, 2, generator=generator)
    return torch.where(first[:, None], torch.tensor([-3.0, 0.0]) + 0.5 * codes, torch.tensor([3.0, 2.0]) + codes)


def test_the_gaussian_mixture_recovers_a_known_mixture():
    """Weights and means within 5 standard errors of the truth (4000 codes; standard errors of a weight
    sqrt(w(1-w)/n), of a mean sigma/sqrt(n w))."""
    codes = known_mixture(4000, torch.Generator().manual_seed(0))
    sampler = GaussianMixtureSampler(IdentityGenModel(2), IdentityInfNet(), n_components=2).fit(codes)
    order = sampler.means[:, 0].argsort()
    weights, means = sampler.weights[order], sampler.means[order]
    for weight, mean, truth_w, truth_m, sigma in ((weights[0], means[0], 0.3, (-3.0, 0.0), 0.5),
                                                  (weights[1], means[1], 0.7, (3.0, 2.0), 1.0)):
        assert abs(weight - truth_w) < 5 * math.sqrt(truth_w * (1 - truth_w) / 4000)
        assert (mean - torch.tensor(truth_m)).abs().max() < 5 * sigma / math.sqrt(4000 * truth_w)
    samples = sampler.sample(4000)
    assert abs((samples[:, 0] < 0).float().mean() - 0.3) < 5 * math.sqrt(0.21 / 4000)


@pytest.mark.slow  # a long end-to-end run: in `pytest -m slow` (and .ci/run)
def test_the_flow_beats_a_single_gaussian_on_bimodal_codes():
    """Held-out log-likelihood per code: the fitted MAF against the maximum-likelihood Gaussian (whose held-out
    log-likelihood is known in closed form from its fitted mean and covariance)."""
    generator = torch.Generator().manual_seed(1)
    train, held_out = known_mixture(3000, generator), known_mixture(2000, generator)
    flow = FlowSampler(IdentityGenModel(2), IdentityInfNet(), epochs=100, patience=10).fit(train)
    gaussian = torch.distributions.MultivariateNormal(train.mean(0), covariance_matrix=torch.cov(train.T))
    flow_score, gaussian_score = flow.log_prob(held_out).mean().item(), gaussian.log_prob(held_out).mean().item()
    standard_error = (flow.log_prob(held_out) - gaussian.log_prob(held_out)).std().item() / math.sqrt(2000)
    assert flow_score - gaussian_score > 5 * standard_error, (flow_score, gaussian_score)


def test_the_bernoulli_mixture_recovers_known_prototypes():
    """Binary codes from two prototypes with 5% of the bits flipped: EM finds both (weights within 5 s.e.) and
    their bit probabilities (within 0.05 of 0.05 / 0.95), and samples follow the mixture."""
    generator = torch.Generator().manual_seed(2)
    prototypes = torch.tensor([[1.0] * 6 + [0.0] * 6, [0.0] * 6 + [1.0] * 6])
    which = (torch.rand(3000, generator=generator) < 0.4).long()
    flips = (torch.rand(3000, 12, generator=generator) < 0.05).float()
    codes = (prototypes[which] + flips) % 2
    sampler = BernoulliMixtureSampler(IdentityGenModel(12), IdentityInfNet(), n_components=2).fit(codes)
    ones = sampler.log_probs[:, :, 1].exp()  # [C, V]: P(bit = 1)
    first = int(ones[:, 0].argmax())  # the component of the first prototype
    assert abs(sampler.log_weights[first].exp() - 0.6) < 5 * math.sqrt(0.24 / 3000)
    assert (ones[first] - (prototypes[0] * 0.9 + 0.05)).abs().max() < 0.05
    assert (ones[1 - first] - (prototypes[1] * 0.9 + 0.05)).abs().max() < 0.05
    first_bits = sampler.sample(3000)[:, 0]  # P(bit 0 = 1) = 0.6 * 0.95 + 0.4 * 0.05 = 0.59
    assert abs(first_bits.mean() - 0.59) < 5 * math.sqrt(0.59 * 0.41 / 3000)


@pytest.mark.slow  # a long end-to-end run: in `pytest -m slow` (and .ci/run)
def test_the_autoregressive_sampler_learns_a_dependence_a_product_cannot():
    """Codes whose second bit copies the first (each fair): a product of Bernoullis can only give 0.5 nats per
    pair less; the MADE's held-out log-likelihood approaches log 2 per code (-0.693)."""
    generator = torch.Generator().manual_seed(3)
    first = (torch.rand(3000, generator=generator) < 0.5).float()
    codes = torch.stack([first, first], dim=1)
    sampler = AutoregressiveSampler(IdentityGenModel(2), IdentityInfNet(), hidden=(16,), epochs=200,
                                    patience=20).fit(codes)
    assert sampler.log_prob(codes).mean().item() > math.log(0.5) - 0.05  # independent bits would give 2 log 0.5
    samples = sampler.sample(1000)
    assert (samples[:, 0] == samples[:, 1]).float().mean() > 0.95


@pytest.mark.parametrize("sampler_class, codes", [
    (AutoregressiveSampler, torch.bernoulli(torch.full((40, 300), 0.5))), (FlowSampler, torch.randn(40, 70))])
def test_masked_networks_are_as_wide_as_the_code_by_default(sampler_class, codes):
    """Pyro's masked networks need every hidden layer at least as wide as the input: the default widths grow
    with the code (a fixed default broke 400-bit codes), and a narrower choice is refused by name."""
    dimension = codes.shape[1]
    sampler = sampler_class(IdentityGenModel(dimension), IdentityInfNet(), epochs=1).fit(codes)
    assert sampler.sample(3).shape == (3, dimension)
    with pytest.raises(ValueError, match=rf"`hidden` width must be at least .* {dimension}; got hidden=\(64, 64\)"):
        sampler_class(IdentityGenModel(dimension), IdentityInfNet(), hidden=(64, 64), epochs=1).fit(codes)


def test_hierarchical_codes_are_modeled_jointly_and_decoded_whole():
    layout = CodeLayout.of((torch.zeros(4, 5), torch.ones(4, 3)))
    assert layout.dim == 8 and layout.kinds == {"binary"}
    latents = layout.unflatten(torch.arange(16.0).reshape(2, 8))
    assert isinstance(latents, tuple) and latents[0].shape == (2, 5) and latents[1].shape == (2, 3)
    assert layout.cardinalities == [2] * 8
    one_hot = CodeLayout.of(torch.nn.functional.one_hot(torch.tensor([[0, 2], [1, 1]]), 3).float())
    assert one_hot.kinds == {"one-hot"} and one_hot.cardinalities == [3, 3]
    codes = one_hot.flatten(torch.nn.functional.one_hot(torch.tensor([[2, 0]]), 3).float())
    torch.testing.assert_close(one_hot.from_categories(one_hot.to_categories(codes)), codes)
    assert CodeLayout.from_dict(one_hot.to_dict()).cardinalities == [3, 3]


def test_codes_are_posterior_means_for_continuous_latents_and_samples_for_discrete_ones():
    gen_model, inf_net = gaussian_models()
    sampler = PriorSampler(gen_model, inf_net)
    torch.testing.assert_close(sampler.encode(DATA[:5]), inf_net(DATA[:5]).mean())
    sbn_gen, sbn_inf = sbn_models()
    codes = PriorSampler(sbn_gen, sbn_inf).encode(DATA[:5])
    assert set(codes.unique().tolist()) <= {0.0, 1.0} and codes.shape == (5, 8)
    means = PriorSampler(gen_model, inf_net, codes="sample").encode(DATA[:5])
    assert not torch.allclose(means, inf_net(DATA[:5]).mean())


# ------------------------------------------------------------------ the Markov chain's limiting distribution
class ExactPosterior(DistributionInfNet):
    """q(z|x) = p(z|x) of a one-variable `CategoricalGenModel`, by enumerating its categories."""

    def __init__(self, gen_model):
        super().__init__()
        self.gen_model = gen_model

    def distribution(self, data):
        categories = self.gen_model.n_classes
        every_code = torch.eye(categories)[:, None, :].expand(data.shape[0], categories, 1, categories)
        joint = self.gen_model(data, every_code).log_prob(data, every_code)  # [batch, C]: log p(x, z = c)
        return torch.distributions.OneHotCategorical(logits=joint[:, None, :])  # latents [batch, n, 1, C]


def test_the_markov_chain_of_an_exact_posterior_samples_the_model():
    """With q(z|x) = p(z|x) the chain is a Gibbs sampler of p(x, z): from uniform noise its samples follow
    p(x) (enumerated over the 16 images of 4 pixels). A chi-square test of 20000 chains at level 1e-4."""
    from scipy.stats import chi2

    torch.manual_seed(4)
    gen_model = CategoricalGenModel(4, 1, 3, hidden=(6,), learn_prior=True)
    with torch.no_grad():
        gen_model.prior_logits.copy_(torch.tensor([[1.5, 0.0, -1.0]]))
        for parameter in gen_model.decoder.parameters():
            parameter.mul_(4)  # decoders far apart, so that the chain's steps matter
    images = torch.tensor([[(i >> bit) & 1 for bit in range(4)] for i in range(16)], dtype=torch.float)
    codes = torch.eye(3)[:, None, :].expand(16, 3, 1, 3)
    with torch.no_grad():
        exact = gen_model(images, codes).log_prob(images, codes).logsumexp(1).exp()  # [16]: p(x)
    sampler = MarkovChainSampler(gen_model, ExactPosterior(gen_model), n_steps=10, decode="sample")
    samples = sampler.sample(20000)
    counts = torch.bincount((samples * torch.tensor([1, 2, 4, 8])).sum(1).long(), minlength=16).double()
    expected = 20000 * exact.double()
    statistic = ((counts - expected) ** 2 / expected).sum().item()
    assert statistic < chi2.ppf(1 - 1e-4, df=15), (counts, expected)


def test_the_limiting_chain_of_an_inconsistent_encoder_is_its_transition_matrix_s_fixed_point():
    """For any q, the chain x -> z ~ q(z|x) -> x' ~ p(x'|z) has the transition matrix
    T[x, x'] = sum_z q(z|x) p(x'|z); its stationary distribution (enumerated: 16 images of 4 pixels, 4 codes)
    is what `MarkovChainSampler` samples, and it differs from p(x) when q is not p's posterior. A chi-square
    test of 20000 chains at level 1e-4."""
    from scipy.stats import chi2

    from blackbox_vae.models import SBNGenModel, SBNInfNet
    from blackbox_vae.testing import bernoulli_configurations

    torch.manual_seed(5)
    gen_model, inf_net = SBNGenModel(4, 2), SBNInfNet(4, 2)
    with torch.no_grad():
        for parameter in [*gen_model.parameters(), *inf_net.parameters()]:
            parameter.normal_(0, 1.5)
    images, codes = bernoulli_configurations(4), bernoulli_configurations(2)  # [16, 4], [4, 2]
    with torch.no_grad():
        q = inf_net(images).log_prob(codes[None].expand(16, 4, 2)).exp()  # [16 x, 4 z]
        decoded = torch.distributions.Bernoulli(logits=gen_model.decoder(codes))  # p(x'|z), batch [4, 4]
        p_x_given_z = decoded.log_prob(images[:, None, :]).sum(-1).exp().T  # [4 z, 16 x']
        transition = (q @ p_x_given_z).double()  # [16, 16], rows sum to 1
        stationary = torch.full((16,), 1 / 16, dtype=torch.float64)
        for _ in range(2000):
            stationary = stationary @ transition
        marginal = (gen_model.prior().log_prob(codes).sum(-1).exp()[:, None] * p_x_given_z).sum(0).double()
    assert (stationary - marginal).abs().sum() > 0.05  # an inconsistent pair: the chain does not sample p(x)
    sampler = MarkovChainSampler(gen_model, inf_net, n_steps=30, decode="sample")
    samples = sampler.sample(20000)
    index = (samples * (2 ** torch.arange(4)).flip(0)).sum(1).long()  # bernoulli_configurations' order
    counts = torch.bincount(index, minlength=16).double()
    expected = 20000 * stationary
    statistic = ((counts - expected) ** 2 / expected).sum().item()
    assert statistic < chi2.ppf(1 - 1e-4, df=15), (counts, expected)
