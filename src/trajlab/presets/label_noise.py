"""Preset ``label-noise``: label-noise SGD leaves the kernel regime and recovers a sparse vector.

Model (``model.kind=quadratic_diagonal``, :mod:`trajlab.families.diagonal_networks`): f(x) =
<u*u - v*v, x>, loss 1/(2n) sum_i (f(x_i) - y_i)^2, init u = v = alpha 1. Data
(``problem.kind=sparse_linear``): x_i ~ N(0, I_d), a kappa-sparse w* (random support, entries +-1),
clean labels y = X w*, n < d.

Three optimizers on the same data, for every n of the sweep:

- **GD, large init** (alpha = 1): the kernel regime. The tangent kernel at init is
  8 alpha^2 <x, x'>, so the interpolator found is close to the minimum-l2-norm one (pinv(X) y),
  whose error is about ||w*|| sqrt(1 - n/d) for Gaussian X: it does not recover w* unless n = d.
- **GD, small init** (alpha = 0.01): the rich regime (Woodworth et al., COLT 2020): the limit
  minimizes Q_alpha(w) = alpha^2 sum_j q(w_j / alpha^2), q(z) = 2 - sqrt(4 + z^2) + z arcsinh(z/2),
  over the interpolators, which tends to the l1 norm as alpha -> 0: basis pursuit, which recovers
  w* from n on the order of kappa ln(d / kappa) samples.
- **Label-noise SGD, large init** (alpha = 1, full batch, every label plus fresh N(0, sigma^2)
  noise at every step; ``optimizer.batch_size = problem.samples``, ``model.label_noise = sigma``):
  after reaching the interpolating manifold, the noise drives the iterate along it in the direction
  that decreases tr Hess L (Blanc, Gupta, Valiant, Valiant, COLT 2020; Damian, Ma, Lee, NeurIPS
  2021; Li, Wang, Arora, "What Happens after SGD Reaches Zero Loss?", ICLR 2022, Sec. 6, which
  treats this model and proves recovery from O(kappa ln d) samples where GD from the same init needs
  Omega(d); HaoChen, Wei, Lee, Ma, COLT 2021). Here tr Hess L = (4/n) sum_ij x_ij^2 (u_j^2 + v_j^2)
  exactly, whose minimum over the interpolators is 4 sum_j c_j |w_j| (c_j = mean_i x_ij^2), a
  weighted l1 norm: the run is compared with that weighted basis-pursuit solution
  (``distance_to_min_trace``). The trace is recorded both in closed form (``hessian_trace_exact``)
  and by Hutchinson's estimator (``hessian_trace``, 10 Rademacher probes).

Step size eta = 0.01 for all (the top Hessian eigenvalue at alpha = 1 is 8 lambda_max(X^T X / n) ~ 60
at d = 30, n = 10, below 2 / eta = 200), sigma = 2 (labels have std sqrt(kappa) = 1.4). The
noise keeps the iterate fluctuating around the manifold, so the label-noise runs end with a
relative error of about 0.1 even when they have found w*; "recovered" means relative error
||w - w*|| / ||w*|| <= 0.3 (GD from large init stays >= 0.5 for n <= 3d/4). Assumed (the papers'
own constants were not at hand): these eta, sigma and step counts, chosen by a short exploration
at the quick size; the rates of the papers are asymptotic and state no constant.

Quick (``--quick``): d = 30, kappa = 2, n in {6, 12, 22, 30}, 300 000 steps of label-noise SGD,
seeds 0 and 1 for the label noise (GD is deterministic: seed 0 only). Full: d = 60, kappa = 3,
n in {6, 9, 12, 15, 20, 30, 45, 60}, 10^6 steps, 3 seeds. float64 throughout.

Measured (quick, ``trajlab run label-noise --quick``: 16 runs, 26 s of CPU (user + sys) on a shared
2-core machine):

- GD from alpha = 1 ends 5e-4 to 7e-3 (relative) from pinv(X) y at every n < d, with recovery error
  0.91, 0.75, 0.55 at n = 6, 12, 22 against sqrt(1 - n/d) = 0.89, 0.77, 0.52; at n = d = 30 the
  interpolator is unique and GD reaches it (error 0.034, train loss 5e-8 at the step cap: the square
  Gaussian X is ill-conditioned).
- label-noise SGD lowers the exact tr Hess L to 1.6-2.9% of GD's (e.g. 5.0-5.8 against 249 at
  n = 12), Hutchinson's estimate within 0.96-1.06 of the closed form, and ends 0.07-0.16 from the
  least-trace interpolator at n = 12 and 22 (GD: 0.75, 0.55).
- recovery: label-noise SGD from n = 12 (= 1.8 kappa ln d; worst seed errors 0.80, 0.16, 0.10, 0.067
  at n = 6, 12, 22, 30), GD from large init only at n = 30 = d.
- GD from alpha = 0.01 ends 0.13, 0.028, 0.0038 from the min-l1 interpolator at n = 6, 12, 22 (at
  n = 6 basis pursuit itself does not recover w*, and alpha = 0.01 is not yet the l1 limit: that is
  why the claim allows 0.15). All four claims hold.

Measured (full, ``trajlab run label-noise``: 40 runs, 167 s of CPU): GD from alpha = 1 ends within
2.5e-5 to 6.9e-3 of pinv(X) y and does not recover w* below n = d (errors 0.97 ... 0.52 at n = 6 ... 45,
following sqrt(1 - n/d)); label-noise SGD lowers tr Hess L to 1.0-2.9% of GD's (Hutchinson within 3-9%
of the closed form) and ends 0.03-0.19 from the least-trace interpolator at every n; it recovers w*
from n = 20 (= 1.6 kappa ln d, worst seed error 0.09), GD from large init only at n = 60 = d. Below
n = 20 the least-trace interpolator is itself not w* (label-noise SGD reaches it, errors 1.0-1.8 from
w*). The fourth claim FAILS at the full size: GD from alpha = 0.01 ends 0.25, 0.75, 0.29 from the
min-l1 interpolator at n = 9, 12, 15 (0.16, 0.033, 0.007, 0.003 at n = 6, 20, 30, 45), and at n = 12
it is closer to the min-l2 interpolator (0.36) than to basis pursuit, which does recover w* there.
The l1 limit is approached only logarithmically in 1/alpha: at n = 12 a separate float64 GD run
(lr 0.01, 200 000 steps) from alpha = 1e-2, 1e-3, 1e-4 ends 0.75, 0.71, 0.66 from basis pursuit (at
n = 15: 0.29, 0.099, 0.032). The claim is kept as stated (alpha = 0.01) and reported as failing there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig, replace_dotted
from trajlab.presets.claims import by_run, fmt, lacks, not_measured
from trajlab.presets.preset import Claim, Preset
from trajlab.report.columns import require_columns

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: A run "recovers" w* when ||w - w*|| / ||w*|| is at most this at its end.
RECOVERED = 0.3
LARGE_INIT, SMALL_INIT = 1.0, 0.01
SIGMA = 2.0
METRICS = (
    "train_loss", "recovery_error", "distance_to_min_l2", "distance_to_min_l1", "distance_to_min_trace", "l1_norm",
    "hessian_trace_exact", "hessian_trace",
)


def method_of(runs: pd.DataFrame) -> pd.Series:
    """'label-noise SGD', 'GD, large init' or 'GD, small init' per run."""
    noisy = runs["model.label_noise"].astype(float) > 0
    large = runs["model.scale"].astype(float) >= 0.5
    return pd.Series(
        np.where(noisy, "label-noise SGD", np.where(large, "GD, large init", "GD, small init")), index=runs.index
    )


@dataclass(frozen=True)
class LabelNoisePreset(Preset):
    """The label-noise runs use the full batch (``optimizer.batch_size = problem.samples``, tied to
    each swept n); GD runs are deterministic, so only the first seed of the sweep is kept for them.
    A value the user sets for ``optimizer.batch_size`` is kept."""

    def configs(self, fixed=None, axes=None, quick: bool = False) -> list[RunConfig]:
        user = {**(fixed or {}), **(axes or {})}
        out: dict[str, RunConfig] = {}
        configs = super().configs(fixed, axes, quick)
        first_seed = min((c.seed for c in configs), default=0)
        for config in configs:
            if config.model.label_noise > 0:
                if "optimizer.batch_size" not in user:
                    config = replace_dotted(config, {"optimizer.batch_size": config.problem.samples})
            elif config.seed != first_seed and "seed" not in user:
                continue
            out.setdefault(repr(config), config)
        return list(out.values())


# ---------------------------------------------------------------------------------------------
# claims


def _final_table(data) -> pd.DataFrame | str:
    reason = lacks(
        data,
        runs=["run_id", "status", "problem.samples", "problem.dim", "problem.sparsity", "model.scale",
              "model.label_noise", "final.recovery_error"],
    )
    if reason:
        return reason
    runs = data.runs.copy()
    runs["method"] = method_of(runs)
    return runs[runs["status"] != "diverged"]


def kernel_regime_gd(data):
    """GD from alpha = 1: every run reaches train loss <= 1e-6; at every n < d it ends closer to the
    min-l2 interpolator than to w* and to the min-l1 interpolator (at n >= d the interpolator is
    unique), and it fails to recover w* (relative error > 0.3) at every n <= 3d/4."""
    table = _final_table(data)
    if isinstance(table, str):
        return not_measured(table)
    if "final.distance_to_min_l2" not in table or "final.distance_to_min_l1" not in table:
        return not_measured("runs lack final.distance_to_min_l2 / final.distance_to_min_l1")
    gd = table[table["method"] == "GD, large init"].sort_values("problem.samples")
    if len(gd) == 0:
        return not_measured("no GD run from large init")
    parts, holds = [], True
    for _, run in gd.iterrows():
        n, d = int(run["problem.samples"]), int(run["problem.dim"])
        error, to_l2, to_l1 = (float(run[c]) for c in ("final.recovery_error", "final.distance_to_min_l2",
                                                      "final.distance_to_min_l1"))
        loss = float(run["final.train_loss"])
        ok = loss <= 1e-6
        if n < d:
            ok &= to_l2 < min(error, to_l1)
        if n <= 0.75 * d:
            ok &= error > RECOVERED
        holds &= ok
        parts.append(f"n={n}: error {fmt(error, 2)} (sqrt(1-n/d) = {fmt(math.sqrt(max(0.0, 1 - n / d)), 2)}), "
                     f"to min-l2 {fmt(to_l2, 2)}, to min-l1 {fmt(to_l1, 2)}, loss {fmt(loss, 2)}")
    return "; ".join(parts), holds


def label_noise_lowers_trace(data):
    """Label-noise SGD from alpha = 1: at the end, its exact tr Hess L is below half that of GD from
    the same init on the same data (every n), the Hutchinson estimate agrees with the closed form
    within 20%, and at every n < d (where interpolators are many) it ends closer to the least-trace
    interpolator (weighted basis pursuit) than GD does."""
    table = _final_table(data)
    if isinstance(table, str):
        return not_measured(table)
    needed = ["final.hessian_trace_exact", "final.distance_to_min_trace"]
    if any(c not in table for c in needed):
        return not_measured(f"runs lack {', '.join(needed)}")
    noisy = table[table["method"] == "label-noise SGD"]
    gd = table[table["method"] == "GD, large init"].set_index("problem.samples")
    if len(noisy) == 0 or len(gd) == 0:
        return not_measured("needs label-noise SGD and GD runs from large init")
    parts, holds = [], True
    for n, runs in noisy.groupby("problem.samples"):
        if n not in gd.index:
            continue
        reference = gd.loc[n]
        ratio = runs["final.hessian_trace_exact"].astype(float) / float(reference["final.hessian_trace_exact"])
        closer = runs["final.distance_to_min_trace"].astype(float) < float(reference["final.distance_to_min_trace"])
        ok = bool((ratio < 0.5).all() and (closer.all() or n >= int(reference["problem.dim"])))
        text = (f"n={int(n)}: tr H (label noise / GD) {fmt(ratio.min(), 2)}-{fmt(ratio.max(), 2)}, to min-trace "
                f"{fmt(runs['final.distance_to_min_trace'].min(), 2)}-{fmt(runs['final.distance_to_min_trace'].max(), 2)}"
                f" vs GD {fmt(float(reference['final.distance_to_min_trace']), 2)}")
        if "final.hessian_trace" in runs:
            hutchinson = runs["final.hessian_trace"].astype(float) / runs["final.hessian_trace_exact"].astype(float)
            ok &= bool((np.abs(hutchinson - 1) <= 0.2).all())
            text += f", Hutchinson / exact {fmt(hutchinson.min(), 3)}-{fmt(hutchinson.max(), 3)}"
        holds &= ok
        parts.append(text)
    if not parts:
        return not_measured("no n with both label-noise SGD and GD runs")
    return "; ".join(parts), holds


def _smallest_recovering(frame: pd.DataFrame) -> float:
    """The smallest n from which every run at every larger swept n recovers w* (inf: none)."""
    by_n = frame.groupby("problem.samples")["final.recovery_error"].max().sort_index()
    ok = (by_n <= RECOVERED).to_numpy()
    ns = by_n.index.to_numpy()
    for i in range(len(ns)):
        if ok[i:].all():
            return float(ns[i])
    return math.inf


def sample_complexity(data):
    """Over the swept n: label-noise SGD recovers w* (relative error <= 0.3, every seed) from some
    n_LN <= 2 kappa ln d on; GD from large init only from n_GD >= 3d/4 on (measured: n_LN / (kappa ln d)
    and n_GD / d)."""
    table = _final_table(data)
    if isinstance(table, str):
        return not_measured(table)
    noisy = table[table["method"] == "label-noise SGD"]
    gd = table[table["method"] == "GD, large init"]
    if noisy["problem.samples"].nunique() < 2 or gd["problem.samples"].nunique() < 2:
        return not_measured("needs label-noise SGD and GD runs at two or more n")
    d, kappa = int(table["problem.dim"].iloc[0]), int(table["problem.sparsity"].iloc[0])
    n_noise, n_gd = _smallest_recovering(noisy), _smallest_recovering(gd)
    scale = kappa * math.log(d)
    errors = ", ".join(
        f"n={int(n)}: {fmt(g['final.recovery_error'].max(), 2)}"
        for n, g in noisy.groupby("problem.samples")
    )
    measured = (f"d={d}, kappa={kappa}: label-noise SGD recovers from n={fmt(n_noise)} "
                f"(= {fmt(n_noise / scale, 2)} kappa ln d), GD from large init from n={fmt(n_gd)} (= {fmt(n_gd / d, 2)} d); "
                f"label-noise SGD worst error per n: {errors}")
    return measured, bool(n_noise <= 2 * scale and n_gd >= 0.75 * d)


def init_scale_decides(data):
    """At every n < d: GD from alpha = 0.01 interpolates (train loss <= 1e-6) and ends within 0.15
    (relative to ||w*||) of the min-l1 interpolator and closer to it than to the min-l2 one, while GD
    from alpha = 1 ends closer to the min-l2 interpolator than to the min-l1 one (Woodworth et al.
    2020: the l1 limit is reached as alpha -> 0, so at alpha = 0.01 the match is close, not exact)."""
    table = _final_table(data)
    if isinstance(table, str):
        return not_measured(table)
    if "final.distance_to_min_l1" not in table or "final.distance_to_min_l2" not in table:
        return not_measured("runs lack final.distance_to_min_l1 / final.distance_to_min_l2")
    small = table[table["method"] == "GD, small init"].sort_values("problem.samples")
    large = table[table["method"] == "GD, large init"].set_index("problem.samples")
    small = small[small["problem.samples"] < small["problem.dim"]]
    if len(small) == 0 or len(large) == 0:
        return not_measured("needs GD runs from small and large init at some n < d")
    parts, holds = [], True
    for _, run in small.iterrows():
        n = run["problem.samples"]
        to_l1, to_l2 = float(run["final.distance_to_min_l1"]), float(run["final.distance_to_min_l2"])
        ok = to_l1 <= 0.15 and to_l1 < to_l2 and float(run["final.train_loss"]) <= 1e-6
        text = f"n={int(n)}: small init to min-l1 {fmt(to_l1, 2)} / to min-l2 {fmt(to_l2, 2)}"
        if n in large.index:
            big = large.loc[n]
            ok &= float(big["final.distance_to_min_l2"]) < float(big["final.distance_to_min_l1"])
            text += (f"; large init to min-l2 {fmt(float(big['final.distance_to_min_l2']), 2)} / to min-l1 "
                     f"{fmt(float(big['final.distance_to_min_l1']), 2)}")
        holds &= ok
        parts.append(text)
    return "; ".join(parts), holds


# ---------------------------------------------------------------------------------------------
# figures

_COLORS = {"GD, large init": "#1f77b4", "GD, small init": "#2ca02c", "label-noise SGD": "#d62728"}


def recovery_against_samples_figure(runs: pd.DataFrame) -> Figure:
    """Final relative recovery error ||w - w*|| / ||w*|| against n, one line per method (label-noise
    SGD: median over seeds, band min-max), with sqrt(1 - n/d) (the min-l2 interpolator's expected
    error) dotted and the recovery threshold dashed."""
    from matplotlib.figure import Figure

    require_columns(runs, ["problem.samples", "problem.dim", "model.scale", "model.label_noise",
                           "final.recovery_error"], "runs")
    runs = runs.assign(method=method_of(runs))
    fig = Figure(figsize=(5.6, 4.0), layout="constrained")
    ax = fig.subplots()
    for method, group in runs.groupby("method"):
        stats = group.groupby("problem.samples")["final.recovery_error"].agg(["median", "min", "max"]).sort_index()
        ax.plot(stats.index, stats["median"], marker="o", color=_COLORS.get(method), label=method)
        ax.fill_between(stats.index, stats["min"], stats["max"], color=_COLORS.get(method), alpha=0.2)
    d = int(runs["problem.dim"].iloc[0])
    grid = np.linspace(1, d, 200)
    ax.plot(grid, np.sqrt(1 - grid / d), ":", color="0.4", label="sqrt(1 - n/d)")
    ax.axhline(RECOVERED, linestyle="--", color="0.6", linewidth=0.8)
    ax.set(xlabel="samples n", ylabel="||w - w*|| / ||w*|| at the end", title=f"sparse recovery, d = {d}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def trace_along_training_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """tr Hess L (closed form; Hutchinson's estimate as dots) and the recovery error against the step,
    for the largest n below d/2 of the sweep: GD from large and small init and label-noise SGD."""
    from matplotlib.figure import Figure

    require_columns(runs, ["run_id", "problem.samples", "problem.dim", "model.scale", "model.label_noise"], "runs")
    require_columns(trajectories, ["run_id", "step", "hessian_trace_exact", "recovery_error"], "trajectories")
    runs = runs.assign(method=method_of(runs))
    d = int(runs["problem.dim"].iloc[0])
    ns = sorted(runs["problem.samples"].unique())
    below = [n for n in ns if n <= d / 2]
    n = below[-1] if below else ns[0]
    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    trace_ax, error_ax = fig.subplots(1, 2)
    traj = by_run(trajectories)
    for _, run in runs[runs["problem.samples"] == n].iterrows():
        t = traj.get(run["run_id"])
        if t is None:
            continue
        t = t[t["step"] >= 1]
        color = _COLORS.get(run["method"])
        label = f"{run['method']} (seed {run['seed']})" if "seed" in run else run["method"]
        trace_ax.loglog(t["step"], t["hessian_trace_exact"], color=color, label=label)
        if "hessian_trace" in t:
            trace_ax.plot(t["step"], t["hessian_trace"], ".", color=color, markersize=3)
        error_ax.semilogx(t["step"], t["recovery_error"], color=color, label=label)
    trace_ax.set(xlabel="step", ylabel="tr Hess L", title=f"n = {n}: trace (line exact, dots Hutchinson)")
    error_ax.axhline(RECOVERED, linestyle="--", color="0.6", linewidth=0.8)
    error_ax.set(xlabel="step", ylabel="||w - w*|| / ||w*||", title=f"n = {n}: recovery error")
    for ax in (trace_ax, error_ax):
        ax.grid(True, alpha=0.3)
    error_ax.legend(fontsize=7)
    return fig


def label_noise_figures(data) -> dict:
    return {
        "recovery_against_samples": recovery_against_samples_figure(data.runs),
        "trace_along_training": trace_along_training_figure(data.runs, data.trajectories),
    }


LABEL_NOISE = LabelNoisePreset(
    name="label-noise",
    description="Label-noise SGD lowers tr Hess L and recovers a sparse vector where GD from large init cannot (Li, Wang, Arora 2022)",
    base=RunConfig(
        problem=ProblemConfig("sparse_linear", dim=60, sparsity=3, samples=20, seed=0),
        model=ModelConfig("quadratic_diagonal", scale=LARGE_INIT, label_noise=0.0),
        optimizer=OptimizerConfig(name="gd", lr=0.01),
        train=TrainConfig(max_steps=1_000_000, tol=1e-12, record_points=60, x64=True, hutchinson_probes=10),
        metrics=METRICS,
    ),
    axes={"problem.samples": [6, 9, 12, 15, 20, 30, 45, 60], "seed": [0, 1, 2]},
    variants=(
        {"model.scale": LARGE_INIT},
        {"model.scale": SMALL_INIT},
        # batch_size 1 is a placeholder valid at any n: LabelNoisePreset.configs sets it to n (the full batch)
        {"model.scale": LARGE_INIT, "model.label_noise": SIGMA, "optimizer.batch_size": 1},
    ),
    quick={
        "problem.dim": 30, "problem.sparsity": 2, "problem.samples": [6, 12, 22, 30], "seed": [0, 1],
        "train.max_steps": 300_000, "train.record_points": 40,
    },
    figures=label_noise_figures,
    claims=(
        Claim(
            "GD from large init (alpha = 1) interpolates in the kernel regime: it ends near the min-l2 interpolator "
            "and does not recover the sparse w* for n <= 3d/4 (Woodworth et al. 2020; Li, Wang, Arora 2022)",
            kernel_regime_gd,
        ),
        Claim(
            "label-noise SGD from the same init drives tr Hess L down (below half of GD's, closed form and "
            "Hutchinson agree) towards the least-trace interpolator (Blanc et al. 2020; Li, Wang, Arora 2022)",
            label_noise_lowers_trace,
        ),
        Claim(
            "label-noise SGD recovers w* from n on the order of kappa ln d samples (<= 2 kappa ln d here), GD from "
            "large init only from n on the order of d (>= 3d/4) (Li, Wang, Arora 2022; HaoChen et al. 2021)",
            sample_complexity,
        ),
        Claim(
            "init scale decides for GD: from small init (alpha = 0.01) it finds (within 0.15 ||w*||) the min-l1 "
            "(sparse) interpolator, from large init one closer to the min-l2 interpolator (Woodworth et al. 2020)",
            init_scale_decides,
        ),
    ),
)
