"""Preset ``random-weights-geometry``: what a random ReLU layer does to angles and distances (Giryes,
Sapiro, Bronstein, "Deep Neural Networks with Random Gaussian Weights: A Universal Classification
Strategy?", IEEE TSP 2016; René Vidal's CVPR 2017 tutorial "Mathematics of Deep Learning").

Closed form (Cho & Saul, "Kernel Methods for Deep Learning", NIPS 2009, the arc-cosine kernel of
degree 1): for w ~ N(0, I) and x, y at angle a,

    E[relu(w.x) relu(w.y)] = ||x|| ||y|| J(a) / (2 pi),   J(a) = sin a + (pi - a) cos a.

A layer h -> relu(W h) with W (N x d) i.i.d. N(0, 2 / N) (the variance that keeps E||relu(W x)||^2 =
||x||^2) therefore maps unit inputs at angle a to

    E <f(x), f(y)> = J(a) / pi,     E ||f(x) - f(y)||^2 = 2 - 2 J(a) / pi   (input: 2 - 2 cos a),

so the angle contracts (cos a' = J(a) / pi > cos a for 0 < a < pi) and the squared distance is
multiplied by (1 - J(a) / pi) / (1 - cos a) = 1 - (sin a - a cos a) / (pi (1 - cos a)), which falls
from 1 (a -> 0) to 1/2 (a = pi): relative to the input distance, pairs at a *large* angle are brought
together more, pairs at a small angle are nearly kept (the brief's "distances shrink more for points
at a small angle" does not match the closed form in relative terms; what is stated here is what
the closed form and the measurements say; Giryes et al.'s paper was not at hand). Iterating the map
(depth L, a fresh random layer each time) drives every angle to 0: cos a_{l+1} = J(a_l) / pi.

Measurements (baselines, one row per (angle, depth); float64, vmapped over K independent random
networks): x = e_1, y = cos a e_1 + sin a e_2 in R^32, layers of width N = 512, K = 512 networks
(quick: N = 256, K = 128), angles ANGLES, depths 1..DEPTH, the same networks for every angle (a
depth-6 network is measured after each of its layers). Stored: the mean over the networks of <h_x, h_y> and of ||h_x -
h_y||^2, their standard errors, and the closed forms (iterated for depth > 1: the expectation of the
iterated map differs from the iterated expectation by O(1 / N) at finite width, so the deeper
comparison uses an absolute tolerance of 0.03 on the cosine instead of the standard error).

The engine run is a token: a sweep folder needs runs, so one tiny ReLU MLP (depth 3, width 16, He
init, teacher-student data in R^8) is trained for 50 steps, as ``global-optimality`` does with its
contrast runs; the measurements are the baselines.

Measured with ``trajlab run random-weights-geometry --quick`` (N = 256, K = 128; 5.4 s of CPU on a
2-core machine shared with other jobs): depth 1, the largest deviation from the closed forms was
1.84 standard errors (inner product; 0.0075 absolute) and 2.91 (squared distance); squared-distance
ratio 0.961 +- 0.012 (closed form 0.989) at a = 0.05, 0.772 +- 0.008 (0.792) at a = 1, 0.505 +- 0.004
(0.502) at a = 3; depth 2..6: largest |measured cosine - iterated closed form| 0.0205 (a = 3, depth
6), the angle 3 -> 1.571, 1.243, 1.054, 0.935, 0.838, 0.773 (closed form 1.570, 1.247, 1.054,
0.921, 0.822, 0.744).
``trajlab run random-weights-geometry`` (N = 512, K = 512; 31 s of CPU): depth 1 within 1.74 (inner
product) and 2.06 (squared distance) standard errors; ratio 0.982 +- 0.004 (0.989) at a = 0.05,
0.503 +- 0.001 (0.502) at a = 3; deeper: largest cosine deviation 0.0053, the angle 3 -> 1.571,
1.246, 1.060, 0.927, 0.828, 0.752.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig
from trajlab.presets.claims import baseline_rows, fmt, not_measured
from trajlab.presets.preset import Claim, Preset
from trajlab.report.columns import require_columns
from trajlab.sweep.runner import BaselineJob, baseline_id

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ANGLES = (0.05, 0.2, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
DEPTH = 6
INPUT_DIM = 32
WIDTH = 512
NETWORKS = 512
QUICK_NETWORKS = 128
QUICK_WIDTH = 256
#: Single layer: the mean over the networks lies within this many standard errors of the closed form.
STANDARD_ERRORS = 4.0
#: Deeper: |measured cosine - iterated closed form| <= this (absolute). The expectation of the iterated map
#: differs from the iterated expectation by O(1 / N) at finite width: measured at depth 6, the largest
#: deviation over the angles was 0.016 at width 256 (512 networks), 0.005 at width 1024 (128 networks).
DEPTH_TOLERANCE = 0.03
#: The measured angle must decrease with depth from this input angle on.
MONOTONE_FROM = 0.5


def arc_cosine(angle):
    """J(a) / pi = E <f(x), f(y)> for unit x, y at angle a (He-scaled ReLU layer; Cho & Saul 2009)."""
    angle = np.asarray(angle, np.float64)
    return (np.sin(angle) + (np.pi - angle) * np.cos(angle)) / np.pi


def iterated_cosine(angle: float, depth: int) -> float:
    """cos a_L after ``depth`` layers: c_{l+1} = J(arccos c_l) / pi, c_0 = cos a."""
    cosine = math.cos(angle)
    for _ in range(depth):
        cosine = float(arc_cosine(math.acos(min(1.0, max(-1.0, cosine)))))
    return cosine


@functools.lru_cache(maxsize=4)
def measure_networks(networks: int = NETWORKS, width: int = WIDTH, seed: int = 0) -> dict:
    """Per (angle, depth): mean and standard error over ``networks`` random ReLU networks of depth ``DEPTH``
    (the same networks for every angle; depth L reads the L-th layer) of <h_x, h_y> and ||h_x - h_y||^2,
    the measured output angle, and the closed forms. Cached: the baseline jobs of one sweep share it."""
    import jax
    import jax.numpy as jnp

    angles = np.asarray(ANGLES, np.float64)
    with jax.enable_x64(True):
        pairs = np.zeros((len(angles), 2, INPUT_DIM))
        pairs[:, 0, 0] = 1.0
        pairs[:, 1, 0], pairs[:, 1, 1] = np.cos(angles), np.sin(angles)

        def one(key):
            h = jnp.asarray(pairs)  # (angles, 2, d)
            out = []
            for _ in range(DEPTH):
                key, sub = jax.random.split(key)
                weights = jax.random.normal(sub, (width, h.shape[-1]), jnp.float64) * jnp.sqrt(2.0 / width)
                h = jax.nn.relu(h @ weights.T)
                out.append(jnp.stack([jnp.sum(h[:, 0] * h[:, 1], -1), jnp.sum((h[:, 0] - h[:, 1]) ** 2, -1),
                                      jnp.sum(h[:, 0] ** 2, -1), jnp.sum(h[:, 1] ** 2, -1)]))
            return jnp.stack(out)  # (depth, 4, angles)

        keys = jax.random.split(jax.random.PRNGKey(seed), networks)
        samples = np.asarray(jax.jit(jax.vmap(one))(keys))  # (networks, depth, 4, angles)
    mean = samples.mean(axis=0)
    error = samples.std(axis=0, ddof=1) / math.sqrt(networks)
    table = {}
    for d in range(DEPTH):
        for i, angle in enumerate(ANGLES):
            cosine = iterated_cosine(angle, d + 1)
            measured = mean[d, 0, i] / math.sqrt(mean[d, 2, i] * mean[d, 3, i])
            table[(float(angle), d + 1)] = dict(
                inner_mean=float(mean[d, 0, i]),
                inner_se=float(error[d, 0, i]),
                distance_mean=float(mean[d, 1, i]),
                distance_se=float(error[d, 1, i]),
                norm_mean=float(0.5 * (mean[d, 2, i] + mean[d, 3, i])),
                measured_cosine=float(measured),
                measured_angle=math.acos(min(1.0, max(-1.0, float(measured)))),
                inner_closed_form=cosine,
                distance_closed_form=2.0 - 2.0 * cosine,
                input_distance=2.0 - 2.0 * math.cos(angle),
                output_angle=math.acos(min(1.0, max(-1.0, cosine))),
            )
    return table


def _measurement(angle: float, depth: int, networks: int, width: int) -> dict:
    return dict(measure_networks(networks, width)[(float(angle), depth)])


def random_weights_jobs(configs: list[RunConfig]) -> list[BaselineJob]:
    """One row per (angle, depth), all from one set of random networks (:func:`measure_networks`);
    K = 128 networks of width 256 when the sweep's runs are the quick ones (max_steps <= 20)."""
    quick = all(config.train.max_steps <= 20 for config in configs)
    networks, width = (QUICK_NETWORKS, QUICK_WIDTH) if quick else (NETWORKS, WIDTH)
    jobs = []
    for depth in range(1, DEPTH + 1):
        for angle in ANGLES:
            key = dict(angle=angle, depth=depth, networks=networks, width=width, input_dim=INPUT_DIM)
            columns = {"baseline": "random_relu_layers", "angle": angle, "depth": depth, "networks": networks,
                       "width": width}
            jobs.append(BaselineJob(baseline_id("random_relu_layers", key), columns,
                                    functools.partial(_measurement, angle, depth, networks, width)))
    return jobs


# ---------------------------------------------------------------------------------------------
# claims


def _rows(data) -> pd.DataFrame:
    return baseline_rows(data, "random_relu_layers")


def single_layer_matches_arc_cosine(data):
    """Depth 1: for every angle the mean <f(x), f(y)> and the mean ||f(x) - f(y)||^2 over the random layers are
    within 4 standard errors of J(a) / pi and 2 - 2 J(a) / pi."""
    rows = _rows(data)
    rows = rows[rows["depth"] == 1] if len(rows) else rows
    if len(rows) == 0:
        return not_measured("no depth-1 measurements")
    worst_inner = ((rows["inner_mean"] - rows["inner_closed_form"]).abs() / rows["inner_se"]).max()
    worst_distance = ((rows["distance_mean"] - rows["distance_closed_form"]).abs() / rows["distance_se"]).max()
    largest = (rows["inner_mean"] - rows["inner_closed_form"]).abs().max()
    holds = bool(worst_inner <= STANDARD_ERRORS and worst_distance <= STANDARD_ERRORS)
    return (f"{len(rows)} angles, {int(rows['networks'].iloc[0])} layers of width {int(rows['width'].iloc[0])} each: "
            f"largest deviation {fmt(worst_inner)} standard errors (inner product, at most {fmt(largest)} absolute), "
            f"{fmt(worst_distance)} (squared distance)"), holds


def shrink_factor(data):
    """Depth 1: the measured squared-distance ratio ||f(x) - f(y)||^2 / ||x - y||^2 matches the closed form
    1 - (sin a - a cos a) / (pi (1 - cos a)) within 4 standard errors, and the closed form falls with the angle
    (from ~1 at small angles to ~1/2 at a = pi): in relative terms, pairs at a larger angle are brought
    together more."""
    rows = _rows(data)
    rows = rows[rows["depth"] == 1].sort_values("angle") if len(rows) else rows
    if len(rows) < 2:
        return not_measured("needs depth-1 measurements at two angles")
    measured = (rows["distance_mean"] / rows["input_distance"]).to_numpy()
    closed = (rows["distance_closed_form"] / rows["input_distance"]).to_numpy()
    errors = (rows["distance_se"] / rows["input_distance"]).to_numpy()
    holds = bool(np.all(np.abs(measured - closed) <= STANDARD_ERRORS * errors) and np.all(np.diff(closed) < 0)
                 and measured[0] > measured[-1])
    pairs = ", ".join(f"{a:g}: {m:.4f} +- {e:.4f} ({c:.4f})" for a, m, e, c in zip(rows["angle"], measured, errors, closed))
    return f"angle: measured ratio +- standard error (closed form) {pairs}", holds


def deeper_layers_follow_the_iterated_map(data):
    """Depth 2..6: the measured cosine mean <h_x, h_y> / sqrt(mean ||h_x||^2 mean ||h_y||^2) is within 0.01 of the
    iterated closed form cos a_L for every angle, and the measured angle between the outputs decreases with
    depth for every input angle >= 0.5 (below, one layer moves the angle by less than the measurement resolves:
    a' = a (1 - a / (3 pi)) + O(a^3))."""
    rows = _rows(data)
    rows = rows[rows["depth"] > 1] if len(rows) else rows
    if len(rows) == 0:
        return not_measured("no measurements deeper than one layer")
    error = (rows["measured_cosine"] - rows["inner_closed_form"]).abs()
    holds = bool(error.max() <= DEPTH_TOLERANCE)
    every = _rows(data)
    for angle, group in every[every["angle"] >= MONOTONE_FROM].groupby("angle"):
        holds &= bool(np.all(np.diff(group.sort_values("depth")["measured_angle"].to_numpy()) < 0))
    widest = every[every["angle"] == every["angle"].max()].sort_values("depth")
    return (f"largest |measured cosine - iterated closed form| {fmt(error.max())} over {len(rows)} (angle, depth) pairs; "
            f"angle {widest['angle'].iloc[0]:g} -> " + ", ".join(
                f"{a:.3f} ({c:.3f})" for a, c in zip(widest["measured_angle"], widest["output_angle"]))
            + f" after depth 1..{int(widest['depth'].max())} (closed form in brackets)"), holds


# ---------------------------------------------------------------------------------------------
# figures


def random_weights_figure(baselines: pd.DataFrame) -> Figure:
    """Left: output angle against input angle, measured (markers) and closed form (lines), one colour per
    depth; right: squared-distance ratio against the input angle at depth 1, measured and closed form."""
    from matplotlib.figure import Figure

    require_columns(baselines, ["baseline"], "baselines")
    rows = baselines[baselines["baseline"] == "random_relu_layers"]
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    angle_ax, ratio_ax = fig.subplots(1, 2)
    grid = np.linspace(1e-3, np.pi, 200)
    for depth, group in rows.groupby("depth"):
        group = group.sort_values("angle")
        line = angle_ax.plot(grid, [math.acos(iterated_cosine(a, int(depth))) for a in grid], linewidth=1,
                             label=f"depth {int(depth)}")[0]
        angle_ax.plot(group["angle"], group["measured_angle"], "o", color=line.get_color(), markersize=4)
    angle_ax.plot(grid, grid, "k:", linewidth=0.8)
    angle_ax.set(xlabel="input angle a", ylabel="output angle (measured: markers)",
                 title="angles contract (lines: closed form)")
    one = rows[rows["depth"] == 1].sort_values("angle")
    if len(one):
        ratio_ax.errorbar(one["angle"], one["distance_mean"] / one["input_distance"],
                          yerr=4 * one["distance_se"] / one["input_distance"], fmt="o", label="measured (4 s.e.)")
    ratio_ax.plot(grid, (2 - 2 * arc_cosine(grid)) / (2 - 2 * np.cos(grid)), "k-", linewidth=1, label="closed form")
    ratio_ax.set(xlabel="input angle a", ylabel="||f(x) - f(y)||^2 / ||x - y||^2", title="one random ReLU layer")
    for ax in (angle_ax, ratio_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def random_weights_figures(data) -> dict:
    return {"random_layers": random_weights_figure(data.baselines)}


RANDOM_WEIGHTS_GEOMETRY = Preset(
    name="random-weights-geometry",
    description="A random Gaussian ReLU layer maps angles by the arc-cosine kernel (Giryes et al. 2016, Cho & Saul 2009)",
    base=RunConfig(
        problem=ProblemConfig(kind="teacher_student", n=8, teacher_width=4, observations=32, test_samples=32),
        model=ModelConfig(kind="mlp", depth=3, width=16, activation="relu", init="he", scale=1.0),
        optimizer=OptimizerConfig(name="gd", lr=0.01),
        train=TrainConfig(max_steps=50, tol=0.0, record_points=5),
        metrics=("train_loss",),
    ),
    quick={"train.max_steps": 20},
    baselines=random_weights_jobs,
    figures=random_weights_figures,
    claims=(
        Claim("one random Gaussian ReLU layer maps the inner product of unit inputs at angle a to the arc-cosine "
              "kernel J(a) / pi and the squared distance to 2 - 2 J(a) / pi (Cho & Saul 2009; Giryes et al. 2016), "
              "within 4 standard errors over the random layers", single_layer_matches_arc_cosine),
        Claim("distances shrink by a predictable factor, 1 - (sin a - a cos a) / (pi (1 - cos a)), which depends on "
              "the angle (measured within 4 standard errors)", shrink_factor),
        Claim("after several random layers the angle follows the iterated map cos a_{l+1} = J(a_l) / pi (cosine within "
              "0.03, the finite-width bias included) and keeps contracting (checked from a = 0.5)", deeper_layers_follow_the_iterated_map),
    ),
)
