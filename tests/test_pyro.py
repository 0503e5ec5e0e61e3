"""Pyro interoperability: our losses on Pyro programs agree with Pyro's own estimators.

Each Pyro program below wraps a library module (an SBN or the linear Gaussian model), so exact
references (enumeration, closed form, quadrature) apply to it directly. For each estimator pair, ours
(on PyroInfNet/PyroGenModel) and Pyro's (Trace_ELBO, TraceGraph_ELBO, RenyiELBO(alpha=0),
ReweightedWakeSleep) are both checked against the same exact expected gradient with assert_unbiased,
so they agree with each other; their loss values are compared the same way.

Pyro's vectorized RenyiELBO and ReweightedWakeSleep weight particles by the log-density of the whole
batch (they sum each particle's log-probabilities over the batch before weighting), which equals the
per-data-point objective of our losses only for a batch of one: those comparisons use one data point.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import ReweightedWakeSleep, RenyiELBO, Trace_ELBO, TraceGraph_ELBO
from pyro.nn import PyroModule
from torch import nn

from blackbox_vae import ELBOLoss, IWAELoss, RWSLoss, ScoreFunctionLoss, VIMCOLoss
from blackbox_vae.models import SBNGenModel, SBNInfNet
from blackbox_vae.pyro import PyroGenModel, PyroInfNet, PyroInterfaceError
from blackbox_vae.testing import (
    LinearGaussianGenModel,
    LinearGaussianInfNet,
    assert_unbiased,
    check_gen_model,
    check_inf_net,
    closed_form_elbo,
    configurations_for,
    exact_elbo,
    exact_iwae_bound,
    exact_rws_wake_objectives,
    gradients,
    quadrature_gradients,
)


class SBNGuide(PyroModule):
    def __init__(self, inner: SBNInfNet):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(logits=self.inner.encoder(x)).to_event(1))


class SBNModel(PyroModule):
    def __init__(self, inner: SBNGenModel):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(logits=self.inner.prior_logits).expand([x.shape[0], 3]).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.inner.decoder(z)).to_event(1), obs=x)


class GaussianGuide(PyroModule):
    # attribute names distinct from the model's: Pyro names parameters by attribute path
    def __init__(self, inner: LinearGaussianInfNet):
        super().__init__()
        self.encoder = inner

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            loc = self.encoder.linear(x)
            pyro.sample("z", dist.Normal(loc, self.encoder.log_scale.exp().expand_as(loc)).to_event(1))


class GaussianModel(PyroModule):
    def __init__(self, inner: LinearGaussianGenModel):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(self.inner.prior_loc, self.inner.prior_scale).to_event(1))
            loc = self.inner.linear(z)
            pyro.sample("x", dist.Normal(loc, self.inner.log_noise.exp().expand_as(loc)).to_event(1), obs=x)


class PyroEstimator(nn.Module):
    """One of Pyro's ELBOs as a module returning nothing to differentiate: its loss_and_grads fills the
    gradients (divided by the batch size, as Pyro sums over the batch where our losses average)."""

    def __init__(self, inf_net, gen_model, elbo):
        super().__init__()
        self.inf_net, self.gen_model, self.elbo = inf_net, gen_model, elbo
        self.values = []

    def forward(self, data):
        value = self.elbo.loss_and_grads(self.gen_model.model, self.inf_net.guide, data)
        value = value[0] if isinstance(value, tuple) else value
        self.values.append(value / data.shape[0])
        for parameter in self.parameters():
            if parameter.grad is not None:
                parameter.grad /= data.shape[0]
        return torch.zeros((), requires_grad=True)  # the gradients are already in place


@pytest.fixture(autouse=True)
def _clear_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def sbn_pair():
    torch.manual_seed(0)
    inner_q, inner_p = SBNInfNet(5, 3).double(), SBNGenModel(5, 3).double()
    with torch.no_grad():
        inner_p.prior_logits.normal_()
    return inner_q, inner_p, PyroInfNet(SBNGuide(inner_q)), PyroGenModel(SBNModel(inner_p))


def gaussian_pair():
    torch.manual_seed(2)
    inner_q, inner_p = LinearGaussianInfNet(3, 1).double(), LinearGaussianGenModel(3, 1).double()
    with torch.no_grad():
        inner_q.log_scale.fill_(-0.5)
        inner_p.log_noise.fill_(-0.3)
    return inner_q, inner_p, PyroInfNet(GaussianGuide(inner_q)), PyroGenModel(GaussianModel(inner_p))


POINTS = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0, 1.0]], dtype=torch.float64)
REAL_POINTS = torch.tensor([[0.3, -1.2, 0.8], [1.1, 0.4, -0.5]], dtype=torch.float64)


def test_wrapped_programs_satisfy_the_contract():
    _, _, inf_net, gen_model = sbn_pair()
    check_inf_net(inf_net, POINTS)
    gen_model(POINTS, None)
    check_gen_model(gen_model, POINTS)


@pytest.mark.slow  # a long end-to-end run: in `pytest -m slow` (and .ci/run)
def test_score_function_and_tracegraph_elbo_share_the_exact_gradient():
    inner_q, inner_p, inf_net, gen_model = sbn_pair()
    exact = exact_elbo(inner_q, inner_p, POINTS, configurations_for(inner_q, POINTS))
    ours = ScoreFunctionLoss(inf_net, gen_model, n_samples=2, baseline="leave-one-out")
    expected = gradients(-exact.mean(), ours)
    assert_unbiased(ours, POINTS.repeat(100, 1), expected)
    theirs = PyroEstimator(inf_net, gen_model, TraceGraph_ELBO(num_particles=2, vectorize_particles=True,
                                                              max_plate_nesting=1))
    assert_unbiased(theirs, POINTS.repeat(100, 1), expected)


def test_vimco_runs_on_pyro_programs_and_is_unbiased():
    inner_q, inner_p, inf_net, gen_model = sbn_pair()
    loss = VIMCOLoss(inf_net, gen_model, n_samples=3)
    exact = exact_iwae_bound(inner_q, inner_p, POINTS, configurations_for(inner_q, POINTS), 3)
    assert_unbiased(loss, POINTS.repeat(100, 1), gradients(-exact.mean(), loss))


@pytest.mark.slow  # Pyro's ReweightedWakeSleep over 200 draws: about 13 s
def test_rws_and_pyro_reweighted_wake_sleep_share_the_exact_wake_updates():
    inner_q, inner_p, inf_net, gen_model = sbn_pair()
    point = POINTS[:1]  # see the module docstring: Pyro weights the whole batch jointly
    wake_theta, wake_phi = exact_rws_wake_objectives(inner_q, inner_p, point, configurations_for(inner_q, point), 3)
    ours = RWSLoss(inf_net, gen_model, n_samples=3, phi_update="wake")
    expected = gradients(-(wake_theta + wake_phi).mean(), ours)
    assert_unbiased(ours, point.repeat(100, 1), expected)
    theirs = PyroEstimator(inf_net, gen_model, ReweightedWakeSleep(num_particles=3, insomnia=1.0,
                                                                  vectorize_particles=True, max_plate_nesting=1))
    assert_unbiased(theirs, point, expected, n_draws=3000)


@pytest.mark.slow  # a long end-to-end run: in `pytest -m slow` (and .ci/run)
def test_elbo_and_trace_elbo_share_the_closed_form_gradient_and_value():
    inner_q, inner_p, inf_net, gen_model = gaussian_pair()
    exact = closed_form_elbo(inner_q, inner_p, REAL_POINTS)
    ours = ELBOLoss(inf_net, gen_model, n_samples=2)
    expected = gradients(-exact.mean(), ours)
    assert_unbiased(ours, REAL_POINTS.repeat(100, 1), expected)
    theirs = PyroEstimator(inf_net, gen_model, Trace_ELBO(num_particles=2, vectorize_particles=True,
                                                          max_plate_nesting=1))
    assert_unbiased(theirs, REAL_POINTS.repeat(100, 1), expected)
    # loss values: both estimate -ELBO (per data point)
    for values in (torch.tensor(ours.loss_history_), torch.tensor(theirs.values)):
        standard_error = values.std() / math.sqrt(len(values))
        assert abs(values.mean().item() + exact.mean().item()) < 4.5 * standard_error


@pytest.mark.slow  # Pyro's RenyiELBO over 200 draws: about 15 s
def test_iwae_and_renyi_alpha_zero_share_the_k_sample_bound_gradient_and_value():
    inner_q, inner_p, inf_net, gen_model = gaussian_pair()
    point = REAL_POINTS[:1]
    ours = IWAELoss(inf_net, gen_model, n_samples=3)
    expected, error = quadrature_gradients(inner_q, inner_p, point, 3, ours, n_nodes=24)
    assert_unbiased(ours, point.repeat(100, 1), expected, reference_error=error)
    theirs = PyroEstimator(inf_net, gen_model, RenyiELBO(alpha=0, num_particles=3, vectorize_particles=True,
                                                         max_plate_nesting=1))
    assert_unbiased(theirs, point, expected, n_draws=3000, reference_error=error)
    from blackbox_vae.testing import quadrature_iwae_bound

    bound = quadrature_iwae_bound(inner_q, inner_p, point, 3, n_nodes=24).item()
    for values in (torch.tensor(ours.loss_history_), torch.tensor(theirs.values)):
        standard_error = values.std() / math.sqrt(len(values))
        assert abs(values.mean().item() + bound) < 4.5 * standard_error


def test_unsupported_programs_get_clear_errors():
    def no_plate(x):
        pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(2))

    with pytest.raises(PyroInterfaceError, match=r"site 'z' has batch shape .* expected \[n_samples, batch\] = "
                                                 r"\(2, 4\)\. Put every sample site inside one pyro.plate"):
        PyroInfNet(no_plate)(torch.zeros(4, 3)).sample(2)

    def uses_param_store(x):
        loc = pyro.param("loc", torch.zeros(2))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))

    with pytest.raises(PyroInterfaceError, match=r"uses the parameter 'loc' from Pyro's global param store"):
        PyroInfNet(uses_param_store)(torch.zeros(4, 3)).sample(2)

    def enumerated(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Categorical(logits=torch.zeros(3)), infer={"enumerate": "parallel"})

    with pytest.raises(PyroInterfaceError, match="marked for enumeration"):
        PyroInfNet(enumerated)(torch.zeros(4, 3)).sample(2)


def test_function_programs_with_registered_modules():
    encoder = nn.Linear(3, 2)

    def guide(x):
        pyro.module("encoder", encoder)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(encoder(x), 1.0).to_event(1))

    inf_net = PyroInfNet(guide, modules=[encoder])
    assert {id(p) for p in inf_net.parameters()} == {id(p) for p in encoder.parameters()}
    latents = inf_net(torch.zeros(4, 3)).rsample(5)
    assert latents["z"].shape == (4, 5, 2) and latents["z"].requires_grad


def test_colliding_parameter_names_are_caught():
    class Guide(PyroModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(3, 2)

        def forward(self, x):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", dist.Normal(self.net(x), 1.0).to_event(1))

    class Model(PyroModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(2, 3)  # the same attribute path as the guide's: one name in Pyro's store

        def forward(self, x):
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
                pyro.sample("x", dist.Normal(self.net(z), 1.0).to_event(1), obs=x)

    loss = ELBOLoss(PyroInfNet(Guide()), PyroGenModel(Model()))
    with pytest.raises(PyroInterfaceError, match=r"'net\$\$\$weight' .* rename one of them"):
        loss(torch.zeros(4, 3))
