"""Theory of deep linear dynamics as functions: preconditioner, predicted velocities, margins, bounds."""

from trajlab.theory.end_to_end import (
    deficiency_margin,
    end_to_end_step,
    is_delta_balanced,
    linear_convergence_bound,
    preconditioner_apply,
    preconditioner_matrix,
    psd_power,
    singular_value_velocity,
)
from trajlab.theory.margins import positive_margin_probability
from trajlab.theory.saxe import learning_time, mode_strength, rise_time, saxe_learning_time

__all__ = [
    "learning_time",
    "mode_strength",
    "positive_margin_probability",
    "rise_time",
    "saxe_learning_time",
    "deficiency_margin",
    "end_to_end_step",
    "is_delta_balanced",
    "linear_convergence_bound",
    "preconditioner_apply",
    "preconditioner_matrix",
    "psd_power",
    "singular_value_velocity",
]
