"""Property tests: every unbiased estimator is unbiased on randomly generated models.

Models, data and K come from the Hypothesis strategies of blackbox_vae.testing;
exact references from enumeration, closed forms and quadrature. Each check's
false-failure rate is 1e-3 divided by the profile's number of examples, so a
whole property test fails falsely with probability at most 1e-3 whichever profile
runs it: "blackbox-quick" (5 examples), "blackbox-ci" (50, what .ci/run uses) or
"blackbox-thorough" (200 random ones).

Marked slow: `pytest -m slow` runs them (HYPOTHESIS_PROFILE=blackbox-ci in .ci/run).
"""

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from blackbox_vae import ELBOLoss, IWAELoss, NVILBaseline, NVILLoss, RWSLoss, ScoreFunctionLoss, VIMCOLoss
from blackbox_vae.testing import (
    assert_unbiased,
    check_gen_model,
    check_inf_net,
    closed_form_elbo,
    exact_elbo,
    exact_iwae_bound,
    exact_rws_wake_objectives,
    exact_sleep_phi_objective,
    gradients,
    quadrature_gradients,
)
from blackbox_vae.testing.strategies import n_samples, small_discrete_models, small_linear_gaussian_models

pytestmark = pytest.mark.slow

RATE = 1e-3 / settings().max_examples  # per check; at most 1e-3 over a property's examples


def model_gradients(objective, loss):
    """The exact gradient of `objective` for the models' parameters (not the estimator's own)."""
    return {n: g for n, g in gradients(objective, loss).items() if n.startswith(("inf_net.", "gen_model."))}


@given(model=small_discrete_models(), k=n_samples(1, 3), baseline=st.sampled_from([None, "mean", "leave-one-out"]))
def test_score_function(model, k, baseline):
    assume(baseline != "leave-one-out" or k >= 2)
    torch.manual_seed(model.seed)
    loss = ScoreFunctionLoss(model.inf_net, model.gen_model, k, baseline=baseline)
    exact = exact_elbo(model.inf_net, model.gen_model, model.data, model.configurations)
    assert_unbiased(loss, model.replicated_data(), model_gradients(-exact.mean(), loss), false_failure_rate=RATE)


@given(model=small_discrete_models(), k=n_samples(1, 2), baseline_net=st.booleans())
def test_nvil_without_variance_normalization(model, k, baseline_net):
    torch.manual_seed(model.seed)
    net = NVILBaseline(model.data_dim, hidden=(3,)).double() if baseline_net else None
    loss = NVILLoss(model.inf_net, model.gen_model, k, baseline_net=net, variance_normalization=False)
    for _ in range(3):
        loss(model.replicated_data(10))  # a non-zero running mean
    exact = exact_elbo(model.inf_net, model.gen_model, model.data, model.configurations)
    assert_unbiased(loss, model.replicated_data(), model_gradients(-exact.mean(), loss), false_failure_rate=RATE)


@given(model=small_discrete_models(), k=n_samples(2, 4))
def test_vimco(model, k):
    torch.manual_seed(model.seed)
    loss = VIMCOLoss(model.inf_net, model.gen_model, k)
    exact = exact_iwae_bound(model.inf_net, model.gen_model, model.data, model.configurations, k)
    assert_unbiased(loss, model.replicated_data(), model_gradients(-exact.mean(), loss), false_failure_rate=RATE)


@given(model=small_discrete_models(), k=n_samples(2, 3), phi_update=st.sampled_from(["wake", "sleep", "wake-sleep"]))
def test_rws_expected_updates(model, k, phi_update):
    torch.manual_seed(model.seed)
    loss = RWSLoss(model.inf_net, model.gen_model, k, phi_update=phi_update)
    wake_theta, wake_phi = exact_rws_wake_objectives(model.inf_net, model.gen_model, model.data,
                                                     model.configurations, k)
    sleep_phi = exact_sleep_phi_objective(model.inf_net, model.gen_model, model.data_configurations,
                                          model.configurations)
    phi = {"wake": wake_phi.mean(), "sleep": sleep_phi, "wake-sleep": (wake_phi.mean() + sleep_phi) / 2}[phi_update]
    assert_unbiased(loss, model.replicated_data(), model_gradients(-(wake_theta.mean() + phi), loss),
                    false_failure_rate=RATE)


@given(model=small_linear_gaussian_models(), loss_name=st.sampled_from(["elbo", "stl"]))
def test_elbo_and_stl_with_one_sample(model, loss_name):
    torch.manual_seed(model.seed)
    if loss_name == "elbo":
        loss = ELBOLoss(model.inf_net, model.gen_model, 1)
    else:
        loss = IWAELoss(model.inf_net, model.gen_model, 1, gradient="stl")
    exact = closed_form_elbo(model.inf_net, model.gen_model, model.data)
    assert_unbiased(loss, model.replicated_data(), model_gradients(-exact.mean(), loss), false_failure_rate=RATE)


@given(model=small_linear_gaussian_models(), k=n_samples(2, 3), gradient=st.sampled_from(["reparam", "dreg"]))
def test_iwae_reparam_and_dreg(model, k, gradient):
    torch.manual_seed(model.seed)
    loss = IWAELoss(model.inf_net, model.gen_model, k, gradient=gradient)
    expected, error = quadrature_gradients(model.inf_net, model.gen_model, model.data, k, loss,
                                           n_nodes=40 if k == 2 else 24)
    assert_unbiased(loss, model.replicated_data(), expected, false_failure_rate=RATE, reference_error=error)


@given(model=small_discrete_models())
def test_generated_models_satisfy_the_contract(model):
    torch.manual_seed(model.seed)
    # Every example, and every attempt to shrink a failing one, reruns the frequency tests: keep their
    # false-failure rate far below one over the number of runs.
    check_inf_net(model.inf_net, model.data, false_failure_rate=1e-7)
    check_gen_model(model.gen_model, model.data, false_failure_rate=1e-7)
