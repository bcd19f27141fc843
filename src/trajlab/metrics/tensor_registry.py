"""Named trajectory metrics of tensor factorization runs (``model.kind`` cp or hierarchical).

Same contract as :mod:`trajlab.metrics.registry`: ``metric(state) -> scalar, 1-D array, or
{column: scalar}``; user metrics receive a :class:`TensorMetricState`.

Columns: ``reconstruction_error`` = ||W - W*||_F / ||W*||_F (not squared, as plotted by Razin et
al. 2021/2022); ``component_norms`` -> ``comp_0..comp_{k-1}``, the top-k CP component norms;
``local_component_norms`` -> ``local_l{l}_n{n}_{i}``, the top-k local component norms at node n of
level l (levels 1..L, leaves are level 0; for Tucker nodes the top-k over both edges);
``matricization_effective_ranks`` -> ``erank_l{l}_n{n}``, the effective rank of the matricization
along node n of level l (levels 0..L-1). The mode tree is that of :mod:`trajlab.models.tensor` (any
order; for odd orders level l's last node may have one child, see
:func:`trajlab.metrics.tensor.ht_local_component_norms`).

``cp_rank_estimate`` is not in this table: it is a final metric of the family
(:mod:`trajlab.families.tensor`), computed once per run on the final parameters and stored as
``final.cp_rank_estimate`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import jax.numpy as jnp

from trajlab.metrics.generic import MetricContext
from trajlab.metrics.tensor import (
    cp_component_norms,
    ht_local_component_norms,
    matricization_effective_ranks,
    normalized_reconstruction_error,
)


def _top_k(values, k: int):
    """The k largest entries, descending, zero-padded to length k."""
    values = -jnp.sort(-values)
    if values.shape[-1] >= k:
        return values[:k]
    return jnp.pad(values, (0, k - values.shape[-1]))


@dataclass
class TensorMetricState(MetricContext):
    """What a tensor metric may look at; ``full(params)`` -> dense W, computed once per trace and shared."""

    full: Callable[[Any], Any] | None = None

    @property
    def top_k(self) -> int:
        return self._train("top_k", 10)

    @cached_property
    def tensor(self):
        return self.full(self.params)


def _component_norms(state: TensorMetricState):
    if not isinstance(state.params, tuple) or hasattr(state.params, "leaves"):
        raise ValueError("metrics: component_norms is for model.kind=cp; use local_component_norms")
    return _top_k(cp_component_norms(state.params), state.top_k)


def _local_component_norms(state: TensorMetricState):
    if not hasattr(state.params, "leaves"):
        raise ValueError("metrics: local_component_norms is for model.kind=hierarchical; use component_norms")
    out = {}
    for level, norms in enumerate(ht_local_component_norms(state.params), start=1):
        for node in range(norms.shape[0]):
            values = _top_k(norms[node].reshape(-1), state.top_k)
            for i in range(values.shape[0]):
                out[f"local_l{level}_n{node}_{i}"] = values[i]
    return out


def _matricization_effective_ranks(state: TensorMetricState):
    out = {}
    for level, ranks in enumerate(matricization_effective_ranks(state.tensor)):
        for node in range(ranks.shape[0]):
            out[f"erank_l{level}_n{node}"] = ranks[node]
    return out


TENSOR_METRIC_FUNCTIONS: dict[str, Callable[[TensorMetricState], Any]] = {
    "reconstruction_error": lambda s: normalized_reconstruction_error(s.tensor, s.data.target),
    "frobenius_norm": lambda s: jnp.sqrt(jnp.sum(s.tensor**2)),
    "component_norms": _component_norms,
    "local_component_norms": _local_component_norms,
    "matricization_effective_ranks": _matricization_effective_ranks,
}
