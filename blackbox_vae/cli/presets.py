"""Named configurations shipped with the package (``--config nvae-tiny``): YAML files in ``presets/``."""

from __future__ import annotations

from pathlib import Path

from blackbox_vae.cli.config import ConfigError

__all__ = ["PRESET_DIR", "preset_names", "resolve_config"]

PRESET_DIR = Path(__file__).resolve().parents[1] / "models" / "nvae" / "presets"


def preset_names() -> list[str]:
    """The shipped presets' names, sorted."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def resolve_config(value: str | Path) -> Path:
    """The settings file ``--config`` names: an existing path, else the shipped preset of that name.

    Raises:
        ConfigError: when it is neither, naming the presets.
    """
    path = Path(value)
    if path.exists():
        return path
    preset = PRESET_DIR / f"{value}.yaml"
    if path.name == str(value) and preset.is_file():
        return preset
    raise ConfigError(f"`config` (--config) {str(value)!r} is neither a settings file (no such file: "
                      f"{path.resolve()}) nor a preset; the presets are {', '.join(preset_names())}.")
