"""Preset ``not-norms``: "Implicit Regularization in Deep Learning May Not Be Explainable by Norms"
(Razin & Cohen, NeurIPS 2020).

Matrix completion of [[?, 1], [1, 0]] (the three known entries observed; problem dataset
``razin_cohen_2x2``), loss 1/2 sum of squared residuals, plain GD with lr 3e-3, stop at loss 1e-4.
Any exact fit has det = -1, but from det(W_e(0)) > 0 gradient flow on a deep factorization keeps
det(W_e) > 0, so the loss can only go to 0 with the unobserved entry, and with it every norm of
W_e, going to infinity, while the effective rank goes to 1: the implicit regularization is
towards low rank and no norm explains it.

Inits: per-layer Gaussian with std 8e-3 (``model.init=gaussian``) and a balanced init
(``balanced_random``, scale 1e-4), each conditioned on det(W_e(0)) > 0 (``model.condition``).

Measured on a 2-core CPU (float32, seeds 0-3; ``trajlab run not-norms``): at loss 1e-4 the
unobserved entry reaches 64-71 with effective rank 1.000 for depth 3 (Gaussian, 3.3-4.7 million
steps; balanced, 3.2 million to the 10 million cap), and 6.6-7.4 with effective rank 1.08-1.10 for
balanced depth 2 (25-32 thousand steps). Gaussian depth 2 is the exception: det(W_2) crosses zero
within ~150 steps (the layers are not balanced and as small as their imbalance), det(W_e) turns
negative and GD fits the entries with a small unobserved entry (0.2-1.9) and effective rank
1.5-2.0. The theorem's premise (det(W_e) > 0 along the flow) is what fails there, not its
conclusion; it is kept in the sweep because it shows that premise at work.
The whole preset runs in well under a minute: about a microsecond per step for a batch of 4
2 x 2 runs, which is the test of the engine's per-step overhead.

Figure (:func:`norms_against_loss_figure`): the quantities of the end-to-end matrix against the
train loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig
from trajlab.presets.claims import by_run, fmt, lacks, not_measured
from trajlab.presets.preset import Claim, Preset
from trajlab.report.columns import require_columns

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS = (
    "train_loss",
    "unobserved_max_abs",
    "frobenius_norm",
    "nuclear_norm",
    "schatten_quasi_norm",
    "effective_rank",
    "singular_values",
)


#: The quantities that must grow as the loss falls (stored metrics of the end-to-end matrix).
_GROWING = ("unobserved_max_abs", "frobenius_norm", "nuclear_norm", "schatten_quasi_norm")
#: The late phase starts when the loss first falls below this; runs must end below _END_LOSS.
_LATE_LOSS, _END_LOSS = 1e-2, 1e-3
#: "Tends to 1": the effective rank at the end is at most this (any minimum-norm fit, x = 0, has 2).
_RANK_ONE = 1.2


def norms_grow_rank_falls(data):
    """On the runs whose det(W_e) stays positive (depth >= 3, or the balanced init; Gaussian depth 2
    is left out, its det crosses 0): each run ends with loss <= 1e-3, and from the first record with
    loss <= 1e-2 to the end the unobserved entry and the Frobenius, nuclear and Schatten-1/2 norms never
    decrease (0.1% slack) and end higher, while the effective rank ends <= 1.2."""
    reason = lacks(
        data, runs=["run_id", "model.depth", "model.init", "seed"],
        trajectories=["run_id", "step", "train_loss", "effective_rank", *_GROWING],
    )
    if reason:
        return not_measured(reason)
    trajectories = by_run(data.trajectories)
    runs = data.runs[data.runs["run_id"].isin(trajectories)]
    scope = (runs["model.depth"] >= 3) | (runs["model.init"] == "balanced_random")
    checked, failures, finals, ranks = 0, [], [], []
    for _, run in runs[scope].iterrows():
        trajectory = trajectories[run["run_id"]]
        loss = trajectory["train_loss"].to_numpy(dtype=float)
        if not np.isfinite(loss[-1]) or loss[-1] > _END_LOSS:
            continue
        checked += 1
        late = trajectory.iloc[int(np.argmax(loss <= _LATE_LOSS)):]
        label = f"depth {run['model.depth']} {run['model.init']} seed {run['seed']}"
        for name in _GROWING:
            values = late[name].to_numpy(dtype=float)
            slack = 1e-3 * np.abs(values).max()
            if not (np.all(np.diff(values) >= -slack) and values[-1] > values[0]):
                failures.append(f"{label}: {name} does not grow")
        rank = float(late["effective_rank"].iloc[-1])
        ranks.append(rank)
        finals.append(float(late["unobserved_max_abs"].iloc[-1]))
        if rank > _RANK_ONE:
            failures.append(f"{label}: effective rank {fmt(rank)}")
    if checked == 0:
        return not_measured(f"no run of depth >= 3 or balanced init reached loss {fmt(_END_LOSS)}")
    measured = (
        f"{checked} runs at loss <= {fmt(_END_LOSS)}: unobserved entry {fmt(min(finals))} to {fmt(max(finals))}, "
        f"effective rank {fmt(min(ranks), 4)} to {fmt(max(ranks), 4)}"
    )
    excluded = runs[~scope]
    if len(excluded):
        values = np.array([float(trajectories[i]["unobserved_max_abs"].iloc[-1]) for i in excluded["run_id"]])
        measured += (
            f"; left out: {len(excluded)} Gaussian depth-2 runs (unobserved entry {fmt(values.min())} to "
            f"{fmt(values.max())})"
        )
    if failures:
        measured += "; fails: " + "; ".join(failures)
    return measured, not failures


# ---------------------------------------------------------------------------------------------
# figures


_PANELS = (
    ("unobserved_max_abs", "|unobserved entry|", True),
    ("frobenius_norm", "Frobenius norm", True),
    ("nuclear_norm", "nuclear norm", True),
    ("schatten_quasi_norm", "Schatten-p quasi-norm", True),
    ("effective_rank", "effective rank", False),
)


def norms_against_loss_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """A row per init scheme, a column per quantity, each against the train loss (log x-axis,
    inverted so that training runs left to right); a line per (depth, seed) run, coloured by depth.

    As the loss goes to 0 from det(W_e(0)) > 0, the unobserved entry and every norm grow while the
    effective rank falls to 1: the implicit regularization lowers rank, not a norm.
    """
    from matplotlib.figure import Figure

    require_columns(runs, ["run_id", "model.depth", "model.init", "status"], "runs")
    require_columns(trajectories, ["run_id", "train_loss", *(name for name, _, _ in _PANELS)], "trajectories")
    inits = sorted(runs["model.init"].unique())
    depths = sorted(runs["model.depth"].unique())
    colors = dict(zip(depths, ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")))
    fig = Figure(figsize=(3.3 * len(_PANELS), 3.0 * len(inits) + 0.6), layout="constrained")
    axes = fig.subplots(len(inits), len(_PANELS), squeeze=False)
    by_run = {rid: t.sort_values("step") for rid, t in trajectories.groupby("run_id")}
    for row, init in enumerate(inits):
        for _, run in runs[runs["model.init"] == init].sort_values(["model.depth", "run_id"]).iterrows():
            traj = by_run.get(run["run_id"])
            if traj is None:
                continue
            loss = traj["train_loss"].to_numpy()
            keep = np.isfinite(loss) & (loss > 0)
            for col, (name, label, logy) in enumerate(_PANELS):
                ax = axes[row, col]
                ax.plot(loss[keep], traj[name].to_numpy()[keep], color=colors[run["model.depth"]], alpha=0.8,
                        linewidth=1.2, label=f"depth {run['model.depth']}")
                ax.set_xscale("log")
                ax.set_yscale("log" if logy else "linear")
                ax.set_xlabel("train loss")
                ax.set_title(f"{label} ({init})", fontsize=9)
        for ax in axes[row]:
            if not ax.xaxis_inverted():
                ax.invert_xaxis()
            ax.grid(True, alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    fig.legend(list(unique.values()), list(unique.keys()), loc="outside lower center", ncols=len(unique), frameon=False)
    return fig


def not_norms_figures(data) -> dict:
    return {"norms_against_loss": norms_against_loss_figure(data.runs, data.trajectories)}


NOT_NORMS = Preset(
    name="not-norms",
    description="2x2 completion [[?,1],[1,0]]: GD drives every norm up and rank down (Razin & Cohen 2020)",
    base=RunConfig(
        problem=ProblemConfig(
            kind="completion", dataset="razin_cohen_2x2", m=2, n=2, rank=1, observations=3, loss_convention="half_sum"
        ),
        model=ModelConfig(depth=3, init="gaussian", scale=8e-3, condition="positive_det"),
        optimizer=OptimizerConfig(name="gd", lr=3e-3),
        train=TrainConfig(max_steps=10_000_000, tol=1e-4, record_points=400, top_k=2),
        metrics=METRICS,
    ),
    axes={"model.depth": [2, 3], "seed": [0, 1, 2, 3]},
    variants=(
        {"model.init": "gaussian", "model.scale": 8e-3},
        {"model.init": "balanced_random", "model.scale": 1e-4},
    ),
    quick={"seed": [0, 1], "train.max_steps": 3_000_000, "train.record_points": 300},
    figures=not_norms_figures,
    claims=(
        Claim(
            "from det(W_e(0)) > 0, as the loss falls the unobserved entry and all norms grow while the effective rank "
            "tends to 1 (checked where det(W_e) stays positive: depth 3 and the balanced init; effective rank <= 1.2 "
            "at loss <= 1e-3)",
            norms_grow_rank_falls,
        ),
    ),
)
