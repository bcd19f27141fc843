"""Metrics of parameters along a trajectory: pure functions, each with its formula."""

from trajlab.metrics.balancedness import (
    balancedness,
    balancedness_gaps,
    balancedness_relative,
    distance_from_init,
)
from trajlab.metrics.curvature import (
    hessian_vector_product,
    hutchinson_trace,
    lanczos_top_eigenvalues,
    power_iteration_top_eigenvalue,
)
from trajlab.metrics.registry import METRIC_FUNCTIONS, MetricState, evaluate_metrics, resolve_metrics
from trajlab.metrics.spectral import (
    effective_rank,
    frobenius_norm,
    nuclear_norm,
    schatten_quasi_norm,
    singular_values,
    top_singular_values,
)

__all__ = [
    "hessian_vector_product",
    "hutchinson_trace",
    "lanczos_top_eigenvalues",
    "power_iteration_top_eigenvalue",
    "METRIC_FUNCTIONS",
    "MetricState",
    "balancedness",
    "balancedness_gaps",
    "balancedness_relative",
    "distance_from_init",
    "effective_rank",
    "evaluate_metrics",
    "frobenius_norm",
    "nuclear_norm",
    "resolve_metrics",
    "schatten_quasi_norm",
    "singular_values",
    "top_singular_values",
]
