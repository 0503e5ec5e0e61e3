"""Models written directly against the abstract API (no distribution objects).

A two-layer sigmoid belief network with dict latents ``{"z1": [batch, K, H1], "z2": [batch, K, H2]}``:
q(z1|x) q(z2|z1) and p(z2) p(z1|z2) p(x|z1). Its log-probabilities use
``binary_cross_entropy_with_logits`` directly.
"""

import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits

from blackbox_vae import GenModel, InfNet


def bernoulli_log_prob(logits, value):
    """Sum over the last dimension of log Bernoulli(value; sigmoid(logits)), broadcasting the two."""
    logits, value = torch.broadcast_tensors(logits, value)
    return -binary_cross_entropy_with_logits(logits, value, reduction="none").sum(-1)


class TwoLayerSBNInfNet(InfNet):
    def __init__(self, data_dim, h1, h2):
        super().__init__()
        self.layer1 = nn.Linear(data_dim, h1)
        self.layer2 = nn.Linear(h1, h2)

    def forward(self, data):
        self.params_ = self.layer1(data)  # [batch, H1] logits of q(z1|x)
        return self

    def sample(self, n_samples=1):
        logits1 = self.params_.unsqueeze(1).expand(-1, n_samples, -1)  # [batch, K, H1]
        z1 = torch.bernoulli(torch.sigmoid(logits1))
        z2 = torch.bernoulli(torch.sigmoid(self.layer2(z1)))  # [batch, K, H2]
        return {"z1": z1, "z2": z2}

    def log_prob(self, latents):
        z1, z2 = latents["z1"], latents["z2"]
        return bernoulli_log_prob(self.params_.unsqueeze(1), z1) + bernoulli_log_prob(self.layer2(z1), z2)


class TwoLayerSBNGenModel(GenModel):
    def __init__(self, data_dim, h1, h2):
        super().__init__()
        self.prior_logits = nn.Parameter(torch.randn(h2))
        self.layer2 = nn.Linear(h2, h1)
        self.layer1 = nn.Linear(h1, data_dim)

    def forward(self, data, latents):
        self.params_ = (self.layer2(latents["z2"]), self.layer1(latents["z1"]))
        return self

    def log_prob(self, data, latents):
        logits_z1, logits_x = self.params_
        return (
            bernoulli_log_prob(self.prior_logits, latents["z2"])
            + bernoulli_log_prob(logits_z1, latents["z1"])
            + bernoulli_log_prob(logits_x, data.unsqueeze(1))
        )

    def sample(self, n_samples=1):
        z2 = torch.bernoulli(torch.sigmoid(self.prior_logits).expand(n_samples, -1))
        z1 = torch.bernoulli(torch.sigmoid(self.layer2(z2)))
        return torch.bernoulli(torch.sigmoid(self.layer1(z1))), {"z1": z1, "z2": z2}
