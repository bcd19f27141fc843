"""Named trajectory metrics of small nonlinear networks (``model.kind`` mlp or two_layer).

Same contract as :mod:`trajlab.metrics.registry`; user metrics receive a :class:`NetworkMetricState`.
The generic metrics (:mod:`trajlab.metrics.generic`: train loss, parameter norm, distances,
sharpness, Hessian eigenvalues and trace, ...) apply as to any family; these are the networks' own.

- ``train_loss`` / ``test_loss``: the problem's loss on the train / held-out samples (NaN without
  a test split); ``train_accuracy`` / ``test_accuracy``: argmax accuracy (multi-class), sign
  accuracy (labels +-1), NaN for regression.
- ``parameter_norm``: sqrt(sum of squared parameters); ``distance_from_init`` /
  ``distance_to_flow``: Euclidean distance in parameter space to the init / to the gradient flow
  from the same init at equal time t = step x lr.
- ``sharpness``: the top Hessian eigenvalue of the train loss, by Lanczos with full
  reorthogonalization (``train.lanczos_iterations`` steps, fixed start key 0);
  ``hessian_eigenvalues`` -> ``eig_0..eig_{k-1}``: the top-k (k = ``train.top_k``, at most the
  iterations) Ritz values; ``hessian_trace``: Hutchinson's estimate with
  ``train.hutchinson_probes`` Rademacher probes (see :mod:`trajlab.metrics.curvature`).
- ``angle_to_max_margin`` (radians) and ``normalized_margin`` = min_i y_i <w, x_i> / ||w||: for a
  linear predictor (``activation=linear``, no biases) on a binary problem with a known max-margin
  direction (``separable_2d``: w_svm = (1/2, 1/2), Soudry et al. 2018), w the end-to-end vector
  W_L ... W_1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import jax.numpy as jnp

from trajlab.metrics.generic import MetricContext


@dataclass
class NetworkMetricState(MetricContext):
    """What a network metric may look at: ``loss(params, data)`` is the train loss,
    ``test_loss`` / ``accuracy(params, data, test)`` evaluate the held-out split,
    ``predictor(params)``: the end-to-end linear predictor (or None when the model is not linear)."""

    test_loss: Callable | None = None
    accuracy: Callable | None = None
    predictor: Callable | None = None
    max_margin: Any = None

    @cached_property
    def linear_predictor(self):
        if self.predictor is None or self.max_margin is None:
            raise ValueError(
                "metrics: angle_to_max_margin / normalized_margin need a linear network (model.activation=linear, "
                "model.bias=false) on problem.dataset=separable_2d"
            )
        return jnp.ravel(self.predictor(self.params))


def _angle(u, v):
    """Angle in [0, pi] between u and v: 2 atan2(||u^ - v^||, ||u^ + v^||) (Kahan; accurate for tiny angles)."""
    a, b = u / jnp.linalg.norm(u), v / jnp.linalg.norm(v)
    return 2.0 * jnp.arctan2(jnp.linalg.norm(a - b), jnp.linalg.norm(a + b))


def _normalized_margin(s: NetworkMetricState):
    w = s.linear_predictor
    return jnp.min(s.data.labels * (s.data.inputs @ w)) / jnp.linalg.norm(w)


NETWORK_METRIC_FUNCTIONS: dict[str, Callable[[NetworkMetricState], Any]] = {
    "test_loss": lambda s: s.test_loss(s.params, s.data),
    "train_accuracy": lambda s: s.accuracy(s.params, s.data, False),
    "test_accuracy": lambda s: s.accuracy(s.params, s.data, True),
    "angle_to_max_margin": lambda s: _angle(s.linear_predictor, s.max_margin),
    "normalized_margin": _normalized_margin,
}
