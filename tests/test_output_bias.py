"""p(x|z)'s output biases started at the logits of the training data's mean (`initialize_output_bias`, and the
command line's --output-bias)."""

import json

import pytest
import torch

from blackbox_vae import log_likelihood_bound
from blackbox_vae.cli import main
from blackbox_vae.cli.config import TrainConfig
from blackbox_vae.cli.training import build_run
from blackbox_vae.models import (CategoricalGenModel, DeepSBNGenModel, GaussianMLPGenModel, HVAEGenModel,
                                 SBNGenModel, initialize_output_bias)

TINY = ["--steps", "2", "--log-every", "1", "--eval-every", "2", "--checkpoint-every", "2", "--eval-k", "2",
        "--eval-size", "20", "--batch-size", "8", "--progress", "false"]


@pytest.mark.parametrize("gen_model", [
    SBNGenModel(6, 3), DeepSBNGenModel(6, [3, 2], hidden=[4]), CategoricalGenModel(6, 2, 3, hidden=(4,)),
    GaussianMLPGenModel(6, 2, hidden=(4,), likelihood="bernoulli"), HVAEGenModel(6, (2, 3), hidden=(4,)),
], ids=lambda model: type(model).__name__)
def test_the_bias_becomes_the_logits_of_the_clipped_means(gen_model):
    data = torch.tensor([[1, 0, 1, 1, 0, 0], [1, 0, 0, 1, 1, 0], [1, 0, 0, 0, 1, 1], [1, 0, 0, 0, 0, 1]],
                        dtype=torch.float32)
    assert initialize_output_bias(gen_model, data)
    expected = torch.logit(torch.tensor([0.999, 0.001, 0.25, 0.5, 0.5, 0.5]))
    torch.testing.assert_close(gen_model.output_logits_bias.detach(), expected)


def test_models_without_such_a_bias_are_left_alone_and_shapes_are_checked():
    assert not initialize_output_bias(GaussianMLPGenModel(6, 2, hidden=(4,)), torch.rand(4, 6))  # Gaussian p(x|z)
    assert not initialize_output_bias(HVAEGenModel(784, (2, 3), hidden=(4,), architecture="conv"), torch.rand(4, 784))
    with pytest.raises(ValueError, match=r"`data` must be \[N, D\] with D = 6 .* got shape \(4, 5\)"):
        initialize_output_bias(SBNGenModel(6, 3), torch.rand(4, 5))


def test_it_starts_the_model_at_the_data_marginal():
    """At initialization, the bound on held-out digits is far better with the biases set (the decoder predicts
    each pixel's frequency instead of one half) — the reason the papers do it."""
    bounds = {}
    for output_bias in (True, False):
        run = build_run(TrainConfig(data="digits", output_bias=output_bias).validate())
        assert run.config.output_bias is output_bias
        with torch.no_grad():
            bounds[output_bias] = log_likelihood_bound(run.inf_net, run.gen_model, run.dataset.valid[:200], 10).mean()
    assert bounds[True] > bounds[False] + 5.0, bounds


def test_the_command_line_records_what_took_effect_and_refuses_it_where_it_cannot_act(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "default"), *TINY]) == 0
    assert json.loads((tmp_path / "default" / "config.json").read_text())["output_bias"] is True
    assert main(["train", "--out", str(tmp_path / "off"), "--output-bias", "false", *TINY]) == 0
    assert json.loads((tmp_path / "off" / "config.json").read_text())["output_bias"] is False
    assert main(["train", "--out", str(tmp_path / "real"), "--data", "gaussian-2d", "--model", "gaussian",
                 "--loss", "elbo", *TINY]) == 0
    assert json.loads((tmp_path / "real" / "config.json").read_text())["output_bias"] is False
    assert main(["train", "--out", str(tmp_path / "refused"), "--data", "gaussian-2d", "--model", "gaussian",
                 "--loss", "elbo", "--output-bias", "true", *TINY]) == 2
    assert "`output_bias` (--output-bias) true" in capsys.readouterr().err


def test_runs_saved_before_the_setting_resume_with_zero_biases_recorded(tmp_path):
    """A config.json without the key was trained from zero biases; resuming keeps the checkpoint's value."""
    assert TrainConfig.from_saved({"loss": "vimco"}, "old run").output_bias is False
    assert main(["train", "--out", str(tmp_path / "run"), "--output-bias", "false", *TINY]) == 0
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--steps", "4", "--output-bias", "true",
                 *TINY[2:]]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["output_bias"] is False
