"""The linearized reference carried beside a run (``linearization`` metric) and ``relative_weight_change``.

Independent reference: a two-layer ReLU net written out by hand in numpy, its Jacobian at init
written out by hand (df/da_r = relu(w_r.x), df/dw_r = a_r 1[w_r.x > 0] x), the first-order Taylor
model f0 + J (v - w0) as a dense matrix, and both trained by a plain numpy GD loop.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import dataclasses  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import trajlab  # noqa: E402
from trajlab import cli  # noqa: E402
from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig  # noqa: E402
from trajlab.engine.task import run_configs  # noqa: E402
from trajlab.errors import ConfigError  # noqa: E402
from trajlab.problems.registry import make_data  # noqa: E402

LR, STEPS = 0.2, 60


def tiny(metrics=("train_loss", "linearization", "relative_weight_change"), optimizer="gd", **train):
    return RunConfig(
        problem=ProblemConfig("teacher_student", n=3, teacher_width=2, observations=8, test_samples=5, seed=1),
        model=ModelConfig("two_layer", width=4, init="gaussian", scale=1.0),
        optimizer=OptimizerConfig(name=optimizer, lr=LR),
        train=TrainConfig(**{"max_steps": STEPS, "tol": 0.0, "record": "linear", "record_every": 20, "x64": True, **train}),
        metrics=metrics,
        seed=3,
    )


def _net(hidden, output, x):
    return np.maximum(x @ hidden.T, 0.0) @ output


def _jacobian(hidden, output, x):
    """Rows: samples; columns: (hidden row-major, output), the order of the flattened parameters."""
    active = (x @ hidden.T > 0).astype(float)  # (S, R)
    d_hidden = (active * output)[:, :, None] * x[:, None, :]  # (S, R, d)
    d_output = np.maximum(x @ hidden.T, 0.0)
    return np.concatenate([d_hidden.reshape(len(x), -1), d_output], axis=1)


def test_linearization_matches_a_hand_written_taylor_model_trained_by_plain_gd():
    config = tiny()
    data = make_data(config.problem)
    x, y = np.asarray(data.inputs, float), np.asarray(data.outputs, float)
    xt = np.asarray(data.test_inputs, float)
    w0 = trajlab.init_params(dataclasses.replace(config, metrics=("train_loss",)))
    hidden0, output0 = np.asarray(w0.hidden, float), np.asarray(w0.output, float)
    theta0 = np.concatenate([hidden0.ravel(), output0])
    shape = hidden0.shape

    def unpack(theta):
        return theta[: hidden0.size].reshape(shape), theta[hidden0.size:]

    jac, jac_test = _jacobian(hidden0, output0, x), _jacobian(hidden0, output0, xt)
    f0, f0_test = _net(hidden0, output0, x), _net(hidden0, output0, xt)
    n = len(x)
    model, linear = theta0.copy(), theta0.copy()
    expected = {}
    for step in range(STEPS + 1):
        if step % 20 == 0:
            h, a = unpack(model)
            f_lin = f0 + jac @ (linear - theta0)
            expected[step] = dict(
                train_loss=np.sum((_net(h, a, x) - y) ** 2) / n,
                relative_weight_change=np.linalg.norm(model - theta0) / np.linalg.norm(theta0),
                linearization_param_distance=np.linalg.norm(model - linear),
                linearization_train_distance=np.sqrt(np.mean((_net(h, a, x) - f_lin) ** 2)),
                linearization_test_distance=np.sqrt(np.mean((_net(h, a, xt) - f0_test - jac_test @ (linear - theta0)) ** 2)),
                linearization_train_loss=np.sum((f_lin - y) ** 2) / n,
            )
        if step == STEPS:
            break
        h, a = unpack(model)
        residual = _net(h, a, x) - y
        model = model - LR * (2.0 / n) * _jacobian(h, a, x).T @ residual
        linear = linear - LR * (2.0 / n) * jac.T @ (f0 + jac @ (linear - theta0) - y)
    assert expected[STEPS]["linearization_param_distance"] > 1e-3  # the two have parted: the test has teeth

    result = run_configs([config])
    rows = result.trajectory
    for index, step in enumerate(rows["step"]):
        for column, value in expected[int(step)].items():
            assert rows[column][index] == pytest.approx(value, rel=1e-9, abs=1e-12), (step, column)


@pytest.mark.parametrize("optimizer", ["normalized_gd"])
def test_the_model_is_trained_exactly_as_alone_even_with_a_global_optimizer_state(optimizer):
    """normalized GD divides by a running average of the *global* gradient norm: with separate
    states the model's trajectory is unchanged by the linearization beside it, and the
    linearization's own loss equals that of a run of the linear model alone (first step: the two
    coincide, so the first recorded linear loss equals the model's)."""
    base = tiny(("train_loss", "distance_from_init"), optimizer=optimizer)
    paired = dataclasses.replace(base, metrics=("train_loss", "distance_from_init", "linearization"))
    alone, both = run_configs([base]).trajectory, run_configs([paired]).trajectory
    for column in ("train_loss", "distance_from_init"):
        np.testing.assert_allclose(both[column], alone[column], rtol=1e-12, atol=1e-15)
    assert both["linearization_train_loss"][0] == pytest.approx(both["train_loss"][0], rel=1e-12)
    assert both["linearization_param_distance"][0] == 0.0
    assert both["linearization_param_distance"][-1] > 0.0


def test_minibatch_runs_share_their_samples_with_the_linearization():
    """Same model trajectory with or without the linearization under minibatch SGD (same draws)."""
    base = tiny(("train_loss",), optimizer="gd")
    base = dataclasses.replace(base, optimizer=OptimizerConfig(name="gd", lr=LR, batch_size=3))
    paired = dataclasses.replace(base, metrics=("train_loss", "linearization"))
    alone, both = run_configs([base]).trajectory, run_configs([paired]).trajectory
    np.testing.assert_allclose(both["train_loss"], alone["train_loss"], rtol=1e-12)


def test_a_family_without_outputs_refuses_the_linearization():
    config = RunConfig(
        problem=ProblemConfig(kind="completion", m=4, n=4, rank=1, observations=8),
        model=ModelConfig(depth=2),
        metrics=("train_loss", "linearization"),
    )
    with pytest.raises(ConfigError, match="linearization needs model.kind=deep_linear"):
        trajlab.check_family(config)


def test_cli_refuses_the_linearization_for_a_family_without_outputs(tmp_path):
    result = CliRunner().invoke(
        cli.app,
        ["run", "not-norms", "--quick", "--no-progress", "--no-figures", "--out", str(tmp_path / "x"),
         "--set", "metrics=[train_loss,linearization]"],
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "linearization" in lines[0], result.stderr


def test_no_test_samples_gives_no_test_distance_and_no_error():
    import math

    import trajlab
    from trajlab.engine import run_configs

    config = trajlab.replace_dotted(trajlab.RunConfig(), {
        "problem.kind": "teacher_student", "model.kind": "two_layer", "problem.test_samples": 0,
        "metrics": ["train_loss", "linearization"], "train.max_steps": 5})
    final = run_configs([config]).final
    assert math.isnan(final["linearization_test_distance"][0])
    assert final["linearization_train_loss"][0] == pytest.approx(final["train_loss"][0], rel=1e-3)
