"""The unordered set estimator beyond its exact-gradient checks (tests/loss_examples.py): its sampler, its set
probabilities, and what it refuses."""

import itertools
import math
from collections import Counter

import pytest
import torch

from blackbox_vae import UnorderedSetLoss
from blackbox_vae.cli import main
from blackbox_vae.losses._without_replacement import sample_without_replacement, unordered_set_estimates
from blackbox_vae.models import (CategoricalGenModel, CategoricalInfNet, DeepSBNGenModel, DeepSBNInfNet,
                                 GaussianMLPGenModel, GaussianMLPInfNet, SBNGenModel, SBNInfNet)
from blackbox_vae.testing import critical_value

DATA = torch.bernoulli(torch.full((5, 6), 0.4))


def set_probability(probs, members):
    """P(S) by its definition: the sum over the orders of drawing S of the product of renormalized draws."""
    total = 0.0
    for order in itertools.permutations(members):
        product, used = 1.0, 0.0
        for member in order:
            product *= probs[member] / (1 - used)
            used += probs[member]
        total += product
    return total


def restricted(probs, left_out, members):
    """P^{D - left_out}(S - left_out) by the sum over orders (q renormalized without the left-out values)."""
    rest = [j for j in range(len(probs)) if j not in left_out]
    total = sum(probs[j] for j in rest)
    return set_probability([probs[j] / total for j in rest], [rest.index(m) for m in members if m not in left_out])


@pytest.mark.parametrize("scale", [0.5, 3.0, 8.0])  # near-uniform to very peaked
def test_set_probabilities_and_baselines_match_the_sums_over_orders(scale):
    torch.manual_seed(int(scale))
    probs = torch.softmax(scale * torch.randn(7, dtype=torch.float64), 0)
    members = torch.randperm(7)[:4].tolist()
    values = torch.randn(4, dtype=torch.float64) * 5
    log_q = probs[members].log().unsqueeze(0)
    log_set, without_one, baselines = unordered_set_estimates(log_q, values.unsqueeze(0))
    p = probs.tolist()
    assert log_set.exp().item() == pytest.approx(set_probability(p, members), rel=1e-9)
    for i, s in enumerate(members):
        assert without_one[0, i].exp().item() == pytest.approx(restricted(p, [s], members), rel=1e-9)
        expected = p[s] * values[i].item() + sum(
            p[t] * values[j].item() * restricted(p, [s, t], members) / restricted(p, [s], members)
            for j, t in enumerate(members) if t != s)
        assert baselines[0, i].item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_set_probabilities_at_the_extremes():
    """The whole domain is drawn with probability 1; values far in the tail (a domain of 10^20) keep their
    relative accuracy, P(S) ~ k! prod p(s), where a sum of alternating terms would cancel to nothing."""
    probs = torch.softmax(torch.randn(4, dtype=torch.float64), 0)
    assert unordered_set_estimates(probs.log().unsqueeze(0), torch.zeros(1, 4, dtype=torch.float64))[0].exp().item() == pytest.approx(1.0, rel=1e-9)
    tail = torch.tensor([[-40.0, -45.0, -50.0]], dtype=torch.float64)
    assert unordered_set_estimates(tail, torch.zeros_like(tail))[0].item() == pytest.approx(math.log(6) - 135.0, abs=1e-9)


def test_the_sampler_draws_distinct_values_with_the_set_probabilities():
    """Stochastic beam search over 2 dimensions of 3 classes: every set of 2 of the 9 joint values appears as
    often as P(S) says (a z-test per set, Bonferroni-corrected), never with a repeated value."""
    torch.manual_seed(0)
    log_probs = torch.log_softmax(torch.randn(2, 3, dtype=torch.float64), -1)
    joint = (log_probs[0][:, None] + log_probs[1][None, :]).exp().flatten().tolist()
    n = 100_000
    classes, log_q = sample_without_replacement(log_probs.expand(n, 2, 3), 2)
    torch.testing.assert_close(log_q, log_probs[0][classes[..., 0]] + log_probs[1][classes[..., 1]])
    values = classes[..., 0] * 3 + classes[..., 1]
    assert (values[:, 0] != values[:, 1]).all()
    counts = Counter(tuple(sorted(pair)) for pair in values.tolist())
    tolerance = critical_value(1e-3, 36, n)
    for members in itertools.combinations(range(9), 2):
        p = set_probability(joint, list(members))
        assert abs(counts[members] / n - p) <= tolerance * math.sqrt(p * (1 - p) / n), members


def test_a_set_of_the_whole_domain_gives_the_exact_gradient():
    """K = 2^3: the set is every value, each weight q(s) R(S, s) = q(s), and the estimate is the exact sum."""
    torch.manual_seed(0)
    inf_net, gen_model = SBNInfNet(6, 3).double(), SBNGenModel(6, 3).double()
    loss = UnorderedSetLoss(inf_net, gen_model, 8)
    loss(DATA.double())
    torch.testing.assert_close(loss.weights_, loss.log_q_.exp())


def test_gaussian_codes_are_refused_when_the_loss_is_built():
    with pytest.raises(TypeError, match=r"needs `GaussianMLPInfNet.bernoulli_logits` or `.categorical_logits`.*VIMCO"):
        UnorderedSetLoss(GaussianMLPInfNet(6, 2), GaussianMLPGenModel(6, 2), 2)


def test_k_is_checked_against_the_domain_and_the_baseline():
    with pytest.raises(ValueError, match=r"needs `n_samples` >= 2 \(each sample's baseline"):
        UnorderedSetLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), 1)
    with pytest.raises(ValueError, match=r"K\) = 9 distinct values exceed the 2\^3 = 8 values"):
        UnorderedSetLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), 9)(DATA)
    with pytest.raises(ValueError, match=r"one layer of latents .* 2 entries"):
        UnorderedSetLoss(DeepSBNInfNet(6, [3, 2]), DeepSBNGenModel(6, [3, 2]), 2)(DATA)


def test_values_of_zero_probability_are_not_drawn():
    """A class q gives probability 0 is never in the set; asking for more values than remain is refused."""
    log_probs = torch.log_softmax(torch.tensor([[[0.3, -1.0, -math.inf]]]), -1).expand(1000, 1, 3)
    classes, log_q = sample_without_replacement(log_probs, 2)
    assert set(classes.flatten().tolist()) == {0, 1} and torch.isfinite(log_q).all()

    class Masked(CategoricalInfNet):
        def logits(self, data):
            logits = super().logits(data).clone()
            logits[..., 2] = -math.inf
            return logits

    with pytest.raises(ValueError, match=r"fewer than `n_samples` = 3 latent values have positive probability"):
        UnorderedSetLoss(Masked(6, 1, 3, hidden=(4,)), CategoricalGenModel(6, 1, 3, hidden=(4,)), 3)(DATA)


def test_the_command_line_refuses_latents_it_cannot_handle_for_the_unordered_set(tmp_path):
    assert main(["train", "--data", "digits", "--model", "sbn", "--layers", "10,5", "--loss", "unordered-set",
                 "--steps", "2", "--progress", "false", "--out", str(tmp_path / "refused")]) == 2
