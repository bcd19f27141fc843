"""The ``ntk_two_layer`` family, its closed forms (empirical NTK, kernel regression under GD and gradient
flow, the 1/sqrt(m) fit) against independent references, and the ``lazy-rich`` preset.

References: the NTK as J J^T from ``jax.jacfwd`` (dense, float64); kernel regression against a plain
GD loop on the dense linear model and against scipy's ODE solver; the slope against
``scipy.stats.linregress``.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import dataclasses  # noqa: E402
import math  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402
from scipy.stats import linregress  # noqa: E402

import trajlab  # noqa: E402
from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig  # noqa: E402
from trajlab.engine.task import run_configs  # noqa: E402
from trajlab.families.ntk_networks import (  # noqa: E402
    NTKTwoLayer,
    empirical_ntk,
    ntk_apply,
    ntk_regression,
    output_signs,
    single_index_data,
)
from trajlab.presets import get_preset  # noqa: E402
from trajlab.presets.claims import check_claims  # noqa: E402
from trajlab.presets.lazy_rich import alpha_figure, lazy_rich_figures, slope, width_figure  # noqa: E402
from trajlab.problems.registry import make_data  # noqa: E402
from helpers import invoke, run_quick  # noqa: E402


def _jacobian_ntk(hidden, signs, x1, x2, train_output):
    """J(x1) J(x2)^T of h = f / alpha, with J from jax.jacfwd over the flattened parameters."""
    width = hidden.shape[0]

    def h(theta, x):
        w = theta[: hidden.size].reshape(hidden.shape)
        a = theta[hidden.size:] if train_output else jnp.asarray(signs)
        return jax.nn.relu(x @ w.T) @ a / math.sqrt(width)

    theta = jnp.concatenate([jnp.ravel(hidden), jnp.asarray(signs)]) if train_output else jnp.ravel(hidden)
    j1, j2 = jax.jacfwd(h)(theta, jnp.asarray(x1)), jax.jacfwd(h)(theta, jnp.asarray(x2))
    return np.asarray(j1 @ j2.T)


@pytest.mark.parametrize("train_output", [False, True])
def test_empirical_ntk_matches_the_jacobian_product(train_output):
    rng = np.random.default_rng(0)
    hidden, signs = rng.standard_normal((12, 4)), output_signs(12, True) * rng.uniform(0.5, 2, 12)
    x1, x2 = rng.standard_normal((5, 4)), rng.standard_normal((3, 4))
    np.testing.assert_allclose(empirical_ntk(hidden, signs, x1, x2, train_output),
                               _jacobian_ntk(hidden, signs, x1, x2, train_output), rtol=1e-12, atol=1e-13)


def test_kernel_regression_gd_form_matches_a_plain_gd_loop_on_the_linear_model():
    """Linear model f = f0 + J delta with Theta = J J^T: GD on (1/2n)||f - y||^2 with step lr."""
    rng = np.random.default_rng(1)
    n, p, lr, steps = 6, 9, 0.7, 40
    jac, jac_test = rng.standard_normal((n, p)) / 2, rng.standard_normal((4, p)) / 2
    f0, f0t, y = rng.standard_normal(n), rng.standard_normal(4), rng.standard_normal(n)
    delta = np.zeros(p)
    for _ in range(steps):
        delta -= lr * jac.T @ (f0 + jac @ delta - y) / n
    train, test = ntk_regression(jac @ jac.T, jac_test @ jac.T, f0, f0t, y, steps * lr, lr)
    np.testing.assert_allclose(train, f0 + jac @ delta, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(test, f0t + jac_test @ delta, rtol=1e-11, atol=1e-12)


def test_kernel_regression_flow_form_matches_scipy_ode_solver():
    """d delta / dt = -(1/n) J^T (f0 + J delta - y) integrated by scipy (rank-deficient Theta: p < n)."""
    rng = np.random.default_rng(2)
    n, p, t = 7, 4, 3.5
    jac, jac_test = rng.standard_normal((n, p)), rng.standard_normal((3, p))
    f0, f0t, y = rng.standard_normal(n), rng.standard_normal(3), rng.standard_normal(n)
    solution = solve_ivp(lambda _, d: -jac.T @ (f0 + jac @ d - y) / n, (0, t), np.zeros(p), rtol=1e-11, atol=1e-12)
    delta = solution.y[:, -1]
    train, test = ntk_regression(jac @ jac.T, jac_test @ jac.T, f0, f0t, y, t)
    np.testing.assert_allclose(train, f0 + jac @ delta, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(test, f0t + jac_test @ delta, rtol=1e-7, atol=1e-8)


def test_slope_fit_matches_scipy_linregress():
    rng = np.random.default_rng(3)
    m = np.array([64, 128, 256, 512, 1024.0])
    y = 3.0 * m**-0.5 * np.exp(0.05 * rng.standard_normal(5))
    assert slope(m, y) == pytest.approx(linregress(np.log(m), np.log(y)).slope, rel=1e-12)
    assert slope(m, 2.0 / np.sqrt(m)) == pytest.approx(-0.5, abs=1e-12)


def _config(**model):
    return RunConfig(
        problem=ProblemConfig("single_index", dim=4, observations=10, test_samples=6, link="abs", seed=2),
        model=ModelConfig("ntk_two_layer", **{"width": 16, "alpha": 2.0, **model}),
        optimizer=OptimizerConfig(name="gd", lr=0.5),
        train=TrainConfig(max_steps=50, tol=0.0, record="linear", record_every=25, x64=True),
        metrics=("train_loss", "train_mse", "test_mse", "linearization"),
        seed=4,
    )


def test_symmetric_init_outputs_zero_and_the_loss_is_the_scaled_squared_error():
    config = _config()
    params = trajlab.init_params(dataclasses.replace(config, metrics=("train_loss",)))
    data = make_data(config.problem)
    np.testing.assert_array_equal(np.asarray(params.hidden[:8]), np.asarray(params.hidden[8:]))
    signs = output_signs(16, True)
    assert np.abs(np.asarray(ntk_apply(params, data.inputs, 2.0, signs))).max() < 1e-15
    moved = NTKTwoLayer(params.hidden + 0.1, None)
    f = 2.0 / 4.0 * np.maximum(np.asarray(data.inputs) @ np.asarray(moved.hidden).T, 0) @ signs
    task_loss = trajlab.engine.task.build_task(dataclasses.replace(config, metrics=("train_loss",))).loss
    expected = np.sum((f - np.asarray(data.outputs)) ** 2) / (2 * 4.0 * 10)
    assert float(task_loss(moved, jax.tree_util.tree_map(jnp.asarray, data))) == pytest.approx(expected, rel=1e-12)
    x = np.asarray(data.inputs)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(data.outputs), np.abs(2.0 * x[:, 0]), rtol=1e-12)


@pytest.mark.parametrize("train_output", [True])
def test_engine_linearization_is_kernel_regression_with_the_init_ntk(train_output):
    """The linearization the engine trains beside the run is, on the train set, GD kernel regression
    with the empirical NTK at init: its loss equals (1/2 alpha^2) MSE of the closed form."""
    config = _config(train_output=train_output)
    params = trajlab.init_params(dataclasses.replace(config, metrics=("train_loss",)))
    data = single_index_data(config.problem)
    signs = output_signs(16, True) if params.output is None else np.asarray(params.output)
    theta = empirical_ntk(params.hidden, signs, data.inputs, data.inputs, train_output)
    theta_st = empirical_ntk(params.hidden, signs, data.test_inputs, data.inputs, train_output)
    zero_train, zero_test = np.zeros(10), np.zeros(6)
    rows = run_configs([config]).trajectory
    for index, step in enumerate(rows["step"]):
        train, _ = ntk_regression(theta, theta_st, zero_train, zero_test, data.outputs, step * 0.5, 0.5)
        expected = np.mean((train - data.outputs) ** 2) / (2 * 2.0**2)
        assert rows["linearization_train_loss"][index] == pytest.approx(expected, rel=1e-9, abs=1e-14)


@pytest.mark.parametrize(
    "assignment, field",
    [
        ("model.alpha=0", "model.alpha"),
        ("model.width=33", "model.width"),
        ("model.width=0", "model.width"),
        ("problem.link=cubic", "problem.link"),
        ("problem.dim=1", "problem.dim"),
        ("problem.noise=-1", "problem.noise"),
        ("problem.observations=0", "problem.observations"),
        ("problem.test_samples=-1", "problem.test_samples"),
    ],
)
def test_bad_fields_are_one_line_errors(assignment, field, tmp_path):
    result = invoke("run", "lazy-rich", "--quick", "--no-progress", "--no-figures", "--out", tmp_path / "x",
                    "--set", assignment)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and field in lines[0], result.stderr


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return trajlab.load(run_quick(tmp_path_factory, "lazy-rich"))


def test_quick_preset_claims_hold(quick):
    runs = quick.runs
    assert len(runs) == 12 and (runs["status"] == "max_steps").all()
    checks = check_claims(get_preset("lazy-rich").claims, quick)
    assert [c.holds for c in checks] == [True] * 5, [c.measured for c in checks]
    # independent of the claim code: movement slope by scipy on the raw finals
    width = runs[runs["problem.link"] == "relu"].groupby("model.width")["final.max_neuron_movement"].median()
    assert linregress(np.log(width.index.to_numpy(float)), np.log(width.to_numpy())).slope == pytest.approx(-0.5, abs=0.1)


def test_figures_draw_on_the_quick_data(quick):
    figures = lazy_rich_figures(quick)
    assert set(figures) == {"width_scaling", "alpha_regimes"}
    assert len(width_figure(quick).axes) == 3 and len(alpha_figure(quick).axes) == 3
