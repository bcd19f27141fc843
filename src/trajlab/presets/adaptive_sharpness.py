"""Preset ``adaptive-sharpness``: Adam at the edge of stability of its preconditioned Hessian (Cohen et
al., "Adaptive Gradient Methods at the Edge of Stability", arXiv 2207.14484, 2022) and the R_med
statistic of Jiang, Malik, Li ("How Does Adaptive Optimization Impact Local Neural Network
Geometry?", NeurIPS 2023, arXiv 2211.02254).

Claims:
(a) full-batch Adam's *preconditioned* sharpness lambda_max(P^-1 H), P = diag(sqrt(v_hat) + eps),
rises to and hovers around the stability threshold (2 + 2 beta1) / ((1 - beta1) eta) = 38/eta of
Adam with a frozen preconditioner (Cohen et al. 2022; the threshold is that of EMA-style heavy-ball
momentum on a quadratic: the paper's abstract states 38/eta for beta1 = 0.9 and a summary of it
gives lambda_1(P^-1 H) = (2 + 2 beta1)/(eta (1 - beta1)); its full text was not at hand), checked as:
the median of preconditioned sharpness / threshold over the second half of the records is in
[0.8, 1.2] for every Adam run; while Adam's plain sharpness does not sit at 2/eta (its median
over the second half is below 0.8 x 2/eta).
(b) Jiang et al.: Adam's trajectories go where R_med (median over layers of the max / median
diagonal entry of the layer's Hessian block; see :mod:`trajlab.metrics.adaptive` for the
definition we implement, the paper's text was not at hand) is smaller than along GD's. Checked as:
every Adam run's median R_med over the second half of the records is below GD's.

Setting: the ``edge-of-stability`` preset's network, made smaller so that the exact Hessian diagonal
(one Hessian-vector product per parameter) is affordable at every record: scikit-learn's digits
(200 train images), fully connected 64-16-16-10 ReLU without biases (1440 parameters), Xavier
init with gain 0.5, squared loss, full batch; Adam (beta1 0.9, beta2 0.999, eps 1e-8) at eta =
0.005 and 0.01, and GD at eta = 0.2 (which sits at its own edge, 2/eta, so the R_med comparison is
against GD at the edge of stability), float32, recorded every 10 steps; sharpness and
preconditioned sharpness by 20 Lanczos steps. Step sizes were chosen from a first look at eta in
{0.001, 0.003, 0.005, 0.01, 0.02}: 0.001 and 0.003 rise too slowly to reach the threshold in 600
steps (0.28 and 0.66 x 38/eta at step 600), and 0.02 kills ReLU units (loss stuck at 0.30, R_med
inf as more than half of a layer's diagonal is 0); that is a choice of setting, not a tuning of
the tolerance.

Measured (``trajlab run adaptive-sharpness --quick``, 400 steps; 32.1 s wall, 24.2 s user + 1.6 s
sys on the shared 2-core CPU, one device per core): preconditioned sharpness / (38/eta),
second-half median 0.857 (eta 0.005; max 0.949) and 0.904 (eta 0.01; max 0.994): (a) holds, at the lower end of the band
(slightly below the threshold, as ``edge-of-stability`` measures for GD). Adam's plain sharpness /
(2/eta): 0.075 and 0.179 (GD's: 1.13): holds. R_med second-half median 912 and 1731 for Adam
against 19 for GD: claim (b) does NOT hold here.

Full run (``trajlab run adaptive-sharpness``, 1500 steps; 73.8 s wall, 66.1 s user + 2.5 s sys):
preconditioned sharpness / (38/eta) second-half median 0.929 (max 1.02) and 0.964 (max 1.08);
plain sharpness / (2/eta) 0.067 and 0.189 (GD 1.09); R_med 247 and 2445 for Adam against 22 for GD
(b does not hold). Final losses 0.0037 / 0.0042 (Adam), 0.025 (GD).

Why (b) fails here (looked at once, at step 400 of the quick setting, with the exact diagonal per
layer): Adam at eta = 0.01 has silenced about half of the ReLU units, so 46% / 54% / 25% of the
diagonal entries of the three layers are 0 (below 1e-6 x the layer's max) against 32% / 22% / 0%
for GD at 0.2; the median diagonal entry of the first two layers collapses (5.5e-4 and 0 against
0.014 and 0.044 for GD) while the max is of the same order (0.98 and 2.95 against 0.39 and 1.03).
So R_med measures dead units here more than the conditioning of the live ones. Jiang et al.
report their claim on other networks (and with minibatch SGD); whether they exclude zero
diagonal entries we could not check (the paper's text was not at hand).

Figures: ``preconditioned`` (preconditioned sharpness x eta against step per run, Adam's threshold
38 and GD's 2 as lines; Adam's plain sharpness x eta dotted), ``r_med`` (R_med against step, Adam
vs GD, log scale), ``table``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig
from trajlab.metrics.adaptive import adam_stability_threshold
from trajlab.presets.claims import fmt, not_measured
from trajlab.presets.preset import Claim, Preset
from trajlab.report.columns import require_columns

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: "Hovers around the threshold": the second-half median of preconditioned sharpness / threshold.
BAND = (0.8, 1.2)
#: Adam's plain sharpness is "not at 2/eta" when its second-half median is below this x 2/eta.
PLAIN_BELOW = 0.8
_COLUMNS = ["run_id", "step", "train_loss", "sharpness", "preconditioned_sharpness", "r_med"]


def threshold_of(name: str, lr: float, b1: float) -> float:
    """The stability threshold of the preconditioned sharpness: (2 + 2 b1)/((1 - b1) eta) for Adam,
    2/eta for GD (P = I)."""
    return adam_stability_threshold(lr, b1) if name == "adam" else 2.0 / lr


def adaptive_table(runs: pd.DataFrame, trajectories: pd.DataFrame) -> pd.DataFrame:
    """One row per run, indexed by (optimizer, eta): ``threshold``; second-half medians ("late") of
    preconditioned sharpness / threshold, of sharpness / (2/eta) and of R_med; R_med at step 0;
    initial and final train loss."""
    require_columns(runs, ["run_id", "optimizer.name", "optimizer.lr"], "runs")
    require_columns(trajectories, _COLUMNS, "trajectories")
    by_run = {rid: frame.sort_values("step") for rid, frame in trajectories.groupby("run_id", sort=False)}
    rows = []
    for _, run in runs.iterrows():
        trajectory = by_run.get(run["run_id"])
        if trajectory is None or len(trajectory) == 0:
            continue
        name, eta = str(run["optimizer.name"]), float(run["optimizer.lr"])
        b1 = float(run["optimizer.b1"]) if "optimizer.b1" in run else 0.9
        threshold = threshold_of(name, eta, b1)
        late = trajectory.iloc[len(trajectory) // 2 :]
        rows.append({
            "optimizer": name,
            "eta": eta,
            "threshold": threshold,
            "late preconditioned / threshold": float(np.nanmedian(late["preconditioned_sharpness"] / threshold)),
            "max preconditioned / threshold": float(np.nanmax(trajectory["preconditioned_sharpness"] / threshold)),
            "late sharpness / (2/eta)": float(np.nanmedian(late["sharpness"] * eta / 2.0)),
            "initial r_med": float(trajectory["r_med"].iloc[0]),
            "late r_med": float(np.nanmedian(late["r_med"])),
            "initial loss": float(trajectory["train_loss"].iloc[0]),
            "final loss": float(trajectory["train_loss"].iloc[-1]),
        })
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).sort_values(["optimizer", "eta"]).set_index(["optimizer", "eta"])


def _table(data):
    return adaptive_table(data.runs, data.trajectories)


def _adam(table):
    return table.xs("adam", level="optimizer") if len(table) and "adam" in table.index.get_level_values(0) else None


def preconditioned_at_threshold(data):
    """Every Adam run: second-half median of preconditioned sharpness / threshold in BAND."""
    adam = _adam(_table(data))
    if adam is None:
        return not_measured("no Adam run")
    values = adam["late preconditioned / threshold"]
    holds = bool(values.between(*BAND).all())
    parts = [
        f"eta {fmt(eta)}: {fmt(row['late preconditioned / threshold'], 3)} "
        f"(max {fmt(row['max preconditioned / threshold'], 3)})"
        for eta, row in adam.iterrows()
    ]
    return "preconditioned sharpness / (38/eta), second-half median: " + "; ".join(parts), holds


def plain_sharpness_not_at_edge(data):
    """Every Adam run: second-half median of sharpness / (2/eta) below PLAIN_BELOW."""
    table = _table(data)
    adam = _adam(table)
    if adam is None:
        return not_measured("no Adam run")
    holds = bool((adam["late sharpness / (2/eta)"] < PLAIN_BELOW).all())
    parts = [f"Adam eta {fmt(eta)}: {fmt(v, 3)}" for eta, v in adam["late sharpness / (2/eta)"].items()]
    if "gd" in table.index.get_level_values(0):
        gd = table.xs("gd", level="optimizer")["late sharpness / (2/eta)"]
        parts += [f"GD eta {fmt(eta)}: {fmt(v, 3)}" for eta, v in gd.items()]
    return "sharpness / (2/eta), second-half median: " + "; ".join(parts), holds


def r_med_smaller_for_adam(data):
    """Every Adam run's second-half median R_med is below the smallest of GD's."""
    table = _table(data)
    adam = _adam(table)
    if adam is None or "gd" not in table.index.get_level_values(0):
        return not_measured("needs Adam and GD runs")
    gd = table.xs("gd", level="optimizer")["late r_med"]
    holds = bool((adam["late r_med"] < gd.min()).all())
    parts = [f"Adam eta {fmt(eta)}: {fmt(v, 4)}" for eta, v in adam["late r_med"].items()]
    parts += [f"GD eta {fmt(eta)}: {fmt(v, 4)}" for eta, v in gd.items()]
    return "R_med, second-half median: " + "; ".join(parts), holds


# ---------------------------------------------------------------------------------------------
# figures


def _runs(runs, trajectories):
    by_run = {rid: frame.sort_values("step") for rid, frame in trajectories.groupby("run_id", sort=False)}
    ordered = runs.sort_values(["optimizer.name", "optimizer.lr"])
    for _, run in ordered.iterrows():
        trajectory = by_run.get(run["run_id"])
        if trajectory is not None:
            yield run, trajectory


def preconditioned_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """Preconditioned sharpness x eta against step, a colour per run; dashed lines: Adam's threshold
    (2 + 2 beta1)/(1 - beta1) (38 at beta1 = 0.9) and GD's 2; dotted: Adam's plain sharpness x eta."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    require_columns(runs, ["run_id", "optimizer.name", "optimizer.lr"], "runs")
    require_columns(trajectories, _COLUMNS, "trajectories")
    pairs = list(_runs(runs, trajectories))
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for i, (run, trajectory) in enumerate(pairs):
        color = colormaps["viridis"](0.85 * i / max(1, len(pairs) - 1))
        name, eta = str(run["optimizer.name"]), float(run["optimizer.lr"])
        b1 = float(run["optimizer.b1"]) if "optimizer.b1" in run else 0.9
        steps = trajectory["step"].to_numpy()
        ax.plot(steps, trajectory["preconditioned_sharpness"].to_numpy(float) * eta, color=color, linewidth=1.2,
                label=f"{name} eta = {eta:g}: preconditioned")
        ax.axhline(threshold_of(name, eta, b1) * eta, color=color, linestyle="--", linewidth=1.0)
        if name == "adam":
            ax.plot(steps, trajectory["sharpness"].to_numpy(float) * eta, color=color, linestyle=":", linewidth=1.0,
                    label=f"adam eta = {eta:g}: plain")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("sharpness x eta (dashed: threshold x eta)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def r_med_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """R_med against step for every run (log scale), Adam solid, GD dashed."""
    from matplotlib.figure import Figure

    require_columns(runs, ["run_id", "optimizer.name", "optimizer.lr"], "runs")
    require_columns(trajectories, _COLUMNS, "trajectories")
    fig = Figure(figsize=(6.5, 4.0), layout="constrained")
    ax = fig.subplots()
    for run, trajectory in _runs(runs, trajectories):
        name, eta = str(run["optimizer.name"]), float(run["optimizer.lr"])
        values = trajectory["r_med"].to_numpy(float)
        ax.plot(trajectory["step"].to_numpy(), np.where(np.isfinite(values), values, np.nan),
                linestyle="-" if name == "adam" else "--", label=f"{name} eta = {eta:g}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("R_med (median over layers of max / median Hessian diagonal)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def adaptive_sharpness_figures(data) -> dict:
    from trajlab.plots import table_figure

    table = adaptive_table(data.runs, data.trajectories)
    return {
        "preconditioned": preconditioned_figure(data.runs, data.trajectories),
        "r_med": r_med_figure(data.runs, data.trajectories),
        "table": table_figure(table, title="Adam vs GD: preconditioned sharpness and R_med"),
    }


ADAPTIVE_SHARPNESS = Preset(
    name="adaptive-sharpness",
    description="Full-batch Adam: preconditioned sharpness at 38/eta (Cohen et al. 2022); R_med of Adam vs GD "
    "(Jiang et al. 2023)",
    base=RunConfig(
        problem=ProblemConfig(
            kind="classification", dataset="digits", observations=200, test_samples=0, loss="squared"
        ),
        model=ModelConfig(kind="mlp", depth=3, width=16, activation="relu", init="xavier", scale=0.5),
        optimizer=OptimizerConfig(name="adam", lr=0.01, b1=0.9, b2=0.999, eps=1e-8),
        train=TrainConfig(max_steps=1500, tol=0.0, record="linear", record_every=10, top_k=1, lanczos_iterations=20),
        metrics=("train_loss", "sharpness", "preconditioned_sharpness", "r_med"),
    ),
    variants=(
        {"optimizer.name": "adam", "optimizer.lr": 0.005},
        {"optimizer.name": "adam", "optimizer.lr": 0.01},
        {"optimizer.name": "gd", "optimizer.lr": 0.2},
    ),
    quick={"train.max_steps": 400},
    figures=adaptive_sharpness_figures,
    claims=(
        Claim(
            "full-batch Adam's preconditioned sharpness rises to and hovers around (2 + 2 beta1)/((1 - beta1) eta) = "
            "38/eta (checked: second-half median of the ratio in [0.8, 1.2] for every Adam run)",
            preconditioned_at_threshold,
        ),
        Claim(
            "Adam's plain sharpness does not sit at 2/eta (checked: second-half median below 0.8 x 2/eta)",
            plain_sharpness_not_at_edge,
        ),
        Claim(
            "Jiang et al.: Adam's trajectory goes where R_med is smaller than along GD's (checked: every Adam run's "
            "second-half median R_med below GD's)",
            r_med_smaller_for_adam,
        ),
    ),
)
