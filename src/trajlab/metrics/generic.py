"""Metrics of any family: functions of a :class:`MetricContext`, whatever the params pytree.

A metric is ``metric(ctx) -> scalar | 1-D array | {column: scalar}`` (a 1-D array becomes columns
``prefix_0, prefix_1, ...``). ``ctx`` holds the run's parameters now, at init and on the reference
gradient flow (``reference``, None unless the run carries one), the problem's data, the family's
loss and the run's config; derived quantities (the train loss, the gradient, the Hessian's top
eigenvalues) are computed once per recording and shared by the metrics that read them.

Generic metrics (:data:`GENERIC_METRIC_FUNCTIONS`, names in :data:`trajlab.registry.GENERIC_METRICS`):

- ``train_loss``: loss(params, data), the objective the family trains.
- ``gradient_norm``: ||grad L(theta)||_2 over all leaves.
- ``parameter_norm``: ||theta||_2 = sqrt(sum of squared parameters).
- ``distance_from_init`` / ``distance_to_flow``: ||theta - theta(0)||_2 and ||theta - theta_GF(t)||_2,
  the Euclidean distance to the init and to the gradient flow from the same init at equal time
  t = step x lr (Elkabetz & Cohen 2021).
- ``sharpness``: the top Hessian eigenvalue of the train loss; ``hessian_eigenvalues`` ->
  ``eig_0..eig_{k-1}``: the top k = min(train.top_k, train.lanczos_iterations) Ritz values
  (Lanczos with full reorthogonalization, ``train.lanczos_iterations`` Hessian-vector products,
  fixed start key 0); ``hessian_trace``: Hutchinson's estimate with ``train.hutchinson_probes``
  Rademacher probes (key 1). See :mod:`trajlab.metrics.curvature`.
- ``leaf_singular_values`` -> ``sv_<leaf>_<i>``: the top ``train.top_k`` singular values (zero
  padded) of every matrix-shaped leaf; ``leaf_effective_ranks`` -> ``erank_<leaf>``: their
  effective ranks (Roy & Vetterli 2007). ``<leaf>`` is the leaf's position in the flattened pytree.
- ``relative_weight_change``: ||theta - theta(0)||_2 / ||theta(0)||_2.
- ``linearization`` -> ``linearization_param_distance``, ``linearization_train_distance``,
  ``linearization_test_distance``, ``linearization_train_loss``: the run against its linearization
  at init trained beside it (the engine carries it when this metric is named; the family must give
  ``FamilyParts.predict`` and ``output_loss``). See :mod:`trajlab.metrics.linearization`.
- ``preconditioned_sharpness``: the top eigenvalue of P^-1 H with the optimizer's own diagonal
  preconditioner P (Adam, RMSprop, normalized GD; P = I otherwise), read from
  ``ctx.optimizer_state``; ``r_med``: Jiang, Malik, Li's R_med (median over parameter leaves of the
  max / median Hessian diagonal entry). See :mod:`trajlab.metrics.adaptive`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import jax
import jax.numpy as jnp

from trajlab.metrics.balancedness import distance_from_init
from trajlab.metrics.curvature import hutchinson_trace, lanczos_top_eigenvalues
from trajlab.metrics.linearization import linearization_metric, relative_weight_change
from trajlab.metrics.spectral import effective_rank, singular_values, top_singular_values


@dataclass
class MetricContext:
    """What a metric may look at. ``loss(params, data)`` is the family's training loss; ``config``
    the run's :class:`~trajlab.config.RunConfig` (static fields only: seed, lr and scale are
    batched). Families subclass it to share their own derived quantities between metrics."""

    params: Any
    initial: Any
    reference: Any
    data: Any
    loss: Callable[[Any, Any], Any] | None = None
    config: Any = None
    #: The linearization at init carried beside the run (a
    #: :class:`~trajlab.metrics.linearization.LinearizationState`), set by the engine when the run
    #: records ``linearization``; a class attribute, not a field, so subclasses are unaffected.
    linearization = None
    #: The family's outputs and the loss of outputs (:attr:`FamilyParts.predict` and
    #: ``output_loss``), set by the engine when the family gives them (the Gauss-Newton metrics
    #: use them); class attributes, like ``linearization``.
    predict = None
    output_loss = None
    #: The run's optimizer state (the unit-step optax state of
    #: :func:`trajlab.dynamics.optimizers.direction_transform` or of the family's own rule; for a run
    #: that carries its linearization, the model's part only), set by the engine when the run records
    #: metrics (every run the engine builds from a config); a class attribute like ``linearization``.
    #: None where no engine set it (gradient flow has the empty state ``()``).
    optimizer_state = None
    #: The run's own step size (a traced scalar; lr is batched, ``config.optimizer.lr`` is the batch
    #: representative's), set by the engine; None elsewhere.
    lr = None
    #: ``{metric name: carried state}`` of the :class:`CarriedMetric` s recorded, set by the engine;
    #: None elsewhere (a carried metric then starts cold).
    carry = None

    @property
    def initial_params(self):
        """Alias of ``initial``."""
        return self.initial

    @property
    def reference_params(self):
        """Alias of ``reference``."""
        return self.reference

    @cached_property
    def train_loss(self):
        return self.loss(self.params, self.data)

    @cached_property
    def gradient(self):
        return jax.grad(self.loss)(self.params, self.data)

    def _train(self, name: str, default: int):
        train = getattr(self.config, "train", None)
        return getattr(train, name, default)

    @cached_property
    def hessian_eigenvalues(self):
        iterations = self._train("lanczos_iterations", 20)
        k = min(self._train("top_k", 10), iterations)
        return lanczos_top_eigenvalues(
            lambda p: self.loss(p, self.data), self.params, jax.random.PRNGKey(0), k=k, iterations=iterations
        )

    @cached_property
    def matrix_leaves(self) -> list[tuple[int, Any]]:
        """(position, leaf) of every 2-D leaf of the params pytree."""
        return [(i, leaf) for i, leaf in enumerate(jax.tree_util.tree_leaves(self.params)) if jnp.ndim(leaf) == 2]

    @cached_property
    def leaf_singular_values(self) -> list[tuple[int, Any]]:
        return [(i, singular_values(leaf)) for i, leaf in self.matrix_leaves]


def _norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))


def _reference(ctx: MetricContext):
    if ctx.reference is None:
        raise ValueError("metrics: distance_to_flow needs the reference flow the engine carries for it")
    return ctx.reference


def _leaf_singular_values(ctx: MetricContext):
    k = ctx._train("top_k", 10)
    out = {}
    for i, sigma in ctx.leaf_singular_values:
        top = top_singular_values(sigma, k)
        for j in range(top.shape[0]):
            out[f"sv_{i}_{j}"] = top[j]
    return out


def _leaf_effective_ranks(ctx: MetricContext):
    return {f"erank_{i}": effective_rank(sigma) for i, sigma in ctx.leaf_singular_values}


GENERIC_METRIC_FUNCTIONS: dict[str, Callable[[MetricContext], Any]] = {
    "train_loss": lambda ctx: ctx.train_loss,
    "gradient_norm": lambda ctx: _norm(ctx.gradient),
    "parameter_norm": lambda ctx: _norm(ctx.params),
    "distance_from_init": lambda ctx: distance_from_init(ctx.params, ctx.initial),
    "distance_to_flow": lambda ctx: distance_from_init(ctx.params, _reference(ctx)),
    "sharpness": lambda ctx: ctx.hessian_eigenvalues[0],
    "hessian_eigenvalues": lambda ctx: ctx.hessian_eigenvalues,
    "hessian_trace": lambda ctx: hutchinson_trace(
        lambda p: ctx.loss(p, ctx.data), ctx.params, jax.random.PRNGKey(1), probes=ctx._train("hutchinson_probes", 10)
    ),
    "leaf_singular_values": _leaf_singular_values,
    "leaf_effective_ranks": _leaf_effective_ranks,
    "relative_weight_change": lambda ctx: relative_weight_change(ctx.params, ctx.initial),
    "linearization": linearization_metric,
}
#: Column prefixes of the generic vector metrics.
GENERIC_COLUMNS = {"hessian_eigenvalues": "eig"}

# Curvature suite (:mod:`trajlab.metrics.curvature_suite`): ``hessian_density`` (SLQ, columns
# hdens_i), ``hessian_trace_suite`` (Hutchinson and Hutch++ with variances), ``gauss_newton_sharpness``.
from trajlab.metrics.curvature_suite import CURVATURE_SUITE_COLUMNS, CURVATURE_SUITE_METRICS  # noqa: E402

GENERIC_METRIC_FUNCTIONS.update(CURVATURE_SUITE_METRICS)
GENERIC_COLUMNS.update(CURVATURE_SUITE_COLUMNS)

# Adaptive optimizers (:mod:`trajlab.metrics.adaptive`): ``preconditioned_sharpness``, ``r_med``.
from trajlab.metrics.adaptive import ADAPTIVE_METRICS  # noqa: E402

GENERIC_METRIC_FUNCTIONS.update(ADAPTIVE_METRICS)

__all__ = ["GENERIC_COLUMNS", "GENERIC_METRIC_FUNCTIONS", "MetricContext"]
