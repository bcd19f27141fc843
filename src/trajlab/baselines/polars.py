"""Structured matrix factorization with any factor norms (Haeffele & Vidal): proximal maps, polars,
the meta-algorithm and the convex problems that bound it.

Objective, for X = U V^T with r columns (u_i, v_i) and a norm pair (a, b):

    F(U, V) = l(X) + lambda sum_i theta(u_i, v_i),   theta(u, v) = ||u||_a ||v||_b,

l(X) = 1/2 sum_{(j,k) observed} (X_jk - Y_jk)^2 (half the *sum* over the observed entries, the
convention of :mod:`trajlab.baselines.meta_algorithm`). It is minimized here in its sum-of-squares
form (Haeffele & Vidal, "Structured Low-Rank Matrix Factorization: Global Optimality, Algorithms,
and Applications", TPAMI 2019 / arXiv:1708.07850; Vidal's CVPR 2017 tutorial)

    F2(U, V) = l(U V^T) + lambda/2 sum_i (||u_i||_a^2 + ||v_i||_b^2),

which is separable in U and V, so one forward-backward (proximal gradient) step updates both blocks
at once. min over the rescalings (t u, v / t) of (||t u||^2 + ||v / t||^2) / 2 is ||u|| ||v||
(AM-GM), so F2 >= F with equality at balanced columns, the two have the same minima, and every
stationary point of F2 is balanced (||u_i||_a = ||v_i||_b).

Norm pairs (``NORM_PAIRS``): ``"2,2"``, ``"1,1"``, ``"1,2"`` (u in l1, v in l2) and ``"2,2+"``
(l2 on both with non-negative factors: the indicator of U, V >= 0 is part of the regularizer).

Proximal maps of (c/2)||x||^2 (column by column, :func:`prox_squared_norm`):
- l2: x / (1 + c);  non-negative l2: max(x, 0) / (1 + c);
- l1: soft-thresholding at tau = c ||p||_1, where p is the result: with a = |x| sorted decreasing
  and s_k = (a_1 + ... + a_k) / (1 + c k), tau = c s_K for the largest K with a_K > c s_K
  (the optimality condition p = sign(x) max(|x| - c ||p||_1, 0) summed over the support).

Polar (the dual gauge) Omega°(Z) = sup {u^T Z v : ||u||_a <= 1, ||v||_b <= 1} (:func:`polar`):
- (2, 2): sigma_max(Z), maximizer the top singular pair;
- (1, 1): max_jk |Z_jk|, maximizer (sign(Z_jk) e_j, e_k);
- (1, 2): the largest l2 norm of a *row* of Z (u in R^m, the l1 side, indexes rows; the best u is
  a vertex e_j of the l1 ball and then v = Z_j / ||Z_j||);
- (2, 2) non-negative: sup over u, v >= 0 is NP-hard in general (it decides copositivity), so it is
  *searched*: alternating maximization u <- max(Z v, 0)/||.||, v <- max(Z^T u, 0)/||.|| (each step the
  exact block maximizer, so the value never decreases) from every vertex e_j plus random
  non-negative starts. That gives a lower bound; ||max(Z, 0)||_2 (spectral norm of the positive
  part) is an upper bound (u^T Z v <= u^T Z_+ v for u, v >= 0), reported beside it
  (:func:`polar_upper`).

Certificate (Haeffele & Vidal, TPAMI 2019, Theorem 2 / Corollary 1): at a stationary point of F2,
stationarity along each column's own scaling gives <Z, u_i v_i^T> = theta(u_i, v_i) for
Z = -grad l(X) / lambda; if moreover Omega°(Z) <= 1 then Omega(X) <= sum_i theta = <Z, X> <= Omega(X),
so Z is a subgradient of Omega at X and X = U V^T solves the convex problem min_X l(X) + lambda
Omega(X), whose value the factorization then attains. Omega is the gauge of the atoms u v^T:
the nuclear norm for (2, 2), the entrywise l1 norm for (1, 1), the sum of the rows' l2 norms for
(1, 2) (:func:`convex_structured` solves these with cvxpy / SCS; the non-negative case has no
tractable convex form and is not compared).

Meta-algorithm (their Algorithm 1, :func:`structured_meta_algorithm`): proximal gradient on F2 to a
stationary point; if Omega°(Z) <= 1 (+ tolerance) stop, certified; otherwise append the polar's
maximizer t (u, v) as a new column, with t^2 = lambda (Omega°(Z) - 1) / ||P(u v^T)||_F^2 (the exact
minimizer of F2 along it: F2 changes by -t^2 lambda (Omega° - 1) + t^4 ||P(u v^T)||^2 / 2), and
continue. Zero columns stay exactly zero under the proximal gradient step (their gradient is
zero), so the columns live in a fixed-width array and a new one fills a zero slot.
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "NORM_PAIRS",
    "convex_structured",
    "nonnegative_polar_search",
    "parse_norms",
    "polar",
    "polar_pair",
    "polar_upper",
    "prox_squared_norm",
    "structured_meta_algorithm",
    "theta_product",
    "theta_squares",
]

NORM_PAIRS = ("2,2", "1,1", "1,2", "2,2+")
#: Defaults of the non-negative polar search: random non-negative starts beside the m vertices, and
#: alternating-maximization iterations per start.
NONNEGATIVE_RESTARTS = 16
NONNEGATIVE_ITERATIONS = 200


def parse_norms(norms: str) -> tuple[str, str, bool]:
    """``"1,2"`` -> ("1", "2", False); ``"2,2+"`` -> ("2", "2", True) (non-negative factors)."""
    if norms not in NORM_PAIRS:
        raise ValueError(f"norms must be one of {NORM_PAIRS}, got {norms!r}")
    nonnegative = norms.endswith("+")
    a, b = norms.rstrip("+").split(",")
    return a, b, nonnegative


# --- proximal maps ------------------------------------------------------------------------------


def _prox_l1_squared(x, c):
    """prox of (c/2)||x||_1^2 of each column of x (axis 0)."""
    a = -jnp.sort(-jnp.abs(x), axis=0)
    k = jnp.arange(1, x.shape[0] + 1, dtype=x.dtype)[:, None]
    s = jnp.cumsum(a, axis=0) / (1.0 + c * k)
    valid = a > c * s  # a prefix of the sorted entries
    count = jnp.sum(valid, axis=0)
    tau = c * jnp.take_along_axis(s, jnp.maximum(count - 1, 0)[None, :], axis=0)[0]
    tau = jnp.where(count > 0, tau, 0.0)
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - tau[None, :], 0.0)


def prox_squared_norm(x, c, norm: str, nonnegative: bool = False):
    """argmin_p 1/2 ||p - x_i||^2 + (c/2) ||p||_norm^2 (+ indicator p >= 0) for each column x_i of x.

    ``norm``: "2" (x / (1 + c)) or "1" (soft-thresholding at c ||p||_1, see the module docstring).
    """
    x = jnp.asarray(x)
    if x.ndim == 1:
        return prox_squared_norm(x[:, None], c, norm, nonnegative)[:, 0]
    if nonnegative:
        if norm != "2":
            raise ValueError("non-negative factors are implemented for the l2 norm only")
        return jnp.maximum(x, 0.0) / (1.0 + c)
    if norm == "2":
        return x / (1.0 + c)
    if norm == "1":
        return _prox_l1_squared(x, c)
    raise ValueError(f"norm must be '1' or '2', got {norm!r}")


def _column_norms(x, norm: str):
    return jnp.sum(jnp.abs(x), axis=0) if norm == "1" else jnp.sqrt(jnp.sum(x**2, axis=0))


def theta_product(u, v, norms: str):
    """sum_i ||u_i||_a ||v_i||_b over the columns of U (m x r) and V (n x r)."""
    a, b, _ = parse_norms(norms)
    return jnp.sum(_column_norms(u, a) * _column_norms(v, b))


def theta_squares(u, v, norms: str):
    """sum_i (||u_i||_a^2 + ||v_i||_b^2) / 2: the sum-of-squares form (>= theta_product)."""
    a, b, _ = parse_norms(norms)
    return 0.5 * jnp.sum(_column_norms(u, a) ** 2 + _column_norms(v, b) ** 2)


# --- polars -------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("restarts", "iterations", "seed"))
def nonnegative_polar_search(z, *, restarts: int = NONNEGATIVE_RESTARTS, iterations: int = NONNEGATIVE_ITERATIONS,
                             seed: int = 0):
    """A lower bound on sup {u^T Z v : u, v >= 0, ||u||_2, ||v||_2 <= 1} and its maximizer (value, u, v).

    Alternating exact block maximization from the m vertices e_j of the orthant and ``restarts``
    random |N(0, I)| starts (fixed ``seed``), ``iterations`` sweeps each; value >= max(0, max_jk Z_jk).
    """
    z = jnp.asarray(z)
    m = z.shape[0]
    starts = jnp.abs(jax.random.normal(jax.random.PRNGKey(seed), (restarts, m), z.dtype))
    starts = jnp.concatenate([jnp.eye(m, dtype=z.dtype), starts / jnp.linalg.norm(starts, axis=1, keepdims=True)])

    def unit(w):
        norm = jnp.linalg.norm(w)
        return jnp.where(norm > 0, w / jnp.where(norm > 0, norm, 1.0), 0.0)

    def one(u):
        def sweep(_, u):
            v = unit(jnp.maximum(z.T @ u, 0.0))
            return unit(jnp.maximum(z @ v, 0.0))

        u = jax.lax.fori_loop(0, iterations, sweep, u)
        v = unit(jnp.maximum(z.T @ u, 0.0))
        return u @ z @ v, u, v

    values, us, vs = jax.vmap(one)(starts)
    best = jnp.argmax(values)
    return jnp.maximum(values[best], 0.0), us[best], vs[best]


def polar_pair(z, norms: str):
    """(Omega°(Z), u, v) with u^T Z v = Omega°(Z), ||u||_a = ||v||_b = 1 (see the module docstring);
    a searched lower bound for "2,2+"."""
    z = jnp.asarray(z)
    a, b, nonnegative = parse_norms(norms)
    if nonnegative:
        return nonnegative_polar_search(z)
    if (a, b) == ("2", "2"):
        left, singular, right = jnp.linalg.svd(z, full_matrices=False)
        return singular[0], left[:, 0], right[0]
    if (a, b) == ("1", "1"):
        index = jnp.argmax(jnp.abs(z))
        j, k = jnp.unravel_index(index, z.shape)
        value = jnp.abs(z)[j, k]
        u = jnp.zeros(z.shape[0], z.dtype).at[j].set(jnp.where(z[j, k] >= 0, 1.0, -1.0))
        v = jnp.zeros(z.shape[1], z.dtype).at[k].set(1.0)
        return value, u, v
    if (a, b) == ("1", "2"):
        rows = jnp.linalg.norm(z, axis=1)
        j = jnp.argmax(rows)
        value = rows[j]
        u = jnp.zeros(z.shape[0], z.dtype).at[j].set(1.0)
        v = jnp.where(value > 0, z[j] / jnp.where(value > 0, value, 1.0), 0.0)
        return value, u, v
    raise ValueError(f"no polar for norms {norms!r}")


def polar(z, norms: str):
    """Omega°(Z) = sup {u^T Z v : ||u||_a <= 1, ||v||_b <= 1} (exact, except the searched "2,2+")."""
    z = jnp.asarray(z)
    a, b, nonnegative = parse_norms(norms)
    if nonnegative:
        return nonnegative_polar_search(z)[0]
    if (a, b) == ("2", "2"):
        return jnp.linalg.norm(z, 2)
    if (a, b) == ("1", "1"):
        return jnp.max(jnp.abs(z))
    return jnp.max(jnp.linalg.norm(z, axis=1))


def polar_upper(z, norms: str):
    """An upper bound on Omega°(Z): the polar itself where exact; ||max(Z, 0)||_2 for "2,2+"."""
    if parse_norms(norms)[2]:
        return jnp.linalg.norm(jnp.maximum(jnp.asarray(z), 0.0), 2)
    return polar(z, norms)


# --- the meta-algorithm -------------------------------------------------------------------------


def prox_gradient_step(u, v, y, mask, lam, step, norms: str):
    """One forward-backward step on F2 = 1/2 ||mask * (U V^T - Y)||^2 + lam/2 sum (||u_i||_a^2 + ||v_i||_b^2)."""
    a, b, nonnegative = parse_norms(norms)
    residual = mask * (u @ v.T - y)
    new_u = prox_squared_norm(u - step * residual @ v, step * lam, a, nonnegative)
    new_v = prox_squared_norm(v - step * residual.T @ u, step * lam, b, nonnegative)
    return new_u, new_v


@functools.partial(jax.jit, static_argnames=("norms", "max_iterations"))
def _descend(u, v, y, mask, lam, step, tol, norms, max_iterations):
    """Proximal gradient until the gradient mapping ||(U, V) - T(U, V)|| / step falls to
    tol * max(1, ||(U, V)||) or ``max_iterations``."""

    def body(state):
        u, v, k, _ = state
        new_u, new_v = prox_gradient_step(u, v, y, mask, lam, step, norms)
        size = jnp.sqrt(jnp.sum(u**2) + jnp.sum(v**2))
        change = jnp.sqrt(jnp.sum((new_u - u) ** 2) + jnp.sum((new_v - v) ** 2)) / (step * jnp.maximum(1.0, size))
        return new_u, new_v, k + 1, change

    def cond(state):
        return (state[2] < max_iterations) & (state[3] > tol)

    return jax.lax.while_loop(cond, body, (u, v, jnp.asarray(0), jnp.asarray(jnp.inf, u.dtype)))


def structured_objective(u, v, y, mask, lam, norms: str) -> dict:
    """loss = 1/2 ||mask * (U V^T - Y)||^2, the product form F and the sum-of-squares form F2."""
    residual = np.asarray(mask) * (np.asarray(u) @ np.asarray(v).T - np.asarray(y))
    loss = 0.5 * float(np.sum(residual**2))
    return dict(
        loss=loss,
        objective=loss + lam * float(theta_product(u, v, norms)),
        objective_squares=loss + lam * float(theta_squares(u, v, norms)),
    )


def columns_used(u, v, norms: str, relative: float = 1e-6) -> int:
    """Columns whose theta(u_i, v_i) exceeds ``relative`` times the largest."""
    a, b, _ = parse_norms(norms)
    products = np.asarray(_column_norms(jnp.asarray(u), a) * _column_norms(jnp.asarray(v), b))
    return int(np.sum(products > relative * products.max())) if products.max() > 0 else 0


def structured_meta_algorithm(y, mask, lam: float, norms: str, *, max_width: int = 24, step: float = 0.25,
                              tol: float = 1e-10, max_iterations: int = 50_000, polar_tol: float | None = None,
                              scale: float = 1e-2, seed: int = 0) -> dict:
    """Haeffele & Vidal's meta-algorithm on F2 (module docstring), float64, from one random column.

    ``polar_tol``: the certificate is Omega°(Z) <= 1 + polar_tol at a converged descent (default 1e-6
    for the exact polars, 1e-4 for the searched non-negative one). Returns a dict: certificate,
    polar (the final Omega°(Z)), polar_upper, objective (F), objective_squares (F2), loss, columns
    (columns in use), rank, outer_iterations, iterations, history (one dict per outer iteration),
    solve_s, and the factors u, v.
    """
    a, b, nonnegative = parse_norms(norms)
    polar_tol = (1e-4 if nonnegative else 1e-6) if polar_tol is None else polar_tol
    start = time.perf_counter()
    with jax.enable_x64(True):
        y = jnp.asarray(y, jnp.float64)
        mask = jnp.asarray(mask, jnp.float64)
        m, n = y.shape
        rng = np.random.default_rng(seed)
        u = np.zeros((m, max_width))
        v = np.zeros((n, max_width))
        u[:, 0], v[:, 0] = scale * rng.standard_normal(m), scale * rng.standard_normal(n)
        if nonnegative:
            u, v = np.abs(u), np.abs(v)
        u, v = jnp.asarray(u), jnp.asarray(v)
        history, total, certified, converged = [], 0, False, False
        for outer in range(1, max_width + 1):
            u, v, iterations, change = _descend(u, v, y, mask, lam, step, tol, norms, max_iterations)
            total += int(iterations)
            converged = bool(change <= tol)
            z = mask * (y - u @ v.T) / lam
            value, left, right = polar_pair(z, norms)
            value = float(value)
            values = structured_objective(u, v, y, mask, lam, norms)
            used = columns_used(u, v, norms)
            history.append(dict(columns=used, objective=values["objective"], polar=value, iterations=int(iterations),
                                stationarity=float(change), converged=converged))
            certified = converged and value <= 1.0 + polar_tol
            if certified:
                break
            a_norms, b_norms = _column_norms(u, a), _column_norms(v, b)
            products = np.asarray(a_norms * b_norms)
            free = np.flatnonzero(products <= 1e-12 * max(products.max(), 1e-300))
            if value <= 1.0 or free.size == 0:
                break  # not converged (more descent would not add a column), or no slot left
            curvature = float(jnp.sum((mask * jnp.outer(left, right)) ** 2))
            t = math.sqrt(lam * (value - 1.0) / curvature) if curvature > 0 else 1.0
            slot = int(free[0])
            u = u.at[:, slot].set(t * left)
            v = v.at[:, slot].set(t * right)
        z = mask * (y - u @ v.T) / lam
        upper = float(polar_upper(z, norms))
        singular = np.linalg.svd(np.asarray(u @ v.T), compute_uv=False)
        rank = int(np.sum(singular > 1e-6 * singular[0])) if singular[0] > 0 else 0
        values = structured_objective(u, v, y, mask, lam, norms)
        return dict(
            certificate=bool(certified),
            converged=converged,
            polar=value,
            polar_upper=upper,
            columns=columns_used(u, v, norms),
            rank=rank,
            outer_iterations=len(history),
            iterations=total,
            history=history,
            solve_s=time.perf_counter() - start,
            u=np.asarray(u),
            v=np.asarray(v),
            **values,
        )


# --- convex problems ----------------------------------------------------------------------------


def convex_structured(y, mask, lam: float, norms: str, *, eps: float = 1e-9, max_iters: int = 200_000) -> dict:
    """min_X 1/2 ||mask * (X - Y)||^2 + lam Omega(X) with cvxpy and SCS (``eps`` for eps_abs and eps_rel):
    Omega = nuclear norm ("2,2": :func:`trajlab.baselines.meta_algorithm.nuclear_norm_regularized` on the
    observed entries, the mask being 0/1), entrywise l1 ("1,1"), sum of row l2 norms ("1,2").
    Returns objective (re-evaluated in float64 at the solution), solver_objective, omega, rank
    (singular values > 1e-6 sigma_max), solution, solve_s and status."""
    import cvxpy as cp

    a, b, nonnegative = parse_norms(norms)
    if nonnegative:
        raise ValueError("the non-negative (2, 2) gauge has no tractable convex form")
    y = np.asarray(y, np.float64)
    mask = np.asarray(mask, np.float64)
    if (a, b) == ("2", "2"):  # the nuclear-norm program of the global-optimality preset
        from trajlab.baselines.meta_algorithm import nuclear_norm_regularized

        rows, cols = np.nonzero(mask)
        result = nuclear_norm_regularized(y.shape, rows, cols, y[rows, cols], lam, eps=eps, max_iters=max_iters)
        return dict(result, omega=result["nuclear_norm"])
    x = cp.Variable(y.shape)
    if (a, b) == ("1", "1"):
        omega, omega_np = cp.sum(cp.abs(x)), lambda s: float(np.abs(s).sum())
    else:
        omega, omega_np = cp.sum(cp.norm(x, 2, axis=1)), lambda s: float(np.linalg.norm(s, axis=1).sum())
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(cp.multiply(mask, x - y)) + lam * omega))
    start = time.perf_counter()
    problem.solve(solver="SCS", eps_abs=eps, eps_rel=eps, max_iters=max_iters)
    solve_s = time.perf_counter() - start
    if x.value is None:
        raise RuntimeError(f"convex_structured: no solution (cvxpy status {problem.status!r})")
    solution = np.asarray(x.value, np.float64)
    singular = np.linalg.svd(solution, compute_uv=False)
    residual = mask * (solution - y)
    return dict(
        objective=float(0.5 * np.sum(residual**2) + lam * omega_np(solution)),
        solver_objective=float(problem.value),
        omega=omega_np(solution),
        rank=int(np.sum(singular > 1e-6 * singular[0])) if singular[0] > 0 else 0,
        solution=solution,
        solve_s=solve_s,
        status=str(problem.status),
    )
