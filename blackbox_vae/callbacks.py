"""Ready `Callback` objects for watching a `Trainer`: image snapshots and TensorBoard.

Both draw their samples from a forked random generator in eval mode, so that a run watched by them takes
exactly the steps of a run that is not (and resumes as exactly).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor

from blackbox_vae.latents import map_latents
from blackbox_vae.trainer import Callback

if TYPE_CHECKING:
    from blackbox_vae.trainer import Trainer

__all__ = ["SnapshotCallback", "TensorBoardCallback", "sample_and_reconstruct"]

#: Images in a snapshot grid (each of the two panels).
SNAPSHOT_IMAGES = 36


@torch.no_grad()
def sample_and_reconstruct(trainer: "Trainer", n: int, step: int) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """(generated ``[n, D]``, validation rows ``[m, D]``, their reconstructions ``[m, D]``) of the model as it is:
    means of p(x|z) where the model has ``likelihood_mean``, else samples; data in the data's own units."""
    loss = trainer.loss
    inf_net, gen_model = loss.inf_net, loss.gen_model
    device = next(iter(loss.parameters()), torch.empty(0)).device
    was_training = loss.training
    loss.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed((trainer.settings.seed * 1_000_003 + step) % 2**63 ^ 0x5A5A)
            drawn, latents = gen_model.sample(n)
            try:
                generated = gen_model.likelihood_mean(map_latents(lambda t: t[:, None], latents))[:, 0]
            except NotImplementedError:
                generated = drawn
            valid, reconstructions = None, None
            if trainer.valid is not None:
                valid = trainer.valid[:n].to(device)
                codes = inf_net(valid).sample(1)
                try:
                    reconstructions = gen_model.likelihood_mean(codes)[:, 0]
                except NotImplementedError:
                    reconstructions = None
    finally:
        loss.train(was_training)
    standardization = getattr(trainer.dataset, "standardization", None)
    if standardization is not None:
        mean, std = (t.to(device) for t in standardization)
        generated, valid, reconstructions = (None if t is None else t.reshape(len(t), -1) * std + mean
                                             for t in (generated, valid, reconstructions))
    return generated, valid, reconstructions


class SnapshotCallback(Callback):
    """Every ``every`` steps, writes ``RUN/snapshots/step-NNNNNNN.png``: generated images beside validation
    images and their reconstructions (``--snapshot-every N``)."""

    def __init__(self, every: int, n: int = SNAPSHOT_IMAGES):
        self.every, self.n = every, n

    def on_step(self, trainer: "Trainer", step: int) -> None:
        if step % self.every and step != trainer.settings.steps:
            return
        from blackbox_vae.cli.plots import save_image_grids

        generated, valid, reconstructions = sample_and_reconstruct(trainer, self.n, step)
        panels = [(f"generated, step {step}", generated)]
        if valid is not None:
            panels.append(("validation images", valid))
        if reconstructions is not None:
            panels.append(("reconstructions", reconstructions))
        from blackbox_vae.cli.files import make_directory

        folder = make_directory(trainer.out / "snapshots")
        save_image_grids(panels, trainer.image_shape, folder / f"step-{step:07d}.png")


class TensorBoardCallback(Callback):
    """Scalars and image grids for TensorBoard in ``RUN/tensorboard/`` (``--tensorboard true``): at every
    metrics row the training bound, the step's objective, the learning rate and the gradient's norm, at every
    evaluation the validation bound (and active bits) and, for images, grids of samples and reconstructions.

    Needs the ``tensorboard`` package (``pip install 'blackbox_vae[tensorboard]'``).
    """

    def __init__(self, log_dir: Optional[Path] = None):
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError as error:
            from blackbox_vae.cli.config import ConfigError

            raise ConfigError("`tensorboard` (--tensorboard) needs the tensorboard package, which is not installed: "
                              "pip install 'blackbox_vae[tensorboard]' (or pip install tensorboard).") from error
        self.log_dir, self.writer = log_dir, None

    def _folder(self, trainer: "Trainer") -> Path:
        return Path(self.log_dir or trainer.out / "tensorboard")

    def _writer(self, trainer: "Trainer"):
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self._folder(trainer)))
        return self.writer

    def on_step(self, trainer: "Trainer", step: int) -> None:
        if step % trainer.settings.log_every and step != trainer.settings.steps:
            return
        from blackbox_vae.cli.files import writing

        with writing(self._folder(trainer)):  # a full disk: one line, as for the run's own files
            writer = self._writer(trainer)
            writer.add_scalar("loss/objective", trainer.loss.loss_history_[-1], step)
            writer.add_scalar("optimizer/learning_rate", trainer.optimizer.param_groups[0]["lr"], step)
            squares = [p.grad.detach().float().pow(2).sum() for p in trainer.loss.parameters() if p.grad is not None]
            if squares:  # the gradient of this step (the optimizer clears it at the next)
                writer.add_scalar("optimizer/gradient_norm", math.sqrt(torch.stack(squares).sum().item()), step)

    def on_evaluation(self, trainer: "Trainer", row: dict) -> None:
        from blackbox_vae.cli.files import writing

        with writing(self._folder(trainer)):
            self._write_evaluation(trainer, row)

    def _write_evaluation(self, trainer: "Trainer", row: dict) -> None:
        writer, step = self._writer(trainer), row["step"]
        if row["train_bound"] == row["train_bound"]:  # not NaN
            writer.add_scalar("bound/train", row["train_bound"], step)
        if row["valid_bound"] == "":
            return
        writer.add_scalar("bound/valid", row["valid_bound"], step)
        if row["active_bits"] != "":
            writer.add_scalar("latents/active_bits", row["active_bits"], step)
        if trainer.image_shape is not None:
            from blackbox_vae.images import image_grid

            generated, _, reconstructions = sample_and_reconstruct(trainer, 36, step)
            for tag, images in (("samples", generated), ("reconstructions", reconstructions)):
                if images is not None:
                    grid = image_grid(images.clamp(0, 1), trainer.image_shape)
                    writer.add_image(tag, grid, step, dataformats="HWC" if grid.dim() == 3 else "HW")
        writer.flush()

    def on_fit_end(self, trainer: "Trainer") -> None:
        if self.writer is not None:
            from blackbox_vae.cli.files import writing

            writer, self.writer = self.writer, None
            with writing(self._folder(trainer)):
                writer.close()
