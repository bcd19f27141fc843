"""Presets of "Implicit Regularization in Deep Matrix Factorization" (Arora, Cohen, Hu, Luo, NeurIPS 2019).

- ``dmf-completion`` / ``dmf-sensing``: the solution found by (normalized) gradient descent on
  deep matrix factorizations of depth 1-4, from init scales 1e-3 ... 1e-6, against
  nuclear-norm minimization (paper, Figure 2). Claim checked: with depth >= 2 and small init the
  test error and effective rank fall below those of the minimum nuclear norm solution when
  observations are few, and depth strengthens the effect as the init scale shrinks.
- ``dmf-dynamics``: plain GD; singular values of the end-to-end matrix are learned one after
  another, more sharply for deeper factorizations (paper, Figure 3; Theorem 3: d sigma_r/dt is
  proportional to sigma_r^(2-2/N)).
"""

from __future__ import annotations

import json

from trajlab.baselines import nuclear_norm_completion, nuclear_norm_sensing
from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig, to_flat
from trajlab.experiments.preset import Preset
from trajlab.problems.matrix import make_matrix_problem
from trajlab.sweep.runner import BaselineJob, baseline_id, flat_row


def nuclear_norm_jobs(configs: list[RunConfig]) -> list[BaselineJob]:
    """One nuclear-norm minimization (equality constraints, SCS) per distinct problem."""
    problems = {json.dumps(to_flat(c.problem), sort_keys=True): c.problem for c in configs}
    jobs = []
    for key, problem in problems.items():
        columns = {f"problem.{k}": v for k, v in flat_row(problem).items()}
        columns["baseline"] = "nuclear_norm"
        jobs.append(BaselineJob(baseline_id("nuclear_norm", to_flat(problem)), columns, _nuclear_norm_solver(problem)))
    return jobs


def _nuclear_norm_solver(problem: ProblemConfig):
    def compute() -> dict:
        data = make_matrix_problem(problem)
        shape = (problem.m, problem.n)
        if problem.kind == "completion":
            result = nuclear_norm_completion(shape, data.rows, data.cols, data.values, target=data.target)
        else:
            result = nuclear_norm_sensing(shape, data.sensing, data.values, target=data.target)
        return dict(
            test_error=result.test_error,
            nuclear_norm=result.nuclear_norm,
            effective_rank=result.effective_rank,
            solve_s=result.solve_s,
            status=result.status,
        )

    return compute


def solution_figures(data) -> dict:
    from trajlab.plots import loss_figure, solution_figure

    return {
        "solution": solution_figure(data.runs, data.baselines),
        "train_loss": loss_figure(data.runs, data.trajectories),
    }


def dynamics_figures(data) -> dict:
    from trajlab.plots import loss_figure, singular_values_figure

    return {
        "singular_values": singular_values_figure(data.runs, data.trajectories),
        "singular_values_log": singular_values_figure(data.runs, data.trajectories, logy=True),
        "train_loss": loss_figure(data.runs, data.trajectories),
    }


_SOLUTION_AXES = {
    "model.depth": [1, 2, 3, 4],
    "model.scale": [1e-3, 1e-4, 1e-5, 1e-6],
    "optimizer.lr": [1e-3, 3e-4],
}

DMF_COMPLETION = Preset(
    name="dmf-completion",
    description="Deep matrix factorization vs nuclear norm on 100x100 rank-5 completion (Arora et al. 2019, Fig. 2)",
    base=RunConfig(
        problem=ProblemConfig(kind="completion", m=100, n=100, rank=5, observations=2000),
        model=ModelConfig(init="gaussian_e2e"),
        optimizer=OptimizerConfig(name="normalized_gd"),
        train=TrainConfig(max_steps=1_000_000, tol=1e-6),
    ),
    axes={"problem.observations": [2000, 5000], **_SOLUTION_AXES},
    quick={
        "problem.observations": 2000,
        "model.depth": [1, 2, 3],
        "model.scale": [1e-2, 1e-3],
        "optimizer.lr": 1e-3,
        "train.max_steps": 60_000,
        "train.record_points": 40,
    },
    baselines=nuclear_norm_jobs,
    figures=solution_figures,
    claims=(
        "depth >= 2 from small init: lower test error and effective rank than nuclear norm min. at 2000 observations",
    ),
)

DMF_SENSING = Preset(
    name="dmf-sensing",
    description="Deep matrix factorization vs nuclear norm on 100x100 rank-5 Gaussian matrix sensing",
    base=RunConfig(
        problem=ProblemConfig(kind="sensing", m=100, n=100, rank=5, observations=2000),
        model=ModelConfig(init="gaussian_e2e"),
        optimizer=OptimizerConfig(name="normalized_gd"),
        train=TrainConfig(max_steps=1_000_000, tol=1e-6),
    ),
    axes={"problem.observations": [2000, 5000], **_SOLUTION_AXES},
    quick={
        "problem.m": 30,
        "problem.n": 30,
        "problem.rank": 2,
        "problem.observations": 300,
        "model.depth": [1, 2, 3],
        "model.scale": [1e-2, 1e-3],
        "optimizer.lr": 1e-3,
        "train.max_steps": 60_000,
        "train.record_points": 40,
    },
    baselines=nuclear_norm_jobs,
    figures=solution_figures,
)

DMF_DYNAMICS = Preset(
    name="dmf-dynamics",
    description="Plain GD on 100x100 completion: singular values learned one by one for depth >= 2 (Fig. 3)",
    base=RunConfig(
        problem=ProblemConfig(kind="completion", m=100, n=100, rank=5, observations=2000),
        model=ModelConfig(init="gaussian_e2e", scale=1e-3),
        optimizer=OptimizerConfig(name="gd", lr=0.25),
        train=TrainConfig(max_steps=200_000, tol=1e-6, record_points=200),
    ),
    axes={"model.depth": [1, 2, 3]},
    quick={"train.max_steps": 30_000, "train.record_points": 60},
    figures=dynamics_figures,
    claims=("singular values of W_e are learned one after another for depth >= 2",),
)
