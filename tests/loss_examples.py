"""A registry of loss examples: every loss class exported by blackbox_vae has at least one.

Generic tests (tests/test_loss_registry.py) run each example; a test fails when a Loss subclass has
no example, so nothing is added untested. Every example also declares its exact expected gradient
(`LossExample.exact`): what the mean of its gradient draws must be, computed from the estimator's
mathematics on a small model (tests/exact_references.py), and, for a biased estimator, why it is
biased and what it is an unbiased estimate of instead. `test_expected_gradient_is_exact` checks
every one.
"""

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from blackbox_vae import (
    ARMLoss,
    ARSMLoss,
    DisARMLoss,
    ELBOLoss,
    GumbelSoftmaxLoss,
    IWAELoss,
    NVILBaseline,
    NVILLoss,
    REBARLoss,
    RELAXControlVariate,
    RELAXLoss,
    RelaxedBernoulliInfNet,
    RWSLoss,
    SymmetricLoss,
    ScoreFunctionLoss,
    TemperatureSchedule,
    UnorderedSetLoss,
    VIMCOLoss,
    ZGRLoss,
)
from blackbox_vae.models import (CategoricalGenModel, CategoricalInfNet, DeepSBNGenModel, DeepSBNInfNet, GaussianMLPGenModel, GaussianMLPInfNet, HVAEGenModel,
                                 HVAELadderInfNet, HVAEReverseInfNet, SBNGenModel, SBNInfNet)
from blackbox_vae.models._mlp import mlp
from blackbox_vae.testing import (
    bernoulli_configurations,
    categorical_configurations,
    closed_form_elbo,
    exact_elbo,
    exact_iwae_bound,
    exact_rws_wake_objectives,
    exact_sleep_phi_objective,
    gradients,
    quadrature_iwae_bound,
)
import exact_references as ref

DATA_DIM, LATENT_DIM = 8, 4


class TinyRelaxedInfNet(RelaxedBernoulliInfNet):
    def __init__(self):
        super().__init__()
        self.encoder = mlp(DATA_DIM, (), LATENT_DIM)

    def logits(self, data):
        return self.encoder(data)


def sbn_pair():
    return SBNInfNet(DATA_DIM, LATENT_DIM), SBNGenModel(DATA_DIM, LATENT_DIM)


def relaxed_pair():
    return TinyRelaxedInfNet(), SBNGenModel(DATA_DIM, LATENT_DIM)


def hvae_pair():
    gen_model = HVAEGenModel(DATA_DIM, (2, LATENT_DIM), hidden=(6,))
    return HVAELadderInfNet(gen_model, DATA_DIM, hidden=(6,)), gen_model


def gaussian_pair():
    return (GaussianMLPInfNet(DATA_DIM, LATENT_DIM, hidden=(16,)),
            GaussianMLPGenModel(DATA_DIM, LATENT_DIM, hidden=(16,), likelihood="bernoulli"))


@dataclass
class ExactCase:
    """One exact-gradient check: ``assert_unbiased(loss, data, expected, reference_error=...)``.

    Attributes:
        loss: the loss (or a module wrapping it) on a small float64 model.
        data: the batch each gradient draw is taken on.
        expected: the exact expected gradient of ``loss(data)`` for every parameter compared.
        reference_error: the numerical error of a quadrature reference, else None.
        claim: what the mean gradient is: "unbiased for ..." or, for a biased estimator, why and what
            it estimates instead.
        n_draws: gradient draws (more for an unreplicated batch).
    """

    loss: nn.Module
    data: torch.Tensor
    expected: dict
    claim: str
    reference_error: Optional[dict] = None
    n_draws: int = 200


#: K equal to the batch (3 unreplicated data points, K = 3): a reduction over the wrong axis of [batch, K]
#: keeps its shape only then, so only such a case can see it; more draws make up for the small batch.
K_IS_BATCH, K_IS_BATCH_DRAWS = 3, 800


@dataclass
class LossExample:
    name: str
    loss_class: type
    models: Callable  # () -> (inf_net, gen_model)
    build: Callable  # (inf_net, gen_model) -> loss
    discrete: bool  # latents one enumerable tensor (exact log p(x) by bernoulli_configurations)
    exact: Callable  # (device) -> ExactCase
    trains: bool = True  # False for a variant whose `make()` repeats another example's (only its exact case differs)

    def make(self):
        inf_net, gen_model = self.models()
        return self.build(inf_net, gen_model)


# ---------------------------------------------------------------------------------- exact cases
def score_function_case(baseline, k, k_is_batch=False):
    def case(device):
        inf_net, gen_model = ref.random_sbn(device)
        points, batch = ref.binary_data(device, K_IS_BATCH, replicas=1) if k_is_batch else ref.binary_data(device)
        loss = ScoreFunctionLoss(inf_net, gen_model, k, baseline=baseline)
        if baseline == "mean":
            for _ in range(5):  # so the moving average is non-zero and actually subtracted
                loss(batch)
        exact = exact_elbo(inf_net, gen_model, points, ref.configurations(device))
        return ExactCase(loss, batch, gradients(-exact.mean(), loss),
                         f"unbiased for the ELBO's gradient (baseline {baseline!r}, K={k}"
                         f"{', K = batch' if k_is_batch else ''})", n_draws=K_IS_BATCH_DRAWS if k_is_batch else 200)
    return case


def antithetic_case(loss_class, k, model="sbn"):
    """ARM / DisARM: unbiased for the ELBO's gradient, on one Bernoulli layer ("sbn"), on a two-layer deep SBN
    drawn bottom-up ("deep": the layer-wise form), or on an HVAE encoder drawn in reverse order ("reverse":
    `InfNet.layer_order`)."""
    def case(device):
        points, batch = ref.binary_data(device)
        if model == "sbn":
            inf_net, gen_model = ref.random_sbn(device)
            exact = exact_elbo(inf_net, gen_model, points, ref.configurations(device))
        else:
            torch.manual_seed(5)
            if model == "deep":
                inf_net, gen_model = DeepSBNInfNet(ref.DATA_DIM, [2, 2]), DeepSBNGenModel(ref.DATA_DIM, [2, 2])
            else:
                inf_net, gen_model = (HVAEReverseInfNet(ref.DATA_DIM, (2, 2), hidden=(3,)),
                                      HVAEGenModel(ref.DATA_DIM, (2, 2), hidden=(3,)))
            with torch.no_grad():  # logits far from 0, so that the pairs differ in several bits
                for parameter in inf_net.parameters():
                    parameter.mul_(2)
            inf_net, gen_model = inf_net.double().to(device), gen_model.double().to(device)
            exact = ref.exact_layered_elbo(inf_net, gen_model, points, [ref.configurations(device, 2)] * 2)
        loss = loss_class(inf_net, gen_model, k)
        return ExactCase(loss, batch, gradients(-exact.mean(), loss),
                         f"unbiased for the ELBO's gradient (K={k}, {model})")
    return case


def control_variate_case(kind, k):
    """REBAR / RELAX on one Bernoulli layer: unbiased for the ELBO's gradient (q and p), at any state of the
    control variate (RELAX's network is random here, and eta != 1, temperature != 0.5 for both)."""
    def case(device):
        inf_net, gen_model = ref.random_sbn(device)
        points, batch = ref.binary_data(device)
        if kind == "rebar":
            loss = REBARLoss(inf_net, gen_model, k, temperature=0.3)
        else:
            loss = RELAXLoss(inf_net, gen_model, k, RELAXControlVariate(ref.DATA_DIM, ref.LATENT_DIM, hidden=(5,)),
                             temperature=0.3)
        loss = loss.double().to(device)
        with torch.no_grad():
            loss.eta.fill_(0.7)
        exact = exact_elbo(inf_net, gen_model, points, ref.configurations(device))
        expected = {name: gradient for name, gradient in gradients(-exact.mean(), loss).items()
                    if name.startswith(("inf_net.", "gen_model."))}  # the control variate's: its variance's gradient
        return ExactCase(loss, batch, expected,
                         f"unbiased for the ELBO's gradient in q and p (K={k}, {kind}; eta 0.7, temperature 0.3)")
    return case


def unordered_set_case(k, latents="bernoulli"):
    """The unordered set estimator: unbiased for the ELBO's gradient (q and p), on the SBN (2^3 values) or on
    two one-hot latents of 3 classes (9 values); K = 2 (the smallest set with a baseline) or larger."""
    def case(device):
        points, batch = ref.binary_data(device)
        if latents == "bernoulli":
            inf_net, gen_model = ref.random_sbn(device)
            configurations = ref.configurations(device)
        else:
            torch.manual_seed(3)
            inf_net, gen_model = (ref.UnnormalizedCategoricalInfNet(ref.DATA_DIM, 2, 3, hidden=(4,)).double()
                                  .to(device),
                                  CategoricalGenModel(ref.DATA_DIM, 2, 3, hidden=(4,)).double().to(device))
            configurations = categorical_configurations(2, 3, dtype=torch.float64, device=device)
        loss = UnorderedSetLoss(inf_net, gen_model, k)
        exact = exact_elbo(inf_net, gen_model, points, configurations)
        return ExactCase(loss, batch, gradients(-exact.mean(), loss),
                         f"unbiased for the ELBO's gradient (K={k}, {latents} latents)")
    return case


def arsm_case(n_classes, k=1):
    """ARSM on two one-hot latents of C classes: unbiased for the ELBO's gradient (q and p), with K draws (K > 1
    checks that each draw's pseudo-actions are read back as the draw's)."""
    def case(device):
        points, batch = ref.binary_data(device)
        torch.manual_seed(3)
        inf_net, gen_model = (ref.UnnormalizedCategoricalInfNet(ref.DATA_DIM, 2, n_classes, hidden=(4,)).double()
                              .to(device),
                              CategoricalGenModel(ref.DATA_DIM, 2, n_classes, hidden=(4,)).double().to(device))
        configurations = categorical_configurations(2, n_classes, dtype=torch.float64, device=device)
        loss = ARSMLoss(inf_net, gen_model, k)
        exact = exact_elbo(inf_net, gen_model, points, configurations)
        return ExactCase(loss, batch, gradients(-exact.mean(), loss),
                         f"unbiased for the ELBO's gradient (2 latents of {n_classes} classes, K={k})")
    return case


def categorical_pair():
    return CategoricalInfNet(DATA_DIM, 2, 3, hidden=(6,)), CategoricalGenModel(DATA_DIM, 2, 3, hidden=(6,))


def vimco_case(k=4, k_is_batch=False):
    def case(device):
        inf_net, gen_model = ref.random_sbn(device)
        points, batch = ref.binary_data(device, K_IS_BATCH, replicas=1) if k_is_batch else ref.binary_data(device)
        loss = VIMCOLoss(inf_net, gen_model, k)
        exact = exact_iwae_bound(inf_net, gen_model, points, ref.configurations(device), k)
        return ExactCase(loss, batch, gradients(-exact.mean(), loss),
                         f"unbiased for the {k}-sample bound's gradient{' (K = batch)' if k_is_batch else ''}",
                         n_draws=K_IS_BATCH_DRAWS if k_is_batch else 200)
    return case


def nvil_case(variance_normalization, running_mean=True):
    """NVIL with every ingredient on: an input-dependent baseline, the running mean, and (or not) the
    variance normalization, at fixed statistics (c, v) = (1.5, 9.0), so that the normalizer max(1, sqrt(v)) = 3
    differs from max(1, v) = 9 and from 1."""
    def case(device):
        inf_net, gen_model = ref.random_sbn(device)
        points, batch = ref.binary_data(device)
        net = NVILBaseline(ref.DATA_DIM, hidden=(4,)).double().to(device)
        loss = NVILLoss(inf_net, gen_model, 2, baseline_net=net, running_mean=running_mean,
                        variance_normalization=variance_normalization)
        c = 1.5 if running_mean else 0.0  # the running mean subtracted (none without it)
        with torch.no_grad():
            net.net[-1].bias.fill_(-5.0)  # a baseline that is non-zero and input-dependent
            loss.signal_mean.total.fill_(1.5)
            loss.signal_mean.weight.fill_(1.0)
            loss.signal_variance.total.fill_(9.0)
            loss.signal_variance.weight.fill_(1.0)
        frozen = ref.FrozenStatistics(loss)
        configurations = ref.configurations(device)
        elbo = exact_elbo(inf_net, gen_model, points, configurations).mean()
        normalizer = 3.0 if variance_normalization else 1.0
        # The baseline network regresses onto the signal minus the running mean: E_q[(l - c - C(x))^2].
        latents = configurations.unsqueeze(0).expand(points.shape[0], -1, -1)
        log_q = inf_net(points).log_prob(latents).detach()
        signal = (gen_model(points, latents).log_prob(points, latents).detach() - log_q)  # [points, S]
        regression = (log_q.exp() * (signal - c - net(points).unsqueeze(1)).pow(2)).sum(1).mean()
        expected = {}
        for name, gradient in gradients(-elbo, frozen).items():  # q's scaled, p's not
            expected[name] = gradient / normalizer if name.startswith("loss.inf_net.") else gradient
        expected.update({n: g for n, g in gradients(regression, frozen).items() if n.startswith("loss.baseline_net.")})
        claim = ("q's gradient is the ELBO's divided by max(1, sqrt(v)) = 3 at the statistics it reads (biased in "
                 "scale, not in direction); p's is the ELBO's; the baseline network's is that of E[(l - c - C(x))^2]"
                 if variance_normalization else
                 "unbiased for the ELBO's gradient; the baseline network's is that of E[(l - c - C(x))^2]")
        return ExactCase(frozen, batch, expected, claim)
    return case


def rws_case(phi_update, k_is_batch=False):
    def case(device):
        inf_net, gen_model = ref.random_sbn(device)
        points, batch = ref.binary_data(device, K_IS_BATCH, replicas=1) if k_is_batch else ref.binary_data(device)
        loss = RWSLoss(inf_net, gen_model, 3, phi_update=phi_update)
        configurations = ref.configurations(device)
        wake_theta, wake_phi = exact_rws_wake_objectives(inf_net, gen_model, points, configurations, 3)
        data_configurations = bernoulli_configurations(ref.DATA_DIM, dtype=torch.float64, device=device)
        sleep_phi = exact_sleep_phi_objective(inf_net, gen_model, data_configurations, configurations)
        phi = {"wake": wake_phi.mean(), "sleep": sleep_phi, "wake-sleep": (wake_phi.mean() + sleep_phi) / 2}[phi_update]
        return ExactCase(loss, batch, gradients(-(wake_theta.mean() + phi), loss),
                         f"p: the 3-sample bound's gradient; q: the exact expected {phi_update} update (biased for "
                         "-KL(p(z|x) || q) at finite K when it wakes, as self-normalized importance sampling is)"
                         f"{'; K = batch' if k_is_batch else ''}", n_draws=K_IS_BATCH_DRAWS if k_is_batch else 200)
    return case


def symmetric_case(flip_noise):
    def case(device):
        inf_net, gen_model = ref.random_sbn(device)
        points, batch = ref.binary_data(device)
        loss = SymmetricLoss(inf_net, gen_model, 2, dreams=2, flip_noise=flip_noise)
        configurations = ref.configurations(device)
        data_configurations = bernoulli_configurations(ref.DATA_DIM, dtype=torch.float64, device=device)
        # p: sum_z q(z|x~) log p(x~, z), q held constant (RWS's wake-theta at K = 1: one normalized weight),
        # averaged over x~ = x with each bit flipped with probability flip_noise (all 2^D flip patterns).
        flips = data_configurations  # [2^D, D]
        flip_probability = (flip_noise ** flips * (1 - flip_noise) ** (1 - flips)).prod(1)  # [2^D]
        noisy = (points[:, None, :] + flips[None]) % 2  # [N, 2^D, D]
        wake_theta, _ = exact_rws_wake_objectives(inf_net, gen_model, noisy.reshape(-1, ref.DATA_DIM),
                                                  configurations, 1)
        wake_theta = (wake_theta.reshape(len(points), -1) * flip_probability).sum(1)
        sleep_phi = exact_sleep_phi_objective(inf_net, gen_model, data_configurations, configurations)
        return ExactCase(loss, batch, gradients(-(wake_theta.mean() + sleep_phi), loss),
                         "p: the gradient of E_{x~, z ~ q(z|x~)} log p(x~, z) (x~ the data with flipped bits); q: the "
                         "gradient of E_{(x, z) ~ p} log q(z|x), both exact by enumeration (unbiased)")
    return case


def gumbel_softmax_case(device):
    torch.manual_seed(4)
    inf_net = ref.SmallRelaxedBernoulliInfNet(ref.DATA_DIM, 2).double().to(device)
    gen_model = SBNGenModel(ref.DATA_DIM, 2).double().to(device)
    points, batch = ref.binary_data(device)
    loss = GumbelSoftmaxLoss(inf_net, gen_model, n_samples=2, temperature=0.5)
    expected, error = ref.converged_gradients(
        lambda n: -ref.relaxed_bernoulli_objective(inf_net, gen_model, points, 0.5, n).mean(), loss, 48)
    return ExactCase(loss, batch, expected, "unbiased for the relaxed objective's gradient at temperature 0.5 (biased "
                     "for the ELBO's)", error)


def straight_through_case(device):
    torch.manual_seed(5)
    inf_net = ref.SmallRelaxedBernoulliInfNet(ref.DATA_DIM, 2).double().to(device)
    gen_model = SBNGenModel(ref.DATA_DIM, 2).double().to(device)
    points, batch = ref.binary_data(device)
    loss = GumbelSoftmaxLoss(inf_net, gen_model, n_samples=2, temperature=0.5, straight_through=True)
    expected, error = ref.converged_gradients(
        lambda n: -ref.straight_through_surrogate(inf_net, gen_model, points, 0.5, n), loss, 64)
    return ExactCase(loss, batch, expected, "biased for the ELBO's gradient at every temperature: its expectation is "
                     "the straight-through path through round(y) plus p's exact gradient", error)


def zgr_case(device):
    torch.manual_seed(6)
    inf_net = ref.SmallRelaxedBernoulliInfNet(ref.DATA_DIM, ref.LATENT_DIM).double().to(device)
    gen_model = SBNGenModel(ref.DATA_DIM, ref.LATENT_DIM).double().to(device)
    with torch.no_grad():
        gen_model.prior_logits.normal_()
    points, batch = ref.binary_data(device)
    loss = ZGRLoss(inf_net, gen_model, 2)
    objective = ref.zgr_expected_objective(inf_net, gen_model, points, ref.configurations(device))
    return ExactCase(loss, batch, gradients(-objective.mean(), loss),
                     "biased for the ELBO's gradient (the objective is not linear in z): its expectation is the "
                     "DARN(1/2) path through each exact z, enumerated (p's part is the ELBO's exact gradient)")


def zgr_analytic_case(device):
    torch.manual_seed(7)
    gen_model = HVAEGenModel(ref.DATA_DIM, (2, 2), hidden=(3,)).double().to(device)
    inf_net = HVAELadderInfNet(gen_model, ref.DATA_DIM, hidden=(3,)).double().to(device)
    points, batch = ref.binary_data(device)
    loss = ZGRLoss(inf_net, gen_model, 2, analytic_kl=True)
    objective = ref.zgr_expected_analytic_objective(inf_net, gen_model, points,
                                                    [ref.configurations(device, 2), ref.configurations(device, 2)])
    return ExactCase(loss, batch, gradients(-objective.mean(), loss),
                     "biased for the ELBO's gradient: the expectation over both layers' exact draws of the "
                     "DARN(1/2) path through the ELBO with closed-form per-layer KLs (two-layer ladder HVAE)")


def elbo_case(device):
    inf_net, gen_model, points = ref.linear_gaussian(device)  # a 2-D latent
    loss = ELBOLoss(inf_net, gen_model, 2)
    return ExactCase(loss, points.repeat(ref.REPLICAS, 1), gradients(-closed_form_elbo(inf_net, gen_model, points)
                     .mean(), loss), "unbiased for the ELBO's gradient (closed form, 2-D latent)")


def iwae_case(gradient, k, latents="tensor", k_is_batch=False):
    """IWAE on a linear Gaussian model with a 2-D latent: a tensor, a dict {"a", "b"}, or a tuple whose first
    leaf has two axes ([batch, K, 1, 1]); with ``k_is_batch``, a 1-D latent (a grid of 1-D nodes per sample)
    and K data points, unreplicated."""
    def case(device):
        if k_is_batch:
            inner_q, inner_p, points = ref.linear_gaussian(device, latent_dim=1)
            points = points[:k]
            inf_net, gen_model = inner_q, inner_p
            loss = IWAELoss(inf_net, gen_model, k, gradient=gradient)
            expected, error = ref.converged_gradients(
                lambda n: -quadrature_iwae_bound(inner_q, inner_p, points, k, n, 2**22).mean(), loss, 40)
            return ExactCase(loss, points, expected, f"unbiased for the {k}-sample bound's gradient (K = batch)",
                             error, n_draws=K_IS_BATCH_DRAWS)
        inner_q, inner_p, points = ref.linear_gaussian(device)
        inf_net, gen_model = inner_q, inner_p
        if latents == "dict":
            inf_net, gen_model = ref.DictLatentGaussianInfNet(inner_q), ref.DictLatentGaussianGenModel(inner_p)
        elif latents == "tuple":
            inf_net, gen_model = ref.TupleLatentGaussianInfNet(inner_q), ref.TupleLatentGaussianGenModel(inner_p)
        loss = IWAELoss(inf_net, gen_model, k, gradient=gradient)
        if gradient == "stl" and k > 1:
            objective = lambda n: -ref.stl_quadrature_objective(inner_q, inner_p, points, k, n)  # noqa: E731
            claim = (f"biased for K={k} (Tucker et al. 2019): its expectation is the bound's gradient plus the "
                     "dropped score term E[sum_k w~_k d log q(z_k|x)/d phi]")
        else:
            objective = lambda n: -quadrature_iwae_bound(inner_q, inner_p, points, k, n, 2**22).mean()  # noqa: E731
            claim = f"unbiased for the {k}-sample bound's gradient"
        expected, error = ref.converged_gradients(objective, loss, 12 if k == 2 else 40)
        return ExactCase(loss, points.repeat(ref.REPLICAS, 1), expected, f"{claim} ({latents} latents)", error)
    return case


EXAMPLES = [
    LossExample("score-function", ScoreFunctionLoss, sbn_pair, lambda q, p: ScoreFunctionLoss(q, p, 4), True,
                score_function_case(None, 3)),
    LossExample("score-function-mean", ScoreFunctionLoss, sbn_pair,
                lambda q, p: ScoreFunctionLoss(q, p, 4, baseline="mean"), True, score_function_case("mean", 2)),
    LossExample("score-function-loo", ScoreFunctionLoss, sbn_pair,
                lambda q, p: ScoreFunctionLoss(q, p, 4, baseline="leave-one-out"), True,
                score_function_case("leave-one-out", 4)),
    LossExample("score-function-loo-k-is-batch", ScoreFunctionLoss, sbn_pair,
                lambda q, p: ScoreFunctionLoss(q, p, 3, baseline="leave-one-out"), True,
                score_function_case("leave-one-out", K_IS_BATCH, k_is_batch=True), trains=False),
    LossExample("vimco", VIMCOLoss, sbn_pair, lambda q, p: VIMCOLoss(q, p, 4), True, vimco_case()),
    LossExample("vimco-k-is-batch", VIMCOLoss, sbn_pair, lambda q, p: VIMCOLoss(q, p, 3), True,
                vimco_case(K_IS_BATCH, k_is_batch=True), trains=False),
    LossExample("nvil", NVILLoss, sbn_pair, lambda q, p: NVILLoss(q, p, 1, baseline_net=NVILBaseline(DATA_DIM)), True,
                nvil_case(True)),
    LossExample("nvil-no-normalization", NVILLoss, sbn_pair,
                lambda q, p: NVILLoss(q, p, 2, baseline_net=NVILBaseline(DATA_DIM), variance_normalization=False), True,
                nvil_case(False)),
    LossExample("nvil-no-running-mean", NVILLoss, sbn_pair,
                lambda q, p: NVILLoss(q, p, 2, baseline_net=NVILBaseline(DATA_DIM), running_mean=False), True,
                nvil_case(True, running_mean=False)),
    LossExample("arm", ARMLoss, sbn_pair, lambda q, p: ARMLoss(q, p, 2), True, antithetic_case(ARMLoss, 2)),
    LossExample("arm-deep", ARMLoss, sbn_pair, lambda q, p: ARMLoss(q, p, 4), True,
                antithetic_case(ARMLoss, 4, "deep"), trains=False),
    LossExample("disarm", DisARMLoss, sbn_pair, lambda q, p: DisARMLoss(q, p, 4), True,
                antithetic_case(DisARMLoss, 4)),
    LossExample("disarm-deep", DisARMLoss, sbn_pair, lambda q, p: DisARMLoss(q, p, 4), True,
                antithetic_case(DisARMLoss, 4, "deep"), trains=False),
    LossExample("disarm-reverse", DisARMLoss, sbn_pair, lambda q, p: DisARMLoss(q, p, 4), True,
                antithetic_case(DisARMLoss, 4, "reverse"), trains=False),
    LossExample("rebar", REBARLoss, sbn_pair, lambda q, p: REBARLoss(q, p, 2), True, control_variate_case("rebar", 2)),
    LossExample("relax", RELAXLoss, sbn_pair,
                lambda q, p: RELAXLoss(q, p, 1, RELAXControlVariate(DATA_DIM, LATENT_DIM, hidden=(8,))), True,
                control_variate_case("relax", 1)),
    LossExample("arsm", ARSMLoss, categorical_pair, lambda q, p: ARSMLoss(q, p, 1), False, arsm_case(3)),
    LossExample("arsm-4-classes", ARSMLoss, categorical_pair, lambda q, p: ARSMLoss(q, p, 1), False, arsm_case(4),
                trains=False),
    LossExample("arsm-k2", ARSMLoss, categorical_pair, lambda q, p: ARSMLoss(q, p, 2), False, arsm_case(3, 2),
                trains=False),
    LossExample("arsm-k3-4-classes", ARSMLoss, categorical_pair, lambda q, p: ARSMLoss(q, p, 3), False,
                arsm_case(4, 3), trains=False),
    LossExample("unordered-set", UnorderedSetLoss, sbn_pair, lambda q, p: UnorderedSetLoss(q, p, 3), True,
                unordered_set_case(3)),
    LossExample("unordered-set-categorical", UnorderedSetLoss, categorical_pair,
                lambda q, p: UnorderedSetLoss(q, p, 2), False, unordered_set_case(2, "categorical"), trains=False),
    LossExample("rws-wake", RWSLoss, sbn_pair, lambda q, p: RWSLoss(q, p, 4, "wake"), True, rws_case("wake")),
    LossExample("rws-wake-k-is-batch", RWSLoss, sbn_pair, lambda q, p: RWSLoss(q, p, 3, "wake"), True,
                rws_case("wake", k_is_batch=True), trains=False),
    LossExample("rws-sleep", RWSLoss, sbn_pair, lambda q, p: RWSLoss(q, p, 4, "sleep"), True, rws_case("sleep")),
    LossExample("rws-wake-sleep", RWSLoss, sbn_pair, lambda q, p: RWSLoss(q, p, 4, "wake-sleep"), True,
                rws_case("wake-sleep")),
    LossExample("symmetric", SymmetricLoss, sbn_pair, lambda q, p: SymmetricLoss(q, p, 2, dreams=2), True,
                symmetric_case(0.0)),
    LossExample("symmetric-flip-noise", SymmetricLoss, sbn_pair, lambda q, p: SymmetricLoss(q, p, 1, flip_noise=0.01),
                True, symmetric_case(0.2)),
    LossExample("gumbel-softmax", GumbelSoftmaxLoss, relaxed_pair,
                lambda q, p: GumbelSoftmaxLoss(q, p, 1, temperature=TemperatureSchedule(1.0, 0.5, 1e-3, 50)), True,
                gumbel_softmax_case),
    LossExample("gumbel-straight-through", GumbelSoftmaxLoss, relaxed_pair,
                lambda q, p: GumbelSoftmaxLoss(q, p, 1, temperature=0.5, straight_through=True), True,
                straight_through_case),
    LossExample("zgr", ZGRLoss, relaxed_pair, lambda q, p: ZGRLoss(q, p, 2), True, zgr_case),
    LossExample("zgr-analytic-kl", ZGRLoss, hvae_pair, lambda q, p: ZGRLoss(q, p, 2, analytic_kl=True), False,
                zgr_analytic_case),
    LossExample("elbo", ELBOLoss, gaussian_pair, lambda q, p: ELBOLoss(q, p, 1), False, elbo_case),
    LossExample("iwae-reparam", IWAELoss, gaussian_pair, lambda q, p: IWAELoss(q, p, 5), False,
                iwae_case("reparam", 2)),
    LossExample("iwae-stl", IWAELoss, gaussian_pair, lambda q, p: IWAELoss(q, p, 5, gradient="stl"), False,
                iwae_case("stl", 2, latents="dict")),
    LossExample("iwae-dreg", IWAELoss, gaussian_pair, lambda q, p: IWAELoss(q, p, 5, gradient="dreg"), False,
                iwae_case("dreg", 2, latents="tuple")),
    LossExample("iwae-dreg-k-is-batch", IWAELoss, gaussian_pair, lambda q, p: IWAELoss(q, p, 3, gradient="dreg"),
                False, iwae_case("dreg", K_IS_BATCH, k_is_batch=True), trains=False),
]


def teacher_data(n=512, seed=0):
    """Binary data from a random sigmoid belief network with strong weights: [n, DATA_DIM]."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    teacher = SBNGenModel(DATA_DIM, LATENT_DIM)
    with torch.no_grad():
        for parameter in teacher.parameters():
            parameter.mul_(3)
        data, _ = teacher.sample(n)
    torch.random.set_rng_state(generator_state)
    return data, teacher
