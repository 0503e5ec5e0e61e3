"""Gradient variance for the inference network: the orderings the papers predict.

Each comparison is a one-sided z-test on the difference of the total
variances (trace of the covariance) with their Monte Carlo standard errors:
it passes when the ordering is significant at 1e-3.
"""

import math

import pytest
import torch

from blackbox_vae import IWAELoss, ScoreFunctionLoss, VIMCOLoss
from blackbox_vae.testing import compare_variance
from exact_references import binary_data, linear_gaussian, random_sbn

Z_ONE_SIDED_1E_3 = 3.09


def assert_lower(reports, lower, higher):
    a, b = reports[lower], reports[higher]
    z = (b.total - a.total) / math.sqrt(a.total_standard_error**2 + b.total_standard_error**2)
    assert z > Z_ONE_SIDED_1E_3, (
        f"{lower} variance {a.total:.4g} ± {a.total_standard_error:.2g} is not significantly below "
        f"{higher} {b.total:.4g} ± {b.total_standard_error:.2g} (z = {z:.2f})")


@pytest.mark.parametrize("n_samples", [2, 5, 10])
def test_vimco_has_lower_variance_than_the_plain_score_function(n_samples):
    inf_net, gen_model = random_sbn("cpu")
    points, _ = binary_data("cpu")
    reports = compare_variance({"vimco": VIMCOLoss(inf_net, gen_model, n_samples),
                                "score function": ScoreFunctionLoss(inf_net, gen_model, n_samples)},
                               points.repeat(10, 1), n_draws=300, parameters="inf_net")
    assert_lower(reports, "vimco", "score function")


def test_dreg_has_lower_variance_than_reparameterized_iwae_at_large_k():
    inf_net, gen_model, points = linear_gaussian("cpu")
    reports = compare_variance({"dreg": IWAELoss(inf_net, gen_model, 50, gradient="dreg"),
                                "reparam": IWAELoss(inf_net, gen_model, 50, gradient="reparam")},
                               points, n_draws=300, parameters="inf_net")
    assert_lower(reports, "dreg", "reparam")


def test_gradient_variance_matches_a_known_variance():
    """A loss whose gradient is x * N(0, 1) noise: the report must recover the variance x^2 per element."""

    class NoisyLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(50))

        def forward(self, data):
            return (self.w * data * torch.randn(50)).sum()

    from blackbox_vae.testing import gradient_variance
    report = gradient_variance(NoisyLoss(), torch.full((50,), 2.0), n_draws=400)
    # total variance 50 * 4 = 200; standard error of the estimate ~ sqrt(2 * 50 * 16 / 400) = 2
    assert abs(report.total - 200) < 4.5 * report.total_standard_error
    assert 1.0 < report.total_standard_error < 4.0
