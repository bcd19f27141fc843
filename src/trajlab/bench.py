"""Benchmarks: run-steps per second of the compiled engine, against a plain numpy loop.

The configuration is the headline of the issue, :class:`trajlab.config.RunConfig` at its defaults:
100 x 100 matrix completion, rank 5, 2000 observed entries, depth 3 (hidden width 100), normalized
GD with lr 1e-3, ``gaussian_e2e`` init of end-to-end scale 1e-3. Three measurements, side by side
in one process so that they share the machine's state:

- **reference**: an eager numpy loop, one run at a time, with a hand-written gradient of the deep
  factorization and the normalized GD update written out (:func:`numpy_loss_and_grad`,
  :func:`numpy_normalized_gd_step`). It uses none of trajlab's loss, model or optimizer code, so the
  tests can check it against them. Unit: steps per second.
- **throughput**: the engine's ``CompiledTask.advance`` on a batch of ``b`` runs that differ in
  seed, lr and init scale, with ``tol = 0`` so no run stops. The advance is timed for ``steps``
  steps after a compiling call and a warm-up call (``jax.block_until_ready``). Unit: run-steps per
  second = (updates made by all runs in the batch) / seconds. Compile time is reported apart.
- **headline**: the whole headline run (to train loss <= 1e-6, at most 10^6 steps, metrics recorded
  at the config's log schedule) timed end to end, compilation included; compile time (JAX tracing,
  lowering and XLA compilation, from ``jax.monitoring``) is also reported on its own.

Every measurement builds a fresh :class:`trajlab.engine.CompiledTask`, so its compile time is
counted whatever ran before in this process (only JAX's one-off backend start-up is not repeated).
CPU timings depend on the BLAS threads: see ``docs/benchmarks.md``.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from contextlib import contextmanager
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from trajlab.config import RunConfig
from trajlab.engine import CompiledTask, build_task, recording_steps, run_batch
from trajlab.problems.matrix import make_matrix_problem

DEFAULT_SIZES = (1, 8, 64, 512)
HEADLINE_TARGET_S = 10.0
# Per-call compile events of JAX (tracing, lowering to MLIR, XLA compilation).
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


def headline_config(x64: bool = False, **train: Any) -> RunConfig:
    """The issue's headline run: ``RunConfig()`` defaults, with ``train`` fields overridden."""
    base = RunConfig()
    return dataclasses.replace(base, train=dataclasses.replace(base.train, x64=x64, **train))


# ----------------------------------------------------------------------------------------------
# The numpy reference (independent of trajlab's loss, model and optimizer code)
# ----------------------------------------------------------------------------------------------


def numpy_init(shapes, scale: float, seed: int, dtype=np.float32, width: int | None = None) -> list[np.ndarray]:
    """Layers i.i.d. N(0, std^2), std = scale^(1/N) / sqrt(width): the ``gaussian_e2e`` convention.

    width: the hidden width (default: the output size of the first layer). Drawn with numpy, so the
    layers differ from the engine's (JAX random numbers); the cost of a step does not depend on them.
    """
    depth = len(shapes)
    width = shapes[0][0] if width is None else width
    std = scale ** (1.0 / depth) / np.sqrt(width)
    rng = np.random.default_rng(seed)
    return [(std * rng.standard_normal(shape)).astype(dtype) for shape in shapes]


def numpy_loss_and_grad(layers, rows, cols, values):
    """Loss (1/M) sum_k ((W_N ... W_1)[rows_k, cols_k] - values_k)^2 and its gradient by hand.

    With W = W_N ... W_1, G = dL/dW = (2/M) sum_k r_k e_{rows_k} e_{cols_k}^T (r the residuals),
    dL/dW_j = (W_N ... W_{j+1})^T G (W_{j-1} ... W_1)^T. The prefix products P_j = W_j ... W_1 come
    from the forward pass; the backward pass carries U_j = (W_N ... W_{j+1})^T G down the layers.
    """
    prefixes = [layers[0]]
    for layer in layers[1:]:
        prefixes.append(layer @ prefixes[-1])
    product = prefixes[-1]
    m, n = product.shape
    residual = product[rows, cols] - values
    count = residual.shape[0]
    loss = np.mean(residual.astype(np.float64) ** 2)
    # bincount sums repeated entries, so duplicated observations are handled as the mean over M.
    upstream = np.bincount(rows * n + cols, weights=(2.0 / count) * residual, minlength=m * n)
    upstream = upstream.reshape(m, n).astype(product.dtype)
    grads = [None] * len(layers)
    for j in range(len(layers) - 1, 0, -1):
        grads[j] = upstream @ prefixes[j - 1].T
        upstream = layers[j].T @ upstream
    grads[0] = upstream
    return loss, grads


@dataclasses.dataclass
class NumpyNormalizedGD:
    """State of normalized GD: step count t and the running average v of ||g||^2."""

    count: int = 0
    average: float = 0.0


def numpy_normalized_gd_step(layers, grads, state: NumpyNormalizedGD, lr: float, decay: float = 0.99,
                             eps: float = 1e-4):
    """One step of normalized GD (the ``GroupRMSprop`` of Arora, Cohen, Hu, Luo, NeurIPS 2019).

    v_t = alpha v_{t-1} + (1 - alpha) ||g_t||^2 (all parameters), v_hat = v_t / (1 - alpha^t),
    theta <- theta - lr g_t / (sqrt(v_hat) + eps). Returns (new layers, new state).
    """
    squared_norm = sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads)
    count = state.count + 1
    average = decay * state.average + (1 - decay) * squared_norm
    corrected = average / (1 - decay**count)
    factor = lr / (np.sqrt(corrected) + eps)
    new = [w - (factor * g).astype(w.dtype) for w, g in zip(layers, grads)]
    return new, NumpyNormalizedGD(count, average)


def _numpy_problem(config: RunConfig, dtype):
    data = make_matrix_problem(config.problem)
    if data.rows is None:
        raise ValueError("the numpy reference covers matrix completion only")
    return data.rows.astype(np.int64), data.cols.astype(np.int64), data.values.astype(dtype)


def _hidden_width(config: RunConfig) -> int:
    return config.model.width if config.model.width is not None else max(config.problem.m, config.problem.n)


def _layer_shapes(config: RunConfig):
    m, n, depth = config.problem.m, config.problem.n, config.model.depth
    dims = [n] + [_hidden_width(config)] * (depth - 1) + [m]
    return [(dims[j + 1], dims[j]) for j in range(depth)]


def numpy_steps_per_second(config: RunConfig, steps: int, *, chunk: int = 100, max_seconds: float = 20.0,
                           dtype=np.float32) -> dict:
    """Steps per second of the eager numpy loop on ``config`` (one run at a time).

    After 10 warm-up steps, ``steps`` steps are timed in chunks of ``chunk`` steps (at least 3
    chunks); the rate is the best chunk's, with the median chunk's beside it. Chunks make the figure
    robust to other processes on the machine (a multi-threaded BLAS waits for its worker threads, so
    one busy core can slow a whole stretch of steps by two orders of magnitude). Timing stops early once
    ``max_seconds`` have been spent.
    """
    rows, cols, values = _numpy_problem(config, dtype)
    if (config.model.init, config.optimizer.name) != ("gaussian_e2e", "normalized_gd"):
        raise ValueError("the numpy reference covers gaussian_e2e init and normalized_gd only")
    layers = numpy_init(_layer_shapes(config), config.model.scale, config.seed, dtype, _hidden_width(config))
    state = NumpyNormalizedGD()
    lr, decay = config.optimizer.lr, config.optimizer.decay

    def advance(layers, state, count):
        for _ in range(count):
            _, grads = numpy_loss_and_grad(layers, rows, cols, values)
            layers, state = numpy_normalized_gd_step(layers, grads, state, lr, decay)
        return layers, state

    layers, state = advance(layers, state, 10)  # warm-up: caches, BLAS threads
    chunk = max(1, min(chunk, steps))
    rates, done, spent = [], 0, 0.0
    while (done < steps or len(rates) < 3) and (spent < max_seconds or not rates):
        start = time.perf_counter()
        layers, state = advance(layers, state, chunk)
        elapsed = time.perf_counter() - start
        rates.append(chunk / elapsed)
        done += chunk
        spent += elapsed
    return dict(steps=done, seconds=spent, chunk=chunk, steps_per_s=max(rates),
                steps_per_s_median=statistics.median(rates), steps_per_s_mean=done / spent)


def numpy_headline_run(config: RunConfig) -> dict:
    """The whole headline run in the eager numpy loop: normalized GD from the numpy init until the
    train loss is <= ``train.tol`` or ``train.max_steps`` steps, timed end to end (the loss is the
    one the gradient computes anyway, so the stopping rule costs nothing extra). The init is drawn
    with numpy, so the number of steps differs slightly from the engine's run."""
    dtype = np.float64 if config.train.x64 else np.float32
    start = time.perf_counter()
    rows, cols, values = _numpy_problem(config, dtype)
    layers = numpy_init(_layer_shapes(config), config.model.scale, config.seed, dtype, _hidden_width(config))
    state = NumpyNormalizedGD()
    lr, decay, tol = config.optimizer.lr, config.optimizer.decay, config.train.tol
    steps, loss = 0, float("inf")
    while steps < config.train.max_steps:
        loss, grads = numpy_loss_and_grad(layers, rows, cols, values)
        if loss <= tol:
            break
        layers, state = numpy_normalized_gd_step(layers, grads, state, lr, decay)
        steps += 1
    wall = time.perf_counter() - start
    return dict(status="done" if loss <= tol else "max_steps", steps=steps, final_train_loss=float(loss), wall_s=wall)


# ----------------------------------------------------------------------------------------------
# The engine
# ----------------------------------------------------------------------------------------------


class _CompileClock:
    """Sums JAX's compile-event durations (seconds) while registered."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, event: str, duration_secs: float, **kwargs) -> None:
        if event in _COMPILE_EVENTS:
            self.seconds += duration_secs


@contextmanager
def _compile_clock() -> Iterator[_CompileClock]:
    clock = _CompileClock()
    jax.monitoring.register_event_duration_secs_listener(clock)
    try:
        yield clock
    finally:
        jax.monitoring.unregister_event_duration_listener(clock)


def _device_data(config: RunConfig, dtype):
    data = make_matrix_problem(config.problem)
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(x, dtype) if np.issubdtype(np.asarray(x).dtype, np.floating) else jnp.asarray(x),
        data,
    )


def batch_fields(config: RunConfig, batch: int):
    """Seeds, init scales and lrs of a benchmark batch: seeds 0..b-1, scale and lr spread over
    [1/2, 2] x their config values (log-spaced), so the runs differ in every batched field."""
    spread = np.logspace(-1, 1, batch, base=2.0) if batch > 1 else np.ones(1)
    seeds = np.arange(batch) + config.seed
    return seeds, config.model.scale * spread, config.optimizer.lr * spread[::-1]


def engine_throughput(config: RunConfig, batch: int, steps: int, *, repeats: int = 3,
                      min_seconds: float = 1.0) -> dict:
    """Run-steps per second of ``CompiledTask.advance`` for ``batch`` runs of ``config``.

    ``config.train`` is replaced by tol = 0 and an unreachable max_steps, so every run stays active.
    Sequence: init; advance to the current step (compiles, makes no update: ``compile_s``); a
    warm-up advance of min(steps, 10) steps; then timed advances of ``steps`` steps each (best of up
    to ``repeats``, stopping early once ``min_seconds`` of timed work has accumulated). The run-steps
    counted are the updates the runs actually made (read back from the state).
    """
    config = dataclasses.replace(
        config, train=dataclasses.replace(config.train, tol=0.0, max_steps=2**30)
    )
    with _compile_clock() as clock:
        task = build_task(config)
        compiled = CompiledTask(task)
        dtype = task.dtype
        data = _device_data(config, dtype)
        seeds, scales, lrs = batch_fields(config, batch)
        keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds.astype(np.uint32)))
        scales = jnp.asarray(scales, dtype)
        lrs = jnp.asarray(lrs, dtype)
        start = time.perf_counter()
        state = jax.block_until_ready(compiled.init(keys, scales, data))
        init_s = time.perf_counter() - start
        start = time.perf_counter()
        state = jax.block_until_ready(compiled.advance(state, lrs, jnp.asarray(0, jnp.int32), data))
        first_call_s = time.perf_counter() - start
    compile_s = clock.seconds
    current = min(steps, 10)
    state = jax.block_until_ready(compiled.advance(state, lrs, jnp.asarray(current, jnp.int32), data))
    times, counts = [], []
    while len(times) < max(1, repeats):
        before = np.asarray(state["steps"]).sum()
        current += steps
        target = jnp.asarray(current, jnp.int32)
        start = time.perf_counter()
        state = jax.block_until_ready(compiled.advance(state, lrs, target, data))
        times.append(time.perf_counter() - start)
        counts.append(int(np.asarray(state["steps"]).sum() - before))
        if sum(times) >= min_seconds:
            break
    rates = [c / t for c, t in zip(counts, times)]
    active = int(np.sum(np.asarray(state["status"]) == 0))
    best = int(np.argmax(rates))
    return dict(
        batch=batch,
        steps=steps,
        seconds=times[best],
        run_steps=counts[best],
        run_steps_per_s=rates[best],
        run_steps_per_s_median=statistics.median(rates),
        repeats=len(times),
        compile_s=compile_s,
        first_calls_s=init_s + first_call_s,
        active_runs=active,
    )


def headline_run(config: RunConfig) -> dict:
    """The whole run of ``config`` through :func:`trajlab.engine.run_batch`, timed end to end.

    ``wall_s`` covers building the task, compiling (init, advance, metrics), the loop and the metric
    recording; ``compile_s`` is the part JAX spent tracing, lowering and compiling.
    """
    with _compile_clock() as clock:
        start = time.perf_counter()
        compiled = CompiledTask(build_task(config))
        result = run_batch(
            compiled,
            make_matrix_problem(config.problem),
            seeds=[config.seed],
            scales=[config.model.scale],
            lrs=[config.optimizer.lr],
            schedule=recording_steps(config.train),
        )
        wall = time.perf_counter() - start
    steps = int(result.steps[0])
    return dict(
        status=result.status[0],
        steps=steps,
        final_train_loss=float(result.final["train_loss"][0]) if "train_loss" in result.final else float("nan"),
        wall_s=wall,
        compile_s=clock.seconds,
        run_s=wall - clock.seconds,
        steps_per_s_after_compile=steps / max(wall - clock.seconds, 1e-12),
        target_s=HEADLINE_TARGET_S,
        met_target=wall < HEADLINE_TARGET_S,
    )


def describe(config: RunConfig) -> str:
    """One line naming the benchmarked configuration."""
    p, m, o = config.problem, config.model, config.optimizer
    width = m.width if m.width is not None else max(p.m, p.n)
    return (
        f"{p.kind} {p.m}x{p.n} rank {p.rank}, {p.observations} observed, depth {m.depth} (width {width}), "
        f"{o.name} lr {o.lr:g}, init {m.init} scale {m.scale:g}"
    )


# ----------------------------------------------------------------------------------------------
# All together
# ----------------------------------------------------------------------------------------------


def machine_info() -> dict:
    """Device, CPU and library versions, and the BLAS thread settings (they change CPU timings)."""
    device = jax.devices()[0]
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return dict(
        device=str(device),
        platform=device.platform,
        device_kind=getattr(device, "device_kind", ""),
        cpu=cpu,
        cpu_count=os.cpu_count(),
        jax_version=jax.__version__,
        numpy_version=np.__version__,
        env={k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "XLA_FLAGS") if k in os.environ},
    )


def run_benchmarks(sizes=DEFAULT_SIZES, steps: int = 2000, *, x64: bool = False, headline: bool = True,
                   console=None, repeats: int = 3, min_seconds: float = 1.0) -> dict:
    """Measure the numpy reference, the engine's throughput per batch size and the headline run.

    Prints a rich table to ``console`` (a new ``rich.console.Console`` when None) and returns
    ``{"machine", "dtype", "config", "steps", "numpy", "throughput": [one dict per size], "headline"}``;
    each throughput dict has ``run_steps_per_s`` (best), ``run_steps_per_s_median``,
    ``ratio_to_numpy`` (best engine / best numpy), ``compile_s`` and the raw timings.
    ``headline`` is None when not requested. ``x64`` switches JAX to float64 for the process.
    """
    from rich.console import Console
    from rich.table import Table

    console = console if console is not None else Console()
    sizes = [int(size) for size in sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"sizes must be integers >= 1, got {sizes!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    config = headline_config(x64=x64)
    dtype_name = "float64" if x64 else "float32"
    machine = machine_info()
    console.print(
        f"device {machine['device']} ({machine['device_kind'] or machine['platform']}), "
        f"cpu {machine['cpu']} x {machine['cpu_count']}, dtype {dtype_name}, jax {machine['jax_version']}, "
        f"numpy {machine['numpy_version']}, OPENBLAS_NUM_THREADS={machine['env'].get('OPENBLAS_NUM_THREADS', 'unset')}",
        highlight=False,
    )
    console.print(f"config: {describe(config)}", highlight=False)
    reference = numpy_steps_per_second(config, steps, dtype=np.float64 if x64 else np.float32)
    throughput = []
    for size in sizes:
        row = engine_throughput(config, size, steps, repeats=repeats, min_seconds=min_seconds)
        row["ratio_to_numpy"] = row["run_steps_per_s"] / reference["steps_per_s"]
        row["ratio_to_numpy_median"] = row["run_steps_per_s_median"] / reference["steps_per_s_median"]
        throughput.append(row)

    table = Table(title=f"run-steps per second, {steps} steps per timing ({dtype_name})")
    for column in ("runs", "run-steps/s (best)", "median", "x numpy", "best timing", "compile s"):
        table.add_column(column, justify="right")
    chunk_s = reference["chunk"] / reference["steps_per_s"]
    table.add_row(
        "numpy, 1", f"{reference['steps_per_s']:,.0f}", f"{reference['steps_per_s_median']:,.0f}", "1.00",
        f"{reference['chunk']} steps in {chunk_s:.3f} s", "-",
    )
    for row in throughput:
        table.add_row(
            f"engine, {row['batch']}", f"{row['run_steps_per_s']:,.0f}", f"{row['run_steps_per_s_median']:,.0f}",
            f"{row['ratio_to_numpy']:.2f}", f"{row['steps']} steps in {row['seconds']:.3f} s",
            f"{row['compile_s']:.2f}",
        )
    console.print(table)

    headline_result = None
    if headline:
        headline_result = headline_run(headline_config(x64=x64))
        numpy_run = numpy_headline_run(headline_config(x64=x64))
        headline_result["numpy"] = numpy_run
        headline_result["ratio_to_numpy"] = numpy_run["wall_s"] / headline_result["wall_s"]
        console.print(
            f"numpy loop, same run: {numpy_run['status']} after {numpy_run['steps']:,} steps in {numpy_run['wall_s']:.2f} s; "
            f"trajlab is {headline_result['ratio_to_numpy']:.2f}x faster end to end (goal: 6x)",
            highlight=False,
        )
        verdict = "meets" if headline_result["met_target"] else "misses"
        console.print(
            f"headline run (to train loss {config.train.tol:g}, max {config.train.max_steps:,} steps): "
            f"{headline_result['status']} after {headline_result['steps']:,} steps, "
            f"{headline_result['wall_s']:.2f} s end to end (compile {headline_result['compile_s']:.2f} s, "
            f"{headline_result['steps_per_s_after_compile']:,.0f} steps/s after it); "
            f"{verdict} the {HEADLINE_TARGET_S:g} s target",
            highlight=False,
        )
    return dict(
        machine=machine,
        dtype=dtype_name,
        config=dataclasses.asdict(config),
        steps=steps,
        numpy=reference,
        throughput=throughput,
        headline=headline_result,
    )
