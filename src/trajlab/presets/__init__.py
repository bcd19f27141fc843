"""Presets: named, reproducible sweeps with their claims and figures, one module (or folder) per paper result.

Each module holds a paper result whole: its sweep, baselines, claims and the figures drawn from the
stored tables (matplotlib is imported when a figure is drawn, not when the preset is). Shared
machinery: :mod:`trajlab.presets.preset` (:class:`Preset`, :class:`Claim`) and
:mod:`trajlab.presets.claims` (checking claims, small measurements); figure helpers used by several
presets are in :mod:`trajlab.plots`.

Every other module (or folder) of this package is imported once and each module-level
:class:`Preset` it defines is registered (:func:`register_preset`), exactly as a user's preset in
their own file is: a new built-in preset is a new module here and nothing else. A user's preset is run by
``trajlab run path/to/file.py:NAME`` (the file is imported, registering its families, problems and
presets; NAME is the preset's ``name`` or the variable holding it) or ``trajlab.run(preset)``.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from trajlab.errors import ConfigError, PluginError
from trajlab.presets.preset import Claim, Preset

PRESETS: dict[str, Preset] = {}
_SOURCES: dict[int, str] = {}  # id(preset) -> "/abs/path/file.py:NAME" of presets loaded from files
_BUILTINS_LOADED = False
#: Modules of this package that hold shared machinery, not presets.
_NOT_PRESETS = ("preset", "claims")


def register_preset(preset: Preset, *, replace: bool = False) -> Preset:
    """Make ``preset`` known by its name (``trajlab run NAME``, ``trajlab list``)."""
    if not isinstance(preset, Preset):
        raise PluginError(f"register_preset: expected a trajlab.Preset, got {type(preset).__name__}")
    if not isinstance(preset.name, str) or not preset.name or ":" in preset.name or "/" in preset.name:
        raise PluginError(f"preset {preset.name!r}: name must be a non-empty string without ':' or '/'")
    old = PRESETS.get(preset.name)
    if old is not None and old is not preset and not replace:
        raise PluginError(f"preset {preset.name!r}: a preset is already registered under this name")
    PRESETS[preset.name] = preset
    return preset


def presets_of(module) -> list[Preset]:
    """The module-level Preset objects of a module, in definition order."""
    return [value for value in vars(module).values() if isinstance(value, Preset)]


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in _NOT_PRESETS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for preset in presets_of(module):
            register_preset(preset)


def load_presets_file(path: str | Path) -> list[Preset]:
    """Import a user's Python file (registering its plug-ins), register the presets it defines by
    name (``trajlab.run(NAME)`` then works) and return them."""
    from trajlab.registry import load_file

    _load_builtins()
    module = load_file(path)
    found = presets_of(module)
    for preset in found:
        register_preset(preset)
        _SOURCES[id(preset)] = f"{Path(path).resolve()}:{preset.name}"
    return found


def get_preset(name: str | Preset) -> Preset:
    """The preset called ``name`` (a registered name or ``path/to/file.py:NAME``); ConfigError
    naming the known presets otherwise."""
    if isinstance(name, Preset):
        return name
    _load_builtins()
    path, colon, attribute = name.rpartition(":")
    if colon and path.endswith(".py"):
        if not Path(path).is_file():
            raise ConfigError(f"PRESET: no such file {path!r}")
        from trajlab.registry import load_file

        defined = load_presets_file(path)
        found = [p for p in defined if p.name == attribute]
        variable = getattr(load_file(path), attribute, None)
        if not found and isinstance(variable, Preset):
            found = [variable]
        if not found:
            names = [p.name for p in defined]
            raise ConfigError(f"PRESET: {path!r} defines no preset {attribute!r}; its presets: {', '.join(names) or 'none'}")
        return found[0]
    if name.endswith(".py"):
        raise ConfigError(f"PRESET: name a preset of the file as {name}:NAME (see `trajlab list {name}`)")
    if name not in PRESETS:
        raise ConfigError(f"PRESET: unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_source(preset: Preset) -> str | None:
    """``/abs/path/file.py:NAME`` for a preset loaded from a user's file (what a sweep folder's
    manifest records, so ``trajlab report`` / ``plot`` find it again), None for registered ones."""
    return _SOURCES.get(id(preset))


def presets() -> dict[str, Preset]:
    """Every registered preset by name (the built-ins, then those registered by the user)."""
    _load_builtins()
    return dict(PRESETS)


_load_builtins()

__all__ = ["PRESETS", "Claim", "Preset", "get_preset", "load_presets_file", "preset_source", "presets", "presets_of", "register_preset"]
