"""Update rules."""

from trajlab.dynamics.optimizers import direction_transform, normalized_gd

__all__ = ["direction_transform", "normalized_gd"]
