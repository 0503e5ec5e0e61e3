"""An autoregressive model of discrete codes: a MADE (Pyro's AutoRegressiveNN) over bits and categories."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.samplers.base import Sampler, _masked_widths, _positive_int
from blackbox_vae.samplers.codes import CodeLayout
from blackbox_vae.samplers.training import maximize

__all__ = ["AutoregressiveSampler"]


class AutoregressiveSampler(Sampler):
    """p(u) = prod_v p(u_v | u_<v) over the discrete variables of a code, each a categorical (two categories
    for a bit), with logits from one masked network (MADE: Germain et al. 2015; here
    ``pyro.nn.AutoRegressiveNN``, whose random variable order is drawn from the sampler's seed).

    The network reads the category indices and returns logits for every variable at once; a sample takes
    one pass per variable, in the network's order. Fitted by maximum likelihood with Adam, stopping early
    on held-out codes. Needs Pyro (installed with blackbox_vae, imported on first use).

    Args:
        gen_model: the trained generative model, as `Sampler`.
        inf_net: its inference network, as `Sampler`.
        hidden: hidden widths of the masked network, each at least the number of code variables V
            (default: two layers of max(256, 2 V)).
        epochs: at most this many passes over the codes.
        batch_size: codes per Adam step.
        lr: Adam's learning rate.
        patience: stop after this many epochs without a better held-out score.
        **options: `Sampler`'s keyword arguments.

    Attributes:
        fit_report_: ``{"held_out": mean held-out log-likelihood per code, "epochs": ...}`` after `fit`.
    """

    code_kinds = ("binary", "one-hot")
    density_settings = ("hidden",)

    def __init__(self, gen_model: GenModel, inf_net: Optional[InfNet] = None, hidden: Optional[Sequence[int]] = None,
                 epochs: int = 200, batch_size: int = 256, lr: float = 1e-3, patience: int = 10, **options: Any):
        super().__init__(gen_model, inf_net, **options)
        self.hidden = None if hidden is None else [_positive_int(h, "hidden", "AutoregressiveSampler") for h in hidden]
        self.epochs, self.batch_size = _positive_int(epochs, "epochs", "AutoregressiveSampler"), batch_size
        self.lr, self.patience = float(lr), _positive_int(patience, "patience", "AutoregressiveSampler")
        self.network = None
        self.register_buffer("invalid", torch.empty(0, dtype=torch.bool))  # [width, V]: categories a variable lacks
        self.fit_report_: dict[str, float] = {}

    def _build(self, layout: CodeLayout) -> None:
        from pyro.nn import AutoRegressiveNN  # on first use: not at import
        counts = torch.tensor(layout.cardinalities)
        width = int(counts.max())
        hidden = _masked_widths(self.hidden, len(counts), 256, "AutoregressiveSampler")
        self.network = AutoRegressiveNN(len(counts), hidden, param_dims=[width] if width > 1 else [1])
        self.invalid = torch.arange(width)[:, None] >= counts[None, :]  # [width, V]

    def logits(self, categories: Tensor) -> Tensor:
        """Logits of every variable given the others before it: ``[N, V] -> [N, width, V]``."""
        logits = self.network(categories.to(self.invalid.device).float())
        if logits.dim() == 2:  # a single category count of 1 cannot happen for codes; kept for shape
            logits = logits.unsqueeze(1)
        return logits.masked_fill(self.invalid, -float("inf"))

    def log_prob(self, codes: Tensor) -> Tensor:
        """The fitted log-probability of discrete codes ``[N, D]``: ``[N]``."""
        categories = self.layout.to_categories(codes)
        log_probs = torch.log_softmax(self.logits(categories), dim=1)  # [N, width, V]
        return log_probs.gather(1, categories.unsqueeze(1)).squeeze(1).sum(1)

    def _fit(self, codes: Tensor) -> None:
        if codes.shape[0] < 2:
            raise ValueError("AutoregressiveSampler: fitting needs at least 2 codes (one is held out).")
        self._build(self.layout)
        self.to(codes.device)
        self.fit_report_ = maximize(lambda batch: self.log_prob(batch).mean(), self.network, codes, epochs=self.epochs,
                                    batch_size=self.batch_size, lr=self.lr, patience=self.patience,
                                    progress=self.progress, desc="AutoregressiveSampler: fitting")

    def _sample_codes(self, n: int) -> Tensor:
        categories = torch.zeros(n, self.invalid.shape[1], dtype=torch.long, device=self.invalid.device)
        for variable in self.network.permutation.tolist():  # the network's autoregressive order
            logits = self.logits(categories)[:, :, variable]  # [n, width]
            categories[:, variable] = torch.distributions.Categorical(logits=logits).sample()
        return self.layout.from_categories(categories, next(self.network.parameters()).dtype)
