"""Data-parallel training under torch.distributed: two gloo processes against one process.

The processes are spawned once for the module (`distributed_runs`) and train several runs in turn, through
`blackbox_vae.cli.training.train` as torchrun would start it (its environment variables set by hand).

Latent draws are the one thing that cannot match process for process: each process draws its share's latents
from its own generator. So the equivalence runs use models whose noise is keyed to the data row and the step
(`KeyedSBNInfNet`, `KeyedGaussianInfNet`): then one process and two must agree to rounding, and what is tested
is everything else (each process's share of the batch, the averaged gradients, the synchronized running
baseline, the reduced history, the main process's checkpoint). The resume runs use the library's own models.
The spawning tests are marked slow (``pytest -m slow``, which .ci/run runs).
"""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path
from unittest import mock

import pytest
import torch
from torch import Tensor, nn

from blackbox_vae import InfNet
from blackbox_vae.cli.checkpoint import load_checkpoint
from blackbox_vae.cli.config import ConfigError, TrainConfig
from blackbox_vae.cli.training import train
from blackbox_vae.models.deep_sbn import bernoulli_log_prob
from blackbox_vae.models.gaussian_mlp import GaussianMLPGenModel
from blackbox_vae.models.sbn import SBNGenModel

LATENTS = 5


def _row_noise(data: Tensor, draw: int, shape: tuple[int, ...], kind: str) -> Tensor:
    """``[batch, *shape]`` noise, each row's from a generator seeded by the row's contents and ``draw``."""
    keys = (data.detach().double() * torch.arange(1, data.shape[1] + 1, dtype=torch.float64) * 7919).sum(1)
    rows = []
    for key in keys.tolist():
        generator = torch.Generator().manual_seed(int(key) * 1_000_003 + draw)
        rows.append(torch.rand(shape, generator=generator) if kind == "uniform"
                    else torch.randn(shape, generator=generator))
    return torch.stack(rows).to(data.dtype)


class KeyedSBNInfNet(InfNet):
    """q(z|x) = prod Bernoulli(sigmoid(Wx + b)), drawn with noise keyed to the row and the training step."""

    def __init__(self, data_dim: int):
        super().__init__()
        self.net = nn.Linear(data_dim, LATENTS)
        self.draws = 0

    def forward(self, data: Tensor) -> "KeyedSBNInfNet":
        self.params_, self.data_ = self.net(data), data
        return self

    def sample(self, n_samples: int = 1) -> Tensor:
        self.draws += self.training  # evaluation (main process only) leaves the key alone
        noise = _row_noise(self.data_, self.draws, (n_samples, LATENTS), "uniform")
        return (noise < torch.sigmoid(self.params_.detach()).unsqueeze(1)).to(self.params_.dtype)

    def log_prob(self, latents: Tensor) -> Tensor:
        return bernoulli_log_prob(self.params_.unsqueeze(1), latents)


class KeyedGaussianInfNet(InfNet):
    """q(z|x) = N(loc(x), scale(x)^2), reparameterized with noise keyed to the row and the training step."""

    def __init__(self, data_dim: int):
        super().__init__()
        self.net = nn.Linear(data_dim, 2 * LATENTS)
        self.draws = 0

    def forward(self, data: Tensor) -> "KeyedGaussianInfNet":
        loc, raw = self.net(data).chunk(2, -1)
        self.params_, self.data_ = (loc, nn.functional.softplus(raw) + 1e-3), data
        return self

    def rsample(self, n_samples: int = 1) -> Tensor:
        self.draws += self.training
        loc, scale = self.params_
        return loc.unsqueeze(1) + scale.unsqueeze(1) * _row_noise(self.data_, self.draws, (n_samples, LATENTS), "normal")

    def sample(self, n_samples: int = 1) -> Tensor:
        with torch.no_grad():
            return self.rsample(n_samples)

    def log_prob(self, latents: Tensor) -> Tensor:
        loc, scale = self.params_
        return torch.distributions.Normal(loc.unsqueeze(1), scale.unsqueeze(1)).log_prob(latents).sum(-1)


def keyed_models(model: str, data_dim: int, *args, **kwargs):
    torch.manual_seed(0)
    if model == "sbn":
        return KeyedSBNInfNet(data_dim), SBNGenModel(data_dim, LATENTS)
    return KeyedGaussianInfNet(data_dim), GaussianMLPGenModel(data_dim, LATENTS, (16,), likelihood="bernoulli")


def keyed_factory(data_dim: int, image_shape, likelihood: str):
    """A user's model factory (``--model test_distributed:keyed_factory``): the keyed SBN."""
    return keyed_models("sbn", data_dim)


def settings(out: Path, **values) -> TrainConfig:
    base = dict(data="digits", batch_size=8, steps=12, log_every=4, eval_every=6, eval_k=5, eval_size=20,
                checkpoint_every=6, out=str(out), lr=3e-2)
    return TrainConfig(**{**base, **values})


#: name: (settings, keyed models). The keyed runs are compared with one process; the resume runs with each other.
RUNS = {
    "running-baseline": (dict(model="sbn", layers=[LATENTS], loss="score-function", baseline="mean",
                              n_samples=3), True),
    "nvil": (dict(model="sbn", layers=[LATENTS], loss="nvil", n_samples=2, lr=3e-3), True),
    "reparameterized": (dict(model="gaussian", layers=[LATENTS], loss="iwae", n_samples=3), True),
    # a model of one's own, by import path: the factory is imported in every process
    "factory": (dict(model="test_distributed:keyed_factory", loss="score-function", baseline="mean",
                     n_samples=3), True),
    "whole": (dict(model="sbn", layers=[LATENTS], loss="vimco", n_samples=3), False),
    "first-half": (dict(model="sbn", layers=[LATENTS], loss="vimco", n_samples=3, steps=6), False),
}


def sgd(parameters, lr, **implementation):  # Adam's other keywords (fused) do not apply to SGD
    return torch.optim.SGD(parameters, lr=lr)


def _train_all(directory: Path) -> None:
    for name, (values, keyed) in RUNS.items():
        if not keyed:
            train(settings(directory / name, **values), progress=False)
            continue
        # Plain SGD for the comparisons: Adam's first steps move every parameter by about the learning rate
        # whatever the size of its gradient, so a gradient that is zero up to rounding (a sum that cancels) would
        # move by +-lr in one run and -+lr in the other.
        with mock.patch("blackbox_vae.cli.training.build_models", keyed_models), \
                mock.patch("blackbox_vae.cli.training.torch.optim.Adam", sgd):
            train(settings(directory / name, **values), progress=False)
    values = RUNS["first-half"][0]
    train(settings(directory / "first-half", **{**values, "steps": 12}), resume=True, progress=False)


def _worker(rank: int, world_size: int, port: int, directory: str) -> None:
    os.environ.update(WORLD_SIZE=str(world_size), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    # One process group for all the runs (train joins an existing one and leaves it be): a group destroyed and
    # created again on the same port could let a fast process rendezvous with the old one's store.
    torch.distributed.init_process_group("gloo")
    try:
        _train_all(Path(directory))
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def distributed_runs(tmp_path_factory):
    """``(one process's runs, two processes' runs)``: directories of the runs in `RUNS`."""
    if not torch.distributed.is_available():
        pytest.skip("this torch has no torch.distributed")
    root = tmp_path_factory.mktemp("distributed")
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), str(root / "two")), nprocs=2, join=True)
    _train_all(root / "one")
    return root / "one", root / "two"


def _loss_state(run: Path) -> dict[str, Tensor]:
    return {key: value for key, value in load_checkpoint(run / "checkpoint.pt")["loss"].items()
            if isinstance(value, Tensor)}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["running-baseline", "nvil", "reparameterized", "factory"])
def test_two_processes_train_as_one(distributed_runs, name):
    one, two = (root / name for root in distributed_runs)
    single, double = _loss_state(one), _loss_state(two)
    assert single.keys() == double.keys()
    for key in single:  # parameters, and the moving averages' buffers
        torch.testing.assert_close(double[key], single[key], rtol=1e-4, atol=1e-5, msg=lambda m: f"{key}: {m}")
    history = [load_checkpoint(run / "checkpoint.pt")["loss"]["_extra_state"]["loss_history"] for run in (one, two)]
    assert len(history[1]) == 12 and history[1] == pytest.approx(history[0], rel=1e-5, abs=1e-5)


@pytest.mark.slow  # spawns two processes (about 20 s)
def test_the_running_statistics_are_synchronized(distributed_runs):
    """Without `synchronize_statistics` the main process's averages would be its share's: they differ from the
    whole batch's (checked here: the averages moved, and match the one-process run's)."""
    one, two = (root / "running-baseline" for root in distributed_runs)
    single, double = _loss_state(one), _loss_state(two)
    total = [key for key in single if key.endswith("signal_average.total")]
    assert total and single[total[0]].abs() > 1  # the average of learning signals of tens of nats
    torch.testing.assert_close(double[total[0]], single[total[0]], rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # spawns two processes (about 20 s)
def test_config_records_the_world_size_and_the_main_process_writes(distributed_runs):
    one, two = distributed_runs
    assert json.loads((two / "running-baseline" / "config.json").read_text())["world_size"] == 2
    assert json.loads((one / "running-baseline" / "config.json").read_text())["world_size"] == 1
    assert sorted(p.name for p in (two / "whole").iterdir() if not p.name.startswith(".")) == \
        sorted(p.name for p in (one / "whole").iterdir() if not p.name.startswith("."))
    rows = [(two if i else one) / "whole" / "metrics.csv" for i in (0, 1)]
    steps = [[row.split(",")[0] for row in path.read_text().splitlines()] for path in rows]
    assert steps[0] == steps[1] == ["step", "4", "6", "8", "12"]
    assert all(math.isfinite(float(row.split(",")[2])) for row in rows[1].read_text().splitlines()[1:])


@pytest.mark.slow  # spawns two processes (about 20 s)
def test_resume_under_two_processes_is_exact(distributed_runs):
    _, two = distributed_runs
    whole, resumed = load_checkpoint(two / "whole" / "checkpoint.pt"), load_checkpoint(two / "first-half" /
                                                                                        "checkpoint.pt")
    assert len(whole["rng"]["ranks"]) == 2 and not torch.equal(*whole["rng"]["ranks"])  # each its own draws
    for key, value in whole["loss"].items():
        if isinstance(value, Tensor):
            assert torch.equal(resumed["loss"][key], value), key
    assert resumed["loss"]["_extra_state"]["loss_history"] == whole["loss"]["_extra_state"]["loss_history"]
    assert resumed["metrics"] == [{**row, "seconds": resumed_row["seconds"]}
                                  for row, resumed_row in zip(whole["metrics"], resumed["metrics"])]


@pytest.mark.slow  # spawns two processes (about 20 s)
def test_a_changed_world_size_is_refused(distributed_runs, tmp_path):
    _, two = distributed_runs
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("checkpoint.pt", "config.json", "metrics.csv"):
        (copy / name).write_bytes((two / "whole" / name).read_bytes())
    values = RUNS["whole"][0]
    with pytest.raises(ConfigError, match=r"world_size: 2 -> 1"):
        train(settings(copy, **{**values, "steps": 20}), resume=True, progress=False)


def test_a_batch_the_processes_cannot_share_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match=r"`batch_size` \(--batch-size\) 8 is the whole batch of all 3 processes"):
        train(settings(tmp_path / "run"), progress=False)


@pytest.mark.parametrize("dynamic", [False, True])
def test_the_shares_of_a_batch_make_up_the_one_process_batch(dynamic):
    from blackbox_vae.data import BatchStream

    data = torch.rand(20, 4)
    single = BatchStream(data, 6, dynamic_binarization=dynamic, seed=3)
    shares = [BatchStream(data, 6, dynamic_binarization=dynamic, seed=3, shard=(rank, 3)) for rank in range(3)]
    for _ in range(10):  # across epochs (20 rows: three batches each)
        parts = [next(stream) for stream in shares]
        assert all(part.shape == (2, 4) for part in parts)
        assert torch.equal(torch.cat(parts), next(single))
    for shard in ((3, 3), (0, 4), (-1, 2)):
        with pytest.raises(ValueError, match=r"`shard` must be \(rank, world_size\)"):
            BatchStream(data, 6, shard=shard)


@pytest.mark.slow  # torchrun starts two processes (about 15 s)
def test_torchrun_runs_the_command_line(tmp_path):
    """The documented command: `torchrun --nproc-per-node 2 -m blackbox_vae train ...`."""
    import subprocess
    import sys

    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
               str(_free_port()), "-m", "blackbox_vae", "train", "--steps", "20", "--batch-size", "16",
               "--eval-every", "20", "--eval-k", "5", "--out", str(out), "--progress", "false"]
    completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count("trained 20 steps") == 1  # the main process reports, once
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    assert len(load_checkpoint(out / "checkpoint.pt")["rng"]["ranks"]) == 2
