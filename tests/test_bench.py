"""Tests of trajlab.bench: the numpy reference against finite differences, jax.grad and trajlab's
normalized GD, and the shape of what run_benchmarks returns."""

from __future__ import annotations

import io
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rich.console import Console

from trajlab.bench import (
    NumpyNormalizedGD,
    headline_config,
    numpy_init,
    numpy_loss_and_grad,
    numpy_normalized_gd_step,
    run_benchmarks,
)
from trajlab.config import ProblemConfig
from trajlab.dynamics.optimizers import normalized_gd
from trajlab.models.deep_linear import end_to_end
from trajlab.problems.matrix import completion_loss, make_matrix_problem

SHAPES = [(4, 5), (4, 4), (6, 4)]  # depth 3: n = 5 -> width 4 -> m = 6


def tiny_problem(observations: int = 12):
    data = make_matrix_problem(ProblemConfig(m=6, n=5, rank=2, observations=observations, seed=3))
    return data.rows.astype(np.int64), data.cols.astype(np.int64), data.values


def numpy_loss(layers, rows, cols, values):
    product = layers[0]
    for layer in layers[1:]:
        product = layer @ product
    return np.mean((product[rows, cols] - values) ** 2)


def test_numpy_gradient_matches_central_differences():
    rows, cols, values = tiny_problem()
    layers = numpy_init(SHAPES, scale=1.0, seed=0, dtype=np.float64)
    _, grads = numpy_loss_and_grad(layers, rows, cols, values)
    h = 1e-6
    for j, layer in enumerate(layers):
        numeric = np.zeros_like(layer)
        for index in np.ndindex(layer.shape):
            plus = [w.copy() for w in layers]
            minus = [w.copy() for w in layers]
            plus[j][index] += h
            minus[j][index] -= h
            numeric[index] = (numpy_loss(plus, rows, cols, values) - numpy_loss(minus, rows, cols, values)) / (2 * h)
        np.testing.assert_allclose(grads[j], numeric, rtol=1e-6, atol=1e-9)


def test_numpy_loss_and_gradient_match_jax_grad_of_trajlab_loss():
    rows, cols, values = tiny_problem()
    layers = numpy_init(SHAPES, scale=1.0, seed=1, dtype=np.float64)
    loss, grads = numpy_loss_and_grad(layers, rows, cols, values)

    def jax_loss(params):
        return completion_loss(end_to_end(params), jnp.asarray(rows), jnp.asarray(cols), jnp.asarray(values, jnp.float32))

    params = tuple(jnp.asarray(w, jnp.float32) for w in layers)
    jax_value, jax_grads = jax.value_and_grad(jax_loss)(params)
    assert float(jax_value) == pytest.approx(loss, rel=1e-5)
    for mine, theirs in zip(grads, jax_grads):
        np.testing.assert_allclose(mine, np.asarray(theirs), rtol=1e-4, atol=1e-6 * np.abs(mine).max())


def test_repeated_observations_count_once_each():
    rows, cols, values = tiny_problem(4)
    rows2, cols2, values2 = np.tile(rows, 2), np.tile(cols, 2), np.tile(values, 2)
    layers = numpy_init(SHAPES, scale=1.0, seed=2, dtype=np.float64)
    loss, grads = numpy_loss_and_grad(layers, rows, cols, values)
    loss2, grads2 = numpy_loss_and_grad(layers, rows2, cols2, values2)  # the mean is unchanged
    assert loss2 == pytest.approx(loss)
    for g, g2 in zip(grads, grads2):
        np.testing.assert_allclose(g2, g, rtol=1e-12, atol=1e-15)


def test_numpy_normalized_gd_matches_trajlab_for_a_few_steps():
    rows, cols, values = tiny_problem()
    layers = numpy_init(SHAPES, scale=1.0, seed=4, dtype=np.float32)
    lr, decay = 0.05, 0.9
    optimizer = normalized_gd(1.0, decay=decay)  # unit step; the engine applies params + lr * update
    params = tuple(jnp.asarray(w) for w in layers)
    opt_state = optimizer.init(params)
    state = NumpyNormalizedGD()

    def jax_loss(params):
        return completion_loss(end_to_end(params), jnp.asarray(rows), jnp.asarray(cols), jnp.asarray(values, jnp.float32))

    for _ in range(5):
        _, grads = numpy_loss_and_grad(layers, rows, cols, values)
        layers, state = numpy_normalized_gd_step(layers, grads, state, lr, decay)
        updates, opt_state = optimizer.update(jax.grad(jax_loss)(params), opt_state, params)
        params = tuple(p + lr * u for p, u in zip(params, updates))
    assert state.count == int(opt_state.count) == 5
    assert state.average == pytest.approx(float(opt_state.squared_norm_average), rel=1e-4)
    for mine, theirs in zip(layers, params):
        np.testing.assert_allclose(mine, np.asarray(theirs), rtol=1e-4, atol=1e-5 * np.abs(mine).max())


def test_numpy_init_follows_the_gaussian_e2e_convention():
    layers = numpy_init([(200, 300), (200, 200), (100, 200)], scale=1e-3, seed=0, dtype=np.float64)
    expected_std = 1e-3 ** (1 / 3) / math.sqrt(200)
    for layer in layers:
        assert layer.std() == pytest.approx(expected_std, rel=0.02)


def test_headline_config_is_the_issue_headline():
    config = headline_config()
    assert (config.problem.kind, config.problem.m, config.problem.n) == ("completion", 100, 100)
    assert (config.problem.rank, config.problem.observations, config.model.depth) == (5, 2000, 3)
    assert (config.model.init, config.model.scale) == ("gaussian_e2e", 1e-3)
    assert (config.optimizer.name, config.optimizer.lr) == ("normalized_gd", 1e-3)
    assert (config.train.tol, config.train.max_steps, config.train.x64) == (1e-6, 1_000_000, False)


def test_run_benchmarks_returns_positive_finite_throughputs():
    buffer = io.StringIO()
    result = run_benchmarks([1, 2], steps=20, headline=False, console=Console(file=buffer, width=150))
    assert result["headline"] is None
    assert result["dtype"] == "float32"
    assert result["machine"]["device"]
    reference = result["numpy"]["steps_per_s"]
    assert math.isfinite(reference) and reference > 0
    assert [row["batch"] for row in result["throughput"]] == [1, 2]
    for row in result["throughput"]:
        for key in ("run_steps_per_s", "run_steps_per_s_median", "ratio_to_numpy", "ratio_to_numpy_median"):
            assert math.isfinite(row[key]) and row[key] > 0, key
        assert row["run_steps"] == 20 * row["batch"]  # tol = 0: no run stopped
        assert row["active_runs"] == row["batch"]
        assert row["ratio_to_numpy"] == pytest.approx(row["run_steps_per_s"] / reference)
        assert row["compile_s"] > 0
    text = buffer.getvalue()
    assert "numpy, 1" in text and "engine, 2" in text and "float32" in text


@pytest.mark.slow
def test_headline_run_reaches_the_tolerance():
    """The engine's headline run (the numpy loop's whole run is a benchmark figure, not run here:
    its stopping rule is checked on 60 steps below)."""
    from trajlab.bench import headline_config, headline_run

    headline = headline_run(headline_config())
    assert headline["status"] == "done"
    assert headline["final_train_loss"] <= 1e-6
    assert 0 < headline["compile_s"] < headline["wall_s"]


def test_numpy_headline_run_stops_at_the_tolerance():
    from trajlab.bench import (NumpyNormalizedGD, _hidden_width, _layer_shapes, _numpy_problem, headline_config,
                               numpy_headline_run, numpy_init, numpy_loss_and_grad, numpy_normalized_gd_step)

    config = headline_config(max_steps=60)
    rows, cols, values = _numpy_problem(config, np.float32)
    layers = numpy_init(_layer_shapes(config), config.model.scale, config.seed, np.float32, _hidden_width(config))
    state, losses = NumpyNormalizedGD(), []
    for _ in range(30):
        loss, grads = numpy_loss_and_grad(layers, rows, cols, values)
        losses.append(loss)
        layers, state = numpy_normalized_gd_step(layers, grads, state, config.optimizer.lr, config.optimizer.decay)
    capped = numpy_headline_run(config)
    assert capped["status"] == "max_steps" and capped["steps"] == 60
    stop = min(range(30), key=lambda k: losses[k])  # the first step whose loss is the lowest so far
    tol = losses[stop]
    first = next(k for k in range(30) if losses[k] <= tol)
    stopped = numpy_headline_run(headline_config(max_steps=60, tol=tol))
    assert stopped["status"] == "done" and stopped["steps"] == first
