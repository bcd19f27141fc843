"""Parameterizations and their initializations."""

from trajlab.models.deep_linear import (
    DeepLinear,
    balanced_from_end_to_end,
    end_to_end,
)

__all__ = ["DeepLinear", "balanced_from_end_to_end", "end_to_end"]
