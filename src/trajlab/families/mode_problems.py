"""A problem whose gradient is diagonal in a fixed basis, and the deep linear network on it.

Problem ``diagonal_measurement`` (``problem.*``): **one** linear measurement y = <A, W> of an m x n
matrix W with a diagonal measurement matrix A = diag(``weights``) (zero-padded to m x n), loss

    L(W) = 1/2 (<A, W> - y)^2,          y = ``value``.

Its gradient, (<A, W> - y) A, is diagonal, so from a *diagonal balanced* init (``model.init=identity``:
W_j = scale^(1/N) I, W_e(0) = scale I) every layer stays diagonal, the singular vectors of W_e stay
the coordinate vectors, and the r-th singular value (the r-th diagonal entry, while it stays
positive) follows d sigma_r / dt = N a_r sigma_r^(2 - 2/N) g(t) with the *common* driving factor
g(t) = y - <A, W_e(t)> (Arora, Cohen, Hu, Luo, NeurIPS 2019, Theorem 3, with
<grad L, e_r e_r^T> = -a_r g). The closed forms of sigma_2 as a function of sigma_1 are in
:mod:`trajlab.theory.depth_modes`. This is the "single observation" of the talk in a form that keeps
the singular vectors fixed: one observed *entry* W_ij of a non-diagonal W would rotate them.

Family ``deep_linear_modes`` (``model.*``): the deep linear network of :mod:`trajlab.families.deep_linear`
(the same model, init schemes, loss of the end-to-end matrix, end-to-end parameterization and
metrics), registered under its own name because the ``deep_linear`` family lists the problems it
solves and a plug-in cannot add one to that list (a hook that would make this family unnecessary:
let a problem declare the families it serves). Default ``init=identity`` (the diagonal balanced
init). Extra metrics: ``diagonal`` (the diagonal of W_e, columns ``diag_0, diag_1, ...``) and
``off_diagonal_norm`` (||W_e - diag(W_e)||_F: zero exactly when the coordinate vectors are its
singular vectors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from trajlab.config import require
from trajlab.registry import FamilyParts, family, problem


# ---------------------------------------------------------------------------------------------
# problem diagonal_measurement


@dataclass(frozen=True)
class DiagonalMeasurementConfig:
    """One measurement y = <diag(weights), W> of an m x n matrix, loss 1/2 (<A, W> - y)^2."""

    m: int = 2
    n: int = 2
    weights: tuple[float, ...] = (1.0, 0.5)
    value: float = 10.0

    def __post_init__(self) -> None:
        for name in ("m", "n"):
            size = getattr(self, name)
            require(
                isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= 10**4,
                f"problem.{name}", "an integer in [1, 10^4]", size,
            )
        weights = self.weights
        require(
            isinstance(weights, (tuple, list)) and 1 <= len(weights) <= min(self.m, self.n)
            and all(isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) and a > 0 for a in weights),
            "problem.weights", f"1 to min(m, n) = {min(self.m, self.n)} finite numbers > 0 (the diagonal of A)", weights,
        )
        require(
            isinstance(self.value, (int, float)) and not isinstance(self.value, bool) and math.isfinite(self.value)
            and self.value > 0,
            "problem.value", "a finite number > 0 (the measured value y = <A, W*>)", self.value,
        )


class DiagonalMeasurementData(NamedTuple):
    measurement: np.ndarray  # A, (m, n), diagonal
    value: np.ndarray  # y, a scalar


def measurement_matrix(config: DiagonalMeasurementConfig) -> np.ndarray:
    """A = diag(weights), zero-padded to m x n (float64)."""
    a = np.zeros((config.m, config.n))
    k = len(config.weights)
    a[np.arange(k), np.arange(k)] = np.asarray(config.weights, dtype=float)
    return a


def _measurement_loss(config):
    import jax.numpy as jnp

    def loss(w, data):
        return 0.5 * (jnp.sum(data.measurement * w) - data.value) ** 2

    return loss


@problem(
    "diagonal_measurement",
    config=DiagonalMeasurementConfig,
    loss=_measurement_loss,
    nbytes=lambda config: 8 * (config.m * config.n + 1),
)
def diagonal_measurement(config: DiagonalMeasurementConfig) -> DiagonalMeasurementData:
    """One measurement y = <diag(a), W>, loss 1/2 (<A, W> - y)^2: a gradient diagonal in a fixed basis."""
    return DiagonalMeasurementData(measurement_matrix(config), np.asarray(float(config.value)))


# ---------------------------------------------------------------------------------------------
# family deep_linear_modes


MODE_PROBLEMS = ("diagonal_measurement",)


@dataclass(frozen=True)
class DeepLinearModesConfig:
    """The deep linear network W_e = W_N ... W_1 (fields as for ``model.kind=deep_linear``), diagonal
    balanced init by default."""

    depth: int = 2
    width: int | None = None
    init: str = "identity"
    scale: float = 1e-3
    parameterization: str = "factorized"
    condition: str = "none"

    def __post_init__(self) -> None:
        from trajlab.families.deep_linear import INIT_CONDITIONS, INIT_SCHEMES, PARAMETERIZATIONS

        kind = "for model.kind=deep_linear_modes"
        require(
            isinstance(self.scale, (int, float)) and 0 < self.scale < float("inf"), "model.scale", "a number > 0",
            self.scale,
        )
        require(isinstance(self.depth, int) and 1 <= self.depth <= 1000, "model.depth", "an integer in [1, 1000]", self.depth)
        require(
            self.width is None or (isinstance(self.width, int) and 1 <= self.width <= 10**6), "model.width",
            "an integer in [1, 10^6] or null", self.width,
        )
        require(self.init in INIT_SCHEMES, "model.init", f"one of {INIT_SCHEMES} {kind}", self.init)
        require(self.condition in INIT_CONDITIONS, "model.condition", f"one of {INIT_CONDITIONS} {kind}", self.condition)
        require(
            self.parameterization in PARAMETERIZATIONS, "model.parameterization", f"one of {PARAMETERIZATIONS} {kind}",
            self.parameterization,
        )


def _diagonal(state):
    import jax.numpy as jnp

    return jnp.diagonal(state.end_to_end)


def _off_diagonal_norm(state):
    import jax.numpy as jnp

    w = state.end_to_end
    k = min(w.shape)
    off = w.at[jnp.arange(k), jnp.arange(k)].set(0.0)
    return jnp.sqrt(jnp.sum(off**2))


def _check(config) -> None:
    from trajlab.families.deep_linear import check

    check(config)


def _nbytes(config) -> int:
    from trajlab.families.deep_linear import nbytes

    return nbytes(config)


def _metrics():
    from trajlab.metrics.registry import METRIC_FUNCTIONS

    return {**METRIC_FUNCTIONS, "diagonal": _diagonal, "off_diagonal_norm": _off_diagonal_norm}


@family(
    "deep_linear_modes",
    config=DeepLinearModesConfig,
    problems=MODE_PROBLEMS,
    metrics=_metrics(),
    default_metrics=("train_loss", "singular_values", "diagonal", "off_diagonal_norm"),
    columns={"singular_values": "sv", "diagonal": "diag", "target_mode_strengths": "mode"},
    check=_check,
    flow_metrics=("end_to_end_distance_to_flow",),
    description="deep linear network W_N ... W_1 on problems with a gradient diagonal in a fixed basis",
    nbytes=_nbytes,
)
def deep_linear_modes(config) -> FamilyParts:
    """The deep linear network's parts (:func:`trajlab.families.deep_linear.build`) on a mode problem."""
    from trajlab.families.deep_linear import build

    return build(config)
