"""Matrix completion and matrix sensing (Arora, Cohen, Hu, Luo, NeurIPS 2019, Section 5).

Data are drawn with numpy from ``problem.seed`` so that a problem is the same whatever the JAX
backend or precision; losses are pure JAX functions of the end-to-end matrix W (m x n).

- Ground truth: W* = U V^T / sqrt(r), U in R^{m x r}, V in R^{n x r} i.i.d. N(0, 1), then rescaled
  so that ||W*||_F^2 = m n (mean squared entry 1).
- Completion: ``observations`` entries (i, j) drawn uniformly without replacement; values W*_ij.
- Sensing: A_i with i.i.d. N(0, 1/(m n)) entries, y_i = <A_i, W*>; A is stored as (M, m n), row-major
  vec, so <A_i, W> = A[i] @ W.ravel().
- Train loss: mean squared error over the observations, (1/M) sum_i (<obs_i, W> - y_i)^2.
- Test error (reconstruction error): ||W - W*||_F^2 / ||W*||_F^2.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from trajlab.config import ProblemConfig


class MatrixData(NamedTuple):
    """Observations of a matrix problem (a pytree; ``sensing`` is None for completion)."""

    target: np.ndarray | None  # W*, (m, n); None when there is no ground truth
    rows: np.ndarray | None  # completion: observed row indices, (M,)
    cols: np.ndarray | None  # completion: observed column indices, (M,)
    sensing: np.ndarray | None  # sensing: A as (M, m n), row-major vec
    values: np.ndarray  # observed values y, (M,)


def low_rank_target(m: int, n: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    """W* = U V^T / sqrt(rank), rescaled to ||W*||_F^2 = m n (float64)."""
    u = rng.standard_normal((m, rank))
    v = rng.standard_normal((n, rank))
    w = u @ v.T / np.sqrt(rank)
    return w * np.sqrt(m * n) / np.linalg.norm(w)


def make_matrix_problem(config: ProblemConfig) -> MatrixData:
    """Draw the ground truth and observations of ``config`` (numpy, float64)."""
    if getattr(config, "dataset", "synthetic") == "razin_cohen_2x2":
        # [[?, 1], [1, 0]]: no ground truth for the unobserved entry.
        rows, cols = np.array([0, 1, 1], np.int32), np.array([1, 0, 1], np.int32)
        return MatrixData(None, rows, cols, None, np.array([1.0, 1.0, 0.0]))
    rng = np.random.default_rng(config.seed)
    target = low_rank_target(config.m, config.n, config.rank, rng)
    if config.kind == "completion":
        flat = rng.choice(config.m * config.n, size=config.observations, replace=False)
        rows, cols = np.divmod(flat, config.n)
        return MatrixData(target, rows.astype(np.int32), cols.astype(np.int32), None, target[rows, cols])
    sensing = rng.standard_normal((config.observations, config.m * config.n)) / np.sqrt(config.m * config.n)
    return MatrixData(target, None, None, sensing, sensing @ target.ravel())


def completion_loss(w, rows, cols, values):
    """(1/M) sum_k (W[rows_k, cols_k] - values_k)^2."""
    return jnp.mean((w[rows, cols] - values) ** 2)


def sensing_loss(w, sensing, values):
    """(1/M) sum_i (<A_i, W> - y_i)^2 with A stored as (M, m n)."""
    return jnp.mean((sensing @ w.reshape(-1) - values) ** 2)


def train_loss(w, data: MatrixData):
    """Mean squared error of the end-to-end matrix on the observations of ``data``."""
    if data.sensing is None:
        return completion_loss(w, data.rows, data.cols, data.values)
    return sensing_loss(w, data.sensing, data.values)


def reconstruction_error(w, target):
    """||W - W*||_F^2 / ||W*||_F^2."""
    return jnp.sum((w - target) ** 2) / jnp.sum(target**2)
