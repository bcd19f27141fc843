"""The small nonlinear network families (``model.kind`` mlp and two_layer) on classification and
teacher-student problems (Elkabetz & Cohen 2021, Soudry et al. 2018, ...).

``mlp``: fully connected network with ``depth`` weight layers, hidden width ``width``,
``activation`` (linear, relu, quadratic z^2) between layers, biases if ``bias``; ``two_layer``:
f(x) = sum_r a_r sigma(w_r^T x) with ``width`` hidden units, both layers trained. Inits: ``xavier``
(Glorot & Bengio 2010), ``he``, or ``gaussian`` (every entry N(0, scale^2)); two_layer:
``gaussian`` or ``balanced_random`` (output weights +-||w_r||); see :mod:`trajlab.models.mlp`.

Outputs and losses: digits has 10 outputs (softmax cross-entropy on the logits, or the squared
loss to one-hot targets); separable_2d and teacher_student have one output (logistic loss on
labels +-1, or the squared loss). Every loss is a mean over samples
(:mod:`trajlab.problems.classification`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import functools
from dataclasses import dataclass

from trajlab.config import require
from trajlab.families.deep_linear import TOP_K_PADDED
from trajlab.metrics.network_registry import NETWORK_METRIC_FUNCTIONS, NetworkMetricState
from trajlab.registry import Family, FamilyParts, register_family
from trajlab.models.mlp import mlp_apply, mlp_init, two_layer_apply, two_layer_init
from trajlab.problems.classification import (
    SOUDRY_MAX_MARGIN,
    accuracy,
    binary_accuracy,
    logistic_loss,
    softmax_cross_entropy,
    squared_loss,
)


ACTIVATIONS = ("linear", "relu", "quadratic")
NETWORK_PROBLEMS = ("classification", "teacher_student")
DEFAULT_METRICS = ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "parameter_norm", "distance_from_init")


@dataclass(frozen=True)
class MLPConfig:
    """A fully connected network (see :mod:`trajlab.families.networks`)."""

    depth: int = 3
    width: int = 50
    activation: str = "relu"
    bias: bool = False
    init: str = "xavier"
    scale: float = 1.0

    def __post_init__(self) -> None:
        require(self.scale > 0 and self.scale < float("inf"), "model.scale", "a number > 0", self.scale)
        require(1 <= self.depth <= 1000, "model.depth", "an integer in [1, 1000]", self.depth)
        require(1 <= self.width <= 10**6, "model.width", "an integer in [1, 10^6] (hidden width)", self.width)
        require(self.activation in ACTIVATIONS, "model.activation", f"one of {ACTIVATIONS}", self.activation)
        allowed = ("xavier", "he", "gaussian")
        require(self.init in allowed, "model.init", f"one of {allowed} for model.kind=mlp", self.init)


@dataclass(frozen=True)
class TwoLayerConfig:
    """A two-layer network sum_r a_r sigma(w_r^T x) (see :mod:`trajlab.families.networks`)."""

    width: int = 50
    activation: str = "relu"
    init: str = "gaussian"
    scale: float = 1.0

    def __post_init__(self) -> None:
        require(self.scale > 0 and self.scale < float("inf"), "model.scale", "a number > 0", self.scale)
        require(1 <= self.width <= 10**6, "model.width", "an integer in [1, 10^6] (hidden units)", self.width)
        require(self.activation in ACTIVATIONS, "model.activation", f"one of {ACTIVATIONS}", self.activation)
        allowed = ("gaussian", "balanced_random")
        require(self.init in allowed, "model.init", f"one of {allowed} for model.kind=two_layer", self.init)


def check(config) -> None:
    """Minibatches of at most the training set; top_k at most the singular values of a layer."""
    top = max(config.model.width, TOP_K_PADDED)
    require(
        config.train.top_k <= top, "train.top_k",
        f"an integer in [1, max(model.width, {TOP_K_PADDED})] = [1, {top}] for model.kind={config.model.kind} "
        "(singular values of a layer, top Hessian eigenvalues)", config.train.top_k,
    )
    require(
        config.optimizer.batch_size <= config.problem.observations,
        "optimizer.batch_size",
        f"an integer in [0, problem.observations] = [0, {config.problem.observations}]",
        config.optimizer.batch_size,
    )


def dimensions(config) -> tuple[int, int]:
    """(input dimension, output dimension) of the problem."""
    problem = config.problem
    if problem.kind == "teacher_student":
        return problem.n, 1
    if problem.dataset == "digits":
        return 64, 10
    return 2, 1


def nbytes(config) -> int:
    """Bytes of one run (before batching): the weights and the per-step working memory, from the
    fields alone. Working memory: the activations of every layer over the train samples (pre- and
    post-activation, kept for the gradient, and their gradients) and over the test samples
    (metrics), and the outputs."""
    model, problem = config.model, config.problem
    inputs, outputs = dimensions(config)
    if model.kind == "mlp":
        sizes = [inputs] + [model.width] * (model.depth - 1) + [outputs]
        parameters = sum(sizes[j] * sizes[j + 1] + (sizes[j + 1] if model.bias else 0) for j in range(len(sizes) - 1))
    else:
        sizes = [inputs, model.width, 1]
        parameters = inputs * model.width + model.width
    units = sum(sizes)
    working = 4 * problem.observations * units + 2 * problem.test_samples * units + parameters
    return (8 if config.train.x64 else 4) * (parameters + working)


def build(config) -> FamilyParts:
    """Init, loss, minibatch draws and metric context of an MLP or two-layer network."""
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

    max_margin = jnp.asarray(SOUDRY_MAX_MARGIN, dtype) if getattr(problem, "dataset", None) == "separable_2d" else None
    context = functools.partial(
        _context, loss=loss, config=config, test_loss=test_loss, accuracy=score, predictor=predictor, max_margin=max_margin
    )

    batch_size = config.optimizer.batch_size

    def minibatch(data, key):
        """``batch_size`` train samples drawn without replacement (a fresh draw each step)."""
        x, _ = split(data, False)
        index = jax.random.choice(key, x.shape[0], (batch_size,), replace=False)
        if regression:
            return data._replace(inputs=data.inputs[index], outputs=data.outputs[index])
        return data._replace(inputs=data.inputs[index], labels=data.labels[index])

    def predict(params, data, part: str):
        """The network's outputs (S, outputs) on the ``part`` ("train" or "test") inputs."""
        x, _ = split(data, part == "test")
        return apply(params, x)

    def output_loss(out, data):
        return objective(out, split(data, False)[1])

    return FamilyParts(init=init, loss=loss, minibatch=minibatch, context=context, predict=predict, output_loss=output_loss)


def _context(params, initial, reference, data, **fields):
    return NetworkMetricState(params, initial, reference, data, **fields)


_SHARED = dict(problems=NETWORK_PROBLEMS, build=build, metrics=NETWORK_METRIC_FUNCTIONS, default_metrics=DEFAULT_METRICS,
               check=check, nbytes=nbytes)
register_family(Family("mlp", MLPConfig, description="fully connected network", **_SHARED))
register_family(Family("two_layer", TwoLayerConfig, description="two-layer network sum_r a_r sigma(w_r^T x)", **_SHARED))
