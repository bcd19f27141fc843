"""Numerical checks of the theory of deep linear network optimization.

Each check runs a tiny problem (m, n <= 4, depth 2-3, float64) in seconds on a CPU and returns a
:class:`CheckResult`: the claim, the measured numbers and whether they agree with the claim.

Sources:
- Arora, Cohen, Hazan, "On the Optimization of Deep Networks: Implicit Acceleration by
  Overparameterization", ICML 2018 (ACH18): balancedness conservation (Theorem 1's premise),
  end-to-end dynamics (Theorem 1, Eq. (10)), non-existence of a regularizer (Section 6 / Theorem 2).
- Arora, Cohen, Golowich, Hu, "A Convergence Analysis of Gradient Descent for Deep Linear Neural
  Networks", ICLR 2019 (ACGH19): approximate balancedness under GD, balanced init (Procedure 1).
- Du, Hu, Lee, "Algorithmic Regularization in Learning Deep Homogeneous Models: Layers are
  Automatically Balanced", NeurIPS 2018: the conserved balancedness gaps under gradient flow.
- Arora, Cohen, Hu, Luo, "Implicit Regularization in Deep Matrix Factorization", NeurIPS 2019
  (ACHL19): singular value dynamics (Theorem 3).
- Elkabetz, Cohen, "Continuous vs. Discrete Optimization of Deep Neural Networks", NeurIPS 2021:
  GD is a first-order discretization of gradient flow.

Trajectories come from the public engine API (:func:`trajlab.engine.task.run_configs`); the
engine's time convention is t = step * optimizer.lr for GD and gradient flow alike. Every check
sets ``train.x64`` (so the engine switches JAX to float64); the pure-JAX check does the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from trajlab.config import (
    FlowConfig,
    ModelConfig,
    OptimizerConfig,
    ProblemConfig,
    RunConfig,
    TrainConfig,
)
from trajlab.engine.task import run_configs
from trajlab.errors import ConfigError
from trajlab.theory import end_to_end as theory


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ``measured`` maps names to floats; ``detail`` explains them."""

    name: str
    claim: str
    measured: dict[str, float] = field(default_factory=dict)
    passed: bool = False
    detail: str = ""


# --- shared tiny problem, configs and runs ------------------------------------------------------

# Whitened regression, loss 1/2 ||W - Phi||_F^2, Phi 4 x 4 with distinct singular values.
TARGET_SINGULAR_VALUES = (2.0, 1.5, 1.0, 0.5)
TIGHT_FLOW = FlowConfig(solver="tsit5", rtol=1e-10, atol=1e-12, max_solver_steps=100_000)
DEPTH = 3
# Step sizes spanning 8x, and a horizon T they all divide: T / eta = 64, 32, 16, 8 steps.
ETAS = (0.00625, 0.0125, 0.025, 0.05)
HORIZON = 0.4
# Non-balanced init: raw per-layer Gaussian std 0.3 (balancedness gaps ||D_j||_F of order 1).
GAUSSIAN = dict(init="gaussian", scale=0.3, seed=3)
# Balanced init (ACGH19, Procedure 1) of an end-to-end matrix with ||W_e(0)||_F about 2.
BALANCED = dict(init="balanced_random", scale=1.0, seed=2)


def _config(
    *,
    optimizer: str,
    lr: float,
    max_steps: int,
    record_every: int,
    init: str,
    scale: float,
    seed: int,
    parameterization: str = "factorized",
    metrics: tuple[str, ...] = ("train_loss",),
) -> RunConfig:
    """A run on the shared tiny whitened regression (float64, tol 0, linear recording)."""
    size = len(TARGET_SINGULAR_VALUES)
    return RunConfig(
        problem=ProblemConfig(
            kind="whitened", m=size, n=size, seed=0,
            target_singular_values=TARGET_SINGULAR_VALUES,
        ),
        model=ModelConfig(depth=DEPTH, init=init, scale=scale, parameterization=parameterization),
        optimizer=OptimizerConfig(name=optimizer, lr=lr),
        train=TrainConfig(max_steps=max_steps, tol=0.0, record="linear", record_every=record_every, x64=True),
        flow=TIGHT_FLOW,
        seed=seed,
        metrics=metrics,
    )


# User metrics: module-level functions, so that the engine's compile cache (keyed by the static
# config and these functions) shares one compilation between checks with the same structure.


def flat_params(state):
    """All parameters, flattened row-major and concatenated: W_1, ..., W_N (or W_e alone)."""
    return jnp.concatenate([layer.ravel() for layer in state.layers])


def predicted_singular_value_velocity(state):
    """-N sigma_r^(2-2/N) <grad L(W_e), u_r v_r^T> for every r (ACHL19, Theorem 3)."""
    w = state.end_to_end
    grad = jax.grad(state.matrix_loss)(w, state.data)
    return theory.singular_value_velocity(w, grad, len(state.layers))


PARAMS = {"params": flat_params}
PARAMS_AND_VELOCITY = {"params": flat_params, "sv_velocity": predicted_singular_value_velocity}


def _gaussian_gd():
    """GD from the non-balanced init, one run per eta in ETAS, recorded every 4 steps to T."""
    return _run(
        [
            _config(optimizer="gd", lr=eta, max_steps=round(HORIZON / ETAS[0]), record_every=4,
                    metrics=("train_loss", "distance_to_flow"), **GAUSSIAN)
            for eta in ETAS
        ],
        PARAMS,
    )


def _balanced_gd(parameterization: str):
    """GD (factorized or end-to-end) from the balanced init, one run per eta, recorded every 8 steps."""
    return _run(
        [
            _config(optimizer="gd", lr=eta, max_steps=round(HORIZON / ETAS[0]), record_every=8,
                    parameterization=parameterization, **BALANCED)
            for eta in ETAS
        ],
        PARAMS,
    )


def _balanced_flow(parameterization: str, dt: float):
    """Gradient flow from the balanced init, recorded every dt of time for 100 steps."""
    factorized = parameterization == "factorized"
    config = _config(
        optimizer="gradient_flow", lr=dt, max_steps=100, record_every=1, parameterization=parameterization,
        metrics=("train_loss", "singular_values") if factorized else ("train_loss",), **BALANCED,
    )
    return config, _run([config], PARAMS_AND_VELOCITY if factorized else PARAMS)


def _run(configs, extra_metrics=None):
    return run_configs(list(configs), extra_metrics=extra_metrics)


def _rows(result, run: int) -> dict[str, np.ndarray]:
    select = result.trajectory["run"] == run
    return {name: np.asarray(values)[select] for name, values in result.trajectory.items()}


def _columns(rows: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    """Stack the columns ``prefix_0, prefix_1, ...`` of a vector metric: (rows, entries)."""
    count = 0
    while f"{prefix}_{count}" in rows:
        count += 1
    return np.stack([rows[f"{prefix}_{i}"] for i in range(count)], axis=-1)


def _row_at(rows: dict[str, np.ndarray], step: int) -> int:
    index = np.flatnonzero(rows["step"] == step)
    if index.size != 1:
        raise RuntimeError(f"verify: step {step} was not recorded exactly once")
    return int(index[0])


def _layers(flat: np.ndarray, depth: int) -> list[np.ndarray]:
    """Split flat params into layers (all square here: m = n = width = len(TARGET_SINGULAR_VALUES))."""
    size = len(TARGET_SINGULAR_VALUES)
    return [block.reshape(size, size) for block in np.split(np.asarray(flat), depth)]


def _gaps(flat: np.ndarray) -> np.ndarray:
    """The balancedness gaps D_j = W_{j+1}^T W_{j+1} - W_j W_j^T, j = 1..N-1, stacked."""
    layers = _layers(flat, DEPTH)
    return np.stack([upper.T @ upper - lower @ lower.T for lower, upper in zip(layers[:-1], layers[1:])])


def _product(flat: np.ndarray, depth: int) -> np.ndarray:
    """W_e = W_N ... W_1 from flat params (depth 1: W_e itself)."""
    product = np.eye(len(TARGET_SINGULAR_VALUES))
    for layer in _layers(flat, depth):
        product = layer @ product
    return product


def _slope(x, y) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def _list(values) -> str:
    return ", ".join(f"{v:.2e}" for v in values)


# --- the checks -------------------------------------------------------------------------------


def balancedness_conservation() -> CheckResult:
    """D_j = W_{j+1}^T W_{j+1} - W_j W_j^T is constant under gradient flow; GD drifts O(eta^2) a step.

    Gradient flow on L(W_N ... W_1) gives d/dt (W_{j+1}^T W_{j+1}) = d/dt (W_j W_j^T)
    (ACH18, proof of Theorem 1; Du, Hu, Lee, NeurIPS 2018, Theorem 2.2), so D_j(t) = D_j(0) from
    any init. GD keeps it only approximately (ACGH19, approximate balancedness): one GD step
    W_j <- W_j - eta G_j changes D_j by exactly eta^2 (G_{j+1}^T G_{j+1} - G_j G_j^T): after a
    *fixed number of steps* K the drift is O(K eta^2) (at a fixed time t = K eta it is O(eta)).

    Measured, from a non-balanced Gaussian init (depth 3, 4 x 4 whitened regression, float64):
    max over recording times t <= 1 of ||D(t) - D(0)||_F / ||D(0)||_F along the flow (tsit5,
    rtol 1e-10, atol 1e-12); and the log-log slope against eta of the GD drift ||D(K) - D(0)||_F
    after K = 4 steps, for 4 step sizes spanning 8x (expected 2).
    """
    name = "balancedness_conservation"
    claim = "GF keeps D_j=W_{j+1}^T W_{j+1}-W_j W_j^T constant; GD drift after K=4 fixed steps ~ eta^2"

    flow = _run(
        [_config(optimizer="gradient_flow", lr=0.01, max_steps=100, record_every=10,
                 metrics=("train_loss", "distance_from_init"), **GAUSSIAN)],
        PARAMS,
    )
    rows = _rows(flow, 0)
    gaps = np.stack([_gaps(flat) for flat in _columns(rows, "params")])
    gap_norm = float(np.linalg.norm(gaps[0]))
    flow_drift = float(max(np.linalg.norm(g - gaps[0]) for g in gaps) / gap_norm)
    flow_moved = float(rows["distance_from_init"][-1])

    steps = 4
    gd = _gaussian_gd()
    drifts = []
    for run in range(len(ETAS)):
        rows_gd = _rows(gd, run)
        params = _columns(rows_gd, "params")
        drifts.append(float(np.linalg.norm(_gaps(params[_row_at(rows_gd, steps)]) - _gaps(params[0]))))
    slope = _slope(ETAS, drifts)

    measured = dict(
        gf_gap_norm=gap_norm,
        gf_relative_drift=flow_drift,
        gf_distance_moved=flow_moved,
        gd_drift_smallest_eta=drifts[0],
        gd_drift_largest_eta=drifts[-1],
        gd_slope=slope,
    )
    passed = (
        flow.status == ["max_steps"]
        and gap_norm > 0.1
        and flow_moved > 0.1
        and flow_drift < 1e-8
        and min(drifts) > 0
        and 1.7 <= slope <= 2.3
    )
    detail = (
        f"GF to t=1 (moved {flow_moved:.2f} in parameter space): max ||D(t)-D(0)||/||D(0)|| = "
        f"{flow_drift:.2e} on ||D(0)|| = {gap_norm:.3g}; GD after {steps} steps, eta in {ETAS}: "
        f"drift {_list(drifts)}, log-log slope {slope:.3f} (expected 2)"
    )
    return CheckResult(name, claim, measured, bool(passed), detail)


def factorized_vs_end_to_end_flow() -> CheckResult:
    """Gradient flow on balanced layers induces dW/dt = -P_W(grad L(W)) on W = W_N ... W_1.

    P_W(G) = sum_{j=1..N} (W W^T)^((j-1)/N) G (W^T W)^((N-j)/N) (ACH18, Theorem 1). From the
    same balanced init (model.init=balanced_random, same seed and scale, so the same W_e(0)), the
    factorized flow and the end-to-end flow (model.parameterization=end_to_end) agree at every
    recording time up to the solver tolerance. Discrete analogue (ACH18, Eq. (10) and Section 5):
    end-to-end GD W <- W - eta P_W(grad L(W)) and factorized GD from a balanced init agree to
    O(eta) at a fixed time T (each step agrees to first order in eta).

    Measured: max over the 101 recording times t <= 1 of ||W_fact(t) - W_e2e(t)||_F / ||W_e2e(t)||_F
    (tsit5, rtol 1e-10, atol 1e-12); the same at T = 0.4 for GD with 4 step sizes spanning 8x,
    and its log-log slope against eta (expected 1).
    """
    name = "factorized_vs_end_to_end_flow"
    claim = "balanced factorized GF == end-to-end GF dW/dt=-P_W(grad L) (ACH18 Thm 1); GD analogues differ O(eta)"

    flows = {kind: _balanced_flow(kind, dt=0.01)[1] for kind in ("factorized", "end_to_end")}
    rows = {kind: _rows(result, 0) for kind, result in flows.items()}
    factorized = np.stack([_product(p, DEPTH) for p in _columns(rows["factorized"], "params")])
    end_to_end = np.stack([_product(p, 1) for p in _columns(rows["end_to_end"], "params")])
    same_steps = np.array_equal(rows["factorized"]["step"], rows["end_to_end"]["step"])
    norms = np.linalg.norm(end_to_end, axis=(1, 2))
    flow_error = float(np.max(np.linalg.norm(factorized - end_to_end, axis=(1, 2)) / norms))
    flow_moved = float(np.linalg.norm(end_to_end[-1] - end_to_end[0]) / norms[0])

    gd = {kind: _balanced_gd(kind) for kind in ("factorized", "end_to_end")}
    gd_errors = []
    for run, eta in enumerate(ETAS):
        at = {}
        for kind, depth in (("factorized", DEPTH), ("end_to_end", 1)):
            gd_rows = _rows(gd[kind], run)
            at[kind] = _product(_columns(gd_rows, "params")[_row_at(gd_rows, round(HORIZON / eta))], depth)
        gd_errors.append(float(np.linalg.norm(at["factorized"] - at["end_to_end"]) / np.linalg.norm(at["end_to_end"])))
    slope = _slope(ETAS, gd_errors)

    measured = dict(
        gf_max_relative_difference=flow_error,
        gf_relative_motion=flow_moved,
        gd_difference_smallest_eta=gd_errors[0],
        gd_difference_largest_eta=gd_errors[-1],
        gd_slope=slope,
    )
    passed = (
        same_steps and len(norms) == 101 and flow_moved > 0.1 and flow_error < 1e-6
        and min(gd_errors) > 0 and 0.8 <= slope <= 1.2
    )
    detail = (
        f"flows to t=1 (W_e moved {flow_moved:.2f} relative): max relative difference {flow_error:.2e} "
        f"over {len(norms)} times; GD at T={HORIZON}, eta in {ETAS}: {_list(gd_errors)}, "
        f"slope {slope:.3f} (expected 1)"
    )
    return CheckResult(name, claim, measured, bool(passed), detail)


def gd_to_gf_order() -> CheckResult:
    """GD is a first-order discretization of gradient flow: ||theta_GD(T) - theta_GF(T)|| = O(eta).

    GD is the explicit Euler method for d theta/dt = -grad L(theta) with time t = step * eta, whose
    global error at a fixed time T with K = T / eta steps is O(eta) (Elkabetz & Cohen,
    NeurIPS 2021). Measured with the engine's ``distance_to_flow`` metric (Euclidean distance in
    parameter space to the gradient flow from the run's own init at equal t; reference flow tsit5,
    rtol 1e-10, atol 1e-12), from a non-balanced Gaussian init, at T = 0.4 for 4 step sizes
    spanning 8x; the log-log slope should be 1.
    """
    name = "gd_to_gf_order"
    claim = "distance of GD to GF at fixed time T=K*eta is O(eta): log-log slope 1"
    result = _gaussian_gd()
    distances = []
    for run, eta in enumerate(ETAS):
        rows = _rows(result, run)
        distances.append(float(rows["distance_to_flow"][_row_at(rows, round(HORIZON / eta))]))
    slope = _slope(ETAS, distances)
    measured = dict(distance_smallest_eta=distances[0], distance_largest_eta=distances[-1], slope=slope)
    passed = min(distances) > 0 and 0.8 <= slope <= 1.2
    detail = (
        f"distance_to_flow at T={HORIZON}, eta in {ETAS}: {_list(distances)}; "
        f"log-log slope {slope:.3f} (expected 1)"
    )
    return CheckResult(name, claim, measured, bool(passed), detail)


def singular_value_velocity() -> CheckResult:
    """d sigma_r/dt = -N sigma_r^(2-2/N) <grad L(W_e), u_r v_r^T> along gradient flow.

    ACHL19, Theorem 3: along gradient flow from a balanced init, while the singular values of
    W_e are distinct. The prediction (:func:`trajlab.theory.singular_value_velocity`, recorded as a
    user metric) is compared with second-order central differences in time of the measured
    singular values (recorded every dt = 0.002 up to t = 0.2; tsit5, rtol 1e-10, atol 1e-12).
    Measured: max over interior times of ||finite difference - prediction|| / ||prediction||.
    """
    name = "singular_value_velocity"
    claim = "along balanced GF, d sigma_r/dt = -N sigma_r^(2-2/N) <grad L(W), u_r v_r^T> (ACHL19 Thm 3)"
    dt = 0.002
    config, result = _balanced_flow("factorized", dt=dt)
    rows = _rows(result, 0)
    k = min(config.problem.m, config.problem.n)
    sigma = _columns(rows, "sv")[:, :k]
    predicted = _columns(rows, "sv_velocity")
    times = rows["step"] * dt
    if not np.allclose(np.diff(times), dt):
        raise RuntimeError("verify: singular values were not recorded every step")
    differences = (sigma[2:] - sigma[:-2]) / (2 * dt)
    errors = np.linalg.norm(differences - predicted[1:-1], axis=1) / np.linalg.norm(predicted[1:-1], axis=1)
    gap = float(np.min(np.diff(-sigma, axis=1)) / np.max(sigma))
    error = float(np.max(errors))
    speed = float(np.max(np.abs(predicted)))
    measured = dict(max_relative_error=error, min_relative_singular_gap=gap, max_abs_velocity=speed)
    passed = gap > 1e-2 and speed > 1e-2 and error < 1e-3
    detail = (
        f"{len(errors)} interior times in [0, {times[-1]:.2f}]: max relative error {error:.2e}; "
        f"singular values stay distinct (min gap / sigma_max = {gap:.3f}); max |d sigma/dt| = {speed:.2f}"
    )
    return CheckResult(name, claim, measured, bool(passed), detail)


def _generic_loss(w, target):
    """1/2 ||W - Phi||_F^2 + 1/4 sum_ij W_ij^4: smooth, non-quadratic, with a non-constant Hessian."""
    return 0.5 * jnp.sum((w - target) ** 2) + 0.25 * jnp.sum(w**4)


@partial(jax.jit, static_argnums=0)
def _field_jacobian(depth: int, w, target):
    """J = d vec(F) / d vec(W) for F(W) = P_W(grad L(W)), row-major vec."""

    def field_of(flat):
        matrix = flat.reshape(w.shape)
        return theory.preconditioner_apply(matrix, jax.grad(_generic_loss)(matrix, target), depth).ravel()

    return jax.jacfwd(field_of)(w.ravel())


def _field_asymmetry(depth: int, w, target) -> float:
    """||J - J^T||_F / ||J||_F for J the Jacobian of vec(W) -> vec(P_W(grad L(W)))."""
    jacobian = np.asarray(_field_jacobian(depth, w, target))
    return float(np.linalg.norm(jacobian - jacobian.T) / np.linalg.norm(jacobian))


def end_to_end_not_gradient_field() -> CheckResult:
    """F(W) = P_W(grad L(W)) is not a gradient field for depth N >= 2 (ACH18, Section 6, Theorem 2).

    A C^1 field is a gradient field only if its Jacobian is symmetric. For N = 1 (P_W = identity)
    J is the Hessian of L, symmetric; for N >= 2 the Jacobian of the end-to-end field is not, so
    no regularizer R makes the end-to-end update a gradient step on L + R: the acceleration of
    overparameterization is not the effect of any regularizer. Measured: ||J - J^T||_F / ||J||_F
    at a random 3 x 3 W (float64, jax.jacfwd), with L(W) = 1/2 ||W - Phi||_F^2 + 1/4 sum W_ij^4
    (a generic non-quadratic loss, like the l_4 regression of ACH18).
    """
    name = "end_to_end_not_gradient_field"
    claim = "Jacobian of W -> P_W(grad L(W)) is symmetric for N=1, asymmetric for N>=2 (ACH18 Sec 6)"
    if not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(5)
    w = jnp.asarray(rng.standard_normal((3, 3)), jnp.float64)
    target = jnp.asarray(rng.standard_normal((3, 3)), jnp.float64)
    asymmetry = {depth: _field_asymmetry(depth, w, target) for depth in (1, 2, 3)}
    measured = {f"asymmetry_depth_{d}": a for d, a in asymmetry.items()}
    passed = asymmetry[1] < 1e-12 and asymmetry[2] > 1e-3 and asymmetry[3] > 1e-3
    detail = ", ".join(f"N={d}: ||J-J^T||/||J|| = {a:.2e}" for d, a in asymmetry.items())
    return CheckResult(name, claim, measured, bool(passed), detail)


CHECKS: dict[str, Callable[[], CheckResult]] = {
    "balancedness_conservation": balancedness_conservation,
    "factorized_vs_end_to_end_flow": factorized_vs_end_to_end_flow,
    "gd_to_gf_order": gd_to_gf_order,
    "singular_value_velocity": singular_value_velocity,
    "end_to_end_not_gradient_field": end_to_end_not_gradient_field,
}


def run_checks(names: list[str] | None = None) -> list[CheckResult]:
    """Run the checks called ``names`` (all of :data:`CHECKS` when None), in the given order."""
    names = list(CHECKS) if names is None else list(names)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ConfigError(f"verify: unknown check(s) {unknown}; known checks: {', '.join(CHECKS)}")
    return [CHECKS[n]() for n in names]


def format_results(results: list[CheckResult]):
    """A rich Table: check, claim, measured values, PASS / FAIL."""
    from rich.table import Table

    table = Table(title="trajlab verify")
    table.add_column("check", style="bold")
    table.add_column("claim")
    table.add_column("measured")
    table.add_column("result", justify="center")
    for result in results:
        measured = "\n".join(f"{k} = {v:.3g}" for k, v in result.measured.items())
        verdict = "[green]PASS[/green]" if result.passed else "[red]FAIL[/red]"
        table.add_row(result.name, result.claim, measured, verdict)
    return table


__all__ = ["CHECKS", "CheckResult", "format_results", "run_checks", *CHECKS]
