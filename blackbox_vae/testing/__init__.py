"""Tools to test gradient estimators: exact references and statistical assertions."""

from blackbox_vae.testing.enumeration import (
    bernoulli_configurations,
    exact_elbo,
    exact_iwae_bound,
    exact_log_marginal,
    exact_rws_wake_objectives,
    exact_sleep_phi_objective,
)
from blackbox_vae.testing.linear_gaussian import (
    LinearGaussianGenModel,
    LinearGaussianInfNet,
    closed_form_elbo,
    closed_form_log_marginal,
    quadrature_iwae_bound,
)
from blackbox_vae.testing.statistics import assert_unbiased, critical_value, gradient_draws, gradients
from blackbox_vae.testing.variance import VarianceReport, compare_variance, gradient_variance

__all__ = [
    "bernoulli_configurations",
    "exact_elbo",
    "exact_log_marginal",
    "exact_iwae_bound",
    "exact_rws_wake_objectives",
    "exact_sleep_phi_objective",
    "quadrature_iwae_bound",
    "LinearGaussianInfNet",
    "LinearGaussianGenModel",
    "closed_form_elbo",
    "closed_form_log_marginal",
    "assert_unbiased",
    "critical_value",
    "gradient_draws",
    "gradients",
    "VarianceReport",
    "gradient_variance",
    "compare_variance",
]
