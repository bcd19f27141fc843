"""Label-noise SGD on the quadratically parameterized linear model: the ``label-noise`` preset and
its family ``quadratic_diagonal`` / problem ``sparse_linear``.

Independent references: the dense float64 Hessian (jax.hessian) for the closed-form trace; cvxpy
for the (weighted) basis-pursuit interpolators; scipy's SLSQP minimization of Woodworth et al.'s
Q_alpha over the interpolators for the limit of gradient descent from init alpha.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig  # noqa: E402
from trajlab.families.diagonal_networks import (  # noqa: E402
    half_mean_squared_loss,
    hessian_trace_exact,
    minimum_l1_interpolator,
    sparse_linear,
)
from trajlab.presets import get_preset  # noqa: E402
from trajlab.presets.claims import check_claims  # noqa: E402
from trajlab.registry import get_family  # noqa: E402
from trajlab.store import load  # noqa: E402
from helpers import invoke, run_quick  # noqa: E402


def _error_line(result) -> str:
    lines = [line for line in (result.output + (result.stderr or "")).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_exact_hessian_trace_matches_the_dense_hessian():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 7))
    data = {"x": jnp.asarray(x), "y": jnp.asarray(rng.standard_normal(5))}
    params = (jnp.asarray(rng.standard_normal(7)), jnp.asarray(rng.standard_normal(7)))  # far from interpolation

    def flat_loss(z):
        return half_mean_squared_loss((z[:7], z[7:]), data)

    dense = jax.hessian(flat_loss)(jnp.concatenate(params))
    assert float(hessian_trace_exact(params, data["x"])) == pytest.approx(float(jnp.trace(dense)), rel=1e-12)


def test_reference_interpolators_match_cvxpy_and_least_squares():
    import cvxpy as cp

    data = sparse_linear(ProblemConfig("sparse_linear", samples=8, dim=20, sparsity=2, seed=3))
    x, y = data["x"], data["y"]
    assert np.count_nonzero(data["w_star"]) == 2 and np.allclose(np.abs(data["w_star"][data["w_star"] != 0]), 1)
    np.testing.assert_allclose(data["w_min_l2"], np.linalg.lstsq(x, y, rcond=None)[0], atol=1e-10)
    for weights, key in ((np.ones(20), "w_min_l1"), (np.mean(x**2, axis=0), "w_min_trace")):
        w = cp.Variable(20)
        cp.Problem(cp.Minimize(weights @ cp.abs(w)), [x @ w == y]).solve(solver="CLARABEL")
        assert weights @ np.abs(data[key]) == pytest.approx(weights @ np.abs(w.value), rel=1e-6)
        np.testing.assert_allclose(x @ data[key], y, atol=1e-8)
        np.testing.assert_allclose(data[key], w.value, atol=1e-5)
    # a direct check of the linear program on a case solved by hand: min |w1| + |w2| s.t. w1 + 2 w2 = 2 -> (0, 1)
    np.testing.assert_allclose(minimum_l1_interpolator(np.array([[1.0, 2.0]]), np.array([2.0])), [0.0, 1.0], atol=1e-12)


def test_gradient_descent_reaches_woodworths_q_alpha_minimizer():
    """Woodworth et al. (COLT 2020), Theorem 1: from u = v = alpha, gradient flow on <u*u - v*v, x>
    converges to argmin Q_alpha(w) = alpha^2 sum q(w_j / alpha^2), q(z) = 2 - sqrt(4 + z^2) + z arcsinh(z/2),
    s.t. X w = y. Small-step GD with the family's loss and init against scipy's SLSQP on Q_alpha."""
    from scipy.optimize import minimize

    config = RunConfig(
        problem=ProblemConfig("sparse_linear", samples=4, dim=8, sparsity=2, seed=1),
        model=ModelConfig("quadratic_diagonal", scale=0.5),
        optimizer=OptimizerConfig(name="gd", lr=0.005), train=TrainConfig(x64=True),
    )
    parts = get_family("quadratic_diagonal").build(config)
    data = {k: jnp.asarray(v) for k, v in sparse_linear(config.problem).items()}
    alpha = 0.5
    params = parts.init(jax.random.PRNGKey(0), alpha)
    grad = jax.jit(jax.grad(parts.loss))

    def gd(lr, steps):
        @jax.jit
        def run(params):
            def step(p, _):
                g = grad(p, data)
                return jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g), None

            return jax.lax.scan(step, params, None, length=steps)[0]

        u, v = run(params)
        assert float(parts.loss((u, v), data)) < 1e-14
        return np.asarray(u * u - v * v)

    # GD's limit differs from the flow's by O(lr) (u_j v_j shrinks by O(lr^2) per step): Richardson
    # extrapolation of two step sizes removes that term.
    coarse, fine = gd(0.004, 75_000), gd(0.002, 150_000)
    w_gd = 2 * fine - coarse
    x, y = np.asarray(data["x"]), np.asarray(data["y"])

    def q_alpha(w):
        z = w / alpha**2
        return alpha**2 * np.sum(2 - np.sqrt(4 + z**2) + z * np.arcsinh(z / 2))

    def q_grad(w):
        return np.arcsinh(w / (2 * alpha**2))

    result = minimize(q_alpha, np.linalg.pinv(x) @ y, jac=q_grad, method="SLSQP",
                      constraints=[{"type": "eq", "fun": lambda w: x @ w - y, "jac": lambda w: x}],
                      options={"ftol": 1e-14, "maxiter": 1000})
    assert result.success
    np.testing.assert_allclose(w_gd, result.x, atol=5e-5)
    # first order in the step size: halving it halves the distance to the flow's limit
    ratio = np.linalg.norm(coarse - result.x) / np.linalg.norm(fine - result.x)
    assert 1.6 < ratio < 2.4, ratio
    # and it is neither the min-l2 nor the min-l1 interpolator at this alpha
    assert np.linalg.norm(w_gd - np.asarray(data["w_min_l2"])) > 1e-2
    assert np.linalg.norm(w_gd - np.asarray(data["w_min_l1"])) > 1e-2


def test_minibatch_adds_fresh_label_noise_of_the_set_std_and_keeps_the_full_batch():
    config = RunConfig(
        problem=ProblemConfig("sparse_linear", samples=6, dim=10, sparsity=2),
        model=ModelConfig("quadratic_diagonal", scale=1.0, label_noise=0.7),
        optimizer=OptimizerConfig(name="gd", lr=0.01, batch_size=6), train=TrainConfig(x64=True),
    )
    parts = get_family("quadratic_diagonal").build(config)
    data = {k: jnp.asarray(v) for k, v in sparse_linear(config.problem).items()}
    draws = jax.vmap(lambda k: parts.minibatch(data, k))(jax.random.split(jax.random.PRNGKey(0), 20_000))
    np.testing.assert_array_equal(np.asarray(draws["x"][0]), np.asarray(data["x"]))
    noise = np.asarray(draws["y"]) - np.asarray(data["y"])[None, :]
    assert noise.std() == pytest.approx(0.7, rel=0.02)
    assert abs(noise.mean()) < 0.02
    assert abs(np.corrcoef(noise[:-1, 0], noise[1:, 0])[0, 1]) < 0.03  # fresh at every step
    half = RunConfig(
        problem=config.problem, model=config.model,
        optimizer=OptimizerConfig(name="gd", lr=0.01, batch_size=3), train=TrainConfig(x64=True),
    )
    batch = get_family("quadratic_diagonal").build(half).minibatch(data, jax.random.PRNGKey(1))
    rows = {tuple(np.round(np.asarray(r), 12)) for r in np.asarray(data["x"])}
    assert batch["x"].shape == (3, 10) and all(tuple(np.round(r, 12)) in rows for r in np.asarray(batch["x"]))


@pytest.mark.parametrize(
    "setting, field",
    [
        ("model.label_noise=-1", "model.label_noise"),
        ("problem.sparsity=0", "problem.sparsity"),
        ("problem.samples=0", "problem.samples"),
        ("optimizer.batch_size=1000", "optimizer.batch_size"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, setting, field):
    result = invoke("run", "label-noise", "--quick", "--no-progress", "--set", setting, "--out", tmp_path / "x")
    assert result.exit_code == 2, result.output
    assert field in _error_line(result)
    assert "Traceback" not in result.output


def test_label_noise_needs_stochastic_steps():
    from trajlab.errors import ConfigError

    with pytest.raises(ConfigError, match="model.label_noise must be 0 unless optimizer.batch_size > 0"):
        RunConfig(problem=ProblemConfig("sparse_linear"), model=ModelConfig("quadratic_diagonal", label_noise=1.0),
                  optimizer=OptimizerConfig(name="gd", lr=0.01))


def test_preset_ties_the_batch_to_n_and_keeps_one_gd_seed():
    configs = get_preset("label-noise").configs(quick=True)
    noisy = [c for c in configs if c.model.label_noise > 0]
    gd = [c for c in configs if c.model.label_noise == 0]
    assert all(c.optimizer.batch_size == c.problem.samples for c in noisy)
    assert all(c.optimizer.batch_size == 0 and c.seed == 0 for c in gd)
    assert len(noisy) == 8 and len(gd) == 8


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return load(run_quick(tmp_path_factory, "label-noise"))


def test_quick_claims_hold(quick):
    checks = check_claims(get_preset("label-noise").claims, quick)
    assert [c.holds for c in checks] == [True] * 4, [c.measured for c in checks]


def test_quick_label_noise_recovers_where_gd_does_not(quick):
    runs = quick.runs
    at = runs[runs["problem.samples"] == 12]
    noisy = at[at["model.label_noise"] > 0]
    gd = at[(at["model.label_noise"] == 0) & (at["model.scale"] == 1.0)]
    assert noisy["final.recovery_error"].max() < 0.3 < gd["final.recovery_error"].min()
    # GD's interpolator from large init: near pinv(X) y, whose error is about sqrt(1 - n/d) of ||w*||
    assert float(gd["final.distance_to_min_l2"].iloc[0]) < 0.02


def test_figures_draw(quick):
    import matplotlib

    matplotlib.use("Agg")
    from trajlab.presets.label_noise import label_noise_figures

    figures = label_noise_figures(quick)
    assert set(figures) == {"recovery_against_samples", "trace_along_training"}
    for figure in figures.values():
        assert figure.axes
