"""Fitting a sampler's network to codes: Adam on a held-in part, early stopping on the held-out rest."""

from __future__ import annotations

import copy
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from blackbox_vae.progress import progress_bar

__all__ = ["maximize"]


def maximize(objective: Callable[[Tensor], Tensor], module: nn.Module, codes: Tensor, *, epochs: int,
             batch_size: int, lr: float, patience: int, held_out: float = 0.1, progress: Optional[bool] = False,
             desc: str = "fitting") -> dict[str, float]:
    """Maximizes the mean of ``objective(batch)`` over the codes with Adam, keeping the best held-out state.

    The codes are shuffled (with torch's generator, which the caller seeds) and split: ``held_out`` of them
    (at least one row) are only evaluated. Training stops after ``patience`` epochs without a better
    held-out mean, or after ``epochs``; the module's state is then that of its best epoch.

    Args:
        objective: maps codes ``[n, D]`` to a scalar to maximize (e.g. their mean log-likelihood).
        module: holds the parameters to fit.
        codes: ``[N, D]``, N >= 2.
        progress: show the epochs' progress as ``desc`` (see `blackbox_vae.progress.progress_bar`).

    Returns:
        ``{"held_out": the best held-out mean, "epochs": epochs run}``.
    """
    order = torch.randperm(codes.shape[0], device=codes.device)
    n_held_out = max(1, int(round(held_out * codes.shape[0])))
    validation, training = codes[order[:n_held_out]], codes[order[n_held_out:]]
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    best, best_state, stale, epoch = -float("inf"), copy.deepcopy(module.state_dict()), 0, 0
    bar = progress_bar(epochs, desc, "epoch", progress)
    for epoch in range(1, epochs + 1):
        module.train()
        with torch.enable_grad():  # also when called under no_grad
            for batch in training[torch.randperm(training.shape[0], device=codes.device)].split(batch_size):
                optimizer.zero_grad(set_to_none=True)
                (-objective(batch)).backward()
                optimizer.step()
        module.eval()
        with torch.no_grad():
            score = sum(objective(batch).item() * len(batch) for batch in validation.split(4096)) / len(validation)
        bar.update()
        bar.set_postfix_str(f"held-out {score:.4g}")
        if score > best:
            best, best_state, stale = score, copy.deepcopy(module.state_dict()), 0
        else:
            stale += 1
            if stale >= patience:
                break
    bar.close()
    module.load_state_dict(best_state)
    module.eval()
    return {"held_out": best, "epochs": float(epoch)}
