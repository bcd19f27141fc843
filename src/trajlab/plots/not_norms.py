"""Figure of "Implicit Regularization in Deep Learning May Not Be Explainable by Norms"
(Razin & Cohen, NeurIPS 2020): quantities of the end-to-end matrix against the train loss."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from trajlab.report.columns import require_columns

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
