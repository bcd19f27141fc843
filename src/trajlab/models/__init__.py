"""Parameterizations and their initializations."""

from trajlab.models.deep_linear import (
    DeepLinear,
    balanced_from_end_to_end,
    end_to_end,
)
from trajlab.models.mlp import (
    Dense,
    ParallelUnits,
    TwoLayer,
    mlp_apply,
    mlp_init,
    two_layer_apply,
    two_layer_init,
)

__all__ = [
    "DeepLinear",
    "Dense",
    "ParallelUnits",
    "TwoLayer",
    "balanced_from_end_to_end",
    "end_to_end",
    "mlp_apply",
    "mlp_init",
    "two_layer_apply",
    "two_layer_init",
]
