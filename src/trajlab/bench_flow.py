"""Benchmark: adaptive gradient-flow solver vs tiny-step gradient descent at equal accuracy.

Both approximate the same gradient flow theta(T) from the same init (float64). The reference is a
Tsit5 solve with rtol 1e-12, atol 1e-14. For each adaptive tolerance and each GD step size we
record the distance ||theta(T) - theta_ref(T)|| (all layers), the gradient evaluations and the
wall time of a second, already compiled call. GD's error is first order in eta (Elkabetz & Cohen,
NeurIPS 2021), so matching an accuracy eps costs GD about T * C / eps evaluations. The ratio
reported is (GD evaluations) / (solver evaluations) where GD's step size is the one that matches
the solver's distance on the fitted line log(distance) = order * log(eta) + c through the
measured GD runs; ``extrapolated`` says when that step is smaller than any GD step measured. The
wall-time ratio uses GD's marginal seconds per step from its longest run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FlowBenchRow:
    method: str  # "tsit5 rtol=..." or "gd eta=..."
    distance: float
    gradient_evaluations: int
    wall_s: float


def _base(horizon: float):
    from trajlab.config import (
        FlowConfig,
        ModelConfig,
        OptimizerConfig,
        ProblemConfig,
        RunConfig,
        TrainConfig,
    )

    return RunConfig(
        problem=ProblemConfig(kind="whitened", m=6, n=6, target_singular_values=(3.0, 2.0, 1.0, 0.5)),
        model=ModelConfig(depth=3, init="gaussian", scale=0.3),
        optimizer=OptimizerConfig(name="gd", lr=horizon / 100),
        train=TrainConfig(max_steps=100, tol=0.0, x64=True, record="linear", record_every=10**9),
        flow=FlowConfig(),
        metrics=("train_loss",),
    )


def _final_params(config) -> tuple[np.ndarray, int, float]:
    """Final flattened parameters, gradient evaluations and wall time of a compiled second call."""
    import jax.numpy as jnp

    from trajlab.engine import run_configs

    metric = {"params": lambda state: jnp.concatenate([w.ravel() for w in state.layers])}
    run_configs([config], metric)  # compile
    start = time.perf_counter()
    result = run_configs([config], metric)
    wall = time.perf_counter() - start
    params = np.array([result.final[f"params_{i}"][0] for i in range(len(result.final) - 1)])
    return params, int(result.gradient_evaluations[0]), wall


def flow_vs_gd(
    horizon: float = 2.0,
    rtols: tuple[float, ...] = (1e-4, 1e-6, 1e-8),
    step_sizes: tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5),
) -> tuple[list[FlowBenchRow], list[dict]]:
    """Rows for every solver tolerance and GD step, and the matched-accuracy ratios."""
    from trajlab.config import replace_dotted

    base = _base(horizon)
    flow = {"optimizer.name": "gradient_flow", "flow.solver": "tsit5"}
    reference, _, _ = _final_params(replace_dotted(base, {**flow, "flow.rtol": 1e-12, "flow.atol": 1e-14}))
    rows = []
    for rtol in rtols:
        params, evals, wall = _final_params(
            replace_dotted(base, {**flow, "flow.rtol": rtol, "flow.atol": rtol * 1e-2})
        )
        rows.append(FlowBenchRow(f"tsit5 rtol={rtol:g}", float(np.linalg.norm(params - reference)), evals, wall))
    for eta in step_sizes:
        steps = int(round(horizon / eta))
        params, evals, wall = _final_params(
            replace_dotted(base, {"optimizer.lr": eta, "train.max_steps": steps})
        )
        rows.append(FlowBenchRow(f"gd eta={eta:g}", float(np.linalg.norm(params - reference)), evals, wall))
    ratios = []
    gd_rows = [r for r in rows if r.method.startswith("gd")]
    for solver_row in (r for r in rows if r.method.startswith("tsit5")):
        # GD's error is ~ C eta: the step size that would match the solver's distance.
        fit = np.polyfit(
            np.log([float(r.method.split("=")[1]) for r in gd_rows]), np.log([r.distance for r in gd_rows]), 1
        )
        eta_needed = float(np.exp((np.log(solver_row.distance) - fit[1]) / fit[0]))
        gd_evals = horizon / eta_needed
        # Marginal cost per step from the longest GD run (fixed per-call costs amortized).
        longest = max(gd_rows, key=lambda r: r.gradient_evaluations)
        gd_seconds_per_eval = longest.wall_s / longest.gradient_evaluations
        ratios.append(
            dict(
                solver=solver_row.method,
                distance=solver_row.distance,
                gd_step_needed=eta_needed,
                gd_order=float(fit[0]),
                evaluations_ratio=gd_evals / solver_row.gradient_evaluations,
                wall_ratio=float(gd_evals * gd_seconds_per_eval / solver_row.wall_s),
                extrapolated=bool(eta_needed < min(float(r.method.split("=")[1]) for r in gd_rows)),
            )
        )
    return rows, ratios
