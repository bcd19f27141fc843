"""Preset ``saddle-order``: the origin of a depth-N linear network is a saddle of order N, and the
plateau it causes grows like log(1/u0) for N = 2 and like u0^-(1 - 2/N) for N >= 3.

Source: N. Cohen's talk "Analyzing Optimization and Generalization in Deep Learning via
Trajectories of Gradient Descent" ("when all the weights are zero all the second derivatives are
going to be zero"); the single-mode dynamics du/dt = N u^(2 - 2/N) (s - u) follows from Arora,
Cohen, Hu, Luo (NeurIPS 2019, Theorem 3) for one balanced mode, and is Saxe, McClelland, Ganguli's
logistic curve (ICLR 2014, Eq. 5) for N = 2. Closed forms: :mod:`trajlab.theory.depth_modes`.

(a) **Derivatives at the origin** (baseline rows ``origin_hessian``, one per depth): for
L = 1/2 ||W_N ... W_1 - Phi||_F^2 (whitened regression, Phi 2 x 3 with singular values (2, 1) on
random orthonormal modes, hidden width 3, float64) the gradient at W_1 = ... = W_N = 0 vanishes; the
dense Hessian (``jax.hessian`` of the deep linear family's own loss over the flattened layers) has,
for N = 2, the eigenvalues +-sigma_i(Phi), each ``width`` times, and zeros (a strict saddle; closed
form :func:`~trajlab.theory.depth_modes.depth_two_origin_hessian_eigenvalues`), and is identically 0
for N >= 3. Along a random direction A the derivatives d^k/de^k L(e A) at e = 0 vanish for
k = 1 .. N-1 and the N-th is -N! <A_N ... A_1, Phi> != 0: a critical point of order exactly N.

(b) **Escape time** (the engine's runs): whitened regression with a 1 x 1 target s in {0.5, 1, 2} (s = 1
under ``--quick``; a single mode; Phi = +s, not -s, for the preset's seed 0), depth N in {2, 3, 4}, ``model.init=identity`` with
end-to-end scale u0 (every layer u0^(1/N): balanced, aligned), u0 in {1e-1, ..., 1e-6}, gradient
flow (Tsit5, rtol 1e-10, atol 1e-14), float64. Each run stops at the first recording point with
u >= s / 2 (``train.tol`` = s^2 / 8 on the loss 1/2 (u - s)^2); the escape time is read off the
stored trajectory by linear interpolation between the two records around s / 2. Recording: every
step of a time unit ``optimizer.lr`` = t_lead / ``records``, where t_lead is the leading-order law
(ln(s/u0) / (2 s) for N = 2, u0^-p / ((N - 2) s) for N >= 3) -- a choice of *resolution* only:
the measured time is whatever the flow gives (a run that is slower than t_lead still records up to
4 t_lead). Compared with the exact time of the scalar ODE (baseline rows ``escape_time_closed_form``:
the hypergeometric closed form and an independent scipy quadrature, equal to ~1e-15), and fitted
per depth: t = alpha + beta ln(1/u0) for N = 2 (beta -> 1 / (2 s)), t = alpha + beta u0^-p for
N >= 3 (beta -> 1 / ((N - 2) s)), plus the log-log slope of t against 1/u0 over the three smallest
u0 (-> p = 1 - 2/N). The leading law is asymptotic: at u0 = 0.1 and N = 3 it predicts 2.15 against
the exact 1.19, which is why the constant alpha is fitted and the log-log slope is taken at small u0.

Measured (float64, 2-core CPU shared with other jobs):

- Hessian at 0 (quick and full): N = 2: eigenvalues -2 .. 2 = -+sigma_max(Phi), 6 negative, equal
  to +-sigma_i(Phi) to 9e-16; max |entry| exactly 0 for N = 3 and 4; gradient exactly 0; along the
  random direction the derivatives of order < N are exactly 0 and the N-th is -4.5 / -43.6 / -88.4.
- ``trajlab run saddle-order --quick`` (s = 1, 18 runs, 400 records; 17 s of CPU): measured escape
  time vs the closed form: max relative error 3.2e-4 (closed form vs quadrature 1.3e-15); N = 2:
  beta 0.5035 vs 1/(2s) = 0.5 (0.7%); N = 3: beta 1.0005 vs 1 (0.05%), log-log slope at small u0
  0.340 vs 1/3; N = 4: beta 0.49991 vs 0.5 (0.02%), slope 0.501 vs 1/2. At u0 = 1e-6 the plateau
  lasts 6.9 / 99 / 500 time units for N = 2 / 3 / 4.
- ``trajlab run saddle-order`` (s in {0.5, 1, 2}, 54 runs, 1000 records; 43 s of CPU): max relative
  error 6.8e-5; N = 2: beta within 1.5% / 0.7% / 0.3% of 1/(2s) for s = 0.5 / 1 / 2 (the largest
  deviation at s = 0.5, where u0 = 0.1 is 1/5 of s and the O(u0/s) correction of the logarithm is
  largest); N = 3: beta within 0.12%, slope 0.339-0.342; N = 4: beta within 0.03%, slope 0.501.

Figures: :func:`escape_curves_figure` (u(t) / s per depth and u0), :func:`escape_time_figure`
(measured escape times against the exact closed form and the leading law) and a table of the
origin's derivatives.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import FlowConfig, ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig, replace_dotted
from trajlab.presets.claims import baseline_rows, by_run, crossing, fmt, lacks, not_measured
from trajlab.presets.preset import Claim, Preset
from trajlab.report.columns import require_columns
from trajlab.sweep.runner import BaselineJob, baseline_id
from trajlab.theory.depth_modes import (
    escape_time,
    escape_time_leading,
    escape_time_quadrature,
    saddle_exponent,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The escape level: the time for the mode to reach this fraction of s.
LEVEL = 0.5
#: The small problem whose derivatives at the origin are computed (baseline ``origin_hessian``).
HESSIAN_PROBLEM = dict(kind="whitened", m=2, n=3, seed=0, target_singular_values=(2.0, 1.0))
HESSIAN_WIDTH = 3
#: Tolerances of the claims (measured values are in the module docstring).
TIME_TOLERANCE = 1e-3  # relative error of the measured escape time against the closed form
COEFFICIENT_TOLERANCE = 0.02  # fitted beta against its leading-order value
SLOPE_TOLERANCE = 0.05  # log-log slope at the three smallest u0 against p = 1 - 2/N
SCALES = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]


def _values(text) -> list[float]:
    """A tuple field as stored ('1.0,0.5' or a list) -> floats."""
    if isinstance(text, (list, tuple, np.ndarray)):
        return [float(v) for v in text]
    return [float(v) for v in str(text).split(",") if v.strip()]


def _single_mode_target(config: RunConfig) -> float | None:
    """s of a 1 x 1 whitened problem with one target value, else None."""
    problem = config.problem
    if problem.kind != "whitened" or (problem.m, problem.n) != (1, 1) or len(problem.target_singular_values) != 1:
        return None
    return float(problem.target_singular_values[0])


@dataclass(frozen=True)
class EscapePreset(Preset):
    """A preset whose single-mode runs record on their own time unit (module docstring (b)).

    For each run of a 1 x 1 whitened problem with target s: ``optimizer.lr`` = t_lead / ``records``
    (t_lead: :func:`~trajlab.theory.depth_modes.escape_time_leading`; ln 2 for N = 1),
    ``train.max_steps`` = 4 ``records``, every step recorded, and ``train.tol`` = s^2 / 8 (stop once
    u >= s / 2). ``quick_records`` under ``--quick``. A value the user sets is kept.
    """

    records: int = 1000
    quick_records: int = 400

    def configs(self, fixed=None, axes=None, quick: bool = False) -> list[RunConfig]:
        user = {**(fixed or {}), **(axes or {})}
        records = self.quick_records if quick else self.records
        out: dict[str, RunConfig] = {}
        for config in super().configs(fixed, axes, quick):
            s = _single_mode_target(config)
            if s is not None:
                lead = float(escape_time_leading(config.model.scale, s, config.model.depth))
                updates = {
                    "optimizer.lr": lead / records,
                    "train.max_steps": 4 * records,
                    "train.record": "linear",
                    "train.record_every": 1,
                    "train.tol": s * s / 8.0,
                }
                config = replace_dotted(config, {k: v for k, v in updates.items() if k not in user})
            out.setdefault(repr(config), config)
        return list(out.values())


# ---------------------------------------------------------------------------------------------
# baselines


def _hessian_config(depth: int) -> RunConfig:
    return RunConfig(
        problem=ProblemConfig(**HESSIAN_PROBLEM),
        model=ModelConfig(depth=depth, width=HESSIAN_WIDTH, init="identity", scale=1.0),
        train=TrainConfig(x64=True),
        metrics=("train_loss",),
    )


def origin_derivatives(depth: int, seed: int = 0) -> dict:
    """The derivatives of the deep linear family's loss at W_1 = ... = W_N = 0 on ``HESSIAN_PROBLEM``
    (float64): gradient norm, the dense Hessian (``jax.hessian`` over the flattened layers: its
    largest |entry|, its eigenvalues) and d^k/de^k L(e A) at 0 for k = 1 .. N along a random A."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from trajlab.problems import make_data
    from trajlab.registry import get_family

    config = _hessian_config(depth)
    with jax.enable_x64(True):
        parts = get_family("deep_linear").build(config)
        data = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), make_data(config.problem))
        params = parts.init(jax.random.PRNGKey(0), 1.0)
        flat, unravel = ravel_pytree(jax.tree_util.tree_map(jnp.zeros_like, params))
        flat = flat.astype(jnp.float64)

        def loss(vector):
            return parts.loss(unravel(vector), data)

        direction = jax.random.normal(jax.random.PRNGKey(seed + 1), flat.shape, jnp.float64)
        along = lambda e: loss(e * direction)  # noqa: E731
        functions, function = [], along
        for _ in range(depth):
            function = jax.grad(function)
            functions.append(function)

        @jax.jit
        def derivatives_at(vector):  # one compilation for all of them
            zero = jnp.zeros((), jnp.float64)
            return jax.grad(loss)(vector), jax.hessian(loss)(vector), jnp.stack([f(zero) for f in functions])

        gradient, hessian, derivatives = (np.asarray(v) for v in derivatives_at(flat))
        derivatives = [float(v) for v in derivatives]
    eigenvalues = np.linalg.eigvalsh(0.5 * (hessian + hessian.T))
    target = np.asarray(make_data(config.problem).target)
    return dict(
        parameters=int(flat.size),
        gradient_norm=float(np.linalg.norm(gradient)),
        hessian_max_abs=float(np.abs(hessian).max()),
        hessian_min_eigenvalue=float(eigenvalues[0]),
        hessian_max_eigenvalue=float(eigenvalues[-1]),
        hessian_negative=int(np.sum(eigenvalues < -1e-12)),
        hessian_eigenvalues=json.dumps([float(v) for v in eigenvalues]),
        target_singular_values=json.dumps([float(v) for v in np.linalg.svd(target, compute_uv=False)]),
        lower_derivatives_max_abs=float(max([abs(d) for d in derivatives[:-1]], default=0.0)),
        order_n_derivative=float(derivatives[-1]),
        directional_derivatives=json.dumps(derivatives),
        status="computed",
    )


def saddle_jobs(configs: list[RunConfig]) -> list[BaselineJob]:
    """``origin_hessian`` per depth of the sweep; ``escape_time_closed_form`` per (depth, u0, s) of
    its single-mode runs."""
    jobs = []
    for depth in sorted({c.model.depth for c in configs}):
        key = {"depth": depth, "problem": {k: list(v) if isinstance(v, tuple) else v for k, v in HESSIAN_PROBLEM.items()},
               "width": HESSIAN_WIDTH}
        columns = {"baseline": "origin_hessian", "model.depth": depth, "hessian.m": HESSIAN_PROBLEM["m"],
                   "hessian.n": HESSIAN_PROBLEM["n"], "hessian.width": HESSIAN_WIDTH}
        jobs.append(BaselineJob(baseline_id("origin_hessian", key), columns, lambda depth=depth: origin_derivatives(depth)))
    seen = set()
    for config in configs:
        s = _single_mode_target(config)
        if s is None:
            continue
        key = (config.model.depth, float(config.model.scale), s)
        if key in seen:
            continue
        seen.add(key)
        columns = {"baseline": "escape_time_closed_form", "model.depth": key[0], "model.scale": key[1], "target": s,
                   "level": LEVEL}
        jobs.append(BaselineJob(
            baseline_id("escape_time_closed_form", {"depth": key[0], "scale": key[1], "s": s, "level": LEVEL}),
            columns, lambda key=key: _escape_closed_form(*key),
        ))
    return jobs


def _escape_closed_form(depth: int, scale: float, s: float) -> dict:
    return dict(
        closed_form=float(escape_time(scale, s, depth, LEVEL)),
        quadrature=escape_time_quadrature(scale, s, depth, LEVEL),
        leading=float(escape_time_leading(scale, s, depth)),
        status="closed_form",
    )


# ---------------------------------------------------------------------------------------------
# measurements


def escape_table(runs: pd.DataFrame, trajectories: pd.DataFrame, baselines: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per single-mode run: depth, u0, s, the measured escape time (``t half``: the first t with
    u = s / 2, linearly interpolated between records), the exact closed form and its quadrature
    (from the ``escape_time_closed_form`` baseline rows when present, else computed), and the
    leading-order law."""
    require_columns(runs, ["run_id", "problem.m", "problem.n", "problem.target_singular_values", "model.depth",
                           "model.scale"], "runs")
    require_columns(trajectories, ["run_id", "t", "mode_0"], "trajectories")
    closed = {}
    if baselines is not None and len(baselines) and "baseline" in baselines.columns:
        for _, row in baselines[baselines["baseline"] == "escape_time_closed_form"].iterrows():
            closed[(int(row["model.depth"]), float(row["model.scale"]), float(row["target"]))] = row
    traj = by_run(trajectories, "t")
    rows = []
    for _, run in runs.iterrows():
        values = _values(run["problem.target_singular_values"])
        if (int(run["problem.m"]), int(run["problem.n"])) != (1, 1) or len(values) != 1 or run["run_id"] not in traj:
            continue
        s, depth, scale = values[0], int(run["model.depth"]), float(run["model.scale"])
        trajectory = traj[run["run_id"]]
        measured = crossing(trajectory["t"].to_numpy(float), trajectory["mode_0"].to_numpy(float), LEVEL * s)
        row = closed.get((depth, scale, s))
        exact = float(row["closed_form"]) if row is not None else float(escape_time(scale, s, depth, LEVEL))
        quadrature = float(row["quadrature"]) if row is not None else math.nan
        rows.append({
            "depth": depth, "u0": scale, "s": s, "t half": measured, "closed form": exact, "quadrature": quadrature,
            "leading": float(escape_time_leading(scale, s, depth)), "relative error": measured / exact - 1.0,
            "run_id": run["run_id"],
        })
    return pd.DataFrame(rows)


def fit_escape_law(table: pd.DataFrame, depth: int, s: float) -> dict:
    """Least-squares fit of the measured escape times of one (depth, s): t = alpha + beta g(u0) with
    g = ln(1/u0) (N = 2) or u0^-p (N >= 3); beta against its leading value 1/(2s) resp. 1/((N-2)s);
    and the log-log slope of t against 1/u0 over the three smallest u0 (against p = 1 - 2/N)."""
    block = table[(table["depth"] == depth) & np.isclose(table["s"], s)].sort_values("u0")
    u0, t = block["u0"].to_numpy(float), block["t half"].to_numpy(float)
    p = saddle_exponent(depth)
    feature = np.log(1.0 / u0) if depth == 2 else u0 ** (-p)
    beta, alpha = np.polyfit(feature, t, 1)
    predicted = 1.0 / (2.0 * s) if depth == 2 else 1.0 / ((depth - 2) * s)
    small = np.argsort(u0)[:3]
    slope = float(np.polyfit(np.log(1.0 / u0[small]), np.log(t[small]), 1)[0])
    return dict(beta=float(beta), alpha=float(alpha), predicted=predicted, slope=slope, exponent=p,
                scales=len(u0), smallest=float(u0.min()), largest=float(u0.max()))


def _table(data) -> pd.DataFrame | str:
    reason = lacks(data, runs=["run_id", "problem.m", "problem.n", "problem.target_singular_values", "model.depth",
                               "model.scale"], trajectories=["run_id", "t", "mode_0"])
    if reason:
        return reason
    table = escape_table(data.runs, data.trajectories, data.baselines)
    if len(table) == 0:
        return "no single-mode run (whitened 1 x 1 with one target value)"
    return table


# ---------------------------------------------------------------------------------------------
# claims


def origin_is_order_n_saddle(data):
    """From the ``origin_hessian`` rows: the gradient at 0 is 0 for every depth >= 2; N = 2: the Hessian's
    eigenvalues equal +-sigma_i(Phi) (each ``width`` times) and zeros, to 1e-12 relative, so its
    smallest is -sigma_max(Phi) < 0; N >= 3: every Hessian entry is exactly 0. Every depth: the
    directional derivatives of order < N are 0 and the N-th is not (|.| > 1e-6)."""
    from trajlab.theory.depth_modes import depth_two_origin_hessian_eigenvalues
    from trajlab.problems import make_data

    rows = baseline_rows(data, "origin_hessian")
    if len(rows) == 0:
        return not_measured("no origin_hessian baseline")
    depths = sorted(int(d) for d in rows["model.depth"])
    if 2 not in depths or not any(d >= 3 for d in depths):
        return not_measured(f"needs depth 2 and a depth >= 3 (has {depths})")
    target = make_data(ProblemConfig(**HESSIAN_PROBLEM)).target
    parts, holds = [], True
    for _, row in rows.sort_values("model.depth").iterrows():
        depth = int(row["model.depth"])
        if depth == 1:  # a convex quadratic: the origin is no critical point (gradient -Phi)
            parts.append(f"N = 1 (not checked): gradient norm {fmt(row['gradient_norm'], 4)}, Hessian the identity")
            continue
        eigenvalues = np.asarray(json.loads(row["hessian_eigenvalues"]))
        order_ok = abs(row["lower_derivatives_max_abs"]) <= 1e-12 and abs(row["order_n_derivative"]) > 1e-6
        holds &= bool(row["gradient_norm"] == 0.0 and order_ok)
        if depth == 2:
            expected = depth_two_origin_hessian_eigenvalues(target, HESSIAN_WIDTH)
            error = float(np.abs(eigenvalues - expected).max() / np.abs(expected).max())
            holds &= bool(error <= 1e-12 and row["hessian_min_eigenvalue"] < 0)
            parts.append(
                f"N = 2: Hessian eigenvalues {fmt(row['hessian_min_eigenvalue'], 6)} .. {fmt(row['hessian_max_eigenvalue'], 6)} "
                f"({int(row['hessian_negative'])} negative; vs +-sigma_i(Phi) = +-{', '.join(fmt(v, 4) for v in json.loads(row['target_singular_values']))}: "
                f"max error {fmt(error)})"
            )
        else:
            holds &= bool(row["hessian_max_abs"] == 0.0)
            parts.append(f"N = {depth}: max |Hessian entry| = {fmt(row['hessian_max_abs'])}")
        parts[-1] += (
            f", gradient norm {fmt(row['gradient_norm'])}, |d^k L| for k < N: {fmt(row['lower_derivatives_max_abs'])}, "
            f"d^N L along a random direction {fmt(row['order_n_derivative'], 4)}"
        )
    return "; ".join(parts), holds


def escape_time_matches_closed_form(data):
    """Every single-mode run's measured escape time to s/2 is within a relative 1e-3 of the exact time of
    du/dt = N u^(2-2/N) (s - u) (hypergeometric closed form), which agrees with scipy quadrature
    to 1e-9 relative."""
    table = _table(data)
    if isinstance(table, str):
        return not_measured(table)
    if not np.isfinite(table["t half"]).all():
        missing = table[~np.isfinite(table["t half"])]
        return (f"{len(missing)} runs never reached s/2 (depth/u0: "
                + ", ".join(f"{d}/{fmt(u)}" for d, u in zip(missing["depth"], missing["u0"])) + ")"), False
    error = float(table["relative error"].abs().max())
    quadrature = (table["closed form"] / table["quadrature"] - 1.0).abs()
    measured = f"max relative error {fmt(error, 2)} over {len(table)} runs (depth {', '.join(str(d) for d in sorted(table['depth'].unique()))})"
    holds = error <= TIME_TOLERANCE
    if quadrature.notna().any():
        worst = float(quadrature.max())
        measured += f"; closed form vs quadrature: max relative difference {fmt(worst, 2)}"
        holds = holds and worst <= 1e-9
    return measured, bool(holds)


def _fits(data, depths):
    table = _table(data)
    if isinstance(table, str):
        return table
    table = table[table["depth"].isin(depths) & np.isfinite(table["t half"])]
    out = []
    for (depth, s), block in table.groupby(["depth", "s"]):
        if len(block) < 3 or block["u0"].min() > 1e-4 or block["u0"].max() / block["u0"].min() < 100:
            continue
        out.append((int(depth), float(s), fit_escape_law(table, int(depth), float(s))))
    if not out:
        return f"needs >= 3 init scales down to <= 1e-4 at depth {', '.join(map(str, depths))}"
    return out


def depth_two_plateau_is_logarithmic(data):
    """N = 2: the fit t = alpha + beta ln(1/u0) of the measured escape times has beta within 2% of
    1/(2s) (Saxe et al.'s logarithm)."""
    fits = _fits(data, [2])
    if isinstance(fits, str):
        return not_measured(fits)
    parts, holds = [], True
    for _, s, fit in fits:
        error = abs(fit["beta"] / fit["predicted"] - 1.0)
        holds &= error <= COEFFICIENT_TOLERANCE
        parts.append(f"s = {fmt(s)}: beta {fmt(fit['beta'], 5)} vs 1/(2s) = {fmt(fit['predicted'], 5)} "
                     f"({fmt(100 * error, 2)}%), u0 {fmt(fit['smallest'])} .. {fmt(fit['largest'])}")
    return "; ".join(parts), bool(holds)


def deep_plateau_is_power_law(data):
    """N >= 3: the fit t = alpha + beta u0^-(1-2/N) has beta within 2% of 1/((N-2)s), and the log-log
    slope of t against 1/u0 over the three smallest u0 is within 5% of 1 - 2/N; at the smallest u0
    the plateau is longer the deeper the network."""
    fits = _fits(data, [3, 4, 5, 6, 7, 8])
    if isinstance(fits, str):
        return not_measured(fits)
    parts, holds = [], True
    for depth, s, fit in fits:
        error = abs(fit["beta"] / fit["predicted"] - 1.0)
        slope_error = abs(fit["slope"] / fit["exponent"] - 1.0)
        holds &= error <= COEFFICIENT_TOLERANCE and slope_error <= SLOPE_TOLERANCE
        parts.append(
            f"N = {depth}, s = {fmt(s)}: beta {fmt(fit['beta'], 5)} vs 1/((N-2)s) = {fmt(fit['predicted'], 5)} "
            f"({fmt(100 * error, 2)}%), log-log slope at small u0 {fmt(fit['slope'], 4)} vs {fmt(fit['exponent'], 4)}"
        )
    table = _table(data)
    smallest = table[table["u0"] == table["u0"].min()]
    for s, block in smallest.groupby("s"):
        block = block.sort_values("depth")
        ordered = bool(np.all(np.diff(block["t half"].to_numpy(float)) > 0))
        holds &= ordered
        parts.append(f"at u0 = {fmt(float(block['u0'].iloc[0]))}, s = {fmt(s)}: escape time "
                     + " / ".join(fmt(v, 4) for v in block["t half"]) + " for N = "
                     + " / ".join(str(d) for d in block["depth"]))
    return "; ".join(parts), bool(holds)


# ---------------------------------------------------------------------------------------------
# figures


def escape_curves_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """u(t) / s against t (log axis), a panel per depth, a line per init scale u0; the dotted line
    is the escape level 1/2."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    require_columns(runs, ["run_id", "model.depth", "model.scale", "problem.target_singular_values"], "runs")
    require_columns(trajectories, ["run_id", "t", "mode_0"], "trajectories")
    depths = sorted(runs["model.depth"].unique())
    scales = sorted(runs["model.scale"].unique())
    colors = {u: colormaps["viridis"](i / max(1, len(scales) - 1)) for i, u in enumerate(scales)}
    fig = Figure(figsize=(4.2 * len(depths), 3.6), layout="constrained")
    axes = fig.subplots(1, len(depths), squeeze=False)[0]
    traj = by_run(trajectories, "t")
    for ax, depth in zip(axes, depths):
        for _, run in runs[runs["model.depth"] == depth].sort_values("model.scale").iterrows():
            trajectory = traj.get(run["run_id"])
            if trajectory is None:
                continue
            s = _values(run["problem.target_singular_values"])[0]
            keep = trajectory["t"] > 0
            ax.plot(trajectory["t"][keep], trajectory["mode_0"][keep] / s, color=colors[run["model.scale"]],
                    label=f"u0 = {run['model.scale']:g}" + (f", s = {s:g}" if runs["problem.target_singular_values"].nunique() > 1 else ""))
        ax.axhline(LEVEL, color="0.4", linestyle=":", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("t")
        ax.set_title(f"depth {depth}: mode strength u(t) / s", fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    return fig


def escape_time_figure(runs: pd.DataFrame, trajectories: pd.DataFrame, baselines: pd.DataFrame | None = None) -> Figure:
    """Escape time to s/2 against u0 (log-log): measured (markers), the exact closed form (line) and the
    leading law ln(s/u0)/(2s) or u0^-(1-2/N)/((N-2)s) (dashed), a colour per depth."""
    from matplotlib.figure import Figure

    from trajlab.plots.lines import depth_colors

    table = escape_table(runs, trajectories, baselines)
    fig = Figure(figsize=(5.6, 4.4), layout="constrained")
    ax = fig.subplots()
    if len(table):
        colors = depth_colors(table["depth"])
        for (depth, s), block in table.groupby(["depth", "s"]):
            block = block.sort_values("u0")
            label = f"depth {depth}" + (f", s = {s:g}" if table["s"].nunique() > 1 else "")
            ax.plot(block["u0"], block["t half"], "o", color=colors[depth], label=f"{label}: gradient flow")
            grid = np.geomspace(block["u0"].min(), block["u0"].max(), 100)
            ax.plot(grid, escape_time(grid, s, int(depth), LEVEL), "-", color=colors[depth], linewidth=1.0,
                    label=f"{label}: exact (closed form)")
            ax.plot(grid, escape_time_leading(grid, s, int(depth)), "--", color=colors[depth], linewidth=0.8,
                    label=f"{label}: leading law")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("init scale u0 (end-to-end)")
    ax.set_ylabel("escape time to s / 2")
    ax.set_title("plateau at the origin: log(1/u0) for N = 2, u0^-(1-2/N) for N >= 3", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6)
    return fig


def origin_table(baselines: pd.DataFrame) -> pd.DataFrame:
    """The ``origin_hessian`` rows as a table indexed by depth."""
    rows = baselines[baselines["baseline"] == "origin_hessian"] if len(baselines) else baselines
    columns = {
        "parameters": "parameters", "gradient_norm": "|grad|", "hessian_max_abs": "max |H|",
        "hessian_min_eigenvalue": "min eig H", "hessian_max_eigenvalue": "max eig H",
        "lower_derivatives_max_abs": "max |d^k L|, k<N", "order_n_derivative": "d^N L",
    }
    table = rows.rename(columns={"model.depth": "depth"}).set_index("depth")[list(columns)].rename(columns=columns)
    return table.sort_index()


def saddle_order_figures(data) -> dict:
    from trajlab.plots import table_figure

    figures = {
        "escape_curves": escape_curves_figure(data.runs, data.trajectories),
        "escape_time": escape_time_figure(data.runs, data.trajectories, data.baselines),
    }
    if len(baseline_rows(data, "origin_hessian")):
        figures["origin_derivatives"] = table_figure(origin_table(data.baselines),
                                                     title="derivatives of the loss at W_1 = ... = W_N = 0")
    return figures


SADDLE_ORDER = EscapePreset(
    name="saddle-order",
    description="The origin is a saddle of order N: Hessian 0 for N >= 3; escape time log(1/u0) (N=2), u0^-(1-2/N) (N>=3)",
    base=RunConfig(
        problem=ProblemConfig(kind="whitened", m=1, n=1, seed=0, target_singular_values=(1.0,)),
        model=ModelConfig(depth=2, init="identity", scale=1e-3),
        optimizer=OptimizerConfig(name="gradient_flow", lr=1e-2),
        flow=FlowConfig(solver="tsit5", rtol=1e-10, atol=1e-14),
        train=TrainConfig(max_steps=4000, tol=0.125, record="linear", record_every=1, top_k=1, x64=True),
        metrics=("train_loss", "target_mode_strengths"),
    ),
    axes={
        "model.depth": [2, 3, 4],
        "model.scale": SCALES,
        "problem.target_singular_values": [[0.5], [1.0], [2.0]],
    },
    quick={"problem.target_singular_values": [1.0]},
    records=1000,
    quick_records=400,
    baselines=saddle_jobs,
    figures=saddle_order_figures,
    claims=(
        Claim(
            "at W_1 = ... = W_N = 0 the gradient vanishes; the Hessian has the eigenvalues +-sigma_i(Phi) "
            "(a negative one) for N = 2 and is identically 0 for N >= 3; the first non-zero derivative is the N-th "
            "(dense jax.hessian, 2 x 3 whitened problem, width 3)",
            origin_is_order_n_saddle,
        ),
        Claim(
            "the measured escape time to s/2 from a balanced init of scale u0 equals the exact time of "
            "du/dt = N u^(2-2/N) (s - u) (closed form with 2F1, = quadrature) within 1e-3 relative (max 3.2e-4 at quick)",
            escape_time_matches_closed_form,
        ),
        Claim(
            "N = 2: the plateau grows like log(1/u0): fitted slope of t against ln(1/u0) 0.5035 vs 1/(2s) = 0.5 "
            "(checked: within 2%)",
            depth_two_plateau_is_logarithmic,
        ),
        Claim(
            "N >= 3: the plateau grows like u0^-(1-2/N): fitted coefficient of u0^-(1-2/N) within 2% of 1/((N-2)s), "
            "log-log slope at small u0 within 5% of 1-2/N (0.340 vs 1/3, 0.501 vs 1/2), and deeper is longer "
            "(6.9 / 99 / 500 at u0 = 1e-6)",
            deep_plateau_is_power_law,
        ),
    ),
)
