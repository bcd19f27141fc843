"""Tests of trajlab.models (deep linear networks, init schemes) and of the train-loss gradients.

Independent references: numpy products and Gram matrices, the closed forms of each init scheme
(balanced Gram matrices diag(s^(2/N)), identity product, semi-orthogonality), sampling statistics
with their standard errors, and central finite differences of a numpy loss in float64.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig  # noqa: E402
from trajlab.engine import build_task  # noqa: E402
from trajlab.errors import ConfigError  # noqa: E402
from trajlab.models import DeepLinear, balanced_from_end_to_end, end_to_end  # noqa: E402
from trajlab.problems import make_matrix_problem  # noqa: E402


def np_product(layers):
    product = np.asarray(layers[0])
    for layer in layers[1:]:
        product = np.asarray(layer) @ product
    return product


# Jitted once per shape: much faster than op-by-op dispatch when hypothesis varies the shapes.
_balanced = jax.jit(balanced_from_end_to_end, static_argnums=1)


def init(model, seed, scale, scheme):
    """model.init(PRNGKey(seed), scale, scheme) in float64, jitted (scheme and dtype static)."""
    return jax.jit(model.init, static_argnums=(2, 3))(jax.random.PRNGKey(seed), scale, scheme, jnp.float64)


def assert_balanced(layers, atol):
    for lower, upper in zip(layers[:-1], layers[1:]):
        lower, upper = np.asarray(lower), np.asarray(upper)
        np.testing.assert_allclose(upper.T @ upper, lower @ lower.T, rtol=0, atol=atol)


# --- structure ------------------------------------------------------------------------------


def test_shapes_follow_the_documented_convention():
    model = DeepLinear(m=6, n=4, depth=3, width=7)
    assert model.shapes == ((7, 4), (7, 7), (6, 7))
    assert DeepLinear(m=6, n=4, depth=3).shapes == ((6, 4), (6, 6), (6, 6))  # width = max(m, n)
    assert DeepLinear(m=3, n=5, depth=1).shapes == ((3, 5),)


def test_end_to_end_is_the_product_in_order():
    rng = np.random.default_rng(0)
    layers = [rng.standard_normal(s) for s in ((4, 3), (5, 4), (2, 5))]
    expected = layers[2] @ layers[1] @ layers[0]
    np.testing.assert_allclose(end_to_end(tuple(jnp.asarray(w) for w in layers)), expected, rtol=1e-13)


# --- balanced init --------------------------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(
    m=st.integers(1, 6),
    n=st.integers(1, 6),
    depth=st.integers(1, 4),
    extra_width=st.integers(0, 3),
    seed=st.integers(0, 2**16),
)
def test_balanced_from_end_to_end_is_balanced_with_the_right_product(m, n, depth, extra_width, seed):
    width = min(m, n) + extra_width
    a = np.random.default_rng(seed).standard_normal((m, n))
    shapes = DeepLinear(m, n, depth, width).shapes
    layers = _balanced(jnp.asarray(a), shapes)
    assert tuple(w.shape for w in layers) == shapes
    assert all(w.dtype == jnp.float64 for w in layers)
    np.testing.assert_allclose(np_product(layers), a, rtol=0, atol=1e-12)
    assert_balanced(layers, atol=1e-12)
    # the common Gram matrix is diag(s^(2/N)), zero-padded (Procedure 1 of Arora et al. 2019)
    if depth > 1:
        s = np.linalg.svd(a, compute_uv=False)
        gram = np.asarray(layers[0]) @ np.asarray(layers[0]).T
        expected = np.zeros((width, width))
        expected[: s.size, : s.size] = np.diag(s ** (2.0 / depth))
        np.testing.assert_allclose(gram, expected, rtol=0, atol=1e-12)


@settings(max_examples=8, deadline=None)
@given(
    m=st.integers(1, 6),
    n=st.integers(1, 6),
    depth=st.integers(2, 4),
    extra_width=st.integers(0, 2),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1e-3, 0.1, 1.0, 3.0]),
)
def test_balanced_random_init_is_balanced(m, n, depth, extra_width, seed, scale):
    model = DeepLinear(m, n, depth, min(m, n) + extra_width)
    layers = init(model, seed, scale, "balanced_random")
    assert tuple(w.shape for w in layers) == model.shapes
    assert_balanced(layers, atol=1e-12 * max(1.0, scale**2))
    # the product is A with i.i.d. N(0, scale^2 / m) entries: a nonzero matrix of that size
    product = np_product(layers)
    assert product.shape == (m, n)
    assert np.all(np.isfinite(product)) and np.linalg.norm(product) > 0


def test_balanced_random_product_has_documented_variance():
    # ||A||_F^2 / (m n) estimates scale^2 / m (std error sqrt(2 / (m n)) relative)
    m, n, scale = 40, 30, 0.7
    model = DeepLinear(m, n, 2, 40)
    layers = init(model, 1, scale, "balanced_random")
    product = np_product(layers)
    variance = np.mean(product**2)
    assert abs(variance / (scale**2 / m) - 1) < 5 * np.sqrt(2 / (m * n))
    assert abs(np.mean(product)) < 5 * scale / np.sqrt(m) / np.sqrt(m * n)


@pytest.mark.parametrize("m,n,width", [(5, 4, 3), (3, 6, 2), (4, 4, 1)])
def test_balanced_init_with_too_small_width_raises(m, n, width):
    shapes = DeepLinear(m, n, 3, width).shapes
    with pytest.raises(ConfigError, match="model.width"):
        balanced_from_end_to_end(jnp.ones((m, n)), shapes)
    model = DeepLinear(m, n, 3, width)
    with pytest.raises(ConfigError, match="model.width"):
        model.init(jax.random.PRNGKey(0), 1.0, "balanced_random", jnp.float64)
    with pytest.raises(ConfigError, match="model.width"):  # at config construction or task build
        build_task(
            RunConfig(
                problem=ProblemConfig(m=m, n=n, rank=1, observations=4),
                model=ModelConfig(depth=3, width=width, init="balanced_random"),
                train=TrainConfig(x64=True),
            )
        )


# --- other init schemes ---------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_gaussian_e2e_per_layer_std(depth):
    m, n, width, scale = 40, 32, 48, 0.3
    model = DeepLinear(m, n, depth, width)
    layers = init(model, 2, scale, "gaussian_e2e")
    expected_std = scale ** (1.0 / depth) / np.sqrt(width)
    for layer in layers:
        layer = np.asarray(layer)
        size = layer.size
        assert abs(layer.std() / expected_std - 1) < 5 / np.sqrt(2 * size)
        assert abs(layer.mean()) < 5 * expected_std / np.sqrt(size)
    # layers are independent draws, not copies of one another
    if depth > 2:
        assert not np.allclose(np.asarray(layers[1])[:m], np.asarray(layers[2]))


def test_gaussian_e2e_depth_one_uses_default_width():
    m, n, scale = 30, 50, 2.0
    (layer,) = init(DeepLinear(m, n, 1), 3, scale, "gaussian_e2e")
    expected_std = scale / np.sqrt(max(m, n))
    assert abs(np.asarray(layer).std() / expected_std - 1) < 5 / np.sqrt(2 * m * n)


@pytest.mark.parametrize("depth", [1, 3])
def test_gaussian_per_layer_std_is_scale(depth):
    scale = 0.05
    layers = init(DeepLinear(36, 30, depth, 40), 4, scale, "gaussian")
    for layer in layers:
        layer = np.asarray(layer)
        assert abs(layer.std() / scale - 1) < 5 / np.sqrt(2 * layer.size)
        assert abs(layer.mean()) < 5 * scale / np.sqrt(layer.size)


@pytest.mark.parametrize("m,n,depth,width", [(5, 5, 3, None), (6, 4, 2, None), (3, 5, 3, 4), (4, 4, 1, None)])
def test_identity_init_product_is_scale_identity(m, n, depth, width):
    scale = 0.37
    model = DeepLinear(m, n, depth, width)
    layers = init(model, 0, scale, "identity")
    for layer, shape in zip(layers, model.shapes):
        np.testing.assert_allclose(layer, scale ** (1.0 / depth) * np.eye(*shape), rtol=1e-14)
    np.testing.assert_allclose(np_product(layers), scale * np.eye(m, n), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("m,n,depth,width", [(5, 3, 3, 7), (3, 6, 2, 4), (4, 4, 1, None)])
def test_orthogonal_init_is_scaled_semi_orthogonal(m, n, depth, width):
    scale = 2.5
    model = DeepLinear(m, n, depth, width)
    layers = init(model, 5, scale, "orthogonal")
    c = scale ** (2.0 / depth)
    for layer, shape in zip(layers, model.shapes):
        q = np.asarray(layer)
        assert q.shape == shape
        rows, cols = shape
        gram = q.T @ q if rows >= cols else q @ q.T
        np.testing.assert_allclose(gram, c * np.eye(min(rows, cols)), rtol=0, atol=1e-12)


def test_unknown_init_scheme_raises():
    with pytest.raises(ConfigError, match="model.init"):
        DeepLinear(3, 3, 2).init(jax.random.PRNGKey(0), 1.0, "xavier", jnp.float64)


# --- gradients of the train loss vs central finite differences ------------------------------


def np_loss(layers, data):
    w = np_product(layers)
    if data.sensing is None:
        residual = w[data.rows, data.cols] - data.values
    else:
        residual = data.sensing @ w.ravel() - data.values
    return np.mean(residual**2)


def central_differences(layers, data, h=1e-6):
    grads = []
    for j, layer in enumerate(layers):
        grad = np.zeros_like(layer)
        for index in np.ndindex(layer.shape):
            plus = [w.copy() for w in layers]
            minus = [w.copy() for w in layers]
            plus[j][index] += h
            minus[j][index] -= h
            grad[index] = (np_loss(plus, data) - np_loss(minus, data)) / (2 * h)
        grads.append(grad)
    return grads


@pytest.mark.parametrize("kind", ["completion", "sensing"])
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("m,n", [(4, 3), (2, 5)])
def test_train_loss_gradient_matches_finite_differences(kind, depth, m, n):
    config = RunConfig(
        problem=ProblemConfig(kind=kind, m=m, n=n, rank=1, observations=7, seed=depth),
        model=ModelConfig(depth=depth, width=3, init="gaussian", scale=0.8),
        optimizer=OptimizerConfig(name="gd", lr=0.1),
        train=TrainConfig(x64=True),
    )
    task = build_task(config)
    data = make_matrix_problem(config.problem)
    rng = np.random.default_rng(10 * depth + m)
    layers = [rng.standard_normal(shape) for shape in DeepLinear(m, n, depth, 3).shapes]
    jax_data = jax.tree_util.tree_map(jnp.asarray, data)
    params = tuple(jnp.asarray(w) for w in layers)

    loss, grads = jax.value_and_grad(task.loss)(params, jax_data)
    np.testing.assert_allclose(loss, np_loss(layers, data), rtol=1e-12)
    for grad, reference in zip(grads, central_differences(layers, data)):
        assert grad.shape == reference.shape
        np.testing.assert_allclose(grad, reference, rtol=1e-6, atol=1e-8)
