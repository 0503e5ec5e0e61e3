"""Per-call state on modules: what a forward pass leaves behind for the next call to read.

Models store their parameters for the batch (``params_``) and losses their last log-probabilities
(``log_p_``, ``log_q_``) on every call. ``nn.Module.__setattr__`` checks each value against the module's
parameters, buffers and submodules before storing it; these values are none of those, so they are
stored directly. Measured as one mechanism (benchmarks/hot_path_tricks.py, "per-call state"): 4.1% of a
step of the 100-20 SBN, where a step takes about a millisecond.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from torch import nn


#: ``set_call_state(module, name, value)``: ``module.name = value`` for per-call state (never a parameter,
#: buffer or submodule). The builtin itself, so that storing costs no Python call.
set_call_state: Callable[[nn.Module, str, Any], None] = object.__setattr__


def state_without_call_state(module: nn.Module, names: Iterable[str]) -> dict[str, Any]:
    """``module.__getstate__()`` with the per-call state ``names`` reset to None (for copying and pickling).

    A forward pass's state holds the autograd graph of the last call, which ``copy.deepcopy`` refuses to
    copy; the next call recomputes it, so a copy (or a pickled module) starts without it.
    """
    state = nn.Module.__getstate__(module)
    for name in names:
        if name in state:
            state[name] = None
    return state
