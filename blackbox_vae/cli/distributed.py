"""Data-parallel training under ``torchrun``: which process this is, and the few collectives the loop needs.

``blackbox-vae train`` started by ``torchrun --nproc-per-node N -m blackbox_vae train ...`` finds torchrun's
environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``) and joins the process group: gloo on
the CPU, NCCL on GPUs (one per process, ``cuda:LOCAL_RANK``). Without that environment, or with a world of
one, every method here is a no-op and the loop is the single-process one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from blackbox_vae.cli.config import ConfigError

__all__ = ["Processes"]


@dataclass
class Processes:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    started_group: bool = False  # whether `join` initialized the process group (and `leave` destroys it)

    @classmethod
    def from_environment(cls) -> "Processes":
        """The ranks torchrun put in the environment (one process when there are none).

        Raises:
            ConfigError: for values that are not integers, or a rank outside the world.
        """
        try:
            world_size = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as error:
            raise ConfigError(f"torchrun's environment is malformed (WORLD_SIZE={os.environ.get('WORLD_SIZE')!r}, "
                              f"RANK={os.environ.get('RANK')!r}): {error}.") from error
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"torchrun's environment has RANK={rank} and WORLD_SIZE={world_size}; expected "
                              "0 <= RANK < WORLD_SIZE.")
        return cls(rank, world_size, local_rank)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files and prints (rank 0)."""
        return self.rank == 0

    def device(self, name: str) -> str:
        """The device this process trains on: ``cuda`` becomes ``cuda:LOCAL_RANK`` (one GPU per process).

        Raises:
            ConfigError: for a numbered GPU under torchrun (each process takes its own).
        """
        if not self.distributed or not name.startswith("cuda"):
            return name
        if name != "cuda":
            raise ConfigError(f"`device` (--device) {name!r}: under torchrun give --device cuda; process i trains on "
                              "cuda:LOCAL_RANK (choose the GPUs with CUDA_VISIBLE_DEVICES).")
        return f"cuda:{self.local_rank}"

    def join(self, device: torch.device) -> None:
        """Initializes the default process group (gloo on the CPU, NCCL on GPUs), unless already initialized."""
        if not self.distributed or torch.distributed.is_initialized():
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend)
        self.started_group = True

    def leave(self) -> None:
        if self.started_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
            self.started_group = False

    def all_agree(self, ok: bool, device: torch.device) -> bool:
        """Whether ``ok`` holds on every process (one all-reduce), so that all stop together when one fails."""
        if not self.distributed:
            return ok
        flag = torch.tensor([1 if ok else 0], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        return bool(flag.item())

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def mean(self, values: list[float], device: torch.device) -> list[float]:
        """The elementwise mean of ``values`` over the processes (each process passes as many)."""
        if not self.distributed or not values:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(tensor)
        return (tensor / self.world_size).tolist()

    def gather_states(self, state: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
        """Every process's ``state`` (a ``uint8`` tensor of the same size on each, e.g. a generator's state), in
        rank order, on the CPU."""
        if not self.distributed:
            return [state]
        local = state.to(device)
        gathered = [torch.empty_like(local) for _ in range(self.world_size)]
        torch.distributed.all_gather(gathered, local)
        return [tensor.cpu() for tensor in gathered]
