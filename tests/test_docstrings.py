"""Every public name has a docstring; functions with parameters document them (Args:)."""

import importlib
import inspect

import pytest

PUBLIC_MODULES = ["blackbox_vae", "blackbox_vae.losses", "blackbox_vae.models", "blackbox_vae.testing",
                  "blackbox_vae.pyro", "blackbox_vae.data", "blackbox_vae.cli", "blackbox_vae.latents",
                  "blackbox_vae.testing.strategies", "blackbox_vae.samplers", "blackbox_vae.metrics",
                  "blackbox_vae.zgr", "blackbox_vae.models.nvae"]


def public_objects():
    seen = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                seen[f"{obj.__module__}.{obj.__qualname__}"] = obj
                if inspect.isclass(obj):
                    for member_name, member in vars(obj).items():
                        documentable = inspect.isfunction(member) or isinstance(member, property)
                        if not member_name.startswith("_") and documentable:
                            seen[f"{obj.__module__}.{obj.__qualname__}.{member_name}"] = member
    return seen


OBJECTS = public_objects()


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_has_a_docstring(name):
    assert inspect.getdoc(OBJECTS[name]), f"{name} has no docstring"


def documented_parameters_missing(function):
    parameters = [p for p in inspect.signature(function).parameters if p not in ("self", "cls")
                  and inspect.signature(function).parameters[p].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                                             inspect.Parameter.VAR_KEYWORD)]
    doc = inspect.getdoc(function) or ""
    return [p for p in parameters if f"{p}:" not in doc and f"``{p}``" not in doc and f"`{p}`" not in doc]


@pytest.mark.parametrize("name", sorted(n for n, o in OBJECTS.items() if inspect.isfunction(o)
                                        and "." not in o.__qualname__))
def test_module_functions_document_their_arguments(name):
    assert not documented_parameters_missing(OBJECTS[name]), (
        f"{name}: arguments not named in its docstring: {documented_parameters_missing(OBJECTS[name])}")


def test_the_api_reference_covers_every_public_name():
    """Each public class and function appears in docs/reference/, by itself or through its module."""
    import re
    from pathlib import Path

    pages = "\n".join(p.read_text() for p in (Path(__file__).resolve().parents[1] / "docs" / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: ([\w\.]+)", pages, flags=re.M))
    missing = []
    for qualified, obj in OBJECTS.items():
        if not (inspect.isclass(obj) or inspect.isfunction(obj)) or "." in obj.__qualname__:
            continue  # a method or property: documented with its class
        exported_as = {f"{module}.{obj.__name__}" for module in PUBLIC_MODULES}
        if not ({obj.__module__, qualified} | exported_as) & documented:
            missing.append(qualified)
    assert not missing, f"not in the API reference: {missing}"
