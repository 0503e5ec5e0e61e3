"""Loss objects: one gradient estimator per module, over a small base."""

from blackbox_vae.losses.base import Loss
from blackbox_vae.losses.elbo import ELBOLoss
from blackbox_vae.losses.score_function import ScoreFunctionLoss

__all__ = ["Loss", "ELBOLoss", "ScoreFunctionLoss"]
