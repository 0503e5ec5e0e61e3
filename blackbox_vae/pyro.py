"""Pyro interoperability: a Pyro guide as an InfNet and a Pyro model as a GenModel.

Every loss of this library (VIMCO included, which Pyro does not have) then runs on Pyro programs:

```python
inf_net = PyroInfNet(guide)         # a PyroModule (or nn.Module) called as guide(data)
gen_model = PyroGenModel(model)     # called as model(data); observes data inside pyro.plate
loss = VIMCOLoss(inf_net, gen_model, n_samples=5)
```

Conventions and choices:

- The programs take the data batch ``[batch, *data_shape]`` and put their sample sites inside one
  ``pyro.plate`` over the batch at ``dim=-1``; latent dimensions are event dimensions (``.to_event``).
  So every site's batch shape is ``[batch]``, and under the particle plate ``[n_samples, batch]``.
- All ``n_samples`` are drawn in one vectorized pass: the program runs inside a particle
  ``pyro.plate`` at ``dim=-2``.
- Latents are a dict ``{site name: tensor [batch, n_samples, *event_shape]}`` with one entry per
  unobserved sample site of the guide. Named sites keep hierarchical models readable and match
  what Pyro users already write; conditioning on them is ``poutine.condition`` by name.
- Parameters must be reachable as ``nn.Module`` parameters, so that ``loss.parameters()``,
  ``state_dict()`` and ``.to(device)`` see them: pass a ``PyroModule``/``nn.Module``, or a function
  together with ``modules=[...]`` it uses (e.g. through ``pyro.module``). Parameters that live only in
  Pyro's global param store (``pyro.param`` in a plain function) are rejected with a clear error.

Not supported, with errors that say so: sites whose batch shape is not ``[n_samples, batch]`` (no
data plate, or extra plates), enumerated sites (``infer={"enumerate": ...}``), and guides with
observed sites.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

import pyro  # a dependency of blackbox_vae, imported only by the modules that use it
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet

__all__ = ["PyroInfNet", "PyroGenModel", "PyroInterfaceError"]

_PARTICLES = "_blackbox_vae_particles"


class PyroInterfaceError(ValueError):
    """A Pyro program does not follow the conventions the wrappers need; the message says which."""


class _Program(nn.Module):
    """A Pyro program and the modules holding its parameters."""

    def __init__(self, program: Callable, modules: Sequence[nn.Module], owner: str):
        super().__init__()
        if not callable(program):
            raise TypeError(f"{owner}: expected a callable Pyro program; got {type(program).__name__}.")
        self.owner = owner
        self.program_module = program if isinstance(program, nn.Module) else None
        self._function = None if isinstance(program, nn.Module) else program
        self.modules_used = nn.ModuleList(modules)

    def __call__(self, *args, **kwargs):  # not forward: nn.Module hooks are not wanted around a Pyro program
        return (self.program_module or self._function)(*args, **kwargs)

    def trace(self, data: Tensor, n_samples: int, condition: dict | None = None, uncondition: bool = False):
        program = self
        if condition:
            program = poutine.condition(program, data=condition)
        if uncondition:
            program = poutine.uncondition(program)

        def particles(*args):
            with pyro.plate(_PARTICLES, n_samples, dim=-2):
                return program(*args)

        trace = poutine.trace(particles).get_trace(data)
        self._check_params(trace)
        trace.compute_log_prob()
        return trace

    def _check_params(self, trace) -> None:
        own = {id(p) for p in self.parameters()}
        store = dict(pyro.get_param_store().named_parameters())
        for name, site in trace.nodes.items():
            if site["type"] == "param" and name in store and id(store[name]) not in own:
                raise PyroInterfaceError(
                    f"{self.owner}: the program uses the parameter {name!r} from Pyro's global param store, which "
                    "is not among this wrapper's module parameters, so optimizers, state_dict() and .to(device) "
                    "would miss it. Write the program as a PyroModule (PyroParam attributes), or register the "
                    "nn.Modules it uses with pyro.module(...) and pass them as modules=[...]. If the name is also "
                    "another module's: Pyro names parameters by attribute path, so two PyroModules with the same "
                    "attribute names (say, a guide and a model that both hold `self.net`) share one parameter; "
                    "rename one of them.")

    def sites(self, trace, batch: int, n_samples: int, observed: bool | None) -> dict:
        """Sample sites (all, or only the observed / unobserved ones), each checked for its batch shape."""
        result = {}
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):  # plates appear as subsample sites
                continue
            if observed is not None and site["is_observed"] != observed:
                continue
            if site["infer"].get("enumerate"):
                raise PyroInterfaceError(f"{self.owner}: site {name!r} is marked for enumeration; enumerated sites "
                                         "are not supported (the losses need sampled latents).")
            if tuple(site["log_prob"].shape) != (n_samples, batch):
                raise PyroInterfaceError(
                    f"{self.owner}: site {name!r} has batch shape {tuple(site['fn'].batch_shape)} under the particle "
                    f"plate; expected [n_samples, batch] = ({n_samples}, {batch}). Put every sample site inside one "
                    "pyro.plate over the data batch at dim=-1, and make latent dimensions event dimensions "
                    "with .to_event(...).")
            result[name] = site
        return result


def _to_loss_layout(value: Tensor) -> Tensor:
    return value.movedim(0, 1)  # [K, batch, ...] -> [batch, K, ...]


def _to_pyro_layout(latents: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: value.movedim(1, 0) for name, value in latents.items()}  # [batch, K, ...] -> [K, batch, ...]


class PyroInfNet(InfNet):
    """A Pyro guide as an InfNet; latents are ``{site: [batch, n_samples, *event_shape]}``.

    Args:
        guide: a ``PyroModule``/``nn.Module``, or a function, called as ``guide(data)``.
        modules: ``nn.Module``s whose parameters a function guide uses.

    After `forward`, ``params_`` holds the last Pyro trace (``None`` until a sample or score).
    """

    def __init__(self, guide: Callable, *, modules: Sequence[nn.Module] = ()):
        super().__init__()
        self.guide = _Program(guide, modules, "PyroInfNet")
        self._data: Tensor | None = None

    def forward(self, data: Tensor) -> "PyroInfNet":
        self._data, self.params_ = data, None
        return self

    @property
    def has_rsample(self) -> bool:
        """Whether `rsample` works: every sample site of the last trace has a reparameterized sample (true
        before any trace)."""
        if self.params_ is None:
            return True
        return all(site["fn"].has_rsample for site in self.params_.nodes.values()
                   if site["type"] == "sample" and not site_is_subsample(site))

    def _run(self, n_samples: int, condition: dict | None = None) -> tuple[dict[str, Tensor], Tensor]:
        if self._data is None:
            raise RuntimeError("Call `PyroInfNet(data)` (its forward) before sampling or scoring.")
        batch = self._data.shape[0]
        trace = self.guide.trace(self._data, n_samples, condition)
        observed = [name for name, site in trace.nodes.items() if site["type"] == "sample" and site["is_observed"]
                    and not site_is_subsample(site) and name not in (condition or {})]
        if observed:
            raise PyroInterfaceError(f"PyroInfNet: the guide observes {observed}; a guide must not observe data.")
        # conditioned sites are marked observed; with no condition, every site is a drawn latent
        sites = self.guide.sites(trace, batch, n_samples, observed=None if condition else False)
        if not sites:
            raise PyroInterfaceError("PyroInfNet: the guide has no sample sites.")
        self.params_ = trace
        latents = {name: _to_loss_layout(site["value"]) for name, site in sites.items()}
        log_q = sum(site["log_prob"] for site in sites.values()).transpose(0, 1)  # [batch, K]
        return latents, log_q

    def sample_and_log_prob(self, n_samples: int = 1) -> tuple[dict[str, Tensor], Tensor]:
        """One traced, vectorized pass: ``(latents, log q [batch, n_samples])``."""
        latents, log_q = self._run(n_samples)
        return {name: value.detach() for name, value in latents.items()}, log_q

    def sample(self, n_samples: int = 1) -> dict[str, Tensor]:
        with torch.no_grad():
            return self._run(n_samples)[0]

    def rsample(self, n_samples: int = 1) -> dict[str, Tensor]:
        """Reparameterized samples; every site's distribution must have ``rsample``."""
        return self.rsample_and_log_prob(n_samples)[0]

    def rsample_and_log_prob(self, n_samples: int = 1) -> tuple[dict[str, Tensor], Tensor]:
        """One traced pass for reparameterized samples and their log q (the trace scores what it drew)."""
        latents, log_q = self._run(n_samples)
        trace = self.params_
        not_reparameterized = [name for name in latents if not trace.nodes[name]["fn"].has_rsample]
        if not_reparameterized:
            raise NotImplementedError(f"PyroInfNet.rsample: sites {not_reparameterized} have no reparameterized "
                                      "sample; use a score-function estimator (ScoreFunctionLoss, VIMCOLoss, ...).")
        return latents, log_q

    def log_prob(self, latents: dict[str, Tensor]) -> Tensor:
        """log q(z|x) of given latents: the guide conditioned on them, ``[batch, n_samples]``."""
        if not isinstance(latents, dict):
            raise TypeError(f"PyroInfNet.log_prob: latents must be a dict of site values; got {type(latents).__name__}.")
        n_samples = next(iter(latents.values())).shape[1]
        scored, log_q = self._run(n_samples, condition=_to_pyro_layout(latents))
        missing = sorted(set(scored) - set(latents))
        if missing:
            raise PyroInterfaceError(f"PyroInfNet.log_prob: no value given for the guide's sites {missing}.")
        return log_q


class PyroGenModel(GenModel):
    """A Pyro model as a GenModel: ``log_prob`` is the model's joint log-density, conditioned on the latents.

    Args:
        model: a ``PyroModule``/``nn.Module``, or a function, called as ``model(data)``; it observes the
            data at exactly one site.
        modules: ``nn.Module``s whose parameters a function model uses.
    """

    def __init__(self, model: Callable, *, modules: Sequence[nn.Module] = ()):
        super().__init__()
        self.model = _Program(model, modules, "PyroGenModel")
        self._data_shape: tuple[int, ...] | None = None

    def forward(self, data: Tensor, latents: dict[str, Tensor]) -> "PyroGenModel":
        self._data_shape = tuple(data.shape[1:])
        return self

    def log_prob(self, data: Tensor, latents: dict[str, Tensor]) -> Tensor:
        """log p(x, z) summed over all of the model's sample sites: ``[batch, n_samples]``."""
        n_samples = next(iter(latents.values())).shape[1]
        trace = self.model.trace(data, n_samples, condition=_to_pyro_layout(latents))
        self.params_ = trace
        sites = self.model.sites(trace, data.shape[0], n_samples, observed=None)
        unmatched = sorted(n for n, s in sites.items() if not s["is_observed"])
        if unmatched:
            raise PyroInterfaceError(f"PyroGenModel: the model's latent sites {unmatched} have no value among the "
                                     f"guide's latents {sorted(latents)}; the guide must sample every latent site.")
        return sum(site["log_prob"] for site in sites.values()).transpose(0, 1)  # [batch, K]

    def sample(self, n_samples: int = 1) -> tuple[Tensor, dict[str, Tensor]]:
        """Ancestral samples: the observed site's value and the latent sites' values, each ``[n_samples, ...]``."""
        if self._data_shape is None:
            raise RuntimeError("PyroGenModel.sample needs the data shape: call the model on a batch first.")
        with torch.no_grad():
            placeholder = torch.zeros(n_samples, *self._data_shape, device=_device_of(self))
            trace = self.model.trace(placeholder, 1, uncondition=True)
        observed = [n for n, s in trace.nodes.items() if s["type"] == "sample" and s["infer"].get("was_observed")]
        if len(observed) != 1:
            raise PyroInterfaceError(f"PyroGenModel.sample: expected exactly one site observing the data; found "
                                     f"{observed or 'none'}.")
        values = {n: s["value"][0] for n, s in trace.nodes.items()
                  if s["type"] == "sample" and not site_is_subsample(s) and n not in observed}
        return trace.nodes[observed[0]]["value"][0], values


def _device_of(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
