"""The engine: one compiled, vmapped loop for a batch of runs with equal static structure.

state -> advance to the next recording step -> record metrics -> repeat. Each run carries its own
status; a stopped run is frozen (its parameters no longer change) while the others go on.

Per step, for each active run: compute loss and gradient at the current parameters; mark the run
``done`` if loss <= tol, ``diverged`` if the loss is non-finite or exceeds
diverge_factor * max(1, loss at step 0); mark it ``max_steps`` if it has made max_steps updates;
otherwise apply one update. ``steps`` counts the updates a run has made, so a ``done`` run's final
loss is the first loss <= tol.

The advance function takes the target step as a traced argument, so one compilation serves any
recording schedule.

Gradient flow runs (``Task.flow``) advance by integrating the flow from t = steps * lr to
t = target * lr and check the stopping rules at the recording points only. When ``Task.reference``
is set, every run also carries the gradient flow from its own initialization, integrated to the
run's current time at each recording point, so that metrics can measure the distance between the
run and the flow at equal t.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from trajlab.engine.devices import pad_runs, run_sharding

ACTIVE, DONE, MAX_STEPS, DIVERGED = 0, 1, 2, 3
STATUS_NAMES = {DONE: "done", MAX_STEPS: "max_steps", DIVERGED: "diverged", ACTIVE: "active"}


@dataclass(frozen=True)
class Task:
    """Static description of what a batch computes (everything not vmapped).

    init(key, scale) -> params; loss(params, data) -> scalar;
    metrics(params, initial_params, reference_params, data) -> {column: scalar} (reference is None
    without ``reference``); optimizer: unit-step optax transformation (the engine applies
    params + lr * update), None for flows; flow / reference: ``integrate(params, t0, t1, dt, data)
    -> (params, gradient_evaluations, ok)`` of :func:`trajlab.dynamics.gradient_flow.flow_integrator`.
    ``metrics_optimizer_state``: when True, the engine also passes the run's optimizer state (the
    unit-step optax state of ``optimizer``, ``()`` for flows) as the keyword ``optimizer_state`` of
    ``metrics`` (adaptive-optimizer metrics read it); False (the default) keeps the 4-argument call.
    ``metrics_lr``: when True, the engine also passes the run's own (batched) step size as the
    keyword ``lr`` (e.g. to count Hessian eigenvalues above 1.5 / lr).
    ``metric_carry(params, data) -> pytree``: state that the metrics carry from one recording point
    to the next (e.g. the top Hessian eigenvectors, to warm-start the next eigensolve); made at init
    per run, passed to ``metrics`` as the keyword ``carry``, and then ``metrics`` returns
    ``(columns, new_carry)``. None (the default): no carry.
    final_metrics(params, data) -> {column: float}: host-side (numpy) metrics of each run's final
    parameters, computed once after the batch (e.g. a tensor-rank estimate by ALS); they become
    final values of the run, not trajectory columns.
    minibatch(data, key) -> data: the samples of one stochastic step (``optimizer.batch_size``);
    each run draws its own with key fold_in(fold_in(PRNGKey(seed), 1), step). Such a run makes no
    full forward pass per step: its stopping rules (tol, divergence, max_steps) are checked on the
    full train loss at the recording points only, so a run that reaches tol stops at the next
    recording point (its ``steps`` is that point), and ``gradient_evaluations`` counts its
    stochastic gradients.
    """

    init: Callable[[Any, Any], Any]
    loss: Callable[[Any, Any], Any]
    metrics: Callable[[Any, Any, Any, Any], dict]
    optimizer: optax.GradientTransformation | None
    max_steps: int
    tol: float
    diverge_factor: float
    dtype: Any = jnp.float32
    flow: Callable | None = None
    reference: Callable | None = None
    final_metrics: Callable[[Any, Any], dict] | None = None
    minibatch: Callable[[Any, Any], Any] | None = None
    metrics_optimizer_state: bool = False
    metrics_lr: bool = False
    metric_carry: Callable[[Any, Any], Any] | None = None


@dataclass
class BatchResult:
    """Outcome of a batch: per-run status / steps / final metrics, and the trajectory rows."""

    status: list[str]
    steps: np.ndarray
    wall_s: np.ndarray
    gradient_evaluations: np.ndarray
    final: dict[str, np.ndarray]
    trajectory: dict[str, np.ndarray]  # long format: "run" (index in batch), "step", metric columns


def _select(mask, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(mask, a, b), new, old)


class CompiledTask:
    """The jitted init / advance / record functions of a :class:`Task`."""

    def __init__(self, task: Task):
        self.task = task
        self.init = jax.jit(jax.vmap(self._init_one, in_axes=(0, 0, None)))
        self.advance = jax.jit(self._advance)
        self.record = jax.jit(jax.vmap(self._metrics_one, in_axes=(0, 0, None)))
        self._sharded: dict = {}

    def sharded(self, mesh):
        """(init, advance, record) with the run axis split over ``mesh``'s devices by shard_map:
        each device runs its own runs' loop to its own end, with no communication between devices
        (one compiled program per mesh, kept)."""
        if mesh not in self._sharded:
            from jax.sharding import PartitionSpec

            runs, shared = PartitionSpec("runs"), PartitionSpec()

            def split(function, in_specs):
                return jax.jit(jax.shard_map(function, mesh=mesh, in_specs=in_specs, out_specs=runs, check_vma=False))

            self._sharded[mesh] = (
                split(jax.vmap(self._init_one, in_axes=(0, 0, None)), (runs, runs, shared)),
                split(self._advance, (runs, runs, shared, shared)),
                split(jax.vmap(self._metrics_one, in_axes=(0, 0, None)), (runs, runs, shared)),
            )
        return self._sharded[mesh]

    def _init_one(self, key, scale, data):
        task = self.task
        params = task.init(key, scale)
        loss = task.loss(params, data)
        state = dict(
            params=params,
            initial=params,
            opt=task.optimizer.init(params) if task.optimizer is not None else (),
            loss=loss,
            loss0=loss,
            steps=jnp.zeros((), jnp.int32),
            evaluations=jnp.zeros((), jnp.int32),
            status=jnp.where(jnp.isfinite(loss), ACTIVE, DIVERGED).astype(jnp.int32),
        )
        if task.reference is not None:
            state.update(reference=params, reference_steps=jnp.zeros((), jnp.int32))
        if task.minibatch is not None:
            state.update(sample_key=jax.random.fold_in(key, 1))
        if task.metric_carry is not None:
            state.update(metric_carry=task.metric_carry(params, data))
        return state

    def _mark(self, state, active, loss, ok=True):
        """New status after evaluating ``loss`` at the current parameters of an active run."""
        task = self.task
        threshold = task.diverge_factor * jnp.maximum(1.0, state["loss0"])
        diverged = ~jnp.isfinite(loss) | (loss > threshold) | ~ok
        status = jnp.where(active & diverged, DIVERGED, state["status"])
        status = jnp.where((status == ACTIVE) & (loss <= task.tol), DONE, status)
        return status

    def _flow_one(self, state, lr, target, data):
        task = self.task
        active = state["status"] == ACTIVE
        end = jnp.minimum(target, task.max_steps)
        t0 = state["steps"].astype(lr.dtype) * lr
        t1 = jnp.where(active, end.astype(lr.dtype) * lr, t0)
        params, evaluations, ok = task.flow(state["params"], t0, t1, lr, data)
        loss = task.loss(params, data)
        steps = jnp.where(active, end, state["steps"])
        status = self._mark(dict(state, steps=steps), active, loss, ok)
        status = jnp.where((status == ACTIVE) & (steps >= task.max_steps), MAX_STEPS, status)
        return dict(
            state,
            params=params,
            loss=jnp.where(active, loss, state["loss"]),
            steps=steps,
            evaluations=state["evaluations"] + evaluations,
            status=status.astype(jnp.int32),
        )

    def _follow_reference(self, state, lr, data):
        """Integrate the reference flow of a run from its last time to the run's current time."""
        t0 = state["reference_steps"].astype(lr.dtype) * lr
        t1 = state["steps"].astype(lr.dtype) * lr
        reference, _, _ = self.task.reference(state["reference"], t0, t1, lr, data)
        return dict(state, reference=reference, reference_steps=state["steps"])

    def _step_one(self, state, lr, target, data):
        task = self.task
        loss, grads = jax.value_and_grad(task.loss)(state["params"], data)
        active = state["status"] == ACTIVE
        status = self._mark(state, active, loss)
        status = jnp.where((status == ACTIVE) & (state["steps"] >= task.max_steps), MAX_STEPS, status)
        moving = (status == ACTIVE) & (state["steps"] < target)
        return self._update(state, lr, grads, moving, dict(
            loss=jnp.where(active, loss, state["loss"]),
            evaluations=state["evaluations"] + active.astype(jnp.int32),
            status=status.astype(jnp.int32),
        ))

    def _update(self, state, lr, grads, moving, changes):
        updates, opt = self.task.optimizer.update(grads, state["opt"], state["params"])
        params = jax.tree_util.tree_map(lambda p, u: p + lr.astype(p.dtype) * u, state["params"], updates)
        return dict(
            state,
            params=_select(moving, params, state["params"]),
            opt=_select(moving, opt, state["opt"]),
            steps=state["steps"] + moving.astype(jnp.int32),
            **changes,
        )

    def _stochastic_step_one(self, state, lr, target, data):
        """One minibatch step: no full forward pass (the stopping rules run at recording points)."""
        task = self.task
        batch = task.minibatch(data, jax.random.fold_in(state["sample_key"], state["steps"]))
        grads = jax.grad(task.loss)(state["params"], batch)
        moving = (state["status"] == ACTIVE) & (state["steps"] < jnp.minimum(target, task.max_steps))
        return self._update(state, lr, grads, moving, dict(evaluations=state["evaluations"] + moving.astype(jnp.int32)))

    def _stochastic_stop_one(self, state, data):
        """The stopping rules of a minibatch run at a recording point, on the full train loss."""
        loss = self.task.loss(state["params"], data)
        active = state["status"] == ACTIVE
        status = self._mark(state, active, loss)
        status = jnp.where((status == ACTIVE) & (state["steps"] >= self.task.max_steps), MAX_STEPS, status)
        return dict(state, loss=jnp.where(active, loss, state["loss"]), status=status.astype(jnp.int32))

    def _pending(self, state, target):
        active = state["status"] == ACTIVE
        return jnp.any(active & ((state["steps"] < target) | (state["steps"] >= self.task.max_steps)))

    def _advance(self, state, lrs, target, data):
        if self.task.flow is not None:
            state = jax.vmap(self._flow_one, in_axes=(0, 0, None, None))(state, lrs, target, data)
        elif self.task.minibatch is not None:
            step = jax.vmap(self._stochastic_step_one, in_axes=(0, 0, None, None))
            end = jnp.minimum(target, self.task.max_steps)
            state = jax.lax.while_loop(
                lambda s: jnp.any((s["status"] == ACTIVE) & (s["steps"] < end)),
                lambda s: step(s, lrs, target, data),
                state,
            )
            state = jax.vmap(self._stochastic_stop_one, in_axes=(0, None))(state, data)
        else:
            step = jax.vmap(self._step_one, in_axes=(0, 0, None, None))
            state = jax.lax.while_loop(
                lambda s: self._pending(s, target), lambda s: step(s, lrs, target, data), state
            )
        if self.task.reference is not None and self.task.reference is self.task.flow:
            # A gradient-flow run is its own reference flow: not integrated a second time.
            state = dict(state, reference=state["params"], reference_steps=state["steps"])
        elif self.task.reference is not None:
            state = jax.vmap(self._follow_reference, in_axes=(0, 0, None))(state, lrs, data)
        return state

    def _metrics_one(self, state, lr, data):
        """(columns, new metric carry) of one run; the carry is None without ``Task.metric_carry``."""
        task = self.task
        keywords = {}
        if task.metrics_optimizer_state:
            keywords["optimizer_state"] = state["opt"]
        if task.metrics_lr:
            keywords["lr"] = lr
        if task.metric_carry is not None:
            keywords["carry"] = state["metric_carry"]
        out = task.metrics(state["params"], state["initial"], state.get("reference"), data, **keywords)
        return out if task.metric_carry is not None else (out, None)


# XLA:CPU with several host devices (--xla_force_host_platform_device_count) deadlocks now and
# then when batches on two devices execute at once from two threads: both threads wait forever
# for their first metric recording (seen with the in-process executor on a 2-core machine). On a
# CPU the computations of different devices are therefore run one at a time (each call is
# finished before the lock is released); GPUs run side by side.
_CPU_EXECUTION = threading.Lock()


@contextlib.contextmanager
def _exclusive_on_cpu(data):
    leaves = jax.tree_util.tree_leaves(data)
    platform = next(iter(leaves[0].devices())).platform if leaves and hasattr(leaves[0], "devices") else "cpu"
    if platform != "cpu" or jax.local_device_count() == 1:
        yield
        return
    with _CPU_EXECUTION:
        yield


def cast_data(data, dtype):
    """The problem's data on the device: float leaves in the batch's dtype, the others as they are."""
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(x, dtype) if np.issubdtype(np.asarray(x).dtype, np.floating) else jnp.asarray(x),
        data,
    )


def _run_inputs(seeds, scales, lrs, dtype):
    """The batched inputs of init and advance: PRNG keys, init scales and step sizes."""
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(np.asarray(seeds, np.uint32)))
    scales = jnp.asarray(np.asarray(scales, np.float64), dtype)
    lrs = jnp.asarray(np.asarray(lrs, np.float64), dtype)
    return keys, scales, lrs


def compile_ahead(compiled: CompiledTask, data, seeds, scales, lrs) -> bool:
    """Compile the init, advance and record programs that :func:`run_batch` will call for this
    batch, without running anything (shapes from ``jax.eval_shape``); JAX keeps the executables, so
    the batch's own calls then find them compiled. Returns False (nothing done) for a batch whose
    runs would be sharded over several CPU devices."""
    if run_sharding(len(seeds)) is not None:
        return False
    data = cast_data(data, compiled.task.dtype)
    keys, scales, lrs = _run_inputs(seeds, scales, lrs, compiled.task.dtype)
    compiled.init.lower(keys, scales, data).compile()
    state = jax.eval_shape(compiled.init, keys, scales, data)
    compiled.advance.lower(state, lrs, jnp.asarray(0, jnp.int32), data).compile()
    compiled.record.lower(state, lrs, data).compile()
    return True


def run_batch(
    compiled: CompiledTask,
    data,
    seeds,
    scales,
    lrs,
    schedule: np.ndarray,
    progress: Callable[[dict], None] | None = None,
) -> BatchResult:
    """Run a batch to completion; record metrics at ``schedule`` steps and at each run's stop.

    seeds, scales, lrs: one entry per run (the vmapped fields). ``progress`` receives a dict
    (finished, runs, step, loss_min, loss_max) after each recording point.
    """
    task = compiled.task
    start = time.perf_counter()
    dtype = task.dtype
    data = cast_data(data, dtype)
    runs = len(seeds)
    # On a CPU split into one device per core, the batch's run axis is sharded over the devices
    # (padded with copies of the last run, dropped below): one program, every core busy.
    sharding = run_sharding(runs)
    if sharding is not None:
        seeds, scales, lrs = (pad_runs(values, sharding.padded) for values in (seeds, scales, lrs))
        data = jax.device_put(data, sharding.replicated)
    keys, scales, lrs = _run_inputs(seeds, scales, lrs, dtype)
    init, advance, record_metrics = compiled.init, compiled.advance, compiled.record
    if sharding is not None:
        keys, scales, lrs = jax.device_put((keys, scales, lrs), sharding.runs_axis)
        init, advance, _ = compiled.sharded(sharding.runs_axis.mesh)
        # The metrics (SVDs, Lanczos, ...) are recorded on one device: a sharded recording
        # deadlocked XLA:CPU now and then (both device computations waiting in device_get).
        first = sharding.runs_axis.mesh.devices.flat[0]
        data_one = jax.device_put(data, first)

        def record_metrics(state, lrs, _data):
            values, carry = compiled.record(*jax.device_put((state, lrs), first), data_one)
            return values, (None if carry is None else jax.device_put(carry, sharding.runs_axis))
    with _exclusive_on_cpu(data):
        state = jax.block_until_ready(init(keys, scales, data))
    n_runs = len(seeds)
    rows: dict[str, list] = {"run": [], "step": []}
    recorded_final = np.zeros(n_runs, bool)
    last_recorded = np.full(n_runs, -1, np.int64)
    wall = np.full(n_runs, np.nan)
    final: dict[str, np.ndarray] = {}

    def record(steps: np.ndarray, only: np.ndarray) -> None:
        # A run that stops right at a step already recorded keeps its one row for that step.
        nonlocal state
        index = np.flatnonzero(only & (steps != last_recorded))
        if index.size == 0:
            return
        with _exclusive_on_cpu(data):
            values, carry = record_metrics(state, lrs, data)
            values = jax.device_get(values)
        if carry is not None:  # every run's carry moves on (a stopped run's just converges further)
            state = dict(state, metric_carry=carry)
        last_recorded[index] = steps[index]
        rows["run"].extend(index.tolist())
        rows["step"].extend(steps[index].tolist())
        for name, value in values.items():
            value = np.asarray(value, np.float64)
            rows.setdefault(name, []).extend(value[index].tolist())
            final.setdefault(name, np.full(n_runs, np.nan))[index] = value[index]

    status = np.asarray(state["status"])
    steps = np.asarray(state["steps"])
    record(steps, np.ones(n_runs, bool))
    targets = [int(s) for s in schedule if s > 0]
    for target in targets:
        with _exclusive_on_cpu(data):
            state = jax.block_until_ready(advance(state, lrs, jnp.asarray(target, jnp.int32), data))
        status, steps = jax.device_get((state["status"], state["steps"]))
        stopped = status != ACTIVE
        newly = stopped & ~recorded_final
        at_target = (status == ACTIVE) & (steps == target)
        record(steps, at_target | newly)
        wall[newly] = time.perf_counter() - start
        recorded_final |= newly
        if progress is not None:
            losses = np.asarray(state["loss"])
            progress(
                dict(finished=int(stopped.sum()), runs=n_runs, step=target,
                     loss_min=float(np.nanmin(losses)), loss_max=float(np.nanmax(losses)))
            )
        if stopped.all():
            break
    if not (status != ACTIVE).all():  # schedule ended before max_steps: not expected, but honest
        raise RuntimeError("recording schedule ended before every run stopped")
    if task.final_metrics is not None:
        params = jax.device_get(state["params"])
        host_data = jax.device_get(data)
        for index in range(n_runs):
            one = jax.tree_util.tree_map(lambda x: np.asarray(x[index], np.float64), params)
            for name, value in task.final_metrics(one, host_data).items():
                final.setdefault(name, np.full(n_runs, np.nan))[index] = float(value)
    trajectory = {name: np.asarray(values) for name, values in rows.items()}
    evaluations = np.asarray(state["evaluations"], np.int64)
    if n_runs > runs:  # the padding copies are dropped
        keep = trajectory["run"] < runs
        trajectory = {name: values[keep] for name, values in trajectory.items()}
        final = {name: values[:runs] for name, values in final.items()}
        status, steps, wall, evaluations = status[:runs], steps[:runs], wall[:runs], evaluations[:runs]
    return BatchResult(
        status=[STATUS_NAMES[int(s)] for s in status],
        steps=np.asarray(steps, np.int64),
        wall_s=wall,
        gradient_evaluations=evaluations,
        final=final,
        trajectory=trajectory,
    )
