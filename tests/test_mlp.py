"""Tests of the small nonlinear networks (float64).

Independent references: plain-numpy forward passes written with loops over layers and units, the
deep linear end-to-end product, empirical moments of large draws against the published variance
formulas, hand-computed regularizers, numpy SVDs, and gradient identities derived on paper.
"""

from __future__ import annotations

import math

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from trajlab.models.deep_linear import end_to_end  # noqa: E402
from trajlab.models.mlp import (  # noqa: E402
    Dense,
    ParallelUnits,
    add_unit,
    matrix_polar,
    mlp_apply,
    mlp_init,
    mlp_weight_std,
    parallel_init,
    parallel_matrix,
    parallel_regularizer,
    parallel_relu_apply,
    two_layer_apply,
    two_layer_init,
    unit_norm_products,
    zero_units,
)

KEY = jax.random.PRNGKey(0)
SIZES = (5, 7, 6, 3)


def np_activation(name):
    return {"linear": lambda z: z, "relu": lambda z: np.maximum(z, 0.0), "quadratic": lambda z: z * z}[name]


def np_mlp(params, x, activation):
    """Loop over layers and output units, numpy only."""
    sigma = np_activation(activation)
    h = np.asarray(x)
    for index, (w, b) in enumerate(params):
        w = np.asarray(w)
        out = np.zeros((h.shape[0], w.shape[0]))
        for j in range(w.shape[0]):
            out[:, j] = sum(h[:, i] * w[j, i] for i in range(w.shape[1]))
            if b is not None:
                out[:, j] += float(b[j])
        h = sigma(out) if index < len(params) - 1 else out
    return h


@pytest.mark.parametrize("activation", ["linear", "relu", "quadratic"])
@pytest.mark.parametrize("bias", [True, False])
def test_mlp_apply_matches_numpy_forward(activation, bias):
    params = mlp_init(KEY, SIZES, activation, bias, "gaussian", 0.7, jnp.float64)
    if bias:  # nonzero biases, so that they are exercised
        keys = jax.random.split(jax.random.PRNGKey(3), len(params))
        params = tuple(Dense(l.weight, jax.random.normal(k, l.bias.shape)) for l, k in zip(params, keys))
    x = np.random.default_rng(0).standard_normal((9, SIZES[0]))
    got = mlp_apply(params, jnp.asarray(x), activation)
    assert got.shape == (9, SIZES[-1])
    np.testing.assert_allclose(got, np_mlp(params, x, activation), rtol=1e-12, atol=1e-12)


def test_linear_mlp_without_bias_is_the_end_to_end_matrix():
    params = mlp_init(KEY, SIZES, "linear", False, "xavier", 1.0, jnp.float64)
    x = np.random.default_rng(1).standard_normal((4, SIZES[0]))
    product = end_to_end(tuple(layer.weight for layer in params))
    np.testing.assert_allclose(mlp_apply(params, x, "linear"), x @ np.asarray(product).T, rtol=1e-12)


def test_bias_off_adds_no_parameters_and_shapes_follow_sizes():
    with_bias = mlp_init(KEY, SIZES, "relu", True, "he", 1.0, jnp.float64)
    without = mlp_init(KEY, SIZES, "relu", False, "he", 1.0, jnp.float64)
    weights = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    assert ravel_pytree(without)[0].shape == (weights,)
    assert ravel_pytree(with_bias)[0].shape == (weights + sum(SIZES[1:]),)
    for layer, fan_in, fan_out in zip(with_bias, SIZES[:-1], SIZES[1:]):
        assert layer.weight.shape == (fan_out, fan_in) and layer.bias.shape == (fan_out,)
        assert not np.any(layer.bias)
    assert all(layer.bias is None for layer in without)
    np.testing.assert_array_equal(with_bias[0].weight, without[0].weight)


@pytest.mark.parametrize(
    "scheme, expected_std, fourth_moment",
    [
        ("xavier", math.sqrt(2 / (400 + 600)), 9 / 5),  # uniform: E w^4 = 9/5 sigma^4
        ("xavier_normal", math.sqrt(2 / (400 + 600)), 3.0),
        ("he", math.sqrt(2 / 400), 3.0),
        ("gaussian", 1.0, 3.0),
    ],
)
def test_init_std_matches_the_formula(scheme, expected_std, fourth_moment):
    """Sample variance of 240000 entries within 5 standard errors sqrt((mu4 - sigma^4) / N)."""
    scale = 1.3
    (layer,) = mlp_init(KEY, (400, 600), "relu", False, scheme, scale, jnp.float64)
    w = np.asarray(layer.weight)
    assert w.shape == (600, 400)
    sigma2 = (scale * expected_std) ** 2
    assert mlp_weight_std(scheme, 400, 600, scale) == pytest.approx(scale * expected_std)
    standard_error = math.sqrt((fourth_moment - 1) / w.size) * sigma2
    assert abs(np.mean(w**2) - sigma2) < 5 * standard_error
    assert abs(np.mean(w)) < 5 * math.sqrt(sigma2 / w.size)
    if scheme == "xavier":  # U[-a, a] with a = scale sqrt(6 / (fan_in + fan_out))
        bound = scale * math.sqrt(6 / 1000)
        assert np.max(np.abs(w)) <= bound and np.max(np.abs(w)) > 0.999 * bound


def test_init_vmaps_over_keys_and_scales():
    init = jax.jit(jax.vmap(lambda k, s: mlp_init(k, SIZES, "relu", True, "xavier", s, jnp.float64)))
    keys = jax.random.split(KEY, 3)
    batch = init(keys, jnp.array([1.0, 2.0, 0.5]))
    assert batch[0].weight.shape == (3, SIZES[1], SIZES[0])
    single = mlp_init(keys[1], SIZES, "relu", True, "xavier", 2.0, jnp.float64)
    for got, want in zip(jax.tree.leaves(batch), jax.tree.leaves(single)):
        np.testing.assert_allclose(got[1], want, rtol=1e-12)


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="activation"):
        mlp_init(KEY, SIZES, "tanh")
    with pytest.raises(ValueError, match="scheme"):
        mlp_init(KEY, SIZES, "relu", True, "lecun")
    with pytest.raises(ValueError, match="output"):
        two_layer_init(KEY, 3, 4, 1.0, "zeros")


# --- two-layer --------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["linear", "relu", "quadratic"])
def test_two_layer_apply_matches_sum_over_units(activation):
    params = two_layer_init(KEY, 4, 6, 1.0, "gaussian", jnp.float64)
    x = np.random.default_rng(2).standard_normal((5, 4))
    sigma = np_activation(activation)
    w, a = np.asarray(params.hidden), np.asarray(params.output)
    want = sum(a[r] * sigma(x @ w[r]) for r in range(6))
    np.testing.assert_allclose(two_layer_apply(params, x, activation), want, rtol=1e-12)


def test_two_layer_init_conventions():
    params = two_layer_init(KEY, 50, 4000, 0.3, "balanced", jnp.float64)
    norms = np.linalg.norm(np.asarray(params.hidden), axis=1)
    np.testing.assert_allclose(np.abs(params.output), norms, rtol=1e-12)  # a_r^2 = ||w_r||^2
    # E ||w_r||^2 = scale^2; ||w_r||^2 scale^-2 d ~ chi^2_d, variance 2 d -> sd of the mean 0.09 sqrt(2/(50*4000))
    assert abs(np.mean(norms**2) / 0.09 - 1) < 5 * math.sqrt(2 / (50 * 4000))
    assert 0.4 < np.mean(np.asarray(params.output) > 0) < 0.6
    ones = two_layer_init(KEY, 3, 5, 0.3, "ones", jnp.float64)
    np.testing.assert_array_equal(ones.output, np.ones(5))


@pytest.mark.parametrize("activation, factor", [("relu", 1.0), ("linear", 1.0), ("quadratic", 0.5)])
def test_balancedness_is_conserved_by_gradient_flow(activation, factor):
    """d/dt (a_r^2 - factor ||w_r||^2) = -2 (a_r dL/da_r - factor w_r . dL/dw_r) = 0 for every unit."""
    params = two_layer_init(KEY, 3, 5, 1.0, "gaussian", jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 3), jnp.float64)
    y = jax.random.normal(jax.random.PRNGKey(2), (8,), jnp.float64)
    grad = jax.grad(lambda p: jnp.mean((two_layer_apply(p, x, activation) - y) ** 2))(params)
    rate = params.output * grad.output - factor * jnp.sum(params.hidden * grad.hidden, axis=1)
    np.testing.assert_allclose(rate, 0.0, atol=1e-12)


# --- parallel homogeneous subnetworks ---------------------------------------------------------


def test_parallel_matrix_and_relu_match_sums_of_units():
    params = parallel_init(KEY, 4, 3, 5, 1.0, jnp.float64)
    v, u = np.asarray(params.inner), np.asarray(params.outer)
    np.testing.assert_allclose(parallel_matrix(params), sum(np.outer(u[r], v[r]) for r in range(5)), rtol=1e-12)
    x = np.random.default_rng(3).standard_normal((6, 4))
    want = sum(np.maximum(x @ v[r], 0.0)[:, None] * u[r][None, :] for r in range(5))
    np.testing.assert_allclose(parallel_relu_apply(params, x), want, rtol=1e-12)


def test_regularizer_by_hand_and_zero_units():
    params = ParallelUnits(
        inner=jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 3.0], [0.0, 0.0]]),
        outer=jnp.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1.0, 2.0, 2.0], [0.0, 0.0, 0.0]]),
    )
    # ||u|| ||v||: 5 * 1, 0 * sqrt(2), 3 * 3, 0 * 0
    np.testing.assert_allclose(unit_norm_products(params), [5.0, 0.0, 9.0, 0.0])
    assert float(parallel_regularizer(params)) == pytest.approx(14.0)
    # Only the last unit is entirely zero; the second has a nonzero inner factor.
    np.testing.assert_array_equal(zero_units(params), [False, False, False, True])
    np.testing.assert_array_equal(zero_units(params, tol=1.5), [False, True, False, True])
    grown = add_unit(params)
    assert grown.inner.shape == (5, 2) and grown.outer.shape == (5, 3)
    assert bool(zero_units(grown)[-1])
    grown = add_unit(params, jnp.array([2.0, 0.0]), jnp.array([0.0, 0.0, 1.0]))
    assert float(parallel_regularizer(grown)) == pytest.approx(16.0)
    np.testing.assert_allclose(parallel_matrix(grown) - parallel_matrix(params), np.outer([0, 0, 1.0], [2.0, 0]))


def test_regularizer_is_the_nuclear_norm_at_the_balanced_svd_factorization():
    """Theta >= ||W||_* for every factorization, with equality for u_r = sqrt(s_r) U_r, v_r = sqrt(s_r) V_r."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 5))
    left, s, right_t = np.linalg.svd(w, full_matrices=False)
    balanced = ParallelUnits(jnp.asarray(np.sqrt(s)[:, None] * right_t), jnp.asarray((left * np.sqrt(s)).T))
    np.testing.assert_allclose(parallel_matrix(balanced), w, rtol=1e-12, atol=1e-12)
    assert float(parallel_regularizer(balanced)) == pytest.approx(np.sum(s), rel=1e-12)
    unbalanced = ParallelUnits(balanced.inner * jnp.array([[2.0], [1.0], [0.5]]), balanced.outer)
    assert float(parallel_regularizer(unbalanced)) > np.sum(s)
    mixed = ParallelUnits(jnp.asarray(rng.standard_normal((6, 5))), jnp.asarray(rng.standard_normal((6, 3))))
    nuclear = np.sum(np.linalg.svd(np.asarray(parallel_matrix(mixed)), compute_uv=False))
    assert float(parallel_regularizer(mixed)) >= nuclear


def test_matrix_polar_is_the_top_singular_pair_and_a_descent_unit():
    rng = np.random.default_rng(5)
    target = jnp.asarray(rng.standard_normal((4, 3)))
    params = parallel_init(KEY, 3, 4, 2, 0.5, jnp.float64)
    lam = 0.3

    def objective(p):
        return 0.5 * jnp.sum((parallel_matrix(p) - target) ** 2) + lam * parallel_regularizer(p)

    gradient = parallel_matrix(params) - target  # d/dW of 1/2 ||W - M||^2
    value, u, v = matrix_polar(gradient)
    assert float(value) == pytest.approx(np.linalg.svd(np.asarray(gradient), compute_uv=False)[0], rel=1e-12)
    assert float(u @ (-gradient) @ v) == pytest.approx(float(value), rel=1e-12)
    assert float(value) > lam
    t = 1e-3
    decrease = objective(params) - objective(add_unit(params, t * v, t * u))
    assert float(decrease) / t**2 == pytest.approx(float(value) - lam, rel=1e-4)
