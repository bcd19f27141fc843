"""Nuclear-norm minimization: the convex baseline for matrix completion and sensing.

Given linear observations of an unknown ``m x n`` matrix ``W*``, solve

    minimize    ||X||_*                       (sum of singular values)
    subject to  A(X) == y                     (tolerance == 0), or
                |A(X)_i - y_i| <= tolerance   for every observation i   (tolerance > 0)

where ``A`` either reads observed entries (completion) or takes inner products with
measurement matrices (sensing). Candès & Recht, "Exact Matrix Completion via Convex
Optimization" (2009) show this recovers a low-rank incoherent ``W*`` exactly from enough random
entries; Arora, Cohen, Hu & Luo, "Implicit Regularization in Deep Matrix Factorization" (NeurIPS
2019) use it as the reference that deep matrix factorization is compared against (their code uses
``tolerance = 1e-3``).

The program is handed to cvxpy, which rewrites ``||X||_*`` as the semidefinite program
``min (tr U + tr V) / 2  s.t.  [[U, X], [X^T, V]] >= 0``, and solved with SCS (``solver="SCS"``,
see DESIGN.md). Observations enter as one vectorized constraint on ``vec(X)`` (row-major), so the
cost of building the problem does not grow with a Python loop over observations.

Solver accuracy: SCS stops when its primal residual, dual residual and duality gap are below
``eps_abs + eps_rel * (scale)``; both are set to ``eps`` (default ``1e-6``). Measured on a 100 x 100
rank-5 completion (2-core CPU): equality residuals on the observed entries ~1e-10, relative error
to a recoverable truth ~1e-13 (5000 observations), and 1.5-5 s per solve with equality
constraints; tightening to 1e-8 moves test error and nuclear norm only in the 7th digit and costs
~35% more time.
The tolerance form converges more slowly in SCS (~10-18 s for the same problem). ``tolerance`` is
an absolute bound, so its effect depends on the scale of the data: trajlab's problems have mean
squared entry 1 (||W*||_F^2 = m n), where 1e-3 is a 0.1% slack per entry; on a target normalized
to unit Frobenius norm (entries ~1e-2 for 100 x 100) the same 1e-3 would be a 10% slack.
Loosen ``eps`` (e.g. ``1e-4``) for large sweeps where only a few digits of test error matter.

Only numpy, scipy and cvxpy are used here: baselines know nothing of the engine or of JAX.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

__all__ = [
    "NuclearNormResult",
    "nuclear_norm_completion",
    "nuclear_norm_sensing",
]

_DEFAULT_MAX_ITERS = 100_000
_DEFAULT_EPS = 1e-6


@dataclass(frozen=True)
class NuclearNormResult:
    """Outcome of one nuclear-norm minimization.

    Attributes:
      solution: the minimizer ``X``, an ``m x n`` float64 array.
      test_error: ``||X - W*||_F^2 / ||W*||_F^2`` (relative squared Frobenius error to the target
        over *all* entries), or ``nan`` when no target was given.
      nuclear_norm: ``||X||_* = sum_i sigma_i(X)``.
      effective_rank: ``exp(-sum_i p_i log p_i)`` with ``p_i = sigma_i / sum_j sigma_j`` (Roy &
        Vetterli, "The effective rank: a measure of effective dimensionality", 2007); zero singular
        values contribute 0 to the entropy; the zero matrix has effective rank 0.
      solve_s: wall-clock seconds of ``problem.solve`` (cvxpy canonicalization plus SCS).
      status: cvxpy problem status, e.g. ``"optimal"`` or ``"optimal_inaccurate"``.
    """

    solution: np.ndarray
    test_error: float
    nuclear_norm: float
    effective_rank: float
    solve_s: float
    status: str


def nuclear_norm_completion(
    shape,
    rows,
    cols,
    values,
    *,
    target=None,
    tolerance: float = 0.0,
    max_iters: int = _DEFAULT_MAX_ITERS,
    eps: float = _DEFAULT_EPS,
) -> NuclearNormResult:
    """Matrix completion by nuclear-norm minimization (Candès & Recht 2009).

    Solves ``min ||X||_*`` subject to ``X[rows[i], cols[i]] == values[i]`` for every observed
    entry when ``tolerance == 0``, or ``|X[rows[i], cols[i]] - values[i]| <= tolerance`` (an
    entrywise, absolute bound) when ``tolerance > 0``; Arora et al. (2019) use ``1e-3``.

    Args:
      shape: ``(m, n)``, positive integers; rectangular shapes are fine.
      rows, cols: integer arrays of equal length ``N >= 1`` with the observed positions,
        ``0 <= rows < m``, ``0 <= cols < n``; each position at most once.
      values: the ``N`` observed values, finite.
      target: optional ground truth ``W*`` of shape ``(m, n)`` used only for ``test_error``.
      tolerance: absolute slack per observation, ``>= 0``.
      max_iters: SCS iteration cap, ``>= 1``.
      eps: SCS ``eps_abs`` and ``eps_rel``, ``> 0`` (see the module docstring for the default).

    Returns:
      A :class:`NuclearNormResult`.

    Raises:
      ValueError: on malformed inputs, naming the field.
      RuntimeError: when SCS returns no solution (e.g. infeasible constraints).
    """
    m, n = _check_shape(shape)
    rows = _check_index_array("rows", rows, m)
    cols = _check_index_array("cols", cols, n)
    if rows.shape != cols.shape:
        raise ValueError(f"cols: length {cols.shape[0]} must equal length of rows ({rows.shape[0]})")
    values = _check_vector("values", values, rows.shape[0], "rows")
    flat = rows * n + cols
    if np.unique(flat).shape[0] != flat.shape[0]:
        raise ValueError("rows/cols: each observed position (row, col) must appear at most once")
    _check_solver_options(tolerance, max_iters, eps)
    target = _check_target(target, (m, n))

    # Row-major selection matrix: (S @ vec_C(X))[i] = X[rows[i], cols[i]].
    num_observed = flat.shape[0]
    selection = sp.csr_matrix(
        (np.ones(num_observed), (np.arange(num_observed), flat)), shape=(num_observed, m * n)
    )
    return _solve((m, n), selection, values, target, tolerance, max_iters, eps)


def nuclear_norm_sensing(
    shape,
    sensing,
    measurements,
    *,
    target=None,
    tolerance: float = 0.0,
    max_iters: int = _DEFAULT_MAX_ITERS,
    eps: float = _DEFAULT_EPS,
) -> NuclearNormResult:
    """Matrix sensing by nuclear-norm minimization (Recht, Fazel & Parrilo 2010; Candès & Recht 2009).

    Solves ``min ||X||_*`` subject to ``<A_i, X> == y_i`` for every measurement when
    ``tolerance == 0``, or ``|<A_i, X> - y_i| <= tolerance`` when ``tolerance > 0``, where
    ``<A, X> = sum_jk A_jk X_jk`` (Arora et al. 2019 use ``tolerance = 1e-3``).

    Args:
      shape: ``(m, n)``, positive integers.
      sensing: the measurement matrices, either an array of shape ``(M, m, n)`` or their row-major
        vectorizations, shape ``(M, m * n)``; finite, ``M >= 1``.
      measurements: ``y``, shape ``(M,)``, finite.
      target: optional ground truth ``W*`` of shape ``(m, n)`` used only for ``test_error``.
      tolerance: absolute slack per measurement, ``>= 0``.
      max_iters: SCS iteration cap, ``>= 1``.
      eps: SCS ``eps_abs`` and ``eps_rel``, ``> 0``.

    Returns:
      A :class:`NuclearNormResult`.

    Raises:
      ValueError: on malformed inputs, naming the field.
      RuntimeError: when SCS returns no solution (e.g. inconsistent measurements).
    """
    m, n = _check_shape(shape)
    sensing = np.asarray(sensing, dtype=np.float64)
    if sensing.ndim == 3:
        if sensing.shape[1:] != (m, n):
            raise ValueError(
                f"sensing: shape {sensing.shape} must be (M, {m}, {n}) or (M, {m * n}) for shape ({m}, {n})"
            )
        sensing = sensing.reshape(sensing.shape[0], m * n)  # row-major, matches vec(X, order="C")
    elif sensing.ndim == 2:
        if sensing.shape[1] != m * n:
            raise ValueError(
                f"sensing: shape {sensing.shape} must be (M, {m}, {n}) or (M, {m * n}) for shape ({m}, {n})"
            )
    else:
        raise ValueError(f"sensing: must have 2 or 3 dimensions, got {sensing.ndim}")
    if sensing.shape[0] < 1:
        raise ValueError("sensing: need at least one measurement matrix (M >= 1)")
    if not np.all(np.isfinite(sensing)):
        raise ValueError("sensing: entries must be finite")
    measurements = _check_vector("measurements", measurements, sensing.shape[0], "sensing")
    _check_solver_options(tolerance, max_iters, eps)
    target = _check_target(target, (m, n))
    return _solve((m, n), sensing, measurements, target, tolerance, max_iters, eps)


def _solve(shape, operator, observed, target, tolerance, max_iters, eps) -> NuclearNormResult:
    """Solve ``min ||X||_*`` s.t. ``operator @ vec_C(X)`` matches ``observed`` (within tolerance)."""
    x = cp.Variable(shape)
    predicted = operator @ cp.vec(x, order="C")
    if tolerance > 0:
        constraints = [cp.abs(predicted - observed) <= tolerance]
    else:
        constraints = [predicted == observed]
    problem = cp.Problem(cp.Minimize(cp.normNuc(x)), constraints)

    start = time.perf_counter()
    problem.solve(solver="SCS", eps_abs=eps, eps_rel=eps, max_iters=max_iters)
    solve_s = time.perf_counter() - start

    if x.value is None:
        raise RuntimeError(f"nuclear-norm solve returned no solution (cvxpy status {problem.status!r})")
    solution = np.array(x.value, dtype=np.float64)
    singular_values = np.linalg.svd(solution, compute_uv=False)
    if target is None:
        test_error = math.nan
    else:
        test_error = float(np.sum((solution - target) ** 2) / np.sum(target**2))
    return NuclearNormResult(
        solution=solution,
        test_error=test_error,
        nuclear_norm=float(np.sum(singular_values)),
        effective_rank=_effective_rank(singular_values),
        solve_s=solve_s,
        status=str(problem.status),
    )


def _effective_rank(singular_values: np.ndarray) -> float:
    """Roy & Vetterli (2007): ``exp(H(p))``, ``p_i = sigma_i / sum sigma``, ``0 log 0 = 0``."""
    total = float(np.sum(singular_values))
    if total <= 0.0:
        return 0.0
    p = singular_values[singular_values > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def _check_shape(shape) -> tuple[int, int]:
    try:
        m, n = shape
    except (TypeError, ValueError):
        raise ValueError(f"shape: must be a pair (m, n) of positive integers, got {shape!r}") from None
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in (m, n)):
        raise ValueError(f"shape: must be a pair (m, n) of positive integers, got {shape!r}")
    return int(m), int(n)


def _check_index_array(name: str, index, size: int) -> np.ndarray:
    index = np.asarray(index)
    if index.ndim != 1 or index.shape[0] < 1:
        raise ValueError(f"{name}: must be a non-empty 1-D integer array, got shape {index.shape}")
    if index.dtype.kind not in "iu":
        raise ValueError(f"{name}: must have an integer dtype, got {index.dtype}")
    if np.any(index < 0) or np.any(index >= size):
        raise ValueError(f"{name}: entries must lie in [0, {size}), got range [{index.min()}, {index.max()}]")
    return index.astype(np.int64)


def _check_vector(name: str, vector, length: int, length_of: str) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    if vector.shape != (length,):
        raise ValueError(f"{name}: shape {vector.shape} must be ({length},) to match {length_of}")
    if not np.all(np.isfinite(vector)):
        raise ValueError(f"{name}: entries must be finite")
    return vector


def _check_target(target, shape: tuple[int, int]):
    if target is None:
        return None
    target = np.asarray(target, dtype=np.float64)
    if target.shape != shape:
        raise ValueError(f"target: shape {target.shape} must equal shape {shape}")
    if not np.all(np.isfinite(target)):
        raise ValueError("target: entries must be finite")
    if not np.any(target):
        raise ValueError("target: must be nonzero (test_error divides by ||target||_F^2)")
    return target


def _check_solver_options(tolerance, max_iters, eps) -> None:
    if not (isinstance(tolerance, (int, float, np.floating, np.integer)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance: must be a finite number >= 0, got {tolerance!r}")
    if not (isinstance(max_iters, (int, np.integer)) and not isinstance(max_iters, bool) and max_iters >= 1):
        raise ValueError(f"max_iters: must be an integer >= 1, got {max_iters!r}")
    if not (isinstance(eps, (int, float, np.floating, np.integer)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps: must be a finite number > 0, got {eps!r}")
