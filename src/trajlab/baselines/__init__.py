"""Non-trajectory references: convex programs and closed forms that trajectories are compared with."""

from trajlab.baselines.nuclear_norm import (
    NuclearNormResult,
    nuclear_norm_completion,
    nuclear_norm_sensing,
)

__all__ = [
    "NuclearNormResult",
    "nuclear_norm_completion",
    "nuclear_norm_sensing",
]
