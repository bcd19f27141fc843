"""Preset ``gd-vs-gf``: "Continuous vs. Discrete Optimization of Deep Neural Networks" (Elkabetz &
Cohen, NeurIPS 2021).

Claim: gradient descent with step size eta is a numerical solution of the gradient-flow ODE
d theta/dt = -grad L(theta), and its distance to the flow at equal time t = step x eta is governed
by the curvature along the flow; over simple deep networks, GD with a conventional step size is
close to gradient flow.

Setting: scikit-learn's digits (300 train images, 100 test, 8 x 8 pixels / 16), fully connected
64-50-50-10 (``model.depth`` 3, ``model.width`` 50, no biases), linear and ReLU activations,
Xavier-uniform init (gain 1, seed 0), softmax cross-entropy (mean over samples), full batch, float64.
GD with eta in {eta0, eta0/2, eta0/5, eta0/10, eta0/20}, eta0 = 0.1, each to the same time T = 20
(``train.max_steps`` = T / eta, recorded every Delta t = 1), and one gradient-flow run (Tsit5, rtol
1e-6, atol 1e-9) per activation. The engine's init depends only on the seed, so all of them start
from the same theta(0); every GD run also carries the flow from that init to its own t (metric
``distance_to_flow``).

Choice of eta0: the largest step size for which GD is stable along the whole run is about
2 / max_t lambda_max(t); the sharpness lambda_max along the flow reaches 8.2 (linear, at t = 0) and
11.3 (ReLU, progressive sharpening up to t ~ 15), i.e. 2/lambda = 0.24 and 0.18. eta0 = 0.1 is about
half of that: stable (eta x sharpness <= 1.13 along every run), yet visibly away from the flow.
(eta = 0.2 on the ReLU net reaches eta x sharpness = 2.7, the edge of stability, see the
``edge-of-stability`` preset.) T = 20 is where the flow's train loss is down to 0.1 (linear) and
0.17 (ReLU) from 2.3-2.6.

Measured (full run, ``trajlab run gd-vs-gf``; figures ``distance``, ``scaling``, ``table``):
||theta_GD(T) - theta_GF(T)|| at T = 20 for eta = 0.1 / 0.05 / 0.02 / 0.01 / 0.005:

- linear: 0.0275 / 0.0132 / 0.00519 / 0.00258 / 0.00129, log-log slope 1.02: proportional to eta,
  as for a first-order method on a smooth ODE. The distance is set within t ~ 2 and then stays flat.
  The flow travels 4.86 from the init (train loss 2.60 -> 0.097, test accuracy 0.90), so GD at eta0
  ends 0.57% of that away.
- ReLU: 0.272 / 0.253 / 0.202 / 0.0102 / 0.00362, slope 1.54: strictly decreasing but not
  proportional. GD with eta >= 0.02 drifts away from the flow over t ~ 2-15, while the sharpness
  along the flow rises from 1.3 to 11.3; eta <= 0.01 stays on it. The flow travels 5.32 (train loss
  2.34 -> 0.169, test accuracy 0.88), and GD at eta0 ends 5.1% of that away.
- max eta x sharpness along the runs: 0.82 (linear, eta0; the init's sharpness 8.2) and 1.13 (ReLU,
  eta0). The 9 runs where it stays <= 1 remain within 4.8% of the distance travelled at every
  recorded t in [2, 20]. At T the train losses of the step sizes differ by < 0.2% (linear 0.09741 -
  0.09749, ReLU 0.16887 - 0.16918).

Claims: the distance shrinks with eta (holds); it is proportional to eta (holds for the linear net,
fails for ReLU: slope 1.54); GD stays within 10% of the distance travelled while eta x sharpness <= 1
(holds). Wall time 8 min 45 s (5 min 14 s CPU) on the 2-core CPU, shared with other jobs at the
time; the ReLU flows (77 000 gradient evaluations each, one per GD run and one flow run) dominate.

Gradient flow of a ReLU network is a *non-smooth* ODE (the gradient jumps when a pre-activation
changes sign), so the adaptive solver's error control is less reliable there and it is expensive:
76 000 gradient evaluations to T = 20 at rtol 1e-6 (12 000 at 1e-5, 622 000 at 1e-7, against 540
for the linear network). Between the ReLU flows at rtol 1e-5 and 1e-6 the parameters differ by
2.8e-3 at T (1e-5 vs 1e-7: 5.9e-3; measured outside the engine with the same integrator), so the
ReLU distance at eta0/20 (3.6e-3) is of the order of the solver's own error, not a resolved rate.
GD itself converges to the flow irregularly on the ReLU net: GD with eta = 0.02 and with eta = 0.01
end 0.19 apart at T (no flow involved), while 0.01 and 0.005 end 6e-3 apart; presumably the two
groups cross the ReLU kinks differently. That is the jump in the ReLU curve of the scaling figure.

``--quick`` (CI): the ReLU net only, 100 train / 50 test images, eta = 0.1 and 0.02 to T = 4
(recorded every Delta t = 0.2), flow rtol 1e-5 / atol 1e-8, no separate flow run (every GD run still
carries its reference flow). Distance at T: 0.0408 / 0.0077 (slope 1.04); max eta x sharpness 0.46;
within 5.3% of the distance travelled; all three claims hold. ``trajlab run gd-vs-gf --quick``: 41 s
wall, 23 s CPU on the shared 2-core CPU, mostly the two compilations (GD loop + diffrax flow +
Lanczos, ~10 s each).

Table and figures (:func:`distance_table`, :func:`distance_figure`, :func:`scaling_figure`): pure
functions of the stored tables (``runs``, ``trajectories``; columns ``t``, ``distance_to_flow``,
``distance_from_init``, ``sharpness``, ``train_loss``), built with ``Figure()``, never pyplot.
Runs are grouped into *settings* (everything that varies between runs except the step size and what
follows from it: ``optimizer.lr``, ``optimizer.name``, ``train.max_steps``, ``train.record_every``);
inside a setting, the gradient-flow run (``optimizer.name = gradient_flow``), when there is one,
gives the distance the flow travels from the init, ||theta_GF(t) - theta(0)||.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import FlowConfig, ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig, replace_dotted
from trajlab.presets.claims import fmt, not_measured
from trajlab.presets.preset import Claim, Preset
from trajlab.report.columns import require_columns

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ETA0 = 0.1
RATIOS = (1, 2, 5, 10, 20)
HORIZON = 20.0
METRICS = (
    "train_loss",
    "test_loss",
    "train_accuracy",
    "test_accuracy",
    "distance_from_init",
    "distance_to_flow",
    "sharpness",
)


@dataclass(frozen=True)
class EqualTimePreset(Preset):
    """A preset whose runs all cover the same time T = ``train.max_steps`` x ``optimizer.lr``.

    For every run the grid makes, ``train.max_steps`` = round(T / lr) and ``train.record_every`` =
    max(1, max_steps // ``records``), so runs of different step sizes are recorded at the same
    times t = step x lr (when T / lr is a multiple of ``records``). T is ``horizon``, or
    ``quick_horizon`` under ``--quick``. A value the user sets (``--set train.max_steps=...``)
    is kept. With ``flow_run``, every setting (a run's config up to its step size and optimizer)
    also gets one ``gradient_flow`` run with the largest step size of the setting as its time unit
    (the flow the GD runs are measured against, recorded on the same time grid), unless the user
    sets ``optimizer.name``, or ``--quick`` is on and ``quick_flow_run`` is off (every GD run still
    carries the flow for ``distance_to_flow``; the separate run only records the flow's own metrics,
    at the cost of one more compilation).
    """

    horizon: float = HORIZON
    quick_horizon: float | None = None
    records: int = 20
    flow_run: bool = False
    quick_flow_run: bool = True

    def configs(self, fixed=None, axes=None, quick: bool = False) -> list[RunConfig]:
        user = {**(fixed or {}), **(axes or {})}
        horizon = self.quick_horizon if (quick and self.quick_horizon) else self.horizon
        timed: dict[str, RunConfig] = {}
        for config in super().configs(fixed, axes, quick):
            timed.setdefault(repr(config), self._timed(config, horizon, user))
        configs = list(timed.values())
        if self.flow_run and (self.quick_flow_run or not quick) and "optimizer.name" not in user:
            largest: dict[str, RunConfig] = {}
            for config in configs:
                if config.optimizer.name == "gradient_flow":
                    continue
                key = repr(replace_dotted(config, {"optimizer.lr": 1.0, "train.max_steps": 1, "train.record_every": 1}))
                if key not in largest or config.optimizer.lr > largest[key].optimizer.lr:
                    largest[key] = config
            for config in largest.values():
                flow = self._timed(replace_dotted(config, {"optimizer.name": "gradient_flow"}), horizon, user)
                timed.setdefault(repr(flow), flow)
        return list(timed.values())

    def _timed(self, config: RunConfig, horizon: float, user: dict) -> RunConfig:
        steps = max(1, int(round(horizon / config.optimizer.lr)))
        updates = {}
        if "train.max_steps" not in user:
            updates["train.max_steps"] = steps
        if "train.record_every" not in user:
            updates["train.record_every"] = max(1, updates.get("train.max_steps", config.train.max_steps) // self.records)
        return replace_dotted(config, updates)


# ---------------------------------------------------------------------------------------------
# claims


def _table(data):
    return distance_table(data.runs, data.trajectories)


def _setting_blocks(table):
    levels = [n for n in table.index.names if n != "eta"]
    frame = table.reset_index()
    if not levels:
        return [("all runs", frame)]
    out = []
    for key, block in frame.groupby(levels, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        out.append((", ".join(str(k) for k in key), block.sort_values("eta", ascending=False)))
    return out


def distance_shrinks_with_eta(data):
    """In every setting with >= 2 step sizes: the distance to the flow at T falls strictly as eta falls."""
    table = _table(data)
    if len(table) == 0:
        return not_measured("no gradient-descent run with distance_to_flow")
    parts, holds = [], True
    for label, block in _setting_blocks(table):
        if len(block) < 2:
            continue
        distances = block["distance to flow"].to_numpy(dtype=float)
        holds = holds and bool(np.all(np.diff(distances) < 0))
        parts.append(f"{label}: " + " / ".join(fmt(d) for d in distances) + f" for eta = {' / '.join(fmt(e) for e in block['eta'])}")
    if not parts:
        return not_measured("needs two step sizes or more in a setting")
    return f"distance to the flow at T = {fmt(float(table['T'].max()))}: " + "; ".join(parts), holds


#: "Proportional to eta": the log-log slope of the distance at T against eta is in this range.
_SLOPE_RANGE = (0.8, 1.2)


def distance_proportional_to_eta(data):
    """In every setting with >= 2 step sizes, the least-squares slope of log(distance to the flow at T)
    against log(eta) is in [0.8, 1.2] (1: GD's global error is first order in eta)."""
    table = _table(data)
    if len(table) == 0:
        return not_measured("no gradient-descent run with distance_to_flow")
    slopes = step_size_slopes(table).dropna()
    if len(slopes) == 0:
        return not_measured("needs two step sizes or more in a setting")
    labels = [", ".join(map(str, k)) if isinstance(k, tuple) else str(k) for k in slopes.index]
    measured = "log-log slope: " + "; ".join(f"{label} {fmt(v, 3)}" for label, v in zip(labels, slopes.to_numpy()))
    return measured, bool(all(_SLOPE_RANGE[0] <= v <= _SLOPE_RANGE[1] for v in slopes.to_numpy()))


#: "Well below 2": eta x sharpness stays at most this along the run ...
_STABLE = 1.0
#: ... and then the distance to the flow stays at most this fraction of the distance travelled.
_SMALL = 0.1


def close_when_stable(data):
    """Every GD run with max_t eta x sharpness(t) <= 1 stays within 10% of the distance the flow
    travels: max over recorded t in [T/10, T] of ||theta_GD(t) - theta_GF(t)|| / ||theta_GF(t) - theta(0)|| <= 0.1
    (over the first steps that ratio is about eta x lambda / 2 for any eta: one step's local error over
    one step's length)."""
    table = _table(data)
    if len(table) == 0 or table["max eta x sharpness"].isna().all():
        return not_measured("needs GD runs with distance_to_flow and sharpness")
    stable = table[table["max eta x sharpness"] <= _STABLE]
    others = table[table["max eta x sharpness"] > _STABLE]
    if len(stable) == 0:
        return not_measured(f"no run with eta x sharpness <= {_STABLE} throughout")
    worst = float(stable["max relative"].max())
    measured = (
        f"{len(stable)} runs with max eta x sharpness <= {_STABLE} ({fmt(float(stable['max eta x sharpness'].min()), 2)}"
        f"-{fmt(float(stable['max eta x sharpness'].max()), 2)}): max relative distance {fmt(worst, 2)}"
    )
    if len(others):
        measured += (
            f"; the other {len(others)} (max eta x sharpness {fmt(float(others['max eta x sharpness'].min()), 2)}-"
            f"{fmt(float(others['max eta x sharpness'].max()), 2)}): {fmt(float(others['max relative'].max()), 2)}"
        )
    return measured, bool(worst <= _SMALL) and not math.isnan(worst)


# ---------------------------------------------------------------------------------------------
# the distance table and figures


#: ``max relative`` looks at t >= this fraction of T: over the first steps the ratio is about
#: eta x lambda / 2 whatever eta (one step's local error over one step's length), not small.
_EARLY = 0.1
#: Config columns that follow from the step size (excluded from the setting of a run).
STEP_COLUMNS = ("optimizer.lr", "optimizer.name", "train.max_steps", "train.record_every")
_CONFIG_PREFIXES = ("problem.", "model.", "optimizer.", "train.", "flow.")


def settings(runs: pd.DataFrame) -> list[str]:
    """The config columns (and ``seed``) that vary between runs, except :data:`STEP_COLUMNS`."""
    columns = [c for c in runs.columns if c.startswith(_CONFIG_PREFIXES) or c == "seed"]
    return [
        c for c in columns
        if c not in STEP_COLUMNS and runs[c].astype(str).nunique(dropna=False) > 1
    ]


def _label(values: dict) -> str:
    if not values:
        return "all runs"
    return ", ".join(f"{k.rsplit('.', 1)[-1]} {v}" for k, v in values.items())


def _groups(runs: pd.DataFrame):
    """[(label, {column: value}, runs of the setting)] in a stable order."""
    keys = settings(runs)
    if not keys:
        return [(_label({}), {}, runs)]
    out = []
    for values, block in runs.groupby(keys, sort=True):
        values = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        out.append((_label(values), values, block))
    return out


def _by_run(trajectories: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {rid: frame.sort_values("t") for rid, frame in trajectories.groupby("run_id", sort=False)}


def _at(trajectory: pd.DataFrame, column: str, t: float) -> float:
    """The value recorded at the largest recorded t <= t (relative slack 1e-9; NaN if none)."""
    times = trajectory["t"].to_numpy(dtype=float)
    index = np.flatnonzero(times <= t * (1 + 1e-9) + 1e-12)
    return float(trajectory[column].to_numpy(dtype=float)[index[-1]]) if index.size else math.nan


def _is_flow(run: pd.Series) -> bool:
    return str(run.get("optimizer.name", "gd")) == "gradient_flow"


def distance_table(runs: pd.DataFrame, trajectories: pd.DataFrame) -> pd.DataFrame:
    """One row per gradient-descent run, at the last time T that every run of its setting reached.

    Index: the setting columns and ``eta``. Columns: ``T``; ``distance to flow`` =
    ||theta_GD(T) - theta_GF(T)|| (metric ``distance_to_flow``); ``travelled`` = the flow's
    ||theta_GF(T) - theta(0)|| (its own ``distance_from_init``; the GD run's when the setting has no
    flow run); ``relative`` = their ratio; ``max eta x sharpness`` over the recorded t (a GD step is
    stable on a quadratic while this is < 2); ``max relative`` = max over recorded t in [T/10, T] of
    distance to flow / travelled at t; the final ``train loss``; the run's ``status``.
    """
    require_columns(runs, ["run_id", "optimizer.lr", "status"], "runs")
    require_columns(trajectories, ["run_id", "t", "distance_to_flow", "distance_from_init", "train_loss"], "trajectories")
    by_run = _by_run(trajectories)
    rows = []
    for _, values, block in _groups(runs):
        present = block[block["run_id"].isin(by_run)]
        if len(present) == 0:
            continue
        horizon = min(float(by_run[rid]["t"].max()) for rid in present["run_id"])
        flows = [by_run[run["run_id"]] for _, run in present.iterrows() if _is_flow(run)]
        flow = flows[0] if flows else None
        for _, run in present.iterrows():
            if _is_flow(run):
                continue
            trajectory = by_run[run["run_id"]]
            reference = flow if flow is not None else trajectory
            distance = _at(trajectory, "distance_to_flow", horizon)
            travelled = _at(reference, "distance_from_init", horizon)
            eta = float(run["optimizer.lr"])
            ratios = []
            for t, d in zip(trajectory["t"].to_numpy(dtype=float), trajectory["distance_to_flow"].to_numpy(dtype=float)):
                if _EARLY * horizon <= t <= horizon * (1 + 1e-9):
                    travelled_t = _at(reference, "distance_from_init", t)
                    ratios.append(d / travelled_t if travelled_t > 0 else math.nan)
            sharpness = trajectory["sharpness"].to_numpy(dtype=float) if "sharpness" in trajectory else np.array([np.nan])
            rows.append({
                **values,
                "eta": eta,
                "T": horizon,
                "distance to flow": distance,
                "travelled": travelled,
                "relative": distance / travelled if travelled > 0 else math.nan,
                "max relative": float(np.nanmax(ratios)) if ratios and not np.all(np.isnan(ratios)) else math.nan,
                "max eta x sharpness": float(eta * np.nanmax(sharpness)) if np.isfinite(sharpness).any() else math.nan,
                "train loss": _at(trajectory, "train_loss", horizon),
                "status": run["status"],
            })
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    index = [c for c in table.columns if c in settings(runs)] + ["eta"]
    return table.sort_values(index, ascending=[True] * (len(index) - 1) + [False]).set_index(index)


def step_size_slopes(table: pd.DataFrame) -> pd.Series:
    """Per setting, the least-squares slope of log(distance to flow at T) against log(eta): 1 when the
    distance is proportional to eta (GD's global error is first order), NaN with fewer than two step
    sizes or a non-positive distance."""
    if len(table) == 0:
        return pd.Series(dtype=float)
    levels = [n for n in table.index.names if n != "eta"]
    frame = table.reset_index()
    groups = frame.groupby(levels, sort=True) if levels else [("all runs", frame)]
    slopes = {}
    for key, block in groups:
        eta = block["eta"].to_numpy(dtype=float)
        distance = block["distance to flow"].to_numpy(dtype=float)
        keep = (eta > 0) & (distance > 0) & np.isfinite(distance)
        slopes[key] = float(np.polyfit(np.log(eta[keep]), np.log(distance[keep]), 1)[0]) if keep.sum() >= 2 else math.nan
    return pd.Series(slopes, name="slope")


def _colors(etas):
    from matplotlib import colormaps

    ordered = sorted(set(etas), reverse=True)
    cmap = colormaps["viridis"]
    return {eta: cmap(0.9 * i / max(1, len(ordered) - 1)) for i, eta in enumerate(ordered)}


def distance_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """A column per setting (e.g. linear and ReLU); rows: the distance ||theta_GD(t) - theta_GF(t)||
    per step size (log scale) beside the distance the flow travels from the init (black, dashed; grey:
    the smallest step's GD run when the setting has no flow run);
    the sharpness (top Hessian eigenvalue) along GD and along the flow (black); the train loss."""
    from matplotlib.figure import Figure

    require_columns(runs, ["run_id", "optimizer.lr"], "runs")
    require_columns(trajectories, ["run_id", "t", "distance_to_flow", "distance_from_init", "train_loss"], "trajectories")
    by_run = _by_run(trajectories)
    groups = [g for g in _groups(runs) if g[2]["run_id"].isin(by_run).any()]
    colors = _colors([float(v) for v in runs["optimizer.lr"]])
    has_sharpness = "sharpness" in trajectories.columns
    rows = 3 if has_sharpness else 2
    fig = Figure(figsize=(4.2 * max(1, len(groups)), 2.8 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, max(1, len(groups)), squeeze=False, sharex="col")
    for col, (label, _, block) in enumerate(groups):
        ax_distance, ax_loss = axes[0, col], axes[-1, col]
        ax_sharpness = axes[1, col] if has_sharpness else None
        for _, run in block.sort_values("optimizer.lr", ascending=False).iterrows():
            trajectory = by_run.get(run["run_id"])
            if trajectory is None:
                continue
            t = trajectory["t"].to_numpy(dtype=float)
            if _is_flow(run):
                style = dict(color="black", linewidth=1.6, zorder=3)
                travelled = trajectory["distance_from_init"].to_numpy(dtype=float)
                ax_distance.plot(t[t > 0], travelled[t > 0], linestyle="--", label="flow: distance from init", **style)
                name = "gradient flow"
            else:
                eta = float(run["optimizer.lr"])
                style = dict(color=colors[eta], linewidth=1.3)
                distance = trajectory["distance_to_flow"].to_numpy(dtype=float)
                ax_distance.plot(t[t > 0], distance[t > 0], label=f"GD eta = {eta:g}", **style)
                name = f"GD eta = {eta:g}"
            if ax_sharpness is not None:
                ax_sharpness.plot(t, trajectory["sharpness"].to_numpy(dtype=float), label=name, **style)
            ax_loss.plot(t, trajectory["train_loss"].to_numpy(dtype=float), label=name, **style)
        if not any(_is_flow(run) for _, run in block.iterrows()):
            # No flow run: the smallest step's GD run stands in for the distance the flow travels.
            smallest = block.loc[block["optimizer.lr"].astype(float).idxmin()]
            trajectory = by_run.get(smallest["run_id"])
            if trajectory is not None:
                t = trajectory["t"].to_numpy(dtype=float)
                travelled = trajectory["distance_from_init"].to_numpy(dtype=float)
                ax_distance.plot(t[t > 0], travelled[t > 0], color="grey", linestyle="--", linewidth=1.4,
                                 label="GD, smallest eta: distance from init")
        ax_distance.set_yscale("log")
        ax_distance.set_title(label, fontsize=10)
        ax_distance.set_ylabel("||theta_GD(t) - theta_GF(t)||")
        if ax_sharpness is not None:
            ax_sharpness.set_ylabel("sharpness (top Hessian eigenvalue)")
        ax_loss.set_yscale("log")
        ax_loss.set_ylabel("train loss")
        ax_loss.set_xlabel("t = step x eta")
        for ax in axes[:, col]:
            ax.grid(True, alpha=0.3)
    handles, labels = [], []
    for ax in axes.ravel():
        for handle, text in zip(*ax.get_legend_handles_labels()):
            if text not in labels:
                handles.append(handle)
                labels.append(text)
    if handles:
        columns = min(len(labels), 2 * max(1, len(groups)))
        fig.legend(handles, labels, loc="outside lower center", ncols=columns, frameon=False, fontsize=8)
    return fig


def scaling_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """Distance to the flow at the common final time T against eta (log-log), a line per setting,
    with a slope-1 guide through the smallest step size (first-order convergence of GD to GF)."""
    from matplotlib.figure import Figure

    table = distance_table(runs, trajectories)
    fig = Figure(figsize=(5.0, 3.8), layout="constrained")
    ax = fig.subplots()
    if len(table) == 0:
        ax.set_title("no gradient-descent runs")
        return fig
    slopes = step_size_slopes(table)
    levels = [n for n in table.index.names if n != "eta"]
    frame = table.reset_index()
    groups = frame.groupby(levels, sort=True) if levels else [("all runs", frame)]
    for key, block in groups:
        block = block.sort_values("eta")
        name = key if isinstance(key, str) else _label(dict(zip(levels, key if isinstance(key, tuple) else (key,))))
        slope = slopes.get(key, math.nan)
        line, = ax.plot(block["eta"], block["distance to flow"], marker="o", label=f"{name} (slope {slope:.2f})")
        eta, distance = block["eta"].to_numpy(dtype=float), block["distance to flow"].to_numpy(dtype=float)
        if len(eta) >= 2 and distance[0] > 0:
            ax.plot(eta, distance[0] * eta / eta[0], color=line.get_color(), linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step size eta")
    ax.set_ylabel(f"||theta_GD(T) - theta_GF(T)||, T = {table['T'].max():g}")
    ax.set_title("distance to gradient flow vs step size (dotted: proportional to eta)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def gd_vs_gf_figures(data) -> dict:
    from trajlab.plots import table_figure

    table = distance_table(data.runs, data.trajectories)
    columns = ["T", "distance to flow", "travelled", "relative", "max relative", "max eta x sharpness", "train loss"]
    return {
        "distance": distance_figure(data.runs, data.trajectories),
        "scaling": scaling_figure(data.runs, data.trajectories),
        "table": table_figure(table[columns], title="GD vs gradient flow at the common final time T"),
    }


GD_VS_GF = EqualTimePreset(
    name="gd-vs-gf",
    description="Digits 64-50-50-10, linear/ReLU: distance of GD (eta0/r) to gradient flow at equal t (NeurIPS 2021)",
    base=RunConfig(
        problem=ProblemConfig(kind="classification", dataset="digits", observations=300, test_samples=100),
        model=ModelConfig(kind="mlp", depth=3, width=50, activation="relu", init="xavier", scale=1.0),
        optimizer=OptimizerConfig(name="gd", lr=ETA0),
        flow=FlowConfig(solver="tsit5", rtol=1e-6, atol=1e-9),
        train=TrainConfig(
            max_steps=int(HORIZON / ETA0), tol=0.0, record="linear", record_every=int(HORIZON / ETA0) // 20,
            top_k=1, x64=True,
        ),
        metrics=METRICS,
    ),
    axes={"model.activation": ["linear", "relu"], "optimizer.lr": [ETA0 / r for r in RATIOS]},
    quick={
        "model.activation": "relu",
        "problem.observations": 100,
        "problem.test_samples": 50,
        "optimizer.lr": [ETA0, ETA0 / 5],
        "flow.rtol": 1e-5,
        "flow.atol": 1e-8,
    },
    horizon=HORIZON,
    quick_horizon=4.0,
    records=20,
    flow_run=True,
    quick_flow_run=False,
    figures=gd_vs_gf_figures,
    claims=(
        Claim(
            "the distance of GD to the gradient flow at equal t shrinks as eta shrinks (checked at T: strictly "
            "decreasing in eta, for each activation)",
            distance_shrinks_with_eta,
        ),
        Claim(
            "... in proportion to eta, GD being a first-order method (checked: log-log slope of the distance at T "
            "against eta in [0.8, 1.2]). Measured: 1.02 for the linear network; 1.54 for ReLU, whose distance "
            "drops 20x between eta = 0.02 and 0.01 (see the docstring), so this fails on the full sweep",
            distance_proportional_to_eta,
        ),
        Claim(
            "while eta x sharpness stays well below 2 (checked: <= 1 along the run), GD stays close to the flow: "
            "its distance to the flow is at most 10% of the distance the flow travels from the init",
            close_when_stable,
        ),
    ),
)
