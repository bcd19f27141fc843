"""Engine-level tests of the small-network family (``model.kind`` mlp / two_layer), float64.

Independent references: a plain-JAX gradient-descent loop over the network written here (its own
forward pass, its own losses, ``jax.grad`` of them), numpy accuracies and losses of the parameters
that loop reaches, ``numpy.linalg.eigvalsh`` / the trace of the dense Hessian (``jax.hessian`` of the
loss written here) for the curvature columns, and scipy's ``solve_ivp`` (DOP853) of the gradient
flow for ``distance_to_flow``. Shared with the engine: the data (``make_data``) and the initial point
(the model's init called with ``jax.random.PRNGKey(seed)``, as :mod:`trajlab.engine.loop` does).
Parameters are compared through their raveled vector (``ravel_pytree`` order: per layer W then b),
projected on fixed random directions (a user metric), plus ``parameter_norm`` / ``distance_from_init``.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

from trajlab.config import RunConfig, replace_dotted  # noqa: E402
from trajlab.engine.task import run_configs  # noqa: E402
from trajlab.errors import ConfigError  # noqa: E402
from trajlab.models.mlp import mlp_init, two_layer_init  # noqa: E402
from trajlab.problems import make_data  # noqa: E402

ALL = ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "parameter_norm", "distance_from_init")
PROJECTIONS = 6


def network_config(**updates) -> RunConfig:
    """A small digits MLP in float64 that runs to max_steps (tol 0), with ``updates`` by dotted name."""
    base = {
        "problem.kind": "classification",
        "problem.dataset": "digits",
        "problem.observations": 120,
        "problem.test_samples": 40,
        "model.kind": "mlp",
        "model.depth": 3,
        "model.width": 8,
        "model.activation": "relu",
        "model.init": "xavier",
        "model.scale": 1.0,
        "optimizer.name": "gd",
        "optimizer.lr": 0.5,
        "train.max_steps": 40,
        "train.record": "linear",
        "train.record_every": 10,
        "train.tol": 0.0,
        "train.x64": True,
        "metrics": list(ALL),
    }
    # Two steps, as a preset's variant over its base: an update that switches problem or model kind
    # keeps only the base fields the new kind has.
    return replace_dotted(replace_dotted(RunConfig(), base), updates)


# --- the reference: plain JAX over (W, b) lists -------------------------------------------------


def dims(config):
    p = config.problem
    if p.kind == "teacher_student":
        return p.n, 1
    return (64, 10) if p.dataset == "digits" else (2, 1)


def initial_params(config):
    """The engine's initial point as a plain list of arrays, in ``ravel_pytree`` order."""
    key, m = jax.random.PRNGKey(config.seed), config.model
    d_in, d_out = dims(config)
    if m.kind == "two_layer":
        output = "balanced" if m.init == "balanced_random" else "gaussian"
        layer = two_layer_init(key, d_in, m.width, m.scale, output, jnp.float64)
        return [layer.hidden, layer.output]
    sizes = (d_in,) + (m.width,) * (m.depth - 1) + (d_out,)
    layers = mlp_init(key, sizes, m.activation, m.bias, m.init, m.scale, jnp.float64)
    flat = []
    for layer in layers:
        flat.append(layer.weight)
        if layer.bias is not None:
            flat.append(layer.bias)
    return flat


SIGMA = {"linear": lambda z: z, "relu": lambda z: jnp.maximum(z, 0.0), "quadratic": lambda z: z * z}


def forward(config, params, x):
    """Outputs (S, d_out): hidden layers sigma(h W^T + b), a linear output layer."""
    m = config.model
    sigma = SIGMA[m.activation]
    if m.kind == "two_layer":
        hidden, output = params
        return (sigma(x @ hidden.T) @ output)[:, None]
    per_layer = 2 if m.bias else 1
    layers = [params[i : i + per_layer] for i in range(0, len(params), per_layer)]
    h = x
    for index, layer in enumerate(layers):
        h = h @ layer[0].T + (layer[1] if m.bias else 0.0)
        if index < len(layers) - 1:
            h = sigma(h)
    return h


def loss_of(config, params, x, y):
    """The mean loss over samples of the problem's convention (ProblemConfig docstring)."""
    out = forward(config, params, x)
    p = config.problem
    if p.kind == "teacher_student":
        return jnp.mean((out[:, 0] - y) ** 2)
    if p.loss == "cross_entropy":
        z = out - jnp.max(out, axis=1, keepdims=True)
        log_probabilities = z - jnp.log(jnp.sum(jnp.exp(z), axis=1, keepdims=True))
        return -jnp.mean(log_probabilities[jnp.arange(y.shape[0]), y])
    if p.loss == "logistic":
        return jnp.mean(jnp.log1p(jnp.exp(-y * out[:, 0])))
    if p.dataset == "digits":
        return jnp.mean(jnp.sum((out - jnp.eye(10)[y]) ** 2, axis=1))
    return jnp.mean((out[:, 0] - y) ** 2)


def splits(config, data):
    if config.problem.kind == "teacher_student":
        return (data.inputs, data.outputs), (data.test_inputs, data.test_outputs)
    return (data.inputs, data.labels), (data.test_inputs, data.test_labels)


def reference_gd(config, data, steps_to_record, batch_size=0):
    """Plain GD theta <- theta - lr grad L(theta) (SGD on ``batch_size`` samples: the engine's
    documented draw, indices ``choice(fold_in(fold_in(PRNGKey(seed), 1), step), S, (b,),
    replace=False)``); returns {step: params} at ``steps_to_record``."""
    (x, y), _ = splits(config, data)
    x, y = jnp.asarray(x), jnp.asarray(y)
    grad = jax.jit(jax.grad(lambda p, xb, yb: loss_of(config, p, xb, yb)))
    params = initial_params(config)
    lr = config.optimizer.lr
    sample_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    out = {0: params}
    for step in range(max(steps_to_record)):
        if batch_size:
            index = jax.random.choice(jax.random.fold_in(sample_key, step), x.shape[0], (batch_size,), replace=False)
            g = grad(params, x[index], y[index])
        else:
            g = grad(params, x, y)
        params = [p - lr * q for p, q in zip(params, g)]
        if step + 1 in steps_to_record:
            out[step + 1] = params
    return out


def flat(params):
    return np.concatenate([np.ravel(np.asarray(p)) for p in params])


def directions(size):
    return np.random.default_rng(7).standard_normal((size, PROJECTIONS))


def projection_metric(size):
    """A user metric: the raveled parameters projected on PROJECTIONS fixed random directions."""
    basis = jnp.asarray(directions(size))
    return {"projection": lambda s: ravel_pytree(s.params)[0] @ basis}


def expected_row(config, data, params, initial):
    """The network metrics of ``params``, computed here in numpy (float64)."""
    (x, y), (tx, ty) = splits(config, data)
    row = {
        "train_loss": float(loss_of(config, params, jnp.asarray(x), jnp.asarray(y))),
        "parameter_norm": float(np.linalg.norm(flat(params))),
        "distance_from_init": float(np.linalg.norm(flat(params) - flat(initial))),
    }
    row["test_loss"] = float(loss_of(config, params, jnp.asarray(tx), jnp.asarray(ty))) if len(tx) else np.nan
    for name, (xs, ys) in (("train_accuracy", (x, y)), ("test_accuracy", (tx, ty))):
        if config.problem.kind == "teacher_student" or len(xs) == 0:
            row[name] = np.nan
            continue
        out = np.asarray(forward(config, params, jnp.asarray(xs)))
        if config.problem.dataset == "digits":
            row[name] = float(np.mean(np.argmax(out, axis=1) == ys))
        else:
            row[name] = float(np.mean(ys * out[:, 0] > 0))
    for i, value in enumerate(flat(params) @ directions(flat(params).size)):
        row[f"projection_{i}"] = float(value)
    return row


def assert_row(row, expected, step):
    """Recorded metrics equal the reference's. Accuracies k / S are exact fractions, but the engine's
    come out of jnp.mean over booleans, which is float32 even under x64: 1e-6 absolute for them."""
    for column, value in expected.items():
        atol = 1e-6 if column.endswith("accuracy") else 1e-11
        np.testing.assert_allclose(row[column], value, rtol=1e-9, atol=atol, err_msg=f"{column} at step {step}")


def trajectory_rows(result, run):
    """{step: {column: value}} of run ``run`` of a BatchResult."""
    t = result.trajectory
    rows = {}
    for i in np.flatnonzero(t["run"] == run):
        rows[int(t["step"][i])] = {k: float(v[i]) for k, v in t.items() if k not in ("run", "step")}
    return rows


CASES = {
    "digits relu bias cross-entropy": dict(),
    "digits quadratic squared": {
        "model.activation": "quadratic", "model.depth": 2, "model.width": 6, "model.bias": False,
        "problem.loss": "squared", "optimizer.lr": 0.01, "model.init": "he", "model.scale": 0.5,
    },
    "digits linear gaussian squared": {
        "model.activation": "linear", "model.init": "gaussian", "model.scale": 0.2, "problem.loss": "squared",
        "optimizer.lr": 0.05,
    },
    "separable logistic linear": {
        "problem.dataset": "separable_2d", "problem.observations": 30, "problem.test_samples": 0,
        "problem.loss": "logistic", "model.activation": "linear", "model.width": 4,
    },
    "teacher-student two-layer": {
        "problem.kind": "teacher_student", "problem.n": 4, "problem.teacher_width": 3,
        "problem.observations": 50, "problem.test_samples": 20, "model.kind": "two_layer", "model.width": 5,
        "model.init": "gaussian", "model.scale": 0.5, "optimizer.lr": 0.05,
    },
}


@pytest.mark.parametrize("name", list(CASES))
def test_gd_matches_a_plain_jax_loop_from_the_same_init(name):
    """Two seeds in one vmapped batch; every recorded metric and the parameters themselves (six
    random projections) match the reference loop at every recording step."""
    configs = [network_config(seed=seed, **CASES[name]) for seed in (0, 3)]
    config = configs[0]
    data = make_data(config.problem)
    size = flat(initial_params(config)).size
    result = run_configs(configs, extra_metrics=projection_metric(size))
    assert result.status == ["max_steps", "max_steps"]
    steps = list(range(0, config.train.max_steps + 1, config.train.record_every))
    for run, c in enumerate(configs):
        rows = trajectory_rows(result, run)
        assert sorted(rows) == steps
        reference = reference_gd(c, data, steps)
        for step in steps:
            expected = expected_row(c, data, reference[step], reference[0])
            assert_row(rows[step], expected, step)
    # the runs moved, and the two seeds are two different inits
    first, second = trajectory_rows(result, 0), trajectory_rows(result, 1)
    assert first[steps[-1]]["distance_from_init"] > 1e-2
    assert first[0]["projection_0"] != second[0]["projection_0"]


def test_minibatch_sgd_is_reproducible_and_differs_from_full_batch():
    """optimizer.batch_size = b: the same config gives the same trajectory twice and matches the
    reference SGD loop (its documented draws); it differs from full-batch GD and between seeds;
    b = all samples is full-batch GD up to the order of summation."""
    sgd = network_config(**{"optimizer.batch_size": 16})
    data = make_data(sgd.problem)
    size = flat(initial_params(sgd)).size
    extra = projection_metric(size)
    first = run_configs([sgd, replace_dotted(sgd, {"seed": 1})], extra_metrics=extra)
    again = run_configs([sgd, replace_dotted(sgd, {"seed": 1})], extra_metrics=extra)
    steps = list(range(0, sgd.train.max_steps + 1, sgd.train.record_every))
    assert trajectory_rows(first, 0) == trajectory_rows(again, 0)
    reference = reference_gd(sgd, data, steps, batch_size=16)
    rows = trajectory_rows(first, 0)
    for step in steps:
        assert_row(rows[step], expected_row(sgd, data, reference[step], reference[0]), step)

    full = trajectory_rows(run_configs([network_config()], extra_metrics=extra), 0)
    last = steps[-1]
    assert abs(rows[last]["projection_0"] - full[last]["projection_0"]) > 1e-3
    assert abs(rows[last]["train_loss"] - full[last]["train_loss"]) > 1e-4
    other_seed = trajectory_rows(first, 1)
    assert other_seed[last]["projection_0"] != rows[last]["projection_0"]

    everything = trajectory_rows(run_configs([network_config(**{"optimizer.batch_size": 120})], extra_metrics=extra), 0)
    for column in ("train_loss", "projection_0", "projection_5", "parameter_norm"):
        np.testing.assert_allclose(everything[last][column], full[last][column], rtol=1e-10)


# --- curvature columns against the dense Hessian ------------------------------------------------

CURVATURE = ("train_loss", "sharpness", "hessian_eigenvalues", "hessian_trace")


@pytest.mark.parametrize(
    "updates",
    [
        # 13 parameters <= 20 Lanczos steps: the Ritz values are the eigenvalues
        {"problem.dataset": "separable_2d", "problem.observations": 20, "problem.test_samples": 0,
         "problem.loss": "logistic", "model.depth": 2, "model.width": 3, "model.bias": True,
         "model.activation": "quadratic", "optimizer.lr": 0.3},
        # digits, 64-3-10 ReLU without biases: 222 parameters, Lanczos with 222 steps
        {"model.depth": 2, "model.width": 3, "train.lanczos_iterations": 222},
    ],
    ids=["separable-quadratic", "digits-relu"],
)
def test_curvature_columns_match_the_dense_hessian(updates):
    """sharpness = lambda_max, eig_i = the top-3 eigenvalues of numpy's eigvalsh of the dense Hessian
    of the train loss (written here), at the init and after 40 GD steps; the Hutchinson trace is
    within 5 standard errors of the exact trace (variance of one probe 2 (||H||_F^2 - sum H_ii^2))."""
    probes = 50
    config = network_config(
        **{**updates, "train.top_k": 3, "train.hutchinson_probes": probes, "metrics": list(CURVATURE)}
    )
    data = make_data(config.problem)
    (x, y), _ = splits(config, data)
    x, y = jnp.asarray(x), jnp.asarray(y)
    result = run_configs([config])
    rows = trajectory_rows(result, 0)
    reference = reference_gd(config, data, [0, 40])
    for step in (0, 40):
        params = reference[step]
        vector = jnp.asarray(flat(params))
        shapes = [p.shape for p in params]

        def unravel(v):
            out, start = [], 0
            for shape in shapes:
                size = int(np.prod(shape))
                out.append(v[start : start + size].reshape(shape))
                start += size
            return out

        hessian = np.asarray(jax.hessian(lambda v: loss_of(config, unravel(v), x, y))(vector))
        eigenvalues = np.linalg.eigvalsh(hessian)[::-1]
        row = rows[step]
        scale = abs(eigenvalues).max()
        np.testing.assert_allclose(row["sharpness"], eigenvalues[0], rtol=1e-7, atol=1e-9 * scale)
        np.testing.assert_allclose([row[f"eig_{i}"] for i in range(3)], eigenvalues[:3], rtol=1e-6, atol=1e-8 * scale)
        trace = np.trace(hessian)
        standard_error = np.sqrt(2 * (np.sum(hessian**2) - np.sum(np.diag(hessian) ** 2)) / probes)
        assert abs(row["hessian_trace"] - trace) <= 5 * standard_error + 1e-10 * abs(trace)
        np.testing.assert_allclose(row["train_loss"], float(loss_of(config, params, x, y)), rtol=1e-10)


# --- distance to the gradient flow --------------------------------------------------------------

FLOW_CASE = {
    "problem.dataset": "separable_2d", "problem.observations": 16, "problem.test_samples": 0,
    "problem.loss": "logistic", "model.depth": 2, "model.width": 3, "model.bias": True,
    "model.activation": "quadratic", "model.init": "gaussian", "model.scale": 0.5,
    "flow.rtol": 1e-10, "flow.atol": 1e-12, "metrics": ["train_loss", "parameter_norm", "distance_to_flow"],
}


def scipy_flow(config, data, times):
    """theta(t) of d theta/dt = -grad L(theta) from the init, scipy DOP853 (rtol 1e-12), at ``times``."""
    (x, y), _ = splits(config, data)
    x, y = jnp.asarray(x), jnp.asarray(y)
    params = initial_params(config)
    shapes = [p.shape for p in params]

    def unravel(v):
        out, start = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            out.append(v[start : start + size].reshape(shape))
            start += size
        return out

    grad = jax.jit(jax.grad(lambda v: loss_of(config, unravel(v), x, y)))
    solution = solve_ivp(
        lambda t, v: -np.asarray(grad(jnp.asarray(v))), (0.0, max(times)), flat(params),
        method="DOP853", t_eval=times, rtol=1e-12, atol=1e-14,
    )
    assert solution.success
    return solution.y.T


def test_distance_to_flow_matches_scipy_and_shrinks_with_the_step():
    """GD at lr 0.1 and 0.025 to the same time t = 8 (one batch per step size): distance_to_flow at
    every recorded t equals ||theta_GD(t) - theta_flow(t)|| with the flow from scipy, and it is about
    4x smaller for the 4x smaller step (GD is first order)."""
    data = None
    distances = {}
    for lr, steps in ((0.1, 80), (0.025, 320)):
        config = network_config(
            **{**FLOW_CASE, "optimizer.lr": lr, "train.max_steps": steps, "train.record_every": steps // 4}
        )
        data = data or make_data(config.problem)
        rows = trajectory_rows(run_configs([config]), 0)
        recorded = sorted(rows)
        times = [step * lr for step in recorded]
        flow = scipy_flow(config, data, times)
        reference = reference_gd(config, data, recorded)
        for step, flow_params in zip(recorded, flow):
            expected = np.linalg.norm(flat(reference[step]) - flow_params)
            np.testing.assert_allclose(rows[step]["distance_to_flow"], expected, rtol=1e-6, atol=1e-9)
        distances[lr] = rows[recorded[-1]]["distance_to_flow"]
    assert distances[0.1] > 1e-3
    assert 3.0 < distances[0.1] / distances[0.025] < 5.0


def test_gradient_flow_run_is_its_own_reference_and_matches_scipy():
    """optimizer.name = gradient_flow: distance_to_flow is 0 at every record (the reference is the
    same flow from the same init), and the flow's parameters match scipy's at t = 8."""
    config = network_config(
        **{**FLOW_CASE, "optimizer.name": "gradient_flow", "optimizer.lr": 0.4, "train.max_steps": 20,
           "train.record_every": 5, "metrics": ["train_loss", "parameter_norm", "distance_to_flow"]}
    )
    data = make_data(config.problem)
    size = flat(initial_params(config)).size
    result = run_configs([config], extra_metrics=projection_metric(size))
    rows = trajectory_rows(result, 0)
    assert sorted(rows) == [0, 5, 10, 15, 20]
    assert all(abs(row["distance_to_flow"]) < 1e-12 for row in rows.values())
    flow = scipy_flow(config, data, [8.0])[0]
    np.testing.assert_allclose(rows[20]["parameter_norm"], np.linalg.norm(flow), rtol=1e-7)
    np.testing.assert_allclose(
        [rows[20][f"projection_{i}"] for i in range(PROJECTIONS)], flow @ directions(size), rtol=1e-6, atol=1e-8
    )


# --- config errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "updates, field",
    [
        ({"problem.loss": "logistic"}, "problem.loss"),  # digits has 10 classes
        ({"model.init": "gaussian_e2e"}, "model.init"),
        ({"model.kind": "two_layer", "model.init": "xavier"}, "model.init"),
        ({"problem.dataset": "separable_2d", "problem.test_samples": 0}, "problem.loss"),  # cross-entropy, one output
        ({"optimizer.batch_size": 121}, "optimizer.batch_size"),
        ({"optimizer.name": "gradient_flow", "optimizer.batch_size": 8}, "optimizer.batch_size"),
        ({"metrics": ["train_loss", "singular_values"]}, "metrics"),
        ({"model.width": None}, "model.width"),
        ({"problem.observations": 1790}, "problem.observations"),
        ({"problem.kind": "completion", "problem.dataset": "synthetic"}, "problem.kind"),
        ({"problem.kind": "teacher_student", "problem.dataset": "digits"}, "problem.dataset is not a field"),
        ({"model.activation": "tanh"}, "model.activation"),
        ({"train.lanczos_iterations": 1}, "train.lanczos_iterations"),
    ],
)
def test_config_errors_are_one_line_and_name_the_field(updates, field):
    with pytest.raises(ConfigError) as error:
        network_config(**updates)
    message = str(error.value)
    assert "\n" not in message
    assert field in message


def test_sgd_checks_its_stopping_rules_at_recording_points_only():
    """No full forward pass per step: a minibatch run that reaches train.tol stops at the next
    recording point, with the same trajectory up to there as the run without a tolerance."""
    from trajlab.engine.schedule import recording_steps

    free = network_config(**{"optimizer.batch_size": 40, "train.max_steps": 200, "train.record_every": 20,
                             "metrics": ["train_loss"]})
    losses = {step: row["train_loss"] for step, row in trajectory_rows(run_configs([free]), 0).items()}
    tol = float(np.median(list(losses.values())))  # reached somewhere inside the run
    result = run_configs([replace_dotted(free, {"train.tol": tol})])
    stop = int(result.steps[0])
    assert result.status == ["done"] and stop in set(recording_steps(free.train).tolist())
    assert losses[stop] <= tol and all(value > tol for step, value in losses.items() if step < stop)
    rows = trajectory_rows(result, 0)
    assert max(rows) == stop and all(row["train_loss"] == losses[step] for step, row in rows.items())
