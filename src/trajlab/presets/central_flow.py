"""Preset ``central-flow``: gradient descent at the edge of stability beside its central flow and its
stable flow (Cohen, Damian, Talwalkar, Kolter, Lee, "Understanding Optimization in Deep Learning
with Central Flows", ICLR 2025).

GD with step eta at the edge of stability oscillates along the top Hessian eigenvectors and leaves
gradient flow (the *stable flow*) behind. The *central flow* (:mod:`trajlab.dynamics.central_flow`)
is gradient flow projected so that the top Hessian eigenvalues stay at or below 2/eta, with the
oscillation's covariance Sigma = U S U^T from a cone complementarity problem; it predicts GD's
time-averaged loss L(w) + (1/2) sum_i S_ii lambda_i and the oscillation size sqrt(tr S).

Per GD run of the sweep, one baseline row ``central_flow`` (computed in float64 from the run's own
init, ``trajlab.init_params(config)``, and data) holds, in ``history`` (JSON: one list per key,
one entry per GD recording step):
``step``, ``t`` = step x eta; GD re-run in float64 (``gd_loss``, ``gd_loss_smoothed``: the mean of
GD's loss over the SMOOTH_STEPS = 20 steps k - 10 .. k + 9 around step k, an even window so that the
period-2 oscillation averages out; ``gd_sharpness``); the central flow (``cf_loss``,
``cf_predicted_loss``, ``cf_sharpness``, ``cf_oscillation`` = sqrt(E |delta|^2) = sqrt(tr S));
the stable flow (``sf_loss``, ``sf_sharpness``); distances in weight space ``gd_to_cf``,
``gd_to_sf``, ``cf_to_sf``. Sharpness by Lanczos (30 steps; eigenpairs of the central flow: top
k = 2). The engine's own runs record train loss and sharpness (float32, as ``edge-of-stability``).

Two setups (variants):

(a) the ``edge-of-stability`` setup (digits, 64-50-50-10 ReLU MLP without biases, Xavier gain 0.5,
    squared loss, full-batch GD) at eta = 0.2 (2/eta = 10), 1000 steps;
(b) a depth-2 linear network (deep matrix factorization W_2 W_1, width 6, Gaussian init 0.3) on
    6 x 6 rank-2 Gaussian matrix sensing (60 measurements) at eta = 3.0 (2/eta = 0.667): gradient
    flow ends at sharpness ~0.92 > 2/eta, so GD cannot follow it; it settles into a period-2
    oscillation (measured at eta = 0.05-0.2: sharpness 0.8-0.9, below every 2/eta; eta = 2.5 goes
    through a catapult to sharpness 0.68 < 0.8 and is stable after; eta = 3 stays oscillating).

Claims (measured on the baseline rows, from the first record at which the central flow is at the
edge, its sharpness >= 0.99 x 2/eta, to the end):

1. the central flow's predicted loss tracks GD's smoothed loss: median relative error <=
   CF_TOLERANCE = 0.1, while the stable flow's loss does not (its median relative error is at least
   SF_FACTOR = 2 times the central flow's);
2. the central flow's sharpness stays at 2/eta: median |S eta / 2 - 1| <= 0.01 and max <= 0.05;
3. GD ends closer to the central flow than to the stable flow in weight space;
4. scalar RMSProp (Sec. 4 of the paper; :mod:`trajlab.dynamics.central_flow_rmsprop`), run beside
   the deep linear setup only (CPU budget) from the same init in float64 with step size
   RMSPROP_LR = 0.2 and beta2 = RMSPROP_BETA2 = 0.9 (nu before the first update = |grad L(w_0)|^2; no
   bias correction, eps 0): from half the run on, its central flow's predicted loss and its nu
   track RMSProp's loss and nu averaged over 20 steps (median relative errors <= 0.1 each), its
   effective sharpness eta lambda_1 / sqrt(nu) stays at 2 (median |. - 2| <= 0.01), and the stable
   flow's loss does not track (median relative error >= SF_FACTOR x the central flow's; a
   non-finite stable flow, its fixed-step integration diverging as its nu -> 0 sends its effective
   sharpness up, counts as infinite error). Baseline row ``central_flow_rmsprop``, ``history`` keys:
   ``step``, ``t`` = step x RMSPROP_LR, ``rms_loss``, ``rms_loss_smoothed``, ``rms_nu``,
   ``rms_nu_smoothed``, ``cf_loss``, ``cf_predicted_loss``, ``cf_nu``, ``cf_effective_sharpness``,
   ``cf_oscillation``, ``sf_loss``, ``sf_nu``, ``rms_to_cf``, ``rms_to_sf``. The values 0.2 / 0.9 were
   the second pair tried (eta 0.05 first: RMSProp reaches the edge only at step ~130 of 250 and is
   still in its overshoot at the end of the quick run); not tuned on the claim's tolerances.

Quick (``trajlab run central-flow --quick``): the MLP shrunk to width 16 on 100 images (1440
parameters; chosen for the CPU budget, not tuned on the claims), both setups 250 steps, records
every 2 steps. Measured (quick, 2026-11-29): all four claims hold.
- MLP, eta 0.2: the central flow reaches 2/eta at step 34; from there the predicted loss is within
  a median 2.2% (max 32%, at the catapult right after the onset) of GD's loss averaged over 20
  steps, the stable flow's loss within a median 7.8% (max 12%); sharpness |S eta/2 - 1| median
  0.006, max 0.022 over 109 records (GD's own sharpness, measured at its oscillating iterates:
  median 11.0, 10-90% range 10.2-11.8; the stable flow's rises to 29); at step 250, |GD - central flow| = 1.74 and |GD - stable flow| = 2.50.
- deep linear, eta 3: at the edge from step 6; predicted loss median relative error 8.1% (max 28%)
  against GD's time-averaged loss 0.112-0.19 (GD's sharpness 1.06-1.08 at its iterates; GD alternates between ~0.078 and ~0.155 each step),
  the stable flow's 100% (its loss goes to 1e-6); sharpness |S eta/2 - 1| median 2e-8, max 0.0018;
  |GD - central flow| = 0.71, |GD - stable flow| = 1.74 at the end.
- scalar RMSProp beside the deep linear run (eta 0.2, beta2 0.9; claim 4, added 2026-11-29): the
  central flow reaches effective sharpness 2 at step 44; RMSProp overshoots (its nu lags; loss
  down to 7e-5 at step 80, then a spike) and settles (predicted loss within 5% from step 152 on);
  from step 126: predicted loss median relative error 0.7% (max 16%, in the settling), nu median 1.1% (max 5.6%), effective
  sharpness median |. - 2| 2e-7; the stable flow's loss is 1.4e-5 at step 82 (RMSProp's smoothed:
  5.7e-3) and its fixed-step integration diverges after that; at step 240 the central flow
  predicts 0.00422 against RMSProp's 0.00424 and nu 0.00712 against 0.00717.
Cost: 35 s CPU (127 s wall on the shared 2-core machine) for the quick run before claim 4; with it,
measured cold (``TRAJLAB_COMPILATION_CACHE=0 trajlab run central-flow --quick --no-figures``,
2026-11-29): 44.8 s CPU (42.6 user + 2.2 sys, 45 s wall), of which the RMSProp baseline 8.3 s wall
(mostly compilation) and the GD baselines 20.9 s (MLP) and 9.8 s (deep linear). Before claim 4: engine runs ~8 s, the
MLP's baseline ~66 s wall, the deep linear one ~38 s wall, mostly compilation (one compiled
pipeline per setup: GD re-run, central flow, stable flow, their histories). The reference PyTorch
implementation's minimal script takes up to 20 minutes on an H100 for 400 steps of a much larger
network; the problems differ in size, so the numbers are not comparable.

Measured (full, ``trajlab run central-flow``, 2026-11-29, before claim 4): claims 1-3 hold. 307 s CPU (747 s
wall, niced on the shared 2-core machine): the MLP's baseline (6200 parameters, 500 images, 1000
steps: GD re-run, ~4000 central-flow field evaluations of 30 Lanczos steps each, the stable flow
and the histories) 664 s wall, the deep linear one 14 s.
- MLP, eta 0.2: at the edge from step 30; predicted loss vs GD's smoothed loss: median relative
  error 3.9% (max 31%, right after the onset), stable flow's median 8.9% (max 14%): the factor 2.3
  is close to the claim's 2; GD's smoothed loss 0.63 -> 0.0255, the central flow predicts 0.0262 at
  step 1000, the stable flow's loss is 0.0277. Sharpness |S eta/2 - 1| median 0.005, max 0.023
  over 195 records (GD's sharpness at its iterates: median 8.8, 10-90% 8.4-10.2; the stable flow's
  up to 20.5). |GD - central flow| = 1.52, |GD - stable flow| = 2.64 at the end.
- deep linear, eta 3: predicted loss median relative error 7.9% (max 28%), stable flow's 100%;
  sharpness median 1e-9, max 0.005; distances 0.86 vs 2.10.
- claim 4 at full size (only its baseline, ``rmsprop_flows_beside_run`` on the full deep linear
  config, 1000 steps, records every 5; 11.8 s CPU; 2026-11-29): holds. From step 500: predicted
  loss median relative error 0.2% (max 0.7%), nu median 0.08% (max 0.13%), effective sharpness
  median |. - 2| 4e-9; the stable flow diverges after step 80 (its loss 1.9e-5 vs RMSProp's
  5.7e-3); at step 995 the central flow predicts 0.00409 against RMSProp's 0.00410.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig, run_id, static_key
from trajlab.presets.claims import baseline_rows, fmt, not_measured
from trajlab.presets.preset import Claim, Preset
from trajlab.sweep.runner import BaselineJob, baseline_id, flat_row

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: GD's loss is averaged over this many steps (even: the period-2 oscillation cancels).
SMOOTH_STEPS = 20
#: Claim 1: the central flow's median relative error must be at most this.
CF_TOLERANCE = 0.1
#: Claim 1: the stable flow's median relative error must be at least this many times the central flow's.
SF_FACTOR = 2.0
#: Claim 2: median and max of |sharpness x eta / 2 - 1| after the onset.
SHARPNESS_MEDIAN, SHARPNESS_MAX = 0.01, 0.05
#: The central flow is "at the edge" from the first record with sharpness >= this x 2/eta.
ONSET = 0.99
#: Eigenpairs, Lanczos steps and integration steps per GD step of the central flow.
CF_OPTIONS = dict(k=2, eigensolver="lanczos", iterations=30, substeps=2, solver="heun", tau_steps=1.0, cone_iterations=60)

#: Scalar RMSProp beside the runs of these model kinds (CPU budget: not beside the MLP): step size, beta2.
RMSPROP_KINDS = ("deep_linear",)
RMSPROP_LR, RMSPROP_BETA2 = 0.2, 0.9
#: Claim 4: from half the run on, median relative errors of the central flow's predicted loss and nu
#: against RMSProp's 20-step averages, and median |effective sharpness - 2|.
RMSPROP_LOSS_TOLERANCE, RMSPROP_NU_TOLERANCE, RMSPROP_SHARPNESS = 0.1, 0.1, 0.01

HISTORY_KEYS = (
    "step", "t", "gd_loss", "gd_loss_smoothed", "gd_sharpness", "cf_loss", "cf_predicted_loss", "cf_sharpness",
    "cf_oscillation", "sf_loss", "sf_sharpness", "gd_to_cf", "gd_to_sf", "cf_to_sf",
)


# ---------------------------------------------------------------------------------------------
# baselines: the flows beside each run


_PIPELINES: dict = {}


def _pipeline(key: tuple, loss, steps: int):
    """One compiled function per static config (runs differing only in seed, eta or scale share it):
    (params0, data, eta, record_steps) -> arrays. ``loss`` is the family's loss of the first config
    with this key (the same function for every config with the key)."""
    if (key, steps) not in _PIPELINES:
        if len(_PIPELINES) >= 8:
            _PIPELINES.clear()
        _PIPELINES[(key, steps)] = _build_pipeline(loss, steps)
    return _PIPELINES[(key, steps)]


def _build_pipeline(loss, steps: int):
    import jax
    import jax.numpy as jnp

    from trajlab.dynamics.central_flow import (
        CentralFlowOptions,
        central_flow_history,
        flatten_loss,
        gradient_descent,
        integrate_central_flow,
        integrate_stable_flow,
    )
    from trajlab.metrics.curvature_suite import flat_lanczos_eigenpairs

    options = CentralFlowOptions(**CF_OPTIONS)

    def sharpness(flat_loss, path):
        def one(w):
            _, product = jax.linearize(jax.grad(flat_loss), w)
            return flat_lanczos_eigenpairs(product, w.shape[0], w.dtype, jax.random.PRNGKey(0), 1, options.iterations)[0][0]

        return jax.lax.map(one, path)

    def run(params0, data, eta, record_steps):
        flat_loss, w0, _ = flatten_loss(loss, params0, data)
        times = record_steps.astype(w0.dtype) * eta
        gd_path, gd_losses = gradient_descent(flat_loss, w0, eta, steps, record_steps)
        cf_path = integrate_central_flow(flat_loss, w0, eta, times, options, max_steps=steps * options.substeps + 16)
        sf_path = integrate_stable_flow(flat_loss, w0, eta, times, max_steps=4 * steps + 16)
        history = central_flow_history(flat_loss, cf_path, eta, options)

        def distance(a, b):
            return jnp.linalg.norm(a - b, axis=1)

        return dict(
            gd_losses=gd_losses,
            gd_sharpness=sharpness(flat_loss, gd_path),
            cf_loss=history["loss"],
            cf_predicted_loss=history["predicted_loss"],
            cf_sharpness=history["eigenvalues"][:, 0],
            cf_oscillation=history["oscillation"],
            sf_loss=jax.vmap(flat_loss)(sf_path),
            sf_sharpness=sharpness(flat_loss, sf_path),
            gd_to_cf=distance(gd_path, cf_path),
            gd_to_sf=distance(gd_path, sf_path),
            cf_to_sf=distance(cf_path, sf_path),
        )

    return jax.jit(run)


def smoothed(losses: np.ndarray, steps: np.ndarray, window: int = SMOOTH_STEPS) -> np.ndarray:
    """Mean of ``losses`` (one per step) over steps k - window/2 .. k + window/2 - 1, clipped to the run."""
    half = window // 2
    cumulative = np.concatenate([[0.0], np.cumsum(losses)])
    lo = np.clip(steps - half, 0, len(losses))
    hi = np.clip(steps + half, 1, len(losses))
    return (cumulative[hi] - cumulative[lo]) / np.maximum(hi - lo, 1)


def flows_beside_run(config: RunConfig) -> dict:
    """The baseline row of one GD run: its float64 GD re-run, central flow and stable flow at its
    recording steps (see the module docstring), and their wall time."""
    import time

    import jax
    import jax.numpy as jnp

    from trajlab.api import init_params
    from trajlab.engine.schedule import recording_steps
    from trajlab.engine.loop import cast_data
    from trajlab.engine.task import build_task
    from trajlab.problems.registry import make_data

    start = time.perf_counter()
    task = build_task(config)
    params = init_params(config)
    record = recording_steps(config.train).astype(np.int64)
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), params)
        data = cast_data(make_data(config.problem), jnp.float64)
        run = _pipeline(static_key(config), task.loss, int(config.train.max_steps))
        out = jax.device_get(run(params, data, jnp.float64(config.optimizer.lr), jnp.asarray(record)))
    gd_losses = np.asarray(out.pop("gd_losses"), float)
    history = {"step": record.tolist(), "t": (record * config.optimizer.lr).tolist(),
               "gd_loss": gd_losses[record].tolist(), "gd_loss_smoothed": smoothed(gd_losses, record).tolist()}
    history.update({k: np.asarray(v, float).tolist() for k, v in out.items()})
    return dict(
        history=json.dumps(history),
        eta=float(config.optimizer.lr),
        final_gd_to_cf=history["gd_to_cf"][-1],
        final_gd_to_sf=history["gd_to_sf"][-1],
        solve_s=time.perf_counter() - start,
        status="done" if np.all(np.isfinite(history["cf_loss"])) else "non-finite",
    )


def _build_rmsprop_pipeline(loss, steps: int):
    import jax
    import jax.numpy as jnp

    from trajlab.dynamics.central_flow import CentralFlowOptions, flatten_loss
    from trajlab.dynamics.central_flow_rmsprop import (
        integrate_rmsprop_central_flow,
        integrate_rmsprop_stable_flow,
        rmsprop_central_flow_history,
        scalar_rmsprop,
    )

    options = CentralFlowOptions(**CF_OPTIONS)

    def run(params0, data, eta, beta2, record_steps):
        flat_loss, w0, _ = flatten_loss(loss, params0, data)
        times = record_steps.astype(w0.dtype) * eta
        rms = scalar_rmsprop(flat_loss, w0, eta, beta2, steps, record_steps)
        nu0 = rms["nu"][0]
        cf_path, cf_nu = integrate_rmsprop_central_flow(flat_loss, w0, nu0, eta, beta2, times, options,
                                                        max_steps=steps * options.substeps + 16)
        sf_path, sf_nu = integrate_rmsprop_stable_flow(flat_loss, w0, nu0, eta, beta2, times, max_steps=4 * steps + 16)
        history = rmsprop_central_flow_history(flat_loss, cf_path, cf_nu, eta, beta2, options)
        return dict(
            rms_losses=rms["loss"],
            rms_nus=rms["nu"],
            cf_loss=history["loss"],
            cf_predicted_loss=history["predicted_loss"],
            cf_nu=cf_nu,
            cf_effective_sharpness=history["effective_sharpness"],
            cf_oscillation=history["oscillation"],
            sf_loss=jax.vmap(flat_loss)(sf_path),
            sf_nu=sf_nu,
            rms_to_cf=jnp.linalg.norm(rms["path"] - cf_path, axis=1),
            rms_to_sf=jnp.linalg.norm(rms["path"] - sf_path, axis=1),
        )

    return jax.jit(run)


def rmsprop_flows_beside_run(config: RunConfig) -> dict:
    """The ``central_flow_rmsprop`` row beside one GD run: scalar RMSProp (RMSPROP_LR, RMSPROP_BETA2;
    nu before the first update = |grad L(w_0)|^2) in float64 from the run's init and data, its
    central flow and its stable flow (:mod:`trajlab.dynamics.central_flow_rmsprop`) at the run's
    recording steps (one list per key in ``history``, see the module docstring)."""
    import time

    import jax
    import jax.numpy as jnp

    from trajlab.api import init_params
    from trajlab.engine.schedule import recording_steps
    from trajlab.engine.loop import cast_data
    from trajlab.engine.task import build_task
    from trajlab.problems.registry import make_data

    start = time.perf_counter()
    task = build_task(config)
    params = init_params(config)
    record = recording_steps(config.train).astype(np.int64)
    steps = int(config.train.max_steps)
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), params)
        data = cast_data(make_data(config.problem), jnp.float64)
        key = ("rmsprop", static_key(config), steps)
        if key not in _PIPELINES:
            if len(_PIPELINES) >= 8:
                _PIPELINES.clear()
            _PIPELINES[key] = _build_rmsprop_pipeline(task.loss, steps)
        out = jax.device_get(_PIPELINES[key](params, data, jnp.float64(RMSPROP_LR), jnp.float64(RMSPROP_BETA2),
                                             jnp.asarray(record)))
    losses = np.asarray(out.pop("rms_losses"), float)
    nus = np.asarray(out.pop("rms_nus"), float)
    history = {"step": record.tolist(), "t": (record * RMSPROP_LR).tolist(), "rms_loss": losses[record].tolist(),
               "rms_loss_smoothed": smoothed(losses, record).tolist(), "rms_nu": nus[record].tolist(),
               "rms_nu_smoothed": smoothed(nus, record).tolist()}
    history.update({k: np.asarray(v, float).tolist() for k, v in out.items()})
    return dict(
        history=json.dumps(history),
        eta=RMSPROP_LR,
        beta2=RMSPROP_BETA2,
        solve_s=time.perf_counter() - start,
        status="done" if np.all(np.isfinite(history["cf_loss"])) else "non-finite",
    )


def central_flow_jobs(configs: list[RunConfig]) -> list[BaselineJob]:
    """One ``central_flow`` baseline per GD run (keyed by its run id), and one ``central_flow_rmsprop``
    per GD run of a model kind in RMSPROP_KINDS."""
    jobs = []
    for config in configs:
        if config.optimizer.name != "gd":
            continue
        rid = run_id(config)
        columns = {f"problem.{k}": v for k, v in flat_row(config.problem).items()}
        columns.update({"baseline": "central_flow", "run_id": rid, "model.kind": config.model.kind,
                        "optimizer.lr": config.optimizer.lr})
        jobs.append(BaselineJob(baseline_id("central_flow", {"run_id": rid}), columns,
                                lambda config=config: flows_beside_run(config)))
        if config.model.kind in RMSPROP_KINDS:
            rms_columns = dict(columns, baseline="central_flow_rmsprop")
            key = {"run_id": rid, "lr": RMSPROP_LR, "beta2": RMSPROP_BETA2}
            jobs.append(BaselineJob(baseline_id("central_flow_rmsprop", key), rms_columns,
                                    lambda config=config: rmsprop_flows_beside_run(config)))
    return jobs


# ---------------------------------------------------------------------------------------------
# claims


def histories(data) -> list[tuple[pd.Series, pd.DataFrame]]:
    """(baseline row, its history as a DataFrame) of every central_flow row."""
    rows = baseline_rows(data, "central_flow")
    return [(row, pd.DataFrame(json.loads(row["history"]))) for _, row in rows.iterrows()]


def _label(row) -> str:
    return f"{row['model.kind']} eta {fmt(float(row['optimizer.lr']))}"


def _after_onset(row, history: pd.DataFrame) -> pd.DataFrame | None:
    edge = 2.0 / float(row["optimizer.lr"])
    reached = np.flatnonzero(history["cf_sharpness"].to_numpy() >= ONSET * edge)
    return history.iloc[int(reached[0]):] if reached.size else None


def edge_errors(row, history: pd.DataFrame) -> dict | None:
    """From the central flow's onset on: relative errors of the central flow's predicted loss and of
    the stable flow's loss against GD's smoothed loss, and |sharpness eta / 2 - 1| of the central flow."""
    after = _after_onset(row, history)
    if after is None:
        return None
    reference = after["gd_loss_smoothed"].to_numpy()
    cf = np.abs(after["cf_predicted_loss"].to_numpy() - reference) / reference
    sf = np.abs(after["sf_loss"].to_numpy() - reference) / reference
    sharp = np.abs(after["cf_sharpness"].to_numpy() * float(row["optimizer.lr"]) / 2.0 - 1.0)
    return dict(onset=float(after["step"].iloc[0]), cf_median=float(np.median(cf)), cf_max=float(np.max(cf)),
                sf_median=float(np.median(sf)), sf_max=float(np.max(sf)), sharp_median=float(np.median(sharp)),
                sharp_max=float(np.max(sharp)), records=len(after))


def predicted_loss_tracks_gd(data):
    """Claim 1 (see the module docstring)."""
    parts, holds, measured = [], True, False
    for row, history in histories(data):
        errors = edge_errors(row, history)
        if errors is None:
            parts.append(f"{_label(row)}: the central flow never reached 2/eta")
            continue
        measured = True
        ok = errors["cf_median"] <= CF_TOLERANCE and errors["sf_median"] >= SF_FACTOR * errors["cf_median"]
        holds &= ok
        parts.append(
            f"{_label(row)}: from step {fmt(errors['onset'])}, relative error of the predicted loss vs GD's smoothed "
            f"loss median {fmt(errors['cf_median'])} (max {fmt(errors['cf_max'])}); stable flow's median "
            f"{fmt(errors['sf_median'])} (max {fmt(errors['sf_max'])})"
        )
    if not measured:
        return not_measured("no central flow reached the edge" if parts else "no central_flow baseline")
    return "; ".join(parts), holds


def sharpness_stays_at_edge(data):
    """Claim 2 (see the module docstring)."""
    parts, holds, measured = [], True, False
    for row, history in histories(data):
        errors = edge_errors(row, history)
        if errors is None:
            continue
        measured = True
        holds &= errors["sharp_median"] <= SHARPNESS_MEDIAN and errors["sharp_max"] <= SHARPNESS_MAX
        parts.append(f"{_label(row)}: |S eta/2 - 1| median {fmt(errors['sharp_median'])}, max "
                     f"{fmt(errors['sharp_max'])} over {errors['records']} records")
    if not measured:
        return not_measured("no central flow reached the edge")
    return "; ".join(parts), holds


def gd_closer_to_central_flow(data):
    """Claim 3: at the last record, ||w_GD - w_CF|| < ||w_GD - w_SF|| for every run at the edge."""
    parts, holds, measured = [], True, False
    for row, history in histories(data):
        if _after_onset(row, history) is None:
            continue
        measured = True
        cf, sf = float(history["gd_to_cf"].iloc[-1]), float(history["gd_to_sf"].iloc[-1])
        holds &= cf < sf
        parts.append(f"{_label(row)}: GD to central flow {fmt(cf)}, to stable flow {fmt(sf)}")
    if not measured:
        return not_measured("no central flow reached the edge")
    return "; ".join(parts), holds


def rmsprop_errors(history: pd.DataFrame) -> dict:
    """From half the run on: relative errors of the central flow's predicted loss, of the stable
    flow's loss (non-finite: infinite) and of the central flow's nu against RMSProp's 20-step
    averages; |effective sharpness - 2| of the central flow."""
    steps = history["step"].to_numpy()
    late = history[steps >= steps[-1] / 2]
    loss = late["rms_loss_smoothed"].to_numpy()
    cf = np.abs(late["cf_predicted_loss"].to_numpy() / loss - 1)
    sf = np.abs(late["sf_loss"].to_numpy() / loss - 1)
    sf = np.where(np.isfinite(sf), sf, np.inf)
    nu = np.abs(late["cf_nu"].to_numpy() / late["rms_nu_smoothed"].to_numpy() - 1)
    sharp = np.abs(late["cf_effective_sharpness"].to_numpy() - 2.0)
    finite_sf = np.flatnonzero(np.isfinite(history["sf_loss"].to_numpy()))
    last = int(finite_sf[-1]) if finite_sf.size else 0
    return dict(start=float(late["step"].iloc[0]), cf_median=float(np.median(cf)), cf_max=float(np.max(cf)),
                sf_median=float(np.median(sf)), nu_median=float(np.median(nu)), nu_max=float(np.max(nu)),
                sharp_median=float(np.median(sharp)),
                sf_finite_until=float(steps[last]) if finite_sf.size else float("nan"),
                sf_last_loss=float(history["sf_loss"].iloc[last]),
                rms_loss_there=float(history["rms_loss_smoothed"].iloc[last]),
                sf_all_finite=bool(finite_sf.size == len(steps)))


def rmsprop_central_flow_tracks(data):
    """Claim 4 (see the module docstring)."""
    rows = baseline_rows(data, "central_flow_rmsprop")
    if len(rows) == 0:
        return not_measured("no central_flow_rmsprop baseline")
    parts, holds = [], True
    for _, row in rows.iterrows():
        e = rmsprop_errors(pd.DataFrame(json.loads(row["history"])))
        holds &= (e["cf_median"] <= RMSPROP_LOSS_TOLERANCE and e["nu_median"] <= RMSPROP_NU_TOLERANCE
                  and e["sharp_median"] <= RMSPROP_SHARPNESS and e["sf_median"] >= SF_FACTOR * e["cf_median"])
        parts.append(
            f"{row['model.kind']}, scalar RMSProp eta {fmt(RMSPROP_LR)} beta2 {fmt(RMSPROP_BETA2)}: from step "
            f"{fmt(e['start'])}, predicted loss vs RMSProp's smoothed loss median relative error {fmt(e['cf_median'])} "
            f"(max {fmt(e['cf_max'])}), nu median {fmt(e['nu_median'])} (max {fmt(e['nu_max'])}), effective "
            f"sharpness median |. - 2| {fmt(e['sharp_median'])}; stable flow's loss: median relative error "
            + (fmt(e["sf_median"]) if np.isfinite(e["sf_median"]) else "infinite")
            + ("" if e["sf_all_finite"] else
               f" (its fixed-step integration diverges after step {fmt(e['sf_finite_until'])}, where its loss is "
               f"{fmt(e['sf_last_loss'])} vs RMSProp's smoothed {fmt(e['rms_loss_there'])})")
        )
    return "; ".join(parts), holds


# ---------------------------------------------------------------------------------------------
# figures


def flows_figure(baselines: pd.DataFrame) -> Figure:
    """A column per run: loss (GD raw and smoothed, central flow's predicted loss and its loss, stable
    flow), sharpness (GD, central flow, stable flow, 2/eta dashed), distances in weight space."""
    from matplotlib.figure import Figure

    rows = baselines[baselines["baseline"] == "central_flow"] if len(baselines) else baselines
    fig = Figure(figsize=(4.2 * max(1, len(rows)), 9.0), layout="constrained")
    axes = fig.subplots(3, max(1, len(rows)), squeeze=False)
    for col, (_, row) in enumerate(rows.iterrows()):
        h = pd.DataFrame(json.loads(row["history"]))
        eta = float(row["optimizer.lr"])
        loss, sharp, dist = axes[0, col], axes[1, col], axes[2, col]
        loss.plot(h["t"], h["gd_loss"], color="0.75", linewidth=0.8, label="GD")
        loss.plot(h["t"], h["gd_loss_smoothed"], color="k", linewidth=1.2, label=f"GD, mean over {SMOOTH_STEPS} steps")
        loss.plot(h["t"], h["cf_predicted_loss"], color="C3", linestyle="--", label="central flow: predicted")
        loss.plot(h["t"], h["cf_loss"], color="C3", linewidth=0.8, alpha=0.6, label="central flow: L(w)")
        loss.plot(h["t"], h["sf_loss"], color="C0", label="stable flow")
        loss.set_yscale("log")
        loss.set_title(_label(row), fontsize=9)
        loss.set_ylabel("train loss")
        sharp.plot(h["t"], h["gd_sharpness"], color="0.6", linewidth=0.8, label="GD")
        sharp.plot(h["t"], h["cf_sharpness"], color="C3", label="central flow")
        sharp.plot(h["t"], h["sf_sharpness"], color="C0", label="stable flow")
        sharp.axhline(2.0 / eta, color="k", linestyle=":", label="2/eta")
        sharp.set_ylabel("sharpness")
        dist.plot(h["t"], h["gd_to_cf"], color="C3", label="|GD - central flow|")
        dist.plot(h["t"], h["gd_to_sf"], color="C0", label="|GD - stable flow|")
        dist.plot(h["t"], h["cf_to_sf"], color="C2", label="|central - stable flow|")
        dist.set_ylabel("distance in weight space")
        dist.set_xlabel("t = step x eta")
        for ax in (loss, sharp, dist):
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=6)
    return fig


def rmsprop_figure(baselines: pd.DataFrame) -> Figure:
    """A column per ``central_flow_rmsprop`` row: loss (RMSProp raw and smoothed, central flow's
    predicted loss, stable flow), nu (RMSProp smoothed, central flow, stable flow), the central flow's
    effective sharpness (2 dashed)."""
    from matplotlib.figure import Figure

    rows = baselines[baselines["baseline"] == "central_flow_rmsprop"] if len(baselines) else baselines
    fig = Figure(figsize=(4.2 * max(1, len(rows)), 9.0), layout="constrained")
    axes = fig.subplots(3, max(1, len(rows)), squeeze=False)
    for col, (_, row) in enumerate(rows.iterrows()):
        h = pd.DataFrame(json.loads(row["history"]))
        loss, nu, sharp = axes[0, col], axes[1, col], axes[2, col]
        loss.plot(h["t"], h["rms_loss"], color="0.75", linewidth=0.8, label="scalar RMSProp")
        loss.plot(h["t"], h["rms_loss_smoothed"], color="k", linewidth=1.2,
                  label=f"RMSProp, mean over {SMOOTH_STEPS} steps")
        loss.plot(h["t"], h["cf_predicted_loss"], color="C3", linestyle="--", label="central flow: predicted")
        loss.plot(h["t"], h["sf_loss"], color="C0", label="stable flow")
        loss.set_yscale("log")
        loss.set_title(f"{row['model.kind']}: scalar RMSProp eta {fmt(RMSPROP_LR)}, beta2 {fmt(RMSPROP_BETA2)}",
                       fontsize=9)
        loss.set_ylabel("train loss")
        nu.plot(h["t"], h["rms_nu_smoothed"], color="k", label="RMSProp nu (smoothed)")
        nu.plot(h["t"], h["cf_nu"], color="C3", linestyle="--", label="central flow nu")
        nu.plot(h["t"], h["sf_nu"], color="C0", label="stable flow nu")
        nu.set_yscale("log")
        nu.set_ylabel("nu (EMA of |grad L|^2)")
        sharp.plot(h["t"], h["cf_effective_sharpness"], color="C3", label="central flow")
        sharp.axhline(2.0, color="k", linestyle=":", label="2")
        sharp.set_ylabel("effective sharpness eta lambda_1 / sqrt(nu)")
        sharp.set_xlabel("t = step x eta")
        for ax in (loss, nu, sharp):
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=6)
    return fig


def central_flow_figures(data) -> dict:
    baselines = data.baselines if data.baselines is not None else pd.DataFrame()
    return {"flows": flows_figure(baselines), "rmsprop": rmsprop_figure(baselines)}


_DEEP_LINEAR = {
    "problem.kind": "sensing",
    "problem.m": 6,
    "problem.n": 6,
    "problem.rank": 2,
    "problem.observations": 60,
    "model.kind": "deep_linear",
    "model.depth": 2,
    "model.width": 6,
    "model.init": "gaussian",
    "model.scale": 0.3,
    "optimizer.lr": 3.0,
    "train.top_k": 1,
    "metrics": ["train_loss", "sharpness"],
}

CENTRAL_FLOW = Preset(
    name="central-flow",
    description="GD at the edge of stability vs its central flow and its stable flow (Cohen et al., ICLR 2025)",
    base=RunConfig(
        problem=ProblemConfig(kind="classification", dataset="digits", observations=500, test_samples=0, loss="squared"),
        model=ModelConfig(kind="mlp", depth=3, width=50, activation="relu", init="xavier", scale=0.5),
        optimizer=OptimizerConfig(name="gd", lr=0.2),
        train=TrainConfig(max_steps=1000, tol=0.0, record="linear", record_every=5, top_k=1, lanczos_iterations=20),
        metrics=("train_loss", "sharpness"),
    ),
    variants=({}, _DEEP_LINEAR),
    quick={"problem.observations": 100, "model.width": 16, "train.max_steps": 250, "train.record_every": 2},
    baselines=central_flow_jobs,
    figures=central_flow_figures,
    claims=(
        Claim(
            f"the central flow's predicted loss L + (1/2) sum_i S_ii lambda_i tracks GD's loss averaged over "
            f"{SMOOTH_STEPS} steps (median relative error <= {CF_TOLERANCE} from the edge on) while the stable "
            f"flow's loss does not (median relative error >= {SF_FACTOR} x the central flow's)",
            predicted_loss_tracks_gd,
        ),
        Claim(
            f"the central flow's sharpness stays at 2/eta once it gets there (median |S eta/2 - 1| <= "
            f"{SHARPNESS_MEDIAN}, max <= {SHARPNESS_MAX})",
            sharpness_stays_at_edge,
        ),
        Claim("GD ends closer to its central flow than to its stable flow in weight space", gd_closer_to_central_flow),
        Claim(
            f"scalar RMSProp (eta {RMSPROP_LR}, beta2 {RMSPROP_BETA2}, same init) beside the deep linear run: "
            f"from half the run on, the central flow of scalar RMSProp (Sec. 4) predicts RMSProp's loss and its EMA nu averaged "
            f"over {SMOOTH_STEPS} steps (median relative errors <= {RMSPROP_LOSS_TOLERANCE} and <= "
            f"{RMSPROP_NU_TOLERANCE}) at effective sharpness 2 (median |eta lambda_1 / sqrt(nu) - 2| <= "
            f"{RMSPROP_SHARPNESS}), while the stable flow's loss does not (median relative error >= {SF_FACTOR} x the "
            f"central flow's; non-finite counts as infinite)",
            rmsprop_central_flow_tracks,
        ),
    ),
)
