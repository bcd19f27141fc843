"""Update rules: optax optimizers at unit step, normalized GD, end-to-end dynamics, gradient flow."""

from trajlab.dynamics.end_to_end import end_to_end_gd, precondition_end_to_end
from trajlab.dynamics.gradient_flow import flow_integrator
from trajlab.dynamics.optimizers import direction_transform, normalized_gd

__all__ = [
    "direction_transform",
    "end_to_end_gd",
    "flow_integrator",
    "normalized_gd",
    "precondition_end_to_end",
]
