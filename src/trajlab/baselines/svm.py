"""Hard-margin SVM without bias: the direction gradient descent converges to on separable data.

Soudry, Hoffer, Nacson, Gunasekar, Srebro, "The implicit bias of gradient descent on separable
data" (JMLR 2018): for a linear predictor trained on linearly separable data with the logistic (or
any exponentially tailed) loss, w(t) / ||w(t)|| -> w_svm / ||w_svm||, where

    w_svm = argmin_w ||w||^2   subject to   y_i <w, x_i> >= 1 for every sample i   (no bias),

and the angle to it decays only like 1 / log t. :func:`hard_margin_svm` solves this quadratic
program with cvxpy in float64 (CLARABEL, an interior-point solver, when installed, else SCS), then
polishes it on its support set (below). :func:`angle_between` and :func:`normalized_margin` are
written with ``jax.numpy`` so that they also run inside the engine's jitted, vmapped loop along a
trajectory; they accept numpy arrays too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

__all__ = ["MaxMarginResult", "angle_between", "hard_margin_svm", "normalized_margin"]


@dataclass(frozen=True)
class MaxMarginResult:
    """Outcome of one hard-margin SVM solve.

    Attributes:
      weights: w_svm, float64 of shape (d,).
      direction: w_svm / ||w_svm||.
      margin: 1 / ||w_svm|| = min_i y_i <direction, x_i> (the geometric, normalized margin).
      support: indices i of the support vectors, y_i <w_svm, x_i> <= 1 + 1e-6.
      solve_s: wall-clock seconds of cvxpy (canonicalization plus solver) and the polish.
      status: cvxpy problem status, with " (polished)" when the support-set polish was taken.
    """

    weights: np.ndarray
    direction: np.ndarray
    margin: float
    support: np.ndarray
    solve_s: float
    status: str


def _default_solver() -> str:
    import cvxpy as cp

    return "CLARABEL" if "CLARABEL" in cp.installed_solvers() else "SCS"


def hard_margin_svm(inputs, labels, *, solver: str | None = None) -> MaxMarginResult:
    """w_svm = argmin ||w|| subject to y_i <w, x_i> >= 1 (no bias; Soudry et al. 2018).

    Solved as min 1/2 ||w||^2 with cvxpy (``solver`` default CLARABEL when installed, else SCS with
    eps 1e-9). Polish: with S the indices of constraints active to 1e-6, the minimum-norm solution
    of y_i <w, x_i> = 1 (i in S) (``numpy.linalg.lstsq``) is taken instead when it is feasible for
    every constraint to 1e-10 and not longer than the solver's w: it is then the exact optimum
    (w_svm is the min-norm point of its active constraints), to machine precision.

    Args:
      inputs: (S, d) array of samples x_i.
      labels: (S,) array with entries -1 or +1.

    Raises:
      ValueError: on malformed inputs.
      RuntimeError: when the solver finds no solution (e.g. the data are not linearly separable
        through the origin).
    """
    x = np.asarray(inputs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] < 1:
        raise ValueError(f"inputs must be (S, d) and labels (S,), got {x.shape} and {y.shape}")
    if not np.all(np.isin(y, (-1.0, 1.0))):
        raise ValueError("labels must be -1 or +1")
    if not np.all(np.isfinite(x)):
        raise ValueError("inputs must be finite")
    solver = _default_solver() if solver is None else solver
    signed = y[:, None] * x  # row i: y_i x_i

    import cvxpy as cp  # here: importing cvxpy costs about a second, paid by the sweeps that solve

    start = time.perf_counter()
    w = cp.Variable(x.shape[1])
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(w)), [signed @ w >= 1])
    options = {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 100_000} if solver == "SCS" else {}
    problem.solve(solver=solver, **options)
    if w.value is None or problem.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"hard-margin SVM: no solution (cvxpy status {problem.status!r}); are the data "
                           "linearly separable through the origin?")
    weights = np.array(w.value, dtype=np.float64)
    status = str(problem.status)

    active = np.flatnonzero(signed @ weights <= 1 + 1e-6)
    if active.size:
        polished = np.linalg.lstsq(signed[active], np.ones(active.size), rcond=None)[0]
        if np.all(signed @ polished >= 1 - 1e-10) and np.linalg.norm(polished) <= np.linalg.norm(weights) * (1 + 1e-9):
            weights, status = polished, status + " (polished)"
    solve_s = time.perf_counter() - start

    norm = float(np.linalg.norm(weights))
    return MaxMarginResult(
        weights=weights,
        direction=weights / norm,
        margin=1.0 / norm,
        support=np.flatnonzero(signed @ weights <= 1 + 1e-6),
        solve_s=solve_s,
        status=status,
    )


def angle_between(u, v):
    """Angle in [0, pi] between nonzero vectors u and v (radians), flattened.

    2 atan2(||u/|u| - v/|v|||, ||u/|u| + v/|v|||) (Kahan), accurate also for tiny angles, where
    arccos of the cosine loses half the digits (the angle to w_svm decays like 1 / log t).
    """
    a, b = jnp.ravel(jnp.asarray(u)), jnp.ravel(jnp.asarray(v))
    a, b = a / jnp.linalg.norm(a), b / jnp.linalg.norm(b)
    return 2.0 * jnp.arctan2(jnp.linalg.norm(a - b), jnp.linalg.norm(a + b))


def normalized_margin(w, inputs, labels):
    """min_i y_i <w, x_i> / ||w|| for a linear predictor w (negative when some sample is misclassified)."""
    return jnp.min(labels * (inputs @ w)) / jnp.linalg.norm(w)
