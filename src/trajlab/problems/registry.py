"""One entry point for every problem kind: its data, its loss and its test error."""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from trajlab.config import ProblemConfig
from trajlab.problems.matrix import make_matrix_problem, reconstruction_error, train_loss
from trajlab.problems.tensor import make_tensor_problem
from trajlab.problems.regression import lp_loss, make_regression, make_whitened, whitened_loss


def make_data(config: ProblemConfig):
    """The data pytree of ``config`` (numpy arrays; ``target`` is W* or None)."""
    if config.kind in ("completion", "sensing"):
        return make_matrix_problem(config)
    if config.kind == "regression":
        return make_regression(config)
    if config.kind in ("tensor_completion", "tensor_sensing"):
        return make_tensor_problem(config)
    return make_whitened(config)


def loss_function(config: ProblemConfig) -> Callable:
    """``loss(W, data)``: the train loss of the end-to-end matrix (conventions per kind:
    mean squared error for completion / sensing, l_p loss per sample for regression, 1/2 the
    squared Frobenius distance for whitened regression)."""
    if config.kind in ("completion", "sensing"):
        if config.loss_convention == "half_sum":
            observations = config.observations
            return lambda w, data: 0.5 * observations * train_loss(w, data)
        return train_loss
    if config.kind == "regression":
        p = config.p
        return lambda w, data: lp_loss(w, data.inputs, data.outputs, p)
    return lambda w, data: whitened_loss(w, data.target)


def test_error(w, data):
    """||W - W*||_F^2 / ||W*||_F^2 when the problem has a target W*, else NaN."""
    if getattr(data, "target", None) is None:
        return jnp.full((), jnp.nan, w.dtype)
    return reconstruction_error(w, data.target)
