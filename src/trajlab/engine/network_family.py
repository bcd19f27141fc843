"""The small nonlinear network families (``model.kind`` mlp and two_layer) on classification and
teacher-student problems (issue: beyond linear; Elkabetz & Cohen 2021, Soudry et al. 2018, ...).

Outputs and losses: digits has 10 outputs (softmax cross-entropy on the logits, or the squared
loss to one-hot targets); separable_2d and teacher_student have one output (logistic loss on
labels +-1, or the squared loss). Every loss is a mean over samples
(:mod:`trajlab.problems.classification`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from trajlab.config import RunConfig
from trajlab.engine.family import FamilyParts
from trajlab.metrics.network_registry import NETWORK_METRIC_FUNCTIONS, NetworkMetricState
from trajlab.metrics.registry import evaluate_metrics, resolve_metrics
from trajlab.models.mlp import mlp_apply, mlp_init, two_layer_apply, two_layer_init
from trajlab.problems.classification import (
    SOUDRY_MAX_MARGIN,
    accuracy,
    binary_accuracy,
    logistic_loss,
    softmax_cross_entropy,
    squared_loss,
)


def dimensions(config: RunConfig) -> tuple[int, int]:
    """(input dimension, output dimension) of the problem."""
    problem = config.problem
    if problem.kind == "teacher_student":
        return problem.n, 1
    if problem.dataset == "digits":
        return 64, 10
    return 2, 1


def family_parts(config: RunConfig, extra_metrics: dict | None = None) -> FamilyParts:
    problem, model = config.problem, config.model
    dtype = jnp.float64 if config.train.x64 else jnp.float32
    inputs, outputs = dimensions(config)
    activation = model.activation
    if model.kind == "mlp":
        sizes = (inputs,) + (model.width,) * (model.depth - 1) + (outputs,)

        def init(key, scale):
            return mlp_init(key, sizes, activation, model.bias, model.init, scale, dtype)

        def apply(params, x):
            return mlp_apply(params, x, activation)

    else:
        output_init = "balanced" if model.init == "balanced_random" else "gaussian"

        def init(key, scale):
            return two_layer_init(key, inputs, model.width, scale, output_init, dtype)

        def apply(params, x):
            return two_layer_apply(params, x, activation)[:, None]

    multiclass = problem.kind == "classification" and problem.dataset == "digits"
    regression = problem.kind == "teacher_student"

    def objective(out, targets):
        if regression:
            return squared_loss(out[:, 0], targets)
        if problem.loss == "cross_entropy":
            return softmax_cross_entropy(out, targets)
        if problem.loss == "logistic":
            return logistic_loss(out[:, 0], targets)
        if multiclass:  # squared loss to one-hot targets
            return squared_loss(out, jax.nn.one_hot(targets, outputs, dtype=out.dtype))
        return squared_loss(out[:, 0], targets)

    def split(data, test: bool):
        if regression:
            return (data.test_inputs, data.test_outputs) if test else (data.inputs, data.outputs)
        return (data.test_inputs, data.test_labels) if test else (data.inputs, data.labels)

    def loss(params, data):
        x, y = split(data, False)
        return objective(apply(params, x), y)

    def test_loss(params, data):
        x, y = split(data, True)
        if x.shape[0] == 0:
            return jnp.full((), jnp.nan, dtype)
        return objective(apply(params, x), y)

    def score(params, data, test: bool):
        x, y = split(data, test)
        if regression or x.shape[0] == 0:
            return jnp.full((), jnp.nan, dtype)
        out = apply(params, x)
        return accuracy(out, y) if multiclass else binary_accuracy(out[:, 0], y)

    def end_to_end_predictor(params):
        """W_L ... W_1 of a linear network without biases."""
        w = params[0].weight
        for layer in params[1:]:
            w = layer.weight @ w
        return w

    linear = model.kind == "mlp" and activation == "linear" and not model.bias
    predictor = end_to_end_predictor if linear else None

    max_margin = jnp.asarray(SOUDRY_MAX_MARGIN, dtype) if problem.dataset == "separable_2d" else None
    functions = resolve_metrics(config.metrics, extra_metrics, table=NETWORK_METRIC_FUNCTIONS)
    train = config.train

    def metrics(params, initial, reference, data):
        state = NetworkMetricState(
            params,
            initial,
            data,
            loss=loss,
            test_loss=test_loss,
            accuracy=score,
            predictor=predictor,
            max_margin=max_margin,
            top_k=train.top_k,
            lanczos_iterations=train.lanczos_iterations,
            hutchinson_probes=train.hutchinson_probes,
            reference_params=reference,
        )
        return evaluate_metrics(functions, state)

    batch_size = config.optimizer.batch_size

    def minibatch(data, key):
        """``batch_size`` train samples drawn without replacement (a fresh draw each step)."""
        x, _ = split(data, False)
        index = jax.random.choice(key, x.shape[0], (batch_size,), replace=False)
        if regression:
            return data._replace(inputs=data.inputs[index], outputs=data.outputs[index])
        return data._replace(inputs=data.inputs[index], labels=data.labels[index])

    return FamilyParts(init=init, loss=loss, metrics=metrics, minibatch=minibatch)
