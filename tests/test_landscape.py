"""Loss-landscape slices: the vmapped, chunked grid against a plain loop over points, the filter
normalization (Li et al. 2018) checked leaf by leaf, the barrier of a known curve, the trajectory
plane's PCA against numpy's SVD, and ``trajlab landscape`` on a small finished sweep (the
recomputed parameters reproduce the stored losses at every recording point; the PCA directions of
the recomputed path against numpy's SVD; the report embeds the figures)."""

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
from trajlab.landscape import (
    barrier,
    filter_normalized_direction,
    landscape_figures,
    pca_plane,
    plane_benchmark,
    plane_losses,
    recorded_params,
)


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


def test_pca_plane_against_numpy_svd():
    rng = np.random.default_rng(0)
    # a curved path in R^30: a large bend in two directions plus a little noise, 9 recording points
    t = np.linspace(0, 1, 9)[:, None]
    u, v = rng.standard_normal((2, 30))
    points = 3.0 * t * u + 0.8 * t**2 * v + 0.01 * rng.standard_normal((9, 30))
    e1, e2, coordinates, explained = pca_plane(points)
    centered = points - points[-1]
    _, singular, vt = np.linalg.svd(centered, full_matrices=False)
    for e, reference in ((e1, vt[0]), (e2, vt[1])):
        assert abs(abs(float(e @ reference)) - 1.0) < 1e-10
    np.testing.assert_allclose(explained, singular[:2] ** 2 / np.sum(singular**2), rtol=1e-10)
    np.testing.assert_allclose(coordinates[-1], 0.0, atol=1e-12)  # the final point is the center
    np.testing.assert_allclose(np.abs(coordinates[0]), np.abs(centered[0] @ vt[:2].T), rtol=1e-10)
    assert np.all(coordinates[0] <= 0)
    # a straight path: the second direction is completed, orthogonal, with share 0
    e1, e2, coordinates, explained = pca_plane(t * u)
    assert abs(e1 @ e2) < 1e-12 and explained[1] == 0.0 and math.isclose(explained[0], 1.0)
    np.testing.assert_allclose(coordinates[0], [-np.linalg.norm(u), 0.0], atol=1e-12)


def test_plane_benchmark_agrees_with_the_loop():
    params = (jax.random.normal(jax.random.PRNGKey(0), (4, 3)), jnp.ones(4))
    data = jax.random.normal(jax.random.PRNGKey(1), (7, 3))
    d1 = filter_normalized_direction(jax.random.PRNGKey(2), params)
    d2 = filter_normalized_direction(jax.random.PRNGKey(3), params)
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 4), np.linspace(-1, 1, 4), indexing="ij"), -1).reshape(-1, 2)
    result = plane_benchmark(_loss, params, data, d1, d2, grid, chunk=5, repeats=1)
    assert result["points"] == 16 and result["max_relative_difference"] < 1e-5
    assert result["vmapped_points_per_s"] > 0 and result["loop_points_per_s"] > 0


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
    result = runner.invoke(cli.app, ["landscape", str(out), "--points", "5", "--benchmark"])
    assert result.exit_code == 0, result.output
    assert "barrier" in result.output and "Python loop" in result.output and "ratio" in result.output
    frame = pd.read_parquet(out / "landscape" / "landscape.parquet")
    assert set(frame["kind"]) == {"segment", "plane", "pair", "trajectory"}
    assert set(frame["slice"]) == {"line", "random", "pca"}
    configs_by_id = {rid: trajlab.config.from_flat(flat) for rid, flat in data.manifest["configs"].items()}
    for _, run in data.runs.iterrows():
        rid = run["run_id"]
        segment = frame[(frame["kind"] == "segment") & (frame["run_id"] == rid)].set_index("alpha")["loss"]
        stored = data.trajectories[data.trajectories["run_id"] == rid].sort_values("step")
        assert math.isclose(segment.loc[1.0], run["final.train_loss"], rel_tol=1e-4)
        assert math.isclose(segment.loc[0.0], float(stored["train_loss"].iloc[0]), rel_tol=1e-4)
        plane = frame[(frame["kind"] == "plane") & (frame["slice"] == "random") & (frame["run_id"] == rid)]
        assert len(plane) == 25
        center = plane[(plane["alpha"] == 0) & (plane["beta"] == 0)]["loss"].iloc[0]
        assert math.isclose(center, run["final.train_loss"], rel_tol=1e-4)
        # the trajectory plane: the recomputed path reproduces the stored loss at every recording step
        path = frame[(frame["kind"] == "trajectory") & (frame["run_id"] == rid)].sort_values("step")
        assert list(path["step"]) == list(stored["step"]) and len(path) >= 5
        np.testing.assert_allclose(path["loss"], stored["train_loss"], rtol=1e-4)
        # ... and its PCA against numpy's SVD of the stacked recomputed parameters (float64 here)
        (recomputed,), _, _ = recorded_params([configs_by_id[rid]], [list(stored["step"])])
        stacked = np.stack([np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in
                                            jax.tree_util.tree_leaves(recomputed[s])]) for s in stored["step"]])
        centered = stacked - stacked[-1]
        _, _, vt = np.linalg.svd(centered, full_matrices=False)
        first = centered[0] @ vt[:2].T
        np.testing.assert_allclose(path[["alpha", "beta"]].iloc[0].abs(), np.abs(first), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(path[["alpha", "beta"]].iloc[-1], 0.0, atol=1e-12)
        pca = frame[(frame["kind"] == "plane") & (frame["slice"] == "pca") & (frame["run_id"] == rid)]
        assert len(pca) == 25 and np.isfinite(pca["loss"]).all()
        # the grid covers the projected path
        assert pca["alpha"].min() < path["alpha"].min() and pca["alpha"].max() > path["alpha"].max()
    assert "trajectory plane" in result.output and "PC1" in result.output
    figures = out / "landscape" / "figures"
    assert (figures / "segments.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list(figures.glob("pca_*.png"))) == 2
    assert set(landscape_figures(frame)) >= {"segments"} | {f"pca_{r[:8]}" for r in data.runs["run_id"]}
    # the report embeds them, self-contained
    report = runner.invoke(cli.app, ["report", str(out)])
    assert report.exit_code == 0, report.output
    html = (out / "report.html").read_text()
    assert "Loss landscape" in html and 'id="figure-landscape-segments"' in html
    assert html.count("data:image/png;base64,") >= 5
    bad = runner.invoke(cli.app, ["landscape", str(out), "--points", "1"])
    assert bad.exit_code == 2 and "--points must be an integer in [2, 401]" in bad.output
    bad = runner.invoke(cli.app, ["landscape", str(out), "--run", "nope"])
    assert bad.exit_code == 2 and "--run" in bad.output
