"""The ``saddle-order`` preset and the single-mode closed forms of :mod:`trajlab.theory.depth_modes`.

Independent references: scipy's ODE solver (solve_ivp with an event at s/2) for the escape time,
central finite differences in numpy for the Hessian at the origin, exact polynomial interpolation
of e -> L(e A) for the directional derivatives.
"""

import json
import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from trajlab.presets import get_preset
from trajlab.presets.claims import check_claims
from trajlab.store import load
from trajlab.theory.depth_modes import (
    depth_two_origin_hessian_eigenvalues,
    escape_time,
    escape_time_leading,
    escape_time_quadrature,
    mode_time,
    mode_velocity,
    origin_directional_derivative,
)
from helpers import run_quick


def _ode_escape_time(u0, s, depth, level=0.5):
    """The time du/dt = N u^(2-2/N) (s - u) needs from u0 to level s, integrated in log u by scipy."""

    def rhs(_, y):
        u = math.exp(y[0])
        return [depth * u ** (1.0 - 2.0 / depth) * (s - u)]

    def reach(_, y):
        return y[0] - math.log(level * s)

    reach.terminal = True
    solution = solve_ivp(rhs, (0.0, 1e7), [math.log(u0)], method="DOP853", rtol=1e-12, atol=1e-12, events=reach)
    return float(solution.t_events[0][0])


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("u0, s", [(0.1, 1.0), (1e-4, 1.0), (1e-3, 2.0), (0.05, 0.5)])
def test_escape_time_closed_form_matches_scipy_ode(depth, u0, s):
    expected = _ode_escape_time(u0, s, depth)
    assert float(escape_time(u0, s, depth)) == pytest.approx(expected, rel=1e-8)
    assert escape_time_quadrature(u0, s, depth) == pytest.approx(expected, rel=1e-8)


def test_mode_time_is_additive_and_matches_saxe_for_depth_two():
    # t(u0 -> u2) = t(u0 -> u1) + t(u1 -> u2); depth 2 is Saxe et al.'s Eq. 7
    for depth in (2, 3, 4):
        whole = mode_time(1e-3, 0.9, 1.5, depth)
        assert float(whole) == pytest.approx(float(mode_time(1e-3, 0.2, 1.5, depth) + mode_time(0.2, 0.9, 1.5, depth)), rel=1e-12)
    u0, u1, s = 1e-3, 0.9, 1.5
    saxe = math.log(u1 * (s - u0) / (u0 * (s - u1))) / (2 * s)
    assert float(mode_time(u0, u1, s, 2)) == pytest.approx(saxe, rel=1e-12)
    assert float(mode_velocity(0.5, 1.0, 2)) == pytest.approx(2 * 0.5 * 0.5)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_escape_time_approaches_the_leading_law(depth):
    gaps = [abs(float(escape_time(u0, 1.0, depth)) / float(escape_time_leading(u0, 1.0, depth)) - 1) for u0 in (1e-4, 1e-8, 1e-12)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.02


def _whitened_loss(layers, target):
    product = layers[0]
    for layer in layers[1:]:
        product = layer @ product
    return 0.5 * np.sum((product - target) ** 2)


def _shapes(m, n, width, depth):
    dims = [n] + [width] * (depth - 1) + [m]
    return [(dims[j + 1], dims[j]) for j in range(depth)]


def _unflatten(vector, shapes):
    out, start = [], 0
    for shape in shapes:
        size = shape[0] * shape[1]
        out.append(vector[start:start + size].reshape(shape))
        start += size
    return out


def _finite_difference_hessian(target, width, depth, h=1e-3):
    m, n = target.shape
    shapes = _shapes(m, n, width, depth)
    size = sum(a * b for a, b in shapes)
    loss = lambda v: _whitened_loss(_unflatten(v, shapes), target)  # noqa: E731
    hessian = np.zeros((size, size))
    eye = np.eye(size) * h
    for i in range(size):
        for j in range(size):
            hessian[i, j] = (loss(eye[i] + eye[j]) - loss(eye[i] - eye[j]) - loss(eye[j] - eye[i]) + loss(-eye[i] - eye[j])) / (4 * h * h)
    return hessian


def test_depth_two_hessian_at_origin_matches_finite_differences():
    rng = np.random.default_rng(1)
    target = rng.standard_normal((2, 3))
    hessian = _finite_difference_hessian(target, width=2, depth=2)
    eigenvalues = np.linalg.eigvalsh(0.5 * (hessian + hessian.T))
    np.testing.assert_allclose(eigenvalues, depth_two_origin_hessian_eigenvalues(target, 2), atol=1e-6)
    assert eigenvalues[0] == pytest.approx(-np.linalg.svd(target, compute_uv=False)[0], rel=1e-6)
    # depth 3: the second differences at the origin vanish up to O(h) (the cubic term)
    deep = _finite_difference_hessian(target, width=2, depth=3, h=1e-4)
    assert np.abs(deep).max() < 1e-3


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_origin_directional_derivative_matches_polynomial_interpolation(depth):
    rng = np.random.default_rng(depth)
    target = rng.standard_normal((2, 3))
    shapes = _shapes(2, 3, 3, depth)
    direction = [rng.standard_normal(shape) for shape in shapes]
    # e -> L(e A) is a polynomial of degree 2N: interpolate it exactly on 2N + 1 points
    points = np.linspace(-1.0, 1.0, 2 * depth + 1)
    values = [_whitened_loss([e * a for a in direction], target) for e in points]
    coefficients = np.polynomial.polynomial.polyfit(points, values, 2 * depth)
    for k in range(1, depth):
        assert abs(coefficients[k]) < 1e-9
    assert origin_directional_derivative(target, direction) == pytest.approx(math.factorial(depth) * coefficients[depth], rel=1e-8)


# ---------------------------------------------------------------------------------------------
# the quick preset, run once


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return load(run_quick(tmp_path_factory, "saddle-order"))


def test_quick_claims_hold(quick):
    checks = check_claims(get_preset("saddle-order").claims, quick)
    assert [c.holds for c in checks] == [True] * 4, [c.measured for c in checks]


def test_quick_runs_stop_at_half_and_match_the_scipy_ode(quick):
    runs = quick.runs
    assert len(runs) == 18 and set(runs["status"]) == {"done"}
    for depth, scale in ((2, 1e-6), (3, 1e-2), (4, 1e-5)):
        run = runs[(runs["model.depth"] == depth) & np.isclose(runs["model.scale"], scale)].iloc[0]
        trajectory = quick.trajectories[quick.trajectories["run_id"] == run["run_id"]].sort_values("t")
        u, t = trajectory["mode_0"].to_numpy(), trajectory["t"].to_numpy()
        assert u[0] == pytest.approx(scale, rel=1e-12) and u[-1] >= 0.5 > u[-2]
        expected = _ode_escape_time(scale, 1.0, depth)
        assert t[-2] <= expected <= t[-1]
        # a point on the plateau: the ODE's time to reach the recorded value
        middle = len(u) // 2
        assert t[middle] == pytest.approx(_ode_escape_time(scale, 1.0, depth, level=u[middle]), rel=1e-6)


def test_quick_origin_rows_against_finite_differences(quick):
    from trajlab.config import ProblemConfig
    from trajlab.presets.saddle_order import HESSIAN_PROBLEM, HESSIAN_WIDTH
    from trajlab.problems import make_data

    rows = quick.baselines[quick.baselines["baseline"] == "origin_hessian"].set_index("model.depth")
    assert sorted(rows.index) == [2, 3, 4]
    target = make_data(ProblemConfig(**HESSIAN_PROBLEM)).target
    reference = np.linalg.eigvalsh(_finite_difference_hessian(np.asarray(target), HESSIAN_WIDTH, 2))
    np.testing.assert_allclose(json.loads(rows.loc[2, "hessian_eigenvalues"]), reference, atol=1e-6)
    assert rows.loc[2, "hessian_min_eigenvalue"] < -1.9
    for depth in (3, 4):
        assert rows.loc[depth, "hessian_max_abs"] == 0.0 and rows.loc[depth, "gradient_norm"] == 0.0
        assert abs(rows.loc[depth, "order_n_derivative"]) > 1.0


def test_quick_figures_draw(quick):
    import matplotlib

    matplotlib.use("Agg")
    from trajlab.presets.saddle_order import saddle_order_figures

    figures = saddle_order_figures(quick)
    assert set(figures) == {"escape_curves", "escape_time", "origin_derivatives"}
    assert all(len(figure.axes) >= 1 for figure in figures.values())


def test_user_time_unit_is_kept():
    preset = get_preset("saddle-order")
    configs = preset.configs({"optimizer.lr": 0.5}, quick=True)
    assert {c.optimizer.lr for c in configs} == {0.5}
    configs = preset.configs(quick=True)
    assert len(configs) == 18 and len({c.optimizer.lr for c in configs}) == 18
