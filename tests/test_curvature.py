"""Tests of the curvature metrics (float64).

Independent references: the dense Hessian from ``jax.hessian`` (materialized column by column on the
raveled parameters) and central finite differences of the gradient for Hessian-vector products;
``numpy.linalg.eigvalsh`` of the dense Hessian for Lanczos and power iteration; the exact trace and
the closed-form variance 2 (||H||_F^2 - sum_i H_ii^2) of a Rademacher probe for Hutchinson.
"""

from __future__ import annotations

import math
from functools import partial

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from trajlab.metrics.curvature import (  # noqa: E402
    flat_hessian,
    hessian_vector_product,
    hutchinson_samples,
    hutchinson_trace,
    lanczos_top_eigenvalues,
    power_iteration_top_eigenvalue,
)
from trajlab.models.mlp import mlp_apply, mlp_init  # noqa: E402

KEY = jax.random.PRNGKey(0)
SIZES = (3, 4, 2)  # 3*4 + 4 + 4*2 + 2 = 26 parameters with biases
X = jax.random.normal(jax.random.PRNGKey(1), (10, 3), jnp.float64)
Y = jax.random.normal(jax.random.PRNGKey(2), (10, 2), jnp.float64)


def make_loss(activation):
    def loss(params):
        return jnp.mean(jnp.sum((mlp_apply(params, X, activation) - Y) ** 2, axis=1))

    return loss


LOSSES = {name: make_loss(name) for name in ("relu", "quadratic")}  # one object each: jit caches


def init(key):
    return mlp_init(key, SIZES, "relu", True, "gaussian", 0.8, jnp.float64)


PARAMS = init(KEY)


@partial(jax.jit, static_argnums=0)
def dense_hessian(loss, params):
    """The dense Hessian of the raveled loss, jax.hessian (jacfwd of jacrev, column by column)."""
    flat, unravel = ravel_pytree(params)
    return jax.hessian(lambda v: loss(unravel(v)))(flat)


@pytest.fixture(scope="module", params=["relu", "quadratic"])
def case(request):
    loss = LOSSES[request.param]
    hessian = np.asarray(dense_hessian(loss, PARAMS))
    return loss, hessian, np.linalg.eigvalsh(hessian)


def test_hessian_vector_product_matches_dense_hessian_and_finite_differences(case):
    loss, hessian, _ = case
    flat, unravel = ravel_pytree(PARAMS)
    v = np.random.default_rng(0).standard_normal(flat.shape[0])
    h = 1e-5

    @jax.jit
    def compute(params, vector):
        gradient = lambda f: ravel_pytree(jax.grad(loss)(unravel(f)))[0]  # noqa: E731
        product = ravel_pytree(hessian_vector_product(loss, params, unravel(vector)))[0]
        difference = (gradient(flat + h * vector) - gradient(flat - h * vector)) / (2 * h)
        return product, difference, flat_hessian(loss, params)

    product, difference, dense = compute(PARAMS, jnp.asarray(v))
    np.testing.assert_allclose(product, hessian @ v, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dense, hessian, rtol=1e-12, atol=1e-12)
    # Central differences: error O(h^2) (relu kinks are not crossed for h this small).
    np.testing.assert_allclose(difference, hessian @ v, rtol=1e-6, atol=1e-6)


def test_lanczos_and_power_iteration_match_eigvalsh(case):
    loss, hessian, eigenvalues = case
    n = hessian.shape[0]
    assert np.min(eigenvalues) < 0 < np.max(eigenvalues)  # indefinite: "largest algebraic" matters

    partial_iterations = 18 if loss is LOSSES["relu"] else None  # one compile fewer for quadratic

    @jax.jit
    def compute(params, key):
        full = lanczos_top_eigenvalues(loss, params, key, 3, n)
        power = power_iteration_top_eigenvalue(loss, params, key, 300)
        if partial_iterations is None:
            return full, full[:1], power
        return full, lanczos_top_eigenvalues(loss, params, key, 1, partial_iterations), power

    full, partial_run, power = compute(PARAMS, KEY)
    top = np.sort(eigenvalues)[::-1]
    # m = n: the tridiagonal is similar to H, all Ritz values are eigenvalues.
    np.testing.assert_allclose(full, top[:3], rtol=1e-9, atol=1e-9)
    # m < n: the extreme eigenvalue has converged well before.
    np.testing.assert_allclose(partial_run, top[:1], rtol=1e-6)
    assert float(power) == pytest.approx(eigenvalues[np.argmax(np.abs(eigenvalues))], rel=1e-8)


def test_lanczos_restarts_on_a_low_rank_hessian_and_finds_negative_spectra():
    """L = 1/2 theta^T A theta with A = a a^T - 2 b b^T: rank 2, eigenvalues {+, -, 0, ...}.

    The Krylov space of a random start has dimension 3 (q_1 and the range of A), and every later
    restart is invariant at once, so Lanczos restarts five times; iterations = 50 is capped at n = 8.
    """
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 8))
    matrix = np.outer(a, a) - 2 * np.outer(b, b)
    eigenvalues = np.linalg.eigvalsh(matrix)

    def loss(theta):
        return 0.5 * theta["w"] @ jnp.asarray(matrix) @ theta["w"]

    @jax.jit
    def compute(params, key):
        return lanczos_top_eigenvalues(loss, params, key, 8, 50), power_iteration_top_eigenvalue(loss, params, key, 200)

    top, power = compute({"w": jnp.zeros(8)}, KEY)
    np.testing.assert_allclose(top, np.sort(eigenvalues)[::-1], atol=1e-10)
    assert float(power) == pytest.approx(eigenvalues[np.argmax(np.abs(eigenvalues))], rel=1e-10)


def test_curvature_under_vmap_over_three_param_sets():
    loss = LOSSES["relu"]
    keys = jax.random.split(jax.random.PRNGKey(5), 3)
    probe_keys = jax.random.split(jax.random.PRNGKey(6), 3)

    def curvature(params, key):
        return (
            lanczos_top_eigenvalues(loss, params, key, 2, 26),
            power_iteration_top_eigenvalue(loss, params, key, 300),
            hutchinson_trace(loss, params, key, 7),
        )

    @jax.jit
    def compute(keys, probe_keys):
        batch = jax.vmap(init)(keys)
        unbatched = hutchinson_trace(loss, jax.tree.map(lambda leaf: leaf[1], batch), probe_keys[1], 7)
        return batch, jax.vmap(curvature)(batch, probe_keys), unbatched

    batch, (top, power, trace), single = compute(keys, probe_keys)
    assert top.shape == (3, 2) and power.shape == (3,) and trace.shape == (3,)
    for i in range(3):
        params = jax.tree.map(lambda leaf: leaf[i], batch)
        eigenvalues = np.linalg.eigvalsh(np.asarray(dense_hessian(loss, params)))
        np.testing.assert_allclose(top[i], np.sort(eigenvalues)[::-1][:2], rtol=1e-9, atol=1e-9)
        assert float(power[i]) == pytest.approx(eigenvalues[np.argmax(np.abs(eigenvalues))], rel=1e-6)
    # The batched Hutchinson estimate equals the unbatched one with the same key (same probes).
    assert float(trace[1]) == pytest.approx(float(single), rel=1e-10)


def test_hutchinson_trace_within_its_standard_error(case):
    """|estimate - tr H| < 5 sigma / sqrt(P), sigma^2 = 2 (||H||_F^2 - sum_i H_ii^2) (Rademacher)."""
    loss, hessian, _ = case
    probes = 2000
    samples = np.asarray(jax.jit(hutchinson_samples, static_argnums=(0, 3))(loss, PARAMS, KEY, probes))
    variance = 2 * (np.sum(hessian**2) - np.sum(np.diag(hessian) ** 2))
    exact = np.trace(hessian)
    assert abs(samples.mean() - exact) < 5 * math.sqrt(variance / probes)
    # The per-probe variance matches the formula (sample variance of 2000 draws: within 25%).
    assert samples.var() == pytest.approx(variance, rel=0.25)


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    """z_i^2 = 1 for Rademacher z, so z^T D z = tr D for every probe."""
    got = hutchinson_trace(lambda p: jnp.sum(jnp.arange(1.0, 6.0) * p["w"] ** 2), {"w": jnp.ones(5)}, KEY, 1)
    assert float(got) == pytest.approx(2 * 15.0, rel=1e-12)
