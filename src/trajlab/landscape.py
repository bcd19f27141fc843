"""Loss-landscape slices of a finished sweep: 1-D segments and 2-D filter-normalized planes.

A sweep folder stores trajectories, not parameters, so the init and final parameters of a run are
recomputed here with the engine's own compiled functions (``CompiledTask(build_task(config))``:
init, then advance to the run's recorded final step), which reproduces the stored run.

- **Segment** (Goodfellow, Vinyals, Saxe, ICLR 2015): L((1 - a) w_0 + a w_T) for a in
  [-0.25, 1.25], w_0 the init and w_T the final point.
- **Between two runs** (linear mode connectivity; Frankle et al., ICML 2020): L((1 - a) w_A + a w_B)
  for a in [0, 1] between the final points of two runs with the same static structure (same
  shapes and data); the *barrier* is max_a [L((1 - a) w_A + a w_B) - ((1 - a) L(w_A) + a L(w_B))].
- **Plane** (Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets",
  NeurIPS 2018, Sec. 4): L(w_T + a d_1 + b d_2) on a G x G grid of (a, b) in [-span, span]^2, d_1, d_2
  Gaussian directions, *filter-normalized*: for every leaf with ndim >= 2, each slice along axis 0
  (a row: one neuron / output unit of the (out, in) weight matrices trajlab's families use) is
  rescaled to the norm of the same slice of w_T; leaves with ndim < 2 (biases) get direction 0, as
  Li et al. do for biases. The grid is evaluated in one compiled, vmapped call, in chunks of
  ``chunk`` points (``jax.lax.map`` with ``batch_size``) so that memory stays bounded.
- **Trajectory plane** (Li et al. 2018, Sec. 7): the parameters w_0, ..., w_{R-1} = w_T at the run's R
  recording steps are recomputed (the engine's compiled advance from one recording step to the
  next, as the run did), stacked as rows of M = [w_0 - w_T; ...; w_{R-1} - w_T] (centered at the
  final point, as Li et al. write M; no further mean subtraction), and the plane is spanned by the
  top two right singular vectors e_1, e_2 of M (computed from the R x R Gram matrix M M^T, then
  e_j = M^T u_j / s_j; signs chosen so that the init has coordinates <= 0). The trajectory is drawn
  as its projections (M e_1, M e_2) (the final point at (0, 0)); the loss L(w_T + a e_1 + b e_2) is
  evaluated on a G x G grid covering the projected path with a 25% margin on each side (the
  b-range at least 10% of the a-range), in the *same* compiled, chunked vmapped call as the random
  plane (one grid of coefficients over the four directions). ``explained``: s_j^2 / sum_i s_i^2.
  With fewer than 3 recording points (or a path on a line) the second direction is completed by a
  Gaussian direction orthogonalized against e_1 (explained 0). The recomputed parameters of every
  run of a group are held at all its recording points at once (R x runs x n numbers; pass ``run``
  for one run of a large sweep).

:func:`landscape` returns a long DataFrame (``run_id``, ``kind`` in {segment, pair, plane,
trajectory}, ``slice`` ("line" for segments and pairs, "random" for the filter-normalized plane,
"pca" for the trajectory plane and the projected trajectory), ``other_run_id`` for pairs,
``alpha``, ``beta`` (NaN off the planes), ``step`` (the recording step of a trajectory row), ``loss``
(on a trajectory row: the recomputed loss at that recording point, not at its projection));
:func:`write_landscape` writes it to ``DIR/landscape/landscape.parquet`` with figures in
``DIR/landscape/figures``. The CLI is ``trajlab landscape DIR [--run RUN_ID] [--points G] [--span S]
[--chunk C] [--benchmark]``.

:func:`plane_benchmark` times the vmapped grid against a plain Python loop that calls a jitted
loss of (params, d1, d2, a, b) once per grid point, on the same grid, in one process.

Measured (2026-11-29, shared 2-core CPU, float32): a 21 x 21 plane around a 64-16-16-10 ReLU MLP on
100 digits images: the vmapped grid runs at ~12,600 points / s, a Python loop calling the jitted
loss once per point at ~780 points / s (ratio ~16). ``trajlab landscape`` on a 2-run sweep of that
MLP (--points 11; recomputing both runs, 300 steps) took 7.7 s of CPU.

Measured again with :func:`plane_benchmark` (same day, same shared 2-core CPU under a load average
of ~5, float32, chunk 256, fastest of 3; ``python`` on :func:`benchmark_sweep` of a 2-run sweep:
MLP depth 3 width 16 without biases, digits, 100 images, squared loss, GD lr 0.1, 300 steps, 20
recording points): 21 x 21 grid: vmapped 104,000-157,000 points / s, loop 4,000-4,100 points / s,
ratio 26-38; 51 x 51 grid: vmapped 129,000-142,000, loop 2,900-3,100, ratio 41-50 (identical
losses). On a 2 x 4 deep linear sensing net (4 x 4, rank 1, 20 observations) the 21 x 21 ratio is
~210 (the loop is dispatch-bound). ``trajlab landscape DIR --points 21 --benchmark`` on that MLP
sweep (both runs: segments, random and PCA planes, pair, benchmark) took 10.1 s user + 0.5 s sys.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajlab.errors import ConfigError

#: Segment coefficients (init at 0, final at 1).
SEGMENT = np.linspace(-0.25, 1.25, 31)
#: Coefficients between two runs' final points.
PAIR = np.linspace(0.0, 1.0, 21)


def _configs(data) -> dict[str, Any]:
    from trajlab.config import from_flat

    return {rid: from_flat(flat) for rid, flat in data.manifest.get("configs", {}).items()}


def recorded_params(configs: list, steps: list):
    """(params per run: {step: params} for each step of ``steps[i]`` (a list of recording steps), loss
    function, data) for runs of equal static structure, recomputed with the engine: its init, then
    its compiled advance from one recording step to the next (the union of all runs' steps), as the
    sweep ran them; each run's params are taken at its own steps."""
    import jax
    import jax.numpy as jnp

    from trajlab.engine.loop import CompiledTask
    from trajlab.engine.loop import cast_data
    from trajlab.engine.task import build_task
    from trajlab.problems.registry import make_data

    task = build_task(configs[0])
    compiled = CompiledTask(task)
    data = cast_data(make_data(configs[0].problem), task.dtype)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(np.asarray([c.seed for c in configs], np.uint32)))
    scales = jnp.asarray([c.model.scale for c in configs], task.dtype)
    lrs = jnp.asarray([c.optimizer.lr for c in configs], task.dtype)
    state = compiled.init(keys, scales, data)
    wanted = [set(int(x) for x in s) for s in steps]
    out: list[dict] = [{} for _ in configs]
    for target in sorted(set().union(*wanted)):
        if target > 0:
            state = compiled.advance(state, lrs, jnp.asarray(target, jnp.int32), data)
        for i, chosen in enumerate(wanted):
            if target in chosen:
                out[i][target] = jax.tree_util.tree_map(lambda x: x[i], state["params"])
    return out, task.loss, data


def endpoints(configs: list, steps: list[int]):
    """(initial params, final params, loss function, data) for runs of equal static structure: the
    engine's init and its advance to each run's ``steps``, batched (leaves have a leading run axis)."""
    params, loss, data = recorded_params(configs, [[0, s] for s in steps])
    return [p[0] for p in params], [p[int(s)] for p, s in zip(params, steps)], loss, data


def pca_plane(points, key=None):
    """(e_1, e_2 (n,) orthonormal, coordinates (R, 2), explained (2,)) of the rows of ``points`` (R, n),
    the parameters at the recording points with the final point last: the top two right singular
    vectors of M = points - points[-1] from the Gram matrix M M^T (float64), signs such that the
    first row's coordinates are <= 0; a missing second direction (rank M < 2: a share below 1e-10,
    rounding) is a Gaussian one (seeded by ``key``) orthogonalized against e_1, with share 0."""
    points = np.asarray(points, np.float64)
    centered = points - points[-1]
    values, vectors = np.linalg.eigh(centered @ centered.T)
    order = np.argsort(values)[::-1]
    values, vectors = np.maximum(values[order], 0.0), vectors[:, order]
    total = float(np.sum(values))
    if total <= 0.0:
        raise ValueError("pca_plane: the recorded parameters do not move")
    directions, explained = [], []
    for j in range(2):
        if j < len(values) and values[j] > 1e-10 * total:
            e = centered.T @ vectors[:, j] / np.sqrt(values[j])
            explained.append(values[j] / total)
        else:
            rng = np.random.default_rng([0 if key is None else int(key), 14])
            explained.append(0.0)
            e = np.zeros(points.shape[1])
            while np.linalg.norm(e) < 0.5:  # a draw nearly along e_1 is drawn again
                e = rng.standard_normal(points.shape[1])
                e = e / np.linalg.norm(e)
                for previous in directions:
                    e = e - (e @ previous) * previous
        for previous in directions:  # (re)orthogonalize: exact in theory, cleans rounding
            e = e - (e @ previous) * previous
        e = e / np.linalg.norm(e)
        if (centered[0] @ e) > 0:
            e = -e
        directions.append(e)
    coordinates = centered @ np.stack(directions, axis=1)
    return directions[0], directions[1], coordinates, np.asarray(explained)


def _pca_grid(coordinates, points: int):
    """The G x G coefficients (a, b) of the trajectory plane: the projected path's range with a 25%
    margin, the b-range at least 10% of the a-range."""
    low, high = coordinates.min(axis=0), coordinates.max(axis=0)
    size = np.maximum(high - low, 1e-12)
    size[1] = max(size[1], 0.1 * size[0])
    middle = (low + high) / 2
    axes = [np.linspace(middle[j] - 0.75 * size[j], middle[j] + 0.75 * size[j], points) for j in range(2)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)


def filter_normalized_direction(key, params):
    """A Gaussian direction shaped like ``params``, each axis-0 slice of every leaf with ndim >= 2
    rescaled to the norm of that slice of ``params``; zero for leaves of ndim < 2 (Li et al. 2018)."""
    import jax
    import jax.numpy as jnp

    leaves, treedef = jax.tree_util.tree_flatten(params)
    out = []
    for i, leaf in enumerate(leaves):
        if jnp.ndim(leaf) < 2:
            out.append(jnp.zeros_like(leaf))
            continue
        d = jax.random.normal(jax.random.fold_in(key, i), leaf.shape, leaf.dtype)
        axes = tuple(range(1, leaf.ndim))
        norm = jnp.sqrt(jnp.sum(leaf**2, axis=axes, keepdims=True))
        out.append(d * norm / jnp.maximum(jnp.sqrt(jnp.sum(d**2, axis=axes, keepdims=True)), 1e-30))
    return jax.tree_util.tree_unflatten(treedef, out)


def _grid_function(loss, data, chunk: int):
    """A jitted ``(params, directions (tuple of D pytrees), coefficients (P, D)) -> losses (P,)``:
    L(params + sum_j c_j d_j) per row, ``jax.lax.map`` over the rows in vmapped chunks of ``chunk``."""
    import jax

    def one(params, directions, c):
        def moved_leaf(w, *ds):
            return w + sum(c[j] * d for j, d in enumerate(ds))

        return loss(jax.tree_util.tree_map(moved_leaf, params, *directions), data)

    return jax.jit(lambda params, directions, coefficients: jax.lax.map(
        lambda c: one(params, directions, c), coefficients, batch_size=chunk))


def _plane_function(loss, data, chunk: int):
    """A jitted ``(params, d1, d2, coefficients (P, 2)) -> losses (P,)``."""
    grid = _grid_function(loss, data, chunk)
    return lambda params, d1, d2, c: grid(params, (d1, d2), c)


def plane_losses(loss, params, data, d1, d2, coefficients, chunk: int = 256, function=None):
    """L(params + a d1 + b d2) for each row (a, b) of ``coefficients`` (P, 2): one compiled call,
    vmapped in chunks of ``chunk`` points (``function``: a compiled one from :func:`_plane_function`)."""
    import jax
    import jax.numpy as jnp

    function = function or _plane_function(loss, data, chunk)
    return function(params, d1, d2, jnp.asarray(coefficients, jax.tree_util.tree_leaves(params)[0].dtype))


def plane_benchmark(loss, params, data, d1, d2, coefficients, chunk: int = 256, repeats: int = 3) -> dict:
    """Grid points per second of the vmapped, chunked plane (:func:`plane_losses`, compiled first,
    then the fastest of ``repeats`` calls) and of a plain Python loop over the same points calling a
    jitted ``(params, d1, d2, a, b) -> loss`` once per point (compiled on the first point, then the
    fastest of ``repeats`` passes over all points), and their ratio; also the largest relative
    difference of the two sets of losses. Both in this process, one after the other."""
    import jax
    import jax.numpy as jnp

    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    coefficients = np.asarray(coefficients, float)
    function = _plane_function(loss, data, chunk)
    jax.block_until_ready(plane_losses(loss, params, data, d1, d2, coefficients, chunk, function))
    vmapped = float("inf")
    for _ in range(max(1, int(repeats))):
        start = time.perf_counter()
        grid = plane_losses(loss, params, data, d1, d2, coefficients, chunk, function)
        grid = np.asarray(jax.block_until_ready(grid))
        vmapped = min(vmapped, time.perf_counter() - start)

    @jax.jit
    def point(params, d1, d2, a, b):
        return loss(jax.tree_util.tree_map(lambda w, x, y: w + a * x + b * y, params, d1, d2), data)

    jax.block_until_ready(point(params, d1, d2, jnp.asarray(0.0, dtype), jnp.asarray(0.0, dtype)))
    loop = float("inf")
    for _ in range(max(1, int(repeats))):
        start = time.perf_counter()
        looped = np.asarray([float(point(params, d1, d2, jnp.asarray(a, dtype), jnp.asarray(b, dtype)))
                             for a, b in coefficients])
        loop = min(loop, time.perf_counter() - start)
    scale = np.maximum(np.abs(looped), 1e-30)
    return {"points": len(coefficients), "vmapped_points_per_s": len(coefficients) / vmapped,
            "loop_points_per_s": len(coefficients) / loop, "ratio": loop / vmapped,
            "max_relative_difference": float(np.max(np.abs(grid - looped) / scale))}


def segment_losses(loss, start, end, data, alphas, chunk: int = 256):
    """L((1 - a) start + a end) for each a of ``alphas`` (vmapped in chunks)."""
    import jax

    direction = jax.tree_util.tree_map(lambda a, b: b - a, start, end)
    zero = jax.tree_util.tree_map(lambda x: 0.0 * x, start)
    pairs = np.stack([np.asarray(alphas, float), np.zeros(len(alphas))], axis=1)
    return plane_losses(loss, start, data, direction, zero, pairs, chunk)


def barrier(alphas, losses) -> float:
    """max_a [L(a) - ((1 - a) L(0) + a L(1))] over a segment from a = 0 to a = 1."""
    alphas, losses = np.asarray(alphas, float), np.asarray(losses, float)
    return float(np.max(losses - ((1 - alphas) * losses[0] + alphas * losses[-1])))


def landscape(data, run: str | None = None, points: int = 21, span: float = 1.0, chunk: int = 256,
              seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """The slices of every finished run of ``data`` (or of ``run`` only), and a summary dict:
    ``barriers`` {(run, other): height}, ``plane_points_per_s`` (the vmapped grid's evaluation rate,
    compiled, second call), ``pca_explained`` {run: (share of e_1, share of e_2)} and ``notes``."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from trajlab.config import static_key

    if points < 2 or points > 401:
        raise ConfigError(f"--points must be an integer in [2, 401], got {points}")
    if not (span > 0 and np.isfinite(span)):
        raise ConfigError(f"--span must be a number > 0, got {span}")
    if chunk < 1:
        raise ConfigError(f"--chunk must be an integer >= 1, got {chunk}")
    configs = _configs(data)
    runs = data.runs
    if run is not None:
        if run not in set(runs["run_id"]):
            raise ConfigError(f"--run must be a run id of the sweep ({', '.join(runs['run_id'][:5])}, ...), got {run!r}")
    groups: dict[tuple, list[str]] = {}
    for rid in runs["run_id"]:
        if rid in configs:
            groups.setdefault(static_key(configs[rid]), []).append(rid)
    steps = dict(zip(runs["run_id"], runs["steps"].astype(int)))
    trajectories = data.trajectories
    recorded = {rid: sorted(int(x) for x in block["step"]) for rid, block in trajectories.groupby("run_id")}
    rows, barriers, rate, explained, notes = [], {}, float("nan"), {}, []
    grid = np.linspace(-span, span, points)
    coefficients = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).reshape(-1, 2)
    for ids in groups.values():
        if run is not None and run not in ids:
            continue
        chosen = ids if run is None else [run] + [i for i in ids if i != run][:1]
        targets = chosen if run is None else [run]
        wanted = [sorted({0, steps[i]} | ({s for s in recorded.get(i, []) if s <= steps[i]} if i in targets else set()))
                  for i in chosen]
        recomputed, loss, batch_data = recorded_params([configs[i] for i in chosen], wanted)
        final = [p[steps[i]] for p, i in zip(recomputed, chosen)]
        function = _grid_function(loss, batch_data, chunk)
        for index, rid in enumerate(chosen):
            if rid not in targets:
                continue
            initial, end = recomputed[index][0], final[index]
            values = np.asarray(segment_losses(loss, initial, end, batch_data, SEGMENT, chunk))
            rows += [dict(run_id=rid, kind="segment", slice="line", alpha=a, beta=np.nan, loss=v)
                     for a, v in zip(SEGMENT, values)]
            key = jax.random.PRNGKey(seed)
            d1 = filter_normalized_direction(jax.random.fold_in(key, 1), end)
            d2 = filter_normalized_direction(jax.random.fold_in(key, 2), end)
            dtype = jax.tree_util.tree_leaves(end)[0].dtype
            # the trajectory plane: PCA of the parameters at the recording points, centered at the final one
            path_steps = wanted[index]
            flat_end, unravel = ravel_pytree(end)
            stacked = np.stack([np.asarray(ravel_pytree(recomputed[index][s])[0], np.float64) for s in path_steps])
            try:
                e1, e2, projected, shares = pca_plane(stacked, seed)
            except ValueError as error:
                notes.append(f"run {rid}: no trajectory plane ({error})")
                e1 = e2 = projected = None
            zero = jax.tree_util.tree_map(jnp.zeros_like, end)
            if e1 is not None:
                explained[rid] = tuple(float(x) for x in shares)
                p1, p2 = (unravel(jnp.asarray(e, dtype)) for e in (e1, e2))
                pca_coefficients = _pca_grid(projected, points)
            else:
                p1 = p2 = zero
                pca_coefficients = np.zeros((0, 2))
            both = np.concatenate([
                np.concatenate([coefficients, np.zeros_like(coefficients)], axis=1),
                np.concatenate([np.zeros_like(pca_coefficients), pca_coefficients], axis=1)])
            both = jnp.asarray(both, dtype)
            values = np.asarray(function(end, (d1, d2, p1, p2), both))
            start = time.perf_counter()
            jax.block_until_ready(function(end, (d1, d2, p1, p2), both))
            rate = len(both) / (time.perf_counter() - start)
            n = len(coefficients)
            rows += [dict(run_id=rid, kind="plane", slice="random", alpha=a, beta=b, loss=v)
                     for (a, b), v in zip(coefficients, values[:n])]
            if e1 is not None:
                rows += [dict(run_id=rid, kind="plane", slice="pca", alpha=a, beta=b, loss=v)
                         for (a, b), v in zip(pca_coefficients, values[n:])]
                path_losses = np.asarray(jax.vmap(lambda x: loss(unravel(x), batch_data))(jnp.asarray(stacked, dtype)))
                rows += [dict(run_id=rid, kind="trajectory", slice="pca", alpha=a, beta=b, step=st, loss=v)
                         for (a, b), st, v in zip(projected, path_steps, path_losses)]
        for a, b in zip(range(len(chosen)), range(1, len(chosen))):
            if chosen[a] not in targets and chosen[b] not in targets:
                continue
            values = np.asarray(segment_losses(loss, final[a], final[b], batch_data, PAIR, chunk))
            barriers[(chosen[a], chosen[b])] = barrier(PAIR, values)
            rows += [dict(run_id=chosen[a], other_run_id=chosen[b], kind="pair", slice="line", alpha=x, beta=np.nan,
                          loss=v) for x, v in zip(PAIR, values)]
    frame = pd.DataFrame(rows)
    for column in ("other_run_id", "step", "slice"):
        if column not in frame.columns:
            frame[column] = None
    frame["step"] = frame["step"].astype("Int64")
    return frame, {"barriers": barriers, "plane_points_per_s": rate, "pca_explained": explained, "notes": notes}


def landscape_figures(frame: pd.DataFrame, explained: dict | None = None) -> dict:
    """``segments``: loss along init -> final per run (and along run -> run pairs); ``plane_<run>``:
    contours of the filter-normalized plane around each final point (log10 of the loss);
    ``pca_<run>``: the trajectory plane with the projected trajectory drawn on it (``explained``:
    {run: (share of PC1, share of PC2)}, for the axis labels)."""
    from matplotlib.figure import Figure

    figures = {}
    fig = Figure(figsize=(9.0, 3.8), layout="constrained")
    seg_ax, pair_ax = fig.subplots(1, 2)
    for rid, block in frame[frame["kind"] == "segment"].groupby("run_id"):
        seg_ax.plot(block["alpha"], block["loss"], label=rid[:8])
    for (rid, other), block in frame[frame["kind"] == "pair"].groupby(["run_id", "other_run_id"]):
        pair_ax.plot(block["alpha"], block["loss"], label=f"{rid[:6]} -> {other[:6]}")
    seg_ax.set(xlabel="a: (1 - a) w_init + a w_final", ylabel="train loss", yscale="log", title="init -> final")
    pair_ax.set(xlabel="a: (1 - a) w_A + a w_B", ylabel="train loss", yscale="log", title="between two runs")
    for ax in (seg_ax, pair_ax):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    figures["segments"] = fig
    slices = frame["slice"] if "slice" in frame.columns else pd.Series("random", index=frame.index)
    pca = frame[(frame["kind"] == "plane") & (slices == "pca")]
    for rid, block in frame[(frame["kind"] == "plane") & (slices != "pca")].groupby("run_id"):
        alphas, betas = np.unique(block["alpha"]), np.unique(block["beta"])
        z = block.sort_values(["alpha", "beta"])["loss"].to_numpy(float).reshape(len(alphas), len(betas))
        fig = Figure(figsize=(4.6, 4.0), layout="constrained")
        ax = fig.subplots()
        contour = ax.contourf(alphas, betas, np.log10(np.maximum(z, 1e-30)).T, levels=20, cmap="viridis")
        fig.colorbar(contour, ax=ax, label="log10 train loss")
        ax.plot([0], [0], "r*", markersize=8)
        ax.set(xlabel="d1 (filter-normalized)", ylabel="d2 (filter-normalized)", title=f"run {rid[:8]}")
        figures[f"plane_{rid[:8]}"] = fig
    for rid, block in pca.groupby("run_id"):
        alphas, betas = np.unique(block["alpha"]), np.unique(block["beta"])
        z = block.sort_values(["alpha", "beta"])["loss"].to_numpy(float).reshape(len(alphas), len(betas))
        fig = Figure(figsize=(4.8, 4.0), layout="constrained")
        ax = fig.subplots()
        contour = ax.contourf(alphas, betas, np.log10(np.maximum(z, 1e-30)).T, levels=20, cmap="viridis")
        fig.colorbar(contour, ax=ax, label="log10 train loss")
        path = frame[(frame["kind"] == "trajectory") & (frame["run_id"] == rid)].sort_values("step")
        ax.plot(path["alpha"], path["beta"], "w.-", linewidth=1.2, markersize=4)
        ax.plot(path["alpha"].iloc[:1], path["beta"].iloc[:1], "wo", markersize=6, label="init")
        ax.plot([0], [0], "r*", markersize=9, label="final")
        shares = (explained or {}).get(rid)
        labels = [f"PC{j + 1}" + (f" ({100 * shares[j]:.1f}% of the path)" if shares else "") for j in range(2)]
        ax.set(xlabel=labels[0], ylabel=labels[1], title=f"run {rid[:8]}: trajectory plane (PCA)")
        ax.legend(fontsize=7, loc="best")
        figures[f"pca_{rid[:8]}"] = fig
    return figures


def write_landscape(folder, run: str | None = None, points: int = 21, span: float = 1.0, chunk: int = 256,
                    benchmark: bool = False) -> dict:
    """Compute :func:`landscape` for the sweep folder and write ``landscape/landscape.parquet`` and
    its figures (PNG); returns the summary with ``paths`` (and ``benchmark``: :func:`plane_benchmark`
    on the first run's random plane, when asked)."""
    from trajlab.store import load

    folder = Path(folder)
    data = load(folder)
    frame, summary = landscape(data, run=run, points=points, span=span, chunk=chunk)
    if benchmark:
        summary["benchmark"] = benchmark_sweep(data, run=run, points=points, span=span, chunk=chunk)
    out = folder / "landscape"
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for stale in (out / "figures").glob("*.png"):  # figures of an earlier call (e.g. other --run) go
        ours = stale.stem == "segments" or stale.stem.startswith(("plane_", "pca_"))
        if ours and stale.is_file() and not stale.is_symlink():
            stale.unlink()
    frame.to_parquet(out / "landscape.parquet", index=False)
    paths = [out / "landscape.parquet"]
    for name, fig in landscape_figures(frame, summary.get("pca_explained")).items():
        path = out / "figures" / f"{name}.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
    summary["paths"] = paths
    return summary


def benchmark_sweep(data, run: str | None = None, points: int = 21, span: float = 1.0, chunk: int = 256,
                    seed: int = 0) -> dict:
    """:func:`plane_benchmark` on the random plane around the final point of ``run`` (default: the
    first run of ``data``), on the G x G grid that :func:`landscape` evaluates."""
    import jax

    configs = _configs(data)
    rid = run if run is not None else str(data.runs["run_id"].iloc[0])
    steps = int(data.runs.set_index("run_id").loc[rid, "steps"])
    _, (end,), loss, batch_data = endpoints([configs[rid]], [steps])
    key = jax.random.PRNGKey(seed)
    d1 = filter_normalized_direction(jax.random.fold_in(key, 1), end)
    d2 = filter_normalized_direction(jax.random.fold_in(key, 2), end)
    grid = np.linspace(-span, span, points)
    coefficients = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).reshape(-1, 2)
    return {"run_id": rid, **plane_benchmark(loss, end, batch_data, d1, d2, coefficients, chunk)}


__all__ = [
    "barrier",
    "benchmark_sweep",
    "endpoints",
    "filter_normalized_direction",
    "landscape",
    "landscape_figures",
    "pca_plane",
    "plane_benchmark",
    "plane_losses",
    "recorded_params",
    "segment_losses",
    "write_landscape",
]
