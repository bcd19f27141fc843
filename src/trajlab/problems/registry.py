"""Problems by their config section, through the plug-in registry (:mod:`trajlab.registry`)."""

from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp

from trajlab import registry
from trajlab.problems.matrix import reconstruction_error


def _problem(config: Any) -> registry.Problem:
    kind = registry.kind_of("problem", type(config))
    if kind is None:
        raise TypeError(f"{type(config).__name__} is not the config of a registered problem")
    return registry.get_problem(kind)


def make_data(config: Any):
    """The data pytree of a problem section (what its registered ``data`` returns)."""
    return _problem(config).data(config)


def make_network_problem(config: Any):
    """Data of a ``classification`` / ``teacher_student`` section (see :mod:`trajlab.families.network_problems`)."""
    return make_data(config)


def loss_function(config: Any) -> Callable:
    """``loss(W, data)``: the problem's loss of a model output (the end-to-end matrix for the
    matrix problems; conventions in :mod:`trajlab.families.matrix_problems`)."""
    problem = _problem(config)
    if problem.loss is None:
        raise TypeError(f"problem {problem.name!r} defines no loss of a model output")
    return problem.loss(config)


def test_error(w, data):
    """||W - W*||_F^2 / ||W*||_F^2 when the problem has a target W*, else NaN."""
    if getattr(data, "target", None) is None:
        return jnp.full((), jnp.nan, w.dtype)
    return reconstruction_error(w, data.target)
