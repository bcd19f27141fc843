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

__all__ = [
    "deficiency_margin",
    "end_to_end_step",
    "is_delta_balanced",
    "linear_convergence_bound",
    "preconditioner_apply",
    "preconditioner_matrix",
    "psd_power",
    "singular_value_velocity",
]
