"""The two-stage VAE (Dai & Wipf 2019): a second Gaussian VAE fitted to the first one's codes."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.samplers.base import Sampler, _positive_int
from blackbox_vae.samplers.codes import CodeLayout
from blackbox_vae.samplers.training import maximize

__all__ = ["TwoStageSampler"]


class TwoStageSampler(Sampler):
    """Codes u are modeled by a second VAE: u ~ N(mu(v), diag(sigma^2)), v ~ N(0, I) of the same dimension.

    The second stage is this library's `GaussianMLPInfNet` / `GaussianMLPGenModel` (a learned
    per-dimension observation scale), trained on the codes with `ELBOLoss`, stopping early on held-out
    codes. Sampling draws v from its prior and decodes it to its mean, the code, which the first stage
    decodes (Dai & Wipf 2019). For real-valued codes.

    Args:
        gen_model: the trained generative model, as `Sampler`.
        inf_net: its inference network, as `Sampler`.
        hidden: hidden widths of the second stage's networks.
        epochs: at most this many passes over the codes.
        batch_size: codes per Adam step.
        lr: Adam's learning rate.
        patience: stop after this many epochs without a better held-out score.
        **options: `Sampler`'s keyword arguments.

    Attributes:
        fit_report_: ``{"held_out": mean held-out ELBO per code, "epochs": ...}`` after `fit`.

    References:
        Dai & Wipf (2019), Diagnosing and enhancing VAE models.
    """

    code_kinds = ("real",)
    density_settings = ("hidden",)

    def __init__(self, gen_model: GenModel, inf_net: Optional[InfNet] = None, hidden: Sequence[int] = (256, 256),
                 epochs: int = 300, batch_size: int = 256, lr: float = 1e-3, patience: int = 20, **options: Any):
        super().__init__(gen_model, inf_net, **options)
        self.hidden = [_positive_int(h, "hidden", "TwoStageSampler") for h in hidden]
        self.epochs, self.batch_size = _positive_int(epochs, "epochs", "TwoStageSampler"), batch_size
        self.lr, self.patience = float(lr), _positive_int(patience, "patience", "TwoStageSampler")
        self.stage_two = None
        self.fit_report_: dict[str, float] = {}

    def _build(self, layout: CodeLayout) -> None:
        from blackbox_vae.losses import ELBOLoss
        from blackbox_vae.models import GaussianMLPGenModel, GaussianMLPInfNet

        dimension = layout.dim
        self.stage_two = ELBOLoss(GaussianMLPInfNet(dimension, dimension, self.hidden),
                                  GaussianMLPGenModel(dimension, dimension, list(reversed(self.hidden))), 1)

    def _fit(self, codes: Tensor) -> None:
        if codes.shape[0] < 2:
            raise ValueError("TwoStageSampler: fitting needs at least 2 codes (one is held out).")
        self._build(self.layout)
        self.stage_two.to(codes.device)
        self.fit_report_ = maximize(lambda batch: -self.stage_two(batch), self.stage_two, codes, epochs=self.epochs,
                                    batch_size=self.batch_size, lr=self.lr, patience=self.patience,
                                    progress=self.progress, desc="TwoStageSampler: fitting")

    def _sample_codes(self, n: int) -> Tensor:
        decoder = self.stage_two.gen_model
        reference = decoder.decoder[0].weight
        noise = torch.randn(n, decoder.latent_dim, dtype=reference.dtype, device=reference.device)
        return decoder.likelihood_mean(noise)
