"""The tensor presets' quick versions, run through the CLI (``trajlab run PRESET --quick``):
direction of the published effects, figures, ``trajlab plot`` and one-line config errors.

tc-incremental (Razin, Maman, Cohen 2021): smaller init -> components learned one after another
and a lower-rank solution. htf-incremental (2022): local components learned one after another;
the tensor factorizations beat depth-3 matrix factorization of the matricized tensor on the same
observations.
"""

from __future__ import annotations

import numpy as np
import pytest

from trajlab.presets import get_preset
from trajlab.presets.claims import check_claims
from trajlab.store import load
from helpers import invoke


def half_steps(trajectory, columns):
    steps = trajectory["step"].to_numpy()
    return [int(steps[np.argmax(trajectory[c].to_numpy() >= 0.5 * trajectory[c].iloc[-1])]) for c in columns]


@pytest.fixture(scope="module")
def tc_quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("tc") / "sweep"
    result = invoke("run", "tc-incremental", "--quick", "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    return out, result


@pytest.fixture(scope="module")
def htf_quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("htf") / "sweep"
    result = invoke("run", "htf-incremental", "--quick", "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    return out, result


def test_tc_incremental_quick_smaller_init_is_more_incremental_and_lower_rank(tc_quick):
    out, _ = tc_quick
    data = load(out)
    runs = data.runs.sort_values("model.scale")
    assert list(runs["model.scale"]) == [0.05, 0.1, 0.3]
    ranks = runs["final.cp_rank_estimate"].to_numpy()
    errors = runs["final.reconstruction_error"].to_numpy()
    # smallest init: the target's rank (3), W* recovered; largest: more components, larger error
    assert ranks[0] == 3 and errors[0] < 0.01
    assert ranks[-1] > ranks[0] and errors[-1] > 5 * errors[0]
    # components learned one after another at the smallest init, later and further apart than at the largest
    spreads = {}
    for _, run in runs.iterrows():
        trajectory = data.trajectories[data.trajectories["run_id"] == run["run_id"]].sort_values("step")
        halves = half_steps(trajectory, [f"comp_{i}" for i in range(3)])
        spreads[run["model.scale"]] = halves[-1] / halves[0]
        if run["model.scale"] == 0.05:
            assert halves == sorted(halves) and halves[-1] > 2 * halves[0], halves
    assert spreads[0.05] > spreads[0.3]
    checks = check_claims(get_preset("tc-incremental").claims, data)
    assert [c.holds for c in checks] == [True, True, True], checks


def test_tc_incremental_quick_writes_figures_and_plot_rewrites_them(tc_quick):
    out, result = tc_quick
    for name in ("component_norms", "reconstruction", "final_values"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0
        (out / "figures" / f"{name}.png").unlink()
    replot = invoke("plot", out)
    assert replot.exit_code == 0, replot.output
    assert all((out / "figures" / f"{n}.png").exists() for n in ("component_norms", "reconstruction", "final_values"))


def test_htf_incremental_quick_local_components_and_comparison(htf_quick):
    out, _ = htf_quick
    data = load(out)
    runs = data.runs.set_index("model.kind")
    assert set(runs.index) == {"hierarchical", "cp", "deep_linear"}
    # the same problem: same W* and observed entries for all three models
    for field in ("problem.order", "problem.dim", "problem.rank", "problem.observations", "problem.seed", "problem.target"):
        assert runs[field].nunique() == 1
    assert runs.loc["deep_linear", "problem.kind"] == "matricized_tensor_completion"
    hierarchical = float(runs.loc["hierarchical", "final.reconstruction_error"])
    cp = float(runs.loc["cp", "final.reconstruction_error"])
    matrix = float(np.sqrt(runs.loc["deep_linear", "final.test_error"]))  # test_error is squared
    assert hierarchical < 0.5 * matrix and cp < 0.5 * matrix, (hierarchical, cp, matrix)
    # local components at the root are learned one after another
    rid = runs.loc["hierarchical", "run_id"]
    trajectory = data.trajectories[data.trajectories["run_id"] == rid].sort_values("step")
    halves = half_steps(trajectory, [f"local_l2_n0_{i}" for i in range(3)])
    assert halves == sorted(halves) and halves[-1] > 2 * halves[0], halves
    # the order-3 tree: level 1 has the node {0,1} and the one-child node {2}
    assert {"local_l1_n0_0", "local_l1_n1_0", "erank_l0_n2", "erank_l1_n1"} <= set(data.trajectories.columns)
    checks = check_claims(get_preset("htf-incremental").claims, data)
    assert [c.holds for c in checks] == [True, True, True, True], checks
    for name in ("local_component_norms", "reconstruction", "final_values"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0


def test_full_presets_are_the_papers():
    tc = get_preset("tc-incremental").configs()
    assert sorted(c.model.scale for c in tc) == [5e-3, 1e-2, 5e-2]
    first = tc[0]
    assert (first.problem.order, first.problem.dim, first.problem.rank, first.problem.observations) == (4, 10, 5, 2000)
    assert (first.model.kind, first.model.width, first.optimizer.name, first.optimizer.lr) == ("cp", 1000, "normalized_gd", 1e-2)
    htf = {c.model.kind: c for c in get_preset("htf-incremental").configs()}
    assert set(htf) == {"hierarchical", "cp", "deep_linear"}
    ht = htf["hierarchical"]
    assert (ht.problem.order, ht.problem.dim, ht.problem.rank, ht.problem.observations) == (3, 16, 5, 2048)
    assert (ht.model.width, ht.model.scale, ht.model.core) == (512, 1e-2, "product")
    matrix = htf["deep_linear"]
    assert (matrix.problem.m, matrix.problem.n, matrix.model.depth) == (256, 16, 3)


def test_wrong_problem_kind_for_the_model_is_a_one_line_error(tmp_path):
    result = invoke("run", "tc-incremental", "--quick", "--set", "problem.kind=completion", "--out", tmp_path / "x")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: problem.kind"), result.output
    assert not (tmp_path / "x").exists()
