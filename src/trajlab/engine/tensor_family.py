"""The tensor factorization families (``model.kind`` cp and hierarchical) on tensor completion and
tensor sensing (Razin, Maman, Cohen, ICML 2021 and ICML 2022).

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

from trajlab.config import RunConfig
from trajlab.engine.family import FamilyParts
from trajlab.errors import ConfigError
from trajlab.metrics.registry import evaluate_metrics, resolve_metrics
from trajlab.metrics.tensor import CP_RANK_MAX_ENTRIES, cp_full_numpy, estimate_cp_rank
from trajlab.metrics.tensor_registry import TENSOR_METRIC_FUNCTIONS, TensorMetricState
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
           "family_parts", "final_dense_tensor"]


def final_dense_tensor(params) -> np.ndarray:
    """The dense tensor of CP factors or :class:`~trajlab.models.tensor.HTParams` (numpy, float64)."""
    if hasattr(params, "leaves"):
        return ht_full_numpy(
            [np.asarray(x, np.float64) for x in params.leaves],
            [[np.asarray(c, np.float64) for c in level] for level in params.cores],
        )
    return cp_full_numpy([np.asarray(f, np.float64) for f in params])


def family_parts(config: RunConfig, extra_metrics: dict | None = None) -> FamilyParts:
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

    wrong = {"cp": "local_component_norms", "hierarchical": "component_norms"}[model.kind]
    if wrong in config.metrics:
        right = {"cp": "component_norms", "hierarchical": "local_component_norms"}[model.kind]
        raise ConfigError(f"metrics: {wrong} is not recorded for model.kind={model.kind}; use {right}")
    final_names = [name for name in config.metrics if name == "cp_rank_estimate"]
    trajectory_names = tuple(name for name in config.metrics if name not in final_names)
    functions = resolve_metrics(trajectory_names, extra_metrics, table=TENSOR_METRIC_FUNCTIONS)
    top_k = config.train.top_k

    def metrics(params, initial, reference, data):
        state = TensorMetricState(params, initial, data, full=full, loss=loss, top_k=top_k, reference_params=reference)
        return evaluate_metrics(functions, state)

    max_rank = max(CP_RANK_MAX_RANK, 2 * problem.rank)

    def cp_rank_final_metric(params, data):
        """{"cp_rank_estimate": estimated CP rank of the final dense tensor} (NaN if non-finite)."""
        tensor = final_dense_tensor(params)
        if not np.all(np.isfinite(tensor)):
            return {"cp_rank_estimate": np.nan}
        rank = estimate_cp_rank(
            tensor,
            tol=CP_RANK_TOL,
            max_rank=max_rank,
            rng=0,
            restarts=CP_RANK_RESTARTS,
            iterations=CP_RANK_ITERATIONS,
        )
        return {"cp_rank_estimate": float(rank)}

    final_metrics = cp_rank_final_metric if final_names else None
    return FamilyParts(init=init, loss=loss, metrics=metrics, final_metrics=final_metrics)
