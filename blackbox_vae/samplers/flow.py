"""A normalizing flow fitted to the codes by maximum likelihood: MAF or IAF from Pyro's autoregressive transforms."""

from __future__ import annotations

from typing import Any, Literal, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import AffineTransform, Independent, Normal, TransformedDistribution

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.samplers.base import Sampler, _masked_widths, _positive_int
from blackbox_vae.samplers.codes import CodeLayout
from blackbox_vae.samplers.training import maximize

__all__ = ["FlowSampler"]


class FlowSampler(Sampler):
    """A masked autoregressive flow (MAF) or inverse autoregressive flow (IAF) fitted to the codes.

    ``n_transforms`` affine autoregressive transforms (``pyro.distributions.transforms.affine_autoregressive``),
    the order of the code's dimensions reversed between them, over a standard normal, applied to codes
    standardized by their mean and standard deviation. MAF (``flow="maf"``) uses each transform's inverse,
    so the density of a code takes one pass and a sample D; IAF the transforms themselves (a sample takes
    one pass, a density D). Fitted by maximum likelihood with Adam, stopping early on held-out codes (a
    tenth of them). For real-valued codes. Needs Pyro (installed with blackbox_vae, imported on first use).

    Args:
        gen_model: the trained generative model, as `Sampler`.
        inf_net: its inference network, as `Sampler`.
        flow: ``"maf"`` or ``"iaf"``.
        n_transforms: autoregressive transforms.
        hidden: hidden widths of each transform's autoregressive network, each at least the code's
            dimension D (default: two layers of max(64, 2 D)).
        epochs: at most this many passes over the codes.
        batch_size: codes per Adam step.
        lr: Adam's learning rate.
        patience: stop after this many epochs without a better held-out likelihood.
        **options: `Sampler`'s keyword arguments.

    Attributes:
        fit_report_: ``{"held_out": mean held-out log-likelihood per code, "epochs": ...}`` after `fit`.
    """

    code_kinds = ("real",)
    density_settings = ("flow", "n_transforms", "hidden")

    def __init__(self, gen_model: GenModel, inf_net: Optional[InfNet] = None, flow: Literal["maf", "iaf"] = "maf",
                 n_transforms: int = 5, hidden: Optional[Sequence[int]] = None, epochs: int = 300, batch_size: int = 256,
                 lr: float = 1e-3, patience: int = 20, **options: Any):
        super().__init__(gen_model, inf_net, **options)
        if flow not in ("maf", "iaf"):
            raise ValueError(f"FlowSampler: `flow` must be 'maf' or 'iaf'; got {flow!r}.")
        self.flow = flow
        self.n_transforms = _positive_int(n_transforms, "n_transforms", "FlowSampler")
        self.hidden = None if hidden is None else [_positive_int(h, "hidden", "FlowSampler") for h in hidden]
        self.epochs, self.batch_size = _positive_int(epochs, "epochs", "FlowSampler"), batch_size
        self.lr, self.patience = float(lr), _positive_int(patience, "patience", "FlowSampler")
        self.transforms = nn.ModuleList()
        self.register_buffer("shift", torch.empty(0))
        self.register_buffer("scale", torch.empty(0))
        self.fit_report_: dict[str, float] = {}

    def _build(self, layout: CodeLayout) -> None:
        import pyro.distributions.transforms as transforms  # on first use: not at import
        dimension = layout.dim
        hidden = _masked_widths(self.hidden, dimension, 64, "FlowSampler")
        self.transforms = nn.ModuleList(transforms.affine_autoregressive(dimension, hidden_dims=hidden)
                                        for _ in range(self.n_transforms))
        self.shift, self.scale = torch.zeros(dimension), torch.ones(dimension)

    def distribution(self) -> TransformedDistribution:
        """The fitted density over codes ``[D]``."""
        from pyro.distributions.transforms import Permute

        dimension = self.shift.shape[0]
        base = Independent(Normal(torch.zeros_like(self.shift), torch.ones_like(self.scale)), 1)
        reverse = Permute(torch.arange(dimension - 1, -1, -1, device=self.shift.device))
        parts: list = []
        for index, transform in enumerate(self.transforms):
            if index:
                parts.append(reverse)
            parts.append(transform.inv if self.flow == "maf" else transform)
        parts.append(AffineTransform(self.shift, self.scale, event_dim=1))  # back from standardized codes
        return TransformedDistribution(base, parts)

    def _fit(self, codes: Tensor) -> None:
        if codes.shape[0] < 2:
            raise ValueError("FlowSampler: fitting needs at least 2 codes (one is held out).")
        self._build(self.layout)
        self.to(codes.device)
        self.shift, self.scale = codes.mean(0), codes.std(0).clamp_min(1e-6)
        self.fit_report_ = maximize(lambda batch: self.distribution().log_prob(batch).mean(), self.transforms, codes,
                                    epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, patience=self.patience,
                                    progress=self.progress, desc="FlowSampler: fitting")

    def log_prob(self, codes: Tensor) -> Tensor:
        """The fitted log-density of codes ``[N, D]``: ``[N]``."""
        return self.distribution().log_prob(codes)

    def _sample_codes(self, n: int) -> Tensor:
        return self.distribution().sample((n,))

    def extra_repr(self) -> str:
        return f"flow={self.flow!r}, n_transforms={self.n_transforms}, {super().extra_repr()}"
