r"""NVAE (Vahdat & Kautz 2020) as an InfNet/GenModel pair: a deep hierarchy of Normal latent groups in scales.

p(x, z) = p(z_0) \prod_g p(z_g | z_{<g}) p(x | z): the top-down decoder computes each prior from the groups
above it; q(z | x) = \prod_g q(z_g | x, z_{<g}) reads the bottom-up encoder's features *and* the decoder's
state, with the residual parameterization $\mu_q = \mu_p + \Delta\mu$, $\log\sigma_q = \log\sigma_p +
\Delta\log\sigma$. The encoder therefore shares p's top-down modules (`NVAEInfNet` takes its `NVAEGenModel`).

Latents are a tuple of groups, top first, each ``[batch, n_samples, C_z, s, s]``; the K samples of every
datum pass through the hierarchy as one batch of ``batch * K`` rows. Data are flat ``[batch, C * H * W]`` in
[0, 1] (binary for the Bernoulli likelihood, on the 8-bit grid k/255 for the logistic mixture).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from blackbox_vae._call_state import set_call_state
from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.models.nvae.architecture import ArchitectureError, NVAEArchitecture
from blackbox_vae.models.nvae.likelihoods import DiscretizedLogisticMixture, logistic_mixture_parameters
from blackbox_vae.models.nvae.towers import EncoderTower, Normal, TopDownDecoder, pad

__all__ = ["NVAEGenModel", "NVAEInfNet"]

# Not channels-last: it runs the depthwise convolutions' backward pass 2.9x faster on CPU, but with torch
# 2.13's CPU kernels a training run in that layout was not reproducible from step 3 and, on one thread,
# crashed with heap corruption ("corrupted double-linked list"). Measured on the nvae-tiny preset.


def _flat(latents: Sequence[Tensor]) -> tuple[list[Tensor], tuple[int, ...]]:
    """Groups with any leading dimensions -> ``[N, C, s, s]`` each, and the leading dimensions."""
    lead = tuple(latents[0].shape[:-3])
    return [z.reshape(-1, *z.shape[-3:]) for z in latents], lead


class _WalkCache:
    """The decoder walk q's sampling just did, kept for p to reuse on the same latents (it would redo it
    exactly: the walk given the drawn latents is the walk that drew them). Halves the decoder's cost of a
    step; valid only for that tuple of latents and while no parameter has been updated in place."""

    def __init__(self, latents: tuple[Tensor, ...], priors: list[Normal], h: Tensor, versions: tuple[int, ...]):
        self.latents, self.priors, self.h, self.versions = latents, priors, h, versions


class NVAEGenModel(GenModel):
    """p(x, z) of an NVAE: a standard Normal top group, Normal groups given the groups above, and p(x | z).

    Args:
        image_shape: ``(C, H, W)`` of the images (data are their flattening).
        architecture: an `NVAEArchitecture`, or a mapping of its fields (the defaults: ``nvae-tiny``).

    Shapes: data ``[batch, C*H*W]``; latents a tuple of ``[batch, n_samples, C_z, s_g, s_g]``, top group first.

    Raises:
        ArchitectureError: for an invalid architecture, naming the field (e.g. an image size the scales
            cannot divide).
    """

    def __init__(self, image_shape: Sequence[int], architecture: Optional[NVAEArchitecture | dict] = None):
        super().__init__()
        image_shape = tuple(int(v) for v in image_shape)
        if len(image_shape) != 3:
            raise ArchitectureError(f"NVAEGenModel: `image_shape` must be (C, H, W); got {image_shape!r}.")
        if not isinstance(architecture, NVAEArchitecture):
            architecture = NVAEArchitecture.from_dict(architecture)
        self.arch = architecture.validate(image_shape)
        self.image_shape = image_shape
        self.decoder = TopDownDecoder(self.arch, image_shape)
        self.walk_cache_: Optional[_WalkCache] = None

    def __getstate__(self) -> dict:
        # the walk cache holds the last call's graph: a deep copy (or a pickle) starts without it
        state = super().__getstate__()
        state["walk_cache_"] = None
        return state

    # --------------------------------------------------------------- the walk
    @property
    def group_shapes(self) -> list[tuple[int, int, int]]:
        """Each latent group's ``(C_z, s, s)``, top first."""
        return list(self.decoder.group_shapes)

    def _versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.decoder.parameters())

    def keep_walk(self, latents: tuple[Tensor, ...], priors: list[Normal], h: Tensor) -> None:
        """Called by `NVAEInfNet` after drawing ``latents``: p reuses this walk when it scores them."""
        set_call_state(self, "walk_cache_", _WalkCache(latents, priors, h, self._versions()))

    def _walk_given(self, latents: tuple[Tensor, ...]) -> tuple[list[Normal], Tensor]:
        cache = self.walk_cache_
        if cache is not None and cache.latents is latents and cache.versions == self._versions():
            set_call_state(self, "walk_cache_", None)  # one use: it holds the graph
            return cache.priors, cache.h
        flat, _ = _flat(latents)
        _, priors, h = self.decoder.walk(flat[0].shape[0], lambda group, h, prior: flat[group])
        return priors, h

    # --------------------------------------------------------------- GenModel
    def forward(self, data: Tensor, latents: tuple[Tensor, ...]) -> "NVAEGenModel":
        self._check_latents(latents, "NVAEGenModel.forward")
        flat, lead = _flat(latents)
        priors, h = self._walk_given(latents)
        group_log_p = torch.stack([prior.log_prob(z) for prior, z in zip(priors, flat)], dim=-1)  # [N, G]
        images = data.reshape(data.shape[0], 1, *self.image_shape).expand(*lead, *self.image_shape)
        log_likelihood = self._likelihood_log_prob(self.decoder.likelihood_parameters(h),
                                                   images.reshape(-1, *self.image_shape))  # [N]
        set_call_state(self, "params_", (group_log_p.reshape(*lead, -1), log_likelihood.reshape(lead)))
        return self

    def log_prob(self, data: Tensor, latents: tuple[Tensor, ...]) -> Tensor:
        group_log_p, log_likelihood = self.params_
        return group_log_p.sum(-1) + log_likelihood  # [batch, K]

    def group_log_prob(self, latents: tuple[Tensor, ...]) -> Tensor:
        """log p(z_g | z_{<g}) of every group, for the latents last passed to `forward`: ``[batch, K, G]``."""
        return self.params_[0]

    def _likelihood_log_prob(self, parameters: Tensor, images: Tensor) -> Tensor:
        if self.arch.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(parameters, images, reduction="none").flatten(1).sum(1)
        return self._mixture(parameters).log_prob(images)

    def _mixture(self, parameters: Tensor) -> DiscretizedLogisticMixture:
        return DiscretizedLogisticMixture(*logistic_mixture_parameters(parameters, self.arch.mixtures,
                                                                       self.image_shape[0]), validate_args=False)

    def _check_latents(self, latents: tuple[Tensor, ...], where: str) -> None:
        shapes = self.group_shapes
        if not isinstance(latents, (tuple, list)) or len(latents) != len(shapes) or any(
                not isinstance(z, Tensor) or tuple(z.shape[-3:]) != shape for z, shape in zip(latents, shapes)):
            got = [tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__ for z in latents] \
                if isinstance(latents, (tuple, list)) else type(latents).__name__
            raise ValueError(f"{where}: `latents` must be a tuple of {len(shapes)} groups shaped [*, C, s, s] = "
                             f"{shapes}, top first; got {got}.")

    # --------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n_samples: int = 1, temperature: float = 1.0) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Ancestral samples, in one walk: (x ``[n, C*H*W]``, latents, each ``[n, C_z, s, s]``).

        Args:
            n_samples: n.
            temperature: scales every prior's standard deviation (NVAE's sampling temperature; 0 gives
                each prior's mean, 1 the model).

        Raises:
            ValueError: for a temperature that is not a number >= 0.
        """
        latents, h = self._prior_walk(n_samples, temperature)
        return self._draw_data(self.decoder.likelihood_parameters(h)).flatten(1), latents

    @torch.no_grad()
    def sample_latents(self, n_samples: int = 1, temperature: float = 1.0) -> tuple[Tensor, ...]:
        """Latents from the prior at ``temperature`` (see `sample`): a tuple of ``[n, C_z, s, s]``."""
        return self._prior_walk(n_samples, temperature)[0]

    def _prior_walk(self, n_samples: int, temperature: float) -> tuple[tuple[Tensor, ...], Tensor]:
        if not (isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature >= 0):
            raise ValueError(f"NVAEGenModel.sample: `temperature` must be a number >= 0; got {temperature!r}.")
        latents, _, h = self.decoder.walk(n_samples, lambda group, h, prior: prior.rsample(temperature))
        return tuple(latents), h

    def _draw_data(self, parameters: Tensor) -> Tensor:
        if self.arch.likelihood == "bernoulli":
            return torch.bernoulli(torch.sigmoid(parameters))
        return self._mixture(parameters).sample()

    def likelihood_mean(self, latents: tuple[Tensor, ...]) -> Tensor:
        """E[x | z] (for the mixture: its mean), for latents with any leading dimensions: ``[*lead, C*H*W]``."""
        flat, lead = _flat(latents)
        _, _, h = self.decoder.walk(flat[0].shape[0], lambda group, h, prior: flat[group])
        parameters = self.decoder.likelihood_parameters(h)
        mean = torch.sigmoid(parameters) if self.arch.likelihood == "bernoulli" else self._mixture(parameters).mean
        return mean.reshape(*lead, -1)

    @torch.no_grad()
    def sample_data(self, latents: tuple[Tensor, ...]) -> Tensor:
        """x ~ p(x | z), for latents with any leading dimensions: ``[*lead, C*H*W]``."""
        flat, lead = _flat(latents)
        _, _, h = self.decoder.walk(flat[0].shape[0], lambda group, h, prior: flat[group])
        return self._draw_data(self.decoder.likelihood_parameters(h)).reshape(*lead, -1)


class NVAEInfNet(InfNet):
    """q(z | x) of an NVAE: the bottom-up encoder's features, combined group by group with p's top-down state.

    Args:
        gen_model: the `NVAEGenModel` whose top-down path the posterior reads (its modules are shared, as in
            NVAE, where one network holds both).

    Shapes: data ``[batch, C*H*W]``; latents a tuple of ``[batch, n_samples, C_z, s_g, s_g]``, top first.
    """

    def __init__(self, gen_model: NVAEGenModel):
        super().__init__()
        if not isinstance(gen_model, NVAEGenModel):
            raise TypeError(f"NVAEInfNet: `gen_model` must be the NVAEGenModel whose top-down path q reads; got "
                            f"{type(gen_model).__name__}.")
        arch = gen_model.arch
        self.arch, self.image_shape = arch, gen_model.image_shape
        # p's top-down path is q's too: registered here as well (as the ladder VAE shares p's modules), so that
        # q's parameters() and .to() include it; the plain reference reaches p's walk cache
        self.decoder = gen_model.decoder
        self.gen_model_ref = (gen_model,)  # a tuple: not registered as a submodule
        self.encoder = EncoderTower(arch, self.image_shape[0])
        levels = arch.preprocess_blocks + arch.scales - 1
        self.combiners, self.heads = nn.ModuleList(), nn.ModuleList()
        for group, scale in enumerate(gen_model.decoder.scale_of_group):
            encoder_channels = arch.encoder_channels * 2 ** (levels - scale)
            # the top group reads the encoder alone; the others add p's state, mapped to the encoder's channels
            self.combiners.append(nn.Identity() if group == 0 else
                                  nn.Conv2d(gen_model.decoder.group_channels[group], encoder_channels, 1))
            self.heads.append(nn.Conv2d(encoder_channels, 2 * arch.latent_channels, 3, padding=1))

    @property
    def gen_model(self) -> NVAEGenModel:
        """The `NVAEGenModel` whose top-down path q reads."""
        return self.gen_model_ref[0]

    def forward(self, data: Tensor) -> "NVAEInfNet":
        images = data.reshape(data.shape[0], *self.image_shape)
        size = self.arch.image_size or self.image_shape[1]
        set_call_state(self, "params_", self.encoder(pad(images, size)))  # per group [B, C_e, s, s], top first
        return self

    def _posterior(self, group: int, h: Tensor, prior: Normal, features: list[Tensor]) -> Normal:
        feature = features[group] if group == 0 else features[group] + self.combiners[group](h)
        delta_mean, delta_log_scale = self.heads[group](feature).chunk(2, dim=1)
        if group == 0:
            return Normal.from_raw(delta_mean, delta_log_scale)
        # residual parameterization: offsets to the prior's raw (unclamped) parameters
        return Normal.from_raw(prior.raw_mean + delta_mean, prior.raw_log_scale + delta_log_scale)

    def _walk(self, n_samples: int, draw: Optional[str], given: Optional[tuple[Tensor, ...]] = None):
        """The top-down walk for the batch last passed to `forward`, with ``n_samples`` rows per datum.

        ``draw`` is ``"rsample"``, ``"sample"`` (no gradient path through the draw) or ``"mean"``; or latents
        are ``given``. Returns (latents ``[B*K, ...]`` per group, log q ``[B*K, G]``, priors, h).
        """
        batch = self.params_[0].shape[0]
        features = [f.repeat_interleave(n_samples, dim=0) if n_samples > 1 else f for f in self.params_]
        flat = _flat(given)[0] if given is not None else None
        log_q = []

        def choose(group: int, h: Tensor, prior: Normal) -> Tensor:
            posterior = self._posterior(group, h, prior, features)
            if flat is not None:
                z = flat[group]
            elif draw == "mean":
                z = posterior.mean
            else:
                z = posterior.rsample()
                if draw == "sample":
                    z = z.detach()
            log_q.append(posterior.log_prob(z))
            return z

        latents, priors, h = self.gen_model.decoder.walk(batch * n_samples, choose)
        return latents, torch.stack(log_q, dim=-1), priors, h

    def _drawn(self, n_samples: int, draw: str) -> tuple[tuple[Tensor, ...], Tensor]:
        batch = self.params_[0].shape[0]
        flat, log_q, priors, h = self._walk(n_samples, draw)
        latents = tuple(z.reshape(batch, n_samples, *z.shape[1:]) for z in flat)
        self.gen_model.keep_walk(latents, priors, h)
        return latents, log_q.reshape(batch, n_samples, -1)

    def rsample(self, n_samples: int = 1) -> tuple[Tensor, ...]:
        return self._drawn(n_samples, "rsample")[0]

    def rsample_and_log_prob(self, n_samples: int = 1) -> tuple[tuple[Tensor, ...], Tensor]:
        """Fused: one walk draws the latents and scores them under q (and leaves p its walk to reuse)."""
        latents, group_log_q = self._drawn(n_samples, "rsample")
        return latents, group_log_q.sum(-1)

    def sample(self, n_samples: int = 1) -> tuple[Tensor, ...]:
        with torch.no_grad():
            return self._drawn(n_samples, "sample")[0]

    def sample_and_log_prob(self, n_samples: int = 1) -> tuple[tuple[Tensor, ...], Tensor]:
        """Fused: detached latents and their log q (differentiable in q's parameters)."""
        latents, group_log_q = self._drawn(n_samples, "sample")
        return latents, group_log_q.sum(-1)

    def log_prob(self, latents: tuple[Tensor, ...]) -> Tensor:
        return self.group_log_prob(latents).sum(-1)

    def group_log_prob(self, latents: tuple[Tensor, ...]) -> Tensor:
        """log q(z_g | x, z_{<g}) of every group: ``[batch, K, G]``."""
        self.gen_model._check_latents(latents, "NVAEInfNet.log_prob")
        batch, n_samples = latents[0].shape[:2]
        _, log_q, _, _ = self._walk(n_samples, None, given=latents)
        return log_q.reshape(batch, n_samples, -1)

    def mean(self) -> tuple[Tensor, ...]:
        """Each group's posterior mean given the means of the groups above: ``[batch, C_z, s, s]`` per group."""
        with torch.no_grad():
            flat, _, _, _ = self._walk(1, "mean")
        return tuple(flat)
