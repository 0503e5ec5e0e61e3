"""Loss objects: one gradient estimator per module, over a small base."""

from blackbox_vae.losses.arm import ARMLoss, DisARMLoss
from blackbox_vae.losses.arsm import ARSMLoss
from blackbox_vae.losses.base import Loss
from blackbox_vae.losses.elbo import ELBOLoss
from blackbox_vae.losses.gumbel_softmax import GumbelSoftmaxLoss, TemperatureSchedule
from blackbox_vae.losses.iwae import IWAELoss
from blackbox_vae.losses.nvil import NVILBaseline, NVILLoss
from blackbox_vae.losses.rebar import REBARLoss, RELAXControlVariate, RELAXLoss
from blackbox_vae.losses.rws import RWSLoss
from blackbox_vae.losses.score_function import ScoreFunctionLoss
from blackbox_vae.losses.symmetric import SymmetricLoss
from blackbox_vae.losses.unordered_set import UnorderedSetLoss
from blackbox_vae.losses.vimco import VIMCOLoss
from blackbox_vae.losses.zgr import ZGRLoss

__all__ = [
    "Loss",
    "ELBOLoss",
    "ScoreFunctionLoss",
    "VIMCOLoss",
    "NVILLoss",
    "NVILBaseline",
    "RWSLoss",
    "SymmetricLoss",
    "GumbelSoftmaxLoss",
    "TemperatureSchedule",
    "IWAELoss",
    "ZGRLoss",
    "ARMLoss",
    "DisARMLoss",
    "ARSMLoss",
    "REBARLoss",
    "RELAXLoss",
    "RELAXControlVariate",
    "UnorderedSetLoss",
]
