"""Tests of the deep matrix factorization figures (trajlab.presets.dmf, trajlab.plots) and trajlab.report.tables.

Synthetic sweep tables in the stored layout; every plotted / tabulated number is compared with an
independent pandas / numpy computation (boolean masks and np.median, no groupby in the checks).
"""

from __future__ import annotations

import ast
import io
import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from trajlab.plots import NUCLEAR_NORM_LABEL, loss_figure, save_figure
from trajlab.presets.dmf import singular_values_figure, solution_figure
from trajlab.report import final_table, render_table, summary_table

SRC = Path(__file__).resolve().parents[1] / "src" / "trajlab"
K = 4


def make_runs(kind="completion", observations=(2000, 5000), depths=(1, 2, 3),
              scales=(1e-3, 1e-2, 1e-1, 1.0), lrs=(0.1, 0.25), seeds=(0, 1), seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i, (obs, depth, scale, lr, s) in enumerate(
        itertools.product(observations, depths, scales, lrs, seeds)
    ):
        svs = np.sort(rng.uniform(0.1, 3.0, K))[::-1]
        rows.append({
            "problem.kind": kind, "problem.m": 100, "problem.n": 100, "problem.rank": 5,
            "problem.observations": obs, "problem.seed": 0,
            "model.depth": depth, "model.width": 100, "model.init": "normal",
            "model.scale": scale, "optimizer.name": "sgd", "optimizer.lr": lr,
            "train.max_steps": 10_000, "train.tol": 1e-6, "seed": s,
            "run_id": f"r{i:04d}", "status": "done", "steps": int(rng.integers(100, 10_000)),
            "wall_s": float(rng.uniform(1, 5)),
            "final.train_loss": float(10 ** rng.uniform(-7, -3)),
            "final.test_error": float(10 ** rng.uniform(-3, 0)),
            "final.effective_rank": float(rng.uniform(1, 10)),
            "final.nuclear_norm": float(rng.uniform(5, 20)),
            "final.frobenius_norm": float(rng.uniform(3, 10)),
            **{f"final.sv_{j}": float(v) for j, v in enumerate(svs)},
        })
    runs = pd.DataFrame(rows)
    # A few diverged runs with absurd finals (must not reach the figure) and max_steps runs.
    diverged = runs.index[::7]
    runs.loc[diverged, "status"] = "diverged"
    runs.loc[diverged, "final.test_error"] = 1e6
    runs.loc[diverged, "final.nuclear_norm"] = 1e9
    runs.loc[diverged, "final.train_loss"] = np.inf
    max_steps = runs.index[3::11].difference(diverged)
    runs.loc[max_steps, "status"] = "max_steps"
    return runs


def make_baselines(runs, extra_problem=True):
    problems = runs.filter(like="problem.").drop_duplicates().reset_index(drop=True)
    rows = []
    for i, problem in problems.iterrows():
        for name, offset in (("nuclear_norm", 0.0), ("zero", 1.0)):
            rows.append({**problem.to_dict(), "baseline": name,
                         "test_error": 0.05 * (i + 1) + offset, "nuclear_norm": 7.0 + i + offset,
                         "effective_rank": 4.5 + offset, "solve_s": 1.0, "status": "optimal"})
    if extra_problem:  # a problem with no runs: must not show up anywhere
        rows.append({**problems.iloc[0].to_dict(), "problem.observations": 99_999,
                     "baseline": "nuclear_norm", "test_error": 123.0, "nuclear_norm": 123.0,
                     "effective_rank": 123.0, "solve_s": 1.0, "status": "optimal"})
    return pd.DataFrame(rows)


def make_trajectories(runs, steps=(0, 1, 2, 5, 10, 50, 100, 1000)):
    rng = np.random.default_rng(1)
    frames = []
    for _, run in runs.iterrows():
        n = len(steps)
        frame = pd.DataFrame({
            "run_id": run["run_id"], "step": np.asarray(steps, dtype=np.int64),
            "t": np.asarray(steps, dtype=float) * run["optimizer.lr"],
            "train_loss": np.geomspace(1.0, 1e-6, n) * rng.uniform(0.5, 2),
            "test_error": np.geomspace(1.0, 1e-2, n),
            "effective_rank": np.linspace(50, 5, n),
            "nuclear_norm": np.linspace(0.1, 10, n),
        })
        for j in range(K):
            frame[f"sv_{j}"] = np.sort(rng.uniform(0, 3, n)) / (j + 1)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def runs():
    return make_runs()


@pytest.fixture
def baselines(runs):
    return make_baselines(runs)


# --------------------------------------------------------------------------------------------
# solution_figure


def test_solution_figure_grid_lines_and_scales(runs, baselines):
    metrics = ("test_error", "nuclear_norm", "effective_rank")
    fig = solution_figure(runs, baselines, metrics=metrics)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * 3
    depths = sorted(runs["model.depth"].unique())
    for ax in fig.axes:
        labels = [line.get_label() for line in ax.get_lines()]
        assert labels == [f"depth {d}" for d in depths] + [NUCLEAR_NORM_LABEL]
        assert ax.get_xscale() == "log"
    for row in range(2):
        for col, metric in enumerate(metrics):
            ax = fig.axes[row * 3 + col]
            assert ax.get_yscale() == ("linear" if metric == "effective_rank" else "log")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["2000 observed entries"] * 3
    assert titles[3:] == ["5000 observed entries"] * 3
    legend_labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_labels[:3] == ["depth 1", "depth 2", "depth 3"]
    assert NUCLEAR_NORM_LABEL in legend_labels
    assert "hit max_steps" in legend_labels


def test_solution_figure_plots_medians_of_non_diverged_runs(runs, baselines):
    metrics = ("test_error", "nuclear_norm", "effective_rank")
    fig = solution_figure(runs, baselines, metrics=metrics)
    for row, obs in enumerate((2000, 5000)):
        for col, metric in enumerate(metrics):
            ax = fig.axes[row * 3 + col]
            for line, depth in zip(ax.get_lines(), (1, 2, 3)):
                scales = sorted(runs["model.scale"].unique())
                expected_x, expected_y = [], []
                for scale in scales:
                    mask = ((runs["problem.observations"] == obs) & (runs["model.depth"] == depth)
                            & (runs["model.scale"] == scale) & (runs["status"] != "diverged"))
                    if mask.any():
                        expected_x.append(scale)
                        expected_y.append(np.median(runs.loc[mask, f"final.{metric}"].to_numpy()))
                np.testing.assert_allclose(line.get_xdata(), expected_x)
                np.testing.assert_allclose(line.get_ydata(), expected_y)
            hline = ax.get_lines()[-1]
            nuc = baselines[(baselines["baseline"] == "nuclear_norm")
                            & (baselines["problem.observations"] == obs)]
            np.testing.assert_allclose(hline.get_ydata(), [nuc[metric].iloc[0]] * 2)
            assert hline.get_linestyle() == "--"


def test_solution_figure_hollow_markers_for_max_steps(runs):
    fig = solution_figure(runs, metrics=("test_error",))
    kept = runs[runs["status"] != "diverged"]
    for row, obs in enumerate((2000, 5000)):
        ax = fig.axes[row]
        expected = set()
        for depth, scale in itertools.product((1, 2, 3), sorted(runs["model.scale"].unique())):
            mask = ((kept["problem.observations"] == obs) & (kept["model.depth"] == depth)
                    & (kept["model.scale"] == scale))
            if (kept.loc[mask, "status"] == "max_steps").any():
                y = np.median(kept.loc[mask, "final.test_error"])
                expected.add((scale, round(float(y), 12)))
        offsets = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
        got = {(float(x), round(float(y), 12)) for off in offsets for x, y in off}
        assert got == expected and expected


def test_solution_figure_without_baselines_and_sensing_titles():
    runs = make_runs(kind="sensing", observations=(800,), depths=(2, 3))
    fig = solution_figure(runs, None, metrics=("test_error", "effective_rank"))
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert len(ax.get_lines()) == 2
        assert ax.get_title() == "800 measurements"
    empty = runs.iloc[0:0]
    fig = solution_figure(runs, make_baselines(runs).iloc[0:0], metrics=("test_error",))
    assert len(fig.axes[0].get_lines()) == 2
    with pytest.raises(ValueError):
        solution_figure(empty)


def test_solution_figure_custom_group():
    runs = make_runs(observations=(2000,))
    fig = solution_figure(runs, metrics=("test_error",), group="optimizer.lr")
    assert len(fig.axes) == runs["optimizer.lr"].nunique()
    assert fig.axes[0].get_title() == "optimizer.lr = 0.1"


def test_solution_figure_missing_columns(runs):
    with pytest.raises(ValueError, match="final.effective_rank"):
        solution_figure(runs.drop(columns=["final.effective_rank"]))
    with pytest.raises(ValueError, match="model.scale"):
        solution_figure(runs.drop(columns=["model.scale"]))
    with pytest.raises(ValueError, match="diverged"):
        solution_figure(runs.assign(status="diverged"))


# --------------------------------------------------------------------------------------------
# singular_values_figure and loss_figure


def test_singular_values_figure_first_run_per_depth(runs):
    trajectories = make_trajectories(runs)
    fig = singular_values_figure(runs, trajectories)
    depths = sorted(runs["model.depth"].unique())
    assert len(fig.axes) == len(depths)
    for ax, depth in zip(fig.axes, depths):
        assert ax.get_xscale() == "log"
        lines = ax.get_lines()
        assert len(lines) == K
        candidates = runs[(runs["model.depth"] == depth) & (runs["status"] != "diverged")]
        run_id = sorted(candidates["run_id"])[0]
        assert run_id in ax.get_title()
        traj = trajectories[(trajectories["run_id"] == run_id) & (trajectories["step"] > 0)]
        for j, line in enumerate(lines):
            np.testing.assert_allclose(line.get_xdata(), traj["step"].to_numpy())
            np.testing.assert_allclose(line.get_ydata(), traj[f"sv_{j}"].to_numpy())


def test_singular_values_figure_k_and_time_axis(runs):
    trajectories = make_trajectories(runs)
    fig = singular_values_figure(runs, trajectories, k=2, x="t")
    assert all(len(ax.get_lines()) == 2 for ax in fig.axes)
    assert all(min(line.get_xdata()) > 0 for ax in fig.axes for line in ax.get_lines())
    with pytest.raises(ValueError, match=f"sv_{K}"):
        singular_values_figure(runs, trajectories, k=K + 1)
    with pytest.raises(ValueError, match="sv_0"):
        singular_values_figure(runs, trajectories.drop(columns=[f"sv_{j}" for j in range(K)]))
    with pytest.raises(ValueError, match="model.depth"):
        singular_values_figure(runs.drop(columns=["model.depth"]), trajectories)


def test_loss_figure_one_line_per_run(runs):
    subset = runs[runs["problem.observations"] == 2000].head(10)
    trajectories = make_trajectories(subset)
    fig = loss_figure(runs, trajectories)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    lines = ax.get_lines()
    assert len(lines) == len(subset)
    assert all(line.get_label().startswith("depth ") for line in lines)
    assert all("scale" in line.get_label() for line in lines)
    assert all(min(line.get_xdata()) > 0 for line in lines)
    with pytest.raises(ValueError, match="nuclear_norm_x"):
        loss_figure(runs, trajectories, metric="nuclear_norm_x")


# --------------------------------------------------------------------------------------------
# save_figure


def test_save_figure_writes_png_and_svg_atomically(runs, tmp_path):
    fig = solution_figure(runs, metrics=("test_error",))
    folder = tmp_path / "figs"
    paths = save_figure(fig, folder, "solution")
    assert paths == [folder / "solution.png", folder / "solution.svg"]
    assert paths[0].read_bytes().startswith(b"\x89PNG")
    svg = paths[1].read_text()
    assert "<svg" in svg and len(svg) > 1000
    assert sorted(os.listdir(folder)) == ["solution.png", "solution.svg"]
    umask = os.umask(0)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in paths)
    with pytest.raises(ValueError):
        save_figure(solution_figure(runs, metrics=("test_error",)), folder, "a/b")


def test_save_figure_closes_pyplot_figure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.add_subplot().plot([1, 2], [3, 4])
    number = fig.number
    save_figure(fig, tmp_path, "p")
    assert not plt.fignum_exists(number)


# --------------------------------------------------------------------------------------------
# tables


def test_final_table_matches_runs(runs, baselines):
    table = final_table(runs)
    # the standard levels, then every other config field that varies (here the seed)
    varying = [c for c in ("seed",) if runs[c].nunique() > 1]
    assert list(table.index.names) == ["problem.kind", "problem.observations", "model.depth",
                                       "model.scale", "optimizer.lr", *varying]
    assert list(table.columns) == ["run_id", "status", "steps", "train_loss", "test_error",
                                   "effective_rank", "nuclear_norm"]
    assert len(table) == len(runs)
    assert table.index.is_monotonic_increasing
    by_id = runs.set_index("run_id")
    for run_id, row in table.reset_index().set_index("run_id").iterrows():
        ref = by_id.loc[run_id]
        assert row["status"] == ref["status"] and row["steps"] == ref["steps"]
        assert row["model.depth"] == ref["model.depth"]
        assert row["model.scale"] == ref["model.scale"]
        for metric in ("train_loss", "test_error", "effective_rank", "nuclear_norm"):
            assert row[metric] == ref[f"final.{metric}"]


def test_final_table_with_baselines(runs, baselines):
    table = final_table(runs, baselines, metrics=("train_loss", "test_error"))
    n_problems = runs["problem.observations"].nunique()
    assert len(table) == len(runs) + 2 * n_problems  # the unmatched problem is dropped
    flat = table.reset_index()
    nuc = flat[flat["model.depth"] == NUCLEAR_NORM_LABEL]
    assert len(nuc) == n_problems
    for _, row in nuc.iterrows():
        ref = baselines[(baselines["baseline"] == "nuclear_norm")
                        & (baselines["problem.observations"] == row["problem.observations"])]
        assert row["test_error"] == ref["test_error"].iloc[0]
        assert np.isnan(row["train_loss"]) and pd.isna(row["steps"])
    # Baseline rows follow the runs of their problem.
    obs = flat["problem.observations"].to_numpy()
    assert (np.diff(obs) >= 0).all()
    for value in np.unique(obs):
        block = flat[flat["problem.observations"] == value]
        is_baseline = block["model.depth"].map(lambda d: isinstance(d, str)).to_numpy()
        assert is_baseline[-2:].all() and not is_baseline[:-2].any()


def test_final_table_missing_columns(runs):
    # a metric the runs did not record is left out (presets record different metrics) ...
    table = final_table(runs.drop(columns=["final.test_error"]))
    assert "test_error" not in table.columns and "nuclear_norm" in table.columns
    # ... but the run bookkeeping columns are required
    with pytest.raises(ValueError, match="status"):
        final_table(runs.drop(columns=["status"]))
    with pytest.raises(ValueError, match="baseline"):
        final_table(runs, make_baselines(runs).drop(columns=["baseline"]))


def test_summary_table_matches_pandas(runs):
    table = summary_table(runs)
    assert list(table.index) == [1, 2, 3]
    for depth in (1, 2, 3):
        at = runs[runs["model.depth"] == depth]
        assert table.loc[depth, "runs"] == len(at)
        for status in ("done", "max_steps", "diverged"):
            assert table.loc[depth, status] == int((at["status"] == status).sum())
        ok = at[at["status"] != "diverged"]
        for metric in ("train_loss", "test_error"):
            values = ok[f"final.{metric}"].to_numpy()
            assert table.loc[depth, f"{metric} median"] == pytest.approx(np.median(values))
            assert table.loc[depth, f"{metric} min"] == values.min()
            assert table.loc[depth, f"{metric} max"] == values.max()
    with pytest.raises(ValueError, match="status"):
        summary_table(runs.drop(columns=["status"]))


def test_render_table(runs, baselines):
    table = final_table(runs, baselines)
    rendered = render_table(table, title="final values")
    assert isinstance(rendered, Table)
    assert rendered.row_count == len(table)
    assert len(rendered.columns) == table.index.nlevels + table.shape[1]
    console = Console(width=250, record=True, file=io.StringIO())
    console.print(rendered)
    text = console.export_text()
    assert "final values" in text and NUCLEAR_NORM_LABEL in text
    summary = render_table(summary_table(runs))
    assert summary.row_count == 3
    plain = render_table(pd.DataFrame({"a": [1, 2], "b": [0.5, np.nan]}))
    assert len(plain.columns) == 2


# --------------------------------------------------------------------------------------------
# layering


@pytest.mark.parametrize("path", sorted(f"plots/{p.name}" for p in (SRC / "plots").glob("*.py")) + ["report/tables.py"])
def test_no_jax_or_other_trajlab_imports(path):
    """report / plots are pure DataFrame functions: no JAX, and of trajlab only their own layer."""
    tree = ast.parse((SRC / path).read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    own_layer = ("trajlab.report", "trajlab.plots")
    assert not [n for n in names if n.split(".")[0] in ("jax", "optax", "diffrax")]
    assert not [n for n in names if n.startswith("trajlab") and not n.startswith(own_layer)]
