"""The tensor factorization families (``model.kind`` cp and hierarchical) on tensor completion and
tensor sensing (Razin, Maman, Cohen, ICML 2021 and ICML 2022).

``cp``: CP factorization with ``width`` = R components (Razin, Maman, Cohen 2021);
``hierarchical``: hierarchical tensor factorization over the mode tree of
:mod:`trajlab.models.tensor` with local width ``width`` at every non-root node and nodes of kind
``core`` (``product``: the factorization of Razin, Maman, Cohen 2022; ``tucker``: hierarchical
Tucker). Inits: ``gaussian`` (every factor entry N(0, scale^2): scale is the per-factor std of the
papers) or, for CP, ``gaussian_e2e`` (E ||W||_F^2 = scale^2).

Completion evaluates only the observed entries (gathers of factor rows, memory O(M R) per run,
never the dense tensor); sensing and the metrics use the dense tensor.

``cp_rank_estimate`` is a final metric (host-side, once per run after its batch): the CP rank
estimate of :func:`trajlab.metrics.tensor.estimate_cp_rank` of the final dense tensor, with the
settings below. Its cost is bounded: at most ``max_rank * CP_RANK_RESTARTS * CP_RANK_ITERATIONS``
ALS sweeps of O(K prod(d) r) flops each (about 1-2 s per run in the worst case, a tensor of rank
above max_rank, for order 4 and dimension 10 on a 2-core CPU; much less when a low rank fits), and
NaN for tensors above ``CP_RANK_MAX_ENTRIES`` entries.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import functools
from dataclasses import dataclass

from trajlab.config import require
from trajlab.errors import ConfigError
from trajlab.families.deep_linear import TOP_K_PADDED
from trajlab.metrics.tensor import CP_RANK_MAX_ENTRIES, cp_full_numpy, estimate_cp_rank
from trajlab.metrics.tensor_registry import TENSOR_METRIC_FUNCTIONS, TensorMetricState
from trajlab.registry import FamilyParts, register_family, Family
from trajlab.models.tensor import cp_entries, cp_full, cp_init, cp_init_end_to_end, ht_entries, ht_full, ht_init, tree_levels
from trajlab.problems.tensor import ht_full_numpy, tensor_completion_loss, tensor_sensing_loss

#: Relative Frobenius error at which a CP fit of the final tensor counts as exact: the estimate is
#: a numerical rank (components below ~1% of ||W||_F are not counted).
CP_RANK_TOL = 1e-2
#: Largest rank tried: max(CP_RANK_MAX_RANK, 2 * problem.rank); one more means "above it".
CP_RANK_MAX_RANK = 10
#: ALS starts per rank and sweeps per start.
CP_RANK_RESTARTS = 3
CP_RANK_ITERATIONS = 300

__all__ = ["CP_RANK_ITERATIONS", "CP_RANK_MAX_ENTRIES", "CP_RANK_MAX_RANK", "CP_RANK_RESTARTS", "CP_RANK_TOL",
           "CPConfig", "HierarchicalConfig", "build", "final_dense_tensor"]

TENSOR_PROBLEMS = ("tensor_completion", "tensor_sensing")
HIERARCHICAL_CORES = ("product", "tucker")


@dataclass(frozen=True)
class CPConfig:
    """CP factorization with ``width`` components (see :mod:`trajlab.families.tensor`)."""

    width: int = 10
    init: str = "gaussian"
    scale: float = 1e-2

    def __post_init__(self) -> None:
        require(self.scale > 0 and self.scale < float("inf"), "model.scale", "a number > 0", self.scale)
        require(1 <= self.width <= 10**6, "model.width", "an integer in [1, 10^6] (components)", self.width)
        allowed = ("gaussian", "gaussian_e2e")
        require(self.init in allowed, "model.init", f"one of {allowed} for model.kind=cp", self.init)


@dataclass(frozen=True)
class HierarchicalConfig:
    """Hierarchical tensor factorization with local width ``width`` (see :mod:`trajlab.families.tensor`)."""

    width: int = 10
    core: str = "product"
    init: str = "gaussian"
    scale: float = 1e-2

    def __post_init__(self) -> None:
        require(self.scale > 0 and self.scale < float("inf"), "model.scale", "a number > 0", self.scale)
        require(1 <= self.width <= 10**6, "model.width", "an integer in [1, 10^6] (local width)", self.width)
        require(self.core in HIERARCHICAL_CORES, "model.core", f"one of {HIERARCHICAL_CORES}", self.core)
        require(self.init == "gaussian", "model.init", "gaussian for model.kind=hierarchical", self.init)


def check(config) -> None:
    """Full-batch gradients only; each factorization records its own kind of component norms."""
    kind = config.model.kind
    wrong = {"cp": "local_component_norms", "hierarchical": "component_norms"}[kind]
    if wrong in config.metrics:
        right = {"cp": "component_norms", "hierarchical": "local_component_norms"}[kind]
        raise ConfigError(f"metrics: {wrong} is not recorded for model.kind={kind}; use {right}")
    require(config.optimizer.batch_size == 0, "optimizer.batch_size", f"0 for model.kind={config.model.kind}", config.optimizer.batch_size)
    top = max(config.model.width, TOP_K_PADDED)
    require(
        config.train.top_k <= top, "train.top_k",
        f"an integer in [1, max(model.width, {TOP_K_PADDED})] = [1, {top}] for model.kind={kind} (its component norms)",
        config.train.top_k,
    )


def nbytes(config) -> int:
    """Bytes of one run (before batching): the factors and the per-step working memory, from the
    fields alone. Working memory: the factor rows gathered at the M observed entries (CP: K x M x
    R; hierarchical: M x R per node, M x R^2 with tucker cores), the dense tensor with the
    temporaries of making it (its last contraction carries the width) and the SVDs of its
    matricizations (metrics), and the residuals."""
    problem, model = config.problem, config.model
    order, dim, width, observations = problem.order, problem.dim, model.width, problem.observations
    entries = dim**order
    if model.kind == "cp":
        parameters = order * dim * width
        gathered = 3 * order * observations * width
    else:
        sizes = [order]
        while sizes[-1] > 1:
            sizes.append((sizes[-1] + 1) // 2)
        widths = [width] * (len(sizes) - 1) + [1]
        parameters, nodes = order * dim * width, 0
        for level in range(1, len(sizes)):
            for node in range(sizes[level]):
                two = 2 * node + 1 < sizes[level - 1]
                r_in, r_out = widths[level - 1], widths[level]
                parameters += r_in * r_in * r_out if model.core == "tucker" and two else r_in * r_out
                nodes += 1
        per_entry = width * width if model.core == "tucker" else width
        gathered = 3 * (order + nodes) * observations * per_entry
    dense = 4 * entries + entries * width  # sensing and the metrics use the dense tensor
    return (8 if config.train.x64 else 4) * (parameters + gathered + dense + 3 * observations)


def final_dense_tensor(params) -> np.ndarray:
    """The dense tensor of CP factors or :class:`~trajlab.models.tensor.HTParams` (numpy, float64)."""
    if hasattr(params, "leaves"):
        return ht_full_numpy(
            [np.asarray(x, np.float64) for x in params.leaves],
            [[np.asarray(c, np.float64) for c in level] for level in params.cores],
        )
    return cp_full_numpy([np.asarray(f, np.float64) for f in params])


def build(config) -> FamilyParts:
    """Init, loss (from index arrays for completion) and metric context of a CP or hierarchical run."""
    problem, model = config.problem, config.model
    dtype = jnp.float64 if config.train.x64 else jnp.float32
    shape = (problem.dim,) * problem.order
    width = model.width
    if model.kind == "cp":
        entries, full = cp_entries, cp_full
        if model.init == "gaussian":
            init = lambda key, scale: cp_init(key, shape, width, scale, dtype)  # noqa: E731
        else:
            init = lambda key, scale: cp_init_end_to_end(key, shape, width, scale, dtype)  # noqa: E731
    else:
        entries, full = ht_entries, ht_full
        widths = (width,) * tree_levels(problem.order)
        init = lambda key, scale: ht_init(key, shape, widths, scale, dtype, core=model.core)  # noqa: E731

    convention = problem.loss_convention
    if problem.kind == "tensor_completion":

        def loss(params, data):
            return tensor_completion_loss(entries(params, data.indices), data.values, convention)

    else:

        def loss(params, data):
            return tensor_sensing_loss(full(params), data.sensing, data.values, convention)

    context = functools.partial(_context, full=full, loss=loss, config=config)
    return FamilyParts(init=init, loss=loss, context=context)


def _context(params, initial, reference, data, **fields):
    return TensorMetricState(params, initial, reference, data, **fields)


def cp_rank_final_metric(params, data, config):
    """Estimated CP rank of the final dense tensor (NaN if non-finite); ranks up to
    max(CP_RANK_MAX_RANK, 2 * problem.rank) are tried."""
    tensor = final_dense_tensor(params)
    if not np.all(np.isfinite(tensor)):
        return np.nan
    rank = estimate_cp_rank(
        tensor,
        tol=CP_RANK_TOL,
        max_rank=max(CP_RANK_MAX_RANK, 2 * config.problem.rank),
        rng=0,
        restarts=CP_RANK_RESTARTS,
        iterations=CP_RANK_ITERATIONS,
    )
    return float(rank)


_SHARED = dict(
    problems=TENSOR_PROBLEMS,
    build=build,
    metrics=TENSOR_METRIC_FUNCTIONS,
    final_metrics={"cp_rank_estimate": cp_rank_final_metric},
    columns={"component_norms": "comp"},
    check=check,
    nbytes=nbytes,
)
register_family(Family("cp", CPConfig, default_metrics=("train_loss", "reconstruction_error", "frobenius_norm",
                       "distance_from_init", "component_norms"), description="CP tensor factorization", **_SHARED))
register_family(Family("hierarchical", HierarchicalConfig, default_metrics=("train_loss", "reconstruction_error",
                       "frobenius_norm", "distance_from_init", "local_component_norms"),
                       description="hierarchical tensor factorization", **_SHARED))
