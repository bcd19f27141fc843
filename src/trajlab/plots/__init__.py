"""Figures: pure functions from the stored sweep tables (DataFrames) to matplotlib figures."""

from trajlab.plots.dmf import (
    NUCLEAR_NORM_LABEL,
    loss_figure,
    save_figure,
    singular_values_figure,
    solution_figure,
)

__all__ = [
    "NUCLEAR_NORM_LABEL",
    "loss_figure",
    "save_figure",
    "singular_values_figure",
    "solution_figure",
]
