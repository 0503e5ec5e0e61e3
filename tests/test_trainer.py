"""`blackbox_vae.Trainer`: the command line's machinery for a user's own loss, models and data, and a
factory model (``--model package.module:function``) through the command line — both resumed exactly after
kill -9."""

from __future__ import annotations

import csv
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from blackbox_vae import Callback, Loss, Trainer
from blackbox_vae.cli import main
from blackbox_vae.cli.checkpoint import load_checkpoint
from blackbox_vae.data import load_dataset

MODELS = '''
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent
from blackbox_vae import DistributionGenModel, DistributionInfNet


class Encoder(DistributionInfNet):
    def __init__(self, data_dim, latents):
        super().__init__()
        self.net = nn.Linear(data_dim, latents)

    def distribution(self, x):
        return Independent(Bernoulli(logits=self.net(x)), 1)


class Decoder(DistributionGenModel):
    def __init__(self, data_dim, latents):
        super().__init__()
        self.prior_logits = nn.Parameter(torch.zeros(latents))
        self.net = nn.Linear(latents, data_dim)

    def prior(self):
        return Independent(Bernoulli(logits=self.prior_logits), 1)

    def likelihood(self, z):
        return Independent(Bernoulli(logits=self.net(z)), 1)


def build(data_dim, image_shape, likelihood, latents=6):
    return Encoder(data_dim, latents), Decoder(data_dim, latents)


def broken(data_dim, image_shape, likelihood):
    encoder, decoder = build(data_dim, image_shape, likelihood)
    encoder.forward = lambda x: None  # breaks the contract: forward must return self
    return encoder, decoder
'''


@pytest.fixture
def user_project(tmp_path, monkeypatch):
    """A folder with the user's models module and an .npy of binary rows; the current directory."""
    (tmp_path / "user_models.py").write_text(MODELS)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "rows.npy", (rng.random((200, 10)) < 0.3).astype(np.float32))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


class MyScoreFunction(Loss):
    """A user's own estimator: the plain score-function ELBO gradient, written as the docs show."""

    def _estimate(self, data):
        _, log_q, log_p = self._draw(data, "sample")
        signal = (log_p - log_q).detach()
        objective = -(log_p - log_q).mean()
        surrogate = -(signal * log_q + log_p).mean()
        return objective.detach(), surrogate


def models(data_dim=10, latents=6):
    import user_models

    torch.manual_seed(0)
    return user_models.build(data_dim, None, "bernoulli", latents)


def test_a_users_own_loss_trains_through_the_trainer(user_project):
    dataset = load_dataset(user_project / "rows.npy")
    trainer = Trainer(MyScoreFunction(*models(), n_samples=4), dataset, out=user_project / "run", batch_size=16,
                      lr=1e-2, log_every=10, eval_every=50, eval_k=5, checkpoint_every=25, progress=False)
    summary = trainer.fit(100)
    assert summary["steps"] == 100 and summary["valid_bound"] is not None
    rows = list(csv.DictReader((user_project / "run" / "metrics.csv").read_text().splitlines()))
    assert [int(row["step"]) for row in rows] == list(range(10, 101, 10))
    assert float(rows[-1]["train_bound"]) > float(rows[0]["train_bound"])  # it learns
    assert (user_project / "run" / "loss_curve.png").is_file()
    assert json.loads((user_project / "run" / "config.json").read_text())["loss"] == "MyScoreFunction"
    assert load_checkpoint(user_project / "run" / "checkpoint.pt")["step"] == 100


@pytest.mark.parametrize("kind", ["tensor", "torch-dataset", "dataloader", "path"])
def test_the_trainer_takes_data_in_every_form(user_project, kind):
    rows = torch.from_numpy(np.load(user_project / "rows.npy"))
    data = {"tensor": rows, "torch-dataset": torch.utils.data.TensorDataset(rows),
            "dataloader": torch.utils.data.DataLoader(torch.utils.data.TensorDataset(rows), batch_size=7),
            "path": user_project / "rows.npy"}[kind]
    from blackbox_vae import VIMCOLoss

    trainer = Trainer(VIMCOLoss(*models(), n_samples=3), data, out=user_project / kind, batch_size=8, steps=6,
                      log_every=3, progress=False)
    assert trainer.fit()["steps"] == 6
    assert len(trainer.train_rows) == (160 if kind == "path" else 200)


def test_callbacks_see_every_step_row_and_checkpoint(user_project):
    class Recorder(Callback):
        def __init__(self):
            self.events = []

        def on_step(self, trainer, step):
            self.events.append(("step", step))

        def on_evaluation(self, trainer, row):
            self.events.append(("row", row["step"], row["valid_bound"] != ""))

        def on_checkpoint(self, trainer, path):
            self.events.append(("checkpoint", load_checkpoint(path)["step"]))

    recorder = Recorder()
    from blackbox_vae import VIMCOLoss

    Trainer(VIMCOLoss(*models(), n_samples=3), user_project / "rows.npy", out=user_project / "run", batch_size=8,
            log_every=2, eval_every=4, checkpoint_every=3, eval_k=3, callbacks=[recorder], progress=False).fit(4)
    assert recorder.events == [("step", 1), ("step", 2), ("row", 2, False), ("step", 3), ("checkpoint", 3),
                               ("step", 4), ("row", 4, True), ("checkpoint", 4)]


def test_a_given_optimizer_and_its_schedule(user_project):
    from blackbox_vae import VIMCOLoss

    trainer = Trainer(VIMCOLoss(*models(), n_samples=3), user_project / "rows.npy", out=user_project / "run",
                      optimizer=functools.partial(torch.optim.SGD, lr=0.5), batch_size=8, progress=False)
    trainer.fit(3)
    assert isinstance(trainer.optimizer, torch.optim.SGD) and trainer.optimizer.param_groups[0]["lr"] == 0.5


def test_trainer_settings_are_checked(user_project):
    from blackbox_vae import VIMCOLoss

    loss = VIMCOLoss(*models(), n_samples=3)
    with pytest.raises(TypeError, match="the settings are steps, batch_size"):
        Trainer(loss, user_project / "rows.npy", batch_sise=8)
    with pytest.raises(ValueError, match="`lr` .* must be a positive"):
        Trainer(loss, user_project / "rows.npy", lr=-1)
    with pytest.raises(TypeError, match="must be a blackbox_vae Loss"):
        Trainer(torch.nn.Linear(2, 2), user_project / "rows.npy")


def test_tensorboard_gets_scalars_and_images(user_project):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = user_project / "tb"
    (user_project / "images").mkdir()
    from PIL import Image

    rng = np.random.default_rng(0)
    for index in range(24):
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(user_project / "images" / f"{index}.png")
    assert main(["train", "--data", str(user_project / "images"), "--model", "user_models:build", "--steps", "4",
                 "--log-every", "2", "--eval-every", "4", "--eval-k", "3", "--batch-size", "4", "--tensorboard",
                 "true", "--progress", "false", "--out", str(out)]) == 0
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0}).Reload()
    tags = events.Tags()
    assert {"loss/objective", "optimizer/learning_rate", "optimizer/gradient_norm", "bound/valid"} <= set(tags["scalars"])
    assert {"samples", "reconstructions"} <= set(tags["images"])
    assert [event.step for event in events.Scalars("loss/objective")] == [2, 4]


# ------------------------------------------------------------------------------------ factory models
def test_a_factory_model_trains_evaluates_and_samples_by_its_path(user_project):
    out = user_project / "run"
    assert main(["train", "--data", "rows.npy", "--model", "user_models:build", "--model-option", "latents=3",
                 "--steps", "6", "--batch-size", "8", "--eval-k", "3", "--progress", "false", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "user_models:build" and config["model_options"] == {"latents": 3}
    assert main(["evaluate", str(out), "--k", "4"]) == 0
    assert main(["sample", str(out), "-n", "4", "--sampler", "bernoulli-mixture", "--components", "2"]) == 0
    assert main(["train", "--out", str(out), "--resume", "--steps", "9"]) == 0


@pytest.mark.parametrize("target, expected", [
    ("no_such_module:build", "cannot import no_such_module (ModuleNotFoundError"),
    ("user_models:nothing", "user_models has no attribute 'nothing'"),
    ("user_models:torch", "torch is a module, not a function"),
    ("user_models:broken", "fail the contract checks on one batch"),
])
def test_a_bad_factory_is_one_line(user_project, capsys, target, expected):
    out = user_project / "run"
    assert main(["train", "--data", "rows.npy", "--model", target, "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"blackbox-vae train: error: --model {target}: ") and expected in error
    assert not out.exists()


SCRIPT = '''
import sys
import torch
import user_models
from blackbox_vae import Trainer, VIMCOLoss
from blackbox_vae.data import load_dataset

torch.manual_seed(0)
loss = VIMCOLoss(*user_models.build(10, None, "bernoulli"), n_samples=3)
Trainer(loss, load_dataset("rows.npy"), out=sys.argv[1], batch_size=8, log_every=25, eval_every=200, eval_k=3,
        checkpoint_every=20, progress=False).fit(300, resume=len(sys.argv) > 2)
'''


def _kill_after_first_checkpoint(command: list[str], out: Path, cwd: Path) -> int:
    """Starts ``command``, kills it with SIGKILL once a checkpoint exists, and returns the checkpoint's step."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pt").is_file():
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    return load_checkpoint(out / "checkpoint.pt")["step"]


@pytest.mark.slow  # a long end-to-end run (17 s): in `pytest -m slow` (and .ci/run)
@pytest.mark.parametrize("how", ["trainer", "command line"])
def test_killed_with_sigkill_and_resumed_equals_the_uninterrupted_run(user_project, how):
    if how == "trainer":
        (user_project / "fit.py").write_text(SCRIPT)
        command = lambda out, *resume: [sys.executable, "fit.py", str(out), *resume]  # noqa: E731
    else:
        flags = ["--data", "rows.npy", "--model", "user_models:build", "--loss", "vimco", "--n-samples", "3",
                 "--steps", "300", "--batch-size", "8", "--log-every", "25", "--eval-every", "200", "--eval-k", "3",
                 "--checkpoint-every", "20", "--progress", "false"]
        command = lambda out, *resume: [sys.executable, "-m", "blackbox_vae", "train", *flags,  # noqa: E731
                                        "--out", str(out), *(["--resume"] if resume else [])]
    whole, cut = user_project / "whole", user_project / "cut"
    subprocess.run(command(whole), cwd=user_project, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    step = _kill_after_first_checkpoint(command(cut), cut, user_project)
    assert step < 300
    subprocess.run(command(cut, "resume"), cwd=user_project, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    final = {run: load_checkpoint(run / "checkpoint.pt") for run in (whole, cut)}
    tensors = [key for key, value in final[whole]["loss"].items() if isinstance(value, torch.Tensor)]
    assert tensors and all(torch.equal(final[whole]["loss"][key], final[cut]["loss"][key]) for key in tensors)

    def rows(run):
        return [{k: v for k, v in row.items() if k != "seconds"}
                for row in csv.DictReader((run / "metrics.csv").read_text().splitlines())]

    assert rows(whole) == rows(cut) and len(rows(whole)) == 12


def test_tensorboard_without_the_package_is_one_line(user_project, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    out = user_project / "tb"
    assert main(["train", "--data", "rows.npy", "--tensorboard", "true", "--out", str(out)]) == 2
    assert "pip install 'blackbox_vae[tensorboard]'" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("pair", ["gaussian-elbo", "sbn-vimco"])
def test_the_default_fused_adam_takes_the_steps_of_torch_s_default_adam(tmp_path, pair):
    """The Trainer's default optimizer (Adam, fused) against torch.optim.Adam's default implementation: the
    same parameters after 100 steps, to float32 rounding accumulated over the steps (16 times what was measured)."""
    from blackbox_vae import ELBOLoss, Trainer, VIMCOLoss
    from blackbox_vae.models import GaussianMLPGenModel, GaussianMLPInfNet, SBNGenModel, SBNInfNet

    def run(out, optimizer):
        torch.manual_seed(0)
        if pair == "gaussian-elbo":
            loss, data = ELBOLoss(GaussianMLPInfNet(6, 3, [16]), GaussianMLPGenModel(6, 3, [16]), 2), torch.randn(64, 6)
        else:
            loss = VIMCOLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), 3)
            data = torch.bernoulli(torch.full((64, 6), 0.3))
        trainer = Trainer(loss, data, out, optimizer=optimizer, steps=100, batch_size=16, log_every=50,
                          eval_every=100, checkpoint_every=100, progress=False)
        trainer.fit()
        return trainer.optimizer, [p.detach().clone() for p in loss.parameters()]

    fused, ours = run(tmp_path / "ours", None)
    assert fused.param_groups[0]["fused"] is True
    _, reference = run(tmp_path / "reference", lambda parameters: torch.optim.Adam(parameters, lr=1e-3))
    for a, b in zip(ours, reference):  # measured: 6e-8 apart at most; amsgrad (another update) moves them 7e-6
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
