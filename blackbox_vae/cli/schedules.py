"""Learning-rate schedules of the command line, as functions of the step (so a resumed run needs no state)."""

from __future__ import annotations

__all__ = ["LR_SCHEDULES", "learning_rate_factor"]

#: ``constant``: the rate given. ``iwae``: Burda et al. (2016)'s schedule, the rate times 10^(-i/7) in stage
#: i = 0..7, stage i lasting 3^i epochs (3,280 epochs in all; later steps keep the last stage's rate).
LR_SCHEDULES = ("constant", "iwae")

_IWAE_STAGES = 8


def learning_rate_factor(schedule: str, step: int, steps_per_epoch: int) -> float:
    """The factor on the base learning rate at ``step`` (0-based: the step about to be taken).

    Args:
        schedule: a name of `LR_SCHEDULES`.
        step: steps taken so far.
        steps_per_epoch: steps in one pass over the training data (rows // batch size).
    """
    if schedule == "constant":
        return 1.0
    if schedule != "iwae":
        raise ValueError(f"`schedule` must be one of {', '.join(LR_SCHEDULES)}; got {schedule!r}.")
    epoch, stage = step // steps_per_epoch, 0
    # stage i starts at epoch (3^i - 1) / 2, the sum of the earlier stages' 3^j epochs
    while stage + 1 < _IWAE_STAGES and (3 ** (stage + 1) - 1) // 2 <= epoch:
        stage += 1
    return 10 ** (-stage / 7)
