"""Loss-landscape slices: the vmapped, chunked grid against a plain loop over points, the filter
normalization (Li et al. 2018) checked leaf by leaf, the barrier of a known curve, and
``trajlab landscape`` on a small finished sweep (the recomputed end points reproduce the stored
initial and final losses)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from typer.testing import CliRunner

import trajlab
from trajlab import cli
from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig
from trajlab.landscape import barrier, filter_normalized_direction, plane_losses


def _loss(params, data):
    w, b = params
    return jnp.mean((jnp.tanh(data @ w.T) + b - 1.0) ** 2)


def test_grid_matches_a_plain_loop_and_directions_are_filter_normalized():
    key = jax.random.PRNGKey(0)
    params = (jax.random.normal(key, (4, 3)), jnp.ones(4))
    data = jax.random.normal(jax.random.PRNGKey(1), (7, 3))
    d1 = filter_normalized_direction(jax.random.PRNGKey(2), params)
    d2 = filter_normalized_direction(jax.random.PRNGKey(3), params)
    np.testing.assert_allclose(np.linalg.norm(d1[0], axis=1), np.linalg.norm(params[0], axis=1), rtol=1e-5)
    assert float(jnp.abs(d1[1]).max()) == 0.0  # biases: no direction
    grid = np.array([[a, b] for a in (-1.0, 0.0, 0.5) for b in (-0.5, 0.0, 1.0)])
    values = np.asarray(plane_losses(_loss, params, data, d1, d2, grid, chunk=4))  # 9 points, chunks of 4
    for (a, b), value in zip(grid, values):
        moved = (params[0] + a * d1[0] + b * d2[0], params[1] + a * d1[1] + b * d2[1])
        assert math.isclose(value, float(_loss(moved, data)), rel_tol=1e-5)


def test_barrier_of_a_known_curve():
    alphas = np.linspace(0, 1, 11)
    losses = 1.0 + alphas + 0.3 * np.sin(np.pi * alphas)  # chord 1 + alpha, bump 0.3 at alpha = 1/2
    assert math.isclose(barrier(alphas, losses), 0.3, rel_tol=1e-12)


def test_landscape_command_on_a_small_sweep(tmp_path):
    configs = [
        RunConfig(problem=ProblemConfig(kind="sensing", m=4, n=4, rank=1, observations=20),
                  model=ModelConfig(kind="deep_linear", depth=2, width=4, init="gaussian", scale=0.5),
                  optimizer=OptimizerConfig(name="gd", lr=0.1), seed=seed,
                  train=TrainConfig(max_steps=60, tol=0.0, record_points=5), metrics=("train_loss",))
        for seed in (0, 1)
    ]
    out = tmp_path / "sweep"
    data = trajlab.run(configs, out=out, progress=False)
    runner = CliRunner()
    result = runner.invoke(cli.app, ["landscape", str(out), "--points", "5"])
    assert result.exit_code == 0, result.output
    assert "barrier" in result.output
    frame = pd.read_parquet(out / "landscape" / "landscape.parquet")
    assert set(frame["kind"]) == {"segment", "plane", "pair"}
    for _, run in data.runs.iterrows():
        segment = frame[(frame["kind"] == "segment") & (frame["run_id"] == run["run_id"])].set_index("alpha")["loss"]
        initial = data.trajectories[(data.trajectories["run_id"] == run["run_id"]) & (data.trajectories["step"] == 0)]
        assert math.isclose(segment.loc[1.0], run["final.train_loss"], rel_tol=1e-4)
        assert math.isclose(segment.loc[0.0], float(initial["train_loss"].iloc[0]), rel_tol=1e-4)
        plane = frame[(frame["kind"] == "plane") & (frame["run_id"] == run["run_id"])]
        assert len(plane) == 25
        center = plane[(plane["alpha"] == 0) & (plane["beta"] == 0)]["loss"].iloc[0]
        assert math.isclose(center, run["final.train_loss"], rel_tol=1e-4)
    assert (out / "landscape" / "figures" / "segments.png").read_bytes()[:4] == b"\x89PNG"
    bad = runner.invoke(cli.app, ["landscape", str(out), "--points", "1"])
    assert bad.exit_code == 2 and "--points must be an integer in [2, 401]" in bad.output
    bad = runner.invoke(cli.app, ["landscape", str(out), "--run", "nope"])
    assert bad.exit_code == 2 and "--run" in bad.output
