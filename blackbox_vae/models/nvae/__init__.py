"""NVAE-style deep hierarchical VAEs (Vahdat & Kautz 2020), one module per concern.

- `architecture`: the settings (`NVAEArchitecture`) and their checks;
- `cells`: the residual cells (encoder BN-Swish cell, decoder inverted residual, squeeze-and-excitation);
- `towers`: the bottom-up encoder and the top-down decoder walk;
- `likelihoods`: the discretized logistic mixture for 8-bit images;
- `model`: the InfNet/GenModel pair (`NVAEInfNet`, `NVAEGenModel`);
- `spectral`: spectral regularization of every convolution;
- `batch_norm`: batch-norm readjustment before sampling;
- `presets`: the named configurations (``nvae-tiny``, ``nvae-small``, ``nvae-mnist``).
"""

from blackbox_vae.models.nvae.architecture import ArchitectureError, NVAEArchitecture
from blackbox_vae.models.nvae.batch_norm import readjust_batch_norm
from blackbox_vae.models.nvae.likelihoods import (DiscretizedLogisticMixture, logistic_mixture_channels,
                                                  logistic_mixture_parameters)
from blackbox_vae.models.nvae.model import NVAEGenModel, NVAEInfNet
from blackbox_vae.models.nvae.spectral import SpectralRegularizer

__all__ = ["NVAEArchitecture", "ArchitectureError", "NVAEGenModel", "NVAEInfNet", "DiscretizedLogisticMixture",
           "logistic_mixture_parameters", "logistic_mixture_channels", "SpectralRegularizer", "readjust_batch_norm"]
