"""Curvature of a loss at given parameters: Hessian-vector products, top eigenvalues, trace.

``loss_fn(params) -> scalar`` is any differentiable function of a parameter pytree (a closure over
the data is fine). Everything here is matrix-free (only Hessian-vector products, never the n x n
Hessian, except :func:`flat_hessian`), has fixed shapes and fixed iteration counts (``k``,
``iterations``, ``probes`` are static Python ints), and runs inside ``jax.jit`` and ``jax.vmap``
over a batch of params and keys.

- Hessian-vector product, forward-over-reverse (Pearlmutter 1994; the JAX autodiff cookbook):
  H v = d/de grad L(theta + e v) at e = 0 = ``jax.jvp(jax.grad(L), (theta,), (v,))[1]``. The loops
  below call ``jax.linearize`` on ``jax.grad(L)`` once, which is the same jvp with the forward pass
  evaluated once and reused by every product.
- Lanczos with full reorthogonalization (Golub & Van Loan, Matrix Computations, Sec. 10.1 and 10.3;
  Ghorbani, Krishnan, Xiao, ICML 2019 for neural-network Hessians): m steps build an orthonormal
  basis Q of the Krylov space and T = Q^T H Q tridiagonal; the eigenvalues of T (Ritz values)
  approximate the extreme eigenvalues of H, exactly when m = n. Top-k largest algebraic values.
- Power iteration (von Mises): v <- H v / ||H v||; converges to the eigenvector of the eigenvalue of
  largest *magnitude* at rate |lambda_2 / lambda_1| per step, and the returned Rayleigh quotient
  v^T H v keeps the sign, so it is the sharpness lambda_max only when lambda_max >= |lambda_min|.
- Hutchinson's trace estimator (Hutchinson 1990): tr H = E[z^T H z] for z with i.i.d. Rademacher
  entries; the variance of one probe is 2 (||H||_F^2 - sum_i H_ii^2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


def hessian_vector_product(loss_fn, params, vector):
    """H v with H the Hessian of ``loss_fn`` at ``params``; ``vector`` and the result are pytrees
    shaped like ``params`` (forward-over-reverse: jvp of grad)."""
    return jax.jvp(jax.grad(loss_fn), (params,), (vector,))[1]


def _flat_hvp(loss_fn, params):
    """(v -> H v on flat vectors, n, dtype): ``jax.linearize`` of the flat gradient, linearized once."""
    flat, unravel = ravel_pytree(params)

    def flat_gradient(x):
        return ravel_pytree(jax.grad(loss_fn)(unravel(x)))[0]

    _, product = jax.linearize(flat_gradient, flat)
    return product, flat.shape[0], flat.dtype


def flat_hessian(loss_fn, params):
    """Dense Hessian (n, n) over the raveled parameters (``ravel_pytree`` order); small nets only."""
    flat, unravel = ravel_pytree(params)
    return jax.hessian(lambda x: loss_fn(unravel(x)))(flat)


def _orthogonalize(w, basis):
    """w minus its projection on the rows of ``basis`` (zero rows do nothing), twice ("twice is
    enough", Parlett 1980) so that rounding does not leave components along the basis."""
    w = w - basis.T @ (basis @ w)
    return w - basis.T @ (basis @ w)


def lanczos_tridiagonal(loss_fn, params, key, iterations: int):
    """(alpha (m,), beta (m - 1,)): the Lanczos tridiagonal T of the Hessian, m = min(iterations, n).

    Start q_1 = z / ||z||, z ~ N(0, I) from ``key`` (row 0 of one (m + 1, n) draw). Step j:
    w = H q_j, alpha_j = q_j^T w, w <- w - alpha_j q_j - beta_{j-1} q_{j-1}, then w is
    reorthogonalized against all of q_1..q_j (full reorthogonalization, twice), beta_j = ||w||,
    q_{j+1} = w / beta_j. When the Krylov space is invariant to rounding (beta_j <= 10 sqrt(n) eps
    max_i ||H q_i||, e.g. a Hessian of low rank), beta_j is set to 0 and q_{j+1} restarts from a
    fresh random vector (row j + 1 of the draw) orthogonalized against q_1..q_j, so T is block
    diagonal and its eigenvalues are still eigenvalues of H.
    """
    product, n, dtype = _flat_hvp(loss_fn, params)
    m = min(int(iterations), n)
    if m < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    # Row 0 starts the iteration; row j + 1 is the restart vector of step j (one draw keeps the
    # compiled random-number code small and out of the loop).
    draws = jax.random.normal(key, (m + 1, n), dtype)
    basis = jnp.zeros((m + 1, n), dtype).at[0].set(draws[0] / jnp.linalg.norm(draws[0]))
    alpha = jnp.zeros((m,), dtype)
    beta = jnp.zeros((m,), dtype)
    # Rounding leaves ||w|| ~ sqrt(n) eps ||H|| once the Krylov space is invariant.
    threshold = 10.0 * n**0.5 * float(jnp.finfo(dtype).eps)

    def step(j, carry):
        basis, alpha, beta, size = carry
        q = basis[j]
        previous_beta = jnp.where(j > 0, beta[j - 1], 0.0)
        w = product(q)
        size = jnp.maximum(size, jnp.linalg.norm(w))
        a = jnp.dot(q, w)
        w = w - a * q - previous_beta * basis[jnp.maximum(j - 1, 0)]
        w = _orthogonalize(w, basis)
        b = jnp.linalg.norm(w)
        invariant = b <= threshold * size
        fresh = _orthogonalize(draws[j + 1], basis)
        # After n steps no direction is left: the unused last row may be 0, never NaN.
        fresh = fresh / jnp.maximum(jnp.linalg.norm(fresh), jnp.finfo(dtype).tiny)
        next_q = jnp.where(invariant, fresh, w / jnp.where(invariant, 1.0, b))
        b = jnp.where(invariant, 0.0, b)
        return basis.at[j + 1].set(next_q), alpha.at[j].set(a), beta.at[j].set(b), size

    _, alpha, beta, _ = jax.lax.fori_loop(0, m, step, (basis, alpha, beta, jnp.zeros((), dtype)))
    return alpha, beta[: m - 1]


def lanczos_top_eigenvalues(loss_fn, params, key, k: int = 1, iterations: int = 20):
    """The k largest algebraic Ritz values of the Hessian after m = min(iterations, n) Lanczos steps,
    in descending order, shape (k,) (k <= m); exact (to rounding) when m = n.

    See :func:`lanczos_tridiagonal`. Extreme eigenvalues converge first; with full
    reorthogonalization no spurious copies appear. Memory O(m n) for the basis, time m Hessian-vector
    products plus O(m^2 n). jit/vmap-safe in params and key; k and iterations are static.
    """
    alpha, beta = lanczos_tridiagonal(loss_fn, params, key, iterations)
    m = alpha.shape[0]
    if not 1 <= k <= m:
        raise ValueError(f"k must be in [1, min(iterations, n) = {m}], got {k}")
    tridiagonal = jnp.diag(alpha) + jnp.diag(beta, 1) + jnp.diag(beta, -1)
    return jnp.linalg.eigvalsh(tridiagonal)[::-1][:k]


def power_iteration_top_eigenvalue(loss_fn, params, key, iterations: int = 100):
    """Rayleigh quotient v^T H v after ``iterations`` steps v <- H v / ||H v|| from v ~ N(0, I) (``key``).

    Converges to the eigenvalue of largest magnitude (with its sign), error O(|lambda_2/lambda_1|^(2t))
    when the top eigenvalue is simple; if the Hessian maps v to zero the result is 0.
    """
    product, n, dtype = _flat_hvp(loss_fn, params)
    start = jax.random.normal(key, (n,), dtype)
    tiny = jnp.finfo(dtype).tiny

    def step(_, v):
        w = product(v)
        return w / jnp.maximum(jnp.linalg.norm(w), tiny)

    v = jax.lax.fori_loop(0, int(iterations), step, start / jnp.linalg.norm(start))
    return jnp.dot(v, product(v))


def hutchinson_samples(loss_fn, params, key, probes: int = 100):
    """z_p^T H z_p for ``probes`` Rademacher vectors z_p (z_p from fold_in(key, p)), shape (probes,).

    Each sample is an unbiased estimate of tr H with variance 2 (||H||_F^2 - sum_i H_ii^2); the
    samples are computed one after another (lax.map), so memory does not grow with ``probes``.
    """
    product, n, dtype = _flat_hvp(loss_fn, params)

    def sample(p):
        z = jax.random.rademacher(jax.random.fold_in(key, p), (n,), dtype)
        return jnp.dot(z, product(z))

    return jax.lax.map(sample, jnp.arange(int(probes)))


def hutchinson_trace(loss_fn, params, key, probes: int = 100):
    """tr H ~ (1/P) sum_p z_p^T H z_p (Hutchinson 1990), P = ``probes`` Rademacher probes."""
    return jnp.mean(hutchinson_samples(loss_fn, params, key, probes))
