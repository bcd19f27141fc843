"""Tests of the trajectory engine (trajlab.engine).

Independent reference: a plain numpy float64 loop with hand-derived gradients of the deep linear
network (dL/dW_j = (W_N ... W_{j+1})^T G (W_{j-1} ... W_1)^T with G = dL/dW_e), the same stopping
rules as documented in trajlab.engine.loop, and normalized GD written from its docstring. The only
thing shared with the engine is the initial point (the model's init called with the same key).
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig  # noqa: E402
from trajlab.engine import linear_schedule, log_schedule, recording_steps, run_configs  # noqa: E402
from trajlab.models import DeepLinear  # noqa: E402
from trajlab.problems import make_matrix_problem  # noqa: E402

# --- numpy reference -------------------------------------------------------------------------


def np_init(config: RunConfig) -> list[np.ndarray]:
    """The engine's initial point: the model's init with PRNGKey(seed), in float64."""
    p, m = config.problem, config.model
    model = DeepLinear(p.m, p.n, m.depth, m.width)
    layers = model.init(jax.random.PRNGKey(config.seed), m.scale, m.init, jnp.float64)
    return [np.array(layer, np.float64) for layer in layers]


def np_product(layers):
    product = layers[0]
    for layer in layers[1:]:
        product = layer @ product
    return product


def np_loss_and_end_to_end_grad(w, data):
    """Mean squared error over the observations and its gradient w.r.t. W_e."""
    if data.sensing is None:
        residual = w[data.rows, data.cols] - data.values
        grad = np.zeros_like(w)
        np.add.at(grad, (data.rows, data.cols), 2.0 * residual / residual.size)
    else:
        residual = data.sensing @ w.ravel() - data.values
        grad = (2.0 / residual.size) * (data.sensing.T @ residual).reshape(w.shape)
    return float(np.mean(residual**2)), grad


def np_layer_grads(layers, end_to_end_grad):
    grads = []
    m, n = end_to_end_grad.shape
    for j in range(len(layers)):
        left = np_product(layers[j + 1 :]) if j + 1 < len(layers) else np.eye(m)
        right = np_product(layers[:j]) if j > 0 else np.eye(n)
        grads.append(left.T @ end_to_end_grad @ right.T)
    return grads


def np_run(layers, data, lr, optimizer, max_steps, tol, diverge_factor=1e6, decay=0.99, eps=1e-4):
    """Numpy gradient descent with the engine's documented stopping rules.

    Returns (final layers, losses at steps 0..steps, status, steps).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return _np_run(layers, data, lr, optimizer, max_steps, tol, diverge_factor, decay, eps)


def _np_run(layers, data, lr, optimizer, max_steps, tol, diverge_factor, decay, eps):
    layers = [layer.copy() for layer in layers]
    losses = []
    loss0 = None
    average = 0.0
    for step in range(max_steps + 1):
        loss, g_end = np_loss_and_end_to_end_grad(np_product(layers), data)
        losses.append(loss)
        if loss0 is None:
            loss0 = loss
        if not np.isfinite(loss) or loss > diverge_factor * max(1.0, loss0):
            return layers, np.array(losses), "diverged", step
        if loss <= tol:
            return layers, np.array(losses), "done", step
        if step == max_steps:
            return layers, np.array(losses), "max_steps", step
        grads = np_layer_grads(layers, g_end)
        if optimizer == "gd":
            factor = lr
        elif optimizer == "normalized_gd":
            t = step + 1
            average = decay * average + (1 - decay) * sum(np.sum(g**2) for g in grads)
            corrected = average / (1 - decay**t)
            factor = lr / (np.sqrt(corrected) + eps)
        else:  # pragma: no cover
            raise ValueError(optimizer)
        layers = [w - factor * g for w, g in zip(layers, grads)]
    raise AssertionError("unreachable")


def np_metrics(layers, initial, data, top_k=10, p=0.5):
    w = np_product(layers)
    sigma = np.linalg.svd(w, compute_uv=False)
    prob = sigma / sigma.sum()
    prob = prob[prob > 0]
    gaps = [
        np.linalg.norm(upper.T @ upper - lower @ lower.T) for lower, upper in zip(layers[:-1], layers[1:])
    ]
    out = {
        "train_loss": np_loss_and_end_to_end_grad(w, data)[0],
        "test_error": np.sum((w - data.target) ** 2) / np.sum(data.target**2),
        "effective_rank": float(np.exp(-np.sum(prob * np.log(prob)))),
        "nuclear_norm": sigma.sum(),
        "schatten_quasi_norm": np.sum(sigma**p) ** (1 / p),
        "frobenius_norm": np.linalg.norm(w),
        "balancedness": max(gaps) if gaps else 0.0,
        "distance_from_init": np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(layers, initial))),
    }
    padded = np.zeros(top_k)
    padded[: min(top_k, sigma.size)] = sigma[:top_k]
    for i, value in enumerate(padded):
        out[f"sv_{i}"] = value
    return out


def flat_params(state):
    return jnp.concatenate([layer.ravel() for layer in state.layers])


def rows_of(result, run):
    select = result.trajectory["run"] == run
    return {name: values[select] for name, values in result.trajectory.items()}


def make_config(kind="completion", m=6, n=5, depth=2, optimizer="gd", lr=0.1, scale=1.0, seed=0,
                init="gaussian_e2e", width=None, **train):
    observations = 20 if kind == "completion" else 24
    train = dict(dict(max_steps=200, tol=0.0, record="linear", record_every=1, x64=True), **train)
    return RunConfig(
        problem=ProblemConfig(kind=kind, m=m, n=n, rank=2, observations=observations, seed=1),
        model=ModelConfig(depth=depth, width=width, init=init, scale=scale),
        optimizer=OptimizerConfig(name=optimizer, lr=lr),
        train=TrainConfig(**train),
        seed=seed,
    )


# --- 1. engine vs an independent numpy loop --------------------------------------------------


@pytest.mark.parametrize(
    "kind,depth,optimizer,lr,m,n",
    [
        ("completion", 2, "gd", 0.05, 6, 5),
        ("completion", 3, "normalized_gd", 0.01, 6, 5),
        ("sensing", 2, "normalized_gd", 0.01, 5, 4),
        ("sensing", 3, "gd", 0.05, 4, 6),
    ],
)
def test_engine_matches_numpy_loop_step_by_step(kind, depth, optimizer, lr, m, n):
    config = make_config(kind=kind, depth=depth, optimizer=optimizer, lr=lr, scale=0.5, seed=3, m=m, n=n)
    data = make_matrix_problem(config.problem)
    initial = np_init(config)
    layers, losses, status, steps = np_run(initial, data, lr, optimizer, max_steps=200, tol=0.0)
    assert status == "max_steps" and steps == 200
    assert losses[-1] < 0.5 * losses[0]  # the comparison is over a trajectory that moves

    result = run_configs([config], extra_metrics={"params": flat_params})

    assert result.status == ["max_steps"]
    assert result.steps.tolist() == [200]
    rows = rows_of(result, 0)
    np.testing.assert_array_equal(rows["step"], np.arange(201))
    np.testing.assert_allclose(rows["train_loss"], losses, rtol=1e-10, atol=1e-14)
    for name, value in np_metrics(initial, initial, data).items():  # step 0: the shared init
        np.testing.assert_allclose(rows[name][0], value, rtol=1e-10, atol=1e-14, err_msg=name)

    np.testing.assert_allclose(
        [result.final[f"params_{i}"][0] for i in range(sum(w.size for w in layers))],
        np.concatenate([w.ravel() for w in layers]),
        rtol=1e-10, atol=1e-12,
    )
    reference = np_metrics(layers, initial, data)
    for name, value in reference.items():
        np.testing.assert_allclose(result.final[name][0], value, rtol=1e-9, atol=1e-12, err_msg=name)


# --- 2. vmapped batch == runs made one by one ------------------------------------------------


# (plain gd with gaussian_e2e in a batch is also checked run by run against numpy in the masks test)
@pytest.mark.parametrize("kind,optimizer,init", [("sensing", "normalized_gd", "balanced_random")])
def test_batch_equals_runs_one_by_one(kind, optimizer, init):
    base = dict(kind=kind, depth=3, m=5, n=4, optimizer=optimizer, init=init,
                max_steps=150, tol=1e-3, record="log", record_points=15)
    settings = [(0, 0.2, 1.0), (1, 0.3, 1.5), (2, 0.02, 0.2), (3, 0.1, 0.8)]  # (seed, lr, scale)
    configs = [make_config(seed=s, lr=lr, scale=scale, **base) for s, lr, scale in settings]
    batch = run_configs(configs)
    assert len(set(batch.status)) == 2  # runs stop at different times and for different reasons
    for i, config in enumerate(configs):
        single = run_configs([config])
        assert batch.status[i] == single.status[0]
        assert batch.steps[i] == single.steps[0]
        batch_rows, single_rows = rows_of(batch, i), rows_of(single, 0)
        np.testing.assert_array_equal(batch_rows["step"], single_rows["step"])
        for name in single_rows:
            if name in ("run", "step"):
                continue
            np.testing.assert_allclose(batch_rows[name], single_rows[name], rtol=1e-9, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(batch.final[name][i], single.final[name][0], rtol=1e-9, atol=1e-12)
    # the batched fields really differ between runs: different initial points
    first = rows_of(batch, 0)["train_loss"][0], rows_of(batch, 1)["train_loss"][0]
    assert first[0] != first[1]


# --- 6. stop and divergence masks ------------------------------------------------------------

TOL = 1e-6
DIVERGE_FACTOR = 1000.0


def mask_configs(**train):
    # same static structure; lr is batched: a sane one (done), a huge one (diverged), a tiny one
    # (max_steps) and an absurd one whose loss overflows to inf (diverged, NaN metrics)
    train = dict(dict(max_steps=300, tol=TOL, record="log", record_points=30, diverge_factor=DIVERGE_FACTOR),
                 **train)
    lrs = [0.3, 10.0, 0.01, 1e150]
    return [make_config(depth=2, lr=lr, scale=1.0, seed=s, **train) for s, lr in enumerate(lrs)], lrs


def test_stop_and_divergence_masks_against_numpy():
    configs, lrs = mask_configs()
    data = make_matrix_problem(configs[0].problem)
    result = run_configs(configs)
    expected = []
    for config, lr in zip(configs, lrs):
        initial = np_init(config)
        expected.append((initial, *np_run(initial, data, lr, "gd", max_steps=300, tol=TOL,
                                          diverge_factor=DIVERGE_FACTOR)))
    assert [e[3] for e in expected] == ["done", "diverged", "max_steps", "diverged"]  # the test's premise
    assert result.status == ["done", "diverged", "max_steps", "diverged"]
    assert result.steps.tolist() == [e[4] for e in expected]
    assert result.steps[2] == 300
    max_steps_rows = rows_of(result, 2)["step"]
    np.testing.assert_array_equal(max_steps_rows, recording_steps(configs[0].train))
    assert max_steps_rows[-1] == 300

    # done: final loss <= tol, and the loss at the previous recorded step is > tol
    done = rows_of(result, 0)
    assert result.final["train_loss"][0] <= TOL
    earlier = done["step"] < result.steps[0]
    assert earlier.any()
    assert done["train_loss"][earlier][-1] > TOL
    assert np.all(done["train_loss"][earlier] > TOL)

    # the finite diverged run is frozen at its stop step: its final metrics are numpy's there
    initial, layers, losses, _, steps = expected[1]
    assert DIVERGE_FACTOR * max(1.0, losses[0]) < losses[-1] < 1e6  # diverged by the factor, finite
    # the configured factor is honored: with the default 1e6 the same run would stop later
    assert np_run(initial, data, lrs[1], "gd", max_steps=300, tol=TOL)[3] > steps
    reference = np_metrics(layers, initial, data)
    for name in ("train_loss", "frobenius_norm", "nuclear_norm", "test_error", "distance_from_init"):
        np.testing.assert_allclose(result.final[name][1], reference[name], rtol=1e-7, err_msg=name)

    # the done and max_steps runs are numpy's, and nothing non-finite leaks into them
    for run in (0, 2):
        initial, layers, losses, _, _ = expected[run]
        rows = rows_of(result, run)
        np.testing.assert_allclose(rows["train_loss"], losses[rows["step"]], rtol=1e-9, atol=1e-14)
        for name, value in np_metrics(layers, initial, data).items():
            np.testing.assert_allclose(result.final[name][run], value, rtol=1e-8, atol=1e-12, err_msg=name)
        for name, values in rows.items():
            assert np.all(np.isfinite(values)), (run, name)
    assert not np.isfinite(result.final["train_loss"][3])


def test_stopped_runs_do_not_change_after_their_stop_step():
    configs, _ = mask_configs()
    result = run_configs(configs)
    for run in range(len(configs)):
        rows = rows_of(result, run)
        # no rows after the stop step; the last row is the stop step; final == last row
        assert rows["step"].max() == result.steps[run]
        assert rows["step"][-1] == result.steps[run]
        for name in result.final:
            np.testing.assert_array_equal(result.final[name][run], rows[name][-1], err_msg=name)
        assert np.all(np.diff(rows["step"]) >= 0)


def test_each_run_records_each_step_once():
    """A trajectory has one row per (run, step): a run that stops at a recording step must not
    be recorded twice at that step (once as on-schedule, once as its final row)."""
    configs, _ = mask_configs()
    result = run_configs(configs)
    for run in range(len(configs)):
        steps = rows_of(result, run)["step"]
        assert len(np.unique(steps)) == len(steps), (run, result.status[run], steps[-4:])


# --- recording schedules ---------------------------------------------------------------------


def test_schedules():
    np.testing.assert_array_equal(linear_schedule(10, 3), [0, 3, 6, 9, 10])
    np.testing.assert_array_equal(linear_schedule(9, 3), [0, 3, 6, 9])
    log = log_schedule(1000, 4)
    np.testing.assert_array_equal(log, [0, 1, 10, 100, 1000])
    for points in (1, 5, 50):
        steps = log_schedule(123, points)
        assert steps[0] == 0 and steps[-1] == 123
        assert np.all(np.diff(steps) > 0)
    assert recording_steps(TrainConfig(max_steps=20, record="linear", record_every=7)).tolist() == [0, 7, 14, 20]
