"""The meta-algorithm of Haeffele & Vidal ("Global Optimality in Neural Network Training", CVPR 2017)
for parallel positively homogeneous units, and the convex problem that bounds it from below.

Objective, for R parallel units W = (v_r, u_r) (:class:`trajlab.models.mlp.ParallelUnits`; rows
v_r of ``inner``, rows u_r of ``outer``):

    F(W) = loss(f(W)) + lambda Theta(W),   Theta(W) = sum_r ||u_r|| ||v_r||,

with f(W) = sum_r u_r v_r^T (rank-one units: :func:`meta_algorithm_matrix`) or
f(W)(x) = sum_r u_r max(<v_r, x>, 0) (one-hidden-layer ReLU net: :func:`meta_algorithm_relu`);
both f and Theta are positively homogeneous of degree 2.

Conventions:
- matrix completion: loss(X) = 1/2 sum_{(i,j) observed} (X_ij - y_ij)^2 (half the *sum*, Haeffele &
  Vidal's 1/2 ||A(X) - y||^2; the engine's completion loss is the mean instead);
- ReLU net: loss = 1/(2 S) sum_i (f(x_i) - y_i)^2 over the S samples (half the *mean*).

Meta-algorithm (their Section 4): (1) local descent on F from the current units to a stationary
point; (2) if some unit is entirely zero, the point is a global minimizer (their Theorem 2; the
check is :func:`trajlab.models.mlp.zero_units`); (3) otherwise add a unit and go to (1). The unit to
add comes from the polar problem max_{||u|| = ||v|| = 1} <-grad loss, f(u, v)>: if its value exceeds
lambda, the unit t (u, v) with small t lowers F; if not, a zero unit is added, which is then a
local minimum with a zero unit. A stationary point with a zero unit is a local minimum only when
the polar value is <= lambda (along the polar unit F changes by -t^2 (polar - lambda) + O(t^4));
otherwise it is a saddle that local descent cannot leave (both factors of a zero unit have zero
gradient), so the zero unit is replaced by the polar unit and the search goes on. Step (2) is
therefore checked as: converged, some unit exactly zero, polar <= lambda (1 + tolerance). For rank-one units the polar problem is the top singular pair of
-grad loss (:func:`trajlab.models.mlp.matrix_polar`), exact; for ReLU units it is non-convex and is
maximized here by random directions refined by projected gradient ascent (a lower bound on the
polar value, so the ReLU certificate means "no improving unit was found").

Local descent is proximal alternating linearized minimization (PALM; Bolte, Sabach, Teboulle 2014)
over the two blocks: a gradient step on ``outer`` (step 1 / Lipschitz constant of that block) then
the proximal map of lambda sum_r ||v_r|| ||u_r|| in u_r, which is group soft-thresholding
u_r <- max(0, 1 - step lambda ||v_r|| / ||z_r||) z_r, and the same for ``inner``. The
thresholding makes useless units *exactly* zero, which the certificate needs. After each sweep the
units are rebalanced to ||u_r|| = ||v_r|| (f and Theta unchanged), which keeps the two blocks'
step sizes comparable.

Convex bound (matrix case): min_X 1/2 ||P_Omega(X) - y||^2 + lambda ||X||_* is convex and at most
F(W) for every factorization of every size, since Theta(W) >= ||sum_r u_r v_r^T||_*; with enough
units the two minima coincide. :func:`nuclear_norm_regularized` solves it with cvxpy (SCS), and
:func:`completion_dual_bound` evaluates the Fenchel dual at any residual: a certified lower bound
that needs no solver.

Arithmetic is float64 numpy; the helpers of :mod:`trajlab.models.mlp` run under
``jax.enable_x64``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import jax
import numpy as np

from trajlab.models.mlp import ParallelUnits, add_unit, matrix_polar, parallel_regularizer, zero_units

__all__ = [
    "MetaResult",
    "completion_dual_bound",
    "meta_algorithm_matrix",
    "meta_algorithm_relu",
    "nuclear_norm_regularized",
    "relu_polar",
]


@dataclass(frozen=True)
class MetaResult:
    """Outcome of the meta-algorithm.

    Attributes:
      params: the final units (numpy float64 :class:`ParallelUnits`).
      objective / loss / regularizer: F = loss + lambda Theta and its two parts at the end.
      units: R at the end; zero_units: how many of them are entirely zero (norms <= ``zero_tol``).
      polar: the polar value max <-grad loss, f(u, v)> over unit-norm (u, v) at the end (exact
        for rank-one units, a lower bound from a search for ReLU units); polar_ratio = polar / lambda.
      stationarity: the largest change of a parameter in the last local-descent sweep, relative to
        the largest parameter.
      converged: the last local descent stopped on its own test (a sweep moved no parameter by more
        than ``tol`` relative, or F fell by at most ``tol`` |F| over 200 sweeps), not at ``max_sweeps``.
      certificate: some unit is zero, the last local descent converged and polar <= lambda (1 +
        ``polar_tol``).
      outer_iterations / inner_iterations: units added plus one / local-descent sweeps in all.
      history: one dict per outer iteration (units, objective, zero_units, polar_ratio, sweeps).
      solve_s: wall-clock seconds.
    """

    params: ParallelUnits
    objective: float
    loss: float
    regularizer: float
    units: int
    zero_units: int
    polar: float
    polar_ratio: float
    stationarity: float
    converged: bool
    certificate: bool
    outer_iterations: int
    inner_iterations: int
    history: list = field(default_factory=list)
    solve_s: float = 0.0


# --- shared pieces ---------------------------------------------------------------------------


def _to_numpy(params: ParallelUnits) -> ParallelUnits:
    return ParallelUnits(np.asarray(params.inner, np.float64), np.asarray(params.outer, np.float64))


def _regularizer(params: ParallelUnits) -> float:
    with jax.enable_x64(True):
        return float(parallel_regularizer(ParallelUnits(np.asarray(params.inner), np.asarray(params.outer))))


def _zero_count(params: ParallelUnits, tol: float) -> int:
    with jax.enable_x64(True):
        return int(np.sum(np.asarray(zero_units(ParallelUnits(np.asarray(params.inner), np.asarray(params.outer)), tol))))


def _append(params: ParallelUnits, inner=None, outer=None) -> ParallelUnits:
    with jax.enable_x64(True):
        return _to_numpy(add_unit(params, inner, outer))


def _place_unit(params: ParallelUnits, zero_tol: float, inner, outer) -> ParallelUnits:
    """The unit (inner, outer) in place of the first zero unit, or appended when none is zero."""
    with jax.enable_x64(True):
        zero = np.asarray(zero_units(ParallelUnits(np.asarray(params.inner), np.asarray(params.outer)), zero_tol))
    if not zero.any():
        return _append(params, inner, outer)
    index = int(np.argmax(zero))
    new_inner, new_outer = params.inner.copy(), params.outer.copy()
    new_inner[index], new_outer[index] = inner, outer
    return ParallelUnits(new_inner, new_outer)


def _group_shrink(z: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Rows z_r scaled by max(0, 1 - threshold_r / ||z_r||): the prox of sum_r threshold_r ||z_r||."""
    norms = np.linalg.norm(z, axis=1)
    factor = np.where(norms > thresholds, 1.0 - thresholds / np.where(norms > 0, norms, 1.0), 0.0)
    return z * factor[:, None]


def _balance(params: ParallelUnits) -> ParallelUnits:
    """Rescale each unit to ||u_r|| = ||v_r|| (f and Theta unchanged); a unit with one zero factor is zeroed."""
    inner_norm = np.linalg.norm(params.inner, axis=1)
    outer_norm = np.linalg.norm(params.outer, axis=1)
    alive = (inner_norm > 0) & (outer_norm > 0)
    scale = np.sqrt(np.where(alive, outer_norm, 1.0) / np.where(alive, inner_norm, 1.0))
    inner = np.where(alive[:, None], params.inner * scale[:, None], 0.0)
    outer = np.where(alive[:, None], params.outer / scale[:, None], 0.0)
    return ParallelUnits(inner, outer)


#: Local descent also stops when F fell by at most tol |F| over this many sweeps (flat directions:
#: units that share a ReLU pattern can trade weight at constant F, so parameters converge slowly).
_WINDOW = 200


def _converged(change: float, objectives: list, tol: float, window: int) -> bool:
    """The last sweep moved no parameter by more than tol (relative), or F stalled over ``window`` sweeps."""
    if change <= tol:
        return True
    if len(objectives) > window:
        return objectives[-window - 1] - objectives[-1] <= tol * max(1.0, abs(objectives[-1]))
    return False


def _sweep_change(old: ParallelUnits, new: ParallelUnits) -> float:
    largest = max(np.abs(new.inner).max(initial=0.0), np.abs(new.outer).max(initial=0.0), 1e-300)
    change = max(np.abs(new.inner - old.inner).max(initial=0.0), np.abs(new.outer - old.outer).max(initial=0.0))
    return float(change / largest)


# --- rank-one units: matrix completion -------------------------------------------------------


def _completion_gradient(x: np.ndarray, rows, cols, values) -> tuple[float, np.ndarray]:
    """(1/2 sum (X_ij - y_ij)^2 over the observed entries, its gradient P_Omega^*(residual))."""
    residual = x[rows, cols] - values
    gradient = np.zeros_like(x)
    np.add.at(gradient, (rows, cols), residual)
    return 0.5 * float(residual @ residual), gradient


def _matrix(params: ParallelUnits) -> np.ndarray:
    return params.outer.T @ params.inner


def _palm_matrix(params, rows, cols, values, lam, tol, max_sweeps, window=_WINDOW):
    """PALM sweeps on 1/2 ||P_Omega(U^T V) - y||^2 + lam sum_r ||u_r|| ||v_r|| until converged (:func:`_converged`)."""
    change = math.inf
    sweeps = 0
    objectives = []
    while sweeps < max_sweeps:
        old = params
        inner, outer = params
        # block u (outer): ell(outer^T inner) has gradient inner G^T, Lipschitz <= ||inner||_2^2 (||P_Omega|| <= 1)
        lipschitz = np.linalg.norm(inner, 2) ** 2
        if lipschitz > 0:
            _, gradient = _completion_gradient(outer.T @ inner, rows, cols, values)
            step = 1.0 / lipschitz
            outer = _group_shrink(outer - step * (inner @ gradient.T), step * lam * np.linalg.norm(inner, axis=1))
        lipschitz = np.linalg.norm(outer, 2) ** 2
        if lipschitz > 0:
            _, gradient = _completion_gradient(outer.T @ inner, rows, cols, values)
            step = 1.0 / lipschitz
            inner = _group_shrink(inner - step * (outer @ gradient), step * lam * np.linalg.norm(outer, axis=1))
        params = _balance(ParallelUnits(inner, outer))
        sweeps += 1
        change = _sweep_change(old, params)
        loss, _ = _completion_gradient(_matrix(params), rows, cols, values)
        objectives.append(loss + lam * float(np.sum(np.linalg.norm(params.inner, axis=1) * np.linalg.norm(params.outer, axis=1))))
        if _converged(change, objectives, tol, window):
            return params, sweeps, change, True
    return params, sweeps, change, False


def meta_algorithm_matrix(
    shape: tuple[int, int],
    rows,
    cols,
    values,
    lam: float,
    *,
    units: int = 1,
    scale: float = 1e-2,
    seed: int = 0,
    tol: float = 1e-11,
    max_sweeps: int = 200_000,
    max_outer: int = 50,
    zero_tol: float = 0.0,
    polar_tol: float = 1e-6,
) -> MetaResult:
    """Haeffele & Vidal's meta-algorithm for min 1/2 ||P_Omega(sum_r u_r v_r^T) - y||^2 + lam sum_r ||u_r|| ||v_r||.

    Starts from ``units`` random units (entries N(0, scale^2), ``seed``); each outer iteration runs
    PALM until converged (at most ``max_sweeps`` sweeps), then computes the polar value
    sigma_max(-grad loss) (:func:`trajlab.models.mlp.matrix_polar`). It stops when some unit is zero
    and the polar value is <= lam (1 + ``polar_tol``): a local minimum with a zero unit. Otherwise it
    adds a zero unit (polar <= lam: that certifies the point at the next check) or the polar unit
    t (u, v) with the t that minimizes F along it, in place of a zero unit if there is one (a zero
    unit with polar > lam sits at a saddle, which PALM cannot leave: both its factors have zero
    gradient).
    """
    start = time.perf_counter()
    m, n = shape
    rows, cols = np.asarray(rows), np.asarray(cols)
    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    params = ParallelUnits(scale * rng.standard_normal((units, n)), scale * rng.standard_normal((units, m)))
    history, total_sweeps = [], 0
    for outer_iteration in range(1, max_outer + 1):
        params, sweeps, change, converged = _palm_matrix(params, rows, cols, values, lam, tol, max_sweeps)
        total_sweeps += sweeps
        loss, gradient = _completion_gradient(_matrix(params), rows, cols, values)
        with jax.enable_x64(True):
            polar, left, right = (np.asarray(a, np.float64) for a in matrix_polar(gradient))
        polar = float(polar)
        zeros = _zero_count(params, zero_tol)
        objective = loss + lam * _regularizer(params)
        history.append(dict(units=int(params.inner.shape[0]), objective=objective, zero_units=zeros,
                            polar_ratio=polar / lam, sweeps=sweeps, stationarity=change, converged=converged))
        certified = polar <= lam * (1 + polar_tol)
        if (zeros > 0 and certified) or outer_iteration == max_outer:
            break
        if certified:
            params = _append(params)  # a zero unit: the point is a local minimum with a zero unit
            continue
        # Escape along the polar pair (replacing a zero unit if there is one: a zero unit with
        # polar > lam is a saddle, not a local minimum). F(X + t^2 u v^T) = F(X) - t^2 (polar - lam)
        # + t^4 |P_Omega(u v^T)|^2 / 2, so the best t^2 = (polar - lam) / |P_Omega(u v^T)|^2.
        curvature = float(np.sum((left[rows] * right[cols]) ** 2))
        t = math.sqrt((polar - lam) / curvature) if curvature > 0 else 1.0
        params = _place_unit(params, zero_tol, t * right, t * left)
    loss, _ = _completion_gradient(_matrix(params), rows, cols, values)  # params as at the last check
    return _meta_result(params, loss, lam, polar, history, total_sweeps, zero_tol, polar_tol, start)


def completion_dual_bound(shape, rows, cols, values, lam: float, x) -> float:
    """A certified lower bound on min_X 1/2 ||P_Omega(X) - y||^2 + lam ||X||_*, from any X.

    Fenchel dual: max_z -<z, y> - ||z||^2 / 2 subject to ||P_Omega^*(z)||_2 <= lam, attained at
    z = P_Omega(X*) - y. Here z is the residual of ``x`` scaled into the feasible set.
    """
    rows, cols = np.asarray(rows), np.asarray(cols)
    values = np.asarray(values, np.float64)
    x = np.asarray(x, np.float64)
    residual = x[rows, cols] - values
    gradient = np.zeros(shape)
    np.add.at(gradient, (rows, cols), residual)
    spectral = float(np.linalg.norm(gradient, 2))
    z = residual * (min(1.0, lam / spectral) if spectral > 0 else 1.0)
    return float(-(z @ values) - 0.5 * (z @ z))


def nuclear_norm_regularized(shape, rows, cols, values, lam: float, *, eps: float = 1e-9,
                             max_iters: int = 200_000) -> dict:
    """min_X 1/2 sum_{(i,j) observed} (X_ij - y_ij)^2 + lam ||X||_* with cvxpy and SCS (``eps`` for
    eps_abs and eps_rel). Returns objective (re-evaluated in float64 at the solution), the solver's
    own value, nuclear_norm, rank (singular values > 1e-6 sigma_max), solve_s and status."""
    import cvxpy as cp

    rows, cols = np.asarray(rows), np.asarray(cols)
    values = np.asarray(values, np.float64)
    m, n = shape
    x = cp.Variable((m, n))
    flat = rows * n + cols
    observed = cp.vec(x, order="C")[flat]
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(observed - values) + lam * cp.normNuc(x)))
    start = time.perf_counter()
    problem.solve(solver="SCS", eps_abs=eps, eps_rel=eps, max_iters=max_iters)
    solve_s = time.perf_counter() - start
    if x.value is None:
        raise RuntimeError(f"nuclear_norm_regularized: no solution (cvxpy status {problem.status!r})")
    solution = np.asarray(x.value, np.float64)
    singular = np.linalg.svd(solution, compute_uv=False)
    residual = solution[rows, cols] - values
    return dict(
        objective=float(0.5 * residual @ residual + lam * singular.sum()),
        solver_objective=float(problem.value),
        nuclear_norm=float(singular.sum()),
        rank=int(np.sum(singular > 1e-6 * singular[0])) if singular[0] > 0 else 0,
        solution=solution,
        solve_s=solve_s,
        status=str(problem.status),
    )


# --- ReLU units: a one-hidden-layer network --------------------------------------------------


def _relu_forward(params: ParallelUnits, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hidden activations relu(X V^T), (S, R); outputs (S, d_out))."""
    hidden = np.maximum(x @ params.inner.T, 0.0)
    return hidden, hidden @ params.outer


def _relu_loss(params, x, y) -> float:
    _, out = _relu_forward(params, x)
    residual = out - y
    return 0.5 * float(np.sum(residual**2)) / x.shape[0]


def _palm_relu(params, x, y, lam, tol, max_sweeps, window=_WINDOW):
    """PALM on 1/(2S) ||f(X) - Y||^2 + lam sum_r ||u_r|| ||v_r|| for f = relu(X V^T) U; backtracking on the V block."""
    samples = x.shape[0]
    change = math.inf
    sweeps = 0
    objectives = []
    inner_step = 1.0
    while sweeps < max_sweeps:
        old = params
        inner, outer = params
        # block u (outer): the loss is quadratic in U, Lipschitz ||H||_2^2 / S with H = relu(X V^T)
        hidden = np.maximum(x @ inner.T, 0.0)
        lipschitz = np.linalg.norm(hidden, 2) ** 2 / samples
        if lipschitz > 0:
            residual = hidden @ outer - y
            step = 1.0 / lipschitz
            outer = _group_shrink(outer - step * (hidden.T @ residual) / samples,
                                  step * lam * np.linalg.norm(inner, axis=1))
        # block v (inner): not quadratic (the ReLU pattern moves), so backtrack on the usual
        # sufficient-decrease test of proximal gradient.
        current = ParallelUnits(inner, outer)
        loss = _relu_loss(current, x, y)
        pre = x @ inner.T
        residual = np.maximum(pre, 0.0) @ outer - y
        gradient = ((residual @ outer.T) * (pre > 0)).T @ x / samples  # (R, d_in)
        thresholds = lam * np.linalg.norm(outer, axis=1)
        inner_step = min(inner_step * 2.0, 1e6)
        while True:
            candidate = _group_shrink(inner - inner_step * gradient, inner_step * thresholds)
            difference = candidate - inner
            bound = loss + np.sum(gradient * difference) + np.sum(difference**2) / (2 * inner_step)
            if _relu_loss(ParallelUnits(candidate, outer), x, y) <= bound + 1e-15 * max(1.0, loss) or inner_step < 1e-12:
                break
            inner_step /= 2.0
        params = _balance(ParallelUnits(candidate, outer))
        sweeps += 1
        change = _sweep_change(old, params)
        objectives.append(_relu_loss(params, x, y) + lam * float(
            np.sum(np.linalg.norm(params.inner, axis=1) * np.linalg.norm(params.outer, axis=1))))
        if _converged(change, objectives, tol, window):
            return params, sweeps, change, True
    return params, sweeps, change, False


def relu_polar(x, residual, *, directions: int = 2000, ascent_steps: int = 200, seed: int = 0):
    """Largest value of <-grad loss, u relu(X v)> over ||u|| = ||v|| = 1 found by a search (a lower bound).

    grad loss w.r.t. the outputs is residual / S; for a fixed v the best u is the unit vector along
    -relu(X v)^T residual / S, so the value is ||relu(X v)^T residual|| / S, maximized over the unit
    sphere by ``directions`` random starts, the best 20 refined by projected gradient ascent.
    Returns (value, u, v).
    """
    samples = x.shape[0]
    rng = np.random.default_rng(seed)
    starts = rng.standard_normal((directions, x.shape[1]))
    starts /= np.linalg.norm(starts, axis=1, keepdims=True)

    def value(v):
        return np.linalg.norm(np.maximum(x @ v, 0.0) @ residual, axis=-1) / samples

    scores = np.array([value(v) for v in starts])
    best_value, best_v = -math.inf, starts[0]
    for v in starts[np.argsort(scores)[-20:]]:
        step = 0.5
        current = value(v)
        for _ in range(ascent_steps):
            pre = x @ v
            direction = np.maximum(pre, 0.0) @ residual  # (d_out,)
            norm = np.linalg.norm(direction)
            if norm == 0:
                break
            gradient = ((residual @ (direction / norm)) * (pre > 0)) @ x / samples
            gradient -= (gradient @ v) * v  # tangent to the sphere
            if np.linalg.norm(gradient) < 1e-14:
                break
            trial = v + step * gradient
            trial /= np.linalg.norm(trial)
            trial_value = value(trial)
            if trial_value > current:
                v, current = trial, trial_value
                step *= 1.5
            else:
                step /= 2.0
                if step < 1e-10:
                    break
        if current > best_value:
            best_value, best_v = current, v
    direction = np.maximum(x @ best_v, 0.0) @ residual
    norm = np.linalg.norm(direction)
    u = -direction / norm if norm > 0 else np.zeros(residual.shape[1])
    return float(best_value), u, best_v


def meta_algorithm_relu(
    inputs,
    outputs,
    lam: float,
    *,
    units: int = 1,
    scale: float = 1e-1,
    seed: int = 0,
    tol: float = 1e-10,
    max_sweeps: int = 100_000,
    max_outer: int = 30,
    zero_tol: float = 0.0,
    polar_tol: float = 1e-6,
    directions: int = 2000,
) -> MetaResult:
    """Haeffele & Vidal's meta-algorithm for a one-hidden-layer ReLU net f(x) = sum_r u_r relu(<v_r, x>)
    with loss 1/(2S) sum_i ||f(x_i) - y_i||^2 + lam sum_r ||u_r|| ||v_r||.

    As :func:`meta_algorithm_matrix`, with PALM (backtracking on the inner block) and the polar
    problem searched by :func:`relu_polar`; a new unit t (u, v) takes the place of a zero unit (or is
    appended) with the t that minimizes F along it (a quadratic in t^2, exact for the squared loss).
    ``polar_tol`` should allow for the search: the default 1e-6 is for exact polar values.
    """
    start = time.perf_counter()
    x = np.asarray(inputs, np.float64)
    y = np.asarray(outputs, np.float64)
    if y.ndim == 1:
        y = y[:, None]
    rng = np.random.default_rng(seed)
    params = ParallelUnits(scale * rng.standard_normal((units, x.shape[1])), scale * rng.standard_normal((units, y.shape[1])))
    history, total_sweeps = [], 0
    samples = x.shape[0]
    for outer_iteration in range(1, max_outer + 1):
        params, sweeps, change, converged = _palm_relu(params, x, y, lam, tol, max_sweeps)
        total_sweeps += sweeps
        _, out = _relu_forward(params, x)
        residual = out - y
        polar, u, v = relu_polar(x, residual, directions=directions, seed=seed + outer_iteration)
        zeros = _zero_count(params, zero_tol)
        objective = _relu_loss(params, x, y) + lam * _regularizer(params)
        history.append(dict(units=int(params.inner.shape[0]), objective=objective, zero_units=zeros,
                            polar_ratio=polar / lam, sweeps=sweeps, stationarity=change, converged=converged))
        certified = polar <= lam * (1 + polar_tol)
        if (zeros > 0 and certified) or outer_iteration == max_outer:
            break
        if certified:
            params = _append(params)
            continue
        # F along t (u, v): F - t^2 (polar - lam) + t^4 ||relu(X v) u^T||^2 / (2 S)
        curvature = float(np.sum(np.maximum(x @ v, 0.0) ** 2) * np.sum(u**2)) / samples
        t = math.sqrt((polar - lam) / curvature) if curvature > 0 else 1.0
        params = _place_unit(params, zero_tol, t * v, t * u)
    loss = _relu_loss(params, x, y)
    return _meta_result(params, loss, lam, polar, history, total_sweeps, zero_tol, polar_tol, start)


def _meta_result(params, loss, lam, polar, history, total_sweeps, zero_tol, polar_tol, start) -> "MetaResult":
    """The MetaResult of a finished meta-algorithm: objective, certificate and bookkeeping.

    Certificate (Haeffele & Vidal): a zero unit at a converged point whose polar value is at most
    lam (to ``polar_tol``), i.e. no unit could be added that lowers the objective.
    """
    regularizer = _regularizer(params)
    zeros = _zero_count(params, zero_tol)
    change, converged = history[-1]["stationarity"], history[-1]["converged"]
    return MetaResult(
        params=params,
        objective=loss + lam * regularizer,
        loss=loss,
        regularizer=regularizer,
        units=int(params.inner.shape[0]),
        zero_units=zeros,
        polar=polar,
        polar_ratio=polar / lam,
        stationarity=change,
        converged=bool(converged),
        certificate=bool(zeros > 0 and converged and polar <= lam * (1 + polar_tol)),
        outer_iterations=len(history),
        inner_iterations=total_sweeps,
        history=history,
        solve_s=time.perf_counter() - start,
    )
