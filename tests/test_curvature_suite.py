"""Curvature suite (float64, under vmap): every estimator against the dense Hessian of a small net.

References: ``jax.hessian`` of the raveled loss with ``numpy.linalg.eigh`` (eigenpairs, traces,
v^T H^p v for the quadrature moments), and the dense J^T H_out J for the Gauss-Newton matrix.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from trajlab.metrics.curvature_suite import (  # noqa: E402
    DENSITY_GRID,
    density_metric,
    gauss_newton_metric,
    gauss_newton_top_eigenvalue,
    hutch_plus_plus,
    hutchinson_with_variance,
    lanczos_eigenpairs,
    slq_quadrature,
    trace_metric,
)
from trajlab.metrics.generic import GENERIC_METRIC_FUNCTIONS, MetricContext  # noqa: E402
from trajlab.models.mlp import mlp_apply, mlp_init  # noqa: E402

X = jax.random.normal(jax.random.PRNGKey(1), (10, 3), jnp.float64)
Y = jax.random.normal(jax.random.PRNGKey(2), (10, 2), jnp.float64)


def output(params):
    return mlp_apply(params, X, "quadratic")


def output_loss(out):
    return jnp.mean(jnp.sum((out - Y) ** 2, axis=1))


def loss(params):
    return output_loss(output(params))


BATCH = jax.vmap(lambda k: mlp_init(k, (3, 4, 2), "quadratic", True, "gaussian", 0.8, jnp.float64))(
    jax.random.split(jax.random.PRNGKey(0), 2))  # two nets of 26 parameters, vmapped
PARAMS = [jax.tree_util.tree_map(lambda x: x[i], BATCH) for i in range(2)]


def dense(params):
    flat, unravel = ravel_pytree(params)
    return np.asarray(jax.hessian(lambda v: loss(unravel(v)))(flat))


def test_lanczos_eigenpairs_match_eigh_under_vmap():
    values, vectors = jax.jit(jax.vmap(lambda p: lanczos_eigenpairs(loss, p, jax.random.PRNGKey(3), 3, 26)))(BATCH)
    for i, params in enumerate(PARAMS):
        reference_values, reference_vectors = np.linalg.eigh(dense(params))
        np.testing.assert_allclose(values[i], reference_values[::-1][:3], rtol=1e-9, atol=1e-9)
        overlaps = np.abs(np.sum(np.asarray(vectors[i]) * reference_vectors[:, ::-1][:, :3].T, axis=1))
        np.testing.assert_allclose(overlaps, 1.0, atol=1e-6)


def test_slq_is_gauss_quadrature_of_the_probe():
    """With m = 6 Lanczos steps the quadrature integrates H^p exactly for p <= 2m - 1 = 11:
    sum_l tau_l^2 theta_l^p = v^T H^p v, v the normalized Rademacher probe."""
    key = jax.random.PRNGKey(5)
    nodes, weights = jax.jit(jax.vmap(lambda p: slq_quadrature(loss, p, key, probes=2, iterations=6)))(BATCH)
    for i, params in enumerate(PARAMS):
        h = dense(params)
        scale = np.abs(np.linalg.eigvalsh(h)).max()
        for probe in range(2):
            v = np.asarray(jax.random.rademacher(jax.random.fold_in(key, probe), (26,), jnp.float64)) / np.sqrt(26)
            for p in (0, 1, 2, 5, 11):
                exact = v @ np.linalg.matrix_power(h / scale, p) @ v
                quadrature = np.sum(np.asarray(weights[i, probe]) * (np.asarray(nodes[i, probe]) / scale) ** p)
                np.testing.assert_allclose(quadrature, exact, rtol=1e-7, atol=1e-10)


def test_trace_estimators_against_the_exact_trace():
    plus_fn = jax.jit(jax.vmap(lambda p: hutch_plus_plus(loss, p, jax.random.PRNGKey(7), probes=26)))
    hutchinson_fn = jax.jit(jax.vmap(lambda p: hutchinson_with_variance(loss, p, jax.random.PRNGKey(8), probes=4000)))
    (plus, _), (means, variances) = plus_fn(BATCH), hutchinson_fn(BATCH)
    for i, params in enumerate(PARAMS):
        h = dense(params)
        exact = np.trace(h)
        # Hutch++ with P >= n columns sketches the whole range: exact
        np.testing.assert_allclose(plus[i], exact, rtol=1e-8)
        # Hutchinson: the variance estimate of the mean is close to the closed form 2 (|H|_F^2 - sum H_ii^2) / P
        closed = 2 * (np.sum(h**2) - np.sum(np.diag(h) ** 2)) / 4000
        assert abs(float(means[i]) - exact) <= 5 * np.sqrt(closed)
        np.testing.assert_allclose(variances[i], closed, rtol=0.15)


def test_gauss_newton_top_eigenvalue_matches_dense():
    values = jax.jit(jax.vmap(lambda p: gauss_newton_top_eigenvalue(output, output_loss, p, jax.random.PRNGKey(0), 26)))(BATCH)
    for i, params in enumerate(PARAMS):
        flat, unravel = ravel_pytree(params)
        jacobian = np.asarray(jax.jacobian(lambda v: output(unravel(v)).reshape(-1))(flat))
        out = output(params)
        h_out = np.asarray(jax.hessian(lambda o: output_loss(o.reshape(out.shape)))(out.reshape(-1)))
        reference = np.linalg.eigvalsh(jacobian.T @ h_out @ jacobian)[-1]
        np.testing.assert_allclose(values[i], reference, rtol=1e-8)


def test_generic_metrics_registered_and_vmapped():
    for name in ("hessian_density", "hessian_trace_suite", "gauss_newton_sharpness"):
        assert name in GENERIC_METRIC_FUNCTIONS

    def metrics(params):
        ctx = MetricContext(params, params, None, None, loss=lambda p, d: loss(p))
        return density_metric(ctx), trace_metric(ctx), gauss_newton_metric(ctx)

    density, traces, gauss_newton = jax.jit(jax.vmap(metrics))(BATCH)
    assert gauss_newton == {}  # no model outputs in a plain context: no column
    assert density.shape == (2, len(DENSITY_GRID))
    spacing = DENSITY_GRID[1] - DENSITY_GRID[0]
    np.testing.assert_allclose(np.sum(density, axis=1) * spacing, 1.0, atol=0.02)
    for i, params in enumerate(PARAMS):
        exact = np.trace(dense(params))
        assert abs(float(traces["trace_hutchpp"][i]) - exact) <= 6 * np.sqrt(float(traces["trace_hutchpp_var"][i])) + 1e-9
        assert traces["trace_hutchinson_var"][i] > 0
