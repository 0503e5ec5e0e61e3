"""NVAE (blackbox_vae.models.nvae): the contract, the residual posterior, the walk cache, KL warm-up and
balancing, temperature sampling, batch-norm readjustment, presets, resume and bad configurations."""

from __future__ import annotations

import copy

import pytest
import torch

from blackbox_vae.cli import main
from blackbox_vae.cli.config import TrainConfig, load_config_file
from blackbox_vae.cli.presets import preset_names, resolve_config
from blackbox_vae.evaluation import log_likelihood_bound
from blackbox_vae.losses import ELBOLoss, IWAELoss
from blackbox_vae.models.nvae import ArchitectureError, NVAEArchitecture, NVAEGenModel, NVAEInfNet
from blackbox_vae.models.nvae.batch_norm import readjust_batch_norm
from blackbox_vae.models.registry import build_models
from blackbox_vae.testing import check_gen_model, check_inf_net

#: a micro NVAE of 8x8 images (two scales: 2x2 and 4x4 latents), fast enough for exact checks
MICRO = dict(image_size=8, scales=2, groups_per_scale=2, latent_channels=2, encoder_channels=4, decoder_channels=4,
             preprocess_blocks=1, postprocess_blocks=1, decoder_expansion=2)


def micro_pair(likelihood: str = "bernoulli", **changes) -> tuple[NVAEInfNet, NVAEGenModel]:
    torch.manual_seed(0)
    gen_model = NVAEGenModel((1, 8, 8), {**MICRO, "likelihood": likelihood, **changes})
    return NVAEInfNet(gen_model), gen_model


def binary_images(n: int, side: int = 8) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, side * side), 0.3))


# ------------------------------------------------------------------------------------------- contract
def test_tiny_preset_meets_the_model_contract():
    """The testing kit's checks on the nvae-tiny preset (28x28 MNIST-shaped images padded to 32). Batch norm
    uses batch statistics in training mode, so one sample's log-prob depends on the others in the batch:
    the vectorization checks run in eval mode, as evaluation does."""
    torch.manual_seed(0)
    architecture = load_config_file(resolve_config("nvae-tiny"))["architecture"]
    gen_model = NVAEGenModel((1, 28, 28), architecture).eval()
    inf_net = NVAEInfNet(gen_model).eval()
    data = torch.bernoulli(torch.full((2, 784), 0.2))
    check_inf_net(inf_net, data)
    check_gen_model(gen_model, data)


def test_latents_are_groups_of_batch_by_samples_and_all_losses_run():
    inf_net, gen_model = micro_pair()
    data = binary_images(3)
    latents = inf_net(data).rsample(4)
    assert [tuple(z.shape) for z in latents] == [(3, 4, 2, 2, 2)] * 2 + [(3, 4, 2, 4, 4)]
    for loss in (ELBOLoss(inf_net, gen_model, 2), IWAELoss(inf_net, gen_model, 3)):
        value = loss(data)
        value.backward()
        assert torch.isfinite(value)
    bound = log_likelihood_bound(inf_net.eval(), gen_model.eval(), data, n_samples=10, sample_chunk=4)
    assert bound.shape == (3,) and torch.isfinite(bound).all()


def test_group_log_probs_sum_to_the_log_probs():
    inf_net, gen_model = micro_pair()
    data = binary_images(2)
    latents = inf_net(data).sample(3)
    groups_q = inf_net.group_log_prob(latents)
    assert groups_q.shape == (2, 3, 3)
    torch.testing.assert_close(groups_q.sum(-1), inf_net.log_prob(latents))
    gen_model(data, latents)
    log_p = gen_model.log_prob(data, latents)
    log_likelihood = log_p - gen_model.group_log_prob(latents).sum(-1)
    assert (log_likelihood < 0).all()  # log p(x|z) of binary data: a Bernoulli log-probability


def test_walk_cache_gives_the_same_log_probs_and_gradients_as_a_fresh_walk():
    """p reuses the walk q's draw did; the result must equal p walking again (a wrong state would not)."""
    inf_net, gen_model = micro_pair()
    inf_net.eval(), gen_model.eval()
    data = binary_images(2)
    latents, _ = inf_net(data).sample_and_log_prob(3)  # detached draws: p's gradient is its own walk's
    cached = gen_model(data, latents).log_prob(data, latents)
    fresh_latents = tuple(z.clone() for z in latents)
    fresh = gen_model(data, fresh_latents).log_prob(data, fresh_latents)
    torch.testing.assert_close(cached, fresh)
    grad_cached = torch.autograd.grad(cached.sum(), gen_model.decoder.h0)[0]
    grad_fresh = torch.autograd.grad(fresh.sum(), gen_model.decoder.h0)[0]
    torch.testing.assert_close(grad_cached, grad_fresh)


def test_walk_cache_is_not_used_after_a_parameter_update():
    inf_net, gen_model = micro_pair()
    inf_net.eval(), gen_model.eval()
    data = binary_images(2)
    latents, _ = inf_net(data).rsample_and_log_prob(2)
    with torch.no_grad():
        gen_model.decoder.h0.add_(1.0)  # an optimizer step between q's draw and p's scoring
    stale = gen_model(data, latents).log_prob(data, latents)
    fresh_latents = tuple(z.detach().clone() for z in latents)
    torch.testing.assert_close(stale, gen_model(data, fresh_latents).log_prob(data, fresh_latents))


def test_residual_posterior_is_relative_to_the_prior():
    """With q's heads zeroed, every group below the top has q(z_g | x, z_<g) = p(z_g | z_<g): NVAE's residual
    parameterization (mu_q = mu_p + delta, log sigma_q = log sigma_p + delta)."""
    inf_net, gen_model = micro_pair()
    inf_net.eval(), gen_model.eval()
    with torch.no_grad():
        for head in inf_net.heads:
            head.weight.zero_(), head.bias.zero_()
    data = binary_images(2)
    latents = inf_net(data).sample(3)
    gen_model(data, latents)
    torch.testing.assert_close(inf_net.group_log_prob(latents)[..., 1:], gen_model.group_log_prob(latents)[..., 1:])


# ------------------------------------------------------------------------------------- KL warm-up
def test_kl_warmup_coefficient_rises_linearly_and_counts_training_calls_only():
    inf_net, gen_model = micro_pair()
    loss = ELBOLoss(inf_net, gen_model, 1, kl_warmup_steps=4)
    data = binary_images(2)
    seen = []
    for _ in range(6):
        seen.append(loss.kl_coefficient)
        loss(data)
    assert seen == [1e-4, 0.25, 0.5, 0.75, 1.0, 1.0]
    with torch.no_grad():
        loss(data)  # evaluation calls do not advance the warm-up
    assert loss.steps == 6
    restored = ELBOLoss(*micro_pair(), 1, kl_warmup_steps=4)
    restored.load_state_dict(loss.state_dict())
    assert restored.steps == 6


@pytest.mark.parametrize("balancing", [False, True])
def test_kl_warmup_surrogate_has_the_gradient_of_the_weighted_objective(balancing):
    """The value is the plain negative ELBO; the gradient is that of -(log p(x|z) - beta * sum_g gamma_g KL_g) on
    the same draw, with gamma (balancing) the detached NVAE weights."""
    inf_net, gen_model = micro_pair()
    inf_net.eval(), gen_model.eval()  # batch statistics would differ between the two evaluations
    loss = ELBOLoss(inf_net, gen_model, 2, kl_warmup_steps=10, kl_balancing=balancing)
    loss.steps = 3  # beta = 0.3
    data = binary_images(3)
    torch.manual_seed(5)
    value = loss(data)
    gradient = torch.autograd.grad(value, gen_model.decoder.h0, retain_graph=True)[0]
    torch.manual_seed(5)
    latents, log_q = inf_net(data).rsample_and_log_prob(2)
    log_p = gen_model(data, latents).log_prob(data, latents)
    torch.testing.assert_close(value, -(log_p - log_q).mean())
    kl_groups = inf_net.group_log_prob(latents) - gen_model.group_log_prob(latents)
    log_likelihood = log_p - gen_model.group_log_prob(latents).sum(-1)
    if balancing:
        share = kl_groups.detach().abs().mean(dim=(0, 1)) + 0.01
        sizes = torch.tensor([8.0, 8.0, 32.0])  # units per group; two groups of 8, one of 32
        alpha = sizes / torch.tensor([2.0, 2.0, 1.0])
        gamma = share / (alpha / alpha.min())
        gamma = gamma / gamma.mean()
    else:
        gamma = torch.ones(3)
    expected = -(log_likelihood - 0.3 * (kl_groups * gamma).sum(-1)).mean()
    torch.testing.assert_close(gradient, torch.autograd.grad(expected, gen_model.decoder.h0)[0])


def test_kl_options_need_the_group_hooks():
    from blackbox_vae.models import GaussianMLPGenModel, GaussianMLPInfNet

    with pytest.raises(NotImplementedError, match="group_log_prob"):
        ELBOLoss(GaussianMLPInfNet(4, 2, (8,)), GaussianMLPGenModel(4, 2, (8,)), kl_warmup_steps=5)
    with pytest.raises(ValueError, match="kl_warmup_steps"):
        ELBOLoss(*micro_pair(), kl_warmup_steps=-1)
    with pytest.raises(ValueError, match="kl_balancing"):
        ELBOLoss(*micro_pair(), kl_balancing=True)


# ------------------------------------------------------------------------------------------- sampling
def test_temperature_zero_gives_the_prior_means():
    inf_net, gen_model = micro_pair()
    gen_model.eval()
    latents = gen_model.sample_latents(4, temperature=0.0)
    assert torch.equal(latents[0], torch.zeros_like(latents[0]))
    _, priors, _ = gen_model.decoder.walk(4, lambda group, h, prior: latents[group])
    for z, prior in zip(latents, priors):
        torch.testing.assert_close(z, prior.mean)
    assert not torch.equal(gen_model.sample_latents(4, temperature=0.5)[1], latents[1])
    with pytest.raises(ValueError, match="temperature"):
        gen_model.sample(2, temperature=-1.0)


def test_batch_norm_readjustment_changes_the_running_statistics_and_nothing_else():
    inf_net, gen_model = micro_pair()
    gen_model.eval()
    before = copy.deepcopy(gen_model.state_dict())
    modes = {name: module.training for name, module in gen_model.named_modules()}
    layers = readjust_batch_norm(gen_model, passes=3, batch_size=8, temperature=0.6)
    assert layers > 0
    after = gen_model.state_dict()
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.endswith(statistics) for name in changed)
    assert any(name.endswith("running_mean") for name in changed)
    assert {name: module.training for name, module in gen_model.named_modules()} == modes
    assert all(m.momentum == 0.1 for m in gen_model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with pytest.raises(ValueError, match="passes"):
        readjust_batch_norm(gen_model, passes=0)


# ----------------------------------------------------------------------------------------- likelihoods
def test_logistic_mixture_model_scores_8_bit_images():
    inf_net, gen_model = micro_pair("logistic-mixture", mixtures=3)
    data = torch.randint(0, 256, (2, 64)).float() / 255
    value = ELBOLoss(inf_net, gen_model, 2)(data)
    assert torch.isfinite(value) and value > 0
    samples, _ = gen_model.eval().sample(3)
    assert torch.equal(samples, (samples * 255).round() / 255) and samples.min() >= 0 and samples.max() <= 1


def test_likelihood_must_match_the_data():
    with pytest.raises(ValueError, match="binarization none"):
        build_models("nvae", 64, "bernoulli", architecture={**MICRO, "likelihood": "logistic-mixture"})
    with pytest.raises(ValueError, match="8-bit images"):
        build_models("sbn", 64, "8-bit")


# ----------------------------------------------------------------------------------- configuration
def test_presets_are_shipped_and_valid():
    assert {"nvae-tiny", "nvae-small", "nvae-mnist"} <= set(preset_names())
    for name in ("nvae-tiny", "nvae-small", "nvae-mnist"):
        values = load_config_file(resolve_config(name))
        values["data_dir"] = "unused"
        config = TrainConfig.from_dict(values, name)
        NVAEArchitecture.from_dict(config.architecture).validate((1, 28, 28))


@pytest.mark.slow  # a long end-to-end run: in `pytest -m slow` (and .ci/run)
def test_paper_preset_builds_its_model_and_takes_a_step():
    """The paper's MNIST model is defined here and trained on a GPU; a smoke test: one step on two images."""
    architecture = load_config_file(resolve_config("nvae-mnist"))["architecture"]
    inf_net, gen_model = build_models("nvae", 784, architecture=architecture)
    assert [shape for shape in gen_model.group_shapes] == [(20, 4, 4)] * 10 + [(20, 8, 8)] * 5
    value = ELBOLoss(inf_net, gen_model)(torch.bernoulli(torch.full((2, 784), 0.2)))
    value.backward()
    assert torch.isfinite(value)


@pytest.mark.parametrize("change, field", [
    ({"groups_per_scale": 0}, "architecture.groups_per_scale"),
    ({"scales": 0}, "architecture.scales"),
    ({"image_size": 30}, "architecture.image_size"),
    ({"likelihood": "gaussian"}, "architecture.likelihood"),
    ({"latent_channel": 4}, "unknown field"),
])
def test_bad_architectures_name_the_field(change, field):
    with pytest.raises(ArchitectureError, match=field):
        NVAEGenModel((1, 28, 28), {**MICRO, "image_size": 32, **change})


def test_image_size_the_scales_cannot_divide_is_a_config_error(tmp_path, capsys):
    status = main(["train", "--data", "digits", "--model", "nvae", "--loss", "elbo", "--arch", "image_size=12",
                   "--out", str(tmp_path / "run")])
    assert status == 2
    error = capsys.readouterr().err
    assert "architecture.image_size" in error and "multiple of 8" in error


def test_unknown_preset_names_the_presets(tmp_path, capsys):
    assert main(["train", "--config", "nvae-huge", "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "nvae-huge" in error and "nvae-tiny" in error


@pytest.mark.parametrize("flags, message", [
    (["--model", "nvae", "--layers", "20"], "does not apply to --model nvae"),
    (["--model", "sbn", "--arch", "scales=2"], "shapes --model nvae"),
    (["--model", "sbn", "--loss", "vimco", "--kl-warmup", "0.3"], "--loss elbo"),
    (["--model", "gaussian", "--loss", "elbo", "--kl-balancing", "true"], "warm-up"),
    (["--model", "gaussian", "--loss", "elbo", "--kl-warmup", "1.5"], "kl_warmup"),
    (["--model", "gaussian", "--loss", "elbo", "--grad-clip", "-1"], "grad_clip"),
    (["--model", "gaussian", "--loss", "elbo", "--spectral-reg", "-1"], "spectral_reg"),
])
def test_bad_training_aids_are_config_errors(tmp_path, capsys, flags, message):
    assert main(["train", *flags, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------------ command line
DIGITS_FLAGS = ["--data", "digits", "--model", "nvae", "--loss", "elbo", "--n-samples", "1", "--batch-size", "16",
                "--lr", "1e-3", "--kl-warmup", "0.5", "--kl-balancing", "true", "--spectral-reg", "0.01",
                "--grad-clip", "50", "--eval-every", "2", "--eval-k", "2", "--eval-size", "8", "--log-every", "1",
                "--progress", "false", *[flag for key, value in MICRO.items() for flag in ("--arch", f"{key}={value}")]]


@pytest.mark.slow  # a long end-to-end run: in `pytest -m slow` (and .ci/run)
def test_resume_reproduces_an_uninterrupted_run_exactly(tmp_path, monkeypatch):
    """A run killed after its step-2 checkpoint and resumed equals the uninterrupted run: the warm-up (its
    length a fraction of --steps), balancing, the spectral power-iteration vectors, batch-norm statistics and
    gradient clipping all continue bit for bit."""
    assert main(["train", *DIGITS_FLAGS, "--steps", "4", "--checkpoint-every", "4", "--out",
                 str(tmp_path / "straight")]) == 0
    from blackbox_vae import trainer as training

    step, calls = training._step, []

    def killed_at_step_3(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        step(*args)

    monkeypatch.setattr(training, "_step", killed_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        main(["train", *DIGITS_FLAGS, "--steps", "4", "--checkpoint-every", "2", "--out", str(tmp_path / "resumed")])
    monkeypatch.setattr(training, "_step", step)
    assert main(["train", *DIGITS_FLAGS, "--steps", "4", "--checkpoint-every", "2", "--out",
                 str(tmp_path / "resumed"), "--resume"]) == 0
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    for name, value in straight["loss"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, resumed["loss"][name]), name
    assert straight["loss"]["_extra_state"]["steps"] == 4
    assert straight["loss"]["_extra_state"]["settings"]["kl_warmup_steps"] == 2
    for name, value in straight["regularizer"].items():
        assert torch.equal(value, resumed["regularizer"][name]), name
    assert straight["metrics"] and [{k: v for k, v in row.items() if k != "seconds"} for row in straight["metrics"]] == \
        [{k: v for k, v in row.items() if k != "seconds"} for row in resumed["metrics"]]


@pytest.mark.slow  # a long end-to-end run: in `pytest -m slow` (and .ci/run)
def test_sample_with_temperature_and_batch_norm_readjustment(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *DIGITS_FLAGS, "--steps", "2", "--out", str(run)]) == 0
    assert main(["sample", str(run), "-n", "8", "--temperature", "0.6", "--bn-passes", "2"]) == 0
    assert (run / "samples.png").is_file()
    checkpoint = (run / "checkpoint.pt").read_bytes()
    assert main(["sample", str(run), "-n", "4", "--temperature", "-1"]) == 2
    assert "--temperature" in capsys.readouterr().err
    assert (run / "checkpoint.pt").read_bytes() == checkpoint  # readjustment never touches the checkpoint
    evaluate = main(["evaluate", str(run), "--k", "3", "--limit", "4", "--sample-chunk", "2"])
    assert evaluate == 0


def test_temperature_applies_to_nvae_only(tmp_path, capsys):
    run = tmp_path / "sbn"
    assert main(["train", "--data", "digits", "--steps", "2", "--eval-every", "2", "--out", str(run),
                 "--progress", "false"]) == 0
    assert main(["sample", str(run), "--temperature", "0.5"]) == 2
    assert "--model nvae" in capsys.readouterr().err


@pytest.mark.slow  # a long end-to-end run: in `pytest -m slow` (and .ci/run)
def test_a_run_resumed_to_more_steps_evaluates_with_its_warm_up(tmp_path):
    """The KL warm-up's length is fixed when a run starts (a fraction of its --steps then); evaluate loads a run
    resumed to more steps with that length, not with the fraction of its new --steps."""
    out = str(tmp_path / "run")
    assert main(["train", *DIGITS_FLAGS, "--steps", "2", "--out", out]) == 0
    assert main(["train", "--out", out, "--resume", "--steps", "4", "--progress", "false"]) == 0
    assert main(["evaluate", out, "--k", "2", "--limit", "4"]) == 0
