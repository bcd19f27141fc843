"""Preconditioned sharpness and R_med (:mod:`trajlab.metrics.adaptive`) and the ``adaptive-sharpness``
preset.

References, independent of the metric code: the preconditioner is checked against optax's own
update (update = -m_hat / P for Adam, -g / P for RMSprop); the recorded columns of a batch of two
Adam runs against numpy's eigvalsh of the dense float64 P^-1/2 H P^-1/2 and the diagonal of the
dense Hessian (``jax.hessian`` of the family's loss), both built from the optimizer state and
parameters the run recorded (dumped through an extra metric that reads ``ctx.optimizer_state``).
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from trajlab.config import OptimizerConfig, RunConfig, replace_dotted  # noqa: E402
from trajlab.engine.task import build_task, check_family, run_configs  # noqa: E402
from trajlab.metrics.adaptive import hessian_diagonal, preconditioner, r_med  # noqa: E402
from trajlab.presets import get_preset  # noqa: E402
from trajlab.presets.claims import check_claims  # noqa: E402
from trajlab.problems import make_data  # noqa: E402
from helpers import invoke, run_quick  # noqa: E402

PRESET = get_preset("adaptive-sharpness")


def tiny_config(**updates) -> RunConfig:
    """digits, 64-3-10 ReLU without biases (222 parameters), Adam, float64, Lanczos over all 222."""
    base = {
        "problem.kind": "classification", "problem.dataset": "digits", "problem.observations": 60,
        "problem.test_samples": 0, "model.kind": "mlp", "model.depth": 2, "model.width": 3,
        "model.activation": "relu", "model.init": "xavier", "optimizer.name": "adam", "optimizer.lr": 0.01,
        "train.max_steps": 20, "train.record": "linear", "train.record_every": 10, "train.tol": 0.0,
        "train.x64": True, "train.lanczos_iterations": 222,
        "metrics": ["train_loss", "preconditioned_sharpness", "r_med"],
    }
    return replace_dotted(replace_dotted(RunConfig(), base), updates)


def _dump(ctx):
    """Columns count, nu_i, p_i: the Adam state and the parameters as the engine hands them to metrics."""
    (adam,) = [
        s
        for s in jax.tree_util.tree_leaves(ctx.optimizer_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
        if isinstance(s, optax.ScaleByAdamState)
    ]
    nu, params = ravel_pytree(adam.nu)[0], ravel_pytree(ctx.params)[0]
    return {"count": adam.count.astype(params.dtype), **{f"nu_{i}": nu[i] for i in range(nu.shape[0])},
            **{f"p_{i}": params[i] for i in range(params.shape[0])}}


def test_adam_columns_match_dense_float64_under_vmap():
    """Two Adam runs in one vmapped batch (different step sizes and seeds): at every record,
    preconditioned_sharpness = the top eigenvalue of the dense P^-1/2 H P^-1/2 with
    P = sqrt(nu / (1 - b2^t)) + eps from the recorded state (NaN before the first update), and r_med
    = the median over leaves of max / median of the dense Hessian's diagonal (exact path, n = 222)."""
    configs = [tiny_config(), tiny_config(**{"optimizer.lr": 0.03, "seed": 1})]
    result = run_configs(configs, extra_metrics={"dump": _dump})
    rows = result.trajectory
    task = build_task(configs[0])
    data = jax.tree_util.tree_map(
        lambda x: jnp.asarray(x, jnp.float64) if np.issubdtype(np.asarray(x).dtype, np.floating) else jnp.asarray(x),
        make_data(configs[0].problem),
    )
    flat, unravel = ravel_pytree(task.init(jax.random.PRNGKey(0), 1.0))
    n = flat.shape[0]
    checked = 0
    for r in range(len(rows["run"])):
        params = np.array([rows[f"p_{i}"][r] for i in range(n)])
        nu = np.array([rows[f"nu_{i}"][r] for i in range(n)])
        count = rows["count"][r]
        hessian = np.asarray(jax.hessian(lambda v: task.loss(unravel(v), data))(jnp.asarray(params)))
        if count == 0:
            assert np.isnan(rows["preconditioned_sharpness"][r])
        else:
            p = np.sqrt(nu / (1 - 0.999**count)) + 1e-8
            expected = np.linalg.eigvalsh(hessian / np.sqrt(np.outer(p, p)))[-1]
            np.testing.assert_allclose(rows["preconditioned_sharpness"][r], expected, rtol=1e-8)
            checked += 1
        start, ratios = 0, []
        for leaf in jax.tree_util.tree_leaves(unravel(flat)):
            d = np.diag(hessian)[start : start + leaf.size]
            start += leaf.size
            with np.errstate(divide="ignore"):
                ratios.append(np.max(d) / np.median(d))
        np.testing.assert_allclose(rows["r_med"][r], np.median(ratios), rtol=1e-8)
    assert checked == 4 and set(rows["run"]) == {0, 1}


@pytest.mark.parametrize("name", ["adam", "rmsprop", "normalized_gd"])
def test_preconditioner_is_the_one_optax_divides_by(name):
    """After three steps, the optimizer's own update satisfies update * P = -(its numerator): -m_hat for
    Adam (m_hat from the state), -g for RMSprop and normalized GD."""
    from trajlab.dynamics.optimizers import direction_transform

    config = OptimizerConfig(name=name, decay=0.9)
    transform = direction_transform(config)
    key = jax.random.PRNGKey(3)
    params = {"a": jax.random.normal(key, (3, 2)), "b": jnp.arange(4.0)}
    state = transform.init(params)
    for step in range(3):
        grads = jax.tree_util.tree_map(lambda x: jnp.sin(x * (step + 1.5)) * (step + 1), params)
        updates, state = transform.update(grads, state, params)
    scale = preconditioner(config, state)
    if name == "adam":
        adam = state[0]
        numerator = jax.tree_util.tree_map(lambda m: m / (1 - config.b1**3), adam.mu)
    else:
        numerator = grads
    scaled = jax.tree_util.tree_map(lambda u, s: u * s, updates, scale) if name != "normalized_gd" else \
        jax.tree_util.tree_map(lambda u: u * scale, updates)
    np.testing.assert_allclose(ravel_pytree(scaled)[0], -ravel_pytree(numerator)[0], rtol=1e-10)
    assert preconditioner(OptimizerConfig(name="gd"), None) is None  # P = I: the plain sharpness


def test_hutchinson_diagonal_within_five_standard_errors():
    """Above the exact limit, diag(H) ~ mean_p z_p * H z_p: every entry within 5 standard errors
    (variance of one probe sum_{j != i} H_ij^2) of the dense diagonal, and r_med of the exact path
    equals r_med of the dense diagonal."""
    a = jax.random.normal(jax.random.PRNGKey(0), (12, 12))
    matrix = a @ a.T / 12 + jnp.diag(jnp.linspace(0.1, 3.0, 12))
    params = {"x": jnp.ones(7), "y": jnp.ones(5)}

    def loss(p):
        v = ravel_pytree(p)[0]
        return 0.5 * v @ matrix @ v + 0.1 * jnp.sum(v**4)

    dense = np.asarray(jax.hessian(lambda v: loss(ravel_pytree(params)[1](v)))(ravel_pytree(params)[0]))
    probes = 400
    estimate = ravel_pytree(hessian_diagonal(loss, params, jax.random.PRNGKey(5), probes, exact_limit=0))[0]
    error = np.sqrt((np.sum(dense**2, axis=1) - np.diag(dense) ** 2) / probes)
    assert np.all(np.abs(np.asarray(estimate) - np.diag(dense)) <= 5 * error + 1e-12)
    exact = hessian_diagonal(loss, params)
    np.testing.assert_allclose(ravel_pytree(exact)[0], np.diag(dense), rtol=1e-10)
    d = np.diag(dense)
    expected = np.median([d[:7].max() / np.median(d[:7]), d[7:].max() / np.median(d[7:])])
    np.testing.assert_allclose(r_med(exact), expected, rtol=1e-10)


def test_linearization_run_sees_the_models_state():
    """With ``linearization`` the optimizer state is split by ``separately``; the metrics trace with the
    model's part (check_family traces every metric, no compilation)."""
    check_family(tiny_config(**{"problem.test_samples": 20,
                                "metrics": ["train_loss", "linearization", "preconditioned_sharpness"]}))


def test_unsupported_optimizer_is_one_line_config_error():
    result = invoke("run", "adaptive-sharpness", "--quick", "--no-progress", "--no-figures", "--set",
                    "optimizer.name=adagrad", "--out", "/tmp/never-written-adaptive")
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert "preconditioned_sharpness" in message and "optimizer.name" in message and "Traceback" not in message


@pytest.fixture(scope="module")
def quick_sweep(tmp_path_factory):
    from trajlab.store import load

    return load(run_quick(tmp_path_factory, "adaptive-sharpness"))


def test_quick_claims(quick_sweep):
    """(a) holds at the quick size, (b) does not (measured; the preset docstring records the values)."""
    checks = check_claims(PRESET.claims, quick_sweep)
    for check in checks:
        print(check.measured, check.holds)
    assert [c.holds for c in checks[:2]] == [True, True]
    assert checks[2].holds in (True, False)  # measured; it does not hold at the quick size (docstring)
    table = quick_sweep.runs
    assert sorted(zip(table["optimizer.name"], table["optimizer.lr"])) == [("adam", 0.005), ("adam", 0.01), ("gd", 0.2)]


def test_figures(quick_sweep):
    import matplotlib

    matplotlib.use("Agg")
    figures = PRESET.figures(quick_sweep)
    assert set(figures) == {"preconditioned", "r_med", "table"}
    for figure in figures.values():
        figure.savefig("/dev/null", format="png")


@pytest.mark.parametrize("b1", [0.0, 0.5, 0.9])
def test_adam_threshold_is_where_frozen_ema_momentum_turns_unstable(b1):
    """On x'' = lambda x, m <- b1 m + (1 - b1) lambda x, x <- x - eta m: the 2 x 2 iteration matrix has
    spectral radius < 1 just below (2 + 2 b1)/((1 - b1) eta) and > 1 just above (numpy eigvals)."""
    from trajlab.metrics.adaptive import adam_stability_threshold

    eta = 0.01
    threshold = adam_stability_threshold(eta, b1)

    def radius(lam):
        # state (x, m): m' = b1 m + (1 - b1) lam x; x' = x - eta m'
        matrix = np.array([[1 - eta * (1 - b1) * lam, -eta * b1], [(1 - b1) * lam, b1]])
        return max(abs(np.linalg.eigvals(matrix)))

    assert radius(0.999 * threshold) < 1 < radius(1.001 * threshold)
    if b1 == 0.9:
        assert threshold * eta == pytest.approx(38.0)
