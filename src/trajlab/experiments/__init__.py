"""Deprecated alias of :mod:`trajlab.presets`, kept so that old imports keep working.

The presets, their registry and the claim machinery moved to :mod:`trajlab.presets`
(``trajlab.experiments.verify`` to :mod:`trajlab.verify`); import from there.
"""

from trajlab.presets import (
    PRESETS,
    Claim,
    Preset,
    get_preset,
    load_presets_file,
    preset_source,
    presets,
    presets_of,
    register_preset,
)

__all__ = ["PRESETS", "Claim", "Preset", "get_preset", "load_presets_file", "preset_source", "presets", "presets_of", "register_preset"]
