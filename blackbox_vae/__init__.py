"""blackbox_vae: gradient estimators for variational inference in black-box latent-variable models.

Write an inference network q(z|x) by subclassing `InfNet` (or
`DistributionInfNet`) and a generative model p(x, z) by subclassing
`GenModel` (or `DistributionGenModel`), then train them with a
loss object:

```python
loss = ScoreFunctionLoss(inf_net, gen_model, n_samples=5, baseline="leave-one-out")
optimizer = torch.optim.Adam(loss.parameters(), lr=1e-3)
for x in batches:
    optimizer.zero_grad()
    loss(x).backward()
    optimizer.step()
```

Shapes: data ``[batch, *data_shape]``, latents ``[batch, n_samples, *latent_shape]``,
every log-probability ``[batch, n_samples]``.
"""

from blackbox_vae.evaluation import log_likelihood_bound
from blackbox_vae.gen_model import DistributionGenModel, GenModel
from blackbox_vae.inf_net import DistributionInfNet, InfNet
from blackbox_vae.layered import LayeredInfNet
from blackbox_vae.latents import Latents
from blackbox_vae.losses import (
    ARMLoss,
    ARSMLoss,
    DisARMLoss,
    ELBOLoss,
    GumbelSoftmaxLoss,
    IWAELoss,
    Loss,
    NVILBaseline,
    NVILLoss,
    REBARLoss,
    RELAXControlVariate,
    RELAXLoss,
    RWSLoss,
    ScoreFunctionLoss,
    SymmetricLoss,
    TemperatureSchedule,
    UnorderedSetLoss,
    VIMCOLoss,
    ZGRLoss,
)
from blackbox_vae.relaxed import RelaxedBernoulliInfNet, RelaxedCategoricalInfNet

__version__ = "0.1.0"

__all__ = [
    "InfNet",
    "GenModel",
    "DistributionInfNet",
    "LayeredInfNet",
    "DistributionGenModel",
    "Latents",
    "RelaxedBernoulliInfNet",
    "RelaxedCategoricalInfNet",
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
    "log_likelihood_bound",
    "Trainer",
    "Callback",
    "__version__",
]


def __getattr__(name: str):
    # The Trainer (and its progress bars, plots and checkpoints) loads on first use, so that `import
    # blackbox_vae` stays as light as the losses.
    if name in ("Trainer", "Callback"):
        from blackbox_vae import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'blackbox_vae' has no attribute {name!r}")
