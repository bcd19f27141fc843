"""Non-trajectory references: convex programs and closed forms that trajectories are compared with."""

from trajlab.baselines.lp_regression import lp_regression_minimum
from trajlab.baselines.nuclear_norm import (
    NuclearNormResult,
    nuclear_norm_completion,
    nuclear_norm_sensing,
)

__all__ = [
    "lp_regression_minimum",
    "NuclearNormResult",
    "nuclear_norm_completion",
    "nuclear_norm_sensing",
]
