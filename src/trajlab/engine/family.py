"""Model families: what the engine needs from a parameterization, and the registry by ``model.kind``.

A family turns a :class:`~trajlab.config.RunConfig` into :class:`FamilyParts` (init, loss,
metrics, and optionally a preconditioner and its own update rule); :func:`trajlab.engine.task.build_task`
adds what every family shares (the optimizer, gradient flow, stopping rules) to make the Task.
Adding a model means adding a module with a ``family_parts(config, extra_metrics)`` function and
one entry in :data:`FAMILIES`, not another branch in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import optax


@dataclass(frozen=True)
class FamilyParts:
    """init(key, scale) -> params; loss(params, data) -> scalar;
    metrics(params, initial, reference, data) -> {column: scalar};
    precondition(params, grads) -> the field F of the flow d theta/dt = -F (None: F = grads);
    optimizer: a unit-step optax rule replacing the config's (None: from ``config.optimizer``);
    final_metrics(params, data) -> {column: float}: host-side metrics of the final parameters
    (see :class:`trajlab.engine.loop.Task`); minibatch(data, key) -> data: one stochastic step's
    samples (only when ``optimizer.batch_size`` > 0)."""

    init: Callable[[Any, Any], Any]
    loss: Callable[[Any, Any], Any]
    metrics: Callable[[Any, Any, Any, Any], dict]
    precondition: Callable[[Any, Any], Any] | None = None
    optimizer: optax.GradientTransformation | None = None
    final_metrics: Callable[[Any, Any], dict] | None = None
    minibatch: Callable[[Any, Any], Any] | None = None


def family_parts(config, extra_metrics: dict | None = None) -> FamilyParts:
    """The parts of ``config.model.kind`` (imports the family's module on first use)."""
    kind = config.model.kind
    if kind not in FAMILIES:  # config validation makes this unreachable; a clear message for new kinds
        raise ValueError(f"engine: no model family registered for model.kind={kind!r}")
    return FAMILIES[kind]()(config, extra_metrics)


def _deep_linear():
    from trajlab.engine.deep_linear_family import family_parts

    return family_parts


def _network():
    from trajlab.engine.network_family import family_parts

    return family_parts


def _tensor():
    from trajlab.engine.tensor_family import family_parts

    return family_parts


# model.kind -> a function returning the family's ``family_parts`` (lazy: a family's imports are
# paid only by the runs that use it).
FAMILIES: dict[str, Callable[[], Callable]] = {
    "deep_linear": _deep_linear,
    "cp": _tensor,
    "hierarchical": _tensor,
    "mlp": _network,
    "two_layer": _network,
}
