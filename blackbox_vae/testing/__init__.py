"""blackbox_vae.testing: tools to test gradient estimators and the models they run on.

- Exact references by enumeration (`enumeration`) and in closed form
  (`linear_gaussian`).
- Statistical assertions: `assert_unbiased`, `gradient_variance`, `compare_variance`.
- Contract checks for users' models: `check_inf_net`, `check_gen_model`.
- Hypothesis strategies in `strategies` (imported on first use; needs
  ``hypothesis``, installed with ``pip install blackbox_vae[test]``).
"""

from blackbox_vae.testing.contracts import ContractError, check_gen_model, check_inf_net
from blackbox_vae.testing.enumeration import (
    bernoulli_configurations,
    categorical_configurations,
    configurations_for,
    integer_configurations,
    product_configurations,
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
    closed_form_posterior,
    quadrature_expectation,
    quadrature_gradients,
    quadrature_iwae_bound,
)
from blackbox_vae.testing.statistics import (
    assert_unbiased,
    critical_value,
    detectable_bias,
    detection_probability,
    gradient_draws,
    gradients,
)
from blackbox_vae.testing.variance import VarianceReport, compare_variance, gradient_variance

__all__ = [
    "ContractError",
    "check_inf_net",
    "check_gen_model",
    "bernoulli_configurations",
    "categorical_configurations",
    "integer_configurations",
    "product_configurations",
    "configurations_for",
    "exact_elbo",
    "exact_log_marginal",
    "exact_iwae_bound",
    "exact_rws_wake_objectives",
    "exact_sleep_phi_objective",
    "quadrature_expectation",
    "quadrature_iwae_bound",
    "quadrature_gradients",
    "LinearGaussianInfNet",
    "LinearGaussianGenModel",
    "closed_form_elbo",
    "closed_form_log_marginal",
    "closed_form_posterior",
    "assert_unbiased",
    "critical_value",
    "detection_probability",
    "detectable_bias",
    "gradient_draws",
    "gradients",
    "VarianceReport",
    "gradient_variance",
    "compare_variance",
]


def __getattr__(name):
    # The strategies need hypothesis, a test-only dependency: import them on first use.
    if name == "strategies":
        import importlib

        return importlib.import_module("blackbox_vae.testing.strategies")
    raise AttributeError(f"module 'blackbox_vae.testing' has no attribute {name!r}")
