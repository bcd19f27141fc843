"""The ``singular-gaps`` preset, its problem/family (:mod:`trajlab.families.mode_problems`) and the
closed forms sigma_2(sigma_1) of :mod:`trajlab.theory.depth_modes`.

Independent references: scipy's ODE solver on the coupled singular-value ODEs, finite differences,
and the loss and gradient written out by hand.
"""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from trajlab.presets import get_preset
from trajlab.presets.claims import check_claims
from trajlab.store import load
from trajlab.theory.depth_modes import (
    depth_potential,
    inverse_depth_potential,
    partner_bound,
    partner_singular_value,
)
from helpers import invoke, run_quick


def _coupled(depth, weights, value, sigma0, t_end):
    """d sigma_r/dt = N a_r sigma_r^(2-2/N) (y - sum_r a_r sigma_r) by scipy (DOP853)."""
    weights = np.asarray(weights, float)

    def rhs(_, sigma):
        g = value - weights @ sigma
        return depth * weights * np.abs(sigma) ** (2.0 - 2.0 / depth) * g

    return solve_ivp(rhs, (0.0, t_end), np.asarray(sigma0, float), method="DOP853", rtol=1e-12, atol=1e-14,
                     dense_output=True)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("weights, sigma0", [((1.0, 0.5), (1e-2, 1e-2)), ((1.0, 0.8), (0.05, 0.02)), ((2.0, 0.5), (0.1, 0.3))])
def test_partner_singular_value_matches_scipy_ode(depth, weights, sigma0):
    solution = _coupled(depth, weights, 5.0, sigma0, 3.0)
    sigma = solution.sol(np.linspace(0.0, 3.0, 60))
    c = weights[1] / weights[0]
    predicted = partner_singular_value(sigma[0], depth, sigma0[0], sigma0[1], c)
    np.testing.assert_allclose(predicted, sigma[1], rtol=1e-8)


@pytest.mark.parametrize("depth", [3, 4, 6])
def test_partner_bound_is_the_limit_of_the_ode(depth):
    """With a constant driving factor sigma_1 blows up (finite time for N >= 3); sigma_2 stays below the
    bound and approaches it."""
    weights, sigma0 = np.array([1.0, 0.5]), np.array([1e-2, 1e-2])

    def rhs(_, sigma):
        return depth * weights * sigma ** (2.0 - 2.0 / depth)

    def large(_, sigma):
        return sigma[0] - 1e9

    large.terminal = True
    solution = solve_ivp(rhs, (0.0, 1e6), sigma0, method="DOP853", rtol=1e-12, atol=1e-16, events=large)
    bound = float(partner_bound(depth, sigma0[0], sigma0[1], 0.5))
    assert np.all(solution.y[1] <= bound * (1 + 1e-9))
    p = 1 - 2 / depth
    # sigma_2^-p = bound^-p + c sigma_1^-p at sigma_1 = 1e9
    assert solution.y[1, -1] ** -p == pytest.approx(bound**-p + 0.5 * 1e9**-p, rel=1e-7)
    assert bound == pytest.approx(1e-2 * 0.5 ** (-1 / p), rel=1e-12)
    assert math.isinf(float(partner_bound(2, 1e-2, 1e-2, 0.5))) and math.isinf(float(partner_bound(1, 1e-2, 1e-2, 0.5)))


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_depth_potential_derivative_and_inverse(depth):
    sigma = np.array([0.01, 0.3, 2.0, 40.0])
    h = 1e-6 * sigma
    derivative = (depth_potential(sigma + h, depth) - depth_potential(sigma - h, depth)) / (2 * h)
    np.testing.assert_allclose(derivative, sigma ** -(2.0 - 2.0 / depth), rtol=1e-7)
    np.testing.assert_allclose(inverse_depth_potential(depth_potential(sigma, depth), depth), sigma, rtol=1e-12)


def test_problem_loss_and_diagonal_gradient_by_hand():
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from trajlab.config import ProblemConfig
    from trajlab.problems import loss_function, make_data

    config = ProblemConfig("diagonal_measurement", m=3, n=2, weights=(2.0, 0.5), value=4.0)
    data = make_data(config)
    np.testing.assert_array_equal(data.measurement, [[2.0, 0.0], [0.0, 0.5], [0.0, 0.0]])
    w = np.array([[1.0, 7.0], [-3.0, 2.0], [5.0, 1.0]])
    loss = loss_function(config)
    assert float(loss(jnp.asarray(w), data)) == pytest.approx(0.5 * (2.0 * 1.0 + 0.5 * 2.0 - 4.0) ** 2)
    gradient = np.asarray(jax.grad(loss)(jnp.asarray(w), data))
    np.testing.assert_allclose(gradient, (2.0 + 1.0 - 4.0) * data.measurement)


# ---------------------------------------------------------------------------------------------
# the quick preset, run once


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return load(run_quick(tmp_path_factory, "singular-gaps"))


def test_quick_claims_hold(quick):
    checks = check_claims(get_preset("singular-gaps").claims, quick)
    assert [c.holds for c in checks] == [True] * 4, [c.measured for c in checks]


def test_quick_flow_matches_scipy_ode(quick):
    """The engine's gradient flow on the factorization against scipy on the singular-value ODEs."""
    runs = quick.runs
    assert len(runs) == 8
    for depth in (1, 2, 3, 4):
        run = runs[(runs["model.depth"] == depth) & np.isclose(runs["model.scale"], 1e-3)].iloc[0]
        trajectory = quick.trajectories[quick.trajectories["run_id"] == run["run_id"]].sort_values("t")
        t = trajectory["t"].to_numpy()
        solution = _coupled(depth, (1.0, 0.5), 10.0, (1e-3, 1e-3), float(t[-1]))
        reference = solution.sol(t)
        np.testing.assert_allclose(trajectory["diag_0"], reference[0], rtol=1e-6)
        np.testing.assert_allclose(trajectory["diag_1"], reference[1], rtol=1e-6)
        np.testing.assert_array_equal(trajectory["off_diagonal_norm"], 0.0)
        assert trajectory["diag_0"].iloc[-1] > 7.5  # sigma_1 grew by >= 7500x


def test_quick_figures_draw(quick):
    import matplotlib

    matplotlib.use("Agg")
    from trajlab.presets.singular_gaps import singular_gaps_figures

    figures = singular_gaps_figures(quick)
    assert set(figures) == {"gap", "singular_values"}
    assert len(figures["gap"].axes) == 4


@pytest.mark.parametrize(
    "assignment, field",
    [
        ("problem.m=0", "problem.m"),
        ("problem.n=-3", "problem.n"),
        ("problem.weights=[1.0,-0.5]", "problem.weights"),
        ("problem.weights=[1.0,0.5,0.2]", "problem.weights"),
        ("problem.value=0", "problem.value"),
        ("model.depth=0", "model.depth"),
        ("model.width=0", "model.width"),
        ("model.init=zeros", "model.init"),
        ("model.scale=-1", "model.scale"),
        ("model.parameterization=other", "model.parameterization"),
        ("model.condition=maybe", "model.condition"),
    ],
)
def test_bad_field_is_a_one_line_error(tmp_path, assignment, field):
    result = invoke("run", "singular-gaps", "--quick", "--set", assignment, "--out", tmp_path / "x")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}"), result.output
    assert not (tmp_path / "x").exists()
