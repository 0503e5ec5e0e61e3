"""The CPU thread policy of training (blackbox_vae/threads.py) and the speed-ups beside it: --threads N, the fast
Bernoulli draw."""

import json

import pytest
import torch

from blackbox_vae import threads
from blackbox_vae.cli import main


class FakeMachine:
    """Clocks of a machine where other processes keep ``others`` cores busy while this one uses ``own`` cores."""

    def __init__(self, monkeypatch, others=0.0, own=1.0):
        self.others, self.own, self.t = others, own, 0.0
        monkeypatch.setattr(threads, "_wall_seconds", lambda: self.t)
        monkeypatch.setattr(threads, "_busy_seconds", lambda: self.t * (self.others + self.own))
        monkeypatch.setattr(threads, "_own_seconds", lambda: self.t * self.own)

    def advance(self, seconds):
        self.t += seconds


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("others, expected", [(0.0, 4), (0.9, 3), (1.0, 3), (2.2, 2), (3.9, 1), (7.0, 1)])
def test_threads_are_the_cores_other_processes_leave_idle(monkeypatch, restore_threads, others, expected):
    machine = FakeMachine(monkeypatch, others=others, own=2.0)
    policy = threads.AdaptiveThreads(cores=4, interval=2.0, look=False)
    machine.advance(1.0)
    assert policy.update() == policy.threads  # within the interval: unchanged, nothing measured
    machine.advance(1.5)
    assert policy.update() == expected and torch.get_num_threads() == expected


def test_threads_follow_other_processes_as_they_come_and_go(monkeypatch, restore_threads):
    machine = FakeMachine(monkeypatch, others=1.0, own=1.0)
    policy = threads.AdaptiveThreads(cores=2, interval=2.0, look=False)
    machine.advance(2.0)
    assert policy.update() == 1
    machine.others = 0.0  # the other process ended
    machine.advance(2.0)
    assert policy.update() == 2


def test_without_proc_stat_torch_s_setting_is_kept(monkeypatch, restore_threads):
    monkeypatch.setattr(threads, "_busy_seconds", lambda: None)
    torch.set_num_threads(2)
    policy = threads.AdaptiveThreads(cores=2, interval=0.0)
    assert not policy.available and policy.update(force=True) == 2 and torch.get_num_threads() == 2


def test_the_flag_sets_the_threads_records_them_and_may_change_on_resume(tmp_path, restore_threads):
    flags = ["--data", "digits", "--steps", "4", "--eval-every", "4", "--eval-size", "20", "--progress", "false"]
    assert main(["train", "--out", str(tmp_path), *flags, "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    assert json.loads((tmp_path / "config.json").read_text())["threads"] == 1
    assert main(["train", "--out", str(tmp_path), *flags, "--steps", "6", "--resume", "--threads", "2"]) == 0
    assert torch.get_num_threads() == 2


def test_a_negative_thread_count_is_named(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--threads", "-1", "--steps", "2"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_draw_bernoulli_draws_ones_with_the_given_probabilities():
    """1[u < p]: the frequency of ones within 5 standard errors of p, for p from 0 to 1 (0 and 1 exactly)."""
    from blackbox_vae.models.deep_sbn import draw_bernoulli

    torch.manual_seed(0)
    probs = torch.tensor([0.0, 1e-3, 0.2, 0.5, 0.9, 1.0], dtype=torch.float64)
    n = 200_000
    draws = draw_bernoulli(probs.expand(n, -1))
    assert set(draws.unique().tolist()) <= {0.0, 1.0} and draws.dtype == probs.dtype
    frequency = draws.mean(0)
    error = (probs * (1 - probs) / n).sqrt()
    assert ((frequency - probs).abs() <= 5 * error).all(), (frequency, probs)
