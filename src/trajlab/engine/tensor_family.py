"""The tensor factorization families (``model.kind`` cp and hierarchical) on tensor completion and
tensor sensing (Razin, Maman, Cohen, ICML 2021 and ICML 2022).

Completion evaluates only the observed entries (gathers of factor rows, memory O(M R) per run,
never the dense tensor); sensing and the metrics use the dense tensor.
"""

from __future__ import annotations

import jax.numpy as jnp

from trajlab.config import RunConfig
from trajlab.engine.family import FamilyParts
from trajlab.metrics.registry import evaluate_metrics, resolve_metrics
from trajlab.metrics.tensor_registry import TENSOR_METRIC_FUNCTIONS, TensorMetricState
from trajlab.models.tensor import cp_entries, cp_full, cp_init, cp_init_end_to_end, ht_entries, ht_full, ht_init, tree_levels
from trajlab.problems.tensor import tensor_completion_loss, tensor_sensing_loss


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

    functions = resolve_metrics(config.metrics, extra_metrics, table=TENSOR_METRIC_FUNCTIONS)
    top_k = config.train.top_k

    def metrics(params, initial, reference, data):
        state = TensorMetricState(params, initial, data, full=full, loss=loss, top_k=top_k, reference_params=reference)
        return evaluate_metrics(functions, state)

    return FamilyParts(init=init, loss=loss, metrics=metrics)
