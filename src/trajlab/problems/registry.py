"""One entry point for every problem kind: its data, its loss and its test error."""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from trajlab.config import ProblemConfig
from trajlab.problems.matrix import make_matrix_problem, reconstruction_error, train_loss
from trajlab.problems.tensor import make_matricized_tensor_completion, make_tensor_problem
from trajlab.problems.regression import lp_loss, make_regression, make_whitened, whitened_loss


def make_data(config: ProblemConfig):
    """The data pytree of ``config`` (numpy arrays; ``target`` is W* or None)."""
    if config.kind in ("completion", "sensing"):
        return make_matrix_problem(config)
    if config.kind == "regression":
        return make_regression(config)
    if config.kind in ("tensor_completion", "tensor_sensing"):
        return make_tensor_problem(config)
    if config.kind == "matricized_tensor_completion":
        return make_matricized_tensor_completion(config)
    if config.kind in ("classification", "teacher_student"):
        return make_network_problem(config)
    return make_whitened(config)


def make_network_problem(config: ProblemConfig):
    """Data of a ``classification`` / ``teacher_student`` problem (see :mod:`trajlab.problems.classification`).

    digits: ``observations`` train and ``test_samples`` test images of a permutation drawn from
    ``seed``; separable_2d: the 4 support vectors plus ``observations`` - 4 points off the margin;
    teacher_student: n-dimensional Gaussian inputs, an orthonormal teacher with ``teacher_width``
    units when teacher_width <= n, else Gaussian teacher rows.
    """
    from trajlab.problems import classification

    if config.kind == "teacher_student":
        teacher = "orthonormal" if config.teacher_width <= config.n else "gaussian"
        return classification.make_teacher_student(
            config.n, config.teacher_width, config.observations, config.test_samples, seed=config.seed, teacher=teacher
        )
    if config.dataset == "digits":
        size = config.observations + config.test_samples
        return classification.make_digits(size, config.test_samples / size, seed=config.seed)
    return classification.make_soudry_separable(config.observations - 4, seed=config.seed)


def loss_function(config: ProblemConfig) -> Callable:
    """``loss(W, data)``: the train loss of the end-to-end matrix (conventions per kind:
    mean squared error for completion / sensing, l_p loss per sample for regression, 1/2 the
    squared Frobenius distance for whitened regression)."""
    if config.kind in ("completion", "sensing", "matricized_tensor_completion"):
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
