"""A user's own models by import path: ``--model package.module:function``, as uvicorn and gunicorn name an app.

The factory is called as ``function(data_dim, image_shape, likelihood, **options)`` and returns
``(inf_net, gen_model)``. A run records the path and the options; `evaluate`, `sample`, the samplers and
resume import the factory again and load the weights from the checkpoint.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable, Mapping, Optional, Sequence

from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet

__all__ = ["ModelFactoryError", "import_factory", "build_factory_models"]


class ModelFactoryError(ValueError):
    """A model factory cannot be imported or called, or its models break the contract; the message says which."""


def import_factory(target: str) -> Callable[..., Any]:
    """The function ``target`` (``package.module:function``; the function may be ``Class.method``) names.

    The current directory is searched first, as uvicorn does, so that ``my_models.py`` beside the
    command works without installing it.

    Raises:
        ModelFactoryError: naming the path and why it cannot be imported or is not callable.
    """
    module_name, _, attribute = target.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or whatever the module raises while it is imported
        raise ModelFactoryError(f"--model {target}: cannot import {module_name} ({type(error).__name__}: "
                                f"{(str(error).splitlines() or [''])[0]}).") from error
    factory: Any = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise ModelFactoryError(f"--model {target}: {module_name} has no attribute {attribute!r}.")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ModelFactoryError(f"--model {target}: {attribute} is a {type(factory).__name__}, not a function.")
    return factory


def build_factory_models(target: str, data_dim: int, image_shape: Optional[Sequence[int]], likelihood: str,
                         options: Optional[Mapping[str, Any]] = None, example: Optional[Tensor] = None
                         ) -> tuple[InfNet, GenModel]:
    """Calls the factory and checks what it returns.

    Args:
        target: ``package.module:function``.
        data_dim: D, the values per row.
        image_shape: the shape of one image, or None (see `blackbox_vae.data.Dataset`).
        likelihood: the data's: ``"bernoulli"``, ``"8-bit"`` or ``"gaussian"``.
        options: keyword options for the factory.
        example: a batch ``[batch, D]``; when given, the models must pass `blackbox_vae.testing.check_inf_net`
            and `check_gen_model` on it.

    Raises:
        ModelFactoryError: one line naming the path and the problem.
    """
    factory = import_factory(target)
    try:
        built = factory(data_dim, None if image_shape is None else tuple(image_shape), likelihood, **dict(options or {}))
    except Exception as error:  # the user's code: any error is theirs to read
        raise ModelFactoryError(f"--model {target}: calling it as {target.partition(':')[2]}(data_dim={data_dim}, "
                                f"image_shape={image_shape}, likelihood={likelihood!r}"
                                f"{''.join(f', {k}={v!r}' for k, v in (options or {}).items())}) raised "
                                f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}") from error
    if not (isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], InfNet)
            and isinstance(built[1], GenModel)):
        got = (f"a tuple of {', '.join(type(b).__name__ for b in built)}" if isinstance(built, tuple)
               else type(built).__name__)
        raise ModelFactoryError(f"--model {target}: expected it to return (inf_net, gen_model), an InfNet and a "
                                f"GenModel; got {got}.")
    inf_net, gen_model = built
    if example is not None:
        from blackbox_vae.testing import ContractError, check_gen_model, check_inf_net

        try:
            check_inf_net(inf_net, example)
            check_gen_model(gen_model, example)
        except ContractError as error:
            raise ModelFactoryError(f"--model {target}: its models fail the contract checks on one batch: "
                                    f"{' '.join(str(error).split())}") from error
        except Exception as error:  # an error inside the user's forward, sample or log_prob
            raise ModelFactoryError(f"--model {target}: its models failed on one batch of the data "
                                    f"{tuple(example.shape)} ({type(error).__name__}: "
                                    f"{(str(error).splitlines() or [''])[0]}).") from error
    return inf_net, gen_model
