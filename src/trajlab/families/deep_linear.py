"""The deep linear network family (deep matrix factorization): W_e = W_N ... W_1 on any problem with
a loss of a matrix (completion, sensing, l_p and whitened regression, a matricized tensor), trained
layer-wise or through the end-to-end dynamics (Arora, Cohen, Hazan, ICML 2018).

Fields (``model.*``):

- ``depth`` N and ``width`` (hidden width of every hidden layer; ``None`` means max(m, n)).
- ``init`` / ``scale``: see :class:`trajlab.models.deep_linear.DeepLinear` (default
  ``gaussian_e2e``: the end-to-end scale of the published deep matrix factorization code,
  per-layer std scale^(1/N) / sqrt(width)).
- ``condition``: ``positive_det`` conditions the init on det(W_e(0)) > 0 (square W_e only): a draw
  with det < 0 has the first column of W_1 negated, which maps the Gaussian (and balanced) measures
  onto themselves and flips the sign of det(W_e), so the result is exactly the conditional law.
- ``parameterization``: ``factorized`` trains the layers; ``end_to_end`` trains W_e itself under the
  end-to-end dynamics of depth N, started from the product of the initialized layers (see
  :mod:`trajlab.dynamics.end_to_end`); only ``gd`` and ``gradient_flow`` apply there.

Metrics: those of :mod:`trajlab.metrics.registry` (test error, singular values, effective rank,
nuclear / Schatten / Frobenius norms of W_e, balancedness, ...) plus the generic ones.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from trajlab.config import require
from trajlab.metrics.registry import METRIC_FUNCTIONS
from trajlab.registry import FamilyParts, family

#: train.top_k may exceed the number of singular values (or components) up to this many columns,
#: zero-padded: the default top_k, so every default config stays valid on small problems.
TOP_K_PADDED = 10
INIT_SCHEMES = ("gaussian_e2e", "gaussian", "identity", "orthogonal", "balanced_random")
INIT_CONDITIONS = ("none", "positive_det")
PARAMETERIZATIONS = ("factorized", "end_to_end")
MATRIX_PROBLEMS = ("completion", "sensing", "regression", "whitened", "matricized_tensor_completion")
DEFAULT_METRICS = (
    "train_loss",
    "test_error",
    "singular_values",
    "effective_rank",
    "nuclear_norm",
    "schatten_quasi_norm",
    "frobenius_norm",
    "balancedness",
    "balancedness_relative",
    "distance_from_init",
)


@dataclass(frozen=True)
class DeepLinearConfig:
    """A deep linear network W_e = W_N ... W_1 (see :mod:`trajlab.families.deep_linear`)."""

    depth: int = 3
    width: int | None = None
    init: str = "gaussian_e2e"
    scale: float = 1e-3
    parameterization: str = "factorized"
    condition: str = "none"

    def __post_init__(self) -> None:
        require(self.scale > 0 and self.scale < float("inf"), "model.scale", "a number > 0", self.scale)
        require(1 <= self.depth <= 1000, "model.depth", "an integer in [1, 1000]", self.depth)
        require(self.width is None or 1 <= self.width <= 10**6, "model.width", "an integer in [1, 10^6] or null", self.width)
        require(self.init in INIT_SCHEMES, "model.init", f"one of {INIT_SCHEMES} for model.kind=deep_linear", self.init)
        require(self.condition in INIT_CONDITIONS, "model.condition", f"one of {INIT_CONDITIONS}", self.condition)
        require(self.parameterization in PARAMETERIZATIONS, "model.parameterization", f"one of {PARAMETERIZATIONS}", self.parameterization)


def check(config) -> None:
    """Rules across sections: width for balanced init, square W_e for det conditioning, full-batch
    gradients, and the update rules the end-to-end dynamics has."""
    model, problem = config.model, config.problem
    if model.init == "balanced_random" and model.depth > 1 and model.width is not None:
        smallest = min(problem.m, problem.n)
        require(model.width >= smallest, "model.width", f"an integer >= min(m, n) = {smallest} for init balanced_random", model.width)
    if model.condition == "positive_det":
        require(
            problem.m == problem.n,
            "model.condition",
            "none unless problem.m == problem.n (det needs a square end-to-end matrix)",
            model.condition,
        )
    require(config.optimizer.batch_size == 0, "optimizer.batch_size", "0 for model.kind=deep_linear", config.optimizer.batch_size)
    # W_e has min(m, n) singular values; up to the default top_k the columns are kept (zero-padded)
    # so that configs of different sizes record the same columns.
    top = max(min(problem.m, problem.n), TOP_K_PADDED)
    require(
        config.train.top_k <= top, "train.top_k",
        f"an integer in [1, max(min(m, n), {TOP_K_PADDED})] = [1, {top}] for model.kind=deep_linear "
        "(the singular values of the m x n end-to-end matrix)", config.train.top_k,
    )
    if model.parameterization == "end_to_end":
        allowed = ("gd", "gradient_flow")
        require(config.optimizer.name in allowed, "optimizer.name", f"one of {allowed} with model.parameterization=end_to_end", config.optimizer.name)


def nbytes(config) -> int:
    """Bytes of one run (before batching): the layers and the per-step working memory, from the
    fields alone. Working memory: the partial products of W_N ... W_1 kept for the gradient
    (d_k x n forward, m x d_k backward), W_e with its gradient and SVD (metrics), the Gram
    matrices of balancedness (d_j x d_j, when recorded), the init's temporaries (balanced_random: the SVD of an
    m x n draw), and the residuals over the observations."""
    problem, model = config.problem, config.model
    m, n = problem.m, problem.n
    width = model.width if model.width is not None else max(m, n)
    dims = [n] + [width] * (model.depth - 1) + [m]
    layers = sum(dims[j + 1] * dims[j] for j in range(model.depth))
    parameters = m * n if model.parameterization == "end_to_end" else layers
    observations = getattr(problem, "observations", 0) * (m if problem.kind == "regression" else 1)
    working = (
        sum(d * n + m * d for d in dims[1:])  # partial products of the end-to-end matrix
        + 6 * m * n  # W_e, its gradient, its SVD
        + (sum(d * d for d in dims) if {"balancedness", "balancedness_relative"} & set(config.metrics) else 0)
        + (layers if model.parameterization == "end_to_end" else 0)  # the layers the init multiplies
        + 3 * observations
    )
    return (8 if config.train.x64 else 4) * (parameters + working)


def model_of(config):
    """The :class:`~trajlab.models.deep_linear.DeepLinear` structure of a deep linear RunConfig."""
    from trajlab.models.deep_linear import DeepLinear

    p, m = config.problem, config.model
    return DeepLinear(p.m, p.n, m.depth, m.width)


@family(
    "deep_linear",
    config=DeepLinearConfig,
    problems=MATRIX_PROBLEMS,
    metrics=METRIC_FUNCTIONS,
    default_metrics=DEFAULT_METRICS,
    columns={"singular_values": "sv", "target_mode_strengths": "mode"},
    check=check,
    flow_metrics=("end_to_end_distance_to_flow",),
    description="deep linear network / deep matrix factorization W_e = W_N ... W_1",
    nbytes=nbytes,
)
def build(config) -> FamilyParts:
    """Init, loss and metric context of a deep linear network on a matrix problem."""
    import jax.numpy as jnp

    from trajlab.dynamics.end_to_end import end_to_end_gd, precondition_end_to_end
    from trajlab.metrics.registry import MetricState
    from trajlab.models.deep_linear import end_to_end
    from trajlab.problems.registry import loss_function

    model = model_of(config)
    model.check_init(config.model.init)
    dtype = jnp.float64 if config.train.x64 else jnp.float32
    end_to_end_parameters = config.model.parameterization == "end_to_end"
    depth = config.model.depth

    def init(key, scale):
        layers = model.init(key, scale, config.model.init, dtype, config.model.condition)
        return (end_to_end(layers),) if end_to_end_parameters else layers

    problem_loss = loss_function(config.problem)

    def loss(params, data):
        return problem_loss(end_to_end(params), data)

    context = functools.partial(
        _context, MetricState, loss=loss, config=config, matrix_loss=problem_loss, top_k=config.train.top_k,
        schatten_p=config.train.schatten_p, end_to_end_parameters=end_to_end_parameters,
    )
    if not end_to_end_parameters:
        return FamilyParts(init=init, loss=loss, context=context)
    gradient_flow = config.optimizer.name == "gradient_flow"
    return FamilyParts(
        init=init,
        loss=loss,
        context=context,
        precondition=lambda params, grads: precondition_end_to_end(params, grads, depth),
        optimizer=None if gradient_flow else end_to_end_gd(depth),
    )


def _context(cls, params, initial, reference, data, **fields):
    return cls(params, initial, reference, data, **fields)
