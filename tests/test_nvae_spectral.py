"""SpectralRegularizer (blackbox_vae.models.nvae.spectral) against the SVD.

- The estimate after k power iterations equals its closed form from the SVD and the initial u: with
  a_i = U_i . u_0, v_k is proportional to sum_i sigma_i^(2k-1) a_i V_i, so the estimate ||W v_k|| is
  sqrt(sum_i sigma_i^2 w_i / sum_i w_i), w_i = (rho_i^(2k-1) a_i)^2, rho_i = sigma_i / sigma_1. This pins the
  normalization, the iteration count per call and the persistence of u, v across calls.
- Converged, it is the spectral norm (torch.linalg.matrix_norm(ord=2)) and its gradient is u_1 v_1^T.
- ConvTranspose2d weights are viewed as [out, in * kh * kw], transposed first; Linear as they are.
- The state_dict round-trips, and the watched module's parameters are not the regularizer's.

Everything is float64. Tolerances: k iterations of products over n <= 60 terms round to about k * n * eps
relative (2.7e-12 for k = 200); the closed form is compared at rtol 1e-10. Converged values are compared at
1e-11 after checking, from the computed singular-value gap, that the remaining power-iteration error is
below 1e-15.
"""

import io

import pytest
import torch
from torch import nn

from blackbox_vae.models.nvae.spectral import SpectralRegularizer

DTYPE = torch.float64
CLOSED_FORM_RTOL = 1e-10
CONVERGED_RTOL = 1e-11


def network():
    """Three watched layers of different kinds and shapes, two of one shape (batched together), a non-watched one."""
    return nn.Sequential(nn.Conv2d(3, 5, 3), nn.Conv2d(3, 5, 3), nn.ConvTranspose2d(3, 4, 2), nn.ReLU(),
                         nn.Linear(7, 6)).to(DTYPE)


def nvae_matrix(layer):
    """The weight as an [out, -1] matrix, written out per layer type (independently of the module's helper)."""
    if isinstance(layer, nn.ConvTranspose2d):
        return layer.weight.detach().permute(1, 0, 2, 3).reshape(layer.out_channels, -1)
    return layer.weight.detach().reshape(layer.weight.shape[0], -1)


def matrices(model):
    return {f"{path}.weight": nvae_matrix(layer) for path, layer in model.named_modules()
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))}


def closed_form(matrix, u0, k):
    """The estimate after k power iterations from u0, from the SVD; also the bound on its distance to sigma_1."""
    left, sigma, _ = torch.linalg.svd(matrix, full_matrices=False)
    a = left.T @ u0  # [r]
    ratio = sigma / sigma[0]
    weights = (ratio ** (2 * k - 1) * a) ** 2
    estimate = sigma[0] * torch.sqrt((ratio**2 * weights).sum() / weights.sum())
    remaining = (weights[1:].sum() / weights[0]).item()  # relative error of estimate^2 <= remaining
    return estimate, remaining


def initial_u(regularizer, name):
    return regularizer.state_dict()[f"{name.replace('.', '__')}_u"].clone()


@pytest.mark.parametrize("k", [1, 2, 5])
def test_estimate_after_k_iterations_is_the_closed_form(k):
    model = network()
    regularizer = SpectralRegularizer(model, init_iterations=k)
    u0 = {name: initial_u(regularizer, name) for name in regularizer.weight_names}
    total = regularizer()
    expected = {name: closed_form(matrix, u0[name], k)[0] for name, matrix in matrices(model).items()}
    estimates = regularizer.estimates()
    assert list(estimates) == list(expected) == regularizer.weight_names
    for name in expected:
        torch.testing.assert_close(estimates[name], expected[name], rtol=CLOSED_FORM_RTOL, atol=0)
    torch.testing.assert_close(total.detach(), sum(expected.values()), rtol=CLOSED_FORM_RTOL, atol=0)


def test_converges_to_the_spectral_norm_with_its_gradient():
    model = network()
    k = 200
    regularizer = SpectralRegularizer(model, init_iterations=k)
    u0 = {name: initial_u(regularizer, name) for name in regularizer.weight_names}
    total = regularizer()
    total.backward()
    estimates = regularizer.estimates()
    for (path, layer), (name, matrix) in zip(
            [(p, m) for p, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))],
            matrices(model).items()):
        _, remaining = closed_form(matrix, u0[name], k)
        assert remaining < 1e-15, f"{name}: {k} iterations do not converge for this gap ({remaining:.2g})"
        torch.testing.assert_close(estimates[name], torch.linalg.matrix_norm(matrix, ord=2),
                                   rtol=CONVERGED_RTOL, atol=0)
        left, _, right_t = torch.linalg.svd(matrix)
        gradient = torch.outer(left[:, 0], right_t[0])  # d sigma_1 / d W, the same for either sign of the pair
        if isinstance(layer, nn.ConvTranspose2d):
            gradient = gradient.reshape(layer.out_channels, layer.in_channels, *layer.kernel_size).transpose(0, 1)
        torch.testing.assert_close(layer.weight.grad, gradient.reshape(layer.weight.shape),
                                   rtol=0, atol=CONVERGED_RTOL)


def test_gradient_holds_u_and_v_fixed():
    """Before convergence too, d (u^T W v) / d W = u v^T with the vectors the call leaves in the buffers."""
    model = network()
    regularizer = SpectralRegularizer(model, init_iterations=2)
    regularizer().backward()
    for path, layer in model.named_modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            key = f"{path}__weight"
            gradient = torch.outer(regularizer.get_buffer(f"{key}_u"), regularizer.get_buffer(f"{key}_v"))
            if isinstance(layer, nn.ConvTranspose2d):
                gradient = gradient.reshape(layer.out_channels, layer.in_channels, *layer.kernel_size).transpose(0, 1)
            torch.testing.assert_close(layer.weight.grad, gradient.reshape(layer.weight.shape),
                                       rtol=CLOSED_FORM_RTOL, atol=CLOSED_FORM_RTOL)


def test_one_iteration_per_call_continues_across_calls():
    """The vectors persist: after t calls of one iteration each (the first of `init_iterations` = 3), the
    estimate is the closed form of 2 + t iterations; and the iteration converges over calls."""
    model = network()
    regularizer = SpectralRegularizer(model, n_power_iterations=1, init_iterations=3)
    u0 = {name: initial_u(regularizer, name) for name in regularizer.weight_names}
    for call in range(1, 6):
        regularizer()
        for name, matrix in matrices(model).items():
            expected, _ = closed_form(matrix, u0[name], 2 + call)
            torch.testing.assert_close(regularizer.estimates()[name], expected, rtol=CLOSED_FORM_RTOL, atol=0,
                                       msg=lambda m: f"{name} after call {call}: {m}")
    for _ in range(200):
        regularizer()
    for name, matrix in matrices(model).items():
        assert closed_form(matrix, u0[name], 205)[1] < 1e-15
        torch.testing.assert_close(regularizer.estimates()[name], torch.linalg.matrix_norm(matrix, ord=2),
                                   rtol=CONVERGED_RTOL, atol=0)


def test_state_dict_round_trips():
    model = network()
    regularizer = SpectralRegularizer(model, n_power_iterations=2, init_iterations=3)
    for _ in range(2):
        regularizer()
    state = regularizer.state_dict()
    assert sorted(state) == sorted(["0__weight_u", "0__weight_v", "1__weight_u", "1__weight_v", "2__weight_u",
                                    "2__weight_v", "4__weight_u", "4__weight_v", "initialized"])
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    resumed = SpectralRegularizer(model, n_power_iterations=2, init_iterations=3)  # fresh random vectors
    resumed.load_state_dict(torch.load(buffer))
    assert torch.equal(resumed(), regularizer())  # the resumed run takes 2 steps, not 3 from the start
    for name, value in regularizer.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


def test_transposed_convolution_rows_are_output_channels():
    layer = nn.ConvTranspose2d(2, 5, 3).to(DTYPE)  # weight [in 2, out 5, 3, 3]
    regularizer = SpectralRegularizer(layer, init_iterations=200)
    assert regularizer.weight_u.shape == (5,) and regularizer.weight_v.shape == (2 * 9,)
    u0 = regularizer.weight_u.clone()
    regularizer()
    matrix = layer.weight.detach().transpose(0, 1).reshape(5, -1)
    assert closed_form(matrix, u0, 200)[1] < 1e-15
    expected = torch.linalg.matrix_norm(matrix, ord=2)
    untransposed = torch.linalg.matrix_norm(layer.weight.detach().reshape(2, -1), ord=2)
    assert abs(expected - untransposed) > 1e3 * CONVERGED_RTOL * expected  # the views differ for this weight
    torch.testing.assert_close(regularizer.estimates()["weight"], expected, rtol=CONVERGED_RTOL, atol=0)


def test_linear_layer():
    layer = nn.Linear(7, 4).to(DTYPE)
    regularizer = SpectralRegularizer(layer, init_iterations=200)
    assert regularizer.weight_u.shape == (4,) and regularizer.weight_v.shape == (7,)
    u0 = regularizer.weight_u.clone()
    regularizer()
    assert closed_form(layer.weight.detach(), u0, 200)[1] < 1e-15
    torch.testing.assert_close(regularizer.estimates()["weight"],
                               torch.linalg.matrix_norm(layer.weight.detach(), ord=2), rtol=CONVERGED_RTOL, atol=0)


def test_the_watched_module_is_not_a_submodule():
    model = network()
    n_parameters = len(list(model.parameters()))
    model.spectral = SpectralRegularizer(model)  # a model that holds its regularizer: no cycle
    assert len(list(model.parameters())) == n_parameters
    assert list(model.spectral.parameters()) == [] and list(model.spectral.children()) == []
    assert all(name.startswith("spectral.") for name in model.state_dict() if "__weight_" in name)
    model.to(torch.float32)  # .to() reaches the regularizer's buffers through the model, once
    assert model.spectral.get_buffer("0__weight_u").dtype == torch.float32
    assert model.spectral().dtype == torch.float32


def test_estimates_do_not_update():
    model = network()
    regularizer = SpectralRegularizer(model)
    total = regularizer()
    before = {name: value.clone() for name, value in regularizer.state_dict().items()}
    first, second = regularizer.estimates(), regularizer.estimates()
    assert all(torch.equal(first[name], second[name]) and not first[name].requires_grad for name in first)
    assert all(torch.equal(before[name], value) for name, value in regularizer.state_dict().items())
    torch.testing.assert_close(sum(first.values()), total.detach(), rtol=CLOSED_FORM_RTOL, atol=0)


def test_buffers_follow_the_weights_device_and_dtype(device):
    model = network().to(device=device, dtype=torch.float32)
    regularizer = SpectralRegularizer(model)
    assert all(b.device.type == device.type and b.dtype == torch.float32
               for name, b in regularizer.named_buffers() if name != "initialized")
    regularizer.to(torch.float64)  # vectors in another dtype than the weights are converted, and written back
    value = regularizer()
    assert value.dtype == torch.float32 and value.device.type == device.type
    assert regularizer.get_buffer("4__weight_v").dtype == torch.float64
    assert regularizer.initialized.dtype == torch.bool


def test_bad_arguments():
    with pytest.raises(TypeError, match="`module` must be an nn.Module; got Tensor"):
        SpectralRegularizer(torch.zeros(3))
    with pytest.raises(ValueError, match="`module` \\(ReLU\\) has no Conv2d, ConvTranspose2d, Linear layer"):
        SpectralRegularizer(nn.ReLU())
    with pytest.raises(ValueError, match="`n_power_iterations` must be a positive integer; got 0"):
        SpectralRegularizer(nn.Linear(2, 2), n_power_iterations=0)
    with pytest.raises(ValueError, match="`init_iterations` must be a positive integer; got 2.5"):
        SpectralRegularizer(nn.Linear(2, 2), init_iterations=2.5)
