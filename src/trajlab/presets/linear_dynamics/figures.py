"""Figures and tables of the presets of :mod:`trajlab.presets.linear_dynamics`: the dynamics of deep
linear networks.

Three published results, one group of pure functions each (DataFrame in, matplotlib
:class:`~matplotlib.figure.Figure` or DataFrame out, built with ``Figure()`` and never through
pyplot):

* implicit acceleration by depth for l_p regression (Arora, Cohen, Hazan, ICML 2018):
  :func:`acceleration_figure`, :func:`loss_at_steps`;
* linear convergence from a balanced initialization with a positive deficiency margin (Arora,
  Cohen, Golowich, Hu, ICLR 2019): :func:`margin_table`, :func:`margin_probability_figure`,
  :func:`convergence_bound_figure`, :func:`plateau_figure`;
* the closed-form mode dynamics of a two-layer network (Saxe, McClelland, Ganguli, ICLR 2014):
  :func:`mode_table`, :func:`mode_strengths_figure`, :func:`mode_error_figure`.

:func:`trajlab.plots.table_figure` draws any of the tables as a figure. Inputs are the stored
sweep tables (``runs``, ``trajectories``, ``baselines``); closed forms and bounds are evaluated from
stored columns with :mod:`trajlab.theory`, nothing is re-run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from trajlab.report.columns import require_columns as _require
from trajlab.theory.end_to_end import linear_convergence_bound
from trajlab.theory.saxe import initial_strength, mode_strength, rise_time

__all__ = [
    "LP_OPTIMUM_BASELINE",
    "MARGIN_PROBABILITY_BASELINE",
    "acceleration_figure",
    "bound_table",
    "convergence_bound_figure",
    "loss_at_steps",
    "margin_probability_figure",
    "margin_table",
    "method_label",
    "mode_error_figure",
    "mode_strengths_figure",
    "mode_table",
    "plateau_figure",
]

#: ``baseline`` name of the rows holding the minimum of an l_p regression loss (column ``train_loss``).
LP_OPTIMUM_BASELINE = "lp_optimum"
#: ``baseline`` name of the rows holding the closed-form probability of a positive deficiency margin.
MARGIN_PROBABILITY_BASELINE = "margin_probability"

_OPTIMIZER_LABELS = {
    "gd": "GD",
    "momentum": "momentum",
    "nesterov": "Nesterov",
    "adam": "Adam",
    "adagrad": "AdaGrad",
    "adadelta": "AdaDelta",
    "rmsprop": "RMSprop",
    "normalized_gd": "normalized GD",
    "gradient_flow": "gradient flow",
}
_GD_COLORS = ("#08306b", "#2171b5", "#6baed6", "#9ecae1")  # depth 1, 2, 3, 4+: dark to light
_OTHER_COLORS = ("#d94801", "#238b45", "#6a51a3", "#a50f15", "#737373")
_DEPTH_MARKERS = ("o", "s", "^", "D", "v")
_DEPTH_STYLES = ("-", "--", ":", "-.")


# ---------------------------------------------------------------------------------------------
# helpers


def _fmt(value: object) -> str:
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:g}"
    return str(value)


def _present(runs: pd.DataFrame, trajectories: pd.DataFrame) -> pd.DataFrame:
    present = runs[runs["run_id"].isin(trajectories["run_id"])]
    if len(present) == 0:
        raise ValueError("no run in runs has rows in trajectories")
    return present


def _by_run(trajectories: pd.DataFrame, x: str = "step") -> dict[str, pd.DataFrame]:
    return {rid: frame.sort_values(x) for rid, frame in trajectories.groupby("run_id", sort=False)}


def _problem_columns(runs: pd.DataFrame, baselines: pd.DataFrame) -> list[str]:
    return [c for c in runs.columns if c.startswith("problem.") and c in baselines.columns]


def _baseline_rows(baselines: pd.DataFrame | None, name: str) -> pd.DataFrame | None:
    if baselines is None or len(baselines) == 0 or "baseline" not in baselines.columns:
        return None
    rows = baselines[baselines["baseline"] == name]
    return rows if len(rows) else None


def _lp_optimum(runs: pd.DataFrame, baselines: pd.DataFrame | None) -> pd.Series:
    """Per run id, the minimum of its l_p regression loss from the ``lp_optimum`` baseline (NaN if none)."""
    rows = _baseline_rows(baselines, LP_OPTIMUM_BASELINE)
    if rows is None or "train_loss" not in rows.columns:
        return pd.Series(np.nan, index=runs["run_id"].to_numpy())
    keys = _problem_columns(runs, rows)
    table = rows[keys + ["train_loss"]].drop_duplicates(keys).rename(columns={"train_loss": "_optimum"})
    merged = runs[["run_id", *keys]].merge(table, on=keys, how="left") if keys else runs[["run_id"]].assign(
        _optimum=float(table["_optimum"].iloc[0])
    )
    return pd.Series(merged["_optimum"].to_numpy(dtype=float), index=merged["run_id"].to_numpy())


def method_label(run: pd.Series | dict) -> str:
    """'GD, depth 3 (width 1), lr 0.1': optimizer, depth (hidden width when set) and step size of a run."""
    name = _OPTIMIZER_LABELS.get(str(run["optimizer.name"]), str(run["optimizer.name"]))
    label = f"{name}, depth {_fmt(run['model.depth'])}"
    width = run.get("model.width")
    if int(run["model.depth"]) > 1 and width is not None and not pd.isna(width):
        label += f" (width {_fmt(width)})"
    return label + f", lr {_fmt(run['optimizer.lr'])}"


def _method_order(run: pd.Series) -> tuple:
    name = str(run["optimizer.name"])
    return (0 if name == "gd" else 1, name, int(run["model.depth"]), float(run["optimizer.lr"]))


def _method_style(run: pd.Series, others: dict[str, object]) -> dict:
    if run["optimizer.name"] == "gd":
        depth = int(run["model.depth"])
        return dict(color=_GD_COLORS[min(depth, len(_GD_COLORS)) - 1], linestyle="-", linewidth=1.8)
    return dict(color=others[str(run["optimizer.name"])], linestyle="--", linewidth=1.4)


def _value_at_step(traj: pd.DataFrame, column: str, step: int) -> float:
    """The value recorded at the largest recorded step <= ``step`` (NaN if the run stopped before ``step``)."""
    steps = traj["step"].to_numpy()
    if steps.size == 0 or steps[-1] < step:
        return np.nan
    index = np.searchsorted(steps, step, side="right") - 1
    return float(traj[column].to_numpy()[index])


# ---------------------------------------------------------------------------------------------
# implicit acceleration (Arora, Cohen, Hazan 2018)


def acceleration_figure(
    runs: pd.DataFrame,
    trajectories: pd.DataFrame,
    baselines: pd.DataFrame | None = None,
    *,
    x: str = "step",
    excess: bool = True,
) -> Figure:
    """Training loss against step, a line per method, a panel per ``problem.p`` (Arora et al. 2018, Fig. 3).

    y: with ``excess`` and an ``lp_optimum`` baseline for the problem, the excess loss
    loss - min loss on a log axis (the distance to the optimum, which is what differs between
    methods; the loss itself is the mean over samples of |residual|^p); otherwise the loss. Values a
    log axis cannot show (excess <= 0 once a run has reached the optimum to round-off) are left out.
    Lines: GD solid, coloured dark to light by depth; other optimizers dashed. Diverged runs are
    drawn as far as they are finite and labelled "(diverged)".
    """
    if x not in ("step", "t"):
        raise ValueError(f"x must be 'step' or 't', got {x!r}")
    _require(runs, ["run_id", "problem.p", "model.depth", "optimizer.name", "optimizer.lr"], "runs")
    _require(trajectories, ["run_id", x, "train_loss"], "trajectories")
    present = _present(runs, trajectories)
    optimum = _lp_optimum(present, baselines) if excess else pd.Series(np.nan, index=present["run_id"].to_numpy())
    others = {
        name: _OTHER_COLORS[i % len(_OTHER_COLORS)]
        for i, name in enumerate(sorted(set(present["optimizer.name"]) - {"gd"}))
    }
    ps = sorted(present["problem.p"].unique().tolist(), reverse=True)
    fig = Figure(figsize=(6.0 * len(ps), 5.4), layout="constrained")
    axes = fig.subplots(1, len(ps), squeeze=False)[0]
    by_run = _by_run(trajectories, x)
    any_excess = False
    for ax, p in zip(axes, ps):
        block = present[present["problem.p"] == p]
        rows = sorted((row for _, row in block.iterrows()), key=_method_order)
        panel_excess = False
        for run in rows:
            traj = by_run[run["run_id"]]
            xs = traj[x].to_numpy(dtype=float)
            ys = traj["train_loss"].to_numpy(dtype=float)
            best = optimum.get(run["run_id"], np.nan)
            if np.isfinite(best):
                ys = ys - best
                panel_excess = True
            keep = np.isfinite(xs) & np.isfinite(ys) & (ys > 0)
            label = method_label(run) + (" (diverged)" if run.get("status") == "diverged" else "")
            ax.plot(xs[keep], ys[keep], label=label, **_method_style(run, others))
        any_excess |= panel_excess
        ax.set_yscale("log")
        ax.set_xlabel("step" if x == "step" else "time t = step x lr")
        ax.set_ylabel("loss - min loss" if panel_excess else "train loss")
        ax.set_title(f"l_{_fmt(p)} regression" + (f", {len(block)} methods" if len(block) > 1 else ""))
        ax.grid(True, which="major", alpha=0.3)
        # Below each panel: the step sizes differ between panels.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False, fontsize=8)
    if any_excess:
        fig.suptitle("distance to the minimum of the l_p loss (mean over samples of |y - w.x|^p)", fontsize=10)
    return fig


def loss_at_steps(
    runs: pd.DataFrame,
    trajectories: pd.DataFrame,
    baselines: pd.DataFrame | None = None,
    *,
    steps: Sequence[int] = (100, 300, 1000, 3000),
    excess: bool = True,
) -> pd.DataFrame:
    """Loss (or, with ``excess`` and an ``lp_optimum`` baseline, loss - min loss) at fixed step counts.

    Index (``problem.p``, ``method``) with ``method`` from :func:`method_label`; one column per step
    ``step <k>``, holding the value recorded at the largest recorded step <= k (NaN where the run
    stopped before k), plus ``status``. Rows are ordered by p (descending), then GD by depth, then
    the other optimizers. Several runs with the same label (seeds) are reduced to their median.
    """
    _require(runs, ["run_id", "problem.p", "model.depth", "optimizer.name", "optimizer.lr"], "runs")
    _require(trajectories, ["run_id", "step", "train_loss"], "trajectories")
    present = _present(runs, trajectories)
    optimum = _lp_optimum(present, baselines) if excess else pd.Series(np.nan, index=present["run_id"].to_numpy())
    by_run = _by_run(trajectories)
    records = []
    for _, run in present.iterrows():
        traj = by_run[run["run_id"]]
        best = optimum.get(run["run_id"], np.nan)
        shift = best if np.isfinite(best) else 0.0
        record = {"problem.p": run["problem.p"], "method": method_label(run), "_order": _method_order(run)}
        for step in steps:
            record[f"step {int(step)}"] = _value_at_step(traj, "train_loss", int(step)) - shift
        record["status"] = run.get("status", "")
        records.append(record)
    table = pd.DataFrame(records)
    columns = [f"step {int(s)}" for s in steps]
    grouped = table.groupby(["problem.p", "method"], sort=False)
    out = grouped[columns].median()
    out["status"] = grouped["status"].agg(lambda s: ",".join(sorted(set(map(str, s)))))
    order = grouped["_order"].first()
    keys = sorted(out.index, key=lambda k: (-float(k[0]), order[k]))
    return out.loc[keys]


# ---------------------------------------------------------------------------------------------
# balanced initialization and deficiency margin (Arora, Cohen, Golowich, Hu 2019)


def _initial(trajectories: pd.DataFrame, column: str) -> pd.Series:
    first = trajectories[trajectories["step"] == 0]
    return first.drop_duplicates("run_id").set_index("run_id")[column]


def margin_table(runs: pd.DataFrame, trajectories: pd.DataFrame) -> pd.DataFrame:
    """The fraction of initializations with a positive deficiency margin, and how their runs ended.

    Index (``problem.m``, ``model.depth``, ``model.scale``). Columns: ``seeds`` (runs), ``positive``
    (runs whose ``deficiency_margin`` c at step 0 is > 0), ``probability`` = positive / seeds,
    ``median c`` (at step 0, over the positive ones), ``done`` (fraction of runs that reached
    ``train.tol``), ``done | c>0`` and ``done | c<=0`` (the same fraction within each group),
    ``steps | c>0`` and ``steps | c<=0`` (median number of updates made).
    """
    _require(runs, ["run_id", "problem.m", "model.depth", "model.scale", "status", "steps"], "runs")
    _require(trajectories, ["run_id", "step", "deficiency_margin"], "trajectories")
    present = _present(runs, trajectories).copy()
    present["_margin"] = present["run_id"].map(_initial(trajectories, "deficiency_margin")).astype(float)
    present["_positive"] = present["_margin"] > 0
    present["_done"] = present["status"] == "done"

    def summary(block: pd.DataFrame) -> pd.Series:
        positive = block[block["_positive"]]
        negative = block[~block["_positive"]]
        return pd.Series(
            {
                "seeds": len(block),
                "positive": int(block["_positive"].sum()),
                "probability": float(block["_positive"].mean()),
                "median c": float(positive["_margin"].median()) if len(positive) else np.nan,
                "done": float(block["_done"].mean()),
                "done | c>0": float(positive["_done"].mean()) if len(positive) else np.nan,
                "done | c<=0": float(negative["_done"].mean()) if len(negative) else np.nan,
                "steps | c>0": float(positive["steps"].median()) if len(positive) else np.nan,
                "steps | c<=0": float(negative["steps"].median()) if len(negative) else np.nan,
            }
        )

    keys = ["problem.m", "model.depth", "model.scale"]
    rows = {key: summary(block) for key, block in present.groupby(keys, sort=True)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=keys)
    for column in ("seeds", "positive"):
        table[column] = table[column].astype(int)
    return table


def margin_probability_figure(
    runs: pd.DataFrame, trajectories: pd.DataFrame, baselines: pd.DataFrame | None = None
) -> Figure:
    """P(deficiency margin > 0 at init) against init scale: a line per (output dim m, depth).

    Colour: m; marker and line style: depth. The balanced initialization draws its end-to-end matrix
    from the seed alone, so the depths of one m coincide exactly. With ``margin_probability``
    baselines (closed form for m = 1), their values are drawn as a black dotted line.
    """
    table = margin_table(runs, trajectories).reset_index()
    fig = Figure(figsize=(7.4, 4.4), layout="constrained")
    ax = fig.subplots()
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    ms = sorted(table["problem.m"].unique().tolist())
    depths = sorted(table["model.depth"].unique().tolist())
    for i, m in enumerate(ms):
        for j, depth in enumerate(depths):
            block = table[(table["problem.m"] == m) & (table["model.depth"] == depth)].sort_values("model.scale")
            if len(block) == 0:
                continue
            seeds = int(block["seeds"].min())
            ax.plot(
                block["model.scale"], block["probability"], color=cmap(i % cmap.N),
                marker=_DEPTH_MARKERS[j % len(_DEPTH_MARKERS)], markersize=7 - 1.5 * j,
                markerfacecolor="none" if j else None,
                linestyle=_DEPTH_STYLES[j % len(_DEPTH_STYLES)],
                label=f"m = {_fmt(m)}, depth {_fmt(depth)} ({seeds} seeds)",
            )
    rows = _baseline_rows(baselines, MARGIN_PROBABILITY_BASELINE)
    if rows is not None and {"model.scale", "probability"} <= set(rows.columns):
        for m, block in rows.groupby("problem.m"):
            block = block.sort_values("model.scale")
            ax.plot(block["model.scale"], block["probability"], color="black", linestyle=":", linewidth=1.6,
                    label=f"m = {_fmt(m)}: closed form")
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.0)
    ax.axhline(0.5, color="gray", linewidth=0.8, alpha=0.6)
    ax.set_xlabel("init scale (balanced_random: entries of W_e(0) ~ N(0, scale^2 / m))")
    ax.set_ylabel("P(deficiency margin > 0 at init)")
    ax.grid(True, which="major", alpha=0.3)
    fig.legend(loc="outside right upper", frameon=False, fontsize=8)
    return fig


def bound_table(runs: pd.DataFrame, trajectories: pd.DataFrame) -> pd.DataFrame:
    """Trajectory rows of the runs with a positive deficiency margin at init, with the ICLR 2019 bound.

    Columns: ``run_id``, ``step``, ``train_loss``, ``model.depth``, ``model.scale``, ``optimizer.lr``,
    ``margin`` (c, at step 0), ``loss0`` and ``bound`` = loss0 (1 - lr c^(2(N-1)/N))^step
    (:func:`trajlab.theory.end_to_end.linear_convergence_bound`), sorted by run and step.
    """
    _require(runs, ["run_id", "model.depth", "model.scale", "optimizer.lr"], "runs")
    _require(trajectories, ["run_id", "step", "train_loss", "deficiency_margin"], "trajectories")
    present = _present(runs, trajectories)
    margin = _initial(trajectories, "deficiency_margin").astype(float)
    loss0 = _initial(trajectories, "train_loss").astype(float)
    chosen = present[present["run_id"].map(margin) > 0][["run_id", "model.depth", "model.scale", "optimizer.lr"]]
    frame = trajectories[trajectories["run_id"].isin(chosen["run_id"])][["run_id", "step", "train_loss"]]
    frame = frame.merge(chosen, on="run_id")
    frame["margin"] = frame["run_id"].map(margin).to_numpy()
    frame["loss0"] = frame["run_id"].map(loss0).to_numpy()
    bound = np.empty(len(frame))
    for depth, index in frame.groupby("model.depth").indices.items():
        block = frame.iloc[index]
        bound[index] = np.asarray(
            linear_convergence_bound(
                block["loss0"].to_numpy(), block["optimizer.lr"].to_numpy(), block["margin"].to_numpy(),
                int(depth), block["step"].to_numpy(),
            )
        )
    frame["bound"] = bound
    return frame.sort_values(["run_id", "step"])


def convergence_bound_figure(runs: pd.DataFrame, trajectories: pd.DataFrame, *, scale: float | None = None) -> Figure:
    """Measured loss against the linear-rate bound loss(0) (1 - eta c^(2(N-1)/N))^t (ICLR 2019, Theorem 1).

    Only runs whose init has a positive deficiency margin c (stored metric at step 0). A column of
    panels per depth. Top: for three runs of init scale ``scale`` (default: the scale with the
    largest median positive margin) - the smallest, median and largest margin - loss / loss(0)
    (solid) and the bound / loss(0) (dashed, same colour). Bottom: loss / bound for every
    positive-margin run of every scale (thin lines); the theorem says these stay <= 1 (black line).
    """
    frame = bound_table(runs, trajectories)
    if len(frame) == 0:
        raise ValueError("no run has a positive deficiency margin at init")
    firsts = frame.drop_duplicates("run_id")
    if scale is None:
        scale = float(firsts.groupby("model.scale")["margin"].median().idxmax())
    depths = sorted(frame["model.depth"].unique().tolist())
    fig = Figure(figsize=(4.2 * len(depths) + 0.6, 7.0), layout="constrained")
    axes = fig.subplots(2, len(depths), squeeze=False, sharex="col")
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    for col, depth in enumerate(depths):
        top, bottom = axes[0, col], axes[1, col]
        block = frame[frame["model.depth"] == depth]
        chosen = firsts[(firsts["model.depth"] == depth) & np.isclose(firsts["model.scale"], scale)]
        chosen = chosen.sort_values("margin")
        if len(chosen):
            picks = chosen.iloc[sorted({0, len(chosen) // 2, len(chosen) - 1})]
            for k, (_, pick) in enumerate(picks.iterrows()):
                traj = block[block["run_id"] == pick["run_id"]]
                color = cmap(0.85 * k / max(len(picks) - 1, 1))
                steps = traj["step"].to_numpy(dtype=float)
                keep = steps > 0
                top.plot(steps[keep], (traj["train_loss"] / traj["loss0"]).to_numpy()[keep], color=color,
                         label=f"c = {pick['margin']:.3g}: measured")
                top.plot(steps[keep], (traj["bound"] / traj["loss0"]).to_numpy()[keep], color=color,
                         linestyle="--", label=f"c = {pick['margin']:.3g}: bound")
        top.set_title(f"depth {_fmt(depth)}, init scale {_fmt(scale)}")
        top.set_yscale("log")
        top.set_xscale("log")
        top.set_ylabel("loss / loss(0)")
        top.grid(True, which="major", alpha=0.3)
        top.legend(fontsize=7, frameon=False, loc="lower left")
        worst = 0.0
        for rid, traj in block.groupby("run_id"):
            steps = traj["step"].to_numpy(dtype=float)
            ratio = (traj["train_loss"] / traj["bound"]).to_numpy()
            keep = (steps > 0) & np.isfinite(ratio) & (ratio > 0)
            bottom.plot(steps[keep], ratio[keep], color="tab:blue", alpha=0.25, linewidth=0.8)
            if keep.any():
                worst = max(worst, float(ratio[keep].max()))
        bottom.axhline(1.0, color="black", linewidth=1.2)
        bottom.set_yscale("log")
        bottom.set_xscale("log")
        bottom.set_xlabel("step")
        bottom.set_ylabel("measured loss / bound")
        bottom.set_title(f"{block['run_id'].nunique()} runs with c > 0, max ratio {worst:.3g}", fontsize=9)
        bottom.grid(True, which="major", alpha=0.3)
    return fig


def _normalized_losses(runs: pd.DataFrame, trajectories: pd.DataFrame) -> pd.DataFrame:
    """loss / loss(0), one column per run, one row per recorded step, carried forward after a run stops."""
    table = trajectories[trajectories["run_id"].isin(runs["run_id"])].pivot_table(
        index="step", columns="run_id", values="train_loss"
    )
    table = table.sort_index().ffill()
    return table / table.iloc[0]


def plateau_figure(runs: pd.DataFrame, trajectories: pd.DataFrame, *, scales: Sequence[float] | None = None) -> Figure:
    """loss / loss(0) against step from near-zero init: a panel per output dim m, a line per depth.

    For each init scale in ``scales`` (default: the smallest and the largest in ``runs``; solid for
    the smallest, dashed for the others) and depth, the median over seeds (runs that stopped at
    ``train.tol`` carry their last value forward), with the 10%-90% band for the smallest scale.
    Near zero the origin is a saddle of order N; the deeper the network, the longer the loss stays
    flat (Arora et al. 2019, Section 5; Saxe et al. 2014).
    """
    _require(runs, ["run_id", "problem.m", "model.depth", "model.scale"], "runs")
    _require(trajectories, ["run_id", "step", "train_loss"], "trajectories")
    present = _present(runs, trajectories)
    all_scales = sorted(present["model.scale"].unique().tolist())
    if scales is None:
        scales = [all_scales[0]] + ([all_scales[-1]] if len(all_scales) > 1 else [])
    scales = list(scales)
    ms = sorted(present["problem.m"].unique().tolist())
    depths = sorted(present["model.depth"].unique().tolist())
    fig = Figure(figsize=(4.6 * len(ms) + 2.2, 4.0), layout="constrained")
    axes = fig.subplots(1, len(ms), squeeze=False, sharey=True)[0]
    from matplotlib import colormaps

    cmap = colormaps["plasma"]
    colors = {d: cmap(0.8 * i / max(len(depths) - 1, 1)) for i, d in enumerate(depths)}
    for ax, m in zip(axes, ms):
        for k, scale in enumerate(scales):
            for depth in depths:
                block = present[(present["problem.m"] == m) & (present["model.depth"] == depth)
                                & np.isclose(present["model.scale"], scale)]
                if len(block) == 0:
                    continue
                table = _normalized_losses(block, trajectories)
                steps = table.index.to_numpy(dtype=float)
                keep = steps > 0
                median = table.median(axis=1).to_numpy()
                ax.plot(steps[keep], median[keep], color=colors[depth], linestyle="-" if k == 0 else "--",
                        label=f"depth {_fmt(depth)}, scale {_fmt(scale)}")
                if k == 0 and table.shape[1] > 1:
                    low, high = table.quantile(0.1, axis=1).to_numpy(), table.quantile(0.9, axis=1).to_numpy()
                    ax.fill_between(steps[keep], low[keep], high[keep], color=colors[depth], alpha=0.15, linewidth=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"output dim m = {_fmt(m)}")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("loss / loss(0)  (median over seeds)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", frameon=False, fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------------
# Saxe, McClelland, Ganguli 2014


def _target_values(run: pd.Series) -> np.ndarray:
    raw = run["problem.target_singular_values"]
    if isinstance(raw, str):
        values = [float(v) for v in raw.split(",") if v.strip()]
    else:
        values = [float(v) for v in (raw if raw is not None else [])]
    return np.sort(np.asarray(values, float))[::-1]


def _crossing_time(t: np.ndarray, u: np.ndarray, level: float) -> float:
    """First time at which u reaches ``level`` (linear interpolation between records); NaN if never."""
    above = np.flatnonzero(u >= level)
    if above.size == 0:
        return np.nan
    i = above[0]
    if i == 0:
        return float(t[0])
    return float(np.interp(level, [u[i - 1], u[i]], [t[i - 1], t[i]]))


def _mode_rows(run: pd.Series, traj: pd.DataFrame) -> list[dict]:
    """Per mode of one run: measured curve, effective u0 from the half-time, closed form and errors."""
    values = _target_values(run)
    t = traj["t"].to_numpy(dtype=float)
    rows = []
    for r, s in enumerate(values):
        column = f"mode_{r}"
        if column not in traj.columns:
            break
        u = traj[column].to_numpy(dtype=float)
        t_half = _crossing_time(t, u, s / 2)
        u0_effective = float(initial_strength(s, t_half, s / 2)) if np.isfinite(t_half) else np.nan
        closed = np.asarray(mode_strength(t, s, u0_effective)) if np.isfinite(u0_effective) else np.full_like(t, np.nan)
        u0_measured = float(u[0])
        from_measured = (
            np.asarray(mode_strength(t, s, u0_measured)) if u0_measured > 0 else np.full_like(t, np.nan)
        )
        rise = _crossing_time(t, u, 0.9 * s) - _crossing_time(t, u, 0.1 * s)
        rows.append(
            dict(
                run_id=run["run_id"], mode=r, s=s, t=t, u=u, closed=closed,
                u0_measured=u0_measured, u0_effective=u0_effective, t_half=t_half,
                rise_time=rise, rise_time_theory=float(rise_time(s)),
                max_error=float(np.nanmax(np.abs(u - closed)) / s) if np.isfinite(u0_effective) else np.nan,
                max_error_measured_u0=float(np.nanmax(np.abs(u - from_measured)) / s) if u0_measured > 0 else np.nan,
            )
        )
    return rows


def mode_table(runs: pd.DataFrame, trajectories: pd.DataFrame) -> pd.DataFrame:
    """Per run and mode: measured vs closed-form dynamics of Saxe et al. (2014).

    Index (``model.scale``, ``seed``, ``mode``). Columns: ``s`` (the target's singular value),
    ``u0 measured`` (u_r^T W(0) v_r), ``u0 effective`` (the u0 whose closed form passes through the
    measured half-time, :func:`trajlab.theory.saxe.initial_strength`), ``t half`` (first time u >= s/2),
    ``rise 10-90`` and ``rise 10-90 theory`` (= ln(81) / (2 s), independent of u0),
    ``max error`` = max_t |u(t) - u_closed(t)| / s with the effective u0 and
    ``max error, measured u0`` the same with u0 measured (NaN where it is <= 0, outside the closed
    form's domain).
    """
    _require(runs, ["run_id", "problem.target_singular_values", "model.scale", "seed"], "runs")
    _require(trajectories, ["run_id", "t", "mode_0"], "trajectories")
    present = _present(runs, trajectories)
    by_run = _by_run(trajectories, "t")
    records = []
    for _, run in present.iterrows():
        for row in _mode_rows(run, by_run[run["run_id"]]):
            records.append(
                {
                    "model.scale": run["model.scale"], "seed": int(run["seed"]), "mode": row["mode"], "s": row["s"],
                    "u0 measured": row["u0_measured"], "u0 effective": row["u0_effective"],
                    "t half": row["t_half"], "rise 10-90": row["rise_time"],
                    "rise 10-90 theory": row["rise_time_theory"], "max error": row["max_error"],
                    "max error, measured u0": row["max_error_measured_u0"],
                }
            )
    table = pd.DataFrame(records)
    return table.set_index(["model.scale", "seed", "mode"]).sort_index()


def _first_run_per_scale(present: pd.DataFrame) -> list[pd.Series]:
    order = [c for c in ("model.scale", "seed", "run_id") if c in present.columns]
    present = present.sort_values(order, ascending=[False] + [True] * (len(order) - 1))
    return [block.iloc[0] for _, block in present.groupby("model.scale", sort=False)]


def _mode_panels(runs: pd.DataFrame, trajectories: pd.DataFrame, height: float):
    """A figure with a panel per init scale (one run each) and, per panel, the run and its
    :func:`_mode_rows`, each row with a ``color`` (viridis by mode)."""
    from matplotlib import colormaps

    _require(runs, ["run_id", "problem.target_singular_values", "model.scale"], "runs")
    _require(trajectories, ["run_id", "t", "mode_0"], "trajectories")
    picks = _first_run_per_scale(_present(runs, trajectories))
    by_run = _by_run(trajectories, "t")
    fig = Figure(figsize=(4.4 * len(picks) + 2.0, height), layout="constrained")
    axes = fig.subplots(1, len(picks), squeeze=False, sharey=True)[0]
    cmap = colormaps["viridis"]
    panels = []
    for ax, run in zip(axes, picks):
        rows = _mode_rows(run, by_run[run["run_id"]])
        for row in rows:
            row["color"] = cmap(0.85 * row["mode"] / max(len(rows) - 1, 1))
        panels.append((ax, run, rows))
    return fig, panels


def mode_strengths_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """Mode strengths u_r(t) = u_r^T W(t) v_r against t: simulated (solid) and closed form (dashed).

    A panel per init scale (largest first), showing one run (the smallest seed); a colour per mode
    of the target, labelled with its singular value s. The closed form of Saxe et al. (2014) is
    drawn from the effective initial strength (:func:`mode_table`): the random init is not aligned
    with the target's modes, so u_r^T W(0) v_r is not the u0 the modes follow after aligning.
    """
    fig, panels = _mode_panels(runs, trajectories, height=4.0)
    axes = [ax for ax, _, _ in panels]
    for ax, run, rows in panels:
        for row in rows:
            color = row["color"]
            label = f"mode {row['mode'] + 1}, s = {_fmt(row['s'])}"
            ax.plot(row["t"], row["u"], color=color, linewidth=2.0, label=label)
            if np.isfinite(row["u0_effective"]):
                ax.plot(row["t"], row["closed"], color="black", linestyle="--", linewidth=1.0,
                        label="closed form (Saxe et al. 2014)")
        title = f"init scale {_fmt(run['model.scale'])}"
        if "seed" in run.index:
            title += f", seed {_fmt(run['seed'])}"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("time t = step x lr")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("mode strength u_r^T W v_r")
    seen: dict[str, object] = {}
    for handle, label in zip(*axes[0].get_legend_handles_labels()):
        seen.setdefault(label, handle)
    fig.legend(list(seen.values()), list(seen.keys()), loc="outside right upper", frameon=False, fontsize=8)
    return fig


def mode_error_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """(u_r(t) - u_closed(t)) / s_r against t, a line per mode, a panel per init scale (one run each)."""
    fig, panels = _mode_panels(runs, trajectories, height=3.6)
    axes = [ax for ax, _, _ in panels]
    for ax, run, rows in panels:
        for row in rows:
            color = row["color"]
            ax.plot(row["t"], (row["u"] - row["closed"]) / row["s"], color=color,
                    label=f"mode {row['mode'] + 1}, s = {_fmt(row['s'])}")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_title(f"init scale {_fmt(run['model.scale'])}", fontsize=10)
        ax.set_xlabel("time t = step x lr")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("(simulated - closed form) / s")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", frameon=False, fontsize=8)
    return fig
