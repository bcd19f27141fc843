"""Metrics that carry state from one recording point to the next (:class:`CarriedMetric`).

The engine keeps ``{metric name: state}`` per run in its compiled loop's state
(:attr:`trajlab.engine.loop.Task.metric_carry`) and hands each carried metric its own entry through
the metric context's ``carry``; a warm-started eigensolver (``edge_tracking`` of
:mod:`trajlab.metrics.curvature_suite`) is the first user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class CarriedMetric:
    """A metric that carries state from one recording point to the next (a warm start, a running
    estimate). ``compute(ctx, previous) -> (value, new_state)``: ``previous`` is None when no engine
    keeps state (a metric called on its own: start cold). ``init(ctx) -> pytree`` is the state at
    the run's init, ``ctx`` the metric context of the initial parameters; its shapes are fixed (it
    lives in the compiled loop's state). Called as ``metric(ctx)`` like any metric; the engine keeps
    the state under the name the metric is recorded by (``key``, set by the engine) in ``ctx.carry``."""

    compute: Callable[[Any, Any], tuple[Any, Any]]
    init: Callable[[Any], Any]
    key: str = ""

    def __call__(self, ctx):
        carry = getattr(ctx, "carry", None)
        kept = isinstance(carry, dict) and self.key in carry
        value, state = self.compute(ctx, carry[self.key] if kept else None)
        if kept:
            carry[self.key] = state
        return value


__all__ = ["CarriedMetric"]
