"""Preset ``overparam-landscape``: over-parameterization makes a teacher network learnable by SGD
(Livni, Shalev-Shwartz, Shamir, "On the Computational Efficiency of Training Neural Networks",
NeurIPS 2014, as shown in Jason Lee's talks on the optimization landscape of neural networks).

Setting: inputs x ~ N(0, I_50); a teacher two-layer ReLU network with 50 hidden units,
y = sum_{r=1}^{50} relu(<w*_r, x>) with orthonormal rows w*_r and unit output weights
(``problem.kind=teacher_student``, ``teacher_width=50``; :func:`trajlab.problems.classification.make_teacher_student`);
students f(x) = sum_r a_r relu(<w_r, x>) (``model.kind=two_layer``, both layers trained) with 50 and
with 100 hidden units, from a random Gaussian init (rows N(0, I / 50), a_r ~ N(0, 1)), trained by SGD
(minibatches of 50 samples drawn without replacement at each step, lr 0.005) on the mean squared
error, 5 seeds each. The 50-unit student can represent the teacher exactly (zero loss is
attainable), yet SGD leaves it far above zero, while the 100-unit student goes much lower in the
same number of steps.

Full: 4000 training samples (more than the 2550 parameters of the 50-unit student, fewer than the
5100 of the 100-unit one), 1000 held-out samples, 30 000 steps. ``--quick``: 1000 samples, 3 seeds,
3000 steps.

Cost note: the engine evaluates the full train loss at every SGD step (its stopping rule), so a
step costs a full-batch forward pass; the sample counts are chosen with that in mind.

Measured with ``trajlab run overparam-landscape`` (float32; 10 runs; 790 s of CPU on a 2-core
machine shared with other jobs, 16 min wall there): final train loss (targets have variance ~17)
of the 50-unit students 0.242, 0.282, 0.296, 0.381, 0.444 (median 0.296), of the 100-unit students
0.0347 to 0.0391 (median 0.0353): ratio of medians 0.119, every wide seed below every narrow one.
Over the last decade of steps the narrow students' loss falls like t^-0.4 to t^-0.5, the wide
students' like t^-1.0 to t^-1.1: the gap keeps widening. Held-out loss (1000 samples): median 3.72
(narrow) against 2.36 (wide). ``--quick`` (1000 samples, 3 seeds, 3000 steps; 23 s CPU): medians
0.0332 against 0.00078 (ratio 0.023), again separated; with 1000 samples both students could
interpolate, so the quick version shows the speed of the descent rather than a landscape barrier.

Figures: :func:`student_loss_figure`, the SGD training loss of the students of each width along
training, and :func:`final_loss_figure`, the final train loss per width.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig
from trajlab.presets.claims import fmt, lacks, not_measured
from trajlab.presets.preset import Claim, Preset
from trajlab.report.columns import require_columns

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: "Far lower": the median final train loss of the widest student is at most this fraction of the narrowest's.
FAR_LOWER = 0.25


def wider_student_ends_lower(data):
    """Median over seeds of the final train loss: the widest student's is at most 0.25 of the narrowest
    student's (finite runs only; every width needs 2 seeds or more). Also reports whether every seed of
    the widest ends below every seed of the narrowest."""
    reason = lacks(data, runs=["model.width", "final.train_loss"])
    if reason:
        return not_measured(reason)
    runs = data.runs[np.isfinite(data.runs["final.train_loss"].astype(float))]
    widths = sorted(runs["model.width"].unique())
    if len(widths) < 2:
        return not_measured("needs students of two widths or more")
    narrow = runs.loc[runs["model.width"] == widths[0], "final.train_loss"].astype(float)
    wide = runs.loc[runs["model.width"] == widths[-1], "final.train_loss"].astype(float)
    if len(narrow) < 2 or len(wide) < 2:
        return not_measured("needs 2 seeds or more per width")
    ratio = float(wide.median() / narrow.median())
    separated = bool(wide.max() < narrow.min())
    per_width = "; ".join(
        f"width {w}: median {fmt(float(b.median()))} ({fmt(float(b.min()))} to {fmt(float(b.max()))}, {len(b)} seeds)"
        for w, b in ((w, runs.loc[runs["model.width"] == w, "final.train_loss"].astype(float)) for w in widths)
    )
    measured = (
        f"final train loss {per_width}; ratio of medians {fmt(ratio)} (claim: <= {FAR_LOWER}); every seed of width "
        f"{widths[-1]} below every seed of width {widths[0]}: {'yes' if separated else 'no'}"
    )
    return measured, ratio <= FAR_LOWER


# ---------------------------------------------------------------------------------------------
# figures


_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e")


def student_loss_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """Train loss (mean squared error) against the SGD step (log-log), a thin line per seed and a
    thick line for the median over seeds of each student width (``model.width``); right: the same
    for the held-out loss when the sweep has a test split."""
    from matplotlib.figure import Figure

    require_columns(runs, ["run_id", "model.width", "seed"], "runs")
    require_columns(trajectories, ["run_id", "step", "train_loss"], "trajectories")
    test = "test_loss" in trajectories.columns and trajectories["test_loss"].notna().any()
    fig = Figure(figsize=(11.0 if test else 6.0, 4.2), layout="constrained")
    axes = fig.subplots(1, 2 if test else 1, squeeze=False)[0]
    columns = [("train_loss", "train loss")] + ([("test_loss", "test loss")] if test else [])
    by_run = {rid: t.sort_values("step") for rid, t in trajectories.groupby("run_id")}
    teacher = f" (teacher width {runs['problem.teacher_width'].iloc[0]})" if "problem.teacher_width" in runs else ""
    for color, (width, block) in zip(_COLORS * 4, runs.groupby("model.width", sort=True)):
        for ax, (column, title) in zip(axes, columns):
            curves = []
            for run_id in block["run_id"]:
                trajectory = by_run.get(run_id)
                if trajectory is None:
                    continue
                trajectory = trajectory[trajectory["step"] >= 1]
                ax.plot(trajectory["step"], trajectory[column], color=color, alpha=0.35, linewidth=0.8)
                curves.append(trajectory.set_index("step")[column])
            if curves:
                median = pd.concat(curves, axis=1).median(axis=1, skipna=True)
                ax.plot(median.index, median.to_numpy(), color=color, linewidth=2.2,
                        label=f"student width {width} (median of {len(curves)} seeds)")
            ax.set_title(title + teacher, fontsize=9)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("SGD step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def final_loss_figure(runs: pd.DataFrame) -> Figure:
    """Final train loss of every seed (dots) and the median (bar) per student width, log scale."""
    from matplotlib.figure import Figure

    require_columns(runs, ["model.width", "final.train_loss"], "runs")
    fig = Figure(figsize=(4.5, 4.0), layout="constrained")
    ax = fig.subplots()
    widths = sorted(runs["model.width"].unique())
    for position, (color, width) in enumerate(zip(_COLORS * 4, widths)):
        values = runs.loc[runs["model.width"] == width, "final.train_loss"].astype(float).to_numpy()
        ax.scatter(np.full(values.size, position), values, color=color, zorder=3)
        ax.hlines(np.median(values), position - 0.3, position + 0.3, color=color, linewidth=2.5)
    ax.set_xticks(range(len(widths)), [f"width {w}" for w in widths])
    ax.set_yscale("log")
    ax.set_ylabel("final train loss")
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def overparam_figures(data) -> dict:
    return {
        "student_loss": student_loss_figure(data.runs, data.trajectories),
        "final_loss": final_loss_figure(data.runs),
    }


OVERPARAM_LANDSCAPE = Preset(
    name="overparam-landscape",
    description="Teacher with 50 ReLU units: a 100-unit student trained by SGD ends far lower than a 50-unit one (Livni et al. 2014)",
    base=RunConfig(
        problem=ProblemConfig(kind="teacher_student", n=50, teacher_width=50, observations=4000, test_samples=1000),
        model=ModelConfig(kind="two_layer", width=50, activation="relu", init="gaussian", scale=1.0),
        optimizer=OptimizerConfig(name="gd", lr=0.005, batch_size=50),
        train=TrainConfig(max_steps=30_000, tol=0.0, record_points=60),
        metrics=("train_loss", "test_loss"),
    ),
    axes={"model.width": [50, 100], "seed": [0, 1, 2, 3, 4]},
    quick={
        "problem.observations": 1000,
        "problem.test_samples": 200,
        "seed": [0, 1, 2],
        "train.max_steps": 3000,
        "train.record_points": 25,
    },
    figures=overparam_figures,
    claims=(
        Claim(
            "students trained by SGD from random init on a 50-unit teacher: the 100-unit student reaches a far lower "
            "training loss than the 50-unit one (median over seeds at most 1/4), although the 50-unit student can "
            "represent the teacher exactly",
            wider_student_ends_lower,
        ),
    ),
)
