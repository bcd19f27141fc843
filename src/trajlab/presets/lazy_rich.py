"""Preset ``lazy-rich``: width and output scale decide between the lazy (kernel) and the rich (feature
learning) regime (Jason Lee's slides 26-28; Du, Zhai, Poczos, Singh, ICLR 2019; Chizat, Oyallon,
Bach, "On lazy training in differentiable programming", NeurIPS 2019; Lee et al., NeurIPS 2019).

Model: ``model.kind=ntk_two_layer``, f(x) = alpha / sqrt(m) sum_r a_r relu(w_r . x) with the
second layer a_r = +-1 FIXED (Du et al. 2019; only W is trained), symmetric pairs of units so that
f(x; w(0)) = 0, w_r(0) ~ N(0, I_d), loss (1 / alpha^2) (1 / 2n) sum_i (f(x_i) - y_i)^2, full-batch GD
with step 1, float64. Every run carries its linearization at init (``linearization`` metric,
:mod:`trajlab.metrics.linearization`), trained by the same GD beside it. See
:mod:`trajlab.families.ntk_networks` for the model, the empirical NTK and the kernel regression
closed form.

Part 1, width (alpha = 1; ``problem.link=relu``: y = relu(sqrt(d) x_1), x uniform on S^7, n = 32
train and 128 test inputs; 2000 steps, quick 1000): widths m = 64, 128, ..., 8192 (quick: 64, 256,
1024, 4096). Claims: the largest per-unit movement max_r ||w_r(T) - w_r(0)|| falls like m^(-1/2)
(Du et al. 2019, Lemma 3.3 / Theorem 3.2: ||w_r(t) - w_r(0)|| <= 4 sqrt(n) ||y - f(0)|| / (sqrt(m)
lambda_0)); the largest distance along training between the network's and its linearization's test
predictions falls with m (Lee et al. 2019, Theorem 2.1: O(m^(-1/2))); the train and test mean
squared errors along training approach those of kernel regression with the empirical NTK at init
(closed form for GD with step eta on this loss: f_k = f(0) + (I - (I - eta Theta / n)^k)(y - f(0))
on the train set and its kernel-weighted extension on the test set). Also reported: the
gradient-flow form with exp(-Theta t / n), t = k eta, whose gap stops falling near 6e-3 because GD
with step 1 is not small-step on the top eigen-directions (eta lambda_max / n is about 0.3). The
closed form is computed from each run's init, recomputed host-side (:func:`trajlab.init_params`),
with numpy (eigendecomposition of Theta), independently of the engine; the gap is the largest
difference over the recorded times between the network's MSE and kernel regression's, relative to
the network's MSE at init.

Part 2, output scale (m = 512; ``problem.link=he2``: y = He_2(sqrt(d) x_1) = (d x_1^2 - 1) /
sqrt(2), d = 16, n = 128 train and 500 test inputs; 4000 steps, quick 2000): alpha from 0.03 (about
1/sqrt(m), the mean-field scale: rich) to 30 (lazy); quick: 0.03 and 30. Claims: large alpha is
lazy (relative weight change ||W - W0|| / ||W0|| <= 0.05, the first layer's alignment with the
target direction unchanged) and small alpha is rich (relative change >= 0.5, alignment up by >=
0.2); on this target, which has no linear part (a rotation-invariant kernel needs about d^2 = 256
samples), the rich network has the lower test error (medians over seeds).

Measured with ``trajlab run lazy-rich --quick`` (float64, seeds 0 and 1; 17 s user + 1 s sys of CPU
on a shared 2-core machine), all five claims hold: per-unit movement 1.26, 0.521, 0.252, 0.129 for
m = 64, 256, 1024, 4096 (slope -0.544); largest test distance to the linearization 0.079, 0.023,
0.0075, 0.0030 (slope -0.79); kernel-regression gap (GD form) 0.0325, 0.0052, 0.0021, 0.0013
(flow form 0.032, 0.0053, 0.0056, 0.0059); alpha = 0.03 moves W by 5.7 times its init norm (alignment
with u up by 0.44) and reaches test MSE 0.225 (train 0.018), alpha = 30 moves it by 0.6% (alignment
change 3e-5) and reaches test MSE 0.422 (train 0.0025): the rich regime generalizes better here.
Before the quick sizes were cut for the CPU budget (alpha part 4000 steps, 30 records) the same
claims held with test MSE 0.194 (rich) against 0.402 (lazy).

Full (``trajlab run lazy-rich``, 45 runs, seeds 0-2; 142 s user + 9 s sys of CPU on the loaded
shared machine), all five claims hold: per-unit movement 1.09, 0.755, 0.511, 0.356, 0.261, 0.181,
0.130, 0.092 for m = 64 ... 8192 (slope -0.506); largest test distance to the linearization 0.065
to 0.0021 (slope -0.71, decreasing at every width); kernel-regression gap (GD form) 0.036 at m = 64
to 0.00089 at m = 8192 (ratio 0.025; the flow form stays at 0.006 from m = 512 on); along alpha =
0.03, 0.1, 0.3, 1, 3, 10, 30 the relative weight change is 6.5, 1.9, 0.62, 0.19, 0.061, 0.018,
0.006, the alignment gain 0.44, 0.40, 0.22, 0.037, 0.004, 3e-4, 3e-5 and the test MSE 0.191, 0.205,
0.283, 0.392, 0.413, 0.416, 0.416: monotone from rich to lazy, and the rich end generalizes best.

Figures: :func:`width_figure` (movement, linearization distance, kernel-regression gap against m,
log-log with the fitted slopes) and :func:`alpha_figure` (relative weight change, alignment and
test MSE against alpha).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig
from trajlab.presets.claims import by_run, fmt, lacks, not_measured
from trajlab.presets.preset import Claim, Preset

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS = (
    "train_loss",
    "train_mse",
    "test_mse",
    "max_neuron_movement",
    "relative_weight_change",
    "feature_alignment",
    "linearization",
)

#: Part 1 (width) and part 2 (output scale) are told apart by the problem's link.
WIDTH_LINK, ALPHA_LINK = "relu", "he2"
WIDTH_PROBLEM = {"problem.dim": 8, "problem.observations": 32, "problem.test_samples": 128, "problem.link": WIDTH_LINK}
ALPHA_PROBLEM = {"problem.dim": 16, "problem.observations": 128, "problem.test_samples": 500, "problem.link": ALPHA_LINK}
WIDTHS, QUICK_WIDTHS = (64, 128, 256, 512, 1024, 2048, 4096, 8192), (64, 256, 1024, 4096)
ALPHAS, QUICK_ALPHAS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0), (0.03, 30.0)
ALPHA_WIDTH = 512
WIDTH_STEPS, ALPHA_STEPS = 2000, 4000
QUICK_WIDTH_STEPS, QUICK_ALPHA_STEPS = 1000, 2000

#: Claim thresholds.
SLOPE, SLOPE_TOLERANCE = -0.5, 0.1
LINEAR_SLOPE_MAX = -0.25
KERNEL_GAP_FACTOR = 0.1  # the widest run's kernel-regression gap is at most this fraction of the narrowest's
LAZY_CHANGE, RICH_CHANGE, RICH_ALIGNMENT_GAIN, LAZY_ALIGNMENT_CHANGE = 0.05, 0.5, 0.2, 0.05


def _variants(widths, alphas, width_steps: int, alpha_steps: int) -> tuple[dict, ...]:
    width_part = tuple({**WIDTH_PROBLEM, "model.width": m, "model.alpha": 1.0, "train.max_steps": width_steps}
                       for m in widths)
    alpha_part = tuple({**ALPHA_PROBLEM, "model.width": ALPHA_WIDTH, "model.alpha": a, "train.max_steps": alpha_steps}
                       for a in alphas)
    return width_part + alpha_part


@dataclass(frozen=True)
class VariantsPreset(Preset):
    """A preset whose variants differ under ``--quick`` (``quick_variants``)."""

    quick_variants: tuple[dict, ...] = ()

    def configs(self, fixed=None, axes=None, quick: bool = False):
        if quick and self.quick_variants:
            return dataclasses.replace(self, variants=self.quick_variants, quick_variants=()).configs(fixed, axes, quick)
        return super().configs(fixed, axes, quick)


# ---------------------------------------------------------------------------------------------
# measurements


def _part(data, link: str) -> pd.DataFrame:
    runs = data.runs
    return runs[(runs["problem.link"] == link) & (runs["status"] != "diverged")]


def slope(x, y) -> float:
    """Least-squares slope of log y against log x."""
    x, y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(x, y, 1)[0])


def _per_width(runs: pd.DataFrame, column: str) -> pd.Series:
    return runs.groupby("model.width")[column].median().sort_index()


def movement_slope(data):
    """Slope of log(max_r ||w_r(T) - w_r(0)||) against log m (medians over seeds), alpha = 1 runs."""
    reason = lacks(data, runs=["problem.link", "model.width", "final.max_neuron_movement"])
    if reason:
        return not_measured(reason)
    runs = _part(data, WIDTH_LINK)
    per = _per_width(runs, "final.max_neuron_movement")
    if len(per) < 3:
        return not_measured("needs 3 widths or more")
    fitted = slope(per.index, per.to_numpy())
    values = ", ".join(f"m={m}: {fmt(v)}" for m, v in per.items())
    measured = f"slope {fmt(fitted)} (claim: {SLOPE} +- {SLOPE_TOLERANCE}); {values}"
    return measured, abs(fitted - SLOPE) <= SLOPE_TOLERANCE


def _largest(data, runs: pd.DataFrame, column: str) -> pd.Series:
    trajectories = data.trajectories[data.trajectories["run_id"].isin(runs["run_id"])]
    largest = trajectories.groupby("run_id")[column].max()
    return runs.assign(value=runs["run_id"].map(largest))


def linearization_distance_falls(data):
    """max over t of the RMS distance between the network's and its linearization's test
    predictions: decreasing in m (medians over seeds) with log-log slope <= -0.25."""
    reason = lacks(data, runs=["problem.link", "model.width"], trajectories=["run_id", "linearization_test_distance"])
    if reason:
        return not_measured(reason)
    runs = _largest(data, _part(data, WIDTH_LINK), "linearization_test_distance")
    per = _per_width(runs, "value")
    if len(per) < 3:
        return not_measured("needs 3 widths or more")
    fitted = slope(per.index, per.to_numpy())
    decreasing = bool(np.all(np.diff(per.to_numpy()) < 0))
    values = ", ".join(f"m={m}: {fmt(v)}" for m, v in per.items())
    measured = f"slope {fmt(fitted)} (claim: <= {LINEAR_SLOPE_MAX}, decreasing: {'yes' if decreasing else 'no'}); {values}"
    return measured, decreasing and fitted <= LINEAR_SLOPE_MAX


def _config(data, run_id: str):
    from trajlab.config import from_flat

    flat = data.manifest.get("configs", {}).get(run_id)
    if flat is None:
        return None
    return from_flat(flat)


def kernel_regression_curves(config, times, lr: float | None):
    """(train MSE, test MSE) of kernel regression with the empirical NTK of ``config``'s init at each
    time in ``times`` (GD form with step ``lr``, gradient-flow form when None); numpy float64."""
    return _kernel_regression_curves(config, tuple(float(t) for t in times), lr)


@lru_cache(maxsize=64)
def _kernel_regression_curves(config, times, lr):
    import trajlab
    from trajlab.families.ntk_networks import empirical_ntk, ntk_regression, output_signs
    from trajlab.problems.registry import make_data

    plain = dataclasses.replace(config, metrics=("train_loss",))
    params = trajlab.init_params(plain)
    data = make_data(config.problem)
    hidden = np.asarray(params.hidden, np.float64)
    signs = output_signs(config.model.width, config.model.symmetric)
    if params.output is not None:
        signs = np.asarray(params.output, np.float64)
    x, xt = np.asarray(data.inputs, np.float64), np.asarray(data.test_inputs, np.float64)
    y, yt = np.asarray(data.outputs, np.float64), np.asarray(data.test_outputs, np.float64)
    alpha, width = config.model.alpha, config.model.width
    f0 = alpha / math.sqrt(width) * np.maximum(x @ hidden.T, 0) @ signs
    f0t = alpha / math.sqrt(width) * np.maximum(xt @ hidden.T, 0) @ signs
    theta = empirical_ntk(hidden, signs, x, x, config.model.train_output)
    theta_st = empirical_ntk(hidden, signs, xt, x, config.model.train_output)
    train, test = [], []
    for t in times:
        ft, fs = ntk_regression(theta, theta_st, f0, f0t, y, float(t), lr)
        train.append(np.mean((ft - y) ** 2))
        test.append(np.mean((fs - yt) ** 2) if len(yt) else math.nan)
    return np.asarray(train), np.asarray(test)


def kernel_regression_gaps(data) -> pd.DataFrame:
    """Per run of part 1: the largest gap over the recorded times between the network's MSE and
    kernel regression's, relative to the network's MSE at init (train and test; GD and flow forms)."""
    runs = _part(data, WIDTH_LINK)
    trajectories = by_run(data.trajectories)
    rows = []
    for _, run in runs.iterrows():
        config = _config(data, run["run_id"])
        trajectory = trajectories.get(run["run_id"])
        if config is None or trajectory is None:
            continue
        times = trajectory["t"].to_numpy(float)
        lr = float(config.optimizer.lr)
        row = {"run_id": run["run_id"], "model.width": int(run["model.width"]), "seed": int(run["seed"])}
        for form, step in (("gd", lr), ("flow", None)):
            train, test = kernel_regression_curves(config, times, step)
            for split, curve in (("train", train), ("test", test)):
                network = trajectory[f"{split}_mse"].to_numpy(float)
                row[f"{form}_{split}_gap"] = float(np.max(np.abs(network - curve)) / network[0])
        rows.append(row)
    return pd.DataFrame(rows)


def approaches_kernel_regression(data):
    """GD-form kernel regression gap max(train gap, test gap) (medians over seeds): decreasing in m,
    and the widest run's at most 0.1 of the narrowest's."""
    reason = lacks(data, runs=["problem.link", "model.width", "seed"], trajectories=["run_id", "t", "train_mse", "test_mse"])
    if reason:
        return not_measured(reason)
    gaps = kernel_regression_gaps(data)
    if gaps.empty or gaps["model.width"].nunique() < 3:
        return not_measured("needs 3 widths or more with their configs in the manifest")
    gaps = gaps.assign(gap=np.maximum(gaps["gd_train_gap"], gaps["gd_test_gap"]),
                       flow=np.maximum(gaps["flow_train_gap"], gaps["flow_test_gap"]))
    per = gaps.groupby("model.width")[["gap", "flow"]].median().sort_index()
    decreasing = bool(np.all(np.diff(per["gap"].to_numpy()) < 0))
    ratio = float(per["gap"].iloc[-1] / per["gap"].iloc[0])
    values = ", ".join(f"m={m}: {fmt(g)} (flow form {fmt(f)})" for m, g, f in per.itertuples())
    measured = (f"relative MSE gap to kernel regression with the init's NTK, GD form: {values}; widest/narrowest "
                f"{fmt(ratio)} (claim: <= {KERNEL_GAP_FACTOR}, decreasing: {'yes' if decreasing else 'no'})")
    return measured, decreasing and ratio <= KERNEL_GAP_FACTOR


def _alpha_table(data) -> pd.DataFrame:
    runs = _part(data, ALPHA_LINK)
    first = data.trajectories.sort_values("step").groupby("run_id")["feature_alignment"].first()
    return runs.assign(initial_alignment=runs["run_id"].map(first))


def lazy_and_rich(data):
    """Largest alpha: relative weight change <= 0.05 and alignment change <= 0.05; smallest alpha:
    relative weight change >= 0.5 and alignment gain >= 0.2 (medians over seeds)."""
    reason = lacks(data, runs=["problem.link", "model.alpha", "final.relative_weight_change", "final.feature_alignment",
                               "final.linearization_test_distance"],
                   trajectories=["run_id", "step", "feature_alignment"])
    if reason:
        return not_measured(reason)
    runs = _alpha_table(data)
    if runs["model.alpha"].nunique() < 2:
        return not_measured("needs two output scales or more")
    runs = runs.assign(gain=runs["final.feature_alignment"] - runs["initial_alignment"])
    per = runs.groupby("model.alpha")[["final.relative_weight_change", "gain", "final.linearization_test_distance"]].median()
    small, large = per.iloc[0], per.iloc[-1]
    rich = small["final.relative_weight_change"] >= RICH_CHANGE and small["gain"] >= RICH_ALIGNMENT_GAIN
    lazy = large["final.relative_weight_change"] <= LAZY_CHANGE and abs(large["gain"]) <= LAZY_ALIGNMENT_CHANGE
    text = "; ".join(
        f"alpha={fmt(a)}: ||W-W0||/||W0|| {fmt(r['final.relative_weight_change'])}, alignment change {fmt(r['gain'])}, "
        f"test distance to linearization {fmt(r['final.linearization_test_distance'])}"
        for a, r in per.iterrows()
    )
    return text, bool(rich and lazy)


def rich_generalizes_better(data):
    """Median test MSE of the smallest alpha (rich) below that of the largest (lazy)."""
    reason = lacks(data, runs=["problem.link", "model.alpha", "final.test_mse", "final.train_mse"])
    if reason:
        return not_measured(reason)
    runs = _part(data, ALPHA_LINK)
    if runs["model.alpha"].nunique() < 2:
        return not_measured("needs two output scales or more")
    per = runs.groupby("model.alpha")[["final.test_mse", "final.train_mse"]].median().sort_index()
    text = "; ".join(f"alpha={fmt(a)}: test MSE {fmt(r['final.test_mse'])} (train {fmt(r['final.train_mse'])})"
                     for a, r in per.iterrows())
    rich, lazy = per["final.test_mse"].iloc[0], per["final.test_mse"].iloc[-1]
    better = "rich" if rich < lazy else "lazy"
    return f"{better} generalizes better: {text}", bool(rich < lazy)


# ---------------------------------------------------------------------------------------------
# figures


def width_figure(data) -> Figure:
    """Against the width m (log-log): the largest per-unit movement, the largest test distance to
    the linearization and the kernel-regression gap (GD form), medians over seeds with the fitted
    slopes; dashed: m^(-1/2) through the first point."""
    from matplotlib.figure import Figure

    runs = _part(data, WIDTH_LINK)
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    movement = _per_width(runs, "final.max_neuron_movement")
    distance = _per_width(_largest(data, runs, "linearization_test_distance"), "value")
    gaps = kernel_regression_gaps(data)
    panels = [(movement, "max_r ||w_r(T) - w_r(0)||"), (distance, "max_t test RMS |f - f_lin|")]
    if not gaps.empty:
        gap = gaps.assign(gap=np.maximum(gaps["gd_train_gap"], gaps["gd_test_gap"])).groupby("model.width")["gap"].median()
        panels.append((gap, "relative MSE gap to NTK regression"))
    for ax, (series, title) in zip(axes, panels):
        m = series.index.to_numpy(float)
        ax.loglog(m, series.to_numpy(), "o-", label=f"slope {fmt(slope(m, series.to_numpy()))}" if len(m) > 1 else None)
        ax.loglog(m, series.iloc[0] * (m / m[0]) ** -0.5, "k--", linewidth=0.8, label="m^-1/2")
        ax.set(xlabel="width m", title=title)
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    return fig


def alpha_figure(data) -> Figure:
    """Against the output scale alpha (log x): relative weight change, alignment of the first layer
    with the target direction (init and final) and test MSE (final), one dot per seed."""
    from matplotlib.figure import Figure

    runs = _alpha_table(data)
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    axes[0].loglog(runs["model.alpha"], runs["final.relative_weight_change"], "o")
    axes[0].set(title="||W(T) - W0|| / ||W0||")
    axes[1].semilogx(runs["model.alpha"], runs["initial_alignment"], "o", label="init")
    axes[1].semilogx(runs["model.alpha"], runs["final.feature_alignment"], "o", label="final")
    axes[1].set(title="||W u|| / ||W||_F")
    axes[1].legend(fontsize=8)
    axes[2].semilogx(runs["model.alpha"], runs["final.test_mse"], "o")
    axes[2].set(title="test MSE")
    for ax in axes:
        ax.set_xlabel("output scale alpha")
        ax.grid(True, alpha=0.3)
    return fig


def lazy_rich_figures(data) -> dict:
    out = {}
    if len(_part(data, WIDTH_LINK)):
        out["width_scaling"] = width_figure(data)
    if len(_part(data, ALPHA_LINK)):
        out["alpha_regimes"] = alpha_figure(data)
    return out


LAZY_RICH = VariantsPreset(
    name="lazy-rich",
    description="Two-layer ReLU nets (NTK param.): width -> lazy (1/sqrt(m) movement, NTK regression); output scale alpha -> lazy/rich",
    base=RunConfig(
        problem=ProblemConfig(kind="single_index", **{k.split(".")[1]: v for k, v in WIDTH_PROBLEM.items()}),
        model=ModelConfig(kind="ntk_two_layer", width=256, alpha=1.0, train_output=False, symmetric=True, scale=1.0),
        optimizer=OptimizerConfig(name="gd", lr=1.0),
        train=TrainConfig(max_steps=WIDTH_STEPS, tol=0.0, record_points=30, x64=True),
        metrics=METRICS,
    ),
    axes={"seed": [0, 1, 2]},
    variants=_variants(WIDTHS, ALPHAS, WIDTH_STEPS, ALPHA_STEPS),
    quick_variants=_variants(QUICK_WIDTHS, QUICK_ALPHAS, QUICK_WIDTH_STEPS, QUICK_ALPHA_STEPS),
    quick={"seed": [0, 1], "train.record_points": 20},
    figures=lazy_rich_figures,
    table_metrics=("train_mse", "test_mse", "max_neuron_movement", "relative_weight_change", "feature_alignment"),
    claims=(
        Claim("alpha = 1, widths m: the largest per-unit movement max_r ||w_r(T) - w_r(0)|| falls like m^(-1/2) "
              "(log-log slope -0.5 +- 0.1; Du et al. 2019)", movement_slope),
        Claim("alpha = 1: the run stays within a shrinking distance of its linearization at init (max over t of the "
              "test-prediction RMS distance decreasing in m, slope <= -0.25; Lee et al. 2019)",
              linearization_distance_falls),
        Claim("alpha = 1: the train and test errors along training approach those of kernel regression with the "
              "empirical NTK at init (closed form; relative gap decreasing in m, widest <= 0.1 x narrowest)",
              approaches_kernel_regression),
        Claim("output scale (Chizat & Bach 2019): large alpha is lazy (||W-W0||/||W0|| <= 0.05, alignment with the "
              "target direction unchanged), small alpha is rich (>= 0.5, alignment up by >= 0.2)", lazy_and_rich),
        Claim("on a target that needs feature learning (He_2 of one direction in d = 16, n = 128), the rich regime "
              "(smallest alpha) generalizes better than the lazy one (largest alpha)", rich_generalizes_better),
    ),
)
