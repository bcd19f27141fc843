"""Named metrics of the deep linear family, and how metric functions become trajectory columns.

A metric is a function ``metric(state) -> scalar, 1-D array or {column: scalar}`` of a metric
context (:class:`trajlab.metrics.generic.MetricContext`; for the deep linear family the
:class:`MetricState` below). Vector metrics become one column per entry (``singular_values`` ->
``sv_0``, ``sv_1``, ...). Users pass their own metrics to the engine as ``{name: function}`` with
the same signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import jax.numpy as jnp

from trajlab.errors import ConfigError
from trajlab.metrics.balancedness import balancedness, balancedness_relative
from trajlab.metrics.generic import GENERIC_COLUMNS, GENERIC_METRIC_FUNCTIONS, MetricContext
from trajlab.metrics.spectral import (
    effective_rank,
    frobenius_norm,
    nuclear_norm,
    schatten_quasi_norm,
    singular_values,
    top_singular_values,
)
from trajlab.models.deep_linear import end_to_end
from trajlab.problems.matrix import train_loss
from trajlab.problems.registry import test_error
from trajlab.theory.end_to_end import deficiency_margin


@dataclass
class MetricState(MetricContext):
    """The deep linear family's metric context: ``params`` are the layers (W_1, ..., W_N), or
    (W_e,) for the end-to-end parameterization; the end-to-end matrix and its singular values are
    computed once per trace and shared. ``matrix_loss(W_e, data)`` is the problem's loss of the
    end-to-end matrix (default: matrix completion / sensing MSE)."""

    matrix_loss: Callable | None = None
    top_k: int = 10
    schatten_p: float = 0.5
    end_to_end_parameters: bool = False

    @property
    def layers(self):
        return self.params

    @property
    def initial_layers(self):
        return self.initial

    @property
    def reference_layers(self):
        return self.reference

    @cached_property
    def end_to_end(self):
        return end_to_end(self.layers)

    @cached_property
    def singular_values(self):
        return singular_values(self.end_to_end)

    @cached_property
    def train_loss(self):
        return (self.matrix_loss or train_loss)(self.end_to_end, self.data)

    @property
    def target(self):
        target = getattr(self.data, "target", None)
        if target is None:
            raise ConfigError("metrics: this metric needs a problem with a target W* (not real-data regression)")
        return target


def _layers_metric(function):
    """A metric of the layers: NaN for end-to-end runs, whose layers are not trained."""

    def metric(s: MetricState):
        if s.end_to_end_parameters:
            return jnp.full((), jnp.nan, s.end_to_end.dtype)
        return function(s.layers)

    return metric


MetricFunction = Callable[[MetricState], Any]

METRIC_FUNCTIONS: dict[str, MetricFunction] = {
    "train_loss": lambda s: s.train_loss,
    "test_error": lambda s: test_error(s.end_to_end, s.data),
    "singular_values": lambda s: top_singular_values(s.singular_values, s.top_k),
    "effective_rank": lambda s: effective_rank(s.singular_values),
    "nuclear_norm": lambda s: nuclear_norm(s.singular_values),
    "schatten_quasi_norm": lambda s: schatten_quasi_norm(s.singular_values, s.schatten_p),
    "frobenius_norm": lambda s: frobenius_norm(s.end_to_end),
    "balancedness": _layers_metric(balancedness),
    "balancedness_relative": _layers_metric(balancedness_relative),
    "end_to_end_distance_to_flow": lambda s: frobenius_norm(s.end_to_end - end_to_end(s.reference_layers)),
    "deficiency_margin": lambda s: deficiency_margin(s.end_to_end, s.target),
    "unobserved_max_abs": lambda s: unobserved_max_abs(s.end_to_end, s.data),
    "target_mode_strengths": lambda s: target_mode_strengths(s.end_to_end, s.target, s.top_k),
}


def unobserved_max_abs(w, data):
    """max |W_ij| over the entries (i, j) not observed in a completion problem.

    For Razin & Cohen's 2 x 2 example this is |W_11|, which grows without bound as the loss goes
    to 0 under gradient descent from det(W_e(0)) > 0, while the effective rank goes to 1.
    """
    if getattr(data, "rows", None) is None:
        raise ConfigError("metrics: unobserved_max_abs needs a completion problem")
    observed = jnp.zeros(w.shape, bool).at[data.rows, data.cols].set(True)
    return jnp.max(jnp.where(observed, 0, jnp.abs(w)))


def target_mode_strengths(w, target, k: int):
    """u_r^T W v_r for the top-k singular pairs (u_r, v_r) of the target Phi (zero-padded).

    The mode strengths of Saxe, McClelland, Ganguli (ICLR 2014): with a balanced init aligned to
    Phi's modes they evolve independently (see :mod:`trajlab.theory.saxe`).
    """
    u, _, vt = jnp.linalg.svd(target, full_matrices=False)
    return top_singular_values(jnp.einsum("ir,ij,rj->r", u, w, vt), k)

# Column prefixes of vector metrics.
VECTOR_COLUMNS = {
    "singular_values": "sv",
    "target_mode_strengths": "mode",
    "component_norms": "comp",
    "hessian_eigenvalues": "eig",
}


def resolve_metrics(
    names, extra: dict[str, MetricFunction] | None = None, table: dict[str, Callable] | None = None
) -> dict[str, MetricFunction]:
    """Map metric names to functions of ``table`` (default: the deep-linear metrics); ``extra``
    adds user metrics (they may not shadow built-ins)."""
    table = {**GENERIC_METRIC_FUNCTIONS, **METRIC_FUNCTIONS} if table is None else table
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(table))
    if clash:
        raise ConfigError(f"metrics: user metric names {clash} clash with built-in metrics")
    out: dict[str, MetricFunction] = {}
    for name in names:
        if name not in table:
            raise ConfigError(f"metrics: unknown metric {name!r}; known: {', '.join(table)}")
        out[name] = table[name]
    for name, function in extra.items():
        if not callable(function):
            raise ConfigError(f"metrics: user metric {name!r} must be callable")
        out[name] = function
    return out


def evaluate_metrics(
    functions: dict[str, MetricFunction], state: Any, columns: dict[str, str] | None = None
) -> dict[str, Any]:
    """{column name: value}: scalars as is, vectors split into ``prefix_i`` columns (prefix from
    ``columns``, default :data:`VECTOR_COLUMNS`, else the name), and a metric that returns a dict
    gives its own columns."""
    prefixes = {**VECTOR_COLUMNS, **GENERIC_COLUMNS, **(columns or {})}
    out: dict[str, Any] = {}
    for name, function in functions.items():
        value = function(state)
        if isinstance(value, dict):
            out.update({column: jnp.asarray(v) for column, v in value.items()})
            continue
        value = jnp.asarray(value)
        if value.ndim == 0:
            out[name] = value
        elif value.ndim == 1:
            prefix = prefixes.get(name, name)
            for i in range(value.shape[0]):
                out[f"{prefix}_{i}"] = value[i]
        else:
            raise ConfigError(f"metrics: metric {name!r} must return a scalar or a 1-D array")
    return out
