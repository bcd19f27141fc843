"""Deprecated alias of :mod:`trajlab.presets.preset`."""

from trajlab.presets.preset import Claim, Preset

__all__ = ["Claim", "Preset"]
