"""Learning-rate schedules of the command line (``--lr-schedule``)."""

from __future__ import annotations

import json

import pytest

from blackbox_vae.cli import main
from blackbox_vae.cli.checkpoint import load_checkpoint
from blackbox_vae.cli.schedules import learning_rate_factor
from blackbox_vae.data import load_dataset

def test_iwae_schedule_stages_last_three_to_the_i_epochs():
    """Stage i (rate x 10^(-i/7)) covers epochs [(3^i - 1)/2, (3^(i+1) - 1)/2); after 3,280 epochs the last
    rate stays."""
    steps_per_epoch = 7
    for stage in range(8):
        first, last = (3**stage - 1) // 2, (3 ** (stage + 1) - 1) // 2 - 1
        for epoch in (first, last):
            for offset in (0, steps_per_epoch - 1):
                factor = learning_rate_factor("iwae", epoch * steps_per_epoch + offset, steps_per_epoch)
                assert factor == pytest.approx(10 ** (-stage / 7)), (stage, epoch)
    assert learning_rate_factor("iwae", 10**9, steps_per_epoch) == pytest.approx(0.1)
    assert learning_rate_factor("constant", 10**9, steps_per_epoch) == 1.0
    with pytest.raises(ValueError, match="`schedule` must be one of constant, iwae; got 'cosine'"):
        learning_rate_factor("cosine", 0, 1)

def test_command_line_follows_the_schedule_and_resumes_it(tmp_path):
    rows = len(load_dataset("digits").train)
    steps_per_epoch = rows // 64
    out = tmp_path / "run"
    flags = ["--lr-schedule", "iwae", "--lr", "0.01", "--eval-every", "1000", "--eval-k", "2", "--progress", "false",
             "--out", str(out)]
    # steps_per_epoch steps end epoch 0 (rate 0.01); the next begins stage 1 (rate 0.01 x 10^(-1/7))
    assert main(["train", "--steps", str(steps_per_epoch), *flags]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01)
    assert main(["train", "--steps", str(steps_per_epoch + 1), "--resume", "--out", str(out)]) == 0
    rate = load_checkpoint(out / "checkpoint.pt")["optimizer"]["param_groups"][0]["lr"]
    assert rate == pytest.approx(0.01 * 10 ** (-1 / 7))
    assert json.loads((out / "config.json").read_text())["lr_schedule"] == "iwae"
    assert main(["train", "--steps", "2", "--out", str(tmp_path / "constant"), "--progress", "false",
                 "--eval-k", "2"]) == 0
    assert json.loads((tmp_path / "constant" / "config.json").read_text())["lr_schedule"] == "constant"
    assert json.loads((tmp_path / "constant" / "config.json").read_text())["compile"] is False
