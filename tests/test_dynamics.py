"""Tests of trajlab.dynamics: the unit-step update rules.

References: optax's own optimizers with ``learning_rate=lr`` (checks the claim that every rule is
linear in the step size, so the engine may apply params + lr * unit_update), and numpy loops written
from the docstrings (heavy-ball momentum, Nesterov, normalized GD).
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

from trajlab.config import OptimizerConfig  # noqa: E402
from trajlab.dynamics import direction_transform, normalized_gd  # noqa: E402

# A small quadratic over a two-leaf pytree: f(x) = 1/2 x^T H x - b^T x with x = (a, vec(B)).
_RNG = np.random.default_rng(0)
_M = _RNG.standard_normal((7, 7))
HESSIAN = _M @ _M.T / 7 + 0.5 * np.eye(7)
LINEAR = _RNG.standard_normal(7)
START = {"a": _RNG.standard_normal(3), "b": _RNG.standard_normal((2, 2))}


def flatten(params):
    return np.concatenate([np.asarray(params["a"]).ravel(), np.asarray(params["b"]).ravel()])


def unflatten(x):
    return {"a": x[:3], "b": x[3:].reshape(2, 2)}


def quadratic(params):
    x = jnp.concatenate([params["a"].ravel(), params["b"].ravel()])
    return 0.5 * x @ jnp.asarray(HESSIAN) @ x - jnp.asarray(LINEAR) @ x


def np_gradient(x):
    return HESSIAN @ x - LINEAR


def run_unit_step(transform, lr, steps):
    """The engine's convention: params <- params + lr * update(unit step)."""
    params = jax.tree_util.tree_map(jnp.asarray, START)
    state = transform.init(params)
    path = []
    for _ in range(steps):
        grads = jax.grad(quadratic)(params)
        updates, state = transform.update(grads, state, params)
        params = jax.tree_util.tree_map(lambda p, u: p + lr * u, params, updates)
        path.append(flatten(params))
    return np.array(path)


def run_optax(transform, steps):
    params = jax.tree_util.tree_map(jnp.asarray, START)
    state = transform.init(params)
    path = []
    for _ in range(steps):
        grads = jax.grad(quadratic)(params)
        updates, state = transform.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        path.append(flatten(params))
    return np.array(path)


CONFIG = OptimizerConfig(lr=1.0, momentum=0.7, b1=0.8, b2=0.95, eps=1e-6, decay=0.9)


def optax_reference(name, lr, config=CONFIG):
    return {
        "gd": lambda: optax.sgd(lr),
        "momentum": lambda: optax.sgd(lr, momentum=config.momentum),
        "nesterov": lambda: optax.sgd(lr, momentum=config.momentum, nesterov=True),
        "adam": lambda: optax.adam(lr, b1=config.b1, b2=config.b2, eps=config.eps),
        "adagrad": lambda: optax.adagrad(lr),
        "adadelta": lambda: optax.adadelta(lr),
        "rmsprop": lambda: optax.rmsprop(lr, decay=config.decay, eps=config.eps),
    }[name]()


@pytest.mark.parametrize("lr", [1e-3, 0.05, 0.7])
@pytest.mark.parametrize("name", ["gd", "momentum", "nesterov", "adam", "adagrad", "adadelta", "rmsprop"])
def test_unit_step_times_lr_equals_optax_with_learning_rate(name, lr):
    config = OptimizerConfig(name=name, lr=1.0, momentum=CONFIG.momentum, b1=CONFIG.b1, b2=CONFIG.b2,
                             eps=CONFIG.eps, decay=CONFIG.decay)
    ours = run_unit_step(direction_transform(config), lr, steps=6)
    reference = run_optax(optax_reference(name, lr), steps=6)
    np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-14)
    assert not np.allclose(ours[-1], flatten(START))  # the rule moved the parameters


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_is_heavy_ball_in_numpy(nesterov):
    lr, beta, steps = 0.05, 0.7, 6
    name = "nesterov" if nesterov else "momentum"
    ours = run_unit_step(direction_transform(OptimizerConfig(name=name, momentum=beta)), lr, steps)
    x, velocity, path = flatten(START), np.zeros(7), []
    for _ in range(steps):
        g = np_gradient(x)
        velocity = beta * velocity + g
        x = x - lr * (g + beta * velocity if nesterov else velocity)
        path.append(x.copy())
    np.testing.assert_allclose(ours, np.array(path), rtol=1e-12, atol=1e-14)


def test_gd_is_plain_gradient_descent_in_numpy():
    lr, steps = 0.1, 5
    ours = run_unit_step(direction_transform(OptimizerConfig(name="gd")), lr, steps)
    x, path = flatten(START), []
    for _ in range(steps):
        x = x - lr * np_gradient(x)
        path.append(x.copy())
    np.testing.assert_allclose(ours, np.array(path), rtol=1e-13)


def np_normalized_gd(lr, steps, decay=0.99, eps=1e-4):
    x, average, path = flatten(START), 0.0, []
    for t in range(1, steps + 1):
        g = np_gradient(x)
        average = decay * average + (1 - decay) * np.sum(g**2)  # squared *global* norm
        corrected = average / (1 - decay**t)
        x = x - lr * g / (np.sqrt(corrected) + eps)
        path.append(x.copy())
    return np.array(path)


@pytest.mark.parametrize("lr", [1e-3, 0.1])
@pytest.mark.parametrize("decay", [0.99, 0.9])
def test_normalized_gd_matches_its_docstring_in_numpy(lr, decay):
    reference = np_normalized_gd(lr, steps=8, decay=decay)
    unit = run_unit_step(direction_transform(OptimizerConfig(name="normalized_gd", decay=decay)), lr, steps=8)
    np.testing.assert_allclose(unit, reference, rtol=1e-12, atol=1e-14)
    scaled = run_optax(normalized_gd(lr, decay=decay), steps=8)
    np.testing.assert_allclose(scaled, reference, rtol=1e-12, atol=1e-14)


def test_normalized_gd_first_step_has_length_about_lr():
    # at t = 1, v_hat = ||g||^2, so the step is lr * g / (||g|| + eps): length lr ||g|| / (||g|| + eps)
    lr = 0.3
    path = run_unit_step(direction_transform(OptimizerConfig(name="normalized_gd")), lr, steps=1)
    g = np_gradient(flatten(START))
    step = path[0] - flatten(START)
    norm = np.linalg.norm(g)
    assert np.linalg.norm(step) == pytest.approx(lr * norm / (norm + 1e-4), rel=1e-12)
    # the direction is exactly minus the gradient
    np.testing.assert_allclose(step / np.linalg.norm(step), -g / norm, rtol=1e-12, atol=1e-15)


def test_normalized_gd_state_counts_steps():
    transform = normalized_gd(1.0)
    params = jax.tree_util.tree_map(jnp.asarray, START)
    state = transform.init(params)
    grads = jax.grad(quadratic)(params)
    for t in range(1, 4):
        _, state = transform.update(grads, state, params)
        assert int(state.count) == t
    squared = np.sum(np_gradient(flatten(START)) ** 2)
    expected = (1 - 0.99**3) * squared  # EMA of a constant from v_0 = 0
    assert float(state.squared_norm_average) == pytest.approx(expected, rel=1e-12)
