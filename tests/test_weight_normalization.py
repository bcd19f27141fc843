"""Weight normalization on overparameterized least squares: the ``weight-normalization`` preset and
its family ``weight_normalized_linear`` / problem ``wide_least_squares``.

Independent references: numpy's lstsq (SVD) for the minimum-norm solution; scipy's solve_ivp of the
weight-normalized gradient flow written out by hand for the invariant; finite differences for the
family's gradients.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig  # noqa: E402
from trajlab.families.weight_norm import WeightNorm, loss, wide_least_squares  # noqa: E402
from trajlab.presets import get_preset  # noqa: E402
from trajlab.presets.claims import check_claims  # noqa: E402
from trajlab.registry import get_family  # noqa: E402
from trajlab.store import load  # noqa: E402
from helpers import invoke, run_quick  # noqa: E402


def _error_line(result) -> str:
    lines = [line for line in (result.output + (result.stderr or "")).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_min_norm_solution_and_null_projector_match_lstsq():
    data = wide_least_squares(ProblemConfig("wide_least_squares", samples=7, dim=15, seed=4))
    x, y = data["x"], data["y"]
    solution = np.linalg.lstsq(x, y, rcond=None)[0]  # minimum-norm least squares (SVD)
    np.testing.assert_allclose(data["min_norm"], solution, atol=1e-12)
    assert np.linalg.norm(solution) == pytest.approx(1.0, abs=1e-12)
    _, _, vt = np.linalg.svd(x)
    null_basis = vt[7:]  # rows spanning the null space of x
    np.testing.assert_allclose(data["null_projector"], null_basis.T @ null_basis, atol=1e-12)


def test_weight_norm_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    data = {k: jnp.asarray(v) for k, v in wide_least_squares(ProblemConfig("wide_least_squares", samples=4, dim=9)).items()}
    g, v = 0.7, rng.standard_normal(9)
    grads = jax.grad(loss)(WeightNorm(jnp.asarray(g), jnp.asarray(v)), data)
    u = v / np.linalg.norm(v)
    x, y = np.asarray(data["x"]), np.asarray(data["y"])
    grad_w = x.T @ (x @ (g * u) - y) / 4
    assert float(grads.g) == pytest.approx(u @ grad_w, rel=1e-10)
    np.testing.assert_allclose(np.asarray(grads.v), g / np.linalg.norm(v) * (grad_w - u * (u @ grad_w)), atol=1e-12)

    def numeric(z):
        w = z[0] * z[1:] / np.linalg.norm(z[1:])
        return 0.5 * np.mean((x @ w - y) ** 2)

    z, h = np.concatenate([[g], v]), 1e-6
    fd = np.array([(numeric(z + h * e) - numeric(z - h * e)) / (2 * h) for e in np.eye(10)])
    np.testing.assert_allclose(np.concatenate([[float(grads.g)], np.asarray(grads.v)]), fd, atol=1e-8)


def test_flow_invariant_holds_along_an_ode_solution():
    """P_N u(t) = P_N u(0) exp(-eta (g^2 - g0^2) / (2 gamma ||v||^2)) and ||v|| constant, along the
    flow dg/dt = -gamma dL/dg, dv/dt = -eta dL/dv integrated by scipy (RK45, tight tolerances)."""
    from scipy.integrate import solve_ivp

    data = wide_least_squares(ProblemConfig("wide_least_squares", samples=5, dim=12, seed=2))
    x, y, null = data["x"], data["y"], data["null_projector"]
    gamma, eta = 1.0, 6.0
    rng = np.random.default_rng(0)
    v0 = rng.standard_normal(12)
    v0 *= 1.5 / np.linalg.norm(v0)
    g0 = 0.3

    def field(_, state):
        g, v = state[0], state[1:]
        norm = np.linalg.norm(v)
        u = v / norm
        grad_w = x.T @ (x @ (g * u) - y) / 5
        return np.concatenate([[-gamma * (u @ grad_w)], -eta * g / norm * (grad_w - u * (u @ grad_w))])

    times = np.linspace(0, 40, 9)
    solution = solve_ivp(field, (0, 40), np.concatenate([[g0], v0]), t_eval=times, rtol=1e-11, atol=1e-13)
    assert solution.success
    c = eta / (2 * gamma * 1.5**2)
    u0 = v0 / 1.5
    for g, v in zip(solution.y[0], solution.y[1:].T):
        assert np.linalg.norm(v) == pytest.approx(1.5, rel=1e-8)
        np.testing.assert_allclose(null @ (v / 1.5), null @ u0 * np.exp(-c * (g**2 - g0**2)), atol=1e-8)
    assert abs(solution.y[0, -1]) > 0.9  # g grew towards ||x_dagger|| = 1: the null part shrank


def test_family_update_uses_the_two_step_sizes():
    config = RunConfig(
        problem=ProblemConfig("wide_least_squares", samples=4, dim=9),
        model=ModelConfig("weight_normalized_linear", parameterization="weight_norm", direction_lr=7.0, scale=0.5),
        optimizer=OptimizerConfig(name="gd", lr=0.01), train=TrainConfig(x64=True),
    )
    parts = get_family("weight_normalized_linear").build(config)
    params = parts.init(jax.random.PRNGKey(3), 0.5)
    assert float(params.g) == 0.5 and float(jnp.linalg.norm(params.v)) == pytest.approx(1.0)
    grads = WeightNorm(jnp.asarray(2.0), jnp.arange(9.0))
    updates, _ = parts.optimizer.update(grads, parts.optimizer.init(params), params)
    assert float(updates.g) == -2.0
    np.testing.assert_allclose(np.asarray(updates.v), -7.0 * np.arange(9.0))
    # row-space and null-space inits lie where they should
    data = wide_least_squares(config.problem)
    for init, inside in (("row_space", 0.0), ("null_space", 1.0)):
        plain = RunConfig(problem=config.problem, model=ModelConfig("weight_normalized_linear", parameterization="plain",
                                                                    init=init, scale=0.5),
                          optimizer=OptimizerConfig(name="gd", lr=0.01), train=TrainConfig(x64=True))
        w = np.asarray(get_family("weight_normalized_linear").build(plain).init(jax.random.PRNGKey(0), 0.5))
        assert np.linalg.norm(w) == pytest.approx(0.5)
        assert np.linalg.norm(data["null_projector"] @ w) == pytest.approx(0.5 * inside, abs=1e-12)


@pytest.mark.parametrize(
    "setting, field",
    [
        ("model.parameterization=batch_norm", "model.parameterization"),
        ("model.init=zero", "model.init"),
        ("model.direction_lr=0", "model.direction_lr"),
        ("model.v_norm=-1", "model.v_norm"),
        ("problem.samples=50", "problem.samples"),
        ("optimizer.name=adam", "optimizer.name"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, setting, field):
    result = invoke("run", "weight-normalization", "--quick", "--no-progress", "--set", setting, "--out", tmp_path / "x")
    assert result.exit_code == 2, result.output
    assert field in _error_line(result)
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return load(run_quick(tmp_path_factory, "weight-normalization"))


def test_quick_claims_hold(quick):
    checks = check_claims(get_preset("weight-normalization").claims, quick)
    assert [c.holds for c in checks] == [True] * 4, [c.measured for c in checks]


def test_quick_plain_gd_matches_its_closed_form_against_pinv(quick):
    """GD from w0 ends at pinv(X) y + P_N w0, computed here with numpy from the stored init."""
    runs = quick.runs
    plain = runs[(runs["model.parameterization"] == "plain") & (runs["model.init"] == "random")]
    assert len(plain) == 2
    for _, run in plain.iterrows():
        first = quick.trajectories[(quick.trajectories["run_id"] == run["run_id"]) & (quick.trajectories["step"] == 0)]
        assert float(run["final.distance_to_min_norm"]) == pytest.approx(float(first["null_norm"].iloc[0]), rel=1e-9)
    wn = runs[(runs["model.parameterization"] == "weight_norm") & (runs["model.direction_lr"] == 20.0)
              & (runs["model.scale"] == 0.5)]
    assert (wn["final.distance_to_min_norm"] < 1e-2).all()


def test_figures_draw(quick):
    import matplotlib

    matplotlib.use("Agg")
    from trajlab.presets.weight_normalization import weight_normalization_figures

    figures = weight_normalization_figures(quick)
    assert set(figures) == {"convergence"} and figures["convergence"].axes
